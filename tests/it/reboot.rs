//! The reboot chain end to end: the API queues `reboot`, the runner walks the
//! machine's chain against real peers (sshd, ipmi_sim, snmpd), and the proof is
//! a fake host (peers::host) that really stops answering and comes back when,
//! and only when, a peer carried out what roller asked.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use roller_testkit::inventory::{Class, Evidence, Ilo, Inventory, Ipmi, Machine, Pdu, Redfish, Ssh};
use roller_testkit::xen::FakeXen;
use serde_json::Value;

use crate::helpers::*;
use crate::peers::host::{FakeHost, Power};
use crate::peers::ilo::FakeIlo;
use crate::peers::ipmi::{IpmiSim, free_udp_port};
use crate::peers::redfish::SushyBmc;
use crate::peers::relay::Relay;
use crate::peers::snmp::SentryPdu;
use crate::peers::ssh::SshHost;

/// Quick proofs: the fake host reboots in seconds.
pub(crate) const CONFIG: &str = "[reboot]\ndown_timeout_secs = 5\nup_timeout_secs = 15\nprobe_interval_ms = 200\n";
/// The class's `min_boot_secs`: the fake host "boots" in `peers::host::OUTAGE` (4 s),
/// so a proof that times its return from the command accepts it with room to spare.
const MIN_BOOT: u64 = 2;
const OUTLET: &str = "AA3";
const OUTLET_KEY: &str = "1.1.3";

/// What the machine "box" has, for the inventory.
#[derive(Default)]
pub(crate) struct Gear<'a> {
    pub(crate) chain: &'a [&'a str],
    pub(crate) ssh: Option<&'a SshHost>,
    /// (BMC port, password roller is given).
    pub(crate) ipmi: Option<(u16, &'a str)>,
    /// (PDU, community roller is given).
    pub(crate) pdu: Option<(&'a SentryPdu, &'a str)>,
    /// Use this key instead of the one sshd accepts.
    pub(crate) ssh_key: Option<&'a Path>,
    /// Reach sshd through this port (a relay in front of it) instead of its own.
    pub(crate) ssh_port: Option<u16>,
    pub(crate) redfish: Option<&'a SushyBmc>,
    /// The class's `network_boot`.
    pub(crate) network_boot: Option<&'a str>,
    /// A `[xen]` vm_uuid (the stand-in's VM).
    pub(crate) xen: bool,
    /// An `[ilo]` pointing at the stand-in (its password, certificate unchecked).
    pub(crate) ilo: Option<&'a FakeIlo>,
    /// The class's `min_boot_secs`; default [`MIN_BOOT`].
    pub(crate) min_boot: Option<u64>,
    /// The class's `[evidence]`; default roller's.
    pub(crate) evidence: Option<Evidence>,
}

/// Writes the inventory (secrets in files beside it) and returns its path.
pub(crate) fn inventory(dir: &Path, host: &FakeHost, b: &Gear) -> String {
    let secret = |name: &str, value: &str| {
        let p = dir.join(name);
        std::fs::write(&p, format!("{value}\n")).unwrap();
        p
    };
    let mut class = Class::new("lab")
        .reboot(b.chain)
        .reachability(&format!("tcp:{}", host.port()))
        .snmp_reboot_delay_secs(1)
        .min_boot_secs(b.min_boot.unwrap_or(MIN_BOOT))
        .ipmi_cipher_suite(3);
    if let Some(nb) = b.network_boot {
        class = class.network_boot(nb);
    }
    if let Some(e) = &b.evidence {
        class = class.evidence(e.clone());
    }
    let mut m = Machine::new("box").group("lab").class("lab").address("127.0.0.1");
    if let Some(ssh) = b.ssh {
        let port = b.ssh_port.unwrap_or(ssh.port());
        let kh = secret("known_hosts", &ssh.known_hosts_line_for(port));
        let key = b.ssh_key.map(|k| k.to_path_buf()).unwrap_or_else(|| ssh.client_key());
        m = m.ssh(Ssh::new(ssh.user(), key).port(port).known_hosts(kh));
    }
    if let Some((port, password)) = b.ipmi {
        let pw = secret("ipmi-password", password);
        m = m.ipmi(Ipmi::new("127.0.0.1", "admin").port(port).password_file(pw));
    }
    if let Some((pdu, community)) = b.pdu {
        let c = secret("pdu-community", community);
        m = m.pdu(Pdu::new("127.0.0.1", OUTLET).port(pdu.port()).community_file(c));
    }
    if let Some(ilo) = b.ilo {
        let pw = secret("ilo-password", crate::peers::ilo::PASSWORD);
        m = m.ilo(Ilo::new("127.0.0.1", crate::peers::ilo::USER).port(ilo.port).verify_tls(false).password_file(pw));
    }
    if b.xen {
        m = m.xen(roller_testkit::xen::VM_UUID);
    }
    if let Some(bmc) = b.redfish {
        let pw = secret("redfish-password", bmc.password());
        m = m.redfish(Redfish::new(&bmc.url(), bmc.user()).password_file(pw));
    }
    Inventory::new().class(class).machine(m).write(dir)
}

/// Which peers the fake host's power follows. A peer left out is ignored: what
/// it is asked to do does not reach the machine (a broken method).
#[derive(Default, Clone)]
pub(crate) struct Wiring {
    pub(crate) ssh: Option<Arc<SshHost>>,
    pub(crate) ipmi: Option<Arc<IpmiSim>>,
    pub(crate) pdu: Option<Arc<SentryPdu>>,
    pub(crate) redfish: Option<Arc<SushyBmc>>,
    pub(crate) xen: Option<FakeXen>,
    pub(crate) ilo: Option<Arc<FakeIlo>>,
}

