//! What the API takes in its paths, as the OpenAPI document states it: the constraints
//! the handlers enforce (`domain`'s parsers), written once. Handlers read the raw strings
//! and refuse bad ones with their own 400 and `error_code`; these shapes only describe
//! them, so each `#[utoipa::path]` names one of them instead of repeating the rule. The
//! query strings' shapes are beside the handlers that parse them.

use std::borrow::Cow;

use serde::Deserialize;
use utoipa::IntoParams;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

use crate::task::Task;

/// The longest reason kept.
pub const REASON_MAX: usize = 500;

/// The reason an override needs (a breaker reset, a hold, a release, a batch).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReasonQuery {
    /// Why, for the audit log: 1–500 characters, no control character (Unicode `Cc`),
    /// not blank; kept trimmed. (The pattern spells out Rust's `char::is_whitespace`:
    /// ECMA's `\s` is another set.)
    #[param(
        required = true,
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$",
        example = "replaced the PSU"
    )]
    reason: Option<String>,
}

impl ReasonQuery {
    /// The reason, trimmed, when it is one the document allows.
    pub fn reason(self) -> Option<String> {
        self.reason.filter(|r| reason_ok(r)).map(|r| r.trim().to_string())
    }
}

/// What the pattern and the lengths above say.
fn reason_ok(raw: &str) -> bool {
    !raw.trim().is_empty() && raw.chars().count() <= REASON_MAX && !raw.chars().any(char::is_control)
}

/// `{worker_id}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct WorkerPath {
    /// The machine's Taskcluster worker id (compared lower-cased).
    #[param(pattern = "^[-_.0-9a-zA-Z]{1,128}$", min_length = 1, max_length = 128, example = "ms1-001")]
    pub worker_id: String,
}

/// `{worker_id}` and `{worker_group}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct WorkerGroupPath {
    /// The machine's Taskcluster worker id (compared lower-cased).
    #[param(pattern = "^[-_.0-9a-zA-Z]{1,128}$", min_length = 1, max_length = 128, example = "ms1-001")]
    pub worker_id: String,
    /// Its Taskcluster worker group (usually the data centre).
    #[param(pattern = "^[-_.0-9a-zA-Z]{1,128}$", min_length = 1, max_length = 128, example = "mdc1")]
    pub worker_group: String,
}

/// `{task_id}`: a job's id as roller gives it out (hyphenated; `domain::JobId::parse`).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct JobPath {
    /// The job's UUID.
    #[param(format = Uuid, min_length = 36, max_length = 36, example = "3f0c9d1e-8a7b-4c6d-9e0f-1a2b3c4d5e6f")]
    pub task_id: String,
}

/// `task_name`: one of the tasks this roller runs. The document's `/api/v1/openapi.json`
/// lists the deployment's enabled tasks (`openapi::for_settings`); built alone, every
/// task roller knows.
pub struct TaskName;

impl utoipa::PartialSchema for TaskName {
    fn schema() -> RefOr<Schema> {
        task_names(Task::ALL.iter().chain(Task::BENCHMARK).copied()).into()
    }
}

impl utoipa::ToSchema for TaskName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("TaskName")
    }
}

/// The `TaskName` schema for these tasks.
pub fn task_names(tasks: impl Iterator<Item = Task>) -> Schema {
    let names: Vec<&'static str> = tasks.map(Task::name).collect();
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("A task this roller runs (`roller tasks` lists them with their help)."))
            .enum_values(Some(names))
            .build(),
    )
}
