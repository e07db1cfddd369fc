//! The stand-in's HTTP side: each route checks what it receives in the order lib-api
//! does (authentication, then scopes, then path parameters, query and body;
//! `queue.statuses` takes its scopes from the body, so its body comes first), then
//! answers from the fleet in the published shape. Errors are lib-api's
//! `{code, message, requestInfo}`; an unknown route is `{"error": "Not found"}`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::{get, post, put};
use chrono::Utc;
use serde_json::{Value, json};

use super::fleet::split_queue_id;
use super::{ACCESS_TOKEN, CLIENT_ID, Quarantine, Shared};

type Answer = (StatusCode, Json<Value>);
type Checked<T> = Result<T, Answer>;
type S = State<Arc<Shared>>;

fn refuse(status: StatusCode, code: &str, message: &str) -> Answer {
    (status, Json(json!({ "code": code, "message": message, "requestInfo": {} })))
}

fn bad_input(message: &str) -> Answer {
    refuse(StatusCode::BAD_REQUEST, "InputValidationError", message)
}

fn bad_arguments(message: &str) -> Answer {
    refuse(StatusCode::BAD_REQUEST, "InvalidRequestArguments", message)
}

fn ok(v: Value) -> Answer {
    (StatusCode::OK, Json(v))
}

/// The queue's identifier pattern for provisioners, worker types, groups and ids.
fn identifier(name: &str, v: &str) -> Checked<()> {
    let ok = (1..=38).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok { Ok(()) } else { Err(bad_arguments(&format!("{name} {v:?} does not match ^[a-zA-Z0-9-_]{{1,38}}$"))) }
}

/// The queue's SLUGID_PATTERN for task ids.
fn slugid(v: &str) -> Checked<()> {
    let b = v.as_bytes();
    let any = |c: &u8| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_';
    let ok = b.len() == 22
        && b[..8].iter().all(any)
        && (b'Q'..=b'T').contains(&b[8])
        && any(&b[9])
        && b"CGKOSWaeimquy26-".contains(&b[10])
        && b[11..21].iter().all(any)
        && b"AQgw".contains(&b[21]);
    if ok { Ok(()) } else { Err(bad_arguments(&format!("taskId {v:?} is not a slugid"))) }
}

