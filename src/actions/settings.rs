//! What the actions need at run time: the clients and limits startup builds from
//! the settings (`config` is data; `startup` turns it into these).

use std::fmt;
use std::time::Duration;

use super::bugzilla::BugTemplate;
use crate::drivers::bugzilla::Bugzilla;
use crate::drivers::dns::DnsResolver;
use crate::drivers::gate::Gates;
use crate::drivers::ping::PingSettings;
use crate::drivers::reachability::ProbeSettings;
use crate::drivers::simplemdm::SimpleMdm;
use crate::drivers::taskcluster::TaskclusterClient;
use crate::inventory::InventoryHandle;

/// Everything an action may use besides its target and its job.
#[derive(Debug, Clone, Default)]
pub struct ActionSettings {
    pub ping: PingSettings,
    /// The machines and their hardware; empty when no inventory is configured.
    pub inventory: InventoryHandle,
    pub reboot: RebootSettings,
    /// The process's one DNS resolver; clones share it (and its cache).
    pub dns: DnsResolver,
    /// The process's per-device limits; every BMC and PDU target carries a clone.
    pub gates: Gates,
    /// Where `file_bugzilla_bug` files; `None` skips that step.
    pub bugzilla: Option<BugzillaSettings>,
    /// The Xen pool master `xenapi_reboot` talks to; `None` skips that step.
    pub xen: Option<XenSettings>,
    /// The SimpleMDM account `mdm_restart` asks (one client: its clones share the
    /// process-wide cap on calls); `None` skips that step.
    pub simplemdm: Option<SimpleMdm>,
    /// Roller's own Taskcluster client, for `loan` / `return_loan`.
    pub taskcluster: Option<TaskclusterSettings>,
}

#[derive(Debug, Clone)]
pub struct TaskclusterSettings {
    pub client: TaskclusterClient,
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
    pub client: Bugzilla,
    /// The status a closed tracker bug is reopened to.
    pub reopen_state: String,
    /// Machines of one chassis or PDU reaching the bug step within this share one
    /// incident bug ([`super::bugzilla::incident`]); zero files one bug per machine.
    pub incident_window: std::time::Duration,
    /// The machine's long-lived problem-tracking bug (alias: the host's first label).
    pub tracker: BugTemplate,
    /// The "is unreachable" bug that blocks the tracker.
    pub reboot: BugTemplate,
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
