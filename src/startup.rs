//! Wiring: build the queue, authenticator, API and runner from settings, and
//! the first-run data directory with its generated admin credentials.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::auth::Authenticator;
use crate::auth::local::LocalAuth;
use crate::auth::taskcluster::TaskclusterAuth;
use crate::config::{AuthSettings, LocalClient, Settings};
use crate::queue::Queue;
use crate::queue::sqlite::SqliteQueue;
use crate::runner::Runner;

/// Name of the generated admin credentials file in the data directory.
pub const ADMIN_CREDENTIALS_FILE: &str = "admin-credentials.json";

/// Client credentials as stored on disk (mode 0600) and read by the client subcommands.
#[derive(Serialize, Deserialize)]
pub struct CredentialsFile {
    pub client_id: String,
    pub access_token: String,
    pub scopes: Vec<String>,
}

/// A built roller: API listener bound, queue open, runner ready.
pub struct Application {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    state: AppState,
    runner: Option<Runner>,
    /// Where the admin credentials are, when this run uses them.
    pub admin_credentials: Option<PathBuf>,
}

impl Application {
    /// `roller serve`: API and runner in one process on the embedded queue.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        if settings.redis_url.is_some() {
            anyhow::bail!(
                "REDIS_URL is set, but the Redis queue backend is not built yet (see issue: distributed mode); \
                 unset REDIS_URL to use the embedded SQLite queue"
            );
        }
        create_private_dir(&settings.data_dir)?;
        let queue: Arc<dyn Queue> = Arc::new(
            SqliteQueue::open(&settings.sqlite_path)
                .with_context(|| format!("cannot open the job queue at {}", settings.sqlite_path.display()))?,
        );
        let (auth, admin_credentials) = build_auth(&settings)?;
        let listener = tokio::net::TcpListener::bind(settings.bind)
            .await
            .with_context(|| format!("cannot listen on {}", settings.bind))?;
        let addr = listener.local_addr()?;
        let wake = Arc::new(Notify::new());
        let settings = Arc::new(settings);
        let runner =
            Runner::new(queue.clone(), settings.runner.clone(), Arc::new(settings.actions.clone()), wake.clone());
        let state = AppState { queue, auth: Arc::new(auth), settings, listen_port: addr.port(), wake };
        Ok(Application { listener, addr, state, runner: Some(runner), admin_credentials })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn settings(&self) -> &Settings {
        &self.state.settings
    }

    /// Serve until `shutdown` fires: the API stops taking requests, then the
    /// runner winds down (see `Runner::run_until_stopped`).
    pub async fn run_until_stopped(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let runner = self.runner.take().map(|r| tokio::spawn(r.run_until_stopped(shutdown.clone())));
        let app = api::router(self.state.clone());
        tracing::info!(addr = %self.addr, "listening");
        let s = shutdown.clone();
        axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { s.cancelled().await })
            .await
            .context("HTTP server failed")?;
        if let Some(r) = runner {
            r.await.context("runner task failed")?;
        }
        Ok(())
    }
}

fn build_auth(settings: &Settings) -> anyhow::Result<(Authenticator, Option<PathBuf>)> {
    Ok(match &settings.auth {
        AuthSettings::Local { clients } if clients.is_empty() => {
            let path = settings.data_dir.join(ADMIN_CREDENTIALS_FILE);
            let admin = load_or_create_admin(&path, &settings.scope_prefix)?;
            (Authenticator::Local(LocalAuth::new(vec![admin])), Some(path))
        }
        AuthSettings::Local { clients } => (Authenticator::Local(LocalAuth::new(clients.clone())), None),
        AuthSettings::Taskcluster { root_url, timeout } => (
            Authenticator::Taskcluster(
                TaskclusterAuth::new(root_url, *timeout).map_err(|e| anyhow::anyhow!("taskcluster auth: {e}"))?,
            ),
            None,
        ),
    })
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    }
    Ok(())
}

/// Read the admin client from `path`, or generate one with a random token
/// (mode 0600, created exclusively so a concurrent start cannot clobber it).
pub fn load_or_create_admin(path: &Path, scope_prefix: &str) -> anyhow::Result<LocalClient> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if !path.exists() {
        let token: String = {
            use rand::Rng;
            let bytes: [u8; 32] = rand::rng().random();
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
        };
        let creds = CredentialsFile {
            client_id: "roller-admin".into(),
            access_token: token,
            scopes: vec![format!("{scope_prefix}*")],
        };
        match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
            Ok(mut f) => {
                f.write_all(serde_json::to_string_pretty(&creds)?.as_bytes())
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
        }
    }
    let creds = read_credentials(path)?;
    Ok(LocalClient {
        client_id: creds.client_id,
        access_token: SecretString::from(creds.access_token),
        scopes: creds.scopes,
    })
}

/// Read a credentials file, refusing one that others can read.
pub fn read_credentials(path: &Path) -> anyhow::Result<CredentialsFile> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read credentials {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        anyhow::bail!(
            "credentials file {} is readable by others (mode {:o}); run: chmod 600 {}",
            path.display(),
            meta.permissions().mode() & 0o777,
            path.display()
        );
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read credentials {}", path.display()))?;
    let creds: CredentialsFile =
        serde_json::from_str(&text).with_context(|| format!("credentials file {} is not valid", path.display()))?;
    Ok(creds)
}
