//! The command line: `tasks`, `run`, the distributed-mode stubs, config errors.

use std::process::{Command, Stdio};

use roller_testkit::inventory::{Inventory, Ipmi, Machine, Pdu, Ssh};

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

/// A fresh passphrase-less ed25519 key at `path` and its public key (`type base64`).
fn keygen(path: &std::path::Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen runs (apt-get install openssh-client)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    public.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

#[test]
fn inventory_check_lists_every_problem_of_every_machine_ssh_files_included() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("inventory.toml");
    let path = f.to_str().unwrap();
    let missing = dir.path().join("missing");
    let key = dir.path().join("id");
    let public = keygen(&key);
    Inventory::new()
        // Neither the key nor the known_hosts file (host_keys = "known-hosts", the default) exists.
        .machine(Machine::new("ms1").ssh(Ssh::new("roller", missing.join("id")).known_hosts(missing.join("kh"))))
        // A usable key, but accept-new into a directory that is not there, and an unset password.
        .machine(
            Machine::new("ms2")
                .ssh(Ssh::new("roller", &key).known_hosts(missing.join("kh")).host_keys("accept-new"))
                .ipmi(Ipmi::new("bmc2", "admin").password_env("ROLLER_TEST_UNSET_IPMI_PASSWORD")),
        )
        .write_to(&f);
    let (code, out, err) = roller(&["inventory", "check", path], &[]);
    assert_eq!(code, 1, "{out}{err}");
    let m = missing.display();
    for want in [
        format!("  machines.ms1.ssh.key_file: cannot read {m}/id: No such file or directory"),
        format!("  machines.ms1.ssh.known_hosts: cannot read {m}/kh: No such file or directory"),
        "  machines.ms2.ipmi.password: environment variable ROLLER_TEST_UNSET_IPMI_PASSWORD is not set".into(),
        format!("  machines.ms2.ssh.known_hosts: directory {m} does not exist"),
    ] {
        assert!(out.lines().any(|l| l.starts_with(&want)), "want {want:?} in {out}");
    }
    assert_eq!(out.lines().last(), Some("4 problem(s)"), "{out}");
    // Each under its machine too, beside its reboot chain.
    assert!(out.contains("  PROBLEM ssh.key_file: cannot read") && out.contains("  PROBLEM ipmi.password:"), "{out}");

    // The same machines, fixed: a key, a pinned host key, a password.
    let kh = dir.path().join("known_hosts");
    std::fs::write(&kh, format!("ms1 {public}\n")).unwrap();
    Inventory::new()
        .machine(Machine::new("ms1").ssh(Ssh::new("roller", &key).known_hosts(&kh)))
        .machine(
            Machine::new("ms2")
                .ssh(Ssh::new("roller", &key).known_hosts(dir.path().join("kh2")).host_keys("accept-new"))
                .ipmi(Ipmi::new("bmc2", "admin").password_env("ROLLER_TEST_IPMI_PASSWORD")),
        )
        .write_to(&f);
    let (code, out, err) = roller(&["inventory", "check", path], &[("ROLLER_TEST_IPMI_PASSWORD", "pw")]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().last(), Some("no problems"), "{out}");
    // Steps roller's own configuration skips are said, not counted.
    assert!(out.contains("note: file_bugzilla_bug is skipped on 2 machine(s): no Bugzilla is configured"), "{out}");

    // A known_hosts file that pins no key for the machine: ssh_reboot could never trust it.
    std::fs::write(&kh, format!("elsewhere {public}\n")).unwrap();
    let (code, out, _) = roller(&["inventory", "check", path], &[("ROLLER_TEST_IPMI_PASSWORD", "pw")]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("machines.ms1.ssh.known_hosts: {} has no key for ms1 port 22", kh.display())));

    // Configuration that does not load does not stop the check, and is said.
    let (_, out, _) = roller(&["--config", "/nonexistent/roller.toml", "inventory", "check", path], &[]);
    assert!(out.contains("note: roller's configuration did not load") && out.contains("/nonexistent/roller.toml"));
}

