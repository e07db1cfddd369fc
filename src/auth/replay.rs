//! Replay protection: a verified Hawk header is accepted once, by every roller
//! process on one queue backend together, and still once after a restart.
//!
//! The record of used headers lives in the queue backend (a [`NonceStore`],
//! wired by `startup` to `queue::records::Records::claim_nonce`): Redis in
//! distributed mode, the SQLite file in embedded mode. One claim per request:
//! "record this digest until `ts + skew`, unless it is recorded already", one
//! round trip of its own ([`ReplayGuard::claim`]), or, for an enqueue, made by the
//! enqueue's own script or transaction ([`ReplayGuard::for_store`], then
//! [`ReplayGuard::settle`] with its answer; `api::jobs`). The backend decides; the
//! in-process cache (`nonce`) only refuses, without asking, a replay this process
//! has already seen.
//!
//! **How long.** A header is accepted while `|ts - now| <= skew` (15 minutes),
//! so its record must outlive `ts + skew` and no more: it expires then, by the
//! header's `ts`, plus [`CLOCK_MARGIN`] for processes whose clocks disagree a
//! little (a process whose clock lags another's by more than the margin could
//! accept a replay of a header the other recorded, near the end of its window;
//! keep the clocks in sync).
//!
//! **Failing closed.** When the backend cannot answer, the request is refused
//! with 503 ([`AuthError::ReplayCheckUnavailable`]), never accepted unchecked.
//!
//! Only MAC-verified headers may be claimed (the callers verify first), so
//! recording needs valid credentials and nobody can burn another client's nonce.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::AuthError;
use super::local::TIMESTAMP_SKEW;
use super::nonce::{self, NonceCache, NonceDigest};

/// Added to `ts + skew` in the shared record's expiry; see the module doc.
pub const CLOCK_MARGIN: Duration = Duration::from_secs(60);

/// The shared record of used headers (the queue backend, through `startup`).
#[async_trait]
pub trait NonceStore: Send + Sync + 'static {
    /// Record `digest` until `expires_at` and answer `true`, or answer `false`
    /// when a record of it that has not expired exists: the header was used.
    /// An error says the store could not answer (its text is logged, not sent).
    async fn claim(&self, digest: &NonceDigest, expires_at: SystemTime) -> Result<bool, String>;
}

/// A verified header that passed this process's checks, its claim not made yet. It must
/// be made ([`ReplayGuard::claim`]), or handed to the queue with the request's own write
/// and its answer given back ([`ReplayGuard::settle`]), before anything the request asks
/// for is done or told.
#[must_use = "a verified header is accepted only once its claim is made"]
#[derive(Debug)]
pub struct PendingClaim {
    digest: NonceDigest,
    ts: u64,
    expires_at: SystemTime,
}

/// The replay check both authentication backends' headers go through.
pub struct ReplayGuard {
    local: NonceCache,
    /// `None`: this process alone (a worker, which authenticates nobody, and the
    /// benchmark's baseline).
    shared: Option<Arc<dyn NonceStore>>,
}

impl ReplayGuard {
    /// Shared through `store`, with this process's cache in front.
    pub fn shared(store: Arc<dyn NonceStore>) -> Self {
        Self { local: NonceCache::new(TIMESTAMP_SKEW, nonce::DEFAULT_CAPACITY), shared: Some(store) }
    }

    /// Within this process only: a replay to another process, or after a
    /// restart, is not seen. For processes that serve no API and for tests.
    pub fn in_process() -> Self {
        Self { local: NonceCache::new(TIMESTAMP_SKEW, nonce::DEFAULT_CAPACITY), shared: None }
    }

    /// The checks that need no round trip: the window (judged here again, not only
    /// by the caller before its round trips: the record expires by `ts`, so it can
    /// only vouch for a header inside the window) and this process's cache.
    pub fn prepare(&self, client_id: &str, ts: u64, nonce: &str, now: SystemTime) -> Result<PendingClaim, AuthError> {
        if !within_skew(ts, now) {
            return Err(AuthError::Refused("Stale timestamp".into()));
        }
        let digest = nonce::digest(client_id, ts, nonce);
        if self.local.contains(&digest, ts) {
            return Err(replayed());
        }
        let expires_at = UNIX_EPOCH + Duration::from_secs(ts) + TIMESTAMP_SKEW + CLOCK_MARGIN;
        Ok(PendingClaim { digest, ts, expires_at })
    }

