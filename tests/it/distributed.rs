//! Distributed mode: `roller api` and `roller worker` processes sharing one
//! real `redis-server` (started here on a free port), killed and restarted.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::DateTime;
use reqwest::Method;
use serde_json::Value;

use crate::helpers::*;
use crate::procs::*;

const MINUTE: Duration = Duration::from_secs(60);

type Stamp = DateTime<chrono::FixedOffset>;

/// A config for every process of one test: fast polling, short jobs, short leases.
pub fn write_config(dir: &Path, extra: &str) -> String {
    let path = dir.join("roller.toml");
    std::fs::write(&path, base_config(extra)).unwrap();
    path.display().to_string()
}

pub fn env<'a>(cfg: &'a str, redis: &'a str, data: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("ROLLER_CONFIG", cfg), ("REDIS_URL", redis), ("ROLLER_DATA_DIR", data)]
}

pub async fn post(url: &str, worker: &str, group: &str) -> String {
    let (s, v) =
        signed(url, Method::POST, &format!("/api/v1/workers/{worker}/group/{group}/jobs?task_name=ping"), ADMIN).await;
    assert_eq!(s, 201, "{v}");
    v["task_id"].as_str().unwrap().to_string()
}

/// A task_id the worker logged as started and not (yet) as finished.
pub fn started_not_finished(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let mut open = std::collections::BTreeSet::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        let Some(id) = v["span"]["task_id"].as_str() else { continue };
        match v["message"].as_str() {
            Some("job started") => open.insert(id.to_string()),
            Some("job finished") => open.remove(id),
            _ => false,
        };
    }
    open.into_iter().next()
}

pub async fn get(url: &str, id: &str) -> Value {
    let (s, v) = signed(url, Method::GET, &format!("/api/v1/jobs/{id}"), ADMIN).await;
    assert_eq!(s, 200, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apis_and_three_workers_lose_nothing_when_a_worker_is_killed_mid_job() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "[runner]\npoll_interval_ms = 50\nshutdown_grace_secs = 1\nsoft_time_limit_secs = 4\nhard_time_limit_secs = 4\n\
         lease_margin_secs = 1\n[ping]\ncount = 5\ninterval_ms = 300\ntimeout_ms = 500\n",
    );
    let (url, data) = (redis.url(), dir.path().display().to_string());
    let e = env(&cfg, &url, &data);
    let apis: Vec<Roller> =
        (0..2).map(|i| start_roller("api", dir.path(), &e, &format!("api{i}.log"), false)).collect();
    let mut workers: Vec<Roller> =
        (0..3).map(|i| start_roller("worker", dir.path(), &e, &format!("worker{i}.log"), false)).collect();

    // 500 jobs on 50 loopback machines, 10 each, alternating between the two APIs.
    let mut ids = Vec::new();
    for n in 0..500 {
        let api = apis[n % 2].url();
        ids.push(post(api, &format!("127.0.0.{}", 1 + n % 50), &format!("g{}", n / 50)).await);
    }

    // Kill worker 0 mid-job twice, restarting it each time. Its JSON log says which jobs it
    // has started and not finished; it is killed while it holds one. Twice, not more: a ping
    // is delivered at most 3 times (`Task::max_attempts`), and a job the restarted worker
    // takes again may be held at every kill: a third kill would fail it as designed.
    let mut killed_holding = Vec::new();
    for round in 0..2 {
        let log = workers[0].log.clone();
        let holding = wait_for(MINUTE, || async { started_not_finished(&log) })
            .await
            .unwrap_or_else(|| panic!("round {round}: worker {} never held a job", workers[0].pid()));
        workers[0].signal("KILL");
        workers[0].child.wait().unwrap();
        killed_holding.push((holding, chrono::Utc::now()));
        workers[0] = start_roller("worker", dir.path(), &e, &format!("worker0-{round}.log"), false);
    }

    // Every job reaches a final state; none is lost.
    let mut jobs = Vec::new();
    for id in &ids {
        let j = wait_state(apis[1].url(), ADMIN, id, &["succeeded", "failed", "timed_out", "cancelled"], MINUTE).await;
        assert_eq!(j["state"], "succeeded", "{j:#}");
        jobs.push(j);
    }
    for (id, killed_at) in &killed_holding {
        let j = get(apis[0].url(), id).await;
        // The kill can land after the outcome was recorded and before the runner logged it.
        let finished = DateTime::parse_from_rfc3339(j["finished_at"].as_str().unwrap()).unwrap();
        if finished <= *killed_at {
            continue;
        }
        assert!(j["attempts"].as_u64().unwrap() >= 2, "a killed job was taken over: {j:#}");
        assert!(j["log"].as_array().unwrap().iter().any(|l| l["line"].as_str().unwrap().contains("takeover")), "{j:#}");
    }
    // No machine ever ran two jobs at once.
    let mut by_machine: HashMap<String, Vec<(Stamp, Stamp)>> = HashMap::new();
    for j in &jobs {
        let t = |k: &str| DateTime::parse_from_rfc3339(j[k].as_str().unwrap()).unwrap();
        by_machine
            .entry(j["worker_id"].as_str().unwrap().to_string())
            .or_default()
            .push((t("started_at"), t("finished_at")));
    }
    assert_eq!(by_machine.len(), 50);
    for (machine, mut spans) in by_machine {
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].1 <= w[1].0, "{machine} ran two jobs at once: {w:?}");
        }
    }
}

