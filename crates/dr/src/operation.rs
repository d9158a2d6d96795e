//! A failover or failback as a durable record: its named steps, in order, each with its
//! state and timings. The record lives in the CMS and is rewritten after every step, so
//! whoever resumes it — the same cmdlet run again, or `Resume-CsDisasterRecoveryOperation`
//! on any server — starts at the first step not done. Every step is written to be safe
//! to run twice.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::progress::{OpState, StepState};
use crate::progress::{Progress, StepName};
use crate::state::FailMode;

/// Failover or failback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    FailOver,
    FailBack,
}

impl Kind {
    pub fn cmdlet(self) -> &'static str {
        match self {
            Kind::FailOver => "Invoke-CsPoolFailOver",
            Kind::FailBack => "Invoke-CsPoolFailBack",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::FailOver => "FailOver",
            Kind::FailBack => "FailBack",
        }
    }
}

/// The named steps. Which pool a step acts on depends on the kind: the *source* is the
/// pool the users leave (home pool on failover, backup pool on failback), the *target*
/// the pool that serves them afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// CMS: the pool enters FailingOver/FailingBack; the source's Back End refuses further
    /// writes of these users (a fence inside the write transaction).
    Freeze,
    /// The source's Backup Service ships everything written before the freeze.
    Drain,
    /// Per-user checksums of the source's copy and the target's backup copy agree.
    Verify,
    /// Failback after a disaster failover: the home pool counts exactly which of its
    /// changes never reached the backup copy, now that its Back End can be read.
    Reconcile,
    /// The target's backup copy of these users becomes their writable copy.
    Promote,
    /// CMS: the target pool serves the users (FailedOver, or Normal after failback).
    Switch,
    /// Every reachable server of both pools has applied the switch.
    Apply,
    /// The source removes the users' registrations, so clients sign in again and are
    /// redirected.
    SignOut,
    /// Failback: the backup pool drops its copy of the users' data.
    Retire,
    /// `-ServicesStopDelayMins`: the failed-over pool's user-facing services stop.
    StopServices,
}

impl StepName for Step {
    fn as_str(self) -> &'static str {
        Step::as_str(self)
    }
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Freeze => "Freeze",
            Step::Drain => "Drain",
            Step::Verify => "Verify",
            Step::Reconcile => "Reconcile",
            Step::Promote => "Promote",
            Step::Switch => "Switch",
            Step::Apply => "Apply",
            Step::SignOut => "SignOut",
            Step::Retire => "Retire",
            Step::StopServices => "StopServices",
        }
    }

    pub fn parse(text: &str) -> Option<Step> {
        ALL_STEPS
            .iter()
            .copied()
            .find(|s| s.as_str().eq_ignore_ascii_case(text))
    }

    /// One line for -WhatIf and -Verbose.
    pub fn describe(self, kind: Kind, source: &str, target: &str) -> String {
        match (self, kind) {
            (Step::Freeze, _) => {
                format!("make the users read-only on {source} (the Back End refuses their writes)")
            }
            (Step::Drain, _) => {
                format!("wait for the Backup Service of {source} to ship every change to {target}")
            }
            (Step::Verify, _) => {
                format!("compare each user's data on {source} with the backup copy on {target}")
            }
            (Step::Reconcile, _) => format!(
                "count the changes on {target} that never reached {source} before the disaster failover"
            ),
            (Step::Promote, _) => {
                format!("make the backup copy on {target} the users' writable copy")
            }
            (Step::Switch, Kind::FailOver) => {
                format!("record in the Central Management store that {target} serves the users")
            }
            (Step::Switch, Kind::FailBack) => format!(
                "record in the Central Management store that {target} serves its users again"
            ),
            (Step::Apply, _) => format!(
                "wait until every reachable server of {source} and {target} has applied the change"
            ),
            (Step::SignOut, _) => {
                format!("sign the users out of {source}, so that they sign in again at {target}")
            }
            (Step::Retire, _) => format!("drop the users' data from {source}"),
            (Step::StopServices, _) => {
                format!("stop the user-facing services (RTCSRV) of {source}")
            }
        }
    }
}

