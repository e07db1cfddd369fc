//! A typed builder for roller's inventory file (the schema is `docs/inventory.example.toml`,
//! validated by `src/inventory.rs`), serialised with serde, so a test states the machines
//! it needs instead of formatting TOML by hand:
//!
//! ```
//! use roller_testkit::inventory::{Class, Inventory, Ipmi, Machine};
//!
//! let toml = Inventory::new()
//!     .class(Class::new("moonshot").reboot(&["ssh_reboot", "ipmi_reset"]).reachability("tcp:22").ipmi_cipher_suite(3))
//!     .machine(
//!         Machine::new("ms1")
//!             .group("lab")
//!             .class("moonshot")
//!             .address("127.0.0.1")
//!             .ipmi(Ipmi::new("127.0.0.1", "admin").port(9623).password_file("/tmp/pw")),
//!     )
//!     .to_toml();
//! assert!(toml.contains("[machines.ms1.ipmi]"));
//! ```
//!
//! Only what a test sets is written: every key left out is roller's default, as in a
//! hand-written file. Files that must be wrong in a way this builder cannot express (bad
//! TOML, unknown keys) are still written as text by the tests that check the parser.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

/// The whole file: DNS search domains, hardware classes and machines, each by name.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Inventory {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dns_search: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    classes: BTreeMap<String, Class>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    machines: BTreeMap<String, Machine>,
}

impl Inventory {
    pub fn new() -> Inventory {
        Inventory::default()
    }

    pub fn dns_search(mut self, domains: &[&str]) -> Self {
        self.dns_search = domains.iter().map(|d| d.to_string()).collect();
        self
    }

    /// Add a class; a name given twice is a mistake in the test.
    pub fn class(mut self, class: Class) -> Self {
        let name = class.name.clone();
        assert!(self.classes.insert(name.clone(), class).is_none(), "class {name} given twice");
        self
    }

    /// Add a machine; a name given twice is a mistake in the test.
    pub fn machine(mut self, machine: Machine) -> Self {
        let name = machine.name.clone();
        assert!(self.machines.insert(name.clone(), machine).is_none(), "machine {name} given twice");
        self
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("an inventory serialises to TOML")
    }

    /// Write it to `path`.
    pub fn write_to(&self, path: &Path) {
        std::fs::write(path, self.to_toml()).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Write it as `dir/inventory.toml` and return that path as text (what `ROLLER_INVENTORY`
    /// and `--inventory` take).
    pub fn write(&self, dir: &Path) -> String {
        let path = dir.join("inventory.toml");
        self.write_to(&path);
        path.display().to_string()
    }
}

fn path_text(p: impl AsRef<Path>) -> String {
    p.as_ref().to_str().unwrap_or_else(|| panic!("{} is not UTF-8", p.as_ref().display())).to_string()
}

/// `[classes.<name>]`: what every machine of a kind shares.
#[derive(Debug, Clone, Serialize)]
pub struct Class {
    #[serde(skip)]
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reboot: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reachability: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    snmp_reboot_delay_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_boot_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    network_boot: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ipmi: Option<ClassIpmi>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redfish: Option<ClassRedfish>,
    #[serde(skip_serializing_if = "Option::is_none")]
    moonshot: Option<Moonshot>,
    evidence: Option<Evidence>,
}

/// `[classes.<name>.evidence]`: what roller takes before a step cuts power. Only the
/// keys set are written.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Evidence {
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    budget_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    probes: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sel_entries: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sol: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    console_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    console_secs: Option<u64>,
}

impl Evidence {
    /// Nothing set: roller's defaults.
    pub fn new() -> Evidence {
        Evidence::default()
    }

    pub fn enabled(mut self, on: bool) -> Self {
        self.enabled = Some(on);
        self
    }

    pub fn budget_secs(mut self, secs: u64) -> Self {
        self.budget_secs = Some(secs);
        self
    }

    pub fn probes(mut self, on: bool) -> Self {
        self.probes = Some(on);
        self
    }

    pub fn sel_entries(mut self, n: u32) -> Self {
        self.sel_entries = Some(n);
        self
    }

    pub fn sol(mut self, on: bool) -> Self {
        self.sol = Some(on);
        self
    }

