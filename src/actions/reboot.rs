//! `reboot`: the machine's reboot chain. The hardware class lists the methods,
//! gentlest first (the original's `REBOOT_METHODS`); each is tried in turn until
//! one is *proven* to have rebooted the machine.
//!
//! * A step the machine has no configuration for is skipped, and the log says why.
//! * Steps are the state-aware tasks themselves (`ipmi_reset` on a machine that
//!   is off powers it on), run on one inventory snapshot.
//! * Proof (`proof.rs`, "What counts as proof"): probes from the step's command
//!   on must see the machine down (stop answering within `DOWN_TIMEOUT` of the
//!   step's end, or not answering since before the step), then answer again
//!   within `UP_TIMEOUT`, and no sooner than the class's `min_boot_secs` after the
//!   command. A quicker return was not this step's doing. The BMC's or PDU's own
//!   view of a power cycle is named in the proof but proves nothing alone. The log
//!   and the proof say what was seen, timed from the command.
//! * A step that fails outright (wrong password, unreachable BMC) is not
//!   verified: nothing was done, so the chain moves on at once. The original
//!   waited out the full proof after steps like that, and its chain could not
//!   finish inside the soft time limit.
//! * The chain plans around the soft time limit: waits are cut to the time that
//!   is left, and a step that cannot fit is not started. The result names the
//!   step that worked; the failure lists every attempt.

use std::time::{Duration, Instant};

use self::proof::{Limits, Proof};
use super::report::{Attempt, RebootReport, Report, StepOutcome};
use super::{ActionContext, ActionError, ActionSettings, Subject, Task, bugzilla, dispatch, evidence, resolve};
use crate::drivers::counted;
use crate::drivers::ipmi::IpmiTarget;
use crate::drivers::reachability::{self, ProbeError};
use crate::inventory::{ChassisTls, Machine};
use crate::task::Needs;

pub mod explain;
mod proof;

pub use self::explain::{Services, unavailable};

/// Kept free before the soft time limit so the chain reports instead of being cancelled.
const MARGIN: Duration = Duration::from_secs(5);
/// A step with less time than this left is not started: it could not be proven.
const MIN_STEP: Duration = Duration::from_secs(15);
/// Kept for the bug-filing step when it comes later in the chain.
const BUG_STEP_RESERVE: Duration = Duration::from_secs(60);

/// One step of a machine's chain as it would run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStep {
    pub step: Task,
    /// Why the step will be skipped; `None` when it runs.
    pub skip: Option<String>,
}

/// The machine's chain with the steps that will be skipped and why. Touches no
/// hardware; `roller explain` prints it and [`run`] follows it.
pub fn plan(m: &Machine, settings: &ActionSettings) -> Vec<PlannedStep> {
    plan_for(m, Services::of(settings))
}

/// [`plan`] from which shared services are configured (what the API knows without clients).
pub fn plan_for(m: &Machine, services: Services) -> Vec<PlannedStep> {
    m.class.reboot.iter().map(|&step| PlannedStep { step, skip: unavailable(m, step, services) }).collect()
}

