//! What the commands print with: `say!` (stdout that ignores a closed pipe), one
//! line about a job, and the per-machine summary (a table, or JSON for scripts)
//! that `roller run` and `roller jobs enqueue` end with. Imports nothing of the cli.

use serde_json::{Value, json};

use crate::actions::Task;

/// `println!` that ignores a closed stdout (`roller check-config | head`) instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
pub(crate) use say;

/// One line to stdout, ignoring a closed pipe (for modules that print tables).
pub fn print(line: &str) {
    say!("{line}");
}

/// One machine's line in the summary.
#[derive(Debug, Clone)]
pub struct Row {
    pub worker: String,
    pub group: String,
    /// The API's answer to the enqueue (200 for `roller run`, which has no API).
    pub http: u16,
    pub task_id: Option<String>,
    pub state: String,
    pub detail: String,
    pub job: Value,
}

/// The summary: a table for people, or JSON for scripts.
pub fn report(task: Task, rows: &[Row], json_out: bool) -> anyhow::Result<()> {
    if json_out {
        let out: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({ "worker_id": r.worker, "worker_group": r.group, "http_status": r.http,
                        "task_id": r.task_id, "state": r.state, "detail": r.detail, "job": r.job })
            })
            .collect();
        print(&serde_json::to_string_pretty(&out)?);
    } else {
        print_table(task, rows);
    }
    Ok(())
}

/// One line about a finished job: the reboot step that worked, else the result or error.
pub fn summary(job: &Value) -> String {
    if let Some(step) = job["result"]["worked"].as_str() {
        return format!("{step} worked");
    }
    let text = match (&job["error"], &job["result"]) {
        (Value::String(e), _) => e.clone(),
        (_, Value::Null) => String::new(),
        (_, r) => r.to_string(),
    };
    let line: String = text.lines().next().unwrap_or("").chars().take(100).collect();
    line
}

fn print_table(task: Task, rows: &[Row]) {
    let w = rows.iter().map(|r| r.worker.len()).max().unwrap_or(6).max(7);
    print(&format!("{:w$}  {:10}  {:36}  DETAIL", "MACHINE", "STATE", "TASK_ID"));
    for r in rows {
        let state = if (200..300).contains(&r.http) { r.state.clone() } else { format!("HTTP {}", r.http) };
        print(&format!("{:w$}  {:10}  {:36}  {}", r.worker, state, r.task_id.as_deref().unwrap_or("-"), r.detail));
    }
    let mut counts: Vec<(String, usize)> = Vec::new();
    for r in rows {
        let k = if (200..300).contains(&r.http) { r.state.clone() } else { "refused".into() };
        match counts.iter_mut().find(|(s, _)| *s == k) {
            Some((_, n)) => *n += 1,
            None => counts.push((k, 1)),
        }
    }
    let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    print(&format!("{task} on {} machines: {}", rows.len(), parts.join(", ")));
}
