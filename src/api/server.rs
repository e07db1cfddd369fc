//! The listener: roller's accept loop (in place of `axum::serve`), so that no client can
//! hold a connection, or the process, for as long as it likes.
//!
//! - **Header read timeout:** a connection has `header_read_timeout` from its start to
//!   deliver a request's headers, and so does every later request from its first byte. A
//!   client that sends nothing, half a request line or unfinished headers (slowloris) is
//!   closed then, however slowly it trickles bytes.
//! - **Idle timeout:** a kept-alive connection with no request under way is closed after
//!   `idle_timeout`. While a request is being answered (a job stream included) handlers
//!   bound it (the 30 s request timeout, the streams' 10 minutes); only a connection on
//!   which no byte moves for `idle_timeout` (at least [`STALL_FLOOR`]) is abandoned then:
//!   a client that stopped reading a large answer.
//! - **Connection cap:** at most `max_connections` are served. The next few
//!   ([`overflow`]) are answered `503 too_many_connections` (roller's JSON, with CORS) and
//!   closed; beyond those, a connection is closed as soon as it is accepted. Both are
//!   counted (`roller_connections_refused_total{how}`) and logged at most every 10 s.
//! - **Bounded shutdown:** at the stop signal the listener closes, idle connections close at
//!   once, requests under way may finish, and whatever is still open `shutdown_grace` later
//!   is dropped.
//!
//! - **TLS** (`[server] tls_cert_file`): the handshake runs in the connection's own task,
//!   inside its header read timeout (a client that starts one and never finishes is closed
//!   then, like a slow request), never in the accept loop. A plain-HTTP request to the TLS
//!   port is answered `400 https_required` in plain HTTP and closed.
//!
//! - **Head guard** ([`head_guard`]): a request head with a control byte in it is answered
//!   `400 invalid_header` (roller's JSON, CORS) and the connection closed, where hyper's
//!   parser would answer a bare 400 nobody's browser can read.
//!
//! Requests are served over HTTP/1.1 by hyper (as `axum::serve` did here: axum's `http2`
//! feature is off). Anything else hyper cannot parse (a malformed request line, a head over
//! its limits) never reaches the router: hyper answers `400 Bad Request` (431, 414) with an
//! empty body and closes the connection (README, "HTTP API").

mod head_guard;
mod watched;

use watched::Watched;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::response::Response;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::error::ErrorCode;
use crate::config::ConnectionSettings;

/// How many connections beyond `max_connections` are answered 503 rather than closed at once.
pub fn overflow(max_connections: usize) -> usize {
    (max_connections / 16).clamp(4, 64)
}

/// An overflow connection has this long (at most) to send its request, and this overall.
const OVERFLOW_HEADER_TIMEOUT: Duration = Duration::from_secs(2);
const OVERFLOW_LIFETIME: Duration = Duration::from_secs(5);
/// Refused connections and accept errors are logged at most this often (counted always).
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Serve `app` on `listener` within `limits` until `shutdown`, then wind down within
/// `limits.shutdown_grace`. `overload` answers the connections beyond the cap. With `tls`,
/// every connection (the overflow's too) is HTTPS. `cors_origin` goes on the answers
/// roller writes itself, as the router's CORS layer puts it on the others.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    listener: TcpListener,
    app: Router,
    overload: Router,
    cors_origin: &str,
    limits: ConnectionSettings,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
) {
    // Routes resolved once here (what `into_make_service` does), not for every request:
    // a Router whose routes are still handlers turns each into a service per call, which
    // callgrind showed as ~30 % of the API's instructions for clients that connect per request.
    let (app, overload): (Router, Router) = (app.with_state(()), overload.with_state(()));
    let served = Arc::new(Semaphore::new(limits.max_connections));
    let spare = Arc::new(Semaphore::new(overflow(limits.max_connections)));
    let tracker = TaskTracker::new();
    let hard_stop = CancellationToken::new();
    let mut refused = Throttled::default();
    let mut accept_errors = Throttled::default();
    let cors_origin: Arc<str> = Arc::from(cors_origin);
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    metrics::counter!("roller_accept_errors_total").increment(1);
                    if let Some(n) = accept_errors.due() {
                        tracing::error!(error = %e, errors = n, "accept error (counted in roller_accept_errors_total)");
                    }
                    // Out of file descriptors, say: the connection waits in the backlog.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if let Ok(permit) = served.clone().try_acquire_owned() {
            let slot = Slot::open(permit);
            let (app, stopping, hard_stop) = (app.clone(), shutdown.clone(), hard_stop.clone());
            let guard = Guard { cors_origin: cors_origin.clone(), refused: Arc::default() };
            tracker.spawn(connection(stream, peer, app, limits, slot, tls.clone(), guard, stopping, hard_stop));
            continue;
        }
        let how = match spare.clone().try_acquire_owned() {
            Ok(permit) => {
                let timeout = OVERFLOW_HEADER_TIMEOUT.min(limits.header_read_timeout);
                tracker.spawn(refuse(stream, overload.clone(), timeout, tls.clone(), permit, hard_stop.clone()));
                "answered"
            }
            Err(_) => "closed",
        };
        metrics::counter!("roller_connections_refused_total", "how" => how).increment(1);
        if let Some(n) = refused.due() {
            tracing::warn!(
                max_connections = limits.max_connections,
                refused = n,
                last_peer = %peer,
                "too many connections: refusing new ones (503 too_many_connections, or closed at once)"
            );
        }
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(limits.shutdown_grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            open = tracker.len(),
            grace_secs = limits.shutdown_grace.as_secs(),
            "connections still open after the shutdown grace: dropping them"
        );
        hard_stop.cancel();
        tracker.wait().await;
    }
}