    pub fn console_bytes(mut self, n: usize) -> Self {
        self.console_bytes = Some(n);
        self
    }

    pub fn console_secs(mut self, secs: u64) -> Self {
        self.console_secs = Some(secs);
        self
    }
}

#[derive(Debug, Clone, Default, Serialize)]
struct ClassIpmi {
    #[serde(skip_serializing_if = "Option::is_none")]
    cipher_suite: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    privilege: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
}

#[derive(Debug, Clone, Default, Serialize)]
struct ClassRedfish {
    #[serde(skip_serializing_if = "Option::is_none")]
    verify_tls: Option<bool>,
}

impl Class {
    /// A class with nothing set: an empty `[classes.<name>]` table, all defaults.
    pub fn new(name: &str) -> Class {
        Class {
            name: name.into(),
            reboot: None,
            reachability: None,
            snmp_reboot_delay_secs: None,
            min_boot_secs: None,
            network_boot: None,
            ipmi: None,
            redfish: None,
            moonshot: None,
            evidence: None,
        }
    }

    /// The reboot chain; an empty one is written as `reboot = []` (no steps at all).
    pub fn reboot(mut self, steps: &[&str]) -> Self {
        self.reboot = Some(steps.iter().map(|s| s.to_string()).collect());
        self
    }

    /// `icmp` or `tcp:<port>`.
    pub fn reachability(mut self, probe: &str) -> Self {
        self.reachability = Some(probe.into());
        self
    }

    pub fn snmp_reboot_delay_secs(mut self, secs: u64) -> Self {
        self.snmp_reboot_delay_secs = Some(secs);
        self
    }

    /// The least time from a reboot command to the machine answering again that the reboot
    /// chain's proof accepts (roller's default: 20 s). Fake hosts that reboot in seconds need less.
    pub fn min_boot_secs(mut self, secs: u64) -> Self {
        self.min_boot_secs = Some(secs);
        self
    }

    /// `ipmi` or `redfish`.
    pub fn network_boot(mut self, how: &str) -> Self {
        self.network_boot = Some(how.into());
        self
    }

    pub fn ipmi_cipher_suite(mut self, suite: u8) -> Self {
        self.ipmi.get_or_insert_with(ClassIpmi::default).cipher_suite = Some(suite);
        self
    }

    pub fn ipmi_privilege(mut self, privilege: &str) -> Self {
        self.ipmi.get_or_insert_with(ClassIpmi::default).privilege = Some(privilege.into());
        self
    }

    pub fn ipmi_port(mut self, port: u16) -> Self {
        self.ipmi.get_or_insert_with(ClassIpmi::default).port = Some(port);
        self
    }

    pub fn redfish_verify_tls(mut self, verify: bool) -> Self {
        self.redfish.get_or_insert_with(ClassRedfish::default).verify_tls = Some(verify);
        self
    }

    /// `[classes.<name>.moonshot]`: what its machines' `[moonshot]` tables leave out
    /// (start from [`Moonshot::defaults`]).
    pub fn moonshot(mut self, defaults: Moonshot) -> Self {
        self.moonshot = Some(defaults);
        self
    }

    pub fn evidence(mut self, evidence: Evidence) -> Self {
        self.evidence = Some(evidence);
        self
    }
}

/// `[machines.<worker id>]` and its access tables.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    #[serde(skip)]
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    bug_cc: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provisioner_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    worker_type: Option<String>,
    /// A plain value: TOML wants it before the machine's tables.
    #[serde(skip_serializing_if = "Option::is_none")]
    chassis: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ssh: Option<Ssh>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ipmi: Option<Ipmi>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pdu: Option<Pdu>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redfish: Option<Redfish>,
    #[serde(skip_serializing_if = "Option::is_none")]
    xen: Option<Xen>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ilo: Option<Ilo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    moonshot: Option<Moonshot>,
    mdm: Option<Mdm>,
}