    /// Make the claim: in the shared store (one round trip), or in this process only.
    pub async fn claim(&self, pending: PendingClaim, now: SystemTime) -> Result<(), AuthError> {
        let Some(store) = &self.shared else {
            let fresh = self.local.check_and_insert(&pending.digest, pending.ts, now);
            return if fresh { Ok(()) } else { Err(replayed()) };
        };
        match store.claim(&pending.digest, pending.expires_at).await {
            Ok(fresh) => self.settle(pending, fresh, now),
            Err(e) => Err(AuthError::ReplayCheckUnavailable(e)),
        }
    }

    /// What a write that can carry the claim with it must record (the digest, until
    /// when), so the claim costs no round trip of its own; `None` when the check is in
    /// this process only, and the claim is to be made with [`ReplayGuard::claim`].
    pub fn for_store(&self, pending: &PendingClaim) -> Option<(NonceDigest, SystemTime)> {
        self.shared.as_ref().map(|_| (pending.digest, pending.expires_at))
    }

    /// The store's answer to a claim made with a write: `fresh` when it was not
    /// recorded before.
    pub fn settle(&self, pending: PendingClaim, fresh: bool, now: SystemTime) -> Result<(), AuthError> {
        // Remembered either way: a used header is refused here next time without
        // asking the backend.
        self.local.check_and_insert(&pending.digest, pending.ts, now);
        if fresh { Ok(()) } else { Err(replayed()) }
    }
}

fn replayed() -> AuthError {
    AuthError::Refused("Replayed nonce".into())
}

