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

use crate::actions::{ActionSettings, Task};
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
    pub server: ServerFile,
    pub auth: AuthFile,
    pub queue: QueueFile,
    pub runner: RunnerFile,
    pub tasks: TasksFile,
    pub ping: PingFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerFile {
    pub bind: Option<SocketAddr>,
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
    pub bind: SocketAddr,
    pub cors_origin: String,
    pub trusted_proxy: bool,
    pub auth: AuthSettings,
    pub scope_prefix: String,
    pub read_scope: String,
    pub redis_url: Option<SecretString>,
    pub sqlite_path: PathBuf,
    pub history_limit: usize,
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
pub const DEFAULT_SCOPE_PREFIX: &str = "project:releng:roller:";
pub const DEFAULT_READ_SCOPE: &str = "project:releng:roller:jobs:read";

impl Settings {
    /// Load from `path` (if any) and the environment.
    pub fn load(path: Option<&Path>, env: &dyn Env) -> Result<Settings, ConfigError> {
        let file = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| err(format!("cannot read config file {}: {e}", p.display())))?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| err(format!("config file {}: {}", p.display(), e.to_string().trim())))?
            }
            None => FileConfig::default(),
        };
        Self::resolve(file, path, env)
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

        let cors_origin =
            env.get("CORS_ORIGIN").or(file.server.cors_origin).unwrap_or_else(|| format!("http://{bind}"));
        if cors_origin != "*" && !(cors_origin.starts_with("http://") || cors_origin.starts_with("https://")) {
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

        let redis_url = env.get("REDIS_URL").map(SecretString::from);
        let sqlite_path = file.queue.sqlite_path.unwrap_or_else(|| data_dir.join("roller.sqlite3"));
        let history_limit = file.queue.history_limit.unwrap_or(50).clamp(1, 1000);

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
        };
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

        Ok(Settings {
            data_dir,
            bind,
            cors_origin,
            trusted_proxy,
            auth,
            scope_prefix,
            read_scope,
            redis_url,
            sqlite_path,
            history_limit,
            runner,
            enabled_tasks,
            actions: ActionSettings { ping },
        })
    }

    /// The scope a caller needs to run `task`.
    pub fn task_scope(&self, task: Task) -> String {
        format!("{}{}", self.scope_prefix, task.name())
    }
}

fn parse_bool(key: &str, v: &str) -> Result<bool, ConfigError> {
    match v {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(err(format!("{key} {v:?} must be true or false"))),
    }
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
