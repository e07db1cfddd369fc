//! The HTTP API: routes, CORS, request logging, and the Hawk request view.
//!
//! Handlers authenticate, check scopes, parse input into domain types and talk
//! to the queue. They never drive hardware.

mod breaker;
mod dashboard;
mod dockerflow;
pub mod error;
mod events;
pub mod health;
pub mod medic;
pub use events::MAX_STREAMS;
mod jobs;
mod machine_page;
mod machines;
pub mod openapi;
pub mod params;
pub mod paths;
pub mod server;
pub mod tls;
pub mod wire;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::auth::replay::PendingClaim;
use crate::auth::{AuthError, Authenticator, Caller, HawkRequest};
use crate::config::Settings;
use crate::domain::{JobId, WorkerId};
use crate::inventory::InventoryHandle;
use crate::queue::Queue;
use crate::queue::records::Records;
use crate::task::Task;
use error::{ApiError, ErrorCode, ErrorNote};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub queue: Arc<dyn Queue>,
    /// The shared records (observations, holds, the medic's decisions).
    pub records: Arc<dyn Records>,
    /// The medic, for plans (`POST /api/v1/medic/plan`); its loop runs elsewhere.
    pub medic: Arc<crate::medic::Medic>,
    pub auth: Arc<Authenticator>,
    pub settings: Arc<Settings>,
    /// The machines (the inventory in force; reloaded on SIGHUP).
    pub inventory: InventoryHandle,
    /// The port this process listens on: what clients sign when no trusted proxy is in front.
    pub listen_port: u16,
    /// Wakes an in-process runner as soon as a job is queued (embedded mode).
    pub wake: Arc<Notify>,
    /// Wakes an in-process path checker as soon as a check is asked for.
    pub paths_wake: Arc<Notify>,
    /// Permits for live job streams (`/api/v1/jobs/{id}/events`).
    pub streams: Arc<Semaphore>,
    /// Cancelled when the process stops, so live streams end and shutdown is not held up.
    pub stopping: CancellationToken,
}

impl AppState {
    /// Verify the request from its method, target, Host and Authorization header; its
    /// replay claim is still owed (see [`Authenticated`] and [`Unclaimed`]).
    pub async fn verify(
        &self,
        method: &Method,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
    ) -> Result<(Caller, PendingClaim), ApiError> {
        let req = self.hawk_request(method, uri, headers)?;
        Ok(self.auth.verify(&req).await?)
    }

    fn hawk_request(
        &self,
        method: &Method,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
    ) -> Result<HawkRequest, ApiError> {
        let authority = match headers.get(header::HOST) {
            Some(h) => h
                .to_str()
                .map_err(|_| ApiError::bad_request(ErrorCode::InvalidHost, "Host header is not valid ASCII"))?
                .to_string(),
            None => uri
                .authority()
                .map(|a| a.to_string())
                .ok_or_else(|| ApiError::bad_request(ErrorCode::InvalidHost, "missing Host header"))?,
        };
        let (host, host_port) = split_host_port(&authority).ok_or_else(|| {
            ApiError::bad_request(ErrorCode::InvalidHost, format!("invalid Host header {authority:?}"))
        })?;
        let port = if self.settings.trusted_proxy { forwarded_port(headers).or(host_port) } else { None }
            .unwrap_or(self.listen_port);
        // Two headers could be read differently by a proxy and by roller: neither is used.
        let refused = |why: &str| ApiError::from(AuthError::Refused(why.into()));
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let authorization = match (values.next(), values.next()) {
            (None, _) => None,
            (Some(_), Some(_)) => return Err(refused("more than one Authorization header; send exactly one")),
            (Some(v), None) => {
                Some(v.to_str().map_err(|_| refused("Authorization header is not valid ASCII"))?.to_string())
            }
        };
        Ok(HawkRequest {
            method: method.as_str().to_ascii_uppercase(),
            resource: uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| uri.path().to_string()),
            host: host.to_ascii_lowercase(),
            port,
            authorization,
        })
    }
}

/// An authenticated caller, as a handler argument. Put it before the
/// arguments that parse input, so authentication comes first.
/// Its header is accepted once: the replay claim is made before the handler runs.
pub struct Authenticated(pub Caller);

impl axum::extract::FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &AppState) -> Result<Self, ApiError> {
        let Unclaimed(caller, pending) = Unclaimed::from_request_parts(parts, state).await?;
        state.auth.claim(pending).await?;
        Ok(Authenticated(caller))
    }
}

