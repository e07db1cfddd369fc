//! DNS: a host name to one address, with hickory-resolver.
//!
//! A short name (no dot, as worker ids are) is tried under each search domain
//! in order, then as given; a name with dots is tried as given first, then
//! under the domains. Every candidate is queried as an absolute name (trailing
//! dot), so the host's resolv.conf `search`/`ndots` never add names of their
//! own: what was tried is exactly what the error says was tried. The search
//! domains are an argument, not part of the resolver, because they live in the
//! inventory, which can be reloaded while the resolver lives on.
//!
//! The nameservers are the system's (resolv.conf, plus /etc/hosts) unless the
//! caller names them. One [`DnsResolver`] serves the whole process; clones
//! share it, and hickory's cache with it.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use tokio_util::sync::CancellationToken;

/// A job must not hang on DNS; this bounds one whole resolution, every candidate included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the addresses come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// Nameservers to ask (UDP, and TCP for truncated answers); empty: the system's.
    pub nameservers: Vec<SocketAddr>,
    /// Bound on one [`DnsResolver::resolve`] call.
    pub timeout: Duration,
}

impl Default for DnsSettings {
    fn default() -> Self {
        Self { nameservers: Vec::new(), timeout: DEFAULT_TIMEOUT }
    }
}

/// A name that resolved: the canonical name that held the address (after any
/// CNAMEs, without the trailing dot) and the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub name: String,
    pub addr: IpAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// No candidate name gave an address; the message names each one and why.
    #[error("cannot resolve {host}: {detail}")]
    NotFound { host: String, detail: String },
    /// The resolver cannot be built (an unreadable resolv.conf, say).
    #[error("DNS resolver configuration: {0}")]
    Config(String),
    #[error("cancelled")]
    Cancelled,
}

/// The process's resolver, built on first use (an IP literal never needs it,
/// so a host without resolv.conf can still work on addresses).
#[derive(Clone, Default)]
pub struct DnsResolver {
    settings: DnsSettings,
    built: Arc<Mutex<Option<TokioResolver>>>,
}

impl std::fmt::Debug for DnsResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsResolver").field("settings", &self.settings).finish()
    }
}

/// The names to try for `host`, in order. An absolute name (trailing dot) is
/// only itself.
pub fn candidates(host: &str, search: &[String]) -> Vec<String> {
    if let Some(absolute) = host.strip_suffix('.') {
        return vec![absolute.to_string()];
    }
    let under = search.iter().map(|d| format!("{host}.{}", d.trim_end_matches('.')));
    let ordered: Vec<String> = if host.contains('.') {
        std::iter::once(host.to_string()).chain(under).collect()
    } else {
        under.chain(std::iter::once(host.to_string())).collect()
    };
    let mut names = Vec::with_capacity(ordered.len());
    for n in ordered {
        if !names.iter().any(|m: &String| m.eq_ignore_ascii_case(&n)) {
            names.push(n);
        }
    }
    names
}

impl DnsResolver {
    pub fn new(settings: DnsSettings) -> Self {
        Self { settings, built: Arc::default() }
    }

    pub fn settings(&self) -> &DnsSettings {
        &self.settings
    }

