//! The inventory (src/inventory.rs): refusals are `Err`, and whatever validates holds what
//! the rest of roller relies on: worker ids that re-parse to themselves, machines found by
//! their id, outlet strings the SNMP driver accepts, normalized search domains.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use roller::domain::WorkerId;
use roller::drivers::snmp::Outlet;
use roller::inventory::{Inventory, RebootStep};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let inv = match Inventory::parse(Path::new("/etc/roller/inventory.toml"), &text) {
        Ok(inv) => inv,
        Err(e) => {
            assert!(e.to_string().starts_with("inventory /etc/roller/inventory.toml: "), "{e}");
            return;
        }
    };
    for d in &inv.dns_search {
        assert!(!d.is_empty() && !d.ends_with('.') && *d == d.to_ascii_lowercase(), "dns_search {d:?}");
    }
    for (id, m) in &inv.machines {
        assert_eq!(&m.id, id);
        assert_eq!(WorkerId::parse(id.as_str()).as_ref(), Ok(id));
        assert!(inv.machine(id).is_some_and(|found| found.id == *id));
        assert!(inv.classes.get(&m.class.name).is_some() || m.class.name == "default");
        if let Some(p) = &m.pdu {
            if let Err(e) = Outlet::parse(&p.outlet) {
                panic!("the inventory accepted outlet {:?}, which the SNMP driver refuses: {e}", p.outlet);
            }
        }
        for step in RebootStep::ALL {
            let _ = m.can_run(*step);
        }
        let _ = m.secrets();
    }
});
