//! What roller's tests (unit and integration) and its benchmarks share, so each exists
//! once: a throwaway `redis-server` (standalone or a cluster), a XenAPI stand-in, a
//! Taskcluster stand-in driven by a scripted fleet, an HP Moonshot chassis manager
//! stand-in (HTTPS, nodes whose hosts go down and come back), a SimpleMDM stand-in with
//! the Macs behind it, a typed builder for inventory files, a watcher for ICMP echoes on
//! loopback, and a throwaway PKI (a CA, server and client certificates) for the TLS tests.
//!
//! It never depends on `roller`: roller's unit tests (`src/queue/redis.rs`,
//! `src/drivers/ping.rs`) use it as a dev-dependency, which a dependency on roller would
//! turn into a cycle. The harnesses are synchronous where they manage processes, so the
//! benchmark binary and blocking test code can use them alike.

pub mod icmp;
pub mod inventory;
pub mod moonshot;
pub mod redis;
pub mod simplemdm;
pub mod taskcluster;
pub mod tls;
pub mod xen;

use std::net::TcpListener;

/// A loopback TCP port that was free a moment ago. The kernel picks it from the
/// ephemeral range, so it is never a well-known port such as Redis's 6379; whoever binds
/// it next may still lose a race with another test, so a harness that starts a server on
/// it checks that the server came up.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port")
}

/// A stand-in's server task, stopped when the last handle to the stand-in goes (each
/// handle holds it in an `Arc`).
pub(crate) struct Serving(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.abort();
    }
}
