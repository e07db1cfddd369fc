//! Wiring: build the queue, authenticator, API and runner from settings (which
//! are data), the clients and limits the actions use, the notifier, and the
//! first-run data directory with its generated admin credentials.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use secrecy::ExposeSecret;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::actions::{ActionSettings, BugzillaSettings, TaskclusterSettings};
use crate::api::tls::ServerTls;
use crate::api::{self, AppState};
use crate::auth::local::LocalAuth;
use crate::auth::nonce::NonceDigest;
use crate::auth::replay::{NonceStore, ReplayGuard};
use crate::auth::taskcluster::TaskclusterAuth;
use crate::auth::{Authenticator, Backend};
use crate::breaker::BreakerRule;
use crate::config::{AuthSettings, ReplayCheck, Settings};
use crate::drivers::bugzilla::Bugzilla;
use crate::drivers::dns::DnsResolver;
use crate::drivers::gate::Gates;
use crate::drivers::simplemdm::SimpleMdm;
use crate::drivers::taskcluster::TaskclusterClient;
use crate::health::sweep::{Sweeper, WorkerSource};
use crate::health::taskcluster::TaskclusterWorkers;
use crate::inventory::{Inventory, InventoryHandle};
use crate::medic::Medic;
use crate::notify::Notifier;
use crate::paths::checker::Checker;
use crate::queue::records::Records;
use crate::queue::redis::{RedisLogin, RedisQueue, RedisSettings, RedisTls};
use crate::queue::sqlite::SqliteQueue;
use crate::queue::{Queue, QueueOptions};
use crate::runner::Runner;

mod data_dir;

pub use data_dir::{ADMIN_CREDENTIALS_FILE, CredentialsFile, load_or_create_admin, read_credentials};
use data_dir::{DataDirClaim, claim_data_dir, create_private_dir};

/// Which parts of roller this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `roller serve`: the API and a runner (SQLite, or Redis when `REDIS_URL` is set).
    Serve,
    /// `roller api`: the API only (needs Redis).
    Api,
    /// `roller worker`: a runner only (needs Redis).
    Worker,
}

/// A built roller: queue open, API listener bound and/or runner ready.
pub struct Application {
    http: Option<(tokio::net::TcpListener, SocketAddr)>,
    /// `[server] tls_cert_file`: the listener serves HTTPS with this (reloaded on SIGHUP).
    tls: Option<Arc<ServerTls>>,
    state: AppState,
    runner: Option<Runner>,
    /// The health sweep, in processes that run jobs, when `[health]` is on.
    sweeper: Option<Sweeper>,
    /// The medic's loop, in processes that run jobs, when `[medic]` is on.
    medic: Option<Arc<Medic>>,
    /// The path checker, in processes that run jobs.
    checker: Option<Arc<Checker>>,
    /// What the actions of this process use (clients, limits, the inventory).
    actions: Arc<ActionSettings>,
    /// Where the admin credentials are, when this run uses them.
    pub admin_credentials: Option<PathBuf>,
    /// A worker's listener serves only `/metrics` and the heartbeats.
    ops_only: bool,
    /// This embedded roller's claim on its data directory (see [`claim_data_dir`]).
    data_dir_claim: Option<DataDirClaim>,
    /// The open-file limit in force (raised to the hard limit at start), when known.
    open_files: Option<u64>,
}

