//! Actions: what roller does on a machine, one module per task (or family).
//!
//! Each action composes drivers into a task; actions never see HTTP, the queue or
//! config files. The runner and `roller run` both call [`execute`], and the reboot
//! chain runs its steps through the same dispatch table ([`dispatch`]) on one
//! inventory snapshot. Results are typed ([`report`]); failures keep their kind
//! ([`ActionError`]).

pub mod bugzilla;
pub mod evidence;
pub mod ilo;
pub mod ipmi;
pub mod loan;
pub mod mdm;
pub mod moonshot;
pub mod ping;
pub mod reboot;
pub mod redfish;
pub mod reimage;
pub mod report;
pub mod restore;
pub mod settings;
pub mod snmp;
pub mod ssh;
pub mod status;
pub mod xenapi;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::domain::{WorkerGroup, WorkerId};
use crate::drivers::dns::Resolved;
use crate::drivers::{DriverError, Fault, counted};
use crate::inventory::{Inventory, Machine};
pub use crate::task::Task;

pub use bugzilla::{BugFields, BugTemplate};
pub use evidence::Evidence;
pub use report::Report;
pub use restore::Restore;
pub use settings::{ActionSettings, BugzillaSettings, RebootSettings, TaskclusterSettings, XenSettings};

/// The machine an action works on.
#[derive(Debug, Clone)]
pub struct Target {
    pub worker_id: WorkerId,
    pub worker_group: WorkerGroup,
}

/// Where an action writes its progress. The runner stores lines in the job
/// log; `roller run` prints them.
pub trait LogSink: Send + Sync {
    fn line(&self, line: String);
}

/// What a command about to reach a device does to the machine's power.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerChange {
    /// Switches it on: nothing is lost.
    On,
    /// Asks the operating system to reboot itself (it keeps its own logs).
    OsReboot,
    /// Cuts power or resets: what the machine would show a person is lost, so the
    /// job's evidence must have been taken first ([`evidence`]).
    Cut,
}

/// Where an action records what it is about to do to the hardware, before it does
/// it: the runner writes it into the job record (so a runner that dies leaves a
/// trace the next one acts on); `roller run` keeps it in memory. An error means it
/// could not be recorded, and the action does not go ahead.
#[async_trait::async_trait]
pub trait Journal: Send + Sync {
    /// A command that changes power is about to reach a device.
    async fn touched(&self) -> Result<(), String>;
    /// Power is about to be cut; `restore` undoes it.
    async fn armed(&self, restore: &Restore) -> Result<(), String>;
    /// Power is back: nothing to undo.
    async fn disarmed(&self) -> Result<(), String>;
}

/// A journal that keeps nothing beyond the context itself (`roller run`, tests).
pub struct InMemory;

