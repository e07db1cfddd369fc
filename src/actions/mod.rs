//! Actions: the closed set of tasks roller can run on a machine.
//!
//! Each task has one module with an `async fn run(target, cx)`. Actions compose
//! drivers; they never see HTTP, the queue or config files. The runner, and
//! `roller run` on the command line, both call [`execute`]: one code path.

pub mod bugzilla;
pub mod ilo;
pub mod ipmi;
pub mod loan;
pub mod ping;
pub mod reboot;
pub mod redfish;
pub mod reimage;
pub mod snmp;
pub mod ssh;
pub mod status;
pub mod xenapi;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::domain::{WorkerGroup, WorkerId};
use crate::drivers::counted;
use crate::drivers::dns::{DnsError, DnsResolver, Resolved};
use crate::drivers::ping::PingSettings;
use crate::drivers::reachability::ProbeSettings;
use crate::inventory::{InventoryHandle, Machine};

/// Every task roller knows. Adding one means a new variant, a module, and a row
/// in [`Task::ALL`]; the compiler finds the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Task {
    Ping,
    Status,
    IpmiStatus,
    IpmiOn,
    IpmiOff,
    IpmiCycle,
    IpmiReset,
    IpmiList,
    RedfishStatus,
    RedfishOn,
    RedfishOff,
    RedfishRestart,
    RedfishReset,
    SshReboot,
    SnmpReboot,
    SnmpRebootDelay,
    Reboot,
    FileBugzillaBug,
    Reimage,
    XenapiReboot,
    IloReboot,
    Loan,
    ReturnLoan,
    /// Does nothing and succeeds, so the benchmarks measure roller (API, queue, runner)
    /// rather than a driver. Outside [`Task::ALL`]: enabled only when `tasks.enabled` /
    /// `TASK_NAMES` names it, never by default.
    Noop,
}

