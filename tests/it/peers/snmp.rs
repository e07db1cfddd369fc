//! A ServerTech Sentry3 PDU on loopback: net-snmp `snmpd` in a temp dir with a
//! `pass_persist` handler (Python) serving the outletTable's status (column 5)
//! and control-action (column 11) columns for towers/infeeds 1.1, 1.2 and 2.1,
//! outlets 1-16 each, all on at start.
//!
//! The handler writes the outlets' state to `state.json` after every change and
//! appends one timestamped line per accepted SET to `actions.log`, so tests see
//! what the PDU did, not only what the client was told. A reboot (3) turns the
//! outlet off at once and on again [`REBOOT_OFF`] later, from a timer thread.

use std::net::UdpSocket;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `outletEntry`, the subtree handed to the handler.
pub const OUTLET_ENTRY: &str = ".1.3.6.1.4.1.1718.3.2.3.1";
/// How long a PDU-side reboot keeps the outlet off.
pub const REBOOT_OFF: Duration = Duration::from_secs(1);

const HANDLER: &str = r#"
import json, os, sys, threading, time

state_dir = sys.argv[1]
reboot_off = float(sys.argv[2])
BASE = (1, 3, 6, 1, 4, 1, 1718, 3, 2, 3, 1)
OUTLETS = [(t, i, o) for (t, i) in [(1, 1), (1, 2), (2, 1)] for o in range(1, 17)]
status = {k: 1 for k in OUTLETS}
lock = threading.Lock()
ALL = sorted(BASE + (col,) + k for col in (5, 11) for k in OUTLETS)

def key(k):
    return "%d.%d.%d" % k

def save():
    tmp = os.path.join(state_dir, "state.json.tmp")
    with open(tmp, "w") as f:
        json.dump({key(k): v for k, v in status.items()}, f)
    os.replace(tmp, os.path.join(state_dir, "state.json"))

def log(k, value, what):
    with open(os.path.join(state_dir, "actions.log"), "a") as f:
        f.write("%.6f %s %d %s -> %d\n" % (time.time(), key(k), value, what, status[k]))

def parse(text):
    try:
        return tuple(int(x) for x in text.strip().strip(".").split("."))
    except ValueError:
        return None

def value(oid):
    if oid is None or len(oid) != 15 or oid[:11] != BASE or oid[12:] not in status:
        return None
    if oid[11] == 5:
        return status[oid[12:]]
    if oid[11] == 11:
        return 0  # outletControlAction reads as none
    return None

def reply(oid, v):
    sys.stdout.write(".%s\ninteger\n%d\n" % (".".join(map(str, oid)), v))

def reboot_done(k):
    with lock:
        status[k] = 1
        save()

with lock:
    save()
    open(os.path.join(state_dir, "actions.log"), "a").close()

while True:
    line = sys.stdin.readline()
    if not line:
        break
    cmd = line.strip()
    if not cmd:
        # snmpd follows a set's value line with an empty line; answering it
        # would put every later reply one request behind.
        continue
    if cmd == "PING":
        sys.stdout.write("PONG\n")
    elif cmd in ("get", "getnext"):
        oid = parse(sys.stdin.readline())
        with lock:
            if cmd == "get":
                v = value(oid)
                found = oid if v is not None else None
            else:
                found = next((o for o in ALL if oid is not None and o > oid), None)
                v = value(found) if found else None
            if found is None:
                sys.stdout.write("NONE\n")
            else:
                reply(found, v)
    elif cmd == "set":
        oid = parse(sys.stdin.readline())
        typ, _, raw = sys.stdin.readline().strip().partition(" ")
        with lock:
            if oid is None or len(oid) != 15 or oid[:12] != BASE + (11,) or oid[12:] not in status:
                sys.stdout.write("not-writable\n")
            elif typ.lower() != "integer":
                sys.stdout.write("wrong-type\n")
            elif raw.strip() not in ("1", "2", "3"):
                sys.stdout.write("wrong-value\n")
            else:
                k, v = oid[12:], int(raw)
                status[k] = 1 if v == 1 else 0
                save()
                log(k, v, {1: "on", 2: "off", 3: "reboot"}[v])
                if v == 3:
                    t = threading.Timer(reboot_off, reboot_done, (k,))
                    t.daemon = True
                    t.start()
                sys.stdout.write("DONE\n")
    else:
        sys.stdout.write("NONE\n")
    sys.stdout.flush()
