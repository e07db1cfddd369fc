//! The processes under test (a throwaway `redis-server` from the testkit harness the tests
//! use, `roller api` / `worker`, the bare axum server), each on a free loopback port with
//! its files in a temp dir and killed on drop, and what /proc says about them (CPU time, RSS).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use roller_testkit::redis::{Fsync, RedisServer};
pub use roller_testkit::{free_port, redis::Client as Redis};

use crate::Result;

pub struct Proc {
    pub name: String,
    process: Process,
}

enum Process {
    Child(Child),
    /// The harness kills it when dropped.
    Redis(Box<RedisServer>),
}

impl Proc {
    pub fn pid(&self) -> u32 {
        match &self.process {
            Process::Child(c) => c.id(),
            Process::Redis(r) => r.pid().unwrap_or(0),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Process::Child(c) = &mut self.process {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// User + system CPU time of a process so far, in milliseconds.
pub fn cpu_ms(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // The command name may hold spaces; the fields we want follow its closing paren.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5), in clock ticks (100 Hz on Linux).
    let ticks: u64 =
        f.get(11).and_then(|s| s.parse().ok()).unwrap_or(0) + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    ticks as f64 * 10.0
}

/// (current RSS, peak RSS) in MiB.
pub fn rss_mib(pid: u32) -> (f64, f64) {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return (0.0, 0.0) };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A throwaway redis-server (never the machine's 6379), its files in `dir`.
pub fn start_redis(dir: &Path) -> Result<(Proc, u16)> {
    // As the README asks for production: an append-only file, fsynced every second.
    let server =
        RedisServer::builder().aof(Fsync::EverySec).args(&["--maxmemory-policy", "noeviction"]).dir(dir).try_start()?;
    let port = server.port();
    Ok((Proc { name: "redis".into(), process: Process::Redis(Box::new(server)) }, port))
}

/// `roller <sub>` with `ROLLER_CONFIG=<dir>/roller.toml` and `REDIS_URL`; returns once its
/// banner is printed, with the API's address when it serves one.
pub fn start_roller(roller: &Path, sub: &str, dir: &Path, redis_port: u16) -> Result<(Proc, Option<String>)> {
    start_roller_with(roller, sub, dir, Some(redis_port), &[])
}

/// The same, on Redis or (`None`: `roller serve` only) the embedded SQLite queue in the
/// data directory, with `env` added (`ROLLER_LOG`, say). Its log is `<dir>/<sub>.log`.
pub fn start_roller_with(
    roller: &Path,
    sub: &str,
    dir: &Path,
    redis_port: Option<u16>,
    env: &[(&str, &str)],
) -> Result<(Proc, Option<String>)> {
    let log = std::fs::File::create(dir.join(format!("{sub}.log"))).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(roller);
    cmd.arg(sub)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("ROLLER_CONFIG", dir.join("roller.toml"));
    if let Some(port) = redis_port {
        cmd.env("REDIS_URL", format!("redis://127.0.0.1:{port}/"));
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", roller.display()))?;
    let out = child.stdout.take().expect("piped stdout");
    let proc = Proc { name: format!("roller {sub}"), process: Process::Child(child) };
    let mut out = BufReader::new(out);
    let mut url = None;
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap_or(0) == 0 {
            let log = std::fs::read_to_string(dir.join(format!("{sub}.log"))).unwrap_or_default();
            bail!("roller {sub} exited before its banner; its log:\n{log}");
        }
        if let Some(rest) = line.split("listening on ").nth(1) {
            url = Some(rest.trim().to_string());
        }
        if line.contains("job queue:") {
            break;
        }
    }
    // Keep draining stdout so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in out.lines() {});
    Ok((proc, url))
}

/// This benchmark binary again, as the bare axum server.
pub fn start_bare_axum() -> Result<(Proc, u16)> {
    let port = free_port();
    let exe: PathBuf = std::env::current_exe().map_err(|e| e.to_string())?;
    let child = Command::new(exe)
        .args(["bare-axum-server", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let proc = Proc { name: "bare axum".into(), process: Process::Child(child) };
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok((proc, port));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("the bare axum server did not listen on {port}")
}