#[test]
fn check_config_checks_the_inventory_and_what_serve_builds() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("inventory.toml");
    let path = f.to_str().unwrap();

    // `roller serve` refuses to start without the configured inventory: so does the check.
    let missing = dir.path().join("nope.toml");
    let (code, out, err) = roller(&["check-config"], &[("ROLLER_INVENTORY", missing.to_str().unwrap())]);
    assert_eq!(code, 1, "{out}{err}");
    let line = out.lines().find(|l| l.starts_with("  inventory ")).unwrap_or_else(|| panic!("a problem in {out}"));
    assert!(line.contains("No such file or directory") && line.contains("refuses to start"), "{line}");
    assert_eq!(out.lines().last(), Some("1 problem(s)"), "{out}");

    // A valid inventory: its summary, not a Debug dump.
    Inventory::new().machine(Machine::new("mac1").pdu(Pdu::new("pdu1", "AB12").community_env("C"))).write_to(&f);
    let (code, out, err) = roller(&["check-config"], &[("ROLLER_INVENTORY", path), ("C", "community")]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("inventory {path}: 1 machines, 0 classes")), "{out}");
    assert!(!out.contains("Inventory("), "{out}");
    assert_eq!(out.lines().last(), Some("no problems"), "{out}");

    // Every problem of the inventory, with the same checks as `roller inventory check`.
    Inventory::new()
        .machine(Machine::new("mac1").pdu(Pdu::new("pdu1", "AB12").community_env("C")))
        .machine(Machine::new("ms1").ssh(Ssh::new("roller", "/nonexistent/id").known_hosts("/nonexistent/kh")))
        .write_to(&f);
    let (code, out, _) = roller(&["check-config"], &[("ROLLER_INVENTORY", path)]);
    assert_eq!(code, 1, "{out}");
    for want in ["machines.mac1.pdu.community: ", "machines.ms1.ssh.key_file: ", "machines.ms1.ssh.known_hosts: "] {
        assert!(out.contains(want), "{want} in {out}");
    }
    assert_eq!(out.lines().last(), Some("3 problem(s)"), "{out}");

    // What serve reads at start: admin credentials that others can read stop it.
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let creds = data.join("admin-credentials.json");
    std::fs::write(&creds, r#"{"client_id":"roller-admin","access_token":"t","scopes":["*"]}"#).unwrap();
    std::fs::set_permissions(&creds, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (code, out, _) = roller(&["check-config"], &[("ROLLER_DATA_DIR", data.to_str().unwrap())]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("readable by others") && out.contains("chmod 600"), "{out}");
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
    // A node behind a Moonshot chassis manager: what the step would talk to, and how it trusts it.
    let (code, out, err) = roller(&["explain", "t-linux64-ms-050", "--inventory", example], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let step = out.lines().find(|l| l.contains("2. moonshot_reset")).unwrap_or_default();
    assert!(
        step.contains(
            "Moonshot chassis manager moon-chassis-2.inband.releng.mdc1.mozilla.com:443 node c5n1 as Administrator \
             (password $MOONSHOT_CM_PASSWORD), certificate verified against /etc/roller/moonshot-ca.pem"
        ),
        "{out}"
    );

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
fn explain_shows_the_evidence_taken_before_the_first_step_that_cuts_power() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/inventory.example.toml");
    let (code, out, err) = roller(&["explain", "t-w1064-01", "--inventory", example], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    let at =
        |needle: &str| lines.iter().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle} in {out}"));
    // ssh_reboot asks the OS: nothing is taken before it; redfish_restart is the first cut.
    assert_eq!(at("before redfish_restart:"), at("2. redfish_restart") + 1, "{out}");
    assert!(!out.contains("before ssh_reboot"), "{out}");
    assert_eq!(
        lines[at("before redfish_restart:")].trim(),
        "before redfish_restart: evidence (probes (icmp, tcp:22, tcp:3389, ssh banner), SEL 20, Redfish log 20, \
         SOL 16 KiB over 3s, budget 10s)"
    );
    assert!(lines[at("before ipmi_reset:")].contains("no new evidence (taken once per job, before redfish_restart)"));

    // Through dual bridging there is no SOL, and the class's keys show.
    let (code, out, _) = roller(&["explain", "t-linux64-ms-001", "--inventory", example], &[]);
    assert_eq!(code, 0, "{out}");
    let line = out.lines().find(|l| l.contains("before ipmi_reset:")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("evidence (probes (icmp, tcp:22, ssh banner), SEL 20, budget 10s); not taken:"), "{line}");
    assert!(line.contains("console (no SOL through IPMI bridging"), "{line}");
    assert!(line.contains("Redfish log (no [redfish] for this machine)"), "{line}");
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
