//! A Taskcluster stand-in (its services are not installable here) for every call roller
//! makes: the queue's worker-state reads (`listWorkers`, `getWorker`, `status`,
//! `statuses`, `pendingTasks`, `taskQueueCounts`), `quarantineWorker`,
//! `declareProvisioner`, notify's `email`, `matrix` and `slack`, and auth's `currentScopes`. It follows the
//! published API (routes, query patterns, schemas in services/*/schemas/v1 of
//! taskcluster/taskcluster, reference/fleet-health.md §1 and §7) and checks what it
//! receives as the real services do:
//!
//! - Authentication: a request without an Authorization header is `anonymous`, holding
//!   [`ANONYMOUS_SCOPES`] (Firefox-CI's public grants); one with a header must be
//!   [`CLIENT_ID`]'s Hawk over method, host, port and the full resource (±15 min), with
//!   the payload hash when the header carries one, or it is a 401.
//! - Scopes: the call's scope for the exact worker, task, queue, address, room or channel.
//! - Input: path identifiers, query parameters (`limit` `^[0-9]+$`, `quarantined`
//!   `^(true|false)$`, an opaque `continuationToken` it handed out itself), bodies
//!   against their schemas (no additional properties; quarantineUntil a date-time,
//!   quarantineInfo at most 4000 characters; email subject 1–255, link text 1–40).
//!
//! Its answers come from a scripted fleet (workers in pools, the tasks they claim and how
//! their runs end, pending counts), with the queue's own rules: pages of
//! `min(limit, 1000)` rows filtered after paging, workers forgotten a day after they were
//! last seen unless quarantined, `recentTasks` oldest first (at most 20), a run's end in
//! `resolved`. Every call is counted per endpoint. Times are the scripts' (each event
//! says when it happened); what is expired or quarantined is judged by the real clock.

mod fleet;
mod serve;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::Serving;

pub use fleet::{Resolution, TaskRun};

pub const CLIENT_ID: &str = "project/releng/roller";
pub const ACCESS_TOKEN: &str = "tc-token-canary-4242";

/// What Firefox-CI grants the `anonymous` role for the queue's and worker-manager's
/// reads (fxci-config `grants.d/grants.yml`; reference/fleet-health.md §1.2).
pub const ANONYMOUS_SCOPES: &[&str] = &[
    "queue:get-worker:*",
    "queue:list-workers:*",
    "queue:status:*",
    "queue:pending-count:*",
    "queue:claimed-count:*",
    "queue:list-worker-types:*",
    "worker-manager:get-worker:*",
    "worker-manager:list-workers:*",
];

/// A quarantine the queue accepted over HTTP.
#[derive(Debug, Clone, PartialEq)]
pub struct Quarantine {
    /// `provisionerId/workerType/workerGroup/workerId`.
    pub worker: String,
    pub until: DateTime<Utc>,
    pub info: String,
}

/// The server's state (what its handlers see).
struct Shared {
    port: u16,
    /// The scopes CLIENT_ID holds (besides the anonymous ones).
    scopes: Vec<String>,
    anonymous: Mutex<Vec<String>>,
    fleet: Mutex<fleet::Fleet>,
    log: Mutex<Vec<Quarantine>>,
    /// (call, body) of every accepted notify request and declareProvisioner.
    notes: Mutex<Vec<(String, Value)>>,
    /// Notify requests still to answer with a 500 (an unwell service).
    failing: Mutex<u32>,
    calls: Mutex<BTreeMap<&'static str, u64>>,
}

impl Shared {
    fn count(&self, call: &'static str) {
        *self.calls.lock().unwrap().entry(call).or_default() += 1;
    }
}

/// The stand-in: its root URL for clients, and the scripting API for tests. A pool is
/// named by its task queue id, `provisionerId/workerType`.
#[derive(Clone)]
pub struct FakeTaskcluster {
    pub root_url: String,
    shared: Arc<Shared>,
    _serving: Arc<Serving>,
}

