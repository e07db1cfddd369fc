//! Standing path checks end to end, against real peers: `ipmi_sim`, net-snmp's `snmpd`
//! as a Sentry3 PDU, OpenSSH's `sshd` (its forced command records every command it is
//! asked to run), sushy-tools' Redfish emulator, the iLO, XenAPI, Bugzilla and
//! Taskcluster stand-ins. Every check is a login and a read: nothing on a peer changes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use chrono::Utc;
use reqwest::Method;
use roller_testkit::inventory::{Class, Ilo, Inventory, Ipmi, Machine, Pdu, Redfish, Ssh};
use roller_testkit::taskcluster::{ACCESS_TOKEN, CLIENT_ID, FakeTaskcluster, Resolution};
use roller_testkit::xen::{FakeXen, VM_UUID};
use serde_json::Value;

use crate::helpers::*;
use crate::peers::bugzilla::FakeBugzilla;
use crate::peers::ilo::FakeIlo;
use crate::peers::ipmi::IpmiSim;
use crate::peers::redfish::SushyBmc;
use crate::peers::snmp::SentryPdu;
use crate::peers::ssh::SshHost;

const MINUTE: Duration = Duration::from_secs(60);
const BUGZILLA_KEY: &str = "bmo-key-canary-1234567890";

async fn get(app: &TestApp, path: &str) -> Value {
    let r = app.signed(Method::GET, path, READER).await;
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn secret(dir: &Path, name: &str, value: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, value).unwrap();
    p
}

/// `roller <args> --url <app>` as `client`: exit code and stdout.
async fn roller_cli(app: &TestApp, client: (&str, &str, &[&str]), args: &[&str]) -> (i32, String) {
    let (url, args): (String, Vec<String>) = (app.url(""), args.iter().map(|a| a.to_string()).collect());
    let (id, token) = (client.0.to_string(), client.1.to_string());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_roller"))
            .args(&args)
            .args(["--url", &url])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TASKCLUSTER_CLIENT_ID", id)
            .env("TASKCLUSTER_ACCESS_TOKEN", token)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// The path of `kind` in a machine's (or the shared) record.
fn path_of<'a>(record: &'a Value, kind: &str) -> &'a Value {
    record["paths"].as_array().and_then(|ps| ps.iter().find(|p| p["kind"] == kind)).unwrap_or(&Value::Null)
}

