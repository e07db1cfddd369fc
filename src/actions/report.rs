//! What actions report: typed results, serialized into the job record.
//!
//! The reboot chain reads its steps' reports through these types (a renamed field
//! is a compiler error, not a reboot quietly "not proven"), and the job record
//! gets the same JSON clients have always seen: every struct here serializes to
//! the shape the API documents (`docs/results.md`, the OpenAPI `JobResult`).

use serde::Serialize;
use utoipa::ToSchema;

use super::evidence::Evidence;
use crate::task::Task;

/// A power state as a device reported it. Devices report more than on and off
/// (Redfish "powering on", a PDU's `offWait`): those are kept in their words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Power {
    On,
    Off,
    Other(String),
}

impl Serialize for Power {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Power {
    pub fn as_str(&self) -> &str {
        match self {
            Power::On => "on",
            Power::Off => "off",
            Power::Other(o) => o,
        }
    }
}

impl std::fmt::Display for Power {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The device a power report is from.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Device {
    /// An IPMI BMC (its host) or a Redfish service (its URL).
    Bmc {
        bmc: String,
    },
    Pdu {
        pdu: String,
        outlet: String,
    },
    Ilo {
        ilo: String,
    },
    /// A node (`c5n1`) behind an HP Moonshot chassis manager (`host:port`).
    Moonshot {
        chassis: String,
        node: String,
    },
}

/// A power read or change through a BMC, PDU or iLO. `power_before` is read before
/// the command; `power` after it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PowerReport {
    #[serde(flatten)]
    pub device: Device,
    /// What was sent ("cycle", "ForceRestart", "off, on", "RESET_SERVER" …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent: Option<String>,
    /// How long a PDU outlet was kept off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_secs: Option<u64>,
    /// Why the gentler command was refused (iLO's reset, before its off/on fallback).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_failure: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "on")]
    pub power_before: Option<Power>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "on")]
    pub power: Option<Power>,
    /// The device itself saw the power go off and then on again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cycle_observed: Option<bool>,
    /// What was taken before the first power cut of the job (see `Evidence`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Box<Evidence>>,
}

impl PowerReport {
    pub fn new(device: Device) -> Self {
        Self {
            device,
            sent: None,
            delay_secs: None,
            reset_failure: None,
            power_before: None,
            power: None,
            cycle_observed: None,
            evidence: None,
        }
    }

    /// Did the device see the power go from off to on? Half of a reboot's proof.
    pub fn power_cycled(&self) -> bool {
        self.cycle_observed == Some(true) || (self.power_before == Some(Power::Off) && self.power == Some(Power::On))
    }
}

/// `ipmi_list`: the newest SEL entries.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SelReport {
    pub bmc: String,
    pub sel: Vec<String>,
}

/// Round-trip times in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct Rtt {
    pub min: f64,
    pub avg: f64,
    pub max: f64,
}

/// `ping`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PingResult {
    /// The name that answered.
    pub host: String,
    pub address: String,
    /// "socket" or "command".
    pub method: String,
    pub sent: u32,
    pub received: u32,
    /// `null` when nothing answered.
    pub rtt_ms: Option<Rtt>,
}

/// `status`: the BMC's power reading, when the machine has a BMC.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PowerReading {
    /// "ipmi", "redfish" or "moonshot".
    pub source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "on")]
    pub state: Option<Power>,
    /// Why the BMC could not be read (reported, not fatal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `status`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatusReport {
    pub address: String,
    pub ip: String,
    /// "icmp" or "tcp:<port>".
    pub probe: String,
    pub answers: bool,
    /// `null` for a machine without a BMC.
    pub power: Option<PowerReading>,
}

/// `ssh_reboot`: what the host accepted, or was sent without confirming.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SshReport {
    pub host: String,
    pub user: String,
    pub command: String,
    /// `null` when the session ended without one (`session` says how).
    pub exit_status: Option<u32>,
    pub output: String,
    /// How the command's session ended: `exited` (status 0), `signalled` (killed by a
    /// shutdown's TERM/HUP/KILL), `closed` (the connection ended as the host went down),
    /// or `silent`: the request was sent, then nothing more came from the host (no exit
    /// status, no close, no answer to keepalives), so it is unconfirmed; the reboot
    /// chain's proof decides whether it happened.
    #[schema(example = "exited")]
    pub session: &'static str,
}

/// `xenapi_reboot`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct XenReport {
    pub vm: String,
    /// "clean", "hard", or "none (it was halted)".
    pub shutdown: String,
    pub clean_failure: Option<String>,
    /// A halt then a start is always an observed power cycle.
    pub cycle_observed: bool,
    /// What was taken before the first power cut of the job (see `Evidence`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Box<Evidence>>,
}

