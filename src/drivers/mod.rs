//! Drivers own protocols: timeouts, retries, and keeping secrets out of argv and logs.
//! They know nothing about jobs, HTTP or the queue.

pub mod bugzilla;
pub mod dns;
pub mod ilo;
pub mod ipmi;
pub mod ping;
pub mod reachability;
pub mod redfish;
pub mod snmp;
pub mod ssh;
pub mod taskcluster;
pub mod xenapi;
