//! The ipmi driver against a real BMC (OpenIPMI `ipmi_sim`, see `peers::ipmi`)
//! through the real ipmitool: power observed through the BMC's chassis hook,
//! the SEL, wrong credentials, silence, cancellation, and the password kept
//! off argv.

use std::time::{Duration, Instant};

use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use roller::drivers::ipmi::{
    Bridging, IpmiError, IpmiTarget, PowerAction, PowerState, Privilege, SolEnd, SolWindow, boot_pxe, command_args,
    console_tail, power, power_status, sel_entries, sel_list,
};

use crate::helpers::wait_for;
use crate::peers::ipmi::{IpmiSim, USER, free_udp_port};

/// A target for the simulator: cipher suite 3, since ipmi_sim refuses 15–17.
fn target(port: u16, password: &str) -> IpmiTarget {
    let mut t = IpmiTarget::new("127.0.0.1", USER, SecretString::from(password));
    t.port = port;
    t.cipher_suite = 3;
    t.timeout = Duration::from_secs(10);
    t.retries = 1;
    t
}

fn sim_target(sim: &IpmiSim) -> IpmiTarget {
    target(sim.port(), sim.password())
}

/// A port with nothing behind it, small -N/-R and a few seconds' hard limit.
fn silent_target(password: &str) -> IpmiTarget {
    let mut t = target(free_udp_port(), password);
    t.timeout = Duration::from_secs(4);
    t.retries = 1;
    t
}

fn no_cancel() -> CancellationToken {
    CancellationToken::new()
}

#[tokio::test]
async fn status_follows_the_hooks_power_state() {
    let sim = IpmiSim::start();
    let t = sim_target(&sim);
    assert_eq!(power_status(&t, &no_cancel()).await.unwrap(), PowerState::On);
    sim.set_power(false);
    assert_eq!(power_status(&t, &no_cancel()).await.unwrap(), PowerState::Off);
    sim.set_power(true);
    assert_eq!(power_status(&t, &no_cancel()).await.unwrap(), PowerState::On);
    assert!(sim.actions().is_empty(), "status must not set anything: {:?}", sim.actions());
}

#[tokio::test]
async fn off_and_on_change_the_power() {
    let sim = IpmiSim::start();
    let t = sim_target(&sim);
    power(&t, PowerAction::Off, &no_cancel()).await.unwrap();
    assert!(!sim.power());
    assert_eq!(power_status(&t, &no_cancel()).await.unwrap(), PowerState::Off);
    power(&t, PowerAction::On, &no_cancel()).await.unwrap();
    assert!(sim.power());
    assert_eq!(sim.actions(), ["set power 0", "set power 1"]);
}

#[tokio::test]
async fn cycle_is_off_then_on() {
    let sim = IpmiSim::start();
    let t = sim_target(&sim);
    power(&t, PowerAction::Cycle, &no_cancel()).await.unwrap();
    // ipmi_sim powers back on about a second after the off, on its own.
    let actions = wait_for(Duration::from_secs(15), || async {
        let a = sim.actions();
        (a.len() >= 2).then_some(a)
    })
    .await
    .unwrap_or_else(|| panic!("no off+on after a cycle; log: {:?}", sim.action_log()));
    assert_eq!(actions, ["set power 0", "set power 1"]);
    assert!(sim.power());
}

#[tokio::test]
async fn reset_is_a_reset_not_a_power_change() {
    let sim = IpmiSim::start();
    let t = sim_target(&sim);
    power(&t, PowerAction::Reset, &no_cancel()).await.unwrap();
    assert_eq!(sim.actions(), ["set reset 1"]);
    assert!(sim.power());
}

#[tokio::test]
async fn soft_asks_for_a_shutdown_and_pxe_sets_the_boot_device() {
    let sim = IpmiSim::start();
    let t = sim_target(&sim);
    power(&t, PowerAction::Soft, &no_cancel()).await.unwrap();
    boot_pxe(&t, &no_cancel()).await.unwrap();
    assert_eq!(sim.actions(), ["set shutdown 1", "set boot pxe"]);
}

