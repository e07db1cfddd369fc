//! Job endpoints: enqueue (both route forms of the seed), read one job, and a
//! machine's history.

use axum::Json;
use axum::extract::{Path, Query, State, rejection::PathRejection, rejection::QueryRejection};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, ErrorCode};
use super::params::{JobPath, TaskName, WorkerGroupPath, WorkerPath};
use super::wire::{Created, ErrorBody, History, JobView};
use super::{AppState, Authenticated, LogFields, Unclaimed};
use crate::auth::replay::PendingClaim;
use crate::domain::{ClientId, JobId, TaskclusterName, WorkerGroup, WorkerId};
use crate::queue::NewJob;
use crate::task::Task;

/// CORS preflight: no authentication, empty JSON object like the seed. It answers for
/// any path segment (a browser would report a refused preflight as a CORS failure and
/// hide the POST's 400 and its `detail`), so its parameters have no constraints.
#[utoipa::path(options, path = "/api/v1/workers/{worker_id}/group/{worker_group}/jobs", tag = "jobs",
    params(("worker_id" = String, Path, description = "Any value"), ("worker_group" = String, Path, description = "Any value")),
    responses((status = 200, description = "CORS preflight answer (headers carry the policy)", body = Object)))]
pub async fn preflight() -> Json<serde_json::Value> {
    Json(serde_json::json!({}))
}

/// CORS preflight of the query form (any path segment, as above).
#[utoipa::path(options, path = "/api/v1/workers/{worker_id}/jobs", tag = "jobs",
    params(("worker_id" = String, Path, description = "Any value")),
    responses((status = 200, description = "CORS preflight answer (headers carry the policy)", body = Object)))]
pub async fn preflight_query_form() -> Json<serde_json::Value> {
    preflight().await
}

/// An enqueue's query string (both forms).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EnqueueQuery {
    /// The task to run (its scope is `<scope_prefix><task_name>`).
    #[param(value_type = TaskName, required = true)]
    task_name: Option<String>,
    /// The machine's Taskcluster provisioner id, carried for notifications and links.
    #[param(pattern = "^[-_.0-9a-zA-Z]{1,128}$", min_length = 1, max_length = 128)]
    provisioner_id: Option<String>,
    /// The machine's Taskcluster worker type, carried for notifications and links.
    #[param(pattern = "^[-_.0-9a-zA-Z]{1,128}$", min_length = 1, max_length = 128)]
    worker_type: Option<String>,
}

/// The query form's worker group.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GroupQuery {
    /// The machine's Taskcluster worker group; `none` when left out (the original's default).
    #[param(pattern = "^[-_.0-9a-zA-Z]{1,128}$", min_length = 1, max_length = 128, default = "none")]
    worker_group: Option<String>,
}

/// `POST /api/v1/workers/{worker_id}/group/{worker_group}/jobs?task_name=…` (the seed README's form).
#[utoipa::path(post, path = "/api/v1/workers/{worker_id}/group/{worker_group}/jobs", tag = "jobs",
    params(WorkerGroupPath, EnqueueQuery),
    security(("hawk" = [])),
    responses(
        (status = 201, description = "Job queued", body = Created),
        (status = 200, description = "An identical job is already queued or running: that one", body = Created),
        (status = 400, description = "Bad task name, worker id, group or query", body = ErrorBody),
        (status = 403, description = "Not authenticated, or no scope for this task", body = ErrorBody),
        (status = 405, description = "Method not allowed", body = ErrorBody),
        (status = 409, description = "Refused by a safety rail (the reboot-loop breaker)", body = ErrorBody),
        (status = 503, description = "Queue or authentication service unavailable", body = ErrorBody),
    ))]
pub async fn enqueue_group_form(
    State(state): State<AppState>,
    Unclaimed(caller, pending): Unclaimed,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<EnqueueQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path((worker_id, worker_group)) =
        path.map_err(|e| ApiError::bad_request(ErrorCode::InvalidPath, format!("invalid path: {e}")))?;
    let Query(q) = query.map_err(bad_query)?;
    enqueue(&state, caller, pending, &headers, worker_id, Some(worker_group), q).await
}

/// `POST /api/v1/workers/{worker_id}/jobs?task_name=…&worker_group=…` (the original's later form).
#[utoipa::path(post, path = "/api/v1/workers/{worker_id}/jobs", tag = "jobs",
    params(WorkerPath, EnqueueQuery, GroupQuery),
    security(("hawk" = [])),
    responses(
        (status = 201, description = "Job queued", body = Created),
        (status = 200, description = "An identical job is already queued or running: that one", body = Created),
        (status = 400, description = "Bad task name, worker id, group or query", body = ErrorBody),
        (status = 403, description = "Not authenticated, or no scope for this task", body = ErrorBody),
        (status = 405, description = "Method not allowed", body = ErrorBody),
        (status = 409, description = "Refused by a safety rail (the reboot-loop breaker)", body = ErrorBody),
        (status = 503, description = "Queue or authentication service unavailable", body = ErrorBody),
    ))]
