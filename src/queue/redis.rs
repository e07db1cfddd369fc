//! The distributed queue: Redis or Redis Cluster, shared by every roller process.
//!
//! Design: a leased job table driven by Lua scripts, not Streams. Every queue
//! operation is one script (EVALSHA), so it is atomic on the server exactly as
//! SQLite's `BEGIN IMMEDIATE` transactions are: the per-machine lock and
//! coalescing are decided and taken in one step, and no two processes can both
//! see a machine as free. Streams + XAUTOCLAIM were rejected because a stream
//! delivers in order per group and knows nothing of machines: a job whose
//! machine is busy would have to be claimed and parked somewhere else, which
//! rebuilds this design on top of Streams with more moving parts, and the
//! coalescing index would still need its own keys outside the stream.
//!
//! Key layout, all under one hash tag `{prefix}` so that a script only touches
//! keys of one slot and Redis Cluster accepts it:
//! - `{p}:seq` — INCR counter, the enqueue order (FIFO and history order);
//! - `{p}:job:<id>` — HASH, the job's fields (timestamps as unix ms);
//! - `{p}:log:<id>` — LIST of JSON lines `{"at_ms":…,"line":…}`;
//! - `{p}:queued` — ZSET id → seq: waiting jobs, plus running jobs whose lease
//!   expired with attempts (or a repair) left (they keep their seq, so they stay first);
//! - `{p}:running` — ZSET id → lease_until: live leases, swept by every
//!   enqueue and reserve (`expire` moves a lease's end to now, into the sweep's reach);
//! - `{p}:leased` — ZSET id → seq: every `running` job, its lease live or expired
//!   (reserve adds, finalizing and handing back remove): what `running` lists
//!   without looking through the queue for swept jobs;
//! - `{p}:active:<worker_id>|<group>|<task>` → id of the queued/running job (coalescing);
//! - `{p}:lock:<worker_id>` → id of the job that last took the machine; the
//!   machine is busy only while that job is `running` with a live lease;
//! - `{p}:history:<worker_id>` — ZSET id → seq, trimmed to the history cap;
//! - `{p}:held:<holder>` → id of the job a reservation handed out, for its lease
//!   (deleted on finish/release/expire): what `reclaim` finds after a lost answer;
//! - `{p}:breaker:<worker_id>` — LIST of JSON resets `{"at_ms":…,"by":…,"reason":…}`,
//!   newest `at` first, trimmed to [`BREAKER_RESETS_KEPT`]; no TTL (the audit trail
//!   of operators' overrides, as in SQLite);
//! - `{p}:rec:<kind>` — HASH key → record: the shared records of `queue::records`
//!   (`observations`, `hold`, `medic`), opaque text, no TTL;
//! - `{p}:events:<stream>` — LIST of records, newest first, trimmed to what the caller
//!   keeps (the medic's decisions);
//! - `{p}:lease:<name>` → holder, expiring with the lease (`PX`): one process at a
//!   time does the periodic job `name` (the health sweep);
//! - `{p}:nonce:<digest>` → `1`, expiring (`PXAT`) when its Hawk header's window
//!   ends: the headers already accepted (replay protection, `auth::replay`);
//! - `{p}:health` — a short-lived key written by health checks;
//! - `{p}:wake` — a pub/sub channel (not a key): enqueue, release, expire and a finish
//!   that frees a machine with a job waiting publish on it; idle runners subscribe.
//!
//! A job's hash also holds `touched` ("1" once set, sticky) and `restore` (while
//! armed); a job whose lease expires with a `restore` armed is swept back to the
//! queue for its repair even on its last attempt, within [`RECOVERY_ATTEMPTS`](super::RECOVERY_ATTEMPTS) more.
//!
//! Final jobs get a TTL of `retention` on their job and log keys; a history set
//! gets the same TTL once none of its jobs is queued or running. Queued and
//! running jobs have no TTL.
//!
//! Clocks: scripts read the server's `TIME`, so leases of runners on different
//! hosts compare on one clock.
//!
//! Bounds: one reserve call hands out as many jobs as it is given holder ids
//! (the runner asks for up to `runner::RESERVE_BATCH`: a drain is bounded by these
//! calls, not by the jobs), and looks at the first [`RESERVE_SCAN`] queued jobs (enough for a
//! fleet where one machine rarely has more than a handful of queued tasks); a
//! runnable job behind that many jobs of busy machines waits for the next scan
//! window to move. Each sweep handles at most [`SWEEP_BATCH`] expired leases.
//! `running` reads one entry per running job (at most one per machine: the answer's
//! size); a breaker reset walks the machine's [`BREAKER_RESETS_KEPT`] entries.
//!
//! Failures: every Redis error or timeout is [`QueueError::Unavailable`], with
//! neither URL nor password in the text. Each call is bounded by the response
//! timeout as a whole, so callers (the API's 503, the runner's back-off) never
//! hang. A call that times out after the server ran its script is at-least-once
//! like everything else here, except a reserve: each reservation records
//! `held:<holder>` (for its lease, deleted on finish/release), so a runner whose
//! reserve went unanswered reclaims the job at once instead of leaving it to its
//! lease (found by the fault tests: a job stranded for the whole lease).
//!
//! This file: the handle and the `Queue` methods (the wake-up subscription too).
//! `connection`: reaching Redis (settings, one server or a cluster, timeouts,
//! redaction); `scripts`: the Lua scripts; `decode`: reading their replies.

