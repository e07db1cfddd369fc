//! Telling people (the original's issue #26): when a job starts (except `ping`)
//! and when it ends, through Taskcluster notify (email to a list and to the
//! requester, a Matrix room, a Slack channel) and/or a webhook whose body is
//! signed with HMAC-SHA256 (`X-Roller-Signature: sha256=<hex>`).
//!
//! Notifications run beside the job, never in its way: each is spawned, tried
//! up to [`ATTEMPTS`] times with a pause, bounded by the HTTP timeout, and a
//! failure is logged, never recorded as the job's outcome.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::drivers::taskcluster::TaskclusterClient;
use crate::queue::{Job, Outcome};
use crate::task::Task;

const ATTEMPTS: u32 = 3;
/// Messages being delivered at once, process-wide.
static DELIVERIES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(64);
const PAUSE: Duration = Duration::from_secs(1);
/// Notify's limits (reference/taskcluster.md §7).
const SUBJECT_MAX: usize = 255;
const CONTENT_MAX: usize = 20_000;
const CHAT_MAX: usize = 3_000;

/// Where notifications go; `Notifier::default()` sends none.
#[derive(Clone, Default)]
pub struct Notifier(Option<Arc<Inner>>);

#[derive(Clone, Default)]
pub struct NotifySettings {
    pub emails: Vec<String>,
    /// `Some(domain)`: also email the requester, when their clientId names an
    /// LDAP user (`mozilla-auth0/ad|Mozilla-LDAP|<user>`, `mozilla-ldap/<user>[@…]`).
    pub requester_domain: Option<String>,
    pub matrix_room: Option<String>,
    pub slack_channel: Option<String>,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<SecretString>,
    /// Where people can read a job: links are `<public_url>/api/v1/jobs/<id>`.
    pub public_url: Option<String>,
    pub timeout: Duration,
}

struct Inner {
    s: NotifySettings,
    tc: Option<TaskclusterClient>,
    http: reqwest::Client,
}

impl std::fmt::Debug for NotifySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifySettings")
            .field("emails", &self.emails)
            .field("requester_domain", &self.requester_domain)
            .field("matrix_room", &self.matrix_room)
            .field("slack_channel", &self.slack_channel)
            // Only where it goes: hook URLs often carry a token in their path.
            .field("webhook", &self.webhook_url.as_deref().map(crate::drivers::url_for_message))
            .field("webhook_secret", &self.webhook_secret.as_ref().map(|_| "[redacted]"))
            .field("public_url", &self.public_url)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl NotifySettings {
    /// Email, Matrix and Slack go through Taskcluster notify; anything asking for them
    /// needs roller's Taskcluster credentials.
    fn wants_taskcluster(&self) -> bool {
        !self.emails.is_empty()
            || self.requester_domain.is_some()
            || self.matrix_room.is_some()
            || self.slack_channel.is_some()
    }

    /// Whether these settings can work: what is asked for has what it needs.
    pub fn check(&self, has_taskcluster: bool) -> Result<(), String> {
        if self.wants_taskcluster() && !has_taskcluster {
            return Err("notify: email, Matrix and Slack go through Taskcluster notify, which needs roller's \
                        Taskcluster credentials (TASKCLUSTER_ROOT_URL, TASKCLUSTER_CLIENT_ID, TASKCLUSTER_ACCESS_TOKEN)"
                .into());
        }
        if self.webhook_url.is_some() != self.webhook_secret.is_some() {
            return Err("notify: a webhook needs both a URL and a secret".into());
        }
        Ok(())
    }
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("Notifier(off)"),
            Some(i) => i.s.fmt(f),
        }
    }
}

/// One message, in every channel's shape.
struct Message {
    subject: String,
    text: String,
    link: Option<String>,
    event: Value,
}

impl Notifier {
    /// `tc` is roller's Taskcluster client (needed for email, Matrix and Slack).
    pub fn new(s: NotifySettings, tc: Option<TaskclusterClient>) -> Result<Notifier, String> {
        s.check(tc.is_some())?;
        if !s.wants_taskcluster() && s.webhook_url.is_none() {
            return Ok(Notifier(None));
        }
        let http = reqwest::Client::builder().timeout(s.timeout).build().map_err(|e| e.to_string())?;
        Ok(Notifier(Some(Arc::new(Inner { s, tc, http }))))
    }

