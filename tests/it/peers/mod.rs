//! Real protocol peers started on loopback in temp dirs: OpenIPMI `ipmi_sim`,
//! net-snmp `snmpd` with a Sentry3 outlet table, OpenSSH `sshd` with a
//! ForceCommand, sushy-tools' Redfish emulator (and a stand-in for the sessions and
//! log services it lacks), `dnsmasq` as a DNS server, and a
//! TCP relay that can blackhole a live connection in front of any of them.
//! Each is killed on drop; a missing binary fails the test with an install hint.
//! The XenAPI and Taskcluster stand-ins live in the testkit crate (`roller_testkit::xen`,
//! `roller_testkit::taskcluster`), shared with the benchmarks.

pub mod bugzilla;
pub mod dns;
pub mod host;
pub mod ilo;
pub mod ipmi;
pub mod redfish;
pub mod redfish_fake;
pub mod relay;
pub mod snmp;
pub mod ssh;
