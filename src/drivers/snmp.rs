//! ServerTech Sentry3 PDU outlet control over native SNMP v2c (snmp2), replacing
//! the original's `snmpset` through a shell.
//!
//! # Objects
//!
//! * `outletControlAction` `1.3.6.1.4.1.1718.3.2.3.1.11.<t>.<i>.<o>`, read-write
//!   INTEGER: 1 on, 2 off, 3 reboot.
//! * `outletStatus` `1.3.6.1.4.1.1718.3.2.3.1.5.<t>.<i>.<o>`: 0 off, 1 on,
//!   2 offWait, 3 onWait.
//!
//! # Semantics
//!
//! * The community is a [`SecretString`]: it never reaches argv (there is no
//!   child process), `Debug`, or any [`SnmpError`] message.
//! * snmp2 has no timeout and no retries, so every request is wrapped in
//!   [`tokio::time::timeout`] and tried `retries + 1` times. Each attempt uses a
//!   fresh socket and a random request id, so a late reply to an abandoned
//!   attempt can never be mistaken for the answer to the next one.
//! * SNMP v2c agents drop requests with a wrong community silently, so a wrong
//!   community and an unreachable PDU look the same: [`SnmpError::Timeout`].
//! * SETs are retried too. A retried `on`/`off` is idempotent; a retried
//!   `reboot` whose first reply was lost restarts the PDU's reboot cycle, which
//!   is harmless for a machine that is being rebooted anyway.
//! * The host is resolved once per public call, not once per attempt, so a
//!   flapping DNS answer cannot send the `on` of a delayed reboot elsewhere.
//! * Cancellation is checked before every request and raced against every wait;
//!   a request already on the wire may still reach the PDU.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use snmp2::{AsyncSession, Oid, Value};
use tokio_util::sync::CancellationToken;

use super::gate::Gates;

/// `outletTable` entry prefix (`sentry3` `.2.3.1`), without the column.
const OUTLET_ENTRY: [u64; 11] = [1, 3, 6, 1, 4, 1, 1718, 3, 2, 3, 1];
const COLUMN_STATUS: u64 = 5;
const COLUMN_CONTROL_ACTION: u64 = 11;

/// Longest outlet string echoed back in an error: input may come from a request.
const MAX_ECHO: usize = 16;

/// One outlet of a Sentry3 PDU: tower, infeed and outlet number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Outlet {
    pub tower: u8,
    pub infeed: u8,
    pub outlet: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutletParseError {
    #[error("outlet string is empty (expected e.g. AB12: tower letter, infeed letter, outlet number)")]
    Empty,
    #[error("outlet string {0:?} is too short (expected e.g. AB12: tower, infeed, outlet number)")]
    TooShort(String),
    #[error("outlet string {input:?}: tower {found:?} is not a, b, c or a digit 1-9")]
    Tower { input: String, found: char },
    #[error("outlet string {input:?}: infeed {found:?} is not a, b, c or a digit 1-9")]
    Infeed { input: String, found: char },
    #[error("outlet string {input:?}: outlet number must be 1 to 999 (up to three digits)")]
    OutletNumber { input: String },
}

/// Cut `s` to at most [`MAX_ECHO`] characters for an error message (char-wise, so
/// multi-byte input cannot split a code point).
fn echo(s: &str) -> String {
    if s.chars().count() <= MAX_ECHO {
        s.to_string()
    } else {
        let mut cut: String = s.chars().take(MAX_ECHO).collect();
        cut.push('…');
        cut
    }
}

/// The original's mapping: a/b/c in either case are 1/2/3, anything else passes
/// through; here the result must then be a digit 1-9, because anything else
/// would have produced an OID the PDU cannot have.
fn tower_or_infeed(c: char) -> Option<u8> {
    match c.to_ascii_lowercase() {
        'a' => Some(1),
        'b' => Some(2),
        'c' => Some(3),
        d @ '1'..='9' => Some(d as u8 - b'0'),
        _ => None,
    }
}

