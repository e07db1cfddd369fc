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
//!
//! [`Gates::background`] is the same gates at the lowest priority, for work no job waits
//! on (the standing path checks): such a caller takes a slot only when the device is
//! idle (every slot free), one background caller per device at a time, so a job that
//! arrives meanwhile waits for at most that one call, never for a queue of them.

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
    /// One background caller per device at a time (see [`Gates::background`]).
    background: Arc<Semaphore>,
    /// Told whenever a slot is given back, so a background caller waiting for the
    /// device to be idle looks again (no polling).
    freed: tokio::sync::Notify,
}

struct Inner {
    settings: GateSettings,
    devices: Mutex<HashMap<String, Arc<Device>>>,
}

/// The per-device limits of one process; clones share the devices' slots and turns.
#[derive(Clone)]
pub struct Gates {
    inner: Arc<Inner>,
    /// This view takes slots at the lowest priority ([`Gates::background`]).
    background: bool,
}

/// A slot on one device, given back when dropped.
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    _lane: Option<OwnedSemaphorePermit>,
    device: Arc<Device>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        // The slot first, then the news: a background caller woken now sees it free.
        drop(self.permit.take());
        self.device.freed.notify_waiters();
    }
}

impl Default for Gates {
    /// The default limits, shared by this value's clones only: a process builds its
    /// one `Gates` at startup and hands clones to every target.
    fn default() -> Self {
        Gates::new(GateSettings::default())
    }
}

impl std::fmt::Debug for Gates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gates")
            .field("settings", &self.inner.settings)
            .field("background", &self.background)
            .finish_non_exhaustive()
    }
}

impl Gates {
    pub fn new(s: GateSettings) -> Self {
        let settings = GateSettings { concurrency: s.concurrency.max(1), ..s };
        Gates { inner: Arc::new(Inner { settings, devices: Mutex::default() }), background: false }
    }

    pub fn settings(&self) -> GateSettings {
        self.inner.settings
    }

    /// The same devices' gates, for work at the lowest priority: [`Gates::enter`] through
    /// this view waits until the device is idle and takes one slot, one such caller per
    /// device at a time. A job's call never waits behind more than one of them.
    pub fn background(&self) -> Gates {
        Gates { inner: self.inner.clone(), background: true }
    }

    fn device(&self, key: &str) -> Arc<Device> {
        let mut map = self.inner.devices.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.to_string())
            .or_insert_with(|| {
                Arc::new(Device {
                    permits: Arc::new(Semaphore::new(self.inner.settings.concurrency)),
                    last_power_on: Arc::new(tokio::sync::Mutex::new(None)),
                    background: Arc::new(Semaphore::new(1)),
                    freed: tokio::sync::Notify::new(),
                })
            })
            .clone()
    }

    /// A slot for one call to the device `key`; `None` when cancelled while waiting.
    pub async fn enter(&self, key: &str, cancel: &CancellationToken) -> Option<Slot> {
        let device = self.device(key);
        if self.background {
            return self.enter_idle(device, cancel).await;
        }
        let permits = device.permits.clone();
        let permit = tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            p = permits.acquire_owned() => p.ok(),
        }?;
        Some(Slot { permit: Some(permit), _lane: None, device })
    }

    /// The background way in: this device's one background lane, then a slot once every
    /// slot is free. Jobs queued on the semaphore get freed slots before this sees them.
    async fn enter_idle(&self, device: Arc<Device>, cancel: &CancellationToken) -> Option<Slot> {
        let lane = tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            l = device.background.clone().acquire_owned() => l.ok(),
        }?;
        loop {
            // Registered before looking, so a slot freed in between is not missed.
            let watch = device.clone();
            let freed = watch.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if device.permits.available_permits() >= self.inner.settings.concurrency
                && let Ok(permit) = device.permits.clone().try_acquire_owned()
            {
                return Some(Slot { permit: Some(permit), _lane: Some(lane), device });
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return None,
                _ = freed => {}
            }
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
            let at = prev + self.inner.settings.stagger;
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
        assert!(one.clone().inner.devices.lock().unwrap()["bmc:623"].permits.available_permits() == 0);
        assert!(Gates::new(one.settings()).enter("bmc:623", &cancel).await.is_some());
        drop(held);
        assert!(one.clone().enter("bmc:623", &cancel).await.is_some());
    }

    #[tokio::test]
    async fn a_background_caller_waits_for_an_idle_device_and_yields_to_jobs() {
        let gates = Gates::new(GateSettings { concurrency: 2, stagger: Duration::ZERO });
        let background = gates.background();
        let cancel = CancellationToken::new();
        // A job holds one of two slots: the device is not idle, so the background waits.
        let job = gates.enter("bmc:623", &cancel).await.expect("a slot");
        let waiting = tokio::spawn({
            let (b, c) = (background.clone(), cancel.clone());
            async move { b.enter("bmc:623", &c).await.is_some() }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "a busy device makes the background wait");
        // Another job still gets the free slot at once.
        let second = gates.enter("bmc:623", &cancel).await.expect("the job is not held up");
        drop(second);
        drop(job);
        assert!(waiting.await.unwrap(), "an idle device lets the background in");
        // While a background caller holds a slot, a job takes the other at once, and a
        // second background caller waits for the first.
        let held = background.enter("bmc:623", &cancel).await.expect("idle");
        assert!(gates.enter("bmc:623", &cancel).await.is_some());
        let other = CancellationToken::new();
        let queued = tokio::spawn({
            let (b, c) = (background.clone(), other.clone());
            async move { b.enter("bmc:623", &c).await.is_some() }
        });
        tokio::task::yield_now().await;
        assert!(!queued.is_finished(), "one background caller per device");
        other.cancel();
        assert!(!queued.await.unwrap(), "a cancelled background wait gives up");
        drop(held);
    }
}
