//! Chassis power, SEL and boot device over IPMI 2.0 (RMCP+), by running `ipmitool`.
//!
//! # Why a child process
//!
//! No Rust crate speaks Send Message bridging (HP Moonshot's `-B -T -b -t`) or
//! the SHA-256 cipher suites (17) newer BMCs insist on; ipmitool 1.8.19 does
//! both. So each call runs `/usr/bin/ipmitool` (a fixed list of paths, never a
//! `$PATH` lookup) with an argument vector, never a shell.
//!
//! # Secrets
//!
//! The password reaches the child only through its environment
//! (`IPMITOOL_PASSWORD`, read because of `-E`), never argv: argv is world-readable
//! in `/proc/<pid>/cmdline`. The environment is cleared first, so nothing of
//! ours leaks into the child, and [`IpmiTarget`]'s `Debug` and every
//! [`IpmiError`] message leave the password out.
//!
//! # Bounds
//!
//! `-N`/`-R` bound ipmitool's own retransmits; an outer deadline of
//! [`IpmiTarget::timeout`] bounds the whole call in case the tool hangs, and
//! `kill_on_drop` makes a timed-out, cancelled or dropped call take the child
//! with it.
//!
//! # Errors
//!
//! Unlike the original roller (its PR #83 swallowed every ipmitool failure and
//! let ping decide), failures are reported and classified:
//! wrong credentials ([`IpmiError::Auth`]), a BMC that never answers
//! ([`IpmiError::Unreachable`]), the outer deadline ([`IpmiError::Timeout`]),
//! and everything else with ipmitool's stderr ([`IpmiError::CommandFailed`]).
//! ipmitool prints the same "Unable to establish IPMI v2 / RMCP+ session" for a
//! wrong password and for silence, so calls that do not parse verbose-sensitive
//! output run with `-v`, whose extra stderr lines ("RAKP 2 HMAC is invalid",
//! "Get Auth Capabilities error") tell the two apart. `sel list` prints whole
//! records under `-v`, so it runs without it, and for it the elapsed time
//! decides: a BMC that never answered cannot fail before ipmitool's first
//! retransmit timeout.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use super::gate::Gates;

mod sel;
mod sol;

pub use self::sel::{SelEntry, parse_sel, sel_entries};
pub use self::sol::{CLEANUP as SOL_CLEANUP, ConsoleTail, SolEnd, SolWindow, console_tail, console_text};

/// Where ipmitool may live. Fixed so that nothing outside the deployment (a
/// request, an inherited `$PATH`) chooses which program gets the password.
const IPMITOOL_BINARIES: &[&str] = &["/usr/bin/ipmitool", "/usr/sbin/ipmitool", "/bin/ipmitool"];

/// IPMI 2.0 limits (user name 16 bytes, password 20); ipmitool refuses longer
/// ones itself, but only after starting, with a less useful message.
const MAX_USER_LEN: usize = 16;
const MAX_PASSWORD_LEN: usize = 20;

/// Session privilege requested with `-L`. Power control needs at least Operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Privilege {
    User,
    #[default]
    Operator,
    Administrator,
}

impl Privilege {
    fn as_arg(self) -> &'static str {
        match self {
            Privilege::User => "USER",
            Privilege::Operator => "OPERATOR",
            Privilege::Administrator => "ADMINISTRATOR",
        }
    }
}

/// The first hop of dual bridging: the IPMB channel and address of the
/// controller that forwards the request (on a Moonshot, the cartridge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transit {
    pub channel: u8,
    pub address: u8,
}

/// Where a bridged request ends up. With `transit: None` this is single
/// bridging (`-b -t`): the BMC forwards to the target itself. With a transit
/// hop it is dual bridging (`-B -T -b -t`), as HP Moonshot nodes need, e.g.
/// `Bridging::dual(0, 0x82, 7, 0x72)` for cartridge 1 node 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bridging {
    pub transit: Option<Transit>,
    pub target_channel: u8,
    pub target_address: u8,
}

