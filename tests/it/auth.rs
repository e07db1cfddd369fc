//! Local Hawk verification through the API: every way a header can be wrong,
//! and Taskcluster temporary credentials with authorizedScopes.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

const PATH: &str = "/api/v1/workers/w1/group/g/jobs?task_name=ping";

async fn post_with(app: &TestApp, authorization: &str) -> (u16, String) {
    let r = app.http.post(app.url(PATH)).header("Authorization", authorization).send().await.unwrap();
    let status = r.status().as_u16();
    assert_eq!(r.headers()["access-control-allow-origin"], "https://tc.example.com");
    let v: Value = r.json().await.unwrap();
    (status, v["detail"].as_str().unwrap_or_default().to_string())
}

#[tokio::test]
async fn a_missing_header_is_403_with_a_reason() {
    let app = spawn_app().await;
    let r = app.http.post(app.url(PATH)).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["detail"], "Authentication credentials were not provided.");
}

#[tokio::test]
async fn garbled_headers_are_403_with_a_reason() {
    let app = spawn_app().await;
    for h in [
        "Basic dXNlcjpwYXNz",
        "Hawk",
        "Hawk id=\"admin\"",
        "Hawk id=\"admin\", ts=\"1\", nonce=\"n\", mac=\"m\", mac=\"m\"",
        "Hawk id=\"admin\", ts=\"not-a-number\", nonce=\"n\", mac=\"bWFj\"",
        "Hawk garbage",
        "Hawk id=\"ad\"min\", ts=\"1\", nonce=\"n\", mac=\"m\"",
    ] {
        let (status, detail) = post_with(&app, h).await;
        assert_eq!(status, 403, "{h}");
        assert!(!detail.is_empty(), "{h}");
    }
}

#[tokio::test]
async fn an_oversized_header_is_403_not_a_crash() {
    let app = spawn_app().await;
    let h = format!("Hawk id=\"admin\", ts=\"1\", nonce=\"{}\", mac=\"m\"", "n".repeat(5000));
    let (status, detail) = post_with(&app, &h).await;
    assert_eq!(status, 403);
    assert!(detail.contains("4096"), "{detail}");
}

#[tokio::test]
async fn a_wrong_mac_is_refused() {
    let app = spawn_app().await;
    let h = hawk_header(&Method::POST, &app.url(PATH), ADMIN.0, "not-the-token", None, now());
    assert_eq!(post_with(&app, &h).await, (403, roller::auth::bad_mac("admin")));
    let (_, said) = post_with(&app, &h).await;
    assert!(said.contains("wrong access token for client 'admin'"), "{said}");
    // Signed for another resource.
    let h = hawk_header(
        &Method::POST,
        &app.url("/api/v1/workers/w2/group/g/jobs?task_name=ping"),
        ADMIN.0,
        ADMIN.1,
        None,
        now(),
    );
    assert_eq!(post_with(&app, &h).await, (403, roller::auth::bad_mac("admin")));
}

#[tokio::test]
async fn an_unknown_client_is_refused() {
    let app = spawn_app().await;
    let h = hawk_header(&Method::POST, &app.url(PATH), "nobody", "whatever", None, now());
    let (status, detail) = post_with(&app, &h).await;
    assert_eq!(status, 403);
    assert!(detail.contains("Unknown credentials"), "{detail}");
}

#[tokio::test]
async fn timestamps_beyond_fifteen_minutes_are_refused_within_are_accepted() {
    let app = spawn_app().await;
    let old = now() - Duration::from_secs(16 * 60);
    let h = hawk_header(&Method::POST, &app.url(PATH), ADMIN.0, ADMIN.1, None, old);
    let (status, detail) = post_with(&app, &h).await;
    assert_eq!(status, 403);
    assert!(detail.contains("Stale timestamp"), "{detail}");
    let future = now() + Duration::from_secs(16 * 60);
    let h = hawk_header(&Method::POST, &app.url(PATH), ADMIN.0, ADMIN.1, None, future);
    let (status, detail) = post_with(&app, &h).await;
    assert_eq!(status, 403);
    assert!(detail.contains("Stale timestamp"), "{detail}");
    let skewed = now() - Duration::from_secs(14 * 60);
    let h = hawk_header(&Method::POST, &app.url(PATH), ADMIN.0, ADMIN.1, None, skewed);
    assert_eq!(post_with(&app, &h).await.0, 201);
}

