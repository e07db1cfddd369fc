//! DNS end to end against a real server (dnsmasq on loopback): worker ids
//! outside the inventory are found under the inventory's `dns_search`
//! domains, only `ping` runs on them, and a silent nameserver fails a job
//! within the resolver's bound instead of hanging it.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use roller_testkit::inventory::{self as file, Machine};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use roller::actions::{self, ActionContext, ActionError, ActionSettings, LogSink, Target, Task};
use roller::domain::{WorkerGroup, WorkerId};
use roller::drivers::dns::{DnsResolver, DnsSettings, Resolved};
use roller::inventory::{Inventory, InventoryHandle};

use crate::helpers::*;
use crate::peers::dns::Dnsmasq;

const SEARCH: [&str; 2] = ["nothere.example", "test.example"];

/// An inventory with the test search domains and one machine, `dns-host`,
/// whose address is the short name `box1`: inventory addresses go through the
/// same search.
fn inventory_text() -> String {
    file::Inventory::new().dns_search(&SEARCH).machine(Machine::new("dns-host").group("lab").address("box1")).to_toml()
}

fn write_inventory(dir: &Path) -> String {
    let path = dir.join("inventory.toml");
    std::fs::write(&path, inventory_text()).unwrap();
    path.display().to_string()
}

async fn run_job(app: &TestApp, worker: &str, task: &str) -> Value {
    let r = app.post_job(worker, "lab", task).await;
    assert_eq!(r.status(), 201, "{worker} {task}");
    let v: Value = r.json().await.unwrap();
    app.wait_final(v["task_id"].as_str().unwrap()).await
}

fn log_lines(job: &Value) -> Vec<String> {
    job["log"].as_array().unwrap().iter().map(|l| l["line"].as_str().unwrap().to_string()).collect()
}

/// dnsmasq writes its query log asynchronously: wait (bounded) until `want` is a prefix of it.
async fn wait_queried(dns: &Dnsmasq, want: &[&str]) -> Vec<String> {
    let seen = wait_for(Duration::from_secs(10), || async {
        let names = dns.queried_names();
        (names.len() >= want.len()).then_some(names)
    })
    .await;
    seen.unwrap_or_else(|| dns.queried_names())
}

#[tokio::test]
async fn ping_finds_a_machine_outside_the_inventory_under_the_search_domains() {
    let dns = Dnsmasq::start(&[("127.0.0.1", "box1.test.example")], &[]);
    let dir = tempfile::tempdir().unwrap();
    let inv = write_inventory(dir.path());
    let server = dns.addr().to_string();
    let app = spawn_app_with("", &[("ROLLER_INVENTORY", &inv), ("ROLLER_DNS_SERVERS", &server)]).await;

    let job = run_job(&app, "box1", "ping").await;
    assert_eq!(job["state"], "succeeded", "{job:#}\n{}", dns.logs());
    assert_eq!(job["result"]["host"], "box1.test.example", "{job:#}");
    assert_eq!(job["result"]["address"], "127.0.0.1");
    let log = log_lines(&job);
    assert!(log.iter().any(|l| l.starts_with("pinging box1.test.example (127.0.0.1) with 2 echo")), "{log:#?}");
    // The first domain was asked first, and the server saw nothing else.
    let asked = wait_queried(&dns, &["box1.nothere.example", "box1.test.example"]).await;
    assert_eq!(asked, ["box1.nothere.example", "box1.test.example"], "{}", dns.logs());

    let job = run_job(&app, "box2", "ping").await;
    assert_eq!(job["state"], "failed", "{job:#}");
    assert_eq!(job["error"], "cannot resolve box2: tried box2.nothere.example, box2.test.example, box2 (no such host)");

    // Found in DNS is not in the inventory: hardware tasks still refuse it, before any lookup;
    // a restart is refused at enqueue already.
    let r = app.post_job("box1", "lab", "reboot").await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error_code"], "not_in_inventory");
    for task in ["status"] {
        let job = run_job(&app, "box1", task).await;
        assert_eq!(job["state"], "failed", "{task}: {job:#}");
        let e = job["error"].as_str().unwrap();
        assert!(e.contains("only ping runs on machines outside the inventory"), "{task}: {e}");
    }

    // An inventory machine's address goes through the same search.
    let job = run_job(&app, "dns-host", "status").await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!((job["result"]["address"].as_str(), job["result"]["ip"].as_str()), (Some("box1"), Some("127.0.0.1")));
    assert_eq!(job["result"]["answers"], true, "{job:#}");
}

