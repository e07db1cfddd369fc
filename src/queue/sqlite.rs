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

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, Transaction, TransactionBehavior};

use super::{Enqueued, Job, JobState, LogLine, NewJob, Outcome, Queue, QueueError, QueueOptions, QueueStats};
use crate::domain::{ClientId, JobId, TaskclusterName, WorkerGroup, WorkerId};
use crate::task::Task;

/// The schema this code writes and understands, kept in `PRAGMA user_version`.
/// Bump it (and add a migration step in [`migrate`]) whenever the schema changes.
pub const SCHEMA_VERSION: i64 = 2;

/// How long a normal call waits for another writer (another process, usually
/// the CLI) before reporting the queue unavailable.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Health must answer quickly: a heartbeat that hangs is worse than one that fails.
const HEALTH_BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// Below this much free space the heartbeat fails: a commit needs room for its
/// WAL frames and a checkpoint for the pages it copies back, and an operator
/// should hear about a filling disk before enqueues start failing.
const HEALTH_MIN_FREE_BYTES: u64 = 1 << 20;

// `seq` exists because `created_at` has millisecond resolution and jobs enqueued
// in the same millisecond still need a stable FIFO order; the implicit rowid is
// not used for that since VACUUM may renumber it.
//
// STRICT and the CHECKs make SQLite refuse wrongly typed or impossible values at
// write time, so a bug (or a hand-edited row) fails loudly instead of being read
// back as garbage later.
const SCHEMA: &str = "
CREATE TABLE jobs (
    id             TEXT    NOT NULL PRIMARY KEY,
    seq            INTEGER NOT NULL UNIQUE,
    task           TEXT    NOT NULL,
    worker_id      TEXT    NOT NULL,
    worker_group   TEXT    NOT NULL,
    requester      TEXT    NOT NULL,
    origin         TEXT,
    provisioner_id TEXT,
    worker_type    TEXT,
    state          TEXT    NOT NULL CHECK (state IN
                       ('queued', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled')),
    attempts       INTEGER NOT NULL CHECK (attempts >= 0),
    max_attempts   INTEGER NOT NULL CHECK (max_attempts >= 1),
    created_at     INTEGER NOT NULL,
    started_at     INTEGER,
    finished_at    INTEGER,
    consumer       TEXT,
    lease_until    INTEGER,
    result         TEXT,
    error          TEXT
) STRICT;
CREATE INDEX jobs_state_created ON jobs (state, created_at, seq);
CREATE INDEX jobs_worker_created ON jobs (worker_id, created_at, seq);
-- Coalescing is decided inside an IMMEDIATE transaction already; this index makes
-- a second active job for the same machine+group+task impossible even if some
-- other writer gets it wrong.
CREATE UNIQUE INDEX jobs_active_unique ON jobs (worker_id, worker_group, task)
    WHERE state IN ('queued', 'running');
-- Retention deletes by finished_at; only final jobs have one.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE job_log (
    job_id TEXT    NOT NULL REFERENCES jobs (id),
    seq    INTEGER NOT NULL,
    at     INTEGER NOT NULL,
    line   TEXT    NOT NULL,
    PRIMARY KEY (job_id, seq)
) STRICT;
";

// A macro rather than a const so the column list can be spliced into SQL with
// `concat!` at compile time: no query text is ever built at run time.
macro_rules! job_columns {
    () => {
        "id, task, worker_id, worker_group, requester, origin, provisioner_id, worker_type, \
         state, attempts, max_attempts, created_at, started_at, finished_at, consumer, \
         lease_until, result, error"
    };
}

/// Version 1 → 2: the retention index.
const MIGRATE_1_TO_2: &str = "CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;";

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

trait DbResult<T> {
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

/// Create the schema on a fresh file; accept the current version; refuse
/// anything else rather than guess at a layout this code does not know.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), QueueError> {
    // IMMEDIATE so two processes opening a new file at once do not both create tables.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).db()?;
    match version {
        0 => {
            let tables: i64 =
                tx.query_row("SELECT count(*) FROM sqlite_schema WHERE type = 'table'", [], |r| r.get(0)).db()?;
            if tables > 0 {
                return Err(QueueError::Unavailable(format!(
                    "{} is an SQLite database but not a roller queue (it has tables and no schema \
                     version); refusing to modify it",
                    path.display()
                )));
            }
            tx.execute_batch(SCHEMA).db()?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION).db()?;
        }
        1 => {
            tx.execute_batch(MIGRATE_1_TO_2).db()?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION).db()?;
        }
        SCHEMA_VERSION => {}
        v if v > SCHEMA_VERSION => {
            return Err(QueueError::Unavailable(format!(
                "queue database {} has schema version {v}, newer than this roller understands \
                 ({SCHEMA_VERSION}); run a newer roller or point it at another file",
                path.display()
            )));
        }
        v => {
            return Err(QueueError::Unavailable(format!(
                "queue database {} has unknown schema version {v} (this roller writes \
                 {SCHEMA_VERSION}); refusing to use it",
                path.display()
            )));
        }
    }
    tx.commit().db()
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Final jobs that finished before this instant are past retention.
fn retention_cutoff(now: i64, options: &QueueOptions) -> i64 {
    now.saturating_sub(duration_ms(options.retention))
}

/// Delete the final jobs past retention, with their logs.
fn purge_expired(tx: &Transaction<'_>, now: i64, options: &QueueOptions) -> Result<(), QueueError> {
    let cutoff = retention_cutoff(now, options);
    tx.execute("DELETE FROM job_log WHERE job_id IN (SELECT id FROM jobs WHERE finished_at < ?1)", [cutoff]).db()?;
    tx.execute("DELETE FROM jobs WHERE finished_at < ?1", [cutoff]).db()?;
    Ok(())
}

/// Delete a machine's final jobs that fell out of its newest `history_cap`.
/// Queued and running jobs are kept whatever their rank: they are still work.
fn trim_history(tx: &Transaction<'_>, worker_id: &str, options: &QueueOptions) -> Result<(), QueueError> {
    let cap = i64::try_from(options.effective_history_cap()).unwrap_or(i64::MAX);
    // A macro so the subquery is spliced in at compile time, like job_columns!.
    macro_rules! old_final {
        () => {
            "SELECT id FROM jobs
             WHERE worker_id = ?1 AND state NOT IN ('queued', 'running')
               AND id NOT IN (SELECT id FROM jobs WHERE worker_id = ?1
                              ORDER BY created_at DESC, seq DESC LIMIT ?2)"
        };
    }
    tx.execute(concat!("DELETE FROM job_log WHERE job_id IN (", old_final!(), ")"), rusqlite::params![worker_id, cap])
        .db()?;
    tx.execute(concat!("DELETE FROM jobs WHERE id IN (", old_final!(), ")"), rusqlite::params![worker_id, cap]).db()?;
    Ok(())
}

fn ms_to_dt(id: &str, column: &str, ms: i64) -> Result<DateTime<Utc>, QueueError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| QueueError::Corrupt(id.to_string(), format!("{column} {ms} is out of range")))
}

