//! The inventory: which machines roller manages, how to reach each one's
//! BMC, PDU outlet and ssh, and which reboot chain its hardware class uses.
//!
//! One TOML file (schema and a full example: `docs/inventory.example.toml`).
//! Everything is validated on load, and every error names the file, the
//! machine or class, and the field. Secrets are references (`*_env` names an
//! environment variable, `*_file` a file) resolved when a job needs them, so a
//! rotated password needs no reload; `roller inventory check` resolves them all
//! up front, with the other checks of what only shows when a job runs (`check`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

mod check;
mod class;
mod file;
mod moonshot;

pub use self::check::Problem;
pub use self::class::EvidencePolicy;
use self::file::InventoryFile;
pub use self::moonshot::{ChassisTls, MoonshotAccess, MoonshotDefaults, Node as MoonshotNode};
use crate::domain::{TaskclusterName, WorkerGroup, WorkerId};
/// How roller decides a machine answers: ICMP (default) or `tcp:<port>`.
pub use crate::drivers::reachability::Probe as Reachability;
use crate::task::{Needs, Task};

/// The original's `REBOOT_METHODS` default: gentlest first, a human last.
pub const DEFAULT_REBOOT_CHAIN: &[Task] =
    &[Task::SshReboot, Task::IpmiReset, Task::IpmiCycle, Task::SnmpReboot, Task::FileBugzillaBug];

/// A class's `min_boot_secs` when it says nothing: below what real hardware takes from
/// a reboot command to answering (firmware alone takes longer), well above a network blip.
pub const DEFAULT_MIN_BOOT_SECS: u64 = 20;

/// A problem in the inventory, with where it is.
#[derive(Debug, thiserror::Error)]
#[error("inventory {file}: {at}: {message}")]
pub struct InventoryError {
    pub file: String,
    pub at: String,
    pub message: String,
}

/// Where a secret comes from. Resolved at use, never stored in the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl SecretRef {
    /// Read the secret now. The error names the source, never the content.
    pub fn resolve(&self) -> Result<SecretString, String> {
        let value = match self {
            SecretRef::Env(var) => std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?,
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        };
        if value.is_empty() {
            return Err(format!("{} is empty", self.describe()));
        }
        Ok(SecretString::from(value))
    }

    pub fn describe(&self) -> String {
        match self {
            SecretRef::Env(var) => format!("${var}"),
            SecretRef::File(p) => p.display().to_string(),
        }
    }
}

/// IPMI dual bridging (HP Moonshot): transit channel/address, then target channel/address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bridging {
    pub transit_channel: Option<u8>,
    pub transit_address: Option<u8>,
    pub target_channel: u8,
    pub target_address: u8,
}

/// What a hardware class says about every machine in it.
#[derive(Debug, Clone)]
pub struct HardwareClass {
    pub name: String,
    pub reboot: Vec<Task>,
    pub reachability: Reachability,
    pub ipmi_cipher_suite: u8,
    pub ipmi_privilege: String,
    pub ipmi_port: u16,
    pub redfish_verify_tls: bool,
    /// The off time of `snmp_rebootdelay` (the original's Mac mini fix used 60 s).
    pub snmp_reboot_delay: Duration,
    /// The least time a machine of this class needs from a reboot command to answering
    /// again. The reboot chain's proof credits a step only with a return no sooner than
    /// this after the step's command (`actions::reboot`, "What counts as proof").
    pub min_boot: Duration,
    /// How `reimage` sets the next boot to the network; `None`: IPMI when the
    /// machine has it, else Redfish.
    pub network_boot: Option<NetworkBoot>,
    /// The class's own health rule and remediation (`[classes.<name>.health]`).
    pub health: ClassHealth,
    /// Chassis manager port, credentials and TLS its Moonshot nodes share.
    pub moonshot: MoonshotDefaults,
    /// What is captured before a step cuts power (`[classes.<name>.evidence]`).
    pub evidence: EvidencePolicy,
}

/// What a class changes of the fleet's health rule and the medic's remediation;
/// `None` keeps roller's setting (`[health]`, `[medic]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassHealth {
    pub idle_after: Option<Duration>,
    pub running_after: Option<Duration>,
    pub stale_after: Option<Duration>,
    /// The task the medic queues for a hung machine of the class.
    pub remediation: Option<Task>,
}

