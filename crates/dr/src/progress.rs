//! What every durable operation records, whatever its kind: its named steps in order,
//! each with a state, timings, attempts and what it found, and the operation's own state.
//!
//! The engine (`crates/engine`) runs every kind the same way: before a step it records the
//! claim (an attempt, a start time), then does the work, then records the outcome. A crash
//! between the work and its record leaves the step claimed but not done, so a resume runs
//! it again — which is why every step of every kind is written to be safe to run twice.
//! The same record renders the same way for every kind ([`Progress::step_lines`]).

use serde::{Deserialize, Serialize};

/// The steps of one kind of operation: a closed set of names.
pub trait StepName: Copy + Eq + std::fmt::Debug + Send + Sync + 'static {
    fn as_str(self) -> &'static str;
}

/// Where an operation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpState {
    Running,
    /// A step failed; the operation waits for a resume.
    Stopped,
    Completed,
    /// Given up before its point of no return (`-Restore`, a drain that could not finish):
    /// nothing of it remains to be done.
    Cancelled,
}

impl OpState {
    pub fn as_str(self) -> &'static str {
        match self {
            OpState::Running => "Running",
            OpState::Stopped => "Stopped",
            OpState::Completed => "Completed",
            OpState::Cancelled => "Cancelled",
        }
    }

    /// Whether work remains (a resume carries it on).
    pub fn is_unfinished(self) -> bool {
        matches!(self, OpState::Running | OpState::Stopped)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepState {
    Pending,
    Done,
    /// Not needed for this operation (a planned-only step in disaster mode, say).
    Skipped,
    /// Stopped here; a resume runs it again.
    Failed,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "Pending",
            StepState::Done => "Done",
            StepState::Skipped => "Skipped",
            StepState::Failed => "Failed",
        }
    }
}

/// One step of an operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRecord<S> {
    pub step: S,
    pub state: StepState,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    /// What the step found or did, in words and numbers.
    pub detail: String,
    /// How many times it was started (more than once after a crash or a retry).
    pub attempts: u32,
}

impl<S> StepRecord<S> {
    /// A step not started yet; `needed: false` marks it skipped from the start.
    pub fn planned(step: S, needed: bool) -> StepRecord<S> {
        StepRecord {
            step,
            state: if needed {
                StepState::Pending
            } else {
                StepState::Skipped
            },
            started_ms: None,
            finished_ms: None,
            detail: String::new(),
            attempts: 0,
        }
    }

    /// How long the step's last attempt took.
    pub fn duration_ms(&self) -> Option<i64> {
        Some(self.finished_ms? - self.started_ms?)
    }
}

/// The part of an operation's record the engine keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress<S> {
    pub state: OpState,
    pub steps: Vec<StepRecord<S>>,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    /// The server that last ran it.
    pub runner: String,
    /// Why it stopped, with the command that carries on.
    pub error: Option<String>,
}

impl<S: StepName> Progress<S> {
    /// A new operation's progress: `plan` is every step with whether it runs. Skipped
    /// steps stay in the record, so that it shows what a fuller operation would have done.
    pub fn new(plan: impl IntoIterator<Item = (S, bool)>, now_ms: i64) -> Progress<S> {
        Progress {
            state: OpState::Running,
            steps: plan
                .into_iter()
                .map(|(step, needed)| StepRecord::planned(step, needed))
                .collect(),
            started_ms: now_ms,
            finished_ms: None,
            runner: String::new(),
            error: None,
        }
    }

    /// The index of the first step to run: the first that is pending or failed.
    pub fn next_step(&self) -> Option<usize> {
        self.steps
            .iter()
            .position(|s| matches!(s.state, StepState::Pending | StepState::Failed))
    }

    /// The step a reader should look at: the next one, or the last one.
    pub fn current_step(&self) -> Option<S> {
        self.next_step()
            .map(|i| self.steps[i].step)
            .or_else(|| self.steps.last().map(|s| s.step))
    }

    /// The record of `step`.
    pub fn step(&self, step: S) -> Option<&StepRecord<S>> {
        self.steps.iter().find(|s| s.step == step)
    }

    pub fn step_mut(&mut self, step: S) -> Option<&mut StepRecord<S>> {
        self.steps.iter_mut().find(|s| s.step == step)
    }

    /// Whether `step` is behind the operation (done, or not needed).
    pub fn is_done(&self, step: S) -> bool {
        self.step(step)
            .is_some_and(|s| matches!(s.state, StepState::Done | StepState::Skipped))
    }

    pub fn is_finished(&self) -> bool {
        !self.state.is_unfinished()
    }

    /// Every step in one line each: `Drain Done 12 ms (2 attempts): what it found`. The
    /// one rendering of steps and timings, for every kind of operation.
    pub fn step_lines(&self) -> Vec<String> {
        self.steps.iter().map(step_line).collect()
    }
}

/// One step's line (see [`Progress::step_lines`]).
pub fn step_line<S: StepName>(s: &StepRecord<S>) -> String {
    let ms = s
        .duration_ms()
        .map_or(String::new(), |ms| format!(" {ms} ms"));
    let retries = if s.attempts > 1 {
        format!(" ({} attempts)", s.attempts)
    } else {
        String::new()
    };
    format!(
        "{} {}{ms}{retries}{}",
        s.step.as_str(),
        s.state.as_str(),
        if s.detail.is_empty() {
            String::new()
        } else {
            format!(": {}", s.detail)
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    enum Two {
        A,
        B,
    }

    impl StepName for Two {
        fn as_str(self) -> &'static str {
            match self {
                Two::A => "A",
                Two::B => "B",
            }
        }
    }

    #[test]
    fn the_next_step_is_the_first_pending_or_failed_and_lines_show_timings() {
        let mut p = Progress::new([(Two::A, true), (Two::B, true)], 0);
        assert_eq!(p.next_step(), Some(0));
        p.steps[0].state = StepState::Done;
        p.steps[0].started_ms = Some(10);
        p.steps[0].finished_ms = Some(22);
        p.steps[0].attempts = 2;
        p.steps[0].detail = "found 3".into();
        p.steps[1].state = StepState::Failed;
        assert_eq!(p.next_step(), Some(1));
        assert_eq!(p.current_step(), Some(Two::B));
        assert!(p.is_done(Two::A) && !p.is_done(Two::B));
        assert_eq!(p.step_lines()[0], "A Done 12 ms (2 attempts): found 3");
        assert_eq!(p.step_lines()[1], "B Failed");
        p.steps[1].state = StepState::Skipped;
        assert_eq!(p.next_step(), None);
        assert_eq!(p.current_step(), Some(Two::B));
    }
}
