//! `roller jobs` on fleets, the real binary against a running service:
//! selection from the inventory and files, the confirmation rail, the summary
//! table and JSON, `follow`, and `list --state`.

use std::process::Stdio;

use roller_testkit::inventory::{Class, Inventory, Machine};
use serde_json::Value;

use crate::helpers::*;

/// 12 machines on loopback: m1–m3 class c1 in group g1, the rest class c2 in group g2.
fn inventory(dir: &std::path::Path) -> String {
    let mut inv = Inventory::new().class(Class::new("c1")).class(Class::new("c2"));
    for n in 1..=12 {
        let (class, group) = if n <= 3 { ("c1", "g1") } else { ("c2", "g2") };
        inv = inv.machine(Machine::new(&format!("m{n}")).group(group).class(class).address("127.0.0.1"));
    }
    inv.write(dir)
}

struct Cli {
    url: String,
    inventory: String,
    home: tempfile::TempDir,
}

impl Cli {
    async fn run(&self, args: &[&str], client: (&str, &str, &[&str])) -> (i32, String, String) {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_roller"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("ROLLER_URL", &self.url)
            .env("ROLLER_INVENTORY", &self.inventory)
            .env("TASKCLUSTER_CLIENT_ID", client.0)
            .env("TASKCLUSTER_ACCESS_TOKEN", client.1)
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }
}

async fn setup() -> (TestApp, Cli, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let inventory = inventory(dir.path());
    let app = spawn_app_with("", &[("ROLLER_INVENTORY", &inventory)]).await;
    let cli = Cli { url: app.url(""), inventory, home: tempfile::tempdir().unwrap() };
    (app, cli, dir)
}

#[tokio::test]
async fn a_selection_is_queued_followed_and_summarised() {
    let (app, cli, _dir) = setup().await;
    let (code, out, err) =
        cli.run(&["jobs", "enqueue", "ping", "--select", "class=c1", "--wait", "--json"], ADMIN).await;
    assert_eq!(code, 0, "{out}{err}");
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    let machines: Vec<&str> = rows.iter().map(|r| r["worker_id"].as_str().unwrap()).collect();
    assert_eq!(machines, ["m1", "m2", "m3"]);
    assert!(rows.iter().all(|r| r["state"] == "succeeded" && r["worker_group"] == "g1"), "{out}");

    // A file: comments, blank lines and repeats; a table at the end.
    let list = cli.home.path().join("machines.txt");
    std::fs::write(&list, "# rack 4\nm4\n\nm5  # flaky\nm4\n").unwrap();
    let (code, out, err) =
        cli.run(&["jobs", "enqueue", "ping", "--file", list.to_str().unwrap(), "--wait"], ADMIN).await;
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("MACHINE") && lines.len() == 4, "{out}");
    assert!(lines[1].starts_with("m4 ") && lines[1].contains("succeeded"), "{out}");
    assert_eq!(*lines.last().unwrap(), "ping on 2 machines: 2 succeeded");

    // follow and list --state on one of them.
    let id = rows[0]["task_id"].as_str().unwrap();
    let (code, out, _) = cli.run(&["jobs", "follow", id], ADMIN).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("pinging") && out.lines().last().unwrap().starts_with("succeeded: "), "{out}");
    let (code, out, _) = cli.run(&["jobs", "list", "m1", "--state", "succeeded", "--json"], ADMIN).await;
    assert_eq!(code, 0);
    let listed: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.len(), 1);
    let (code, out, _) = cli.run(&["jobs", "list", "m1", "--state", "failed", "--json"], ADMIN).await;
    assert_eq!((code, out.trim()), (0, "[]"));
    drop(app);
}

#[tokio::test]
async fn many_machines_need_a_yes_and_refusals_are_counted() {
    let (app, cli, _dir) = setup().await;
    // 12 > the default confirm_above (10); no terminal to ask on: refused, nothing queued.
    let (code, _, err) =
        cli.run(&["jobs", "enqueue", "ping", "--select", "group=g1", "--select", "class=c1"], ADMIN).await;
    assert_eq!(code, 0, "3 machines need no confirmation: {err}");
    let all: Vec<String> = (1..=12).map(|n| format!("m{n}")).collect();
    let mut args: Vec<&str> = vec!["jobs", "enqueue", "ping"];
    args.extend(all.iter().map(String::as_str));
    let (code, _, err) = cli.run(&args, ADMIN).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("ping on 12 machines is more than 10") && err.contains("--yes"), "{err}");
    let h = app.signed(reqwest::Method::GET, "/api/v1/workers/m12/jobs", ADMIN).await.json::<Value>().await.unwrap();
    assert!(h["jobs"].as_array().unwrap().is_empty(), "nothing was queued");

    args.push("--yes");
    let (code, out, err) = cli.run(&args, ADMIN).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.lines().last().unwrap().starts_with("ping on 12 machines: "), "{out}");

    // Without the scope for the task: every row says so, and the exit status too.
    let (code, out, _) = cli.run(&["jobs", "enqueue", "ipmi_off", "m1", "m2", "--json"], PINGER).await;
    assert_eq!(code, 1);
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert!(rows.iter().all(|r| r["http_status"] == 403
        && r["detail"].as_str().unwrap().contains("lacks the scope 'project:releng:roller:ipmi_off'")));

    // Selections that make no sense are usage errors.
    let (code, _, err) = cli.run(&["jobs", "enqueue", "ping", "--select", "rack=4"], ADMIN).await;
    assert_eq!(code, 2);
    assert!(err.contains("group=<group> or class=<class>"), "{err}");
    let (code, _, err) = cli.run(&["jobs", "enqueue", "ping", "--select", "class=nope"], ADMIN).await;
    assert_eq!(code, 2);
    assert!(err.contains("matches no machine"), "{err}");
}
