//! The head guard: roller's own answer to a request head with a control byte in it.
//!
//! hyper refuses such a head in its parser, before any service sees it, and answers a bare
//! `400` (no JSON, no CORS: a browser cannot even read it) with no hook to shape that
//! answer; `ignore_invalid_headers` would instead drop the line silently, so a proxy in
//! front would have seen a header roller did not. The guard sits between the connection's
//! IO and hyper: it holds back each request head until its blank line, checks its bytes,
//! and passes a clean head on untouched. A head with a control byte (below 0x20 other than
//! tab, CR and LF; 0x7f; a CR not followed by LF) is never shown to hyper: hyper reads the
//! end of the connection instead, finishes whatever it was answering, and when it shuts
//! the connection down the guard writes roller's `400 invalid_header` (JSON, CORS,
//! `connection: close`) first.
//!
//! To find the next head on a kept-alive connection the guard follows `Content-Length`.
//! A request whose body is chunked (or whose length it cannot read, which hyper refuses
//! anyway) ends the guarding for that connection: hyper's parser still refuses a bad head
//! after it, bare. A head longer than [`HEAD_CAP`] is passed on as it is, for hyper to
//! answer 431.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::api::error::ErrorCode;

/// Heads are held back up to this size; a longer one goes to hyper unchecked (above
/// hyper's own limit on a head, so hyper answers it 431).
pub const HEAD_CAP: usize = 96 * 1024;

/// Reads from the connection, this much at a time.
const READ_CHUNK: usize = 8 * 1024;

/// Where the guard is in the connection's stream of requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Reading a request head.
    Head,
    /// Passing on this many more bytes of a request body.
    Body(u64),
    /// Passing everything on, unchecked (a chunked body, or a head over the cap).
    Off,
    /// A bad head was found: hyper reads the end of the connection from now on.
    Refused,
}

/// A connection's IO with its request heads checked before hyper reads them.
pub struct HeadGuard<I> {
    inner: I,
    framing: Framing,
    /// Bytes read from the connection that are not yet classified.
    pending: Vec<u8>,
    /// How far `pending` was already searched for the end of a head.
    scanned: usize,
    /// Bytes cleared for hyper, and how many of them it has taken.
    ready: Vec<u8>,
    taken: usize,
    /// The client closed its side.
    eof: bool,
    /// The 400 to write before the connection is shut down, and how much of it went out.
    answer: Option<(Vec<u8>, usize)>,
    /// The CORS origin roller's answers carry.
    cors_origin: Arc<str>,
    /// Set when a head was refused, for the connection's drop reason.
    refused: Arc<AtomicBool>,
}

impl<I> HeadGuard<I> {
    pub fn new(inner: I, cors_origin: Arc<str>, refused: Arc<AtomicBool>) -> HeadGuard<I> {
        HeadGuard {
            inner,
            framing: Framing::Head,
            pending: Vec::new(),
            scanned: 0,
            ready: Vec::new(),
            taken: 0,
            eof: false,
            answer: None,
            cors_origin,
            refused,
        }
    }

    /// Move what can be classified from `pending` to `ready` (or refuse the head).
    fn classify(&mut self) {
        loop {
            match self.framing {
                Framing::Refused => return,
                Framing::Off => {
                    self.ready.append(&mut self.pending);
                    return;
                }
                Framing::Body(left) => {
                    let n = (self.pending.len() as u64).min(left) as usize;
                    self.ready.extend(self.pending.drain(..n));
                    self.framing = if left == n as u64 { Framing::Head } else { Framing::Body(left - n as u64) };
                    if self.pending.is_empty() {
                        return;
                    }
                }
                Framing::Head => {
                    let end = head_end(&self.pending, self.scanned);
                    if end.unwrap_or(self.pending.len()) > HEAD_CAP {
                        self.framing = Framing::Off;
                        continue;
                    }
                    let Some(end) = end else {
                        // The last three bytes may start the blank line.
                        self.scanned = self.pending.len().saturating_sub(3);
                        return;
                    };
                    self.scanned = 0;
                    let head = &self.pending[..end];
                    if let Some(fault) = fault(head) {
                        self.refuse(&fault);
                        return;
                    }
                    self.framing = match body_length(head) {
                        Some(0) => Framing::Head,
                        Some(n) => Framing::Body(n),
                        None => Framing::Off,
                    };
                    self.ready.extend(self.pending.drain(..end));
                }
            }
        }
    }