/// A webhook receiver: the bodies of its deliveries.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let g = g.clone();
            async move {
                assert!(headers.get("x-roller-signature").is_some(), "deliveries are signed");
                g.lock().unwrap().push(serde_json::from_str(&body).unwrap_or(Value::Null));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

#[tokio::test]
async fn every_path_is_proven_by_a_login_and_a_read_and_a_wrong_ipmi_password_fails_alone() {
    let sim = IpmiSim::start();
    let pdu = SentryPdu::start();
    let sshd = SshHost::start();
    let ilo = FakeIlo::start().await;
    let xen = FakeXen::start().await;
    let bmc = SushyBmc::start(false).await;
    let bugzilla = FakeBugzilla::start(BUGZILLA_KEY).await;
    let tc = FakeTaskcluster::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (right, wrong) = (secret(d, "ipmi-right", sim.password()), secret(d, "ipmi-wrong", "not-the-password"));
    let community = secret(d, "community", pdu.community());
    let known = secret(d, "known_hosts", &format!("{}\n", sshd.known_hosts_line()));
    let ilo_pw = secret(d, "ilo", crate::peers::ilo::PASSWORD);
    let redfish_pw = secret(d, "redfish", bmc.password());
    let machine = |name: &str, ipmi_pw: &Path, outlet: &str| {
        Machine::new(name)
            .group("lab")
            .class("lab")
            .address("127.0.0.1")
            .ipmi(Ipmi::new("127.0.0.1", "admin").port(sim.port()).password_file(ipmi_pw))
            .pdu(Pdu::new("127.0.0.1", outlet).port(pdu.port()).community_file(&community))
            .ssh(Ssh::new(sshd.user(), sshd.client_key()).port(sshd.port()).known_hosts(&known))
    };
    let inv = Inventory::new()
        .class(Class::new("lab").ipmi_cipher_suite(3))
        .machine(
            machine("good", &right, "AA1")
                .ilo(
                    Ilo::new("127.0.0.1", crate::peers::ilo::USER)
                        .port(ilo.port)
                        .verify_tls(false)
                        .password_file(&ilo_pw),
                )
                .xen(VM_UUID)
                .redfish(Redfish::new(&bmc.url(), bmc.user()).password_file(&redfish_pw)),
        )
        .machine(machine("badpw", &wrong, "AA2"))
        .write(d);
    let power_before = (sim.power(), pdu.status("1.1.1"), pdu.status("1.1.2"), ilo.power_on(), xen.vm_running(VM_UUID));
    let redfish_before = bmc.power_state().await;
    let app = spawn_app_with(
        "[xen]\ntimeout_secs = 5\n[bugzilla]\ntimeout_secs = 5\n",
        &[
            ("ROLLER_INVENTORY", &inv),
            ("XEN_URL", &xen.url),
            ("XEN_USERNAME", roller_testkit::xen::USER),
            ("XEN_PASSWORD", roller_testkit::xen::PASSWORD),
            ("BUGZILLA_URL", &bugzilla.url),
            ("BUGZILLA_API_KEY", BUGZILLA_KEY),
            ("TASKCLUSTER_ROOT_URL", &tc.root_url),
            ("TASKCLUSTER_CLIENT_ID", CLIENT_ID),
            ("TASKCLUSTER_ACCESS_TOKEN", ACCESS_TOKEN),
        ],
    )
    .await;

    // Asking needs its own scope; reading needs the read scope.
    let r = app.signed(Method::POST, "/api/v1/machines/good/paths/check", READER).await;
    assert_eq!(r.status(), 403);
    let r = app.signed(Method::POST, "/api/v1/machines/not-a-machine/paths/check", ADMIN).await;
    assert_eq!(r.status(), 404);

    // The CLI asks, the server checks, the CLI waits for the results and says what failed.
    let (code, out) = roller_cli(&app, ADMIN, &["paths", "check", "good", "badpw", "--wait-secs", "120"]).await;
    assert_eq!(code, 1, "a failed path is a non-zero exit: {out}");
    let badpw_section = out.split("badpw (class lab)").nth(1).expect("badpw's results").to_string();
    assert!(
        badpw_section
            .lines()
            .any(|l| l.contains("ipmi") && l.contains("FAILED") && l.contains("wrong user name or password")),
        "{out}"
    );

    let good = get(&app, "/api/v1/machines/good/paths").await;
    let last = &good["last"];
    for kind in ["ipmi", "redfish", "pdu", "ssh", "ilo", "xen"] {
        assert_eq!(path_of(last, kind)["outcome"], "ok", "{kind}: {good:#}");
    }
    assert!(path_of(last, "ipmi")["reason"].as_str().unwrap().contains("power"), "{good:#}");
    assert!(path_of(last, "ssh")["reason"].as_str().unwrap().contains("host key matches known_hosts"), "{good:#}");
    assert!(good["no_path"].is_null());
    let bad = get(&app, "/api/v1/machines/badpw/paths").await;
    let ipmi = path_of(&bad["last"], "ipmi");
    assert_eq!(ipmi["outcome"], "failed", "{bad:#}");
    assert!(ipmi["reason"].as_str().unwrap().contains("wrong user name or password"), "{bad:#}");
    assert!(!ipmi["reason"].as_str().unwrap().contains("not-the-password"), "no secret in a reason: {bad:#}");
    assert_eq!(path_of(&bad["last"], "pdu")["outcome"], "ok", "the other paths pass: {bad:#}");
    assert_eq!(path_of(&bad["last"], "ssh")["outcome"], "ok", "{bad:#}");
    assert!(bad["no_path"].is_null(), "ssh still works, so roller still has a way: {bad:#}");

    // roller's shared credentials, checked with the machines.
    let fleet = get(&app, "/api/v1/paths").await;
    let bz = path_of(&fleet["shared"], "bugzilla");
    assert_eq!(bz["outcome"], "ok", "{fleet:#}");
    assert!(bz["reason"].as_str().unwrap().contains("roller@example.com"), "{fleet:#}");
    assert_eq!(path_of(&fleet["shared"], "taskcluster")["outcome"], "ok", "{fleet:#}");
    assert!(bugzilla.violations().is_empty(), "{:?}", bugzilla.violations());

    // Nothing changed anywhere: power, outlets, VMs as they were; only reads arrived.
    let power_after = (sim.power(), pdu.status("1.1.1"), pdu.status("1.1.2"), ilo.power_on(), xen.vm_running(VM_UUID));
    assert_eq!(power_after, power_before);
    assert_eq!(bmc.power_state().await, redfish_before);
    assert!(sim.actions().is_empty(), "no IPMI set: {:?}", sim.actions());
    assert!(pdu.actions().is_empty(), "no outlet SET: {:?}", pdu.actions());
    assert!(bmc.reset_posts().is_empty(), "no Redfish reset");
    assert!(ilo.commands().iter().all(|c| c == "GET_HOST_POWER_STATUS"), "{:?}", ilo.commands());
    assert_eq!(xen.starts(), 0);
    assert_eq!(xen.open_sessions(), 0, "every Xen session was logged out");
    assert!(bugzilla.bugs().is_empty(), "no bug filed");
    // ssh authenticated (sshd says so) and still no session ran a command.
    assert!(sshd.log().contains("Accepted publickey"), "{}", sshd.log());
    assert!(sshd.requests().is_empty(), "no command reached the forced command: {:?}", sshd.requests());

    // `roller explain` shows them too.
    let (code, out) = roller_cli(&app, READER, &["explain", "badpw", "--inventory", &inv]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("path checks: last checked"), "{out}");
    assert!(out.lines().any(|l| l.contains("ipmi") && l.contains("FAILED")), "{out}");
    assert!(out.lines().any(|l| l.contains("ssh") && l.contains(" ok ")), "{out}");
}

/// Quick sweeps and a medic every second that acts.
fn medic_config(tc: &FakeTaskcluster, extra: &str) -> String {
    format!(
        "[health]\nenabled = true\nprobe_every_secs = 5\ntaskcluster_every_secs = 5\npower_every_secs = 60\n\
         taskcluster_root_url = {:?}\n[medic]\nenabled = true\nevery_secs = 1\ndry_run = false\n\
         [paths]\nenabled = true\n{extra}",
        tc.root_url
    )
}

#[tokio::test]
async fn a_machine_with_every_path_broken_is_no_path_the_medic_escalates_and_one_alert_goes_out() {
    const POOL: &str = "releng/t-paths";
    let tc = FakeTaskcluster::start(&[]).await;
    let sim = IpmiSim::start();
    let sshd = SshHost::start();
    let (hook, deliveries) = receiver().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let wrong = secret(d, "ipmi-wrong", "not-the-password");
    // A known_hosts that knows nothing of this sshd: its key is unknown.
    let unknown = secret(d, "known_hosts", "");
    let hook_secret = secret(d, "hook-secret", "paths-hook-secret-0123456789");
    let inv = Inventory::new()
        .class(
            Class::new("silent")
                .reachability(&format!("tcp:{dead}"))
                .reboot(&["ssh_reboot", "ipmi_reset"])
                .ipmi_cipher_suite(3),
        )
        .machine(
            Machine::new("stranded-1")
                .group("lab")
                .class("silent")
                .address("127.0.0.1")
                .pool("releng", "t-paths")
                .ipmi(Ipmi::new("127.0.0.1", "admin").port(sim.port()).password_file(&wrong))
                .ssh(Ssh::new(sshd.user(), sshd.client_key()).port(sshd.port()).known_hosts(&unknown)),
        )
        .write(d);
    // Hung by the rule: silent, its last task ended two hours ago, work waiting.
    let now = Utc::now();
    tc.add_worker(POOL, "lab", "stranded-1", now - chrono::Duration::hours(3));
    let run = tc.claim(POOL, "lab", "stranded-1", now - chrono::Duration::hours(3));
    tc.resolve(&run.task_id, Resolution::Completed, now - chrono::Duration::hours(2));
    tc.set_pending(POOL, 5);
    let notify = format!("[notify]\nwebhook_url = {hook:?}\nwebhook_secret_file = {hook_secret:?}\ntimeout_secs = 2\n");
    let app = spawn_app_with(&medic_config(&tc, &notify), &[("ROLLER_INVENTORY", &inv)]).await;

    // Never checked, so due at once; both of its ways fail, so it is `no_path` in health.
    let health = wait_for(MINUTE, || async {
        let h = get(&app, "/api/v1/machines/stranded-1/health").await;
        (h["state"] == "no_path").then_some(h)
    })
    .await
    .expect("the machine shows as no_path");
    let reason = health["reason"].as_str().unwrap();
    assert!(reason.contains("ipmi failed") && reason.contains("ssh failed"), "{health:#}");
    let ssh = path_of(&health["paths"], "ssh");
    assert!(ssh["reason"].as_str().unwrap().contains("is not in"), "the unknown host key, named: {health:#}");
    // Refused at the host key: no session, no command.
    assert!(sshd.requests().is_empty(), "{:?}", sshd.requests());
    assert!(!sshd.log().contains("Accepted publickey"), "it never got as far as authentication: {}", sshd.log());
    let fleet = get(&app, "/api/v1/health").await;
    let trouble = fleet["trouble"].as_array().unwrap();
    assert!(trouble.iter().any(|t| t["worker_id"] == "stranded-1" && t["state"] == "no_path"), "{fleet:#}");

    // The medic sees it hung, and refuses to queue a futile job: it escalates instead.
    let decision = wait_for(MINUTE, || async {
        let d = get(&app, "/api/v1/medic/decisions").await;
        d["last"]["decisions"]
            .as_array()?
            .iter()
            .find(|x| x["worker_id"] == "stranded-1" && x["gate"] == "no_path")
            .cloned()
    })
    .await
    .expect("the medic decided with the no-path gate");
    assert_eq!(decision["verdict"], "skipped", "{decision:#}");
    assert!(decision["detail"].as_str().unwrap().contains("futile"), "{decision:#}");
    let jobs = get(&app, "/api/v1/workers/stranded-1/jobs").await;
    assert!(jobs["jobs"].as_array().unwrap().is_empty(), "nothing queued: {jobs:#}");
    let medic_alert =
        wait_for(MINUTE, || async { deliveries.lock().unwrap().iter().find(|e| e["event"] == "medic_alert").cloned() })
            .await
            .expect("the medic alerted for a person");
    assert!(
        medic_alert["alerts"].to_string().contains("stranded-1 is hung and roller cannot remediate it"),
        "{medic_alert:#}"
    );

    // One alert for the transition to failed...
    let path_alerts = || {
        deliveries
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == "path_check_failed" && e["subject"] == "stranded-1")
            .cloned()
            .collect::<Vec<_>>()
    };
    let first = wait_for(MINUTE, || async { path_alerts().into_iter().next() }).await.expect("the failure was alerted");
    assert!(!first["no_path"].is_null(), "the alert says roller has no way left: {first:#}");
    // ...and none for the same failures checked again.
    let before = health["paths"]["checked_at"].as_str().unwrap().to_string();
    let r = app.signed(Method::POST, "/api/v1/machines/stranded-1/paths/check", ADMIN).await;
    assert_eq!(r.status(), 202);
    wait_for(MINUTE, || async {
        let p = get(&app, "/api/v1/machines/stranded-1/paths").await;
        (p["last"]["checked_at"].as_str() != Some(before.as_str())).then_some(())
    })
    .await
    .expect("checked again");
    assert_eq!(path_alerts().len(), 1, "one alert per transition, not per check");
    let paths = get(&app, "/api/v1/machines/stranded-1/paths").await;
    assert!(path_of(&paths["last"], "ipmi")["failing_since"].as_str() < paths["last"]["checked_at"].as_str());

    // The gauge and the counters are on /metrics.
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("roller_machines_without_path"), "{metrics}");
    assert!(metrics.contains("roller_path_checks_total{kind=\"ipmi\",outcome=\"failed\"}"), "{metrics}");
    assert!(metrics.contains("roller_health_machines{state=\"no_path\"}"), "{metrics}");
}

