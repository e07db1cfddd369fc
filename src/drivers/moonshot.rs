//! One node of an HP Moonshot chassis through its iLO Chassis Manager's REST API, as
//! RelOps drives it (reference/fleet-health.md §3), hand-rolled on reqwest.
//!
//! # Calls
//!
//! All three go to the node's own resource, `https://<chassis>/rest/v1/Systems/c<N>n1`
//! (HP REST: actions are POSTed to the resource itself, not to a Redfish
//! `/Actions/ComputerSystem.Reset` target):
//!
//! * [`cold_reset`]: `POST {"Action": "Reset", "ResetType": "ColdReset"}`;
//! * [`pxe_once`]: `PATCH {"Boot": {"BootSourceOverrideEnabled": "Once",
//!   "BootSourceOverrideTarget": "PXE"}}`, the next boot only;
//! * [`power`]: `GET`, reading `Power` or `PowerState`. Which field the chassis
//!   manager uses is not verified (RelOps reads power over the CM's SSH CLI), so both
//!   are accepted, and a resource with neither is `None`: the power state is not
//!   offered, and callers rely on probes of the machine instead.
//!
//! Each call is one request with basic auth, bounded by the target's timeout (connect
//! included), and goes through the per-device gate of its chassis ([`Gates`]): one
//! chassis manager fronts 45 cartridges, so the limit is per chassis, not per node. A
//! ColdReset takes the chassis's power-on turn as well: it ends in a power-on, and a
//! rack's cartridges must not all start at the same instant.
//!
//! # TLS
//!
//! Chassis managers ship self-signed certificates. The certificate is verified by
//! default, against the platform's roots or, with a CA file, against that file's
//! certificates only. Not verifying at all is [`ChassisTls::Insecure`], an explicit
//! setting. webpki refuses a certificate marked as a CA as a server's own, so a CA
//! file must hold the certificate that *issued* the chassis's.
//!
//! # Secrets
//!
//! The password leaves this module only in the `Authorization` header (marked
//! sensitive). Errors name the chassis, the node, the status and the chassis's own
//! message (`Messages[0].MessageID` and `MessageArgs` of its `ExtendedError` body),
//! bounded and scrubbed of the password in case it echoes a request.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::gate::Gates;
use super::{bounded, read_bounded};

/// A node resource is a few KiB.
const MAX_BODY: usize = 256 * 1024;
/// The chassis's own words are cut here, so a chatty one cannot flood a job record.
const MAX_MESSAGE: usize = 300;
/// Cartridges in a chassis: c1 … c45.
pub const CARTRIDGES: u8 = 45;
/// Nodes on one cartridge: the m710x RelOps runs has one (`c<N>n1`); the m700 has four.
const NODES_PER_CARTRIDGE: u8 = 4;

/// A node of a chassis, `c<cartridge>n<node>`, parsed like RelOps' `normalize_node`
/// (`5` and `c5` are `c5n1`), case-insensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Node {
    cartridge: u8,
    node: u8,
}

impl Node {
    /// Cartridge `cartridge` (1..=45), node 1.
    pub fn cartridge(cartridge: u64) -> Result<Node, String> {
        match u8::try_from(cartridge) {
            Ok(c) if (1..=CARTRIDGES).contains(&c) => Ok(Node { cartridge: c, node: 1 }),
            _ => Err(format!(
                "cartridge {cartridge} does not exist: a Moonshot chassis has cartridges 1 to {CARTRIDGES} \
                 (c1n1 … c{CARTRIDGES}n1)"
            )),
        }
    }

