//! XenAPI over XML-RPC: reboot one VM the way the original did, made safe.
//!
//! `session.login_with_password`, `VM.get_by_uuid`, `VM.get_power_state` (a halted
//! VM is only started), `VM.clean_shutdown` (falling back to `VM.hard_shutdown`
//! when XenAPI refuses it, or when it went unanswered and the VM still runs), a pause,
//! `VM.start(vm, false, false)`, and `session.logout` always, also after an
//! error or a cancel: pool masters limit sessions per user.
//!
//! XML-RPC framing is `dxr` (values) and `dxr_client::utils` (bodies) over our
//! own reqwest client, which owns the timeout and TLS settings. XenAPI wraps
//! every answer as `{Status: "Success", Value}` or `{Status: "Failure",
//! ErrorDescription: [code, …]}`; failures keep XenAPI's code and parameters.
//!
//! The password travels only in the login call's body. No error includes a
//! request body, and text from the server is scrubbed of the password in case
//! a server echoes it.

use std::collections::HashMap;
use std::time::Duration;

use dxr::{MethodCall, Value};
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

/// A Xen pool master and the account roller uses on it.
#[derive(Clone)]
pub struct XenTarget {
    /// `https://xen-pool-master.example` (the XML-RPC endpoint is its root).
    pub url: String,
    pub user: String,
    pub password: SecretString,
    pub verify_tls: bool,
    /// Per XML-RPC call.
    pub timeout: Duration,
}

impl std::fmt::Debug for XenTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XenTarget")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &"[redacted]")
            .field("verify_tls", &self.verify_tls)
            .finish()
    }
}

/// What the reboot did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XenReboot {
    /// `clean`, `hard`, or `none (it was halted)`.
    pub shutdown: &'static str,
    /// Why the clean shutdown was not used, when it was not.
    pub clean_failure: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum XenError {
    #[error("invalid XenAPI URL {0:?}: an http(s) URL without credentials")]
    InvalidUrl(String),
    #[error("XenAPI {method}: {detail}")]
    Transport { method: String, detail: String },
    /// XenAPI's own failure: its code (`SESSION_AUTHENTICATION_FAILED`, `UUID_INVALID` …) and parameters.
    #[error("XenAPI {method} failed: {}", description.join(" "))]
    Failure { method: String, description: Vec<String> },
    #[error("XenAPI {method}: unexpected answer: {detail}")]
    Protocol { method: String, detail: String },
    /// The caller's hook refused to go on: the VM was not touched.
    #[error("not started: {0}")]
    NotStarted(String),
    #[error("cancelled")]
    Cancelled,
}

/// Reboot the VM with `vm_uuid`: shut it down (clean, else hard), wait `delay`, start it.
pub async fn reboot_vm(
    t: &XenTarget,
    vm_uuid: &str,
    delay: Duration,
    cancel: &CancellationToken,
) -> Result<XenReboot, XenError> {
    reboot_vm_after(t, vm_uuid, delay, cancel, async || Ok(())).await
}

