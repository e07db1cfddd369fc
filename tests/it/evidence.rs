//! Evidence before a power cut, end to end: the API queues a job, the runner takes the
//! evidence before the first step that cuts power, against real peers: `ipmi_sim`
//! serving Serial-over-LAN from a scripted console (a hung kernel's trace) and a SEL
//! seeded with `sel_add`, a BMC address where nothing answers, the Redfish stand-in's
//! log services, and the Bugzilla stand-in that receives the bug.

use std::sync::Arc;

use chrono::DateTime;
use roller_testkit::inventory::{Class, Evidence, Inventory, Ipmi, Machine, Redfish};
use serde_json::Value;

use crate::helpers::*;
use crate::peers::bugzilla::FakeBugzilla;
use crate::peers::ipmi::{IpmiSim, free_udp_port};
use crate::peers::redfish_fake::{self, Entry};
use crate::peers::ssh::SshHost;
use crate::reboot::{CONFIG, Gear, Wiring, chain_app, has, inventory, log, machine, outcomes, pair, reboot, run_long};

/// What the console shows: a soft lockup, over and over, as a hung kernel repeats it.
const TRACE: &[&str] = &[
    "[ 4021.113370] watchdog: BUG: soft lockup - CPU#3 stuck for 23s! [kworker/3:2:1187]",
    "[ 4021.113390] CPU: 3 PID: 1187 Comm: kworker/3:2 Tainted: G             L     6.1.0-18-amd64 #1",
    "[ 4021.113395] RIP: 0010:native_queued_spin_lock_slowpath+0x1f3/0x2c0",
    "[ 4021.113401] Call Trace:",
    "[ 4021.113404]  _raw_spin_lock+0x2c/0x30",
];

/// The trace, plus a line echoing the BMC's password (as a careless login prompt
/// might): it must never reach the job or the bug.
fn console_lines(password: &str) -> Vec<String> {
    let mut lines: Vec<String> = TRACE.iter().map(|l| l.to_string()).collect();
    lines.push(format!("login: {password}"));
    lines
}

fn console_sim() -> Arc<IpmiSim> {
    let lines = console_lines(crate::peers::ipmi::PASSWORD);
    Arc::new(IpmiSim::with_console(&lines.iter().map(String::as_str).collect::<Vec<_>>()))
}

