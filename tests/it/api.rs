//! The job API contract (DESIGN.md §1, the original's API table): routes,
//! CORS, status codes and `{"detail": …}` bodies.

use reqwest::Method;
use serde_json::Value;

use crate::helpers::*;

const GROUP_PATH: &str = "/api/v1/workers/dummy-worker-id/group/dummy-worker-group/jobs?task_name=ping";

fn assert_cors(r: &reqwest::Response) {
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "https://tc.example.com");
    assert_eq!(h["access-control-allow-headers"], "Authorization,Content-Type");
    assert_eq!(h["access-control-allow-methods"], "OPTIONS,POST");
}

async fn detail(r: reqwest::Response) -> String {
    let v: Value = r.json().await.expect("a JSON body");
    v["detail"].as_str().expect("a detail string").to_string()
}

#[tokio::test]
async fn preflight_answers_200_with_cors_and_without_authentication() {
    let app = spawn_app().await;
    for path in [GROUP_PATH, "/api/v1/workers/w1/jobs?task_name=ping&worker_group=g"] {
        let r = app.http.request(Method::OPTIONS, app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_cors(&r);
        assert_eq!(r.json::<Value>().await.unwrap(), serde_json::json!({}));
    }
}

#[tokio::test]
async fn signed_post_on_the_seed_route_creates_a_job() {
    let app = spawn_app().await;
    let r = app.signed(Method::POST, GROUP_PATH, PINGER).await;
    assert_eq!(r.status(), 201);
    assert_cors(&r);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["task_name"], "ping");
    assert_eq!(v["worker_id"], "dummy-worker-id");
    assert_eq!(v["worker_group"], "dummy-worker-group");
    let id = v["task_id"].as_str().unwrap();
    let parsed = uuid::Uuid::parse_str(id).unwrap();
    assert_eq!(parsed.get_version_num(), 4);
    assert_eq!(id, parsed.hyphenated().to_string(), "hex with dashes");
    assert_eq!(location, format!("/api/v1/jobs/{id}"));
}

#[tokio::test]
async fn the_later_route_takes_group_provisioner_and_worker_type_from_the_query() {
    let app = spawn_app().await;
    let p = "/api/v1/workers/MS1-10/jobs?task_name=ping&worker_group=mdc1&provisioner_id=releng-hardware&worker_type=gecko-t-osx";
    let r = app.signed(Method::POST, p, PINGER).await;
    assert_eq!(r.status(), 201);
    assert_cors(&r);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["worker_id"], "ms1-10", "worker ids are lower-cased like the original");
    assert_eq!(v["worker_group"], "mdc1");
    let job = app.get_job(v["task_id"].as_str().unwrap()).await;
    assert_eq!(job["provisioner_id"], "releng-hardware");
    assert_eq!(job["worker_type"], "gecko-t-osx");
    assert_eq!(job["requester"], "pinger");
}

#[tokio::test]
async fn a_missing_worker_group_defaults_to_none_like_the_original() {
    let app = spawn_app().await;
    let r = app.signed(Method::POST, "/api/v1/workers/w1/jobs?task_name=ping", PINGER).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().await.unwrap()["worker_group"], "none");
}

#[tokio::test]
async fn a_scope_for_another_task_does_not_authorize_this_one() {
    let app = spawn_app().await;
    let r = app.signed(Method::POST, GROUP_PATH, REBOOTER).await;
    assert_eq!(r.status(), 403);
    assert_cors(&r);
    // The seed's words, then which client lacks which scope: the fix.
    let d = detail(r).await;
    assert!(d.starts_with("You do not have permission to perform this action. Client 'rebooter' lacks the scope 'project:releng:roller:ping'"), "{d}");
    let r = app.signed(Method::POST, GROUP_PATH, READER).await;
    assert_eq!(r.status(), 403);
    let d = detail(r).await;
    assert!(d.contains("lacks the scope 'project:releng:roller:ping'"), "{d}");
}

