//! One bug per incident: machines of one chassis (or PDU) reaching the bug step
//! within `[bugzilla] incident_window_secs` share one bug, against the Bugzilla
//! stand-in, through the Hawk-signed API.

use std::time::Duration;

use roller_testkit::inventory::{Class, Inventory, Machine};
use serde_json::Value;

use crate::helpers::*;
use crate::peers::bugzilla::{Bug, FakeBugzilla};

const KEY: &str = "bmo-api-key-incident-0017";

/// Three machines in chassis `chassis`, one in another, one in none; each chain is just
/// the bug step. Chassis names are per test: the per-group lock is process-wide.
fn inventory(dir: &std::path::Path, chassis: &str) -> String {
    let machine = |name: &str| {
        Machine::new(name)
            .group("mdc9")
            .class("lab")
            .address(&format!("{name}.test.example"))
            .bug_cc(&[&format!("{name}@example.com")])
    };
    Inventory::new()
        .class(Class::new("lab").reboot(&["file_bugzilla_bug"]))
        .machine(machine("ms-01").chassis(chassis))
        .machine(machine("ms-02").chassis(chassis))
        .machine(machine("ms-03").chassis(chassis))
        .machine(machine("other-01").chassis(&format!("{chassis}-b")))
        .machine(machine("loose-01"))
        .write(dir)
}

async fn app(bz: &FakeBugzilla, dir: &std::path::Path, chassis: &str, config: &str) -> TestApp {
    let inv = inventory(dir, chassis);
    spawn_app_with(config, &[("ROLLER_INVENTORY", &inv), ("BUGZILLA_URL", &bz.url), ("BUGZILLA_API_KEY", KEY)]).await
}