impl Bridging {
    pub fn single(target_channel: u8, target_address: u8) -> Bridging {
        Bridging { transit: None, target_channel, target_address }
    }

    pub fn dual(transit_channel: u8, transit_address: u8, target_channel: u8, target_address: u8) -> Bridging {
        Bridging {
            transit: Some(Transit { channel: transit_channel, address: transit_address }),
            target_channel,
            target_address,
        }
    }
}

/// One BMC (or a node behind it, with [`Bridging`]) and how to talk to it.
#[derive(Clone)]
pub struct IpmiTarget {
    /// BMC host name or IP literal; validated before it reaches argv.
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: SecretString,
    /// RMCP+ cipher suite (`-C`). 17 (SHA-256) suits current BMCs; old ones
    /// need 3. 0 (no authentication) is always refused.
    pub cipher_suite: u8,
    pub privilege: Privilege,
    pub bridging: Option<Bridging>,
    /// Hard limit for one whole ipmitool call, retransmits included.
    pub timeout: Duration,
    /// ipmitool's retransmit count (`-R`).
    pub retries: u32,
    /// The per-device limits this call goes through: the process's [`Gates`], so every
    /// job's calls to one BMC share its slots and power-on turns.
    pub gate: Gates,
}

impl IpmiTarget {
    /// A target with the defaults for a real BMC: port 623, cipher suite 17,
    /// Operator privilege, no bridging, 20 s per call, 2 retries.
    pub fn new(host: impl Into<String>, user: impl Into<String>, password: SecretString) -> IpmiTarget {
        IpmiTarget {
            host: host.into(),
            port: 623,
            user: user.into(),
            password,
            cipher_suite: 17,
            privilege: Privilege::Operator,
            bridging: None,
            timeout: Duration::from_secs(20),
            retries: 2,
            gate: Gates::default(),
        }
    }

    /// Checks everything that will reach the child before any process starts.
    pub fn validate(&self) -> Result<(), IpmiError> {
        let invalid = |m: String| Err(IpmiError::InvalidTarget(m));
        if !valid_host(&self.host) {
            return invalid(format!("BMC address {:?} is neither a host name nor an IP literal", self.host));
        }
        if self.port == 0 {
            return invalid("port 0".into());
        }
        if self.user.is_empty() || self.user.len() > MAX_USER_LEN || self.user.chars().any(char::is_control) {
            return invalid(format!("user name must be 1 to {MAX_USER_LEN} bytes without control characters"));
        }
        let password = self.password.expose_secret();
        // A NUL cannot travel in an environment variable.
        if password.len() > MAX_PASSWORD_LEN || password.contains('\0') {
            return invalid(format!("password must be at most {MAX_PASSWORD_LEN} bytes without NUL"));
        }
        if self.cipher_suite == 0 {
            return invalid(
                "cipher suite 0 is refused: it skips authentication, so a BMC that offers it accepts any password"
                    .into(),
            );
        }
        if self.timeout < Duration::from_secs(1) {
            return invalid("timeout must be at least 1 s (ipmitool counts whole seconds)".into());
        }
        Ok(())
    }

    /// ipmitool's per-attempt timeout (`-N`, whole seconds): the call's budget
    /// shared among the attempts, so ipmitool usually gives up (with a
    /// classifiable message) before the outer deadline kills it.
    fn attempt_secs(&self) -> u64 {
        (self.timeout.as_secs() / (u64::from(self.retries) + 1)).max(1)
    }
}

impl fmt::Debug for IpmiTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpmiTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"[redacted]")
            .field("cipher_suite", &self.cipher_suite)
            .field("privilege", &self.privilege)
            .field("bridging", &self.bridging)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

/// Letters, digits, `.`, `-`, `:` (IPv6) and nothing that could start an
/// option; `[]`, `%` (zone ids), spaces and shell characters are all refused.
fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && !host.starts_with(['-', '.'])
        && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    On,
    Off,
    /// Off, then on after the BMC's interval.
    Cycle,
    /// Hard reset; the power stays on.
    Reset,
    /// ACPI soft shutdown, if the OS listens.
    Soft,
}

