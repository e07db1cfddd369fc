//! One function per table of the file: the environment over the file over the
//! default, validated, through one layering helper ([`Layer`]). Each returns data;
//! nothing here opens a connection or builds a client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::file::{
    AuthBackendKind, AuthFile, BugTemplateFile, BugzillaFile, ClientFile, DnsFile, HealthFile, NotifyFile, PingFile,
    QueueFile, RebootFile, RunnerFile, SafetyFile, ServerFile, TaskclusterFile, TasksFile, XenFile,
};
use super::{
    AuthSettings, BugzillaConfig, ConfigError, ConnectionSettings, DEFAULT_BIND, DEFAULT_READ_SCOPE,
    DEFAULT_SCOPE_PREFIX, Env, HealthSettings, LocalClient, MAX_TIME_LIMIT, RunnerSettings, SafetySettings,
    ServerTlsFiles, TaskclusterConfig, err,
};
use crate::actions::{BugTemplate, RebootSettings, XenSettings};
use crate::drivers::dns::DnsSettings;
use crate::drivers::gate::GateSettings;
use crate::drivers::ping::PingSettings;
use crate::health::rules::HealthRule;
use crate::health::sweep::SweepSettings;
use crate::notify::NotifySettings;
use crate::task::Task;

/// Where values come from: the environment (which wins) and the file (named in messages).
pub(super) struct Layer<'a> {
    pub env: &'a dyn Env,
    pub path: Option<&'a Path>,
}

