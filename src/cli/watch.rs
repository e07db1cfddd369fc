//! One job followed live through its event stream (`GET /api/v1/jobs/{id}/events`, the
//! one the dashboard uses): state changes and log lines as they happen, until the job
//! ends. Used by `jobs follow`, `jobs enqueue --wait` on one machine and `jobs get
//! --wait`. roller ends a stream after 10 minutes and on shutdown; the watch then signs
//! again and reconnects, printing only what it has not shown.

use std::time::Duration;

use super::client::{Answer, Client, Unreachable};
use super::output::{clock, say};
use super::record::{JobRecord, LogLine};

/// Consecutive reconnects without an event (with a growing pause, about a minute and a
/// half in all) after which the watch gives up and says roller is gone.
const LOST_AFTER: u32 = 20;
const PAUSE: Duration = Duration::from_millis(500);

/// What has been printed already: the state last said and the log lines shown.
#[derive(Debug, Clone, Default)]
pub struct Shown {
    pub state: String,
    pub lines: usize,
}

/// Follow job `id` until it ends and return its last record (state `expired` when it
/// went away while watched). With `print`, each state change and log line goes to stdout
/// as it comes.
pub async fn follow(client: &Client, id: &str, mut shown: Shown, print: bool) -> anyhow::Result<JobRecord> {
    let path = format!("/api/v1/jobs/{id}/events");
    let mut job = JobRecord::default();
    let mut quiet_tries = 0u32;
    // A roller that never answered is said at once; one that goes away mid-watch (a
    // restart) gets time to come back.
    let mut connected = false;
    loop {
        let res = match client.events(&path).await {
            Ok(r) => r,
            Err(e) if connected && e.is::<Unreachable>() && quiet_tries < LOST_AFTER => {
                quiet_tries += 1;
                tokio::time::sleep((PAUSE * quiet_tries).min(Duration::from_secs(5))).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        if !res.status().is_success() {
            let status = res.status().as_u16();
            let text = res.text().await.unwrap_or_default();
            let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
            return Err(Answer { status, body }.refusal().into());
        }
        connected = true;
        let mut res = res;
        let mut parser = Sse::default();
        // Until the stream closes (its 10 minutes are up, roller stops) or breaks.
        while let Ok(Some(bytes)) = res.chunk().await {
            for (event, data) in parser.push(&bytes) {
                quiet_tries = 0;
                match event.as_str() {
                    "job" => {
                        job = serde_json::from_str(&data).unwrap_or_default();
                        if print {
                            print_new(&job, &mut shown);
                        }
                        shown.lines = job.log.len();
                    }
                    "log" => {
                        let line: LogLine = serde_json::from_str(&data).unwrap_or_default();
                        if print {
                            say!("  {}  {}", clock(&line.at), line.line);
                        }
                        job.log.push(line);
                        shown.lines = job.log.len();
                    }
                    "end" => {
                        if data == "expired" {
                            job.state = "expired".into();
                        }
                        return Ok(job);
                    }
                    // "error": roller could not read its queue; try again like a broken stream.
                    _ => {}
                }
            }
        }
        quiet_tries += 1;
        if quiet_tries >= LOST_AFTER {
            return Err(Unreachable {
                url: client.base().to_string(),
                cause: format!("lost contact while following job {id}; `roller jobs follow {id}` picks it up again"),
            }
            .into());
        }
        tokio::time::sleep((PAUSE * quiet_tries).min(Duration::from_secs(5))).await;
    }
}

/// Print what a whole-job event adds to what was shown: a new state, new log lines.
fn print_new(job: &JobRecord, shown: &mut Shown) {
    if job.state != shown.state {
        let mut line = format!("state: {}", job.state);
        if job.state == "running" {
            line.push_str(&format!(" (attempt {} of {}", job.attempts, job.max_attempts));
            if let Some(r) = &job.runner {
                line.push_str(&format!(", runner {r}"));
            }
            line.push(')');
        }
        say!("{line}");
        shown.state = job.state.clone();
    }
    for l in job.log.iter().skip(shown.lines) {
        say!("  {}  {}", clock(&l.at), l.line);
    }
}

/// Server-sent events out of the body's chunks: (event name, data) per complete event.
#[derive(Default)]
struct Sse {
    buf: Vec<u8>,
    event: String,
    data: Vec<String>,
}

impl Sse {
    fn push(&mut self, chunk: &[u8]) -> Vec<(String, String)> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = self.buf.drain(..=end).collect();
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() || !self.event.is_empty() {
                    let event = std::mem::take(&mut self.event);
                    let event = if event.is_empty() { "message".to_string() } else { event };
                    out.push((event, std::mem::take(&mut self.data).join("\n")));
                }
                continue;
            }
            // A comment: roller's keep-alive.
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.event = value.to_string(),
                "data" => self.data.push(value.to_string()),
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_parsed_across_chunk_boundaries() {
        let mut p = Sse::default();
        let stream = "event: job\ndata: {\"state\":\"queued\"}\n\n:\n\nevent: log\r\ndata: {\"line\":\"pinging é\"}\n\nevent: end\ndata: succeeded\n\n";
        let mut got = Vec::new();
        // One byte at a time: a chunk may end anywhere, even inside a character.
        for b in stream.as_bytes() {
            got.extend(p.push(std::slice::from_ref(b)));
        }
        assert_eq!(
            got,
            vec![
                ("job".to_string(), "{\"state\":\"queued\"}".to_string()),
                ("log".to_string(), "{\"line\":\"pinging é\"}".to_string()),
                ("end".to_string(), "succeeded".to_string()),
            ]
        );
    }

    #[test]
    fn data_lines_join_and_a_nameless_event_is_a_message() {
        let mut p = Sse::default();
        assert_eq!(p.push(b"data: a\ndata: b\n\n"), vec![("message".to_string(), "a\nb".to_string())]);
    }
}
