//! `ping`: is the machine answering ICMP echo?
//!
//! The machine's address comes from the inventory; a worker id outside it is
//! taken as an IP literal or a name looked up in DNS under the inventory's
//! `dns_search` domains (see [`crate::drivers::dns`]). The action succeeds iff at least one echo
//! request was answered; partial loss is reported in the result, not as a failure,
//! because a machine that answers at all is up. Total silence is
//! [`ActionError::Failed`]; an ICMP permission problem is [`ActionError::Config`].

use super::report::{PingResult, Report, Rtt};
use super::{ActionContext, ActionError, Subject, resolve};
use crate::drivers::dns::Resolved;
use crate::drivers::ping::{self as driver, PingError, PingReport};

pub async fn run(on: &Subject, cx: &ActionContext) -> Result<Report, ActionError> {
    // A machine in the inventory is pinged at its address; any other worker id
    // is taken as a host name or IP address.
    let requested = on.machine().map(|m| m.address.as_str()).unwrap_or(on.target.worker_id.as_str());
    // From here on the host is the name that answered, so log and result say what was pinged.
    let Resolved { name: host, addr } = resolve(requested, cx).await?;
    let settings = &cx.settings.ping;
    cx.log(format!(
        "pinging {host} ({addr}) with {} echo request{}, method {}",
        settings.count,
        if settings.count == 1 { "" } else { "s" },
        method_name(settings.method),
    ));

    let report = driver::ping(addr, settings, &cx.cancel).await.map_err(|e| match e {
        // A deployment problem says so without the host: it is not about this machine.
        e @ (PingError::Permission { .. } | PingError::CommandMissing | PingError::InvalidSettings(_)) => {
            ActionError::driver("", e)
        }
        e => ActionError::driver(&format!("ping {host} ({addr})"), e),
    })?;

    cx.log(summary_line(&report));
    if report.received == 0 {
        return Err(ActionError::Failed(format!(
            "{host} ({addr}) did not answer: 0 of {} echo requests replied",
            report.sent
        )));
    }
    let rtt_ms = match (report.rtt_min_ms, report.rtt_avg_ms, report.rtt_max_ms) {
        (Some(min), Some(avg), Some(max)) => Some(Rtt { min, avg, max }),
        _ => None,
    };
    Ok(PingResult {
        host,
        address: addr.to_string(),
        method: report.method_used.as_str().to_string(),
        sent: report.sent,
        received: report.received,
        rtt_ms,
    }
    .into())
}

fn method_name(m: driver::PingMethod) -> &'static str {
    match m {
        driver::PingMethod::Auto => "auto",
        driver::PingMethod::Socket => "socket",
        driver::PingMethod::Command => "command",
    }
}

fn summary_line(r: &PingReport) -> String {
    let mut line = format!("{}/{} replies via {}", r.received, r.sent, r.method_used);
    if let (Some(min), Some(avg), Some(max)) = (r.rtt_min_ms, r.rtt_avg_ms, r.rtt_max_ms) {
        line.push_str(&format!(", rtt min/avg/max = {min:.3}/{avg:.3}/{max:.3} ms"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use crate::actions::{ActionSettings, LogSink, Target};
    use crate::domain::{WorkerGroup, WorkerId};
    use crate::drivers::dns::{DnsResolver, DnsSettings};
    use crate::drivers::ping::{PingMethod, PingSettings, test_host::SilentHost};

    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);

    impl LogSink for Lines {
        fn line(&self, line: String) {
            self.0.lock().unwrap().push(line);
        }
    }

    fn subject(target: Target) -> Subject {
        Subject::new(target, Default::default())
    }

    fn setup(worker: &str, method: PingMethod) -> (Target, ActionContext, Arc<Lines>) {
        let target =
            Target { worker_id: WorkerId::parse(worker).unwrap(), worker_group: WorkerGroup::parse("mdc1").unwrap() };
        let settings = ActionSettings {
            ping: PingSettings {
                count: 2,
                interval: Duration::from_millis(200),
                timeout: Duration::from_millis(400),
                method,
            },
            ..ActionSettings::default()
        };
        let lines = Arc::new(Lines::default());
        let cx = ActionContext::new(Arc::new(settings), CancellationToken::new(), lines.clone());
        (target, cx, lines)
    }

    #[tokio::test]
    async fn answering_host_succeeds_with_result_json() {
        let (target, cx, lines) = setup("127.0.0.1", PingMethod::Auto);
        let v = run(&subject(target), &cx).await.expect("127.0.0.1 answers").to_json();
        assert_eq!(v["host"], "127.0.0.1");
        assert_eq!(v["address"], "127.0.0.1");
        assert_eq!(v["sent"], 2);
        assert_eq!(v["received"], 2);
        assert!(v["method"] == "socket" || v["method"] == "command", "{v}");
        assert!(v["rtt_ms"]["avg"].as_f64().is_some(), "{v}");
        let lines = lines.0.lock().unwrap();
        assert!(lines[0].starts_with("pinging 127.0.0.1 (127.0.0.1) with 2 echo requests"));
        assert!(lines[1].starts_with("2/2 replies via "), "{lines:?}");
    }

    #[tokio::test]
    async fn resolves_a_host_name() {
        // "localhost" comes from /etc/hosts; it may map to ::1 too, and IPv4 must win.
        let (target, cx, _) = setup("localhost", PingMethod::Socket);
        let v = run(&subject(target), &cx).await.expect("localhost answers").to_json();
        assert_eq!(v["host"], "localhost");
        assert_eq!(v["address"], "127.0.0.1");
    }

    #[tokio::test]
    async fn silent_host_fails_cleanly() {
        let host = SilentHost::new(21);
        let (target, cx, lines) = setup(&host.addr.to_string(), PingMethod::Socket);
        match run(&subject(target), &cx).await {
            Err(ActionError::Failed(msg)) => {
                assert_eq!(msg, format!("{0} ({0}) did not answer: 0 of 2 echo requests replied", host.addr))
            }
            other => panic!("expected Failed, got {other:?}"),
        }
        assert!(lines.0.lock().unwrap()[1].starts_with("0/2 replies"));
    }

    #[tokio::test]
    async fn unresolvable_name_fails() {
        let (target, cx, lines) = setup("no-such-host.invalid", PingMethod::Socket);
        // hickory answers `.invalid` itself (RFC 6761); a nameserver on loopback that never
        // answers makes sure that, if it ever did not, no query would leave the machine.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut settings = (*cx.settings).clone();
        settings.dns = DnsResolver::new(DnsSettings {
            nameservers: vec![silent.local_addr().unwrap()],
            timeout: Duration::from_millis(500),
        });
        let cx = ActionContext::new(Arc::new(settings), CancellationToken::new(), lines.clone());
        match run(&subject(target), &cx).await {
            Err(ActionError::Failed(msg)) => {
                assert_eq!(msg, "cannot resolve no-such-host.invalid: tried no-such-host.invalid (no such host)")
            }
            other => panic!("expected Failed, got {other:?}"),
        }
        assert!(lines.0.lock().unwrap().is_empty(), "nothing was pinged");
    }

    #[tokio::test]
    async fn cancelled_action_reports_cancelled() {
        let (target, cx, _) = setup("127.0.0.1", PingMethod::Socket);
        cx.cancel.cancel();
        assert!(matches!(run(&subject(target), &cx).await, Err(ActionError::Cancelled)));
    }
}
