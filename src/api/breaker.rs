//! The reboot-loop breaker: a machine restarted `max_restarts` times within the
//! window gets no more restarts (a machine in a reboot loop needs a person, and each
//! restart wears it), and the audited way out.
//!
//! A restart counts when a restarting task's command reached a device (`Job::touched`,
//! recorded before the command went out): a job that failed on its configuration or
//! skipped every step restarted nothing. An operator's reset (`POST …/breaker/reset`,
//! `roller breaker reset`) records who, when and why; restarts before the newest reset
//! no longer count.

use axum::Json;
use axum::extract::{Path, Query, State, rejection::PathRejection, rejection::QueryRejection};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};

use super::error::{ApiError, ErrorCode};
use super::jobs::{log_fields, require, worker_id};
use super::params::{REASON_MAX, ReasonQuery, WorkerPath};
use super::wire::{BreakerResetView, BreakerView, ErrorBody, RestartView};
use super::{AppState, Authenticated};
use crate::breaker::{Breaker, BreakerRule};
use crate::domain::{WorkerGroup, WorkerId};
use crate::queue::BreakerReset;
use crate::task::Task;

fn rule(state: &AppState) -> BreakerRule {
    BreakerRule { max_restarts: state.settings.safety.max_restarts, window: state.settings.safety.window }
}

/// Called by enqueue before a restarting task is queued. A repeat of a request for a
/// job that is already queued or running passes: it gets that job back (coalescing).
pub(super) async fn check(
    state: &AppState,
    worker: &WorkerId,
    group: &WorkerGroup,
    task: Task,
) -> Result<(), ApiError> {
    let safety = state.settings.safety;
    if safety.max_restarts == 0 {
        return Ok(());
    }
    let (b, jobs) = rule(state).read(state.queue.as_ref(), worker).await?;
    if jobs.iter().any(|j| !j.state.is_final() && j.task == task && &j.worker_group == group) {
        return Ok(());
    }
    let Some(until) = b.open_until else { return Ok(()) };
    let hours = safety.window.as_secs() / 3600;
    let tasks: Vec<&str> = b.restarts.iter().map(|(_, t, _)| t.name()).collect();
    metrics::counter!("roller_restart_refusals_total", "task" => task.name()).increment(1);
    tracing::warn!(worker_id = %worker, task = %task, restarts = b.restarts.len(), "reboot-loop breaker refused a restart");
    Err(ApiError::conflict(
        ErrorCode::RestartBreakerOpen,
        format!(
            "{worker} was restarted {} times in the last {hours} h ({}); the reboot-loop breaker refuses {task} until {} \
             (safety.max_restarts = {}): the machine needs a person. Once it has had one: \
             roller breaker reset {worker} --reason \"…\"",
            b.restarts.len(),
            tasks.join(", "),
            until.to_rfc3339_opts(SecondsFormat::Secs, true),
            safety.max_restarts
        ),
    ))
}

fn view(worker: &WorkerId, b: Breaker, state: &AppState) -> BreakerView {
    let ts = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
    BreakerView {
        worker_id: worker.to_string(),
        max_restarts: state.settings.safety.max_restarts,
        window_hours: state.settings.safety.window.as_secs() / 3600,
        open: b.open_until.is_some(),
        open_until: b.open_until.map(ts),
        restarts: b
            .restarts
            .into_iter()
            .map(|(at, task, task_id)| RestartView { at: ts(at), task_name: task.name(), task_id })
            .collect(),
        resets: b.resets.into_iter().map(|r| BreakerResetView { at: ts(r.at), by: r.by, reason: r.reason }).collect(),
    }
}

/// The scope an operator needs to reset a machine's breaker.
pub fn reset_scope(state: &AppState) -> String {
    format!("{}breaker:reset", state.settings.scope_prefix)
}

/// `GET /api/v1/workers/{worker_id}/breaker`: the restarts that count, whether the
/// breaker refuses restarts now and until when, and its recent resets. Read scope.
#[utoipa::path(get, path = "/api/v1/workers/{worker_id}/breaker", tag = "safety",
    params(WorkerPath),
    security(("hawk" = [])),
    responses(
        (status = 200, description = "The machine's reboot-loop breaker", body = BreakerView),
        (status = 400, description = "Bad worker id", body = ErrorBody),
        (status = 403, description = "Not authenticated, or no read scope", body = ErrorBody),
        (status = 405, description = "Method not allowed", body = ErrorBody),
        (status = 503, description = "Queue or authentication service unavailable", body = ErrorBody),
    ))]
pub async fn status(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    require(&caller, &state.settings.read_scope)?;
    let worker = worker_id(path)?;
    answer(&state, &worker, &caller).await
}

/// The breaker as it is now, as the API shows it.
async fn answer(state: &AppState, worker: &WorkerId, caller: &crate::auth::Caller) -> Result<Response, ApiError> {
    let (b, _) = rule(state).read(state.queue.as_ref(), worker).await?;
    let mut res = Json(view(worker, b, state)).into_response();
    res.extensions_mut().insert(log_fields(&caller.client_id, None));
    Ok(res)
}

/// `POST /api/v1/workers/{worker_id}/breaker/reset?reason=…`: a person looked at the
/// machine; restarts before now no longer count. Recorded with who and why. Needs
/// `<scope_prefix>breaker:reset`.
#[utoipa::path(post, path = "/api/v1/workers/{worker_id}/breaker/reset", tag = "safety",
    params(WorkerPath, ReasonQuery),
    security(("hawk" = [])),
    responses(
        (status = 200, description = "Reset recorded; the breaker as it is now", body = BreakerView),
        (status = 400, description = "Bad worker id, or no reason", body = ErrorBody),
        (status = 403, description = "Not authenticated, or no scope to reset breakers", body = ErrorBody),
        (status = 405, description = "Method not allowed", body = ErrorBody),
        (status = 503, description = "Queue or authentication service unavailable", body = ErrorBody),
    ))]
pub async fn reset(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ReasonQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    require(&caller, &reset_scope(&state))?;
    let worker = worker_id(path)?;
    let Query(q) = query.map_err(|e| {
        ApiError::bad_request(ErrorCode::InvalidQuery, format!("invalid query string: {}", e.body_text()))
    })?;
    let Some(reason) = q.reason() else {
        return Err(ApiError::bad_request(
            ErrorCode::MissingReason,
            format!(
                "reason is required: say why {worker} may be restarted again (1–{REASON_MAX} printable characters)"
            ),
        ));
    };
    let record = BreakerReset { at: Utc::now(), by: caller.client_id.to_string(), reason };
    state.queue.reset_breaker(&worker, record.clone()).await?;
    metrics::counter!("roller_breaker_resets_total").increment(1);
    tracing::warn!(worker_id = %worker, by = %record.by, reason = %record.reason, "reboot-loop breaker reset");
    answer(&state, &worker, &caller).await
}
