//! A SimpleMDM stand-in (the service is not installable; reference/fleet-health.md §4):
//! the two calls `mdm_restart` makes, as SimpleMDM's API documents them, and the Macs
//! behind it.
//!
//! - Authentication: HTTP Basic with the API key as the user name and an empty password,
//!   or a 401 `{"errors":[{"title": …}]}`.
//! - `GET /api/v1/devices/{id}`: `{"data":{"type":"device","id":…,"attributes":{"name",
//!   "device_name","status","last_seen_at","serial_number"}}}`; an unknown id is a 404
//!   `{"errors":[{"title":"object not found"}]}`.
//! - `POST /api/v1/devices/{id}/restart`: 202 with an empty body; the Mac runs it at its
//!   next check-in ([`SimpleMdmBuilder::checkin_after`]): each Mac is a TCP listener on a
//!   loopback port that goes silent for the restart and answers again once it has booted
//!   ([`SimpleMdmBuilder::boot_takes`]), so roller's `tcp:<port>` probes see a reboot
//!   only when one was asked for. A Mac can wedge (down for good until its power is
//!   cycled: [`FakeSimpleMdm::set_power`], what a PDU does).
//! - Rate limits as a test scripts them ([`FakeSimpleMdm::fail_next`], or for restarts
//!   only [`FakeSimpleMdm::fail_next_restart`]): the next answers 429 (or a 5xx) with a
//!   `Retry-After` in seconds or as an HTTP date, and the stand-in records any request
//!   that came sooner than that `Retry-After` allowed. A restart can also be carried out
//!   and answered with a 5xx ([`FakeSimpleMdm::lose_next_restart_answer`]), as a proxy in
//!   front of SimpleMDM that lost the 202 would.
//! - It records every call, the requests in flight at once (the most ever:
//!   [`FakeSimpleMdm::max_in_flight`]), and can hold every request until released
//!   ([`FakeSimpleMdm::hold`]), so a test sees a cap on concurrency at work.

use std::collections::{BTreeMap, VecDeque};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::json;

use crate::Serving;

pub const API_KEY: &str = "simplemdm-key-canary-5719";
/// How often the Macs' listeners follow their state.
const TICK: Duration = Duration::from_millis(25);

/// How a scripted `Retry-After` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    Secs(u64),
    /// An HTTP date this many seconds (rounded up to the next whole second) from the answer.
    Date(u64),
}

#[derive(Debug, Clone, Copy)]
struct Scripted {
    status: u16,
    retry_after: Option<RetryAfter>,
}

/// One Mac: its record in SimpleMDM and its power and boot.
struct Mac {
    name: String,
    status: String,
    serial: String,
    last_seen_at: String,
    port: u16,
    powered: bool,
    /// Silent from `down_from` until `up_at` (`None`: until its power is cycled).
    down_from: Option<Instant>,
    up_at: Option<Instant>,
    /// A restart leaves it down for good (a hung boot).
    wedges: bool,
    restarts: u32,
}

impl Mac {
    fn answering(&self, now: Instant) -> bool {
        let down = self.down_from.is_some_and(|from| now >= from && self.up_at.is_none_or(|up| now < up));
        self.powered && !down
    }
}

#[derive(Default)]
struct Inner {
    macs: BTreeMap<u64, Mac>,
    calls: Vec<String>,
    unauthorized: u32,
    in_flight: usize,
    max_in_flight: usize,
    script: VecDeque<Scripted>,
    /// The same, for restarts only (after authentication and the device's lookup).
    restart_script: VecDeque<Scripted>,
    /// Restarts carried out and then answered with this status (a proxy that lost the 202).
    lost_answers: VecDeque<u16>,
    /// After an answer with `Retry-After`: the earliest the next request may come.
    not_before: Option<Instant>,
    early: Vec<String>,
    scripted_answers: u32,
}

struct Shared {
    inner: Mutex<Inner>,
    api_key: String,
    checkin: Duration,
    boot: Duration,
    /// `true` holds every request until it is `false` again.
    hold: tokio::sync::watch::Sender<bool>,
}

