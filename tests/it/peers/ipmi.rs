//! A real IPMI 2.0 BMC on loopback: OpenIPMI's `ipmi_sim` with one LAN channel,
//! user 2 "admin", a SEL holding one entry, and power simulated by a
//! `chassis_control` hook script that keeps the power bit in a file and logs
//! every `set` it receives, so tests observe what the BMC was asked to do, not
//! merely that ipmitool exited 0. With [`IpmiSim::with_console`] it also serves
//! Serial-over-LAN from a scripted console ([`Console`]) and holds more SEL entries.

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const IPMI_SIM: &str = "/usr/bin/ipmi_sim";
const IPMITOOL: &str = "/usr/bin/ipmitool";
const INSTALL_HINT: &str = "apt-get install openipmi ipmitool";

pub const USER: &str = "admin";
pub const PASSWORD: &str = "s3cret-ipmi-7Qz";

/// The hook ipmi_sim runs as `chassisctl get <key>…` or `chassisctl set <key> <value>…`.
/// It finds its files next to itself (`dirname "$0"`), so nothing is
/// interpolated into it, and it only ever echoes a fixed key set back.
const HOOK: &str = r#"#!/bin/sh
dir=$(dirname "$0")
case "$1" in
get)
    shift
    for key in "$@"; do
        case "$key" in
        power) echo "power:$(cat "$dir/power")" ;;
        boot) echo "boot:default" ;;
        *) echo "$key:0" ;;
        esac
    done
    ;;
set)
    shift
    while [ "$#" -ge 2 ]; do
        # The state first, then the record: whoever sees the action sees its effect.
        if [ "$1" = power ]; then
            echo "$2" > "$dir/power.tmp" && mv "$dir/power.tmp" "$dir/power"
        fi
        echo "$(date +%s.%N) set $1 $2" >> "$dir/actions.log"
        shift 2
    done
    ;;
esac
exit 0
"#;

/// Minimal BMC at 0x20 with a SEL and one pre-filled entry (a temperature event).
const EMULATOR: &str = "\
mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
sel_add 0x20 0x02 0x00 0x00 0x00 0x00 0x20 0x00 0x04 0x01 0x01 0x01 0x01 0x59 0x00
mc_enable 0x20
";

/// SEL records [`IpmiSim::with_console`] adds (`sel_add <mc> <type> <13 bytes>`): an
/// uncorrectable ECC error on memory sensor 2 and a watchdog's hard reset.
const MORE_SEL: &str = "\
sel_add 0x20 0x02 0x00 0x00 0x00 0x00 0x20 0x00 0x04 0x0c 0x02 0x6f 0x01 0xff 0xff
sel_add 0x20 0x02 0x00 0x00 0x00 0x00 0x20 0x00 0x04 0x23 0x03 0x6f 0x01 0xff 0xff
";

pub struct IpmiSim {
    port: u16,
    dir: tempfile::TempDir,
    child: Child,
    console: Option<Console>,
}

impl IpmiSim {
    /// Starts a BMC with power on, and returns once `ipmitool mc info` answers.
    pub fn start() -> IpmiSim {
        Self::start_inner(None)
    }

    /// A BMC that also serves SOL from `console` (its `lines`, written over and over)
    /// and holds two more SEL records ([`MORE_SEL`]); returns once the console is
    /// connected, so SOL has something to show.
    pub fn with_console(lines: &[&str]) -> IpmiSim {
        let console = Console::start(lines);
        let sim = Self::start_inner(Some(console));
        sim.console().wait_connected();
        sim
    }

