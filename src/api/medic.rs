//! The medic as the API shows and steers it: its recent decisions, a plan now (one
//! dry-run cycle, nothing acted on), holds and releases of machines, and the
//! one-time batch override of the blast-radius gate. Each change is recorded with
//! who, when and why (the medic's audit log) and needs its own scope.

use axum::Json;
use axum::extract::{Path, Query, State, rejection::PathRejection, rejection::QueryRejection};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorCode};
use super::jobs::{inventory_machine, log_fields, require};
use super::params::{REASON_MAX, ReasonQuery, WorkerPath};
use super::wire::ErrorBody;
use super::{AppState, Authenticated};
use crate::health::Hold;
use crate::medic::cycle::Mode;
use crate::medic::{Audit, BatchOverride, Cycle, keys};
use crate::queue::records::RecordKind;

/// Cycles and audit entries one answer shows at most.
const LIMIT_MAX: usize = 100;
/// A batch override unused for this long lapses.
const OVERRIDE_LIFETIME_MINS: i64 = 60;

/// `GET /api/v1/medic/decisions`.
#[derive(Serialize, ToSchema)]
pub struct MedicDecisions {
    /// `[medic] enabled` in this deployment.
    pub enabled: bool,
    pub dry_run: bool,
    /// The newest cycle, eventful or not: when the medic last looked.
    pub last: Option<Cycle>,
    /// The newest cycles that chose, blocked, learned or alerted something, newest first.
    pub cycles: Vec<Cycle>,
    /// Holds, releases and batch overrides, newest first.
    pub audit: Vec<Audit>,
    /// A batch override not used yet.
    pub pending_batch: Option<BatchOverride>,
}

/// A machine's hold after a hold or a release.
#[derive(Serialize, ToSchema)]
pub struct HoldView {
    pub worker_id: String,
    /// The hold in force (`null` after a release).
    pub hold: Option<Hold>,
}

/// The decisions' query string.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// Cycles and audit entries, each: 1–100.
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<usize>,
}

/// A hold's length.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HoldQuery {
    /// Hours, 1–720; left out, until released.
    #[param(minimum = 1, maximum = 720)]
    hours: Option<u32>,
}

/// A batch override's size.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BatchQuery {
    /// Machines the medic may act on in that cycle, 1–1000.
    #[param(required = true, minimum = 1, maximum = 1000)]
    batch: Option<usize>,
}

fn bad_query(e: QueryRejection) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidQuery, format!("invalid query string: {}", e.body_text()))
}

/// A reason people can read later: 1–500 printable characters.
fn reason(q: Result<Query<ReasonQuery>, QueryRejection>, why: &str) -> Result<String, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    q.reason().ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::MissingReason,
            format!("reason is required: {why} (1–{REASON_MAX} printable characters)"),
        )
    })
}

/// Stored JSON records; one this version cannot read is left out, not an error.
fn parse_all<T: serde::de::DeserializeOwned>(v: Vec<String>) -> Vec<T> {
    v.iter().filter_map(|s| serde_json::from_str(s).ok()).collect()
}

fn scope(state: &AppState, what: &str) -> String {
    format!("{}medic:{what}", state.settings.scope_prefix)
}

async fn audit(state: &AppState, a: &Audit) -> Result<(), ApiError> {
    state.medic.audit(a).await?;
    tracing::warn!(action = %a.action, worker_id = a.worker_id.as_deref().unwrap_or("-"), by = %a.by, reason = %a.reason, "medic audit");
    Ok(())
}

/// `GET /api/v1/medic/decisions?limit=N`: the medic's recent cycles (default 20,
/// at most 100) and audit log. Read scope.
#[utoipa::path(get, path = "/api/v1/medic/decisions", tag = "medic",
    params(LimitQuery),
    security(("hawk" = [])),
    responses(
        (status = 200, description = "The medic's recent decisions", body = MedicDecisions),
        (status = 400, description = "Bad limit", body = ErrorBody),
        (status = 403, description = "Not authenticated, or no read scope", body = ErrorBody),
        (status = 405, description = "Method not allowed", body = ErrorBody),
        (status = 503, description = "Queue or authentication service unavailable", body = ErrorBody),
    ))]