impl PowerAction {
    fn as_arg(self) -> &'static str {
        match self {
            PowerAction::On => "on",
            PowerAction::Off => "off",
            PowerAction::Cycle => "cycle",
            PowerAction::Reset => "reset",
            PowerAction::Soft => "soft",
        }
    }
}

/// Messages name the host, never the password (it is also scrubbed from the
/// stderr that [`IpmiError::CommandFailed`] carries).
#[derive(Debug, thiserror::Error)]
pub enum IpmiError {
    #[error("IPMI session to {host} refused: wrong user name or password ({detail})")]
    Auth { host: String, detail: String },
    #[error("ipmitool for {host} did not finish within {after:?} and was killed")]
    Timeout { host: String, after: Duration },
    #[error("BMC {host} unreachable: {detail}")]
    Unreachable { host: String, detail: String },
    #[error("ipmitool {command:?} for {host} failed ({status}): {stderr}")]
    CommandFailed { host: String, command: String, status: String, stderr: String },
    #[error(
        "ipmitool not found (looked for {}); install it (Debian: apt-get install ipmitool)",
        IPMITOOL_BINARIES.join(", ")
    )]
    ToolMissing,
    #[error("invalid IPMI target: {0}")]
    InvalidTarget(String),
    /// The BMC refuses Serial-over-LAN commands: it has none, or not for this user.
    #[error("BMC {host} offers no Serial-over-LAN ({detail})")]
    NoSol { host: String, detail: String },
    #[error("cancelled")]
    Cancelled,
}

/// The argument vector for one ipmitool call: options, then the command
/// `words`. Holds no secret (the password travels in the environment), so it
/// may be logged. Each option and its value are separate elements.
pub fn command_args(target: &IpmiTarget, words: &[&str]) -> Vec<String> {
    build_args(target, false, words)
}

fn build_args(target: &IpmiTarget, verbose: bool, words: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = Vec::with_capacity(24 + words.len());
    let mut opt = |o: &str, v: String| {
        args.push(o.to_string());
        args.push(v);
    };
    opt("-I", "lanplus".into());
    opt("-H", target.host.clone());
    opt("-p", target.port.to_string());
    opt("-U", target.user.clone());
    opt("-L", target.privilege.as_arg().into());
    opt("-C", target.cipher_suite.to_string());
    opt("-N", target.attempt_secs().to_string());
    opt("-R", target.retries.to_string());
    if let Some(b) = target.bridging {
        if let Some(t) = b.transit {
            opt("-B", t.channel.to_string());
            opt("-T", format!("{:#04x}", t.address));
        }
        opt("-b", b.target_channel.to_string());
        opt("-t", format!("{:#04x}", b.target_address));
    }
    args.push("-E".into());
    if verbose {
        args.push("-v".into());
    }
    args.extend(words.iter().map(|w| w.to_string()));
    args
}

/// `chassis power status`.
pub async fn power_status(target: &IpmiTarget, cancel: &CancellationToken) -> Result<PowerState, IpmiError> {
    let words = ["chassis", "power", "status"];
    let out = run(target, &words, true, cancel).await?;
    parse_power_status(&out).ok_or_else(|| IpmiError::CommandFailed {
        host: target.host.clone(),
        command: words.join(" "),
        status: "exit status 0".into(),
        stderr: format!("no \"Chassis Power is on/off\" in its output: {}", first_lines(&out, 4)),
    })
}

/// `chassis power on|off|cycle|reset|soft`. `Ok` means the BMC accepted the
/// request, not that the machine has reached the new state.
pub async fn power(target: &IpmiTarget, action: PowerAction, cancel: &CancellationToken) -> Result<(), IpmiError> {
    // A cycle ends in a power-on too.
    let power_on = matches!(action, PowerAction::On | PowerAction::Cycle);
    run_gated(target, &["chassis", "power", action.as_arg()], true, power_on, cancel).await.map(|_| ())
}

/// The BMC as the per-device limits know it (all nodes behind one chassis BMC share it).
fn gate_key(target: &IpmiTarget) -> String {
    format!("ipmi:{}:{}", target.host, target.port)
}

