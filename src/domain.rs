//! Identifiers parsed at the edge, so the inside of roller never holds a bad one.
//!
//! Every type here has a private field and one fallible constructor. A value of
//! `WorkerId` is proof that the string is 1–128 characters of `[-_.0-9a-zA-Z]`,
//! which is what makes it safe to hand to DNS, a subprocess argument vector or
//! a log line.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// Why an identifier from outside was refused. The text is shown to API clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

impl ParseError {
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

const MAX_NAME_LEN: usize = 128;

fn check_name(kind: &str, s: &str) -> Result<(), ParseError> {
    if s.is_empty() || s.len() > MAX_NAME_LEN {
        return Err(ParseError(format!(
            "{kind} must be 1 to {MAX_NAME_LEN} characters long (got {})",
            s.chars().count()
        )));
    }
    if let Some(bad) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
        return Err(ParseError(format!("{kind} may only contain letters, digits, '-', '_' and '.' (found {bad:?})")));
    }
    Ok(())
}

/// A managed machine's Taskcluster worker id, lower-cased (host names are
/// case-insensitive, and the per-machine lock must not be split by case).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(String);

impl WorkerId {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        check_name("worker_id", s)?;
        Ok(Self(s.to_ascii_lowercase()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A Taskcluster worker group; for RelOps hardware usually the data centre.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerGroup(String);

impl WorkerGroup {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        check_name("worker_group", s)?;
        Ok(Self(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A Taskcluster provisioner id or worker type, carried for notifications and links.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskclusterName(String);

impl TaskclusterName {
    pub fn parse(kind: &str, s: &str) -> Result<Self, ParseError> {
        check_name(kind, s)?;
        Ok(Self(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A job's id: a UUID v4, shown as hex with dashes (the seed's Celery `task_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(Uuid);

impl JobId {
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }
    /// The hyphenated form only (what roller gives out; the OpenAPI document's `uuid`):
    /// `Uuid::parse_str` alone would also take the braced, URN and bare-hex spellings.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        Some(s)
            .filter(|s| s.len() == 36)
            .and_then(|s| Uuid::parse_str(s).ok())
            .map(Self)
            .ok_or_else(|| ParseError(format!("task_id {s:?} is not a UUID (8-4-4-4-12 hex digits)")))
    }
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

/// The authenticated caller's Taskcluster clientId, recorded as a job's requester.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientId(String);

impl ClientId {
    /// Client ids come from a verified credential (local config or Taskcluster),
    /// so they are trusted text, but still bounded and printable.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() || s.len() > 256 || s.chars().any(|c| !(' '..='~').contains(&c)) {
            return Err(ParseError(format!("invalid clientId {s:?}")));
        }
        Ok(Self(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0.to_string())
            }
        }
    )*};
}
display_as_str!(WorkerId, WorkerGroup, TaskclusterName, JobId, ClientId);

impl FromStr for WorkerId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl FromStr for WorkerGroup {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl FromStr for JobId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_ids_accept_the_seed_charset_and_lower_case() {
        assert_eq!(WorkerId::parse("MS1-10.mdc1_x").unwrap().as_str(), "ms1-10.mdc1_x");
        assert!(WorkerId::parse(&"a".repeat(128)).is_ok());
    }

    #[test]
    fn worker_ids_refuse_everything_else() {
        for bad in ["", "a b", "a;rm -rf", "a/b", "ä", "a\nb", "$(id)", &"a".repeat(129)] {
            let err = WorkerId::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with("worker_id"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn job_ids_are_uuids() {
        let id = JobId::new();
        assert_eq!(JobId::parse(&id.to_string()).unwrap(), id);
        assert!(JobId::parse("not-a-uuid").is_err());
        assert_eq!(JobId::parse(&id.to_string().to_uppercase()).unwrap(), id);
        // One spelling, as the OpenAPI document's `format: uuid` says.
        let hex = id.as_uuid().simple().to_string();
        for other in [hex.clone(), format!("{{{id}}}"), format!("urn:uuid:{id}")] {
            assert!(JobId::parse(&other).is_err(), "{other}");
        }
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        fn allowed(c: char) -> bool {
            c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
        }

        proptest! {
            #[test]
            fn valid_ids_round_trip_lower_cased(s in "[-_.0-9a-zA-Z]{1,128}") {
                let id = WorkerId::parse(&s).unwrap();
                prop_assert_eq!(id.as_str(), s.to_ascii_lowercase());
                prop_assert_eq!(id.to_string(), id.as_str());
                prop_assert_eq!(WorkerId::parse(id.as_str()), Ok(id.clone()));
                prop_assert_eq!(s.parse::<WorkerId>(), Ok(id));
                // Groups are case-sensitive (Taskcluster's), ids are not.
                let group = WorkerGroup::parse(&s).unwrap();
                prop_assert_eq!(group.as_str(), s.as_str());
            }

            #[test]
            fn one_character_outside_the_set_is_refused(
                before in "[-_.0-9a-zA-Z]{0,60}",
                bad in any::<char>().prop_filter("outside the set", |c| !allowed(*c)),
                after in "[-_.0-9a-zA-Z]{0,60}",
            ) {
                let s = format!("{before}{bad}{after}");
                let e = WorkerId::parse(&s).unwrap_err().to_string();
                prop_assert!(e.starts_with("worker_id "), "{}", e);
                prop_assert!(WorkerGroup::parse(&s).is_err());
            }

            #[test]
            fn over_128_characters_is_refused(s in "[-_.0-9a-zA-Z]{129,400}") {
                let e = WorkerId::parse(&s).unwrap_err().to_string();
                prop_assert!(e.contains("1 to 128 characters"), "{}", e);
            }

            #[test]
            fn any_unicode_is_judged_without_panicking(s in any::<String>()) {
                let valid = (1..=128).contains(&s.len()) && s.chars().all(allowed);
                prop_assert_eq!(WorkerId::parse(&s).is_ok(), valid);
                if let Ok(id) = WorkerId::parse(&s) {
                    prop_assert!(id.as_str().len() == s.len() && id.as_str().chars().all(allowed));
                }
            }
        }
    }
}
