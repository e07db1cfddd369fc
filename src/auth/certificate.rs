//! Taskcluster's Hawk `ext`: temporary credentials (`certificate`) and
//! `authorizedScopes` (taskcluster.md §2; TC `services/auth/src/signaturevalidator.js`).
//!
//! Error texts are Taskcluster's, so a client sees the same reason from
//! roller's local backend as from Taskcluster. One deliberate difference in
//! order: the certificate signature is checked *before* the issuer's scopes.
//! Taskcluster checks the scopes first, which lets anyone holding no secret
//! learn, from the error text, whether an issuer holds a given scope; checking
//! the signature first refuses exactly the same certificates without that oracle.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use secrecy::SecretString;
use serde_json::{Map, Value};
use sha2::Sha256;

use super::scopes::{is_valid_scope, satisfies, satisfies_all};

/// Certificates may start up to this far in the future and be used this long
/// after expiry; separate from the 15-minute Hawk timestamp skew.
pub const CERT_SKEW_MS: f64 = 5.0 * 60.0 * 1000.0;
/// The longest a certificate may last.
pub const MAX_CERT_LIFETIME_MS: f64 = 31.0 * 24.0 * 60.0 * 60.0 * 1000.0;

/// Why `ext` was refused. The text is shown to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExtError(pub String);

fn fail<T>(msg: impl Into<String>) -> Result<T, ExtError> {
    Err(ExtError(msg.into()))
}

/// The decoded `ext` attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Ext {
    pub certificate: Option<Certificate>,
    pub authorized_scopes: Option<Vec<String>>,
}

/// A structurally valid certificate; [`Certificate::validate`] does the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct Certificate {
    pub seed: String,
    /// Milliseconds since the epoch.
    pub start: f64,
    pub expiry: f64,
    /// `start` and `expiry` as JavaScript prints them, which is what was signed.
    start_text: String,
    expiry_text: String,
    pub scopes: Vec<String>,
    /// Set for named temporary credentials.
    pub issuer: Option<String>,
    has_client_id: bool,
    /// `None` when the field is missing or not a string (never valid).
    signature: Option<String>,
}

/// Node's `Buffer.from(ext, 'base64')` accepts both alphabets with or without
/// padding, and clients differ (§2.1). Unlike Node we refuse other garbage.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// JavaScript truthiness, because Taskcluster tests `if (ext.certificate)`:
/// `null`, `false`, `0` and `""` mean "absent", while `[]` and `{}` do not.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

fn present<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| truthy(v))
}

/// Decode and structurally check `ext`.
pub fn parse_ext(ext: &str) -> Result<Ext, ExtError> {
    let normalized: String = ext
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    let Ok(bytes) = LENIENT.decode(normalized) else {
        return fail("Failed to parse ext");
    };
    // Node decodes invalid UTF-8 to U+FFFD before JSON.parse; so do we.
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(&String::from_utf8_lossy(&bytes)) else {
        return fail("Failed to parse ext");
    };
    let certificate = match present(&obj, "certificate") {
        Some(c) => Some(Certificate::from_json(c)?),
        None => None,
    };
    let authorized_scopes = match present(&obj, "authorizedScopes") {
        Some(Value::Array(a)) => Some(
            scope_list(a).ok_or_else(|| ExtError("ext.authorizedScopes must be an array of valid scopes".into()))?,
        ),
        Some(_) => return fail("ext.authorizedScopes must be an array"),
        None => None,
    };
    Ok(Ext { certificate, authorized_scopes })
}

fn scope_list(a: &[Value]) -> Option<Vec<String>> {
    a.iter().map(|v| v.as_str().filter(|s| is_valid_scope(s)).map(str::to_string)).collect()
}

