//! A Redfish conversation: the session (or basic auth) around one operation, the
//! calls it makes, and the bounded, scrubbed reading of what the BMC answers.
//! Separate from the operations (`redfish.rs`) so those read as what they ask the
//! BMC, not how a request travels.

use std::future::Future;
use std::time::Duration;

use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode, Url};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::super::bounded;
use super::{PowerState, RedfishError, RedfishTarget};

/// A Redfish resource is a few KiB; anything this large is not one.
const MAX_BODY: usize = 1024 * 1024;
/// Error messages quoted from a BMC are cut here, so a chatty BMC cannot flood a job record.
const MAX_MESSAGE: usize = 300;
/// Redirects followed (same origin only).
const MAX_REDIRECTS: usize = 5;
/// The session DELETE is courtesy: it must not hold up a result for long.
const LOGOUT_TIMEOUT: Duration = Duration::from_secs(5);

/// Open a session (or settle for basic auth), run `op`, and always log out, also
/// when `op` fails or `cancel` fires. A future dropped mid-way still logs out, in a task.
pub(super) async fn with_session<T>(
    target: &RedfishTarget,
    cancel: &CancellationToken,
    op: impl AsyncFnOnce(&Session<'_>) -> Result<T, RedfishError>,
) -> Result<T, RedfishError> {
    let base = target.url()?;
    let host = match base.port() {
        Some(p) => format!("{}:{p}", base.host_str().unwrap_or_default()),
        None => base.host_str().unwrap_or_default().to_string(),
    };
    let client = build_client(target, &base)?;
    let mut session = Session { target, client, base, host, auth: Auth::Anonymous, root: Value::Null };
    cancellable(cancel, session.login()).await?;
    let guard = LogoutGuard::arm(&session);
    let result = cancellable(cancel, op(&session)).await;
    guard.logout().await;
    result
}

async fn cancellable<T>(
    cancel: &CancellationToken,
    fut: impl Future<Output = Result<T, RedfishError>>,
) -> Result<T, RedfishError> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(RedfishError::Cancelled),
        r = fut => r,
    }
}

