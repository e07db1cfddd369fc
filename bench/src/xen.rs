//! The long-jobs scenario: N concurrent `reboot` jobs in one `roller worker`, each a real
//! reboot chain (`xenapi_reboot`, then the proof) on a simulated host that comes back
//! 60 s after it was started.
//!
//! Why XenAPI: of the chain's steps it is the cheapest to simulate faithfully for
//! thousands of machines: one XML-RPC pool master stands in for every VM, where IPMI
//! would spawn an `ipmitool` per call and ssh would need thousands of sshd sessions. Each
//! VM starts halted (its host not answering), so the step is "start it" and the proof is
//! the class's `tcp:` probe answering again: a listener on the host's own loopback
//! address (127.2.x.y) that opens 60 s after `VM.start`. The job really waits on the
//! machine, probing it every second, as it would in a data centre.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use roller_testkit::inventory::{Class, Inventory, Machine};
use roller_testkit::xen::FakeXen;

use crate::load::{Plan, Stop};
use crate::procs::{self, cpu_ms, rss_mib};
use crate::{Result, Row, Setup, api_port, self_cpu_ms};

const USER: &str = "roller";
const COME_BACK: Duration = Duration::from_secs(60);
const PROBE_PORT: u16 = 2222;

fn host(i: u64) -> String {
    format!("127.2.{}.{}", i / 250, 1 + i % 250)
}

fn uuid(i: u64) -> String {
    format!("00000000-0000-4000-8000-{i:012x}")
}

pub async fn long_jobs(roller: PathBuf, jobs: u64) -> Result<(Row, String)> {
    if jobs > 62_500 {
        bail!("at most 62,500 long jobs (one 127.2.x.y address each)");
    }
    let password = format!("xen-{:x}", Instant::now().elapsed().as_nanos() ^ std::process::id() as u128);
    // Every VM starts halted; starting one brings its host back COME_BACK later.
    let hosts: Arc<HashMap<String, String>> = Arc::new((0..jobs).map(|i| (uuid(i), host(i))).collect());
    let up = Arc::new(AtomicU64::new(0));
    let mut pool = FakeXen::builder().credentials(USER, &password);
    for i in 0..jobs {
        pool = pool.vm(&uuid(i), false);
    }
    let xen = pool
        .on_start({
            let (hosts, up) = (hosts.clone(), up.clone());
            move |vm| {
                let host = hosts.get(vm).cloned().unwrap_or_default();
                let up = up.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(COME_BACK).await;
                    // The host is up: it accepts connections on its probe port from now on.
                    if let Ok(l) = tokio::net::TcpListener::bind((host.as_str(), PROBE_PORT)).await {
                        up.fetch_add(1, Ordering::Relaxed);
                        while let Ok((c, _)) = l.accept().await {
                            drop(c);
                        }
                    }
                });
            }
        })
        .start()
        .await;

    let metrics_port = procs::free_port();
    let mut inventory = Inventory::new()
        .class(Class::new("xenvm").reboot(&["xenapi_reboot"]).reachability(&format!("tcp:{PROBE_PORT}")));
    for i in 0..jobs {
        inventory = inventory
            .machine(Machine::new(&format!("x{i}")).group("bench").class("xenvm").address(&host(i)).xen(&uuid(i)));
    }
    let setup = Setup::with_server(
        &format!("metrics_bind = \"127.0.0.1:{metrics_port}\""),
        &format!(
            "[tasks]\nenabled = [\"reboot\"]\n\n[runner]\nconcurrency = {}\n\n\
             [xen]\nurl = \"{}\"\nusername = \"{USER}\"\npassword_file = \"XEN_PW_FILE\"\ndelay_secs = 0\n",
            jobs.max(1000),
            xen.url
        ),
    )?;
    let dir = setup.path().to_path_buf();
    std::fs::write(dir.join("xen-password"), &password).map_err(|e| e.to_string())?;
    inventory.write(&dir);
    let config = std::fs::read_to_string(dir.join("roller.toml")).map_err(|e| e.to_string())?;
    let config = format!("inventory = \"{}\"\n", dir.join("inventory.toml").display())
        + &config.replace("XEN_PW_FILE", &dir.join("xen-password").display().to_string());
    std::fs::write(dir.join("roller.toml"), config).map_err(|e| e.to_string())?;

    let (redis, redis_port) = procs::start_redis(&dir)?;
    let (api, url) = procs::start_roller(&roller, "api", &dir, redis_port)?;
    let (worker, _) = procs::start_roller(&roller, "worker", &dir, redis_port)?;
    let port = api_port(url)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = rss_mib(worker.pid()).0;
    let (c0, w0) = (self_cpu_ms(), cpu_ms(worker.pid()) + cpu_ms(redis.pid()));
    let started = Instant::now();
    let fill = crate::load::run(Plan {
        port,
        creds: setup.creds(),
        conns: 64,
        stop: Stop::Count(jobs),
        rate: None,
        path: Arc::new(|n: u64| format!("/api/v1/workers/x{n}/group/bench/jobs?task_name=reboot")),
        keep_bodies: false,
    })
    .await;
    if fill.errors() > 0 {
        bail!("enqueueing the reboots: answers {:?}, {} without answer", fill.statuses, fill.transport_errors);
    }
    let mut all_started = None;
    let mut peak_running = 0.0f64;
    let mut peak_rss = 0.0f64;
    let limit = started + Duration::from_secs(600);
    let succeeded = loop {
        let (rss, _) = rss_mib(worker.pid());
        peak_rss = peak_rss.max(rss);
        let m = crate::metrics(metrics_port)?;
        peak_running = peak_running.max(crate::metric(&m, "roller_jobs_running", &[]));
        if all_started.is_none() && xen.starts() >= jobs {
            all_started = Some(started.elapsed());
        }
        let done = crate::metric(&m, "roller_jobs_finished_total", &["task=\"reboot\""]) as u64;
        if done >= jobs {
            break crate::metric(&m, "roller_jobs_finished_total", &["task=\"reboot\"", "state=\"succeeded\""]) as u64;
        }
        if Instant::now() > limit {
            bail!("the long jobs did not finish within 600 s ({done} of {jobs} finished)");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let elapsed = started.elapsed();
    let (c1, w1) = (self_cpu_ms(), cpu_ms(worker.pid()) + cpu_ms(redis.pid()));
    let (_, hwm) = rss_mib(worker.pid());
    let _ = api;
    let row = Row {
        scenario: format!("{jobs} concurrent reboots (60 s each) in one roller worker"),
        conns: "-".into(),
        count: jobs,
        rate: jobs as f64 / elapsed.as_secs_f64(),
        latency: None,
        server_cpu_ms: (w1 - w0) / jobs as f64,
        cpu_split: None,
        client_cpu_ms: Some((c1 - c0) / jobs as f64),
        rss: format!("worker idle {idle_rss:.0}, peak {hwm:.0}; redis {:.0}", rss_mib(redis.pid()).0),
        errors: jobs - succeeded.min(jobs),
    };
    let note = format!(
        "long jobs: {jobs} reboots enqueued at {:.0}/s; all {jobs} VMs started (every job running) {:.1} s after the \
         first request; at most {peak_running:.0} jobs running at once; worker RSS peak {peak_rss:.1} MiB sampled, \
         VmHWM {hwm:.1} MiB (idle {idle_rss:.1}); all finished after {:.1} s, {succeeded} succeeded; {} hosts came back",
        fill.rate(),
        all_started.unwrap_or_default().as_secs_f64(),
        elapsed.as_secs_f64(),
        up.load(Ordering::Relaxed),
    );
    Ok((row, note))
}
