//! roller's benchmarks (issue 7): `cargo xtask bench [scenario…] [--duration S]` builds this
//! and roller with `--release` and runs it. Every scenario starts its own redis-server and
//! roller processes on free loopback ports in a temp dir, sends Hawk-signed requests with a
//! unique nonce each, and measures the server processes through /proc. See
//! docs/BENCHMARKS.md for what each scenario means and the results.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub type Result<T> = std::result::Result<T, String>;

macro_rules! bail {
    ($($t:tt)*) => { return Err(format!($($t)*)) };
}

mod embedded;
mod health;
mod load;
mod procs;
mod replay;
mod xen;

use load::{Plan, Stop};
use procs::{Proc, cpu_ms, rss_mib};

const USAGE: &str =
    "usage: roller-bench [SCENARIO…] [--duration S] [--jobs N] [--long-jobs N] [--concurrency N] [--rounds N] [--roller PATH]
scenarios: axum enqueue replay noop ping embedded latency long sweep medic soak (default: all but soak)
  axum      a bare axum handler: the HTTP ceiling, 16 and 64 connections
  enqueue   signed enqueue POST, roller api on Redis, 16 and 64 connections
  replay    signed enqueue with the shared replay check and with it in-process only, on Redis
            (roller api) and SQLite (roller serve), alternating --rounds (default 4) phases of
            each: the check's cost
  noop      drain --jobs queued noop jobs with one roller worker
  ping      drain --jobs/4 queued ping jobs (127.x.y.z, one echo each)
  embedded  `roller serve` drains 100,000 noop jobs queued in its SQLite file; heartbeats meanwhile
  latency   enqueue -> start with an idle worker, and idle RSS of api and worker
  long      --long-jobs concurrent reboots of simulated hosts that come back after 60 s
  sweep     `roller serve` sweeping 10,000 machines in 50 Taskcluster pools (SQLite, then Redis);
            --concurrency probes at once (default 64, roller's default)
  medic     a machine turns hung: the time until the medic's job for it is queued
  soak      --duration (default 600) s at 1,000 req/s of noop jobs, memory over time";

const CLIENT_ID: &str = "bench";

/// What runs when no scenario is named: all but the soak.
const SCENARIOS: [&str; 10] =
    ["axum", "enqueue", "replay", "noop", "ping", "embedded", "latency", "long", "sweep", "medic"];

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("bare-axum-server") {
        let port: u16 = args.get(1).and_then(|p| p.parse().ok()).expect("a port");
        bare_axum_server(port);
        return std::process::ExitCode::SUCCESS;
    }
    match parse(args).and_then(|o| tokio::runtime::Runtime::new().map_err(|e| e.to_string())?.block_on(run(o))) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roller-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

struct Options {
    scenarios: Vec<String>,
    duration: Option<Duration>,
    jobs: u64,
    long_jobs: u64,
    /// `[health] concurrency` of the sweep and medic scenarios.
    concurrency: usize,
    /// Phases per variant in the replay scenario.
    rounds: usize,
    roller: PathBuf,
}

fn parse(args: Vec<String>) -> Result<Options> {
    let exe_dir = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)).unwrap_or_default();
    let mut o = Options {
        scenarios: vec![],
        duration: None,
        jobs: 20_000,
        long_jobs: 10_000,
        concurrency: 64,
        rounds: 4,
        roller: exe_dir.join("roller"),
    };
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value\n{USAGE}"));
        match a.as_str() {
            "--duration" => {
                let v = value("--duration")?;
                o.duration = Some(Duration::from_secs_f64(v.parse().map_err(|_| format!("bad --duration {v:?}"))?));
            }
            "--jobs" => o.jobs = value("--jobs")?.parse().map_err(|_| "bad --jobs".to_string())?,
            "--long-jobs" => o.long_jobs = value("--long-jobs")?.parse().map_err(|_| "bad --long-jobs".to_string())?,
            "--concurrency" => {
                o.concurrency = value("--concurrency")?
                    .parse()
                    .ok()
                    .filter(|n| (1..=1024).contains(n))
                    .ok_or("--concurrency takes 1 to 1024")?
            }
            "--rounds" => {
                o.rounds = value("--rounds")?
                    .parse()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .ok_or("--rounds takes 1 to 100")?
            }
            "--roller" => o.roller = PathBuf::from(value("--roller")?),
            "-h" | "--help" => bail!("{USAGE}"),
            s if SCENARIOS.contains(&s) || s == "soak" => o.scenarios.push(s.to_string()),
            s => bail!("unknown argument {s:?}\n{USAGE}"),
        }
    }
    if o.scenarios.is_empty() {
        o.scenarios = SCENARIOS.map(String::from).to_vec();
    }
    if !o.roller.exists() {
        bail!("no roller binary at {} (build it with cargo build --release, or pass --roller)", o.roller.display());
    }
    Ok(o)
}

