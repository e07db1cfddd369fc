//! The conformance suite every queue backend must pass.
//!
//! Each check is a `pub async fn` over `&dyn Queue` (or, when it needs to
//! reopen storage or block writes, over a [`Backend`]), so the Redis backend
//! runs exactly the same checks: implement [`Backend`] and invoke
//! [`conformance_suite!`] once, as `sqlite_conformance` below does.
//!
//! Only `Task::Ping` exists today, so checks that need several jobs for one
//! machine use different worker groups (coalescing is per machine+group+task)
//! and checks that need independent jobs use different worker ids.
//!
//! Lease expiry is waited for by polling with a generous deadline, never by a
//! fixed sleep; no check asserts how fast anything is.

use std::any::Any;
use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::records::{RecordKind, Records};
use super::{
    BREAKER_RESETS_KEPT, BreakerReset, Held, Job, JobState, Mark, NewJob, Outcome, Queue, QueueError, QueueOptions,
};
use crate::domain::{ClientId, JobId, TaskclusterName, WorkerGroup, WorkerId};
use crate::task::Task;

/// Long enough that it never expires during a check.
pub const LONG_LEASE: Duration = Duration::from_secs(300);
/// Short enough to wait for; long enough that a reserve right after taking it
/// still sees it live on a loaded machine (only checks that tolerate either
/// answer rely on that).
pub const SHORT_LEASE: Duration = Duration::from_millis(100);
/// Upper bound for any wait on lease expiry; reaching it means the backend is broken.
pub const DEADLINE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(20);

/// What a backend provides so the checks that go beyond one handle can run.
#[async_trait]
pub trait Backend: Send + Sync {
    /// A new handle on the backend's storage. Every call reaches the same data,
    /// as a restarted roller would.
    async fn open(&self) -> Box<dyn Queue> {
        self.open_with(QueueOptions::default()).await
    }
    /// Like [`Backend::open`], with explicit retention and history cap.
    async fn open_with(&self, options: QueueOptions) -> Box<dyn Queue>;
    /// Make the storage refuse writes from every handle until the returned
    /// guard is dropped (SQLite: another connection holding an EXCLUSIVE lock).
    async fn block_writes(&self) -> Box<dyn Any + Send>;
    /// A handle on the backend's shared records (`queue::records`).
    async fn open_records(&self) -> Box<dyn Records>;
}

/// Generate one `#[tokio::test]` per check for a backend. `$backend` is an
/// expression evaluated afresh for each test and must give an isolated
/// `impl Backend`.
macro_rules! conformance_suite {
    ($backend:expr) => {
        $crate::queue::conformance::conformance_suite!(@queue $backend;
            enqueue_then_get_round_trips_every_field,
            get_unknown_job_is_none,
            reserve_hands_out_oldest_first_and_marks_running,
            reserve_with_nothing_runnable_is_none,
            finish_records_each_outcome,
            finish_or_release_by_another_consumer_is_lost_lease,
            coalescing_returns_the_active_job,
            per_machine_lock_holds_until_finish,
            per_machine_lock_passes_to_the_oldest_job_after_lease_expiry,
            busy_machine_does_not_starve_others,
            a_runnable_job_behind_many_for_busy_machines_is_found,
            expired_lease_is_taken_over,
            retry_cap_fails_the_job_after_the_last_expired_lease,
            release_requeues_at_once_keeping_attempts,
            release_on_the_last_attempt_fails_the_job,
            the_retry_cap_is_the_one_given_at_enqueue,
            a_superseded_holder_cannot_write_into_the_new_attempts_log,
            marks_are_recorded_for_the_holder_only,
            an_armed_job_lost_on_its_last_attempt_is_handed_out_for_its_repair,
            an_armed_job_handed_back_goes_back_for_its_repair,
            a_job_disarmed_after_its_lease_ran_out_is_not_run_again,
            running_lists_the_holders_and_expire_ends_a_lease_now,
            running_lists_a_job_whose_lease_ran_out_until_it_is_taken_over,
            breaker_resets_are_kept_newest_first_and_capped,
            breaker_resets_are_ordered_by_their_time_not_their_arrival,
            log_lines_keep_their_order,
            history_is_newest_first_and_limited,
            concurrent_reserves_hand_each_job_out_once,
            stats_count_waiting_and_running_jobs,
            reclaim_returns_the_job_a_lost_reserve_handed_out,
            reserve_many_hands_out_several_each_to_its_holder,
            finish_many_answers_each_job_on_its_own,
        );
        $crate::queue::conformance::conformance_suite!(@records $backend;
            records_are_kept_per_kind_and_key,
            event_logs_keep_their_newest,
            a_lease_has_one_holder_until_it_expires_or_is_released,
            a_nonce_is_claimed_once_until_it_expires,
        );
        $crate::queue::conformance::conformance_suite!(@backend $backend;
            jobs_survive_reopen,
            health_fails_while_writes_are_blocked,
            final_jobs_expire_after_retention_and_active_ones_never,
            history_is_capped_per_machine,
            nonce_claims_are_shared_by_handles_and_survive_reopen,
            an_enqueue_carrying_a_claim_queues_once_per_digest,
        );
    };
    (@queue $backend:expr; $($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let backend = $backend;
            let queue = $crate::queue::conformance::Backend::open(&backend).await;
            $crate::queue::conformance::$name(&*queue).await;
        }
    )*};
    (@records $backend:expr; $($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let backend = $backend;
            let records = $crate::queue::conformance::Backend::open_records(&backend).await;
            $crate::queue::conformance::$name(&*records).await;
        }
    )*};
    (@backend $backend:expr; $($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let backend = $backend;
            $crate::queue::conformance::$name(&backend).await;
        }
    )*};
}
pub(crate) use conformance_suite;

/// A ping for `worker` in `group`, with every optional field set so round trips
/// check them all.
pub fn ping(worker: &str, group: &str) -> NewJob {
    NewJob {
        task: Task::Ping,
        max_attempts: Task::Ping.max_attempts(),
        worker_id: WorkerId::parse(worker).expect("test worker id"),
        worker_group: WorkerGroup::parse(group).expect("test worker group"),
        requester: ClientId::parse("project/releng/roller-test").expect("test client id"),
        origin: Some("https://tools.example.com".to_string()),
        provisioner_id: Some(TaskclusterName::parse("provisioner_id", "releng-hardware").unwrap()),
        worker_type: Some(TaskclusterName::parse("worker_type", "gecko-t-linux").unwrap()),
        reason: Some("roller-medic: hung (not answering)".to_string()),
    }
}

async fn enqueue(q: &dyn Queue, worker: &str, group: &str) -> Job {
    let e = q.enqueue(ping(worker, group)).await.expect("enqueue");
    assert!(e.created, "{worker}/{group} should be a new job");
    e.job
}

async fn get(q: &dyn Queue, id: JobId) -> Job {
    q.get(id).await.expect("get").expect("job exists")
}

/// Reserve for `consumer`, retrying until something is handed out.
async fn reserve_eventually(q: &dyn Queue, consumer: &str, lease: Duration) -> Job {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(job) = q.reserve(consumer, lease).await.expect("reserve") {
            return job;
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing became reservable within {DEADLINE:?}");
        tokio::time::sleep(POLL).await;
    }
}

fn assert_lost_lease(r: Result<(), QueueError>, id: JobId) {
    match r {
        Err(QueueError::LostLease(got)) => assert_eq!(got, id),
        other => panic!("expected LostLease({id}), got {other:?}"),
    }
}

fn lines(job: &Job) -> Vec<&str> {
    job.log.iter().map(|l| l.line.as_str()).collect()
}

