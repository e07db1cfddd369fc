//! `mdm_restart` against testkit's SimpleMDM stand-in, through the API with real Hawk:
//! the restart proven by the Mac (the stand-in's loopback listener) going down and coming
//! back, `Retry-After` honoured, a refused key that appears nowhere, an unknown or
//! unenrolled device, the process-wide cap on calls, and a chain that goes on past a Mac
//! that never came back from its MDM restart to the PDU.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use reqwest::Method;
use roller_testkit::inventory::{Class, Inventory, Machine, Pdu, Ssh};
use roller_testkit::simplemdm::{API_KEY, FakeSimpleMdm, RetryAfter};
use serde_json::Value;

use crate::helpers::*;
use crate::peers::snmp::SentryPdu;
use crate::peers::ssh::SshHost;
use crate::procs::*;

/// Quick proofs: the stand-in's Macs boot in 4 s.
const REBOOT: &str = "[reboot]\ndown_timeout_secs = 5\nup_timeout_secs = 15\nprobe_interval_ms = 200\n";
const MAC: u64 = 4_100_001;
const OUTLET: &str = "AA3";
const OUTLET_KEY: &str = "1.1.3";

/// A class whose probe is Mac `id`'s listener, with `chain`.
fn mac_class(mdm: &FakeSimpleMdm, id: u64, chain: &[&str]) -> Class {
    Class::new("m4")
        .reboot(chain)
        .reachability(&format!("tcp:{}", mdm.port(id)))
        .min_boot_secs(2)
        .snmp_reboot_delay_secs(1)
}

fn mac(name: &str, id: u64) -> Machine {
    Machine::new(name).group("lab").class("m4").address("127.0.0.1").mdm(id)
}

/// Roller in-process with `[simplemdm]` pointing at the stand-in (its key through
/// `api_key_env`), `keys` more of that table, then `config`.
async fn app(mdm: &FakeSimpleMdm, inventory: &str, keys: &str, config: &str) -> TestApp {
    let extra = format!("[simplemdm]\napi_url = {:?}\napi_key_env = \"MDM_KEY\"\n{keys}\n{config}", mdm.url);
    spawn_app_with(&extra, &[("ROLLER_INVENTORY", inventory), ("MDM_KEY", API_KEY)]).await
}

/// Queue `task` on `worker` and wait until it ends (long enough for a chain).
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

fn log(job: &Value) -> Vec<String> {
    job["log"].as_array().unwrap().iter().map(|l| l["line"].as_str().unwrap().to_string()).collect()
}

fn logged(job: &Value, needle: &str) -> bool {
    log(job).iter().any(|l| l.contains(needle))
}