#[async_trait::async_trait]
impl Journal for InMemory {
    async fn touched(&self) -> Result<(), String> {
        Ok(())
    }
    async fn armed(&self, _: &Restore) -> Result<(), String> {
        Ok(())
    }
    async fn disarmed(&self) -> Result<(), String> {
        Ok(())
    }
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
    journal: Arc<dyn Journal>,
    /// The restore armed and not yet undone; shared with whoever runs the action,
    /// so it is known even when the action's future was dropped mid-way.
    armed: Arc<std::sync::Mutex<Option<Restore>>>,
    /// The job's evidence, once taken (before its first power cut); shared like
    /// `armed`, so whoever records the job finds it however the action ended.
    evidence: Arc<std::sync::Mutex<Option<Arc<Evidence>>>>,
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
        Self {
            settings,
            cancel,
            soft_deadline: None,
            job: None,
            log,
            journal: Arc::new(InMemory),
            armed: Arc::default(),
            evidence: Arc::default(),
        }
    }

    /// Record touches and restores in `journal` (the runner's: the job record).
    pub fn with_journal(mut self, journal: Arc<dyn Journal>) -> Self {
        self.journal = journal;
        self
    }

    /// The same job with a fresh cancellation token and no soft deadline: a repair,
    /// which runs after the job's own token was cancelled. It shares the log, the
    /// journal and the armed restore.
    pub fn for_repair(&self, cancel: CancellationToken) -> Self {
        Self { cancel, soft_deadline: None, ..self.clone() }
    }

    /// Before a command that changes power goes to a device: the job then counts
    /// for the reboot-loop breaker, even if the runner dies right after. A cut is
    /// refused unless the job's evidence was taken (or deliberately not): only a task
    /// that does not declare `cuts_power` (`TaskSpec`) gets here without it, and
    /// refusing keeps a new power path from quietly destroying the evidence.
    pub async fn touch(&self, change: PowerChange) -> Result<(), ActionError> {
        if change == PowerChange::Cut && self.evidence().is_none() {
            return Err(ActionError::Config(
                "this task cuts power without declaring it (TaskSpec::cuts_power), so no evidence was taken before \
                 it; not cutting power (a bug in roller)"
                    .into(),
            ));
        }
        self.journal.touched().await.map_err(|e| {
            ActionError::Failed(format!("cannot record that a power command is about to go out ({e}); not sending it"))
        })
    }

    /// Before power is cut: `restore` is recorded first, so it is carried out
    /// whatever stops this action before [`ActionContext::disarm`].
    pub async fn arm(&self, restore: Restore) -> Result<(), ActionError> {
        self.touch(PowerChange::Cut).await?;
        self.journal
            .armed(&restore)
            .await
            .map_err(|e| ActionError::Failed(format!("cannot record how to restore power ({e}); not cutting it")))?;
        *self.armed.lock().unwrap_or_else(|p| p.into_inner()) = Some(restore);
        Ok(())
    }

    /// Power is back on: nothing left to undo. A failure to record it only means a
    /// later repair finds power on and does nothing; it is logged, not an error.
    pub async fn disarm(&self) {
        self.armed.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Err(e) = self.journal.disarmed().await {
            tracing::warn!(error = %e, "cannot record that power is back; a takeover would check it again");
        }
    }

    /// The restore armed and not undone, if any: what whoever ran the action must
    /// carry out once it has stopped.
    pub fn pending_restore(&self) -> Option<Restore> {
        self.armed.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The job's evidence, once taken ([`evidence::before`]).
    pub fn evidence(&self) -> Option<Arc<Evidence>> {
        self.evidence.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn settle_evidence(&self, e: Evidence) {
        *self.evidence.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(e));
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

/// Why an action failed, of which kind. The text goes into the job record; the
/// kind tells the reboot chain and `/metrics` what went wrong without parsing it.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The device or service did not answer (a timeout, a refused connection).
    #[error("{0}")]
    Unreachable(String),
    /// It answered no: a wrong password or key, a missing privilege, a changed host key.
    #[error("{0}")]
    Refused(String),
    /// The action ran and the machine did not do what was asked.
    #[error("{0}")]
    Failed(String),
    /// Roller cannot run the action here (configuration, permissions, missing tool).
    #[error("configuration error: {0}")]
    Config(String),
    #[error("cancelled")]
    Cancelled,
}

impl ActionError {
    /// A driver's error as an action reports it: counted for `/metrics`, its kind
    /// kept, its text after `context` (`"ipmi_reset"` gives `ipmi_reset: <error>`;
    /// `""` gives the error alone).
    pub(crate) fn driver<E: DriverError>(context: &str, e: E) -> ActionError {
        let e = counted(e);
        let text = if context.is_empty() { e.to_string() } else { format!("{context}: {e}") };
        ActionError::of(e.fault(), text)
    }

    pub(crate) fn of(fault: Fault, text: String) -> ActionError {
        match fault {
            Fault::Unreachable => ActionError::Unreachable(text),
            Fault::Refused => ActionError::Refused(text),
            Fault::Failed => ActionError::Failed(text),
            Fault::Config => ActionError::Config(text),
            Fault::Cancelled => ActionError::Cancelled,
        }
    }

    /// The stable name of the kind: `unreachable`, `refused`, `failed`, `configuration`, `cancelled`.
    pub fn kind(&self) -> &'static str {
        match self {
            ActionError::Unreachable(_) => Fault::Unreachable.as_str(),
            ActionError::Refused(_) => Fault::Refused.as_str(),
            ActionError::Failed(_) => Fault::Failed.as_str(),
            ActionError::Config(_) => Fault::Config.as_str(),
            ActionError::Cancelled => Fault::Cancelled.as_str(),
        }
    }

    /// The same kind with other words (a task that wraps another's failure).
    pub(crate) fn map_text(self, f: impl FnOnce(String) -> String) -> ActionError {
        match self {
            ActionError::Unreachable(t) => ActionError::Unreachable(f(t)),
            ActionError::Refused(t) => ActionError::Refused(f(t)),
            ActionError::Failed(t) => ActionError::Failed(f(t)),
            ActionError::Config(t) => ActionError::Config(t),
            ActionError::Cancelled => ActionError::Cancelled,
        }
    }
}

