//! `ssh_reboot`: ask the machine to reboot itself, over ssh as the inventory's
//! ForceCommand user (`reboot`, falling back to `shutdown -f -t 3 -r`).
//!
//! The task reports what the host accepted, or that the request was sent and the
//! session then went silent (sent, unconfirmed: `session: "silent"`, a success of
//! this task). Proving that it really went down and came back is the reboot chain's job.

use super::report::{Report, SshReport};
use super::{ActionContext, ActionError, Subject};
use crate::drivers::ssh::{self as driver, HostKeyPolicy, SessionEnd, SshTarget};
use crate::inventory::Machine;

pub async fn run(on: &Subject, cx: &ActionContext) -> Result<Report, ActionError> {
    let t = ssh_target(on.machine()?)?;
    cx.log(format!("ssh {}@{}:{}: requesting a reboot", t.user, t.host, t.port));
    // Counted as a restart from here (the breaker), even if this runner dies next.
    cx.touch(super::PowerChange::OsReboot).await?;
    let accepted = driver::reboot(&t, &cx.cancel).await.map_err(|e| ActionError::driver("ssh_reboot", e))?;
    match accepted.session {
        SessionEnd::Exited => {
            cx.log(format!("{}: `{}` exited {}", t.host, accepted.command, accepted.exit_status.unwrap_or_default()))
        }
        SessionEnd::Signalled | SessionEnd::Closed => {
            cx.log(format!("{}: `{}` accepted; the connection closed as the host went down", t.host, accepted.command))
        }
        // Not a failure: the host may be in the middle of the reboot it was asked
        // for. The chain proves it (down, then up) before it tries anything harder.
        SessionEnd::Silent => cx.log(format!(
            "{}: `{}` sent, unconfirmed: the session went silent (no exit status, no close, no answer to \
             keepalives for {}s); the host may be going down",
            t.host,
            accepted.command,
            t.silence.as_secs()
        )),
    }
    Ok(SshReport {
        host: t.host.clone(),
        user: t.user.clone(),
        command: accepted.command.to_string(),
        exit_status: accepted.exit_status,
        output: accepted.output,
        session: accepted.session.as_str(),
    }
    .into())
}

pub(crate) fn ssh_target(m: &Machine) -> Result<SshTarget, ActionError> {
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