fn outcomes(job: &Value) -> Vec<(String, String)> {
    job["result"]["attempts"]
        .as_array()
        .unwrap_or_else(|| panic!("attempts in {job:#}"))
        .iter()
        .map(|a| (a["step"].as_str().unwrap().to_string(), a["outcome"].as_str().unwrap().to_string()))
        .collect()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

fn get(id: u64) -> String {
    format!("GET /api/v1/devices/{id}")
}

fn restart(id: u64) -> String {
    format!("POST /api/v1/devices/{id}/restart")
}

#[tokio::test]
async fn mdm_restart_in_a_chain_is_proven_by_the_mac_going_down_and_coming_back() {
    let mdm = FakeSimpleMdm::builder().device(MAC, "macmini-m4-81").start().await;
    let dir = tempfile::tempdir().unwrap();
    let inv = Inventory::new()
        .class(mac_class(&mdm, MAC, &["mdm_restart"]))
        .machine(mac("macmini-m4-81", MAC))
        .write(dir.path());
    let app = app(&mdm, &inv, "", REBOOT).await;

    let job = run(&app, "macmini-m4-81", "reboot").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(outcomes(&job), [pair("mdm_restart", "worked")]);
    let proof = job["result"]["proof"].as_str().unwrap();
    assert!(proof.contains("stopped answering") && proof.contains("answered again"), "{proof}");
    let detail = &job["result"]["attempts"][0]["detail"];
    assert_eq!(detail["mdm"], "simplemdm", "{detail}");
    assert_eq!((detail["device_id"].as_u64(), detail["http_status"].as_u64()), (Some(MAC), Some(202)));
    assert_eq!((detail["device_name"].as_str(), detail["status"].as_str()), (Some("macmini-m4-81"), Some("enrolled")));
    assert!(detail["last_seen_at"].is_string(), "{detail}");
    assert_eq!((detail["delivery"].as_str(), detail["restart"].as_str()), (Some("in-band"), Some("queued")));
    let note = detail["note"].as_str().unwrap();
    assert!(note.contains("next MDM check-in") && note.contains("no power is cut"), "{note}");
    assert!(note.contains("goes on to its next step"), "{note}");
    assert!(logged(&job, "in-band, the Mac runs it at its next MDM check-in; no power is cut"), "{:#?}", log(&job));
    assert!(logged(&job, "mdm_restart: worked"), "{:#?}", log(&job));
    assert_eq!(mdm.calls(), [get(MAC), restart(MAC)], "looked up, then restarted once");
    assert_eq!(mdm.restarts(MAC), 1);
    assert!(mdm.answering(MAC));

    // Alone, the task reports what SimpleMDM accepted; proving it is the chain's business.
    let job = run(&app, "macmini-m4-81", "mdm_restart").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(
        (job["result"]["delivery"].as_str(), job["result"]["http_status"].as_u64()),
        (Some("in-band"), Some(202))
    );
    assert_eq!(mdm.restarts(MAC), 2);
}

#[tokio::test]
async fn rate_limits_and_outages_are_retried_no_sooner_than_retry_after_asks() {
    let mdm = FakeSimpleMdm::builder().device(MAC, "macmini-m4-82").start().await;
    let dir = tempfile::tempdir().unwrap();
    let inv = Inventory::new().class(mac_class(&mdm, MAC, &["mdm_restart"])).machine(mac("mac", MAC)).write(dir.path());
    let app = app(&mdm, &inv, "", "").await;
    // A 429 asking for 3 s (longer than the 2 s backoff roller would use unasked), then a
    // 503 asking until an HTTP date (the next whole second at least a second away): the
    // stand-in notes any request that comes sooner.
    mdm.fail_next(1, 429, Some(RetryAfter::Secs(3)));
    mdm.fail_next(1, 503, Some(RetryAfter::Date(1)));
    // The restart too: a 429 says it was not taken, so it is sent again.
    mdm.fail_next_restart(1, 429, Some(RetryAfter::Secs(1)));

    let job = run(&app, "mac", "mdm_restart").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(mdm.scripted_answers(), 3);
    assert_eq!(mdm.early_retries(), Vec::<String>::new(), "no retry came before its Retry-After");
    assert_eq!(mdm.calls(), [get(MAC), get(MAC), get(MAC), restart(MAC), restart(MAC)]);
    assert_eq!(mdm.restarts(MAC), 1);
    assert_eq!(job["result"]["restart"], "queued", "{job:#}");
    let lines = log(&job);
    assert!(
        logged(&job, "answered try 1 with HTTP 429 (rate limited); trying again in 3.0s, as its Retry-After asks"),
        "{lines:#?}"
    );
    assert!(logged(&job, "answered try 2 with HTTP 503; trying again in "), "{lines:#?}");
    assert!(
        logged(&job, "answered try 1 with HTTP 429 (rate limited); trying again in 1.0s, as its Retry-After asks"),
        "the restart's own retry: {lines:#?}"
    );
}

/// A proxy in front of SimpleMDM answers 502 to a restart SimpleMDM did queue. Sending it
/// again would restart the Mac twice; calling it a failure would move the chain on to the
/// PDU under a Mac that is restarting. It is "sent, unconfirmed", and the proof decides.
#[tokio::test]
async fn a_restart_whose_answer_is_lost_is_not_sent_again_and_the_chain_proves_it() {
    let mdm = FakeSimpleMdm::builder().device(MAC, "mac").start().await;
    let dir = tempfile::tempdir().unwrap();
    let inv = Inventory::new().class(mac_class(&mdm, MAC, &["mdm_restart"])).machine(mac("mac", MAC)).write(dir.path());
    let app = app(&mdm, &inv, "", REBOOT).await;
    mdm.lose_next_restart_answer(502);

    let job = run(&app, "mac", "reboot").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(outcomes(&job), [pair("mdm_restart", "worked")]);
    let detail = &job["result"]["attempts"][0]["detail"];
    assert_eq!((detail["restart"].as_str(), detail["http_status"].as_u64()), (Some("unconfirmed"), Some(502)));
    assert!(detail["why_unconfirmed"].as_str().unwrap().contains("HTTP 502 (bad gateway)"), "{detail}");
    assert!(logged(&job, "sent, unconfirmed: HTTP 502"), "{:#?}", log(&job));
    assert_eq!(mdm.calls(), [get(MAC), restart(MAC)], "sent once");
    assert_eq!(mdm.restarts(MAC), 1);
}

#[tokio::test]
async fn a_retry_after_past_the_deadline_or_too_many_failures_end_the_call_without_a_restart() {
    let mdm = FakeSimpleMdm::builder().device(MAC, "mac").start().await;
    let dir = tempfile::tempdir().unwrap();
    let inv = Inventory::new().class(mac_class(&mdm, MAC, &["mdm_restart"])).machine(mac("mac", MAC)).write(dir.path());
    let app = app(&mdm, &inv, "retry_within_secs = 5\n", "").await;

    // Ten minutes is past the call's five seconds: said at once, not waited out.
    mdm.fail_next(1, 429, Some(RetryAfter::Secs(600)));
    let job = run(&app, "mac", "mdm_restart").await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let e = job["error"].as_str().unwrap();
    assert!(e.starts_with("mdm_restart: SimpleMDM GET devices/4100001: HTTP 429 (rate limited) after 1 tries"), "{e}");
    assert!(e.contains("the 600s SimpleMDM asked for (Retry-After) would pass this call's deadline"), "{e}");
    assert_eq!(mdm.calls(), [get(MAC)], "nothing after the refusal");

    // An outage that outlasts every try: six, then it gives up; the restart never went out.
    mdm.fail_next(6, 502, Some(RetryAfter::Secs(0)));
    let job = run(&app, "mac", "mdm_restart").await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let e = job["error"].as_str().unwrap();
    assert!(e.contains("HTTP 502 after 6 tries; SimpleMDM gets at most 6 tries"), "{e}");
    assert_eq!(mdm.calls().len(), 7);
    assert_eq!(mdm.restarts(MAC), 0);
}

#[tokio::test]
async fn an_unknown_or_unenrolled_device_fails_clearly_and_nothing_is_restarted() {
    let mdm = FakeSimpleMdm::builder().device(MAC, "mac").unenrolled(MAC + 1, "old-mac").start().await;
    let dir = tempfile::tempdir().unwrap();
    let inv = Inventory::new()
        .class(mac_class(&mdm, MAC, &["mdm_restart"]))
        .machine(mac("ghost", 999))
        .machine(mac("old", MAC + 1))
        .write(dir.path());
    let app = app(&mdm, &inv, "", "").await;

    let job = run(&app, "ghost", "mdm_restart").await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let e = job["error"].as_str().unwrap();
    assert!(e.contains("SimpleMDM has no device 999") && e.contains("[mdm] device_id"), "{e}");
    assert_eq!(mdm.calls(), [get(999)], "a 404 is not retried");

    let job = run(&app, "old", "mdm_restart").await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let e = job["error"].as_str().unwrap();
    assert!(e.contains(&format!("SimpleMDM device {} (\"old-mac\") is \"unenrolled\"", MAC + 1)), "{e}");
    assert!(e.contains("nothing was asked"), "{e}");
    assert_eq!(mdm.calls(), [get(999), get(MAC + 1)], "no restart was sent");
    assert_eq!(mdm.restarts(MAC + 1), 0);
}

#[tokio::test]
async fn calls_from_every_job_share_the_process_wide_cap() {
    let ids: Vec<u64> = (1..=5).map(|n| MAC + n).collect();
    let mut builder = FakeSimpleMdm::builder();
    for id in &ids {
        builder = builder.device(*id, &format!("mac{id}"));
    }
    let mdm = builder.start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut inv = Inventory::new().class(mac_class(&mdm, ids[0], &["mdm_restart"]));
    for id in &ids {
        inv = inv.machine(mac(&format!("mac{id}"), *id));
    }
    let app = app(&mdm, &inv.write(dir.path()), "max_concurrent = 2\n", "").await;

    // Every request is held at the stand-in, so the calls pile up where the cap makes them wait.
    mdm.hold(true);
    let mut jobs = Vec::new();
    for id in &ids {
        let r = app.post_job(&format!("mac{id}"), "lab", "mdm_restart").await;
        assert_eq!(r.status(), 201);
        jobs.push(r.json::<Value>().await.unwrap()["task_id"].as_str().unwrap().to_string());
    }
    let waiting = wait_for(Duration::from_secs(30), || async {
        let mut n = 0;
        for id in &jobs {
            n += usize::from(logged(&app.get_job(id).await, "waiting for a SimpleMDM slot: all 2"));
        }
        (n == 3 && mdm.in_flight() == 2).then_some(n)
    })
    .await;
    assert_eq!(waiting, Some(3), "two calls at SimpleMDM, three waiting for a slot; in flight: {}", mdm.in_flight());
    mdm.hold(false);
    for id in &jobs {
        let job = app.wait_final(id).await;
        assert_eq!(job["state"], "succeeded", "{job:#}");
    }
    assert_eq!(mdm.max_in_flight(), 2, "never more than simplemdm.max_concurrent at once");
    for id in &ids {
        assert_eq!(mdm.restarts(*id), 1);
    }
}

/// The PDU outlet's state, followed by the Mac's power (what being plugged into it means).
struct Plugged(Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>);

impl Plugged {
    fn start(pdu: Arc<SentryPdu>, mdm: FakeSimpleMdm, id: u64) -> Plugged {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(status) = pdu.status(OUTLET_KEY) {
                    mdm.set_power(id, status == 1);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Plugged(stop, Some(thread))
    }
}

impl Drop for Plugged {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        if let Some(t) = self.1.take() {
            let _ = t.join();
        }
    }
}

/// ssh → MDM → PDU: sshd takes `reboot` but the Mac ignores it, the MDM restart takes
/// the Mac down and it never comes back (a hung boot), and the PDU's power cycle brings
/// it back. The MDM step's failed proof moves the chain on; nothing waits on it.
#[tokio::test]
async fn a_chain_goes_on_past_an_mdm_restart_the_mac_never_came_back_from() {
    let mdm = FakeSimpleMdm::builder().device(MAC, "macmini-m4-83").start().await;
    mdm.set_wedges(MAC, true);
    let ssh = SshHost::start();
    let pdu = Arc::new(SentryPdu::start());
    let _plugged = Plugged::start(pdu.clone(), mdm.clone(), MAC);
    let dir = tempfile::tempdir().unwrap();
    let secret = |name: &str, value: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("{value}\n")).unwrap();
        p
    };
    let known_hosts = secret("known_hosts", &ssh.known_hosts_line_for(ssh.port()));
    let community = secret("community", pdu.community());
    let machine = mac("macmini-m4-83", MAC)
        .ssh(Ssh::new(ssh.user(), ssh.client_key()).port(ssh.port()).known_hosts(&known_hosts))
        .pdu(Pdu::new("127.0.0.1", OUTLET).port(pdu.port()).community_file(&community));
    let inv = Inventory::new()
        .class(mac_class(&mdm, MAC, &["ssh_reboot", "mdm_restart", "snmp_rebootdelay"]))
        .machine(machine)
        .write(dir.path());
    let app = app(&mdm, &inv, "", REBOOT).await;

    let job = run(&app, "macmini-m4-83", "reboot").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(
        outcomes(&job),
        [pair("ssh_reboot", "not proven"), pair("mdm_restart", "not proven"), pair("snmp_rebootdelay", "worked")]
    );
    let step = &job["result"]["attempts"][1];
    assert!(step["reason"].as_str().unwrap().contains("did not answer again within 15s"), "{step}");
    assert_eq!(step["detail"]["delivery"], "in-band", "the step's own report says what it was: {step}");
    assert_eq!(ssh.requests(), ["reboot"]);
    assert_eq!(mdm.restarts(MAC), 1);
    assert!(logged(&job, "mdm_restart: not proven"), "{:#?}", log(&job));
    assert!(mdm.answering(MAC), "the PDU brought it back");
}

