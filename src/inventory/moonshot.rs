//! `[moonshot]`: a machine that is a node of an HP Moonshot chassis, driven through the
//! chassis manager's REST API. The machine names its chassis and node; the port,
//! credentials and TLS settings may come from its class's `[classes.<c>.moonshot]`
//! (every cartridge of a class usually shares them), the machine's own winning.

use std::path::PathBuf;

use super::file::{MoonshotClassFile, MoonshotFile, NodeFile};
use super::{SecretRef, host_field, name_field, secret_ref};
pub use crate::drivers::moonshot::{ChassisTls, Node};

/// How a machine's chassis manager is reached.
#[derive(Debug, Clone)]
pub struct MoonshotAccess {
    /// The chassis manager's host name or address; also the machine's `chassis` (the
    /// medic's blast radius) unless the machine names one itself.
    pub chassis: String,
    pub port: u16,
    pub node: Node,
    pub user: String,
    pub password: SecretRef,
    pub tls: ChassisTls,
}

/// What a class says about its machines' chassis managers; each machine may override it.
#[derive(Debug, Clone, Default)]
pub struct MoonshotDefaults {
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password: Option<SecretRef>,
    pub verify_tls: Option<bool>,
    pub ca_file: Option<PathBuf>,
}

/// The class's `[moonshot]`; `err(field, message)` names the field under the class.
pub(super) fn defaults<E>(c: MoonshotClassFile, err: &impl Fn(&str, String) -> E) -> Result<MoonshotDefaults, E> {
    let password = match (c.password_env, c.password_file) {
        (None, None) => None,
        (env, file) => Some(secret_ref(env, file).map_err(|e| err("moonshot.password_*", e))?),
    };
    let user = c.user.map(|u| name_field(&u)).transpose().map_err(|e| err("moonshot.user", e))?;
    if c.port == Some(0) {
        return Err(err("moonshot.port", "0 is not a port".into()));
    }
    tls(c.verify_tls, c.ca_file.as_ref()).map_err(|e| err("moonshot.ca_file", e))?;
    Ok(MoonshotDefaults { port: c.port, user, password, verify_tls: c.verify_tls, ca_file: c.ca_file })
}

/// A machine's `[moonshot]` over its class's; `err(field, message)` names the field
/// under `machines.<id>`, and `class` the class table to mention.
pub(super) fn access<E>(
    m: MoonshotFile,
    class_name: &str,
    class: &MoonshotDefaults,
    err: impl Fn(&str, String) -> E,
) -> Result<MoonshotAccess, E> {
    let or_class = |what: &str| format!("missing: give {what} here or in [classes.{class_name}.moonshot]");
    let chassis = m.chassis.ok_or_else(|| {
        err("moonshot.chassis", "required: the chassis manager's host name (moon-chassis-<c>.inband…)".into())
    })?;
    host_field(&chassis).map_err(|e| err("moonshot.chassis", e))?;
    let node = match m.node {
        None => Err("required: the node, 5 or \"c5n1\" (cartridge 1 to 45)".to_string()),
        Some(NodeFile::Number(n)) => u64::try_from(n)
            .map_err(|_| format!("cartridge {n} does not exist: a Moonshot chassis has cartridges 1 to 45"))
            .and_then(Node::cartridge),
        Some(NodeFile::Text(t)) => Node::parse(&t),
    }
    .map_err(|e| err("moonshot.node", e))?;
    let password = match (m.password_env, m.password_file) {
        (None, None) => class
            .password
            .clone()
            .ok_or_else(|| err("moonshot.password_*", or_class("password_env or password_file")))?,
        (env, file) => secret_ref(env, file).map_err(|e| err("moonshot.password_*", e))?,
    };
    let user = match m.user {
        Some(u) => name_field(&u).map_err(|e| err("moonshot.user", e))?,
        None => class.user.clone().ok_or_else(|| err("moonshot.user", or_class("user")))?,
    };
    let port = m.port.or(class.port).unwrap_or(443);
    if port == 0 {
        return Err(err("moonshot.port", "0 is not a port".into()));
    }
    let ca_file = m.ca_file.or_else(|| class.ca_file.clone());
    let tls = tls(m.verify_tls.or(class.verify_tls), ca_file.as_ref()).map_err(|e| err("moonshot.ca_file", e))?;
    Ok(MoonshotAccess { chassis, port, node, user, password, tls })
}

