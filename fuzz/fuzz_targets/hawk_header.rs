//! `Authorization: Hawk …` (src/auth/hawk_header.rs): refusals are `Err`, an accepted
//! header re-renders to one that parses to the same value, and no header the fuzzer writes
//! carries a MAC that matches under a key it never saw.

#![no_main]

use libfuzzer_sys::fuzz_target;
use roller::auth::HawkRequest;
use roller::auth::hawk_header::{HawkHeader, MAX_HEADER_LEN, parse};

/// The order mozilla/hawk clients emit, one space after each comma.
fn render(h: &HawkHeader) -> String {
    let ts = h.ts.to_string();
    let attrs = [
        ("id", Some(h.id.as_str())),
        ("ts", Some(ts.as_str())),
        ("nonce", Some(h.nonce.as_str())),
        ("hash", h.hash.as_deref()),
        ("ext", h.ext.as_deref()),
        ("mac", Some(h.mac.as_str())),
        ("app", h.app.as_deref()),
        ("dlg", h.dlg.as_deref()),
    ];
    let parts: Vec<String> = attrs.iter().filter_map(|(k, v)| v.map(|v| format!("{k}=\"{v}\""))).collect();
    format!("Hawk {}", parts.join(", "))
}

fn is_value(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\')
}

fuzz_target!(|data: &[u8]| {
    // Header values reach the parser as `str`; lossy decoding keeps non-ASCII input in play.
    let text = String::from_utf8_lossy(data);
    let Ok(h) = parse(&text) else { return };
    assert!(text.len() <= MAX_HEADER_LEN, "accepted a header over the limit");
    for v in
        [Some(&h.id), Some(&h.nonce), Some(&h.mac), h.hash.as_ref(), h.ext.as_ref(), h.app.as_ref(), h.dlg.as_ref()]
            .into_iter()
            .flatten()
    {
        assert!(is_value(v), "accepted attribute value {v:?}");
    }
    let again = render(&h);
    // The canonical spelling may be longer than a tightly packed input.
    if again.len() <= MAX_HEADER_LEN {
        assert_eq!(parse(&again).as_ref(), Ok(&h), "{again}");
    }
    let req = HawkRequest {
        method: "POST".into(),
        resource: "/api/v1/workers/w1/group/g/jobs?task_name=ping".into(),
        host: "roller.example".into(),
        port: 443,
        authorization: Some(text.to_string()),
    };
    assert!(!h.mac_matches(&req, b"fuzz: a key no seed was signed with"), "MAC forged: {text}");
});
