//! `roller jobs …`: talk to a running roller through the Hawk-signing client:
//! enqueue (one machine here, many through the fleet), get, list, follow.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::client::{Answer, Client};
use super::fleet;
use super::output::{say, summary};
use crate::actions::Task;
use crate::config::Settings;
use crate::domain::{JobId, WorkerGroup, WorkerId};

/// The roller `roller jobs` talks to unless told: this configuration's bind address.
pub fn default_url(s: &Settings) -> String {
    let ip = if s.bind.ip().is_unspecified() { "127.0.0.1".to_string() } else { s.bind.ip().to_string() };
    let ip = if ip.contains(':') { format!("[{ip}]") } else { ip };
    let scheme = if s.tls.is_some() { "https" } else { "http" };
    format!("{scheme}://{ip}:{}", s.bind.port())
}

/// `roller jobs enqueue`: one machine prints its job; several (or `--json`) go
/// through the fleet: confirmation, bounded enqueue, the summary.
pub async fn enqueue(
    client: Client,
    task: Task,
    targets: Vec<(WorkerId, WorkerGroup)>,
    confirm_above: usize,
    yes: bool,
    wait: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if targets.len() > 1 || json {
        fleet::confirm(task, targets.len(), confirm_above, yes)?;
        let ok = fleet::enqueue(Arc::new(client), task, targets, wait, json).await?;
        return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    let (worker, group) = &targets[0];
    let q = format!("/api/v1/workers/{worker}/group/{group}/jobs?task_name={}", task.name());
    let answer = client.post(&q).await?;
    show(&client, answer, wait).await
}

/// `roller jobs get`: one job with its log.
pub async fn get(client: &Client, id: &JobId, wait: bool) -> anyhow::Result<ExitCode> {
    let answer = client.get(&format!("/api/v1/jobs/{id}")).await?;
    show(client, answer, wait).await
}

/// Print the API's answer about one job; with `wait`, poll it until it ends and
/// print it then. Exits non-zero on an error answer or a job that did not succeed.
async fn show(client: &Client, answer: Answer, wait: bool) -> anyhow::Result<ExitCode> {
    if !(200..300).contains(&answer.status) {
        eprintln!("roller: HTTP {}", answer.status);
        say!("{}", serde_json::to_string_pretty(&answer.body)?);
        return Ok(ExitCode::from(1));
    }
    if !wait {
        say!("{}", serde_json::to_string_pretty(&answer.body)?);
        return Ok(ExitCode::SUCCESS);
    }
    let id = answer.body["task_id"].as_str().context("answer has no task_id")?.to_string();
    loop {
        let job = client.get(&format!("/api/v1/jobs/{id}")).await?;
        let state = job.body["state"].as_str().unwrap_or("").to_string();
        if job.status != 200 || !matches!(state.as_str(), "queued" | "running") {
            say!("{}", serde_json::to_string_pretty(&job.body)?);
            return Ok(if state == "succeeded" { ExitCode::SUCCESS } else { ExitCode::from(1) });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `roller jobs list`: a machine's most recent jobs, optionally of one state.
pub async fn list(client: &Client, worker: &WorkerId, state: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let a = client.get(&format!("/api/v1/workers/{worker}/jobs")).await?;
    if !(200..300).contains(&a.status) {
        eprintln!("roller: HTTP {}", a.status);
        say!("{}", serde_json::to_string_pretty(&a.body)?);
        return Ok(ExitCode::from(1));
    }
    if let Some(s) = state
        && crate::queue::JobState::parse(s).is_none()
    {
        anyhow::bail!("unknown state {s:?}: queued, running, succeeded, failed, timed_out or cancelled");
    }
    let jobs: Vec<&serde_json::Value> = a.body["jobs"]
        .as_array()
        .map(|v| v.iter().filter(|j| state.is_none_or(|s| j["state"] == s)).collect())
        .unwrap_or_default();
    if json {
        say!("{}", serde_json::to_string_pretty(&jobs)?);
    } else {
        say!("{:24}  {:18}  {:10}  {:36}  DETAIL", "CREATED", "TASK", "STATE", "TASK_ID");
        for j in &jobs {
            say!(
                "{:24}  {:18}  {:10}  {:36}  {}",
                j["created_at"].as_str().unwrap_or(""),
                j["task_name"].as_str().unwrap_or(""),
                j["state"].as_str().unwrap_or(""),
                j["task_id"].as_str().unwrap_or(""),
                summary(j)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `roller jobs follow`: new log lines as they arrive, then the outcome.
pub async fn follow(client: &Client, id: &str) -> anyhow::Result<ExitCode> {
    let mut shown = 0;
    loop {
        let a = client.get(&format!("/api/v1/jobs/{id}")).await?;
        if a.status != 200 {
            eprintln!("roller: HTTP {}", a.status);
            say!("{}", serde_json::to_string_pretty(&a.body)?);
            return Ok(ExitCode::from(1));
        }
        let lines = a.body["log"].as_array().cloned().unwrap_or_default();
        for l in lines.iter().skip(shown) {
            say!("{}  {}", l["at"].as_str().unwrap_or(""), l["line"].as_str().unwrap_or(""));
        }
        shown = shown.max(lines.len());
        let state = a.body["state"].as_str().unwrap_or("").to_string();
        if !matches!(state.as_str(), "queued" | "running") {
            say!("{state}: {}", summary(&a.body));
            return Ok(if state == "succeeded" { ExitCode::SUCCESS } else { ExitCode::from(1) });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
