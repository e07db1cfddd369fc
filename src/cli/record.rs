//! A job as the CLI reads it from the API (`GET /api/v1/jobs/{id}`, the `job` event of
//! its stream, a machine's history): the fields the commands print, typed once here so
//! the printing code names fields, not JSON keys. Tolerant: a field a newer roller adds
//! is ignored, one an older roller lacks is empty.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct JobRecord {
    pub task_id: String,
    pub task_name: String,
    pub worker_id: String,
    pub worker_group: String,
    pub state: String,
    pub requester: String,
    pub origin: Option<String>,
    pub reason: Option<String>,
    pub attempts: u32,
    pub max_attempts: u32,
    pub runner: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Per task its own shape (the API's `JobResult`); `summary` reads the known ones.
    pub result: Option<Value>,
    pub error: Option<String>,
    pub log: Vec<LogLine>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LogLine {
    pub at: String,
    pub line: String,
}

impl JobRecord {
    /// The record in an API answer; whatever does not fit leaves its field empty.
    pub fn from_value(v: &Value) -> JobRecord {
        JobRecord::deserialize(v).unwrap_or_default()
    }

    /// Still queued or running: more is to come.
    pub fn is_live(&self) -> bool {
        matches!(self.state.as_str(), "queued" | "running")
    }

    pub fn succeeded(&self) -> bool {
        self.state == "succeeded"
    }
}
