//! What `reboot` would do on a machine, touching nothing: which steps run, which
//! are skipped and why, what each would talk to, where the evidence is taken, and
//! what counts as proof. `roller explain` prints it ([`Explanation::lines`]); the
//! API's machine page (`GET /api/v1/machines/{worker_id}`) sends it typed. One
//! computation for both, from the inventory and which of roller's shared
//! services are configured, so the page and the command never disagree.
//!
//! [`unavailable`] is also the one answer to "can this task run on this machine":
//! the inventory's `Machine::can_run`, then the roller-wide services a task needs
//! (XenAPI, SimpleMDM, Bugzilla). The chain skips by it, the page offers by it.

use crate::actions::{ActionSettings, RebootSettings, Task};
use crate::inventory::Machine;

/// Which of roller's shared services are configured: what a step needs beyond the
/// machine's own inventory entry. Built from the action settings (`roller explain`,
/// the runner) or from the configuration alone (the API, which builds no clients).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Services {
    pub xen: bool,
    pub simplemdm: bool,
    pub bugzilla: bool,
}

impl Services {
    pub fn of(settings: &ActionSettings) -> Self {
        Services {
            xen: settings.xen.is_some(),
            simplemdm: settings.simplemdm.is_some(),
            bugzilla: settings.bugzilla.is_some(),
        }
    }
}

/// Why `task` cannot run on `m` with these services; `None` when it can.
pub fn unavailable(m: &Machine, task: Task, services: Services) -> Option<String> {
    if let Err(missing) = m.can_run(task) {
        return Some(missing.to_string());
    }
    match task {
        Task::XenapiReboot if !services.xen => {
            Some("no XenAPI is configured (XEN_URL, XEN_USERNAME, XEN_PASSWORD)".into())
        }
        Task::MdmRestart if !services.simplemdm => Some(crate::actions::mdm::NOT_CONFIGURED.into()),
        Task::FileBugzillaBug if !services.bugzilla => {
            Some("no Bugzilla is configured (BUGZILLA_URL, BUGZILLA_API_KEY)".into())
        }
        _ => None,
    }
}

/// Where a step stands with the job's evidence (taken once per job, before the
/// first step that cuts power).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvidenceNote {
    /// Taken before this step: what is taken (`evidence::describe`).
    Taken(String),
    /// This step cuts power too, but the evidence was taken before an earlier one.
    AlreadyTaken { before: Task },
}

/// One step of the chain, explained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainedStep {
    pub step: Task,
    /// Why it is skipped; `None`: it runs.
    pub skip: Option<String>,
    /// What it talks to (secret references, never secrets); empty when nothing.
    pub what: String,
    /// Only for a step that runs and cuts power.
    pub evidence: Option<EvidenceNote>,
}

/// A machine's reboot chain as it would run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub worker_id: String,
    pub group: Option<String>,
    pub class: String,
    pub address: String,
    /// How the proof probes it (`icmp`, `tcp:22`).
    pub probe: String,
    pub down_timeout_secs: u64,
    pub up_timeout_secs: u64,
    pub min_boot_secs: u64,
    pub steps: Vec<ExplainedStep>,
}

impl Explanation {
    /// Some step runs: `reboot` has something to try.
    pub fn runnable(&self) -> bool {
        self.steps.iter().any(|s| s.skip.is_none())
    }

    /// The explanation as `roller explain` prints it, one line each.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.push(format!("{} (group {}, class {})", self.worker_id, self.group.as_deref().unwrap_or("-"), self.class));
        out.push(format!("  address  {}, probed by {}", self.address, self.probe));
        out.push(format!(
            "  proof    stops answering within {}s (DOWN_TIMEOUT) and answers again within {}s (UP_TIMEOUT),",
            self.down_timeout_secs, self.up_timeout_secs
        ));
        out.push(format!(
            "           no sooner than {}s (the class's min_boot_secs) after the step's command; a machine already down \
             before the step only has to come back that late",
            self.min_boot_secs
        ));
        out.push("  reboot chain, in order:".into());
        for (n, s) in self.steps.iter().enumerate() {
            match &s.skip {
                None => out.push(format!("    {}. {:<18} runs: {}", n + 1, s.step.name(), s.what)),
                Some(why) => out.push(format!("    {}. {:<18} skipped: {why}", n + 1, s.step.name())),
            }
            match &s.evidence {
                None => {}
                Some(EvidenceNote::Taken(what)) => out.push(format!("       before {}: {what}", s.step)),
                Some(EvidenceNote::AlreadyTaken { before }) => {
                    out.push(format!("       before {}: no new evidence (taken once per job, before {before})", s.step))
                }
            }
        }
        if !self.runnable() {
            out.push("  nothing in this chain can run: `reboot` will fail at once".into());
        }
        out
    }
}

/// What `reboot` would do on `m`, touching nothing.
pub fn explain(m: &Machine, services: Services, reboot: &RebootSettings) -> Explanation {
    let mut evidence_before = None;
    let steps = super::plan_for(m, services)
        .into_iter()
        .map(|p| {
            let evidence = (p.skip.is_none() && p.step.cuts_power()).then(|| match evidence_before {
                None => {
                    evidence_before = Some(p.step);
                    EvidenceNote::Taken(crate::actions::evidence::describe(m))
                }
                Some(before) => EvidenceNote::AlreadyTaken { before },
            });
            ExplainedStep { what: super::describe(m, p.step), step: p.step, skip: p.skip, evidence }
        })
        .collect();
    Explanation {
        worker_id: m.id.to_string(),
        group: m.group.as_ref().map(|g| g.to_string()),
        class: m.class.name.clone(),
        address: m.address.clone(),
        probe: m.class.reachability.to_string(),
        down_timeout_secs: reboot.down_timeout.as_secs(),
        up_timeout_secs: reboot.up_timeout.as_secs(),
        min_boot_secs: m.class.min_boot.as_secs(),
        steps,
    }
}
