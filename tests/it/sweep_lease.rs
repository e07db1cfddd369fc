//! The leases that let one process at a time run the health sweep and the medic, across
//! real `roller worker` processes on one real `redis-server`: exactly one holder sweeps
//! (each worker counts its own sweeps on its `/metrics`, and the lease in Redis names
//! it), a clean stop hands the lease over at once, a SIGKILLed holder is replaced once
//! its lease runs out, not sooner, after which observations are fresh again, and a sweep
//! longer than its lease keeps it. (That a lease has one holder at a time is the
//! backends' conformance suite: `a_lease_has_one_holder_until_it_expires_or_is_released`.)

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::Method;
use roller_testkit::inventory::{Class, Inventory, Machine};
use serde_json::Value;

use crate::distributed::{env, write_config};
use crate::helpers::*;
use crate::procs::*;

const MINUTE: Duration = Duration::from_secs(60);
/// `probe_every_secs` (its minimum); the sweep's lease lasts three of them.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// `[medic] every_secs`; its lease lasts three of them.
const MEDIC_EVERY: Duration = Duration::from_secs(2);
/// Between what the test reads and what a process did: scrapes, Redis reads, a busy box.
const SLACK: Duration = Duration::from_secs(1);

const SWEEPS: &str = "roller_health_sweep_seconds_count";
const MEDIC_CYCLES: &str = "roller_medic_cycles_total{mode=\"dry_run\"}";

const HEALTH: &str = "[health]\nenabled = true\nprobe_every_secs = 5\n";
const MACHINES: [&str; 3] = ["lease-1", "lease-2", "lease-3"];

/// One Redis, one directory and config, and an inventory of loopback machines whose
/// probes are TCP listeners held here (so every probe answers).
struct Setup {
    /// Runs as long as the setup lives.
    _redis: RedisServer,
    dir: tempfile::TempDir,
    cfg: String,
    url: String,
    data: String,
    inventory: String,
    _listeners: Vec<TcpListener>,
    /// The one connection each hanging listener's accept queue holds.
    _queued: Vec<TcpStream>,
}

/// A `roller worker` and its own metrics endpoint.
struct Worker {
    roller: Roller,
    metrics: String,
}

impl Worker {
    fn pid(&self) -> u32 {
        self.roller.pid()
    }
}

impl Setup {
    fn new(extra: &str) -> Setup {
        Self::with_hanging(extra, 0)
    }

    /// Plus `hanging` machines whose probe neither answers nor is refused: their port's
    /// accept queue is full, so a connect waits out the probe's whole timeout (2 s).
    /// Needs a Tokio runtime.
    fn with_hanging(extra: &str, hanging: usize) -> Setup {
        let redis = RedisServer::start();
        let dir = tempfile::tempdir().unwrap();
        let cfg = write_config(dir.path(), extra);
        let mut inv = Inventory::new();
        let (mut listeners, mut queued) = (Vec::new(), Vec::new());
        for m in MACHINES {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let probe = format!("tcp:{}", l.local_addr().unwrap().port());
            inv = inv
                .class(Class::new(m).reachability(&probe))
                .machine(Machine::new(m).group("lab").class(m).address("127.0.0.1"));
            listeners.push(l);
        }
        for n in 0..hanging {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
            // Linux queues backlog + 1 connections and drops further SYNs.
            let l = socket.listen(0).unwrap().into_std().unwrap();
            let addr = l.local_addr().unwrap();
            queued.push(TcpStream::connect(addr).unwrap());
            let m = format!("hanging-{n}");
            inv = inv
                .class(Class::new(&m).reachability(&format!("tcp:{}", addr.port())))
                .machine(Machine::new(&m).group("lab").class(&m).address("127.0.0.1"));
            listeners.push(l);
        }
        let inventory = inv.write(dir.path());
        let (url, data) = (redis.url(), dir.path().display().to_string());
        Setup { _redis: redis, dir, cfg, url, data, inventory, _listeners: listeners, _queued: queued }
    }

    fn env(&self) -> Vec<(&str, &str)> {
        let mut e = env(&self.cfg, &self.url, &self.data);
        e.push(("ROLLER_INVENTORY", &self.inventory));
        e
    }