    fn start_inner(console: Option<Console>) -> IpmiSim {
        for tool in [IPMI_SIM, IPMITOOL] {
            assert!(Path::new(tool).is_file(), "{tool} is missing: {INSTALL_HINT}");
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_udp_port();
        let hook = dir.path().join("chassisctl");
        std::fs::write(&hook, HOOK).unwrap();
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.path().join("power"), "1\n").unwrap();
        std::fs::write(dir.path().join("actions.log"), "").unwrap();
        let emulator = match &console {
            // Records go in before `mc_enable`, with the one every BMC here holds.
            Some(_) => EMULATOR.replace("mc_enable", &format!("{MORE_SEL}mc_enable")),
            None => EMULATOR.to_string(),
        };
        std::fs::write(dir.path().join("bmc.emu"), emulator).unwrap();
        // ipmi_sim connects out to the console (and keeps retrying until it can).
        let sol = match &console {
            Some(c) => format!("\x20 sol \"tcp:127.0.0.1:{}\" 115200\n", c.port),
            None => String::new(),
        };
        std::fs::create_dir(dir.path().join("state")).unwrap();
        let lan_conf = format!(
            "name \"peerbmc\"\n\
             set_working_mc 0x20\n\
             \x20 startlan 1\n\
             \x20   addr 127.0.0.1 {port}\n\
             \x20   priv_limit admin\n\
             \x20   allowed_auths_callback md5\n\
             \x20   allowed_auths_user md5\n\
             \x20   allowed_auths_operator md5\n\
             \x20   allowed_auths_admin md5\n\
             \x20   guid a123456789abcdefa123456789abcdef\n\
             \x20 endlan\n\
             \x20 chassis_control \"{hook}\"\n\
             \x20 user 2 true \"{USER}\" \"{PASSWORD}\" admin 10 md5\n\
             {sol}",
            hook = hook.display(),
        );
        std::fs::write(dir.path().join("lan.conf"), lan_conf).unwrap();
        let log = std::fs::File::create(dir.path().join("ipmi_sim.log")).unwrap();
        let child = Command::new(IPMI_SIM)
            // -n: no console (stdin is /dev/null, which epoll refuses); -p: users from lan.conf.
            .args(["-n", "-p", "-c", "lan.conf", "-f", "bmc.emu", "-s", "state"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // Its own process group: a runner's group signal must not pick it off mid-test.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {IPMI_SIM}: {e}; {INSTALL_HINT}"));
        let mut sim = IpmiSim { port, dir, child, console };
        sim.wait_ready();
        sim
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("ipmi_sim exited ({status}) before answering; log: {}", self.log());
            }
            let ok = Command::new(IPMITOOL)
                .args(["-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-U", USER, "-E", "-N", "1", "-R", "1", "mc", "info"])
                .env_clear()
                .env("IPMITOOL_PASSWORD", PASSWORD)
                .stdin(Stdio::null())
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "ipmi_sim on port {} never answered; log: {}", self.port, self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn password(&self) -> &'static str {
        PASSWORD
    }

    /// The power bit as the hook keeps it.
    pub fn power(&self) -> bool {
        let s = std::fs::read_to_string(self.path("power")).unwrap();
        match s.trim() {
            "1" => true,
            "0" => false,
            other => panic!("power file holds {other:?}"),
        }
    }

    /// Flip the simulated power behind the BMC's back (a person at the machine).
    pub fn set_power(&self, on: bool) {
        let tmp = self.path("power.harness");
        std::fs::write(&tmp, if on { "1\n" } else { "0\n" }).unwrap();
        std::fs::rename(tmp, self.path("power")).unwrap();
    }

    /// Every `set` the hook received, in order, without the timestamp: e.g. `set power 0`.
    pub fn actions(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("actions.log"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(_, rest)| rest.to_string()))
            .collect()
    }