fn tls(verify: Option<bool>, ca_file: Option<&PathBuf>) -> Result<ChassisTls, String> {
    match (verify.unwrap_or(true), ca_file) {
        (true, ca) => Ok(ChassisTls::Verify { ca_file: ca.cloned() }),
        (false, None) => Ok(ChassisTls::Insecure),
        (false, Some(_)) => {
            Err("give ca_file (verify against it) or verify_tls = false (do not verify), not both".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{Inventory, SecretRef};
    use super::*;
    use crate::domain::WorkerId;
    use crate::task::Task;

    fn parse(text: &str) -> Result<Inventory, String> {
        Inventory::parse(Path::new("/etc/roller/inventory.toml"), text).map_err(|e| e.to_string())
    }

    const CLASS: &str = "[classes.ms]\nreboot = [\"moonshot_reset\"]\n[classes.ms.moonshot]\nuser = \"Administrator\"\n\
                         password_env = \"MOONSHOT_PW\"\nca_file = \"/etc/roller/moonshot-ca.pem\"\n";

    fn machine(extra: &str) -> String {
        format!(
            "{CLASS}[machines.ms5]\nclass = \"ms\"\n[machines.ms5.moonshot]\nchassis = \"moon-chassis-3.inband\"\n{extra}"
        )
    }

    #[test]
    fn a_node_takes_its_chassis_managers_settings_from_its_class_and_its_chassis_is_the_enclosure() {
        for node in ["node = 5", "node = \"c5\"", "node = \"C5N1\""] {
            let inv = parse(&machine(node)).unwrap();
            let m = inv.machine(&WorkerId::parse("ms5").unwrap()).unwrap();
            let ms = m.moonshot.as_ref().unwrap();
            assert_eq!(
                (ms.chassis.as_str(), ms.port, ms.node.to_string()),
                ("moon-chassis-3.inband", 443, "c5n1".into())
            );
            assert_eq!((ms.user.as_str(), &ms.password), ("Administrator", &SecretRef::Env("MOONSHOT_PW".into())));
            assert_eq!(ms.tls, ChassisTls::Verify { ca_file: Some("/etc/roller/moonshot-ca.pem".into()) });
            assert_eq!(m.chassis.as_deref(), Some("moon-chassis-3.inband"), "the medic groups by it");
            assert_eq!(m.can_run(Task::MoonshotReset), Ok(()));
            assert_eq!(m.can_run(Task::Reimage), Ok(()), "it can set a network boot");
            assert_eq!(m.secrets(), vec![("moonshot.password", &ms.password)]);
        }
        // The machine's own keys win; a chassis the machine names itself is kept.
        let inv = parse(&machine(
            "node = 7\nport = 8443\nuser = \"roller\"\npassword_file = \"/pw\"\nverify_tls = false\nca_file = \"/x\"\n",
        ));
        assert!(inv.unwrap_err().contains("machines.ms5.moonshot.ca_file: give ca_file"), "both is a contradiction");
        let text = format!(
            "{CLASS}[classes.ms.health]\n[machines.ms7]\nclass = \"ms\"\nchassis = \"mdc1-ch03\"\n[machines.ms7.moonshot]\n\
             chassis = \"10.1.2.3\"\nnode = 7\nport = 8443\nuser = \"roller\"\npassword_file = \"/pw\"\n"
        );
        let inv = parse(&text).unwrap();
        let m = inv.machine(&WorkerId::parse("ms7").unwrap()).unwrap();
        let ms = m.moonshot.as_ref().unwrap();
        assert_eq!((ms.port, ms.user.as_str(), &ms.password), (8443, "roller", &SecretRef::File("/pw".into())));
        assert_eq!(m.chassis.as_deref(), Some("mdc1-ch03"));
        let inv = parse(
            "[machines.w1.moonshot]\nchassis = \"c1\"\nnode = 1\nuser = \"u\"\npassword_env = \"P\"\nverify_tls = false\n",
        )
        .unwrap();
        let w1 = inv.machine(&WorkerId::parse("w1").unwrap()).unwrap();
        assert_eq!(w1.moonshot.as_ref().unwrap().tls, ChassisTls::Insecure, "an explicit opt-out");
        assert_eq!(w1.can_run(Task::IpmiReset), Err("no [ipmi] for this machine"));
        let plain = parse("[machines.w2]\n").unwrap();
        let w2 = plain.machine(&WorkerId::parse("w2").unwrap()).unwrap();
        assert_eq!(w2.can_run(Task::MoonshotReset), Err("no [moonshot] for this machine"));
    }

    #[test]
    fn a_bad_node_or_a_missing_chassis_names_the_field_and_what_is_allowed() {
        for (extra, field, why) in [
            ("node = 46", "moonshot.node", "cartridges 1 to 45"),
            ("node = 0", "moonshot.node", "cartridges 1 to 45"),
            ("node = -3", "moonshot.node", "cartridge -3 does not exist"),
            ("node = \"c46n1\"", "moonshot.node", "cartridges 1 to 45"),
            ("node = \"x5\"", "moonshot.node", "give 5, \"c5\" or \"c5n1\""),
            ("", "moonshot.node", "required"),
            ("node = 5\nport = 0", "moonshot.port", "not a port"),
            ("node = 5\nuser = \"a b\"", "moonshot.user", "not a user name"),
            ("node = 5\npassword_env = \"A\"\npassword_file = \"/b\"", "moonshot.password_*", "not both"),
            ("node = 5\nslot = 5", "(syntax)", "unknown field `slot`"),
        ] {
            let e = parse(&machine(extra)).unwrap_err();
            assert!(e.contains(&format!("machines.ms5.{field}")) || field == "(syntax)", "{extra}: {e}");
            assert!(e.contains(why), "{extra}: want {why:?} in {e}");
        }
        let e = parse("[machines.w1.moonshot]\nnode = 5\nuser = \"u\"\npassword_env = \"P\"\n").unwrap_err();
        assert!(e.contains("machines.w1.moonshot.chassis: required"), "{e}");
        let e = parse("[machines.w1.moonshot]\nchassis = \"a;b\"\nnode = 5\n").unwrap_err();
        assert!(e.contains("machines.w1.moonshot.chassis") && e.contains("not a host name"), "{e}");
        let e = parse("[machines.w1.moonshot]\nchassis = \"c1\"\nnode = 5\npassword_env = \"P\"\n").unwrap_err();
        assert!(
            e.contains("machines.w1.moonshot.user: missing: give user here or in [classes.default.moonshot]"),
            "{e}"
        );
        let e = parse("[machines.w1.moonshot]\nchassis = \"c1\"\nnode = 5\nuser = \"u\"\n").unwrap_err();
        assert!(e.contains("machines.w1.moonshot.password_*: missing"), "{e}");
        let e = parse("[classes.c.moonshot]\nverify_tls = false\nca_file = \"/ca\"\n").unwrap_err();
        assert!(e.contains("classes.c.moonshot.ca_file"), "{e}");
        let e = parse("[classes.c]\nnetwork_boot = \"pxe\"\n").unwrap_err();
        assert!(e.contains("\"moonshot\""), "{e}");
    }
}
