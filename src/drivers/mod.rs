//! Drivers own protocols: timeouts, retries, and keeping secrets out of argv and logs.
//! They know nothing about jobs, HTTP or the queue.

pub mod bugzilla;
pub mod dns;
pub mod gate;
pub mod hawk;
pub mod ilo;
pub mod ipmi;
pub mod moonshot;
pub mod ping;
pub mod reachability;
pub mod redfish;
pub mod simplemdm;
pub mod snmp;
pub mod ssh;
pub mod taskcluster;
pub mod xenapi;

/// What kind of failure a driver met. Actions keep it (`ActionError`), so the reboot
/// chain, the job record and `/metrics` can tell "BMC unreachable" from "password refused".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No answer: a timeout, a refused or dropped connection, an unreachable network.
    Unreachable,
    /// An answer that says no: wrong password or key, a missing privilege, a host key
    /// that changed, a command the device refuses.
    Refused,
    /// Roller cannot make the call here: its configuration, a missing tool, permissions.
    Config,
    /// The job's own doing (a time limit, a shutdown), not the device's.
    Cancelled,
    /// Anything else: the device answered, and not with what was asked.
    Failed,
}

impl Fault {
    /// The stable name, for `/metrics` labels and job records.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Unreachable => "unreachable",
            Fault::Refused => "refused",
            Fault::Config => "configuration",
            Fault::Cancelled => "cancelled",
            Fault::Failed => "failed",
        }
    }
}

/// A driver's error, as `/metrics` counts it: `roller_driver_errors_total{driver}`.
pub(crate) trait DriverError: std::fmt::Display {
    const DRIVER: &'static str;
    fn fault(&self) -> Fault;
}

/// Count `e` (unless it is a cancellation) and hand it on, where an action maps a
/// driver's error: `match counted(e) { … }`.
pub(crate) fn counted<E: DriverError>(e: E) -> E {
    let fault = e.fault();
    if fault != Fault::Cancelled {
        metrics::counter!("roller_driver_errors_total", "driver" => E::DRIVER).increment(1);
    }
    e
}

/// Each driver's errors by kind: one place per driver, read with its error type.
macro_rules! faults {
    ($ty:ty, $name:literal, |$e:ident| $body:expr) => {
        impl DriverError for $ty {
            const DRIVER: &'static str = $name;
            fn fault(&self) -> Fault {
                let $e = self;
                $body
            }
        }
    };
}

