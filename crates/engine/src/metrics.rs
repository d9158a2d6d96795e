//! What the operations engine counts for `/metrics` (the recorder is the server process's;
//! see `mgmt::metrics`): every DR operation's steps and ends, as the runner sees them, so
//! that an operator can alert on a failover that stopped and chart how long each step takes.

/// DR operations run to an end here, by `operation` and `outcome` (completed, stopped,
/// cancelled).
pub const OPERATIONS: &str = "tandem_dr_operations_total";
/// Each step's duration, by `operation`, `step` and `outcome` (done, skipped, failed).
pub const STEP_DURATION: &str = "tandem_dr_step_duration_seconds";

/// Records one step that took `took_ms`.
pub fn step(operation: &'static str, step: &'static str, outcome: &'static str, took_ms: i64) {
    ::metrics::histogram!(
        STEP_DURATION,
        "operation" => operation,
        "step" => step,
        "outcome" => outcome
    )
    .record(took_ms.max(0) as f64 / 1000.0);
}

/// Counts one operation that ended with `outcome`.
pub fn operation(operation: &'static str, outcome: &'static str) {
    ::metrics::counter!(OPERATIONS, "operation" => operation, "outcome" => outcome).increment(1);
}
