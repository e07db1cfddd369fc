//! Evidence before a power cut. RelOps' runbook: a power cycle "destroys all forensic
//! state" (the console's last words, the kernel's state), so before the first step
//! of a job that cuts power or resets the machine (`Task::cuts_power`), roller takes
//! what the class enables (`[classes.<name>.evidence]`, [`EvidencePolicy`]) and the
//! machine offers:
//!
//! * the probe matrix: ICMP, TCP to the ssh port with its banner, the class's TCP probe;
//! * the newest IPMI SEL records (`ipmitool -c sel list`, `drivers::ipmi::sel_entries`)
//!   and Redfish log entries (`drivers::redfish::log_entries`);
//! * a console tail over IPMI Serial-over-LAN (`drivers::ipmi::console_tail`).
//!
//! The pieces run at once, each with its own deadline inside the class's budget
//! (default 10 s), so a silent device costs the budget at most and the step goes on
//! with what was captured; a piece that is missing says why. It is taken once per
//! job: after the first cut the machine has nothing left to show, and a chain's later
//! steps would only record a fresh boot. The record goes into the job's result
//! (`evidence`), a summary into its log, and an excerpt into the bug the chain files.
//!
//! The dispatch table takes it before any task that declares `cuts_power`; the reboot
//! chain takes it before the step's proof starts, so the proof's clock is the
//! command's. `ActionContext::touch` refuses a cut for which nothing was taken.

mod record;

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

pub use self::record::{
    ConsoleEvidence, Evidence, Missing, Piece, Probes, RedfishLogEvidence, RedfishLogRecord, SelEvidence, SelRecord,
    TcpProbe, last_lines,
};
use super::{ActionContext, ActionError, Subject, Task, ipmi, redfish, resolve};
use crate::drivers::ipmi::{self as ipmi_driver, IpmiError, SOL_CLEANUP, SolEnd, SolWindow};
use crate::drivers::reachability::{self, Probe, TcpAnswer};
use crate::drivers::redfish::RedfishError;
use crate::drivers::{counted, redfish as redfish_driver};
use crate::inventory::{EvidencePolicy, Machine};

/// Time the step itself keeps before the soft time limit: evidence is cut short
/// rather than leave the step no time to run.
const STEP_RESERVE: Duration = Duration::from_secs(15);
/// One ICMP echo, one TCP connect, the wait for a banner.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The first `sol deactivate`: a BMC that is silent for this long is silent.
const SOL_DEACTIVATE: Duration = Duration::from_secs(3);
/// A driver's own deadline comes this much before the piece's, so its error (which
/// says what did not answer) wins over the budget's.
const DRIVER_MARGIN: Duration = Duration::from_millis(500);

/// Take the job's evidence before `step`, unless it was taken already. Never fails
/// the step: what cannot be had is recorded with why. `Err` only when the job was
/// cancelled meanwhile (the step must not start then).
#[tracing::instrument(name = "evidence", skip_all, fields(before = %step))]
pub async fn before(step: Task, on: &Subject, cx: &ActionContext) -> Result<(), ActionError> {
    if cx.evidence().is_some() {
        return Ok(());
    }
    // A machine outside the inventory has nothing to cut: its step fails on that first.
    let Ok(m) = on.machine() else { return Ok(()) };
    let evidence = take(step, m, cx).await;
    cx.log(evidence.summary());
    cx.settle_evidence(evidence);
    if cx.cancel.is_cancelled() { Err(ActionError::Cancelled) } else { Ok(()) }
}