/// [`reboot_vm`], calling `before_shutdown` right before the VM is shut down (after the
/// login and the power-state read, which change nothing): the caller's chance to record
/// how to undo it. Its error stops everything, the VM untouched ([`XenError::NotStarted`]).
pub async fn reboot_vm_after(
    t: &XenTarget,
    vm_uuid: &str,
    delay: Duration,
    cancel: &CancellationToken,
    before_shutdown: impl AsyncFnOnce() -> Result<(), String>,
) -> Result<XenReboot, XenError> {
    in_session(t, cancel, async |client: &Client, session: &str| {
        let session = session.to_string();
        let vm = client.call("VM.get_by_uuid", vec![s(&session), s(vm_uuid)], cancel).await?;
        let vm = as_string("VM.get_by_uuid", &vm)?;
        let power = client.call("VM.get_power_state", vec![s(&session), s(&vm)], cancel).await?;
        let mut done = XenReboot { shutdown: "clean", clean_failure: None };
        if as_string("VM.get_power_state", &power)? == "Halted" {
            // Already down: starting it is the whole reboot.
            done.shutdown = "none (it was halted)";
        } else {
            before_shutdown().await.map_err(XenError::NotStarted)?;
            match client.call("VM.clean_shutdown", vec![s(&session), s(&vm)], cancel).await {
                Ok(_) => {}
                Err(XenError::Cancelled) => return Err(XenError::Cancelled),
                // XenAPI said no (no PV tools, a guest that ignores ACPI): force it.
                Err(e @ XenError::Failure { .. }) => {
                    tracing::info!(%vm_uuid, error = %e, "clean shutdown refused; hard shutdown");
                    client.call("VM.hard_shutdown", vec![s(&session), s(&vm)], cancel).await?;
                    done = XenReboot { shutdown: "hard", clean_failure: Some(e.to_string()) };
                }
                // No answer is not a refusal: the clean shutdown may still be under way
                // (it returns only once the guest halted). Look before forcing anything.
                Err(e) => {
                    let now = client.call("VM.get_power_state", vec![s(&session), s(&vm)], cancel).await?;
                    if as_string("VM.get_power_state", &now)? != "Halted" {
                        tracing::info!(%vm_uuid, error = %e, "clean shutdown unanswered and the VM still runs; hard shutdown");
                        client.call("VM.hard_shutdown", vec![s(&session), s(&vm)], cancel).await?;
                        done = XenReboot { shutdown: "hard", clean_failure: Some(e.to_string()) };
                    }
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return Err(XenError::Cancelled),
            _ = tokio::time::sleep(delay) => {}
        }
        client
            .call("VM.start", vec![s(&session), s(&vm), Value::Boolean(false), Value::Boolean(false)], cancel)
            .await?;
        Ok(done)
    })
    .await
}

/// The power state XenAPI reports for the VM with `vm_uuid` (`Running`, `Halted` …):
/// log in, `VM.get_by_uuid`, `VM.get_power_state`, log out. Changes nothing; the
/// standing path checks use it to prove the pool master, the account and the VM.
pub async fn vm_power_state(t: &XenTarget, vm_uuid: &str, cancel: &CancellationToken) -> Result<String, XenError> {
    in_session(t, cancel, async |client: &Client, session: &str| {
        let vm = client.call("VM.get_by_uuid", vec![s(session), s(vm_uuid)], cancel).await?;
        let vm = as_string("VM.get_by_uuid", &vm)?;
        let power = client.call("VM.get_power_state", vec![s(session), s(&vm)], cancel).await?;
        as_string("VM.get_power_state", &power)
    })
    .await
}

/// Start the VM with `vm_uuid` unless it is running already: the repair for a reboot
/// interrupted between its shutdown and its start. `Ok(true)` when it was started.
pub async fn ensure_vm_running(t: &XenTarget, vm_uuid: &str, cancel: &CancellationToken) -> Result<bool, XenError> {
    in_session(t, cancel, async |client: &Client, session: &str| {
        let vm = client.call("VM.get_by_uuid", vec![s(session), s(vm_uuid)], cancel).await?;
        let vm = as_string("VM.get_by_uuid", &vm)?;
        let power = client.call("VM.get_power_state", vec![s(session), s(&vm)], cancel).await?;
        if as_string("VM.get_power_state", &power)? != "Halted" {
            return Ok(false);
        }
        client.call("VM.start", vec![s(session), s(&vm), Value::Boolean(false), Value::Boolean(false)], cancel).await?;
        Ok(true)
    })
    .await
}

/// Log in, run `op` with the session, and log out on every path.
async fn in_session<T>(
    t: &XenTarget,
    cancel: &CancellationToken,
    op: impl AsyncFnOnce(&Client, &str) -> Result<T, XenError>,
) -> Result<T, XenError> {
    let client = Client::new(t)?;
    let session = client.call("session.login_with_password", login_params(t), cancel).await?;
    let session = as_string("session.login_with_password", &session)?;
    // Should this future be dropped mid-way (a hard time limit, a shutdown), the guard
    // still logs out, in a task of its own.
    let mut guard = LogoutOnDrop { client: client.clone(), session: Some(session.clone()) };
    let result = op(&client, &session).await;
    guard.session = None;
    logout(&client, &session).await;
    result
}

/// Always, and not cancellable: a leaked session costs the next caller (XenAPI keeps
/// few). Bounded by the client's timeout.
async fn logout(client: &Client, session: &str) {
    if let Err(e) = client.call("session.logout", vec![s(session)], &CancellationToken::new()).await {
        tracing::warn!(error = %e, "XenAPI logout failed");
    }
}

/// Logs out a session whose operation was dropped before it could.
struct LogoutOnDrop {
    client: Client,
    session: Option<String>,
}

impl Drop for LogoutOnDrop {
    fn drop(&mut self) {
        if let Some(session) = self.session.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let client = self.client.clone();
            runtime.spawn(async move { logout(&client, &session).await });
        }
    }
}

fn login_params(t: &XenTarget) -> Vec<Value> {
    vec![s(&t.user), s(t.password.expose_secret()), s("2.0"), s(concat!("roller/", env!("CARGO_PKG_VERSION")))]
}

fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

fn as_string(method: &str, v: &Value) -> Result<String, XenError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(XenError::Protocol { method: method.into(), detail: format!("expected a string, got {other:?}") }),
    }
}

