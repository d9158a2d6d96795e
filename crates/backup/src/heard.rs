//! What the partner pool's Backup Service had not shipped here yet, as last heard.
//!
//! A disaster failover cannot ask the lost pool what it never shipped. What it can say is
//! what the partner reported the last time it answered: each Front End asks its partner's
//! Backup Service for its status every [`PERIOD`] and keeps the answer, so that the
//! promotion can report the changes (count, users, time window) that were known to be
//! waiting — a lower bound; anything committed after that moment is counted exactly by the
//! failback once the pool is back.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Module;
use crate::protocol::PoolStatus;

/// How often the partner's backlog is asked for.
pub const PERIOD: Duration = Duration::from_millis(500);

/// The partner's user-data backlog toward this pool, as reported at `at_ms`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeardBacklog {
    pub pool: String,
    /// When the partner answered (unix ms).
    pub at_ms: i64,
    /// Changes it had committed and not shipped.
    pub changes: i64,
    /// Their users (the first 1,000 per module, sorted, without repeats).
    pub users: Vec<String>,
    /// When the oldest of them was committed.
    pub oldest_ms: Option<i64>,
    /// CMS versions the partner (when it hosts the active CMS) had not shipped to the
    /// standby here, and when the oldest was created: what a CMS failover may lose.
    #[serde(default)]
    pub cms_versions: i64,
    #[serde(default)]
    pub cms_oldest_ms: Option<i64>,
    /// The same, per user module, with where the partner's log stood: what a promotion
    /// compares with the copy it actually holds.
    #[serde(default)]
    pub modules: Vec<HeardModule>,
    /// Changes the partner committed per minute over the last [`RATE_WINDOW`] or more of
    /// reports (from the growth of its change log), and the report that window started
    /// from: what a disaster failover uses to say how much may have been committed after
    /// the last report.
    #[serde(default)]
    pub writes_per_min: i64,
    #[serde(default)]
    pub rate_since_ms: i64,
    #[serde(default)]
    pub rate_since_head: i64,
    /// The partner acknowledged its users' writes only once they were here (synchronous
    /// commit, not fallen back) when it answered: what it had not shipped was never
    /// acknowledged.
    #[serde(default)]
    pub synchronous: bool,
}

/// The shortest window a write rate is measured over: reports come every [`PERIOD`], and
/// one period's growth says little.
pub const RATE_WINDOW: Duration = Duration::from_secs(5);

/// One user module of a partner's backlog: its changes after `acked_seq`, up to
/// `head_seq`, were not yet shipped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeardModule {
    pub module: String,
    pub pending: i64,
    pub acked_seq: i64,
    pub head_seq: i64,
    pub users: Vec<String>,
}

/// What a lost partner had certainly not shipped, once the copy's cut is known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownUnshipped {
    /// A lower bound: changes the partner held that the copy does not.
    pub changes: i64,
    /// Users of the modules with changes the copy does not hold.
    pub users: Vec<String>,
    /// True when some module was shipped in part after the report, so that only one of
    /// its changes is counted for sure.
    pub partly: bool,
    /// An upper bound on the same: a module shipped in part holds at most the changes
    /// after what reached the copy, up to where its log stood.
    pub at_most: i64,
}

impl HeardBacklog {
    /// Compares the report with the copy: per module, `cut` is the last change of the
    /// partner the copy holds. A module whose reported changes all reached the copy after
    /// the report counts nothing; one the copy holds none of counts them all; one in
    /// between counts one (the change at its head certainly did not arrive). Without
    /// per-module figures (an older server), the reported total.
    pub fn known_unshipped(&self, cut: &std::collections::BTreeMap<String, i64>) -> KnownUnshipped {
        if self.modules.is_empty() {
            return KnownUnshipped {
                changes: self.changes,
                users: self.users.clone(),
                partly: false,
                at_most: self.changes,
            };
        }
        let mut known = KnownUnshipped::default();
        for m in self.modules.iter().filter(|m| m.pending > 0) {
            let held = cut.get(&m.module).copied().unwrap_or(0);
            if held >= m.head_seq {
                continue;
            }
            if held <= m.acked_seq {
                known.changes += m.pending;
                known.at_most += m.pending;
            } else {
                known.changes += 1;
                known.at_most += m.pending.min(m.head_seq - held);
                known.partly = true;
            }
            known.users.extend(m.users.iter().cloned());
        }
        known.users.sort();
        known.users.dedup();
        known
    }
}

