//! Digest nonces that a captured `Authorization` header cannot reuse.
//!
//! A nonce is `hex(issued_ms)hex(sequence):mac`, the sequence making every nonce of a
//! process unique (two clients challenged in the same millisecond must not share one, or
//! the second's first count would look like a replay), the MAC (SHA-256 of a key every
//! server of the deployment shares) covering them and the server the nonce is *bound to*: only
//! that server accepts it, so a header captured on its way to one Front End is not good at
//! another Front End that has never seen the nonce's counts.
//!
//! The server that issued a nonce remembers, per nonce, the highest `nc` (nonce count,
//! RFC 7616 §3.4) a verified request carried: a request with the same or a lower count is
//! a replay. That memory is bounded ([`NonceCounts`]): when it is full the oldest entry is
//! dropped and every nonce issued no later than the dropped one is refused from then on as
//! stale, so forgetting never reopens a replay; a client answering a stale nonce is
//! challenged again with `stale=true` and retries without asking its user anything.
//!
//! Written after a captured REGISTER header, sent again with another Contact, Call-ID and
//! CSeq, got 200 for the nonce's five-minute life.

use std::collections::VecDeque;

use crate::hashed::{ByHash, HashedKeys};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::hex::{ct_eq_ignore_case, write_hex};
use std::fmt::Write as _;

/// How far in the future a nonce's timestamp may be (clock skew between servers).
const FUTURE_SKEW_MS: u64 = 5_000;

/// The key that signs nonces.
#[derive(Clone)]
pub struct NonceKey([u8; 32]);

impl fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NonceKey(<redacted>)")
    }
}

/// What a nonce is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Signed by this key for this server, issued at `issued_ms`, not expired.
    Valid { issued_ms: u64 },
    /// Authentic but too old (or from the future): challenge again, with `stale=true`
    /// when the digest was right.
    Stale,
    /// Forged, garbled, or issued for another server.
    Invalid,
}

impl NonceKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        NonceKey(bytes)
    }

    /// The MAC of a nonce's stamp, as 32 lowercase hex digits (on the stack: a nonce is
    /// issued at every challenge and checked at every authenticated request).
    fn mac(&self, timestamp_hex: &str, bound_to: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.0);
        h.update(b":");
        h.update(timestamp_hex.as_bytes());
        h.update(b":");
        // The server's name in lowercase, a piece at a time.
        let mut lower = [0u8; 64];
        for piece in bound_to.as_bytes().chunks(lower.len()) {
            let lower = &mut lower[..piece.len()];
            lower.copy_from_slice(piece);
            lower.make_ascii_lowercase();
            h.update(&*lower);
        }
        h.update(b":");
        h.update(self.0);
        let mut hex = [0u8; 32];
        write_hex(&h.finalize()[..16], &mut hex);
        hex
    }

    /// A nonce issued at `now_ms` that only `bound_to` (the issuing server) accepts; no
    /// two of a process are the same.
    pub fn issue(&self, now_ms: u64, bound_to: &str) -> String {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let mut nonce = String::with_capacity(65);
        let _ = write!(nonce, "{now_ms:016x}{sequence:016x}");
        let mac = self.mac(&nonce, bound_to);
        nonce.push(':');
        // Hex digits: ASCII.
        nonce.push_str(std::str::from_utf8(&mac).unwrap_or_default());
        nonce
    }

    /// Stale when authentic but older than `max_age_ms` or from the future by more than
    /// 5 s; Invalid when forged, garbled or bound to another server.
    pub fn check(&self, nonce: &str, bound_to: &str, now_ms: u64, max_age_ms: u64) -> NonceCheck {
        let lower_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let Some((stamp, mac)) = nonce.split_once(':') else {
            return NonceCheck::Invalid;
        };
        if stamp.len() != 32 || mac.len() != 32 || !lower_hex(stamp) || !lower_hex(mac) {
            return NonceCheck::Invalid;
        }
        let expected = self.mac(stamp, bound_to);
        if !ct_eq_ignore_case(mac, std::str::from_utf8(&expected).unwrap_or_default()) {
            return NonceCheck::Invalid;
        }
        let Ok(issued) = u64::from_str_radix(&stamp[..16], 16) else {
            return NonceCheck::Invalid;
        };
        if issued > now_ms.saturating_add(FUTURE_SKEW_MS)
            || now_ms.saturating_sub(issued) > max_age_ms
        {
            return NonceCheck::Stale;
        }
        NonceCheck::Valid { issued_ms: issued }
    }
}