    fn worker(&self, log: &str) -> Worker {
        let mut e = self.env();
        e.push(("ROLLER_METRICS_BIND", "127.0.0.1:0"));
        let roller = start_roller("worker", self.dir.path(), &e, log, false);
        let metrics = roller
            .banner
            .iter()
            .find_map(|l| l.trim().strip_prefix("metrics:").map(|u| u.trim().to_string()))
            .unwrap_or_else(|| panic!("a metrics line in {:?}", roller.banner));
        Worker { roller, metrics }
    }

    fn api(&self) -> Roller {
        start_roller("api", self.dir.path(), &self.env(), "api.log", false)
    }

    /// The pid of the process holding the lease `name` in Redis, and how long it has left.
    fn lease(&self, name: &str) -> Option<(u32, Duration)> {
        let key = format!("{{roller}}:lease:{name}");
        let mut c = redis::Client::open(self.url.as_str()).unwrap().get_connection().unwrap();
        let (holder, ms): (Option<String>, i64) =
            redis::pipe().atomic().cmd("GET").arg(&key).cmd("PTTL").arg(&key).query(&mut c).unwrap();
        let holder = holder.filter(|_| ms >= 0)?;
        // host:pid:random, unique even where hosts share a name and pids (containers).
        let parts: Vec<&str> = holder.split(':').collect();
        let pid = match parts[..] {
            [_, pid, random] if !random.is_empty() => pid.parse().ok(),
            _ => None,
        };
        Some((pid.unwrap_or_else(|| panic!("host:pid:random, not {holder:?}")), Duration::from_millis(ms as u64)))
    }
}

/// `series`'s value on a worker's `/metrics` (0 before the first sample).
async fn count(worker: &Worker, series: &str) -> u64 {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let text = http.get(&worker.metrics).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Every worker's count of `series`, failing at once if more than one has ever counted:
/// two processes did the leased work.
async fn counts(workers: &[&Worker], series: &str) -> Vec<u64> {
    let mut c = Vec::new();
    for w in workers {
        c.push(count(w, series).await);
    }
    let pids: Vec<u32> = workers.iter().map(|w| w.pid()).collect();
    assert!(c.iter().filter(|n| **n > 0).count() <= 1, "two processes did it: {series} {c:?} for pids {pids:?}");
    c
}

/// Wait until one of `workers` has counted `at_least` of `series` while the others count
/// none; its index and count.
async fn sole(workers: &[&Worker], series: &str, at_least: u64) -> (usize, u64) {
    wait_for(MINUTE, || async {
        let c = counts(workers, series).await;
        c.iter().position(|n| *n >= at_least).map(|i| (i, c[i]))
    })
    .await
    .unwrap_or_else(|| panic!("no worker reached {at_least} of {series}"))
}

/// Wait until `worker`'s `series` passes `from` (it renewed its lease and worked again),
/// the others still at 0.
async fn next(workers: &[&Worker], i: usize, series: &str, from: u64) -> u64 {
    wait_for(MINUTE, || async {
        let c = counts(workers, series).await;
        (c[i] > from).then_some(c[i])
    })
    .await
    .unwrap_or_else(|| panic!("worker {} stopped counting {series} at {from}", workers[i].pid()))
}

/// Reap a process that was signalled, within a bound.
async fn reaped(roller: &mut Roller) -> std::process::ExitStatus {
    let child = std::cell::RefCell::new(&mut roller.child);
    wait_for(MINUTE, || async { child.borrow_mut().try_wait().unwrap() }).await.expect("the process exits")
}

async fn machine_health(api: &Roller, id: &str) -> Value {
    let (s, v) = signed(api.url(), Method::GET, &format!("/api/v1/machines/{id}/health"), READER).await;
    assert_eq!(s, 200, "{v}");
    v
}

fn at(v: &Value) -> DateTime<Utc> {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("a time, not {v}"))
}