#[tokio::test]
async fn other_methods_answer_405_with_a_detail() {
    let app = spawn_app().await;
    for (m, p) in [
        (Method::GET, GROUP_PATH),
        (Method::PUT, GROUP_PATH),
        (Method::DELETE, "/api/v1/workers/w1/jobs?task_name=ping"),
        (Method::POST, "/api/v1/jobs/3f1c1b8e-0000-4000-8000-000000000000"),
    ] {
        let r = app.signed(m.clone(), p, ADMIN).await;
        assert_eq!(r.status(), 405, "{m} {p}");
        assert_cors(&r);
        assert_eq!(detail(r).await, format!("Method \"{m}\" not allowed."));
    }
}

#[tokio::test]
async fn unknown_routes_answer_404_json() {
    let app = spawn_app().await;
    let r = app.http.get(app.url("/api/v2/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(detail(r).await, "Not found.");
}

#[tokio::test]
async fn bad_worker_ids_and_groups_are_400_naming_the_field() {
    let app = spawn_app().await;
    let long = "a".repeat(129);
    let cases = [
        (format!("/api/v1/workers/{long}/group/g/jobs?task_name=ping"), "worker_id"),
        ("/api/v1/workers/a%20b/group/g/jobs?task_name=ping".to_string(), "worker_id"),
        ("/api/v1/workers/a%3Bid/group/g/jobs?task_name=ping".to_string(), "worker_id"),
        ("/api/v1/workers/%24(id)/jobs?task_name=ping".to_string(), "worker_id"),
        ("/api/v1/workers/w1/group/a%2Fb/jobs?task_name=ping".to_string(), "worker_group"),
        (format!("/api/v1/workers/w1/jobs?task_name=ping&worker_group={long}"), "worker_group"),
        ("/api/v1/workers/w1/jobs?task_name=ping&worker_group=".to_string(), "worker_group"),
        ("/api/v1/workers/w1/jobs?task_name=ping&provisioner_id=a%20b".to_string(), "provisioner_id"),
    ];
    for (p, field) in cases {
        let r = app.signed(Method::POST, &p, ADMIN).await;
        assert_eq!(r.status(), 400, "{p}");
        assert_cors(&r);
        let d = detail(r).await;
        assert!(d.starts_with(field), "{p}: {d}");
    }
}

#[tokio::test]
async fn unknown_or_missing_task_names_are_400_naming_the_allowed_ones() {
    let app = spawn_app().await;
    for p in [
        "/api/v1/workers/w1/group/g/jobs?task_name=frobnicate",
        "/api/v1/workers/w1/group/g/jobs?task_name=ping%7Cfrobnicate",
        "/api/v1/workers/w1/group/g/jobs?task_name=",
        "/api/v1/workers/w1/group/g/jobs",
    ] {
        let r = app.signed(Method::POST, p, ADMIN).await;
        assert_eq!(r.status(), 400, "{p}");
        let d = detail(r).await;
        let allowed = roller::actions::Task::list(roller::actions::Task::ALL);
        assert!(d.contains("task_name") && d.ends_with(&format!("one of: {allowed}")), "{p}: {d}");
        assert!(allowed.starts_with("ping, status, ipmi_status"), "{allowed}");
    }
}

#[tokio::test]
async fn the_benchmark_noop_task_is_refused_unless_enabled_and_then_does_nothing() {
    let app = spawn_app().await;
    let r = app.post_job("w1", "g", "noop").await;
    assert_eq!(r.status(), 400);
    let d = detail(r).await;
    assert!(d.starts_with("unknown task_name \"noop\"") && !d.contains("noop,"), "{d}");
    let app = spawn_app_with("[tasks]\nenabled = [\"noop\"]\n", &[]).await;
    let r = app.post_job("w1", "g", "noop").await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["task_id"].as_str().unwrap().to_string();
    let job = app.wait_final(&id).await;
    assert_eq!(job["state"], "succeeded", "{job}");
}

#[tokio::test]
async fn a_duplicated_query_parameter_is_a_clear_400() {
    let app = spawn_app().await;
    let r = app.signed(Method::POST, "/api/v1/workers/w1/group/g/jobs?task_name=ping&task_name=ping", ADMIN).await;
    assert_eq!(r.status(), 400);
    assert!(detail(r).await.contains("invalid query string"));
}

#[tokio::test]
async fn a_body_on_post_is_ignored() {
    let app = spawn_app().await;
    let h = hawk_header(&Method::POST, &app.url(GROUP_PATH), PINGER.0, PINGER.1, None, now());
    let r = app
        .http
        .post(app.url(GROUP_PATH))
        .header("Authorization", h)
        .header("Content-Type", "application/json")
        .body(r#"{"task_name": "reboot", "worker_id": "other"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!((v["task_name"].as_str(), v["worker_id"].as_str()), (Some("ping"), Some("dummy-worker-id")));
}

#[tokio::test]
async fn the_host_header_port_is_not_part_of_the_signed_host() {
    // The client signs host "127.0.0.1" and the port; the Host header carries "127.0.0.1:<port>".
    let app = spawn_app().await;
    let url = app.url(GROUP_PATH);
    let h = hawk_header(&Method::POST, &url, PINGER.0, PINGER.1, None, now());
    let r = app.http.post(&url).header("Authorization", h).header("Host", app.addr.to_string()).send().await.unwrap();
    assert_eq!(r.status(), 201);
    // A Host header that names another host breaks the signature.
    let h = hawk_header(&Method::POST, &url, PINGER.0, PINGER.1, None, now());
    let r = app
        .http
        .post(&url)
        .header("Authorization", h)
        .header("Host", format!("evil.example:{}", app.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A Host header that is not a host is a 400.
    let h = hawk_header(&Method::POST, &url, PINGER.0, PINGER.1, None, now());
    let r = app.http.post(&url).header("Authorization", h).header("Host", "a b:80").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(detail(r).await.contains("Host"));
}

#[tokio::test]
async fn a_second_request_for_a_queued_or_running_job_returns_the_same_task_id_with_200() {
    // A slow ping (50 echoes) holds the machine, so a job for it on another group stays queued.
    let app = spawn_app_with("[ping]\ncount = 50\ninterval_ms = 200\ntimeout_ms = 500\n", &[]).await;
    let running = app.post_job("127.0.0.1", "hold", "ping").await;
    assert_eq!(running.status(), 201);
    let running: Value = running.json().await.unwrap();
    let rid = running["task_id"].as_str().unwrap().to_string();
    wait_for(std::time::Duration::from_secs(20), || async {
        (app.get_job(&rid).await["state"] == "running").then_some(())
    })
    .await
    .expect("the first job starts");
    let again = app.post_job("127.0.0.1", "hold", "ping").await;
    assert_eq!(again.status(), 200, "coalesced with the running job");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["task_id"], running["task_id"]);
    assert_eq!((again["coalesced"].as_bool(), again["state"].as_str()), (Some(true), Some("running")));

    let first = app.post_job("127.0.0.1", "g", "ping").await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["state"], "queued");
    let second = app.post_job("127.0.0.1", "g", "ping").await;
    assert_eq!(second.status(), 200, "coalesced with the queued job");
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["task_id"], second["task_id"]);
    // Another group is another job.
    let other: Value = app.post_job("127.0.0.1", "g2", "ping").await.json().await.unwrap();
    assert_ne!(other["task_id"], first["task_id"]);
}

#[tokio::test]
async fn job_reads_need_the_read_scope_and_a_valid_id() {
    let app = spawn_app().await;
    let v: Value = app.post_job("w1", "g", "ping").await.json().await.unwrap();
    let id = v["task_id"].as_str().unwrap();
    let p = format!("/api/v1/jobs/{id}");
    let r = app.signed(Method::GET, &p, REBOOTER).await;
    assert_eq!(r.status(), 403);
    let d = detail(r).await;
    assert!(
        d.starts_with("You do not have permission to perform this action. ")
            && d.contains("lacks the scope 'project:releng:roller:jobs:read'"),
        "{d}"
    );
    let r = app.http.get(app.url(&p)).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(detail(r).await, "Authentication credentials were not provided.");
    let r = app.signed(Method::GET, &p, READER).await;
    assert_eq!(r.status(), 200);
    let job: Value = r.json().await.unwrap();
    assert_eq!(job["task_id"], id);
    assert_eq!(job["requester"], "admin");
    for k in ["state", "created_at", "attempts", "log", "task_name", "worker_id", "worker_group"] {
        assert!(!job[k].is_null(), "{k} in {job}");
    }
    let r = app.signed(Method::GET, "/api/v1/jobs/not-a-uuid", READER).await;
    assert_eq!(r.status(), 400);
    assert!(detail(r).await.contains("not a UUID"));
    let r = app.signed(Method::GET, "/api/v1/jobs/3f1c1b8e-0000-4000-8000-000000000000", READER).await;
    assert_eq!(r.status(), 404);
    assert_eq!(detail(r).await, "Not found.");
}

#[tokio::test]
async fn a_machines_history_lists_its_jobs_newest_first() {
    let app = spawn_app().await;
    let a: Value = app.post_job("hist-1", "g1", "ping").await.json().await.unwrap();
    let b: Value = app.post_job("hist-1", "g2", "ping").await.json().await.unwrap();
    app.post_job("hist-2", "g1", "ping").await;
    let r = app.signed(Method::GET, "/api/v1/workers/HIST-1/jobs", READER).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["worker_id"], "hist-1");
    let ids: Vec<&str> = v["jobs"].as_array().unwrap().iter().map(|j| j["task_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![b["task_id"].as_str().unwrap(), a["task_id"].as_str().unwrap()]);
    let r = app.signed(Method::GET, "/api/v1/workers/hist-1/jobs?limit=1", READER).await;
    assert_eq!(r.json::<Value>().await.unwrap()["jobs"].as_array().unwrap().len(), 1);
    let r = app.signed(Method::GET, "/api/v1/workers/hist-1/jobs?limit=0", READER).await;
    assert_eq!(r.status(), 400);
    let r = app.signed(Method::GET, "/api/v1/workers/bad%20id/jobs", READER).await;
    assert_eq!(r.status(), 400);
    let r = app.signed(Method::GET, "/api/v1/workers/hist-1/jobs", REBOOTER).await;
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn dockerflow_endpoints_answer() {
    let app = spawn_app().await;
    let r = app.http.get(app.url("/__lbheartbeat__")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = app.http.get(app.url("/__heartbeat__")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["checks"]["queue"], "ok");
    let r = app.http.get(app.url("/__version__")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["commit"].as_str().is_some_and(|c| !c.is_empty()));
}

#[tokio::test]
async fn the_heartbeat_fails_with_a_reason_while_the_database_is_locked() {
    let app = spawn_app().await;
    let db = rusqlite::Connection::open(&app.settings.sqlite_path).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let r = app.http.get(app.url("/__heartbeat__")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["checks"]["queue"], "error");
    assert!(v["details"]["queue"].as_str().is_some_and(|d| !d.is_empty()));
    db.execute_batch("ROLLBACK").unwrap();
    let ok = wait_for(std::time::Duration::from_secs(10), || async {
        let r = app.http.get(app.url("/__heartbeat__")).send().await.unwrap();
        (r.status() == 200).then_some(())
    })
    .await;
    assert!(ok.is_some(), "the heartbeat recovers once the lock is gone");
    // The lbheartbeat never depends on the backend.
    assert_eq!(app.http.get(app.url("/__lbheartbeat__")).send().await.unwrap().status(), 200);
}