async fn take(step: Task, m: &Machine, cx: &ActionContext) -> Evidence {
    let policy = &m.class.evidence;
    let budget = match cx.time_left() {
        Some(left) => policy.budget.min(left.saturating_sub(STEP_RESERVE)),
        None => policy.budget,
    };
    let start = Instant::now();
    let mut ev = Evidence {
        before: step,
        taken_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        seconds: 0.0,
        budget_secs: round(budget),
        probes: None,
        sel: None,
        redfish_log: None,
        console: None,
        missing: Vec::new(),
    };
    let skip = |why: String| Piece::ALL.map(|piece| Missing { piece, why: why.clone() }).to_vec();
    if !policy.enabled {
        ev.missing = skip(format!("disabled for class {}", m.class.name));
        return ev;
    }
    if budget < Duration::from_secs(1) {
        ev.missing = skip("no time left before the soft time limit".into());
        return ev;
    }
    let deadline = start + budget;
    let late = || format!("not done within the {}s budget", budget.as_secs());
    let (probes, sel, log, console) = tokio::join!(
        within(deadline, late(), probes(m, policy, cx)),
        within(deadline, late(), sel(m, policy, cx, deadline)),
        within(deadline, late(), redfish_log(m, policy, cx, deadline)),
        within(deadline, late(), console(m, policy, cx, deadline)),
    );
    let mut missing = |piece: Piece, why: String| ev.missing.push(Missing { piece, why });
    ev.probes = probes.map_err(|why| missing(Piece::Probes, why)).ok();
    ev.sel = sel.map_err(|why| missing(Piece::Sel, why)).ok();
    ev.redfish_log = log.map_err(|why| missing(Piece::RedfishLog, why)).ok();
    ev.console = console.map_err(|why| missing(Piece::Console, why)).ok();
    ev.seconds = round(start.elapsed());
    count(&ev, m);
    ev
}

/// `roller_evidence_pieces_total{piece, outcome}`: `taken`, `not_offered` (the class or
/// the machine has none), or `failed` (the device did not give it in time, or refused).
fn count(ev: &Evidence, m: &Machine) {
    for piece in Piece::ALL {
        let outcome = match (ev.has(piece), not_offered(piece, m)) {
            (true, _) => "taken",
            (false, Some(_)) => "not_offered",
            (false, None) => "failed",
        };
        let piece = match piece {
            Piece::Probes => "probes",
            Piece::Sel => "sel",
            Piece::RedfishLog => "redfish_log",
            Piece::Console => "console",
        };
        metrics::counter!("roller_evidence_pieces_total", "piece" => piece, "outcome" => outcome).increment(1);
    }
}

/// Why `piece` is not taken on `m` whatever the devices say (the class turns it off,
/// the machine lacks the interface); `None`: it is tried.
pub fn not_offered(piece: Piece, m: &Machine) -> Option<String> {
    let p = &m.class.evidence;
    let class = &m.class.name;
    match piece {
        _ if !p.enabled => Some(format!("disabled for class {class}")),
        Piece::Probes if !p.probes => Some(format!("disabled for class {class} (probes = false)")),
        Piece::Sel | Piece::RedfishLog if p.sel_entries == 0 => {
            Some(format!("disabled for class {class} (sel_entries = 0)"))
        }
        Piece::Sel if m.ipmi.is_none() => Some("no [ipmi] for this machine".into()),
        Piece::RedfishLog if m.redfish.is_none() => Some("no [redfish] for this machine".into()),
        Piece::Console if !p.sol => Some(format!("disabled for class {class} (sol = false)")),
        Piece::Console => match &m.ipmi {
            None => Some("no [ipmi] for this machine (the console is read over IPMI SOL)".into()),
            // SOL belongs to the BMC's LAN channel: bridged, it would be the chassis's console.
            Some(i) if i.bridging.is_some() => {
                Some("no SOL through IPMI bridging (a bridged node's console is not its BMC's SOL)".into())
            }
            Some(_) => None,
        },
        _ => None,
    }
}