impl Task {
    pub const ALL: &'static [Task] = &[
        Task::Ping,
        Task::Status,
        Task::IpmiStatus,
        Task::IpmiOn,
        Task::IpmiOff,
        Task::IpmiCycle,
        Task::IpmiReset,
        Task::IpmiList,
        Task::RedfishStatus,
        Task::RedfishOn,
        Task::RedfishOff,
        Task::RedfishRestart,
        Task::RedfishReset,
        Task::SshReboot,
        Task::SnmpReboot,
        Task::SnmpRebootDelay,
        Task::Reboot,
        Task::FileBugzillaBug,
        Task::Reimage,
        Task::XenapiReboot,
        Task::IloReboot,
        Task::Loan,
        Task::ReturnLoan,
    ];

    /// Tasks that exist for benchmarking only: parsed, but never in the default set.
    pub const BENCHMARK: &'static [Task] = &[Task::Noop];

    pub fn name(self) -> &'static str {
        match self {
            Task::Ping => "ping",
            Task::Status => "status",
            Task::IpmiStatus => "ipmi_status",
            Task::IpmiOn => "ipmi_on",
            Task::IpmiOff => "ipmi_off",
            Task::IpmiCycle => "ipmi_cycle",
            Task::IpmiReset => "ipmi_reset",
            Task::IpmiList => "ipmi_list",
            Task::RedfishStatus => "redfish_status",
            Task::RedfishOn => "redfish_on",
            Task::RedfishOff => "redfish_off",
            Task::RedfishRestart => "redfish_restart",
            Task::RedfishReset => "redfish_reset",
            Task::SshReboot => "ssh_reboot",
            Task::SnmpReboot => "snmp_reboot",
            Task::SnmpRebootDelay => "snmp_rebootdelay",
            Task::Reboot => "reboot",
            Task::FileBugzillaBug => "file_bugzilla_bug",
            Task::Reimage => "reimage",
            Task::XenapiReboot => "xenapi_reboot",
            Task::IloReboot => "ilo_reboot",
            Task::Loan => "loan",
            Task::ReturnLoan => "return_loan",
            Task::Noop => "noop",
        }
    }

    /// One line of help, for `roller tasks` and API error messages.
    pub fn help(self) -> &'static str {
        match self {
            Task::Ping => "ICMP echo the machine and report packets sent/received and round-trip times",
            Task::Status => "the machine's power state from its BMC (when it has one) and whether it answers",
            Task::IpmiStatus => "the chassis power state, from the BMC over IPMI",
            Task::IpmiOn => "power the machine on over IPMI and confirm the BMC reports it on",
            Task::IpmiOff => "power the machine off over IPMI and confirm the BMC reports it off",
            Task::IpmiCycle => "power-cycle over IPMI (a machine that is off is powered on instead)",
            Task::IpmiReset => "hard-reset over IPMI (a machine that is off is powered on instead)",
            Task::IpmiList => "the BMC's 15 most recent system event log (SEL) entries",
            Task::RedfishStatus => "the system's power state, from its Redfish service",
            Task::RedfishOn => "power on through Redfish and confirm the service reports it on",
            Task::RedfishOff => "force off through Redfish and confirm the service reports it off",
            Task::RedfishRestart => "graceful restart through Redfish (a machine that is off is powered on instead)",
            Task::RedfishReset => "forced restart through Redfish (a machine that is off is powered on instead)",
            Task::SshReboot => "ask the machine to reboot itself over ssh (`reboot`, then `shutdown -f -t 3 -r`)",
            Task::SnmpReboot => "power-cycle the machine's PDU outlet (the PDU's own reboot) and watch it come back on",
            Task::SnmpRebootDelay => "switch the PDU outlet off, wait the class's delay, switch it on",
            Task::Reboot => {
                "the class's reboot chain, gentlest first, each step proven by the machine going down and coming back"
            }
            Task::XenapiReboot => "shut the Xen VM down (clean, else hard) and start it again, through XenAPI",
            Task::IloReboot => {
                "reset the server through its HP iLO (RIBCL); power off and on when the reset is refused"
            }
            Task::Loan => "quarantine the worker in Taskcluster for the loan period, recording who has it until when",
            Task::ReturnLoan => "lift the worker's Taskcluster quarantine, then reimage it",
            Task::Reimage => "set the next boot to the network (PXE) through the BMC, then run the reboot chain",
            Task::FileBugzillaBug => {
                "file (or comment on) the machine's \"is unreachable\" bug, blocking its problem-tracking bug"
            }
            Task::Noop => "do nothing and succeed (benchmarks; only when tasks.enabled names it)",
        }
    }

    /// How many times the queue may hand the job out. Read-only tasks can be
    /// retried after a lost runner; tasks that change hardware must not be re-run blindly.
    pub fn max_attempts(self) -> u32 {
        match self {
            // Filing is deduplicated (a retry comments on the bug the lost attempt filed).
            Task::Ping
            | Task::Status
            | Task::IpmiStatus
            | Task::IpmiList
            | Task::RedfishStatus
            | Task::FileBugzillaBug
            | Task::Noop => 3,
            // They change the hardware: never re-run after a runner died mid-way.
            Task::IpmiOn
            | Task::IpmiOff
            | Task::IpmiCycle
            | Task::IpmiReset
            | Task::RedfishOn
            | Task::RedfishOff
            | Task::RedfishRestart
            | Task::RedfishReset
            | Task::SshReboot
            | Task::SnmpReboot
            | Task::SnmpRebootDelay
            | Task::Reboot
            | Task::Reimage
            | Task::XenapiReboot
            | Task::IloReboot
            | Task::Loan
            | Task::ReturnLoan => 1,
        }
    }

    /// Tasks that restart the machine (or may): what the reboot-loop breaker counts.
    pub fn restarts_machine(self) -> bool {
        matches!(
            self,
            Task::Reboot
                | Task::Reimage
                | Task::ReturnLoan
                | Task::SshReboot
                | Task::IpmiCycle
                | Task::IpmiReset
                | Task::SnmpReboot
                | Task::SnmpRebootDelay
                | Task::RedfishRestart
                | Task::RedfishReset
                | Task::XenapiReboot
                | Task::IloReboot
        )
    }

    /// "a, b, c": task names for messages that list what is allowed.
    pub fn list(tasks: &[Task]) -> String {
        tasks.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
    }

    pub fn parse(s: &str) -> Option<Task> {
        Task::ALL.iter().chain(Task::BENCHMARK).copied().find(|t| t.name() == s)
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The machine an action works on.
#[derive(Debug, Clone)]
pub struct Target {
    pub worker_id: WorkerId,
    pub worker_group: WorkerGroup,
}

/// Settings the actions need, resolved from configuration by the caller.
#[derive(Debug, Clone, Default)]
pub struct ActionSettings {
    pub ping: PingSettings,
    /// The machines and their hardware; empty when no inventory is configured.
    pub inventory: InventoryHandle,
    pub reboot: RebootSettings,
    /// The process's one DNS resolver; clones share it (and its cache).
    pub dns: DnsResolver,
    /// Where `file_bugzilla_bug` files; `None` skips that step.
    pub bugzilla: Option<BugzillaSettings>,
    /// The Xen pool master `xenapi_reboot` talks to; `None` skips that step.
    pub xen: Option<XenSettings>,
    /// Roller's own Taskcluster client, for `loan` / `return_loan`.
    pub taskcluster: Option<TaskclusterSettings>,
}

#[derive(Debug, Clone)]
pub struct TaskclusterSettings {
    pub client: crate::drivers::taskcluster::TaskclusterClient,
    /// How long a loan quarantines the worker.
    pub loan: Duration,
}

/// The Xen pool master and roller's account on it (one for the fleet, as in the original).
#[derive(Clone)]
pub struct XenSettings {
    pub url: String,
    pub user: String,
    pub password: secrecy::SecretString,
    pub verify_tls: bool,
    /// Pause between shutdown and start.
    pub delay: Duration,
    pub timeout: Duration,
}

impl fmt::Debug for XenSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XenSettings")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &"[redacted]")
            .field("verify_tls", &self.verify_tls)
            .field("delay", &self.delay)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The Bugzilla roller files unreachable-machine bugs in, and its templates.
#[derive(Debug, Clone)]
pub struct BugzillaSettings {
    pub client: crate::drivers::bugzilla::Bugzilla,
    /// The status a closed tracker bug is reopened to.
    pub reopen_state: String,
    /// The machine's long-lived problem-tracking bug (alias: the host's first label).
    pub tracker: BugTemplate,
    /// The "is unreachable" bug that blocks the tracker.
    pub reboot: BugTemplate,
}

/// Where a bug goes, its summary and its first comment. Placeholders
/// ([`BugTemplate::PLACEHOLDERS`]) are filled from [`BugFields`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BugTemplate {
    pub product: String,
    pub component: String,
    pub summary: String,
    pub description: String,
}