impl Layer<'_> {
    /// A file key as messages name it: `key (config file <path>)`.
    pub(super) fn at(&self, key: &str) -> String {
        match self.path {
            Some(p) => format!("{key} (config file {})", p.display()),
            None => key.to_string(),
        }
    }

    pub(super) fn env(&self, var: &str) -> Option<String> {
        self.env.get(var)
    }

    pub(super) fn env_path(&self, var: &str) -> Option<PathBuf> {
        self.env(var).map(PathBuf::from)
    }

    /// `var` from the environment when set (parsed; a bad value is `"<var> "<value>" <hint>"`),
    /// else the file's value, else `default`.
    fn value<T: FromStr>(&self, var: &str, file: Option<T>, default: T, hint: &str) -> Result<T, ConfigError> {
        match self.env(var) {
            Some(v) => v.parse().map_err(|_| err(format!("{var} {v:?} {hint}"))),
            None => Ok(file.unwrap_or(default)),
        }
    }

    /// Whole seconds, as [`Layer::value`].
    fn secs(&self, var: &str, file: Option<u64>, default: u64) -> Result<Duration, ConfigError> {
        self.value(var, file, default, "is not a whole number of seconds").map(Duration::from_secs)
    }

    pub(super) fn bool(&self, var: &str, file: Option<bool>, default: bool) -> Result<bool, ConfigError> {
        match self.env(var) {
            Some(v) => match v.as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(err(format!("{var} {v:?} must be true or false"))),
            },
            None => Ok(file.unwrap_or(default)),
        }
    }

    /// A secret from its environment variable (`direct`, which wins), or the file
    /// table's `<field>_env` (names a variable) or `<field>_file`. `None` when none is given.
    pub(super) fn secret(
        &self,
        direct: &str,
        field: &str,
        var: &Option<String>,
        file: &Option<PathBuf>,
    ) -> Result<Option<SecretString>, ConfigError> {
        let value = match (self.env(direct), var, file) {
            (Some(v), _, _) => v,
            (None, Some(_), Some(_)) => {
                return Err(err(format!("{field}: give {field}_env or {field}_file, not both")));
            }
            (None, Some(name), None) => {
                self.env(name).ok_or_else(|| err(format!("{field}_env: environment variable {name} is not set")))?
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
        Ok(Some(SecretString::from(value)))
    }
}

pub(super) struct Server {
    pub bind: SocketAddr,
    pub metrics_bind: Option<SocketAddr>,
    pub cors_origin: String,
    pub trusted_proxy: bool,
    pub tls: Option<ServerTlsFiles>,
    pub connections: ConnectionSettings,
}

/// `[server]`: `ROLLER_BIND`, `ROLLER_METRICS_BIND`, `CORS_ORIGIN`, `ROLLER_TRUSTED_PROXY`,
/// and the connection bounds (file only; every one at least 1).
pub(super) fn server(l: &Layer, f: ServerFile) -> Result<Server, ConfigError> {
    let default_bind: SocketAddr = DEFAULT_BIND.parse().expect("valid default");
    let bind = l.value("ROLLER_BIND", f.bind, default_bind, "is not an address like 127.0.0.1:8000")?;
    let metrics_bind = match l.env("ROLLER_METRICS_BIND") {
        Some(b) => Some(
            b.parse().map_err(|_| err(format!("ROLLER_METRICS_BIND {b:?} is not an address like 127.0.0.1:9100")))?,
        ),
        None => f.metrics_bind,
    };
    let tls = super::tls::server_tls(
        l,
        l.env_path("ROLLER_TLS_CERT_FILE").or(f.tls_cert_file),
        l.env_path("ROLLER_TLS_KEY_FILE").or(f.tls_key_file),
    )?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let cors_origin = l.env("CORS_ORIGIN").or(f.cors_origin).unwrap_or_else(|| format!("{scheme}://{bind}"));
    let printable = cors_origin.chars().all(|c| c.is_ascii_graphic());
    if cors_origin != "*" && !(printable && (cors_origin.starts_with("http://") || cors_origin.starts_with("https://")))
    {
        return Err(err(format!(
            "CORS_ORIGIN {cors_origin:?} must be \"*\" or an origin with its scheme, e.g. https://firefox-ci-tc.services.mozilla.com"
        )));
    }
    let trusted_proxy = l.bool("ROLLER_TRUSTED_PROXY", f.trusted_proxy, false)?;
    // At least 1 each; the times at most a week, so deadlines never overflow.
    let bounded = |key: &str, v: Option<u64>, default: u64, max: u64| match v.unwrap_or(default) {
        n if (1..=max).contains(&n) => Ok(n),
        n => Err(err(format!("{} must be between 1 and {max} (got {n})", l.at(key)))),
    };
    let secs = |key: &str, v: Option<u64>, default: u64| {
        bounded(key, v, default, MAX_TIME_LIMIT.as_secs()).map(Duration::from_secs)
    };
    let connections = ConnectionSettings {
        header_read_timeout: secs("server.header_read_timeout_secs", f.header_read_timeout_secs, 10)?,
        idle_timeout: secs("server.idle_timeout_secs", f.idle_timeout_secs, 60)?,
        max_connections: bounded("server.max_connections", f.max_connections, 4096, 1 << 20)? as usize,
        shutdown_grace: secs("server.shutdown_grace_secs", f.shutdown_grace_secs, 10)?,
    };
    Ok(Server { bind, metrics_bind, cors_origin, trusted_proxy, tls, connections })
}

/// `[auth]`: the backend and its clients or Taskcluster, and the scopes roller checks.
pub(super) fn auth(l: &Layer, f: AuthFile) -> Result<(AuthSettings, String, String), ConfigError> {
    let backend = match l.env("ROLLER_AUTH_BACKEND") {
        Some(b) => match b.as_str() {
            "local" => AuthBackendKind::Local,
            "taskcluster" => AuthBackendKind::Taskcluster,
            _ => return Err(err(format!("ROLLER_AUTH_BACKEND {b:?} must be \"local\" or \"taskcluster\""))),
        },
        None => f.backend.unwrap_or(AuthBackendKind::Local),
    };
    let auth = match backend {
        AuthBackendKind::Local => {
            let clients =
                f.clients.into_iter().enumerate().map(|(i, c)| client(l, c, i)).collect::<Result<Vec<_>, _>>()?;
            AuthSettings::Local { clients }
        }
        AuthBackendKind::Taskcluster => {
            let root_url = l.env("TASKCLUSTER_ROOT_URL").or(f.taskcluster_root_url).ok_or_else(|| {
                err("the taskcluster auth backend needs TASKCLUSTER_ROOT_URL (or auth.taskcluster_root_url)")
            })?;
            if !(root_url.starts_with("http://") || root_url.starts_with("https://")) {
                return Err(err(format!("TASKCLUSTER_ROOT_URL {root_url:?} must start with http:// or https://")));
            }
            let secs = f.timeout_secs.unwrap_or(5);
            if secs == 0 {
                return Err(err(format!("{} must be at least 1", l.at("auth.timeout_secs"))));
            }
            AuthSettings::Taskcluster {
                root_url: root_url.trim_end_matches('/').to_string(),
                timeout: Duration::from_secs(secs),
            }
        }
    };
    let scope_prefix =
        l.env("ROLLER_SCOPE_PREFIX").or(f.scope_prefix).unwrap_or_else(|| DEFAULT_SCOPE_PREFIX.to_string());
    let read_scope = l.env("ROLLER_READ_SCOPE").or(f.read_scope).unwrap_or_else(|| DEFAULT_READ_SCOPE.to_string());
    for (k, v) in [("scope_prefix", &scope_prefix), ("read_scope", &read_scope)] {
        if v.chars().any(|c| !(' '..='~').contains(&c)) {
            return Err(err(format!("{} {v:?} may only contain printable ASCII", l.at(k))));
        }
    }
    Ok((auth, scope_prefix, read_scope))
}

/// One `[[auth.clients]]` entry, its token from exactly one source.
fn client(l: &Layer, c: ClientFile, i: usize) -> Result<LocalClient, ConfigError> {
    let at = match l.path {
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
        SecretString::from(l.env(&var).ok_or_else(|| err(format!("{at}: environment variable {var} is not set")))?)
    } else {
        let f = c.access_token_file.expect("checked above");
        let text = std::fs::read_to_string(&f).map_err(|e| err(format!("{at}: cannot read {}: {e}", f.display())))?;
        SecretString::from(text.trim().to_string())
    };
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

pub(super) struct Queue {
    pub sqlite_path: PathBuf,
    pub history_cap: usize,
    pub history_limit: usize,
    pub retention: Duration,
}

/// `[queue]`: the SQLite file and what is kept for how long.
pub(super) fn queue(l: &Layer, q: QueueFile, data_dir: &Path) -> Result<Queue, ConfigError> {
    let sqlite_path = q.sqlite_path.unwrap_or_else(|| data_dir.join("roller.sqlite3"));
    let history_cap = q.history_cap.unwrap_or(100).clamp(1, 10_000);
    let history_limit = q.history_limit.unwrap_or(50).clamp(1, history_cap);
    let retention = Duration::from_secs(q.retention_secs.unwrap_or(7 * 86_400));
    if retention.is_zero() || retention > Duration::from_secs(366 * 86_400) {
        return Err(err(format!("{} must be between 1 and 31622400 (a year)", l.at("queue.retention_secs"))));
    }
    Ok(Queue { sqlite_path, history_cap, history_limit, retention })
}

/// `[runner]` plus the original's `CELERY_TASK_SOFT_TIME_LIMIT` / `CELERY_TASK_TIME_LIMIT`.
pub(super) fn runner(l: &Layer, r: RunnerFile) -> Result<RunnerSettings, ConfigError> {
    let runner = RunnerSettings {
        concurrency: r.concurrency.unwrap_or(1000).max(1),
        soft_time_limit: l.secs("CELERY_TASK_SOFT_TIME_LIMIT", r.soft_time_limit_secs, 600)?,
        hard_time_limit: l.secs("CELERY_TASK_TIME_LIMIT", r.hard_time_limit_secs, 1200)?,
        lease_margin: Duration::from_secs(r.lease_margin_secs.unwrap_or(60)),
        poll_interval: Duration::from_millis(r.poll_interval_ms.unwrap_or(1000).max(10)),
        shutdown_grace: Duration::from_secs(r.shutdown_grace_secs.unwrap_or(30)),
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
            l.at("runner.lease_margin_secs")
        )));
    }
    if runner.soft_time_limit.is_zero() || runner.soft_time_limit > runner.hard_time_limit {
        return Err(err(format!(
            "the soft time limit ({}s) must be at least 1s and not above the hard time limit ({}s)",
            runner.soft_time_limit.as_secs(),
            runner.hard_time_limit.as_secs()
        )));
    }
    Ok(runner)
}