/// A verified caller whose replay claim is still owed, for a handler whose one queue
/// write carries the claim (the enqueue: no round trip of its own). The handler must
/// settle it before anything it answers depends on stored state (`jobs::enqueue`).
pub struct Unclaimed(pub Caller, pub PendingClaim);

impl axum::extract::FromRequestParts<AppState> for Unclaimed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &AppState) -> Result<Self, ApiError> {
        // The request log says what was asked for even when the answer is a refusal.
        let notes = parts.extensions.get::<RequestNotes>().cloned().unwrap_or_default();
        note_subject(parts, &notes).await;
        // The signature covers the target as the client sent it, before any nesting rewrote it.
        let uri = match parts.extensions.get::<axum::extract::OriginalUri>() {
            Some(original) => original.0.clone(),
            None => parts.uri.clone(),
        };
        let (caller, pending) = state.verify(&parts.method, &uri, &parts.headers).await?;
        notes.note(|f| f.client_id = Some(caller.client_id.to_string()));
        Ok(Unclaimed(caller, pending))
    }
}

/// The machine, job and task a request names, for its log line: only values that parse
/// (a worker id, a job id, a task roller knows), so the log holds nothing a client invented.
async fn note_subject(parts: &mut axum::http::request::Parts, notes: &RequestNotes) {
    #[derive(serde::Deserialize)]
    struct TaskName {
        task_name: Option<String>,
    }
    let task = axum::extract::Query::<TaskName>::try_from_uri(&parts.uri)
        .ok()
        .and_then(|q| q.0.task_name)
        .and_then(|name| Task::parse(&name));
    use axum::extract::FromRequestParts;
    let params = axum::extract::RawPathParams::from_request_parts(parts, &()).await.ok();
    let param = |name: &str| params.iter().flat_map(|p| p.iter()).find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
    let worker_id = param("worker_id").and_then(|w| WorkerId::parse(&w).ok());
    let job = param("task_id").and_then(|j| JobId::parse(&j).ok());
    notes.note(|f| {
        f.task = task.map(|t| t.name().to_string());
        f.worker_id = worker_id.map(|w| w.to_string());
        f.task_id = job.map(|j| j.to_string());
    });
}

/// `X-Forwarded-Port`, else 443 for `X-Forwarded-Proto: https` (Taskcluster's own rule).
fn forwarded_port(headers: &HeaderMap) -> Option<u16> {
    // A chain of proxies appends ("443, 8080"): the first value is what the client used.
    let first =
        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.split(',').next()).map(str::trim);
    if let Some(port) = first("x-forwarded-port").and_then(|p| p.parse().ok()) {
        return Some(port);
    }
    match first("x-forwarded-proto") {
        Some(p) if p.eq_ignore_ascii_case("https") => Some(443),
        Some(p) if p.eq_ignore_ascii_case("http") => Some(80),
        _ => None,
    }
}

/// Split `host[:port]` and `[v6][:port]`. The host part must be a plausible
/// host name or address; the port, when present, a number.
pub fn split_host_port(authority: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse().ok()?),
        };
        (h, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p.parse().ok()?)),
            None => (authority, None),
        }
    };
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'));
    ok.then(|| (host.to_string(), port))
}

