//! Local Hawk verification against configured clients. (Being written.)

use super::{AuthError, Caller, HawkRequest};
use crate::config::LocalClient;

pub struct LocalAuth {
    _clients: Vec<LocalClient>,
}

impl LocalAuth {
    pub fn new(clients: Vec<LocalClient>) -> Self {
        Self { _clients: clients }
    }

    pub fn authenticate(&self, _req: &HawkRequest, _header: &str) -> Result<Caller, AuthError> {
        Err(AuthError::Refused("not implemented".into()))
    }
}
