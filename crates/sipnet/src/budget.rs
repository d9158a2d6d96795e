//! How many datagrams one source address may have read per second, decided before they
//! are parsed: a flood from one address costs a hash lookup a datagram, not a parse, so the
//! receiving loop keeps up and other senders' datagrams are not lost behind it.

use std::collections::HashMap;
use std::net::IpAddr;

use tokio::time::Instant;

/// Datagrams per second one source may have parsed, sustained.
pub const PER_SOURCE_RATE: f64 = 5_000.0;
/// Datagrams one source may send at once after a quiet while.
pub const PER_SOURCE_BURST: f64 = 5_000.0;
/// Sources tracked at once; past it, sources whose budget is full again are forgotten,
/// and a new source is let through untracked rather than refused.
pub const MAX_SOURCES: usize = 8_192;

/// A token bucket per source address.
#[derive(Debug)]
pub struct SourceBudget {
    rate: f64,
    burst: f64,
    buckets: HashMap<IpAddr, (f64, Instant)>,
    cap: usize,
}

impl Default for SourceBudget {
    fn default() -> Self {
        SourceBudget::new(PER_SOURCE_RATE, PER_SOURCE_BURST, MAX_SOURCES)
    }
}

impl SourceBudget {
    pub fn new(rate: f64, burst: f64, cap: usize) -> SourceBudget {
        SourceBudget {
            rate,
            burst,
            buckets: HashMap::new(),
            cap: cap.max(1),
        }
    }

    /// Whether one more datagram from `source` may be read at `now`.
    pub fn take(&mut self, source: IpAddr, now: Instant) -> bool {
        let (rate, burst) = (self.rate, self.burst);
        let refill = |tokens: f64, since: Instant| {
            (tokens + now.saturating_duration_since(since).as_secs_f64() * rate).min(burst)
        };
        if !self.buckets.contains_key(&source) && self.buckets.len() >= self.cap {
            self.buckets
                .retain(|_, (tokens, since)| refill(*tokens, *since) < burst);
            if self.buckets.len() >= self.cap {
                return true;
            }
        }
        let (tokens, since) = self.buckets.entry(source).or_insert((burst, now));
        *tokens = refill(*tokens, *since);
        *since = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_source_gets_its_rate_and_the_others_theirs() {
        let mut b = SourceBudget::new(100.0, 10.0, 16);
        let flood: IpAddr = "127.0.0.99".parse().unwrap();
        let user: IpAddr = "127.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        // A burst of 10, then nothing until time passes.
        let first = (0..1_000).filter(|_| b.take(flood, t0)).count();
        assert_eq!(first, 10);
        assert!(b.take(user, t0), "another source is untouched");
        // One second of flooding at 1,000 a ms: about 100 more get through.
        let mut passed = 0;
        for ms in 1..=1_000u64 {
            let now = t0 + Duration::from_millis(ms);
            passed += (0..1_000).filter(|_| b.take(flood, now)).count();
        }
        assert!((99..=101).contains(&passed), "{passed}");
    }

    #[test]
    fn memory_is_bounded_and_a_new_source_is_never_refused_for_lack_of_room() {
        let mut b = SourceBudget::new(1.0, 1.0, 4);
        let t0 = Instant::now();
        for i in 0..100u8 {
            let ip = IpAddr::from([10, 0, 0, i]);
            assert!(b.take(ip, t0));
        }
        assert!(b.buckets.len() <= 4);
    }
}
