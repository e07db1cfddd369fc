//! Bugzilla's REST API (BMO 5): read a bug by id or alias, search, create, update.
//! No maintained Rust client exists, so this is reqwest + serde (ARCHITECTURE.md).
//!
//! The API key travels only in the `X-BUGZILLA-API-KEY` header: never in a URL
//! (Bugzilla also accepts `?api_key=`, which ends up in every proxy's access log),
//! a body, an error or a log line. Errors carry the method, the path and
//! Bugzilla's own `code`/`message`, bounded.

use std::time::Duration;

use reqwest::{Method, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// A bug list is small; anything this large is not Bugzilla talking.
const MAX_BODY: usize = 4 * 1024 * 1024;
const MAX_MESSAGE: usize = 300;
/// Bugzilla's error code for "no bug with that id or alias".
const CODE_NO_SUCH_BUG: i64 = 101;

/// One Bugzilla and the key roller files bugs with.
#[derive(Clone)]
pub struct Bugzilla {
    /// `https://bugzilla.mozilla.org` (no `/rest`): links are `<base>/show_bug.cgi?id=N`.
    base: Url,
    api_key: SecretString,
    http: reqwest::Client,
    timeout: Duration,
}

impl std::fmt::Debug for Bugzilla {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bugzilla").field("base", &self.base.as_str()).field("api_key", &"[redacted]").finish()
    }
}

/// What roller reads of a bug.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Bug {
    pub id: u64,
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub resolution: String,
    #[serde(default = "yes")]
    pub is_open: bool,
    /// When it was filed (searches ask for it; the incident window is measured from it).
    #[serde(default)]
    pub creation_time: Option<chrono::DateTime<chrono::Utc>>,
    /// The bugs this one blocks (searches ask for them).
    #[serde(default)]
    pub blocks: Vec<u64>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, thiserror::Error)]
pub enum BugzillaError {
    #[error("invalid Bugzilla URL {0:?}: an http(s) URL without credentials, query or fragment")]
    InvalidUrl(String),
    #[error("Bugzilla {method} {path}: {source}")]
    Http {
        method: Method,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Bugzilla {method} {path}: no answer within {after:?}")]
    Timeout { method: Method, path: String, after: Duration },
    /// Bugzilla answered with an error (it says which in `code` and `message`).
    #[error("Bugzilla {method} {path}: HTTP {status}{}: {message}", code.map(|c| format!(", code {c}")).unwrap_or_default())]
    Refused { method: Method, path: String, status: u16, code: Option<i64>, message: String },
    #[error("Bugzilla {method} {path}: unexpected answer: {detail}")]
    Protocol { method: Method, path: String, detail: String },
    #[error("cancelled")]
    Cancelled,
}

/// The server's base URL as the client uses it (ending in `/`), or why `url` cannot be one:
/// http(s), with a host, without credentials, query or fragment. Configuration checks it
/// before anything is built.
pub fn base_url(url: &str) -> Result<Url, BugzillaError> {
    let invalid = || BugzillaError::InvalidUrl(super::url_for_message(url));
    let mut base = Url::parse(url).map_err(|_| invalid())?;
    let plain = matches!(base.scheme(), "http" | "https")
        && base.host_str().is_some()
        && base.username().is_empty()
        && base.password().is_none()
        && base.query().is_none()
        && base.fragment().is_none();
    if !plain {
        return Err(invalid());
    }
    // The original's test setting ended in `/rest/`; both spellings mean the same server.
    let path = base.path().trim_end_matches('/').trim_end_matches("/rest").to_string();
    base.set_path(&format!("{path}/"));
    Ok(base)
}

impl Bugzilla {
    pub fn new(base_url: &str, api_key: SecretString, timeout: Duration) -> Result<Bugzilla, BugzillaError> {
        let invalid = || BugzillaError::InvalidUrl(super::url_for_message(base_url));
        let base = self::base_url(base_url)?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("roller/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| invalid())?;
        Ok(Bugzilla { base, api_key, http, timeout })
    }

    /// The bug's page, for people.
    pub fn show_url(&self, id: u64) -> String {
        format!("{}show_bug.cgi?id={id}", self.base)
    }

    /// Whose API key this is (`GET /rest/whoami`): the account's login name. An invalid
    /// or revoked key is refused. Reads nothing else and changes nothing.
    pub async fn whoami(&self, cancel: &CancellationToken) -> Result<String, BugzillaError> {
        let v = self.call(Method::GET, "rest/whoami", &[], None, cancel).await?;
        v.get("name")
            .or_else(|| v.get("login"))
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| protocol(&Method::GET, "rest/whoami", "no name in the answer".into()))
    }

