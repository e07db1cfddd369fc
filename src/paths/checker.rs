//! The checker: one process at a time (a lease in the queue backend) checks machines'
//! paths, the ones asked for first, then (with `[paths] enabled`) every machine once per
//! `interval`, each at its own point in the interval, so a fleet's checks are spread
//! over the day rather than fired at once, and never more than `max_per_minute` of them
//! start in any minute. A machine never checked is due at once (within that rate).
//!
//! It runs in the processes that run jobs (`roller serve`, `roller worker`): where the
//! devices' credentials are, and under the same per-device gates as the jobs (at
//! background priority: a check takes a device's slot only when no job uses it).
//! Every `POLL` it looks for asked-for checks (in `roller serve` the API wakes it at
//! once) and due machines; each result is written as soon as it is known, so the API and
//! `roller paths check` see it. A path that turns from ok (or unchecked) to failed is
//! alerted through the notifiers once, not at every failed check.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use serde_json::json;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{CheckerStatus, PathRecord, PathResult, PathSettings, Snapshot, keys, no_path, snapshot};
use crate::actions::{ActionContext, ActionSettings, LogSink};
use crate::inventory::Machine;
use crate::notify::Notifier;
use crate::queue::QueueError;
use crate::queue::records::{RecordKind, Records, while_held};
use crate::task::Task;

/// The lease one checker holds.
pub const LEASE: &str = "path-checks";
/// How often the checker looks for asked-for and due checks.
pub const POLL: Duration = Duration::from_secs(5);

/// The checker of one process.
pub struct Checker {
    pub settings: PathSettings,
    /// The actions' settings with the gates at background priority.
    pub actions: Arc<ActionSettings>,
    pub records: Arc<dyn Records>,
    pub notifier: Notifier,
    /// The remediation the verdict "no path" is about (the medic's default).
    pub remediation: Task,
    /// Wakes the checker at once (the API of the same process, on a request).
    pub wake: Arc<Notify>,
    /// This process, as the lease names it.
    pub holder: String,
}

struct Silent;

impl LogSink for Silent {
    fn line(&self, _: String) {}
}

/// Check starts within the last minute, for `max_per_minute`.
#[derive(Default)]
struct RateWindow(VecDeque<Instant>);

impl RateWindow {
    fn used(&mut self) -> usize {
        let now = Instant::now();
        while self.0.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60)) {
            self.0.pop_front();
        }
        self.0.len()
    }

    fn take(&mut self, n: usize) {
        let now = Instant::now();
        self.0.extend(std::iter::repeat_n(now, n));
    }
}

/// Where in each interval `key` is due: a stable hash of it, so the fleet's checks are
/// spread evenly over the interval and each machine keeps its point across restarts.
fn phase(key: &str, interval: Duration) -> u64 {
    // FNV-1a: stable across builds and processes (std's hasher is seeded per process).
    let h = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    h % interval.as_secs().max(1)
}

/// Whether `key`, last checked at `last`, is due at `now`: never checked, or not since
/// its latest point in the interval.
pub fn due(key: &str, last: Option<DateTime<Utc>>, now: DateTime<Utc>, interval: Duration) -> bool {
    let Some(last) = last else { return true };
    let every = interval.as_secs().max(1) as i64;
    let p = phase(key, interval) as i64;
    let now_s = now.timestamp();
    let latest = now_s - (now_s - p).rem_euclid(every);
    last.timestamp() < latest
}

/// The next check of one subject.
enum Subject<'a> {
    Machine(&'a Machine),
    Shared,
}

