//! Fleet health: what roller observes about each inventory machine, kept with the
//! time it was seen, and the state it concludes from it, with the reason.
//!
//! - [`Observations`]: the class probe (ICMP or `tcp:<port>`), the BMC/PDU power state,
//!   the Taskcluster worker (last active, latest task and its run, quarantine) and its
//!   pool's pending count, each with when it was seen. Written by the sweep
//!   ([`sweep`]), kept in the queue backend's shared records so every process serves
//!   the same picture.
//! - [`rules`]: the health state of a machine from its observations and its hold:
//!   `hung` (the class's rule matched), `down`, `off`, `quarantined`, `held`,
//!   `unknown` (too old to trust), `busy`, `idle`, `ok`; and `no_path` over any of them
//!   but `held` when the path checks leave roller no way to restart it
//!   ([`rules::with_paths`]).
//!
//! This module observes; it never acts. The medic (issue 15's next part) reads these
//! states and enqueues jobs like any client.

pub mod rules;
pub mod sweep;
pub mod taskcluster;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A value and when it was seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Seen<T> {
    pub at: DateTime<Utc>,
    pub value: T,
}

impl<T> Seen<T> {
    pub fn new(at: DateTime<Utc>, value: T) -> Self {
        Self { at, value }
    }

    /// How long ago it was seen (zero for a time in the future: clocks differ a little).
    pub fn age(&self, now: DateTime<Utc>) -> chrono::Duration {
        (now - self.at).max(chrono::Duration::zero())
    }
}

/// A power state read from the machine's BMC or PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Power {
    On,
    Off,
    /// The device answered something else, or could not be read (see `error`).
    Unknown,
}

/// The power reading and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PowerObs {
    /// `ipmi`, `redfish` or `pdu`.
    pub source: String,
    pub state: Power,
    /// Why it could not be read, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The worker's latest task run, as Taskcluster's `queue.status` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskObs {
    pub task_id: String,
    pub run_id: u32,
    /// `pending`, `running`, `completed`, `failed` or `exception`; `None` when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<DateTime<Utc>>,
    /// When the run ended (Taskcluster's field is `resolved`, not `ended`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_resolved: Option<String>,
}

/// The Taskcluster worker as the queue knows it, and its pool's pending work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkerObs {
    /// `<provisioner_id>/<worker_type>`.
    pub pool: String,
    /// The queue lists the worker (a worker silent for about a day vanishes from it).
    pub known: bool,
    /// When the worker last polled for work (rate-limited by the queue to one write per
    /// 30 minutes; a quarantined worker that polls still bumps it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_active: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine_until: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_task: Option<TaskObs>,
    /// Tasks waiting in the worker's pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<u64>,
}

/// Everything observed about one machine, each part with its own time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Observations {
    /// Whether the machine answered its class's probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<Seen<bool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<Seen<PowerObs>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<Seen<WorkerObs>>,
}

impl Observations {
    pub fn to_record(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A record the store gave back; an unreadable one (another version, damage) is
    /// treated as no observations, which the rules call `unknown`.
    pub fn from_record(s: &str) -> Observations {
        serde_json::from_str(s).unwrap_or_default()
    }
}

/// A machine's health, from worst to best (the order a list of problems is sorted by).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Roller has no way left to restart it: every path its remediation could use failed
    /// its last check, or none is configured (`paths::no_path`). Needs a person before it
    /// is needed; the medic never queues a remediation for it.
    NoPath,
    /// The class's hung rule matched: not answering and not doing its work.
    Hung,
    /// Not answering its probe; power on or unknown.
    Down,
    /// Its BMC or PDU says it is off.
    Off,
    /// Held: the medic leaves it alone (an operator's hold, or too many failed remediations).
    Held,
    /// Quarantined in Taskcluster: it takes no tasks on purpose.
    Quarantined,
    /// Its observations are too old to say.
    Unknown,
    /// Answering, and not running a task for a while.
    Idle,
    /// Running a task.
    Busy,
    Ok,
}

impl State {
    pub const ALL: [State; 10] = [
        State::NoPath,
        State::Hung,
        State::Down,
        State::Off,
        State::Held,
        State::Quarantined,
        State::Unknown,
        State::Idle,
        State::Busy,
        State::Ok,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::NoPath => "no_path",
            State::Hung => "hung",
            State::Down => "down",
            State::Off => "off",
            State::Held => "held",
            State::Quarantined => "quarantined",
            State::Unknown => "unknown",
            State::Idle => "idle",
            State::Busy => "busy",
            State::Ok => "ok",
        }
    }

    /// Whether an operator should look: everything but `ok`, `busy` and `idle`.
    pub fn is_trouble(self) -> bool {
        !matches!(self, State::Ok | State::Busy | State::Idle)
    }
}

/// A machine's state and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub state: State,
    pub reason: String,
}

/// A machine the medic leaves alone, and why: an operator's hold, or the medic's own
/// after repeated failed remediations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Hold {
    pub at: DateTime<Utc>,
    /// The client id, or `roller-medic`.
    pub by: String,
    pub reason: String,
    /// `None`: until released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

impl Hold {
    pub fn active(&self, now: DateTime<Utc>) -> bool {
        self.until.is_none_or(|u| u > now)
    }

    pub fn to_record(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_record(s: &str) -> Option<Hold> {
        serde_json::from_str(s).ok()
    }
}
