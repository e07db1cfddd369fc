//! The inventory file's shape (serde): what `inventory.toml` may say, before any
//! of it is checked. `Inventory::parse` turns it into the validated types.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::Bridging;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InventoryFile {
    #[serde(default)]
    pub dns_search: Vec<String>,
    #[serde(default)]
    pub classes: BTreeMap<String, ClassFile>,
    #[serde(default)]
    pub machines: BTreeMap<String, MachineFile>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct ClassFile {
    pub reboot: Option<Vec<String>>,
    pub reachability: Option<String>,
    pub ipmi: IpmiClassFile,
    pub redfish: RedfishClassFile,
    pub snmp_reboot_delay_secs: Option<u64>,
    pub min_boot_secs: Option<u64>,
    pub network_boot: Option<String>,
    pub health: ClassHealthFile,
    pub moonshot: MoonshotClassFile,
    pub evidence: ClassEvidenceFile,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct ClassEvidenceFile {
    pub enabled: Option<bool>,
    pub budget_secs: Option<u64>,
    pub probes: Option<bool>,
    pub sel_entries: Option<u32>,
    pub sol: Option<bool>,
    pub console_bytes: Option<usize>,
    pub console_secs: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct ClassHealthFile {
    pub idle_after_mins: Option<u64>,
    pub running_after_mins: Option<u64>,
    pub stale_after_mins: Option<u64>,
    pub remediation: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct IpmiClassFile {
    pub cipher_suite: Option<u8>,
    pub privilege: Option<String>,
    pub port: Option<u16>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RedfishClassFile {
    pub verify_tls: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MachineFile {
    pub group: Option<String>,
    pub class: Option<String>,
    pub address: Option<String>,
    pub ssh: Option<SshFile>,
    pub ipmi: Option<IpmiFile>,
    pub pdu: Option<PduFile>,
    pub redfish: Option<RedfishFile>,
    pub xen: Option<XenFile>,
    pub ilo: Option<IloFile>,
    pub moonshot: Option<MoonshotFile>,
    pub mdm: Option<MdmFile>,
    #[serde(default)]
    pub bug_cc: Vec<String>,
    pub provisioner_id: Option<String>,
    pub worker_type: Option<String>,
    pub chassis: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SshFile {
    pub user: String,
    pub key_file: PathBuf,
    pub port: Option<u16>,
    pub known_hosts: Option<PathBuf>,
    pub host_keys: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IpmiFile {
    pub address: String,
    pub port: Option<u16>,
    pub user: String,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub bridging: Option<Bridging>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PduFile {
    pub host: String,
    pub port: Option<u16>,
    pub outlet: String,
    pub community_env: Option<String>,
    pub community_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RedfishFile {
    pub url: String,
    pub user: String,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub system: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct XenFile {
    pub vm_uuid: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IloFile {
    pub address: String,
    pub port: Option<u16>,
    pub verify_tls: Option<bool>,
    pub user: String,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
}

/// `[machines.<id>.moonshot]`: the node and its chassis; the rest may come from the class.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MoonshotFile {
    pub chassis: Option<String>,
    pub node: Option<NodeFile>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub verify_tls: Option<bool>,
    pub ca_file: Option<PathBuf>,
}

/// `node = 5` or `node = "c5n1"`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum NodeFile {
    Number(i64),
    Text(String),
}

/// `[classes.<name>.moonshot]`, and the same keys in a machine's own `[moonshot]`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct MoonshotClassFile {
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub verify_tls: Option<bool>,
    pub ca_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MdmFile {
    pub provider: Option<String>,
    /// Signed, so a negative id is refused with the field named, not as a TOML type error.
    pub device_id: i64,
}
