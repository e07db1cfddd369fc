//! Authentication through Taskcluster's `auth.authenticateHawk` (taskcluster.md §3).
//!
//! Roller forwards what the Hawk MAC covers and never sees users' tokens.
//! Failures to *reach* Taskcluster are [`AuthError::Unavailable`] (503, worth
//! retrying); a verdict from Taskcluster, or an answer we cannot make sense of,
//! is [`AuthError::Refused`] (403), so a confused upstream can never let a
//! request through.
//!
//! Taskcluster reports a `hash` when the header carried one; comparing it
//! with the body is the caller's job (§3.6) and needs the body, which
//! [`HawkRequest`] does not carry, so it is not done here.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::hawk_header;
use super::local::TIMESTAMP_SKEW;
use super::scopes::is_valid_scope;
use super::{AuthError, Caller, HawkRequest, Verified};
use crate::domain::ClientId;

/// Answers are a few KiB; anything much larger is not Taskcluster.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

pub struct TaskclusterAuth {
    url: String,
    /// Built once so connections (and TLS sessions) are pooled across requests.
    http: reqwest::Client,
}

fn unavailable(msg: impl Into<String>) -> AuthError {
    AuthError::Unavailable(msg.into())
}

fn refused(msg: impl Into<String>) -> AuthError {
    AuthError::Refused(msg.into())
}

impl TaskclusterAuth {
    /// `root_url` is the deployment's root URL, e.g. `https://firefox-ci-tc.services.mozilla.com`;
    /// `timeout` bounds each whole call.
    pub fn new(root_url: &str, timeout: Duration) -> Result<Self, AuthError> {
        let root = root_url.trim_end_matches('/');
        let url = format!("{root}/api/auth/v1/authenticate-hawk");
        if reqwest::Url::parse(&url).is_err() {
            return Err(unavailable(format!("Taskcluster root URL {root_url:?} is not a valid URL")));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(60))
            // Redirects would re-send the user's Authorization header in the
            // body to wherever they point; Taskcluster does not redirect this.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("roller/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| unavailable(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { url, http })
    }

    /// The header verified by Taskcluster. Taskcluster checks no nonces (taskcluster.md
    /// §1.5), so a captured header would work for 15 minutes: the replay check on what
    /// this returns is the caller's (`Authenticator`, `replay`).
    pub async fn verify(&self, req: &HawkRequest, header: &str) -> Result<Verified, AuthError> {
        // A header that is not Hawk is refused here, without a round trip.
        let parsed = hawk_header::parse(header).map_err(|e| refused(e.0))?;
        // The schema's method enum is lower-case and `host` has no port (§3.2).
        let body = json!({
            "method": req.method.to_ascii_lowercase(),
            "resource": req.resource,
            "host": req.host.to_ascii_lowercase(),
            "port": req.port,
            "authorization": header,
        });
        // Taskcluster judges the timestamp by its clock; the replay record forgets
        // a header once roller's clock is past ts + skew, so roller refuses by its
        // own clock what it may no longer remember (before the round trip: a stale
        // header gets no further whatever Taskcluster would say).
        if !parsed.is_fresh(SystemTime::now(), TIMESTAMP_SKEW) {
            return Err(refused("Stale timestamp"));
        }
        let mut resp = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| unavailable(format!("authenticateHawk: {}", without_url(e))))?;
        let status = resp.status();
        if status.is_client_error() {
            // Taskcluster refused what we forwarded (e.g. a Host its schema rejects):
            // retrying the same request cannot help, so this is a refusal, not an outage.
            return Err(refused(format!("invalid auth response: authenticateHawk answered HTTP {status}")));
        }
        if !status.is_success() {
            return Err(unavailable(format!("authenticateHawk answered HTTP {status}")));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) =
            resp.chunk().await.map_err(|e| unavailable(format!("authenticateHawk: {}", without_url(e))))?
        {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(unavailable("authenticateHawk answer is too large"));
            }
            bytes.extend_from_slice(&chunk);
        }
        // A 2xx that is not JSON is a proxy or an outage page, not a verdict.
        let answer: Value = serde_json::from_slice(&bytes)
            .map_err(|_| unavailable("authenticateHawk answered with something other than JSON"))?;
        // Taskcluster's "Bad mac" names nothing to fix: roller's words say which client.
        let caller = interpret(&answer).map_err(|e| match e {
            AuthError::Refused(m) if m == "Bad mac" => refused(super::bad_mac(&parsed.id)),
            e => e,
        })?;
        // Verified: only such a header may be recorded by the replay check, so
        // strangers cannot burn nonces (the check judges the window again by roller's clock).
        Ok(Verified { caller, id: parsed.id, ts: parsed.ts, nonce: parsed.nonce })
    }
}