/// Who is calling and what they hold. A request with an Authorization header is
/// always authenticated (a bad one is a 401, never anonymous access); one without is
/// `anonymous`. Signed callers hold the anonymous scopes too, as Taskcluster expands
/// `assume:anonymous` into every client's.
fn authenticate(s: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Checked<Vec<String>> {
    let anonymous = s.anonymous.lock().unwrap().clone();
    let Some(auth) = headers.get("authorization") else { return Ok(anonymous) };
    let unauthorized = |m: &str| Err(refuse(StatusCode::UNAUTHORIZED, "AuthenticationFailed", m));
    let Some(rest) = auth.to_str().ok().and_then(|a| a.strip_prefix("Hawk ")) else { return unauthorized("not Hawk") };
    let Ok(header) = rest.parse::<hawk::Header>() else { return unauthorized("malformed Hawk header") };
    if header.id.as_deref() != Some(CLIENT_ID) {
        return unauthorized("unknown client");
    }
    // A payload hash is optional; when the header has one, lib-api checks it against the
    // body (the Python client sends one, even for an empty body).
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let content_type = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let hash = hawk::PayloadHasher::hash(content_type.as_bytes(), hawk::SHA256, body).unwrap();
    let key = hawk::Key::new(ACCESS_TOKEN.as_bytes(), hawk::SHA256).unwrap();
    let resource = uri.path_and_query().map(|p| p.as_str()).unwrap_or(uri.path());
    let request = hawk::RequestBuilder::new(method.as_str(), "127.0.0.1", s.port, resource)
        .hash(header.hash.as_ref().map(|_| &hash[..]))
        .request();
    if !request.validate_header(&header, &key, std::time::Duration::from_secs(15 * 60)) {
        return unauthorized("Bad mac");
    }
    let mut held: Vec<String> = s.scopes.clone();
    held.extend(anonymous);
    Ok(held)
}

fn require(held: &[String], who: bool, needed: &[String]) -> Checked<()> {
    let has = |n: &str| held.iter().any(|s| s == n || s.strip_suffix('*').is_some_and(|pre| n.starts_with(pre)));
    let missing: Vec<&str> = needed.iter().map(String::as_str).filter(|n| !has(n)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let client = if who { CLIENT_ID } else { "anonymous" };
    Err(refuse(
        StatusCode::FORBIDDEN,
        "InsufficientScopes",
        &format!(
            "Client ID {client} does not have sufficient scopes and is missing the following scopes:\n\n```\n{}\n```",
            missing.join("\n")
        ),
    ))
}

/// Count the call, parse the body, authenticate, check the scopes: what every route
/// does first (lib-api's body parser runs before its authentication).
fn admit(s: &Shared, call: &'static str, req: &Request, needed: &[String]) -> Checked<()> {
    s.count(call);
    if !req.body.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(&req.body).is_err() {
        return Err(bad_input("the body is not JSON"));
    }
    let held = authenticate(s, &req.method, &req.uri, &req.headers, &req.body)?;
    require(&held, req.headers.contains_key("authorization"), needed)
}

/// A query parameter the route knows, with its pattern.
type Param = (&'static str, fn(&str) -> bool);

/// What every handler gets of the request.
struct Request {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl<St: Send + Sync> axum::extract::FromRequest<St> for Request {
    type Rejection = Answer;
    async fn from_request(req: axum::extract::Request, _: &St) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20)
            .await
            .map_err(|_| refuse(StatusCode::PAYLOAD_TOO_LARGE, "InputValidationError", "body too large"))?;
        Ok(Request { method: parts.method, uri: parts.uri, headers: parts.headers, body })
    }
}

impl Request {
    fn json(&self) -> Checked<serde_json::Map<String, Value>> {
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::Object(o)) => Ok(o),
            _ => Err(bad_input("the body must be a JSON object")),
        }
    }

    /// The query's parameters, each at most once and each known to the route, with its
    /// pattern checked. The real service ignores unknown parameters; refusing them here
    /// catches a misspelt `continuationToken` that would silently restart the listing.
    fn query(&self, known: &[Param]) -> Checked<Vec<(String, String)>> {
        let pairs: Vec<(String, String)> = axum::extract::Query::try_from_uri(&self.uri)
            .map(|q: axum::extract::Query<Vec<(String, String)>>| q.0)
            .map_err(|e| bad_arguments(&e.to_string()))?;
        for (i, (k, v)) in pairs.iter().enumerate() {
            let Some((_, pattern)) = known.iter().find(|(name, _)| name == k) else {
                return Err(bad_arguments(&format!("unknown query parameter {k:?}")));
            };
            if pairs[..i].iter().any(|(seen, _)| seen == k) {
                return Err(bad_arguments(&format!("query parameter {k:?} given twice")));
            }
            if !pattern(v) {
                return Err(bad_arguments(&format!("query parameter {k}={v:?} does not match its pattern")));
            }
        }
        Ok(pairs)
    }
}

fn digits(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())
}

fn non_empty(v: &str) -> bool {
    !v.is_empty()
}

fn boolean(v: &str) -> bool {
    v == "true" || v == "false"
}

fn get_param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// `paginateResults`: (offset, page size) from `continuationToken` and `limit`.
fn page(s: &Shared, pairs: &[(String, String)]) -> Checked<(usize, usize)> {
    // min(limit || 1000, 1000); a number too long to parse is over 1000 anyway.
    let size = get_param(pairs, "limit").map_or(1000, |l| l.parse::<usize>().map_or(1000, |n| n.min(1000)));
    let offset = match get_param(pairs, "continuationToken") {
        None => 0,
        // The real queue refuses a non-alphanumeric token and restarts at the first page
        // on alphanumeric garbage; a client that sends either has a bug, so both are refused.
        Some(t) => s.fleet.lock().unwrap().offset(t).ok_or_else(|| bad_arguments("invalid continuationToken"))?,
    };
    Ok((offset, size))
}

/// The token for the page after (offset, size), when rows remain; none for offset 0,
/// as the queue's encoder gives none (so `limit=0` ends at once).
fn next_token(s: &Shared, more: bool, offset: usize, size: usize) -> Option<String> {
    (more && offset + size > 0).then(|| s.fleet.lock().unwrap().token(offset + size))
}

