//! Taskcluster calls roller makes: quarantining a worker (`queue.quarantineWorker`) and
//! notify's messages with roller's own credentials, and the public reads of a pool's
//! health (`read`: workers in pages, task runs in batches, queue counts), which work
//! anonymously where the deployment grants them (Firefox-CI does) and signed otherwise.
//! Requests are Hawk-signed with the `hawk` crate over the full path and query (the
//! `taskcluster` crate signs the path only: reference/taskcluster.md §8.1). The access
//! token is used to sign and never sent, logged or put in an error.

mod read;

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub use read::{ListedWorker, Run, RunState, TaskQueueCounts, TaskRun, TaskStatus, WorkerDetail, WorkerPage};

#[derive(Clone)]
pub struct TaskclusterClient {
    root_url: reqwest::Url,
    /// None for an anonymous client: its requests carry no Authorization header.
    credentials: Option<Credentials>,
    http: reqwest::Client,
}

#[derive(Clone)]
struct Credentials {
    client_id: String,
    access_token: SecretString,
}

impl std::fmt::Debug for TaskclusterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskclusterClient")
            .field("root_url", &self.root_url.as_str())
            .field("client_id", &self.credentials.as_ref().map_or("(anonymous)", |c| c.client_id.as_str()))
            .field("access_token", &"[redacted]")
            .finish()
    }
}