impl Machine {
    /// A machine with only its name: no group, the default class, its name as address.
    pub fn new(name: &str) -> Machine {
        Machine {
            name: name.into(),
            group: None,
            class: None,
            address: None,
            bug_cc: Vec::new(),
            provisioner_id: None,
            worker_type: None,
            ssh: None,
            ipmi: None,
            pdu: None,
            redfish: None,
            xen: None,
            ilo: None,
            moonshot: None,
            mdm: None,
            chassis: None,
        }
    }

    /// The enclosure it shares with others (`chassis = ...`).
    pub fn chassis(mut self, chassis: &str) -> Self {
        self.chassis = Some(chassis.into());
        self
    }

    pub fn group(mut self, group: &str) -> Self {
        self.group = Some(group.into());
        self
    }

    pub fn class(mut self, class: &str) -> Self {
        self.class = Some(class.into());
        self
    }

    pub fn address(mut self, address: &str) -> Self {
        self.address = Some(address.into());
        self
    }

    pub fn bug_cc(mut self, cc: &[&str]) -> Self {
        self.bug_cc = cc.iter().map(|c| c.to_string()).collect();
        self
    }

    /// The Taskcluster pool (`provisioner_id`, `worker_type`) that `loan` quarantines in.
    pub fn pool(mut self, provisioner_id: &str, worker_type: &str) -> Self {
        self.provisioner_id = Some(provisioner_id.into());
        self.worker_type = Some(worker_type.into());
        self
    }

    pub fn ssh(mut self, ssh: Ssh) -> Self {
        self.ssh = Some(ssh);
        self
    }

    pub fn ipmi(mut self, ipmi: Ipmi) -> Self {
        self.ipmi = Some(ipmi);
        self
    }

    pub fn pdu(mut self, pdu: Pdu) -> Self {
        self.pdu = Some(pdu);
        self
    }

    pub fn redfish(mut self, redfish: Redfish) -> Self {
        self.redfish = Some(redfish);
        self
    }

    /// `[xen] vm_uuid`.
    pub fn xen(mut self, vm_uuid: &str) -> Self {
        self.xen = Some(Xen { vm_uuid: vm_uuid.into() });
        self
    }

    pub fn ilo(mut self, ilo: Ilo) -> Self {
        self.ilo = Some(ilo);
        self
    }

    pub fn moonshot(mut self, moonshot: Moonshot) -> Self {
        self.moonshot = Some(moonshot);
        self
    }

    /// `[mdm] device_id` in SimpleMDM (the default provider).
    pub fn mdm(mut self, device_id: u64) -> Self {
        self.mdm = Some(Mdm { provider: None, device_id });
        self
    }
}

/// `[machines.<id>.ssh]`.
#[derive(Debug, Clone, Serialize)]
pub struct Ssh {
    user: String,
    key_file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    known_hosts: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_keys: Option<String>,
}

impl Ssh {
    pub fn new(user: &str, key_file: impl AsRef<Path>) -> Ssh {
        Ssh { user: user.into(), key_file: path_text(key_file), port: None, known_hosts: None, host_keys: None }
    }

    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    pub fn known_hosts(mut self, path: impl AsRef<Path>) -> Self {
        self.known_hosts = Some(path_text(path));
        self
    }

    /// `known-hosts` or `accept-new`.
    pub fn host_keys(mut self, policy: &str) -> Self {
        self.host_keys = Some(policy.into());
        self
    }
}

/// `[machines.<id>.ipmi]`.
#[derive(Debug, Clone, Serialize)]
pub struct Ipmi {
    address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    password_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bridging: Option<Bridging>,
}

/// `bridging = { … }`: Moonshot's (dual) bridging to a cartridge node.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Bridging {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transit_channel: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transit_address: Option<u8>,
    pub target_channel: u8,
    pub target_address: u8,
}

impl Ipmi {
    pub fn new(address: &str, user: &str) -> Ipmi {
        Ipmi {
            address: address.into(),
            port: None,
            user: user.into(),
            password_env: None,
            password_file: None,
            bridging: None,
        }
    }

    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    pub fn password_env(mut self, var: &str) -> Self {
        self.password_env = Some(var.into());
        self
    }

    pub fn password_file(mut self, path: impl AsRef<Path>) -> Self {
        self.password_file = Some(path_text(path));
        self
    }

