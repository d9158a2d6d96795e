//! The documented Backup Service states, derived from numbers.
//!
//! The original reports only state names; tandem computes them from the backlog (how many
//! changes are unshipped and how old the oldest is) so the numbers and the names can never
//! disagree: `FinalState` is "nothing left to ship", `SteadyState` "everything pending is
//! younger than the sync interval", `NonSteadyState` "a change has waited longer than the
//! sync interval" (the backlog is building), and `ErrorState` "shipping is failing, no
//! exporter runs, or a change could not be shipped" — at once, not after a sync interval:
//! an operator must see a stalled Backup Service before a failover's Drain does.

use serde::{Deserialize, Serialize};

/// Export side of one module and direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportStatus {
    FinalState,
    SteadyState,
    NonSteadyState,
    NotInitialized,
    ErrorState,
}

impl ExportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExportStatus::FinalState => "FinalState",
            ExportStatus::SteadyState => "SteadyState",
            ExportStatus::NonSteadyState => "NonSteadyState",
            ExportStatus::NotInitialized => "NotInitialized",
            ExportStatus::ErrorState => "ErrorState",
        }
    }
}

/// What the exporter of one module knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportFacts {
    /// The module has an exporter on this pool (for the CMS module: the CMS is here).
    pub applicable: bool,
    /// Unshipped changes.
    pub pending: i64,
    /// When the oldest unshipped change committed.
    pub oldest_pending_ms: Option<i64>,
    /// The last shipment failed and nothing has succeeded since.
    pub failing: bool,
    /// No Front End of the pool runs the exporter (its Backup Service is stopped).
    pub no_exporter: bool,
    /// Changes that could not be shipped and were not written again since.
    pub unshippable: usize,
}

/// The export state, and the lag in seconds (age of the oldest unshipped change).
pub fn export_status(
    facts: ExportFacts,
    now_ms: i64,
    sync_interval_secs: u64,
) -> (ExportStatus, f64) {
    if !facts.applicable {
        return (ExportStatus::NotInitialized, 0.0);
    }
    let lag = facts
        .oldest_pending_ms
        .map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0);
    let state =
        if facts.unshippable > 0 || (facts.pending > 0 && (facts.failing || facts.no_exporter)) {
            ExportStatus::ErrorState
        } else if facts.pending == 0 {
            ExportStatus::FinalState
        } else if lag > sync_interval_secs as f64 {
            ExportStatus::NonSteadyState
        } else {
            ExportStatus::SteadyState
        };
    (state, lag)
}

/// The recovery point at risk if the pool were lost now: everything unshipped, so at
/// least the current lag; when idle, the time a new change could wait (one shipping round,
/// here well under a second, bounded by the sync interval).
pub fn estimated_rpo_secs(state: ExportStatus, lag_secs: f64, round_secs: f64) -> f64 {
    match state {
        ExportStatus::FinalState | ExportStatus::SteadyState => lag_secs.max(round_secs),
        _ => lag_secs,
    }
}

/// How a Front End acknowledges writes under its pair's commit setting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum CommitState {
    /// The pair ships after acknowledging (the default).
    #[default]
    Asynchronous,
    /// Every write waits for the partner.
    Synchronous,
    /// The pair is set to synchronous, but the partner did not commit in time: writes are
    /// acknowledged without it until it has caught up.
    FellBack { since_ms: i64, reason: String },
}

impl CommitState {
    /// For status: `Synchronous`, `Asynchronous`, or the fallback and why.
    pub fn describe(&self) -> String {
        match self {
            CommitState::Asynchronous => "Asynchronous".into(),
            CommitState::Synchronous => "Synchronous".into(),
            CommitState::FellBack { since_ms, reason } => format!(
                "Asynchronous (fell back from synchronous at {}: {reason}; back once the backup pool has caught up)",
                store::format_timestamp(*since_ms)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(pending: i64, oldest: Option<i64>, failing: bool) -> ExportFacts {
        ExportFacts {
            applicable: true,
            pending,
            oldest_pending_ms: oldest,
            failing,
            no_exporter: false,
            unshippable: 0,
        }
    }

    #[test]
    fn a_failing_or_stopped_exporter_and_an_unshippable_change_are_errors_at_once() {
        // A failing shipment is an error while anything waits, however young.
        assert_eq!(
            export_status(facts(1, Some(9_990), true), 10_000, 120).0,
            ExportStatus::ErrorState
        );
        let stopped = ExportFacts {
            no_exporter: true,
            ..facts(1, Some(9_990), false)
        };
        assert_eq!(
            export_status(stopped, 10_000, 120).0,
            ExportStatus::ErrorState
        );
        // An unshippable change is missing from the backup copy even with nothing pending.
        let skipped = ExportFacts {
            unshippable: 1,
            ..facts(0, None, false)
        };
        assert_eq!(
            export_status(skipped, 10_000, 120).0,
            ExportStatus::ErrorState
        );
        // Nothing pending and nothing skipped: an old error no longer matters.
        assert_eq!(
            export_status(facts(0, None, true), 10_000, 120).0,
            ExportStatus::FinalState
        );
    }

    #[test]
    fn states_follow_the_backlog() {
        assert_eq!(
            export_status(facts(0, None, false), 10_000, 120).0,
            ExportStatus::FinalState
        );
        assert_eq!(
            export_status(facts(3, Some(9_000), false), 10_000, 120),
            (ExportStatus::SteadyState, 1.0)
        );
        assert_eq!(
            export_status(facts(3, Some(0), false), 200_000, 120).0,
            ExportStatus::NonSteadyState
        );
        assert_eq!(
            export_status(facts(3, Some(0), true), 200_000, 120).0,
            ExportStatus::ErrorState
        );
        let na = ExportFacts {
            applicable: false,
            ..facts(0, None, false)
        };
        assert_eq!(export_status(na, 0, 120).0, ExportStatus::NotInitialized);
    }
}