/// What the evidence before a step would be on `m`, for `roller explain`.
pub fn describe(m: &Machine) -> String {
    let p = &m.class.evidence;
    if !p.enabled {
        return format!("no evidence (disabled for class {})", m.class.name);
    }
    let mut taken = Vec::new();
    let mut not = Vec::new();
    for piece in Piece::ALL {
        match not_offered(piece, m) {
            Some(why) => not.push(format!("{} ({why})", piece.name())),
            None => taken.push(match piece {
                Piece::Probes => {
                    let ports = tcp_ports(m).iter().map(|p| format!("tcp:{p}")).collect::<Vec<_>>().join(", ");
                    format!("probes (icmp, {ports}, ssh banner)")
                }
                Piece::Sel => format!("SEL {}", p.sel_entries),
                Piece::RedfishLog => format!("Redfish log {}", p.sel_entries),
                Piece::Console => {
                    format!("SOL {} over {}s", kib(p.console_bytes), p.console.as_secs())
                }
            }),
        }
    }
    taken.push(format!("budget {}s", p.budget.as_secs()));
    let mut out = format!("evidence ({})", taken.join(", "));
    if !not.is_empty() {
        out.push_str(&format!("; not taken: {}", not.join(", ")));
    }
    out
}

fn kib(bytes: usize) -> String {
    if bytes.is_multiple_of(1024) { format!("{} KiB", bytes / 1024) } else { format!("{bytes} bytes") }
}

/// The ssh port (the inventory's, else 22), then the class's TCP probe if it is another.
fn tcp_ports(m: &Machine) -> Vec<u16> {
    let ssh = m.ssh.as_ref().map_or(22, |s| s.port);
    match m.class.reachability {
        Probe::Tcp(p) if p != ssh => vec![ssh, p],
        _ => vec![ssh],
    }
}

async fn within<T>(
    deadline: Instant,
    late: String,
    piece: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout_at(deadline, piece).await.unwrap_or(Err(late))
}

async fn probes(m: &Machine, _: &EvidencePolicy, cx: &ActionContext) -> Result<Probes, String> {
    if let Some(why) = not_offered(Piece::Probes, m) {
        return Err(why);
    }
    let addr = resolve(&m.address, cx).await.map_err(|e| e.to_string())?.addr;
    let mut settings = cx.settings.reboot.probe.clone();
    settings.timeout = PROBE_TIMEOUT;
    settings.icmp.timeout = PROBE_TIMEOUT;
    let icmp = async {
        match reachability::answers(addr, Probe::Icmp, &settings, &cx.cancel).await {
            Ok(true) => "answers".to_string(),
            Ok(false) => "silent".to_string(),
            Err(e) => format!("not probed: {}", counted(e)),
        }
    };
    let ports = tcp_ports(m);
    let ssh = ports[0];
    let tcp = futures_util::future::join_all(ports.into_iter().map(|port| async move {
        // Only an ssh server speaks first; another service's silence says nothing.
        let banner_wait = if port == ssh { PROBE_TIMEOUT } else { Duration::ZERO };
        let answer = reachability::tcp_answer(addr, port, PROBE_TIMEOUT, banner_wait, &cx.cancel).await;
        let (answer, banner) = match answer {
            Ok(TcpAnswer::Accepted { banner }) => ("accepted", banner),
            Ok(TcpAnswer::Refused) => ("refused", None),
            Ok(TcpAnswer::Silent) => ("silent", None),
            Err(_) => ("not probed", None),
        };
        TcpProbe { port, answer, banner }
    }));
    let (icmp, tcp) = tokio::join!(icmp, tcp);
    Ok(Probes { address: addr.to_string(), icmp, tcp })
}

/// The driver's whole-call bound: what is left before `deadline` (less a margin), with
/// ipmitool's retransmits fitted in (its per-attempt timeout is at least a second).
fn ipmi_bound(t: &mut ipmi_driver::IpmiTarget, deadline: Instant, cap: Duration) -> Duration {
    let left = deadline.saturating_duration_since(Instant::now()).saturating_sub(DRIVER_MARGIN);
    t.timeout = left.min(cap).max(Duration::from_secs(1));
    t.retries = t.retries.min(t.timeout.as_secs().saturating_sub(1) as u32);
    t.timeout
}

/// Why an IPMI piece was not had, in the words the evidence uses.
fn ipmi_why(e: IpmiError, host: &str, bound: Duration) -> String {
    match counted(e) {
        IpmiError::Unreachable { .. } | IpmiError::Timeout { .. } => {
            format!("BMC {host} did not answer within {}s", bound.as_secs())
        }
        IpmiError::NoSol { .. } => format!("no SOL on this BMC ({host})"),
        e => e.to_string(),
    }
}