    /// A bug by id or alias; `None` when Bugzilla has no such bug.
    pub async fn get(&self, id_or_alias: &str, cancel: &CancellationToken) -> Result<Option<Bug>, BugzillaError> {
        let path = format!("rest/bug/{}", super::path_segment(id_or_alias));
        match self.call(Method::GET, &path, &[], None, cancel).await {
            Ok(v) => Ok(first_bug(&Method::GET, &path, v)?),
            Err(BugzillaError::Refused { code: Some(CODE_NO_SUCH_BUG), .. }) => Ok(None),
            Err(BugzillaError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Open bugs with exactly this summary in this product and component.
    pub async fn find_open(
        &self,
        summary: &str,
        product: &str,
        component: &str,
        cancel: &CancellationToken,
    ) -> Result<Vec<Bug>, BugzillaError> {
        let query = [
            ("summary", summary),
            ("product", product),
            ("component", component),
            ("resolution", "---"),
            ("include_fields", "id,summary,status,resolution,is_open,creation_time,blocks"),
        ];
        let v = self.call(Method::GET, "rest/bug", &query, None, cancel).await?;
        let bugs: Vec<Bug> = serde_json::from_value(v.get("bugs").cloned().unwrap_or(json!([])))
            .map_err(|e| protocol(&Method::GET, "rest/bug", e.to_string()))?;
        // Bugzilla's summary search matches substrings; only the exact one is "the" bug.
        Ok(bugs.into_iter().filter(|b| b.is_open && b.summary == summary).collect())
    }

    /// The bug's first comment (its description), `None` when it has none.
    pub async fn first_comment(&self, id: u64, cancel: &CancellationToken) -> Result<Option<String>, BugzillaError> {
        let path = format!("rest/bug/{id}/comment");
        let v = self.call(Method::GET, &path, &[], None, cancel).await?;
        // `{"bugs": {"<id>": {"comments": [{"text": ...}, ...]}}}`
        let comments = v
            .pointer(&format!("/bugs/{id}/comments"))
            .and_then(Value::as_array)
            .ok_or_else(|| protocol(&Method::GET, &path, "no comments for the bug".into()))?;
        Ok(comments.first().and_then(|c| c.get("text")).and_then(Value::as_str).map(str::to_string))
    }

    /// File a bug; its id.
    pub async fn create(&self, fields: &Value, cancel: &CancellationToken) -> Result<u64, BugzillaError> {
        let v = self.call(Method::POST, "rest/bug", &[], Some(fields), cancel).await?;
        v.get("id").and_then(Value::as_u64).ok_or_else(|| protocol(&Method::POST, "rest/bug", "no bug id".into()))
    }

    /// Change a bug (`{"status": …}`, `{"blocks": {"add": […]}, "comment": {"body": …}}` …).
    pub async fn update(&self, id: u64, changes: &Value, cancel: &CancellationToken) -> Result<(), BugzillaError> {
        self.call(Method::PUT, &format!("rest/bug/{id}"), &[], Some(changes), cancel).await.map(|_| ())
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        cancel: &CancellationToken,
    ) -> Result<Value, BugzillaError> {
        let mut url = self.base.join(path).map_err(|e| protocol(&method, path, e.to_string()))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut req = self
            .http
            .request(method.clone(), url)
            .header("X-BUGZILLA-API-KEY", self.api_key.expose_secret())
            .header("Accept", "application/json");
        if let Some(b) = body {
            req = req.json(b);
        }
        let send = async {
            let resp = req.send().await?;
            let status = resp.status();
            let bytes = super::read_bounded(resp, MAX_BODY).await?;
            Ok::<_, reqwest::Error>((status, bytes))
        };
        let (status, bytes) = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(BugzillaError::Cancelled),
            r = send => r.map_err(|e| {
                if e.is_timeout() {
                    BugzillaError::Timeout { method: method.clone(), path: path.to_string(), after: self.timeout }
                } else {
                    BugzillaError::Http { method: method.clone(), path: path.to_string(), source: e.without_url() }
                }
            })?,
        };
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        // Bugzilla reports errors as `{"error": true, "code": N, "message": …}`, sometimes with a 200.
        if !status.is_success() || v.get("error").and_then(Value::as_bool) == Some(true) {
            let message =
                v.get("message").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| {
                    String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_MESSAGE)]).trim().to_string()
                });
            return Err(BugzillaError::Refused {
                method,
                path: path.to_string(),
                status: status.as_u16(),
                code: v.get("code").and_then(Value::as_i64),
                message: super::bounded(&message, MAX_MESSAGE),
            });
        }
        if v.is_null() {
            return Err(protocol(&method, path, format!("HTTP {} without a JSON body", status.as_u16())));
        }
        Ok(v)
    }
}

fn first_bug(method: &Method, path: &str, v: Value) -> Result<Option<Bug>, BugzillaError> {
    let bugs: Vec<Bug> = serde_json::from_value(v.get("bugs").cloned().unwrap_or(json!([])))
        .map_err(|e| protocol(method, path, e.to_string()))?;
    Ok(bugs.into_iter().next())
}

fn protocol(method: &Method, path: &str, detail: String) -> BugzillaError {
    BugzillaError::Protocol {
        method: method.clone(),
        path: path.to_string(),
        detail: super::bounded(&detail, MAX_MESSAGE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretString {
        SecretString::from("k".to_string())
    }

    #[test]
    fn base_urls_are_normalised_and_unsafe_ones_refused() {
        let b = Bugzilla::new("https://bugzilla.example.com", key(), Duration::from_secs(1)).unwrap();
        assert_eq!(b.show_url(7), "https://bugzilla.example.com/show_bug.cgi?id=7");
        let b = Bugzilla::new("https://landfill.example.com/bmo/rest/", key(), Duration::from_secs(1)).unwrap();
        assert_eq!(b.show_url(7), "https://landfill.example.com/bmo/show_bug.cgi?id=7");
        for bad in ["ftp://x", "https://user:pw@x", "https://x/?api_key=1", "not a url", "https://x/#f"] {
            assert!(Bugzilla::new(bad, key(), Duration::from_secs(1)).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_never_shows_the_key() {
        let b =
            Bugzilla::new("https://bz.example", SecretString::from("sekrit-key".to_string()), Duration::from_secs(1))
                .unwrap();
        assert!(!format!("{b:?}").contains("sekrit"));
    }

    #[test]
    fn aliases_are_one_path_segment() {
        assert_eq!(crate::drivers::path_segment("t-linux64-ms-001"), "t-linux64-ms-001");
        assert_eq!(crate::drivers::path_segment("a/b c?"), "a%2Fb%20c%3F");
    }
}