/// `mdm_restart`: what the MDM service knew of the Mac, and that it queued the restart.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MdmReport {
    /// The MDM service: `simplemdm`.
    #[schema(example = "simplemdm")]
    pub mdm: &'static str,
    pub device_id: u64,
    pub device_name: String,
    /// The service's enrolment status (`enrolled`).
    pub status: String,
    /// The Mac's last MDM check-in as the service reports it, when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen_at: Option<String>,
    /// `queued`: the service took the restart (202). `unconfirmed`: the request went out
    /// and no answer said whether it was taken (`why_unconfirmed`); it is not sent twice
    /// (a second would restart the Mac again after its boot), and the reboot chain's
    /// proof decides.
    #[schema(example = "queued")]
    pub restart: &'static str,
    /// The service's answer to the restart (202: queued), when one came.
    pub http_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why_unconfirmed: Option<String>,
    /// Always `in-band`: the Mac runs the restart itself at its next MDM check-in; no
    /// power is cut, and a Mac that is wedged or off the network never runs it.
    #[schema(example = "in-band")]
    pub delivery: &'static str,
    /// What the restart is and what happens when it is not proven, in words.
    pub note: &'static str,
}

/// `file_bugzilla_bug` (and the chain's bug step).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BugReport {
    pub bug: u64,
    pub url: String,
    /// A new bug was filed (else an open one got a comment).
    pub filed: bool,
    pub tracker: u64,
    pub tracker_reopened: bool,
    /// Set when `bug` is the chassis- or PDU-level incident bug shared with other
    /// machines (README, "One bug per incident"); absent for a per-machine bug.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<IncidentSummary>,
}

/// The incident bug a machine's bug step joined or filed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IncidentSummary {
    /// What the machines share: `chassis <name>` or `pdu <host>`.
    #[schema(example = "chassis mdc9-ms1")]
    pub group: String,
    /// The hosts this step listed on the bug: this machine, and when it filed the
    /// bug, the machines whose own bugs it replaced.
    pub machines: Vec<String>,
}

/// `loan`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LoanReport {
    pub loaned_to: String,
    pub loaned_until: String,
    pub provisioner_id: String,
    pub worker_type: String,
}

/// `return_loan`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LoanReturnReport {
    pub quarantine_lifted: bool,
    pub reimage: ReimageReport,
    /// What was taken before the first power cut of the job (see `Evidence`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Box<Evidence>>,
}

/// `reimage`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReimageReport {
    pub network_boot: String,
    pub reboot: RebootReport,
    pub note: &'static str,
    /// What was taken before the first power cut of the job (see `Evidence`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Box<Evidence>>,
}

/// How one step of a reboot chain went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum StepOutcome {
    #[serde(rename = "worked")]
    Worked,
    #[serde(rename = "not proven")]
    NotProven,
    #[serde(rename = "failed")]
    Failed,
    #[serde(rename = "skipped")]
    Skipped,
    #[serde(rename = "not tried")]
    NotTried,
    #[serde(rename = "filed")]
    Filed,
}

impl StepOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            StepOutcome::Worked => "worked",
            StepOutcome::NotProven => "not proven",
            StepOutcome::Failed => "failed",
            StepOutcome::Skipped => "skipped",
            StepOutcome::NotTried => "not tried",
            StepOutcome::Filed => "filed",
        }
    }
}

/// One step of a reboot chain as it was tried.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Attempt {
    #[schema(value_type = String, example = "ipmi_reset")]
    pub step: Task,
    pub outcome: StepOutcome,
    /// Why it was skipped, failed or not proven (for a filed bug: its URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What proved it (only when it worked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
    /// The failure's kind (`unreachable`, `refused`, `configuration`, `failed`), when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<&'static str>,
    /// The step's own report, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(no_recursion)]
    pub detail: Option<Box<Report>>,
}

/// `reboot`: the step that worked, its proof, and every step tried before it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RebootReport {
    /// The step that worked.
    #[schema(value_type = String, example = "ipmi_reset")]
    pub worked: Task,
    pub proof: String,
    /// The step that worked, from its start to the proof.
    pub seconds: f64,
    pub chain_seconds: f64,
    pub attempts: Vec<Attempt>,
    /// What was taken before the first power cut of the job (see `Evidence`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Box<Evidence>>,
}

/// What a job that did not succeed keeps as its `result` (beside its `error`): the
/// evidence it took before a power cut.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Findings {
    pub evidence: Box<Evidence>,
}

/// Nothing to report (`noop`): `{}`. Exactly that (`additionalProperties: false`, from
/// `deny_unknown_fields`): an open empty object would match every other shape too, and
/// `JobResult` is a `oneOf`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// What any action reports: one variant per shape, serialized without a tag so
/// the job record's `result` is the shape itself (OpenAPI: `JobResult`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = JobResult)]
#[serde(untagged)]
pub enum Report {
    Ping(PingResult),
    Status(StatusReport),
    Power(PowerReport),
    Sel(SelReport),
    Ssh(SshReport),
    Xen(XenReport),
    Mdm(MdmReport),
    Bug(BugReport),
    Reboot(RebootReport),
    Reimage(ReimageReport),
    Loan(LoanReport),
    LoanReturn(LoanReturnReport),
    Findings(Findings),
    Empty(Empty),
}

