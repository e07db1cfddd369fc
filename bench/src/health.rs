//! Fleet health (issue 15): `sweep`, one `roller serve` sweeping 10,000 simulated machines
//! in 50 Taskcluster pools, cycle after cycle; `medic`, the time from a machine turning
//! hung to its remediation job being queued.
//!
//! **The hosts.** Machine `m<i>` is its own loopback address (127.3.x.y) and its host a
//! listener on that address and the probe port, in this process: 10,000 listeners, one
//! per machine, so every probe is a real TCP connect to that machine's own socket. Every
//! class (one per pool) probes `tcp:<port>` and has an empty reboot chain. A host that
//! answers accepts and closes. A silent host (the hung ones of `sweep`) has a listener
//! whose accept queue is full (backlog 0, one connection never accepted): the kernel
//! drops the probe's SYN, so the connect waits out the probe timeout (2 s), as for a
//! hung machine on a network. A host that turns hung in `medic` has its listener closed
//! (the connect is refused at once).
//!
//! **The pools.** roller reads the Taskcluster stand-in (`roller_testkit::taskcluster`,
//! in this process) anonymously through `[health] taskcluster_root_url`: 50 pools
//! `bench/pool-NN` of 200 workers, every one scripted (running a task claimed 10 min
//! ago; idle, its last task ended 45 min ago; hung, its last task ended 2 h ago), 5 tasks
//! pending in each pool. The stand-in pages `listWorkers` by 1,000 and answers
//! `queue.statuses` in pages of 1,000, as Taskcluster does.
//!
//! roller logs each sweep's phases at debug level (`roller::health::sweep=debug`); the
//! bench reads them from its log, and CPU time and RSS from /proc when each line appears.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use roller_testkit::inventory::{Class, Inventory, Machine};
use roller_testkit::taskcluster::{FakeTaskcluster, Resolution};
use serde_json::Value;

use crate::procs::{self, Proc, cpu_ms, rss_mib};
use crate::{Result, Setup, api_port};

const PROVISIONER: &str = "bench";
const GROUP: &str = "lab";
const POOLS: usize = 50;
const PER_POOL: usize = 200;
const MACHINES: usize = POOLS * PER_POOL;
/// Per pool, the first this many run a task; the rest are idle, but for the last
/// `hung` of each pool, which are hung.
const BUSY: usize = 150;
/// Hung machines per pool in `sweep` (2 %; the medic's blast-radius limit is 10 %).
const HUNG: usize = 4;
const PENDING: u64 = 5;
/// The cadences of both scenarios: the minimum (5 s) for the sweep and Taskcluster, so
/// every sweep reads Taskcluster and cycles follow each other; the medic every second.
const PROBE_EVERY: u64 = 5;
const TASKCLUSTER_EVERY: u64 = 5;
const MEDIC_EVERY: u64 = 1;
/// Sweeps measured per `sweep` run (the first is reported, not counted: it inserts
/// every record and warms the process).
const CYCLES: usize = 5;
/// Machines turned hung, one after another, in `medic`.
const TRIALS: usize = 8;

fn id(i: usize) -> String {
    format!("m{i:05}")
}

fn address(i: usize) -> String {
    format!("127.3.{}.{}", i / 250, 1 + i % 250)
}

fn worker_type(p: usize) -> String {
    format!("pool-{p:02}")
}

fn pool(p: usize) -> String {
    format!("{PROVISIONER}/{}", worker_type(p))
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Busy,
    Idle,
    Hung,
}

fn kind(j: usize, hung: usize) -> Kind {
    if j < BUSY {
        Kind::Busy
    } else if j < PER_POOL - hung {
        Kind::Idle
    } else {
        Kind::Hung
    }
}

/// The machines' hosts: a listener each, on the machine's own loopback address.
struct Hosts {
    port: u16,
    answering: Mutex<HashMap<usize, tokio::task::AbortHandle>>,
    /// Silent hosts: the listener, and the one connection that fills its queue.
    silent: Mutex<Vec<(tokio::net::TcpListener, std::net::TcpStream)>>,
}

