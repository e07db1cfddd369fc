//! Hardware tasks end to end: the inventory names a machine and its BMC, the
//! API queues `ipmi_*` and `status` jobs, the runner drives a real `ipmi_sim`.

use std::path::Path;

use reqwest::Method;
use roller_testkit::inventory::{Class, Inventory, Ipmi, Machine, Pdu, Redfish};
use serde_json::Value;

use crate::helpers::*;
use crate::peers::ipmi::IpmiSim;

/// An inventory with one machine on loopback whose BMC is `sim`, with the
/// password read from a file (never inline).
fn inventory(dir: &Path, sim: &IpmiSim, password: &str) -> String {
    let pw = dir.join("ipmi-password");
    std::fs::write(&pw, format!("{password}\n")).unwrap();
    Inventory::new()
        .class(Class::new("sim").ipmi_cipher_suite(3))
        .machine(
            Machine::new("bmc-host")
                .group("lab")
                .class("sim")
                .address("127.0.0.1")
                .ipmi(Ipmi::new("127.0.0.1", "admin").port(sim.port()).password_file(&pw)),
        )
        .write(dir)
}

async fn run_job(app: &TestApp, task: &str) -> Value {
    let r = app.post_job("bmc-host", "lab", task).await;
    assert_eq!(r.status(), 201, "{task}");
    let v: Value = r.json().await.unwrap();
    app.wait_final(v["task_id"].as_str().unwrap()).await
}

#[tokio::test]
async fn ipmi_tasks_change_and_confirm_the_power_state() {
    let sim = IpmiSim::start();
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(dir.path(), &sim, sim.password());
    let app = spawn_app_with("", &[("ROLLER_INVENTORY", &inv)]).await;

    let job = run_job(&app, "ipmi_off").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["power"], "off");
    assert!(!sim.power(), "the BMC's hook saw the power go off");

    let job = run_job(&app, "ipmi_status").await;
    assert_eq!((job["state"].as_str(), job["result"]["power"].as_str()), (Some("succeeded"), Some("off")));

    // A cycle of a machine that is off powers it on instead.
    let job = run_job(&app, "ipmi_cycle").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["power_before"], "off");
    assert!(sim.power());
    let log: Vec<&str> = job["log"].as_array().unwrap().iter().map(|l| l["line"].as_str().unwrap()).collect();
    assert!(log.iter().any(|l| l.contains("powering on instead of ipmi_cycle")), "{log:#?}");

    let before = sim.actions().len();
    let job = run_job(&app, "ipmi_reset").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["sent"], "reset");
    assert!(sim.actions()[before..].iter().any(|a| a.contains("set reset 1")), "{:?}", sim.actions());

    let job = run_job(&app, "ipmi_list").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert!(!job["result"]["sel"].as_array().unwrap().is_empty());

    let job = run_job(&app, "status").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["power"]["state"], "on");
    assert_eq!(job["result"]["answers"], true);

    // The password is nowhere in what roller recorded.
    let all = serde_json::to_string(
        &app.signed(Method::GET, "/api/v1/workers/bmc-host/jobs", ADMIN).await.json::<Value>().await.unwrap(),
    )
    .unwrap();
    assert!(!all.contains(sim.password()));
}

#[tokio::test]
async fn a_wrong_bmc_password_fails_the_job_naming_the_step() {
    let sim = IpmiSim::start();
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(dir.path(), &sim, "not-the-password");
    let app = spawn_app_with("", &[("ROLLER_INVENTORY", &inv)]).await;
    let job = run_job(&app, "ipmi_off").await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let e = job["error"].as_str().unwrap();
    assert!(e.starts_with("ipmi_off: ") && e.contains("wrong user name or password"), "{e}");
    assert!(sim.power(), "nothing was changed");
    assert_eq!(job["attempts"], 1);
    // status reports the BMC problem instead of failing.
    let job = run_job(&app, "status").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert!(job["result"]["power"]["error"].as_str().is_some_and(|e| e.contains("password")));
}