    pub fn bridging(mut self, bridging: Bridging) -> Self {
        self.bridging = Some(bridging);
        self
    }
}

/// `[machines.<id>.pdu]`: a ServerTech outlet.
#[derive(Debug, Clone, Serialize)]
pub struct Pdu {
    host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    outlet: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    community_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    community_file: Option<String>,
}

impl Pdu {
    pub fn new(host: &str, outlet: &str) -> Pdu {
        Pdu { host: host.into(), port: None, outlet: outlet.into(), community_env: None, community_file: None }
    }

    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    pub fn community_env(mut self, var: &str) -> Self {
        self.community_env = Some(var.into());
        self
    }

    pub fn community_file(mut self, path: impl AsRef<Path>) -> Self {
        self.community_file = Some(path_text(path));
        self
    }
}

/// `[machines.<id>.redfish]`.
#[derive(Debug, Clone, Serialize)]
pub struct Redfish {
    url: String,
    user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    password_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
}

impl Redfish {
    pub fn new(url: &str, user: &str) -> Redfish {
        Redfish { url: url.into(), user: user.into(), password_env: None, password_file: None, system: None }
    }

    pub fn password_env(mut self, var: &str) -> Self {
        self.password_env = Some(var.into());
        self
    }

    pub fn password_file(mut self, path: impl AsRef<Path>) -> Self {
        self.password_file = Some(path_text(path));
        self
    }

    pub fn system(mut self, system: &str) -> Self {
        self.system = Some(system.into());
        self
    }
}

#[derive(Debug, Clone, Serialize)]
struct Mdm {
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<String>,
    device_id: u64,
}

#[derive(Debug, Clone, Serialize)]
struct Xen {
    vm_uuid: String,
}

/// `[machines.<id>.ilo]`.
#[derive(Debug, Clone, Serialize)]
pub struct Ilo {
    address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verify_tls: Option<bool>,
    user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    password_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password_file: Option<String>,
}

impl Ilo {
    pub fn new(address: &str, user: &str) -> Ilo {
        Ilo {
            address: address.into(),
            port: None,
            verify_tls: None,
            user: user.into(),
            password_env: None,
            password_file: None,
        }
    }

    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    pub fn verify_tls(mut self, verify: bool) -> Self {
        self.verify_tls = Some(verify);
        self
    }

    pub fn password_env(mut self, var: &str) -> Self {
        self.password_env = Some(var.into());
        self
    }

    pub fn password_file(mut self, path: impl AsRef<Path>) -> Self {
        self.password_file = Some(path_text(path));
        self
    }
}

/// `[machines.<id>.moonshot]` (a node behind an HP Moonshot chassis manager), or a
/// class's `[classes.<name>.moonshot]` defaults.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Moonshot {
    #[serde(skip_serializing_if = "Option::is_none")]
    chassis: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<NodeValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verify_tls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_file: Option<String>,
}

/// `node = 5` or `node = "c5n1"`, as the inventory allows both.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
enum NodeValue {
    Number(i64),
    Text(String),
}

impl Moonshot {
    /// Cartridge `cartridge` (`node = <n>`) of `chassis`.
    pub fn new(chassis: &str, cartridge: i64) -> Moonshot {
        Moonshot { chassis: Some(chassis.into()), node: Some(NodeValue::Number(cartridge)), ..Moonshot::default() }
    }

    /// A class's defaults: nothing set yet.
    pub fn defaults() -> Moonshot {
        Moonshot::default()
    }

    /// The node as text (`"c5n1"`, `"c5"`).
    pub fn node_name(mut self, node: &str) -> Self {
        self.node = Some(NodeValue::Text(node.into()));
        self
    }

    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.into());
        self
    }

    pub fn password_env(mut self, var: &str) -> Self {
        self.password_env = Some(var.into());
        self
    }

    pub fn password_file(mut self, path: impl AsRef<Path>) -> Self {
        self.password_file = Some(path_text(path));
        self
    }

    pub fn verify_tls(mut self, verify: bool) -> Self {
        self.verify_tls = Some(verify);
        self
    }

    pub fn ca_file(mut self, path: impl AsRef<Path>) -> Self {
        self.ca_file = Some(path_text(path));
        self
    }
}