/// Append a log line with the job's next sequence number. Returns whether the
/// job exists (no row is inserted for an unknown job).
fn add_log(tx: &Transaction<'_>, id: &str, at: i64, line: &str) -> Result<bool, QueueError> {
    let n = tx
        .execute(
            "INSERT INTO job_log (job_id, seq, at, line)
             SELECT j.id,
                    (SELECT COALESCE(MAX(l.seq), 0) + 1 FROM job_log l WHERE l.job_id = j.id),
                    ?2, ?3
             FROM jobs j WHERE j.id = ?1",
            rusqlite::params![id, at, line],
        )
        .db()?;
    Ok(n == 1)
}

/// Fail the jobs whose lease expired on their last allowed attempt. Runs before
/// reserve picks (so such a job is never handed out again) and before enqueue
/// coalesces (so a new request is not folded into a job that is already dead).
fn fail_exhausted(tx: &Transaction<'_>, now: i64) -> Result<(), QueueError> {
    let lost: Vec<(String, i64, Option<String>)> = {
        let mut stmt = tx
            .prepare(
                "SELECT id, attempts, consumer FROM jobs
                 WHERE state = 'running' AND lease_until < ?1 AND attempts >= max_attempts",
            )
            .db()?;
        stmt.query_map([now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).db()?.collect::<rusqlite::Result<_>>().db()?
    };
    for (id, attempts, consumer) in lost {
        let reason = format!("runner lost the job (lease expired) after {attempts} attempt(s); not retried");
        tx.execute(
            "UPDATE jobs SET state = 'failed', finished_at = ?2, error = ?3, lease_until = NULL
             WHERE id = ?1",
            rusqlite::params![id, now, reason],
        )
        .db()?;
        let who = consumer.as_deref().unwrap_or("unknown runner");
        add_log(tx, &id, now, &format!("{reason} (last held by {who})"))?;
    }
    Ok(())
}

/// An error while reading a column: a value of the wrong type is a corrupt job;
/// anything else (I/O, locking) means the database is unavailable.
fn read_err(id: &str, e: rusqlite::Error) -> QueueError {
    match e {
        rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => QueueError::Corrupt(id.to_string(), e.to_string()),
        e => QueueError::Unavailable(format!("sqlite: {e}")),
    }
}

/// A jobs row as stored, before its strings are parsed back into domain types.
struct RawJob {
    id: String,
    task: String,
    worker_id: String,
    worker_group: String,
    requester: String,
    origin: Option<String>,
    provisioner_id: Option<String>,
    worker_type: Option<String>,
    state: String,
    attempts: i64,
    max_attempts: i64,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    consumer: Option<String>,
    lease_until: Option<i64>,
    result: Option<String>,
    error: Option<String>,
}

impl RawJob {
    /// Read a row selected with `job_columns!()`. A column of the wrong type is
    /// a corrupt job, not an unavailable database.
    fn from_row(row: &Row<'_>) -> Result<Self, QueueError> {
        let id: String = row.get(0).map_err(|e| read_err("(unreadable id)", e))?;
        let c = |e: rusqlite::Error| read_err(&id, e);
        Ok(Self {
            task: row.get(1).map_err(c)?,
            worker_id: row.get(2).map_err(c)?,
            worker_group: row.get(3).map_err(c)?,
            requester: row.get(4).map_err(c)?,
            origin: row.get(5).map_err(c)?,
            provisioner_id: row.get(6).map_err(c)?,
            worker_type: row.get(7).map_err(c)?,
            state: row.get(8).map_err(c)?,
            attempts: row.get(9).map_err(c)?,
            max_attempts: row.get(10).map_err(c)?,
            created_at: row.get(11).map_err(c)?,
            started_at: row.get(12).map_err(c)?,
            finished_at: row.get(13).map_err(c)?,
            consumer: row.get(14).map_err(c)?,
            lease_until: row.get(15).map_err(c)?,
            result: row.get(16).map_err(c)?,
            error: row.get(17).map_err(c)?,
            id,
        })
    }

    fn into_job(self, log: Vec<LogLine>) -> Result<Job, QueueError> {
        let id = self.id;
        let corrupt = |what: String| QueueError::Corrupt(id.clone(), what);
        let opt_dt = |column: &str, v: Option<i64>| v.map(|ms| ms_to_dt(&id, column, ms)).transpose();
        let opt_name = |kind: &str, v: Option<String>| {
            v.map(|s| TaskclusterName::parse(kind, &s).map_err(|e| corrupt(e.to_string()))).transpose()
        };
        Ok(Job {
            id: JobId::parse(&id).map_err(|e| corrupt(e.to_string()))?,
            task: Task::parse(&self.task).ok_or_else(|| corrupt(format!("unknown task {:?}", self.task)))?,
            worker_id: WorkerId::parse(&self.worker_id).map_err(|e| corrupt(e.to_string()))?,
            worker_group: WorkerGroup::parse(&self.worker_group).map_err(|e| corrupt(e.to_string()))?,
            requester: ClientId::parse(&self.requester).map_err(|e| corrupt(e.to_string()))?,
            origin: self.origin,
            provisioner_id: opt_name("provisioner_id", self.provisioner_id)?,
            worker_type: opt_name("worker_type", self.worker_type)?,
            state: JobState::parse(&self.state).ok_or_else(|| corrupt(format!("unknown state {:?}", self.state)))?,
            attempts: u32::try_from(self.attempts)
                .map_err(|_| corrupt(format!("attempts {} out of range", self.attempts)))?,
            max_attempts: u32::try_from(self.max_attempts)
                .map_err(|_| corrupt(format!("max_attempts {} out of range", self.max_attempts)))?,
            created_at: ms_to_dt(&id, "created_at", self.created_at)?,
            started_at: opt_dt("started_at", self.started_at)?,
            finished_at: opt_dt("finished_at", self.finished_at)?,
            consumer: self.consumer,
            lease_until: opt_dt("lease_until", self.lease_until)?,
            log,
            result: self
                .result
                .map(|s| serde_json::from_str(&s))
                .transpose()
                .map_err(|e| corrupt(format!("result is not JSON: {e}")))?,
            error: self.error,
        })
    }
}

fn load_log(conn: &Connection, id: &str) -> Result<Vec<LogLine>, QueueError> {
    let mut stmt = conn.prepare_cached("SELECT at, line FROM job_log WHERE job_id = ?1 ORDER BY seq").db()?;
    let rows: Vec<(i64, String)> = stmt
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .db()?
        .collect::<rusqlite::Result<_>>()
        .map_err(|e| read_err(id, e))?;
    rows.into_iter().map(|(at, line)| Ok(LogLine { at: ms_to_dt(id, "log time", at)?, line })).collect()
}

/// One job, unless it is missing or past retention (`cutoff`, see [`retention_cutoff`]).
fn load_job(conn: &Connection, id: &str, cutoff: i64) -> Result<Option<Job>, QueueError> {
    let mut stmt = conn
        .prepare_cached(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE id = ?1 AND (finished_at IS NULL OR finished_at >= ?2)"
        ))
        .db()?;
    let mut rows = stmt.query(rusqlite::params![id, cutoff]).db()?;
    let Some(row) = rows.next().db()? else {
        return Ok(None);
    };
    let raw = RawJob::from_row(row)?;
    let log = load_log(conn, &raw.id)?;
    raw.into_job(log).map(Some)
}

