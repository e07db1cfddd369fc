//! Settings: one TOML file (`--config` / `ROLLER_CONFIG`) plus environment
//! overrides with the original roller's variable names.
//!
//! Unknown keys are errors that name the key and the file. Secrets are
//! `SecretString`, so `Debug` and logs show `[REDACTED]`; they can be given
//! inline, from an environment variable (`*_env`) or from a file (`*_file`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::actions::{
    ActionSettings, BugTemplate, BugzillaSettings, RebootSettings, Task, TaskclusterSettings, XenSettings,
};
use crate::drivers::dns::{DnsResolver, DnsSettings};
use crate::drivers::ping::{PingMethod, PingSettings};

/// A configuration problem, with enough context to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// The file's shape. Every table refuses unknown keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub inventory: Option<PathBuf>,
    pub server: ServerFile,
    pub auth: AuthFile,
    pub queue: QueueFile,
    pub runner: RunnerFile,
    pub tasks: TasksFile,
    pub ping: PingFile,
    pub reboot: RebootFile,
    pub bugzilla: BugzillaFile,
    pub xen: XenFile,
    pub taskcluster: TaskclusterFile,
    pub notify: NotifyFile,
    pub safety: SafetyFile,
    pub redis: RedisFile,
    pub dns: DnsFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsFile {
    /// `ip[:port]` strings, as in `ROLLER_DNS_SERVERS`; empty: the system's resolv.conf.
    pub nameservers: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyFile {
    pub email: Option<Vec<String>>,
    pub requester_email_domain: Option<String>,
    pub matrix_room: Option<String>,
    pub slack_channel: Option<String>,
    pub webhook_url: Option<String>,
    pub webhook_secret_env: Option<String>,
    pub webhook_secret_file: Option<PathBuf>,
    pub public_url: Option<String>,
    pub timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SafetyFile {
    pub max_restarts: Option<u32>,
    pub restart_window_hours: Option<u64>,
    pub device_concurrency: Option<usize>,
    pub power_on_stagger_ms: Option<u64>,
    pub confirm_above: Option<usize>,
}

/// The reboot-loop breaker: a machine restarted `max_restarts` times within
/// `window` gets no more restarts until the oldest of them leaves the window.
#[derive(Debug, Clone, Copy)]
pub struct SafetySettings {
    /// 0 turns the breaker off.
    pub max_restarts: u32,
    pub window: Duration,
    /// Per-BMC / per-PDU limits (drivers::gate).
    pub gate: crate::drivers::gate::GateSettings,
    /// Fleet commands touching more machines than this ask first (or need --yes).
    pub confirm_above: usize,
}

/// Roller's own Taskcluster credentials (for `loan` / `return_loan`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskclusterFile {
    pub root_url: Option<String>,
    pub client_id: Option<String>,
    pub access_token_env: Option<String>,
    pub access_token_file: Option<PathBuf>,
    pub loan_days: Option<u32>,
    pub timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct XenFile {
    pub url: Option<String>,
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub verify_tls: Option<bool>,
    pub delay_secs: Option<u64>,
    pub timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BugzillaFile {
    pub url: Option<String>,
    pub api_key_env: Option<String>,
    pub api_key_file: Option<PathBuf>,
    pub reopen_state: Option<String>,
    pub timeout_secs: Option<u64>,
    pub tracker: BugTemplateFile,
    pub reboot: BugTemplateFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BugTemplateFile {
    pub product: Option<String>,
    pub component: Option<String>,
    pub summary: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RebootFile {
    pub down_timeout_secs: Option<u64>,
    pub up_timeout_secs: Option<u64>,
    pub probe_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerFile {
    pub bind: Option<SocketAddr>,
    pub metrics_bind: Option<SocketAddr>,
    pub cors_origin: Option<String>,
    pub trusted_proxy: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthFile {
    pub backend: Option<AuthBackendKind>,
    pub scope_prefix: Option<String>,
    pub read_scope: Option<String>,
    pub taskcluster_root_url: Option<String>,
    pub timeout_secs: Option<u64>,
    pub clients: Vec<ClientFile>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthBackendKind {
    Local,
    Taskcluster,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFile {
    pub client_id: String,
    pub access_token: Option<SecretString>,
    pub access_token_env: Option<String>,
    pub access_token_file: Option<PathBuf>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueFile {
    pub sqlite_path: Option<PathBuf>,
    pub history_limit: Option<usize>,
    pub retention_secs: Option<u64>,
    pub history_cap: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisFile {
    pub prefix: Option<String>,
    pub cluster: Option<bool>,
    pub response_timeout_ms: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
}

/// Where the distributed queue lives (`REDIS_URL`).
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// May carry a password: secret.
    pub url: SecretString,
    /// `url` is a comma-separated list of cluster nodes.
    pub cluster: bool,
    /// Every key is `{<prefix>}:…`: one hash tag, so Redis Cluster keeps a queue on one slot.
    pub prefix: String,
    /// Bounds every Redis call, so the API answers 503 within a second when Redis is gone.
    pub response_timeout: Duration,
    pub connect_timeout: Duration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunnerFile {
    pub concurrency: Option<usize>,
    pub soft_time_limit_secs: Option<u64>,
    pub hard_time_limit_secs: Option<u64>,
    pub lease_margin_secs: Option<u64>,
    pub poll_interval_ms: Option<u64>,
    pub shutdown_grace_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TasksFile {
    pub enabled: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PingFile {
    pub count: Option<u32>,
    pub interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub method: Option<PingMethod>,
}

/// A locally configured Hawk client.
#[derive(Debug, Clone)]
pub struct LocalClient {
    pub client_id: String,
    pub access_token: SecretString,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum AuthSettings {
    /// Verify Hawk here. `clients` empty means: use (or create) the admin
    /// credentials in the data directory.
    Local {
        clients: Vec<LocalClient>,
    },
    Taskcluster {
        root_url: String,
        timeout: Duration,
    },
}

/// Resolved settings, validated and with defaults applied.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    /// The inventory file (`ROLLER_INVENTORY`); loaded at start, reloaded on SIGHUP.
    pub inventory_path: Option<PathBuf>,
    pub bind: SocketAddr,
    /// `roller worker` serves `/metrics` and the heartbeats here when set (API processes
    /// serve them on `bind`).
    pub metrics_bind: Option<SocketAddr>,
    pub cors_origin: String,
    pub trusted_proxy: bool,
    pub auth: AuthSettings,
    pub scope_prefix: String,
    pub read_scope: String,
    /// Set: the queue is Redis (distributed mode). Unset: SQLite (embedded).
    pub redis: Option<RedisConfig>,
    pub sqlite_path: PathBuf,
    pub history_limit: usize,
    pub safety: SafetySettings,
    /// Finished jobs are kept this long.
    pub retention: Duration,
    /// At most this many jobs per machine are kept in its history.
    pub history_cap: usize,
    pub runner: RunnerSettings,
    pub enabled_tasks: Vec<Task>,
    pub actions: ActionSettings,
}

#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// Jobs running at once in this process. A reboot mostly waits, so thousands are fine.
    pub concurrency: usize,
    /// At the soft limit the action is asked to stop (state `timed_out`).
    pub soft_time_limit: Duration,
    /// At the hard limit the action is dropped and its child processes killed.
    pub hard_time_limit: Duration,
    /// The lease is the hard limit plus this margin, so a live runner always
    /// finishes (or gives up) a job before anyone else may take it over.
    pub lease_margin: Duration,
    /// How often an idle runner looks for work it was not told about.
    pub poll_interval: Duration,
    /// On shutdown, how long running jobs may go on before they are handed back.
    pub shutdown_grace: Duration,
    /// Who hears about jobs starting and ending.
    pub notify: crate::notify::Notifier,
}

impl RunnerSettings {
    pub fn lease(&self) -> Duration {
        self.hard_time_limit + self.lease_margin
    }
}

/// Reads environment variables; a closure in tests, `std::env::var` in production.
pub trait Env {
    fn get(&self, key: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn get(&self, key: &str) -> Option<String> {
        self(key)
    }
}

pub const DEFAULT_BIND: &str = "127.0.0.1:8000";
/// An upper bound on time limits, so deadlines never overflow.
const MAX_TIME_LIMIT: Duration = Duration::from_secs(7 * 86_400);
pub const DEFAULT_SCOPE_PREFIX: &str = "project:releng:roller:";
pub const DEFAULT_READ_SCOPE: &str = "project:releng:roller:jobs:read";

impl Settings {
    /// Load from `path` (if any) and the environment.
    pub fn load(path: Option<&Path>, env: &dyn Env) -> Result<Settings, ConfigError> {
        match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| err(format!("cannot read config file {}: {e}", p.display())))?;
                Self::parse(p, &text, env)
            }
            None => Self::resolve(FileConfig::default(), None, env),
        }
    }

    /// [`Settings::load`] on text already read from `path`, which only names the file in
    /// errors. Public for the fuzz target, which has text and no file.
    pub fn parse(path: &Path, text: &str, env: &dyn Env) -> Result<Settings, ConfigError> {
        let file = toml::from_str::<FileConfig>(text)
            .map_err(|e| err(format!("config file {}: {}", path.display(), e.to_string().trim())))?;
        Self::resolve(file, Some(path), env)
    }

    fn resolve(file: FileConfig, path: Option<&Path>, env: &dyn Env) -> Result<Settings, ConfigError> {
        let where_ = |key: &str| match path {
            Some(p) => format!("{key} (config file {})", p.display()),
            None => key.to_string(),
        };

        let data_dir =
            env.get("ROLLER_DATA_DIR").map(PathBuf::from).or(file.data_dir).unwrap_or_else(|| default_data_dir(env));

        let bind = match env.get("ROLLER_BIND") {
            Some(b) => {
                b.parse().map_err(|_| err(format!("ROLLER_BIND {b:?} is not an address like 127.0.0.1:8000")))?
            }
            None => file.server.bind.unwrap_or_else(|| DEFAULT_BIND.parse().expect("valid default")),
        };

        let metrics_bind = match env.get("ROLLER_METRICS_BIND") {
            Some(b) => Some(
                b.parse()
                    .map_err(|_| err(format!("ROLLER_METRICS_BIND {b:?} is not an address like 127.0.0.1:9100")))?,
            ),
            None => file.server.metrics_bind,
        };

        let cors_origin =
            env.get("CORS_ORIGIN").or(file.server.cors_origin).unwrap_or_else(|| format!("http://{bind}"));
        let printable = cors_origin.chars().all(|c| c.is_ascii_graphic());
        if cors_origin != "*"
            && !(printable && (cors_origin.starts_with("http://") || cors_origin.starts_with("https://")))
        {
            return Err(err(format!(
                "CORS_ORIGIN {cors_origin:?} must be \"*\" or an origin with its scheme, e.g. https://firefox-ci-tc.services.mozilla.com"
            )));
        }
        let trusted_proxy = match env.get("ROLLER_TRUSTED_PROXY") {
            Some(v) => parse_bool("ROLLER_TRUSTED_PROXY", &v)?,
            None => file.server.trusted_proxy.unwrap_or(false),
        };

        let backend = match env.get("ROLLER_AUTH_BACKEND") {
            Some(b) => match b.as_str() {
                "local" => AuthBackendKind::Local,
                "taskcluster" => AuthBackendKind::Taskcluster,
                _ => {
                    return Err(err(format!("ROLLER_AUTH_BACKEND {b:?} must be \"local\" or \"taskcluster\"")));
                }
            },
            None => file.auth.backend.unwrap_or(AuthBackendKind::Local),
        };
        let auth = match backend {
            AuthBackendKind::Local => {
                let mut clients = Vec::new();
                for (i, c) in file.auth.clients.into_iter().enumerate() {
                    clients.push(resolve_client(c, i, path, env)?);
                }
                AuthSettings::Local { clients }
            }
            AuthBackendKind::Taskcluster => {
                let root_url = env.get("TASKCLUSTER_ROOT_URL").or(file.auth.taskcluster_root_url).ok_or_else(|| {
                    err("the taskcluster auth backend needs TASKCLUSTER_ROOT_URL (or auth.taskcluster_root_url)")
                })?;
                if !(root_url.starts_with("http://") || root_url.starts_with("https://")) {
                    return Err(err(format!("TASKCLUSTER_ROOT_URL {root_url:?} must start with http:// or https://")));
                }
                let secs = file.auth.timeout_secs.unwrap_or(5);
                if secs == 0 {
                    return Err(err(format!("{} must be at least 1", where_("auth.timeout_secs"))));
                }
                AuthSettings::Taskcluster {
                    root_url: root_url.trim_end_matches('/').to_string(),
                    timeout: Duration::from_secs(secs),
                }
            }
        };
        let scope_prefix = env
            .get("ROLLER_SCOPE_PREFIX")
            .or(file.auth.scope_prefix)
            .unwrap_or_else(|| DEFAULT_SCOPE_PREFIX.to_string());
        let read_scope =
            env.get("ROLLER_READ_SCOPE").or(file.auth.read_scope).unwrap_or_else(|| DEFAULT_READ_SCOPE.to_string());
        for (k, v) in [("scope_prefix", &scope_prefix), ("read_scope", &read_scope)] {
            if v.chars().any(|c| !(' '..='~').contains(&c)) {
                return Err(err(format!("{} {v:?} may only contain printable ASCII", where_(k))));
            }
        }

        let r = file.redis;
        let prefix = env.get("ROLLER_REDIS_PREFIX").or(r.prefix).unwrap_or_else(|| "roller".to_string());
        if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        {
            return Err(err(format!(
                "{} {prefix:?} may only contain letters, digits, '-', '_', '.' and ':'",
                where_("redis.prefix")
            )));
        }
        let redis = env.get("REDIS_URL").map(|url| RedisConfig {
            url: SecretString::from(url),
            cluster: r.cluster.unwrap_or(false),
            prefix,
            response_timeout: Duration::from_millis(r.response_timeout_ms.unwrap_or(800).clamp(50, 60_000)),
            connect_timeout: Duration::from_millis(r.connect_timeout_ms.unwrap_or(800).clamp(50, 60_000)),
        });
        let sqlite_path = file.queue.sqlite_path.unwrap_or_else(|| data_dir.join("roller.sqlite3"));
        let history_cap = file.queue.history_cap.unwrap_or(100).clamp(1, 10_000);
        let history_limit = file.queue.history_limit.unwrap_or(50).clamp(1, history_cap);
        let retention = Duration::from_secs(file.queue.retention_secs.unwrap_or(7 * 86_400));
        if retention.is_zero() || retention > Duration::from_secs(366 * 86_400) {
            return Err(err(format!("{} must be between 1 and 31622400 (a year)", where_("queue.retention_secs"))));
        }

        let secs = |env_key: &str, v: Option<u64>, default: u64| -> Result<Duration, ConfigError> {
            let n = match env.get(env_key) {
                Some(s) => {
                    s.parse::<u64>().map_err(|_| err(format!("{env_key} {s:?} is not a whole number of seconds")))?
                }
                None => v.unwrap_or(default),
            };
            Ok(Duration::from_secs(n))
        };
        let r = file.runner;
        let runner = RunnerSettings {
            concurrency: r.concurrency.unwrap_or(1000).max(1),
            soft_time_limit: secs("CELERY_TASK_SOFT_TIME_LIMIT", r.soft_time_limit_secs, 600)?,
            hard_time_limit: secs("CELERY_TASK_TIME_LIMIT", r.hard_time_limit_secs, 1200)?,
            lease_margin: Duration::from_secs(r.lease_margin_secs.unwrap_or(60)),
            poll_interval: Duration::from_millis(r.poll_interval_ms.unwrap_or(1000).max(10)),
            shutdown_grace: Duration::from_secs(r.shutdown_grace_secs.unwrap_or(30)),
            notify: Default::default(),
        };
        if runner.hard_time_limit > MAX_TIME_LIMIT || runner.lease_margin > MAX_TIME_LIMIT {
            return Err(err(format!(
                "time limits and the lease margin may be at most {}s (one week)",
                MAX_TIME_LIMIT.as_secs()
            )));
        }
        if runner.lease_margin.is_zero() {
            return Err(err(format!(
                "{} must be at least 1: the lease must outlast the hard time limit",
                where_("runner.lease_margin_secs")
            )));
        }
        if runner.soft_time_limit.is_zero() || runner.soft_time_limit > runner.hard_time_limit {
            return Err(err(format!(
                "the soft time limit ({}s) must be at least 1s and not above the hard time limit ({}s)",
                runner.soft_time_limit.as_secs(),
                runner.hard_time_limit.as_secs()
            )));
        }

        let names: Vec<String> = match env.get("TASK_NAMES") {
            Some(list) => list.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
            None => file.tasks.enabled.unwrap_or_else(|| Task::ALL.iter().map(|t| t.name().to_string()).collect()),
        };
        let mut enabled_tasks = Vec::new();
        for n in names {
            let t = Task::parse(&n).ok_or_else(|| {
                err(format!(
                    "TASK_NAMES / tasks.enabled names unknown task {n:?}; roller knows: {}",
                    Task::list(Task::ALL)
                ))
            })?;
            if !enabled_tasks.contains(&t) {
                enabled_tasks.push(t);
            }
        }
        if enabled_tasks.is_empty() {
            return Err(err("no tasks enabled (TASK_NAMES / tasks.enabled is empty)"));
        }

        let p = file.ping;
        let d = PingSettings::default();
        let ping = PingSettings {
            count: p.count.unwrap_or(d.count),
            interval: p.interval_ms.map(Duration::from_millis).unwrap_or(d.interval),
            timeout: p.timeout_ms.map(Duration::from_millis).unwrap_or(d.timeout),
            method: p.method.unwrap_or(d.method),
        };
        if ping.count == 0 || ping.count > 100 || ping.timeout.is_zero() {
            return Err(err(format!("{}: count must be 1..=100 and timeout_ms above 0", where_("[ping]"))));
        }

        let rf = file.reboot;
        let mut reboot = RebootSettings {
            down_timeout: secs("DOWN_TIMEOUT", rf.down_timeout_secs, 60)?,
            up_timeout: secs("UP_TIMEOUT", rf.up_timeout_secs, 300)?,
            ..RebootSettings::default()
        };
        if let Some(ms) = rf.probe_interval_ms {
            reboot.probe.interval = Duration::from_millis(ms.clamp(100, 60_000));
        }
        reboot.probe.icmp = PingSettings { count: 1, timeout: reboot.probe.timeout, ..ping.clone() };
        if reboot.down_timeout.is_zero() || reboot.up_timeout.is_zero() {
            return Err(err(
                "DOWN_TIMEOUT and UP_TIMEOUT (reboot.down_timeout_secs, reboot.up_timeout_secs) must be at least 1s",
            ));
        }
        if reboot.down_timeout > MAX_TIME_LIMIT || reboot.up_timeout > MAX_TIME_LIMIT {
            return Err(err(format!("DOWN_TIMEOUT and UP_TIMEOUT may be at most {}s", MAX_TIME_LIMIT.as_secs())));
        }

        let safety = SafetySettings {
            max_restarts: match env.get("ROLLER_MAX_RESTARTS") {
                Some(v) => v.parse().map_err(|_| err(format!("ROLLER_MAX_RESTARTS {v:?} is not a whole number")))?,
                None => file.safety.max_restarts.unwrap_or(3),
            },
            window: Duration::from_secs(file.safety.restart_window_hours.unwrap_or(6).clamp(1, 24 * 31) * 3600),
            gate: crate::drivers::gate::GateSettings {
                concurrency: file.safety.device_concurrency.unwrap_or(4).clamp(1, 64),
                stagger: Duration::from_millis(file.safety.power_on_stagger_ms.unwrap_or(2000).min(60_000)),
            },
            confirm_above: file.safety.confirm_above.unwrap_or(10),
        };
        if usize::try_from(safety.max_restarts).unwrap_or(usize::MAX) > history_cap {
            return Err(err(format!(
                "safety.max_restarts ({}) cannot exceed queue.history_cap ({history_cap}): roller only sees that much history",
                safety.max_restarts
            )));
        }
        let bugzilla = bugzilla_settings(file.bugzilla, env)?;
        let xen = xen_settings(file.xen, env)?;
        let taskcluster = taskcluster_settings(file.taskcluster, env)?;
        let mut runner = runner;
        runner.notify = notify_settings(file.notify, env, taskcluster.as_ref().map(|t| t.client.clone()))?;
        let nameservers = match env.get("ROLLER_DNS_SERVERS") {
            Some(list) => {
                let entries: Vec<&str> = list.split(',').map(str::trim).collect();
                parse_nameservers("ROLLER_DNS_SERVERS", &entries)?
            }
            None => {
                let entries = file.dns.nameservers.unwrap_or_default();
                parse_nameservers(&where_("dns.nameservers"), &entries.iter().map(|e| e.trim()).collect::<Vec<_>>())?
            }
        };
        let dns = DnsResolver::new(DnsSettings { nameservers, ..DnsSettings::default() });

        let inventory_path = env.get("ROLLER_INVENTORY").map(PathBuf::from).or(file.inventory);
        Ok(Settings {
            data_dir,
            inventory_path,
            bind,
            metrics_bind,
            cors_origin,
            trusted_proxy,
            auth,
            scope_prefix,
            read_scope,
            redis,
            sqlite_path,
            history_limit,
            safety,
            retention,
            history_cap,
            runner,
            enabled_tasks,
            actions: ActionSettings { ping, inventory: Default::default(), reboot, dns, bugzilla, xen, taskcluster },
        })
    }

    /// The scope a caller needs to run `task`.
    pub fn task_scope(&self, task: Task) -> String {
        format!("{}{}", self.scope_prefix, task.name())
    }
}

/// Nameserver addresses, `ip` or `ip:port` (`[v6]:port`), port 53 by default.
fn parse_nameservers(key: &str, entries: &[&str]) -> Result<Vec<SocketAddr>, ConfigError> {
    let mut servers: Vec<SocketAddr> = Vec::new();
    for e in entries {
        let bare = e.strip_prefix('[').and_then(|v| v.strip_suffix(']')).unwrap_or(e);
        let addr = match bare.parse::<std::net::IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, 53),
            Err(_) => e.parse::<SocketAddr>().map_err(|_| {
                err(format!(
                    "{key}: {e:?} is not a nameserver address: give an IP address with an optional port, \
                     e.g. 10.0.0.2, 10.0.0.2:5353 or [2001:db8::2]:53 (comma-separated in the environment variable)"
                ))
            })?,
        };
        if addr.port() == 0 || addr.ip().is_unspecified() || addr.ip().is_multicast() {
            return Err(err(format!(
                "{key}: {e:?} cannot be a nameserver (port 0, or an unspecified or multicast address)"
            )));
        }
        if !servers.contains(&addr) {
            servers.push(addr);
        }
    }
    Ok(servers)
}

fn parse_bool(key: &str, v: &str) -> Result<bool, ConfigError> {
    match v {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(err(format!("{key} {v:?} must be true or false"))),
    }
}

/// A secret from its environment variable (`direct`, which wins), or the file
/// table's `<field>_env` (names a variable) or `<field>_file`. `None` when none is given.
fn secret_source(
    env: &dyn Env,
    direct: &str,
    field: &str,
    var: &Option<String>,
    file: &Option<PathBuf>,
) -> Result<Option<String>, ConfigError> {
    let value = match (env.get(direct), var, file) {
        (Some(v), _, _) => v,
        (None, Some(_), Some(_)) => return Err(err(format!("{field}: give {field}_env or {field}_file, not both"))),
        (None, Some(name), None) => {
            env.get(name).ok_or_else(|| err(format!("{field}_env: environment variable {name} is not set")))?
        }
        (None, None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|e| err(format!("{field}_file: cannot read {}: {e}", f.display())))?
            .trim_end_matches(['\n', '\r'])
            .to_string(),
        (None, None, None) => return Ok(None),
    };
    if value.trim().is_empty() {
        return Err(err(format!("{field} ({direct}) is empty")));
    }
    Ok(Some(value))
}

/// `[bugzilla]` plus `BUGZILLA_URL`, `BUGZILLA_API_KEY`, `BUGZILLA_REOPEN_STATE`. Bug
/// filing is on when a URL is set; then a key is required.
fn bugzilla_settings(b: BugzillaFile, env: &dyn Env) -> Result<Option<BugzillaSettings>, ConfigError> {
    let Some(url) = env.get("BUGZILLA_URL").or(b.url) else {
        return Ok(None);
    };
    let key = secret_source(env, "BUGZILLA_API_KEY", "bugzilla.api_key", &b.api_key_env, &b.api_key_file)?
        .ok_or_else(|| {
            err("BUGZILLA_URL is set but no API key is: set BUGZILLA_API_KEY, bugzilla.api_key_env or bugzilla.api_key_file")
        })?;
    let timeout = Duration::from_secs(b.timeout_secs.unwrap_or(30).clamp(1, 300));
    let client = crate::drivers::bugzilla::Bugzilla::new(&url, SecretString::from(key), timeout)
        .map_err(|e| err(format!("BUGZILLA_URL / bugzilla.url: {e}")))?;
    let template = |t: BugTemplateFile, d: BugTemplate, at: &str| -> Result<BugTemplate, ConfigError> {
        let t = BugTemplate {
            product: t.product.unwrap_or(d.product),
            component: t.component.unwrap_or(d.component),
            summary: t.summary.unwrap_or(d.summary),
            description: t.description.unwrap_or(d.description),
        };
        for (field, text) in [("summary", &t.summary), ("description", &t.description)] {
            if let Some(bad) = BugTemplate::unknown_placeholder(text) {
                return Err(err(format!(
                    "bugzilla.{at}.{field}: unknown placeholder {{{bad}}}; known: {}",
                    BugTemplate::PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
                )));
            }
        }
        if t.product.trim().is_empty() || t.component.trim().is_empty() || t.summary.trim().is_empty() {
            return Err(err(format!("bugzilla.{at}: product, component and summary may not be empty")));
        }
        Ok(t)
    };
    Ok(Some(BugzillaSettings {
        client,
        reopen_state: env.get("BUGZILLA_REOPEN_STATE").or(b.reopen_state).unwrap_or_else(|| "REOPENED".into()),
        tracker: template(b.tracker, BugTemplate::default_tracker(), "tracker")?,
        reboot: template(b.reboot, BugTemplate::default_reboot(), "reboot")?,
    }))
}

/// `[notify]` plus `NOTIFY_EMAIL` (comma-separated), `ROLLER_WEBHOOK_URL`, `ROLLER_WEBHOOK_SECRET`.
fn notify_settings(
    n: NotifyFile,
    env: &dyn Env,
    tc: Option<crate::drivers::taskcluster::TaskclusterClient>,
) -> Result<crate::notify::Notifier, ConfigError> {
    let emails: Vec<String> = match env.get("NOTIFY_EMAIL") {
        Some(list) => list.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        None => n.email.unwrap_or_default(),
    };
    if let Some(bad) = emails.iter().find(|e| !e.contains('@') || e.chars().any(char::is_whitespace)) {
        return Err(err(format!("NOTIFY_EMAIL / notify.email: {bad:?} is not an email address")));
    }
    let webhook_url = env.get("ROLLER_WEBHOOK_URL").or(n.webhook_url);
    if let Some(u) = &webhook_url {
        let ok =
            reqwest::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.username().is_empty());
        if !ok {
            return Err(err(format!(
                "ROLLER_WEBHOOK_URL / notify.webhook_url {u:?}: an http(s) URL without credentials"
            )));
        }
    }
    let webhook_secret = secret_source(
        env,
        "ROLLER_WEBHOOK_SECRET",
        "notify.webhook_secret",
        &n.webhook_secret_env,
        &n.webhook_secret_file,
    )?;
    if webhook_secret.as_deref().is_some_and(|s| s.len() < 16) {
        return Err(err("the webhook secret must be at least 16 characters"));
    }
    let settings = crate::notify::NotifySettings {
        emails,
        requester_domain: n.requester_email_domain,
        matrix_room: n.matrix_room,
        slack_channel: n.slack_channel,
        webhook_url,
        webhook_secret: webhook_secret.map(SecretString::from),
        public_url: env.get("ROLLER_PUBLIC_URL").or(n.public_url),
        timeout: Duration::from_secs(n.timeout_secs.unwrap_or(10).clamp(1, 120)),
    };
    crate::notify::Notifier::new(settings, tc).map_err(err)
}

/// `[taskcluster]` plus `TASKCLUSTER_ROOT_URL`, `TASKCLUSTER_CLIENT_ID`,
/// `TASKCLUSTER_ACCESS_TOKEN`: on when a root URL and a client id are set.
fn taskcluster_settings(t: TaskclusterFile, env: &dyn Env) -> Result<Option<TaskclusterSettings>, ConfigError> {
    // Both or nothing: a client id alone is how `roller jobs` users carry their own
    // credentials, and must not break a command that never calls Taskcluster.
    let (Some(client_id), Some(root_url)) =
        (env.get("TASKCLUSTER_CLIENT_ID").or(t.client_id), env.get("TASKCLUSTER_ROOT_URL").or(t.root_url))
    else {
        return Ok(None);
    };
    let token = secret_source(
        env,
        "TASKCLUSTER_ACCESS_TOKEN",
        "taskcluster.access_token",
        &t.access_token_env,
        &t.access_token_file,
    )?
    .ok_or_else(|| err("TASKCLUSTER_CLIENT_ID is set but no access token is (TASKCLUSTER_ACCESS_TOKEN)"))?;
    let timeout = Duration::from_secs(t.timeout_secs.unwrap_or(30).clamp(1, 300));
    let client =
        crate::drivers::taskcluster::TaskclusterClient::new(&root_url, &client_id, SecretString::from(token), timeout)
            .map_err(|e| err(e.to_string()))?;
    let loan_days = t.loan_days.unwrap_or(30);
    if loan_days == 0 || loan_days > 365 {
        return Err(err("taskcluster.loan_days must be 1..=365"));
    }
    Ok(Some(TaskclusterSettings { client, loan: Duration::from_secs(u64::from(loan_days) * 86_400) }))
}

/// `[xen]` plus `XEN_URL`, `XEN_USERNAME`, `XEN_PASSWORD` (the original's names). On
/// when a URL is set; then a user and a password are required.
fn xen_settings(x: XenFile, env: &dyn Env) -> Result<Option<XenSettings>, ConfigError> {
    let Some(url) = env.get("XEN_URL").or(x.url).filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let parsed = reqwest::Url::parse(&url).map_err(|_| err("XEN_URL / xen.url is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") || !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(err(format!(
            "XEN_URL / xen.url ({}): an http(s) URL without user or password",
            crate::drivers::url_for_message(&url)
        )));
    }
    let user = env
        .get("XEN_USERNAME")
        .or(x.username)
        .ok_or_else(|| err("XEN_URL is set but XEN_USERNAME / xen.username is not"))?;
    let password =
        secret_source(env, "XEN_PASSWORD", "xen.password", &x.password_env, &x.password_file)?.ok_or_else(|| {
            err("XEN_URL is set but no password is: set XEN_PASSWORD, xen.password_env or xen.password_file")
        })?;
    Ok(Some(XenSettings {
        url,
        user,
        password: SecretString::from(password),
        verify_tls: x.verify_tls.unwrap_or(true),
        delay: Duration::from_secs(x.delay_secs.unwrap_or(5).min(600)),
        timeout: Duration::from_secs(x.timeout_secs.unwrap_or(30).clamp(1, 300)),
    }))
}

fn resolve_client(c: ClientFile, i: usize, path: Option<&Path>, env: &dyn Env) -> Result<LocalClient, ConfigError> {
    let at = match path {
        Some(p) => format!("auth.clients[{i}] (client_id {:?}) in config file {}", c.client_id, p.display()),
        None => format!("auth.clients[{i}] (client_id {:?})", c.client_id),
    };
    crate::domain::ClientId::parse(&c.client_id).map_err(|e| err(format!("{at}: {e}")))?;
    let sources = [c.access_token.is_some(), c.access_token_env.is_some(), c.access_token_file.is_some()];
    if sources.iter().filter(|s| **s).count() != 1 {
        return Err(err(format!("{at}: give exactly one of access_token, access_token_env, access_token_file")));
    }
    let token = if let Some(t) = c.access_token {
        t
    } else if let Some(var) = c.access_token_env {
        SecretString::from(env.get(&var).ok_or_else(|| err(format!("{at}: environment variable {var} is not set")))?)
    } else {
        let f = c.access_token_file.expect("checked above");
        let text = std::fs::read_to_string(&f).map_err(|e| err(format!("{at}: cannot read {}: {e}", f.display())))?;
        SecretString::from(text.trim().to_string())
    };
    use secrecy::ExposeSecret;
    if token.expose_secret().is_empty() {
        return Err(err(format!("{at}: the access token is empty")));
    }
    for s in &c.scopes {
        if s.chars().any(|c| !(' '..='~').contains(&c)) {
            return Err(err(format!("{at}: scope {s:?} may only contain printable ASCII")));
        }
    }
    Ok(LocalClient { client_id: c.client_id, access_token: token, scopes: c.scopes })
}

/// `$XDG_DATA_HOME/roller`, else `~/.local/share/roller`, else `./roller-data`.
pub fn default_data_dir(env: &dyn Env) -> PathBuf {
    if let Some(x) = env.get("XDG_DATA_HOME") {
        return PathBuf::from(x).join("roller");
    }
    if let Some(h) = env.get("HOME") {
        return PathBuf::from(h).join(".local/share/roller");
    }
    PathBuf::from("roller-data")
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn load(toml_text: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roller.toml");
        std::fs::write(&path, toml_text).unwrap();
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let lookup = move |k: &str| env.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.clone());
        Settings::load(Some(&path), &lookup)
    }

    fn error(toml_text: &str, env: &[(&str, &str)]) -> String {
        load(toml_text, env).unwrap_err().to_string()
    }

    #[test]
    fn no_configuration_gives_the_documented_defaults() {
        let s = load("", &[("HOME", "/home/op")]).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/home/op/.local/share/roller"));
        assert_eq!(s.sqlite_path, PathBuf::from("/home/op/.local/share/roller/roller.sqlite3"));
        assert_eq!(s.bind.to_string(), "127.0.0.1:8000");
        assert_eq!(s.cors_origin, "http://127.0.0.1:8000");
        assert!(matches!(&s.auth, AuthSettings::Local { clients } if clients.is_empty()));
        assert_eq!(s.task_scope(Task::Ping), "project:releng:roller:ping");
        assert_eq!(s.read_scope, "project:releng:roller:jobs:read");
        assert_eq!((s.runner.soft_time_limit.as_secs(), s.runner.hard_time_limit.as_secs()), (600, 1200));
        assert_eq!(s.runner.lease().as_secs(), 1260);
        assert_eq!(s.enabled_tasks, Task::ALL);
    }

    #[test]
    fn the_originals_environment_names_override_the_file() {
        let s = load(
            "[runner]\nsoft_time_limit_secs = 10\nhard_time_limit_secs = 20\n",
            &[
                ("CELERY_TASK_SOFT_TIME_LIMIT", "30"),
                ("CELERY_TASK_TIME_LIMIT", "40"),
                ("TASK_NAMES", " ping , ping"),
                ("CORS_ORIGIN", "https://tc.example.com"),
                ("ROLLER_AUTH_BACKEND", "taskcluster"),
                ("TASKCLUSTER_ROOT_URL", "https://tc.example.com/"),
            ],
        )
        .unwrap();
        assert_eq!((s.runner.soft_time_limit.as_secs(), s.runner.hard_time_limit.as_secs()), (30, 40));
        assert_eq!(s.enabled_tasks, vec![Task::Ping]);
        assert_eq!(s.cors_origin, "https://tc.example.com");
        assert!(matches!(&s.auth, AuthSettings::Taskcluster { root_url, .. } if root_url == "https://tc.example.com"));
    }

    #[test]
    fn the_benchmark_noop_task_is_enabled_only_by_name() {
        assert!(!load("", &[]).unwrap().enabled_tasks.contains(&Task::Noop));
        let s = load("[tasks]\nenabled = [\"noop\", \"ping\"]\n", &[]).unwrap();
        assert_eq!(s.enabled_tasks, vec![Task::Noop, Task::Ping]);
        assert_eq!(load("", &[("TASK_NAMES", "noop")]).unwrap().enabled_tasks, vec![Task::Noop]);
    }

    #[test]
    fn unknown_keys_name_the_key_and_the_file() {
        let e = error("[runner]\nconcurency = 5\n", &[]);
        assert!(e.contains("concurency") && e.contains("roller.toml"), "{e}");
        let e = error("colour = \"blue\"\n", &[]);
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn client_tokens_come_from_one_source_and_stay_secret() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "from-file\n").unwrap();
        let text = format!(
            "[[auth.clients]]\nclient_id = \"a\"\naccess_token_env = \"A_TOKEN\"\n\
             [[auth.clients]]\nclient_id = \"b\"\naccess_token_file = {:?}\n",
            f.display().to_string()
        );
        let s = load(&text, &[("A_TOKEN", "from-env")]).unwrap();
        let AuthSettings::Local { clients } = &s.auth else { panic!("local auth") };
        assert_eq!(clients[0].access_token.expose_secret(), "from-env");
        assert_eq!(clients[1].access_token.expose_secret(), "from-file");
        let shown = format!("{s:?}");
        assert!(!shown.contains("from-env") && !shown.contains("from-file"), "{shown}");

        let e = error("[[auth.clients]]\nclient_id = \"a\"\naccess_token = \"x\"\naccess_token_env = \"Y\"\n", &[]);
        assert!(e.contains("exactly one"), "{e}");
        let e = error("[[auth.clients]]\nclient_id = \"a\"\naccess_token_env = \"UNSET\"\n", &[]);
        assert!(e.contains("UNSET") && e.contains("client_id \"a\""), "{e}");
    }

    #[test]
    fn nameservers_default_to_the_system_and_the_environment_wins() {
        let system = load("", &[]).unwrap();
        assert!(system.actions.dns.settings().nameservers.is_empty(), "resolv.conf by default");
        let s = load("[dns]\nnameservers = [\"10.0.0.2\", \"[2001:db8::2]:5353\"]\n", &[]).unwrap();
        let want: Vec<SocketAddr> = vec!["10.0.0.2:53".parse().unwrap(), "[2001:db8::2]:5353".parse().unwrap()];
        assert_eq!(s.actions.dns.settings().nameservers, want);
        let s = load(
            "[dns]\nnameservers = [\"10.0.0.2\"]\n",
            &[("ROLLER_DNS_SERVERS", " 127.0.0.1:5353, [::1] ,127.0.0.1:5353")],
        )
        .unwrap();
        let want: Vec<SocketAddr> = vec!["127.0.0.1:5353".parse().unwrap(), "[::1]:53".parse().unwrap()];
        assert_eq!(s.actions.dns.settings().nameservers, want, "port 53 by default, duplicates once");
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        for (toml_text, env, want) in [
            ("", vec![("CORS_ORIGIN", "tools.taskcluster.net")], "CORS_ORIGIN"),
            ("", vec![("CORS_ORIGIN", "https://a\u{7}b")], "CORS_ORIGIN"),
            ("", vec![("TASK_NAMES", "ping,rebot")], "rebot"),
            ("", vec![("DOWN_TIMEOUT", "0")], "DOWN_TIMEOUT"),
            ("", vec![("XEN_URL", "https://xen.example")], "XEN_USERNAME"),
            ("", vec![("NOTIFY_EMAIL", "relops@example.com")], "Taskcluster credentials"),
            ("", vec![("NOTIFY_EMAIL", "relops")], "not an email address"),
            ("", vec![("ROLLER_WEBHOOK_URL", "https://hooks.example/x")], "both a URL and a secret"),
            (
                "",
                vec![("ROLLER_WEBHOOK_URL", "https://h.example"), ("ROLLER_WEBHOOK_SECRET", "short")],
                "16 characters",
            ),
            (
                "",
                vec![("TASKCLUSTER_CLIENT_ID", "roller"), ("TASKCLUSTER_ROOT_URL", "https://tc.example")],
                "TASKCLUSTER_ACCESS_TOKEN",
            ),
            (
                "[taskcluster]\nloan_days = 0\n",
                vec![
                    ("TASKCLUSTER_CLIENT_ID", "r"),
                    ("TASKCLUSTER_ROOT_URL", "https://tc.example"),
                    ("TASKCLUSTER_ACCESS_TOKEN", "t"),
                ],
                "loan_days",
            ),
            ("", vec![("XEN_URL", "https://xen.example"), ("XEN_USERNAME", "root")], "XEN_PASSWORD"),
            ("", vec![("XEN_URL", "xen.example"), ("XEN_USERNAME", "root"), ("XEN_PASSWORD", "p")], "XEN_URL"),
            ("", vec![("BUGZILLA_URL", "https://bz.example")], "BUGZILLA_API_KEY"),
            ("", vec![("BUGZILLA_URL", "https://u:p@bz.example"), ("BUGZILLA_API_KEY", "k")], "BUGZILLA_URL"),
            ("[bugzilla]\nurl = \"https://bz.example\"\napi_key_env = \"UNSET_KEY\"\n", vec![], "UNSET_KEY"),
            (
                "[bugzilla.reboot]\nsummary = \"{hots} is down\"\n",
                vec![("BUGZILLA_URL", "https://bz.example"), ("BUGZILLA_API_KEY", "k")],
                "{hots}",
            ),
            ("", vec![("UP_TIMEOUT", "5m")], "UP_TIMEOUT"),
            ("", vec![("TASK_NAMES", ",")], "no tasks"),
            ("", vec![("ROLLER_AUTH_BACKEND", "taskcluster")], "TASKCLUSTER_ROOT_URL"),
            ("", vec![("CELERY_TASK_TIME_LIMIT", "ten")], "CELERY_TASK_TIME_LIMIT"),
            ("", vec![("CELERY_TASK_SOFT_TIME_LIMIT", "2000")], "soft time limit"),
            ("", vec![("CELERY_TASK_TIME_LIMIT", "99999999999")], "one week"),
            ("[runner]\nlease_margin_secs = 0\n", vec![], "lease_margin_secs"),
            ("[ping]\ncount = 0\n", vec![], "[ping]"),
            ("", vec![("ROLLER_BIND", "localhost")], "ROLLER_BIND"),
            ("", vec![("ROLLER_DNS_SERVERS", "ns1.example")], "\"ns1.example\" is not a nameserver address"),
            ("", vec![("ROLLER_DNS_SERVERS", "127.0.0.1,")], "ROLLER_DNS_SERVERS: \"\" is not a nameserver"),
            ("", vec![("ROLLER_DNS_SERVERS", "127.0.0.1:99999")], "\"127.0.0.1:99999\" is not a nameserver"),
            ("", vec![("ROLLER_DNS_SERVERS", "127.0.0.1:53:53")], "ROLLER_DNS_SERVERS"),
            ("", vec![("ROLLER_DNS_SERVERS", "127.0.0.1:0")], "cannot be a nameserver"),
            ("", vec![("ROLLER_DNS_SERVERS", "0.0.0.0")], "cannot be a nameserver"),
            ("[dns]\nnameservers = [\"10.0.0.2:dns\"]\n", vec![], "dns.nameservers (config file"),
            ("[dns]\nnameservers = \"10.0.0.2\"\n", vec![], "nameservers"),
            ("[dns]\nservers = [\"10.0.0.2\"]\n", vec![], "servers"),
        ] {
            let e = error(toml_text, &env);
            assert!(e.contains(want), "want {want:?} in {e:?}");
        }
    }
}
