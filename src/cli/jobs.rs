//! `roller jobs …`: talk to a running roller through the Hawk-signing client:
//! enqueue (one machine here, many through the fleet), get, list, follow (live,
//! through `watch`), every job in words through `summary`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use super::client::Client;
use super::fleet;
use super::output::{ago, clock, refused, say, when};
use super::record::JobRecord;
use super::summary::{OUTCOME, TABLE, summarise};
use super::watch::{self, Shown};
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

/// `roller jobs enqueue`: one machine prints its job (with `wait`, live: its id and
/// state at once, its log as it is written, then the outcome); several (or `--json`)
/// go through the fleet: confirmation, bounded enqueue, the summary.
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
        fleet::confirm(task, &targets, confirm_above, yes)?;
        let ok = fleet::enqueue(Arc::new(client), task, targets, wait, json).await?;
        return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    let (worker, group) = &targets[0];
    let q = format!("/api/v1/workers/{worker}/group/{group}/jobs?task_name={}", task.name());
    let answer = client.post(&q).await?;
    if !answer.ok() {
        return Ok(refused(&answer));
    }
    if !wait {
        say!("{}", serde_json::to_string_pretty(&answer.body)?);
        return Ok(ExitCode::SUCCESS);
    }
    let id = answer.body["task_id"].as_str().context("roller's answer has no task_id")?.to_string();
    let state = answer.body["state"].as_str().unwrap_or("queued").to_string();
    let again = if answer.body["coalesced"] == true { " (already asked for: following that job)" } else { "" };
    say!("task {id}: {task} on {worker} (group {group}), {state}{again}");
    let job = watch::follow(&client, &id, Shown { state, lines: 0 }, true).await?;
    Ok(outcome(&job))
}

/// The last line of a followed job: its state and why (the step that worked and its
/// proof, or the error); the exit status for it.
fn outcome(job: &JobRecord) -> ExitCode {
    say!("{}: {}", job.state, summarise(job, OUTCOME));
    if job.succeeded() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

/// `roller jobs get`: one job as a readable block (`--json`: the API's record as is);
/// with `wait`, followed live to its end.
pub async fn get(client: &Client, id: &JobId, wait: bool, json: bool) -> anyhow::Result<ExitCode> {
    let answer = client.get(&format!("/api/v1/jobs/{id}")).await?;
    if !answer.ok() {
        if json {
            say!("{}", serde_json::to_string_pretty(&answer.body)?);
        }
        return Ok(refused(&answer));
    }
    let job = JobRecord::from_value(&answer.body);
    if json {
        if !wait || !job.is_live() {
            say!("{}", serde_json::to_string_pretty(&answer.body)?);
            return Ok(if !wait || job.succeeded() { ExitCode::SUCCESS } else { ExitCode::from(1) });
        }
        watch::follow(client, &id.to_string(), Shown::default(), false).await?;
        let last = client.get(&format!("/api/v1/jobs/{id}")).await?;
        say!("{}", serde_json::to_string_pretty(&last.body)?);
        return Ok(if last.ok() && JobRecord::from_value(&last.body).succeeded() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    print_block(&job);
    if !wait {
        return Ok(ExitCode::SUCCESS);
    }
    if !job.is_live() {
        return Ok(if job.succeeded() { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    let shown = Shown { state: job.state.clone(), lines: job.log.len() };
    let job = watch::follow(client, &id.to_string(), shown, true).await?;
    Ok(outcome(&job))
}

/// One job for a person: what, where, its state, when (relative and absolute), who
/// asked, the result in words, the error, the log.
fn print_block(j: &JobRecord) {
    say!("job       {}", j.task_id);
    say!("task      {}", j.task_name);
    say!("machine   {} (group {})", j.worker_id, j.worker_group);
    let attempts =
        if j.attempts > 0 { format!(" (attempt {} of {})", j.attempts, j.max_attempts) } else { String::new() };
    say!("state     {}{attempts}", j.state);
    let mut asked = format!("{} by {}", when(&j.created_at), j.requester);
    if let Some(o) = j.origin.as_deref().filter(|o| !o.is_empty()) {
        asked.push_str(&format!(" from {o}"));
    }
    say!("asked     {asked}");
    if let Some(r) = &j.reason {
        say!("reason    {r}");
    }
    if let Some(t) = &j.started_at {
        let on = j.runner.as_deref().map(|r| format!(" on {r}")).unwrap_or_default();
        say!("started   {}{on}", when(t));
    }
    if let Some(t) = &j.finished_at {
        let took = match (j.started_at.as_deref().map(parse), parse(t)) {
            (Some(Some(a)), Some(b)) => format!(", after {}", ago((b - a).num_seconds().max(0))),
            _ => String::new(),
        };
        say!("finished  {}{took}", when(t));
    }
    if let Some(r) = &j.result {
        let words = summarise(&JobRecord { error: None, result: Some(r.clone()), ..Default::default() }, OUTCOME);
        say!("result    {words}");
    }
    if let Some(e) = &j.error {
        let mut lines = e.lines();
        say!("error     {}", lines.next().unwrap_or(""));
        for l in lines {
            say!("          {l}");
        }
    }
    if j.log.is_empty() {
        say!("log       (empty)");
    } else {
        say!("log");
        for l in &j.log {
            say!("  {}  {}", clock(&l.at), l.line);
        }
    }
    if j.is_live() {
        say!("(still {}: `roller jobs follow {}` shows the rest as it happens)", j.state, j.task_id);
    }
}

fn parse(t: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&chrono::Utc))
}

/// `roller jobs list`: a machine's most recent jobs, optionally of one state.
pub async fn list(client: &Client, worker: &WorkerId, state: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    if let Some(s) = state
        && crate::queue::JobState::parse(s).is_none()
    {
        anyhow::bail!("unknown state {s:?}: queued, running, succeeded, failed, timed_out or cancelled");
    }
    let a = client.get(&format!("/api/v1/workers/{worker}/jobs")).await?;
    if !a.ok() {
        return Ok(refused(&a));
    }
    let jobs: Vec<&serde_json::Value> = a.body["jobs"]
        .as_array()
        .map(|v| v.iter().filter(|j| state.is_none_or(|s| j["state"] == s)).collect())
        .unwrap_or_default();
    if json {
        say!("{}", serde_json::to_string_pretty(&jobs)?);
    } else {
        say!("{:24}  {:18}  {:10}  {:36}  DETAIL", "CREATED", "TASK", "STATE", "TASK_ID");
        for j in jobs.iter().map(|j| JobRecord::from_value(j)) {
            say!("{:24}  {:18}  {:10}  {:36}  {}", j.created_at, j.task_name, j.state, j.task_id, summarise(&j, TABLE));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `roller jobs follow`: the job's state and log as they change, live, then the outcome.
pub async fn follow(client: &Client, id: &JobId) -> anyhow::Result<ExitCode> {
    let job = watch::follow(client, &id.to_string(), Shown::default(), true).await?;
    Ok(outcome(&job))
}
