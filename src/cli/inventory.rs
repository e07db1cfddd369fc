//! `roller inventory check` and `roller explain`: what an inventory says, and
//! what `reboot` would do for a machine, without touching hardware.

use std::process::ExitCode;

use super::output::say;
use crate::config::Settings;
use crate::domain::WorkerId;

/// `roller inventory check`: every machine's reboot chain and every secret it refers to.
pub fn inventory_check(actions: &crate::actions::ActionSettings, file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let inv = crate::inventory::Inventory::load(file)?;
    let mut problems = 0;
    say!("{}: {} machines, {} classes", file.display(), inv.machines.len(), inv.classes.len());
    for m in inv.machines.values() {
        let group = m.group.as_ref().map(|g| g.to_string()).unwrap_or_else(|| "-".into());
        say!("{} (group {group}, class {}, address {})", m.id, m.class.name, m.address);
        for p in crate::actions::reboot::plan(m, actions) {
            match p.skip {
                None => say!("  reboot step {:<18} runs", p.step.name()),
                Some(why) => say!("  reboot step {:<18} skipped: {why}", p.step.name()),
            }
        }
        for (field, secret) in m.secrets() {
            if let Err(e) = secret.resolve() {
                problems += 1;
                say!("  PROBLEM {field}: {e}");
            }
        }
    }
    if problems > 0 {
        say!("{problems} problem(s)");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `roller explain`: the reboot chain as it would run, from the inventory alone.
pub fn explain(settings: Settings, worker_id: &str, file: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let id = WorkerId::parse(worker_id)?;
    let path = match file.or(settings.inventory_path.as_deref()) {
        Some(p) => p.to_path_buf(),
        None => anyhow::bail!("no inventory: pass --inventory FILE or set ROLLER_INVENTORY"),
    };
    let inv = crate::inventory::Inventory::load(&path)?;
    let Some(m) = inv.machine(&id) else {
        say!("{id} is not in the inventory {}: only `ping` runs on it.", path.display());
        if id.as_str().parse::<std::net::IpAddr>().is_err() {
            let names = crate::drivers::dns::candidates(id.as_str(), &inv.dns_search);
            say!("ping looks it up in DNS as {}: the first name with an address wins.", names.join(", "));
        }
        return Ok(ExitCode::from(1));
    };
    let r = &settings.reboot;
    let group = m.group.as_ref().map(|g| g.to_string()).unwrap_or_else(|| "-".into());
    say!("{} (group {group}, class {})", m.id, m.class.name);
    say!("  address  {}, probed by {}", m.address, m.class.reachability);
    say!(
        "  proof    stops answering within {}s (DOWN_TIMEOUT) and answers again within {}s (UP_TIMEOUT);",
        r.down_timeout.as_secs(),
        r.up_timeout.as_secs()
    );
    say!("           after a power cycle the BMC or PDU saw, or if it was not answering, only coming back counts");
    say!("  reboot chain, in order:");
    let plan = crate::actions::reboot::plan(m, &crate::startup::action_settings(&settings)?);
    for (n, p) in plan.iter().enumerate() {
        let what = crate::actions::reboot::describe(m, p.step);
        match &p.skip {
            None => say!("    {}. {:<18} runs: {what}", n + 1, p.step.name()),
            Some(why) => say!("    {}. {:<18} skipped: {why}", n + 1, p.step.name()),
        }
    }
    if plan.iter().all(|p| p.skip.is_some()) {
        say!("  nothing in this chain can run: `reboot` will fail at once");
    }
    Ok(ExitCode::SUCCESS)
}
