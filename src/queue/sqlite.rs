//! The embedded queue: one SQLite file in WAL mode.
//!
//! Every write that reads-then-decides (enqueue's coalescing, reserve's pick,
//! finish/release's ownership check) runs in one `BEGIN IMMEDIATE` transaction.
//! IMMEDIATE takes SQLite's single write lock up front, so two runners — in this
//! process or in another process on the same file — can never both see a job as
//! free and both take it: the second one waits (busy timeout) and then sees the
//! first one's commit.
//!
//! rusqlite is synchronous; the connection lives behind a mutex and every call
//! runs on tokio's blocking pool so a slow disk never stalls the async runtime.
//!
//! Timestamps are stored as unix milliseconds (INTEGER), so ordering and lease
//! comparisons are plain integer comparisons in SQL.
//!
//! Retention: reads hide final jobs older than the retention at once; the rows
//! themselves are deleted by the next enqueue, reserve or append_log, inside the
//! transaction it opens anyway (an indexed range delete on `finished_at`), so no
//! background task is needed. The per-machine history cap is enforced when a job
//! is added for that machine: final jobs beyond the newest `history_cap` go.
//!
//! This file: the handle (opening the file, the connection on the blocking
//! pool), the health check and the `Queue` methods. `schema`: the file's layout
//! and migrations; `row`: a stored job read back into a `Job`; `transactions`:
//! the operations' transactions.

mod records;
mod row;
mod schema;
mod transactions;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::{
    BreakerReset, Enqueued, Finished, Held, Job, Mark, NewJob, Outcome, Queue, QueueError, QueueOptions, QueueStats,
};
use crate::domain::{JobId, WorkerId};
use row::{duration_ms, load_job, ms_to_dt, now_ms, reload, retention_cutoff};
pub use schema::SCHEMA_VERSION;
use schema::migrate;
use transactions::{
    append_log_tx, breaker_resets_tx, enqueue_tx, expire_tx, finish_many_tx, finish_tx, history_tx, mark_tx,
    release_tx, reserve_many_tx, reset_breaker_tx, running_tx,
};

/// How long a normal call waits for another writer (another process, usually
/// the CLI) before reporting the queue unavailable.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Health must answer quickly: a heartbeat that hangs is worse than one that fails.
const HEALTH_WAIT: Duration = Duration::from_secs(2);

/// Below this much free space the heartbeat fails: a commit needs room for its
/// WAL frames and a checkpoint for the pages it copies back, and an operator
/// should hear about a filling disk before enqueues start failing.
const HEALTH_MIN_FREE_BYTES: u64 = 1 << 20;

/// The SQLite queue backend. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct SqliteQueue {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    options: QueueOptions,
}

impl std::fmt::Debug for SqliteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteQueue").field("path", &self.path).finish_non_exhaustive()
    }
}

pub(super) trait DbResult<T> {
    fn db(self) -> Result<T, QueueError>;
}

impl<T> DbResult<T> for rusqlite::Result<T> {
    fn db(self) -> Result<T, QueueError> {
        self.map_err(|e| QueueError::Unavailable(format!("sqlite: {e}")))
    }
}

impl SqliteQueue {
    /// Open (creating if needed) the queue database at `path`.
    ///
    /// Pragmas, and why:
    /// - `journal_mode=WAL`: readers (the CLI, `GET /jobs`) never block the
    ///   writer and vice versa, and several processes can share the file.
    /// - `synchronous=FULL`: every commit is fsynced before it returns. With
    ///   NORMAL a power cut can roll back the last commits — an enqueue whose
    ///   task_id the client already holds would vanish, or a finished reboot
    ///   would look unfinished and be retried. Job volume is tiny (one row per
    ///   hardware action), so the fsync per commit costs nothing that matters.
    /// - `foreign_keys=ON`: log lines cannot point at a job that does not exist.
    /// - busy timeout: wait for another process's write instead of failing at once.
    pub fn open(path: &Path) -> Result<Self, QueueError> {
        Self::open_with(path, QueueOptions::default())
    }

