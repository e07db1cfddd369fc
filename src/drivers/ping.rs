//! ICMP echo to one address, with a choice of how to reach the kernel's ICMP.
//!
//! # Mechanism
//!
//! Stock Debian sets `net.ipv4.ping_group_range = 1 0`, so an unprivileged
//! service user can open neither a datagram ICMP socket (`EACCES`) nor a raw one
//! (`EPERM`, needs `CAP_NET_RAW`). The iputils `ping` binary carries the file
//! capability `cap_net_raw=ep` and works for everyone. [`PingMethod::Auto`]
//! therefore:
//!
//! 1. tries an ICMP socket through surge-ping (datagram first, then raw): no
//!    child process, exact per-echo timing, and it works wherever the deployment
//!    widened `ping_group_range` or granted `CAP_NET_RAW`;
//! 2. on a permission error opening that socket, runs `/usr/bin/ping` (or
//!    `/bin/ping`; never a `$PATH` lookup) with an argument vector, never a shell,
//!    and parses its summary lines.
//!
//! Only an [`IpAddr`] ever reaches the child's argv, so no name from a request can
//! be read as an option. Permission problems are reported as
//! [`PingError::Permission`], never as "host down".
//!
//! # Semantics
//!
//! * Socket: `count` echoes, sequentially; each waits up to `timeout` for its
//!   reply, and consecutive sends are at least `interval` apart.
//! * Command: `ping -c count -i interval -W timeout`. iputils sends every
//!   `interval` and waits `timeout` after the last send for stragglers. Older
//!   iputils refuse intervals below 200 ms for unprivileged users, so the command
//!   path clamps `interval` to at least 200 ms.
//! * A host that never answers yields `Ok` with `received == 0`; deciding what
//!   that means is the caller's business.

use std::fmt::Write as _;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rand::random;
use serde::Serialize;
use surge_ping::{Client, Config, ICMP, IcmpPacket, PingIdentifier, PingSequence, SurgeError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How to reach the kernel's ICMP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PingMethod {
    /// An ICMP socket (datagram, then raw) when the kernel allows it, else the `ping` binary.
    #[default]
    Auto,
    /// Only an ICMP socket.
    Socket,
    /// Only the system `ping` binary (iputils), which carries `cap_net_raw`.
    Command,
}

#[derive(Debug, Clone)]
pub struct PingSettings {
    /// Echo requests to send.
    pub count: u32,
    /// Pause between requests.
    pub interval: Duration,
    /// How long to wait for each reply.
    pub timeout: Duration,
    pub method: PingMethod,
}

impl Default for PingSettings {
    fn default() -> Self {
        Self { count: 4, interval: Duration::from_secs(1), timeout: Duration::from_secs(2), method: PingMethod::Auto }
    }
}

/// Which mechanism actually produced a [`PingReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PingMethodUsed {
    Socket,
    Command,
}

impl PingMethodUsed {
    pub fn as_str(self) -> &'static str {
        match self {
            PingMethodUsed::Socket => "socket",
            PingMethodUsed::Command => "command",
        }
    }
}

impl std::fmt::Display for PingMethodUsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Outcome of a completed ping run. Round-trip times are `None` when nothing came back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PingReport {
    pub method_used: PingMethodUsed,
    pub sent: u32,
    pub received: u32,
    pub rtt_min_ms: Option<f64>,
    pub rtt_avg_ms: Option<f64>,
    pub rtt_max_ms: Option<f64>,
}

impl PingReport {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "method": self.method_used.as_str(),
            "sent": self.sent,
            "received": self.received,
            "rtt_ms": self.rtt_json(),
        })
    }

    /// `{"min","avg","max"}` or `null`, the shape job results use.
    pub fn rtt_json(&self) -> serde_json::Value {
        match (self.rtt_min_ms, self.rtt_avg_ms, self.rtt_max_ms) {
            (Some(min), Some(avg), Some(max)) => {
                serde_json::json!({ "min": min, "avg": avg, "max": max })
            }
            _ => serde_json::Value::Null,
        }
    }
}

const PERMISSION_HINT: &str = "widen net.ipv4.ping_group_range to include the service's group, \
     grant the service CAP_NET_RAW (e.g. systemd AmbientCapabilities=CAP_NET_RAW), \
     or install iputils-ping (its /usr/bin/ping carries cap_net_raw) and use method auto or command";

/// Where the `ping` binary may live. Fixed so nothing outside the deployment
/// (a request, an inherited `$PATH`) can choose which program runs.
const PING_BINARIES: &[&str] = &["/usr/bin/ping", "/bin/ping"];

#[derive(Debug, thiserror::Error)]
pub enum PingError {
    /// The kernel refused ICMP to this process: a deployment problem, not a host problem.
    #[error("not permitted to send ICMP echo ({detail}); {PERMISSION_HINT}")]
    Permission { detail: String },
    #[error(
        "no ping binary found (looked for {}); install iputils-ping (Debian: apt-get install iputils-ping)",
        PING_BINARIES.join(", ")
    )]
    CommandMissing,
    /// `ping` ran but failed as a tool (exit status 2, signal, unreadable output).
    #[error("{program} failed ({status}): {message}")]
    CommandFailed { program: String, status: String, message: String },
    #[error("settings rejected: {0}")]
    InvalidSettings(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("cancelled")]
    Cancelled,
}

