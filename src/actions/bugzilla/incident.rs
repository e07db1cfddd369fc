//! One bug per incident, not per cartridge. When several machines of one chassis
//! (or behind one PDU) reach the bug step within `[bugzilla] incident_window_secs`,
//! the people at the data centre get ONE bug, "[<DC>] <group>: several machines need
//! hands", listing each machine with its job, its evidence summary and its attempt
//! log, and blocking each machine's tracker; the per-machine bugs it replaces are
//! resolved as its duplicates. A dead PSU or a tripped PDU is one problem with one
//! fix, and 45 bugs for it bury the fix.
//!
//! The decision (join an open incident bug, file one over the siblings' open bugs,
//! or file a machine's own bug) is serialised per group within one process
//! ([`lock_for`]), so two bug steps in one runner cannot both file. Two runner
//! processes deciding in the same instant can still file two bugs for one incident:
//! Bugzilla has no "create unless exists", and the search that would find the other's
//! bug runs before it exists. The next machine of the group then joins the newest
//! of them; a person merges the other.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::super::report::{BugReport, IncidentSummary};
use super::super::{ActionContext, ActionError, BugzillaSettings, Target};
use super::{BugFields, names};
use crate::drivers::bugzilla::{Bug, BugzillaError};
use crate::inventory::Machine;

/// How much of an attempt log or an earlier bug's first comment goes into the incident bug.
const EXCERPT: usize = 1500;

/// What groups machines into one incident: their chassis (a Moonshot node's is its
/// chassis manager, unless it names one), else their PDU. A machine with neither is
/// never grouped.
pub fn group_of(m: &Machine) -> Option<String> {
    match (&m.chassis, &m.pdu) {
        (Some(c), _) => Some(format!("chassis {c}")),
        (None, Some(p)) => Some(format!("pdu {}", p.host)),
        (None, None) => None,
    }
}

/// The incident bug's summary: fixed, so a search by it finds the group's bug.
pub fn summary(dc: &str, group: &str) -> String {
    format!("[{dc}] {group}: several machines need hands")
}

/// Filed no longer ago than `window` (a bug whose age is unknown is not).
fn recent(b: &Bug, window: Duration, now: DateTime<Utc>) -> bool {
    b.creation_time.is_some_and(|t| (now - t).to_std().map_or(true, |age| age <= window))
}

/// The one lock per group: held over the whole decision. Entries die with their last
/// holder and are pruned on the next use, so the map holds only groups in flight.
pub(super) fn lock_for(group: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: LazyLock<Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>> = LazyLock::new(Mutex::default);
    let mut map = LOCKS.lock().unwrap_or_else(|p| p.into_inner());
    map.retain(|_, w| w.strong_count() > 0);
    if let Some(lock) = map.get(group).and_then(Weak::upgrade) {
        return lock;
    }
    let lock = Arc::new(tokio::sync::Mutex::new(()));
    map.insert(group.to_string(), Arc::downgrade(&lock));
    lock
}

/// The machine at the bug step, as the incident bug lists it.
pub(super) struct This<'a> {
    pub machine: &'a Machine,
    pub host: &'a str,
    pub dc: &'a str,
    pub job: &'a str,
    pub tracker: u64,
    pub tracker_reopened: bool,
    pub attempt_log: &'a str,
}