/// Build the router with its middleware.
pub fn router(state: AppState) -> Router {
    let group_jobs: MethodRouter<AppState> =
        MethodRouter::new().post(jobs::enqueue_group_form).options(jobs::preflight).fallback(method_not_allowed);
    let worker_jobs: MethodRouter<AppState> = MethodRouter::new()
        .post(jobs::enqueue_query_form)
        .get(jobs::history)
        .options(jobs::preflight_query_form)
        .fallback(method_not_allowed);
    Router::new()
        .route("/api/v1/workers/{worker_id}/group/{worker_group}/jobs", group_jobs)
        .route("/api/v1/workers/{worker_id}/jobs", worker_jobs)
        .route("/api/v1/jobs/{task_id}", get(jobs::get_job).fallback(method_not_allowed))
        .route("/api/v1/jobs/{task_id}/events", get(events::job_events).fallback(method_not_allowed))
        .route("/api/v1/workers/{worker_id}/breaker", get(breaker::status).fallback(method_not_allowed))
        .route("/api/v1/workers/{worker_id}/breaker/reset", post(breaker::reset).fallback(method_not_allowed))
        .route("/api/v1/health", get(health::fleet).fallback(method_not_allowed))
        .route("/api/v1/machines/{worker_id}/health", get(health::machine).fallback(method_not_allowed))
        .route("/api/v1/machines/{worker_id}/hold", post(medic::hold).fallback(method_not_allowed))
        .route("/api/v1/machines/{worker_id}/release", post(medic::release).fallback(method_not_allowed))
        .route("/api/v1/medic/decisions", get(medic::decisions).fallback(method_not_allowed))
        .route("/api/v1/paths", get(paths::fleet_paths).fallback(method_not_allowed))
        .route("/api/v1/paths/check", post(paths::check_shared_paths).fallback(method_not_allowed))
        .route("/api/v1/machines/{worker_id}/paths", get(paths::machine_paths).fallback(method_not_allowed))
        .route(
            "/api/v1/machines/{worker_id}/paths/check",
            post(paths::check_machine_paths).fallback(method_not_allowed),
        )
        .route("/api/v1/medic/plan", post(medic::plan).fallback(method_not_allowed))
        .route("/api/v1/medic/allow", post(medic::allow).fallback(method_not_allowed))
        .route("/api/v1/whoami", get(machines::whoami).fallback(method_not_allowed))
        .route("/api/v1/machines", get(machines::machines).fallback(method_not_allowed))
        .route("/api/v1/machines/{worker_id}", get(machine_page::machine_page).fallback(method_not_allowed))
        .route("/", get(dashboard::index).fallback(method_not_allowed))
        .route("/ui/app.js", get(dashboard::script).fallback(method_not_allowed))
        .route("/ui/health.js", get(dashboard::health_script).fallback(method_not_allowed))
        .route("/ui/fleet.js", get(dashboard::fleet_script).fallback(method_not_allowed))
        .route("/ui/machine.js", get(dashboard::machine_script).fallback(method_not_allowed))
        .route("/ui/app.css", get(dashboard::style).fallback(method_not_allowed))
        .route("/__lbheartbeat__", get(dockerflow::lbheartbeat).fallback(method_not_allowed))
        .route("/__heartbeat__", get(dockerflow::heartbeat).fallback(method_not_allowed))
        .route("/__version__", get(dockerflow::version).fallback(method_not_allowed))
        .route("/metrics", get(dockerflow::metrics).fallback(method_not_allowed))
        .route("/api/v1/openapi.json", get(openapi::openapi_json).fallback(method_not_allowed))
        .fallback(not_found)
        // Innermost first: a panic or a timeout still gets CORS headers and a log line.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| ApiError::internal().into_response()))
        .layer(middleware::from_fn(request_timeout))
        .layer(middleware::from_fn_with_state(state.clone(), cors))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// What a `roller worker` serves on `metrics_bind`: the operational endpoints only
/// (it holds no clients, so the job routes would only ever answer 403).
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/__lbheartbeat__", get(dockerflow::lbheartbeat).fallback(method_not_allowed))
        .route("/__heartbeat__", get(dockerflow::heartbeat).fallback(method_not_allowed))
        .route("/__version__", get(dockerflow::version).fallback(method_not_allowed))
        .route("/metrics", get(dockerflow::metrics).fallback(method_not_allowed))
        .fallback(not_found)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| ApiError::internal().into_response()))
        .layer(middleware::from_fn(request_timeout))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// No request may hang: a stalled disk or queue backend answers 503 after this long.
/// (Work already handed to the queue's blocking pool still completes; a retried
/// enqueue is coalesced with it.)
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

async fn request_timeout(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(res) => res,
        Err(_) => ApiError::unavailable(ErrorCode::Timeout, "request timed out, try again later").into_response(),
    }
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::method_not_allowed(method.as_str())
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

/// What a connection beyond `[server] max_connections` is answered (`server::serve`).
pub fn overload_router(state: AppState) -> Router {
    Router::new()
        .fallback(too_many_connections)
        .layer(middleware::from_fn_with_state(state.clone(), cors))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

async fn too_many_connections() -> ApiError {
    ApiError::unavailable(ErrorCode::TooManyConnections, "too many connections to roller; try again later")
}

/// The seed's CORS answers (also written by hand where roller answers before the router:
/// `server::refusal`).
const CORS_ALLOW_HEADERS: &str = "Authorization,Content-Type";
const CORS_ALLOW_METHODS: &str = "OPTIONS,POST";

/// The seed's CORS headers, on every response (errors included), so browsers
/// can read error details too.
async fn cors(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    if let Ok(origin) = HeaderValue::from_str(&state.settings.cors_origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(CORS_ALLOW_HEADERS));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(CORS_ALLOW_METHODS));
    res
}