pub async fn enqueue_then_get_round_trips_every_field(q: &dyn Queue) {
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let new = ping("MS1-10.mdc1", "mdc1");
    let e = q.enqueue(new.clone()).await.unwrap();
    assert!(e.created);
    let j = e.job;
    assert_eq!(j.task, Task::Ping);
    assert_eq!(j.worker_id, new.worker_id);
    assert_eq!(j.worker_id.as_str(), "ms1-10.mdc1");
    assert_eq!(j.worker_group, new.worker_group);
    assert_eq!(j.requester, new.requester);
    assert_eq!(j.origin, new.origin);
    assert_eq!(j.provisioner_id, new.provisioner_id);
    assert_eq!(j.worker_type, new.worker_type);
    assert_eq!(j.reason, new.reason);
    assert_eq!(j.state, JobState::Queued);
    assert_eq!(j.attempts, 0);
    assert_eq!(j.max_attempts, Task::Ping.max_attempts());
    assert!(j.created_at >= before && j.created_at <= chrono::Utc::now());
    assert_eq!((j.started_at, j.finished_at, j.lease_until), (None, None, None));
    assert_eq!(j.consumer, None);
    assert!(j.result.is_none() && j.error.is_none());

    let g = get(q, j.id).await;
    assert_eq!(g.id, j.id);
    assert_eq!(g.task, j.task);
    assert_eq!(g.worker_id, j.worker_id);
    assert_eq!(g.worker_group, j.worker_group);
    assert_eq!(g.requester, j.requester);
    assert_eq!(g.origin, j.origin);
    assert_eq!(g.provisioner_id, j.provisioner_id);
    assert_eq!(g.worker_type, j.worker_type);
    assert_eq!(g.reason, j.reason);
    assert_eq!(g.state, j.state);
    assert_eq!(g.attempts, j.attempts);
    assert_eq!(g.max_attempts, j.max_attempts);
    assert_eq!(g.created_at, j.created_at);
    assert_eq!(g.log, j.log);

    // Optional fields really are optional.
    let bare = NewJob { origin: None, provisioner_id: None, worker_type: None, reason: None, ..ping("bare", "mdc1") };
    let b = q.enqueue(bare).await.unwrap().job;
    let b = get(q, b.id).await;
    assert_eq!((b.origin, b.provisioner_id, b.worker_type, b.reason), (None, None, None, None));
}

pub async fn get_unknown_job_is_none(q: &dyn Queue) {
    assert!(q.get(JobId::new()).await.unwrap().is_none());
}

pub async fn reserve_hands_out_oldest_first_and_marks_running(q: &dyn Queue) {
    let a = enqueue(q, "a", "g").await;
    let b = enqueue(q, "b", "g").await;
    let c = enqueue(q, "c", "g").await;
    for want in [&a, &b, &c] {
        let r = q.reserve("runner-1", LONG_LEASE).await.unwrap().unwrap();
        assert_eq!(r.id, want.id);
        assert_eq!(r.state, JobState::Running);
        assert_eq!(r.attempts, 1);
        assert_eq!(r.consumer.as_deref(), Some("runner-1"));
        let started = r.started_at.expect("started_at set");
        assert!(started >= r.created_at);
        assert!(r.lease_until.expect("lease set") > started);
        assert_eq!(lines(&r), ["attempt 1 of 3 started by runner-1"]);
        // What reserve returned is what is stored.
        let g = get(q, r.id).await;
        assert_eq!(g.state, JobState::Running);
        assert_eq!(g.started_at, r.started_at);
        assert_eq!(g.lease_until, r.lease_until);
        assert_eq!(g.consumer, r.consumer);
    }
}

pub async fn stats_count_waiting_and_running_jobs(q: &dyn Queue) {
    assert_eq!(q.stats().await.unwrap(), super::QueueStats::default());
    let a = enqueue(q, "a", "g").await;
    let _b = enqueue(q, "b", "g").await;
    let s = q.stats().await.unwrap();
    assert_eq!((s.queued, s.running), (2, 0));
    assert_eq!(s.oldest_queued, Some(a.created_at), "the first enqueued waits longest");
    let r = q.reserve("r", LONG_LEASE).await.unwrap().unwrap();
    assert_eq!(r.id, a.id);
    let s = q.stats().await.unwrap();
    assert_eq!((s.queued, s.running, s.waiting_for_lock), (1, 1, 0));
    // A second job for the busy machine (another group: not coalesced) waits for its lock.
    let _a2 = enqueue(q, "a", "g2").await;
    let s = q.stats().await.unwrap();
    assert_eq!((s.queued, s.running, s.waiting_for_lock), (2, 1, 1));
    q.finish(r.id, "r", Outcome::Succeeded(serde_json::json!({}))).await.unwrap();
    let s = q.stats().await.unwrap();
    assert_eq!((s.queued, s.running, s.waiting_for_lock), (2, 0, 0));
    assert!(s.oldest_queued.is_some_and(|t| t >= a.created_at));
}

pub async fn reserve_with_nothing_runnable_is_none(q: &dyn Queue) {
    assert!(q.reserve("r", LONG_LEASE).await.unwrap().is_none());
    let j = enqueue(q, "a", "g").await;
    assert_eq!(q.reserve("r", LONG_LEASE).await.unwrap().unwrap().id, j.id);
    // Held with a live lease: not handed out again.
    assert!(q.reserve("r2", LONG_LEASE).await.unwrap().is_none());
    q.finish(j.id, "r", Outcome::Succeeded(serde_json::json!({}))).await.unwrap();
    assert!(q.reserve("r2", LONG_LEASE).await.unwrap().is_none());
}

pub async fn reserve_many_hands_out_several_each_to_its_holder(q: &dyn Queue) {
    let holders = |n: usize| (0..n).map(|i| format!("batch#{i}")).collect::<Vec<_>>();
    assert!(q.reserve_many(&holders(4), LONG_LEASE).await.unwrap().is_empty(), "nothing queued");
    let a = enqueue(q, "a", "g").await;
    // A second job for machine a (another group, so not coalesced) must wait for a's lock,
    // also when both would fit in one call.
    let a2 = enqueue(q, "a", "g2").await;
    let b = enqueue(q, "b", "g").await;
    let c = enqueue(q, "c", "g").await;
    let d = enqueue(q, "d", "g").await;
    let got = q.reserve_many(&holders(3), LONG_LEASE).await.unwrap();
    let ids: Vec<JobId> = got.iter().map(|j| j.id).collect();
    assert_eq!(ids, [a.id, b.id, c.id], "oldest first, one job per machine, no more than asked");
    for (i, j) in got.iter().enumerate() {
        let holder = format!("batch#{i}");
        assert_eq!((j.state, j.attempts), (JobState::Running, 1));
        assert_eq!(j.consumer.as_deref(), Some(holder.as_str()), "the i-th job is the i-th holder's");
        assert_eq!(lines(j), [format!("attempt 1 of 3 started by {holder}")]);
        let stored = get(q, j.id).await;
        assert_eq!((stored.consumer, stored.lease_until), (j.consumer.clone(), j.lease_until));
        // Each reservation is its own: reclaimed by its own holder.
        assert_eq!(q.reclaim(&holder, LONG_LEASE).await.unwrap().map(|r| r.id), Some(j.id));
    }
    // Asked for more than is runnable: d only (a2 waits for a).
    let more: Vec<String> = (0..5).map(|i| format!("more#{i}")).collect();
    let rest = q.reserve_many(&more, LONG_LEASE).await.unwrap();
    assert_eq!(rest.iter().map(|j| j.id).collect::<Vec<_>>(), [d.id]);
    assert_eq!(rest[0].consumer.as_deref(), Some("more#0"));
    q.finish(a.id, "batch#0", Outcome::Succeeded(serde_json::json!({}))).await.unwrap();
    let last = q.reserve_many(&more[1..], LONG_LEASE).await.unwrap();
    assert_eq!(last.iter().map(|j| (j.id, j.consumer.clone())).collect::<Vec<_>>(), [(a2.id, Some("more#1".into()))]);
    assert!(q.reserve_many(&[], LONG_LEASE).await.unwrap().is_empty());
}

pub async fn finish_many_answers_each_job_on_its_own(q: &dyn Queue) {
    use super::Finished;
    assert!(q.finish_many(&[]).await.unwrap().is_empty());
    let a = enqueue(q, "a", "g").await;
    let b = enqueue(q, "b", "g").await;
    let c = enqueue(q, "c", "g").await;
    let holders: Vec<String> = (0..3).map(|i| format!("h#{i}")).collect();
    let got = q.reserve_many(&holders, LONG_LEASE).await.unwrap();
    assert_eq!(got.len(), 3);
    let items = [
        Finished { id: a.id, consumer: "h#0".into(), outcome: Outcome::Succeeded(serde_json::json!({"step": 1})) },
        // Not b's holder: refused, and the others are recorded all the same.
        Finished { id: b.id, consumer: "h#0".into(), outcome: Outcome::Failed("wrong holder".into()) },
        Finished { id: c.id, consumer: "h#2".into(), outcome: Outcome::TimedOut("too slow".into()) },
    ];
    let answers = q.finish_many(&items).await.unwrap();
    assert_eq!(answers.len(), 3);
    assert!(answers[0].is_ok() && answers[2].is_ok(), "{answers:?}");
    assert!(matches!(answers[1], Err(QueueError::LostLease(id)) if id == b.id), "{answers:?}");
    let (a, b, c) = (get(q, a.id).await, get(q, b.id).await, get(q, c.id).await);
    assert_eq!((a.state, a.result), (JobState::Succeeded, Some(serde_json::json!({"step": 1}))));
    assert_eq!((b.state, b.consumer.as_deref()), (JobState::Running, Some("h#1")), "b is still h#1's");
    assert_eq!((c.state, c.error.as_deref()), (JobState::TimedOut, Some("too slow")));
    assert!(a.finished_at.is_some() && c.finished_at.is_some() && b.finished_at.is_none());
    // Finishing again is refused: the job is no longer held.
    let again = q.finish_many(&items[..1]).await.unwrap();
    assert!(matches!(again[..], [Err(QueueError::LostLease(_))]), "{again:?}");
}

