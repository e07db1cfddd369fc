//! The one mapping from errors to HTTP responses: a status and `{"detail": …}`.
//! Internal details (paths, backend messages) go to the log, not to clients.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::AuthError;
use crate::queue::QueueError;

/// The message Django REST Framework used for a scope failure; clients match on it.
pub const PERMISSION_DENIED: &str = "You do not have permission to perform this action.";

#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    Forbidden(String),
    NotFound(String),
    MethodNotAllowed(String),
    /// The request is well-formed and allowed, but a safety rail refuses it now.
    Conflict(String),
    Unavailable(String),
    Internal,
}

impl ApiError {
    pub fn permission_denied() -> Self {
        metrics::counter!("roller_auth_failures_total", "reason" => "scope").increment(1);
        ApiError::Forbidden(PERMISSION_DENIED.to_string())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Refused(m) => {
                metrics::counter!("roller_auth_failures_total", "reason" => "credentials").increment(1);
                ApiError::Forbidden(m)
            }
            AuthError::Unavailable(m) => {
                metrics::counter!("roller_auth_failures_total", "reason" => "auth_service_unavailable").increment(1);
                tracing::warn!(error = %m, "authentication service unavailable");
                ApiError::Unavailable("authentication service unavailable, try again later".into())
            }
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        tracing::error!(error = %e, "job queue error");
        ApiError::Unavailable("job queue unavailable, try again later".into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, detail) = match self {
            ApiError::BadRequest(d) => (StatusCode::BAD_REQUEST, d),
            ApiError::Forbidden(d) => (StatusCode::FORBIDDEN, d),
            ApiError::NotFound(d) => (StatusCode::NOT_FOUND, d),
            ApiError::MethodNotAllowed(m) => (StatusCode::METHOD_NOT_ALLOWED, format!("Method \"{m}\" not allowed.")),
            ApiError::Conflict(d) => (StatusCode::CONFLICT, d),
            ApiError::Unavailable(d) => (StatusCode::SERVICE_UNAVAILABLE, d),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal server error".to_string()),
        };
        (status, Json(json!({ "detail": detail }))).into_response()
    }
}
