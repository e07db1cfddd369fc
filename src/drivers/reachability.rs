//! Does a machine answer? ICMP echo, or a TCP connect for hosts that drop
//! ICMP, and the waits that prove a reboot: down within one bound, up again
//! within another.
//!
//! A TCP probe counts only an accepted connection as "answers": a refusal
//! proves the network stack is up but not that the machine came back to
//! service, and for a reboot proof the stronger signal is the right one.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::ping::{PingError, PingSettings, ping};

/// How to ask whether a machine answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Icmp,
    Tcp(u16),
}

/// As the inventory spells it: `icmp` or `tcp:<port>`.
impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Probe::Icmp => f.write_str("icmp"),
            Probe::Tcp(port) => write!(f, "tcp:{port}"),
        }
    }
}

/// Bounds for one probe and for the waits.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    /// One echo, waiting this long (also the TCP connect timeout).
    pub timeout: Duration,
    /// Pause between probes while waiting.
    pub interval: Duration,
    /// Consecutive failed probes that count as "down": one lost echo is not a reboot.
    pub down_after: u32,
    pub icmp: PingSettings,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        let timeout = Duration::from_secs(2);
        Self {
            timeout,
            interval: Duration::from_secs(1),
            down_after: 2,
            icmp: PingSettings { count: 1, timeout, ..PingSettings::default() },
        }
    }
}

/// Why a probe could not be made at all (as opposed to "no answer").
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Ping(PingError),
    #[error("cancelled")]
    Cancelled,
}

/// One probe: `Ok(true)` when the machine answered.
pub async fn answers(
    addr: IpAddr,
    probe: Probe,
    s: &ProbeSettings,
    cancel: &CancellationToken,
) -> Result<bool, ProbeError> {
    if cancel.is_cancelled() {
        return Err(ProbeError::Cancelled);
    }
    match probe {
        Probe::Icmp => {
            let icmp = PingSettings { count: 1, timeout: s.timeout, ..s.icmp.clone() };
            match ping(addr, &icmp, cancel).await {
                Ok(report) => Ok(report.received > 0),
                Err(PingError::Cancelled) => Err(ProbeError::Cancelled),
                // "Network unreachable" and friends are answers too: nothing answered.
                Err(PingError::CommandFailed { .. }) | Err(PingError::Io { .. }) => Ok(false),
                Err(e) => Err(ProbeError::Ping(e)),
            }
        }
        Probe::Tcp(port) => {
            let connect = tokio::net::TcpStream::connect(SocketAddr::new(addr, port));
            tokio::select! {
                r = tokio::time::timeout(s.timeout, connect) => Ok(matches!(r, Ok(Ok(_)))),
                _ = cancel.cancelled() => Err(ProbeError::Cancelled),
            }
        }
    }
}

/// What a TCP connection found: more than [`answers`]'s yes or no, for the evidence
/// taken before a power cut ("ping works but ssh doesn't" points at userspace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpAnswer {
    /// Connected. `banner`: the first line the service sent within the wait (an ssh
    /// server sends its version first), printable characters only, bounded.
    Accepted { banner: Option<String> },
    /// Refused: the host's network stack answers and nothing listens.
    Refused,
    /// No answer within the timeout (or the network says unreachable).
    Silent,
}

/// The most of a banner kept (RFC 4253 caps the ssh version line at 255).
const BANNER_MAX: usize = 255;

