//! The configuration file's shape: what `roller.toml` may say. Every table refuses
//! unknown keys, so a typo is an error that names the key and the file.
//! Nothing here is resolved: `sections` layers these under the environment.

use std::net::SocketAddr;
use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

use crate::drivers::ping::PingMethod;

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
    pub simplemdm: SimpleMdmFile,
    pub taskcluster: TaskclusterFile,
    pub notify: NotifyFile,
    pub safety: SafetyFile,
    pub redis: RedisFile,
    pub dns: DnsFile,
    pub health: HealthFile,
    pub medic: MedicFile,
    pub paths: PathsFile,
}

/// `[paths]`: the standing path checks.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathsFile {
    pub enabled: Option<bool>,
    pub interval_secs: Option<u64>,
    pub max_per_minute: Option<u64>,
    pub concurrency: Option<u64>,
}

/// `[medic]`: heal hung workers behind safety gates.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MedicFile {
    pub enabled: Option<bool>,
    pub dry_run: Option<bool>,
    pub every_secs: Option<u64>,
    pub fresh_within_secs: Option<u64>,
    pub worker_fresh_within_secs: Option<u64>,
    pub min_fresh_percent: Option<f64>,
    pub max_percent: Option<f64>,
    pub max_per_chassis: Option<u64>,
    pub max_per_pdu: Option<u64>,
    pub hold_after_failures: Option<u64>,
    pub hold_hours: Option<u64>,
    pub service_within_mins: Option<u64>,
    pub remediation: Option<String>,
}

/// `[health]`: the sweep that observes every inventory machine.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthFile {
    pub enabled: Option<bool>,
    pub probe_every_secs: Option<u64>,
    pub power_every_secs: Option<u64>,
    pub taskcluster_every_secs: Option<u64>,
    pub concurrency: Option<usize>,
    /// The hung rule's thresholds (RelOps': 30 and 120 minutes).
    pub idle_after_mins: Option<u64>,
    pub running_after_mins: Option<u64>,
    /// Where to read worker state from without credentials (Firefox-CI allows it);
    /// `[taskcluster]` credentials, when set, are used instead.
    pub taskcluster_root_url: Option<String>,
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

/// `[simplemdm]`: the account `mdm_restart` asks.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimpleMdmFile {
    pub api_url: Option<String>,
    pub api_key_env: Option<String>,
    pub api_key_file: Option<PathBuf>,
    pub max_concurrent: Option<u64>,
    pub timeout_secs: Option<u64>,
    pub retry_within_secs: Option<u64>,
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
    pub incident_window_secs: Option<u64>,
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
    pub header_read_timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub max_connections: Option<u64>,
    pub shutdown_grace_secs: Option<u64>,
    /// PEM: roller serves HTTPS with this certificate (chain) and key; both or neither.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
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
    /// PEM: trust only this CA for the server (needs a rediss:// URL).
    pub tls_ca_file: Option<PathBuf>,
    /// PEM: the client certificate and its key, for a server that demands one.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// An ACL user; its password by reference only.
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
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