/// Which worker, as Taskcluster names it.
#[derive(Debug, Clone)]
pub struct WorkerRef<'a> {
    pub provisioner_id: &'a str,
    pub worker_type: &'a str,
    pub worker_group: &'a str,
    pub worker_id: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum TaskclusterError {
    #[error("invalid TASKCLUSTER_ROOT_URL {0:?}")]
    InvalidUrl(String),
    #[error("Taskcluster {call}: {detail}")]
    Transport { call: &'static str, detail: String },
    /// Taskcluster answered with an error: its status and message (an `InsufficientScopes` names the scope).
    #[error("Taskcluster {call}: HTTP {status}: {message}")]
    Refused { call: &'static str, status: u16, message: String },
    /// A success whose body is not what the published schema says, or paging that never ends.
    #[error("Taskcluster {call}: {detail}")]
    Protocol { call: &'static str, detail: String },
    #[error("cancelled")]
    Cancelled,
}

/// The deployment's root URL, or why `url` cannot be one (http(s), without credentials).
/// Configuration checks it before anything is built.
pub fn root_url(url: &str) -> Result<reqwest::Url, TaskclusterError> {
    let invalid = || TaskclusterError::InvalidUrl(super::url_for_message(url));
    let parsed = reqwest::Url::parse(url.trim_end_matches('/')).map_err(|_| invalid())?;
    if !matches!(parsed.scheme(), "http" | "https") || !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid());
    }
    Ok(parsed)
}

/// The most roller reads of one answer from Taskcluster: the largest expected is a
/// `queue.statuses` page, 1,000 tasks of up to 50 runs each (a few MB); a cut body fails
/// to parse and is reported as such.
const MAX_BODY: usize = 16 * 1024 * 1024;

impl TaskclusterClient {
    pub fn new(
        root_url: &str,
        client_id: &str,
        access_token: SecretString,
        timeout: Duration,
    ) -> Result<Self, TaskclusterError> {
        let credentials = Credentials { client_id: client_id.to_string(), access_token };
        Self::build(root_url, Some(credentials), timeout)
    }

    /// A client without credentials, for the public reads: Firefox-CI grants the
    /// `anonymous` role `queue:list-workers:*`, `queue:status:*`, `queue:get-worker:*`,
    /// `queue:pending-count:*` and `queue:claimed-count:*` (reference/fleet-health.md §1.2).
    pub fn anonymous(root_url: &str, timeout: Duration) -> Result<Self, TaskclusterError> {
        Self::build(root_url, None, timeout)
    }

    fn build(root_url: &str, credentials: Option<Credentials>, timeout: Duration) -> Result<Self, TaskclusterError> {
        let invalid = || TaskclusterError::InvalidUrl(super::url_for_message(root_url));
        let url = self::root_url(root_url)?;
        let http = reqwest::Client::builder().timeout(timeout).build().map_err(|_| invalid())?;
        Ok(Self { root_url: url, credentials, http })
    }

    /// `<root>/<path>`, `path` already made of encoded segments.
    fn url(&self, path: &str) -> reqwest::Url {
        let mut url = self.root_url.clone();
        url.set_path(&format!("{}/{}", self.root_url.path().trim_end_matches('/'), path.trim_start_matches('/')));
        url
    }

    /// `POST <root>/api/<service>/v1/<path>` with a JSON body (notify's email,
    /// matrix and slack calls); the answer's JSON, or the refusal.
    pub async fn post(&self, call: &'static str, path: &str, body: &Value) -> Result<Value, TaskclusterError> {
        self.send(call, reqwest::Method::POST, self.url(path), body, &CancellationToken::new()).await
    }

    /// `queue.declareProvisioner` with `actions` (needs
    /// `queue:declare-provisioner:<id>#actions`). Taskcluster v39+ accepts the call
    /// and stores nothing; the answer says what the queue made of it.
    pub async fn declare_provisioner(&self, provisioner_id: &str, actions: &Value) -> Result<Value, TaskclusterError> {
        let url = self.url(&format!("api/queue/v1/provisioners/{}", super::path_segment(provisioner_id)));
        let body = json!({ "actions": actions });
        self.send("queue.declareProvisioner", reqwest::Method::PUT, url, &body, &CancellationToken::new()).await
    }

    /// `queue.quarantineWorker`: no tasks for the worker until `until` (a time in
    /// the past lifts a quarantine). The answer is the worker record.
    pub async fn quarantine_worker(
        &self,
        w: &WorkerRef<'_>,
        until: DateTime<Utc>,
        info: &str,
        cancel: &CancellationToken,
    ) -> Result<Value, TaskclusterError> {
        const CALL: &str = "queue.quarantineWorker";
        let url = self.url(&read::worker_path(w));
        // The schema caps quarantineInfo at 4000 characters.
        let info: String = info.chars().take(4000).collect();
        let body =
            json!({ "quarantineUntil": until.to_rfc3339_opts(SecondsFormat::Millis, true), "quarantineInfo": info });
        self.send(CALL, reqwest::Method::PUT, url, &body, cancel).await
    }

    /// `auth.currentScopes`: the scopes these credentials hold, which proves them valid
    /// (a wrong or expired token is refused). Changes nothing.
    pub async fn current_scopes(&self, cancel: &CancellationToken) -> Result<Vec<String>, TaskclusterError> {
        #[derive(serde::Deserialize)]
        struct Scopes {
            scopes: Vec<String>,
        }
        let url = self.url("api/auth/v1/scopes/current");
        let s: Scopes = self.read("auth.currentScopes", reqwest::Method::GET, url, None, cancel).await?;
        Ok(s.scopes)
    }

    /// Whether requests are signed.
    pub fn signed(&self) -> bool {
        self.credentials.is_some()
    }

    /// A call whose answer roller only reports: its JSON (null when the body is not
    /// JSON, as notify's 204 for a duplicate is not), or the refusal.
    async fn send(
        &self,
        call: &'static str,
        method: reqwest::Method,
        url: reqwest::Url,
        body: &Value,
        cancel: &CancellationToken,
    ) -> Result<Value, TaskclusterError> {
        let bytes = self.exchange(call, method, url, Some(body), cancel).await?;
        Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// A call whose answer roller reads: the body parsed into `T` (the published
    /// schema's shape), or the refusal, or what did not parse.
    async fn read<T: serde::de::DeserializeOwned>(
        &self,
        call: &'static str,
        method: reqwest::Method,
        url: reqwest::Url,
        body: Option<&Value>,
        cancel: &CancellationToken,
    ) -> Result<T, TaskclusterError> {
        let bytes = self.exchange(call, method, url, body, cancel).await?;
        serde_json::from_slice(&bytes).map_err(|e| TaskclusterError::Protocol {
            call,
            detail: format!("the answer is not the published shape: {e}"),
        })
    }

    /// One request, signed when the client has credentials; the successful answer's
    /// body (at most `MAX_BODY` bytes), else the refusal. Cancelling drops the request.
    async fn exchange(
        &self,
        call: &'static str,
        method: reqwest::Method,
        url: reqwest::Url,
        body: Option<&Value>,
        cancel: &CancellationToken,
    ) -> Result<Vec<u8>, TaskclusterError> {
        let transport = |detail: String| TaskclusterError::Transport { call, detail };
        let mut request = self.http.request(method.clone(), url.clone());
        if let Some(c) = &self.credentials {
            let auth = super::hawk::sign(&method, &url, &c.client_id, &c.access_token)
                .map_err(|e| transport(e.to_string()))?;
            request = request.header("Authorization", auth);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let send = async {
            let resp = request.send().await.map_err(|e| transport(e.without_url().to_string()))?;
            let status = resp.status();
            let bytes =
                super::read_bounded(resp, MAX_BODY).await.map_err(|e| transport(e.without_url().to_string()))?;
            if !status.is_success() {
                let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let message = v.get("message").and_then(Value::as_str).unwrap_or("(no message)");
                // Taskcluster messages can be long (they list scopes); keep the first lines.
                let message: String = message.lines().take(6).collect::<Vec<_>>().join(" ").chars().take(600).collect();
                return Err(TaskclusterError::Refused { call, status: status.as_u16(), message });
            }
            Ok(bytes)
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(TaskclusterError::Cancelled),
            r = send => r,
        }
    }
}
