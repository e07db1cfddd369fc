//! The load generator: keep-alive HTTP/1.1 connections, each sending one request at a
//! time (closed loop) or on a schedule (open loop at a fixed rate), every request
//! Hawk-signed with its own nonce, as Taskcluster clients sign them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

pub enum Stop {
    After(Duration),
    Count(u64),
}

pub struct Plan {
    pub port: u16,
    pub creds: Arc<hawk::Credentials>,
    pub conns: usize,
    pub stop: Stop,
    /// Requests per second over all connections; `None` sends as fast as answers come.
    pub rate: Option<f64>,
    /// The path and query of request number n.
    pub path: Arc<dyn Fn(u64) -> String + Send + Sync>,
    /// Keep the answers' bodies (to read task ids back).
    pub keep_bodies: bool,
}

#[derive(Default)]
pub struct Outcome {
    pub latencies_us: Vec<u32>,
    pub statuses: BTreeMap<u16, u64>,
    pub transport_errors: u64,
    pub elapsed: Duration,
    pub bodies: Vec<Bytes>,
}

impl Outcome {
    pub fn requests(&self) -> u64 {
        self.statuses.values().sum()
    }

    /// Answers that are not 2xx, plus requests that got no answer.
    pub fn errors(&self) -> u64 {
        self.statuses.iter().filter(|(s, _)| !(200..300).contains(*s)).map(|(_, n)| n).sum::<u64>()
            + self.transport_errors
    }

    pub fn rate(&self) -> f64 {
        self.requests() as f64 / self.elapsed.as_secs_f64()
    }

    /// The q-quantile latency in milliseconds (`latencies_us` must be sorted).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        quantile_ms(&self.latencies_us, q)
    }

    fn merge(&mut self, other: Outcome) {
        self.latencies_us.extend(other.latencies_us);
        for (s, n) in other.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        self.transport_errors += other.transport_errors;
        self.bodies.extend(other.bodies);
    }
}

pub fn quantile_ms(sorted_us: &[u32], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted_us.len() as f64 * q).ceil() as usize).clamp(1, sorted_us.len()) - 1;
    sorted_us[i] as f64 / 1000.0
}

pub async fn run(plan: Plan) -> Outcome {
    let plan = Arc::new(plan);
    let next = Arc::new(AtomicU64::new(0));
    // Nonces only need to be unique per roller process, but a run id keeps them unique
    // even against a server that outlives one run.
    let run_id = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let started = Instant::now();
    let deadline = match plan.stop {
        Stop::After(d) => Some(started + d),
        Stop::Count(_) => None,
    };
    let mut tasks = Vec::new();
    for c in 0..plan.conns {
        let (plan, next) = (plan.clone(), next.clone());
        let schedule = plan.rate.map(|r| {
            let every = Duration::from_secs_f64(plan.conns as f64 / r);
            // Staggered, so the connections' requests interleave instead of arriving together.
            let first = tokio::time::Instant::now() + every.mul_f64(c as f64 / plan.conns as f64);
            let mut iv = tokio::time::interval_at(first, every);
            iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            iv
        });
        tasks.push(tokio::spawn(connection(plan, next, deadline, schedule, format!("{run_id:x}.{c}"))));
    }
    let mut out = Outcome::default();
    for t in tasks {
        if let Ok(o) = t.await {
            out.merge(o);
        }
    }
    out.elapsed = started.elapsed();
    out.latencies_us.sort_unstable();
    out
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(port: u16) -> Option<Sender> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(conn);
    Some(send)
}

async fn connection(
    plan: Arc<Plan>,
    next: Arc<AtomicU64>,
    deadline: Option<Instant>,
    mut schedule: Option<tokio::time::Interval>,
    nonce_prefix: String,
) -> Outcome {
    let mut out = Outcome::default();
    let host = format!("127.0.0.1:{}", plan.port);
    let mut send: Option<Sender> = None;
    loop {
        if let Some(iv) = schedule.as_mut() {
            iv.tick().await;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let n = next.fetch_add(1, Ordering::Relaxed);
        if let Stop::Count(max) = plan.stop
            && n >= max
        {
            break;
        }
        let path = (plan.path)(n);
        let header = hawk::RequestBuilder::new("POST", "127.0.0.1", plan.port, &path)
            .request()
            .make_header_full(&plan.creds, SystemTime::now(), format!("{nonce_prefix}.{n}"))
            .expect("a Hawk header");
        let req = hyper::Request::post(path)
            .header(hyper::header::HOST, &host)
            .header(hyper::header::AUTHORIZATION, format!("Hawk {header}"))
            .body(Empty::<Bytes>::new())
            .expect("a request");
        let t = Instant::now();
        if send.as_ref().is_none_or(|s| s.is_closed()) {
            send = connect(plan.port).await;
        }
        let Some(s) = send.as_mut() else {
            out.transport_errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let answer = async {
            s.ready().await.ok()?;
            let res = s.send_request(req).await.ok()?;
            let status = res.status().as_u16();
            let body = res.into_body().collect().await.ok()?.to_bytes();
            Some((status, body))
        }
        .await;
        match answer {
            Some((status, body)) => {
                out.latencies_us.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                *out.statuses.entry(status).or_default() += 1;
                if plan.keep_bodies {
                    out.bodies.push(body);
                }
            }
            None => {
                out.transport_errors += 1;
                send = None;
            }
        }
    }
    out
}

/// One signed request on its own connection (for the scenarios' bookkeeping, not for load).
pub async fn once(port: u16, method: &str, path: &str, creds: &hawk::Credentials) -> Option<(u16, Bytes)> {
    let header = hawk::RequestBuilder::new(method, "127.0.0.1", port, path).request().make_header(creds).ok()?;
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, format!("127.0.0.1:{port}"))
        .header(hyper::header::AUTHORIZATION, format!("Hawk {header}"))
        .body(Empty::<Bytes>::new())
        .ok()?;
    let mut s = connect(port).await?;
    let res = s.send_request(req).await.ok()?;
    let status = res.status().as_u16();
    Some((status, res.into_body().collect().await.ok()?.to_bytes()))
}
