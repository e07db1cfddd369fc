//! The medic end to end: a real roller sweeps machines that are real loopback hosts
//! (a listener that answers, or not, and comes back when `ipmi_sim` carries out a
//! reset), reads the Taskcluster stand-in's scripted fleet, and heals — or, behind its
//! gates, does not — queueing ordinary jobs the runner carries out.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use chrono::Utc;
use reqwest::Method;
use roller_testkit::inventory::{Class, Inventory, Ipmi, Machine};
use roller_testkit::taskcluster::{FakeTaskcluster, Resolution};
use serde_json::Value;

use crate::helpers::*;
use crate::peers::host::{FakeHost, Power};
use crate::peers::ipmi::IpmiSim;

const PROVISIONER: &str = "releng";
const WORKER_TYPE: &str = "t-medic";
const POOL: &str = "releng/t-medic";
const MINUTE: Duration = Duration::from_secs(60);
const HOOK_SECRET: &str = "medic-hook-secret-0123456789";

/// Quick proofs, quick sweeps, a medic every second.
fn config(tc: &FakeTaskcluster, medic: &str, extra: &str) -> String {
    format!(
        "[reboot]\ndown_timeout_secs = 5\nup_timeout_secs = 15\nprobe_interval_ms = 200\n\
         [health]\nenabled = true\nprobe_every_secs = 5\ntaskcluster_every_secs = 5\npower_every_secs = 60\n\
         taskcluster_root_url = {:?}\n[medic]\nenabled = true\nevery_secs = 1\n{medic}{extra}",
        tc.root_url
    )
}

/// A machine that stopped answering and comes back (after a boot) only when its BMC
/// carries out `chassis power reset`.
fn hung_host(sim: Arc<IpmiSim>) -> FakeHost {
    let (mut seen, mut hung, mut power) = (sim.actions().len(), true, Power::new());
    FakeHost::start(move || {
        let actions = sim.actions();
        if actions[seen.min(actions.len())..].iter().any(|a| a == "set reset 1") {
            hung = false;
            power.reboot();
        }
        seen = actions.len();
        !hung && power.answering()
    })
}

/// A worker whose last task ended two hours ago, in a pool with work waiting: the
/// picture of a hung worker (if it does not answer).
fn idle_two_hours(tc: &FakeTaskcluster, id: &str) {
    let now = Utc::now();
    tc.add_worker(POOL, "lab", id, now - chrono::Duration::hours(3));
    let run = tc.claim(POOL, "lab", id, now - chrono::Duration::hours(3));
    tc.resolve(&run.task_id, Resolution::Completed, now - chrono::Duration::hours(2));
}

/// A worker running a task it claimed ten minutes ago.
fn running_fresh(tc: &FakeTaskcluster, id: &str) {
    let now = Utc::now();
    tc.add_worker(POOL, "lab", id, now - chrono::Duration::hours(1));
    tc.claim(POOL, "lab", id, now - chrono::Duration::minutes(10));
}

