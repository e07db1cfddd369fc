//! `replay`: what the shared replay check (issue 16.1) costs a signed enqueue. The same
//! load against the same processes twice over, once with the check as deployed (every
//! accepted header claimed in the queue backend: Redis `SET NX PXAT`, SQLite a row) and
//! once with it in the process only (`ROLLER_BENCH_REPLAY=in-process`, which only the
//! `bench` build of roller reads), alternating, on Redis (`roller api`) and on SQLite
//! (`roller serve`), each phase on fresh processes and a fresh store. The cost is one
//! minus the ratio of the rates, in one run.

use std::time::Duration;

use crate::load::{self, Plan, Stop};
use crate::procs::{self, cpu_ms, rss_mib};
use crate::{Options, Result, Setup, api_port};

/// Connections, as the enqueue scenario's higher point.
const CONNS: usize = 64;
/// Phases per variant and backend, alternating, so drift of the machine hits both alike.
const ROUNDS: usize = 3;

#[derive(Clone, Copy, PartialEq)]
enum Check {
    Shared,
    InProcess,
}

impl Check {
    fn env(self) -> &'static str {
        match self {
            Check::Shared => "shared",
            Check::InProcess => "in-process",
        }
    }
}

struct Phase {
    rate: f64,
    /// Server CPU (roller, plus redis-server on Redis) per request, ms.
    cpu_ms: f64,
    /// roller's share of it.
    roller_cpu_ms: f64,
    p99_ms: f64,
    errors: u64,
    /// What the store holds afterwards: Redis keys and memory, or the SQLite file's size.
    store: String,
}

pub async fn replay(o: &Options, duration: Duration) -> Result<String> {
    let mut lines = vec![format!(
        "replay check's cost: signed enqueue POSTs, {CONNS} connections, {:.0} s a phase, {ROUNDS} phases per \
         variant alternating, fresh processes and store each",
        duration.as_secs_f64()
    )];
    lines.push(String::new());
    lines.push("| queue | replay check | req/s per phase | mean req/s | server CPU ms/req | p99 ms | errors | store after a phase |".into());
    lines.push("|---|---|---|---|---|---|---|---|".into());
    for redis in [true, false] {
        let mut by_check: Vec<(Check, Vec<Phase>)> = vec![(Check::Shared, vec![]), (Check::InProcess, vec![])];
        for round in 0..ROUNDS {
            // Which goes first alternates too.
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let check = by_check[i].0;
                eprintln!(
                    "roller-bench: replay: {} check, {}, round {}",
                    check.env(),
                    if redis { "Redis" } else { "SQLite" },
                    round + 1
                );
                let phase = run_phase(o, redis, check, duration).await?;
                by_check[i].1.push(phase);
            }
        }
        let queue = if redis { "Redis (`roller api`)" } else { "SQLite (`roller serve`)" };
        let mut means = Vec::new();
        for (check, phases) in &by_check {
            let n = phases.len() as f64;
            let mean = phases.iter().map(|p| p.rate).sum::<f64>() / n;
            means.push(mean);
            let rates = phases.iter().map(|p| format!("{:.0}", p.rate)).collect::<Vec<_>>().join(" / ");
            let cpu = phases.iter().map(|p| p.cpu_ms).sum::<f64>() / n;
            let roller_cpu = phases.iter().map(|p| p.roller_cpu_ms).sum::<f64>() / n;
            let split =
                if redis { format!(" (roller {roller_cpu:.3}, redis {:.3})", cpu - roller_cpu) } else { String::new() };
            let p99 = phases.iter().map(|p| p.p99_ms).fold(0.0, f64::max);
            let errors: u64 = phases.iter().map(|p| p.errors).sum();
            let store = phases.last().map(|p| p.store.clone()).unwrap_or_default();
            lines.push(format!(
                "| {queue} | {} | {rates} | **{mean:.0}** | {cpu:.3}{split} | {p99:.2} (worst) | {errors} | {store} |",
                check.env()
            ));
        }
        lines.push(format!(
            "|  | **cost** | | **{:.1} %** of the in-process rate | | | | |",
            100.0 * (1.0 - means[0] / means[1])
        ));
    }
    Ok(lines.join("\n"))
}

async fn run_phase(o: &Options, redis: bool, check: Check, duration: Duration) -> Result<Phase> {
    // noop: `roller serve` runs the jobs it queues, and noop is the cheapest a runner can be.
    let setup = Setup::new("[tasks]\nenabled = [\"noop\"]\n")?;
    let env = [("ROLLER_BENCH_REPLAY", check.env())];
    let (redis_proc, redis_port) = match redis {
        true => {
            let (p, port) = procs::start_redis(setup.path())?;
            (Some(p), Some(port))
        }
        false => (None, None),
    };
    let sub = if redis { "api" } else { "serve" };
    let (roller, url) = procs::start_roller_with(&o.roller, sub, setup.path(), redis_port, &env)?;
    let port = api_port(url)?;
    let server_cpu = || cpu_ms(roller.pid()) + redis_proc.as_ref().map_or(0.0, |r| cpu_ms(r.pid()));
    let path = std::sync::Arc::new(|n: u64| format!("/api/v1/workers/r{n}/group/bench/jobs?task_name=noop"));
    let (s0, r0) = (server_cpu(), cpu_ms(roller.pid()));
    let out = load::run(Plan {
        port,
        creds: setup.creds(),
        conns: CONNS,
        stop: Stop::After(duration),
        rate: None,
        path,
        keep_bodies: false,
    })
    .await;
    let (s1, r1) = (server_cpu(), cpu_ms(roller.pid()));
    if out.errors() > 0 {
        eprintln!("roller-bench: replay: answers {:?}, {} without answer", out.statuses, out.transport_errors);
    }
    let store = match redis_port {
        Some(port) => {
            let mut r = procs::Redis::connect(port).map_err(|e| format!("connecting to redis: {e}"))?;
            let keys = r.int(&["DBSIZE"])?;
            let rss = redis_proc.as_ref().map_or(0.0, |p| rss_mib(p.pid()).0);
            format!("{keys} keys, redis RSS {rss:.0} MiB")
        }
        None => {
            let db = setup.path().join("data").join("roller.sqlite3");
            let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            let wal = db.with_extension("sqlite3-wal");
            format!("file {:.1} MiB + WAL {:.1} MiB", size(&db) as f64 / 1048576.0, size(&wal) as f64 / 1048576.0)
        }
    };
    let n = out.requests().max(1) as f64;
    Ok(Phase {
        rate: out.rate(),
        cpu_ms: (s1 - s0) / n,
        roller_cpu_ms: (r1 - r0) / n,
        p99_ms: out.quantile_ms(0.99),
        errors: out.errors(),
        store,
    })
}
