//! A small API client for the `roller jobs …` subcommands: Hawk-signed requests
//! to a running roller, with credentials from the environment or a file; a roller
//! that does not answer (`Unreachable`, exit 1) apart from one whose certificate is
//! not trusted (a configuration error, exit 2); the API's refusals in its own words.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use secrecy::SecretString;

/// Credentials and address of the roller to talk to.
pub struct Client {
    base: reqwest::Url,
    client_id: String,
    access_token: SecretString,
    http: reqwest::Client,
    /// For event streams: no limit on the whole answer (a stream lasts up to 10
    /// minutes), but on the silence between its parts (roller sends a keep-alive
    /// comment every 15 s).
    streams: reqwest::Client,
}

/// roller did not answer at all (refused, timed out, no such host): the request may
/// be right, the service is away; `main` exits 1 for it, not the usage code 2.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot reach roller at {url}: {cause}\n  Is `roller serve` running there? Start it, or point --url / ROLLER_URL at \
     the roller to use."
)]
pub struct Unreachable {
    pub url: String,
    pub cause: String,
}

/// The API said no: its `detail` (which names the fix) and `error_code`, as given.
/// As an error, `main` exits 1 for it (the request reached roller and was refused).
#[derive(Debug)]
pub struct Refusal {
    pub status: u16,
    pub detail: String,
    pub error_code: Option<String>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (HTTP {}", self.detail, self.status)?;
        if let Some(code) = &self.error_code {
            write!(f, ", {code}")?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for Refusal {}

/// An API answer: status and JSON body.
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The refusal in this answer (`{"detail", "error_code"}`; any other body as text).
    pub fn refusal(&self) -> Refusal {
        let detail = match (&self.body["detail"], &self.body) {
            (serde_json::Value::String(d), _) => d.clone(),
            (_, serde_json::Value::String(text)) if !text.trim().is_empty() => text.trim().to_string(),
            _ => "the request was refused".to_string(),
        };
        Refusal { status: self.status, detail, error_code: self.body["error_code"].as_str().map(String::from) }
    }
}

impl Client {
    /// `TASKCLUSTER_CLIENT_ID`/`TASKCLUSTER_ACCESS_TOKEN` when both are set, else the credentials file.
    /// `ca_file`: PEM certificates trusted for an https:// roller besides the system's roots.
    pub fn new(base: &str, credentials: &Path, ca_file: Option<&Path>) -> anyhow::Result<Client> {
        let base = reqwest::Url::parse(base).with_context(|| format!("invalid roller URL {base:?}"))?;
        let (client_id, access_token) = match (
            std::env::var("TASKCLUSTER_CLIENT_ID").ok().filter(|s| !s.is_empty()),
            std::env::var("TASKCLUSTER_ACCESS_TOKEN").ok().filter(|s| !s.is_empty()),
        ) {
            (Some(id), Some(token)) => (id, SecretString::from(token)),
            _ => {
                let c = crate::startup::read_credentials(credentials).with_context(
                    || "no credentials: set TASKCLUSTER_CLIENT_ID and TASKCLUSTER_ACCESS_TOKEN, or pass --credentials",
                )?;
                (c.client_id, SecretString::from(c.access_token))
            }
        };
        let certs = match ca_file {
            Some(ca) => {
                let pem = std::fs::read(ca)
                    .with_context(|| format!("--ca-file / ROLLER_CA_FILE: cannot read {}", ca.display()))?;
                let certs =
                    reqwest::Certificate::from_pem_bundle(&pem).ok().filter(|c| !c.is_empty()).with_context(|| {
                        format!("--ca-file / ROLLER_CA_FILE: {} holds no PEM certificate", ca.display())
                    })?;
                Some(certs)
            }
            None => None,
        };
        let build = |b: reqwest::ClientBuilder| match &certs {
            Some(c) => b.tls_certs_merge(c.clone()),
            None => b,
        };
        let http = build(reqwest::Client::builder().timeout(Duration::from_secs(30))).build()?;
        let streams = build(
            reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).read_timeout(Duration::from_secs(60)),
        )
        .build()?;
        Ok(Client { base, client_id, access_token, http, streams })
    }

    /// The roller this client talks to.
    pub fn base(&self) -> &reqwest::Url {
        &self.base
    }

    /// A signed `GET` of a server-sent event stream; the answer's body is read as it comes.
    pub async fn events(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        let url = self.base.join(path)?;
        let header = sign(&reqwest::Method::GET, &url, &self.client_id, &self.access_token)?;
        self.streams
            .get(url)
            .header(reqwest::header::AUTHORIZATION, header)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|e| self.unreachable(e))
    }

    /// Why roller did not answer, with what to do: an untrusted certificate is a
    /// configuration error (the plain error, exit 2), anything else `Unreachable`.
    pub fn unreachable(&self, e: reqwest::Error) -> anyhow::Error {
        let cause = format!("{:#}", anyhow::Error::from(e));
        let url = self.base.to_string();
        if cause.to_lowercase().contains("certificate") {
            return anyhow::anyhow!(
                "cannot reach roller at {url}: {cause}\n  Its certificate is not trusted here: for a private CA or a \
                 self-signed certificate pass --ca-file <ca.pem> or set ROLLER_CA_FILE."
            );
        }
        Unreachable { url, cause }.into()
    }

    pub async fn post(&self, path_and_query: &str) -> anyhow::Result<Answer> {
        self.send(reqwest::Method::POST, path_and_query).await
    }

    pub async fn get(&self, path_and_query: &str) -> anyhow::Result<Answer> {
        self.send(reqwest::Method::GET, path_and_query).await
    }

    async fn send(&self, method: reqwest::Method, path_and_query: &str) -> anyhow::Result<Answer> {
        let url = self.base.join(path_and_query)?;
        let header = sign(&method, &url, &self.client_id, &self.access_token)?;
        let res = self
            .http
            .request(method, url.clone())
            .header(reqwest::header::AUTHORIZATION, header)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = res.status().as_u16();
        let text = res.text().await.map_err(|e| self.unreachable(e))?;
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        Ok(Answer { status, body })
    }
}

pub use crate::drivers::hawk::sign;