pub(crate) fn machine(w: Wiring) -> FakeHost {
    let mut power = Power::new();
    let (mut seen_ssh, mut seen_ipmi, mut seen_pdu, mut seen_redfish, mut seen_ilo) = (0, 0, 0, 0, 0);
    if let Some(sim) = &w.ipmi {
        seen_ipmi = sim.actions().len();
        if !sim.power() {
            power.power_off();
        }
    }
    FakeHost::start(move || {
        if let Some(ssh) = &w.ssh {
            let n = ssh.requests().len();
            if n > seen_ssh {
                power.reboot();
            }
            seen_ssh = n;
        }
        if let Some(sim) = &w.ipmi {
            let actions = sim.actions();
            for a in &actions[seen_ipmi.min(actions.len())..] {
                match a.as_str() {
                    "set reset 1" => power.reboot(),
                    "set power 0" => power.power_off(),
                    _ => {}
                }
            }
            seen_ipmi = actions.len();
            if sim.power() { power.power_on() } else { power.power_off() }
        }
        if let Some(pdu) = &w.pdu {
            let actions = pdu.actions();
            if actions[seen_pdu.min(actions.len())..].iter().any(|a| a.outlet == OUTLET_KEY && a.value != 1) {
                power.power_off();
            }
            seen_pdu = actions.len();
            if pdu.status(OUTLET_KEY) == Some(1) { power.power_on() } else { power.power_off() }
        }
        if let Some(ilo) = &w.ilo {
            let resets = ilo.commands().iter().filter(|c| *c == "RESET_SERVER").count();
            if resets > seen_ilo && ilo.power_on() {
                power.reboot();
            }
            seen_ilo = resets;
            if ilo.power_on() { power.power_on() } else { power.power_off() }
        }
        if let Some(x) = &w.xen {
            if x.running() { power.power_on() } else { power.power_off() }
        }
        if let Some(bmc) = &w.redfish {
            // The emulator's fake driver keeps PowerState On through a restart; a
            // Reset it carried out (204) is the machine rebooting.
            let done = bmc.reset_posts().iter().filter(|s| **s == 204).count();
            if done > seen_redfish {
                power.reboot();
            }
            seen_redfish = done;
        }
        power.answering()
    })
}

/// The app with an inventory (in the temp dir it returns) describing `b` on `host`.
pub(crate) async fn chain_app(host: &FakeHost, b: &Gear<'_>, config: &str) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(dir.path(), host, b);
    (spawn_app_with(config, &[("ROLLER_INVENTORY", &inv)]).await, dir)
}

pub(crate) async fn reboot(app: &TestApp) -> Value {
    run_long(app, "reboot").await
}

/// Queue `task` for "box" and wait (long enough for a chain) until it ends.
pub(crate) async fn run_long(app: &TestApp, task: &str) -> Value {
    let r = app.post_job("box", "lab", task).await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    let id = v["task_id"].as_str().unwrap().to_string();
    wait_for(Duration::from_secs(180), || async {
        let j = app.get_job(&id).await;
        (j["state"] != "queued" && j["state"] != "running").then_some(j)
    })
    .await
    .expect("the reboot job finished")
}

pub(crate) fn log(job: &Value) -> Vec<String> {
    job["log"].as_array().unwrap().iter().map(|l| l["line"].as_str().unwrap().to_string()).collect()
}

pub(crate) fn has(lines: &[String], needle: &str) -> bool {
    lines.iter().any(|l| l.contains(needle))
}

pub(crate) fn outcomes(job: &Value) -> Vec<(String, String)> {
    job["result"]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["step"].as_str().unwrap().to_string(), a["outcome"].as_str().unwrap().to_string()))
        .collect()
}

pub(crate) fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

#[tokio::test]
async fn ssh_reboot_proven_by_the_machine_going_down_and_coming_back() {
    let ssh = Arc::new(SshHost::start());
    let sim = Arc::new(IpmiSim::start());
    let host = machine(Wiring { ssh: Some(ssh.clone()), ipmi: Some(sim.clone()), ..Default::default() });
    host.wait_answering();
    let b = Gear {
        chain: &["ssh_reboot", "ipmi_reset"],
        ssh: Some(&ssh),
        ipmi: Some((sim.port(), sim.password())),
        ..Default::default()
    };
    let (app, _dir) = chain_app(&host, &b, CONFIG).await;

    let job = reboot(&app).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["worked"], "ssh_reboot");
    let proof = job["result"]["proof"].as_str().unwrap();
    assert!(proof.contains("stopped answering") && proof.contains("answered again"), "{proof}");
    assert_eq!(outcomes(&job), [pair("ssh_reboot", "worked")]);
    assert_eq!(ssh.requests(), ["reboot"]);
    assert!(sim.actions().is_empty(), "the chain stopped at the first proven step: {:?}", sim.actions());
    let lines = log(&job);
    assert!(has(&lines, "ssh_reboot: trying") && has(&lines, "ssh_reboot: worked"), "{lines:#?}");
    assert!(host.answering());
}

