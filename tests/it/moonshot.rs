//! HP Moonshot nodes through the chassis manager stand-in (`roller_testkit::moonshot`):
//! HTTPS with a CA-signed certificate, basic auth, exact bodies, and per-node hosts
//! (loopback listeners) that go silent on a ColdReset and answer again when the node
//! is back on, so the reboot chain's proof watches a real outage. Every job goes
//! through the API, Hawk-signed.

use std::path::Path;
use std::time::Duration;

use roller_testkit::inventory::{Class, Inventory, Machine, Moonshot};
use roller_testkit::moonshot::{FakeChassis, PASSWORD, PowerField, USER};
use serde_json::{Value, json};

use crate::helpers::*;

/// Quick proofs: the stand-in's nodes are off for 4 s on a reset.
const CONFIG: &str = "[reboot]\ndown_timeout_secs = 5\nup_timeout_secs = 15\nprobe_interval_ms = 200\n";
const COLD_RESET: &str = r#"{"Action":"Reset","ResetType":"ColdReset"}"#;

/// How roller is to trust the stand-in's certificate.
#[derive(Clone, Copy)]
enum Trust {
    CaFile,
    Platform,
    Insecure,
}

/// `ms<n>`: cartridge `n` of `chassis`, in a class `ms<n>` that probes the node's host
/// (when the chassis has hosts) and whose chain is `chain`; the credentials and TLS come
/// from the class. Secrets in files beside the inventory; returns its path.
fn inventory(
    dir: &Path,
    chassis: &FakeChassis,
    cartridges: &[i64],
    chain: &[&str],
    password: &str,
    trust: Trust,
) -> String {
    let pw = dir.join("moonshot-password");
    std::fs::write(&pw, format!("{password}\n")).unwrap();
    let mut inv = Inventory::new();
    for &c in cartridges {
        let mut defaults = Moonshot::defaults().user(USER).password_file(&pw).port(chassis.port);
        defaults = match trust {
            Trust::CaFile => defaults.ca_file(&chassis.ca_file),
            Trust::Platform => defaults,
            Trust::Insecure => defaults.verify_tls(false),
        };
        let name = format!("ms{c}");
        let mut class = Class::new(&name).reboot(chain).min_boot_secs(2).moonshot(defaults);
        if let Some(port) = chassis.host_port(c as u8) {
            class = class.reachability(&format!("tcp:{port}"));
        }
        inv = inv.class(class).machine(
            Machine::new(&name).group("lab").class(&name).address("127.0.0.1").moonshot(Moonshot::new("127.0.0.1", c)),
        );
    }
    inv.write(dir)
}

/// Roller on `inventory`, with `config` (TOML) and `env` on top.
async fn start(inventory: &str, config: &str, env: &[(&str, &str)]) -> TestApp {
    let mut all = vec![("ROLLER_INVENTORY", inventory)];
    all.extend_from_slice(env);
    spawn_app_with(config, &all).await
}

/// Queue `task` for `worker` (Hawk-signed) and wait, long enough for a chain, until it ends.
async fn run(app: &TestApp, worker: &str, task: &str) -> Value {
    let r = app.post_job(worker, "lab", task).await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["task_id"].as_str().unwrap().to_string();
    wait_for(Duration::from_secs(120), || async {
        let j = app.get_job(&id).await;
        (j["state"] != "queued" && j["state"] != "running").then_some(j)
    })
    .await
    .expect("the job finished")
}

fn log(job: &Value) -> String {
    job["log"].as_array().unwrap().iter().map(|l| l["line"].as_str().unwrap()).collect::<Vec<_>>().join("\n")
}

fn bodies(chassis: &FakeChassis) -> Vec<String> {
    chassis
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.body.as_ref().map_or(String::new(), Value::to_string)))
        .collect()
}

#[tokio::test]
async fn moonshot_reset_as_a_reboot_step_is_proven_by_the_node_going_down_and_coming_back() {
    let chassis = FakeChassis::builder().cartridges(3).hosts().start().await;
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(dir.path(), &chassis, &[2], &["moonshot_reset"], PASSWORD, Trust::CaFile);
    let app = start(&inv, CONFIG, &[]).await;

    let job = run(&app, "ms2", "reboot").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["worked"], "moonshot_reset");
    let proof = job["result"]["proof"].as_str().unwrap();
    assert!(proof.contains("stopped answering") && proof.contains("answered again"), "{proof}");
    let detail = &job["result"]["attempts"][0]["detail"];
    let chassis_name = format!("127.0.0.1:{}", chassis.port);
    assert_eq!(
        *detail,
        json!({"chassis": chassis_name, "node": "c2n1", "sent": "ColdReset", "power_before": "on", "power": "off"}),
        "{job:#}"
    );
    // Power read, the reset as RelOps sends it, power read back; all over verified TLS.
    assert_eq!(chassis.calls(), ["GET c2n1", "POST c2n1", "GET c2n1"]);
    assert_eq!(bodies(&chassis)[1], format!("POST {COLD_RESET}"));
    assert!(chassis.power_on(2) && !chassis.calls().iter().any(|c| c.ends_with("c1n1") || c.ends_with("c3n1")));
    let lines = log(&job);
    assert!(lines.contains(&format!("sending ColdReset of c2n1 to chassis manager {chassis_name}")), "{lines}");
    assert!(!serde_json::to_string(&job).unwrap().contains(PASSWORD));

    // On its own, the task reports what the chassis manager accepted.
    let job = run(&app, "ms2", "moonshot_reset").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!((job["result"]["sent"].as_str(), job["result"]["node"].as_str()), (Some("ColdReset"), Some("c2n1")));
}