/// What `task` would talk to on `m`, for `roller explain` (secret references, never secrets).
pub fn describe(m: &Machine, task: Task) -> String {
    match task.spec().needs {
        Needs::Ssh => m.ssh.as_ref().map(|s| {
            format!(
                "ssh {}@{}:{} with key {}, host keys {} ({})",
                s.user,
                m.address,
                s.port,
                s.key_file.display(),
                s.known_hosts.display(),
                if s.accept_new { "accept-new" } else { "known only" }
            )
        }),
        Needs::Ipmi => m.ipmi.as_ref().map(|i| {
            let bridging = match i.bridging {
                Some(b) if b.transit_address.is_some() => ", dual bridging",
                Some(_) => ", bridged",
                None => "",
            };
            format!(
                "IPMI lanplus {}:{} as {} (password {}), cipher suite {}, privilege {}{bridging}",
                i.address,
                i.port,
                i.user,
                i.password.describe(),
                m.class.ipmi_cipher_suite,
                m.class.ipmi_privilege
            )
        }),
        Needs::Pdu => m.pdu.as_ref().map(|p| {
            let delay = if task == Task::SnmpRebootDelay {
                format!(", off for {}s", m.class.snmp_reboot_delay.as_secs())
            } else {
                String::new()
            };
            format!("PDU {}:{} outlet {} (community {}){delay}", p.host, p.port, p.outlet, p.community.describe())
        }),
        Needs::Redfish => m.redfish.as_ref().map(|r| {
            format!(
                "Redfish {} as {} (password {}), TLS verification {}",
                r.url,
                r.user,
                r.password.describe(),
                if m.class.redfish_verify_tls { "on" } else { "OFF" }
            )
        }),
        Needs::Xen => m.xen_vm_uuid.as_ref().map(|u| format!("Xen VM {u}")),
        Needs::Ilo => m.ilo.as_ref().map(|i| format!("iLO {} as {}", i.address, i.user)),
        Needs::Moonshot => m.moonshot.as_ref().map(|s| {
            let tls = match &s.tls {
                ChassisTls::Verify { ca_file: Some(ca) } => format!("verified against {}", ca.display()),
                ChassisTls::Verify { ca_file: None } => "verified against the platform's roots".into(),
                ChassisTls::Insecure => "NOT verified".into(),
            };
            format!(
                "Moonshot chassis manager {}:{} node {} as {} (password {}), certificate {tls}",
                s.chassis,
                s.port,
                s.node,
                s.user,
                s.password.describe()
            )
        }),
        Needs::Mdm => m.mdm.as_ref().map(super::mdm::describe),
        Needs::Inventory if task == Task::FileBugzillaBug => {
            Some(format!("CC {}", if m.bug_cc.is_empty() { "nobody".into() } else { m.bug_cc.join(", ") }))
        }
        Needs::Inventory | Needs::Nothing | Needs::BootControl => None,
    }
    .unwrap_or_default()
}

pub async fn run(on: &Subject, cx: &ActionContext) -> Result<Report, ActionError> {
    Ok(chain(on, cx, None).await?.into())
}