#[tokio::test]
async fn sel_list_returns_the_prefilled_entry() {
    let sim = IpmiSim::start();
    let entries = sel_list(&sim_target(&sim), 15, &no_cancel()).await.unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].contains("Temperature") && entries[0].contains("Lower Non-critical going high"), "{entries:?}");
}

#[tokio::test]
async fn wrong_password_is_an_auth_error() {
    let sim = IpmiSim::start();
    let mut t = sim_target(&sim);
    t.password = SecretString::from("not-the-password");
    for err in [
        power_status(&t, &no_cancel()).await.unwrap_err(),
        power(&t, PowerAction::Off, &no_cancel()).await.unwrap_err(),
        // sel list runs without -v, so this exercises the other classification path.
        sel_list(&t, 5, &no_cancel()).await.unwrap_err(),
    ] {
        assert!(matches!(err, IpmiError::Auth { .. }), "{err:?}");
        assert!(!err.to_string().contains("not-the-password"), "{err}");
        assert!(!err.to_string().contains(sim.password()), "{err}");
    }
    assert!(sim.power(), "a refused session must not change anything");
    assert!(sim.actions().is_empty());
}

#[tokio::test]
async fn wrong_user_is_an_auth_error() {
    let sim = IpmiSim::start();
    let mut t = sim_target(&sim);
    t.user = "nobody".into();
    let err = power_status(&t, &no_cancel()).await.unwrap_err();
    assert!(matches!(err, IpmiError::Auth { .. }), "{err:?}");
}

#[tokio::test]
async fn cipher_suite_zero_is_refused_before_any_process_starts() {
    // ipmi_sim accepts any password with suite 0: the driver must never offer it.
    let sim = IpmiSim::start();
    let mut t = sim_target(&sim);
    t.password = SecretString::from("wrong-but-suite-0");
    t.cipher_suite = 0;
    for err in [
        power(&t, PowerAction::Off, &no_cancel()).await.unwrap_err(),
        power_status(&t, &no_cancel()).await.unwrap_err(),
        sel_list(&t, 1, &no_cancel()).await.unwrap_err(),
    ] {
        assert!(matches!(&err, IpmiError::InvalidTarget(m) if m.contains("cipher suite 0")), "{err:?}");
    }
    assert!(sim.power());
    assert!(sim.actions().is_empty(), "{:?}", sim.actions());
}

#[tokio::test]
async fn invalid_targets_are_refused() {
    let sim = IpmiSim::start();
    for host in ["-oX", "127.0.0.1; reboot", "", "$(id)"] {
        let mut t = sim_target(&sim);
        t.host = host.into();
        let err = power(&t, PowerAction::Off, &no_cancel()).await.unwrap_err();
        assert!(matches!(err, IpmiError::InvalidTarget(_)), "{host:?}: {err:?}");
    }
    let mut t = sim_target(&sim);
    t.password = SecretString::from("x".repeat(21));
    let err = power_status(&t, &no_cancel()).await.unwrap_err();
    assert!(matches!(err, IpmiError::InvalidTarget(_)), "{err:?}");
    assert!(!err.to_string().contains(&"x".repeat(21)), "{err}");
    assert!(sim.actions().is_empty());
}

#[tokio::test]
async fn a_silent_bmc_is_reported_within_a_bound() {
    let t = silent_target("any-password");
    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(30), power_status(&t, &no_cancel()))
        .await
        .expect("the driver's own bounds must end the call")
        .unwrap_err();
    assert!(matches!(err, IpmiError::Unreachable { .. } | IpmiError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    // Same for the path without -v.
    let err = tokio::time::timeout(Duration::from_secs(30), sel_list(&t, 3, &no_cancel()))
        .await
        .expect("the driver's own bounds must end the call")
        .unwrap_err();
    assert!(matches!(err, IpmiError::Unreachable { .. } | IpmiError::Timeout { .. }), "{err:?}");
}

#[tokio::test]
async fn an_unresolvable_bmc_is_unreachable() {
    let mut t = silent_target("any-password");
    t.host = "bmc.does-not-exist.invalid".into();
    let err = power_status(&t, &no_cancel()).await.unwrap_err();
    assert!(matches!(err, IpmiError::Unreachable { .. }), "{err:?}");
}

/// ipmitool children of this test process, as (pid, argv).
fn ipmitool_children() -> Vec<(u32, Vec<u8>)> {
    ipmitool_children_of(std::process::id())
}

/// ipmitool children of process `parent`, as (pid, argv).
pub fn ipmitool_children_of(parent: u32) -> Vec<(u32, Vec<u8>)> {
    let me = parent.to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "<pid> (<comm>) <state> <ppid> …"
            let (head, rest) = stat.rsplit_once(") ")?;
            let ppid = rest.split_whitespace().nth(1)?;
            if !head.ends_with("(ipmitool") || ppid != me {
                return None;
            }
            Some((pid, std::fs::read(format!("/proc/{pid}/cmdline")).ok()?))
        })
        .collect()
}