impl HeardBacklog {
    /// Where the partner's change logs stood (the sum of their heads).
    pub fn total_head(&self) -> i64 {
        self.modules.iter().map(|m| m.head_seq).sum()
    }

    /// This report with the partner's write rate, measured from `previous` (the report
    /// before it): the window restarts once it spans [`RATE_WINDOW`], and the last rate
    /// is kept until then. A report of another pool, or a log that went back (a rebuilt
    /// pool), starts over.
    pub fn with_rate(mut self, previous: Option<&HeardBacklog>) -> HeardBacklog {
        let head = self.total_head();
        let Some(prev) = previous
            .filter(|p| p.pool == self.pool && p.rate_since_ms > 0 && head >= p.rate_since_head)
        else {
            self.rate_since_ms = self.at_ms;
            self.rate_since_head = head;
            return self;
        };
        let span = self.at_ms - prev.rate_since_ms;
        let current = if span > 0 {
            (head - prev.rate_since_head) * 60_000 / span
        } else {
            0
        };
        if span >= RATE_WINDOW.as_millis() as i64 {
            self.writes_per_min = current;
            self.rate_since_ms = self.at_ms;
            self.rate_since_head = head;
        } else {
            // Within a window: the higher of the last whole window's rate and this one's
            // so far (once it spans a report period), so a burst that began moments ago
            // is not estimated at the quiet rate before it.
            self.writes_per_min = if span >= PERIOD.as_millis() as i64 {
                prev.writes_per_min.max(current)
            } else {
                prev.writes_per_min
            };
            self.rate_since_ms = prev.rate_since_ms;
            self.rate_since_head = prev.rate_since_head;
        }
        self
    }

    /// About the most changes the partner may have committed between this report and
    /// `until_ms`, at twice its rate when heard (rounded up): an estimate, since a lost
    /// pool cannot be asked, with room for a burst after the report.
    pub fn may_have_committed_by(&self, until_ms: i64) -> i64 {
        let window = (until_ms - self.at_ms).max(0);
        let per_min = self.writes_per_min.max(0);
        (per_min * 2 * window + 60_000 - 1) / 60_000
    }