/// One row of the results table.
struct Row {
    scenario: String,
    conns: String,
    count: u64,
    rate: f64,
    latency: Option<[f64; 3]>,
    server_cpu_ms: f64,
    /// The server CPU per process, when there are several.
    cpu_split: Option<String>,
    client_cpu_ms: Option<f64>,
    rss: String,
    errors: u64,
}

async fn run(o: Options) -> Result<()> {
    println!("{}", machine());
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let duration = o.duration.unwrap_or(Duration::from_secs(10));
    for s in &o.scenarios {
        eprintln!("roller-bench: scenario {s}");
        match s.as_str() {
            "axum" => {
                for conns in [16, 64] {
                    rows.push(bare_axum(conns, duration).await?);
                }
            }
            "enqueue" => {
                for conns in [16, 64] {
                    rows.push(enqueue(&o, conns, duration).await?);
                }
            }
            "replay" => notes.push(replay::replay(&o, duration).await?),
            "noop" => rows.push(drain(&o, "noop", o.jobs).await?),
            "ping" => rows.push(drain(&o, "ping", (o.jobs / 4).max(1)).await?),
            "embedded" => notes.extend(embedded::drain(&o.roller, 100_000).await?),
            "latency" => notes.extend(latency(&o).await?),
            "long" => {
                let (row, note) = long(&o).await?;
                rows.push(row);
                notes.push(note);
            }
            "sweep" => notes.extend(health::sweep(&o.roller, o.concurrency).await?),
            "medic" => notes.push(health::medic(&o.roller, o.concurrency).await?),
            "soak" => notes.push(soak(&o, o.duration.unwrap_or(Duration::from_secs(600))).await?),
            _ => unreachable!("parse() checks scenario names"),
        }
    }
    if !rows.is_empty() {
        println!();
        println!(
            "| scenario | conns | requests / jobs | req/s or jobs/s | p50 ms | p90 ms | p99 ms | server CPU ms per req/job | load generator CPU ms per req | RSS MiB | errors |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
    }
    for r in &rows {
        let (p50, p90, p99) = match r.latency {
            Some([a, b, c]) => (format!("{a:.2}"), format!("{b:.2}"), format!("{c:.2}")),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let client = r.client_cpu_ms.map(|c| format!("{c:.3}")).unwrap_or_else(|| "-".into());
        let split = r.cpu_split.as_deref().map(|s| format!(" ({s})")).unwrap_or_default();
        println!(
            "| {} | {} | {} | {:.0} | {p50} | {p90} | {p99} | {:.3}{split} | {client} | {} | {} |",
            r.scenario, r.conns, r.count, r.rate, r.server_cpu_ms, r.rss, r.errors
        );
    }
    for conns in ["16", "64"] {
        let axum = rows.iter().find(|r| r.scenario == "bare axum handler" && r.conns == conns);
        let roller = rows.iter().find(|r| r.scenario.starts_with("signed enqueue") && r.conns == conns);
        if let (Some(a), Some(r)) = (axum, roller) {
            println!(
                "\nratio to the HTTP ceiling at {conns} connections: {:.0} / {:.0} req/s = {:.0}%",
                r.rate,
                a.rate,
                100.0 * r.rate / a.rate
            );
        }
    }
    for n in notes {
        println!("\n{n}");
    }
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_string()))
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string()))
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or(0);
    format!(
        "machine: {} CPUs ({cpu}), {} GiB RAM, Linux {}; load average before the run: {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        mem / 1024 / 1024,
        kernel.trim(),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    )
}

fn self_cpu_ms() -> f64 {
    cpu_ms(std::process::id())
}

