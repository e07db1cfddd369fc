//! Power control of one computer system through a Redfish BMC, hand-rolled on reqwest.
//!
//! # Calls
//!
//! Every operation is a short conversation with the BMC:
//!
//! 1. `GET /redfish/v1/` (unauthenticated by design in Redfish) to learn whether the
//!    service offers a SessionService and where the Systems collection lives;
//! 2. log in: a session (`POST …/SessionService/Sessions` → `X-Auth-Token` +
//!    `Location`) when offered, else HTTP basic auth on every request;
//! 3. find the system: [`RedfishTarget::system`] (an id or an `@odata.id`), or the
//!    first member of the Systems collection;
//! 4. the operation itself: read `PowerState`, `POST` the `ComputerSystem.Reset`
//!    action, or `PATCH` the boot override;
//! 5. `DELETE` the session, also when the operation failed or was cancelled: BMCs
//!    have small session tables, and a leaked session can lock the next caller out.
//!
//! # Choosing a ResetType
//!
//! BMCs differ in which `ResetType`s they accept, and a value outside
//! `ResetType@Redfish.AllowableValues` is refused (400/501). So [`reset`] takes an
//! intent, reads the allowed values (inline, or from the action's
//! `@Redfish.ActionInfo`), and sends the first value of the intent's preference
//! list ([`ResetIntent::preferences`]) the BMC allows; [`choose_reset_type`] is that
//! choice, pure. A BMC that lists nothing gets the intent's first choice.
//!
//! # Secrets
//!
//! The password only ever leaves this module in a basic-auth header or the session
//! login body. Errors carry hosts, paths, statuses and the BMC's own message (bounded,
//! and scrubbed of the password in case a BMC echoes a request), never a header.
//! The base URL may not carry userinfo, so no URL in an error can leak credentials.

use std::fmt;
use std::time::Duration;

use reqwest::{Method, Url};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

mod logs;
mod session;

pub use self::logs::{LogEntry, log_entries};
use self::session::{Session, with_session};
use super::bounded;

/// How many times `On` is sent when the BMC answers 409 (Ironic does the same: some
/// BMCs refuse `On` with `ActionParameterValueConflict` while still powering off).
const ON_CONFLICT_ATTEMPTS: u32 = 5;
/// Pause between those attempts.
const ON_CONFLICT_PAUSE: Duration = Duration::from_secs(2);

/// One BMC and the system on it to control.
#[derive(Clone)]
pub struct RedfishTarget {
    /// `https://bmc.example` (or `http://` for tests): scheme, host and optional port only.
    pub base_url: String,
    pub user: String,
    pub password: SecretString,
    /// Verify the BMC's certificate. Most BMCs ship self-signed ones, but turning this
    /// off is the deployment's explicit decision, never a default.
    pub verify_tls: bool,
    /// A system id (`1`, `System.Embedded.1`) or its `@odata.id`
    /// (`/redfish/v1/Systems/1`); `None` takes the first member of the Systems collection.
    pub system: Option<String>,
    /// Per-request timeout (connect included).
    pub timeout: Duration,
}

impl RedfishTarget {
    /// A target with certificate verification on, the first system, and a 30 s timeout.
    pub fn new(base_url: impl Into<String>, user: impl Into<String>, password: SecretString) -> Self {
        Self {
            base_url: base_url.into(),
            user: user.into(),
            password,
            verify_tls: true,
            system: None,
            timeout: Duration::from_secs(30),
        }
    }

    /// The base URL, checked: http(s), a host, no userinfo, no path beyond `/`, no query.
    pub fn url(&self) -> Result<Url, RedfishError> {
        let bad = |why: &str| RedfishError::InvalidTarget(why.to_string());
        // Never echo the raw string: a mistyped URL may hold a password.
        let url = Url::parse(self.base_url.trim()).map_err(|e| bad(&format!("base_url is not a URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("base_url must be http:// or https://"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("base_url must not carry credentials; use user and password"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("base_url has no host"));
        }
        // Redfish resources are addressed by absolute paths (`@odata.id`), so a path
        // prefix could not be honoured anyway.
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(bad("base_url must be scheme://host[:port] without a path or query"));
        }
        if self.timeout.is_zero() {
            return Err(bad("timeout must be positive"));
        }
        Ok(url)
    }
}

impl fmt::Debug for RedfishTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedfishTarget")
            .field("base_url", &self.base_url)
            .field("user", &self.user)
            .field("password", &"[redacted]")
            .field("verify_tls", &self.verify_tls)
            .field("system", &self.system)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// `PowerState` of a ComputerSystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PowerState {
    On,
    Off,
    PoweringOn,
    PoweringOff,
    /// Anything else the BMC says (`Paused`, vendor values), verbatim.
    Other(String),
}