/// The BMC interface that sets a one-time network (PXE) boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkBoot {
    Ipmi,
    Redfish,
    /// The Moonshot chassis manager's one-time PXE override.
    Moonshot,
}

#[derive(Debug, Clone)]
pub struct SshAccess {
    pub user: String,
    pub key_file: PathBuf,
    pub port: u16,
    /// Known-hosts file; `accept_new` trusts and records a first-seen key.
    pub known_hosts: PathBuf,
    pub accept_new: bool,
}

#[derive(Debug, Clone)]
pub struct IpmiAccess {
    pub address: String,
    pub port: u16,
    pub user: String,
    pub password: SecretRef,
    pub bridging: Option<Bridging>,
}

#[derive(Debug, Clone)]
pub struct PduAccess {
    pub host: String,
    pub port: u16,
    /// The original's outlet string (`AB12`: tower A, infeed B, outlet 12).
    pub outlet: String,
    pub community: SecretRef,
}

#[derive(Debug, Clone)]
pub struct RedfishAccess {
    pub url: String,
    pub user: String,
    pub password: SecretRef,
    pub system: Option<String>,
}

/// A Mac without a BMC, managed by an MDM service: which service, and the device's id there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MdmAccess {
    pub provider: MdmProvider,
    pub device_id: crate::drivers::simplemdm::DeviceId,
}

/// The MDM services roller can ask for a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MdmProvider {
    SimpleMdm,
}

impl MdmProvider {
    pub fn name(self) -> &'static str {
        match self {
            MdmProvider::SimpleMdm => "simplemdm",
        }
    }
}

#[derive(Debug, Clone)]
pub struct IloAccess {
    pub address: String,
    pub port: u16,
    /// iLOs ship self-signed certificates; turning this off is the deployment's explicit choice.
    pub verify_tls: bool,
    pub user: String,
    pub password: SecretRef,
}

/// One managed machine.
#[derive(Debug, Clone)]
pub struct Machine {
    pub id: WorkerId,
    pub group: Option<WorkerGroup>,
    pub class: Arc<HardwareClass>,
    /// FQDN or IP address of the machine itself (not its BMC).
    pub address: String,
    pub ssh: Option<SshAccess>,
    pub ipmi: Option<IpmiAccess>,
    pub pdu: Option<PduAccess>,
    pub redfish: Option<RedfishAccess>,
    pub xen_vm_uuid: Option<String>,
    pub ilo: Option<IloAccess>,
    pub moonshot: Option<MoonshotAccess>,
    pub mdm: Option<MdmAccess>,
    pub bug_cc: Vec<String>,
    /// The worker's Taskcluster provisioner and worker type (for `loan`), when the
    /// request does not name them.
    pub provisioner_id: Option<TaskclusterName>,
    pub worker_type: Option<TaskclusterName>,
    /// The enclosure it shares with others (a Moonshot chassis, a blade enclosure),
    /// for the medic's per-chassis limit and whoever groups machines by chassis: the
    /// machine's `chassis`, else its `[moonshot] chassis`; without either, machines
    /// sharing a BMC address count as one chassis.
    pub chassis: Option<String>,
}

