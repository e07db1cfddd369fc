//! The real `roller` binary: the zero-config first run, SIGKILL mid-job and
//! restart, graceful SIGTERM, and no secret in its output.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::helpers::*;

struct Roller {
    child: Child,
    url: String,
    /// Everything the process printed: stdout lines (the banner) and the stderr log file.
    banner: Vec<String>,
    log: PathBuf,
}

impl Drop for Roller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `roller serve` with its data in `dir` and return once it listens.
fn start(dir: &Path, config: Option<&Path>, log_name: &str) -> Roller {
    let log = dir.join(log_name);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_roller"));
    cmd.arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("ROLLER_BIND", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    if let Some(c) = config {
        cmd.env("ROLLER_CONFIG", c).env("ROLLER_DATA_DIR", dir);
    }
    let mut child = cmd.spawn().expect("roller binary starts");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut banner = Vec::new();
    let mut url = None;
    // The banner ends with the "Read its result" command, or after the listening line when no admin is generated.
    for _ in 0..20 {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let line = line.trim_end().to_string();
        if let Some(rest) = line.split("listening on ").nth(1) {
            url = Some(rest.trim().to_string());
        }
        banner.push(line.clone());
        if url.is_some() && (line.contains(" list ") || (config.is_some() && line.contains("job queue"))) {
            break;
        }
    }
    let url = url.unwrap_or_else(|| {
        panic!("no listening line in {banner:?}; log: {}", std::fs::read_to_string(&log).unwrap_or_default())
    });
    // Keep draining stdout so the process never blocks on a full pipe.
    std::thread::spawn(move || for _ in out.lines() {});
    Roller { child, url, banner, log }
}

async fn signed(url: &str, method: Method, path: &str, id: &str, token: &str) -> (u16, Value) {
    let full = format!("{url}{path}");
    let h = hawk_header(&method, &full, id, token, None, now());
    let r = reqwest::Client::new().request(method, &full).header("Authorization", h).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn wait_state(url: &str, id: &str, token: &str, task_id: &str, want: &[&str]) -> Value {
    wait_for(Duration::from_secs(60), || async {
        let (s, v) = signed(url, Method::GET, &format!("/api/v1/jobs/{task_id}"), id, token).await;
        (s == 200 && want.contains(&v["state"].as_str().unwrap_or(""))).then_some(v)
    })
    .await
    .unwrap_or_else(|| panic!("job {task_id} never reached {want:?}"))
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
    let job = wait_state(&roller.url, &id, &token, &task_id, &["succeeded", "failed"]).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let (code, out) = tokio::task::spawn_blocking(move || run_cli(&list)).await.unwrap();
    assert_eq!(code, 0, "{out}");
    let hist: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(hist["jobs"][0]["task_id"], task_id.as_str());
    assert_eq!(hist["jobs"][0]["state"], "succeeded");

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
    let (id, token) = (ADMIN.0, ADMIN.1);
    let (s, a) =
        signed(&roller.url, Method::POST, "/api/v1/workers/127.0.0.1/group/a/jobs?task_name=ping", id, token).await;
    assert_eq!(s, 201);
    let (s, b) =
        signed(&roller.url, Method::POST, "/api/v1/workers/127.0.0.1/group/b/jobs?task_name=ping", id, token).await;
    assert_eq!(s, 201);
    let (a, b) = (a["task_id"].as_str().unwrap().to_string(), b["task_id"].as_str().unwrap().to_string());
    wait_state(&roller.url, id, token, &a, &["running"]).await;
    drop(roller); // SIGKILL mid-job: A is running, B waits for the machine.

    let roller = start(dir.path(), Some(&cfg), "after.log");
    let ja = wait_state(&roller.url, id, token, &a, &["succeeded", "failed", "timed_out"]).await;
    assert_eq!(ja["state"], "succeeded", "{ja:#}");
    assert_eq!(ja["attempts"], 2, "taken over once: {ja:#}");
    let jb = wait_state(&roller.url, id, token, &b, &["succeeded", "failed", "timed_out"]).await;
    assert_eq!(jb["state"], "succeeded", "{jb:#}");
    assert_eq!(jb["attempts"], 1);
}