const PAGING: [Param; 2] = [("continuationToken", non_empty), ("limit", digits)];

async fn list_workers(State(s): S, Path((p, t)): Path<(String, String)>, req: Request) -> Answer {
    let run = || -> Checked<Value> {
        admit(&s, "queue.listWorkers", &req, &[format!("queue:list-workers:{p}/{t}")])?;
        identifier("provisionerId", &p)?;
        identifier("workerType", &t)?;
        let pairs = req.query(&[PAGING[0], PAGING[1], ("quarantined", boolean)])?;
        let (offset, size) = page(&s, &pairs)?;
        let quarantined = get_param(&pairs, "quarantined").map(|q| q == "true");
        let (workers, more) =
            s.fleet.lock().unwrap().list_workers(&format!("{p}/{t}"), offset, size, quarantined, Utc::now());
        let mut answer = json!({ "workers": workers });
        if let Some(token) = next_token(&s, more, offset, size) {
            answer["continuationToken"] = json!(token);
        }
        Ok(answer)
    };
    run().map_or_else(|e| e, ok)
}

type WorkerPath = Path<(String, String, String, String)>;

/// What getWorker and quarantineWorker check first: the scope for the exact worker,
/// then its four names. The worker's pool.
fn admit_worker(s: &Shared, call: &'static str, scope: &str, req: &Request, path: &WorkerPath) -> Checked<String> {
    let (p, t, g, w) = &path.0;
    admit(s, call, req, &[format!("{scope}:{p}/{t}/{g}/{w}")])?;
    for (name, v) in [("provisionerId", p), ("workerType", t), ("workerGroup", g), ("workerId", w)] {
        identifier(name, v)?;
    }
    Ok(format!("{p}/{t}"))
}

fn no_worker(w: &str) -> Answer {
    refuse(StatusCode::NOT_FOUND, "ResourceNotFound", &format!("Worker {w} not found"))
}

async fn get_worker(State(s): S, path: WorkerPath, req: Request) -> Answer {
    let run = || -> Checked<Value> {
        let pool = admit_worker(&s, "queue.getWorker", "queue:get-worker", &req, &path)?;
        let (_, _, g, w) = &path.0;
        s.fleet.lock().unwrap().worker_json((&pool, g, w), Utc::now()).ok_or_else(|| no_worker(w))
    };
    run().map_or_else(|e| e, ok)
}

async fn quarantine(State(s): S, path: WorkerPath, req: Request) -> Answer {
    let run = || -> Checked<Value> {
        let pool = admit_worker(&s, "queue.quarantineWorker", "queue:quarantine-worker", &req, &path)?;
        let (_, _, g, w) = &path.0;
        let obj = req.json()?;
        if let Some(k) = obj.keys().find(|k| *k != "quarantineUntil" && *k != "quarantineInfo") {
            return Err(bad_input(&format!("additional property {k}")));
        }
        let until = obj
            .get("quarantineUntil")
            .and_then(Value::as_str)
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&Utc))
            .ok_or_else(|| bad_input("quarantineUntil must be a date-time"))?;
        let info = obj.get("quarantineInfo").and_then(Value::as_str).unwrap_or("").to_string();
        if info.chars().count() > 4000 {
            return Err(bad_input("quarantineInfo is too long"));
        }
        let mut fleet = s.fleet.lock().unwrap();
        if !fleet.has_worker((&pool, g, w)) {
            return Err(no_worker(w));
        }
        let now = Utc::now();
        fleet.set_quarantine((&pool, g, w), until, now);
        s.log.lock().unwrap().push(Quarantine { worker: format!("{pool}/{g}/{w}"), until, info });
        Ok(fleet.worker_json((&pool, g, w), now).expect("a worker just quarantined is visible"))
    };
    run().map_or_else(|e| e, ok)
}

async fn status(State(s): S, Path(task_id): Path<String>, req: Request) -> Answer {
    let run = || -> Checked<Value> {
        admit(&s, "queue.status", &req, &[format!("queue:status:{task_id}")])?;
        slugid(&task_id)?;
        let status = s.fleet.lock().unwrap().status_json(&task_id);
        let status = status
            .ok_or_else(|| refuse(StatusCode::NOT_FOUND, "ResourceNotFound", &format!("{task_id} does not exist")))?;
        Ok(json!({ "status": status }))
    };
    run().map_or_else(|e| e, ok)
}

