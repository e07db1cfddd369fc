//! The job's side channels: its log lines and its journal (what an action records
//! about the hardware before acting), both written to the job record and fenced by
//! the holder, off the action's path.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::LOG_BUFFER;
use crate::actions::{self, LogSink, Restore};
use crate::domain::JobId;
use crate::queue::{Mark, Queue};

/// A job's journal: marks go into its record, fenced by its holder.
pub(super) struct QueueJournal {
    pub(super) queue: Arc<dyn Queue>,
    pub(super) id: JobId,
    pub(super) holder: String,
}

#[async_trait::async_trait]
impl actions::Journal for QueueJournal {
    async fn touched(&self) -> Result<(), String> {
        self.queue.mark(self.id, &self.holder, Mark::Touched).await.map_err(|e| e.to_string())
    }
    async fn armed(&self, restore: &Restore) -> Result<(), String> {
        self.queue.mark(self.id, &self.holder, Mark::Armed(restore.to_record())).await.map_err(|e| e.to_string())
    }
    async fn disarmed(&self) -> Result<(), String> {
        self.queue.mark(self.id, &self.holder, Mark::Disarmed).await.map_err(|e| e.to_string())
    }
}

/// Writes an action's log lines to the job record, in order, off the action's path.
#[derive(Clone)]
pub(super) struct QueueLog {
    tx: mpsc::Sender<String>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl QueueLog {
    pub(super) fn start(
        queue: Arc<dyn Queue>,
        id: JobId,
        holder: String,
    ) -> (Arc<QueueLog>, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<String>(LOG_BUFFER);
        let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let d = dropped.clone();
        let writer = tokio::spawn(async move {
            let mut broken = false;
            while let Some(line) = rx.recv().await {
                // After one failure the rest is counted, not tried: each try could
                // wait out the backend's timeout and delay the outcome.
                if broken {
                    d.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    continue;
                }
                if let Err(e) = queue.append_log(id, &holder, &line).await {
                    tracing::warn!(task_id = %id, error = %e, "cannot append to job log; dropping its further lines");
                    d.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    broken = true;
                }
            }
            let n = d.load(std::sync::atomic::Ordering::Relaxed);
            if n > 0 {
                let _ = queue
                    .append_log(id, &holder, &format!("({n} log lines dropped: the log writer fell behind)"))
                    .await;
            }
        });
        (Arc::new(QueueLog { tx, dropped }), writer)
    }
}

impl LogSink for QueueLog {
    fn line(&self, line: String) {
        if self.tx.try_send(line).is_err() {
            self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}
