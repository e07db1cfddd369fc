//! From observations to a health state, with the reason.
//!
//! In order (the first that applies wins):
//! 1. **held**: a hold is active (an operator's, or the medic's after repeated failures).
//! 2. **unknown**: no probe result, or one older than `stale_after`: roller does not
//!    know enough to say anything else.
//! 3. **quarantined**: Taskcluster quarantines the worker (it takes no tasks on purpose).
//! 4. **off**: the BMC or PDU says the power is off (a reading no older than `stale_after`).
//! 5. Answering its probe: **busy** when its latest run is running; **idle** when its
//!    latest run ended more than `idle_after` ago (or it never ran one) while its pool has
//!    pending tasks; else **ok**. An answering machine is never `hung`: RelOps' loops
//!    only reset hosts that do not answer, and neither does roller.
//! 6. Not answering: **hung** when the class's rule matches, else **down**.
//!
//! The hung rule, RelOps' (`keep_moonshot_carts_up`, with Taskcluster's real field
//! names: the run's end is `resolved`, not `ended`, and the latest task is the newest
//! of `recentTasks`), is: not answering AND any of
//! - the queue does not know the worker (silent for about a day, it expired),
//! - its latest task has no run while its pool has pending tasks,
//! - its latest run ended more than `idle_after` (30 min) ago while its pool has
//!   pending tasks,
//! - its latest run ended as `exception` (a hung worker stops reclaiming, and the queue
//!   resolves its run `exception`/`claim-expired` within about 20 minutes),
//! - its latest run started more than `running_after` (120 min) ago and never ended.
//!
//! Without Taskcluster observations (no pool configured, or not read yet) a machine that
//! does not answer is `down`, never `hung`: the medic acts on `hung` only.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Health, Hold, Observations, Power, State};

/// A class's rule: when a silent worker counts as hung, and when data is too old.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthRule {
    /// A run that ended longer ago than this, with work pending, is a worker not taking work.
    pub idle_after: Duration,
    /// A run started longer ago than this and still not ended is a worker stuck in it.
    pub running_after: Duration,
    /// Observations older than this are not trusted (`unknown`).
    pub stale_after: Duration,
}

impl Default for HealthRule {
    /// RelOps' thresholds (`IDLE_TIME_MAX_MINUTES = 30`, `RUN_TIME_MAX_MINUTES = 120`),
    /// and three sweeps' worth of the default probe cadence for staleness.
    fn default() -> Self {
        Self {
            idle_after: Duration::from_secs(30 * 60),
            running_after: Duration::from_secs(120 * 60),
            stale_after: Duration::from_secs(3 * 120),
        }
    }
}

impl HealthRule {
    /// This rule with a class's own thresholds (`[classes.<name>.health]`) in place.
    pub fn for_class(&self, c: &crate::inventory::ClassHealth) -> HealthRule {
        HealthRule {
            idle_after: c.idle_after.unwrap_or(self.idle_after),
            running_after: c.running_after.unwrap_or(self.running_after),
            stale_after: c.stale_after.unwrap_or(self.stale_after),
        }
    }
}

/// Minutes, for reasons people read.
fn mins(d: chrono::Duration) -> String {
    let m = d.num_minutes();
    if m < 120 { format!("{m} min") } else { format!("{} h", m / 60) }
}

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// The state of a machine with `obs` and `hold` at `now`, under `rule`.
pub fn classify(obs: &Observations, hold: Option<&Hold>, now: DateTime<Utc>, rule: &HealthRule) -> Health {
    let h = |state: State, reason: String| Health { state, reason };
    if let Some(hold) = hold.filter(|h| h.active(now)) {
        let until = hold.until.map(|u| format!(" until {}", u.to_rfc3339())).unwrap_or_default();
        return h(State::Held, format!("held by {}{until}: {}", hold.by, hold.reason));
    }
    let stale = chrono(rule.stale_after);
    let Some(probe) = obs.probe.as_ref() else {
        return h(State::Unknown, "not probed yet".into());
    };
    if probe.age(now) > stale {
        return h(State::Unknown, format!("last probed {} ago (older than {})", mins(probe.age(now)), mins(stale)));
    }
    let worker = obs.worker.as_ref().map(|w| &w.value);
    if let Some(until) = worker.and_then(|w| w.quarantine_until).filter(|u| *u > now) {
        return h(State::Quarantined, format!("quarantined in Taskcluster until {}", until.to_rfc3339()));
    }
    if let Some(p) = obs.power.as_ref().filter(|p| p.age(now) <= stale && p.value.state == Power::Off) {
        return h(State::Off, format!("{} reports the power off ({} ago)", p.value.source, mins(p.age(now))));
    }
    let task = worker.and_then(|w| w.latest_task.as_ref());
    let pending = worker.and_then(|w| w.pending).unwrap_or(0);
    if probe.value {
        if let Some(t) = task.filter(|t| t.state.as_deref() == Some("running") && t.resolved.is_none()) {
            let since = t.started.map(|s| format!(" for {}", mins(now - s))).unwrap_or_default();
            return h(State::Busy, format!("running task {}{since}", t.task_id));
        }
        let idle = match task.and_then(|t| t.resolved) {
            Some(r) => now - r > chrono(rule.idle_after),
            None => true,
        };
        if idle && pending > 0 {
            let last = task.and_then(|t| t.resolved).map(|r| format!("last task ended {} ago", mins(now - r)));
            return h(
                State::Idle,
                format!("answering, {}, {pending} tasks pending in its pool", last.unwrap_or("no task yet".into())),
            );
        }
        return h(State::Ok, "answering".into());
    }
    // Not answering: hung if the class's rule matches.
    let silent = format!("not answering its probe ({} ago)", mins(probe.age(now)));
    match hung(obs, now, rule) {
        Some(why) => h(State::Hung, format!("{silent}; {why}")),
        None => {
            let power = match obs.power.as_ref().map(|p| p.value.state) {
                Some(Power::On) => "power on",
                _ => "power unknown",
            };
            let tc = if worker.is_none() { "; no Taskcluster data to call it hung" } else { "" };
            h(State::Down, format!("{silent}, {power}{tc}"))
        }
    }
}