impl PingError {
    fn io(context: impl Into<String>, source: io::Error) -> Self {
        PingError::Io { context: context.into(), source }
    }
}

/// Echo `addr` `settings.count` times. Returns as soon as `cancel` fires, with
/// [`PingError::Cancelled`] (a running `ping` child is killed).
pub async fn ping(addr: IpAddr, settings: &PingSettings, cancel: &CancellationToken) -> Result<PingReport, PingError> {
    if settings.count == 0 {
        return Err(PingError::InvalidSettings("count must be at least 1".into()));
    }
    if settings.timeout.is_zero() {
        return Err(PingError::InvalidSettings("timeout must be above zero".into()));
    }
    if cancel.is_cancelled() {
        return Err(PingError::Cancelled);
    }
    match settings.method {
        PingMethod::Socket => {
            let client = open_client(addr)?;
            ping_socket(&client, addr, settings, cancel).await
        }
        PingMethod::Command => ping_command(addr, settings, cancel).await,
        PingMethod::Auto => match open_client(addr) {
            Ok(client) => ping_socket(&client, addr, settings, cancel).await,
            Err(PingError::Permission { detail }) => {
                match ping_command(addr, settings, cancel).await {
                    // The socket refusal is the root cause worth reporting: the
                    // hint covers both ways out.
                    Err(PingError::CommandMissing) => Err(PingError::Permission {
                        detail: format!("{detail}; and no ping binary at {}", PING_BINARIES.join(", ")),
                    }),
                    other => other,
                }
            }
            Err(e) => Err(e),
        },
    }
}

/// A client per call rather than one per process: on Linux datagram ICMP
/// sockets the kernel owns the echo identifier (one per socket), so surge-ping
/// matches replies by (host, sequence) only, and two concurrent pings of the
/// same host through a shared client would collide. One socket per job is cheap.
fn open_client(addr: IpAddr) -> Result<Client, PingError> {
    let config = match addr {
        IpAddr::V4(_) => Config::default(),
        IpAddr::V6(_) => Config::builder().kind(ICMP::V6).build(),
    };
    Client::new(&config).map_err(|e| {
        if e.kind() == io::ErrorKind::PermissionDenied {
            // surge-ping's own message already suggests a sysctl and setcap;
            // keep only its closing "Original error" line so our hint is not doubled.
            let detail = e.to_string().lines().last().unwrap_or_default().trim().to_string();
            PingError::Permission { detail: format!("opening an ICMP socket: {detail}") }
        } else {
            PingError::io("opening an ICMP socket", e)
        }
    })
}

/// Same payload size as iputils' default, so both methods put the same load on the wire.
const PAYLOAD: [u8; 56] = [0; 56];

async fn ping_socket(
    client: &Client,
    addr: IpAddr,
    settings: &PingSettings,
    cancel: &CancellationToken,
) -> Result<PingReport, PingError> {
    // Random so that raw sockets (which see every ICMP packet on the host) can
    // tell our replies from other pingers'.
    let mut pinger = client.pinger(addr, PingIdentifier(random())).await;
    pinger.timeout(settings.timeout);

    let mut rtts: Vec<f64> = Vec::with_capacity(settings.count as usize);
    let mut sent = 0u32;
    let mut next_send = Instant::now();
    for i in 0..settings.count {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(PingError::Cancelled),
            _ = tokio::time::sleep_until(next_send) => {}
        }
        next_send = Instant::now() + settings.interval;
        // Sequence numbers wrap; harmless because echoes are sequential and the
        // previous waiter is gone before the next send.
        let seq = PingSequence((i % (u32::from(u16::MAX) + 1)) as u16);
        let outcome = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(PingError::Cancelled),
            r = pinger.ping(seq, &PAYLOAD) => r,
        };
        sent += 1;
        match outcome {
            Ok((packet, rtt)) if is_echo_reply(&packet) => rtts.push(rtt.as_secs_f64() * 1000.0),
            // An ICMP error (unreachable, time exceeded) about our echo: lost, as
            // iputils counts it.
            Ok(_) => {}
            Err(SurgeError::Timeout { .. }) => {}
            Err(SurgeError::IOError(e)) => {
                return Err(PingError::io(format!("sending ICMP echo to {addr}"), e));
            }
            Err(e) => {
                return Err(PingError::io(format!("ICMP echo to {addr}"), io::Error::other(e.to_string())));
            }
        }
    }
    Ok(report_from_rtts(PingMethodUsed::Socket, sent, &rtts))
}

fn is_echo_reply(packet: &IcmpPacket) -> bool {
    const ICMPV4_ECHO_REPLY: u8 = 0;
    const ICMPV6_ECHO_REPLY: u8 = 129;
    match packet {
        IcmpPacket::V4(p) => p.get_icmp_type().0 == ICMPV4_ECHO_REPLY,
        IcmpPacket::V6(p) => p.get_icmpv6_type().0 == ICMPV6_ECHO_REPLY,
    }
}

