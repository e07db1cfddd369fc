//! `/metrics`: Prometheus text with job, queue and auth series, unauthenticated
//! and without machine names. (Every test app in this binary shares the one
//! process-wide recorder, so this checks presence and lower bounds, not exact counts.)

use reqwest::Method;
use serde_json::Value;

use crate::helpers::*;

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn metrics_count_jobs_queue_and_auth_failures() {
    let app = spawn_app().await;
    let r = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));

    let r = app.post_job("metrics-host-7", "lab", "ping").await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["task_id"].as_str().unwrap().to_string();
    app.wait_final(&id).await;
    // A refused request (no credentials) and one without the scope.
    let r = app.http.post(app.url("/api/v1/workers/x/group/g/jobs?task_name=ping")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = app.signed(Method::POST, "/api/v1/workers/x/group/g/jobs?task_name=ipmi_off", PINGER).await;
    assert_eq!(r.status(), 403);

    let text = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(value(&text, "roller_jobs_enqueued_total{task=\"ping\"}").is_some_and(|v| v >= 1.0), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("roller_jobs_finished_total{") && l.contains("task=\"ping\"")),
        "{text}"
    );
    assert!(text.contains("roller_job_duration_seconds_bucket{"), "{text}");
    assert_eq!(value(&text, "roller_queue_up"), Some(1.0), "{text}");
    assert!(value(&text, "roller_queue_jobs{state=\"queued\"}").is_some(), "{text}");
    assert!(value(&text, "roller_queue_oldest_job_age_seconds").is_some(), "{text}");
    assert!(value(&text, "roller_auth_failures_total{reason=\"credentials\"}").is_some_and(|v| v >= 1.0), "{text}");
    assert!(value(&text, "roller_auth_failures_total{reason=\"scope\"}").is_some_and(|v| v >= 1.0), "{text}");
    assert!(!text.contains("metrics-host-7"), "no machine names in metrics");
    // Only GET.
    let r = app.http.post(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn driver_errors_are_counted_per_driver() {
    // A nameserver that is not there: the DNS driver fails the ping's lookup.
    let nameserver = format!("127.0.0.1:{}", crate::procs::free_port());
    let app = spawn_app_with("", &[("ROLLER_DNS_SERVERS", &nameserver)]).await;
    let r = app.post_job("metrics-nowhere.invalid", "lab", "ping").await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["task_id"].as_str().unwrap().to_string();
    let job = app.wait_final(&id).await;
    assert_eq!(job["state"], "failed", "{job}");
    let text = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(value(&text, "roller_driver_errors_total{driver=\"dns\"}").is_some_and(|v| v >= 1.0), "{text}");
    assert!(!text.contains("metrics-nowhere"), "no machine names in metrics");
}