async fn bug_step(app: &TestApp, machine: &str) -> Value {
    let r = app.post_job(machine, "mdc9", "file_bugzilla_bug").await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    let job = app.wait_final(v["task_id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    job
}

fn tracker(bugs: &[Bug], alias: &str) -> u64 {
    bugs.iter().find(|b| b.alias.as_deref() == Some(alias)).unwrap_or_else(|| panic!("no tracker {alias}")).id
}

/// The open bugs that are not trackers: what the people at the data centre see.
fn open_reports(bugs: &[Bug]) -> Vec<&Bug> {
    bugs.iter().filter(|b| b.alias.is_none() && b.resolution.is_empty()).collect()
}

#[tokio::test]
async fn three_machines_of_one_chassis_share_one_incident_bug() {
    let bz = FakeBugzilla::start(KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let app = app(&bz, dir.path(), "encl-a", "").await;

    // The first machine alone: its own bug, as before.
    let first = bug_step(&app, "ms-01").await;
    assert_eq!(first["result"]["filed"], true);
    assert!(first["result"].get("incident").is_none(), "{first:#}");
    let own = first["result"]["bug"].as_u64().unwrap();

    // The second of the chassis: one incident bug, the first's bug its duplicate.
    let second = bug_step(&app, "ms-02").await;
    let incident = second["result"]["bug"].as_u64().unwrap();
    assert_eq!(second["result"]["filed"], true);
    assert_eq!(second["result"]["incident"]["group"], "chassis encl-a", "{second:#}");
    assert_eq!(
        second["result"]["incident"]["machines"],
        serde_json::json!(["ms-02.test.example", "ms-01.test.example"])
    );

    // The third joins it.
    let third = bug_step(&app, "ms-03").await;
    assert_eq!(third["result"]["bug"].as_u64(), Some(incident));
    assert_eq!(third["result"]["filed"], false);
    assert_eq!(third["result"]["incident"]["machines"], serde_json::json!(["ms-03.test.example"]));

    let bugs = bz.bugs();
    let open = open_reports(&bugs);
    assert_eq!(open.len(), 1, "one open bug for the incident: {bugs:#?}");
    let inc = open[0];
    assert_eq!(inc.id, incident);
    assert_eq!(inc.summary, "[MDC9] chassis encl-a: several machines need hands");
    assert_eq!(inc.component, "DCOps");
    let mut blocks = inc.blocks.clone();
    blocks.sort();
    let mut trackers = vec![tracker(&bugs, "ms-01"), tracker(&bugs, "ms-02"), tracker(&bugs, "ms-03")];
    trackers.sort();
    assert_eq!(blocks, trackers, "every machine's tracker is blocked by the incident bug");
    for host in ["ms-01.test.example", "ms-02.test.example"] {
        assert!(inc.description.contains(host), "{host} listed: {}", inc.description);
    }
    assert!(inc.description.contains(&format!("was bug {own} (")), "{}", inc.description);
    assert!(inc.description.contains("attempted no reboot"), "the attempt log: {}", inc.description);
    assert!(inc.description.contains(second["task_id"].as_str().unwrap()), "the job: {}", inc.description);
    assert_eq!(inc.cc, ["ms-01@example.com", "ms-02@example.com"]);
    assert_eq!(inc.comments.len(), 1, "{:?}", inc.comments);
    assert!(
        inc.comments[0].contains("ms-03.test.example") && inc.comments[0].contains(third["task_id"].as_str().unwrap())
    );

    let dup = bugs.iter().find(|b| b.id == own).unwrap();
    assert_eq!((dup.status.as_str(), dup.resolution.as_str(), dup.dupe_of), ("RESOLVED", "DUPLICATE", Some(incident)));
    assert!(dup.comments.iter().any(|c| c.contains(&format!("bug {incident}"))), "{:?}", dup.comments);
    assert!(bz.violations().is_empty(), "{:?}", bz.violations());
}

#[tokio::test]
async fn concurrent_bug_steps_of_one_chassis_leave_one_open_bug() {
    let bz = FakeBugzilla::start(KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let app = app(&bz, dir.path(), "encl-c", "").await;
    let jobs = futures_util::future::join_all(["ms-01", "ms-02", "ms-03"].map(|m| bug_step(&app, m))).await;
    let bugs = bz.bugs();
    let open = open_reports(&bugs);
    assert_eq!(open.len(), 1, "{bugs:#?}");
    assert_eq!(open[0].blocks.len(), 3, "{bugs:#?}");
    assert!(jobs.iter().all(|j| j["result"]["bug"].as_u64().is_some()));
}

#[tokio::test]
async fn machines_of_different_chassis_or_none_get_their_own_bugs() {
    let bz = FakeBugzilla::start(KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let app = app(&bz, dir.path(), "encl-d", "").await;
    for m in ["ms-01", "other-01", "loose-01"] {
        let job = bug_step(&app, m).await;
        assert!(job["result"].get("incident").is_none(), "{job:#}");
    }
    let bugs = bz.bugs();
    let summaries: Vec<&str> = open_reports(&bugs).iter().map(|b| b.summary.as_str()).collect();
    assert_eq!(
        summaries,
        [
            "ms-01.test.example is unreachable",
            "other-01.test.example is unreachable",
            "loose-01.test.example is unreachable"
        ]
    );

    // A second machine of the first chassis: an incident of that chassis only.
    let job = bug_step(&app, "ms-02").await;
    assert_eq!(job["result"]["incident"]["machines"], serde_json::json!(["ms-02.test.example", "ms-01.test.example"]));
    let bugs = bz.bugs();
    let summaries: Vec<&str> = open_reports(&bugs).iter().map(|b| b.summary.as_str()).collect();
    assert_eq!(
        summaries,
        [
            "other-01.test.example is unreachable",
            "loose-01.test.example is unreachable",
            "[MDC9] chassis encl-d: several machines need hands"
        ]
    );
}

#[tokio::test]
async fn a_window_of_zero_files_one_bug_per_machine() {
    let bz = FakeBugzilla::start(KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let app = app(&bz, dir.path(), "encl-z", "[bugzilla]\nincident_window_secs = 0\n").await;
    for m in ["ms-01", "ms-02"] {
        let job = bug_step(&app, m).await;
        assert_eq!(job["result"]["filed"], true);
        assert!(job["result"].get("incident").is_none(), "{job:#}");
    }
    let bugs = bz.bugs();
    assert_eq!(open_reports(&bugs).len(), 2, "{bugs:#?}");
    assert!(bugs.iter().all(|b| b.dupe_of.is_none()));
}

#[tokio::test]
async fn bugs_older_than_the_window_are_neither_joined_nor_merged() {
    let bz = FakeBugzilla::start(KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let app = app(&bz, dir.path(), "encl-o", "[bugzilla]\nincident_window_secs = 600\n").await;
    let own = bug_step(&app, "ms-01").await["result"]["bug"].as_u64().unwrap();
    let second = bug_step(&app, "ms-02").await;
    assert_eq!(second["result"]["incident"]["group"], "chassis encl-o", "{second:#}");
    let incident = second["result"]["bug"].as_u64().unwrap();
    assert_ne!(own, incident);

    // The incident bug is eleven minutes old: the third machine does not join it. With no
    // recent bug of its siblings open (the first's is a duplicate), it gets its own.
    bz.age(incident, Duration::from_secs(660));
    let third = bug_step(&app, "ms-03").await;
    assert!(third["result"].get("incident").is_none(), "{third:#}");
    assert_eq!(third["result"]["filed"], true);
    let bugs = bz.bugs();
    assert!(bugs.iter().find(|b| b.id == incident).unwrap().comments.is_empty());

    // …and that bug, aged too, is no reason for the first machine to file an incident.
    bz.age(third["result"]["bug"].as_u64().unwrap(), Duration::from_secs(660));
    let again = bug_step(&app, "ms-01").await;
    assert!(again["result"].get("incident").is_none(), "{again:#}");
    let bugs = bz.bugs();
    assert_eq!(open_reports(&bugs).len(), 3, "the old incident, ms-03's and ms-01's new bug: {bugs:#?}");
}
