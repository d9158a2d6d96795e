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
//! a replay. That memory is bounded ([`NonceCounts`]): each nonce has one place in it, by
//! its sequence number, and a newer nonce used in that place takes it — the older one is
//! refused from then on as stale, so forgetting never reopens a replay; a client
//! answering a stale nonce is challenged again with `stale=true` and retries without
//! asking its user anything.
//!
//! Written after a captured REGISTER header, sent again with another Contact, Call-ID and
//! CSeq, got 200 for the nonce's five-minute life.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::hex::{ct_eq_ignore_case, write_hex};

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
    /// Signed by this key for this server, issued at `issued_ms` with `sequence`, not
    /// expired.
    Valid { issued_ms: u64, sequence: u64 },
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
        // `hex(issued_ms)hex(sequence)`, 16 digits each, written without the formatting
        // machinery (a nonce a challenge).
        let mut stamp = [0u8; 32];
        write_hex(&now_ms.to_be_bytes(), &mut stamp[..16]);
        write_hex(&sequence.to_be_bytes(), &mut stamp[16..]);
        let mut nonce = String::with_capacity(65);
        nonce.push_str(std::str::from_utf8(&stamp).unwrap_or_default());
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
        let (Ok(issued), Ok(sequence)) = (
            u64::from_str_radix(&stamp[..16], 16),
            u64::from_str_radix(&stamp[16..], 16),
        ) else {
            return NonceCheck::Invalid;
        };
        if issued > now_ms.saturating_add(FUTURE_SKEW_MS)
            || now_ms.saturating_sub(issued) > max_age_ms
        {
            return NonceCheck::Stale;
        }
        NonceCheck::Valid {
            issued_ms: issued,
            sequence,
        }
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

/// The highest nonce count each nonce carried, for the nonces last used in each of a fixed
/// number of places.
///
/// A nonce's place is its sequence number modulo the number of places (the sequence is
/// under the nonce's MAC, so no client picks it): looking a nonce up is reading one slot,
/// with no hash, no map and no list of what to forget, and the memory is allocated once.
/// A place holds the newest nonce used in it — newest by issue time, then sequence, so
/// across a restart too: an older nonce arriving at a place a newer one holds is refused
/// (`Replayed`, answered with `stale=true`), and a place's nonce only ever gets newer, so
/// a nonce once pushed out is never accepted again. Nonces are issued in sequence and
/// answered within moments, so a nonce loses its place only to one issued as many
/// challenges later as there are places. Expiry is the nonce's own ([`NonceKey::check`]).
#[derive(Debug)]
pub struct NonceCounts {
    slots: Box<[Slot]>,
}

/// One place of [`NonceCounts`]: the nonce last used in it and its highest count.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Issue time and sequence; None while the place is unused.
    stamp: Option<(u64, u64)>,
    nc: u32,
}

impl NonceCounts {
    /// A memory of `places` nonces (at least one).
    pub fn new(places: usize) -> NonceCounts {
        NonceCounts {
            slots: vec![Slot::default(); places.max(1)].into_boxed_slice(),
        }
    }

    /// Places holding a nonce.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.stamp.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records that a request whose digest verified used the nonce issued at `issued_ms`
    /// with `sequence` ([`NonceCheck::Valid`]) with count `nc`, and says whether that is a
    /// first use of the count.
    pub fn admit(&mut self, issued_ms: u64, sequence: u64, nc: u32) -> NonceUse {
        let places = self.slots.len() as u64;
        let slot = &mut self.slots[(sequence % places) as usize];
        let stamp = (issued_ms, sequence);
        match slot.stamp.map(|held| held.cmp(&stamp)) {
            Some(std::cmp::Ordering::Equal) if nc <= slot.nc => NonceUse::Replayed,
            Some(std::cmp::Ordering::Equal) => {
                slot.nc = nc;
                NonceUse::Fresh
            }
            // A newer nonce took the place: this one can no longer be vouched for.
            Some(std::cmp::Ordering::Greater) => NonceUse::Replayed,
            Some(std::cmp::Ordering::Less) | None => {
                *slot = Slot {
                    stamp: Some(stamp),
                    nc,
                };
                NonceUse::Fresh
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
        let NonceCheck::Valid { sequence, .. } = key.check(&n, "fe1.contoso.com", 1_000_000, 1)
        else {
            panic!("a nonce just issued is valid");
        };
        let valid = NonceCheck::Valid {
            issued_ms: 1_000_000,
            sequence,
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
        assert!(matches!(
            key.check(&again, "fe1.contoso.com", 1_000_000, 30_000),
            NonceCheck::Valid { issued_ms: 1_000_000, sequence: later } if later > sequence
        ));
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
        assert!(matches!(
            key.check(&nonce, &name.to_ascii_uppercase(), 1_000, 30_000),
            NonceCheck::Valid {
                issued_ms: 1_000,
                ..
            }
        ));
        assert_eq!(nonce.len(), 65);
    }

    #[test]
    fn a_count_is_used_once_and_only_upwards() {
        let mut counts = NonceCounts::new(10);
        assert_eq!(counts.admit(0, 1, 1), NonceUse::Fresh);
        assert_eq!(counts.admit(0, 1, 1), NonceUse::Replayed);
        assert_eq!(counts.admit(0, 1, 3), NonceUse::Fresh);
        assert_eq!(counts.admit(0, 1, 2), NonceUse::Replayed);
        assert_eq!(counts.admit(0, 2, 1), NonceUse::Fresh);
        assert_eq!(counts.len(), 2);
    }

    #[test]
    fn a_newer_nonce_takes_a_place_and_the_older_is_never_accepted_again() {
        let mut counts = NonceCounts::new(3);
        for sequence in 0..3 {
            assert_eq!(counts.admit(10, sequence, 1), NonceUse::Fresh);
        }
        // Sequence 3 takes sequence 0's place: 0 is refused from then on, whatever its
        // count, and so is anything older that would land there.
        assert_eq!(counts.admit(10, 3, 1), NonceUse::Fresh);
        assert_eq!(counts.admit(10, 0, 2), NonceUse::Replayed);
        assert_eq!(counts.admit(9, 6, 1), NonceUse::Replayed, "issued earlier");
        assert_eq!(counts.admit(10, 3, 1), NonceUse::Replayed);
        assert_eq!(counts.admit(10, 3, 2), NonceUse::Fresh);
        // The other places go on; after a restart the sequence starts again, and the
        // issue time keeps the new nonces newer.
        assert_eq!(counts.admit(10, 2, 2), NonceUse::Fresh);
        assert_eq!(counts.admit(20, 0, 1), NonceUse::Fresh);
        assert_eq!(
            counts.admit(10, 3, 3),
            NonceUse::Replayed,
            "pushed out by the restart's 0"
        );
        // A flood of verified uses never grows it.
        for sequence in 100..10_100u64 {
            counts.admit(30, sequence, 1);
        }
        assert_eq!(counts.len(), 3);
        assert_eq!(NonceCounts::new(0).admit(1, 5, 1), NonceUse::Fresh);
    }

    #[test]
    fn a_checked_nonce_gives_its_sequence_and_each_issued_one_its_own() {
        let key = NonceKey::new([9; 32]);
        let sequence_of = |nonce: &str| match key.check(nonce, "fe1", 1_000, 30_000) {
            NonceCheck::Valid { sequence, .. } => sequence,
            other => panic!("{other:?}"),
        };
        let first = sequence_of(&key.issue(1_000, "fe1"));
        let second = sequence_of(&key.issue(1_000, "fe1"));
        assert!(second > first);
    }
}
