//! A small Redfish stand-in for what sushy-tools' emulator lacks (it has no
//! SessionService and no LogServices): a root that offers sessions, token-only
//! resources (basic auth is refused and counted), a session table that can be listed,
//! a Reset action that answers 409 a set number of times, and log services as BMCs
//! serve them: the system's `EventLog` with its entries inline (OpenBMC's way) and the
//! manager's `Sel` whose entries are references read one by one (the DMTF way).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub const PASSWORD: &str = "pw-session-bmc";

/// One log entry the stand-in serves.
#[derive(Clone)]
pub struct Entry {
    pub id: String,
    pub created: String,
    pub severity: String,
    pub message: String,
}

impl Entry {
    pub fn new(id: &str, created: &str, severity: &str, message: &str) -> Entry {
        Entry { id: id.into(), created: created.into(), severity: severity.into(), message: message.into() }
    }

    fn json(&self, service: &str) -> Value {
        json!({
            "@odata.id": format!("{service}/Entries/{}", self.id),
            "Id": self.id, "Created": self.created, "Severity": self.severity, "Message": self.message,
            "EntryType": "Event"
        })
    }
}

#[derive(Default)]
pub struct Bmc {
    /// id → token
    pub sessions: HashMap<String, String>,
    pub created: u32,
    pub basic_requests: u32,
    pub reset_bodies: Vec<String>,
    /// 409s still to give to Reset before accepting.
    pub conflicts: u32,
    /// The system's EventLog (served inline) and the manager's SEL (served as references).
    pub event_log: Vec<Entry>,
    pub sel: Vec<Entry>,
    /// Paths of the log resources read, in order.
    pub log_reads: Vec<String>,
}

type Shared = Arc<Mutex<Bmc>>;

const EVENT_LOG: &str = "/redfish/v1/Systems/1/LogServices/EventLog";
const SEL: &str = "/redfish/v1/Managers/1/LogServices/Sel";

fn authorized(s: &Shared, h: &HeaderMap) -> bool {
    let mut b = s.lock().unwrap();
    if h.contains_key("authorization") {
        b.basic_requests += 1;
    }
    h.get("x-auth-token").and_then(|t| t.to_str().ok()).is_some_and(|t| b.sessions.values().any(|v| v == t))
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, Json(json!({"error": {"message": "no valid session"}}))).into_response()
}

/// A resource behind a session, its read recorded when `log` is set.
fn resource(s: &Shared, h: &HeaderMap, path: &str, log: bool, body: impl FnOnce(&Bmc) -> Value) -> Response {
    if !authorized(s, h) {
        return unauthorized();
    }
    let mut b = s.lock().unwrap();
    if log {
        b.log_reads.push(path.to_string());
    }
    Json(body(&b)).into_response()
}

pub async fn start(conflicts: u32) -> (String, Shared) {
    start_with(Bmc { conflicts, ..Default::default() }).await
}