/// The last `last` SEL entries, one line each, as ipmitool prints them (`sel list last N`).
pub async fn sel_list(target: &IpmiTarget, last: u32, cancel: &CancellationToken) -> Result<Vec<String>, IpmiError> {
    if last == 0 {
        target.validate()?;
        return Ok(Vec::new());
    }
    let n = last.to_string();
    let out = run(target, &["sel", "list", "last", &n], false, cancel).await?;
    Ok(out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.eq_ignore_ascii_case("SEL has no entries"))
        .map(str::to_string)
        .collect())
}

/// `chassis bootdev pxe`: network boot on the next start (for reimaging).
pub async fn boot_pxe(target: &IpmiTarget, cancel: &CancellationToken) -> Result<(), IpmiError> {
    run(target, &["chassis", "bootdev", "pxe"], true, cancel).await.map(|_| ())
}

fn find_ipmitool() -> Option<PathBuf> {
    IPMITOOL_BINARIES.iter().map(Path::new).find(|p| p.is_file()).map(Path::to_path_buf)
}

/// Runs one ipmitool call and returns its stdout when it exits 0.
async fn run(
    target: &IpmiTarget,
    words: &[&str],
    verbose: bool,
    cancel: &CancellationToken,
) -> Result<String, IpmiError> {
    run_gated(target, words, verbose, false, cancel).await
}

/// [`run`], taking the device's power-on turn (after its slot, so the spacing holds
/// for the commands that actually go out) when the command powers something on.
async fn run_gated(
    target: &IpmiTarget,
    words: &[&str],
    verbose: bool,
    power_on: bool,
    cancel: &CancellationToken,
) -> Result<String, IpmiError> {
    target.validate()?;
    if cancel.is_cancelled() {
        return Err(IpmiError::Cancelled);
    }
    let program = find_ipmitool().ok_or(IpmiError::ToolMissing)?;
    // Held for the whole call: BMCs have few session slots.
    let _slot = target.gate.enter(&gate_key(target), cancel).await.ok_or(IpmiError::Cancelled)?;
    // Held until the BMC has answered (see `gate::PowerOnTurn`).
    let _turn = match power_on {
        true => Some(target.gate.power_on_turn(&gate_key(target), cancel).await.ok_or(IpmiError::Cancelled)?),
        false => None,
    };
    let args = build_args(target, verbose, words);
    tracing::debug!(program = %program.display(), ?args, "running ipmitool");
    let mut cmd = ipmitool(&program, target, &args);
    cmd.stdin(Stdio::null());
    let started = Instant::now();
    let child = cmd.spawn().map_err(|e| not_started(target, words, e))?;
    let output = tokio::select! {
        biased;
        _ = cancel.cancelled() => return Err(IpmiError::Cancelled),
        r = tokio::time::timeout(target.timeout, child.wait_with_output()) => match r {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => {
                return Err(IpmiError::CommandFailed {
                    host: target.host.clone(),
                    command: words.join(" "),
                    status: "lost".into(),
                    stderr: format!("waiting for ipmitool: {e}"),
                });
            }
            Err(_) => return Err(IpmiError::Timeout { host: target.host.clone(), after: target.timeout }),
        },
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        return Ok(stdout);
    }
    // Defence in depth: ipmitool is not known to echo the password, but should some
    // version do so, it must not reach an error message or a job result.
    let stderr = super::scrub(&String::from_utf8_lossy(&output.stderr), target.password.expose_secret(), STDERR_MAX);
    let status = match output.status.code() {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".into(),
    };
    let silent_long_enough = started.elapsed() >= Duration::from_secs(target.attempt_secs());
    Err(classify_failure(target, words, status, &stderr, silent_long_enough))
}

