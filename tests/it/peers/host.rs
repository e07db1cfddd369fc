//! A machine whose reachability follows its hardware: a TCP listener on a free
//! loopback port that a watcher thread closes and reopens as the peers report
//! what was done to the machine (the BMC hook's power bit and actions, the PDU
//! outlet, the ssh ForceCommand's requests). Roller probes it with `tcp:<port>`,
//! so a reboot it proves is one the peer really carried out.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::procs::free_port;

/// How often the watcher looks at the peers.
const TICK: Duration = Duration::from_millis(50);
/// How long a rebooting machine is silent: long enough for roller's probes
/// (every 200 ms in these tests, two misses make "down") to notice.
pub const OUTAGE: Duration = Duration::from_secs(4);

/// What the machine is doing, driven by the watcher's observations.
pub struct Power {
    down_until: Option<Instant>,
    off: bool,
}

impl Power {
    pub fn new() -> Power {
        Power { down_until: None, off: false }
    }

    /// A reboot: silent for [`OUTAGE`], then answering again.
    pub fn reboot(&mut self) {
        self.down_until = Some(Instant::now() + OUTAGE);
    }

    /// Power went away (or was seen going away). Boots when it returns.
    pub fn power_off(&mut self) {
        self.off = true;
    }

    /// Power is present: a machine that was off starts booting.
    pub fn power_on(&mut self) {
        if self.off {
            self.off = false;
            self.down_until = Some(Instant::now() + OUTAGE);
        }
    }

    pub fn answering(&self) -> bool {
        !self.off && self.down_until.is_none_or(|t| Instant::now() >= t)
    }
}

pub struct FakeHost {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeHost {
    /// `tick` is called every [`TICK`] and says whether the machine answers now.
    pub fn start(mut tick: impl FnMut() -> bool + Send + 'static) -> FakeHost {
        let port = free_port();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let (ticked, first_tick) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::spawn(move || {
            let mut listener: Option<TcpListener> = None;
            while !s.load(Ordering::Relaxed) {
                let up = tick();
                if up && listener.is_none() {
                    // std sets SO_REUSEADDR, so the port is ours again at once; a
                    // bind error just means "try next tick".
                    listener = TcpListener::bind(("127.0.0.1", port)).ok();
                    if let Some(l) = &listener {
                        l.set_nonblocking(true).unwrap();
                    }
                } else if !up {
                    listener = None;
                }
                if let Some(l) = &listener {
                    // Accept and drop, so the backlog never fills.
                    while l.accept().is_ok() {}
                }
                let _ = ticked.try_send(());
                std::thread::sleep(TICK);
            }
        });
        first_tick.recv_timeout(Duration::from_secs(10)).expect("the fake host's watcher runs");
        FakeHost { port, stop, thread: Some(thread) }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn answering(&self) -> bool {
        std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_secs(1)).is_ok()
    }

    /// Until the machine answers (bounded): a test's starting point.
    pub fn wait_answering(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answering() {
            assert!(Instant::now() < deadline, "the fake host on port {} never answered", self.port);
            std::thread::sleep(TICK);
        }
    }
}

impl Drop for FakeHost {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
