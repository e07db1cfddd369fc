//! A Bugzilla REST stand-in (no installable Bugzilla runs in a test): the
//! subset of the BMO 5 API roller uses, with bugs in memory. It follows the
//! published protocol and is strict about what it receives:
//!
//! * every request must carry the API key in `X-BUGZILLA-API-KEY`; a wrong or
//!   missing key is Bugzilla's error 306, and a key in the query string (which
//!   Bugzilla would accept, and which ends up in access logs) is recorded as a
//!   violation and refused;
//! * `GET /rest/bug/<id or alias>`: `{"bugs": [..]}` or 404 with error 101;
//! * `GET /rest/bug?summary=..&product=..&component=..&resolution=---`: summary
//!   is a substring match, as on BMO;
//! * `POST /rest/bug`: product, component, summary, version and description are
//!   required; an alias already in use is error 103; `blocks` must name bugs;
//! * `GET /rest/bug/<id>/comment`: `{"bugs": {"<id>": {"comments": [..]}}}`, the
//!   description first;
//! * `PUT /rest/bug/<id>`: `status`, `resolution`, `dupe_of`, `comment.body`,
//!   `blocks.add` only; any other field is refused so a typo in roller cannot pass
//!   unnoticed. RESOLVED needs a resolution, DUPLICATE needs `dupe_of` naming another
//!   existing bug, and a resolution needs a closed status.
//!
//! Every bug carries its `creation_time` (ISO 8601, UTC); a test can age a bug.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq)]
pub struct Bug {
    pub id: u64,
    pub alias: Option<String>,
    pub product: String,
    pub component: String,
    pub summary: String,
    pub status: String,
    pub resolution: String,
    pub description: String,
    pub cc: Vec<String>,
    pub blocks: Vec<u64>,
    pub comments: Vec<String>,
    pub creation_time: chrono::DateTime<chrono::Utc>,
    pub dupe_of: Option<u64>,
}

impl Bug {
    fn is_open(&self) -> bool {
        self.resolution.is_empty()
    }

    fn json(&self) -> Value {
        json!({
            "id": self.id, "alias": self.alias.iter().collect::<Vec<_>>(), "product": self.product,
            "component": self.component, "summary": self.summary, "status": self.status,
            "resolution": self.resolution, "is_open": self.is_open(), "cc": self.cc, "blocks": self.blocks,
            "creation_time": self.creation_time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "dupe_of": self.dupe_of,
        })
    }
}

#[derive(Default)]
struct Inner {
    bugs: Vec<Bug>,
    /// (method, path and query) of every request.
    requests: Vec<String>,
    violations: Vec<String>,
}

#[derive(Clone)]
struct Shared {
    key: String,
    inner: Arc<Mutex<Inner>>,
}

pub struct FakeBugzilla {
    pub url: String,
    shared: Shared,
}

type Answer = (StatusCode, Json<Value>);

fn error(status: StatusCode, code: i64, message: &str) -> Answer {
    (
        status,
        Json(
            json!({ "error": true, "code": code, "message": message, "documentation": "https://bmo.readthedocs.io/en/latest/api/" }),
        ),
    )
}

impl Shared {
    /// The key check every Bugzilla call goes through.
    fn check(&self, headers: &HeaderMap, what: String, query: Option<&str>) -> Result<(), Answer> {
        let mut inner = self.inner.lock().unwrap();
        inner.requests.push(what.clone());
        if query.is_some_and(|q| q.to_ascii_lowercase().contains("api_key")) {
            inner.violations.push(format!("API key in the URL: {what}"));
            return Err(error(StatusCode::BAD_REQUEST, 306, "The API key must not be sent in the URL."));
        }
        match headers.get("x-bugzilla-api-key").and_then(|v| v.to_str().ok()) {
            Some(k) if k == self.key => Ok(()),
            _ => Err(error(
                StatusCode::BAD_REQUEST,
                306,
                "The API key you specified is invalid. Please check that you typed it correctly.",
            )),
        }
    }
}