fn report_from_rtts(method_used: PingMethodUsed, sent: u32, rtts: &[f64]) -> PingReport {
    let received = u32::try_from(rtts.len()).unwrap_or(u32::MAX);
    let (min, avg, max) = if rtts.is_empty() {
        (None, None, None)
    } else {
        let min = rtts.iter().copied().fold(f64::INFINITY, f64::min);
        let max = rtts.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let avg = rtts.iter().sum::<f64>() / rtts.len() as f64;
        (Some(min), Some(avg), Some(max))
    };
    PingReport { method_used, sent, received, rtt_min_ms: min, rtt_avg_ms: avg, rtt_max_ms: max }
}

fn find_ping_binary() -> Option<PathBuf> {
    PING_BINARIES.iter().map(Path::new).find(|p| p.is_file()).map(Path::to_path_buf)
}

/// iputils before 20210202 refuse shorter intervals without privilege.
const MIN_COMMAND_INTERVAL: Duration = Duration::from_millis(200);

/// Room for process start-up and ping's own bookkeeping on a loaded machine.
const COMMAND_MARGIN: Duration = Duration::from_secs(5);

/// The argument vector for `ping`. Only `addr`'s canonical text reaches it.
fn command_args(addr: IpAddr, settings: &PingSettings) -> Vec<String> {
    let interval = settings.interval.max(MIN_COMMAND_INTERVAL);
    // ping rounds a -W below 1 ms down to "wait forever" on some versions.
    let timeout = settings.timeout.max(Duration::from_millis(1));
    vec![
        match addr {
            IpAddr::V4(_) => "-4".to_string(),
            IpAddr::V6(_) => "-6".to_string(),
        },
        "-n".into(),
        "-c".into(),
        settings.count.to_string(),
        "-i".into(),
        format!("{:.3}", interval.as_secs_f64()),
        "-W".into(),
        format!("{:.3}", timeout.as_secs_f64()),
        "--".into(),
        addr.to_string(),
    ]
}

/// The longest a well-behaved `ping` child may run before we call it hung.
fn command_deadline(settings: &PingSettings) -> Duration {
    let interval = settings.interval.max(MIN_COMMAND_INTERVAL);
    interval.saturating_mul(settings.count) + settings.timeout + COMMAND_MARGIN
}

async fn ping_command(
    addr: IpAddr,
    settings: &PingSettings,
    cancel: &CancellationToken,
) -> Result<PingReport, PingError> {
    let program = find_ping_binary().ok_or(PingError::CommandMissing)?;
    let program_name = program.display().to_string();
    let mut cmd = tokio::process::Command::new(&program);
    super::die_with_parent(&mut cmd);
    cmd.args(command_args(addr, settings))
        // A clean, C-locale environment: iputils parses "-i 0.200" with the
        // locale's decimal point and prints its summary in the locale's language.
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LANG", "C")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Cancellation and timeouts drop the future; the child must not outlive it.
        .kill_on_drop(true);
    let child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(PingError::CommandMissing),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(PingError::Permission { detail: format!("executing {program_name}: {e}") });
        }
        Err(e) => return Err(PingError::io(format!("starting {program_name}"), e)),
    };
    let deadline = command_deadline(settings);
    let output = tokio::select! {
        biased;
        _ = cancel.cancelled() => return Err(PingError::Cancelled),
        r = tokio::time::timeout(deadline, child.wait_with_output()) => match r {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => return Err(PingError::io(format!("waiting for {program_name}"), e)),
            Err(_) => {
                return Err(PingError::CommandFailed {
                    program: program_name,
                    status: "killed".into(),
                    message: format!("did not finish within {deadline:?}"),
                });
            }
        },
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    interpret_command_output(&program_name, output.status.code(), &stdout, &stderr)
}

/// Exit status 0 or 1 with a readable summary is a result (1 means some or all
/// echoes went unanswered); anything else is the tool failing.
fn interpret_command_output(
    program: &str,
    code: Option<i32>,
    stdout: &str,
    stderr: &str,
) -> Result<PingReport, PingError> {
    let summary = parse_summary(stdout);
    match (code, summary) {
        (Some(0 | 1), Some(s)) => Ok(s.into_report()),
        _ => {
            let message = first_lines(stderr, 4);
            let status = match code {
                Some(c) => format!("exit status {c}"),
                None => "killed by a signal".into(),
            };
            if is_permission_message(stderr) {
                return Err(PingError::Permission { detail: format!("{program}: {message}") });
            }
            let message = if message.is_empty() { "no summary in its output".to_string() } else { message };
            Err(PingError::CommandFailed { program: program.to_string(), status, message })
        }
    }
}

/// What iputils says when it lacks `cap_net_raw` and datagram sockets are refused.
fn is_permission_message(stderr: &str) -> bool {
    let lower = stderr.to_ascii_lowercase();
    lower.contains("operation not permitted")
        || lower.contains("permission denied")
        || lower.contains("missing cap_net_raw")
}

