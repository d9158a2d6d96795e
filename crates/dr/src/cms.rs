//! A Central Management store failover as a durable record: its plan, its resume rule, and
//! what it reports. The engine runs it like every other operation; the record lives in the
//! Back End of the pool that will host the store (the store itself may be lost).
//!
//! The steps, in order:
//!
//! - `Freeze`: the old store stops taking changes (planned only; it keeps its lease).
//! - `Drain`: the Backup Service ships the standby every version (planned), or the loss is
//!   estimated from what the old pool's Backup Service last said it had not shipped.
//! - `Promote`: the standby becomes the active store in a new term — the point of no
//!   return: before it a failover can be cancelled, after it only finished.
//! - `Takeover`: a Front End of this pool takes the master lease.
//! - `Publish`: the topology names this pool as the CMS pool.
//! - `Demote`: the old store becomes a standby (planned; in a disaster the old master
//!   steps down by itself when it comes back and hears of the new term).
//! - `Replicate`: every reachable server is up to date under the new master.

use serde::{Deserialize, Serialize};

use crate::progress::{OpState, Progress, StepName, StepState};
use crate::state::FailMode;

/// The named steps of a CMS failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmsStep {
    Freeze,
    Drain,
    Promote,
    Takeover,
    Publish,
    Demote,
    Replicate,
}

/// The steps, in order.
pub const CMS_STEPS: [CmsStep; 7] = [
    CmsStep::Freeze,
    CmsStep::Drain,
    CmsStep::Promote,
    CmsStep::Takeover,
    CmsStep::Publish,
    CmsStep::Demote,
    CmsStep::Replicate,
];

impl StepName for CmsStep {
    fn as_str(self) -> &'static str {
        match self {
            CmsStep::Freeze => "Freeze",
            CmsStep::Drain => "Drain",
            CmsStep::Promote => "Promote",
            CmsStep::Takeover => "Takeover",
            CmsStep::Publish => "Publish",
            CmsStep::Demote => "Demote",
            CmsStep::Replicate => "Replicate",
        }
    }
}

/// One CMS failover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CmsFailover {
    /// Numbered by the Back End that keeps it (0 until first saved).
    pub id: i64,
    pub from_pool: String,
    pub to_pool: String,
    /// Planned (the old store answered when it started) or Disaster.
    pub mode: FailMode,
    #[serde(flatten)]
    pub progress: Progress<CmsStep>,
    /// The newest epoch heard of when the failover started: the new term starts above it.
    pub known_epoch: i64,
    /// The old store's version when it was frozen (planned).
    pub frozen_version: i64,
    /// What may be lost (disaster, or a forced drain).
    pub potential_loss: String,
}

impl CmsFailover {
    pub fn new(
        from_pool: &str,
        to_pool: &str,
        mode: FailMode,
        known_epoch: i64,
        now_ms: i64,
    ) -> CmsFailover {
        CmsFailover {
            id: 0,
            from_pool: from_pool.to_ascii_lowercase(),
            to_pool: to_pool.to_ascii_lowercase(),
            mode,
            progress: Progress::new(CMS_STEPS.map(|s| (s, true)), now_ms),
            known_epoch,
            frozen_version: 0,
            potential_loss: String::new(),
        }
    }

    /// The key a runner lists it under in its `/health`.
    pub fn key(&self) -> String {
        cms_key(&self.to_pool, self.id)
    }

    /// Whether the standby was promoted: from here on the failover can only be finished.
    pub fn past_point_of_no_return(&self) -> bool {
        self.progress.is_done(CmsStep::Promote)
    }

    /// Whether a failover left by its runner may be finished without an operator: only
    /// past its point of no return, which the record shows, or the target store shows by
    /// being active (a runner that died between the promotion and its record).
    pub fn may_finish_alone(&self, target_store_active: bool) -> bool {
        self.past_point_of_no_return() || target_store_active
    }