#[tokio::test]
async fn sigterm_hands_a_running_job_to_another_worker_at_once() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    // The lease (hard limit + margin) is far longer than the test: a takeover can only be a hand-back.
    let cfg = write_config(
        dir.path(),
        "[runner]\npoll_interval_ms = 50\nshutdown_grace_secs = 1\nsoft_time_limit_secs = 300\nhard_time_limit_secs = 300\n\
         [ping]\ncount = 25\ninterval_ms = 200\ntimeout_ms = 500\n",
    );
    let (url, data) = (redis.url(), dir.path().display().to_string());
    let e = env(&cfg, &url, &data);
    let api = start_roller("api", dir.path(), &e, "api.log", false);
    let first = start_roller("worker", dir.path(), &e, "first.log", false);
    let id = post(api.url(), "127.0.0.1", "g").await;
    let running = wait_state(api.url(), ADMIN, &id, &["running"], MINUTE).await;
    assert!(running["runner"].as_str().unwrap().contains(&format!(":{}:", first.pid())));
    let second = start_roller("worker", dir.path(), &e, "second.log", false);

    first.signal("TERM");
    let start = Instant::now();
    let taken = wait_for(MINUTE, || async {
        let j = get(api.url(), &id).await;
        let by_second = j["runner"].as_str().is_some_and(|r| r.contains(&format!(":{}:", second.pid())));
        (by_second && j["state"] == "running").then_some(j)
    })
    .await
    .expect("the second worker takes the job over");
    assert_eq!(taken["attempts"], 2);
    assert!(start.elapsed() < Duration::from_secs(60), "well before the 301 s lease");
    assert!(taken["log"].as_array().unwrap().iter().any(|l| l["line"].as_str().unwrap().contains("handed back")));
}