/// `[tasks] enabled` / `TASK_NAMES`: which tasks the API accepts (default: all but benchmarks).
pub(super) fn tasks(l: &Layer, t: TasksFile) -> Result<Vec<Task>, ConfigError> {
    let names: Vec<String> = match l.env("TASK_NAMES") {
        Some(list) => list.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        None => t.enabled.unwrap_or_else(|| Task::ALL.iter().map(|t| t.name().to_string()).collect()),
    };
    let mut enabled = Vec::new();
    for n in names {
        let t = Task::parse(&n).ok_or_else(|| {
            err(format!("TASK_NAMES / tasks.enabled names unknown task {n:?}; roller knows: {}", Task::list(Task::ALL)))
        })?;
        if !enabled.contains(&t) {
            enabled.push(t);
        }
    }
    if enabled.is_empty() {
        return Err(err("no tasks enabled (TASK_NAMES / tasks.enabled is empty)"));
    }
    Ok(enabled)
}

/// `[ping]`: the `ping` task's echo requests.
pub(super) fn ping(l: &Layer, p: PingFile) -> Result<PingSettings, ConfigError> {
    let d = PingSettings::default();
    let ping = PingSettings {
        count: p.count.unwrap_or(d.count),
        interval: p.interval_ms.map(Duration::from_millis).unwrap_or(d.interval),
        timeout: p.timeout_ms.map(Duration::from_millis).unwrap_or(d.timeout),
        method: p.method.unwrap_or(d.method),
    };
    if ping.count == 0 || ping.count > 100 || ping.timeout.is_zero() {
        return Err(err(format!("{}: count must be 1..=100 and timeout_ms above 0", l.at("[ping]"))));
    }
    Ok(ping)
}

