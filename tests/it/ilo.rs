//! `ilo_reboot` against the iLO (RIBCL over TLS) stand-in.

use roller_testkit::inventory::{Ilo, Inventory, Machine};
use serde_json::Value;

use crate::helpers::*;
use crate::peers::ilo::{FakeIlo, PASSWORD, USER};

fn inventory(dir: &std::path::Path, ilo: &FakeIlo, password: &str, verify_tls: bool) -> String {
    let pw = dir.join("ilo-password");
    std::fs::write(&pw, format!("{password}\n")).unwrap();
    Inventory::new()
        .machine(
            Machine::new("hp1")
                .group("lab")
                .address("127.0.0.1")
                .ilo(Ilo::new("127.0.0.1", USER).port(ilo.port).verify_tls(verify_tls).password_file(&pw)),
        )
        .write(dir)
}

async fn run(ilo: &FakeIlo, password: &str, verify_tls: bool) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(dir.path(), ilo, password, verify_tls);
    let app = spawn_app_with("", &[("ROLLER_INVENTORY", &inv)]).await;
    let r = app.post_job("hp1", "lab", "ilo_reboot").await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    app.wait_final(v["task_id"].as_str().unwrap()).await
}

#[tokio::test]
async fn a_running_server_gets_reset_server() {
    let ilo = FakeIlo::start().await;
    let job = run(&ilo, PASSWORD, false).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["sent"], "RESET_SERVER");
    assert_eq!(ilo.commands(), ["GET_HOST_POWER_STATUS", "RESET_SERVER"]);
    assert!(!serde_json::to_string(&job).unwrap().contains("pw-canary"));
}

#[tokio::test]
async fn a_refused_reset_falls_back_to_power_off_and_on() {
    let ilo = FakeIlo::start().await;
    ilo.refuse_reset(true);
    let job = run(&ilo, PASSWORD, false).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["cycle_observed"], true);
    assert!(job["result"]["reset_failure"].as_str().unwrap().contains("not supported in this state"), "{job:#}");
    let c = ilo.commands();
    assert_eq!(&c[..2], ["GET_HOST_POWER_STATUS", "RESET_SERVER"]);
    let off = c.iter().position(|x| x == "SET_HOST_POWER").unwrap();
    assert!(c[off + 1..].contains(&"SET_HOST_POWER".to_string()), "off, then on: {c:?}");
    assert!(ilo.power_on());
}

#[tokio::test]
async fn a_server_that_is_off_is_powered_on() {
    let ilo = FakeIlo::start().await;
    ilo.set_power(false);
    let job = run(&ilo, PASSWORD, false).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!((job["result"]["power_before"].as_str(), job["result"]["power"].as_str()), (Some("off"), Some("on")));
    assert!(!ilo.commands().contains(&"RESET_SERVER".to_string()));
    assert!(ilo.power_on());
}

#[tokio::test]
async fn a_wrong_password_and_an_untrusted_certificate_are_clear_failures() {
    let ilo = FakeIlo::start().await;
    let job = run(&ilo, "wrong-ilo-password", false).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let e = job["error"].as_str().unwrap();
    assert!(e.starts_with("ilo_reboot: ") && e.contains("Login failed") && e.contains("0x005F"), "{e}");
    assert!(!e.contains("wrong-ilo-password"));

    // verify_tls on (the default) against a self-signed certificate: refused before any login.
    let before = ilo.commands().len();
    let job = run(&ilo, PASSWORD, true).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let e = job["error"].as_str().unwrap();
    assert!(e.contains("TLS") && e.to_ascii_lowercase().contains("certificate"), "{e}");
    assert_eq!(ilo.commands().len(), before, "no credentials were sent");
    assert!(ilo.power_on());
}

/// The time limit falls in the fallback's off phase: the server is switched back on.
#[tokio::test]
async fn a_fallback_stopped_while_the_server_is_off_switches_it_back_on() {
    let ilo = FakeIlo::start().await;
    ilo.refuse_reset(true);
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(dir.path(), &ilo, PASSWORD, false);
    // The fallback keeps the server off for 5 s; the limits fall inside that.
    let app = spawn_app_with(
        "[runner]\npoll_interval_ms = 50\nshutdown_grace_secs = 1\nsoft_time_limit_secs = 3\nhard_time_limit_secs = 3\n",
        &[("ROLLER_INVENTORY", &inv)],
    )
    .await;
    let r = app.post_job("hp1", "lab", "ilo_reboot").await;
    assert_eq!(r.status(), 201);
    let job = app.wait_final(r.json::<Value>().await.unwrap()["task_id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "timed_out", "{job:#}");
    let error = job["error"].as_str().unwrap();
    assert!(error.contains("power restored") && error.contains("switched back on"), "{error}");
    assert!(ilo.power_on(), "on again: {:?}", ilo.commands());
}
