//! ICMP echo. (Being written: see the ping issue work.)

use std::time::Duration;

/// How to reach the kernel's ICMP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PingMethod {
    /// An ICMP socket (datagram, then raw) when the kernel allows it, else the `ping` binary.
    #[default]
    Auto,
    /// Only an ICMP socket.
    Socket,
    /// Only the system `ping` binary (iputils), which carries `cap_net_raw`.
    Command,
}

#[derive(Debug, Clone)]
pub struct PingSettings {
    /// Echo requests to send.
    pub count: u32,
    /// Pause between requests.
    pub interval: Duration,
    /// How long to wait for each reply.
    pub timeout: Duration,
    pub method: PingMethod,
}

impl Default for PingSettings {
    fn default() -> Self {
        Self {
            count: 4,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            method: PingMethod::Auto,
        }
    }
}
