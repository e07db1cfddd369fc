//! The snmp driver against a real net-snmp `snmpd` playing a Sentry3 PDU: what
//! the PDU did is read from its handler's state file and action log.

use std::time::{Duration, Instant};

use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use roller::drivers::snmp::{
    Outlet, OutletAction, OutletStatus, PduTarget, SnmpError, outlet_status, reboot_with_delay, set_outlet,
};

use crate::helpers::wait_for;
use crate::peers::snmp::{REBOOT_OFF, SentryPdu, free_udp_port};

fn target(port: u16, community: &str) -> PduTarget {
    PduTarget {
        host: "127.0.0.1".into(),
        port,
        community: SecretString::from(community.to_string()),
        timeout: Duration::from_secs(2),
        retries: 1,
        gate: Default::default(),
    }
}

fn outlet(s: &str) -> Outlet {
    Outlet::parse(s).unwrap()
}

#[tokio::test]
async fn reads_outlet_status() {
    let pdu = SentryPdu::start();
    let t = target(pdu.port(), pdu.community());
    let cancel = CancellationToken::new();
    assert_eq!(outlet_status(&t, outlet("AA1"), &cancel).await.unwrap(), OutletStatus::On);
    assert_eq!(outlet_status(&t, outlet("BA16"), &cancel).await.unwrap(), OutletStatus::On);
    assert!(pdu.actions().is_empty(), "a read is not an action: {:?}", pdu.actions());
}

#[tokio::test]
async fn on_off_and_reboot_change_the_outlet() {
    let pdu = SentryPdu::start();
    let t = target(pdu.port(), pdu.community());
    let cancel = CancellationToken::new();
    let o = outlet("AA5");

    set_outlet(&t, o, OutletAction::Off, &cancel).await.unwrap();
    assert_eq!(pdu.status("1.1.5"), Some(0));
    assert_eq!(outlet_status(&t, o, &cancel).await.unwrap(), OutletStatus::Off);

    set_outlet(&t, o, OutletAction::On, &cancel).await.unwrap();
    assert_eq!(pdu.status("1.1.5"), Some(1));
    assert_eq!(outlet_status(&t, o, &cancel).await.unwrap(), OutletStatus::On);

    let before_reboot = Instant::now();
    set_outlet(&t, o, OutletAction::Reboot, &cancel).await.unwrap();
    let back_on = wait_for(Duration::from_secs(20), || async {
        (outlet_status(&t, o, &cancel).await.unwrap() == OutletStatus::On).then_some(())
    })
    .await;
    assert!(back_on.is_some(), "outlet did not come back after the PDU's reboot");
    // The PDU-side cycle really went through off: it cannot be on again sooner.
    assert!(before_reboot.elapsed() >= REBOOT_OFF);

    let seen: Vec<(String, i64)> = pdu.actions().into_iter().map(|a| (a.outlet, a.value)).collect();
    let want: Vec<(String, i64)> = [2, 1, 3].into_iter().map(|v| ("1.1.5".to_string(), v)).collect();
    assert_eq!(seen, want);
    assert_eq!(pdu.status("1.1.4"), Some(1), "a neighbour was touched");
}

#[tokio::test]
async fn delayed_reboot_is_off_wait_on() {
    let pdu = SentryPdu::start();
    let t = target(pdu.port(), pdu.community());
    let delay = Duration::from_millis(1500);
    reboot_with_delay(&t, outlet("AB3"), delay, &CancellationToken::new()).await.unwrap();

    let actions = pdu.actions();
    let seen: Vec<(&str, i64)> = actions.iter().map(|a| (a.outlet.as_str(), a.value)).collect();
    assert_eq!(seen, [("1.2.3", 2), ("1.2.3", 1)]);
    let gap = actions[1].at - actions[0].at;
    // 1 ms of slack only for the log's six-decimal rounding.
    assert!(gap >= delay.as_secs_f64() - 0.001, "off and on only {gap:.3} s apart");
    assert_eq!(pdu.status("1.2.3"), Some(1));
}

#[tokio::test]
async fn outlet_strings_reach_the_right_oid() {
    let pdu = SentryPdu::start();
    let t = target(pdu.port(), pdu.community());
    let cancel = CancellationToken::new();
    // Tower letter, infeed letter (either case), and digits passing through.
    for (s, expect) in [("BA7", "2.1.7"), ("ab16", "1.2.16"), ("2a9", "2.1.9"), ("AA012", "1.1.12")] {
        set_outlet(&t, outlet(s), OutletAction::Off, &cancel).await.unwrap();
        assert_eq!(pdu.status(expect), Some(0), "{s} should switch {expect} off");
        assert_eq!(pdu.actions().last().map(|a| a.outlet.clone()), Some(expect.to_string()), "{s}");
    }
    // The same outlet numbers on other towers/infeeds stayed on.
    for other in ["1.1.7", "1.2.7", "1.1.16", "2.1.16", "1.1.9", "1.2.12"] {
        assert_eq!(pdu.status(other), Some(1), "{other} was touched");
    }
    assert_eq!(pdu.actions().len(), 4);
}

