//! roller, the Release Operations Controller: authenticated, queued, proven
//! power actions for CI hardware. See ARCHITECTURE.md for the map.

pub mod actions;
pub mod auth;
pub mod config;
pub mod domain;
pub mod drivers;
pub mod queue;
