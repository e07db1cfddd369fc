//! The real `roller` binary: the zero-config first run, SIGKILL mid-job and
//! restart, graceful SIGTERM, and no secret in its output.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::Method;
use roller_testkit::inventory::{Inventory, Machine};
use serde_json::Value;

use crate::helpers::*;
use crate::procs::*;

fn start(dir: &Path, config: Option<&Path>, log_name: &str) -> Roller {
    match config {
        Some(c) => {
            let (c, d) = (c.display().to_string(), dir.display().to_string());
            start_roller("serve", dir, &[("ROLLER_CONFIG", &c), ("ROLLER_DATA_DIR", &d)], log_name, false)
        }
        None => start_roller("serve", dir, &[], log_name, true),
    }
}

fn run_cli(line: &str) -> (i32, String) {
    let mut words = line.split_whitespace();
    let exe = words.next().unwrap();
    let out = Command::new(exe).args(words).stdin(Stdio::null()).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).to_string())
}

#[tokio::test]
async fn the_zero_config_first_run_prints_commands_that_work() {
    let dir = tempfile::tempdir().unwrap();
    let mut roller = start(dir.path(), None, "first-run.log");
    let data = dir.path().join(".local/share/roller");
    let creds_path = data.join("admin-credentials.json");
    let mode = std::fs::metadata(&creds_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "admin credentials are private");
    assert!(data.join("roller.sqlite3").exists());
    let banner = roller.banner.join("\n");
    assert!(banner.contains(&creds_path.display().to_string()), "{banner}");

    // Copy-paste the two printed commands.
    let enqueue =
        roller.banner.iter().find(|l| l.contains(" enqueue ping 127.0.0.1")).expect("an enqueue command").clone();
    let list = roller.banner.iter().find(|l| l.contains(" list 127.0.0.1")).expect("a list command").clone();
    let (code, out) = tokio::task::spawn_blocking(move || run_cli(&enqueue)).await.unwrap();
    assert_eq!(code, 0, "{out}");
    let created: Value = serde_json::from_str(&out).unwrap();
    let task_id = created["task_id"].as_str().unwrap().to_string();
    let creds: Value = serde_json::from_str(&std::fs::read_to_string(&creds_path).unwrap()).unwrap();
    let (id, token) =
        (creds["client_id"].as_str().unwrap().to_string(), creds["access_token"].as_str().unwrap().to_string());
    let me = (id.as_str(), token.as_str(), &[][..]);
    let job = wait_state(roller.url(), me, &task_id, &["succeeded", "failed"], Duration::from_secs(60)).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let (code, out) = tokio::task::spawn_blocking(move || run_cli(&list)).await.unwrap();
    assert_eq!(code, 0, "{out}");
    // A table for people: the header, then the job.
    let row = out.lines().nth(1).unwrap_or_else(|| panic!("a job row in {out}"));
    assert!(out.starts_with("CREATED") && row.contains(&task_id) && row.contains("succeeded"), "{out}");

    // SIGTERM: a graceful exit.
    let pid = roller.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::task::spawn_blocking(move || {
        let s = roller.child.wait().unwrap();
        (s, roller)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "exit after SIGTERM: {:?}", status.0);
    let roller = status.1;

    // No secret anywhere in what it printed or logged.
    let log = std::fs::read_to_string(&roller.log).unwrap();
    assert!(log.contains("\"request\"") || log.contains("request"), "one log line per request: {log}");
    assert!(log.contains(&task_id), "request log lines carry the task_id");
    assert!(!log.contains(&token) && !banner.contains(&token), "the access token leaked");
}

#[tokio::test]
async fn a_job_running_when_roller_is_killed_is_taken_over_after_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("roller.toml");
    std::fs::write(
        &cfg,
        base_config(
            "[runner]\npoll_interval_ms = 50\nsoft_time_limit_secs = 4\nhard_time_limit_secs = 4\nlease_margin_secs = 1\n\
             [ping]\ncount = 3\ninterval_ms = 1000\ntimeout_ms = 500\n",
        ),
    )
    .unwrap();
    let roller = start(dir.path(), Some(&cfg), "before.log");
    let (s, a) =
        signed(roller.url(), Method::POST, "/api/v1/workers/127.0.0.1/group/a/jobs?task_name=ping", ADMIN).await;
    assert_eq!(s, 201);
    let (s, b) =
        signed(roller.url(), Method::POST, "/api/v1/workers/127.0.0.1/group/b/jobs?task_name=ping", ADMIN).await;
    assert_eq!(s, 201);
    let (a, b) = (a["task_id"].as_str().unwrap().to_string(), b["task_id"].as_str().unwrap().to_string());
    let minute = Duration::from_secs(60);
    wait_state(roller.url(), ADMIN, &a, &["running"], minute).await;
    drop(roller); // SIGKILL mid-job: A is running, B waits for the machine.

    let roller = start(dir.path(), Some(&cfg), "after.log");
    let ja = wait_state(roller.url(), ADMIN, &a, &["succeeded", "failed", "timed_out"], minute).await;
    assert_eq!(ja["state"], "succeeded", "{ja:#}");
    assert_eq!(ja["attempts"], 2, "taken over once: {ja:#}");
    let jb = wait_state(roller.url(), ADMIN, &b, &["succeeded", "failed", "timed_out"], minute).await;
    assert_eq!(jb["state"], "succeeded", "{jb:#}");
    assert_eq!(jb["attempts"], 1);
}

