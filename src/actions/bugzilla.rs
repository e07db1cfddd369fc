//! `file_bugzilla_bug`: tell the people at the data centre that a machine needs
//! hands. The last step of the reboot chain, and a task of its own.
//!
//! Like the original: the machine has a long-lived problem-tracking bug whose
//! alias is its first host-name label (created if missing, reopened if closed),
//! and an open "<host> is unreachable" bug that blocks it. Unlike the original,
//! a second failure comments on the open bug instead of filing another, the
//! bugs are built as JSON by serde (a quote in a log line cannot break the
//! request), and the API key only ever travels in its header. Machines of one
//! chassis or PDU failing together share one incident bug (`incident.rs`).

pub mod incident;
mod template;

use serde_json::json;

use super::report::{BugReport, Report};
use super::{ActionContext, ActionError, BugzillaSettings, Subject, Target};
use crate::drivers::bugzilla::BugzillaError;
use crate::inventory::Machine;
pub use template::{BugFields, BugTemplate};

pub async fn run(on: &Subject, cx: &ActionContext) -> Result<Report, ActionError> {
    let m = on.machine()?;
    Ok(file(m, &on.target, cx, "filed on request; roller attempted no reboot in this job").await?.into())
}

pub(crate) async fn file(
    m: &Machine,
    target: &Target,
    cx: &ActionContext,
    attempt_log: &str,
) -> Result<BugReport, ActionError> {
    let bz = settings(cx)?;
    let client = &bz.client;
    let fail = |e: BugzillaError| ActionError::driver("file_bugzilla_bug", e);
    let (host, alias, dc) = names(m, target);
    let (requester, job) = match &cx.job {
        Some(j) => (j.requester.as_str(), j.id.as_str()),
        None => ("roller run (command line)", "-"),
    };
    let fields = BugFields { host, alias: &alias, dc: &dc, ip: &m.address, requester, job, log: attempt_log };
    let mut description = bz.reboot.description_for(&fields);
    // After whatever the template says, so no template can leave it out.
    if let Some(e) = cx.evidence() {
        description.push_str("\n\n");
        description.push_str(&e.excerpt(cx.job.as_ref().map(|j| j.id.as_str())));
    }

    let mut tracker_reopened = false;
    let tracker = match client.get(&alias, &cx.cancel).await.map_err(fail)? {
        Some(bug) if bug.is_open => {
            cx.log(format!("tracker bug {} ({alias}) is open", bug.id));
            bug.id
        }
        Some(bug) => {
            cx.log(format!("tracker bug {} ({alias}) is {} {}: reopening it", bug.id, bug.status, bug.resolution));
            let reopen = json!({
                "status": bz.reopen_state,
                "comment": { "body": format!("Reopened by roller: {host} needs attention again (roller job {job}).") },
            });
            client.update(bug.id, &reopen, &cx.cancel).await.map_err(fail)?;
            tracker_reopened = true;
            bug.id
        }
        None => {
            let t = &bz.tracker;
            let fields = json!({
                "product": t.product,
                "component": t.component,
                "summary": t.summary_for(&fields),
                "version": "unspecified",
                "alias": [alias],
                "description": t.description_for(&fields),
            });
            let id = client.create(&fields, &cx.cancel).await.map_err(fail)?;
            cx.log(format!("filed tracker bug {id} ({alias})"));
            id
        }
    };

    // One decision per group at a time in this process (incident.rs says why, and what
    // two processes can still do).
    let group = incident::group_of(m).filter(|_| !bz.incident_window.is_zero());
    let lock = group.as_deref().map(incident::lock_for);
    let _decided = match &lock {
        Some(l) => Some(l.lock().await),
        None => None,
    };
    if let Some(g) = &group {
        let this = incident::This { machine: m, host, dc: &dc, job, tracker, tracker_reopened, attempt_log };
        if let Some(report) = incident::join_or_file(g, &this, target, cx, bz).await? {
            return Ok(report);
        }
    }

    let r = &bz.reboot;
    let summary = r.summary_for(&fields);
    let open = client.find_open(&summary, &r.product, &r.component, &cx.cancel).await.map_err(fail)?;
    let (bug, filed) = match open.first() {
        Some(existing) => {
            let change = json!({ "comment": { "body": description }, "blocks": { "add": [tracker] } });
            client.update(existing.id, &change, &cx.cancel).await.map_err(fail)?;
            cx.log(format!("bug {} \"{summary}\" is already open: added the attempt log as a comment", existing.id));
            (existing.id, false)
        }
        None => {
            let fields = json!({
                "product": r.product,
                "component": r.component,
                "summary": summary,
                "version": "unspecified",
                "description": description,
                "cc": m.bug_cc,
                "blocks": [tracker],
            });
            let id = client.create(&fields, &cx.cancel).await.map_err(fail)?;
            cx.log(format!("filed bug {id} \"{summary}\" blocking {tracker}"));
            (id, true)
        }
    };
    Ok(BugReport { bug, url: client.show_url(bug), filed, tracker, tracker_reopened, incident: None })
}

/// The host people know, the tracker's alias, and the data centre, for `m`.
fn names<'m>(m: &'m Machine, target: &Target) -> (&'m str, String, String) {
    // An inventory address that is a name is the host people know; an IP is not.
    let host = if m.address.parse::<std::net::IpAddr>().is_ok() { m.id.as_str() } else { m.address.as_str() };
    let mut alias = m.id.as_str().split('.').next().unwrap_or(m.id.as_str()).to_ascii_lowercase();
    // `GET /rest/bug/1234` is bug 1234, not an alias (Bugzilla aliases cannot be
    // numbers): a numeric host name gets a prefix so roller never touches someone's bug.
    if alias.bytes().all(|b| b.is_ascii_digit()) {
        alias = format!("host-{alias}");
    }
    let dc = m.group.as_ref().unwrap_or(&target.worker_group).as_str().to_ascii_uppercase();
    (host, alias, dc)
}

fn settings(cx: &ActionContext) -> Result<&BugzillaSettings, ActionError> {
    cx.settings
        .bugzilla
        .as_ref()
        .ok_or_else(|| ActionError::Config("no Bugzilla is configured (set BUGZILLA_URL and BUGZILLA_API_KEY)".into()))
}