/// `[reboot]` plus the original's `DOWN_TIMEOUT` / `UP_TIMEOUT`: how a reboot is proven.
pub(super) fn reboot(l: &Layer, r: RebootFile, ping: &PingSettings) -> Result<RebootSettings, ConfigError> {
    let mut reboot = RebootSettings {
        down_timeout: l.secs("DOWN_TIMEOUT", r.down_timeout_secs, 60)?,
        up_timeout: l.secs("UP_TIMEOUT", r.up_timeout_secs, 300)?,
        ..RebootSettings::default()
    };
    if let Some(ms) = r.probe_interval_ms {
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
    Ok(reboot)
}

/// `[safety]`: the reboot-loop breaker, the per-device limits, the fleet confirmation.
pub(super) fn safety(l: &Layer, s: SafetyFile, history_cap: usize) -> Result<SafetySettings, ConfigError> {
    let safety = SafetySettings {
        max_restarts: l.value("ROLLER_MAX_RESTARTS", s.max_restarts, 3, "is not a whole number")?,
        window: Duration::from_secs(s.restart_window_hours.unwrap_or(6).clamp(1, 24 * 31) * 3600),
        gate: GateSettings {
            concurrency: s.device_concurrency.unwrap_or(4).clamp(1, 64),
            stagger: Duration::from_millis(s.power_on_stagger_ms.unwrap_or(2000).min(60_000)),
        },
        confirm_above: s.confirm_above.unwrap_or(10),
    };
    if usize::try_from(safety.max_restarts).unwrap_or(usize::MAX) > history_cap {
        return Err(err(format!(
            "safety.max_restarts ({}) cannot exceed queue.history_cap ({history_cap}): roller only sees that much history",
            safety.max_restarts
        )));
    }
    Ok(safety)
}

/// `[bugzilla]` plus `BUGZILLA_URL`, `BUGZILLA_API_KEY`, `BUGZILLA_REOPEN_STATE`. Bug
/// filing is on when a URL is set; then a key is required.
pub(super) fn bugzilla(l: &Layer, b: BugzillaFile) -> Result<Option<BugzillaConfig>, ConfigError> {
    let Some(url) = l.env("BUGZILLA_URL").or(b.url) else {
        return Ok(None);
    };
    let api_key = l.secret("BUGZILLA_API_KEY", "bugzilla.api_key", &b.api_key_env, &b.api_key_file)?.ok_or_else(
        || err("BUGZILLA_URL is set but no API key is: set BUGZILLA_API_KEY, bugzilla.api_key_env or bugzilla.api_key_file"),
    )?;
    crate::drivers::bugzilla::base_url(&url).map_err(|e| err(format!("BUGZILLA_URL / bugzilla.url: {e}")))?;
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
    Ok(Some(BugzillaConfig {
        url,
        api_key,
        timeout: Duration::from_secs(b.timeout_secs.unwrap_or(30).clamp(1, 300)),
        reopen_state: l.env("BUGZILLA_REOPEN_STATE").or(b.reopen_state).unwrap_or_else(|| "REOPENED".into()),
        // A day at most: older bugs are no longer "the same incident".
        incident_window: Duration::from_secs(b.incident_window_secs.unwrap_or(1800).min(86_400)),
        tracker: template(b.tracker, BugTemplate::default_tracker(), "tracker")?,
        reboot: template(b.reboot, BugTemplate::default_reboot(), "reboot")?,
    }))
}

/// `[notify]` plus `NOTIFY_EMAIL` (comma-separated), `ROLLER_WEBHOOK_URL`, `ROLLER_WEBHOOK_SECRET`.
pub(super) fn notify(l: &Layer, n: NotifyFile, has_taskcluster: bool) -> Result<NotifySettings, ConfigError> {
    let emails: Vec<String> = match l.env("NOTIFY_EMAIL") {
        Some(list) => list.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        None => n.email.unwrap_or_default(),
    };
    if let Some(bad) = emails.iter().find(|e| !e.contains('@') || e.chars().any(char::is_whitespace)) {
        return Err(err(format!("NOTIFY_EMAIL / notify.email: {bad:?} is not an email address")));
    }
    let webhook_url = l.env("ROLLER_WEBHOOK_URL").or(n.webhook_url);
    if let Some(u) = &webhook_url {
        let ok =
            reqwest::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.username().is_empty());
        if !ok {
            return Err(err(format!(
                "ROLLER_WEBHOOK_URL / notify.webhook_url {u:?}: an http(s) URL without credentials"
            )));
        }
    }
    let webhook_secret =
        l.secret("ROLLER_WEBHOOK_SECRET", "notify.webhook_secret", &n.webhook_secret_env, &n.webhook_secret_file)?;
    if webhook_secret.as_ref().is_some_and(|s| s.expose_secret().len() < 16) {
        return Err(err("the webhook secret must be at least 16 characters"));
    }
    let settings = NotifySettings {
        emails,
        requester_domain: n.requester_email_domain,
        matrix_room: n.matrix_room,
        slack_channel: n.slack_channel,
        webhook_url,
        webhook_secret,
        public_url: l.env("ROLLER_PUBLIC_URL").or(n.public_url),
        timeout: Duration::from_secs(n.timeout_secs.unwrap_or(10).clamp(1, 120)),
    };
    settings.check(has_taskcluster).map_err(err)?;
    Ok(settings)
}

