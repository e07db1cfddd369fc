//! `ping`: is the machine answering ICMP echo? (Being written.)

use super::{ActionContext, ActionError, Target};

pub async fn run(_target: &Target, _cx: &ActionContext) -> Result<serde_json::Value, ActionError> {
    Err(ActionError::Config("ping is not implemented yet".into()))
}