    /// Like [`SqliteQueue::open`], with explicit retention and history cap.
    pub fn open_with(path: &Path, options: QueueOptions) -> Result<Self, QueueError> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                QueueError::Unavailable(format!(
                    "cannot create directory {} for the queue database: {e}",
                    parent.display()
                ))
            })?;
        }
        let mut conn = Connection::open(path)
            .map_err(|e| QueueError::Unavailable(format!("cannot open queue database {}: {e}", path.display())))?;
        conn.busy_timeout(BUSY_TIMEOUT).db()?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).db()?;
        if !mode.eq_ignore_ascii_case("wal") {
            // WAL needs shared memory; it is refused e.g. on some network filesystems.
            return Err(QueueError::Unavailable(format!(
                "queue database {} could not be switched to WAL mode (journal_mode is {mode:?}); \
                 put it on a local filesystem",
                path.display()
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL").db()?;
        conn.pragma_update(None, "foreign_keys", true).db()?;
        migrate(&mut conn, path)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), path: path.to_path_buf(), options })
    }

    /// The file this queue lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `f` with the connection on the blocking pool.
    async fn with_conn<T, F>(&self, f: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, QueueError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| {
                QueueError::Unavailable(
                    "queue connection is unusable: an earlier queue call panicked while using it".to_string(),
                )
            })?;
            f(&mut guard)
        })
        .await
        .map_err(|e| QueueError::Unavailable(format!("queue call did not complete: {e}")))?
    }
}

/// A fresh connection per check, so that it proves what a restart would find:
/// the file still exists (no CREATE flag — a deleted file is not silently
/// replaced by an empty one), is writable, and its disk has room. Whether writes
/// go through is asked of the queue's own connection (see `health`).
fn file_check(path: &Path) -> Result<(), QueueError> {
    let fail = |what: String| QueueError::Unavailable(format!("queue database {}: {what}", path.display()));
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| fail(format!("cannot open: {e}")))?;
    // SQLite quietly opens a write-protected file read-only; say so plainly.
    if conn.is_readonly(rusqlite::MAIN_DB).map_err(|e| fail(e.to_string()))? {
        return Err(fail("file is not writable".to_string()));
    }
    // Taking the lock writes nothing, so on a full disk it succeeds while every enqueue fails.
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let free = free_bytes(dir).map_err(|e| fail(format!("cannot read the free space of {}: {e}", dir.display())))?;
    if free < HEALTH_MIN_FREE_BYTES {
        return Err(fail(format!("the disk is full: {free} bytes free, {HEALTH_MIN_FREE_BYTES} needed")));
    }
    Ok(())
}