pub async fn reclaim_returns_the_job_a_lost_reserve_handed_out(q: &dyn Queue) {
    assert!(q.reclaim("h#1", LONG_LEASE).await.unwrap().is_none(), "nothing handed out yet");
    let j = enqueue(q, "a", "g").await;
    let r = q.reserve("h#1", LONG_LEASE).await.unwrap().unwrap();
    // As if that answer was lost: the same holder asks again and gets the same job, unchanged.
    let again = q.reclaim("h#1", LONG_LEASE).await.unwrap().expect("the held job");
    assert_eq!((again.id, again.attempts, again.state), (j.id, 1, JobState::Running));
    assert_eq!(lines(&again), lines(&r), "reclaiming is not a new attempt");
    assert!(q.reclaim("h#2", LONG_LEASE).await.unwrap().is_none(), "another holder holds nothing");
    q.finish(j.id, "h#1", Outcome::Succeeded(serde_json::json!({}))).await.unwrap();
    assert!(q.reclaim("h#1", LONG_LEASE).await.unwrap().is_none(), "a finished job is held by no one");
    // Released: no longer held either.
    let k = enqueue(q, "b", "g").await;
    assert_eq!(q.reserve("h#3", LONG_LEASE).await.unwrap().unwrap().id, k.id);
    q.release(k.id, "h#3").await.unwrap();
    assert!(q.reclaim("h#3", LONG_LEASE).await.unwrap().is_none());
    // (The released job is queued again; run it to the end so it is out of the way.)
    assert_eq!(q.reserve("h#3b", LONG_LEASE).await.unwrap().unwrap().id, k.id);
    q.finish(k.id, "h#3b", Outcome::Succeeded(serde_json::json!({}))).await.unwrap();
    // A lease that ran out: the job is anyone's, not reclaimable (it is taken over instead).
    let m = enqueue(q, "c", "g").await;
    assert_eq!(q.reserve("h#4", Duration::from_millis(1)).await.unwrap().unwrap().id, m.id);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(q.reclaim("h#4", LONG_LEASE).await.unwrap().is_none(), "an expired lease is not reclaimed");
    q.finish(m.id, "h#4", Outcome::Succeeded(serde_json::json!({}))).await.unwrap();
    // A live one is renewed from now: reclaiming restarts the lease the lost answer started.
    let n = enqueue(q, "d", "g").await;
    let short = q.reserve("h#5", Duration::from_secs(5)).await.unwrap().unwrap();
    assert_eq!(short.id, n.id);
    let renewed = q.reclaim("h#5", LONG_LEASE).await.unwrap().expect("still held");
    assert!(renewed.lease_until > short.lease_until, "{:?} after {:?}", renewed.lease_until, short.lease_until);
}

pub async fn finish_records_each_outcome(q: &dyn Queue) {
    let result = serde_json::json!({"sent": 3, "received": 3, "rtt_ms": [1.5, 2.0, 1.25]});
    // What a job that did not succeed found before it stopped is kept beside its error.
    let found = serde_json::json!({"evidence": {"before": "ipmi_reset", "missing": []}});
    let with = |error: &str| crate::queue::Failure { error: error.into(), result: Some(found.clone()) };
    let cases = [
        (Outcome::Succeeded(result.clone()), JobState::Succeeded, None, Some(&result)),
        (Outcome::Failed("no reply".into()), JobState::Failed, Some("no reply"), None),
        (Outcome::TimedOut("soft limit".into()), JobState::TimedOut, Some("soft limit"), None),
        (Outcome::Cancelled("by operator".into()), JobState::Cancelled, Some("by operator"), None),
        (Outcome::Failed(with("not proven")), JobState::Failed, Some("not proven"), Some(&found)),
        (Outcome::TimedOut(with("hard limit")), JobState::TimedOut, Some("hard limit"), Some(&found)),
        (Outcome::Cancelled(with("")), JobState::Cancelled, Some(""), Some(&found)),
    ];
    for (i, (outcome, state, error, kept)) in cases.into_iter().enumerate() {
        let j = enqueue(q, &format!("m{i}"), "g").await;
        let r = q.reserve("r", LONG_LEASE).await.unwrap().unwrap();
        assert_eq!(r.id, j.id);
        q.finish(j.id, "r", outcome).await.unwrap();
        let f = get(q, j.id).await;
        assert_eq!(f.state, state);
        assert!(f.state.is_final());
        assert_eq!(f.error.as_deref(), error);
        assert_eq!(f.result.as_ref(), kept, "case {i}");
        let finished = f.finished_at.expect("finished_at set");
        assert!(finished >= f.started_at.unwrap());
        assert_eq!(f.lease_until, None);
        assert_eq!(f.attempts, 1);
        // Finishing twice is refused: the job is no longer held.
        assert_lost_lease(q.finish(j.id, "r", Outcome::Failed("again".into())).await, j.id);
        assert_eq!(get(q, j.id).await.state, state);
    }
    assert!(q.reserve("r", LONG_LEASE).await.unwrap().is_none());
}

pub async fn finish_or_release_by_another_consumer_is_lost_lease(q: &dyn Queue) {
    let j = enqueue(q, "a", "g").await;
    q.reserve("owner", LONG_LEASE).await.unwrap().unwrap();
    assert_lost_lease(q.finish(j.id, "intruder", Outcome::Succeeded(serde_json::json!(1))).await, j.id);
    assert_lost_lease(q.release(j.id, "intruder").await, j.id);
    let g = get(q, j.id).await;
    assert_eq!(g.state, JobState::Running);
    assert_eq!(g.consumer.as_deref(), Some("owner"));
    // Unknown jobs, and jobs never reserved, are not held by anyone.
    let unknown = JobId::new();
    assert_lost_lease(q.finish(unknown, "owner", Outcome::Failed("x".into())).await, unknown);
    let queued = enqueue(q, "b", "g").await;
    assert_lost_lease(q.release(queued.id, "owner").await, queued.id);
    assert_eq!(get(q, queued.id).await.state, JobState::Queued);
    q.finish(j.id, "owner", Outcome::Succeeded(serde_json::json!(1))).await.unwrap();
}

pub async fn coalescing_returns_the_active_job(q: &dyn Queue) {
    let first = q.enqueue(ping("a", "g1")).await.unwrap();
    assert!(first.created);
    let again = q.enqueue(ping("A", "g1")).await.unwrap();
    assert!(!again.created, "same machine (case-insensitive), group, task while queued");
    assert_eq!(again.job.id, first.job.id);
    assert_eq!(again.job.state, JobState::Queued);

    // Another group or machine is another job.
    let other_group = q.enqueue(ping("a", "g2")).await.unwrap();
    assert!(other_group.created);
    assert_ne!(other_group.job.id, first.job.id);
    let other_machine = q.enqueue(ping("b", "g1")).await.unwrap();
    assert!(other_machine.created);

    let r = q.reserve("r", LONG_LEASE).await.unwrap().unwrap();
    assert_eq!(r.id, first.job.id);
    let running = q.enqueue(ping("a", "g1")).await.unwrap();
    assert!(!running.created, "coalesced while running");
    assert_eq!(running.job.id, first.job.id);
    assert_eq!(running.job.state, JobState::Running);

    q.finish(r.id, "r", Outcome::Failed("down".into())).await.unwrap();
    let after = q.enqueue(ping("a", "g1")).await.unwrap();
    assert!(after.created, "a finished job is not reused");
    assert_ne!(after.job.id, first.job.id);
    assert_eq!(after.job.state, JobState::Queued);
}

