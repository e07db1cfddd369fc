//! The `Queue` operations that take more than a statement or two, one
//! transaction each (`BEGIN IMMEDIATE` for the writes, see the module docs of
//! `sqlite`; one snapshot for a machine's history), with the sweeps the writes
//! run first: retention, the history cap, and jobs whose lease ran out on their
//! last attempt. Apart from the handle so the queue's rules in SQL read in one
//! place, without the async plumbing.

use std::time::Duration;

use chrono::DateTime;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::DbResult;
use super::records::claim_nonce_tx;
use super::row::{RawJob, duration_ms, job_columns, load_log, now_ms, reload, retention_cutoff};
use crate::domain::JobId;
use crate::queue::{
    BREAKER_RESETS_KEPT, BreakerReset, Enqueued, Held, Job, Mark, NewJob, Outcome, QueueError, QueueOptions,
    RECOVERY_ATTEMPTS,
};

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
/// A job with an armed restore is spared until its recovery attempts are spent
/// too: reserve hands it out for the repair.
fn fail_exhausted(tx: &Transaction<'_>, now: i64) -> Result<(), QueueError> {
    let lost: Vec<(String, i64, Option<String>, Option<String>)> = {
        let mut stmt = tx
            .prepare(
                "SELECT id, attempts, consumer, restore FROM jobs
                 WHERE state = 'running' AND lease_until < ?1 AND attempts >= max_attempts
                   AND (restore IS NULL OR attempts >= max_attempts + ?2)",
            )
            .db()?;
        stmt.query_map(rusqlite::params![now, RECOVERY_ATTEMPTS], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .db()?
            .collect::<rusqlite::Result<_>>()
            .db()?
    };
    for (id, attempts, consumer, restore) in lost {
        let reason = match restore {
            None => format!("runner lost the job (lease expired) after {attempts} attempt(s); not retried"),
            Some(r) => format!(
                "runner lost the job (lease expired) after {attempts} attempt(s), its recoveries included; \
                 the power change it left half-done was NOT undone: {r}"
            ),
        };
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

/// The enqueue; with `nonce` (a digest and its expiry in unix ms), claimed first in the
/// same transaction: `None`, nothing written, when it was claimed already.
pub(super) fn enqueue_tx(
    conn: &mut Connection,
    job: NewJob,
    options: &QueueOptions,
    nonce: Option<([u8; 16], i64)>,
) -> Result<Option<Enqueued>, QueueError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
    if let Some((digest, until)) = nonce
        && !claim_nonce_tx(&tx, &digest, until)?
    {
        return Ok(None);
    }
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
                                   created_at, reason)
                 VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs), ?2, ?3, ?4, ?5, ?6,
                         ?7, ?8, 'queued', 0, ?9, ?10, ?11)",
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
                    job.reason,
                ],
            )
            .db()?;
            trim_history(&tx, job.worker_id.as_str(), options)?;
            (id, true)
        }
    };
    let job = reload(&tx, &id)?;
    tx.commit().db()?;
    Ok(Some(Enqueued { job, created }))
}

/// The job reserve chose, as it was before this reservation.
struct Picked {
    id: String,
    state: String,
    attempts: i64,
    max_attempts: i64,
    consumer: Option<String>,
    lease_until: Option<i64>,
    restore: Option<String>,
    created_at: i64,
    seq: i64,
}

// One state per query, so each is an in-order walk of `jobs_state_created` that
// stops at the first free machine: `state = 'queued' OR (…)` in one query planned
// as two index searches merged and sorted, every queued row on every reserve
// (0.5 s at 90,000 queued; this is 3 ms).
pub(super) const RESERVE_QUEUED: &str =
    "SELECT j.id, j.state, j.attempts, j.max_attempts, j.consumer, j.lease_until, j.restore,
                                 j.created_at, j.seq
                          FROM jobs j
                          WHERE j.state = 'queued'
                            AND NOT EXISTS (
                                SELECT 1 FROM jobs o
                                WHERE o.worker_id = j.worker_id AND o.id <> j.id
                                  AND o.state = 'running' AND o.lease_until >= ?1)
                          ORDER BY j.created_at, j.seq
                          LIMIT 1";
pub(super) const RESERVE_EXPIRED: &str =
    "SELECT j.id, j.state, j.attempts, j.max_attempts, j.consumer, j.lease_until, j.restore,
                                  j.created_at, j.seq
                           FROM jobs j
                           WHERE j.state = 'running' AND j.lease_until < ?1
                             AND NOT EXISTS (
                                 SELECT 1 FROM jobs o
                                 WHERE o.worker_id = j.worker_id AND o.id <> j.id
                                   AND o.state = 'running' AND o.lease_until >= ?1)
                           ORDER BY j.created_at, j.seq
                           LIMIT 1";