/// Whether a verified request's nonce count may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceUse {
    /// A count higher than any this nonce carried before: accept.
    Fresh,
    /// The same or a lower count, or a nonce this memory can no longer vouch for:
    /// challenge again with `stale=true`.
    Replayed,
}

/// The highest nonce count each nonce carried, for at most `cap` nonces.
///
/// Nonces are kept by their hashes ([`crate::hashed`]); two nonces sharing one would at
/// worst make the second's first use look like a replay, which the client answers by
/// signing in again with a fresh nonce.
#[derive(Debug)]
pub struct NonceCounts {
    cap: usize,
    max_age_ms: u64,
    keys: HashedKeys,
    counts: ByHash<(u64, u32)>,
    /// Nonces (their hashes) in the order of their first use, with their issue time.
    order: VecDeque<(u64, u64)>,
    /// Nonces issued at or before this were forgotten while still valid.
    floor_ms: Option<u64>,
}

impl NonceCounts {
    /// A memory of at most `cap` nonces, each kept until `max_age_ms` after it was issued.
    pub fn new(cap: usize, max_age_ms: u64) -> NonceCounts {
        NonceCounts {
            cap: cap.max(1),
            max_age_ms,
            keys: HashedKeys::default(),
            counts: ByHash::default(),
            order: VecDeque::new(),
            floor_ms: None,
        }
    }

    /// Nonces remembered now.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Records that a request whose digest verified used `nonce` (issued at `issued_ms`)
    /// with count `nc`, and says whether that is a first use of the count.
    pub fn admit(&mut self, nonce: &str, issued_ms: u64, nc: u32, now_ms: u64) -> NonceUse {
        self.forget_expired(now_ms);
        let nonce = self.keys.of(nonce);
        if let Some((_, last)) = self.counts.get_mut(&nonce) {
            if nc <= *last {
                return NonceUse::Replayed;
            }
            *last = nc;
            return NonceUse::Fresh;
        }
        if self.floor_ms.is_some_and(|floor| issued_ms <= floor) {
            return NonceUse::Replayed;
        }
        while self.counts.len() >= self.cap {
            let Some((issued, oldest)) = self.order.pop_front() else {
                break;
            };
            if self.counts.remove(&oldest).is_some() {
                self.floor_ms = Some(self.floor_ms.map_or(issued, |f| f.max(issued)));
            }
        }
        if self.floor_ms.is_some_and(|floor| issued_ms <= floor) {
            return NonceUse::Replayed;
        }
        self.counts.insert(nonce, (issued_ms, nc));
        self.order.push_back((issued_ms, nonce));
        NonceUse::Fresh
    }

