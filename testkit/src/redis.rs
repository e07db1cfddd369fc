//! A throwaway `redis-server`: on a free loopback port (never the machine's 6379), with its
//! files in a directory of its own, killed on drop. Optionally persistent (an append-only
//! file), restartable on the same port, or three of them joined into a Redis Cluster.
//! Or serving TLS only (`--port 0 --tls-port <free>`), with the certificates a test made
//! (`crate::tls`), optionally demanding client certificates and loading an ACL file.
//! Plus the smallest RESP client, for callers that poll a counter and must not spawn a
//! `redis-cli` per look (the benchmarks).
//!
//! Synchronous on purpose: tests call it from blocking code and from async tests alike
//! (`block_in_place` where a runtime must keep running), and the benchmark is a plain binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a starting server may take to answer PING: generous, for a loaded CI box.
const START_LIMIT: Duration = Duration::from_secs(10);

/// When an append-only file is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// After every write: a crash loses nothing the server acknowledged.
    Always,
    /// Once a second, as roller's README asks for production.
    EverySec,
}

/// Where the server keeps its files.
enum Dir {
    Own(tempfile::TempDir),
    Given(PathBuf),
}

impl Dir {
    fn path(&self) -> &Path {
        match self {
            Dir::Own(t) => t.path(),
            Dir::Given(p) => p,
        }
    }
}

/// How to start a [`RedisServer`]; [`RedisServer::start`] and friends cover the usual cases.
#[derive(Default)]
pub struct RedisBuilder {
    aof: Option<Fsync>,
    extra: Vec<String>,
    dir: Option<PathBuf>,
    tls: Option<Tls>,
    cli_user: Option<(String, String)>,
}

/// A TLS-only server: its certificate and key, the CA its clients' certificates must chain
/// to, whether it asks for them, and the client certificate `redis-cli` presents.
#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    pub auth_clients: AuthClients,
    /// What the harness's own `redis-cli` presents (needed when clients must have one).
    pub cli_cert: Option<(PathBuf, PathBuf)>,
}

/// `--tls-auth-clients`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthClients {
    /// A client without a certificate signed by the CA is refused.
    Yes,
    /// A certificate is checked if given; none is fine.
    Optional,
    No,
}

impl RedisBuilder {
    /// Keep everything in an append-only file, kept across [`RedisServer::restart`].
    /// Without it the server persists nothing: a restart starts empty.
    pub fn aof(mut self, fsync: Fsync) -> Self {
        self.aof = Some(fsync);
        self
    }