pub fn argv_has(argv: &[u8], needle: &[u8]) -> bool {
    argv.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn the_password_never_reaches_argv() {
    let password = "argv-canary-Xq81";
    let t = silent_target(password);
    let port_arg = format!("\0{}\0", t.port);
    let call = tokio::spawn({
        let t = t.clone();
        async move { power(&t, PowerAction::Off, &CancellationToken::new()).await }
    });
    let seen = wait_for(Duration::from_secs(10), || async {
        let ours: Vec<_> = ipmitool_children().into_iter().filter(|(_, a)| argv_has(a, port_arg.as_bytes())).collect();
        (!ours.is_empty()).then_some(ours)
    })
    .await
    .expect("the ipmitool child was never seen running");
    let mut environs_checked = 0;
    for (pid, argv) in &seen {
        let shown = String::from_utf8_lossy(argv).replace('\0', " ");
        assert!(!argv_has(argv, password.as_bytes()), "pid {pid} argv holds the password: {shown}");
        assert!(!argv_has(argv, b"\0-P\0"), "pid {pid} uses -P: {shown}");
        assert!(argv_has(argv, b"\0-E\0"), "pid {pid} should read the password from its environment: {shown}");
        // Where it does go: a cleared environment holding only what the driver sets.
        if let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) {
            let mut names: Vec<String> = String::from_utf8_lossy(&environ)
                .split('\0')
                .filter(|v| !v.is_empty())
                .map(|v| v.split('=').next().unwrap_or_default().to_string())
                .collect();
            names.sort();
            assert_eq!(names, ["IPMITOOL_PASSWORD", "LANG", "LC_ALL", "PATH"], "pid {pid}");
            assert!(argv_has(&environ, format!("IPMITOOL_PASSWORD={password}\0").as_bytes()), "pid {pid}");
            environs_checked += 1;
        }
    }
    // The call runs for seconds against a silent port, so its environment was readable.
    assert!(environs_checked > 0, "no ipmitool environment could be read");
    // And no child of ours, for any test, ever carries it.
    for (pid, argv) in ipmitool_children() {
        assert!(!argv_has(&argv, password.as_bytes()), "pid {pid}");
    }
    let err = call.await.unwrap().unwrap_err();
    assert!(!err.to_string().contains(password), "{err}");
}