pub async fn start_with(bmc: Bmc) -> (String, Shared) {
    let state: Shared = Arc::new(Mutex::new(bmc));
    let app = axum::Router::new()
        .route(
            "/redfish/v1/",
            get(|State(s): State<Shared>, h: HeaderMap| async move {
                // Served without credentials, like a real BMC; any sent are counted.
                authorized(&s, &h);
                Json(json!({
                    "SessionService": {"@odata.id": "/redfish/v1/SessionService"},
                    "Links": {"Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}},
                    "Systems": {"@odata.id": "/redfish/v1/Systems"},
                    "Managers": {"@odata.id": "/redfish/v1/Managers"}
                }))
            }),
        )
        .route(
            "/redfish/v1/SessionService/Sessions",
            post(|State(s): State<Shared>, Json(body): Json<Value>| async move {
                if body["UserName"] != "admin" || body["Password"] != PASSWORD {
                    return unauthorized();
                }
                let mut b = s.lock().unwrap();
                b.created += 1;
                let id = b.created.to_string();
                let token = format!("token-{id}-{}", crate::helpers::random_nonce());
                b.sessions.insert(id.clone(), token.clone());
                let location = format!("/redfish/v1/SessionService/Sessions/{id}");
                (StatusCode::CREATED, [("X-Auth-Token", token), ("Location", location)], Json(json!({"Id": id})))
                    .into_response()
            })
            .get(|State(s): State<Shared>, h: HeaderMap| async move {
                if !authorized(&s, &h) {
                    return unauthorized();
                }
                let ids: Vec<Value> = s.lock().unwrap().sessions.keys().map(|id| json!({"@odata.id": id})).collect();
                Json(json!({"Members": ids})).into_response()
            }),
        )
        .route(
            "/redfish/v1/SessionService/Sessions/{id}",
            axum::routing::delete(|State(s): State<Shared>, Path(id): Path<String>, h: HeaderMap| async move {
                if !authorized(&s, &h) {
                    return unauthorized();
                }
                s.lock().unwrap().sessions.remove(&id);
                StatusCode::NO_CONTENT.into_response()
            }),
        )
        .route(
            "/redfish/v1/Systems",
            get(|State(s): State<Shared>, h: HeaderMap| async move {
                resource(&s, &h, "", false, |_| json!({"Members": [{"@odata.id": "/redfish/v1/Systems/1"}]}))
            }),
        )
        .route(
            "/redfish/v1/Systems/1",
            get(|State(s): State<Shared>, h: HeaderMap| async move {
                resource(&s, &h, "", false, |_| {
                    json!({
                        "@odata.id": "/redfish/v1/Systems/1",
                        "PowerState": "Off",
                        "LogServices": {"@odata.id": "/redfish/v1/Systems/1/LogServices"},
                        "Actions": {"#ComputerSystem.Reset": {
                            "target": "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
                            "ResetType@Redfish.AllowableValues": ["On", "ForceOff", "ForceRestart"]
                        }}
                    })
                })
            }),
        )
        .route(
            "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
            post(|State(s): State<Shared>, h: HeaderMap, body: String| async move {
                if !authorized(&s, &h) {
                    return unauthorized();
                }
                let mut b = s.lock().unwrap();
                b.reset_bodies.push(body);
                if b.conflicts > 0 {
                    b.conflicts -= 1;
                    let err = json!({"error": {"code": "Base.1.0.GeneralError", "message": "see ExtendedInfo",
                        "@Message.ExtendedInfo": [{"MessageId": "Base.1.8.ActionParameterValueConflict",
                            "Message": "The system is still powering off."}]}});
                    return (StatusCode::CONFLICT, Json(err)).into_response();
                }
                StatusCode::NO_CONTENT.into_response()
            }),
        )
        .route(
            "/redfish/v1/Systems/1/LogServices",
            get(|State(s): State<Shared>, h: HeaderMap| async move {
                resource(
                    &s,
                    &h,
                    "/redfish/v1/Systems/1/LogServices",
                    true,
                    |_| json!({"Members": [{"@odata.id": EVENT_LOG}]}),
                )
            }),
        )
        .route(
            EVENT_LOG,
            get(|State(s): State<Shared>, h: HeaderMap| async move {
                resource(&s, &h, EVENT_LOG, true, |_| {
                    json!({"@odata.id": EVENT_LOG, "Id": "EventLog",
                           "Entries": {"@odata.id": format!("{EVENT_LOG}/Entries")}})
                })
            }),
        )
        .route(
            "/redfish/v1/Systems/1/LogServices/EventLog/Entries",
            get(|State(s): State<Shared>, h: HeaderMap| async move {
                resource(&s, &h, "/redfish/v1/Systems/1/LogServices/EventLog/Entries", true, |b| {
                    let members: Vec<Value> = b.event_log.iter().map(|e| e.json(EVENT_LOG)).collect();
                    json!({"Members@odata.count": members.len(), "Members": members})
                })
            }),
        )
        .route(
            "/redfish/v1/Managers",
            get(|State(s): State<Shared>, h: HeaderMap| async move {
                resource(&s, &h, "", false, |_| json!({"Members": [{"@odata.id": "/redfish/v1/Managers/1"}]}))
            }),
        )
        .route(
            "/redfish/v1/Managers/1",
            get(|State(s): State<Shared>, h: HeaderMap| async move {
                resource(&s, &h, "", false, |_| {
                    json!({"@odata.id": "/redfish/v1/Managers/1",
                           "LogServices": {"@odata.id": "/redfish/v1/Managers/1/LogServices"}})
                })
            }),
        )
        .route(
            "/redfish/v1/Managers/1/LogServices",
            get(|State(s): State<Shared>, h: HeaderMap| async move {
                resource(
                    &s,
                    &h,
                    "/redfish/v1/Managers/1/LogServices",
                    true,
                    |_| json!({"Members": [{"@odata.id": SEL}]}),
                )
            }),
        )
        .route(
            SEL,
            get(|State(s): State<Shared>, h: HeaderMap| async move {
                resource(
                    &s,
                    &h,
                    SEL,
                    true,
                    |_| json!({"@odata.id": SEL, "Id": "Sel", "Entries": {"@odata.id": format!("{SEL}/Entries")}}),
                )
            }),
        )
        .route(
            "/redfish/v1/Managers/1/LogServices/Sel/Entries",
            get(|State(s): State<Shared>, h: HeaderMap| async move {
                resource(&s, &h, "/redfish/v1/Managers/1/LogServices/Sel/Entries", true, |b| {
                    let members: Vec<Value> =
                        b.sel.iter().map(|e| json!({"@odata.id": format!("{SEL}/Entries/{}", e.id)})).collect();
                    json!({"Members@odata.count": members.len(), "Members": members})
                })
            }),
        )
        .route(
            "/redfish/v1/Managers/1/LogServices/Sel/Entries/{id}",
            get(|State(s): State<Shared>, Path(id): Path<String>, h: HeaderMap| async move {
                let path = format!("{SEL}/Entries/{id}");
                let found = s.lock().unwrap().sel.iter().find(|e| e.id == id).cloned();
                match found {
                    Some(e) => resource(&s, &h, &path, true, |_| e.json(SEL)),
                    None => StatusCode::NOT_FOUND.into_response(),
                }
            }),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, state)
}
