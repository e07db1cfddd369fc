//! `moonshot_reset`: cold-reset the machine's node (`c<N>n1`) through its HP Moonshot
//! chassis manager, as RelOps' `reset_moonshot*.py` does, and the Moonshot parts of
//! `status` and `reimage` (the power read, the one-time PXE boot).
//!
//! Like `ipmi_reset`, the task reports what the chassis manager accepted; the reboot
//! chain's proof (the machine going down and coming back) is what shows it worked.
//! The node's power is read before and after when the chassis manager offers it; when
//! it does not (the field is not verified on real firmware), the log says so and only
//! the probes can tell. A ColdReset goes out for a node that reads off too: whether the
//! chassis then powers it on is not verified either, and the chain's proof will show.
//! The chassis powers the node back on itself, so nothing is armed for a repair.

use super::report::{Device, Power, PowerReading, PowerReport, Report};
use super::{ActionContext, ActionError, PowerChange, Subject};
use crate::drivers::moonshot::{self as driver, MoonshotError, MoonshotTarget, NodePower};
use crate::inventory::Machine;

/// What the log and `status` say when the node resource has no power field.
pub const NOT_OFFERED: &str = "power state not offered by this chassis manager";

#[tracing::instrument(name = "moonshot_reset", skip_all, fields(worker = %on.target.worker_id))]
pub async fn run(on: &Subject, cx: &ActionContext) -> Result<Report, ActionError> {
    let t = moonshot_target(on.machine()?, cx)?;
    let fail = |e: MoonshotError| ActionError::driver("moonshot_reset", e);
    let chassis = t.chassis_name();
    let before = driver::power(&t, &cx.cancel).await.map_err(fail)?;
    match &before {
        Some(p) => cx.log(format!("chassis manager {chassis} reports {} power {p}", t.node)),
        None => cx.log(format!("chassis manager {chassis}: {NOT_OFFERED}; only probes of the machine can tell")),
    }
    if before == Some(NodePower::Off) {
        cx.log(
            "the node is off: sending ColdReset anyway (whether it powers on a node that is off is not verified \
             on chassis manager firmware)",
        );
    }
    cx.touch(PowerChange::Cut).await?;
    cx.log(format!("sending ColdReset of {} to chassis manager {chassis}", t.node));
    driver::cold_reset(&t, &cx.cancel).await.map_err(fail)?;
    cx.log(format!("chassis manager {chassis} accepted ColdReset of {}", t.node));
    let after = match before {
        None => None,
        // Read once: a chassis busy with the reset does not undo it.
        Some(_) => match driver::power(&t, &cx.cancel).await {
            Ok(now) => {
                if let Some(p) = &now {
                    cx.log(format!("chassis manager {chassis} reports {} power {p} after the request", t.node));
                }
                now
            }
            Err(MoonshotError::Cancelled) => return Err(ActionError::Cancelled),
            Err(e) => {
                cx.log(format!("the power state could not be read back after the request: {e}"));
                None
            }
        },
    };
    Ok(PowerReport {
        sent: Some("ColdReset".into()),
        power_before: before.as_ref().map(power),
        power: after.as_ref().map(power),
        ..PowerReport::new(Device::Moonshot { chassis, node: t.node.to_string() })
    }
    .into())
}

/// `status`'s power reading from the chassis manager (a failure is reported, not fatal).
pub(crate) async fn reading(m: &Machine, cx: &ActionContext) -> Result<PowerReading, ActionError> {
    let t = moonshot_target(m, cx)?;
    let chassis = t.chassis_name();
    Ok(match driver::power(&t, &cx.cancel).await.map_err(crate::drivers::counted) {
        Ok(Some(p)) => {
            cx.log(format!("chassis manager {chassis} reports {} power {p}", t.node));
            PowerReading { source: "moonshot", state: Some(power(&p)), error: None }
        }
        Ok(None) => {
            cx.log(format!("chassis manager {chassis}: {NOT_OFFERED}"));
            PowerReading { source: "moonshot", state: None, error: Some(NOT_OFFERED.into()) }
        }
        Err(MoonshotError::Cancelled) => return Err(ActionError::Cancelled),
        Err(e) => {
            cx.log(format!("cannot read the power state: {e}"));
            PowerReading { source: "moonshot", state: None, error: Some(e.to_string()) }
        }
    })
}

/// `reimage`'s network boot: the chassis manager's one-time PXE override, which lasts
/// until the node next boots (no renewal needed, unlike IPMI's boot flag).
pub(crate) async fn pxe_once(m: &Machine, cx: &ActionContext) -> Result<String, ActionError> {
    let t = moonshot_target(m, cx)?;
    let chassis = t.chassis_name();
    cx.log(format!("setting a one-time PXE boot override for {} on chassis manager {chassis}", t.node));
    driver::pxe_once(&t, &cx.cancel).await.map_err(|e| ActionError::driver("reimage", e))?;
    Ok(format!("Moonshot BootSourceOverrideTarget PXE (once) for {} on {chassis}", t.node))
}

/// The driver's view of the machine's node (password resolved now), under the
/// process's per-device gates.
pub(crate) fn moonshot_target(m: &Machine, cx: &ActionContext) -> Result<MoonshotTarget, ActionError> {
    let access =
        m.moonshot.as_ref().ok_or_else(|| ActionError::Config(format!("{}: no [moonshot] in the inventory", m.id)))?;
    let password = access.password.resolve().map_err(|e| {
        ActionError::Config(format!("{}: moonshot password ({}): {e}", m.id, access.password.describe()))
    })?;
    let mut t = MoonshotTarget::new(&access.chassis, access.node, &access.user, password);
    t.port = access.port;
    t.tls = access.tls.clone();
    t.gate = cx.settings.gates.clone();
    Ok(t)
}

fn power(p: &NodePower) -> Power {
    match p {
        NodePower::On => Power::On,
        NodePower::Off => Power::Off,
        NodePower::Other(o) => Power::Other(o.clone()),
    }
}
