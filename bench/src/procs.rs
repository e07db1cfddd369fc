//! The processes under test (a throwaway `redis-server`, `roller api` / `worker`, the bare
//! axum server), each on a free loopback port with its files in a temp dir and killed on
//! drop, and what /proc says about them (CPU time, RSS).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::Result;

pub struct Proc {
    pub name: String,
    child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port")
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

/// A throwaway redis-server, never the machine's 6379.
pub fn start_redis(dir: &Path) -> Result<(Proc, u16)> {
    let port = free_port();
    // As the README asks for production: an append-only file, fsynced every second.
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .args(["--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction"])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start redis-server (apt-get install redis-server): {e}"))?;
    let proc = Proc { name: "redis".into(), child };
    for _ in 0..200 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            let mut buf = [0u8; 16];
            if s.write_all(b"PING\r\n").is_ok() && s.read(&mut buf).is_ok_and(|n| buf[..n].starts_with(b"+PONG")) {
                return Ok((proc, port));
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    bail!("redis-server did not answer on port {port}")
}

/// `roller <sub>` with `ROLLER_CONFIG=<dir>/roller.toml` and `REDIS_URL`; returns once its
/// banner is printed, with the API's address when it serves one.
pub fn start_roller(roller: &Path, sub: &str, dir: &Path, redis_port: u16) -> Result<(Proc, Option<String>)> {
    let log = std::fs::File::create(dir.join(format!("{sub}.log"))).map_err(|e| e.to_string())?;
    let mut child = Command::new(roller)
        .arg(sub)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("ROLLER_CONFIG", dir.join("roller.toml"))
        .env("REDIS_URL", format!("redis://127.0.0.1:{redis_port}/"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", roller.display()))?;
    let out = child.stdout.take().expect("piped stdout");
    let proc = Proc { name: format!("roller {sub}"), child };
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
    let proc = Proc { name: "bare axum".into(), child };
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok((proc, port));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("the bare axum server did not listen on {port}")
}

/// A minimal RESP client for the few integer queries the drain scenarios poll.
pub struct Redis(std::io::BufReader<std::net::TcpStream>);

impl Redis {
    pub fn connect(port: u16) -> Result<Redis> {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        Ok(Redis(BufReader::new(s)))
    }

    /// A command whose answer is an integer.
    pub fn int(&mut self, args: &[&str]) -> Result<i64> {
        use std::io::Write;
        let mut cmd = format!("*{}\r\n", args.len());
        for a in args {
            cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.0.get_mut().write_all(cmd.as_bytes()).map_err(|e| e.to_string())?;
        let mut line = String::new();
        self.0.read_line(&mut line).map_err(|e| e.to_string())?;
        match line.strip_prefix(':') {
            Some(n) => n.trim().parse().map_err(|_| format!("not an integer: {line:?}")),
            None => bail!("redis answered {line:?} to {args:?}"),
        }
    }
}