fn build_client(target: &RedfishTarget, base: &Url) -> Result<reqwest::Client, RedfishError> {
    let origin = base.origin();
    // Redirects are followed only within the BMC: a 307 from a system's name to its id
    // is normal (sushy-tools does it), but credentials must never travel elsewhere.
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else if attempt.url().origin() != origin {
            attempt.stop()
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .timeout(target.timeout)
        .connect_timeout(target.timeout)
        .tls_danger_accept_invalid_certs(!target.verify_tls)
        .redirect(policy)
        .user_agent(concat!("roller/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| RedfishError::InvalidTarget(format!("cannot build an HTTP client: {}", error_chain(&e))))
}

/// Deletes the session when dropped unless [`LogoutGuard::logout`] already did.
struct LogoutGuard {
    session: Option<(reqwest::Client, Url, HeaderValue)>,
}

impl LogoutGuard {
    fn arm(s: &Session<'_>) -> Self {
        let session = match &s.auth {
            Auth::Anonymous | Auth::Basic => None,
            Auth::Session { token, location } => Some((s.client.clone(), location.clone(), token.clone())),
        };
        Self { session }
    }

    async fn logout(mut self) {
        if let Some((client, url, token)) = self.session.take() {
            delete_session(client, url, token).await;
        }
    }
}

impl Drop for LogoutGuard {
    fn drop(&mut self) {
        if let Some((client, url, token)) = self.session.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(delete_session(client, url, token));
        }
    }
}

async fn delete_session(client: reqwest::Client, url: Url, token: HeaderValue) {
    let req = client.delete(url.clone()).header("X-Auth-Token", token).timeout(LOGOUT_TIMEOUT);
    match req.send().await {
        Ok(r) if r.status().is_success() || r.status() == StatusCode::NOT_FOUND => {
            tracing::debug!(path = url.path(), "Redfish session deleted");
        }
        // The BMC expires it eventually; say so, since full session tables lock BMCs.
        Ok(r) => tracing::warn!(path = url.path(), status = r.status().as_u16(), "could not delete Redfish session"),
        Err(e) => tracing::warn!(path = url.path(), error = %error_chain(&e), "could not delete Redfish session"),
    }
}

/// How requests authenticate.
enum Auth {
    /// Only for the service root, which Redfish serves without credentials.
    Anonymous,
    Basic,
    Session {
        token: HeaderValue,
        location: Url,
    },
}

/// One conversation with one BMC: client, origin, credentials, service root.
pub(super) struct Session<'a> {
    target: &'a RedfishTarget,
    client: reqwest::Client,
    base: Url,
    /// `host[:port]`, what errors and logs name.
    pub(super) host: String,
    auth: Auth,
    root: Value,
}

impl Session<'_> {
    /// Read the service root, then open a session if the service offers one.
    async fn login(&mut self) -> Result<(), RedfishError> {
        // The root is unauthenticated per the spec, so credentials go out only if a
        // BMC insists on them there.
        let root = match self.send_json(Method::GET, "/redfish/v1/", None).await {
            Err(RedfishError::Auth { .. }) => {
                self.auth = Auth::Basic;
                self.send_json(Method::GET, "/redfish/v1/", None).await
            }
            r => r,
        };
        self.auth = Auth::Basic;
        self.root = match root {
            Ok(v) => v,
            Err(RedfishError::Http { status: 404, .. }) => {
                return Err(self.protocol("no Redfish service root at /redfish/v1/".into()));
            }
            Err(e) => return Err(e),
        };
        let offered = self.root.get("SessionService").is_some() || self.root.pointer("/Links/Sessions").is_some();
        if !offered {
            return Ok(());
        }
        let path = self
            .root
            .pointer("/Links/Sessions/@odata.id")
            .and_then(Value::as_str)
            .unwrap_or("/redfish/v1/SessionService/Sessions")
            .to_string();
        let url = self.resolve(&path)?;
        let body = json!({ "UserName": self.target.user, "Password": self.target.password.expose_secret() });
        let resp = self.client.post(url.clone()).json(&body).send().await.map_err(|e| self.transport(e))?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RedfishError::Auth {
                host: self.host.clone(),
                status: status.as_u16(),
                path: url.path().into(),
            });
        }
        if !status.is_success() {
            // Session table full, sessions disabled, …: basic auth still works on most BMCs.
            tracing::info!(host = %self.host, status = status.as_u16(), "Redfish session login refused; using basic auth");
            return Ok(());
        }
        let token = resp.headers().get("X-Auth-Token").cloned();
        let location = resp.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).map(String::from);
        let body = read_json(resp).await.ok();
        let location = location
            .or_else(|| body.as_ref().and_then(|b| b.get("@odata.id")).and_then(Value::as_str).map(String::from));
        match (token, location) {
            (Some(mut token), Some(location)) => {
                token.set_sensitive(true);
                let location = self.resolve(&location)?;
                self.auth = Auth::Session { token, location };
                Ok(())
            }
            (Some(mut token), None) => {
                // Logged in, but nowhere to log out: use the session rather than leak a second one.
                token.set_sensitive(true);
                tracing::warn!(host = %self.host, "Redfish session has no Location; it will expire on the BMC");
                self.auth = Auth::Session { token, location: url };
                Ok(())
            }
            (None, _) => Err(self.protocol("session login succeeded without an X-Auth-Token".into())),
        }
    }

    /// `path` (an `@odata.id` or action target) as a URL on the BMC. Absolute URLs
    /// are accepted only on the BMC's own origin.
    fn resolve(&self, path: &str) -> Result<Url, RedfishError> {
        let url = self
            .base
            .join(path)
            .map_err(|_| self.protocol(format!("unusable resource path {:?}", bounded(path, 100))))?;
        if url.origin() != self.base.origin() {
            return Err(self.protocol(format!("resource {} points to another host", bounded(path, 100))));
        }
        Ok(url)
    }

    /// The service root, as read at login.
    pub(super) fn root(&self) -> &Value {
        &self.root
    }

    /// What removes the password from text the BMC sent, wherever it echoed it.
    pub(super) fn scrubber(&self) -> impl Fn(&str) -> String + '_ {
        |text| scrub(text, self.target)
    }

    pub(super) fn protocol(&self, detail: String) -> RedfishError {
        RedfishError::Protocol { host: self.host.clone(), detail: scrub(&detail, self.target) }
    }

    fn transport(&self, e: reqwest::Error) -> RedfishError {
        if e.is_timeout() {
            RedfishError::Timeout { host: self.host.clone(), timeout: self.target.timeout }
        } else if e.is_connect() {
            let mut detail = error_chain(&e);
            if detail.contains("certificate") {
                detail.push_str(" (the BMC's certificate is not trusted: install its CA, or set verify_tls = false)");
            }
            RedfishError::Connect { host: self.host.clone(), detail }
        } else if e.is_redirect() {
            self.protocol(format!("redirect: {}", error_chain(&e)))
        } else {
            // Body or protocol-level failures after connecting.
            RedfishError::Connect { host: self.host.clone(), detail: error_chain(&e) }
        }
    }

    /// Send a request; on success return the JSON body (`Null` when empty).
    pub(super) async fn send_json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, RedfishError> {
        let url = self.resolve(path)?;
        let mut req = self.client.request(method.clone(), url.clone());
        req = match &self.auth {
            Auth::Anonymous => req,
            Auth::Basic => req.basic_auth(&self.target.user, Some(self.target.password.expose_secret())),
            Auth::Session { token, .. } => req.header("X-Auth-Token", token.clone()),
        };
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        let status = resp.status();
        let path = resp.url().path().to_string();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RedfishError::Auth { host: self.host.clone(), status: status.as_u16(), path });
        }
        if status.is_redirection() {
            let to = resp.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("");
            return Err(self.protocol(format!("{path} redirects off the BMC (to {})", bounded(to, 100))));
        }
        if !status.is_success() {
            let body = super::super::read_bounded(resp, MAX_BODY).await.unwrap_or_default();
            let message = scrub(&error_message(&body), self.target);
            return Err(RedfishError::Http {
                host: self.host.clone(),
                method: method.to_string(),
                path,
                status: status.as_u16(),
                message,
            });
        }
        let bytes = super::super::read_bounded(resp, MAX_BODY).await.map_err(|e| self.transport(e))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| self.protocol(format!("{path}: not JSON ({e})")))
    }

    /// The system's path and resource.
    pub(super) async fn system(&self) -> Result<(String, Value), RedfishError> {
        let path = match &self.target.system {
            Some(s) if s.starts_with('/') => s.clone(),
            Some(s) => {
                if s.is_empty() || s.contains(['/', '?', '#', '%']) || s == "." || s == ".." {
                    return Err(RedfishError::InvalidTarget("system must be an id or an @odata.id".into()));
                }
                let collection = self.systems_path();
                format!("{}/{s}", collection.trim_end_matches('/'))
            }
            None => {
                let collection = self.systems_path();
                let systems = self.send_json(Method::GET, &collection, None).await?;
                let members = systems
                    .get("Members")
                    .and_then(Value::as_array)
                    .ok_or_else(|| self.protocol(format!("{collection} has no Members")))?;
                match members.first().and_then(|m| m.get("@odata.id")).and_then(Value::as_str) {
                    Some(p) => {
                        if members.len() > 1 {
                            tracing::info!(host = %self.host, count = members.len(), system = p, "several systems; using the first");
                        }
                        p.to_string()
                    }
                    None => {
                        return Err(RedfishError::NoSystem {
                            host: self.host.clone(),
                            detail: format!("{collection} is empty"),
                        });
                    }
                }
            }
        };
        match self.send_json(Method::GET, &path, None).await {
            // Use the path the BMC itself names, so a redirected alias is not repeated.
            Ok(v) => {
                let canonical = v.get("@odata.id").and_then(Value::as_str).unwrap_or(&path).to_string();
                Ok((canonical, v))
            }
            Err(RedfishError::Http { status: 404, path, .. }) => {
                Err(RedfishError::NoSystem { host: self.host.clone(), detail: format!("{path} not found") })
            }
            Err(e) => Err(e),
        }
    }

    fn systems_path(&self) -> String {
        self.root.pointer("/Systems/@odata.id").and_then(Value::as_str).unwrap_or("/redfish/v1/Systems").to_string()
    }

    pub(super) fn power_state_of(&self, system: &Value) -> Result<PowerState, RedfishError> {
        match system.get("PowerState").and_then(Value::as_str) {
            Some(s) => Ok(PowerState::parse(s)),
            None => Err(self.protocol("the system has no PowerState".into())),
        }
    }

    /// `ResetType@Redfish.AllowableValues` inline, else from the action's
    /// `@Redfish.ActionInfo`; `None` when the BMC lists nothing.
    pub(super) async fn allowable_reset_types(&self, action: &Value) -> Result<Option<Vec<String>>, RedfishError> {
        if let Some(v) = action.get("ResetType@Redfish.AllowableValues") {
            return Ok(Some(string_list(v).ok_or_else(|| self.protocol("AllowableValues is not a list".into()))?));
        }
        let Some(info_path) = action.get("@Redfish.ActionInfo").and_then(Value::as_str) else {
            return Ok(None);
        };
        let info = match self.send_json(Method::GET, info_path, None).await {
            Ok(v) => v,
            // ActionInfo is advisory: a BMC that cannot serve it still takes the reset.
            Err(RedfishError::Http { status, .. }) => {
                tracing::info!(host = %self.host, status, "ActionInfo unreadable; not checking ResetType");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let param = info
            .get("Parameters")
            .and_then(Value::as_array)
            .and_then(|ps| ps.iter().find(|p| p.get("Name").and_then(Value::as_str) == Some("ResetType")));
        Ok(param.and_then(|p| p.get("AllowableValues")).and_then(string_list))
    }
}

fn string_list(v: &Value) -> Option<Vec<String>> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
}

