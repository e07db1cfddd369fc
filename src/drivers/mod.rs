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

/// A driver's error, as `/metrics` counts it: `roller_driver_errors_total{driver}`.
pub(crate) trait DriverError {
    const DRIVER: &'static str;
    /// Cancellation is the job's own doing (a time limit, a shutdown), not the device's.
    fn is_cancelled(&self) -> bool;
}

/// Count `e` (unless it is a cancellation) and hand it on, where an action maps a
/// driver's error: `match counted(e) { … }`.
pub(crate) fn counted<E: DriverError>(e: E) -> E {
    if !e.is_cancelled() {
        metrics::counter!("roller_driver_errors_total", "driver" => E::DRIVER).increment(1);
    }
    e
}

macro_rules! driver_error {
    ($ty:ty, $name:literal, $($cancelled:pat),+) => {
        impl DriverError for $ty {
            const DRIVER: &'static str = $name;
            fn is_cancelled(&self) -> bool {
                matches!(self, $($cancelled)|+)
            }
        }
    };
}

driver_error!(bugzilla::BugzillaError, "bugzilla", bugzilla::BugzillaError::Cancelled);
driver_error!(dns::DnsError, "dns", dns::DnsError::Cancelled);
driver_error!(ilo::IloError, "ilo", ilo::IloError::Cancelled);
driver_error!(ipmi::IpmiError, "ipmi", ipmi::IpmiError::Cancelled);
driver_error!(ping::PingError, "ping", ping::PingError::Cancelled);
driver_error!(reachability::ProbeError, "probe", reachability::ProbeError::Cancelled);
driver_error!(redfish::RedfishError, "redfish", redfish::RedfishError::Cancelled);
driver_error!(snmp::SnmpError, "snmp", snmp::SnmpError::Cancelled, snmp::SnmpError::CancelledLeftOff(_));
driver_error!(ssh::SshError, "ssh", ssh::SshError::Cancelled);
driver_error!(taskcluster::TaskclusterError, "taskcluster", taskcluster::TaskclusterError::Cancelled);
driver_error!(xenapi::XenError, "xenapi", xenapi::XenError::Cancelled);

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

/// A response body, at most `max` bytes: a peer cannot make roller hold more.
pub(crate) async fn read_bounded(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if out.len() + chunk.len() > max {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Text from a peer, made safe to quote in an error: every occurrence of `secret`
/// (as is, and XML-escaped, in case the peer echoes a request body) replaced,
/// then cut to `max` characters. Replacing first means a cut can never leave a
/// piece of the secret behind.
pub(crate) fn scrub(text: &str, secret: &str, max: usize) -> String {
    let mut out = text.to_string();
    if !secret.is_empty() {
        out = out.replace(secret, "[redacted]");
        let escaped = quick_xml::escape::escape(secret);
        if escaped != secret {
            out = out.replace(escaped.as_ref(), "[redacted]");
        }
    }
    if out.chars().count() > max {
        out = out.chars().take(max).collect::<String>() + "…";
    }
    out
}

/// A URL for an error message: scheme, host and port only, so a user name,
/// password or token in it never reaches a log.
pub(crate) fn url_for_message(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}",
            u.scheme(),
            u.host_str().unwrap_or("?"),
            u.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "(not a URL)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_replaces_before_it_cuts_and_knows_xml_escapes() {
        assert_eq!(scrub("pw=abcdef end", "abcdef", 6), "pw=[re…");
        assert_eq!(scrub("login a&amp;b failed", "a&b", 100), "login [redacted] failed");
        assert_eq!(scrub("x", "", 10), "x");
    }

    #[test]
    fn urls_in_messages_lose_their_credentials_and_paths() {
        assert_eq!(url_for_message("https://u:secret@bz.example:8443/rest?k=1"), "https://bz.example:8443");
        assert_eq!(url_for_message("not a url secret"), "(not a URL)");
    }
}