#[tokio::test]
async fn a_replayed_header_is_refused() {
    let app = spawn_app().await;
    let h = hawk_header(&Method::POST, &app.url(PATH), ADMIN.0, ADMIN.1, None, now());
    assert_eq!(post_with(&app, &h).await.0, 201);
    let (status, detail) = post_with(&app, &h).await;
    assert_eq!(status, 403);
    assert!(detail.to_lowercase().contains("nonce"), "{detail}");
}

#[tokio::test]
async fn unnamed_temporary_credentials_work_with_either_base64_alphabet() {
    let app = spawn_app().await;
    for url_safe in [false, true] {
        let t = ms(now());
        let (id, token, cert) =
            temp_credentials(ISSUER, None, &["project:releng:roller:ping"], t - 60_000, t + 3_600_000);
        let e = ext(&json!({ "certificate": cert }), url_safe);
        let path = format!("/api/v1/workers/w1/group/g{}/jobs?task_name=ping", url_safe as u8);
        let h = hawk_header(&Method::POST, &app.url(&path), &id, &token, Some(&e), now());
        let r = app.http.post(app.url(&path)).header("Authorization", h).send().await.unwrap();
        assert_eq!(r.status(), 201, "url_safe={url_safe}: {}", r.text().await.unwrap());
    }
}

#[tokio::test]
async fn named_temporary_credentials_carry_their_own_client_id() {
    let app = spawn_app().await;
    let t = ms(now());
    let (id, token, cert) =
        temp_credentials(ISSUER, Some("tmp-operator"), &["project:releng:roller:ping"], t - 60_000, t + 3_600_000);
    let e = ext(&json!({ "certificate": cert }), true);
    let h = hawk_header(&Method::POST, &app.url(PATH), &id, &token, Some(&e), now());
    let r = app.http.post(app.url(PATH)).header("Authorization", h).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(app.get_job(v["task_id"].as_str().unwrap()).await["requester"], "tmp-operator");
}

#[tokio::test]
async fn temporary_credentials_scopes_limit_what_they_can_do() {
    let app = spawn_app().await;
    let t = ms(now());
    let (id, token, cert) =
        temp_credentials(ISSUER, None, &["project:releng:roller:reboot"], t - 60_000, t + 3_600_000);
    let e = ext(&json!({ "certificate": cert }), false);
    let h = hawk_header(&Method::POST, &app.url(PATH), &id, &token, Some(&e), now());
    let (status, detail) = post_with(&app, &h).await;
    assert_eq!(status, 403);
    assert!(detail.contains(&format!("Client '{id}' lacks the scope 'project:releng:roller:ping'")), "{detail}");
}

