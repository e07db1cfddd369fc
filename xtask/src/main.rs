//! `cargo xtask`: the developer interface for chores that are not `cargo build`.
//!
//! - `cargo xtask test`: install what the tests need (Debian packages, and a venv with
//!   sushy-tools and the Taskcluster Python client under target/), then run every test.
//! - `cargo xtask ci`: `test`, plus `cargo fmt --check` and clippy with warnings denied.
//! - `cargo xtask deps`: only the installing.
//! - `cargo xtask fuzz [--seconds N] [TARGET…]`: build the cargo-fuzz targets (installing
//!   cargo-fuzz if needed) and run each for N seconds (default 30); fails on a crash.
//! - `cargo xtask bench [scenario…] [--duration S]`: build roller and the load generator
//!   (`bench/`) with `--release` and run the benchmarks (docs/BENCHMARKS.md).
//!
//! No dependencies, so it builds in seconds.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Tools the tests start or call, and the Debian package of each.
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
    // Hardware peers: an IPMI BMC, a Sentry3 PDU over SNMP, an ssh target.
    ("/usr/bin/ipmi_sim", "openipmi"),
    ("/usr/bin/ipmitool", "ipmitool"),
    ("/usr/sbin/snmpd", "snmpd"),
    ("/usr/bin/snmpget", "snmp"),
    ("/usr/sbin/sshd", "openssh-server"),
    // A DNS server for the search-domain tests; -base is the binary without the service.
    ("/usr/sbin/dnsmasq", "dnsmasq-base"),
    // Self-signed certificates for the TLS peers (Redfish, iLO); `openssl s_client` and curl
    // as TLS clients roller did not write, against its HTTPS listener (tests/it/https.rs).
    // Debian's redis-server is built with TLS (`--tls-port`), which the TLS Redis tests use.
    ("/usr/bin/openssl", "openssl"),
    ("/usr/bin/curl", "curl"),
    // The dashboard tests drive a real headless browser over WebDriver.
    ("/usr/bin/chromium", "chromium"),
    ("/usr/bin/chromedriver", "chromium-driver"),
    // The fault tests lock the embedded queue's database from another process.
    ("/usr/bin/sqlite3", "sqlite3"),
];

/// The Redfish peer (sushy-tools' emulator) lives in a venv under target/; tests find it
/// through this variable.
const SUSHY_ENV: &str = "ROLLER_TEST_SUSHY_EMULATOR";
/// The same venv's python, which has the Taskcluster client: the field's own client judges
/// roller-testkit's Taskcluster stand-in (tests/it/tc_client.rs).
const PYTHON_ENV: &str = "ROLLER_TEST_PYTHON";
/// What the one test venv holds, pinned: sushy-tools (the Redfish emulator), the
/// `taskcluster` client, and the OpenAPI judges (tests/it/openapi_tools.rs):
/// openapi-spec-validator for the document, schemathesis for the running service, with
/// mohawk to sign its requests. Changing the list reinstalls into an existing venv.
const VENV_PACKAGES: &[&str] = &[
    "sushy-tools==2.2.0",
    "taskcluster==113.2.0",
    "openapi-spec-validator==0.9.0",
    "schemathesis==4.32.5",
    "mohawk==1.1.0",
];

/// Where the test venv's programs are, for the tests' environment.
struct TestVenv {
    emulator: PathBuf,
    python: PathBuf,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().cloned().unwrap_or_default();
    let result = match task.as_str() {
        "test" => install_test_deps().and_then(test),
        "ci" => install_test_deps().and_then(|venv| lint().and_then(|_| test(venv))),
        "deps" => install_test_deps().map(|_| ()),
        "fuzz" => match FuzzArgs::parse(&args[1..]) {
            Ok(a) => fuzz(a),
            Err(e) => {
                eprintln!("xtask fuzz: {e}\nusage: cargo xtask fuzz [--seconds N] [TARGET…]");
                return ExitCode::from(2);
            }
        },
        "bench" => bench(std::env::args().skip(2).collect()),
        _ => {
            eprintln!("usage: cargo xtask <test|ci|deps|fuzz|bench>");
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

/// Debian packages, then the test venv; returns where its programs are.
fn install_test_deps() -> Result<TestVenv, String> {
    install_debian_packages()?;
    test_venv()
}

fn install_debian_packages() -> Result<(), String> {
    let missing: Vec<&str> = TOOLS.iter().filter(|(path, _)| !Path::new(path).exists()).map(|(_, pkg)| *pkg).collect();
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
    // Installing snmpd or openssh-server must not start them on the machine's standard
    // ports (the tests run their own): policy-rc.d is Debian's switch for that.
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let ours = !policy.exists();
    if ours {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(policy, "#!/bin/sh\nexit 101\n").map_err(|e| format!("cannot write {policy:?}: {e}"))?;
        std::fs::set_permissions(policy, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("cannot chmod {policy:?}: {e}"))?;
    }
    let result = run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"));
    if ours {
        let _ = std::fs::remove_file(policy);
    }
    result
}

/// The test venv under target/, made once; installed into again only when the pinned list
/// differs from the one it was made with (a stamp file in the venv), so a venv from before a
/// package was added gets it.
fn test_venv() -> Result<TestVenv, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().ok_or("xtask is not inside the workspace")?;
    let venv = root.join("target/test-peers-venv");
    let found = TestVenv { emulator: venv.join("bin/sushy-emulator"), python: venv.join("bin/python3") };
    let stamp = venv.join("roller-packages.txt");
    let wanted = VENV_PACKAGES.join("\n");
    if found.emulator.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(found);
    }
    if !found.python.exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    run(Command::new(venv.join("bin/pip")).args(["install", "-q", "--disable-pip-version-check"]).args(VENV_PACKAGES))?;
    std::fs::write(&stamp, wanted).map_err(|e| format!("cannot write {stamp:?}: {e}"))?;
    Ok(found)
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn lint() -> Result<(), String> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))
}

