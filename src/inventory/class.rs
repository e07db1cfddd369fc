//! A `[classes.<name>]` table into a [`HardwareClass`]: its reboot chain, probe, BMC
//! settings, proof and health rule, each checked with the field it came from.

use std::time::Duration;

use super::file::{ClassEvidenceFile, ClassFile, ClassHealthFile};
use super::{ClassHealth, DEFAULT_MIN_BOOT_SECS, DEFAULT_REBOOT_CHAIN, HardwareClass, NetworkBoot, Reachability};
use crate::task::Task;

/// Above this no proof could fit the waits (`[reboot]` timeouts are minutes): a typo.
const MAX_MIN_BOOT_SECS: u64 = 1800;
/// A week: longer health thresholds are typos.
const MAX_HEALTH_MINUTES: u64 = 7 * 24 * 60;

/// The class `name`; `err(field, message)` names the field that is wrong.
pub(super) fn parse<E>(name: &str, c: ClassFile, err: impl Fn(&str, String) -> E) -> Result<HardwareClass, E> {
    let reboot = match c.reboot {
        None => DEFAULT_REBOOT_CHAIN.to_vec(),
        Some(list) => {
            let mut steps = Vec::new();
            for s in list {
                let step = Task::parse(&s).filter(|t| t.is_reboot_step()).ok_or_else(|| {
                    let known: Vec<_> = Task::reboot_steps().map(Task::name).collect();
                    err("reboot", format!("unknown step {s:?}; known: {}", known.join(", ")))
                })?;
                steps.push(step);
            }
            steps
        }
    };
    let reachability = match c.reachability.as_deref() {
        None | Some("icmp") => Reachability::Icmp,
        Some(other) => match other.strip_prefix("tcp:").and_then(|p| p.parse::<u16>().ok()) {
            Some(port) if port > 0 => Reachability::Tcp(port),
            _ => return Err(err("reachability", format!("{other:?} must be \"icmp\" or \"tcp:<port>\""))),
        },
    };
    let cipher = c.ipmi.cipher_suite.unwrap_or(17);
    if cipher == 0 {
        return Err(err("ipmi.cipher_suite", "cipher suite 0 accepts any password; roller never uses it".into()));
    }
    let privilege = c.ipmi.privilege.unwrap_or_else(|| "operator".into()).to_ascii_lowercase();
    if !matches!(privilege.as_str(), "user" | "operator" | "administrator") {
        return Err(err("ipmi.privilege", format!("{privilege:?} must be user, operator or administrator")));
    }
    let network_boot = match c.network_boot.as_deref() {
        None => None,
        Some("ipmi") => Some(NetworkBoot::Ipmi),
        Some("redfish") => Some(NetworkBoot::Redfish),
        Some("moonshot") => Some(NetworkBoot::Moonshot),
        Some(other) => {
            return Err(err("network_boot", format!("{other:?} must be \"ipmi\", \"redfish\" or \"moonshot\"")));
        }
    };
    let min_boot = c.min_boot_secs.unwrap_or(DEFAULT_MIN_BOOT_SECS);
    if !(1..=MAX_MIN_BOOT_SECS).contains(&min_boot) {
        return Err(err(
            "min_boot_secs",
            format!(
                "{min_boot} must be 1 to {MAX_MIN_BOOT_SECS} seconds: the least time a machine of the class \
                 takes from a reboot command to answering again"
            ),
        ));
    }
    Ok(HardwareClass {
        name: name.to_string(),
        reboot,
        reachability,
        ipmi_cipher_suite: cipher,
        ipmi_privilege: privilege,
        ipmi_port: c.ipmi.port.unwrap_or(623),
        redfish_verify_tls: c.redfish.verify_tls.unwrap_or(true),
        snmp_reboot_delay: Duration::from_secs(c.snmp_reboot_delay_secs.unwrap_or(60)),
        min_boot: Duration::from_secs(min_boot),
        network_boot,
        health: health(c.health, &err)?,
        moonshot: super::moonshot::defaults(c.moonshot, &err)?,
        evidence: evidence(c.evidence, &err)?,
    })
}

/// What a class captures before a step cuts power or resets the machine
/// (`[classes.<name>.evidence]`; `actions::evidence` takes it). Every piece is bounded
/// by its own deadline inside `budget`, so a silent device delays the step by at most
/// the budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidencePolicy {
    pub enabled: bool,
    /// The most time the capture adds to the step.
    pub budget: Duration,
    /// ICMP, TCP to the ssh port (and the class's TCP probe) and the ssh banner.
    pub probes: bool,
    /// The newest entries of the IPMI SEL and the Redfish log services; 0: none.
    pub sel_entries: u32,
    /// A console tail over IPMI Serial-over-LAN.
    pub sol: bool,
    /// The most console bytes kept (the newest).
    pub console_bytes: usize,
    /// How long the console is read.
    pub console: Duration,
}

