//! [`Records`] on the SQLite file: four small tables (`records`, `events`,
//! `leases`, `nonces`), one statement or transaction per call. Apart from the job
//! transactions because nothing here touches a job.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::row::{duration_ms, now_ms};
use super::{DbResult, SqliteQueue};
use crate::queue::QueueError;
use crate::queue::records::{RecordKind, Records};

/// Claim a digest: a new row, or an expired one taken over; `changes() == 1` means claimed.
const CLAIM_NONCE: &str = "INSERT INTO nonces (digest, expires_at) VALUES (?1, ?2)
     ON CONFLICT (digest) DO UPDATE SET expires_at = excluded.expires_at WHERE nonces.expires_at < ?3";

/// Expired nonces, a few per claim: rows arrive one per claim, so this keeps the
/// table at what the window holds, and no claim ever does more than this much.
const PURGE_NONCES: &str =
    "DELETE FROM nonces WHERE digest IN (SELECT digest FROM nonces WHERE expires_at < ?1 LIMIT ?2)";
const NONCE_PURGE_BATCH: i64 = 16;

/// Claim `digest` until `until` (unix ms) inside the caller's transaction, purging a few
/// expired claims: `true` when it was not claimed (or its claim had expired). The enqueue
/// runs this in its own transaction, so the claim costs it no commit of its own.
pub(super) fn claim_nonce_tx(tx: &Transaction<'_>, digest: &[u8; 16], until: i64) -> Result<bool, QueueError> {
    let now = now_ms();
    let claimed = tx.prepare_cached(CLAIM_NONCE).db()?.execute(rusqlite::params![&digest[..], until, now]).db()? == 1;
    tx.prepare_cached(PURGE_NONCES).db()?.execute(rusqlite::params![now, NONCE_PURGE_BATCH]).db()?;
    Ok(claimed)
}

/// `expires_at` as stored: unix ms.
pub(super) fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, duration_ms)
}

/// Run `f` with `synchronous = NORMAL`, then back to the queue's FULL.
///
/// Why a nonce claim skips the fsync that every job write pays: a commit is in
/// the WAL file as soon as it returns, so a roller that is killed or restarted
/// keeps it (the test kills it); only a power cut or kernel crash can lose it, and
/// the next FULL commit (the enqueue that follows a claim, say) fsyncs the WAL with
/// every frame before it, so a claim is durable before the job it let in. What a
/// power cut can lose is the record of requests that changed nothing (reads), for
/// the rest of their 15-minute window. (An enqueue claims inside its own transaction,
/// fsynced with the job.)
fn without_fsync<T>(
    c: &mut Connection,
    f: impl FnOnce(&mut Connection) -> Result<T, QueueError>,
) -> Result<T, QueueError> {
    c.execute_batch("PRAGMA synchronous = NORMAL").db()?;
    let out = f(c);
    // Restored whatever `f` did (its transaction, if any, is rolled back by now).
    c.execute_batch("PRAGMA synchronous = FULL").db()?;
    out
}

#[async_trait]
impl Records for SqliteQueue {
    async fn put_record(&self, kind: RecordKind, key: &str, record: &str) -> Result<(), QueueError> {
        self.put_records(kind, &[(key.to_string(), record.to_string())]).await
    }

    async fn put_records(&self, kind: RecordKind, items: &[(String, String)]) -> Result<(), QueueError> {
        let items = items.to_vec();
        self.with_conn(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT INTO records (kind, key, record, updated_at) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (kind, key) DO UPDATE SET record = excluded.record,
                                                               updated_at = excluded.updated_at",
                    )
                    .db()?;
                let now = now_ms();
                for (key, record) in &items {
                    stmt.execute(rusqlite::params![kind.as_str(), key, record, now]).db()?;
                }
            }
            tx.commit().db()
        })
        .await
    }

    async fn delete_record(&self, kind: RecordKind, key: &str) -> Result<(), QueueError> {
        let key = key.to_string();
        self.with_conn(move |c| {
            c.execute("DELETE FROM records WHERE kind = ?1 AND key = ?2", rusqlite::params![kind.as_str(), key])
                .db()
                .map(drop)
        })
        .await
    }

    async fn record(&self, kind: RecordKind, key: &str) -> Result<Option<String>, QueueError> {
        let key = key.to_string();
        self.with_conn(move |c| {
            c.query_row(
                "SELECT record FROM records WHERE kind = ?1 AND key = ?2",
                rusqlite::params![kind.as_str(), key],
                |r| r.get(0),
            )
            .optional()
            .db()
        })
        .await
    }

    async fn records(&self, kind: RecordKind) -> Result<Vec<(String, String)>, QueueError> {
        self.with_conn(move |c| {
            let mut stmt = c.prepare_cached("SELECT key, record FROM records WHERE kind = ?1 ORDER BY key").db()?;
            let rows = stmt.query_map([kind.as_str()], |r| Ok((r.get(0)?, r.get(1)?))).db()?;
            rows.collect::<rusqlite::Result<Vec<_>>>().db()
        })
        .await
    }

    async fn append_event(&self, stream: &str, record: &str, keep: usize) -> Result<(), QueueError> {
        let (stream, record) = (stream.to_string(), record.to_string());
        let keep = i64::try_from(keep.max(1)).unwrap_or(i64::MAX);
        self.with_conn(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
            tx.execute(
                "INSERT INTO events (stream, at, record) VALUES (?1, ?2, ?3)",
                rusqlite::params![stream, now_ms(), record],
            )
            .db()?;
            tx.execute(
                "DELETE FROM events WHERE stream = ?1 AND id NOT IN
                     (SELECT id FROM events WHERE stream = ?1 ORDER BY id DESC LIMIT ?2)",
                rusqlite::params![stream, keep],
            )
            .db()?;
            tx.commit().db()
        })
        .await
    }

    async fn events(&self, stream: &str, limit: usize) -> Result<Vec<String>, QueueError> {
        let stream = stream.to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_conn(move |c| {
            let mut stmt =
                c.prepare_cached("SELECT record FROM events WHERE stream = ?1 ORDER BY id DESC LIMIT ?2").db()?;
            let rows = stmt.query_map(rusqlite::params![stream, limit], |r| r.get(0)).db()?;
            rows.collect::<rusqlite::Result<Vec<String>>>().db()
        })
        .await
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, QueueError> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.with_conn(move |c| {
            let now = now_ms();
            // Free, expired, or already ours: take it (again) until now + ttl.
            let n = c
                .execute(
                    "INSERT INTO leases (name, holder, until) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
                     WHERE leases.until < ?4 OR leases.holder = excluded.holder",
                    rusqlite::params![name, holder, now.saturating_add(duration_ms(ttl)), now],
                )
                .db()?;
            Ok(n == 1)
        })
        .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), QueueError> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.with_conn(move |c| {
            c.execute("DELETE FROM leases WHERE name = ?1 AND holder = ?2", rusqlite::params![name, holder])
                .db()
                .map(drop)
        })
        .await
    }

    async fn claim_nonce(&self, digest: &[u8; 16], expires_at: SystemTime) -> Result<bool, QueueError> {
        let (digest, until) = (*digest, unix_ms(expires_at));
        self.with_conn(move |c| {
            without_fsync(c, |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
                let claimed = claim_nonce_tx(&tx, &digest, until)?;
                tx.commit().db()?;
                Ok(claimed)
            })
        })
        .await
    }
}
