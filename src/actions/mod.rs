//! Actions: the closed set of tasks roller can run on a machine.
//!
//! Each task has one module with an `async fn run(target, cx)`. Actions compose
//! drivers; they never see HTTP, the queue or config files. The runner, and
//! `roller run` on the command line, both call [`execute`]: one code path.

pub mod ping;

use std::fmt;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::domain::{WorkerGroup, WorkerId};
use crate::drivers::ping::PingSettings;
use crate::inventory::InventoryHandle;

/// Every task roller knows. Adding one means a new variant, a module, and a row
/// in [`Task::ALL`]; the compiler finds the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Task {
    Ping,
}

impl Task {
    pub const ALL: &'static [Task] = &[Task::Ping];

    pub fn name(self) -> &'static str {
        match self {
            Task::Ping => "ping",
        }
    }

    /// One line of help, for `roller tasks` and API error messages.
    pub fn help(self) -> &'static str {
        match self {
            Task::Ping => "ICMP echo the machine and report packets sent/received and round-trip times",
        }
    }

    /// How many times the queue may hand the job out. Read-only tasks can be
    /// retried after a lost runner; tasks that change hardware must not be re-run blindly.
    pub fn max_attempts(self) -> u32 {
        match self {
            Task::Ping => 3,
        }
    }

    /// "a, b, c": task names for messages that list what is allowed.
    pub fn list(tasks: &[Task]) -> String {
        tasks.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
    }

    pub fn parse(s: &str) -> Option<Task> {
        Task::ALL.iter().copied().find(|t| t.name() == s)
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The machine an action works on.
#[derive(Debug, Clone)]
pub struct Target {
    pub worker_id: WorkerId,
    pub worker_group: WorkerGroup,
}

/// Settings the actions need, resolved from configuration by the caller.
#[derive(Debug, Clone, Default)]
pub struct ActionSettings {
    pub ping: PingSettings,
    /// The machines and their hardware; empty when no inventory is configured.
    pub inventory: InventoryHandle,
}

/// Where an action writes its progress. The runner stores lines in the job
/// log; `roller run` prints them.
pub trait LogSink: Send + Sync {
    fn line(&self, line: String);
}

/// What an action gets besides its target.
#[derive(Clone)]
pub struct ActionContext {
    pub settings: Arc<ActionSettings>,
    /// Cancelled at the soft time limit or on shutdown. Actions check it between
    /// hardware operations, never inside one.
    pub cancel: CancellationToken,
    log: Arc<dyn LogSink>,
}

impl ActionContext {
    pub fn new(settings: Arc<ActionSettings>, cancel: CancellationToken, log: Arc<dyn LogSink>) -> Self {
        Self { settings, cancel, log }
    }

    pub fn log(&self, line: impl Into<String>) {
        self.log.line(line.into());
    }
}

/// Why an action failed. The text goes into the job record.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The action ran and the machine did not do what was asked.
    #[error("{0}")]
    Failed(String),
    /// Roller cannot run the action here (configuration, permissions, missing tool).
    #[error("configuration error: {0}")]
    Config(String),
    #[error("cancelled")]
    Cancelled,
}

/// Run `task` on `target`. The result is JSON for the job record.
pub async fn execute(task: Task, target: &Target, cx: &ActionContext) -> Result<serde_json::Value, ActionError> {
    match task {
        Task::Ping => ping::run(target, cx).await,
    }
}
