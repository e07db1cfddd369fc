//! Dockerflow endpoints for load balancers and deploy tooling.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use crate::queue::QueueError;

/// Always 200: the process is up and serving.
pub async fn lbheartbeat() -> Json<Value> {
    Json(json!({}))
}

/// 200 when the queue backend takes writes, else 500 with the reason.
pub async fn heartbeat(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match state.queue.health().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ok", "checks": {"queue": "ok"}, "details": {}}))),
        Err(e) => {
            // The full error (with file paths) goes to the log; this endpoint is unauthenticated.
            tracing::warn!(error = %e, "heartbeat: queue unhealthy");
            let reason = match e {
                QueueError::Unavailable(_) => "the job queue does not accept writes (see the service log)",
                QueueError::Corrupt(..) => "the job queue holds corrupt data (see the service log)",
                QueueError::LostLease(_) => "the job queue answered unexpectedly (see the service log)",
            };
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"status": "error", "checks": {"queue": "error"}, "details": {"queue": reason}})),
            )
        }
    }
}

/// Build information, in Dockerflow's `version.json` shape.
pub async fn version() -> Json<Value> {
    Json(crate::version_info())
}