    /// `5`, `c5` or `c5n1` (any case).
    pub fn parse(s: &str) -> Result<Node, String> {
        let lower = s.trim().to_ascii_lowercase();
        let bad = || format!("{s:?} is not a Moonshot node: give 5, \"c5\" or \"c5n1\" (cartridge 1 to {CARTRIDGES})");
        let number = |t: &str| -> Result<u64, String> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            t.parse::<u64>().map_err(|_| bad())
        };
        let rest = lower.strip_prefix('c').unwrap_or(&lower);
        let (cartridge, node) = match rest.split_once('n') {
            Some((c, n)) if lower.starts_with('c') => (number(c)?, number(n)?),
            Some(_) => return Err(bad()),
            None => (number(rest)?, 1),
        };
        let mut parsed = Node::cartridge(cartridge)?;
        parsed.node = match u8::try_from(node) {
            Ok(n) if (1..=NODES_PER_CARTRIDGE).contains(&n) => n,
            _ => return Err(format!("{s:?}: node {node} does not exist (a cartridge has nodes 1 to 4)")),
        };
        Ok(parsed)
    }

    pub fn cartridge_number(self) -> u8 {
        self.cartridge
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}n{}", self.cartridge, self.node)
    }
}

/// How the chassis manager's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChassisTls {
    /// Against the platform's roots (`None`) or only the certificates in this PEM file.
    Verify { ca_file: Option<PathBuf> },
    /// Not at all: the deployment's explicit choice (`verify_tls = false`).
    Insecure,
}

/// One node behind one chassis manager, and how to talk to it.
#[derive(Clone)]
pub struct MoonshotTarget {
    /// The chassis manager's host name or IP address.
    pub chassis: String,
    pub port: u16,
    pub node: Node,
    pub user: String,
    pub password: SecretString,
    pub tls: ChassisTls,
    /// Bounds one whole request: connect, TLS, the answer.
    pub timeout: Duration,
    /// The process's per-device limits, keyed by the chassis.
    pub gate: Gates,
}

impl MoonshotTarget {
    /// Port 443, the certificate verified against the platform's roots, 30 s per request.
    pub fn new(chassis: impl Into<String>, node: Node, user: impl Into<String>, password: SecretString) -> Self {
        Self {
            chassis: chassis.into(),
            port: 443,
            node,
            user: user.into(),
            password,
            tls: ChassisTls::Verify { ca_file: None },
            timeout: Duration::from_secs(30),
            gate: Gates::default(),
        }
    }

    /// `host:port`, what errors and logs name.
    pub fn chassis_name(&self) -> String {
        if self.chassis.contains(':') {
            format!("[{}]:{}", self.chassis, self.port)
        } else {
            format!("{}:{}", self.chassis, self.port)
        }
    }

    fn url(&self) -> Result<reqwest::Url, MoonshotError> {
        let chassis = self.chassis.trim();
        if chassis.is_empty() || chassis.contains(['/', '@', '?', '#', ' ']) || chassis.starts_with('-') {
            return Err(MoonshotError::InvalidTarget(format!("{chassis:?} is not a chassis host name or address")));
        }
        if self.port == 0 || self.timeout.is_zero() {
            return Err(MoonshotError::InvalidTarget("the port and the timeout must be positive".into()));
        }
        let host = if chassis.parse::<std::net::Ipv6Addr>().is_ok() { format!("[{chassis}]") } else { chassis.into() };
        let url = format!("https://{host}:{}/rest/v1/Systems/{}", self.port, self.node);
        reqwest::Url::parse(&url).map_err(|e| MoonshotError::InvalidTarget(format!("{chassis:?}: {e}")))
    }

    /// The per-device gate's key: every node of a chassis shares it.
    fn gate_key(&self) -> String {
        format!("moonshot:{}", self.chassis_name())
    }
}

impl fmt::Debug for MoonshotTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MoonshotTarget")
            .field("chassis", &self.chassis)
            .field("port", &self.port)
            .field("node", &self.node)
            .field("user", &self.user)
            .field("password", &"[redacted]")
            .field("tls", &self.tls)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A node's power as the chassis manager reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodePower {
    On,
    Off,
    /// Anything else, verbatim (bounded).
    Other(String),
}

