//! Authentication (who is calling) and authorization (may they do this).
//!
//! Two backends behind one enum, chosen by configuration:
//! - `local`: Hawk verified here against configured clients, including
//!   Taskcluster temporary credentials and `authorizedScopes`;
//! - `taskcluster`: the request is forwarded to Taskcluster's `authenticateHawk`.
//!
//! Both verify a header into a [`Verified`]; the replay check (`replay`) and the
//! scope checks (`scopes`) are the same for both.

pub mod certificate;
pub mod hawk_header;
pub mod local;
pub mod nonce;
pub mod replay;
pub mod scopes;
pub mod taskcluster;

use std::time::SystemTime;

use crate::domain::ClientId;
use nonce::NonceDigest;
use replay::{PendingClaim, ReplayGuard};

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

/// A header its backend verified (MAC, timestamp, credentials): who is calling, and
/// the header's identity for the replay check.
#[derive(Debug)]
pub struct Verified {
    pub caller: Caller,
    /// The Hawk `id` as sent (the client id, or a temporary credential's name).
    pub id: String,
    pub ts: u64,
    pub nonce: String,
}

/// The configured authentication backend.
pub enum Backend {
    Local(local::LocalAuth),
    Taskcluster(taskcluster::TaskclusterAuth),
}

/// The backend and the replay check every header it verifies goes through.
pub struct Authenticator {
    backend: Backend,
    replay: ReplayGuard,
}

impl Authenticator {
    pub fn new(backend: Backend, replay: ReplayGuard) -> Self {
        Self { backend, replay }
    }

    /// Verified, and accepted once (the replay check's claim made).
    pub async fn authenticate(&self, req: &HawkRequest) -> Result<Caller, AuthError> {
        let (caller, pending) = self.verify(req).await?;
        self.claim(pending).await?;
        Ok(caller)
    }

    /// Verified and not a replay this process has seen, the claim still owed: for a
    /// request whose one write can carry it (an enqueue; see [`Authenticator::for_store`]).
    pub async fn verify(&self, req: &HawkRequest) -> Result<(Caller, PendingClaim), AuthError> {
        let Some(header) = req.authorization.as_deref() else {
            return Err(AuthError::Refused("Authentication credentials were not provided.".into()));
        };
        if header.len() > hawk_header::MAX_HEADER_LEN {
            return Err(AuthError::Refused(format!(
                "Authorization header is longer than {} bytes",
                hawk_header::MAX_HEADER_LEN
            )));
        }
        let v = match &self.backend {
            Backend::Local(a) => a.verify(req, header)?,
            Backend::Taskcluster(a) => a.verify(req, header).await?,
        };
        let pending = self.replay.prepare(&v.id, v.ts, &v.nonce, SystemTime::now())?;
        Ok((v.caller, pending))
    }

    /// Make the claim on its own (one round trip to the queue backend).
    pub async fn claim(&self, pending: PendingClaim) -> Result<(), AuthError> {
        self.replay.claim(pending, SystemTime::now()).await
    }

    /// The digest and expiry a write should claim with it, or `None`: then
    /// [`Authenticator::claim`] it (the check is in this process only).
    pub fn for_store(&self, pending: &PendingClaim) -> Option<(NonceDigest, SystemTime)> {
        self.replay.for_store(pending)
    }

    /// The write's answer to the claim it carried: `fresh` unless it was claimed before.
    pub fn settle(&self, pending: PendingClaim, fresh: bool) -> Result<(), AuthError> {
        self.replay.settle(pending, fresh, SystemTime::now())
    }
}

/// What a header whose MAC does not verify is told. Hawk's own "Bad mac" (kept first, for
/// whatever matches on it) names nothing to fix. The client id is the one the header
/// carries, so naming it tells a stranger nothing Hawk's answer does not ("Unknown
/// credentials" already tells an unknown id from a known one).
pub fn bad_mac(client_id: &str) -> String {
    format!(
        "Bad mac: wrong access token for client '{client_id}' (or the request changed after it was signed: \
         the method, path, host, port and body must be the ones signed)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn req(authorization: Option<String>) -> HawkRequest {
        HawkRequest {
            method: "POST".into(),
            resource: "/api/v1/workers/w1/group/g/jobs?task_name=ping".into(),
            host: "roller.example.com".into(),
            port: 443,
            authorization,
        }
    }

    fn signed(token: &str, nonce: &str) -> HawkRequest {
        let r = req(None);
        let creds = hawk::Credentials { id: "alice".into(), key: hawk::Key::new(token, hawk::SHA256).unwrap() };
        let h = hawk::RequestBuilder::new(&r.method, &r.host, r.port, &r.resource)
            .request()
            .make_header_full(&creds, SystemTime::now(), nonce)
            .unwrap();
        req(Some(format!("Hawk {h}")))
    }

    fn local() -> Authenticator {
        let alice = local::LocalClient {
            client_id: "alice".into(),
            access_token: SecretString::from("alice-secret"),
            scopes: vec!["project:releng:roller:*".into()],
        };
        Authenticator::new(Backend::Local(local::LocalAuth::new(vec![alice])), ReplayGuard::in_process())
    }

    fn refusal<T: std::fmt::Debug>(r: Result<T, AuthError>) -> String {
        match r {
            Err(AuthError::Refused(m)) => m,
            other => format!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_header_is_accepted_once_and_a_forged_one_burns_nothing() {
        let a = local();
        // A forged header with the nonce the client is about to use is refused for its
        // MAC, before the replay check, so it neither counts as the use nor burns it.
        assert!(
            refusal(a.authenticate(&signed("guess", "n1")).await).starts_with("Bad mac: wrong access token for client")
        );
        let good = signed("alice-secret", "n1");
        assert_eq!(a.authenticate(&good).await.unwrap().client_id.as_str(), "alice");
        assert_eq!(refusal(a.authenticate(&good).await), "Replayed nonce");
        // Verified but not claimed: the claim is what makes it used.
        let other = signed("alice-secret", "n2");
        let (_, pending) = a.verify(&other).await.unwrap();
        assert!(a.for_store(&pending).is_none(), "in process only: nothing to hand to a write");
        a.claim(pending).await.unwrap();
        assert_eq!(refusal(a.verify(&other).await), "Replayed nonce", "refused before any claim");
    }

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
