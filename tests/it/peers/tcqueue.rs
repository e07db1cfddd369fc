//! A Taskcluster queue stand-in for `queue.quarantineWorker` (Taskcluster
//! services are not installable here). It verifies what it receives the way
//! the real queue does: the Hawk MAC over method, host, port and the full
//! resource (with the `hawk` crate, ±15 min), the client's scope for the exact
//! worker, and the request body against the schema (`quarantineUntil` a
//! date-time, `quarantineInfo` at most 4000 characters, nothing else).

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::put;
use serde_json::{Value, json};

pub const CLIENT_ID: &str = "project/releng/roller";
pub const ACCESS_TOKEN: &str = "tc-token-canary-4242";

#[derive(Debug, Clone, PartialEq)]
pub struct Quarantine {
    pub worker: String,
    pub until: chrono::DateTime<chrono::Utc>,
    pub info: String,
}

#[derive(Clone)]
pub struct FakeQueue {
    pub root_url: String,
    port: u16,
    /// The scopes CLIENT_ID holds.
    scopes: Arc<Vec<String>>,
    log: Arc<Mutex<Vec<Quarantine>>>,
}

type Answer = (StatusCode, Json<Value>);

fn refuse(status: StatusCode, code: &str, message: &str) -> Answer {
    (status, Json(json!({ "code": code, "message": message, "requestInfo": {} })))
}

async fn quarantine(
    State(q): State<FakeQueue>,
    Path((p, t, g, w)): Path<(String, String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return refuse(StatusCode::UNAUTHORIZED, "AuthenticationFailed", "no Authorization header");
    };
    let Some(rest) = auth.strip_prefix("Hawk ") else {
        return refuse(StatusCode::UNAUTHORIZED, "AuthenticationFailed", "not Hawk");
    };
    let Ok(header) = rest.parse::<hawk::Header>() else {
        return refuse(StatusCode::UNAUTHORIZED, "AuthenticationFailed", "malformed Hawk header");
    };
    if header.id.as_deref() != Some(CLIENT_ID) {
        return refuse(StatusCode::UNAUTHORIZED, "AuthenticationFailed", "unknown client");
    }
    let key = hawk::Key::new(ACCESS_TOKEN.as_bytes(), hawk::SHA256).unwrap();
    let resource = uri.path_and_query().map(|p| p.as_str()).unwrap_or(uri.path());
    let request = hawk::RequestBuilder::new("PUT", "127.0.0.1", q.port, resource).request();
    if !request.validate_header(&header, &key, std::time::Duration::from_secs(15 * 60)) {
        return refuse(StatusCode::UNAUTHORIZED, "AuthenticationFailed", "Bad mac");
    }
    let needed = format!("queue:quarantine-worker:{p}/{t}/{g}/{w}");
    let held = q.scopes.iter().any(|s| *s == needed || s.strip_suffix('*').is_some_and(|pre| needed.starts_with(pre)));
    if !held {
        return refuse(
            StatusCode::FORBIDDEN,
            "InsufficientScopes",
            &format!(
                "Client ID {CLIENT_ID} does not have sufficient scopes and is missing the following scopes:\n\n```\n{needed}\n```"
            ),
        );
    }
    let Some(obj) = body.as_object() else { return refuse(StatusCode::BAD_REQUEST, "InputValidationError", "object") };
    if let Some(k) = obj.keys().find(|k| *k != "quarantineUntil" && *k != "quarantineInfo") {
        return refuse(StatusCode::BAD_REQUEST, "InputValidationError", &format!("additional property {k}"));
    }
    let until = obj
        .get("quarantineUntil")
        .and_then(Value::as_str)
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&chrono::Utc));
    let Some(until) = until else {
        return refuse(StatusCode::BAD_REQUEST, "InputValidationError", "quarantineUntil must be a date-time");
    };
    let info = obj.get("quarantineInfo").and_then(Value::as_str).unwrap_or("").to_string();
    if info.chars().count() > 4000 {
        return refuse(StatusCode::BAD_REQUEST, "InputValidationError", "quarantineInfo is too long");
    }
    q.log.lock().unwrap().push(Quarantine { worker: format!("{p}/{t}/{g}/{w}"), until, info });
    (
        StatusCode::OK,
        Json(json!({
            "provisionerId": p, "workerType": t, "workerGroup": g, "workerId": w,
            "quarantineUntil": until.to_rfc3339(), "recentTasks": [], "actions": [],
        })),
    )
}

impl FakeQueue {
    pub async fn start(scopes: &[&str]) -> FakeQueue {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let q = FakeQueue {
            root_url: format!("http://127.0.0.1:{port}"),
            port,
            scopes: Arc::new(scopes.iter().map(|s| s.to_string()).collect()),
            log: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/api/queue/v1/provisioners/{p}/worker-types/{t}/workers/{g}/{w}", put(quarantine))
            .with_state(q.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        q
    }

    /// Every quarantine the queue accepted, oldest first.
    pub fn quarantines(&self) -> Vec<Quarantine> {
        self.log.lock().unwrap().clone()
    }
}
