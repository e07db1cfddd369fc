//! A throwaway PKI for the TLS tests: a CA, and server and client certificates it signs,
//! written as PEM files in a directory of their own (removed on drop), as an operator's
//! would be. Made with rcgen, so no `openssl` run is needed to get them.
//!
//! Every certificate has its own serial number and common name, so a test can tell which
//! one a server presented (after a reload, say).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SerialNumber,
};

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificate's serial number.
    pub serial: u64,
    /// Its subject's common name.
    pub common_name: String,
}

/// A certificate authority with its certificate in `ca.pem`, issuing into the same directory.
pub struct Pki {
    dir: tempfile::TempDir,
    issuer: CertifiedIssuer<'static, KeyPair>,
    ca: PathBuf,
    name: String,
    next_serial: std::sync::atomic::AtomicU64,
}

impl Pki {
    /// A new CA named `name` (its common name), e.g. "roller test CA".
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().expect("a temp dir for the test PKI");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.distinguished_name = dn(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(SerialNumber::from(1u64));
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a CA key")).expect("CA cert");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, issuer.pem()).expect("write ca.pem");
        Pki { dir, issuer, ca, name: name.to_string(), next_serial: std::sync::atomic::AtomicU64::new(100) }
    }

    /// The CA certificate (PEM).
    pub fn ca(&self) -> &Path {
        &self.ca
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A server certificate for 127.0.0.1 and localhost, as `<file>.pem` / `<file>.key`.
    pub fn server(&self, file: &str) -> Issued {
        self.issue(file, &["127.0.0.1", "localhost"], ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate (for mutual TLS), as `<file>.pem` / `<file>.key`.
    pub fn client(&self, file: &str) -> Issued {
        self.issue(file, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, file: &str, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Issued {
        let serial = self.next_serial.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let common_name = format!("{file} {serial} ({})", self.name);
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("certificate parameters");
        params.distinguished_name = dn(&common_name);
        params.serial_number = Some(SerialNumber::from(serial));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("a key");
        let cert = params.signed_by(&key, &self.issuer).expect("a signed certificate");
        let (cert_path, key_path) =
            (self.dir.path().join(format!("{file}.pem")), self.dir.path().join(format!("{file}.key")));
        std::fs::write(&cert_path, cert.pem()).expect("write the certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write the key");
        Issued { cert: cert_path, key: key_path, serial, common_name }
    }
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}