pub async fn decisions(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    query: Result<Query<LimitQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    require(&caller, &state.settings.read_scope)?;
    let Query(q) = query.map_err(bad_query)?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=LIMIT_MAX).contains(&limit) {
        return Err(ApiError::bad_request(ErrorCode::InvalidQuery, format!("limit must be 1–{LIMIT_MAX}")));
    }
    let r = &state.records;
    let last = r.record(RecordKind::Medic, keys::LAST_CYCLE).await?.and_then(|s| serde_json::from_str(&s).ok());
    let pending_batch = r
        .record(RecordKind::Medic, keys::OVERRIDE)
        .await?
        .and_then(|s| serde_json::from_str::<BatchOverride>(&s).ok())
        .filter(|b| b.until > Utc::now());
    let body = MedicDecisions {
        enabled: state.settings.medic.enabled,
        dry_run: state.settings.medic.dry_run,
        last,
        cycles: parse_all(r.events(keys::CYCLES, limit).await?),
        audit: parse_all(r.events(keys::AUDIT, limit).await?),
        pending_batch,
    };
    let mut res = Json(body).into_response();
    res.extensions_mut().insert(log_fields(&caller.client_id, None));
    Ok(res)
}

/// `POST /api/v1/medic/plan`: one cycle now, as the medic would decide it, acting on
/// nothing and recording nothing. Read scope.
#[utoipa::path(post, path = "/api/v1/medic/plan", tag = "medic",
    security(("hawk" = [])),
    responses(
        (status = 200, description = "What the medic would do now", body = Cycle),
        (status = 403, description = "Not authenticated, or no read scope", body = ErrorBody),
        (status = 405, description = "Method not allowed", body = ErrorBody),
        (status = 503, description = "Queue or authentication service unavailable", body = ErrorBody),
    ))]
pub async fn plan(State(state): State<AppState>, Authenticated(caller): Authenticated) -> Result<Response, ApiError> {
    require(&caller, &state.settings.read_scope)?;
    let cycle = state.medic.cycle(Mode::Plan).await?;
    let mut res = Json(cycle).into_response();
    res.extensions_mut().insert(log_fields(&caller.client_id, None));
    Ok(res)
}

/// `POST /api/v1/machines/{worker_id}/hold?reason=…[&hours=N]`: the medic leaves the
/// machine alone until released (or for `hours`, 1–720). Needs `<scope_prefix>medic:hold`.
#[utoipa::path(post, path = "/api/v1/machines/{worker_id}/hold", tag = "medic",
    params(WorkerPath, ReasonQuery, HoldQuery),
    security(("hawk" = [])),
    responses(
        (status = 200, description = "Held", body = HoldView),
        (status = 400, description = "Bad worker id, hours or no reason", body = ErrorBody),
        (status = 403, description = "Not authenticated, or no scope to hold machines", body = ErrorBody),
        (status = 404, description = "Not in the inventory", body = ErrorBody),
        (status = 405, description = "Method not allowed", body = ErrorBody),
        (status = 503, description = "Queue or authentication service unavailable", body = ErrorBody),
    ))]
pub async fn hold(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    path: Result<Path<String>, PathRejection>,
    why: Result<Query<ReasonQuery>, QueryRejection>,
    query: Result<Query<HoldQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    require(&caller, &scope(&state, "hold"))?;
    let id = inventory_machine(&state, path)?;
    let Query(q) = query.map_err(bad_query)?;
    let reason = reason(why, &format!("say why the medic must leave {id} alone"))?;
    let hours = match q.hours {
        None => None,
        Some(h @ 1..=720) => Some(h),
        Some(h) => return Err(ApiError::bad_request(ErrorCode::InvalidQuery, format!("hours {h} must be 1–720"))),
    };
    let now = Utc::now();
    let hold = Hold {
        at: now,
        by: caller.client_id.to_string(),
        reason: reason.clone(),
        until: hours.map(|h| now + chrono::Duration::hours(i64::from(h))),
    };
    state.records.put_record(RecordKind::Hold, id.as_str(), &hold.to_record()).await?;
    let what = Audit { at: now, action: "hold".into(), worker_id: Some(id.to_string()), by: hold.by.clone(), reason };
    audit(&state, &what).await?;
    metrics::counter!("roller_medic_holds_total", "by" => "operator").increment(1);
    let mut res = Json(HoldView { worker_id: id.to_string(), hold: Some(hold) }).into_response();
    res.extensions_mut().insert(log_fields(&caller.client_id, None));
    Ok(res)
}