fn rss_of(procs: &[&Proc]) -> String {
    procs.iter().map(|p| format!("{} {:.0}", p.name, rss_mib(p.pid()).0)).collect::<Vec<_>>().join(", ")
}

fn cpu_of(procs: &[&Proc]) -> f64 {
    procs.iter().map(|p| cpu_ms(p.pid())).sum()
}

/// The HTTP ceiling: the same requests (signed, though nothing checks them) to an axum
/// handler that answers what enqueue answers, without authenticating or queueing.
fn bare_axum_server(port: u16) {
    use axum::routing::post;
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(async {
        let body = r#"{"task_name":"ping","worker_id":"w","worker_group":"bench","task_id":"8c0a3f5e-2b7d-4c1e-9f6a-1d2e3f4a5b6c","state":"queued","coalesced":false,"url":"/api/v1/jobs/8c0a3f5e-2b7d-4c1e-9f6a-1d2e3f4a5b6c"}"#;
        let app = axum::Router::new().route(
            "/api/v1/workers/{worker_id}/group/{worker_group}/jobs",
            post(move || async move { (axum::http::StatusCode::CREATED, [("content-type", "application/json")], body) }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("the bench port");
        axum::serve(listener, app).await.expect("axum serves");
    });
}

fn credentials(token: &str) -> Arc<hawk::Credentials> {
    Arc::new(hawk::Credentials {
        id: CLIENT_ID.into(),
        key: hawk::Key::new(token.as_bytes(), hawk::SHA256).expect("a Hawk key"),
    })
}

async fn bare_axum(conns: usize, duration: Duration) -> Result<Row> {
    let (server, port) = procs::start_bare_axum()?;
    let creds = credentials("not-checked-by-the-bare-handler");
    let path = Arc::new(|n: u64| format!("/api/v1/workers/a{n}/group/bench/jobs?task_name=ping"));
    let (c0, s0) = (self_cpu_ms(), cpu_ms(server.pid()));
    let out =
        load::run(Plan { port, creds, conns, stop: Stop::After(duration), rate: None, path, keep_bodies: false }).await;
    let (c1, s1) = (self_cpu_ms(), cpu_ms(server.pid()));
    let n = out.requests().max(1) as f64;
    Ok(Row {
        scenario: "bare axum handler".into(),
        conns: conns.to_string(),
        count: out.requests(),
        rate: out.rate(),
        latency: Some([out.quantile_ms(0.5), out.quantile_ms(0.9), out.quantile_ms(0.99)]),
        server_cpu_ms: (s1 - s0) / n,
        cpu_split: None,
        client_cpu_ms: Some((c1 - c0) / n),
        rss: rss_of(&[&server]),
        errors: out.errors(),
    })
}

/// A temp dir with roller's config (static Hawk client `bench`, its token in a 0600 file).
struct Setup {
    dir: tempfile::TempDir,
    token: String,
}

impl Setup {
    fn new(extra_config: &str) -> Result<Setup> {
        Setup::with_server("", extra_config)
    }

    /// `server` goes into the `[server]` table, `extra_config` after it.
    fn with_server(server: &str, extra_config: &str) -> Result<Setup> {
        let dir = tempfile::Builder::new().prefix("roller-bench-").tempdir().map_err(|e| e.to_string())?;
        let mut raw = [0u8; 24];
        use std::io::Read;
        std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut raw)).map_err(|e| e.to_string())?;
        let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let token_file = dir.path().join("token");
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&token_file)
                .map_err(|e| e.to_string())?;
            std::io::Write::write_all(&mut f, token.as_bytes()).map_err(|e| e.to_string())?;
        }
        let s = Setup { dir, token };
        s.write_config(server, extra_config)?;
        Ok(s)
    }

    fn write_config(&self, server: &str, extra: &str) -> Result<()> {
        let d = self.dir.path();
        let config = format!(
            r#"data_dir = "{data}"

[server]
bind = "127.0.0.1:0"
{server}

[paths]
enabled = false

[auth]
backend = "local"

[[auth.clients]]
client_id = "{CLIENT_ID}"
access_token_file = "{token}"
scopes = ["project:releng:roller:*"]

{extra}
"#,
            data = d.join("data").display(),
            token = d.join("token").display(),
        );
        std::fs::write(d.join("roller.toml"), config).map_err(|e| e.to_string())
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn creds(&self) -> Arc<hawk::Credentials> {
        credentials(&self.token)
    }
}

