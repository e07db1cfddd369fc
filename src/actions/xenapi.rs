//! `xenapi_reboot`: restart a Xen VM through the pool master: clean shutdown
//! (hard when the guest cannot), the configured pause, start. The VM is the
//! inventory's `[xen] vm_uuid` for the machine (the original passed the host
//! name where the UUID belonged).

use super::report::{Report, XenReport};
use super::{ActionContext, ActionError, Restore, Subject};
use crate::drivers::xenapi::{self as driver, XenTarget};

pub async fn run(on: &Subject, cx: &ActionContext) -> Result<Report, ActionError> {
    let m = on.machine()?;
    let uuid = m
        .xen_vm_uuid
        .as_deref()
        .ok_or_else(|| ActionError::Config(format!("{}: no [xen] vm_uuid in the inventory", m.id)))?;
    let t = xen_target(cx)?;
    let delay = cx.settings.xen.as_ref().map(|x| x.delay).unwrap_or_default();
    cx.log(format!("XenAPI {}: restarting VM {uuid} (pause {}s between shutdown and start)", t.url, delay.as_secs()));
    // Recorded right before the shutdown: whatever stops this job from then on, the VM
    // is started again.
    let restore = Restore::XenVmStart { step: "xenapi_reboot".into(), vm: uuid.to_string() };
    let arm = async || cx.arm(restore).await.map_err(|e| e.to_string());
    let done = driver::reboot_vm_after(&t, uuid, delay, &cx.cancel, arm)
        .await
        .map_err(|e| ActionError::driver("xenapi_reboot", e))?;
    cx.disarm().await;
    if let Some(why) = &done.clean_failure {
        cx.log(format!("clean shutdown refused ({why}); used a hard shutdown"));
    }
    cx.log(format!("VM {uuid} was shut down ({}) and started again", done.shutdown));
    // Halted, then started: the power cycle the reboot chain accepts as half its proof.
    Ok(XenReport {
        evidence: None,
        vm: uuid.to_string(),
        shutdown: done.shutdown.to_string(),
        clean_failure: done.clean_failure,
        cycle_observed: true,
    }
    .into())
}

/// The pool master roller talks to, from the settings.
pub(crate) fn xen_target(cx: &ActionContext) -> Result<XenTarget, ActionError> {
    let x = cx.settings.xen.as_ref().ok_or_else(|| {
        ActionError::Config("xenapi_reboot: no XenAPI is configured (XEN_URL, XEN_USERNAME, XEN_PASSWORD)".into())
    })?;
    Ok(XenTarget {
        url: x.url.clone(),
        user: x.user.clone(),
        password: x.password.clone(),
        verify_tls: x.verify_tls,
        timeout: x.timeout,
    })
}
