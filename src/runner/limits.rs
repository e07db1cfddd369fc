//! How an action runs under the job's limits: the soft limit (a cooperative stop),
//! the hard limit (dropped), a shutdown (handed back) and the lease (a runner paused
//! past it takes no further step); and the one mapping from how it ended to the
//! job's outcome, shared with `roller run`.

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::actions::report::Findings;
use crate::actions::{ActionError, Evidence, Report, Restore};
use crate::queue::{Failure, Outcome};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub soft: Duration,
    pub hard: Duration,
    /// When this runner's lease on the job runs out (less a margin): past it, the
    /// action must not take another step, whatever else is due.
    pub lease_guard: Option<tokio::time::Instant>,
}

impl Limits {
    /// The time limits alone (`roller run`: no queue, no lease).
    pub fn new(soft: Duration, hard: Duration) -> Self {
        Self { soft, hard, lease_guard: None }
    }
}

/// How an action's run ended.
#[derive(Debug)]
pub enum Ended<T> {
    Finished(T),
    /// It returned after the soft limit had asked it to stop.
    AfterSoftLimit(T),
    /// It was still running at the hard limit and was dropped.
    HardLimit,
    /// Shutdown took it away before it finished.
    HandedBack,
    /// The runner's lease ran out under it (the process was paused or stalled past
    /// it): dropped before its next step, since another runner may hold the job now.
    LeaseLost,
}

/// How an action's run becomes a job outcome: the one mapping, for the runner and
/// `roller run`. `None` when shutdown (or Ctrl-C) took the action away before it
/// finished, or the lease was lost: the runner hands the job back (or leaves it to
/// its new holder), `roller run` reports it interrupted. `evidence`: what the job took
/// before a power cut, kept in its result however it ended.
pub fn outcome(
    ended: Ended<Result<Report, ActionError>>,
    limits: Limits,
    evidence: Option<&Evidence>,
) -> Option<Outcome> {
    let failure = |error: String| Failure {
        error,
        result: evidence.map(|e| Report::from(Findings { evidence: Box::new(e.clone()) }).to_json()),
    };
    Some(match ended {
        Ended::Finished(Ok(r)) | Ended::AfterSoftLimit(Ok(r)) => {
            let r = match evidence {
                Some(e) => r.with_evidence(e),
                None => r,
            };
            Outcome::Succeeded(r.to_json())
        }
        Ended::Finished(Err(e)) => Outcome::Failed(failure(e.to_string())),
        Ended::AfterSoftLimit(Err(_)) => Outcome::TimedOut(failure(format!(
            "soft time limit of {}s reached; the action stopped",
            limits.soft.as_secs()
        ))),
        Ended::HardLimit => Outcome::TimedOut(failure(format!(
            "hard time limit of {}s reached; the action was aborted",
            limits.hard.as_secs()
        ))),
        Ended::HandedBack | Ended::LeaseLost => return None,
    })
}

/// Drive `fut` under the soft and hard limits and the lease. At the soft limit
/// `soft` is cancelled (the action's cooperative stop); at the hard limit, when
/// `hand_back` fires, or once the lease guard has passed, the future is dropped.
///
/// The clock is read on every wake-up, before the action is polled: after a pause
/// (SIGSTOP, a stalled VM) every timer is due at once, and which task would run
/// first is up to the scheduler; this way a lost lease always wins, and the action
/// never takes one more step (one more ICMP echo, one more command) after it.
pub async fn run_with_limits<F: Future>(
    fut: F,
    limits: Limits,
    soft: &CancellationToken,
    hand_back: &CancellationToken,
) -> Ended<F::Output> {
    let start = tokio::time::Instant::now();
    let (soft_at, hard_at) = (start + limits.soft, start + limits.hard);
    let mut fut = std::pin::pin!(fut);
    let mut soft_timer = std::pin::pin!(tokio::time::sleep_until(soft_at));
    let mut hard_timer = std::pin::pin!(tokio::time::sleep_until(hard_at));
    let mut lease_timer = std::pin::pin!(tokio::time::sleep_until(limits.lease_guard.unwrap_or(hard_at)));
    let mut handed_back = std::pin::pin!(hand_back.cancelled());
    let mut soft_fired = false;
    std::future::poll_fn(|cx| {
        let now = tokio::time::Instant::now();
        if limits.lease_guard.is_some_and(|g| now >= g) {
            return Poll::Ready(Ended::LeaseLost);
        }
        if hand_back.is_cancelled() {
            return Poll::Ready(Ended::HandedBack);
        }
        if now >= hard_at {
            return Poll::Ready(Ended::HardLimit);
        }
        if !soft_fired && now >= soft_at {
            soft.cancel();
            soft_fired = true;
        }
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(if soft_fired { Ended::AfterSoftLimit(out) } else { Ended::Finished(out) });
        }
        // Wake-ups for each limit; their readiness is read from the clock above.
        let _ = soft_timer.as_mut().poll(cx);
        let _ = hard_timer.as_mut().poll(cx);
        let _ = lease_timer.as_mut().poll(cx);
        let _ = handed_back.as_mut().poll(cx);
        Poll::Pending
    })
    .await
}

/// The outcome of an action that stopped with power cut and was repaired: what it
/// was, and that power was restored. An action taken away before its end (`taken`:
/// "runner shutting down", "interrupted") ends as cancelled rather than going back
/// to the queue: its task is not run again.
pub fn with_repair(outcome: Option<Outcome>, r: &Restore, what: &str, taken: &str) -> Outcome {
    metrics::counter!("roller_power_repairs_total", "kind" => "in_place").increment(1);
    let note = format!("power restored: {what}");
    match outcome {
        Some(Outcome::Succeeded(v)) => Outcome::Succeeded(v),
        Some(Outcome::Failed(f)) => Outcome::Failed(f.map(|e| format!("{e}; {note}"))),
        Some(Outcome::TimedOut(f)) => Outcome::TimedOut(f.map(|e| format!("{e}; {note}"))),
        Some(Outcome::Cancelled(f)) => Outcome::Cancelled(f.map(|e| format!("{e}; {note}"))),
        None => Outcome::Cancelled(format!("{taken} during {}; {note}", r.step()).into()),
    }
}