impl PowerState {
    fn parse(s: &str) -> Self {
        match s {
            "On" => PowerState::On,
            "Off" => PowerState::Off,
            "PoweringOn" => PowerState::PoweringOn,
            "PoweringOff" => PowerState::PoweringOff,
            other => PowerState::Other(other.to_string()),
        }
    }
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PowerState::On => "On",
            PowerState::Off => "Off",
            PowerState::PoweringOn => "PoweringOn",
            PowerState::PoweringOff => "PoweringOff",
            PowerState::Other(s) => s,
        })
    }
}

/// What the caller wants to happen; [`reset`] maps it to a `ResetType` the BMC allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetIntent {
    GracefulRestart,
    ForceRestart,
    PowerCycle,
    On,
    ForceOff,
    GracefulShutdown,
}

impl ResetIntent {
    /// `ResetType`s that achieve the intent, best first.
    ///
    /// * Restarts fall back among each other: any restart is better than none, and
    ///   the caller verifies the outcome anyway.
    /// * `On` may use `PushPowerButton`, but [`reset`] only presses it when the system
    ///   reads `Off`: on a running system it would start a shutdown.
    /// * `ForceOff` and `GracefulShutdown` have no fallback: a graceful shutdown the OS
    ///   can ignore is not a forced off, a forced off is not graceful, and a button
    ///   press toggles. Refusing ([`RedfishError::Unsupported`]) lets an escalation
    ///   chain move on (to a PDU, say).
    pub fn preferences(self) -> &'static [&'static str] {
        match self {
            ResetIntent::GracefulRestart => &["GracefulRestart", "ForceRestart", "PowerCycle"],
            ResetIntent::ForceRestart => &["ForceRestart", "PowerCycle", "GracefulRestart"],
            ResetIntent::PowerCycle => &["PowerCycle", "ForceRestart", "GracefulRestart"],
            ResetIntent::On => &["On", "ForceOn", "PushPowerButton"],
            ResetIntent::ForceOff => &["ForceOff"],
            ResetIntent::GracefulShutdown => &["GracefulShutdown"],
        }
    }
}

impl fmt::Display for ResetIntent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The `ResetType` to send for `intent`, given the BMC's `AllowableValues` (`None`
/// when it lists none, in which case the intent's first choice goes out).
pub fn choose_reset_type(intent: ResetIntent, allowed: Option<&[String]>) -> Result<&'static str, RedfishError> {
    let prefs = intent.preferences();
    match allowed {
        None => Ok(prefs[0]),
        Some(allowed) => prefs.iter().copied().find(|p| allowed.iter().any(|a| a == p)).ok_or_else(|| {
            RedfishError::Unsupported { intent, allowed: allowed.iter().map(|a| bounded(a, 64)).collect() }
        }),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedfishError {
    /// The target itself is unusable; nothing was sent.
    #[error("invalid Redfish target: {0}")]
    InvalidTarget(String),
    /// 401/403: wrong credentials or a user without the privilege. Not worth retrying.
    #[error("BMC {host} refused the credentials or the privilege (HTTP {status}) for {path}")]
    Auth { host: String, status: u16, path: String },
    #[error("BMC {host} did not answer within {timeout:?}")]
    Timeout { host: String, timeout: Duration },
    /// Refused, unreachable, DNS, or TLS (an untrusted certificate lands here).
    #[error("cannot reach BMC {host}: {detail}")]
    Connect { host: String, detail: String },
    /// Any other non-success answer; `message` is the BMC's own, bounded.
    #[error("BMC {host} answered HTTP {status} to {method} {path}: {message}")]
    Http { host: String, method: String, path: String, status: u16, message: String },
    #[error("BMC {host} has no such computer system: {detail}")]
    NoSystem { host: String, detail: String },
    /// No `ResetType` the BMC allows fits the intent (or it has no Reset action).
    #[error("the BMC allows no ResetType for {intent} (allowed: {allowed:?})")]
    Unsupported { intent: ResetIntent, allowed: Vec<String> },
    /// An answer that is not the Redfish we expect.
    #[error("unexpected answer from BMC {host}: {detail}")]
    Protocol { host: String, detail: String },
    #[error("cancelled")]
    Cancelled,
}

/// Read the system's `PowerState`.
pub async fn power_state(target: &RedfishTarget, cancel: &CancellationToken) -> Result<PowerState, RedfishError> {
    with_session(target, cancel, async |s: &Session<'_>| {
        let (_, system) = s.system().await?;
        s.power_state_of(&system)
    })
    .await
}

