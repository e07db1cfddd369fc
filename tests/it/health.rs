//! Fleet health: the sweep observes inventory machines (real loopback listeners as
//! their probes, `ipmi_sim` as a BMC) and the API shows the states with their reasons.

use std::time::Duration;

use reqwest::Method;
use roller_testkit::inventory::{Class, Inventory, Ipmi, Machine};
use serde_json::Value;

use crate::helpers::*;
use crate::peers::ipmi::IpmiSim;

#[tokio::test]
async fn the_sweep_observes_every_machine_and_the_api_says_what_is_wrong() {
    let sim = IpmiSim::start();
    sim.set_power(false);
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, sim.password()).unwrap();
    // A machine whose probe port listens, and two whose ports do not.
    let live = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let inv = Inventory::new()
        .class(Class::new("up").reachability(&format!("tcp:{}", live.local_addr().unwrap().port())))
        .class(Class::new("silent").reachability(&format!("tcp:{dead}")).ipmi_cipher_suite(3))
        .machine(Machine::new("up-1").group("lab").class("up").address("127.0.0.1"))
        .machine(Machine::new("down-1").group("lab").class("silent").address("127.0.0.1"))
        .machine(
            Machine::new("off-1")
                .group("lab")
                .class("silent")
                .address("127.0.0.1")
                .ipmi(Ipmi::new("127.0.0.1", "admin").port(sim.port()).password_file(&pw)),
        )
        .write(dir.path());
    let app = spawn_app_with(
        "[health]\nenabled = true\nprobe_every_secs = 5\npower_every_secs = 60\n",
        &[("ROLLER_INVENTORY", &inv)],
    )
    .await;

    let health = wait_for(Duration::from_secs(60), || async {
        let v: Value = app.signed(Method::GET, "/api/v1/health", READER).await.json().await.unwrap();
        (v["trouble"].as_array().map(Vec::len) == Some(2)).then_some(v)
    })
    .await
    .expect("the first sweep found the two machines in trouble");
    assert_eq!(health["machines"], 3);
    assert_eq!(health["sweeping"], true);
    let trouble = health["trouble"].as_array().unwrap();
    let by_id = |id: &str| trouble.iter().find(|m| m["worker_id"] == id).cloned().unwrap_or(Value::Null);
    assert_eq!(by_id("down-1")["state"], "down", "{health:#}");
    assert!(by_id("down-1")["reason"].as_str().unwrap().contains("not answering"), "{health:#}");
    assert_eq!(by_id("off-1")["state"], "off", "the BMC says so: {health:#}");
    assert!(by_id("off-1")["reason"].as_str().unwrap().contains("ipmi reports the power off"), "{health:#}");
    assert!(by_id("off-1")["ages"]["power_secs"].as_i64().is_some());
    assert_eq!(by_id("up-1"), Value::Null, "an answering machine is not trouble: {health:#}");
    let class_up = health["groups"].as_array().unwrap().iter().find(|g| g["name"] == "up").unwrap().clone();
    assert_eq!(class_up["counts"]["ok"], 1, "{health:#}");

    let one: Value = app.signed(Method::GET, "/api/v1/machines/up-1/health", READER).await.json().await.unwrap();
    assert_eq!(one["state"], "ok", "{one:#}");
    assert_eq!(one["observations"]["probe"]["value"], true, "{one:#}");
    assert!(one["ages"]["probe_secs"].as_i64().unwrap() < 60, "{one:#}");
    assert_eq!(app.signed(Method::GET, "/api/v1/machines/nope/health", READER).await.status(), 404);
    assert_eq!(app.signed(Method::GET, "/api/v1/health", REBOOTER).await.status(), 403, "the read scope");
}

#[tokio::test]
async fn without_a_sweep_every_machine_is_unknown_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let inv = Inventory::new().machine(Machine::new("m1").address("127.0.0.1")).write(dir.path());
    let app = spawn_app_with("", &[("ROLLER_INVENTORY", &inv)]).await;
    let v: Value = app.signed(Method::GET, "/api/v1/health", READER).await.json().await.unwrap();
    assert_eq!(v["sweeping"], false);
    assert_eq!(v["trouble"][0]["state"], "unknown", "{v:#}");
    assert_eq!(v["trouble"][0]["reason"], "not probed yet", "{v:#}");
}