impl fmt::Display for NodePower {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodePower::On => f.write_str("on"),
            NodePower::Off => f.write_str("off"),
            NodePower::Other(o) => f.write_str(o),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MoonshotError {
    /// The target itself is unusable; nothing was sent.
    #[error("invalid Moonshot target: {0}")]
    InvalidTarget(String),
    /// The CA file cannot be read or holds no certificate; nothing was sent.
    #[error("chassis manager CA file {path}: {detail}")]
    CaFile { path: String, detail: String },
    /// 401/403: wrong credentials or a user without the privilege.
    #[error("chassis manager {chassis} refused the credentials (HTTP {status}) for {node}: {message}")]
    Auth { chassis: String, node: Node, status: u16, message: String },
    #[error("chassis manager {chassis} did not answer within {timeout:?}")]
    Timeout { chassis: String, timeout: Duration },
    /// Refused, unreachable, DNS, or TLS (an untrusted certificate lands here).
    #[error("cannot reach chassis manager {chassis}: {detail}")]
    Connect { chassis: String, detail: String },
    /// Any other non-success answer, with the chassis's own message.
    #[error("chassis manager {chassis} answered HTTP {status} to {method} {node}: {message}")]
    Http { chassis: String, method: &'static str, node: Node, status: u16, message: String },
    /// An answer that is not the JSON resource expected.
    #[error("unexpected answer from chassis manager {chassis} for {node}: {detail}")]
    Protocol { chassis: String, node: Node, detail: String },
    #[error("cancelled")]
    Cancelled,
}

/// The node's power, `None` when the resource carries neither `Power` nor `PowerState`.
pub async fn power(t: &MoonshotTarget, cancel: &CancellationToken) -> Result<Option<NodePower>, MoonshotError> {
    let resource = request(t, Method::GET, None, false, cancel).await?;
    let field = resource.get("Power").or_else(|| resource.get("PowerState"));
    Ok(match field.and_then(Value::as_str) {
        None if field.is_some() => {
            return Err(protocol(t, format!("its power is not a string: {}", bounded(&field_text(field), 60))));
        }
        None => None,
        Some(s) if s.eq_ignore_ascii_case("on") => Some(NodePower::On),
        Some(s) if s.eq_ignore_ascii_case("off") => Some(NodePower::Off),
        Some(other) => Some(NodePower::Other(bounded(other, 40))),
    })
}

/// `ColdReset`: the chassis powers the node off and on again. `Ok` means the chassis
/// manager accepted it, not that the machine came back (the reboot chain proves that).
pub async fn cold_reset(t: &MoonshotTarget, cancel: &CancellationToken) -> Result<(), MoonshotError> {
    let body = json!({ "Action": "Reset", "ResetType": "ColdReset" });
    request(t, Method::POST, Some(&body), true, cancel).await.map(|_| ())
}

/// Boot from the network (PXE) on the node's next boot only.
pub async fn pxe_once(t: &MoonshotTarget, cancel: &CancellationToken) -> Result<(), MoonshotError> {
    let body = json!({ "Boot": { "BootSourceOverrideEnabled": "Once", "BootSourceOverrideTarget": "PXE" } });
    request(t, Method::PATCH, Some(&body), false, cancel).await.map(|_| ())
}

fn field_text(v: Option<&Value>) -> String {
    v.map(Value::to_string).unwrap_or_default()
}

fn protocol(t: &MoonshotTarget, detail: String) -> MoonshotError {
    MoonshotError::Protocol { chassis: t.chassis_name(), node: t.node, detail: scrub(t, &detail) }
}

/// One request through the chassis's gate (and its power-on turn when `power_on`);
/// the JSON body of a success (`Null` when empty).
async fn request(
    t: &MoonshotTarget,
    method: Method,
    body: Option<&Value>,
    power_on: bool,
    cancel: &CancellationToken,
) -> Result<Value, MoonshotError> {
    let url = t.url()?;
    let client = client(t)?;
    let key = t.gate_key();
    let _slot = t.gate.enter(&key, cancel).await.ok_or(MoonshotError::Cancelled)?;
    // Held until the chassis has answered (see `gate::PowerOnTurn`).
    let _turn = match power_on {
        true => Some(t.gate.power_on_turn(&key, cancel).await.ok_or(MoonshotError::Cancelled)?),
        false => None,
    };
    let verb: &'static str = match method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        _ => "request",
    };
    let mut req = client.request(method, url).basic_auth(&t.user, Some(t.password.expose_secret()));
    if let Some(b) = body {
        req = req.json(b);
    }
    let exchange = async {
        let resp = req.send().await.map_err(|e| transport(t, &e))?;
        let status = resp.status();
        let bytes = read_bounded(resp, MAX_BODY).await.map_err(|e| transport(t, &e))?;
        Ok::<_, MoonshotError>((status, bytes))
    };
    let (status, bytes) = tokio::select! {
        biased;
        _ = cancel.cancelled() => return Err(MoonshotError::Cancelled),
        r = exchange => r?,
    };
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        let message = scrub(t, &error_message(&bytes));
        return Err(MoonshotError::Auth { chassis: t.chassis_name(), node: t.node, status: status.as_u16(), message });
    }
    if !status.is_success() {
        let message = scrub(t, &error_message(&bytes));
        return Err(MoonshotError::Http {
            chassis: t.chassis_name(),
            method: verb,
            node: t.node,
            status: status.as_u16(),
            message,
        });
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| protocol(t, format!("not JSON ({e})")))
}