/// The oldest runnable job of one kind (`queued`, or `running` with an expired lease)
/// whose machine no live lease holds. The NOT EXISTS is the per-machine lock; skipping
/// locked machines (rather than stopping at the oldest job) keeps one busy machine
/// from starving the others.
fn oldest(tx: &Transaction<'_>, now: i64, expired: bool) -> Result<Option<Picked>, QueueError> {
    tx.prepare_cached(if expired { RESERVE_EXPIRED } else { RESERVE_QUEUED })
        .db()?
        .query_row([now], |r| {
            Ok(Picked {
                id: r.get(0)?,
                state: r.get(1)?,
                attempts: r.get(2)?,
                max_attempts: r.get(3)?,
                consumer: r.get(4)?,
                lease_until: r.get(5)?,
                restore: r.get(6)?,
                created_at: r.get(7)?,
                seq: r.get(8)?,
            })
        })
        .optional()
        .db()
}

/// Hand out up to one job per holder, oldest first, in one transaction: what `reserve`
/// does once, `holders.len()` times, for one commit (a drain is bounded by commits).
pub(super) fn reserve_many_tx(
    conn: &mut Connection,
    holders: &[String],
    lease: Duration,
    options: &QueueOptions,
) -> Result<Vec<Job>, QueueError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
    let now = now_ms();
    purge_expired(&tx, now, options)?;
    fail_exhausted(&tx, now)?;
    let mut jobs = Vec::new();
    for holder in holders {
        // After fail_exhausted, every running job with an expired lease still has
        // attempts left, so it is a candidate like a queued one; the older goes first.
        let picked = match (oldest(&tx, now, false)?, oldest(&tx, now, true)?) {
            (Some(q), Some(e)) => Some(if (e.created_at, e.seq) < (q.created_at, q.seq) { e } else { q }),
            (q, e) => q.or(e),
        };
        let Some(p) = picked else { break };
        jobs.push(hand_out(&tx, p, holder, now, lease)?);
    }
    // Commit even with nothing picked: fail_exhausted may have changed rows.
    tx.commit().db()?;
    Ok(jobs)
}

/// Give `p` to `consumer` for `lease`, with its log line.
fn hand_out(tx: &Transaction<'_>, p: Picked, consumer: &str, now: i64, lease: Duration) -> Result<Job, QueueError> {
    let Picked { id, state, attempts, max_attempts, consumer: old_consumer, lease_until: old_lease, restore, .. } = p;
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
        if restore.is_some() {
            line.push_str("; it was cutting power: this attempt repairs, the task is not run again");
        }
    } else if attempts > 0 {
        line.push_str(" (the job was handed back by its previous runner)");
    }
    add_log(tx, &id, now, &line)?;
    reload(tx, &id)
}

pub(super) fn finish_tx(conn: &mut Connection, id: JobId, consumer: &str, outcome: Outcome) -> Result<(), QueueError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
    finish_in(&tx, id, consumer, &outcome)?;
    tx.commit().db()
}

/// Several finishes in one transaction, one answer each (a job no longer held is
/// `LostLease` without failing the rest).
pub(super) fn finish_many_tx(
    conn: &mut Connection,
    items: &[crate::queue::Finished],
) -> Result<Vec<Result<(), QueueError>>, QueueError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
    let mut answers = Vec::with_capacity(items.len());
    for f in items {
        match finish_in(&tx, f.id, &f.consumer, &f.outcome) {
            Err(QueueError::LostLease(id)) => answers.push(Err(QueueError::LostLease(id))),
            // Anything else is the database's: the whole call failed, nothing committed.
            Err(e) => return Err(e),
            Ok(()) => answers.push(Ok(())),
        }
    }
    tx.commit().db()?;
    Ok(answers)
}

fn finish_in(tx: &Transaction<'_>, id: JobId, consumer: &str, outcome: &Outcome) -> Result<(), QueueError> {
    let now = now_ms();
    let (result, error) = outcome.record();
    let result = result
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| QueueError::Unavailable(format!("cannot serialise the result of job {id}: {e}")))?;
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
    Ok(())
}

