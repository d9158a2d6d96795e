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
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Resiliency => "resiliency",
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

/// Decides how `this_pool` treats a user homed on `home_pool`, given whether this pool
/// currently considers its partner down (see [`PartnerWatch`]).
pub fn decide(
    topology: &Topology,
    this_pool: &str,
    home_pool: &str,
    partner_down: bool,
) -> Decision {
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
            decide(&t, "pool1.contoso.com", "pool1.contoso.com", true),
            Decision::Serve(Mode::Full)
        );
        assert_eq!(
            decide(&t, "pool2.contoso.com", "pool1.contoso.com", false),
            Decision::Redirect {
                pool: "pool1.contoso.com".into()
            }
        );
        assert_eq!(
            decide(&t, "pool2.contoso.com", "pool1.contoso.com", true),
            Decision::Serve(Mode::Resiliency)
        );
    }

    #[test]
    fn only_the_partner_takes_over() {
        let mut t = crate::contoso();
        t.front_end_pools[1].backup_pool = None;
        assert!(matches!(
            decide(&t, "pool2.contoso.com", "pool1.contoso.com", true),
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