pub async fn per_machine_lock_holds_until_finish(q: &dyn Queue) {
    let first = enqueue(q, "m", "g1").await;
    let second = enqueue(q, "m", "g2").await;
    assert_eq!(q.reserve("r1", LONG_LEASE).await.unwrap().unwrap().id, first.id);
    for consumer in ["r2", "r3"] {
        assert!(q.reserve(consumer, LONG_LEASE).await.unwrap().is_none(), "machine m is held by a live job");
    }
    assert_eq!(get(q, second.id).await.state, JobState::Queued);
    q.finish(first.id, "r1", Outcome::Succeeded(serde_json::json!(null))).await.unwrap();
    let r = q.reserve("r2", LONG_LEASE).await.unwrap().unwrap();
    assert_eq!(r.id, second.id);
    assert_eq!(r.attempts, 1);
}

pub async fn per_machine_lock_passes_to_the_oldest_job_after_lease_expiry(q: &dyn Queue) {
    let first = enqueue(q, "m", "g1").await;
    let second = enqueue(q, "m", "g2").await;
    assert_eq!(q.reserve("r1", SHORT_LEASE).await.unwrap().unwrap().id, first.id);
    // While the first lease is live nothing is handed out; once it expires the
    // older job of the machine is taken over, and the other still waits.
    let taken = reserve_eventually(q, "r2", LONG_LEASE).await;
    assert_eq!(taken.id, first.id);
    assert_eq!(taken.attempts, 2);
    assert!(q.reserve("r3", LONG_LEASE).await.unwrap().is_none());
    assert_eq!(get(q, second.id).await.state, JobState::Queued);
    q.finish(first.id, "r2", Outcome::Succeeded(serde_json::json!(null))).await.unwrap();
    assert_eq!(q.reserve("r3", LONG_LEASE).await.unwrap().unwrap().id, second.id);
}

pub async fn busy_machine_does_not_starve_others(q: &dyn Queue) {
    let a1 = enqueue(q, "a", "g1").await;
    let a2 = enqueue(q, "a", "g2").await;
    let a3 = enqueue(q, "a", "g3").await;
    let b = enqueue(q, "b", "g1").await;
    assert_eq!(q.reserve("r", LONG_LEASE).await.unwrap().unwrap().id, a1.id);
    // a2 and a3 are older than b but their machine is busy.
    assert_eq!(q.reserve("r", LONG_LEASE).await.unwrap().unwrap().id, b.id);
    assert!(q.reserve("r", LONG_LEASE).await.unwrap().is_none());
    q.finish(a1.id, "r", Outcome::Succeeded(serde_json::json!(null))).await.unwrap();
    // And the busy machine's own jobs stay in order.
    assert_eq!(q.reserve("r", LONG_LEASE).await.unwrap().unwrap().id, a2.id);
    assert_eq!(get(q, a3.id).await.state, JobState::Queued);
}

/// Far more waiting jobs for busy machines than a first look covers (Redis widens its scan
/// window past them), and finished jobs still listed as waiting (dropped on the way).
pub async fn a_runnable_job_behind_many_for_busy_machines_is_found(q: &dyn Queue) {
    let held = enqueue(q, "busy", "g0").await;
    assert_eq!(q.reserve("r", LONG_LEASE).await.unwrap().unwrap().id, held.id);
    for g in 1..=40 {
        enqueue(q, "busy", &format!("g{g}")).await;
    }
    let free = enqueue(q, "free", "g").await;
    assert_eq!(q.reserve("r2", LONG_LEASE).await.unwrap().unwrap().id, free.id);
    assert!(q.reserve("r3", LONG_LEASE).await.unwrap().is_none(), "only busy-machine jobs are left");
    assert_eq!(q.stats().await.unwrap().waiting_for_lock, 40);
}

pub async fn expired_lease_is_taken_over(q: &dyn Queue) {
    let j = enqueue(q, "a", "g").await;
    let first = q.reserve("old", SHORT_LEASE).await.unwrap().unwrap();
    assert_eq!(first.id, j.id);
    let taken = reserve_eventually(q, "new", LONG_LEASE).await;
    assert_eq!(taken.id, j.id);
    assert_eq!(taken.state, JobState::Running);
    assert_eq!(taken.attempts, 2);
    assert_eq!(taken.consumer.as_deref(), Some("new"));
    assert!(taken.started_at.unwrap() >= first.started_at.unwrap());
    assert!(taken.lease_until.unwrap() > first.lease_until.unwrap());
    let log = lines(&taken);
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log[1].starts_with("attempt 2 of 3 started by new") && log[1].contains("takeover"), "{log:?}");
    let expired_at = first.lease_until.unwrap().to_rfc3339();
    assert!(log[1].contains(&format!("the lease of old expired at {expired_at}")), "{log:?} vs {expired_at}");
    // The runner that lost the lease can no longer finish or hand back the job.
    assert_lost_lease(q.finish(j.id, "old", Outcome::Succeeded(serde_json::json!(1))).await, j.id);
    assert_lost_lease(q.release(j.id, "old").await, j.id);
    q.finish(j.id, "new", Outcome::Succeeded(serde_json::json!(2))).await.unwrap();
    let done = get(q, j.id).await;
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.result, Some(serde_json::json!(2)));
}

pub async fn retry_cap_fails_the_job_after_the_last_expired_lease(q: &dyn Queue) {
    let j = enqueue(q, "a", "g1").await;
    assert_eq!(j.max_attempts, 3);
    assert_eq!(q.reserve("c1", SHORT_LEASE).await.unwrap().unwrap().id, j.id);
    for (consumer, attempt) in [("c2", 2), ("c3", 3)] {
        let r = reserve_eventually(q, consumer, SHORT_LEASE).await;
        assert_eq!(r.id, j.id);
        assert_eq!(r.attempts, attempt);
    }
    // Another job for the same machine must wait for the doomed one, then run.
    let waiting = enqueue(q, "a", "g2").await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let next = loop {
        if let Some(r) = q.reserve("c4", LONG_LEASE).await.unwrap() {
            assert_ne!(r.id, j.id, "handed out a 4th time");
            break r;
        }
        assert!(tokio::time::Instant::now() < deadline, "lease never expired");
        tokio::time::sleep(POLL).await;
    };
    assert_eq!(next.id, waiting.id);
    let failed = get(q, j.id).await;
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(failed.attempts, 3);
    assert_eq!(failed.error.as_deref(), Some("runner lost the job (lease expired) after 3 attempt(s); not retried"));
    assert!(failed.finished_at.is_some());
    assert_eq!(failed.lease_until, None);
    assert!(
        lines(&failed).iter().any(|l| l.contains("lease expired") && l.contains("not retried")),
        "{:?}",
        lines(&failed)
    );
    assert_lost_lease(q.finish(j.id, "c3", Outcome::Succeeded(serde_json::json!(1))).await, j.id);
    // A new request for the machine is a new job, not the dead one.
    let fresh = q.enqueue(ping("a", "g1")).await.unwrap();
    assert!(fresh.created);
    assert_ne!(fresh.job.id, j.id);
}

pub async fn release_requeues_at_once_keeping_attempts(q: &dyn Queue) {
    let j = enqueue(q, "a", "g").await;
    q.reserve("c1", LONG_LEASE).await.unwrap().unwrap();
    q.release(j.id, "c1").await.unwrap();
    let back = get(q, j.id).await;
    assert_eq!(back.state, JobState::Queued);
    assert_eq!(back.attempts, 1);
    assert_eq!((back.consumer, back.lease_until), (None, None));
    // Handed back means reservable now, not after the (long) lease.
    let again = q.reserve("c2", LONG_LEASE).await.unwrap().unwrap();
    assert_eq!(again.id, j.id);
    assert_eq!(again.attempts, 2);
    assert_eq!(again.consumer.as_deref(), Some("c2"));
    let log = lines(&again);
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(log[1], "handed back by c1 (shutdown)");
    assert!(log[2].starts_with("attempt 2 of 3 started by c2"), "{log:?}");
    assert_lost_lease(q.release(j.id, "c1").await, j.id);
}

pub async fn release_on_the_last_attempt_fails_the_job(q: &dyn Queue) {
    let j = enqueue(q, "a", "g").await;
    for attempt in 1..=3 {
        let r = q.reserve("c", LONG_LEASE).await.unwrap().unwrap();
        assert_eq!((r.id, r.attempts), (j.id, attempt));
        q.release(j.id, "c").await.unwrap();
    }
    let f = get(q, j.id).await;
    assert_eq!(f.state, JobState::Failed);
    assert_eq!(f.attempts, 3);
    assert!(f.error.as_deref().unwrap().contains("not retried"), "{f:?}");
    assert!(q.reserve("c", LONG_LEASE).await.unwrap().is_none());
}

