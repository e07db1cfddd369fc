//! Jobs end to end: queued through the API, run by the in-process runner with
//! real ICMP, read back with their result and log.

use std::time::Duration;

use chrono::DateTime;
use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn a_ping_job_runs_end_to_end_and_reports_its_result() {
    let app = spawn_app().await;
    let r = app.post_job("127.0.0.1", "local", "ping").await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    let job = app.wait_final(v["task_id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["attempts"], 1);
    let result = &job["result"];
    assert_eq!(result["sent"], 2);
    assert!(result["received"].as_u64().unwrap() >= 1, "{result}");
    assert!(result["rtt_ms"]["avg"].as_f64().is_some(), "{result}");
    assert!(job["started_at"].is_string() && job["finished_at"].is_string());
    assert!(!job["log"].as_array().unwrap().is_empty(), "the job log shows progress");
    assert!(job["error"].is_null());
}

#[tokio::test]
async fn a_ping_of_a_name_that_does_not_resolve_fails_cleanly() {
    let app = spawn_app().await;
    let v: Value = app.post_job("no-such-host.invalid", "g", "ping").await.json().await.unwrap();
    let job = app.wait_final(v["task_id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    assert!(job["error"].as_str().unwrap().contains("resolve"), "{job:#}");
}

#[tokio::test]
async fn two_jobs_for_one_machine_never_run_at_the_same_time() {
    let app = spawn_app_with("[ping]\ncount = 3\ninterval_ms = 200\ntimeout_ms = 500\n", &[]).await;
    let mut ids = Vec::new();
    for g in ["a", "b", "c"] {
        let v: Value = app.post_job("127.0.0.1", g, "ping").await.json().await.unwrap();
        ids.push(v["task_id"].as_str().unwrap().to_string());
    }
    let mut spans = Vec::new();
    for id in &ids {
        let job = app.wait_final(id).await;
        assert_eq!(job["state"], "succeeded", "{job:#}");
        let t = |k: &str| DateTime::parse_from_rfc3339(job[k].as_str().unwrap()).unwrap();
        spans.push((t("started_at"), t("finished_at")));
    }
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "overlapping runs on one machine: {w:?}");
    }
}

#[tokio::test]
async fn the_soft_time_limit_stops_a_long_job_as_timed_out() {
    let app = spawn_app_with(
        "[runner]\npoll_interval_ms = 50\nshutdown_grace_secs = 1\nsoft_time_limit_secs = 1\nhard_time_limit_secs = 30\n\
         [ping]\ncount = 100\ninterval_ms = 200\ntimeout_ms = 500\n",
        &[],
    )
    .await;
    let v: Value = app.post_job("127.0.0.1", "g", "ping").await.json().await.unwrap();
    let job = app.wait_final(v["task_id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "timed_out", "{job:#}");
    assert!(job["error"].as_str().unwrap().contains("soft time limit"), "{job:#}");
    let (s, f) = (job["started_at"].as_str().unwrap(), job["finished_at"].as_str().unwrap());
    let took = DateTime::parse_from_rfc3339(f).unwrap() - DateTime::parse_from_rfc3339(s).unwrap();
    // 100 echoes would take 20 s; the soft limit cut it short (generous bound).
    assert!(took.to_std().unwrap() < Duration::from_secs(15), "took {took}");
}

#[tokio::test]
async fn jobs_queued_before_a_restart_run_after_it() {
    // Enqueue straight into the queue file while no roller runs, then start one.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("roller.toml");
    std::fs::write(&cfg, base_config("")).unwrap();
    let queue = roller::queue::sqlite::SqliteQueue::open(&dir.path().join("roller.sqlite3")).unwrap();
    use roller::queue::Queue;
    let enq = queue
        .enqueue(roller::queue::NewJob {
            task: roller::task::Task::Ping,
            max_attempts: roller::task::Task::Ping.max_attempts(),
            worker_id: roller::domain::WorkerId::parse("127.0.0.1").unwrap(),
            worker_group: roller::domain::WorkerGroup::parse("g").unwrap(),
            requester: roller::domain::ClientId::parse("admin").unwrap(),
            origin: None,
            provisioner_id: None,
            worker_type: None,
            reason: None,
        })
        .await
        .unwrap();
    drop(queue);
    let app = spawn_app_from(dir, &cfg, &[]).await;
    let job = app.wait_final(&enq.job.id.to_string()).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    app.stop().await;
}

#[tokio::test]
async fn on_shutdown_a_running_job_is_handed_back_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("roller.toml");
    std::fs::write(
        &cfg,
        base_config("[runner]\npoll_interval_ms = 50\nshutdown_grace_secs = 1\n[ping]\ncount = 100\ninterval_ms = 200\ntimeout_ms = 500\n"),
    )
    .unwrap();
    let sqlite = dir.path().join("roller.sqlite3");
    let app = spawn_app_from(dir, &cfg, &[]).await;
    let v: Value = app.post_job("127.0.0.1", "g", "ping").await.json().await.unwrap();
    let id = v["task_id"].as_str().unwrap().to_string();
    wait_for(Duration::from_secs(20), || async { (app.get_job(&id).await["state"] == "running").then_some(()) })
        .await
        .expect("the job starts");
    let dir = app.stop().await;
    assert!(sqlite.starts_with(dir.path()));

    use roller::queue::Queue;
    let queue = roller::queue::sqlite::SqliteQueue::open(&sqlite).unwrap();
    let job = queue.get(roller::domain::JobId::parse(&id).unwrap()).await.unwrap().unwrap();
    assert_eq!(job.state, roller::queue::JobState::Queued, "handed back, not left running until its lease expires");
    assert_eq!(job.attempts, 1);
    assert!(job.log.iter().any(|l| l.line.contains("handed back")), "{:?}", job.log);
}

/// A backlog drains with the heartbeat answering 200 throughout: the reserve query
/// walks the state index (not a sort of every queued row per reserve), and the
/// heartbeat asks for the write lock in turn with the runner (a second connection
/// polling for it lost to the runner's back-to-back transactions: 500 "database is
/// locked" on every probe of a drain).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_drains_with_the_heartbeat_healthy_throughout() {
    use roller::queue::Queue;
    const JOBS: usize = 3000;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("roller.toml");
    std::fs::write(&cfg, base_config("[tasks]\nenabled = [\"noop\"]\n")).unwrap();
    let queue = roller::queue::sqlite::SqliteQueue::open(&dir.path().join("roller.sqlite3")).unwrap();
    for i in 0..JOBS {
        let job = roller::queue::NewJob {
            task: roller::task::Task::Noop,
            max_attempts: 1,
            worker_id: roller::domain::WorkerId::parse(&format!("w{}", i % 300)).unwrap(),
            worker_group: roller::domain::WorkerGroup::parse(&format!("g{}", i / 300)).unwrap(),
            requester: roller::domain::ClientId::parse("admin").unwrap(),
            origin: None,
            provisioner_id: None,
            worker_type: None,
            reason: None,
        };
        assert!(queue.enqueue(job).await.unwrap().created);
    }
    let app = spawn_app_from(dir, &cfg, &[]).await;
    // (heartbeats asked, the answers that were not 200)
    let seen = std::sync::Mutex::new((0usize, Vec::<String>::new()));
    let drained = wait_for(Duration::from_secs(300), || async {
        let r = app.http.get(app.url("/__heartbeat__")).send().await.unwrap();
        let (status, body) = (r.status(), r.text().await.unwrap_or_default());
        {
            let mut s = seen.lock().unwrap();
            s.0 += 1;
            if status != 200 {
                s.1.push(body);
            }
        }
        let s = queue.stats().await.unwrap();
        (s.queued == 0 && s.running == 0).then_some(())
    })
    .await;
    let (probes, bad) = seen.into_inner().unwrap();
    assert!(drained.is_some(), "the backlog drained");
    assert!(probes >= 3, "the heartbeat was asked during the drain ({probes} times)");
    assert!(bad.is_empty(), "{} of {probes} heartbeats failed during the drain: {:?}", bad.len(), bad.first());
}