#[tokio::test]
async fn a_step_without_proof_falls_through_to_the_next() {
    let ssh = Arc::new(SshHost::start());
    let sim = Arc::new(IpmiSim::start());
    // sshd accepts `reboot`, but the machine ignores it (a hung init, say).
    let host = machine(Wiring { ipmi: Some(sim.clone()), ..Default::default() });
    host.wait_answering();
    let b = Gear {
        chain: &["ssh_reboot", "ipmi_reset"],
        ssh: Some(&ssh),
        ipmi: Some((sim.port(), sim.password())),
        ..Default::default()
    };
    let (app, _dir) = chain_app(&host, &b, CONFIG).await;

    let job = reboot(&app).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["worked"], "ipmi_reset");
    assert_eq!(outcomes(&job), [pair("ssh_reboot", "not proven"), pair("ipmi_reset", "worked")]);
    let why = job["result"]["attempts"][0]["reason"].as_str().unwrap();
    assert!(why.contains("did not go down"), "{why}");
    assert_eq!(ssh.requests(), ["reboot"]);
    assert_eq!(sim.actions(), ["set reset 1"]);
}

/// Issue 14: the host takes `reboot` and its network dies mid-shutdown, so the ssh
/// session goes silent (no exit status, no FIN, no RST). The request was sent, so
/// the chain proves it (the host goes down and comes back) instead of failing the
/// step after the command timeout and hard-resetting a host in the middle of its
/// own reboot, as it did.
#[tokio::test]
async fn a_silent_ssh_session_after_reboot_is_proven_not_escalated() {
    let ssh = Arc::new(SshHost::start());
    // The command waits, so no exit status can cross before the blackhole.
    ssh.set_hang(true);
    let relay = Arc::new(Relay::start(ssh.port()).await);
    let seen = ssh.clone();
    relay.blackhole_when(move || !seen.requests().is_empty());
    let sim = Arc::new(IpmiSim::start());
    let host = machine(Wiring { ssh: Some(ssh.clone()), ipmi: Some(sim.clone()), ..Default::default() });
    host.wait_answering();
    let b = Gear {
        chain: &["ssh_reboot", "ipmi_reset"],
        ssh: Some(&ssh),
        ssh_port: Some(relay.port()),
        ipmi: Some((sim.port(), sim.password())),
        ..Default::default()
    };
    let (app, _dir) = chain_app(&host, &b, CONFIG).await;

    let job = reboot(&app).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(outcomes(&job), [pair("ssh_reboot", "worked")], "{job:#}");
    let detail = &job["result"]["attempts"][0]["detail"];
    assert_eq!((detail["session"].as_str(), detail["exit_status"].is_null()), (Some("silent"), true), "{detail}");
    let proof = job["result"]["proof"].as_str().unwrap();
    assert!(proof.contains("stopped answering") && proof.contains("answered again"), "{proof}");
    assert!(sim.actions().is_empty(), "no reset was sent to a host rebooting itself: {:?}", sim.actions());
    assert_eq!(ssh.requests(), ["reboot"], "no fallback command either");
    assert!(has(&log(&job), "`reboot` sent, unconfirmed: the session went silent"), "{:#?}", log(&job));
    assert!(host.answering());
}

/// Issue 14: a slow reboot outlasted UP_TIMEOUT, and the machine came back on its
/// own just after the next step's command. That step did not reboot it (the BMC's
/// reset does not reach this machine here) and must not be credited with "answered
/// again after 1.0s"; it was.
#[tokio::test]
async fn a_slow_reboot_coming_back_during_the_next_step_is_not_that_steps_proof() {
    let ssh = Arc::new(SshHost::start());
    let sim = Arc::new(IpmiSim::start());
    // Down from the ssh request until half a second after the BMC took the reset:
    // the slow reboot ends on its own, shortly after the next step's command.
    let host = {
        let (ssh, sim) = (ssh.clone(), sim.clone());
        let mut back_at: Option<Instant> = None;
        FakeHost::start(move || {
            if back_at.is_none() && sim.actions().iter().any(|a| a == "set reset 1") {
                back_at = Some(Instant::now() + Duration::from_millis(500));
            }
            ssh.requests().is_empty() || back_at.is_some_and(|t| Instant::now() >= t)
        })
    };
    host.wait_answering();
    let b = Gear {
        chain: &["ssh_reboot", "ipmi_reset"],
        ssh: Some(&ssh),
        ipmi: Some((sim.port(), sim.password())),
        // Far above the half second: only the rule can credit it, not the clock.
        min_boot: Some(10),
        ..Default::default()
    };
    let config = "[reboot]\ndown_timeout_secs = 5\nup_timeout_secs = 6\nprobe_interval_ms = 200\n";
    let (app, _dir) = chain_app(&host, &b, config).await;

    let job = reboot(&app).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    // A failed chain's attempts are in its error, one `<step> <outcome>: <why>` each.
    let e = job["error"].as_str().unwrap();
    let (slow, next) = e.split_once("; ipmi_reset ").unwrap_or_else(|| panic!("{e}"));
    assert!(slow.contains("ssh_reboot not proven: ") && slow.contains("did not answer again within 6s"), "{e}");
    assert!(
        next.starts_with("not proven: answered again ")
            && next.contains(
                "after the command: faster than this class can boot (min_boot_secs = 10), so it was not this step's doing"
            ),
        "{e}"
    );
    assert_eq!(sim.actions(), ["set reset 1"]);
    assert!(host.answering(), "it did come back, by itself");
}

