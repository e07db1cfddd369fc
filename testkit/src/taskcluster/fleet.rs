//! The queue's view of a fleet, as the stand-in keeps it: pools (task queues) of workers,
//! the tasks they claimed with their runs, a pending count per pool. The scripting API
//! changes it; the read routes render it in the published schemas' shapes, with the
//! queue's own rules (what expires when, what `listWorkers` leaves out, how it pages).

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Value, json};

/// `queue_worker_task_seen` keeps a worker's last 20 claims (TC db/versions/0064.yml).
const RECENT_TASKS: usize = 20;
/// A claim's lease before the worker must reclaim (the queue's default `claimTimeout`).
const CLAIM_TIMEOUT_MINUTES: i64 = 20;
/// Retries the queue makes after `claim-expired`, `worker-shutdown`, `intermittent-task`.
const RETRIES: u32 = 5;
/// Exception reasons the queue answers with a new run (`retry`, or `task-retry`).
const RETRIED: &[&str] = &["claim-expired", "worker-shutdown", "intermittent-task"];
/// `reasonResolved` values of an exception (`task-status.yml`).
const EXCEPTION_REASONS: &[&str] = &[
    "deadline-exceeded",
    "canceled",
    "superseded",
    "claim-expired",
    "worker-shutdown",
    "malformed-payload",
    "resource-unavailable",
    "internal-error",
    "intermittent-task",
];

/// A run of a task, as the queue names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskRun {
    pub task_id: String,
    pub run_id: u32,
}

/// How a run ends. An exception names its `reasonResolved`; `claim-expired`,
/// `worker-shutdown` and `intermittent-task` are retried as the queue does: a new pending run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Completed,
    Failed,
    Exception(&'static str),
}

struct Worker {
    first_claim: DateTime<Utc>,
    last_date_active: DateTime<Utc>,
    expires: DateTime<Utc>,
    quarantine_until: DateTime<Utc>,
    /// Oldest first, as the queue keeps them.
    recent_tasks: VecDeque<TaskRun>,
}

impl Worker {
    /// The queue forgets a worker a day after it was last seen, unless it is quarantined.
    fn visible(&self, now: DateTime<Utc>) -> bool {
        self.expires >= now || self.quarantine_until >= now
    }
}

#[derive(Default)]
struct Pool {
    /// Ordered as the queue's query orders them: by group, then id.
    workers: BTreeMap<(String, String), Worker>,
    pending: u64,
}

struct Run {
    state: &'static str,
    reason_created: &'static str,
    reason_resolved: Option<&'static str>,
    worker: Option<(String, String)>,
    taken_until: Option<DateTime<Utc>>,
    scheduled: DateTime<Utc>,
    started: Option<DateTime<Utc>>,
    resolved: Option<DateTime<Utc>>,
}

struct Task {
    task_queue_id: String,
    created: DateTime<Utc>,
    retries_left: u32,
    runs: Vec<Run>,
}

pub(super) struct Fleet {
    pools: HashMap<String, Pool>,
    tasks: HashMap<String, Task>,
    /// Seeds task ids and continuation tokens, so neither is guessable across runs.
    random: RandomState,
    next_task: u64,
}

/// A worker's key: (task queue, group, id).
type Key<'a> = (&'a str, &'a str, &'a str);