pub const ALL_STEPS: [Step; 10] = [
    Step::Freeze,
    Step::Drain,
    Step::Verify,
    Step::Reconcile,
    Step::Promote,
    Step::Switch,
    Step::Apply,
    Step::SignOut,
    Step::Retire,
    Step::StopServices,
];

/// The cmdlet's parameters, kept with the operation so a resume behaves the same.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    pub disaster: bool,
    pub flush: bool,
    pub force: bool,
    /// Longest wait for the Backup Service to drain.
    pub wait_ms: u64,
    pub skip_verification: bool,
    pub db_timeout_secs: Option<u32>,
    pub services_stop_delay_mins: Option<u32>,
}

/// The documented failback default (15 s); tandem uses the same for failover, whose
/// default the documentation does not state.
pub const DEFAULT_WAIT_MS: u64 = 15_000;

/// One step of a pool operation.
pub type StepRecord = crate::progress::StepRecord<Step>;

/// What a disaster-mode operation lost, or may have lost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Loss {
    /// Changes lost (exact) or known to be lost so far (not exact).
    pub changes: i64,
    pub users: Vec<String>,
    /// Commit times of the first and last lost change (unix ms).
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// True once counted from the pool that held them; until then a lower bound.
    pub exact: bool,
    pub note: String,
    /// The range a disaster operation gave at once, before anything could be counted:
    /// what the lost pool certainly had not shipped, and about the most, adding what it
    /// may have committed after it was last heard (its write rate then, over the time until
    /// the operation began). Kept once the loss is counted, to compare.
    #[serde(default)]
    pub estimated: Option<[i64; 2]>,
}

/// One failover or failback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub id: u64,
    pub kind: Kind,
    /// The users' home pool (`-PoolFqdn`, for failover and failback alike).
    pub pool: String,
    pub backup_pool: String,
    pub options: Options,
    /// Its steps and state, as the engine keeps them for every kind of operation.
    #[serde(flatten)]
    pub progress: Progress<Step>,
    /// The users moved.
    pub users: i64,
    /// Disaster mode: per module, the last change of the lost pool that the backup copy
    /// holds. Everything after it was lost.
    pub cut: BTreeMap<String, i64>,
    /// When the lost pool's backup copy was last updated (disaster mode).
    pub last_heard_ms: Option<i64>,
    pub loss: Option<Loss>,
    /// For a failback: the failover it undoes.
    pub undoes: Option<u64>,
    /// What `Stop-CsDisasterRecoveryOperation` undid when it cancelled the operation.
    #[serde(default)]
    pub undone: Vec<String>,
}

/// What cancelling an operation undoes (see [`Operation::cancel_plan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelPlan {
    /// The source pool's Back End may refuse the users' writes (Freeze began): lift it.
    pub lift_fence: bool,
    /// The phase the pool goes back to: where it was before the operation began.
    pub back_to: crate::state::Phase,
}

impl Operation {
    /// A new operation with its plan.
    pub fn new(
        id: u64,
        kind: Kind,
        pool: &str,
        backup_pool: &str,
        options: Options,
        reconcile: bool,
        now_ms: i64,
    ) -> Operation {
        let progress = Progress::new(plan(kind, &options, reconcile), now_ms);
        Operation {
            id,
            kind,
            pool: pool.to_ascii_lowercase(),
            backup_pool: backup_pool.to_ascii_lowercase(),
            options,
            progress,
            users: 0,
            cut: BTreeMap::new(),
            last_heard_ms: None,
            loss: None,
            undoes: None,
            undone: Vec::new(),
        }
    }

    pub fn mode(&self) -> FailMode {
        if self.options.disaster {
            FailMode::Disaster
        } else {
            FailMode::Planned
        }
    }

    /// The pool the users leave.
    pub fn source(&self) -> &str {
        match self.kind {
            Kind::FailOver => &self.pool,
            Kind::FailBack => &self.backup_pool,
        }
    }