/// Issue 14: a BMC that takes a power command and does nothing to the machine (its
/// power state is not the machine's) must never yield "worked". The BMC reads off,
/// `ipmi_reset` powers it on and reads on: a cycle the BMC saw. The machine answered
/// throughout; that was credited as "the power was seen going off and on, it
/// answered again after 0.0s".
#[tokio::test]
async fn a_bmc_whose_power_command_does_nothing_to_the_machine_never_works() {
    let sim = Arc::new(IpmiSim::start());
    sim.set_power(false);
    // Not wired to the BMC: nothing it does reaches this machine.
    let host = machine(Wiring::default());
    host.wait_answering();
    let b = Gear { chain: &["ipmi_reset"], ipmi: Some((sim.port(), sim.password())), ..Default::default() };
    let (app, _dir) = chain_app(&host, &b, CONFIG).await;

    let job = reboot(&app).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let e = job["error"].as_str().unwrap();
    assert!(e.contains("ipmi_reset not proven: ") && e.contains("did not go down"), "{e}");
    assert!(e.contains("power was seen going off and on"), "{e}");
    assert_eq!(sim.actions(), ["set power 1"], "the BMC took the command");
    assert!(host.answering());
}

/// The same BMC-ignores-the-reset, where the machine's link drops for a moment
/// after it (a port flap, a shared NIC renegotiating): an outage shorter than the
/// class can boot is not a reboot. It was credited as one.
#[tokio::test]
async fn an_outage_shorter_than_a_boot_is_not_a_reboot() {
    let sim = Arc::new(IpmiSim::start());
    let host = {
        let sim = sim.clone();
        let mut flap: Option<Instant> = None;
        FakeHost::start(move || {
            if flap.is_none() && !sim.actions().is_empty() {
                flap = Some(Instant::now());
            }
            // Silent for two seconds after the BMC took the reset (long enough for the
            // probes to see it, a fifth of the class's boot time), then answering.
            flap.is_none_or(|t| t.elapsed() >= Duration::from_secs(2))
        })
    };
    host.wait_answering();
    let b = Gear {
        chain: &["ipmi_reset"],
        ipmi: Some((sim.port(), sim.password())),
        min_boot: Some(10),
        ..Default::default()
    };
    let (app, _dir) = chain_app(&host, &b, CONFIG).await;

    let job = reboot(&app).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let e = job["error"].as_str().unwrap();
    assert!(e.contains("ipmi_reset not proven: answered again"), "{e}");
    assert!(e.contains("faster than this class can boot (min_boot_secs = 10)"), "{e}");
    assert!(e.contains("did not go down again within 5s"), "{e}");
    assert!(has(&log(&job), "stopped answering"), "the outage was seen: {:#?}", log(&job));
    assert_eq!(sim.actions(), ["set reset 1"]);
}

#[tokio::test]
async fn steps_without_configuration_are_skipped_and_ipmi_cycle_works() {
    let sim = Arc::new(IpmiSim::start());
    let host = machine(Wiring { ipmi: Some(sim.clone()), ..Default::default() });
    host.wait_answering();
    let b = Gear {
        chain: &["ssh_reboot", "snmp_reboot", "ipmi_cycle", "file_bugzilla_bug"],
        ipmi: Some((sim.port(), sim.password())),
        ..Default::default()
    };
    let (app, _dir) = chain_app(&host, &b, CONFIG).await;

    let job = reboot(&app).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(
        outcomes(&job),
        [pair("ssh_reboot", "skipped"), pair("snmp_reboot", "skipped"), pair("ipmi_cycle", "worked")]
    );
    assert_eq!(job["result"]["attempts"][0]["reason"], "no [ssh] for this machine");
    let lines = log(&job);
    assert!(has(&lines, "ssh_reboot: skipped: no [ssh] for this machine"), "{lines:#?}");
    assert!(has(&lines, "snmp_reboot: skipped: no [pdu] for this machine"), "{lines:#?}");
    assert_eq!(sim.actions(), ["set power 0", "set power 1"]);
}

#[tokio::test]
async fn a_powered_off_machine_is_powered_on_and_that_is_the_proof() {
    let sim = Arc::new(IpmiSim::start());
    sim.set_power(false);
    let host = machine(Wiring { ipmi: Some(sim.clone()), ..Default::default() });
    assert!(!host.answering());
    let b = Gear { chain: &["ipmi_reset"], ipmi: Some((sim.port(), sim.password())), ..Default::default() };
    let (app, _dir) = chain_app(&host, &b, CONFIG).await;

    let job = reboot(&app).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["worked"], "ipmi_reset");
    let proof = job["result"]["proof"].as_str().unwrap();
    assert!(proof.contains("power was seen going off and on") && proof.contains("answered again"), "{proof}");
    // State-aware: on, not a reset of a machine that is off.
    assert_eq!(sim.actions(), ["set power 1"]);
    assert!(has(&log(&job), "powering on instead of ipmi_reset"));
    assert!(host.answering());
}

#[tokio::test]
async fn redfish_restart_and_ipmi_on_steps_are_proven() {
    let bmc = Arc::new(SushyBmc::start(false).await);
    let host = machine(Wiring { redfish: Some(bmc.clone()), ..Default::default() });
    host.wait_answering();
    let dir = tempfile::tempdir().unwrap();
    let b = Gear { chain: &["redfish_restart"], redfish: Some(&bmc), ..Default::default() };
    let inv = inventory(dir.path(), &host, &b);
    let app = spawn_app_with(CONFIG, &[("ROLLER_INVENTORY", &inv)]).await;
    let job = reboot(&app).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["worked"], "redfish_restart");
    assert!(job["result"]["proof"].as_str().unwrap().contains("stopped answering"), "{job:#}");
    assert_eq!(bmc.reset_posts(), [204]);
    drop(app);

    let sim = Arc::new(IpmiSim::start());
    sim.set_power(false);
    let host = machine(Wiring { ipmi: Some(sim.clone()), ..Default::default() });
    let b = Gear { chain: &["ipmi_on"], ipmi: Some((sim.port(), sim.password())), ..Default::default() };
    let inv = inventory(dir.path(), &host, &b);
    let app = spawn_app_with(CONFIG, &[("ROLLER_INVENTORY", &inv)]).await;
    let job = reboot(&app).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["worked"], "ipmi_on");
    assert_eq!(sim.actions(), ["set power 1"]);
    assert!(host.answering());
}