fn client(t: &MoonshotTarget) -> Result<reqwest::Client, MoonshotError> {
    let mut b = reqwest::Client::builder()
        .timeout(t.timeout)
        .connect_timeout(t.timeout)
        // A chassis manager has no reason to send roller (and its credentials) elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("roller/", env!("CARGO_PKG_VERSION")));
    match &t.tls {
        ChassisTls::Insecure => b = b.tls_danger_accept_invalid_certs(true),
        ChassisTls::Verify { ca_file: None } => {}
        ChassisTls::Verify { ca_file: Some(path) } => b = b.tls_certs_only(ca_certificates(path)?),
    }
    b.build().map_err(|e| MoonshotError::InvalidTarget(format!("cannot build an HTTP client: {}", error_chain(&e))))
}

/// The certificates of a PEM file, at least one.
pub fn ca_certificates(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, MoonshotError> {
    let err = |detail: String| MoonshotError::CaFile { path: path.display().to_string(), detail };
    let pem = std::fs::read(path).map_err(|e| err(format!("cannot read it: {e}")))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| err(format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err("holds no certificate (-----BEGIN CERTIFICATE-----)".into()));
    }
    Ok(certs)
}

fn transport(t: &MoonshotTarget, e: &reqwest::Error) -> MoonshotError {
    if e.is_timeout() {
        return MoonshotError::Timeout { chassis: t.chassis_name(), timeout: t.timeout };
    }
    let mut detail = error_chain(e);
    if detail.to_ascii_lowercase().contains("certificate") {
        detail.push_str(
            " (the chassis manager's certificate is not trusted: give the CA that issued it as ca_file, or set \
             verify_tls = false)",
        );
    }
    MoonshotError::Connect { chassis: t.chassis_name(), detail }
}

/// The chassis's explanation of an error: HP's `ExtendedError` (`Messages[0]`'s
/// `MessageID` and `MessageArgs`), else a Redfish-style `error.@Message.ExtendedInfo`,
/// else the start of the body; bounded.
pub(crate) fn error_message(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        let text = String::from_utf8_lossy(body);
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        return if text.is_empty() { "(no body)".into() } else { bounded(&text, MAX_MESSAGE) };
    };
    let first = v
        .get("Messages")
        .and_then(|m| m.get(0))
        .or_else(|| v.pointer("/error/@Message.ExtendedInfo/0"))
        .filter(|m| m.is_object());
    let Some(m) = first else {
        return bounded(&v.to_string(), MAX_MESSAGE);
    };
    let id = m.get("MessageID").or_else(|| m.get("MessageId")).and_then(Value::as_str);
    let args: Vec<String> = m
        .get("MessageArgs")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string)).collect())
        .unwrap_or_default();
    let text = match (id, args.is_empty(), m.get("Message").and_then(Value::as_str)) {
        (_, _, Some(message)) => format!("{message}{}", id.map(|i| format!(" [{i}]")).unwrap_or_default()),
        (Some(id), true, None) => id.to_string(),
        (Some(id), false, None) => format!("{id}: {}", args.join(", ")),
        (None, false, None) => args.join(", "),
        (None, true, None) => bounded(&v.to_string(), MAX_MESSAGE),
    };
    bounded(&text, MAX_MESSAGE)
}