impl Application {
    /// `roller serve` on whatever queue the settings name.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        Self::build_mode(settings, Mode::Serve).await
    }

    pub async fn build_mode(settings: Settings, mode: Mode) -> anyhow::Result<Application> {
        if mode != Mode::Serve && settings.redis.is_none() {
            anyhow::bail!(
                "needs REDIS_URL: `roller api` and `roller worker` share a Redis queue (distributed mode); \
                 use `roller serve` for the embedded queue"
            );
        }
        // Before anything records a metric or talks to a device.
        crate::telemetry::prometheus();
        let open_files = raise_open_file_limit();
        create_private_dir(&settings.data_dir)?;
        let data_dir_claim = if settings.redis.is_none() { Some(claim_data_dir(&settings.data_dir)?) } else { None };
        if let Some(pid) = data_dir_claim.as_ref().and_then(|c| c.shared_with.as_deref()) {
            tracing::warn!(
                data_dir = %settings.data_dir.display(),
                other_pid = pid,
                "another roller serves from this data directory: both use one queue file"
            );
        }
        // What is built from the settings alone is also built by `check_clients`
        // (`roller check-config`): a client added here belongs there too.
        let actions = action_settings(&settings)?;
        load_inventory(&settings, &actions.inventory)?;
        let actions = Arc::new(actions);
        let notifier = notifier(&settings)?;
        let (queue, records) = open_queue(&settings).await?;
        // A worker serves no HTTP: it needs no clients (and must not generate an admin).
        let (auth, admin_credentials) = match mode {
            Mode::Worker => {
                (Authenticator::new(Backend::Local(LocalAuth::new(Vec::new())), ReplayGuard::in_process()), None)
            }
            Mode::Serve | Mode::Api => build_auth(&settings, replay_guard(&settings, &records))?,
        };
        // A worker serves only the operational endpoints, and only when asked to.
        let bind = if mode == Mode::Worker { settings.metrics_bind } else { Some(settings.bind) };
        // Read before binding: a bad pair stops the start, naming the file.
        let tls = match (&settings.tls, bind) {
            (Some(files), Some(_)) => Some(ServerTls::load(files).map_err(|e| anyhow::anyhow!(e))?),
            _ => None,
        };
        let http = match bind {
            None => None,
            Some(b) => {
                let listener =
                    tokio::net::TcpListener::bind(b).await.with_context(|| format!("cannot listen on {b}"))?;
                let addr = listener.local_addr()?;
                Some((listener, addr))
            }
        };
        let wake = Arc::new(Notify::new());
        let settings = Arc::new(settings);
        // The sweep's and the medic's lease holder: host:pid:random, like a runner's id.
        // Host and pid alone are not unique: containers sharing a hostname each run roller
        // as pid 1, and two processes with one name would both hold (and release) a lease.
        let holder = format!(
            "{}:{}:{:08x}",
            std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim(),
            std::process::id(),
            rand::random::<u32>()
        );
        // Every process has one for `roller medic plan`; only those that run jobs loop.
        let medic = Arc::new(Medic {
            settings: settings.medic,
            rule: settings.health.rule,
            breaker: BreakerRule { max_restarts: settings.safety.max_restarts, window: settings.safety.window },
            queue: queue.clone(),
            records: records.clone(),
            inventory: actions.inventory.clone(),
            notifier: notifier.clone(),
            wake: wake.clone(),
            holder: holder.clone(),
            paths_checked: settings.paths.enabled,
        });
        let medic_loop = (mode != Mode::Api && settings.medic.enabled).then(|| medic.clone());
        // In every process that runs jobs, periodic or not: it also runs the checks asked
        // for through the API, where the credentials and the jobs' gates are.
        let paths_wake = Arc::new(Notify::new());
        let checker = (mode != Mode::Api).then(|| {
            Arc::new(Checker {
                settings: settings.paths,
                // Lowest priority on every device: a check never holds up a job.
                actions: Arc::new(ActionSettings { gates: actions.gates.background(), ..(*actions).clone() }),
                records: records.clone(),
                notifier: notifier.clone(),
                remediation: settings.medic.remediation,
                wake: paths_wake.clone(),
                holder: holder.clone(),
            })
        });
        let workers = health_source(&settings)?;
        let sweeper = (mode != Mode::Api && settings.health.enabled).then(|| Sweeper {
            settings: settings.health.sweep,
            actions: actions.clone(),
            records: records.clone(),
            workers: workers.clone(),
            rule: settings.health.rule,
            holder,
            remediation: settings.medic.remediation,
            paths_checked: settings.paths.enabled,
        });
        let runner = (mode != Mode::Api).then(|| {
            Runner::new(queue.clone(), settings.runner.clone(), actions.clone(), wake.clone()).with_notifier(notifier)
        });
        let listen_port = http.as_ref().map(|(_, a)| a.port()).unwrap_or(0);
        let state = AppState {
            queue,
            records,
            medic,
            auth: Arc::new(auth),
            settings,
            inventory: actions.inventory.clone(),
            listen_port,
            wake,
            paths_wake,
            streams: Arc::new(tokio::sync::Semaphore::new(api::MAX_STREAMS)),
            stopping: CancellationToken::new(),
        };
        Ok(Application {
            http,
            tls,
            state,
            runner,
            sweeper,
            medic: medic_loop,
            checker,
            actions,
            admin_credentials,
            ops_only: mode == Mode::Worker,
            data_dir_claim,
            open_files,
        })
    }

    /// Where this process listens: the API, or a worker's metrics endpoint (`None`: no HTTP).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|(_, a)| *a)
    }

    /// `https://<addr>` or `http://<addr>`: what clients of this listener use.
    pub fn base_url(&self) -> Option<String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        self.local_addr().map(|a| format!("{scheme}://{a}"))
    }

    /// The listener's certificate, when it serves HTTPS (what SIGHUP reloads).
    pub fn server_tls(&self) -> Option<&Arc<ServerTls>> {
        self.tls.as_ref()
    }

    /// The runner's identity in job records; `None` for an API-only process.
    pub fn consumer(&self) -> Option<&str> {
        self.runner.as_ref().map(|r| r.consumer())
    }

    /// The pid of another embedded roller already serving from this data directory.
    pub fn shares_data_dir_with(&self) -> Option<&str> {
        self.data_dir_claim.as_ref().and_then(|c| c.shared_with.as_deref())
    }

    pub fn settings(&self) -> &Settings {
        &self.state.settings
    }

    /// The inventory in force (what SIGHUP reloads).
    pub fn inventory(&self) -> &InventoryHandle {
        &self.actions.inventory
    }

    /// Run until `shutdown` fires: the API stops taking requests, and the
    /// runner winds down (see `Runner::run_until_stopped`).
    pub async fn run_until_stopped(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let runner = self.runner.take().map(|r| tokio::spawn(r.run_until_stopped(shutdown.clone())));
        let sweeper = self.sweeper.take().map(|s| tokio::spawn(s.run(shutdown.clone())));
        let medic = self.medic.take().map(|m| tokio::spawn(m.run(shutdown.clone())));
        let checker = self.checker.take().map(|c| tokio::spawn(c.run(shutdown.clone())));
        if let Some((listener, addr)) = self.http.take() {
            let app = if self.ops_only { api::ops_router(self.state.clone()) } else { api::router(self.state.clone()) };
            let limits = connection_limits(self.state.settings.connections, self.open_files);
            let acceptor = self.tls.as_ref().map(|t| t.acceptor()).transpose().map_err(|e| anyhow::anyhow!(e))?;
            tracing::info!(
                addr = %addr,
                scheme = if acceptor.is_some() { "https" } else { "http" },
                certificate_sha256 = self.tls.as_ref().map(|t| t.fingerprint()),
                max_connections = limits.max_connections,
                header_read_timeout_secs = limits.header_read_timeout.as_secs(),
                idle_timeout_secs = limits.idle_timeout.as_secs(),
                "listening"
            );
            let (s, streams) = (shutdown.clone(), self.state.stopping.clone());
            // Open responses may finish within the grace; live job streams would never end.
            tokio::spawn(async move {
                s.cancelled().await;
                streams.cancel();
            });
            let overload = api::overload_router(self.state.clone());
            let cors = &self.state.settings.cors_origin;
            api::server::serve(listener, app, overload, cors, limits, acceptor, shutdown.clone()).await;
        }
        if let Some(r) = runner {
            r.await.context("runner task failed")?;
        }
        if let Some(s) = sweeper {
            s.await.context("health sweep failed")?;
        }
        if let Some(m) = medic {
            m.await.context("medic failed")?;
        }
        if let Some(c) = checker {
            c.await.context("path checker failed")?;
        }
        Ok(())
    }
}

