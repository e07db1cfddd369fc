//! `roller breaker status|reset`: a machine's reboot-loop breaker through a running
//! roller (`GET`/`POST /api/v1/workers/{worker_id}/breaker…`).

use std::process::ExitCode;

use super::client::{Answer, Client};
use super::output::say;
use crate::domain::WorkerId;

pub async fn status(client: &Client, worker: &WorkerId) -> anyhow::Result<ExitCode> {
    let a = client.get(&format!("/api/v1/workers/{worker}/breaker")).await?;
    show(a)
}

pub async fn reset(client: &Client, worker: &WorkerId, reason: &str) -> anyhow::Result<ExitCode> {
    // The reason travels in the query string, percent-encoded like any value.
    let mut url = reqwest::Url::parse("http://roller.invalid/")?;
    url.set_path(&format!("/api/v1/workers/{worker}/breaker/reset"));
    url.query_pairs_mut().append_pair("reason", reason);
    let a = client.post(&format!("{}?{}", url.path(), url.query().unwrap_or_default())).await?;
    show(a)
}

/// The breaker as a person reads it; the API's refusal as it was given.
fn show(a: Answer) -> anyhow::Result<ExitCode> {
    if a.status != 200 {
        return Ok(super::output::refused(&a));
    }
    let b = &a.body;
    let worker = b["worker_id"].as_str().unwrap_or("?");
    let max = b["max_restarts"].as_u64().unwrap_or(0);
    let restarts = b["restarts"].as_array().cloned().unwrap_or_default();
    if max == 0 {
        say!("{worker}: the reboot-loop breaker is off (safety.max_restarts = 0)");
    } else if b["open"] == true {
        say!(
            "{worker}: restarts REFUSED until {} ({} of at most {max} in {} h)",
            b["open_until"].as_str().unwrap_or("?"),
            restarts.len(),
            b["window_hours"]
        );
        say!("  once a person has looked at it: roller breaker reset {worker} --reason \"…\"");
    } else {
        say!("{worker}: restarts allowed ({} of at most {max} in {} h)", restarts.len(), b["window_hours"]);
    }
    for r in &restarts {
        say!(
            "  restart  {}  {:<18} job {}",
            r["at"].as_str().unwrap_or(""),
            r["task_name"].as_str().unwrap_or(""),
            r["task_id"].as_str().unwrap_or("")
        );
    }
    for r in b["resets"].as_array().into_iter().flatten() {
        say!(
            "  reset    {}  by {}: {}",
            r["at"].as_str().unwrap_or(""),
            r["by"].as_str().unwrap_or(""),
            r["reason"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}
