//! Restoring power a step cut and could not switch back on: the other half of an
//! off-then-on power change (`snmp_rebootdelay`, iLO's off/on fallback, a XenAPI
//! shutdown/start), when the first half went out and the action did not finish.
//!
//! Before an action cuts power it *arms* a [`Restore`] through its context (the
//! runner writes it into the job record first, so a runner killed at that instant
//! leaves the repair behind), and *disarms* it once power is back. Whoever ends
//! up holding an armed restore runs [`run`]: the runner when the action was
//! cancelled, timed out, failed or was dropped at shutdown; the runner that takes
//! a lost job over (the queue hands an armed job out for its repair, never to run
//! its task again); `roller run` after Ctrl-C. The repair reads the device first
//! and switches power on only if it is off, so running it twice, or for a change
//! that never went out, does nothing.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{ActionContext, ActionError, Subject, ilo, snmp};
use crate::drivers::ilo as ilo_driver;
use crate::drivers::snmp::{self as snmp_driver, OutletAction, OutletStatus};
use crate::drivers::xenapi as xen_driver;

/// How long a repair may take in all: it runs after the job's own limits.
pub const RESTORE_WITHIN: Duration = Duration::from_secs(90);

/// The repair that undoes a half-done power change, as kept in the job record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "restore", rename_all = "snake_case")]
pub enum Restore {
    /// A PDU outlet was (or was about to be) switched off: switch it on.
    PduOutletOn { step: String, outlet: String },
    /// The iLO was told to switch the host off: switch it on.
    IloPowerOn { step: String, ilo: String },
    /// The Xen VM was (or was about to be) shut down: start it.
    XenVmStart { step: String, vm: String },
}

impl Restore {
    /// What the repair does, in the words the job record and the operator get.
    pub fn describe(&self) -> String {
        match self {
            Restore::PduOutletOn { outlet, .. } => format!("switch PDU outlet {outlet} back on"),
            Restore::IloPowerOn { ilo, .. } => format!("switch the host back on through iLO {ilo}"),
            Restore::XenVmStart { vm, .. } => format!("start Xen VM {vm} again"),
        }
    }

    /// The state it repairs, should the repair fail: "outlet AA5 left OFF".
    pub fn left(&self) -> String {
        match self {
            Restore::PduOutletOn { outlet, .. } => format!("PDU outlet {outlet} may be left OFF"),
            Restore::IloPowerOn { ilo, .. } => format!("the host behind iLO {ilo} may be left OFF"),
            Restore::XenVmStart { vm, .. } => format!("Xen VM {vm} may be left halted"),
        }
    }

    /// The step whose change this repairs.
    pub fn step(&self) -> &str {
        match self {
            Restore::PduOutletOn { step, .. } | Restore::IloPowerOn { step, .. } | Restore::XenVmStart { step, .. } => {
                step
            }
        }
    }

    pub fn to_record(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_record(s: &str) -> Result<Restore, String> {
        serde_json::from_str(s).map_err(|e| format!("unreadable restore record {s:?}: {e}"))
    }
}

/// Carry out `r` for a job whose action has stopped: on a fresh cancellation token
/// (`cancel`: a second Ctrl-C, a shutdown), within `within`; disarmed on success.
/// The answer says what was found and done, or why it failed.
pub async fn repair(
    r: &Restore,
    on: &Subject,
    cx: &ActionContext,
    within: Duration,
    cancel: CancellationToken,
) -> Result<String, String> {
    let repair_cx = cx.for_repair(cancel);
    match tokio::time::timeout(within, run(r, on, &repair_cx)).await {
        Ok(Ok(what)) => {
            repair_cx.disarm().await;
            Ok(what)
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", within.as_secs())),
    }
}

/// Carry out `r` on the job's machine: read the device, switch power on if it is
/// off, read it back. The answer says what was found and done. `cx.cancel` should be
/// a fresh token (the job's own is cancelled by now); the caller bounds the time.
pub async fn run(r: &Restore, on: &Subject, cx: &ActionContext) -> Result<String, ActionError> {
    let m = on.machine()?;
    match r {
        Restore::PduOutletOn { step, outlet } => {
            let (pdu, parsed) = snmp::pdu_target(m, cx, step)?;
            let fail = |e| ActionError::driver("restore", e);
            let now = snmp_driver::outlet_status(&pdu, parsed, &cx.cancel).await.map_err(fail)?;
            if now == OutletStatus::On {
                return Ok(format!("PDU outlet {outlet} was on already"));
            }
            cx.log(format!("restore: PDU outlet {outlet} reports {}: switching it on", snmp::status_name(now)));
            snmp_driver::set_outlet(&pdu, parsed, OutletAction::On, &cx.cancel).await.map_err(fail)?;
            let after = snmp_driver::outlet_status(&pdu, parsed, &cx.cancel).await.map_err(fail)?;
            if after != OutletStatus::On {
                return Err(ActionError::Failed(format!(
                    "PDU outlet {outlet} still reports {after:?} after switching on"
                )));
            }
            Ok(format!("PDU outlet {outlet} was {}; switched back on (reads on)", snmp::status_name(now)))
        }
        Restore::IloPowerOn { ilo, .. } => {
            let t = ilo::ilo_target(m)?;
            let fail = |e| ActionError::driver("restore", e);
            if ilo_driver::host_power(&t, &cx.cancel).await.map_err(fail)? == ilo_driver::HostPower::On {
                return Ok(format!("the host behind iLO {ilo} was on already"));
            }
            cx.log(format!("restore: iLO {ilo} reports host power off: switching it on"));
            ilo_driver::set_host_power(&t, true, &cx.cancel).await.map_err(fail)?;
            ilo::confirm(cx, &t, ilo_driver::HostPower::On).await?;
            Ok(format!("the host behind iLO {ilo} was off; switched back on (reads on)"))
        }
        Restore::XenVmStart { vm, .. } => {
            let t = super::xenapi::xen_target(cx)?;
            let started = xen_driver::ensure_vm_running(&t, vm, &cx.cancel)
                .await
                .map_err(|e| ActionError::driver("restore", e))?;
            Ok(if started { format!("Xen VM {vm} was halted; started it") } else { format!("Xen VM {vm} was running") })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_survives_the_job_record_and_says_what_it_repairs() {
        let r = Restore::PduOutletOn { step: "snmp_rebootdelay".into(), outlet: "AA5".into() };
        let kept = r.to_record();
        assert!(kept.contains("pdu_outlet_on") && kept.contains("AA5"), "{kept}");
        assert_eq!(Restore::from_record(&kept).unwrap(), r);
        assert_eq!(r.describe(), "switch PDU outlet AA5 back on");
        assert_eq!(r.left(), "PDU outlet AA5 may be left OFF");
        assert_eq!(r.step(), "snmp_rebootdelay");
        assert!(Restore::from_record("{\"restore\":\"unplug_it\"}").is_err());
    }
}