impl Outlet {
    /// Parse the inventory's outlet string: character 1 the tower, character 2
    /// the infeed, the rest the outlet number (`AB12` → 1.2.12). No whitespace is
    /// trimmed: a stray space in the inventory is reported, not guessed around.
    pub fn parse(s: &str) -> Result<Outlet, OutletParseError> {
        let mut chars = s.chars();
        let (Some(t), Some(i)) = (chars.next(), chars.next()) else {
            return Err(if s.is_empty() { OutletParseError::Empty } else { OutletParseError::TooShort(echo(s)) });
        };
        let rest = chars.as_str();
        if rest.is_empty() {
            return Err(OutletParseError::TooShort(echo(s)));
        }
        let tower = tower_or_infeed(t).ok_or_else(|| OutletParseError::Tower { input: echo(s), found: t })?;
        let infeed = tower_or_infeed(i).ok_or_else(|| OutletParseError::Infeed { input: echo(s), found: i })?;
        // Only ASCII digits: `u16::from_str` would also take a leading '+'.
        let outlet = (rest.len() <= 3 && rest.bytes().all(|b| b.is_ascii_digit()))
            .then(|| rest.parse::<u16>().ok())
            .flatten()
            .filter(|n| (1..=999).contains(n))
            .ok_or_else(|| OutletParseError::OutletNumber { input: echo(s) })?;
        Ok(Outlet { tower, infeed, outlet })
    }

    fn oid(self, column: u64) -> Oid<'static> {
        let mut arcs = OUTLET_ENTRY.to_vec();
        arcs.extend([column, u64::from(self.tower), u64::from(self.infeed), u64::from(self.outlet)]);
        // Every arc list starting 1.3 encodes; failure would be a bug in this file.
        Oid::from(&arcs).expect("a 1.3.… OID always encodes")
    }

    /// `outletControlAction.<t>.<i>.<o>`.
    pub fn control_oid(self) -> Oid<'static> {
        self.oid(COLUMN_CONTROL_ACTION)
    }

    /// `outletStatus.<t>.<i>.<o>`.
    pub fn status_oid(self) -> Oid<'static> {
        self.oid(COLUMN_STATUS)
    }
}

impl fmt::Display for Outlet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.tower, self.infeed, self.outlet)
    }
}

impl std::str::FromStr for Outlet {
    type Err = OutletParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Outlet::parse(s)
    }
}

/// Where a PDU's SNMP agent listens and how to talk to it.
#[derive(Clone)]
pub struct PduTarget {
    /// Host name or IP address (IPv6 optionally in brackets); checked on every call.
    pub host: String,
    pub port: u16,
    /// The read-write community.
    pub community: SecretString,
    /// How long to wait for each single request's reply.
    pub timeout: Duration,
    /// Further attempts after the first one times out.
    pub retries: u32,
    /// The per-device limits outlet SETs go through: the process's [`Gates`], so every
    /// job's SETs to one PDU share its slots and power-on turns.
    pub gate: Gates,
}

impl PduTarget {
    /// Port 161, 5 s per request, 2 retries: a LAN PDU answers in milliseconds, and
    /// a wrong community costs 15 s rather than the original's 60 s.
    pub fn new(host: impl Into<String>, community: SecretString) -> Result<PduTarget, SnmpError> {
        let target = PduTarget {
            host: host.into(),
            port: 161,
            community,
            timeout: Duration::from_secs(5),
            retries: 2,
            gate: Gates::default(),
        };
        validate_host(&target.host)?;
        Ok(target)
    }
}

impl fmt::Debug for PduTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PduTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("community", &"[redacted]")
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

/// `outletStatus` as the PDU reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutletStatus {
    Off,
    On,
    OffWait,
    OnWait,
    /// A value the Sentry3 MIB does not define; kept rather than guessed.
    Other(i64),
}

