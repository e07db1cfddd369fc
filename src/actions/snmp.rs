//! `snmp_reboot` and `snmp_rebootdelay`: power-cycle the machine at its PDU
//! outlet (ServerTech Sentry3), as the inventory describes it.
//!
//! `snmp_reboot` asks the PDU for its own off-wait-on cycle and then watches the
//! outlet until it reports on again; `snmp_rebootdelay` switches the outlet off,
//! waits the class's delay (Mac minis need the long off time) and switches it on.
//! Both report whether the outlet was seen off and then on: the power cycle the
//! reboot chain accepts as proof that power really went away.

use std::time::{Duration, Instant};

use super::report::{Device, Power, PowerReport, Report};
use super::{ActionContext, ActionError, PowerChange, Restore, Subject, Task};
use crate::drivers::snmp::{self as driver, OutletAction, OutletStatus, PduTarget, SnmpError};
use crate::inventory::Machine;

/// How long a PDU's own reboot cycle may take to bring the outlet back on.
const CYCLE_WITHIN: Duration = Duration::from_secs(60);
const WATCH_EVERY: Duration = Duration::from_millis(250);

pub async fn run(task: Task, on: &Subject, cx: &ActionContext) -> Result<Report, ActionError> {
    let m = on.machine()?;
    let step = task.name();
    let (pdu, outlet) = pdu_target(m, cx, step)?;
    let outlet_name = m.pdu.as_ref().map(|p| p.outlet.clone()).unwrap_or_default();
    let fail = |e: SnmpError| match e {
        // Not a plain cancellation: the outlet is off, and whoever reads the job must know.
        e @ SnmpError::CancelledLeftOff(_) => ActionError::Failed(format!("{step}: {}", crate::drivers::counted(e))),
        e => ActionError::driver(step, e),
    };
    let before = driver::outlet_status(&pdu, outlet, &cx.cancel).await.map_err(fail)?;
    cx.log(format!("PDU {} outlet {outlet_name} ({outlet}) reports {}", pdu.host, status_name(before)));
    let report = PowerReport {
        power_before: Some(power(before)),
        ..PowerReport::new(Device::Pdu { pdu: pdu.host.clone(), outlet: outlet_name.clone() })
    };
    match task {
        Task::SnmpRebootDelay => {
            let delay = m.class.snmp_reboot_delay;
            cx.log(format!("switching outlet {outlet_name} off, on again after {}s", delay.as_secs()));
            // Recorded right before the off goes out: whatever stops this job from then on,
            // the outlet is switched back on.
            let restore = Restore::PduOutletOn { step: step.into(), outlet: outlet_name.clone() };
            let arm = async || cx.arm(restore).await.map_err(|e| e.to_string());
            driver::reboot_with_delay_after(&pdu, outlet, delay, &cx.cancel, arm).await.map_err(fail)?;
            let after = driver::outlet_status(&pdu, outlet, &cx.cancel).await.map_err(fail)?;
            cx.log(format!("PDU {} outlet {outlet_name} reports {}", pdu.host, status_name(after)));
            if after != OutletStatus::On {
                return Err(ActionError::Failed(format!(
                    "{step}: outlet {outlet_name} reports {} after being switched on",
                    status_name(after)
                )));
            }
            cx.disarm().await;
            // The driver read the outlet back as off before it switched it on.
            Ok(PowerReport {
                sent: Some("off, on".into()),
                delay_secs: Some(delay.as_secs()),
                power: Some(Power::On),
                cycle_observed: Some(true),
                ..report
            }
            .into())
        }
        Task::SnmpReboot => {
            cx.log(format!("asking PDU {} to reboot outlet {outlet_name}", pdu.host));
            // The PDU's own cycle switches the outlet back on by itself: nothing to arm.
            cx.touch(PowerChange::Cut).await?;
            driver::set_outlet(&pdu, outlet, OutletAction::Reboot, &cx.cancel).await.map_err(fail)?;
            let (seen_off, after) = watch_cycle(cx, &pdu, outlet, step).await?;
            cx.log(format!(
                "PDU {} outlet {outlet_name} is on again{}",
                pdu.host,
                if seen_off { " after being seen off" } else { " (its off phase was not observed)" }
            ));
            Ok(PowerReport {
                sent: Some("reboot".into()),
                power: Some(power(after)),
                cycle_observed: Some(seen_off),
                ..report
            }
            .into())
        }
        _ => Err(ActionError::Config(format!("{step} is not an SNMP task"))),
    }
}

/// The driver's view of the machine's PDU outlet (community resolved now), carrying
/// the process's per-device gates.
pub(crate) fn pdu_target(
    m: &Machine,
    cx: &ActionContext,
    step: &str,
) -> Result<(PduTarget, driver::Outlet), ActionError> {
    let access = m.pdu.as_ref().ok_or_else(|| ActionError::Config(format!("{}: no [pdu] in the inventory", m.id)))?;
    let community = access
        .community
        .resolve()
        .map_err(|e| ActionError::Config(format!("{}: pdu community ({}): {e}", m.id, access.community.describe())))?;
    let mut pdu = PduTarget::new(&access.host, community).map_err(|e| ActionError::Config(format!("{step}: {e}")))?;
    pdu.port = access.port;
    pdu.gate = cx.settings.gates.clone();
    let outlet = driver::Outlet::parse(&access.outlet)
        .map_err(|e| ActionError::Config(format!("{}: pdu outlet {:?}: {e}", m.id, access.outlet)))?;
    Ok((pdu, outlet))
}

/// Poll the outlet until it reports on; whether an off state was seen on the way.
async fn watch_cycle(
    cx: &ActionContext,
    pdu: &PduTarget,
    outlet: driver::Outlet,
    step: &str,
) -> Result<(bool, OutletStatus), ActionError> {
    let start = Instant::now();
    let mut seen_off = false;
    loop {
        let now = driver::outlet_status(pdu, outlet, &cx.cancel).await.map_err(|e| ActionError::driver(step, e))?;
        seen_off |= matches!(now, OutletStatus::Off | OutletStatus::OnWait);
        if now == OutletStatus::On && (seen_off || start.elapsed() > Duration::from_secs(2)) {
            return Ok((seen_off, now));
        }
        if start.elapsed() > CYCLE_WITHIN {
            return Err(ActionError::Failed(format!(
                "{step}: outlet still reports {} {}s after the reboot request",
                status_name(now),
                CYCLE_WITHIN.as_secs()
            )));
        }
        tokio::select! {
            _ = tokio::time::sleep(WATCH_EVERY) => {}
            _ = cx.cancel.cancelled() => return Err(ActionError::Cancelled),
        }
    }
}

fn power(s: OutletStatus) -> Power {
    match s {
        OutletStatus::Off => Power::Off,
        OutletStatus::On => Power::On,
        other => Power::Other(status_name(other)),
    }
}

pub(crate) fn status_name(s: OutletStatus) -> String {
    match s {
        OutletStatus::Off => "off".into(),
        OutletStatus::On => "on".into(),
        OutletStatus::OffWait => "offWait".into(),
        OutletStatus::OnWait => "onWait".into(),
        OutletStatus::Other(n) => format!("unknown status {n}"),
    }
}
