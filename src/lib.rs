//! roller, the Release Operations Controller: authenticated, queued, proven
//! power actions for CI hardware. See ARCHITECTURE.md for the map.

pub mod actions;
pub mod api;
pub mod auth;
pub mod breaker;
pub mod cli;
pub mod config;
pub mod domain;
pub mod drivers;
pub mod health;
pub mod inventory;
pub mod medic;
pub mod notify;
pub mod paths;
pub mod queue;
pub mod runner;
pub mod startup;
pub mod task;
pub mod telemetry;

/// Build information for `/__version__` and `roller --version`.
pub fn version_info() -> serde_json::Value {
    serde_json::json!({
        "source": env!("CARGO_PKG_NAME"),
        "version": env!("CARGO_PKG_VERSION"),
        "commit": env!("ROLLER_GIT_COMMIT"),
        "build": env!("ROLLER_BUILD_TARGET"),
    })
}
