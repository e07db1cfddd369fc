//! roller's one integration-test binary: the real service on free loopback
//! ports, requests signed with real Hawk, real ICMP, a Taskcluster
//! authenticate-hawk stand-in that verifies what it receives.

mod api;
mod auth;
mod bugzilla;
mod cli;
mod conn;
mod dashboard;
mod distributed;
mod dns;
mod evidence;
mod faults;
mod fleet;
mod hardware;
mod health;
mod helpers;
mod https;
mod ilo;
mod incident;
mod interrupt;
mod ipmi;
mod jobs;
mod loan;
mod mdm;
mod medic;
mod metrics;
mod moonshot;
mod notify;
mod openapi;
mod openapi_tools;
mod peers;
mod process;
mod procs;
mod reboot;
mod redfish;
mod redis_tls;
mod snmp;
mod ssh;
mod sweep_lease;
mod taskcluster;
mod tc_actions;
mod tc_client;
mod tc_read;
mod tidy;
mod xen;