/// Raise this process's soft limit on open files to its hard limit (every connection,
/// socket to a device and child's pipe is one), and return the limit in force.
fn raise_open_file_limit() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read the open file limit");
        return None;
    }
    // An unlimited hard limit cannot be the soft one: the kernel's ceiling is nr_open.
    let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|s| s.trim().parse().ok());
    let target = lim.rlim_max.min(ceiling.unwrap_or(lim.rlim_max));
    if lim.rlim_cur >= target {
        tracing::info!(soft = lim.rlim_cur, hard = lim.rlim_max, "open file limit");
        return Some(lim.rlim_cur);
    }
    let from = lim.rlim_cur;
    lim.rlim_cur = target;
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        let e = std::io::Error::last_os_error();
        tracing::warn!(error = %e, soft = from, hard = lim.rlim_max, "cannot raise the open file limit");
        return Some(from);
    }
    tracing::info!(from, to = target, "open file limit raised to the hard limit");
    Some(target)
}

/// `[server]`'s connection bounds, with the cap kept within half the open-file limit
/// (the rest is for the queue, devices, clients and children).
fn connection_limits(
    mut limits: crate::config::ConnectionSettings,
    open_files: Option<u64>,
) -> crate::config::ConnectionSettings {
    let Some(files) = open_files else { return limits };
    let room = usize::try_from(files / 2).unwrap_or(usize::MAX).max(1);
    if limits.max_connections > room {
        tracing::warn!(
            max_connections = limits.max_connections,
            open_file_limit = files,
            serving = room,
            "server.max_connections is above half the open file limit; serving fewer"
        );
        limits.max_connections = room;
    }
    limits
}