    /// The action log as written: `<unix time with ns> set <key> <value>`.
    pub fn action_log(&self) -> String {
        std::fs::read_to_string(self.path("actions.log")).unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("ipmi_sim.log")).unwrap_or_default()
    }

    /// The console of a BMC started [`IpmiSim::with_console`].
    pub fn console(&self) -> &Console {
        self.console.as_ref().expect("this BMC was started without a console")
    }

    /// Whether a SOL session can be had now, as an operator would open one (a payload
    /// left active by someone else refuses it): the session's first output, or
    /// ipmitool's complaint. The harness's own ipmitool, ended with `~.`.
    pub fn sol_session(&self) -> Result<String, String> {
        self.open_sol(true)
    }

    /// A SOL session opened and then abandoned, its ipmitool SIGKILLed: the BMC keeps
    /// the payload active, as after a crashed client.
    pub fn abandon_sol_session(&self) {
        self.open_sol(false).expect("a SOL session to abandon");
    }

    fn open_sol(&self, end_cleanly: bool) -> Result<String, String> {
        let mut child = Command::new(IPMITOOL)
            .args(["-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", USER, "-E", "-N", "1", "-R", "1", "sol", "activate"])
            .env_clear()
            .env("IPMITOOL_PASSWORD", PASSWORD)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        // Until console bytes follow the banner, or ipmitool gives up (its stdout closes).
        while let Ok(chunk) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            out.extend(chunk);
            let text = String::from_utf8_lossy(&out);
            if text.contains("[SOL Session operational") && text.lines().count() > 1 {
                break;
            }
        }
        let mut stdin = child.stdin.take().unwrap();
        if !end_cleanly {
            child.kill().unwrap();
            child.wait().unwrap();
            let text = String::from_utf8_lossy(&out).into_owned();
            return if text.contains("[SOL Session operational") { Ok(text) } else { Err(text) };
        }
        let _ = stdin.write_all(b"\r~.");
        let _ = stdin.flush();
        let ended = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            child.try_wait().unwrap().is_some()
        });
        if !ended {
            let _ = child.kill();
        }
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        if text.contains("[SOL Session operational") {
            Ok(text)
        } else {
            Err(format!("{text}{}", String::from_utf8_lossy(&output.stderr)))
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for IpmiSim {
    fn drop(&mut self) {
        // The whole group, by its id (the child's pid): a hook call in flight goes too.
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals that process group; no memory involved.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The serial console behind a simulated BMC: a TCP server that `ipmi_sim` connects
/// out to, playing a machine's console. It writes its lines over and over, one every
/// 50 ms, as a hung kernel repeats its complaint, and keeps what it receives.
pub struct Console {
    port: u16,
    connected: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Console {
    fn start(lines: &[&str]) -> Console {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let lines: Vec<String> = lines.iter().map(|l| format!("{l}\r\n")).collect();
        let (connected, received, stop) = (Arc::default(), Arc::default(), Arc::new(AtomicBool::new(false)));
        let thread = std::thread::spawn({
            let (connected, received, stop): (Arc<AtomicBool>, Arc<Mutex<Vec<u8>>>, _) =
                (Arc::clone(&connected), Arc::clone(&received), stop.clone());
            move || {
                let mut next = 0;
                while !stop.load(Ordering::SeqCst) {
                    let Ok((mut conn, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    conn.set_nonblocking(true).unwrap();
                    connected.store(true, Ordering::SeqCst);
                    while !stop.load(Ordering::SeqCst) {
                        if conn.write_all(lines[next % lines.len()].as_bytes()).is_err() {
                            break;
                        }
                        next += 1;
                        let mut buf = [0u8; 1024];
                        if let Ok(n) = conn.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            received.lock().unwrap().extend_from_slice(&buf[..n]);
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    connected.store(false, Ordering::SeqCst);
                }
            }
        });
        Console { port, connected, received, stop, thread: Some(thread) }
    }

    /// Until ipmi_sim has connected (it retries every second or so).
    fn wait_connected(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.connected.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "ipmi_sim never connected to its console on port {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What came in over SOL (what a client typed), as text.
    pub fn received(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap()).into_owned()
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A UDP port nothing was bound to a moment ago (ipmi_sim binds it next, or,
/// for a silent BMC, nobody does).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