#[tokio::test]
async fn status_reads_the_node_power_or_says_the_chassis_does_not_offer_it() {
    for (field, state, error) in [
        (PowerField::Power, Some("on"), None),
        (PowerField::PowerState, Some("on"), None),
        (PowerField::Absent, None, Some("power state not offered by this chassis manager")),
    ] {
        let chassis = FakeChassis::builder().cartridges(1).hosts().power_field(field).start().await;
        let dir = tempfile::tempdir().unwrap();
        let inv = inventory(dir.path(), &chassis, &[1], &["moonshot_reset"], PASSWORD, Trust::Insecure);
        let app = start(&inv, CONFIG, &[]).await;
        let job = run(&app, "ms1", "status").await;
        assert_eq!(job["state"], "succeeded", "{field:?}: {job:#}");
        let power = &job["result"]["power"];
        assert_eq!(power["source"], "moonshot", "{job:#}");
        assert_eq!((power["state"].as_str(), power["error"].as_str()), (state, error), "{field:?}: {job:#}");
        assert_eq!(job["result"]["answers"], true);
        assert_eq!(chassis.calls(), ["GET c1n1"], "read only");
    }
}

#[tokio::test]
async fn a_wrong_password_fails_naming_the_chassis_and_no_secret_reaches_the_job() {
    let chassis = FakeChassis::builder().cartridges(1).start().await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = "wrong-moonshot-password-31";
    let inv = inventory(dir.path(), &chassis, &[1], &["moonshot_reset"], wrong, Trust::CaFile);
    let app = start(&inv, CONFIG, &[]).await;

    let job = run(&app, "ms1", "moonshot_reset").await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let e = job["error"].as_str().unwrap();
    let want = format!(
        "moonshot_reset: chassis manager 127.0.0.1:{} refused the credentials (HTTP 401) for c1n1: Base.0.10.AccessDenied",
        chassis.port
    );
    assert_eq!(e, want, "{job:#}");
    assert_eq!(chassis.calls(), ["GET c1n1"], "refused at the read: no reset went out");
    let everything = serde_json::to_string(&job).unwrap();
    assert!(!everything.contains(wrong) && !everything.contains(PASSWORD), "{everything}");
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("roller_driver_errors_total{driver=\"moonshot\"}")), "{metrics}");

    // The certificate verified against the platform's roots (no ca_file): refused
    // before any request, with what to do about it.
    let inv = inventory(dir.path(), &chassis, &[1], &["moonshot_reset"], PASSWORD, Trust::Platform);
    let app = start(&inv, CONFIG, &[]).await;
    let job = run(&app, "ms1", "moonshot_reset").await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let e = job["error"].as_str().unwrap();
    assert!(
        e.contains(&format!("cannot reach chassis manager 127.0.0.1:{}", chassis.port)) && e.contains("ca_file"),
        "{e}"
    );
    assert_eq!(chassis.calls().len(), 1, "nothing reached the chassis");
}

/// A full chassis (45 cartridges) reset at once: the chassis manager never sees more
/// than `device_concurrency` requests at once, and every node is reset.
#[tokio::test]
async fn resets_of_a_whole_chassis_keep_to_the_per_chassis_limit() {
    let chassis = FakeChassis::builder().hold(Duration::from_millis(100)).start().await;
    let dir = tempfile::tempdir().unwrap();
    let cartridges: Vec<i64> = (1..=45).collect();
    let inv = inventory(dir.path(), &chassis, &cartridges, &["moonshot_reset"], PASSWORD, Trust::CaFile);
    let config = format!("{CONFIG}[safety]\ndevice_concurrency = 4\npower_on_stagger_ms = 0\n");
    let app = start(&inv, &config, &[]).await;

    let queued = futures_util::future::join_all(cartridges.iter().map(|c| {
        let app = &app;
        async move {
            let r = app.post_job(&format!("ms{c}"), "lab", "moonshot_reset").await;
            assert_eq!(r.status(), 201);
            r.json::<Value>().await.unwrap()["task_id"].as_str().unwrap().to_string()
        }
    }))
    .await;
    for id in &queued {
        let job = app.wait_final(id).await;
        assert_eq!(job["state"], "succeeded", "{job:#}");
    }
    let mut reset: Vec<String> =
        chassis.calls().into_iter().filter_map(|c| c.strip_prefix("POST ").map(str::to_string)).collect();
    reset.sort();
    reset.dedup();
    assert_eq!(reset.len(), 45, "every node once");
    let most = chassis.max_in_flight();
    assert!(most <= 4, "the chassis manager had {most} requests at once");
    assert!(most >= 2, "the jobs ran side by side up to the limit, not one by one ({most})");
}