/// Join the group's recent open incident bug, or file one over the recent open bugs of
/// the group's other machines; `None` when there is neither (the machine gets its own bug).
#[tracing::instrument(skip_all, fields(group = %group, host = %this.host))]
pub(super) async fn join_or_file(
    group: &str,
    this: &This<'_>,
    target: &Target,
    cx: &ActionContext,
    bz: &BugzillaSettings,
) -> Result<Option<BugReport>, ActionError> {
    let client = &bz.client;
    let fail = |e: BugzillaError| ActionError::driver("file_bugzilla_bug", e);
    let r = &bz.reboot;
    let now = Utc::now();
    let report = |bug: u64, filed: bool, machines: Vec<String>| BugReport {
        bug,
        url: client.show_url(bug),
        filed,
        tracker: this.tracker,
        tracker_reopened: this.tracker_reopened,
        incident: Some(IncidentSummary { group: group.to_string(), machines }),
    };
    let entry = entry(this, cx);

    // 1. The group's incident bug, open and recent: this machine joins it.
    let summary = summary(this.dc, group);
    let open = client.find_open(&summary, &r.product, &r.component, &cx.cancel).await.map_err(fail)?;
    if let Some(bug) = open.iter().filter(|b| recent(b, bz.incident_window, now)).max_by_key(|b| b.id) {
        let change = json!({ "comment": { "body": entry }, "blocks": { "add": [this.tracker] } });
        client.update(bug.id, &change, &cx.cancel).await.map_err(fail)?;
        cx.log(format!("incident bug {} \"{summary}\" is open: added {} to it", bug.id, this.host));
        return Ok(Some(report(bug.id, false, vec![this.host.to_string()])));
    }

    // 2. The other machines' own bugs, open and recent: one incident, theirs its duplicates.
    let inventory = cx.settings.inventory.current();
    let mut merged: Vec<(String, Bug)> = Vec::new();
    let mut cc: BTreeSet<String> = this.machine.bug_cc.iter().cloned().collect();
    for sibling in inventory.machines.values() {
        if sibling.id == this.machine.id || group_of(sibling).as_deref() != Some(group) {
            continue;
        }
        let (host, alias, dc) = names(sibling, target);
        let fields = BugFields { host, alias: &alias, dc: &dc, ip: &sibling.address, requester: "", job: "", log: "" };
        let theirs = r.summary_for(&fields);
        let open = client.find_open(&theirs, &r.product, &r.component, &cx.cancel).await.map_err(fail)?;
        for bug in open.into_iter().filter(|b| recent(b, bz.incident_window, now)) {
            cc.extend(sibling.bug_cc.iter().cloned());
            merged.push((host.to_string(), bug));
        }
    }
    if merged.is_empty() {
        return Ok(None);
    }

    let mut description = format!(
        "Several machines of {group} reached roller's bug step within {} minutes: probably one \
         problem (power, network, the enclosure) rather than one per machine. Filed by roller.\n\n\
         ## {}\n",
        bz.incident_window.as_secs() / 60,
        this.host
    );
    description.push_str(&entry);
    let mut blocks = vec![this.tracker];
    for (host, bug) in &merged {
        let first = client.first_comment(bug.id, &cx.cancel).await.map_err(fail)?.unwrap_or_default();
        description.push_str(&format!(
            "\n\n## {host}: was bug {} ({})\n{}",
            bug.id,
            client.show_url(bug.id),
            tail(&first, EXCERPT)
        ));
        blocks.extend(bug.blocks.iter().copied().filter(|b| !blocks.contains(b)).collect::<Vec<_>>());
    }
    let fields = json!({
        "product": r.product,
        "component": r.component,
        "summary": summary,
        "version": "unspecified",
        "description": description,
        "cc": cc,
        "blocks": blocks,
    });
    let id = client.create(&fields, &cx.cancel).await.map_err(fail)?;
    cx.log(format!("filed incident bug {id} \"{summary}\" for {} machines of {group}", merged.len() + 1));
    for (host, bug) in &merged {
        let dupe = json!({
            "status": "RESOLVED",
            "resolution": "DUPLICATE",
            "dupe_of": id,
            "comment": { "body": format!("{host} is one of several machines of {group} down at once: followed in bug {id}.") },
        });
        // The incident bug exists and lists this one; a bug left open is noise, not a lost report.
        match client.update(bug.id, &dupe, &cx.cancel).await {
            Ok(()) => cx.log(format!("bug {} ({host}) resolved as a duplicate of {id}", bug.id)),
            Err(e) => cx.log(format!("bug {} ({host}) could not be resolved as a duplicate of {id}: {e}", bug.id)),
        }
    }
    let mut machines = vec![this.host.to_string()];
    machines.extend(merged.into_iter().map(|(host, _)| host).filter(|h| h != this.host));
    machines.dedup();
    Ok(Some(report(id, true, machines)))
}

/// This machine's part of the incident bug: its job, its evidence summary, its attempts.
fn entry(this: &This<'_>, cx: &ActionContext) -> String {
    let mut out = format!("{} needs hands (roller job {}).\n", this.host, this.job);
    if let Some(e) = cx.evidence() {
        out.push_str(&format!("Evidence: {}\n", e.summary()));
    }
    out.push_str("Attempts:\n");
    out.push_str(&tail(this.attempt_log, EXCERPT));
    out
}

/// The last `max` bytes of `s` (at a character boundary), marked when cut.
fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut at = s.len() - max;
    while !s.is_char_boundary(at) {
        at += 1;
    }
    format!("[…]{}", &s[at..])
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::domain::WorkerId;
    use crate::inventory::Inventory;

    #[test]
    fn machines_group_by_chassis_then_moonshot_chassis_then_pdu_and_otherwise_not_at_all() {
        let inv = Inventory::parse(
            Path::new("/etc/roller/inventory.toml"),
            "[classes.ms]\nreboot = [\"moonshot_reset\"]\n[classes.ms.moonshot]\nuser = \"A\"\npassword_env = \"P\"\n\
             verify_tls = false\n\
             [machines.named]\nchassis = \"encl-7\"\n[machines.named.pdu]\nhost = \"pdu1\"\noutlet = \"AA1\"\n\
             community_env = \"C\"\n\
             [machines.ms5]\nclass = \"ms\"\n[machines.ms5.moonshot]\nchassis = \"cm-3\"\nnode = 5\n\
             [machines.plugged]\n[machines.plugged.pdu]\nhost = \"pdu2\"\noutlet = \"AA2\"\ncommunity_env = \"C\"\n\
             [machines.alone]\n",
        )
        .unwrap();
        let group = |id: &str| group_of(inv.machine(&WorkerId::parse(id).unwrap()).unwrap());
        assert_eq!(group("named").as_deref(), Some("chassis encl-7"), "its chassis before its PDU");
        assert_eq!(group("ms5").as_deref(), Some("chassis cm-3"));
        assert_eq!(group("plugged").as_deref(), Some("pdu pdu2"));
        assert_eq!(group("alone"), None);
    }

    #[test]
    fn only_a_bug_filed_within_the_window_is_recent() {
        let now = Utc::now();
        let bug = |age: Option<i64>| Bug {
            id: 1,
            summary: String::new(),
            status: "NEW".into(),
            resolution: String::new(),
            is_open: true,
            creation_time: age.map(|a| now - chrono::Duration::seconds(a)),
            blocks: Vec::new(),
        };
        let window = Duration::from_secs(1800);
        assert!(recent(&bug(Some(60)), window, now));
        assert!(recent(&bug(Some(-5)), window, now), "a Bugzilla clock slightly ahead");
        assert!(!recent(&bug(Some(1801)), window, now));
        assert!(!recent(&bug(None), window, now));
    }

    #[test]
    fn a_long_log_keeps_its_end() {
        assert_eq!(tail("short", 10), "short");
        // Five bytes from the end falls inside the "é": the cut moves past it.
        assert_eq!(tail("aaaaé-end", 5), "[…]-end");
    }
}
