//! How roller proves itself to Redis and Redis to roller: a `rediss://` URL with the
//! redis crate's own TLS (rustls), a private CA instead of the system's roots, a client
//! certificate for servers that demand one (`tls-auth-clients yes`), and an ACL user whose
//! password never sits in the URL. Apart from `connection` because it is all about files
//! and credentials, none of it about calls.

use std::path::{Path, PathBuf};

use redis::{ClientTlsConfig, IntoConnectionInfo, TlsCertificates};
use secrecy::{ExposeSecret, SecretString};

/// The PEM files of a TLS connection to Redis. Empty: a `rediss://` URL trusts the system's
/// roots and presents no certificate; a `redis://` URL is plain TCP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// Only this CA's certificates are trusted for the server (not the system's roots).
    pub ca_file: Option<PathBuf>,
    /// The client certificate (chain) and its key, for servers that ask for one.
    pub client: Option<(PathBuf, PathBuf)>,
}

impl RedisTls {
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.client.is_some()
    }

    /// The certificates as the redis crate takes them, read now; an error names the file.
    pub(super) fn certificates(&self) -> Result<Option<TlsCertificates>, String> {
        if !self.is_set() {
            return Ok(None);
        }
        let read =
            |what: &str, p: &Path| std::fs::read(p).map_err(|e| format!("cannot read the {what} {}: {e}", p.display()));
        let root_cert = self.ca_file.as_deref().map(|p| read("CA file (redis.tls_ca_file)", p)).transpose()?;
        let client_tls = match &self.client {
            None => None,
            Some((cert, key)) => Some(ClientTlsConfig {
                client_cert: read("client certificate (redis.tls_cert_file)", cert)?,
                client_key: read("client key (redis.tls_key_file)", key)?,
            }),
        };
        Ok(Some(TlsCertificates { client_tls, root_cert }))
    }
}

/// Who roller is to Redis: an ACL user and password given apart from the URL.
#[derive(Clone, Default)]
pub struct RedisLogin {
    /// `None` with a password: `AUTH <password>` (the `default` user).
    pub username: Option<String>,
    pub password: Option<SecretString>,
}

impl std::fmt::Debug for RedisLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLogin")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

/// A client for one node: the URL with the login and the certificates applied.
pub(super) fn client(url: &str, login: &RedisLogin, tls: &RedisTls) -> Result<redis::Client, String> {
    let info = url.trim().into_connection_info().map_err(|e| format!("invalid URL: {e}"))?;
    // No `CLIENT SETINFO` (Redis 7.2+; the crate ignores its answer): one command fewer for
    // the ACL to grant, and the same file for 7.0, which does not know it.
    let mut redis_info = info.redis_settings().clone().set_skip_set_lib_name();
    if let Some(user) = &login.username {
        redis_info = redis_info.set_username(user);
    }
    if let Some(password) = &login.password {
        redis_info = redis_info.set_password(password.expose_secret());
    }
    let info = info.set_redis_settings(redis_info);
    let tls_url = matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
    match tls.certificates()? {
        None => redis::Client::open(info).map_err(|e| format!("invalid URL: {e}")),
        Some(_) if !tls_url => Err("TLS files are set (redis.tls_*) but the URL is not rediss://".to_string()),
        Some(certs) => redis::Client::build_with_tls(info, certs).map_err(|e| format!("invalid TLS files: {e}")),
    }
}