fn first_lines(s: &str, n: usize) -> String {
    let mut out = String::new();
    for line in s.lines().map(str::trim).filter(|l| !l.is_empty()).take(n) {
        if !out.is_empty() {
            out.push_str("; ");
        }
        let _ = write!(out, "{line}");
    }
    out
}

/// The statistics block of `ping`'s output.
#[derive(Debug, Clone, PartialEq)]
struct Summary {
    transmitted: u32,
    received: u32,
    /// min, avg, max in milliseconds.
    rtt: Option<(f64, f64, f64)>,
}

impl Summary {
    fn into_report(self) -> PingReport {
        // iputils prints no rtt line when nothing came back; never report
        // times for zero replies even if some other ping did.
        let rtt = if self.received == 0 { None } else { self.rtt };
        PingReport {
            method_used: PingMethodUsed::Command,
            sent: self.transmitted,
            received: self.received,
            rtt_min_ms: rtt.map(|r| r.0),
            rtt_avg_ms: rtt.map(|r| r.1),
            rtt_max_ms: rtt.map(|r| r.2),
        }
    }
}

/// Parse `N packets transmitted, M received, ...` and, when present,
/// `rtt min/avg/max/mdev = a/b/c/d ms` (busybox: `round-trip min/avg/max = a/b/c ms`).
/// `None` when the counts line is missing or malformed.
fn parse_summary(stdout: &str) -> Option<Summary> {
    let mut counts = None;
    let mut rtt = None;
    for line in stdout.lines().map(str::trim) {
        if line.contains("packets transmitted") {
            counts = parse_counts(line);
        } else if line.starts_with("rtt ") || line.starts_with("round-trip ") {
            rtt = parse_rtt(line);
        }
    }
    let (transmitted, received) = counts?;
    Some(Summary { transmitted, received, rtt })
}

fn parse_counts(line: &str) -> Option<(u32, u32)> {
    let mut parts = line.split(',').map(str::trim);
    let transmitted = leading_number(parts.next()?)?;
    let received_part = parts.next()?;
    if !received_part.ends_with("received") {
        return None;
    }
    let received = leading_number(received_part)?;
    Some((transmitted, received))
}

fn leading_number(s: &str) -> Option<u32> {
    s.split_whitespace().next()?.parse().ok()
}

fn parse_rtt(line: &str) -> Option<(f64, f64, f64)> {
    let (_, values) = line.split_once('=')?;
    let values = values.split_whitespace().next()?;
    let mut it = values.split('/').map(|v| v.parse::<f64>().ok());
    let min = it.next()??;
    let avg = it.next()??;
    let max = it.next()??;
    if [min, avg, max].iter().all(|v| v.is_finite() && *v >= 0.0) { Some((min, avg, max)) } else { None }
}

/// Disposable "hosts" for tests: a network namespace joined to this one by a
/// veth pair (see test-peers.md §8). Needs root and `ip` (iproute2).
#[cfg(test)]
pub(crate) mod test_host {
    use std::net::Ipv4Addr;
    use std::process::Command;

    /// A namespace whose inner link is down: its address routes to our veth but
    /// nothing ever answers, which is how a crashed or rebooting machine looks.
    pub(crate) struct SilentHost {
        ns: String,
        outer: String,
        pub(crate) addr: Ipv4Addr,
    }