/// One served connection, watched: closed when its phase's deadline passes, gracefully
/// at the stop signal, at once when the shutdown grace is over. With `tls`, the handshake
/// comes first, within the header read timeout.
#[allow(clippy::too_many_arguments)]
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: ConnectionSettings,
    _slot: Slot,
    tls: Option<TlsAcceptor>,
    guard: Guard,
    stopping: CancellationToken,
    hard_stop: CancellationToken,
) {
    let activity = Arc::new(Activity::new());
    let watched = Watched { inner: stream, activity: activity.clone() };
    let dropped = match tls {
        None => drive(guard.wrap(watched), peer, app, &limits, &activity, &stopping, &hard_stop).await,
        Some(acceptor) => {
            // The header read timeout runs from the connection's start: the handshake is
            // inside it, so a client that never finishes one is closed like a slow request.
            let (deadline, _) = activity.deadline(&limits);
            let handshake = tokio::select! {
                h = tokio::time::timeout_at(deadline, handshake(&acceptor, watched)) => h,
                _ = stopping.cancelled() => return,
                _ = hard_stop.cancelled() => return,
            };
            match handshake {
                Ok(Ok(tls)) => drive(guard.wrap(tls), peer, app, &limits, &activity, &stopping, &hard_stop).await,
                Ok(Err(refused)) => {
                    tracing::debug!(peer = %peer, reason = refused, "TLS handshake failed");
                    Some(refused)
                }
                Err(_) => Some("header_timeout"),
            }
        }
    };
    let dropped = match dropped {
        None if guard.refused.load(Ordering::Relaxed) => Some("invalid_header"),
        other => other,
    };
    if let Some(reason) = dropped {
        metrics::counter!("roller_connections_dropped_total", "reason" => reason).increment(1);
        tracing::debug!(peer = %peer, reason, "connection closed by roller");
    }
}

/// A connection's [`head_guard::HeadGuard`] settings, and whether it refused a head.
struct Guard {
    cors_origin: Arc<str>,
    refused: Arc<AtomicBool>,
}

impl Guard {
    fn wrap<I>(&self, io: I) -> head_guard::HeadGuard<I> {
        head_guard::HeadGuard::new(io, self.cors_origin.clone(), self.refused.clone())
    }
}

/// The TLS handshake on a new connection. A client that speaks plain HTTP (its first byte
/// is not a TLS handshake record) is answered `400 https_required` in plain HTTP: what
/// `curl http://` to this port prints, instead of a reset. Errors are the reason for
/// `roller_connections_dropped_total`.
async fn handshake(
    acceptor: &TlsAcceptor,
    mut stream: Watched,
) -> Result<tokio_rustls::server::TlsStream<Watched>, &'static str> {
    /// The first byte of every TLS record that opens a handshake (ContentType handshake).
    const TLS_HANDSHAKE: u8 = 0x16;
    let mut first = [0u8; 1];
    match stream.inner.peek(&mut first).await {
        Ok(0) | Err(_) => return Err("tls_handshake"),
        Ok(_) if first[0] != TLS_HANDSHAKE => {
            plain_http_refused(&mut stream).await;
            return Err("plain_http");
        }
        Ok(_) => {}
    }
    acceptor.accept(stream).await.map_err(|_| "tls_handshake")
}

