//! `roller serve`, `roller api`, `roller worker`: build the application for the
//! mode, print the first-run banner, and run until SIGTERM or SIGINT.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use super::output::say;
use crate::config::{AuthSettings, Settings};
use crate::startup::{Application, Mode};

pub async fn serve(settings: Settings, mode: Mode) -> anyhow::Result<ExitCode> {
    crate::telemetry::init();
    let app = Application::build_mode(settings, mode).await?;
    // Before the banner: whoever reads it may send SIGHUP right away.
    crate::startup::reload_inventory_on_sighup(app.settings().inventory_path.clone(), app.inventory().clone());
    if let Some(tls) = app.server_tls() {
        tls.reload_on_sighup();
    }
    let s = app.settings();
    let queue = match &s.redis {
        Some(r) => format!("Redis at {}, keys {{{}}}:*", crate::startup::redis_settings(r).describe(), r.prefix),
        None => s.sqlite_path.display().to_string(),
    };
    match (mode, app.base_url()) {
        (Mode::Worker, base) => {
            say!("roller {} worker {} is running", env!("CARGO_PKG_VERSION"), app.consumer().unwrap_or("-"));
            if let Some(base) = base {
                say!("  metrics:           {base}/metrics");
            }
        }
        (_, Some(base)) => {
            say!("roller {} is listening on {base}", env!("CARGO_PKG_VERSION"));
            say!("  dashboard:         {base}/");
            say!("  sign in with:      {}", sign_in(s, app.admin_credentials.as_deref()));
        }
        (_, None) => {}
    }
    if let Some(tls) = app.server_tls() {
        say!(
            "  TLS certificate:   {} (SHA-256 {}; SIGHUP reloads it)",
            tls.files().cert_file.display(),
            tls.fingerprint()
        );
        say!(
            "  (`roller jobs` trusts the system's roots: for a private CA add --ca-file <ca.pem> or set ROLLER_CA_FILE)"
        );
    }
    say!("  data directory:    {}", s.data_dir.display());
    say!("  job queue:         {queue}");
    if let Some(pid) = app.shares_data_dir_with() {
        say!(
            "  NOTE: another roller (pid {pid}) already serves from this data directory. Both use the one \
             queue file (each job still runs once), each with its own API; stop one unless that is intended."
        );
    }
    if let (Some(creds), Some(url)) = (&app.admin_credentials, app.base_url()) {
        let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "roller".into());
        say!("  admin credentials: {} (mode 0600)", creds.display());
        let c = format!("--url {url} --credentials {}", creds.display());
        say!();
        say!("Enqueue a ping of 127.0.0.1:");
        say!("  {exe} jobs {c} enqueue ping 127.0.0.1");
        say!("Read its result (the machine's recent jobs, newest first):");
        say!("  {exe} jobs {c} list 127.0.0.1");
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));
    app.run_until_stopped(shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// How to sign in to the dashboard: the client id and where its access token is (the
/// token itself is never printed: a banner ends up in terminals' scrollback and logs).
fn sign_in(s: &Settings, admin: Option<&std::path::Path>) -> String {
    match (&s.auth, admin) {
        (_, Some(path)) => match crate::startup::read_credentials(path) {
            Ok(c) => format!(
                "client id {}, access token: the \"access_token\" in {} (mode 0600)",
                c.client_id,
                path.display()
            ),
            Err(e) => format!("the client in {} ({e:#})", path.display()),
        },
        (AuthSettings::Local { clients }, None) => {
            let ids: Vec<&str> = clients.iter().map(|c| c.client_id.as_str()).collect();
            format!("a client of [auth] clients in the configuration ({}) and its access token", ids.join(", "))
        }
        (AuthSettings::Taskcluster { root_url, .. }, None) => {
            format!("Taskcluster credentials of {root_url} (client id and access token, or temporary credentials)")
        }
    }
}

async fn wait_for_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}
