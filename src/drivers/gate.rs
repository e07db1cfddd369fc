//! Per-device rate limits: at most `concurrency` calls at once to one BMC or PDU
//! (a Moonshot chassis BMC fronts 45 cartridges and has few session slots), and
//! power-on commands to one device spaced by `stagger`, so a fleet request does
//! not switch on a rack's worth of power supplies at the same instant (inrush
//! current trips breakers).
//!
//! [`Gates`] is a value: startup builds one for the process from the settings and
//! every device target carries a clone, so the limits hold across all jobs of the
//! process, and a test can have its own. Keys are the device's address as
//! configured (`host:port`). Waits are cancellable and bounded by the callers' own
//! timeouts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The limits in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateSettings {
    pub concurrency: usize,
    pub stagger: Duration,
}

impl Default for GateSettings {
    fn default() -> Self {
        Self { concurrency: 4, stagger: Duration::from_secs(2) }
    }
}

struct Device {
    permits: Arc<Semaphore>,
    /// When the last power-on to this device was allowed to go out.
    last_power_on: Arc<tokio::sync::Mutex<Option<Instant>>>,
}

struct Inner {
    settings: GateSettings,
    devices: Mutex<HashMap<String, Arc<Device>>>,
}

/// The per-device limits of one process; clones share the devices' slots and turns.
#[derive(Clone)]
pub struct Gates(Arc<Inner>);

impl Default for Gates {
    /// The default limits, shared by this value's clones only: a process builds its
    /// one `Gates` at startup and hands clones to every target.
    fn default() -> Self {
        Gates::new(GateSettings::default())
    }
}

impl std::fmt::Debug for Gates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gates").field("settings", &self.0.settings).finish_non_exhaustive()
    }
}

impl Gates {
    pub fn new(s: GateSettings) -> Self {
        let settings = GateSettings { concurrency: s.concurrency.max(1), ..s };
        Gates(Arc::new(Inner { settings, devices: Mutex::default() }))
    }

    pub fn settings(&self) -> GateSettings {
        self.0.settings
    }

    fn device(&self, key: &str) -> Arc<Device> {
        let mut map = self.0.devices.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.to_string())
            .or_insert_with(|| {
                Arc::new(Device {
                    permits: Arc::new(Semaphore::new(self.0.settings.concurrency)),
                    last_power_on: Arc::new(tokio::sync::Mutex::new(None)),
                })
            })
            .clone()
    }

    /// A slot for one call to the device `key`; `None` when cancelled while waiting.
    pub async fn enter(&self, key: &str, cancel: &CancellationToken) -> Option<OwnedSemaphorePermit> {
        let permits = self.device(key).permits.clone();
        tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            p = permits.acquire_owned() => p.ok(),
        }
    }

    /// Wait until a power-on to `key` may go out (`stagger` after the previous one was
    /// answered); `None` when cancelled while waiting.
    pub async fn power_on_turn(&self, key: &str, cancel: &CancellationToken) -> Option<PowerOnTurn> {
        let d = self.device(key);
        let last = tokio::select! {
            l = d.last_power_on.clone().lock_owned() => l,
            _ = cancel.cancelled() => return None,
        };
        if let Some(prev) = *last {
            let at = prev + self.0.settings.stagger;
            if at > Instant::now() {
                tracing::info!(
                    device = key,
                    wait_ms = (at - Instant::now()).as_millis() as u64,
                    "staggering a power-on"
                );
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = cancel.cancelled() => return None,
                }
            }
        }
        Some(PowerOnTurn(last))
    }
}

/// A device's power-on turn, held while the command goes out and is answered.
/// The next power-on to the device may start `stagger` after this one was
/// *answered*: a device executes a command before it answers, so the spacing
/// holds at the device, however long each call takes on the way.
pub struct PowerOnTurn(tokio::sync::OwnedMutexGuard<Option<Instant>>);

impl Drop for PowerOnTurn {
    fn drop(&mut self) {
        *self.0 = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn power_ons_to_one_device_are_spaced_and_others_are_not_held_up() {
        let gates = Gates::default();
        let stagger = gates.settings().stagger;
        let cancel = CancellationToken::new();
        let start = Instant::now();
        let a = gates.power_on_turn("pdu-a:161", &cancel).await.expect("the first turn at once");
        assert!(gates.power_on_turn("pdu-b:161", &cancel).await.is_some());
        assert!(start.elapsed() < stagger, "another device does not wait");
        // The spacing counts from the answer (the turn's end), not from its start.
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(a);
        let answered = Instant::now();
        assert!(gates.power_on_turn("pdu-a:161", &cancel).await.is_some());
        assert!(answered.elapsed() >= stagger, "the same device waits its turn");
    }

    #[tokio::test]
    async fn a_cancelled_wait_gives_up() {
        let gates = Gates::default();
        let cancel = CancellationToken::new();
        drop(gates.power_on_turn("pdu-c:161", &cancel).await.expect("the first turn at once"));
        cancel.cancel();
        assert!(gates.power_on_turn("pdu-c:161", &cancel).await.is_none());
        assert!(gates.enter("pdu-c:161", &cancel).await.is_none());
        // Without a cancel, a slot is there.
        assert!(gates.enter("pdu-c:161", &CancellationToken::new()).await.is_some());
    }

    #[tokio::test]
    async fn separate_gates_share_nothing_and_clones_share_everything() {
        let one = Gates::new(GateSettings { concurrency: 1, stagger: Duration::ZERO });
        let cancel = CancellationToken::new();
        let held = one.enter("bmc:623", &cancel).await.expect("a slot");
        // A clone sees the slot taken; another process's (another value's) gate does not.
        assert!(one.clone().0.devices.lock().unwrap()["bmc:623"].permits.available_permits() == 0);
        assert!(Gates::new(one.settings()).enter("bmc:623", &cancel).await.is_some());
        drop(held);
        assert!(one.clone().enter("bmc:623", &cancel).await.is_some());
    }
}
