//! `roller inventory check`, `roller check-config` and `roller explain`: what an
//! inventory and the configuration say, every problem they have, and what `reboot`
//! would do for a machine, without touching hardware or the network.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use super::output::say;
use crate::actions::ActionSettings;
use crate::config::Settings;
use crate::domain::WorkerId;
use crate::inventory::Inventory;

/// `roller inventory check`: every machine's reboot chain, and every problem of every
/// machine (`Machine::problems`: secrets, ssh key and known_hosts, driver limits).
/// `settings_error`: why roller's configuration did not load, when it did not; the
/// Xen and Bugzilla steps are then shown as skipped. An inventory that does not parse
/// stops at its first error (the caller exits 2); problems exit 1, after all of them.
pub fn inventory_check(
    actions: &ActionSettings,
    settings_error: Option<String>,
    file: &Path,
) -> anyhow::Result<ExitCode> {
    let inv = Inventory::load(file)?;
    say!("{}: {} machines, {} classes", file.display(), inv.machines.len(), inv.classes.len());
    let mut problems = Vec::new();
    for m in inv.machines.values() {
        let group = m.group.as_ref().map(|g| g.to_string()).unwrap_or_else(|| "-".into());
        say!("{} (group {group}, class {}, address {})", m.id, m.class.name, m.address);
        for p in crate::actions::reboot::plan(m, actions) {
            match p.skip {
                None => say!("  reboot step {:<18} runs", p.step.name()),
                Some(why) => say!("  reboot step {:<18} skipped: {why}", p.step.name()),
            }
        }
        for p in m.problems() {
            say!("  PROBLEM {}: {}", p.field, p.message);
            problems.push(p.to_string());
        }
    }
    if let Some(e) = settings_error {
        say!(
            "note: roller's configuration did not load, so the steps that need it are shown as skipped \
             (`roller check-config` checks it): {e}"
        );
    }
    notes(&inv, actions);
    Ok(verdict(&problems))
}

/// `roller check-config`: the settings (secrets redacted), then everything `serve` builds
/// from them without touching hardware or the network (`startup::check_clients`), and the
/// configured inventory with the checks of `roller inventory check`. Every problem is
/// listed; any exits 1. Settings that do not load are the caller's exit 2.
pub fn check_config(settings: &Settings) -> ExitCode {
    say!("{settings:#?}");
    let mut problems: Vec<String> = crate::startup::check_clients(settings)
        .into_iter()
        .map(|e| format!("{e}; `roller serve` refuses to start with it"))
        .collect();
    match &settings.inventory_path {
        None => say!("inventory: none configured (ROLLER_INVENTORY / inventory): only `ping` runs, on any address"),
        Some(path) => match Inventory::load(path) {
            Err(e) => {
                say!("inventory {}: does not load (below)", path.display());
                problems.push(format!(
                    "{e}; `roller serve` refuses to start with it: fix the file, or the path in ROLLER_INVENTORY / \
                     inventory"
                ));
            }
            Ok(inv) => {
                say!("inventory {}: {} machines, {} classes", path.display(), inv.machines.len(), inv.classes.len());
                problems.extend(inv.problems().iter().map(ToString::to_string));
                // A client that did not build is a problem above; the plan then shows its steps skipped.
                notes(&inv, &crate::startup::action_settings(settings).unwrap_or_default());
            }
        },
    }
    verdict(&problems)
}

/// Reboot steps machines ask for that roller's own configuration skips (no XenAPI, no
/// Bugzilla), with how many machines each: said, not counted as problems, since a
/// deployment may leave them out on purpose (the default chain ends with the bug).
fn notes(inv: &Inventory, actions: &ActionSettings) {
    let mut skipped: BTreeMap<(&str, String), usize> = BTreeMap::new();
    for m in inv.machines.values() {
        for p in crate::actions::reboot::plan(m, actions) {
            // A step the machine itself has no configuration for is the inventory's choice.
            if let Some(why) = p.skip.filter(|_| m.can_run(p.step).is_ok()) {
                *skipped.entry((p.step.name(), why)).or_default() += 1;
            }
        }
    }
    for ((step, why), n) in skipped {
        say!("note: {step} is skipped on {n} machine(s): {why}");
    }
}

/// Every problem, one per line, then their count: exit 1; none: exit 0.
fn verdict(problems: &[String]) -> ExitCode {
    if problems.is_empty() {
        say!("no problems");
        return ExitCode::SUCCESS;
    }
    say!("problems:");
    for p in problems {
        say!("  {p}");
    }
    say!("{} problem(s)", problems.len());
    ExitCode::from(1)
}

/// `roller explain`: the reboot chain as it would run, from the inventory alone.
pub fn explain(settings: Settings, worker_id: &str, file: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let id = WorkerId::parse(worker_id)?;
    let path = match file.or(settings.inventory_path.as_deref()) {
        Some(p) => p.to_path_buf(),
        None => anyhow::bail!("no inventory: pass --inventory FILE or set ROLLER_INVENTORY"),
    };
    let inv = Inventory::load(&path)?;
    let Some(m) = inv.machine(&id) else {
        say!("{id} is not in the inventory {}: only `ping` runs on it.", path.display());
        if id.as_str().parse::<std::net::IpAddr>().is_err() {
            let names = crate::drivers::dns::candidates(id.as_str(), &inv.dns_search);
            say!("ping looks it up in DNS as {}: the first name with an address wins.", names.join(", "));
        }
        return Ok(ExitCode::from(1));
    };
    let services = crate::actions::reboot::Services::of(&crate::startup::action_settings(&settings)?);
    for line in crate::actions::reboot::explain::explain(m, services, &settings.reboot).lines() {
        say!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `roller explain`'s last part: the machine's path checks as a running roller has them
/// (last check time, each path ok or failed with the reason). A roller that does not
/// answer is said, not an error: explain touches nothing and needs no server.
pub async fn explain_paths(client: &super::client::Client, id: &WorkerId) {
    let a = match client.get(&format!("/api/v1/machines/{id}/paths")).await {
        Ok(a) => a,
        Err(e) => {
            say!("  path checks: cannot ask a running roller ({e:#})");
            return;
        }
    };
    if a.status != 200 {
        say!("  path checks: roller answered HTTP {}: {}", a.status, a.body["detail"].as_str().unwrap_or(""));
        return;
    }
    let Ok(m) = serde_json::from_value::<crate::api::paths::MachinePaths>(a.body) else {
        say!("  path checks: roller's answer is not what this version reads");
        return;
    };
    let kinds: Vec<&str> = m.remediation_paths.iter().map(|k| k.as_str()).collect();
    say!("  paths its remediation could use: {}", if kinds.is_empty() { "none".into() } else { kinds.join(", ") });
    match m.last.as_ref().and_then(|r| r.checked_at.map(|t| (r, t))) {
        None => say!("  path checks: never checked (`roller paths check {id}` checks it now)"),
        Some((r, at)) => {
            say!("  path checks: last checked {at}");
            super::paths::print_record(r);
        }
    }
    if m.requested.is_some() {
        say!("  a path check is asked for and not started yet");
    }
    if let Some(why) = &m.no_path {
        say!("  NO PATH: {why}");
    }
}
