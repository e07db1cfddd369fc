//! The standing path checks as the API shows and asks for them: every machine's last
//! check of each path (and of roller's shared credentials), one machine's, and a check
//! now. A handler never checks anything itself (handlers never drive hardware): it
//! records the request, and the checker (in a process that runs jobs, under the jobs'
//! per-device gates, with their credentials) runs it at its next look, at once in
//! `roller serve`. Asking needs `<scope_prefix>paths:check`; reading, the read scope.

use axum::Json;
use axum::extract::{Path, State, rejection::PathRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::jobs::{inventory_machine, log_fields, require};
use super::params::WorkerPath;
use super::wire::ErrorBody;
use super::{AppState, Authenticated};
use crate::inventory::Machine;
use crate::paths::{CheckRequest, CheckerStatus, PathKind, PathRecord, keys, no_path, remediation_paths, snapshot};
use crate::queue::records::RecordKind;

/// A machine's paths as the API shows them.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct MachinePaths {
    pub worker_id: String,
    pub class: String,
    /// The paths its remediation could use (the class's reboot chain), configured ones only.
    pub remediation_paths: Vec<PathKind>,
    /// Why roller has no way left to restart it, when it has none (health shows `no_path`).
    pub no_path: Option<String>,
    /// Its last check: when, and each path's outcome and reason (`null`: never checked).
    pub last: Option<PathRecord>,
    /// A check asked for and not started yet.
    pub requested: Option<CheckRequest>,
}

/// `GET /api/v1/paths`.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct FleetPaths {
    pub at: String,
    /// `[paths] enabled`: every machine is checked once per `interval_secs`.
    pub periodic: bool,
    pub interval_secs: u64,
    pub max_per_minute: usize,
    /// What the checker did at its last look (`null`: no checker has looked yet).
    pub checker: Option<CheckerStatus>,
    /// Roller's shared credentials (Bugzilla, Taskcluster), when checked.
    pub shared: Option<PathRecord>,
    pub shared_requested: Option<CheckRequest>,
    /// Machines without any way left for roller to restart them.
    pub without_path: u64,
    /// Every inventory machine, by worker id.
    pub machines: Vec<MachinePaths>,
}

/// `POST …/paths/check`'s answer.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CheckAsked {
    /// The machine, or `shared` for roller's shared credentials.
    pub subject: String,
    pub requested: CheckRequest,
    /// Poll here until its `last.checked_at` is at or after `requested.at`.
    pub url: String,
}

fn view(m: &Machine, state: &AppState, last: Option<&PathRecord>, requested: Option<&CheckRequest>) -> MachinePaths {
    let remediation = m.class.health.remediation.unwrap_or(state.settings.medic.remediation);
    MachinePaths {
        worker_id: m.id.to_string(),
        class: m.class.name.clone(),
        remediation_paths: remediation_paths(m, remediation),
        no_path: no_path(m, remediation, last, state.settings.paths.enabled),
        last: last.cloned(),
        requested: requested.filter(|q| q.pending(last)).cloned(),
    }
}

/// `GET /api/v1/paths`: every machine's last path checks, the shared credentials' and
/// what the checker did last. Read scope.
#[utoipa::path(get, path = "/api/v1/paths", tag = "paths",
    security(("hawk" = [])),
    responses(
        (status = 200, description = "Every machine's last path checks", body = FleetPaths),
        (status = 403, description = "Not authenticated, or no read scope", body = ErrorBody),
        (status = 405, description = "Method not allowed", body = ErrorBody),
        (status = 503, description = "Queue or authentication service unavailable", body = ErrorBody),
    ))]
pub async fn fleet_paths(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Response, ApiError> {
    require(&caller, &state.settings.read_scope)?;
    let snap = snapshot(state.records.as_ref()).await?;
    let inventory = state.inventory.current();
    let machines: Vec<MachinePaths> = inventory
        .machines
        .values()
        .map(|m| {
            let id = m.id.to_string();
            view(m, &state, snap.machines.get(&id), snap.requests.get(&id))
        })
        .collect();
    let body = FleetPaths {
        at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        periodic: state.settings.paths.enabled,
        interval_secs: state.settings.paths.interval.as_secs(),
        max_per_minute: state.settings.paths.max_per_minute,
        checker: snap.status,
        shared_requested: snap.shared_request.filter(|q| q.pending(snap.shared.as_ref())),
        shared: snap.shared,
        without_path: machines.iter().filter(|m| m.no_path.is_some()).count() as u64,
        machines,
    };
    let mut res = Json(body).into_response();
    res.extensions_mut().insert(log_fields(&caller.client_id, None));
    Ok(res)
}

/// `GET /api/v1/machines/{worker_id}/paths`: one machine's last path checks. Read scope.
#[utoipa::path(get, path = "/api/v1/machines/{worker_id}/paths", tag = "paths",
    params(WorkerPath),
    security(("hawk" = [])),
    responses(
        (status = 200, description = "The machine's last path checks", body = MachinePaths),
        (status = 400, description = "Bad worker id", body = ErrorBody),
        (status = 403, description = "Not authenticated, or no read scope", body = ErrorBody),
        (status = 404, description = "Not in the inventory", body = ErrorBody),
        (status = 405, description = "Method not allowed", body = ErrorBody),
        (status = 503, description = "Queue or authentication service unavailable", body = ErrorBody),
    ))]
