//! `GET /api/v1/machines/{worker_id}`: one machine as its page shows it. Its facts
//! from the inventory, each path roller has to it with what it talks to and the last
//! check, the tasks it can run (by the one rule the reboot chain skips by:
//! `actions::reboot::unavailable`), grouped, with which must be confirmed, and what
//! `reboot` would do (`actions::reboot::explain`, what `roller explain` prints).

use axum::Json;
use axum::extract::{Path, State, rejection::PathRejection};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::jobs::{inventory_machine, log_fields, require};
use super::machines::services;
use super::params::WorkerPath;
use super::wire::{ErrorBody, MachinePage, MachineTask, PathFact, UnavailableTask};
use super::{AppState, Authenticated};
use crate::actions::reboot::{describe, explain::explain, unavailable};
use crate::inventory::Machine;
use crate::paths::{PathKind, PathRecord, no_path};
use crate::queue::records::RecordKind;
use crate::task::Task;

/// What `kind` talks to on `m`: the description of the first task that goes by it
/// (`roller explain`'s words), so there is one description per driver.
fn target(m: &Machine, kind: PathKind) -> String {
    Task::ALL.iter().find(|&&t| PathKind::for_task(t) == Some(kind)).map(|&t| describe(m, t)).unwrap_or_default()
}

/// `GET /api/v1/machines/{worker_id}`: the machine's facts, paths, tasks and reboot
/// plan. Needs the read scope; a machine outside the inventory is 404.
#[utoipa::path(get, path = "/api/v1/machines/{worker_id}", tag = "machines",
    params(WorkerPath),
    security(("hawk" = [])),
    responses(
        (status = 200, description = "The machine as its page shows it", body = MachinePage),
        (status = 400, description = "Bad worker id", body = ErrorBody),
        (status = 403, description = "Not authenticated, or no read scope", body = ErrorBody),
        (status = 404, description = "Not in the inventory", body = ErrorBody),
        (status = 405, description = "Method not allowed", body = ErrorBody),
        (status = 503, description = "Queue or authentication service unavailable", body = ErrorBody),
    ))]
pub async fn machine_page(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    require(&caller, &state.settings.read_scope)?;
    let id = inventory_machine(&state, path)?;
    let inventory = state.inventory.current();
    let m = inventory.machine(&id).ok_or_else(ApiError::not_found)?;
    let s = &state.settings;
    let key = m.id.to_string();
    let checked = state.records.record(RecordKind::Paths, &key).await?.map(|r| PathRecord::from_record(&r));
    let paths = PathKind::MACHINE
        .into_iter()
        .filter(|k| k.configured(m))
        .map(|kind| PathFact {
            kind,
            target: target(m, kind),
            last: checked.as_ref().and_then(|r| r.get(kind)).cloned(),
        })
        .collect();
    let remediation = m.class.health.remediation.unwrap_or(s.medic.remediation);
    let services = services(s);
    let (mut tasks, mut unavailable_tasks) = (Vec::new(), Vec::new());
    for &t in &s.enabled_tasks {
        match unavailable(m, t, services) {
            Some(why) => unavailable_tasks.push(UnavailableTask { name: t.name(), why }),
            None => tasks.push(MachineTask {
                name: t.name(),
                help: t.help(),
                group: t.group().into(),
                needs_confirmation: t.needs_confirmation(),
                restarts_machine: t.restarts_machine(),
                cuts_power: t.cuts_power(),
                allowed: caller.has_scope(&s.task_scope(t)),
            }),
        }
    }
    let body = MachinePage {
        worker_id: key,
        group: m.group.as_ref().map(|g| g.to_string()),
        class: m.class.name.clone(),
        address: m.address.clone(),
        pool: super::health::pool(m),
        chassis: m.chassis.clone(),
        paths,
        no_path: no_path(m, remediation, checked.as_ref(), s.paths.enabled),
        tasks,
        unavailable: unavailable_tasks,
        plan: explain(m, services, &s.reboot).into(),
    };
    let mut res = Json(body).into_response();
    res.extensions_mut().insert(log_fields(&caller.client_id, None));
    Ok(res)
}