#[tokio::test]
async fn one_worker_sweeps_at_a_time_and_a_clean_stop_hands_the_sweep_over_at_once() {
    let s = Setup::new(HEALTH);
    let mut w = [s.worker("a.log"), s.worker("b.log")];
    let started = Instant::now();

    // Three sweeps (two renewals, ten seconds) by one worker; the other never sweeps.
    let (i, n) = sole(&[&w[0], &w[1]], SWEEPS, 3).await;
    let other = 1 - i;
    let (pid, _) = s.lease("health-sweep").expect("a held lease");
    assert_eq!(pid, w[i].pid(), "the lease names the worker that sweeps");

    // Right after a renewal the lease has a whole ttl left; stop the holder cleanly.
    next(&[&w[0], &w[1]], i, SWEEPS, n).await;
    let (_, left) = s.lease("health-sweep").expect("a held lease");
    let expires = Instant::now() + left;
    w[i].roller.signal("TERM");
    let status = reaped(&mut w[i].roller).await;
    assert!(status.success(), "a clean stop: {status}");
    assert_eq!(s.lease("health-sweep"), None, "a clean stop gives the lease up");

    // The other takes over at its next tick, long before the old lease would have run out.
    wait_for(MINUTE, || async { (count(&w[other], SWEEPS).await > 0).then_some(()) })
        .await
        .expect("the other worker takes the sweep over");
    let now = Instant::now();
    assert!(now < expires, "taken over {:?} before the old lease's end: it was released", expires - now);
    assert_eq!(s.lease("health-sweep").map(|l| l.0), Some(w[other].pid()));
    eprintln!("one sweeper, handed over on SIGTERM, in {:?}", started.elapsed());
}

#[tokio::test]
async fn a_killed_sweeper_is_replaced_once_its_lease_runs_out_and_observations_are_fresh_again() {
    let s = Setup::new(HEALTH);
    let api = s.api();
    let mut w = [s.worker("a.log"), s.worker("b.log")];
    let started = Instant::now();
    let (i, n) = sole(&[&w[0], &w[1]], SWEEPS, 1).await;
    let other = 1 - i;

    // Kill the holder right after it renewed its lease and swept: a whole ttl is left.
    next(&[&w[0], &w[1]], i, SWEEPS, n).await;
    w[i].roller.signal("KILL");
    reaped(&mut w[i].roller).await;
    let killed = Instant::now();
    let killed_at = Utc::now();
    let (pid, left) = s.lease("health-sweep").expect("a dead holder's lease lasts until it expires");
    assert_eq!(pid, w[i].pid());
    let expires = Instant::now() + left;
    assert!(left > SWEEP_EVERY + SLACK, "the lease outlasts the survivor's next tick ({left:?} left)");
    let before = machine_health(&api, MACHINES[0]).await;
    let last_probe = at(&before["observations"]["probe"]["at"]);
    assert!(last_probe < killed_at, "{before:#}");

    // The survivor sweeps once the lease has expired: not sooner, and not much later.
    wait_for(MINUTE, || async { (count(&w[other], SWEEPS).await > 0).then_some(()) })
        .await
        .expect("the survivor takes the sweep over");
    let took = killed.elapsed();
    let now = Instant::now();
    assert!(now + SLACK >= expires, "taken over {:?} before the dead holder's lease expired", expires - now);
    assert!(took < left + SWEEP_EVERY + Duration::from_secs(20), "taken over only after {took:?}");
    assert_eq!(s.lease("health-sweep").map(|l| l.0), Some(w[other].pid()));
    eprintln!("a killed sweeper replaced after {took:?} (its lease had {left:?} left)");

    // Every machine's probe is fresh again, seen by the survivor after the kill.
    for m in MACHINES {
        let fresh = wait_for(MINUTE, || async {
            let v = machine_health(&api, m).await;
            (at(&v["observations"]["probe"]["at"]) > killed_at).then_some(v)
        })
        .await
        .unwrap_or_else(|| panic!("{m}'s probe is refreshed after the takeover"));
        assert!(fresh["ages"]["probe_secs"].as_i64().is_some_and(|a| a <= SWEEP_EVERY.as_secs() as i64), "{fresh:#}");
        assert_eq!(fresh["observations"]["probe"]["value"], true, "{fresh:#}");
        assert_eq!(fresh["state"], "ok", "{fresh:#}");
    }
    // And it keeps the lease: it sweeps again on its own renewal.
    let mine = count(&w[other], SWEEPS).await;
    wait_for(MINUTE, || async { (count(&w[other], SWEEPS).await > mine).then_some(()) })
        .await
        .expect("the survivor keeps sweeping");
    eprintln!("killed sweeper scenario in {:?}", started.elapsed());
}