async fn enqueue(o: &Options, conns: usize, duration: Duration) -> Result<Row> {
    let setup = Setup::new("[tasks]\nenabled = [\"ping\"]\n")?;
    let (redis, redis_port) = procs::start_redis(setup.path())?;
    let (api, url) = procs::start_roller(&o.roller, "api", setup.path(), redis_port)?;
    let port = api_port(url)?;
    // Every request a new machine: nothing coalesces, every POST queues a job.
    let path = Arc::new(|n: u64| format!("/api/v1/workers/e{n}/group/bench/jobs?task_name=ping"));
    let (c0, s0, a0) = (self_cpu_ms(), cpu_of(&[&api, &redis]), cpu_ms(api.pid()));
    let out = load::run(Plan {
        port,
        creds: setup.creds(),
        conns,
        stop: Stop::After(duration),
        rate: None,
        path,
        keep_bodies: false,
    })
    .await;
    let (c1, s1, a1) = (self_cpu_ms(), cpu_of(&[&api, &redis]), cpu_ms(api.pid()));
    let n = out.requests().max(1) as f64;
    if out.errors() > 0 {
        eprintln!("roller-bench: enqueue: answers {:?}, {} without answer", out.statuses, out.transport_errors);
    }
    Ok(Row {
        scenario: "signed enqueue POST (roller api + Redis)".into(),
        conns: conns.to_string(),
        count: out.requests(),
        rate: out.rate(),
        latency: Some([out.quantile_ms(0.5), out.quantile_ms(0.9), out.quantile_ms(0.99)]),
        server_cpu_ms: (s1 - s0) / n,
        cpu_split: Some(format!("api {:.3}, redis {:.3}", (a1 - a0) / n, (s1 - s0 - (a1 - a0)) / n)),
        client_cpu_ms: Some((c1 - c0) / n),
        rss: rss_of(&[&api, &redis]),
        errors: out.errors(),
    })
}

fn api_port(url: Option<String>) -> Result<u16> {
    url.as_deref()
        .and_then(|u| u.rsplit(':').next())
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .ok_or_else(|| format!("no API address in roller's banner ({url:?})"))
}

/// The worker id of drain job n: a fresh machine each, so no job waits for another's lock.
fn drain_worker(task: &str, n: u64) -> String {
    match task {
        // Loopback answers for all of 127/8: a distinct pingable address per job.
        "ping" => format!("127.{}.{}.{}", 1 + n / 62_500, (n / 250) % 250, 1 + n % 250),
        _ => format!("d{n}"),
    }
}