/// reqwest's errors name the URL; the root URL is configuration, not a
/// secret, but keeping it out of the 503 text keeps the answer short.
fn without_url(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let e = e.without_url();
    format!("{kind}: {e}")
}

/// Turn an `authenticateHawk` answer (§3.4) into a verdict.
fn interpret(answer: &Value) -> Result<Caller, AuthError> {
    let message = answer.get("message").and_then(Value::as_str).unwrap_or("");
    match answer.get("status") {
        None => Err(refused("'status' not found invalid auth response")),
        Some(Value::String(s)) if s == "auth-success" => success(answer),
        Some(Value::String(s)) if s == "auth-failed" => {
            Err(refused(if message.is_empty() { "Authentication failed" } else { message }))
        }
        Some(other) => {
            let status = match other {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            Err(refused(format!("invalid auth response status: {status} {message}")))
        }
    }
}

fn success(answer: &Value) -> Result<Caller, AuthError> {
    let bad = |what: &str| refused(format!("invalid auth response: {what}"));
    let client_id = answer
        .get("clientId")
        .and_then(Value::as_str)
        .and_then(|s| ClientId::parse(s).ok())
        .ok_or_else(|| bad("clientId"))?;
    let scopes = answer
        .get("scopes")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("scopes"))?
        .iter()
        .map(|s| s.as_str().filter(|s| is_valid_scope(s)).map(str::to_string))
        .collect::<Option<Vec<String>>>()
        .ok_or_else(|| bad("scopes"))?;
    Ok(Caller { client_id, scopes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Json;
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::post;
    use std::sync::{Arc, Mutex};

    fn req() -> HawkRequest {
        HawkRequest {
            method: "POST".into(),
            resource: "/api/v1/workers/w1/jobs?task_name=reboot&x=1".into(),
            host: "roller.example.com".into(),
            port: 443,
            authorization: None,
        }
    }

    /// A stand-in for Taskcluster that answers with `status` and `answer` and
    /// remembers the request body.
    async fn stand_in(status: StatusCode, answer: Value, delay: Duration) -> (String, Arc<Mutex<Vec<Value>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let app = Router::new().route(
            "/api/auth/v1/authenticate-hawk",
            post(move |Json(body): Json<Value>| {
                let s = s.clone();
                let answer = answer.clone();
                async move {
                    s.lock().unwrap().push(body);
                    tokio::time::sleep(delay).await;
                    (status, Json(answer))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}/"), seen)
    }

    /// A well-formed header with a fresh nonce; the stand-in does not check its MAC.
    fn hdr(id: &str) -> String {
        let ts = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        let nonce: u64 = rand::random();
        format!("Hawk id=\"{id}\", ts=\"{ts}\", nonce=\"{nonce:x}\", mac=\"bWFj\"")
    }

    async fn call(status: StatusCode, answer: Value) -> Result<Caller, AuthError> {
        let (root, _) = stand_in(status, answer, Duration::ZERO).await;
        let tc = TaskclusterAuth::new(&root, Duration::from_secs(5)).unwrap();
        tc.verify(&req(), &hdr("a")).await.map(|v| v.caller)
    }

    fn refusal<T: std::fmt::Debug>(r: Result<T, AuthError>) -> String {
        match r {
            Err(AuthError::Refused(m)) => m,
            other => format!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn sends_the_schema_shaped_body_and_accepts_success() {
        let (root, seen) = stand_in(
            StatusCode::OK,
            json!({"status": "auth-success", "clientId": "alice", "scheme": "hawk",
                   "scopes": ["project:releng:roller:*"], "expires": "2030-01-01T00:00:00.000Z"}),
            Duration::ZERO,
        )
        .await;
        let tc = TaskclusterAuth::new(&root, Duration::from_secs(5)).unwrap();
        let mut r = req();
        r.host = "Roller.Example.com".into();
        let h = hdr("alice");
        let v = tc.verify(&r, &h).await.unwrap();
        assert_eq!(v.id, "alice", "named for the replay check");
        let caller = v.caller;
        assert_eq!(caller.client_id.as_str(), "alice");
        assert!(caller.has_scope("project:releng:roller:reboot"));
        let body = seen.lock().unwrap()[0].clone();
        assert_eq!(
            body,
            json!({"method": "post", "resource": "/api/v1/workers/w1/jobs?task_name=reboot&x=1",
                   "host": "roller.example.com", "port": 443, "authorization": h})
        );
        // The same client (and pool) serves the next call.
        assert!(tc.verify(&r, &hdr("alice")).await.is_ok());
        assert_eq!(seen.lock().unwrap().len(), 2);
        // A garbled header never reaches Taskcluster.
        assert!(refusal(tc.verify(&r, "Hawk id=\"alice\"").await).starts_with("Missing attributes"));
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_header_stale_by_rollers_clock_is_refused_although_taskcluster_accepts_it() {
        // As if Taskcluster's clock lagged roller's: it accepts what roller's
        // replay cache would already have forgotten.
        let (root, seen) = stand_in(
            StatusCode::OK,
            json!({"status": "auth-success", "clientId": "alice", "scopes": []}),
            Duration::ZERO,
        )
        .await;
        let tc = TaskclusterAuth::new(&root, Duration::from_secs(5)).unwrap();
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        for ts in [now - TIMESTAMP_SKEW.as_secs() - 60, now + TIMESTAMP_SKEW.as_secs() + 60] {
            let h = format!("Hawk id=\"alice\", ts=\"{ts}\", nonce=\"n\", mac=\"bWFj\"");
            assert_eq!(refusal(tc.verify(&req(), &h).await), "Stale timestamp");
        }
        assert_eq!(seen.lock().unwrap().len(), 0, "a stale header is refused before the round trip");
        assert!(tc.verify(&req(), &hdr("alice")).await.is_ok());
    }

    #[tokio::test]
    async fn failures_and_odd_statuses_are_refusals() {
        assert_eq!(
            refusal(call(StatusCode::OK, json!({"status": "auth-failed", "message": "Bad mac"})).await),
            super::super::bad_mac("a"),
            "Taskcluster's words, naming the client"
        );
        assert_eq!(
            refusal(call(StatusCode::OK, json!({"message": "x"})).await),
            "'status' not found invalid auth response"
        );
        assert_eq!(
            refusal(call(StatusCode::OK, json!({"status": "no-auth", "scheme": "none", "scopes": []})).await),
            "invalid auth response status: no-auth "
        );
        assert_eq!(refusal(call(StatusCode::OK, json!([1, 2])).await), "'status' not found invalid auth response");
    }

    #[tokio::test]
    async fn malformed_success_is_refused() {
        for (answer, what) in [
            (json!({"status": "auth-success", "scopes": []}), "clientId"),
            (json!({"status": "auth-success", "clientId": "", "scopes": []}), "clientId"),
            (json!({"status": "auth-success", "clientId": "a", "scopes": "x"}), "scopes"),
            (json!({"status": "auth-success", "clientId": "a", "scopes": [1]}), "scopes"),
            (json!({"status": "auth-success", "clientId": "a", "scopes": ["\n"]}), "scopes"),
        ] {
            assert_eq!(refusal(call(StatusCode::OK, answer).await), format!("invalid auth response: {what}"));
        }
    }

    #[tokio::test]
    async fn unreachable_slow_or_erroring_upstream_is_unavailable() {
        let r = call(StatusCode::INTERNAL_SERVER_ERROR, json!({})).await;
        assert!(matches!(r, Err(AuthError::Unavailable(ref m)) if m.contains("500")), "{r:?}");
        let r = call(StatusCode::BAD_REQUEST, json!({"code": "InputValidationError"})).await;
        assert!(matches!(r, Err(AuthError::Refused(ref m)) if m.contains("400")), "{r:?}");

        let (root, _) = stand_in(StatusCode::OK, json!({}), Duration::from_secs(5)).await;
        let tc = TaskclusterAuth::new(&root, Duration::from_millis(200)).unwrap();
        let r = tc.verify(&req(), &hdr("a")).await;
        assert!(matches!(r, Err(AuthError::Unavailable(ref m)) if m.contains("timed out")), "{r:?}");

        // Nothing listens on the port of a listener we just dropped.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let tc = TaskclusterAuth::new(&format!("http://{addr}"), Duration::from_secs(2)).unwrap();
        let r = tc.verify(&req(), &hdr("a")).await;
        assert!(matches!(r, Err(AuthError::Unavailable(_))), "{r:?}");
    }

    #[test]
    fn bad_root_url_is_an_error() {
        assert!(TaskclusterAuth::new("not a url", Duration::from_secs(1)).is_err());
    }
}