impl Checker {
    /// Look every `POLL` (or when woken) while this process holds the lease, until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let ttl = POLL * 6;
        let mut window = RateWindow::default();
        loop {
            match self.records.acquire_lease(LEASE, &self.holder, ttl).await {
                Ok(true) => {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        r = while_held(self.records.as_ref(), LEASE, &self.holder, ttl, POLL, self.look(&mut window, &stop)) => {
                            if let Some(Err(e)) = r {
                                tracing::warn!(error = %e, "path checks failed; the next look tries again");
                            }
                        }
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot take or renew the path checks' lease"),
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
        let _ = self.records.release_lease(LEASE, &self.holder).await;
    }

    /// One look: what was asked for, then what is due (within the rate), `concurrency` at
    /// once; each result written when known; the gauge and the status at the end.
    #[tracing::instrument(name = "path_checks", skip_all)]
    async fn look(&self, window: &mut RateWindow, stop: &CancellationToken) -> Result<CheckerStatus, QueueError> {
        let now = Utc::now();
        let inventory = self.actions.inventory.current();
        let snap = snapshot(self.records.as_ref()).await?;
        let mut asked: Vec<Subject<'_>> = Vec::new();
        let mut periodic: Vec<Subject<'_>> = Vec::new();
        for m in inventory.machines.values() {
            let id = m.id.to_string();
            let record = snap.machines.get(&id);
            if snap.requests.get(&id).is_some_and(|q| q.pending(record)) {
                asked.push(Subject::Machine(m));
            } else if self.settings.enabled && due(&id, record.and_then(|r| r.checked_at), now, self.settings.interval)
            {
                periodic.push(Subject::Machine(m));
            }
        }
        if snap.shared_request.as_ref().is_some_and(|q| q.pending(snap.shared.as_ref())) {
            asked.push(Subject::Shared);
        } else if self.settings.enabled
            && self.has_shared()
            && due(keys::SHARED, snap.shared.as_ref().and_then(|r| r.checked_at), now, self.settings.interval)
        {
            periodic.push(Subject::Shared);
        }
        let room = self.settings.max_per_minute.saturating_sub(window.used());
        let waiting = periodic.len().saturating_sub(room);
        periodic.truncate(room);
        window.take(periodic.len());
        let checked = asked.len() + periodic.len();

        let cx = ActionContext::new(self.actions.clone(), stop.child_token(), Arc::new(Silent));
        let snap = &snap;
        let cx = &cx;
        let todo: Vec<Subject<'_>> = asked.into_iter().chain(periodic).collect();
        // Boxed, and mapped from an index: a stream of borrowing futures is otherwise
        // not `Send` (rust#100013).
        let todo = &todo;
        let check = |i: usize| Box::pin(self.check(&todo[i], snap, cx)) as BoxFuture<'_, Result<(), QueueError>>;
        let results = futures_util::stream::iter((0..todo.len()).map(check))
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect::<Vec<_>>()
            .await;
        for r in results {
            r?;
        }

        // Machines that left the inventory leave the records too (their requests with them).
        for id in snap.machines.keys().chain(snap.requests.keys()) {
            if crate::domain::WorkerId::parse(id).ok().and_then(|w| inventory.machine(&w)).is_none() {
                self.records.delete_record(RecordKind::Paths, id).await?;
                self.records.delete_record(RecordKind::Paths, &format!("{}{id}", keys::REQUEST)).await?;
            }
        }
        self.gauge(&inventory.machines.values().collect::<Vec<_>>()).await?;
        let status = CheckerStatus {
            at: now,
            holder: self.holder.clone(),
            periodic: self.settings.enabled,
            checked,
            waiting_for_rate: waiting,
            last_minute: window.used(),
        };
        self.records
            .put_record(RecordKind::Paths, keys::STATUS, &serde_json::to_string(&status).unwrap_or_default())
            .await?;
        if checked > 0 || waiting > 0 {
            tracing::info!(checked, waiting_for_rate = waiting, "path checks done");
        }
        Ok(status)
    }

    /// Whether roller has shared credentials to check (Bugzilla, signed Taskcluster).
    fn has_shared(&self) -> bool {
        self.actions.bugzilla.is_some() || self.actions.taskcluster.as_ref().is_some_and(|t| t.client.signed())
    }

    /// Check one subject, write its record, alert on what newly failed.
    async fn check(&self, s: &Subject<'_>, snap: &Snapshot, cx: &ActionContext) -> Result<(), QueueError> {
        let at = Utc::now();
        let (key, results, before) = match s {
            Subject::Machine(m) => {
                let key = m.id.to_string();
                let before = snap.machines.get(&key);
                (key, super::check::machine(m, cx, at).await, before)
            }
            Subject::Shared => (keys::SHARED.to_string(), super::check::shared(cx, at).await, snap.shared.as_ref()),
        };
        let record = PathRecord { checked_at: Some(at), paths: carry_failing_since(results, before) };
        self.records.put_record(RecordKind::Paths, &key, &record.to_record()).await?;
        let newly: Vec<&PathResult> = record
            .paths
            .iter()
            .filter(|r| !r.ok() && before.and_then(|b| b.get(r.kind)).is_none_or(|b| b.ok()))
            .collect();
        if !newly.is_empty() {
            self.alert(&key, &newly, &record, s_machine(s));
        }
        Ok(())
    }

    /// One message per subject whose paths turned failed: which, why, and whether roller
    /// is left with no way to restart the machine.
    fn alert(&self, key: &str, newly: &[&PathResult], record: &PathRecord, m: Option<&Machine>) {
        let what = if key == keys::SHARED { "roller's shared credentials".to_string() } else { key.to_string() };
        let mut text: Vec<String> =
            newly.iter().map(|r| format!("{} path failed its check: {}", r.kind.as_str(), r.reason)).collect();
        let stranded = m.and_then(|m| no_path(m, self.remediation, Some(record), self.settings.enabled));
        if let Some(why) = &stranded {
            text.push(format!("{key} is now without a way for roller to restart it ({why}); it needs a person"));
        }
        let kinds: Vec<&str> = newly.iter().map(|r| r.kind.as_str()).collect();
        tracing::error!(subject = %what, paths = ?kinds, no_path = stranded.is_some(), "path check failed");
        self.notifier.alert_linked(
            &format!("path check failed: {what} ({})", kinds.join(", ")),
            text.join("\n"),
            json!({
                "event": "path_check_failed",
                "subject": key,
                "failed": newly,
                "no_path": stranded,
            }),
            "/api/v1/paths",
        );
    }

    /// `roller_machines_without_path`: inventory machines with no way left for roller to
    /// restart them.
    async fn gauge(&self, machines: &[&Machine]) -> Result<(), QueueError> {
        let snap = snapshot(self.records.as_ref()).await?;
        let n = machines
            .iter()
            .filter(|m| no_path(m, self.remediation, snap.machines.get(m.id.as_str()), self.settings.enabled).is_some())
            .count();
        metrics::gauge!("roller_machines_without_path").set(n as f64);
        Ok(())
    }
}

fn s_machine<'a>(s: &Subject<'a>) -> Option<&'a Machine> {
    match s {
        Subject::Machine(m) => Some(m),
        Subject::Shared => None,
    }
}

