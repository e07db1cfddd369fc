//! Interrupted power changes and lost runners, against the real peers: Ctrl-C in
//! `roller run` and a SIGKILLed runner in the middle of `snmp_rebootdelay`'s off
//! phase (snmpd's Sentry3 table), the time limit between the halves, a runner
//! paused past its lease (SIGSTOP), and an `ipmitool` child of a SIGKILLed runner.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::Method;
use roller_testkit::icmp::EchoWatch;
use roller_testkit::inventory::{Class, Inventory, Ipmi, Machine, Pdu};
use serde_json::Value;

use crate::helpers::*;
use crate::ipmi::ipmitool_children_of;
use crate::peers::snmp::SentryPdu;
use crate::procs::*;

/// Outlet `AA5` as the Sentry3 table names it (tower 1, infeed 1, outlet 5).
const OUTLET: &str = "AA5";
const OUTLET_KEY: &str = "1.1.5";

/// A Mac-style machine on the PDU whose off phase lasts a minute: long enough to
/// interrupt it every way.
fn pdu_inventory(dir: &Path, pdu: &SentryPdu) -> String {
    let community = dir.join("community");
    std::fs::write(&community, pdu.community()).unwrap();
    Inventory::new()
        .class(Class::new("mac").snmp_reboot_delay_secs(60))
        .machine(
            Machine::new("mac1")
                .group("lab")
                .class("mac")
                .address("127.0.0.1")
                .pdu(Pdu::new("127.0.0.1", OUTLET).port(pdu.port()).community_file(&community)),
        )
        .write(dir)
}

/// Wait (bounded) until the PDU reports the outlet `status` (0 off, 1 on).
async fn outlet_becomes(pdu: &SentryPdu, status: i64) {
    let seen =
        wait_for(Duration::from_secs(30), || async { (pdu.status(OUTLET_KEY) == Some(status)).then_some(()) }).await;
    assert!(seen.is_some(), "outlet {OUTLET} never reported {status}: {:?}", pdu.actions());
}

fn kill(pid: u32, signal: &str) {
    assert!(Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status().unwrap().success());
}

