//! Standing path checks: a broken iLO or an expired key is found before the incident
//! that needs it, not during it.
//!
//! Every way roller reaches a machine (its BMC over IPMI or Redfish, its PDU outlet,
//! ssh, its iLO, its Xen VM) and roller's shared credentials (Bugzilla, Taskcluster)
//! are proven usable **without changing anything**: a login and a read, never a write.
//!
//! - [`PathKind`]: the closed set of paths, and which task goes by which
//!   ([`PathKind::for_task`]): a new driver adds its kind there and its check in
//!   [`check`], and nowhere else.
//! - [`PathRecord`]: a machine's last result per path (ok or failed, the reason, when),
//!   one record per machine in the queue backend's shared records, so every process and
//!   the API read the same.
//! - [`no_path`]: whether a machine has any way left for roller to restart it: every
//!   path its remediation could use failed its last check, or it has none configured.
//!   Health shows such a machine as `no_path`; the medic escalates instead of queueing a
//!   futile job.
//! - [`checker`]: the periodic, rate-limited, leased background check, which also runs
//!   the checks operators ask for (`roller paths check`, `POST …/paths/check`).

pub mod check;
pub mod checker;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::inventory::Machine;
use crate::queue::QueueError;
use crate::queue::records::{RecordKind, Records};
use crate::task::{Needs, Task};

/// A way roller reaches a machine, or one of its shared credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PathKind {
    /// The BMC over IPMI: a session and `chassis power status`.
    Ipmi,
    /// The BMC over Redfish: a session, the system's `PowerState`, the logout.
    Redfish,
    /// The PDU over SNMP: a GET of the outlet's status.
    Pdu,
    /// ssh: the host key against known_hosts and the key's authentication; no channel.
    Ssh,
    /// HP iLO over RIBCL: the login and `GET_HOST_POWER_STATUS`.
    Ilo,
    /// The Xen pool master: login, the VM's power state, logout.
    Xen,
    /// The HP Moonshot chassis manager: a GET of the node's resource (its power, if offered).
    Moonshot,
    /// The Mac's MDM: the device's record in SimpleMDM, enrolled.
    Mdm,
    /// Roller's Bugzilla API key (`GET /rest/whoami`).
    Bugzilla,
    /// Roller's Taskcluster credentials (`auth.currentScopes`).
    Taskcluster,
}

impl PathKind {
    /// The paths a machine may have, in the order they are checked.
    pub const MACHINE: [PathKind; 8] = [
        PathKind::Ipmi,
        PathKind::Redfish,
        PathKind::Pdu,
        PathKind::Ssh,
        PathKind::Ilo,
        PathKind::Xen,
        PathKind::Moonshot,
        PathKind::Mdm,
    ];
    /// Roller's own credentials, shared by every machine.
    pub const SHARED: [PathKind; 2] = [PathKind::Bugzilla, PathKind::Taskcluster];

    pub fn as_str(self) -> &'static str {
        match self {
            PathKind::Ipmi => "ipmi",
            PathKind::Redfish => "redfish",
            PathKind::Pdu => "pdu",
            PathKind::Ssh => "ssh",
            PathKind::Ilo => "ilo",
            PathKind::Xen => "xen",
            PathKind::Moonshot => "moonshot",
            PathKind::Mdm => "mdm",
            PathKind::Bugzilla => "bugzilla",
            PathKind::Taskcluster => "taskcluster",
        }
    }

    /// The machine path `task` goes by; `None` for tasks that need none (ping, the bug,
    /// the chain itself, which goes by its steps').
    pub fn for_task(task: Task) -> Option<PathKind> {
        match task.spec().needs {
            Needs::Ipmi => Some(PathKind::Ipmi),
            Needs::Redfish => Some(PathKind::Redfish),
            Needs::Pdu => Some(PathKind::Pdu),
            Needs::Ssh => Some(PathKind::Ssh),
            Needs::Ilo => Some(PathKind::Ilo),
            Needs::Xen => Some(PathKind::Xen),
            Needs::Moonshot => Some(PathKind::Moonshot),
            Needs::Mdm => Some(PathKind::Mdm),
            Needs::BootControl | Needs::Nothing | Needs::Inventory => None,
        }
    }

    /// Whether the inventory gives `m` this path.
    pub fn configured(self, m: &Machine) -> bool {
        match self {
            PathKind::Ipmi => m.ipmi.is_some(),
            PathKind::Redfish => m.redfish.is_some(),
            PathKind::Pdu => m.pdu.is_some(),
            PathKind::Ssh => m.ssh.is_some(),
            PathKind::Ilo => m.ilo.is_some(),
            PathKind::Xen => m.xen_vm_uuid.is_some(),
            PathKind::Moonshot => m.moonshot.is_some(),
            PathKind::Mdm => m.mdm.is_some(),
            PathKind::Bugzilla | PathKind::Taskcluster => false,
        }
    }
}

/// How a path's last check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
        }
    }
}