mod connection;
mod decode;
mod records;
mod scripts;
mod tls;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use redis::Value;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{
    BREAKER_RESETS_KEPT, BreakerReset, Enqueued, Finished, Held, Job, JobState, Mark, NewJob, Outcome, Queue,
    QueueError, QueueOptions, QueueStats,
};
use crate::domain::{JobId, WorkerId};
pub use connection::RedisSettings;
use connection::{Conn, redact};
use decode::{corrupt, decode_held, decode_job, decode_resets, decode_snapshot, into_int, into_items};
use scripts::Scripts;
pub use tls::{RedisLogin, RedisTls};

/// The oldest Redis this backend accepts. 7.0 is the oldest release the
/// conformance suite runs against (Debian 12 ships 7.0.15) and the oldest one
/// still maintained upstream when this was written; older servers are refused
/// rather than trusted untested.
pub const MIN_REDIS_VERSION: (u32, u32, u32) = (7, 0, 0);

/// How many queued jobs one reserve looks at, from the front.
pub const RESERVE_SCAN: usize = 1000;

/// How many expired leases one sweep handles.
pub const SWEEP_BATCH: usize = 100;

/// The Redis queue backend. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct RedisQueue {
    conn: Conn,
    scripts: Arc<Scripts>,
    /// `{prefix}:`, the start of every key.
    base: String,
    options: QueueOptions,
    call_timeout: Duration,
    /// Where Redis is, for error texts, without credentials.
    target: String,
    /// Strings that must never appear in an error text (URL, password).
    secrets: Arc<Vec<String>>,
    /// Where `watch_for_work` subscribes: a client per node (with the login and the TLS
    /// certificates), tried in turn.
    nodes: Arc<Vec<redis::Client>>,
    connect_timeout: Duration,
    /// Redis's clock minus ours, in ms (measured at connect and by every health check):
    /// how an enqueue's deadline is written in Redis's time.
    clock_offset_ms: Arc<std::sync::atomic::AtomicI64>,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("target", &self.target)
            .field("base", &self.base)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn lease_ms(lease: Duration) -> String {
    // At least 1 ms: a zero lease would be expired as it is taken.
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX).max(1).to_string()
}

impl RedisQueue {
    /// The enqueue script, claiming `nonce` (a digest and its expiry in our clock) first
    /// when given: `None` when it was claimed already.
    async fn enqueue_with(
        &self,
        job: NewJob,
        nonce: Option<(&[u8; 16], SystemTime)>,
    ) -> Result<Option<Enqueued>, QueueError> {
        let job_id = JobId::new();
        let id = job_id.to_string();
        let max_attempts = job.max_attempts.max(1).to_string();
        let cap = self.options.effective_history_cap().to_string();
        let deadline = self.deadline_ms().to_string();
        let (nonce_hex, nonce_at) = match nonce {
            Some((digest, expires_at)) => (records::hex(digest), self.in_redis_clock(expires_at).to_string()),
            None => (String::new(), String::new()),
        };
        let mut args: Vec<&str> = vec![
            &id,
            job.worker_id.as_str(),
            job.worker_group.as_str(),
            job.task.name(),
            job.requester.as_str(),
            &max_attempts,
            &cap,
            &deadline,
            &nonce_hex,
            &nonce_at,
        ];
        if let Some(o) = &job.origin {
            args.extend(["origin", o.as_str()]);
        }
        if let Some(p) = &job.provisioner_id {
            args.extend(["provisioner_id", p.as_str()]);
        }
        if let Some(w) = &job.worker_type {
            args.extend(["worker_type", w.as_str()]);
        }
        if let Some(r) = &job.reason {
            args.extend(["reason", r.as_str()]);
        }
        // Idempotent by the job id, so a try lost with a dropped connection is tried again.
        let reply = self.run_retrying(&self.scripts.enqueue, &args).await?;
        let mut items = into_items(reply)?.into_iter();
        let incomplete = || corrupt(&id, "enqueue reply is incomplete");
        let kind = into_int(items.next().ok_or_else(incomplete)?)?;
        match kind {
            2 => {
                return Err(QueueError::Unavailable(format!(
                    "Redis at {} ran the enqueue after its deadline; it was not queued",
                    self.target
                )));
            }
            3 => return Ok(None),
            _ => {}
        }
        let created = kind == 1;
        if !created {
            let fields = items.next().ok_or_else(incomplete)?;
            let log = items.next().ok_or_else(incomplete)?;
            return Ok(Some(Enqueued { job: decode_job(fields, log)?, created: false }));
        }
        // A new job is what was sent, stamped by the server's clock: built here rather
        // than read back and parsed (that was a fifth of the API's work per enqueue).
        let ms = into_int(items.next().ok_or_else(incomplete)?)?;
        let created_at = DateTime::<Utc>::from_timestamp_millis(ms)
            .ok_or_else(|| corrupt(&id, format!("created_at {ms} out of range")))?;
        let job = Job {
            id: job_id,
            task: job.task,
            worker_id: job.worker_id,
            worker_group: job.worker_group,
            requester: job.requester,
            origin: job.origin,
            provisioner_id: job.provisioner_id,
            worker_type: job.worker_type,
            reason: job.reason,
            state: JobState::Queued,
            attempts: 0,
            max_attempts: job.max_attempts.max(1),
            created_at,
            started_at: None,
            finished_at: None,
            consumer: None,
            lease_until: None,
            log: Vec::new(),
            result: None,
            error: None,
            touched: false,
            restore: None,
        };
        Ok(Some(Enqueued { job, created: true }))
    }
}

