//! Reaching Redis: the settings (and keeping their credentials out of every
//! text), one connection type for a single server or a cluster, the version
//! check on connect, and every call under the response timeout. Apart from the
//! queue operations because none of it knows what a job is.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};

use super::scripts::Scripts;
use super::tls::{RedisLogin, RedisTls, client, hint};
use super::{MIN_REDIS_VERSION, RedisQueue};
use crate::queue::{QueueError, QueueOptions};

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
    /// An ACL user and password given apart from the URL (the password never in it).
    pub login: RedisLogin,
    /// The CA and client certificate for a `rediss://` URL.
    pub tls: RedisTls,
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
            login: RedisLogin::default(),
            tls: RedisTls::default(),
        }
    }

    /// Where the URL points, without credentials: `host:port[/db]` per node.
    pub fn redacted_url(&self) -> String {
        self.url.split(',').map(redact_one_url).collect::<Vec<_>>().join(",")
    }

    /// What the banner and the logs say: `rediss://host:port` per node, and the user.
    pub fn describe(&self) -> String {
        let tls = self.url.trim_start().starts_with("rediss://");
        let scheme = if tls { "rediss" } else { "redis" };
        let nodes: Vec<String> = self.url.split(',').map(|u| format!("{scheme}://{}", redact_one_url(u))).collect();
        let mut text = nodes.join(",");
        if let Some(user) = &self.login.username {
            text.push_str(&format!(" as {user}"));
        }
        if tls {
            text.push_str(match (&self.tls.ca_file, &self.tls.client) {
                (Some(_), Some(_)) => " (TLS, private CA, client certificate)",
                (Some(_), None) => " (TLS, private CA)",
                (None, Some(_)) => " (TLS, system roots, client certificate)",
                (None, None) => " (TLS, system roots)",
            });
        }
        text
    }

    /// Every text that must never appear in a message: the URL's credentials, the password.
    fn secrets(&self) -> Vec<String> {
        let mut out = secret_fragments(&self.url);
        if let Some(p) = &self.login.password {
            out.push(secrecy::ExposeSecret::expose_secret(p).to_string());
        }
        out.retain(|s| !s.is_empty());
        out.sort_by_key(|s| std::cmp::Reverse(s.len()));
        out
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
            .field("login", &self.login)
            .field("tls", &self.tls)
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
pub(super) enum Conn {
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

/// An error that means the connection died under the call (Redis restarted, the link
/// dropped), not that Redis refused it: the manager reconnects on the next call.
pub(super) fn stale(e: &redis::RedisError) -> bool {
    e.is_connection_dropped() || e.is_io_error() || e.is_connection_refusal()
}

/// Every substring of the URL setting that could be a credential.
pub(super) fn secret_fragments(url: &str) -> Vec<String> {
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

pub(super) fn redact(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_string();
    for s in secrets {
        text = text.replace(s.as_str(), "[redacted]");
    }
    text
}

pub(super) fn parse_version(info: &str) -> Option<(u32, u32, u32)> {
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
        let secrets = Arc::new(settings.secrets());
        let fail = |what: String| {
            let what = match hint(&what, &settings.tls) {
                Some(h) => format!("{what} ({h})"),
                None => what,
            };
            QueueError::Unavailable(redact(&format!("Redis at {target}: {what}"), &secrets))
        };
        let prefix = &settings.prefix;
        if prefix.is_empty() || prefix.contains(['{', '}']) {
            return Err(fail(format!(
                "the key prefix {prefix:?} must be non-empty and without braces (it is used as the hash tag)"
            )));
        }
        let budget = settings.connect_timeout + settings.response_timeout;
        let urls: Vec<&str> = settings.url.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        // One client per node, login and certificates applied: the subscription uses them too.
        let nodes = urls
            .iter()
            .map(|u| client(u, &settings.login, &settings.tls))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(e.to_string()))?;
        let conn = if settings.cluster {
            let mut builder = ClusterClient::builder(urls)
                .connection_timeout(settings.connect_timeout)
                .response_timeout(settings.response_timeout)
                .retries(1);
            if let Some(user) = &settings.login.username {
                builder = builder.username(user);
            }
            if let Some(password) = &settings.login.password {
                builder = builder.password(secrecy::ExposeSecret::expose_secret(password));
            }
            if let Some(certs) = settings.tls.certificates().map_err(fail)? {
                builder = builder.certs(certs);
            }
            let client = builder.build().map_err(|e| fail(format!("invalid cluster settings: {e}")))?;
            let connected = tokio::time::timeout(budget, client.get_async_connection())
                .await
                .map_err(|_| fail(format!("no cluster node answered within {budget:?}")))?
                .map_err(|e| fail(format!("cannot connect to the cluster: {e}")))?;
            Conn::Cluster(connected)
        } else {
            let [client] = <[redis::Client; 1]>::try_from(nodes.clone()).map_err(|_| {
                fail("invalid URL: give one server, or set redis.cluster for a list of cluster nodes".to_string())
            })?;
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
            nodes: Arc::new(nodes),
            connect_timeout: settings.connect_timeout,
            clock_offset_ms: Arc::default(),
        };
        // Under TLS 1.3 a server that wants a client certificate says so after the
        // handshake, at the first call: these errors get the same hints as the connect's.
        let hinted = |e: QueueError| match e {
            QueueError::Unavailable(msg) => match hint(&msg, &settings.tls) {
                Some(h) => QueueError::Unavailable(redact(&format!("{msg} ({h})"), &secrets)),
                None => QueueError::Unavailable(msg),
            },
            other => other,
        };
        let before = chrono::Utc::now().timestamp_millis();
        let (secs, micros): (i64, i64) =
            queue.call(redis::cmd("TIME").query_async(&mut queue.conn.clone())).await.map_err(hinted)?;
        queue.set_clock_offset(before, secs, micros);
        let info: Value =
            queue.call(redis::cmd("INFO").arg("server").query_async(&mut queue.conn.clone())).await.map_err(hinted)?;
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
    pub(super) async fn call<T>(&self, fut: impl Future<Output = redis::RedisResult<T>>) -> Result<T, QueueError> {
        match tokio::time::timeout(self.call_timeout, fut).await {
            Ok(r) => r.map_err(|e| self.unavailable(e)),
            Err(_) => Err(QueueError::Unavailable(format!(
                "Redis at {} did not answer within {:?}",
                self.target, self.call_timeout
            ))),
        }
    }

    /// Record Redis's clock against ours from a `TIME` answer to a call sent at `before`
    /// (our ms): the answer is taken as of the middle of the exchange.
    pub(super) fn set_clock_offset(&self, before: i64, secs: i64, micros: i64) {
        let after = chrono::Utc::now().timestamp_millis();
        let redis_ms = secs.saturating_mul(1000).saturating_add(micros / 1000);
        let offset = redis_ms - (before + (after - before) / 2);
        self.clock_offset_ms.store(offset, std::sync::atomic::Ordering::Relaxed);
    }

    /// The latest moment, in Redis's clock, at which a write started now may still
    /// take effect: a margin before this call's own timeout, so that a write Redis
    /// runs in time is answered in time, and one it runs later (it hung with the call
    /// in its buffer) is refused by the script instead of done after a 503.
    pub(super) fn deadline_ms(&self) -> i64 {
        let margin = (self.call_timeout / 8).max(Duration::from_millis(20));
        let budget = i64::try_from(self.call_timeout.saturating_sub(margin).as_millis()).unwrap_or(i64::MAX);
        chrono::Utc::now().timestamp_millis() + self.clock_offset_ms.load(std::sync::atomic::Ordering::Relaxed) + budget
    }

    /// `run` for a script that may run twice with the same effect (a read, or an
    /// enqueue keyed by its job id): after Redis came back, the first call on the old
    /// connection fails while the manager reconnects; it is tried once more, within
    /// the same deadline, instead of failing the request.
    pub(super) async fn run_retrying(&self, script: &Script, args: &[&str]) -> Result<Value, QueueError> {
        let once = || {
            let retention = i64::try_from(self.options.retention.as_millis()).unwrap_or(i64::MAX).max(1);
            let mut inv = script.prepare_invoke();
            inv.key(format!("{}seq", self.base)).arg(&self.base).arg(retention);
            for a in args {
                inv.arg(*a);
            }
            let mut conn = self.conn.clone();
            async move { inv.invoke_async::<Value>(&mut conn).await }
        };
        self.call(async {
            match once().await {
                Err(e) if stale(&e) => once().await,
                r => r,
            }
        })
        .await
    }

    /// Invoke a script with the common leading arguments (key base, retention
    /// in ms). KEYS[1] is only there so a cluster client routes the call to the
    /// slot of the hash tag; the scripts build every key from the base.
    pub(super) async fn run(&self, script: &Script, args: &[&str]) -> Result<Value, QueueError> {
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