/// Like [`load_job`] for a row this transaction just wrote: its absence is a bug
/// in this module, reported as an error rather than a panic.
fn reload(conn: &Connection, id: &str) -> Result<Job, QueueError> {
    load_job(conn, id, i64::MIN)?
        .ok_or_else(|| QueueError::Unavailable(format!("job {id} vanished inside its own transaction")))
}

fn enqueue_tx(conn: &mut Connection, job: NewJob, options: &QueueOptions) -> Result<Enqueued, QueueError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
    let now = now_ms();
    purge_expired(&tx, now, options)?;
    fail_exhausted(&tx, now)?;
    let existing: Option<String> = tx
        .query_row(
            "SELECT id FROM jobs
             WHERE worker_id = ?1 AND worker_group = ?2 AND task = ?3
               AND state IN ('queued', 'running')
             LIMIT 1",
            rusqlite::params![job.worker_id.as_str(), job.worker_group.as_str(), job.task.name()],
            |r| r.get(0),
        )
        .optional()
        .db()?;
    let (id, created) = match existing {
        Some(id) => (id, false),
        None => {
            let id = JobId::new().to_string();
            tx.execute(
                "INSERT INTO jobs (id, seq, task, worker_id, worker_group, requester, origin,
                                   provisioner_id, worker_type, state, attempts, max_attempts,
                                   created_at)
                 VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs), ?2, ?3, ?4, ?5, ?6,
                         ?7, ?8, 'queued', 0, ?9, ?10)",
                rusqlite::params![
                    id,
                    job.task.name(),
                    job.worker_id.as_str(),
                    job.worker_group.as_str(),
                    job.requester.as_str(),
                    job.origin,
                    job.provisioner_id.as_ref().map(|n| n.as_str()),
                    job.worker_type.as_ref().map(|n| n.as_str()),
                    i64::from(job.max_attempts.max(1)),
                    now,
                ],
            )
            .db()?;
            trim_history(&tx, job.worker_id.as_str(), options)?;
            (id, true)
        }
    };
    let job = reload(&tx, &id)?;
    tx.commit().db()?;
    Ok(Enqueued { job, created })
}

