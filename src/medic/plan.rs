//! The gates, as a pure function of one snapshot of the fleet.
//!
//! Candidates are the machines whose class rule calls them `hung` (holds aside, so a
//! held machine is still counted and shown). Then:
//!
//! 1. **Freshness, per class**: at least `min_fresh` of the class's machines were
//!    probed within `fresh_within`, or none of the class is acted on (the detector's
//!    data is too old to trust). Each candidate's own probe and Taskcluster reading
//!    must be fresh as well.
//! 2. **Blast radius, fleet-wide**: more hung machines in one pool or class than
//!    `max_fraction` of it (never fewer than one machine), or more behind one chassis
//!    or on one PDU than their limit, and the medic acts on none at all this cycle
//!    and alerts: that many at once is an outage (a switch, a PDU, Taskcluster
//!    itself), which resets would only make worse. An operator's one-time batch
//!    override lets one such cycle act on at most that many.
//! 3. **Per machine**, in order: a hold; no path (every way the remediation could go
//!    failed its last path check, or none is configured: the job would be futile, so
//!    the medic alerts for a person instead); a remediation still in flight; another job
//!    queued or running (the per-machine lock); Taskcluster showing a fresh task
//!    running (busy); the reboot-loop breaker; what the remediation needs.
//!
//! What passes every gate gets `would_enqueue`; the cycle turns that into a job.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::memory::Memory;
use super::{BatchOverride, Decision, Gate, GateCheck, MedicSettings, Verdict};
use crate::health::rules::HealthRule;
use crate::health::{Health, Hold, Observations, State};
use crate::inventory::Machine;
use crate::task::Task;

/// One machine as the plan sees it.
pub struct Entry<'a> {
    pub machine: &'a Machine,
    pub obs: &'a Observations,
    pub rule: HealthRule,
    /// Its health with holds set aside.
    pub health: Health,
    /// Its active hold.
    pub hold: Option<&'a Hold>,
    pub memory: &'a Memory,
    /// A job for it that is queued or running (read for candidates only).
    pub active_job: Option<String>,
    /// Until when the breaker refuses a restart (read for candidates only).
    pub breaker_until: Option<DateTime<Utc>>,
    /// The class's remediation.
    pub remediation: Task,
    /// Why roller has no way left to run the remediation on it (`paths::no_path`), if so.
    pub no_path: Option<String>,
}

/// What the gates decided.
#[derive(Debug, Default)]
pub struct Plan {
    pub candidates: usize,
    pub gates: Vec<GateCheck>,
    pub decisions: Vec<Decision>,
    /// The blast-radius gate failed and the operator's batch override let it through.
    pub uses_override: bool,
    pub alerts: Vec<String>,
}

/// `<provisioner_id>/<worker_type>`.
pub fn pool_of(m: &Machine) -> Option<String> {
    Some(format!("{}/{}", m.provisioner_id.as_ref()?, m.worker_type.as_ref()?))
}

/// The enclosure machines share: the inventory's `chassis`, else their BMC (address
/// and port: cartridges behind one chassis manager share it, bridged to their node).
pub fn chassis_of(m: &Machine) -> Option<String> {
    m.chassis
        .clone()
        .or_else(|| m.ipmi.as_ref().map(|i| format!("{}:{}", i.address, i.port)))
        .or_else(|| m.redfish.as_ref().map(|r| r.url.clone()))
        .or_else(|| m.ilo.as_ref().map(|i| format!("{}:{}", i.address, i.port)))
}

fn pdu_of(m: &Machine) -> Option<String> {
    m.pdu.as_ref().map(|p| p.host.clone())
}

fn fresh(age: chrono::Duration, within: std::time::Duration) -> bool {
    age <= chrono::Duration::from_std(within).unwrap_or(chrono::Duration::MAX)
}

fn pct(x: f64) -> String {
    format!("{:.0} %", x * 100.0)
}

