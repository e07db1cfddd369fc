//! `replay`: what the shared replay check (issue 16.1) costs a signed enqueue. The same
//! load against the same processes, once with the check as deployed (every accepted
//! header claimed in the queue backend; an enqueue carries the claim in its own Redis
//! script or SQLite transaction) and once with it in the process only
//! (`ROLLER_BENCH_REPLAY=in-process`, which only the `bench` build of roller reads),
//! alternating `--rounds` times, on Redis (`roller api`) and on SQLite (`roller serve`),
//! each phase on fresh processes and a fresh store. The cost is one minus the ratio of the
//! rates, in one run; the CPU per request says the same without the scheduler's noise.

use std::time::Duration;

use crate::load::{self, Plan, Stop};
use crate::procs::{self, cpu_ms, rss_mib};
use crate::{Options, Result, Setup, api_port, self_cpu_ms};

/// Connections, as the enqueue scenario's higher point.
const CONNS: usize = 64;

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
    /// roller's CPU per request, ms.
    roller_ms: f64,
    /// redis-server's (0 on SQLite).
    redis_ms: f64,
    /// The load generator's (this process).
    client_ms: f64,
    p99_ms: f64,
    errors: u64,
    /// What the store holds afterwards: Redis keys and memory, or the SQLite file's size.
    store: String,
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (n, sum) = v.fold((0usize, 0.0), |(n, s), x| (n + 1, s + x));
    sum / n.max(1) as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub async fn replay(o: &Options, duration: Duration) -> Result<String> {
    let rounds = o.rounds;
    let mut lines = vec![format!(
        "replay check's cost: signed enqueue POSTs (noop jobs, a new machine each), {CONNS} connections, {:.0} s a \
         phase, {rounds} phases per variant alternating, fresh processes and store each",
        duration.as_secs_f64()
    )];
    lines.push(String::new());
    lines.push(
        "| queue | replay check | req/s per phase | median | mean | CPU ms/req: roller, redis, load generator | p99 ms (worst) | errors | store after the last phase |"
            .into(),
    );
    lines.push("|---|---|---|---|---|---|---|---|---|".into());
    for redis in [true, false] {
        let mut phases: [Vec<Phase>; 2] = [Vec::new(), Vec::new()];
        let checks = [Check::Shared, Check::InProcess];
        for round in 0..rounds {
            // Which goes first alternates too.
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let queue = if redis { "Redis" } else { "SQLite" };
                eprintln!("roller-bench: replay: {} check, {queue}, round {}", checks[i].env(), round + 1);
                phases[i].push(run_phase(o, redis, checks[i], duration).await?);
            }
        }
        let queue = if redis { "Redis (`roller api`)" } else { "SQLite (`roller serve`)" };
        let mut medians = [0.0; 2];
        let mut means = [0.0; 2];
        let mut cpu = [0.0; 2];
        for (i, ps) in phases.iter().enumerate() {
            medians[i] = median(ps.iter().map(|p| p.rate).collect());
            means[i] = mean(ps.iter().map(|p| p.rate));
            let (r, d, c) = (
                mean(ps.iter().map(|p| p.roller_ms)),
                mean(ps.iter().map(|p| p.redis_ms)),
                mean(ps.iter().map(|p| p.client_ms)),
            );
            cpu[i] = r + d + c;
            let rates = ps.iter().map(|p| format!("{:.0}", p.rate)).collect::<Vec<_>>().join(" / ");
            let p99 = ps.iter().map(|p| p.p99_ms).fold(0.0, f64::max);
            let errors: u64 = ps.iter().map(|p| p.errors).sum();
            let store = ps.last().map(|p| p.store.clone()).unwrap_or_default();
            lines.push(format!(
                "| {queue} | {} | {rates} | **{:.0}** | {:.0} | {r:.3}, {d:.3}, {c:.3} | {p99:.1} | {errors} | {store} |",
                checks[i].env(),
                medians[i],
                means[i],
            ));
        }
        lines.push(format!(
            "|  | **cost** | | **{:.1} %** | {:.1} % | {:+.1} % CPU per request | | | |",
            100.0 * (1.0 - medians[0] / medians[1]),
            100.0 * (1.0 - means[0] / means[1]),
            100.0 * (cpu[0] / cpu[1] - 1.0),
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
    let redis_cpu = || redis_proc.as_ref().map_or(0.0, |r| cpu_ms(r.pid()));
    let path = std::sync::Arc::new(|n: u64| format!("/api/v1/workers/r{n}/group/bench/jobs?task_name=noop"));
    let (r0, d0, c0) = (cpu_ms(roller.pid()), redis_cpu(), self_cpu_ms());
    let plan = Plan {
        port,
        creds: setup.creds(),
        conns: CONNS,
        stop: Stop::After(duration),
        rate: None,
        path,
        keep_bodies: false,
    };
    let out = load::run(plan).await;
    let (r1, d1, c1) = (cpu_ms(roller.pid()), redis_cpu(), self_cpu_ms());
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
            let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0;
            format!("file {:.1} MiB + WAL {:.1} MiB", size(&db), size(&db.with_extension("sqlite3-wal")))
        }
    };
    let n = out.requests().max(1) as f64;
    Ok(Phase {
        rate: out.rate(),
        roller_ms: (r1 - r0) / n,
        redis_ms: (d1 - d0) / n,
        client_ms: (c1 - c0) / n,
        p99_ms: out.quantile_ms(0.99),
        errors: out.errors(),
        store,
    })
}