/// `|ts - now| <= skew`, exactly as `HawkHeader::is_fresh` judges it.
fn within_skew(ts: u64, now: SystemTime) -> bool {
    let Some(at) = UNIX_EPOCH.checked_add(Duration::from_secs(ts)) else { return false };
    let diff = match now.duration_since(at) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    diff <= TIMESTAMP_SKEW
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    const T: u64 = 1_700_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    impl ReplayGuard {
        /// Prepare and claim in one step, as `Authenticator::authenticate` does.
        async fn check(&self, client_id: &str, ts: u64, nonce: &str, now: SystemTime) -> Result<(), AuthError> {
            let pending = self.prepare(client_id, ts, nonce, now)?;
            self.claim(pending, now).await
        }
    }

    /// A store in memory that counts its claims, or fails every one.
    #[derive(Default)]
    struct Store {
        claimed: Mutex<HashMap<NonceDigest, SystemTime>>,
        calls: Mutex<usize>,
        down: bool,
    }

    #[async_trait]
    impl NonceStore for Store {
        async fn claim(&self, digest: &NonceDigest, expires_at: SystemTime) -> Result<bool, String> {
            *self.calls.lock().unwrap() += 1;
            if self.down {
                return Err("connection refused".into());
            }
            Ok(self.claimed.lock().unwrap().insert(*digest, expires_at).is_none())
        }
    }

    fn refusal(r: Result<(), AuthError>) -> String {
        match r {
            Ok(()) => "accepted".into(),
            Err(AuthError::Refused(m)) => m,
            Err(e) => format!("{e}"),
        }
    }

    #[tokio::test]
    async fn the_shared_store_decides_for_every_process() {
        let store = Arc::new(Store::default());
        let (a, b) = (ReplayGuard::shared(store.clone()), ReplayGuard::shared(store.clone()));
        assert_eq!(refusal(a.check("alice", T, "n", at(T)).await), "accepted");
        // Another process (or this one restarted, its cache empty) asks the store.
        assert_eq!(refusal(b.check("alice", T, "n", at(T + 1)).await), "Replayed nonce");
        assert_eq!(*store.calls.lock().unwrap(), 2);
        // A replay this process has seen is refused without a round trip.
        assert_eq!(refusal(a.check("alice", T, "n", at(T + 2)).await), "Replayed nonce");
        assert_eq!(refusal(b.check("alice", T, "n", at(T + 2)).await), "Replayed nonce");
        assert_eq!(*store.calls.lock().unwrap(), 2);
        // Each record expires by the header's ts: skew and margin after it.
        let expiry = store.claimed.lock().unwrap()[&nonce::digest("alice", T, "n")];
        assert_eq!(expiry, at(T) + TIMESTAMP_SKEW + CLOCK_MARGIN);
    }

    #[tokio::test]
    async fn an_unreachable_store_fails_closed() {
        let store = Arc::new(Store { down: true, ..Store::default() });
        let g = ReplayGuard::shared(store.clone());
        for _ in 0..2 {
            let r = g.check("alice", T, "n", at(T)).await;
            assert!(matches!(r, Err(AuthError::ReplayCheckUnavailable(ref m)) if m == "connection refused"), "{r:?}");
        }
        // Nothing was remembered from the failed tries: each asked the store again.
        assert_eq!(*store.calls.lock().unwrap(), 2);
    }

    #[tokio::test]
    async fn a_header_outside_the_window_is_refused_before_the_store() {
        let store = Arc::new(Store::default());
        let g = ReplayGuard::shared(store.clone());
        let skew = TIMESTAMP_SKEW.as_secs();
        for now in [at(T + skew + 1), at(T - skew - 1), at(T + skew) + Duration::from_millis(1)] {
            assert_eq!(refusal(g.check("alice", T, "n", now).await), "Stale timestamp");
        }
        assert_eq!(refusal(g.check("alice", u64::MAX, "n", at(T)).await), "Stale timestamp");
        assert_eq!(*store.calls.lock().unwrap(), 0);
        assert_eq!(refusal(g.check("alice", T, "n", at(T + skew)).await), "accepted");
    }

    /// A claim carried by the request's own write (the enqueue): the store's answer
    /// comes back through `settle`, and this process remembers the header either way.
    #[tokio::test]
    async fn a_claim_made_with_a_write_is_settled_from_its_answer() {
        let store = Arc::new(Store::default());
        let g = ReplayGuard::shared(store.clone());
        let p = g.prepare("alice", T, "n", at(T)).unwrap();
        let (digest, until) = g.for_store(&p).expect("a shared check hands the claim to the write");
        assert_eq!((digest, until), (nonce::digest("alice", T, "n"), at(T) + TIMESTAMP_SKEW + CLOCK_MARGIN));
        assert_eq!(refusal(g.settle(p, true, at(T))), "accepted");
        assert_eq!(refusal(g.prepare("alice", T, "n", at(T)).map(drop)), "Replayed nonce");
        let p = g.prepare("alice", T, "m", at(T)).unwrap();
        assert_eq!(refusal(g.settle(p, false, at(T))), "Replayed nonce", "the write found it claimed");
        assert_eq!(refusal(g.prepare("alice", T, "m", at(T)).map(drop)), "Replayed nonce");
        assert_eq!(*store.calls.lock().unwrap(), 0, "no round trip of its own");
        // In this process only, there is no write to carry it: claimed here.
        let local = ReplayGuard::in_process();
        let p = local.prepare("alice", T, "n", at(T)).unwrap();
        assert!(local.for_store(&p).is_none());
        assert_eq!(refusal(local.claim(p, at(T)).await), "accepted");
    }

    #[tokio::test]
    async fn in_process_only_remembers_within_the_process() {
        let (a, b) = (ReplayGuard::in_process(), ReplayGuard::in_process());
        assert_eq!(refusal(a.check("alice", T, "n", at(T)).await), "accepted");
        assert_eq!(refusal(a.check("alice", T, "n", at(T)).await), "Replayed nonce");
        assert_eq!(refusal(b.check("alice", T, "n", at(T)).await), "accepted");
    }
}
