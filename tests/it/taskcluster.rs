//! The `taskcluster` auth backend against a loopback stand-in of
//! `POST /api/auth/v1/authenticate-hawk` that follows the published schema:
//! it refuses bodies that break it and really verifies the Hawk MAC.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

/// The stand-in's users: (clientId, accessToken), and the scopes Taskcluster returns for them.
const TC_USER: (&str, &str) = ("mozilla-auth0/ad|Mozilla-LDAP|operator", "tc-user-token");
const TC_USER_SCOPES: &[&str] = &["project:releng:roller:ping", "project:releng:roller:jobs:read", "assume:anonymous"];
/// Holds a roller scope for another task only.
const TC_REBOOTER: (&str, &str) = ("mozilla-auth0/ad|Mozilla-LDAP|rebooter", "tc-rebooter-token");
const TC_REBOOTER_SCOPES: &[&str] = &["project:releng:roller:reboot", "assume:anonymous"];
const PATH: &str = "/api/v1/workers/w1/group/g/jobs?task_name=ping";

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Value>>>);

async fn authenticate_hawk(State(seen): State<Seen>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    seen.0.lock().unwrap().push(body.clone());
    // The request schema: additionalProperties false, lower-case method, host without port.
    let allowed = ["method", "resource", "host", "port", "authorization", "sourceIp"];
    let obj = body.as_object().cloned().unwrap_or_default();
    let schema_ok = obj.keys().all(|k| allowed.contains(&k.as_str()))
        && body["method"].as_str().is_some_and(|m| m.chars().all(|c| c.is_ascii_lowercase()))
        && body["resource"].as_str().is_some()
        && body["host"].as_str().is_some_and(|h| !h.contains(':'))
        && body["port"].as_u64().is_some_and(|p| p <= 65535);
    if !schema_ok {
        return (StatusCode::BAD_REQUEST, Json(json!({"code": "InputValidationError", "message": "schema"})));
    }
    let Some(authz) = body["authorization"].as_str() else {
        return (
            StatusCode::OK,
            Json(json!({"status": "no-auth", "scheme": "none", "scopes": [], "expires": "2030-01-01T00:00:00.000Z"})),
        );
    };
    let header: hawk::Header = match authz.strip_prefix("Hawk ").map(str::parse) {
        Some(Ok(h)) => h,
        _ => {
            return (StatusCode::OK, Json(json!({"status": "auth-failed", "message": "Bad header"})));
        }
    };
    let id = header.id.clone().unwrap_or_default();
    match id.as_str() {
        "no-status" => return (StatusCode::OK, Json(json!({"message": "what status?"}))),
        "odd-status" => {
            return (StatusCode::OK, Json(json!({"status": "banana", "message": "ripe"})));
        }
        "broken" => {
            return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"message": "oops"})));
        }
        "slow" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            return (StatusCode::OK, Json(json!({"status": "auth-failed", "message": "too late"})));
        }
        _ => {}
    }
    let (token, scopes) = match id.as_str() {
        i if i == TC_USER.0 => (TC_USER.1, TC_USER_SCOPES),
        i if i == TC_REBOOTER.0 => (TC_REBOOTER.1, TC_REBOOTER_SCOPES),
        _ => return (StatusCode::OK, Json(json!({"status": "auth-failed", "message": "Unknown credentials"}))),
    };
    let key = hawk::Key::new(token.as_bytes(), hawk::SHA256).unwrap();
    let method = body["method"].as_str().unwrap().to_ascii_uppercase();
    let req = hawk::RequestBuilder::new(
        &method,
        body["host"].as_str().unwrap(),
        body["port"].as_u64().unwrap() as u16,
        body["resource"].as_str().unwrap(),
    )
    .request();
    if !req.validate_header(&header, &key, Duration::from_secs(15 * 60)) {
        return (StatusCode::OK, Json(json!({"status": "auth-failed", "message": "Bad mac"})));
    }
    (
        StatusCode::OK,
        Json(json!({
            "status": "auth-success", "scheme": "hawk", "clientId": id,
            "scopes": scopes,
            "expires": "2030-01-01T00:00:00.000Z"
        })),
    )
}