impl Report {
    /// The step's own read-back saw the power go off and on (the BMC, PDU, iLO or
    /// the Xen pool did): the reboot chain then only needs the machine to come back.
    pub fn power_cycled(&self) -> bool {
        match self {
            Report::Power(p) => p.power_cycled(),
            Report::Xen(x) => x.cycle_observed,
            Report::Ping(_)
            | Report::Status(_)
            | Report::Sel(_)
            | Report::Ssh(_)
            | Report::Mdm(_)
            | Report::Bug(_)
            | Report::Reboot(_)
            | Report::Reimage(_)
            | Report::Loan(_)
            | Report::LoanReturn(_)
            | Report::Findings(_)
            | Report::Empty(_) => false,
        }
    }

    /// The report with the job's evidence beside its own fields: the task's report is
    /// the job's result, and the evidence belongs to the job (taken once, before the
    /// first power cut of a direct power task or of a chain).
    pub fn with_evidence(self, e: &Evidence) -> Report {
        let e = Some(Box::new(e.clone()));
        match self {
            Report::Power(r) => Report::Power(PowerReport { evidence: e, ..r }),
            Report::Xen(r) => Report::Xen(XenReport { evidence: e, ..r }),
            Report::Reboot(r) => Report::Reboot(RebootReport { evidence: e, ..r }),
            Report::Reimage(r) => Report::Reimage(ReimageReport { evidence: e, ..r }),
            Report::LoanReturn(r) => Report::LoanReturn(LoanReturnReport { evidence: e, ..r }),
            Report::Findings(r) => Report::Findings(r),
            // These tasks never cut power, so no evidence is ever taken for them.
            r @ (Report::Ping(_)
            | Report::Status(_)
            | Report::Sel(_)
            | Report::Ssh(_)
            | Report::Bug(_)
            | Report::Loan(_)
            | Report::Mdm(_)
            | Report::Empty(_)) => r,
        }
    }

    /// The JSON the job record keeps.
    pub fn to_json(&self) -> serde_json::Value {
        // Every type here serializes to a JSON object: this cannot fail.
        serde_json::to_value(self).unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
    }
}

macro_rules! report_from {
    ($($ty:ident => $variant:ident),+ $(,)?) => {
        $(impl From<$ty> for Report {
            fn from(r: $ty) -> Report {
                Report::$variant(r)
            }
        })+
    };
}

report_from!(
    PingResult => Ping,
    StatusReport => Status,
    PowerReport => Power,
    SelReport => Sel,
    SshReport => Ssh,
    XenReport => Xen,
    MdmReport => Mdm,
    BugReport => Bug,
    RebootReport => Reboot,
    ReimageReport => Reimage,
    LoanReport => Loan,
    LoanReturnReport => LoanReturn,
    Findings => Findings,
    Empty => Empty,
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn power_reports_keep_the_shapes_clients_read() {
        let mut r = PowerReport::new(Device::Pdu { pdu: "pdu1".into(), outlet: "AA1".into() });
        r.sent = Some("reboot".into());
        r.power_before = Some(Power::Other("onWait".into()));
        r.power = Some(Power::On);
        r.cycle_observed = Some(false);
        assert_eq!(
            Report::from(r.clone()).to_json(),
            json!({"pdu": "pdu1", "outlet": "AA1", "sent": "reboot", "power_before": "onWait", "power": "on",
                   "cycle_observed": false})
        );
        assert!(!r.power_cycled());
        r.power_before = Some(Power::Off);
        assert!(r.power_cycled(), "off before and on after is a cycle the device saw");
        let bmc = PowerReport { power: Some(Power::Off), ..PowerReport::new(Device::Bmc { bmc: "b".into() }) };
        assert_eq!(Report::from(bmc).to_json(), json!({"bmc": "b", "power": "off"}));
    }

    #[test]
    fn a_chain_report_names_steps_and_outcomes_in_words() {
        let attempt = Attempt {
            step: Task::SshReboot,
            outcome: StepOutcome::NotProven,
            reason: Some("still answering".into()),
            proof: None,
            error_kind: None,
            detail: Some(Box::new(Report::Empty(Empty {}))),
        };
        let r = RebootReport {
            worked: Task::IpmiReset,
            proof: "p".into(),
            seconds: 1.5,
            chain_seconds: 3.0,
            attempts: vec![attempt],
            evidence: None,
        };
        assert_eq!(
            Report::from(r).to_json(),
            json!({"worked": "ipmi_reset", "proof": "p", "seconds": 1.5, "chain_seconds": 3.0,
                   "attempts": [{"step": "ssh_reboot", "outcome": "not proven", "reason": "still answering",
                                 "detail": {}}]})
        );
    }
}
