//! The job queue: one trait, the job record and its state machine.
//!
//! Backends: `sqlite` (embedded, `roller serve` without `REDIS_URL`) and
//! `redis` (distributed mode: several API and worker processes on one Redis or
//! Redis Cluster). Both pass the shared conformance suite in `conformance`.
//!
//! Semantics every backend provides:
//! - at-least-once delivery with a lease: a job whose runner vanished is handed
//!   out again once `lease_until` has passed, with `attempts` incremented;
//! - a job is never delivered more than `max_attempts` times: when its lease
//!   expires on the last attempt it is marked `failed` with the reason, not re-run;
//!   except that a job whose runner armed a restore (it was cutting power, see
//!   [`Mark`]) is handed out again for that repair, at most [`RECOVERY_ATTEMPTS`]
//!   more times, so a machine is never left dark by a lost runner without a try;
//! - fencing: `finish`, `release`, `mark`, `expire` and `append_log` name the holder,
//!   and a holder that no longer holds the job gets `LostLease`;
//! - a per-machine lock: no job is reserved while another job for the same
//!   `worker_id` is `running` with a live lease;
//! - coalescing: enqueueing a (worker_id, worker_group, task) that is already
//!   `queued` or `running` returns the existing job;
//! - retention: a final job (and its log) disappears from `get` and `history`
//!   once it has been final for longer than [`QueueOptions::retention`]; queued
//!   and running jobs never expire;
//! - capped history: `history` returns at most [`QueueOptions::history_cap`]
//!   jobs per machine, the newest; final jobs older than that may be deleted.

pub mod records;
pub mod redis;
pub mod sqlite;

#[cfg(test)]
mod conformance;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::{ClientId, JobId, TaskclusterName, WorkerGroup, WorkerId};
use crate::task::Task;

/// Storage limits shared by every backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueOptions {
    /// How long a final job and its log are kept after it finished.
    pub retention: Duration,
    /// How many jobs per machine `history` keeps (newest first); at least 1.
    pub history_cap: usize,
}

impl QueueOptions {
    /// Seven days: long enough to look into last week's failures, short enough
    /// that the store of a busy fleet stays small.
    pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);
    pub const DEFAULT_HISTORY_CAP: usize = 100;

    /// The cap as used: a cap of 0 would hide even the running job of a machine.
    pub fn effective_history_cap(&self) -> usize {
        self.history_cap.max(1)
    }
}

impl Default for QueueOptions {
    fn default() -> Self {
        Self { retention: Self::DEFAULT_RETENTION, history_cap: Self::DEFAULT_HISTORY_CAP }
    }
}

/// Where a job is in its life. `queued → running → succeeded | failed | timed_out | cancelled`;
/// `running → queued` only when a lease expires or a runner hands the job back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
}

impl JobState {
    /// Every state, in the order of a job's life.
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::TimedOut,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::TimedOut => "timed_out",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "timed_out" => JobState::TimedOut,
            "cancelled" => JobState::Cancelled,
            _ => return None,
        })
    }

    pub fn is_final(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

/// What the API hands the queue. Holds ids and intent, never secrets.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub task: Task,
    /// How many times the queue may hand the job out (at least 1): the caller's
    /// retry policy, stored with the job (the API gives `Task::max_attempts`).
    pub max_attempts: u32,
    pub worker_id: WorkerId,
    pub worker_group: WorkerGroup,
    pub requester: ClientId,
    /// The `Origin` header of the request, for links in notifications.
    pub origin: Option<String>,
    pub provisioner_id: Option<TaskclusterName>,
    pub worker_type: Option<TaskclusterName>,
    /// Why it was asked for, when the requester says (the medic always does).
    pub reason: Option<String>,
}

/// One line of a job's log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub at: DateTime<Utc>,
    pub line: String,
}

