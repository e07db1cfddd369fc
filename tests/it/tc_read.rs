//! The Taskcluster driver's reads of pool health against roller-testkit's stand-in,
//! which follows the published API: pages of 1,000 workers filtered after paging, task
//! runs in batches, queue counts, anonymous and Hawk-signed callers.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{Duration as Days, Utc};
use roller::drivers::taskcluster::{RunState, TaskclusterClient, TaskclusterError, WorkerRef};
use roller_testkit::taskcluster::{ACCESS_TOKEN, CLIENT_ID, FakeTaskcluster, Resolution};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

const POOL: &str = "releng-hardware/gecko-t-linux-talos";
const P: &str = "releng-hardware";
const WT: &str = "gecko-t-linux-talos";
const TIMEOUT: Duration = Duration::from_secs(30);

fn anonymous(q: &FakeTaskcluster) -> TaskclusterClient {
    TaskclusterClient::anonymous(&q.root_url, TIMEOUT).unwrap()
}

fn signed(q: &FakeTaskcluster, token: &str) -> TaskclusterClient {
    TaskclusterClient::new(&q.root_url, CLIENT_ID, SecretString::from(token.to_string()), TIMEOUT).unwrap()
}

fn worker(id: &str) -> WorkerRef<'_> {
    WorkerRef { provisioner_id: P, worker_type: WT, worker_group: "mdc1", worker_id: id }
}

fn name(i: usize) -> String {
    format!("t-linux64-ms-{i:04}")
}

/// `n` workers in POOL seen just now, and a few in another pool that must not show.
async fn fleet(n: usize) -> FakeTaskcluster {
    let q = FakeTaskcluster::start(&[]).await;
    let now = Utc::now();
    for i in 0..n {
        q.add_worker(POOL, "mdc1", &name(i), now);
    }
    for i in 0..5 {
        q.add_worker("releng-hardware/gecko-t-osx-1015", "mdc2", &name(i), now);
    }
    q
}