impl OutletStatus {
    pub fn from_raw(v: i64) -> OutletStatus {
        match v {
            0 => OutletStatus::Off,
            1 => OutletStatus::On,
            2 => OutletStatus::OffWait,
            3 => OutletStatus::OnWait,
            n => OutletStatus::Other(n),
        }
    }
}

/// What to SET `outletControlAction` to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutletAction {
    On,
    Off,
    /// The PDU's own off-wait-on cycle.
    Reboot,
}

impl OutletAction {
    pub fn value(self) -> i64 {
        match self {
            OutletAction::On => 1,
            OutletAction::Off => 2,
            OutletAction::Reboot => 3,
        }
    }
}

/// Errors never contain the community: nothing here is built from it.
#[derive(Debug, thiserror::Error)]
pub enum SnmpError {
    #[error("no answer from PDU {addr} after {attempts} attempt(s) of {timeout:?} (wrong community or unreachable)")]
    Timeout { addr: SocketAddr, attempts: u32, timeout: Duration },
    /// The agent answered with a non-zero error-status.
    #[error("PDU refused {op} of outlet {outlet} ({oid}): {status_name} (error-status {status}, error-index {index})")]
    Agent { op: &'static str, outlet: Outlet, oid: String, status: u32, status_name: &'static str, index: u32 },
    /// A GET answered noSuchObject/noSuchInstance: the PDU has no such tower, infeed or outlet.
    #[error("PDU has no outlet {outlet} ({oid})")]
    NoSuchOutlet { outlet: Outlet, oid: String },
    /// The agent answered, but not with what the MIB says it should.
    #[error("unexpected answer from PDU for outlet {outlet}: {detail}")]
    Protocol { outlet: Outlet, detail: String },
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
    /// A request already on the wire may still have reached the PDU.
    #[error("cancelled (a request already sent may still have reached the PDU)")]
    Cancelled,
    /// The conservative outcome of cancelling [`reboot_with_delay`] after its `off`.
    #[error("cancelled during a delayed reboot: outlet {0} was left OFF; turn it on explicitly if wanted")]
    CancelledLeftOff(Outlet),
    #[error("invalid PDU target: {0}")]
    InvalidTarget(String),
    /// The caller's hook refused to go on: nothing was sent.
    #[error("not started: {0}")]
    NotStarted(String),
}

fn status_name(status: u32) -> &'static str {
    use snmp2::snmp::*;
    match status {
        ERRSTATUS_TOOBIG => "tooBig",
        ERRSTATUS_NOSUCHNAME => "noSuchName",
        ERRSTATUS_BADVALUE => "badValue",
        ERRSTATUS_READONLY => "readOnly",
        ERRSTATUS_GENERR => "genErr",
        ERRSTATUS_NOACCESS => "noAccess",
        ERRSTATUS_WRONGTYPE => "wrongType",
        ERRSTATUS_WRONGLENGTH => "wrongLength",
        ERRSTATUS_WRONGENCODING => "wrongEncoding",
        ERRSTATUS_WRONGVALUE => "wrongValue",
        ERRSTATUS_NOCREATION => "noCreation",
        ERRSTATUS_INCONSISTENTVALUE => "inconsistentValue",
        ERRSTATUS_RESOURCEUNAVAILABLE => "resourceUnavailable",
        ERRSTATUS_COMMITFAILED => "commitFailed",
        ERRSTATUS_UNDOFAILED => "undoFailed",
        ERRSTATUS_AUTHORIZATIONERROR => "authorizationError",
        ERRSTATUS_NOTWRITABLE => "notWritable",
        ERRSTATUS_INCONSISTENTNAME => "inconsistentName",
        _ => "unknown error-status",
    }
}