#[tokio::test]
async fn a_redis_outage_answers_503_and_everything_recovers_by_itself() {
    let mut redis = RedisServer::start_with(&["--requirepass", "url-pw-s3cret"]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let url = format!("redis://:url-pw-s3cret@127.0.0.1:{}", redis.port());
    let data = dir.path().display().to_string();
    let e = env(&cfg, &url, &data);
    // `serve` with REDIS_URL runs the API and a runner on Redis.
    let roller = start_roller("serve", dir.path(), &e, "serve.log", false);
    // The banner says where Redis is, without the password the URL holds.
    let where_ = format!("Redis at redis://127.0.0.1:{}", redis.port());
    assert!(roller.banner.iter().any(|l| l.contains(&where_)), "{:?}", roller.banner);
    assert!(!roller.banner.iter().any(|l| l.contains("url-pw-s3cret")), "the password leaked: {:?}", roller.banner);
    let id = post(roller.url(), "127.0.0.1", "before").await;
    wait_state(roller.url(), ADMIN, &id, &["succeeded"], MINUTE).await;

    redis.kill();
    let path = "/api/v1/workers/127.0.0.1/group/during/jobs?task_name=ping";
    let start = Instant::now();
    let (status, v) = signed(roller.url(), Method::POST, path, ADMIN).await;
    let took = start.elapsed();
    assert_eq!(status, 503, "{v}");
    assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()));
    // A read's header is verified, but whether it was used before is Redis's to say:
    // refused (fail closed), saying why, rather than accepted unchecked.
    let (status, v) = signed(roller.url(), Method::GET, &format!("/api/v1/jobs/{id}"), ADMIN).await;
    assert_eq!((status, &v["error_code"]), (503, &Value::from("auth_unavailable")), "{v}");
    assert!(v["detail"].as_str().is_some_and(|d| d.contains("replay check")), "{v}");
    // The requirement is "within 1 s"; the Redis call timeout is 800 ms. The bound leaves
    // slack for a loaded CI machine without hiding a hang.
    eprintln!("503 during the Redis outage after {took:?}");
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    let hb = reqwest::get(format!("{}/__heartbeat__", roller.url())).await.unwrap();
    assert_eq!(hb.status(), 500);
    let lb = reqwest::get(format!("{}/__lbheartbeat__", roller.url())).await.unwrap();
    assert_eq!(lb.status(), 200);

    // Redis comes back (empty: it kept nothing on disk); roller recovers without a restart.
    redis.restart();
    let id = wait_for(MINUTE, || async {
        let (s, v) =
            signed(roller.url(), Method::POST, "/api/v1/workers/127.0.0.1/group/after/jobs?task_name=ping", ADMIN)
                .await;
        (s == 201 || s == 200).then(|| v["task_id"].as_str().unwrap().to_string())
    })
    .await
    .expect("the API recovers");
    wait_state(roller.url(), ADMIN, &id, &["succeeded"], MINUTE).await;
    let hb = reqwest::get(format!("{}/__heartbeat__", roller.url())).await.unwrap();
    assert_eq!(hb.status(), 200);
}

#[tokio::test]
async fn api_and_worker_refuse_to_start_without_a_reachable_redis() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let closed = format!("redis://:hunter2@127.0.0.1:{}/", free_port());
    for sub in ["api", "worker"] {
        let start = Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_roller"))
            .arg(sub)
            .env_clear()
            .env("HOME", dir.path())
            .env("ROLLER_CONFIG", &cfg)
            .env("ROLLER_DATA_DIR", dir.path())
            .env("REDIS_URL", &closed)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{sub}: {err}");
        assert!(err.contains("Redis"), "{sub}: {err}");
        assert!(!err.contains("hunter2"), "{sub} leaked the Redis password: {err}");
        assert!(start.elapsed() < Duration::from_secs(30), "{sub} failed fast");
    }
}

#[tokio::test]
async fn a_worker_serves_its_metrics_on_metrics_bind_and_nothing_else() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let (url, data) = (redis.url(), dir.path().display().to_string());
    let e = env(&cfg, &url, &data);
    let api = start_roller("api", dir.path(), &e, "api.log", false);
    let mut we = e.clone();
    we.push(("ROLLER_METRICS_BIND", "127.0.0.1:0"));
    let worker = start_roller("worker", dir.path(), &we, "worker.log", false);
    let metrics = worker
        .banner
        .iter()
        .find_map(|l| l.trim().strip_prefix("metrics:").map(|u| u.trim().to_string()))
        .unwrap_or_else(|| panic!("a metrics line in {:?}", worker.banner));

    let id = post(api.url(), "127.0.0.1", "g").await;
    wait_state(api.url(), ADMIN, &id, &["succeeded"], MINUTE).await;
    let http = reqwest::Client::new();
    let text = http.get(&metrics).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("roller_queue_up 1"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("roller_jobs_finished_total{") && l.contains("state=\"succeeded\"")),
        "the worker ran the job and counts it: {text}"
    );
    // Only the operational endpoints: no job API on a worker.
    let base = metrics.trim_end_matches("/metrics");
    assert_eq!(http.get(format!("{base}/__lbheartbeat__")).send().await.unwrap().status(), 200);
    assert_eq!(http.get(format!("{base}/api/v1/jobs/{id}")).send().await.unwrap().status(), 404);
}