async fn statuses(State(s): S, req: Request) -> Answer {
    let run = || -> Checked<Value> {
        s.count("queue.statuses");
        // The scopes come from the body, so the body is checked first (tasks-request.yml).
        let obj = req.json()?;
        if let Some(k) = obj.keys().find(|k| *k != "taskIds") {
            return Err(bad_input(&format!("additional property {k}")));
        }
        let ids: Vec<String> = match obj.get("taskIds") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| bad_input("taskIds must be strings"))?,
            Some(_) => return Err(bad_input("taskIds must be an array")),
        };
        let held = authenticate(&s, &req.method, &req.uri, &req.headers, &req.body)?;
        let needed: Vec<String> = ids.iter().map(|id| format!("queue:status:{id}")).collect();
        require(&held, req.headers.contains_key("authorization"), &needed)?;
        let pairs = req.query(&PAGING)?;
        let (offset, size) = page(&s, &pairs)?;
        let fleet = s.fleet.lock().unwrap();
        let known = fleet.known_tasks(&ids);
        let rows: Vec<Value> = known
            .iter()
            .skip(offset)
            .take(size)
            .map(|id| json!({ "taskId": id, "status": fleet.status_json(id) }))
            .collect();
        drop(fleet);
        let mut answer = json!({ "statuses": rows });
        if let Some(token) = next_token(&s, known.len() > offset + size, offset, size) {
            answer["continuationToken"] = json!(token);
        }
        Ok(answer)
    };
    run().map_or_else(|e| e, ok)
}

/// `<p>/<wt>`, checked as the queue's `taskQueueId` parameter.
fn task_queue_id(tq: &str) -> Checked<(&str, &str)> {
    let (p, t) = split_queue_id(tq);
    identifier("taskQueueId", p).and_then(|_| identifier("taskQueueId", t)).map(|_| (p, t))
}

/// `queue.pendingTasks` (deprecated) and `queue.taskQueueCounts`: the task queue id is
/// one argument whose `/` arrives encoded (`%2F`, as the clients send it) or literally.
async fn counts(s: Arc<Shared>, tq: String, req: Request, with_claimed: bool) -> Answer {
    let run = || -> Checked<Value> {
        let mut needed = vec![format!("queue:pending-count:{tq}")];
        if with_claimed {
            needed.push(format!("queue:claimed-count:{tq}"));
        }
        admit(&s, if with_claimed { "queue.taskQueueCounts" } else { "queue.pendingTasks" }, &req, &needed)?;
        let (p, t) = task_queue_id(&tq)?;
        let (pending, claimed) = s.fleet.lock().unwrap().counts(&tq);
        let mut answer = json!({ "provisionerId": p, "workerType": t, "taskQueueId": tq, "pendingTasks": pending });
        if with_claimed {
            answer["claimedTasks"] = json!(claimed);
        }
        Ok(answer)
    };
    run().map_or_else(|e| e, ok)
}

async fn declare_provisioner(State(s): S, Path(p): Path<String>, req: Request) -> Answer {
    let run = || -> Checked<Value> {
        admit(&s, "queue.declareProvisioner", &req, &[format!("queue:declare-provisioner:{p}#actions")])?;
        let body = Value::Object(req.json()?);
        let actions =
            body.get("actions").and_then(Value::as_array).ok_or_else(|| bad_input("actions must be an array"))?;
        const FIELDS: [&str; 6] = ["name", "title", "context", "url", "method", "description"];
        for a in actions {
            let obj = a.as_object().ok_or_else(|| bad_input("action"))?;
            let valid = obj.len() == FIELDS.len()
                && FIELDS.iter().all(|f| obj.get(*f).and_then(Value::as_str).is_some_and(|v| !v.is_empty()))
                && ["provisioner", "worker-type", "worker"].contains(&obj["context"].as_str().unwrap_or(""))
                && ["POST", "PUT", "DELETE", "PATCH"].contains(&obj["method"].as_str().unwrap_or(""));
            if !valid {
                return Err(bad_input(&format!("invalid action {a}")));
            }
        }
        s.notes.lock().unwrap().push(("declareProvisioner".into(), body.clone()));
        // v39 and later: accepted, nothing stored.
        Ok(json!({ "provisionerId": p, "actions": [], "stability": "experimental" }))
    };
    run().map_or_else(|e| e, ok)
}