fn time(t: DateTime<Utc>) -> String {
    // JavaScript's Date.toJSON, which the queue's answers use.
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `provisionerId/workerType`, split.
pub(super) fn split_queue_id(task_queue_id: &str) -> (&str, &str) {
    task_queue_id.split_once('/').unwrap_or((task_queue_id, ""))
}

impl Fleet {
    pub(super) fn new() -> Fleet {
        Fleet { pools: HashMap::new(), tasks: HashMap::new(), random: RandomState::new(), next_task: 0 }
    }

    fn worker_mut(&mut self, (pool, group, id): Key<'_>) -> &mut Worker {
        self.pools
            .get_mut(pool)
            .and_then(|p| p.workers.get_mut(&(group.to_string(), id.to_string())))
            .unwrap_or_else(|| panic!("the scripted fleet has no worker {pool}/{group}/{id}"))
    }

    fn worker(&self, (pool, group, id): Key<'_>) -> Option<&Worker> {
        self.pools.get(pool)?.workers.get(&(group.to_string(), id.to_string()))
    }

    /// A worker the queue first saw calling `claimWork` at `at`.
    pub(super) fn add_worker(&mut self, (pool, group, id): Key<'_>, at: DateTime<Utc>) {
        assert!(pool.contains('/'), "a pool is named provisionerId/workerType, not {pool:?}");
        let worker = Worker {
            first_claim: at,
            last_date_active: at,
            expires: at + Duration::days(1),
            // The database's default for a worker never quarantined: ten years before.
            quarantine_until: at - Duration::days(3652),
            recent_tasks: VecDeque::new(),
        };
        let pool = self.pools.entry(pool.to_string()).or_default();
        pool.workers.insert((group.to_string(), id.to_string()), worker);
    }

    pub(super) fn remove_worker(&mut self, (pool, group, id): Key<'_>) -> bool {
        let pool = self.pools.get_mut(pool);
        pool.is_some_and(|p| p.workers.remove(&(group.to_string(), id.to_string())).is_some())
    }

    /// The worker called `claimWork` at `at` (a quarantined worker that keeps polling
    /// does): seen, a day more before it expires.
    pub(super) fn seen(&mut self, key: Key<'_>, at: DateTime<Utc>) {
        let w = self.worker_mut(key);
        w.last_date_active = at;
        w.expires = at + Duration::days(1);
    }

    pub(super) fn set_quarantine(&mut self, key: Key<'_>, until: DateTime<Utc>, now: DateTime<Utc>) {
        let w = self.worker_mut(key);
        w.quarantine_until = until;
        // quarantine_queue_worker keeps a quarantined worker at least a day more.
        w.expires = w.expires.max(now + Duration::days(1));
    }

    pub(super) fn set_pending(&mut self, pool: &str, n: u64) {
        self.pools.entry(pool.to_string()).or_default().pending = n;
    }

    /// A slugid (v4, "nice": it never starts with `-`), as Taskcluster's task ids are.
    fn task_id(&mut self) -> String {
        self.next_task += 1;
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.random.hash_one((self.next_task, 0u8)).to_le_bytes());
        bytes[8..].copy_from_slice(&self.random.hash_one((self.next_task, 1u8)).to_le_bytes());
        bytes[0] &= 0x7f;
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        base64url(&bytes)
    }

    /// The worker claims a new task at `at`: run 0, running, started then.
    pub(super) fn claim(&mut self, key: Key<'_>, at: DateTime<Utc>) -> TaskRun {
        let (pool, group, id) = key;
        let task_id = self.task_id();
        let run = TaskRun { task_id: task_id.clone(), run_id: 0 };
        let w = self.worker_mut(key);
        w.last_date_active = at;
        w.expires = at + Duration::days(1);
        w.recent_tasks.push_back(run.clone());
        if w.recent_tasks.len() > RECENT_TASKS {
            w.recent_tasks.pop_front();
        }
        let first = Run {
            state: "running",
            reason_created: "scheduled",
            reason_resolved: None,
            worker: Some((group.to_string(), id.to_string())),
            taken_until: Some(at + Duration::minutes(CLAIM_TIMEOUT_MINUTES)),
            scheduled: at,
            started: Some(at),
            resolved: None,
        };
        let task = Task { task_queue_id: pool.to_string(), created: at, retries_left: RETRIES, runs: vec![first] };
        self.tasks.insert(task_id, task);
        run
    }

    /// The task's last run ends at `at`.
    pub(super) fn resolve(&mut self, task_id: &str, how: Resolution, at: DateTime<Utc>) {
        let task = self.tasks.get_mut(task_id).unwrap_or_else(|| panic!("the scripted fleet has no task {task_id}"));
        let run = task.runs.last_mut().expect("a claimed task has a run");
        assert!(run.resolved.is_none(), "task {task_id} run {} is already resolved", task.runs.len() - 1);
        let (state, reason) = match how {
            Resolution::Completed => ("completed", "completed"),
            Resolution::Failed => ("failed", "failed"),
            Resolution::Exception(r) => {
                assert!(EXCEPTION_REASONS.contains(&r), "{r:?} is not an exception reason of task-status.yml");
                ("exception", r)
            }
        };
        (run.state, run.reason_resolved, run.resolved) = (state, Some(reason), Some(at));
        if RETRIED.contains(&reason) && task.retries_left > 0 {
            task.retries_left -= 1;
            task.runs.push(Run {
                state: "pending",
                reason_created: if reason == "intermittent-task" { "task-retry" } else { "retry" },
                reason_resolved: None,
                worker: None,
                taken_until: None,
                scheduled: at,
                started: None,
                resolved: None,
            });
        }
    }

    /// `queue.listWorkers`: a page of `size` rows from `offset`, then filtered as the
    /// queue filters (after paging): the rows, and whether more follow.
    pub(super) fn list_workers(
        &self,
        pool: &str,
        offset: usize,
        size: usize,
        quarantined: Option<bool>,
        now: DateTime<Utc>,
    ) -> (Vec<Value>, bool) {
        let Some(p) = self.pools.get(pool) else { return (Vec::new(), false) };
        let rows: Vec<_> = p.workers.iter().skip(offset).take(size + 1).collect();
        let more = rows.len() > size;
        let listed = rows
            .into_iter()
            .take(size)
            .filter(|(_, w)| w.visible(now))
            .filter(|(_, w)| quarantined.is_none_or(|q| q == (w.quarantine_until >= now)))
            .map(|((group, id), w)| {
                let mut entry = json!({
                    "workerGroup": group, "workerId": id,
                    "firstClaim": time(w.first_claim), "lastDateActive": time(w.last_date_active),
                });
                if let Some(t) = w.recent_tasks.back() {
                    entry["latestTask"] = json!({ "taskId": t.task_id, "runId": t.run_id });
                }
                // The queue leaves a past quarantine out of the list (not out of getWorker).
                if w.quarantine_until > now {
                    entry["quarantineUntil"] = json!(time(w.quarantine_until));
                }
                entry
            })
            .collect();
        (listed, more)
    }

    /// `queue.getWorker`'s answer (`worker-response.yml`), None when the queue would 404.
    pub(super) fn worker_json(&self, key: Key<'_>, now: DateTime<Utc>) -> Option<Value> {
        let w = self.worker(key).filter(|w| w.visible(now))?;
        let (pool, group, id) = key;
        let (p, t) = split_queue_id(pool);
        let recent: Vec<Value> =
            w.recent_tasks.iter().map(|r| json!({ "taskId": r.task_id, "runId": r.run_id })).collect();
        Some(json!({
            "provisionerId": p, "workerType": t, "taskQueueId": pool, "workerGroup": group, "workerId": id,
            "recentTasks": recent, "expires": time(w.expires), "quarantineUntil": time(w.quarantine_until),
            "firstClaim": time(w.first_claim), "lastDateActive": time(w.last_date_active), "actions": [],
        }))
    }

    pub(super) fn has_worker(&self, key: Key<'_>) -> bool {
        self.worker(key).is_some()
    }

    /// A task's status (`task-status.yml`), None for a task the queue does not know.
    pub(super) fn status_json(&self, task_id: &str) -> Option<Value> {
        let task = self.tasks.get(task_id)?;
        let (p, t) = split_queue_id(&task.task_queue_id);
        let runs: Vec<Value> = task
            .runs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut run = json!({
                    "runId": i, "state": r.state, "reasonCreated": r.reason_created, "scheduled": time(r.scheduled),
                });
                let optional = [
                    ("reasonResolved", r.reason_resolved.map(|s| json!(s))),
                    ("workerGroup", r.worker.as_ref().map(|w| json!(w.0))),
                    ("workerId", r.worker.as_ref().map(|w| json!(w.1))),
                    ("takenUntil", r.taken_until.map(|d| json!(time(d)))),
                    ("started", r.started.map(|d| json!(time(d)))),
                    ("resolved", r.resolved.map(|d| json!(time(d)))),
                ];
                for (k, v) in optional {
                    if let Some(v) = v {
                        run[k] = v;
                    }
                }
                run
            })
            .collect();
        let deadline = task.created + Duration::days(1);
        Some(json!({
            "taskId": task_id, "provisionerId": p, "workerType": t, "taskQueueId": task.task_queue_id,
            "schedulerId": "roller-testkit", "projectId": "none", "taskGroupId": task_id,
            "deadline": time(deadline), "expires": time(deadline + Duration::days(365)),
            "retriesLeft": task.retries_left, "state": task.runs.last().map_or("unscheduled", |r| r.state),
            "runs": runs,
        }))
    }

    /// The known tasks among `ids`, each once, in the order asked.
    pub(super) fn known_tasks<'a>(&self, ids: &'a [String]) -> Vec<&'a str> {
        let mut seen = HashSet::new();
        ids.iter().map(String::as_str).filter(|id| self.tasks.contains_key(*id) && seen.insert(*id)).collect()
    }

    /// (pending as scripted, claimed: the pool's running runs).
    pub(super) fn counts(&self, pool: &str) -> (u64, u64) {
        let pending = self.pools.get(pool).map_or(0, |p| p.pending);
        let claimed = self
            .tasks
            .values()
            .filter(|t| t.task_queue_id == pool && t.runs.last().is_some_and(|r| r.state == "running"))
            .count();
        (pending, claimed as u64)
    }

    /// An opaque continuation token for `offset`: alphanumeric like the queue's, and
    /// checked on the way back, so a token this server did not hand out is refused.
    pub(super) fn token(&self, offset: usize) -> String {
        let mask = self.random.hash_one("token-mask");
        format!("{:016x}{:08x}", offset as u64 ^ mask, self.random.hash_one(("token", offset)) as u32)
    }

    pub(super) fn offset(&self, token: &str) -> Option<usize> {
        if token.len() != 24 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let masked = u64::from_str_radix(&token[..16], 16).ok()?;
        let offset = usize::try_from(masked ^ self.random.hash_one("token-mask")).ok()?;
        (self.token(offset) == token).then_some(offset)
    }
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The queue's SLUGID_PATTERN, spelled out.
    fn is_slugid(s: &str) -> bool {
        let b = s.as_bytes();
        let any = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
        b.len() == 22
            && b[..8].iter().all(|c| any(*c))
            && (b'Q'..=b'T').contains(&b[8])
            && any(b[9])
            && b"CGKOSWaeimquy26-".contains(&b[10])
            && b[11..21].iter().all(|c| any(*c))
            && b"AQgw".contains(&b[21])
    }

    #[test]
    fn task_ids_are_slugids_and_base64url_is_the_rfc_alphabet() {
        assert_eq!(base64url(b"\xfb\xff\xbf"), "-_-_");
        assert_eq!(base64url(b"ab"), "YWI");
        let mut f = Fleet::new();
        let ids: HashSet<String> = (0..2000).map(|_| f.task_id()).collect();
        assert_eq!(ids.len(), 2000);
        assert!(ids.iter().all(|id| is_slugid(id) && !id.starts_with('-')), "{ids:?}");
    }

    #[test]
    fn tokens_come_back_as_their_offsets_and_nothing_else_does() {
        let f = Fleet::new();
        for offset in [1, 1000, 123_456] {
            assert_eq!(f.offset(&f.token(offset)), Some(offset));
        }
        let t = f.token(1000);
        let forged = format!("{}{}", &t[..23], if t.ends_with('0') { '1' } else { '0' });
        assert_eq!(f.offset(&forged), None);
        assert_eq!(f.offset(&Fleet::new().token(1000)), None, "another server's token");
        assert_eq!(f.offset("garbage"), None);
    }
}
