//! The OpenAPI document against the running service: every route is in it,
//! and every answer the service gives (to good, unauthenticated, unscoped and
//! malformed requests, and to wrong methods) is a status the document lists
//! for that operation, with the documented body (`{"detail"}` for errors, the
//! required fields of the schema otherwise).

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;

use crate::helpers::*;

/// What the router serves as API; the document must describe exactly these (the
/// dashboard's page and assets are not API).
const ROUTES: [&str; 20] = [
    "/api/v1/health",
    "/api/v1/machines/{worker_id}/health",
    "/api/v1/machines/{worker_id}/hold",
    "/api/v1/machines/{worker_id}/release",
    "/api/v1/medic/decisions",
    "/api/v1/medic/plan",
    "/api/v1/medic/allow",
    "/api/v1/workers/{worker_id}/group/{worker_group}/jobs",
    "/api/v1/workers/{worker_id}/jobs",
    "/api/v1/workers/{worker_id}/breaker",
    "/api/v1/workers/{worker_id}/breaker/reset",
    "/api/v1/jobs/{task_id}",
    "/api/v1/jobs/{task_id}/events",
    "/api/v1/whoami",
    "/api/v1/machines",
    "/api/v1/openapi.json",
    "/__lbheartbeat__",
    "/__heartbeat__",
    "/__version__",
    "/metrics",
];

fn fill(path: &str, task_id: &str, worker: &str) -> String {
    path.replace("{worker_id}", worker).replace("{worker_group}", "lab").replace("{task_id}", task_id)
}

