//! Settings: one TOML file (`--config` / `ROLLER_CONFIG`) plus environment
//! overrides with the original roller's variable names.
//!
//! Settings are data: validated values with defaults applied, and nothing live.
//! `startup` builds the clients, the per-device gates and the notifier from them.
//! Unknown keys are errors that name the key and the file. Secrets are
//! `SecretString`, so `Debug` and logs show `[REDACTED]`; they can be given
//! inline, from an environment variable (`*_env`) or from a file (`*_file`).
//!
//! - `file`: the file's shape (serde).
//! - `tls`: `[redis]` and `[server]`'s TLS files and logins, checked at load.
//! - `sections`: one function per table, each layering the environment over the
//!   file over the default through one helper ([`sections::Layer`]).

mod file;
mod medic;
mod paths;
mod sections;
mod simplemdm;
mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;

pub use self::file::{AuthBackendKind, FileConfig};
pub use self::simplemdm::SimpleMdmConfig;
use crate::actions::{BugTemplate, RebootSettings, XenSettings};
pub use crate::auth::local::LocalClient;
use crate::drivers::dns::DnsSettings;
use crate::drivers::gate::GateSettings;
use crate::drivers::ping::PingSettings;
use crate::health::rules::HealthRule;
use crate::health::sweep::SweepSettings;
use crate::notify::NotifySettings;
use crate::task::Task;

/// A configuration problem, with enough context to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
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
    /// Set: the API (and a worker's metrics listener) serve HTTPS with these files,
    /// reloaded on SIGHUP.
    pub tls: Option<ServerTlsFiles>,
    /// How long a client may take, and how many may be connected at once.
    pub connections: ConnectionSettings,
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
    pub ping: PingSettings,
    pub reboot: RebootSettings,
    pub dns: DnsSettings,
    /// Where `file_bugzilla_bug` files; `None` skips that step.
    pub bugzilla: Option<BugzillaConfig>,
    /// The Xen pool master `xenapi_reboot` talks to; `None` skips that step.
    pub xen: Option<XenSettings>,
    /// The SimpleMDM account `mdm_restart` asks; `None` skips that step.
    pub simplemdm: Option<SimpleMdmConfig>,
    /// Roller's own Taskcluster credentials (`loan`, `return_loan`, notify).
    pub taskcluster: Option<TaskclusterConfig>,
    /// Who hears about jobs starting and ending.
    pub notify: NotifySettings,
    /// The sweep that observes the fleet's health.
    pub health: HealthSettings,
    /// The medic that heals hung workers.
    pub medic: crate::medic::MedicSettings,
    /// The standing path checks.
    pub paths: crate::paths::PathSettings,
    /// Where accepted Hawk headers are recorded: always the queue backend, except in the
    /// benchmark's baseline.
    pub replay_check: ReplayCheck,
}

/// Where the record of accepted Hawk headers lives (`auth::replay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayCheck {
    /// In the queue backend: shared by every process on it, kept across restarts.
    Shared,
    /// In this process only: the benchmark's baseline for the shared check's cost
    /// (docs/BENCHMARKS.md). Only a build with the `bench` feature can choose it.
    InProcess,
}

/// `ROLLER_BENCH_REPLAY=in-process`, read only by a build with the `bench` feature (what
/// `cargo xtask bench` builds); every other build ignores it and shares the check.
fn replay_check(env: &dyn Env) -> Result<ReplayCheck, ConfigError> {
    if !cfg!(feature = "bench") {
        return Ok(ReplayCheck::Shared);
    }
    match env.get("ROLLER_BENCH_REPLAY").as_deref() {
        None | Some("shared") => Ok(ReplayCheck::Shared),
        Some("in-process") => Ok(ReplayCheck::InProcess),
        Some(v) => Err(err(format!("ROLLER_BENCH_REPLAY {v:?} must be shared or in-process"))),
    }
}

/// `[health]`: whether this process may sweep, how often, and the hung rule.
#[derive(Debug, Clone)]
pub struct HealthSettings {
    /// Off by default: probing every machine is a choice an operator makes.
    pub enabled: bool,
    pub sweep: SweepSettings,
    pub rule: HealthRule,
    /// Taskcluster to read worker state from anonymously, when `[taskcluster]` has no
    /// credentials.
    pub taskcluster_root_url: Option<String>,
}

