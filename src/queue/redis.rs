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
//!   expired with attempts left (they keep their seq, so they stay first);
//! - `{p}:running` — ZSET id → lease_until: live leases, swept by every
//!   enqueue and reserve;
//! - `{p}:active:<worker_id>|<group>|<task>` → id of the queued/running job (coalescing);
//! - `{p}:lock:<worker_id>` → id of the job that last took the machine; the
//!   machine is busy only while that job is `running` with a live lease;
//! - `{p}:history:<worker_id>` — ZSET id → seq, trimmed to the history cap;
//! - `{p}:held:<holder>` → id of the job a reservation handed out, for its lease
//!   (deleted on finish/release): what `reclaim` finds after a lost answer;
//! - `{p}:health` — a short-lived key written by health checks;
//! - `{p}:wake` — a pub/sub channel (not a key): enqueue, release and a finish that
//!   frees a machine with a job waiting publish on it; idle runners subscribe.
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
//!
//! Failures: every Redis error or timeout is [`QueueError::Unavailable`], with
//! neither URL nor password in the text. Each call is bounded by the response
//! timeout as a whole, so callers (the API's 503, the runner's back-off) never
//! hang. A call that times out after the server ran its script is at-least-once
//! like everything else here, except a reserve: each reservation records
//! `held:<holder>` (for its lease, deleted on finish/release), so a runner whose
//! reserve went unanswered reclaims the job at once instead of leaving it to its
//! lease (found by the fault tests: a job stranded for the whole lease).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Enqueued, Finished, Job, JobState, LogLine, NewJob, Outcome, Queue, QueueError, QueueOptions, QueueStats};
use crate::actions::Task;
use crate::domain::{ClientId, JobId, TaskclusterName, WorkerGroup, WorkerId};

/// The oldest Redis this backend accepts. 7.0 is the oldest release the
/// conformance suite runs against (Debian 12 ships 7.0.15) and the oldest one
/// still maintained upstream when this was written; older servers are refused
/// rather than trusted untested.
pub const MIN_REDIS_VERSION: (u32, u32, u32) = (7, 0, 0);

/// How many queued jobs one reserve looks at, from the front.
pub const RESERVE_SCAN: usize = 1000;

/// How many expired leases one sweep handles.
pub const SWEEP_BATCH: usize = 100;

/// How to reach Redis.
#[derive(Clone)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]`; with `cluster`, several node
    /// URLs separated by commas. May hold a password: never logged or shown.
    pub url: String,
    pub cluster: bool,
    /// Key prefix, used as the hash tag `{prefix}`. Non-empty, without braces.
    pub prefix: String,
    /// Every queue call answers within this, Redis up or not; the API must
    /// answer 503 within 1 s when Redis is gone.
    pub response_timeout: Duration,
    pub connect_timeout: Duration,
}

impl RedisSettings {
    pub const DEFAULT_PREFIX: &'static str = "roller";
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_millis(800);
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(800);

    /// Defaults for everything but the URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            cluster: false,
            prefix: Self::DEFAULT_PREFIX.to_string(),
            response_timeout: Self::DEFAULT_RESPONSE_TIMEOUT,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// Where the URL points, without credentials: `host:port[/db]` per node.
    pub fn redacted_url(&self) -> String {
        self.url.split(',').map(redact_one_url).collect::<Vec<_>>().join(",")
    }
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &self.redacted_url())
            .field("cluster", &self.cluster)
            .field("prefix", &self.prefix)
            .field("response_timeout", &self.response_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

fn redact_one_url(url: &str) -> String {
    let url = url.trim();
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    // Userinfo ends at the last '@' before the path; a password may contain '@'.
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let path = path.split('?').next().unwrap_or("");
    format!("{host}{path}")
}

/// One connection type for both deployments, so the queue code is shared.
#[derive(Clone)]
enum Conn {
    /// Multiplexed, reconnects by itself after Redis comes back.
    Single(ConnectionManager),
    /// Follows slot moves and reconnects to nodes by itself.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

struct Scripts {
    enqueue: Script,
    reserve: Script,
    reclaim: Script,
    finish: Script,
    release: Script,
    append_log: Script,
    get: Script,
    history: Script,
    stats: Script,
}

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
    /// Where `watch_for_work` subscribes: every node URL (with credentials), tried in turn.
    nodes: Arc<Vec<String>>,
    connect_timeout: Duration,
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

/// Every substring of the URL setting that could be a credential.
fn secret_fragments(url: &str) -> Vec<String> {
    let mut out = vec![url.to_string()];
    for one in url.split(',') {
        out.push(one.trim().to_string());
        let rest = one.trim().split_once("://").map_or(one.trim(), |(_, r)| r);
        let authority = rest.split('/').next().unwrap_or("");
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            out.push(userinfo.to_string());
            if let Some((_, password)) = userinfo.split_once(':') {
                out.push(password.to_string());
            }
        }
    }
    out.retain(|s| !s.is_empty());
    // Longest first, so a password inside the URL does not leave the rest behind.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

fn redact(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_string();
    for s in secrets {
        text = text.replace(s.as_str(), "[redacted]");
    }
    text
}

fn parse_version(info: &str) -> Option<(u32, u32, u32)> {
    let v = info.lines().find_map(|l| l.trim().strip_prefix("redis_version:"))?;
    let mut parts = v.trim().split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next().flatten().unwrap_or(0), parts.next().flatten().unwrap_or(0)))
}

