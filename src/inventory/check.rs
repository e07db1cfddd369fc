//! What a validated inventory can still get wrong, found before a job trips on it:
//! secrets that do not resolve, ssh key and known_hosts files that are missing or
//! unusable, a Moonshot CA file that holds no certificate, values the drivers refuse
//! that the file's shape lets through.
//!
//! `roller inventory check` and `roller check-config` report every problem of every
//! machine: no check stops the others, unlike [`Inventory::parse`], which stops at
//! the first structural error. The checks read files and the environment as the user
//! running them; they touch no hardware and no network.

use std::io;
use std::path::Path;

use secrecy::SecretString;

use super::{Inventory, Machine, SshAccess};
use crate::domain::WorkerId;
use crate::drivers::{ipmi, moonshot, redfish, ssh};

/// One thing wrong with one machine, at the field to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub machine: WorkerId,
    /// The field under `machines.<id>`, e.g. `ssh.key_file`.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "machines.{}.{}: {}", self.machine, self.field, self.message)
    }
}

impl Inventory {
    /// Every problem of every machine, in machine order.
    pub fn problems(&self) -> Vec<Problem> {
        self.machines.values().flat_map(Machine::problems).collect()
    }
}

impl Machine {
    /// Every problem this machine's configuration has that only shows when a job runs.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut problem =
            |field: &str, message: String| out.push(Problem { machine: self.id.clone(), field: field.into(), message });
        for (field, secret) in self.secrets() {
            if let Err(e) = secret.resolve() {
                problem(field, e);
            }
        }
        if let Some(s) = &self.ssh {
            // The inventory's host check lets through what ssh refuses (a leading '-').
            if let Err(e) = ssh::validate_host(&self.address) {
                problem("address", e.to_string());
            }
            if let Err(e) = key_file(&s.key_file) {
                problem("ssh.key_file", e);
            }
            if let Err(e) = known_hosts(&self.address, s) {
                problem("ssh.known_hosts", e);
            }
        }
        if let Some(i) = &self.ipmi {
            // The driver's own limits (IPMI user names are at most 16 bytes, passwords 20),
            // which the inventory's generic name check does not know. An unresolvable
            // password is reported above; a stand-in lets the rest be checked.
            let password = i.password.resolve().unwrap_or_else(|_| SecretString::from("unresolved"));
            let mut t = ipmi::IpmiTarget::new(&i.address, &i.user, password);
            t.port = i.port;
            t.cipher_suite = self.class.ipmi_cipher_suite;
            if let Err(e) = t.validate() {
                problem("ipmi", e.to_string());
            }
        }
        if let Some(ms) = &self.moonshot
            && let super::ChassisTls::Verify { ca_file: Some(ca) } = &ms.tls
            && let Err(e) = moonshot::ca_certificates(ca)
        {
            problem("moonshot.ca_file", e.to_string());
        }
        if let Some(r) = &self.redfish {
            // The driver refuses a base URL with a path (`https://bmc/redfish/v1`), which the
            // inventory's scheme check lets through. The password plays no part in the URL.
            let t = redfish::RedfishTarget::new(&r.url, &r.user, SecretString::from(String::new()));
            if let Err(e) = t.url() {
                problem("redfish.url", e.to_string());
            }
        }
        out
    }
}

/// The key `ssh_reboot` logs in with: readable, and a private key without a passphrase.
fn key_file(path: &Path) -> Result<(), String> {
    // Held as a secret so it is zeroed on drop and never Debug-printed.
    let text = std::fs::read_to_string(path).map(SecretString::from).map_err(|e| {
        format!(
            "cannot read {}: {e}; ssh_reboot logs in with this key: put a private key without a passphrase there \
             or fix the path",
            path.display()
        )
    })?;
    ssh::decode_key(path, &text).map(|_| ()).map_err(|e| e.to_string())
}