/// The queue keeps the caller's retry policy, whatever the task: a job enqueued with
/// one attempt is never handed out twice, one with five may be.
pub async fn the_retry_cap_is_the_one_given_at_enqueue(q: &dyn Queue) {
    let once = q.enqueue(NewJob { max_attempts: 1, ..ping("once", "g") }).await.unwrap().job;
    let five = q.enqueue(NewJob { max_attempts: 5, ..ping("five", "g") }).await.unwrap().job;
    assert_eq!((get(q, once.id).await.max_attempts, get(q, five.id).await.max_attempts), (1, 5));
    for attempt in 1..=4 {
        let r = q.reserve("c", LONG_LEASE).await.unwrap().unwrap();
        if r.id == once.id {
            assert_eq!(r.attempts, 1);
            q.release(once.id, "c").await.unwrap();
            let f = get(q, once.id).await;
            assert_eq!(f.state, JobState::Failed, "one attempt given, one used: {f:?}");
            continue;
        }
        assert_eq!(r.id, five.id);
        q.release(five.id, "c").await.unwrap();
        assert_eq!(get(q, five.id).await.state, JobState::Queued, "attempt {attempt} of 5");
    }
}

pub async fn a_superseded_holder_cannot_write_into_the_new_attempts_log(q: &dyn Queue) {
    let j = enqueue(q, "a", "g").await;
    q.reserve("old", SHORT_LEASE).await.unwrap().unwrap();
    q.append_log(j.id, "old", "old's line while it holds the job").await.unwrap();
    let taken = reserve_eventually(q, "new", LONG_LEASE).await;
    assert_eq!(taken.id, j.id);
    // A runner paused past its lease wakes up and reports: refused.
    assert_lost_lease(q.append_log(j.id, "old", "soft time limit reached").await, j.id);
    q.append_log(j.id, "new", "new's line").await.unwrap();
    q.finish(j.id, "new", Outcome::Succeeded(serde_json::json!(null))).await.unwrap();
    assert_lost_lease(q.append_log(j.id, "old", "late").await, j.id);
    let log = lines(&get(q, j.id).await).join("\n");
    assert!(log.contains("old's line") && log.contains("new's line") && !log.contains("soft time limit"), "{log}");
}

pub async fn marks_are_recorded_for_the_holder_only(q: &dyn Queue) {
    let j = enqueue(q, "a", "g").await;
    assert!(!j.touched && j.restore.is_none());
    assert_lost_lease(q.mark(j.id, "r", Mark::Touched).await, j.id);
    q.reserve("r", LONG_LEASE).await.unwrap().unwrap();
    q.mark(j.id, "r", Mark::Touched).await.unwrap();
    q.mark(j.id, "r", Mark::Armed("switch outlet AA5 on".into())).await.unwrap();
    let g = get(q, j.id).await;
    assert!(g.touched);
    assert_eq!(g.restore.as_deref(), Some("switch outlet AA5 on"));
    assert_lost_lease(q.mark(j.id, "someone-else", Mark::Disarmed).await, j.id);
    q.mark(j.id, "r", Mark::Disarmed).await.unwrap();
    let g = get(q, j.id).await;
    assert!(g.touched, "touched is sticky");
    assert_eq!(g.restore, None);
    q.finish(j.id, "r", Outcome::Succeeded(serde_json::json!(null))).await.unwrap();
    assert_lost_lease(q.mark(j.id, "r", Mark::Touched).await, j.id);
    assert!(get(q, j.id).await.touched, "kept once final (the breaker reads it)");
}

pub async fn an_armed_job_lost_on_its_last_attempt_is_handed_out_for_its_repair(q: &dyn Queue) {
    let j = q.enqueue(NewJob { max_attempts: 1, ..ping("pdu-host", "g") }).await.unwrap().job;
    q.reserve("lost", SHORT_LEASE).await.unwrap().unwrap();
    q.mark(j.id, "lost", Mark::Armed("switch outlet AA5 on".into())).await.unwrap();
    // One attempt allowed and spent, but power is off: the next runner gets it to repair.
    let repair = reserve_eventually(q, "rescuer", SHORT_LEASE).await;
    assert_eq!((repair.id, repair.attempts), (j.id, 2));
    assert_eq!(repair.restore.as_deref(), Some("switch outlet AA5 on"));
    let log = lines(&repair).join("\n");
    assert!(log.contains("takeover") && log.contains("repairs"), "{log}");
    // The rescuer is lost too: one more try.
    let again = reserve_eventually(q, "rescuer-2", SHORT_LEASE).await;
    assert_eq!((again.id, again.attempts), (j.id, 3));
    // And that one as well: now it fails, saying plainly what was left undone.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let failed = loop {
        assert!(q.reserve("r", LONG_LEASE).await.unwrap().is_none(), "not handed out past its recovery attempts");
        let g = get(q, j.id).await;
        if g.state.is_final() {
            break g;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {:?} after {DEADLINE:?}", g.state);
        tokio::time::sleep(POLL).await;
    };
    assert_eq!(failed.state, JobState::Failed);
    let error = failed.error.unwrap();
    assert!(error.contains("NOT undone") && error.contains("switch outlet AA5 on"), "{error}");

    // Without an armed restore the cap holds as before.
    let k = q.enqueue(NewJob { max_attempts: 1, ..ping("other", "g") }).await.unwrap().job;
    q.reserve("lost", SHORT_LEASE).await.unwrap().unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !get(q, k.id).await.state.is_final() {
        assert!(q.reserve("r", LONG_LEASE).await.unwrap().is_none());
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(POLL).await;
    }
}

pub async fn an_armed_job_handed_back_goes_back_for_its_repair(q: &dyn Queue) {
    let j = q.enqueue(NewJob { max_attempts: 1, ..ping("pdu-host", "g") }).await.unwrap().job;
    q.reserve("stopping", LONG_LEASE).await.unwrap().unwrap();
    q.mark(j.id, "stopping", Mark::Armed("power the BMC's host on".into())).await.unwrap();
    q.release(j.id, "stopping").await.unwrap();
    let g = get(q, j.id).await;
    assert_eq!(g.state, JobState::Queued, "{:?}", g.error);
    let repair = q.reserve("next", LONG_LEASE).await.unwrap().unwrap();
    assert_eq!((repair.id, repair.attempts, repair.restore.as_deref()), (j.id, 2, Some("power the BMC's host on")));
}

/// The holder of an armed job on its last attempt comes back after its lease ended
/// and disarms (it finished the repair late): nothing is left to repair and the
/// attempts are spent, so the job fails rather than run its task a second time, also
/// when the backend looked at the expired lease in between (Redis sweeps on enqueue).
pub async fn a_job_disarmed_after_its_lease_ran_out_is_not_run_again(q: &dyn Queue) {
    let j = q.enqueue(NewJob { max_attempts: 1, ..ping("pdu-host", "g") }).await.unwrap().job;
    q.reserve("paused", LONG_LEASE).await.unwrap().unwrap();
    q.mark(j.id, "paused", Mark::Armed("switch outlet AA5 on".into())).await.unwrap();
    q.expire(j.id, "paused").await.unwrap();
    let other = enqueue(q, "other", "g").await;
    q.mark(j.id, "paused", Mark::Disarmed).await.unwrap();
    let next = q.reserve("next", LONG_LEASE).await.unwrap().map(|r| r.id);
    assert_eq!(next, Some(other.id), "the disarmed job is not handed out again");
    let g = get(q, j.id).await;
    assert_eq!((g.state, g.attempts), (JobState::Failed, 1));
    assert!(g.error.as_deref().is_some_and(|e| e.contains("not retried")), "{:?}", g.error);
}