fn roller_cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let home = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_roller"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// The real binary, logging at debug: a key SimpleMDM refuses fails the job in words that
/// say which, and neither the key nor its Basic encoding is in the job, the log, `/metrics`
/// or `check-config`.
#[tokio::test]
async fn a_refused_key_fails_clearly_and_is_nowhere_in_the_job_the_log_or_the_config() {
    let mdm = FakeSimpleMdm::builder().device(MAC, "mac").start().await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = "wrong-simplemdm-key-8d1f3a";
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{wrong}:"));
    let inv = Inventory::new().class(mac_class(&mdm, MAC, &["mdm_restart"])).machine(mac("mac", MAC)).write(dir.path());
    let config = dir.path().join("roller.toml");
    let simplemdm = format!("[simplemdm]\napi_url = {:?}\napi_key_env = \"MDM_KEY\"\n", mdm.url);
    std::fs::write(&config, base_config(&simplemdm)).unwrap();
    let (c, d) = (config.display().to_string(), dir.path().join("data").display().to_string());
    let env = [
        ("ROLLER_CONFIG", c.as_str()),
        ("ROLLER_DATA_DIR", d.as_str()),
        ("ROLLER_INVENTORY", inv.as_str()),
        ("MDM_KEY", wrong),
        ("RUST_LOG", "debug"),
    ];
    let roller = start_roller("serve", dir.path(), &env, "roller.log", false);

    let (status, created) =
        signed(roller.url(), Method::POST, "/api/v1/workers/mac/group/lab/jobs?task_name=mdm_restart", ADMIN).await;
    assert_eq!(status, 201, "{created}");
    let id = created["task_id"].as_str().unwrap();
    let job = wait_state(roller.url(), ADMIN, id, &["failed", "succeeded"], Duration::from_secs(60)).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let e = job["error"].as_str().unwrap();
    assert!(e.starts_with("mdm_restart: the SimpleMDM API key was refused (HTTP 401"), "{e}");
    assert_eq!((mdm.unauthorized(), mdm.calls()), (1, vec![get(MAC)]), "a refused key is not tried again");
    let metrics = reqwest::get(format!("{}/metrics", roller.url())).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("roller_driver_errors_total{driver=\"simplemdm\"} 1"), "{metrics}");

    let (_, config_out, config_err) = roller_cli(&["check-config"], &env);
    let log = std::fs::read_to_string(&roller.log).unwrap();
    assert!(log.contains("mdm_restart"), "the log is the job's: {log}");
    for (what, text) in [("job", job.to_string()), ("log", log), ("metrics", metrics), ("check-config", config_out)] {
        assert!(!text.contains(wrong) && !text.contains(&basic), "the key is in the {what}");
    }
    assert!(!config_err.contains(wrong));
}

#[test]
fn explain_and_inventory_check_name_the_mdm_device_and_what_the_step_needs() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/inventory.example.toml");
    let (code, out, err) = roller_cli(&["explain", "macmini-m4-81", "--inventory", example], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let step = out.lines().find(|l| l.contains("2. mdm_restart")).unwrap_or_else(|| panic!("{out}"));
    assert!(step.contains("skipped: no SimpleMDM is configured (SIMPLEMDM_API_KEY"), "{out}");

    let (code, out, err) =
        roller_cli(&["explain", "macmini-m4-81", "--inventory", example], &[("SIMPLEMDM_API_KEY", "k")]);
    assert_eq!(code, 0, "{out}{err}");
    let step = out.lines().find(|l| l.contains("2. mdm_restart")).unwrap_or_else(|| panic!("{out}"));
    assert!(step.contains("runs: SimpleMDM device 1234567 (in-band: runs at the Mac's next MDM check-in"), "{out}");

    let (_, out, _) = roller_cli(&["inventory", "check", example], &[]);
    assert!(out.contains("note: mdm_restart is skipped on 1 machine(s): no SimpleMDM is configured"), "{out}");
}