/// What a bug template can say about the machine and the job.
pub struct BugFields<'a> {
    pub host: &'a str,
    pub alias: &'a str,
    pub dc: &'a str,
    pub ip: &'a str,
    pub requester: &'a str,
    pub job: &'a str,
    pub log: &'a str,
}

impl BugTemplate {
    pub const PLACEHOLDERS: [&'static str; 7] = ["host", "alias", "dc", "ip", "requester", "job", "log"];

    /// The original's tracker template.
    pub fn default_tracker() -> Self {
        Self {
            product: "Infrastructure & Operations".into(),
            component: "CIDuty".into(),
            summary: "[{dc}] {alias} problem tracking".into(),
            description: "Problem tracking for {host}. Filed by roller.".into(),
        }
    }

    /// The original's reboot-bug template.
    pub fn default_reboot() -> Self {
        Self {
            product: "Infrastructure & Operations".into(),
            component: "DCOps".into(),
            summary: "{host} is unreachable".into(),
            description: "Reboot {host} {ip}\nRequested by {requester} (roller job {job})\n\
                          Relops controller action failed:\n{log}"
                .into(),
        }
    }

    pub fn summary_for(&self, f: &BugFields) -> String {
        fill(&self.summary, f)
    }

    pub fn description_for(&self, f: &BugFields) -> String {
        fill(&self.description, f)
    }

    /// The first `{name}` in `s` that is not a known placeholder.
    pub fn unknown_placeholder(s: &str) -> Option<String> {
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let close = after.find('}')?;
            let name = &after[..close];
            if !Self::PLACEHOLDERS.contains(&name) {
                return Some(name.to_string());
            }
            rest = &after[close + 1..];
        }
        None
    }
}

