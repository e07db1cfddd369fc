//! Local Hawk verification against configured clients.
//!
//! Behaves like Taskcluster's `authenticateHawk` (taskcluster.md §1.5, §2)
//! with three deliberate differences:
//! - replays are refused (Taskcluster has no nonce check; a roller request
//!   reboots hardware), across processes and restarts: the header this returns
//!   verified goes through the replay check (`Authenticator`, `replay`);
//! - `authorizedScopes` is checked only after the MAC, because its error text
//!   lists the credential's scopes, which should not go to someone who cannot
//!   sign;
//! - there are no roles, so `assume:anonymous` is not merged in.
//!
//! The payload hash, if sent, is covered by the MAC but not compared with the
//! body; that needs the body, which [`HawkRequest`] does not carry.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};

use super::certificate::{self, Ext};
use super::{AuthError, Caller, HawkRequest, Verified, hawk_header};
use crate::domain::ClientId;

/// A client whose Hawk credentials roller holds itself (the local backend).
#[derive(Debug, Clone)]
pub struct LocalClient {
    pub client_id: String,
    pub access_token: SecretString,
    pub scopes: Vec<String>,
}

/// Taskcluster's Hawk timestamp skew ("similar to AWS").
pub const TIMESTAMP_SKEW: Duration = Duration::from_secs(15 * 60);

pub struct LocalAuth {
    clients: HashMap<String, LocalClient>,
}

fn refused(msg: impl Into<String>) -> AuthError {
    AuthError::Refused(msg.into())
}

impl LocalAuth {
    pub fn new(clients: Vec<LocalClient>) -> Self {
        let mut map = HashMap::new();
        for c in clients {
            // The first definition wins, so a later duplicate cannot shadow it.
            map.entry(c.client_id.clone()).or_insert(c);
        }
        Self { clients: map }
    }

    /// The header verified (everything but the replay check, which is the caller's).
    pub fn verify(&self, req: &HawkRequest, header: &str) -> Result<Verified, AuthError> {
        self.verify_at(req, header, SystemTime::now())
    }