/// Host names and IP literals only: the value comes from inventory, and anything
/// else (spaces, `@`, `/`, control characters) is a mistake to report early.
fn validate_host(host: &str) -> Result<(), SnmpError> {
    let inner = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if inner.is_empty() || inner.len() > 253 {
        return Err(SnmpError::InvalidTarget("host must be 1 to 253 characters".into()));
    }
    if !inner.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':')) {
        return Err(SnmpError::InvalidTarget(format!(
            "host {:?} may only contain letters, digits, '.', '-', '_' and ':'",
            echo(host)
        )));
    }
    if inner.starts_with('-') || inner.starts_with('.') {
        return Err(SnmpError::InvalidTarget(format!("host {:?} must start with a letter or digit", echo(host))));
    }
    Ok(())
}

/// Validate and resolve once; the first address wins, as snmpset's does.
async fn resolve(target: &PduTarget, cancel: &CancellationToken) -> Result<SocketAddr, SnmpError> {
    validate_host(&target.host)?;
    if target.port == 0 {
        return Err(SnmpError::InvalidTarget("port must not be 0".into()));
    }
    let inner = target.host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(&target.host);
    if let Ok(ip) = inner.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, target.port));
    }
    let lookup = tokio::net::lookup_host((inner, target.port));
    // DNS gets the same budget as one request, so a dead resolver cannot hang a job.
    let found = tokio::select! {
        _ = cancel.cancelled() => return Err(SnmpError::Cancelled),
        r = tokio::time::timeout(target.timeout, lookup) => r,
    };
    let op = || format!("resolving PDU host {}", target.host);
    match found {
        Err(_) => Err(SnmpError::Io { op: op(), source: std::io::ErrorKind::TimedOut.into() }),
        Ok(Err(source)) => Err(SnmpError::Io { op: op(), source }),
        Ok(Ok(mut addrs)) => addrs.next().ok_or_else(|| SnmpError::Io {
            op: op(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
        }),
    }
}

#[derive(Clone, Copy)]
enum Request {
    Get,
    Set(i64),
}

/// The one varbind of an answer, copied out of snmp2's borrowed PDU.
#[derive(Debug)]
enum Answer {
    Integer(i64),
    NoSuch,
    Other(String),
}

struct Reply {
    error_status: u32,
    error_index: u32,
    answer: Option<Answer>,
}

/// What one attempt can end in, other than a reply.
enum AttemptError {
    /// Worth another attempt: timed out, or the socket said the port is unreachable.
    Retry,
    Fatal(SnmpError),
}

async fn attempt(
    addr: SocketAddr,
    community: &SecretString,
    oid: &Oid<'static>,
    req: Request,
    outlet: Outlet,
) -> Result<Reply, AttemptError> {
    // Positive request ids only; some agents mishandle negative ones.
    let req_id = (rand::random::<u32>() >> 1) as i32;
    let mut session =
        AsyncSession::new_v2c(addr, community.expose_secret().as_bytes(), req_id).await.map_err(|source| {
            AttemptError::Fatal(SnmpError::Io { op: format!("opening a UDP socket to {addr}"), source })
        })?;
    let result = match req {
        Request::Get => session.get(oid).await,
        Request::Set(v) => session.set(&[(oid, Value::Integer(v))]).await,
    };
    match result {
        Ok(mut pdu) => {
            let answer = pdu.varbinds.next().map(|(_, value)| match value {
                Value::Integer(n) => Answer::Integer(n),
                Value::NoSuchObject | Value::NoSuchInstance | Value::EndOfMibView => Answer::NoSuch,
                other => Answer::Other(format!("{other:?}")),
            });
            Ok(Reply { error_status: pdu.error_status, error_index: pdu.error_index, answer })
        }
        // A connected UDP socket reports an ICMP port-unreachable as a receive
        // error; nothing listening is "no answer", and may be a PDU restarting.
        Err(snmp2::Error::Send | snmp2::Error::Receive) => Err(AttemptError::Retry),
        Err(e) => Err(AttemptError::Fatal(SnmpError::Protocol { outlet, detail: e.to_string() })),
    }
}

