//! One medic cycle, and the loop that runs one every `every` while this process
//! holds the medic's lease (one medic at a time across processes sharing a backend).
//!
//! A cycle: follow up the remediations in flight (→ back in service, not taking work,
//! job failed; hold a machine after `hold_after` failures in a row); classify every
//! machine; read the history of the hung ones (the per-machine lock, the breaker);
//! [`plan`](super::plan::plan); queue what passed (unless dry run); record the cycle
//! and alert. A plan (`roller medic plan`) is the same reading and gates with no
//! writes at all.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::memory::{Memory, Remediation, follow_up};
use super::plan::{Entry, plan};
use super::{Audit, BatchOverride, Cycle, FollowUp, Gate, MedicSettings, REQUESTER, Verdict, keys};
use crate::breaker::BreakerRule;
use crate::domain::{ClientId, WorkerGroup, WorkerId};
use crate::health::rules::{HealthRule, classify};
use crate::health::{Hold, Observations, State};
use crate::inventory::InventoryHandle;
use crate::notify::Notifier;
use crate::paths::{PathRecord, no_path};
use crate::queue::records::{RecordKind, Records, while_held};
use crate::queue::{NewJob, Queue, QueueError};

/// The lease one medic holds.
pub const LEASE: &str = "medic";

/// Whether a cycle may change anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The loop: follows up, holds, records, and acts unless `dry_run`.
    Loop,
    /// Asked for (`roller medic plan`): reads and decides, writes nothing.
    Plan,
}

/// The medic of one process.
pub struct Medic {
    pub settings: MedicSettings,
    /// The fleet's health rule (classes may override it).
    pub rule: HealthRule,
    pub breaker: BreakerRule,
    pub queue: Arc<dyn Queue>,
    pub records: Arc<dyn Records>,
    pub inventory: InventoryHandle,
    pub notifier: Notifier,
    /// Wakes an in-process runner when a job is queued.
    pub wake: Arc<Notify>,
    /// This process, as the lease names it.
    pub holder: String,
    /// `[paths] enabled`: a machine with nothing its remediation could use configured
    /// counts as having no path (failed checks count either way).
    pub paths_checked: bool,
}

fn parse<T>(records: Vec<(String, String)>, f: impl Fn(&str) -> Option<T>) -> BTreeMap<String, T> {
    records.into_iter().filter_map(|(k, r)| Some((k, f(&r)?))).collect()
}

impl Medic {
    /// A cycle every `every` while this process holds the lease, until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let ttl = self.settings.every * 3;
        loop {
            match self.records.acquire_lease(LEASE, &self.holder, ttl).await {
                Ok(true) => {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        r = while_held(self.records.as_ref(), LEASE, &self.holder, ttl, self.settings.every, self.cycle(Mode::Loop)) => {
                            if let Some(Err(e)) = r {
                                tracing::warn!(error = %e, "medic cycle failed; the next one tries again");
                            }
                        },
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot take or renew the medic's lease"),
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(self.settings.every) => {}
            }
        }
        let _ = self.records.release_lease(LEASE, &self.holder).await;
    }