/// The machine a job runs on, with the inventory as it was when the job started:
/// a reload mid-way changes nothing for a running job, and every step of a reboot
/// chain sees the same machine.
#[derive(Clone)]
pub struct Subject {
    pub target: Target,
    inventory: Arc<Inventory>,
}

impl Subject {
    pub fn new(target: Target, inventory: Arc<Inventory>) -> Self {
        Self { target, inventory }
    }

    /// The inventory's record of the machine; hardware tasks need one.
    pub fn machine(&self) -> Result<&Machine, ActionError> {
        self.inventory.machine(&self.target.worker_id).ok_or_else(|| {
            let source = if self.inventory.path.as_os_str().is_empty() {
                "no inventory is configured (ROLLER_INVENTORY)".to_string()
            } else {
                format!("it is not in the inventory {}", self.inventory.path.display())
            };
            ActionError::Config(format!(
                "{} has no hardware description: {source}; only ping runs on machines outside the inventory",
                self.target.worker_id
            ))
        })
    }
}

/// Run `task` on `target`, on the inventory as it is now. The runner and
/// `roller run` call this; the result goes into the job record.
pub async fn execute(task: Task, target: &Target, cx: &ActionContext) -> Result<Report, ActionError> {
    let subject = Subject::new(target.clone(), cx.settings.inventory.current());
    dispatch(task, &subject, cx).await
}

/// The one dispatch table, from a task to its action. Each arm's future is boxed:
/// a job then holds only the running action's state, not room for the largest of
/// them all (measured: 26 KiB per job unboxed, which 10,000 concurrent reboots
/// multiply into hundreds of MiB), and the reboot chain can call back into it.
pub fn dispatch<'a>(task: Task, on: &'a Subject, cx: &'a ActionContext) -> BoxFuture<'a, Result<Report, ActionError>> {
    let span = tracing::info_span!("action", task = %task);
    let action: BoxFuture<'a, Result<Report, ActionError>> = match task {
        Task::Ping => Box::pin(ping::run(on, cx)),
        Task::Status => Box::pin(status::run(on, cx)),
        Task::IpmiStatus | Task::IpmiOn | Task::IpmiOff | Task::IpmiCycle | Task::IpmiReset | Task::IpmiList => {
            Box::pin(ipmi::run(task, on, cx))
        }
        Task::RedfishStatus | Task::RedfishOn | Task::RedfishOff | Task::RedfishRestart | Task::RedfishReset => {
            Box::pin(redfish::run(task, on, cx))
        }
        Task::SshReboot => Box::pin(ssh::run(on, cx)),
        Task::SnmpReboot | Task::SnmpRebootDelay => Box::pin(snmp::run(task, on, cx)),
        Task::Reboot => Box::pin(reboot::run(on, cx)),
        Task::FileBugzillaBug => Box::pin(bugzilla::run(on, cx)),
        Task::Reimage => Box::pin(reimage::run(on, cx)),
        Task::XenapiReboot => Box::pin(xenapi::run(on, cx)),
        Task::IloReboot => Box::pin(ilo::run(on, cx)),
        Task::MoonshotReset => Box::pin(moonshot::run(on, cx)),
        Task::MdmRestart => Box::pin(mdm::run(on, cx)),
        Task::Loan => Box::pin(loan::loan(on, cx)),
        Task::ReturnLoan => Box::pin(loan::return_loan(on, cx)),
        Task::Noop => Box::pin(async { Ok(Report::Empty(report::Empty {})) }),
    };
    // Whatever cuts power takes the job's evidence first (once per job; a chain has
    // taken it already, before its step's proof started).
    if task.cuts_power() {
        Box::pin(
            async move {
                evidence::before(task, on, cx).await?;
                action.await
            }
            .instrument(span),
        )
    } else {
        Box::pin(action.instrument(span))
    }
}