/// Connect to `port` within `timeout`; once connected, wait up to `banner_wait` for
/// the service's first line.
pub async fn tcp_answer(
    addr: IpAddr,
    port: u16,
    timeout: Duration,
    banner_wait: Duration,
    cancel: &CancellationToken,
) -> Result<TcpAnswer, ProbeError> {
    use tokio::io::AsyncReadExt;
    let connect = tokio::net::TcpStream::connect(SocketAddr::new(addr, port));
    let mut stream = tokio::select! {
        r = tokio::time::timeout(timeout, connect) => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(TcpAnswer::Refused),
            _ => return Ok(TcpAnswer::Silent),
        },
        _ = cancel.cancelled() => return Err(ProbeError::Cancelled),
    };
    let mut line = Vec::new();
    let read = async {
        let mut buf = [0u8; 256];
        while line.len() <= BANNER_MAX && !line.contains(&b'\n') {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => line.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::select! {
        _ = tokio::time::timeout(banner_wait, read) => {}
        _ = cancel.cancelled() => return Err(ProbeError::Cancelled),
    }
    let first = line.split(|&b| b == b'\n').next().unwrap_or_default();
    let text: String = String::from_utf8_lossy(first).chars().filter(|c| !c.is_control()).take(BANNER_MAX).collect();
    let banner = (!text.trim().is_empty()).then(|| text.trim().to_string());
    Ok(TcpAnswer::Accepted { banner })
}

/// Probe until the machine has not answered `down_after` times in a row, for at
/// most `limit`. `Some(elapsed)` when it went down, `None` when it never did.
pub async fn wait_down(
    addr: IpAddr,
    probe: Probe,
    s: &ProbeSettings,
    limit: Duration,
    cancel: &CancellationToken,
) -> Result<Option<Duration>, ProbeError> {
    let start = Instant::now();
    let mut silent = 0;
    loop {
        if answers(addr, probe, s, cancel).await? {
            silent = 0;
        } else {
            silent += 1;
            if silent >= s.down_after.max(1) {
                return Ok(Some(start.elapsed()));
            }
        }
        if !pause(start, limit, s.interval, cancel).await? {
            return Ok(None);
        }
    }
}

/// Probe until the machine answers, for at most `limit`.
pub async fn wait_up(
    addr: IpAddr,
    probe: Probe,
    s: &ProbeSettings,
    limit: Duration,
    cancel: &CancellationToken,
) -> Result<Option<Duration>, ProbeError> {
    let start = Instant::now();
    loop {
        if answers(addr, probe, s, cancel).await? {
            return Ok(Some(start.elapsed()));
        }
        if !pause(start, limit, s.interval, cancel).await? {
            return Ok(None);
        }
    }
}

/// Sleep `interval` unless that would pass `limit`; `false` when time is up.
async fn pause(
    start: Instant,
    limit: Duration,
    interval: Duration,
    cancel: &CancellationToken,
) -> Result<bool, ProbeError> {
    if start.elapsed() + interval > limit {
        return Ok(false);
    }
    tokio::select! {
        _ = tokio::time::sleep(interval) => Ok(true),
        _ = cancel.cancelled() => Err(ProbeError::Cancelled),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::drivers::ping::test_host::SilentHost;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn quick() -> ProbeSettings {
        let timeout = Duration::from_millis(300);
        ProbeSettings {
            timeout,
            interval: Duration::from_millis(100),
            down_after: 2,
            icmp: PingSettings { count: 1, timeout, ..PingSettings::default() },
        }
    }

    #[tokio::test]
    async fn tcp_counts_only_an_accepted_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let c = CancellationToken::new();
        assert!(answers(LOCALHOST, Probe::Tcp(port), &quick(), &c).await.unwrap());
        drop(listener);
        assert!(!answers(LOCALHOST, Probe::Tcp(port), &quick(), &c).await.unwrap(), "refused is not up");
    }

    #[tokio::test]
    async fn tcp_answers_tell_a_banner_a_silent_service_and_a_refusal_apart() {
        use tokio::io::AsyncWriteExt;
        let c = CancellationToken::new();
        let wait = Duration::from_millis(500);
        let ssh = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = ssh.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = ssh.accept().await.unwrap();
            s.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\x07\r\nmore").await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let got = tcp_answer(LOCALHOST, port, wait, Duration::from_secs(5), &c).await.unwrap();
        assert_eq!(got, TcpAnswer::Accepted { banner: Some("SSH-2.0-OpenSSH_9.2p1 Debian-2".into()) });
        server.abort();
        // A service that accepts and says nothing is still an accepted connection.
        let mute = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = mute.local_addr().unwrap().port();
        assert_eq!(tcp_answer(LOCALHOST, port, wait, wait, &c).await.unwrap(), TcpAnswer::Accepted { banner: None });
        drop(mute);
        assert_eq!(tcp_answer(LOCALHOST, port, wait, wait, &c).await.unwrap(), TcpAnswer::Refused);
    }

    #[tokio::test]
    async fn wait_up_sees_a_service_come_back_and_gives_up_at_its_limit() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let c = CancellationToken::new();
        let none = wait_up(LOCALHOST, Probe::Tcp(port), &quick(), Duration::from_millis(500), &c).await.unwrap();
        assert_eq!(none, None);
        let back = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let l = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(l);
        });
        let up = wait_up(LOCALHOST, Probe::Tcp(port), &quick(), Duration::from_secs(20), &c).await.unwrap();
        assert!(up.is_some_and(|d| d >= Duration::from_millis(300)), "{up:?}");
        back.abort();
    }

    #[tokio::test]
    async fn icmp_proves_a_host_going_down_and_coming_back() {
        let host = SilentHost::new(41);
        let addr = IpAddr::V4(host.addr);
        let c = CancellationToken::new();
        host.set_link_up(true);
        let up = wait_up(addr, Probe::Icmp, &quick(), Duration::from_secs(20), &c).await.unwrap();
        assert!(up.is_some(), "the host answers once its link is up");
        assert_eq!(
            wait_down(addr, Probe::Icmp, &quick(), Duration::from_millis(800), &c).await.unwrap(),
            None,
            "an answering host does not go down"
        );
        host.set_link_up(false);
        let down = wait_down(addr, Probe::Icmp, &quick(), Duration::from_secs(20), &c).await.unwrap();
        assert!(down.is_some(), "silence is seen as down");
        assert_eq!(wait_up(addr, Probe::Icmp, &quick(), Duration::from_millis(800), &c).await.unwrap(), None);
    }

    #[tokio::test]
    async fn waits_stop_when_cancelled() {
        let host = SilentHost::new(42);
        let c = CancellationToken::new();
        let wait = tokio::spawn({
            let (addr, c) = (IpAddr::V4(host.addr), c.clone());
            async move { wait_up(addr, Probe::Icmp, &quick(), Duration::from_secs(60), &c).await }
        });
        // Cancel once the wait has probed the silent host, so it is cancelled mid-wait
        // (in a probe or the pause after one), not before it started.
        let mut probed = false;
        for _ in 0..500 {
            probed = host.was_sent_to();
            if probed || wait.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(probed, "no probe reached the silent host within 10 s");
        assert!(!wait.is_finished(), "the wait ended before it was cancelled: {:?}", wait.await);
        let cancelled_at = Instant::now();
        c.cancel();
        let r =
            tokio::time::timeout(Duration::from_secs(10), wait).await.expect("the wait ignored cancellation").unwrap();
        assert!(matches!(r, Err(ProbeError::Cancelled)), "{r:?}");
        assert!(cancelled_at.elapsed() < Duration::from_secs(10), "took {:?}", cancelled_at.elapsed());
    }
}
