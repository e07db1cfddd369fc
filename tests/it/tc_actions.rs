//! `roller tc-actions`: the worker-context action definitions, printed and
//! declared to the Taskcluster stand-in (which checks Hawk, the scope and the
//! action schema).

use std::process::Stdio;

use roller_testkit::taskcluster::{ACCESS_TOKEN, CLIENT_ID, FakeTaskcluster};
use serde_json::Value;

async fn roller(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_roller"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("TASK_NAMES", "ping,reboot,loan")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test]
async fn prints_one_worker_action_per_enabled_task() {
    let (code, out, err) = roller(&["tc-actions", "https://roller.example/"], &[]).await;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let actions = v["actions"].as_array().unwrap();
    let names: Vec<&str> = actions.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ping", "reboot", "loan"]);
    let reboot = &actions[1];
    assert_eq!(reboot["context"], "worker");
    assert_eq!(reboot["method"], "POST");
    assert_eq!(
        reboot["url"],
        "https://roller.example/api/v1/workers/<workerId>/group/<workerGroup>/jobs?task_name=reboot"
    );
    assert!(reboot["description"].as_str().unwrap().contains("reboot chain"));

    let (code, _, err) = roller(&["tc-actions", "https://roller.example/?workerId=x"], &[]).await;
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = roller(&["tc-actions", "https://roller.example", "--declare", "releng-hardware"], &[]).await;
    assert_eq!(code, 2);
    assert!(err.contains("needs roller's Taskcluster credentials"), "{err}");
}

#[tokio::test]
async fn declare_sends_them_signed_and_says_taskcluster_keeps_nothing() {
    let q = FakeTaskcluster::start(&["queue:declare-provisioner:releng-hardware#actions"]).await;
    let env = [
        ("TASKCLUSTER_ROOT_URL", q.root_url.as_str()),
        ("TASKCLUSTER_CLIENT_ID", CLIENT_ID),
        ("TASKCLUSTER_ACCESS_TOKEN", ACCESS_TOKEN),
    ];
    let (code, out, err) =
        roller(&["tc-actions", "https://roller.example", "--declare", "releng-hardware"], &env).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("store nothing"), "{err}");
    let notes = q.notes();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].0, "declareProvisioner");
    assert_eq!(notes[0].1["actions"].as_array().unwrap().len(), 3);
    assert!(!out.contains(ACCESS_TOKEN) && !err.contains(ACCESS_TOKEN));

    // Without the scope for that provisioner: Taskcluster's refusal, named.
    let (code, _, err) = roller(&["tc-actions", "https://roller.example", "--declare", "other-prov"], &env).await;
    assert_eq!(code, 2);
    assert!(err.contains("HTTP 403") && err.contains("queue:declare-provisioner:other-prov#actions"), "{err}");
}