    pub fn job_started(&self, job: &Job) {
        if job.task == Task::Ping {
            return;
        }
        let Some(inner) = &self.0 else { return };
        let text = format!(
            "{} on {} (group {}) requested by {} has started (attempt {}).",
            job.task, job.worker_id, job.worker_group, job.requester, job.attempts
        );
        let subject = format!("[roller] {} {}: started", job.task, job.worker_id);
        inner.clone().spawn(job, subject, text, "started", Value::Null);
    }

    pub fn job_finished(&self, job: &Job, outcome: &Outcome) {
        let Some(inner) = &self.0 else { return };
        let state = outcome.state().as_str();
        let (detail, body) = match outcome {
            Outcome::Succeeded(v) => (serde_json::to_string_pretty(v).unwrap_or_default(), v.clone()),
            Outcome::Failed(f) | Outcome::TimedOut(f) | Outcome::Cancelled(f) => (f.error.clone(), json!(f.error)),
        };
        let text = format!(
            "{} on {} (group {}) requested by {}: {state}.\n\n{detail}",
            job.task, job.worker_id, job.worker_group, job.requester
        );
        let subject = format!("[roller] {} {}: {state}", job.task, job.worker_id);
        inner.clone().spawn(job, subject, text, state, body);
    }
}

impl Notifier {
    /// A medic alert (blast radius blocked, a machine held for a person): to the same
    /// channels as job news, never to a requester. `event` is the webhook's JSON.
    pub fn alert(&self, subject: &str, text: String, event: Value) {
        self.alert_linked(subject, text, event, "/api/v1/medic/decisions");
    }

    /// An alert whose link is `<public_url><path>` (a failed path check links to
    /// `/api/v1/paths`).
    pub fn alert_linked(&self, subject: &str, text: String, event: Value, path: &str) {
        let Some(inner) = &self.0 else { return };
        let link = inner.s.public_url.as_ref().map(|u| format!("{}{path}", u.trim_end_matches('/')));
        let m = Message { subject: clip(&format!("[roller] {subject}"), SUBJECT_MAX), text, link, event };
        let inner = inner.clone();
        tokio::spawn(async move {
            let _slot = DELIVERIES.acquire().await;
            inner.deliver(&m, None).await
        });
    }
}

impl Inner {
    fn spawn(self: Arc<Self>, job: &Job, subject: String, text: String, state: &str, detail: Value) {
        let link = self.s.public_url.as_ref().map(|u| format!("{}/api/v1/jobs/{}", u.trim_end_matches('/'), job.id));
        let event = json!({
            "task_id": job.id.to_string(),
            "task_name": job.task.name(),
            "worker_id": job.worker_id.as_str(),
            "worker_group": job.worker_group.as_str(),
            "requester": job.requester.as_str(),
            "state": state,
            "detail": detail,
            "link": link,
        });
        let requester = self.s.requester_domain.as_deref().and_then(|d| requester_email(job.requester.as_str(), d));
        let m = Message { subject: clip(&subject, SUBJECT_MAX), text, link, event };
        tokio::spawn(async move {
            // Bounded: a burst of jobs with a slow notifier queues here instead of
            // opening connections without end.
            let _slot = DELIVERIES.acquire().await;
            self.deliver(&m, requester).await
        });
    }