/// What the actions use, built from the settings: an empty inventory handle (see
/// [`load_inventory`]), one DNS resolver, the per-device gates, and the clients for
/// Bugzilla, XenAPI, SimpleMDM and Taskcluster when configured.
pub fn action_settings(settings: &Settings) -> anyhow::Result<ActionSettings> {
    let bugzilla = match &settings.bugzilla {
        None => None,
        Some(b) => Some(BugzillaSettings {
            client: Bugzilla::new(&b.url, b.api_key.clone(), b.timeout)
                .map_err(|e| anyhow::anyhow!("BUGZILLA_URL / bugzilla.url: {e}"))?,
            reopen_state: b.reopen_state.clone(),
            incident_window: b.incident_window,
            tracker: b.tracker.clone(),
            reboot: b.reboot.clone(),
        }),
    };
    let simplemdm = match &settings.simplemdm {
        None => None,
        Some(m) => Some(
            SimpleMdm::new(&m.api_url, m.api_key.clone(), m.limits)
                .map_err(|e| anyhow::anyhow!("SIMPLEMDM_API_URL / simplemdm.api_url: {e}"))?,
        ),
    };
    let loan = settings.taskcluster.as_ref().map(|t| t.loan).unwrap_or_default();
    let taskcluster = taskcluster_client(settings)?.map(|client| TaskclusterSettings { client, loan });
    Ok(ActionSettings {
        ping: settings.ping.clone(),
        inventory: InventoryHandle::default(),
        reboot: settings.reboot.clone(),
        dns: DnsResolver::new(settings.dns.clone()),
        gates: Gates::new(settings.safety.gate),
        bugzilla,
        xen: settings.xen.clone(),
        simplemdm,
        taskcluster,
    })
}

/// What [`Application::build_mode`] builds from the settings alone, built and dropped,
/// with every error: the actions' clients, the notifier, the authenticator. Nothing is
/// created, bound, opened or contacted: a missing admin credentials file is left for
/// `serve` to generate; an existing one is read, as `serve` reads it. For `roller
/// check-config`, which checks the inventory itself (every problem, not the first).
pub fn check_clients(settings: &Settings) -> Vec<String> {
    let mut errors = Vec::new();
    if let Err(e) = action_settings(settings) {
        errors.push(format!("{e:#}"));
    }
    if let Err(e) = health_source(settings) {
        errors.push(format!("{e:#}"));
    }
    if let Err(e) = notifier(settings) {
        // Both build roller's Taskcluster client: its error is said once.
        let e = format!("{e:#}");
        if !errors.contains(&e) {
            errors.push(e);
        }
    }
    if let Some(files) = &settings.tls
        && let Err(e) = ServerTls::load(files)
    {
        errors.push(e);
    }
    let auth = match &settings.auth {
        AuthSettings::Local { clients } if clients.is_empty() => {
            let path = settings.data_dir.join(ADMIN_CREDENTIALS_FILE);
            if path.exists() { read_credentials(&path).map(drop) } else { Ok(()) }
        }
        AuthSettings::Local { .. } => Ok(()),
        AuthSettings::Taskcluster { root_url, timeout } => {
            TaskclusterAuth::new(root_url, *timeout).map(drop).map_err(|e| anyhow::anyhow!("taskcluster auth: {e}"))
        }
    };
    if let Err(e) = auth {
        errors.push(format!("{e:#}"));
    }
    errors
}

/// Load the configured inventory into `handle` (an error stops the start).
pub fn load_inventory(settings: &Settings, handle: &InventoryHandle) -> anyhow::Result<()> {
    if let Some(path) = &settings.inventory_path {
        handle.replace(Inventory::load(path)?);
    }
    Ok(())
}

/// Roller's own Taskcluster client, when its credentials are configured.
pub fn taskcluster_client(settings: &Settings) -> anyhow::Result<Option<TaskclusterClient>> {
    let Some(t) = &settings.taskcluster else { return Ok(None) };
    let client = TaskclusterClient::new(&t.root_url, &t.client_id, t.access_token.clone(), t.timeout)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Some(client))
}

/// Where the sweep reads worker pools: roller's own Taskcluster credentials when set,
/// else anonymously from `[health] taskcluster_root_url`; `None` without either.
pub fn health_source(settings: &Settings) -> anyhow::Result<Option<Arc<dyn WorkerSource>>> {
    let client = match (taskcluster_client(settings)?, &settings.health.taskcluster_root_url) {
        (Some(c), _) => c,
        (None, Some(root)) => TaskclusterClient::anonymous(root, std::time::Duration::from_secs(30))
            .map_err(|e| anyhow::anyhow!("health.taskcluster_root_url: {e}"))?,
        (None, None) => return Ok(None),
    };
    Ok(Some(Arc::new(TaskclusterWorkers { client })))
}

