//! `xenapi_reboot`: restart a Xen VM through the pool master: clean shutdown
//! (hard when the guest cannot), the configured pause, start. The VM is the
//! inventory's `[xen] vm_uuid` for the machine (the original passed the host
//! name where the UUID belonged).

use serde_json::{Value, json};

use super::{ActionContext, ActionError, Target, machine};
use crate::drivers::counted;
use crate::drivers::xenapi::{self as driver, XenError, XenTarget};
use crate::inventory::Machine;

pub async fn run(target: &Target, cx: &ActionContext) -> Result<Value, ActionError> {
    run_on(&machine(target, cx)?, cx).await
}

/// The step on the machine `m` (the reboot chain's entry).
pub(crate) async fn run_on(m: &Machine, cx: &ActionContext) -> Result<Value, ActionError> {
    let uuid = m
        .xen_vm_uuid
        .as_deref()
        .ok_or_else(|| ActionError::Config(format!("{}: no [xen] vm_uuid in the inventory", m.id)))?;
    let x = cx.settings.xen.as_ref().ok_or_else(|| {
        ActionError::Config("xenapi_reboot: no XenAPI is configured (XEN_URL, XEN_USERNAME, XEN_PASSWORD)".into())
    })?;
    let t = XenTarget {
        url: x.url.clone(),
        user: x.user.clone(),
        password: x.password.clone(),
        verify_tls: x.verify_tls,
        timeout: x.timeout,
    };
    cx.log(format!("XenAPI {}: restarting VM {uuid} (pause {}s between shutdown and start)", t.url, x.delay.as_secs()));
    let done = driver::reboot_vm(&t, uuid, x.delay, &cx.cancel).await.map_err(|e| match counted(e) {
        XenError::Cancelled => ActionError::Cancelled,
        e @ XenError::InvalidUrl(_) => ActionError::Config(format!("xenapi_reboot: {e}")),
        e => ActionError::Failed(format!("xenapi_reboot: {e}")),
    })?;
    if let Some(why) = &done.clean_failure {
        cx.log(format!("clean shutdown refused ({why}); used a hard shutdown"));
    }
    cx.log(format!("VM {uuid} was shut down ({}) and started again", done.shutdown));
    // Halted, then started: the power cycle the reboot chain accepts as half its proof.
    Ok(json!({ "vm": uuid, "shutdown": done.shutdown, "clean_failure": done.clean_failure, "cycle_observed": true }))
}
