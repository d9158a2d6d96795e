//! The one step loop every durable operation runs through.
//!
//! An operation kind (pool failover and failback, CMS failover, whatever comes next) says
//! what its steps do and where its record is saved ([`Durable`]); [`run`] does the rest,
//! the same way for every kind:
//!
//! 1. before a step, the `before` fault point, then the step is *claimed*: its attempt
//!    count and start time are saved by compare-and-set, so a runner that lost the record
//!    to another stops here instead of doing the step twice;
//! 2. the step's work;
//! 3. the `after` fault point — a crash here is a crash between a step's work and its
//!    record, which is why every step must be safe to run again;
//! 4. the outcome is saved (compare-and-set again), and the next step starts.
//!
//! A step that fails leaves the operation `Stopped` (or `Cancelled`, when the step gave
//! the operation up) with the reason and the command that carries on; a resume starts at
//! the first step not done.

use std::future::Future;

use clock::Clock;
use dr::progress::{OpState, Progress, StepName, StepState};
use tracing::Instrument;

use crate::error::Error;
use crate::faults::{Faults, When};

/// What a step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepDone {
    /// What it found or did, in words and numbers, for the record.
    pub detail: String,
    /// The step had nothing to do here (for example the old store is unreachable in a
    /// disaster): recorded as skipped.
    pub skipped: bool,
}

impl StepDone {
    pub fn done(detail: impl Into<String>) -> StepDone {
        StepDone {
            detail: detail.into(),
            skipped: false,
        }
    }

    pub fn skipped(detail: impl Into<String>) -> StepDone {
        StepDone {
            detail: detail.into(),
            skipped: true,
        }
    }
}

/// Why a step failed, and whether the operation is given up for it.
#[derive(Debug)]
pub struct StepFailed {
    pub error: Error,
    /// The step gave the whole operation up (before its point of no return): it ends
    /// `Cancelled` and no resume is offered.
    pub cancels: bool,
}

impl From<Error> for StepFailed {
    fn from(error: Error) -> StepFailed {
        StepFailed {
            error,
            cancels: false,
        }
    }
}

impl From<store::StoreError> for StepFailed {
    fn from(e: store::StoreError) -> StepFailed {
        Error::from(e).into()
    }
}

/// One kind of durable operation, as the runner drives it.
pub trait Durable: Send {
    type Step: StepName;

    /// The operation's kind, as `/metrics` labels it (`pool_failover`, `cms_failover`, ...).
    fn operation(&self) -> &'static str;

    /// The operation's id (`Get-CsDisasterRecoveryOperation -Identity`); `0` before its
    /// record was first saved. Its log lines carry it as `op_id`.
    fn id(&self) -> String;

    fn progress(&self) -> &Progress<Self::Step>;
    fn progress_mut(&mut self) -> &mut Progress<Self::Step>;

    /// Saves the record if nobody else wrote it since this runner last did (a
    /// compare-and-set); an error otherwise, and the runner stops.
    fn save(&mut self) -> impl Future<Output = Result<(), Error>> + Send;

    /// Does one step's work. Must be safe to run again after a crash that came before its
    /// outcome was saved.
    fn run_step(
        &mut self,
        step: Self::Step,
    ) -> impl Future<Output = Result<StepDone, StepFailed>> + Send;

    /// What to say after a failure at `step`, naming the command that carries on.
    fn resume_hint(&self, _step: Self::Step) -> Option<String> {
        None
    }
}

/// Runs `op` from its first step not done to its end, as `runner`. On failure the record
/// says which step stopped and why, and so does the error.
pub async fn run<D: Durable>(
    op: &mut D,
    runner: &str,
    faults: &Faults,
    clock: &Clock,
) -> Result<(), Error> {
    // Every line logged while it runs names the operation (`tandem lab logs --operation`).
    let id = op.id();
    let numbered = id != "0";
    let span = if numbered {
        tracing::info_span!("operation", kind = op.operation(), op_id = %id, runner)
    } else {
        tracing::info_span!(
            "operation",
            kind = op.operation(),
            op_id = tracing::field::Empty,
            runner
        )
    };
    // Calls made from here name the operation (and step) to the servers that answer them.
    api::operation::scope(
        id,
        run_steps(op, runner, faults, clock, numbered).instrument(span),
    )
    .await
}