#[tokio::test]
async fn wrong_community_is_a_timeout_without_either_community() {
    let pdu = SentryPdu::start();
    let wrong = "not-the-community-4711";
    let t = target(pdu.port(), wrong);
    let started = Instant::now();
    let e = tokio::time::timeout(
        Duration::from_secs(30),
        set_outlet(&t, outlet("AA2"), OutletAction::Off, &CancellationToken::new()),
    )
    .await
    .expect("gives up within 30 s")
    .unwrap_err();
    assert!(matches!(e, SnmpError::Timeout { attempts: 2, .. }), "{e:?}");
    // Two attempts of 2 s each, not a hang.
    assert!(started.elapsed() >= Duration::from_secs(4), "{:?}", started.elapsed());
    let msg = format!("{e} {e:?}");
    assert!(msg.contains("wrong community or unreachable"), "{msg}");
    assert!(!msg.contains(wrong) && !msg.contains(pdu.community()), "{msg}");
    assert!(pdu.actions().is_empty());
    assert_eq!(pdu.status("1.1.2"), Some(1));
}

#[tokio::test]
async fn nothing_listening_is_a_timeout() {
    let t = target(free_udp_port(), "whatever");
    let e = tokio::time::timeout(Duration::from_secs(30), outlet_status(&t, outlet("AA1"), &CancellationToken::new()))
        .await
        .expect("gives up within 30 s")
        .unwrap_err();
    assert!(matches!(e, SnmpError::Timeout { attempts: 2, .. }), "{e:?}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{}", t.port)), "{e}");
}

/// Decided: a delayed reboot cancelled after its `off` leaves the outlet off
/// (cancel means stop touching the hardware) and says so in the error.
#[tokio::test]
async fn cancelling_a_delayed_reboot_stops_promptly_and_leaves_the_outlet_off() {
    let pdu = SentryPdu::start();
    let t = target(pdu.port(), pdu.community());
    let cancel = CancellationToken::new();
    let o = outlet("AA8");
    let task = {
        let (t, cancel) = (t.clone(), cancel.clone());
        tokio::spawn(async move { reboot_with_delay(&t, o, Duration::from_secs(600), &cancel).await })
    };
    let off = wait_for(Duration::from_secs(20), || async { (pdu.status("1.1.8") == Some(0)).then_some(()) }).await;
    assert!(off.is_some(), "the off never reached the PDU");
    let cancelled_at = Instant::now();
    cancel.cancel();
    let r = tokio::time::timeout(Duration::from_secs(5), task).await.expect("stops within 5 s").unwrap();
    assert!(cancelled_at.elapsed() < Duration::from_secs(5));
    assert!(matches!(r, Err(SnmpError::CancelledLeftOff(x)) if x == o), "{r:?}");
    assert!(r.unwrap_err().to_string().contains("left OFF"));

    // Nothing more arrives after the cancel.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen: Vec<(String, i64)> = pdu.actions().into_iter().map(|a| (a.outlet, a.value)).collect();
    assert_eq!(seen, [("1.1.8".to_string(), 2)]);
    assert_eq!(outlet_status(&t, o, &CancellationToken::new()).await.unwrap(), OutletStatus::Off);
}

#[tokio::test]
async fn nonexistent_outlet_is_a_clear_error() {
    let pdu = SentryPdu::start();
    let t = target(pdu.port(), pdu.community());
    let cancel = CancellationToken::new();

    // Tower 3 and outlet 17 do not exist on this PDU.
    for s in ["CA1", "AA17"] {
        let e = outlet_status(&t, outlet(s), &cancel).await.unwrap_err();
        assert!(matches!(e, SnmpError::NoSuchOutlet { .. }), "{s}: {e:?}");
        assert!(e.to_string().contains(&outlet(s).to_string()), "{e}");
    }
    let e = set_outlet(&t, outlet("AA17"), OutletAction::Off, &cancel).await.unwrap_err();
    assert!(matches!(e, SnmpError::Agent { status_name: "notWritable", .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("1.1.17") && msg.contains("notWritable"), "{msg}");
    assert!(!msg.contains(pdu.community()), "{msg}");
    assert!(pdu.actions().is_empty());
}
