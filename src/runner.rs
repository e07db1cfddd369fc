//! The runner: reserve jobs, run each action within the time limits, record
//! the outcomes.
//!
//! Jobs are reserved as many at once as there are free slots (at most
//! [`RESERVE_BATCH`] per queue call) and outcomes recorded by one task in
//! batches ([`FINISH_BATCH`]); each job keeps its own holder id all the same.
//! While idle the runner waits for the queue's wake-up (`Queue::watch_for_work`)
//! or its poll interval, whichever comes first.
//!
//! Concurrency is bounded by a semaphore (a reboot mostly waits, so the limit
//! is in the thousands). Each job gets a soft limit (the action's cancellation
//! token fires, state `timed_out` unless it still succeeds) and a hard limit
//! (the action's future is dropped; drivers spawn children with
//! `kill_on_drop`). On shutdown the runner stops reserving, lets running jobs
//! go on for a grace period, then hands the rest back to the queue.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use tracing::Instrument;

mod identity;
mod limits;
mod log;

use self::identity::{consumer_id, holder_process, hostname, roller_alive};
pub use self::limits::{Ended, Limits, outcome, run_with_limits, with_repair};
use self::log::{QueueJournal, QueueLog};
use crate::actions::restore::RESTORE_WITHIN;
use crate::actions::{self, ActionContext, ActionSettings, LogSink, Restore, Target};
use crate::config::RunnerSettings;
use crate::domain::JobId;
use crate::notify::Notifier;
use crate::queue::{Finished, Job, Outcome, Queue, QueueError};

/// Outcome recording stops retrying this long before the lease ends.
const RECORD_MARGIN: Duration = Duration::from_secs(5);

/// How long a finished job's remaining log lines may take to reach the backend.
const LOG_DRAIN: Duration = Duration::from_secs(5);

/// The most jobs one reserve call asks for: enough that a drain is not bounded by
/// one queue round trip per job, few enough that one runner does not take a
/// whole backlog while other runners sit idle.
pub const RESERVE_BATCH: usize = 64;

/// The most outcomes recorded in one queue call.
pub const FINISH_BATCH: usize = 64;

/// Log lines buffered per job before new ones are dropped (and counted).
const LOG_BUFFER: usize = 1024;

pub struct Runner {
    queue: Arc<dyn Queue>,
    settings: RunnerSettings,
    actions: Arc<ActionSettings>,
    consumer: String,
    /// Numbers each reservation, so every hold on a job has its own holder id.
    reservations: std::sync::atomic::AtomicU64,
    wake: Arc<Notify>,
    /// Who hears about jobs starting and ending (no one by default).
    notify: Notifier,
    /// Outcomes go to one task that records them in batches (see [`record_in_batches`]).
    finishes: mpsc::Sender<FinishRequest>,
    finish_queue: Option<mpsc::Receiver<FinishRequest>>,
}

/// What becomes of a job once its action (or its repair) has stopped.
enum Decision {
    Finish(Outcome),
    /// Back to the queue: shutdown took it, or a repair is still to be done.
    Release,
    /// The lease ran out under it: nothing is recorded, the next holder decides.
    Abandon,
}

/// An outcome to record, and where to say whether it was.
struct FinishRequest {
    item: Finished,
    reply: oneshot::Sender<Result<(), QueueError>>,
}

impl Runner {
    pub fn new(
        queue: Arc<dyn Queue>,
        settings: RunnerSettings,
        actions: Arc<ActionSettings>,
        wake: Arc<Notify>,
    ) -> Self {
        let (finishes, finish_queue) = mpsc::channel(FINISH_BATCH * 16);
        Self {
            queue,
            settings,
            actions,
            consumer: consumer_id(),
            reservations: Default::default(),
            wake,
            notify: Notifier::default(),
            finishes,
            finish_queue: Some(finish_queue),
        }
    }

    /// Tell people about the jobs this runner starts and ends.
    pub fn with_notifier(mut self, notify: Notifier) -> Self {
        self.notify = notify;
        self
    }