    fn refuse(&mut self, fault: &str) {
        self.framing = Framing::Refused;
        self.pending.clear();
        self.refused.store(true, Ordering::Relaxed);
        self.answer = Some((super::refusal(ErrorCode::InvalidHeader, fault, Some(&self.cors_origin)), 0));
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for HeadGuard<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.taken < this.ready.len() {
                let n = (this.ready.len() - this.taken).min(buf.remaining());
                buf.put_slice(&this.ready[this.taken..this.taken + n]);
                this.taken += n;
                if this.taken == this.ready.len() {
                    this.ready.clear();
                    this.taken = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.framing == Framing::Refused || this.eof {
                // The end of the connection, as hyper sees it.
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // An unfinished head at the end goes to hyper as it is: its parser says what is wrong.
                this.eof = true;
                this.ready.append(&mut this.pending);
                continue;
            }
            this.pending.extend_from_slice(read.filled());
            this.classify();
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for HeadGuard<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    /// hyper is done with the connection: the refusal, if any, goes out last.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some((bytes, sent)) = &mut this.answer {
            while *sent < bytes.len() {
                let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &bytes[*sent..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *sent += n;
            }
            ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// Where the head in `bytes` ends (just past its blank line), searching from `from`.
/// httparse accepts bare LF line ends, so "\n\n" ends a head as "\r\n\r\n" does.
fn head_end(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(at) = bytes[i..].iter().position(|&b| b == b'\n') {
        let lf = i + at;
        match bytes.get(lf + 1..) {
            Some([b'\n', ..]) => return Some(lf + 2),
            Some([b'\r', b'\n', ..]) => return Some(lf + 3),
            _ => i = lf + 1,
        }
    }
    None
}

/// What is wrong with a head, in words that name the header (never its value: it may be a
/// credential), or `None` when every byte is one HTTP allows.
fn fault(head: &[u8]) -> Option<String> {
    let bad = |i: usize| {
        let b = head[i];
        (b < 0x20 && b != b'\t' && b != b'\n' && b != b'\r')
            || b == 0x7f
            || (b == b'\r' && head.get(i + 1) != Some(&b'\n'))
    };
    let at = (0..head.len()).find(|&i| bad(i))?;
    let line_start = head[..at].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let byte = head[at];
    if line_start == 0 {
        return Some(format!(
            "the request line contains a control character (byte 0x{byte:02x}); send only visible characters and spaces"
        ));
    }
    let line = &head[line_start..];
    let name = line.iter().position(|&b| b == b':').map(|colon| &line[..colon]);
    let where_ = match name {
        Some(n) if !n.is_empty() && n.iter().all(|&b| b.is_ascii_graphic()) && at > line_start + n.len() => {
            format!("the value of header '{}'", String::from_utf8_lossy(n))
        }
        _ => "a header line".to_string(),
    };
    Some(format!(
        "{where_} contains a control character (byte 0x{byte:02x}); a header may hold only visible characters, spaces and tabs: remove it"
    ))
}

/// The body length a clean head announces: `Some(0)` for none, `None` when the guard cannot
/// follow it (chunked, an unreadable or ambiguous `Content-Length`).
fn body_length(head: &[u8]) -> Option<u64> {
    let mut length = None;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return None;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let n: u64 = std::str::from_utf8(value).ok()?.parse().ok()?;
            if length.is_some_and(|l| l != n) {
                return None;
            }
            length = Some(n);
        }
    }
    Some(length.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What hyper would read through the guard from `sent`, and what the guard wrote back.
    async fn through(sent: &[u8]) -> (Vec<u8>, String, bool) {
        let (client, server) = tokio::io::duplex(1 << 20);
        let refused = Arc::new(AtomicBool::new(false));
        let mut guard = HeadGuard::new(server, Arc::from("https://tc.example.com"), refused.clone());
        let (mut client_r, mut client_w) = tokio::io::split(client);
        client_w.write_all(sent).await.unwrap();
        client_w.shutdown().await.unwrap();
        let mut seen = Vec::new();
        guard.read_to_end(&mut seen).await.unwrap();
        guard.shutdown().await.unwrap();
        drop(guard);
        let mut back = String::new();
        client_r.read_to_string(&mut back).await.unwrap();
        (seen, back, refused.load(Ordering::Relaxed))
    }

    #[tokio::test]
    async fn clean_requests_pass_untouched_bodies_included() {
        let two = b"POST /a HTTP/1.1\r\nContent-Length: 6\r\n\r\nhel\x01loGET /b HTTP/1.1\r\nhost: x\r\n\r\n";
        let (seen, back, refused) = through(two).await;
        assert_eq!(seen, two, "a body's bytes are not checked as a head");
        assert_eq!((back.as_str(), refused), ("", false));
    }

    #[tokio::test]
    async fn a_control_byte_in_a_header_is_answered_with_roller_s_400_naming_the_header() {
        let (seen, back, refused) = through(b"GET / HTTP/1.1\r\nX-Token: se\x01cret\r\n\r\n").await;
        assert!(seen.is_empty(), "hyper sees only the end of the connection");
        assert!(refused);
        assert!(back.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{back}");
        assert!(back.contains("access-control-allow-origin: https://tc.example.com\r\n"), "{back}");
        let body: serde_json::Value = serde_json::from_str(back.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["error_code"], "invalid_header");
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains("header 'X-Token'") && detail.contains("0x01"), "{detail}");
        assert!(!back.contains("cret"), "the value is never echoed");
    }

    #[tokio::test]
    async fn the_second_request_on_a_kept_alive_connection_is_checked_too() {
        let sent = b"POST /a HTTP/1.1\r\ncontent-length: 2\r\n\r\nokGET /b HTTP/1.1\r\nA: \x7f\r\n\r\n";
        let (seen, back, refused) = through(sent).await;
        assert_eq!(seen, b"POST /a HTTP/1.1\r\ncontent-length: 2\r\n\r\nok", "the first passes");
        assert!(refused && back.contains("\"error_code\":\"invalid_header\""), "{back}");
    }

    #[tokio::test]
    async fn chunked_bodies_end_the_guarding_and_oversized_heads_go_to_hyper() {
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n\x01\r\n0\r\n\r\n";
        assert_eq!(through(chunked).await.0, chunked);
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.resize(HEAD_CAP + 10, b'a');
        huge.extend_from_slice(b"\x01\r\n\r\n");
        let (seen, _, refused) = through(&huge).await;
        assert_eq!((seen.len(), refused), (huge.len(), false));
    }

    #[test]
    fn faults_name_where_and_never_what() {
        assert_eq!(fault(b"GET / HTTP/1.1\r\nHost: a\tb\r\n\r\n"), None, "a tab is allowed");
        assert!(fault(b"GE\x00T / HTTP/1.1\r\n\r\n").unwrap().starts_with("the request line"));
        assert!(fault(b"GET / HTTP/1.1\r\nX\x01y: 1\r\n\r\n").unwrap().starts_with("a header line"));
        assert!(fault(b"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n").unwrap().contains("0x0d"), "a bare CR");
        assert_eq!(head_end(b"GET / HTTP/1.1\nA: b\n\nrest", 0), Some(21), "bare LF line ends");
        assert_eq!(body_length(b"POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 4\r\n\r\n"), None);
    }
}
