//! A console tail over IPMI Serial-over-LAN, taken without a terminal.
//!
//! What ipmitool 1.8.19 does (its `lib/ipmi_sol.c`, and observed against `ipmi_sim`):
//!
//! * `sol activate` needs a stdin that stays open: at EOF it prints its banner and
//!   quits. So the child gets a pipe that roller holds until it is done. On a pipe
//!   ipmitool complains `tcgetattr: Inappropriate ioctl for device` on stderr and
//!   carries on; stdout is `[SOL Session operational.  Use ~? for help]`, then the
//!   console's bytes as they come (CRLF). Only live output: a BMC keeps no backlog
//!   for instance 1.
//! * The clean way out is `\r~.` on stdin (the escape counts only after a newline):
//!   ipmitool prints `~. [terminated ipmitool]`, deactivates the payload and exits 0.
//! * A killed ipmitool leaves the payload active on the BMC, and the next activation
//!   fails with `SOL payload already active on another session`. So the payload is
//!   deactivated *first* (a person's console session, or a capture killed earlier,
//!   ends there; the machine is about to be reset anyway), and when the clean exit
//!   does not happen in time the child is killed and `sol deactivate` sent again.
//!   A capture dropped mid-way (the job's hard limit) deactivates from a spawned task.
//! * `sol deactivate` with nothing active answers `Info: SOL payload already
//!   de-activated`, exit 1: that is success (bmclib reads it the same way). A BMC
//!   without SOL answers `Invalid command` (or "not supported").
//!
//! The console text is cleaned for a job record and a bug (CRLF to LF, escape
//! sequences and control bytes dropped) and scrubbed of the BMC password.

use std::collections::VecDeque;
use std::process::Stdio;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{IpmiError, IpmiTarget, build_args, find_ipmitool, gate_key, ipmitool, not_started, run};

const BANNER: &str = "[SOL Session operational";
const TERMINATED: &str = "~. [terminated ipmitool]";
/// How long ipmitool gets to leave after `~.` before it is killed.
const EXIT_WAIT: Duration = Duration::from_secs(1);
/// The bound on the `sol deactivate` sent after a kill.
const CLEANUP_DEACTIVATE: Duration = Duration::from_secs(2);
/// The most a capture takes after its window: the wait for a clean exit, then a
/// kill and a deactivation. Callers end the window this much before their deadline.
pub const CLEANUP: Duration = Duration::from_secs(3);

/// How a capture is bounded.
#[derive(Debug, Clone, Copy)]
pub struct SolWindow {
    /// Reading stops this long after the session is up (or at `deadline`).
    pub read_for: Duration,
    /// Only the newest this many console bytes are kept.
    pub max_bytes: usize,
    /// Reading ends by then whatever happens; the clean-up after it takes at most
    /// [`CLEANUP`] more.
    pub deadline: Instant,
}

/// What a capture got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleTail {
    /// The newest console text, cleaned and scrubbed.
    pub text: String,
    /// Console bytes read in all (before cleaning), and how many of the oldest were dropped.
    pub bytes_read: usize,
    pub bytes_dropped: usize,
    /// How long the console was read.
    pub read_for: Duration,
    /// A SOL session was active before the capture and was ended first.
    pub was_active: bool,
    /// How the session ended.
    pub ended: SolEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SolEnd {
    /// ipmitool left on `~.` and deactivated the payload itself.
    Clean,
    /// ipmitool ended on its own (the BMC closed the session).
    ByTheBmc,
    /// It did not leave in time and was killed; `deactivated` says whether the
    /// `sol deactivate` after it worked.
    Killed { deactivated: bool },
}