/// The Macs' listeners, followed by a thread until the last handle goes.
struct Listeners {
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

#[derive(Clone)]
pub struct FakeSimpleMdm {
    /// The API's base URL (`http://127.0.0.1:<port>/api/v1`), what `simplemdm.api_url` takes.
    pub url: String,
    shared: Arc<Shared>,
    _serving: Arc<Serving>,
    _listeners: Arc<Listeners>,
}

/// Devices and timings; [`FakeSimpleMdm::builder`].
pub struct SimpleMdmBuilder {
    api_key: String,
    devices: Vec<(u64, String, String)>,
    checkin: Duration,
    boot: Duration,
}

impl SimpleMdmBuilder {
    /// The only key the stand-in accepts (default [`API_KEY`]).
    pub fn api_key(mut self, key: &str) -> Self {
        self.api_key = key.into();
        self
    }

    /// An enrolled Mac, up and answering.
    pub fn device(mut self, id: u64, name: &str) -> Self {
        self.devices.push((id, name.into(), "enrolled".into()));
        self
    }

    /// A Mac SimpleMDM lists as `unenrolled`.
    pub fn unenrolled(mut self, id: u64, name: &str) -> Self {
        self.devices.push((id, name.into(), "unenrolled".into()));
        self
    }

    /// From a restart's 202 to the Mac going down (its MDM check-in; default 300 ms).
    pub fn checkin_after(mut self, d: Duration) -> Self {
        self.checkin = d;
        self
    }

    /// How long a Mac is silent while it boots (default 4 s).
    pub fn boot_takes(mut self, d: Duration) -> Self {
        self.boot = d;
        self
    }

    /// Serve it on a free loopback port (in the current tokio runtime), each Mac listening
    /// on its own.
    pub async fn start(self) -> FakeSimpleMdm {
        let mut macs = BTreeMap::new();
        let mut bound = BTreeMap::new();
        let seen = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        for (id, name, status) in self.devices {
            let l = TcpListener::bind("127.0.0.1:0").expect("a loopback port for a Mac");
            l.set_nonblocking(true).expect("a non-blocking listener");
            let port = l.local_addr().expect("its address").port();
            bound.insert(id, l);
            let mac = Mac {
                name,
                status,
                serial: format!("C07STANDIN{id}"),
                last_seen_at: seen.clone(),
                port,
                powered: true,
                down_from: None,
                up_at: None,
                wedges: false,
                restarts: 0,
            };
            macs.insert(id, mac);
        }
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner { macs, ..Default::default() }),
            api_key: self.api_key,
            checkin: self.checkin,
            boot: self.boot,
            hold: tokio::sync::watch::channel(false).0,
        });
        let listeners = follow_macs(shared.clone(), bound);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port for SimpleMDM");
        let url = format!("http://{}/api/v1", listener.local_addr().expect("its address"));
        let app = axum::Router::new()
            .route("/api/v1/devices/{id}", get(device))
            .route("/api/v1/devices/{id}/restart", post(restart))
            .with_state(shared.clone());
        let serving =
            tokio::spawn(async move { axum::serve(listener, app).await.expect("the SimpleMDM stand-in serves") });
        FakeSimpleMdm { url, shared, _serving: Arc::new(Serving(serving)), _listeners: Arc::new(listeners) }
    }
}

/// A thread that opens and closes each Mac's listener as its state says, accepting (and
/// dropping) connections so the backlog never fills.
fn follow_macs(shared: Arc<Shared>, mut bound: BTreeMap<u64, TcpListener>) -> Listeners {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let thread = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            let now = Instant::now();
            let want: Vec<(u64, u16, bool)> = {
                let inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
                inner.macs.iter().map(|(id, m)| (*id, m.port, m.answering(now))).collect()
            };
            for (id, port, up) in want {
                if !up {
                    bound.remove(&id);
                } else if let std::collections::btree_map::Entry::Vacant(slot) = bound.entry(id) {
                    // std sets SO_REUSEADDR: the port is the Mac's again at once; an error
                    // just means "next tick".
                    if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
                        let _ = l.set_nonblocking(true);
                        slot.insert(l);
                    }
                }
            }
            for l in bound.values() {
                while l.accept().is_ok() {}
            }
            std::thread::sleep(TICK);
        }
    });
    Listeners { stop, thread: Mutex::new(Some(thread)) }
}