/// A job as stored.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: JobId,
    pub task: Task,
    pub worker_id: WorkerId,
    pub worker_group: WorkerGroup,
    pub requester: ClientId,
    pub origin: Option<String>,
    pub provisioner_id: Option<TaskclusterName>,
    pub worker_type: Option<TaskclusterName>,
    pub reason: Option<String>,
    pub state: JobState,
    /// How many times the job has been handed to a runner.
    pub attempts: u32,
    pub max_attempts: u32,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Who holds the job while it is `running`, and until when.
    pub consumer: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub log: Vec<LogLine>,
    /// The action's result (JSON), if any: its report on success; for a job that did not
    /// succeed, what it found before it stopped (the evidence taken before a power cut).
    pub result: Option<serde_json::Value>,
    /// Why the job did not succeed.
    pub error: Option<String>,
    /// A command that changes power reached a device in some attempt ([`Mark::Touched`]):
    /// what the reboot-loop breaker counts.
    pub touched: bool,
    /// The repair a runner armed before cutting power and has not yet undone
    /// ([`Mark::Armed`]); opaque to the queue. A job whose lease expires with one is
    /// handed out again for the repair, whatever its attempts (at most
    /// [`RECOVERY_ATTEMPTS`] more), never to run its task again.
    pub restore: Option<String>,
}

/// How many attempts beyond `max_attempts` a job with an armed restore may be handed
/// out for its repair: the first recovery, and one more should that runner be lost too.
pub const RECOVERY_ATTEMPTS: u32 = 2;

/// What a running job records about the hardware before it acts, so that a lost
/// runner leaves a trace the next one can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// A command that changes power is about to reach a device.
    Touched,
    /// Power is about to be cut; this (opaque) repair restores it should the job be
    /// lost before it is undone.
    Armed(String),
    /// The power change completed (or was repaired): nothing to restore.
    Disarmed,
}

/// A running job and the holder of its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub id: JobId,
    pub holder: String,
}

/// An operator's override of the reboot-loop breaker for one machine: restarts
/// before `at` no longer count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerReset {
    pub at: DateTime<Utc>,
    /// The client id that asked.
    pub by: String,
    pub reason: String,
}

/// Breaker resets kept per machine (the audit trail; older ones are dropped).
pub const BREAKER_RESETS_KEPT: usize = 20;

/// The answer to an enqueue: the job, and whether it was created now or is an
/// existing queued/running job for the same machine and task (coalesced).
#[derive(Debug, Clone)]
pub struct Enqueued {
    pub job: Job,
    pub created: bool,
}

/// The queue's load at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Jobs waiting for a runner (including ones whose runner died and that await takeover).
    pub queued: u64,
    /// Jobs a runner holds a live lease on.
    pub running: u64,
    /// When the longest-waiting queued job was enqueued.
    pub oldest_queued: Option<DateTime<Utc>>,
    /// Queued jobs waiting for their machine's lock (another job runs on it).
    pub waiting_for_lock: u64,
}

/// One item of [`Queue::finish_many`]: the outcome of job `id`, held by `consumer`.
#[derive(Debug, Clone)]
pub struct Finished {
    pub id: JobId,
    pub consumer: String,
    pub outcome: Outcome,
}

/// How a reserved job ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Succeeded(serde_json::Value),
    Failed(Failure),
    TimedOut(Failure),
    Cancelled(Failure),
}

/// Why a job did not succeed (its `error`), and what its action found before it stopped,
/// if anything (the evidence it took before a power cut): kept as the job's `result`.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub error: String,
    pub result: Option<serde_json::Value>,
}

impl Failure {
    /// The same failure, the error rewritten (a repair's note added, say).
    pub fn map(self, f: impl FnOnce(String) -> String) -> Failure {
        Failure { error: f(self.error), result: self.result }
    }
}

impl From<String> for Failure {
    fn from(error: String) -> Failure {
        Failure { error, result: None }
    }
}

impl From<&str> for Failure {
    fn from(error: &str) -> Failure {
        Failure { error: error.to_string(), result: None }
    }
}

