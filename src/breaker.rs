//! The reboot-loop breaker as a rule: from a machine's job history and its resets,
//! the restarts that count and whether it refuses the next one. The API asks it
//! before queueing a restart; the medic asks it before choosing one. Both read the
//! same history, so both refuse alike.
//!
//! A restart counts when a restarting task's command reached a device (`Job::touched`,
//! recorded before the command went out): a job that failed on its configuration or
//! skipped every step restarted nothing. An operator's reset records who, when and
//! why; restarts before the newest reset no longer count.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::WorkerId;
use crate::queue::{BreakerReset, Job, Queue, QueueError};
use crate::task::Task;

/// How many resets an assessment carries (the newest first).
pub const RESETS_SHOWN: usize = 5;

/// The breaker's limits (`[safety]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerRule {
    /// 0 turns the breaker off.
    pub max_restarts: u32,
    pub window: Duration,
}

/// The breaker for one machine.
#[derive(Debug, Clone)]
pub struct Breaker {
    /// The restarts that count, oldest first: (when, task, job id).
    pub restarts: Vec<(DateTime<Utc>, Task, String)>,
    /// When it lets the next restart through, if it refuses now.
    pub open_until: Option<DateTime<Utc>>,
    /// Its newest resets, newest first.
    pub resets: Vec<BreakerReset>,
}

/// A restart that happened: a restarting task whose power command reached a device.
pub fn counts(j: &Job) -> bool {
    j.task.restarts_machine() && j.touched
}

impl BreakerRule {
    pub fn window(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.window).unwrap_or(chrono::Duration::hours(6))
    }

    /// The breaker from the machine's history (`jobs`, any order) and its resets at `now`.
    pub fn assess(&self, jobs: &[Job], resets: Vec<BreakerReset>, now: DateTime<Utc>) -> Breaker {
        let window = self.window();
        let since = (now - window).max(resets.first().map(|r| r.at).unwrap_or(DateTime::<Utc>::MIN_UTC));
        let mut restarts: Vec<(DateTime<Utc>, Task, String)> = jobs
            .iter()
            .filter(|j| counts(j))
            .map(|j| (j.started_at.unwrap_or(j.created_at), j.task, j.id.to_string()))
            .filter(|(t, ..)| *t >= since)
            .collect();
        restarts.sort();
        let max = self.max_restarts as usize;
        let open_until = (max > 0 && restarts.len() >= max).then(|| restarts[restarts.len() - max].0 + window);
        Breaker { restarts, open_until, resets }
    }

    /// The breaker of `worker` as the queue knows it now, with the history it read.
    pub async fn read(&self, queue: &dyn Queue, worker: &WorkerId) -> Result<(Breaker, Vec<Job>), QueueError> {
        let jobs = queue.history(worker, usize::MAX).await?;
        let resets = queue.breaker_resets(worker, RESETS_SHOWN).await?;
        Ok((self.assess(&jobs, resets, Utc::now()), jobs))
    }
}
