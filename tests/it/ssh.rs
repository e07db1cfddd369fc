//! The ssh driver against a real OpenSSH `sshd` (peers::ssh): which command
//! worked, the fallback, host-key pinning, authentication, timeouts, cancellation.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use roller::drivers::ssh::{self, HostKeyPolicy, SessionEnd, SshError, SshTarget};
use tokio_util::sync::CancellationToken;

use crate::helpers::wait_for;
use crate::peers::relay::Relay;
use crate::peers::ssh::SshHost;
use crate::procs::free_port;

const SHUTDOWN: &str = "shutdown -f -t 3 -r";

/// A known_hosts file in a dir that lives as long as the returned guard.
fn known_hosts(content: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    std::fs::write(&path, content).unwrap();
    (dir, path)
}

fn target(peer: &SshHost, key: &Path, policy: HostKeyPolicy) -> SshTarget {
    let mut t = SshTarget::new("127.0.0.1", peer.user(), key, policy).unwrap();
    t.port = peer.port();
    t.connect_timeout = Duration::from_secs(20);
    t.command_timeout = Duration::from_secs(20);
    t
}

/// A target that trusts `peer`'s real host key.
fn pinned(peer: &SshHost) -> (tempfile::TempDir, SshTarget) {
    let (dir, kh) = known_hosts(&format!("{}\n", peer.known_hosts_line()));
    (dir, target(peer, &peer.client_key(), HostKeyPolicy::KnownHosts(kh)))
}

/// Another ed25519 key's known_hosts line for the peer's address.
fn other_host_key_line(peer: &SshHost) -> String {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    let ok = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let mut parts = public.split_whitespace();
    format!("[127.0.0.1]:{} {} {}", peer.port(), parts.next().unwrap(), parts.next().unwrap())
}

async fn go(t: &SshTarget) -> Result<ssh::RebootRequest, SshError> {
    ssh::reboot(t, &CancellationToken::new()).await
}

#[tokio::test]
async fn ssh_reboot_accepted() {
    let peer = SshHost::start();
    let (_d, t) = pinned(&peer);
    let r = go(&t).await.unwrap_or_else(|e| panic!("{e}\n{}", peer.log()));
    assert_eq!(r.command, "reboot");
    assert_eq!(r.exit_status, Some(0));
    assert!(r.output.contains("reboot requested"), "{r:?}");
    assert_eq!(peer.requests(), ["reboot"]);
}

#[tokio::test]
async fn ssh_reboot_fails_then_shutdown_works() {
    let peer = SshHost::start();
    peer.set_exit("reboot", 1);
    let (_d, t) = pinned(&peer);
    let r = go(&t).await.unwrap_or_else(|e| panic!("{e}\n{}", peer.log()));
    assert_eq!(r.command, SHUTDOWN);
    assert_eq!(r.exit_status, Some(0));
    assert!(r.output.contains("shutdown requested"), "{r:?}");
    assert_eq!(peer.requests(), ["reboot", SHUTDOWN]);
}

#[tokio::test]
async fn ssh_both_commands_fail() {
    let peer = SshHost::start();
    peer.set_exit("reboot", 1);
    peer.set_exit(SHUTDOWN, 7);
    let (_d, t) = pinned(&peer);
    let e = go(&t).await.unwrap_err();
    let SshError::CommandsFailed { failures, .. } = &e else { panic!("{e:?}") };
    assert_eq!(failures.len(), 2);
    assert_eq!((failures[0].command, failures[0].exit_status), ("reboot", Some(1)));
    assert_eq!((failures[1].command, failures[1].exit_status), (SHUTDOWN, Some(7)));
    let msg = e.to_string();
    assert!(msg.contains("`reboot` exited 1") && msg.contains("`shutdown -f -t 3 -r` exited 7"), "{msg}");
    assert_eq!(peer.requests(), ["reboot", SHUTDOWN]);
}

#[tokio::test]
async fn ssh_connection_dropped_after_exec_counts_as_success() {
    let peer = SshHost::start();
    peer.set_drop(true);
    // Even a failing status must not be read: the session dies before it exits.
    peer.set_exit("reboot", 1);
    let (_d, t) = pinned(&peer);
    let started = Instant::now();
    let r = go(&t).await.unwrap_or_else(|e| panic!("{e}\n{}", peer.log()));
    assert_eq!(r.command, "reboot");
    assert_eq!(r.exit_status, None, "{r:?}");
    assert_eq!(peer.requests(), ["reboot"], "no fallback after the host went away");
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
}