    /// An address for `host`: an IP literal as is, else the first candidate
    /// name (see [`candidates`]) that has one, IPv4 preferred: management
    /// networks are IPv4, and a dual-stacked name must not fail over an
    /// unrouted IPv6 address.
    pub async fn resolve(
        &self,
        host: &str,
        search: &[String],
        cancel: &CancellationToken,
    ) -> Result<Resolved, DnsError> {
        if let Ok(addr) = host.parse::<IpAddr>() {
            return Ok(Resolved { name: host.to_string(), addr });
        }
        let names = candidates(host, search);
        let resolver = self.resolver()?;
        // (name, why it gave nothing); `None` while its query is in flight, so a
        // timeout can say which name was left without an answer.
        let mut tried: Vec<(&str, Option<String>)> = Vec::new();
        let lookups = async {
            for name in &names {
                tried.push((name.as_str(), None));
                match lookup(&resolver, name).await {
                    Ok(found) => return Some(found),
                    Err(why) => tried.last_mut().expect("just pushed").1 = Some(why),
                }
            }
            None
        };
        let outcome = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(DnsError::Cancelled),
            r = tokio::time::timeout(self.settings.timeout, lookups) => r,
        };
        if let Ok(Some(found)) = outcome {
            return Ok(found);
        }
        let silent = format!("no answer within {}", secs(self.settings.timeout));
        let attempts: Vec<(&str, String)> =
            tried.into_iter().map(|(n, why)| (n, why.unwrap_or_else(|| silent.clone()))).collect();
        let mut detail = format!("tried {}", describe(&attempts));
        let skipped: Vec<&str> = names[attempts.len()..].iter().map(String::as_str).collect();
        if !skipped.is_empty() {
            detail.push_str(&format!("; not tried: {}", skipped.join(", ")));
        }
        Err(DnsError::NotFound { host: host.to_string(), detail })
    }

    /// The shared hickory resolver, built the first time it is needed. A
    /// failed build is not kept, so fixing resolv.conf needs no restart.
    fn resolver(&self) -> Result<TokioResolver, DnsError> {
        let mut slot = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = slot.as_ref() {
            return Ok(r.clone());
        }
        let r = build(&self.settings)?;
        *slot = Some(r.clone());
        Ok(r)
    }
}

fn build(settings: &DnsSettings) -> Result<TokioResolver, DnsError> {
    let mut builder = if settings.nameservers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| {
            DnsError::Config(format!("cannot read the system DNS configuration (/etc/resolv.conf): {e}"))
        })?
    } else {
        let servers = settings
            .nameservers
            .iter()
            .map(|sa| {
                let mut ns = NameServerConfig::udp_and_tcp(sa.ip());
                for c in &mut ns.connections {
                    c.port = sa.port();
                }
                ns
            })
            .collect();
        TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), TokioRuntimeProvider::default())
            .with_options(ResolverOpts::default())
    };
    let opts: &mut ResolverOpts = builder.options_mut();
    // A first, AAAA only for names without one: the IPv4 preference above.
    opts.ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
    builder.build().map_err(|e| DnsError::Config(format!("cannot build the DNS resolver: {e}")))
}

async fn lookup(resolver: &TokioResolver, name: &str) -> Result<Resolved, String> {
    let absolute = format!("{name}.");
    let answer = resolver.lookup_ip(absolute.as_str()).await.map_err(|e| reason(&e))?;
    let records: Vec<(&hickory_resolver::proto::rr::Name, IpAddr)> =
        answer.as_lookup().answers().iter().filter_map(|r| r.data.ip_addr().map(|ip| (&r.name, ip))).collect();
    let (owner, addr) =
        records.iter().find(|(_, ip)| ip.is_ipv4()).or(records.first()).ok_or_else(|| "no address".to_string())?;
    let canonical = owner.to_ascii();
    let canonical = canonical.trim_end_matches('.');
    Ok(Resolved { name: if canonical.is_empty() { name.to_string() } else { canonical.to_string() }, addr: *addr })
}

/// Why a name gave nothing, in words an operator can act on.
fn reason(e: &NetError) -> String {
    if e.is_nx_domain() {
        "no such host".into()
    } else if e.is_no_records_found() {
        "no address".into()
    } else if matches!(e, NetError::Timeout) {
        "no answer".into()
    } else {
        e.to_string()
    }
}

/// "a, b, c (why)" when every name failed the same way, else "a (why), b (why)".
fn describe(attempts: &[(&str, String)]) -> String {
    match attempts {
        [] => "nothing".into(),
        [(_, first), rest @ ..] if rest.iter().all(|(_, why)| why == first) => {
            format!("{} ({first})", attempts.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))
        }
        _ => attempts.iter().map(|(n, why)| format!("{n} ({why})")).collect::<Vec<_>>().join(", "),
    }
}

fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 { format!("{}s", d.as_secs()) } else { format!("{:.1}s", d.as_secs_f64()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn short_names_try_the_search_domains_first_and_fqdns_themselves_first() {
        let search = s(&["a.example", "b.example."]);
        assert_eq!(candidates("box2", &search), s(&["box2.a.example", "box2.b.example", "box2"]));
        assert_eq!(candidates("bmc.mdc1", &search), s(&["bmc.mdc1", "bmc.mdc1.a.example", "bmc.mdc1.b.example"]));
        assert_eq!(candidates("box2.a.example.", &search), s(&["box2.a.example"]));
        assert_eq!(candidates("box2", &[]), s(&["box2"]));
        // A domain listed twice is asked once.
        assert_eq!(candidates("x", &s(&["a.example", "A.example"])), s(&["x.a.example", "x"]));
    }

    #[test]
    fn the_error_groups_names_that_failed_alike() {
        let same = [("b.a.example", "no such host".to_string()), ("b", "no such host".to_string())];
        assert_eq!(describe(&same), "b.a.example, b (no such host)");
        let mixed = [("b.a.example", "no such host".to_string()), ("b", "no answer".to_string())];
        assert_eq!(describe(&mixed), "b.a.example (no such host), b (no answer)");
    }

    #[tokio::test]
    async fn ip_literals_need_no_resolver_at_all() {
        // A nameserver nobody serves: a literal must never reach it.
        let r =
            DnsResolver::new(DnsSettings { nameservers: vec!["127.0.0.1:9".parse().unwrap()], ..Default::default() });
        let got = r.resolve("192.0.2.7", &[], &CancellationToken::new()).await.unwrap();
        assert_eq!(got, Resolved { name: "192.0.2.7".into(), addr: "192.0.2.7".parse().unwrap() });
        assert!(r.built.lock().unwrap().is_none(), "not built for a literal");
    }

    #[tokio::test]
    async fn a_silent_nameserver_fails_within_the_bound_naming_what_was_left_unanswered() {
        // Bound and never read: queries vanish, as with a firewalled server.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let settings = DnsSettings { nameservers: vec![silent.local_addr().unwrap()], timeout: Duration::from_secs(1) };
        let r = DnsResolver::new(settings);
        let start = Instant::now();
        let e = r.resolve("box1", &s(&["test.example"]), &CancellationToken::new()).await.unwrap_err().to_string();
        assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
        assert_eq!(e, "cannot resolve box1: tried box1.test.example (no answer within 1s); not tried: box1");
    }

    #[tokio::test]
    async fn cancellation_stops_a_lookup_in_flight() {
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let r = DnsResolver::new(DnsSettings { nameservers: vec![silent.local_addr().unwrap()], ..Default::default() });
        let cancel = CancellationToken::new();
        let start = Instant::now();
        let (outcome, ()) = tokio::join!(r.resolve("box1", &[], &cancel), async {
            // Cancel once the query has reached the server: the lookup is in flight.
            let mut buf = [0u8; 512];
            silent.recv_from(&mut buf).await.unwrap();
            cancel.cancel();
        });
        assert!(matches!(outcome, Err(DnsError::Cancelled)), "{outcome:?}");
        assert!(start.elapsed() < DEFAULT_TIMEOUT, "cancelled before the timeout");
    }

    #[tokio::test]
    async fn clones_share_one_resolver() {
        let a =
            DnsResolver::new(DnsSettings { nameservers: vec!["127.0.0.1:53".parse().unwrap()], ..Default::default() });
        let b = a.clone();
        a.resolver().unwrap();
        assert!(b.built.lock().unwrap().is_some());
    }

    #[tokio::test]
    async fn hosts_file_names_resolve_with_the_system_configuration() {
        // "localhost" is in every /etc/hosts; it may map to ::1 too, and IPv4 must win.
        let got = DnsResolver::default().resolve("localhost", &[], &CancellationToken::new()).await.unwrap();
        assert_eq!(got, Resolved { name: "localhost".into(), addr: "127.0.0.1".parse().unwrap() });
    }
}
