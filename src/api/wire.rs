//! Wire types: what the API sends. Internal types are not `Serialize`; these
//! are the contract, converted at the edge.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::queue::{Job, LogLine};

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The 201/200 answer to an enqueue. The first four fields are the seed's contract.
#[derive(Serialize, ToSchema)]
pub struct Created {
    pub task_name: String,
    pub worker_id: String,
    pub worker_group: String,
    pub task_id: String,
    pub state: &'static str,
    /// True when an identical queued or running job was returned instead of a new one.
    pub coalesced: bool,
    pub url: String,
}

#[derive(Serialize, ToSchema)]
pub struct LogLineView {
    pub at: String,
    pub line: String,
}

impl From<&LogLine> for LogLineView {
    fn from(l: &LogLine) -> Self {
        LogLineView { at: ts(&l.at), line: l.line.clone() }
    }
}

/// A job record as `GET /api/v1/jobs/{task_id}` shows it.
#[derive(Serialize, ToSchema)]
pub struct JobView {
    pub task_id: String,
    pub task_name: &'static str,
    pub worker_id: String,
    pub worker_group: String,
    pub state: &'static str,
    pub requester: String,
    pub origin: Option<String>,
    pub provisioner_id: Option<String>,
    pub worker_type: Option<String>,
    /// Why the job was asked for, when its requester said (the medic always does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub attempts: u32,
    pub max_attempts: u32,
    /// The runner (host:pid:random) that holds or last held the job.
    pub runner: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// The task's result: its shape depends on the task (`JobResult` lists them), with
    /// `evidence` when a step cut power. A job that did not succeed has `null`, or
    /// `Findings`: the evidence it took before a power cut.
    #[schema(value_type = Option<crate::actions::Report>)]
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    pub log: Vec<LogLineView>,
}

