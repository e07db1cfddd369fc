//! `roller serve` on a Redis that serves TLS only, demands client certificates and knows
//! only the users of docs/redis-acl.conf (plus the test's admin): the `[redis]` settings
//! from the config file through startup to the queue, end to end, and what the banner and
//! the log say about them. (The queue's conformance suite under the same ACL is in
//! `src/queue/redis/tls.rs`.)

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use roller_testkit::redis::{AuthClients, RedisServer, Tls};
use roller_testkit::tls::Pki;
use sha2::{Digest, Sha256};

use crate::distributed::{post, write_config};
use crate::helpers::*;
use crate::procs::*;

const ADMIN_PASSWORD: &str = "admin-pw-for-the-test-only";
const ROLLER_PASSWORD: &str = "roller-acl-pw-e2e-0123456789";

/// The shipped ACL file with the test password's hash, an admin, no default user.
fn acl_file(dir: &Path) -> std::path::PathBuf {
    let shipped = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/redis-acl.conf")).unwrap();
    let hash: String = Sha256::digest(ROLLER_PASSWORD.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let text = format!(
        "{}user default off\nuser admin on >{ADMIN_PASSWORD} ~* &* +@all\n",
        shipped.replace("<sha256-of-the-password>", &hash)
    );
    let path = dir.join("users.acl");
    std::fs::write(&path, text).unwrap();
    path
}

struct Setup {
    pki: Pki,
    redis: RedisServer,
    /// The `[redis]` table roller is given.
    table: String,
}

fn setup() -> Setup {
    let pki = Pki::new("roller test CA");
    let (server, cli, client) = (pki.server("redis-server"), pki.client("redis-cli"), pki.client("roller"));
    let redis = RedisServer::builder()
        .tls(Tls {
            cert: server.cert,
            key: server.key,
            ca: pki.ca().to_path_buf(),
            auth_clients: AuthClients::Yes,
            cli_cert: Some((cli.cert, cli.key)),
        })
        .aclfile(&acl_file(pki.dir()))
        .cli_user("admin", ADMIN_PASSWORD)
        .start();
    let table = format!(
        "[redis]\ntls_ca_file = {:?}\ntls_cert_file = {:?}\ntls_key_file = {:?}\nusername = \"roller\"\n\
         password_env = \"TEST_REDIS_PW\"\n",
        pki.ca().display().to_string(),
        client.cert.display().to_string(),
        client.key.display().to_string()
    );
    Setup { pki, redis, table }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roller_serve_runs_jobs_on_a_tls_redis_as_the_acl_user_and_never_shows_the_password() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &s.table);
    let url = s.redis.url();
    assert!(url.starts_with("rediss://"));
    let env = [("ROLLER_CONFIG", cfg.as_str()), ("REDIS_URL", url.as_str()), ("TEST_REDIS_PW", ROLLER_PASSWORD)];
    let roller = start_roller("serve", dir.path(), &env, "serve.log", false);
    let banner = roller.banner.join("\n");
    let port = s.redis.port();
    assert!(
        banner.contains(&format!("Redis at rediss://127.0.0.1:{port} as roller (TLS, private CA, client certificate)")),
        "{banner}"
    );

    // Enqueue → run → finish, every step through the ACL user over mutual TLS.
    let id = post(roller.url(), "127.0.0.1", "g").await;
    let job = wait_state(roller.url(), ADMIN, &id, &["succeeded", "failed"], Duration::from_secs(60)).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let (status, _) = signed(roller.url(), reqwest::Method::GET, "/__heartbeat__", ADMIN).await;
    assert_eq!(status, 200);

    // A worker's metrics listener is the same listener code: HTTPS with the same pair.
    let server_cert = s.pki.server("metrics");
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let worker_env = [
        ("ROLLER_CONFIG", cfg.as_str()),
        ("REDIS_URL", url.as_str()),
        ("TEST_REDIS_PW", ROLLER_PASSWORD),
        ("ROLLER_METRICS_BIND", metrics_addr.as_str()),
        ("ROLLER_TLS_CERT_FILE", server_cert.cert.to_str().unwrap()),
        ("ROLLER_TLS_KEY_FILE", server_cert.key.to_str().unwrap()),
    ];
    let worker = start_roller("worker", dir.path(), &worker_env, "worker.log", false);
    let metrics_url = format!("https://{metrics_addr}/metrics");
    assert!(worker.banner.iter().any(|l| l.contains(&metrics_url)), "{:?}", worker.banner);
    let ca = std::fs::read(s.pki.ca()).unwrap();
    let http =
        reqwest::Client::builder().tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca).unwrap()).build().unwrap();
    let metrics = http.get(&metrics_url).send().await.expect("metrics over HTTPS");
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap().contains("roller_"));

    let denied = s.redis.cli(&["acl", "log"]);
    assert!(denied.trim().is_empty(), "Redis denied roller something:\n{denied}");
    let log = std::fs::read_to_string(&roller.log).unwrap();
    let worker_log = std::fs::read_to_string(&worker.log).unwrap();
    assert!(!banner.contains(ROLLER_PASSWORD) && !log.contains(ROLLER_PASSWORD), "the password leaked");
    assert!(!worker_log.contains(ROLLER_PASSWORD), "the password leaked into the worker's log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_redis_password_stops_the_start_with_a_clear_error_and_no_secret() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &s.table);
    let wrong = "not-the-roller-password-42";
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_roller"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("ROLLER_BIND", "127.0.0.1:0")
        .env("ROLLER_CONFIG", &cfg)
        .env("REDIS_URL", s.redis.url())
        .env("TEST_REDIS_PW", wrong)
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out).await.expect("roller gives up").unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused the login") && err.contains("redis.username"), "{err}");
    assert!(!err.contains(wrong), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains(wrong), "{stdout}");
}