#[tokio::test]
async fn cancellation_stops_a_call_promptly_and_kills_the_child() {
    let mut t = silent_target("any-password");
    t.timeout = Duration::from_secs(60);
    t.retries = 5;
    let port_arg = format!("\0{}\0", t.port);
    let ours =
        move || ipmitool_children().into_iter().filter(|(_, a)| argv_has(a, port_arg.as_bytes())).collect::<Vec<_>>();
    let cancel = CancellationToken::new();
    let call = tokio::spawn({
        let cancel = cancel.clone();
        async move { power_status(&t, &cancel).await }
    });
    // Cancel once ipmitool runs: then there is a child to kill, and a call that would
    // otherwise go on for minutes against the silent port.
    let children = wait_for(Duration::from_secs(10), || {
        let ours = ours.clone();
        async move { Some(ours()).filter(|c| !c.is_empty()) }
    })
    .await
    .expect("the ipmitool child was never seen running");
    assert!(!call.is_finished(), "the call ended before it was cancelled: {:?}", call.await);
    let cancelled_at = Instant::now();
    cancel.cancel();
    let r = tokio::time::timeout(Duration::from_secs(10), call).await.expect("the call ignored cancellation").unwrap();
    assert!(matches!(r, Err(IpmiError::Cancelled)), "{r:?}");
    assert!(cancelled_at.elapsed() < Duration::from_secs(10), "took {:?} after the cancel", cancelled_at.elapsed());
    // The child seen running is gone (killed, not left to finish its retries), and no
    // other took its place.
    let gone = wait_for(Duration::from_secs(10), || {
        let ours = ours.clone();
        async move { ours().is_empty().then_some(()) }
    })
    .await;
    assert!(
        gone.is_some(),
        "ipmitool children {:?} outlived the cancelled call",
        children.iter().map(|c| c.0).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn an_already_cancelled_token_starts_nothing() {
    let sim = IpmiSim::start();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let r = power(&sim_target(&sim), PowerAction::Off, &cancel).await;
    assert!(matches!(r, Err(IpmiError::Cancelled)), "{r:?}");
    assert!(sim.power());
    assert!(sim.actions().is_empty());
}

#[test]
fn debug_redacts_the_password() {
    let t = target(623, "debug-canary-77");
    let shown = format!("{t:?} {t:#?}");
    assert!(!shown.contains("debug-canary-77"), "{shown}");
    assert!(shown.contains("127.0.0.1") && shown.contains("redacted"), "{shown}");
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn argv_without_bridging() {
    let mut t = target(9623, "argv-secret");
    t.privilege = Privilege::Administrator;
    t.timeout = Duration::from_secs(9);
    t.retries = 2;
    let args = command_args(&t, &["chassis", "power", "status"]);
    assert_eq!(
        strs(&args),
        [
            "-I",
            "lanplus",
            "-H",
            "127.0.0.1",
            "-p",
            "9623",
            "-U",
            "admin",
            "-L",
            "ADMINISTRATOR",
            "-C",
            "3",
            "-N",
            "3",
            "-R",
            "2",
            "-E",
            "chassis",
            "power",
            "status"
        ]
    );
    assert!(!args.iter().any(|a| a.contains("argv-secret")));
}

#[test]
fn argv_with_dual_bridging_matches_moonshot() {
    // The original's Moonshot c1n1: -B 0 -T 0x82 -b 7 -t 0x72.
    let mut t = target(623, "pw");
    t.bridging = Some(Bridging::dual(0, 0x82, 7, 0x72));
    let args = command_args(&t, &["chassis", "power", "reset"]);
    let s = strs(&args);
    let at = s.iter().position(|a| *a == "-B").expect("-B present");
    assert_eq!(s[at..at + 8], ["-B", "0", "-T", "0x82", "-b", "7", "-t", "0x72"]);
    assert_eq!(s[s.len() - 3..], ["chassis", "power", "reset"]);
}

#[test]
fn argv_with_single_bridging_has_no_transit() {
    let mut t = target(623, "pw");
    t.bridging = Some(Bridging::single(0, 0x0a));
    let args = command_args(&t, &["chassis", "power", "status"]);
    let s = strs(&args);
    assert!(!s.contains(&"-B") && !s.contains(&"-T"), "{s:?}");
    let at = s.iter().position(|a| *a == "-b").expect("-b present");
    assert_eq!(s[at..at + 4], ["-b", "0", "-t", "0x0a"]);
}

#[test]
fn defaults_suit_a_real_bmc() {
    let t = IpmiTarget::new("bmc1.example.net", "ops", SecretString::from("pw"));
    assert_eq!((t.port, t.cipher_suite, t.privilege, t.bridging), (623, 17, Privilege::Operator, None));
    assert!(t.validate().is_ok());
}

const LOCKUP: &str = "[ 4021.113370] watchdog: BUG: soft lockup - CPU#3 stuck for 23s! [kworker/3:2:1187]";

fn window(read_for: Duration, max_bytes: usize) -> SolWindow {
    SolWindow { read_for, max_bytes, deadline: tokio::time::Instant::now() + Duration::from_secs(20) }
}

/// `sim.sol_session()` off the runtime (it blocks on the harness's ipmitool).
async fn sol_free(sim: &std::sync::Arc<IpmiSim>) -> Result<String, String> {
    let sim = sim.clone();
    tokio::task::spawn_blocking(move || sim.sol_session()).await.unwrap()
}

#[tokio::test]
async fn the_console_tail_keeps_the_newest_bytes_and_leaves_sol_free() {
    let sim = std::sync::Arc::new(IpmiSim::with_console(&[LOCKUP, "[ 4021.113401] Call Trace:"]));
    let tail = console_tail(&sim_target(&sim), window(Duration::from_secs(2), 512), &no_cancel()).await.unwrap();
    assert!(tail.text.contains("BUG: soft lockup") && tail.text.len() <= 512, "{tail:?}");
    assert!(tail.bytes_dropped > 0 && tail.bytes_read == tail.bytes_dropped + 512, "{tail:?}");
    assert!(tail.read_for >= Duration::from_secs(2), "{tail:?}");
    assert_eq!((tail.ended, tail.was_active), (SolEnd::Clean, false));
    assert!(!tail.text.contains("SOL Session operational") && !tail.text.contains("terminated ipmitool"), "{tail:?}");
    assert!(sol_free(&sim).await.is_ok(), "the capture left the payload active");
}

#[tokio::test]
async fn a_payload_left_active_is_deactivated_first_and_said_so() {
    let sim = std::sync::Arc::new(IpmiSim::with_console(&[LOCKUP]));
    tokio::task::spawn_blocking({
        let sim = sim.clone();
        move || sim.abandon_sol_session()
    })
    .await
    .unwrap();
    let refused = sol_free(&sim).await.unwrap_err();
    assert!(refused.contains("already active"), "the payload is left active: {refused}");
    let tail = console_tail(&sim_target(&sim), window(Duration::from_secs(1), 4096), &no_cancel()).await.unwrap();
    assert!(tail.was_active && tail.text.contains("BUG: soft lockup"), "{tail:?}");
    assert!(sol_free(&sim).await.is_ok());
}

#[tokio::test]
async fn a_capture_dropped_mid_window_still_deactivates_the_payload() {
    let sim = std::sync::Arc::new(IpmiSim::with_console(&[LOCKUP]));
    let t = sim_target(&sim);
    // A time limit drops the capture while it reads: the child is killed with it.
    let dropped = tokio::time::timeout(
        Duration::from_secs(3),
        console_tail(&t, window(Duration::from_secs(30), 4096), &no_cancel()),
    )
    .await;
    assert!(dropped.is_err(), "the capture ended before it was dropped: {dropped:?}");
    let free = wait_for(Duration::from_secs(15), || async { sol_free(&sim).await.ok() }).await;
    assert!(free.is_some(), "the payload stayed active after the dropped capture");
}

#[tokio::test]
async fn a_bmc_without_sol_says_so_and_the_sel_reads_without_side_effects() {
    let sim = IpmiSim::start();
    match console_tail(&sim_target(&sim), window(Duration::from_secs(1), 4096), &no_cancel()).await {
        Err(e @ IpmiError::NoSol { .. }) => assert!(e.to_string().contains("offers no Serial-over-LAN"), "{e}"),
        other => panic!("expected NoSol, got {other:?}"),
    }
    let with_console = IpmiSim::with_console(&[LOCKUP]);
    let t = sim_target(&with_console);
    let newest = sel_entries(&t, 2, &no_cancel()).await.unwrap();
    let events: Vec<String> = newest.iter().map(|e| format!("{} {}", e.sensor, e.event)).collect();
    assert_eq!(events, ["Memory #0x02 Uncorrectable ECC", "Watchdog2 #0x03 Hard reset"]);
    assert_eq!(newest[0].direction, "Asserted");
    assert!(sel_entries(&t, 0, &no_cancel()).await.unwrap().is_empty());
    // Reading the SEL twice gives the same: `sel list` does not rebuild the SDR repository.
    assert_eq!(sel_entries(&t, 2, &no_cancel()).await.unwrap(), newest);
    assert!(with_console.actions().is_empty());
}