impl Outcome {
    pub fn state(&self) -> JobState {
        match self {
            Outcome::Succeeded(_) => JobState::Succeeded,
            Outcome::Failed(_) => JobState::Failed,
            Outcome::TimedOut(_) => JobState::TimedOut,
            Outcome::Cancelled(_) => JobState::Cancelled,
        }
    }

    /// The job's `result` and `error` as the record keeps them.
    pub fn record(&self) -> (Option<&serde_json::Value>, Option<&str>) {
        match self {
            Outcome::Succeeded(v) => (Some(v), None),
            Outcome::Failed(f) | Outcome::TimedOut(f) | Outcome::Cancelled(f) => (f.result.as_ref(), Some(&f.error)),
        }
    }
}

/// A queue backend failed. The API maps it to 503; the runner backs off and retries.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    #[error("queue backend unavailable: {0}")]
    Unavailable(String),
    /// The consumer no longer holds the job (its lease expired and it was taken
    /// over, or it already finished). The caller's result is discarded.
    #[error("job {0} is not held by this runner")]
    LostLease(JobId),
    #[error("stored job {0} is corrupt: {1}")]
    Corrupt(String, String),
}

/// The queue contract shared by every backend (semantics in the module docs).
///
/// Storage is bounded by [`QueueOptions`], given when a backend is opened: final
/// jobs and their logs disappear after `retention`, and `history` keeps at most
/// `history_cap` newest jobs per machine. Queued and running jobs never expire.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Store a new job, or return the queued/running one for the same
    /// (worker_id, worker_group, task).
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued, QueueError>;

    /// [`Queue::enqueue`] that first claims `nonce`, an accepted Hawk header's digest
    /// (replay protection, `auth::replay`), in the same atomic step, so an enqueue pays no
    /// round trip of its own for it: `None`, and nothing queued, when the digest is claimed
    /// already (the record `records::Records::claim_nonce` keeps); else the enqueue's
    /// answer (new or coalesced), with the digest recorded until `expires_at`.
    async fn enqueue_claiming(
        &self,
        job: NewJob,
        nonce: &[u8; 16],
        expires_at: SystemTime,
    ) -> Result<Option<Enqueued>, QueueError>;

    /// Hand out the oldest runnable job to `consumer` for `lease`: a queued job,
    /// or a running one whose lease expired, whose machine is not held by another
    /// live job. Marks it `running`, increments `attempts`, sets `started_at`.
    /// Jobs whose lease expired on their last allowed attempt are marked `failed`
    /// instead and never handed out.
    async fn reserve(&self, consumer: &str, lease: Duration) -> Result<Option<Job>, QueueError>;

    /// Up to `holders.len()` jobs at once, as `reserve` would hand them out one
    /// after another, each held by one of `holders` (its `consumer`; each hold has
    /// its own holder id, so each job is reclaimed, finished and fenced on its
    /// own), in the order of `holders`. Fewer, or none, when fewer are runnable.
    /// On an error any of the holders may hold a job: the caller reclaims each.
    ///
    /// The default asks `reserve` once per holder and returns what it got before
    /// an error (a local backend's error means that reservation did not happen);
    /// a backend where a call is a network round trip does them in one call (a
    /// drain is bounded by it).
    async fn reserve_many(&self, holders: &[String], lease: Duration) -> Result<Vec<Job>, QueueError> {
        let mut jobs = Vec::new();
        for holder in holders {
            match self.reserve(holder, lease).await {
                Ok(Some(job)) => jobs.push(job),
                Ok(None) => break,
                Err(e) if jobs.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        Ok(jobs)
    }

    /// The job `consumer` holds now, if any: how a runner whose `reserve` failed on
    /// the way back (the backend handed the job out, the answer was lost to a
    /// timeout or a crash) gets that job at once instead of leaving it stranded
    /// until its lease expires. `None` when nothing was handed out, or the job is
    /// no longer held by `consumer` (finished, released, taken over) or its lease
    /// has run out (it is anyone's then). A reclaimed job's lease starts again from
    /// now for `lease`, so the runner's clock and the queue's agree.
    async fn reclaim(&self, consumer: &str, lease: Duration) -> Result<Option<Job>, QueueError>;

    /// Append a line to a job's log, as `holder`: fenced like `finish`, so a runner
    /// whose job another runner took over cannot write into the new attempt's log.
    /// An unknown job, or one another holder holds or last held, is `LostLease`, so a
    /// runner never retries it. The job's last holder may still add lines after it
    /// finished; a job nobody holds (queued, or handed back) takes any holder's lines.
    async fn append_log(&self, id: JobId, holder: &str, line: &str) -> Result<(), QueueError>;

    /// Record `mark` on a job `holder` holds (running, its consumer): `LostLease`
    /// otherwise. `Touched` is sticky; `Armed` replaces any earlier restore;
    /// `Disarmed` clears it.
    async fn mark(&self, id: JobId, holder: &str, mark: Mark) -> Result<(), QueueError>;

    /// Every running job and its holder (live or expired lease): what a starting
    /// runner looks through for jobs whose holder process is provably gone.
    async fn running(&self) -> Result<Vec<Held>, QueueError>;

    /// End `holder`'s lease on a running job now (its process is gone), so the next
    /// reserve takes the job over at once instead of after the lease. `LostLease`
    /// when `holder` does not hold it.
    async fn expire(&self, id: JobId, holder: &str) -> Result<(), QueueError>;

    /// Record an operator's override of the reboot-loop breaker for `worker_id`.
    async fn reset_breaker(&self, worker_id: &WorkerId, reset: BreakerReset) -> Result<(), QueueError>;

    /// The machine's breaker overrides, newest first, at most `limit` (at most
    /// [`BREAKER_RESETS_KEPT`] are kept).
    async fn breaker_resets(&self, worker_id: &WorkerId, limit: usize) -> Result<Vec<BreakerReset>, QueueError>;

    /// Record the outcome of a job held by `consumer`.
    async fn finish(&self, id: JobId, consumer: &str, outcome: Outcome) -> Result<(), QueueError>;

    /// Several `finish`es in one call: one answer per item, in order (a job no
    /// longer held is `LostLease` without failing the rest). The outer error is
    /// for the call as a whole, when none of the answers is known.
    ///
    /// The default finishes one after another; a backend where a call is a
    /// network round trip does them together (a drain is bounded by it).
    async fn finish_many(&self, items: &[Finished]) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        let mut answers = Vec::with_capacity(items.len());
        for f in items {
            answers.push(self.finish(f.id, &f.consumer, f.outcome.clone()).await);
        }
        Ok(answers)
    }

    /// Give a held job back unfinished (graceful shutdown): it becomes `queued`
    /// at once, keeping its attempt count; on its last allowed attempt it is
    /// marked `failed` instead, so the retry cap holds.
    async fn release(&self, id: JobId, consumer: &str) -> Result<(), QueueError>;

    /// One job with its log.
    async fn get(&self, id: JobId) -> Result<Option<Job>, QueueError>;

    /// The most recent jobs for a machine, newest first, at most `limit`, with their logs.
    async fn history(&self, worker_id: &WorkerId, limit: usize) -> Result<Vec<Job>, QueueError>;

    /// Whether the backend can take writes now (for `/__heartbeat__`).
    async fn health(&self) -> Result<(), QueueError>;

    /// What is waiting and running now (for `/metrics`).
    async fn stats(&self) -> Result<QueueStats, QueueError>;

    /// Until `stop`: `wake.notify_one()` whenever another process signals that a
    /// job may have become runnable (enqueued, handed back, its machine freed), so
    /// an idle runner starts it at once rather than at its next poll. Backends
    /// without such a signal just wait for `stop`: the runner's poll finds the work.
    async fn watch_for_work(&self, wake: Arc<Notify>, stop: CancellationToken) {
        let _ = wake;
        stop.cancelled().await
    }
}