faults!(bugzilla::BugzillaError, "bugzilla", |e| {
    use bugzilla::BugzillaError as E;
    match e {
        E::InvalidUrl(_) => Fault::Config,
        E::Http { .. } | E::Timeout { .. } => Fault::Unreachable,
        E::Refused { .. } => Fault::Refused,
        E::Protocol { .. } => Fault::Failed,
        E::Cancelled => Fault::Cancelled,
    }
});
faults!(dns::DnsError, "dns", |e| match e {
    // A name that does not resolve: the job failed; nothing was unreachable yet.
    dns::DnsError::NotFound { .. } => Fault::Failed,
    dns::DnsError::Config(_) => Fault::Config,
    dns::DnsError::Cancelled => Fault::Cancelled,
});
faults!(ilo::IloError, "ilo", |e| {
    use ilo::IloError as E;
    match e {
        E::Connect { .. } | E::Tls { .. } | E::Timeout { .. } => Fault::Unreachable,
        E::Refused { .. } => Fault::Refused,
        E::Protocol { .. } => Fault::Failed,
        E::Cancelled => Fault::Cancelled,
    }
});
faults!(ipmi::IpmiError, "ipmi", |e| {
    use ipmi::IpmiError as E;
    match e {
        E::Auth { .. } | E::NoSol { .. } => Fault::Refused,
        E::Timeout { .. } | E::Unreachable { .. } => Fault::Unreachable,
        E::CommandFailed { .. } => Fault::Failed,
        E::ToolMissing | E::InvalidTarget(_) => Fault::Config,
        E::Cancelled => Fault::Cancelled,
    }
});
faults!(moonshot::MoonshotError, "moonshot", |e| {
    use moonshot::MoonshotError as E;
    match e {
        E::InvalidTarget(_) | E::CaFile { .. } => Fault::Config,
        E::Auth { .. } => Fault::Refused,
        E::Timeout { .. } | E::Connect { .. } => Fault::Unreachable,
        E::Http { .. } | E::Protocol { .. } => Fault::Failed,
        E::Cancelled => Fault::Cancelled,
    }
});
faults!(ping::PingError, "ping", |e| {
    use ping::PingError as E;
    match e {
        E::Permission { .. } | E::CommandMissing | E::InvalidSettings(_) => Fault::Config,
        E::CommandFailed { .. } | E::Io { .. } => Fault::Failed,
        E::Cancelled => Fault::Cancelled,
    }
});
faults!(reachability::ProbeError, "probe", |e| match e {
    reachability::ProbeError::Ping(p) => p.fault(),
    reachability::ProbeError::Cancelled => Fault::Cancelled,
});
faults!(redfish::RedfishError, "redfish", |e| {
    use redfish::RedfishError as E;
    match e {
        E::InvalidTarget(_) => Fault::Config,
        E::Auth { .. } => Fault::Refused,
        E::Timeout { .. } | E::Connect { .. } => Fault::Unreachable,
        E::Http { .. } | E::NoSystem { .. } | E::Unsupported { .. } | E::Protocol { .. } => Fault::Failed,
        E::Cancelled => Fault::Cancelled,
    }
});
faults!(simplemdm::SimpleMdmError, "simplemdm", |e| {
    use simplemdm::SimpleMdmError as E;
    match e {
        // A device id SimpleMDM does not know is the inventory's to fix.
        E::InvalidUrl(_) | E::NoDevice(_) => Fault::Config,
        E::KeyRefused { .. } | E::Refused { .. } => Fault::Refused,
        // Rate limited or unavailable past the call's deadline: SimpleMDM did not do it.
        E::GaveUp { .. } | E::Busy { .. } | E::Timeout { .. } | E::Http { .. } => Fault::Unreachable,
        E::Protocol { .. } => Fault::Failed,
        E::Cancelled => Fault::Cancelled,
    }
});
faults!(snmp::SnmpError, "snmp", |e| {
    use snmp::SnmpError as E;
    match e {
        // SNMPv2c answers a wrong community with silence: the two look the same.
        E::Timeout { .. } | E::Io { .. } => Fault::Unreachable,
        E::Agent { .. } => Fault::Refused,
        E::NoSuchOutlet { .. } | E::Protocol { .. } | E::NotStarted(_) => Fault::Failed,
        E::InvalidTarget(_) => Fault::Config,
        // Left off is the conservative end of a cancellation; the action says so loudly.
        E::Cancelled | E::CancelledLeftOff(_) => Fault::Cancelled,
    }
});
faults!(ssh::SshError, "ssh", |e| {
    use ssh::SshError as E;
    match e {
        E::InvalidHost(_) | E::KeyFile { .. } | E::KnownHostsFile { .. } => Fault::Config,
        E::HostKeyUnknown { .. } | E::HostKeyChanged { .. } | E::AuthFailed { .. } => Fault::Refused,
        E::Timeout { .. } | E::Connect { .. } => Fault::Unreachable,
        E::Protocol { .. } | E::CommandsFailed { .. } => Fault::Failed,
        E::Cancelled => Fault::Cancelled,
    }
});
faults!(taskcluster::TaskclusterError, "taskcluster", |e| {
    use taskcluster::TaskclusterError as E;
    match e {
        E::InvalidUrl(_) => Fault::Config,
        E::Transport { .. } => Fault::Unreachable,
        E::Refused { .. } => Fault::Refused,
        E::Protocol { .. } => Fault::Failed,
        E::Cancelled => Fault::Cancelled,
    }
});
faults!(xenapi::XenError, "xenapi", |e| {
    use xenapi::XenError as E;
    match e {
        E::InvalidUrl(_) => Fault::Config,
        E::Transport { .. } => Fault::Unreachable,
        E::Failure { description, .. } if description.first().is_some_and(|c| c == "SESSION_AUTHENTICATION_FAILED") => {
            Fault::Refused
        }
        E::Failure { .. } | E::Protocol { .. } | E::NotStarted(_) => Fault::Failed,
        E::Cancelled => Fault::Cancelled,
    }
});

/// Make a child process die with roller: `PR_SET_PDEATHSIG` (SIGKILL) set in the
/// child before it runs the program, so an `ipmitool` or `ping` never outlives a
/// runner that was SIGKILLed (a dropped future already kills it, `kill_on_drop`).
/// Linux sends the signal when the *thread* that spawned the child ends; children
/// are spawned from the runtime's worker threads, which live as long as roller.
pub(crate) fn die_with_parent(cmd: &mut tokio::process::Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe calls (prctl, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody will signal us.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

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

/// A response body, at most its first `max` bytes: a peer cannot make roller hold
/// more (a cut JSON body then fails to parse, which the caller reports).
pub(crate) async fn read_bounded(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if out.len() + chunk.len() > max {
            out.extend_from_slice(&chunk[..max - out.len()]);
            break;
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// An error and its sources, `: `-joined (reqwest's Display alone hides the cause), a
/// source whose text the chain already holds left out, cut to `max` characters.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static), max: usize) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        src = s.source();
    }
    bounded(&out, max)
}

/// `text` cut to `max` characters, the cut marked with `…`.
pub(crate) fn bounded(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// Text from a peer, made safe to quote in an error: every occurrence of `secret`
/// (as is, and XML-escaped, in case the peer echoes a request body) replaced,
/// then cut to `max` characters. Replacing first means a cut can never leave a
/// piece of the secret behind. The one redaction every driver uses.
pub(crate) fn scrub(text: &str, secret: &str, max: usize) -> String {
    let mut out = text.to_string();
    if !secret.is_empty() {
        out = out.replace(secret, "[redacted]");
        let escaped = quick_xml::escape::escape(secret);
        if escaped != secret {
            out = out.replace(escaped.as_ref(), "[redacted]");
        }
    }
    bounded(&out, max)
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
        assert_eq!(bounded("ééé", 2), "éé…");
        assert_eq!(bounded("abc", 3), "abc");
        assert_eq!(scrub("login a&amp;b failed", "a&b", 100), "login [redacted] failed");
        assert_eq!(scrub("x", "", 10), "x");
    }

    #[test]
    fn urls_in_messages_lose_their_credentials_and_paths() {
        assert_eq!(url_for_message("https://u:secret@bz.example:8443/rest?k=1"), "https://bz.example:8443");
        assert_eq!(url_for_message("not a url secret"), "(not a URL)");
    }
}
