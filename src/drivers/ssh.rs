//! Reboot a host by asking it over ssh (russh client, no `ssh` binary).
//!
//! # Mechanism
//!
//! 1. Validate the host name (host/IP characters only), read the private key
//!    (a passphrase-less key; its content is a secret and never reaches a log or
//!    an error message).
//! 2. Connect within `connect_timeout`: TCP, key exchange, host-key check against
//!    a known_hosts file ([`HostKeyPolicy`]), public-key authentication.
//! 3. Run `reboot` on a session channel within `command_timeout`. A zero exit
//!    status, or the connection/channel ending without any exit status (the host
//!    went down under us), is success.
//! 4. A non-zero exit runs `shutdown -f -t 3 -r` (the Windows form) on a new
//!    channel with the same rules. Both non-zero → [`SshError::CommandsFailed`].
//!
//! # Sent, but unconfirmed
//!
//! Once the `exec` request has been handed to the connection, the host may have
//! acted on it: a host whose network stops mid-shutdown goes silent (no FIN, no
//! RST, no exit status). That is not a failure to report as one, or the reboot
//! chain would hard-reset a host in the middle of its own reboot; it is a request
//! **sent and unconfirmed** ([`SessionEnd::Silent`]), and the chain's proof (down,
//! then up) decides. Silence is measured on the wire: every byte read from the
//! socket counts as the host answering, and keepalives (every third of
//! [`SshTarget::silence`]) make a live sshd answer while a command runs, so a
//! command that merely hangs on a live host still ends in
//! [`SshError::Timeout`] after `command_timeout`. Failures before the request
//! (connect, key exchange, host key, authentication, opening the channel) stay
//! failures: nothing was asked of the host.
//!
//! The original roller disabled host-key checking (`StrictHostKeyChecking=no`,
//! `UserKnownHostsFile=/dev/null`) and treated a dropped connection as a failure,
//! which escalated to IPMI while the host was already rebooting. Here keys are
//! pinned and a drop or silence after `exec` counts as the request having been sent.
//!
//! Only the two fixed command strings are ever sent; no name from a request or
//! the inventory is ever part of a command, and nothing goes through a local shell.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use russh::keys::{PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Sig};
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

mod authenticate;

pub use authenticate::{HostKeySeen, authenticate};

/// The commands tried, in order. The second is the Windows form (OpenSSH for
/// Windows hosts in the original fleet).
pub const COMMANDS: [&str; 2] = ["reboot", "shutdown -f -t 3 -r"];

/// How much of a command's stdout+stderr is kept: enough for a diagnosis, bounded
/// so a chatty or hostile host cannot grow a job record.
pub const OUTPUT_LIMIT: usize = 4096;

/// How long to wait for an exit status after the remote side's EOF.
const EOF_GRACE: Duration = Duration::from_secs(3);

/// How the server's host key is checked. Both variants name an OpenSSH-format
/// known_hosts file (`[host]:port` for non-22 ports, hashed names supported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Only keys already in the file are trusted: an unknown or changed key is refused.
    KnownHosts(PathBuf),
    /// Trust on first use: a host with no key in the file gets its key recorded;
    /// a changed key is refused.
    AcceptNew(PathBuf),
}

impl HostKeyPolicy {
    pub fn path(&self) -> &Path {
        match self {
            HostKeyPolicy::KnownHosts(p) | HostKeyPolicy::AcceptNew(p) => p,
        }
    }
}

/// One host to reboot over ssh.
#[derive(Debug, Clone)]
pub struct SshTarget {
    /// Host name or IP address (checked by [`validate_host`] before use).
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Private key file without a passphrase. Its content is a secret.
    pub key_file: PathBuf,
    pub host_keys: HostKeyPolicy,
    /// Bounds TCP connect, key exchange and authentication together.
    pub connect_timeout: Duration,
    /// Bounds each command, from opening its channel to its exit.
    pub command_timeout: Duration,
    /// After the command was sent, this long without a byte from the host means the
    /// session went silent: the request is reported sent but unconfirmed. Keepalives
    /// go out every third of it. Only shorter than `command_timeout` has any effect.
    pub silence: Duration,
}