impl Machine {
    /// Whether this machine has what `task` needs; `Err` says what is missing.
    /// Steps that need roller-wide settings (Xen, Bugzilla) are checked by their actions.
    pub fn can_run(&self, task: Task) -> Result<(), &'static str> {
        let has = |ok: bool, missing: &'static str| if ok { Ok(()) } else { Err(missing) };
        match task.spec().needs {
            Needs::Nothing | Needs::Inventory => Ok(()),
            Needs::Ssh => has(self.ssh.is_some(), "no [ssh] for this machine"),
            Needs::Ipmi => has(self.ipmi.is_some(), "no [ipmi] for this machine"),
            Needs::Pdu => has(self.pdu.is_some(), "no [pdu] for this machine"),
            Needs::Redfish => has(self.redfish.is_some(), "no [redfish] for this machine"),
            Needs::BootControl => has(
                self.ipmi.is_some() || self.redfish.is_some() || self.moonshot.is_some(),
                "neither [ipmi] nor [redfish] nor [moonshot] for this machine",
            ),
            Needs::Xen => has(self.xen_vm_uuid.is_some(), "no [xen] for this machine"),
            Needs::Ilo => has(self.ilo.is_some(), "no [ilo] for this machine"),
            Needs::Moonshot => has(self.moonshot.is_some(), "no [moonshot] for this machine"),
            Needs::Mdm => has(self.mdm.is_some(), "no [mdm] for this machine"),
        }
    }

    /// Every secret this machine's configuration refers to, with the field it is for.
    pub fn secrets(&self) -> Vec<(&'static str, &SecretRef)> {
        let mut v = Vec::new();
        if let Some(i) = &self.ipmi {
            v.push(("ipmi.password", &i.password));
        }
        if let Some(p) = &self.pdu {
            v.push(("pdu.community", &p.community));
        }
        if let Some(r) = &self.redfish {
            v.push(("redfish.password", &r.password));
        }
        if let Some(i) = &self.ilo {
            v.push(("ilo.password", &i.password));
        }
        if let Some(m) = &self.moonshot {
            v.push(("moonshot.password", &m.password));
        }
        v
    }
}

/// The inventory in force, swappable at run time (SIGHUP): a job takes a
/// snapshot when it starts and keeps it, so a reload never changes a running job.
#[derive(Clone, Default)]
pub struct InventoryHandle(Arc<std::sync::RwLock<Arc<Inventory>>>);

impl InventoryHandle {
    pub fn new(inventory: Inventory) -> Self {
        Self(Arc::new(std::sync::RwLock::new(Arc::new(inventory))))
    }

    pub fn current(&self) -> Arc<Inventory> {
        // A poisoned lock only means a writer panicked mid-swap of an Arc; the value is whole.
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn replace(&self, inventory: Inventory) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(inventory);
    }
}

impl std::fmt::Debug for InventoryHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inv = self.current();
        write!(f, "Inventory({}: {} machines)", inv.path.display(), inv.machines.len())
    }
}

/// The loaded, validated inventory.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub path: PathBuf,
    /// Domains tried, in order, for a worker id that is not in the inventory.
    pub dns_search: Vec<String>,
    pub classes: BTreeMap<String, Arc<HardwareClass>>,
    pub machines: BTreeMap<WorkerId, Machine>,
}

