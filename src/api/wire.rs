//! Wire types: what the API sends. Internal types are not `Serialize`; these
//! are the contract, converted at the edge.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::queue::Job;

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
    pub attempts: u32,
    pub max_attempts: u32,
    /// The runner (host:pid:random) that holds or last held the job.
    pub runner: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// The task's result (its shape depends on the task).
    #[schema(value_type = Option<Object>)]
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
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            runner: j.consumer.clone(),
            created_at: ts(&j.created_at),
            started_at: j.started_at.as_ref().map(ts),
            finished_at: j.finished_at.as_ref().map(ts),
            result: j.result.clone(),
            error: j.error.clone(),
            log: j.log.iter().map(|l| LogLineView { at: ts(&l.at), line: l.line.clone() }).collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct History {
    pub worker_id: String,
    pub jobs: Vec<JobView>,
}

/// Every error answer: what is wrong, for a person.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub detail: String,
}