    /// One cycle now.
    #[tracing::instrument(name = "medic_cycle", skip(self), fields(dry_run = self.settings.dry_run))]
    pub async fn cycle(&self, mode: Mode) -> Result<Cycle, QueueError> {
        let now = Utc::now();
        let writes = mode == Mode::Loop;
        let acts = writes && !self.settings.dry_run;
        let inventory = self.inventory.current();
        let obs = parse(self.records.records(RecordKind::Observations).await?, |r| Some(Observations::from_record(r)));
        let mut holds = parse(self.records.records(RecordKind::Hold).await?, Hold::from_record);
        holds.retain(|_, h| h.active(now));
        let mut memory = parse(self.records.records(RecordKind::Medic).await?, |r| Some(Memory::from_record(r)));
        let paths = parse(self.records.records(RecordKind::Paths).await?, |r| Some(PathRecord::from_record(r)));
        // Alerts already sent by the previous cycle are not sent again while they last.
        let previous: Vec<String> = self
            .records
            .record(RecordKind::Medic, keys::LAST_CYCLE)
            .await?
            .and_then(|r| serde_json::from_str::<Cycle>(&r).ok())
            .map(|c| c.alerts)
            .unwrap_or_default();
        let batch = self
            .records
            .record(RecordKind::Medic, keys::OVERRIDE)
            .await?
            .and_then(|r| serde_json::from_str::<BatchOverride>(&r).ok());
        let mut cycle = Cycle {
            at: now,
            mode: match (mode, self.settings.dry_run) {
                (Mode::Plan, _) => "plan",
                (Mode::Loop, true) => "dry_run",
                (Mode::Loop, false) => "act",
            }
            .into(),
            machines: inventory.machines.len(),
            candidates: 0,
            gates: Vec::new(),
            decisions: Vec::new(),
            follow_ups: Vec::new(),
            alerts: Vec::new(),
        };

        // Follow up what is in flight, and hold repeat offenders.
        if writes {
            for m in inventory.machines.values() {
                let id = m.id.to_string();
                let Some(mem) = memory.get_mut(&id) else { continue };
                let before = mem.clone();
                self.follow(mem, &id, obs.get(&id), &mut holds, &mut cycle, now).await?;
                if *mem != before {
                    self.records.put_record(RecordKind::Medic, &id, &mem.to_record()).await?;
                }
            }
        }

        // Classify, and read the history of the hung.
        let empty = Observations::default();
        let blank = Memory::default();
        let mut entries = Vec::with_capacity(inventory.machines.len());
        for m in inventory.machines.values() {
            let id = m.id.to_string();
            let o = obs.get(&id).unwrap_or(&empty);
            let rule = self.rule.for_class(&m.class.health);
            let health = classify(o, None, now, &rule);
            let (mut active_job, mut breaker_until) = (None, None);
            if health.state == State::Hung {
                let (b, jobs) = self.breaker.read(self.queue.as_ref(), &m.id).await?;
                active_job = jobs.iter().find(|j| !j.state.is_final()).map(|j| j.id.to_string());
                breaker_until = b.open_until;
            }
            let remediation = m.class.health.remediation.unwrap_or(self.settings.remediation);
            entries.push(Entry {
                machine: m,
                obs: o,
                rule,
                health,
                hold: holds.get(&id),
                memory: memory.get(&id).unwrap_or(&blank),
                active_job,
                breaker_until,
                remediation,
                no_path: no_path(m, remediation, paths.get(&id), self.paths_checked),
            });
        }
        let p = plan(&entries, &self.settings, batch.as_ref(), now);
        cycle.candidates = p.candidates;
        cycle.gates = p.gates;
        cycle.alerts.extend(p.alerts);
        cycle.decisions = p.decisions;
        drop(entries);

        if acts {
            for d in cycle.decisions.iter_mut().filter(|d| d.verdict == Verdict::WouldEnqueue) {
                let Some(m) = WorkerId::parse(&d.worker_id).ok().and_then(|id| inventory.machines.get(&id)) else {
                    continue;
                };
                let task = m.class.health.remediation.unwrap_or(self.settings.remediation);
                let reason = format!("{REQUESTER}: {}", d.reason);
                let job = NewJob {
                    task,
                    max_attempts: task.max_attempts(),
                    worker_id: m.id.clone(),
                    worker_group: m.group.clone().unwrap_or_else(|| WorkerGroup::parse("none").expect("a valid group")),
                    requester: ClientId::parse(REQUESTER).expect("a valid client id"),
                    origin: None,
                    provisioner_id: m.provisioner_id.clone(),
                    worker_type: m.worker_type.clone(),
                    reason: Some(reason.clone()),
                };
                match self.queue.enqueue(job).await {
                    Ok(e) => {
                        self.wake.notify_one();
                        if e.created {
                            metrics::counter!("roller_jobs_enqueued_total", "task" => task.name()).increment(1);
                        }
                        d.verdict = Verdict::Enqueued;
                        d.job_id = Some(e.job.id.to_string());
                        let mem = memory.entry(d.worker_id.clone()).or_default();
                        mem.last = Some(Remediation {
                            job_id: e.job.id.to_string(),
                            task_name: task.name().into(),
                            at: now,
                            reason,
                            outcome: None,
                            detail: None,
                            ended_at: None,
                        });
                        self.records.put_record(RecordKind::Medic, &d.worker_id, &mem.to_record()).await?;
                        tracing::warn!(worker_id = %d.worker_id, task = %task, job = %e.job.id, reason = %d.reason, "medic queued a remediation");
                    }
                    Err(e) => {
                        d.verdict = Verdict::Skipped;
                        d.detail = format!("could not queue {task}: {e}");
                    }
                }
            }
            if let Some(b) = batch.as_ref().filter(|_| p.uses_override) {
                self.records.delete_record(RecordKind::Medic, keys::OVERRIDE).await?;
                let used = Audit {
                    at: now,
                    action: "use_batch".into(),
                    worker_id: None,
                    by: REQUESTER.into(),
                    reason: format!("used the batch of {} allowed by {}: {}", b.batch, b.by, b.reason),
                };
                self.audit(&used).await?;
            }
        }

        self.finish(&cycle, writes, &previous).await?;
        Ok(cycle)
    }