    fn ip(args: &[&str]) -> Result<String, String> {
        let out = Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| format!("ip {}: {e} (install iproute2)", args.join(" ")))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("ip {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
        }
    }

    impl SilentHost {
        /// `subnet` picks 10.231.<subnet>.0/30; each test passes its own, so
        /// tests running in parallel never share addresses.
        pub(crate) fn new(subnet: u8) -> SilentHost {
            let tag = format!("{}x{subnet}", std::process::id() % 100_000);
            let host = SilentHost {
                ns: format!("roller-test-{tag}"),
                // Interface names are limited to 15 bytes.
                outer: format!("rlt{tag}"),
                addr: Ipv4Addr::new(10, 231, subnet, 2),
            };
            let outer_addr = format!("10.231.{subnet}.1/30");
            let inner_addr = format!("{}/30", host.addr);
            // The guard exists before the first `ip` call, so a failure half-way
            // still removes whatever was created.
            let steps: [&[&str]; 6] = [
                &["netns", "add", &host.ns],
                &["link", "add", &host.outer, "type", "veth", "peer", "name", "eth0", "netns", &host.ns],
                &["addr", "add", &outer_addr, "dev", &host.outer],
                &["link", "set", &host.outer, "up"],
                &["-n", &host.ns, "addr", "add", &inner_addr, "dev", "eth0"],
                // Inner link stays down: echoes go out on our veth and vanish.
                &["-n", &host.ns, "link", "set", "eth0", "down"],
            ];
            for step in steps {
                if let Err(e) = ip(step) {
                    panic!("creating test host (tests need root and iproute2): {e}");
                }
            }
            // Never let a test echo leave this machine: the address must route
            // to our veth, not to a default gateway.
            let route = ip(&["-o", "route", "get", &host.addr.to_string()])
                .unwrap_or_else(|e| panic!("checking the test host's route: {e}"));
            assert!(
                route.contains(&format!("dev {} ", host.outer)),
                "{} does not route via {}: {route}",
                host.addr,
                host.outer
            );
            host
        }

        /// Whether something here has tried to reach the host: the first packet to its
        /// address makes the kernel ask for it by ARP, which enters it in the neighbour
        /// table on our veth (INCOMPLETE, later FAILED while the host is silent). Nothing
        /// else sends to this test's own address, so the entry is that packet's trace.
        pub(crate) fn was_sent_to(&self) -> bool {
            let addr = self.addr.to_string();
            std::fs::read_to_string("/proc/net/arp").unwrap_or_default().lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.first() == Some(&addr.as_str()) && f.last() == Some(&self.outer.as_str())
            })
        }

        /// Bring the host's own link up (it answers) or down (it goes silent),
        /// as a machine does when it reboots.
        pub(crate) fn set_link_up(&self, up: bool) {
            let state = if up { "up" } else { "down" };
            if let Err(e) = ip(&["-n", &self.ns, "link", "set", "eth0", state]) {
                panic!("setting the test host's link {state}: {e}");
            }
        }
    }

    impl Drop for SilentHost {
        fn drop(&mut self) {
            // Deleting the namespace destroys eth0 and with it the whole veth
            // pair; the explicit link delete covers a namespace that never got
            // its end. Errors are expected for whichever ran second.
            let _ = ip(&["netns", "del", &self.ns]);
            let _ = ip(&["link", "del", &self.outer]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn quick(method: PingMethod, count: u32) -> PingSettings {
        PingSettings { count, interval: Duration::from_millis(200), timeout: Duration::from_millis(400), method }
    }

    // Samples captured from iputils 20221126 on Debian 12.
    const OK_SAMPLE: &str = "PING 127.0.0.1 (127.0.0.1) 56(84) bytes of data.
64 bytes from 127.0.0.1: icmp_seq=1 ttl=64 time=0.386 ms
64 bytes from 127.0.0.1: icmp_seq=2 ttl=64 time=0.041 ms

--- 127.0.0.1 ping statistics ---
2 packets transmitted, 2 received, 0% packet loss, time 202ms
rtt min/avg/max/mdev = 0.041/0.213/0.386/0.172 ms
";
    const LOSS_SAMPLE: &str = "PING 10.250.0.2 (10.250.0.2) 56(84) bytes of data.

--- 10.250.0.2 ping statistics ---
2 packets transmitted, 0 received, 100% packet loss, time 203ms

";
    const LOSS_WITH_ERRORS_SAMPLE: &str = "PING 10.250.0.2 (10.250.0.2) 56(84) bytes of data.
From 10.250.0.1 icmp_seq=1 Destination Host Unreachable
From 10.250.0.1 icmp_seq=2 Destination Host Unreachable

--- 10.250.0.2 ping statistics ---
2 packets transmitted, 0 received, +2 errors, 100% packet loss, time 204ms

";
    const PARTIAL_SAMPLE: &str = "PING 10.250.0.2 (10.250.0.2) 56(84) bytes of data.
64 bytes from 10.250.0.2: icmp_seq=1 ttl=64 time=0.220 ms
64 bytes from 10.250.0.2: icmp_seq=2 ttl=64 time=0.049 ms
64 bytes from 10.250.0.2: icmp_seq=3 ttl=64 time=0.048 ms

--- 10.250.0.2 ping statistics ---
6 packets transmitted, 3 received, 50% packet loss, time 1017ms
rtt min/avg/max/mdev = 0.048/0.105/0.220/0.080 ms
";
    const IPV6_SAMPLE: &str = "PING ::1(::1) 56 data bytes
64 bytes from ::1: icmp_seq=1 ttl=64 time=0.305 ms
64 bytes from ::1: icmp_seq=2 ttl=64 time=0.045 ms

--- ::1 ping statistics ---
2 packets transmitted, 2 received, 0% packet loss, time 203ms
rtt min/avg/max/mdev = 0.045/0.175/0.305/0.130 ms
";
    // Root with a sub-millisecond interval adds the ipg/ewma field.
    const FLOOD_SAMPLE: &str = "--- 127.0.0.1 ping statistics ---
2 packets transmitted, 2 received, 0% packet loss, time 0ms
rtt min/avg/max/mdev = 0.005/0.012/0.019/0.007 ms, ipg/ewma 0.061/0.017 ms
";
    const NO_CAP_STDERR: &str = "/usr/bin/ping: socktype: SOCK_RAW
/usr/bin/ping: socket: Operation not permitted
/usr/bin/ping: => missing cap_net_raw+p capability or setuid?
";

    #[test]
    fn parses_success() {
        let r = interpret_command_output("ping", Some(0), OK_SAMPLE, "").unwrap();
        assert_eq!(r.method_used, PingMethodUsed::Command);
        assert_eq!((r.sent, r.received), (2, 2));
        assert_eq!(r.rtt_min_ms, Some(0.041));
        assert_eq!(r.rtt_avg_ms, Some(0.213));
        assert_eq!(r.rtt_max_ms, Some(0.386));
    }

    #[test]
    fn parses_total_loss_as_a_result_not_an_error() {
        for sample in [LOSS_SAMPLE, LOSS_WITH_ERRORS_SAMPLE] {
            let r = interpret_command_output("ping", Some(1), sample, "").unwrap();
            assert_eq!((r.sent, r.received), (2, 0));
            assert_eq!(r.rtt_min_ms, None);
            assert_eq!(r.rtt_json(), serde_json::Value::Null);
        }
    }

    #[test]
    fn parses_partial_loss() {
        let r = interpret_command_output("ping", Some(0), PARTIAL_SAMPLE, "").unwrap();
        assert_eq!((r.sent, r.received), (6, 3));
        assert_eq!(r.rtt_max_ms, Some(0.220));
    }

    #[test]
    fn parses_ipv6_and_flood_variants() {
        let r = interpret_command_output("ping", Some(0), IPV6_SAMPLE, "").unwrap();
        assert_eq!((r.sent, r.received, r.rtt_min_ms), (2, 2, Some(0.045)));
        let r = interpret_command_output("ping", Some(0), FLOOD_SAMPLE, "").unwrap();
        assert_eq!((r.rtt_min_ms, r.rtt_max_ms), (Some(0.005), Some(0.019)));
    }

    #[test]
    fn parses_busybox_summary() {
        let out = "--- 127.0.0.1 ping statistics ---
3 packets transmitted, 3 packets received, 0% packet loss
round-trip min/avg/max = 0.050/0.070/0.090 ms
";
        let r = interpret_command_output("ping", Some(0), out, "").unwrap();
        assert_eq!((r.sent, r.received, r.rtt_avg_ms), (3, 3, Some(0.070)));
    }

    #[test]
    fn exit_status_2_is_a_tool_error_with_stderr() {
        let err =
            interpret_command_output("/usr/bin/ping", Some(2), "", "/usr/bin/ping: connect: Network is unreachable\n")
                .unwrap_err();
        match err {
            PingError::CommandFailed { status, message, .. } => {
                assert_eq!(status, "exit status 2");
                assert!(message.contains("Network is unreachable"), "{message}");
            }
            other => panic!("expected CommandFailed, got {other:?}"),
        }
    }

    #[test]
    fn missing_capability_is_a_permission_error() {
        let err = interpret_command_output("/usr/bin/ping", Some(2), "", NO_CAP_STDERR).unwrap_err();
        assert!(matches!(err, PingError::Permission { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("ping_group_range") && text.contains("CAP_NET_RAW"), "{text}");
    }

    #[test]
    fn garbage_output_is_an_error_not_a_panic() {
        for (code, out) in [
            (Some(0), ""),
            (Some(0), "packets transmitted"),
            (Some(0), "x packets transmitted, y received"),
            (Some(1), "2 packets transmitted, 2 lost"),
            (None, OK_SAMPLE),
        ] {
            let err = interpret_command_output("ping", code, out, "").unwrap_err();
            assert!(matches!(err, PingError::CommandFailed { .. }), "{err:?}");
        }
        // A broken rtt line loses the times but keeps the counts.
        let out = "1 packets transmitted, 1 received\nrtt min/avg/max/mdev = a/b/c/d ms\n";
        let r = interpret_command_output("ping", Some(0), out, "").unwrap();
        assert_eq!((r.received, r.rtt_min_ms), (1, None));
    }

    #[test]
    fn argv_is_options_then_the_address_only() {
        let s = PingSettings {
            count: 3,
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(1500),
            method: PingMethod::Command,
        };
        assert_eq!(
            command_args(LOCALHOST, &s),
            ["-4", "-n", "-c", "3", "-i", "0.200", "-W", "1.500", "--", "127.0.0.1"]
        );
        let v6 = command_args(IpAddr::V6(Ipv6Addr::LOCALHOST), &s);
        assert_eq!(v6.first().map(String::as_str), Some("-6"));
        assert_eq!(v6.last().map(String::as_str), Some("::1"));
    }

    #[test]
    fn report_json_shape() {
        let r = report_from_rtts(PingMethodUsed::Socket, 3, &[1.0, 2.0, 3.0]);
        assert_eq!(
            r.to_json(),
            serde_json::json!({
                "method": "socket", "sent": 3, "received": 3,
                "rtt_ms": {"min": 1.0, "avg": 2.0, "max": 3.0}
            })
        );
    }

    #[tokio::test]
    async fn socket_pings_localhost() {
        let r = ping(LOCALHOST, &quick(PingMethod::Socket, 3), &CancellationToken::new())
            .await
            .expect("socket ping of 127.0.0.1 (tests run as root or with CAP_NET_RAW)");
        assert_eq!(r.method_used, PingMethodUsed::Socket);
        assert_eq!((r.sent, r.received), (3, 3));
        let (min, avg, max) = (r.rtt_min_ms.unwrap(), r.rtt_avg_ms.unwrap(), r.rtt_max_ms.unwrap());
        assert!(min <= avg && avg <= max, "{r:?}");
    }

    fn expect_command_ok(r: Result<PingReport, PingError>) -> PingReport {
        match r {
            Ok(r) => r,
            Err(PingError::CommandMissing) => panic!(
                "the command-method tests need iputils ping at {}: \
                 apt-get install -y iputils-ping",
                PING_BINARIES.join(" or ")
            ),
            Err(e) => panic!("ping command failed: {e}"),
        }
    }

    #[tokio::test]
    async fn command_pings_localhost() {
        let r = expect_command_ok(ping(LOCALHOST, &quick(PingMethod::Command, 2), &CancellationToken::new()).await);
        assert_eq!(r.method_used, PingMethodUsed::Command);
        assert_eq!((r.sent, r.received), (2, 2));
        assert!(r.rtt_avg_ms.is_some());
    }

    #[tokio::test]
    async fn silent_host_reports_zero_received_via_socket() {
        let host = test_host::SilentHost::new(11);
        let r = ping(IpAddr::V4(host.addr), &quick(PingMethod::Socket, 2), &CancellationToken::new())
            .await
            .expect("a silent host is a result, not an error");
        assert_eq!((r.sent, r.received), (2, 0));
        assert_eq!(r.rtt_json(), serde_json::Value::Null);
    }

    #[tokio::test]
    async fn silent_host_reports_zero_received_via_command() {
        let host = test_host::SilentHost::new(12);
        let r = expect_command_ok(
            ping(IpAddr::V4(host.addr), &quick(PingMethod::Command, 2), &CancellationToken::new()).await,
        );
        assert_eq!((r.method_used, r.sent, r.received), (PingMethodUsed::Command, 2, 0));
        assert_eq!(r.rtt_min_ms, None);
    }

    fn expect_cancelled(method: PingMethod, r: Result<PingReport, PingError>) {
        match r {
            Err(PingError::Cancelled) => {}
            Err(PingError::CommandMissing) => {
                panic!("needs iputils ping: apt-get install -y iputils-ping")
            }
            other => panic!("{method:?}: expected Cancelled, got {other:?}"),
        }
    }

    /// Starts a ping to `addr` (a loopback address of its own) that would take about a
    /// minute, cancels it once its first echo request has arrived, and requires it to
    /// stop well before then, its `ping` child (command method) killed.
    async fn assert_cancel_is_prompt(method: PingMethod, addr: Ipv4Addr) {
        let settings = PingSettings {
            count: 100,
            interval: Duration::from_millis(500),
            timeout: Duration::from_millis(500),
            method,
        };
        // Watching before the ping starts, so its first echo cannot pass unseen.
        let watch = roller_testkit::icmp::EchoWatch::open()
            .expect("a raw ICMP socket to see the echo (the ping tests run as root or with CAP_NET_RAW)");
        let cancel = CancellationToken::new();
        let mut call = tokio::spawn({
            let cancel = cancel.clone();
            async move { ping(IpAddr::V4(addr), &settings, &cancel).await }
        });
        let seen = tokio::task::spawn_blocking(move || watch.wait_for_request(addr, Duration::from_secs(10)));
        tokio::select! {
            r = &mut call => panic!("{method:?} ping ended before its first echo was seen: {:?}", r.unwrap()),
            seen = seen => assert!(seen.unwrap(), "{method:?}: no echo request to {addr} within 10 s"),
        }
        // A command ping still runs its child after one echo of a hundred.
        let needle = format!("\0{addr}\0");
        let children = ping_children_with(needle.as_bytes());
        if method == PingMethod::Command {
            assert!(!children.is_empty(), "the echo was seen but no ping child of ours runs");
        }
        let cancelled_at = std::time::Instant::now();
        cancel.cancel();
        let r = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .unwrap_or_else(|_| panic!("{method:?} ping ignored cancellation"))
            .unwrap();
        expect_cancelled(method, r);
        assert!(cancelled_at.elapsed() < Duration::from_secs(10), "took {:?}", cancelled_at.elapsed());
        let gone = async {
            for _ in 0..400 {
                if ping_children_with(needle.as_bytes()).is_empty() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            false
        };
        assert!(gone.await, "ping children {children:?} outlived the cancelled call");
    }

    #[tokio::test]
    async fn cancellation_stops_socket_ping() {
        // An address no other test pings, so the echo seen is this test's.
        assert_cancel_is_prompt(PingMethod::Socket, Ipv4Addr::new(127, 0, 97, 201)).await;
    }

    #[tokio::test]
    async fn cancellation_stops_command_ping() {
        assert_cancel_is_prompt(PingMethod::Command, Ipv4Addr::new(127, 0, 97, 202)).await;
    }

    /// Live children of this process running `ping` with `needle` in their argv.
    fn ping_children_with(needle: &[u8]) -> Vec<u32> {
        let me = std::process::id().to_string();
        let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                // "<pid> (<comm>) <state> <ppid> …"; a killed child not yet reaped has no argv.
                let Some((comm, rest)) = stat.split_once(") ") else { return false };
                let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                comm.ends_with("(ping")
                    && rest.split_whitespace().nth(1) == Some(me.as_str())
                    && argv.windows(needle.len()).any(|w| w == needle)
            })
            .collect()
    }

    /// Children of this process running `ping -c 97` (a count no other test uses).
    fn ping_children() -> Vec<u32> {
        ping_children_with(b"-c\x0097\x00")
    }

    #[tokio::test]
    async fn dropping_a_command_ping_kills_the_child() {
        // The runner's hard time limit drops the action's future: the `ping`
        // child must not outlive it.
        let task = tokio::spawn(async {
            let cancel = CancellationToken::new();
            ping(LOCALHOST, &quick(PingMethod::Command, 97), &cancel).await
        });
        let poll = |want_running: bool| async move {
            for _ in 0..200 {
                if ping_children().is_empty() != want_running {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            false
        };
        assert!(poll(true).await, "the ping child was never seen running");
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        assert!(poll(false).await, "ping children left behind: {:?}", ping_children());
    }

    /// Clears CAP_NET_RAW from this thread's effective set until dropped, so a
    /// root test run sees what an unprivileged service sees: raw sockets give
    /// EPERM. Capabilities are per thread, and `#[tokio::test]` runs the whole
    /// test (socket creation and process spawn included) on the test's thread,
    /// so other tests are unaffected. It stays in the permitted set, which is
    /// what lets the guard restore it.
    struct WithoutNetRaw {
        saved: [CapData; 2],
    }

    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: i32,
    }

    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }

    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    const CAP_NET_RAW: u32 = 13;

    fn capset(data: &[CapData; 2]) -> io::Result<()> {
        let mut hdr = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
        // SAFETY: header and two data structs laid out as capset(2) requires.
        let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) };
        if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    }

    impl WithoutNetRaw {
        fn new() -> WithoutNetRaw {
            let mut hdr = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
            let mut saved = [CapData::default(); 2];
            // SAFETY: as in `capset`, with a writable data array.
            let rc = unsafe { libc::syscall(libc::SYS_capget, &mut hdr, saved.as_mut_ptr()) };
            assert_eq!(rc, 0, "capget: {}", io::Error::last_os_error());
            let mut reduced = saved;
            reduced[0].effective &= !(1 << CAP_NET_RAW);
            capset(&reduced).expect("dropping CAP_NET_RAW");
            WithoutNetRaw { saved }
        }
    }

    impl Drop for WithoutNetRaw {
        fn drop(&mut self) {
            let _ = capset(&self.saved);
        }
    }

    /// Whether this process's group may open datagram ICMP sockets; decides which
    /// path Auto must take once raw sockets are gone.
    fn dgram_icmp_allowed() -> bool {
        let range =
            std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").expect("reading net.ipv4.ping_group_range");
        let mut it = range.split_whitespace().map(|v| v.parse::<u32>());
        let (Some(Ok(lo)), Some(Ok(hi))) = (it.next(), it.next()) else {
            panic!("unreadable ping_group_range {range:?}");
        };
        // SAFETY: getegid has no preconditions.
        let gid = unsafe { libc::getegid() };
        (lo..=hi).contains(&gid)
    }

    /// The deployment case from the issue: no CAP_NET_RAW and, on stock Debian,
    /// `ping_group_range = 1 0`. Auto must still ping, through /usr/bin/ping.
    #[tokio::test]
    async fn auto_falls_back_to_command_without_privilege() {
        let _unprivileged = WithoutNetRaw::new();
        let expected = if dgram_icmp_allowed() { PingMethodUsed::Socket } else { PingMethodUsed::Command };
        let r = expect_command_ok(ping(LOCALHOST, &quick(PingMethod::Auto, 2), &CancellationToken::new()).await);
        assert_eq!((r.method_used, r.received), (expected, 2));
    }

    #[tokio::test]
    async fn socket_without_privilege_is_a_permission_error_with_hint() {
        let _unprivileged = WithoutNetRaw::new();
        let r = ping(LOCALHOST, &quick(PingMethod::Socket, 1), &CancellationToken::new()).await;
        if dgram_icmp_allowed() {
            assert_eq!(r.expect("datagram ICMP is allowed").received, 1);
        } else {
            let err = r.unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, PingError::Permission { .. }), "{err:?}");
            assert!(
                text.contains("ping_group_range") && text.contains("CAP_NET_RAW") && text.contains("iputils-ping"),
                "{text}"
            );
        }
    }

    #[tokio::test]
    async fn rejects_zero_count() {
        let err = ping(LOCALHOST, &quick(PingMethod::Socket, 0), &CancellationToken::new()).await.unwrap_err();
        assert!(matches!(err, PingError::InvalidSettings(_)), "{err:?}");
    }
}