    /// The pool that serves them afterwards.
    pub fn target(&self) -> &str {
        match self.kind {
            Kind::FailOver => &self.backup_pool,
            Kind::FailBack => &self.pool,
        }
    }

    /// The index of the first step to run: the first that is pending or failed.
    pub fn next_step(&self) -> Option<usize> {
        self.progress.next_step()
    }

    /// The step a reader should look at: the next one, or the last one done.
    pub fn current_step(&self) -> Option<Step> {
        self.progress.current_step()
    }

    /// Carries an unfinished planned operation on in disaster mode: its source was lost on
    /// the way (a pool that dies during its maintenance failover). The steps that need the
    /// source and have not run yet (Drain, Verify) are skipped, as a disaster operation
    /// started afresh would skip them; what is done stays done. Returns false when the
    /// operation already was in disaster mode.
    pub fn go_on_in_disaster_mode(&mut self) -> bool {
        if self.options.disaster {
            return false;
        }
        self.options.disaster = true;
        let reconcile = self
            .progress
            .steps
            .iter()
            .any(|s| s.step == Step::Reconcile && s.state != StepState::Skipped);
        let needed = plan(self.kind, &self.options, reconcile);
        for record in &mut self.progress.steps {
            let still_needed = needed
                .iter()
                .any(|(step, run)| *step == record.step && *run);
            if !still_needed && record.state != StepState::Done {
                record.state = StepState::Skipped;
                record.detail = "skipped: carried on in disaster mode (-DisasterMode)".into();
            }
        }
        true
    }

    pub fn is_finished(&self) -> bool {
        self.progress.is_finished()
    }

    /// Whether the operation can still be cancelled, and what that undoes. Until the
    /// target's copy is promoted nothing has moved: the fence on the source is lifted and
    /// the pool goes back to where it was. From `Promote` on the users' writable copy is
    /// the target's, and only finishing the operation (then running its opposite) is safe.
    pub fn cancel_plan(&self) -> Result<CancelPlan, String> {
        if self.is_finished() {
            return Err(format!(
                "operation {} ({} of {}) is {}; there is nothing to stop",
                self.id,
                self.kind.as_str(),
                self.pool,
                self.progress.state.as_str().to_lowercase()
            ));
        }
        let past = self.progress.steps.iter().find(|s| {
            matches!(
                s.step,
                Step::Promote
                    | Step::Switch
                    | Step::Apply
                    | Step::SignOut
                    | Step::Retire
                    | Step::StopServices
            ) && matches!(s.state, StepState::Done | StepState::Failed)
        });
        if let Some(s) = past {
            let opposite = match self.kind {
                Kind::FailOver => Kind::FailBack,
                Kind::FailBack => Kind::FailOver,
            };
            return Err(format!(
                "operation {} ({} of {}) is past its point of no return: step {} has begun, so {} holds the users' writable copy. \
                 Finish it with Resume-CsDisasterRecoveryOperation -Identity {}, then undo it with {} -PoolFqdn {}",
                self.id,
                self.kind.as_str(),
                self.pool,
                s.step.as_str(),
                self.target(),
                self.id,
                opposite.cmdlet(),
                self.pool
            ));
        }
        let freeze_began = self.progress.steps.iter().any(|s| {
            s.step == Step::Freeze && matches!(s.state, StepState::Done | StepState::Failed)
        });
        Ok(CancelPlan {
            lift_fence: freeze_began,
            back_to: match self.kind {
                Kind::FailOver => crate::state::Phase::Normal,
                Kind::FailBack => crate::state::Phase::FailedOver,
            },
        })
    }