async fn notify(State(s): S, Path(call): Path<String>, req: Request) -> Answer {
    let run = || -> Checked<Value> {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let (name, scope, allowed, required): (&'static str, String, &[&str], &[&str]) = match call.as_str() {
            "email" => (
                "notify.email",
                format!("notify:email:{}", text("address")),
                &["address", "subject", "content", "link", "replyTo", "template"],
                &["address", "subject", "content"],
            ),
            "matrix" => (
                "notify.matrix",
                format!("notify:matrix-room:{}", text("roomId")),
                &["roomId", "body", "format", "formattedBody", "msgtype"],
                &["roomId", "body"],
            ),
            "slack" => (
                "notify.slack",
                format!("notify:slack-channel:{}", text("channelId")),
                &["channelId", "text", "blocks", "attachments", "unfurlLinks", "unfurlMedia"],
                &["channelId", "text"],
            ),
            _ => return Err(refuse(StatusCode::NOT_FOUND, "ResourceNotFound", "no such notify call")),
        };
        admit(&s, name, &req, &[scope])?;
        let obj = req.json()?;
        if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(bad_input(&format!("additional property {k}")));
        }
        if let Some(k) = required.iter().find(|k| text(k).is_empty()) {
            return Err(bad_input(&format!("{k} is required")));
        }
        if call == "email" {
            let subject = text("subject").chars().count();
            let link_text = body["link"]["text"].as_str().map(|t| t.chars().count());
            if !(1..=255).contains(&subject) || link_text.is_some_and(|n| !(1..=40).contains(&n)) {
                return Err(bad_input("subject or link text out of bounds"));
            }
        }
        {
            let mut failing = s.failing.lock().unwrap();
            if *failing > 0 {
                *failing -= 1;
                return Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", "try again"));
            }
        }
        s.notes.lock().unwrap().push((call.clone(), body.clone()));
        Ok(json!({}))
    };
    run().map_or_else(|e| e, ok)
}

/// `auth.currentScopes`: the caller's scopes (anonymous callers get theirs too).
async fn current_scopes(State(s): S, req: Request) -> Answer {
    s.count("auth.currentScopes");
    match authenticate(&s, &req.method, &req.uri, &req.headers, &req.body) {
        Ok(scopes) => ok(json!({ "scopes": scopes })),
        Err(e) => e,
    }
}

async fn not_found() -> Answer {
    (StatusCode::NOT_FOUND, Json(json!({ "error": "Not found" })))
}

pub(super) fn router(shared: Arc<Shared>) -> axum::Router {
    const WORKER: &str = "/api/queue/v1/provisioners/{p}/worker-types/{t}/workers/{g}/{w}";
    let counts_of =
        |with_claimed| move |State(s): S, Path(tq): Path<String>, req: Request| counts(s, tq, req, with_claimed);
    let counts_split = |with_claimed| {
        move |State(s): S, Path((p, t)): Path<(String, String)>, req: Request| {
            counts(s, format!("{p}/{t}"), req, with_claimed)
        }
    };
    axum::Router::new()
        .route("/api/queue/v1/provisioners/{p}/worker-types/{t}/workers", get(list_workers))
        .route(WORKER, get(get_worker).put(quarantine))
        .route("/api/queue/v1/task/{task_id}/status", get(status))
        .route("/api/queue/v1/tasks/status", post(statuses))
        .route("/api/queue/v1/pending/{tq}", get(counts_of(false)))
        .route("/api/queue/v1/pending/{p}/{t}", get(counts_split(false)))
        .route("/api/queue/v1/task-queues/{tq}/counts", get(counts_of(true)))
        .route("/api/queue/v1/task-queues/{p}/{t}/counts", get(counts_split(true)))
        .route("/api/queue/v1/provisioners/{p}", put(declare_provisioner))
        .route("/api/notify/v1/{call}", post(notify))
        .route("/api/auth/v1/scopes/current", get(current_scopes))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .with_state(shared)
}
