//! SimpleMDM's REST API (`https://a.simplemdm.com/api/v1`): look a device up, ask it to
//! restart. For Macs without a BMC (Apple-silicon Mac minis), where the MDM is the only
//! way to ask for a restart short of cutting power at the PDU.
//!
//! What SimpleMDM documents, and what RelOps' own client does with it:
//! * HTTP Basic with the API key as the user name and an empty password. The key travels
//!   only in that header (reqwest marks it sensitive): never in a URL, a log line or an
//!   error; text SimpleMDM sends back is scrubbed of it before it is quoted.
//! * `POST /devices/{id}/restart` answers 202: SimpleMDM queued Apple's `RestartDevice`
//!   command, which the Mac runs when its MDM agent next checks in. An in-band restart: a
//!   wedged OS or a Mac off the network never runs it, and nothing here cuts power.
//! * Errors are `{"errors":[{"title": …}]}` with the HTTP status.
//! * No published rate limit; RelOps saw a 429 at three concurrent lookups, and retries
//!   429, 500, 502, 503 and 504 up to six tries with a doubling backoff from 2 s, honouring
//!   `Retry-After`. So does this client, within each call's deadline, and every call of
//!   the process takes one of `max_concurrent` slots first: the limit is the account's,
//!   not a device's, so it is shared by every job.
//!
//! Except for one case: a restart is never sent twice. A second restart queued behind the
//! first restarts the Mac again at the check-in after its boot (killing whatever CI task
//! it took by then). So the restart is tried again only on answers that say it was not
//! taken (429, 503) and on connections that never opened; an answer that leaves it open
//! (500, 502, 504 from SimpleMDM or a proxy in front of it, or no answer at all) makes the
//! restart [`Restart::Unconfirmed`]: sent, perhaps queued. Like an ssh reboot whose session
//! went silent, the reboot chain's proof then decides whether it happened, instead of the
//! chain cutting power under a Mac that may be restarting. The lookup, which changes
//! nothing, is tried again on all five.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

pub const DEFAULT_API_URL: &str = "https://a.simplemdm.com/api/v1";
/// RelOps' client (`_MAX_ATTEMPTS`): one try and five more.
const MAX_ATTEMPTS: u32 = 6;
/// The wait after the first retryable answer without `Retry-After`; it doubles each time.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A device record is a few KiB; anything this large is not SimpleMDM talking.
const MAX_BODY: usize = 1024 * 1024;
const MAX_MESSAGE: usize = 300;
/// The statuses RelOps tries again on: fine for a lookup, which changes nothing.
const RETRYABLE: [u16; 5] = [429, 500, 502, 503, 504];
/// The statuses that say a request was not taken (rate limited, unavailable): the only ones
/// a restart is sent again on. The other three may come after SimpleMDM queued it.
const NOT_TAKEN: [u16; 2] = [429, 503];

/// A device's id in SimpleMDM (a positive integer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(u64);

impl DeviceId {
    pub fn new(id: u64) -> Option<DeviceId> {
        (id > 0).then_some(DeviceId(id))
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for DeviceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// How hard the client may lean on the account, and how long a call may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Calls in flight at once from this process, whichever job makes them.
    pub max_concurrent: usize,
    /// One HTTP request.
    pub timeout: Duration,
    /// One call, its retries and its waits for a slot included (and never past the
    /// caller's own deadline).
    pub retry_within: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        // Two: RelOps saw a 429 at three concurrent lookups.
        Limits { max_concurrent: 2, timeout: Duration::from_secs(30), retry_within: Duration::from_secs(120) }
    }
}

/// What a call is doing while it is not yet answered, for the caller's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Every slot of the process's cap is taken: this call waits for one.
    WaitingForSlot { cap: usize },
    /// Try `attempt` was answered `status` (`None`: no connection); the next goes out after `wait`.
    Retrying { attempt: u32, status: Option<u16>, wait: Duration, from: WaitFrom },
}

/// Where a retry's wait came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFrom {
    /// SimpleMDM's `Retry-After` (seconds or an HTTP date).
    RetryAfter,
    /// The doubling backoff, when SimpleMDM said nothing.
    Backoff,
}