/// `[taskcluster]` plus `TASKCLUSTER_ROOT_URL`, `TASKCLUSTER_CLIENT_ID`,
/// `TASKCLUSTER_ACCESS_TOKEN`: on when a root URL and a client id are set.
pub(super) fn taskcluster(l: &Layer, t: TaskclusterFile) -> Result<Option<TaskclusterConfig>, ConfigError> {
    // Both or nothing: a client id alone is how `roller jobs` users carry their own
    // credentials, and must not break a command that never calls Taskcluster.
    let (Some(client_id), Some(root_url)) =
        (l.env("TASKCLUSTER_CLIENT_ID").or(t.client_id), l.env("TASKCLUSTER_ROOT_URL").or(t.root_url))
    else {
        return Ok(None);
    };
    let access_token = l
        .secret("TASKCLUSTER_ACCESS_TOKEN", "taskcluster.access_token", &t.access_token_env, &t.access_token_file)?
        .ok_or_else(|| err("TASKCLUSTER_CLIENT_ID is set but no access token is (TASKCLUSTER_ACCESS_TOKEN)"))?;
    crate::drivers::taskcluster::root_url(&root_url).map_err(|e| err(e.to_string()))?;
    let loan_days = t.loan_days.unwrap_or(30);
    if loan_days == 0 || loan_days > 365 {
        return Err(err("taskcluster.loan_days must be 1..=365"));
    }
    Ok(Some(TaskclusterConfig {
        root_url,
        client_id,
        access_token,
        timeout: Duration::from_secs(t.timeout_secs.unwrap_or(30).clamp(1, 300)),
        loan: Duration::from_secs(u64::from(loan_days) * 86_400),
    }))
}