/// What to do about a failed connection, when the error says: a certificate the CA did not
/// sign, a server that wants ours, a refused login. Appended to the error's own text.
pub(super) fn hint(error: &str, tls: &RedisTls) -> Option<String> {
    let e = error.to_ascii_lowercase();
    if e.contains("invalid peer certificate") || e.contains("unknownissuer") || e.contains("unknown issuer") {
        return Some(match &tls.ca_file {
            Some(ca) => format!(
                "the server's certificate is not signed by the CA in redis.tls_ca_file ({}), or does not name this host",
                ca.display()
            ),
            None => "the server's certificate is not trusted by the system's roots: set redis.tls_ca_file to its CA"
                .to_string(),
        });
    }
    if e.contains("certificaterequired") || e.contains("certificate required") {
        return Some("the server demands a client certificate: set redis.tls_cert_file and redis.tls_key_file".into());
    }
    // A handshake refused for another reason: with a client certificate, most likely that.
    if e.contains("handshakefailure") || e.contains("unknownca") || e.contains("badcertificate") {
        return Some(match &tls.client {
            Some((cert, _)) => format!(
                "the server refused the TLS handshake: is roller's client certificate ({}) signed by a CA the \
                 server trusts (tls-ca-cert-file)?",
                cert.display()
            ),
            None => "the server refused the TLS handshake: does it demand a client certificate \
                     (redis.tls_cert_file and redis.tls_key_file)?"
                .into(),
        });
    }
    if e.contains("wrongpass")
        || e.contains("noauth")
        || e.contains("invalid username-password")
        || e.contains("authenticationfailed")
        || e.contains("authentication failed")
    {
        return Some(
            "Redis refused the login: check redis.username and the password (ROLLER_REDIS_PASSWORD, \
             redis.password_env or redis.password_file) against the server's ACL"
                .to_string(),
        );
    }
    if e.contains("noperm") || e.contains("nopermission") || e.contains("no permissions") {
        return Some(
            "the ACL user lacks a command, key or channel roller uses: compare its rules with docs/redis-acl.conf"
                .to_string(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    //! Against real `redis-server`s serving TLS only (`--port 0 --tls-port`), with
    //! certificates made here (testkit's PKI) and the ACL file roller ships.

    use std::any::Any;
    use std::sync::Arc;
    use std::time::Duration;

    use async_trait::async_trait;
    use roller_testkit::redis::{AuthClients, RedisServer, Tls};
    use roller_testkit::tls::Pki;
    use sha2::{Digest, Sha256};
    use tokio::sync::Notify;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::queue::conformance::{Backend, DEADLINE, LONG_LEASE, ping};
    use crate::queue::redis::{RedisQueue, RedisSettings};
    use crate::queue::{Queue, QueueError, QueueOptions};

    const ADMIN_PASSWORD: &str = "admin-pw-for-the-test-only";
    const ROLLER_PASSWORD: &str = "roller-acl-pw-0123456789";

    /// A TLS-only server for `pki`'s certificates, asking clients for theirs as `auth`.
    fn tls_server(pki: &Pki, auth: AuthClients) -> RedisServer {
        let server = pki.server("redis-server");
        let cli = pki.client("redis-cli");
        RedisServer::builder()
            .tls(Tls {
                cert: server.cert,
                key: server.key,
                ca: pki.ca().to_path_buf(),
                auth_clients: auth,
                cli_cert: Some((cli.cert, cli.key)),
            })
            .start()
    }

    fn settings(server: &RedisServer, prefix: &str, tls: RedisTls, login: RedisLogin) -> RedisSettings {
        RedisSettings { prefix: prefix.to_string(), tls, login, ..RedisSettings::new(server.url()) }
    }

    fn ca_only(pki: &Pki) -> RedisTls {
        RedisTls { ca_file: Some(pki.ca().to_path_buf()), client: None }
    }

    fn with_client(pki: &Pki, name: &str) -> RedisTls {
        let c = pki.client(name);
        RedisTls { ca_file: Some(pki.ca().to_path_buf()), client: Some((c.cert, c.key)) }
    }

    async fn connect(s: &RedisSettings) -> Result<RedisQueue, QueueError> {
        tokio::time::timeout(Duration::from_secs(20), RedisQueue::connect(s, QueueOptions::default()))
            .await
            .expect("connect answers in bounded time")
    }

    fn refusal(r: Result<RedisQueue, QueueError>) -> String {
        match r {
            Err(QueueError::Unavailable(msg)) => msg,
            Err(other) => panic!("expected Unavailable, got {other:?}"),
            Ok(_) => panic!("connected where it must be refused"),
        }
    }

    /// A round trip that needs scripts, writes and reads: the queue works over this link.
    async fn works(q: &RedisQueue) {
        q.health().await.expect("health over TLS");
        let j = q.enqueue(ping("tls-box", "g")).await.expect("enqueue over TLS").job;
        assert_eq!(q.get(j.id).await.unwrap().map(|g| g.id), Some(j.id));
    }

    #[tokio::test]
    async fn rediss_with_the_ca_works_and_a_server_the_ca_did_not_sign_is_refused_clearly() {
        let pki = Pki::new("roller test CA");
        let server = tls_server(&pki, AuthClients::No);
        let q = connect(&settings(&server, "tls", ca_only(&pki), RedisLogin::default())).await.expect("connect");
        works(&q).await;

        // The same server, trusted through another CA: roller refuses it, and says why.
        let rogue = Pki::new("some other CA");
        let msg = refusal(connect(&settings(&server, "tls", ca_only(&rogue), RedisLogin::default())).await);
        assert!(msg.contains("not signed by the CA in redis.tls_ca_file"), "{msg}");
        assert!(msg.contains(&rogue.ca().display().to_string()), "names the CA file: {msg}");
        // Without a CA file only the system's roots are trusted: a private CA is not among them.
        let msg = refusal(connect(&settings(&server, "tls", RedisTls::default(), RedisLogin::default())).await);
        assert!(msg.contains("system's roots"), "{msg}");
        // A redis:// URL to a TLS port never gets an answer it understands: refused, bounded.
        let plain = RedisSettings { url: server.url().replace("rediss://", "redis://"), ..RedisSettings::new("") };
        refusal(connect(&RedisSettings { prefix: "tls".into(), ..plain }).await);
    }

    #[tokio::test]
    async fn mutual_tls_works_with_the_client_certificate_and_is_refused_clearly_without_it() {
        let pki = Pki::new("roller test CA");
        let server = tls_server(&pki, AuthClients::Yes);
        let q = connect(&settings(&server, "mtls", with_client(&pki, "roller"), RedisLogin::default()))
            .await
            .expect("connect with a client certificate");
        works(&q).await;

        let msg = refusal(connect(&settings(&server, "mtls", ca_only(&pki), RedisLogin::default())).await);
        assert!(msg.contains("demands a client certificate"), "{msg}");
        // A client certificate from a CA the server does not trust is no better.
        let rogue = Pki::new("some other CA");
        let foreign = rogue.client("roller");
        let tls = RedisTls { ca_file: Some(pki.ca().to_path_buf()), client: Some((foreign.cert.clone(), foreign.key)) };
        let msg = refusal(connect(&settings(&server, "mtls", tls, RedisLogin::default())).await);
        assert!(
            msg.contains("refused the TLS handshake") && msg.contains(&foreign.cert.display().to_string()),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn tls_files_that_cannot_be_read_or_a_plain_url_with_them_are_clear_errors() {
        let pki = Pki::new("roller test CA");
        let server = tls_server(&pki, AuthClients::No);
        let missing = RedisTls { ca_file: Some(pki.dir().join("nope.pem")), client: None };
        let msg = refusal(connect(&settings(&server, "x", missing, RedisLogin::default())).await);
        assert!(msg.contains("nope.pem") && msg.contains("redis.tls_ca_file"), "{msg}");
        let plain = RedisSettings {
            url: server.url().replace("rediss://", "redis://"),
            tls: ca_only(&pki),
            ..RedisSettings::new("")
        };
        let msg = refusal(connect(&RedisSettings { prefix: "x".into(), ..plain }).await);
        assert!(msg.contains("not rediss://"), "{msg}");
    }

    /// docs/redis-acl.conf as shipped, with the test password's hash in place of the
    /// placeholder, plus an admin for the test's own look (ACL LOG) and no default user.
    fn acl_file(dir: &std::path::Path) -> std::path::PathBuf {
        let shipped = include_str!("../../../docs/redis-acl.conf");
        assert!(shipped.contains("#<sha256-of-the-password>"), "the placeholder the README names");
        let hash: String = Sha256::digest(ROLLER_PASSWORD.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        let text = format!(
            "{}user default off\nuser admin on >{ADMIN_PASSWORD} ~* &* +@all\n",
            shipped.replace("<sha256-of-the-password>", &hash)
        );
        let path = dir.join("users.acl");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A TLS server (client certificates demanded) whose only users are roller's, from
    /// docs/redis-acl.conf, and the test's admin. On drop (a test that did not fail
    /// otherwise) it checks that Redis denied nothing roller sent: `ACL LOG` is empty.
    struct AclBackend {
        pki: Pki,
        server: RedisServer,
        /// The CA and roller's client certificate.
        tls: RedisTls,
    }

    impl AclBackend {
        fn new() -> Self {
            let pki = Pki::new("roller test CA");
            let (server_cert, cli) = (pki.server("redis-server"), pki.client("redis-cli"));
            let acl = acl_file(pki.dir());
            let server = RedisServer::builder()
                .tls(Tls {
                    cert: server_cert.cert,
                    key: server_cert.key,
                    ca: pki.ca().to_path_buf(),
                    auth_clients: AuthClients::Yes,
                    cli_cert: Some((cli.cert, cli.key)),
                })
                .aclfile(&acl)
                .cli_user("admin", ADMIN_PASSWORD)
                .start();
            let tls = with_client(&pki, "roller-client");
            AclBackend { pki, server, tls }
        }

        fn settings(&self, password: &str) -> RedisSettings {
            let login = RedisLogin {
                username: Some("roller".into()),
                password: Some(SecretString::from(password.to_string())),
            };
            // The key prefix the shipped file names: {roller}.
            settings(&self.server, "roller", self.tls.clone(), login)
        }

        async fn queue(&self) -> RedisQueue {
            connect(&self.settings(ROLLER_PASSWORD)).await.expect("the ACL user connects")
        }

        fn denials(&self) -> String {
            self.server.cli(&["acl", "log"])
        }
    }

    impl Drop for AclBackend {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                let log = self.denials();
                assert!(log.trim().is_empty(), "Redis denied roller's user something (ACL LOG):\n{log}");
            }
        }
    }

    /// Writes are refused (NOREPLICAS) while this lives; set and reset by the admin.
    struct WritesBlocked(Box<dyn Fn() + Send>);

    impl Drop for WritesBlocked {
        fn drop(&mut self) {
            (self.0)();
        }
    }

    #[async_trait]
    impl Backend for AclBackend {
        async fn open_with(&self, options: QueueOptions) -> Box<dyn Queue> {
            Box::new(RedisQueue::connect(&self.settings(ROLLER_PASSWORD), options).await.expect("connect"))
        }

        async fn block_writes(&self) -> Box<dyn Any + Send> {
            let out = self.server.cli(&["config", "set", "min-replicas-to-write", "1"]);
            assert!(out.contains("OK"), "{out}");
            let (port, pki_dir) = (self.server.port(), self.pki.dir().to_path_buf());
            Box::new(WritesBlocked(Box::new(move || {
                let out = std::process::Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "--tls", "--user", "admin"])
                    .arg("--cacert")
                    .arg(pki_dir.join("ca.pem"))
                    .arg("--cert")
                    .arg(pki_dir.join("redis-cli.pem"))
                    .arg("--key")
                    .arg(pki_dir.join("redis-cli.key"))
                    .args(["config", "set", "min-replicas-to-write", "0"])
                    .env("REDISCLI_AUTH", ADMIN_PASSWORD)
                    .output()
                    .expect("redis-cli");
                assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
            })))
        }

        async fn open_records(&self) -> Box<dyn crate::queue::records::Records> {
            Box::new(self.queue().await)
        }
    }

    /// The whole conformance suite as docs/redis-acl.conf's user, over mutual TLS: the
    /// file grants everything the queue and the records do, or a check fails (NOPERM) or
    /// the ACL LOG holds the denial.
    mod acl_conformance {
        use super::AclBackend;
        crate::queue::conformance::conformance_suite!(AclBackend::new());
    }

    #[tokio::test]
    async fn the_acl_user_also_covers_wake_ups_health_and_the_clock() {
        let backend = AclBackend::new();
        let (watcher, api) = (backend.queue().await, backend.queue().await);
        let (wake, stop) = (Arc::new(Notify::new()), CancellationToken::new());
        let watching = tokio::spawn({
            let (wake, stop) = (wake.clone(), stop.clone());
            async move { watcher.watch_for_work(wake, stop).await }
        });
        let woken = || async { tokio::time::timeout(DEADLINE, wake.notified()).await.is_ok() };
        assert!(woken().await, "no wake-up after subscribing (SUBSCRIBE allowed on the channel?)");
        api.enqueue(ping("a", "g")).await.unwrap();
        assert!(woken().await, "an enqueue's PUBLISH reached no subscriber");
        api.health().await.expect("PING, SET and TIME");
        let r = api.reserve("h", LONG_LEASE).await.unwrap().expect("the job");
        api.release(r.id, "h").await.unwrap();
        stop.cancel();
        tokio::time::timeout(DEADLINE, watching).await.expect("the watcher stops").unwrap();
        // And what the ACL forbids, it forbids: a key outside {roller}.
        let mut conn = api.conn.clone();
        let denied = redis::cmd("SET").arg("elsewhere").arg("x").query_async::<()>(&mut conn).await;
        let denied = denied.expect_err("a key outside {roller} is refused").to_string();
        assert!(denied.to_ascii_lowercase().contains("perm"), "{denied}");
        let log = backend.server.cli(&["acl", "log", "reset"]);
        assert!(log.contains("OK"), "{log}");
    }

    #[tokio::test]
    async fn a_wrong_password_is_a_clear_start_error_that_never_shows_the_password() {
        let backend = AclBackend::new();
        let wrong = "wrong-password-that-must-not-show";
        let msg = refusal(connect(&backend.settings(wrong)).await);
        assert!(msg.contains("refused the login"), "{msg}");
        assert!(!msg.contains(wrong) && !msg.contains(ROLLER_PASSWORD), "{msg}");
        // The failed AUTH is in the ACL LOG (an "auth" entry): cleared so the drop check
        // looks only for commands denied to a logged-in roller.
        backend.server.cli(&["acl", "log", "reset"]);
    }
}