/// One request with timeout, retries and cancellation.
async fn request(
    target: &PduTarget,
    addr: SocketAddr,
    oid: &Oid<'static>,
    req: Request,
    outlet: Outlet,
    cancel: &CancellationToken,
) -> Result<Reply, SnmpError> {
    let attempts = target.retries.saturating_add(1);
    for n in 1..=attempts {
        if cancel.is_cancelled() {
            return Err(SnmpError::Cancelled);
        }
        let started = tokio::time::Instant::now();
        let outcome = tokio::select! {
            _ = cancel.cancelled() => return Err(SnmpError::Cancelled),
            r = tokio::time::timeout(target.timeout, attempt(addr, &target.community, oid, req, outlet)) => r,
        };
        match outcome {
            Ok(Ok(reply)) => return Ok(reply),
            Ok(Err(AttemptError::Fatal(e))) => return Err(e),
            Ok(Err(AttemptError::Retry)) => {
                // An immediate "unreachable" must not burn all retries in a
                // microsecond: wait out the attempt's time like a silent drop.
                tokio::select! {
                    _ = cancel.cancelled() => return Err(SnmpError::Cancelled),
                    _ = tokio::time::sleep_until(started + target.timeout) => {}
                }
            }
            Err(_elapsed) => {}
        }
        tracing::debug!(%addr, attempt = n, attempts, "no answer from PDU");
    }
    Err(SnmpError::Timeout { addr, attempts, timeout: target.timeout })
}

fn check_agent(op: &'static str, outlet: Outlet, oid: &Oid<'_>, reply: &Reply) -> Result<(), SnmpError> {
    if reply.error_status == 0 {
        return Ok(());
    }
    Err(SnmpError::Agent {
        op,
        outlet,
        oid: oid.to_id_string(),
        status: reply.error_status,
        status_name: status_name(reply.error_status),
        index: reply.error_index,
    })
}

async fn read_status(
    target: &PduTarget,
    addr: SocketAddr,
    outlet: Outlet,
    cancel: &CancellationToken,
) -> Result<OutletStatus, SnmpError> {
    let oid = outlet.status_oid();
    let reply = request(target, addr, &oid, Request::Get, outlet, cancel).await?;
    check_agent("GET", outlet, &oid, &reply)?;
    match reply.answer {
        Some(Answer::Integer(n)) => Ok(OutletStatus::from_raw(n)),
        Some(Answer::NoSuch) => Err(SnmpError::NoSuchOutlet { outlet, oid: oid.to_id_string() }),
        Some(Answer::Other(v)) => Err(SnmpError::Protocol { outlet, detail: format!("outletStatus is {v}") }),
        None => Err(SnmpError::Protocol { outlet, detail: "answer without a varbind".into() }),
    }
}

async fn send_set(
    target: &PduTarget,
    addr: SocketAddr,
    outlet: Outlet,
    action: OutletAction,
    cancel: &CancellationToken,
) -> Result<(), SnmpError> {
    let oid = outlet.control_oid();
    // One device slot for the SET (a PDU's agent handles little at once), then,
    // for a power-on, its turn: outlets of one PDU come on `stagger` apart (inrush current).
    let key = gate_key(target);
    let _slot = target.gate.enter(&key, cancel).await.ok_or(SnmpError::Cancelled)?;
    // Held until the PDU has answered (see `gate::PowerOnTurn`).
    let _turn = match action {
        OutletAction::On | OutletAction::Reboot => {
            Some(target.gate.power_on_turn(&key, cancel).await.ok_or(SnmpError::Cancelled)?)
        }
        _ => None,
    };
    let reply = request(target, addr, &oid, Request::Set(action.value()), outlet, cancel).await?;
    check_agent("SET", outlet, &oid, &reply)
}

