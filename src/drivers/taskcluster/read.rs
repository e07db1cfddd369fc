//! The reads of a worker pool's health, each parsed at the edge into the published
//! schema's shape (services/queue/schemas/v1 in taskcluster/taskcluster): the queue's
//! workers of a pool in pages (`queue.listWorkers`), the runs of many tasks in a few calls
//! (`queue.statuses`), one worker's recent tasks (`queue.getWorker`) and a pool's queue
//! counts (`queue.taskQueueCounts`). The traps of these calls are the reason for most of
//! what is here (reference/fleet-health.md §1): a listWorkers page can be short or empty
//! while more follow, a run's end is `resolved`, `recentTasks` is oldest first.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{TaskclusterClient, TaskclusterError, WorkerRef};

/// Taskcluster's largest page (`paginateResults`: `min(limit, 1000)`), and the size of
/// a `queue.statuses` batch, so a pool of a few thousand workers costs a few calls.
const PAGE: usize = 1000;
/// Pages of one pool roller follows before it calls the listing broken: 100,000
/// rows, far past any hardware pool, and a token that never ends stops here.
const MAX_WORKER_PAGES: usize = 100;
/// Pages one `queue.statuses` batch may take: a batch of `PAGE` ids fits one page of
/// `PAGE` answers, so more means the paging is not what the API says.
const MAX_STATUS_PAGES: usize = 10;

/// One task run, as the queue names it (`task-run.yml`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRun {
    pub task_id: String,
    pub run_id: u32,
}

/// A worker as `queue.listWorkers` lists it (`list-workers-response.yml`). The names
/// are Taskcluster's, exactly (its identifiers are case-sensitive).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedWorker {
    pub worker_group: String,
    pub worker_id: String,
    /// When the queue first saw the worker call `claimWork`, task or not.
    pub first_claim: DateTime<Utc>,
    /// The last `claimWork`/`reclaimTask` (written at most every 30 minutes). A
    /// quarantined worker that keeps polling still moves it: it means "polling", not "working".
    pub last_date_active: Option<DateTime<Utc>>,
    /// The newest task the worker claimed (the last of its `recentTasks`); absent when none.
    pub latest_task: Option<TaskRun>,
    /// Present only while the quarantine lasts: the queue leaves out a date in the past.
    pub quarantine_until: Option<DateTime<Utc>>,
}

/// One page of `queue.listWorkers`. The queue pages first and filters after, so a page
/// may be short or empty while `continuation_token` says more follow.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerPage {
    pub workers: Vec<ListedWorker>,
    pub continuation_token: Option<String>,
}

/// One worker as `queue.getWorker` answers (`worker-response.yml`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerDetail {
    pub worker_group: String,
    pub worker_id: String,
    /// At most 20, **oldest first**: the newest is the last (`latest_task`).
    pub recent_tasks: Vec<TaskRun>,
    pub first_claim: DateTime<Utc>,
    pub last_date_active: Option<DateTime<Utc>>,
    /// The queue forgets the worker (404) a day after it was last seen, unless quarantined.
    pub expires: DateTime<Utc>,
    /// The queue always sends it (the schema does not require it); a time in the past
    /// (about ten years ago when never set) is no quarantine.
    pub quarantine_until: Option<DateTime<Utc>>,
}

impl WorkerDetail {
    /// The task the worker claimed last.
    pub fn latest_task(&self) -> Option<&TaskRun> {
        self.recent_tasks.last()
    }
}

/// A run's state (`task-status.yml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Pending,
    Running,
    Completed,
    Failed,
    Exception,
}

/// One run of a task: who ran it and when. `started` is the claim and appears once the
/// run is claimed; `resolved` (not `ended`, which no version has) once it is over.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    pub run_id: u32,
    pub state: RunState,
    /// `completed`, `failed`, `claim-expired`, `worker-shutdown`, …; the schema says more
    /// may come, so it stays text.
    pub reason_resolved: Option<String>,
    pub started: Option<DateTime<Utc>>,
    pub resolved: Option<DateTime<Utc>>,
    pub worker_group: Option<String>,
    pub worker_id: Option<String>,
}

/// A task's runs, oldest first (index == `run_id`). A run that expired or was cut short
/// by a worker shutdown is followed by a retry that another worker may run: a worker's
/// run is the one its `latest_task` names, not the task's last.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskStatus {
    pub task_id: String,
    pub runs: Vec<Run>,
}

impl TaskStatus {
    pub fn run(&self, run_id: u32) -> Option<&Run> {
        self.runs.iter().find(|r| r.run_id == run_id)
    }
}