/// Every text in an INFO answer: one string from a node, or (cluster) one per node.
fn collect_texts(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::BulkString(b) => out.push(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => out.push(s.clone()),
        Value::VerbatimString { text, .. } => out.push(text.clone()),
        Value::Array(items) | Value::Set(items) => items.iter().for_each(|i| collect_texts(i, out)),
        Value::Map(pairs) => pairs.iter().for_each(|(_, i)| collect_texts(i, out)),
        _ => {}
    }
}

impl RedisQueue {
    /// Connect, check the server version, and load nothing else: scripts are
    /// sent on first use (and again after a restarted Redis forgot them).
    /// Fails within about `connect_timeout + response_timeout` when Redis is
    /// unreachable, with a message that names the host but not the password.
    pub async fn connect(settings: &RedisSettings, options: QueueOptions) -> Result<RedisQueue, QueueError> {
        let target = settings.redacted_url();
        let secrets = Arc::new(secret_fragments(&settings.url));
        let fail = |what: String| QueueError::Unavailable(redact(&format!("Redis at {target}: {what}"), &secrets));
        let prefix = &settings.prefix;
        if prefix.is_empty() || prefix.contains(['{', '}']) {
            return Err(fail(format!(
                "the key prefix {prefix:?} must be non-empty and without braces (it is used as the hash tag)"
            )));
        }
        let budget = settings.connect_timeout + settings.response_timeout;
        let conn = if settings.cluster {
            let nodes: Vec<&str> = settings.url.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
            let client = ClusterClient::builder(nodes)
                .connection_timeout(settings.connect_timeout)
                .response_timeout(settings.response_timeout)
                .retries(1)
                .build()
                .map_err(|e| fail(format!("invalid cluster settings: {e}")))?;
            let connected = tokio::time::timeout(budget, client.get_async_connection())
                .await
                .map_err(|_| fail(format!("no cluster node answered within {budget:?}")))?
                .map_err(|e| fail(format!("cannot connect to the cluster: {e}")))?;
            Conn::Cluster(connected)
        } else {
            let client = redis::Client::open(settings.url.as_str()).map_err(|e| fail(format!("invalid URL: {e}")))?;
            // Few, short retries: a reconnect is also attempted again on the
            // next call, so long back-off here would only delay recovery.
            let config = ConnectionManagerConfig::new()
                .set_response_timeout(Some(settings.response_timeout))
                .set_connection_timeout(Some(settings.connect_timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(200));
            let connected = tokio::time::timeout(budget, ConnectionManager::new_with_config(client, config))
                .await
                .map_err(|_| fail(format!("no answer within {budget:?}")))?
                .map_err(|e| fail(format!("cannot connect: {e}")))?;
            Conn::Single(connected)
        };
        let queue = RedisQueue {
            conn,
            scripts: Arc::new(Scripts::new()),
            base: format!("{{{prefix}}}:"),
            options,
            call_timeout: settings.response_timeout,
            target: target.clone(),
            secrets: Arc::clone(&secrets),
            nodes: Arc::new(
                settings.url.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect(),
            ),
            connect_timeout: settings.connect_timeout,
        };
        let info: Value = queue.call(redis::cmd("INFO").arg("server").query_async(&mut queue.conn.clone())).await?;
        let mut texts = Vec::new();
        collect_texts(&info, &mut texts);
        let versions: Vec<(u32, u32, u32)> = texts.iter().filter_map(|t| parse_version(t)).collect();
        let Some(&oldest) = versions.iter().min() else {
            return Err(fail("INFO server did not report redis_version".to_string()));
        };
        if oldest < MIN_REDIS_VERSION {
            let (a, b, c) = oldest;
            let (x, y, z) = MIN_REDIS_VERSION;
            return Err(fail(format!("Redis {a}.{b}.{c} is too old; roller needs Redis {x}.{y}.{z} or newer")));
        }
        Ok(queue)
    }

    /// The key prefix including the hash tag, e.g. `{roller}:`.
    pub fn key_base(&self) -> &str {
        &self.base
    }

    fn unavailable(&self, e: redis::RedisError) -> QueueError {
        QueueError::Unavailable(redact(&format!("Redis at {}: {e}", self.target), &self.secrets))
    }

    /// Run one Redis exchange under the per-call deadline.
    async fn call<T>(&self, fut: impl Future<Output = redis::RedisResult<T>>) -> Result<T, QueueError> {
        match tokio::time::timeout(self.call_timeout, fut).await {
            Ok(r) => r.map_err(|e| self.unavailable(e)),
            Err(_) => Err(QueueError::Unavailable(format!(
                "Redis at {} did not answer within {:?}",
                self.target, self.call_timeout
            ))),
        }
    }

    /// Invoke a script with the common leading arguments (key base, retention
    /// in ms). KEYS[1] is only there so a cluster client routes the call to the
    /// slot of the hash tag; the scripts build every key from the base.
    async fn run(&self, script: &Script, args: &[&str]) -> Result<Value, QueueError> {
        let retention = i64::try_from(self.options.retention.as_millis()).unwrap_or(i64::MAX).max(1);
        let mut inv = script.prepare_invoke();
        inv.key(format!("{}seq", self.base)).arg(&self.base).arg(retention);
        for a in args {
            inv.arg(*a);
        }
        let mut conn = self.conn.clone();
        self.call(inv.invoke_async(&mut conn)).await
    }
}

// ---------------------------------------------------------------------------
// Lua. Every script starts with PRELUDE. ARGV[1] = key base `{p}:`, ARGV[2] =
// retention in ms; the script's own arguments follow from ARGV[3].

const PRELUDE: &str = r#"
local P = ARGV[1]
local RETENTION = tonumber(ARGV[2])
local t = redis.call('TIME')
local NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function S(n) return string.format('%d', n) end
local function jk(id) return P .. 'job:' .. id end
local function lk(id) return P .. 'log:' .. id end
local function add_log(id, line)
  redis.call('RPUSH', lk(id), '{"at_ms":' .. S(NOW) .. ',"line":' .. cjson.encode(line) .. '}')
end
local function snapshot(id)
  return {redis.call('HGETALL', jk(id)), redis.call('LRANGE', lk(id), 0, -1)}
end
-- Unix ms as chrono's to_rfc3339 prints it (days-from-civil, inverted).
local function rfc3339(ms)
  local s = math.floor(ms / 1000)
  local frac = ms - s * 1000
  local days = math.floor(s / 86400)
  local secs = s - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp + 3
  if mp >= 10 then m = mp - 9 end
  if m <= 2 then y = y + 1 end
  local out = string.format('%04d-%02d-%02dT%02d:%02d:%02d', y, m, d,
    math.floor(secs / 3600), math.floor((secs % 3600) / 60), secs % 60)
  if frac > 0 then out = out .. string.format('.%03d', frac) end
  return out .. '+00:00'
end
-- Tell idle runners in other processes that work may be waiting (they poll too:
-- a lost message costs at most one poll interval).
local function wake() redis.call('PUBLISH', P .. 'wake', '') end
-- A history set expires with its last final job, and never while one of its
-- jobs is still queued or running. Returns whether one is.
local function refresh_history_ttl(wid)
  local hk = P .. 'history:' .. wid
  for _, id in ipairs(redis.call('ZRANGE', hk, 0, -1)) do
    local st = redis.call('HGET', jk(id), 'state')
    if st == 'queued' or st == 'running' then
      redis.call('PERSIST', hk)
      return true
    end
  end
  redis.call('PEXPIRE', hk, RETENTION)
  return false
end
-- Move a job to a final state: drop its lease, queue entries, coalescing and
-- lock keys; log `line` (if any); start its retention. Returns whether another
-- job of the same machine is still queued or running.
local function finalize(id, state, fields, line)
  local k = jk(id)
  redis.call('HSET', k, 'state', state, 'finished_at', S(NOW), unpack(fields))
  redis.call('HDEL', k, 'lease_until')
  redis.call('ZREM', P .. 'running', id)
  redis.call('ZREM', P .. 'queued', id)
  local f = redis.call('HMGET', k, 'worker_id', 'worker_group', 'task')
  if f[1] and f[2] and f[3] then
    local ak = P .. 'active:' .. f[1] .. '|' .. f[2] .. '|' .. f[3]
    if redis.call('GET', ak) == id then redis.call('DEL', ak) end
    local lock = P .. 'lock:' .. f[1]
    if redis.call('GET', lock) == id then redis.call('DEL', lock) end
  end
  if line then add_log(id, line) end
  redis.call('PEXPIRE', k, RETENTION)
  redis.call('PEXPIRE', lk(id), RETENTION)
  if f[1] then return refresh_history_ttl(f[1]) end
  return false
end
-- Expired leases: on the last allowed attempt the job fails; otherwise it goes
-- back to the queue under its original seq, still `running` so the next
-- reserve logs a takeover.
local function sweep()
  local ids = redis.call('ZRANGEBYSCORE', P .. 'running', '-inf', '(' .. S(NOW), 'LIMIT', 0, __SWEEP_BATCH__)
  for _, id in ipairs(ids) do
    redis.call('ZREM', P .. 'running', id)
    local f = redis.call('HMGET', jk(id), 'state', 'attempts', 'max_attempts', 'consumer', 'seq')
    if f[1] == 'running' then
      local attempts = tonumber(f[2]) or 0
      local max = tonumber(f[3]) or 1
      if attempts >= max then
        local reason = 'runner lost the job (lease expired) after ' .. S(attempts) .. ' attempt(s); not retried'
        finalize(id, 'failed', {'error', reason}, reason .. ' (last held by ' .. (f[4] or 'unknown runner') .. ')')
      else
        -- Without its seq (a damaged hash) it goes first rather than nowhere.
        redis.call('ZADD', P .. 'queued', f[5] or 0, id)
      end
    end
  end
end
"#;

/// ARGV[3..]: new id, worker_id, worker_group, task, requester, max_attempts,
/// history cap, then field/value pairs of the optional fields that are set.
/// Returns {0, fields, log} for the existing job it coalesced into, or
/// {1, created_at ms} for a new one.
const ENQUEUE: &str = r#"
sweep()
local id, wid, grp, task = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local cap = tonumber(ARGV[9])
local ak = P .. 'active:' .. wid .. '|' .. grp .. '|' .. task
local existing = redis.call('GET', ak)
if existing then
  local st = redis.call('HGET', jk(existing), 'state')
  if st == 'queued' or st == 'running' then
    local snap = snapshot(existing)
    return {0, snap[1], snap[2]}
  end
end
local seq = redis.call('INCR', P .. 'seq')
local k = jk(id)
local fields = {'id', id, 'seq', S(seq), 'task', task, 'worker_id', wid, 'worker_group', grp,
  'requester', ARGV[7], 'state', 'queued', 'attempts', '0', 'max_attempts', ARGV[8], 'created_at', S(NOW)}
for i = 10, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', k, unpack(fields))
redis.call('ZADD', P .. 'queued', seq, id)
redis.call('SET', ak, id)
local hk = P .. 'history:' .. wid
redis.call('ZADD', hk, seq, id)
redis.call('PERSIST', hk)
-- Past the cap, final (or vanished) jobs go; queued and running ones stay.
local excess = redis.call('ZCARD', hk) - cap
if excess > 0 then
  for _, old in ipairs(redis.call('ZRANGE', hk, 0, -1)) do
    if excess <= 0 then break end
    local st = redis.call('HGET', jk(old), 'state')
    if st ~= 'queued' and st ~= 'running' then
      redis.call('ZREM', hk, old)
      redis.call('DEL', jk(old), lk(old))
      excess = excess - 1
    end
  end
end
wake()
-- The caller built every field but these two: no need to send the hash back.
return {1, NOW}
"#;

/// ARGV[3..]: lease in ms, then one holder id per job wanted. Returns
/// {fields, log, fields, log, ...}: the i-th job is held by the i-th holder.
const RESERVE: &str = r#"
sweep()
local lease = tonumber(ARGV[3])
local want = #ARGV - 3
local out = {}
local busy = {}
-- The oldest waiting job is usually runnable: look at a few first and widen only
-- past busy machines (reading all __RESERVE_SCAN__ ids on every reserve dominated a drain).
local start, size = 0, want + 16
while start < __RESERVE_SCAN__ and #out < want * 2 do
  local ids = redis.call('ZRANGE', P .. 'queued', start, math.min(start + size, __RESERVE_SCAN__) - 1)
  if #ids == 0 then break end
  local removed = 0
  for _, id in ipairs(ids) do
    if #out >= want * 2 then break end
    local k = jk(id)
    local f = redis.call('HMGET', k, 'worker_id', 'state', 'attempts', 'max_attempts', 'consumer', 'lease_until')
    local lease_until = tonumber(f[6])
    if not f[1] or (f[2] ~= 'queued' and f[2] ~= 'running') or (f[2] == 'running' and lease_until and lease_until >= NOW) then
      -- Not waiting (vanished, final, or live elsewhere): it has no business here.
      redis.call('ZREM', P .. 'queued', id)
      removed = removed + 1
    elseif not busy[f[1]] then
      local lock = P .. 'lock:' .. f[1]
      local holder = redis.call('GET', lock)
      if holder and holder ~= id then
        local h = redis.call('HMGET', jk(holder), 'state', 'lease_until')
        local until_ = tonumber(h[2])
        if h[1] == 'running' and until_ and until_ >= NOW then busy[f[1]] = true end
      end
      if not busy[f[1]] then
        local consumer = ARGV[4 + #out / 2]
        local before = tonumber(f[3]) or 0
        local attempt = before + 1
        local new_until = NOW + lease
        redis.call('HSET', k, 'state', 'running', 'consumer', consumer, 'lease_until', S(new_until),
          'attempts', S(attempt), 'started_at', S(NOW))
        redis.call('ZREM', P .. 'queued', id)
        removed = removed + 1
        redis.call('ZADD', P .. 'running', new_until, id)
        redis.call('SET', lock, id)
        -- One job per machine at a time, also within this call.
        busy[f[1]] = true
        -- Lets this reservation be reclaimed if its answer never reaches the runner.
        redis.call('SET', P .. 'held:' .. consumer, id, 'PX', lease)
        local line = 'attempt ' .. S(attempt) .. ' of ' .. (f[4] or '?') .. ' started by ' .. consumer
        if f[2] == 'running' then
          local when = 'an unknown time'
          if lease_until then when = rfc3339(lease_until) end
          line = line .. ' (takeover: the lease of ' .. (f[5] or 'unknown runner') .. ' expired at ' .. when .. ')'
        elseif before > 0 then
          line = line .. ' (the job was handed back by its previous runner)'
        end
        add_log(id, line)
        local snap = snapshot(id)
        out[#out + 1] = snap[1]
        out[#out + 1] = snap[2]
      end
    end
  end
  -- Removed and reserved ids shifted the rest down; busy ones stay and are skipped by the next window.
  start = start + #ids - removed
  size = size * 4
end
return out
"#;

/// ARGV[3..]: per job, five arguments: id, consumer, final state, 'result' or
/// 'error', its value. Returns per job 1, or 0 when the consumer does not hold it.
const FINISH: &str = r#"
local out = {}
local freed = false
for i = 3, #ARGV, 5 do
  local id, consumer = ARGV[i], ARGV[i + 1]
  local f = redis.call('HMGET', jk(id), 'state', 'consumer')
  if f[1] ~= 'running' or f[2] ~= consumer then
    out[#out + 1] = 0
  else
    redis.call('DEL', P .. 'held:' .. consumer)
    -- A runner whose lease expired but was not taken over yet may still finish:
    -- the work was done, and discarding it would only cause a needless re-run.
    -- Its machine is free: a job of it waiting for the lock is runnable now.
    if finalize(id, ARGV[i + 2], {ARGV[i + 3], ARGV[i + 4]}, nil) then freed = true end
    out[#out + 1] = 1
  end
end
if freed then wake() end
return out
"#;

/// ARGV[3..]: id, consumer. Returns 1, or 0 when the consumer does not hold the job.
const RELEASE: &str = r#"
local id, consumer = ARGV[3], ARGV[4]
local k = jk(id)
local f = redis.call('HMGET', k, 'state', 'consumer', 'attempts', 'max_attempts', 'seq', 'worker_id')
if f[1] ~= 'running' or f[2] ~= consumer then return 0 end
redis.call('DEL', P .. 'held:' .. consumer)
local attempts = tonumber(f[3]) or 0
local max = tonumber(f[4]) or 1
if attempts >= max then
  -- Requeueing would hand the job out more than max_attempts times.
  local reason = 'handed back by ' .. consumer .. ' (shutdown) on its last allowed attempt (' .. S(attempts) ..
    ' of ' .. S(max) .. '); not retried'
  finalize(id, 'failed', {'error', reason}, reason)
  return 1
end
redis.call('HSET', k, 'state', 'queued')
redis.call('HDEL', k, 'consumer', 'lease_until')
redis.call('ZREM', P .. 'running', id)
redis.call('ZADD', P .. 'queued', f[5], id)
if f[6] and redis.call('GET', P .. 'lock:' .. f[6]) == id then redis.call('DEL', P .. 'lock:' .. f[6]) end
add_log(id, 'handed back by ' .. consumer .. ' (shutdown)')
wake()
return 1
"#;

/// ARGV[3..]: id, line. Returns 1, or 0 for an unknown (or expired) job.
const APPEND_LOG: &str = r#"
local id = ARGV[3]
local k = jk(id)
if redis.call('EXISTS', k) == 0 then return 0 end
add_log(id, ARGV[4])
-- A final job's log expires with the job.
local ttl = redis.call('PTTL', k)
if ttl > 0 then redis.call('PEXPIRE', lk(id), ttl) end
return 1
"#;

/// ARGV[3..]: consumer, lease in ms. Returns {} or {fields, log}: the job that
/// consumer holds with a live lease, its lease started again from now.
const RECLAIM: &str = r#"
local consumer = ARGV[3]
local lease = tonumber(ARGV[4])
local held = P .. 'held:' .. consumer
local id = redis.call('GET', held)
if not id then return {} end
local f = redis.call('HMGET', jk(id), 'state', 'consumer', 'lease_until')
local lease_until = tonumber(f[3])
if f[1] ~= 'running' or f[2] ~= consumer or not lease_until or lease_until < NOW then return {} end
local new_until = NOW + lease
redis.call('HSET', jk(id), 'lease_until', S(new_until))
redis.call('ZADD', P .. 'running', new_until, id)
redis.call('PEXPIRE', held, lease)
return snapshot(id)
"#;

/// ARGV[3]: id. Returns {} or {fields, log}.
const GET: &str = r#"
local id = ARGV[3]
if redis.call('EXISTS', jk(id)) == 0 then return {} end
return snapshot(id)
"#;

/// ARGV[3..]: worker_id, limit. Returns {fields, log, fields, log, ...}, newest first.
const HISTORY: &str = r#"
local limit = tonumber(ARGV[4])
local out = {}
if limit <= 0 then return out end
local n = 0
for _, id in ipairs(redis.call('ZREVRANGE', P .. 'history:' .. ARGV[3], 0, -1)) do
  if redis.call('EXISTS', jk(id)) == 1 then
    local snap = snapshot(id)
    table.insert(out, snap[1])
    table.insert(out, snap[2])
    n = n + 1
    if n >= limit then break end
  end
end
return out
"#;

/// Waiting jobs, live leases, and the oldest waiting job's enqueue time (unix ms).
/// Lock waits are counted over the same window reserve looks at.
const STATS: &str = r#"
local ids = redis.call('ZRANGE', P .. 'queued', 0, __RESERVE_SCAN__ - 1)
local oldest = false
if ids[1] then oldest = redis.call('HGET', jk(ids[1]), 'created_at') end
local locked = 0
for _, id in ipairs(ids) do
  local w = redis.call('HGET', jk(id), 'worker_id')
  local holder = w and redis.call('GET', P .. 'lock:' .. w)
  if holder and holder ~= id then
    local h = redis.call('HMGET', jk(holder), 'state', 'lease_until')
    local until_ = tonumber(h[2])
    if h[1] == 'running' and until_ and until_ >= NOW then locked = locked + 1 end
  end
end
return {redis.call('ZCARD', P .. 'queued'), redis.call('ZCOUNT', P .. 'running', NOW, '+inf'), oldest, locked}
"#;

impl Scripts {
    fn new() -> Self {
        let prelude = PRELUDE
            .replace("__SWEEP_BATCH__", &SWEEP_BATCH.to_string())
            .replace("__RESERVE_SCAN__", &RESERVE_SCAN.to_string());
        let script = |body: &str| {
            Script::new(&format!("{prelude}{}", body.replace("__RESERVE_SCAN__", &RESERVE_SCAN.to_string())))
        };
        Scripts {
            enqueue: script(ENQUEUE),
            reserve: script(RESERVE),
            reclaim: script(RECLAIM),
            finish: script(FINISH),
            release: script(RELEASE),
            append_log: script(APPEND_LOG),
            get: script(GET),
            history: script(HISTORY),
            stats: script(STATS),
        }
    }
}

// ---------------------------------------------------------------------------
// Decoding what the scripts return.

#[derive(serde::Deserialize)]
struct StoredLine {
    at_ms: i64,
    line: String,
}

fn corrupt(id: &str, what: impl Into<String>) -> QueueError {
    QueueError::Corrupt(id.to_string(), what.into())
}

fn into_items(v: Value) -> Result<Vec<Value>, QueueError> {
    match v {
        Value::Array(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(corrupt("(script reply)", format!("expected an array, got {other:?}"))),
    }
}

fn into_strings(v: Value) -> Result<Vec<String>, QueueError> {
    redis::from_redis_value::<Vec<String>>(v).map_err(|e| corrupt("(script reply)", e.to_string()))
}

fn into_int(v: Value) -> Result<i64, QueueError> {
    redis::from_redis_value::<i64>(v).map_err(|e| corrupt("(script reply)", e.to_string()))
}

/// A job from its HGETALL (flat field/value list) and its log list.
fn decode_job(fields: Value, log: Value) -> Result<Job, QueueError> {
    let flat = into_strings(fields)?;
    let mut map: HashMap<String, String> = HashMap::new();
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        map.insert(k, v);
    }
    let id = map.get("id").cloned().unwrap_or_else(|| "(no id)".to_string());
    let c = |what: String| corrupt(&id, what);
    let req = |name: &str| map.get(name).ok_or_else(|| c(format!("{name} is missing")));
    let int = |name: &str, s: &str| s.parse::<i64>().map_err(|_| c(format!("{name} {s:?} is not a number")));
    let dt = |name: &str, s: &str| {
        let ms = int(name, s)?;
        DateTime::<Utc>::from_timestamp_millis(ms).ok_or_else(|| c(format!("{name} {ms} is out of range")))
    };
    let opt_dt = |name: &str| map.get(name).map(|s| dt(name, s)).transpose();
    let count = |name: &str| {
        let s = req(name)?;
        s.parse::<u32>().map_err(|_| c(format!("{name} {s:?} out of range")))
    };
    let opt_name =
        |kind: &str| map.get(kind).map(|s| TaskclusterName::parse(kind, s).map_err(|e| c(e.to_string()))).transpose();
    let task = req("task")?;
    let state = req("state")?;
    let mut lines = Vec::new();
    for raw in into_strings(log)? {
        let l: StoredLine = serde_json::from_str(&raw).map_err(|e| c(format!("log line is not JSON: {e}")))?;
        lines.push(LogLine { at: dt("log time", &l.at_ms.to_string())?, line: l.line });
    }
    Ok(Job {
        id: JobId::parse(&id).map_err(|e| c(e.to_string()))?,
        task: Task::parse(task).ok_or_else(|| c(format!("unknown task {task:?}")))?,
        worker_id: WorkerId::parse(req("worker_id")?).map_err(|e| c(e.to_string()))?,
        worker_group: WorkerGroup::parse(req("worker_group")?).map_err(|e| c(e.to_string()))?,
        requester: ClientId::parse(req("requester")?).map_err(|e| c(e.to_string()))?,
        origin: map.get("origin").cloned(),
        provisioner_id: opt_name("provisioner_id")?,
        worker_type: opt_name("worker_type")?,
        state: JobState::parse(state).ok_or_else(|| c(format!("unknown state {state:?}")))?,
        attempts: count("attempts")?,
        max_attempts: count("max_attempts")?,
        created_at: dt("created_at", req("created_at")?)?,
        started_at: opt_dt("started_at")?,
        finished_at: opt_dt("finished_at")?,
        consumer: map.get("consumer").cloned(),
        lease_until: opt_dt("lease_until")?,
        log: lines,
        result: map
            .get("result")
            .map(|s| serde_json::from_str(s))
            .transpose()
            .map_err(|e| c(format!("result is not JSON: {e}")))?,
        error: map.get("error").cloned(),
    })
}

/// `{fields, log}` or `{}`.
fn decode_snapshot(v: Value) -> Result<Option<Job>, QueueError> {
    let mut items = into_items(v)?.into_iter();
    match (items.next(), items.next()) {
        (Some(fields), Some(log)) => decode_job(fields, log).map(Some),
        (None, _) => Ok(None),
        (Some(_), None) => Err(corrupt("(script reply)", "a job without its log")),
    }
}

fn lease_ms(lease: Duration) -> String {
    // At least 1 ms: a zero lease would be expired as it is taken.
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX).max(1).to_string()
}

#[async_trait]
impl Queue for RedisQueue {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued, QueueError> {
        let job_id = JobId::new();
        let id = job_id.to_string();
        let max_attempts = job.task.max_attempts().to_string();
        let cap = self.options.effective_history_cap().to_string();
        let mut args: Vec<&str> = vec![
            &id,
            job.worker_id.as_str(),
            job.worker_group.as_str(),
            job.task.name(),
            job.requester.as_str(),
            &max_attempts,
            &cap,
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
        let reply = self.run(&self.scripts.enqueue, &args).await?;
        let mut items = into_items(reply)?.into_iter();
        let incomplete = || corrupt(&id, "enqueue reply is incomplete");
        let created = into_int(items.next().ok_or_else(incomplete)?)? == 1;
        if !created {
            let fields = items.next().ok_or_else(incomplete)?;
            let log = items.next().ok_or_else(incomplete)?;
            return Ok(Enqueued { job: decode_job(fields, log)?, created: false });
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
            state: JobState::Queued,
            attempts: 0,
            max_attempts: job.task.max_attempts(),
            created_at,
            started_at: None,
            finished_at: None,
            consumer: None,
            lease_until: None,
            log: Vec::new(),
            result: None,
            error: None,
        };
        Ok(Enqueued { job, created: true })
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

    async fn append_log(&self, id: JobId, line: &str) -> Result<(), QueueError> {
        let reply = self.run(&self.scripts.append_log, &[&id.to_string(), line]).await?;
        match into_int(reply)? {
            1 => Ok(()),
            _ => Err(QueueError::LostLease(id)),
        }
    }

    async fn finish(&self, id: JobId, consumer: &str, outcome: Outcome) -> Result<(), QueueError> {
        let item = Finished { id, consumer: consumer.to_string(), outcome };
        self.finish_many(std::slice::from_ref(&item)).await?.pop().unwrap_or(Err(QueueError::LostLease(id)))
    }

    async fn finish_many(&self, items: &[Finished]) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        let mut answers: Vec<Result<(), QueueError>> = Vec::with_capacity(items.len());
        let mut args: Vec<String> = Vec::with_capacity(items.len() * 5);
        let mut sent = Vec::with_capacity(items.len());
        for (i, f) in items.iter().enumerate() {
            let (field, value) = match &f.outcome {
                Outcome::Succeeded(v) => match serde_json::to_string(v) {
                    Ok(json) => ("result", json),
                    Err(e) => {
                        let why = format!("cannot serialise the result of job {}: {e}", f.id);
                        answers.push(Err(QueueError::Unavailable(why)));
                        continue;
                    }
                },
                Outcome::Failed(e) | Outcome::TimedOut(e) | Outcome::Cancelled(e) => ("error", e.clone()),
            };
            args.extend([f.id.to_string(), f.consumer.clone(), f.outcome.state().as_str().into(), field.into(), value]);
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
        decode_snapshot(self.run(&self.scripts.get, &[&id.to_string()]).await?)
    }

    async fn history(&self, worker_id: &WorkerId, limit: usize) -> Result<Vec<Job>, QueueError> {
        let limit = limit.min(self.options.effective_history_cap()).to_string();
        let reply = self.run(&self.scripts.history, &[worker_id.as_str(), &limit]).await?;
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
        for url in self.nodes.iter().cycle() {
            let subscribe = async {
                let mut pubsub = redis::Client::open(url.as_str())?.get_async_pubsub().await?;
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
        let reply = self.run(&self.scripts.stats, &[]).await?;
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
        let mut conn = self.conn.clone();
        // One exchange under one deadline: PING proves the link, the SET that
        // the server accepts writes (a read-only replica or a paused or
        // write-refusing primary fails it).
        let key = format!("{}health", self.base);
        self.call(async {
            let _: String = redis::cmd("PING").query_async(&mut conn).await?;
            let _: () = redis::cmd("SET").arg(&key).arg("ok").arg("PX").arg(10_000).query_async(&mut conn).await?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::any::Any;
    use std::collections::HashSet;

    use roller_testkit::redis::{RedisCluster, RedisServer, cli};

    use super::*;
    use crate::queue::conformance::{self, Backend, DEADLINE, LONG_LEASE, ping};

    fn settings(url: String, prefix: &str) -> RedisSettings {
        RedisSettings { prefix: prefix.to_string(), ..RedisSettings::new(url) }
    }

    async fn connect(server: &RedisServer, prefix: &str) -> RedisQueue {
        RedisQueue::connect(&settings(server.url(), prefix), QueueOptions::default()).await.expect("connect")
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
        q.append_log(a.id, "x").await.unwrap();
        q.finish(a.id, "r", Outcome::Succeeded(serde_json::json!(1))).await.unwrap();
        q.reserve("r", LONG_LEASE).await.unwrap().unwrap();
        q.release(b.id, "r").await.unwrap();
        q.history(&WorkerId::parse("a").unwrap(), 10).await.unwrap();
        q.health().await.unwrap();
        let keys: Vec<String> = server.cli(&["--scan"]).lines().map(str::to_string).collect();
        assert!(keys.len() >= 8, "{keys:?}");
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