async fn run_steps<D: Durable>(
    op: &mut D,
    runner: &str,
    faults: &Faults,
    clock: &Clock,
    mut numbered: bool,
) -> Result<(), Error> {
    {
        let p = op.progress_mut();
        p.runner = runner.to_string();
        if p.state == OpState::Stopped {
            p.state = OpState::Running;
        }
        p.error = None;
    }
    while let Some(i) = op.progress().next_step() {
        let step = op.progress().steps[i].step;
        faults.at(step.as_str(), When::Before).await?;
        {
            let record = &mut op.progress_mut().steps[i];
            record.attempts += 1;
            record.started_ms = Some(clock.now_ms());
            record.finished_ms = None;
        }
        // The claim: if another runner took the operation over, the record changed and
        // this one stops here instead of doing the step twice.
        if let Err(e) = op.save().await {
            op.progress_mut().state = OpState::Stopped;
            return Err(e);
        }
        if !numbered {
            tracing::Span::current().record("op_id", tracing::field::display(op.id()));
            numbered = true;
        }
        api::operation::set(&op.id(), step.as_str());
        tracing::info!(
            step = step.as_str(),
            attempt = op.progress().steps[i].attempts,
            "step started"
        );
        let outcome = op
            .run_step(step)
            .instrument(tracing::info_span!("step", step = step.as_str()))
            .await;
        faults.at(step.as_str(), When::After).await?;
        let now = clock.now_ms();
        let started = op.progress().steps[i].started_ms.unwrap_or(now);
        let ended = match &outcome {
            Ok(done) if done.skipped => "skipped",
            Ok(_) => "done",
            Err(_) => "failed",
        };
        crate::metrics::step(op.operation(), step.as_str(), ended, now - started);
        match &outcome {
            Ok(done) => tracing::info!(
                step = step.as_str(),
                outcome = ended,
                took_ms = now - started,
                detail = %done.detail,
                "step ended"
            ),
            Err(failed) => tracing::warn!(
                step = step.as_str(),
                outcome = ended,
                took_ms = now - started,
                error = %failed.error,
                "step ended"
            ),
        }
        match outcome {
            Ok(done) => {
                let record = &mut op.progress_mut().steps[i];
                record.finished_ms = Some(now);
                record.state = if done.skipped {
                    StepState::Skipped
                } else {
                    StepState::Done
                };
                record.detail = done.detail;
                op.save().await?;
            }
            Err(failed) => {
                let message = failed.error.to_string();
                let hint = if failed.cancels {
                    None
                } else {
                    op.resume_hint(step)
                };
                let p = op.progress_mut();
                let record = &mut p.steps[i];
                record.finished_ms = Some(now);
                record.state = StepState::Failed;
                record.detail = message.clone();
                p.state = if failed.cancels {
                    OpState::Cancelled
                } else {
                    OpState::Stopped
                };
                let full = match hint {
                    Some(h) => format!("{message} {h}"),
                    None => message,
                };
                p.error = Some(full.clone());
                p.finished_ms = failed.cancels.then_some(now);
                let ended = if failed.cancels {
                    "cancelled"
                } else {
                    "stopped"
                };
                crate::metrics::operation(op.operation(), ended);
                tracing::warn!(outcome = ended, "operation ended");
                // The record says where it stopped when it can be saved; the error says
                // it either way.
                let _ = op.save().await;
                return Err(failed.error.with_message(full));
            }
        }
    }
    let p = op.progress_mut();
    p.state = OpState::Completed;
    p.finished_ms = Some(clock.now_ms());
    op.save().await?;
    crate::metrics::operation(op.operation(), "completed");
    tracing::info!("operation completed");
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The runner on simulated time, with a made-up operation whose steps count their
    //! effects, and a record store that is a shared cell with a version for
    //! compare-and-set: the cases that otherwise take a 40-second lab test.

    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::faults::Faults;
    use dr::progress::StepRecord;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    enum S {
        Fence,
        Copy,
        Switch,
    }

    impl StepName for S {
        fn as_str(self) -> &'static str {
            match self {
                S::Fence => "Fence",
                S::Copy => "Copy",
                S::Switch => "Switch",
            }
        }
    }

    /// The shared world: the saved record (with a version for compare-and-set), and how
    /// many times each step's effect happened.
    #[derive(Debug, Default)]
    struct World {
        saved: Option<(u64, Progress<S>)>,
        effects: BTreeMap<&'static str, u32>,
        /// The lease of the store the record lives in expires at this time (ms): saves
        /// after it fail, as with a master that lost its lease.
        lease_until: Option<i64>,
    }

    #[derive(Debug)]
    struct Op {
        progress: Progress<S>,
        world: Arc<Mutex<World>>,
        /// The record version this runner last saved or read.
        seen: u64,
        clock: Clock,
        /// How long the Copy step takes.
        copy_takes: Duration,
    }

    impl Op {
        fn fresh(world: &Arc<Mutex<World>>, clock: Clock) -> Op {
            Op {
                progress: Progress::new(
                    [(S::Fence, true), (S::Copy, true), (S::Switch, true)],
                    clock.now_ms(),
                ),
                world: world.clone(),
                seen: 0,
                clock,
                copy_takes: Duration::from_millis(0),
            }
        }

        /// A runner resuming from the saved record.
        fn resumed(world: &Arc<Mutex<World>>, clock: Clock) -> Op {
            let (seen, progress) = world.lock().unwrap().saved.clone().expect("a record");
            Op {
                progress,
                world: world.clone(),
                seen,
                clock,
                copy_takes: Duration::from_millis(0),
            }
        }
    }

    impl Durable for Op {
        type Step = S;

        fn operation(&self) -> &'static str {
            "test"
        }

        fn id(&self) -> String {
            "1".into()
        }

        fn progress(&self) -> &Progress<S> {
            &self.progress
        }

        fn progress_mut(&mut self) -> &mut Progress<S> {
            &mut self.progress
        }

        async fn save(&mut self) -> Result<(), Error> {
            let mut w = self.world.lock().unwrap();
            if w.lease_until.is_some_and(|t| self.clock.now_ms() >= t) {
                return Err(Error::unavailable("the store's master lease expired"));
            }
            let current = w.saved.as_ref().map_or(0, |(v, _)| *v);
            if current != self.seen {
                return Err(Error::conflict("the record changed: another runner has it"));
            }
            self.seen = current + 1;
            w.saved = Some((self.seen, self.progress.clone()));
            Ok(())
        }

        async fn run_step(&mut self, step: S) -> Result<StepDone, StepFailed> {
            if step == S::Copy {
                self.clock.sleep(self.copy_takes).await;
            }
            // Idempotent effects: a step run twice sets, never adds.
            let mut w = self.world.lock().unwrap();
            let n = w.effects.entry(step.as_str()).or_default();
            *n += 1;
            Ok(StepDone::done(format!("{} ran", step.as_str())))
        }

        fn resume_hint(&self, step: S) -> Option<String> {
            Some(format!("Resume it from {}.", step.as_str()))
        }
    }

    fn states(p: &Progress<S>) -> Vec<StepState> {
        p.steps.iter().map(|s: &StepRecord<S>| s.state).collect()
    }

    /// A runner killed between every step's work and its record (the future dropped at
    /// the `after` fault point), then resumed by a new runner from what was saved: every
    /// time the operation completes, the interrupted step ran once more, no step ran more
    /// than twice, and nothing after it ran before the resume.
    #[tokio::test(start_paused = true)]
    async fn a_runner_killed_between_each_step_and_its_record_is_resumed_to_the_end() {
        for (i, victim) in [S::Fence, S::Copy, S::Switch].into_iter().enumerate() {
            let clock = Clock::starting_at(1_000_000);
            let world = Arc::new(Mutex::new(World::default()));
            let faults = Faults::enabled();
            faults.arm_kill(victim.as_str(), When::After);
            let mut first = Op::fresh(&world, clock);
            let outcome = run(&mut first, "fe1", &faults, &clock).await;
            assert!(
                matches!(outcome, Err(ref e) if e.to_string().contains("killed")),
                "{outcome:?}"
            );
            let saved = world.lock().unwrap().saved.clone().unwrap().1;
            // The victim was claimed (started) but its outcome never saved.
            assert_eq!(saved.steps[i].state, StepState::Pending);
            assert_eq!(saved.steps[i].attempts, 1);
            assert_eq!(saved.state, OpState::Running);
            let mut second = Op::resumed(&world, clock);
            run(&mut second, "fe2", &Faults::enabled(), &clock)
                .await
                .unwrap();
            let w = world.lock().unwrap();
            let (_, done) = w.saved.clone().unwrap();
            assert_eq!(done.state, OpState::Completed);
            assert_eq!(done.runner, "fe2");
            assert_eq!(states(&done), vec![StepState::Done; 3]);
            assert_eq!(done.steps[i].attempts, 2, "the interrupted step ran again");
            for (j, s) in [S::Fence, S::Copy, S::Switch].into_iter().enumerate() {
                let expected = if j == i { 2 } else { 1 };
                assert_eq!(w.effects[s.as_str()], expected, "{victim:?}: {s:?}");
            }
        }
    }

    /// Killed before a step is claimed: the resume runs every step exactly once.
    #[tokio::test(start_paused = true)]
    async fn a_runner_killed_before_a_step_leaves_nothing_to_repeat() {
        let clock = Clock::starting_at(0);
        let world = Arc::new(Mutex::new(World::default()));
        let faults = Faults::enabled();
        faults.arm_kill("Copy", When::Before);
        let mut first = Op::fresh(&world, clock);
        assert!(run(&mut first, "fe1", &faults, &clock).await.is_err());
        let mut second = Op::resumed(&world, clock);
        run(&mut second, "fe2", &faults, &clock).await.unwrap();
        let w = world.lock().unwrap();
        assert!(w.effects.values().all(|n| *n == 1), "{:?}", w.effects);
    }

    /// Two runners race for one operation: each claims the next step by compare-and-set,
    /// so the one that lost the race stops at its claim and never does the step.
    #[tokio::test(start_paused = true)]
    async fn two_runners_racing_for_one_operation_do_each_step_once() {
        let clock = Clock::starting_at(0);
        let world = Arc::new(Mutex::new(World::default()));
        let mut a = Op::fresh(&world, clock);
        a.copy_takes = Duration::from_secs(5);
        a.save().await.unwrap();
        // b reads the same record a started from.
        let mut b = Op::resumed(&world, clock);
        b.copy_takes = Duration::from_secs(5);
        let faults = Faults::disabled();
        let (ra, rb) = tokio::join!(
            run(&mut a, "fe1", &faults, &clock),
            run(&mut b, "fe2", &faults, &clock)
        );
        assert!(
            ra.is_ok() != rb.is_ok(),
            "exactly one runner wins: {ra:?} {rb:?}"
        );
        let loser = ra.err().or(rb.err()).unwrap();
        assert!(loser.to_string().contains("another runner"), "{loser}");
        let w = world.lock().unwrap();
        assert!(w.effects.values().all(|n| *n == 1), "{:?}", w.effects);
        assert_eq!(w.saved.as_ref().unwrap().1.state, OpState::Completed);
    }

    /// The store's lease expires while a long step runs: the step's outcome cannot be
    /// saved, the runner stops, and a runner on the new master resumes and completes it
    /// (the step runs once more, as after a crash).
    #[tokio::test(start_paused = true)]
    async fn a_lease_expiring_mid_step_stops_the_runner_and_a_resume_finishes() {
        let clock = Clock::starting_at(0);
        let world = Arc::new(Mutex::new(World::default()));
        world.lock().unwrap().lease_until = Some(3_000);
        let mut a = Op::fresh(&world, clock);
        a.copy_takes = Duration::from_secs(10);
        let err = run(&mut a, "fe1", &Faults::disabled(), &clock)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("lease expired"), "{err}");
        assert_eq!(clock.now_ms(), 10_000, "the step ran its whole length");
        let saved = world.lock().unwrap().saved.clone().unwrap().1;
        assert_eq!(saved.current_step(), Some(S::Copy));
        // A new master's lease.
        world.lock().unwrap().lease_until = None;
        let mut b = Op::resumed(&world, clock);
        run(&mut b, "fe2", &Faults::disabled(), &clock)
            .await
            .unwrap();
        let w = world.lock().unwrap();
        assert_eq!(w.effects["Copy"], 2);
        assert_eq!(w.effects["Switch"], 1);
    }

    /// A failed step stops the operation with the reason and the resume hint; a step that
    /// cancels it ends it as cancelled, with no hint.
    #[tokio::test(start_paused = true)]
    async fn a_failed_step_says_where_it_stopped_and_how_to_go_on() {
        #[derive(Debug)]
        struct Failing(Op, bool);
        impl Durable for Failing {
            type Step = S;

            fn operation(&self) -> &'static str {
                "test"
            }

            fn id(&self) -> String {
                "1".into()
            }

            fn progress(&self) -> &Progress<S> {
                &self.0.progress
            }
            fn progress_mut(&mut self) -> &mut Progress<S> {
                &mut self.0.progress
            }
            async fn save(&mut self) -> Result<(), Error> {
                self.0.save().await
            }
            async fn run_step(&mut self, step: S) -> Result<StepDone, StepFailed> {
                if step == S::Copy {
                    return Err(StepFailed {
                        error: Error::conflict("the copy differs."),
                        cancels: self.1,
                    });
                }
                self.0.run_step(step).await
            }
            fn resume_hint(&self, step: S) -> Option<String> {
                self.0.resume_hint(step)
            }
        }
        let clock = Clock::starting_at(0);
        for cancels in [false, true] {
            let world = Arc::new(Mutex::new(World::default()));
            let mut op = Failing(Op::fresh(&world, clock), cancels);
            let err = run(&mut op, "fe1", &Faults::disabled(), &clock)
                .await
                .unwrap_err();
            let saved = world.lock().unwrap().saved.clone().unwrap().1;
            assert_eq!(saved.steps[1].state, StepState::Failed);
            if cancels {
                assert_eq!(err.to_string(), "the copy differs.");
                assert_eq!(saved.state, OpState::Cancelled);
            } else {
                assert_eq!(err.to_string(), "the copy differs. Resume it from Copy.");
                assert_eq!(saved.state, OpState::Stopped);
                assert_eq!(
                    saved.error.as_deref(),
                    Some("the copy differs. Resume it from Copy.")
                );
            }
        }
    }
}
