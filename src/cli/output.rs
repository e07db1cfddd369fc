//! What the commands print with: `say!` (stdout that ignores a closed pipe), one
//! line about a job (through `summary`), an API refusal, times as people say them,
//! and the per-machine summary (a table, or JSON for scripts) that `roller run` and
//! `roller jobs enqueue` end with.

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

/// One line about a finished job for a table row (`summary::summarise`).
pub fn summary(job: &Value) -> String {
    super::summary::summarise_value(job, super::summary::TABLE)
}

/// The API's refusal on stderr, in its own words (`detail` names the fix), with the
/// status and `error_code`; the exit status for it.
pub fn refused(a: &super::client::Answer) -> std::process::ExitCode {
    eprintln!("roller: {}", a.refusal());
    std::process::ExitCode::from(1)
}

/// Seconds as people say them: "40 s", "12 min", "3 h", "2 d".
pub fn ago(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

/// An RFC 3339 time as "12 min ago (2026-05-01T03:12:09Z)"; as given when it does not parse.
pub fn when(at: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(at) {
        Ok(t) => {
            let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds();
            let rel = if secs >= 0 { format!("{} ago", ago(secs)) } else { format!("in {}", ago(-secs)) };
            format!("{rel} ({at})")
        }
        Err(_) => at.to_string(),
    }
}

/// The time of day of an RFC 3339 time (a log line's), "03:12:09Z"; as given when it does not parse.
pub fn clock(at: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(at) {
        Ok(t) => t.with_timezone(&chrono::Utc).format("%H:%M:%SZ").to_string(),
        Err(_) => at.to_string(),
    }
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
