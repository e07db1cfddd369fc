//! `ilo_reboot`: reset an HP server through its iLO (RIBCL), as the original did:
//! read the power state, `RESET_SERVER`, and when the iLO refuses the reset,
//! power off, wait, power on (but not after a reset that went unanswered: it may
//! be under way). Unlike the original it is state-aware (a server
//! that is off is powered on), confirms power changes by reading them back,
//! and never mistakes the iLO for the machine: the reboot chain's proof probes
//! the machine's own address (the original went on pinging the iLO).

use std::time::{Duration, Instant};

use super::report::{Device, Power, PowerReport, Report};
use super::{ActionContext, ActionError, PowerChange, Restore, Subject};
use crate::drivers::ilo::{self as driver, HostPower, IloError, IloTarget};
use crate::inventory::Machine;

/// How long the server stays off when the reset is refused and power is cycled instead.
const OFF_TIME: Duration = Duration::from_secs(5);
/// Power changes through iLO take a few seconds to show.
const CONFIRM_WITHIN: Duration = Duration::from_secs(60);
const CONFIRM_EVERY: Duration = Duration::from_secs(1);

pub async fn run(on: &Subject, cx: &ActionContext) -> Result<Report, ActionError> {
    let m = on.machine()?;
    let t = ilo_target(m)?;
    let fail = |e: IloError| ActionError::driver("ilo_reboot", e);
    let report = |sent: &str, before: Power| PowerReport {
        sent: Some(sent.into()),
        power_before: Some(before),
        ..PowerReport::new(Device::Ilo { ilo: t.host.clone() })
    };
    let before = driver::host_power(&t, &cx.cancel).await.map_err(fail)?;
    cx.log(format!("iLO {} reports host power {}", t.host, name(before)));
    if before == HostPower::Off {
        cx.log("the server is off: powering it on instead of a reset");
        cx.touch(PowerChange::On).await?;
        driver::set_host_power(&t, true, &cx.cancel).await.map_err(fail)?;
        confirm(cx, &t, HostPower::On).await?;
        return Ok(PowerReport { power: Some(Power::On), ..report("power on", Power::Off) }.into());
    }
    cx.touch(PowerChange::Cut).await?;
    match driver::reset_server(&t, &cx.cancel).await {
        Ok(()) => {
            cx.log(format!("iLO {} accepted RESET_SERVER", t.host));
            Ok(report("RESET_SERVER", Power::On).into())
        }
        Err(IloError::Cancelled) => Err(ActionError::Cancelled),
        Err(e @ IloError::Refused { .. }) if !is_login_failure(&e) => {
            cx.log(format!("RESET_SERVER refused ({e}); powering off and on instead"));
            // Recorded before the off: whatever stops this job now, the host is switched back on.
            cx.arm(Restore::IloPowerOn { step: "ilo_reboot".into(), ilo: t.host.clone() }).await?;
            driver::set_host_power(&t, false, &cx.cancel).await.map_err(fail)?;
            confirm(cx, &t, HostPower::Off).await?;
            tokio::select! {
                _ = tokio::time::sleep(OFF_TIME) => {}
                _ = cx.cancel.cancelled() => return Err(ActionError::Cancelled),
            }
            driver::set_host_power(&t, true, &cx.cancel).await.map_err(fail)?;
            confirm(cx, &t, HostPower::On).await?;
            cx.disarm().await;
            Ok(PowerReport {
                reset_failure: Some(e.to_string()),
                power: Some(Power::On),
                cycle_observed: Some(true),
                ..report("power off, power on", Power::On)
            }
            .into())
        }
        Err(e) => Err(fail(e)),
    }
}

fn is_login_failure(e: &IloError) -> bool {
    matches!(e, IloError::Refused { status, .. } if status.eq_ignore_ascii_case("0x005F"))
}

/// The driver's view of the machine's iLO (password resolved now).
pub(crate) fn ilo_target(m: &Machine) -> Result<IloTarget, ActionError> {
    let access = m.ilo.as_ref().ok_or_else(|| ActionError::Config(format!("{}: no [ilo] in the inventory", m.id)))?;
    let password = access
        .password
        .resolve()
        .map_err(|e| ActionError::Config(format!("{}: ilo password ({}): {e}", m.id, access.password.describe())))?;
    Ok(IloTarget {
        host: access.address.clone(),
        port: access.port,
        user: access.user.clone(),
        password,
        verify_tls: access.verify_tls,
        timeout: Duration::from_secs(30),
    })
}

pub(crate) async fn confirm(cx: &ActionContext, t: &IloTarget, want: HostPower) -> Result<(), ActionError> {
    let start = Instant::now();
    loop {
        let now = driver::host_power(t, &cx.cancel).await.map_err(|e| ActionError::driver("ilo_reboot", e))?;
        if now == want {
            cx.log(format!(
                "iLO {} confirms host power {} after {:.1}s",
                t.host,
                name(now),
                start.elapsed().as_secs_f64()
            ));
            return Ok(());
        }
        if start.elapsed() + CONFIRM_EVERY > CONFIRM_WITHIN {
            return Err(ActionError::Failed(format!(
                "ilo_reboot: iLO {} still reports host power {} after {}s",
                t.host,
                name(now),
                CONFIRM_WITHIN.as_secs()
            )));
        }
        tokio::select! {
            _ = tokio::time::sleep(CONFIRM_EVERY) => {}
            _ = cx.cancel.cancelled() => return Err(ActionError::Cancelled),
        }
    }
}

fn name(p: HostPower) -> &'static str {
    match p {
        HostPower::On => "on",
        HostPower::Off => "off",
    }
}
