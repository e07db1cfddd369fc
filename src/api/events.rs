//! `GET /api/v1/jobs/{task_id}/events`: a job as server-sent events, so a page
//! can show its log as it is written.
//!
//! Events: `job` (the whole job, log included) first and whenever anything but
//! the log changes; `log` (one new line) as lines are appended; `end` when the job
//! is final and everything was sent (or it expired). The stream polls the queue
//! (both backends are polled anyway; a push channel would need one per backend),
//! lives at most [`MAX_STREAM`] (the client reconnects), stops on shutdown, and
//! at most `MAX_STREAMS` run at once.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State, rejection::PathRejection};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::{ApiError, ErrorCode};
use super::jobs::{job_id, log_fields, require};
use super::params::JobPath;
use super::wire::{ErrorBody, JobView, LogLineView};
use super::{AppState, Authenticated};
use crate::domain::JobId;
use crate::queue::{Job, JobState, Queue};

/// Live job streams one process serves at once (each polls the queue).
pub const MAX_STREAMS: usize = 256;
/// How often a stream looks at its job.
const POLL: Duration = Duration::from_millis(500);
/// A stream ends after this long; a client that still wants it reconnects (and
/// signs again, so a revoked credential stops seeing the job).
const MAX_STREAM: Duration = Duration::from_secs(600);

/// The job's progress as server-sent events (`job`, `log`, `end`). Needs the read scope.
#[utoipa::path(get, path = "/api/v1/jobs/{task_id}/events", tag = "jobs",
    params(JobPath),
    security(("hawk" = [])),
    responses(
        (status = 200, description = "Server-sent events, each a `JobEvent`: `job` first and whenever anything \
            but the log changes, `log` for each new line, then `end` (or `error`) as the last. The stream ends \
            after 10 minutes at most (reconnect, signing again) and on shutdown; comment lines keep it alive.",
            content_type = "text/event-stream", item_schema = JobEvent),
        (status = 400, description = "Not a job id", body = ErrorBody),
        (status = 403, description = "Not authenticated, or no read scope", body = ErrorBody),
        (status = 404, description = "No such job (or expired)", body = ErrorBody),
        (status = 405, description = "Method not allowed", body = ErrorBody),
        (status = 503, description = "Queue or authentication service unavailable, or too many live streams",
            body = ErrorBody),
    ))]
pub async fn job_events(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    require(&caller, &state.settings.read_scope)?;
    let id = job_id(path)?;
    let permit = state.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::unavailable(
            ErrorCode::TooManyStreams,
            format!("{MAX_STREAMS} job streams are open already; try again later"),
        )
    })?;
    let job = state.queue.get(id).await?.ok_or_else(ApiError::not_found)?;
    let follow = Follow {
        queue: state.queue.clone(),
        id,
        pending: VecDeque::new(),
        sent_lines: 0,
        shown: None,
        done: false,
        until: Instant::now() + MAX_STREAM,
        stopping: state.stopping.clone(),
        _permit: permit,
    };
    let stream = futures_util::stream::unfold(follow.with(job), |mut f| async move {
        let event = f.next().await?;
        Some((Ok::<_, Infallible>(event), f))
    });
    let mut res = Sse::new(stream).keep_alive(KeepAlive::default()).into_response();
    res.extensions_mut().insert(log_fields(&caller.client_id, Some(id)));
    Ok(res)
}

/// One event of a job's stream: OpenAPI 3.2's `itemSchema` for `text/event-stream`, an
/// object of the event's fields (`event`, `data`), one shape per event name. `data` of
/// `job` and `log` is JSON (`contentSchema` says of what).
pub struct JobEvent;

impl utoipa::PartialSchema for JobEvent {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let event = |name: &str, what: &str, data: serde_json::Value| {
            serde_json::json!({
                "type": "object",
                "description": what,
                "required": ["event", "data"],
                "properties": { "event": { "type": "string", "enum": [name] }, "data": data },
            })
        };
        let json_of = |schema: &str| {
            serde_json::json!({
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": { "$ref": format!("#/components/schemas/{schema}") },
            })
        };
        let finals: Vec<&str> =
            JobState::ALL.iter().filter(|s| s.is_final()).map(|s| s.as_str()).chain(["expired"]).collect();
        let schema = serde_json::json!({ "oneOf": [
            event("job", "The whole job, log included: the client redraws from it.", json_of("JobView")),
            event("log", "One new line of the job's log.", json_of("LogLineView")),
            event("end", "The last event: the job's final state, or `expired` when its record went away.",
                serde_json::json!({ "type": "string", "enum": finals })),
            event("error", "The last event: the queue could not be read; reconnect later.",
                serde_json::json!({ "type": "string" })),
        ]});
        serde_json::from_value(schema).expect("the JobEvent schema is a schema")
    }
}

impl utoipa::ToSchema for JobEvent {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("JobEvent")
    }
}

/// One stream's view of its job.
struct Follow {
    queue: Arc<dyn Queue>,
    id: JobId,
    pending: VecDeque<Event>,
    /// Log lines already sent.
    sent_lines: usize,
    /// The non-log fields last sent, to send `job` only when they change.
    shown: Option<(JobState, u32, Option<String>)>,
    done: bool,
    until: Instant,
    stopping: CancellationToken,
    _permit: OwnedSemaphorePermit,
}

impl Follow {
    fn with(mut self, job: Job) -> Self {
        self.observe(job);
        self
    }

    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if self.done {
                return None;
            }
            tokio::select! {
                _ = self.stopping.cancelled() => return None,
                _ = tokio::time::sleep_until(self.until) => return None,
                _ = tokio::time::sleep(POLL) => {}
            }
            match self.queue.get(self.id).await {
                Ok(Some(job)) => self.observe(job),
                Ok(None) => {
                    // Expired while watched: nothing more will come.
                    self.pending.push_back(Event::default().event("end").data("expired"));
                    self.done = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, job = %self.id, "job stream: queue unavailable");
                    self.pending.push_back(Event::default().event("error").data("job queue unavailable"));
                    self.done = true;
                }
            }
        }
    }

    /// Queue what changed since the last look.
    fn observe(&mut self, job: Job) {
        let fields = (job.state, job.attempts, job.finished_at.map(|t| t.to_rfc3339()));
        if self.shown.as_ref() != Some(&fields) {
            // The whole job, log included: the client redraws from it.
            self.pending.push_back(json_event("job", &JobView::from(&job)));
            self.sent_lines = job.log.len();
            self.shown = Some(fields);
        } else {
            for l in job.log.iter().skip(self.sent_lines) {
                self.pending.push_back(json_event("log", &LogLineView::from(l)));
            }
            self.sent_lines = self.sent_lines.max(job.log.len());
        }
        if job.state.is_final() {
            self.pending.push_back(Event::default().event("end").data(job.state.as_str()));
            self.done = true;
        }
    }
}

fn json_event(name: &str, value: &impl serde::Serialize) -> Event {
    // Serializing our own wire types cannot fail; an empty object keeps the stream valid if it ever did.
    Event::default().event(name).data(serde_json::to_string(value).unwrap_or_else(|_| "{}".into()))
}
