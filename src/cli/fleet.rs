//! `roller jobs` on fleets: pick machines (names, a file, inventory selectors),
//! ask before touching many, queue a task for each through the API with
//! bounded concurrency, follow them to the end, and summarise in a table (or
//! JSON for scripts).

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use super::client::Client;
use super::output::{Row, report, summary};
use crate::actions::Task;
use crate::domain::{WorkerGroup, WorkerId};
use crate::inventory::Inventory;

/// Requests in flight at once: enough to queue a rack quickly without
/// hammering the API (the queue runs them at its own pace anyway).
const IN_FLIGHT: usize = 16;
const POLL: Duration = Duration::from_millis(500);
/// Consecutive failed polls (about a minute and a half) after which a job is reported as unknown.
const LOST_AFTER: u32 = 20;

/// Which machines a fleet command is for.
pub struct Selection<'a> {
    pub names: &'a [String],
    pub file: Option<&'a Path>,
    /// `group=<g>` / `class=<c>`, all of which must match.
    pub select: &'a [String],
    pub inventory: Option<&'a Path>,
    /// For machines the inventory does not know.
    pub default_group: &'a str,
}

/// The machines, each with its worker group (the inventory's, else the default), in order, once each.
pub fn targets(sel: &Selection) -> anyhow::Result<Vec<(WorkerId, WorkerGroup)>> {
    let inventory = match sel.inventory {
        Some(p) => Some(Inventory::load(p)?),
        None => None,
    };
    let mut names: Vec<String> = sel.names.to_vec();
    if let Some(f) = sel.file {
        let text = if f == Path::new("-") {
            let mut s = String::new();
            for line in std::io::stdin().lock().lines() {
                s.push_str(&line?);
                s.push('\n');
            }
            s
        } else {
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?
        };
        names.extend(
            text.lines().map(|l| l.split('#').next().unwrap_or("").trim()).filter(|l| !l.is_empty()).map(String::from),
        );
    }
    if !sel.select.is_empty() {
        let inv = inventory.as_ref().context("--select needs an inventory: --inventory FILE or ROLLER_INVENTORY")?;
        let mut filters = Vec::new();
        for s in sel.select {
            match s.split_once('=') {
                Some((k @ ("group" | "class"), v)) if !v.is_empty() => filters.push((k, v)),
                _ => bail!("--select {s:?}: use group=<group> or class=<class>"),
            }
        }
        let before = names.len();
        for m in inv.machines.values() {
            let ok = filters.iter().all(|(k, v)| match *k {
                "group" => m.group.as_ref().is_some_and(|g| g.as_str() == *v),
                _ => m.class.name == *v,
            });
            if ok {
                names.push(m.id.to_string());
            }
        }
        if names.len() == before {
            bail!("--select {} matches no machine in {}", sel.select.join(" "), inv.path.display());
        }
    }
    let default_group = WorkerGroup::parse(sel.default_group)?;
    let mut out: Vec<(WorkerId, WorkerGroup)> = Vec::new();
    for n in names {
        let id = WorkerId::parse(&n).with_context(|| format!("machine {n:?}"))?;
        if out.iter().any(|(seen, _)| *seen == id) {
            continue;
        }
        let group = inventory
            .as_ref()
            .and_then(|inv| inv.machine(&id))
            .and_then(|m| m.group.clone())
            .unwrap_or_else(|| default_group.clone());
        out.push((id, group));
    }
    if out.is_empty() {
        bail!("no machines: name them, or use --file or --select");
    }
    Ok(out)
}

/// Machines the confirmation names one by one; the rest are counted.
const NAMED: usize = 20;

/// Ask before a request that touches more than `limit` machines, naming them (the
/// first 20, then how many more). `--yes` answers for scripts; without a terminal to
/// ask on, the answer is no.
pub fn confirm(task: Task, targets: &[(WorkerId, WorkerGroup)], limit: usize, yes: bool) -> anyhow::Result<()> {
    let n = targets.len();
    if n <= limit || yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("{task} on {n} machines is more than {limit} (safety.confirm_above); pass --yes to go ahead");
    }
    eprintln!("roller: {task} on {n} machines:");
    for line in machine_lines(targets) {
        eprintln!("  {line}");
    }
    eprint!("roller: Type \"yes\" to go ahead: ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if answer.trim() != "yes" {
        bail!("not confirmed; nothing was queued");
    }
    Ok(())
}

/// The machines a confirmation names, a few per line: the first [`NAMED`], then "and N more".
fn machine_lines(targets: &[(WorkerId, WorkerGroup)]) -> Vec<String> {
    let names: Vec<String> = targets.iter().take(NAMED).map(|(w, _)| w.to_string()).collect();
    let mut lines: Vec<String> = names.chunks(10).map(|c| c.join(", ")).collect();
    if targets.len() > NAMED {
        lines.push(format!("and {} more", targets.len() - NAMED));
    }
    lines
}

