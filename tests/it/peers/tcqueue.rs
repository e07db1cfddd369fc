//! A Taskcluster stand-in for the calls roller makes with its own credentials
//! (Taskcluster services are not installable here): `queue.quarantineWorker`
//! and notify's `email`, `matrix` and `slack`. It verifies what it receives the
//! way the real services do: the Hawk MAC over method, host, port and the full
//! resource (with the `hawk` crate, ±15 min), the client's scope for the exact
//! worker, address, room or channel, and each body against its schema (no
//! additional properties; quarantineUntil a date-time, quarantineInfo at most
//! 4000 characters; email subject 1–255, link text 1–40).

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
    /// (call, body) of every accepted notify request.
    notes: Arc<Mutex<Vec<(String, Value)>>>,
    /// Notify requests still to answer with a 500 (an unwell service).
    failing: Arc<Mutex<u32>>,
}

type Answer = (StatusCode, Json<Value>);

fn refuse(status: StatusCode, code: &str, message: &str) -> Answer {
    (status, Json(json!({ "code": code, "message": message, "requestInfo": {} })))
}

/// The Hawk check and the scope check every call goes through.
fn authorize(q: &FakeQueue, method: &str, uri: &Uri, headers: &HeaderMap, needed: &str) -> Result<(), Answer> {
    let unauthorized = |m: &str| Err(refuse(StatusCode::UNAUTHORIZED, "AuthenticationFailed", m));
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return unauthorized("no Authorization header");
    };
    let Some(rest) = auth.strip_prefix("Hawk ") else { return unauthorized("not Hawk") };
    let Ok(header) = rest.parse::<hawk::Header>() else { return unauthorized("malformed Hawk header") };
    if header.id.as_deref() != Some(CLIENT_ID) {
        return unauthorized("unknown client");
    }
    let key = hawk::Key::new(ACCESS_TOKEN.as_bytes(), hawk::SHA256).unwrap();
    let resource = uri.path_and_query().map(|p| p.as_str()).unwrap_or(uri.path());
    let request = hawk::RequestBuilder::new(method, "127.0.0.1", q.port, resource).request();
    if !request.validate_header(&header, &key, std::time::Duration::from_secs(15 * 60)) {
        return unauthorized("Bad mac");
    }
    let held = q.scopes.iter().any(|s| s == needed || s.strip_suffix('*').is_some_and(|pre| needed.starts_with(pre)));
    if !held {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "InsufficientScopes",
            &format!(
                "Client ID {CLIENT_ID} does not have sufficient scopes and is missing the following scopes:\n\n```\n{needed}\n```"
            ),
        ));
    }
    Ok(())
}

async fn quarantine(
    State(q): State<FakeQueue>,
    Path((p, t, g, w)): Path<(String, String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    if let Err(e) = authorize(&q, "PUT", &uri, &headers, &format!("queue:quarantine-worker:{p}/{t}/{g}/{w}")) {
        return e;
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

async fn declare_provisioner(
    State(q): State<FakeQueue>,
    Path(p): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    if let Err(e) = authorize(&q, "PUT", &uri, &headers, &format!("queue:declare-provisioner:{p}#actions")) {
        return e;
    }
    let Some(actions) = body.get("actions").and_then(Value::as_array) else {
        return refuse(StatusCode::BAD_REQUEST, "InputValidationError", "actions must be an array");
    };
    const FIELDS: [&str; 6] = ["name", "title", "context", "url", "method", "description"];
    for a in actions {
        let Some(obj) = a.as_object() else { return refuse(StatusCode::BAD_REQUEST, "InputValidationError", "action") };
        let ok = obj.len() == FIELDS.len()
            && FIELDS.iter().all(|f| obj.get(*f).and_then(Value::as_str).is_some_and(|v| !v.is_empty()))
            && ["provisioner", "worker-type", "worker"].contains(&obj["context"].as_str().unwrap_or(""))
            && ["POST", "PUT", "DELETE", "PATCH"].contains(&obj["method"].as_str().unwrap_or(""));
        if !ok {
            return refuse(StatusCode::BAD_REQUEST, "InputValidationError", &format!("invalid action {a}"));
        }
    }
    q.notes.lock().unwrap().push(("declareProvisioner".into(), body.clone()));
    // v39 and later: accepted, nothing stored.
    (StatusCode::OK, Json(json!({ "provisionerId": p, "actions": [], "stability": "experimental" })))
}

async fn notify(
    State(q): State<FakeQueue>,
    Path(call): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (scope, allowed, required): (String, &[&str], &[&str]) = match call.as_str() {
        "email" => (
            format!("notify:email:{}", text("address")),
            &["address", "subject", "content", "link", "replyTo", "template"],
            &["address", "subject", "content"],
        ),
        "matrix" => (
            format!("notify:matrix-room:{}", text("roomId")),
            &["roomId", "body", "format", "formattedBody", "msgtype"],
            &["roomId", "body"],
        ),
        "slack" => (
            format!("notify:slack-channel:{}", text("channelId")),
            &["channelId", "text", "blocks", "attachments", "unfurlLinks", "unfurlMedia"],
            &["channelId", "text"],
        ),
        _ => return refuse(StatusCode::NOT_FOUND, "ResourceNotFound", "no such notify call"),
    };
    if let Err(e) = authorize(&q, "POST", &uri, &headers, &scope) {
        return e;
    }
    let Some(obj) = body.as_object() else { return refuse(StatusCode::BAD_REQUEST, "InputValidationError", "object") };
    if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return refuse(StatusCode::BAD_REQUEST, "InputValidationError", &format!("additional property {k}"));
    }
    if let Some(k) = required.iter().find(|k| text(k).is_empty()) {
        return refuse(StatusCode::BAD_REQUEST, "InputValidationError", &format!("{k} is required"));
    }
    if call == "email" {
        let subject = text("subject").chars().count();
        let link_text = body["link"]["text"].as_str().map(|t| t.chars().count());
        if !(1..=255).contains(&subject) || link_text.is_some_and(|n| !(1..=40).contains(&n)) {
            return refuse(StatusCode::BAD_REQUEST, "InputValidationError", "subject or link text out of bounds");
        }
    }
    {
        let mut failing = q.failing.lock().unwrap();
        if *failing > 0 {
            *failing -= 1;
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", "try again");
        }
    }
    q.notes.lock().unwrap().push((call, body));
    (StatusCode::OK, Json(json!({})))
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
            notes: Arc::default(),
            failing: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/api/queue/v1/provisioners/{p}/worker-types/{t}/workers/{g}/{w}", put(quarantine))
            .route("/api/notify/v1/{call}", axum::routing::post(notify))
            .route("/api/queue/v1/provisioners/{p}", put(declare_provisioner))
            .with_state(q.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        q
    }

    /// (call, body) of every notify request accepted, oldest first.
    pub fn notes(&self) -> Vec<(String, Value)> {
        self.notes.lock().unwrap().clone()
    }

    /// Answer the next `n` notify requests with a 500.
    pub fn fail_next(&self, n: u32) {
        *self.failing.lock().unwrap() = n;
    }

    /// Every quarantine the queue accepted, oldest first.
    pub fn quarantines(&self) -> Vec<Quarantine> {
        self.log.lock().unwrap().clone()
    }
}
