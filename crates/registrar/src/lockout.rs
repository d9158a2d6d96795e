//! Failed sign-ins cost time: a lockout per (user, source address) and per source address.
//!
//! Written after 2,000 wrong passwords at 3,700 a second were followed by the right one,
//! accepted. The rules:
//!
//! - A (user, source) pair has [`PAIR_FREE`] failures; each one past them locks the pair for
//!   1 s, 2 s, 4 s... up to [`MAX_LOCK`]. A source address has [`SOURCE_FREE`] failures over
//!   all the users it tries, then the same backoff: one address cannot spray guesses over
//!   many users either.
//! - A request that arrives while locked is refused without looking at its digest, and
//!   counts as a failure (a guesser that keeps going stays locked, never for more than
//!   [`MAX_LOCK`] at a time).
//! - A lockout never reaches beyond the source that earned it: the real user signing in
//!   from another address is not affected, so an attacker cannot use it to lock a user out.
//!   A sign-in that succeeds clears its pair (not its source: an attacker holding one
//!   account could otherwise reset its address between guesses).
//! - Counts are forgotten [`FORGET_AFTER`] after the last failure, and the memory is
//!   bounded ([`MAX_TRACKED`] entries per table, oldest dropped first).
//!
//! Pure logic on milliseconds given by the caller (the node's `clock::Clock`).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;

/// Failures of one (user, source) pair before it is locked.
pub const PAIR_FREE: u32 = 5;
/// Failures from one source address, over all users, before it is locked.
pub const SOURCE_FREE: u32 = 30;
/// The first lock; each further failure doubles it.
pub const FIRST_LOCK_MS: u64 = 1_000;
/// The longest one lock lasts.
pub const MAX_LOCK_MS: u64 = 5 * 60 * 1000;
/// [`MAX_LOCK_MS`] for documentation links.
pub const MAX_LOCK: std::time::Duration = std::time::Duration::from_millis(MAX_LOCK_MS);
/// How long after its last failure an entry is forgotten.
pub const FORGET_AFTER_MS: u64 = 15 * 60 * 1000;
/// [`FORGET_AFTER_MS`] for documentation links.
pub const FORGET_AFTER: std::time::Duration = std::time::Duration::from_millis(FORGET_AFTER_MS);
/// The most entries one table keeps.
pub const MAX_TRACKED: usize = 65_536;

/// Whether a sign-in attempt may be looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Open,
    /// Locked for this long still.
    Locked {
        retry_after_ms: u64,
    },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure_ms: u64,
    locked_until_ms: u64,
    /// Which insertion this is, to tell a stale place in the order from the live one.
    generation: u64,
}

/// Failure counts by key, with a bound.
#[derive(Debug)]
struct Table<K> {
    free: u32,
    entries: HashMap<K, Entry>,
    order: VecDeque<(K, u64)>,
    next_generation: u64,
    cap: usize,
}

impl<K: Clone + Eq + Hash> Table<K> {
    fn new(free: u32, cap: usize) -> Self {
        Table {
            free,
            entries: HashMap::new(),
            order: VecDeque::new(),
            next_generation: 0,
            cap: cap.max(1),
        }
    }

    fn live(&self, key: &K, now_ms: u64) -> Option<&Entry> {
        self.entries
            .get(key)
            .filter(|e| now_ms.saturating_sub(e.last_failure_ms) < FORGET_AFTER_MS)
    }

    fn verdict(&self, key: &K, now_ms: u64) -> Verdict {
        match self.live(key, now_ms) {
            Some(e) if e.locked_until_ms > now_ms => Verdict::Locked {
                retry_after_ms: e.locked_until_ms - now_ms,
            },
            _ => Verdict::Open,
        }
    }

    fn fail(&mut self, key: &K, now_ms: u64) {
        let failures = self.live(key, now_ms).map_or(0, |e| e.failures) + 1;
        let locked_until_ms = if failures > self.free {
            let doublings = (failures - self.free - 1).min(32);
            now_ms
                + FIRST_LOCK_MS
                    .saturating_mul(1 << doublings)
                    .min(MAX_LOCK_MS)
        } else {
            0
        };
        if let Some(e) = self.entries.get_mut(key) {
            e.failures = failures;
            e.last_failure_ms = now_ms;
            e.locked_until_ms = locked_until_ms;
            return;
        }
        while self.entries.len() >= self.cap {
            let Some((old, generation)) = self.order.pop_front() else {
                break;
            };
            if self
                .entries
                .get(&old)
                .is_some_and(|e| e.generation == generation)
            {
                self.entries.remove(&old);
            }
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        self.entries.insert(
            key.clone(),
            Entry {
                failures,
                last_failure_ms: now_ms,
                locked_until_ms,
                generation,
            },
        );
        self.order.push_back((key.clone(), generation));
        // The order also holds places of entries removed by a success: keep it bounded.
        if self.order.len() > self.cap.saturating_mul(2) {
            let entries = &self.entries;
            self.order
                .retain(|(k, g)| entries.get(k).is_some_and(|e| e.generation == *g));
        }
    }

    fn clear(&mut self, key: &K) {
        self.entries.remove(key);
    }
}

/// The lockouts of one registrar.
#[derive(Debug)]
pub struct Lockouts {
    pairs: Table<(String, IpAddr)>,
    sources: Table<IpAddr>,
}

impl Default for Lockouts {
    fn default() -> Self {
        Lockouts::with_cap(MAX_TRACKED)
    }
}

impl Lockouts {
    /// Lockouts keeping at most `cap` entries per table.
    pub fn with_cap(cap: usize) -> Lockouts {
        Lockouts {
            pairs: Table::new(PAIR_FREE, cap),
            sources: Table::new(SOURCE_FREE, cap),
        }
    }