/// `POST /api/v1/machines/{worker_id}/release?reason=…`: lift the machine's hold (an
/// operator's or the medic's; the medic then counts its failures afresh). Needs
/// `<scope_prefix>medic:release`.
#[utoipa::path(post, path = "/api/v1/machines/{worker_id}/release", tag = "medic",
    params(WorkerPath, ReasonQuery),
    security(("hawk" = [])),
    responses(
        (status = 200, description = "Released", body = HoldView),
        (status = 400, description = "Bad worker id, or no reason", body = ErrorBody),
        (status = 403, description = "Not authenticated, or no scope to release machines", body = ErrorBody),
        (status = 404, description = "Not in the inventory", body = ErrorBody),
        (status = 405, description = "Method not allowed", body = ErrorBody),
        (status = 409, description = "The machine is not held", body = ErrorBody),
        (status = 503, description = "Queue or authentication service unavailable", body = ErrorBody),
    ))]
pub async fn release(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    path: Result<Path<String>, PathRejection>,
    why: Result<Query<ReasonQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    require(&caller, &scope(&state, "release"))?;
    let id = inventory_machine(&state, path)?;
    let reason = reason(why, &format!("say why the medic may act on {id} again"))?;
    let now = Utc::now();
    let held = state.records.record(RecordKind::Hold, id.as_str()).await?.and_then(|r| Hold::from_record(&r));
    if !held.is_some_and(|h| h.active(now)) {
        return Err(ApiError::conflict(ErrorCode::NotHeld, format!("{id} is not held")));
    }
    state.records.delete_record(RecordKind::Hold, id.as_str()).await?;
    let what = Audit {
        at: now,
        action: "release".into(),
        worker_id: Some(id.to_string()),
        by: caller.client_id.to_string(),
        reason,
    };
    audit(&state, &what).await?;
    let mut res = Json(HoldView { worker_id: id.to_string(), hold: None }).into_response();
    res.extensions_mut().insert(log_fields(&caller.client_id, None));
    Ok(res)
}

/// `POST /api/v1/medic/allow?batch=N&reason=…`: let the next cycle that the
/// blast-radius gate would block act on at most `batch` machines (1–1000), once,
/// within the hour. Needs `<scope_prefix>medic:allow`.
#[utoipa::path(post, path = "/api/v1/medic/allow", tag = "medic",
    params(BatchQuery, ReasonQuery),
    security(("hawk" = [])),
    responses(
        (status = 200, description = "Allowed once", body = BatchOverride),
        (status = 400, description = "Bad batch, or no reason", body = ErrorBody),
        (status = 403, description = "Not authenticated, or no scope to allow batches", body = ErrorBody),
        (status = 405, description = "Method not allowed", body = ErrorBody),
        (status = 503, description = "Queue or authentication service unavailable", body = ErrorBody),
    ))]
pub async fn allow(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    query: Result<Query<BatchQuery>, QueryRejection>,
    why: Result<Query<ReasonQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    require(&caller, &scope(&state, "allow"))?;
    let Query(q) = query.map_err(bad_query)?;
    let batch = match q.batch {
        Some(b @ 1..=1000) => b,
        _ => return Err(ApiError::bad_request(ErrorCode::InvalidQuery, "batch must be 1–1000")),
    };
    let reason = reason(why, "say why the medic may act on that many at once")?;
    let now = Utc::now();
    let o = BatchOverride {
        batch,
        by: caller.client_id.to_string(),
        reason: reason.clone(),
        at: now,
        until: now + chrono::Duration::minutes(OVERRIDE_LIFETIME_MINS),
    };
    let text = serde_json::to_string(&o).unwrap_or_default();
    state.records.put_record(RecordKind::Medic, keys::OVERRIDE, &text).await?;
    let what = Audit {
        at: now,
        action: "allow_batch".into(),
        worker_id: None,
        by: o.by.clone(),
        reason: format!("batch of {batch}: {reason}"),
    };
    audit(&state, &what).await?;
    let mut res = Json(o).into_response();
    res.extensions_mut().insert(log_fields(&caller.client_id, None));
    Ok(res)
}