pub async fn enqueue_query_form(
    State(state): State<AppState>,
    Unclaimed(caller, pending): Unclaimed,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<EnqueueQuery>, QueryRejection>,
    group: Result<Query<GroupQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(worker_id) =
        path.map_err(|e| ApiError::bad_request(ErrorCode::InvalidPath, format!("invalid path: {e}")))?;
    let Query(q) = query.map_err(bad_query)?;
    let Query(group) = group.map_err(bad_query)?;
    enqueue(&state, caller, pending, &headers, worker_id, group.worker_group, q).await
}

fn bad_query(e: QueryRejection) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidQuery, format!("invalid query string: {}", e.body_text()))
}

/// The replay claim (`auth::replay`) is carried by the enqueue's own queue write: one
/// round trip, atomic with it. Refusals before it depend only on the request and the
/// configuration, so a replayed header learns nothing from them it did not learn the
/// first time; a task that restarts a machine is checked against the inventory and the
/// breaker's history first, so its claim is made on its own before those.
async fn enqueue(
    state: &AppState,
    caller: crate::auth::Caller,
    pending: PendingClaim,
    headers: &HeaderMap,
    worker_id: String,
    worker_group: Option<String>,
    q: EnqueueQuery,
) -> Result<Response, ApiError> {
    let allowed = || Task::list(&state.settings.enabled_tasks);
    let task = match q.task_name.as_deref() {
        None | Some("") => {
            return Err(ApiError::bad_request(
                ErrorCode::MissingTaskName,
                format!("task_name is required; one of: {}", allowed()),
            ));
        }
        Some(name) => Task::parse(name).filter(|t| state.settings.enabled_tasks.contains(t)).ok_or_else(|| {
            ApiError::bad_request(ErrorCode::UnknownTask, format!("unknown task_name {name:?}; one of: {}", allowed()))
        })?,
    };
    require(&caller, &state.settings.task_scope(task))?;
    let bad = |e: crate::domain::ParseError| ApiError::bad_request(ErrorCode::InvalidName, e.to_string());
    let worker_id = WorkerId::parse(&worker_id).map_err(bad)?;
    // The original defaulted a missing group to "none"; kept for its clients.
    let worker_group = WorkerGroup::parse(worker_group.as_deref().unwrap_or("none")).map_err(bad)?;
    let tc_name = |kind: &str, v: Option<String>| v.map(|s| TaskclusterName::parse(kind, &s)).transpose().map_err(bad);
    let provisioner_id = tc_name("provisioner_id", q.provisioner_id)?;
    let worker_type = tc_name("worker_type", q.worker_type)?;
    let mut pending = Some(pending);
    if task.restarts_machine() {
        if let Some(p) = pending.take() {
            state.auth.claim(p).await?;
        }
        // Roller cannot restart what it has no hardware description for: say so now,
        // rather than queue a job that can only fail.
        let inventory = state.inventory.current();
        if inventory.machine(&worker_id).is_none() {
            let source = if inventory.path.as_os_str().is_empty() {
                "no inventory is configured (ROLLER_INVENTORY)".to_string()
            } else {
                format!("it is not in the inventory {}", inventory.path.display())
            };
            return Err(ApiError::bad_request(
                ErrorCode::NotInInventory,
                format!("{task} restarts a machine, and {worker_id} has no hardware description: {source}"),
            ));
        }
        super::breaker::check(state, &worker_id, &worker_group, task).await?;
    }
    let origin = match headers.get(header::ORIGIN) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .filter(|o| o.len() <= 512)
                .ok_or_else(|| ApiError::bad_request(ErrorCode::InvalidOrigin, "Origin header is not a valid origin"))?
                .to_string(),
        ),
        None => None,
    };

    let job = NewJob {
        task,
        max_attempts: task.max_attempts(),
        worker_id,
        worker_group,
        requester: caller.client_id.clone(),
        origin,
        provisioner_id,
        worker_type,
        reason: None,
    };
    let enq = match pending {
        None => state.queue.enqueue(job).await?,
        Some(p) => match state.auth.for_store(&p) {
            // In this process only (the benchmark's baseline): nothing for the write to carry.
            None => {
                state.auth.claim(p).await?;
                state.queue.enqueue(job).await?
            }
            Some((digest, expires_at)) => {
                let enq = state.queue.enqueue_claiming(job, &digest, expires_at).await?;
                state.auth.settle(p, enq.is_some())?;
                // Past `settle`, the queue claimed it: `enq` is the new or coalesced job.
                enq.ok_or_else(ApiError::internal)?
            }
        },
    };
    if enq.created {
        state.wake.notify_one();
        metrics::counter!("roller_jobs_enqueued_total", "task" => enq.job.task.name()).increment(1);
    }
    let job = enq.job;
    let url = format!("/api/v1/jobs/{}", job.id);
    let body = Created {
        task_name: job.task.name().to_string(),
        worker_id: job.worker_id.to_string(),
        worker_group: job.worker_group.to_string(),
        task_id: job.id.to_string(),
        state: job.state.as_str(),
        coalesced: !enq.created,
        url: url.clone(),
    };
    // 201 for a new job; 200 when an identical queued/running job is returned (coalesced).
    let status = if enq.created { StatusCode::CREATED } else { StatusCode::OK };
    let mut res = (status, [(header::LOCATION, url)], Json(body)).into_response();
    res.extensions_mut().insert(log_fields(&caller.client_id, Some(job.id)));
    Ok(res)
}

