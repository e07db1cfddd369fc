//! The field's own client as the judge of roller-testkit's Taskcluster stand-in: the
//! official Python `taskcluster` package (pinned in the test venv `cargo xtask` builds)
//! reads a scripted fleet through the stand-in, anonymously and Hawk-signed, paging with
//! its own `paginationHandler` and with a hand-written `continuationToken` loop. What it
//! reads must be what was scripted: if the stand-in drifted from the published API, the
//! real client would notice here.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{Duration as Minutes, Utc};
use roller_testkit::taskcluster::{ACCESS_TOKEN, CLIENT_ID, FakeTaskcluster, Resolution};
use serde_json::Value;

const POOL: &str = "releng-hardware/gecko-t-win11-hw";

/// The venv's python, found as the Redfish emulator is: through a variable `cargo xtask`
/// sets. Missing is a failure with the way to fix it, never a skip.
pub(crate) fn python() -> PathBuf {
    const HINT: &str = "run `cargo xtask deps` (creates target/test-peers-venv with sushy-tools and the \
                        taskcluster client), then set ROLLER_TEST_PYTHON=<that venv>/bin/python3, or run the \
                        tests with `cargo xtask test`";
    let p = std::env::var_os("ROLLER_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("ROLLER_TEST_PYTHON is not set; {HINT}"));
    assert!(p.is_file(), "ROLLER_TEST_PYTHON={} does not exist; {HINT}", p.display());
    p
}

/// Reads the fleet with the official client and prints what it got as JSON.
const READER: &str = r#"
import json, os
import taskcluster
from taskcluster.exceptions import TaskclusterAuthFailure, TaskclusterRestFailure

env = os.environ
p, wt = env["POOL"].split("/")
root = {"rootUrl": env["ROOT_URL"], "maxRetries": 0}
anonymous = taskcluster.Queue(root)
signed = taskcluster.Queue(dict(root, credentials={"clientId": env["CLIENT_ID"], "accessToken": env["ACCESS_TOKEN"]}))
forged = taskcluster.Queue(dict(root, credentials={"clientId": env["CLIENT_ID"], "accessToken": "wrong"}))
out = {}

def pages_of(call, key, *args, **kwargs):
    pages = []
    call(*args, paginationHandler=lambda r: pages.append(r[key]), **kwargs)
    return pages

out["by_handler"] = pages_of(anonymous.listWorkers, "workers", p, wt, query={"limit": 400})
looped, token = [], None
while True:
    r = signed.listWorkers(p, wt, query={"continuationToken": token} if token else {})
    looped.append(len(r["workers"]))
    looped_ids = out.setdefault("looped_ids", [])
    looped_ids.extend(w["workerId"] for w in r["workers"])
    token = r.get("continuationToken")
    if not token:
        break
out["looped_pages"] = looped
out["quarantined"] = [w for page in pages_of(anonymous.listWorkers, "workers", p, wt, query={"quarantined": "true"}) for w in page]
out["status"] = anonymous.status(env["TASK"])["status"]
ids = json.loads(env["TASKS"])
out["statuses_pages"] = pages_of(anonymous.statuses, "statuses", payload={"taskIds": ids}, query={"limit": 2})
out["statuses_signed"] = signed.statuses({"taskIds": ids})["statuses"]
out["pending"] = anonymous.pendingTasks(env["POOL"])
out["counts"] = signed.taskQueueCounts(env["POOL"])
out["worker"] = anonymous.getWorker(p, wt, "mdc1", env["BUSY"])

def refusal(call, *args, **kwargs):
    try:
        call(*args, **kwargs)
        return None
    except (TaskclusterAuthFailure, TaskclusterRestFailure) as e:
        return e.status_code

out["bad_token"] = refusal(anonymous.listWorkers, p, wt, query={"continuationToken": "bogus"})
out["bad_limit"] = refusal(anonymous.listWorkers, p, wt, query={"limit": "-1"})
out["forged"] = refusal(forged.listWorkers, p, wt)
out["unknown_worker"] = refusal(anonymous.getWorker, p, wt, "mdc1", "never-seen")
print(json.dumps(out))
"#;

fn name(i: usize) -> String {
    format!("win11-{i:04}")
}

fn ids(workers: &[Value]) -> Vec<&str> {
    workers.iter().map(|w| w["workerId"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn the_official_python_client_reads_the_scripted_fleet() {
    let python = python();
    let q = FakeTaskcluster::start(&[]).await;
    let now = Utc::now();
    // 1,050 rows: 50 of the first 400 unseen for two days, so forgotten but for the one
    // quarantined, and the listing's first page is short; worker 7 busy, 8 done, 9 hung.
    for i in 0..1050 {
        let seen = if (100..150).contains(&i) { now - Minutes::days(2) } else { now };
        q.add_worker(POOL, "mdc1", &name(i), seen);
    }
    q.quarantine(POOL, "mdc1", &name(3), now + Minutes::days(3));
    q.quarantine(POOL, "mdc1", &name(120), now + Minutes::days(3));
    let earlier = q.claim(POOL, "mdc1", &name(7), now - Minutes::minutes(50)).task_id;
    q.resolve(&earlier, Resolution::Completed, now - Minutes::minutes(45));
    let busy = q.claim(POOL, "mdc1", &name(7), now - Minutes::minutes(40)).task_id;
    let done = q.claim(POOL, "mdc1", &name(8), now - Minutes::minutes(40)).task_id;
    q.resolve(&done, Resolution::Failed, now - Minutes::minutes(10));
    let hung = q.claim(POOL, "mdc1", &name(9), now - Minutes::minutes(90)).task_id;
    q.resolve(&hung, Resolution::Exception("claim-expired"), now - Minutes::minutes(70));
    q.set_pending(POOL, 17);

    let tasks = serde_json::to_string(&[&busy, &done, "fN1SbArXTPSVFNUvaOlinQ", &hung]).unwrap();
    let run = tokio::process::Command::new(&python)
        .args(["-c", READER])
        .env("ROOT_URL", &q.root_url)
        .env("CLIENT_ID", CLIENT_ID)
        .env("ACCESS_TOKEN", ACCESS_TOKEN)
        .env("POOL", POOL)
        .env("TASK", &hung)
        .env("TASKS", &tasks)
        .env("BUSY", name(7))
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run).await.expect("the client finishes").unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} failed (is the taskcluster package in its venv? `cargo xtask deps`): {stderr}",
        python.display()
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();

    // Its paginationHandler followed every token: pages of 400 rows, the first short.
    let pages: Vec<Vec<Value>> = serde_json::from_value(got["by_handler"].clone()).unwrap();
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [351, 400, 250]);
    let listed: Vec<Value> = pages.concat();
    let expected: Vec<String> = (0..1050).filter(|i| !(100..150).contains(i) || *i == 120).map(name).collect();
    assert_eq!(ids(&listed), expected);
    let by_id = |id: &str| listed.iter().find(|w| w["workerId"] == id).unwrap().clone();
    assert_eq!(by_id(&name(7))["latestTask"], serde_json::json!({ "taskId": busy, "runId": 0 }));
    assert!(by_id(&name(3))["quarantineUntil"].is_string() && by_id(&name(4)).get("quarantineUntil").is_none());
    assert!(by_id(&name(5)).get("latestTask").is_none());
    assert_eq!(got["looped_pages"], serde_json::json!([951, 50]), "1,000 rows a page by default");
    assert_eq!(got["looped_ids"], serde_json::json!(expected));
    let quarantined: Vec<Value> = serde_json::from_value(got["quarantined"].clone()).unwrap();
    assert_eq!(ids(&quarantined), [name(3), name(120)]);

    let status = &got["status"];
    assert_eq!((status["taskId"].as_str(), status["state"].as_str()), (Some(hung.as_str()), Some("pending")));
    assert_eq!(status["taskQueueId"], POOL);
    let runs = status["runs"].as_array().unwrap();
    assert_eq!(
        (runs[0]["state"].as_str(), runs[0]["reasonResolved"].as_str()),
        (Some("exception"), Some("claim-expired"))
    );
    assert!(runs[0]["started"].is_string() && runs[0]["resolved"].is_string() && runs[0].get("ended").is_none());
    assert_eq!((runs[1]["state"].as_str(), runs[1]["reasonCreated"].as_str()), (Some("pending"), Some("retry")));
    assert!(runs[1].get("started").is_none() && runs[1].get("workerId").is_none());

    let pages: Vec<Vec<Value>> = serde_json::from_value(got["statuses_pages"].clone()).unwrap();
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1], "an unknown id is dropped");
    let statuses: Vec<&str> = pages.iter().flatten().map(|s| s["taskId"].as_str().unwrap()).collect();
    assert_eq!(statuses, [busy.as_str(), done.as_str(), hung.as_str()]);
    assert_eq!(got["statuses_signed"].as_array().unwrap().len(), 3, "a signed POST, its payload hash checked");
    let failed = &got["statuses_signed"][1]["status"]["runs"][0];
    assert_eq!((failed["state"].as_str(), failed["reasonResolved"].as_str()), (Some("failed"), Some("failed")));

    assert_eq!(got["pending"]["pendingTasks"], 17);
    assert_eq!(got["pending"]["taskQueueId"], POOL);
    assert_eq!((got["counts"]["pendingTasks"].as_u64(), got["counts"]["claimedTasks"].as_u64()), (Some(17), Some(1)));
    let recent: Vec<&str> =
        got["worker"]["recentTasks"].as_array().unwrap().iter().map(|t| t["taskId"].as_str().unwrap()).collect();
    assert_eq!(recent, [earlier.as_str(), busy.as_str()], "oldest first");

    assert_eq!(got["bad_token"], 400);
    assert_eq!(got["bad_limit"], 400);
    assert_eq!(got["forged"], 401);
    assert_eq!(got["unknown_worker"], 404);
    let calls = q.calls();
    // Pages of rows, not of answers: the quarantined filter still reads both pages.
    assert_eq!(calls.get("queue.listWorkers"), Some(&(3 + 2 + 2 + 3)), "{calls:?}");
}