/// `[server]`'s bounds on connections, so idle or slow clients cannot hold the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionSettings {
    /// From the connection's start, or a later request's first byte, until its headers are in.
    pub header_read_timeout: Duration,
    /// A kept-alive connection with no request under way is closed after this; so is one
    /// answering a request on which no byte moves this long (at least 60 s).
    pub idle_timeout: Duration,
    /// Connections served at once (also bounded by half the open-file limit at start).
    pub max_connections: usize,
    /// After the stop signal, how long open connections may finish before they are dropped.
    pub shutdown_grace: Duration,
}

/// A locally configured Hawk client, or Taskcluster's `authenticateHawk`.
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

/// The reboot-loop breaker: a machine restarted `max_restarts` times within
/// `window` gets no more restarts until the oldest of them leaves the window.
#[derive(Debug, Clone, Copy)]
pub struct SafetySettings {
    /// 0 turns the breaker off.
    pub max_restarts: u32,
    pub window: Duration,
    /// Per-BMC / per-PDU limits (drivers::gate).
    pub gate: GateSettings,
    /// Fleet commands touching more machines than this ask first (or need --yes).
    pub confirm_above: usize,
}

/// `[server] tls_cert_file` / `tls_key_file`: PEM files, read (and checked) at load;
/// `startup` builds the acceptor from them and reloads them on SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// The certificate, then any intermediates.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Where the distributed queue lives (`REDIS_URL`).
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// May carry a password: secret.
    pub url: SecretString,
    /// `rediss://` (every node): TLS.
    pub tls: bool,
    /// Trust only this CA for the server.
    pub tls_ca_file: Option<PathBuf>,
    /// The client certificate and key, for a server that demands one.
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// An ACL user (`AUTH <username> <password>`).
    pub username: Option<String>,
    /// From `ROLLER_REDIS_PASSWORD`, `redis.password_env` or `redis.password_file`.
    pub password: Option<SecretString>,
    /// `url` is a comma-separated list of cluster nodes.
    pub cluster: bool,
    /// Every key is `{<prefix>}:…`: one hash tag, so Redis Cluster keeps a queue on one slot.
    pub prefix: String,
    /// Bounds every Redis call, so the API answers 503 within a second when Redis is gone.
    pub response_timeout: Duration,
    pub connect_timeout: Duration,
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

/// The Bugzilla roller files in (the URL already checked), and its templates.
#[derive(Debug, Clone)]
pub struct BugzillaConfig {
    pub url: String,
    pub api_key: SecretString,
    pub timeout: Duration,
    /// The status a closed tracker bug is reopened to.
    pub reopen_state: String,
    /// Machines of one chassis or PDU reaching the bug step within this share one
    /// incident bug; zero files one bug per machine.
    pub incident_window: Duration,
    pub tracker: BugTemplate,
    pub reboot: BugTemplate,
}

/// Roller's own Taskcluster client (the root URL already checked).
#[derive(Debug, Clone)]
pub struct TaskclusterConfig {
    pub root_url: String,
    pub client_id: String,
    pub access_token: SecretString,
    pub timeout: Duration,
    /// How long a loan quarantines the worker.
    pub loan: Duration,
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

    /// Each table through its section, in the order their checks depend on each other.
    fn resolve(file: FileConfig, path: Option<&Path>, env: &dyn Env) -> Result<Settings, ConfigError> {
        let l = sections::Layer { env, path };
        let data_dir = l.env_path("ROLLER_DATA_DIR").or(file.data_dir).unwrap_or_else(|| default_data_dir(env));
        let server = sections::server(&l, file.server)?;
        let (auth, scope_prefix, read_scope) = sections::auth(&l, file.auth)?;
        let redis = tls::redis(&l, file.redis)?;
        let queue = sections::queue(&l, file.queue, &data_dir)?;
        let runner = sections::runner(&l, file.runner)?;
        let enabled_tasks = sections::tasks(&l, file.tasks)?;
        let ping = sections::ping(&l, file.ping)?;
        let reboot = sections::reboot(&l, file.reboot, &ping)?;
        let safety = sections::safety(&l, file.safety, queue.history_cap)?;
        let bugzilla = sections::bugzilla(&l, file.bugzilla)?;
        let xen = sections::xen(&l, file.xen)?;
        let simplemdm = simplemdm::simplemdm(&l, file.simplemdm)?;
        let taskcluster = sections::taskcluster(&l, file.taskcluster)?;
        let notify = sections::notify(&l, file.notify, taskcluster.is_some())?;
        let dns = sections::dns(&l, file.dns)?;
        let health = sections::health(&l, file.health)?;
        let medic = medic::medic(&l, file.medic, &health, &enabled_tasks)?;
        let paths = paths::paths(&l, file.paths)?;
        Ok(Settings {
            data_dir,
            inventory_path: l.env_path("ROLLER_INVENTORY").or(file.inventory),
            bind: server.bind,
            metrics_bind: server.metrics_bind,
            cors_origin: server.cors_origin,
            trusted_proxy: server.trusted_proxy,
            tls: server.tls,
            connections: server.connections,
            auth,
            scope_prefix,
            read_scope,
            redis,
            sqlite_path: queue.sqlite_path,
            history_limit: queue.history_limit,
            safety,
            retention: queue.retention,
            history_cap: queue.history_cap,
            runner,
            enabled_tasks,
            ping,
            reboot,
            dns,
            bugzilla,
            xen,
            simplemdm,
            taskcluster,
            notify,
            health,
            medic,
            paths,
            replay_check: replay_check(env)?,
        })
    }

