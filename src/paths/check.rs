//! One check per [`PathKind`]: through the drivers, with the targets the actions build
//! (the same secrets, ports, cipher suites and TLS settings a job uses), a login and a
//! read and nothing else. Each returns what it proved, or why the path is not usable.
//!
//! The caller's [`ActionContext`] carries the process's gates at background priority
//! ([`Gates::background`](crate::drivers::gate::Gates::background)): IPMI calls and the
//! PDU read take a slot on their device only when no job is using it; the devices whose
//! drivers take no slot (Redfish, iLO, Xen, ssh) get one here, so one device sees at most
//! one path check at a time.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Outcome, PathKind, PathResult};
use crate::actions::{ActionContext, ActionError};
use crate::drivers::ssh::HostKeySeen;
use crate::inventory::Machine;

/// One path's whole check, however slow the device (each driver also bounds its calls).
const CHECK_LIMIT: Duration = Duration::from_secs(90);

/// Every configured path of `m`, one after another (gentle on a machine whose BMC and
/// PDU are the same box), each with its result.
#[tracing::instrument(name = "path_check", skip_all, fields(worker_id = %m.id))]
pub async fn machine(m: &Machine, cx: &ActionContext, at: DateTime<Utc>) -> Vec<PathResult> {
    let mut out = Vec::new();
    for kind in PathKind::MACHINE.into_iter().filter(|k| k.configured(m)) {
        let r = bounded(machine_path(kind, m, cx)).await;
        out.push(result(kind, r, at));
    }
    out
}

/// Roller's shared credentials that are configured: Bugzilla's API key, the Taskcluster
/// client's credentials (an anonymous client has none to prove).
#[tracing::instrument(name = "path_check_shared", skip_all)]
pub async fn shared(cx: &ActionContext, at: DateTime<Utc>) -> Vec<PathResult> {
    let mut out = Vec::new();
    if cx.settings.bugzilla.is_some() {
        out.push(result(PathKind::Bugzilla, bounded(bugzilla(cx)).await, at));
    }
    if cx.settings.taskcluster.as_ref().is_some_and(|t| t.client.signed()) {
        out.push(result(PathKind::Taskcluster, bounded(taskcluster(cx)).await, at));
    }
    out
}

async fn bounded(f: impl Future<Output = Result<String, String>>) -> Result<String, String> {
    match tokio::time::timeout(CHECK_LIMIT, f).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} s", CHECK_LIMIT.as_secs())),
    }
}

fn result(kind: PathKind, r: Result<String, String>, at: DateTime<Utc>) -> PathResult {
    let (outcome, reason) = match r {
        Ok(proved) => (Outcome::Ok, proved),
        Err(why) => (Outcome::Failed, why),
    };
    metrics::counter!("roller_path_checks_total", "kind" => kind.as_str(), "outcome" => outcome.as_str()).increment(1);
    PathResult { kind, outcome, reason, checked_at: at, failing_since: None }
}

/// The check of one machine path: the one place a new kind plugs its check in.
pub async fn machine_path(kind: PathKind, m: &Machine, cx: &ActionContext) -> Result<String, String> {
    match kind {
        PathKind::Ipmi => ipmi(m, cx).await,
        PathKind::Redfish => redfish(m, cx).await,
        PathKind::Pdu => pdu(m, cx).await,
        PathKind::Ssh => ssh(m, cx).await,
        PathKind::Ilo => ilo(m, cx).await,
        PathKind::Xen => xen(m, cx).await,
        PathKind::Moonshot => moonshot(m, cx).await,
        PathKind::Mdm => mdm(m, cx).await,
        PathKind::Bugzilla | PathKind::Taskcluster => Err(format!("{} is not a machine's path", kind.as_str())),
    }
}

fn text(e: ActionError) -> String {
    e.to_string()
}

/// A slot on a device whose driver takes none, at background priority.
async fn slot(cx: &ActionContext, key: String) -> Result<crate::drivers::gate::Slot, String> {
    cx.settings.gates.enter(&key, &cx.cancel).await.ok_or_else(|| "cancelled".to_string())
}

/// `chassis power status` (the driver takes the BMC's slot).
async fn ipmi(m: &Machine, cx: &ActionContext) -> Result<String, String> {
    let t = crate::actions::ipmi::ipmi_target(m, cx).map_err(text)?;
    let power = crate::drivers::ipmi::power_status(&t, &cx.cancel).await.map_err(|e| e.to_string())?;
    Ok(format!("BMC {}:{} answered as {}: power {}", t.host, t.port, t.user, crate::actions::ipmi::name(power)))
}

/// A session (or basic auth), the system's `PowerState`, the logout.
async fn redfish(m: &Machine, cx: &ActionContext) -> Result<String, String> {
    let t = crate::actions::redfish::redfish_target(m).map_err(text)?;
    let _slot = slot(cx, format!("redfish:{}", t.base_url)).await?;
    let power = crate::drivers::redfish::power_state(&t, &cx.cancel).await.map_err(|e| e.to_string())?;
    Ok(format!("Redfish {} answered as {}: power {}", t.base_url, t.user, crate::actions::redfish::name(&power)))
}

