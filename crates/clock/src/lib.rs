//! Time as an input.
//!
//! Code that waits, expires or times out (leases, failure detection, nonce age, backoff,
//! the steps of a durable operation) reads a [`Clock`] it was given instead of the
//! system's. A clock reads wall-clock milliseconds — the unit records, leases and logs
//! share between servers — as an origin plus tokio's monotonic clock; under tokio's
//! paused time (`#[tokio::test(start_paused = true)]`, `tokio::time::advance`) a test
//! moves every clock it made, and the sleeps and timeouts that go with them, by hand:
//! a 40-second lease story runs in microseconds and the same way every time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A wall clock that moves with tokio's clock; cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin_ms: i64,
    origin: tokio::time::Instant,
}

impl Clock {
    /// The system's time, from now on moving with tokio's clock.
    pub fn system() -> Clock {
        let origin_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis() as i64;
        Clock::starting_at(origin_ms)
    }

    /// A clock that reads `origin_ms` now (tests give a fixed, readable origin).
    pub fn starting_at(origin_ms: i64) -> Clock {
        Clock {
            origin_ms,
            origin: tokio::time::Instant::now(),
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.origin_ms + self.origin.elapsed().as_millis() as i64
    }

    /// The moment `after` from now, for deadlines checked with [`Clock::passed`].
    pub fn deadline(&self, after: Duration) -> tokio::time::Instant {
        tokio::time::Instant::now() + after
    }

    /// Whether `deadline` has come.
    pub fn passed(&self, deadline: tokio::time::Instant) -> bool {
        tokio::time::Instant::now() >= deadline
    }

    /// How long until `deadline` (zero once it has come).
    pub fn remaining(&self, deadline: tokio::time::Instant) -> Duration {
        deadline.saturating_duration_since(tokio::time::Instant::now())
    }

    /// Waits `duration` on this clock.
    pub async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// Waits between tries of something that is not there yet: the one retry policy of
/// tandem. The first wait is `first`, each next one doubles up to `max`, and each is
/// shortened by up to a quarter at random so that many waiters do not move in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    seed: u64,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Backoff {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos() as u64 | 1);
        Backoff {
            next: first,
            max: max.max(first),
            seed,
        }
    }

    /// The polling policy for waiting on another process (a replica to apply a version,
    /// a peer to answer): starts at 20 ms, at most 250 ms apart.
    pub fn polling() -> Backoff {
        Backoff::new(Duration::from_millis(20), Duration::from_millis(250))
    }

    /// The wait before the next try.
    pub fn next_wait(&mut self) -> Duration {
        // xorshift: jitter needs no quality, only to differ between waiters.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        let quarter = wait.as_micros() as u64 / 4;
        let cut = if quarter == 0 { 0 } else { self.seed % quarter };
        wait - Duration::from_micros(cut)
    }

    /// Sleeps the next wait on `clock`.
    pub async fn wait(&mut self, clock: &Clock) {
        clock.sleep(self.next_wait()).await;
    }
}

/// A unix-milliseconds timestamp as an ISO 8601 UTC date and time, as the status cmdlets
/// print their `DateTime` fields. Zero (never) prints as an empty string.
pub fn format_timestamp(ms: i64) -> String {
    if ms <= 0 {
        return String::new();
    }
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_clock_moves_with_paused_time_only() {
        let clock = Clock::starting_at(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        let deadline = clock.deadline(Duration::from_secs(3));
        tokio::time::advance(Duration::from_millis(2_500)).await;
        assert_eq!(clock.now_ms(), 3_500);
        assert!(!clock.passed(deadline));
        clock.sleep(Duration::from_millis(500)).await;
        assert!(clock.passed(deadline));
        assert_eq!(clock.now_ms(), 4_000);
    }

    #[test]
    fn backoff_doubles_to_its_bound_with_jitter_below_each_wait() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let waits: Vec<_> = (0..6).map(|_| b.next_wait()).collect();
        for (wait, nominal) in waits.iter().zip([100u64, 200, 400, 800, 800, 800]) {
            let nominal = Duration::from_millis(nominal);
            assert!(*wait <= nominal && *wait >= nominal * 3 / 4, "{wait:?}");
        }
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_timestamp(0), "");
        assert_eq!(format_timestamp(1), "1970-01-01T00:00:00.001Z");
        assert_eq!(
            format_timestamp(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            format_timestamp(1_795_435_200_500),
            "2026-11-23T12:00:00.500Z"
        );
    }
}