/// Read the plain request's head (bounded), answer 400 with roller's error body, close.
/// Reading first matters: closing a socket with unread bytes resets it, and the client
/// would see a reset instead of the answer.
async fn plain_http_refused<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let answer = refusal(ErrorCode::HttpsRequired, "roller serves HTTPS on this port: use https://", None);
    let _ = stream.write_all(&answer).await;
    let _ = stream.shutdown().await;
}

/// A 400 written by hand, for what is refused before hyper and the router: roller's error
/// body, the CORS headers the router's layer would add (when `cors_origin` is given), and
/// `connection: close`.
fn refusal(code: ErrorCode, detail: &str, cors_origin: Option<&str>) -> Vec<u8> {
    let body = serde_json::json!({ "detail": detail, "error_code": code }).to_string();
    let cors = match cors_origin {
        Some(origin) if origin.bytes().all(|b| b.is_ascii_graphic()) => format!(
            "access-control-allow-origin: {origin}\r\naccess-control-allow-headers: {}\r\n\
             access-control-allow-methods: {}\r\n",
            super::CORS_ALLOW_HEADERS,
            super::CORS_ALLOW_METHODS
        ),
        _ => String::new(),
    };
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{cors}\
         connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// hyper on one connection (plain, or TLS after its handshake) until it ends, a timeout
/// runs out, or the shutdown; the reason when roller closed it.
async fn drive<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    limits: &ConnectionSettings,
    activity: &Arc<Activity>,
    stopping: &CancellationToken,
    hard_stop: &CancellationToken,
) -> Option<&'static str>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = *limits;
    let io = TokioIo::new(io);
    let service = Tracked { app, activity: activity.clone() };
    let mut builder = http1::Builder::new();
    // A backstop under the watch below: hyper's own limit on waiting for a request's
    // headers, which on a kept-alive connection includes the idle time before it.
    builder.timer(TokioTimer::new()).header_read_timeout(limits.idle_timeout + limits.header_read_timeout);
    // The head guard ends a connection by showing hyper its end, possibly while hyper still
    // answers the request before: hyper must finish that answer (and then shut down, which
    // is when the guard's 400 goes out) rather than drop it.
    builder.half_close(true);
    let mut conn = pin!(builder.serve_connection(io, service));
    let (mut stop_seen, mut shutting) = (false, false);
    loop {
        // At the stop signal a request whose head is still arriving may finish (within the
        // grace): hyper, which sees a head only once it is whole (the head guard), would take
        // the connection for an idle one and close it, so it is told once the head is in.
        if stop_seen && !shutting && !activity.receiving_head() {
            // hyper closes an idle connection at once; one being answered after the answer.
            shutting = true;
            conn.as_mut().graceful_shutdown();
        }
        let (deadline, _) = activity.deadline(&limits);
        tokio::select! {
            ended = conn.as_mut() => break match ended {
                Ok(()) => None,
                Err(e) if e.is_timeout() => Some("header_timeout"),
                Err(e) if e.is_parse() => {
                    tracing::debug!(peer = %peer, error = %e, "unparsable request: hyper answered 400");
                    Some("unparsable")
                }
                Err(e) => {
                    tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                    None
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                if let Some(reason) = activity.expired(&limits) {
                    break Some(reason);
                }
            }
            _ = activity.changed.notified() => {}
            _ = stopping.cancelled(), if !stop_seen => stop_seen = true,
            _ = hard_stop.cancelled() => break Some("shutdown"),
        }
    }
}