    /// What it lost, in words: exact counts once known, the note of a lower bound until
    /// then, "nothing" for a finished operation that lost nothing.
    pub fn loss_text(&self) -> String {
        match &self.loss {
            Some(l) if l.exact => format!(
                "{} changes of {} users{}",
                l.changes,
                l.users.len(),
                match (l.from_ms, l.to_ms) {
                    (Some(a), Some(b)) => format!(
                        ", committed {} to {}",
                        crate::format_timestamp(a),
                        crate::format_timestamp(b)
                    ),
                    _ => String::new(),
                }
            ),
            Some(l) => l.note.clone(),
            None if self.progress.state == OpState::Completed => "nothing".into(),
            None => String::new(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an operation serialises")
    }

    pub fn from_json(text: &str) -> Option<Operation> {
        serde_json::from_str(text).ok()
    }
}

/// What a checking step (Drain: changes still to ship; Verify: users whose copies differ)
/// does with what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finding {
    /// Nothing is missing: the step is done.
    Clean,
    /// Something is missing and `-Force` says to go on: the step is done, and what is
    /// missing is recorded as lost.
    GoOnLosing,
    /// Something is missing: the operation stops here and says what to run.
    Stop,
}

/// Judges what a checking step found: `missing` changes or users, with or without
/// `-Force`.
pub fn judge(missing: i64, force: bool) -> Finding {
    match (missing, force) {
        (0, _) => Finding::Clean,
        (_, true) => Finding::GoOnLosing,
        (_, false) => Finding::Stop,
    }
}

/// The steps of an operation, each with whether it runs. Skipped steps stay in the plan
/// so that the record shows what a planned operation would have done.
pub fn plan(kind: Kind, options: &Options, reconcile: bool) -> Vec<(Step, bool)> {
    let planned = !options.disaster;
    match kind {
        Kind::FailOver => vec![
            (Step::Freeze, true),
            (Step::Drain, planned),
            (Step::Verify, planned && !options.skip_verification),
            (Step::Promote, true),
            (Step::Switch, true),
            (Step::Apply, true),
            (Step::SignOut, true),
            (
                Step::StopServices,
                options.services_stop_delay_mins.is_some(),
            ),
        ],
        Kind::FailBack => vec![
            (Step::Freeze, true),
            (Step::Drain, planned),
            (Step::Verify, planned && !options.skip_verification),
            (Step::Reconcile, reconcile),
            (Step::Promote, true),
            (Step::Switch, true),
            (Step::Apply, true),
            (Step::SignOut, true),
            (Step::Retire, true),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stopped_at(kind: Kind, done: &[Step], failed: Step) -> Operation {
        let mut op = Operation::new(
            7,
            kind,
            "pool2.contoso.com",
            "pool1.contoso.com",
            Options::default(),
            false,
            0,
        );
        for s in &mut op.progress.steps {
            if done.contains(&s.step) {
                s.state = StepState::Done;
            } else if s.step == failed {
                s.state = StepState::Failed;
            }
        }
        op.progress.state = crate::progress::OpState::Stopped;
        op
    }

    #[test]
    fn an_operation_can_be_cancelled_until_the_target_copy_is_promoted() {
        let at_drain = stopped_at(Kind::FailOver, &[Step::Freeze], Step::Drain);
        assert_eq!(
            at_drain.cancel_plan(),
            Ok(CancelPlan {
                lift_fence: true,
                back_to: crate::state::Phase::Normal
            })
        );
        let failback = stopped_at(Kind::FailBack, &[Step::Freeze, Step::Drain], Step::Verify);
        assert_eq!(
            failback.cancel_plan().map(|p| p.back_to),
            Ok(crate::state::Phase::FailedOver)
        );
        // Freeze itself failed before writing anything durable: still lift, it is harmless.
        let at_freeze = stopped_at(Kind::FailOver, &[], Step::Freeze);
        assert!(at_freeze.cancel_plan().unwrap().lift_fence);
        let promoted = stopped_at(
            Kind::FailOver,
            &[Step::Freeze, Step::Drain, Step::Verify],
            Step::Promote,
        );
        let refusal = promoted.cancel_plan().unwrap_err();
        assert!(refusal.contains("point of no return"), "{refusal}");
        assert!(refusal.contains("Resume-CsDisasterRecoveryOperation -Identity 7"));
        assert!(refusal.contains("Invoke-CsPoolFailBack -PoolFqdn pool2.contoso.com"));
        let mut done = at_drain.clone();
        done.progress.state = crate::progress::OpState::Completed;
        assert!(done.cancel_plan().unwrap_err().contains("nothing to stop"));
    }

    #[test]
    fn disaster_failover_skips_the_steps_that_need_the_lost_pool() {
        let o = Options {
            disaster: true,
            ..Options::default()
        };
        let p = plan(Kind::FailOver, &o, false);
        let skipped: Vec<_> = p.iter().filter(|(_, r)| !r).map(|(s, _)| *s).collect();
        assert_eq!(skipped, [Step::Drain, Step::Verify, Step::StopServices]);
    }

    #[test]
    fn a_planned_operation_stopped_at_drain_goes_on_in_disaster_mode() {
        let mut op = Operation::new(
            7,
            Kind::FailOver,
            "pool2.contoso.com",
            "pool1.contoso.com",
            Options::default(),
            false,
            0,
        );
        op.progress.steps[0].state = StepState::Done;
        op.progress.steps[1].state = StepState::Failed;
        assert!(op.go_on_in_disaster_mode());
        assert_eq!(op.mode(), FailMode::Disaster);
        let states: Vec<_> = op
            .progress
            .steps
            .iter()
            .map(|s| (s.step, s.state))
            .collect();
        assert_eq!(
            states[..4],
            [
                (Step::Freeze, StepState::Done),
                (Step::Drain, StepState::Skipped),
                (Step::Verify, StepState::Skipped),
                (Step::Promote, StepState::Pending),
            ]
        );
        // Once is enough.
        assert!(!op.go_on_in_disaster_mode());
    }

    #[test]
    fn planned_failover_drains_and_verifies_before_it_promotes() {
        let p = plan(Kind::FailOver, &Options::default(), false);
        let pos = |s| p.iter().position(|(x, _)| *x == s).unwrap();
        assert!(pos(Step::Freeze) < pos(Step::Drain));
        assert!(pos(Step::Drain) < pos(Step::Verify));
        assert!(pos(Step::Verify) < pos(Step::Promote));
        assert!(pos(Step::Promote) < pos(Step::Switch));
        assert!(pos(Step::Switch) < pos(Step::SignOut));
        let skip = Options {
            skip_verification: true,
            ..Options::default()
        };
        assert!(!plan(Kind::FailOver, &skip, false)[2].1);
    }

    #[test]
    fn failback_reconciles_only_after_a_disaster_failover() {
        let with = plan(Kind::FailBack, &Options::default(), true);
        let without = plan(Kind::FailBack, &Options::default(), false);
        let r = |p: &[(Step, bool)]| p.iter().find(|(s, _)| *s == Step::Reconcile).unwrap().1;
        assert!(r(&with) && !r(&without));
    }

    #[test]
    fn a_resume_starts_at_the_first_step_not_done() {
        let mut op = Operation::new(
            1,
            Kind::FailOver,
            "Pool1.contoso.com",
            "pool2.contoso.com",
            Options::default(),
            false,
            0,
        );
        assert_eq!(op.next_step(), Some(0));
        op.progress.steps[0].state = StepState::Done;
        op.progress.steps[1].state = StepState::Failed;
        assert_eq!(op.next_step(), Some(1));
        assert_eq!(op.current_step(), Some(Step::Drain));
        for s in &mut op.progress.steps {
            if s.state != StepState::Skipped {
                s.state = StepState::Done;
            }
        }
        assert_eq!(op.next_step(), None);
        assert_eq!(
            (op.source(), op.target()),
            ("pool1.contoso.com", "pool2.contoso.com")
        );
        assert_eq!(Operation::from_json(&op.to_json()), Some(op));
    }

    #[test]
    fn a_check_that_finds_something_missing_stops_unless_forced() {
        assert_eq!(judge(0, false), Finding::Clean);
        assert_eq!(judge(0, true), Finding::Clean);
        assert_eq!(judge(3, true), Finding::GoOnLosing);
        assert_eq!(judge(3, false), Finding::Stop);
    }

    #[test]
    fn step_names_round_trip() {
        for s in ALL_STEPS {
            assert_eq!(Step::parse(&s.as_str().to_lowercase()), Some(s));
        }
    }
}