impl Inventory {
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        let text = std::fs::read_to_string(path).map_err(|e| InventoryError {
            file: path.display().to_string(),
            at: "(file)".into(),
            message: e.to_string(),
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Inventory, InventoryError> {
        let file = path.display().to_string();
        let raw: InventoryFile = toml::from_str(text).map_err(|e| InventoryError {
            file: file.clone(),
            at: "(syntax)".into(),
            message: e.to_string().trim().to_string(),
        })?;
        let err = |at: String, message: String| InventoryError { file: file.clone(), at, message };

        let mut dns_search = Vec::new();
        for (i, d) in raw.dns_search.into_iter().enumerate() {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            if !is_host(&d) {
                return Err(err(format!("dns_search[{i}]"), format!("{d:?} is not a domain name")));
            }
            dns_search.push(d);
        }

        let mut classes = BTreeMap::new();
        for (name, c) in raw.classes {
            let class = class::parse(&name, c, |at, message| err(format!("classes.{name}.{at}"), message))?;
            classes.insert(name, Arc::new(class));
        }
        let default_class = Arc::new(HardwareClass {
            name: "default".into(),
            reboot: DEFAULT_REBOOT_CHAIN.to_vec(),
            reachability: Reachability::Icmp,
            ipmi_cipher_suite: 17,
            ipmi_privilege: "operator".into(),
            ipmi_port: 623,
            redfish_verify_tls: true,
            snmp_reboot_delay: Duration::from_secs(60),
            min_boot: Duration::from_secs(DEFAULT_MIN_BOOT_SECS),
            network_boot: None,
            health: ClassHealth::default(),
            moonshot: MoonshotDefaults::default(),
            evidence: EvidencePolicy::default(),
        });

        let mut machines = BTreeMap::new();
        for (key, m) in raw.machines {
            let at = |field: &str| format!("machines.{key}.{field}");
            let id = WorkerId::parse(&key).map_err(|e| err(format!("machines.{key}"), e.to_string()))?;
            if machines.contains_key(&id) {
                return Err(err(format!("machines.{key}"), "listed twice (worker ids are case-insensitive)".into()));
            }
            let group =
                m.group.map(|g| WorkerGroup::parse(&g)).transpose().map_err(|e| err(at("group"), e.to_string()))?;
            let class = match m.class {
                None => default_class.clone(),
                Some(c) => classes.get(&c).cloned().ok_or_else(|| {
                    err(
                        at("class"),
                        format!("no class {c:?} (known: {})", classes.keys().cloned().collect::<Vec<_>>().join(", ")),
                    )
                })?,
            };
            let address = m.address.unwrap_or_else(|| id.to_string());
            if !is_host(&address) {
                return Err(err(at("address"), format!("{address:?} is not a host name or IP address")));
            }
            let ssh = m
                .ssh
                .map(|s| -> Result<SshAccess, InventoryError> {
                    let accept_new = match s.host_keys.as_deref() {
                        None | Some("known-hosts") => false,
                        Some("accept-new") => true,
                        Some(o) => {
                            return Err(err(at("ssh.host_keys"), format!("{o:?} must be known-hosts or accept-new")));
                        }
                    };
                    Ok(SshAccess {
                        user: name_field(&s.user).map_err(|e| err(at("ssh.user"), e))?,
                        key_file: s.key_file,
                        port: s.port.unwrap_or(22),
                        known_hosts: s
                            .known_hosts
                            .ok_or_else(|| err(at("ssh.known_hosts"), "required: roller verifies host keys".into()))?,
                        accept_new,
                    })
                })
                .transpose()?;
            let ipmi = m
                .ipmi
                .map(|i| -> Result<IpmiAccess, InventoryError> {
                    host_field(&i.address).map_err(|e| err(at("ipmi.address"), e))?;
                    Ok(IpmiAccess {
                        address: i.address,
                        port: i.port.unwrap_or(class.ipmi_port),
                        user: name_field(&i.user).map_err(|e| err(at("ipmi.user"), e))?,
                        password: secret_ref(i.password_env, i.password_file)
                            .map_err(|e| err(at("ipmi.password_*"), e))?,
                        bridging: i.bridging,
                    })
                })
                .transpose()?;
            let pdu = m
                .pdu
                .map(|p| -> Result<PduAccess, InventoryError> {
                    host_field(&p.host).map_err(|e| err(at("pdu.host"), e))?;
                    outlet_field(&p.outlet).map_err(|e| err(at("pdu.outlet"), e))?;
                    Ok(PduAccess {
                        host: p.host,
                        port: p.port.unwrap_or(161),
                        outlet: p.outlet,
                        community: secret_ref(p.community_env, p.community_file)
                            .map_err(|e| err(at("pdu.community_*"), e))?,
                    })
                })
                .transpose()?;
            let redfish = m
                .redfish
                .map(|r| -> Result<RedfishAccess, InventoryError> {
                    if !(r.url.starts_with("https://") || r.url.starts_with("http://")) || r.url.contains('@') {
                        return Err(err(at("redfish.url"), "must be http(s)://host[:port] without credentials".into()));
                    }
                    Ok(RedfishAccess {
                        url: r.url.trim_end_matches('/').to_string(),
                        user: name_field(&r.user).map_err(|e| err(at("redfish.user"), e))?,
                        password: secret_ref(r.password_env, r.password_file)
                            .map_err(|e| err(at("redfish.password_*"), e))?,
                        system: r.system,
                    })
                })
                .transpose()?;
            let xen_vm_uuid = m
                .xen
                .map(|x| {
                    uuid::Uuid::parse_str(&x.vm_uuid)
                        .map(|u| u.hyphenated().to_string())
                        .map_err(|_| err(at("xen.vm_uuid"), format!("{:?} is not a UUID", x.vm_uuid)))
                })
                .transpose()?;
            let ilo = m
                .ilo
                .map(|i| -> Result<IloAccess, InventoryError> {
                    host_field(&i.address).map_err(|e| err(at("ilo.address"), e))?;
                    Ok(IloAccess {
                        address: i.address,
                        port: i.port.unwrap_or(443),
                        verify_tls: i.verify_tls.unwrap_or(true),
                        user: name_field(&i.user).map_err(|e| err(at("ilo.user"), e))?,
                        password: secret_ref(i.password_env, i.password_file)
                            .map_err(|e| err(at("ilo.password_*"), e))?,
                    })
                })
                .transpose()?;
            let moonshot = m
                .moonshot
                .map(|ms| moonshot::access(ms, &class.name, &class.moonshot, |field, message| err(at(field), message)))
                .transpose()?;
            let mdm = m.mdm.map(mdm_field).transpose().map_err(|(f, e)| err(at(&format!("mdm.{f}")), e))?;
            let tc_name = |field: &str, v: Option<String>| -> Result<Option<TaskclusterName>, InventoryError> {
                v.map(|v| TaskclusterName::parse(field, &v).map_err(|e| err(at(field), e.to_string()))).transpose()
            };
            let provisioner_id = tc_name("provisioner_id", m.provisioner_id)?;
            let worker_type = tc_name("worker_type", m.worker_type)?;
            let chassis = match m.chassis {
                Some(c) if c.is_empty() || c.len() > 255 || c.chars().any(|c| c.is_control() || c.is_whitespace()) => {
                    return Err(err(at("chassis"), format!("{c:?} must be 1–255 characters without spaces")));
                }
                // The chassis manager is the enclosure, unless the machine names one itself.
                c => c.or_else(|| moonshot.as_ref().map(|ms| ms.chassis.clone())),
            };
            for (n, cc) in m.bug_cc.iter().enumerate() {
                if !cc.contains('@') || cc.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(err(at(&format!("bug_cc[{n}]")), format!("{cc:?} is not an email address")));
                }
            }
            machines.insert(
                id.clone(),
                Machine {
                    id,
                    group,
                    class,
                    address,
                    ssh,
                    ipmi,
                    pdu,
                    redfish,
                    xen_vm_uuid,
                    ilo,
                    moonshot,
                    mdm,
                    bug_cc: m.bug_cc,
                    provisioner_id,
                    worker_type,
                    chassis,
                },
            );
        }
        Ok(Inventory { path: path.to_path_buf(), dns_search, classes, machines })
    }

    /// The machine for a worker id: exact, else by the id's first DNS label
    /// (the original looked up short names first).
    pub fn machine(&self, id: &WorkerId) -> Option<&Machine> {
        self.machines.get(id).or_else(|| {
            let short = id.as_str().split('.').next()?;
            self.machines.get(&WorkerId::parse(short).ok()?)
        })
    }
}

fn is_host(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && (s.parse::<std::net::IpAddr>().is_ok()
            || s.split('.').all(|l| {
                !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            }))
}

fn host_field(s: &str) -> Result<(), String> {
    if is_host(s) { Ok(()) } else { Err(format!("{s:?} is not a host name or IP address")) }
}

fn name_field(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 64 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{s:?} is not a user name"));
    }
    Ok(s.to_string())
}