pub(super) fn require(caller: &crate::auth::Caller, scope: &str) -> Result<(), ApiError> {
    if caller.has_scope(scope) { Ok(()) } else { Err(ApiError::permission_denied(caller.client_id.as_str(), scope)) }
}

pub(super) fn log_fields(client: &ClientId, job: Option<JobId>) -> LogFields {
    LogFields { client_id: Some(client.to_string()), task_id: job.map(|j| j.to_string()), ..LogFields::default() }
}

/// The `{worker_id}` of a machine route, parsed.
pub(super) fn worker_id(path: Result<Path<String>, PathRejection>) -> Result<WorkerId, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::bad_request(ErrorCode::InvalidPath, format!("invalid path: {e}")))?;
    WorkerId::parse(&raw).map_err(|e| ApiError::bad_request(ErrorCode::InvalidPath, e.to_string()))
}

/// The `{worker_id}` of a route about a machine of the inventory: parsed, and found there
/// (a 404 that says where to look otherwise).
pub(super) fn inventory_machine(
    state: &AppState,
    path: Result<Path<String>, PathRejection>,
) -> Result<WorkerId, ApiError> {
    let id = worker_id(path)?;
    let inventory = state.inventory.current();
    let m = inventory.machine(&id).ok_or_else(|| {
        ApiError::not_found_because(format!(
            "{id} is not in the inventory: add it to the inventory file (`roller inventory check` checks it), \
             or look for it under another name in GET /api/v1/machines"
        ))
    })?;
    Ok(m.id.clone())
}

/// The `{task_id}` of a job route, parsed.
pub(super) fn job_id(path: Result<Path<String>, PathRejection>) -> Result<JobId, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::bad_request(ErrorCode::InvalidPath, format!("invalid path: {e}")))?;
    JobId::parse(&raw).map_err(|e| ApiError::bad_request(ErrorCode::InvalidPath, e.to_string()))
}

/// `GET /api/v1/jobs/{task_id}`: one job with its log. Needs the read scope.
#[utoipa::path(get, path = "/api/v1/jobs/{task_id}", tag = "jobs",
    params(JobPath),
    security(("hawk" = [])),
    responses(
        (status = 200, description = "The job, with its log", body = JobView),
        (status = 400, description = "Not a job id", body = ErrorBody),
        (status = 403, description = "Not authenticated, or no read scope", body = ErrorBody),
        (status = 404, description = "No such job (or expired)", body = ErrorBody),
        (status = 405, description = "Method not allowed", body = ErrorBody),
        (status = 503, description = "Queue or authentication service unavailable", body = ErrorBody),
    ))]
pub async fn get_job(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    require(&caller, &state.settings.read_scope)?;
    let id = job_id(path)?;
    let job = state.queue.get(id).await?.ok_or_else(ApiError::not_found)?;
    let mut res = Json(JobView::from(&job)).into_response();
    res.extensions_mut().insert(log_fields(&caller.client_id, Some(id)));
    Ok(res)
}

/// A history's query string.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// How many jobs, newest first: 1 to `queue.history_limit` (the default, 50 unless
    /// configured; the served document gives this deployment's).
    #[param(minimum = 1, maximum = 50)]
    limit: Option<usize>,
}

/// `GET /api/v1/workers/{worker_id}/jobs`: the machine's most recent jobs, newest first.
#[utoipa::path(get, path = "/api/v1/workers/{worker_id}/jobs", tag = "jobs",
    params(WorkerPath, HistoryQuery),
    security(("hawk" = [])),
    responses(
        (status = 200, description = "The machine's jobs, newest first", body = History),
        (status = 400, description = "Bad worker id or limit", body = ErrorBody),
        (status = 403, description = "Not authenticated, or no read scope", body = ErrorBody),
        (status = 405, description = "Method not allowed", body = ErrorBody),
        (status = 503, description = "Queue or authentication service unavailable", body = ErrorBody),
    ))]
pub async fn history(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    require(&caller, &state.settings.read_scope)?;
    let worker_id = worker_id(path)?;
    let Query(q) = query.map_err(bad_query)?;
    let max = state.settings.history_limit;
    let limit = match q.limit {
        None => max,
        Some(n) if (1..=max).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidQuery,
                format!("limit must be between 1 and {max} (got {n})"),
            ));
        }
    };
    let jobs = state.queue.history(&worker_id, limit).await?;
    let mut res = Json(History { worker_id: worker_id.to_string(), jobs: jobs.iter().map(JobView::from).collect() })
        .into_response();
    res.extensions_mut().insert(log_fields(&caller.client_id, None));
    Ok(res)
}
