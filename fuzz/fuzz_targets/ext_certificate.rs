//! Taskcluster's Hawk `ext` (src/auth/certificate.rs): temporary-credential certificates
//! and authorizedScopes. The input is used twice: as the `ext` text itself (base64 decoding
//! paths), and as the JSON document, encoded by every alphabet and padding clients use, which
//! must all decode to the same answer.

#![no_main]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use libfuzzer_sys::fuzz_target;
use roller::auth::certificate::{Ext, apply_authorized_scopes, parse_ext, temporary_access_token};
use roller::auth::scopes::is_valid_scope;
use secrecy::{ExposeSecret, SecretString};

/// The issuer token of the seed corpus' certificates (taskcluster.md §2.2 test vector).
const SEED_ISSUER_TOKEN: &str = "root-secret";

fn at_ms(ms: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.clamp(0.0, 1e15) as u64)
}

fn check(ext: &Ext) {
    let all = vec!["*".to_string()];
    if let Some(a) = &ext.authorized_scopes {
        assert!(a.iter().all(|s| is_valid_scope(s)), "invalid authorizedScopes accepted: {a:?}");
        assert_eq!(apply_authorized_scopes(all.clone(), Some(a.clone())).as_ref(), Ok(a), "`*` satisfies anything");
        if !a.is_empty() {
            assert!(apply_authorized_scopes(vec![], Some(a.clone())).is_err(), "nothing satisfies {a:?}");
        }
    }
    let Some(cert) = &ext.certificate else { return };
    assert_eq!(cert.seed.encode_utf16().count(), 44);
    assert!(cert.scopes.iter().all(|s| is_valid_scope(s)), "invalid certificate scopes accepted");
    for hawk_id in ["tmp-client", "root"] {
        for now in [at_ms(cert.start), at_ms(cert.expiry), at_ms(cert.start + 1000.0)] {
            // A valid signature needs the issuer's token: no other key may ever pass.
            let forged = cert.validate(hawk_id, &SecretString::from("fuzz: never a signing key"), &all, now);
            assert!(forged.is_err(), "certificate accepted under a key that did not sign it");
            if let Ok(token) = cert.validate(hawk_id, &SecretString::from(SEED_ISSUER_TOKEN), &all, now) {
                assert_eq!(token.expose_secret(), temporary_access_token(SEED_ISSUER_TOKEN.as_bytes(), &cert.seed));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(ext) = parse_ext(&String::from_utf8_lossy(data)) {
        check(&ext);
    }
    let want = parse_ext(&STANDARD.encode(data));
    for engine in [STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
        assert_eq!(parse_ext(&engine.encode(data)), want, "alphabets disagree");
    }
    if let Ok(ext) = want {
        check(&ext);
    }
});
