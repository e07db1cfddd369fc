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
    let mut redis_info = info.redis_settings().clone();
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
    if e.contains("certificaterequired") || e.contains("certificate required") || e.contains("handshakefailure") {
        return Some(if tls.client.is_some() {
            "the server refused roller's client certificate (redis.tls_cert_file): is it signed by the CA the server trusts?"
                .to_string()
        } else {
            "the server demands a client certificate: set redis.tls_cert_file and redis.tls_key_file".to_string()
        });
    }
    if e.contains("wrongpass") || e.contains("noauth") || e.contains("invalid username-password") {
        return Some(
            "Redis refused the login: check redis.username and the password (ROLLER_REDIS_PASSWORD, \
             redis.password_env or redis.password_file) against the server's ACL"
                .to_string(),
        );
    }
    if e.contains("noperm") {
        return Some(
            "the ACL user lacks a command, key or channel roller uses: compare its rules with docs/redis-acl.conf"
                .to_string(),
        );
    }
    None
}