impl Default for EvidencePolicy {
    fn default() -> Self {
        EvidencePolicy {
            enabled: true,
            budget: Duration::from_secs(10),
            probes: true,
            sel_entries: 20,
            sol: true,
            console_bytes: 16 * 1024,
            console: Duration::from_secs(5),
        }
    }
}

/// Bounds of the evidence keys: a minute of budget is already a long wait before a
/// reboot, and the job record and the bug must stay readable.
const MAX_EVIDENCE_BUDGET_SECS: u64 = 60;
const MAX_SEL_ENTRIES: u32 = 200;
const CONSOLE_BYTES: std::ops::RangeInclusive<usize> = 512..=256 * 1024;
/// Ending a SOL session cleanly (`~.`, then a `sol deactivate` if that fails) takes
/// seconds on a slow BMC; the console window leaves them inside the budget.
pub const SOL_CLEANUP_SECS: u64 = 3;

fn evidence<E>(e: ClassEvidenceFile, err: &impl Fn(&str, String) -> E) -> Result<EvidencePolicy, E> {
    let d = EvidencePolicy::default();
    let budget = e.budget_secs.unwrap_or(d.budget.as_secs());
    if !(1..=MAX_EVIDENCE_BUDGET_SECS).contains(&budget) {
        return Err(err(
            "evidence.budget_secs",
            format!("{budget} must be 1 to {MAX_EVIDENCE_BUDGET_SECS} seconds: the most the capture adds to a step"),
        ));
    }
    let sel_entries = e.sel_entries.unwrap_or(d.sel_entries);
    if sel_entries > MAX_SEL_ENTRIES {
        return Err(err("evidence.sel_entries", format!("{sel_entries} must be 0 (none) to {MAX_SEL_ENTRIES}")));
    }
    let console_bytes = e.console_bytes.unwrap_or(d.console_bytes);
    if !CONSOLE_BYTES.contains(&console_bytes) {
        return Err(err(
            "evidence.console_bytes",
            format!("{console_bytes} must be {} to {} bytes", CONSOLE_BYTES.start(), CONSOLE_BYTES.end()),
        ));
    }
    let sol = e.sol.unwrap_or(d.sol);
    // Unset, the window shrinks to fit a small budget; set, it must fit as given.
    let console = match e.console_secs {
        None => d.console.as_secs().min(budget.saturating_sub(SOL_CLEANUP_SECS)).max(1),
        Some(s) => s,
    };
    if console == 0 || (sol && e.console_secs.is_some() && console + SOL_CLEANUP_SECS > budget) {
        return Err(err(
            "evidence.console_secs",
            format!(
                "{console} must be at least 1 and leave {SOL_CLEANUP_SECS}s of budget_secs ({budget}) to end the SOL                  session: at most {}",
                budget.saturating_sub(SOL_CLEANUP_SECS)
            ),
        ));
    }
    Ok(EvidencePolicy {
        enabled: e.enabled.unwrap_or(d.enabled),
        budget: Duration::from_secs(budget),
        probes: e.probes.unwrap_or(d.probes),
        sel_entries,
        sol,
        console_bytes,
        console: Duration::from_secs(console),
    })
}

fn health<E>(h: ClassHealthFile, err: &impl Fn(&str, String) -> E) -> Result<ClassHealth, E> {
    let minutes = |field: &str, v: Option<u64>| -> Result<Option<Duration>, E> {
        match v {
            None => Ok(None),
            Some(m) if (1..=MAX_HEALTH_MINUTES).contains(&m) => Ok(Some(Duration::from_secs(m * 60))),
            Some(m) => Err(err(field, format!("{m} must be 1 to {MAX_HEALTH_MINUTES} minutes"))),
        }
    };
    let remediation = match h.remediation {
        None => None,
        Some(name) => Some(Task::parse(&name).filter(|t| t.restarts_machine()).ok_or_else(|| {
            let known: Vec<_> = Task::ALL.iter().copied().filter(|t| t.restarts_machine()).map(Task::name).collect();
            err(
                "health.remediation",
                format!("{name:?} is not a task that restarts a machine; one of: {}", known.join(", ")),
            )
        })?),
    };
    Ok(ClassHealth {
        idle_after: minutes("health.idle_after_mins", h.idle_after_mins)?,
        running_after: minutes("health.running_after_mins", h.running_after_mins)?,
        stale_after: minutes("health.stale_after_mins", h.stale_after_mins)?,
        remediation,
    })
}