impl From<&Job> for JobView {
    fn from(j: &Job) -> Self {
        JobView {
            task_id: j.id.to_string(),
            task_name: j.task.name(),
            worker_id: j.worker_id.to_string(),
            worker_group: j.worker_group.to_string(),
            state: j.state.as_str(),
            requester: j.requester.to_string(),
            origin: j.origin.clone(),
            provisioner_id: j.provisioner_id.as_ref().map(|p| p.to_string()),
            worker_type: j.worker_type.as_ref().map(|p| p.to_string()),
            reason: j.reason.clone(),
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            runner: j.consumer.clone(),
            created_at: ts(&j.created_at),
            started_at: j.started_at.as_ref().map(ts),
            finished_at: j.finished_at.as_ref().map(ts),
            result: j.result.clone(),
            error: j.error.clone(),
            log: j.log.iter().map(LogLineView::from).collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct History {
    pub worker_id: String,
    pub jobs: Vec<JobView>,
}

/// Every error answer: what is wrong, for a person (`detail`), and which refusal
/// it is, for a program (`error_code`, stable).
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub detail: String,
    pub error_code: super::error::ErrorCode,
}

/// A task as `GET /api/v1/whoami` lists it for the caller.
#[derive(Serialize, ToSchema)]
pub struct TaskView {
    pub name: &'static str,
    pub help: &'static str,
    /// The scope a caller needs to run it.
    pub scope: String,
    /// Whether this caller holds that scope.
    pub allowed: bool,
    /// Whether it restarts the machine (the breaker counts it).
    pub restarts_machine: bool,
    /// Whether it cuts the machine's power or resets it (evidence is taken first).
    pub cuts_power: bool,
    /// It restarts the machine or cuts its power: a page asks, naming the machine, first.
    pub needs_confirmation: bool,
    pub group: TaskGroupName,
}

/// Where a task sits on a machine's page.
#[derive(Serialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TaskGroupName {
    /// Reads and reports; changes nothing.
    Inspect,
    /// Switches power on or off.
    Power,
    /// Restarts the machine.
    Reboot,
    /// Reimages, loans, files the bug.
    Provisioning,
}

impl From<crate::task::TaskGroup> for TaskGroupName {
    fn from(g: crate::task::TaskGroup) -> Self {
        use crate::task::TaskGroup;
        match g {
            TaskGroup::Inspect => TaskGroupName::Inspect,
            TaskGroup::Power => TaskGroupName::Power,
            TaskGroup::Reboot => TaskGroupName::Reboot,
            TaskGroup::Provisioning => TaskGroupName::Provisioning,
        }
    }
}

/// `GET /api/v1/whoami`: the caller, as roller authenticated it.
#[derive(Serialize, ToSchema)]
pub struct WhoAmI {
    pub client_id: String,
    /// The caller's scopes (after temporary credentials and authorizedScopes).
    pub scopes: Vec<String>,
    pub read_scope: String,
    /// Whether the caller may read jobs and machines.
    pub can_read_jobs: bool,
    /// Every enabled task, in the order `roller tasks` lists them.
    pub tasks: Vec<TaskView>,
}

/// A job in one line: what a machine list shows.
#[derive(Serialize, ToSchema)]
pub struct JobSummary {
    pub task_id: String,
    pub task_name: &'static str,
    pub state: &'static str,
    pub created_at: String,
    pub finished_at: Option<String>,
}

impl From<&Job> for JobSummary {
    fn from(j: &Job) -> Self {
        JobSummary {
            task_id: j.id.to_string(),
            task_name: j.task.name(),
            state: j.state.as_str(),
            created_at: ts(&j.created_at),
            finished_at: j.finished_at.as_ref().map(ts),
        }
    }
}

/// A machine of the inventory with its newest job and the job holding its lock.
#[derive(Serialize, ToSchema)]
pub struct MachineView {
    pub worker_id: String,
    pub group: Option<String>,
    pub class: String,
    pub address: String,
    pub last_job: Option<JobSummary>,
    /// The running job that holds the machine (one job at a time per machine).
    pub lock: Option<JobSummary>,
    /// Its health now: state, reason, and the observations (probe, power, Taskcluster
    /// worker with its last activity) with their times.
    pub health: super::health::MachineHealthSummary,
    /// Until when the reboot-loop breaker refuses restarts, when it does (judged on its
    /// newest jobs; its page reads the whole history).
    pub breaker_open_until: Option<String>,
    /// The enabled tasks this machine can run (its inventory entry has what they need,
    /// and roller has the services they use), in `roller tasks` order.
    pub tasks: Vec<&'static str>,
}

/// `GET /api/v1/machines`.
#[derive(Serialize, ToSchema)]
pub struct Machines {
    /// False when roller runs without an inventory file (every machine is then
    /// reached by its DNS name, and none can be listed).
    pub inventory: bool,
    /// `safety.confirm_above`: a fleet request for more machines than this needs a typed
    /// "yes" (the CLI's rail; the dashboard's bulk action keeps it).
    pub confirm_above: usize,
    /// Enqueue requests a fleet client keeps in flight at once (the CLI's bound).
    pub fleet_in_flight: usize,
    pub machines: Vec<MachineView>,
}

/// A task a machine can run, as its page offers it.
#[derive(Serialize, ToSchema)]
pub struct MachineTask {
    pub name: &'static str,
    pub help: &'static str,
    pub group: TaskGroupName,
    /// It restarts the machine or cuts its power: the page asks first, naming the machine.
    pub needs_confirmation: bool,
    pub restarts_machine: bool,
    pub cuts_power: bool,
    /// The caller holds its scope.
    pub allowed: bool,
}

/// An enabled task this machine cannot run, and why (what its inventory entry lacks,
/// or the roller-wide service that is not configured).
#[derive(Serialize, ToSchema)]
pub struct UnavailableTask {
    pub name: &'static str,
    pub why: String,
}

/// A way roller reaches the machine, what it talks to, and its last check.
#[derive(Serialize, ToSchema)]
pub struct PathFact {
    pub kind: crate::paths::PathKind,
    /// What it talks to (addresses, users, secret references; never a secret).
    pub target: String,
    /// Its last check (`null`: not checked yet).
    pub last: Option<crate::paths::PathResult>,
}

/// One step of the machine's reboot chain as it would run now.
#[derive(Serialize, ToSchema)]
pub struct PlanStepView {
    pub task: &'static str,
    /// False: skipped (see `skip`).
    pub runs: bool,
    pub skip: Option<String>,
    /// What it talks to; empty when nothing.
    pub what: String,
    /// The evidence taken before it (it cuts power), or where it was taken already.
    pub evidence: Option<String>,
}

/// What `reboot` would do on the machine (what `roller explain` prints), touching nothing.
#[derive(Serialize, ToSchema)]
pub struct RebootPlanView {
    /// How the proof probes the machine (`icmp`, `tcp:22`).
    pub probe: String,
    pub down_timeout_secs: u64,
    pub up_timeout_secs: u64,
    pub min_boot_secs: u64,
    /// Some step runs; false: `reboot` fails at once.
    pub runnable: bool,
    pub steps: Vec<PlanStepView>,
    /// The same, as `roller explain` prints it, one line each.
    pub text: Vec<String>,
}

impl From<crate::actions::reboot::explain::Explanation> for RebootPlanView {
    fn from(e: crate::actions::reboot::explain::Explanation) -> Self {
        use crate::actions::reboot::explain::EvidenceNote;
        let text = e.lines();
        RebootPlanView {
            runnable: e.runnable(),
            probe: e.probe,
            down_timeout_secs: e.down_timeout_secs,
            up_timeout_secs: e.up_timeout_secs,
            min_boot_secs: e.min_boot_secs,
            steps: e
                .steps
                .into_iter()
                .map(|s| PlanStepView {
                    task: s.step.name(),
                    runs: s.skip.is_none(),
                    skip: s.skip,
                    what: s.what,
                    evidence: s.evidence.map(|n| match n {
                        EvidenceNote::Taken(what) => what,
                        EvidenceNote::AlreadyTaken { before } => {
                            format!("no new evidence (taken once per job, before {before})")
                        }
                    }),
                })
                .collect(),
            text,
        }
    }
}

/// `GET /api/v1/machines/{worker_id}`: a machine as its page shows it: its facts from
/// the inventory, its paths and their last checks, the tasks it can run (grouped, with
/// which ask first), and its reboot plan. Health, breaker and jobs have their own
/// endpoints (`…/health`, `/api/v1/workers/{worker_id}/breaker`, `…/jobs`).
#[derive(Serialize, ToSchema)]
pub struct MachinePage {
    pub worker_id: String,
    pub group: Option<String>,
    pub class: String,
    /// The machine's own address (not its BMC's).
    pub address: String,
    /// `<provisioner_id>/<worker_type>`, when the inventory names one.
    pub pool: Option<String>,
    /// The enclosure it shares with others (a Moonshot chassis), when known.
    pub chassis: Option<String>,
    /// Every path it has (BMC, PDU, ssh, iLO, Xen, Moonshot, MDM), in check order.
    pub paths: Vec<PathFact>,
    /// Why roller has no way left to restart it, when it has none.
    pub no_path: Option<String>,
    /// The tasks it can run, in `roller tasks` order.
    pub tasks: Vec<MachineTask>,
    /// The enabled tasks it cannot run, and why.
    pub unavailable: Vec<UnavailableTask>,
    pub plan: RebootPlanView,
}

/// A restart the reboot-loop breaker counts.
#[derive(Serialize, ToSchema)]
pub struct RestartView {
    pub at: String,
    pub task_name: &'static str,
    pub task_id: String,
}

/// An operator's reset of a machine's breaker.
#[derive(Serialize, ToSchema)]
pub struct BreakerResetView {
    pub at: String,
    /// The client id that reset it.
    pub by: String,
    pub reason: String,
}

/// A machine's reboot-loop breaker as `GET /api/v1/workers/{worker_id}/breaker` shows it.
#[derive(Serialize, ToSchema)]
pub struct BreakerView {
    pub worker_id: String,
    /// 0: the breaker is off.
    pub max_restarts: u32,
    pub window_hours: u64,
    /// Restarts are refused now.
    pub open: bool,
    /// When it lets the next restart through.
    pub open_until: Option<String>,
    /// The restarts that count (commands that reached a device, since the window began
    /// or the last reset), oldest first.
    pub restarts: Vec<RestartView>,
    /// The newest resets first (who, when, why).
    pub resets: Vec<BreakerResetView>,
}