fn test(venv: TestVenv) -> Result<(), String> {
    run(cargo()
        .args(["test", "--workspace", "--all-targets"])
        .env(SUSHY_ENV, venv.emulator)
        .env(PYTHON_ENV, venv.python))
}

struct FuzzArgs {
    seconds: u64,
    /// Empty: every target `cargo fuzz list` names.
    targets: Vec<String>,
}

impl FuzzArgs {
    fn parse(args: &[String]) -> Result<FuzzArgs, String> {
        let mut parsed = FuzzArgs { seconds: 30, targets: Vec::new() };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let value = match a.as_str() {
                "--seconds" => it.next().ok_or("--seconds needs a value")?.as_str(),
                other => match other.strip_prefix("--seconds=") {
                    Some(v) => v,
                    None if other.starts_with('-') => return Err(format!("unknown option {other}")),
                    None => {
                        parsed.targets.push(other.to_string());
                        continue;
                    }
                },
            };
            parsed.seconds = value.parse().ok().filter(|s| *s > 0).ok_or(format!("--seconds {value:?}"))?;
        }
        Ok(parsed)
    }
}

/// Every call passes `--sanitizer none`: cargo-fuzz's default AddressSanitizer is a `-Z` flag
/// that stable rustc refuses, the fuzzed code is safe Rust, and without it no `-Z` flag is
/// passed at all, so stable builds it without RUSTC_BOOTSTRAP (docs/FUZZING.md).
fn cargo_fuzz(root: &Path) -> Command {
    let mut cmd = cargo();
    cmd.current_dir(root).arg("fuzz");
    cmd
}

fn fuzz(args: FuzzArgs) -> Result<(), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().ok_or("xtask is not inside the workspace")?;
    let installed = cargo_fuzz(root).arg("--version").output().is_ok_and(|o| o.status.success());
    if !installed {
        run(cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let targets = if args.targets.is_empty() {
        let out = cargo_fuzz(root).arg("list").output().map_err(|e| format!("cargo fuzz list: {e}"))?;
        if !out.status.success() {
            return Err(format!("cargo fuzz list failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect()
    } else {
        args.targets
    };
    // All targets at once (`cargo fuzz build` takes one or all): roller is compiled once either way.
    run(cargo_fuzz(root).args(["build", "--sanitizer", "none"]))?;
    let mut crashed = Vec::new();
    for t in &targets {
        // New inputs go to the first directory; the committed seeds stay as they are.
        let scratch = root.join("fuzz/target/corpus").join(t);
        std::fs::create_dir_all(&scratch).map_err(|e| format!("cannot create {scratch:?}: {e}"))?;
        let result = run(cargo_fuzz(root)
            .args(["run", "--sanitizer", "none", t])
            .arg(&scratch)
            .arg(root.join("fuzz/corpus").join(t))
            .args(["--", &format!("-max_total_time={}", args.seconds), "-timeout=10", "-rss_limit_mb=2048"]));
        if let Err(e) = result {
            eprintln!("xtask: {t}: {e}; the input is under fuzz/artifacts/{t}/");
            crashed.push(t.as_str());
        }
    }
    if crashed.is_empty() { Ok(()) } else { Err(format!("fuzz targets failed: {}", crashed.join(", "))) }
}

/// Release builds of roller and the load generator, then the benchmark itself, which
/// starts its own redis-server and roller processes.
fn bench(args: Vec<String>) -> Result<(), String> {
    if !Path::new("/usr/bin/redis-server").exists() {
        return Err("the benchmarks need redis-server: run cargo xtask deps, or apt-get install redis-server".into());
    }
    // `roller/bench`: the switches only benchmarks use (the replay scenario's baseline).
    run(cargo().args([
        "build",
        "--release",
        "--package",
        "roller",
        "--package",
        "roller-bench",
        "--features",
        "roller/bench",
    ]))?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().ok_or("xtask is not inside the workspace")?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let release = target.join("release");
    run(Command::new(release.join("roller-bench")).args(&args).arg("--roller").arg(release.join("roller")))
}