/// A JSON number as JavaScript's `String(n)` prints it. serde_json keeps
/// integers exact and Rust prints other floats in the same shortest
/// round-trip form as JavaScript for every magnitude a valid certificate can
/// have (JavaScript switches to exponents only from 1e21).
fn js_number(n: &serde_json::Number) -> Option<(f64, String)> {
    if let Some(i) = n.as_i64() {
        return Some((i as f64, i.to_string()));
    }
    if let Some(u) = n.as_u64() {
        return Some((u as f64, u.to_string()));
    }
    let f = n.as_f64()?;
    Some((f, format!("{f}")))
}

impl Certificate {
    fn from_json(v: &Value) -> Result<Self, ExtError> {
        let Value::Object(c) = v else {
            return fail("ext.certificate must be a JSON object");
        };
        // Taskcluster reads the issuer before anything else (`loadCredentials`).
        let issuer = match present(c, "issuer") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return fail("ext.certificate.issuer must be a string"),
            None => None,
        };
        if c.get("version").and_then(Value::as_f64) != Some(1.0) {
            return fail("ext.certificate.version must be 1");
        }
        let Some(seed) = c.get("seed").and_then(Value::as_str) else {
            return fail("ext.certificate.seed must be a string");
        };
        // JavaScript's `length` counts UTF-16 units.
        if seed.encode_utf16().count() != 44 {
            return fail("ext.certificate.seed must be 44 characters");
        }
        let Some((start, start_text)) = c.get("start").and_then(Value::as_number).and_then(js_number) else {
            return fail("ext.certificate.start must be a number");
        };
        let Some((expiry, expiry_text)) = c.get("expiry").and_then(Value::as_number).and_then(js_number) else {
            return fail("ext.certificate.expiry must be a number");
        };
        let Some(Value::Array(scopes)) = c.get("scopes") else {
            return fail("ext.certificate.scopes must be an array");
        };
        let Some(scopes) = scope_list(scopes) else {
            return fail("ext.certificate.scopes must be an array of valid scopes");
        };
        Ok(Certificate {
            seed: seed.to_string(),
            start,
            expiry,
            start_text,
            expiry_text,
            scopes,
            issuer,
            has_client_id: c.contains_key("clientId"),
            signature: c.get("signature").and_then(Value::as_str).map(str::to_string),
        })
    }

    /// The client whose access token signed this certificate: `cert.issuer`
    /// for named credentials, else the Hawk id itself.
    pub fn issuer_for<'a>(&'a self, hawk_id: &'a str) -> Result<&'a str, ExtError> {
        match &self.issuer {
            Some(i) if i == hawk_id => fail("ext.certificate.issuer must differ from the supplied clientId"),
            Some(i) => Ok(i),
            None => Ok(hawk_id),
        }
    }

    /// Check the certificate (§2.2) for Hawk id `hawk_id`, issued by a client
    /// with `issuer_token` and `issuer_scopes` (see [`Certificate::issuer_for`]),
    /// and return the temporary access token the Hawk MAC must use.
    pub fn validate(
        &self,
        hawk_id: &str,
        issuer_token: &SecretString,
        issuer_scopes: &[String],
        now: SystemTime,
    ) -> Result<SecretString, ExtError> {
        use secrecy::ExposeSecret;
        let issuer = self.issuer_for(hawk_id)?;
        let now_ms = match now.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_millis() as f64,
            Err(e) => -(e.duration().as_millis() as f64),
        };
        if self.start > now_ms + CERT_SKEW_MS {
            return fail("ext.certificate.start > now");
        }
        if self.expiry < now_ms - CERT_SKEW_MS {
            return fail("ext.certificate.expiry < now");
        }
        if self.expiry - self.start > MAX_CERT_LIFETIME_MS {
            return fail("ext.certificate cannot last longer than 31 days!");
        }
        if self.issuer.is_none() && self.has_client_id {
            return fail("ext.certificate.clientId must only be used with ext.certificate.issuer");
        }

        let key = issuer_token.expose_secret().as_bytes();
        let named = self.issuer.as_deref().map(|i| (hawk_id, i));
        if !self.signature_ok(key, named) {
            return fail(if named.is_some() {
                "ext.certificate.signature is not valid, or wrong clientId provided"
            } else {
                "ext.certificate.signature is not valid"
            });
        }

        if self.issuer.is_some() {
            let create = format!("auth:create-client:{hawk_id}");
            if !satisfies(issuer_scopes, &create) {
                return fail(format!(
                    "ext.certificate issuer `{issuer}` doesn't have `{create}` for supplied clientId."
                ));
            }
        }
        if !satisfies_all(issuer_scopes, &self.scopes) {
            return fail(format!(
                "ext.certificate issuer `{issuer}` doesn't satisfy all certificate scopes {}.  \
                 The temporary credentials were not generated correctly.",
                self.scopes.join(", ")
            ));
        }
        Ok(SecretString::from(temporary_access_token(key, &self.seed)))
    }

    fn signature_ok(&self, key: &[u8], named: Option<(&str, &str)>) -> bool {
        let Some(sig) = &self.signature else {
            return false;
        };
        // Taskcluster compares base64 text; strict decoding accepts only the
        // canonical text, so comparing the bytes is the same test, and
        // `verify_slice` does it in constant time.
        let Ok(sig) = STANDARD.decode(sig) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
            return false;
        };
        mac.update(signed_text(named, &self.seed, &self.start_text, &self.expiry_text, &self.scopes).as_bytes());
        mac.verify_slice(&sig).is_ok()
    }
}

