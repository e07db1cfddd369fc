//! Drivers own protocols: timeouts, retries, and keeping secrets out of argv and logs.
//! They know nothing about jobs, HTTP or the queue.

pub mod bugzilla;
pub mod dns;
pub mod gate;
pub mod ilo;
pub mod ipmi;
pub mod ping;
pub mod reachability;
pub mod redfish;
pub mod snmp;
pub mod ssh;
pub mod taskcluster;
pub mod xenapi;

/// One URL path segment: RFC 3986 unreserved bytes as they are, every other byte
/// percent-encoded, so a name can never add a `/`, `?` or `#` to a URL.
pub(crate) fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
