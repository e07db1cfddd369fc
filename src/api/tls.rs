//! HTTPS on roller's own listener: the certificate and key from `[server] tls_cert_file` /
//! `tls_key_file`, handed to each handshake by a resolver whose current pair is swapped
//! whole on reload (SIGHUP), so a connection sees the old pair or the new one, never half
//! of each ([`ServerTls::reload_on_sighup`]). A reload that fails (a missing file, a key that does not match its
//! certificate) keeps the pair in force and says which file is wrong.
//!
//! The handshake itself runs in each connection's task, under its header read timeout
//! (`server.rs`); nothing here touches the accept loop.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;

use crate::config::ServerTlsFiles;

/// The listener's certificate in force, and where it is reloaded from.
pub struct ServerTls {
    files: ServerTlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").field("files", &self.files).field("sha256", &self.fingerprint()).finish()
    }
}

impl ServerTls {
    /// Read and check the pair; an error names the file and what is wrong with it.
    pub fn load(files: &ServerTlsFiles) -> Result<Arc<ServerTls>, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = certified_key(files, &provider)?;
        Ok(Arc::new(ServerTls { files: files.clone(), provider, current: RwLock::new(Arc::new(key)) }))
    }

    /// What each connection's handshake goes through: TLS 1.2 and 1.3, HTTP/1.1 by ALPN
    /// (the server speaks nothing else), this resolver's pair of the moment.
    pub fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, String> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS settings: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// Read the files again and, when they make a valid pair, serve new handshakes with it.
    /// On error the pair in force stays, and the error names the file.
    pub fn reload(&self) -> Result<(), String> {
        let key = certified_key(&self.files, &self.provider)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
        Ok(())
    }

    /// The SHA-256 of the certificate in force (hex), as `openssl x509 -fingerprint -sha256`
    /// prints it without colons: what the log says at start and after a reload.
    pub fn fingerprint(&self) -> String {
        let key = self.current();
        key.cert.first().map(|c| hex(&Sha256::digest(c.as_ref()))).unwrap_or_default()
    }

    /// Reload on every SIGHUP from now on (the handler is in place when this returns): new
    /// handshakes get the new pair; a pair that does not load is logged, naming the file,
    /// and the one in force stays.
    pub fn reload_on_sighup(self: &Arc<Self>) {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::error!("cannot install the SIGHUP handler; the TLS certificate will not reload");
            return;
        };
        let tls = self.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match tls.reload() {
                    Ok(()) => tracing::info!(
                        cert_file = %tls.files.cert_file.display(),
                        certificate_sha256 = %tls.fingerprint(),
                        "TLS certificate reloaded"
                    ),
                    Err(e) => tracing::error!(
                        error = %e,
                        certificate_sha256 = %tls.fingerprint(),
                        "TLS certificate reload failed; keeping the one in force"
                    ),
                }
            }
        });
    }

    pub fn files(&self) -> &ServerTlsFiles {
        &self.files
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl ResolvesServerCert for ServerTls {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The pair from the files: every certificate in the cert file (leaf first), the key, and
/// the check that the key is the leaf's.
fn certified_key(files: &ServerTlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let cert_bytes = read(&files.cert_file, "server.tls_cert_file")?;
    let chain = CertificateDer::pem_slice_iter(&cert_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("server.tls_cert_file {}: not valid PEM: {e}", files.cert_file.display()))?;
    if chain.is_empty() {
        return Err(format!("server.tls_cert_file {}: holds no PEM certificate", files.cert_file.display()));
    }
    let key_bytes = read(&files.key_file, "server.tls_key_file")?;
    // The key's text is never quoted: only which file failed.
    let key = PrivateKeyDer::from_pem_slice(&key_bytes)
        .map_err(|_| format!("server.tls_key_file {}: holds no PEM private key", files.key_file.display()))?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        format!(
            "server.tls_key_file {} does not fit server.tls_cert_file {}: {e}",
            files.key_file.display(),
            files.cert_file.display()
        )
    })
}

fn read(path: &Path, key: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{key} {}: cannot read: {e}", path.display()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