pub(super) fn release_tx(conn: &mut Connection, id: JobId, consumer: &str) -> Result<(), QueueError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
    let now = now_ms();
    let key = id.to_string();
    let held: Option<(i64, i64, Option<String>)> = tx
        .query_row(
            "SELECT attempts, max_attempts, restore FROM jobs
             WHERE id = ?1 AND state = 'running' AND consumer = ?2",
            rusqlite::params![key, consumer],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .db()?;
    let Some((attempts, max_attempts, restore)) = held else {
        return Err(QueueError::LostLease(id));
    };
    // A job handed back with a power change still to repair goes back for the repair
    // (within its recovery attempts), never to run its task again.
    let cap = if restore.is_some() { max_attempts + i64::from(RECOVERY_ATTEMPTS) } else { max_attempts };
    if attempts >= cap {
        // Requeueing would hand the job out more than max_attempts times, which
        // for hardware-changing tasks is exactly what the cap forbids.
        let reason = match restore {
            None => format!(
                "handed back by {consumer} (shutdown) on its last allowed attempt \
                 ({attempts} of {max_attempts}); not retried"
            ),
            Some(r) => format!(
                "handed back by {consumer} with its repair not done, after {attempts} attempt(s); \
                 the power change it left half-done was NOT undone: {r}"
            ),
        };
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

pub(super) fn append_log_tx(
    conn: &mut Connection,
    id: JobId,
    holder: &str,
    line: &str,
    options: &QueueOptions,
) -> Result<(), QueueError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
    let now = now_ms();
    // A job past retention is gone here as it is for get.
    purge_expired(&tx, now, options)?;
    let key = id.to_string();
    // Fenced like finish: a runner whose job another runner took over writes nothing
    // into the new attempt's log. No such job, or not ours: LostLease tells a runner
    // to stop writing for it; any other error kind would make it retry forever.
    let ours: bool = tx
        .query_row(
            "SELECT count(*) FROM jobs WHERE id = ?1 AND (consumer IS NULL OR consumer = ?2)",
            rusqlite::params![key, holder],
            |r| r.get::<_, i64>(0),
        )
        .db()?
        == 1;
    if !ours || !add_log(&tx, &key, now, line)? {
        return Err(QueueError::LostLease(id));
    }
    tx.commit().db()
}

pub(super) fn mark_tx(conn: &mut Connection, id: JobId, holder: &str, mark: &Mark) -> Result<(), QueueError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
    let key = id.to_string();
    let held = rusqlite::params![key, holder];
    let n = match mark {
        Mark::Touched => {
            tx.execute("UPDATE jobs SET touched = 1 WHERE id = ?1 AND state = 'running' AND consumer = ?2", held)
        }
        Mark::Armed(r) => tx.execute(
            "UPDATE jobs SET restore = ?3 WHERE id = ?1 AND state = 'running' AND consumer = ?2",
            rusqlite::params![key, holder, r],
        ),
        Mark::Disarmed => {
            tx.execute("UPDATE jobs SET restore = NULL WHERE id = ?1 AND state = 'running' AND consumer = ?2", held)
        }
    }
    .db()?;
    if n != 1 {
        return Err(QueueError::LostLease(id));
    }
    tx.commit().db()
}

pub(super) fn running_tx(conn: &mut Connection) -> Result<Vec<Held>, QueueError> {
    let mut stmt = conn.prepare_cached("SELECT id, consumer FROM jobs WHERE state = 'running'").db()?;
    let rows: Vec<(String, Option<String>)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).db()?.collect::<rusqlite::Result<_>>().db()?;
    rows.into_iter()
        .map(|(id, holder)| {
            let job = JobId::parse(&id).map_err(|e| QueueError::Corrupt(id.clone(), e.to_string()))?;
            Ok(Held { id: job, holder: holder.unwrap_or_default() })
        })
        .collect()
}

pub(super) fn expire_tx(conn: &mut Connection, id: JobId, holder: &str) -> Result<(), QueueError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
    let now = now_ms();
    let key = id.to_string();
    // One millisecond in the past: "expired" is `lease_until < now` for every reader.
    let n = tx
        .execute(
            "UPDATE jobs SET lease_until = ?3 WHERE id = ?1 AND state = 'running' AND consumer = ?2",
            rusqlite::params![key, holder, now - 1],
        )
        .db()?;
    if n != 1 {
        return Err(QueueError::LostLease(id));
    }
    add_log(&tx, &key, now, &format!("the process of {holder} is gone; its lease ends now, not at its time"))?;
    tx.commit().db()
}

pub(super) fn reset_breaker_tx(conn: &mut Connection, worker_id: &str, reset: &BreakerReset) -> Result<(), QueueError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
    tx.execute(
        "INSERT INTO breaker_resets (worker_id, at, by, reason) VALUES (?1, ?2, ?3, ?4)",
        rusqlite::params![worker_id, reset.at.timestamp_millis(), reset.by, reset.reason],
    )
    .db()?;
    let kept = i64::try_from(BREAKER_RESETS_KEPT).unwrap_or(i64::MAX);
    tx.execute(
        "DELETE FROM breaker_resets WHERE worker_id = ?1 AND id NOT IN
             (SELECT id FROM breaker_resets WHERE worker_id = ?1 ORDER BY at DESC, id DESC LIMIT ?2)",
        rusqlite::params![worker_id, kept],
    )
    .db()?;
    tx.commit().db()
}

pub(super) fn breaker_resets_tx(
    conn: &mut Connection,
    worker_id: &str,
    limit: i64,
) -> Result<Vec<BreakerReset>, QueueError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT at, by, reason FROM breaker_resets WHERE worker_id = ?1 ORDER BY at DESC, id DESC LIMIT ?2",
        )
        .db()?;
    let rows: Vec<(i64, String, String)> = stmt
        .query_map(rusqlite::params![worker_id, limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()?;
    rows.into_iter()
        .map(|(at, by, reason)| {
            Ok(BreakerReset { at: super::row::ms_to_dt(worker_id, "breaker reset", at)?, by, reason })
        })
        .collect()
}

pub(super) fn history_tx(
    conn: &mut Connection,
    worker_id: &str,
    limit: i64,
    cutoff: i64,
) -> Result<Vec<Job>, QueueError> {
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
