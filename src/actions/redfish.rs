//! The `redfish_*` tasks: power state, on, off, graceful restart and forced
//! reset through the machine's Redfish service, as the inventory describes it.
//!
//! On and off are confirmed by reading the power state back. Restart and reset
//! are state-aware like their IPMI twins: a machine that is off is powered on
//! instead. Proving that a restart really happened is the reboot chain's job
//! (it watches the machine go down and come back); these tasks report what the
//! BMC accepted, and as `power` only what the BMC said after the request (read
//! once; absent when that read failed), never the state from before it.

use std::time::{Duration, Instant};

use super::report::{Device, Power, PowerReport, Report};
use super::{ActionContext, ActionError, PowerChange, Subject, Task};
use crate::drivers::redfish::{self as driver, PowerState, RedfishError, RedfishTarget, ResetIntent};
use crate::inventory::Machine;

/// Redfish services apply power changes asynchronously; some take several seconds.
const CONFIRM_WITHIN: Duration = Duration::from_secs(60);
const CONFIRM_EVERY: Duration = Duration::from_secs(1);

pub async fn run(task: Task, on: &Subject, cx: &ActionContext) -> Result<Report, ActionError> {
    let bmc = redfish_target(on.machine()?)?;
    let step = task.name();
    let fail = |e: RedfishError| map_error(step, e);
    let state = driver::power_state(&bmc, &cx.cancel).await.map_err(fail)?;
    cx.log(format!("Redfish service {} reports power {}", bmc.base_url, name(&state)));
    let device = Device::Bmc { bmc: bmc.base_url.clone() };
    let (intent, want) = match task {
        Task::RedfishStatus => {
            return Ok(PowerReport { power: Some(power(&state)), ..PowerReport::new(device) }.into());
        }
        Task::RedfishOn => (ResetIntent::On, Some(PowerState::On)),
        Task::RedfishOff => (ResetIntent::ForceOff, Some(PowerState::Off)),
        Task::RedfishRestart | Task::RedfishReset if state == PowerState::Off => {
            cx.log(format!("the machine is off: powering on instead of {step}"));
            (ResetIntent::On, Some(PowerState::On))
        }
        Task::RedfishRestart => (ResetIntent::GracefulRestart, None),
        Task::RedfishReset => (ResetIntent::ForceRestart, None),
        _ => return Err(ActionError::Config(format!("{step} is not a Redfish task"))),
    };
    cx.touch(if intent == ResetIntent::On { PowerChange::On } else { PowerChange::Cut }).await?;
    let sent = driver::reset(&bmc, intent, &cx.cancel).await.map_err(fail)?;
    cx.log(format!("{} accepted ResetType {sent}", bmc.base_url));
    // Every state reported as `power` is read from the BMC after the request; the
    // state before it is only ever `power_before`. A restart's read-back is often
    // the moment it passes through off (sushy-tools reads Off until it lands),
    // which is the truth at that instant, and is reported as such.
    let after = match want {
        Some(want) => Some(confirm(cx, &bmc, step, want).await?),
        None => match driver::power_state(&bmc, &cx.cancel).await {
            Ok(now) => {
                cx.log(format!("{} reports power {} after the request", bmc.base_url, name(&now)));
                Some(now)
            }
            Err(RedfishError::Cancelled) => return Err(ActionError::Cancelled),
            // The request was accepted; a BMC that cannot answer right after a
            // restart does not undo it. Nothing read, nothing reported.
            Err(e) => {
                cx.log(format!("{}: the power state could not be read back after the request: {e}", bmc.base_url));
                None
            }
        },
    };
    Ok(PowerReport {
        sent: Some(sent),
        power_before: Some(power(&state)),
        power: after.as_ref().map(power),
        ..PowerReport::new(device)
    }
    .into())
}

async fn confirm(
    cx: &ActionContext,
    bmc: &RedfishTarget,
    step: &str,
    want: PowerState,
) -> Result<PowerState, ActionError> {
    let start = Instant::now();
    loop {
        let now = driver::power_state(bmc, &cx.cancel).await.map_err(|e| map_error(step, e))?;
        if now == want {
            cx.log(format!(
                "{} confirms power {} after {:.1}s",
                bmc.base_url,
                name(&now),
                start.elapsed().as_secs_f64()
            ));
            return Ok(now);
        }
        if start.elapsed() + CONFIRM_EVERY > CONFIRM_WITHIN {
            return Err(ActionError::Failed(format!(
                "{step}: {} still reports power {} after {}s",
                bmc.base_url,
                name(&now),
                CONFIRM_WITHIN.as_secs()
            )));
        }
        tokio::select! {
            _ = tokio::time::sleep(CONFIRM_EVERY) => {}
            _ = cx.cancel.cancelled() => return Err(ActionError::Cancelled),
        }
    }
}

/// The driver's view of the machine's Redfish service (secret resolved now).
pub(crate) fn redfish_target(m: &Machine) -> Result<RedfishTarget, ActionError> {
    let access =
        m.redfish.as_ref().ok_or_else(|| ActionError::Config(format!("{}: no [redfish] in the inventory", m.id)))?;
    let password = access.password.resolve().map_err(|e| {
        ActionError::Config(format!("{}: redfish password ({}): {e}", m.id, access.password.describe()))
    })?;
    let mut t = RedfishTarget::new(&access.url, &access.user, password);
    t.verify_tls = m.class.redfish_verify_tls;
    t.system = access.system.clone();
    Ok(t)
}

pub(crate) fn map_error(step: &str, e: RedfishError) -> ActionError {
    ActionError::driver(step, e)
}

pub(crate) fn power(s: &PowerState) -> Power {
    match s {
        PowerState::On => Power::On,
        PowerState::Off => Power::Off,
        other => Power::Other(name(other)),
    }
}

pub(crate) fn name(s: &PowerState) -> String {
    match s {
        PowerState::On => "on".into(),
        PowerState::Off => "off".into(),
        PowerState::PoweringOn => "powering on".into(),
        PowerState::PoweringOff => "powering off".into(),
        PowerState::Other(o) => o.clone(),
    }
}
