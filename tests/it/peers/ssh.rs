//! A reboot-only ssh target: OpenSSH `sshd` in the foreground on a free loopback
//! port, run as the current user, with every session forced into a recording
//! script (test-peers.md §3). Nothing is ever rebooted.
//!
//! The forced command compares `$SSH_ORIGINAL_COMMAND` for exact equality with
//! the two commands the driver may send (never evaluates it), appends
//! `<UTC time>\t<command>` to `requests.log`, and exits with the status in
//! `exit.<command>` (0 without one). `hang` makes it wait (until the file or the
//! whole state dir is gone, bounded); `drop` makes it kill its sshd session
//! process, so the connection ends without an exit status, as a rebooting host's
//! would; `signal.<command>` makes it kill itself with that signal.

use std::io::Read;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::procs::free_port;

const SSHD: &str = "/usr/sbin/sshd";

pub struct SshHost {
    dir: tempfile::TempDir,
    port: u16,
    user: String,
    child: Child,
}

impl Drop for SshHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Removing the state dir (TempDir's drop) also ends any hanging forced command.
        let _ = std::fs::remove_file(self.dir.path().join("hang"));
    }
}

fn keygen(path: &Path, comment: &str) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("ssh-keygen runs (apt-get install openssh-client)");
    assert!(out.status.success(), "ssh-keygen failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// The file-name key of a command, as in `exit.<key>`.
fn command_key(command: &str) -> &'static str {
    match command {
        "reboot" => "reboot",
        "shutdown -f -t 3 -r" => "shutdown",
        other => panic!("the peer only knows `reboot` and `shutdown -f -t 3 -r`, not {other:?}"),
    }
}

impl SshHost {
    pub fn start() -> SshHost {
        assert!(Path::new(SSHD).exists(), "{SSHD} is missing: apt-get install openssh-server");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let user =
            String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap().trim().to_string();

        keygen(&d.join("host_key"), "roller-test-host");
        keygen(&d.join("client_key"), "roller-test-client");
        let client_pub = std::fs::read_to_string(d.join("client_key.pub")).unwrap();
        // `restrict`: no forwarding, pty or user rc, whatever the config says.
        std::fs::write(d.join("authorized_keys"), format!("restrict {client_pub}")).unwrap();

        let force = d.join("force.sh");
        std::fs::write(&force, force_script(d)).unwrap();
        std::fs::set_permissions(&force, std::fs::Permissions::from_mode(0o755)).unwrap();

        // As root, OpenSSH 9.x insists on its privilege-separation directory (the
        // package creates it through tmpfiles.d, which a container never runs).
        // As any other user, sshd needs no privileged state at all.
        if unsafe { libc::geteuid() } == 0 && !Path::new("/run/sshd").exists() {
            std::fs::create_dir_all("/run/sshd").unwrap();
            std::fs::set_permissions("/run/sshd", std::fs::Permissions::from_mode(0o755)).unwrap();
        }

        let port = free_port();
        let config = d.join("sshd_config");
        std::fs::write(&config, sshd_config(d, port, &user)).unwrap();
        let check = Command::new(SSHD).arg("-t").arg("-f").arg(&config).output().unwrap();
        assert!(check.status.success(), "sshd -t: {}", String::from_utf8_lossy(&check.stderr));

        let log = std::fs::File::create(d.join("sshd.log")).unwrap();
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("sshd starts");
        let host = SshHost { dir, port, user, child };
        host.wait_ready();
        host
    }

    /// Until the port accepts and the server's `SSH-2.0-` banner arrives (bounded).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut buf = [0u8; 8];
                if s.read_exact(&mut buf).is_ok() && &buf == b"SSH-2.0-" {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "sshd never became ready; its log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// The private key sshd accepts (mode 600, as ssh-keygen writes it).
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// `[127.0.0.1]:<port> ssh-ed25519 AAAA…` for a known_hosts file.
    pub fn known_hosts_line(&self) -> String {
        self.known_hosts_line_for(self.port)
    }

    /// The same key as seen through another port (a relay in front of this sshd).
    pub fn known_hosts_line_for(&self, port: u16) -> String {
        let public = std::fs::read_to_string(self.dir.path().join("host_key.pub")).unwrap();
        let mut parts = public.split_whitespace();
        let (alg, key) = (parts.next().unwrap(), parts.next().unwrap());
        format!("[127.0.0.1]:{port} {alg} {key}")
    }

    /// The commands the forced command saw, in order.
    pub fn requests(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir.path().join("requests.log")).unwrap_or_default();
        text.lines().map(|l| l.split_once('\t').map(|(_, c)| c).unwrap_or(l).to_string()).collect()
    }

    /// Make `command` (`reboot` or `shutdown -f -t 3 -r`) exit with `status`.
    pub fn set_exit(&self, command: &str, status: u8) {
        std::fs::write(self.dir.path().join(format!("exit.{}", command_key(command))), status.to_string()).unwrap();
    }

    /// Make `command` die of `signal` (`TERM`, `SEGV`, …): sshd reports an exit signal, no status.
    pub fn set_signal(&self, command: &str, signal: &str) {
        std::fs::write(self.dir.path().join(format!("signal.{}", command_key(command))), signal).unwrap();
    }

    /// Make every command wait instead of answering.
    pub fn set_hang(&self, hang: bool) {
        self.flag("hang", hang);
    }

    /// Make every command kill its sshd session: the connection drops without an exit status.
    pub fn set_drop(&self, drop: bool) {
        self.flag("drop", drop);
    }

    fn flag(&self, name: &str, on: bool) {
        let p = self.dir.path().join(name);
        if on {
            std::fs::write(p, "").unwrap();
        } else {
            let _ = std::fs::remove_file(p);
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

fn sshd_config(d: &Path, port: u16, user: &str) -> String {
    let d = d.display();
    format!(
        "Port {port}
ListenAddress 127.0.0.1
HostKey {d}/host_key
PidFile {d}/sshd.pid
AuthorizedKeysFile {d}/authorized_keys
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers {user}
AllowTcpForwarding no
AllowStreamLocalForwarding no
AllowAgentForwarding no
X11Forwarding no
PermitTunnel no
PermitTTY no
PermitUserRC no
PermitUserEnvironment no
ForceCommand {d}/force.sh
LogLevel VERBOSE
"
    )
}

fn force_script(d: &Path) -> String {
    let d = d.display();
    format!(
        r#"#!/bin/sh
# Forced command for every session: record, never evaluate, the requested command.
dir='{d}'
cmd="$SSH_ORIGINAL_COMMAND"
printf '%s\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)" "$cmd" >> "$dir/requests.log"
case "$cmd" in
  reboot) key=reboot ;;
  'shutdown -f -t 3 -r') key=shutdown ;;
  *) echo "only reboot is allowed" >&2; exit 1 ;;
esac
i=0
while [ -e "$dir/hang" ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
echo "$key requested"
if [ -e "$dir/drop" ]; then kill -KILL $PPID; sleep 5; fi
if [ -e "$dir/signal.$key" ]; then kill -s "$(cat "$dir/signal.$key")" $$; sleep 5; fi
status=$(cat "$dir/exit.$key" 2>/dev/null || echo 0)
exit "$status"
"#
    )
}