/// `GET /rest/whoami`: the key's account (Bugzilla 5.1's answer: id, real_name, nick, name).
async fn whoami(State(s): State<Shared>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Answer {
    if let Err(e) = s.check(&headers, "GET /rest/whoami".into(), raw.as_deref()) {
        return e;
    }
    (StatusCode::OK, Json(json!({ "id": 7, "real_name": "Roller", "nick": "roller", "name": "roller@example.com" })))
}

async fn get_bug(State(s): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    if let Err(e) = s.check(&headers, format!("GET /rest/bug/{id}"), None) {
        return e;
    }
    let inner = s.inner.lock().unwrap();
    let found = inner.bugs.iter().find(|b| b.id.to_string() == id || b.alias.as_deref() == Some(id.as_str()));
    match found {
        Some(b) => (StatusCode::OK, Json(json!({ "bugs": [b.json()], "faults": [] }))),
        None => error(StatusCode::NOT_FOUND, 101, &format!("Bug #{id} does not exist.")),
    }
}

async fn search(
    State(s): State<Shared>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Answer {
    if let Err(e) = s.check(&headers, format!("GET /rest/bug?{}", raw.clone().unwrap_or_default()), raw.as_deref()) {
        return e;
    }
    let inner = s.inner.lock().unwrap();
    let bugs: Vec<Value> = inner
        .bugs
        .iter()
        .filter(|b| q.get("summary").is_none_or(|v| b.summary.contains(v.as_str())))
        .filter(|b| q.get("product").is_none_or(|v| &b.product == v))
        .filter(|b| q.get("component").is_none_or(|v| &b.component == v))
        .filter(|b| q.get("resolution").is_none_or(|v| if v == "---" { b.is_open() } else { &b.resolution == v }))
        .map(Bug::json)
        .collect();
    (StatusCode::OK, Json(json!({ "bugs": bugs })))
}

async fn create(
    State(s): State<Shared>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Json(body): Json<Value>,
) -> Answer {
    if let Err(e) = s.check(&headers, "POST /rest/bug".into(), raw.as_deref()) {
        return e;
    }
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    for required in ["product", "component", "summary", "version", "description"] {
        if text(required).is_none_or(|v| v.trim().is_empty()) {
            return error(StatusCode::BAD_REQUEST, 50, &format!("You must enter a value for the '{required}' field."));
        }
    }
    let alias = match body.get("alias") {
        None => None,
        Some(Value::String(a)) => Some(a.clone()),
        Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => a[0].as_str().map(str::to_string),
        Some(other) => return error(StatusCode::BAD_REQUEST, 50, &format!("invalid alias {other}")),
    };
    let mut inner = s.inner.lock().unwrap();
    if let Some(a) = &alias
        && inner.bugs.iter().any(|b| b.alias.as_ref() == Some(a))
    {
        return error(StatusCode::BAD_REQUEST, 103, &format!("The alias you entered, {a}, is already taken."));
    }
    let blocks: Vec<u64> = body
        .get("blocks")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    if let Some(missing) = blocks.iter().find(|id| !inner.bugs.iter().any(|b| b.id == **id)) {
        return error(StatusCode::BAD_REQUEST, 101, &format!("Bug #{missing} does not exist."));
    }
    let cc = body
        .get("cc")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let id = inner.bugs.len() as u64 + 1;
    inner.bugs.push(Bug {
        id,
        alias,
        product: text("product").unwrap(),
        component: text("component").unwrap(),
        summary: text("summary").unwrap(),
        status: "NEW".into(),
        resolution: String::new(),
        description: text("description").unwrap(),
        cc,
        blocks,
        comments: Vec::new(),
        creation_time: chrono::Utc::now(),
        dupe_of: None,
    });
    (StatusCode::OK, Json(json!({ "id": id })))
}

async fn comments(State(s): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    if let Err(e) = s.check(&headers, format!("GET /rest/bug/{id}/comment"), None) {
        return e;
    }
    let inner = s.inner.lock().unwrap();
    let Some(b) = inner.bugs.iter().find(|b| b.id.to_string() == id) else {
        return error(StatusCode::NOT_FOUND, 101, &format!("Bug #{id} does not exist."));
    };
    let comments: Vec<Value> = std::iter::once(&b.description)
        .chain(&b.comments)
        .enumerate()
        .map(|(count, text)| json!({ "bug_id": b.id, "count": count, "text": text }))
        .collect();
    (StatusCode::OK, Json(json!({ "bugs": { b.id.to_string(): { "comments": comments } }, "comments": {} })))
}

async fn update(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    Json(body): Json<Value>,
) -> Answer {
    if let Err(e) = s.check(&headers, format!("PUT /rest/bug/{id}"), raw.as_deref()) {
        return e;
    }
    let Some(obj) = body.as_object() else { return error(StatusCode::BAD_REQUEST, 32614, "a JSON object is required") };
    if let Some(k) =
        obj.keys().find(|k| !["status", "resolution", "dupe_of", "comment", "blocks"].contains(&k.as_str()))
    {
        return error(StatusCode::BAD_REQUEST, 50, &format!("the stand-in does not accept field {k:?}"));
    }
    let mut inner = s.inner.lock().unwrap();
    let dupe_of = match obj.get("dupe_of") {
        None => None,
        Some(v) => match v.as_u64() {
            Some(d) if d.to_string() != id && inner.bugs.iter().any(|b| b.id == d) => Some(d),
            _ => return error(StatusCode::BAD_REQUEST, 101, &format!("dupe_of {v} is not another existing bug")),
        },
    };
    let Some(bug) = inner.bugs.iter_mut().find(|b| b.id.to_string() == id) else {
        return error(StatusCode::NOT_FOUND, 101, &format!("Bug #{id} does not exist."));
    };
    let status = obj.get("status").and_then(Value::as_str);
    let resolution = obj.get("resolution").and_then(Value::as_str);
    if let Some(status) = status
        && !["NEW", "ASSIGNED", "REOPENED", "RESOLVED", "VERIFIED"].contains(&status)
    {
        return error(StatusCode::BAD_REQUEST, 60, &format!("There is no status named '{status}'."));
    }
    let closed = |s: &str| s == "RESOLVED" || s == "VERIFIED";
    match (status, resolution) {
        (Some(s), None) if closed(s) && bug.resolution.is_empty() => {
            return error(StatusCode::BAD_REQUEST, 32600, "A valid resolution is required to mark a bug as RESOLVED.");
        }
        (_, Some(r)) if !["FIXED", "INVALID", "WONTFIX", "DUPLICATE", "WORKSFORME", "INCOMPLETE"].contains(&r) => {
            return error(StatusCode::BAD_REQUEST, 32600, &format!("There is no resolution named '{r}'."));
        }
        (s, Some(_)) if !closed(s.unwrap_or(&bug.status)) => {
            return error(StatusCode::BAD_REQUEST, 32600, "A resolution needs a RESOLVED or VERIFIED status.");
        }
        (_, Some("DUPLICATE")) if dupe_of.is_none() => {
            return error(StatusCode::BAD_REQUEST, 32600, "A duplicate needs dupe_of.");
        }
        _ => {}
    }
    if dupe_of.is_some() && resolution != Some("DUPLICATE") {
        return error(StatusCode::BAD_REQUEST, 32600, "dupe_of goes with the resolution DUPLICATE.");
    }
    if let Some(status) = status {
        bug.status = status.to_string();
        if !closed(status) {
            bug.resolution.clear();
            bug.dupe_of = None;
        }
    }
    if let Some(r) = resolution {
        bug.resolution = r.to_string();
        bug.dupe_of = dupe_of;
    }
    if let Some(c) = obj.get("comment") {
        match c.get("body").and_then(Value::as_str) {
            Some(text) if !text.trim().is_empty() => bug.comments.push(text.to_string()),
            _ => return error(StatusCode::BAD_REQUEST, 54, "comment.body is required"),
        }
    }
    if let Some(add) = obj.get("blocks").and_then(|b| b.get("add")).and_then(Value::as_array) {
        for id in add.iter().filter_map(Value::as_u64) {
            if !bug.blocks.contains(&id) {
                bug.blocks.push(id);
            }
        }
    }
    let id = bug.id;
    (StatusCode::OK, Json(json!({ "bugs": [{ "id": id, "changes": {} }] })))
}

impl FakeBugzilla {
    pub async fn start(key: &str) -> FakeBugzilla {
        let shared = Shared { key: key.to_string(), inner: Arc::default() };
        let app = axum::Router::new()
            .route("/rest/whoami", get(whoami))
            .route("/rest/bug", get(search).post(create))
            .route("/rest/bug/{id}", get(get_bug).put(update))
            .route("/rest/bug/{id}/comment", get(comments))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeBugzilla { url: format!("http://{addr}"), shared }
    }

    pub fn bugs(&self) -> Vec<Bug> {
        self.shared.inner.lock().unwrap().bugs.clone()
    }

    pub fn requests(&self) -> Vec<String> {
        self.shared.inner.lock().unwrap().requests.clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.shared.inner.lock().unwrap().violations.clone()
    }

    /// Make a bug look filed `ago` earlier.
    pub fn age(&self, id: u64, ago: std::time::Duration) {
        let mut inner = self.shared.inner.lock().unwrap();
        let bug = inner.bugs.iter_mut().find(|b| b.id == id).expect("bug exists");
        bug.creation_time = chrono::Utc::now() - ago;
    }

    /// Resolve a bug as a person would.
    pub fn close(&self, id: u64) {
        let mut inner = self.shared.inner.lock().unwrap();
        let bug = inner.bugs.iter_mut().find(|b| b.id == id).expect("bug exists");
        bug.status = "RESOLVED".into();
        bug.resolution = "FIXED".into();
    }
}
