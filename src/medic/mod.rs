//! The medic: each cycle it reads the fleet's health (the sweep's observations),
//! chooses the hung machines, and heals them behind safety gates by queueing the
//! class's remediation as an ordinary job, like any client. Then it proves the
//! worker is back *in service* (taking Taskcluster work again), and holds machines
//! that keep failing for a person.
//!
//! - [`plan`]: the gates as a pure function of one snapshot (machines, their health,
//!   roller's own facts): every decision and why. Tested alone.
//! - [`memory`]: what the medic remembers of a machine (its last remediation, the
//!   failures in a row) and the follow-up that turns a finished job into "back in
//!   service" or "rebooted but not taking work".
//! - [`cycle`]: one cycle's reading, acting and recording, and the loop that runs it
//!   while this process holds the medic's lease.
//!
//! It observes and enqueues; it never drives hardware and serves no HTTP.

pub mod cycle;
pub mod memory;
pub mod plan;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::health::State;
use crate::task::Task;

pub use cycle::Medic;

/// The requester of every job the medic queues.
pub const REQUESTER: &str = "roller-medic";

/// `[medic]`: off unless asked for, and dry-run until told otherwise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MedicSettings {
    pub enabled: bool,
    /// Decide and record, act on nothing.
    pub dry_run: bool,
    /// How often a cycle runs.
    pub every: Duration,
    /// A probe no older than this counts as observed within the cycle.
    pub fresh_within: Duration,
    /// A Taskcluster reading no older than this is fresh enough to act on.
    pub worker_fresh_within: Duration,
    /// The share of a class observed within the cycle below which the class is acted on not at all.
    pub min_fresh: f64,
    /// The largest share of a pool or class the medic acts on at once (never fewer than one machine).
    pub max_fraction: f64,
    /// Hung machines behind one chassis (or BMC) above which the medic acts on none.
    pub max_per_chassis: usize,
    /// Hung machines on one PDU above which the medic acts on none.
    pub max_per_pdu: usize,
    /// Failed remediations in a row after which the medic holds a machine for a person.
    pub hold_after: u32,
    /// How long the medic's own hold lasts.
    pub hold_for: Duration,
    /// How long after a remediation's proof the worker has to take work again.
    pub service_within: Duration,
    /// The remediation of a class that names none.
    pub remediation: Task,
}

impl Default for MedicSettings {
    /// RelOps' numbers: 65 % observed, 10 % at once, held for 6 h after 3 failures.
    fn default() -> Self {
        Self {
            enabled: false,
            dry_run: true,
            every: Duration::from_secs(120),
            fresh_within: Duration::from_secs(240),
            worker_fresh_within: Duration::from_secs(600),
            min_fresh: 0.65,
            max_fraction: 0.10,
            max_per_chassis: 2,
            max_per_pdu: 2,
            hold_after: 3,
            hold_for: Duration::from_secs(6 * 3600),
            // The queue records a worker's activity at most every 30 minutes.
            service_within: Duration::from_secs(45 * 60),
            remediation: Task::Reboot,
        }
    }
}

/// A safety gate, as decisions and metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// Too little of the class (or of this machine) was observed recently.
    Freshness,
    /// Too many hung at once in a pool, class, chassis or PDU.
    BlastRadius,
    /// Held by an operator or by the medic.
    Hold,
    /// Roller has no way left to restart it (its paths failed their checks, or none is
    /// configured): a job would be futile, so the medic alerts for a person instead.
    NoPath,
    /// Its previous remediation is still running or being proven.
    Remediating,
    /// Another job for it is queued or running.
    Lock,
    /// Taskcluster shows it running a fresh task.
    Busy,
    /// The reboot-loop breaker refuses a restart now.
    Breaker,
    /// The machine lacks what its class's remediation needs.
    Capability,
}

impl Gate {
    pub const ALL: [Gate; 9] = [
        Gate::Freshness,
        Gate::BlastRadius,
        Gate::Hold,
        Gate::NoPath,
        Gate::Remediating,
        Gate::Lock,
        Gate::Busy,
        Gate::Breaker,
        Gate::Capability,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Gate::Freshness => "freshness",
            Gate::BlastRadius => "blast_radius",
            Gate::Hold => "hold",
            Gate::NoPath => "no_path",
            Gate::Remediating => "remediating",
            Gate::Lock => "lock",
            Gate::Busy => "busy",
            Gate::Breaker => "breaker",
            Gate::Capability => "capability",
        }
    }
}