/// Each failed path keeps the time of the first failure in a row.
fn carry_failing_since(mut results: Vec<PathResult>, before: Option<&PathRecord>) -> Vec<PathResult> {
    for r in results.iter_mut().filter(|r| !r.ok()) {
        let prev = before.and_then(|b| b.get(r.kind)).filter(|p| !p.ok());
        r.failing_since = Some(prev.and_then(|p| p.failing_since.or(Some(p.checked_at))).unwrap_or(r.checked_at));
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::PathKind;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn each_machine_is_due_once_per_interval_at_its_own_point() {
        let day = Duration::from_secs(86_400);
        assert!(due("m1", None, t(0), day), "never checked: due at once");
        // Checked now, it is not due again until its point in the next interval.
        let mut next = None;
        for s in (60..=2 * 86_400).step_by(60) {
            if due("m1", Some(t(0)), t(s), day) {
                next = Some(s);
                break;
            }
        }
        let next = next.expect("due again within two days");
        assert!(next <= 86_400 + 60, "at most one interval later: {next}");
        // A fleet's points spread over the interval instead of bunching.
        let hours: std::collections::BTreeSet<u64> = (0..200).map(|i| phase(&format!("ms1-{i}"), day) / 3600).collect();
        assert!(hours.len() >= 20, "200 machines land in {} of 24 hours", hours.len());
    }

    #[test]
    fn a_failure_in_a_row_keeps_when_it_began() {
        let failed = |at| PathResult {
            kind: PathKind::Ipmi,
            outcome: super::super::Outcome::Failed,
            reason: "wrong password".into(),
            checked_at: at,
            failing_since: None,
        };
        let first = carry_failing_since(vec![failed(t(0))], None);
        assert_eq!(first[0].failing_since, Some(t(0)));
        let before = PathRecord { checked_at: Some(t(0)), paths: first };
        let second = carry_failing_since(vec![failed(t(100))], Some(&before));
        assert_eq!(second[0].failing_since, Some(t(0)));
    }

    #[test]
    fn the_rate_window_counts_the_last_minute() {
        let mut w = RateWindow::default();
        w.take(3);
        assert_eq!(w.used(), 3);
    }
}