    /// Every channel at once, so a hung one delays no other.
    async fn deliver(&self, m: &Message, requester: Option<String>) {
        let emails = async {
            let Some(tc) = &self.tc else { return };
            let content = match &m.link {
                Some(l) => format!("{}\n\n{l}", clip(&m.text, CONTENT_MAX)),
                None => clip(&m.text, CONTENT_MAX),
            };
            for address in self.s.emails.iter().cloned().chain(requester) {
                let mut body = json!({ "address": address, "subject": m.subject, "content": content });
                if let Some(l) = &m.link {
                    body["link"] = json!({ "text": "the job in roller", "href": l });
                }
                retry("email", || tc.post("notify.email", "api/notify/v1/email", &body)).await;
            }
        };
        let chat = clip(&format!("{}\n{}", m.subject, m.text), CHAT_MAX);
        let chat = match &m.link {
            Some(l) => format!("{chat}\n{l}"),
            None => chat,
        };
        let matrix = async {
            if let (Some(tc), Some(room)) = (&self.tc, &self.s.matrix_room) {
                let body = json!({ "roomId": room, "body": chat, "msgtype": "m.notice" });
                retry("matrix", || tc.post("notify.matrix", "api/notify/v1/matrix", &body)).await;
            }
        };
        let slack = async {
            if let (Some(tc), Some(channel)) = (&self.tc, &self.s.slack_channel) {
                let body = json!({ "channelId": channel, "text": chat });
                retry("slack", || tc.post("notify.slack", "api/notify/v1/slack", &body)).await;
            }
        };
        let webhook = async {
            let (Some(url), Some(secret)) = (&self.s.webhook_url, &self.s.webhook_secret) else { return };
            let body = m.event.to_string();
            let signature = sign(secret, body.as_bytes());
            retry("webhook", || async {
                let r = self
                    .http
                    .post(url)
                    .header("Content-Type", "application/json")
                    .header("X-Roller-Signature", format!("sha256={signature}"))
                    .body(body.clone())
                    .send()
                    .await
                    .map_err(|e| e.without_url().to_string())?;
                if r.status().is_success() { Ok(()) } else { Err(format!("HTTP {}", r.status().as_u16())) }
            })
            .await;
        };
        tokio::join!(emails, matrix, slack, webhook);
    }
}

async fn retry<F, Fut, T, E>(channel: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    for attempt in 1..=ATTEMPTS {
        match f().await {
            Ok(_) => return,
            Err(e) if attempt < ATTEMPTS => {
                tracing::warn!(channel, attempt, error = %e, "notification failed; retrying");
                tokio::time::sleep(PAUSE * attempt).await;
            }
            Err(e) => {
                metrics::counter!("roller_notify_failures_total", "channel" => channel.to_string()).increment(1);
                tracing::error!(channel, attempts = ATTEMPTS, error = %e, "notification not delivered");
            }
        }
    }
}

/// HMAC-SHA256 of `body` with the webhook secret, as lower-case hex.
pub fn sign(secret: &SecretString, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// The requester's address, when the clientId names an LDAP user (the
/// original's rule): `mozilla-auth0/ad|Mozilla-LDAP|<user>` and
/// `mozilla-ldap/<user>[@<domain>]` give `<user>@<domain>`.
pub fn requester_email(client_id: &str, domain: &str) -> Option<String> {
    let user =
        client_id.strip_prefix("mozilla-auth0/ad|Mozilla-LDAP|").or_else(|| client_id.strip_prefix("mozilla-ldap/"))?;
    let user = user.split('@').next()?;
    let ok = !user.is_empty() && user.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'));
    ok.then(|| format!("{user}@{domain}"))
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requester_addresses_follow_the_ldap_rule() {
        assert_eq!(
            requester_email("mozilla-auth0/ad|Mozilla-LDAP|jdoe", "mozilla.com").as_deref(),
            Some("jdoe@mozilla.com")
        );
        assert_eq!(
            requester_email("mozilla-ldap/jdoe@mozilla.com", "mozilla.com").as_deref(),
            Some("jdoe@mozilla.com")
        );
        assert_eq!(requester_email("mozilla-ldap/jdoe", "example.org").as_deref(), Some("jdoe@example.org"));
        for nobody in ["project/releng/roller", "mozilla-ldap/", "mozilla-ldap/a b", "admin"] {
            assert_eq!(requester_email(nobody, "mozilla.com"), None, "{nobody}");
        }
    }

    #[test]
    fn webhook_signatures_are_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        let s = sign(&SecretString::from("Jefe".to_string()), b"what do ya want for nothing?");
        assert_eq!(s, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn long_texts_are_clipped_on_a_character_boundary() {
        assert_eq!(clip("ééé", 2), "é…");
        assert_eq!(clip("abc", 3), "abc");
    }
}