/// The job reserve chose, as it was before this reservation.
struct Picked {
    id: String,
    state: String,
    attempts: i64,
    max_attempts: i64,
    consumer: Option<String>,
    lease_until: Option<i64>,
}

fn reserve_tx(
    conn: &mut Connection,
    consumer: &str,
    lease: Duration,
    options: &QueueOptions,
) -> Result<Option<Job>, QueueError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
    let now = now_ms();
    purge_expired(&tx, now, options)?;
    fail_exhausted(&tx, now)?;
    // After fail_exhausted, every running job with an expired lease still has
    // attempts left, so it is a candidate like a queued one. The NOT EXISTS is
    // the per-machine lock; skipping locked machines (rather than stopping at the
    // oldest job) is what keeps one busy machine from starving the others.
    let picked: Option<Picked> = tx
        .query_row(
            "SELECT j.id, j.state, j.attempts, j.max_attempts, j.consumer, j.lease_until
             FROM jobs j
             WHERE (j.state = 'queued' OR (j.state = 'running' AND j.lease_until < ?1))
               AND NOT EXISTS (
                   SELECT 1 FROM jobs o
                   WHERE o.worker_id = j.worker_id AND o.id <> j.id
                     AND o.state = 'running' AND o.lease_until >= ?1)
             ORDER BY j.created_at, j.seq
             LIMIT 1",
            [now],
            |r| {
                Ok(Picked {
                    id: r.get(0)?,
                    state: r.get(1)?,
                    attempts: r.get(2)?,
                    max_attempts: r.get(3)?,
                    consumer: r.get(4)?,
                    lease_until: r.get(5)?,
                })
            },
        )
        .optional()
        .db()?;
    let Some(Picked { id, state, attempts, max_attempts, consumer: old_consumer, lease_until: old_lease }) = picked
    else {
        // Commit, not roll back: fail_exhausted may have changed rows.
        tx.commit().db()?;
        return Ok(None);
    };
    let attempt = attempts.saturating_add(1);
    let lease_until = now.saturating_add(duration_ms(lease));
    // started_at is the start of this attempt, not the first one: after a
    // takeover it tells how long the current runner has been at it.
    tx.execute(
        "UPDATE jobs SET state = 'running', consumer = ?2, lease_until = ?3,
                         attempts = ?4, started_at = ?5
         WHERE id = ?1",
        rusqlite::params![id, consumer, lease_until, attempt, now],
    )
    .db()?;
    let mut line = format!("attempt {attempt} of {max_attempts} started by {consumer}");
    if state == "running" {
        let who = old_consumer.as_deref().unwrap_or("unknown runner");
        let when = old_lease
            .and_then(DateTime::from_timestamp_millis)
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "an unknown time".to_string());
        line.push_str(&format!(" (takeover: the lease of {who} expired at {when})"));
    } else if attempts > 0 {
        line.push_str(" (the job was handed back by its previous runner)");
    }
    add_log(&tx, &id, now, &line)?;
    let job = reload(&tx, &id)?;
    tx.commit().db()?;
    Ok(Some(job))
}

