//! [`Records`] on the SQLite file: three small tables (`records`, `events`,
//! `leases`), one statement or transaction per call. Apart from the job
//! transactions because nothing here touches a job.

use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, TransactionBehavior};

use super::row::{duration_ms, now_ms};
use super::{DbResult, SqliteQueue};
use crate::queue::QueueError;
use crate::queue::records::{RecordKind, Records};

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
}