/// One HTTP client per TLS setting and timeout, shared by every reboot in the
/// process: building one sets up TLS afresh and it holds its own connection pool,
/// which for thousands of reboots at once was most of their memory and CPU (the
/// bench's 10,000 concurrent reboots). Connections to a pool master are reused
/// across reboots; idle ones are dropped well before servers usually close them.
fn shared_http(t: &XenTarget) -> reqwest::Result<reqwest::Client> {
    static CLIENTS: std::sync::LazyLock<std::sync::Mutex<HashMap<(bool, Duration), reqwest::Client>>> =
        std::sync::LazyLock::new(Default::default);
    let key = (t.verify_tls, t.timeout);
    let mut clients = CLIENTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = clients.get(&key) {
        return Ok(c.clone());
    }
    let client = reqwest::Client::builder()
        .timeout(t.timeout)
        .connect_timeout(t.timeout)
        .danger_accept_invalid_certs(!t.verify_tls)
        .pool_idle_timeout(Duration::from_secs(4))
        .build()?;
    clients.insert(key, client.clone());
    Ok(client)
}

#[derive(Clone)]
struct Client {
    t: XenTarget,
    http: reqwest::Client,
    url: reqwest::Url,
}

impl Client {
    fn new(t: &XenTarget) -> Result<Self, XenError> {
        let invalid = || XenError::InvalidUrl(super::url_for_message(&t.url));
        let url = reqwest::Url::parse(&t.url).map_err(|_| invalid())?;
        if !matches!(url.scheme(), "http" | "https") || !url.username().is_empty() || url.password().is_some() {
            return Err(invalid());
        }
        let http = shared_http(t).map_err(|_| invalid())?;
        Ok(Client { t: t.clone(), http, url })
    }

    /// One call; `Value` of a `Success`.
    async fn call(&self, method: &str, params: Vec<Value>, cancel: &CancellationToken) -> Result<Value, XenError> {
        let transport = |detail: String| XenError::Transport { method: method.into(), detail: self.scrub(&detail) };
        let call = MethodCall { name: method.into(), params };
        let body = dxr_client::utils::request_to_body(&call).map_err(|e| transport(e.to_string()))?;
        let send = async {
            let resp = self
                .http
                .post(self.url.clone())
                .header("Content-Type", "text/xml")
                .body(body)
                .send()
                .await
                .map_err(|e| transport(e.without_url().to_string()))?;
            let status = resp.status();
            // XenAPI answers are small; a VM record is a few KiB.
            let bytes =
                super::read_bounded(resp, 1024 * 1024).await.map_err(|e| transport(e.without_url().to_string()))?;
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if !status.is_success() {
                return Err(transport(format!("HTTP {}", status.as_u16())));
            }
            Ok(text)
        };
        let text = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(XenError::Cancelled),
            r = send => r?,
        };
        let protocol = |detail: String| XenError::Protocol { method: method.into(), detail: self.scrub(&detail) };
        let response = match dxr_client::utils::response_to_result(&text) {
            Ok(Ok(r)) => r,
            Ok(Err(fault)) => return Err(protocol(format!("XML-RPC fault {fault:?}"))),
            Err(_) => return Err(protocol("not an XML-RPC response".into())),
        };
        let Value::Struct(fields) = response.value else {
            return Err(protocol("the answer is not a {Status, Value} struct".into()));
        };
        match fields.get("Status") {
            Some(Value::String(st)) if st == "Success" => {
                fields.get("Value").cloned().ok_or_else(|| protocol("Success without a Value".into()))
            }
            Some(Value::String(st)) if st == "Failure" => {
                let description = match fields.get("ErrorDescription") {
                    Some(Value::Array(items)) => items
                        .iter()
                        .map(|v| match v {
                            Value::String(s) => self.scrub(s),
                            other => self.scrub(&format!("{other:?}")),
                        })
                        .collect(),
                    _ => vec!["(no ErrorDescription)".into()],
                };
                Err(XenError::Failure { method: method.into(), description })
            }
            _ => Err(protocol("no Status".into())),
        }
    }

    fn scrub(&self, text: &str) -> String {
        super::scrub(text, self.t.password.expose_secret(), 300)
    }
}
