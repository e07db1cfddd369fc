//! The TLS and login tables: `[redis]` (the URL, `rediss://` with a CA and a client
//! certificate, the ACL user and its password by reference) and `[server]`'s certificate
//! and key for HTTPS. Every file is read and checked here, at load, so `check-config` and a
//! start fail on a missing or wrong file with its key and path; nothing is connected.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;

use super::file::RedisFile;
use super::sections::Layer;
use super::{ConfigError, RedisConfig, ServerTlsFiles, err};

/// `[redis]` plus `REDIS_URL` (distributed mode when set) and `ROLLER_REDIS_PREFIX`.
pub(super) fn redis(l: &Layer, r: RedisFile) -> Result<Option<RedisConfig>, ConfigError> {
    let prefix = l.env("ROLLER_REDIS_PREFIX").or(r.prefix).unwrap_or_else(|| "roller".to_string());
    if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')) {
        return Err(err(format!(
            "{} {prefix:?} may only contain letters, digits, '-', '_', '.' and ':'",
            l.at("redis.prefix")
        )));
    }
    let Some(url) = l.env("REDIS_URL") else {
        return Ok(None);
    };
    let password = l.secret("ROLLER_REDIS_PASSWORD", "redis.password", &r.password_env, &r.password_file)?;
    let nodes: Vec<&str> = url.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
    let tls_nodes = nodes.iter().filter(|n| n.starts_with("rediss://")).count();
    if tls_nodes != 0 && tls_nodes != nodes.len() {
        return Err(err("REDIS_URL mixes redis:// and rediss:// nodes: use rediss:// for every node, or none"));
    }
    let tls = tls_nodes != 0;
    let tls_files = [
        ("redis.tls_ca_file", &r.tls_ca_file),
        ("redis.tls_cert_file", &r.tls_cert_file),
        ("redis.tls_key_file", &r.tls_key_file),
    ];
    if let Some((key, _)) = tls_files.iter().find(|(_, v)| v.is_some())
        && !tls
    {
        return Err(err(format!(
            "{} needs TLS: REDIS_URL must start with rediss:// (on every node), which it does not",
            l.at(key)
        )));
    }
    if let Some(ca) = &r.tls_ca_file {
        pem_certificates(&l.at("redis.tls_ca_file"), ca)?;
    }
    let tls_client = match (r.tls_cert_file, r.tls_key_file) {
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            return Err(err(format!(
                "{} and redis.tls_key_file go together: a client certificate needs its private key",
                l.at("redis.tls_cert_file")
            )));
        }
        (Some(cert), Some(key)) => {
            pem_certificates(&l.at("redis.tls_cert_file"), &cert)?;
            pem_private_key(&l.at("redis.tls_key_file"), &key)?;
            Some((cert, key))
        }
    };
    let url_has_login = nodes.iter().any(|n| {
        let rest = n.split_once("://").map_or(*n, |(_, rest)| rest);
        rest.split('/').next().unwrap_or("").contains('@')
    });
    if url_has_login && (r.username.is_some() || password.is_some()) {
        return Err(err(
            "REDIS_URL carries a user or password and redis.username / the Redis password is set too: give the \
             login one way (prefer redis.username with ROLLER_REDIS_PASSWORD, redis.password_env or redis.password_file)",
        ));
    }
    if let Some(user) = &r.username
        && (user.is_empty() || !user.chars().all(|c| c.is_ascii_graphic()))
    {
        return Err(err(format!("{} {user:?} must be printable ASCII without spaces", l.at("redis.username"))));
    }
    if r.username.is_some() && password.is_none() {
        return Err(err(format!(
            "{} is set but no password is: set ROLLER_REDIS_PASSWORD, redis.password_env or redis.password_file",
            l.at("redis.username")
        )));
    }
    Ok(Some(RedisConfig {
        url: SecretString::from(url),
        tls,
        tls_ca_file: r.tls_ca_file,
        tls_client,
        username: r.username,
        password,
        cluster: r.cluster.unwrap_or(false),
        prefix,
        response_timeout: Duration::from_millis(r.response_timeout_ms.unwrap_or(800).clamp(50, 60_000)),
        connect_timeout: Duration::from_millis(r.connect_timeout_ms.unwrap_or(800).clamp(50, 60_000)),
    }))
}

/// `[server] tls_cert_file` / `tls_key_file` (`ROLLER_TLS_CERT_FILE` / `ROLLER_TLS_KEY_FILE`):
/// both or neither, each a readable PEM file of its kind.
pub(super) fn server_tls(
    l: &Layer,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<Option<ServerTlsFiles>, ConfigError> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(_), None) | (None, Some(_)) => Err(err(format!(
            "{} and server.tls_key_file go together: give both (PEM certificate and its private key) to serve \
             HTTPS, or neither for plain HTTP",
            l.at("server.tls_cert_file")
        ))),
        (Some(cert_file), Some(key_file)) => {
            pem_certificates(&l.at("server.tls_cert_file"), &cert_file)?;
            pem_private_key(&l.at("server.tls_key_file"), &key_file)?;
            Ok(Some(ServerTlsFiles { cert_file, key_file }))
        }
    }
}

/// A readable PEM file holding at least one certificate.
pub(super) fn pem_certificates(key: &str, path: &Path) -> Result<(), ConfigError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bytes = std::fs::read(path).map_err(|e| err(format!("{key}: cannot read {}: {e}", path.display())))?;
    let certs = CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>();
    match certs {
        Ok(c) if !c.is_empty() => Ok(()),
        Ok(_) => Err(err(format!("{key}: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display()))),
        Err(e) => Err(err(format!("{key}: {} is not valid PEM: {e}", path.display()))),
    }
}

/// A readable PEM file holding a private key (PKCS#8, PKCS#1 or SEC1). Its text is never quoted.
pub(super) fn pem_private_key(key: &str, path: &Path) -> Result<(), ConfigError> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let bytes = std::fs::read(path).map_err(|e| err(format!("{key}: cannot read {}: {e}", path.display())))?;
    PrivateKeyDer::from_pem_slice(&bytes).map(drop).map_err(|_| {
        err(format!("{key}: {} holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC)", path.display()))
    })
}
