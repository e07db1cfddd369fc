//! The `ipmi_*` tasks: power state, on, off, cycle, reset and the event log,
//! over the machine's BMC as the inventory describes it.
//!
//! Power changes are confirmed by reading the state back from the BMC. Cycle
//! and reset are state-aware: on a machine that is off they do nothing on many
//! BMCs (the peers' most reported complaint), so roller powers it on instead
//! and says so.

use std::time::{Duration, Instant};

use super::report::{Device, Power, PowerReport, Report, SelReport};
use super::{ActionContext, ActionError, PowerChange, Subject, Task};
use crate::drivers::ipmi::{self as driver, Bridging, IpmiError, IpmiTarget, PowerAction, PowerState, Privilege};
use crate::inventory::Machine;

/// How long a BMC may take to report the power state it was asked for.
const CONFIRM_WITHIN: Duration = Duration::from_secs(30);
const CONFIRM_EVERY: Duration = Duration::from_secs(1);
/// `ipmi_list` shows this many of the newest SEL entries (the original's `sel list last 15`).
const SEL_ENTRIES: u32 = 15;

pub async fn run(task: Task, on: &Subject, cx: &ActionContext) -> Result<Report, ActionError> {
    let bmc = ipmi_target(on.machine()?, cx)?;
    let step = task.name();
    let fail = |e: IpmiError| map_error(step, e);
    let report = |sent: Option<PowerAction>, before: Option<PowerState>, after: PowerState| PowerReport {
        sent: sent.map(|a| action_name(a).to_string()),
        power_before: before.map(power),
        power: Some(power(after)),
        ..PowerReport::new(Device::Bmc { bmc: bmc.host.clone() })
    };
    match task {
        Task::IpmiStatus => {
            let state = driver::power_status(&bmc, &cx.cancel).await.map_err(fail)?;
            cx.log(format!("BMC {} reports power {}", bmc.host, name(state)));
            Ok(report(None, None, state).into())
        }
        Task::IpmiList => {
            let entries = driver::sel_list(&bmc, SEL_ENTRIES, &cx.cancel).await.map_err(fail)?;
            cx.log(format!("{} SEL entries from {}", entries.len(), bmc.host));
            Ok(SelReport { bmc: bmc.host.clone(), sel: entries }.into())
        }
        Task::IpmiOn => {
            // Read first: "was off, now on" is the proof the reboot chain wants from this step.
            let before = driver::power_status(&bmc, &cx.cancel).await.map_err(fail)?;
            let after = change(cx, &bmc, step, PowerAction::On, PowerState::On).await?;
            Ok(report(Some(PowerAction::On), Some(before), after).into())
        }
        Task::IpmiOff => {
            let after = change(cx, &bmc, step, PowerAction::Off, PowerState::Off).await?;
            Ok(report(Some(PowerAction::Off), None, after).into())
        }
        Task::IpmiCycle | Task::IpmiReset => {
            let before = driver::power_status(&bmc, &cx.cancel).await.map_err(fail)?;
            if before == PowerState::Off {
                cx.log(format!("BMC {} reports power off: powering on instead of {step}", bmc.host));
                let after = change(cx, &bmc, step, PowerAction::On, PowerState::On).await?;
                return Ok(report(Some(PowerAction::On), Some(PowerState::Off), after).into());
            }
            let action = if task == Task::IpmiCycle { PowerAction::Cycle } else { PowerAction::Reset };
            cx.log(format!("sending chassis power {} to {}", action_name(action), bmc.host));
            cx.touch(PowerChange::Cut).await?;
            driver::power(&bmc, action, &cx.cancel).await.map_err(fail)?;
            // A cycle passes through off; both end on, which is what we can confirm.
            let after = confirm(cx, &bmc, step, PowerState::On).await?;
            Ok(report(Some(action), Some(PowerState::On), after).into())
        }
        _ => Err(ActionError::Config(format!("{step} is not an IPMI task"))),
    }
}

/// Send `action`, then wait until the BMC reports `want`.
async fn change(
    cx: &ActionContext,
    bmc: &IpmiTarget,
    step: &str,
    action: PowerAction,
    want: PowerState,
) -> Result<PowerState, ActionError> {
    cx.log(format!("sending chassis power {} to {}", action_name(action), bmc.host));
    cx.touch(if action == PowerAction::On { PowerChange::On } else { PowerChange::Cut }).await?;
    driver::power(bmc, action, &cx.cancel).await.map_err(|e| map_error(step, e))?;
    confirm(cx, bmc, step, want).await
}

async fn confirm(
    cx: &ActionContext,
    bmc: &IpmiTarget,
    step: &str,
    want: PowerState,
) -> Result<PowerState, ActionError> {
    let start = Instant::now();
    loop {
        let now = driver::power_status(bmc, &cx.cancel).await.map_err(|e| map_error(step, e))?;
        if now == want {
            cx.log(format!(
                "BMC {} confirms power {} after {:.1}s",
                bmc.host,
                name(now),
                start.elapsed().as_secs_f64()
            ));
            return Ok(now);
        }
        if start.elapsed() + CONFIRM_EVERY > CONFIRM_WITHIN {
            return Err(ActionError::Failed(format!(
                "{step}: BMC {} still reports power {} after {}s",
                bmc.host,
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

/// The driver's view of the machine's BMC, from the inventory (secret resolved now).
pub(crate) fn ipmi_target(m: &Machine, cx: &ActionContext) -> Result<IpmiTarget, ActionError> {
    let access = m.ipmi.as_ref().ok_or_else(|| ActionError::Config(format!("{}: no [ipmi] in the inventory", m.id)))?;
    let password = access
        .password
        .resolve()
        .map_err(|e| ActionError::Config(format!("{}: ipmi password ({}): {e}", m.id, access.password.describe())))?;
    let mut t = IpmiTarget::new(&access.address, &access.user, password);
    t.port = access.port;
    t.gate = cx.settings.gates.clone();
    t.cipher_suite = m.class.ipmi_cipher_suite;
    t.privilege = match m.class.ipmi_privilege.as_str() {
        "user" => Privilege::User,
        "administrator" => Privilege::Administrator,
        _ => Privilege::Operator,
    };
    t.bridging = access.bridging.map(|b| match (b.transit_channel, b.transit_address) {
        (Some(ch), Some(addr)) => Bridging::dual(ch, addr, b.target_channel, b.target_address),
        _ => Bridging::single(b.target_channel, b.target_address),
    });
    Ok(t)
}

pub(crate) fn map_error(step: &str, e: IpmiError) -> ActionError {
    ActionError::driver(step, e)
}

pub(crate) fn power(s: PowerState) -> Power {
    match s {
        PowerState::On => Power::On,
        PowerState::Off => Power::Off,
    }
}

pub(crate) fn name(s: PowerState) -> &'static str {
    match s {
        PowerState::On => "on",
        PowerState::Off => "off",
    }
}

fn action_name(a: PowerAction) -> &'static str {
    match a {
        PowerAction::On => "on",
        PowerAction::Off => "off",
        PowerAction::Cycle => "cycle",
        PowerAction::Reset => "reset",
        PowerAction::Soft => "soft",
    }
}