impl FakeTaskcluster {
    /// Serve on a free loopback port, in the calling runtime; `scopes` are CLIENT_ID's.
    pub async fn start(scopes: &[&str]) -> FakeTaskcluster {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let port = listener.local_addr().expect("a bound address").port();
        let shared = Arc::new(Shared {
            port,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            anonymous: Mutex::new(ANONYMOUS_SCOPES.iter().map(|s| s.to_string()).collect()),
            fleet: Mutex::new(fleet::Fleet::new()),
            log: Mutex::default(),
            notes: Mutex::default(),
            failing: Mutex::default(),
            calls: Mutex::default(),
        });
        let app = serve::router(shared.clone());
        let serving = tokio::spawn(async move { axum::serve(listener, app).await.expect("the stand-in serves") });
        FakeTaskcluster { root_url: format!("http://127.0.0.1:{port}"), shared, _serving: Arc::new(Serving(serving)) }
    }

    /// What `anonymous` holds from now on (Taskcluster's sample public role, say, which
    /// lacks `queue:claimed-count:*`).
    pub fn set_anonymous_scopes(&self, scopes: &[&str]) {
        *self.shared.anonymous.lock().unwrap() = scopes.iter().map(|s| s.to_string()).collect();
    }

    /// (call, body) of every notify request (and declareProvisioner) accepted, oldest first.
    pub fn notes(&self) -> Vec<(String, Value)> {
        self.shared.notes.lock().unwrap().clone()
    }

    /// Answer the next `n` notify requests with a 500.
    pub fn fail_next(&self, n: u32) {
        *self.shared.failing.lock().unwrap() = n;
    }

    /// Every quarantine the queue accepted over HTTP, oldest first.
    pub fn quarantines(&self) -> Vec<Quarantine> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Calls received per endpoint (`queue.listWorkers`, `queue.statuses`, …), refused ones too.
    pub fn calls(&self) -> BTreeMap<&'static str, u64> {
        self.shared.calls.lock().unwrap().clone()
    }

    /// Calls received in all, refused ones too.
    pub fn total_calls(&self) -> u64 {
        self.shared.calls.lock().unwrap().values().sum()
    }

    pub fn reset_calls(&self) {
        self.shared.calls.lock().unwrap().clear();
    }

    fn fleet(&self) -> std::sync::MutexGuard<'_, fleet::Fleet> {
        self.shared.fleet.lock().unwrap()
    }

    /// A worker the queue first saw at `at` (its first `claimWork`, task or not): it
    /// expires a day later unless seen again. Replaces a worker of the same name.
    pub fn add_worker(&self, pool: &str, group: &str, id: &str, at: DateTime<Utc>) {
        self.fleet().add_worker((pool, group, id), at);
    }

    /// The queue forgets the worker at once (true if it knew it).
    pub fn remove_worker(&self, pool: &str, group: &str, id: &str) -> bool {
        self.fleet().remove_worker((pool, group, id))
    }

    /// The worker polled at `at` without claiming (as a quarantined worker keeps doing):
    /// `lastDateActive` moves, and it expires a day after.
    pub fn seen(&self, pool: &str, group: &str, id: &str, at: DateTime<Utc>) {
        self.fleet().seen((pool, group, id), at);
    }

    /// The worker claims a new task at `at`: run 0, running, `started` then; the worker's
    /// `lastDateActive` and `recentTasks` move as the queue moves them.
    pub fn claim(&self, pool: &str, group: &str, id: &str, at: DateTime<Utc>) -> TaskRun {
        self.fleet().claim((pool, group, id), at)
    }

    /// The task's last run ends at `at` (`resolved`, `reasonResolved`); a retried
    /// exception adds a pending run, as the queue does.
    pub fn resolve(&self, task_id: &str, how: Resolution, at: DateTime<Utc>) {
        self.fleet().resolve(task_id, how, at);
    }

    /// What `pendingTasks` and `taskQueueCounts` say is pending in the pool
    /// (`claimedTasks` is counted: the pool's running runs).
    pub fn set_pending(&self, pool: &str, n: u64) {
        self.fleet().set_pending(pool, n);
    }

    /// Quarantine as another client would (not in [`FakeTaskcluster::quarantines`]); a
    /// time in the past lifts it.
    pub fn quarantine(&self, pool: &str, group: &str, id: &str, until: DateTime<Utc>) {
        self.fleet().set_quarantine((pool, group, id), until, Utc::now());
    }
}