/// Queue `task` on every target, optionally wait for every job, print the
/// summary. Exit status 0 only when every request was accepted (and, waiting,
/// every job succeeded).
pub async fn enqueue(
    client: Arc<Client>,
    task: Task,
    targets: Vec<(WorkerId, WorkerGroup)>,
    wait: bool,
    json_out: bool,
) -> anyhow::Result<bool> {
    let total = targets.len();
    let progress = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    // Following is bounded too: at most this many jobs are polled at once.
    let followers = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let show = std::io::stderr().is_terminal() && !json_out;
    let mut set = tokio::task::JoinSet::new();
    for (i, (worker, group)) in targets.into_iter().enumerate() {
        let (client, slots, followers, progress) = (client.clone(), slots.clone(), followers.clone(), progress.clone());
        set.spawn(async move {
            let row = {
                let _slot = slots.acquire().await;
                queue_one(&client, task, &worker, &group).await
            };
            progress.0.fetch_add(1, Ordering::Relaxed);
            let row = if wait && row.task_id.is_some() {
                let _turn = followers.acquire().await;
                follow_to_end(&client, row).await
            } else {
                row
            };
            progress.1.fetch_add(1, Ordering::Relaxed);
            (i, row)
        });
    }
    let line = |progress: &(AtomicUsize, AtomicUsize)| {
        let (queued, done) = (progress.0.load(Ordering::Relaxed), progress.1.load(Ordering::Relaxed));
        let finished = if wait { format!(", {done}/{total} finished") } else { String::new() };
        format!("\rroller: {queued}/{total} queued{finished}")
    };
    let mut rows: Vec<(usize, Row)> = Vec::with_capacity(total);
    loop {
        tokio::select! {
            next = set.join_next() => match next {
                Some(r) => rows.push(r.context("a request task failed")?),
                None => break,
            },
            _ = tokio::time::sleep(Duration::from_millis(200)), if show => eprint!("{}", line(progress.as_ref())),
        }
    }
    if show {
        // The counts as they ended (every job counted), not as the last tick saw them.
        eprintln!("{}", line(progress.as_ref()));
    }
    rows.sort_by_key(|(i, _)| *i);
    let rows: Vec<Row> = rows.into_iter().map(|(_, r)| r).collect();
    report(task, &rows, json_out)?;
    Ok(rows.iter().all(|r| (200..300).contains(&r.http) && (!wait || r.state == "succeeded")))
}

async fn queue_one(client: &Client, task: Task, worker: &WorkerId, group: &WorkerGroup) -> Row {
    let path = format!("/api/v1/workers/{worker}/group/{group}/jobs?task_name={}", task.name());
    let mut row = Row {
        worker: worker.to_string(),
        group: group.to_string(),
        http: 0,
        task_id: None,
        state: "not queued".into(),
        detail: String::new(),
        job: Value::Null,
    };
    match client.post(&path).await {
        Ok(a) => {
            row.http = a.status;
            row.task_id = a.body["task_id"].as_str().map(String::from);
            row.state = a.body["state"].as_str().unwrap_or("refused").to_string();
            row.detail = a.body["detail"].as_str().unwrap_or("").to_string();
            if a.status == 200 {
                row.detail = "already queued or running: following that job".into();
            }
            row.job = a.body;
        }
        Err(e) => row.detail = format!("{e:#}"),
    }
    row
}

async fn follow_to_end(client: &Client, mut row: Row) -> Row {
    let id = row.task_id.clone().unwrap_or_default();
    let mut errors = 0u32;
    loop {
        match client.get(&format!("/api/v1/jobs/{id}")).await {
            Ok(a) if a.status == 200 => {
                let state = a.body["state"].as_str().unwrap_or("").to_string();
                if !matches!(state.as_str(), "queued" | "running") {
                    row.detail = summary(&a.body);
                    row.state = state;
                    row.job = a.body;
                    return row;
                }
            }
            Ok(a) => {
                row.state = "unknown".into();
                row.detail = format!("HTTP {} reading the job", a.status);
                return row;
            }
            // A blip: try again, more slowly; the job goes on regardless. A roller
            // that stays away for long is reported, not waited for forever.
            Err(e) => {
                errors += 1;
                if errors >= LOST_AFTER {
                    row.state = "unknown".into();
                    row.detail = format!("lost contact with roller: {e:#}");
                    return row;
                }
                tokio::time::sleep((POLL * errors).min(Duration::from_secs(5))).await;
                continue;
            }
        }
        errors = 0;
        tokio::time::sleep(POLL).await;
    }
}