impl Hosts {
    fn new(port: u16) -> Hosts {
        Hosts { port, answering: Mutex::default(), silent: Mutex::default() }
    }

    fn addr(&self, i: usize) -> SocketAddr {
        SocketAddr::new(address(i).parse().expect("a loopback address"), self.port)
    }

    fn socket(&self, i: usize) -> Result<tokio::net::TcpSocket> {
        let addr = self.addr(i);
        let s = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
        // A closed host comes back on the same address at once (its probes' TIME_WAITs).
        s.set_reuseaddr(true).map_err(|e| e.to_string())?;
        s.bind(addr).map_err(|e| format!("binding {addr}: {e}"))?;
        Ok(s)
    }

    /// Machine `i` answers its probe.
    fn answer(&self, i: usize) -> Result<()> {
        let l = self.socket(i)?.listen(64).map_err(|e| e.to_string())?;
        let task = tokio::spawn(async move {
            loop {
                match l.accept().await {
                    Ok((c, _)) => drop(c),
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        });
        self.answering.lock().unwrap().insert(i, task.abort_handle());
        Ok(())
    }

    /// Machine `i` stops answering: its listener closes, a connect is refused.
    fn close(&self, i: usize) {
        if let Some(h) = self.answering.lock().unwrap().remove(&i) {
            h.abort();
        }
    }

    /// Machine `i` is there but silent: a connect waits until it times out.
    fn silence(&self, i: usize) -> Result<()> {
        let l = self.socket(i)?.listen(0).map_err(|e| e.to_string())?;
        let filler = std::net::TcpStream::connect(self.addr(i)).map_err(|e| e.to_string())?;
        self.silent.lock().unwrap().push((l, filler));
        Ok(())
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for h in self.answering.lock().unwrap().values() {
            h.abort();
        }
    }
}

/// The fleet: every host started, every worker scripted. Returns the hosts and, per
/// machine, the task it is running (busy machines only).
fn fleet(tc: &FakeTaskcluster, port: u16, hung: usize) -> Result<(Hosts, Vec<Option<String>>)> {
    let hosts = Hosts::new(port);
    let now = Utc::now();
    let ago = |m: i64| now - chrono::Duration::minutes(m);
    let mut running = vec![None; MACHINES];
    for p in 0..POOLS {
        let pool = pool(p);
        tc.set_pending(&pool, PENDING);
        for j in 0..PER_POOL {
            let i = p * PER_POOL + j;
            let w = id(i);
            match kind(j, hung) {
                Kind::Busy => {
                    hosts.answer(i)?;
                    tc.add_worker(&pool, GROUP, &w, ago(120));
                    running[i] = Some(tc.claim(&pool, GROUP, &w, ago(10)).task_id);
                }
                Kind::Idle => {
                    hosts.answer(i)?;
                    tc.add_worker(&pool, GROUP, &w, ago(120));
                    let r = tc.claim(&pool, GROUP, &w, ago(75));
                    tc.resolve(&r.task_id, Resolution::Completed, ago(45));
                }
                Kind::Hung => {
                    hosts.silence(i)?;
                    tc.add_worker(&pool, GROUP, &w, ago(240));
                    let r = tc.claim(&pool, GROUP, &w, ago(180));
                    tc.resolve(&r.task_id, Resolution::Completed, ago(120));
                }
            }
        }
    }
    Ok((hosts, running))
}

fn inventory(port: u16) -> Inventory {
    let mut inv = Inventory::new();
    for p in 0..POOLS {
        // An empty chain: a remediation of this class fails at once, its job queued all the same.
        inv = inv.class(Class::new(&worker_type(p)).reachability(&format!("tcp:{port}")).reboot(&[]));
    }
    for i in 0..MACHINES {
        let wt = worker_type(i / PER_POOL);
        inv = inv.machine(Machine::new(&id(i)).group(GROUP).class(&wt).address(&address(i)).pool(PROVISIONER, &wt));
    }
    inv
}

/// roller's config and inventory in a temp dir; `extra` after the `[health]` table.
fn setup(tc: &FakeTaskcluster, port: u16, concurrency: usize, extra: &str) -> Result<Setup> {
    let setup = Setup::new(&format!(
        "[health]\nenabled = true\nprobe_every_secs = {PROBE_EVERY}\ntaskcluster_every_secs = {TASKCLUSTER_EVERY}\n\
             power_every_secs = 600\nconcurrency = {concurrency}\ntaskcluster_root_url = \"{}\"\n\n{extra}",
        tc.root_url
    ))?;
    let dir = setup.path();
    inventory(port).write(dir);
    let config = std::fs::read_to_string(dir.join("roller.toml")).map_err(|e| e.to_string())?;
    let config = format!("inventory = \"{}\"\n", dir.join("inventory.toml").display()) + &config;
    std::fs::write(dir.join("roller.toml"), config).map_err(|e| e.to_string())?;
    Ok(setup)
}

/// roller's log, read as it grows: the sweep's debug lines.
struct Log {
    path: PathBuf,
    offset: u64,
    partial: String,
}

impl Log {
    fn new(path: PathBuf) -> Log {
        Log { path, offset: 0, partial: String::new() }
    }

    /// The `health sweep done` lines written since the last call.
    fn sweeps(&mut self) -> Vec<Value> {
        let Ok(mut f) = std::fs::File::open(&self.path) else { return Vec::new() };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut text = String::new();
        let n = f.read_to_string(&mut text).unwrap_or(0);
        self.offset += n as u64;
        self.partial.push_str(&text);
        let Some(end) = self.partial.rfind('\n') else { return Vec::new() };
        let complete: String = self.partial.drain(..=end).collect();
        complete
            .lines()
            .filter(|l| l.contains("health sweep done"))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["message"] == "health sweep done")
            .collect()
    }

    /// Wait for the next sweep line (at most `limit`).
    async fn next_sweep(&mut self, limit: Duration) -> Result<Value> {
        let until = Instant::now() + limit;
        loop {
            if let Some(v) = self.sweeps().into_iter().last() {
                return Ok(v);
            }
            if Instant::now() > until {
                bail!("no health sweep finished within {} s (log: {})", limit.as_secs(), self.path.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Where roller keeps its records, and how to count what a sweep wrote there.
enum Store {
    Sqlite(PathBuf),
    Redis(u16),
}

impl Store {
    fn name(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "SQLite",
            Store::Redis(_) => "Redis",
        }
    }

    /// SQLite: the observation rows the latest write stamped. Redis: HSET calls so far,
    /// and every command's calls so far (INFO commandstats).
    fn count(&self) -> (u64, BTreeMap<String, u64>) {
        match self {
            Store::Sqlite(db) => {
                let out = std::process::Command::new("sqlite3")
                    .arg("-readonly")
                    .arg(db)
                    .arg(
                        "SELECT count(*) FROM records WHERE kind = 'observations' AND updated_at = \
                         (SELECT max(updated_at) FROM records WHERE kind = 'observations')",
                    )
                    .output();
                let n = out.ok().and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok()).unwrap_or(0);
                (n, BTreeMap::new())
            }
            Store::Redis(port) => {
                let stats = roller_testkit::redis::cli(*port, &["INFO", "commandstats"]);
                let all: BTreeMap<String, u64> = stats
                    .lines()
                    .filter_map(|l| l.strip_prefix("cmdstat_"))
                    .filter_map(|l| {
                        let (name, rest) = l.split_once(':')?;
                        let calls = rest.split("calls=").nth(1)?.split(',').next()?.parse().ok()?;
                        Some((name.to_string(), calls))
                    })
                    .filter(|(name, _)| name != "info")
                    .collect();
                (all.get("hset").copied().unwrap_or(0), all)
            }
        }
    }
}

struct Cycle {
    seconds: f64,
    phases: [u64; 6],
    cpu_ms: f64,
    store_cpu_ms: f64,
    rss: f64,
    tc_calls: BTreeMap<&'static str, u64>,
    /// SQLite: rows stamped by the write; Redis: HSET calls.
    written: u64,
    /// Redis commands in the cycle, by command.
    commands: BTreeMap<String, u64>,
}

const PHASES: [&str; 6] = ["read_ms", "probe_ms", "power_ms", "taskcluster_ms", "write_ms", "gauges_ms"];

fn diff(a: &BTreeMap<&'static str, u64>, b: &BTreeMap<&'static str, u64>) -> BTreeMap<&'static str, u64> {
    b.iter().map(|(k, v)| (*k, v - a.get(k).copied().unwrap_or(0))).filter(|(_, v)| *v > 0).collect()
}

/// median (min–max) of `xs`, with `digits` decimals.
fn spread(xs: &[f64], digits: usize) -> String {
    if xs.is_empty() {
        return "-".into();
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let median = if v.len() % 2 == 1 { v[v.len() / 2] } else { (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0 };
    format!("{median:.digits$} ({:.digits$}–{:.digits$})", v[0], v[v.len() - 1])
}

/// `sweep`: the 10,000-machine sweep, on SQLite (`roller serve` alone) then on Redis,
/// `CYCLES` sweeps each.
pub async fn sweep(roller: &Path, concurrency: usize) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    for redis in [false, true] {
        notes.push(sweep_on(roller, concurrency, redis).await?);
    }
    Ok(notes)
}

async fn sweep_on(roller: &Path, concurrency: usize, redis: bool) -> Result<String> {
    let tc = FakeTaskcluster::start(&[]).await;
    let port = procs::free_port();
    let started = Instant::now();
    let (hosts, _) = fleet(&tc, port, HUNG)?;
    eprintln!(
        "roller-bench: {MACHINES} hosts ({} silent) and workers ready in {:.1} s",
        POOLS * HUNG,
        started.elapsed().as_secs_f64()
    );
    // The medic does not run here; its settings matter only to the plan timed at the end
    // (freshness wide enough that the plan gets past it to every candidate).
    let s = setup(&tc, port, concurrency, "[medic]\nfresh_within_secs = 600\nworker_fresh_within_secs = 600\n")?;
    let dir = s.path().to_path_buf();
    let (redis_proc, store) = if redis {
        let (p, rport) = procs::start_redis(&dir)?;
        (Some(p), Store::Redis(rport))
    } else {
        (None, Store::Sqlite(dir.join("data/roller.sqlite3")))
    };
    let redis_port = match store {
        Store::Redis(p) => Some(p),
        Store::Sqlite(_) => None,
    };
    let env = [("ROLLER_LOG", "info,roller::health::sweep=debug")];
    let t0 = Instant::now();
    let (serve, url) = procs::start_roller_with(roller, "serve", &dir, redis_port, &env)?;
    let api = api_port(url)?;
    eprintln!(
        "roller-bench: roller serve ({}) up in {:.1} s, RSS {:.1} MiB; {CYCLES} sweeps",
        store.name(),
        t0.elapsed().as_secs_f64(),
        rss_mib(serve.pid()).0
    );
    let mut log = Log::new(dir.join("serve.log"));
    let store_cpu = |p: &Option<Proc>| p.as_ref().map(|p| cpu_ms(p.pid())).unwrap_or(0.0);
    let (mut cpu0, mut scpu0, mut calls0, mut count0) =
        (cpu_ms(serve.pid()), store_cpu(&redis_proc), tc.calls(), store.count());
    let mut cycles = Vec::new();
    for n in 0..CYCLES {
        let line = log.next_sweep(Duration::from_secs(180)).await?;
        let (cpu, scpu, calls, count) = (cpu_ms(serve.pid()), store_cpu(&redis_proc), tc.calls(), store.count());
        let c = Cycle {
            seconds: line["seconds"].as_f64().unwrap_or(f64::NAN),
            phases: PHASES.map(|p| line[p].as_u64().unwrap_or(0)),
            cpu_ms: cpu - cpu0,
            store_cpu_ms: scpu - scpu0,
            rss: rss_mib(serve.pid()).0,
            tc_calls: diff(&calls0, &calls),
            written: match store {
                Store::Sqlite(_) => count.0,
                Store::Redis(_) => count.0 - count0.0,
            },
            commands: count.1.iter().map(|(k, v)| (k.clone(), v - count0.1.get(k).copied().unwrap_or(0))).collect(),
        };
        eprintln!(
            "roller-bench: sweep {}: {:.2} s, phases {:?} ms, CPU {:.0} ms, RSS {:.1} MiB, Taskcluster {:?}, written {}",
            n + 1,
            c.seconds,
            c.phases,
            c.cpu_ms,
            c.rss,
            c.tc_calls,
            c.written
        );
        cycles.push(c);
        (cpu0, scpu0, calls0, count0) = (cpu, scpu, calls, count);
    }
    let (_, hwm) = rss_mib(serve.pid());
    // `roller serve` serves /metrics on its API port.
    let m = crate::metrics(api)?;
    let states: Vec<String> = ["hung", "busy", "idle", "ok", "down", "unknown"]
        .iter()
        .map(|s| format!("{s} {:.0}", crate::metric(&m, "roller_health_machines", &[&format!("state=\"{s}\"")])))
        .collect();
    let hist = (
        crate::metric(&m, "roller_health_sweep_seconds_sum", &[]),
        crate::metric(&m, "roller_health_sweep_seconds_count", &[]),
    );

    // The medic's reading of the same fleet: one plan (read, classify, the history of
    // each hung machine, the gates), as `roller medic plan` asks for it.
    let plan = plans(api, &s.creds(), &serve).await?;
    drop(serve);
    drop(redis_proc);
    drop(hosts);

    let steady = &cycles[1..];
    let col = |f: &dyn Fn(&Cycle) -> f64| -> Vec<f64> { steady.iter().map(f).collect() };
    let phase = |k: usize| spread(&col(&|c| c.phases[k] as f64), 0);
    let calls: Vec<String> = {
        let mut keys: Vec<&str> = steady.iter().flat_map(|c| c.tc_calls.keys().copied()).collect();
        keys.sort_unstable();
        keys.dedup();
        keys.iter()
            .map(|k| format!("{k} {}", spread(&col(&|c| c.tc_calls.get(k).copied().unwrap_or(0) as f64), 0)))
            .collect()
    };
    let written = match store {
        Store::Sqlite(_) => format!(
            "observation rows stamped by the sweep's write {} (one transaction)",
            spread(&col(&|c| c.written as f64), 0)
        ),
        Store::Redis(_) => {
            let mut names: Vec<&String> = steady.iter().flat_map(|c| c.commands.keys()).collect();
            names.sort_unstable();
            names.dedup();
            let by: Vec<String> = names
                .iter()
                .map(|n| format!("{n} {}", spread(&col(&|c| c.commands.get(*n).copied().unwrap_or(0) as f64), 0)))
                .collect();
            format!(
                "HSET calls {} (of up to 1,000 fields each); Redis commands per cycle (the idle runner's too): {}; \
                 Redis CPU per cycle {} ms",
                spread(&col(&|c| c.written as f64), 0),
                by.join(", "),
                spread(&col(&|c| c.store_cpu_ms), 0)
            )
        }
    };
    let first = &cycles[0];
    Ok(format!(
        "sweep ({}, `roller serve`): {MACHINES} machines in {POOLS} pools ({} silent: hung), concurrency {concurrency}, \
         probe and Taskcluster every {PROBE_EVERY} s; sweeps 2–{CYCLES}, median (min–max):\n  \
         wall {} s (the sweep's histogram: {:.0} sweeps, {:.2} s in all); phases ms: read {}, probes {}, power {}, \
         Taskcluster {}, write {}, gauges {}\n  \
         roller CPU per cycle {} ms; RSS after each sweep {} MiB, peak (VmHWM) {hwm:.1} MiB\n  \
         Taskcluster calls per sweep: {}\n  {written}\n  \
         first sweep: {:.2} s, CPU {:.0} ms (start-up included), written {}\n  \
         states (gauges): {}\n  \
         medic plan (POST /api/v1/medic/plan): {plan}",
        store.name(),
        POOLS * HUNG,
        spread(&col(&|c| c.seconds), 2),
        hist.1,
        hist.0,
        phase(0),
        phase(1),
        phase(2),
        phase(3),
        phase(4),
        phase(5),
        spread(&col(&|c| c.cpu_ms), 0),
        spread(&col(&|c| c.rss), 1),
        calls.join(", "),
        first.seconds,
        first.cpu_ms,
        first.written,
        states.join(", "),
    ))
}

/// Three medic plans (`POST /api/v1/medic/plan`, what `roller medic plan` asks for: one
/// cycle's reading and gates, no writes): their time, roller's CPU, what they decided.
async fn plans(api: u16, creds: &hawk::Credentials, serve: &Proc) -> Result<String> {
    let (mut wall, mut cpu, mut summary) = (Vec::new(), Vec::new(), String::new());
    for _ in 0..3 {
        let c0 = cpu_ms(serve.pid());
        let t = Instant::now();
        let (status, body) =
            crate::load::once(api, "POST", "/api/v1/medic/plan", creds).await.ok_or("no answer to the plan")?;
        wall.push(t.elapsed().as_secs_f64() * 1000.0);
        cpu.push(cpu_ms(serve.pid()) - c0);
        if status != 200 {
            bail!("medic plan answered {status}: {}", String::from_utf8_lossy(&body));
        }
        let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let decisions = v["decisions"].as_array().cloned().unwrap_or_default();
        let would = decisions.iter().filter(|d| d["verdict"] == "would_enqueue").count();
        summary = format!("{} candidates, {would} would be queued", v["candidates"]);
    }
    Ok(format!("{} ms, roller CPU {} ms; {summary}", spread(&wall, 0), spread(&cpu, 0)))
}

fn time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|d| d.with_timezone(&Utc))
}

fn secs(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

/// `medic`: the same fleet with nothing hung, the medic acting (`dry_run = false`);
/// `TRIALS` machines in turn stop answering and show Taskcluster's hung pattern at once
/// (their running task resolved `exception`/`claim-expired`), each at another point of
/// the sweep's cycle; the time from that moment to their job's `created_at`.
pub async fn medic(roller: &Path, concurrency: usize) -> Result<String> {
    let tc = FakeTaskcluster::start(&[]).await;
    let port = procs::free_port();
    let (hosts, running) = fleet(&tc, port, 0)?;
    // Freshness wider than the default two sweeps: with 5 s cadences a sweep's own
    // length is a large part of a probe's age, and the gate is not what is measured.
    let s = setup(
        &tc,
        port,
        concurrency,
        &format!(
            "[medic]\nenabled = true\ndry_run = false\nevery_secs = {MEDIC_EVERY}\nfresh_within_secs = 60\n\
             worker_fresh_within_secs = 60\n"
        ),
    )?;
    let dir = s.path().to_path_buf();
    let env = [("ROLLER_LOG", "info,roller::health::sweep=debug")];
    let (serve, url) = procs::start_roller_with(roller, "serve", &dir, None, &env)?;
    let api = api_port(url)?;
    let creds = s.creds();
    let mut log = Log::new(dir.join("serve.log"));
    // Two sweeps first: every machine observed, the medic has seen a fleet with none hung.
    let mut sweep_secs = Vec::new();
    for _ in 0..2 {
        let l = log.next_sweep(Duration::from_secs(120)).await?;
        sweep_secs.push(l["seconds"].as_f64().unwrap_or(0.0));
    }
    let get = |path: String| {
        let creds = creds.clone();
        async move {
            let (status, body) = crate::load::once(api, "GET", &path, &creds).await.ok_or("no answer")?;
            if status != 200 {
                bail!("GET {path}: {status} {}", String::from_utf8_lossy(&body));
            }
            serde_json::from_slice::<Value>(&body).map_err(|e| e.to_string())
        }
    };
    let plan = plans(api, &creds, &serve).await?;
    let (c0, t_start) = (cpu_ms(serve.pid()), Instant::now());
    let mut rows = Vec::new();
    let mut latencies = Vec::new();
    for k in 0..TRIALS {
        // Each trial at another point of the cycle (sweep + its 5 s pause).
        let period = PROBE_EVERY as f64 + sweep_secs.iter().copied().fold(0.0, f64::max);
        tokio::time::sleep(Duration::from_secs_f64(((k as f64 * 0.618_034) % 1.0) * period)).await;
        let p = (k * 7) % POOLS;
        let i = p * PER_POOL + k;
        let w = id(i);
        let task = running[i].clone().ok_or("the victim runs no task")?;
        // The moment it turns hung: silent, and its claim expired.
        let t0 = Utc::now();
        hosts.close(i);
        tc.resolve(&task, Resolution::Exception("claim-expired"), t0);
        let limit = Instant::now() + Duration::from_secs(120);
        let job = loop {
            let jobs = get(format!("/api/v1/workers/{w}/jobs")).await?;
            if let Some(j) = jobs["jobs"].as_array().and_then(|a| a.first()) {
                break j.clone();
            }
            if Instant::now() > limit {
                bail!("no job for {w} within 120 s of it turning hung");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let health = get(format!("/api/v1/machines/{w}/health")).await?;
        for l in log.sweeps() {
            sweep_secs.push(l["seconds"].as_f64().unwrap_or(0.0));
        }
        let created = time(&job["created_at"]).ok_or("a job without created_at")?;
        let probe_at = time(&health["observations"]["probe"]["at"]);
        let worker_at = time(&health["observations"]["worker"]["at"]);
        let latency = secs(created - t0);
        latencies.push(latency);
        rows.push(format!(
            "| {w} | {} | {} | {} | {latency:.2} | {} |",
            probe_at.map(|t| format!("{:.2}", secs(t - t0))).unwrap_or("-".into()),
            worker_at.map(|t| format!("{:.2}", secs(t - t0))).unwrap_or("-".into()),
            probe_at.zip(worker_at).map(|(a, b)| format!("{:.2}", secs(created - a.max(b)))).unwrap_or("-".into()),
            job["requester"].as_str().unwrap_or("?"),
        ));
        eprintln!("roller-bench: {}", rows.last().unwrap());
        // Back: answering, running a new task.
        hosts.answer(i)?;
        tc.claim(&pool(p), GROUP, &w, Utc::now());
    }
    let cpu_per_s = (cpu_ms(serve.pid()) - c0) / t_start.elapsed().as_secs_f64();
    let (_, hwm) = rss_mib(serve.pid());
    drop(serve);
    drop(hosts);
    Ok(format!(
        "medic: {MACHINES} machines, none hung but the one turned hung (listener closed, its running task resolved \
         exception/claim-expired at t0); probe and Taskcluster every {PROBE_EVERY} s, medic every {MEDIC_EVERY} s, \
         concurrency {concurrency}, SQLite (`roller serve`), dry_run = false, empty reboot chain\n  \
         t0 → job created_at: {} s over {TRIALS} machines; sweeps meanwhile {} s; roller CPU {cpu_per_s:.0} ms/s, \
         peak RSS {hwm:.1} MiB; medic plan with none hung: {plan}\n\
         | machine | probe saw it silent (s after t0) | Taskcluster read (s after t0) | later of the two → job created_at (s) | \
         t0 → job created_at (s) | requester |\n|---|---|---|---|---|---|\n{}",
        spread(&latencies, 2),
        spread(&sweep_secs, 2),
        rows.join("\n")
    ))
}