#[tokio::test]
async fn hardware_tasks_refuse_machines_outside_the_inventory() {
    let sim = IpmiSim::start();
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(dir.path(), &sim, sim.password());
    let app = spawn_app_with("", &[("ROLLER_INVENTORY", &inv)]).await;
    let r = app.post_job("127.0.0.1", "lab", "ipmi_off").await;
    let v: Value = r.json().await.unwrap();
    let job = app.wait_final(v["task_id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "failed");
    assert!(job["error"].as_str().unwrap().contains("not in the inventory"), "{job:#}");
    assert!(sim.power());
    // ping still runs on any resolvable host.
    let r = app.post_job("127.0.0.1", "lab", "ping").await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(app.wait_final(v["task_id"].as_str().unwrap()).await["state"], "succeeded");
}

#[tokio::test]
async fn redfish_tasks_change_and_confirm_the_power_state() {
    let bmc = crate::peers::redfish::SushyBmc::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("redfish-password");
    std::fs::write(&pw, bmc.password()).unwrap();
    let inv = Inventory::new()
        .machine(
            Machine::new("bmc-host")
                .group("lab")
                .address("127.0.0.1")
                .redfish(Redfish::new(&bmc.url(), bmc.user()).password_file(&pw)),
        )
        .write(dir.path());
    let app = spawn_app_with("", &[("ROLLER_INVENTORY", &inv)]).await;

    let job = run_job(&app, "redfish_off").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!((job["result"]["sent"].as_str(), job["result"]["power"].as_str()), (Some("ForceOff"), Some("off")));
    assert_eq!(bmc.power_state().await, "Off");

    let job = run_job(&app, "redfish_status").await;
    assert_eq!(job["result"]["power"], "off", "{job:#}");
    let job = run_job(&app, "status").await;
    assert_eq!(job["result"]["power"], serde_json::json!({"source": "redfish", "state": "off"}), "{job:#}");

    // A restart of a machine that is off powers it on instead.
    let job = run_job(&app, "redfish_restart").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!((job["result"]["sent"].as_str(), job["result"]["power"].as_str()), (Some("On"), Some("on")));
    assert_eq!(bmc.power_state().await, "On");

    let job = run_job(&app, "redfish_reset").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["sent"], "ForceRestart");
    assert!(!serde_json::to_string(&job).unwrap().contains(bmc.password()));
}

/// Issue 14: a restart's or reset's `power` is what the BMC said after the request,
/// never the state read before it (it was: "on", while sushy reads Off until the
/// restart lands). The emulator's restarts land late here (`SLOW_POWER_CHANGES`),
/// so the read-back is Off, and its log shows the GET of the system that read it,
/// after the POST of the Reset.
#[tokio::test]
async fn redfish_restart_and_reset_report_the_power_read_back_after_the_request() {
    use crate::peers::redfish::{SLOW_POWER_CHANGES, SYSTEM_UUID, SushyBmc};
    let bmc = SushyBmc::start_with(false, "On", SLOW_POWER_CHANGES).await;
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("redfish-password");
    std::fs::write(&pw, bmc.password()).unwrap();
    let inv = Inventory::new()
        .machine(
            Machine::new("bmc-host")
                .group("lab")
                .address("127.0.0.1")
                .redfish(Redfish::new(&bmc.url(), bmc.user()).password_file(&pw)),
        )
        .write(dir.path());
    let config = "[safety]\nmax_restarts = 10\n";
    let app = spawn_app_with(config, &[("ROLLER_INVENTORY", &inv)]).await;
    let reset = format!("POST /redfish/v1/Systems/{SYSTEM_UUID}/Actions/ComputerSystem.Reset");
    let system = format!("GET /redfish/v1/Systems/{SYSTEM_UUID}");

    for (task, sent) in [("redfish_restart", "GracefulRestart"), ("redfish_reset", "ForceRestart")] {
        // The previous restart has landed: the machine is on before this one.
        bmc.wait_power("On", std::time::Duration::from_secs(30)).await;
        let job = run_job(&app, task).await;
        assert_eq!(job["state"], "succeeded", "{task}: {job:#}");
        let r = &job["result"];
        assert_eq!((r["sent"].as_str(), r["power_before"].as_str()), (Some(sent), Some("on")), "{task}: {r}");
        assert_eq!(r["power"], "off", "{task}: the state the BMC gave after the request: {r}");
        // Read before the harness's own GET below, which would also be one.
        let requests = bmc.requests();
        let post = requests.iter().rposition(|r| *r == reset).unwrap_or_else(|| panic!("no Reset POST: {requests:#?}"));
        assert!(requests[post + 1..].contains(&system), "{task}: no GET of the system after the POST: {requests:#?}");
        // ...and Off is what the emulator still says (its Off lasts ten seconds).
        assert_eq!(bmc.power_state().await, "Off", "{task}");
        let log: Vec<&str> = job["log"].as_array().unwrap().iter().map(|l| l["line"].as_str().unwrap()).collect();
        assert!(log.iter().any(|l| l.contains("reports power off after the request")), "{task}: {log:#?}");
    }
}

#[tokio::test]
async fn the_reboot_loop_breaker_refuses_a_third_restart_within_the_window() {
    let sim = IpmiSim::start();
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(dir.path(), &sim, sim.password());
    let app =
        spawn_app_with("[safety]\nmax_restarts = 2\nrestart_window_hours = 6\n", &[("ROLLER_INVENTORY", &inv)]).await;
    for _ in 0..2 {
        let job = run_job(&app, "ipmi_reset").await;
        assert_eq!(job["state"], "succeeded", "{job:#}");
    }
    let before = sim.actions().len();
    let r = app.post_job("bmc-host", "lab", "ipmi_cycle").await;
    assert_eq!(r.status(), 409);
    let detail = r.json::<Value>().await.unwrap()["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("bmc-host was restarted 2 times in the last 6 h (ipmi_reset, ipmi_reset)"), "{detail}");
    assert!(detail.contains("refuses ipmi_cycle until") && detail.contains("needs a person"), "{detail}");
    assert_eq!(sim.actions().len(), before, "nothing was sent to the BMC");
    // Tasks that do not restart the machine still run.
    assert_eq!(run_job(&app, "ipmi_status").await["state"], "succeeded");

    // Turned off (ROLLER_MAX_RESTARTS=0), the same history allows it.
    let data = app.stop().await;
    let cfg = data.path().join("roller.toml");
    let app = spawn_app_from(data, &cfg, &[("ROLLER_INVENTORY", &inv), ("ROLLER_MAX_RESTARTS", "0")]).await;
    assert_eq!(app.post_job("bmc-host", "lab", "ipmi_cycle").await.status(), 201);
}

/// Power-ons to one device are staggered (default 2 s apart), whichever
/// machines they are for: two nodes behind one BMC, two outlets on one PDU.
#[tokio::test]
async fn power_ons_to_one_bmc_or_pdu_are_staggered() {
    let sim = IpmiSim::start();
    sim.set_power(false);
    let pdu = crate::peers::snmp::SentryPdu::start();
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, sim.password()).unwrap();
    let community = dir.path().join("community");
    std::fs::write(&community, pdu.community()).unwrap();
    let mut inv = Inventory::new().class(Class::new("sim").ipmi_cipher_suite(3));
    for (n, outlet) in [(1, "AA1"), (2, "AA2")] {
        inv = inv.machine(
            Machine::new(&format!("node{n}"))
                .group("lab")
                .class("sim")
                .address("127.0.0.1")
                .ipmi(Ipmi::new("127.0.0.1", "admin").port(sim.port()).password_file(&pw))
                .pdu(Pdu::new("127.0.0.1", outlet).port(pdu.port()).community_file(&community)),
        );
    }
    let path = inv.write(dir.path());
    let app = spawn_app_with("", &[("ROLLER_INVENTORY", &path)]).await;

    for task in ["ipmi_on", "snmp_reboot"] {
        let mut ids = Vec::new();
        for node in ["node1", "node2"] {
            let r = app.post_job(node, "lab", task).await;
            assert_eq!(r.status(), 201);
            ids.push(r.json::<Value>().await.unwrap()["task_id"].as_str().unwrap().to_string());
        }
        for id in ids {
            let job = app.wait_final(&id).await;
            assert_eq!(job["state"], "succeeded", "{job:#}");
        }
    }
    let ons: Vec<f64> = sim
        .action_log()
        .lines()
        .filter(|l| l.ends_with("set power 1"))
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ons.len(), 2, "{}", sim.action_log());
    assert!(ons[1] - ons[0] >= 1.9, "IPMI power-ons {:.2}s apart", ons[1] - ons[0]);
    let reboots: Vec<f64> = pdu.actions().iter().filter(|a| a.value == 3).map(|a| a.at).collect();
    assert_eq!(reboots.len(), 2);
    assert!((reboots[1] - reboots[0]).abs() >= 1.9, "PDU reboots {:.2}s apart", reboots[1] - reboots[0]);
}

