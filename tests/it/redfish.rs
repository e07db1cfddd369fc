//! The Redfish driver against sushy-tools' emulator (fake driver): power state,
//! every reset intent with the state change the emulator shows, the ResetType
//! chooser, auth and TLS failures, system selection, PXE once, cancellation.
//!
//! Sessions: sushy-emulator 2.2.0 has no SessionService (its service root lists
//! none and `/redfish/v1/SessionService/Sessions` is 404), so against it the driver
//! takes the basic-auth path; `emulator_offers_no_sessions_so_basic_auth_is_used`
//! pins that fact so the session path's absence here is never silent.

use std::time::{Duration, Instant};

use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use roller::drivers::redfish::{
    PowerState, RedfishError, RedfishTarget, ResetIntent, boot_pxe_once, choose_reset_type, log_entries, power_state,
    reset,
};

use crate::peers::redfish::{SYSTEM_NAME, SYSTEM_UUID, SushyBmc};
use crate::peers::redfish_fake::{self, Entry};
use crate::procs::free_port;

/// Power changes land 1–11 s after the request in the fake driver.
const SETTLE: Duration = Duration::from_secs(40);

fn target(bmc: &SushyBmc) -> RedfishTarget {
    let mut t = RedfishTarget::new(bmc.url(), bmc.user(), SecretString::from(bmc.password()));
    t.timeout = Duration::from_secs(15);
    // The TLS emulator's certificate is self-signed; tests of verification set this back.
    t.verify_tls = false;
    t
}