#[tokio::test]
async fn a_pool_of_2500_workers_is_read_in_three_pages_of_at_most_1000() {
    let q = fleet(2500).await;
    let tc = anonymous(&q);
    let cancel = CancellationToken::new();
    let first = tc.list_workers(P, WT, None, &cancel).await.unwrap();
    assert_eq!(first.workers.len(), 1000);
    let token = first.continuation_token.expect("more follow");
    let second = tc.list_workers(P, WT, Some(&token), &cancel).await.unwrap();
    assert_eq!(second.workers[0].worker_id, name(1000));

    q.reset_calls();
    let all = tc.list_all_workers(P, WT, &cancel).await.unwrap();
    let ids: Vec<String> = all.iter().map(|w| w.worker_id.clone()).collect();
    assert_eq!(ids, (0..2500).map(name).collect::<Vec<_>>());
    assert!(all.iter().all(|w| w.worker_group == "mdc1" && w.latest_task.is_none() && w.quarantine_until.is_none()));
    assert_eq!(q.calls().get("queue.listWorkers"), Some(&3), "{:?}", q.calls());

    let none = tc.list_all_workers(P, "no-such-pool", &cancel).await.unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn a_page_emptied_by_expiry_still_has_a_token_and_the_listing_goes_on() {
    let q = FakeTaskcluster::start(&[]).await;
    let now = Utc::now();
    // Rows 1000–1999 were last seen two days ago: the queue has forgotten them, but it
    // pages before it filters, so the second page is empty and not the last.
    for i in 0..2500 {
        let seen = if (1000..2000).contains(&i) { now - Days::days(2) } else { now };
        q.add_worker(POOL, "mdc1", &name(i), seen);
    }
    // A quarantine keeps a forgotten worker listed.
    q.quarantine(POOL, "mdc1", &name(1500), now + Days::days(30));
    let tc = anonymous(&q);
    let cancel = CancellationToken::new();
    let first = tc.list_workers(P, WT, None, &cancel).await.unwrap();
    let second = tc.list_workers(P, WT, first.continuation_token.as_deref(), &cancel).await.unwrap();
    assert_eq!(second.workers.len(), 1, "only the quarantined one: {second:?}");
    assert!(second.continuation_token.is_some(), "a short page is not the end");

    let all = tc.list_all_workers(P, WT, &cancel).await.unwrap();
    assert_eq!(all.len(), 1501);
    let parked = all.iter().find(|w| w.worker_id == name(1500)).unwrap();
    assert!(parked.quarantine_until.is_some_and(|u| u > now + Days::days(29)));
}

#[tokio::test]
async fn a_token_the_queue_did_not_hand_out_is_refused_and_endless_paging_stops() {
    let q = fleet(10).await;
    let e = anonymous(&q).list_workers(P, WT, Some("not-a-token"), &CancellationToken::new()).await.unwrap_err();
    assert!(matches!(e, TaskclusterError::Refused { status: 400, .. }), "{e}");

    // A server whose every page says "more": roller stops after its bound, and says so.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let endless = axum::Router::new()
        .fallback(|| async { axum::Json(serde_json::json!({ "workers": [], "continuationToken": "again" })) });
    tokio::spawn(async move { axum::serve(listener, endless).await.unwrap() });
    let tc = TaskclusterClient::anonymous(&url, TIMEOUT).unwrap();
    let e = tc.list_all_workers(P, WT, &CancellationToken::new()).await.unwrap_err();
    assert!(
        matches!(&e, TaskclusterError::Protocol { call: "queue.listWorkers", detail } if detail.contains("100 pages")),
        "{e}"
    );
}

#[tokio::test]
async fn latest_tasks_and_their_runs_come_in_batches_of_1000() {
    let q = fleet(2500).await;
    let now = Utc::now();
    let mut ids = Vec::new();
    for i in 0..2500 {
        ids.push(q.claim(POOL, "mdc1", &name(i), now - Days::minutes(90)).task_id);
    }
    q.resolve(&ids[0], Resolution::Completed, now - Days::minutes(30));
    q.resolve(&ids[1], Resolution::Failed, now - Days::minutes(20));
    // A hung worker: its claim expired, and the queue scheduled a retry of the task.
    q.resolve(&ids[2], Resolution::Exception("claim-expired"), now - Days::minutes(60));

    let tc = anonymous(&q);
    let cancel = CancellationToken::new();
    let workers = tc.list_all_workers(P, WT, &cancel).await.unwrap();
    let latest: Vec<String> = workers.iter().map(|w| w.latest_task.clone().unwrap().task_id).collect();
    assert_eq!(latest, ids, "each worker's latest task is the one it claimed");

    q.reset_calls();
    let mut asked = latest.clone();
    asked.extend(["fN1SbArXTPSVFNUvaOlinQ".to_string(), "unknown".to_string(), ids[5].clone()]);
    let statuses = tc.task_statuses(&asked, &cancel).await.unwrap();
    assert_eq!(q.calls().get("queue.statuses"), Some(&3), "{:?}", q.calls());
    assert_eq!(statuses.len(), 2500, "unknown ids are left out, repeats asked once");

    let running = &statuses[&ids[9]].runs;
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].state, RunState::Running);
    assert_eq!(running[0].started.map(|s| s.timestamp()), Some((now - Days::minutes(90)).timestamp()));
    assert_eq!((running[0].resolved, running[0].reason_resolved.as_deref()), (None, None));
    assert_eq!(running[0].worker_id.as_deref(), Some(name(9).as_str()));

    let done = &statuses[&ids[0]].runs[0];
    assert_eq!((done.state, done.reason_resolved.as_deref()), (RunState::Completed, Some("completed")));
    assert_eq!(done.resolved.map(|s| s.timestamp()), Some((now - Days::minutes(30)).timestamp()));
    assert_eq!(statuses[&ids[1]].runs[0].state, RunState::Failed);

    let hung = &statuses[&ids[2]];
    let own = hung.run(workers[2].latest_task.as_ref().unwrap().run_id).unwrap();
    assert_eq!((own.state, own.reason_resolved.as_deref()), (RunState::Exception, Some("claim-expired")));
    let retry = hung.runs.last().unwrap();
    assert_eq!((retry.run_id, retry.state), (1, RunState::Pending));
    assert_eq!((retry.started, retry.resolved, retry.worker_id.as_deref()), (None, None, None));
}