/// What bounds a call and who hears about it.
pub struct Budget<'a> {
    /// The caller's deadline (the job's soft limit), if any; the call also ends within
    /// [`Limits::retry_within`].
    pub deadline: Option<Instant>,
    pub cancel: &'a CancellationToken,
    pub progress: &'a (dyn Fn(Progress) + Send + Sync),
}

/// A device as SimpleMDM describes it (`data.attributes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub id: DeviceId,
    /// `name`, else `device_name` (what macOS calls itself), else empty.
    pub name: String,
    /// `enrolled` or `unenrolled`: an unenrolled Mac takes no MDM command.
    pub status: String,
    /// The last MDM check-in, when SimpleMDM reports it.
    pub last_seen_at: Option<String>,
}

/// What became of a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restart {
    /// SimpleMDM answered `status` (202): the command is queued for the Mac.
    Queued { status: u16 },
    /// The request went out and no answer said whether it was taken (`status`: what came
    /// back, if anything). It may be queued, so it is not sent again.
    Unconfirmed { status: Option<u16>, why: String },
}

/// One call's outcome short of an error: done, or (for a call that must not be repeated)
/// left open.
enum Answer {
    Done(StatusCode, Vec<u8>),
    Open { status: Option<u16>, why: String },
}

#[derive(Debug, thiserror::Error)]
pub enum SimpleMdmError {
    #[error(
        "invalid SimpleMDM API URL {0:?}: https (http only on a loopback address), without credentials, query or fragment"
    )]
    InvalidUrl(String),
    #[error(
        "the SimpleMDM API key was refused (HTTP 401 on {method} {path}): check simplemdm.api_key_env / api_key_file"
    )]
    KeyRefused { method: Method, path: String },
    #[error("SimpleMDM has no device {0} (HTTP 404): check the machine's [mdm] device_id in the inventory")]
    NoDevice(DeviceId),
    /// Any other refusal (403: the key lacks the permission; 422: the device cannot take it).
    #[error("SimpleMDM {method} {path}: HTTP {status}: {message}")]
    Refused { method: Method, path: String, status: u16, message: String },
    /// Retryable answers until the tries or the call's time ran out.
    #[error("SimpleMDM {method} {path}: {last} after {attempts} tries; {why}")]
    GaveUp { method: Method, path: String, last: String, attempts: u32, why: String },
    #[error("SimpleMDM: every one of the process's {cap} slots stayed busy for {waited:?}, until this call's deadline")]
    Busy { cap: usize, waited: Duration },
    #[error("SimpleMDM {method} {path}: no answer within {after:?}")]
    Timeout { method: Method, path: String, after: Duration },
    #[error("SimpleMDM {method} {path}: {source}")]
    Http {
        method: Method,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("SimpleMDM {method} {path}: unexpected answer: {detail}")]
    Protocol { method: Method, path: String, detail: String },
    #[error("cancelled")]
    Cancelled,
}

/// The API's base URL as the client uses it (ending in `/`), or why `url` cannot be one:
/// https with a host and no credentials, query or fragment; plain http only to a loopback
/// address (a stand-in), since the key travels in every request.
pub fn base_url(url: &str) -> Result<Url, SimpleMdmError> {
    let invalid = || SimpleMdmError::InvalidUrl(super::url_for_message(url));
    let mut base = Url::parse(url).map_err(|_| invalid())?;
    let host = base.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback());
    let plain = (base.scheme() == "https" || (base.scheme() == "http" && loopback))
        && base.host_str().is_some()
        && base.username().is_empty()
        && base.password().is_none()
        && base.query().is_none()
        && base.fragment().is_none();
    if !plain {
        return Err(invalid());
    }
    let path = base.path().trim_end_matches('/').to_string();
    base.set_path(&format!("{path}/"));
    Ok(base)
}

/// One SimpleMDM account. Clones share the process-wide slots.
#[derive(Clone)]
pub struct SimpleMdm {
    base: Url,
    api_key: SecretString,
    http: reqwest::Client,
    limits: Limits,
    /// One account, one rate limit: every call of this process holds a slot while it is
    /// in flight (not while it waits to retry), whichever job makes it.
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for SimpleMdm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimpleMdm")
            .field("base", &self.base.as_str())
            .field("api_key", &"[redacted]")
            .field("limits", &self.limits)
            .finish()
    }
}