/// Send the `ResetType` that best fits `intent`; returns the `ResetType` sent.
///
/// Success means the BMC accepted the request, not that the power changed: BMCs apply
/// actions asynchronously, so callers confirm with [`power_state`].
pub async fn reset(
    target: &RedfishTarget,
    intent: ResetIntent,
    cancel: &CancellationToken,
) -> Result<String, RedfishError> {
    with_session(target, cancel, async |s: &Session<'_>| {
        let (system_path, system) = s.system().await?;
        let action = system.pointer("/Actions/#ComputerSystem.Reset").filter(|a| a.is_object()).ok_or_else(|| {
            RedfishError::Unsupported {
                intent,
                allowed: vec!["(the system has no ComputerSystem.Reset action)".into()],
            }
        })?;
        let action_path = match action.get("target").and_then(Value::as_str) {
            Some(t) => t.to_string(),
            None => return Err(s.protocol(format!("{system_path}: the Reset action has no target"))),
        };
        let allowed = s.allowable_reset_types(action).await?;
        let chosen = choose_reset_type(intent, allowed.as_deref())?;
        if chosen == "PushPowerButton" {
            let state = s.power_state_of(&system)?;
            if state != PowerState::Off {
                // A button press on a running system is a shutdown request, the opposite of `On`.
                return Err(RedfishError::Unsupported {
                    intent,
                    allowed: allowed.unwrap_or_default().into_iter().chain([format!("(system is {state})")]).collect(),
                });
            }
        }
        let body = json!({ "ResetType": chosen });
        let mut attempt = 1;
        loop {
            match s.send_json(Method::POST, &action_path, Some(&body)).await {
                Ok(_) => return Ok(chosen.to_string()),
                Err(RedfishError::Http { status: 409, .. })
                    if intent == ResetIntent::On && attempt < ON_CONFLICT_ATTEMPTS =>
                {
                    tracing::info!(host = %s.host, attempt, "BMC answered 409 to On; retrying");
                    attempt += 1;
                    tokio::time::sleep(ON_CONFLICT_PAUSE).await;
                }
                Err(e) => return Err(e),
            }
        }
    })
    .await
}

/// Boot from the network on the next boot only (for reimaging): PATCH the system's
/// `Boot` override to `Pxe`, `Once`. When the BMC lists
/// `BootSourceOverrideTarget@Redfish.AllowableValues` without `Pxe`, nothing is sent
/// ([`RedfishError::Protocol`]); a BMC that refuses the PATCH gives [`RedfishError::Http`].
pub async fn boot_pxe_once(target: &RedfishTarget, cancel: &CancellationToken) -> Result<(), RedfishError> {
    with_session(target, cancel, async |s: &Session<'_>| {
        let (system_path, system) = s.system().await?;
        if let Some(allowed) = system.pointer("/Boot/BootSourceOverrideTarget@Redfish.AllowableValues")
            && let Some(list) = allowed.as_array()
            && !list.iter().any(|v| v == "Pxe")
        {
            return Err(s.protocol(format!("{system_path}: Pxe is not an allowed BootSourceOverrideTarget")));
        }
        let body = json!({ "Boot": { "BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once" } });
        s.send_json(Method::PATCH, &system_path, Some(&body)).await?;
        Ok(())
    })
    .await
}