    /// Follow up `id`'s remediation in flight; hold it after too many failures; start
    /// its count again once the medic's hold is gone.
    async fn follow(
        &self,
        mem: &mut Memory,
        id: &str,
        obs: Option<&Observations>,
        holds: &mut BTreeMap<String, Hold>,
        cycle: &mut Cycle,
        now: DateTime<Utc>,
    ) -> Result<(), QueueError> {
        if mem.held_at.is_some() && !holds.contains_key(id) {
            // Released by an operator, or lapsed: another chance, counted afresh.
            mem.held_at = None;
            mem.failures = 0;
        }
        let Some(r) = mem.in_flight().cloned() else { return Ok(()) };
        let job = match crate::domain::JobId::parse(&r.job_id) {
            Ok(jid) => self.queue.get(jid).await?,
            Err(_) => None,
        };
        let worker = obs.and_then(|o| o.worker.as_ref());
        let Some((outcome, detail)) = follow_up(&r, job.as_ref(), worker, now, self.settings.service_within) else {
            return Ok(());
        };
        mem.failures = if outcome.failed() { mem.failures + 1 } else { 0 };
        if let Some(last) = mem.last.as_mut() {
            last.outcome = Some(outcome);
            last.detail = Some(detail.clone());
            last.ended_at = Some(now);
        }
        metrics::counter!("roller_medic_remediations_total", "outcome" => outcome.as_str()).increment(1);
        let held = outcome.failed() && mem.failures >= self.settings.hold_after && mem.held_at.is_none();
        if held {
            mem.held_at = Some(now);
            let reason = format!("{} failed remediations in a row (last: {detail}); needs a person", mem.failures);
            if !holds.contains_key(id) {
                let hold = Hold {
                    at: now,
                    by: REQUESTER.into(),
                    reason: reason.clone(),
                    until: Some(
                        now + chrono::Duration::from_std(self.settings.hold_for).unwrap_or(chrono::Duration::hours(6)),
                    ),
                };
                self.records.put_record(RecordKind::Hold, id, &hold.to_record()).await?;
                holds.insert(id.to_string(), hold);
            }
            metrics::counter!("roller_medic_holds_total", "by" => "medic").increment(1);
            self.audit(&Audit {
                at: now,
                action: "medic_hold".into(),
                worker_id: Some(id.to_string()),
                by: REQUESTER.into(),
                reason: reason.clone(),
            })
            .await?;
            cycle.alerts.push(format!("{id} held for {} h: {reason}", self.settings.hold_for.as_secs() / 3600));
        }
        tracing::warn!(worker_id = %id, job = %r.job_id, outcome = outcome.as_str(), failures = mem.failures, %detail, "medic remediation ended");
        cycle.follow_ups.push(FollowUp {
            worker_id: id.to_string(),
            job_id: r.job_id.clone(),
            outcome,
            detail,
            failures: mem.failures,
            held,
        });
        Ok(())
    }

    /// Record `a` in the audit log.
    pub async fn audit(&self, a: &Audit) -> Result<(), QueueError> {
        self.records.append_event(keys::AUDIT, &serde_json::to_string(a).unwrap_or_default(), keys::AUDIT_KEPT).await
    }

    /// Metrics, the logs, and alerts for a finished cycle.
    async fn finish(&self, cycle: &Cycle, writes: bool, previous: &[String]) -> Result<(), QueueError> {
        metrics::counter!("roller_medic_cycles_total", "mode" => cycle.mode.clone()).increment(1);
        if !writes {
            return Ok(());
        }
        for d in &cycle.decisions {
            let verdict = serde_json::to_value(d.verdict).ok().and_then(|v| v.as_str().map(String::from));
            metrics::counter!("roller_medic_decisions_total", "verdict" => verdict.unwrap_or_default()).increment(1);
            if let Some(g) = d.gate {
                metrics::counter!("roller_medic_gate_blocks_total", "gate" => g.as_str()).increment(1);
            }
        }
        if cycle.gates.iter().any(|g| g.gate == Gate::BlastRadius && !g.passed) {
            metrics::counter!("roller_medic_gate_blocks_total", "gate" => Gate::BlastRadius.as_str()).increment(1);
        }
        let text = serde_json::to_string(cycle).unwrap_or_default();
        self.records.put_record(RecordKind::Medic, keys::LAST_CYCLE, &text).await?;
        if cycle.eventful() {
            self.records.append_event(keys::CYCLES, &text, keys::CYCLES_KEPT).await?;
        }
        let new: Vec<&String> = cycle.alerts.iter().filter(|a| !previous.contains(a)).collect();
        for a in &new {
            tracing::error!(alert = %a, "medic alert");
        }
        if !new.is_empty() {
            self.notifier.alert(
                &format!("medic: {} alert(s)", new.len()),
                new.iter().map(|a| a.as_str()).collect::<Vec<_>>().join("\n"),
                json!({ "event": "medic_alert", "at": cycle.at, "alerts": new }),
            );
        }
        Ok(())
    }
}
