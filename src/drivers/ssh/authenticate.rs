//! The ssh way in proven without asking anything of the host (the standing path
//! checks): the same connection, host-key check and authentication as a reboot, then a
//! disconnect; no channel, no command, and known_hosts is never written.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Heard, SshError, SshTarget, connect, load_key, validate_host};

/// What [`authenticate`] proved about the host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeySeen {
    /// It matches a key recorded in known_hosts.
    Recorded,
    /// Nothing is recorded for the host and the policy is accept-new: a reboot would
    /// record this key (its fingerprint); the check itself records nothing.
    WouldRecord(String),
}

/// Prove the way in without asking anything of the host: TCP, key exchange, the host key
/// against known_hosts, public-key authentication, then a polite disconnect. No channel
/// is opened and no command is sent; known_hosts is never written (an accept-new host
/// with nothing recorded is reported as [`HostKeySeen::WouldRecord`]). For the standing
/// path checks, bounded by `connect_timeout`.
pub async fn authenticate(target: &SshTarget, cancel: &CancellationToken) -> Result<HostKeySeen, SshError> {
    let t = target;
    let attempt = async {
        validate_host(&t.host)?;
        let key = load_key(&t.key_file).await?;
        let heard = Arc::new(Heard(Mutex::new(Instant::now())));
        let unrecorded = Arc::new(Mutex::new(None));
        let session =
            match tokio::time::timeout(t.connect_timeout, connect(t, key, heard, Some(unrecorded.clone()))).await {
                Ok(r) => r?,
                Err(_) => return Err(t.timeout("connect", t.connect_timeout)),
            };
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            session.disconnect(russh::Disconnect::ByApplication, "", "en"),
        )
        .await;
        let seen = unrecorded.lock().unwrap_or_else(|p| p.into_inner()).take();
        Ok(seen.map_or(HostKeySeen::Recorded, HostKeySeen::WouldRecord))
    };
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(SshError::Cancelled),
        r = attempt => r,
    }
}