async fn sel(m: &Machine, p: &EvidencePolicy, cx: &ActionContext, deadline: Instant) -> Result<SelEvidence, String> {
    if let Some(why) = not_offered(Piece::Sel, m) {
        return Err(why);
    }
    let mut t = ipmi::ipmi_target(m, cx).map_err(|e| e.to_string())?;
    let bound = ipmi_bound(&mut t, deadline, Duration::MAX);
    let entries =
        ipmi_driver::sel_entries(&t, p.sel_entries, &cx.cancel).await.map_err(|e| ipmi_why(e, &t.host, bound))?;
    let entries = entries
        .into_iter()
        .map(|e| SelRecord {
            id: e.id,
            date: e.date,
            time: e.time,
            sensor: e.sensor,
            event: e.event,
            direction: e.direction,
        })
        .collect();
    Ok(SelEvidence { bmc: t.host, entries })
}

async fn redfish_log(
    m: &Machine,
    p: &EvidencePolicy,
    cx: &ActionContext,
    deadline: Instant,
) -> Result<RedfishLogEvidence, String> {
    if let Some(why) = not_offered(Piece::RedfishLog, m) {
        return Err(why);
    }
    let mut t = redfish::redfish_target(m).map_err(|e| e.to_string())?;
    let bound = deadline.saturating_duration_since(Instant::now()).saturating_sub(DRIVER_MARGIN);
    t.timeout = bound.max(Duration::from_millis(100));
    let entries =
        redfish_driver::log_entries(&t, p.sel_entries as usize, &cx.cancel).await.map_err(|e| match counted(e) {
            RedfishError::Timeout { host, .. } => format!("BMC {host} did not answer within {}s", bound.as_secs()),
            e => e.to_string(),
        })?;
    let entries = entries
        .into_iter()
        .map(|e| RedfishLogRecord {
            service: e.service,
            id: e.id,
            created: e.created,
            severity: e.severity,
            message: e.message,
        })
        .collect();
    Ok(RedfishLogEvidence { bmc: t.base_url, entries })
}

async fn console(
    m: &Machine,
    p: &EvidencePolicy,
    cx: &ActionContext,
    deadline: Instant,
) -> Result<ConsoleEvidence, String> {
    if let Some(why) = not_offered(Piece::Console, m) {
        return Err(why);
    }
    let mut t = ipmi::ipmi_target(m, cx).map_err(|e| e.to_string())?;
    // The window ends in time for the session's clean-up to fit the budget.
    let window_end = deadline.checked_sub(SOL_CLEANUP).unwrap_or(deadline);
    let bound = ipmi_bound(&mut t, window_end, SOL_DEACTIVATE);
    if window_end <= Instant::now() + bound {
        return Err(format!("the {}s budget leaves no time for a console window", p.budget.as_secs()));
    }
    let window = SolWindow { read_for: p.console, max_bytes: p.console_bytes, deadline: window_end };
    let tail = ipmi_driver::console_tail(&t, window, &cx.cancel).await.map_err(|e| ipmi_why(e, &t.host, bound))?;
    let truncated = (tail.bytes_dropped > 0)
        .then(|| format!("kept the newest {} of {} bytes", tail.bytes_read - tail.bytes_dropped, tail.bytes_read));
    Ok(ConsoleEvidence {
        bmc: t.host,
        text: tail.text,
        bytes: tail.bytes_read,
        seconds: round(tail.read_for),
        truncated,
        ended_a_session: tail.was_active,
        session_end: match tail.ended {
            SolEnd::Clean => "cleanly",
            SolEnd::ByTheBmc => "by the BMC",
            SolEnd::Killed { deactivated: true } => "killed, then deactivated",
            SolEnd::Killed { deactivated: false } => "killed; deactivating failed",
        },
    })
}

fn round(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}
