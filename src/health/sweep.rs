//! The sweep: one process at a time (a lease in the queue backend) observes every
//! inventory machine and writes what it saw to the shared records.
//!
//! Each tick (`probe_every`): the class probe of every machine, `concurrency` at once.
//! Every `power_every`: the BMC or PDU power state of machines that have one, through
//! the per-device gates like any other call to those devices (a chassis BMC fronting
//! 45 cartridges sees at most `device_concurrency` reads at once). Every
//! `taskcluster_every`: each worker pool's workers in pages, their latest runs in
//! batches, and the pool's pending count: a few calls per pool, never one per machine.
//!
//! A sweeper that dies stops renewing its lease; another process takes over once it
//! expires (three ticks). A sweep longer than that (slow probes, slow BMCs) renews the
//! lease every tick while it runs, and stops if it lost it all the same. Observations
//! keep the time each part was seen, so a reader can tell a fresh "down" from an old one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::{Observations, Power, PowerObs, Seen, WorkerObs};
use crate::actions::{ActionContext, ActionSettings, LogSink};
use crate::inventory::Machine;
use crate::queue::records::{RecordKind, Records, while_held};

/// One machine's power reading, by machine id.
type PowerReading = (String, Seen<PowerObs>);

/// The lease one sweeper holds.
pub const LEASE: &str = "health-sweep";

/// How often, and how much at once, the sweep looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepSettings {
    pub probe_every: Duration,
    pub power_every: Duration,
    pub taskcluster_every: Duration,
    /// Probes in flight at once.
    pub concurrency: usize,
}

impl Default for SweepSettings {
    fn default() -> Self {
        Self {
            probe_every: Duration::from_secs(120),
            power_every: Duration::from_secs(600),
            taskcluster_every: Duration::from_secs(300),
            concurrency: 64,
        }
    }
}

/// One worker pool as Taskcluster reports it: its workers by (lower-case) worker id,
/// and its pending count.
#[derive(Debug, Clone, Default)]
pub struct PoolObs {
    pub workers: HashMap<String, WorkerObs>,
    pub pending: u64,
}

/// Where the sweep reads Taskcluster from (the driver in production, a stand-in's
/// client in tests).
#[async_trait]
pub trait WorkerSource: Send + Sync {
    /// Every worker of `provisioner_id/worker_type`, with its latest run, and the
    /// pool's pending count.
    async fn pool(
        &self,
        provisioner_id: &str,
        worker_type: &str,
        cancel: &CancellationToken,
    ) -> Result<PoolObs, String>;
}

/// The sweeper of one process.
pub struct Sweeper {
    pub settings: SweepSettings,
    pub actions: Arc<ActionSettings>,
    pub records: Arc<dyn Records>,
    pub workers: Option<Arc<dyn WorkerSource>>,
    /// The fleet's health rule (classes may override it), for the state gauges.
    pub rule: super::rules::HealthRule,
    /// This process, as the lease names it.
    pub holder: String,
    /// The remediation and `[paths] enabled`, for the path checks' verdict (`no_path`)
    /// in the state gauges.
    pub remediation: crate::task::Task,
    pub paths_checked: bool,
}

struct Silent;

impl LogSink for Silent {
    fn line(&self, _: String) {}
}

/// What one sweep saw and where its time went (milliseconds per phase: reading the
/// previous observations, probes, power readings, Taskcluster, writing the records,
/// the gauges), for the debug log line that follows each sweep.
#[derive(Debug, Default, Clone, Copy)]
pub struct SweepPhases {
    pub machines: usize,
    pub read_ms: u64,
    pub probe_ms: u64,
    pub power_ms: u64,
    pub taskcluster_ms: u64,
    pub write_ms: u64,
    pub gauges_ms: u64,
}

/// Milliseconds since the last call.
struct Lap(std::time::Instant);

impl Lap {
    fn ms(&mut self) -> u64 {
        let now = std::time::Instant::now();
        let ms = now.duration_since(self.0).as_millis();
        self.0 = now;
        u64::try_from(ms).unwrap_or(u64::MAX)
    }
}