/// The driver's own parser, so an inventory that validates never holds an outlet that
/// `snmp_*` would refuse mid-chain (`DA1`, `AA0` and `AA1000` used to pass the shape check here).
fn outlet_field(s: &str) -> Result<(), String> {
    crate::drivers::snmp::Outlet::parse(s).map(|_| ()).map_err(|e| e.to_string())
}

/// `[mdm]`: the provider (only SimpleMDM so far, the default) and a positive device id.
/// An error names the field.
fn mdm_field(m: file::MdmFile) -> Result<MdmAccess, (&'static str, String)> {
    let provider = match m.provider.as_deref() {
        None | Some("simplemdm") => MdmProvider::SimpleMdm,
        Some(other) => return Err(("provider", format!("{other:?} is not an MDM roller knows (known: simplemdm)"))),
    };
    let device_id = u64::try_from(m.device_id)
        .ok()
        .and_then(crate::drivers::simplemdm::DeviceId::new)
        .ok_or(("device_id", format!("{} is not a device id (a positive integer)", m.device_id)))?;
    Ok(MdmAccess { provider, device_id })
}

fn secret_ref(env: Option<String>, file: Option<PathBuf>) -> Result<SecretRef, String> {
    match (env, file) {
        (Some(v), None) if !v.is_empty() => Ok(SecretRef::Env(v)),
        (None, Some(f)) => Ok(SecretRef::File(f)),
        (Some(_), Some(_)) => Err("give one of *_env and *_file, not both".into()),
        _ => Err("missing: give *_env (an environment variable) or *_file (a file)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Inventory, InventoryError> {
        Inventory::parse(Path::new("/etc/roller/inventory.toml"), text)
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn the_documented_example_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/inventory.example.toml");
        let inv = Inventory::load(&path).expect("docs/inventory.example.toml is valid");
        let ms = inv.machine(&WorkerId::parse("t-linux64-ms-001").unwrap()).expect("the Moonshot node");
        assert_eq!(ms.class.name, "moonshot");
        let ipmi = ms.ipmi.as_ref().unwrap();
        assert_eq!(ipmi.bridging.unwrap().target_address, 0x72);
        assert_eq!(ipmi.password, SecretRef::Env("MOONSHOT_IPMI_PASSWORD".into()));
        assert_eq!(ms.chassis.as_deref(), Some("mdc1-moonshot-ch07"));
        assert_eq!(ms.class.health.idle_after, Some(Duration::from_secs(30 * 60)));
        assert_eq!(ms.class.health.remediation, Some(Task::Reboot));
        let cm = inv.machine(&WorkerId::parse("t-linux64-ms-050").unwrap()).expect("the chassis manager's node");
        let node = cm.moonshot.as_ref().unwrap();
        assert_eq!((node.node.to_string(), node.user.as_str()), ("c5n1".into(), "Administrator"), "from its class");
        assert_eq!(cm.chassis.as_deref(), Some("moon-chassis-2.inband.releng.mdc1.mozilla.com"));
        assert_eq!(cm.class.network_boot, Some(NetworkBoot::Moonshot));
        let mac = inv.machine(&WorkerId::parse("macmini-r8-1.test.releng.mdc1.mozilla.com").unwrap()).unwrap();
        assert_eq!(mac.id.as_str(), "macmini-r8-1", "found by the first DNS label");
        assert_eq!(mac.class.reboot, vec![Task::SshReboot, Task::SnmpRebootDelay, Task::FileBugzillaBug]);
        assert_eq!(mac.pdu.as_ref().unwrap().outlet, "AB12");
        assert!(!inv.dns_search.is_empty());
        let m4 = inv.machine(&WorkerId::parse("macmini-m4-81").unwrap()).unwrap();
        let mdm = m4.mdm.expect("the M4 Mac's [mdm]");
        assert_eq!((mdm.provider, mdm.device_id.get()), (MdmProvider::SimpleMdm, 1234567));
        assert_eq!(m4.class.reboot, [Task::SshReboot, Task::MdmRestart, Task::SnmpRebootDelay, Task::FileBugzillaBug]);
        assert_eq!(m4.can_run(Task::MdmRestart), Ok(()));
        assert_eq!(mac.can_run(Task::MdmRestart), Err("no [mdm] for this machine"));
    }

    #[test]
    fn a_class_evidence_policy_has_defaults_and_is_checked_by_field() {
        let inv = parse(
            "[classes.c.evidence]\nbudget_secs = 6\nsel_entries = 0\nsol = false\n[classes.d.evidence]\n\
             budget_secs = 2\n[machines.w1]\nclass = \"c\"\n[machines.w2]\n[machines.w3]\nclass = \"d\"\n",
        )
        .unwrap();
        let policy = |id: &str| inv.machine(&WorkerId::parse(id).unwrap()).unwrap().class.evidence.clone();
        let c = policy("w1");
        assert_eq!((c.budget, c.sel_entries, c.sol, c.probes), (Duration::from_secs(6), 0, false, true));
        assert_eq!(policy("w2"), EvidencePolicy::default(), "the default class");
        assert_eq!(EvidencePolicy::default().budget, Duration::from_secs(10));
        assert_eq!(policy("w3").console, Duration::from_secs(1), "an unset window shrinks to a small budget");
        for (text, field, words) in [
            ("budget_secs = 0", "evidence.budget_secs", "1 to 60"),
            ("budget_secs = 61", "evidence.budget_secs", "1 to 60"),
            ("sel_entries = 201", "evidence.sel_entries", "0 (none) to 200"),
            ("console_bytes = 100", "evidence.console_bytes", "512 to 262144"),
            ("console_secs = 8", "evidence.console_secs", "at most 7"),
            ("console_secs = 0", "evidence.console_secs", "at least 1"),
            ("sol_bytes = 1", "unknown field", "sol_bytes"),
        ] {
            let e = error(&format!("[classes.c.evidence]\n{text}\n"));
            assert!(e.contains(field) && e.contains(words), "{text}: {e}");
        }
        // Without SOL the console window is not checked against the budget.
        assert!(parse("[classes.c.evidence]\nsol = false\nconsole_secs = 30\n").is_ok());
    }

    #[test]
    fn a_class_health_rule_is_checked_and_names_the_field() {
        let inv = parse("[classes.c.health]\nrunning_after_mins = 240\n[machines.w1]\nclass = \"c\"\n").unwrap();
        let m = inv.machine(&WorkerId::parse("w1").unwrap()).unwrap();
        assert_eq!(m.class.health.running_after, Some(Duration::from_secs(240 * 60)));
        assert_eq!(m.class.health.idle_after, None, "unset: roller's [health] setting applies");
        let e = error("[classes.c.health]\nidle_after_mins = 0\n");
        assert!(e.contains("classes.c.health.idle_after_mins") && e.contains("1 to 10080"), "{e}");
        let e = error("[classes.c.health]\nremediation = \"ping\"\n");
        assert!(e.contains("classes.c.health.remediation") && e.contains("restarts a machine"), "{e}");
        let e = error("[machines.w1]\nchassis = \"has space\"\n");
        assert!(e.contains("machines.w1.chassis"), "{e}");
    }

    #[test]
    fn steps_without_configuration_are_not_runnable() {
        let inv = parse("[machines.w1.pdu]\nhost = \"pdu1\"\noutlet = \"AA1\"\ncommunity_env = \"C\"\n").unwrap();
        let m = inv.machine(&WorkerId::parse("w1").unwrap()).unwrap();
        assert_eq!(m.can_run(Task::SnmpReboot), Ok(()));
        assert_eq!(m.can_run(Task::SshReboot), Err("no [ssh] for this machine"));
        assert_eq!(m.can_run(Task::IpmiCycle), Err("no [ipmi] for this machine"));
        assert_eq!(m.secrets().len(), 1);
    }

    #[test]
    fn defaults_follow_the_original() {
        let inv = parse("[machines.w1]\n").unwrap();
        let m = inv.machine(&WorkerId::parse("W1").unwrap()).unwrap();
        assert_eq!(m.class.reboot, DEFAULT_REBOOT_CHAIN);
        assert_eq!(m.address, "w1");
        assert_eq!(m.class.reachability, Reachability::Icmp);
        assert_eq!(m.class.min_boot, Duration::from_secs(DEFAULT_MIN_BOOT_SECS));
        assert!(m.ssh.is_none() && m.ipmi.is_none() && m.pdu.is_none());
    }

    #[test]
    fn min_boot_secs_is_the_classs_own() {
        let inv = parse("[classes.vm]\nmin_boot_secs = 8\n[machines.w1]\nclass = \"vm\"\n[machines.w2]\n").unwrap();
        let class_of = |id: &str| inv.machine(&WorkerId::parse(id).unwrap()).unwrap().class.min_boot;
        assert_eq!(class_of("w1"), Duration::from_secs(8));
        assert_eq!(class_of("w2"), Duration::from_secs(DEFAULT_MIN_BOOT_SECS), "the default class");
    }

    #[test]
    fn errors_name_the_file_the_machine_and_the_field() {
        for (text, at) in [
            ("[machines.w1]\nclas = \"x\"\n", "(syntax)"),
            ("[machines.\"a b\"]\n", "machines.a b"),
            ("[machines.w1]\nclass = \"nope\"\n", "machines.w1.class"),
            ("[machines.w1]\naddress = \"a;b\"\n", "machines.w1.address"),
            ("[machines.w1.ipmi]\naddress = \"bmc\"\nuser = \"admin\"\n", "machines.w1.ipmi.password_*"),
            (
                "[machines.w1.ipmi]\naddress = \"bmc\"\nuser = \"admin\"\npassword_env = \"A\"\npassword_file = \"/x\"\n",
                "machines.w1.ipmi.password_*",
            ),
            ("[machines.w1.pdu]\nhost = \"pdu1\"\noutlet = \"12\"\ncommunity_env = \"C\"\n", "machines.w1.pdu.outlet"),
            ("[machines.w1.ssh]\nuser = \"roller\"\nkey_file = \"/k\"\n", "machines.w1.ssh.known_hosts"),
            ("[machines.w1.xen]\nvm_uuid = \"nope\"\n", "machines.w1.xen.vm_uuid"),
            ("[machines.w1]\nbug_cc = [\"not-an-address\"]\n", "machines.w1.bug_cc[0]"),
            ("[classes.c]\nreboot = [\"ssh_reboot\", \"pray\"]\n", "classes.c.reboot"),
            ("[classes.c.ipmi]\ncipher_suite = 0\n", "classes.c.ipmi.cipher_suite"),
            ("[classes.c]\nreachability = \"udp:1\"\n", "classes.c.reachability"),
            ("[classes.c]\nnetwork_boot = \"usb\"\n", "classes.c.network_boot"),
            ("[classes.c]\nmin_boot_secs = 0\n", "classes.c.min_boot_secs"),
            ("[classes.c]\nmin_boot_secs = 86400\n", "classes.c.min_boot_secs"),
            ("[machines.W1]\n[machines.w1]\n", "listed twice"),
            ("[machines.w1.mdm]\ndevice_id = 0\n", "machines.w1.mdm.device_id"),
            ("[machines.w1.mdm]\ndevice_id = -5\n", "machines.w1.mdm.device_id"),
            ("[machines.w1.mdm]\nprovider = \"jamf\"\ndevice_id = 5\n", "machines.w1.mdm.provider"),
            ("[machines.w1.mdm]\ndevice_id = \"5\"\n", "(syntax)"),
        ] {
            let e = error(text);
            assert!(e.starts_with("inventory /etc/roller/inventory.toml: "), "{e}");
            assert!(e.contains(at), "want {at:?} in {e:?}");
        }
    }

    #[test]
    fn outlets_are_checked_as_the_snmp_driver_reads_them() {
        let with_outlet =
            |o: &str| parse(&format!("[machines.w1.pdu]\nhost = \"p\"\noutlet = \"{o}\"\ncommunity_env = \"C\"\n"));
        for ok in ["AB12", "ab12", "CC999", "128", "A3007", "AA010"] {
            assert!(with_outlet(ok).is_ok(), "{ok}");
        }
        // Shaped like an outlet, but no Sentry3 tower, infeed or outlet has these numbers.
        for (bad, why) in
            [("DA1", "tower"), ("0A1", "tower"), ("AZ1", "infeed"), ("AA0", "1 to 999"), ("AA1000", "1 to 999")]
        {
            let e = with_outlet(bad).unwrap_err().to_string();
            assert!(e.contains("machines.w1.pdu.outlet") && e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn secrets_resolve_at_use_and_errors_never_show_them() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\n").unwrap();
        let r = SecretRef::File(f.clone());
        use secrecy::ExposeSecret;
        assert_eq!(r.resolve().unwrap().expose_secret(), "s3cret");
        let missing = SecretRef::Env("ROLLER_TEST_SURELY_UNSET_VARIABLE".into());
        assert!(missing.resolve().unwrap_err().contains("ROLLER_TEST_SURELY_UNSET_VARIABLE"));
        std::fs::write(&f, "").unwrap();
        assert!(r.resolve().unwrap_err().contains("empty"));
    }
}