#[async_trait]
impl Queue for RedisQueue {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued, QueueError> {
        let enq = self.enqueue_with(job, None).await?;
        enq.ok_or_else(|| corrupt("(script reply)", "an enqueue claiming nothing answered \"claimed already\""))
    }

    async fn enqueue_claiming(
        &self,
        job: NewJob,
        nonce: &[u8; 16],
        expires_at: SystemTime,
    ) -> Result<Option<Enqueued>, QueueError> {
        self.enqueue_with(job, Some((nonce, expires_at))).await
    }

    async fn reserve(&self, consumer: &str, lease: Duration) -> Result<Option<Job>, QueueError> {
        Ok(self.reserve_many(&[consumer.to_string()], lease).await?.pop())
    }

    async fn reserve_many(&self, holders: &[String], lease: Duration) -> Result<Vec<Job>, QueueError> {
        if holders.is_empty() {
            return Ok(Vec::new());
        }
        let lease = lease_ms(lease);
        let mut args: Vec<&str> = Vec::with_capacity(holders.len() + 1);
        args.push(&lease);
        args.extend(holders.iter().map(String::as_str));
        let mut items = into_items(self.run(&self.scripts.reserve, &args).await?)?.into_iter();
        let mut jobs = Vec::new();
        while let Some(fields) = items.next() {
            let log = items.next().ok_or_else(|| corrupt("(script reply)", "a job without its log"))?;
            // One unreadable record (say, a task this older roller does not know)
            // must not cost the others in the batch: they are handed out already.
            match decode_job(fields, log) {
                Ok(job) => jobs.push(job),
                Err(e) => tracing::error!(error = %e, "a reserved job cannot be read; its lease will decide"),
            }
        }
        Ok(jobs)
    }

    async fn reclaim(&self, consumer: &str, lease: Duration) -> Result<Option<Job>, QueueError> {
        decode_snapshot(self.run(&self.scripts.reclaim, &[consumer, &lease_ms(lease)]).await?)
    }

    async fn append_log(&self, id: JobId, holder: &str, line: &str) -> Result<(), QueueError> {
        let reply = self.run(&self.scripts.append_log, &[&id.to_string(), holder, line]).await?;
        match into_int(reply)? {
            1 => Ok(()),
            _ => Err(QueueError::LostLease(id)),
        }
    }

    async fn mark(&self, id: JobId, holder: &str, mark: Mark) -> Result<(), QueueError> {
        let id_s = id.to_string();
        let args: Vec<&str> = match &mark {
            Mark::Touched => vec![&id_s, holder, "touched"],
            Mark::Armed(restore) => vec![&id_s, holder, "armed", restore],
            Mark::Disarmed => vec![&id_s, holder, "disarmed"],
        };
        match into_int(self.run(&self.scripts.mark, &args).await?)? {
            1 => Ok(()),
            _ => Err(QueueError::LostLease(id)),
        }
    }

    async fn running(&self) -> Result<Vec<Held>, QueueError> {
        decode_held(self.run(&self.scripts.running, &[]).await?)
    }

    async fn expire(&self, id: JobId, holder: &str) -> Result<(), QueueError> {
        match into_int(self.run(&self.scripts.expire, &[&id.to_string(), holder]).await?)? {
            1 => Ok(()),
            _ => Err(QueueError::LostLease(id)),
        }
    }

    async fn reset_breaker(&self, worker_id: &WorkerId, reset: BreakerReset) -> Result<(), QueueError> {
        let at = reset.at.timestamp_millis().to_string();
        let args = [worker_id.as_str(), &at, &reset.by, &reset.reason];
        self.run(&self.scripts.reset_breaker, &args).await.map(drop)
    }

    async fn breaker_resets(&self, worker_id: &WorkerId, limit: usize) -> Result<Vec<BreakerReset>, QueueError> {
        let limit = limit.min(BREAKER_RESETS_KEPT);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let reply = self.run(&self.scripts.breaker_resets, &[worker_id.as_str(), &limit.to_string()]).await?;
        decode_resets(worker_id.as_str(), reply)
    }

    async fn finish(&self, id: JobId, consumer: &str, outcome: Outcome) -> Result<(), QueueError> {
        let item = Finished { id, consumer: consumer.to_string(), outcome };
        self.finish_many(std::slice::from_ref(&item)).await?.pop().unwrap_or(Err(QueueError::LostLease(id)))
    }