#[tokio::test]
async fn expired_or_overlong_or_forged_certificates_are_refused() {
    let app = spawn_app().await;
    let t = ms(now());
    let day = 86_400_000;
    let cases = [
        (
            "ext.certificate.expiry < now",
            temp_credentials(ISSUER, None, &["project:releng:roller:ping"], t - 2 * 3_600_000, t - 3_600_000),
        ),
        (
            "ext.certificate.start > now",
            temp_credentials(ISSUER, None, &["project:releng:roller:ping"], t + 3_600_000, t + 7_200_000),
        ),
        (
            "ext.certificate cannot last longer than 31 days!",
            temp_credentials(ISSUER, None, &["project:releng:roller:ping"], t - 60_000, t + 32 * day),
        ),
        (
            "doesn't satisfy all certificate scopes",
            temp_credentials(ISSUER, None, &["queue:*"], t - 60_000, t + 3_600_000),
        ),
    ];
    for (want, (id, token, cert)) in cases {
        let e = ext(&json!({ "certificate": cert }), false);
        let h = hawk_header(&Method::POST, &app.url(PATH), &id, &token, Some(&e), now());
        let (status, detail) = post_with(&app, &h).await;
        assert_eq!(status, 403, "{want}");
        assert!(detail.contains(want), "want {want:?}, got {detail:?}");
    }
    // A forged signature: scopes changed after signing.
    let (id, token, mut cert) =
        temp_credentials(ISSUER, None, &["project:releng:roller:ping"], t - 60_000, t + 3_600_000);
    cert["scopes"] = json!(["project:releng:roller:*"]);
    let e = ext(&json!({ "certificate": cert }), false);
    let h = hawk_header(&Method::POST, &app.url(PATH), &id, &token, Some(&e), now());
    let (status, detail) = post_with(&app, &h).await;
    assert_eq!(status, 403);
    assert!(detail.starts_with("ext.certificate.signature is not valid"), "{detail}");
    // Signed with the issuer's own token instead of the derived temporary one.
    let (id, _, cert) = temp_credentials(ISSUER, None, &["project:releng:roller:ping"], t - 60_000, t + 3_600_000);
    let e = ext(&json!({ "certificate": cert }), false);
    let h = hawk_header(&Method::POST, &app.url(PATH), &id, ISSUER.1, Some(&e), now());
    assert_eq!(post_with(&app, &h).await, (403, roller::auth::bad_mac(&id)));
}

#[tokio::test]
async fn authorized_scopes_narrow_a_client() {
    let app = spawn_app().await;
    let e = ext(&json!({ "authorizedScopes": ["project:releng:roller:jobs:read"] }), false);
    let h = hawk_header(&Method::POST, &app.url(PATH), ADMIN.0, ADMIN.1, Some(&e), now());
    let (status, detail) = post_with(&app, &h).await;
    assert_eq!(status, 403);
    assert!(detail.contains("Client 'admin' lacks the scope 'project:releng:roller:ping'"), "{detail}");
    let e = ext(&json!({ "authorizedScopes": ["project:releng:roller:ping"] }), true);
    let h = hawk_header(&Method::POST, &app.url(PATH), ADMIN.0, ADMIN.1, Some(&e), now());
    assert_eq!(post_with(&app, &h).await.0, 201);
    // A client cannot authorize scopes it does not hold.
    let e = ext(&json!({ "authorizedScopes": ["project:releng:roller:ping"] }), false);
    let h = hawk_header(&Method::POST, &app.url(PATH), READER.0, READER.1, Some(&e), now());
    let (status, detail) = post_with(&app, &h).await;
    assert_eq!(status, 403);
    assert!(detail.contains("authorizedScopes"), "{detail}");
}

#[tokio::test]
async fn a_garbled_ext_is_refused() {
    let app = spawn_app().await;
    for e in ["%%%not-base64%%%", "bm90IGpzb24=", "eyJjZXJ0aWZpY2F0ZSI6IDEyM30="] {
        let h = hawk_header(&Method::POST, &app.url(PATH), ADMIN.0, ADMIN.1, Some(e), now());
        let (status, detail) = post_with(&app, &h).await;
        assert_eq!(status, 403, "{e}");
        assert!(!detail.is_empty());
    }
}