/// A connection beyond the cap: its request is answered by `overload` (503), then closed;
/// over TLS after a handshake within the same short limit.
async fn refuse(
    stream: TcpStream,
    overload: Router,
    header_timeout: Duration,
    tls: Option<TlsAcceptor>,
    _permit: OwnedSemaphorePermit,
    hard_stop: CancellationToken,
) {
    let answer = async move {
        match tls {
            None => answer_once(stream, overload, header_timeout).await,
            Some(acceptor) => {
                let watched = Watched { inner: stream, activity: Arc::new(Activity::new()) };
                if let Ok(Ok(tls)) = tokio::time::timeout(header_timeout, handshake(&acceptor, watched)).await {
                    answer_once(tls, overload, header_timeout).await;
                }
            }
        }
    };
    tokio::select! {
        _ = tokio::time::timeout(OVERFLOW_LIFETIME, answer) => {}
        _ = hard_stop.cancelled() => {}
    }
}

/// One request answered by `router` on `io`, then the connection closed.
async fn answer_once<I>(io: I, router: Router, header_timeout: Duration)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder.keep_alive(false).timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let service =
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| router.clone().oneshot(req.map(Body::new)));
    let _ = builder.serve_connection(TokioIo::new(io), service).await;
}

/// A served connection's place under the cap, and its part of `roller_connections_open`.
struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Slot {
    fn open(permit: OwnedSemaphorePermit) -> Slot {
        metrics::gauge!("roller_connections_open").increment(1.0);
        Slot { _permit: permit }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        metrics::gauge!("roller_connections_open").decrement(1.0);
    }
}

/// Where a connection is, for its deadline.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request's headers since `since` (the connection's start, or the
    /// request's first byte); `started`: some of it has arrived.
    Head { since: Instant, started: bool },
    /// Between requests since `since`, the end of the last response.
    Idle { since: Instant },
    /// This many requests are being answered.
    Busy(usize),
}

/// While requests are being answered, a connection on which no byte moves either way for
/// this long (or `idle_timeout`, if longer) is abandoned: a client that stopped reading a
/// large answer. Above the 30 s request timeout and the job streams' 15 s keep-alive.
const STALL_FLOOR: Duration = Duration::from_secs(60);

struct State {
    phase: Phase,
    /// The last time a byte was read or written.
    progress: Instant,
}

struct Activity {
    state: Mutex<State>,
    /// Told when the phase changes in a way that moves the deadline earlier.
    changed: Notify,
}

impl Activity {
    fn new() -> Activity {
        let now = Instant::now();
        let state = State { phase: Phase::Head { since: now, started: false }, progress: now };
        Activity { state: Mutex::new(state), changed: Notify::new() }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Bytes arrived from the client.
    fn read(&self) {
        let mut s = self.state();
        let now = Instant::now();
        s.progress = now;
        match s.phase {
            Phase::Idle { .. } => {
                s.phase = Phase::Head { since: now, started: true };
                drop(s);
                self.changed.notify_one();
            }
            Phase::Head { since, started: false } => s.phase = Phase::Head { since, started: true },
            Phase::Head { .. } | Phase::Busy(_) => {}
        }
    }

    /// Bytes went out to the client.
    fn wrote(&self) {
        self.state().progress = Instant::now();
    }

    /// A request reached the router; the answer ends when the guard is dropped.
    fn begin(self: &Arc<Self>) -> InFlight {
        let mut s = self.state();
        s.phase = match s.phase {
            Phase::Busy(n) => Phase::Busy(n + 1),
            _ => Phase::Busy(1),
        };
        InFlight(self.clone())
    }

    fn end(&self) {
        let mut s = self.state();
        if let Phase::Busy(n) = s.phase {
            s.phase = if n > 1 { Phase::Busy(n - 1) } else { Phase::Idle { since: Instant::now() } };
        }
        drop(s);
        self.changed.notify_one();
    }

    /// When the connection's current phase runs out, and which timeout that is.
    fn deadline(&self, limits: &ConnectionSettings) -> (Instant, &'static str) {
        let s = self.state();
        match s.phase {
            Phase::Head { since, .. } => (since + limits.header_read_timeout, "header_timeout"),
            Phase::Idle { since } => (since + limits.idle_timeout, "idle_timeout"),
            Phase::Busy(_) => (s.progress + limits.idle_timeout.max(STALL_FLOOR), "stalled"),
        }
    }

    /// Which timeout, if any, has run out.
    fn expired(&self, limits: &ConnectionSettings) -> Option<&'static str> {
        let (deadline, reason) = self.deadline(limits);
        (Instant::now() >= deadline).then_some(reason)
    }

    /// Some of a request's head has arrived, and it has not reached the router yet.
    fn receiving_head(&self) -> bool {
        matches!(self.state().phase, Phase::Head { started: true, .. })
    }
}