    async fn finish_many(&self, items: &[Finished]) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        let mut answers: Vec<Result<(), QueueError>> = Vec::with_capacity(items.len());
        let mut args: Vec<String> = Vec::with_capacity(items.len() * 7);
        let mut sent = Vec::with_capacity(items.len());
        for (i, f) in items.iter().enumerate() {
            let (result, error) = f.outcome.record();
            let result = match result.map(serde_json::to_string).transpose() {
                Ok(json) => json,
                Err(e) => {
                    let why = format!("cannot serialise the result of job {}: {e}", f.id);
                    answers.push(Err(QueueError::Unavailable(why)));
                    continue;
                }
            };
            let field = |name: &str, value: Option<String>| match value {
                Some(v) => [name.to_string(), v],
                None => [String::new(), String::new()],
            };
            args.extend([f.id.to_string(), f.consumer.clone(), f.outcome.state().as_str().into()]);
            args.extend(field("result", result));
            args.extend(field("error", error.map(str::to_string)));
            answers.push(Ok(()));
            sent.push(i);
        }
        if sent.is_empty() {
            return Ok(answers);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let held = into_items(self.run(&self.scripts.finish, &args).await?)?;
        if held.len() != sent.len() {
            return Err(corrupt("(script reply)", format!("{} answers to {} finishes", held.len(), sent.len())));
        }
        for (i, v) in sent.into_iter().zip(held) {
            if into_int(v)? != 1 {
                answers[i] = Err(QueueError::LostLease(items[i].id));
            }
        }
        Ok(answers)
    }