/// The status codes the document lists for `method path`, and the schema name of each JSON body.
fn documented(doc: &Value, path: &str, method: &str) -> Vec<(u16, Option<String>)> {
    let responses = &doc["paths"][path][method]["responses"];
    responses
        .as_object()
        .unwrap_or_else(|| panic!("{method} {path} has no responses in the document"))
        .iter()
        .map(|(code, r)| {
            let schema = r["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .map(|s| s.rsplit('/').next().unwrap().to_string());
            (code.parse().unwrap(), schema)
        })
        .collect()
}

fn check(doc: &Value, path: &str, method: &str, status: u16, body: &str) {
    let listed = documented(doc, path, method);
    let Some((_, schema)) = listed.iter().find(|(c, _)| *c == status) else {
        panic!("{method} {path} answered {status}, which the document does not list ({listed:?}); body {body}");
    };
    if let Some(name) = schema {
        let v: Value =
            serde_json::from_str(body).unwrap_or_else(|_| panic!("{method} {path} {status}: not JSON: {body}"));
        let required = doc["components"]["schemas"][name]["required"].as_array().cloned().unwrap_or_default();
        for field in required {
            let f = field.as_str().unwrap();
            assert!(v.get(f).is_some(), "{method} {path} {status}: {name}.{f} missing in {body}");
        }
        if name == "ErrorBody" {
            assert!(v["detail"].is_string(), "{method} {path} {status}: {body}");
            let codes = error_codes(doc);
            let code = v["error_code"].as_str().unwrap_or_default();
            assert!(codes.contains(code), "{method} {path} {status}: error_code {code:?} not in {codes:?}");
        }
    }
}

#[tokio::test]
async fn the_service_answers_only_what_its_openapi_document_says() {
    let app = spawn_app().await;
    let r = app.http.get(app.url("/api/v1/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths: BTreeSet<&str> = doc["paths"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(paths, ROUTES.into_iter().collect::<BTreeSet<_>>(), "every route documented, nothing else");
    assert!(doc["components"]["securitySchemes"]["hawk"].is_object());

    // A real job, so reads of it answer 200.
    let r = app.post_job("oa-host", "lab", "ping").await;
    let task_id = r.json::<Value>().await.unwrap()["task_id"].as_str().unwrap().to_string();
    app.wait_final(&task_id).await;

    let mut exchanges = 0;
    for path in ROUTES {
        let ops: Vec<String> = doc["paths"][path].as_object().unwrap().keys().cloned().collect();
        for method in ["get", "post", "put", "delete", "options"] {
            let m = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            // A method the route does not have must be a 405 the document lists.
            let op = if ops.iter().any(|o| o == method) {
                method.to_string()
            } else {
                let res = app.signed(m.clone(), &fill(path, &task_id, "oa-host"), ADMIN).await;
                assert_eq!(res.status(), 405, "{method} {path}");
                let o = ops
                    .iter()
                    .find(|o| documented(&doc, path, o).iter().any(|(c, _)| *c == 405))
                    .unwrap_or_else(|| panic!("{path} answers 405 to {method}, but no operation documents 405"));
                o.clone()
            };
            let query = if method == "post" { "?task_name=ping" } else { "" };
            let cases = [
                (fill(path, &task_id, "oa-host") + query, Some(ADMIN)),
                (fill(path, &task_id, "oa-host") + query, None),
                (fill(path, &task_id, "oa-host") + query, Some(READER)),
                (fill(path, &uuid_like(), "oa-host") + "?task_name=frobnicate&limit=0", Some(ADMIN)),
                (fill(path, "not-a-uuid", "bad..host!") + query, Some(ADMIN)),
            ];
            for (url, who) in cases {
                let res = match who {
                    Some(c) => app.signed(m.clone(), &url, c).await,
                    None => app.http.request(m.clone(), app.url(&url)).send().await.unwrap(),
                };
                let status = res.status().as_u16();
                let body = res.text().await.unwrap();
                check(&doc, path, &op, status, &body);
                exchanges += 1;
            }
        }
    }
    assert!(exchanges > 60, "{exchanges} exchanges checked");
}

/// The stable error codes the document lists.
fn error_codes(doc: &Value) -> BTreeSet<String> {
    let schema = &doc["components"]["schemas"]["ErrorCode"];
    schema["enum"]
        .as_array()
        .or_else(|| schema["oneOf"].as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string).or_else(|| v["enum"][0].as_str().map(str::to_string)))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn result_shapes_and_error_codes_are_in_the_document() {
    let app = spawn_app().await;
    let doc: Value = app.http.get(app.url("/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    let schemas = &doc["components"]["schemas"];
    // Every shape a job's `result` can take, by name, with what clients read.
    let shapes: BTreeSet<String> = schemas["JobResult"]["oneOf"]
        .as_array()
        .expect("JobResult is a oneOf")
        .iter()
        .filter_map(|s| s["$ref"].as_str().map(|r| r.rsplit('/').next().unwrap().to_string()))
        .collect();
    for name in ["PingResult", "StatusReport", "PowerReport", "RebootReport", "BugReport", "ReimageReport"] {
        assert!(shapes.contains(name), "{name} missing from JobResult: {shapes:?}");
    }
    let required = |name: &str| -> BTreeSet<String> {
        schemas[name]["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
    };
    assert!(required("RebootReport").is_superset(&["worked", "proof", "attempts"].map(String::from).into()));
    assert!(required("Attempt").is_superset(&["step", "outcome"].map(String::from).into()));
    let codes = error_codes(&doc);
    for code in ["restart_breaker_open", "insufficient_scope", "invalid_credentials", "queue_unavailable"] {
        assert!(codes.contains(code), "{code} missing from ErrorCode: {codes:?}");
    }

    // A real result against its documented shape.
    let r = app.post_job("127.0.0.1", "lab", "ping").await;
    let task_id = r.json::<Value>().await.unwrap()["task_id"].as_str().unwrap().to_string();
    let job = app.wait_final(&task_id).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    for field in required("PingResult") {
        assert!(job["result"].get(&field).is_some(), "PingResult.{field} missing in {:#}", job["result"]);
    }
}

fn uuid_like() -> String {
    "3f0c9d1e-8a7b-4c6d-9e0f-1a2b3c4d5e6f".into()
}