#[tokio::test]
async fn snmp_steps_cycle_the_outlet_and_are_proven() {
    let pdu = Arc::new(SentryPdu::start());
    let host = machine(Wiring { pdu: Some(pdu.clone()), ..Default::default() });
    host.wait_answering();
    let dir = tempfile::tempdir().unwrap();
    for step in ["snmp_reboot", "snmp_rebootdelay"] {
        let b = Gear { chain: &[step], pdu: Some((&pdu, pdu.community())), ..Default::default() };
        let inv = inventory(dir.path(), &host, &b);
        let app = spawn_app_with(CONFIG, &[("ROLLER_INVENTORY", &inv)]).await;
        let before = pdu.actions().len();
        let job = reboot(&app).await;
        assert_eq!(job["state"], "succeeded", "{step}: {job:#}");
        assert_eq!(job["result"]["worked"], step);
        let proof = job["result"]["proof"].as_str().unwrap();
        assert!(proof.contains("power was seen going off and on"), "{proof}");
        let values: Vec<i64> = pdu.actions()[before..].iter().map(|a| a.value).collect();
        assert_eq!(values, if step == "snmp_reboot" { vec![3] } else { vec![2, 1] }, "{step}");
        assert_eq!(pdu.status(OUTLET_KEY), Some(1));
        host.wait_answering();
    }
}

#[tokio::test]
async fn wrong_credentials_fail_each_step_by_name_and_leak_nothing() {
    let ssh = Arc::new(SshHost::start());
    let sim = Arc::new(IpmiSim::start());
    let pdu = Arc::new(SentryPdu::start());
    let host = machine(Wiring {
        ssh: Some(ssh.clone()),
        ipmi: Some(sim.clone()),
        pdu: Some(pdu.clone()),
        ..Default::default()
    });
    host.wait_answering();
    let dir = tempfile::tempdir().unwrap();
    let stranger = dir.path().join("stranger_key");
    let ok = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let (bad_password, bad_community) = ("wrong-ipmi-password-93", "wrong-community-77");
    let b = Gear {
        chain: &["ssh_reboot", "ipmi_reset", "snmp_reboot"],
        ssh: Some(&ssh),
        ssh_key: Some(&stranger),
        ipmi: Some((sim.port(), bad_password)),
        pdu: Some((&pdu, bad_community)),
        ..Default::default()
    };
    let inv = inventory(dir.path(), &host, &b);
    let app = spawn_app_with(CONFIG, &[("ROLLER_INVENTORY", &inv)]).await;

    let job = reboot(&app).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let e = job["error"].as_str().unwrap();
    assert!(e.starts_with("no reboot step worked for box"), "{e}");
    assert!(e.contains("ssh_reboot failed: ") && e.contains("refused the key"), "{e}");
    assert!(e.contains("ipmi_reset failed: ") && e.contains("password"), "{e}");
    assert!(e.contains("snmp_reboot failed: ") && e.contains("wrong community"), "{e}");
    // Nothing was done to the machine.
    assert!(ssh.requests().is_empty() && sim.actions().is_empty() && pdu.actions().is_empty());
    let everything = serde_json::to_string(&job).unwrap();
    for secret in [bad_password, bad_community, sim.password(), pdu.community()] {
        assert!(!everything.contains(secret), "{secret} leaked into the job");
    }
}

#[tokio::test]
async fn a_silent_bmc_costs_a_bounded_time_and_the_chain_goes_on() {
    let ssh = Arc::new(SshHost::start());
    let host = machine(Wiring { ssh: Some(ssh.clone()), ..Default::default() });
    host.wait_answering();
    let dir = tempfile::tempdir().unwrap();
    // A BMC address where nothing answers: every ipmitool packet is lost.
    let b = Gear {
        chain: &["ipmi_reset", "ssh_reboot"],
        ssh: Some(&ssh),
        ipmi: Some((free_udp_port(), "pw")),
        ..Default::default()
    };
    let inv = inventory(dir.path(), &host, &b);
    let app = spawn_app_with(CONFIG, &[("ROLLER_INVENTORY", &inv)]).await;

    let start = Instant::now();
    let job = reboot(&app).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(outcomes(&job), [pair("ipmi_reset", "failed"), pair("ssh_reboot", "worked")]);
    let why = job["result"]["attempts"][0]["reason"].as_str().unwrap();
    assert!(why.contains("127.0.0.1"), "{why}");
    // The driver's bound is 20 s per ipmitool call; the proof after ssh adds seconds.
    assert!(start.elapsed() < Duration::from_secs(60), "took {:?}", start.elapsed());
}