/// A pool's queue counts (`task-queue-counts-response.yml`), both approximate upper bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskQueueCounts {
    pub pending_tasks: u64,
    pub claimed_tasks: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusesPage {
    statuses: Vec<StatusEntry>,
    continuation_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusEntry {
    task_id: String,
    status: StatusBody,
}

#[derive(Deserialize)]
struct StatusBody {
    runs: Vec<Run>,
}

/// `api/queue/v1/provisioners/<p>/worker-types/<wt>/workers/<wg>/<wid>`: getWorker's
/// and quarantineWorker's path.
pub(super) fn worker_path(w: &WorkerRef<'_>) -> String {
    let seg = super::super::path_segment;
    format!("{}/{}/{}", workers_path(w.provisioner_id, w.worker_type), seg(w.worker_group), seg(w.worker_id))
}

fn workers_path(provisioner_id: &str, worker_type: &str) -> String {
    let seg = super::super::path_segment;
    format!("api/queue/v1/provisioners/{}/worker-types/{}/workers", seg(provisioner_id), seg(worker_type))
}

impl TaskclusterClient {
    /// One page of the pool's workers (`queue.listWorkers`, deprecated but the only call
    /// that lists standalone hardware workers: worker-manager does not know them), 1,000
    /// rows at a time. Needs `queue:list-workers:<p>/<wt>`. Workers the queue has
    /// forgotten (unseen for a day and not quarantined) are not listed.
    pub async fn list_workers(
        &self,
        provisioner_id: &str,
        worker_type: &str,
        continuation_token: Option<&str>,
        cancel: &CancellationToken,
    ) -> Result<WorkerPage, TaskclusterError> {
        let mut url = self.url(&workers_path(provisioner_id, worker_type));
        url.query_pairs_mut().append_pair("limit", &PAGE.to_string());
        if let Some(t) = continuation_token {
            url.query_pairs_mut().append_pair("continuationToken", t);
        }
        self.read("queue.listWorkers", reqwest::Method::GET, url, None, cancel).await
    }

    /// Every worker of the pool: pages followed until the queue gives no token (an empty
    /// page with a token is not the end), at most `MAX_WORKER_PAGES`.
    pub async fn list_all_workers(
        &self,
        provisioner_id: &str,
        worker_type: &str,
        cancel: &CancellationToken,
    ) -> Result<Vec<ListedWorker>, TaskclusterError> {
        let mut workers = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_WORKER_PAGES {
            let page = self.list_workers(provisioner_id, worker_type, token.as_deref(), cancel).await?;
            workers.extend(page.workers);
            match page.continuation_token {
                Some(next) => token = Some(next),
                None => return Ok(workers),
            }
        }
        Err(TaskclusterError::Protocol {
            call: "queue.listWorkers",
            detail: format!(
                "{provisioner_id}/{worker_type} still has more after {MAX_WORKER_PAGES} pages of {PAGE}; stopped there"
            ),
        })
    }

    /// The runs of each task (`queue.statuses`), `PAGE` ids per call, keyed by task id.
    /// Ids the queue does not know (expired tasks) are silently left out, as it does.
    /// Needs `queue:status:<taskId>` for each.
    pub async fn task_statuses<S: AsRef<str>>(
        &self,
        task_ids: &[S],
        cancel: &CancellationToken,
    ) -> Result<HashMap<String, TaskStatus>, TaskclusterError> {
        const CALL: &str = "queue.statuses";
        let mut seen = HashSet::new();
        let ids: Vec<&str> = task_ids.iter().map(AsRef::as_ref).filter(|id| seen.insert(*id)).collect();
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(PAGE) {
            let body = json!({ "taskIds": chunk });
            let mut token: Option<String> = None;
            let mut pages = 0;
            loop {
                pages += 1;
                if pages > MAX_STATUS_PAGES {
                    let detail =
                        format!("a batch of {} ids still has more after {MAX_STATUS_PAGES} pages", chunk.len());
                    return Err(TaskclusterError::Protocol { call: CALL, detail });
                }
                let mut url = self.url("api/queue/v1/tasks/status");
                url.query_pairs_mut().append_pair("limit", &PAGE.to_string());
                if let Some(t) = &token {
                    url.query_pairs_mut().append_pair("continuationToken", t);
                }
                let page: StatusesPage = self.read(CALL, reqwest::Method::POST, url, Some(&body), cancel).await?;
                for s in page.statuses {
                    out.insert(s.task_id.clone(), TaskStatus { task_id: s.task_id, runs: s.status.runs });
                }
                match page.continuation_token {
                    Some(next) => token = Some(next),
                    None => break,
                }
            }
        }
        Ok(out)
    }

    /// The pool's pending and claimed counts (`queue.taskQueueCounts`, stable). Needs
    /// `queue:pending-count:<p>/<wt>` and `queue:claimed-count:<p>/<wt>`; Firefox-CI
    /// grants both to `anonymous` (Taskcluster's sample public role lacks the second: then
    /// the refusal names it). Chosen over the deprecated `queue.pendingTasks` ("use
    /// taskQueueCounts instead"; deprecated calls do get removed, as declareProvisioner was
    /// after v106), and the claimed count is a second signal for free: it drops when a
    /// hung worker's claim expires.
    pub async fn task_queue_counts(
        &self,
        provisioner_id: &str,
        worker_type: &str,
        cancel: &CancellationToken,
    ) -> Result<TaskQueueCounts, TaskclusterError> {
        let seg = super::super::path_segment;
        // One path argument `<p>/<wt>`, its `/` encoded as Taskcluster's own clients do.
        let url = self.url(&format!("api/queue/v1/task-queues/{}%2F{}/counts", seg(provisioner_id), seg(worker_type)));
        self.read("queue.taskQueueCounts", reqwest::Method::GET, url, None, cancel).await
    }

    /// The pool's pending count (from `task_queue_counts`, see there).
    pub async fn pending_tasks(
        &self,
        provisioner_id: &str,
        worker_type: &str,
        cancel: &CancellationToken,
    ) -> Result<u64, TaskclusterError> {
        Ok(self.task_queue_counts(provisioner_id, worker_type, cancel).await?.pending_tasks)
    }

    /// One worker with its recent tasks (`queue.getWorker`); `None` when the queue does
    /// not know it (never seen, or forgotten a day after it was last seen unless quarantined).
    pub async fn get_worker(
        &self,
        w: &WorkerRef<'_>,
        cancel: &CancellationToken,
    ) -> Result<Option<WorkerDetail>, TaskclusterError> {
        match self.read("queue.getWorker", reqwest::Method::GET, self.url(&worker_path(w)), None, cancel).await {
            Ok(d) => Ok(Some(d)),
            Err(TaskclusterError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_listworkers_page_keeps_its_token_and_a_worker_may_lack_quarantine_task_and_activity() {
        // The shape the queue answers: quarantineUntil only while it lasts, latestTask
        // only once a task was claimed, lastDateActive left out while null.
        let page: WorkerPage = serde_json::from_str(
            r#"{
              "workers": [
                {"workerGroup": "mdc1", "workerId": "t-linux64-ms-001", "firstClaim": "2026-01-01T00:00:00.000Z",
                 "lastDateActive": "2026-03-01T10:00:00.000Z",
                 "latestTask": {"taskId": "fN1SbArXTPSVFNUvaOlinQ", "runId": 2},
                 "quarantineUntil": "3026-01-01T00:00:00.000Z"},
                {"workerGroup": "mdc1", "workerId": "t-linux64-ms-002", "firstClaim": "2026-01-02T00:00:00.000Z"}
              ],
              "continuationToken": "Mr5Q1mYB0x"
            }"#,
        )
        .unwrap();
        assert_eq!(page.continuation_token.as_deref(), Some("Mr5Q1mYB0x"));
        let [busy, fresh] = &page.workers[..] else { panic!("{page:?}") };
        assert_eq!(busy.latest_task, Some(TaskRun { task_id: "fN1SbArXTPSVFNUvaOlinQ".into(), run_id: 2 }));
        assert_eq!(busy.quarantine_until, Some(at("3026-01-01T00:00:00Z")));
        assert_eq!(busy.last_date_active, Some(at("2026-03-01T10:00:00Z")));
        assert_eq!((fresh.latest_task.as_ref(), fresh.quarantine_until, fresh.last_date_active), (None, None, None));
        assert_eq!(fresh.first_claim, at("2026-01-02T00:00:00Z"));

        // The last page has no token; an empty page may still have one.
        let last: WorkerPage = serde_json::from_str(r#"{"workers": []}"#).unwrap();
        assert_eq!(last.continuation_token, None);
        let empty: WorkerPage = serde_json::from_str(r#"{"workers": [], "continuationToken": "x1"}"#).unwrap();
        assert!(empty.workers.is_empty() && empty.continuation_token.is_some());
    }

    #[test]
    fn runs_without_a_claim_or_an_end_parse_and_the_end_is_resolved() {
        let page: StatusesPage = serde_json::from_str(
            r#"{"statuses": [{"taskId": "fN1SbArXTPSVFNUvaOlinQ", "status": {
                "taskId": "fN1SbArXTPSVFNUvaOlinQ", "provisionerId": "releng-hardware", "workerType": "gecko-t-linux",
                "taskQueueId": "releng-hardware/gecko-t-linux", "schedulerId": "gecko-level-3", "projectId": "none",
                "taskGroupId": "Y2f3Vq3mQ9y5E0Tqk0nDxg", "deadline": "2026-03-02T00:00:00.000Z",
                "expires": "2027-03-02T00:00:00.000Z", "retriesLeft": 4, "state": "pending",
                "runs": [
                  {"runId": 0, "state": "exception", "reasonCreated": "scheduled", "reasonResolved": "claim-expired",
                   "workerGroup": "mdc1", "workerId": "t-linux64-ms-001", "takenUntil": "2026-03-01T10:20:00.000Z",
                   "scheduled": "2026-03-01T09:59:00.000Z", "started": "2026-03-01T10:00:00.000Z",
                   "resolved": "2026-03-01T10:21:00.000Z"},
                  {"runId": 1, "state": "pending", "reasonCreated": "retry", "scheduled": "2026-03-01T10:21:00.000Z"}
                ]}}]}"#,
        )
        .unwrap();
        assert_eq!(page.continuation_token, None);
        let runs = &page.statuses[0].status.runs;
        assert_eq!(runs[0].state, RunState::Exception);
        assert_eq!(runs[0].reason_resolved.as_deref(), Some("claim-expired"));
        assert_eq!(runs[0].resolved, Some(at("2026-03-01T10:21:00Z")));
        assert_eq!(runs[0].worker_id.as_deref(), Some("t-linux64-ms-001"));
        let retry = &runs[1];
        assert_eq!(retry.state, RunState::Pending);
        assert_eq!((retry.started, retry.resolved, retry.worker_id.as_deref()), (None, None, None));
        assert!(retry.reason_resolved.is_none());
        let status = TaskStatus { task_id: "t".into(), runs: runs.clone() };
        assert_eq!(status.run(0).map(|r| r.state), Some(RunState::Exception));
        assert!(status.run(7).is_none());
    }

    #[test]
    fn an_unknown_run_state_or_a_missing_field_is_not_the_schema() {
        let bad =
            r#"{"runId": 0, "state": "ended", "reasonCreated": "scheduled", "scheduled": "2026-03-01T10:00:00Z"}"#;
        assert!(serde_json::from_str::<Run>(bad).is_err());
        assert!(serde_json::from_str::<WorkerPage>(r#"{"continuationToken": "a"}"#).is_err());
        assert!(serde_json::from_str::<ListedWorker>(r#"{"workerGroup": "g", "workerId": "w"}"#).is_err());
    }

    #[test]
    fn get_worker_lists_recent_tasks_oldest_first_and_always_has_quarantine_until() {
        let w: WorkerDetail = serde_json::from_str(
            r#"{"provisionerId": "releng-hardware", "workerType": "gecko-t-linux",
                "taskQueueId": "releng-hardware/gecko-t-linux", "workerGroup": "mdc1", "workerId": "ms-001",
                "recentTasks": [{"taskId": "AAAAAAAAQAaAAAAAAAAAAA", "runId": 0},
                                {"taskId": "BBBBBBBBQBaBBBBBBBBBBQ", "runId": 1}],
                "expires": "2026-03-02T10:00:00.000Z", "quarantineUntil": "2016-03-01T00:00:00.000Z",
                "firstClaim": "2026-01-01T00:00:00.000Z", "lastDateActive": "2026-03-01T10:00:00.000Z",
                "actions": []}"#,
        )
        .unwrap();
        assert_eq!(w.latest_task().map(|t| (t.task_id.as_str(), t.run_id)), Some(("BBBBBBBBQBaBBBBBBBBBBQ", 1)));
        assert_eq!(w.quarantine_until, Some(at("2016-03-01T00:00:00Z")));
        assert_eq!(w.expires, at("2026-03-02T10:00:00Z"));
    }

    #[test]
    fn queue_counts_parse_and_names_in_paths_are_one_segment_each() {
        let c: TaskQueueCounts = serde_json::from_str(
            r#"{"provisionerId": "p", "workerType": "wt", "taskQueueId": "p/wt", "pendingTasks": 7, "claimedTasks": 3}"#,
        )
        .unwrap();
        assert_eq!(c, TaskQueueCounts { pending_tasks: 7, claimed_tasks: 3 });
        let w = WorkerRef { provisioner_id: "p", worker_type: "w/t", worker_group: "g", worker_id: "a?b" };
        assert_eq!(worker_path(&w), "api/queue/v1/provisioners/p/worker-types/w%2Ft/workers/g/a%3Fb");
    }
}
