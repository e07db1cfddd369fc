//! The CLI on a real terminal (a pseudo-terminal, as in tmux at 3 a.m.): `enqueue
//! --wait` shows the job at once and its log live, before the job ends; the fleet
//! confirmation names the machines and takes a typed answer; the progress line ends
//! with every job counted above the table.

use std::time::Duration;

use roller_testkit::inventory::{Class, Inventory, Machine};
use serde_json::Value;

use crate::cli_jobs::roller_cmd;
use crate::helpers::*;
use crate::pty::Pty;

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_wait_shows_the_job_at_once_and_its_log_while_it_runs() {
    // A ping of about ten seconds: long enough to look at the job while it runs.
    let app = spawn_app_with("[ping]\ncount = 20\ninterval_ms = 500\ntimeout_ms = 500\n", &[]).await;
    // One job per machine at a time: while this one runs, the next one waits.
    let first = app.post_job("127.0.0.1", "a", "ping").await.json::<Value>().await.unwrap();
    let first = first["task_id"].as_str().unwrap().to_string();
    let home = tempfile::tempdir().unwrap();
    let cmd = roller_cmd(
        &app.url(""),
        ADMIN,
        home.path(),
        &["jobs", "enqueue", "ping", "127.0.0.1", "--group", "b", "--wait"],
    );
    let pty = Pty::spawn(cmd);

    // The task id and its state come at once, while the job is still queued.
    let screen = pty.wait_for(": ping on 127.0.0.1 (group b), queued", MINUTE).await;
    let line = screen.lines().find(|l| l.contains("(group b), queued")).unwrap();
    let id = line.trim().trim_start_matches("task ").split(':').next().unwrap().to_string();
    assert_eq!(app.get_job(&id).await["state"], "queued", "shown before it ran");
    let before = app.get_job(&first).await;
    assert!(matches!(before["state"].as_str(), Some("queued" | "running")), "the first job holds the machine");

    // Its log appears as it is written: the job is still running when its first line shows.
    pty.wait_for("state: running (attempt 1 of 3", Duration::from_secs(120)).await;
    pty.wait_for("pinging", MINUTE).await;
    assert_eq!(app.get_job(&id).await["state"], "running", "the log is live:\n{}", pty.screen());

    let (code, screen) = pty.finish(MINUTE).await;
    assert_eq!(code, 0, "{screen}");
    let last = screen.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap();
    assert!(last.starts_with("succeeded: 20/20 replies from 127.0.0.1"), "{screen}");
}

/// 22 machines on loopback, one class, named so that their order is their number.
fn inventory(dir: &std::path::Path) -> String {
    let mut inv = Inventory::new().class(Class::new("lab"));
    for n in 1..=22 {
        inv = inv.machine(Machine::new(&format!("m{n:02}")).group("g").class("lab").address("127.0.0.1"));
    }
    inv.write(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_prompt_names_the_machines_and_the_progress_ends_counted() {
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(dir.path());
    let app = spawn_app_with("", &[("ROLLER_INVENTORY", &inv)]).await;
    let home = tempfile::tempdir().unwrap();
    let start = || {
        let mut cmd = roller_cmd(
            &app.url(""),
            ADMIN,
            home.path(),
            &["jobs", "enqueue", "ping", "--select", "class=lab", "--wait"],
        );
        cmd.env("ROLLER_INVENTORY", &inv);
        Pty::spawn(cmd)
    };

    // "no": nothing is queued.
    let mut pty = start();
    let screen = pty.wait_for("Type \"yes\" to go ahead: ", MINUTE).await;
    assert!(screen.contains("roller: ping on 22 machines:"), "{screen}");
    // The first 20 by name, then how many more.
    let named: Vec<String> = (1..=20).map(|n| format!("m{n:02}")).collect();
    for line in screen.lines().filter(|l| l.starts_with("  m")) {
        for name in line.trim().split(", ") {
            assert!(named.iter().any(|n| n == name), "{name} is one of the first 20:\n{screen}");
        }
    }
    let listed: usize = screen.lines().filter(|l| l.starts_with("  m")).map(|l| l.split(", ").count()).sum();
    assert_eq!(listed, 20, "{screen}");
    assert!(screen.contains("  and 2 more"), "{screen}");
    pty.send("no\n");
    let (code, screen) = pty.finish(MINUTE).await;
    assert_eq!(code, 2, "{screen}");
    assert!(screen.contains("not confirmed; nothing was queued"), "{screen}");
    let h = app.signed(reqwest::Method::GET, "/api/v1/workers/m01/jobs", ADMIN).await.json::<Value>().await.unwrap();
    assert!(h["jobs"].as_array().unwrap().is_empty(), "nothing was queued: {h}");

    // "yes": queued, followed, and the progress line ends with every job counted.
    let mut pty = start();
    pty.wait_for("Type \"yes\" to go ahead: ", MINUTE).await;
    pty.send("yes\n");
    let (code, screen) = pty.finish(Duration::from_secs(180)).await;
    assert_eq!(code, 0, "{screen}");
    let table = screen.find("MACHINE").unwrap_or_else(|| panic!("a table in:\n{screen}"));
    let before = &screen[..table];
    // The last progress the terminal shows above the table: every job queued and finished.
    let progress = before.rsplit('\r').find(|p| p.contains("queued")).unwrap_or_else(|| panic!("{screen}"));
    assert_eq!(progress.trim(), "roller: 22/22 queued, 22/22 finished", "{screen}");
    assert!(screen.contains("ping on 22 machines: 22 succeeded"), "{screen}");
}