/// One path's last check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PathResult {
    pub kind: PathKind,
    pub outcome: Outcome,
    /// What was proven (`power on`, `authenticated as roller`), or why it failed.
    pub reason: String,
    /// When the check started.
    pub checked_at: DateTime<Utc>,
    /// Since when it has failed, check after check (the first failure in a row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<DateTime<Utc>>,
}

impl PathResult {
    pub fn ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }
}

/// A machine's (or the shared credentials') last check of every path it has.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PathRecord {
    /// When the last check started.
    pub checked_at: Option<DateTime<Utc>>,
    /// One per configured path, in [`PathKind`] order.
    pub paths: Vec<PathResult>,
}

impl PathRecord {
    pub fn to_record(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A record the store gave back; an unreadable one counts as never checked.
    pub fn from_record(s: &str) -> PathRecord {
        serde_json::from_str(s).unwrap_or_default()
    }

    pub fn get(&self, kind: PathKind) -> Option<&PathResult> {
        self.paths.iter().find(|p| p.kind == kind)
    }
}

/// Someone asked for a check now (`POST …/paths/check`): the checker runs it at its next
/// look unless a check started after `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CheckRequest {
    pub at: DateTime<Utc>,
    /// The client id that asked.
    pub by: String,
}

impl CheckRequest {
    /// Still waiting for a check that started after it.
    pub fn pending(&self, record: Option<&PathRecord>) -> bool {
        record.and_then(|r| r.checked_at).is_none_or(|c| c < self.at)
    }
}

/// What the checker did last (the lease holder writes it at each look).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CheckerStatus {
    pub at: DateTime<Utc>,
    /// The process that holds the checker's lease (`host:pid:random`).
    pub holder: String,
    /// `[paths] enabled`: whether machines are checked periodically (asked-for checks run either way).
    pub periodic: bool,
    /// Machines (and the shared credentials) checked at this look.
    pub checked: usize,
    /// Due by the schedule but left for later: `max_per_minute` was reached.
    pub waiting_for_rate: usize,
    /// Checks started within the last minute.
    pub last_minute: usize,
}

/// Keys in the `paths` records besides worker ids (`:` is in no worker id).
pub mod keys {
    /// The shared credentials' [`PathRecord`](super::PathRecord).
    pub const SHARED: &str = "shared:credentials";
    /// The checker's [`CheckerStatus`](super::CheckerStatus).
    pub const STATUS: &str = "checker:last";
    /// A [`CheckRequest`](super::CheckRequest) for a machine is `request:<worker_id>`.
    pub const REQUEST: &str = "request:";
    /// The request for the shared credentials.
    pub const SHARED_REQUEST: &str = "request:shared:credentials";
}

/// What is stored under the `paths` kind, read apart.
#[derive(Default)]
pub struct Snapshot {
    pub machines: BTreeMap<String, PathRecord>,
    pub shared: Option<PathRecord>,
    pub requests: BTreeMap<String, CheckRequest>,
    pub shared_request: Option<CheckRequest>,
    pub status: Option<CheckerStatus>,
}

/// Every `paths` record, by what it is.
pub async fn snapshot(records: &dyn Records) -> Result<Snapshot, QueueError> {
    let mut s = Snapshot::default();
    for (key, r) in records.records(RecordKind::Paths).await? {
        if key == keys::SHARED {
            s.shared = Some(PathRecord::from_record(&r));
        } else if key == keys::STATUS {
            s.status = serde_json::from_str(&r).ok();
        } else if key == keys::SHARED_REQUEST {
            s.shared_request = serde_json::from_str(&r).ok();
        } else if let Some(id) = key.strip_prefix(keys::REQUEST) {
            if let Ok(q) = serde_json::from_str(&r) {
                s.requests.insert(id.to_string(), q);
            }
        } else if !key.contains(':') {
            s.machines.insert(key, PathRecord::from_record(&r));
        }
    }
    Ok(s)
}

/// `[paths]`: the standing check's schedule and bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathSettings {
    /// Check every machine periodically. Asked-for checks run either way.
    pub enabled: bool,
    /// Each machine is checked once per interval, at its own point in it.
    pub interval: Duration,
    /// Periodic checks started in any minute, at most.
    pub max_per_minute: usize,
    /// Machines checked at once (asked-for and periodic together).
    pub concurrency: usize,
}

impl Default for PathSettings {
    fn default() -> Self {
        Self { enabled: true, interval: Duration::from_secs(86_400), max_per_minute: 10, concurrency: 4 }
    }
}

/// The tasks a remediation runs on `m`: the class's reboot chain for the tasks that run
/// it, else the task itself.
fn remediation_steps(m: &Machine, remediation: Task) -> Vec<Task> {
    match remediation {
        Task::Reboot | Task::Reimage | Task::ReturnLoan => m.class.reboot.clone(),
        other => vec![other],
    }
}

