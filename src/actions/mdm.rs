//! `mdm_restart`: ask a Mac's MDM service (SimpleMDM) to restart it. For Macs without a
//! BMC (Apple-silicon Mac minis): after `ssh_reboot`, before the PDU.
//!
//! The device is the inventory's `[mdm] device_id`. It is looked up first: a device
//! SimpleMDM does not know, or one no longer enrolled, fails at once (nothing was asked,
//! so a reboot chain moves on without waiting for a proof), and the job records its name
//! and last check-in. Then the restart is asked for; SimpleMDM's 202 means it is queued.
//!
//! The restart is **in-band**: the Mac runs it at its next MDM check-in. A wedged OS, or a
//! Mac off the network, never runs it, and nothing here cuts or restores power (so no
//! restore is armed). Whether it happened is the reboot chain's proof, as for every step
//! (the machine goes down and comes back); when it is not proven the chain goes on to its
//! next step (the PDU). The report and the log say so.

use super::report::{MdmReport, Report};
use super::{ActionContext, ActionError, PowerChange, Subject};
use crate::drivers::simplemdm::{Budget, Progress, Restart, SimpleMdm, SimpleMdmError, WaitFrom};
use crate::inventory::{MdmAccess, MdmProvider};

/// Why the step is skipped, and what the action says, when no account is configured.
pub const NOT_CONFIGURED: &str =
    "no SimpleMDM is configured (SIMPLEMDM_API_KEY, or simplemdm.api_key_env / api_key_file)";

const NOTE: &str = "in-band: SimpleMDM queues Apple's RestartDevice command, which the Mac runs at its next MDM \
                    check-in; no power is cut, and a wedged or offline Mac never runs it. In a reboot chain it counts \
                    only when the Mac is seen going down and coming back; otherwise the chain goes on to its next step";

pub async fn run(on: &Subject, cx: &ActionContext) -> Result<Report, ActionError> {
    let m = on.machine()?;
    let access = m.mdm.ok_or_else(|| ActionError::Config(format!("{}: no [mdm] in the inventory", m.id)))?;
    let client = match access.provider {
        MdmProvider::SimpleMdm => cx
            .settings
            .simplemdm
            .as_ref()
            .ok_or_else(|| ActionError::Config(format!("mdm_restart: {NOT_CONFIGURED}")))?,
    };
    let id = access.device_id;
    let progress = |p: Progress| cx.log(progress_line(client, p));
    let budget = Budget { deadline: cx.soft_deadline, cancel: &cx.cancel, progress: &progress };
    let fail = |e: SimpleMdmError| ActionError::driver("mdm_restart", e);

    let device = client.device(id, &budget).await.map_err(fail)?;
    let seen = device
        .last_seen_at
        .as_deref()
        .map(|t| format!("last MDM check-in {t}"))
        .unwrap_or_else(|| "no last check-in reported".into());
    cx.log(format!("SimpleMDM device {id} {:?}: {}, {seen}", device.name, device.status));
    if device.status != "enrolled" {
        return Err(ActionError::Failed(format!(
            "mdm_restart: SimpleMDM device {id} ({:?}) is {:?}, not enrolled: it takes no MDM commands; nothing was asked",
            device.name, device.status
        )));
    }
    cx.log(format!(
        "asking SimpleMDM to restart device {id}: in-band, the Mac runs it at its next MDM check-in; no power is cut"
    ));
    // Counted as a restart from here (the breaker), even if this runner dies next.
    cx.touch(PowerChange::OsReboot).await?;
    let (restart, http_status, why_unconfirmed) = match client.restart(id, &budget).await.map_err(fail)? {
        Restart::Queued { status } => {
            cx.log(format!(
                "SimpleMDM accepted the restart of device {id} (HTTP {status}): queued for the Mac's next check-in; \
                 unless the Mac is seen going down and coming back, a reboot chain goes on to its next step"
            ));
            ("queued", Some(status), None)
        }
        // Not a failure: it may be queued. Sending it again could restart the Mac twice.
        Restart::Unconfirmed { status, why } => {
            cx.log(format!(
                "restart of SimpleMDM device {id} sent, unconfirmed: {why}; not sent again (a second would restart \
                 the Mac again after its boot): whether it happened is the reboot chain's proof"
            ));
            ("unconfirmed", status, Some(why))
        }
    };
    Ok(MdmReport {
        mdm: access.provider.name(),
        device_id: id.get(),
        device_name: device.name,
        status: device.status,
        last_seen_at: device.last_seen_at,
        restart,
        http_status,
        why_unconfirmed,
        delivery: "in-band",
        note: NOTE,
    }
    .into())
}

/// The job-log line for what a SimpleMDM call is waiting for.
fn progress_line(client: &SimpleMdm, p: Progress) -> String {
    match p {
        Progress::WaitingForSlot { cap } => format!(
            "waiting for a SimpleMDM slot: all {cap} of this process's are in use (simplemdm.max_concurrent; one \
             account, one rate limit)"
        ),
        Progress::Retrying { attempt, status, wait, from } => {
            let answer = match status {
                Some(429) => "HTTP 429 (rate limited)".to_string(),
                Some(s) => format!("HTTP {s}"),
                None => format!("no connection to {}", client.base()),
            };
            let why = match from {
                WaitFrom::RetryAfter => "as its Retry-After asks",
                WaitFrom::Backoff => "backing off",
            };
            format!("SimpleMDM answered try {attempt} with {answer}; trying again in {:.1}s, {why}", wait.as_secs_f64())
        }
    }
}

/// What `mdm_restart` would ask, for `roller explain` (no call is made).
pub fn describe(a: &MdmAccess) -> String {
    format!(
        "{} device {} (in-band: runs at the Mac's next MDM check-in; no power cut)",
        match a.provider {
            MdmProvider::SimpleMdm => "SimpleMDM",
        },
        a.device_id
    )
}