#[tokio::test]
async fn the_chain_stops_before_the_soft_time_limit_with_its_attempt_log() {
    let ssh = Arc::new(SshHost::start());
    let sim = Arc::new(IpmiSim::start());
    // Nothing reaches the machine: every step would wait out its proof.
    let host = machine(Wiring::default());
    host.wait_answering();
    let dir = tempfile::tempdir().unwrap();
    let b = Gear {
        chain: &["ssh_reboot", "ipmi_reset"],
        ssh: Some(&ssh),
        ipmi: Some((sim.port(), sim.password())),
        ..Default::default()
    };
    let inv = inventory(dir.path(), &host, &b);
    // DOWN_TIMEOUT alone would outlast the soft limit.
    let config = "[runner]\npoll_interval_ms = 50\nshutdown_grace_secs = 1\nsoft_time_limit_secs = 25\n\
                  hard_time_limit_secs = 60\n[reboot]\ndown_timeout_secs = 60\nprobe_interval_ms = 200\n";
    let app = spawn_app_with(config, &[("ROLLER_INVENTORY", &inv)]).await;

    let start = Instant::now();
    let job = reboot(&app).await;
    assert!(start.elapsed() < Duration::from_secs(25), "reported before the soft limit: {:?}", start.elapsed());
    assert_eq!(job["state"], "failed", "{job:#}");
    let e = job["error"].as_str().unwrap();
    assert!(e.contains("ssh_reboot not proven") && e.contains("ipmi_reset not tried"), "{e}");
    assert!(e.contains("left before the soft time limit"), "{e}");
    assert!(sim.actions().is_empty(), "ipmi_reset was not started");
}

#[tokio::test]
async fn ssh_and_snmp_tasks_run_on_their_own() {
    let ssh = Arc::new(SshHost::start());
    let pdu = Arc::new(SentryPdu::start());
    let host = machine(Wiring::default());
    let dir = tempfile::tempdir().unwrap();
    let b = Gear { chain: &[], ssh: Some(&ssh), pdu: Some((&pdu, pdu.community())), ..Default::default() };
    let inv = inventory(dir.path(), &host, &b);
    // Four restarts of one machine in a row: above the breaker's default.
    let config = format!("{CONFIG}[safety]\nmax_restarts = 10\n");
    let app = spawn_app_with(&config, &[("ROLLER_INVENTORY", &inv)]).await;
    let run = |task: &'static str| {
        let app = &app;
        async move {
            let r = app.post_job("box", "lab", task).await;
            assert_eq!(r.status(), 201);
            let v: Value = r.json().await.unwrap();
            app.wait_final(v["task_id"].as_str().unwrap()).await
        }
    };

    let job = run("ssh_reboot").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!((job["result"]["command"].as_str(), job["result"]["exit_status"].as_u64()), (Some("reboot"), Some(0)));
    assert_eq!(ssh.requests(), ["reboot"]);

    let job = run("snmp_reboot").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["cycle_observed"], true, "{job:#}");
    let job = run("snmp_rebootdelay").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["delay_secs"], 1);
    let values: Vec<i64> = pdu.actions().iter().map(|a| a.value).collect();
    assert_eq!(values, [3, 2, 1]);

    // An empty chain fails at once, saying so.
    let job = reboot(&app).await;
    assert_eq!(job["state"], "failed");
    assert!(job["error"].as_str().unwrap().contains("its class has no reboot steps"), "{job:#}");
}

