//! What the medic remembers of one machine, and the follow-up of a remediation.
//!
//! A remediation is done when its job is: a job that did not succeed is a failed
//! remediation. A job that succeeded proved the *host* came back; the medic then
//! waits (at most `service_within`) for the *worker* to take work again: a task
//! started after the job finished, or activity the queue recorded after it. The
//! queue records a worker's `lastDateActive` at most every 30 minutes, so a worker
//! back in a pool with nothing pending shows up within about that long.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Remedy;
use crate::health::{Seen, WorkerObs};
use crate::queue::{Job, JobState};

/// The medic's memory of a machine (a `medic` record keyed by worker id).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Memory {
    /// Failed remediations in a row (a machine back in service resets it).
    pub failures: u32,
    /// The newest remediation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Remediation>,
    /// When the medic last held it for a person: once that hold is gone (released or
    /// lapsed), the count starts again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_at: Option<DateTime<Utc>>,
}

/// One remediation the medic queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Remediation {
    pub job_id: String,
    pub task_name: String,
    pub at: DateTime<Utc>,
    /// The health reason it acted on.
    pub reason: String,
    /// `None` while the job runs or the worker is awaited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Remedy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
}

impl Memory {
    pub fn to_record(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A record the store gave back; an unreadable one is forgotten (the medic starts
    /// the machine's count again rather than stop).
    pub fn from_record(s: &str) -> Memory {
        serde_json::from_str(s).unwrap_or_default()
    }

    /// The remediation still in flight, if any.
    pub fn in_flight(&self) -> Option<&Remediation> {
        self.last.as_ref().filter(|r| r.outcome.is_none())
    }
}

/// How the remediation `r` stands, given its job (`None`: gone from the history) and the
/// worker's latest observation: `Some` once it has ended.
pub fn follow_up(
    r: &Remediation,
    job: Option<&Job>,
    worker: Option<&Seen<WorkerObs>>,
    now: DateTime<Utc>,
    service_within: std::time::Duration,
) -> Option<(Remedy, String)> {
    let Some(job) = job else {
        return Some((Remedy::JobFailed, format!("job {} is no longer in roller's history", r.job_id)));
    };
    if !job.state.is_final() {
        return None;
    }
    if job.state != JobState::Succeeded {
        let why = job.error.as_deref().unwrap_or("no error recorded");
        return Some((Remedy::JobFailed, format!("{} {}: {why}", job.task, job.state.as_str())));
    }
    let back = job.finished_at.unwrap_or(job.created_at);
    let Some(w) = worker else {
        return Some((Remedy::BackInService, "host proven back; no Taskcluster pool to watch for work".into()));
    };
    let w_at = w.at;
    let w = &w.value;
    if let Some(t) = w.latest_task.as_ref().filter(|t| t.started.is_some_and(|s| s > back)) {
        return Some((
            Remedy::BackInService,
            format!("took task {} at {} after the host came back", t.task_id, fmt(t.started.unwrap_or(back))),
        ));
    }
    if let Some(a) = w.last_active.filter(|a| *a > back) {
        return Some((
            Remedy::BackInService,
            format!("asked Taskcluster for work at {} after the host came back", fmt(a)),
        ));
    }
    let waited = now - back;
    let limit = chrono::Duration::from_std(service_within).unwrap_or(chrono::Duration::hours(1));
    // Only a reading taken after the limit can say "no work": an old one saw too little.
    if waited > limit && w_at > back + limit {
        return Some((
            Remedy::NotTakingWork,
            format!(
                "host proven back at {}, but the worker took no task and showed no activity in {} min",
                fmt(back),
                limit.num_minutes()
            ),
        ));
    }
    None
}

fn fmt(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ClientId, JobId, WorkerGroup, WorkerId};
    use crate::health::TaskObs;
    use crate::task::Task;
    use std::time::Duration;

    fn t(mins: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + chrono::Duration::minutes(mins)
    }

    fn job(state: JobState, finished: Option<i64>) -> Job {
        Job {
            id: JobId::new(),
            task: Task::Reboot,
            worker_id: WorkerId::parse("ms1").unwrap(),
            worker_group: WorkerGroup::parse("none").unwrap(),
            requester: ClientId::parse("roller-medic").unwrap(),
            origin: None,
            provisioner_id: None,
            worker_type: None,
            reason: None,
            state,
            attempts: 1,
            max_attempts: 1,
            created_at: t(0),
            started_at: Some(t(0)),
            finished_at: finished.map(t),
            consumer: None,
            lease_until: None,
            log: vec![],
            result: None,
            error: (state != JobState::Succeeded).then(|| "nothing worked".into()),
            touched: true,
            restore: None,
        }
    }

    fn rem() -> Remediation {
        Remediation {
            job_id: "j".into(),
            task_name: "reboot".into(),
            at: t(0),
            reason: "hung".into(),
            outcome: None,
            detail: None,
            ended_at: None,
        }
    }

    fn worker(at: i64, active: Option<i64>, started: Option<i64>) -> Seen<WorkerObs> {
        Seen::new(
            t(at),
            WorkerObs {
                pool: "p/t".into(),
                known: true,
                last_active: active.map(t),
                quarantine_until: None,
                latest_task: started.map(|s| TaskObs {
                    task_id: "T1".into(),
                    run_id: 0,
                    state: Some("running".into()),
                    started: Some(t(s)),
                    resolved: None,
                    reason_resolved: None,
                }),
                pending: Some(3),
            },
        )
    }

    const WITHIN: Duration = Duration::from_secs(45 * 60);

    #[test]
    fn a_running_job_is_not_done() {
        assert_eq!(follow_up(&rem(), Some(&job(JobState::Running, None)), None, t(5), WITHIN), None);
    }

    #[test]
    fn a_failed_or_vanished_job_is_a_failed_remediation() {
        let (r, d) = follow_up(&rem(), Some(&job(JobState::Failed, Some(5))), None, t(6), WITHIN).unwrap();
        assert_eq!(r, Remedy::JobFailed);
        assert!(d.contains("nothing worked"), "{d}");
        assert_eq!(follow_up(&rem(), None, None, t(6), WITHIN).unwrap().0, Remedy::JobFailed);
    }

    #[test]
    fn a_task_started_after_the_reboot_is_back_in_service() {
        let j = job(JobState::Succeeded, Some(10));
        let (r, d) = follow_up(&rem(), Some(&j), Some(&worker(20, Some(-60), Some(15))), t(20), WITHIN).unwrap();
        assert_eq!(r, Remedy::BackInService);
        assert!(d.contains("T1"), "{d}");
        // Activity after the reboot counts too; activity before it does not.
        let (r, _) = follow_up(&rem(), Some(&j), Some(&worker(20, Some(12), Some(-90))), t(20), WITHIN).unwrap();
        assert_eq!(r, Remedy::BackInService);
        assert_eq!(follow_up(&rem(), Some(&j), Some(&worker(20, Some(5), Some(-90))), t(20), WITHIN), None);
    }

    #[test]
    fn no_work_within_the_limit_is_not_taking_work_once_a_late_enough_reading_says_so() {
        let j = job(JobState::Succeeded, Some(10));
        // 50 min after the reboot, but the newest reading is from minute 30: wait.
        assert_eq!(follow_up(&rem(), Some(&j), Some(&worker(30, Some(5), None)), t(60), WITHIN), None);
        let (r, d) = follow_up(&rem(), Some(&j), Some(&worker(58, Some(5), None)), t(60), WITHIN).unwrap();
        assert_eq!(r, Remedy::NotTakingWork);
        assert!(d.contains("45 min"), "{d}");
    }
}
