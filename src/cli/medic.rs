//! `roller health` and `roller medic plan|hold|release|allow`: the fleet's health and
//! the medic through a running roller (`/api/v1/health`, `/api/v1/medic/…`).

use std::process::ExitCode;

use super::client::{Answer, Client};
use super::output::{ago, say};
use crate::api::health::FleetHealth;
use crate::domain::WorkerId;
use crate::medic::{Cycle, Verdict};

/// `path?k=v&…` with each value percent-encoded.
fn with_query(path: &str, pairs: &[(&str, String)]) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse("http://roller.invalid/")?;
    url.set_path(path);
    for (k, v) in pairs {
        url.query_pairs_mut().append_pair(k, v);
    }
    Ok(format!("{}?{}", url.path(), url.query().unwrap_or_default()))
}

/// A refusal in the API's words (`output::refused`).
fn refused(a: &Answer) -> anyhow::Result<ExitCode> {
    Ok(super::output::refused(a))
}

pub async fn health(client: &Client, json: bool) -> anyhow::Result<ExitCode> {
    let a = client.get("/api/v1/health").await?;
    if a.status != 200 {
        return refused(&a);
    }
    if json {
        say!("{}", serde_json::to_string_pretty(&a.body)?);
        return Ok(ExitCode::SUCCESS);
    }
    let h: FleetHealth = serde_json::from_value(a.body)?;
    if !h.sweeping {
        say!("the health sweep is off here: set [health] enabled = true (or ROLLER_HEALTH=1) to observe the fleet");
    }
    say!("{} machines at {}", h.machines, h.at);
    for g in &h.groups {
        let counts: Vec<String> = g.counts.iter().map(|(s, n)| format!("{s} {n}")).collect();
        say!("  {:<5} {:<40} {}", g.by, g.name, counts.join(", "));
    }
    if h.trouble.is_empty() {
        say!("no machine needs attention");
    }
    for m in &h.trouble {
        let probed = m.ages.probe_secs.map(|s| format!("probed {} ago", ago(s))).unwrap_or("never probed".into());
        say!("{:<12} {:<32} {} ({probed})", m.state.as_str(), m.worker_id, m.reason);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn plan(client: &Client, json: bool) -> anyhow::Result<ExitCode> {
    let a = client.post("/api/v1/medic/plan").await?;
    if a.status != 200 {
        return refused(&a);
    }
    if json {
        say!("{}", serde_json::to_string_pretty(&a.body)?);
        return Ok(ExitCode::SUCCESS);
    }
    let c: Cycle = serde_json::from_value(a.body)?;
    say!("{} machines, {} hung; nothing is acted on by a plan", c.machines, c.candidates);
    for g in c.gates.iter().filter(|g| !g.passed) {
        say!("  BLOCKED {:<13} {:<40} {}", g.gate.as_str(), g.scope, g.detail);
    }
    for a in &c.alerts {
        say!("  ALERT   {a}");
    }
    for d in &c.decisions {
        let what = match d.verdict {
            Verdict::WouldEnqueue | Verdict::Enqueued => format!("would queue {}", d.task_name),
            Verdict::Skipped => format!("leave alone ({})", d.gate.map(|g| g.as_str()).unwrap_or("error")),
        };
        say!("{:<32} {what}: {}", d.worker_id, d.detail);
        say!("{:<32}   hung: {}", "", d.reason);
    }
    if c.decisions.is_empty() {
        say!("no hung machine: the medic would do nothing now");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn hold(client: &Client, worker: &WorkerId, reason: &str, hours: Option<u32>) -> anyhow::Result<ExitCode> {
    let mut q = vec![("reason", reason.to_string())];
    if let Some(h) = hours {
        q.push(("hours", h.to_string()));
    }
    let a = client.post(&with_query(&format!("/api/v1/machines/{worker}/hold"), &q)?).await?;
    if a.status != 200 {
        return refused(&a);
    }
    let until = a.body["hold"]["until"].as_str().map(|u| format!(" until {u}")).unwrap_or(" until released".into());
    say!("{worker}: held{until}; the medic leaves it alone");
    Ok(ExitCode::SUCCESS)
}

pub async fn release(client: &Client, worker: &WorkerId, reason: &str) -> anyhow::Result<ExitCode> {
    let path = with_query(&format!("/api/v1/machines/{worker}/release"), &[("reason", reason.to_string())])?;
    let a = client.post(&path).await?;
    if a.status != 200 {
        return refused(&a);
    }
    say!("{worker}: released; the medic may act on it again");
    Ok(ExitCode::SUCCESS)
}

pub async fn allow(client: &Client, batch: usize, reason: &str) -> anyhow::Result<ExitCode> {
    let path = with_query("/api/v1/medic/allow", &[("batch", batch.to_string()), ("reason", reason.to_string())])?;
    let a = client.post(&path).await?;
    if a.status != 200 {
        return refused(&a);
    }
    say!(
        "the next cycle the blast-radius gate would block may act on at most {batch} machines, once (until {})",
        a.body["until"].as_str().unwrap_or("?")
    );
    Ok(ExitCode::SUCCESS)
}