fn finish_tx(conn: &mut Connection, id: JobId, consumer: &str, outcome: Outcome) -> Result<(), QueueError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
    let now = now_ms();
    let (result, error) = match &outcome {
        Outcome::Succeeded(v) => (
            Some(
                serde_json::to_string(v)
                    .map_err(|e| QueueError::Unavailable(format!("cannot serialise the result of job {id}: {e}")))?,
            ),
            None,
        ),
        Outcome::Failed(e) | Outcome::TimedOut(e) | Outcome::Cancelled(e) => (None, Some(e.as_str())),
    };
    // A runner whose lease expired but was not taken over yet may still finish:
    // the work was done, and discarding it would only cause a needless re-run.
    // consumer is kept as the record of who ran the job.
    let n = tx
        .execute(
            "UPDATE jobs SET state = ?3, finished_at = ?4, result = ?5, error = ?6,
                             lease_until = NULL
             WHERE id = ?1 AND state = 'running' AND consumer = ?2",
            rusqlite::params![id.to_string(), consumer, outcome.state().as_str(), now, result, error],
        )
        .db()?;
    if n != 1 {
        return Err(QueueError::LostLease(id));
    }
    tx.commit().db()
}

fn release_tx(conn: &mut Connection, id: JobId, consumer: &str) -> Result<(), QueueError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
    let now = now_ms();
    let key = id.to_string();
    let held: Option<(i64, i64)> = tx
        .query_row(
            "SELECT attempts, max_attempts FROM jobs
             WHERE id = ?1 AND state = 'running' AND consumer = ?2",
            rusqlite::params![key, consumer],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .db()?;
    let Some((attempts, max_attempts)) = held else {
        return Err(QueueError::LostLease(id));
    };
    if attempts >= max_attempts {
        // Requeueing would hand the job out more than max_attempts times, which
        // for hardware-changing tasks is exactly what the cap forbids.
        let reason = format!(
            "handed back by {consumer} (shutdown) on its last allowed attempt \
             ({attempts} of {max_attempts}); not retried"
        );
        tx.execute(
            "UPDATE jobs SET state = 'failed', finished_at = ?2, error = ?3, lease_until = NULL
             WHERE id = ?1",
            rusqlite::params![key, now, reason],
        )
        .db()?;
        add_log(&tx, &key, now, &reason)?;
    } else {
        tx.execute("UPDATE jobs SET state = 'queued', consumer = NULL, lease_until = NULL WHERE id = ?1", [&key])
            .db()?;
        add_log(&tx, &key, now, &format!("handed back by {consumer} (shutdown)"))?;
    }
    tx.commit().db()
}