#[tokio::test]
async fn the_periodic_check_starts_no_more_than_max_per_minute() {
    let sim = IpmiSim::start();
    let dir = tempfile::tempdir().unwrap();
    let pw = secret(dir.path(), "ipmi", sim.password());
    let mut inv = Inventory::new().class(Class::new("lab").ipmi_cipher_suite(3));
    for i in 0..5 {
        inv = inv.machine(
            Machine::new(&format!("m{i}"))
                .group("lab")
                .class("lab")
                .address("127.0.0.1")
                .ipmi(Ipmi::new("127.0.0.1", "admin").port(sim.port()).password_file(&pw)),
        );
    }
    let inv = inv.write(dir.path());
    let app = spawn_app_with(
        "[paths]\nenabled = true\ninterval_secs = 60\nmax_per_minute = 2\nconcurrency = 4\n",
        &[("ROLLER_INVENTORY", &inv)],
    )
    .await;
    let checked = |f: &Value| f["machines"].as_array().unwrap().iter().filter(|m| !m["last"].is_null()).count();

    // Five machines are due at once (never checked); two may start in a minute.
    let first = wait_for(MINUTE, || async {
        let f = get(&app, "/api/v1/paths").await;
        (checked(&f) == 2 && f["checker"]["waiting_for_rate"].as_u64() >= Some(3)).then_some(f)
    })
    .await
    .expect("two checked, three waiting for the rate");
    // Two more looks later, still two: the minute is not over, whatever else is due.
    let mut seen = first["checker"]["at"].clone();
    for _ in 0..2 {
        let f = wait_for(MINUTE, || async {
            let f = get(&app, "/api/v1/paths").await;
            (f["checker"]["at"] != seen).then_some(f)
        })
        .await
        .expect("the checker looked again");
        assert_eq!(checked(&f), 2, "{f:#}");
        // Three never checked; the two checked may be due again already (a one-minute
        // interval puts their next point within the minute), and wait as well.
        assert!(f["checker"]["waiting_for_rate"].as_u64() >= Some(3), "{f:#}");
        assert_eq!(f["checker"]["last_minute"], 2, "{f:#}");
        seen = f["checker"]["at"].clone();
    }
    // An operator's check is not held to the periodic rate.
    let r = app.signed(Method::POST, "/api/v1/machines/m4/paths/check", ADMIN).await;
    assert_eq!(r.status(), 202);
    let m4 = wait_for(MINUTE, || async {
        let p = get(&app, "/api/v1/machines/m4/paths").await;
        (!p["last"].is_null()).then_some(p)
    })
    .await
    .expect("the asked-for check ran at once");
    assert_eq!(path_of(&m4["last"], "ipmi")["outcome"], "ok", "{m4:#}");
    assert!(sim.actions().is_empty(), "reads only: {:?}", sim.actions());
}