/// When each slow part last ran, in this sweeper.
#[derive(Default)]
pub struct Due {
    power: Option<tokio::time::Instant>,
    taskcluster: Option<tokio::time::Instant>,
}

impl Due {
    fn take(last: &mut Option<tokio::time::Instant>, every: Duration) -> bool {
        let now = tokio::time::Instant::now();
        if last.is_some_and(|l| now < l + every) {
            return false;
        }
        *last = Some(now);
        true
    }
}

impl Sweeper {
    /// Sweep every `probe_every` while this process holds the lease, until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let ttl = self.settings.probe_every * 3;
        let mut due = Due::default();
        loop {
            match self.records.acquire_lease(LEASE, &self.holder, ttl).await {
                Ok(true) => {
                    let started = tokio::time::Instant::now();
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        r = while_held(self.records.as_ref(), LEASE, &self.holder, ttl, self.settings.probe_every, self.sweep_once(&mut due, &stop)) => match r {
                            None => {}
                            Some(Ok(phases)) => {
                                let seconds = started.elapsed().as_secs_f64();
                                metrics::histogram!("roller_health_sweep_seconds").record(seconds);
                                tracing::debug!(
                                    machines = phases.machines,
                                    seconds,
                                    read_ms = phases.read_ms,
                                    probe_ms = phases.probe_ms,
                                    power_ms = phases.power_ms,
                                    taskcluster_ms = phases.taskcluster_ms,
                                    write_ms = phases.write_ms,
                                    gauges_ms = phases.gauges_ms,
                                    "health sweep done"
                                );
                            }
                            Some(Err(e)) => tracing::warn!(error = %e, "health sweep failed; the next tick tries again"),
                        },
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot take or renew the health sweep lease"),
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(self.settings.probe_every) => {}
            }
        }
        // A clean stop hands the sweep over at once rather than after the lease.
        let _ = self.records.release_lease(LEASE, &self.holder).await;
    }

