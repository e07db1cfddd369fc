//! `loan` against the Taskcluster queue stand-in, which verifies the Hawk
//! signature, the scope and the body of every quarantine.

use reqwest::Method;
use roller_testkit::inventory::{Inventory, Machine};
use roller_testkit::taskcluster::{ACCESS_TOKEN, CLIENT_ID, FakeTaskcluster};
use serde_json::Value;

use crate::helpers::*;

/// The stand-in, knowing mac1: the queue quarantines only workers it has seen.
async fn queue(scopes: &[&str]) -> FakeTaskcluster {
    let q = FakeTaskcluster::start(scopes).await;
    q.add_worker("releng-hardware/gecko-t-osx-1015", "mdc1", "mac1", chrono::Utc::now());
    q
}

fn inventory(dir: &std::path::Path, pool: bool) -> String {
    let mut mac1 = Machine::new("mac1").group("mdc1").address("127.0.0.1");
    if pool {
        mac1 = mac1.pool("releng-hardware", "gecko-t-osx-1015");
    }
    Inventory::new().machine(mac1).write(dir)
}

async fn app(q: &FakeTaskcluster, dir: &std::path::Path, pool: bool) -> TestApp {
    let inv = inventory(dir, pool);
    spawn_app_with(
        "[taskcluster]\nloan_days = 3\n",
        &[
            ("ROLLER_INVENTORY", &inv),
            ("TASKCLUSTER_ROOT_URL", &q.root_url),
            ("TASKCLUSTER_CLIENT_ID", CLIENT_ID),
            ("TASKCLUSTER_ACCESS_TOKEN", ACCESS_TOKEN),
        ],
    )
    .await
}

async fn run(app: &TestApp, path: &str) -> Value {
    let r = app.signed(Method::POST, path, ADMIN).await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    app.wait_final(v["task_id"].as_str().unwrap()).await
}

#[tokio::test]
async fn a_loan_quarantines_the_worker_named_by_the_request_and_records_who_until_when() {
    let q = queue(&["queue:quarantine-worker:releng-hardware/*"]).await;
    let dir = tempfile::tempdir().unwrap();
    let app = app(&q, dir.path(), false).await;
    let job = run(
        &app,
        "/api/v1/workers/mac1/jobs?task_name=loan&worker_group=mdc1&provisioner_id=releng-hardware&worker_type=gecko-t-osx-1015",
    )
    .await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["loaned_to"], ADMIN.0);
    let qs = q.quarantines();
    assert_eq!(qs.len(), 1);
    assert_eq!(qs[0].worker, "releng-hardware/gecko-t-osx-1015/mdc1/mac1");
    let days = (qs[0].until - chrono::Utc::now()).num_hours() as f64 / 24.0;
    assert!((2.9..=3.0).contains(&days), "{days} days");
    assert!(qs[0].info.contains("Loaned to admin") && qs[0].info.contains(job["task_id"].as_str().unwrap()));
    assert!(!serde_json::to_string(&job).unwrap().contains(ACCESS_TOKEN));
}

#[tokio::test]
async fn the_inventory_names_the_pool_when_the_request_does_not() {
    let q = queue(&["queue:quarantine-worker:*"]).await;
    let dir = tempfile::tempdir().unwrap();
    let app = app(&q, dir.path(), true).await;
    let job = run(&app, "/api/v1/workers/mac1/group/mdc1/jobs?task_name=loan").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(q.quarantines()[0].worker, "releng-hardware/gecko-t-osx-1015/mdc1/mac1");
}

#[tokio::test]
async fn refusals_are_clear_a_missing_scope_a_missing_pool_missing_credentials() {
    let q = queue(&["queue:quarantine-worker:other-provisioner/*"]).await;
    let dir = tempfile::tempdir().unwrap();
    let app = app(&q, dir.path(), true).await;
    let job = run(&app, "/api/v1/workers/mac1/group/mdc1/jobs?task_name=loan").await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let e = job["error"].as_str().unwrap();
    assert!(
        e.starts_with("loan: ") && e.contains("HTTP 403") && e.contains("queue:quarantine-worker:releng-hardware/"),
        "{e}"
    );
    assert!(q.quarantines().is_empty());
    drop(app);

    let app = self::app(&q, dir.path(), false).await;
    let job = run(&app, "/api/v1/workers/mac1/group/mdc1/jobs?task_name=loan").await;
    assert!(job["error"].as_str().unwrap().contains("needs a provisioner_id and worker_type"), "{job:#}");
    drop(app);

    let inv = inventory(dir.path(), true);
    let app = spawn_app_with("", &[("ROLLER_INVENTORY", &inv)]).await;
    let job = run(&app, "/api/v1/workers/mac1/group/mdc1/jobs?task_name=loan").await;
    assert!(job["error"].as_str().unwrap().contains("no Taskcluster credentials"), "{job:#}");
}

#[tokio::test]
async fn a_worker_the_queue_does_not_know_is_refused_with_its_404() {
    let q = FakeTaskcluster::start(&["queue:quarantine-worker:*"]).await;
    let dir = tempfile::tempdir().unwrap();
    let app = app(&q, dir.path(), true).await;
    let job = run(&app, "/api/v1/workers/mac1/group/mdc1/jobs?task_name=loan").await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let e = job["error"].as_str().unwrap();
    assert!(e.starts_with("loan: ") && e.contains("HTTP 404"), "{e}");
    assert!(q.quarantines().is_empty());
}
