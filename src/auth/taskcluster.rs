//! Authentication through Taskcluster's `auth.authenticateHawk`. (Being written.)

use std::time::Duration;

use super::{AuthError, Caller, HawkRequest};

pub struct TaskclusterAuth {
    _root_url: String,
    _timeout: Duration,
}

impl TaskclusterAuth {
    pub fn new(root_url: &str, timeout: Duration) -> Result<Self, AuthError> {
        Ok(Self {
            _root_url: root_url.to_string(),
            _timeout: timeout,
        })
    }

    pub async fn authenticate(
        &self,
        _req: &HawkRequest,
        _header: &str,
    ) -> Result<Caller, AuthError> {
        Err(AuthError::Unavailable("not implemented".into()))
    }
}
