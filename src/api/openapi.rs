//! The OpenAPI document, generated from the handlers' `#[utoipa::path]`
//! annotations, the parameter shapes (`params.rs`, the query structs) and the wire
//! types, served at `/api/v1/openapi.json` with this deployment's tasks and limits
//! ([`for_settings`]). OpenAPI 3.2: the first version that can describe a
//! `text/event-stream` answer event by event (`itemSchema`). Tests check the running
//! service against it, and run openapi-spec-validator and schemathesis on it.

use axum::extract::State;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{OpenApiVersion, RefOr};
use utoipa::{Modify, OpenApi};

use super::{AppState, breaker, dockerflow, events, health, jobs, machine_page, machines, medic, params, paths, wire};
use crate::config::Settings;

#[derive(OpenApi)]
#[openapi(
    info(title = "roller", description = "Release Operations Controller: queue and follow hardware tasks on machines."),
    paths(
        jobs::enqueue_group_form,
        jobs::preflight,
        jobs::enqueue_query_form,
        jobs::preflight_query_form,
        jobs::history,
        jobs::get_job,
        events::job_events,
        breaker::status,
        health::fleet,
        health::machine,
        medic::hold,
        medic::release,
        medic::decisions,
        medic::plan,
        medic::allow,
        paths::fleet_paths,
        paths::machine_paths,
        paths::check_machine_paths,
        paths::check_shared_paths,
        breaker::reset,
        machines::whoami,
        machines::machines,
        machine_page::machine_page,
        dockerflow::lbheartbeat,
        dockerflow::heartbeat,
        dockerflow::version,
        dockerflow::metrics,
        openapi_json,
    ),
    components(schemas(
        wire::Created,
        wire::JobView,
        wire::LogLineView,
        wire::History,
        wire::ErrorBody,
        wire::WhoAmI,
        wire::TaskView,
        wire::Machines,
        wire::MachineView,
        wire::JobSummary,
        wire::MachinePage,
        wire::TaskGroupName,
        events::JobEvent,
        params::TaskName
    )),
    modifiers(&Hawk, &Version32),
)]
pub struct ApiDoc;

/// OpenAPI 3.2 (utoipa writes 3.1 unless told).
struct Version32;

impl Modify for Version32 {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.openapi = OpenApiVersion::Version32;
    }
}

/// The document as this deployment answers: `task_name` takes its enabled tasks, a
/// history's `limit` goes up to its `queue.history_limit`.
pub fn for_settings(settings: &Settings) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    if let Some(components) = doc.components.as_mut() {
        components
            .schemas
            .insert("TaskName".into(), RefOr::T(params::task_names(settings.enabled_tasks.iter().copied())));
    }
    let history = doc.paths.paths.get_mut("/api/v1/workers/{worker_id}/jobs").and_then(|p| p.get.as_mut());
    let limit = history
        .and_then(|op| op.parameters.as_mut())
        .and_then(|ps| {
            ps.iter_mut().find_map(|p| match p {
                RefOr::T(p) if p.name == "limit" => Some(p),
                _ => None,
            })
        })
        .and_then(|p| p.schema.as_mut());
    if let Some(RefOr::T(utoipa::openapi::schema::Schema::Object(o))) = limit {
        o.maximum = Some((settings.history_limit as f64).into());
    }
    doc
}

/// Taskcluster-flavoured Hawk in the `Authorization` header.
struct Hawk;

impl Modify for Hawk {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "hawk",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`Hawk id=…, ts=…, nonce=…, mac=…[, ext=…]` over method, host, port and path with query \
                 (Taskcluster credentials, temporary credentials and authorizedScopes in `ext`)",
            ))),
        );
    }
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", responses(
    (status = 200, description = "This document (OpenAPI 3.2), with this deployment's tasks and limits", body = Object),
    (status = 405, description = "Method not allowed", body = wire::ErrorBody)))]
pub async fn openapi_json(State(state): State<AppState>) -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(for_settings(&state.settings))
}
