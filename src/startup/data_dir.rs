//! The data directory: its claim (`roller.lock`), its creation (0700), and the generated
//! admin credentials (0600) the first run writes there and the client commands read.

use std::path::Path;

use anyhow::Context;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::auth::local::LocalClient;

/// Name of the generated admin credentials file in the data directory.
pub const ADMIN_CREDENTIALS_FILE: &str = "admin-credentials.json";

/// Client credentials as stored on disk (mode 0600) and read by the client subcommands.
#[derive(Serialize, Deserialize)]
pub struct CredentialsFile {
    pub client_id: String,
    pub access_token: String,
    pub scopes: Vec<String>,
}

/// An embedded roller's claim on its data directory: an exclusive `flock` on
/// `roller.lock` holding its pid, kept while it runs. Two processes on one SQLite
/// file share the queue correctly (every claim is a transaction), so a second one is
/// allowed, but it is told it is not alone: usually a leftover or a mistake.
pub(super) struct DataDirClaim {
    _file: std::fs::File,
    /// The pid written by the process that holds the claim, when that is not us.
    pub(super) shared_with: Option<String>,
}

pub(super) fn claim_data_dir(dir: &Path) -> anyhow::Result<DataDirClaim> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("roller.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
        return Ok(DataDirClaim { _file: file, shared_with: None });
    }
    let mut pid = String::new();
    file.read_to_string(&mut pid)?;
    let pid = pid.trim().chars().take(20).collect::<String>();
    Ok(DataDirClaim { _file: file, shared_with: Some(if pid.is_empty() { "unknown".into() } else { pid }) })
}

pub(super) fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
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
