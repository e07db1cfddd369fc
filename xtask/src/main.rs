//! `cargo xtask`: the developer interface for chores that are not `cargo build`.
//!
//! - `cargo xtask test`: install what the tests need (Debian packages), then run every test.
//! - `cargo xtask ci`: `test`, plus `cargo fmt --check` and clippy with warnings denied.
//!
//! No dependencies, so it builds in seconds.

use std::process::{Command, ExitCode};

/// Tools the integration tests start or call, and the Debian package of each.
const TOOLS: &[(&str, &str)] = &[
    // The ping driver's fallback for unprivileged service users (cap_net_raw on the binary).
    ("/usr/bin/ping", "iputils-ping"),
    // Network namespaces as disposable test hosts.
    ("/usr/sbin/ip", "iproute2"),
    // Running roller as an unprivileged user in a test.
    ("/usr/bin/setpriv", "util-linux"),
    // Distributed-mode tests start their own Redis (and Redis Cluster) on free ports.
    ("/usr/bin/redis-server", "redis-server"),
    ("/usr/bin/redis-cli", "redis-tools"),
];

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let result = match task.as_str() {
        "test" => install_test_deps().and_then(|_| test()),
        "ci" => install_test_deps().and_then(|_| lint()).and_then(|_| test()),
        "deps" => install_test_deps(),
        _ => {
            eprintln!("usage: cargo xtask <test|ci|deps>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd.status().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("{cmd:?} failed: {status}")) }
}

fn install_test_deps() -> Result<(), String> {
    let missing: Vec<&str> =
        TOOLS.iter().filter(|(path, _)| !std::path::Path::new(path).exists()).map(|(_, pkg)| *pkg).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let is_root = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false);
    if !is_root {
        return Err(format!(
            "the tests need Debian packages {missing:?}; run: sudo apt-get install -y {}",
            missing.join(" ")
        ));
    }
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn lint() -> Result<(), String> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))
}

fn test() -> Result<(), String> {
    run(cargo().args(["test", "--workspace", "--all-targets"]))
}