"#;

/// One accepted SET as the handler logged it.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// Unix time in seconds.
    pub at: f64,
    /// `tower.infeed.outlet`.
    pub outlet: String,
    /// 1 on, 2 off, 3 reboot.
    pub value: i64,
}

pub struct SentryPdu {
    dir: tempfile::TempDir,
    port: u16,
    community: String,
    child: Child,
}

impl Drop for SentryPdu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A UDP port nothing listens on right now (a race with other tests is possible
/// but needs the kernel to hand out the same ephemeral port twice at once).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn random_secret() -> String {
    format!("rw-{:032x}", rand::random::<u128>())
}

impl SentryPdu {
    pub fn start() -> SentryPdu {
        for bin in ["/usr/sbin/snmpd", "/usr/bin/snmpget"] {
            assert!(Path::new(bin).exists(), "{bin} is missing: apt-get install snmpd snmp");
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("persist")).unwrap();
        std::fs::create_dir_all(d.join("client")).unwrap();
        std::fs::write(d.join("sentry3_handler.py"), HANDLER).unwrap();
        let port = free_udp_port();
        let community = random_secret();
        // Only the read-write community from loopback; no other access.
        let conf = format!(
            "agentAddress udp:127.0.0.1:{port}\n\
             rwcommunity {community} 127.0.0.1\n\
             pass_persist {OUTLET_ENTRY} /usr/bin/python3 {handler} {state} {reboot}\n",
            handler = d.join("sentry3_handler.py").display(),
            state = d.display(),
            reboot = REBOOT_OFF.as_secs_f64(),
        );
        std::fs::write(d.join("snmpd.conf"), conf).unwrap();
        // The readiness probe's community lives in a file, not on argv.
        std::fs::write(d.join("client/snmp.conf"), format!("defVersion 2c\ndefCommunity {community}\n")).unwrap();
        let log = d.join("snmpd.log");
        // The address comes from agentAddress only: naming it on argv as well
        // makes snmpd open it twice and exit with "Error opening specified endpoint".
        let child = Command::new("/usr/sbin/snmpd")
            .args(["-f", "-C", "-Lf"])
            .arg(&log)
            .arg("-c")
            .arg(d.join("snmpd.conf"))
            .arg("-p")
            .arg(d.join("snmpd.pid"))
            .env("SNMP_PERSISTENT_DIR", d.join("persist"))
            .env("MIBS", "")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("snmpd.stderr")).unwrap())
            // Own process group, so a runner's group kill does not stop it mid-test.
            .process_group(0)
            .spawn()
            .expect("snmpd starts (apt-get install snmpd snmp)");
        let mut pdu = SentryPdu { dir, port, community, child };
        pdu.wait_ready();
        pdu
    }

    fn wait_ready(&mut self) {
        let d = self.dir.path();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("snmpd exited ({status}) before answering:\n{}", self.logs());
            }
            let out = Command::new("/usr/bin/snmpget")
                .args(["-t", "1", "-r", "0", "-On", "-Oqv"])
                .arg(format!("127.0.0.1:{}", self.port))
                .arg(format!("{OUTLET_ENTRY}.5.1.1.1"))
                .env("SNMPCONFPATH", d.join("client"))
                .env("SNMP_PERSISTENT_DIR", d.join("persist"))
                .env("MIBS", "")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "1" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "snmpd on {} did not answer in 30 s: {}\n{}",
                self.port,
                String::from_utf8_lossy(&out.stderr),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn logs(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!("--- snmpd.log\n{}\n--- snmpd.stderr\n{}", read("snmpd.log"), read("snmpd.stderr"))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn community(&self) -> &str {
        &self.community
    }

    /// `outletStatus` of `tower.infeed.outlet` as the handler holds it (0 off, 1 on).
    pub fn status(&self, outlet: &str) -> Option<i64> {
        let text = std::fs::read_to_string(self.dir.path().join("state.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v.get(outlet)?.as_i64()
    }

    /// Every accepted SET, oldest first.
    pub fn actions(&self) -> Vec<Action> {
        let text = std::fs::read_to_string(self.dir.path().join("actions.log")).unwrap_or_default();
        text.lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Action { at: f[0].parse().unwrap(), outlet: f[1].to_string(), value: f[2].parse().unwrap() }
            })
            .collect()
    }
}
