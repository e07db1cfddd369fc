//! Seeing an ICMP echo request arrive, so a test can act on "the ping went out" instead of
//! guessing with a timer: a raw ICMP socket gets a copy of every ICMP packet this host
//! receives, and an echo to a loopback address is received on `lo` by this host.
//!
//! Needs CAP_NET_RAW (root), as the ping tests' socket method already does on a stock
//! `ping_group_range`.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

const ICMP_ECHO_REQUEST: u8 = 8;

/// A raw ICMP socket that reports echo requests; open it before the ping starts, so the
/// first echo cannot pass unseen.
pub struct EchoWatch {
    fd: OwnedFd,
}

impl EchoWatch {
    pub fn open() -> io::Result<EchoWatch> {
        // SAFETY: plain socket(2); the descriptor is owned by the OwnedFd from here on.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_ICMP) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // Wake up now and then, so a wait can give up at its limit when nothing comes.
        let tv = libc::timeval { tv_sec: 0, tv_usec: 100_000 };
        // SAFETY: setsockopt with a timeval of the size given.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(EchoWatch { fd })
    }

    /// Block until an echo request to `dst` arrives, for at most `limit`; whether one did.
    pub fn wait_for_request(&self, dst: Ipv4Addr, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            // SAFETY: recv(2) into a buffer of the length given.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n > 0 && is_echo_request_to(&buf[..n as usize], dst) {
                return true;
            }
        }
        false
    }
}

/// An IPv4 packet (raw sockets get the IP header) carrying an ICMP echo request to `dst`.
fn is_echo_request_to(packet: &[u8], dst: Ipv4Addr) -> bool {
    let Some(&first) = packet.first() else { return false };
    let header_len = usize::from(first & 0x0f) * 4;
    first >> 4 == 4
        && header_len >= 20
        && packet.len() > header_len
        && packet[16..20] == dst.octets()
        && packet[header_len] == ICMP_ECHO_REQUEST
}
