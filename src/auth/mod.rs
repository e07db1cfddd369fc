//! Authentication (who is calling) and authorization (may they do this).
//!
//! Two backends behind one enum, chosen by configuration:
//! - `local`: Hawk verified here against configured clients, including
//!   Taskcluster temporary credentials and `authorizedScopes`;
//! - `taskcluster`: the request is forwarded to Taskcluster's `authenticateHawk`.
//!
//! Both produce a [`Caller`]; scope checks (`scopes`) are the same for both.

pub mod certificate;
pub mod hawk_header;
pub mod local;
pub mod nonce;
pub mod replay;
pub mod scopes;
pub mod taskcluster;

use crate::domain::ClientId;

/// The parts of an HTTP request that a Hawk signature covers.
#[derive(Clone)]
pub struct HawkRequest {
    /// Upper-case HTTP method, e.g. `POST`.
    pub method: String,
    /// Path and query exactly as received.
    pub resource: String,
    /// The Host header's name, lower-cased, without the port.
    pub host: String,
    /// The port the client addressed.
    pub port: u16,
    /// The full `Authorization` header, if any.
    pub authorization: Option<String>,
}

/// The Authorization header is a credential: `Debug` never shows it.
impl std::fmt::Debug for HawkRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HawkRequest")
            .field("method", &self.method)
            .field("resource", &self.resource)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("authorization", &self.authorization.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub client_id: ClientId,
    pub scopes: Vec<String>,
}

impl Caller {
    pub fn has_scope(&self, required: &str) -> bool {
        scopes::satisfies(&self.scopes, required)
    }
}

/// Why a request was not authenticated. `Refused` answers 403 with its text as
/// `detail`; `Unavailable` and `ReplayCheckUnavailable` answer 503.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Refused(String),
    #[error("authentication service unavailable: {0}")]
    Unavailable(String),
    /// The record of used nonces (the queue backend) did not answer: the header
    /// is neither accepted unchecked nor called a replay (`replay`).
    #[error("replay check unavailable: {0}")]
    ReplayCheckUnavailable(String),
}

/// The configured authentication backend.
pub enum Authenticator {
    Local(local::LocalAuth),
    Taskcluster(taskcluster::TaskclusterAuth),
}

impl Authenticator {
    pub async fn authenticate(&self, req: &HawkRequest) -> Result<Caller, AuthError> {
        let Some(header) = req.authorization.as_deref() else {
            return Err(AuthError::Refused("Authentication credentials were not provided.".into()));
        };
        if header.len() > hawk_header::MAX_HEADER_LEN {
            return Err(AuthError::Refused(format!(
                "Authorization header is longer than {} bytes",
                hawk_header::MAX_HEADER_LEN
            )));
        }
        match self {
            Authenticator::Local(a) => a.authenticate(req, header).await,
            Authenticator::Taskcluster(a) => a.authenticate(req, header).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HawkRequest;

    #[test]
    fn debug_never_shows_the_authorization_header() {
        let r = HawkRequest {
            method: "POST".into(),
            resource: "/".into(),
            host: "h".into(),
            port: 1,
            authorization: Some("Hawk id=\"a\", mac=\"secret-mac\"".into()),
        };
        let shown = format!("{r:?}");
        assert!(!shown.contains("secret-mac") && shown.contains("[REDACTED]"), "{shown}");
    }
}