/// The rule, checked on a real `roller serve`: while the chain drives an
/// ipmitool child and a PDU, no secret is in the child's argv, the process's
/// log (at debug level) or the job.
#[tokio::test]
async fn a_real_roller_keeps_secrets_out_of_argv_logs_and_jobs() {
    let pdu = Arc::new(SentryPdu::start());
    let host = machine(Wiring { pdu: Some(pdu.clone()), ..Default::default() });
    host.wait_answering();
    let dir = tempfile::tempdir().unwrap();
    let ipmi_password = "canary-5Tq-argv";
    // The first step's BMC is silent, so its ipmitool child lives long enough to inspect.
    let b = Gear {
        chain: &["ipmi_reset", "snmp_reboot"],
        ipmi: Some((free_udp_port(), ipmi_password)),
        pdu: Some((&pdu, pdu.community())),
        ..Default::default()
    };
    let inv = inventory(dir.path(), &host, &b);
    let cfg = dir.path().join("roller.toml");
    std::fs::write(&cfg, base_config(CONFIG)).unwrap();
    let (c, d) = (cfg.display().to_string(), dir.path().display().to_string());
    // Every other secret roller holds is configured too, and its services used where
    // the job allows: Taskcluster notify (roller's token), a webhook (its key; the
    // receiver is down, so the failures are logged), Bugzilla and Xen (keys loaded).
    let q = roller_testkit::taskcluster::FakeTaskcluster::start(&["notify:*"]).await;
    let bz = crate::peers::bugzilla::FakeBugzilla::start("bz-key-canary-77").await;
    let dead_hook = format!("http://127.0.0.1:{}/hook", crate::procs::free_port());
    let env = [
        ("ROLLER_CONFIG", c.as_str()),
        ("ROLLER_DATA_DIR", d.as_str()),
        ("ROLLER_INVENTORY", inv.as_str()),
        ("ROLLER_LOG", "debug"),
        ("TASKCLUSTER_ROOT_URL", q.root_url.as_str()),
        ("TASKCLUSTER_CLIENT_ID", roller_testkit::taskcluster::CLIENT_ID),
        ("TASKCLUSTER_ACCESS_TOKEN", roller_testkit::taskcluster::ACCESS_TOKEN),
        ("NOTIFY_EMAIL", "relops@example.com"),
        ("ROLLER_WEBHOOK_URL", dead_hook.as_str()),
        ("ROLLER_WEBHOOK_SECRET", "webhook-key-canary-0099"),
        ("BUGZILLA_URL", bz.url.as_str()),
        ("BUGZILLA_API_KEY", "bz-key-canary-77"),
        ("XEN_URL", "https://xen.example"),
        ("XEN_USERNAME", "root"),
        ("XEN_PASSWORD", "xen-pw-canary-31"),
    ];
    let roller = crate::procs::start_roller("serve", dir.path(), &env, "roller.log", false);
    let (status, v) = crate::procs::signed(
        roller.url(),
        reqwest::Method::POST,
        "/api/v1/workers/box/group/lab/jobs?task_name=reboot",
        ADMIN,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let id = v["task_id"].as_str().unwrap().to_string();

    let seen = wait_for(Duration::from_secs(30), || async {
        let kids = crate::ipmi::ipmitool_children_of(roller.pid());
        (!kids.is_empty()).then_some(kids)
    })
    .await;
    let Some(seen) = seen else {
        let (_, job) =
            crate::procs::signed(roller.url(), reqwest::Method::GET, &format!("/api/v1/jobs/{id}"), ADMIN).await;
        panic!("roller ran no ipmitool; job: {job:#}; log: {}", std::fs::read_to_string(&roller.log).unwrap());
    };
    for (pid, argv) in &seen {
        let shown = String::from_utf8_lossy(argv).replace('\0', " ");
        assert!(!crate::ipmi::argv_has(argv, ipmi_password.as_bytes()), "pid {pid}: {shown}");
        assert!(crate::ipmi::argv_has(argv, b"\0-E\0"), "pid {pid}: {shown}");
    }

    let job =
        crate::procs::wait_state(roller.url(), ADMIN, &id, &["succeeded", "failed"], Duration::from_secs(120)).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["worked"], "snmp_reboot");
    let log = std::fs::read_to_string(&roller.log).unwrap();
    assert!(log.contains("\"level\":\"DEBUG\"") || log.contains("DEBUG"), "the log is at debug level");
    let job_text = serde_json::to_string(&job).unwrap();
    // The notifications went out (and the webhook failed and was logged) before we read the log.
    wait_for(Duration::from_secs(30), || async {
        let log = std::fs::read_to_string(&roller.log).unwrap_or_default();
        (q.notes().len() >= 2 && log.contains("notification not delivered")).then_some(())
    })
    .await
    .expect("notifications sent and the webhook failure logged");
    let log = std::fs::read_to_string(&roller.log).unwrap();
    let notes = serde_json::to_string(&q.notes()).unwrap();
    for secret in [
        ipmi_password,
        pdu.community(),
        roller_testkit::taskcluster::ACCESS_TOKEN,
        "webhook-key-canary-0099",
        "bz-key-canary-77",
        "xen-pw-canary-31",
    ] {
        assert!(!notes.contains(secret), "{secret} was sent in a notification");
        assert!(!log.contains(secret), "{secret} is in roller's log");
        assert!(!job_text.contains(secret), "{secret} is in the job");
    }
}

#[tokio::test]
async fn reimage_sets_a_network_boot_then_runs_the_chain() {
    let sim = Arc::new(IpmiSim::start());
    let host = machine(Wiring { ipmi: Some(sim.clone()), ..Default::default() });
    host.wait_answering();
    let dir = tempfile::tempdir().unwrap();
    let b = Gear { chain: &["ipmi_reset"], ipmi: Some((sim.port(), sim.password())), ..Default::default() };
    let inv = inventory(dir.path(), &host, &b);
    let app = spawn_app_with(CONFIG, &[("ROLLER_INVENTORY", &inv)]).await;
    let job = run_long(&app, "reimage").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert!(job["result"]["network_boot"].as_str().unwrap().contains("bootdev pxe"), "{job:#}");
    assert_eq!(job["result"]["reboot"]["worked"], "ipmi_reset");
    // The boot device first, then the reboot.
    assert_eq!(sim.actions(), ["set boot pxe", "set reset 1"]);
    drop(app);

    // The class says Redfish; the machine has both.
    let bmc = Arc::new(SushyBmc::start(false).await);
    let b = Gear {
        chain: &["redfish_restart"],
        ipmi: Some((sim.port(), sim.password())),
        redfish: Some(&bmc),
        network_boot: Some("redfish"),
        ..Default::default()
    };
    let host = machine(Wiring { redfish: Some(bmc.clone()), ..Default::default() });
    host.wait_answering();
    let inv = inventory(dir.path(), &host, &b);
    let app = spawn_app_with(CONFIG, &[("ROLLER_INVENTORY", &inv)]).await;
    let before = sim.actions().len();
    let job = run_long(&app, "reimage").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(bmc.system().await["Boot"]["BootSourceOverrideTarget"], "Pxe");
    assert_eq!(sim.actions().len(), before, "IPMI was not used");
    drop(app);

    // Nothing to set a network boot with: a clear refusal, nothing rebooted.
    let ssh = Arc::new(SshHost::start());
    let b = Gear { chain: &["ssh_reboot"], ssh: Some(&ssh), ..Default::default() };
    let inv = inventory(dir.path(), &host, &b);
    let app = spawn_app_with(CONFIG, &[("ROLLER_INVENTORY", &inv)]).await;
    let job = run_long(&app, "reimage").await;
    assert_eq!(job["state"], "failed", "{job:#}");
    assert!(job["error"].as_str().unwrap().contains("neither [ipmi] nor [redfish]"), "{job:#}");
    assert!(ssh.requests().is_empty());
}

