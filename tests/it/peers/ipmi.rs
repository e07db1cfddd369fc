//! A real IPMI 2.0 BMC on loopback: OpenIPMI's `ipmi_sim` with one LAN channel,
//! user 2 "admin", a SEL holding one entry, and power simulated by a
//! `chassis_control` hook script that keeps the power bit in a file and logs
//! every `set` it receives, so tests observe what the BMC was asked to do, not
//! merely that ipmitool exited 0.

use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const IPMI_SIM: &str = "/usr/bin/ipmi_sim";
const IPMITOOL: &str = "/usr/bin/ipmitool";
const INSTALL_HINT: &str = "apt-get install openipmi ipmitool";

pub const USER: &str = "admin";
const PASSWORD: &str = "s3cret-ipmi-7Qz";

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

pub struct IpmiSim {
    port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl IpmiSim {
    /// Starts a BMC with power on, and returns once `ipmitool mc info` answers.
    pub fn start() -> IpmiSim {
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
        std::fs::write(dir.path().join("bmc.emu"), EMULATOR).unwrap();
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
             \x20 user 2 true \"{USER}\" \"{PASSWORD}\" admin 10 md5\n",
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
        let mut sim = IpmiSim { port, dir, child };
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

/// A UDP port nothing was bound to a moment ago (ipmi_sim binds it next, or,
/// for a silent BMC, nobody does).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