/// The ipmitool child for `args`, stdout and stderr piped: nothing of ours in its
/// environment but the password, and it dies with the call (dropped) or with roller.
fn ipmitool(program: &Path, target: &IpmiTarget, args: &[String]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    super::die_with_parent(&mut cmd);
    cmd.args(args)
        // Nothing of ours leaks into the child; C locale for parseable output.
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LANG", "C")
        .env("LC_ALL", "C")
        // -E reads it; IPMITOOL_PASSWORD wins over IPMI_PASSWORD per the man page.
        .env("IPMITOOL_PASSWORD", target.password.expose_secret())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Cancellation and timeouts drop the future; the child must not outlive it.
        .kill_on_drop(true);
    cmd
}

fn not_started(target: &IpmiTarget, words: &[&str], e: io::Error) -> IpmiError {
    if e.kind() == io::ErrorKind::NotFound {
        return IpmiError::ToolMissing;
    }
    IpmiError::CommandFailed {
        host: target.host.clone(),
        command: words.join(" "),
        status: "not started".into(),
        stderr: e.to_string(),
    }
}

/// ipmitool's stderr quoted in an error, at most this many characters (its
/// messages are a line or two; more is noise from a confused BMC).
const STDERR_MAX: usize = 2000;

/// Stderr lines `-v` adds on every call, whatever the outcome; they would only
/// bury the real message.
fn is_noise(line: &str) -> bool {
    const NOISE: &[&str] = &[
        "Loading IANA PEN Registry",
        "Get HPM.x Capabilities request failed",
        "Running Get VSO Capabilities",
        "Invalid completion code received: Insufficient privilege level",
        "Invalid completion code received: Invalid command",
        "Discovered IPMB address",
    ];
    NOISE.iter().any(|n| line.starts_with(n))
}

/// Stderr signs that the BMC never answered, or could not even be addressed.
const UNREACHABLE_SIGNS: &[&str] = &[
    "get auth capabilities error",
    "error issuing get channel authentication capabilities",
    "address lookup for",
    "could not open socket",
    "no response from remote controller",
    "network is unreachable",
    "no route to host",
];

/// Stderr signs that the BMC answered and refused the credentials.
const AUTH_SIGNS: &[&str] = &[
    "rakp 2 hmac is invalid",
    "rakp 2 message indicates an error",
    "rakp 4 message",
    "unauthorized name",
    "invalid role",
    "password is longer than",
];

const SESSION_FAILED: &[&str] = &["unable to establish ipmi v2 / rmcp+ session", "unable to establish lan session"];

/// `silent_long_enough`: the call lasted at least one retransmit timeout, as a
/// call to a silent BMC must, so a bare session failure is more likely silence
/// than a refusal (which comes back within one round trip).
fn classify_failure(
    target: &IpmiTarget,
    words: &[&str],
    status: String,
    stderr: &str,
    silent_long_enough: bool,
) -> IpmiError {
    let host = target.host.clone();
    let lower = stderr.to_ascii_lowercase();
    let detail = first_lines(&stderr.lines().filter(|l| !is_noise(l)).collect::<Vec<_>>().join("\n"), 4);
    if UNREACHABLE_SIGNS.iter().any(|s| lower.contains(s)) {
        return IpmiError::Unreachable { host, detail };
    }
    if AUTH_SIGNS.iter().any(|s| lower.contains(s)) {
        return IpmiError::Auth { host, detail };
    }
    if SESSION_FAILED.iter().any(|s| lower.contains(s)) {
        let known_other_cause = lower.contains("invalid authentication algorithm")
            || lower.contains("invalid integrity algorithm")
            || lower.contains("invalid confidentiality algorithm");
        if !known_other_cause {
            return if silent_long_enough {
                IpmiError::Unreachable { host, detail: format!("no answer ({detail})") }
            } else {
                IpmiError::Auth { host, detail }
            };
        }
    }
    let stderr = if detail.is_empty() { "no message on stderr".to_string() } else { detail };
    IpmiError::CommandFailed { host, command: words.join(" "), status, stderr }
}

fn parse_power_status(stdout: &str) -> Option<PowerState> {
    stdout.lines().find_map(|l| match l.trim().strip_prefix("Chassis Power is ")?.trim() {
        "on" => Some(PowerState::On),
        "off" => Some(PowerState::Off),
        _ => None,
    })
}