async fn spawn_tc() -> (String, Seen) {
    let seen = Seen::default();
    let app =
        axum::Router::new().route("/api/auth/v1/authenticate-hawk", post(authenticate_hawk)).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

async fn tc_app(root_url: &str) -> TestApp {
    spawn_app_with("[auth]\nbackend = \"taskcluster\"\ntimeout_secs = 2\n", &[("TASKCLUSTER_ROOT_URL", root_url)]).await
}

async fn post_as(app: &TestApp, id: &str, token: &str) -> (u16, Value) {
    let h = hawk_header(&Method::POST, &app.url(PATH), id, token, None, now());
    let r = app.http.post(app.url(PATH)).header("Authorization", h).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn auth_success_uses_the_returned_scopes_and_client_id() {
    let (root, seen) = spawn_tc().await;
    let app = tc_app(&root).await;
    let (status, v) = post_as(&app, TC_USER.0, TC_USER.1).await;
    assert_eq!(status, 201, "{v}");
    let job = app.signed_tc(&format!("/api/v1/jobs/{}", v["task_id"].as_str().unwrap())).await;
    assert_eq!(job["requester"], TC_USER.0);
    let bodies = seen.0.lock().unwrap().clone();
    let b = &bodies[0];
    assert_eq!(b["method"], "post");
    assert_eq!(b["resource"], PATH);
    assert_eq!(b["host"], "127.0.0.1");
    assert_eq!(b["port"], app.addr.port());
    assert!(b["authorization"].as_str().unwrap().starts_with("Hawk "));
}

#[tokio::test]
async fn auth_failed_is_403_with_taskclusters_message() {
    let (root, _) = spawn_tc().await;
    let app = tc_app(&root).await;
    let (status, v) = post_as(&app, TC_USER.0, "wrong-token").await;
    // Taskcluster's "Bad mac", in roller's words naming the client.
    assert_eq!((status, v["detail"].as_str()), (403, Some(roller::auth::bad_mac(TC_USER.0).as_str())));
}

#[tokio::test]
async fn the_returned_scopes_are_checked_per_task() {
    let (root, _) = spawn_tc().await;
    let app = tc_app(&root).await;
    // Taskcluster says who the caller is and what it holds; roller checks the scope for the requested task.
    let (status, v) = post_as(&app, TC_REBOOTER.0, TC_REBOOTER.1).await;
    let d = v["detail"].as_str().unwrap_or_default();
    assert_eq!(status, 403, "{v}");
    assert!(d.contains(&format!("Client '{}' lacks the scope 'project:releng:roller:ping'", TC_REBOOTER.0)), "{d}");
    let history = app.url("/api/v1/workers/w1/jobs");
    let h = hawk_header(&Method::GET, &history, TC_REBOOTER.0, TC_REBOOTER.1, None, now());
    let r = app.http.get(&history).header("Authorization", h).send().await.unwrap();
    assert_eq!(r.status(), 403, "no read scope");
    // The operator holds ping and jobs:read.
    let h = hawk_header(&Method::GET, &history, TC_USER.0, TC_USER.1, None, now());
    let r = app.http.get(&history).header("Authorization", h).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_replayed_header_is_refused_although_taskcluster_accepts_it() {
    let (root, seen) = spawn_tc().await;
    let app = tc_app(&root).await;
    let h = hawk_header(&Method::POST, &app.url(PATH), TC_USER.0, TC_USER.1, None, now());
    let r = app.http.post(app.url(PATH)).header("Authorization", &h).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let r = app.http.post(app.url(PATH)).header("Authorization", &h).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["detail"], "Replayed nonce");
    assert_eq!(seen.0.lock().unwrap().len(), 2, "Taskcluster saw both and accepted both");
}

/// The Taskcluster backend keeps its record of used headers in the queue backend as
/// well: after a restart on the same data directory, roller refuses a header it
/// accepted before, although Taskcluster accepts it again.
#[tokio::test]
async fn a_header_accepted_before_a_restart_is_refused_after_it() {
    let (root, seen) = spawn_tc().await;
    let extra = "[server]\ntrusted_proxy = true\n[auth]\nbackend = \"taskcluster\"\ntimeout_secs = 2\n";
    let env = [("TASKCLUSTER_ROOT_URL", root.as_str())];
    // Signed for the public name, so the same header is valid whichever port roller listens on.
    let h = hawk_header(&Method::POST, &format!("https://roller.example.com{PATH}"), TC_USER.0, TC_USER.1, None, now());
    let send = |app: &TestApp| {
        app.http
            .post(app.url(PATH))
            .header("Host", "roller.example.com")
            .header("X-Forwarded-Proto", "https")
            .header("Authorization", &h)
            .send()
    };
    let app = spawn_app_with(extra, &env).await;
    let r = send(&app).await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let dir = app.stop().await;
    let cfg = dir.path().join("roller.toml");
    let app = spawn_app_from(dir, &cfg, &env).await;
    let r = send(&app).await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["detail"], "Replayed nonce");
    assert_eq!(seen.0.lock().unwrap().len(), 2, "Taskcluster saw both and accepted both");
}

#[tokio::test]
async fn a_response_without_status_or_with_an_unknown_one_is_403() {
    let (root, _) = spawn_tc().await;
    let app = tc_app(&root).await;
    let (status, v) = post_as(&app, "no-status", "x").await;
    assert_eq!((status, v["detail"].as_str()), (403, Some("'status' not found invalid auth response")));
    let (status, v) = post_as(&app, "odd-status", "x").await;
    assert_eq!((status, v["detail"].as_str()), (403, Some("invalid auth response status: banana ripe")));
}

#[tokio::test]
async fn a_missing_header_never_reaches_taskcluster() {
    let (root, seen) = spawn_tc().await;
    let app = tc_app(&root).await;
    let r = app.http.post(app.url(PATH)).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(seen.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_unreachable_or_failing_or_hanging_auth_service_is_503() {
    // A port with nothing listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        drop(l);
        format!("http://{a}")
    };
    let app = tc_app(&closed).await;
    let (status, v) = post_as(&app, TC_USER.0, TC_USER.1).await;
    assert_eq!(status, 503, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("unavailable"));

    let (root, _) = spawn_tc().await;
    let app = tc_app(&root).await;
    let (status, _) = post_as(&app, "broken", "x").await;
    assert_eq!(status, 503);
    let start = std::time::Instant::now();
    let (status, _) = post_as(&app, "slow", "x").await;
    assert_eq!(status, 503);
    // Bounded by the configured timeout (2 s), not the stand-in's 30 s; a generous bound.
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_port_is_signed() {
    let (root, seen) = spawn_tc().await;
    let app = spawn_app_with(
        "[server]\ntrusted_proxy = true\n[auth]\nbackend = \"taskcluster\"\ntimeout_secs = 2\n",
        &[("TASKCLUSTER_ROOT_URL", &root)],
    )
    .await;
    // The client signed https://roller.example.com/… (port 443); the proxy forwards to us.
    let h =
        hawk_header(&Method::POST, &format!("https://roller.example.com:443{PATH}"), TC_USER.0, TC_USER.1, None, now());
    let r = app
        .http
        .post(app.url(PATH))
        .header("Authorization", h)
        .header("Host", "roller.example.com")
        .header("X-Forwarded-Proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let b = seen.0.lock().unwrap()[0].clone();
    assert_eq!((b["host"].as_str(), b["port"].as_u64()), (Some("roller.example.com"), Some(443)));
}

impl TestApp {
    /// GET signed with the stand-in's user.
    async fn signed_tc(&self, path: &str) -> Value {
        let h = hawk_header(&Method::GET, &self.url(path), TC_USER.0, TC_USER.1, None, now());
        let r = self.http.get(self.url(path)).header("Authorization", h).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }
}