#[tokio::test]
async fn queue_counts_need_both_scopes_which_firefox_ci_grants_anonymous() {
    let q = fleet(3).await;
    q.set_pending(POOL, 42);
    q.claim(POOL, "mdc1", &name(0), Utc::now());
    q.claim(POOL, "mdc1", &name(1), Utc::now());
    let cancel = CancellationToken::new();
    let counts = anonymous(&q).task_queue_counts(P, WT, &cancel).await.unwrap();
    assert_eq!((counts.pending_tasks, counts.claimed_tasks), (42, 2));
    assert_eq!(anonymous(&q).pending_tasks(P, WT, &cancel).await.unwrap(), 42);
    assert_eq!(q.calls().get("queue.taskQueueCounts"), Some(&2));

    // Taskcluster's sample public role lacks queue:claimed-count:*; the refusal names it.
    q.set_anonymous_scopes(&["queue:pending-count:*", "queue:list-workers:*"]);
    let e = anonymous(&q).pending_tasks(P, WT, &cancel).await.unwrap_err();
    match &e {
        TaskclusterError::Refused { status: 403, message, .. } => {
            assert!(message.contains(&format!("queue:claimed-count:{POOL}")), "{message}")
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn reads_are_public_signed_reads_are_verified_and_a_bad_signature_is_never_anonymous() {
    let q = fleet(3).await;
    let cancel = CancellationToken::new();
    // Signed with no scopes of its own: it holds the anonymous ones, as every client does.
    assert_eq!(signed(&q, ACCESS_TOKEN).list_all_workers(P, WT, &cancel).await.unwrap().len(), 3);
    let e = signed(&q, "wrong-token").list_all_workers(P, WT, &cancel).await.unwrap_err();
    assert!(matches!(e, TaskclusterError::Refused { status: 401, .. }), "{e}");

    // A deployment that grants nothing publicly: anonymous is refused, the scope named.
    q.set_anonymous_scopes(&[]);
    let e = anonymous(&q).list_workers(P, WT, None, &cancel).await.unwrap_err();
    assert!(e.to_string().contains(&format!("queue:list-workers:{POOL}")) && e.to_string().contains("403"), "{e}");
    let e = anonymous(&q).quarantine_worker(&worker(&name(0)), Utc::now(), "no", &cancel).await.unwrap_err();
    assert!(matches!(e, TaskclusterError::Refused { status: 403, .. }), "{e}");
    assert!(q.quarantines().is_empty());
}

#[tokio::test]
async fn get_worker_has_the_last_20_tasks_oldest_first_and_forgets_unseen_workers() {
    let q = fleet(2).await;
    let start = Utc::now() - Days::hours(5);
    let claimed: Vec<String> =
        (0..25).map(|i| q.claim(POOL, "mdc1", &name(0), start + Days::minutes(i)).task_id).collect();
    let tc = anonymous(&q);
    let cancel = CancellationToken::new();
    let w = worker;
    let busy = tc.get_worker(&w(&name(0)), &cancel).await.unwrap().expect("known");
    let recent: Vec<&str> = busy.recent_tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(recent, claimed[5..].iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(busy.latest_task().unwrap().task_id, claimed[24]);
    assert_eq!(busy.last_date_active.map(|t| t.timestamp()), Some((start + Days::minutes(24)).timestamp()));
    let idle = tc.get_worker(&w(&name(1)), &cancel).await.unwrap().expect("known");
    assert!(idle.recent_tasks.is_empty() && idle.quarantine_until.is_some_and(|u| u < Utc::now()));
    let listed = tc.list_all_workers(P, WT, &cancel).await.unwrap();
    assert_eq!(listed[0].latest_task.as_ref().map(|t| t.task_id.as_str()), Some(claimed[24].as_str()));

    assert!(tc.get_worker(&w("never-seen"), &cancel).await.unwrap().is_none());
    q.add_worker(POOL, "mdc1", "gone-quiet", Utc::now() - Days::days(2));
    assert!(tc.get_worker(&w("gone-quiet"), &cancel).await.unwrap().is_none(), "forgotten after a day");
    assert!(q.remove_worker(POOL, "mdc1", &name(1)));
    assert!(tc.get_worker(&w(&name(1)), &cancel).await.unwrap().is_none());
}

#[tokio::test]
async fn a_cancelled_read_stops_and_says_so() {
    let q = fleet(1).await;
    let cancel = CancellationToken::new();
    cancel.cancel();
    let tc = anonymous(&q);
    let e = tc.list_all_workers(P, WT, &cancel).await.unwrap_err();
    assert!(matches!(e, TaskclusterError::Cancelled), "{e}");
    let e = tc.task_statuses(&["fN1SbArXTPSVFNUvaOlinQ"], &cancel).await.unwrap_err();
    assert!(matches!(e, TaskclusterError::Cancelled), "{e}");
    let seen: HashSet<&str> = q.calls().keys().copied().collect();
    assert!(seen.is_empty(), "nothing was sent: {seen:?}");
}

/// The stand-in is only worth its checks: each of these the real queue refuses too
/// (or, for the unknown parameter and the foreign token, a client bug the real queue
/// would hide), and a body changed after signing fails its payload hash.
#[tokio::test]
async fn the_stand_in_refuses_what_the_queue_refuses() {
    let q = fleet(3).await;
    let http = reqwest::Client::new();
    let workers = format!("{}/api/queue/v1/provisioners/{P}/worker-types/{WT}/workers", q.root_url);
    for query in ["limit=ten", "limit=-1", "quarantined=yes", "continuationToken=", "limt=10", "limit=1&limit=2"] {
        let r = http.get(format!("{workers}?{query}")).send().await.unwrap();
        assert_eq!(r.status(), 400, "{query}");
        assert_eq!(r.json::<serde_json::Value>().await.unwrap()["code"], "InvalidRequestArguments", "{query}");
    }
    let r = http.get(format!("{}/api/queue/v1/provisioners/{P}/worker-types/a.b/workers", q.root_url)).send();
    assert_eq!(r.await.unwrap().status(), 400, "a worker type outside ^[a-zA-Z0-9-_]{{1,38}}$");
    let r = http.get(format!("{}/api/queue/v1/task/not-a-slugid/status", q.root_url)).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // limit=0 is what the queue's own paging makes of it: an empty page, and the end.
    let r: serde_json::Value = http.get(format!("{workers}?limit=0")).send().await.unwrap().json().await.unwrap();
    assert_eq!(r, serde_json::json!({ "workers": [] }));

    let r = http.put(format!("{workers}/mdc1/{}", name(0))).body("{not json").send().await.unwrap();
    assert_eq!(r.status(), 400, "the body is parsed before the scopes are checked");

    let statuses = format!("{}/api/queue/v1/tasks/status", q.root_url);
    for body in [r#"{"taskIds": [1]}"#, r#"{"taskIds": "x"}"#, r#"{"taskIds": [], "limit": 5}"#, "[]"] {
        let r = http.post(&statuses).header("content-type", "application/json").body(body).send().await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
    }

    // Signed over one body, sent with another.
    let signed_body = br#"{"taskIds": []}"#;
    let hash = hawk::PayloadHasher::hash("application/json", hawk::SHA256, signed_body).unwrap();
    let port = reqwest::Url::parse(&q.root_url).unwrap().port().unwrap();
    let creds = hawk::Credentials {
        id: CLIENT_ID.to_string(),
        key: hawk::Key::new(ACCESS_TOKEN.as_bytes(), hawk::SHA256).unwrap(),
    };
    let header = hawk::RequestBuilder::new("POST", "127.0.0.1", port, "/api/queue/v1/tasks/status")
        .hash(&hash[..])
        .request()
        .make_header(&creds)
        .unwrap();
    let send = |body: &'static [u8]| {
        http.post(&statuses)
            .header("content-type", "application/json")
            .header("authorization", format!("Hawk {header}"))
            .body(body)
            .send()
    };
    assert_eq!(send(signed_body).await.unwrap().status(), 200);
    assert_eq!(send(br#"{"taskIds": ["fN1SbArXTPSVFNUvaOlinQ"]}"#).await.unwrap().status(), 401);

    let r = http.get(format!("{}/api/queue/v1/no-such-call", q.root_url)).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap()),
        (404, serde_json::json!({"error": "Not found"}))
    );
    assert_eq!(http.delete(&workers).send().await.unwrap().status(), 404, "a method the route does not have");
}

/// The size the medic watches: 10,000 workers in 50 pools, every one with a task, read
/// as a cycle does: per pool its workers, their latest runs and its counts.
#[tokio::test]
async fn a_fleet_of_10000_workers_in_50_pools_costs_three_calls_a_pool() {
    let q = FakeTaskcluster::start(&[]).await;
    let now = Utc::now();
    let pools: Vec<String> = (0..50).map(|p| format!("releng-hardware/pool-{p:02}")).collect();
    for pool in &pools {
        for i in 0..200 {
            q.add_worker(pool, "mdc1", &name(i), now - Days::hours(2));
            q.claim(pool, "mdc1", &name(i), now - Days::hours(1));
        }
    }
    let tc = anonymous(&q);
    let cancel = CancellationToken::new();
    let started = std::time::Instant::now();
    let mut runs = 0;
    for pool in &pools {
        let (p, wt) = pool.split_once('/').unwrap();
        let workers = tc.list_all_workers(p, wt, &cancel).await.unwrap();
        let latest: Vec<String> = workers.iter().filter_map(|w| w.latest_task.clone()).map(|t| t.task_id).collect();
        runs += tc.task_statuses(&latest, &cancel).await.unwrap().len();
        tc.task_queue_counts(p, wt, &cancel).await.unwrap();
    }
    assert_eq!(runs, 10_000);
    assert_eq!(q.total_calls(), 150, "{:?}", q.calls());
    eprintln!("50 pools, 10,000 workers read in {:?} (debug build)", started.elapsed());
}
