//! `roller jobs …` as an operator meets it, the real binary against a running roller:
//! `get` as a readable block (and `--json` as the API's record), results in words,
//! `enqueue --wait` on one machine, the API's refusals in its own words, and the exit
//! statuses README documents (1: refused, failed or roller unreachable; 2: usage).

use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::helpers::*;

/// `roller <args>` signed as `client`, talking to `url` through ROLLER_URL.
pub fn roller_cmd(url: &str, client: (&str, &str, &[&str]), home: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_roller"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("ROLLER_URL", url)
        .env("TASKCLUSTER_CLIENT_ID", client.0)
        .env("TASKCLUSTER_ACCESS_TOKEN", client.1);
    cmd
}

/// Run it to the end (off the async runtime): exit code, stdout, stderr.
pub async fn run(url: &str, client: (&str, &str, &[&str]), args: &[&str]) -> (i32, String, String) {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = roller_cmd(url, client, home.path(), args);
    cmd.stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

async fn finished_ping(app: &TestApp, worker: &str) -> Value {
    let r = app.post_job(worker, "none", "ping").await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["task_id"].as_str().unwrap().to_string();
    app.wait_final(&id).await
}

#[tokio::test]
async fn get_shows_a_readable_block_and_json_keeps_the_record() {
    let app = spawn_app().await;
    let job = finished_ping(&app, "127.0.0.1").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let id = job["task_id"].as_str().unwrap();

    let (code, out, err) = run(&app.url(""), READER, &["jobs", "get", id]).await;
    assert_eq!(code, 0, "{out}{err}");
    let line = |label: &str| {
        out.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("a {label:?} line in:\n{out}")).to_string()
    };
    assert_eq!(line("job "), format!("job       {id}"));
    assert_eq!(line("task "), "task      ping");
    assert_eq!(line("machine "), "machine   127.0.0.1 (group none)");
    assert_eq!(line("state "), "state     succeeded (attempt 1 of 3)");
    // When, relative and absolute, and who asked.
    let created = job["created_at"].as_str().unwrap();
    assert!(line("asked ").contains(" ago (") && line("asked ").contains(created), "{out}");
    assert!(line("asked ").ends_with(") by admin"), "{out}");
    assert!(line("finished ").contains(job["finished_at"].as_str().unwrap()), "{out}");
    // The result in words, not JSON.
    assert!(line("result ").starts_with("result    2/2 replies from 127.0.0.1, avg "), "{out}");
    assert!(!out.contains('{'), "no JSON in the block:\n{out}");
    // The log, each line with its time.
    let logged = job["log"].as_array().unwrap();
    assert!(!logged.is_empty());
    for l in logged {
        assert!(out.contains(l["line"].as_str().unwrap()), "{l} in:\n{out}");
    }

    // --json: the API's record, exactly.
    let (code, out, _) = run(&app.url(""), READER, &["jobs", "get", id, "--json"]).await;
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), app.get_job(id).await);

    // `list` summarises with the same words.
    let (code, out, _) = run(&app.url(""), READER, &["jobs", "list", "127.0.0.1"]).await;
    assert_eq!(code, 0);
    let row = out.lines().find(|l| l.contains(id)).unwrap_or_else(|| panic!("{id} in {out}"));
    assert!(row.contains("succeeded") && row.contains("2/2 replies from 127.0.0.1, avg "), "{row}");
}