#[tokio::test]
async fn sighup_reloads_the_inventory_and_a_bad_file_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("roller.toml");
    std::fs::write(&cfg, base_config("")).unwrap();
    let inv = dir.path().join("inventory.toml");
    Inventory::new().machine(Machine::new("early-host").address("127.0.0.1")).write_to(&inv);
    let (c, d, i) = (cfg.display().to_string(), dir.path().display().to_string(), inv.display().to_string());
    let roller = start_roller(
        "serve",
        dir.path(),
        &[("ROLLER_CONFIG", &c), ("ROLLER_DATA_DIR", &d), ("ROLLER_INVENTORY", &i)],
        "hup.log",
        false,
    );
    let minute = Duration::from_secs(60);
    let status_of = |host: &'static str, group: &'static str| {
        let url = roller.url().to_string();
        async move {
            let path = format!("/api/v1/workers/{host}/group/{group}/jobs?task_name=status");
            let (s, v) = signed(&url, Method::POST, &path, ADMIN).await;
            assert_eq!(s, 201, "{v}");
            let id = v["task_id"].as_str().unwrap().to_string();
            wait_state(&url, ADMIN, &id, &["succeeded", "failed"], minute).await
        }
    };
    let job = status_of("late-host", "g1").await;
    assert_eq!(job["state"], "failed");
    assert!(job["error"].as_str().unwrap().contains("not in the inventory"), "{job:#}");

    Inventory::new()
        .machine(Machine::new("early-host").address("127.0.0.1"))
        .machine(Machine::new("late-host").address("127.0.0.1"))
        .write_to(&inv);
    roller.signal("HUP");
    let reloaded = wait_for(minute, || async {
        std::fs::read_to_string(&roller.log).unwrap_or_default().contains("inventory reloaded").then_some(())
    })
    .await;
    assert!(reloaded.is_some(), "no reload logged");
    let job = status_of("late-host", "g2").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["answers"], true);

    // A file that does not validate is refused; the previous inventory stays in force.
    Inventory::new().machine(Machine::new("late-host").address("not a host")).write_to(&inv);
    roller.signal("HUP");
    let refused = wait_for(minute, || async {
        std::fs::read_to_string(&roller.log).unwrap_or_default().contains("inventory reload failed").then_some(())
    })
    .await;
    assert!(refused.is_some(), "no refusal logged");
    let job = status_of("late-host", "g3").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
}

#[tokio::test]
async fn roller_breaker_reset_records_who_when_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let roller = start(dir.path(), None, "breaker.log");
    let creds = dir.path().join(".local/share/roller/admin-credentials.json");
    let (url, creds) = (roller.url().to_string(), creds.display().to_string());
    let cli = move |args: Vec<String>| {
        let out = Command::new(env!("CARGO_BIN_EXE_roller"))
            .args(["breaker", "--url", &url, "--credentials", &creds])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).to_string())
    };
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let c = cli.clone();
    let (code, out) = tokio::task::spawn_blocking(move || {
        c(words(&["reset", "mac-7", "--reason", "replaced the power supply; ok to restart"]))
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("mac-7: restarts allowed"), "{out}");
    assert!(out.contains("by roller-admin: replaced the power supply; ok to restart"), "{out}");
    let (code, out) = tokio::task::spawn_blocking(move || cli(words(&["status", "mac-7"]))).await.unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("reset") && out.contains("replaced the power supply"), "the reset is kept: {out}");
}

/// Two embedded rollers on one data directory share its queue correctly, but the
/// second is told it is not alone (and which process is), at start.
#[tokio::test]
async fn a_second_serve_on_one_data_directory_says_so_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let first = start(dir.path(), None, "first.log");
    assert!(!first.banner.iter().any(|l| l.contains("NOTE")), "{:?}", first.banner);
    let second = start(dir.path(), None, "second.log");
    let note = second.banner.iter().find(|l| l.contains("NOTE")).cloned().unwrap_or_default();
    assert!(note.contains(&format!("another roller (pid {})", first.child.id())), "{:?}", second.banner);
    let log = std::fs::read_to_string(&second.log).unwrap();
    assert!(log.contains("another roller serves from this data directory"), "{log}");
    // Once the first has gone, a new one is alone again.
    drop(first);
    drop(second);
    let third = start(dir.path(), None, "third.log");
    assert!(!third.banner.iter().any(|l| l.contains("NOTE")), "{:?}", third.banner);
}