/// The host-key file as `ssh_reboot` will use it. With `known-hosts` it must be readable
/// and pin a key for the machine, or no connection is ever trusted; with `accept-new`
/// roller appends first-seen keys to it, so it (or, while it does not exist, its
/// directory) must be writable.
fn known_hosts(address: &str, s: &SshAccess) -> Result<(), String> {
    let path = &s.known_hosts;
    let scan = format!("ssh-keyscan -p {} {address} >> {}", s.port, path.display());
    if s.accept_new {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                return Err(format!("{} is a directory, not a known_hosts file", path.display()));
            }
            Ok(_) => access(path, libc::R_OK | libc::W_OK).map_err(|e| {
                format!(
                    "cannot read and write {}: {e}; with host_keys = \"accept-new\" roller records first-seen keys \
                     there: make it readable and writable by roller",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let dir = match path.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d,
                    _ => Path::new("."),
                };
                // The driver would create a missing directory, but a path whose directory
                // does not exist is far more likely a typo than a plan: a fresh file there
                // would trust every host anew, ignoring the keys pinned where they really are.
                if !dir.is_dir() {
                    return Err(format!(
                        "directory {} does not exist; with host_keys = \"accept-new\" roller records first-seen keys \
                         in {}: create the directory (writable by roller) or fix the path",
                        dir.display(),
                        path.display()
                    ));
                }
                access(dir, libc::W_OK).map_err(|e| {
                    format!(
                        "cannot create {} ({}: {e}); with host_keys = \"accept-new\" roller records first-seen keys \
                         there: make the directory writable by roller",
                        path.display(),
                        dir.display()
                    )
                })?;
                return Ok(());
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        }
        // Only lines naming this host are parsed, as in the driver's own check.
        return ssh::recorded_host_keys(address, s.port, path).map(|_| ()).map_err(|e| e.to_string());
    }
    // The driver reads a file it cannot open as one that pins nothing: say why instead.
    std::fs::File::open(path).map_err(|e| {
        format!(
            "cannot read {}: {e}; with host_keys = \"known-hosts\" (the default) no host key can be trusted \
             without it: create it ({scan}, then compare the fingerprint) or set host_keys = \"accept-new\"",
            path.display()
        )
    })?;
    match ssh::recorded_host_keys(address, s.port, path) {
        Ok(0) => Err(format!(
            "{} has no key for {address} port {}, so ssh_reboot will refuse the host: add it ({scan}, then compare \
             the fingerprint) or set host_keys = \"accept-new\"",
            path.display(),
            s.port
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// access(2): whether this process may read or write `path` (`mode` is `R_OK`/`W_OK`),
/// with everything the kernel weighs (root, ACLs, a read-only mount), without opening
/// or creating anything.
fn access(path: &Path, mode: libc::c_int) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the path contains a NUL byte"))?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call; access(2) only reads it.
    if unsafe { libc::access(c.as_ptr(), mode) } == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A fresh ed25519 key in `dir` (with `passphrase`, "" for none) and its public key line.
    fn keygen(dir: &Path, name: &str, passphrase: &str) -> (PathBuf, String) {
        let key = dir.join(name);
        let out = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", passphrase, "-C", "roller-check-test", "-f"])
            .arg(&key)
            .output()
            .expect("ssh-keygen runs (apt-get install openssh-client)");
        assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        (key, public.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
    }

    fn machine(toml: &str) -> Machine {
        let inv = Inventory::parse(Path::new("/etc/roller/inventory.toml"), toml).unwrap();
        inv.machines.into_values().next().unwrap()
    }

    fn ssh_machine(key: &Path, known_hosts: &Path, policy: &str) -> Machine {
        machine(&format!(
            "[machines.w1]\naddress = \"w1.example\"\n[machines.w1.ssh]\nuser = \"roller\"\nkey_file = {key:?}\n\
             known_hosts = {known_hosts:?}\nhost_keys = {policy:?}\n"
        ))
    }

    fn fields(m: &Machine) -> Vec<(String, String)> {
        m.problems().into_iter().map(|p| (p.field, p.message)).collect()
    }

    #[test]
    fn a_usable_key_and_a_pinned_host_have_no_problem() {
        let dir = tempfile::tempdir().unwrap();
        let (key, host_key) = keygen(dir.path(), "id", "");
        let kh = dir.path().join("known_hosts");
        std::fs::write(&kh, format!("w1.example {host_key}\n")).unwrap();
        assert_eq!(fields(&ssh_machine(&key, &kh, "known-hosts")), vec![]);
        // accept-new: an existing writable file, or a missing one in an existing directory.
        assert_eq!(fields(&ssh_machine(&key, &kh, "accept-new")), vec![]);
        assert_eq!(fields(&ssh_machine(&key, &dir.path().join("new"), "accept-new")), vec![]);
    }

    #[test]
    fn every_ssh_problem_is_reported_with_its_field() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let p = fields(&ssh_machine(&missing.join("id"), &missing.join("known_hosts"), "known-hosts"));
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].0, "ssh.key_file");
        assert!(p[0].1.starts_with(&format!("cannot read {}/id: ", missing.display())), "{p:?}");
        assert_eq!(p[1].0, "ssh.known_hosts");
        assert!(p[1].1.contains("no host key can be trusted") && p[1].1.contains("ssh-keyscan"), "{p:?}");

        // A key with a passphrase, and a known_hosts file that pins another host only.
        let (key, host_key) = keygen(dir.path(), "id", "a passphrase");
        let kh = dir.path().join("known_hosts");
        std::fs::write(&kh, format!("elsewhere.example {host_key}\n")).unwrap();
        let p = fields(&ssh_machine(&key, &kh, "known-hosts"));
        assert!(p[0].0 == "ssh.key_file" && p[0].1.contains("has a passphrase"), "{p:?}");
        assert!(p[1].1.contains("has no key for w1.example port 22"), "{p:?}");

        // Not a key at all; accept-new into a directory that does not exist.
        std::fs::write(&key, "not a key\n").unwrap();
        let p = fields(&ssh_machine(&key, &missing.join("known_hosts"), "accept-new"));
        assert!(p[0].0 == "ssh.key_file" && p[0].1.contains("cannot parse the private key"), "{p:?}");
        assert!(p[1].0 == "ssh.known_hosts" && p[1].1.contains("does not exist"), "{p:?}");
    }

    #[test]
    fn driver_limits_and_secrets_are_all_reported() {
        let m = machine(
            "[machines.w1.ipmi]\naddress = \"bmc\"\nuser = \"a-user-name-longer-than-sixteen\"\n\
             password_env = \"ROLLER_TEST_SURELY_UNSET_IPMI\"\n\
             [machines.w1.redfish]\nurl = \"https://bmc/redfish/v1\"\nuser = \"admin\"\n\
             password_file = \"/nonexistent/roller/pw\"\n",
        );
        let at: Vec<String> = m.problems().iter().map(|p| p.to_string()).collect();
        assert_eq!(at.len(), 4, "{at:?}");
        assert!(at[0].starts_with("machines.w1.ipmi.password: environment variable ROLLER_TEST_SURELY_UNSET_IPMI"));
        assert!(at[1].starts_with("machines.w1.redfish.password: cannot read /nonexistent/roller/pw"), "{at:?}");
        assert!(at[2].starts_with("machines.w1.ipmi: ") && at[2].contains("16"), "{at:?}");
        assert!(at[3].starts_with("machines.w1.redfish.url: ") && at[3].contains("path"), "{at:?}");
    }
}