pub async fn machine_paths(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    require(&caller, &state.settings.read_scope)?;
    let id = inventory_machine(&state, path)?;
    let inventory = state.inventory.current();
    let m = inventory.machine(&id).ok_or_else(ApiError::not_found)?;
    let key = id.to_string();
    let last = state.records.record(RecordKind::Paths, &key).await?.map(|r| PathRecord::from_record(&r));
    let requested = state
        .records
        .record(RecordKind::Paths, &format!("{}{key}", keys::REQUEST))
        .await?
        .and_then(|r| serde_json::from_str::<CheckRequest>(&r).ok());
    let mut res = Json(view(m, &state, last.as_ref(), requested.as_ref())).into_response();
    res.extensions_mut().insert(log_fields(&caller.client_id, None));
    Ok(res)
}

async fn ask(state: &AppState, caller: &crate::auth::Caller, key: String) -> Result<CheckRequest, ApiError> {
    require(caller, &format!("{}paths:check", state.settings.scope_prefix))?;
    let q = CheckRequest { at: Utc::now(), by: caller.client_id.to_string() };
    state.records.put_record(RecordKind::Paths, &key, &serde_json::to_string(&q).unwrap_or_default()).await?;
    state.paths_wake.notify_one();
    Ok(q)
}

/// `POST /api/v1/machines/{worker_id}/paths/check`: check the machine's paths at the
/// checker's next look (at once in `roller serve`). Needs `<scope_prefix>paths:check`.
#[utoipa::path(post, path = "/api/v1/machines/{worker_id}/paths/check", tag = "paths",
    params(WorkerPath),
    security(("hawk" = [])),
    responses(
        (status = 202, description = "The check is asked for; read the result from `url`", body = CheckAsked),
        (status = 400, description = "Bad worker id", body = ErrorBody),
        (status = 403, description = "Not authenticated, or no scope to ask for path checks", body = ErrorBody),
        (status = 404, description = "Not in the inventory", body = ErrorBody),
        (status = 405, description = "Method not allowed", body = ErrorBody),
        (status = 503, description = "Queue or authentication service unavailable", body = ErrorBody),
    ))]
pub async fn check_machine_paths(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    require(&caller, &format!("{}paths:check", state.settings.scope_prefix))?;
    let id = inventory_machine(&state, path)?;
    let requested = ask(&state, &caller, format!("{}{id}", keys::REQUEST)).await?;
    tracing::info!(worker_id = %id, by = %caller.client_id, "path check asked for");
    let body = CheckAsked { subject: id.to_string(), requested, url: format!("/api/v1/machines/{id}/paths") };
    let mut res = (StatusCode::ACCEPTED, Json(body)).into_response();
    res.extensions_mut().insert(log_fields(&caller.client_id, None));
    Ok(res)
}

/// `POST /api/v1/paths/check`: check roller's shared credentials (Bugzilla, Taskcluster)
/// at the checker's next look. Needs `<scope_prefix>paths:check`.
#[utoipa::path(post, path = "/api/v1/paths/check", tag = "paths",
    security(("hawk" = [])),
    responses(
        (status = 202, description = "The check is asked for; read the result from `url`", body = CheckAsked),
        (status = 403, description = "Not authenticated, or no scope to ask for path checks", body = ErrorBody),
        (status = 405, description = "Method not allowed", body = ErrorBody),
        (status = 503, description = "Queue or authentication service unavailable", body = ErrorBody),
    ))]
pub async fn check_shared_paths(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Response, ApiError> {
    let requested = ask(&state, &caller, keys::SHARED_REQUEST.to_string()).await?;
    let body = CheckAsked { subject: "shared".into(), requested, url: "/api/v1/paths".into() };
    let mut res = (StatusCode::ACCEPTED, Json(body)).into_response();
    res.extensions_mut().insert(log_fields(&caller.client_id, None));
    Ok(res)
}
