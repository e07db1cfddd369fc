//! Parsing the `Authorization: Hawk …` header and checking its MAC.
//!
//! The grammar follows mozilla/hawk `lib/utils.js` `parseAuthorizationHeader`
//! (taskcluster.md §1.1). We parse ourselves rather than with `hawk::Header`'s
//! `FromStr` because that parser neither strips the scheme nor rejects
//! duplicate or malformed attributes, and a duplicate `mac` or `ext` would let
//! two parties read the same header differently. The MAC itself is computed by
//! the `hawk` crate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::HawkRequest;

/// Hawk's limit on the header (mozilla/hawk `lib/utils.js`).
pub const MAX_HEADER_LEN: usize = 4096;

/// A syntactically valid Hawk header, with the attribute values as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HawkHeader {
    pub id: String,
    /// Unix seconds.
    pub ts: u64,
    pub nonce: String,
    /// Base64 payload hash, if the client sent one.
    pub hash: Option<String>,
    pub ext: Option<String>,
    /// Base64 MAC as sent.
    pub mac: String,
    /// Oz attributes; Taskcluster never sends them.
    pub app: Option<String>,
    pub dlg: Option<String>,
}

/// Why a header could not be parsed. The text is shown to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HeaderError(pub String);

fn invalid(what: impl std::fmt::Display) -> HeaderError {
    HeaderError(format!("Invalid Hawk header: {what}"))
}

const KEYS: [&str; 8] = ["id", "ts", "nonce", "hash", "ext", "mac", "app", "dlg"];

