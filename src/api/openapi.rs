//! The OpenAPI document, generated from the handlers' `#[utoipa::path]`
//! annotations and the wire types, served at `/api/v1/openapi.json`. A test
//! checks the running service against it.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{breaker, dockerflow, events, health, jobs, machines, medic, wire};

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
        breaker::reset,
        machines::whoami,
        machines::machines,
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
        wire::JobSummary
    )),
    modifiers(&Hawk),
)]
pub struct ApiDoc;

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
    (status = 200, body = Object), (status = 405, description = "Method not allowed", body = wire::ErrorBody)))]
pub async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
