//! A job as stored: a `jobs` row (with its `job_log` lines) read back into a
//! [`Job`], timestamps as unix milliseconds, and a row that cannot be read
//! reported as a corrupt job rather than an unavailable database. Apart from the
//! transactions because every read goes through it, whatever it is part of.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, Row};

use super::DbResult;
use crate::domain::{ClientId, JobId, TaskclusterName, WorkerGroup, WorkerId};
use crate::queue::{Job, JobState, LogLine, QueueError, QueueOptions};
use crate::task::Task;

// A macro rather than a const so the column list can be spliced into SQL with
// `concat!` at compile time: no query text is ever built at run time.
macro_rules! job_columns {
    () => {
        "id, task, worker_id, worker_group, requester, origin, provisioner_id, worker_type, \
         state, attempts, max_attempts, created_at, started_at, finished_at, consumer, \
         lease_until, result, error, touched, restore, reason"
    };
}
pub(super) use job_columns;

pub(super) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

pub(super) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Final jobs that finished before this instant are past retention.
pub(super) fn retention_cutoff(now: i64, options: &QueueOptions) -> i64 {
    now.saturating_sub(duration_ms(options.retention))
}

pub(super) fn ms_to_dt(id: &str, column: &str, ms: i64) -> Result<DateTime<Utc>, QueueError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| QueueError::Corrupt(id.to_string(), format!("{column} {ms} is out of range")))
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
pub(super) struct RawJob {
    pub(super) id: String,
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
    touched: i64,
    restore: Option<String>,
    reason: Option<String>,
}

impl RawJob {
    /// Read a row selected with `job_columns!()`. A column of the wrong type is
    /// a corrupt job, not an unavailable database.
    pub(super) fn from_row(row: &Row<'_>) -> Result<Self, QueueError> {
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
            touched: row.get(18).map_err(c)?,
            restore: row.get(19).map_err(c)?,
            reason: row.get(20).map_err(c)?,
            id,
        })
    }

    pub(super) fn into_job(self, log: Vec<LogLine>) -> Result<Job, QueueError> {
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
            reason: self.reason,
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
            touched: self.touched != 0,
            restore: self.restore,
        })
    }
}

pub(super) fn load_log(conn: &Connection, id: &str) -> Result<Vec<LogLine>, QueueError> {
    let mut stmt = conn.prepare_cached("SELECT at, line FROM job_log WHERE job_id = ?1 ORDER BY seq").db()?;
    let rows: Vec<(i64, String)> = stmt
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .db()?
        .collect::<rusqlite::Result<_>>()
        .map_err(|e| read_err(id, e))?;
    rows.into_iter().map(|(at, line)| Ok(LogLine { at: ms_to_dt(id, "log time", at)?, line })).collect()
}

/// One job, unless it is missing or past retention (`cutoff`, see [`retention_cutoff`]).
pub(super) fn load_job(conn: &Connection, id: &str, cutoff: i64) -> Result<Option<Job>, QueueError> {
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
pub(super) fn reload(conn: &Connection, id: &str) -> Result<Job, QueueError> {
    load_job(conn, id, i64::MIN)?
        .ok_or_else(|| QueueError::Unavailable(format!("job {id} vanished inside its own transaction")))
}