/// A restart counts only when its command reached a device: jobs that failed on their
/// configuration restarted nothing. An operator's reset lets the machine be restarted
/// again, recorded with who and why.
#[tokio::test]
async fn the_breaker_counts_only_restarts_that_reached_a_device_and_a_reset_is_audited() {
    let sim = IpmiSim::start();
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(dir.path(), &sim, sim.password());
    // A machine whose BMC password cannot be read: its restarts fail before any command.
    let broken = dir.path().join("broken.toml");
    let text = std::fs::read_to_string(&inv).unwrap().replace("ipmi-password", "no-such-password-file");
    std::fs::write(&broken, text).unwrap();
    let config = "[safety]\nmax_restarts = 2\nrestart_window_hours = 6\n";
    let app = spawn_app_with(config, &[("ROLLER_INVENTORY", broken.to_str().unwrap())]).await;
    for task in ["ipmi_reset", "ipmi_cycle", "ipmi_reset"] {
        let job = run_job(&app, task).await;
        assert_eq!(job["state"], "failed", "{job:#}");
        assert!(job["error"].as_str().unwrap().contains("configuration error"), "{job:#}");
    }
    assert!(sim.actions().is_empty(), "nothing reached the BMC");
    // Three "restarts" that never happened: the breaker lets the next one through.
    let data = app.stop().await;
    let cfg = data.path().join("roller.toml");
    let app = spawn_app_from(data, &cfg, &[("ROLLER_INVENTORY", &inv)]).await;
    for _ in 0..2 {
        assert_eq!(run_job(&app, "ipmi_reset").await["state"], "succeeded");
    }
    let r = app.post_job("bmc-host", "lab", "ipmi_cycle").await;
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error_code"], "restart_breaker_open");
    assert!(v["detail"].as_str().unwrap().contains("roller breaker reset bmc-host --reason"), "{v}");

    let status = app.signed(Method::GET, "/api/v1/workers/bmc-host/breaker", READER).await;
    assert_eq!(status.status(), 200);
    let b: Value = status.json().await.unwrap();
    assert_eq!((b["open"].as_bool(), b["restarts"].as_array().map(Vec::len)), (Some(true), Some(2)), "{b:#}");

    // The fleet list says so too, even once more jobs than it reads per machine (16) have
    // buried the restarts: a machine with an open breaker is never listed as closed.
    for _ in 0..17 {
        run_job(&app, "ipmi_status").await;
    }
    let list: Value = app.signed(Method::GET, "/api/v1/machines", READER).await.json().await.unwrap();
    let listed = list["machines"].as_array().unwrap().iter().find(|m| m["worker_id"] == "bmc-host").unwrap();
    let (listed_until, until) = (listed["breaker_open_until"].as_str(), b["open_until"].as_str().unwrap());
    assert_eq!(listed_until.map(|t| &t[..19]), Some(&until[..19]), "the same instant: {listed:#}");

    // The override: scoped, with a reason, recorded.
    let reset = "/api/v1/workers/bmc-host/breaker/reset";
    assert_eq!(app.signed(Method::POST, &format!("{reset}?reason=looked"), READER).await.status(), 403);
    let r = app.signed(Method::POST, reset, ADMIN).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error_code"], "missing_reason");
    let r = app.signed(Method::POST, &format!("{reset}?reason=reseated%20the%20cartridge"), ADMIN).await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["open"], false, "{b:#}");
    assert!(b["restarts"].as_array().unwrap().is_empty());
    assert_eq!(
        (b["resets"][0]["by"].as_str(), b["resets"][0]["reason"].as_str()),
        (Some("admin"), Some("reseated the cartridge"))
    );
    assert_eq!(app.post_job("bmc-host", "lab", "ipmi_cycle").await.status(), 201);
}

#[tokio::test]
async fn restart_tasks_for_machines_outside_the_inventory_are_refused_at_enqueue() {
    let sim = IpmiSim::start();
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(dir.path(), &sim, sim.password());
    let app = spawn_app_with("", &[("ROLLER_INVENTORY", &inv)]).await;
    let r = app.post_job("not-there", "lab", "reboot").await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error_code"], "not_in_inventory");
    assert!(v["detail"].as_str().unwrap().contains(&inv), "names the inventory: {v}");
    let history = app.signed(Method::GET, "/api/v1/workers/not-there/jobs", ADMIN).await.json::<Value>().await.unwrap();
    assert!(history["jobs"].as_array().unwrap().is_empty(), "nothing was queued: {history}");
}
