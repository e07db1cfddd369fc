//! `xenapi_reboot` against the XenAPI stand-in: the whole conversation, the
//! hard-shutdown fallback, refusals, and logout on every path.

use roller_testkit::inventory::{Inventory, Machine};
use roller_testkit::xen::{FakeXen, PASSWORD, USER, VM_UUID};
use serde_json::Value;

use crate::helpers::*;

fn inventory(dir: &std::path::Path, uuid: &str) -> String {
    Inventory::new().machine(Machine::new("vm1").group("xen").address("127.0.0.1").xen(uuid)).write(dir)
}

async fn app(x: &FakeXen, password: &str, uuid: &str, dir: &std::path::Path) -> TestApp {
    let inv = inventory(dir, uuid);
    spawn_app_with(
        "[xen]\ndelay_secs = 1\ntimeout_secs = 5\n",
        &[("ROLLER_INVENTORY", &inv), ("XEN_URL", &x.url), ("XEN_USERNAME", USER), ("XEN_PASSWORD", password)],
    )
    .await
}

async fn run(app: &TestApp) -> Value {
    let r = app.post_job("vm1", "xen", "xenapi_reboot").await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    app.wait_final(v["task_id"].as_str().unwrap()).await
}

#[tokio::test]
async fn a_clean_shutdown_then_start_and_always_a_logout() {
    let x = FakeXen::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = app(&x, PASSWORD, VM_UUID, dir.path()).await;
    let job = run(&app).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["shutdown"], "clean");
    assert_eq!(
        x.calls(),
        [
            "session.login_with_password",
            "VM.get_by_uuid",
            "VM.get_power_state",
            "VM.clean_shutdown",
            "VM.start",
            "session.logout"
        ]
    );
    assert!(x.running());
    assert_eq!(x.open_sessions(), 0);
    assert!(!serde_json::to_string(&job).unwrap().contains(PASSWORD));
}

#[tokio::test]
async fn a_guest_that_cannot_shut_down_gets_a_hard_shutdown() {
    let x = FakeXen::start().await;
    x.set_clean_fails(true);
    let dir = tempfile::tempdir().unwrap();
    let app = app(&x, PASSWORD, VM_UUID, dir.path()).await;
    let job = run(&app).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["shutdown"], "hard");
    assert!(job["result"]["clean_failure"].as_str().unwrap().contains("VM_MISSING_PV_DRIVERS"), "{job:#}");
    assert_eq!(
        x.calls(),
        [
            "session.login_with_password",
            "VM.get_by_uuid",
            "VM.get_power_state",
            "VM.clean_shutdown",
            "VM.hard_shutdown",
            "VM.start",
            "session.logout"
        ]
    );
    assert!(x.running());
}

#[tokio::test]
async fn a_wrong_password_or_unknown_vm_fails_clearly_and_leaves_no_session() {
    let x = FakeXen::start().await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = "not-the-xen-password";
    let app1 = app(&x, wrong, VM_UUID, dir.path()).await;
    let job = run(&app1).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let e = job["error"].as_str().unwrap();
    assert!(e.starts_with("xenapi_reboot: ") && e.contains("SESSION_AUTHENTICATION_FAILED"), "{e}");
    assert!(!e.contains(wrong));
    assert_eq!(x.calls(), ["session.login_with_password"], "nothing after a refused login");
    drop(app1);

    let other = "9c1b8a52-1d1e-4a7f-8f00-000000000000";
    let app2 = app(&x, PASSWORD, other, dir.path()).await;
    let job = run(&app2).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    assert!(job["error"].as_str().unwrap().contains(&format!("UUID_INVALID VM {other}")), "{job:#}");
    assert_eq!(x.calls().last().map(String::as_str), Some("session.logout"), "logged out after the error");
    assert_eq!(x.open_sessions(), 0);
    assert!(x.running(), "the VM was not touched");
}

#[tokio::test]
async fn without_xen_settings_the_task_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(dir.path(), VM_UUID);
    let app = spawn_app_with("", &[("ROLLER_INVENTORY", &inv)]).await;
    let job = run(&app).await;
    assert_eq!(job["state"], "failed");
    assert!(job["error"].as_str().unwrap().contains("no XenAPI is configured (XEN_URL"), "{job:#}");
}

#[tokio::test]
async fn a_halted_vm_is_only_started() {
    let x = FakeXen::start().await;
    x.halt();
    let dir = tempfile::tempdir().unwrap();
    let app = app(&x, PASSWORD, VM_UUID, dir.path()).await;
    let job = run(&app).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["shutdown"], "none (it was halted)");
    assert_eq!(
        x.calls(),
        ["session.login_with_password", "VM.get_by_uuid", "VM.get_power_state", "VM.start", "session.logout"]
    );
    assert!(x.running());
}

/// The time limit falls between the shutdown and the start: the VM is not left halted.
#[tokio::test]
async fn a_reboot_stopped_between_shutdown_and_start_starts_the_vm_again() {
    let x = FakeXen::start().await;
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(dir.path(), VM_UUID);
    let app = spawn_app_with(
        "[xen]\ndelay_secs = 60\ntimeout_secs = 5\n\
         [runner]\npoll_interval_ms = 50\nshutdown_grace_secs = 1\nsoft_time_limit_secs = 3\nhard_time_limit_secs = 3\n",
        &[("ROLLER_INVENTORY", &inv), ("XEN_URL", &x.url), ("XEN_USERNAME", USER), ("XEN_PASSWORD", PASSWORD)],
    )
    .await;
    let job = run(&app).await;
    assert_eq!(job["state"], "timed_out", "{job:#}");
    let error = job["error"].as_str().unwrap();
    assert!(error.contains("power restored") && error.contains(VM_UUID), "{error}");
    assert!(x.running(), "the VM runs again: {:?}", x.calls());
    let calls = x.calls();
    assert_eq!(calls.iter().filter(|c| *c == "VM.start").count(), 1, "started once, by the repair: {calls:?}");
    assert_eq!(x.open_sessions(), 0, "every session logged out, the interrupted one included");
}