async fn set_resolved(
    target: &PduTarget,
    addr: SocketAddr,
    outlet: Outlet,
    action: OutletAction,
    cancel: &CancellationToken,
) -> Result<OutletStatus, SnmpError> {
    send_set(target, addr, outlet, action, cancel).await?;
    // The SET's own answer only echoes the value; the status read proves the
    // outlet exists and records what the PDU did (real units may sit in
    // onWait/offWait for their sequencing delay, so no state is demanded).
    let status = read_status(target, addr, outlet, cancel).await?;
    tracing::info!(host = %target.host, %outlet, ?action, ?status, "PDU outlet SET");
    Ok(status)
}

/// Read `outletStatus` of one outlet.
pub async fn outlet_status(
    target: &PduTarget,
    outlet: Outlet,
    cancel: &CancellationToken,
) -> Result<OutletStatus, SnmpError> {
    let addr = resolve(target, cancel).await?;
    read_status(target, addr, outlet, cancel).await
}

/// Read `outletStatus` of one outlet holding a slot on the PDU, as a SET does: for reads
/// that no job waits on (the standing path checks, through [`Gates::background`]), so
/// they keep out of the way of the PDU's jobs. Nothing is set.
pub async fn outlet_status_in_slot(
    target: &PduTarget,
    outlet: Outlet,
    cancel: &CancellationToken,
) -> Result<OutletStatus, SnmpError> {
    let addr = resolve(target, cancel).await?;
    let _slot = target.gate.enter(&gate_key(target), cancel).await.ok_or(SnmpError::Cancelled)?;
    read_status(target, addr, outlet, cancel).await
}

/// The PDU as the per-device limits know it.
fn gate_key(target: &PduTarget) -> String {
    format!("pdu:{}:{}", target.host, target.port)
}

/// SET `outletControlAction`, then read the status back. An SNMP error from
/// either request, or a missing outlet, is an error.
pub async fn set_outlet(
    target: &PduTarget,
    outlet: Outlet,
    action: OutletAction,
    cancel: &CancellationToken,
) -> Result<(), SnmpError> {
    let addr = resolve(target, cancel).await?;
    set_resolved(target, addr, outlet, action, cancel).await.map(|_| ())
}

/// The original's `--delay`: off, wait `delay`, on. Use
/// `set_outlet(.., OutletAction::Reboot, ..)` for the PDU's own reboot cycle.
///
/// Cancelled once the `off` is answered (during its read-back, the wait or the
/// `on`), the outlet is left off and
/// [`SnmpError::CancelledLeftOff`] says so: cancellation means "stop touching
/// this hardware now", and an outlet that is off is a known state; turning it
/// back on would be one more unbounded request after being told to stop.
pub async fn reboot_with_delay(
    target: &PduTarget,
    outlet: Outlet,
    delay: Duration,
    cancel: &CancellationToken,
) -> Result<(), SnmpError> {
    reboot_with_delay_after(target, outlet, delay, cancel, async || Ok(())).await
}