impl SshTarget {
    /// A target on port 22 with 10 s to connect, 30 s per command and silence after 10 s.
    pub fn new(
        host: impl Into<String>,
        user: impl Into<String>,
        key_file: impl Into<PathBuf>,
        host_keys: HostKeyPolicy,
    ) -> Result<SshTarget, SshError> {
        let host = host.into();
        validate_host(&host)?;
        Ok(SshTarget {
            host,
            port: 22,
            user: user.into(),
            key_file: key_file.into(),
            host_keys,
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(30),
            silence: Duration::from_secs(10),
        })
    }
}

/// What the host accepted, or was sent without confirming.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RebootRequest {
    /// The command that worked (one of [`COMMANDS`]).
    pub command: &'static str,
    /// `None` when the session ended without an exit status: the host went down
    /// while running the command, or went silent ([`RebootRequest::session`] says which).
    pub exit_status: Option<u32>,
    /// Its stdout and stderr, interleaved, lossy UTF-8, at most [`OUTPUT_LIMIT`] bytes.
    pub output: String,
    pub session: SessionEnd,
}

/// How the session of an accepted (or sent) command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEnd {
    /// The command reported exit status 0.
    Exited,
    /// It was killed by a signal a shutdown sends to every process (TERM, HUP, KILL).
    Signalled,
    /// The channel or connection closed without an exit status: the host went down under us.
    Closed,
    /// Nothing more came from the host (no exit status, no close) for
    /// [`SshTarget::silence`] after the request was sent: sent, unconfirmed.
    Silent,
}

impl SessionEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionEnd::Exited => "exited",
            SessionEnd::Signalled => "signalled",
            SessionEnd::Closed => "closed",
            SessionEnd::Silent => "silent",
        }
    }
}

/// One command that did not work.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CommandFailure {
    pub command: &'static str,
    /// `None` when the command died of a signal that is not part of a shutdown.
    pub exit_status: Option<u32>,
    pub output: String,
}

impl std::fmt::Display for CommandFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.exit_status {
            Some(s) => write!(f, "`{}` exited {s}", self.command)?,
            None => write!(f, "`{}` ended without an exit status", self.command)?,
        }
        let out = self.output.trim();
        if !out.is_empty() {
            write!(f, " ({out})")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("invalid ssh host {0:?}: only letters, digits, '.', '-', '_' and ':' are allowed")]
    InvalidHost(String),
    /// The private key could not be read or parsed. Names the file, never its content.
    #[error("ssh key file {}: {message}", path.display())]
    KeyFile { path: PathBuf, message: String },
    /// The known_hosts file could not be read, parsed or written.
    #[error("known_hosts file {}: {message}", path.display())]
    KnownHostsFile { path: PathBuf, message: String },
    #[error("host key of {host}:{port} ({fingerprint}) is not in {}; add it or use accept-new", path.display())]
    HostKeyUnknown { host: String, port: u16, fingerprint: String, path: PathBuf },
    #[error(
        "host key of {host}:{port} CHANGED ({fingerprint} does not match line {line} of {}); refusing to connect",
        path.display()
    )]
    HostKeyChanged { host: String, port: u16, fingerprint: String, path: PathBuf, line: usize },
    #[error("{host}:{port} refused the key in {} for user {user}", key_file.display())]
    AuthFailed { host: String, port: u16, user: String, key_file: PathBuf },
    #[error("{host}:{port}: {phase} timed out after {after:?}")]
    Timeout { host: String, port: u16, phase: &'static str, after: Duration },
    #[error("cannot connect to {host}:{port}: {source}")]
    Connect { host: String, port: u16, source: std::io::Error },
    /// The ssh session failed in a way none of the other variants describes.
    #[error("{host}:{port}: ssh failed: {message}")]
    Protocol { host: String, port: u16, message: String },
    #[error("{host}: all ssh reboot commands failed: {}", join_failures(failures))]
    CommandsFailed { host: String, failures: Vec<CommandFailure> },
    #[error("ssh reboot cancelled")]
    Cancelled,
}

fn join_failures(failures: &[CommandFailure]) -> String {
    failures.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("; ")
}

/// Host names and IP literals only: nothing that could be read as an option or
/// carry a user, port or path. `host` reaches the TCP resolver and known_hosts
/// matching, never a command.
pub fn validate_host(host: &str) -> Result<(), SshError> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && !host.starts_with('-')
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    if ok { Ok(()) } else { Err(SshError::InvalidHost(host.to_string())) }
}