#[tokio::test]
async fn ssh_command_killed_by_shutdown_signal_counts_as_success() {
    let peer = SshHost::start();
    peer.set_signal("reboot", "TERM");
    let (_d, t) = pinned(&peer);
    let r = go(&t).await.unwrap_or_else(|e| panic!("{e}\n{}", peer.log()));
    assert_eq!((r.command, r.exit_status), ("reboot", None), "{r:?}");
    assert_eq!(peer.requests(), ["reboot"]);
}

#[tokio::test]
async fn ssh_command_crashing_is_a_failure_and_falls_back() {
    let peer = SshHost::start();
    peer.set_signal("reboot", "SEGV");
    peer.set_exit(SHUTDOWN, 1);
    let (_d, t) = pinned(&peer);
    let e = go(&t).await.unwrap_err();
    let SshError::CommandsFailed { failures, .. } = &e else { panic!("{e:?}") };
    assert_eq!((failures[0].command, failures[0].exit_status), ("reboot", None));
    assert!(failures[0].output.contains("SEGV"), "{failures:?}");
    assert_eq!((failures[1].command, failures[1].exit_status), (SHUTDOWN, Some(1)));
    assert_eq!(peer.requests(), ["reboot", SHUTDOWN]);
}

#[tokio::test]
async fn ssh_wrong_client_key_is_auth_failed() {
    let peer = SshHost::start();
    let other = tempfile::tempdir().unwrap();
    let key = other.path().join("id_ed25519");
    let ok = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let (_d, kh) = known_hosts(&format!("{}\n", peer.known_hosts_line()));
    let e = go(&target(&peer, &key, HostKeyPolicy::KnownHosts(kh))).await.unwrap_err();
    assert!(matches!(e, SshError::AuthFailed { .. }), "{e:?}");
    assert!(peer.requests().is_empty());
}

#[tokio::test]
async fn ssh_unreadable_key_names_the_file_not_its_content() {
    let peer = SshHost::start();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("broken_key");
    std::fs::write(&key, "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LXNlY3JldC1zZWNyZXQ=\n").unwrap();
    let (_d, kh) = known_hosts(&format!("{}\n", peer.known_hosts_line()));
    let e = go(&target(&peer, &key, HostKeyPolicy::KnownHosts(kh.clone()))).await.unwrap_err();
    assert!(matches!(e, SshError::KeyFile { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("broken_key") && !msg.contains("c2VjcmV0"), "{msg}");

    let missing = dir.path().join("missing_key");
    let e = go(&target(&peer, &missing, HostKeyPolicy::KnownHosts(kh))).await.unwrap_err();
    assert!(matches!(e, SshError::KeyFile { .. }) && e.to_string().contains("missing_key"), "{e:?}");
    assert!(peer.requests().is_empty());
}

#[tokio::test]
async fn ssh_unknown_host_key_is_refused() {
    let peer = SshHost::start();
    let (_d, kh) = known_hosts("");
    let e = go(&target(&peer, &peer.client_key(), HostKeyPolicy::KnownHosts(kh.clone()))).await.unwrap_err();
    assert!(matches!(e, SshError::HostKeyUnknown { .. }), "{e:?}");
    assert!(peer.requests().is_empty(), "nothing may run on an unverified host");
    assert_eq!(std::fs::read_to_string(&kh).unwrap(), "", "KnownHosts never writes the file");
}

#[tokio::test]
async fn ssh_accept_new_records_the_key_then_pins_it() {
    let peer = SshHost::start();
    let (_d, kh) = known_hosts("");
    let t = target(&peer, &peer.client_key(), HostKeyPolicy::AcceptNew(kh.clone()));
    let r = go(&t).await.unwrap_or_else(|e| panic!("{e}\n{}", peer.log()));
    assert_eq!(r.command, "reboot");
    let recorded = std::fs::read_to_string(&kh).unwrap();
    let want = peer.known_hosts_line();
    assert!(recorded.lines().any(|l| l.trim() == want || l.starts_with(&want)), "{recorded:?} lacks {want:?}");
    // The recorded key is now a pin: the strict policy accepts it.
    let strict = target(&peer, &peer.client_key(), HostKeyPolicy::KnownHosts(kh));
    go(&strict).await.unwrap();
    assert_eq!(peer.requests(), ["reboot", "reboot"]);
}

#[tokio::test]
async fn ssh_changed_host_key_is_refused_under_both_policies() {
    let peer = SshHost::start();
    let line = format!("{}\n", other_host_key_line(&peer));
    for policy in [HostKeyPolicy::KnownHosts as fn(PathBuf) -> HostKeyPolicy, HostKeyPolicy::AcceptNew] {
        let (_d, kh) = known_hosts(&line);
        let e = go(&target(&peer, &peer.client_key(), policy(kh.clone()))).await.unwrap_err();
        assert!(matches!(e, SshError::HostKeyChanged { line: 1, .. }), "{e:?}");
        assert_eq!(std::fs::read_to_string(&kh).unwrap(), line, "the file is left alone");
    }
    assert!(peer.requests().is_empty());
}

#[tokio::test]
async fn ssh_hanging_command_times_out() {
    let peer = SshHost::start();
    peer.set_hang(true);
    let (_d, mut t) = pinned(&peer);
    t.command_timeout = Duration::from_secs(2);
    let started = Instant::now();
    let e = go(&t).await.unwrap_err();
    assert!(matches!(e, SshError::Timeout { phase: "reboot", .. }), "{e:?}");
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(15), "{took:?}");
    assert_eq!(peer.requests(), ["reboot"]);
}

/// Issue 14: the host takes `reboot`, then its network dies mid-shutdown: no exit
/// status, no FIN, no RST (a relay in front of sshd blackholes the connection once
/// the request reached the host). The request was sent, so it is reported as sent
/// and unconfirmed, not as a failure: a failure sent the reboot chain straight to
/// `chassis power reset`, 30 s into the host's own reboot.
#[tokio::test]
async fn ssh_silence_after_the_request_is_sent_unconfirmed_not_a_failure() {
    let peer = Arc::new(SshHost::start());
    // The command waits, so no exit status can cross before the blackhole.
    peer.set_hang(true);
    let relay = Arc::new(Relay::start(peer.port()).await);
    let seen = peer.clone();
    relay.blackhole_when(move || !seen.requests().is_empty());
    let (_d, kh) = known_hosts(&format!("{}\n", peer.known_hosts_line_for(relay.port())));
    let mut t = target(&peer, &peer.client_key(), HostKeyPolicy::KnownHosts(kh));
    t.port = relay.port();
    t.silence = Duration::from_secs(3);
    let started = Instant::now();
    let r = go(&t).await.unwrap_or_else(|e| panic!("{e}\n{}", peer.log()));
    assert_eq!((r.command, r.exit_status, r.session), ("reboot", None, SessionEnd::Silent), "{r:?}");
    assert_eq!(peer.requests(), ["reboot"], "no fallback: the host may be going down");
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(3) && took < t.command_timeout, "silence ended it, not the timeout: {took:?}");
}