    /// The scope a caller needs to run `task`.
    pub fn task_scope(&self, task: Task) -> String {
        format!("{}{}", self.scope_prefix, task.name())
    }
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
    fn connection_bounds_default_and_refuse_zero_or_absurd_values() {
        let c = load("", &[]).unwrap().connections;
        assert_eq!(
            (c.header_read_timeout.as_secs(), c.idle_timeout.as_secs(), c.max_connections, c.shutdown_grace.as_secs()),
            (10, 60, 4096, 10)
        );
        let text = "[server]\nheader_read_timeout_secs = 2\nidle_timeout_secs = 5\nmax_connections = 8\nshutdown_grace_secs = 1\n";
        let c = load(text, &[]).unwrap().connections;
        assert_eq!((c.header_read_timeout.as_secs(), c.idle_timeout.as_secs(), c.max_connections), (2, 5, 8));
        assert_eq!(c.shutdown_grace.as_secs(), 1);
        for (text, key) in [
            ("[server]\nheader_read_timeout_secs = 0\n", "server.header_read_timeout_secs"),
            ("[server]\nidle_timeout_secs = 99999999999\n", "server.idle_timeout_secs"),
            ("[server]\nmax_connections = 0\n", "server.max_connections"),
            ("[server]\nshutdown_grace_secs = 0\n", "server.shutdown_grace_secs"),
        ] {
            let e = error(text, &[]);
            assert!(e.contains(key) && e.contains("must be between 1 and"), "{e}");
        }
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
    fn redis_tls_and_its_login_are_checked_at_load_and_the_errors_name_the_fix() {
        let pki = roller_testkit::tls::Pki::new("config test CA");
        let client = pki.client("roller");
        let pw = pki.dir().join("redis-password");
        std::fs::write(&pw, "s3cret-redis-pw\n").unwrap();
        let (ca, cert, key) = (pki.ca().display().to_string(), client.cert.display(), client.key.display());
        let full = format!(
            "[redis]\ntls_ca_file = {ca:?}\ntls_cert_file = \"{cert}\"\ntls_key_file = \"{key}\"\nusername = \"roller\"\n\
             password_file = {:?}\n",
            pw.display().to_string()
        );
        let s = load(&full, &[("REDIS_URL", "rediss://redis.example:6380")]).unwrap();
        let r = s.redis.as_ref().expect("distributed mode");
        assert!(r.tls);
        assert_eq!(r.tls_ca_file.as_deref(), Some(pki.ca()));
        assert_eq!(r.tls_client, Some((client.cert.clone(), client.key.clone())));
        assert_eq!(r.username.as_deref(), Some("roller"));
        assert_eq!(r.password.as_ref().unwrap().expose_secret(), "s3cret-redis-pw");
        assert!(!format!("{s:?}").contains("s3cret-redis-pw"));
        // The environment's password wins over the file's.
        let s = load(&full, &[("REDIS_URL", "rediss://r:1"), ("ROLLER_REDIS_PASSWORD", "from-env")]).unwrap();
        assert_eq!(s.redis.unwrap().password.unwrap().expose_secret(), "from-env");
        // Without REDIS_URL none of it matters (embedded mode).
        assert!(load("[redis]\ntls_ca_file = \"/nonexistent\"\n", &[]).unwrap().redis.is_none());

        let url = |u: &'static str| vec![("REDIS_URL", u)];
        for (text, env, want) in [
            (format!("[redis]\ntls_ca_file = {ca:?}\n"), url("redis://r:6379"), "must start with rediss://"),
            (format!("[redis]\ntls_cert_file = \"{cert}\"\n"), url("rediss://r:6379"), "go together"),
            (format!("[redis]\ntls_key_file = \"{key}\"\n"), url("rediss://r:6379"), "go together"),
            (
                "[redis]\ntls_ca_file = \"/nonexistent/ca.pem\"\n".into(),
                url("rediss://r"),
                "cannot read /nonexistent/ca.pem",
            ),
            (format!("[redis]\ntls_ca_file = \"{key}\"\n"), url("rediss://r"), "holds no PEM certificate"),
            (
                format!("[redis]\ntls_cert_file = \"{cert}\"\ntls_key_file = {ca:?}\n"),
                url("rediss://r"),
                "no PEM private key",
            ),
            ("[redis]\nusername = \"roller\"\n".into(), url("rediss://r"), "ROLLER_REDIS_PASSWORD"),
            ("[redis]\nusername = \"roller\"\npassword_env = \"UNSET_PW\"\n".into(), url("rediss://r"), "UNSET_PW"),
            ("[redis]\nusername = \"roller\"\n".into(), url("rediss://u:p@r"), "one way"),
            ("".into(), url("rediss://a:1,redis://b:2"), "mixes redis:// and rediss://"),
        ] {
            let e = error(&text, &env);
            assert!(e.contains(want), "want {want:?} in {e:?}");
            assert!(!e.contains("s3cret"), "{e}");
        }
    }

    #[test]
    fn https_needs_both_the_certificate_and_the_key_and_makes_the_default_origin_https() {
        let pki = roller_testkit::tls::Pki::new("config test CA");
        let server = pki.server("roller");
        let both = format!(
            "[server]\ntls_cert_file = {:?}\ntls_key_file = {:?}\n",
            server.cert.display().to_string(),
            server.key.display().to_string()
        );
        let s = load(&both, &[]).unwrap();
        let tls = s.tls.expect("HTTPS");
        assert_eq!((tls.cert_file, tls.key_file), (server.cert.clone(), server.key.clone()));
        assert_eq!(s.cors_origin, "https://127.0.0.1:8000");
        assert!(load("", &[]).unwrap().tls.is_none());
        let cert = server.cert.display().to_string();
        let key = server.key.display().to_string();
        for (text, env, want) in [
            (format!("[server]\ntls_cert_file = {cert:?}\n"), vec![], "go together"),
            ("".to_string(), vec![("ROLLER_TLS_KEY_FILE", key.as_str())], "go together"),
            (
                format!("[server]\ntls_cert_file = {key:?}\ntls_key_file = {key:?}\n"),
                vec![],
                "holds no PEM certificate",
            ),
            (
                format!("[server]\ntls_cert_file = {cert:?}\ntls_key_file = \"/nonexistent.key\"\n"),
                vec![],
                "cannot read /nonexistent.key",
            ),
        ] {
            let e = error(&text, &env);
            assert!(e.contains(want), "want {want:?} in {e:?}");
        }
    }

    #[test]
    fn nameservers_default_to_the_system_and_the_environment_wins() {
        let system = load("", &[]).unwrap();
        assert!(system.dns.nameservers.is_empty(), "resolv.conf by default");
        let s = load("[dns]\nnameservers = [\"10.0.0.2\", \"[2001:db8::2]:5353\"]\n", &[]).unwrap();
        let want: Vec<SocketAddr> = vec!["10.0.0.2:53".parse().unwrap(), "[2001:db8::2]:5353".parse().unwrap()];
        assert_eq!(s.dns.nameservers, want);
        let s = load(
            "[dns]\nnameservers = [\"10.0.0.2\"]\n",
            &[("ROLLER_DNS_SERVERS", " 127.0.0.1:5353, [::1] ,127.0.0.1:5353")],
        )
        .unwrap();
        let want: Vec<SocketAddr> = vec!["127.0.0.1:5353".parse().unwrap(), "[::1]:53".parse().unwrap()];
        assert_eq!(s.dns.nameservers, want, "port 53 by default, duplicates once");
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

    /// The benchmark's baseline keeps the replay record in the process: only a `bench`
    /// build reads the switch, so no deployed roller can be configured out of sharing it.
    #[test]
    fn the_benchmarks_replay_switch_is_ignored_by_a_deployable_build() {
        let s = load("", &[("ROLLER_BENCH_REPLAY", "in-process")]).unwrap();
        let want = if cfg!(feature = "bench") { ReplayCheck::InProcess } else { ReplayCheck::Shared };
        assert_eq!(s.replay_check, want);
        assert_eq!(load("", &[]).unwrap().replay_check, ReplayCheck::Shared);
    }
}