/// Ask `target` to reboot. See the module documentation for the rules.
pub async fn reboot(target: &SshTarget, cancel: &CancellationToken) -> Result<RebootRequest, SshError> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(SshError::Cancelled),
        r = reboot_inner(target) => r,
    }
}

async fn reboot_inner(t: &SshTarget) -> Result<RebootRequest, SshError> {
    validate_host(&t.host)?;
    let key = load_key(&t.key_file).await?;
    let heard = Arc::new(Heard(Mutex::new(Instant::now())));
    let session = match tokio::time::timeout(t.connect_timeout, connect(t, key, heard.clone(), None)).await {
        Ok(r) => r?,
        Err(_) => return Err(t.timeout("connect", t.connect_timeout)),
    };

    let mut failures = Vec::new();
    for command in COMMANDS {
        let outcome = match tokio::time::timeout(t.command_timeout, run(t, &session, command, &heard)).await {
            Ok(r) => r?,
            Err(_) => return Err(t.timeout(command, t.command_timeout)),
        };
        match outcome {
            Outcome::Done(req) => {
                tracing::info!(host = %t.host, port = t.port, command, exit_status = ?req.exit_status,
                    session = req.session.as_str(), "ssh reboot accepted");
                // Polite goodbye, bounded: the host may already be gone.
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    session.disconnect(russh::Disconnect::ByApplication, "", "en"),
                )
                .await;
                return Ok(req);
            }
            Outcome::Failed(f) => {
                tracing::warn!(host = %t.host, port = t.port, command, exit_status = ?f.exit_status, "ssh reboot command failed");
                failures.push(f);
            }
        }
    }
    Err(SshError::CommandsFailed { host: t.host.clone(), failures })
}

impl SshTarget {
    fn timeout(&self, phase: &'static str, after: Duration) -> SshError {
        SshError::Timeout { host: self.host.clone(), port: self.port, phase, after }
    }

    fn protocol(&self, e: russh::Error) -> SshError {
        SshError::Protocol { host: self.host.clone(), port: self.port, message: e.to_string() }
    }
}

async fn load_key(path: &Path) -> Result<russh::keys::PrivateKey, SshError> {
    let err = |message: String| SshError::KeyFile { path: path.to_path_buf(), message };
    // Held as a secret so it is zeroed on drop and never Debug-printed.
    let text = SecretString::from(tokio::fs::read_to_string(path).await.map_err(|e| err(e.to_string()))?);
    decode_key(path, &text)
}

/// The private key in `text` (read from `path`, which only names it in errors), as
/// `ssh_reboot` needs it: without a passphrase. Pure, so `roller inventory check` finds
/// an unusable key with the driver's own rules before a job does.
pub fn decode_key(path: &Path, text: &SecretString) -> Result<russh::keys::PrivateKey, SshError> {
    let err = |message: String| SshError::KeyFile { path: path.to_path_buf(), message };
    russh::keys::decode_secret_key(text.expose_secret(), None).map_err(|e| match e {
        russh::keys::Error::KeyIsEncrypted => err("the key has a passphrase; roller needs one without".into()),
        // russh's key errors describe the format problem, never the bytes.
        other => err(format!("cannot parse the private key: {other}")),
    })
}

/// How many keys `known_hosts` records for `host:port`, looked up as the host-key check
/// looks them up (`[host]:port` off port 22, hashed names included). Reads the file and
/// connects to nothing; a file that cannot be opened records none, as in the check.
/// `roller inventory check` uses it to find hosts `ssh_reboot` could never trust.
pub fn recorded_host_keys(host: &str, port: u16, known_hosts: &Path) -> Result<usize, SshError> {
    russh::keys::known_hosts::known_host_keys_path(host, port, known_hosts)
        .map(|keys| keys.len())
        .map_err(|e| SshError::KnownHostsFile { path: known_hosts.to_path_buf(), message: e.to_string() })
}

/// The handler's error: ours (host-key verdicts) or russh's.
#[derive(Debug)]
enum HandlerError {
    Ours(SshError),
    Russh(russh::Error),
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Russh(e)
    }
}

struct Client {
    host: String,
    port: u16,
    policy: HostKeyPolicy,
    /// `Some`: a check that writes nothing: an accept-new key is noted here (its
    /// fingerprint) instead of being recorded.
    dry: Option<Arc<Mutex<Option<String>>>>,
}

