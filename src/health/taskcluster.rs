//! The sweep's Taskcluster reads over the driver: per pool, its workers in pages, the
//! latest run of each in batches of a thousand, and the pool's pending count. Three
//! kinds of call per pool whatever its size, never one per machine.

use std::collections::HashMap;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::sweep::{PoolObs, WorkerSource};
use super::{TaskObs, WorkerObs};
use crate::drivers::taskcluster::{RunState, TaskclusterClient};

/// Taskcluster's queue, read with roller's credentials or anonymously.
pub struct TaskclusterWorkers {
    pub client: TaskclusterClient,
}

fn state(s: RunState) -> &'static str {
    match s {
        RunState::Pending => "pending",
        RunState::Running => "running",
        RunState::Completed => "completed",
        RunState::Failed => "failed",
        RunState::Exception => "exception",
    }
}

#[async_trait]
impl WorkerSource for TaskclusterWorkers {
    async fn pool(
        &self,
        provisioner_id: &str,
        worker_type: &str,
        cancel: &CancellationToken,
    ) -> Result<PoolObs, String> {
        let workers =
            self.client.list_all_workers(provisioner_id, worker_type, cancel).await.map_err(|e| e.to_string())?;
        let ids: Vec<&str> =
            workers.iter().filter_map(|w| w.latest_task.as_ref().map(|t| t.task_id.as_str())).collect();
        let statuses = if ids.is_empty() {
            HashMap::new()
        } else {
            self.client.task_statuses(&ids, cancel).await.map_err(|e| e.to_string())?
        };
        let pending =
            self.client.pending_tasks(provisioner_id, worker_type, cancel).await.map_err(|e| e.to_string())?;
        let pool = format!("{provisioner_id}/{worker_type}");
        let mut out: HashMap<String, WorkerObs> = HashMap::with_capacity(workers.len());
        for w in workers {
            let latest_task = w.latest_task.as_ref().map(|t| {
                // The worker's own run: a retry after an expired claim may belong to another.
                let run = statuses.get(&t.task_id).and_then(|s| s.run(t.run_id));
                TaskObs {
                    task_id: t.task_id.clone(),
                    run_id: t.run_id,
                    state: run.map(|r| state(r.state).to_string()),
                    started: run.and_then(|r| r.started),
                    resolved: run.and_then(|r| r.resolved),
                    reason_resolved: run.and_then(|r| r.reason_resolved.clone()),
                }
            });
            let obs = WorkerObs {
                pool: pool.clone(),
                known: true,
                last_active: w.last_date_active,
                quarantine_until: w.quarantine_until,
                latest_task,
                pending: Some(pending),
            };
            // Inventory ids are lower-case; the same id in two groups keeps the more recently active.
            let key = w.worker_id.to_ascii_lowercase();
            let newer = out.get(&key).is_none_or(|o| o.last_active < obs.last_active);
            if newer {
                out.insert(key, obs);
            }
        }
        Ok(PoolObs { workers: out, pending })
    }
}