pub async fn running_lists_the_holders_and_expire_ends_a_lease_now(q: &dyn Queue) {
    let j = enqueue(q, "a", "g").await;
    let idle = enqueue(q, "b", "g").await;
    q.reserve("host:4242:abcd#0", LONG_LEASE).await.unwrap().unwrap();
    let held = q.running().await.unwrap();
    assert_eq!(held, vec![Held { id: j.id, holder: "host:4242:abcd#0".into() }]);
    assert!(held.iter().all(|h| h.id != idle.id));
    assert_lost_lease(q.expire(j.id, "someone-else").await, j.id);
    assert_lost_lease(q.expire(idle.id, "host:4242:abcd#0").await, idle.id);
    q.expire(j.id, "host:4242:abcd#0").await.unwrap();
    // Taken over now, not after its lease.
    let taken = q.reserve("host:1:ffff#0", LONG_LEASE).await.unwrap().unwrap();
    assert_eq!((taken.id, taken.attempts), (j.id, 2));
    assert!(lines(&taken).iter().any(|l| l.contains("is gone")), "{:?}", lines(&taken));
}

/// Until another runner takes it over, a job whose lease ran out is still running and
/// still its lost holder's (the backend may have put it back in line meanwhile); a
/// job handed back is nobody's.
pub async fn running_lists_a_job_whose_lease_ran_out_until_it_is_taken_over(q: &dyn Queue) {
    let j = enqueue(q, "a", "g").await;
    q.reserve("gone", LONG_LEASE).await.unwrap().unwrap();
    q.expire(j.id, "gone").await.unwrap();
    // An enqueue in between: Redis sweeps expired leases on it, putting the job back in
    // line while it is still running.
    let k = enqueue(q, "b", "g").await;
    assert_eq!(q.running().await.unwrap(), vec![Held { id: j.id, holder: "gone".into() }]);
    assert_eq!(q.reserve("new", LONG_LEASE).await.unwrap().map(|r| r.id), Some(j.id));
    assert_eq!(q.reserve("other", LONG_LEASE).await.unwrap().map(|r| r.id), Some(k.id));
    let mut held = q.running().await.unwrap();
    held.sort_by(|a, b| a.holder.cmp(&b.holder));
    assert_eq!(held, vec![Held { id: j.id, holder: "new".into() }, Held { id: k.id, holder: "other".into() }]);
    q.release(k.id, "other").await.unwrap();
    q.finish(j.id, "new", Outcome::Succeeded(serde_json::json!(null))).await.unwrap();
    assert!(q.running().await.unwrap().is_empty());
}

pub async fn breaker_resets_are_kept_newest_first_and_capped(q: &dyn Queue) {
    let m = WorkerId::parse("m").unwrap();
    assert!(q.breaker_resets(&m, 10).await.unwrap().is_empty());
    let t0 = chrono::Utc::now();
    for i in 0..(BREAKER_RESETS_KEPT + 5) {
        let at = t0 + chrono::Duration::milliseconds(i as i64);
        q.reset_breaker(&m, BreakerReset { at, by: format!("op{i}"), reason: format!("r{i}") }).await.unwrap();
    }
    let got = q.breaker_resets(&m, 100).await.unwrap();
    assert_eq!(got.len(), BREAKER_RESETS_KEPT);
    assert_eq!(got[0].by, format!("op{}", BREAKER_RESETS_KEPT + 4), "newest first");
    assert_eq!(
        got[0].at.timestamp_millis(),
        (t0 + chrono::Duration::milliseconds(BREAKER_RESETS_KEPT as i64 + 4)).timestamp_millis()
    );
    assert_eq!(q.breaker_resets(&m, 1).await.unwrap().len(), 1);
    assert!(q.breaker_resets(&WorkerId::parse("other").unwrap(), 10).await.unwrap().is_empty());
}

/// A reset's time is the operator's: one that arrives late (a retried request) is kept
/// in its place by time, and one older than every kept reset falls off a full list.
pub async fn breaker_resets_are_ordered_by_their_time_not_their_arrival(q: &dyn Queue) {
    let m = WorkerId::parse("m").unwrap();
    let t0 = chrono::Utc::now();
    let at = |ms: i64| t0 + chrono::Duration::milliseconds(ms);
    let reset = |ms: i64, by: &str| BreakerReset { at: at(ms), by: by.into(), reason: "rack rewired".into() };
    for (ms, by) in [(10, "b"), (30, "d"), (20, "c"), (0, "a"), (30, "e")] {
        q.reset_breaker(&m, reset(ms, by)).await.unwrap();
    }
    let by = |got: Vec<BreakerReset>| got.into_iter().map(|r| r.by).collect::<Vec<_>>();
    // Equal times: the one recorded last first.
    assert_eq!(by(q.breaker_resets(&m, 100).await.unwrap()), ["e", "d", "c", "b", "a"]);
    for i in 0..BREAKER_RESETS_KEPT {
        q.reset_breaker(&m, reset(100 + i as i64, &format!("n{i}"))).await.unwrap();
    }
    q.reset_breaker(&m, reset(-1, "older than all")).await.unwrap();
    let got = by(q.breaker_resets(&m, 100).await.unwrap());
    assert_eq!(got.len(), BREAKER_RESETS_KEPT);
    let newest = format!("n{}", BREAKER_RESETS_KEPT - 1);
    assert_eq!((got.first(), got.last().map(String::as_str)), (Some(&newest), Some("n0")));
}

pub async fn records_are_kept_per_kind_and_key(r: &dyn Records) {
    assert_eq!(r.record(RecordKind::Observations, "m1").await.unwrap(), None);
    r.put_record(RecordKind::Observations, "m2", "{\"probe\":true}").await.unwrap();
    r.put_record(RecordKind::Observations, "m1", "first").await.unwrap();
    r.put_record(RecordKind::Observations, "m1", "second ✓ \"quoted\"").await.unwrap();
    r.put_record(RecordKind::Hold, "m1", "held").await.unwrap();
    assert_eq!(r.record(RecordKind::Observations, "m1").await.unwrap().as_deref(), Some("second ✓ \"quoted\""));
    let all = r.records(RecordKind::Observations).await.unwrap();
    let want = [("m1", "second ✓ \"quoted\""), ("m2", "{\"probe\":true}")].map(|(k, v)| (k.to_string(), v.to_string()));
    assert_eq!(all, want, "in key order, the kinds apart");
    assert_eq!(r.records(RecordKind::Hold).await.unwrap().len(), 1);
    r.delete_record(RecordKind::Hold, "m1").await.unwrap();
    r.delete_record(RecordKind::Hold, "never-there").await.unwrap();
    assert!(r.records(RecordKind::Hold).await.unwrap().is_empty());
    assert!(r.records(RecordKind::Medic).await.unwrap().is_empty());
    // A batch, as a sweep writes it.
    let batch: Vec<(String, String)> = (0..300).map(|i| (format!("w{i:03}"), format!("obs {i}"))).collect();
    r.put_records(RecordKind::Observations, &batch).await.unwrap();
    let all = r.records(RecordKind::Observations).await.unwrap();
    assert_eq!(all.len(), 302);
    assert_eq!(r.record(RecordKind::Observations, "w299").await.unwrap().as_deref(), Some("obs 299"));
}

pub async fn event_logs_keep_their_newest(r: &dyn Records) {
    for i in 0..12 {
        r.append_event("decisions", &format!("cycle {i}"), 10).await.unwrap();
    }
    r.append_event("other", "elsewhere", 10).await.unwrap();
    let got = r.events("decisions", 100).await.unwrap();
    assert_eq!(got.len(), 10, "the newest 10 kept");
    assert_eq!((got[0].as_str(), got[9].as_str()), ("cycle 11", "cycle 2"), "newest first");
    assert_eq!(r.events("decisions", 3).await.unwrap(), ["cycle 11", "cycle 10", "cycle 9"]);
    assert_eq!(r.events("other", 10).await.unwrap(), ["elsewhere"]);
    assert!(r.events("none", 10).await.unwrap().is_empty());
}

pub async fn a_lease_has_one_holder_until_it_expires_or_is_released(r: &dyn Records) {
    let short = Duration::from_millis(300);
    assert!(r.acquire_lease("sweep", "a", short).await.unwrap());
    assert!(!r.acquire_lease("sweep", "b", LONG_LEASE).await.unwrap(), "a holds it");
    assert!(r.acquire_lease("sweep", "a", short).await.unwrap(), "a renews");
    assert!(r.acquire_lease("other", "b", LONG_LEASE).await.unwrap(), "leases are per name");
    // a stops renewing (it died): b gets it once it expires.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !r.acquire_lease("sweep", "b", LONG_LEASE).await.unwrap() {
        assert!(tokio::time::Instant::now() < deadline, "the dead holder's lease never expired");
        tokio::time::sleep(POLL).await;
    }
    assert!(!r.acquire_lease("sweep", "a", short).await.unwrap(), "a lost it for good");
    r.release_lease("sweep", "a").await.unwrap();
    assert!(!r.acquire_lease("sweep", "a", short).await.unwrap(), "only its holder can give it up");
    r.release_lease("sweep", "b").await.unwrap();
    assert!(r.acquire_lease("sweep", "a", short).await.unwrap(), "given up: free at once");
}