#[tokio::test]
async fn reimage_sets_the_one_time_pxe_boot_before_the_reset() {
    let chassis = FakeChassis::builder().cartridges(4).hosts().start().await;
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(dir.path(), &chassis, &[4], &["moonshot_reset"], PASSWORD, Trust::CaFile);
    let app = start(&inv, CONFIG, &[]).await;

    let job = run(&app, "ms4", "reimage").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let nb = job["result"]["network_boot"].as_str().unwrap();
    assert!(nb.contains("Moonshot") && nb.contains("PXE (once) for c4n1"), "{nb}");
    assert_eq!(job["result"]["reboot"]["worked"], "moonshot_reset");
    assert_eq!(chassis.calls(), ["PATCH c4n1", "GET c4n1", "POST c4n1", "GET c4n1"], "the override, then the reset");
    let b = bodies(&chassis);
    assert_eq!(b[0], r#"PATCH {"Boot":{"BootSourceOverrideEnabled":"Once","BootSourceOverrideTarget":"PXE"}}"#);
    assert_eq!(b[2], format!("POST {COLD_RESET}"));
    assert_eq!(chassis.pxe_boots(4), 1, "the node came back through the network boot");
}

#[tokio::test]
async fn a_refused_moonshot_reset_escalates_to_the_next_step() {
    let bz = crate::peers::bugzilla::FakeBugzilla::start("bz-key-moonshot-12").await;
    let chassis = FakeChassis::builder().cartridges(6).hosts().start().await;
    chassis.refuse_resets(Some((400, "Base.0.10.ActionNotSupported", &["Reset"])));
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(dir.path(), &chassis, &[6], &["moonshot_reset", "file_bugzilla_bug"], PASSWORD, Trust::CaFile);
    let env = [("BUGZILLA_URL", bz.url.as_str()), ("BUGZILLA_API_KEY", "bz-key-moonshot-12")];
    let app = start(&inv, CONFIG, &env).await;

    let job = run(&app, "ms6", "reboot").await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let e = job["error"].as_str().unwrap();
    assert!(
        e.contains("moonshot_reset failed: chassis manager")
            && e.contains("HTTP 400 to POST c6n1: Base.0.10.ActionNotSupported: Reset")
            && e.contains("file_bugzilla_bug filed")
            && e.contains("Filed "),
        "{e}"
    );
    let bugs = bz.bugs();
    let filed = bugs.iter().find(|b| b.summary.contains("is unreachable")).expect("the unreachable bug");
    assert!(filed.description.contains("ActionNotSupported"), "{}", filed.description);
    assert!(chassis.power_on(6), "the node was left alone");
}

#[tokio::test]
async fn the_health_sweep_reads_a_nodes_power_from_its_chassis_manager() {
    let chassis = FakeChassis::builder().cartridges(2).hosts().start().await;
    chassis.power_off(1);
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(dir.path(), &chassis, &[1, 2], &["moonshot_reset"], PASSWORD, Trust::CaFile);
    let app = start(&inv, "[health]\nenabled = true\nprobe_every_secs = 5\npower_every_secs = 60\n", &[]).await;
    let health = wait_for(Duration::from_secs(60), || async {
        let v: Value = app.signed(reqwest::Method::GET, "/api/v1/health", READER).await.json().await.unwrap();
        (v["trouble"].as_array().map(Vec::len) == Some(1) && v["trouble"][0]["ages"]["power_secs"].is_i64())
            .then_some(v)
    })
    .await
    .expect("the sweep found the node that is off");
    let off = &health["trouble"][0];
    assert_eq!((off["worker_id"].as_str(), off["state"].as_str()), (Some("ms1"), Some("off")), "{health:#}");
    assert!(off["reason"].as_str().unwrap().contains("moonshot reports the power off"), "{health:#}");
    let one: Value =
        app.signed(reqwest::Method::GET, "/api/v1/machines/ms2/health", READER).await.json().await.unwrap();
    assert_eq!(
        (one["state"].as_str(), one["observations"]["power"]["value"]["state"].as_str()),
        (Some("ok"), Some("on")),
        "{one:#}"
    );
    assert!(chassis.calls().iter().all(|c| c.starts_with("GET ")), "the sweep only reads: {:?}", chassis.calls());
}