fn errors(status: StatusCode, title: &str) -> Response {
    (status, axum::Json(json!({ "errors": [{ "title": title }] }))).into_response()
}

/// Counts a request in flight for as long as it lives.
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.lock().in_flight -= 1;
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Everything before the route: counted, held, authenticated, checked against the last
    /// `Retry-After`, and answered from the script. `Err`: the answer already.
    async fn admit(self: &Arc<Self>, call: String, headers: &HeaderMap) -> Result<InFlight, Response> {
        let guard = {
            let mut s = self.lock();
            s.in_flight += 1;
            s.max_in_flight = s.max_in_flight.max(s.in_flight);
            if s.not_before.is_some_and(|t| Instant::now() < t) {
                s.early.push(call.clone());
            }
            s.calls.push(call);
            InFlight(self.clone())
        };
        let mut hold = self.hold.subscribe();
        let _ = hold.wait_for(|held| !held).await;
        if !self.authorized(headers) {
            self.lock().unauthorized += 1;
            return Err(errors(StatusCode::UNAUTHORIZED, "unauthorized"));
        }
        let mut s = self.lock();
        match s.script.pop_front() {
            Some(next) => Err(scripted(&mut s, next)),
            None => {
                s.not_before = None;
                Ok(guard)
            }
        }
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(creds) = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        else {
            return false;
        };
        // The key is the user name; the password is empty.
        creds == format!("{}:", self.api_key).as_bytes()
    }
}

/// A scripted answer, with its `Retry-After` (noting when the next request may come).
fn scripted(s: &mut Inner, next: Scripted) -> Response {
    s.scripted_answers += 1;
    let status = StatusCode::from_u16(next.status).expect("a scripted status");
    let mut resp = errors(status, title(next.status));
    let (value, wait) = match next.retry_after {
        None => {
            s.not_before = None;
            return resp;
        }
        Some(RetryAfter::Secs(n)) => (n.to_string(), Duration::from_secs(n)),
        Some(RetryAfter::Date(n)) => {
            let now = SystemTime::now();
            let since = now.duration_since(SystemTime::UNIX_EPOCH).expect("after 1970");
            // Whole seconds, as an HTTP date has them: the next second at or after now + n.
            let at = SystemTime::UNIX_EPOCH + Duration::from_secs((since + Duration::from_secs(n)).as_secs() + 1);
            let wait = at.duration_since(now).unwrap_or_default();
            (chrono::DateTime::<chrono::Utc>::from(at).format("%a, %d %b %Y %H:%M:%S GMT").to_string(), wait)
        }
    };
    s.not_before = Some(Instant::now() + wait);
    resp.headers_mut().insert("retry-after", value.parse().expect("a header value"));
    resp
}

fn title(status: u16) -> &'static str {
    match status {
        429 => "rate limit exceeded",
        500 => "internal server error",
        502 => "bad gateway",
        503 => "service unavailable",
        504 => "gateway timeout",
        _ => "error",
    }
}