/// Bytes an unprivileged writer may still use on the filesystem holding `dir`.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs only writes into `st`, a plain C struct, and reads the NUL-terminated `c`.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued, QueueError> {
        let options = self.options;
        let enq = self.with_conn(move |c| enqueue_tx(c, job, &options, None)).await?;
        enq.ok_or_else(|| QueueError::Unavailable("an enqueue claiming nothing was refused".into()))
    }

    async fn enqueue_claiming(
        &self,
        job: NewJob,
        nonce: &[u8; 16],
        expires_at: SystemTime,
    ) -> Result<Option<Enqueued>, QueueError> {
        let (options, nonce) = (self.options, Some((*nonce, records::unix_ms(expires_at))));
        self.with_conn(move |c| enqueue_tx(c, job, &options, nonce)).await
    }

    async fn reserve(&self, consumer: &str, lease: Duration) -> Result<Option<Job>, QueueError> {
        let consumer = consumer.to_string();
        let options = self.options;
        self.with_conn(move |c| Ok(reserve_many_tx(c, &[consumer], lease, &options)?.pop())).await
    }

    async fn reserve_many(&self, holders: &[String], lease: Duration) -> Result<Vec<Job>, QueueError> {
        let (holders, options) = (holders.to_vec(), self.options);
        self.with_conn(move |c| reserve_many_tx(c, &holders, lease, &options)).await
    }

    async fn reclaim(&self, consumer: &str, lease: Duration) -> Result<Option<Job>, QueueError> {
        let consumer = consumer.to_string();
        self.with_conn(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
            let now = now_ms();
            let id: Option<String> = tx
                .query_row(
                    "SELECT id FROM jobs WHERE state = 'running' AND consumer = ?1 AND lease_until >= ?2 LIMIT 1",
                    rusqlite::params![consumer, now],
                    |r| r.get(0),
                )
                .optional()
                .db()?;
            let job = match id {
                Some(id) => {
                    tx.execute(
                        "UPDATE jobs SET lease_until = ?2 WHERE id = ?1",
                        rusqlite::params![id, now.saturating_add(duration_ms(lease))],
                    )
                    .db()?;
                    Some(reload(&tx, &id)?)
                }
                None => None,
            };
            tx.commit().db()?;
            Ok(job)
        })
        .await
    }

    async fn append_log(&self, id: JobId, holder: &str, line: &str) -> Result<(), QueueError> {
        let (holder, line) = (holder.to_string(), line.to_string());
        let options = self.options;
        self.with_conn(move |c| append_log_tx(c, id, &holder, &line, &options)).await
    }

    async fn mark(&self, id: JobId, holder: &str, mark: Mark) -> Result<(), QueueError> {
        let holder = holder.to_string();
        self.with_conn(move |c| mark_tx(c, id, &holder, &mark)).await
    }

    async fn running(&self) -> Result<Vec<Held>, QueueError> {
        self.with_conn(running_tx).await
    }

    async fn expire(&self, id: JobId, holder: &str) -> Result<(), QueueError> {
        let holder = holder.to_string();
        self.with_conn(move |c| expire_tx(c, id, &holder)).await
    }

    async fn reset_breaker(&self, worker_id: &WorkerId, reset: BreakerReset) -> Result<(), QueueError> {
        let worker_id = worker_id.as_str().to_string();
        self.with_conn(move |c| reset_breaker_tx(c, &worker_id, &reset)).await
    }

    async fn breaker_resets(&self, worker_id: &WorkerId, limit: usize) -> Result<Vec<BreakerReset>, QueueError> {
        let worker_id = worker_id.as_str().to_string();
        let limit = i64::try_from(limit.min(crate::queue::BREAKER_RESETS_KEPT)).unwrap_or(i64::MAX);
        self.with_conn(move |c| breaker_resets_tx(c, &worker_id, limit)).await
    }

    async fn finish(&self, id: JobId, consumer: &str, outcome: Outcome) -> Result<(), QueueError> {
        let consumer = consumer.to_string();
        self.with_conn(move |c| finish_tx(c, id, &consumer, outcome)).await
    }

    async fn finish_many(&self, items: &[Finished]) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        let items = items.to_vec();
        self.with_conn(move |c| finish_many_tx(c, &items)).await
    }

    async fn release(&self, id: JobId, consumer: &str) -> Result<(), QueueError> {
        let consumer = consumer.to_string();
        self.with_conn(move |c| release_tx(c, id, &consumer)).await
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, QueueError> {
        let options = self.options;
        self.with_conn(move |c| {
            let tx = c.transaction().db()?;
            let job = load_job(&tx, &id.to_string(), retention_cutoff(now_ms(), &options))?;
            tx.commit().db()?;
            Ok(job)
        })
        .await
    }

    async fn history(&self, worker_id: &WorkerId, limit: usize) -> Result<Vec<Job>, QueueError> {
        let worker_id = worker_id.as_str().to_string();
        // Never more than the cap, even before enqueue has trimmed the machine.
        let limit = i64::try_from(limit.min(self.options.effective_history_cap())).unwrap_or(i64::MAX);
        let options = self.options;
        self.with_conn(move |c| history_tx(c, &worker_id, limit, retention_cutoff(now_ms(), &options))).await
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        self.with_conn(|c| {
            let (queued, running, oldest): (i64, i64, Option<i64>) = c
                .query_row(
                    // Running means a live lease, as on Redis: an expired one is a job awaiting takeover.
                    "SELECT count(*) FILTER (WHERE state = 'queued' OR (state = 'running' AND lease_until < ?1)), \
                     count(*) FILTER (WHERE state = 'running' AND lease_until >= ?1), \
                     min(created_at) FILTER (WHERE state = 'queued') FROM jobs",
                    [now_ms()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .db()?;
            let locked: i64 = c
                .query_row(
                    "SELECT count(*) FROM jobs q WHERE q.state = 'queued' AND EXISTS \
                     (SELECT 1 FROM jobs r WHERE r.worker_id = q.worker_id AND r.state = 'running' \
                      AND r.lease_until >= ?1)",
                    [now_ms()],
                    |r| r.get(0),
                )
                .db()?;
            Ok(QueueStats {
                queued: queued.max(0) as u64,
                running: running.max(0) as u64,
                oldest_queued: oldest.map(|ms| ms_to_dt("-", "created_at", ms)).transpose()?,
                waiting_for_lock: locked.max(0) as u64,
            })
        })
        .await
    }

    async fn health(&self) -> Result<(), QueueError> {
        // A poisoned connection fails every call, so the service is not healthy
        // even if the file is fine.
        if self.conn.is_poisoned() {
            return Err(QueueError::Unavailable(
                "queue connection is unusable: an earlier queue call panicked while using it".to_string(),
            ));
        }
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || file_check(&path))
            .await
            .map_err(|e| QueueError::Unavailable(format!("health check did not complete: {e}")))??;
        // The write lock through the queue's own connection, in turn with the runner's
        // and the API's calls: a second connection polling for the lock loses to a busy
        // runner's back-to-back transactions ("database is locked" while draining) and
        // says nothing true about whether jobs can be queued.
        let write = self.with_conn(|c| c.execute_batch("BEGIN IMMEDIATE; ROLLBACK;").db());
        match tokio::time::timeout(HEALTH_WAIT, write).await {
            Ok(r) => r.map_err(|e| {
                QueueError::Unavailable(format!(
                    "queue database {}: cannot take the write lock: {e}",
                    self.path.display()
                ))
            }),
            Err(_) => Err(QueueError::Unavailable(format!(
                "queue database {}: no write within {} s",
                self.path.display(),
                HEALTH_WAIT.as_secs()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::conformance::{LONG_LEASE, ping};

    fn temp_db() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a").join("b").join("queue.sqlite");
        (dir, path)
    }

    fn unavailable_text(r: Result<SqliteQueue, QueueError>) -> String {
        match r {
            Err(QueueError::Unavailable(msg)) => msg,
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn open_creates_directories_and_configures_the_file() {
        let (_dir, path) = temp_db();
        let q = SqliteQueue::open(&path).unwrap();
        assert!(path.exists());
        {
            let conn = q.conn.lock().unwrap();
            let get = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
            assert_eq!(get("PRAGMA user_version"), SCHEMA_VERSION);
            assert_eq!(get("PRAGMA synchronous"), 2, "FULL");
            assert_eq!(get("PRAGMA foreign_keys"), 1);
            let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
            assert_eq!(mode, "wal");
        }
        // Reopening an existing, current file is fine and keeps its data.
        let id = q.enqueue(ping("a", "g")).await.unwrap().job.id;
        drop(q);
        let q = SqliteQueue::open(&path).unwrap();
        assert!(q.get(id).await.unwrap().is_some());
    }

    #[test]
    fn a_version_1_file_gains_the_retention_index() {
        let (_dir, path) = temp_db();
        // A file as version 1 wrote it: no retention index, no hardware marks, no breaker resets.
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let raw = Connection::open(&path).unwrap();
        raw.execute_batch(
            "CREATE TABLE jobs (
                id TEXT NOT NULL PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, task TEXT NOT NULL,
                worker_id TEXT NOT NULL, worker_group TEXT NOT NULL, requester TEXT NOT NULL,
                origin TEXT, provisioner_id TEXT, worker_type TEXT, state TEXT NOT NULL,
                attempts INTEGER NOT NULL, max_attempts INTEGER NOT NULL, created_at INTEGER NOT NULL,
                started_at INTEGER, finished_at INTEGER, consumer TEXT, lease_until INTEGER,
                result TEXT, error TEXT) STRICT;
             CREATE TABLE job_log (job_id TEXT NOT NULL REFERENCES jobs (id), seq INTEGER NOT NULL,
                at INTEGER NOT NULL, line TEXT NOT NULL, PRIMARY KEY (job_id, seq)) STRICT;
             INSERT INTO jobs (id, seq, task, worker_id, worker_group, requester, state, attempts,
                max_attempts, created_at)
             VALUES ('3f0c9d1e-8a7b-4c6d-9e0f-1a2b3c4d5e6f', 1, 'ping', 'a', 'g', 'c', 'queued', 0, 3, 0);
             PRAGMA user_version = 1;",
        )
        .unwrap();
        drop(raw);
        drop(SqliteQueue::open(&path).unwrap());
        let raw = Connection::open(&path).unwrap();
        let v: i64 = raw.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let n: i64 = raw
            .query_row("SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name = 'jobs_finished'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(n, 1);
        // The old job reads back, with what version 3 added at its defaults.
        let q = SqliteQueue::open(&path).unwrap();
        let id = JobId::parse("3f0c9d1e-8a7b-4c6d-9e0f-1a2b3c4d5e6f").unwrap();
        let job = tokio::runtime::Runtime::new().unwrap().block_on(q.get(id)).unwrap().unwrap();
        assert!(!job.touched && job.restore.is_none());
    }

    /// Version 5 adds the record of used Hawk nonces; a version-4 file (what the
    /// previous roller wrote: today's schema without it) gains the table and keeps
    /// its jobs and records.
    #[tokio::test]
    async fn a_version_4_file_gains_the_nonce_table() {
        use crate::queue::records::{RecordKind, Records};
        let (_dir, path) = temp_db();
        let q = SqliteQueue::open(&path).unwrap();
        let id = q.enqueue(ping("m", "g")).await.unwrap().job.id;
        q.put_record(RecordKind::Hold, "m", "held").await.unwrap();
        drop(q);
        let raw = Connection::open(&path).unwrap();
        raw.execute_batch("DROP TABLE nonces; PRAGMA user_version = 4;").unwrap();
        drop(raw);

        let q = SqliteQueue::open(&path).unwrap();
        {
            let conn = q.conn.lock().unwrap();
            let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
            assert_eq!(v, SCHEMA_VERSION);
            let objects: Vec<String> = conn
                .prepare("SELECT name FROM sqlite_schema WHERE tbl_name = 'nonces' ORDER BY name")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(objects, ["nonces", "nonces_expiry"]);
        }
        assert!(q.get(id).await.unwrap().is_some());
        assert_eq!(q.record(RecordKind::Hold, "m").await.unwrap().as_deref(), Some("held"));
        let later = std::time::SystemTime::now() + Duration::from_secs(60);
        assert!(q.claim_nonce(&[7; 16], later).await.unwrap());
        assert!(!q.claim_nonce(&[7; 16], later).await.unwrap());
    }

    /// Expired nonces go a bounded batch per claim: no claim ever deletes thousands
    /// of rows, and steady traffic (one row in per claim) still empties the backlog.
    #[tokio::test]
    async fn expired_nonces_are_purged_a_few_per_claim() {
        use crate::queue::records::Records;
        let (_dir, path) = temp_db();
        let q = SqliteQueue::open(&path).unwrap();
        let count = |q: &SqliteQueue| -> i64 {
            q.conn.lock().unwrap().query_row("SELECT count(*) FROM nonces", [], |r| r.get(0)).unwrap()
        };
        {
            let conn = q.conn.lock().unwrap();
            let mut insert = conn.prepare("INSERT INTO nonces (digest, expires_at) VALUES (?1, 1)").unwrap();
            for i in 0u32..100 {
                let mut d = [0u8; 16];
                d[..4].copy_from_slice(&i.to_be_bytes());
                insert.execute([&d[..]]).unwrap();
            }
        }
        let later = std::time::SystemTime::now() + Duration::from_secs(60);
        assert!(q.claim_nonce(&[0xff; 16], later).await.unwrap());
        assert_eq!(count(&q), 100 - 16 + 1, "16 expired rows went, the new one came");
        for i in 0u8..10 {
            assert!(q.claim_nonce(&[0xf0, i, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], later).await.unwrap());
        }
        assert_eq!(count(&q), 11, "only the live ones are left");
        // The connection is back to fsyncing every commit for the jobs.
        let sync: i64 = q.conn.lock().unwrap().query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(sync, 2, "FULL");
    }

    #[test]
    fn a_newer_schema_version_is_refused() {
        let (_dir, path) = temp_db();
        drop(SqliteQueue::open(&path).unwrap());
        let raw = Connection::open(&path).unwrap();
        raw.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        drop(raw);
        let msg = unavailable_text(SqliteQueue::open(&path));
        assert!(msg.contains("newer than this roller understands"), "{msg}");
    }

    #[test]
    fn a_database_that_is_not_a_queue_is_left_alone() {
        let (_dir, path) = temp_db();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let raw = Connection::open(&path).unwrap();
        raw.execute_batch("CREATE TABLE precious (x INTEGER)").unwrap();
        drop(raw);
        let msg = unavailable_text(SqliteQueue::open(&path));
        assert!(msg.contains("not a roller queue"), "{msg}");
        let raw = Connection::open(&path).unwrap();
        let v: i64 = raw.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, 0, "untouched");
    }

    /// Each reserve query walks `jobs_state_created` in order and stops at the first
    /// free machine: no sort of every queued row (a one-query `queued OR expired`
    /// planned as a merged multi-index OR sorted in a temp b-tree on every reserve, and a
    /// backlog drained at 19 jobs/s).
    #[test]
    fn reserve_walks_the_state_index_in_order_without_sorting() {
        let (_dir, path) = temp_db();
        let q = SqliteQueue::open(&path).unwrap();
        let conn = q.conn.lock().unwrap();
        for sql in [transactions::RESERVE_QUEUED, transactions::RESERVE_EXPIRED] {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let plan: Vec<String> =
                stmt.query_map([0i64], |r| r.get::<_, String>(3)).unwrap().collect::<Result<_, _>>().unwrap();
            let text = plan.join("\n");
            assert!(!text.contains("TEMP B-TREE") && !text.contains("MULTI-INDEX"), "{sql}\n{text}");
            assert!(text.contains("SEARCH j USING INDEX jobs_state_created (state=?)"), "{text}");
        }
    }

    /// Two handles on one file behave like two roller processes: every job is
    /// handed out once across both, because reserve's transaction is IMMEDIATE.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_handles_on_one_file_never_hand_out_a_job_twice() {
        let (_dir, path) = temp_db();
        let a = SqliteQueue::open(&path).unwrap();
        let b = SqliteQueue::open(&path).unwrap();
        const JOBS: usize = 40;
        for i in 0..JOBS {
            a.enqueue(ping(&format!("m{i}"), "g")).await.unwrap();
        }
        let drain = |q: SqliteQueue, consumer: &'static str| {
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(j) = q.reserve(consumer, LONG_LEASE).await.unwrap() {
                    got.push(j.id);
                }
                got
            })
        };
        let tasks = [drain(a.clone(), "a1"), drain(a.clone(), "a2"), drain(b.clone(), "b1"), drain(b.clone(), "b2")];
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        assert_eq!(all.len(), JOBS);
        all.sort();
        all.dedup();
        assert_eq!(all.len(), JOBS, "a job was handed out twice");
        // A plain reader (the CLI) sees the committed state.
        let reader = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let running: i64 = reader
            .query_row("SELECT count(*) FROM jobs WHERE state = 'running' AND attempts = 1", [], |r| r.get(0))
            .unwrap();
        assert_eq!(running, JOBS as i64);
    }

    #[tokio::test]
    async fn corrupt_rows_are_reported_not_panicked_on() {
        let (_dir, path) = temp_db();
        let q = SqliteQueue::open(&path).unwrap();
        let id = q.enqueue(ping("m", "g")).await.unwrap().job.id;
        let raw = Connection::open(&path).unwrap();
        let set = |sql: &str| {
            raw.execute(sql, [id.to_string()]).unwrap();
        };
        let corrupt = |r: Result<Option<Job>, QueueError>, what: &str| match r {
            Err(QueueError::Corrupt(got, msg)) => {
                assert_eq!(got, id.to_string());
                assert!(msg.contains(what), "{msg}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        };

        // A task name written by a newer roller.
        set("UPDATE jobs SET task = 'reboot-via-magic' WHERE id = ?1");
        corrupt(q.get(id).await, "unknown task");
        let h = q.history(&WorkerId::parse("m").unwrap(), 10).await;
        assert!(matches!(h, Err(QueueError::Corrupt(..))), "{h:?}");
        set("UPDATE jobs SET task = 'ping' WHERE id = ?1");

        set("UPDATE jobs SET worker_id = 'not a worker' WHERE id = ?1");
        corrupt(q.get(id).await, "worker_id");
        set("UPDATE jobs SET worker_id = 'm' WHERE id = ?1");

        set("UPDATE jobs SET result = '{not json' WHERE id = ?1");
        corrupt(q.get(id).await, "not JSON");
        set("UPDATE jobs SET result = NULL WHERE id = ?1");

        // The CHECK keeps an impossible state out; past it (checks disabled),
        // reading still reports rather than panics.
        let refused = raw.execute("UPDATE jobs SET state = 'exploded' WHERE id = ?1", [id.to_string()]);
        assert!(refused.is_err());
        raw.pragma_update(None, "ignore_check_constraints", true).unwrap();
        set("UPDATE jobs SET state = 'exploded' WHERE id = ?1");
        corrupt(q.get(id).await, "unknown state");
    }

    #[tokio::test]
    async fn health_fails_when_the_file_is_gone() {
        let (_dir, path) = temp_db();
        let q = SqliteQueue::open(&path).unwrap();
        q.health().await.unwrap();
        std::fs::remove_file(&path).unwrap();
        let r = q.health().await;
        assert!(matches!(r, Err(QueueError::Unavailable(_))), "{r:?}");
        assert!(!path.exists(), "health must not recreate an empty database");
    }

    #[tokio::test]
    async fn a_poisoned_connection_is_unavailable_not_a_panic() {
        let (_dir, path) = temp_db();
        let q = SqliteQueue::open(&path).unwrap();
        let conn = Arc::clone(&q.conn);
        let _ = std::thread::spawn(move || {
            let _guard = conn.lock().unwrap();
            panic!("simulated bug while holding the connection");
        })
        .join();
        let r = q.enqueue(ping("m", "g")).await;
        assert!(matches!(r, Err(QueueError::Unavailable(_))), "{r:?}");
        let r = q.health().await;
        assert!(matches!(r, Err(QueueError::Unavailable(_))), "{r:?}");
    }
}