#[tokio::test]
async fn ssh_nothing_listening_is_connect_error() {
    let (_d, kh) = known_hosts("");
    let mut t = SshTarget::new("127.0.0.1", "nobody", "/nonexistent", HostKeyPolicy::KnownHosts(kh)).unwrap();
    // The key is read before connecting: give it a real one.
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("k");
    assert!(
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap()
            .success()
    );
    t.key_file = key;
    t.port = free_port();
    t.connect_timeout = Duration::from_secs(10);
    let started = Instant::now();
    let e = go(&t).await.unwrap_err();
    assert!(matches!(e, SshError::Connect { .. } | SshError::Timeout { phase: "connect", .. }), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn ssh_silent_server_is_connect_timeout() {
    // Accepts TCP but never sends a banner: only the connect timeout ends it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let peer = SshHost::start();
    let (_d, mut t) = pinned(&peer);
    t.port = port;
    t.connect_timeout = Duration::from_secs(1);
    let started = Instant::now();
    let e = go(&t).await.unwrap_err();
    assert!(matches!(e, SshError::Timeout { phase: "connect", .. }), "{e:?}");
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(10), "{took:?}");
    holder.abort();
    assert!(peer.requests().is_empty());
}

#[tokio::test]
async fn ssh_cancellation_is_prompt() {
    let peer = SshHost::start();
    peer.set_hang(true);
    let (_d, t) = pinned(&peer);
    let cancel = CancellationToken::new();
    let task = {
        let (t, cancel) = (t.clone(), cancel.clone());
        tokio::spawn(async move { ssh::reboot(&t, &cancel).await })
    };
    // Cancel once the command is running on the host.
    wait_for(Duration::from_secs(20), || async { (!peer.requests().is_empty()).then_some(()) })
        .await
        .expect("the command reached the host");
    let started = Instant::now();
    cancel.cancel();
    let r = tokio::time::timeout(Duration::from_secs(5), task).await.expect("cancel is prompt").unwrap();
    assert!(matches!(r, Err(SshError::Cancelled)), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[test]
fn ssh_host_names_are_validated() {
    for good in ["127.0.0.1", "::1", "host-1.example.com", "db_2"] {
        assert!(ssh::validate_host(good).is_ok(), "{good}");
    }
    for bad in ["", "-oProxyCommand=x", "a b", "user@host", "host;reboot", "[::1]", "h/x", "h$(id)"] {
        assert!(matches!(ssh::validate_host(bad), Err(SshError::InvalidHost(_))), "{bad}");
    }
}