/// Who asked for what, for the request log line: noted as the request is understood
/// (`Authenticated` notes the subject, then the client once its signature verifies), and
/// attached by a handler to its response (the job it created).
#[derive(Clone, Default)]
pub struct LogFields {
    /// The caller, once authenticated.
    pub client_id: Option<String>,
    /// The job (`task_id` on the wire).
    pub task_id: Option<String>,
    /// The task's name (`task_name`).
    pub task: Option<String>,
    /// The machine.
    pub worker_id: Option<String>,
}

impl LogFields {
    /// `other`'s fields where it has them.
    fn merge(&mut self, other: &LogFields) {
        let pick = |mine: &mut Option<String>, theirs: &Option<String>| {
            if theirs.is_some() {
                mine.clone_from(theirs);
            }
        };
        pick(&mut self.client_id, &other.client_id);
        pick(&mut self.task_id, &other.task_id);
        pick(&mut self.task, &other.task);
        pick(&mut self.worker_id, &other.worker_id);
    }
}

/// The request's [`LogFields`] as noted so far, shared through the request's extensions.
#[derive(Clone, Default)]
struct RequestNotes(Arc<Mutex<LogFields>>);

impl RequestNotes {
    fn note(&self, f: impl FnOnce(&mut LogFields)) {
        f(&mut self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    }

    fn fields(&self) -> LogFields {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// One log line per request. The path is logged as received (hyper refuses raw
/// control characters in a request target, and the JSON formatter escapes the
/// rest); the Authorization header never is. A refusal (401, 403, 409) says who (when
/// the signature verified), what task on which machine, and why, and is counted in
/// `roller_requests_refused_total{status,reason}`.
async fn log_request(mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let notes = RequestNotes::default();
    req.extensions_mut().insert(notes.clone());
    let res = next.run(req).await;
    let mut f = notes.fields();
    if let Some(attached) = res.extensions().get::<LogFields>() {
        f.merge(attached);
    }
    let status = res.status().as_u16();
    let error = res.extensions().get::<ErrorNote>();
    let reason = error.map(|e| e.code.name());
    if matches!(status, 401 | 403 | 409) {
        let reason = reason.clone().unwrap_or_else(|| "-".into());
        metrics::counter!("roller_requests_refused_total", "status" => status.to_string(), "reason" => reason)
            .increment(1);
    }
    tracing::info!(
        method = %method,
        path = %path,
        status,
        latency_ms = start.elapsed().as_secs_f64() * 1000.0,
        client_id = f.client_id.as_deref().unwrap_or("-"),
        task_id = f.task_id.as_deref().unwrap_or("-"),
        task = f.task.as_deref().unwrap_or("-"),
        worker_id = f.worker_id.as_deref().unwrap_or("-"),
        reason = reason.as_deref().unwrap_or("-"),
        detail = error.map(|e| e.detail.as_str()).unwrap_or("-"),
        "request"
    );
    res
}

#[cfg(test)]
mod tests {
    use super::split_host_port;

    #[test]
    fn host_headers_split_into_name_and_port() {
        assert_eq!(split_host_port("example.com"), Some(("example.com".into(), None)));
        assert_eq!(split_host_port("127.0.0.1:8000"), Some(("127.0.0.1".into(), Some(8000))));
        assert_eq!(split_host_port("[::1]:8000"), Some(("::1".into(), Some(8000))));
        assert_eq!(split_host_port("[::1]"), Some(("::1".into(), None)));
        for bad in ["", ":80", "a:b", "a b", "[::1", "host:99999", "x/y"] {
            assert_eq!(split_host_port(bad), None, "{bad:?}");
        }
    }
}

#[cfg(test)]
mod forwarded_tests {
    use axum::http::HeaderMap;

    use super::forwarded_port;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap())).collect()
    }

    #[test]
    fn the_forwarded_port_is_the_first_proxys_view() {
        assert_eq!(forwarded_port(&headers(&[("x-forwarded-port", "8443")])), Some(8443));
        assert_eq!(forwarded_port(&headers(&[("x-forwarded-port", "443, 8080")])), Some(443));
        assert_eq!(forwarded_port(&headers(&[("x-forwarded-proto", "https")])), Some(443));
        assert_eq!(forwarded_port(&headers(&[("x-forwarded-proto", "https, http")])), Some(443));
        assert_eq!(forwarded_port(&headers(&[("x-forwarded-proto", "http")])), Some(80));
        // An unusable port falls through to the scheme.
        assert_eq!(forwarded_port(&headers(&[("x-forwarded-port", "x"), ("x-forwarded-proto", "https")])), Some(443));
        assert_eq!(forwarded_port(&headers(&[])), None);
    }
}