/// The chain on the job's machine, every step on the job's inventory snapshot.
/// `reimage` runs it after setting an IPMI network boot and passes `renew_ipmi_boot`:
/// BMCs forget that flag about 60 s after it is set (the IPMI boot-flag timeout), so
/// it is set again before every step after the first, or a step that comes minutes
/// later would boot from disk.
pub(crate) async fn chain(
    on: &Subject,
    cx: &ActionContext,
    renew_ipmi_boot: Option<&IpmiTarget>,
) -> Result<RebootReport, ActionError> {
    let m = on.machine()?;
    let steps = plan(m, &cx.settings);
    // A name that does not resolve must not stop the chain: the BMC and PDU steps
    // and the bug do not need it. It is retried before each step; until it
    // resolves, no step can be proven.
    let mut addr = match resolve(&m.address, cx).await.map(|r| r.addr) {
        Ok(a) => Some(a),
        Err(ActionError::Cancelled) => return Err(ActionError::Cancelled),
        Err(e) => {
            cx.log(format!("{e}; steps cannot be proven until it resolves"));
            None
        }
    };
    let probe = m.class.reachability;
    let rs = &cx.settings.reboot;
    cx.log(format!(
        "reboot chain for {} (class {}): {}; proof: {} ({}, {}) stops answering within {}s and answers again \
         within {}s, no sooner than {}s after the step's command",
        m.id,
        m.class.name,
        steps.iter().map(|p| p.step.name()).collect::<Vec<_>>().join(", "),
        m.address,
        addr.map(|a| a.to_string()).unwrap_or_else(|| "unresolved".into()),
        probe,
        rs.down_timeout.as_secs(),
        rs.up_timeout.as_secs(),
        m.class.min_boot.as_secs(),
    ));
    let chain_start = Instant::now();
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut bug_url = None;
    for (i, planned) in steps.iter().enumerate() {
        let step = planned.step;
        if let Some(why) = &planned.skip {
            record(cx, &mut attempts, step, StepOutcome::Skipped, why, None);
            continue;
        }
        let budget = budget(cx, &steps[i + 1..]);
        if let Some(left) = budget
            && left < MIN_STEP
        {
            let why = format!("only {}s left before the soft time limit", left.as_secs());
            record(cx, &mut attempts, step, StepOutcome::NotTried, &why, None);
            continue;
        }
        if step == Task::FileBugzillaBug {
            // Not a reboot: it tells people, with everything tried so far.
            cx.log(format!("{step}: filing, as nothing before it worked"));
            match Box::pin(bugzilla::file(m, &on.target, cx, &summary(&attempts).join("\n"))).await {
                Ok(bug) => {
                    cx.log(format!("{step}: {}", bug.url));
                    bug_url = Some(bug.url.clone());
                    attempts.push(Attempt {
                        step,
                        outcome: StepOutcome::Filed,
                        reason: Some(bug.url.clone()),
                        proof: None,
                        error_kind: None,
                        detail: Some(Box::new(bug.into())),
                    });
                }
                Err(ActionError::Cancelled) => return Err(ActionError::Cancelled),
                Err(e) => record(cx, &mut attempts, step, StepOutcome::Failed, &reason(step, &e), Some(&e)),
            }
            continue;
        }
        if step.cuts_power() && cx.evidence().is_none() {
            // Before the proof's watch starts: its clock is the step's command.
            evidence::before(step, on, cx).await?;
            if let Some(left) = self::budget(cx, &steps[i + 1..])
                && left < MIN_STEP
            {
                let why = format!("only {}s left before the soft time limit after the evidence", left.as_secs());
                record(cx, &mut attempts, step, StepOutcome::NotTried, &why, None);
                continue;
            }
        }
        if let Some(bmc) = renew_ipmi_boot
            && attempts.iter().any(|a| a.outcome != StepOutcome::Skipped)
        {
            cx.log(format!("{step}: setting the network boot again first (BMCs forget it after 60 s)"));
            crate::drivers::ipmi::boot_pxe(bmc, &cx.cancel).await.map_err(|e| ActionError::driver("reimage", e))?;
        }
        let budget = self::budget(cx, &steps[i + 1..]);
        let step_start = Instant::now();
        if addr.is_none() {
            addr = resolve(&m.address, cx).await.ok().map(|r| r.addr);
        }
        let answered_before = match addr {
            Some(a) => reachability::answers(a, probe, &rs.probe, &cx.cancel).await.map_err(probe_error)?,
            None => false,
        };
        cx.log(format!(
            "{step}: trying; {} {} before it",
            m.address,
            if answered_before { "answers" } else { "does not answer" }
        ));
        // The watch starts with the command: a host may go down (and come back)
        // while the step is still waiting on its device or a silent session.
        let mut proof = addr.map(|a| Proof::start(a, probe, &rs.probe, answered_before, m.class.min_boot));
        let dispatched = match proof.as_mut() {
            Some(p) => p.during(dispatch(step, on, cx), cx).await,
            None => dispatch(step, on, cx).await,
        };
        let detail = match dispatched {
            Ok(v) => v,
            Err(ActionError::Cancelled) => return Err(ActionError::Cancelled),
            Err(e) => {
                record(cx, &mut attempts, step, StepOutcome::Failed, &reason(step, &e), Some(&e));
                continue;
            }
        };
        let cycled = detail.power_cycled();
        let proven = match proof {
            Some(p) => {
                let hard = budget.map(|b| b.saturating_sub(p.command_at().saturating_duration_since(step_start)));
                let limits = Limits { down: rs.down_timeout, up: rs.up_timeout, hard };
                p.settle(limits, cycled, cx).await.map_err(probe_error)?
            }
            None => Err(format!("{} does not resolve, so it cannot be seen coming back", m.address)),
        };
        match proven {
            Ok(proof) => {
                let secs = round(step_start.elapsed());
                cx.log(format!("{step}: worked: {proof}"));
                attempts.push(Attempt {
                    step,
                    outcome: StepOutcome::Worked,
                    reason: None,
                    proof: Some(proof.clone()),
                    error_kind: None,
                    detail: Some(Box::new(detail)),
                });
                count(&attempts);
                return Ok(RebootReport {
                    evidence: None,
                    worked: step,
                    proof,
                    seconds: secs,
                    chain_seconds: round(chain_start.elapsed()),
                    attempts,
                });
            }
            Err(why) => {
                cx.log(format!("{step}: not proven: {why}"));
                attempts.push(Attempt {
                    step,
                    outcome: StepOutcome::NotProven,
                    reason: Some(why),
                    proof: None,
                    error_kind: None,
                    detail: Some(Box::new(detail)),
                });
            }
        }
    }
    count(&attempts);
    let tried = summary(&attempts);
    let bug = bug_url.map(|u| format!(" Filed {u}.")).unwrap_or_default();
    Err(ActionError::Failed(format!(
        "no reboot step worked for {} after {:.0}s: {}.{bug}",
        m.id,
        chain_start.elapsed().as_secs_f64(),
        if tried.is_empty() { "its class has no reboot steps".to_string() } else { tried.join("; ") }
    )))
}

