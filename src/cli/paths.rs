//! `roller paths check|show`: the standing path checks through a running roller. The
//! checks run in the server (where the devices' credentials and the jobs' per-device
//! gates are): this asks for them (`POST …/paths/check`, 16 at a time), then reads the
//! results (`GET /api/v1/paths`) until every machine asked for has a check that started
//! after the request.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::client::{Answer, Client};
use super::output::say;
use crate::api::paths::{CheckAsked, FleetPaths, MachinePaths};
use crate::domain::WorkerId;
use crate::paths::{Outcome, PathRecord};

/// Requests in flight at once, as for a fleet of jobs.
const IN_FLIGHT: usize = 16;
/// How often the results are read while waiting.
const POLL: Duration = Duration::from_secs(1);

fn refused(what: &str, a: &Answer) -> anyhow::Error {
    anyhow::Error::new(a.refusal()).context(what.to_string())
}

/// Print one record's paths, indented under its subject.
pub fn print_record(r: &PathRecord) {
    for p in &r.paths {
        let outcome = match p.outcome {
            Outcome::Ok => "ok",
            Outcome::Failed => "FAILED",
        };
        let since =
            p.failing_since.filter(|s| *s < p.checked_at).map(|s| format!(" (failing since {s})")).unwrap_or_default();
        say!("    {:<12} {:<7} {}{since}", p.kind.as_str(), outcome, p.reason);
    }
}

fn print_machine(m: &MachinePaths) {
    let when =
        m.last.as_ref().and_then(|r| r.checked_at).map(|t| format!("checked {t}")).unwrap_or("never checked".into());
    say!("{} (class {}): {when}", m.worker_id, m.class);
    if let Some(r) = &m.last {
        print_record(r);
    }
    if let Some(why) = &m.no_path {
        say!("    NO PATH: {why}");
    }
}

/// `roller paths check`: ask for `machines` (and the shared credentials), wait up to
/// `wait` for their results, print them. Exit 0 when every path checked is ok.
pub async fn check(client: &Client, machines: Vec<WorkerId>, wait: Duration, json: bool) -> anyhow::Result<ExitCode> {
    let asked = futures_util::stream::iter(
        machines
            .iter()
            .map(|m| async move { (m.clone(), client.post(&format!("/api/v1/machines/{m}/paths/check")).await) }),
    )
    .buffer_unordered(IN_FLIGHT)
    .collect::<Vec<_>>()
    .await;
    let mut pending: BTreeMap<String, chrono::DateTime<chrono::Utc>> = BTreeMap::new();
    let mut refusals = Vec::new();
    for (m, a) in asked {
        let a = a?;
        if a.status != 202 {
            refusals.push(format!("{m}: {}", a.refusal()));
            continue;
        }
        let asked: CheckAsked = serde_json::from_value(a.body)?;
        pending.insert(m.to_string(), asked.requested.at);
    }
    let a = client.post("/api/v1/paths/check").await?;
    if a.status != 202 {
        return Err(refused("asking for the shared credentials' check", &a));
    }
    let shared_at = serde_json::from_value::<CheckAsked>(a.body)?.requested.at;

    let started = Instant::now();
    let fleet = loop {
        let a = client.get("/api/v1/paths").await?;
        if a.status != 200 {
            return Err(refused("reading the results", &a));
        }
        let fleet: FleetPaths = serde_json::from_value(a.body)?;
        let done = |last: Option<&PathRecord>, at| last.and_then(|r| r.checked_at).is_some_and(|c| c >= at);
        let machines_done = fleet
            .machines
            .iter()
            .filter(|m| pending.get(&m.worker_id).is_some_and(|at| done(m.last.as_ref(), *at)))
            .count();
        let shared_done = done(fleet.shared.as_ref(), shared_at);
        if (machines_done == pending.len() && shared_done) || started.elapsed() >= wait {
            break fleet;
        }
        tokio::time::sleep(POLL).await;
    };

    let mut bad = !refusals.is_empty();
    let mine: Vec<&MachinePaths> = fleet.machines.iter().filter(|m| pending.contains_key(&m.worker_id)).collect();
    if json {
        let shared = fleet.shared.as_ref();
        say!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "machines": mine, "shared": shared, "refused": refusals })
            )?
        );
    }
    for m in &mine {
        let at = pending[&m.worker_id];
        let fresh = m.last.as_ref().and_then(|r| r.checked_at).is_some_and(|c| c >= at);
        bad |= !fresh || m.last.as_ref().is_some_and(|r| r.paths.iter().any(|p| !p.ok())) || m.no_path.is_some();
        if json {
            continue;
        }
        if fresh {
            print_machine(m);
        } else {
            say!(
                "{}: not checked within {} s (is a `roller serve` or `roller worker` running?)",
                m.worker_id,
                wait.as_secs()
            );
        }
    }
    let shared_fresh = fleet.shared.as_ref().and_then(|r| r.checked_at).is_some_and(|c| c >= shared_at);
    bad |= !shared_fresh || fleet.shared.as_ref().is_some_and(|r| r.paths.iter().any(|p| !p.ok()));
    if !json {
        match &fleet.shared {
            Some(r) if shared_fresh && r.paths.is_empty() => say!("shared credentials: none configured"),
            Some(r) if shared_fresh => {
                say!("shared credentials:");
                print_record(r);
            }
            _ => say!("shared credentials: not checked within {} s", wait.as_secs()),
        }
        for r in &refusals {
            say!("refused: {r}");
        }
    }
    Ok(if bad { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `roller paths show`: every machine's last checks, the shared credentials', the checker.
pub async fn show(client: &Client, json: bool) -> anyhow::Result<ExitCode> {
    let a = client.get("/api/v1/paths").await?;
    if a.status != 200 {
        return Err(refused("reading the results", &a));
    }
    if json {
        say!("{}", serde_json::to_string_pretty(&a.body)?);
        return Ok(ExitCode::SUCCESS);
    }
    let f: FleetPaths = serde_json::from_value(a.body)?;
    let periodic = if f.periodic {
        format!("every machine once per {} s, at most {} a minute", f.interval_secs, f.max_per_minute)
    } else {
        "off ([paths] enabled = false): only checks asked for run".into()
    };
    say!("periodic path checks: {periodic}");
    match &f.checker {
        Some(c) => say!(
            "checker {} last looked at {}: {} checked, {} waiting for the rate",
            c.holder,
            c.at,
            c.checked,
            c.waiting_for_rate
        ),
        None => say!("no checker has looked yet"),
    }
    say!("{} of {} machines without a path", f.without_path, f.machines.len());
    for m in &f.machines {
        print_machine(m);
    }
    if let Some(r) = &f.shared {
        say!("shared credentials:");
        print_record(r);
    }
    Ok(ExitCode::SUCCESS)
}
