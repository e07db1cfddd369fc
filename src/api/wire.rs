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
    /// Whether it restarts the machine (the dashboard asks for confirmation first).
    pub restarts_machine: bool,
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
}

/// `GET /api/v1/machines`.
#[derive(Serialize, ToSchema)]
pub struct Machines {
    /// False when roller runs without an inventory file (every machine is then
    /// reached by its DNS name, and none can be listed).
    pub inventory: bool,
    pub machines: Vec<MachineView>,
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