/// Queue `jobs` jobs through the API, then start one worker and time how fast it empties
/// the queue (the original's "queue drain" figure).
async fn drain(o: &Options, task: &str, jobs: u64) -> Result<Row> {
    let metrics_port = procs::free_port();
    let setup = Setup::with_server(
        &format!("metrics_bind = \"127.0.0.1:{metrics_port}\""),
        "[tasks]\nenabled = [\"noop\", \"ping\"]\n\n[runner]\nconcurrency = 1000\n\n[ping]\ncount = 1\ntimeout_ms = 1000\n",
    )?;
    let (redis, redis_port) = procs::start_redis(setup.path())?;
    let (api, url) = procs::start_roller(&o.roller, "api", setup.path(), redis_port)?;
    let port = api_port(url)?;
    let task_owned = task.to_string();
    let path = Arc::new(move |n: u64| {
        format!("/api/v1/workers/{}/group/bench/jobs?task_name={task_owned}", drain_worker(&task_owned, n))
    });
    let fill = load::run(Plan {
        port,
        creds: setup.creds(),
        conns: 64,
        stop: Stop::Count(jobs),
        rate: None,
        path,
        keep_bodies: false,
    })
    .await;
    if fill.errors() > 0 {
        bail!("filling the queue: answers {:?}, {} without answer", fill.statuses, fill.transport_errors);
    }
    eprintln!("roller-bench: {jobs} {task} jobs queued at {:.0}/s; starting the worker", fill.rate());
    let mut r = procs::Redis::connect(redis_port).map_err(|e| format!("connecting to redis: {e}"))?;
    let queued = |r: &mut procs::Redis| -> Result<(i64, i64)> {
        Ok((r.int(&["ZCARD", "{roller}:queued"])?, r.int(&["ZCARD", "{roller}:running"])?))
    };
    let r0 = cpu_ms(redis.pid());
    let (worker, _) = procs::start_roller(&o.roller, "worker", setup.path(), redis_port)?;
    let mut t0 = None;
    let limit = Instant::now() + Duration::from_secs(600);
    loop {
        let (q, run) = queued(&mut r)?;
        if t0.is_none() && (q as u64) < jobs {
            t0 = Some(Instant::now());
        }
        if q == 0 && run == 0 {
            break;
        }
        if Instant::now() > limit {
            bail!("the worker did not drain the queue within 600 s ({q} queued, {run} running)");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = t0.map(|t| t.elapsed()).unwrap_or_default();
    let (w_cpu, r_cpu) = (cpu_ms(worker.pid()), cpu_ms(redis.pid()) - r0);
    let server = w_cpu + r_cpu;
    // The queue is empty once the last finish script ran; the worker counts the job just
    // after that answer, so wait (bounded) for the counters to catch up before reading them.
    let counted = |state: &str| -> Result<u64> {
        Ok(metric(
            &metrics(metrics_port)?,
            "roller_jobs_finished_total",
            &[&format!("task=\"{task}\""), &format!("state=\"{state}\"")],
        ) as u64)
    };
    let settle = Instant::now() + Duration::from_secs(10);
    let mut succeeded = counted("succeeded")?;
    while succeeded < jobs && Instant::now() < settle {
        let others: u64 = ["failed", "timed_out", "cancelled"].iter().map(|s| counted(s).unwrap_or(0)).sum();
        if succeeded + others >= jobs {
            eprintln!("roller-bench: {others} {task} jobs did not succeed");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        succeeded = counted("succeeded")?;
    }
    let rss = format!(
        "worker {:.0} (peak {:.0}), redis {:.0}",
        rss_mib(worker.pid()).0,
        rss_mib(worker.pid()).1,
        rss_mib(redis.pid()).0
    );
    let _ = api;
    Ok(Row {
        scenario: format!("queue drain, {task} jobs (one roller worker + Redis)"),
        conns: "-".into(),
        count: jobs,
        rate: jobs as f64 / elapsed.as_secs_f64(),
        latency: None,
        server_cpu_ms: server / jobs as f64,
        cpu_split: Some(format!("worker {:.3}, redis {:.3}", w_cpu / jobs as f64, r_cpu / jobs as f64)),
        client_cpu_ms: None,
        rss,
        errors: jobs.saturating_sub(succeeded),
    })
}

/// A roller worker's /metrics text.
fn metrics(port: u16) -> Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    Ok(text)
}

/// The sum of a metric's samples whose labels include every one of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// Enqueue → start with an idle worker (the job record's created_at and started_at, both
/// from the Redis server's clock, in ms), and the idle RSS of `roller api` and `roller worker`.
async fn latency(o: &Options) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    for poll_ms in [1000u64, 10] {
        let setup = Setup::new(&format!("[tasks]\nenabled = [\"noop\"]\n\n[runner]\npoll_interval_ms = {poll_ms}\n"))?;
        let (redis, redis_port) = procs::start_redis(setup.path())?;
        let (api, url) = procs::start_roller(&o.roller, "api", setup.path(), redis_port)?;
        let (worker, _) = procs::start_roller(&o.roller, "worker", setup.path(), redis_port)?;
        let port = api_port(url)?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = format!(
            "idle RSS: roller api {:.1} MiB, roller worker {:.1} MiB, redis-server {:.1} MiB",
            rss_mib(api.pid()).0,
            rss_mib(worker.pid()).0,
            rss_mib(redis.pid()).0
        );
        let creds = setup.creds();
        let mut samples = Vec::new();
        for i in 0..30 {
            let (status, body) =
                load::once(port, "POST", &format!("/api/v1/workers/l{i}/group/bench/jobs?task_name=noop"), &creds)
                    .await
                    .ok_or("enqueue got no answer")?;
            if status != 201 {
                bail!("enqueue answered {status}: {}", String::from_utf8_lossy(&body));
            }
            let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
            let id = v["task_id"].as_str().ok_or("no task_id")?.to_string();
            let job = loop {
                let (_, body) =
                    load::once(port, "GET", &format!("/api/v1/jobs/{id}"), &creds).await.ok_or("no answer")?;
                let j: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                if j["state"] == "succeeded" {
                    break j;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            let t = |k: &str| {
                chrono::DateTime::parse_from_rfc3339(job[k].as_str().unwrap_or("")).map_err(|e| format!("{k}: {e}"))
            };
            samples.push((t("started_at")? - t("created_at")?).num_milliseconds().max(0) as u32 * 1000);
            // Arrivals spread over a whole poll period: a fixed pause after each job would
            // land at the same point of the worker's sleep every time.
            tokio::time::sleep(Duration::from_millis(20 + (i as u64 * 397) % poll_ms.max(1))).await;
        }
        samples.sort_unstable();
        notes.push(format!(
            "enqueue -> start, idle worker, runner.poll_interval_ms = {poll_ms}: p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms (30 jobs, ms resolution); {idle}",
            load::quantile_ms(&samples, 0.5),
            load::quantile_ms(&samples, 0.9),
            load::quantile_ms(&samples, 1.0),
        ));
    }
    Ok(notes)
}

async fn long(o: &Options) -> Result<(Row, String)> {
    xen::long_jobs(o.roller.clone(), o.long_jobs).await
}

/// `duration` at 1,000 signed enqueue POSTs per second of noop jobs, one worker running
/// them; RSS of every process sampled along the way.
async fn soak(o: &Options, duration: Duration) -> Result<String> {
    let setup = Setup::new("[tasks]\nenabled = [\"noop\"]\n\n[queue]\nretention_secs = 300\n")?;
    let (redis, redis_port) = procs::start_redis(setup.path())?;
    let (api, url) = procs::start_roller(&o.roller, "api", setup.path(), redis_port)?;
    let (worker, _) = procs::start_roller(&o.roller, "worker", setup.path(), redis_port)?;
    let port = api_port(url)?;
    let sample = |at: f64| {
        format!(
            "t={at:>4.0}s api {:.1} MiB, worker {:.1} MiB, redis {:.1} MiB",
            rss_mib(api.pid()).0,
            rss_mib(worker.pid()).0,
            rss_mib(redis.pid()).0
        )
    };
    let mut samples = vec![sample(0.0)];
    // 10,000 machines in turn: a machine is asked again every 10 s, long after its job ran.
    let path = Arc::new(|n: u64| format!("/api/v1/workers/s{}/group/bench/jobs?task_name=noop", n % 10_000));
    let started = Instant::now();
    let (c0, s0) = (self_cpu_ms(), cpu_of(&[&api, &worker, &redis]));
    let run = tokio::spawn(load::run(Plan {
        port,
        creds: setup.creds(),
        conns: 16,
        stop: Stop::After(duration),
        rate: Some(1000.0),
        path,
        keep_bodies: false,
    }));
    let step = (duration / 10).max(Duration::from_secs(1));
    while !run.is_finished() {
        tokio::time::sleep(step.min(duration.saturating_sub(started.elapsed()) + Duration::from_millis(50))).await;
        samples.push(sample(started.elapsed().as_secs_f64()));
    }
    let out = run.await.map_err(|e| e.to_string())?;
    let (c1, s1) = (self_cpu_ms(), cpu_of(&[&api, &worker, &redis]));
    let n = out.requests().max(1) as f64;
    Ok(format!(
        "soak: {:.0} s at a target of 1,000 req/s: {} requests ({:.1} req/s), answers {:?}, {} without answer, errors {}; \
         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; server CPU {:.3} ms per request (api + worker + redis), load generator {:.3} ms\n\
         RSS over time:\n  {}",
        out.elapsed.as_secs_f64(),
        out.requests(),
        out.rate(),
        out.statuses,
        out.transport_errors,
        out.errors(),
        out.quantile_ms(0.5),
        out.quantile_ms(0.99),
        out.quantile_ms(1.0),
        (s1 - s0) / n,
        (c1 - c0) / n,
        samples.join("\n  ")
    ))
}