/// `[xen]` plus `XEN_URL`, `XEN_USERNAME`, `XEN_PASSWORD` (the original's names). On
/// when a URL is set; then a user and a password are required.
pub(super) fn xen(l: &Layer, x: XenFile) -> Result<Option<XenSettings>, ConfigError> {
    let Some(url) = l.env("XEN_URL").or(x.url).filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let parsed = reqwest::Url::parse(&url).map_err(|_| err("XEN_URL / xen.url is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") || !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(err(format!(
            "XEN_URL / xen.url ({}): an http(s) URL without user or password",
            crate::drivers::url_for_message(&url)
        )));
    }
    let user = l
        .env("XEN_USERNAME")
        .or(x.username)
        .ok_or_else(|| err("XEN_URL is set but XEN_USERNAME / xen.username is not"))?;
    let password = l.secret("XEN_PASSWORD", "xen.password", &x.password_env, &x.password_file)?.ok_or_else(|| {
        err("XEN_URL is set but no password is: set XEN_PASSWORD, xen.password_env or xen.password_file")
    })?;
    Ok(Some(XenSettings {
        url,
        user,
        password,
        verify_tls: x.verify_tls.unwrap_or(true),
        delay: Duration::from_secs(x.delay_secs.unwrap_or(5).min(600)),
        timeout: Duration::from_secs(x.timeout_secs.unwrap_or(30).clamp(1, 300)),
    }))
}

/// `[dns]` plus `ROLLER_DNS_SERVERS`: the resolver's nameservers (none: resolv.conf).
pub(super) fn dns(l: &Layer, d: DnsFile) -> Result<DnsSettings, ConfigError> {
    let nameservers = match l.env("ROLLER_DNS_SERVERS") {
        Some(list) => {
            let entries: Vec<&str> = list.split(',').map(str::trim).collect();
            nameservers("ROLLER_DNS_SERVERS", &entries)?
        }
        None => {
            let entries = d.nameservers.unwrap_or_default();
            nameservers(&l.at("dns.nameservers"), &entries.iter().map(|e| e.trim()).collect::<Vec<_>>())?
        }
    };
    Ok(DnsSettings { nameservers, ..DnsSettings::default() })
}

/// Nameserver addresses, `ip` or `ip:port` (`[v6]:port`), port 53 by default.
fn nameservers(key: &str, entries: &[&str]) -> Result<Vec<SocketAddr>, ConfigError> {
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

/// `[health]` plus `ROLLER_HEALTH` (on/off): the sweep's cadences and the hung rule.
pub(super) fn health(l: &Layer, h: HealthFile) -> Result<HealthSettings, ConfigError> {
    let secs = |key: &str, v: Option<u64>, default: u64, min: u64| -> Result<Duration, ConfigError> {
        let n = v.unwrap_or(default);
        if n < min || n > 86_400 {
            return Err(err(format!("{} must be between {min} and 86400 seconds", l.at(&format!("health.{key}")))));
        }
        Ok(Duration::from_secs(n))
    };
    let sweep = SweepSettings {
        probe_every: secs("probe_every_secs", h.probe_every_secs, 120, 5)?,
        // A BMC is asked gently: never more often than once a minute.
        power_every: secs("power_every_secs", h.power_every_secs, 600, 60)?,
        taskcluster_every: secs("taskcluster_every_secs", h.taskcluster_every_secs, 300, 5)?,
        concurrency: h.concurrency.unwrap_or(64).clamp(1, 1024),
    };
    let mins = |key: &str, v: Option<u64>, default: u64| -> Result<Duration, ConfigError> {
        let n = v.unwrap_or(default);
        if n == 0 || n > 7 * 24 * 60 {
            return Err(err(format!("{} must be between 1 and 10080 minutes", l.at(&format!("health.{key}")))));
        }
        Ok(Duration::from_secs(n * 60))
    };
    let rule = HealthRule {
        idle_after: mins("idle_after_mins", h.idle_after_mins, 30)?,
        running_after: mins("running_after_mins", h.running_after_mins, 120)?,
        // Three sweeps: one missed sweep is not yet "unknown".
        stale_after: sweep.probe_every * 3,
    };
    let root = l.env("ROLLER_HEALTH_TASKCLUSTER_ROOT_URL").or(h.taskcluster_root_url);
    if let Some(u) = &root {
        crate::drivers::taskcluster::root_url(u).map_err(|e| err(format!("health.taskcluster_root_url: {e}")))?;
    }
    Ok(HealthSettings { enabled: l.bool("ROLLER_HEALTH", h.enabled, false)?, sweep, rule, taskcluster_root_url: root })
}