    /// More `redis-server` arguments (`--requirepass`, cluster settings…).
    pub fn args(mut self, args: &[&str]) -> Self {
        self.extra.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Serve TLS only: no plain port (`--port 0`), `--tls-port` on a free port.
    pub fn tls(mut self, tls: Tls) -> Self {
        let auth = match tls.auth_clients {
            AuthClients::Yes => "yes",
            AuthClients::Optional => "optional",
            AuthClients::No => "no",
        };
        for (flag, path) in
            [("--tls-cert-file", &tls.cert), ("--tls-key-file", &tls.key), ("--tls-ca-cert-file", &tls.ca)]
        {
            self.extra.extend([flag.to_string(), path.display().to_string()]);
        }
        self.extra.extend(["--tls-auth-clients".to_string(), auth.to_string()]);
        self.tls = Some(tls);
        self
    }

    /// Load users from an ACL file (`--aclfile`).
    pub fn aclfile(mut self, path: &Path) -> Self {
        self.extra.extend(["--aclfile".to_string(), path.display().to_string()]);
        self
    }

    /// The harness's `redis-cli` logs in as this ACL user (the password through
    /// `REDISCLI_AUTH`, never argv).
    pub fn cli_user(mut self, user: &str, password: &str) -> Self {
        self.cli_user = Some((user.to_string(), password.to_string()));
        self
    }

    /// Keep the files (log, append-only file) in `dir` instead of a temporary directory.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Start it and wait until it answers; panics with the reason otherwise.
    pub fn start(self) -> RedisServer {
        self.try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Start it and wait until it answers.
    pub fn try_start(self) -> Result<RedisServer, String> {
        let mut args: Vec<String> = ["--bind", "127.0.0.1", "--save", ""].map(String::from).to_vec();
        match self.aof {
            None => args.extend(["--appendonly", "no"].map(String::from)),
            Some(fsync) => {
                let every = if fsync == Fsync::Always { "always" } else { "everysec" };
                args.extend(["--appendonly", "yes", "--appendfsync", every].map(String::from));
            }
        }
        args.extend(self.extra);
        let dir = match self.dir {
            Some(d) => Dir::Given(d),
            None => Dir::Own(tempfile::tempdir().map_err(|e| format!("a temp dir for redis-server: {e}"))?),
        };
        let mut server = RedisServer { port: 0, dir, args, child: None, tls: self.tls, cli_user: self.cli_user };
        // A port picked free can be taken by a parallel test before redis-server binds
        // it; the server then exits, and another port is tried.
        for _ in 0..5 {
            server.port = free_port_not_6379();
            if server.spawn_and_wait()? {
                return Ok(server);
            }
        }
        Err("redis-server did not come up on any of 5 free ports".into())
    }
}

/// A `redis-server` child process; see the module docs.
pub struct RedisServer {
    port: u16,
    dir: Dir,
    /// Every argument but `--port` and `--dir`, the same for each (re)start.
    args: Vec<String>,
    child: Option<Child>,
    /// TLS only: `port` is the TLS port.
    tls: Option<Tls>,
    /// Who `redis-cli` logs in as.
    cli_user: Option<(String, String)>,
}

impl RedisServer {
    /// No persistence, default settings.
    pub fn start() -> RedisServer {
        Self::builder().start()
    }

    /// No persistence, plus these `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        Self::builder().args(extra).start()
    }

    /// Everything in an append-only file fsynced on every write, so a crash loses nothing
    /// it acknowledged and a [`restart`](Self::restart) finds it all again.
    pub fn start_persistent() -> RedisServer {
        Self::builder().aof(Fsync::Always).start()
    }

    pub fn builder() -> RedisBuilder {
        RedisBuilder::default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>` (`rediss://` when it serves TLS), no credentials.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Where its files are.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// SIGKILL it, like a crash, and reap it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kill it if it runs, then start it again on the same port with the same files: empty
    /// without an append-only file, everything acknowledged with one. Panics if it does
    /// not come back.
    pub fn restart(&mut self) {
        self.kill();
        match self.spawn_and_wait() {
            Ok(true) => {}
            Ok(false) => panic!("redis-server did not come back on port {}: {}", self.port, self.log()),
            Err(e) => panic!("{e}"),
        }
    }

    /// `redis-cli` against it (over TLS and as the `cli_user` when so started), stdout and
    /// stderr together.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(t) = &self.tls {
            cmd.arg("--tls").arg("--cacert").arg(&t.ca);
            if let Some((cert, key)) = &t.cli_cert {
                cmd.arg("--cert").arg(cert).arg("--key").arg(key);
            }
        }
        if let Some((user, password)) = &self.cli_user {
            cmd.args(["--user", user]).env("REDISCLI_AUTH", password);
        }
        run_cli(cmd.args(args))
    }

    /// A [`Client`] connection to it.
    pub fn client(&self) -> std::io::Result<Client> {
        Client::connect(self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("redis.log")).unwrap_or_default()
    }