    /// What a resume must do again. Until the standby is promoted, a planned failover
    /// freezes and drains again: the old store may have been unfrozen meanwhile (a
    /// cancelled drain, a `-Restore`) and taken changes. Once it is — as the record says,
    /// or the target store by being active — the old store is not asked again.
    pub fn prepare_resume(&mut self, target_store_active: bool) {
        if self.mode == FailMode::Planned && !self.may_finish_alone(target_store_active) {
            for step in [CmsStep::Freeze, CmsStep::Drain] {
                if let Some(s) = self.progress.step_mut(step) {
                    s.state = StepState::Pending;
                }
            }
        }
    }

    /// The record as the cmdlet prints it: a heading, a line per step, the loss and the
    /// error.
    pub fn log(&self) -> String {
        let mut text = format!(
            "Central Management store failover {} from {} to {} ({}): {}\n",
            self.id,
            self.from_pool,
            self.to_pool,
            self.mode.as_str(),
            self.progress.state.as_str()
        );
        for line in self.progress.step_lines() {
            text.push_str(&format!("  {line}\n"));
        }
        if !self.potential_loss.is_empty() {
            text.push_str(&format!("  Potential loss: {}\n", self.potential_loss));
        }
        if let Some(e) = &self.progress.error {
            text.push_str(&format!("  Error: {e}\n"));
        }
        text
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a CMS failover record serialises")
    }

    pub fn from_json(text: &str) -> Option<CmsFailover> {
        serde_json::from_str(text).ok()
    }
}

/// What a planned failover's Drain does, given what the standby holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// The standby holds every version the old store had when it froze.
    Done,
    /// Not yet; look again.
    Wait,
    /// Not in time, and `-Force` gives the missing versions up.
    GiveUp,
    /// Not in time: the failover is cancelled and the old store takes changes again.
    Cancel,
}

/// Judges a Drain: the standby `holds` a version, the old store froze at `frozen`.
pub fn drain(holds: i64, frozen: i64, time_is_up: bool, force: bool) -> Drain {
    match (holds >= frozen, time_is_up, force) {
        (true, _, _) => Drain::Done,
        (false, false, _) => Drain::Wait,
        (false, true, true) => Drain::GiveUp,
        (false, true, false) => Drain::Cancel,
    }
}

/// The `/health` key of CMS failover `id` kept by the Back End of `to_pool`.
pub fn cms_key(to_pool: &str, id: i64) -> String {
    format!("cms/{}/{id}", to_pool.to_ascii_lowercase())
}

/// What the old pool's Backup Service said about the standby when it last answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeardCms {
    pub at_ms: i64,
    /// Versions it had not shipped to the standby.
    pub versions: i64,
    pub oldest_ms: Option<i64>,
}

/// The newest configuration a surviving server held, taken by a disaster failover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Survivor {
    /// The server whose replica holds the most of the old store's line.
    pub server: String,
    /// What that replica holds, and what the standby held before.
    pub version: i64,
    pub standby: i64,
}

/// What a disaster CMS failover from `pool` may lose: what was last heard of the old
/// pool's Backup Service, and what the newest surviving replica holds (the new store
/// starts from there, so only what no surviving server applied can be lost).
pub fn potential_loss(heard: Option<HeardCms>, pool: &str, survivor: Option<&Survivor>) -> String {
    let start = match survivor {
        Some(s) if s.version > s.standby => format!(
            "the standby held version {}; {}'s replica holds version {}, the newest any surviving server applied, and the \
             new store starts from it",
            s.standby, s.server, s.version
        ),
        Some(s) => format!(
            "the standby holds version {}, as new as any surviving server's replica ({} is at {})",
            s.standby, s.server, s.version
        ),
        None => {
            "no surviving server's replica answered; the new store starts from the standby".into()
        }
    };
    let heard = match heard {
        Some(h) if h.versions > 0 => format!(
            "when {pool} last answered at {}, {} configuration version(s) committed from {} had not reached the standby",
            crate::format_timestamp(h.at_ms),
            h.versions,
            h.oldest_ms.map_or("-".into(), crate::format_timestamp),
        ),
        Some(h) => format!(
            "when {pool} last answered at {}, its Backup Service had shipped the standby every version",
            crate::format_timestamp(h.at_ms)
        ),
        None => format!("{pool} was not heard from"),
    };
    format!(
        "{start}; {heard}. Versions {pool} committed that no surviving server applied are lost: the old store records \
         them when it comes back"
    )
}