/// A request being answered, from the router's call to the end of the response body.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The router, with each request counted in flight until its response body is done.
#[derive(Clone)]
struct Tracked {
    app: Router,
    activity: Arc<Activity>,
}

type Answer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl hyper::service::Service<hyper::Request<Incoming>> for Tracked {
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, req: hyper::Request<Incoming>) -> Answer {
        let in_flight = self.activity.begin();
        let app = self.app.clone();
        Box::pin(async move {
            let res = app.oneshot(req.map(Body::new)).await?;
            Ok(res.map(|body| Body::new(Guarded { body, _in_flight: in_flight })))
        })
    }
}

/// A response body that ends the request's time in flight when hyper is done with it.
struct Guarded {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Counts events and says when to log them: the first at once, then at most every [`LOG_EVERY`].
#[derive(Default)]
struct Throttled {
    last: Option<Instant>,
    since: u64,
}

impl Throttled {
    /// Count one; `Some(n)`: log now, `n` since the last line.
    fn due(&mut self) -> Option<u64> {
        self.since += 1;
        if self.last.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnectionSettings {
        ConnectionSettings {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            shutdown_grace: Duration::from_secs(10),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_follows_the_connection_from_headers_to_answer_to_idle() {
        let (a, l) = (Arc::new(Activity::new()), limits());
        let start = Instant::now();
        let header = (start + l.header_read_timeout, "header_timeout");
        assert_eq!(a.deadline(&l), header, "a new connection must send its headers");
        assert!(!a.receiving_head());
        tokio::time::advance(Duration::from_secs(3)).await;
        a.read();
        assert_eq!(a.deadline(&l), header, "trickling bytes does not extend it");
        assert!(a.receiving_head());
        let first = a.begin();
        let second = a.begin();
        assert_eq!(a.deadline(&l), (Instant::now() + STALL_FLOOR, "stalled"), "answering: only a stall ends it");
        tokio::time::advance(Duration::from_secs(20)).await;
        a.wrote();
        assert_eq!(a.deadline(&l), (Instant::now() + STALL_FLOOR, "stalled"), "bytes moving keep it going");
        drop(first);
        assert_eq!(a.deadline(&l).1, "stalled", "one request still under way");
        drop(second);
        let idle = Instant::now();
        assert_eq!(a.deadline(&l), (idle + l.idle_timeout, "idle_timeout"));
        assert!(!a.receiving_head());
        tokio::time::advance(Duration::from_secs(30)).await;
        a.read();
        assert_eq!(a.deadline(&l), (Instant::now() + l.header_read_timeout, "header_timeout"), "a new request");
        tokio::time::advance(l.header_read_timeout).await;
        assert_eq!(a.expired(&l), Some("header_timeout"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_expires_after_the_idle_timeout_only() {
        let (a, l) = (Arc::new(Activity::new()), limits());
        drop(a.begin());
        tokio::time::advance(l.header_read_timeout + Duration::from_secs(1)).await;
        assert_eq!(a.expired(&l), None, "idle, not reading headers");
        tokio::time::advance(l.idle_timeout).await;
        assert_eq!(a.expired(&l), Some("idle_timeout"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_nobody_reads_is_abandoned_after_the_stall_limit() {
        let (a, l) = (Arc::new(Activity::new()), limits());
        let _answering = a.begin();
        tokio::time::advance(STALL_FLOOR - Duration::from_secs(1)).await;
        assert_eq!(a.expired(&l), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(a.expired(&l), Some("stalled"));
        let long_idle = ConnectionSettings { idle_timeout: Duration::from_secs(300), ..l };
        assert_eq!(a.expired(&long_idle), None, "an idle timeout above the floor is the limit");
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_are_logged_at_most_every_ten_seconds_with_their_count() {
        let mut t = Throttled::default();
        assert_eq!(t.due(), Some(1));
        assert_eq!((t.due(), t.due()), (None, None));
        tokio::time::advance(LOG_EVERY).await;
        assert_eq!(t.due(), Some(3));
    }

    #[test]
    fn the_overflow_is_a_sixteenth_of_the_cap_within_bounds() {
        assert_eq!((overflow(1), overflow(160), overflow(4096)), (4, 10, 64));
    }
}