    /// The user-data part of a partner's status (the CMS standby is not user data).
    pub fn from_status(status: &PoolStatus, at_ms: i64) -> HeardBacklog {
        let user_modules: Vec<&str> = [Module::PresenceFocus, Module::DataConf]
            .iter()
            .map(|m| m.short_name())
            .collect();
        let mut heard = HeardBacklog {
            pool: status.pool.to_ascii_lowercase(),
            at_ms,
            synchronous: status.commit == crate::status::CommitState::Synchronous,
            ..HeardBacklog::default()
        };
        for e in status
            .exports
            .iter()
            .filter(|e| e.applicable && user_modules.contains(&e.module.as_str()))
        {
            heard.changes += e.pending;
            heard.users.extend(e.pending_users.iter().cloned());
            heard.modules.push(HeardModule {
                module: e.module.clone(),
                pending: e.pending,
                acked_seq: e.acked_seq,
                head_seq: e.head_seq,
                users: e.pending_users.clone(),
            });
            heard.oldest_ms = match (heard.oldest_ms, e.oldest_pending_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        heard.users.sort();
        heard.users.dedup();
        if let Some(cms) = status
            .exports
            .iter()
            .find(|e| e.applicable && e.module == Module::CmsMaster.short_name())
        {
            heard.cms_versions = cms.pending;
            heard.cms_oldest_ms = cms.oldest_pending_ms;
        }
        heard
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ExportReport;

    fn export(module: &str, pending: i64, oldest: Option<i64>, users: &[&str]) -> ExportReport {
        ExportReport {
            module: module.into(),
            applicable: true,
            pending,
            oldest_pending_ms: oldest,
            pending_users: users.iter().map(|u| u.to_string()).collect(),
            acked_seq: 0,
            head_seq: pending,
            last_sync_at: None,
            last_error: None,
            resync: false,
            unshippable: Vec::new(),
        }
    }

    #[test]
    fn the_write_rate_is_measured_over_a_window_and_bounds_what_came_after() {
        let report = |at_ms: i64, head: i64| HeardBacklog {
            pool: "pool2".into(),
            at_ms,
            modules: vec![HeardModule {
                module: "PresenceFocus".into(),
                head_seq: head,
                ..HeardModule::default()
            }],
            ..HeardBacklog::default()
        };
        let first = report(1_000, 100).with_rate(None);
        assert_eq!((first.writes_per_min, first.rate_since_ms), (0, 1_000));
        // A quarter second later: too short to say, the rate stays.
        let early = report(1_250, 125).with_rate(Some(&first));
        assert_eq!((early.writes_per_min, early.rate_since_ms), (0, 1_000));
        // Half a second in: the burst so far counts (50 in 0.5 s, 6,000 a minute).
        let second = report(1_500, 150).with_rate(Some(&early));
        assert_eq!(
            (second.writes_per_min, second.rate_since_ms),
            (6_000, 1_000)
        );
        // Six seconds after the window began: 600 changes in 6 s, 6,000 a minute.
        let third = report(7_000, 700).with_rate(Some(&second));
        assert_eq!((third.writes_per_min, third.rate_since_ms), (6_000, 7_000));
        // Lost 2 s after that report: about 200 more changes, 400 with the margin.
        assert_eq!(third.may_have_committed_by(9_000), 400);
        assert_eq!(third.may_have_committed_by(6_000), 0);
        // A log that went back (a rebuilt pool) starts over.
        let rebuilt = report(8_000, 5).with_rate(Some(&third));
        assert_eq!((rebuilt.writes_per_min, rebuilt.rate_since_head), (0, 5));
    }

    #[test]
    fn what_reached_the_copy_after_the_report_is_not_counted_lost() {
        let mut pf = export("PresenceFocus", 3, Some(20), &["sip:b@x"]);
        pf.acked_seq = 10;
        pf.head_seq = 13;
        let mut dc = export("DataConf", 2, Some(10), &["sip:a@x"]);
        dc.acked_seq = 4;
        dc.head_seq = 6;
        let status = PoolStatus {
            pool: "pool2.contoso.com".into(),
            partner: None,
            sync_interval_secs: 120,
            exports: vec![pf, dc],
            imports: vec![],
            at_ms: 1,
            active_exporter: None,
            commit: crate::status::CommitState::default(),
        };
        let heard = HeardBacklog::from_status(&status, 1);
        let cut = |pf: i64, dc: i64| {
            std::collections::BTreeMap::from([
                ("PresenceFocus".to_string(), pf),
                ("DataConf".to_string(), dc),
            ])
        };
        // The copy holds nothing past the report's acknowledgements: all 5 are lost.
        let k = heard.known_unshipped(&cut(10, 4));
        assert_eq!((k.changes, k.partly), (5, false));
        assert_eq!(k.users, vec!["sip:a@x", "sip:b@x"]);
        // Everything reported arrived before the pool was lost: nothing is known lost.
        assert_eq!(
            heard.known_unshipped(&cut(13, 6)),
            KnownUnshipped::default()
        );
        // PresenceFocus arrived in part: one of it is certain; DataConf never arrived
        // (a module the copy never heard of is cut at 0).
        let k = heard.known_unshipped(&std::collections::BTreeMap::from([(
            "PresenceFocus".to_string(),
            12,
        )]));
        assert_eq!((k.changes, k.partly), (3, true));
    }

    #[test]
    fn user_modules_add_up_and_the_cms_standby_counts_apart() {
        let status = PoolStatus {
            pool: "Pool2.contoso.com".into(),
            partner: Some("pool1.contoso.com".into()),
            sync_interval_secs: 120,
            exports: vec![
                export("PresenceFocus", 3, Some(20), &["sip:b@x", "sip:a@x"]),
                export("DataConf", 1, Some(10), &["sip:a@x"]),
                export("CMSMaster", 7, Some(1), &[]),
            ],
            imports: vec![],
            at_ms: 99,
            active_exporter: None,
            commit: crate::status::CommitState::default(),
        };
        let heard = HeardBacklog::from_status(&status, 100);
        assert_eq!(heard.pool, "pool2.contoso.com");
        assert_eq!(heard.changes, 4);
        assert_eq!(heard.users, vec!["sip:a@x", "sip:b@x"]);
        assert_eq!(heard.oldest_ms, Some(10));
        // The CMS standby's backlog is kept apart, for a CMS failover.
        assert_eq!((heard.cms_versions, heard.cms_oldest_ms), (7, Some(1)));
        assert_eq!(heard.at_ms, 100);
    }
}
