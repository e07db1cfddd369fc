//! The one mapping from errors to HTTP responses: a status and
//! `{"detail": …, "error_code": …}`. `detail` is for people (its text may change;
//! old clients read it), `error_code` is for programs (stable, listed in
//! [`ErrorCode`] and in the OpenAPI document). Internal details (paths, backend
//! messages) go to the log, not to clients.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::AuthError;
use crate::queue::QueueError;

/// The message Django REST Framework used for a scope failure; clients match on it.
pub const PERMISSION_DENIED: &str = "You do not have permission to perform this action.";

/// A verified header whose nonce could not be checked against the record of used ones:
/// refused, never accepted unchecked.
pub const REPLAY_CHECK_UNAVAILABLE: &str = "authentication unavailable: the replay check cannot reach the job queue's \
     backend (Redis or the SQLite file), so the request was not accepted; try again later";

/// Why a request was refused, for programs. Stable: a code is never renamed or
/// reused; new ones may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A path segment is not what the route takes (a worker id, a job id).
    InvalidPath,
    /// The query string does not parse, or a value in it is out of range.
    InvalidQuery,
    /// `task_name` is missing.
    MissingTaskName,
    /// `task_name` names no task this roller runs.
    UnknownTask,
    /// A worker id, group, provisioner id or worker type is not well-formed.
    InvalidName,
    /// The `Origin` header is not an origin.
    InvalidOrigin,
    /// The `Host` header is missing or not a host.
    InvalidHost,
    /// The credentials were refused (missing, malformed, wrong, expired, replayed).
    InvalidCredentials,
    /// Authenticated, without the scope this needs.
    InsufficientScope,
    NotFound,
    MethodNotAllowed,
    /// The reboot-loop breaker refuses a restart of this machine now.
    RestartBreakerOpen,
    /// A task that restarts a machine, for a machine the inventory does not describe.
    NotInInventory,
    /// An override (a breaker reset, a hold, a release, a batch) needs a reason.
    MissingReason,
    /// A release of a machine that is not held.
    NotHeld,
    /// Too many live job streams; try again later.
    TooManyStreams,
    /// Roller is serving as many connections as it may (`[server] max_connections`); this
    /// one is closed after the answer. Try again later.
    TooManyConnections,
    /// A plain-HTTP request to roller's HTTPS port (`[server] tls_cert_file`): use https://.
    /// Answered before any routing, in plain HTTP, and the connection closed.
    HttpsRequired,
    /// A request head with a control character in it (a header value, a header name, the
    /// request line). Answered before any routing, and the connection closed.
    InvalidHeader,
    QueueUnavailable,
    /// Taskcluster's `authenticateHawk`, or the replay check's record of used nonces
    /// (the queue backend), did not answer: the request was not accepted.
    AuthUnavailable,
    /// The request took longer than the server allows.
    Timeout,
    /// A stored job could not be read: an operator must look.
    QueueCorrupt,
    Internal,
}

impl ErrorCode {
    /// The code as it is sent (`restart_breaker_open`).
    pub fn name(self) -> String {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(s)) => s,
            _ => format!("{self:?}"),
        }
    }
}

/// What the request log says about an error response: its code and words.
#[derive(Debug, Clone)]
pub struct ErrorNote {
    pub code: ErrorCode,
    pub detail: String,
}

/// A refusal: the status, the stable code and the words.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    detail: String,
}

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode, detail: impl Into<String>) -> Self {
        Self { status, code, detail: detail.into() }
    }

    pub fn bad_request(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "Not found.")
    }

    /// A 404 that says what was not found, and where to look.
    pub fn not_found_because(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, detail)
    }

    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            format!("Method \"{method}\" not allowed."),
        )
    }

    /// The request is well-formed and allowed, but a safety rail refuses it now.
    pub fn conflict(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    pub fn unavailable(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, detail)
    }

    /// The credentials themselves are refused (403, as Taskcluster services answer).
    pub fn refused(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorCode::InvalidCredentials, detail)
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, "internal server error")
    }

    /// An authenticated caller without the scope this needs: the seed's words, then which
    /// client lacks which scope (the caller is authenticated: naming the scope tells it
    /// nothing it could not read in the docs, and names the fix).
    pub fn permission_denied(client_id: &str, scope: &str) -> Self {
        metrics::counter!("roller_auth_failures_total", "reason" => "scope").increment(1);
        let detail = format!(
            "{PERMISSION_DENIED} Client '{client_id}' lacks the scope '{scope}': grant it to the client \
             (or a role it has), or use credentials that have it (GET /api/v1/whoami lists this client's scopes)."
        );
        Self::new(StatusCode::FORBIDDEN, ErrorCode::InsufficientScope, detail)
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Refused(m) => {
                metrics::counter!("roller_auth_failures_total", "reason" => "credentials").increment(1);
                ApiError::refused(m)
            }
            AuthError::Unavailable(m) => {
                metrics::counter!("roller_auth_failures_total", "reason" => "auth_service_unavailable").increment(1);
                tracing::warn!(error = %m, "authentication service unavailable");
                ApiError::unavailable(ErrorCode::AuthUnavailable, "authentication service unavailable, try again later")
            }
            AuthError::ReplayCheckUnavailable(m) => {
                metrics::counter!("roller_auth_failures_total", "reason" => "replay_check_unavailable").increment(1);
                tracing::warn!(error = %m, "the replay check cannot reach the queue backend");
                ApiError::unavailable(ErrorCode::AuthUnavailable, REPLAY_CHECK_UNAVAILABLE)
            }
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        tracing::error!(error = %e, "job queue error");
        match e {
            // Waiting will not mend a damaged record: a 503 would invite retries forever.
            QueueError::Corrupt(..) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::QueueCorrupt,
                "a stored job cannot be read; the operator has been told (see roller's log)",
            ),
            QueueError::Unavailable(_) | QueueError::LostLease(_) => {
                ApiError::unavailable(ErrorCode::QueueUnavailable, "job queue unavailable, try again later")
            }
        }
    }
}

/// The body of every refusal.
#[derive(Serialize)]
struct Body<'a> {
    detail: &'a str,
    error_code: ErrorCode,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, Json(Body { detail: &self.detail, error_code: self.code })).into_response();
        res.extensions_mut().insert(ErrorNote { code: self.code, detail: self.detail });
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_snake_case_words_and_a_corrupt_record_is_not_a_retry() {
        assert_eq!(serde_json::to_value(ErrorCode::RestartBreakerOpen).unwrap(), "restart_breaker_open");
        let e = ApiError::from(QueueError::Corrupt("j1".into(), "bad state".into()));
        assert_eq!((e.status(), e.code()), (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::QueueCorrupt));
        assert!(!e.detail.contains("bad state"), "backend words stay in the log: {}", e.detail);
        let e = ApiError::from(QueueError::Unavailable("x".into()));
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