/// An address for `host` (an inventory address or a worker id): an IP literal
/// as is, else through DNS under the inventory's search domains as they are now
/// (a SIGHUP reload changes them for the next lookup). Bounded by the
/// resolver's timeout and by the job's cancellation.
pub(crate) async fn resolve(host: &str, cx: &ActionContext) -> Result<Resolved, ActionError> {
    let search = cx.settings.inventory.current().dns_search.clone();
    cx.settings.dns.resolve(host, &search, &cx.cancel).await.map_err(|e| ActionError::driver("", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn noop_does_nothing_and_succeeds() {
        struct Silent;
        impl LogSink for Silent {
            fn line(&self, _: String) {}
        }
        let target =
            Target { worker_id: WorkerId::parse("w1").unwrap(), worker_group: WorkerGroup::parse("g").unwrap() };
        let cx = ActionContext::new(Arc::default(), CancellationToken::new(), Arc::new(Silent));
        assert_eq!(execute(Task::Noop, &target, &cx).await.unwrap().to_json(), serde_json::json!({}));
    }

    #[tokio::test]
    async fn a_power_cut_is_refused_until_the_jobs_evidence_was_taken() {
        struct Silent;
        impl LogSink for Silent {
            fn line(&self, _: String) {}
        }
        let cx = ActionContext::new(Arc::default(), CancellationToken::new(), Arc::new(Silent));
        let refused = cx.touch(PowerChange::Cut).await.unwrap_err();
        assert!(matches!(refused, ActionError::Config(_)) && refused.to_string().contains("cuts_power"), "{refused}");
        let armed = cx.arm(Restore::PduOutletOn { step: "snmp_rebootdelay".into(), outlet: "AA1".into() }).await;
        assert!(armed.is_err() && cx.pending_restore().is_none(), "nothing armed, nothing cut");
        // Switching on and asking the OS lose nothing: no evidence needed.
        cx.touch(PowerChange::On).await.unwrap();
        cx.touch(PowerChange::OsReboot).await.unwrap();
        let evidence = Evidence {
            before: Task::IpmiReset,
            taken_at: "2026-04-01T10:00:00Z".into(),
            seconds: 0.0,
            budget_secs: 10.0,
            probes: None,
            sel: None,
            redfish_log: None,
            console: None,
            missing: Vec::new(),
        };
        // Shared with every clone of the context (the chain's steps, the runner's repair).
        cx.clone().settle_evidence(evidence);
        cx.touch(PowerChange::Cut).await.unwrap();
        assert_eq!(cx.for_repair(CancellationToken::new()).evidence().unwrap().before, Task::IpmiReset);
    }

    #[test]
    fn errors_keep_their_kind_and_their_words() {
        let e = ActionError::driver(
            "ipmi_reset",
            crate::drivers::ipmi::IpmiError::Auth { host: "bmc1".into(), detail: "RAKP".into() },
        );
        assert!(matches!(e, ActionError::Refused(_)), "{e:?}");
        assert_eq!(e.kind(), "refused");
        assert!(e.to_string().starts_with("ipmi_reset: IPMI session to bmc1 refused"), "{e}");
        let e = ActionError::driver("ipmi_on", crate::drivers::ipmi::IpmiError::ToolMissing);
        assert!(e.to_string().starts_with("configuration error: ipmi_on: ipmitool not found"), "{e}");
        assert!(matches!(ActionError::driver("x", crate::drivers::ipmi::IpmiError::Cancelled), ActionError::Cancelled));
    }
}