/// Whether an operation in `state` still has work a resume would do.
pub fn unfinished(state: OpState) -> bool {
    state.is_unfinished()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planned_failover_freezes_and_drains_again_until_it_promoted() {
        let mut f = CmsFailover::new(
            "Pool1.contoso.com",
            "pool2.contoso.com",
            FailMode::Planned,
            5,
            0,
        );
        for s in &mut f.progress.steps[..2] {
            s.state = StepState::Done;
        }
        f.prepare_resume(false);
        assert_eq!(f.progress.next_step(), Some(0));
        for s in &mut f.progress.steps[..3] {
            s.state = StepState::Done;
        }
        assert!(f.past_point_of_no_return());
        f.prepare_resume(false);
        assert_eq!(f.progress.current_step(), Some(CmsStep::Takeover));
        // A disaster failover never had a freeze to do again.
        let mut d = CmsFailover::new(
            "pool1.contoso.com",
            "pool2.contoso.com",
            FailMode::Disaster,
            5,
            0,
        );
        d.progress.steps[0].state = StepState::Skipped;
        d.progress.steps[1].state = StepState::Done;
        d.prepare_resume(false);
        assert_eq!(d.progress.current_step(), Some(CmsStep::Promote));
        assert_eq!(d.key(), "cms/pool2.contoso.com/0");
        // Promoted but not recorded: the store being active says so.
        assert!(!d.may_finish_alone(false));
        assert!(d.may_finish_alone(true));
        assert_eq!(CmsFailover::from_json(&d.to_json()), Some(d));
    }

    #[test]
    fn a_store_promoted_before_its_record_is_not_frozen_again() {
        let mut f = CmsFailover::new("pool1", "pool2", FailMode::Planned, 5, 0);
        for s in &mut f.progress.steps[..2] {
            s.state = StepState::Done;
        }
        // The runner died between Promote's work and its record: the store is active.
        f.prepare_resume(true);
        assert_eq!(f.progress.current_step(), Some(CmsStep::Promote));
    }

    #[test]
    fn a_drain_waits_until_the_standby_holds_the_frozen_version_or_time_is_up() {
        assert_eq!(drain(7, 7, false, false), Drain::Done);
        assert_eq!(drain(8, 7, true, false), Drain::Done);
        assert_eq!(drain(6, 7, false, true), Drain::Wait);
        assert_eq!(drain(6, 7, true, true), Drain::GiveUp);
        assert_eq!(drain(6, 7, true, false), Drain::Cancel);
    }

    #[test]
    fn the_loss_says_what_was_heard_and_where_the_new_store_starts() {
        let heard = HeardCms {
            at_ms: 1_000,
            versions: 2,
            oldest_ms: Some(900),
        };
        let ahead = Survivor {
            server: "edge1".into(),
            version: 319,
            standby: 306,
        };
        let text = potential_loss(Some(heard), "pool1", Some(&ahead));
        assert!(
            text.starts_with("the standby held version 306; edge1's replica holds version 319")
        );
        assert!(text.contains("2 configuration version(s)"));
        let none = HeardCms {
            versions: 0,
            ..heard
        };
        let level = Survivor {
            version: 306,
            ..ahead
        };
        let text = potential_loss(Some(none), "pool1", Some(&level));
        assert!(
            text.contains("as new as any surviving server's replica"),
            "{text}"
        );
        assert!(text.contains("no surviving server applied are lost"));
        assert!(potential_loss(None, "pool1", None).contains("not heard from"));
    }

    #[test]
    fn the_log_has_a_line_per_step() {
        let mut f = CmsFailover::new("pool1", "pool2", FailMode::Disaster, 0, 0);
        f.id = 3;
        f.progress.state = OpState::Completed;
        let log = f.log();
        assert!(log.starts_with(
            "Central Management store failover 3 from pool1 to pool2 (Disaster): Completed"
        ));
        assert_eq!(log.lines().count(), 8);
    }
}
