//! Notifications: Taskcluster notify (email to the list and the requester,
//! Matrix, Slack) through the stand-in that verifies Hawk, scopes and schemas,
//! and a webhook whose HMAC signature the receiver checks. A failing or hung
//! notifier never changes or delays the job's outcome.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use reqwest::Method;
use roller_testkit::inventory::{Class, Inventory, Machine};
use roller_testkit::taskcluster::{ACCESS_TOKEN, CLIENT_ID, FakeTaskcluster};
use secrecy::SecretString;
use serde_json::Value;

use crate::helpers::*;

const SECRET: &str = "webhook-secret-0123456789";
const LDAP_USER: (&str, &str, &[&str]) =
    ("mozilla-ldap/jdoe@mozilla.com", "jdoe-token-0123456789", &["project:releng:roller:*"]);

/// A webhook receiver: (signature header, body) of each delivery.
async fn receiver() -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let got: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let g = g.clone();
            async move {
                let sig = headers.get("x-roller-signature").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                g.lock().unwrap().push((sig, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

fn inventory(dir: &std::path::Path) -> String {
    Inventory::new()
        .class(Class::new("none").reboot(&[]))
        .machine(Machine::new("box").group("lab").class("none").address("127.0.0.1"))
        .write(dir)
}

async fn app_with(q: &FakeTaskcluster, hook: &str, dir: &std::path::Path) -> TestApp {
    let inv = inventory(dir);
    let config = format!(
        "[[auth.clients]]\nclient_id = {:?}\naccess_token = {:?}\nscopes = [\"project:releng:roller:*\"]\n\
         [notify]\nemail = [\"relops@example.com\"]\nrequester_email_domain = \"mozilla.com\"\n\
         matrix_room = \"!ops:mozilla.org\"\nslack_channel = \"C0123\"\npublic_url = \"https://roller.example\"\n\
         timeout_secs = 2\n",
        LDAP_USER.0, LDAP_USER.1
    );
    spawn_app_with(
        &config,
        &[
            ("ROLLER_INVENTORY", &inv),
            ("TASKCLUSTER_ROOT_URL", &q.root_url),
            ("TASKCLUSTER_CLIENT_ID", CLIENT_ID),
            ("TASKCLUSTER_ACCESS_TOKEN", ACCESS_TOKEN),
            ("ROLLER_WEBHOOK_URL", hook),
            ("ROLLER_WEBHOOK_SECRET", SECRET),
        ],
    )
    .await
}

async fn run(app: &TestApp, task: &str, worker: &str) -> Value {
    let p = format!("/api/v1/workers/{worker}/group/lab/jobs?task_name={task}");
    let r = app.signed(Method::POST, &p, LDAP_USER).await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    app.wait_final(v["task_id"].as_str().unwrap()).await
}

#[tokio::test]
async fn start_and_finish_reach_every_channel_signed_and_linked() {
    let q = FakeTaskcluster::start(&[
        "notify:email:*",
        "notify:matrix-room:!ops:mozilla.org",
        "notify:slack-channel:C0123",
    ])
    .await;
    let (hook, got) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let app = app_with(&q, &hook, dir.path()).await;

    // `reboot` with an empty chain fails at once: a start and a finish.
    let job = run(&app, "reboot", "box").await;
    assert_eq!(job["state"], "failed");
    let id = job["task_id"].as_str().unwrap().to_string();
    let notes = wait_for(Duration::from_secs(20), || async { (q.notes().len() >= 8).then(|| q.notes()) })
        .await
        .unwrap_or_else(|| panic!("8 notify calls, got {:#?}", q.notes()));
    let emails: Vec<&Value> = notes.iter().filter(|(c, _)| c == "email").map(|(_, b)| b).collect();
    let mut to: Vec<&str> = emails.iter().map(|b| b["address"].as_str().unwrap()).collect();
    to.sort();
    assert_eq!(to, ["jdoe@mozilla.com", "jdoe@mozilla.com", "relops@example.com", "relops@example.com"]);
    let finished =
        emails.iter().find(|b| b["subject"].as_str().unwrap().ends_with(": failed")).expect("a finish email");
    assert_eq!(finished["subject"], "[roller] reboot box: failed");
    let content = finished["content"].as_str().unwrap();
    assert!(
        content.contains("requested by mozilla-ldap/jdoe@mozilla.com") && content.contains("no reboot step worked"),
        "{content}"
    );
    assert_eq!(finished["link"]["href"], format!("https://roller.example/api/v1/jobs/{id}"));
    assert!(notes.iter().any(|(c, b)| c == "matrix" && b["body"].as_str().unwrap().contains("started")));
    assert!(notes.iter().any(|(c, b)| c == "slack" && b["text"].as_str().unwrap().contains("failed")));

    let hooks = wait_for(Duration::from_secs(20), || async {
        let g = got.lock().unwrap().clone();
        (g.len() >= 2).then_some(g)
    })
    .await
    .expect("two webhook deliveries");
    for (sig, body) in &hooks {
        let want = roller::notify::sign(&SecretString::from(SECRET.to_string()), body.as_bytes());
        assert_eq!(sig, &format!("sha256={want}"), "signature over the exact body");
    }
    // The two deliveries run side by side: their order of arrival is not the job's order.
    let mut states: Vec<String> = hooks
        .iter()
        .map(|(_, b)| serde_json::from_str::<Value>(b).unwrap()["state"].as_str().unwrap().to_string())
        .collect();
    states.sort();
    assert_eq!(states, ["failed", "started"]);

    // A ping announces only its end.
    let before = q.notes().len();
    let job = run(&app, "ping", "127.0.0.1").await;
    assert_eq!(job["state"], "succeeded");
    let after = wait_for(Duration::from_secs(20), || async { (q.notes().len() >= before + 4).then(|| q.notes()) })
        .await
        .expect("the finish notifications");
    assert!(after[before..].iter().all(|(_, b)| !b.to_string().contains("started")), "{:#?}", &after[before..]);
    assert!(!serde_json::to_string(&after).unwrap().contains(ACCESS_TOKEN));
}

#[tokio::test]
async fn a_failing_or_hung_notifier_neither_fails_nor_delays_the_job() {
    let q = FakeTaskcluster::start(&["notify:*"]).await;
    // Two 500s: delivered on the retries.
    q.fail_next(2);
    // A webhook that accepts and never answers.
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", hung.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hung.accept().await {
            held.push(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let app = app_with(&q, &hook, dir.path()).await;
    let job = run(&app, "ping", "127.0.0.1").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let took = chrono::DateTime::parse_from_rfc3339(job["finished_at"].as_str().unwrap()).unwrap()
        - chrono::DateTime::parse_from_rfc3339(job["started_at"].as_str().unwrap()).unwrap();
    assert!(took.num_seconds() < 5, "the job took {took} with a hung webhook");
    let notes = wait_for(Duration::from_secs(30), || async { (q.notes().len() >= 4).then(|| q.notes()) }).await;
    assert!(notes.is_some(), "delivered after the 500s: {:?}", q.notes());
}
