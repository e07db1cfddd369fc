//! `ssh_reboot`: ask the machine to reboot itself, over ssh as the inventory's
//! ForceCommand user (`reboot`, falling back to `shutdown -f -t 3 -r`).
//!
//! The task reports what the host accepted. Proving that it really went down and
//! came back is the reboot chain's job.

use serde_json::json;

use super::{ActionContext, ActionError, Target, machine};
use crate::drivers::counted;
use crate::drivers::ssh::{self as driver, HostKeyPolicy, SshError, SshTarget};
use crate::inventory::Machine;

pub async fn run(target: &Target, cx: &ActionContext) -> Result<serde_json::Value, ActionError> {
    run_on(&machine(target, cx)?, cx).await
}

/// The step on the machine `m` (the reboot chain's entry).
pub(crate) async fn run_on(m: &Machine, cx: &ActionContext) -> Result<serde_json::Value, ActionError> {
    let t = ssh_target(m)?;
    cx.log(format!("ssh {}@{}:{}: requesting a reboot", t.user, t.host, t.port));
    let accepted = driver::reboot(&t, &cx.cancel).await.map_err(|e| match counted(e) {
        SshError::Cancelled => ActionError::Cancelled,
        e @ (SshError::InvalidHost(_) | SshError::KeyFile { .. } | SshError::KnownHostsFile { .. }) => {
            ActionError::Config(format!("ssh_reboot: {e}"))
        }
        e => ActionError::Failed(format!("ssh_reboot: {e}")),
    })?;
    match accepted.exit_status {
        Some(status) => cx.log(format!("{}: `{}` exited {status}", t.host, accepted.command)),
        None => {
            cx.log(format!("{}: `{}` accepted; the connection closed as the host went down", t.host, accepted.command))
        }
    }
    Ok(json!({
        "host": t.host,
        "user": t.user,
        "command": accepted.command,
        "exit_status": accepted.exit_status,
        "output": accepted.output,
    }))
}

fn ssh_target(m: &Machine) -> Result<SshTarget, ActionError> {
    let access = m.ssh.as_ref().ok_or_else(|| ActionError::Config(format!("{}: no [ssh] in the inventory", m.id)))?;
    let policy = if access.accept_new {
        HostKeyPolicy::AcceptNew(access.known_hosts.clone())
    } else {
        HostKeyPolicy::KnownHosts(access.known_hosts.clone())
    };
    let mut t = SshTarget::new(&m.address, &access.user, &access.key_file, policy)
        .map_err(|e| ActionError::Config(format!("{}: {e}", m.id)))?;
    t.port = access.port;
    Ok(t)
}
