//! Independent judges of the OpenAPI document, from PyPI and pinned in the test venv that
//! `cargo xtask` builds (xtask's `VENV_PACKAGES`): openapi-spec-validator says whether the
//! served document is valid OpenAPI, and schemathesis generates requests from it, valid
//! and invalid, every one Hawk-signed (`schemathesis/roller_hooks.py`), against a running
//! roller, and fails on any 5xx and on any answer the document does not describe (status,
//! content type, headers, body schema, event stream items), on schema-valid input refused
//! and schema-invalid input accepted.
//!
//! The roller under test is harmless to run anything on: its one inventory machine is
//! this machine (127.0.0.1) with no BMC, PDU or ssh, so restarting tasks fail at once, and
//! its DNS server is a dead loopback port, so a generated worker id resolves to nothing
//! (the hooks refuse worker ids that are addresses off this machine).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::Method;
use roller_testkit::inventory::{Class, Inventory, Machine};
use serde_json::Value;

use crate::helpers::*;
use crate::procs::free_port;
use crate::tc_client::python;

/// The machine the document's examples name (`params.rs`), so schemathesis's example
/// requests reach one that exists.
const MACHINE: &str = "ms1-001";
/// A second one, never observed.
const UNSEEN: &str = "ms1-002";

/// A console script of the test venv, beside its python.
fn venv_bin(name: &str) -> PathBuf {
    let p = python().with_file_name(name);
    assert!(p.is_file(), "{} is missing: run `cargo xtask deps` (the venv's pinned list changed)", p.display());
    p
}

/// Run `cmd` to its end (bounded); (success, stdout and stderr).
async fn run(mut cmd: tokio::process::Command, limit: Duration) -> (bool, String) {
    let out = tokio::time::timeout(limit, cmd.kill_on_drop(true).output())
        .await
        .unwrap_or_else(|_| panic!("{cmd:?} took over {limit:?}"))
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test]
async fn openapi_spec_validator_finds_the_served_document_valid() {
    let app = spawn_app().await;
    let doc = app.http.get(app.url("/api/v1/openapi.json")).send().await.unwrap().text().await.unwrap();
    let v: Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(v["openapi"], "3.2.0");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &doc).unwrap();
    let mut cmd = tokio::process::Command::new(venv_bin("openapi-spec-validator"));
    cmd.args(["--schema", "3.2", "--validation-errors", "all", "--subschema-errors", "all"]).arg(&file);
    let (ok, out) = run(cmd, Duration::from_secs(120)).await;
    assert!(ok && out.contains(": OK"), "openapi-spec-validator refuses the document:\n{out}");
}

/// What the health endpoints show for [`MACHINE`]: a probe that failed, the power on, a
/// known Taskcluster worker with its last task, so their answers carry every part.
async fn observe(data: &std::path::Path) {
    use roller::health::{Observations, Power, PowerObs, Seen, TaskObs, WorkerObs};
    use roller::queue::records::{RecordKind, Records};
    let store = roller::queue::sqlite::SqliteQueue::open(&data.join("roller.sqlite3")).unwrap();
    let then = chrono::Utc::now() - chrono::Duration::seconds(30);
    let seen = Observations {
        probe: Some(Seen::new(then, false)),
        power: Some(Seen::new(then, PowerObs { source: "ipmi".into(), state: Power::On, error: None })),
        worker: Some(Seen::new(
            then,
            WorkerObs {
                pool: "releng-hardware/gecko-t-linux".into(),
                known: true,
                last_active: Some(then - chrono::Duration::hours(2)),
                quarantine_until: None,
                latest_task: Some(TaskObs {
                    task_id: "fQ8yVwXbQ3ad5ZUhvMWrDQ".into(),
                    run_id: 0,
                    state: Some("completed".into()),
                    started: Some(then - chrono::Duration::hours(3)),
                    resolved: Some(then - chrono::Duration::hours(2)),
                    reason_resolved: Some("completed".into()),
                }),
                pending: Some(3),
            },
        )),
    };
    store.put_record(RecordKind::Observations, MACHINE, &seen.to_record()).await.unwrap();
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let st = venv_bin("st");
    let data = tempfile::tempdir().unwrap();
    let dead = free_port();
    let machine = |name: &str| {
        Machine::new(name).group("mdc1").class("loopback").address("127.0.0.1").pool("releng-hardware", "gecko-t-linux")
    };
    let inventory = Inventory::new()
        .class(Class::new("loopback").reachability(&format!("tcp:{dead}")).reboot(&[]))
        .machine(machine(MACHINE))
        .machine(machine(UNSEEN))
        .write(data.path());
    let cfg = data.path().join("roller.toml");
    std::fs::write(&cfg, base_config("")).unwrap();
    observe(data.path()).await;
    let dns = format!("127.0.0.1:{dead}");
    let app = spawn_app_from(data, &cfg, &[("ROLLER_INVENTORY", &inventory), ("ROLLER_DNS_SERVERS", &dns)]).await;
    // A finished job, so reads of a real one are among the examples too.
    let r = app.post_job(MACHINE, "mdc1", "ping").await;
    app.wait_final(r.json::<Value>().await.unwrap()["task_id"].as_str().unwrap()).await;

    let hooks = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/schemathesis");
    let scratch = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(&st);
    cmd.current_dir(scratch.path())
        .env("SCHEMATHESIS_HOOKS", "roller_hooks")
        .env("PYTHONPATH", hooks)
        .env("ROLLER_HAWK_ID", ADMIN.0)
        .env("ROLLER_HAWK_KEY", ADMIN.1)
        .arg("run")
        .arg(app.url("/api/v1/openapi.json"))
        // Every check but one: a request without its Authorization header must be a 401 to
        // schemathesis (fixed in its code), and roller answers 403 as Taskcluster services
        // and the original roller do (tests/it/auth.rs). `ignored_auth` still checks that
        // every secured operation refuses requests without valid credentials.
        .args(["--checks", "all", "--exclude-checks", "missing_required_header"])
        .args(["--max-examples", "60", "--seed", "20261201", "--workers", "1"])
        // Generated Authorization headers would replace the signature on most requests.
        .args(["--generation-with-security-parameters", "false", "--generation-database", "none"])
        .args(["--request-timeout", "20", "--no-color"]);
    let started = Instant::now();
    let (ok, report) = run(cmd, Duration::from_secs(600)).await;
    let took = started.elapsed();
    assert!(ok, "schemathesis found problems (after {took:.0?}):\n{report}");
    let summary: Vec<&str> =
        report.lines().filter(|l| l.contains("generated") || l.contains("Tested:") || l.contains("Seed:")).collect();
    println!("schemathesis ({} s): {}", took.as_secs(), summary.join(" | "));
    assert!(report.contains("Tested: 27"), "every operation tested:\n{report}");

    // The run reached the handlers signed, changing things: holds and resets by its client.
    let r = app.signed(Method::GET, "/api/v1/medic/decisions?limit=100", ADMIN).await;
    let audit: Value = r.json().await.unwrap();
    let actions: Vec<&str> = audit["audit"].as_array().unwrap().iter().filter_map(|a| a["action"].as_str()).collect();
    assert!(actions.contains(&"hold") && actions.contains(&"allow_batch"), "{audit:#}");
    let r = app.signed(Method::GET, &format!("/api/v1/workers/{MACHINE}/jobs"), ADMIN).await;
    let jobs: Value = r.json().await.unwrap();
    assert!(jobs["jobs"].as_array().unwrap().len() > 1, "schemathesis queued jobs: {jobs:#}");
}