/// Deactivate any SOL session, read the console for `window.read_for`, end the session.
pub async fn console_tail(
    target: &IpmiTarget,
    window: SolWindow,
    cancel: &CancellationToken,
) -> Result<ConsoleTail, IpmiError> {
    target.validate()?;
    let was_active = deactivate(target, cancel).await?;
    if Instant::now() >= window.deadline {
        return Err(IpmiError::Timeout { host: target.host.clone(), after: target.timeout });
    }
    let program = find_ipmitool().ok_or(IpmiError::ToolMissing)?;
    let _slot = target.gate.enter(&gate_key(target), cancel).await.ok_or(IpmiError::Cancelled)?;
    let words = ["sol", "activate"];
    let args = build_args(target, false, &words);
    tracing::debug!(program = %program.display(), ?args, "running ipmitool");
    let mut cmd = ipmitool(&program, target, &args);
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| not_started(target, &words, e))?;
    // From here the payload may be active: whatever drops this future deactivates it.
    let mut guard = DeactivateOnDrop(Some(target.clone()));
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take().ok_or_else(|| lost(target, "no stdout"))?;
    let mut stderr = child.stderr.take().ok_or_else(|| lost(target, "no stderr"))?;
    // Read to its end (a full pipe would stall ipmitool), keeping the first 8 KiB.
    let stderr_read = tokio::spawn(async move {
        let (mut kept, mut chunk) = (Vec::new(), [0u8; 1024]);
        while let Ok(n @ 1..) = stderr.read(&mut chunk).await {
            let room = (8 * 1024 - kept.len()).min(n);
            kept.extend_from_slice(&chunk[..room]);
        }
        kept
    });

    let mut console = Tail::new(window.max_bytes);
    let mut head = Vec::new();
    let mut operational = false;
    let mut read_until = window.deadline;
    let mut started = Instant::now();
    let mut buf = [0u8; 4096];
    let mut eof = false;
    while !eof {
        let n = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep_until(read_until) => break,
            r = stdout.read(&mut buf) => r.unwrap_or(0),
        };
        if n == 0 {
            eof = true;
            continue;
        }
        if operational {
            console.push(&buf[..n]);
            continue;
        }
        // Before the banner: ipmitool's own words (errors go to stderr).
        head.extend_from_slice(&buf[..n]);
        while let Some(nl) = head.iter().position(|&b| b == b'\n') {
            if head.starts_with(BANNER.as_bytes()) {
                operational = true;
                started = Instant::now();
                read_until = (started + window.read_for).min(window.deadline);
                console.push(&head[nl + 1..]);
                head.clear();
                break;
            }
            head.drain(..=nl);
        }
    }
    let read_for = if operational { started.elapsed() } else { Duration::ZERO };

    // Leave: `~.` after a carriage return, then wait for ipmitool to go.
    if let Some(mut pipe) = stdin.take() {
        let _ = pipe.write_all(b"\r~.").await;
        let _ = pipe.flush().await;
        // Kept open until ipmitool is gone: EOF alone would also end it, uncleanly.
        stdin = Some(pipe);
    }
    let mut rest = Vec::new();
    let exited = tokio::time::timeout(EXIT_WAIT, async {
        let _ = (&mut stdout).take(64 * 1024).read_to_end(&mut rest).await;
        child.wait().await
    })
    .await;
    drop(stdin);
    if operational {
        console.push(&rest);
    }
    let ended = match exited {
        Ok(Ok(status)) if eof && !status.success() && !operational => {
            guard.disarm();
            let stderr = stderr_read.await.unwrap_or_default();
            return Err(activation_failure(target, &words, status.to_string(), &stderr));
        }
        Ok(Ok(_)) if eof => {
            guard.disarm();
            SolEnd::ByTheBmc
        }
        Ok(Ok(status)) if status.success() => {
            guard.disarm();
            SolEnd::Clean
        }
        _ => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            guard.disarm();
            let after = target_for(target, CLEANUP_DEACTIVATE);
            SolEnd::Killed { deactivated: deactivate(&after, &CancellationToken::new()).await.is_ok() }
        }
    };
    if !operational {
        let stderr = stderr_read.await.unwrap_or_default();
        return Err(activation_failure(target, &words, "no session".into(), &stderr));
    }
    stderr_read.abort();
    let (bytes_read, bytes_dropped) = (console.total, console.dropped);
    let text = console_text(&console.bytes(), target.password.expose_secret());
    Ok(ConsoleTail { text, bytes_read, bytes_dropped, read_for, was_active, ended })
}

/// `sol deactivate`: `Ok(true)` when a session was active and is now ended,
/// `Ok(false)` when none was.
async fn deactivate(target: &IpmiTarget, cancel: &CancellationToken) -> Result<bool, IpmiError> {
    match run(target, &["sol", "deactivate"], false, cancel).await {
        Ok(_) => Ok(true),
        Err(IpmiError::CommandFailed { stderr, .. }) if stderr.contains("already de-activated") => Ok(false),
        Err(IpmiError::CommandFailed { stderr, host, .. }) if no_sol(&stderr) => {
            Err(IpmiError::NoSol { host, detail: stderr })
        }
        Err(e) => Err(e),
    }
}

