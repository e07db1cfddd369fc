//! `roller run`: a task on one machine or many, in this process, without a queue,
//! through the runner's code path (same actions, same limits).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::fleet;
use super::output::{Row, report, say, summary};
use crate::actions::restore::RESTORE_WITHIN;
use crate::actions::{self, ActionContext, LogSink, Target, Task};
use crate::config::Settings;
use crate::domain::{WorkerGroup, WorkerId};
use crate::queue::Outcome;
use crate::runner::{Limits, run_with_limits};

struct StderrLog;

impl LogSink for StderrLog {
    fn line(&self, line: String) {
        eprintln!("{} {line}", chrono::Utc::now().format("%H:%M:%S%.3f"));
    }
}

/// `roller run`: the runner's code path (same action, same limits), without a queue.
pub async fn run_once(settings: Settings, task: &str, worker_id: &str, group: &str) -> anyhow::Result<ExitCode> {
    let task =
        Task::parse(task).with_context(|| format!("unknown task {task:?}; one of: {}", Task::list(Task::ALL)))?;
    let target = Target { worker_id: WorkerId::parse(worker_id)?, worker_group: WorkerGroup::parse(group)? };
    let actions = crate::startup::action_settings(&settings)?;
    crate::startup::load_inventory(&settings, &actions.inventory)?;
    let soft = CancellationToken::new();
    let interrupted = CancellationToken::new();
    let cx = ActionContext::new(Arc::new(actions), soft.clone(), Arc::new(StderrLog))
        .with_soft_deadline(std::time::Instant::now() + settings.runner.soft_time_limit);
    let repair_stop = on_ctrl_c(interrupted.clone());
    let limits = Limits::new(settings.runner.soft_time_limit, settings.runner.hard_time_limit);
    let outcome = run_and_repair(task, &target, &cx, limits, &soft, &interrupted, &repair_stop).await;
    let (ok, out) = outcome_json(outcome);
    say!("{}", serde_json::to_string_pretty(&out)?);
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The first Ctrl-C cancels `interrupted` (the action stops); the second cancels
/// the returned token, which stops a repair that is restoring power.
fn on_ctrl_c(interrupted: CancellationToken) -> CancellationToken {
    let repair_stop = CancellationToken::new();
    let stop = repair_stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            interrupted.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.cancel();
            }
        }
    });
    repair_stop
}

/// The task under the limits, then, if it stopped with power cut (Ctrl-C, a time
/// limit, a failure between the halves of a power change), the repair that
/// restores power, said plainly either way.
async fn run_and_repair(
    task: Task,
    target: &Target,
    cx: &ActionContext,
    limits: Limits,
    soft: &CancellationToken,
    interrupted: &CancellationToken,
    repair_stop: &CancellationToken,
) -> Option<Outcome> {
    let ended = run_with_limits(actions::execute(task, target, cx), limits, soft, interrupted).await;
    let outcome = crate::runner::outcome(ended, limits, cx.evidence().as_deref());
    let Some(r) = cx.pending_restore() else { return outcome };
    cx.log(format!("stopped with power cut: trying to {} (Ctrl-C again leaves it as it is)", r.describe()));
    let on = actions::Subject::new(target.clone(), cx.settings.inventory.current());
    match actions::restore::repair(&r, &on, cx, RESTORE_WITHIN, repair_stop.clone()).await {
        Ok(what) => {
            cx.log(format!("power restored: {what}"));
            Some(crate::runner::with_repair(outcome, &r, &what, "interrupted"))
        }
        Err(e) => {
            let left = format!("{}: the repair failed ({e}); restore it by hand", r.left());
            cx.log(left.clone());
            let (was, result) = match outcome {
                Some(Outcome::Failed(f) | Outcome::TimedOut(f) | Outcome::Cancelled(f)) => (f.error, f.result),
                Some(Outcome::Succeeded(v)) => ("succeeded".into(), Some(v)),
                None => ("interrupted".into(), None),
            };
            Some(Outcome::Failed(crate::queue::Failure { error: format!("{was}; {left}"), result }))
        }
    }
}