    /// Drops nonces (from the front of the use order) that have expired anyway.
    fn forget_expired(&mut self, now_ms: u64) {
        while let Some((issued, _)) = self.order.front() {
            if now_ms.saturating_sub(*issued) <= self.max_age_ms + FUTURE_SKEW_MS {
                break;
            }
            if let Some((_, nonce)) = self.order.pop_front() {
                self.counts.remove(&nonce);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_bound_to_their_server_and_expire() {
        let key = NonceKey::new([7; 32]);
        let other = NonceKey::new([8; 32]);
        let n = key.issue(1_000_000, "fe1.contoso.com");
        let valid = NonceCheck::Valid {
            issued_ms: 1_000_000,
        };
        assert_eq!(key.check(&n, "fe1.contoso.com", 1_000_000, 30_000), valid);
        assert_eq!(key.check(&n, "FE1.contoso.com", 1_030_000, 30_000), valid);
        assert_eq!(
            key.check(&n, "fe1.contoso.com", 1_030_001, 30_000),
            NonceCheck::Stale
        );
        assert_eq!(key.check(&n, "fe1.contoso.com", 995_000, 30_000), valid);
        assert_eq!(
            key.check(&n, "fe1.contoso.com", 994_999, 30_000),
            NonceCheck::Stale
        );
        assert_eq!(
            key.check(&n, "fe2.contoso.com", 1_000_000, 30_000),
            NonceCheck::Invalid,
            "another server does not accept it"
        );
        assert_eq!(
            other.check(&n, "fe1.contoso.com", 1_000_000, 30_000),
            NonceCheck::Invalid
        );
        assert_eq!(key.check("", "fe1", 0, 1), NonceCheck::Invalid);
        assert_eq!(
            key.check(
                &n.to_ascii_uppercase(),
                "fe1.contoso.com",
                1_000_000,
                30_000
            ),
            NonceCheck::Invalid
        );
        assert_eq!(format!("{key:?}"), "NonceKey(<redacted>)");
        let again = key.issue(1_000_000, "fe1.contoso.com");
        assert_ne!(n, again, "two nonces of one millisecond differ");
        assert_eq!(
            key.check(&again, "fe1.contoso.com", 1_000_000, 30_000),
            valid
        );
    }

    #[test]
    fn the_mac_is_the_sha256_of_the_key_stamp_and_lowercase_server_name() {
        let key = NonceKey::new([7; 32]);
        // Longer than the piece the name is lowercased in, and in two cases.
        let name = format!("{}.Pool1.Contoso.COM", "Fe".repeat(40));
        let stamp = "0123456789abcdef0123456789abcdef";
        let mut expected = Sha256::new();
        expected.update([7; 32]);
        expected.update(format!(":{stamp}:{}:", name.to_ascii_lowercase()));
        expected.update([7; 32]);
        let expected = crate::hex::to_hex(&expected.finalize()[..16]);
        assert_eq!(key.mac(stamp, &name), expected.as_bytes());
        let nonce = key.issue(1_000, &name);
        assert_eq!(
            key.check(&nonce, &name.to_ascii_uppercase(), 1_000, 30_000),
            NonceCheck::Valid { issued_ms: 1_000 }
        );
        assert_eq!(nonce.len(), 65);
    }

    #[test]
    fn a_count_is_used_once_and_only_upwards() {
        let mut counts = NonceCounts::new(10, 60_000);
        assert_eq!(counts.admit("a", 0, 1, 0), NonceUse::Fresh);
        assert_eq!(counts.admit("a", 0, 1, 1), NonceUse::Replayed);
        assert_eq!(counts.admit("a", 0, 3, 2), NonceUse::Fresh);
        assert_eq!(counts.admit("a", 0, 2, 3), NonceUse::Replayed);
        assert_eq!(counts.admit("b", 0, 1, 3), NonceUse::Fresh);
    }

    #[test]
    fn a_full_memory_forgets_the_oldest_and_refuses_what_it_can_no_longer_vouch_for() {
        let mut counts = NonceCounts::new(3, 60_000);
        for (i, n) in ["a", "b", "c"].iter().enumerate() {
            assert_eq!(counts.admit(n, i as u64, 1, 10), NonceUse::Fresh);
        }
        // A fourth pushes "a" (issued at 0) out: "a" and anything issued by 0 is refused.
        assert_eq!(counts.admit("d", 5, 1, 10), NonceUse::Fresh);
        assert_eq!(counts.len(), 3);
        assert_eq!(counts.admit("a", 0, 2, 11), NonceUse::Replayed);
        assert_eq!(counts.admit("z", 0, 1, 11), NonceUse::Replayed);
        // Still remembered ones go on; a newer nonce is fine.
        assert_eq!(counts.admit("c", 2, 2, 12), NonceUse::Fresh);
        assert_eq!(counts.admit("e", 6, 1, 12), NonceUse::Fresh);
        assert_eq!(counts.len(), 3, "bounded however many are used");
        // A flood of verified uses never grows it.
        for i in 0..10_000u64 {
            counts.admit(&format!("n{i}"), 100 + i, 1, 200);
        }
        assert_eq!(counts.len(), 3);
    }

    #[test]
    fn expired_nonces_are_forgotten_without_raising_the_floor() {
        let mut counts = NonceCounts::new(2, 1_000);
        assert_eq!(counts.admit("a", 0, 1, 0), NonceUse::Fresh);
        assert_eq!(counts.admit("b", 10_000, 1, 10_000), NonceUse::Fresh);
        assert_eq!(counts.len(), 1, "a expired and went");
        assert_eq!(counts.admit("c", 9_999, 1, 10_000), NonceUse::Fresh);
    }
}