#[tokio::test]
async fn enqueue_wait_on_one_machine_says_the_job_then_its_log_then_the_outcome() {
    let app = spawn_app().await;
    let (code, out, err) = run(&app.url(""), ADMIN, &["jobs", "enqueue", "ping", "127.0.0.1", "--wait"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    let first = lines[0];
    assert!(first.starts_with("task ") && first.ends_with(": ping on 127.0.0.1 (group none), queued"), "{out}");
    let id = first.trim_start_matches("task ").split(':').next().unwrap();
    let job = app.get_job(id).await;
    assert_eq!(job["state"], "succeeded");
    // Every log line of the job, in order, between the first line and the outcome.
    let shown: Vec<&str> = lines.iter().filter(|l| l.starts_with("  ")).copied().collect();
    let logged: Vec<&str> = job["log"].as_array().unwrap().iter().map(|l| l["line"].as_str().unwrap()).collect();
    assert_eq!(shown.len(), logged.len(), "{out}");
    for (s, l) in shown.iter().zip(&logged) {
        assert!(s.ends_with(l), "{s} is {l}");
    }
    assert!(lines.last().unwrap().starts_with("succeeded: 2/2 replies from 127.0.0.1"), "{out}");

    // A job that fails: the reason on the last line, exit 1.
    let (code, out, _) = run(&app.url(""), ADMIN, &["jobs", "enqueue", "ping", "no-such-host.invalid", "--wait"]).await;
    assert_eq!(code, 1, "{out}");
    let last = out.lines().last().unwrap();
    assert!(last.starts_with("failed: ") && last.len() > "failed: ".len(), "{out}");
    let (code, out, _) = run(&app.url(""), ADMIN, &["jobs", "follow", id]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.lines().last().unwrap().starts_with("succeeded: 2/2 replies"), "{out}");
}

#[tokio::test]
async fn refusals_show_the_api_detail_and_error_code_and_exit_1() {
    let app = spawn_app().await;
    // What the API says to this client for this request.
    let path = "/api/v1/workers/127.0.0.1/group/none/jobs?task_name=ipmi_off";
    let said: Value = app.signed(Method::POST, path, PINGER).await.json().await.unwrap();
    let (detail, code_name) = (said["detail"].as_str().unwrap(), said["error_code"].as_str().unwrap());

    let (code, out, err) = run(&app.url(""), PINGER, &["jobs", "enqueue", "ipmi_off", "127.0.0.1"]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.trim_end(), format!("roller: {detail} (HTTP 403, {code_name})"));
    assert!(out.is_empty(), "no dump on stdout: {out}");

    // A job that is not there: the API's words too.
    let missing = "6c0d0b4e-0000-4000-8000-000000000000";
    let (code, _, err) = run(&app.url(""), READER, &["jobs", "get", missing]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("roller: ") && err.contains("(HTTP 404"), "{err}");
    assert!(!err.contains("\"detail\""), "{err}");
}

#[tokio::test]
async fn an_unreachable_roller_exits_1_naming_the_url_and_the_fix_and_usage_errors_stay_2() {
    let url = format!("http://127.0.0.1:{}", roller_testkit::free_port());
    for args in [
        &["jobs", "list", "m1"][..],
        &["jobs", "get", "6c0d0b4e-0000-4000-8000-000000000000"],
        &["jobs", "follow", "6c0d0b4e-0000-4000-8000-000000000000"],
        &["jobs", "enqueue", "ping", "m1", "--wait"],
    ] {
        let (code, _, err) = tokio::time::timeout(Duration::from_secs(60), run(&url, READER, args)).await.unwrap();
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains(&format!("cannot reach roller at {url}/")), "{args:?}: {err}");
        assert!(err.contains("roller serve") && err.contains("--url / ROLLER_URL"), "{args:?}: {err}");
    }
    // Usage errors keep 2, whether or not roller answers.
    let (code, _, err) = run(&url, READER, &["jobs", "get", "not-a-job-id"]).await;
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&url, READER, &["jobs", "enqueue", "frobnicate", "m1"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown task"), "{err}");
}

#[tokio::test]
async fn serve_names_the_dashboard_and_how_to_sign_in_without_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let roller = crate::procs::start_roller("serve", dir.path(), &[], "serve.log", true);
    let creds_path = dir.path().join(".local/share/roller/admin-credentials.json");
    let creds: Value = serde_json::from_str(&std::fs::read_to_string(&creds_path).unwrap()).unwrap();
    let (id, token) = (creds["client_id"].as_str().unwrap(), creds["access_token"].as_str().unwrap());
    let banner = roller.banner.join("\n");
    let dashboard = format!("{}/", roller.url());
    assert!(roller.banner.iter().any(|l| l.trim() == format!("dashboard:         {dashboard}")), "{banner}");
    let sign_in = roller.banner.iter().find(|l| l.contains("sign in with:")).unwrap_or_else(|| panic!("{banner}"));
    assert!(sign_in.contains(&format!("client id {id}")) && sign_in.contains(&creds_path.display().to_string()));
    assert!(!banner.contains(token), "the access token is never printed");
    // The URL is the dashboard.
    let page = reqwest::get(&dashboard).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
}
