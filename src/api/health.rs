//! Fleet health as the API shows it: counts per pool and class by state, every
//! machine in trouble with its reason and how old what roller knows is, and one
//! machine's observations. States are computed at read time from the shared
//! observations (`health::rules`), so every API process answers alike.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State as AxumState, rejection::PathRejection};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::jobs::{inventory_machine, log_fields, require};
use super::wire::ErrorBody;
use super::{AppState, Authenticated};
use crate::breaker::BreakerRule;
use crate::health::rules::{classify, with_paths};
use crate::health::{Hold, Observations, State};
use crate::inventory::Machine;
use crate::medic::memory::Memory;
use crate::paths::{PathRecord, no_path};
use crate::queue::records::RecordKind;

/// How old each part of a machine's observations is, in seconds (`None`: never seen).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Ages {
    pub probe_secs: Option<i64>,
    pub power_secs: Option<i64>,
    pub taskcluster_secs: Option<i64>,
}

/// A machine's health in a list.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct MachineHealthSummary {
    pub worker_id: String,
    pub class: String,
    /// `<provisioner_id>/<worker_type>`, when the inventory names one.
    pub pool: Option<String>,
    pub state: State,
    pub reason: String,
    pub ages: Ages,
    /// What it is judged on (probe, power, Taskcluster worker), so a list needs no
    /// second request per machine.
    pub observations: Observations,
}

/// How many machines of a pool or class are in each state.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct GroupCounts {
    /// `pool` or `class`.
    pub by: String,
    pub name: String,
    /// State name → machines.
    pub counts: BTreeMap<String, u64>,
}

/// `GET /api/v1/health`.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct FleetHealth {
    pub at: String,
    /// Whether a sweep is configured in this deployment (`[health] enabled`).
    pub sweeping: bool,
    pub machines: u64,
    pub groups: Vec<GroupCounts>,
    /// Every machine not `ok`, `busy` or `idle`, worst first.
    pub trouble: Vec<MachineHealthSummary>,
}

/// `GET /api/v1/machines/{worker_id}/health`.
#[derive(Serialize, ToSchema)]
pub struct MachineHealth {
    pub worker_id: String,
    pub class: String,
    pub pool: Option<String>,
    pub state: State,
    pub reason: String,
    pub ages: Ages,
    pub observations: Observations,
    pub hold: Option<Hold>,
    /// Its job queued or running now, if any.
    pub active_job: Option<String>,
    /// Until when the reboot-loop breaker refuses restarts, when it does.
    pub breaker_open_until: Option<String>,
    /// What the medic remembers: its last remediation and outcome, failures in a row.
    pub medic: Option<Memory>,
    /// Its last path checks (`null`: never checked): each path's outcome, reason and time.
    pub paths: Option<PathRecord>,
}

pub(super) fn pool(m: &Machine) -> Option<String> {
    Some(format!("{}/{}", m.provisioner_id.as_ref()?, m.worker_type.as_ref()?))
}

/// Why roller has no way left to restart `m`, by its path checks, if so.
fn stranded(state: &AppState, m: &Machine, paths: Option<&PathRecord>) -> Option<String> {
    let remediation = m.class.health.remediation.unwrap_or(state.settings.medic.remediation);
    no_path(m, remediation, paths, state.settings.paths.enabled)
}

fn ages(o: &Observations, now: DateTime<Utc>) -> Ages {
    Ages {
        probe_secs: o.probe.as_ref().map(|s| s.age(now).num_seconds()),
        power_secs: o.power.as_ref().map(|s| s.age(now).num_seconds()),
        taskcluster_secs: o.worker.as_ref().map(|s| s.age(now).num_seconds()),
    }
}

/// Every machine's observations and hold, by worker id.
pub(super) async fn snapshot(
    state: &AppState,
) -> Result<(BTreeMap<String, Observations>, BTreeMap<String, Hold>), ApiError> {
    let obs = state.records.records(RecordKind::Observations).await?;
    let holds = state.records.records(RecordKind::Hold).await?;
    Ok((
        obs.into_iter().map(|(k, r)| (k, Observations::from_record(&r))).collect(),
        holds.into_iter().filter_map(|(k, r)| Some((k, Hold::from_record(&r)?))).collect(),
    ))
}

/// `m`'s health from its observations, hold and path checks, as a list shows it.
pub(super) fn summarize(
    state: &AppState,
    m: &Machine,
    o: &Observations,
    hold: Option<&Hold>,
    paths: Option<&PathRecord>,
    now: DateTime<Utc>,
) -> MachineHealthSummary {
    let h = classify(o, hold, now, &state.settings.health.rule.for_class(&m.class.health));
    let h = with_paths(h, stranded(state, m, paths));
    MachineHealthSummary {
        worker_id: m.id.to_string(),
        class: m.class.name.clone(),
        pool: pool(m),
        state: h.state,
        reason: h.reason,
        ages: ages(o, now),
        observations: o.clone(),
    }
}