    /// [`LocalAuth::verify`] with the clock given, for tests.
    pub fn verify_at(&self, req: &HawkRequest, header: &str, now: SystemTime) -> Result<Verified, AuthError> {
        let hdr = hawk_header::parse(header).map_err(|e| refused(e.0))?;
        if hdr.app.is_some() || hdr.dlg.is_some() {
            return Err(refused("Invalid Hawk header: app and dlg (Oz) are not supported"));
        }
        let client_id = ClientId::parse(&hdr.id).map_err(|_| refused("Invalid Hawk header: invalid id"))?;
        let ext = match &hdr.ext {
            Some(e) => certificate::parse_ext(e).map_err(|e| refused(e.0))?,
            None => Ext { certificate: None, authorized_scopes: None },
        };

        // The client whose token signs: the issuer for temporary credentials.
        let issuer_id = match &ext.certificate {
            Some(c) => c.issuer_for(&hdr.id).map_err(|e| refused(e.0))?,
            None => hdr.id.as_str(),
        };
        let Some(issuer) = self.clients.get(issuer_id) else {
            return Err(refused("Unknown credentials"));
        };
        let (key, scopes): (SecretString, Vec<String>) = match &ext.certificate {
            Some(cert) => {
                let key =
                    cert.validate(&hdr.id, &issuer.access_token, &issuer.scopes, now).map_err(|e| refused(e.0))?;
                (key, cert.scopes.clone())
            }
            None => (issuer.access_token.clone(), issuer.scopes.clone()),
        };

        if !hdr.mac_matches(req, key.expose_secret().as_bytes()) {
            return Err(refused(super::bad_mac(&hdr.id)));
        }
        if !hdr.is_fresh(now, TIMESTAMP_SKEW) {
            return Err(refused("Stale timestamp"));
        }
        let scopes = certificate::apply_authorized_scopes(scopes, ext.authorized_scopes).map_err(|e| refused(e.0))?;
        // The MAC verified and the timestamp in range: only such a header may be
        // recorded by the replay check (`replay`), so strangers cannot burn nonces.
        Ok(Verified { caller: Caller { client_id, scopes }, id: hdr.id, ts: hdr.ts, nonce: hdr.nonce })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    use serde_json::{Value, json};
    use std::time::UNIX_EPOCH;

    const NOW: u64 = 1_700_000_100;
    const SEED: &str = "aaaaaaaaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbbbbbbb";

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn client(id: &str, token: &str, scopes: &[&str]) -> LocalClient {
        LocalClient {
            client_id: id.into(),
            access_token: SecretString::from(token),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn auth() -> LocalAuth {
        LocalAuth::new(vec![
            client("root", "root-secret", &["*"]),
            client("alice", "alice-secret", &["project:releng:roller:*", "auth:create-client:alice/*"]),
        ])
    }

    fn req() -> HawkRequest {
        HawkRequest {
            method: "POST".into(),
            resource: "/api/v1/workers/w1/jobs?task_name=reboot".into(),
            host: "roller.example.com".into(),
            port: 443,
            authorization: None,
        }
    }

    struct Sign<'a> {
        id: &'a str,
        token: &'a str,
        ts: u64,
        nonce: &'a str,
        ext: Option<String>,
    }

    impl<'a> Sign<'a> {
        fn new(id: &'a str, token: &'a str) -> Self {
            Sign { id, token, ts: NOW, nonce: "abc123", ext: None }
        }

        /// Sign as a client would, with the `hawk` crate.
        fn header(&self, req: &HawkRequest) -> String {
            let creds =
                hawk::Credentials { id: self.id.into(), key: hawk::Key::new(self.token, hawk::SHA256).unwrap() };
            let h = hawk::RequestBuilder::new(&req.method, &req.host, req.port, &req.resource)
                .ext(self.ext.as_deref())
                .request()
                .make_header_full(&creds, at(self.ts), self.nonce)
                .unwrap();
            format!("Hawk {h}")
        }
    }

    impl LocalAuth {
        /// The verification alone, as the tests below look at it.
        fn authenticate_at(&self, req: &HawkRequest, header: &str, now: SystemTime) -> Result<Caller, AuthError> {
            self.verify_at(req, header, now).map(|v| v.caller)
        }
    }

    fn refusal(r: Result<Caller, AuthError>) -> String {
        match r {
            Ok(c) => format!("accepted {c:?}"),
            Err(AuthError::Refused(m)) => m,
            Err(e) => format!("unexpected {e}"),
        }
    }

    #[test]
    fn accepts_a_permanent_client() {
        let a = auth();
        let c = a.authenticate_at(&req(), &Sign::new("alice", "alice-secret").header(&req()), at(NOW)).unwrap();
        assert_eq!(c.client_id.as_str(), "alice");
        assert!(c.has_scope("project:releng:roller:reboot"));
        assert!(!c.has_scope("queue:anything"));
    }

    #[test]
    fn wall_clock_entry_point_accepts_a_fresh_header() {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let mut s = Sign::new("alice", "alice-secret");
        s.ts = now;
        let c = auth().verify(&req(), &s.header(&req())).unwrap().caller;
        assert_eq!(c.client_id.as_str(), "alice");
    }

    #[test]
    fn normalizes_method_and_host_of_the_request() {
        let signed = Sign::new("alice", "alice-secret").header(&req());
        let mut seen = req();
        seen.method = "post".into();
        seen.host = "Roller.Example.COM".into();
        assert!(auth().authenticate_at(&seen, &signed, at(NOW)).is_ok());
    }

    #[test]
    fn wrong_token_or_request_is_bad_mac() {
        let a = auth();
        let h = Sign::new("alice", "not-alice-secret").header(&req());
        assert!(refusal(a.authenticate_at(&req(), &h, at(NOW))).starts_with("Bad mac: wrong access token for client"));

        let h = Sign::new("alice", "alice-secret").header(&req());
        let mut other = req();
        other.resource = "/api/v1/workers/w1/jobs?task_name=reimage".into();
        assert!(refusal(a.authenticate_at(&other, &h, at(NOW))).starts_with("Bad mac: wrong access token for client"));
        let mut other = req();
        other.port = 8443;
        assert!(refusal(a.authenticate_at(&other, &h, at(NOW))).starts_with("Bad mac: wrong access token for client"));
    }

    #[test]
    fn token_never_appears_in_errors() {
        let a = auth();
        let h = Sign::new("alice", "wrong").header(&req());
        let e = refusal(a.authenticate_at(&req(), &h, at(NOW)));
        assert!(!e.contains("alice-secret"));
        let dbg = format!("{:?}", client("x", "sekrit", &[]));
        assert!(!dbg.contains("sekrit"), "{dbg}");
    }

    #[test]
    fn stale_timestamps() {
        let a = auth();
        let h = Sign::new("alice", "alice-secret").header(&req());
        assert!(a.authenticate_at(&req(), &h, at(NOW - 15 * 60)).is_ok());
        let h2 = {
            let mut s = Sign::new("alice", "alice-secret");
            s.nonce = "other";
            s.header(&req())
        };
        assert!(a.authenticate_at(&req(), &h2, at(NOW + 15 * 60)).is_ok());
        let h3 = {
            let mut s = Sign::new("alice", "alice-secret");
            s.nonce = "third";
            s.header(&req())
        };
        assert_eq!(refusal(a.authenticate_at(&req(), &h3, at(NOW + 15 * 60 + 1))), "Stale timestamp");
        assert_eq!(refusal(a.authenticate_at(&req(), &h3, at(NOW - 15 * 60 - 1))), "Stale timestamp");
        // A stale header with a bad MAC is reported as a bad MAC, as in Hawk.
        let bad = Sign::new("alice", "nope").header(&req());
        assert!(
            refusal(a.authenticate_at(&req(), &bad, at(NOW + 3600)))
                .starts_with("Bad mac: wrong access token for client")
        );
    }

    #[test]
    fn the_verified_header_is_named_for_the_replay_check() {
        let mut s = Sign::new("alice", "alice-secret");
        s.nonce = "n-42";
        let v = auth().verify_at(&req(), &s.header(&req()), at(NOW)).unwrap();
        assert_eq!((v.id.as_str(), v.ts, v.nonce.as_str()), ("alice", NOW, "n-42"));
    }

    #[test]
    fn unknown_clients_and_bad_headers() {
        let a = auth();
        let h = Sign::new("mallory", "x").header(&req());
        assert_eq!(refusal(a.authenticate_at(&req(), &h, at(NOW))), "Unknown credentials");
        assert_eq!(
            refusal(a.authenticate_at(&req(), "Bearer abc", at(NOW))),
            "Unsupported authorization scheme (expected Hawk)"
        );
        let h = Sign::new("alice", "alice-secret").header(&req());
        let dup = h.replacen("mac=", "mac=\"AAAA\", mac=", 1);
        assert_eq!(refusal(a.authenticate_at(&req(), &dup, at(NOW))), "Invalid Hawk header: duplicate attribute mac");
        let oz = h.replacen("mac=", "app=\"x\", mac=", 1);
        assert!(refusal(a.authenticate_at(&req(), &oz, at(NOW))).contains("not supported"));
    }

    fn cert(issuer: Option<&str>, name: &str, token: &[u8], scopes: &[&str], start: i64, expiry: i64) -> Value {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        let named = issuer.map(|i| (name, i));
        let sig = certificate::compute_signature(token, named, SEED, start, expiry, &scopes);
        let mut c = json!({
            "version": 1, "scopes": scopes, "start": start, "expiry": expiry,
            "seed": SEED, "signature": sig,
        });
        if let Some(i) = issuer {
            c["issuer"] = json!(i);
        }
        c
    }

    const MS: i64 = NOW as i64 * 1000;
    const HOUR_MS: i64 = 3_600_000;

    #[test]
    fn temporary_credentials_in_both_alphabets() {
        let c = cert(None, "alice", b"alice-secret", &["project:releng:roller:reboot"], MS - HOUR_MS, MS + HOUR_MS);
        let temp = certificate::temporary_access_token(b"alice-secret", SEED);
        let ext_json = json!({ "certificate": c }).to_string();
        for (i, ext) in [STANDARD.encode(&ext_json), URL_SAFE.encode(&ext_json)].into_iter().enumerate() {
            let a = auth();
            let mut s = Sign::new("alice", &temp);
            s.ext = Some(ext);
            let caller = a.authenticate_at(&req(), &s.header(&req()), at(NOW)).unwrap();
            assert_eq!(caller.client_id.as_str(), "alice", "{i}");
            assert_eq!(caller.scopes, vec!["project:releng:roller:reboot".to_string()]);
            // The temporary token is the key, not the issuer's token.
            s.token = "alice-secret";
            assert!(
                refusal(a.authenticate_at(&req(), &s.header(&req()), at(NOW)))
                    .starts_with("Bad mac: wrong access token")
            );
        }
    }

    #[test]
    fn named_temporary_credentials() {
        let temp = certificate::temporary_access_token(b"alice-secret", SEED);
        let sign = |name: &'static str, c: Value| {
            let mut s = Sign::new(name, "");
            s.ext = Some(STANDARD.encode(json!({ "certificate": c }).to_string()));
            s
        };
        let c =
            cert(Some("alice"), "alice/laptop", b"alice-secret", &["project:releng:roller:reboot"], MS, MS + HOUR_MS);
        let mut s = sign("alice/laptop", c);
        s.token = &temp;
        let caller = auth().authenticate_at(&req(), &s.header(&req()), at(NOW)).unwrap();
        assert_eq!(caller.client_id.as_str(), "alice/laptop");
        assert_eq!(caller.scopes, vec!["project:releng:roller:reboot".to_string()]);

        // alice may not mint credentials named outside alice/*.
        let c = cert(Some("alice"), "bob", b"alice-secret", &["project:releng:roller:reboot"], MS, MS + HOUR_MS);
        let mut s = sign("bob", c);
        s.token = &temp;
        assert_eq!(
            refusal(auth().authenticate_at(&req(), &s.header(&req()), at(NOW))),
            "ext.certificate issuer `alice` doesn't have `auth:create-client:bob` for supplied clientId."
        );

        // An unknown issuer.
        let c = cert(Some("carol"), "carol/x", b"carol-secret", &[], MS, MS + HOUR_MS);
        let mut s = sign("carol/x", c);
        s.token = &temp;
        assert_eq!(refusal(auth().authenticate_at(&req(), &s.header(&req()), at(NOW))), "Unknown credentials");
    }

    #[test]
    fn expired_or_overreaching_certificates() {
        let temp = certificate::temporary_access_token(b"alice-secret", SEED);
        let run = |c: Value| {
            let mut s = Sign::new("alice", &temp);
            s.ext = Some(STANDARD.encode(json!({ "certificate": c }).to_string()));
            refusal(auth().authenticate_at(&req(), &s.header(&req()), at(NOW)))
        };
        let expired = cert(None, "alice", b"alice-secret", &[], MS - 2 * HOUR_MS, MS - HOUR_MS);
        assert_eq!(run(expired), "ext.certificate.expiry < now");
        let forged = cert(None, "alice", b"guess", &[], MS, MS + HOUR_MS);
        assert_eq!(run(forged), "ext.certificate.signature is not valid");
        let greedy = cert(None, "alice", b"alice-secret", &["queue:*"], MS, MS + HOUR_MS);
        assert!(
            run(greedy).starts_with("ext.certificate issuer `alice` doesn't satisfy all certificate scopes queue:*.")
        );
        assert_eq!(run(json!({"version": 2})), "ext.certificate.version must be 1");
    }

    #[test]
    fn authorized_scopes_narrow_the_caller() {
        let a = auth();
        let mut s = Sign::new("alice", "alice-secret");
        s.ext = Some(STANDARD.encode(json!({ "authorizedScopes": ["project:releng:roller:reboot"] }).to_string()));
        let caller = a.authenticate_at(&req(), &s.header(&req()), at(NOW)).unwrap();
        assert_eq!(caller.scopes, vec!["project:releng:roller:reboot".to_string()]);
        assert!(!caller.has_scope("project:releng:roller:reimage"));

        s.nonce = "n2";
        s.ext = Some(STANDARD.encode(json!({ "authorizedScopes": ["queue:*"] }).to_string()));
        let e = refusal(a.authenticate_at(&req(), &s.header(&req()), at(NOW)));
        assert!(e.starts_with("Supplied credentials do not satisfy authorizedScopes; "), "{e}");

        // Without a valid MAC the scopes are not revealed.
        s.nonce = "n3";
        s.token = "wrong";
        assert!(
            refusal(a.authenticate_at(&req(), &s.header(&req()), at(NOW))).starts_with("Bad mac: wrong access token")
        );
    }

    #[test]
    fn authorized_scopes_apply_to_certificate_scopes() {
        let c = cert(
            None,
            "alice",
            b"alice-secret",
            &["project:releng:roller:reboot", "project:releng:roller:reimage"],
            MS,
            MS + HOUR_MS,
        );
        let temp = certificate::temporary_access_token(b"alice-secret", SEED);
        let mut s = Sign::new("alice", &temp);
        s.ext = Some(
            STANDARD
                .encode(json!({ "certificate": c, "authorizedScopes": ["project:releng:roller:reimage"] }).to_string()),
        );
        let caller = auth().authenticate_at(&req(), &s.header(&req()), at(NOW)).unwrap();
        assert_eq!(caller.scopes, vec!["project:releng:roller:reimage".to_string()]);

        // The certificate's scopes, not alice's own, bound authorizedScopes.
        s.ext = Some(
            STANDARD
                .encode(json!({ "certificate": c, "authorizedScopes": ["auth:create-client:alice/x"] }).to_string()),
        );
        let e = refusal(auth().authenticate_at(&req(), &s.header(&req()), at(NOW)));
        assert!(e.starts_with("Supplied credentials do not satisfy authorizedScopes; "), "{e}");
    }

    #[test]
    fn ext_that_is_not_taskcluster_json_is_refused() {
        let mut s = Sign::new("alice", "alice-secret");
        s.ext = Some("some-app-ext-data".into());
        assert_eq!(refusal(auth().authenticate_at(&req(), &s.header(&req()), at(NOW))), "Failed to parse ext");
    }
}