/// "<sensor> <event>" of each SEL record in the evidence.
fn sel_events(ev: &Value) -> Vec<String> {
    ev["sel"]["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("no SEL in {ev:#}"))
        .iter()
        .map(|e| format!("{} {}", e["sensor"].as_str().unwrap(), e["event"].as_str().unwrap()))
        .collect()
}

/// `piece` → why, for each piece the evidence lacks.
fn missing(ev: &Value) -> Vec<(String, String)> {
    ev["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["piece"].as_str().unwrap().to_string(), m["why"].as_str().unwrap().to_string()))
        .collect()
}

fn index_of(lines: &[String], needle: &str) -> usize {
    lines.iter().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("no {needle:?} in {lines:#?}"))
}

/// Seconds between two log lines, by the job's own timestamps.
fn seconds_between(job: &Value, from: usize, to: usize) -> f64 {
    let at = |i: usize| DateTime::parse_from_rfc3339(job["log"][i]["at"].as_str().unwrap()).unwrap();
    (at(to) - at(from)).as_seconds_f64()
}

#[tokio::test]
async fn a_reboot_takes_the_console_and_the_sel_before_its_ipmi_reset() {
    let sim = console_sim();
    let host = machine(Wiring { ipmi: Some(sim.clone()), ..Default::default() });
    host.wait_answering();
    let b = Gear {
        chain: &["ipmi_reset"],
        ipmi: Some((sim.port(), sim.password())),
        evidence: Some(Evidence::new().budget_secs(8).console_secs(2)),
        ..Default::default()
    };
    let (app, _dir) = chain_app(&host, &b, CONFIG).await;

    let job = reboot(&app).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["worked"], "ipmi_reset");
    let ev = &job["result"]["evidence"];
    assert_eq!(ev["before"], "ipmi_reset", "{ev:#}");
    let console = ev["console"]["text"].as_str().unwrap();
    assert!(console.contains("BUG: soft lockup - CPU#3 stuck for 23s!") && console.contains("Call Trace:"), "{ev:#}");
    assert!(console.contains("login: [redacted]"), "the password is scrubbed: {console}");
    assert_eq!(ev["console"]["session_end"], "cleanly", "{ev:#}");
    assert_eq!(ev["console"]["ended_a_session"], false);
    assert!(ev["console"]["seconds"].as_f64().unwrap() >= 1.5, "the window was read: {ev:#}");
    let sel = sel_events(ev);
    assert!(sel.iter().any(|e| e.contains("Memory #0x02") && e.contains("Uncorrectable ECC")), "{sel:?}");
    assert!(sel.iter().any(|e| e.contains("Temperature #0x01")), "{sel:?}");
    assert_eq!(ev["probes"]["icmp"], "answers", "{ev:#}");
    let class_probe = ev["probes"]["tcp"].as_array().unwrap().iter().find(|t| t["port"] == host.port());
    assert_eq!(class_probe.unwrap()["answer"], "accepted", "{ev:#}");
    assert_eq!(missing(ev), [pair("redfish_log", "no [redfish] for this machine")]);
    assert!(ev["seconds"].as_f64().unwrap() <= 8.0, "{ev:#}");

    // Taken before the reset went out, and said in the log.
    let lines = log(&job);
    let taken = index_of(&lines, "evidence before ipmi_reset");
    assert!(taken < index_of(&lines, "sending chassis power reset"), "{lines:#?}");
    assert!(lines[taken].contains("console: ") && lines[taken].contains("SEL: 3 entries"), "{}", lines[taken]);
    assert_eq!(sim.actions(), ["set reset 1"], "one reset, after the evidence");
    let typed = sim.console().received();
    assert!(typed.trim_matches('\r').is_empty(), "roller typed into the console: {typed:?}");
    // The capture left no SOL payload active: an operator opens a session at once.
    let session = tokio::task::spawn_blocking({
        let sim = sim.clone();
        move || sim.sol_session()
    })
    .await
    .unwrap();
    assert!(session.is_ok(), "SOL is still taken after the capture: {session:?}");
    assert!(!job.to_string().contains(sim.password()), "the BMC password is in the job: {job:#}");
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for series in [r#"piece="console",outcome="taken""#, r#"piece="redfish_log",outcome="not_offered""#] {
        assert!(metrics.contains(&format!("roller_evidence_pieces_total{{{series}}}")), "{series}: {metrics}");
    }
}

#[tokio::test]
async fn a_silent_bmc_delays_the_step_by_at_most_the_budget_and_the_evidence_says_why() {
    let ssh = Arc::new(SshHost::start());
    let host = machine(Wiring { ssh: Some(ssh.clone()), ..Default::default() });
    host.wait_answering();
    // A BMC address where nothing answers: every ipmitool packet is lost.
    let b = Gear {
        chain: &["ipmi_reset", "ssh_reboot"],
        ssh: Some(&ssh),
        ipmi: Some((free_udp_port(), "pw")),
        evidence: Some(Evidence::new().budget_secs(5)),
        ..Default::default()
    };
    let (app, _dir) = chain_app(&host, &b, CONFIG).await;

    let job = reboot(&app).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(outcomes(&job), [pair("ipmi_reset", "failed"), pair("ssh_reboot", "worked")]);
    let ev = &job["result"]["evidence"];
    assert_eq!(ev["before"], "ipmi_reset", "{ev:#}");
    let why: Vec<(String, String)> = missing(ev);
    for piece in ["sel", "console"] {
        let (_, w) = why.iter().find(|(p, _)| p == piece).unwrap_or_else(|| panic!("{piece} is not missing: {ev:#}"));
        assert!(w.starts_with("BMC 127.0.0.1 did not answer within"), "{piece}: {w}");
    }
    // What did answer is there: the machine itself, and its ssh server's banner.
    assert_eq!(ev["probes"]["icmp"], "answers");
    let ssh_probe = ev["probes"]["tcp"].as_array().unwrap().iter().find(|t| t["port"] == ssh.port()).unwrap().clone();
    assert_eq!(ssh_probe["answer"], "accepted", "{ev:#}");
    assert!(ssh_probe["banner"].as_str().unwrap().starts_with("SSH-2.0-OpenSSH"), "{ssh_probe}");

    // The budget holds, by the job's own records: the capture's time, and the log's
    // timestamps from the chain's start to the step's start.
    let budget = ev["budget_secs"].as_f64().unwrap();
    assert_eq!(budget, 5.0);
    assert!(ev["seconds"].as_f64().unwrap() <= budget + 0.5, "{ev:#}");
    let lines = log(&job);
    let (start, trying) = (index_of(&lines, "reboot chain for"), index_of(&lines, "ipmi_reset: trying"));
    let added = seconds_between(&job, start, trying);
    // Resolving 127.0.0.1 and the one probe before the step take milliseconds.
    assert!(added <= budget + 2.0, "{added}s between the chain's start and its first step: {lines:#?}");
}

#[tokio::test]
async fn the_bug_the_chain_files_carries_the_evidence_and_so_does_the_failed_job() {
    let sim = console_sim();
    // The machine ignores the BMC: the reset is not proven, and the chain files a bug.
    let host = machine(Wiring::default());
    host.wait_answering();
    let bz = FakeBugzilla::start("bz-evidence-key").await;
    let dir = tempfile::tempdir().unwrap();
    let b = Gear {
        chain: &["ipmi_reset", "file_bugzilla_bug"],
        ipmi: Some((sim.port(), sim.password())),
        evidence: Some(Evidence::new().budget_secs(6).console_secs(2)),
        ..Default::default()
    };
    let inv = inventory(dir.path(), &host, &b);
    let env = [("ROLLER_INVENTORY", inv.as_str()), ("BUGZILLA_URL", &bz.url), ("BUGZILLA_API_KEY", "bz-evidence-key")];
    let app = spawn_app_with(CONFIG, &env).await;

    let job = reboot(&app).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    assert!(job["error"].as_str().unwrap().contains("Filed "), "{job:#}");
    // The job that did not succeed keeps what it found.
    let ev = &job["result"]["evidence"];
    assert_eq!(ev["before"], "ipmi_reset", "{job:#}");
    assert!(ev["console"]["text"].as_str().unwrap().contains("BUG: soft lockup"), "{ev:#}");

    let bug = bz.bugs().into_iter().find(|b| b.summary.ends_with("is unreachable")).expect("the reboot bug");
    let body = &bug.description;
    assert!(body.contains("ipmi_reset not proven"), "the attempt log first: {body}");
    assert!(body.contains("Evidence taken before ipmi_reset"), "{body}");
    assert!(body.contains(&format!("all of it is in roller job {}", job["task_id"].as_str().unwrap())), "{body}");
    assert!(body.contains("BUG: soft lockup - CPU#3 stuck for 23s!"), "{body}");
    assert!(body.contains("Memory #0x02 | Uncorrectable ECC"), "{body}");
    assert!(body.contains("- probes: 127.0.0.1 icmp answers"), "{body}");
    assert!(!body.contains(sim.password()), "the BMC password is in the bug: {body}");
    assert!(body.len() < 16 * 1024, "a bounded excerpt, not the whole record: {} bytes", body.len());
}

/// The Redfish stand-in's log services, through a job: a direct power task takes the
/// evidence too (in its result beside the power report); a read does not.
#[tokio::test]
async fn a_redfish_power_off_takes_the_bmcs_log_entries_first() {
    let bmc = redfish_fake::Bmc {
        event_log: vec![Entry::new("7", "2026-04-01T09:30:00Z", "Critical", "CPU 1 machine check: uncorrectable")],
        sel: vec![Entry::new("s1", "2026-04-01T09:00:00Z", "Warning", "PSU 2 lost input")],
        ..Default::default()
    };
    let (url, state) = redfish_fake::start_with(bmc).await;
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("redfish-password");
    std::fs::write(&pw, redfish_fake::PASSWORD).unwrap();
    let inv = Inventory::new()
        .class(Class::new("lab").evidence(Evidence::new().budget_secs(4).probes(false)))
        .machine(
            Machine::new("box")
                .group("lab")
                .class("lab")
                .address("127.0.0.1")
                .redfish(Redfish::new(&url, "admin").password_file(&pw)),
        )
        .write(dir.path());
    let app = spawn_app_with("", &[("ROLLER_INVENTORY", &inv)]).await;

    let job = run_long(&app, "redfish_off").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["power"], "off", "the power report is still there: {job:#}");
    let ev = &job["result"]["evidence"];
    assert_eq!(ev["before"], "redfish_off");
    let entries: Vec<&str> =
        ev["redfish_log"]["entries"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert_eq!(entries, ["PSU 2 lost input", "CPU 1 machine check: uncorrectable"], "oldest first: {ev:#}");
    assert_eq!(ev["redfish_log"]["bmc"], url);
    assert_eq!(
        missing(ev),
        [
            pair("probes", "disabled for class lab (probes = false)"),
            pair("sel", "no [ipmi] for this machine"),
            pair("console", "no [ipmi] for this machine (the console is read over IPMI SOL)"),
        ]
    );
    assert!(state.lock().unwrap().sessions.is_empty(), "the evidence's session was deleted too");
    assert!(has(&log(&job), "evidence before redfish_off"), "{job:#}");

    let read = run_long(&app, "redfish_status").await;
    assert_eq!(read["state"], "succeeded", "{read:#}");
    assert!(read["result"].get("evidence").is_none(), "a read cuts nothing: {read:#}");
}

#[tokio::test]
async fn a_class_can_turn_evidence_off_and_the_job_says_so() {
    let sim = Arc::new(IpmiSim::start());
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("ipmi-password");
    std::fs::write(&pw, sim.password()).unwrap();
    let inv = Inventory::new()
        .class(Class::new("quiet").ipmi_cipher_suite(3).evidence(Evidence::new().enabled(false)))
        .machine(
            Machine::new("box")
                .group("lab")
                .class("quiet")
                .address("127.0.0.1")
                .ipmi(Ipmi::new("127.0.0.1", "admin").port(sim.port()).password_file(&pw)),
        )
        .write(dir.path());
    let app = spawn_app_with("", &[("ROLLER_INVENTORY", &inv)]).await;

    let job = run_long(&app, "ipmi_off").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let ev = &job["result"]["evidence"];
    let why = missing(ev);
    assert_eq!(why.len(), 4, "{ev:#}");
    assert!(why.iter().all(|(_, w)| w == "disabled for class quiet"), "{why:?}");
    assert!(ev.get("console").is_none() && ev.get("sel").is_none(), "{ev:#}");
    assert_eq!(sim.actions(), ["set power 0"]);
}