/// `h` with the path checks' verdict laid over it: a machine roller has no way left to
/// restart (`no_path`: the reason, from `paths::no_path`) is `no_path` whatever it would
/// otherwise be, with what it would otherwise be in the reason, so an operator fixes the
/// way in before it is needed. A hold still comes first: someone is on it.
pub fn with_paths(h: Health, no_path: Option<String>) -> Health {
    match no_path {
        Some(why) if h.state != State::Held => {
            Health { state: State::NoPath, reason: format!("{why} (otherwise {}: {})", h.state.as_str(), h.reason) }
        }
        _ => h,
    }
}

/// Why a silent machine is hung by the rule, if it is.
fn hung(obs: &Observations, now: DateTime<Utc>, rule: &HealthRule) -> Option<String> {
    let w = &obs.worker.as_ref()?.value;
    if !w.known {
        return Some(format!("Taskcluster no longer lists worker in {} (silent for about a day)", w.pool));
    }
    let pending = w.pending.unwrap_or(0);
    let Some(t) = w.latest_task.as_ref() else {
        return (pending > 0).then(|| format!("no task yet while {pending} tasks wait in {}", w.pool));
    };
    if t.state.is_none() && pending > 0 {
        return Some(format!("its latest task {} has no run while {pending} tasks wait in {}", t.task_id, w.pool));
    }
    if t.state.as_deref() == Some("exception") {
        let why = t.reason_resolved.as_deref().unwrap_or("exception");
        return Some(format!("its latest task {} ended as exception ({why})", t.task_id));
    }
    if let Some(r) = t.resolved
        && now - r > chrono(rule.idle_after)
        && pending > 0
    {
        return Some(format!("its latest task ended {} ago while {pending} tasks wait in {}", mins(now - r), w.pool));
    }
    if let Some(s) = t.started
        && t.resolved.is_none()
        && now - s > chrono(rule.running_after)
    {
        return Some(format!("its latest task {} started {} ago and never ended", t.task_id, mins(now - s)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::{PowerObs, Seen, TaskObs, WorkerObs};
    use super::*;

    fn t(mins_ago: i64) -> DateTime<Utc> {
        now() - chrono::Duration::minutes(mins_ago)
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn probed(answers: bool) -> Observations {
        Observations { probe: Some(Seen::new(t(1), answers)), ..Default::default() }
    }

    fn with_task(mut o: Observations, task: Option<TaskObs>, pending: u64) -> Observations {
        o.worker = Some(Seen::new(
            t(2),
            WorkerObs {
                pool: "releng-hardware/gecko-t-linux-talos".into(),
                known: true,
                last_active: Some(t(40)),
                quarantine_until: None,
                latest_task: task,
                pending: Some(pending),
            },
        ));
        o
    }

    fn run(state: &str, started: i64, resolved: Option<i64>) -> Option<TaskObs> {
        Some(TaskObs {
            task_id: "T1".into(),
            run_id: 0,
            state: Some(state.into()),
            started: Some(t(started)),
            resolved: resolved.map(t),
            reason_resolved: (state == "exception").then(|| "claim-expired".into()),
        })
    }

    fn state(o: &Observations) -> State {
        classify(o, None, now(), &HealthRule::default()).state
    }

    #[test]
    fn the_relops_hung_rule_with_taskclusters_real_fields() {
        // Silent, last run ended 45 min ago, work pending: hung.
        let h =
            classify(&with_task(probed(false), run("completed", 60, Some(45)), 3), None, now(), &HealthRule::default());
        assert_eq!(h.state, State::Hung, "{}", h.reason);
        assert!(h.reason.contains("ended 45 min ago while 3 tasks wait"), "{}", h.reason);
        // The same with nothing pending: down, not hung (it may simply have no work).
        assert_eq!(state(&with_task(probed(false), run("completed", 60, Some(45)), 0)), State::Down);
        // Ended as exception (claim-expired): hung whatever is pending.
        assert_eq!(state(&with_task(probed(false), run("exception", 50, Some(25)), 0)), State::Hung);
        // Started 3 h ago, never ended: hung.
        assert_eq!(state(&with_task(probed(false), run("running", 180, None), 0)), State::Hung);
        // Started 1 h ago, still running, silent: down (a reboot mid-task would kill its work).
        assert_eq!(state(&with_task(probed(false), run("running", 60, None), 5)), State::Down);
        // The queue forgot the worker: hung.
        let mut gone = with_task(probed(false), None, 0);
        gone.worker.as_mut().unwrap().value.known = false;
        assert_eq!(state(&gone), State::Hung);
        // No Taskcluster data at all: down, never hung.
        let h = classify(&probed(false), None, now(), &HealthRule::default());
        assert_eq!(h.state, State::Down);
        assert!(h.reason.contains("no Taskcluster data"), "{}", h.reason);
    }

    #[test]
    fn an_answering_machine_is_busy_idle_or_ok_never_hung() {
        assert_eq!(state(&with_task(probed(true), run("running", 180, None), 5)), State::Busy);
        assert_eq!(state(&with_task(probed(true), run("completed", 60, Some(45)), 3)), State::Idle);
        assert_eq!(state(&with_task(probed(true), run("completed", 60, Some(45)), 0)), State::Ok);
        assert_eq!(state(&with_task(probed(true), run("completed", 20, Some(5)), 3)), State::Ok);
        assert_eq!(state(&with_task(probed(true), run("exception", 50, Some(25)), 0)), State::Ok);
    }

    #[test]
    fn holds_staleness_quarantine_and_power_come_first() {
        let hung = with_task(probed(false), run("exception", 50, Some(25)), 0);
        let hold = Hold { at: t(10), by: "ops".into(), reason: "bad RAM".into(), until: None };
        assert_eq!(classify(&hung, Some(&hold), now(), &HealthRule::default()).state, State::Held);
        let expired = Hold { until: Some(t(1)), ..hold };
        assert_eq!(classify(&hung, Some(&expired), now(), &HealthRule::default()).state, State::Hung);
        let mut old = hung.clone();
        old.probe = Some(Seen::new(t(30), false));
        let h = classify(&old, None, now(), &HealthRule::default());
        assert_eq!(h.state, State::Unknown, "{}", h.reason);
        assert_eq!(state(&Observations::default()), State::Unknown);
        let mut q = hung.clone();
        q.worker.as_mut().unwrap().value.quarantine_until = Some(now() + chrono::Duration::days(30));
        assert_eq!(state(&q), State::Quarantined);
        let mut off = hung.clone();
        off.power = Some(Seen::new(t(1), PowerObs { source: "ipmi".into(), state: Power::Off, error: None }));
        assert_eq!(state(&off), State::Off);
    }

    #[test]
    fn no_path_lies_over_every_state_but_held() {
        let hung = with_task(probed(false), run("exception", 50, Some(25)), 0);
        let h = with_paths(classify(&hung, None, now(), &HealthRule::default()), Some("no remediation path: x".into()));
        assert_eq!(h.state, State::NoPath);
        assert!(h.reason.starts_with("no remediation path: x (otherwise hung: "), "{}", h.reason);
        let ok = with_paths(classify(&probed(true), None, now(), &HealthRule::default()), Some("none".into()));
        assert_eq!(ok.state, State::NoPath, "found before it is needed, while the machine is fine");
        let hold = Hold { at: t(10), by: "ops".into(), reason: "bad RAM".into(), until: None };
        let held = with_paths(classify(&hung, Some(&hold), now(), &HealthRule::default()), Some("none".into()));
        assert_eq!(held.state, State::Held);
        assert_eq!(with_paths(classify(&hung, None, now(), &HealthRule::default()), None).state, State::Hung);
    }

    #[test]
    fn observations_survive_their_record() {
        let o = with_task(probed(false), run("completed", 60, Some(45)), 3);
        assert_eq!(Observations::from_record(&o.to_record()), o);
        assert_eq!(Observations::from_record("not json"), Observations::default());
    }
}