    async fn release(&self, id: JobId, consumer: &str) -> Result<(), QueueError> {
        match into_int(self.run(&self.scripts.release, &[&id.to_string(), consumer]).await?)? {
            1 => Ok(()),
            _ => Err(QueueError::LostLease(id)),
        }
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, QueueError> {
        decode_snapshot(self.run_retrying(&self.scripts.get, &[&id.to_string()]).await?)
    }

    async fn history(&self, worker_id: &WorkerId, limit: usize) -> Result<Vec<Job>, QueueError> {
        let limit = limit.min(self.options.effective_history_cap()).to_string();
        let reply = self.run_retrying(&self.scripts.history, &[worker_id.as_str(), &limit]).await?;
        let mut items = into_items(reply)?.into_iter();
        let mut jobs = Vec::new();
        while let (Some(fields), Some(log)) = (items.next(), items.next()) {
            jobs.push(decode_job(fields, log)?);
        }
        Ok(jobs)
    }

    /// Subscribes to `{p}:wake` (published by the scripts) on one node: plain
    /// pub/sub messages reach every node of a cluster. A lost subscription is
    /// taken up again with back-off; meanwhile the runner's poll still finds work.
    async fn watch_for_work(&self, wake: Arc<Notify>, stop: CancellationToken) {
        let channel = format!("{}wake", self.base);
        let budget = self.connect_timeout + self.call_timeout;
        let mut backoff = Duration::from_millis(100);
        for node in self.nodes.iter().cycle() {
            let subscribe = async {
                let mut pubsub = node.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            let subscribed = tokio::select! {
                r = tokio::time::timeout(budget, subscribe) => r,
                _ = stop.cancelled() => return,
            };
            match subscribed {
                Ok(Ok(pubsub)) => {
                    let since = tokio::time::Instant::now();
                    tracing::debug!(redis = %self.target, "listening for wake-ups");
                    // Whatever was published while unsubscribed is found by one look now.
                    wake.notify_one();
                    let mut messages = pubsub.into_on_message();
                    loop {
                        tokio::select! {
                            m = messages.next() => match m {
                                Some(_) => wake.notify_one(),
                                None => break,
                            },
                            _ = stop.cancelled() => return,
                        }
                    }
                    tracing::warn!(redis = %self.target, "wake-up subscription lost; subscribing again");
                    // Only a subscription that lasted earns a quick retry: a node that
                    // accepts and drops at once must not be hammered.
                    if since.elapsed() >= Duration::from_secs(30) {
                        backoff = Duration::from_millis(100);
                    }
                }
                Ok(Err(e)) => {
                    let why = redact(&e.to_string(), &self.secrets);
                    tracing::warn!(redis = %self.target, error = %why, "cannot subscribe to wake-ups; polling meanwhile");
                }
                Err(_) => {
                    tracing::warn!(redis = %self.target, "cannot subscribe to wake-ups (no answer); polling meanwhile")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.cancelled() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        // No node at all (an empty URL list never connects in the first place).
        stop.cancelled().await
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let reply = self.run_retrying(&self.scripts.stats, &[]).await?;
        let items = into_items(reply)?;
        let int = |v: Option<&Value>| match v {
            Some(Value::Int(n)) => Ok(*n),
            Some(Value::BulkString(b)) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| QueueError::Corrupt("stats".into(), "not a number".into())),
            _ => Err(QueueError::Corrupt("stats".into(), "a field is missing".into())),
        };
        let oldest = match items.get(2) {
            Some(Value::Nil) | None => None,
            other => Some(int(other)?),
        };
        Ok(QueueStats {
            queued: int(items.first())?.max(0) as u64,
            running: int(items.get(1))?.max(0) as u64,
            oldest_queued: oldest.and_then(chrono::DateTime::from_timestamp_millis),
            waiting_for_lock: int(items.get(3))?.max(0) as u64,
        })
    }

    async fn health(&self) -> Result<(), QueueError> {
        let conn = self.conn.clone();
        // One exchange under one deadline: PING proves the link, the SET that
        // the server accepts writes (a read-only replica or a paused or
        // write-refusing primary fails it).
        let key = format!("{}health", self.base);
        let check = |mut conn: Conn| {
            let key = key.clone();
            async move {
                let _: String = redis::cmd("PING").query_async(&mut conn).await?;
                let _: () = redis::cmd("SET").arg(&key).arg("ok").arg("PX").arg(10_000).query_async(&mut conn).await?;
                redis::cmd("TIME").query_async::<(i64, i64)>(&mut conn).await
            }
        };
        let before = chrono::Utc::now().timestamp_millis();
        let (secs, micros) = self
            .call(async {
                match check(conn.clone()).await {
                    // A connection Redis dropped (it restarted) fails once before the
                    // manager reconnects: that is not the answer to give.
                    Err(e) if connection::stale(&e) => check(conn).await,
                    r => r,
                }
            })
            .await?;
        self.set_clock_offset(before, secs, micros);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::any::Any;
    use std::collections::{HashMap, HashSet};

    use roller_testkit::redis::{RedisCluster, RedisServer, cli};

    use super::connection::{parse_version, secret_fragments};
    use super::*;
    use crate::queue::conformance::{self, Backend, DEADLINE, LONG_LEASE, ping};

    fn settings(url: String, prefix: &str) -> RedisSettings {
        RedisSettings { prefix: prefix.to_string(), ..RedisSettings::new(url) }
    }

    async fn connect(server: &RedisServer, prefix: &str) -> RedisQueue {
        RedisQueue::connect(&settings(server.url(), prefix), QueueOptions::default()).await.expect("connect")
    }

    fn signal(server: &RedisServer, sig: i32) {
        let pid = i32::try_from(server.pid().expect("redis-server runs")).unwrap();
        // SAFETY: kill(2) with a pid we started; no memory involved.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    /// Issue 16.3: a Redis that hangs with an enqueue in its buffer runs it when it
    /// resumes; the API had answered 503 ("not queued") long before. The enqueue now
    /// carries a deadline the script checks, so a 503 means not queued.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_enqueue_redis_runs_after_its_deadline_is_not_queued() {
        let server = RedisServer::start();
        let q = connect(&server, "late").await;
        // The script loaded, as in a running service (a first EVALSHA would fail NOSCRIPT on resume).
        q.enqueue(ping("warm", "g")).await.unwrap();
        signal(&server, libc::SIGSTOP);
        let started = std::time::Instant::now();
        let r = q.enqueue(ping("hung-then-resumed", "g")).await;
        assert!(matches!(r, Err(QueueError::Unavailable(_))), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "answered within its timeout");
        signal(&server, libc::SIGCONT);
        // The next call on the same connection comes after the buffered one.
        let later = wait_enqueue(&q, "after-resume").await;
        assert!(later.created);
        let lost = q.history(&WorkerId::parse("hung-then-resumed").unwrap(), 10).await.unwrap();
        assert!(lost.is_empty(), "an enqueue answered as unavailable was queued anyway: {lost:?}");
    }

    /// Issue 16.5: after Redis restarts, the first call on the old connection failed
    /// while the manager reconnected (the first heartbeat and the first request
    /// after an outage answered 503). Idempotent calls are tried once more.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_first_calls_after_redis_restarts_succeed() {
        let mut server = RedisServer::start();
        let q = connect(&server, "back").await;
        q.enqueue(ping("before", "g")).await.unwrap();
        server.kill();
        server.restart();
        q.health().await.expect("the first health check after the restart");
        let e = q.enqueue(ping("after", "g")).await.expect("the first enqueue after the restart");
        assert!(e.created);
        assert!(q.get(e.job.id).await.unwrap().is_some());
    }

    /// Enqueue for `worker`, trying again (bounded) until Redis answers.
    async fn wait_enqueue(q: &RedisQueue, worker: &str) -> Enqueued {
        for _ in 0..50 {
            if let Ok(e) = q.enqueue(ping(worker, "g")).await {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("Redis did not come back");
    }

    fn unavailable<T: std::fmt::Debug>(r: Result<T, QueueError>) -> String {
        match r {
            Err(QueueError::Unavailable(msg)) => msg,
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    /// One server per test; every handle uses the same prefix, so reopening
    /// reaches the same data.
    struct RedisBackend {
        server: RedisServer,
    }

    impl RedisBackend {
        fn new() -> Self {
            Self { server: RedisServer::start() }
        }
    }

    /// Writes are refused (NOREPLICAS) while this lives: the primary demands a
    /// replica it does not have.
    struct WritesBlocked(u16);

    impl Drop for WritesBlocked {
        fn drop(&mut self) {
            cli(self.0, &["config", "set", "min-replicas-to-write", "0"]);
        }
    }

    #[async_trait]
    impl Backend for RedisBackend {
        async fn open_with(&self, options: QueueOptions) -> Box<dyn Queue> {
            let s = settings(self.server.url(), "conformance");
            Box::new(RedisQueue::connect(&s, options).await.expect("connect to the test redis"))
        }

        async fn block_writes(&self) -> Box<dyn Any + Send> {
            let out = self.server.cli(&["config", "set", "min-replicas-to-write", "1"]);
            assert!(out.contains("OK"), "{out}");
            Box::new(WritesBlocked(self.server.port()))
        }

        async fn open_records(&self) -> Box<dyn crate::queue::records::Records> {
            let s = settings(self.server.url(), "conformance");
            Box::new(RedisQueue::connect(&s, QueueOptions::default()).await.expect("connect to the test redis"))
        }
    }

    mod redis_conformance {
        use super::RedisBackend;
        crate::queue::conformance::conformance_suite!(RedisBackend::new());
    }

    /// Wait (bounded) for the watcher to pass a wake-up on; false if none came.
    async fn woken(wake: &Notify) -> bool {
        tokio::time::timeout(DEADLINE, wake.notified()).await.is_ok()
    }

    #[tokio::test]
    async fn other_processes_wake_idle_runners_on_enqueue_release_and_a_freed_machine() {
        let mut server = RedisServer::start();
        let watcher = connect(&server, "wake").await;
        let api = connect(&server, "wake").await;
        let (wake, stop) = (Arc::new(Notify::new()), CancellationToken::new());
        let watching = tokio::spawn({
            let (wake, stop) = (wake.clone(), stop.clone());
            async move { watcher.watch_for_work(wake, stop).await }
        });
        // The first signal is the watcher's own look after subscribing.
        assert!(woken(&wake).await, "no wake-up after subscribing");

        // Each message is one notify_one; Notify keeps at most one permit, so each
        // check consumes exactly what its action sent.
        let a = api.enqueue(ping("a", "g")).await.unwrap().job;
        assert!(woken(&wake).await, "an enqueue in another process woke nobody");
        let again = api.enqueue(ping("a", "g")).await.unwrap();
        assert!(!again.created);
        let r = api.reserve("h", LONG_LEASE).await.unwrap().expect("a");
        assert_eq!(r.id, a.id);
        api.release(a.id, "h").await.unwrap();
        assert!(woken(&wake).await, "a job handed back woke nobody");
        // A second job for the same machine waits for the lock; finishing the first frees it.
        let r = api.reserve("h2", LONG_LEASE).await.unwrap().expect("a again");
        let waiting = api.enqueue(ping("a", "g2")).await.unwrap().job;
        assert!(woken(&wake).await);
        assert!(api.reserve("h3", LONG_LEASE).await.unwrap().is_none(), "a is busy");
        api.finish(r.id, "h2", Outcome::Succeeded(serde_json::json!({}))).await.unwrap();
        assert!(woken(&wake).await, "a freed machine with a job waiting woke nobody");
        assert_eq!(api.reserve("h3", LONG_LEASE).await.unwrap().map(|j| j.id), Some(waiting.id));

        // A restarted Redis: the watcher subscribes again by itself and wakes once for
        // whatever was published while it was away, then for new work as before.
        server.restart();
        assert!(woken(&wake).await, "no wake-up after Redis came back");
        let api = connect(&server, "wake").await;
        api.enqueue(ping("b", "g")).await.unwrap();
        assert!(woken(&wake).await, "no wake-up for an enqueue after the restart");

        stop.cancel();
        tokio::time::timeout(DEADLINE, watching).await.expect("the watcher stops when told").unwrap();
    }

    #[test]
    fn urls_and_versions_are_read_without_leaking_credentials() {
        let s = RedisSettings::new("redis://user:p@ss:w0rd@redis.example:6380/2, rediss://:hunter2@10.0.0.1:7000");
        assert_eq!(s.redacted_url(), "redis.example:6380/2,10.0.0.1:7000");
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("p@ss:w0rd") && !dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("redis.example:6380"), "{dbg}");
        let text = redact("failed for redis://user:p@ss:w0rd@redis.example and hunter2", &secret_fragments(&s.url));
        assert!(!text.contains("p@ss:w0rd") && !text.contains("hunter2"), "{text}");

        assert_eq!(parse_version("# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n"), Some((7, 0, 15)));
        assert_eq!(parse_version("redis_version:6.2\r\n"), Some((6, 2, 0)));
        assert_eq!(parse_version("redis_mode:standalone\r\n"), None);
        assert!(parse_version("redis_version:6.2.14").unwrap() < MIN_REDIS_VERSION);
    }

    #[tokio::test]
    async fn connect_to_a_closed_port_fails_fast_and_clearly() {
        let port = roller_testkit::free_port();
        let url = format!("redis://roller:s3cret-pw@127.0.0.1:{port}");
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            RedisQueue::connect(&settings(url, "p"), QueueOptions::default()),
        )
        .await
        .expect("connect gave up in bounded time");
        let msg = unavailable(r);
        assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
        assert!(msg.contains("cannot connect") || msg.contains("no answer"), "{msg}");
        assert!(!msg.contains("s3cret-pw"), "{msg}");
    }

    #[tokio::test]
    async fn a_bad_prefix_and_a_wrong_password_are_refused_without_leaking_it() {
        let server = RedisServer::start_with(&["--requirepass", "right-pw"]);
        let good = format!("redis://:right-pw@127.0.0.1:{}", server.port());
        let q = RedisQueue::connect(&settings(good.clone(), "p"), QueueOptions::default()).await.expect("connect");
        q.health().await.unwrap();
        for prefix in ["", "a{b", "c}"] {
            let msg = unavailable(RedisQueue::connect(&settings(good.clone(), prefix), QueueOptions::default()).await);
            assert!(msg.contains("prefix"), "{msg}");
        }
        let bad = format!("redis://:wrong-pw@127.0.0.1:{}", server.port());
        let msg = unavailable(RedisQueue::connect(&settings(bad, "p"), QueueOptions::default()).await);
        assert!(!msg.contains("wrong-pw"), "{msg}");
    }

    #[tokio::test]
    async fn a_restarted_redis_is_unavailable_quickly_then_used_again() {
        let mut server = RedisServer::start();
        let q = connect(&server, "restart").await;
        q.enqueue(ping("a", "g")).await.unwrap();
        server.kill();
        // Bounded: the API must turn this into a 503, not a hang.
        let bound = Duration::from_secs(5);
        for _ in 0..3 {
            let r = tokio::time::timeout(bound, q.enqueue(ping("b", "g"))).await.expect("enqueue answered");
            unavailable(r);
            let r = tokio::time::timeout(bound, q.reserve("r", LONG_LEASE)).await.expect("reserve answered");
            unavailable(r);
            let r = tokio::time::timeout(bound, q.health()).await.expect("health answered");
            let msg = unavailable(r);
            assert!(msg.contains(&format!("127.0.0.1:{}", server.port())) && !msg.contains("redis://"), "{msg}");
        }
        server.restart();
        // The same handle recovers by itself (the restarted server has no data
        // and no cached scripts).
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while q.health().await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "no recovery within {DEADLINE:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let j = q.enqueue(ping("c", "g")).await.unwrap();
        assert!(j.created);
        assert_eq!(q.reserve("r", LONG_LEASE).await.unwrap().unwrap().id, j.job.id);
    }

    #[tokio::test]
    async fn a_hung_redis_is_unavailable_within_the_response_timeout() {
        let server = RedisServer::start();
        let q = connect(&server, "hung").await;
        let j = q.enqueue(ping("a", "g")).await.unwrap().job;
        // The server stops answering every client for 3 s (it keeps the sockets open).
        let out = server.cli(&["client", "pause", "3000", "all"]);
        assert!(out.contains("OK"), "{out}");
        let r = tokio::time::timeout(Duration::from_secs(2), q.get(j.id))
            .await
            .expect("get answered before the pause ended");
        unavailable(r);
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Ok(Some(g)) = q.get(j.id).await {
                assert_eq!(g.id, j.id);
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "no recovery after the pause");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn every_key_shares_the_hash_tag() {
        let server = RedisServer::start();
        let q = connect(&server, "tagged").await;
        let a = q.enqueue(ping("a", "g")).await.unwrap().job;
        let b = q.enqueue(ping("b", "g")).await.unwrap().job;
        q.enqueue(ping("a", "g2")).await.unwrap();
        q.reserve("r", LONG_LEASE).await.unwrap().unwrap();
        q.append_log(a.id, "r", "x").await.unwrap();
        q.finish(a.id, "r", Outcome::Succeeded(serde_json::json!(1))).await.unwrap();
        q.reserve("r", LONG_LEASE).await.unwrap().unwrap();
        q.release(b.id, "r").await.unwrap();
        q.history(&WorkerId::parse("a").unwrap(), 10).await.unwrap();
        // Issue 14's keys: a job held (the leased set) and marked, a breaker reset.
        let held = q.reserve("r", LONG_LEASE).await.unwrap().unwrap();
        q.mark(held.id, "r", Mark::Armed("power on".into())).await.unwrap();
        let reset = BreakerReset { at: Utc::now(), by: "op".into(), reason: "why".into() };
        q.reset_breaker(&WorkerId::parse("a").unwrap(), reset).await.unwrap();
        q.health().await.unwrap();
        let keys: Vec<String> = server.cli(&["--scan"]).lines().map(str::to_string).collect();
        assert!(keys.len() >= 8, "{keys:?}");
        for k in ["{tagged}:leased", "{tagged}:breaker:a"] {
            assert!(keys.iter().any(|got| got == k), "{k} missing from {keys:?}");
        }
        for k in &keys {
            assert!(k.starts_with("{tagged}:"), "key {k} outside the hash tag");
        }
        // Final jobs carry the retention TTL; active ones none.
        let ttl = |k: String| server.cli(&["pttl", &k]).trim().parse::<i64>().unwrap();
        let week_ms = 7 * 24 * 3600 * 1000;
        let job_ttl = ttl(format!("{{tagged}}:job:{}", a.id));
        assert!(job_ttl > week_ms - 60_000 && job_ttl <= week_ms, "default retention is 7 days, TTL {job_ttl}");
        assert!(ttl(format!("{{tagged}}:log:{}", a.id)) > 0);
        assert_eq!(ttl(format!("{{tagged}}:job:{}", b.id)), -1);
    }

    #[tokio::test]
    async fn damaged_records_are_reported_as_corrupt_not_panicked_on() {
        let server = RedisServer::start();
        let q = connect(&server, "bad").await;
        let id = q.enqueue(ping("m", "g")).await.unwrap().job.id;
        let key = format!("{{bad}}:job:{id}");
        let corrupt = |r: Result<Option<Job>, QueueError>, what: &str| match r {
            Err(QueueError::Corrupt(got, msg)) => {
                assert_eq!(got, id.to_string());
                assert!(msg.contains(what), "{msg}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        };
        let set = |field: &str, value: &str| assert!(!server.cli(&["hset", &key, field, value]).contains("ERR"));
        set("task", "reboot-via-magic");
        corrupt(q.get(id).await, "unknown task");
        let h = q.history(&WorkerId::parse("m").unwrap(), 10).await;
        assert!(matches!(h, Err(QueueError::Corrupt(..))), "{h:?}");
        set("task", "ping");
        set("worker_id", "not a worker");
        corrupt(q.get(id).await, "worker_id");
        set("worker_id", "m");
        set("result", "{not json");
        corrupt(q.get(id).await, "not JSON");
        server.cli(&["hdel", &key, "result"]);
        set("state", "exploded");
        corrupt(q.get(id).await, "unknown state");
        set("state", "queued");
        set("attempts", "-1");
        corrupt(q.get(id).await, "attempts");
        set("attempts", "0");
        server.cli(&["rpush", &format!("{{bad}}:log:{id}"), "plain text"]);
        corrupt(q.get(id).await, "log line");

        // In a batch, an unreadable job (a task this roller does not know) does not
        // cost the others their reservation: they are handed out, it is left to its lease.
        let q = connect(&server, "batch").await;
        let bad = q.enqueue(ping("b1", "g")).await.unwrap().job.id;
        let good = q.enqueue(ping("b2", "g")).await.unwrap().job.id;
        server.cli(&["hset", &format!("{{batch}}:job:{bad}"), "task", "reboot-via-magic"]);
        let holders = vec!["h#0".to_string(), "h#1".to_string()];
        let got = q.reserve_many(&holders, LONG_LEASE).await.expect("the readable job is handed out");
        assert_eq!(got.iter().map(|j| (j.id, j.consumer.clone())).collect::<Vec<_>>(), [(good, Some("h#1".into()))]);
    }

    /// A queue on `cluster`'s nodes, under `prefix`.
    async fn cluster_queue(cluster: &RedisCluster, prefix: &str) -> RedisQueue {
        let s = RedisSettings { cluster: true, ..settings(cluster.url(), prefix) };
        RedisQueue::connect(&s, QueueOptions::default()).await.expect("connect to the cluster")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_queue_runs_on_a_three_master_cluster() {
        // Three masters (Redis Cluster's minimum), slots spread by `redis-cli --cluster create`.
        let cluster = RedisCluster::start(3);
        // Each check on its own prefix, so their keys land on different slots
        // and (with these names) on more than one node.
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("cluster-{n}")
        };
        conformance::enqueue_then_get_round_trips_every_field(&cluster_queue(&cluster, &next()).await).await;
        conformance::reserve_hands_out_oldest_first_and_marks_running(&cluster_queue(&cluster, &next()).await).await;
        conformance::finish_records_each_outcome(&cluster_queue(&cluster, &next()).await).await;
        conformance::coalescing_returns_the_active_job(&cluster_queue(&cluster, &next()).await).await;
        conformance::per_machine_lock_holds_until_finish(&cluster_queue(&cluster, &next()).await).await;
        conformance::busy_machine_does_not_starve_others(&cluster_queue(&cluster, &next()).await).await;
        conformance::expired_lease_is_taken_over(&cluster_queue(&cluster, &next()).await).await;
        conformance::release_requeues_at_once_keeping_attempts(&cluster_queue(&cluster, &next()).await).await;
        conformance::log_lines_keep_their_order(&cluster_queue(&cluster, &next()).await).await;
        conformance::history_is_newest_first_and_limited(&cluster_queue(&cluster, &next()).await).await;
        conformance::concurrent_reserves_hand_each_job_out_once(&cluster_queue(&cluster, &next()).await).await;
        conformance::reserve_many_hands_out_several_each_to_its_holder(&cluster_queue(&cluster, &next()).await).await;
        conformance::finish_many_answers_each_job_on_its_own(&cluster_queue(&cluster, &next()).await).await;
        // Issue 14's scripts and keys (marks, the leased set, breaker resets) in a cluster too.
        conformance::a_superseded_holder_cannot_write_into_the_new_attempts_log(
            &cluster_queue(&cluster, &next()).await,
        )
        .await;
        conformance::marks_are_recorded_for_the_holder_only(&cluster_queue(&cluster, &next()).await).await;
        conformance::an_armed_job_handed_back_goes_back_for_its_repair(&cluster_queue(&cluster, &next()).await).await;
        conformance::running_lists_the_holders_and_expire_ends_a_lease_now(&cluster_queue(&cluster, &next()).await)
            .await;
        conformance::breaker_resets_are_kept_newest_first_and_capped(&cluster_queue(&cluster, &next()).await).await;
        conformance::a_nonce_is_claimed_once_until_it_expires(&cluster_queue(&cluster, &next()).await).await;
        let q = cluster_queue(&cluster, &next()).await;
        conformance::enqueue_claiming_checks(&q, &q).await;
        cluster_queue(&cluster, &next()).await.health().await.expect("cluster health");

        // The checks' keys are spread over the masters, so routing by hash tag
        // was exercised, and every key of one queue sits in one slot.
        let mut holding = 0;
        let mut slots_by_prefix: HashMap<String, HashSet<String>> = HashMap::new();
        for node in cluster.nodes() {
            let keys: Vec<String> = node.cli(&["--scan"]).lines().map(str::to_string).collect();
            if !keys.is_empty() {
                holding += 1;
            }
            for k in keys {
                let tag = k.split(':').next().unwrap_or_default().to_string();
                let slot = node.cli(&["cluster", "keyslot", &k]).trim().to_string();
                slots_by_prefix.entry(tag).or_default().insert(slot);
            }
        }
        assert!(holding >= 2, "all keys on one node; routing not exercised");
        assert!(slots_by_prefix.len() >= 10, "{slots_by_prefix:?}");
        for (tag, slots) in &slots_by_prefix {
            assert_eq!(slots.len(), 1, "keys of {tag} span slots {slots:?}");
        }
    }
}