impl russh::client::Handler for Client {
    type Error = HandlerError;

    async fn check_server_key(&mut self, server_key: &PublicKeyOrCertificate) -> Result<bool, HandlerError> {
        match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => self.check_key(key).map_err(HandlerError::Ours),
            // No certificate authorities configured: a host certificate is not a pinned key.
            PublicKeyOrCertificate::Certificate(_) => Err(HandlerError::Ours(SshError::HostKeyUnknown {
                host: self.host.clone(),
                port: self.port,
                fingerprint: "a host certificate".into(),
                path: self.policy.path().to_path_buf(),
            })),
        }
    }
}

impl Client {
    /// known_hosts files are small; reading them inline in the handshake is fine.
    fn check_key(&self, key: &PublicKey) -> Result<bool, SshError> {
        use russh::keys::known_hosts::{check_known_hosts_path, known_host_keys_path, learn_known_hosts_path};
        let path = self.policy.path();
        let fingerprint = key.fingerprint(Default::default()).to_string();
        let file_err =
            |e: russh::keys::Error| SshError::KnownHostsFile { path: path.to_path_buf(), message: e.to_string() };
        match check_known_hosts_path(&self.host, self.port, key, path) {
            Ok(true) => Ok(true),
            Err(russh::keys::Error::KeyChanged { line }) => Err(SshError::HostKeyChanged {
                host: self.host.clone(),
                port: self.port,
                fingerprint,
                path: path.to_path_buf(),
                line,
            }),
            Err(e) => Err(file_err(e)),
            Ok(false) => {
                let unknown = || SshError::HostKeyUnknown {
                    host: self.host.clone(),
                    port: self.port,
                    fingerprint: fingerprint.clone(),
                    path: path.to_path_buf(),
                };
                let HostKeyPolicy::AcceptNew(_) = self.policy else { return Err(unknown()) };
                // Trust on first use only when nothing at all is recorded for the
                // host: a recorded key of another algorithm means we know this host
                // by a different key, and silently adding a second one would defeat
                // the pin.
                if !known_host_keys_path(&self.host, self.port, path).map_err(file_err)?.is_empty() {
                    return Err(unknown());
                }
                if let Some(dry) = &self.dry {
                    *dry.lock().unwrap_or_else(|p| p.into_inner()) = Some(fingerprint);
                    return Ok(true);
                }
                learn_known_hosts_path(&self.host, self.port, key, path).map_err(file_err)?;
                tracing::warn!(host = %self.host, port = self.port, %fingerprint, file = %path.display(),
                    "ssh host key recorded on first use");
                Ok(true)
            }
        }
    }
}

/// When the host last sent anything at all (keepalive answers included).
struct Heard(Mutex<Instant>);

impl Heard {
    fn now(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn since(&self) -> Duration {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).elapsed()
    }

    /// Completes once nothing has come from the host for `limit`.
    async fn silent_for(&self, limit: Duration) {
        loop {
            let quiet = self.since();
            if quiet >= limit {
                return;
            }
            tokio::time::sleep(limit - quiet).await;
        }
    }
}

