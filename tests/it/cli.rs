//! The command line: `tasks`, `run`, the distributed-mode stubs, config errors.

use std::process::{Command, Stdio};

use roller_testkit::inventory::{Inventory, Machine, Pdu};

fn roller(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_roller"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn tasks_lists_every_task_with_a_line_of_help() {
    let (code, out, _) = roller(&["tasks"], &[]);
    assert_eq!(code, 0);
    let ping = out.lines().find(|l| l.starts_with("ping ")).expect("ping is listed");
    assert!(ping.len() > 20, "with help: {ping}");
}

#[test]
fn api_and_worker_refuse_to_pretend_without_redis() {
    for cmd in ["api", "worker"] {
        let (code, _, err) = roller(&[cmd], &[]);
        assert_ne!(code, 0);
        assert!(err.contains("needs REDIS_URL"), "{err}");
    }
}

#[test]
fn run_ping_on_loopback_succeeds_with_the_result_on_stdout() {
    let (code, out, err) = roller(&["run", "ping", "127.0.0.1"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["state"], "succeeded");
    assert!(v["result"]["received"].as_u64().unwrap() >= 1);
    assert!(!err.is_empty(), "progress goes to stderr");
}

#[test]
fn run_ping_of_an_unresolvable_host_exits_non_zero() {
    let (code, out, _) = roller(&["run", "ping", "no-such-host.invalid"], &[]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["state"], "failed");
}

#[test]
fn run_refuses_bad_input_with_a_message() {
    let (code, _, err) = roller(&["run", "frobnicate", "127.0.0.1"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown task") && err.contains("ping"), "{err}");
    let (code, _, err) = roller(&["run", "ping", "a;id"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("worker_id"), "{err}");
}

#[test]
fn config_errors_name_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.toml");
    std::fs::write(&f, "[server]\nbind = \"127.0.0.1:8000\"\nbinding = 1\n").unwrap();
    let (code, _, err) = roller(&["--config", f.to_str().unwrap(), "check-config"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("binding") && err.contains("bad.toml"), "{err}");
    let (code, _, err) = roller(&["check-config"], &[("TASK_NAMES", "ping,frobnicate")]);
    assert_eq!(code, 2);
    assert!(err.contains("frobnicate"), "{err}");
    let (code, _, err) = roller(&["check-config"], &[("CORS_ORIGIN", "tools.taskcluster.net")]);
    assert_eq!(code, 2);
    assert!(err.contains("CORS_ORIGIN"), "{err}");
}

#[test]
fn check_config_never_prints_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    std::fs::write(
        &f,
        "[[auth.clients]]\nclient_id = \"ops\"\naccess_token = \"very-secret-token-1234\"\nscopes = [\"project:releng:roller:*\"]\n",
    )
    .unwrap();
    let env = [
        ("REDIS_URL", "redis://:pw-5678@localhost"),
        ("BUGZILLA_URL", "https://bugzilla.example.com"),
        ("BUGZILLA_API_KEY", "bz-key-9012"),
        ("XEN_URL", "https://xen.example"),
        ("XEN_USERNAME", "root"),
        ("XEN_PASSWORD", "xen-pw-3456"),
        ("TASKCLUSTER_ROOT_URL", "https://tc.example"),
        ("TASKCLUSTER_CLIENT_ID", "project/releng/roller"),
        ("TASKCLUSTER_ACCESS_TOKEN", "tc-token-7890"),
        ("ROLLER_WEBHOOK_URL", "https://hooks.example/roller"),
        ("ROLLER_WEBHOOK_SECRET", "webhook-secret-1122"),
    ];
    let (code, out, err) = roller(&["--config", f.to_str().unwrap(), "check-config"], &env);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ops") && out.contains("bugzilla.example.com"), "{out}");
    assert!(out.contains("project/releng/roller") && out.contains("hooks.example"), "{out}");
    for secret in
        ["very-secret-token-1234", "pw-5678", "bz-key-9012", "xen-pw-3456", "tc-token-7890", "webhook-secret-1122"]
    {
        assert!(!out.contains(secret), "{secret} in {out}");
    }
}

/// Whether `net.ipv4.ping_group_range` lets group `gid` open ICMP datagram sockets.
fn ping_group_allows(gid: u32) -> bool {
    let r = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap_or_default();
    let mut it = r.split_whitespace().filter_map(|n| n.parse::<u32>().ok());
    matches!((it.next(), it.next()), (Some(lo), Some(hi)) if lo <= gid && gid <= hi)
}

#[test]
fn run_ping_works_for_an_unprivileged_user() {
    // As `nobody`, without CAP_NET_RAW: on stock Debian (ping_group_range "1 0") only the
    // system ping, which carries cap_net_raw, can send echoes.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_roller"),
            "run",
            "ping",
            "127.0.0.1",
        ])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("setpriv (util-linux) runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["state"], "succeeded");
    let expected = if ping_group_allows(65534) { "socket" } else { "command" };
    assert_eq!(v["result"]["method"], expected, "{v}");
}

#[test]
fn inventory_check_explains_chains_and_reports_unresolvable_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("inventory.toml");
    Inventory::new()
        .machine(Machine::new("mac1").pdu(Pdu::new("pdu1", "AB12").community_env("PDU_COMMUNITY")))
        .write_to(&f);
    let path = f.to_str().unwrap();
    let (code, out, err) = roller(&["inventory", "check", path], &[("PDU_COMMUNITY", "very-secret-community")]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("snmp_reboot") && out.contains("runs"), "{out}");
    assert!(out.contains("ssh_reboot") && out.contains("skipped: no [ssh]"), "{out}");
    assert!(!out.contains("very-secret-community"));

    let (code, out, _) = roller(&["inventory", "check", path], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("PROBLEM pdu.community") && out.contains("PDU_COMMUNITY"), "{out}");

    // An outlet without tower and infeed: valid TOML that the inventory's validation refuses.
    Inventory::new().machine(Machine::new("mac1").pdu(Pdu::new("pdu1", "12").community_env("C"))).write_to(&f);
    let (code, _, err) = roller(&["inventory", "check", path], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("machines.mac1.pdu.outlet") && err.contains("inventory.toml"), "{err}");
}

#[test]
fn explain_shows_the_reboot_chain_without_touching_hardware() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/inventory.example.toml");
    let (code, out, err) = roller(&["explain", "T-LINUX64-MS-001", "--inventory", example], &[("DOWN_TIMEOUT", "30")]);
    assert_eq!(code, 0, "{out}{err}");
    let line = |step: &str| out.lines().find(|l| l.contains(step)).unwrap_or_else(|| panic!("{step} in {out}"));
    assert!(line("1. ssh_reboot").contains("runs: ssh roller@t-linux64-ms-001"), "{out}");
    assert!(
        line("2. ipmi_reset").contains("dual bridging") && line("2. ipmi_reset").contains("$MOONSHOT_IPMI_PASSWORD")
    );
    assert!(line("4. file_bugzilla_bug").contains("skipped"), "{out}");
    assert!(out.contains("within 30s (DOWN_TIMEOUT)") && out.contains("within 300s (UP_TIMEOUT)"), "{out}");

    // The inventory from the environment, a machine whose chain is missing configuration.
    let (code, out, _) = roller(&["explain", "t-linux-xen-05"], &[("ROLLER_INVENTORY", example)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ssh_reboot         skipped: no [ssh] for this machine"), "{out}");
    assert!(out.contains("nothing in this chain can run"), "{out}");

    let (code, out, _) = roller(&["explain", "somewhere-else", "--inventory", example], &[]);
    assert_eq!(code, 1);
    assert!(out.contains("not in the inventory") && out.contains("only `ping` runs"), "{out}");

    let (code, _, err) = roller(&["explain", "box"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("no inventory"), "{err}");
}

#[test]
fn explain_lists_the_dns_names_ping_would_try_for_a_machine_outside_the_inventory() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("inventory.toml");
    Inventory::new()
        .dns_search(&["a.example", "b.example"])
        .machine(Machine::new("known").address("127.0.0.1"))
        .write_to(&f);
    let path = f.to_str().unwrap();
    let (code, out, err) = roller(&["explain", "box2", "--inventory", path], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("only `ping` runs on it"), "{out}");
    assert!(out.contains("ping looks it up in DNS as box2.a.example, box2.b.example, box2:"), "{out}");
}

#[test]
fn run_on_many_machines_runs_them_all_and_summarises() {
    let (code, out, err) = roller(&["run", "ping", "127.0.0.1", "127.0.0.2", "--json"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["state"] == "succeeded"), "{out}");
    assert!(err.contains("[127.0.0.1]") && err.contains("[127.0.0.2]"), "progress per machine: {err}");

    let (code, out, _) = roller(&["run", "ping", "127.0.0.1", "127.0.0.3"], &[]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().last().unwrap(), "ping on 2 machines: 2 succeeded", "{out}");

    let many: Vec<String> = (1..=11).map(|n| format!("127.0.0.{n}")).collect();
    let mut args = vec!["run", "ping"];
    args.extend(many.iter().map(String::as_str));
    let (code, _, err) = roller(&args, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("ping on 11 machines is more than 10") && err.contains("--yes"), "{err}");
}