/// The paths that came with the HP Moonshot chassis manager and SimpleMDM: a GET of the
/// node's resource, the device's record; an unenrolled Mac fails its path, a wrong
/// chassis password fails with the chassis named, and nothing but reads arrives.
#[tokio::test]
async fn chassis_manager_and_mdm_paths_are_proven_by_reads_and_an_unenrolled_mac_fails() {
    use roller_testkit::inventory::Moonshot;
    use roller_testkit::moonshot::{FakeChassis, PASSWORD, USER};
    use roller_testkit::simplemdm::{API_KEY, FakeSimpleMdm};
    const MAC: u64 = 4_200_001;
    let chassis = FakeChassis::builder().cartridges(2).start().await;
    let mdm = FakeSimpleMdm::builder().device(MAC, "macmini-m4-90").unenrolled(MAC + 1, "old-mac").start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (right, wrong) = (secret(d, "cm-right", PASSWORD), secret(d, "cm-wrong", "not-the-chassis-password"));
    let node = |c: i64, pw: &Path| {
        Moonshot::new("127.0.0.1", c).user(USER).password_file(pw).port(chassis.port).ca_file(&chassis.ca_file)
    };
    let inv = Inventory::new()
        .class(Class::new("lab"))
        .machine(Machine::new("ms1").group("lab").class("lab").address("127.0.0.1").moonshot(node(1, &right)))
        .machine(Machine::new("ms2").group("lab").class("lab").address("127.0.0.1").moonshot(node(2, &wrong)))
        .machine(Machine::new("mac").group("lab").class("lab").address("127.0.0.1").mdm(MAC))
        .machine(Machine::new("oldmac").group("lab").class("lab").address("127.0.0.1").mdm(MAC + 1))
        .write(d);
    let config = format!("[simplemdm]\napi_url = {:?}\napi_key_env = \"MDM_KEY\"\n", mdm.url);
    let app = spawn_app_with(&config, &[("ROLLER_INVENTORY", &inv), ("MDM_KEY", API_KEY)]).await;

    let (code, out) =
        roller_cli(&app, ADMIN, &["paths", "check", "ms1", "ms2", "mac", "oldmac", "--wait-secs", "120"]).await;
    assert_eq!(code, 1, "two paths failed: {out}");

    let ms1 = get(&app, "/api/v1/machines/ms1/paths").await;
    let p = path_of(&ms1["last"], "moonshot");
    assert_eq!(p["outcome"], "ok", "{ms1:#}");
    assert!(p["reason"].as_str().unwrap().contains("c1n1"), "{ms1:#}");
    let ms2 = get(&app, "/api/v1/machines/ms2/paths").await;
    let p = path_of(&ms2["last"], "moonshot");
    assert_eq!(p["outcome"], "failed", "{ms2:#}");
    assert!(p["reason"].as_str().unwrap().contains("127.0.0.1"), "the chassis is named: {ms2:#}");
    assert!(!ms2.to_string().contains("not-the-chassis-password"), "no secret in a reason: {ms2:#}");
    let mac = get(&app, "/api/v1/machines/mac/paths").await;
    assert_eq!(path_of(&mac["last"], "mdm")["outcome"], "ok", "{mac:#}");
    let old = get(&app, "/api/v1/machines/oldmac/paths").await;
    let p = path_of(&old["last"], "mdm");
    assert_eq!(p["outcome"], "failed", "{old:#}");
    assert!(p["reason"].as_str().unwrap().contains("unenrolled"), "{old:#}");

    // Reads only: no reset, no PATCH, no restart.
    assert!(chassis.requests().iter().all(|r| r.method == "GET"), "{:?}", chassis.calls());
    assert!(mdm.calls().iter().all(|c| c.starts_with("GET ")), "{:?}", mdm.calls());
    assert_eq!(mdm.restarts(MAC), 0);
}
