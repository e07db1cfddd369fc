//! A small API client for the `roller jobs …` subcommands: Hawk-signed requests
//! to a running roller, with credentials from the environment or a file.

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
}

/// An API answer: status and JSON body.
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
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
        let mut http = reqwest::Client::builder().timeout(Duration::from_secs(30));
        if let Some(ca) = ca_file {
            let pem = std::fs::read(ca)
                .with_context(|| format!("--ca-file / ROLLER_CA_FILE: cannot read {}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .with_context(|| format!("--ca-file / ROLLER_CA_FILE: {} holds no PEM certificate", ca.display()))?;
            http = http.tls_certs_merge(certs);
        }
        let http = http.build()?;
        Ok(Client { base, client_id, access_token, http })
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
            .with_context(|| format!("cannot reach roller at {}", self.base))?;
        let status = res.status().as_u16();
        let text = res.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        Ok(Answer { status, body })
    }
}

pub use crate::drivers::hawk::sign;
