//! Which pool serves a user, and in which mode: the decision every registrar and every
//! user-services endpoint makes on each request.
//!
//! Kept free of I/O so that the rules — home pool in full mode, backup pool in resiliency
//! mode once the home pool has been unreachable for the failure detection interval, home
//! again once it has been reachable for the failback detection interval — are tested
//! exhaustively here rather than through sockets.

use crate::Topology;

/// How a pool serves a user it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every service, stored data included.
    Full,
    /// Served by the backup pool before any failover: sign-in and messaging only, no
    /// stored data and no persistent change.
    Resiliency,
    /// A failover or failback of the user's pool is running: sign-in, messaging and
    /// reading stored data work, changes are refused until the users have moved.
    ReadOnly,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Resiliency => "resiliency",
            Mode::ReadOnly => "read-only",
        }
    }
}

/// What a pool does with a user's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Serve(Mode),
    /// Another pool serves the user: send the client there.
    Redirect {
        pool: String,
    },
}

/// The home pool's failover state, as far as serving is concerned (the full state is the
/// `dr` crate's `PoolState`, held in the CMS).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Failover {
    /// Not failed over.
    #[default]
    None,
    /// A failover is running: the home pool still serves, read-only.
    FailingOver,
    /// `pool` serves the users: in full mode, or read-only while they fail back.
    ServedBy { pool: String, read_only: bool },
}

/// Decides how `this_pool` treats a user homed on `home_pool`, given the home pool's
/// failover state and whether this pool currently considers its partner down (see
/// [`PartnerWatch`]). A failover overrides resiliency: once the users are failed over,
/// the backup pool serves them in full mode whatever the probes say.
pub fn decide(
    topology: &Topology,
    this_pool: &str,
    home_pool: &str,
    partner_down: bool,
    failover: &Failover,
) -> Decision {
    match failover {
        Failover::ServedBy { pool, read_only } => {
            return if this_pool.eq_ignore_ascii_case(pool) {
                Decision::Serve(if *read_only {
                    Mode::ReadOnly
                } else {
                    Mode::Full
                })
            } else {
                Decision::Redirect { pool: pool.clone() }
            };
        }
        Failover::FailingOver if this_pool.eq_ignore_ascii_case(home_pool) => {
            return Decision::Serve(Mode::ReadOnly);
        }
        Failover::FailingOver | Failover::None => {}
    }
    if this_pool.eq_ignore_ascii_case(home_pool) {
        return Decision::Serve(Mode::Full);
    }
    match topology.backup_pool_of(this_pool) {
        Some(partner) if partner.eq_ignore_ascii_case(home_pool) && partner_down => {
            Decision::Serve(Mode::Resiliency)
        }
        _ => Decision::Redirect {
            pool: home_pool.to_string(),
        },
    }
}

/// A pool's view of its partner's health, from periodic probes.
///
/// Starts as "up, last heard now", so a pool that starts alone waits a whole failure
/// detection interval before taking its partner's users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerWatch {
    down: bool,
    last_ok_ms: u64,
    up_since_ms: Option<u64>,
}

impl PartnerWatch {
    pub fn new(now_ms: u64) -> PartnerWatch {
        PartnerWatch {
            down: false,
            last_ok_ms: now_ms,
            up_since_ms: None,
        }
    }

    /// Whether the partner is considered down: its users are served here in resiliency mode.
    pub fn is_down(&self) -> bool {
        self.down
    }

    /// Records one probe. Returns true when the verdict changed.
    pub fn observe(&mut self, ok: bool, now_ms: u64, failure_ms: u64, failback_ms: u64) -> bool {
        let was = self.down;
        if !self.down {
            if ok {
                self.last_ok_ms = now_ms;
            } else if now_ms.saturating_sub(self.last_ok_ms) >= failure_ms {
                self.down = true;
                self.up_since_ms = None;
            }
        } else if ok {
            let since = *self.up_since_ms.get_or_insert(now_ms);
            if now_ms.saturating_sub(since) >= failback_ms {
                self.down = false;
                self.last_ok_ms = now_ms;
                self.up_since_ms = None;
            }
        } else {
            self.up_since_ms = None;
        }
        was != self.down
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_pool_serves_in_full_mode_and_others_redirect() {
        let t = crate::contoso();
        assert_eq!(
            decide(
                &t,
                "pool1.contoso.com",
                "pool1.contoso.com",
                true,
                &Failover::None
            ),
            Decision::Serve(Mode::Full)
        );
        assert_eq!(
            decide(
                &t,
                "pool2.contoso.com",
                "pool1.contoso.com",
                false,
                &Failover::None
            ),
            Decision::Redirect {
                pool: "pool1.contoso.com".into()
            }
        );
        assert_eq!(
            decide(
                &t,
                "pool2.contoso.com",
                "pool1.contoso.com",
                true,
                &Failover::None
            ),
            Decision::Serve(Mode::Resiliency)
        );
    }

    #[test]
    fn a_failover_moves_the_users_whatever_the_probes_say() {
        let t = crate::contoso();
        let (p1, p2) = ("pool1.contoso.com", "pool2.contoso.com");
        let served = |read_only| Failover::ServedBy {
            pool: p2.into(),
            read_only,
        };
        for down in [false, true] {
            assert_eq!(
                decide(&t, p1, p1, down, &Failover::FailingOver),
                Decision::Serve(Mode::ReadOnly)
            );
            assert_eq!(
                decide(&t, p2, p1, down, &served(false)),
                Decision::Serve(Mode::Full)
            );
            assert_eq!(
                decide(&t, p2, p1, down, &served(true)),
                Decision::Serve(Mode::ReadOnly)
            );
            assert_eq!(
                decide(&t, p1, p1, down, &served(false)),
                Decision::Redirect { pool: p2.into() }
            );
        }
        // While the failover runs, the partner behaves as before it.
        assert_eq!(
            decide(&t, p2, p1, true, &Failover::FailingOver),
            Decision::Serve(Mode::Resiliency)
        );
    }

    #[test]
    fn only_the_partner_takes_over() {
        let mut t = crate::contoso();
        t.front_end_pools[1].backup_pool = None;
        assert!(matches!(
            decide(
                &t,
                "pool2.contoso.com",
                "pool1.contoso.com",
                true,
                &Failover::None
            ),
            Decision::Redirect { .. }
        ));
    }

    #[test]
    fn failure_then_failback_after_their_intervals() {
        let mut w = PartnerWatch::new(0);
        assert!(!w.observe(false, 1_000, 5_000, 10_000));
        assert!(!w.is_down());
        assert!(w.observe(false, 5_000, 5_000, 10_000));
        assert!(w.is_down());
        // Flapping back up resets the failback clock.
        assert!(!w.observe(true, 6_000, 5_000, 10_000));
        assert!(!w.observe(false, 7_000, 5_000, 10_000));
        assert!(!w.observe(true, 8_000, 5_000, 10_000));
        assert!(!w.observe(true, 17_999, 5_000, 10_000));
        assert!(w.is_down());
        assert!(w.observe(true, 18_000, 5_000, 10_000));
        assert!(!w.is_down());
        // A successful probe keeps it up.
        assert!(!w.observe(true, 30_000, 5_000, 10_000));
        assert!(!w.observe(false, 34_000, 5_000, 10_000));
        assert!(!w.is_down());
    }
}