#[tokio::test]
async fn a_nameserver_that_never_answers_fails_the_job_within_the_bound() {
    // Bound and never read: every query vanishes, as behind a firewall.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = silent.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let inv = write_inventory(dir.path());
    let app = spawn_app_with("", &[("ROLLER_INVENTORY", &inv), ("ROLLER_DNS_SERVERS", &server)]).await;
    let start = Instant::now();
    let job = run_job(&app, "box1", "ping").await;
    let took = start.elapsed();
    assert_eq!(job["state"], "failed", "{job:#}");
    assert_eq!(
        job["error"],
        "cannot resolve box1: tried box1.nothere.example (no answer within 5s); not tried: box1.test.example, box1"
    );
    assert!(took < Duration::from_secs(20), "the job took {took:?}");
}

#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl LogSink for Lines {
    fn line(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }
}

fn context(settings: ActionSettings) -> ActionContext {
    ActionContext::new(Arc::new(settings), CancellationToken::new(), Arc::new(Lines::default()))
}

fn resolver(dns: &Dnsmasq) -> DnsResolver {
    DnsResolver::new(DnsSettings { nameservers: vec![dns.addr()], ..DnsSettings::default() })
}

#[tokio::test]
async fn the_search_domains_are_read_at_lookup_time_so_a_reload_applies_at_once() {
    let dns = Dnsmasq::start(&[("127.0.0.1", "box1.test.example")], &[]);
    let inventory =
        InventoryHandle::new(Inventory::parse(Path::new("a.toml"), r#"dns_search = ["nothere.example"]"#).unwrap());
    let cx = context(ActionSettings { inventory: inventory.clone(), dns: resolver(&dns), ..ActionSettings::default() });
    let target =
        Target { worker_id: WorkerId::parse("box1").unwrap(), worker_group: WorkerGroup::parse("lab").unwrap() };
    match actions::execute(Task::Ping, &target, &cx).await {
        Err(ActionError::Failed(e)) => {
            assert_eq!(e, "cannot resolve box1: tried box1.nothere.example, box1 (no such host)")
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    // What SIGHUP does: the same resolver, a new inventory.
    inventory.replace(Inventory::parse(Path::new("b.toml"), &inventory_text()).unwrap());
    let v = actions::execute(Task::Ping, &target, &cx).await.expect("found under the new domain").to_json();
    assert_eq!(v["host"], "box1.test.example");
}

#[tokio::test]
async fn the_resolver_reports_the_canonical_name_and_prefers_ipv4() {
    let dns = Dnsmasq::start(
        &[
            ("127.0.0.1", "box1.test.example"),
            ("::1", "dual.test.example"),
            ("127.0.0.3", "dual.test.example"),
            ("::1", "v6only.test.example"),
        ],
        &[("alias.test.example", "box1.test.example")],
    );
    let r = resolver(&dns);
    let search = vec!["test.example".to_string()];
    let none = CancellationToken::new();
    let got = r.resolve("alias", &search, &none).await.unwrap();
    assert_eq!(got, Resolved { name: "box1.test.example".into(), addr: "127.0.0.1".parse().unwrap() });
    let got = r.resolve("dual", &search, &none).await.unwrap();
    assert_eq!(got.addr, "127.0.0.3".parse::<std::net::IpAddr>().unwrap());
    let got = r.resolve("v6only", &search, &none).await.unwrap();
    assert_eq!(got, Resolved { name: "v6only.test.example".into(), addr: "::1".parse().unwrap() });
    // A name with dots is itself first: no search-domain query is made for it.
    let got = r.resolve("box1.test.example", &search, &none).await.unwrap();
    assert_eq!(got.name, "box1.test.example");
    let asked =
        wait_queried(&dns, &["alias.test.example", "dual.test.example", "v6only.test.example", "box1.test.example"])
            .await;
    assert!(!asked.iter().any(|n| n.ends_with(".test.example.test.example")), "{asked:?}");
}