fn append_log_tx(conn: &mut Connection, id: JobId, line: &str, options: &QueueOptions) -> Result<(), QueueError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
    let now = now_ms();
    // A job past retention is gone here as it is for get.
    purge_expired(&tx, now, options)?;
    // No such job: LostLease tells a runner to stop writing for it; any other
    // error kind would make it back off and retry forever.
    if !add_log(&tx, &id.to_string(), now, line)? {
        return Err(QueueError::LostLease(id));
    }
    tx.commit().db()
}

fn history_tx(conn: &mut Connection, worker_id: &str, limit: i64, cutoff: i64) -> Result<Vec<Job>, QueueError> {
    // One read transaction so the jobs and their logs are one snapshot.
    let tx = conn.transaction().db()?;
    let raws = {
        let mut stmt = tx
            .prepare_cached(concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobs WHERE worker_id = ?1 AND (finished_at IS NULL OR finished_at >= ?3)
                  ORDER BY created_at DESC, seq DESC LIMIT ?2"
            ))
            .db()?;
        let mut rows = stmt.query(rusqlite::params![worker_id, limit, cutoff]).db()?;
        let mut raws = Vec::new();
        while let Some(row) = rows.next().db()? {
            raws.push(RawJob::from_row(row)?);
        }
        raws
    };
    let mut jobs = Vec::with_capacity(raws.len());
    for raw in raws {
        let log = load_log(&tx, &raw.id)?;
        jobs.push(raw.into_job(log)?);
    }
    tx.commit().db()?;
    Ok(jobs)
}

/// A fresh connection per check, so that it proves what a restart would find:
/// the file still exists (no CREATE flag — a deleted file is not silently
/// replaced by an empty one), is writable, and the write lock can be taken soon.
fn health_check(path: &Path) -> Result<(), QueueError> {
    let fail = |what: String| QueueError::Unavailable(format!("queue database {}: {what}", path.display()));
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| fail(format!("cannot open: {e}")))?;
    conn.busy_timeout(HEALTH_BUSY_TIMEOUT).map_err(|e| fail(e.to_string()))?;
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
    conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;").map_err(|e| fail(format!("cannot take the write lock: {e}")))
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
        self.with_conn(move |c| enqueue_tx(c, job, &options)).await
    }

    async fn reserve(&self, consumer: &str, lease: Duration) -> Result<Option<Job>, QueueError> {
        let consumer = consumer.to_string();
        let options = self.options;
        self.with_conn(move |c| reserve_tx(c, &consumer, lease, &options)).await
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

    async fn append_log(&self, id: JobId, line: &str) -> Result<(), QueueError> {
        let line = line.to_string();
        let options = self.options;
        self.with_conn(move |c| append_log_tx(c, id, &line, &options)).await
    }

    async fn finish(&self, id: JobId, consumer: &str, outcome: Outcome) -> Result<(), QueueError> {
        let consumer = consumer.to_string();
        self.with_conn(move |c| finish_tx(c, id, &consumer, outcome)).await
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
        tokio::task::spawn_blocking(move || health_check(&path))
            .await
            .map_err(|e| QueueError::Unavailable(format!("health check did not complete: {e}")))?
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
        drop(SqliteQueue::open(&path).unwrap());
        let raw = Connection::open(&path).unwrap();
        raw.execute_batch("DROP INDEX jobs_finished; PRAGMA user_version = 1;").unwrap();
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