/// Who hears about jobs starting and ending.
pub fn notifier(settings: &Settings) -> anyhow::Result<Notifier> {
    Notifier::new(settings.notify.clone(), taskcluster_client(settings)?).map_err(|e| anyhow::anyhow!(e))
}

/// Reload the inventory from `path` into `handle` on SIGHUP. A bad file is logged and
/// the old one kept; running jobs keep the snapshot they started with.
pub fn reload_inventory_on_sighup(path: Option<PathBuf>, handle: InventoryHandle) {
    let Some(path) = path else {
        return;
    };
    // Registered here, not in the task, so SIGHUP is handled from the moment this returns.
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler; the inventory will not reload");
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match Inventory::load(&path) {
                Ok(inv) => {
                    tracing::info!(path = %path.display(), machines = inv.machines.len(), "inventory reloaded");
                    handle.replace(inv);
                }
                Err(e) => tracing::error!(error = %e, "inventory reload failed; keeping the previous one"),
            }
        }
    });
}

/// Redis when `REDIS_URL` is set, else the SQLite file in the data directory: the jobs,
/// and the shared records beside them (one backend, two views).
async fn open_queue(settings: &Settings) -> anyhow::Result<(Arc<dyn Queue>, Arc<dyn Records>)> {
    let options = QueueOptions { retention: settings.retention, history_cap: settings.history_cap };
    Ok(match &settings.redis {
        Some(r) => {
            let rs = redis_settings(r);
            let q =
                Arc::new(RedisQueue::connect(&rs, options).await.context("cannot use the Redis queue (REDIS_URL)")?);
            (q.clone(), q)
        }
        None => {
            let q = Arc::new(
                SqliteQueue::open_with(&settings.sqlite_path, options)
                    .with_context(|| format!("cannot open the job queue at {}", settings.sqlite_path.display()))?,
            );
            (q.clone(), q)
        }
    })
}

/// The queue's view of `[redis]`: where, who, and the TLS files.
pub fn redis_settings(r: &crate::config::RedisConfig) -> RedisSettings {
    RedisSettings {
        url: r.url.expose_secret().to_string(),
        cluster: r.cluster,
        prefix: r.prefix.clone(),
        response_timeout: r.response_timeout,
        connect_timeout: r.connect_timeout,
        login: RedisLogin { username: r.username.clone(), password: r.password.clone() },
        tls: RedisTls { ca_file: r.tls_ca_file.clone(), client: r.tls_client.clone() },
    }
}

/// The queue backend's records as the replay check's store: every API process on one
/// backend sees the headers the others accepted, and a restarted one those it accepted.
struct SharedNonces(Arc<dyn Records>);

#[async_trait::async_trait]
impl NonceStore for SharedNonces {
    async fn claim(&self, digest: &NonceDigest, expires_at: std::time::SystemTime) -> Result<bool, String> {
        self.0.claim_nonce(digest, expires_at).await.map_err(|e| e.to_string())
    }
}

fn replay_guard(settings: &Settings, records: &Arc<dyn Records>) -> ReplayGuard {
    match settings.replay_check {
        ReplayCheck::Shared => ReplayGuard::shared(Arc::new(SharedNonces(records.clone()))),
        ReplayCheck::InProcess => {
            tracing::warn!("replay check in this process only (ROLLER_BENCH_REPLAY): a benchmark build");
            ReplayGuard::in_process()
        }
    }
}

fn build_auth(settings: &Settings, replay: ReplayGuard) -> anyhow::Result<(Authenticator, Option<PathBuf>)> {
    let (backend, admin) = match &settings.auth {
        AuthSettings::Local { clients } if clients.is_empty() => {
            let path = settings.data_dir.join(ADMIN_CREDENTIALS_FILE);
            let admin = load_or_create_admin(&path, &settings.scope_prefix)?;
            (Backend::Local(LocalAuth::new(vec![admin])), Some(path))
        }
        AuthSettings::Local { clients } => (Backend::Local(LocalAuth::new(clients.clone())), None),
        AuthSettings::Taskcluster { root_url, timeout } => (
            Backend::Taskcluster(
                TaskclusterAuth::new(root_url, *timeout).map_err(|e| anyhow::anyhow!("taskcluster auth: {e}"))?,
            ),
            None,
        ),
    };
    Ok((Authenticator::new(backend, replay), admin))
}