/// A group-wide gate's verdict (freshness per class, blast radius per pool, class,
/// chassis and PDU).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GateCheck {
    pub gate: Gate,
    /// What it was checked over: `class moonshot`, `pool releng-hardware/gecko-t-linux`,
    /// `chassis ch1`, `pdu pdu1.mdc1`.
    pub scope: String,
    pub passed: bool,
    pub detail: String,
}

/// What the medic did about one machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Queued its remediation.
    Enqueued,
    /// Would have queued it (dry run, or a plan).
    WouldEnqueue,
    /// Left alone: a gate said no (see `gate`).
    Skipped,
}

/// One machine's decision in a cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Decision {
    pub worker_id: String,
    /// Its health when chosen (`hung`), and why.
    pub state: State,
    pub reason: String,
    pub verdict: Verdict,
    /// The gate that said no, for `skipped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<Gate>,
    pub detail: String,
    /// The remediation: its task, and the job when queued.
    pub task_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
}

/// How a remediation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Remedy {
    /// The job proved the host back, and the worker took work again.
    BackInService,
    /// The job proved the host back, but the worker took no work in time.
    NotTakingWork,
    /// The job did not succeed.
    JobFailed,
}

impl Remedy {
    pub fn as_str(self) -> &'static str {
        match self {
            Remedy::BackInService => "back_in_service",
            Remedy::NotTakingWork => "not_taking_work",
            Remedy::JobFailed => "job_failed",
        }
    }

    pub fn failed(self) -> bool {
        self != Remedy::BackInService
    }
}

/// A remediation that ended in this cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FollowUp {
    pub worker_id: String,
    pub job_id: String,
    pub outcome: Remedy,
    pub detail: String,
    /// Failed remediations in a row, after this one.
    pub failures: u32,
    /// The medic held the machine for a person (failures reached `hold_after`).
    pub held: bool,
}

/// One cycle: what the medic saw, checked, decided and learned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Cycle {
    pub at: DateTime<Utc>,
    /// `act` (the loop), `dry_run` (the loop, acting on nothing) or `plan` (asked for).
    pub mode: String,
    pub machines: usize,
    /// Machines in state `hung`.
    pub candidates: usize,
    pub gates: Vec<GateCheck>,
    pub decisions: Vec<Decision>,
    pub follow_ups: Vec<FollowUp>,
    /// What it told people (blast radius blocked, a machine held).
    pub alerts: Vec<String>,
}

impl Cycle {
    /// Worth keeping in the decision log: it chose, blocked, learned or alerted something.
    pub fn eventful(&self) -> bool {
        self.candidates > 0
            || !self.decisions.is_empty()
            || !self.follow_ups.is_empty()
            || !self.alerts.is_empty()
            || self.gates.iter().any(|g| !g.passed)
    }
}

/// An operator's one-time permission for a larger batch than the blast-radius gate
/// allows: used by the next cycle that would otherwise be blocked, then gone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchOverride {
    /// Machines the medic may act on in that one cycle.
    pub batch: usize,
    pub by: String,
    pub reason: String,
    pub at: DateTime<Utc>,
    /// Unused by then, it lapses.
    pub until: DateTime<Utc>,
}

/// An audited change to a hold or an override, as the log of them shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Audit {
    pub at: DateTime<Utc>,
    /// `hold`, `release`, `allow_batch`, `use_batch`, `medic_hold`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    pub by: String,
    pub reason: String,
}

/// The records the medic keeps beside the jobs.
pub mod keys {
    /// The event log of eventful cycles.
    pub const CYCLES: &str = "medic-cycles";
    /// The event log of holds, releases and overrides.
    pub const AUDIT: &str = "medic-audit";
    /// The newest cycle, eventful or not (a `medic` record; `:` is in no worker id).
    pub const LAST_CYCLE: &str = "cycle:last";
    /// The pending batch override (a `medic` record).
    pub const OVERRIDE: &str = "override:batch";
    /// Cycles kept in the log.
    pub const CYCLES_KEPT: usize = 500;
    pub const AUDIT_KEPT: usize = 1000;
}