/// Replay protection's record (`auth::replay`): the first claim of a digest wins,
/// every later one is refused until the record expires, then it is a new claim.
pub async fn a_nonce_is_claimed_once_until_it_expires(r: &dyn Records) {
    let window = SystemTime::now() + Duration::from_secs(16 * 60);
    let (a, b) = ([0xa1; 16], [0xb2; 16]);
    assert!(r.claim_nonce(&a, window).await.unwrap(), "first claim");
    assert!(!r.claim_nonce(&a, window).await.unwrap(), "a replay");
    assert!(!r.claim_nonce(&a, window + Duration::from_secs(3600)).await.unwrap(), "a later expiry changes nothing");
    assert!(r.claim_nonce(&b, window).await.unwrap(), "digests are apart");

    // Claimed at once by many (processes, in production): exactly one wins.
    let c = [0xc3; 16];
    let claims = futures_util::future::join_all((0..16).map(|_| r.claim_nonce(&c, window))).await;
    let won = claims.into_iter().map(Result::unwrap).filter(|w| *w).count();
    assert_eq!(won, 1, "one claim of sixteen at once");

    // A short record: refused while it lives, a new claim once it has expired.
    let d = [0xd4; 16];
    let expires = SystemTime::now() + Duration::from_millis(500);
    assert!(r.claim_nonce(&d, expires).await.unwrap());
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !r.claim_nonce(&d, window).await.unwrap() {
        assert!(tokio::time::Instant::now() < deadline, "the record never expired");
        tokio::time::sleep(POLL).await;
    }
    // Never before its time (a second's slack for Redis's clock as measured against ours).
    assert!(SystemTime::now() + Duration::from_secs(1) >= expires, "claimed again before the record expired");
    assert!(!r.claim_nonce(&d, window).await.unwrap(), "claimed anew, for the new window");
    // The others are untouched by that expiry.
    assert!(!r.claim_nonce(&a, window).await.unwrap());
}

/// What two roller processes on one backend, or one restarted, see: a digest claimed
/// through one handle is refused through another and after every handle is gone.
pub async fn nonce_claims_are_shared_by_handles_and_survive_reopen(b: &dyn Backend) {
    let window = SystemTime::now() + Duration::from_secs(16 * 60);
    let digest = [0x5e; 16];
    let (one, two) = (b.open_records().await, b.open_records().await);
    assert!(one.claim_nonce(&digest, window).await.unwrap());
    assert!(!two.claim_nonce(&digest, window).await.unwrap(), "the other handle sees the claim");
    drop((one, two));
    let again = b.open_records().await;
    assert!(!again.claim_nonce(&digest, window).await.unwrap(), "kept across a reopen");
    assert!(again.claim_nonce(&[0x5f; 16], window).await.unwrap());
}

/// An enqueue carrying its header's claim: the claim and the enqueue are one step, and
/// the record is the one `claim_nonce` keeps.
pub async fn an_enqueue_carrying_a_claim_queues_once_per_digest(b: &dyn Backend) {
    let (q, r) = (b.open().await, b.open_records().await);
    enqueue_claiming_checks(&*q, &*r).await;
}

/// The body of [`an_enqueue_carrying_a_claim_queues_once_per_digest`], over one handle's
/// two views (the cluster test calls it too).
pub async fn enqueue_claiming_checks(q: &dyn Queue, r: &dyn Records) {
    let window = SystemTime::now() + Duration::from_secs(16 * 60);
    let machine = |w: &str| WorkerId::parse(w).unwrap();
    let first = q.enqueue_claiming(ping("claim-a", "g"), &[0x11; 16], window).await.unwrap().expect("claimed");
    assert!(first.created);
    // The same digest again (a replayed header), even for another job: nothing is queued.
    assert!(q.enqueue_claiming(ping("claim-b", "g"), &[0x11; 16], window).await.unwrap().is_none());
    assert!(q.history(&machine("claim-b"), 10).await.unwrap().is_empty());
    assert!(!r.claim_nonce(&[0x11; 16], window).await.unwrap(), "the record claim_nonce keeps");
    // Claimed on its own first (a read, say): the enqueue carrying it queues nothing.
    assert!(r.claim_nonce(&[0x22; 16], window).await.unwrap());
    assert!(q.enqueue_claiming(ping("claim-c", "g"), &[0x22; 16], window).await.unwrap().is_none());
    assert!(q.history(&machine("claim-c"), 10).await.unwrap().is_empty());
    // A coalesced enqueue claims too.
    let again = q.enqueue_claiming(ping("claim-a", "g"), &[0x33; 16], window).await.unwrap().expect("claimed");
    assert_eq!((again.created, again.job.id), (false, first.job.id));
    assert!(!r.claim_nonce(&[0x33; 16], window).await.unwrap());
    // And the plain enqueue is untouched by any of it.
    assert!(q.enqueue(ping("claim-b", "g")).await.unwrap().created);
}

pub async fn log_lines_keep_their_order(q: &dyn Queue) {
    let j = enqueue(q, "a", "g").await;
    q.reserve("r", LONG_LEASE).await.unwrap().unwrap();
    let written: Vec<String> = (0..40).map(|i| format!("line {i:02} ✓ \"quoted\"")).collect();
    for line in &written {
        q.append_log(j.id, "r", line).await.unwrap();
    }
    let got = get(q, j.id).await;
    assert_eq!(got.log.len(), 41);
    let got_lines: Vec<&str> = lines(&got)[1..].to_vec();
    assert_eq!(got_lines, written.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(got.log.windows(2).all(|w| w[0].at <= w[1].at));
    // Lines can still be added after the job finished (e.g. notifications).
    q.finish(j.id, "r", Outcome::Succeeded(serde_json::json!(null))).await.unwrap();
    q.append_log(j.id, "r", "notified").await.unwrap();
    assert_eq!(lines(&get(q, j.id).await).last(), Some(&"notified"));
    // Writing to a job that does not exist is an error, not a silent drop.
    assert!(q.append_log(JobId::new(), "r", "lost").await.is_err());
    // Another holder's lines are refused: it does not hold this job.
    assert_lost_lease(q.append_log(j.id, "someone-else", "not mine").await, j.id);
}

pub async fn history_is_newest_first_and_limited(q: &dyn Queue) {
    let m = WorkerId::parse("m").unwrap();
    let j1 = enqueue(q, "m", "g1").await;
    let other = enqueue(q, "other", "g1").await;
    let j2 = enqueue(q, "m", "g2").await;
    let j3 = enqueue(q, "m", "g3").await;
    q.append_log(j1.id, "r", "hello").await.unwrap();

    let ids = |jobs: &[Job]| jobs.iter().map(|j| j.id).collect::<Vec<_>>();
    let all = q.history(&m, 10).await.unwrap();
    assert_eq!(ids(&all), [j3.id, j2.id, j1.id]);
    assert_eq!(lines(&all[2]), ["hello"], "history carries logs");
    assert_eq!(ids(&q.history(&m, 2).await.unwrap()), [j3.id, j2.id]);
    assert!(q.history(&m, 0).await.unwrap().is_empty());
    let o = WorkerId::parse("OTHER").unwrap();
    assert_eq!(ids(&q.history(&o, 10).await.unwrap()), [other.id]);
    let none = WorkerId::parse("nobody").unwrap();
    assert!(q.history(&none, 10).await.unwrap().is_empty());
    // Finished jobs stay in history.
    q.reserve("r", LONG_LEASE).await.unwrap().unwrap();
    q.finish(j1.id, "r", Outcome::Failed("x".into())).await.unwrap();
    let all = q.history(&m, 10).await.unwrap();
    assert_eq!(ids(&all), [j3.id, j2.id, j1.id]);
    assert_eq!(all[2].state, JobState::Failed);
}

pub async fn concurrent_reserves_hand_each_job_out_once(q: &dyn Queue) {
    const JOBS: usize = 24;
    let mut want = HashSet::new();
    for i in 0..JOBS {
        want.insert(enqueue(q, &format!("m{i}"), "g").await.id);
    }
    let drain = |consumer: &'static str| async move {
        let mut got = Vec::new();
        while let Some(j) = q.reserve(consumer, LONG_LEASE).await.unwrap() {
            assert_eq!(j.attempts, 1, "{} handed out twice", j.id);
            got.push(j.id);
        }
        got
    };
    let (a, b, c, d, e, f) = tokio::join!(drain("w1"), drain("w2"), drain("w3"), drain("w4"), drain("w5"), drain("w6"));
    let all: Vec<JobId> = [a, b, c, d, e, f].into_iter().flatten().collect();
    assert_eq!(all.len(), JOBS, "each job exactly once");
    assert_eq!(all.into_iter().collect::<HashSet<_>>(), want);
}

