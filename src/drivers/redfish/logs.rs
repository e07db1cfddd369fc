//! The newest Redfish log entries, as evidence before a power cut.
//!
//! Where BMCs keep them (DMTF Redfish `LogService`): the system's
//! `…/Systems/{id}/LogServices` (OpenBMC's `EventLog`, HPE's `IML`) and each manager's
//! `…/Managers/{id}/LogServices` (Dell's `Sel`, HPE's `IEL`), each service's `Entries`
//! a collection of `LogEntry` (bmclib reads `Id`, `Created`, `Message`). Members are
//! often inline entries, sometimes only references, which are then read one by one
//! (the newest few only). Everything is bounded: services, members, fields.

use chrono::DateTime;
use reqwest::Method;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::session::{Session, with_session};
use super::{RedfishError, RedfishTarget};
use crate::drivers::bounded;

/// Managers and log services read at most: a BMC lists one or two of each.
const MAX_MANAGERS: usize = 4;
const MAX_SERVICES: usize = 8;
/// Characters kept of an entry's message.
const MESSAGE_MAX: usize = 500;

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The log service's `@odata.id` (`/redfish/v1/Managers/1/LogServices/Sel`).
    pub service: String,
    pub id: String,
    pub created: Option<String>,
    pub severity: Option<String>,
    pub message: String,
}

/// The newest `newest` entries over every log service of the system and its managers,
/// oldest first. A BMC without log services gives none.
pub async fn log_entries(
    target: &RedfishTarget,
    newest: usize,
    cancel: &CancellationToken,
) -> Result<Vec<LogEntry>, RedfishError> {
    with_session(target, cancel, async |s: &Session<'_>| {
        let mut collections = Vec::new();
        let (_, system) = s.system().await?;
        collections.extend(link(&system, "LogServices"));
        if let Some(managers) = link(s.root(), "Managers") {
            let list = s.send_json(Method::GET, &managers, None).await?;
            for m in members(&list).into_iter().take(MAX_MANAGERS) {
                let manager = s.send_json(Method::GET, &m, None).await?;
                collections.extend(link(&manager, "LogServices"));
            }
        }
        let mut entries = Vec::new();
        let mut services = 0;
        for c in collections {
            let list = s.send_json(Method::GET, &c, None).await?;
            for svc in members(&list) {
                if services == MAX_SERVICES {
                    break;
                }
                services += 1;
                let service = s.send_json(Method::GET, &svc, None).await?;
                if let Some(path) = link(&service, "Entries") {
                    entries.extend(read_entries(s, &svc, &path, newest).await?);
                }
            }
        }
        Ok(newest_of(entries, newest, &s.scrubber()))
    })
    .await
}

/// A service's entries: inline members as they are, referenced ones read (the last
/// `newest` of them: collections list oldest first more often than not).
async fn read_entries(
    s: &Session<'_>,
    service: &str,
    path: &str,
    newest: usize,
) -> Result<Vec<LogEntry>, RedfishError> {
    let list = s.send_json(Method::GET, path, None).await?;
    let Some(items) = list.get("Members").and_then(Value::as_array) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    let referenced: Vec<&str> = items
        .iter()
        .filter(|m| m.get("Message").is_none())
        .filter_map(|m| m.get("@odata.id").and_then(Value::as_str))
        .collect();
    for m in items.iter().filter(|m| m.get("Message").is_some()) {
        out.extend(entry(service, m));
    }
    for r in referenced.iter().skip(referenced.len().saturating_sub(newest)) {
        let m = s.send_json(Method::GET, r, None).await?;
        out.extend(entry(service, &m));
    }
    Ok(out)
}

fn entry(service: &str, v: &Value) -> Option<LogEntry> {
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    Some(LogEntry {
        service: service.to_string(),
        id: text("Id").or_else(|| text("@odata.id"))?,
        created: text("Created"),
        severity: text("Severity").or_else(|| text("MessageSeverity")),
        message: text("Message").unwrap_or_default(),
    })
}

/// The newest `n` by `Created` (entries without a readable time count as oldest),
/// oldest first; fields scrubbed and bounded.
pub fn newest_of(mut entries: Vec<LogEntry>, n: usize, scrub: &dyn Fn(&str) -> String) -> Vec<LogEntry> {
    let when = |e: &LogEntry| e.created.as_deref().and_then(|c| DateTime::parse_from_rfc3339(c).ok());
    // Stable: entries without a time keep the order the BMC gave.
    entries.sort_by_key(|e| when(e));
    let skip = entries.len().saturating_sub(n);
    entries
        .into_iter()
        .skip(skip)
        .map(|e| LogEntry {
            service: bounded(&e.service, 200),
            id: bounded(&scrub(&e.id), 100),
            created: e.created.map(|c| bounded(&c, 64)),
            severity: e.severity.map(|c| bounded(&c, 32)),
            message: bounded(&scrub(&e.message), MESSAGE_MAX),
        })
        .collect()
}

fn link(v: &Value, key: &str) -> Option<String> {
    v.get(key)?.get("@odata.id")?.as_str().map(str::to_string)
}

fn members(v: &Value) -> Vec<String> {
    v.get("Members")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|m| m.get("@odata.id")?.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(id: &str, created: Option<&str>, message: &str) -> LogEntry {
        LogEntry {
            service: "/s".into(),
            id: id.into(),
            created: created.map(str::to_string),
            severity: None,
            message: message.into(),
        }
    }

    #[test]
    fn the_newest_entries_by_time_oldest_first_scrubbed_and_bounded() {
        let entries = vec![
            e("3", Some("2026-04-01T10:00:00+00:00"), "newest"),
            e("1", Some("2026-04-01T08:00:00Z"), "oldest"),
            e("x", None, "no time"),
            e("2", Some("2026-04-01T11:00:00+02:00"), &format!("pw-secret {}", "y".repeat(600))),
        ];
        let scrub = |t: &str| t.replace("pw-secret", "[redacted]");
        let got = newest_of(entries, 3, &scrub);
        let ids: Vec<&str> = got.iter().map(|e| e.id.as_str()).collect();
        // 11:00+02:00 is 09:00Z: between the other two.
        assert_eq!(ids, ["1", "2", "3"]);
        assert!(got[1].message.starts_with("[redacted] yyy") && got[1].message.chars().count() == MESSAGE_MAX + 1);
        assert!(newest_of(vec![e("a", None, "")], 0, &scrub).is_empty());
    }
}