fn signed_text(named: Option<(&str, &str)>, seed: &str, start: &str, expiry: &str, scopes: &[String]) -> String {
    let mut lines = vec!["version:1".to_string()];
    if let Some((client_id, issuer)) = named {
        lines.push(format!("clientId:{client_id}"));
        lines.push(format!("issuer:{issuer}"));
    }
    lines.push(format!("seed:{seed}"));
    lines.push(format!("start:{start}"));
    lines.push(format!("expiry:{expiry}"));
    lines.push("scopes:".to_string());
    lines.extend(scopes.iter().cloned());
    lines.join("\n")
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// `base64(HMAC-SHA256(issuer_token, lines))`, the certificate signature.
/// `named` is `(clientId, issuer)` for named temporary credentials. Used to
/// mint certificates in tests and tools.
pub fn compute_signature(
    issuer_token: &[u8],
    named: Option<(&str, &str)>,
    seed: &str,
    start_ms: i64,
    expiry_ms: i64,
    scopes: &[String],
) -> String {
    let text = signed_text(named, seed, &start_ms.to_string(), &expiry_ms.to_string(), scopes);
    STANDARD.encode(hmac_sha256(issuer_token, text.as_bytes()))
}

/// `base64url_nopad(HMAC-SHA256(issuer_token, seed))`, the temporary access token.
pub fn temporary_access_token(issuer_token: &[u8], seed: &str) -> String {
    URL_SAFE_NO_PAD.encode(hmac_sha256(issuer_token, seed.as_bytes()))
}

/// Apply `authorizedScopes` (§2.3): `scopes` must satisfy all of them, and
/// they become the effective scopes. Roles are not expanded locally (there
/// are none), so `assume:anonymous` is not merged in.
pub fn apply_authorized_scopes(scopes: Vec<String>, authorized: Option<Vec<String>>) -> Result<Vec<String>, ExtError> {
    let Some(authorized) = authorized else {
        return Ok(scopes);
    };
    if !satisfies_all(&scopes, &authorized) {
        return fail(format!(
            "Supplied credentials do not satisfy authorizedScopes; credentials have scopes:\n\n```\n{}\n```\n\nauthorizedScopes are:\n\n```\n{}\n```",
            scopes.join("\n"),
            authorized.join("\n")
        ));
    }
    Ok(authorized)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use serde_json::json;
    use std::time::Duration;

    const SEED: &str = "aaaaaaaaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbbbbbbb";
    const START: i64 = 1_700_000_000_000;
    const EXPIRY: i64 = 1_700_003_600_000;
    const SIG: &str = "GnJJvNFiXaz9l0ybbaUkQwdagO/3tLkaEVHJ/UFDEV0=";
    const TEMP: &str = "Nv9f_SxXLxxUGBGtO6wz0Z7Ysf0QX_BUzg0nGcPQcAM";

    fn at_ms(ms: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    }
    fn root() -> SecretString {
        SecretString::from("root-secret")
    }
    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }
    fn cert_json() -> Value {
        json!({
            "version": 1,
            "scopes": ["project:releng:roller:reboot"],
            "start": START,
            "expiry": EXPIRY,
            "seed": SEED,
            "signature": SIG,
            "issuer": "root",
        })
    }
    fn encode(v: &Value) -> String {
        STANDARD.encode(v.to_string())
    }
    fn cert_of(v: Value) -> Result<Certificate, ExtError> {
        parse_ext(&encode(&json!({ "certificate": v })))?.certificate.ok_or_else(|| ExtError("no certificate".into()))
    }
    fn err(r: Result<SecretString, ExtError>) -> String {
        match r {
            Ok(_) => "accepted".into(),
            Err(e) => e.0,
        }
    }

    #[test]
    fn reference_vector() {
        let scopes = s(&["project:releng:roller:reboot"]);
        assert_eq!(compute_signature(b"root-secret", Some(("tmp-client", "root")), SEED, START, EXPIRY, &scopes), SIG);
        assert_eq!(temporary_access_token(b"root-secret", SEED), TEMP);

        let cert = cert_of(cert_json()).unwrap();
        assert_eq!(cert.issuer_for("tmp-client").unwrap(), "root");
        let token = cert.validate("tmp-client", &root(), &s(&["*"]), at_ms(START + 1000)).unwrap();
        assert_eq!(token.expose_secret(), TEMP);
    }

    #[test]
    fn both_base64_alphabets_with_and_without_padding() {
        // ASCII only encodes to '+' or '/' for '>', '?' or '~' in the last
        // byte of a 3-byte group, so "???" guarantees one; the padding field
        // then shifts the length until the encoding needs '=' too.
        let mut ext = json!({ "certificate": cert_json(), "authorizedScopes": ["x???"] });
        let mut std_text = STANDARD.encode(ext.to_string());
        for i in 0..3 {
            if std_text.ends_with('=') {
                break;
            }
            ext["pad"] = json!("p".repeat(i + 1));
            std_text = STANDARD.encode(ext.to_string());
        }
        assert!(std_text.ends_with('=') && (std_text.contains('+') || std_text.contains('/')));
        let url_text = std_text.replace('+', "-").replace('/', "_");
        let want = parse_ext(&std_text).unwrap();
        assert_eq!(want.authorized_scopes, Some(s(&["x???"])));
        for text in
            [url_text.clone(), url_text.trim_end_matches('=').to_string(), std_text.trim_end_matches('=').to_string()]
        {
            assert_eq!(parse_ext(&text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn unparseable_ext() {
        for bad in ["some-app-ext-data", "!!!", &STANDARD.encode("[1]"), &STANDARD.encode("{")] {
            assert_eq!(parse_ext(bad).unwrap_err().0, "Failed to parse ext", "{bad}");
        }
        // An object without either field is fine and means "no restriction".
        let e = parse_ext(&STANDARD.encode("{}")).unwrap();
        assert_eq!(e.certificate, None);
        assert_eq!(e.authorized_scopes, None);
        // Falsy values count as absent, like Taskcluster's `if (ext.certificate)`.
        let e = parse_ext(&encode(&json!({"certificate": null, "authorizedScopes": ""}))).unwrap();
        assert_eq!((e.certificate, e.authorized_scopes), (None, None));
    }

    #[test]
    fn structural_errors() {
        let with = |k: &str, v: Value| {
            let mut c = cert_json();
            c[k] = v;
            cert_of(c).unwrap_err().0
        };
        assert_eq!(cert_of(json!("x")).unwrap_err().0, "ext.certificate must be a JSON object");
        assert_eq!(with("version", json!(2)), "ext.certificate.version must be 1");
        assert_eq!(with("seed", json!(5)), "ext.certificate.seed must be a string");
        assert_eq!(with("seed", json!("short")), "ext.certificate.seed must be 44 characters");
        assert_eq!(with("start", json!("1")), "ext.certificate.start must be a number");
        assert_eq!(with("expiry", json!(null)), "ext.certificate.expiry must be a number");
        assert_eq!(with("scopes", json!("a")), "ext.certificate.scopes must be an array");
        assert_eq!(with("scopes", json!(["ok", "tab\t"])), "ext.certificate.scopes must be an array of valid scopes");
        assert_eq!(with("scopes", json!([1])), "ext.certificate.scopes must be an array of valid scopes");
        assert_eq!(with("issuer", json!(7)), "ext.certificate.issuer must be a string");
        let bad_as = |v: Value| parse_ext(&encode(&json!({ "authorizedScopes": v }))).unwrap_err().0;
        assert_eq!(bad_as(json!("a")), "ext.authorizedScopes must be an array");
        assert_eq!(bad_as(json!(["\n"])), "ext.authorizedScopes must be an array of valid scopes");
    }

    #[test]
    fn time_limits() {
        let cert = cert_of(cert_json()).unwrap();
        let ok = |now| cert.validate("tmp-client", &root(), &s(&["*"]), at_ms(now));
        // Five minutes of certificate skew either side.
        assert!(ok(START - 5 * 60 * 1000).is_ok());
        assert_eq!(err(ok(START - 5 * 60 * 1000 - 1)), "ext.certificate.start > now");
        assert!(ok(EXPIRY + 5 * 60 * 1000).is_ok());
        assert_eq!(err(ok(EXPIRY + 5 * 60 * 1000 + 1)), "ext.certificate.expiry < now");

        let long_expiry = START + 31 * 24 * 3600 * 1000 + 1;
        let scopes = s(&["project:releng:roller:reboot"]);
        let mut c = cert_json();
        c["expiry"] = json!(long_expiry);
        c["signature"] =
            json!(compute_signature(b"root-secret", Some(("tmp-client", "root")), SEED, START, long_expiry, &scopes));
        let long = cert_of(c).unwrap();
        assert_eq!(
            err(long.validate("tmp-client", &root(), &s(&["*"]), at_ms(START))),
            "ext.certificate cannot last longer than 31 days!"
        );
    }

    #[test]
    fn bad_signatures() {
        let now = at_ms(START);
        let named_bad = "ext.certificate.signature is not valid, or wrong clientId provided";
        let cert = cert_of(cert_json()).unwrap();
        // Wrong issuer token, and the right cert presented under another name.
        assert_eq!(err(cert.validate("tmp-client", &SecretString::from("nope"), &s(&["*"]), now)), named_bad);
        assert_eq!(err(cert.validate("other", &root(), &s(&["*"]), now)), named_bad);
        // Tampered fields.
        for (k, v) in [
            ("scopes", json!(["project:releng:roller:*"])),
            ("start", json!(START - 1)),
            ("seed", json!(SEED.replace('a', "c"))),
            ("signature", json!(SIG.trim_end_matches('='))),
            ("signature", json!(null)),
        ] {
            let mut c = cert_json();
            c[k] = v;
            let cert = cert_of(c).unwrap();
            assert_eq!(err(cert.validate("tmp-client", &root(), &s(&["*"]), now)), named_bad, "{k}");
        }
        // The same signature as an unnamed certificate covers different lines.
        let mut c = cert_json();
        c.as_object_mut().unwrap().remove("issuer");
        let cert = cert_of(c).unwrap();
        assert_eq!(err(cert.validate("root", &root(), &s(&["*"]), now)), "ext.certificate.signature is not valid");
    }

    #[test]
    fn float_times_sign_as_javascript_prints_them() {
        let scopes = s(&["a"]);
        let sig = compute_signature(b"k", None, SEED, START, EXPIRY, &scopes);
        let text = format!(
            r#"{{"certificate":{{"version":1.0,"scopes":["a"],"start":{START}.0,"expiry":{EXPIRY}.0,"seed":"{SEED}","signature":"{sig}"}}}}"#
        );
        let cert = parse_ext(&STANDARD.encode(text)).unwrap().certificate.unwrap();
        assert!(cert.validate("c", &SecretString::from("k"), &scopes, at_ms(START)).is_ok());
    }

    #[test]
    fn unnamed_and_named_rules() {
        let now = at_ms(START);
        let scopes = s(&["project:releng:roller:reboot"]);
        let unnamed_sig = compute_signature(b"root-secret", None, SEED, START, EXPIRY, &scopes);
        let mut c = cert_json();
        c.as_object_mut().unwrap().remove("issuer");
        c["signature"] = json!(unnamed_sig);
        let unnamed = cert_of(c.clone()).unwrap();
        assert_eq!(unnamed.issuer_for("root").unwrap(), "root");
        assert!(unnamed.validate("root", &root(), &s(&["project:*"]), now).is_ok());

        c["clientId"] = json!("root");
        let with_client_id = cert_of(c).unwrap();
        assert_eq!(
            err(with_client_id.validate("root", &root(), &s(&["*"]), now)),
            "ext.certificate.clientId must only be used with ext.certificate.issuer"
        );

        let named = cert_of(cert_json()).unwrap();
        assert_eq!(
            named.issuer_for("root").unwrap_err().0,
            "ext.certificate.issuer must differ from the supplied clientId"
        );
        assert_eq!(
            err(named.validate("tmp-client", &root(), &s(&["project:*"]), now)),
            "ext.certificate issuer `root` doesn't have `auth:create-client:tmp-client` for supplied clientId."
        );
        assert!(named.validate("tmp-client", &root(), &s(&["project:*", "auth:create-client:tmp-*"]), now).is_ok());
    }

    #[test]
    fn scopes_exceeding_the_issuer() {
        let now = at_ms(START);
        let named = cert_of(cert_json()).unwrap();
        let e = err(named.validate(
            "tmp-client",
            &root(),
            &s(&["auth:create-client:*", "project:releng:roller:rebo"]),
            now,
        ));
        assert!(
            e.starts_with(
                "ext.certificate issuer `root` doesn't satisfy all certificate scopes project:releng:roller:reboot."
            ),
            "{e}"
        );
    }

    #[test]
    fn authorized_scopes_narrow() {
        let held = s(&["project:releng:roller:*"]);
        assert_eq!(apply_authorized_scopes(held.clone(), None).unwrap(), held);
        assert_eq!(
            apply_authorized_scopes(held.clone(), Some(s(&["project:releng:roller:reboot"]))).unwrap(),
            s(&["project:releng:roller:reboot"])
        );
        assert_eq!(apply_authorized_scopes(held.clone(), Some(vec![])).unwrap(), Vec::<String>::new());
        let e = apply_authorized_scopes(held, Some(s(&["queue:*"]))).unwrap_err().0;
        assert!(e.starts_with("Supplied credentials do not satisfy authorizedScopes; "), "{e}");
        assert!(e.contains("project:releng:roller:*") && e.contains("queue:*"), "{e}");
    }

    mod properties {
        use super::super::*;
        use crate::auth::scopes::satisfies;
        use proptest::prelude::*;

        /// Stars only at the end (see `scopes::tests`: Taskcluster's `**` satisfies the scope
        /// `*` without satisfying what `*` does, so interior stars would "widen" by the rule).
        fn scopes() -> impl Strategy<Value = Vec<String>> {
            prop::collection::vec("[ab:]{0,5}\\*?", 0..4)
        }

        proptest! {
            #[test]
            fn authorized_scopes_never_widen(held in scopes(), authorized in scopes(), required in "[ab:*]{0,6}") {
                if let Ok(effective) = apply_authorized_scopes(held.clone(), Some(authorized)) {
                    prop_assert!(!satisfies(&effective, &required) || satisfies(&held, &required));
                }
            }
        }
    }
}