/// A `roller run` outcome as it prints: `{"state", "result"}` or `{"state", "error"}` (and
/// `"result"`, the evidence, when a failed job took some);
/// whether it succeeded. Ctrl-C before the end is `cancelled`, "interrupted".
fn outcome_json(outcome: Option<Outcome>) -> (bool, serde_json::Value) {
    let outcome = outcome.unwrap_or_else(|| Outcome::Cancelled("interrupted".into()));
    let state = outcome.state().as_str();
    match outcome {
        Outcome::Succeeded(v) => (true, serde_json::json!({ "state": state, "result": v })),
        Outcome::Failed(f) | Outcome::TimedOut(f) | Outcome::Cancelled(f) => {
            let mut out = serde_json::json!({ "state": state, "error": f.error });
            if let Some(r) = f.result {
                out["result"] = r;
            }
            (false, out)
        }
    }
}

/// A log sink that prefixes each line with the machine, for runs on many at once.
struct PrefixedLog(String);

impl LogSink for PrefixedLog {
    fn line(&self, line: String) {
        eprintln!("{} [{}] {line}", chrono::Utc::now().format("%H:%M:%S%.3f"), self.0);
    }
}

/// `roller run` on many machines: the same actions and limits in this process,
/// 16 at a time, then the summary table (or JSON).
pub async fn run_many(
    settings: Settings,
    task: &str,
    targets: Vec<(WorkerId, WorkerGroup)>,
    yes: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let task =
        Task::parse(task).with_context(|| format!("unknown task {task:?}; one of: {}", Task::list(Task::ALL)))?;
    fleet::confirm(task, &targets, settings.safety.confirm_above, yes)?;
    let actions = crate::startup::action_settings(&settings)?;
    crate::startup::load_inventory(&settings, &actions.inventory)?;
    let actions = Arc::new(actions);
    let limits = Limits::new(settings.runner.soft_time_limit, settings.runner.hard_time_limit);
    let interrupted = CancellationToken::new();
    let repair_stop = on_ctrl_c(interrupted.clone());
    let slots = Arc::new(tokio::sync::Semaphore::new(16));
    let mut set = tokio::task::JoinSet::new();
    for (n, (worker, group)) in targets.into_iter().enumerate() {
        let (actions, slots) = (actions.clone(), slots.clone());
        let (interrupted, repair_stop) = (interrupted.clone(), repair_stop.clone());
        set.spawn(async move {
            let _slot = slots.acquire().await;
            let soft = CancellationToken::new();
            let cx = ActionContext::new(actions, soft.clone(), Arc::new(PrefixedLog(worker.to_string())))
                .with_soft_deadline(std::time::Instant::now() + limits.soft);
            let target = Target { worker_id: worker.clone(), worker_group: group.clone() };
            let outcome = run_and_repair(task, &target, &cx, limits, &soft, &interrupted, &repair_stop).await;
            let (_, mut job) = outcome_json(outcome);
            let state = job.as_object_mut().and_then(|o| o.remove("state"));
            let state = state.and_then(|s| s.as_str().map(str::to_string)).unwrap_or_default();
            let row = Row {
                worker: worker.to_string(),
                group: group.to_string(),
                http: 200,
                task_id: None,
                state,
                detail: summary(&job),
                job,
            };
            (n, row)
        });
    }
    let mut rows = Vec::new();
    while let Some(r) = set.join_next().await {
        rows.push(r.context("a run failed to complete")?);
    }
    rows.sort_by_key(|(n, _)| *n);
    let rows: Vec<Row> = rows.into_iter().map(|(_, r)| r).collect();
    report(task, &rows, json)?;
    Ok(if rows.iter().all(|r| r.state == "succeeded") { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
