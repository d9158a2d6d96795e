//! The fault-injection hook of the durable operations engine, for the crash tests.
//!
//! Served only by servers started with `TANDEM_DR_FAULTS=1` (at [`crate::paths::DR_FAULT`]).
//! A test arms one [`FaultPoint`] on the server that will run an operation; the engine
//! checks it before and after every step of every operation kind.

use serde::{Deserialize, Serialize};

/// What the hook does at a step: crash just before the step starts (`before`), crash
/// just after its work and before the record says so (`after`, the case that proves
/// steps idempotent), or pause before it (`hold`) until released or until `hold_ms`
/// passes, so that a test can kill another process while the operation is there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPoint {
    pub step: String,
    /// `before`, `after` or `hold`.
    pub when: String,
    /// The longest a `hold` lasts (a released hold ends sooner).
    #[serde(default)]
    pub hold_ms: Option<u64>,
}

/// The body of a call to the hook: arm a point, or release a hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FaultCall {
    Arm(FaultPoint),
    Release { release: bool },
    Disarm,
}