fn first_lines(s: &str, n: usize) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).take(n).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> IpmiTarget {
        IpmiTarget::new("bmc.example.net", "admin", SecretString::from("pw-123456"))
    }

    #[test]
    fn parses_power_status() {
        assert_eq!(parse_power_status("Chassis Power is on\n"), Some(PowerState::On));
        assert_eq!(parse_power_status("x\nChassis Power is off\n"), Some(PowerState::Off));
        assert_eq!(parse_power_status("Chassis Power is unknown\n"), None);
        assert_eq!(parse_power_status(""), None);
    }

    #[test]
    fn classifies_wrong_credentials_and_silence() {
        let t = target();
        let auth = "Loading IANA PEN Registry...\n> RAKP 2 HMAC is invalid\n\
                    Error: Unable to establish IPMI v2 / RMCP+ session\n";
        assert!(matches!(classify_failure(&t, &[], "1".into(), auth, false), IpmiError::Auth { .. }));
        let name = "RAKP 2 message indicates an error : unauthorized name\n\
                    Error: Unable to establish IPMI v2 / RMCP+ session\n";
        assert!(matches!(classify_failure(&t, &[], "1".into(), name, false), IpmiError::Auth { .. }));
        let silent = "Get Auth Capabilities error\nError issuing Get Channel Authentication Capabilities request\n\
                      Error: Unable to establish IPMI v2 / RMCP+ session\n";
        assert!(matches!(classify_failure(&t, &[], "1".into(), silent, false), IpmiError::Unreachable { .. }));
        let dns = "Address lookup for nonexistent.invalid failed\nCould not open socket!\n";
        assert!(matches!(classify_failure(&t, &[], "1".into(), dns, false), IpmiError::Unreachable { .. }));
        // Without -v: only the elapsed time tells them apart.
        let bare = "Error: Unable to establish IPMI v2 / RMCP+ session\n";
        assert!(matches!(classify_failure(&t, &[], "1".into(), bare, false), IpmiError::Auth { .. }));
        assert!(matches!(classify_failure(&t, &[], "1".into(), bare, true), IpmiError::Unreachable { .. }));
    }

    #[test]
    fn other_failures_keep_stderr_without_noise() {
        let t = target();
        let err = classify_failure(
            &t,
            &["chassis", "power", "status"],
            "exit status 1".into(),
            "Loading IANA PEN Registry...\nGet Chassis Power Status failed: Unspecified error\n",
            true,
        );
        match err {
            IpmiError::CommandFailed { stderr, command, .. } => {
                assert_eq!(stderr, "Get Chassis Power Status failed: Unspecified error");
                assert_eq!(command, "chassis power status");
            }
            other => panic!("expected CommandFailed, got {other:?}"),
        }
        let cipher = "Error in open session response message : invalid authentication algorithm\n\n\
                      Error: Unable to establish IPMI v2 / RMCP+ session\n";
        assert!(matches!(classify_failure(&t, &[], "1".into(), cipher, false), IpmiError::CommandFailed { .. }));
    }

    #[test]
    fn scrubs_the_password() {
        assert_eq!(super::super::scrub("bad pw-123456 here", "pw-123456", STDERR_MAX), "bad [redacted] here");
        assert_eq!(super::super::scrub("x", "", STDERR_MAX), "x");
    }

    #[test]
    fn validates_hosts() {
        for ok in ["bmc1", "bmc-1.mdc1.mozilla.com", "10.0.0.1", "fe80::1", "::1"] {
            assert!(valid_host(ok), "{ok}");
        }
        for bad in ["", "-oProxyCommand", ".x", "a b", "a;b", "$(x)", "[::1]", "fe80::1%eth0", "a/b"] {
            assert!(!valid_host(bad), "{bad}");
        }
    }

    #[test]
    fn attempt_timeout_shares_the_budget() {
        let mut t = target();
        assert_eq!(t.attempt_secs(), 6);
        t.timeout = Duration::from_secs(3);
        t.retries = 5;
        assert_eq!(t.attempt_secs(), 1);
    }
}