/// Log `<step>: <outcome>: <why>` and add the attempt to the chain's record.
fn record(
    cx: &ActionContext,
    attempts: &mut Vec<Attempt>,
    step: Task,
    outcome: StepOutcome,
    why: &str,
    error: Option<&ActionError>,
) {
    cx.log(format!("{step}: {}: {why}", outcome.as_str()));
    attempts.push(Attempt {
        step,
        outcome,
        reason: Some(why.to_string()),
        proof: None,
        error_kind: error.map(ActionError::kind),
        detail: None,
    });
}

/// Counts each step's outcome for `/metrics` (`roller_reboot_steps_total`).
fn count(attempts: &[Attempt]) {
    for a in attempts {
        metrics::counter!("roller_reboot_steps_total", "step" => a.step.name(), "outcome" => a.outcome.as_str())
            .increment(1);
    }
}

/// One line per attempt: `<step> <outcome>: <reason>`.
fn summary(attempts: &[Attempt]) -> Vec<String> {
    attempts
        .iter()
        .map(|a| format!("{} {}: {}", a.step, a.outcome.as_str(), a.reason.as_deref().unwrap_or("")))
        .collect()
}

/// Time this step may use: what is left before the soft limit, less what later
/// steps are owed. `None` without a soft limit.
fn budget(cx: &ActionContext, later: &[PlannedStep]) -> Option<Duration> {
    let reserve = if later.iter().any(|p| p.step == Task::FileBugzillaBug && p.skip.is_none()) {
        BUG_STEP_RESERVE
    } else {
        Duration::ZERO
    };
    cx.time_left().map(|t| t.saturating_sub(MARGIN + reserve))
}

fn probe_error(e: ProbeError) -> ActionError {
    match counted(e) {
        ProbeError::Cancelled => ActionError::Cancelled,
        ProbeError::Ping(e) => ActionError::Config(e.to_string()),
    }
}

/// The error without the step name the task put in front of it.
fn reason(step: Task, e: &ActionError) -> String {
    let (prefix, msg) = match e {
        ActionError::Failed(m) | ActionError::Unreachable(m) | ActionError::Refused(m) => ("", m.as_str()),
        ActionError::Config(m) => ("configuration error: ", m.as_str()),
        ActionError::Cancelled => ("", "cancelled"),
    };
    format!("{prefix}{}", msg.strip_prefix(&format!("{step}: ")).unwrap_or(msg))
}

fn round(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}
