//! Dockerflow endpoints for load balancers and deploy tooling.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use super::wire::ErrorBody;
use crate::queue::QueueError;

/// Always 200: the process is up and serving.
#[utoipa::path(get, path = "/__lbheartbeat__", tag = "dockerflow", responses(
    (status = 200, description = "The process serves: an empty object", body = Object),
    (status = 405, description = "Method not allowed", body = ErrorBody)))]
pub async fn lbheartbeat() -> Json<Value> {
    Json(json!({}))
}

/// 200 when the queue backend takes writes, else 500 with the reason.
#[utoipa::path(get, path = "/__heartbeat__", tag = "dockerflow", responses(
    (status = 200, description = "The queue takes writes", body = Object),
    (status = 500, description = "The queue does not: `details.queue` says why", body = Object),
    (status = 405, description = "Method not allowed", body = ErrorBody)))]
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
#[utoipa::path(get, path = "/__version__", tag = "dockerflow", responses(
    (status = 200, description = "`source`, `version`, `commit`, `build` (Dockerflow's version.json)", body = Object),
    (status = 405, description = "Method not allowed", body = ErrorBody)))]
pub async fn version() -> Json<Value> {
    Json(crate::version_info())
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "dockerflow",
    responses(
        (status = 200, description = "Prometheus text exposition format", content_type = "text/plain"),
        (status = 405, description = "Method not allowed", body = ErrorBody)))]
/// Unauthenticated like the heartbeats: no label
/// carries a machine, client or secret. The queue gauges are read at scrape
/// time, so every API process reports the same fleet-wide numbers.
pub async fn metrics(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    let handle = crate::telemetry::prometheus();
    match state.queue.stats().await {
        Ok(s) => {
            metrics::gauge!("roller_queue_up").set(1.0);
            metrics::gauge!("roller_queue_jobs", "state" => "queued").set(s.queued as f64);
            metrics::gauge!("roller_queue_jobs", "state" => "running").set(s.running as f64);
            metrics::gauge!("roller_queue_lock_waits").set(s.waiting_for_lock as f64);
            let age = s.oldest_queued.map(|t| (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0);
            metrics::gauge!("roller_queue_oldest_job_age_seconds").set(age.unwrap_or(0.0));
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics: queue stats unavailable");
            metrics::gauge!("roller_queue_up").set(0.0);
        }
    }
    handle.run_upkeep();
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render())
}