async fn device(State(x): State<Arc<Shared>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let _in_flight = match x.admit(format!("GET /api/v1/devices/{id}"), &headers).await {
        Ok(g) => g,
        Err(answer) => return answer,
    };
    let s = x.lock();
    let Some((id, mac)) = id.parse::<u64>().ok().and_then(|id| s.macs.get(&id).map(|m| (id, m))) else {
        return errors(StatusCode::NOT_FOUND, "object not found");
    };
    let body = json!({ "data": { "type": "device", "id": id, "attributes": {
        "name": mac.name,
        "device_name": mac.name,
        "status": mac.status,
        "serial_number": mac.serial,
        "last_seen_at": mac.last_seen_at,
    }}});
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn restart(State(x): State<Arc<Shared>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let _in_flight = match x.admit(format!("POST /api/v1/devices/{id}/restart"), &headers).await {
        Ok(g) => g,
        Err(answer) => return answer,
    };
    let mut s = x.lock();
    if let Some(next) = s.restart_script.pop_front() {
        return scripted(&mut s, next);
    }
    let lost = s.lost_answers.pop_front();
    let Some(mac) = id.parse::<u64>().ok().and_then(|id| s.macs.get_mut(&id)) else {
        return errors(StatusCode::NOT_FOUND, "object not found");
    };
    if mac.status != "enrolled" {
        return errors(StatusCode::UNPROCESSABLE_ENTITY, "device is not enrolled");
    }
    mac.restarts += 1;
    // A Mac that is down already runs nothing: the command waits for a check-in.
    if mac.answering(Instant::now()) {
        let down = Instant::now() + x.checkin;
        mac.down_from = Some(down);
        mac.up_at = (!mac.wedges).then(|| down + x.boot);
    }
    match lost {
        Some(status) => errors(StatusCode::from_u16(status).expect("a scripted status"), title(status)),
        None => StatusCode::ACCEPTED.into_response(),
    }
}

impl FakeSimpleMdm {
    /// Mac `id` (its listener on [`FakeSimpleMdm::port`]), then more with the builder.
    pub fn builder() -> SimpleMdmBuilder {
        SimpleMdmBuilder {
            api_key: API_KEY.into(),
            devices: Vec::new(),
            checkin: Duration::from_millis(300),
            boot: Duration::from_secs(4),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.lock()
    }

    fn with_mac<T>(&self, id: u64, f: impl FnOnce(&mut Mac) -> T) -> T {
        f(self.lock().macs.get_mut(&id).unwrap_or_else(|| panic!("no Mac {id} in this stand-in")))
    }

    /// The loopback port Mac `id` answers on while it is up.
    pub fn port(&self, id: u64) -> u16 {
        self.with_mac(id, |m| m.port)
    }

    /// Whether Mac `id` accepts a connection now.
    pub fn answering(&self, id: u64) -> bool {
        let port = self.port(id);
        std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).is_ok()
    }

    /// Restarts SimpleMDM accepted for Mac `id`.
    pub fn restarts(&self, id: u64) -> u32 {
        self.with_mac(id, |m| m.restarts)
    }

    /// A restart leaves Mac `id` down until its power is cycled (a hung boot).
    pub fn set_wedges(&self, id: u64, wedges: bool) {
        self.with_mac(id, |m| m.wedges = wedges);
    }

    /// The Mac's power, as its PDU outlet has it: off is silent; on after off boots it
    /// (silent for the boot time, then answering), a wedge included. Idempotent.
    pub fn set_power(&self, id: u64, on: bool) {
        let boot = self.shared.boot;
        self.with_mac(id, |m| {
            if on && !m.powered {
                let now = Instant::now();
                m.down_from = Some(now);
                m.up_at = Some(now + boot);
            }
            m.powered = on;
        });
    }

    /// Every request, `METHOD /path`, in order (refused ones included).
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Requests refused for their credentials.
    pub fn unauthorized(&self) -> u32 {
        self.lock().unauthorized
    }

    /// The most requests ever in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.lock().max_in_flight
    }

    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// Hold every request (counted in flight) until `hold(false)`.
    pub fn hold(&self, hold: bool) {
        self.shared.hold.send_replace(hold);
    }

    /// The next `n` requests (after authentication) are answered `status` with an
    /// `{"errors"}` body and, when given, a `Retry-After`.
    pub fn fail_next(&self, n: usize, status: u16, retry_after: Option<RetryAfter>) {
        let mut s = self.lock();
        s.script.extend(std::iter::repeat_n(Scripted { status, retry_after }, n));
    }

    /// The same for the next `n` restarts only (their devices looked up as usual).
    pub fn fail_next_restart(&self, n: usize, status: u16, retry_after: Option<RetryAfter>) {
        let mut s = self.lock();
        s.restart_script.extend(std::iter::repeat_n(Scripted { status, retry_after }, n));
    }

    /// The next restart is carried out, then answered `status` instead of 202: a proxy in
    /// front of SimpleMDM that lost the answer.
    pub fn lose_next_restart_answer(&self, status: u16) {
        self.lock().lost_answers.push_back(status);
    }

    /// Answers given from the script so far.
    pub fn scripted_answers(&self) -> u32 {
        self.lock().scripted_answers
    }

    /// Requests that came sooner than the previous answer's `Retry-After` allowed.
    pub fn early_retries(&self) -> Vec<String> {
        self.lock().early.clone()
    }
}
