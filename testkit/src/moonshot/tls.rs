//! The stand-in's TLS: a throwaway certificate authority and a server certificate it
//! signed for 127.0.0.1 (made with the `openssl` command line, which the tests already
//! need), and a listener that hands axum finished TLS connections.
//!
//! A CA and a leaf rather than one self-signed certificate: webpki (rustls) refuses a
//! certificate marked as a CA as a server's own, so a CA file roller trusts must be
//! the issuer, as it is for a chassis whose certificate a site CA signed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

/// The CA's certificate (what roller's `ca_file` names) and the server's key pair, in `dir`.
pub(super) struct Certificates {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(args: &[&str], dir: &Path) {
    let out =
        Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs (apt-get install openssl)");
    assert!(out.status.success(), "openssl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

pub(super) fn certificates(dir: &Path) -> Certificates {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=roller test chassis CA"];
    ca.extend(ec);
    ca.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(&ca, dir);
    let mut csr = vec!["req", "-new", "-subj", "/CN=127.0.0.1"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(&csr, dir);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("the extensions file");
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
        dir,
    );
    Certificates { ca: dir.join("ca.pem"), cert: dir.join("server.pem"), key: dir.join("server.key") }
}

/// A TCP listener whose connections are handed on once their TLS handshake is done;
/// each handshake runs on its own task, so one slow or refused client holds up no other.
pub(super) struct TlsListener {
    addr: std::net::SocketAddr,
    ready: mpsc::Receiver<(TlsStream<tokio::net::TcpStream>, std::net::SocketAddr)>,
    _accepting: crate::Serving,
}

impl TlsListener {
    pub async fn bind(certs: &Certificates) -> TlsListener {
        let chain = vec![CertificateDer::from_pem_file(&certs.cert).expect("the server certificate")];
        let key = PrivateKeyDer::from_pem_file(&certs.key).expect("the server key");
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("TLS 1.2 and 1.3")
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .expect("a usable certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port for the chassis manager");
        let addr = tcp.local_addr().expect("its address");
        let (tx, ready) = mpsc::channel(64);
        let accepting = tokio::spawn(async move {
            while let Ok((stream, peer)) = tcp.accept().await {
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    // A client that refuses the certificate ends here: that is its answer.
                    if let Ok(tls) = acceptor.accept(stream).await {
                        let _ = tx.send((tls, peer)).await;
                    }
                });
            }
        });
        TlsListener { addr, ready, _accepting: crate::Serving(accepting) }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accepting task is gone only when the stand-in is: serve nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
