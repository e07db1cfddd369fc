//! `ilo_reboot`: reset an HP server through its iLO (RIBCL), as the original did:
//! read the power state, `RESET_SERVER`, and when the iLO refuses the reset,
//! power off, wait, power on (but not after a reset that went unanswered: it may
//! be under way). Unlike the original it is state-aware (a server
//! that is off is powered on), confirms power changes by reading them back,
//! and never mistakes the iLO for the machine: the reboot chain's proof probes
//! the machine's own address (the original went on pinging the iLO).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{ActionContext, ActionError, Target, machine};
use crate::drivers::counted;
use crate::drivers::ilo::{self as driver, HostPower, IloError, IloTarget};
use crate::inventory::Machine;

/// The original's `--delay`: off time in the power-off/on fallback.
const OFF_TIME: Duration = Duration::from_secs(5);
const CONFIRM_WITHIN: Duration = Duration::from_secs(60);
const CONFIRM_EVERY: Duration = Duration::from_secs(1);

pub async fn run(target: &Target, cx: &ActionContext) -> Result<Value, ActionError> {
    run_on(&machine(target, cx)?, cx).await
}

/// The step on the machine `m` (the reboot chain's entry).
pub(crate) async fn run_on(m: &Machine, cx: &ActionContext) -> Result<Value, ActionError> {
    let access = m.ilo.as_ref().ok_or_else(|| ActionError::Config(format!("{}: no [ilo] in the inventory", m.id)))?;
    let password = access
        .password
        .resolve()
        .map_err(|e| ActionError::Config(format!("{}: ilo password ({}): {e}", m.id, access.password.describe())))?;
    let t = IloTarget {
        host: access.address.clone(),
        port: access.port,
        user: access.user.clone(),
        password,
        verify_tls: access.verify_tls,
        timeout: Duration::from_secs(30),
    };
    let fail = |e: IloError| match counted(e) {
        IloError::Cancelled => ActionError::Cancelled,
        e => ActionError::Failed(format!("ilo_reboot: {e}")),
    };
    let before = driver::host_power(&t, &cx.cancel).await.map_err(fail)?;
    cx.log(format!("iLO {} reports host power {}", t.host, name(before)));
    if before == HostPower::Off {
        cx.log("the server is off: powering it on instead of a reset");
        driver::set_host_power(&t, true, &cx.cancel).await.map_err(fail)?;
        confirm(cx, &t, HostPower::On).await?;
        return Ok(json!({ "ilo": t.host, "sent": "power on", "power_before": "off", "power": "on" }));
    }
    match driver::reset_server(&t, &cx.cancel).await {
        Ok(()) => {
            cx.log(format!("iLO {} accepted RESET_SERVER", t.host));
            Ok(json!({ "ilo": t.host, "sent": "RESET_SERVER", "power_before": "on" }))
        }
        Err(IloError::Cancelled) => Err(ActionError::Cancelled),
        // The iLO refused the reset itself (not the login): power off and on instead.
        Err(e @ IloError::Refused { .. }) if !is_login_failure(&e) => {
            cx.log(format!("RESET_SERVER refused ({e}); powering off and on instead"));
            driver::set_host_power(&t, false, &cx.cancel).await.map_err(fail)?;
            confirm(cx, &t, HostPower::Off).await?;
            tokio::select! {
                _ = tokio::time::sleep(OFF_TIME) => {}
                _ = cx.cancel.cancelled() => return Err(ActionError::Cancelled),
            }
            driver::set_host_power(&t, true, &cx.cancel).await.map_err(fail)?;
            confirm(cx, &t, HostPower::On).await?;
            Ok(json!({
                "ilo": t.host, "sent": "power off, power on", "reset_failure": e.to_string(),
                "power_before": "on", "power": "on", "cycle_observed": true,
            }))
        }
        // No answer (or a login refused) is not a refused reset: the reset may have
        // gone through, and cutting the power of a server that is restarting is
        // worse than reporting. The chain's proof, or the next step, decides.
        Err(e) => Err(fail(e)),
    }
}

/// RIBCL status 0x005F: the credentials, not the command, were refused.
fn is_login_failure(e: &IloError) -> bool {
    matches!(e, IloError::Refused { status, .. } if status.eq_ignore_ascii_case("0x005F"))
}

async fn confirm(cx: &ActionContext, t: &IloTarget, want: HostPower) -> Result<(), ActionError> {
    let start = Instant::now();
    loop {
        let now = driver::host_power(t, &cx.cancel).await.map_err(|e| match counted(e) {
            IloError::Cancelled => ActionError::Cancelled,
            e => ActionError::Failed(format!("ilo_reboot: {e}")),
        })?;
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
