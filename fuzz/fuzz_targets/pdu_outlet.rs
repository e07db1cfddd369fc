//! The PDU outlet string (src/drivers/snmp.rs `Outlet::parse`, e.g. `AB12`): an accepted
//! outlet is in range, re-parses from its digit spelling, maps to the Sentry3 OIDs and is
//! accepted by the inventory too; a refusal is `Err` with the input's echo bounded.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use roller::drivers::snmp::Outlet;
use roller::inventory::Inventory;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let o = match Outlet::parse(&s) {
        Ok(o) => o,
        Err(e) => {
            // Outlet strings can come from requests; errors quote at most a few characters.
            assert!(e.to_string().len() < 512, "{e}");
            return;
        }
    };
    assert!((1..=9).contains(&o.tower) && (1..=9).contains(&o.infeed) && (1..=999).contains(&o.outlet), "{o:?}");
    assert_eq!(Outlet::parse(&format!("{}{}{}", o.tower, o.infeed, o.outlet)), Ok(o));
    assert_eq!(s.parse::<Outlet>(), Ok(o));
    assert_eq!(o.control_oid().to_id_string(), format!("1.3.6.1.4.1.1718.3.2.3.1.11.{o}"));
    assert_eq!(o.status_oid().to_id_string(), format!("1.3.6.1.4.1.1718.3.2.3.1.5.{o}"));
    // Accepted here means only ASCII letters and digits, so no TOML escaping is needed.
    let inventory = format!("[machines.w1.pdu]\nhost = \"pdu1\"\noutlet = \"{s}\"\ncommunity_env = \"C\"\n");
    if let Err(e) = Inventory::parse(Path::new("inventory.toml"), &inventory) {
        panic!("the driver accepts outlet {s:?} but the inventory refuses it: {e}");
    }
});
