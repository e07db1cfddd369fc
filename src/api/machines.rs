//! What the dashboard (or any client) needs to draw the fleet: who the caller
//! is and which tasks their scopes allow, and the inventory with each
//! machine's health, last job, current lock, breaker and the tasks it can run.
//! One machine's page is `machine_page.rs`.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::jobs::{log_fields, require};
use super::wire::{ErrorBody, JobSummary, MachineView, Machines, TaskView, WhoAmI};
use super::{AppState, Authenticated};
use crate::actions::reboot::{Services, unavailable};
use crate::breaker::BreakerRule;
use crate::config::Settings;
use crate::health::Observations;
use crate::queue::JobState;

/// Requests a fleet client keeps in flight (the CLI's `jobs enqueue` bound, told to the page).
pub const FLEET_IN_FLIGHT: usize = 16;

/// Which of roller's shared services the configuration has: what some tasks need
/// beyond the machine's inventory entry (the API builds no clients to ask).
pub(super) fn services(s: &Settings) -> Services {
    Services { xen: s.xen.is_some(), simplemdm: s.simplemdm.is_some(), bugzilla: s.bugzilla.is_some() }
}

/// `GET /api/v1/whoami`: the caller's client id and scopes, and every enabled task
/// with the scope it needs and whether the caller holds it. Any authenticated
/// client may ask (it only tells them about themselves).
#[utoipa::path(get, path = "/api/v1/whoami", tag = "clients",
    security(("hawk" = [])),
    responses(
        (status = 200, description = "The caller and what it may do", body = WhoAmI),
        (status = 403, description = "Not authenticated", body = ErrorBody),
        (status = 405, description = "Method not allowed", body = ErrorBody),
        (status = 503, description = "Authentication service unavailable", body = ErrorBody),
    ))]
pub async fn whoami(State(state): State<AppState>, Authenticated(caller): Authenticated) -> Response {
    let s = &state.settings;
    let tasks = s
        .enabled_tasks
        .iter()
        .map(|&t| {
            let scope = s.task_scope(t);
            TaskView {
                name: t.name(),
                help: t.help(),
                allowed: caller.has_scope(&scope),
                scope,
                restarts_machine: t.restarts_machine(),
                cuts_power: t.cuts_power(),
                needs_confirmation: t.needs_confirmation(),
                group: t.group().into(),
            }
        })
        .collect();
    let body = WhoAmI {
        client_id: caller.client_id.to_string(),
        can_read_jobs: caller.has_scope(&s.read_scope),
        read_scope: s.read_scope.clone(),
        scopes: caller.scopes.clone(),
        tasks,
    };
    let mut res = Json(body).into_response();
    res.extensions_mut().insert(log_fields(&caller.client_id, None));
    res
}

/// How many of a machine's newest jobs are read to find its running one. Coalescing
/// keeps at most one queued-or-running job per (task, group), so a running job
/// hidden behind more queued ones than this is not a case that happens in practice.
const LOCK_LOOKBACK: usize = 16;

/// `GET /api/v1/machines`: the inventory, by group then name, with each machine's
/// newest job and the job holding its lock. Needs the read scope.
#[utoipa::path(get, path = "/api/v1/machines", tag = "machines",
    security(("hawk" = [])),
    responses(
        (status = 200, description = "Every machine in the inventory", body = Machines),
        (status = 403, description = "Not authenticated, or no read scope", body = ErrorBody),
        (status = 405, description = "Method not allowed", body = ErrorBody),
        (status = 503, description = "Queue or authentication service unavailable", body = ErrorBody),
    ))]
pub async fn machines(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Response, ApiError> {
    require(&caller, &state.settings.read_scope)?;
    let s = &state.settings;
    let inventory = state.inventory.current();
    let now = chrono::Utc::now();
    let (obs, holds) = super::health::snapshot(&state).await?;
    let paths = crate::paths::snapshot(state.records.as_ref()).await?.machines;
    let rule = BreakerRule { max_restarts: s.safety.max_restarts, window: s.safety.window };
    let services = services(s);
    let empty = Observations::default();
    let mut machines = Vec::with_capacity(inventory.machines.len());
    // One query per machine: an inventory is hundreds of machines, not millions,
    // and both backends answer a machine's history from an index.
    for m in inventory.machines.values() {
        let id = m.id.to_string();
        let jobs = state.queue.history(&m.id, LOCK_LOOKBACK).await?;
        // The breaker judged on these jobs when they settle it: they say closed and reach back
        // past the window (or are the whole history), so no older job can count. Otherwise the
        // whole history and the resets (which can close it) are read: a quiet fleet costs no
        // more queries, and a machine with many jobs in the window is never shown closed wrongly.
        let settled = jobs.len() < LOCK_LOOKBACK || jobs.last().is_some_and(|j| j.created_at < now - rule.window());
        let breaker_open_until = match rule.assess(&jobs, Vec::new(), now).open_until {
            None if settled => None,
            _ => rule.read(state.queue.as_ref(), &m.id).await?.0.open_until,
        };
        machines.push(MachineView {
            health: super::health::summarize(
                &state,
                m,
                obs.get(&id).unwrap_or(&empty),
                holds.get(&id),
                paths.get(&id),
                now,
            ),
            worker_id: id,
            group: m.group.as_ref().map(|g| g.to_string()),
            class: m.class.name.clone(),
            address: m.address.clone(),
            last_job: jobs.first().map(JobSummary::from),
            lock: jobs.iter().find(|j| j.state == JobState::Running).map(JobSummary::from),
            breaker_open_until: breaker_open_until.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            tasks: s
                .enabled_tasks
                .iter()
                .filter(|&&t| unavailable(m, t, services).is_none())
                .map(|t| t.name())
                .collect(),
        });
    }
    machines.sort_by(|a, b| (&a.group, &a.worker_id).cmp(&(&b.group, &b.worker_id)));
    let body = Machines {
        inventory: !inventory.path.as_os_str().is_empty(),
        confirm_above: s.safety.confirm_above,
        fleet_in_flight: FLEET_IN_FLIGHT,
        machines,
    };
    let mut res = Json(body).into_response();
    res.extensions_mut().insert(log_fields(&caller.client_id, None));
    Ok(res)
}