    /// Whether `user` may try to sign in from `source` now; the longer lock wins.
    pub fn verdict(&self, user: &str, source: IpAddr, now_ms: u64) -> Verdict {
        // No failure anywhere (the usual case): no key to build.
        if self.pairs.entries.is_empty() && self.sources.entries.is_empty() {
            return Verdict::Open;
        }
        let pair = self.pairs.verdict(&(user.to_string(), source), now_ms);
        let from = self.sources.verdict(&source, now_ms);
        match (pair, from) {
            (Verdict::Locked { retry_after_ms: a }, Verdict::Locked { retry_after_ms: b }) => {
                Verdict::Locked {
                    retry_after_ms: a.max(b),
                }
            }
            (Verdict::Locked { .. }, _) => pair,
            _ => from,
        }
    }

    /// A wrong password (or an attempt while locked).
    pub fn failed(&mut self, user: &str, source: IpAddr, now_ms: u64) {
        self.pairs.fail(&(user.to_string(), source), now_ms);
        self.sources.fail(&source, now_ms);
    }

    /// A sign-in that succeeded clears its pair.
    pub fn succeeded(&mut self, user: &str, source: IpAddr) {
        if self.pairs.entries.is_empty() {
            return;
        }
        self.pairs.clear(&(user.to_string(), source));
    }

    /// Entries kept now, in both tables.
    pub fn tracked(&self) -> usize {
        self.pairs.entries.len() + self.sources.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ATTACKER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 66));
    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 7));

    fn locked(v: Verdict) -> bool {
        matches!(v, Verdict::Locked { .. })
    }

    #[test]
    fn a_guesser_is_locked_with_backoff_and_the_user_elsewhere_is_not() {
        let mut l = Lockouts::default();
        let mut now = 1_000_000;
        for _ in 0..PAIR_FREE {
            assert_eq!(l.verdict("alice", ATTACKER, now), Verdict::Open);
            l.failed("alice", ATTACKER, now);
        }
        // Each failure past the free ones doubles the lock.
        for lock in [1_000, 2_000] {
            assert_eq!(l.verdict("alice", ATTACKER, now), Verdict::Open);
            l.failed("alice", ATTACKER, now);
            assert_eq!(
                l.verdict("alice", ATTACKER, now),
                Verdict::Locked {
                    retry_after_ms: lock
                }
            );
            now += lock;
        }
        // 2,000 guesses as fast as they come: locked all along, never past the cap.
        for _ in 0..2_000 {
            l.failed("alice", ATTACKER, now);
            now += 1;
        }
        assert_eq!(
            l.verdict("alice", ATTACKER, now),
            Verdict::Locked {
                retry_after_ms: MAX_LOCK_MS - 1
            }
        );
        // Alice from home is not locked.
        assert_eq!(l.verdict("alice", HOME, now), Verdict::Open);
        // The lock ends by itself once the guessing stops.
        now += MAX_LOCK_MS;
        assert_eq!(l.verdict("alice", ATTACKER, now), Verdict::Open);
        // And everything is forgotten a while after the last failure.
        now += FORGET_AFTER_MS;
        l.failed("alice", ATTACKER, now);
        assert_eq!(l.verdict("alice", ATTACKER, now), Verdict::Open);
    }

    #[test]
    fn one_source_spraying_many_users_is_locked_as_a_source() {
        let mut l = Lockouts::default();
        let now = 5_000;
        for i in 0..SOURCE_FREE {
            l.failed(&format!("user{i}"), ATTACKER, now);
        }
        assert_eq!(l.verdict("fresh", ATTACKER, now), Verdict::Open);
        l.failed("another", ATTACKER, now);
        assert!(locked(l.verdict("fresh", ATTACKER, now)));
        assert_eq!(l.verdict("fresh", HOME, now), Verdict::Open);
    }

    #[test]
    fn success_clears_the_pair_but_not_the_source() {
        let mut l = Lockouts::default();
        for _ in 0..PAIR_FREE {
            l.failed("alice", HOME, 0);
        }
        l.succeeded("alice", HOME);
        l.failed("alice", HOME, 0);
        assert_eq!(
            l.verdict("alice", HOME, 0),
            Verdict::Open,
            "counting from 0"
        );
        let mut m = Lockouts::default();
        for i in 0..=SOURCE_FREE {
            m.failed(&format!("u{i}"), ATTACKER, 0);
            m.succeeded("mallory", ATTACKER);
        }
        assert!(locked(m.verdict("mallory", ATTACKER, 0)));
    }

    #[test]
    fn memory_is_bounded() {
        let mut l = Lockouts::with_cap(100);
        for i in 0..10_000u32 {
            let source = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            l.failed(&format!("u{i}"), source, u64::from(i));
            if i % 3 == 0 {
                l.succeeded(&format!("u{i}"), source);
            }
        }
        assert!(l.tracked() <= 200, "{}", l.tracked());
        assert!(l.pairs.order.len() <= 200);
    }
}
