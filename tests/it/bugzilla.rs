//! `file_bugzilla_bug` against the Bugzilla stand-in: alone, and as the last
//! step of a reboot chain in which nothing worked.

use std::time::Duration;

use roller_testkit::inventory::{Class, Inventory, Machine};
use serde_json::Value;

use crate::helpers::*;
use crate::peers::bugzilla::FakeBugzilla;

const KEY: &str = "bmo-api-key-canary-0042";

/// A machine whose chain has nothing roller can do before the bug.
fn inventory(dir: &std::path::Path) -> String {
    Inventory::new()
        .class(Class::new("lab").reboot(&["ssh_reboot", "ipmi_reset", "file_bugzilla_bug"]))
        .machine(
            Machine::new("t-box-01")
                .group("mdc9")
                .class("lab")
                .address("t-box-01.test.example")
                .bug_cc(&["dcops@example.com"]),
        )
        .write(dir)
}

async fn app_for(bz: &FakeBugzilla, key: &str, dir: &std::path::Path) -> TestApp {
    let inv = inventory(dir);
    spawn_app_with("", &[("ROLLER_INVENTORY", &inv), ("BUGZILLA_URL", &bz.url), ("BUGZILLA_API_KEY", key)]).await
}

async fn run(app: &TestApp, task: &str) -> Value {
    let r = app.post_job("t-box-01", "mdc9", task).await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    app.wait_final(v["task_id"].as_str().unwrap()).await
}

#[tokio::test]
async fn a_failed_chain_files_two_bugs_then_comments_then_reopens_the_tracker() {
    let bz = FakeBugzilla::start(KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let app = app_for(&bz, KEY, dir.path()).await;

    // First failure: the tracker and the "is unreachable" bug that blocks it.
    let job = run(&app, "reboot").await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let e = job["error"].as_str().unwrap();
    assert!(
        e.contains("file_bugzilla_bug filed") && e.ends_with(&format!("Filed {}/show_bug.cgi?id=2.", bz.url)),
        "{e}"
    );
    let bugs = bz.bugs();
    assert_eq!(bugs.len(), 2, "{bugs:#?}");
    let (tracker, bug) = (&bugs[0], &bugs[1]);
    assert_eq!(tracker.alias.as_deref(), Some("t-box-01"));
    assert_eq!(tracker.summary, "[MDC9] t-box-01 problem tracking");
    assert_eq!((tracker.product.as_str(), tracker.component.as_str()), ("Infrastructure & Operations", "CIDuty"));
    assert_eq!(bug.summary, "t-box-01.test.example is unreachable");
    assert_eq!(bug.component, "DCOps");
    assert_eq!(bug.blocks, [tracker.id]);
    assert_eq!(bug.cc, ["dcops@example.com"]);
    assert!(bug.description.contains("Requested by admin"), "{}", bug.description);
    assert!(bug.description.contains("ssh_reboot skipped: no [ssh] for this machine"), "{}", bug.description);
    assert!(bug.description.contains(job["task_id"].as_str().unwrap()), "the job is named: {}", bug.description);

    // Second failure: a comment on the open bug, not a duplicate.
    let job = run(&app, "reboot").await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let bugs = bz.bugs();
    assert_eq!(bugs.len(), 2, "{bugs:#?}");
    assert_eq!(bugs[1].comments.len(), 1);
    assert!(bugs[1].comments[0].contains("ipmi_reset skipped"), "{:?}", bugs[1].comments);

    // Both closed by a person; the machine fails again: tracker reopened, a new bug filed.
    bz.close(1);
    bz.close(2);
    let job = run(&app, "reboot").await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let bugs = bz.bugs();
    assert_eq!(bugs.len(), 3, "{bugs:#?}");
    assert_eq!((bugs[0].status.as_str(), bugs[0].resolution.as_str()), ("REOPENED", ""));
    assert_eq!(bugs[2].blocks, [1]);
    assert!(job["log"].as_array().unwrap().iter().any(|l| l["line"].as_str().unwrap().contains("reopening it")));

    // The key only ever travelled in its header.
    assert!(bz.violations().is_empty(), "{:?}", bz.violations());
    assert!(bz.requests().iter().all(|r| !r.contains(KEY)));
    let history = app.signed(reqwest::Method::GET, "/api/v1/workers/t-box-01/jobs", ADMIN).await.text().await.unwrap();
    assert!(!history.contains(KEY));
}

#[tokio::test]
async fn file_bugzilla_bug_runs_alone_and_a_wrong_key_is_a_clear_failure() {
    let bz = FakeBugzilla::start(KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let app = app_for(&bz, KEY, dir.path()).await;
    let job = run(&app, "file_bugzilla_bug").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["filed"], true);
    assert_eq!(job["result"]["url"], format!("{}/show_bug.cgi?id=2", bz.url));
    assert!(bz.bugs()[1].description.contains("attempted no reboot"));
    drop(app);

    let app = app_for(&bz, "not-the-key", dir.path()).await;
    let job = run(&app, "file_bugzilla_bug").await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let e = job["error"].as_str().unwrap();
    assert!(e.starts_with("file_bugzilla_bug: ") && e.contains("API key you specified is invalid"), "{e}");
    assert!(!e.contains("not-the-key"));
    // In the chain, a failed filing is one more attempt in the log.
    let job = run(&app, "reboot").await;
    assert!(job["error"].as_str().unwrap().contains("file_bugzilla_bug failed: "), "{job:#}");
    assert_eq!(bz.bugs().len(), 2, "nothing filed with a wrong key");
}

#[tokio::test]
async fn a_bugzilla_that_does_not_answer_fails_the_step_within_its_timeout() {
    // Accepts connections, never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(dir.path());
    let app = spawn_app_with(
        "[bugzilla]\ntimeout_secs = 2\n",
        &[("ROLLER_INVENTORY", &inv), ("BUGZILLA_URL", &url), ("BUGZILLA_API_KEY", KEY)],
    )
    .await;
    let start = std::time::Instant::now();
    let job = run(&app, "file_bugzilla_bug").await;
    assert_eq!(job["state"], "failed", "{job:#}");
    assert!(job["error"].as_str().unwrap().contains("no answer within 2s"), "{job:#}");
    assert!(start.elapsed() < Duration::from_secs(20), "{:?}", start.elapsed());
}
