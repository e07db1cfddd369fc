//! Taskcluster calls roller makes with its own credentials: quarantining a
//! worker (`queue.quarantineWorker`). Requests are Hawk-signed with the `hawk`
//! crate over the full path and query (the `taskcluster` crate signs the path
//! only: reference/taskcluster.md §8.1). The access token is used to sign and
//! never sent, logged or put in an error.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct TaskclusterClient {
    root_url: reqwest::Url,
    client_id: String,
    access_token: SecretString,
    http: reqwest::Client,
}

impl std::fmt::Debug for TaskclusterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskclusterClient")
            .field("root_url", &self.root_url.as_str())
            .field("client_id", &self.client_id)
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

impl TaskclusterClient {
    pub fn new(
        root_url: &str,
        client_id: &str,
        access_token: SecretString,
        timeout: Duration,
    ) -> Result<Self, TaskclusterError> {
        let invalid = || TaskclusterError::InvalidUrl(super::url_for_message(root_url));
        let url = self::root_url(root_url)?;
        let http = reqwest::Client::builder().timeout(timeout).build().map_err(|_| invalid())?;
        Ok(Self { root_url: url, client_id: client_id.to_string(), access_token, http })
    }

    /// `POST <root>/api/<service>/v1/<path>` with a JSON body (notify's email,
    /// matrix and slack calls); the answer's JSON, or the refusal.
    pub async fn post(&self, call: &'static str, path: &str, body: &Value) -> Result<Value, TaskclusterError> {
        let mut url = self.root_url.clone();
        url.set_path(&format!("{}/{}", self.root_url.path().trim_end_matches('/'), path.trim_start_matches('/')));
        self.send(call, reqwest::Method::POST, url, body, &CancellationToken::new()).await
    }

    /// `queue.declareProvisioner` with `actions` (needs
    /// `queue:declare-provisioner:<id>#actions`). Taskcluster v39+ accepts the call
    /// and stores nothing; the answer says what the queue made of it.
    pub async fn declare_provisioner(&self, provisioner_id: &str, actions: &Value) -> Result<Value, TaskclusterError> {
        let mut url = self.root_url.clone();
        url.set_path(&format!(
            "{}/api/queue/v1/provisioners/{}",
            self.root_url.path().trim_end_matches('/'),
            super::path_segment(provisioner_id)
        ));
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
        let seg = super::path_segment;
        let path = format!(
            "{}/api/queue/v1/provisioners/{}/worker-types/{}/workers/{}/{}",
            self.root_url.path().trim_end_matches('/'),
            seg(w.provisioner_id),
            seg(w.worker_type),
            seg(w.worker_group),
            seg(w.worker_id)
        );
        let mut url = self.root_url.clone();
        url.set_path(&path);
        // The schema caps quarantineInfo at 4000 characters.
        let info: String = info.chars().take(4000).collect();
        let body =
            json!({ "quarantineUntil": until.to_rfc3339_opts(SecondsFormat::Millis, true), "quarantineInfo": info });
        self.send(CALL, reqwest::Method::PUT, url, &body, cancel).await
    }

    async fn send(
        &self,
        call: &'static str,
        method: reqwest::Method,
        url: reqwest::Url,
        body: &Value,
        cancel: &CancellationToken,
    ) -> Result<Value, TaskclusterError> {
        let transport = |detail: String| TaskclusterError::Transport { call, detail };
        let auth = super::hawk::sign(&method, &url, &self.client_id, &self.access_token)
            .map_err(|e| transport(e.to_string()))?;
        let send = async {
            let resp = self
                .http
                .request(method.clone(), url.clone())
                .header("Authorization", auth)
                .json(body)
                .send()
                .await
                .map_err(|e| transport(e.without_url().to_string()))?;
            let status = resp.status();
            let bytes =
                super::read_bounded(resp, 1024 * 1024).await.map_err(|e| transport(e.without_url().to_string()))?;
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if !status.is_success() {
                let message = v.get("message").and_then(Value::as_str).unwrap_or("(no message)");
                // Taskcluster messages can be long (they list scopes); keep the first lines.
                let message: String = message.lines().take(6).collect::<Vec<_>>().join(" ").chars().take(600).collect();
                return Err(TaskclusterError::Refused { call, status: status.as_u16(), message });
            }
            Ok(v)
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(TaskclusterError::Cancelled),
            r = send => r,
        }
    }
}