#[tokio::test]
async fn two_authorization_headers_are_refused_whichever_one_is_valid() {
    let app = spawn_app().await;
    let other = "Hawk id=\"reader\", ts=\"1\", nonce=\"n\", mac=\"bWFj\"";
    for valid_first in [true, false] {
        let good = hawk_header(&Method::POST, &app.url(PATH), ADMIN.0, ADMIN.1, None, now());
        let (first, second) = if valid_first { (good.as_str(), other) } else { (other, good.as_str()) };
        // reqwest appends: the request carries both headers.
        let r = app.http.post(app.url(PATH)).header("Authorization", first).header("Authorization", second);
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 403, "valid first: {valid_first}");
        assert_eq!(r.headers()["access-control-allow-origin"], "https://tc.example.com");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error_code"], "invalid_credentials", "{v}");
        assert!(v["detail"].as_str().unwrap().contains("more than one Authorization header"), "{v}");
    }
    let history = app.signed(Method::GET, "/api/v1/workers/w1/jobs", ADMIN).await;
    assert_eq!(history.json::<Value>().await.unwrap()["jobs"], json!([]), "nothing was queued");
}

/// A control byte in a header value is refused before any of roller's handlers run, with
/// roller's own answer (JSON, CORS headers, the header named and its value not echoed) where
/// hyper's parser would give a bare 400, and the connection is closed. A byte above 0x7f
/// passes and gets roller's 403. The second request of a kept-alive connection is checked too.
#[tokio::test]
async fn a_control_byte_in_a_header_is_answered_roller_s_400_and_the_connection_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    // `before`: a clean request sent first on the same connection (kept alive).
    let exchange = |value: &'static [u8], before: bool| {
        let addr = app.addr;
        async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut req = Vec::new();
            if before {
                req.extend_from_slice(format!("GET /__lbheartbeat__ HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes());
            }
            let head = format!(
                "POST {PATH} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\nAuthorization: "
            );
            req.extend_from_slice(head.as_bytes());
            req.extend_from_slice(value);
            req.extend_from_slice(b"\r\n\r\n");
            s.write_all(&req).await.unwrap();
            let mut got = Vec::new();
            // Until the server closes: it must, and soon.
            tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
                .await
                .expect("the connection was closed after the answer")
                .ok();
            String::from_utf8_lossy(&got).to_string()
        }
    };
    // Counted by reason (the recorder is the test process's: other tests may add to it).
    let refused = || async {
        let text = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let series = "roller_connections_dropped_total{reason=\"invalid_header\"} ";
        text.lines().find_map(|l| l.strip_prefix(series)).map_or(0.0, |v| v.parse::<f64>().unwrap())
    };
    let before = refused().await;
    let answer = exchange(b"Hawk id=\"ad\x01min\", ts=\"1\", nonce=\"n\", mac=\"bWFj\"", false).await;
    assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{answer:?}");
    assert!(answer.contains("access-control-allow-origin: https://tc.example.com\r\n"), "{answer:?}");
    assert!(answer.contains("connection: close\r\n"), "{answer:?}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["error_code"], "invalid_header", "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("header 'Authorization'") && detail.contains("0x01"), "{detail}");
    assert!(!answer.contains("min"), "the value is not echoed: {answer:?}");

    let answer = exchange(b"Hawk id=\"x\x7f\"", true).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "the clean request first: {answer:?}");
    let second = answer.split("HTTP/1.1 ").nth(2).expect("a second answer on the connection");
    assert!(second.starts_with("400 Bad Request\r\n") && second.contains("\"invalid_header\""), "{answer:?}");
    let counted = wait_for(Duration::from_secs(10), || async { (refused().await >= before + 2.0).then_some(()) }).await;
    assert!(
        counted.is_some(),
        "both refusals counted in roller_connections_dropped_total{{reason=\"invalid_header\"}}"
    );

    let answer = exchange(b"Hawk id=\"ad\xffmin\", ts=\"1\", nonce=\"n\", mac=\"bWFj\"", false).await;
    assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{answer:?}");
    assert!(answer.contains("access-control-allow-origin: https://tc.example.com"), "{answer:?}");
    assert!(answer.contains("\"error_code\":\"invalid_credentials\""), "{answer:?}");
}