/// [`reboot_with_delay`], calling `before_off` right before the `off` is sent (after
/// everything that can fail without touching the outlet): the caller's chance to record
/// how to undo it. Its error stops everything, nothing sent ([`SnmpError::NotStarted`]).
pub async fn reboot_with_delay_after(
    target: &PduTarget,
    outlet: Outlet,
    delay: Duration,
    cancel: &CancellationToken,
    before_off: impl AsyncFnOnce() -> Result<(), String>,
) -> Result<(), SnmpError> {
    let addr = resolve(target, cancel).await?;
    before_off().await.map_err(SnmpError::NotStarted)?;
    // Cancelled while the off is in flight: plain `Cancelled`, the PDU may or
    // may not have seen it. Once it is answered, any cancel leaves it off.
    send_set(target, addr, outlet, OutletAction::Off, cancel).await?;
    let left_off = |e| match e {
        SnmpError::Cancelled => SnmpError::CancelledLeftOff(outlet),
        e => e,
    };
    let status = read_status(target, addr, outlet, cancel).await.map_err(left_off)?;
    tracing::info!(host = %target.host, %outlet, action = ?OutletAction::Off, ?status, "PDU outlet SET");
    tokio::select! {
        _ = cancel.cancelled() => {
            tracing::warn!(host = %target.host, %outlet, "delayed reboot cancelled; outlet left off");
            return Err(SnmpError::CancelledLeftOff(outlet));
        }
        _ = tokio::time::sleep(delay) => {}
    }
    // Cancelled while the on is in flight it most likely stays off; once the on
    // is answered a cancelled read-back is plain `Cancelled`: it is on.
    send_set(target, addr, outlet, OutletAction::On, cancel).await.map_err(left_off)?;
    let status = read_status(target, addr, outlet, cancel).await?;
    tracing::info!(host = %target.host, %outlet, action = ?OutletAction::On, ?status, "PDU outlet SET");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(tower: u8, infeed: u8, outlet: u16) -> Outlet {
        Outlet { tower, infeed, outlet }
    }

    #[test]
    fn parses_the_originals_outlet_strings() {
        assert_eq!(Outlet::parse("AB12"), Ok(o(1, 2, 12)));
        assert_eq!(Outlet::parse("ab12"), Ok(o(1, 2, 12)));
        assert_eq!(Outlet::parse("aB12"), Ok(o(1, 2, 12)));
        assert_eq!(Outlet::parse("AA1"), Ok(o(1, 1, 1)));
        assert_eq!(Outlet::parse("CC999"), Ok(o(3, 3, 999)));
        assert_eq!(Outlet::parse("BA3"), Ok(o(2, 1, 3)));
        // Digits pass through, as in the original.
        assert_eq!(
            Outlet::parse("12" /* tower 1, infeed 2, no outlet */),
            Err(OutletParseError::TooShort("12".into()))
        );
        assert_eq!(Outlet::parse("128"), Ok(o(1, 2, 8)));
        assert_eq!(Outlet::parse("9916"), Ok(o(9, 9, 16)));
        assert_eq!(Outlet::parse("A3007"), Ok(o(1, 3, 7)));
        assert_eq!(Outlet::parse("AA010"), Ok(o(1, 1, 10)));
    }

    #[test]
    fn rejects_garbage_with_clear_errors() {
        assert_eq!(Outlet::parse(""), Err(OutletParseError::Empty));
        assert!(matches!(Outlet::parse("A"), Err(OutletParseError::TooShort(_))));
        assert!(matches!(Outlet::parse("AB"), Err(OutletParseError::TooShort(_))));
        assert!(matches!(Outlet::parse("DA1"), Err(OutletParseError::Tower { found: 'D', .. })));
        assert!(matches!(Outlet::parse("0A1"), Err(OutletParseError::Tower { found: '0', .. })));
        assert!(matches!(Outlet::parse("AZ1"), Err(OutletParseError::Infeed { found: 'Z', .. })));
        assert!(matches!(Outlet::parse("A 1"), Err(OutletParseError::Infeed { found: ' ', .. })));
        for bad in ["AA0", "AA000", "AA1000", "AA12a", "AA+1", "AA-1", "AA 1", "AA1 ", "AA١", "AA12345678901234567890"]
        {
            assert!(
                matches!(Outlet::parse(bad), Err(OutletParseError::OutletNumber { .. })),
                "{bad:?} -> {:?}",
                Outlet::parse(bad)
            );
        }
        let e = Outlet::parse("DA1").unwrap_err().to_string();
        assert!(e.contains("\"DA1\"") && e.contains("tower"), "{e}");
        let e = Outlet::parse("AA1000").unwrap_err().to_string();
        assert!(e.contains("1 to 999"), "{e}");
    }

    #[test]
    fn unicode_and_overlong_input_never_panics_and_is_cut_in_errors() {
        for s in ["é", "éé", "ééé", "AÉ1", "Aé1", "日本語", "A日1", "AA日", "🔌🔌1", "\u{0}\u{0}\u{0}", "Ａ Ｂ12"]
        {
            assert!(Outlet::parse(s).is_err(), "{s:?}");
        }
        let long = "Z".repeat(10_000);
        let e = Outlet::parse(&long).unwrap_err().to_string();
        assert!(e.len() < 200, "{e}");
        let long_uni = "é".repeat(1000);
        let e = Outlet::parse(&long_uni).unwrap_err().to_string();
        assert!(e.contains('…'), "{e}");
    }

    #[test]
    fn oids_follow_the_sentry3_table() {
        let out = Outlet::parse("AB12").unwrap();
        assert_eq!(out.control_oid().to_id_string(), "1.3.6.1.4.1.1718.3.2.3.1.11.1.2.12");
        assert_eq!(out.status_oid().to_id_string(), "1.3.6.1.4.1.1718.3.2.3.1.5.1.2.12");
        assert_eq!(out.to_string(), "1.2.12");
        assert_eq!(
            "CA999".parse::<Outlet>().unwrap().control_oid().to_id_string(),
            "1.3.6.1.4.1.1718.3.2.3.1.11.3.1.999"
        );
    }

    #[test]
    fn status_and_action_values() {
        assert_eq!(OutletStatus::from_raw(0), OutletStatus::Off);
        assert_eq!(OutletStatus::from_raw(1), OutletStatus::On);
        assert_eq!(OutletStatus::from_raw(2), OutletStatus::OffWait);
        assert_eq!(OutletStatus::from_raw(3), OutletStatus::OnWait);
        assert_eq!(OutletStatus::from_raw(7), OutletStatus::Other(7));
        assert_eq!(OutletStatus::from_raw(-1), OutletStatus::Other(-1));
        assert_eq!([OutletAction::On, OutletAction::Off, OutletAction::Reboot].map(OutletAction::value), [1, 2, 3]);
    }

    #[test]
    fn target_debug_redacts_the_community() {
        let t = PduTarget::new("pdu1.example.com", SecretString::from("very-s3cret-community")).unwrap();
        let d = format!("{t:?}");
        assert!(!d.contains("very-s3cret-community"), "{d}");
        assert!(d.contains("[redacted]") && d.contains("pdu1.example.com") && d.contains("161"), "{d}");
    }

    #[test]
    fn host_validation() {
        let c = || SecretString::from("c");
        for ok in ["pdu1", "pdu-1.example.com", "10.0.0.1", "::1", "[fe80::1]", "under_score.local"] {
            assert!(PduTarget::new(ok, c()).is_ok(), "{ok}");
        }
        for bad in ["", "[]", "pdu 1", "-oProxy", ".x", "a/b", "user@pdu", "pdü", "pdu\n", &"a".repeat(254)] {
            let e = PduTarget::new(bad, c()).unwrap_err();
            assert!(matches!(e, SnmpError::InvalidTarget(_)), "{bad:?}: {e}");
        }
    }

    #[tokio::test]
    async fn invalid_target_and_cancelled_token_fail_before_any_io() {
        let mut t = PduTarget::new("127.0.0.1", SecretString::from("c")).unwrap();
        let cancel = CancellationToken::new();
        cancel.cancel();
        let e = outlet_status(&t, o(1, 1, 1), &cancel).await.unwrap_err();
        assert!(matches!(e, SnmpError::Cancelled), "{e}");
        t.host = "bad host".into();
        let e = outlet_status(&t, o(1, 1, 1), &CancellationToken::new()).await.unwrap_err();
        assert!(matches!(e, SnmpError::InvalidTarget(_)), "{e}");
    }

    #[test]
    fn agent_status_names() {
        assert_eq!(status_name(2), "noSuchName");
        assert_eq!(status_name(17), "notWritable");
        assert_eq!(status_name(10), "wrongValue");
        assert_eq!(status_name(99), "unknown error-status");
    }
}