/// The plan for `entries` at `now`.
pub fn plan(entries: &[Entry<'_>], s: &MedicSettings, batch: Option<&BatchOverride>, now: DateTime<Utc>) -> Plan {
    let mut p = Plan::default();
    let hung = |e: &&Entry<'_>| e.health.state == State::Hung;
    p.candidates = entries.iter().filter(hung).count();

    // 1. Freshness per class.
    let mut classes: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for e in entries {
        let c = classes.entry(e.machine.class.name.as_str()).or_default();
        c.0 += 1;
        if e.obs.probe.as_ref().is_some_and(|p| fresh(p.age(now), s.fresh_within)) {
            c.1 += 1;
        }
    }
    let mut stale_classes = Vec::new();
    for (class, (all, seen)) in &classes {
        if !entries.iter().filter(hung).any(|e| e.machine.class.name == *class) {
            continue;
        }
        let share = *seen as f64 / (*all).max(1) as f64;
        let passed = share >= s.min_fresh;
        p.gates.push(GateCheck {
            gate: Gate::Freshness,
            scope: format!("class {class}"),
            passed,
            detail: format!(
                "{seen} of {all} machines ({}) probed in the last {} s; at least {} needed",
                pct(share),
                s.fresh_within.as_secs(),
                pct(s.min_fresh)
            ),
        });
        if !passed {
            stale_classes.push(*class);
        }
    }

    // 2. Blast radius over every group a hung machine is in.
    type Key = fn(&Machine) -> Option<String>;
    let groups: [(&str, Key, Option<usize>); 4] = [
        ("pool", pool_of, None),
        ("class", |m| Some(m.class.name.clone()), None),
        ("chassis", chassis_of, Some(s.max_per_chassis)),
        ("pdu", pdu_of, Some(s.max_per_pdu)),
    ];
    let mut blast_ok = true;
    for (kind, key, cap) in groups {
        let mut sizes: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for e in entries {
            if let Some(k) = key(e.machine) {
                let g = sizes.entry(k).or_default();
                g.0 += 1;
                g.1 += usize::from(e.health.state == State::Hung);
            }
        }
        for (name, (size, hung)) in sizes.into_iter().filter(|(_, (_, h))| *h > 0) {
            let allowed = cap.unwrap_or_else(|| ((size as f64 * s.max_fraction).floor() as usize).max(1));
            let passed = hung <= allowed;
            let limit = match cap {
                Some(c) => format!("at most {c} per {kind}"),
                None => {
                    format!("at most {} of {size} ({} of the {kind}, never fewer than 1)", allowed, pct(s.max_fraction))
                }
            };
            p.gates.push(GateCheck {
                gate: Gate::BlastRadius,
                scope: format!("{kind} {name}"),
                passed,
                detail: format!("{hung} hung; {limit}"),
            });
            if !passed {
                blast_ok = false;
                p.alerts.push(format!(
                    "{hung} machines hung in {kind} {name} ({limit}): the medic acts on none until fewer are, \
                     or an operator allows a batch once (roller medic allow --batch N --reason …)"
                ));
            }
        }
    }

    // 3. Per machine.
    let mut candidates: Vec<&Entry<'_>> = entries.iter().filter(hung).collect();
    candidates.sort_by(|a, b| a.machine.id.as_str().cmp(b.machine.id.as_str()));
    for e in candidates {
        let m = e.machine;
        let skip = |gate: Gate, detail: String| Some((gate, detail));
        let why: Option<(Gate, String)> = if stale_classes.contains(&m.class.name.as_str()) {
            skip(Gate::Freshness, format!("too little of class {} was observed recently", m.class.name))
        } else if let Some(d) = stale_self(e, s, now) {
            skip(Gate::Freshness, d)
        } else if let Some(h) = e.hold {
            skip(Gate::Hold, format!("held by {}: {}", h.by, h.reason))
        } else if let Some(why) = &e.no_path {
            p.alerts.push(format!("{} is hung and roller cannot remediate it: {why}; it needs a person", m.id));
            skip(Gate::NoPath, format!("{why}: {} would be futile, alerting instead", e.remediation))
        } else if let Some(r) = e.memory.in_flight() {
            skip(Gate::Remediating, format!("its remediation {} (job {}) is not finished", r.task_name, r.job_id))
        } else if let Some(j) = &e.active_job {
            skip(Gate::Lock, format!("job {j} for it is queued or running"))
        } else if let Some(d) = busy(e, now) {
            skip(Gate::Busy, d)
        } else if let Some(until) = e.breaker_until {
            skip(Gate::Breaker, format!("the reboot-loop breaker refuses restarts until {}", until.to_rfc3339()))
        } else if let Err(missing) = m.can_run(e.remediation) {
            skip(Gate::Capability, format!("{} cannot run: {missing}", e.remediation))
        } else {
            None
        };
        let (verdict, gate, detail) = match why {
            Some((g, d)) => (Verdict::Skipped, Some(g), d),
            None => (Verdict::WouldEnqueue, None, format!("every gate passed: {}", e.remediation)),
        };
        p.decisions.push(Decision {
            worker_id: m.id.to_string(),
            state: e.health.state,
            reason: e.health.reason.clone(),
            verdict,
            gate,
            detail,
            task_name: e.remediation.name().to_string(),
            job_id: None,
        });
    }

    if !blast_ok {
        let acting = p.decisions.iter().filter(|d| d.verdict == Verdict::WouldEnqueue).count();
        match batch.filter(|b| b.until > now && acting <= b.batch) {
            Some(b) if acting > 0 => {
                p.uses_override = true;
                p.gates.push(GateCheck {
                    gate: Gate::BlastRadius,
                    scope: "override".into(),
                    passed: true,
                    detail: format!("{} allowed a batch of {} once: {}", b.by, b.batch, b.reason),
                });
            }
            _ => {
                for d in p.decisions.iter_mut().filter(|d| d.verdict == Verdict::WouldEnqueue) {
                    d.verdict = Verdict::Skipped;
                    d.gate = Some(Gate::BlastRadius);
                    d.detail = "too many hung at once (see the blast-radius gates): acting on none".into();
                }
            }
        }
    }
    p
}

/// Why this machine's own observations are too old to act on, if they are.
fn stale_self(e: &Entry<'_>, s: &MedicSettings, now: DateTime<Utc>) -> Option<String> {
    let probe = e.obs.probe.as_ref()?;
    if !fresh(probe.age(now), s.fresh_within) {
        return Some(format!("its probe is {} s old", probe.age(now).num_seconds()));
    }
    match e.obs.worker.as_ref() {
        Some(w) if !fresh(w.age(now), s.worker_fresh_within) => {
            Some(format!("its Taskcluster reading is {} s old", w.age(now).num_seconds()))
        }
        _ => None,
    }
}

/// Whether Taskcluster shows the worker running a fresh task (started within the
/// class's `running_after`).
fn busy(e: &Entry<'_>, now: DateTime<Utc>) -> Option<String> {
    let t = e.obs.worker.as_ref()?.value.latest_task.as_ref()?;
    if t.state.as_deref() != Some("running") || t.resolved.is_some() {
        return None;
    }
    let started = t.started?;
    let limit = chrono::Duration::from_std(e.rule.running_after).unwrap_or(chrono::Duration::MAX);
    (now - started <= limit)
        .then(|| format!("Taskcluster shows it running task {} since {}", t.task_id, started.to_rfc3339()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::rules::classify;
    use crate::health::{Seen, TaskObs, WorkerObs};
    use crate::inventory::Inventory;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn ago(mins: i64) -> DateTime<Utc> {
        now() - chrono::Duration::minutes(mins)
    }

    /// `n` machines `m0…` in one pool and class; those in `chassis` share one BMC address.
    fn fleet(n: usize, shared_bmc: usize) -> Inventory {
        let mut t = String::from("[classes.mini]\n");
        for i in 0..n {
            t += &format!(
                "[machines.m{i}]\nclass = \"mini\"\nprovisioner_id = \"releng\"\nworker_type = \"t-mini\"\naddress = \"10.0.0.{i}\"\n"
            );
            let bmc = if i < shared_bmc { "10.9.9.9".to_string() } else { format!("10.9.0.{i}") };
            t += &format!("[machines.m{i}.ipmi]\naddress = \"{bmc}\"\nuser = \"u\"\npassword_env = \"P\"\n");
        }
        Inventory::parse(std::path::Path::new("test.toml"), &t).unwrap()
    }

    /// Answering and idle (`ok`), or silent with its last task ended 2 h ago and work pending (`hung`).
    fn obs(hung: bool, probed_mins_ago: i64) -> Observations {
        Observations {
            probe: Some(Seen::new(ago(probed_mins_ago), !hung)),
            power: None,
            worker: Some(Seen::new(
                ago(1),
                WorkerObs {
                    pool: "releng/t-mini".into(),
                    known: true,
                    last_active: Some(ago(120)),
                    quarantine_until: None,
                    latest_task: Some(TaskObs {
                        task_id: "T".into(),
                        run_id: 0,
                        state: Some("completed".into()),
                        started: Some(ago(130)),
                        resolved: Some(ago(120)),
                        reason_resolved: Some("completed".into()),
                    }),
                    pending: Some(5),
                },
            )),
        }
    }

    struct World {
        inv: Inventory,
        obs: Vec<Observations>,
        holds: Vec<Option<Hold>>,
        memory: Vec<Memory>,
        jobs: Vec<Option<String>>,
        breaker: Vec<Option<DateTime<Utc>>>,
        no_path: Vec<Option<String>>,
    }

    impl World {
        fn new(n: usize, hung: &[usize]) -> World {
            World::with_bmc(n, hung, 0)
        }

        fn with_bmc(n: usize, hung: &[usize], shared_bmc: usize) -> World {
            World {
                inv: fleet(n, shared_bmc),
                obs: (0..n).map(|i| obs(hung.contains(&i), 1)).collect(),
                holds: vec![None; n],
                memory: vec![Memory::default(); n],
                jobs: vec![None; n],
                breaker: vec![None; n],
                no_path: vec![None; n],
            }
        }

        fn plan(&self, s: &MedicSettings, batch: Option<&BatchOverride>) -> Plan {
            let rule = HealthRule::default();
            let entries: Vec<Entry<'_>> = (0..self.obs.len())
                .map(|i| {
                    let m = self.inv.machine(&crate::domain::WorkerId::parse(&format!("m{i}")).unwrap()).unwrap();
                    Entry {
                        machine: m,
                        obs: &self.obs[i],
                        rule,
                        health: classify(&self.obs[i], None, now(), &rule),
                        hold: self.holds[i].as_ref(),
                        memory: &self.memory[i],
                        active_job: self.jobs[i].clone(),
                        breaker_until: self.breaker[i],
                        remediation: Task::Reboot,
                        no_path: self.no_path[i].clone(),
                    }
                })
                .collect();
            plan(&entries, s, batch, now())
        }
    }

    fn verdicts(p: &Plan) -> Vec<(String, Verdict, Option<Gate>)> {
        p.decisions.iter().map(|d| (d.worker_id.clone(), d.verdict, d.gate)).collect()
    }

    #[test]
    fn one_hung_machine_in_twenty_passes_every_gate() {
        let p = World::new(20, &[3]).plan(&MedicSettings::default(), None);
        assert_eq!(p.candidates, 1);
        assert_eq!(verdicts(&p), vec![("m3".into(), Verdict::WouldEnqueue, None)]);
        assert!(p.gates.iter().all(|g| g.passed), "{:?}", p.gates);
        assert!(p.alerts.is_empty());
    }

    #[test]
    fn a_small_pool_may_still_have_one_machine_healed() {
        let p = World::new(5, &[0]).plan(&MedicSettings::default(), None);
        assert_eq!(verdicts(&p), vec![("m0".into(), Verdict::WouldEnqueue, None)]);
    }

    #[test]
    fn more_than_a_tenth_of_a_pool_hung_blocks_every_action_and_alerts() {
        // 3 of 25 = 12 %: more than 10 % (2 machines).
        let w = World::new(25, &[1, 2, 3]);
        let p = w.plan(&MedicSettings::default(), None);
        assert_eq!(p.candidates, 3);
        assert!(p.decisions.iter().all(|d| d.verdict == Verdict::Skipped && d.gate == Some(Gate::BlastRadius)));
        let blocked: Vec<_> = p.gates.iter().filter(|g| !g.passed).map(|g| g.scope.as_str()).collect();
        assert_eq!(blocked, vec!["pool releng/t-mini", "class mini"]);
        assert_eq!(p.alerts.len(), 2, "{:?}", p.alerts);
        assert!(p.alerts[0].contains("3 machines hung in pool releng/t-mini"), "{}", p.alerts[0]);

        // An operator's batch of 3 lets exactly that cycle act; a batch of 2 does not.
        let b = |batch| BatchOverride {
            batch,
            by: "ops".into(),
            reason: "rack power restored".into(),
            at: ago(1),
            until: ago(-30),
        };
        let p = w.plan(&MedicSettings::default(), Some(&b(3)));
        assert!(p.uses_override);
        assert!(p.decisions.iter().all(|d| d.verdict == Verdict::WouldEnqueue));
        let p = w.plan(&MedicSettings::default(), Some(&b(2)));
        assert!(!p.uses_override);
        assert!(p.decisions.iter().all(|d| d.gate == Some(Gate::BlastRadius)));
        // A lapsed override allows nothing.
        let lapsed = BatchOverride { until: ago(1), ..b(3) };
        assert!(!w.plan(&MedicSettings::default(), Some(&lapsed)).uses_override);
    }

    #[test]
    fn machines_behind_one_chassis_have_their_own_limit() {
        // 3 hung of 40 (7.5 %) but all behind one BMC: more than 2 per chassis.
        let p = World::with_bmc(40, &[0, 1, 2], 3).plan(&MedicSettings::default(), None);
        let blocked: Vec<_> = p.gates.iter().filter(|g| !g.passed).map(|g| g.scope.clone()).collect();
        assert_eq!(blocked, vec!["chassis 10.9.9.9:623".to_string()]);
        assert!(p.decisions.iter().all(|d| d.gate == Some(Gate::BlastRadius)));
    }

    #[test]
    fn moonshot_nodes_are_grouped_by_their_chassis_manager() {
        // 3 hung of 40, behind one chassis manager and no BMC: more than 2 per chassis.
        let mut t = String::from("[classes.mini]\n[classes.mini.moonshot]\nuser = \"u\"\npassword_env = \"P\"\n");
        for i in 0..40 {
            t += &format!(
                "[machines.m{i}]\nclass = \"mini\"\nprovisioner_id = \"releng\"\nworker_type = \"t-mini\"\n\
                 address = \"10.0.0.{i}\"\n[machines.m{i}.moonshot]\nchassis = \"moon-chassis-{}.inband\"\nnode = {}\n",
                if i < 3 { 3 } else { 100 + i },
                i % 45 + 1
            );
        }
        let mut w = World::new(40, &[0, 1, 2]);
        w.inv = Inventory::parse(std::path::Path::new("test.toml"), &t).unwrap();
        let p = w.plan(&MedicSettings::default(), None);
        let blocked: Vec<_> = p.gates.iter().filter(|g| !g.passed).map(|g| g.scope.clone()).collect();
        assert_eq!(blocked, vec!["chassis moon-chassis-3.inband".to_string()]);
    }

    #[test]
    fn a_class_observed_too_little_is_acted_on_not_at_all() {
        let mut w = World::new(10, &[0]);
        // 5 of 10 probed 30 min ago: 50 % < 65 %.
        for o in &mut w.obs[5..] {
            o.probe.as_mut().unwrap().at = ago(30);
        }
        let p =
            w.plan(&MedicSettings { fresh_within: std::time::Duration::from_secs(240), ..Default::default() }, None);
        assert_eq!(verdicts(&p), vec![("m0".into(), Verdict::Skipped, Some(Gate::Freshness))]);
        let g = p.gates.iter().find(|g| g.gate == Gate::Freshness).unwrap();
        assert!(!g.passed && g.detail.starts_with("5 of 10 machines (50 %)"), "{}", g.detail);
    }

    #[test]
    fn a_candidate_with_an_old_taskcluster_reading_is_left_alone() {
        let mut w = World::new(10, &[0]);
        w.obs[0].worker.as_mut().unwrap().at = ago(60);
        let p = w.plan(&MedicSettings::default(), None);
        assert_eq!(verdicts(&p), vec![("m0".into(), Verdict::Skipped, Some(Gate::Freshness))]);
    }

    #[test]
    fn per_machine_gates_each_leave_a_machine_alone_and_say_which() {
        let mut w = World::new(60, &[0, 1, 2, 3, 4, 5]);
        w.holds[0] = Some(Hold { at: ago(5), by: "ops".into(), reason: "bad disk".into(), until: None });
        w.memory[1].last = Some(crate::medic::memory::Remediation {
            job_id: "J1".into(),
            task_name: "reboot".into(),
            at: ago(3),
            reason: "hung".into(),
            outcome: None,
            detail: None,
            ended_at: None,
        });
        w.jobs[2] = Some("J2".into());
        // Busy: a run that started 10 min ago and is still running (the queue lost the
        // worker, so the rule calls it hung), but a fresh task is never cut short.
        if let Some(wk) = w.obs[3].worker.as_mut() {
            wk.value.known = false;
            let t = wk.value.latest_task.as_mut().unwrap();
            t.state = Some("running".into());
            t.started = Some(ago(10));
            t.resolved = None;
        }
        w.breaker[4] = Some(ago(-60));
        let p = w.plan(&MedicSettings { max_fraction: 0.5, ..Default::default() }, None);
        assert_eq!(
            verdicts(&p),
            vec![
                ("m0".into(), Verdict::Skipped, Some(Gate::Hold)),
                ("m1".into(), Verdict::Skipped, Some(Gate::Remediating)),
                ("m2".into(), Verdict::Skipped, Some(Gate::Lock)),
                ("m3".into(), Verdict::Skipped, Some(Gate::Busy)),
                ("m4".into(), Verdict::Skipped, Some(Gate::Breaker)),
                ("m5".into(), Verdict::WouldEnqueue, None),
            ]
        );
        assert!(p.decisions[0].detail.contains("bad disk"));
        assert!(p.decisions[3].detail.contains("running task T"), "{}", p.decisions[3].detail);
    }

    #[test]
    fn a_machine_without_a_path_is_not_remediated_but_escalated() {
        let mut w = World::new(60, &[0, 1]);
        w.no_path[0] = Some("no remediation path: every way roller could restart it failed its last check".into());
        w.holds[1] = Some(Hold { at: ago(5), by: "ops".into(), reason: "on it".into(), until: None });
        w.no_path[1] = w.no_path[0].clone();
        let p = w.plan(&MedicSettings { max_fraction: 0.5, ..Default::default() }, None);
        assert_eq!(
            verdicts(&p),
            vec![
                ("m0".into(), Verdict::Skipped, Some(Gate::NoPath)),
                ("m1".into(), Verdict::Skipped, Some(Gate::Hold))
            ]
        );
        assert!(p.decisions[0].detail.contains("failed its last check") && p.decisions[0].detail.contains("futile"));
        // One alert, for the machine nobody holds: a person must look.
        assert_eq!(p.alerts.len(), 1, "{:?}", p.alerts);
        assert!(p.alerts[0].starts_with("m0 is hung and roller cannot remediate it"), "{}", p.alerts[0]);
    }
}
