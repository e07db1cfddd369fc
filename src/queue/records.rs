//! Small shared records beside the jobs, for what every roller process must see the
//! same: each machine's latest observations, the medic's holds and per-machine
//! state, the medic's recent decisions, leases that let exactly one process do
//! a periodic job (the health sweep) at a time, and the digests of the Hawk headers
//! already accepted (replay protection, `auth::replay`).
//!
//! The records are opaque text to the store (the health module writes JSON): the
//! queue keeps them, it does not interpret them. Every backend implements
//! [`Records`] with the same semantics, checked by `conformance.rs`.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::QueueError;

/// The kinds of keyed record; each is its own table/hash, keyed by worker id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A machine's latest observations (probe, power, Taskcluster worker).
    Observations,
    /// An operator's or the medic's hold on a machine.
    Hold,
    /// The medic's memory of a machine (remediations, consecutive failures).
    Medic,
    /// A machine's last path checks (and the checker's own: requests, its status).
    Paths,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Observations => "observations",
            RecordKind::Hold => "hold",
            RecordKind::Medic => "medic",
            RecordKind::Paths => "paths",
        }
    }
}

/// Records and leases shared by every process on one backend.
#[async_trait]
pub trait Records: Send + Sync + 'static {
    /// Set `key`'s record of `kind` (replacing any).
    async fn put_record(&self, kind: RecordKind, key: &str, record: &str) -> Result<(), QueueError>;

    /// Several at once (a sweep writes hundreds): one round trip where the backend allows.
    async fn put_records(&self, kind: RecordKind, items: &[(String, String)]) -> Result<(), QueueError> {
        for (k, r) in items {
            self.put_record(kind, k, r).await?;
        }
        Ok(())
    }

    /// Remove `key`'s record of `kind`; no record is not an error.
    async fn delete_record(&self, kind: RecordKind, key: &str) -> Result<(), QueueError>;

    /// `key`'s record of `kind`, if any.
    async fn record(&self, kind: RecordKind, key: &str) -> Result<Option<String>, QueueError>;

    /// Every record of `kind`, as (key, record), in key order.
    async fn records(&self, kind: RecordKind) -> Result<Vec<(String, String)>, QueueError>;

    /// Append `record` to the log `stream`, keeping its newest `keep`.
    async fn append_event(&self, stream: &str, record: &str, keep: usize) -> Result<(), QueueError>;

    /// The newest `limit` records of `stream`, newest first.
    async fn events(&self, stream: &str, limit: usize) -> Result<Vec<String>, QueueError>;

    /// Take or renew the lease `name` for `holder` for `ttl`: `true` when `holder` now
    /// holds it (it was free, expired, or already `holder`'s), `false` when another live
    /// holder has it. The backend's clock decides expiry, so processes on different
    /// hosts agree.
    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, QueueError>;

    /// Give the lease up if `holder` holds it (a clean shutdown), so another process
    /// need not wait for it to expire.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), QueueError>;

    /// Record `digest` (an accepted Hawk header's, opaque here) until `expires_at` and
    /// answer `true`, or answer `false` when it is recorded already and not expired:
    /// one atomic step, so of two processes claiming one digest at once exactly one
    /// gets `true`. The record outlives a restart of any roller process; expired ones
    /// are purged by the backend (Redis's key expiry, SQLite in bounded batches).
    async fn claim_nonce(&self, digest: &[u8; 16], expires_at: SystemTime) -> Result<bool, QueueError>;
}

/// Run `work` while `holder` keeps the lease `name`, renewing it (for `ttl`) every
/// `every`: the periodic jobs' way to stay the only one at it however long a round takes.
/// `None` when another process took the lease meanwhile (`work` is dropped: it must not
/// write over what the new holder writes). A failed renewal is retried at the next tick.
pub async fn while_held<F: std::future::Future>(
    records: &dyn Records,
    name: &str,
    holder: &str,
    ttl: Duration,
    every: Duration,
    work: F,
) -> Option<F::Output> {
    let keep = async {
        loop {
            tokio::time::sleep(every).await;
            match records.acquire_lease(name, holder, ttl).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => tracing::warn!(lease = name, error = %e, "cannot renew the lease"),
            }
        }
    };
    tokio::select! {
        () = keep => {
            tracing::warn!(lease = name, "another process took the lease mid-round; this round stops");
            None
        }
        out = work => Some(out),
    }
}