/// `GET /api/v1/health`: the fleet by pool and class, and every machine in trouble.
/// Needs the read scope.
#[utoipa::path(get, path = "/api/v1/health", tag = "health",
    security(("hawk" = [])),
    responses(
        (status = 200, description = "The fleet's health", body = FleetHealth),
        (status = 403, description = "Not authenticated, or no read scope", body = ErrorBody),
        (status = 405, description = "Method not allowed", body = ErrorBody),
        (status = 503, description = "Queue or authentication service unavailable", body = ErrorBody),
    ))]
pub async fn fleet(
    AxumState(state): AxumState<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Response, ApiError> {
    require(&caller, &state.settings.read_scope)?;
    let now = Utc::now();
    let (obs, holds) = snapshot(&state).await?;
    let paths = crate::paths::snapshot(state.records.as_ref()).await?.machines;
    let inventory = state.inventory.current();
    let mut groups: BTreeMap<(&'static str, String), BTreeMap<String, u64>> = BTreeMap::new();
    let mut trouble = Vec::new();
    let empty = Observations::default();
    for m in inventory.machines.values() {
        let id = m.id.to_string();
        let h = summarize(&state, m, obs.get(&id).unwrap_or(&empty), holds.get(&id), paths.get(&id), now);
        for key in [Some(("class", m.class.name.clone())), h.pool.clone().map(|p| ("pool", p))].into_iter().flatten() {
            *groups.entry(key).or_default().entry(h.state.as_str().to_string()).or_default() += 1;
        }
        if h.state.is_trouble() {
            trouble.push(h);
        }
    }
    trouble.sort_by(|a, b| (a.state, &a.worker_id).cmp(&(b.state, &b.worker_id)));
    let body = FleetHealth {
        at: now.to_rfc3339_opts(SecondsFormat::Secs, true),
        sweeping: state.settings.health.enabled,
        machines: inventory.machines.len() as u64,
        groups: groups.into_iter().map(|((by, name), counts)| GroupCounts { by: by.into(), name, counts }).collect(),
        trouble,
    };
    let mut res = Json(body).into_response();
    res.extensions_mut().insert(log_fields(&caller.client_id, None));
    Ok(res)
}

/// `GET /api/v1/machines/{worker_id}/health`: one machine's state, reason,
/// observations (with their times) and hold. Needs the read scope.
#[utoipa::path(get, path = "/api/v1/machines/{worker_id}/health", tag = "health",
    params(super::params::WorkerPath),
    security(("hawk" = [])),
    responses(
        (status = 200, description = "The machine's health", body = MachineHealth),
        (status = 400, description = "Bad worker id", body = ErrorBody),
        (status = 403, description = "Not authenticated, or no read scope", body = ErrorBody),
        (status = 404, description = "Not in the inventory", body = ErrorBody),
        (status = 405, description = "Method not allowed", body = ErrorBody),
        (status = 503, description = "Queue or authentication service unavailable", body = ErrorBody),
    ))]
pub async fn machine(
    AxumState(state): AxumState<AppState>,
    Authenticated(caller): Authenticated,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    require(&caller, &state.settings.read_scope)?;
    let id = inventory_machine(&state, path)?;
    let inventory = state.inventory.current();
    let m = inventory.machine(&id).ok_or_else(ApiError::not_found)?;
    let now = Utc::now();
    let key = id.to_string();
    let observations = state
        .records
        .record(RecordKind::Observations, &key)
        .await?
        .map(|r| Observations::from_record(&r))
        .unwrap_or_default();
    let hold = state.records.record(RecordKind::Hold, &key).await?.and_then(|r| Hold::from_record(&r));
    let h = classify(&observations, hold.as_ref(), now, &state.settings.health.rule.for_class(&m.class.health));
    let paths = state.records.record(RecordKind::Paths, &key).await?.map(|r| PathRecord::from_record(&r));
    let h = with_paths(h, stranded(&state, m, paths.as_ref()));
    let rule = BreakerRule { max_restarts: state.settings.safety.max_restarts, window: state.settings.safety.window };
    let (breaker, jobs) = rule.read(state.queue.as_ref(), &m.id).await?;
    let medic = state.records.record(RecordKind::Medic, &key).await?.map(|r| Memory::from_record(&r));
    let body = MachineHealth {
        worker_id: key,
        class: m.class.name.clone(),
        pool: pool(m),
        state: h.state,
        reason: h.reason,
        ages: ages(&observations, now),
        observations,
        hold: hold.filter(|h| h.active(now)),
        active_job: jobs.iter().find(|j| !j.state.is_final()).map(|j| j.id.to_string()),
        breaker_open_until: breaker.open_until.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
        medic,
        paths,
    };
    let mut res = Json(body).into_response();
    res.extensions_mut().insert(log_fields(&caller.client_id, None));
    Ok(res)
}
