//! A DNS server on loopback: dnsmasq (Debian `dnsmasq-base`, which installs no
//! service) in a temp dir, answering from its own hosts file and CNAME list only.
//! It has no upstream and is local for `example`, so any other name under
//! `example`, and any single-label name, is NXDOMAIN at once instead of being
//! forwarded. Every query is logged, so tests can see which names roller asked for.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DNSMASQ: &str = "/usr/sbin/dnsmasq";
/// The name the readiness probe asks for.
const READY_PROBE: &str = "dnsmasq-ready.example";

pub struct Dnsmasq {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free for both UDP and TCP right now (dnsmasq serves both on one port).
fn free_udp_tcp_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

impl Dnsmasq {
    /// Serve `hosts` (`(address, name)`) and `cnames` (`(alias, target)`; the
    /// target must be one of `hosts`).
    pub fn start(hosts: &[(&str, &str)], cnames: &[(&str, &str)]) -> Dnsmasq {
        assert!(Path::new(DNSMASQ).exists(), "{DNSMASQ} is missing: apt-get install dnsmasq-base");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // dnsmasq drops to `nobody` after start and rereads the hosts file as that user.
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let hosts_text: String = hosts.iter().map(|(ip, name)| format!("{ip} {name}\n")).collect();
        std::fs::write(d.join("hosts"), hosts_text).unwrap();
        let port = free_udp_tcp_port();
        let mut cmd = Command::new(DNSMASQ);
        cmd.arg("--keep-in-foreground")
            .arg("--conf-file=/dev/null")
            .arg("--no-resolv")
            .arg("--no-hosts")
            .arg("--local=/example/")
            .arg("--domain-needed")
            .arg(format!("--addn-hosts={}", d.join("hosts").display()))
            .arg("--listen-address=127.0.0.1")
            .arg("--bind-interfaces")
            .arg(format!("--port={port}"))
            .arg(format!("--pid-file={}", d.join("dnsmasq.pid").display()))
            .arg(format!("--log-facility={}", d.join("dnsmasq.log").display()))
            .arg("--log-queries");
        for (alias, target) in cnames {
            cmd.arg(format!("--cname={alias},{target}"));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("dnsmasq.stderr")).unwrap())
            // Own process group, so a runner's group kill does not stop it mid-test.
            .process_group(0)
            .spawn()
            .expect("dnsmasq starts (apt-get install dnsmasq-base)");
        let mut server = Dnsmasq { dir, port, child };
        server.wait_ready();
        server
    }

    /// Until dnsmasq answers a query (NXDOMAIN will do: it is up). The probe
    /// asks for [`READY_PROBE`], which [`Dnsmasq::queried_names`] leaves out.
    fn wait_ready(&mut self) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(self.addr()).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let query = a_query(0x5eed, READY_PROBE);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("dnsmasq exited ({status}) before answering:\n{}", self.logs());
            }
            let mut buf = [0u8; 512];
            let answered = socket.send(&query).is_ok()
                && matches!(socket.recv(&mut buf), Ok(n) if n >= 12 && buf[..2] == query[..2]);
            if answered {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dnsmasq on port {} did not answer in 20 s:\n{}",
                self.port,
                self.logs()
            );
            // Nothing bound yet makes recv fail at once (ICMP port unreachable): pace the poll.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:<port>`, the form `ROLLER_DNS_SERVERS` takes.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The names queried so far, each once, in the order first asked.
    pub fn queried_names(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.path().join("dnsmasq.log")).unwrap_or_default();
        let mut names: Vec<String> = Vec::new();
        for line in log.lines() {
            // "… dnsmasq[pid]: query[A] box1.test.example from 127.0.0.1"
            let Some((_, rest)) = line.split_once(": query[") else { continue };
            let Some(name) = rest.split_whitespace().nth(1) else { continue };
            if name != READY_PROBE && !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
        names
    }

    pub fn logs(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!("--- dnsmasq.log\n{}\n--- dnsmasq.stderr\n{}", read("dnsmasq.log"), read("dnsmasq.stderr"))
    }
}

/// A minimal DNS query: one question, `name` IN A, recursion desired.
fn a_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}
