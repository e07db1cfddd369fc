//! `embedded` (issue 16, item 9): `roller serve` draining a backlog of 100,000 queued noop
//! jobs from its embedded SQLite queue, and whether `/__heartbeat__` stays truthful (200)
//! while it does.
//!
//! **The backlog.** The jobs are written into the data directory's queue file before
//! `roller serve` starts, through roller's own `SqliteQueue::enqueue` (the code path the
//! API's enqueue uses, without HTTP): a running `roller serve` would start draining while
//! the queue fills, so a fill through its API never builds a backlog of this size. Each job
//! is for a machine of its own (`d<n>`), so no job waits for another's lock.
//!
//! **The measure.** From `roller serve`'s banner to the 100,000th job counted finished in
//! its `roller_jobs_finished_total` (read over `/metrics`, every 250 ms). Meanwhile another
//! thread asks `/__heartbeat__` every 100 ms, each on a new connection, and counts the
//! answers by status.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use roller::domain::{ClientId, WorkerGroup, WorkerId};
use roller::queue::sqlite::SqliteQueue;
use roller::queue::{NewJob, Queue};
use roller::task::Task;

use crate::procs::{self, cpu_ms, rss_mib};
use crate::{Result, Setup, api_port, metric, metrics};

/// Queue `jobs` noop jobs in a fresh data directory, start `roller serve` on it and time
/// the drain; the notes for BENCHMARKS.md.
pub async fn drain(roller: &Path, jobs: u64) -> Result<Vec<String>> {
    let setup = Setup::new("[tasks]\nenabled = [\"noop\"]\n")?;
    let data = setup.path().join("data");
    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    let fill = Instant::now();
    {
        let queue = SqliteQueue::open(&data.join("roller.sqlite3")).map_err(|e| e.to_string())?;
        let group = WorkerGroup::parse("bench").map_err(|e| e.to_string())?;
        let requester = ClientId::parse(crate::CLIENT_ID).map_err(|e| e.to_string())?;
        for n in 0..jobs {
            let job = NewJob {
                task: Task::Noop,
                max_attempts: Task::Noop.max_attempts(),
                worker_id: WorkerId::parse(&format!("d{n}")).map_err(|e| e.to_string())?,
                worker_group: group.clone(),
                requester: requester.clone(),
                origin: None,
                provisioner_id: None,
                worker_type: None,
                reason: None,
            };
            queue.enqueue(job).await.map_err(|e| format!("queueing job {n}: {e}"))?;
        }
    }
    let fill = fill.elapsed();
    eprintln!("roller-bench: {jobs} noop jobs queued in {:.1} s; starting roller serve", fill.as_secs_f64());

    let started = Instant::now();
    let (serve, url) = procs::start_roller_with(roller, "serve", setup.path(), None, &[])?;
    let port = api_port(url)?;
    let banner = started.elapsed();
    let t0 = Instant::now();

    let stop = Arc::new(AtomicBool::new(false));
    let probes = {
        let stop = stop.clone();
        std::thread::spawn(move || heartbeats(port, &stop))
    };
    let finished = || -> Result<u64> {
        let text = metrics(port)?;
        Ok(metric(&text, "roller_jobs_finished_total", &["task=\"noop\""]) as u64)
    };
    let limit = t0 + Duration::from_secs(900);
    let mut done = 0;
    let mut peak_rss = 0.0f64;
    let mut progress = Vec::new();
    while done < jobs {
        if Instant::now() > limit {
            stop.store(true, Ordering::Relaxed);
            bail!("roller serve did not drain {jobs} jobs within 900 s ({done} finished)");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        done = finished()?;
        peak_rss = peak_rss.max(rss_mib(serve.pid()).0);
        progress.push((t0.elapsed(), done));
    }
    let elapsed = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut hb = probes.join().map_err(|_| "the heartbeat thread panicked".to_string())?;
    let succeeded = metric(&metrics(port)?, "roller_jobs_finished_total", &["task=\"noop\"", "state=\"succeeded\""]);
    let cpu = cpu_ms(serve.pid());
    let (rss, hwm) = rss_mib(serve.pid());

    // The rate over the middle of the drain (10 % to 90 % done), without start-up and tail.
    let at = |share: f64| progress.iter().find(|(_, d)| *d as f64 >= share * jobs as f64).map(|(t, d)| (*t, *d));
    let middle = match (at(0.1), at(0.9)) {
        (Some((ta, da)), Some((tb, db))) if tb > ta => (db - da) as f64 / (tb - ta).as_secs_f64(),
        _ => f64::NAN,
    };
    let median_ms = hb.median().as_secs_f64() * 1000.0;
    let answers: Vec<String> = hb.statuses.iter().map(|(s, n)| format!("{n}× {s}")).collect();
    Ok(vec![format!(
        "embedded drain: {jobs} noop jobs queued in the SQLite file ({:.0}/s through SqliteQueue::enqueue), then \
         `roller serve` (banner after {:.2} s) drained them in {:.1} s: {:.0} jobs/s overall, {:.0} jobs/s from 10 % \
         to 90 %; {succeeded:.0} succeeded; serve CPU {:.1} s, RSS {rss:.0} MiB (sampled peak {peak_rss:.0}, \
         high-water {hwm:.0}). /__heartbeat__ every 100 ms during the drain: {} answers ({}), {} without answer, \
         slowest {:.0} ms, median {median_ms:.1} ms.",
        jobs as f64 / fill.as_secs_f64(),
        banner.as_secs_f64(),
        elapsed.as_secs_f64(),
        jobs as f64 / elapsed.as_secs_f64(),
        middle,
        cpu / 1000.0,
        hb.total(),
        answers.join(", "),
        hb.failed,
        hb.slowest.as_secs_f64() * 1000.0,
    )])
}

/// What the heartbeat thread saw.
#[derive(Default)]
struct Heartbeats {
    /// Answers by HTTP status, in status order.
    statuses: std::collections::BTreeMap<u16, u64>,
    /// Requests without an answer (connection refused or reset, or no status line in 10 s).
    failed: u64,
    slowest: Duration,
    times: Vec<Duration>,
}

impl Heartbeats {
    fn total(&self) -> u64 {
        self.statuses.values().sum()
    }

    fn median(&mut self) -> Duration {
        self.times.sort();
        self.times.get(self.times.len() / 2).copied().unwrap_or_default()
    }
}

/// Ask `/__heartbeat__` every 100 ms until `stop`.
fn heartbeats(port: u16, stop: &AtomicBool) -> Heartbeats {
    let mut hb = Heartbeats::default();
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        match heartbeat(port) {
            Some(status) => {
                *hb.statuses.entry(status).or_default() += 1;
                let took = t.elapsed();
                hb.slowest = hb.slowest.max(took);
                hb.times.push(took);
            }
            None => hb.failed += 1,
        }
        std::thread::sleep(Duration::from_millis(100).saturating_sub(t.elapsed()));
    }
    hb
}

/// One heartbeat request's status, if it got an answer.
fn heartbeat(port: u16) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"GET /__heartbeat__ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