async fn read_json(resp: reqwest::Response) -> Result<Value, ()> {
    let bytes = super::super::read_bounded(resp, MAX_BODY).await.map_err(|_| ())?;
    serde_json::from_slice(&bytes).map_err(|_| ())
}

/// The BMC's explanation of an error: the `@Message.ExtendedInfo` messages, else
/// `error.message`, else the start of the body; bounded.
fn error_message(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        let text = String::from_utf8_lossy(body);
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        return if text.is_empty() { "(no body)".into() } else { bounded(&text, MAX_MESSAGE) };
    };
    let err = v.get("error").unwrap_or(&v);
    let extended: Vec<String> = err
        .get("@Message.ExtendedInfo")
        .and_then(Value::as_array)
        .map(|infos| {
            infos
                .iter()
                .filter_map(|i| {
                    let msg = i.get("Message").and_then(Value::as_str);
                    let id = i.get("MessageId").and_then(Value::as_str);
                    match (id, msg) {
                        (Some(id), Some(m)) => Some(format!("{m} [{id}]")),
                        (None, Some(m)) => Some(m.to_string()),
                        _ => None,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let text = if !extended.is_empty() {
        extended.join("; ")
    } else if let Some(m) = err.get("message").and_then(Value::as_str) {
        match err.get("code").and_then(Value::as_str) {
            Some(code) => format!("{m} [{code}]"),
            None => m.to_string(),
        }
    } else {
        "(no Redfish error message)".into()
    };
    bounded(&text, MAX_MESSAGE)
}

/// Replace the password wherever a BMC might have echoed it.
fn scrub(s: &str, target: &RedfishTarget) -> String {
    super::super::scrub(s, target.password.expose_secret(), usize::MAX)
}

/// An error and its sources (the drivers' one chain), bounded like every quoted message.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    super::super::error_chain(e, 2 * MAX_MESSAGE)
}
