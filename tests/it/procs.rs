//! Real `roller` processes (`serve`, `api`, `worker`), each started on free loopback
//! ports with its files in a temp dir, killed on drop. The `redis-server` they share is
//! the testkit's harness (the one the queue's unit tests and the benchmarks use too).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::Method;
pub use roller_testkit::free_port;
pub use roller_testkit::redis::RedisServer;
use serde_json::Value;

use crate::helpers::*;

pub struct Roller {
    pub child: Child,
    /// The API's base URL (`serve`, `api`); `None` for a worker.
    pub url: Option<String>,
    /// What it printed on stdout at start.
    pub banner: Vec<String>,
    /// Its stderr (the JSON log).
    pub log: PathBuf,
}

impl Drop for Roller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Roller {
    pub fn url(&self) -> &str {
        self.url.as_deref().expect("this process serves the API")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send a signal by name (`TERM`, `KILL`) without reaping the process.
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill").args([&format!("-{name}"), &self.pid().to_string()]).status().unwrap().success();
        assert!(ok, "kill -{name} {}", self.pid());
    }
}

/// Start `roller <sub>` with `HOME` and the data in `dir`, plus `env`; return
/// once its banner is printed. `admin` says whether the banner will carry the
/// generated admin's commands (zero-config `serve`).
pub fn start_roller(sub: &str, dir: &Path, env: &[(&str, &str)], log_name: &str, admin: bool) -> Roller {
    start_roller_with(sub, dir, env, log_name, admin, None)
}

/// [`start_roller`], with the process's soft limit on open files set to `soft_nofile`
/// (the hard limit kept), as a service manager might start it.
pub fn start_roller_with(
    sub: &str,
    dir: &Path,
    env: &[(&str, &str)],
    log_name: &str,
    admin: bool,
    soft_nofile: Option<u64>,
) -> Roller {
    let log = dir.join(log_name);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_roller"));
    cmd.arg(sub)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("ROLLER_BIND", "127.0.0.1:0")
        // The path checker's reads stay out of process tests (their `env` may turn it on).
        .env("ROLLER_PATHS", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(soft) = soft_nofile {
        use std::os::unix::process::CommandExt;
        // SAFETY: getrlimit and setrlimit are async-signal-safe; nothing else runs here.
        unsafe {
            cmd.pre_exec(move || {
                let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
                if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                lim.rlim_cur = soft.min(lim.rlim_max);
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().expect("roller binary starts");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut banner = Vec::new();
    let mut url = None;
    let mut done = false;
    for _ in 0..20 {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let line = line.trim_end().to_string();
        if let Some(rest) = line.split("listening on ").nth(1) {
            url = Some(rest.trim().to_string());
        }
        banner.push(line.clone());
        if (!admin && line.contains("job queue:")) || line.contains(" list ") {
            done = true;
            break;
        }
    }
    assert!(done, "no complete banner in {banner:?}; log: {}", std::fs::read_to_string(&log).unwrap_or_default());
    // Keep draining stdout so the process never blocks on a full pipe.
    std::thread::spawn(move || for _ in out.lines() {});
    Roller { child, url, banner, log }
}

/// A Hawk-signed request to a roller process.
pub async fn signed(url: &str, method: Method, path: &str, client: (&str, &str, &[&str])) -> (u16, Value) {
    let full = format!("{url}{path}");
    let h = hawk_header(&method, &full, client.0, client.1, None, now());
    let r = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
        .request(method, &full)
        .header("Authorization", h)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Poll a job through `url`, as `client`, until its state is one of `want` (bounded).
pub async fn wait_state(
    url: &str,
    client: (&str, &str, &[&str]),
    task_id: &str,
    want: &[&str],
    limit: Duration,
) -> Value {
    wait_for(limit, || async {
        let (s, v) = signed(url, Method::GET, &format!("/api/v1/jobs/{task_id}"), client).await;
        (s == 200 && want.contains(&v["state"].as_str().unwrap_or(""))).then_some(v)
    })
    .await
    .unwrap_or_else(|| panic!("job {task_id} never reached {want:?}"))
}