/// The TCP stream, noting in [`Heard`] every read that brought bytes.
struct Watched {
    inner: TcpStream,
    heard: Arc<Heard>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.heard.now();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn connect(
    t: &SshTarget,
    key: russh::keys::PrivateKey,
    heard: Arc<Heard>,
    dry: Option<Arc<Mutex<Option<String>>>>,
) -> Result<russh::client::Handle<Client>, SshError> {
    let connect_err = |source| SshError::Connect { host: t.host.clone(), port: t.port, source };
    let stream = TcpStream::connect((t.host.as_str(), t.port)).await.map_err(connect_err)?;
    let _ = stream.set_nodelay(true);
    let config = Arc::new(russh::client::Config {
        // A host that stops answering mid-session (it is rebooting) must not hold us
        // for longer than a command may take; `run` decides about silence sooner.
        inactivity_timeout: Some(t.command_timeout),
        // A live sshd answers these while a command runs, so silence means the host
        // went away rather than a quiet command. `run` judges the silence itself
        // (keepalive_max 0: russh never closes the session over it).
        keepalive_interval: Some((t.silence / 3).max(Duration::from_millis(100))),
        keepalive_max: 0,
        ..Default::default()
    });
    let handler = Client { host: t.host.clone(), port: t.port, policy: t.host_keys.clone(), dry };
    let stream = Watched { inner: stream, heard };
    let mut session = russh::client::connect_stream(config, stream, handler).await.map_err(|e| match e {
        HandlerError::Ours(e) => e,
        HandlerError::Russh(russh::Error::IO(e)) => connect_err(e),
        HandlerError::Russh(e) => t.protocol(e),
    })?;

    // RSA keys need a signature hash the server accepts; other keys ignore it.
    let hash = if key.algorithm().is_rsa() {
        session.best_supported_rsa_hash().await.map_err(|e| t.protocol(e))?.flatten()
    } else {
        None
    };
    let auth = session
        .authenticate_publickey(t.user.clone(), PrivateKeyWithHashAlg::new(Arc::new(key), hash))
        .await
        .map_err(|e| t.protocol(e))?;
    if !auth.success() {
        return Err(SshError::AuthFailed {
            host: t.host.clone(),
            port: t.port,
            user: t.user.clone(),
            key_file: t.key_file.clone(),
        });
    }
    Ok(session)
}

enum Outcome {
    Done(RebootRequest),
    Failed(CommandFailure),
}

/// Run one fixed command and classify how it ended.
async fn run(
    t: &SshTarget,
    session: &russh::client::Handle<Client>,
    command: &'static str,
    heard: &Heard,
) -> Result<Outcome, SshError> {
    let mut channel = session.channel_open_session().await.map_err(|e| t.protocol(e))?;
    // From here on the host may act on the command: silence no longer means
    // "nothing was asked" (module docs, "Sent, but unconfirmed").
    channel.exec(true, command).await.map_err(|e| t.protocol(e))?;

    let mut output = Vec::new();
    let mut exit_status = None;
    let mut exit_signal = None;
    let mut refused = false;
    let mut eof = false;
    let mut silent = false;
    loop {
        // After EOF a healthy server sends exit-status and close at once; a host
        // that is powering off may send nothing more and never close the TCP
        // connection, so EOF plus a short silence counts as the connection dropping.
        let next = async {
            if eof {
                tokio::time::timeout(EOF_GRACE, channel.wait()).await.ok().flatten()
            } else {
                channel.wait().await
            }
        };
        let msg = tokio::select! {
            msg = next => msg,
            _ = heard.silent_for(t.silence) => {
                silent = true;
                break;
            }
        };
        // `None`: the channel (or the whole connection) is gone.
        let Some(msg) = msg else { break };
        match msg {
            ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. } => {
                let room = OUTPUT_LIMIT.saturating_sub(output.len());
                output.extend_from_slice(&data[..data.len().min(room)]);
            }
            ChannelMsg::ExitStatus { exit_status: s } => exit_status = Some(s),
            ChannelMsg::ExitSignal { signal_name, .. } => exit_signal = Some(signal_name),
            ChannelMsg::Failure => refused = true,
            ChannelMsg::Eof => eof = true,
            ChannelMsg::Close => break,
            _ => {}
        }
        if refused {
            break;
        }
    }
    let output = String::from_utf8_lossy(&output).into_owned();

    if refused {
        // The server would not run it at all: not the host going down.
        return Ok(Outcome::Failed(CommandFailure { command, exit_status: None, output }));
    }
    let done =
        |exit_status, session| Outcome::Done(RebootRequest { command, exit_status, output: output.clone(), session });
    Ok(match (exit_status, exit_signal) {
        (Some(0), _) => done(Some(0), SessionEnd::Exited),
        (Some(s), _) => Outcome::Failed(CommandFailure { command, exit_status: Some(s), output }),
        // Killed by what a shutdown sends to every process: the host is going down.
        (None, Some(Sig::TERM | Sig::HUP | Sig::KILL)) => done(None, SessionEnd::Signalled),
        (None, None) if silent => done(None, SessionEnd::Silent),
        (None, None) => done(None, SessionEnd::Closed),
        (None, Some(sig)) => {
            let output = format!("{output}[killed by signal {sig:?}]");
            Outcome::Failed(CommandFailure { command, exit_status: None, output })
        }
    })
}