fn scrub(t: &MoonshotTarget, s: &str) -> String {
    super::scrub(s, t.password.expose_secret(), usize::MAX)
}

/// An error and its sources (the drivers' one chain), bounded like every quoted message.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    super::error_chain(e, 2 * MAX_MESSAGE)
}

#[cfg(test)]
mod tests {
    use roller_testkit::moonshot::{FakeChassis, PASSWORD, PowerField, USER};

    use super::*;

    fn target(chassis: &FakeChassis, cartridge: u64, password: &str) -> MoonshotTarget {
        let mut t = MoonshotTarget::new("127.0.0.1", Node::cartridge(cartridge).unwrap(), USER, password.into());
        t.port = chassis.port;
        t.tls = ChassisTls::Verify { ca_file: Some(chassis.ca_file.clone()) };
        t
    }

    #[test]
    fn nodes_are_normalised_like_relops_and_checked() {
        for (given, node) in [("5", "c5n1"), ("c5", "c5n1"), ("C5N1", "c5n1"), ("c45n1", "c45n1"), (" c7n4 ", "c7n4")] {
            assert_eq!(Node::parse(given).map(|n| n.to_string()), Ok(node.to_string()), "{given}");
        }
        assert_eq!(Node::cartridge(1).unwrap().to_string(), "c1n1");
        for (bad, why) in [
            ("46", "1 to 45"),
            ("c0", "1 to 45"),
            ("c46n1", "1 to 45"),
            ("c5n5", "node 5"),
            ("n5", "not a Moonshot node"),
            ("c5x", "not a Moonshot node"),
            ("", "not a Moonshot node"),
            ("c-1", "not a Moonshot node"),
            ("99999999999999999999", "not a Moonshot node"),
        ] {
            let e = Node::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!(Node::cartridge(46).unwrap_err().contains("cartridges 1 to 45"));
    }

    #[test]
    fn the_chassis_own_words_are_quoted_from_its_extended_error() {
        let hp = br#"{"Messages":[{"MessageArgs":["WarmBoot","ResetType"],"MessageID":"Base.0.10.PropertyValueNotInList"}],"Type":"ExtendedError.1.0.0"}"#;
        assert_eq!(error_message(hp), "Base.0.10.PropertyValueNotInList: WarmBoot, ResetType");
        let no_args = br#"{"Messages":[{"MessageID":"Base.0.10.AccessDenied"}]}"#;
        assert_eq!(error_message(no_args), "Base.0.10.AccessDenied");
        let redfish = br#"{"error":{"@Message.ExtendedInfo":[{"MessageId":"Base.1.0.Busy","Message":"busy"}]}}"#;
        assert_eq!(error_message(redfish), "busy [Base.1.0.Busy]");
        assert_eq!(error_message(b"<html> gateway\n  timeout </html>"), "<html> gateway timeout </html>");
        assert_eq!(error_message(b""), "(no body)");
        assert!(error_message(&[b'x'; 2000]).chars().count() <= MAX_MESSAGE + 1);
    }

    #[tokio::test]
    async fn power_is_read_from_power_or_power_state_or_is_not_offered() {
        for (field, want) in [
            (PowerField::Power, Some(NodePower::On)),
            (PowerField::PowerState, Some(NodePower::On)),
            (PowerField::Absent, None),
        ] {
            let chassis = FakeChassis::builder().cartridges(3).power_field(field).start().await;
            let got = power(&target(&chassis, 3, PASSWORD), &CancellationToken::new()).await.unwrap();
            assert_eq!(got, want, "{field:?}");
            assert_eq!(chassis.calls(), ["GET c3n1"]);
        }
    }

    #[tokio::test]
    async fn a_cold_reset_and_a_pxe_boot_are_sent_as_relops_sends_them() {
        let chassis = FakeChassis::builder().cartridges(5).outage(Duration::from_secs(30)).start().await;
        let t = target(&chassis, 5, PASSWORD);
        let cancel = CancellationToken::new();
        pxe_once(&t, &cancel).await.unwrap();
        cold_reset(&t, &cancel).await.unwrap();
        assert_eq!(power(&t, &cancel).await.unwrap(), Some(NodePower::Off), "off for the chassis's outage");
        let r = chassis.requests();
        assert_eq!(chassis.calls(), ["PATCH c5n1", "POST c5n1", "GET c5n1"]);
        assert_eq!(
            r[0].body,
            Some(json!({"Boot": {"BootSourceOverrideEnabled": "Once", "BootSourceOverrideTarget": "PXE"}}))
        );
        assert_eq!(r[1].body, Some(json!({"Action": "Reset", "ResetType": "ColdReset"})));
        assert!(r.iter().all(|r| r.status == 200), "{r:?}");
    }

    #[tokio::test]
    async fn refusals_name_the_chassis_and_quote_it_without_the_password() {
        let chassis = FakeChassis::builder().cartridges(2).start().await;
        let cancel = CancellationToken::new();
        let e = cold_reset(&target(&chassis, 2, "wrong-moonshot-pw"), &cancel).await.unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, MoonshotError::Auth { status: 401, .. }), "{e:?}");
        assert!(text.contains("127.0.0.1:") && text.contains("c2n1") && text.contains("AccessDenied"), "{text}");
        assert!(!text.contains("wrong-moonshot-pw") && !format!("{e:?}").contains("wrong-moonshot-pw"));
        // A node the chassis does not have: its 404 and its words.
        let e = power(&target(&chassis, 9, PASSWORD), &cancel).await.unwrap_err();
        assert!(matches!(e, MoonshotError::Http { status: 404, .. }), "{e:?}");
        assert!(e.to_string().contains("ResourceMissingAtURI: /rest/v1/Systems/c9n1"), "{e}");
        chassis.refuse_resets(Some((503, "iLO.0.10.ChassisBusy", &["c2n1", "firmware update"])));
        let e = cold_reset(&target(&chassis, 2, PASSWORD), &cancel).await.unwrap_err();
        assert!(e.to_string().ends_with("HTTP 503 to POST c2n1: iLO.0.10.ChassisBusy: c2n1, firmware update"), "{e}");
    }

    #[tokio::test]
    async fn the_certificate_is_verified_unless_the_inventory_says_otherwise() {
        let chassis = FakeChassis::builder().cartridges(1).start().await;
        let cancel = CancellationToken::new();
        let mut t = target(&chassis, 1, PASSWORD);
        t.tls = ChassisTls::Verify { ca_file: None };
        let e = power(&t, &cancel).await.unwrap_err();
        assert!(matches!(e, MoonshotError::Connect { .. }), "{e:?}");
        assert!(e.to_string().contains("ca_file") && e.to_string().contains("127.0.0.1:"), "{e}");
        assert!(chassis.requests().is_empty(), "nothing, credentials least of all, went to an untrusted peer");
        t.tls = ChassisTls::Insecure;
        assert_eq!(power(&t, &cancel).await.unwrap(), Some(NodePower::On));
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "not a certificate\n").unwrap();
        t.tls = ChassisTls::Verify { ca_file: Some(not_pem) };
        let e = power(&t, &cancel).await.unwrap_err();
        assert!(matches!(e, MoonshotError::CaFile { .. }), "{e}");
        assert!(chassis.requests().len() == 1, "only the insecure read went out");
    }
}