async fn get(app: &TestApp, path: &str) -> Value {
    let r = app.signed(Method::GET, path, READER).await;
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

async fn jobs_of(app: &TestApp, worker: &str) -> Vec<Value> {
    get(app, &format!("/api/v1/workers/{worker}/jobs")).await["jobs"].as_array().cloned().unwrap_or_default()
}

/// The decision about `worker` in the medic's newest cycle.
async fn last_decision(app: &TestApp, worker: &str) -> Option<Value> {
    let d = get(app, "/api/v1/medic/decisions").await;
    d["last"]["decisions"].as_array()?.iter().find(|x| x["worker_id"] == worker).cloned()
}

/// A webhook receiver: the bodies of its deliveries.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let g = g.clone();
            async move {
                assert!(headers.get("x-roller-signature").is_some(), "deliveries are signed");
                g.lock().unwrap().push(serde_json::from_str(&body).unwrap_or(Value::Null));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

/// `[notify]` to the receiver at `url`, its secret in a file in `dir`.
fn webhook(url: &str, dir: &Path) -> String {
    let secret = dir.join("hook-secret");
    std::fs::write(&secret, HOOK_SECRET).unwrap();
    format!("[notify]\nwebhook_url = {url:?}\nwebhook_secret_file = {secret:?}\ntimeout_secs = 2\n")
}

/// `roller <args> --url <app>` with the reader's credentials; its stdout (it must succeed).
async fn roller_cli(app: &TestApp, args: &[&str]) -> String {
    let shown = args.join(" ");
    let (url, args): (String, Vec<String>) = (app.url(""), args.iter().map(|a| a.to_string()).collect());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_roller"))
            .args(&args)
            .args(["--url", &url])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TASKCLUSTER_CLIENT_ID", READER.0)
            .env("TASKCLUSTER_ACCESS_TOKEN", READER.1)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "roller {shown}: {text}{}", String::from_utf8_lossy(&out.stderr));
    text
}

fn password_file(dir: &Path, password: &str) -> std::path::PathBuf {
    let p = dir.join("ipmi-password");
    std::fs::write(&p, password).unwrap();
    p
}

#[tokio::test]
async fn a_hung_worker_is_healed_and_proven_back_in_service() {
    let tc = FakeTaskcluster::start(&[]).await;
    let sim = Arc::new(IpmiSim::start());
    let host = hung_host(sim.clone());
    let dir = tempfile::tempdir().unwrap();
    let pw = password_file(dir.path(), sim.password());
    let inv = Inventory::new()
        .class(
            Class::new("mini")
                .reachability(&format!("tcp:{}", host.port()))
                .reboot(&["ipmi_reset"])
                .min_boot_secs(2)
                .ipmi_cipher_suite(3),
        )
        .machine(
            Machine::new("hung-1")
                .group("lab")
                .class("mini")
                .address("127.0.0.1")
                .pool(PROVISIONER, WORKER_TYPE)
                .ipmi(Ipmi::new("127.0.0.1", "admin").port(sim.port()).password_file(&pw)),
        )
        .write(dir.path());
    idle_two_hours(&tc, "hung-1");
    tc.set_pending(POOL, 5);
    let app = spawn_app_with(&config(&tc, "dry_run = false\n", ""), &[("ROLLER_INVENTORY", &inv)]).await;

    // The medic queues the class's remediation as an ordinary job, saying why.
    let job = wait_for(MINUTE, || async { jobs_of(&app, "hung-1").await.into_iter().next() })
        .await
        .expect("the medic queued a remediation");
    assert_eq!(
        (job["task_name"].as_str(), job["requester"].as_str()),
        (Some("reboot"), Some("roller-medic")),
        "{job:#}"
    );
    let reason = job["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("not answering") && reason.contains("5 tasks wait in releng/t-medic"), "{job:#}");
    let done = app.wait_final(job["task_id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert_eq!(done["result"]["worked"], "ipmi_reset", "the BMC reset, proven by the host: {done:#}");
    assert!(host.answering());

    // Proven back at the host level is not yet back in service: that takes a task.
    let memory = get(&app, "/api/v1/machines/hung-1/health").await["medic"].clone();
    assert!(memory["last"]["outcome"].is_null(), "no work taken yet: {memory:#}");
    let claimed = tc.claim(POOL, "lab", "hung-1", Utc::now());
    let memory = wait_for(MINUTE, || async {
        let m = get(&app, "/api/v1/machines/hung-1/health").await["medic"].clone();
        (m["last"]["outcome"] == "back_in_service").then_some(m)
    })
    .await
    .expect("the medic saw the worker take work again");
    assert!(memory["last"]["detail"].as_str().unwrap().contains(&claimed.task_id), "{memory:#}");
    assert_eq!(memory["failures"], 0);

    // The record: the decision that queued it, the follow-up, and nothing queued twice.
    let d = get(&app, "/api/v1/medic/decisions?limit=100").await;
    let cycles = d["cycles"].as_array().unwrap();
    let queued: Vec<&Value> =
        cycles.iter().flat_map(|c| c["decisions"].as_array().unwrap()).filter(|x| x["verdict"] == "enqueued").collect();
    assert_eq!(queued.len(), 1, "{d:#}");
    assert_eq!(queued[0]["job_id"], job["task_id"]);
    assert!(cycles.iter().any(|c| c["follow_ups"][0]["outcome"] == "back_in_service"), "{d:#}");
    assert_eq!(jobs_of(&app, "hung-1").await.len(), 1);
    assert_eq!(get(&app, "/api/v1/machines/hung-1/health").await["state"], "busy");
}

#[tokio::test]
async fn a_machine_failing_three_times_is_held_and_flagged_until_released() {
    let tc = FakeTaskcluster::start(&[]).await;
    let sim = Arc::new(IpmiSim::start());
    let host = hung_host(sim.clone());
    let (hook, deliveries) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    // The BMC refuses roller's password: every remediation fails.
    let pw = password_file(dir.path(), "not-the-password");
    let inv = Inventory::new()
        .class(
            Class::new("mini")
                .reachability(&format!("tcp:{}", host.port()))
                .reboot(&["ipmi_reset"])
                .ipmi_cipher_suite(3),
        )
        .machine(
            Machine::new("sick-1")
                .group("lab")
                .class("mini")
                .address("127.0.0.1")
                .pool(PROVISIONER, WORKER_TYPE)
                .ipmi(Ipmi::new("127.0.0.1", "admin").port(sim.port()).password_file(&pw)),
        )
        .write(dir.path());
    idle_two_hours(&tc, "sick-1");
    tc.set_pending(POOL, 2);
    let extra = format!("[safety]\nmax_restarts = 10\n{}", webhook(&hook, dir.path()));
    let app = spawn_app_with(&config(&tc, "dry_run = false\n", &extra), &[("ROLLER_INVENTORY", &inv)]).await;

    let health = wait_for(2 * MINUTE, || async {
        let h = get(&app, "/api/v1/machines/sick-1/health").await;
        (h["state"] == "held").then_some(h)
    })
    .await
    .expect("the medic held the machine");
    assert_eq!(health["hold"]["by"], "roller-medic", "{health:#}");
    assert!(health["reason"].as_str().unwrap().contains("3 failed remediations in a row"), "{health:#}");
    assert_eq!(health["medic"]["failures"], 3);
    let until = chrono::DateTime::parse_from_rfc3339(health["hold"]["until"].as_str().unwrap()).unwrap();
    let minutes = (until.with_timezone(&Utc) - Utc::now()).num_minutes();
    assert!((5 * 60..=6 * 60).contains(&minutes), "held for 6 h: {health:#}");
    let jobs = jobs_of(&app, "sick-1").await;
    assert_eq!(jobs.len(), 3, "{jobs:#?}");
    assert!(jobs.iter().all(|j| j["state"] == "failed" && j["requester"] == "roller-medic"));

    // Flagged for a person: the alert went out, and the audit log says who held it and why.
    let alert =
        wait_for(MINUTE, || async { deliveries.lock().unwrap().iter().find(|e| e["event"] == "medic_alert").cloned() })
            .await
            .expect("an alert was delivered");
    assert!(alert["alerts"][0].as_str().unwrap().contains("sick-1 held for 6 h"), "{alert:#}");
    let d = get(&app, "/api/v1/medic/decisions").await;
    assert_eq!(d["audit"][0]["action"], "medic_hold", "{d:#}");

    // Held: the medic leaves it alone, cycle after cycle.
    let seen = get(&app, "/api/v1/medic/decisions").await["last"]["at"].clone();
    wait_for(MINUTE, || async {
        let d = get(&app, "/api/v1/medic/decisions").await;
        (d["last"]["at"] != seen && d["last"]["decisions"][0]["gate"] == "hold").then_some(())
    })
    .await
    .expect("later cycles skip it for its hold");
    assert_eq!(jobs_of(&app, "sick-1").await.len(), 3);

    // Released with a reason (scoped): the medic may try again, its count started afresh.
    let release = "/api/v1/machines/sick-1/release?reason=BMC%20password%20rotated";
    assert_eq!(app.signed(Method::POST, release, READER).await.status(), 403);
    assert_eq!(app.signed(Method::POST, "/api/v1/machines/sick-1/release", ADMIN).await.status(), 400);
    assert_eq!(app.signed(Method::POST, release, ADMIN).await.status(), 200);
    assert_eq!(app.signed(Method::POST, release, ADMIN).await.status(), 409, "not held any more");
    wait_for(MINUTE, || async { (jobs_of(&app, "sick-1").await.len() > 3).then_some(()) })
        .await
        .expect("a fourth remediation after the release");
    let d = get(&app, "/api/v1/medic/decisions").await;
    let release = d["audit"].as_array().unwrap().iter().find(|a| a["action"] == "release").cloned().unwrap();
    assert_eq!((release["by"].as_str(), release["reason"].as_str()), (Some("admin"), Some("BMC password rotated")));
}

#[tokio::test]
async fn dry_run_acts_on_nothing_and_a_busy_worker_is_never_a_candidate() {
    let tc = FakeTaskcluster::start(&[]).await;
    let live = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let in_pool = |name: &str, class: &str| {
        Machine::new(name).group("lab").class(class).address("127.0.0.1").pool(PROVISIONER, WORKER_TYPE)
    };
    let inv = Inventory::new()
        .class(Class::new("up").reachability(&format!("tcp:{}", live.local_addr().unwrap().port())))
        .class(Class::new("silent").reachability(&format!("tcp:{dead}")))
        .machine(in_pool("busy-1", "up"))
        .machine(in_pool("quiet-1", "silent"))
        .machine(in_pool("hung-1", "silent"))
        .write(dir.path());
    // busy-1 answers and runs a task; quiet-1 does not answer but runs a fresh task (a
    // network blip, not a hang); hung-1 does not answer and took no work for two hours.
    running_fresh(&tc, "busy-1");
    running_fresh(&tc, "quiet-1");
    idle_two_hours(&tc, "hung-1");
    tc.set_pending(POOL, 4);
    // `dry_run` is on unless turned off.
    let app = spawn_app_with(&config(&tc, "", ""), &[("ROLLER_INVENTORY", &inv)]).await;

    let decision = wait_for(MINUTE, || async { last_decision(&app, "hung-1").await })
        .await
        .expect("the medic decided about the hung machine");
    assert_eq!(decision["verdict"], "would_enqueue", "{decision:#}");
    let d = get(&app, "/api/v1/medic/decisions").await;
    assert_eq!((d["enabled"].as_bool(), d["dry_run"].as_bool()), (Some(true), Some(true)));
    assert_eq!(d["last"]["mode"], "dry_run");
    let decided: Vec<&str> =
        d["last"]["decisions"].as_array().unwrap().iter().map(|x| x["worker_id"].as_str().unwrap()).collect();
    assert_eq!(decided, ["hung-1"], "the busy and the merely silent are no candidates: {d:#}");
    assert_eq!(get(&app, "/api/v1/machines/busy-1/health").await["state"], "busy");
    let quiet = get(&app, "/api/v1/machines/quiet-1/health").await;
    assert_eq!(quiet["state"], "down", "{quiet:#}");

    // The CLI: the fleet's health, and the plan (the same decision, acting on nothing).
    let health = roller_cli(&app, &["health"]).await;
    assert!(health.lines().any(|l| l.starts_with("hung") && l.contains("hung-1")), "{health}");
    assert!(health.lines().any(|l| l.starts_with("down") && l.contains("quiet-1")), "{health}");
    let plan = roller_cli(&app, &["medic", "plan"]).await;
    assert!(plan.contains("hung-1") && plan.contains("would queue reboot"), "{plan}");

    // A few cycles later still nothing was queued for anyone.
    let seen = d["last"]["at"].clone();
    wait_for(MINUTE, || async { (get(&app, "/api/v1/medic/decisions").await["last"]["at"] != seen).then_some(()) })
        .await
        .expect("another cycle ran");
    for m in ["busy-1", "quiet-1", "hung-1"] {
        assert!(jobs_of(&app, m).await.is_empty(), "{m} was left alone");
    }
}

#[tokio::test]
async fn stale_observations_block_every_action_until_a_sweep_is_fresh_again() {
    use roller::health::{Observations, Seen, TaskObs, WorkerObs};
    use roller::queue::records::{RecordKind, Records};

    let tc = FakeTaskcluster::start(&[]).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let data = tempfile::tempdir().unwrap();
    let inv = Inventory::new()
        .class(Class::new("silent").reachability(&format!("tcp:{dead}")).reboot(&[]))
        .machine(
            Machine::new("hung-1").group("lab").class("silent").address("127.0.0.1").pool(PROVISIONER, WORKER_TYPE),
        )
        .write(data.path());
    idle_two_hours(&tc, "hung-1");
    tc.set_pending(POOL, 3);

    // A sweeper that stopped sweeping but still holds its lease, and what it saw 20 s ago:
    // hung, by a rule whose data is still "known" (under three sweeps old) but not fresh.
    let store = roller::queue::sqlite::SqliteQueue::open(&data.path().join("roller.sqlite3")).unwrap();
    assert!(store.acquire_lease("health-sweep", "stuck-sweeper", Duration::from_secs(15)).await.unwrap());
    let then = Utc::now() - chrono::Duration::seconds(20);
    let seen = Observations {
        probe: Some(Seen::new(then, false)),
        power: None,
        worker: Some(Seen::new(
            then,
            WorkerObs {
                pool: POOL.into(),
                known: true,
                last_active: Some(then - chrono::Duration::hours(2)),
                quarantine_until: None,
                latest_task: Some(TaskObs {
                    task_id: "fQ8yVwXbQ3ad5ZUhvMWrDQ".into(),
                    run_id: 0,
                    state: Some("completed".into()),
                    started: Some(then - chrono::Duration::hours(3)),
                    resolved: Some(then - chrono::Duration::hours(2)),
                    reason_resolved: Some("completed".into()),
                }),
                pending: Some(3),
            },
        )),
    };
    store.put_record(RecordKind::Observations, "hung-1", &seen.to_record()).await.unwrap();
    drop(store);

    let cfg = data.path().join("roller.toml");
    let medic = "dry_run = false\nfresh_within_secs = 5\n";
    std::fs::write(&cfg, base_config(&config(&tc, medic, "").replace("probe_every_secs = 5", "probe_every_secs = 10")))
        .unwrap();
    let app = spawn_app_from(data, &cfg, &[("ROLLER_INVENTORY", &inv)]).await;

    let blocked = wait_for(MINUTE, || async {
        let d = get(&app, "/api/v1/medic/decisions").await;
        (d["last"]["decisions"][0]["gate"] == "freshness").then_some(d)
    })
    .await
    .expect("the medic refused to act on old data");
    let gate = blocked["last"]["gates"].as_array().unwrap().iter().find(|g| g["gate"] == "freshness").cloned().unwrap();
    assert_eq!((gate["scope"].as_str(), gate["passed"].as_bool()), (Some("class silent"), Some(false)), "{gate:#}");
    assert!(gate["detail"].as_str().unwrap().starts_with("0 of 1 machines"), "{gate:#}");
    assert!(jobs_of(&app, "hung-1").await.is_empty());

    // The stuck sweeper's lease runs out; this roller sweeps; fresh data, and the medic acts.
    let job = wait_for(MINUTE, || async { jobs_of(&app, "hung-1").await.into_iter().next() })
        .await
        .expect("once the data was fresh the medic acted");
    assert_eq!(job["requester"], "roller-medic");
}

#[tokio::test]
async fn too_many_hung_in_a_pool_blocks_every_action_and_alerts_until_an_operator_allows_a_batch() {
    let tc = FakeTaskcluster::start(&[]).await;
    let (hook, deliveries) = receiver().await;
    let live = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    // 25 machines in one pool, 3 hung: 12 %, above the 10 % (2 machines) the medic may touch.
    let mut inv = Inventory::new()
        .class(Class::new("up").reachability(&format!("tcp:{}", live.local_addr().unwrap().port())))
        .class(Class::new("silent").reachability(&format!("tcp:{dead}")).reboot(&[]));
    for i in 0..25 {
        let class = if i < 3 { "silent" } else { "up" };
        let name = format!("w{i:02}");
        inv = inv
            .machine(Machine::new(&name).group("lab").class(class).address("127.0.0.1").pool(PROVISIONER, WORKER_TYPE));
        if i < 3 {
            idle_two_hours(&tc, &name);
        }
    }
    let inv = inv.write(dir.path());
    tc.set_pending(POOL, 9);
    let app =
        spawn_app_with(&config(&tc, "dry_run = false\n", &webhook(&hook, dir.path())), &[("ROLLER_INVENTORY", &inv)])
            .await;

    let d = wait_for(MINUTE, || async {
        let d = get(&app, "/api/v1/medic/decisions").await;
        (d["last"]["candidates"] == 3).then_some(d)
    })
    .await
    .expect("the medic saw the three hung machines");
    let last = &d["last"];
    assert!(last["decisions"].as_array().unwrap().iter().all(|x| x["gate"] == "blast_radius"), "{last:#}");
    let pool_gate = last["gates"].as_array().unwrap().iter().find(|g| g["scope"] == "pool releng/t-medic").unwrap();
    assert_eq!(pool_gate["passed"], false);
    assert!(pool_gate["detail"].as_str().unwrap().starts_with("3 hung; at most 2 of 25"), "{pool_gate:#}");
    let alert =
        wait_for(MINUTE, || async { deliveries.lock().unwrap().iter().find(|e| e["event"] == "medic_alert").cloned() })
            .await
            .expect("the blocked batch was alerted");
    assert!(alert["alerts"].to_string().contains("3 machines hung in pool releng/t-medic"), "{alert:#}");

    // Cycle after cycle, nothing is queued and the same alert is not sent again.
    let at = d["last"]["at"].clone();
    wait_for(MINUTE, || async {
        let d = get(&app, "/api/v1/medic/decisions").await;
        (d["last"]["at"] != at && d["last"]["candidates"] == 3).then_some(())
    })
    .await
    .expect("another blocked cycle");
    for i in 0..3 {
        assert!(jobs_of(&app, &format!("w{i:02}")).await.is_empty());
    }
    let alerts = deliveries.lock().unwrap().iter().filter(|e| e["event"] == "medic_alert").count();
    assert_eq!(alerts, 1, "one alert for one situation");

    // An operator allows this batch once, with a reason (and the scope for it).
    let allow = "/api/v1/medic/allow?batch=3&reason=rack%20power%20restored";
    assert_eq!(app.signed(Method::POST, allow, READER).await.status(), 403);
    assert_eq!(app.signed(Method::POST, "/api/v1/medic/allow?batch=0&reason=x", ADMIN).await.status(), 400);
    assert_eq!(app.signed(Method::POST, allow, ADMIN).await.status(), 200);
    for i in 0..3 {
        let name = format!("w{i:02}");
        let job = wait_for(MINUTE, || async { jobs_of(&app, &name).await.into_iter().next() })
            .await
            .unwrap_or_else(|| panic!("{name} was remediated in the allowed batch"));
        assert_eq!(job["requester"], "roller-medic");
    }
    let d = get(&app, "/api/v1/medic/decisions?limit=100").await;
    assert!(d["pending_batch"].is_null(), "used once: {d:#}");
    let actions: Vec<&str> = d["audit"].as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["use_batch", "allow_batch"], "{d:#}");
}