impl SimpleMdm {
    pub fn new(api_url: &str, api_key: SecretString, limits: Limits) -> Result<SimpleMdm, SimpleMdmError> {
        let base = base_url(api_url)?;
        let http = reqwest::Client::builder()
            .connect_timeout(limits.timeout)
            .user_agent(concat!("roller/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| SimpleMdmError::InvalidUrl(super::url_for_message(api_url)))?;
        let limits = Limits { max_concurrent: limits.max_concurrent.max(1), ..limits };
        Ok(SimpleMdm { base, api_key, http, limits, slots: Arc::new(Semaphore::new(limits.max_concurrent)) })
    }

    /// The API's base URL, for messages (no credentials are ever in it).
    pub fn base(&self) -> &str {
        self.base.as_str()
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// `GET /devices/{id}`: the device's name, enrolment and last check-in.
    #[tracing::instrument(name = "simplemdm_device", skip(self, budget), fields(device = %id))]
    pub async fn device(&self, id: DeviceId, budget: &Budget<'_>) -> Result<Device, SimpleMdmError> {
        let path = format!("devices/{id}");
        let body = match self.call(Method::GET, &path, id, budget).await? {
            Answer::Done(_, body) => body,
            Answer::Open { why, .. } => return Err(protocol(&Method::GET, &path, why)),
        };
        parse_device(&body, id).map_err(|detail| protocol(&Method::GET, &path, detail))
    }

    /// `POST /devices/{id}/restart`: queue a restart for the device's next MDM check-in.
    /// Never sent twice (module docs): an answer that leaves it open is `Unconfirmed`.
    #[tracing::instrument(name = "simplemdm_restart", skip(self, budget), fields(device = %id))]
    pub async fn restart(&self, id: DeviceId, budget: &Budget<'_>) -> Result<Restart, SimpleMdmError> {
        Ok(match self.call(Method::POST, &format!("devices/{id}/restart"), id, budget).await? {
            Answer::Done(status, _) => Restart::Queued { status: status.as_u16() },
            Answer::Open { status, why } => Restart::Unconfirmed { status, why },
        })
    }

    /// One call with its retries: done, left open (a POST only), or the error. A GET is
    /// tried again on every status of [`RETRYABLE`]; a POST only on [`NOT_TAKEN`].
    async fn call(
        &self,
        method: Method,
        path: &str,
        id: DeviceId,
        budget: &Budget<'_>,
    ) -> Result<Answer, SimpleMdmError> {
        let repeatable = method == Method::GET;
        let start = Instant::now();
        let own = start + self.limits.retry_within;
        let deadline = budget.deadline.map_or(own, |d| d.min(own));
        let url = self.base.join(path).map_err(|e| protocol(&method, path, e.to_string()))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let slot = self.slot(start, deadline, budget).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(SimpleMdmError::Timeout { method, path: path.into(), after: start.elapsed() });
            }
            let timeout = self.limits.timeout.min(left);
            let req = self
                .http
                .request(method.clone(), url.clone())
                .basic_auth(self.api_key.expose_secret(), Some(""))
                .header("Accept", "application/json")
                .timeout(timeout);
            let send = async {
                let resp = req.send().await?;
                let status = resp.status();
                let retry_after = retry_after(resp.headers(), SystemTime::now());
                let bytes = super::read_bounded(resp, MAX_BODY).await?;
                Ok::<_, reqwest::Error>((status, retry_after, bytes))
            };
            let answer = tokio::select! {
                biased;
                _ = budget.cancel.cancelled() => return Err(SimpleMdmError::Cancelled),
                r = send => r,
            };
            drop(slot);
            let (status, asked) = match answer {
                Ok((status, _, bytes)) if status.is_success() => return Ok(Answer::Done(status, bytes)),
                Ok((status, asked, _)) if NOT_TAKEN.contains(&status.as_u16()) => (Some(status.as_u16()), asked),
                Ok((status, asked, _)) if repeatable && RETRYABLE.contains(&status.as_u16()) => {
                    (Some(status.as_u16()), asked)
                }
                Ok((status, _, bytes)) if RETRYABLE.contains(&status.as_u16()) => {
                    let title = super::scrub(&error_title(&bytes), self.api_key.expose_secret(), MAX_MESSAGE);
                    let why = format!("HTTP {} ({title}), which does not say whether it was taken", status.as_u16());
                    return Ok(Answer::Open { status: Some(status.as_u16()), why });
                }
                Ok((status, _, bytes)) => return Err(self.refusal(&method, path, id, status, &bytes)),
                // The connection never opened: nothing reached SimpleMDM, so trying again is safe.
                Err(e) if e.is_connect() => (None, None),
                Err(e) if !repeatable => {
                    let why = if e.is_timeout() {
                        format!("no answer within {}s", timeout.as_secs_f64())
                    } else {
                        format!("the connection failed before an answer ({})", e.without_url())
                    };
                    return Ok(Answer::Open { status: None, why });
                }
                Err(e) if e.is_timeout() => {
                    return Err(SimpleMdmError::Timeout { method, path: path.into(), after: timeout });
                }
                Err(e) => return Err(SimpleMdmError::Http { method, path: path.into(), source: e.without_url() }),
            };
            let last = match status {
                Some(429) => "HTTP 429 (rate limited)".to_string(),
                Some(s) => format!("HTTP {s}"),
                None => "no connection".to_string(),
            };
            if attempt >= MAX_ATTEMPTS {
                return Err(self.gave_up(
                    &method,
                    path,
                    &last,
                    attempt,
                    format!("SimpleMDM gets at most {MAX_ATTEMPTS} tries"),
                ));
            }
            let (wait, from) = match asked {
                Some(w) => (w, WaitFrom::RetryAfter),
                None => (backoff(attempt), WaitFrom::Backoff),
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if wait > left {
                let asked =
                    if from == WaitFrom::RetryAfter { "SimpleMDM asked for (Retry-After)" } else { "backing off" };
                let why = format!(
                    "the {}s {asked} would pass this call's deadline ({}s left of its {}s)",
                    wait.as_secs_f64().ceil(),
                    left.as_secs(),
                    deadline.saturating_duration_since(start).as_secs()
                );
                return Err(self.gave_up(&method, path, &last, attempt, why));
            }
            metrics::counter!("roller_simplemdm_retries_total", "status" => status.map_or("connect".to_string(), |s| s.to_string()))
                .increment(1);
            tracing::info!(attempt, ?status, wait_ms = wait.as_millis() as u64, ?from, "SimpleMDM: trying again");
            (budget.progress)(Progress::Retrying { attempt, status, wait, from });
            tokio::select! {
                biased;
                _ = budget.cancel.cancelled() => return Err(SimpleMdmError::Cancelled),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One of the process's slots, waiting (and saying so) while all are taken, until
    /// `deadline`.
    async fn slot(
        &self,
        start: Instant,
        deadline: Instant,
        budget: &Budget<'_>,
    ) -> Result<OwnedSemaphorePermit, SimpleMdmError> {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Ok(p);
        }
        let cap = self.limits.max_concurrent;
        (budget.progress)(Progress::WaitingForSlot { cap });
        tokio::select! {
            biased;
            _ = budget.cancel.cancelled() => Err(SimpleMdmError::Cancelled),
            p = self.slots.clone().acquire_owned() => Ok(p.expect("the slots are never closed")),
            _ = tokio::time::sleep_until(deadline.into()) => Err(SimpleMdmError::Busy { cap, waited: start.elapsed() }),
        }
    }

    fn gave_up(&self, method: &Method, path: &str, last: &str, attempts: u32, why: String) -> SimpleMdmError {
        SimpleMdmError::GaveUp { method: method.clone(), path: path.into(), last: last.into(), attempts, why }
    }

    fn refusal(&self, method: &Method, path: &str, id: DeviceId, status: StatusCode, body: &[u8]) -> SimpleMdmError {
        match status.as_u16() {
            401 => SimpleMdmError::KeyRefused { method: method.clone(), path: path.into() },
            404 => SimpleMdmError::NoDevice(id),
            s => SimpleMdmError::Refused {
                method: method.clone(),
                path: path.into(),
                status: s,
                message: super::scrub(&error_title(body), self.api_key.expose_secret(), MAX_MESSAGE),
            },
        }
    }
}

/// `Retry-After` as a wait from `now`: whole seconds, or an HTTP date (a date already
/// past is no wait). `None` when absent or unreadable (the backoff applies).
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The wait after try `attempt` (from 1) when SimpleMDM gave no `Retry-After`.
fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(MAX_BACKOFF)
}

/// SimpleMDM's `{"errors":[{"title": …}]}`, else the body's first bytes.
fn error_title(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<Title>,
    }
    #[derive(Deserialize)]
    struct Title {
        title: String,
    }
    match serde_json::from_slice::<Errors>(body) {
        Ok(e) if !e.errors.is_empty() => e.errors.into_iter().map(|t| t.title).collect::<Vec<_>>().join("; "),
        _ => String::from_utf8_lossy(&body[..body.len().min(MAX_MESSAGE)]).trim().to_string(),
    }
}

fn parse_device(body: &[u8], want: DeviceId) -> Result<Device, String> {
    #[derive(Deserialize)]
    struct Envelope {
        data: Data,
    }
    #[derive(Deserialize)]
    struct Data {
        #[serde(rename = "type")]
        kind: String,
        id: u64,
        attributes: Attributes,
    }
    #[derive(Deserialize)]
    struct Attributes {
        name: Option<String>,
        device_name: Option<String>,
        status: Option<String>,
        last_seen_at: Option<String>,
    }
    let e: Envelope = serde_json::from_slice(body).map_err(|e| format!("not a device record: {e}"))?;
    if e.data.kind != "device" || e.data.id != want.get() {
        return Err(format!("asked for device {want}, got {} {}", e.data.kind, e.data.id));
    }
    let a = e.data.attributes;
    let bounded = |s: String| super::bounded(&s, MAX_MESSAGE);
    Ok(Device {
        id: want,
        name: bounded(a.name.or(a.device_name).unwrap_or_default()),
        status: bounded(a.status.unwrap_or_default()),
        last_seen_at: a.last_seen_at.map(bounded),
    })
}

fn protocol(method: &Method, path: &str, detail: String) -> SimpleMdmError {
    SimpleMdmError::Protocol { method: method.clone(), path: path.into(), detail: super::bounded(&detail, MAX_MESSAGE) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn base_urls_need_tls_except_on_loopback() {
        assert_eq!(base_url(DEFAULT_API_URL).unwrap().as_str(), "https://a.simplemdm.com/api/v1/");
        assert_eq!(base_url("http://127.0.0.1:8080/api/v1/").unwrap().as_str(), "http://127.0.0.1:8080/api/v1/");
        for bad in [
            "http://a.simplemdm.com/api/v1",
            "https://key:@a.simplemdm.com/api/v1",
            "https://a.simplemdm.com/api/v1?x=1",
            "ftp://127.0.0.1/",
            "not a url",
        ] {
            assert!(base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let header = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
            h
        };
        assert_eq!(retry_after(&header("7"), now), Some(Duration::from_secs(7)));
        let in_ten = httpdate::fmt_http_date(now + Duration::from_secs(10));
        assert_eq!(retry_after(&header(&in_ten), now), Some(Duration::from_secs(10)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(10));
        assert_eq!(retry_after(&header(&past), now), Some(Duration::ZERO));
        assert_eq!(retry_after(&header("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn the_backoff_doubles_from_two_seconds_and_is_capped() {
        let waits: Vec<u64> = (1..=7).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn device_records_and_errors_are_read_as_simplemdm_writes_them() {
        let id = DeviceId::new(42).unwrap();
        let body = br#"{"data":{"type":"device","id":42,"attributes":{"name":"macmini-r8-1","status":"enrolled",
            "last_seen_at":"2026-08-14T10:00:00.000-07:00","serial_number":"C07"}}}"#;
        let d = parse_device(body, id).unwrap();
        assert_eq!((d.name.as_str(), d.status.as_str()), ("macmini-r8-1", "enrolled"));
        assert_eq!(d.last_seen_at.as_deref(), Some("2026-08-14T10:00:00.000-07:00"));
        let other = br#"{"data":{"type":"device","id":43,"attributes":{}}}"#;
        assert!(parse_device(other, id).unwrap_err().contains("got device 43"));
        assert_eq!(error_title(br#"{"errors":[{"title":"object not found"}]}"#), "object not found");
        assert_eq!(error_title(b"<html>bad gateway</html>"), "<html>bad gateway</html>");
        assert!(DeviceId::new(0).is_none());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let c =
            SimpleMdm::new(DEFAULT_API_URL, SecretString::from("sekrit-key".to_string()), Limits::default()).unwrap();
        assert!(!format!("{c:?}").contains("sekrit"));
    }
}