#[tokio::test]
async fn ctrl_c_in_roller_run_during_the_off_phase_switches_the_outlet_back_on() {
    let pdu = SentryPdu::start();
    let dir = tempfile::tempdir().unwrap();
    let inv = pdu_inventory(dir.path(), &pdu);
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_roller"))
        .args(["run", "snmp_rebootdelay", "mac1"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("ROLLER_INVENTORY", &inv)
        // roller run honours RUST_LOG: the driver's own lines come through.
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    outlet_becomes(&pdu, 0).await;
    // What an operator's Ctrl-C sends.
    kill(child.id().unwrap(), "INT");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("roller run ends after Ctrl-C")
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("JSON on stdout: {stdout}{stderr}"));
    assert_eq!(v["state"], "cancelled", "{v:#}");
    let error = v["error"].as_str().unwrap();
    assert!(error.contains("power restored") && error.contains(OUTLET), "{error}");
    assert!(stderr.contains("stopped with power cut"), "the operator is told as it happens: {stderr}");
    assert!(stderr.contains("PDU outlet SET"), "the driver's log reaches the operator with RUST_LOG: {stderr}");
    assert_eq!(pdu.status(OUTLET_KEY), Some(1), "the outlet is on again: {:?}", pdu.actions());
    let last = pdu.actions().into_iter().rfind(|a| a.outlet == OUTLET_KEY).unwrap();
    assert_eq!(last.value, 1, "the last SET switched it on");
}

#[tokio::test]
async fn a_runner_killed_in_the_off_phase_leaves_the_repair_to_the_next_one_at_once() {
    let pdu = SentryPdu::start();
    let dir = tempfile::tempdir().unwrap();
    let inv = pdu_inventory(dir.path(), &pdu);
    let cfg = dir.path().join("roller.toml");
    // The default limits: a lost job would wait out a 1,260 s lease without the reclaim at start.
    std::fs::write(&cfg, base_config("")).unwrap();
    let (c, d) = (cfg.display().to_string(), dir.path().display().to_string());
    let env = [("ROLLER_CONFIG", c.as_str()), ("ROLLER_DATA_DIR", d.as_str()), ("ROLLER_INVENTORY", inv.as_str())];
    let roller = start_roller("serve", dir.path(), &env, "killed.log", false);
    let (s, v) =
        signed(roller.url(), Method::POST, "/api/v1/workers/mac1/group/lab/jobs?task_name=snmp_rebootdelay", ADMIN)
            .await;
    assert_eq!(s, 201, "{v}");
    let task_id = v["task_id"].as_str().unwrap().to_string();
    outlet_becomes(&pdu, 0).await;
    drop(roller); // SIGKILL in the off phase.
    assert_eq!(pdu.status(OUTLET_KEY), Some(0), "left dark by the kill");

    let started = std::time::Instant::now();
    let roller = start_roller("serve", dir.path(), &env, "after.log", false);
    let job =
        wait_state(roller.url(), ADMIN, &task_id, &["succeeded", "failed", "timed_out"], Duration::from_secs(90)).await;
    assert!(started.elapsed() < Duration::from_secs(90), "repaired in seconds, not after the lease");
    assert_eq!(job["state"], "failed", "{job:#}");
    assert_eq!(job["attempts"], 2, "one repair attempt, the task not run again: {job:#}");
    let error = job["error"].as_str().unwrap();
    assert!(error.contains("runner lost the job") && error.contains("power restored"), "{error}");
    let log: Vec<&str> = job["log"].as_array().unwrap().iter().map(|l| l["line"].as_str().unwrap()).collect();
    assert!(log.iter().any(|l| l.contains("is gone")), "the dead runner's lease was ended at start: {log:#?}");
    assert!(log.iter().any(|l| l.contains("repairs")), "{log:#?}");
    assert_eq!(pdu.status(OUTLET_KEY), Some(1), "on again: {:?}", pdu.actions());
}

#[tokio::test]
async fn the_time_limit_between_the_halves_switches_the_outlet_back_on() {
    let pdu = SentryPdu::start();
    let dir = tempfile::tempdir().unwrap();
    let inv = pdu_inventory(dir.path(), &pdu);
    // Soft and hard at once: the action is dropped between its off and its on.
    let app = spawn_app_with(
        "[runner]\npoll_interval_ms = 50\nshutdown_grace_secs = 1\nsoft_time_limit_secs = 3\nhard_time_limit_secs = 3\n",
        &[("ROLLER_INVENTORY", &inv)],
    )
    .await;
    let r = app.post_job("mac1", "lab", "snmp_rebootdelay").await;
    assert_eq!(r.status(), 201);
    let job = app.wait_final(r.json::<Value>().await.unwrap()["task_id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "timed_out", "{job:#}");
    let error = job["error"].as_str().unwrap();
    assert!(error.contains("time limit") && error.contains("power restored"), "{error}");
    assert_eq!(pdu.status(OUTLET_KEY), Some(1), "on again: {:?}", pdu.actions());
    let sets: Vec<i64> = pdu.actions().iter().filter(|a| a.outlet == OUTLET_KEY).map(|a| a.value).collect();
    assert_eq!(sets, [2, 1], "off, then the repair's on");
}

#[tokio::test]
async fn a_runner_paused_past_its_lease_takes_no_further_step() {
    // Two workers on one Redis (a paused process holds no lock there), a ping of 30
    // echoes a second apart, on a 10 s lease.
    let target = Ipv4Addr::new(127, 0, 97, 210);
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("roller.toml");
    std::fs::write(
        &cfg,
        base_config(
            "[runner]\npoll_interval_ms = 50\nsoft_time_limit_secs = 8\nhard_time_limit_secs = 9\nlease_margin_secs = 1\n\
             [ping]\ncount = 30\ninterval_ms = 1000\ntimeout_ms = 500\nmethod = \"socket\"\n",
        ),
    )
    .unwrap();
    let (c, d, r) = (cfg.display().to_string(), dir.path().display().to_string(), redis.url());
    let env = [("ROLLER_CONFIG", c.as_str()), ("ROLLER_DATA_DIR", d.as_str()), ("REDIS_URL", r.as_str())];
    let api = start_roller("api", dir.path(), &env, "api.log", false);
    let a = start_roller("worker", dir.path(), &env, "a.log", false);
    let watch = EchoWatch::open().expect("a raw ICMP socket (CAP_NET_RAW)");
    let path = format!("/api/v1/workers/{target}/group/lab/jobs?task_name=ping");
    let (s, v) = signed(api.url(), Method::POST, &path, ADMIN).await;
    assert_eq!(s, 201, "{v}");
    let task_id = v["task_id"].as_str().unwrap().to_string();
    let seen =
        tokio::task::spawn_blocking(move || watch.wait_for_request(target, Duration::from_secs(30))).await.unwrap();
    assert!(seen, "runner A started pinging");
    a.signal("STOP");

    // B takes the job over once A's lease has run out, then dies holding it.
    let b = start_roller("worker", dir.path(), &env, "b.log", false);
    let taken = wait_for(Duration::from_secs(60), || async {
        let (_, j) = signed(api.url(), Method::GET, &format!("/api/v1/jobs/{task_id}"), ADMIN).await;
        (j["attempts"] == 2).then_some(j)
    })
    .await
    .expect("B took the job over after A's lease");
    drop(b);
    let lines_before = taken["log"].as_array().unwrap().len();

    // A wakes up: not one more echo, not one more line in the job's log. A fresh
    // socket, so no echo from before (A's, B's) is counted.
    let watch = EchoWatch::open().unwrap();
    a.signal("CONT");
    let echoed =
        tokio::task::spawn_blocking(move || watch.wait_for_request(target, Duration::from_secs(5))).await.unwrap();
    assert!(!echoed, "runner A pinged the machine after losing its lease");
    let (_, job) = signed(api.url(), Method::GET, &format!("/api/v1/jobs/{task_id}"), ADMIN).await;
    let log = job["log"].as_array().unwrap();
    assert_eq!(log.len(), lines_before, "A wrote into the new attempt's log: {log:#?}");
    let a_log = std::fs::read_to_string(&a.log).unwrap();
    assert!(a_log.contains("lease ran out under the job"), "A says why it stopped: {a_log}");
}

#[tokio::test]
async fn an_ipmitool_child_dies_with_its_sigkilled_runner() {
    // A BMC port where nothing answers: ipmitool waits out its retries (tens of seconds).
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "pw").unwrap();
    let inv = Inventory::new()
        .machine(
            Machine::new("bmc-host")
                .group("lab")
                .address("127.0.0.1")
                .ipmi(Ipmi::new("127.0.0.1", "admin").port(silent.local_addr().unwrap().port()).password_file(&pw)),
        )
        .write(dir.path());
    let cfg = dir.path().join("roller.toml");
    std::fs::write(&cfg, base_config("")).unwrap();
    let (c, d) = (cfg.display().to_string(), dir.path().display().to_string());
    let env = [("ROLLER_CONFIG", c.as_str()), ("ROLLER_DATA_DIR", d.as_str()), ("ROLLER_INVENTORY", inv.as_str())];
    let roller = start_roller("serve", dir.path(), &env, "pdeathsig.log", false);
    let (s, v) =
        signed(roller.url(), Method::POST, "/api/v1/workers/bmc-host/group/lab/jobs?task_name=ipmi_status", ADMIN)
            .await;
    assert_eq!(s, 201, "{v}");
    let pid = roller.pid();
    let child = wait_for(Duration::from_secs(30), || async { ipmitool_children_of(pid).first().map(|(p, _)| *p) })
        .await
        .expect("the runner started ipmitool");
    drop(roller); // SIGKILL
    // Gone, or a zombie waiting for whoever adopted it to reap it: either way, not running.
    let gone = wait_for(Duration::from_secs(10), || async {
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
        matches!(state, None | Some('Z') | Some('X')).then_some(())
    })
    .await;
    assert!(gone.is_some(), "ipmitool {child} outlived its SIGKILLed runner");
}