/// A GET of the outlet's status, in a slot on the PDU; nothing is set.
async fn pdu(m: &Machine, cx: &ActionContext) -> Result<String, String> {
    let (t, outlet) = crate::actions::snmp::pdu_target(m, cx, "paths").map_err(text)?;
    let status =
        crate::drivers::snmp::outlet_status_in_slot(&t, outlet, &cx.cancel).await.map_err(|e| e.to_string())?;
    Ok(format!("PDU {}:{} outlet {outlet}: {}", t.host, t.port, crate::actions::snmp::status_name(status)))
}

/// The host key and the key's authentication; no channel, no command, nothing written.
async fn ssh(m: &Machine, cx: &ActionContext) -> Result<String, String> {
    let t = crate::actions::ssh::ssh_target(m).map_err(text)?;
    let _slot = slot(cx, format!("ssh:{}:{}", t.host, t.port)).await?;
    let seen = crate::drivers::ssh::authenticate(&t, &cx.cancel).await.map_err(|e| e.to_string())?;
    let key = match seen {
        HostKeySeen::Recorded => "host key matches known_hosts".to_string(),
        HostKeySeen::WouldRecord(f) => {
            format!("host key {f} not recorded yet (accept-new records it at the first reboot)")
        }
    };
    Ok(format!("ssh {}@{}:{}: {key}, key accepted", t.user, t.host, t.port))
}

/// The RIBCL login and `GET_HOST_POWER_STATUS`.
async fn ilo(m: &Machine, cx: &ActionContext) -> Result<String, String> {
    let t = crate::actions::ilo::ilo_target(m).map_err(text)?;
    let _slot = slot(cx, format!("ilo:{}:{}", t.host, t.port)).await?;
    let power = crate::drivers::ilo::host_power(&t, &cx.cancel).await.map_err(|e| e.to_string())?;
    let power = match power {
        crate::drivers::ilo::HostPower::On => "on",
        crate::drivers::ilo::HostPower::Off => "off",
    };
    Ok(format!("iLO {}:{} answered as {}: host power {power}", t.host, t.port, t.user))
}

/// Login to the pool master, the VM's power state, logout.
async fn xen(m: &Machine, cx: &ActionContext) -> Result<String, String> {
    let uuid = m.xen_vm_uuid.as_deref().ok_or_else(|| format!("{}: no [xen] vm_uuid in the inventory", m.id))?;
    let t = crate::actions::xenapi::xen_target(cx).map_err(text)?;
    let _slot = slot(cx, format!("xen:{}", t.url)).await?;
    let power = crate::drivers::xenapi::vm_power_state(&t, uuid, &cx.cancel).await.map_err(|e| e.to_string())?;
    Ok(format!("XenAPI {} as {}: VM {uuid} is {power}", t.url, t.user))
}

/// A `GET` of the node's resource on its chassis manager (the driver takes the chassis's
/// slot): the login and the TLS are proven even where no power field is offered.
async fn moonshot(m: &Machine, cx: &ActionContext) -> Result<String, String> {
    let t = crate::actions::moonshot::moonshot_target(m, cx).map_err(text)?;
    let power = crate::drivers::moonshot::power(&t, &cx.cancel).await.map_err(|e| e.to_string())?;
    let power = match power {
        Some(p) => format!("power {p}"),
        None => crate::actions::moonshot::NOT_OFFERED.to_string(),
    };
    Ok(format!("chassis manager {} answered for {}: {power}", t.chassis_name(), t.node))
}

/// The device's record in SimpleMDM (one account-wide slot, its retries within 30 s);
/// an unenrolled Mac takes no MDM command, so it fails the path.
async fn mdm(m: &Machine, cx: &ActionContext) -> Result<String, String> {
    let access = m.mdm.as_ref().ok_or_else(|| format!("{}: no [mdm] in the inventory", m.id))?;
    let client = cx.settings.simplemdm.as_ref().ok_or(crate::actions::mdm::NOT_CONFIGURED)?;
    let quiet = |_: crate::drivers::simplemdm::Progress| {};
    let budget = crate::drivers::simplemdm::Budget {
        deadline: Some(std::time::Instant::now() + std::time::Duration::from_secs(30)),
        cancel: &cx.cancel,
        progress: &quiet,
    };
    let device = client.device(access.device_id, &budget).await.map_err(|e| e.to_string())?;
    if device.status != "enrolled" {
        return Err(format!(
            "SimpleMDM device {} ({:?}) is {:?}: it takes no MDM command",
            access.device_id, device.name, device.status
        ));
    }
    Ok(format!("SimpleMDM device {} ({:?}) is enrolled", access.device_id, device.name))
}

/// `GET /rest/whoami` with roller's API key.
async fn bugzilla(cx: &ActionContext) -> Result<String, String> {
    let b = cx.settings.bugzilla.as_ref().ok_or("no Bugzilla is configured")?;
    let name = b.client.whoami(&cx.cancel).await.map_err(|e| e.to_string())?;
    Ok(format!("the API key is valid: Bugzilla knows it as {name}"))
}

/// `auth.currentScopes` with roller's credentials.
async fn taskcluster(cx: &ActionContext) -> Result<String, String> {
    let t = cx.settings.taskcluster.as_ref().ok_or("no Taskcluster credentials are configured")?;
    let scopes = t.client.current_scopes(&cx.cancel).await.map_err(|e| e.to_string())?;
    Ok(format!("the credentials are valid: {} scopes", scopes.len()))
}