    /// Start the process on `self.port`: `Ok(true)` once it answers PING, `Ok(false)` if
    /// it exited first (most likely the port was taken meanwhile), `Err` if it cannot run
    /// or stays silent.
    fn spawn_and_wait(&mut self) -> Result<bool, String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir().join("redis.log"))
            .map_err(|e| format!("redis-server's log in {}: {e}", self.dir().display()))?;
        let ports: Vec<String> = match &self.tls {
            None => vec!["--port".into(), self.port.to_string()],
            Some(_) => vec!["--port".into(), "0".into(), "--tls-port".into(), self.port.to_string()],
        };
        let child = Command::new("redis-server")
            .args(&ports)
            .arg("--dir")
            .arg(self.dir())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err("redis-server is not installed: apt-get install redis-server (cargo xtask deps)".into());
            }
            Err(e) => return Err(format!("cannot start redis-server: {e}")),
        };
        self.child = Some(child);
        let deadline = Instant::now() + START_LIMIT;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && c.try_wait().ok().flatten().is_some()
            {
                self.child = None;
                return Ok(false);
            }
            let up = match self.tls {
                None => answers_ping(self.port),
                // A TLS handshake and PING through redis-cli: NOAUTH from an ACL without
                // a default user counts too.
                Some(_) => {
                    let out = self.cli(&["ping"]);
                    out.contains("PONG") || out.contains("NOAUTH")
                }
            };
            if up {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        Err(format!(
            "redis-server on port {} did not answer PING within {START_LIMIT:?}; its log:\n{}",
            self.port,
            self.log()
        ))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port_not_6379() -> u16 {
    loop {
        let port = crate::free_port();
        if port != 6379 {
            return port;
        }
    }
}

/// Whether something on `port` answers PING like a Redis server: PONG, or NOAUTH from one
/// started with `--requirepass`.
fn answers_ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 64];
    s.write_all(b"PING\r\n").is_ok()
        && s.read(&mut buf).is_ok_and(|n| buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH"))
}

/// Run `redis-cli` against a loopback port; its stdout and stderr together.
pub fn cli(port: u16, args: &[&str]) -> String {
    run_cli(Command::new("redis-cli").args(["-h", "127.0.0.1", "-p", &port.to_string()]).args(args))
}

fn run_cli(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("redis-cli not runnable ({e}); apt-get install redis-server"));
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Masters on loopback, each a [`RedisServer`], slots spread by `redis-cli --cluster create`.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// `masters` nodes (at least 3, Redis's minimum), no replicas; returns once every node
    /// reports `cluster_state:ok`.
    pub fn start(masters: usize) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli --cluster create");
        assert!(out.status.success(), "cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
        let deadline = Instant::now() + Duration::from_secs(30);
        for n in &nodes {
            while !n.cli(&["cluster", "info"]).contains("cluster_state:ok") {
                assert!(Instant::now() < deadline, "cluster never reached cluster_state:ok");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        RedisCluster { nodes }
    }

    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Every node's URL, comma-separated (what roller's `REDIS_URL` takes for a cluster).
    pub fn url(&self) -> String {
        self.nodes.iter().map(RedisServer::url).collect::<Vec<_>>().join(",")
    }
}

/// The smallest RESP client: one connection, commands whose answer is an integer.
pub struct Client(BufReader<TcpStream>);

impl Client {
    pub fn connect(port: u16) -> std::io::Result<Client> {
        Ok(Client(BufReader::new(TcpStream::connect(("127.0.0.1", port))?)))
    }

    /// A command whose answer is an integer (`ZCARD`, `LLEN`, `DBSIZE`…).
    pub fn int(&mut self, args: &[&str]) -> Result<i64, String> {
        let mut cmd = format!("*{}\r\n", args.len());
        for a in args {
            cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.0.get_mut().write_all(cmd.as_bytes()).map_err(|e| e.to_string())?;
        let mut line = String::new();
        self.0.read_line(&mut line).map_err(|e| e.to_string())?;
        match line.strip_prefix(':') {
            Some(n) => n.trim().parse().map_err(|_| format!("not an integer: {line:?}")),
            None => Err(format!("redis answered {line:?} to {args:?}")),
        }
    }
}