/// One pass over the template, so a value that itself contains `{log}` is not
/// expanded again. The bug bodies are JSON built by serde: no value can break
/// the request (the original's string-built JSON could).
fn fill(template: &str, f: &BugFields) -> String {
    let mut out = String::with_capacity(template.len() + f.log.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let value = after.find('}').and_then(|close| {
            let v = match &after[..close] {
                "host" => f.host,
                "alias" => f.alias,
                "dc" => f.dc,
                "ip" => f.ip,
                "requester" => f.requester,
                "job" => f.job,
                "log" => f.log,
                _ => return None,
            };
            Some((v, close))
        });
        match value {
            Some((v, close)) => {
                out.push_str(v);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// How the reboot chain proves a step worked.
#[derive(Debug, Clone)]
pub struct RebootSettings {
    /// The machine must stop answering within this (the original's `DOWN_TIMEOUT`).
    pub down_timeout: Duration,
    /// …and answer again within this (`UP_TIMEOUT`).
    pub up_timeout: Duration,
    /// How often, and how patiently, the machine is probed while waiting.
    pub probe: ProbeSettings,
}

impl Default for RebootSettings {
    fn default() -> Self {
        Self {
            down_timeout: Duration::from_secs(60),
            up_timeout: Duration::from_secs(300),
            probe: ProbeSettings::default(),
        }
    }
}

/// Where an action writes its progress. The runner stores lines in the job
/// log; `roller run` prints them.
pub trait LogSink: Send + Sync {
    fn line(&self, line: String);
}

/// What an action gets besides its target.
#[derive(Clone)]
pub struct ActionContext {
    pub settings: Arc<ActionSettings>,
    /// Cancelled at the soft time limit or on shutdown. Actions check it between
    /// hardware operations, never inside one.
    pub cancel: CancellationToken,
    /// When the soft time limit falls, so a long action (the reboot chain) can
    /// plan to finish, and report, before it is cancelled.
    pub soft_deadline: Option<Instant>,
    /// The job being run, for actions that tell people about it (bugs, notifications).
    pub job: Option<JobRef>,
    log: Arc<dyn LogSink>,
}

/// Who asked, and which job this is.
#[derive(Debug, Clone)]
pub struct JobRef {
    pub id: String,
    pub requester: String,
    /// From the request (`provisioner_id`, `worker_type`), when it named them.
    pub provisioner_id: Option<String>,
    pub worker_type: Option<String>,
}

impl ActionContext {
    pub fn new(settings: Arc<ActionSettings>, cancel: CancellationToken, log: Arc<dyn LogSink>) -> Self {
        Self { settings, cancel, soft_deadline: None, job: None, log }
    }

    /// The Taskcluster names the request gave (after [`ActionContext::with_job`]).
    pub fn with_worker_pool(mut self, provisioner_id: Option<String>, worker_type: Option<String>) -> Self {
        if let Some(j) = &mut self.job {
            j.provisioner_id = provisioner_id;
            j.worker_type = worker_type;
        }
        self
    }

    pub fn with_job(mut self, id: impl Into<String>, requester: impl Into<String>) -> Self {
        self.job = Some(JobRef { id: id.into(), requester: requester.into(), provisioner_id: None, worker_type: None });
        self
    }

    pub fn with_soft_deadline(mut self, at: Instant) -> Self {
        self.soft_deadline = Some(at);
        self
    }

    /// Time left before the soft time limit; `None` when there is none.
    pub fn time_left(&self) -> Option<Duration> {
        self.soft_deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }

    pub fn log(&self, line: impl Into<String>) {
        self.log.line(line.into());
    }
}

/// Why an action failed. The text goes into the job record.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The action ran and the machine did not do what was asked.
    #[error("{0}")]
    Failed(String),
    /// Roller cannot run the action here (configuration, permissions, missing tool).
    #[error("configuration error: {0}")]
    Config(String),
    #[error("cancelled")]
    Cancelled,
}

/// Run `task` on `target`. The result is JSON for the job record.
/// Each action's future is boxed: the job task then holds only the running
/// action's state, not room for the largest of them all (measured: 26 KiB per job
/// unboxed, which 10,000 concurrent reboots multiply into hundreds of MiB).
pub async fn execute(task: Task, target: &Target, cx: &ActionContext) -> Result<serde_json::Value, ActionError> {
    match task {
        Task::Ping => Box::pin(ping::run(target, cx)).await,
        Task::Status => Box::pin(status::run(target, cx)).await,
        Task::IpmiStatus | Task::IpmiOn | Task::IpmiOff | Task::IpmiCycle | Task::IpmiReset | Task::IpmiList => {
            Box::pin(ipmi::run(task, target, cx)).await
        }
        Task::RedfishStatus | Task::RedfishOn | Task::RedfishOff | Task::RedfishRestart | Task::RedfishReset => {
            Box::pin(redfish::run(task, target, cx)).await
        }
        Task::SshReboot => Box::pin(ssh::run(target, cx)).await,
        Task::SnmpReboot | Task::SnmpRebootDelay => Box::pin(snmp::run(task, target, cx)).await,
        Task::Reboot => Box::pin(reboot::run(target, cx)).await,
        Task::FileBugzillaBug => Box::pin(bugzilla::run(target, cx)).await,
        Task::Reimage => Box::pin(reimage::run(target, cx)).await,
        Task::XenapiReboot => Box::pin(xenapi::run(target, cx)).await,
        Task::IloReboot => Box::pin(ilo::run(target, cx)).await,
        Task::Loan => Box::pin(loan::loan(target, cx)).await,
        Task::ReturnLoan => Box::pin(loan::return_loan(target, cx)).await,
        Task::Noop => Ok(serde_json::json!({})),
    }
}

/// The inventory's record of the target; hardware tasks need one.
pub(crate) fn machine(target: &Target, cx: &ActionContext) -> Result<Machine, ActionError> {
    let inventory = cx.settings.inventory.current();
    inventory.machine(&target.worker_id).cloned().ok_or_else(|| {
        let source = if inventory.path.as_os_str().is_empty() {
            "no inventory is configured (ROLLER_INVENTORY)".to_string()
        } else {
            format!("it is not in the inventory {}", inventory.path.display())
        };
        ActionError::Config(format!(
            "{} has no hardware description: {source}; only ping runs on machines outside the inventory",
            target.worker_id
        ))
    })
}

/// An address for `host` (an inventory address or a worker id): an IP literal
/// as is, else through DNS under the inventory's search domains as they are now
/// (a SIGHUP reload changes them for the next lookup). Bounded by the
/// resolver's timeout and by the job's cancellation.
pub(crate) async fn resolve(host: &str, cx: &ActionContext) -> Result<Resolved, ActionError> {
    let search = cx.settings.inventory.current().dns_search.clone();
    cx.settings.dns.resolve(host, &search, &cx.cancel).await.map_err(|e| match counted(e) {
        DnsError::Cancelled => ActionError::Cancelled,
        e @ DnsError::NotFound { .. } => ActionError::Failed(e.to_string()),
        e @ DnsError::Config(_) => ActionError::Config(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn noop_is_parsed_but_outside_the_default_set_and_does_nothing() {
        assert_eq!(Task::parse("noop"), Some(Task::Noop));
        assert!(!Task::ALL.contains(&Task::Noop));
        assert!(!Task::Noop.restarts_machine());
        struct Silent;
        impl LogSink for Silent {
            fn line(&self, _: String) {}
        }
        let target =
            Target { worker_id: WorkerId::parse("w1").unwrap(), worker_group: WorkerGroup::parse("g").unwrap() };
        let cx = ActionContext::new(Arc::default(), CancellationToken::new(), Arc::new(Silent));
        assert_eq!(execute(Task::Noop, &target, &cx).await.unwrap(), serde_json::json!({}));
    }

    #[test]
    fn bug_templates_fill_each_placeholder_once() {
        let f = BugFields {
            host: "ms1.example",
            alias: "ms1",
            dc: "MDC1",
            ip: "10.0.0.1",
            requester: "jdoe",
            job: "j-1",
            log: "ssh_reboot failed: {host} \"quoted\"",
        };
        assert_eq!(BugTemplate::default_tracker().summary_for(&f), "[MDC1] ms1 problem tracking");
        let d = BugTemplate::default_reboot().description_for(&f);
        assert_eq!(
            d,
            "Reboot ms1.example 10.0.0.1\nRequested by jdoe (roller job j-1)\nRelops controller action failed:\n\
             ssh_reboot failed: {host} \"quoted\""
        );
        assert_eq!(fill("{nope} {host", &f), "{nope} {host");
        assert_eq!(BugTemplate::unknown_placeholder("{host} {hots}").as_deref(), Some("hots"));
        assert_eq!(BugTemplate::unknown_placeholder("{log} {ip} {requester}"), None);
    }
}
