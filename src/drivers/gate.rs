//! Per-device rate limits, process-wide: at most `concurrency` calls at once to
//! one BMC or PDU (a Moonshot chassis BMC fronts 45 cartridges and has few
//! session slots), and power-on commands to one device spaced by `stagger`, so
//! a fleet request does not switch on a rack's worth of power supplies at the
//! same instant (inrush current trips breakers).
//!
//! Keys are the device's address as configured (`host:port`). Waits are
//! cancellable and bounded by the callers' own timeouts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The limits in force (set once at startup; the defaults apply otherwise).
#[derive(Debug, Clone, Copy)]
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

fn settings_cell() -> &'static OnceLock<GateSettings> {
    static SETTINGS: OnceLock<GateSettings> = OnceLock::new();
    &SETTINGS
}

/// Set the limits; the first call wins (one process, one policy).
pub fn configure(s: GateSettings) {
    let _ = settings_cell().set(GateSettings { concurrency: s.concurrency.max(1), ..s });
}

fn settings() -> GateSettings {
    *settings_cell().get_or_init(GateSettings::default)
}

fn device(key: &str) -> Arc<Device> {
    static DEVICES: OnceLock<Mutex<HashMap<String, Arc<Device>>>> = OnceLock::new();
    let mut map = DEVICES.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    map.entry(key.to_string())
        .or_insert_with(|| {
            Arc::new(Device {
                permits: Arc::new(Semaphore::new(settings().concurrency)),
                last_power_on: Arc::new(tokio::sync::Mutex::new(None)),
            })
        })
        .clone()
}

/// A slot for one call to the device `key`; `None` when cancelled while waiting.
pub async fn enter(key: &str, cancel: &CancellationToken) -> Option<OwnedSemaphorePermit> {
    let permits = device(key).permits.clone();
    tokio::select! {
        biased;
        _ = cancel.cancelled() => None,
        p = permits.acquire_owned() => p.ok(),
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

/// Wait until a power-on to `key` may go out (`stagger` after the previous one was
/// answered); `None` when cancelled while waiting.
pub async fn power_on_turn(key: &str, cancel: &CancellationToken) -> Option<PowerOnTurn> {
    let d = device(key);
    let last = tokio::select! {
        l = d.last_power_on.clone().lock_owned() => l,
        _ = cancel.cancelled() => return None,
    };
    if let Some(prev) = *last {
        let at = prev + settings().stagger;
        if at > Instant::now() {
            tracing::info!(device = key, wait_ms = (at - Instant::now()).as_millis() as u64, "staggering a power-on");
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = cancel.cancelled() => return None,
            }
        }
    }
    Some(PowerOnTurn(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn power_ons_to_one_device_are_spaced_and_others_are_not_held_up() {
        configure(GateSettings::default());
        let cancel = CancellationToken::new();
        let start = Instant::now();
        let a = power_on_turn("pdu-a:161", &cancel).await.expect("the first turn at once");
        assert!(power_on_turn("pdu-b:161", &cancel).await.is_some());
        assert!(start.elapsed() < settings().stagger, "another device does not wait");
        // The spacing counts from the answer (the turn's end), not from its start.
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(a);
        let answered = Instant::now();
        assert!(power_on_turn("pdu-a:161", &cancel).await.is_some());
        assert!(answered.elapsed() >= settings().stagger, "the same device waits its turn");
    }

    #[tokio::test]
    async fn a_cancelled_wait_gives_up() {
        let cancel = CancellationToken::new();
        drop(power_on_turn("pdu-c:161", &cancel).await.expect("the first turn at once"));
        cancel.cancel();
        assert!(power_on_turn("pdu-c:161", &cancel).await.is_none());
        assert!(enter("pdu-c:161", &cancel).await.is_none());
        // Without a cancel, a slot is there.
        assert!(enter("pdu-c:161", &CancellationToken::new()).await.is_some());
    }
}