    /// This runner's identity in job records: host:pid:random.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Run jobs until `shutdown` fires, then wind down gracefully.
    pub async fn run_until_stopped(mut self, shutdown: CancellationToken) {
        let finish_queue = self.finish_queue.take();
        let this = Arc::new(self);
        let slots = Arc::new(Semaphore::new(this.settings.concurrency));
        let tracker = TaskTracker::new();
        let hand_back = CancellationToken::new();
        let mut backoff = this.settings.poll_interval;
        // Reservations whose answer was lost (a timeout, a backend crash): the queue
        // may have handed their jobs out, so they are reclaimed before anything else.
        let mut unanswered: Vec<String> = Vec::new();
        tracing::info!(consumer = %this.consumer, concurrency = this.settings.concurrency, "runner started");
        this.reclaim_orphans().await;
        let recorder = finish_queue.map(|rx| tokio::spawn(record_in_batches(this.queue.clone(), rx)));
        let stop_watching = CancellationToken::new();
        let watcher = tokio::spawn({
            let (queue, wake, stop) = (this.queue.clone(), this.wake.clone(), stop_watching.clone());
            async move { queue.watch_for_work(wake, stop).await }
        });
        loop {
            // Shutdown first: once it fired, no new job is taken, even with a slot free.
            let first = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            };
            // As many free slots as one call may fill: the queue hands them out together.
            let mut permits = vec![first];
            while permits.len() < RESERVE_BATCH {
                match slots.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            let reserved_at = tokio::time::Instant::now();
            let reclaiming = !unanswered.is_empty();
            let (holders, got) = if reclaiming {
                let holders: Vec<String> = unanswered.drain(..permits.len().min(unanswered.len())).collect();
                (Vec::new(), this.reclaim_all(holders, &mut unanswered).await)
            } else {
                // The holder id is per reservation, not per process: if this process's
                // lease on a job expires and it takes the same job over, the first run's
                // late outcome is refused (fencing), as another runner's would be.
                let holders: Vec<String> = (0..permits.len())
                    .map(|_| {
                        let n = this.reservations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        format!("{}#{n}", this.consumer)
                    })
                    .collect();
                let got = this.queue.reserve_many(&holders, this.settings.lease()).await;
                let got = got.map(|jobs| {
                    jobs.into_iter().filter_map(|j| j.consumer.clone().map(|holder| (holder, j))).collect::<Vec<_>>()
                });
                (holders, got)
            };
            match got {
                Ok(jobs) if !jobs.is_empty() => {
                    backoff = this.settings.poll_interval;
                    // Unused slots go back with the permits left in `permits`.
                    for ((holder, job), permit) in jobs.into_iter().zip(permits.drain(..)) {
                        let this = this.clone();
                        let hand_back = hand_back.clone();
                        tracker.spawn(async move {
                            this.run_job(job, holder, reserved_at, hand_back).await;
                            drop(permit);
                        });
                    }
                }
                // Nothing was handed out after all: look for work at once.
                Ok(_) if reclaiming => {}
                Ok(_) => {
                    drop(permits);
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => break,
                        _ = this.wake.notified() => {}
                        _ = tokio::time::sleep(this.settings.poll_interval) => {}
                    }
                }
                Err(e) => {
                    drop(permits);
                    // Only an unavailable backend may have done the work without answering;
                    // a corrupt record would fail the same way again and stall this runner.
                    if matches!(e, QueueError::Unavailable(_)) && !reclaiming {
                        unanswered.extend(holders);
                    }
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "runner cannot reserve jobs");
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        stop_watching.cancel();
        let _ = watcher.await;
        // One grace period for everything below, as the README promises.
        let grace_ends = tokio::time::Instant::now() + this.settings.shutdown_grace;
        // A reservation still unanswered may hold a job: give it back now rather than
        // leave it to its lease. Reclaimed with a short lease, so that if the hand-back
        // fails the job is soon anyone's again (best effort: the backend may be down).
        let hand_back_unanswered = async {
            for holder in unanswered {
                match this.queue.reclaim(&holder, RECORD_MARGIN).await {
                    Ok(Some(job)) => match this.queue.release(job.id, &holder).await {
                        Ok(()) => tracing::info!(job = %job.id, "handed back a job whose reservation went unanswered"),
                        Err(e) => {
                            tracing::warn!(job = %job.id, error = %e, "cannot hand back a job; its lease will decide")
                        }
                    },
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
        };
        let _ = tokio::time::timeout_at(grace_ends, hand_back_unanswered).await;
        tracker.close();
        if !tracker.is_empty() {
            tracing::info!(
                running = tracker.len(),
                grace_secs = this.settings.shutdown_grace.as_secs(),
                "runner stopping; waiting for running jobs"
            );
        }
        if tokio::time::timeout_at(grace_ends, tracker.wait()).await.is_err() {
            tracing::warn!(running = tracker.len(), "grace period over; handing running jobs back to the queue");
            hand_back.cancel();
            tracker.wait().await;
        }
        // Every job has its answer by now: nothing is waiting on the recorder.
        if let Some(recorder) = recorder {
            recorder.abort();
        }
        tracing::info!("runner stopped");
    }

    /// Jobs held by a roller process on this host that no longer exists (a crash, a
    /// SIGKILL, a reboot of the host): their leases end now, so the next reserve takes
    /// them over in seconds rather than after the whole lease. Holders on other hosts
    /// are left to their leases: their processes cannot be seen from here. Runners
    /// sharing a queue must have distinct host names (containers and pods do).
    async fn reclaim_orphans(&self) {
        let held = match self.queue.running().await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for jobs of dead runners on this host; their leases will decide");
                return;
            }
        };
        let (host, me) = (hostname(), std::process::id());
        for h in held {
            let Some((their_host, pid)) = holder_process(&h.holder) else { continue };
            if their_host != host || pid == me || roller_alive(pid) {
                continue;
            }
            match self.queue.expire(h.id, &h.holder).await {
                Ok(()) => {
                    tracing::info!(job = %h.id, holder = %h.holder, "runner process is gone; its job is taken over now")
                }
                Err(QueueError::LostLease(_)) => {}
                Err(e) => tracing::warn!(job = %h.id, error = %e, "cannot end a dead runner's lease; it will expire"),
            }
        }
    }

    /// Ask again for the jobs of reservations whose answer was lost. At the first
    /// unavailable answer the rest go back on `unanswered` untried (each try could
    /// wait out the backend's timeout); the error is returned only when nothing was
    /// reclaimed, so reclaimed jobs run at once.
    async fn reclaim_all(
        &self,
        holders: Vec<String>,
        unanswered: &mut Vec<String>,
    ) -> Result<Vec<(String, Job)>, QueueError> {
        let mut jobs = Vec::new();
        let mut holders = holders.into_iter();
        let mut failed = None;
        while let Some(holder) = holders.next() {
            match self.queue.reclaim(&holder, self.settings.lease()).await {
                Ok(Some(job)) => {
                    tracing::info!(job = %job.id, holder = %holder, "reclaimed a job whose reservation went unanswered");
                    jobs.push((holder, job));
                }
                Ok(None) => {}
                Err(e @ QueueError::Unavailable(_)) => {
                    unanswered.push(holder);
                    unanswered.extend(holders);
                    failed = Some(e);
                    break;
                }
                // Another answer would be the same next time: that holder is given up.
                Err(e) => failed = Some(e),
            }
        }
        match failed {
            Some(e) if jobs.is_empty() => Err(e),
            _ => Ok(jobs),
        }
    }

    /// Only once the outcome is recorded, and beside it: a slow notifier never
    /// holds a job's outcome back.
    fn count_and_notify(&self, job: &Job, o: &Outcome, started: std::time::Instant) {
        let task = job.task.name();
        metrics::counter!("roller_jobs_finished_total", "task" => task, "state" => o.state().as_str()).increment(1);
        metrics::histogram!("roller_job_duration_seconds", "task" => task).record(started.elapsed().as_secs_f64());
        self.notify.job_finished(job, o);
    }

    /// Whether the queue holds `outcome` for job `id` as recorded by `holder` (or, for
    /// a hand-back, the job waiting again): what a lost answer to a finish left behind.
    async fn recorded(&self, id: JobId, holder: &str, outcome: Option<&Outcome>) -> bool {
        match self.queue.get(id).await {
            Ok(Some(j)) => match outcome {
                Some(o) => j.state == o.state() && j.consumer.as_deref() == Some(holder),
                None => j.state == crate::queue::JobState::Queued,
            },
            _ => false,
        }
    }

    /// Record an outcome through the batching recorder (directly if it is gone).
    async fn finish(&self, id: JobId, holder: &str, outcome: Outcome) -> Result<(), QueueError> {
        let (reply, answer) = oneshot::channel();
        let item = Finished { id, consumer: holder.to_string(), outcome };
        if let Err(mpsc::error::SendError(req)) = self.finishes.send(FinishRequest { item, reply }).await {
            return self.queue.finish(id, holder, req.item.outcome).await;
        }
        answer.await.unwrap_or_else(|_| Err(QueueError::Unavailable("the outcome recorder stopped".into())))
    }

    async fn run_job(&self, job: Job, holder: String, reserved_at: tokio::time::Instant, hand_back: CancellationToken) {
        let id = job.id;
        let span = tracing::info_span!("job", task_id = %id, task = %job.task, worker_id = %job.worker_id, attempt = job.attempts);
        let _enter = span.enter();
        tracing::info!("job started");
        drop(_enter);
        self.notify.job_started(&job);
        let running = metrics::gauge!("roller_jobs_running");
        running.increment(1.0);
        let started = std::time::Instant::now();

        let (log, writer) = QueueLog::start(self.queue.clone(), id, holder.clone());
        let soft = CancellationToken::new();
        let journal = Arc::new(QueueJournal { queue: self.queue.clone(), id, holder: holder.clone() });
        let cx = ActionContext::new(self.actions.clone(), soft.clone(), log.clone())
            .with_journal(journal)
            .with_soft_deadline(std::time::Instant::now() + self.settings.soft_time_limit)
            .with_job(id.to_string(), job.requester.to_string())
            .with_worker_pool(
                job.provisioner_id.as_ref().map(|p| p.to_string()),
                job.worker_type.as_ref().map(|w| w.to_string()),
            );
        let target = Target { worker_id: job.worker_id.clone(), worker_group: job.worker_group.clone() };
        // The action must stop before this: past it, another runner may hold the job. Half
        // the lease margin after the hard limit: the hard limit always comes first, unless
        // the process was paused or stalled past its lease.
        let lease_guard = reserved_at + self.settings.hard_time_limit + self.settings.lease_margin / 2;
        // A repair may use the lease to its end, less the time to record the outcome.
        let repair_until =
            reserved_at + self.settings.lease().saturating_sub(RECORD_MARGIN.min(self.settings.lease_margin / 2));
        let limits = Limits {
            soft: self.settings.soft_time_limit,
            hard: self.settings.hard_time_limit,
            lease_guard: Some(lease_guard),
        };
        let subject = actions::Subject::new(target, self.actions.inventory.current());
        let decided = if let Some(record) = &job.restore {
            // A runner was lost while power was cut: this attempt repairs, the task is not run again.
            match self.recover(&job, record, &subject, &cx, repair_until).instrument(span.clone()).await {
                (o, true) => Decision::Finish(o),
                // Not repaired: back to the queue for another try (or failed, once its
                // recovery attempts are spent), the restore still armed.
                (_, false) => Decision::Release,
            }
        } else {
            // The job's span goes into the action, so every driver line names the job.
            // Called inside the span (at the first poll), so the action's own span is its child.
            let action = async { actions::dispatch(job.task, &subject, &cx).await }.instrument(span.clone());
            let ended = run_with_limits(action, limits, &soft, &hand_back).await;
            if let Ended::Finished(Err(e)) | Ended::AfterSoftLimit(Err(e)) = &ended {
                metrics::counter!("roller_job_errors_total", "task" => job.task.name(), "kind" => e.kind())
                    .increment(1);
            }
            let lease_lost = matches!(ended, Ended::LeaseLost);
            let outcome = outcome(ended, limits, cx.evidence().as_deref());
            match (lease_lost, cx.pending_restore(), outcome) {
                (true, ..) => Decision::Abandon,
                (false, None, Some(o)) => Decision::Finish(o),
                (false, None, None) => {
                    log.line("runner shutting down; job handed back to the queue".into());
                    Decision::Release
                }
                (false, Some(r), outcome) => {
                    match self.repair(&r, &subject, &cx, repair_until).instrument(span.clone()).await {
                        Ok(what) => {
                            log.line(format!("power restored: {what}"));
                            Decision::Finish(with_repair(outcome, &r, &what, "runner shutting down"))
                        }
                        Err(e) => {
                            log.line(format!(
                                "{}: the repair failed ({e}); the job goes back to the queue to repair it",
                                r.left()
                            ));
                            // The restore stays armed: the next reserve repairs (bounded attempts).
                            Decision::Release
                        }
                    }
                }
            }
        };
        running.decrement(1.0);
        let outcome = match decided {
            Decision::Abandon => {
                // Not a word to the job or the hardware: another runner may hold both now.
                tracing::error!(parent: &span, "the lease ran out under the job (was this process paused?); \
                     it stopped before its next step and leaves the job to its next holder");
                metrics::counter!("roller_leases_lost_total").increment(1);
                return;
            }
            Decision::Finish(o) => Some(o),
            Decision::Release => None,
        };
        if let Some(Outcome::TimedOut(why)) = &outcome {
            log.line(why.error.clone());
        }
        drop(cx);
        drop(log);
        // Log lines are written before the outcome, so a finished job's log is complete;
        // but a hung backend must not hold the outcome back for long.
        let _ = tokio::time::timeout(LOG_DRAIN, writer).await;
        self.record(&job, &holder, outcome, reserved_at, started, &span).await;
    }

    /// Record `outcome` (`None`: hand the job back), retrying while this runner still
    /// holds the lease (less a margin for the call itself): a busy or briefly
    /// unavailable backend must not lose an outcome; after that the lease expiry
    /// decides the job's fate.
    async fn record(
        &self,
        job: &Job,
        holder: &str,
        outcome: Option<Outcome>,
        reserved_at: tokio::time::Instant,
        started: std::time::Instant,
        span: &tracing::Span,
    ) {
        let id = job.id;
        let deadline = reserved_at + self.settings.lease().saturating_sub(RECORD_MARGIN);
        let mut delay = Duration::from_millis(250);
        // Whether an earlier try may have been recorded although its answer was lost.
        let mut uncertain = false;
        for attempt in 1.. {
            let result = match &outcome {
                Some(o) => self.finish(id, holder, o.clone()).await,
                None => self.queue.release(id, holder).await,
            };
            match result {
                Ok(()) => {
                    let state = outcome.as_ref().map(|o| o.state().as_str()).unwrap_or("queued");
                    tracing::info!(parent: span, state, "job finished");
                    if let Some(o) = &outcome {
                        self.count_and_notify(job, o, started);
                    }
                    return;
                }
                Err(QueueError::LostLease(_)) if uncertain && self.recorded(id, holder, outcome.as_ref()).await => {
                    // The earlier try went through; only its answer was lost.
                    tracing::info!(parent: span, "job outcome was recorded by an earlier try");
                    if let Some(o) = &outcome {
                        self.count_and_notify(job, o, started);
                    }
                    return;
                }
                Err(e @ QueueError::LostLease(_)) => {
                    tracing::error!(parent: span, error = %e, "job outcome discarded: another runner holds the job");
                    return;
                }
                Err(e) if tokio::time::Instant::now() + delay < deadline => {
                    uncertain |= matches!(e, QueueError::Unavailable(_));
                    tracing::warn!(parent: span, error = %e, attempt, "cannot record job outcome yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::error!(parent: span, error = %e, "cannot record job outcome; the lease will decide");
                    return;
                }
            }
        }
    }

    /// Carry out an armed restore, bounded by [`RESTORE_WITHIN`] and by `until` (the
    /// lease, less the time to record the outcome: past it the next holder repairs, and
    /// nothing is touched here). On success the restore is disarmed in the job record.
    async fn repair(
        &self,
        r: &Restore,
        subject: &actions::Subject,
        cx: &ActionContext,
        until: tokio::time::Instant,
    ) -> Result<String, String> {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err("this runner's lease ran out; the job's next holder repairs it".into());
        }
        cx.log(format!("the action stopped with power cut: {}", r.describe()));
        actions::restore::repair(r, subject, cx, RESTORE_WITHIN.min(left), CancellationToken::new()).await
    }

    /// A job whose runner was lost while power was cut: carry out the restore it
    /// armed, instead of the task. Returns the outcome to record and whether the
    /// repair worked (if not, the caller hands the job back for another try).
    async fn recover(
        &self,
        job: &Job,
        record: &str,
        subject: &actions::Subject,
        cx: &ActionContext,
        until: tokio::time::Instant,
    ) -> (Outcome, bool) {
        let lost = format!("runner lost the job (its lease expired) during {}", job.task);
        let r = match Restore::from_record(record) {
            Ok(r) => r,
            Err(e) => {
                let why = format!("{lost}; its repair cannot be read ({e}): check the machine's power by hand");
                cx.log(why.clone());
                return (Outcome::Failed(why.into()), true);
            }
        };
        cx.log(format!("{lost} with power cut: this attempt repairs ({}); the task is not run again", r.describe()));
        metrics::counter!("roller_power_repairs_total", "kind" => "takeover").increment(1);
        match self.repair(&r, subject, cx, until).await {
            Ok(what) => {
                cx.log(format!("power restored: {what}"));
                (Outcome::Failed(format!("{lost}; power restored: {what}").into()), true)
            }
            Err(e) => {
                cx.log(format!("{}: the repair failed ({e}); the job goes back to the queue to repair it", r.left()));
                (Outcome::Failed(String::new().into()), false)
            }
        }
    }
}

/// Record outcomes as they come, each call taking every one waiting (up to
/// [`FINISH_BATCH`]): one queue call for many jobs when many end together, and
/// no added wait when one ends alone.
async fn record_in_batches(queue: Arc<dyn Queue>, mut rx: mpsc::Receiver<FinishRequest>) {
    let mut batch = Vec::with_capacity(FINISH_BATCH);
    while rx.recv_many(&mut batch, FINISH_BATCH).await > 0 {
        let (items, replies): (Vec<Finished>, Vec<_>) = batch.drain(..).map(|r| (r.item, r.reply)).unzip();
        match queue.finish_many(&items).await {
            Ok(answers) => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(soft: u64, hard: u64) -> Limits {
        Limits::new(Duration::from_secs(soft), Duration::from_secs(hard))
    }

    #[tokio::test(start_paused = true)]
    async fn a_quick_action_finishes() {
        let (s, h) = (CancellationToken::new(), CancellationToken::new());
        let r = run_with_limits(async { 7 }, limits(1, 2), &s, &h).await;
        assert!(matches!(r, Ended::Finished(7)));
        assert!(!s.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn the_soft_limit_asks_a_cooperative_action_to_stop() {
        let (s, h) = (CancellationToken::new(), CancellationToken::new());
        let s2 = s.clone();
        let action = async move {
            s2.cancelled().await;
            "stopped"
        };
        let r = run_with_limits(action, limits(5, 10), &s, &h).await;
        assert!(matches!(r, Ended::AfterSoftLimit("stopped")));
    }

    #[tokio::test(start_paused = true)]
    async fn the_hard_limit_drops_an_action_that_ignores_the_soft_limit() {
        struct DropFlag(Arc<std::sync::atomic::AtomicBool>);
        impl Drop for DropFlag {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = DropFlag(dropped.clone());
        let (s, h) = (CancellationToken::new(), CancellationToken::new());
        let start = tokio::time::Instant::now();
        let action = async move {
            let _flag = flag;
            std::future::pending::<()>().await
        };
        let r = run_with_limits(action, limits(5, 10), &s, &h).await;
        assert!(matches!(r, Ended::HardLimit));
        assert!(s.is_cancelled(), "the soft limit fired first");
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst), "the action was dropped");
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }

    use crate::domain::WorkerId;

    /// A queue whose next reservation is carried out but whose answer is lost; with
    /// `down_until`, every answer to reserve and reclaim is lost until that token fires.
    struct LosesOneAnswer {
        inner: Arc<dyn Queue>,
        lose: std::sync::atomic::AtomicBool,
        down_until: Option<CancellationToken>,
    }

    impl LosesOneAnswer {
        fn down(&self) -> bool {
            self.down_until.as_ref().is_some_and(|t| !t.is_cancelled())
        }
    }

    #[async_trait::async_trait]
    impl Queue for LosesOneAnswer {
        async fn enqueue(&self, job: crate::queue::NewJob) -> Result<crate::queue::Enqueued, QueueError> {
            self.inner.enqueue(job).await
        }
        async fn enqueue_claiming(
            &self,
            job: crate::queue::NewJob,
            nonce: &[u8; 16],
            expires_at: std::time::SystemTime,
        ) -> Result<Option<crate::queue::Enqueued>, QueueError> {
            self.inner.enqueue_claiming(job, nonce, expires_at).await
        }
        async fn reserve(&self, consumer: &str, lease: Duration) -> Result<Option<Job>, QueueError> {
            let got = self.inner.reserve(consumer, lease).await?;
            if got.is_some() && self.down() {
                return Err(QueueError::Unavailable("the answer was lost on the way".into()));
            }
            if got.is_some() && self.lose.swap(false, std::sync::atomic::Ordering::SeqCst) {
                return Err(QueueError::Unavailable("the answer was lost on the way".into()));
            }
            Ok(got)
        }
        async fn reclaim(&self, consumer: &str, lease: Duration) -> Result<Option<Job>, QueueError> {
            if self.down() {
                return Err(QueueError::Unavailable("no answer".into()));
            }
            self.inner.reclaim(consumer, lease).await
        }
        async fn append_log(&self, id: JobId, holder: &str, line: &str) -> Result<(), QueueError> {
            self.inner.append_log(id, holder, line).await
        }
        async fn mark(&self, id: JobId, holder: &str, mark: crate::queue::Mark) -> Result<(), QueueError> {
            self.inner.mark(id, holder, mark).await
        }
        async fn running(&self) -> Result<Vec<crate::queue::Held>, QueueError> {
            self.inner.running().await
        }
        async fn expire(&self, id: JobId, holder: &str) -> Result<(), QueueError> {
            self.inner.expire(id, holder).await
        }
        async fn reset_breaker(&self, w: &WorkerId, r: crate::queue::BreakerReset) -> Result<(), QueueError> {
            self.inner.reset_breaker(w, r).await
        }
        async fn breaker_resets(
            &self,
            w: &WorkerId,
            limit: usize,
        ) -> Result<Vec<crate::queue::BreakerReset>, QueueError> {
            self.inner.breaker_resets(w, limit).await
        }
        async fn finish(&self, id: JobId, consumer: &str, outcome: Outcome) -> Result<(), QueueError> {
            self.inner.finish(id, consumer, outcome).await
        }
        async fn release(&self, id: JobId, consumer: &str) -> Result<(), QueueError> {
            self.inner.release(id, consumer).await
        }
        async fn get(&self, id: JobId) -> Result<Option<Job>, QueueError> {
            self.inner.get(id).await
        }
        async fn history(&self, worker_id: &WorkerId, limit: usize) -> Result<Vec<Job>, QueueError> {
            self.inner.history(worker_id, limit).await
        }
        async fn health(&self) -> Result<(), QueueError> {
            self.inner.health().await
        }
        async fn stats(&self) -> Result<crate::queue::QueueStats, QueueError> {
            self.inner.stats().await
        }
    }

    fn a_ping() -> crate::queue::NewJob {
        crate::queue::NewJob {
            task: crate::task::Task::Ping,
            max_attempts: crate::task::Task::Ping.max_attempts(),
            worker_id: WorkerId::parse("127.0.0.1").unwrap(),
            worker_group: crate::domain::WorkerGroup::parse("lab").unwrap(),
            requester: crate::domain::ClientId::parse("tester").unwrap(),
            origin: None,
            provisioner_id: None,
            worker_type: None,
            reason: None,
        }
    }

    /// A lease of an hour: a job left to it would outlast any of these tests.
    fn hour_lease_settings() -> RunnerSettings {
        RunnerSettings {
            concurrency: 4,
            soft_time_limit: Duration::from_secs(1800),
            hard_time_limit: Duration::from_secs(3540),
            lease_margin: Duration::from_secs(60),
            poll_interval: Duration::from_millis(20),
            shutdown_grace: Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn a_reservation_unanswered_at_shutdown_is_handed_back_not_left_to_its_lease() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Queue> =
            Arc::new(crate::queue::sqlite::SqliteQueue::open(&dir.path().join("q.db")).unwrap());
        let stop = CancellationToken::new();
        let queue =
            Arc::new(LosesOneAnswer { inner: inner.clone(), lose: false.into(), down_until: Some(stop.clone()) });
        let job = queue.enqueue(a_ping()).await.unwrap().job;
        let runner = Runner::new(
            queue.clone(),
            hour_lease_settings(),
            Arc::new(ActionSettings::default()),
            Arc::new(Notify::new()),
        );
        let running = tokio::spawn(runner.run_until_stopped(stop.clone()));
        // The backend took the job for the runner, which never heard of it.
        let mut held = false;
        for _ in 0..600 {
            if inner.get(job.id).await.unwrap().unwrap().state == crate::queue::JobState::Running {
                held = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(held, "the reservation was carried out");
        // Shutdown; the backend answers again from now on.
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), running).await.expect("the runner stops").unwrap();
        let j = inner.get(job.id).await.unwrap().unwrap();
        assert_ne!(j.state, crate::queue::JobState::Running, "stranded until its lease: {:?}", j.log);
        assert_eq!(j.attempts, 1, "{:?}", j.log);
    }

    #[tokio::test]
    async fn a_job_whose_reservation_answer_was_lost_runs_at_once_not_after_its_lease() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Queue> =
            Arc::new(crate::queue::sqlite::SqliteQueue::open(&dir.path().join("q.db")).unwrap());
        let queue = Arc::new(LosesOneAnswer { inner, lose: true.into(), down_until: None });
        let job = queue.enqueue(a_ping()).await.unwrap().job;
        let settings = hour_lease_settings();
        let runner = Runner::new(queue.clone(), settings, Arc::new(ActionSettings::default()), Arc::new(Notify::new()));
        let stop = CancellationToken::new();
        let running = tokio::spawn(runner.run_until_stopped(stop.clone()));
        let mut done = None;
        for _ in 0..600 {
            let j = queue.get(job.id).await.unwrap().unwrap();
            if j.state.is_final() {
                done = Some(j);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.cancel();
        running.await.unwrap();
        let done = done.expect("the job ran within 30 s although its reservation's answer was lost");
        assert_eq!(done.attempts, 1, "reclaimed, not run again: {:?}", done.log);
        assert!(done.state.is_final() && done.finished_at.is_some());
    }

    /// A `Write` the test subscriber writes its JSON lines into.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn driver_log_lines_name_the_job_they_belong_to() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .finish();
        // This test's runtime is single-threaded: the runner's tasks log through it.
        let _guard = tracing::subscriber::set_default(subscriber);

        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "not-sent").unwrap();
        // A BMC port where nothing answers: the driver logs its ipmitool call, then waits.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let text = format!(
            "[machines.bmc-host.ipmi]\naddress = \"127.0.0.1\"\nport = {}\nuser = \"u\"\npassword_file = {:?}\n",
            silent.local_addr().unwrap().port(),
            pw.display().to_string()
        );
        let inventory = crate::inventory::Inventory::parse(&dir.path().join("inv.toml"), &text).unwrap();
        let actions =
            ActionSettings { inventory: crate::inventory::InventoryHandle::new(inventory), ..Default::default() };
        let queue: Arc<dyn Queue> =
            Arc::new(crate::queue::sqlite::SqliteQueue::open(&dir.path().join("q.db")).unwrap());
        let new = crate::queue::NewJob {
            task: crate::task::Task::IpmiStatus,
            worker_id: WorkerId::parse("bmc-host").unwrap(),
            ..a_ping()
        };
        let job = queue.enqueue(new).await.unwrap().job;
        let runner = Runner::new(queue.clone(), hour_lease_settings(), Arc::new(actions), Arc::new(Notify::new()));
        let stop = CancellationToken::new();
        let running = tokio::spawn(runner.run_until_stopped(stop.clone()));
        let mut line = None;
        for _ in 0..600 {
            let text = String::from_utf8_lossy(&captured.0.lock().unwrap()).to_string();
            if let Some(l) = text.lines().find(|l| l.contains("running ipmitool")) {
                line = Some(l.to_string());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.cancel();
        running.await.unwrap();
        let line = line.expect("the ipmi driver logged its call within 30 s");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let spans = v["spans"].as_array().expect("the line carries its spans");
        let job_span = spans.iter().find(|s| s["name"] == "job").unwrap_or_else(|| panic!("no job span: {line}"));
        assert_eq!(job_span["task_id"], job.id.to_string(), "{line}");
        assert_eq!(job_span["worker_id"], "bmc-host", "{line}");
        assert!(spans.iter().any(|s| s["name"] == "action" && s["task"] == "ipmi_status"), "{line}");
        assert!(!line.contains("not-sent"), "the password never reaches a log line: {line}");
    }

    #[tokio::test(start_paused = true)]
    async fn hand_back_takes_the_job_away_before_its_end() {
        let (s, h) = (CancellationToken::new(), CancellationToken::new());
        h.cancel();
        let r = run_with_limits(std::future::pending::<()>(), limits(5, 10), &s, &h).await;
        assert!(matches!(r, Ended::HandedBack));
    }
}