/// ASCII `\w`, as in the JavaScript regexes we mirror.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// ``[ \w!#$%&'()*+,\-./:;<=>?@[\]^`{|}~]``: printable ASCII minus `"` and `\`.
fn is_value_char(b: u8) -> bool {
    (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\'
}

fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && s[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Parse a full `Authorization` header value, scheme included.
pub fn parse(header: &str) -> Result<HawkHeader, HeaderError> {
    if header.len() > MAX_HEADER_LEN {
        return Err(invalid(format_args!("longer than {MAX_HEADER_LEN} bytes")));
    }
    let s = header.as_bytes();
    let scheme_end = s.iter().position(|b| !is_word(*b)).unwrap_or(s.len());
    if !header[..scheme_end].eq_ignore_ascii_case("hawk") {
        return Err(HeaderError("Unsupported authorization scheme (expected Hawk)".into()));
    }
    let mut i = skip_ws(s, scheme_end);
    if i == scheme_end || i == s.len() {
        return Err(invalid("no attributes"));
    }

    let mut attrs: [Option<&str>; 8] = [None; 8];
    while i < s.len() {
        // name="value" then optional whitespace, then a comma or the end.
        let name_start = i;
        while i < s.len() && is_word(s[i]) {
            i += 1;
        }
        let name = &header[name_start..i];
        if name.is_empty() || !s[i..].starts_with(b"=\"") {
            return Err(invalid("bad header format"));
        }
        i += 2;
        let value_start = i;
        // As in mozilla/hawk (`[^"\\]*`), a backslash is a format error:
        // Hawk has no escapes.
        while i < s.len() && s[i] != b'"' && s[i] != b'\\' {
            i += 1;
        }
        if i == s.len() || s[i] != b'"' {
            return Err(invalid("bad header format"));
        }
        let value = &header[value_start..i];
        i = skip_ws(s, i + 1);
        if i < s.len() {
            if s[i] != b',' {
                return Err(invalid("bad header format"));
            }
            i = skip_ws(s, i + 1);
        }

        let Some(k) = KEYS.iter().position(|k| *k == name) else {
            return Err(invalid(format_args!("unknown attribute {name}")));
        };
        if value.is_empty() || !value.bytes().all(is_value_char) {
            return Err(invalid(format_args!("bad value for attribute {name}")));
        }
        if attrs[k].is_some() {
            return Err(invalid(format_args!("duplicate attribute {name}")));
        }
        attrs[k] = Some(value);
    }

    let [id, ts, nonce, hash, ext, mac, app, dlg] = attrs;
    let missing: Vec<&str> = [("id", id), ("ts", ts), ("nonce", nonce), ("mac", mac)]
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| *k)
        .collect();
    let (Some(id), Some(ts), Some(nonce), Some(mac)) = (id, ts, nonce, mac) else {
        return Err(HeaderError(format!("Missing attributes: {}", missing.join(", "))));
    };
    Ok(HawkHeader {
        id: id.to_string(),
        ts: parse_ts(ts)?,
        nonce: nonce.to_string(),
        hash: hash.map(str::to_string),
        ext: ext.map(str::to_string),
        mac: mac.to_string(),
        app: app.map(str::to_string),
        dlg: dlg.map(str::to_string),
    })
}

/// Hawk signs `ts` as the string sent while the `hawk` crate re-formats the
/// number, so a leading zero would be a guaranteed "Bad mac"; refuse it
/// clearly instead. Twelve digits reach the year 33658 and cannot overflow
/// `SystemTime`.
fn parse_ts(ts: &str) -> Result<u64, HeaderError> {
    let bad = || invalid("ts must be a whole number of seconds");
    if ts.len() > 12 || !ts.bytes().all(|b| b.is_ascii_digit()) || (ts.len() > 1 && ts.starts_with('0')) {
        return Err(bad());
    }
    ts.parse().map_err(|_| bad())
}

impl HawkHeader {
    /// The signing time.
    pub fn time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.ts)
    }

    /// Whether `|ts - now| <= skew` (mozilla/hawk compares in milliseconds).
    pub fn is_fresh(&self, now: SystemTime, skew: Duration) -> bool {
        let ts = self.time();
        let diff = match now.duration_since(ts) {
            Ok(d) => d,
            Err(e) => e.duration(),
        };
        diff <= skew
    }

    /// Whether the MAC matches `req` under `key` (HMAC-SHA256), compared in
    /// constant time. Only the MAC is checked, not the timestamp, so callers
    /// can tell "Bad mac" from "Stale timestamp" and use their own clock.
    ///
    /// Method and host are normalized here because the `hawk` crate signs them
    /// as given while Hawk clients sign `METHOD` and `host`. Headers with
    /// `app` never match: the `hawk` crate has no Oz lines, and accepting them
    /// would let anyone append an unsigned `app` to a valid header.
    pub fn mac_matches(&self, req: &HawkRequest, key: &[u8]) -> bool {
        if self.app.is_some() || self.dlg.is_some() {
            return false;
        }
        let Ok(mac) = STANDARD.decode(&self.mac) else {
            return false;
        };
        // The hash is signed as its base64 text and the crate re-encodes the
        // bytes; strict (canonical) decoding makes that round trip exact.
        let hash = match &self.hash {
            Some(h) => match STANDARD.decode(h) {
                Ok(b) => Some(b),
                Err(_) => return false,
            },
            None => None,
        };
        let Ok(key) = hawk::Key::new(key, hawk::SHA256) else {
            return false;
        };
        let Ok(header) = hawk::Header::new(
            Some(self.id.as_str()),
            Some(self.time()),
            Some(self.nonce.as_str()),
            Some(hawk::mac::Mac::from(mac)),
            self.ext.as_deref(),
            hash,
            None,
            None,
        ) else {
            return false;
        };
        let method = req.method.to_ascii_uppercase();
        let host = req.host.to_ascii_lowercase();
        let request = hawk::RequestBuilder::new(&method, &host, req.port, &req.resource).request();
        // The crate's own timestamp check uses the wall clock; disable it
        // (Duration::MAX) and let the caller check freshness with its clock.
        request.validate_header(&header, &key, Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // mozilla/hawk API.md vectors (taskcluster.md §1.4).
    const KEY: &[u8] = b"werxhqb98rpaxn39848xrunpaw3489ruxnpa98w4rxn";

    fn vector_req(method: &str) -> HawkRequest {
        HawkRequest {
            method: method.into(),
            resource: "/resource/1?b=1&a=2".into(),
            host: "example.com".into(),
            port: 8000,
            authorization: None,
        }
    }

    #[test]
    fn get_vector_without_hash() {
        let h = parse(
            r#"Hawk id="dh37fgj492je", ts="1353832234", nonce="j4h3g2", ext="some-app-ext-data", mac="6R4rV5iE+NPoym+WwjeHzjAGXUtLNIxmo1vpMofpLAE=""#,
        )
        .unwrap();
        assert_eq!(h.id, "dh37fgj492je");
        assert_eq!(h.ts, 1353832234);
        assert_eq!(h.ext.as_deref(), Some("some-app-ext-data"));
        assert!(h.mac_matches(&vector_req("GET"), KEY));
        // Clients sign the upper-cased method and lower-cased host; we normalize.
        let mut lower = vector_req("get");
        lower.host = "EXAMPLE.com".into();
        assert!(h.mac_matches(&lower, KEY));
        assert!(!h.mac_matches(&vector_req("POST"), KEY));
        assert!(!h.mac_matches(&vector_req("GET"), b"wrong key"));
        let mut reordered = vector_req("GET");
        reordered.resource = "/resource/1?a=2&b=1".into();
        assert!(!h.mac_matches(&reordered, KEY));
    }

    #[test]
    fn post_vector_with_payload_hash() {
        let h = parse(
            r#"Hawk id="dh37fgj492je", ts="1353832234", nonce="j4h3g2", hash="Yi9LfIIFRtBEPt74PVmbTF/xVAwPn7ub15ePICfgnuY=", ext="some-app-ext-data", mac="aSe1DERmZuRl3pI36/9BdZmnErTw3sNzOOAUlfeKjVw=""#,
        )
        .unwrap();
        assert!(h.mac_matches(&vector_req("POST"), KEY));
        // The hash is covered by the MAC.
        let mut tampered = h.clone();
        tampered.hash = Some("Xi9LfIIFRtBEPt74PVmbTF/xVAwPn7ub15ePICfgnuY=".into());
        assert!(!tampered.mac_matches(&vector_req("POST"), KEY));
        let mut no_hash = h.clone();
        no_hash.hash = None;
        assert!(!no_hash.mac_matches(&vector_req("POST"), KEY));
        // As is ext.
        let mut other_ext = h;
        other_ext.ext = Some("other".into());
        assert!(!other_ext.mac_matches(&vector_req("POST"), KEY));
    }

    #[test]
    fn scheme_is_case_insensitive_and_required() {
        let rest = r#" id="a", ts="1", nonce="n", mac="m""#;
        for scheme in ["Hawk", "hawk", "HAWK"] {
            assert!(parse(&format!("{scheme}{rest}")).is_ok(), "{scheme}");
        }
        for bad in ["Bearer", "Hawkx", ""] {
            let e = parse(&format!("{bad}{rest}")).unwrap_err();
            assert!(e.0.starts_with("Unsupported"), "{bad}: {e}");
        }
        assert_eq!(parse("Hawk").unwrap_err().0, "Invalid Hawk header: no attributes");
        assert_eq!(parse("Hawk   ").unwrap_err().0, "Invalid Hawk header: no attributes");
        assert!(parse(r#"Hawkid="a""#).is_err());
    }

    #[test]
    fn duplicates_unknown_and_bad_values() {
        let e = |h: &str| parse(h).unwrap_err().0;
        assert_eq!(
            e(r#"Hawk id="a", ts="1", nonce="n", mac="m", mac="x""#),
            "Invalid Hawk header: duplicate attribute mac"
        );
        assert_eq!(
            e(r#"Hawk id="a", ts="1", nonce="n", ext="1", ext="2", mac="m""#),
            "Invalid Hawk header: duplicate attribute ext"
        );
        assert_eq!(
            e(r#"Hawk id="a", ts="1", nonce="n", foo="x", mac="m""#),
            "Invalid Hawk header: unknown attribute foo"
        );
        assert_eq!(
            e(r#"Hawk id="a", ts="1", nonce="", mac="m""#),
            "Invalid Hawk header: bad value for attribute nonce"
        );
        assert_eq!(
            e("Hawk id=\"a\u{e9}\", ts=\"1\", nonce=\"n\", mac=\"m\""),
            "Invalid Hawk header: bad value for attribute id"
        );
        for bad in [
            r#"Hawk id="a" ts="1", nonce="n", mac="m""#,
            r#"Hawk id="a",, ts="1", nonce="n", mac="m""#,
            r#"Hawk id="a\", ts="1", nonce="n", mac="m""#,
            r#"Hawk id="a", ts="1", nonce="n", mac="m"#,
            r#"Hawk id='a', ts="1", nonce="n", mac="m""#,
            r#"Hawk id = "a", ts="1", nonce="n", mac="m""#,
            "Hawk id=\"a\"\u{e9}",
        ] {
            assert_eq!(e(bad), "Invalid Hawk header: bad header format", "{bad}");
        }
        // A trailing comma and extra whitespace are fine, as in mozilla/hawk.
        assert!(parse("Hawk  id=\"a\" ,\tts=\"1\",nonce=\"n\", mac=\"m\" , ").is_ok());
    }

    #[test]
    fn missing_attributes_are_listed() {
        let e = |h: &str| parse(h).unwrap_err().0;
        assert_eq!(e(r#"Hawk id="a", ts="1", nonce="n""#), "Missing attributes: mac");
        assert_eq!(e(r#"Hawk ext="x""#), "Missing attributes: id, ts, nonce, mac");
    }

    #[test]
    fn ts_must_be_seconds() {
        let with_ts = |ts: &str| parse(&format!(r#"Hawk id="a", ts="{ts}", nonce="n", mac="m""#));
        assert_eq!(with_ts("0").unwrap().ts, 0);
        assert_eq!(with_ts("999999999999").unwrap().ts, 999_999_999_999);
        for bad in ["-1", "1.5", "01", "1e9", "9999999999999", "abc", " 1"] {
            assert_eq!(
                with_ts(bad).unwrap_err().0,
                "Invalid Hawk header: ts must be a whole number of seconds",
                "{bad}"
            );
        }
    }

    #[test]
    fn too_long_is_refused_without_parsing() {
        let long = format!(r#"Hawk id="a", ts="1", nonce="n", ext="{}", mac="m""#, "x".repeat(4096));
        assert!(parse(&long).unwrap_err().0.contains("longer than 4096"));
    }

    #[test]
    fn freshness_is_symmetric() {
        let h = parse(r#"Hawk id="a", ts="1000", nonce="n", mac="m""#).unwrap();
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        let skew = Duration::from_secs(900);
        assert!(h.is_fresh(at(1900), skew));
        assert!(h.is_fresh(at(100), skew));
        assert!(!h.is_fresh(at(1901), skew));
        assert!(!h.is_fresh(at(99), skew));
    }

    #[test]
    fn malformed_mac_or_hash_or_oz_never_match() {
        let base = parse(
            r#"Hawk id="dh37fgj492je", ts="1353832234", nonce="j4h3g2", ext="some-app-ext-data", mac="6R4rV5iE+NPoym+WwjeHzjAGXUtLNIxmo1vpMofpLAE=""#,
        )
        .unwrap();
        let mut bad_mac = base.clone();
        bad_mac.mac = "not base64!".into();
        assert!(!bad_mac.mac_matches(&vector_req("GET"), KEY));
        let mut bad_hash = base.clone();
        bad_hash.hash = Some("%%%".into());
        assert!(!bad_hash.mac_matches(&vector_req("GET"), KEY));
        let mut oz = base;
        oz.app = Some("app".into());
        assert!(!oz.mac_matches(&vector_req("GET"), KEY));
    }
}