fn no_sol(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    s.contains("invalid command") || s.contains("not supported") || s.contains("unsupported")
}

/// Why `sol activate` gave no session, from its stderr.
fn activation_failure(target: &IpmiTarget, words: &[&str], status: String, stderr: &[u8]) -> IpmiError {
    let stderr = crate::drivers::scrub(&String::from_utf8_lossy(stderr), target.password.expose_secret(), 2000);
    // ipmitool's complaint about a pipe for a terminal is noise here.
    let stderr: String = stderr.lines().filter(|l| !l.starts_with("tcgetattr")).collect::<Vec<_>>().join("\n");
    if no_sol(&stderr) {
        return IpmiError::NoSol { host: target.host.clone(), detail: stderr.trim().to_string() };
    }
    super::classify_failure(target, words, status, &stderr, true)
}

fn lost(target: &IpmiTarget, what: &str) -> IpmiError {
    IpmiError::CommandFailed {
        host: target.host.clone(),
        command: "sol activate".into(),
        status: "lost".into(),
        stderr: what.into(),
    }
}

/// `target` with a whole-call bound of `timeout` and one retransmit.
fn target_for(target: &IpmiTarget, timeout: Duration) -> IpmiTarget {
    IpmiTarget { timeout, retries: 1, ..target.clone() }
}

/// Deactivates the payload from a spawned task if the capture is dropped while its
/// session may be active (a time limit dropped the job's future; the child was killed).
struct DeactivateOnDrop(Option<IpmiTarget>);

impl DeactivateOnDrop {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for DeactivateOnDrop {
    fn drop(&mut self) {
        let Some(target) = self.0.take() else { return };
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        rt.spawn(async move {
            let target = target_for(&target, CLEANUP_DEACTIVATE);
            if let Err(e) = deactivate(&target, &CancellationToken::new()).await {
                tracing::warn!(host = %target.host, error = %e, "SOL capture dropped; deactivating its payload failed");
            }
        });
    }
}

/// The newest `max` bytes of a stream, and how many came in all.
struct Tail {
    buf: VecDeque<u8>,
    max: usize,
    total: usize,
    dropped: usize,
}

impl Tail {
    fn new(max: usize) -> Tail {
        Tail { buf: VecDeque::new(), max, total: 0, dropped: 0 }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len();
        self.buf.extend(bytes);
        let over = self.buf.len().saturating_sub(self.max);
        self.buf.drain(..over);
        self.dropped += over;
    }

    fn bytes(&self) -> Vec<u8> {
        self.buf.iter().copied().collect()
    }
}

/// Console bytes as text for a record: ipmitool's `~.` trailer removed, CRLF and
/// lone CR to LF, ANSI escape sequences and other control bytes dropped (tabs kept),
/// invalid UTF-8 replaced, the password scrubbed.
pub fn console_text(bytes: &[u8], secret: &str) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = match text.rfind(TERMINATED) {
        Some(i) => &text[..i],
        None => &text[..],
    };
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI (`ESC [ … final`) or a two-character escape.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push('\n');
                }
            }
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    crate::drivers::scrub(&out, secret, usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_text_is_clean_lines_without_the_trailer_or_the_password() {
        let raw = b"[  12.3] \x1b[31mBUG: soft lockup\x1b[0m - CPU#2 stuck\r\nlogin: pw-123456\rnext\x07 line\r\n~. [terminated ipmitool]\r\n";
        assert_eq!(
            console_text(raw, "pw-123456"),
            "[  12.3] BUG: soft lockup - CPU#2 stuck\nlogin: [redacted]\nnext line\n"
        );
        assert_eq!(console_text(b"caf\xc3\xa9 \xff\ttab", ""), "caf\u{e9} \u{fffd}\ttab");
    }

    #[test]
    fn the_tail_keeps_the_newest_bytes_and_counts_the_rest() {
        let mut t = Tail::new(4);
        t.push(b"abc");
        t.push(b"defg");
        assert_eq!(t.bytes(), b"defg");
        assert_eq!((t.total, t.dropped), (7, 3));
    }
}