#[tokio::test]
async fn one_medic_at_a_time_and_a_killed_one_is_replaced_once_its_lease_runs_out() {
    let s = Setup::new(&format!("{HEALTH}[medic]\nenabled = true\ndry_run = true\nevery_secs = 2\n"));
    let api = s.api();
    let mut w = [s.worker("a.log"), s.worker("b.log")];
    let started = Instant::now();
    let decisions = || async {
        let (st, v) = signed(api.url(), Method::GET, "/api/v1/medic/decisions", READER).await;
        assert_eq!(st, 200, "{v}");
        v
    };

    // Four cycles (three renewals) by one worker; the other never runs one.
    let (i, n) = sole(&[&w[0], &w[1]], MEDIC_CYCLES, 4).await;
    let other = 1 - i;
    assert_eq!(s.lease("medic").map(|l| l.0), Some(w[i].pid()), "the lease names the worker that cycles");
    let last = decisions().await;
    assert_eq!(last["last"]["mode"], "dry_run", "{last:#}");
    let first = at(&last["last"]["at"]);
    let n = next(&[&w[0], &w[1]], i, MEDIC_CYCLES, n).await;
    wait_for(MINUTE, || async { (at(&decisions().await["last"]["at"]) > first).then_some(()) })
        .await
        .expect("the medic's last cycle advances");

    // Kill the holder right after a cycle (a renewal).
    next(&[&w[0], &w[1]], i, MEDIC_CYCLES, n).await;
    w[i].roller.signal("KILL");
    reaped(&mut w[i].roller).await;
    let killed = Instant::now();
    let killed_at = Utc::now();
    let (pid, left) = s.lease("medic").expect("a dead holder's lease lasts until it expires");
    assert_eq!(pid, w[i].pid());
    let expires = Instant::now() + left;
    assert!(left > MEDIC_EVERY + SLACK, "the lease outlasts the survivor's next tick ({left:?} left)");

    wait_for(MINUTE, || async { (count(&w[other], MEDIC_CYCLES).await > 0).then_some(()) })
        .await
        .expect("the survivor takes the medic over");
    let took = killed.elapsed();
    let now = Instant::now();
    assert!(now + SLACK >= expires, "taken over {:?} before the dead holder's lease expired", expires - now);
    assert!(took < left + MEDIC_EVERY + Duration::from_secs(20), "taken over only after {took:?}");
    assert_eq!(s.lease("medic").map(|l| l.0), Some(w[other].pid()));
    wait_for(MINUTE, || async { (at(&decisions().await["last"]["at"]) > killed_at).then_some(()) })
        .await
        .expect("the medic's cycles resume after the takeover");
    eprintln!("a killed medic replaced after {took:?} (its lease had {left:?} left); {:?} in all", started.elapsed());
}

#[tokio::test]
async fn a_sweep_longer_than_two_ticks_keeps_its_lease_throughout() {
    // Eight probes that each wait out their 2 s timeout, one at a time: a sweep of 16 s,
    // longer than the 15 s lease it took at its start. Not renewed while it ran, the lease
    // would lapse for 6 s, more than the other worker's 5 s tick: it would take it.
    let s = Setup::with_hanging(&format!("{HEALTH}concurrency = 1\n"), 8);
    let w = [s.worker("a.log"), s.worker("b.log")];
    let started = Instant::now();
    let holder = wait_for(MINUTE, || async { s.lease("health-sweep").map(|l| l.0) }).await.expect("a holder");
    let i = w.iter().position(|w| w.pid() == holder).expect("one of the workers holds the lease");

    // Through two whole sweeps the lease never changes hands and the other never sweeps.
    wait_for(Duration::from_secs(90), || async {
        let c = counts(&[&w[0], &w[1]], SWEEPS).await;
        let now = s.lease("health-sweep").map(|l| l.0);
        assert_eq!(now, Some(holder), "the lease changed hands after {:?}, sweeps {c:?}", started.elapsed());
        (c[i] >= 2).then_some(())
    })
    .await
    .expect("two sweeps");
    eprintln!("two long sweeps by one worker in {:?}", started.elapsed());
}