/// The paths `remediation` could use on `m`: those of its steps the inventory configures.
pub fn remediation_paths(m: &Machine, remediation: Task) -> Vec<PathKind> {
    let mut kinds: Vec<PathKind> = remediation_steps(m, remediation)
        .into_iter()
        .filter_map(PathKind::for_task)
        .filter(|k| k.configured(m))
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Why roller has no way left to run `remediation` on `m`, if it has none: every path its
/// steps could use failed its last check, or (with `periodic`, `[paths] enabled`: the
/// deployment checks paths) nothing its steps could use is configured. A path not
/// checked yet still counts as a way (roller does not know it is broken).
pub fn no_path(m: &Machine, remediation: Task, record: Option<&PathRecord>, periodic: bool) -> Option<String> {
    let kinds = remediation_paths(m, remediation);
    if kinds.is_empty() {
        if !periodic {
            return None;
        }
        let steps: Vec<&str> = remediation_steps(m, remediation).iter().map(|t| t.name()).collect();
        return Some(format!(
            "no remediation path: nothing {} could use is configured for it ({})",
            remediation.name(),
            steps.join(", ")
        ));
    }
    let mut failed = Vec::new();
    for k in kinds {
        match record.and_then(|r| r.get(k)) {
            Some(r) if !r.ok() => failed.push(format!("{} failed at {}: {}", k.as_str(), at(r.checked_at), r.reason)),
            _ => return None,
        }
    }
    Some(format!("no remediation path: every way roller could restart it failed its last check: {}", failed.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Inventory;

    fn inventory() -> Inventory {
        let t = r#"
[classes.mini]
reboot = ["ssh_reboot", "ipmi_reset", "snmp_reboot", "file_bugzilla_bug"]
[machines.m1]
class = "mini"
address = "10.0.0.1"
[machines.m1.ipmi]
address = "10.9.0.1"
user = "u"
password_env = "P"
[machines.m1.ssh]
user = "roller"
key_file = "/nonexistent"
known_hosts = "/nonexistent"
[machines.bare]
class = "mini"
address = "10.0.0.2"
"#;
        Inventory::parse(std::path::Path::new("test.toml"), t).unwrap()
    }

    fn result(kind: PathKind, ok: bool) -> PathResult {
        PathResult {
            kind,
            outcome: if ok { Outcome::Ok } else { Outcome::Failed },
            reason: if ok { "fine".into() } else { format!("{} broken", kind.as_str()) },
            checked_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            failing_since: None,
        }
    }

    #[test]
    fn a_machine_has_no_path_when_every_way_its_chain_could_use_failed() {
        let inv = inventory();
        let m = inv.machine(&crate::domain::WorkerId::parse("m1").unwrap()).unwrap();
        // The chain's ssh and ipmi steps are configured; snmp is not, the bug is no path.
        assert_eq!(remediation_paths(m, Task::Reboot), vec![PathKind::Ipmi, PathKind::Ssh]);
        assert_eq!(no_path(m, Task::Reboot, None, true), None, "not checked yet: roller does not know it is broken");
        let one_ok =
            PathRecord { checked_at: None, paths: vec![result(PathKind::Ipmi, false), result(PathKind::Ssh, true)] };
        assert_eq!(no_path(m, Task::Reboot, Some(&one_ok), true), None);
        let half = PathRecord { checked_at: None, paths: vec![result(PathKind::Ipmi, false)] };
        assert_eq!(no_path(m, Task::Reboot, Some(&half), true), None, "ssh not checked yet");
        let all =
            PathRecord { checked_at: None, paths: vec![result(PathKind::Ipmi, false), result(PathKind::Ssh, false)] };
        let why = no_path(m, Task::Reboot, Some(&all), true).expect("no path");
        assert!(why.contains("ipmi failed") && why.contains("ssh broken"), "{why}");
        // A remediation of one task goes by that task's path alone.
        assert_eq!(no_path(m, Task::SshReboot, Some(&one_ok), true), None);
        assert!(no_path(m, Task::IpmiReset, Some(&one_ok), true).is_some());
    }

    #[test]
    fn a_machine_with_nothing_configured_has_no_path() {
        let inv = inventory();
        let m = inv.machine(&crate::domain::WorkerId::parse("bare").unwrap()).unwrap();
        let why = no_path(m, Task::Reboot, None, true).expect("no path");
        assert!(why.contains("nothing reboot could use is configured"), "{why}");
        assert_eq!(no_path(m, Task::Reboot, None, false), None, "judged only where paths are checked");
        assert!(why.contains("ssh_reboot, ipmi_reset, snmp_reboot, file_bugzilla_bug"), "{why}");
    }

    #[test]
    fn requests_wait_for_a_check_that_started_after_them() {
        let t = |s: i64| DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap();
        let r = CheckRequest { at: t(10), by: "ops".into() };
        assert!(r.pending(None));
        assert!(r.pending(Some(&PathRecord { checked_at: Some(t(5)), paths: vec![] })));
        assert!(!r.pending(Some(&PathRecord { checked_at: Some(t(10)), paths: vec![] })));
    }
}