    /// One pass: probes always, power and Taskcluster when due. Returns the machines seen
    /// and where the time went.
    pub async fn sweep_once(&self, due: &mut Due, stop: &CancellationToken) -> Result<SweepPhases, String> {
        let mut phases = SweepPhases::default();
        let mut lap = Lap(std::time::Instant::now());
        let inventory = self.actions.inventory.current();
        // Borrowed from the snapshot this sweep holds: 10,000 machines are not copied every tick.
        let machines: Vec<&Machine> = inventory.machines.values().collect();
        let mut obs: BTreeMap<String, Observations> = self
            .records
            .records(RecordKind::Observations)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(k, r)| (k, Observations::from_record(&r)))
            .collect();
        phases.read_ms = lap.ms();
        let cx = ActionContext::new(self.actions.clone(), stop.child_token(), Arc::new(Silent));
        // Made as the stream asks for them, `concurrency` alive at a time, not all up front.
        // Boxed, and mapped from an index rather than a `&Machine`: a stream of borrowing
        // futures is otherwise not `Send` (rust#100013).
        let probe = |i: usize| Box::pin(self.probe(machines[i], &cx)) as BoxFuture<'_, (String, Seen<bool>)>;
        let probes = futures_util::stream::iter((0..machines.len()).map(probe))
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect::<Vec<_>>()
            .await;
        for (id, seen) in probes {
            obs.entry(id).or_default().probe = Some(seen);
        }
        phases.probe_ms = lap.ms();
        if Due::take(&mut due.power, self.settings.power_every) {
            let power = |i: usize| Box::pin(self.power(machines[i], &cx)) as BoxFuture<'_, Option<PowerReading>>;
            let powers = futures_util::stream::iter((0..machines.len()).map(power))
                .buffer_unordered(self.settings.concurrency.max(1))
                .collect::<Vec<_>>()
                .await;
            for (id, seen) in powers.into_iter().flatten() {
                obs.entry(id).or_default().power = Some(seen);
            }
        }
        phases.power_ms = lap.ms();
        if let Some(source) = &self.workers
            && Due::take(&mut due.taskcluster, self.settings.taskcluster_every)
        {
            self.taskcluster(source.as_ref(), &machines, &mut obs, stop).await;
        }
        phases.taskcluster_ms = lap.ms();
        // Machines that left the inventory leave the records too.
        let known: std::collections::HashSet<String> = machines.iter().map(|m| m.id.to_string()).collect();
        obs.retain(|id, _| known.contains(id));
        let items: Vec<(String, String)> = obs.iter().map(|(k, o)| (k.clone(), o.to_record())).collect();
        self.records.put_records(RecordKind::Observations, &items).await.map_err(|e| e.to_string())?;
        phases.write_ms = lap.ms();
        self.gauges(&machines, &obs).await;
        phases.gauges_ms = lap.ms();
        phases.machines = machines.len();
        Ok(phases)
    }

    /// Machines by state, and the oldest observation of each kind, as gauges.
    async fn gauges(&self, machines: &[&Machine], obs: &BTreeMap<String, Observations>) {
        let holds: HashMap<String, super::Hold> = match self.records.records(RecordKind::Hold).await {
            Ok(h) => h.into_iter().filter_map(|(k, r)| Some((k, super::Hold::from_record(&r)?))).collect(),
            Err(_) => HashMap::new(),
        };
        let paths = crate::paths::snapshot(self.records.as_ref()).await.map(|s| s.machines).unwrap_or_default();
        let now = Utc::now();
        let mut counts: BTreeMap<super::State, u64> = super::State::ALL.iter().map(|s| (*s, 0)).collect();
        let mut oldest = [0i64; 3];
        let empty = Observations::default();
        for m in machines {
            let id = m.id.to_string();
            let o = obs.get(&id).unwrap_or(&empty);
            let h = super::rules::classify(o, holds.get(&id), now, &self.rule.for_class(&m.class.health));
            let remediation = m.class.health.remediation.unwrap_or(self.remediation);
            let stranded = crate::paths::no_path(m, remediation, paths.get(&id), self.paths_checked);
            let h = super::rules::with_paths(h, stranded);
            *counts.entry(h.state).or_default() += 1;
            let ages = [
                o.probe.as_ref().map(|s| s.age(now)),
                o.power.as_ref().map(|s| s.age(now)),
                o.worker.as_ref().map(|s| s.age(now)),
            ];
            for (slot, age) in oldest.iter_mut().zip(ages) {
                *slot = (*slot).max(age.map(|a| a.num_seconds()).unwrap_or(0));
            }
        }
        for (state, n) in counts {
            metrics::gauge!("roller_health_machines", "state" => state.as_str()).set(n as f64);
        }
        for (part, age) in ["probe", "power", "taskcluster"].into_iter().zip(oldest) {
            metrics::gauge!("roller_health_observation_age_seconds", "part" => part).set(age as f64);
        }
    }

    async fn probe(&self, m: &Machine, cx: &ActionContext) -> (String, Seen<bool>) {
        let answers = match crate::actions::resolve(&m.address, cx).await {
            Ok(r) => {
                let settings = crate::drivers::reachability::ProbeSettings {
                    icmp: crate::drivers::ping::PingSettings { count: 1, ..cx.settings.ping.clone() },
                    ..crate::drivers::reachability::ProbeSettings::default()
                };
                crate::drivers::reachability::answers(r.addr, m.class.reachability, &settings, &cx.cancel)
                    .await
                    .unwrap_or(false)
            }
            // A name that does not resolve does not answer.
            Err(_) => false,
        };
        (m.id.to_string(), Seen::new(Utc::now(), answers))
    }

    async fn power(&self, m: &Machine, cx: &ActionContext) -> Option<PowerReading> {
        let reading = if m.ipmi.is_some() {
            let r = match crate::actions::ipmi::ipmi_target(m, cx) {
                Ok(t) => crate::drivers::ipmi::power_status(&t, &cx.cancel).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            power_obs("ipmi", r.map(|s| s == crate::drivers::ipmi::PowerState::On))
        } else if m.redfish.is_some() {
            let r = match crate::actions::redfish::redfish_target(m) {
                Ok(t) => crate::drivers::redfish::power_state(&t, &cx.cancel).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match r {
                Ok(crate::drivers::redfish::PowerState::On) => power_obs("redfish", Ok(true)),
                Ok(crate::drivers::redfish::PowerState::Off) => power_obs("redfish", Ok(false)),
                Ok(other) => {
                    PowerObs { source: "redfish".into(), state: Power::Unknown, error: Some(other.to_string()) }
                }
                Err(e) => power_obs("redfish", Err(e)),
            }
        } else if m.moonshot.is_some() {
            let r = match crate::actions::moonshot::moonshot_target(m, cx) {
                Ok(t) => crate::drivers::moonshot::power(&t, &cx.cancel).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match r {
                Ok(Some(crate::drivers::moonshot::NodePower::On)) => power_obs("moonshot", Ok(true)),
                Ok(Some(crate::drivers::moonshot::NodePower::Off)) => power_obs("moonshot", Ok(false)),
                Ok(Some(other)) => {
                    PowerObs { source: "moonshot".into(), state: Power::Unknown, error: Some(other.to_string()) }
                }
                // A chassis manager that does not offer it has nothing to observe.
                Ok(None) => return None,
                Err(e) => power_obs("moonshot", Err(e)),
            }
        } else if m.pdu.is_some() {
            let r = match crate::actions::snmp::pdu_target(m, cx, "health") {
                Ok((t, outlet)) => {
                    crate::drivers::snmp::outlet_status(&t, outlet, &cx.cancel).await.map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            };
            match r {
                Ok(crate::drivers::snmp::OutletStatus::On) => power_obs("pdu", Ok(true)),
                Ok(crate::drivers::snmp::OutletStatus::Off) => power_obs("pdu", Ok(false)),
                Ok(other) => {
                    PowerObs { source: "pdu".into(), state: Power::Unknown, error: Some(format!("{other:?}")) }
                }
                Err(e) => power_obs("pdu", Err(e)),
            }
        } else {
            return None;
        };
        Some((m.id.to_string(), Seen::new(Utc::now(), reading)))
    }

    async fn taskcluster(
        &self,
        source: &dyn WorkerSource,
        machines: &[&Machine],
        obs: &mut BTreeMap<String, Observations>,
        stop: &CancellationToken,
    ) {
        let mut pools: BTreeMap<(String, String), Vec<&Machine>> = BTreeMap::new();
        for m in machines {
            if let (Some(p), Some(t)) = (&m.provisioner_id, &m.worker_type) {
                pools.entry((p.to_string(), t.to_string())).or_default().push(m);
            }
        }
        for ((p, t), members) in pools {
            let pool = match source.pool(&p, &t, stop).await {
                Ok(pool) => pool,
                Err(e) => {
                    // Old Taskcluster observations stay, with their old time: the rules see their age.
                    tracing::warn!(pool = %format!("{p}/{t}"), error = %e, "cannot read the worker pool");
                    continue;
                }
            };
            let now = Utc::now();
            for m in members {
                let id = m.id.as_str().to_ascii_lowercase();
                let worker = pool.workers.get(&id).cloned().unwrap_or(WorkerObs {
                    pool: format!("{p}/{t}"),
                    known: false,
                    last_active: None,
                    quarantine_until: None,
                    latest_task: None,
                    pending: None,
                });
                let worker = WorkerObs { pending: Some(pool.pending), ..worker };
                obs.entry(m.id.to_string()).or_default().worker = Some(Seen::new(now, worker));
            }
        }
    }
}

fn power_obs(source: &str, on: Result<bool, String>) -> PowerObs {
    match on {
        Ok(true) => PowerObs { source: source.into(), state: Power::On, error: None },
        Ok(false) => PowerObs { source: source.into(), state: Power::Off, error: None },
        Err(e) => PowerObs { source: source.into(), state: Power::Unknown, error: Some(e) },
    }
}