/// The request log lines of `log` (JSON, one per line) whose path contains `path`.
fn request_lines(log: &Path, path: &str) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "request" && v["path"].as_str().is_some_and(|p| p.contains(path)))
        .collect()
}

#[tokio::test]
async fn a_refused_request_is_logged_with_who_asked_for_what_on_which_machine_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("roller.toml");
    std::fs::write(&cfg, base_config("")).unwrap();
    let inv = dir.path().join("inventory.toml");
    Inventory::new().machine(Machine::new("mac-1").address("127.0.0.1")).write_to(&inv);
    let (c, d, i) = (cfg.display().to_string(), dir.path().display().to_string(), inv.display().to_string());
    let env = [("ROLLER_CONFIG", c.as_str()), ("ROLLER_DATA_DIR", d.as_str()), ("ROLLER_INVENTORY", i.as_str())];
    let roller = start_roller("serve", dir.path(), &env, "refused.log", false);
    let url = roller.url().to_string();

    // A valid client without the scope for the task.
    let (s, v) = signed(&url, Method::POST, "/api/v1/workers/mac-1/group/g/jobs?task_name=reboot", PINGER).await;
    assert_eq!((s, v["error_code"].as_str()), (403, Some("insufficient_scope")), "{v}");
    // A valid client refused by a rail (409).
    let (s, v) = signed(&url, Method::POST, "/api/v1/machines/mac-1/release?reason=done", ADMIN).await;
    assert_eq!((s, v["error_code"].as_str()), (409, Some("not_held")), "{v}");
    // A signature that does not verify: no client is named.
    let path = "/api/v1/workers/mac-2/group/g/jobs?task_name=ping";
    let h = hawk_header(&Method::POST, &format!("{url}{path}"), ADMIN.0, "not-the-token", None, now());
    let r = reqwest::Client::new().post(format!("{url}{path}")).header("Authorization", h).send().await.unwrap();
    assert_eq!(r.status(), 403);

    let logged = |path: &'static str| {
        let log = roller.log.clone();
        wait_for(Duration::from_secs(10), move || {
            let lines = request_lines(&log, path);
            async move { lines.into_iter().next() }
        })
    };
    let line = logged("/api/v1/workers/mac-1/group/g/jobs").await.expect("a log line for the 403");
    assert_eq!(line["status"], 403, "{line}");
    assert_eq!(line["client_id"], "pinger", "{line}");
    assert_eq!(line["task"], "reboot", "{line}");
    assert_eq!(line["worker_id"], "mac-1", "{line}");
    assert_eq!(line["reason"], "insufficient_scope", "{line}");
    let line = logged("/api/v1/machines/mac-1/release").await.expect("a log line for the 409");
    assert_eq!((&line["status"], &line["client_id"]), (&Value::from(409), &Value::from("admin")), "{line}");
    assert_eq!((&line["worker_id"], &line["reason"]), (&Value::from("mac-1"), &Value::from("not_held")), "{line}");
    let line = logged("/api/v1/workers/mac-2/group/g/jobs").await.expect("a log line for the bad MAC");
    assert_eq!(line["client_id"], "-", "an unverified id is not a client: {line}");
    assert_eq!((&line["task"], &line["worker_id"]), (&Value::from("ping"), &Value::from("mac-2")), "{line}");
    assert_eq!(
        (&line["reason"], &line["detail"]),
        (&Value::from("invalid_credentials"), &Value::from(roller::auth::bad_mac("admin")))
    );

    // Counted by status and reason, with no client or machine in the labels.
    let metrics = reqwest::get(format!("{url}/metrics")).await.unwrap().text().await.unwrap();
    let refused: Vec<&str> = metrics.lines().filter(|l| l.starts_with("roller_requests_refused_total{")).collect();
    let has = |status: &str, reason: &str| {
        refused
            .iter()
            .any(|l| l.contains(&format!("status=\"{status}\"")) && l.contains(&format!("reason=\"{reason}\"")))
    };
    assert!(
        has("403", "insufficient_scope") && has("409", "not_held") && has("403", "invalid_credentials"),
        "{refused:?}"
    );
    assert!(
        refused.iter().all(|l| !l.contains("mac-") && !l.contains("pinger") && !l.contains("admin")),
        "{refused:?}"
    );
}
