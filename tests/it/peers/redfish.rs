//! sushy-tools' `sushy-emulator` with its fake driver: a Redfish BMC on a free
//! loopback port with one system, basic auth from a bcrypt htpasswd file, optional
//! TLS with a fresh self-signed certificate, state in its own temp dir.
//!
//! What the fake driver does (read from `sushy_tools/emulator/resources/systems/fakedriver.py`
//! 2.2.0, and observed): a power change lands 1–11 s after the request (random);
//! `*Restart` shows `Off` at once and `On` when it lands; anything containing `On`
//! (`On`, `ForceOn`) → `On`; `ForceOff`/`GracefulShutdown` → `Off`; other values
//! (`PowerCycle`, `Nmi`, `PushPowerButton`) → 501. State persists in the state dir.
//! `/Systems/<name>` answers 307 to `/Systems/<uuid>`. There is no SessionService.
//! Because of the random delay a restart's `Off` can last only milliseconds, so
//! tests observe restarts from a system that starts `Off` (`Off` → `On` with no `On`
//! sent proves the restart), plus [`SushyBmc::reset_posts`].
//! `PATCH Boot` sets the boot device and ignores `BootSourceOverrideEnabled`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::wait_for;
use crate::procs::free_port;

/// Appended to the emulator's config (Python, run in the emulator's process): the
/// fake driver lands each power change `random.randint(1, 11)` whole seconds ahead,
/// so a restart reads Off for anything from milliseconds to 11 s. Pinned to the
/// longest, what a client reads right after a restart is Off for ten seconds: a
/// read-back the tests can tell from the state before the request.
pub const SLOW_POWER_CHANGES: &str = "import random\nrandom.randint = lambda low, high: high\n";

pub const SYSTEM_UUID: &str = "27946b59-9e44-4fa7-8e91-f3527a1ef094";
pub const SYSTEM_NAME: &str = "node1";
const USER: &str = "admin";
const PASSWORD: &str = "s3cret-redfish-Pw";

pub struct SushyBmc {
    port: u16,
    tls: bool,
    dir: tempfile::TempDir,
    child: Child,
    /// The harness's own client (never roller's code) for observing the emulator.
    http: reqwest::Client,
}

fn emulator() -> PathBuf {
    const HINT: &str = "run `cargo xtask deps` (creates target/test-peers-venv with sushy-tools)";
    let p = std::env::var_os("ROLLER_TEST_SUSHY_EMULATOR")
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("ROLLER_TEST_SUSHY_EMULATOR is not set; {HINT}"));
    assert!(p.is_file(), "ROLLER_TEST_SUSHY_EMULATOR={} does not exist; {HINT}", p.display());
    p
}

/// A bcrypt htpasswd line (the only digest the emulator's auth accepts), made with
/// the venv's own `bcrypt`; the password goes through the environment, not argv.
fn htpasswd_line(emulator: &Path, user: &str, password: &str) -> String {
    let python = emulator.with_file_name("python3");
    let out = Command::new(&python)
        .args([
            "-c",
            "import bcrypt,os;print(bcrypt.hashpw(os.environ['PW'].encode(),bcrypt.gensalt(rounds=4)).decode())",
        ])
        .env("PW", password)
        .output()
        .unwrap_or_else(|e| panic!("{} runs: {e}", python.display()));
    assert!(out.status.success(), "bcrypt hash failed: {}", String::from_utf8_lossy(&out.stderr));
    format!("{user}:{}\n", String::from_utf8(out.stdout).unwrap().trim())
}

pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs (apt-get install openssl)");
    assert!(out.status.success(), "openssl req failed: {}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}

impl SushyBmc {
    /// An emulator whose one system starts `On`.
    pub async fn start(tls: bool) -> SushyBmc {
        Self::start_powered(tls, "On").await
    }

    /// An emulator whose one system starts in `power` (`On` or `Off`).
    pub async fn start_powered(tls: bool, power: &str) -> SushyBmc {
        Self::start_with(tls, power, "").await
    }

    /// As [`SushyBmc::start_powered`], with `extra` (Python) appended to the emulator's config.
    pub async fn start_with(tls: bool, power: &str, extra: &str) -> SushyBmc {
        let emulator = emulator();
        let dir = tempfile::tempdir().unwrap();
        let auth = dir.path().join("htpasswd");
        std::fs::write(&auth, htpasswd_line(&emulator, USER, PASSWORD)).unwrap();
        let port = free_port();
        let mut conf = format!(
            "SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\n\
             SUSHY_EMULATOR_LISTEN_PORT = {port}\n\
             SUSHY_EMULATOR_AUTH_FILE = {auth:?}\n\
             SUSHY_EMULATOR_STATE_DIR = {state:?}\n\
             SUSHY_EMULATOR_FAKE_DRIVER = True\n\
             SUSHY_EMULATOR_FAKE_SYSTEMS = [{{'uuid': '{SYSTEM_UUID}', 'name': '{SYSTEM_NAME}', \
             'power_state': '{power}', 'external_notifier': False, \
             'nics': [{{'mac': '00:5c:52:31:3a:9c', 'ip': '127.0.0.100'}}]}}]\n\
             EXTERNAL_NOTIFICATION_URL = 'http://127.0.0.1:9'\n",
            auth = auth.display().to_string(),
            state = dir.path().join("db").display().to_string(),
        );
        if tls {
            let (cert, key) = self_signed(dir.path());
            conf.push_str(&format!(
                "SUSHY_EMULATOR_SSL_CERT = {:?}\nSUSHY_EMULATOR_SSL_KEY = {:?}\n",
                cert.display().to_string(),
                key.display().to_string()
            ));
        }
        conf.push_str(extra);
        let conf_path = dir.path().join("emulator.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let log = std::fs::File::create(dir.path().join("emulator.log")).unwrap();
        let child = Command::new(&emulator)
            .arg("--config")
            .arg(&conf_path)
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // Its own process group: a runner's group signal must not reach it, and Drop kills the group.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", emulator.display()));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .tls_danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        let mut bmc = SushyBmc { port, tls, dir, child, http };
        let root = format!("{}/redfish/v1/", bmc.url());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = bmc.child.try_wait() {
                panic!("sushy-emulator exited ({status}); log:\n{}", bmc.log());
            }
            if bmc.http.get(&root).send().await.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "sushy-emulator did not answer {root} within 30 s; log:\n{}",
                bmc.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bmc
    }

    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", if self.tls { "https" } else { "http" }, self.port)
    }

    pub fn user(&self) -> &'static str {
        USER
    }

    pub fn password(&self) -> &'static str {
        PASSWORD
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("emulator.log")).unwrap_or_default()
    }

    /// GET a path with basic auth through the harness's own client: (status, JSON or Null).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.url()))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} from the emulator: {e}"));
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// The system resource as the emulator serves it.
    pub async fn system(&self) -> Value {
        let (status, v) = self.get(&format!("/redfish/v1/Systems/{SYSTEM_UUID}")).await;
        assert_eq!(status, 200, "system resource: {v}");
        v
    }

    /// The system's `PowerState` as the emulator reports it.
    pub async fn power_state(&self) -> String {
        self.system().await["PowerState"].as_str().expect("PowerState is a string").to_string()
    }

    /// Poll until `PowerState` is `want`; panics with the log after `limit`.
    pub async fn wait_power(&self, want: &str, limit: Duration) {
        let got = wait_for(limit, || async { (self.power_state().await == want).then_some(()) }).await;
        if got.is_none() {
            panic!(
                "PowerState never became {want} within {limit:?} (is {}); log:\n{}",
                self.power_state().await,
                self.log()
            );
        }
    }
}

impl SushyBmc {
    /// Statuses the emulator answered to Reset POSTs, in order, from its access log
    /// (it logs no ResetType, but answers 501 to any it cannot do, so 204 means done).
    pub fn reset_posts(&self) -> Vec<u16> {
        let needle = format!("POST /redfish/v1/Systems/{SYSTEM_UUID}/Actions/ComputerSystem.Reset HTTP/1.1");
        self.log()
            .lines()
            .filter(|l| l.contains(&needle))
            .filter_map(|l| l.rsplit('"').next()?.split_whitespace().next()?.parse().ok())
            .collect()
    }
}

impl SushyBmc {
    /// Every request in the emulator's access log, in order, as `"<METHOD> <path>"`
    /// (werkzeug colours some lines by status: the escapes are dropped).
    pub fn requests(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|l| {
                let request = without_escapes(l.split('"').nth(1)?);
                let (method, rest) = request.split_once(' ')?;
                let path = rest.rsplit_once(' ').map_or(rest, |(p, _)| p);
                Some(format!("{method} {path}"))
            })
            .collect()
    }
}

/// `text` without ANSI escape sequences (`ESC [ … <letter>`).
fn without_escapes(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Up to and including the sequence's final letter.
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            out.push(c);
        }
    }
    out
}

impl Drop for SushyBmc {
    fn drop(&mut self) {
        // The group we created for it at spawn (pgid == its pid).
        let pid = self.child.id() as i32;
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