#[tokio::test]
async fn xenapi_reboot_step_is_proven_by_the_vm_stopping_and_starting() {
    let x = FakeXen::start().await;
    let host = machine(Wiring { xen: Some(x.clone()), ..Default::default() });
    host.wait_answering();
    let dir = tempfile::tempdir().unwrap();
    let b = Gear { chain: &["ssh_reboot", "xenapi_reboot"], xen: true, ..Default::default() };
    let inv = inventory(dir.path(), &host, &b);
    let config = format!("{CONFIG}[xen]\ndelay_secs = 1\n");
    let env = [
        ("ROLLER_INVENTORY", inv.as_str()),
        ("XEN_URL", x.url.as_str()),
        ("XEN_USERNAME", roller_testkit::xen::USER),
        ("XEN_PASSWORD", roller_testkit::xen::PASSWORD),
    ];
    let app = spawn_app_with(&config, &env).await;
    let job = reboot(&app).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(outcomes(&job), [pair("ssh_reboot", "skipped"), pair("xenapi_reboot", "worked")]);
    let proof = job["result"]["proof"].as_str().unwrap();
    assert!(proof.contains("power was seen going off and on") && proof.contains("answered again"), "{proof}");
    assert!(x.calls().contains(&"VM.start".to_string()));
}

#[tokio::test]
async fn return_loan_lifts_the_quarantine_then_reimages() {
    use roller_testkit::taskcluster::{ACCESS_TOKEN, CLIENT_ID, FakeTaskcluster};
    let q = FakeTaskcluster::start(&["queue:quarantine-worker:*"]).await;
    // The queue quarantines only workers it knows.
    q.add_worker("releng-hardware/t-linux", "lab", "box", chrono::Utc::now());
    let sim = Arc::new(IpmiSim::start());
    let host = machine(Wiring { ipmi: Some(sim.clone()), ..Default::default() });
    host.wait_answering();
    let dir = tempfile::tempdir().unwrap();
    let b = Gear { chain: &["ipmi_reset"], ipmi: Some((sim.port(), sim.password())), ..Default::default() };
    let inv = inventory(dir.path(), &host, &b);
    let env = [
        ("ROLLER_INVENTORY", inv.as_str()),
        ("TASKCLUSTER_ROOT_URL", q.root_url.as_str()),
        ("TASKCLUSTER_CLIENT_ID", CLIENT_ID),
        ("TASKCLUSTER_ACCESS_TOKEN", ACCESS_TOKEN),
    ];
    let app = spawn_app_with(CONFIG, &env).await;
    let path = "/api/v1/workers/box/jobs?task_name=return_loan&worker_group=lab&provisioner_id=releng-hardware&worker_type=t-linux";
    let r = app.signed(reqwest::Method::POST, path, ADMIN).await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["task_id"].as_str().unwrap().to_string();
    let job = wait_for(Duration::from_secs(120), || async {
        let j = app.get_job(&id).await;
        (j["state"] != "queued" && j["state"] != "running").then_some(j)
    })
    .await
    .expect("return_loan finished");
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["quarantine_lifted"], true);
    let qs = q.quarantines();
    assert_eq!(qs.len(), 1);
    assert!(qs[0].until <= chrono::Utc::now() && qs[0].info.contains("Loan returned by admin"), "{qs:?}");
    assert_eq!(sim.actions(), ["set boot pxe", "set reset 1"], "then the reimage");
}

/// The proof watches the machine, not its iLO: the iLO keeps answering
/// throughout, the machine (a different address) goes down and comes back.
#[tokio::test]
async fn ilo_reboot_step_is_proven_on_the_machine_not_the_ilo() {
    let ilo = Arc::new(FakeIlo::start().await);
    let host = machine(Wiring { ilo: Some(ilo.clone()), ..Default::default() });
    host.wait_answering();
    let b = Gear { chain: &["ilo_reboot"], ilo: Some(&ilo), ..Default::default() };
    let (app, _dir) = chain_app(&host, &b, CONFIG).await;
    let job = reboot(&app).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["worked"], "ilo_reboot");
    let proof = job["result"]["proof"].as_str().unwrap();
    assert!(proof.contains("stopped answering") && proof.contains("answered again"), "{proof}");
    assert!(job["log"].to_string().contains(&format!("tcp:{}", host.port())), "probed the machine's port");
    assert_eq!(ilo.commands(), ["GET_HOST_POWER_STATUS", "RESET_SERVER"]);
}

/// BMCs forget an IPMI boot device after about 60 s, so a reimage whose first
/// step did not prove itself sets it again before the next.
#[tokio::test]
async fn reimage_renews_the_ipmi_network_boot_before_each_later_step() {
    let ssh = Arc::new(SshHost::start());
    let sim = Arc::new(IpmiSim::start());
    // sshd takes the request, the machine ignores it: ssh_reboot is not proven.
    let host = machine(Wiring { ipmi: Some(sim.clone()), ..Default::default() });
    host.wait_answering();
    let b = Gear {
        chain: &["ssh_reboot", "ipmi_reset"],
        ssh: Some(&ssh),
        ipmi: Some((sim.port(), sim.password())),
        ..Default::default()
    };
    let (app, _dir) = chain_app(&host, &b, CONFIG).await;
    let job = run_long(&app, "reimage").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["reboot"]["worked"], "ipmi_reset");
    assert_eq!(sim.actions(), ["set boot pxe", "set boot pxe", "set reset 1"], "set, set again, reset");
    assert!(has(&log(&job), "ipmi_reset: setting the network boot again first"), "{:#?}", log(&job));
}
