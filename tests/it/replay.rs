//! Replay protection across processes and restarts (issue 16.1): a captured Hawk
//! header is accepted once by every roller process on one queue backend together,
//! and not again after a restart. The processes stand behind one public name, as
//! behind a load balancer (`trusted_proxy`), so one signature is valid at each.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::distributed::{env, write_config};
use crate::helpers::*;
use crate::procs::*;

const MINUTE: Duration = Duration::from_secs(60);
/// The name clients use; the proxy forwards to whichever process (HTTPS: port 443).
const PUBLIC_HOST: &str = "roller.example.com";
const CONFIG: &str = "[server]\ntrusted_proxy = true\n";

/// A header as a client signs it for the public name: what an attacker captures.
fn capture(method: &Method, path: &str) -> String {
    hawk_header(method, &format!("https://{PUBLIC_HOST}{path}"), ADMIN.0, ADMIN.1, None, now())
}

/// Send `header` to the process at `base`, as the proxy forwards it.
async fn send(base: &str, method: Method, path: &str, header: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .header("Host", PUBLIC_HOST)
        .header("X-Forwarded-Proto", "https")
        .header("Authorization", header)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// A freshly signed request (a client's own, not a replay).
async fn fresh(base: &str, method: Method, path: &str) -> (u16, Value) {
    send(base, method.clone(), path, &capture(&method, path)).await
}

/// The jobs of `group` in the history of 127.0.0.1.
async fn jobs_of_group(base: &str, group: &str) -> Vec<Value> {
    let (s, v) = fresh(base, Method::GET, "/api/v1/workers/127.0.0.1/jobs").await;
    assert_eq!(s, 200, "{v}");
    let all = v["jobs"].as_array().cloned().expect("a list of jobs");
    all.into_iter().filter(|j| j["worker_group"] == group).collect()
}

/// Wait until the job is final, so that a replay would make a new job rather than
/// find this one still active (coalescing).
async fn wait_final(base: &str, id: &str) {
    let path = format!("/api/v1/jobs/{id}");
    wait_for(MINUTE, || async {
        let (s, v) = fresh(base, Method::GET, &path).await;
        (s == 200 && !["queued", "running"].contains(&v["state"].as_str().unwrap_or("queued"))).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("job {id} never finished"));
}

fn assert_replayed((status, v): (u16, Value), what: &str) {
    assert_eq!((status, v["detail"].as_str()), (403, Some("Replayed nonce")), "{what}: {v}");
    assert_eq!(v["error_code"], "invalid_credentials", "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_processes_on_one_redis_accept_a_captured_header_once() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), CONFIG);
    let (url, data) = (redis.url(), dir.path().display().to_string());
    let e = env(&cfg, &url, &data);
    let api = [
        start_roller("api", dir.path(), &e, "api0.log", false),
        start_roller("api", dir.path(), &e, "api1.log", false),
    ];
    let _worker = start_roller("worker", dir.path(), &e, "worker.log", false);

    let post = "/api/v1/workers/127.0.0.1/group/replay/jobs?task_name=ping";
    let captured = capture(&Method::POST, post);
    let (s, v) = send(api[0].url(), Method::POST, post, &captured).await;
    assert_eq!(s, 201, "{v}");
    let id = v["task_id"].as_str().unwrap().to_string();
    wait_final(api[0].url(), &id).await;

    // The same header through the other process, then through the first again.
    assert_replayed(send(api[1].url(), Method::POST, post, &captured).await, "the other api");
    assert_replayed(send(api[0].url(), Method::POST, post, &captured).await, "the same api");
    let jobs = jobs_of_group(api[1].url(), "replay").await;
    assert_eq!(jobs.len(), 1, "no second job: {jobs:#?}");
    assert_eq!(jobs[0]["task_id"], id.as_str());

    // Reads replay too.
    let get = format!("/api/v1/jobs/{id}");
    let captured = capture(&Method::GET, &get);
    assert_eq!(send(api[1].url(), Method::GET, &get, &captured).await.0, 200);
    assert_replayed(send(api[0].url(), Method::GET, &get, &captured).await, "a read through the other api");
}

/// `roller serve` on the embedded SQLite queue, stopped (SIGTERM) or killed (SIGKILL)
/// and started again on the same data directory.
#[tokio::test]
async fn roller_serve_refuses_after_a_restart_a_header_it_accepted_before() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("roller.toml");
    std::fs::write(&cfg, base_config(CONFIG)).unwrap();
    let (c, d) = (cfg.display().to_string(), dir.path().display().to_string());
    let e = [("ROLLER_CONFIG", c.as_str()), ("ROLLER_DATA_DIR", d.as_str())];
    let start = |log: &str| start_roller("serve", dir.path(), &e, log, false);

    for signal in ["TERM", "KILL"] {
        let mut before = start(&format!("before-{signal}.log"));
        let post = format!("/api/v1/workers/127.0.0.1/group/{signal}/jobs?task_name=ping");
        let captured_post = capture(&Method::POST, &post);
        let (s, v) = send(before.url(), Method::POST, &post, &captured_post).await;
        assert_eq!(s, 201, "{signal}: {v}");
        let id = v["task_id"].as_str().unwrap().to_string();
        wait_final(before.url(), &id).await;
        let get = format!("/api/v1/jobs/{id}");
        let captured_get = capture(&Method::GET, &get);
        assert_eq!(send(before.url(), Method::GET, &get, &captured_get).await.0, 200);

        before.signal(signal);
        before.child.wait().unwrap();
        let after = start(&format!("after-{signal}.log"));
        assert_replayed(send(after.url(), Method::POST, &post, &captured_post).await, signal);
        assert_replayed(send(after.url(), Method::GET, &get, &captured_get).await, signal);
        let jobs = jobs_of_group(after.url(), signal).await;
        assert_eq!(jobs.len(), 1, "{signal}: no second job: {jobs:#?}");
        assert!(nonce_rows(dir.path()) >= 2, "the record is in the queue's file");
    }
}

/// Rows in the SQLite file's record of used nonces, read apart from roller.
fn nonce_rows(data_dir: &Path) -> i64 {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let db = rusqlite::Connection::open_with_flags(data_dir.join("roller.sqlite3"), flags).unwrap();
    db.query_row("SELECT count(*) FROM nonces", [], |r| r.get(0)).unwrap()
}

/// A task that restarts a machine is answered from stored state (the inventory, the
/// breaker's history), so its header is claimed on its own before either is read, not
/// with the enqueue: a replay, to a restarted roller too, learns nothing from them.
#[tokio::test]
async fn a_replayed_restart_request_is_refused_before_anything_is_looked_up() {
    let app = spawn_app_with(CONFIG, &[]).await;
    let post = "/api/v1/workers/w1/group/g/jobs?task_name=reboot";
    let captured = capture(&Method::POST, post);
    let (s, v) = send(&app.url(""), Method::POST, post, &captured).await;
    assert_eq!((s, &v["error_code"]), (400, &Value::from("not_in_inventory")), "{v}");
    let dir = app.stop().await;
    let cfg = dir.path().join("roller.toml");
    let app = spawn_app_from(dir, &cfg, &[]).await;
    assert_replayed(send(&app.url(""), Method::POST, post, &captured).await, "after a restart");
}