pub async fn jobs_survive_reopen(backend: &dyn Backend) {
    let (running, queued) = {
        let q = backend.open().await;
        let running = enqueue(&*q, "a", "g").await;
        let queued = enqueue(&*q, "b", "g").await;
        q.append_log(queued.id, "dead-runner", "before restart").await.unwrap();
        let r = q.reserve("dead-runner", SHORT_LEASE).await.unwrap().unwrap();
        assert_eq!(r.id, running.id);
        (running, queued)
    };
    let q = backend.open().await;
    let g = get(&*q, queued.id).await;
    assert_eq!(g.state, JobState::Queued);
    assert_eq!(g.worker_id, queued.worker_id);
    assert_eq!(g.requester, queued.requester);
    assert_eq!(g.origin, queued.origin);
    assert_eq!(g.created_at, queued.created_at);
    assert_eq!(lines(&g), ["before restart"]);
    let g = get(&*q, running.id).await;
    assert_eq!(g.state, JobState::Running);
    assert_eq!(g.consumer.as_deref(), Some("dead-runner"));

    // Both are handed out by the new handle: the queued one at once, the
    // running one once its lease has expired.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let j = reserve_eventually(&*q, "new-runner", LONG_LEASE).await;
        seen.push((j.id, j.attempts));
    }
    seen.sort();
    let mut want = vec![(running.id, 2), (queued.id, 1)];
    want.sort();
    assert_eq!(seen, want);
}

pub async fn health_fails_while_writes_are_blocked(backend: &dyn Backend) {
    let q = backend.open().await;
    q.health().await.expect("healthy when idle");
    let guard = backend.block_writes().await;
    // Bounded: a health check that hangs is a failure too.
    let r = tokio::time::timeout(Duration::from_secs(30), q.health())
        .await
        .expect("health answered while writes were blocked");
    assert!(matches!(r, Err(QueueError::Unavailable(_))), "expected Unavailable, got {r:?}");
    drop(guard);
    q.health().await.expect("healthy again once writes are unblocked");
}

pub async fn final_jobs_expire_after_retention_and_active_ones_never(backend: &dyn Backend) {
    let retention = Duration::from_secs(1);
    let q = backend.open_with(QueueOptions { retention, ..QueueOptions::default() }).await;
    let ids = |jobs: &[Job]| jobs.iter().map(|j| j.id).collect::<Vec<_>>();
    let busy = WorkerId::parse("busy").unwrap();
    let m = WorkerId::parse("m").unwrap();
    // Created before `done` finishes, so once `done` has expired these are older
    // than the retention too: one running, one queued behind it (machine held).
    let running = enqueue(&*q, "busy", "g1").await;
    let queued = enqueue(&*q, "busy", "g2").await;
    let done = enqueue(&*q, "m", "g").await;
    assert_eq!(q.reserve("r", LONG_LEASE).await.unwrap().unwrap().id, running.id);
    assert_eq!(q.reserve("r", LONG_LEASE).await.unwrap().unwrap().id, done.id);
    q.append_log(done.id, "r", "hello").await.unwrap();
    q.finish(done.id, "r", Outcome::Succeeded(serde_json::json!({"ok": true}))).await.unwrap();
    assert_eq!(get(&*q, done.id).await.state, JobState::Succeeded, "kept right after finishing");

    let deadline = tokio::time::Instant::now() + DEADLINE;
    while q.get(done.id).await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "final job still there {DEADLINE:?} after a 1 s retention");
        tokio::time::sleep(POLL).await;
    }
    assert!(q.history(&m, 10).await.unwrap().is_empty(), "an expired job left history too");
    assert_lost_lease(q.append_log(done.id, "r", "too late").await, done.id);
    // A reserve (which purges in some backends) still leaves the active jobs alone.
    assert!(q.reserve("r", LONG_LEASE).await.unwrap().is_none());
    assert_eq!(get(&*q, running.id).await.state, JobState::Running);
    let still = get(&*q, queued.id).await;
    assert_eq!(still.state, JobState::Queued);
    assert_eq!(ids(&q.history(&busy, 10).await.unwrap()), [queued.id, running.id]);
    // The machine whose job expired takes new work as usual.
    let again = enqueue(&*q, "m", "g").await;
    assert_ne!(again.id, done.id);
    assert_eq!(ids(&q.history(&m, 10).await.unwrap()), [again.id]);
    // And a job that was queued all along runs once its machine is free.
    q.finish(running.id, "r", Outcome::Failed("x".into())).await.unwrap();
    let mut seen = HashSet::new();
    while let Some(j) = q.reserve("r", LONG_LEASE).await.unwrap() {
        seen.insert(j.id);
    }
    assert_eq!(seen, HashSet::from([queued.id, again.id]));
}

pub async fn history_is_capped_per_machine(backend: &dyn Backend) {
    let q = backend.open_with(QueueOptions { history_cap: 3, ..QueueOptions::default() }).await;
    let m = WorkerId::parse("m").unwrap();
    let ids = |jobs: &[Job]| jobs.iter().map(|j| j.id).collect::<Vec<_>>();
    let mut all = Vec::new();
    for i in 0..5 {
        all.push(enqueue(&*q, "m", &format!("g{i}")).await);
    }
    let other = enqueue(&*q, "other", "g").await;
    let h = q.history(&m, 100).await.unwrap();
    assert_eq!(ids(&h), [all[4].id, all[3].id, all[2].id], "the newest three, newest first");
    assert_eq!(ids(&q.history(&m, 2).await.unwrap()), [all[4].id, all[3].id]);
    // Jobs beyond the cap are still work: queued ones are kept and run.
    assert_eq!(get(&*q, all[0].id).await.state, JobState::Queued);
    // Run every job of m to the end, in order (one at a time: the machine lock).
    for job in &all {
        let r = q.reserve("r", LONG_LEASE).await.unwrap().unwrap();
        assert_eq!(r.id, job.id);
        q.finish(r.id, "r", Outcome::Succeeded(serde_json::json!(null))).await.unwrap();
    }
    assert_eq!(q.reserve("r", LONG_LEASE).await.unwrap().unwrap().id, other.id);
    // New jobs push the old final ones out; the cap holds.
    let newer: Vec<Job> = [enqueue(&*q, "m", "g0").await, enqueue(&*q, "m", "g1").await].into();
    let h = q.history(&m, 100).await.unwrap();
    assert_eq!(ids(&h), [newer[1].id, newer[0].id, all[4].id]);
    assert_eq!(h[2].state, JobState::Succeeded);
    assert_eq!(ids(&q.history(&WorkerId::parse("other").unwrap(), 100).await.unwrap()), [other.id]);
}

#[cfg(test)]
mod sqlite_conformance {
    use std::any::Any;
    use std::path::PathBuf;

    use async_trait::async_trait;

    use super::Backend;
    use crate::queue::sqlite::SqliteQueue;
    use crate::queue::{Queue, QueueOptions};

    /// A fresh database file in its own temporary directory.
    struct Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    }

    impl Sqlite {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("state").join("queue.sqlite");
            Self { _dir: dir, path }
        }
    }

    #[async_trait]
    impl Backend for Sqlite {
        async fn open_with(&self, options: QueueOptions) -> Box<dyn Queue> {
            Box::new(SqliteQueue::open_with(&self.path, options).expect("open sqlite queue"))
        }

        async fn block_writes(&self) -> Box<dyn Any + Send> {
            let conn = rusqlite::Connection::open(&self.path).expect("second connection");
            conn.execute_batch("BEGIN EXCLUSIVE").expect("take the exclusive lock");
            // Dropping the connection ends the transaction and releases the lock.
            Box::new(conn)
        }

        async fn open_records(&self) -> Box<dyn super::Records> {
            Box::new(SqliteQueue::open(&self.path).expect("open sqlite queue"))
        }
    }

    super::conformance_suite!(Sqlite::new());
}