fn allowed(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn chooser_takes_the_first_allowed_preference() {
    use ResetIntent::*;
    let all = allowed(&["On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "PowerCycle"]);
    for (intent, want) in [
        (GracefulRestart, "GracefulRestart"),
        (ForceRestart, "ForceRestart"),
        (PowerCycle, "PowerCycle"),
        (On, "On"),
        (ForceOff, "ForceOff"),
        (GracefulShutdown, "GracefulShutdown"),
    ] {
        assert_eq!(choose_reset_type(intent, Some(&all)).unwrap(), want, "{intent:?}");
    }
    // Falls down the list.
    assert_eq!(choose_reset_type(GracefulRestart, Some(&allowed(&["On", "ForceRestart"]))).unwrap(), "ForceRestart");
    assert_eq!(choose_reset_type(GracefulRestart, Some(&allowed(&["PowerCycle"]))).unwrap(), "PowerCycle");
    assert_eq!(
        choose_reset_type(ForceRestart, Some(&allowed(&["GracefulRestart", "PowerCycle"]))).unwrap(),
        "PowerCycle"
    );
    assert_eq!(choose_reset_type(PowerCycle, Some(&allowed(&["ForceRestart", "Nmi"]))).unwrap(), "ForceRestart");
    assert_eq!(choose_reset_type(On, Some(&allowed(&["ForceOn", "ForceOff"]))).unwrap(), "ForceOn");
    assert_eq!(choose_reset_type(On, Some(&allowed(&["PushPowerButton"]))).unwrap(), "PushPowerButton");
    // Nothing listed: the first choice goes out.
    assert_eq!(choose_reset_type(ForceOff, None).unwrap(), "ForceOff");
    assert_eq!(choose_reset_type(GracefulRestart, None).unwrap(), "GracefulRestart");
    // Nothing fits: Unsupported, naming what was allowed; "off" never falls back to a toggle or a soft request.
    match choose_reset_type(ForceOff, Some(&allowed(&["GracefulShutdown", "PushPowerButton"]))) {
        Err(RedfishError::Unsupported { intent: ForceOff, allowed }) => {
            assert_eq!(allowed, ["GracefulShutdown", "PushPowerButton"])
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
    assert!(matches!(choose_reset_type(GracefulRestart, Some(&[])), Err(RedfishError::Unsupported { .. })));
    // Case matters in Redfish enums.
    assert!(choose_reset_type(On, Some(&allowed(&["on"]))).is_err());
}

#[test]
fn debug_of_a_target_hides_the_password() {
    let t = RedfishTarget::new("https://bmc.example", "admin", SecretString::from("hunter2-very-secret"));
    let dbg = format!("{t:?}");
    assert!(!dbg.contains("hunter2-very-secret"), "{dbg}");
    assert!(dbg.contains("admin") && dbg.contains("https://bmc.example") && dbg.contains("redacted"), "{dbg}");
    assert!(t.verify_tls, "verification is on by default");
}

#[tokio::test]
async fn invalid_targets_are_refused_before_sending_anything() {
    let cancel = CancellationToken::new();
    for url in
        ["https://admin:pw-in-url@bmc.example", "ftp://bmc.example", "not a url", "https://bmc.example/redfish/v1"]
    {
        let t = RedfishTarget::new(url, "admin", SecretString::from("pw-in-url"));
        match power_state(&t, &cancel).await {
            Err(e @ RedfishError::InvalidTarget(_)) => assert!(!e.to_string().contains("pw-in-url"), "{e}"),
            other => panic!("{url}: expected InvalidTarget, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn power_state_reads_the_emulators_state() {
    let (on, off) = tokio::join!(SushyBmc::start(false), SushyBmc::start_powered(false, "Off"));
    let cancel = CancellationToken::new();
    assert_eq!(on.power_state().await, "On");
    assert_eq!(power_state(&target(&on), &cancel).await.unwrap(), PowerState::On);
    assert_eq!(off.power_state().await, "Off");
    assert_eq!(power_state(&target(&off), &cancel).await.unwrap(), PowerState::Off);
}

#[tokio::test]
async fn force_off_then_on_changes_the_power_state() {
    let bmc = SushyBmc::start(false).await;
    let t = target(&bmc);
    let cancel = CancellationToken::new();

    assert_eq!(reset(&t, ResetIntent::ForceOff, &cancel).await.unwrap(), "ForceOff");
    bmc.wait_power("Off", SETTLE).await;
    assert_eq!(power_state(&t, &cancel).await.unwrap(), PowerState::Off);

    assert_eq!(reset(&t, ResetIntent::On, &cancel).await.unwrap(), "On");
    bmc.wait_power("On", SETTLE).await;
    assert_eq!(power_state(&t, &cancel).await.unwrap(), PowerState::On);
}

#[tokio::test]
async fn graceful_shutdown_turns_the_system_off() {
    let bmc = SushyBmc::start(false).await;
    let cancel = CancellationToken::new();
    assert_eq!(reset(&target(&bmc), ResetIntent::GracefulShutdown, &cancel).await.unwrap(), "GracefulShutdown");
    bmc.wait_power("Off", SETTLE).await;
}

/// Restarts. The fake driver shows Off at once and On 1-11 s later, but that Off can be
/// milliseconds short, so the system starts Off: coming On with no On sent is the restart.
async fn restart_brings_the_system_up(intent: ResetIntent, want_sent: &str) {
    let bmc = SushyBmc::start_powered(false, "Off").await;
    let cancel = CancellationToken::new();
    assert_eq!(reset(&target(&bmc), intent, &cancel).await.unwrap(), want_sent);
    assert_eq!(bmc.reset_posts(), [204], "the emulator accepted exactly one reset");
    bmc.wait_power("On", SETTLE).await;
    assert_eq!(power_state(&target(&bmc), &cancel).await.unwrap(), PowerState::On);
}

#[tokio::test]
async fn graceful_restart_is_sent_as_such_and_the_system_comes_back() {
    restart_brings_the_system_up(ResetIntent::GracefulRestart, "GracefulRestart").await;
}

#[tokio::test]
async fn force_restart_is_sent_as_such_and_the_system_comes_back() {
    restart_brings_the_system_up(ResetIntent::ForceRestart, "ForceRestart").await;
}

/// The emulator lists no PowerCycle (and answers 501 to it), so the chooser falls to ForceRestart.
#[tokio::test]
async fn power_cycle_falls_back_to_an_allowed_force_restart() {
    let bmc = SushyBmc::start(false).await;
    let allowed = bmc.system().await["Actions"]["#ComputerSystem.Reset"]["ResetType@Redfish.AllowableValues"].clone();
    assert!(!allowed.as_array().unwrap().iter().any(|v| v == "PowerCycle"), "{allowed}");
    drop(bmc);
    restart_brings_the_system_up(ResetIntent::PowerCycle, "ForceRestart").await;
}

#[tokio::test]
async fn on_when_already_on_is_accepted_and_stays_on() {
    let bmc = SushyBmc::start(false).await;
    let cancel = CancellationToken::new();
    assert_eq!(reset(&target(&bmc), ResetIntent::On, &cancel).await.unwrap(), "On");
    assert_eq!(bmc.reset_posts(), [204]);
    // The fake driver schedules nothing when the state already matches.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(bmc.power_state().await, "On");
}

#[tokio::test]
async fn wrong_password_is_an_auth_error_and_changes_nothing() {
    let bmc = SushyBmc::start(false).await;
    let mut t = target(&bmc);
    t.password = SecretString::from("definitely-wrong-pw");
    let cancel = CancellationToken::new();
    match reset(&t, ResetIntent::ForceOff, &cancel).await {
        Err(e @ RedfishError::Auth { status: 401, .. }) => {
            let text = format!("{e} {e:?}");
            assert!(!text.contains("definitely-wrong-pw") && !text.contains("Basic "), "{text}");
        }
        other => panic!("expected Auth, got {other:?}"),
    }
    assert!(matches!(power_state(&t, &cancel).await, Err(RedfishError::Auth { status: 401, .. })));
    assert_eq!(bmc.reset_posts(), Vec::<u16>::new(), "no reset was even attempted");
    assert_eq!(bmc.power_state().await, "On");
}

#[tokio::test]
async fn tls_verification_refuses_a_self_signed_bmc_unless_turned_off() {
    let bmc = SushyBmc::start(true).await;
    assert!(bmc.url().starts_with("https://"));
    let cancel = CancellationToken::new();

    let mut strict = target(&bmc);
    strict.verify_tls = true;
    match power_state(&strict, &cancel).await {
        Err(RedfishError::Connect { detail, .. }) => {
            assert!(detail.contains("certificate"), "the cause is named: {detail}")
        }
        other => panic!("expected a Connect (TLS) error, got {other:?}"),
    }
    // Nothing was done with credentials it could not trust the peer with.
    assert!(matches!(reset(&strict, ResetIntent::ForceOff, &cancel).await, Err(RedfishError::Connect { .. })));

    let lax = target(&bmc);
    assert!(!lax.verify_tls);
    assert_eq!(power_state(&lax, &cancel).await.unwrap(), PowerState::On);
    assert_eq!(reset(&lax, ResetIntent::ForceOff, &cancel).await.unwrap(), "ForceOff");
    bmc.wait_power("Off", SETTLE).await;
}

#[tokio::test]
async fn nothing_listening_is_a_prompt_connect_error() {
    let mut t = RedfishTarget::new(format!("http://127.0.0.1:{}", free_port()), "admin", SecretString::from("pw"));
    t.timeout = Duration::from_secs(10);
    let started = Instant::now();
    let r = reset(&t, ResetIntent::ForceRestart, &CancellationToken::new()).await;
    assert!(matches!(r, Err(RedfishError::Connect { .. })), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_silent_bmc_times_out_within_the_target_timeout() {
    // Accepts connections but never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let mut t = RedfishTarget::new(format!("http://{addr}"), "admin", SecretString::from("pw"));
    t.timeout = Duration::from_secs(1);
    let started = Instant::now();
    let r = power_state(&t, &CancellationToken::new()).await;
    assert!(matches!(r, Err(RedfishError::Timeout { .. })), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    hold.abort();
}

#[tokio::test]
async fn cancellation_stops_a_call_promptly() {
    // A BMC that reads a whole request and never answers; it reports each request it got.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<String>();
    let hold = tokio::spawn(async move {
        // Aborting `hold` drops the set, which closes every connection.
        let mut held = tokio::task::JoinSet::new();
        while let Ok((mut s, _)) = listener.accept().await {
            let seen_tx = seen_tx.clone();
            held.spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = s.read(&mut buf).await {
                    got.extend_from_slice(&buf[..n]);
                    if got.windows(4).any(|w| w == b"\r\n\r\n") {
                        let _ = seen_tx.send(String::from_utf8_lossy(&got).lines().next().unwrap_or_default().into());
                        got.clear();
                    }
                }
                // Keep the connection open (silent) until the test ends.
                std::future::pending::<()>().await
            });
        }
    });
    // Without cancellation this call would wait out the default 30 s timeout.
    let t = RedfishTarget::new(format!("http://{addr}"), "admin", SecretString::from("pw"));
    let cancel = CancellationToken::new();
    let call = tokio::spawn({
        let cancel = cancel.clone();
        async move { reset(&t, ResetIntent::ForceOff, &cancel).await }
    });
    // Cancel once the BMC has the first request: the call is then waiting on the BMC.
    let first = tokio::time::timeout(Duration::from_secs(10), seen.recv())
        .await
        .expect("no request reached the BMC within 10 s")
        .expect("the BMC is listening");
    assert!(first.starts_with("GET /redfish/v1/"), "{first}");
    assert!(!call.is_finished(), "the call ended before it was cancelled: {:?}", call.await);
    let cancelled_at = Instant::now();
    cancel.cancel();
    let r = tokio::time::timeout(Duration::from_secs(10), call).await.expect("the call ignored cancellation").unwrap();
    assert!(matches!(r, Err(RedfishError::Cancelled)), "{r:?}");
    assert!(cancelled_at.elapsed() < Duration::from_secs(5), "took {:?} after the cancel", cancelled_at.elapsed());
    hold.abort();
}

#[tokio::test]
async fn emulator_offers_no_sessions_so_basic_auth_is_used() {
    let bmc = SushyBmc::start(false).await;
    let (status, root) = bmc.get("/redfish/v1/").await;
    assert_eq!(status, 200);
    assert!(root.get("SessionService").is_none() && root.pointer("/Links/Sessions").is_none(), "{root}");
    assert_eq!(bmc.get("/redfish/v1/SessionService/Sessions").await.0, 404);
    // The driver works regardless, on basic auth, and no session request reached the emulator.
    assert_eq!(power_state(&target(&bmc), &CancellationToken::new()).await.unwrap(), PowerState::On);
    assert!(!bmc.log().contains("POST /redfish/v1/SessionService"), "{}", bmc.log());
}

#[tokio::test]
async fn the_system_can_be_named_by_id_odata_id_or_alias_and_unknown_is_no_system() {
    let bmc = SushyBmc::start_powered(false, "Off").await;
    let cancel = CancellationToken::new();
    for system in [SYSTEM_UUID.to_string(), format!("/redfish/v1/Systems/{SYSTEM_UUID}"), SYSTEM_NAME.to_string()] {
        let mut t = target(&bmc);
        t.system = Some(system.clone());
        assert_eq!(power_state(&t, &cancel).await.unwrap(), PowerState::Off, "{system}");
    }
    // By name the emulator redirects (307, same host) to the uuid; the reset follows it.
    let mut t = target(&bmc);
    t.system = Some(SYSTEM_NAME.into());
    assert_eq!(reset(&t, ResetIntent::On, &cancel).await.unwrap(), "On");
    bmc.wait_power("On", SETTLE).await;

    t.system = Some("no-such-system".into());
    assert!(matches!(power_state(&t, &cancel).await, Err(RedfishError::NoSystem { .. })));
    t.system = Some("../../etc".into());
    assert!(matches!(power_state(&t, &cancel).await, Err(RedfishError::InvalidTarget(_))));
}

#[tokio::test]
async fn boot_pxe_once_sets_the_boot_override() {
    let bmc = SushyBmc::start(false).await;
    assert_ne!(bmc.system().await["Boot"]["BootSourceOverrideTarget"], "Pxe");
    boot_pxe_once(&target(&bmc), &CancellationToken::new()).await.unwrap();
    // The fake driver records the target (it ignores Once: it always reports Continuous).
    assert_eq!(bmc.system().await["Boot"]["BootSourceOverrideTarget"], "Pxe");
}

/// A real Redfish error from the emulator (power-off disabled answers 400 with an error body):
/// the driver reports the status and the BMC's own message.
#[tokio::test]
async fn a_refused_reset_reports_the_status_and_the_bmcs_message() {
    let bmc = SushyBmc::start_with(false, "On", "SUSHY_EMULATOR_DISABLE_POWER_OFF = True\n").await;
    match reset(&target(&bmc), ResetIntent::ForceOff, &CancellationToken::new()).await {
        Err(RedfishError::Http { status: 400, message, method, .. }) => {
            assert_eq!(method, "POST");
            assert!(message.contains("power off transition"), "{message}");
            assert!(message.chars().count() <= 301, "bounded: {message}");
        }
        other => panic!("expected Http 400, got {other:?}"),
    }
    assert_eq!(bmc.reset_posts(), [400], "one attempt, no retry on 400");
    assert_eq!(bmc.power_state().await, "On");
}

fn session_target(url: &str) -> RedfishTarget {
    let mut t = RedfishTarget::new(url, "admin", SecretString::from(redfish_fake::PASSWORD));
    t.timeout = Duration::from_secs(10);
    t
}

#[tokio::test]
async fn a_session_is_used_when_offered_and_deleted_afterwards() {
    let (url, bmc) = redfish_fake::start(0).await;
    let cancel = CancellationToken::new();
    // GracefulRestart is not allowed there: it falls to ForceRestart.
    assert_eq!(reset(&session_target(&url), ResetIntent::GracefulRestart, &cancel).await.unwrap(), "ForceRestart");
    assert_eq!(power_state(&session_target(&url), &cancel).await.unwrap(), PowerState::Off);
    let b = bmc.lock().unwrap();
    assert_eq!(b.created, 2, "one session per call");
    assert!(b.sessions.is_empty(), "every session was deleted: {:?}", b.sessions.keys());
    assert_eq!(b.basic_requests, 0, "only the token was sent once a session existed");
    assert_eq!(b.reset_bodies.len(), 1);
    assert!(b.reset_bodies[0].contains("\"ForceRestart\""), "{}", b.reset_bodies[0]);
}

#[tokio::test]
async fn the_session_is_deleted_even_when_the_operation_fails() {
    let (url, bmc) = redfish_fake::start(0).await;
    let mut t = session_target(&url);
    t.system = Some("missing".into());
    let r = reset(&t, ResetIntent::ForceOff, &CancellationToken::new()).await;
    assert!(matches!(r, Err(RedfishError::NoSystem { .. })), "{r:?}");
    // GracefulShutdown is not allowed and has no fallback.
    let r = reset(&session_target(&url), ResetIntent::GracefulShutdown, &CancellationToken::new()).await;
    assert!(matches!(r, Err(RedfishError::Unsupported { intent: ResetIntent::GracefulShutdown, .. })), "{r:?}");
    let b = bmc.lock().unwrap();
    assert_eq!(b.created, 2);
    assert!(b.sessions.is_empty(), "{:?}", b.sessions.keys());
    assert!(b.reset_bodies.is_empty());
}

#[tokio::test]
async fn a_refused_session_login_is_an_auth_error() {
    let (url, bmc) = redfish_fake::start(0).await;
    let mut t = session_target(&url);
    t.password = SecretString::from("wrong-session-pw");
    match power_state(&t, &CancellationToken::new()).await {
        Err(e @ RedfishError::Auth { status: 401, .. }) => assert!(!format!("{e:?}").contains("wrong-session-pw")),
        other => panic!("expected Auth, got {other:?}"),
    }
    assert_eq!(bmc.lock().unwrap().created, 0);
}

#[tokio::test]
async fn on_is_retried_on_409_and_other_intents_are_not() {
    let (url, bmc) = redfish_fake::start(2).await;
    let cancel = CancellationToken::new();
    assert_eq!(reset(&session_target(&url), ResetIntent::On, &cancel).await.unwrap(), "On");
    assert_eq!(bmc.lock().unwrap().reset_bodies.len(), 3, "two 409s, then accepted");

    bmc.lock().unwrap().conflicts = 1;
    match reset(&session_target(&url), ResetIntent::ForceOff, &cancel).await {
        Err(RedfishError::Http { status: 409, message, .. }) => {
            assert!(
                message.contains("still powering off") && message.contains("ActionParameterValueConflict"),
                "{message}"
            )
        }
        other => panic!("expected Http 409, got {other:?}"),
    }
    let b = bmc.lock().unwrap();
    assert_eq!(b.reset_bodies.len(), 4, "ForceOff was sent once");
    assert!(b.sessions.is_empty());
}

#[tokio::test]
async fn a_cancelled_or_dropped_call_still_deletes_its_session() {
    // The stand-in keeps answering 409, so `On` sits in its retry pauses.
    let (url, bmc) = redfish_fake::start(1000).await;
    // A Reset the stand-in has refused: the call holds a session and is retrying.
    let resets_past = |n: usize| {
        let bmc = bmc.clone();
        move || {
            let bmc = bmc.clone();
            async move { (bmc.lock().unwrap().reset_bodies.len() > n).then_some(()) }
        }
    };
    let cancel = CancellationToken::new();
    let call = tokio::spawn({
        let (url, cancel) = (url.clone(), cancel.clone());
        async move { reset(&session_target(&url), ResetIntent::On, &cancel).await }
    });
    let retrying = crate::helpers::wait_for(Duration::from_secs(10), resets_past(0)).await;
    assert!(retrying.is_some(), "no Reset reached the BMC within 10 s");
    assert_eq!(bmc.lock().unwrap().sessions.len(), 1, "the call holds its session");
    assert!(!call.is_finished(), "the call ended before it was cancelled: {:?}", call.await);
    let cancelled_at = Instant::now();
    cancel.cancel();
    let r = tokio::time::timeout(Duration::from_secs(10), call).await.expect("the call ignored cancellation").unwrap();
    assert!(matches!(r, Err(RedfishError::Cancelled)), "{r:?}");
    assert!(cancelled_at.elapsed() < Duration::from_secs(5), "took {:?} after the cancel", cancelled_at.elapsed());
    assert!(bmc.lock().unwrap().sessions.is_empty(), "deleted before returning");

    // A caller's hard timeout drops the future instead: the session is deleted in a task.
    // Dropped once its first Reset was refused, so it is mid-retry with a live session.
    let before = bmc.lock().unwrap().reset_bodies.len();
    let (target, never) = (session_target(&url), CancellationToken::new());
    let dropped = tokio::select! {
        r = reset(&target, ResetIntent::On, &never) => Err(r),
        Some(()) = crate::helpers::wait_for(Duration::from_secs(10), resets_past(before)) => Ok(()),
    };
    assert!(dropped.is_ok(), "the call was not dropped mid-retry: {dropped:?}");
    assert_eq!(bmc.lock().unwrap().created, 2);
    let gone = crate::helpers::wait_for(Duration::from_secs(10), || async {
        bmc.lock().unwrap().sessions.is_empty().then_some(())
    })
    .await;
    assert!(gone.is_some(), "session left behind: {:?}", bmc.lock().unwrap().sessions.keys());
}

/// Log entries for the evidence before a power cut: sushy-tools serves no
/// LogServices, so the stand-in does, in both shapes BMCs use.
#[tokio::test]
async fn log_entries_are_the_newest_over_the_system_and_manager_services() {
    let bmc = redfish_fake::Bmc {
        event_log: vec![
            Entry::new("1", "2026-04-01T08:00:00Z", "OK", "System boot"),
            Entry::new("2", "2026-04-01T09:30:00Z", "Critical", "CPU 1 machine check: uncorrectable"),
        ],
        sel: vec![
            Entry::new("z", "2026-03-01T07:00:00Z", "OK", "Firmware updated"),
            Entry::new("a", "2026-04-01T07:00:00Z", "OK", "Chassis intrusion cleared"),
            Entry::new(
                "b",
                "2026-04-01T09:00:00Z",
                "Warning",
                format!("PSU 2 lost input {}", redfish_fake::PASSWORD).as_str(),
            ),
            Entry::new("c", "2026-04-01T10:00:00+01:00", "Critical", "Watchdog timer expired: hard reset"),
        ],
        ..Default::default()
    };
    let (url, bmc) = redfish_fake::start_with(bmc).await;
    let got = log_entries(&session_target(&url), 3, &CancellationToken::new()).await.unwrap();
    let seen: Vec<(&str, &str)> = got.iter().map(|e| (e.id.as_str(), e.message.as_str())).collect();
    // 10:00+01:00 is 09:00Z; the newest three of both services together, oldest first.
    assert_eq!(
        seen,
        [
            ("b", "PSU 2 lost input [redacted]"),
            ("c", "Watchdog timer expired: hard reset"),
            ("2", "CPU 1 machine check: uncorrectable")
        ]
    );
    assert_eq!(got[2].service, "/redfish/v1/Systems/1/LogServices/EventLog");
    assert_eq!(got[2].severity.as_deref(), Some("Critical"));
    let b = bmc.lock().unwrap();
    // Referenced entries are read one by one, only the newest few of them.
    assert!(!b.log_reads.iter().any(|p| p.ends_with("/Sel/Entries/z")), "{:?}", b.log_reads);
    assert!(b.log_reads.iter().any(|p| p.ends_with("/Sel/Entries/c")), "{:?}", b.log_reads);
    assert!(b.sessions.is_empty(), "the session was deleted");
}

#[tokio::test]
async fn a_bmc_without_log_services_has_no_entries() {
    let bmc = SushyBmc::start(false).await;
    let got = log_entries(&target(&bmc), 20, &CancellationToken::new()).await.unwrap();
    assert!(got.is_empty(), "{got:?}");
}
