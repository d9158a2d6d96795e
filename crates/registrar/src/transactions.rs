//! UDP server transactions: what a retransmitted request gets instead of being run twice.
//!
//! RFC 3261 §17.2.2: a non-INVITE server transaction over an unreliable transport answers a
//! retransmission with the response it sent, for 64·T1 after. A Front End under sign-in
//! load answers tens of thousands of authenticated REGISTERs a second, so what it keeps for
//! them is kept for the hot path's sake as well as for the client's: the answers lie one
//! after another in one ring of bytes ([`AnswerRing`]), written in the order they are sent,
//! instead of one allocation each freed — cold, often by the other reader thread — a few
//! seconds later; the table of what arrived holds only where each answer is.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sip::hashed::{ByHash, HashedKeys};
use sip::message::Request;

/// How long answered UDP transactions are remembered for retransmissions (64·T1).
pub(crate) const TRANSACTION_MEMORY: Duration = Duration::from_secs(32);

/// UDP transactions remembered at most. At the sign-in rates of a Front End (a few hundred
/// a second) that is the whole [`TRANSACTION_MEMORY`]; past 2,000 authenticated REGISTERs a
/// second, or under a flood, the oldest go first: the memory stays bounded instead of
/// growing with the rate (at 20,000 a second, 32 s of answers were 300 MiB, and every
/// request paid in cache misses for walking them). A retransmission of a forgotten
/// transaction is handled again: its nonce count was used, so it is challenged with
/// `stale=true`, and the client signs in with a fresh nonce — one more round trip for a
/// client whose answer was lost, never a second effect.
pub(crate) const TRANSACTIONS: usize = 65_536;

/// The bytes of answers kept at most: 512 bytes for each of [`TRANSACTIONS`] (a sign-in's
/// 200 is about 450). When answers are longer, the ring holds fewer of them and the oldest
/// are forgotten first, as when the table is full.
pub(crate) const ANSWER_BYTES: usize = TRANSACTIONS * 512;

/// The longest datagram, and so the longest answer a ring must hold whole.
const LONGEST_ANSWER: usize = 65_535;

/// What a registrar should do with a request it received over UDP.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// New: handle it.
    New,
    /// Being handled: drop the retransmission.
    InProgress,
    /// Answered: send this again.
    Answered(Vec<u8>),
}

/// UDP server transactions: their answers (once there is one) by key, remembered for
/// [`TRANSACTION_MEMORY`] after the request first arrived (and [`TRANSACTIONS`] at most,
/// [`ANSWER_BYTES`] of answers at most) so that a retransmission gets the same answer.
/// Forgetting is in arrival order, so each request costs O(1) however many transactions a
/// busy registrar remembers.
///
/// A transaction is known by the hash of what identifies it ([`sip::hashed`]).
#[derive(Debug)]
pub(crate) struct TransactionTable {
    keys: HashedKeys,
    /// Where each remembered transaction's answer is in `answers`; None until answered.
    known: ByHash<Option<Span>>,
    arrivals: VecDeque<(Instant, u64)>,
    answers: AnswerRing,
    cap: usize,
}

impl Default for TransactionTable {
    fn default() -> Self {
        TransactionTable::with_caps(TRANSACTIONS, ANSWER_BYTES)
    }
}

impl TransactionTable {
    /// The key of `request`'s transaction from `peer` (RFC 3261 §17.2.3: the top Via's
    /// branch, with the source and the method and CSeq that a branch is reused across).
    pub(crate) fn key(&self, request: &Request, peer: SocketAddr) -> u64 {
        self.keys.of((
            peer,
            request.top_via_branch().unwrap_or(""),
            request.method.as_str(),
            request.headers.get("CSeq").unwrap_or(""),
        ))
    }

    /// A table of `cap` transactions and `bytes` of answers at most.
    fn with_caps(cap: usize, bytes: usize) -> Self {
        TransactionTable {
            keys: HashedKeys::default(),
            known: ByHash::default(),
            arrivals: VecDeque::new(),
            answers: AnswerRing::new(bytes),
            cap: cap.max(1),
        }
    }

    /// Forgets the transaction that arrived first.
    fn forget_oldest(&mut self) {
        if let Some((_, key)) = self.arrivals.pop_front() {
            self.known.remove(&key);
        }
    }

    /// Forgets what arrived [`TRANSACTION_MEMORY`] before `now`.
    fn forget_before(&mut self, now: Instant) {
        while let Some((at, _)) = self.arrivals.front() {
            if now.duration_since(*at) < TRANSACTION_MEMORY {
                break;
            }
            self.forget_oldest();
        }
    }

    /// Records the arrival of `key` and says what to do with it.
    pub(crate) fn arrive(&mut self, key: u64, now: Instant) -> Seen {
        self.forget_before(now);
        if let Some(known) = self.known.get_mut(&key) {
            let Some(span) = *known else {
                return Seen::InProgress;
            };
            if let Some(answer) = self.answers.get(span) {
                return Seen::Answered(answer.to_vec());
            }
            // Its answer was written over by newer ones: handled again, as if forgotten
            // (it keeps its place in the arrivals, and is forgotten from there).
            *known = None;
            return Seen::New;
        }
        // A new transaction takes the place of the oldest when the table is full.
        while self.arrivals.len() >= self.cap {
            self.forget_oldest();
        }
        self.known.insert(key, None);
        self.arrivals.push_back((now, key));
        Seen::New
    }

    /// Keeps the answer to `key` for retransmissions (unless it was already forgotten).
    pub(crate) fn answer(&mut self, key: u64, bytes: &[u8]) {
        if let Some(slot) = self.known.get_mut(&key) {
            *slot = Some(self.answers.keep(bytes));
        }
    }
}

/// Where an answer lies in an [`AnswerRing`]: its first byte's position among all the
/// bytes the ring was ever given, and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    at: u64,
    len: u32,
}

/// Answers one after another in a fixed number of bytes, the newest written over the
/// oldest. The bytes are reserved at once and never move (the system gives a page when it
/// is first written, so a quiet registrar holds little); an answer never wraps around the
/// end (the rest of the lap is skipped), so each is one slice.
#[derive(Debug)]
struct AnswerRing {
    bytes: Vec<u8>,
    capacity: usize,
    /// Where the next answer goes, counted over every lap.
    head: u64,
}

impl AnswerRing {
    /// A ring of `capacity` bytes (at least the longest answer).
    fn new(capacity: usize) -> Self {
        let capacity = capacity.max(LONGEST_ANSWER);
        AnswerRing {
            bytes: Vec::with_capacity(capacity),
            capacity,
            head: 0,
        }
    }

    /// Where `position` lies in the bytes.
    fn offset(&self, position: u64) -> usize {
        (position % self.capacity as u64) as usize
    }

    /// Writes `answer` (at most [`LONGEST_ANSWER`] bytes; longer ones are cut there, as no
    /// datagram carries more) over the oldest bytes.
    fn keep(&mut self, answer: &[u8]) -> Span {
        let answer = &answer[..answer.len().min(LONGEST_ANSWER)];
        let mut start = self.offset(self.head);
        if start + answer.len() > self.capacity {
            // Not enough left in this lap: the next answer starts the next one.
            self.head += (self.capacity - start) as u64;
            start = 0;
        }
        let end = start + answer.len();
        if self.bytes.len() < end {
            // The first lap: within what was reserved, so nothing moves.
            self.bytes.resize(end, 0);
        }
        self.bytes[start..end].copy_from_slice(answer);
        let span = Span {
            at: self.head,
            len: answer.len() as u32,
        };
        self.head += answer.len() as u64;
        span
    }

    /// The answer at `span`, unless newer ones were written over it.
    fn get(&self, span: Span) -> Option<&[u8]> {
        if self.head - span.at > self.capacity as u64 {
            return None;
        }
        let start = self.offset(span.at);
        self.bytes.get(start..start + span.len as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn retransmissions_get_the_same_answer_until_forgotten() {
        let mut table = TransactionTable::default();
        let (a, b, c) = (1, 2, 3);
        let t0 = Instant::now();
        assert_eq!(table.arrive(a, t0), Seen::New);
        assert_eq!(table.arrive(a, t0), Seen::InProgress);
        table.answer(a, b"200");
        assert_eq!(table.arrive(a, t0), Seen::Answered(b"200".to_vec()));
        assert_eq!(table.arrive(b, t0 + Duration::from_secs(1)), Seen::New);
        // a is forgotten 32 s after it arrived; b a second later.
        let later = t0 + TRANSACTION_MEMORY;
        assert_eq!(table.arrive(c, later), Seen::New);
        assert_eq!(table.known.len(), 2);
        assert_eq!(table.arrive(a, later), Seen::New);
        // An answer to a forgotten transaction is not kept.
        table.answer(99, b"200");
        assert!(!table.known.contains_key(&99));
    }

    #[test]
    fn a_full_table_forgets_its_oldest_transactions_first() {
        let mut table = TransactionTable::with_caps(2, ANSWER_BYTES);
        let t0 = Instant::now();
        for key in [1, 2] {
            assert_eq!(table.arrive(key, t0), Seen::New);
            table.answer(key, b"200");
        }
        assert_eq!(table.arrive(3, t0), Seen::New);
        assert_eq!(table.known.len(), 2);
        assert_eq!(table.arrive(2, t0), Seen::Answered(b"200".to_vec()));
        // 1 went first: it is new again (and 3, still in progress, stays).
        assert_eq!(table.arrive(1, t0), Seen::New);
        assert_eq!(table.arrive(3, t0), Seen::InProgress);
        assert_eq!(table.arrivals.len(), 2);
    }

    #[test]
    fn an_answer_written_over_is_handled_again_once() {
        // Room for two answers of 30,000 bytes (the ring is never under 65,535).
        let mut table = TransactionTable::with_caps(16, LONGEST_ANSWER);
        let t0 = Instant::now();
        let (first, second, third) = (vec![1; 30_000], vec![2; 30_000], vec![3; 30_000]);
        for (key, answer) in [(1, &first), (2, &second)] {
            assert_eq!(table.arrive(key, t0), Seen::New);
            table.answer(key, answer);
        }
        assert_eq!(table.arrive(1, t0), Seen::Answered(first.clone()));
        assert_eq!(table.arrive(3, t0), Seen::New);
        table.answer(3, &third);
        // The third took the first's bytes; the second's are whole.
        assert_eq!(table.arrive(2, t0), Seen::Answered(second));
        assert_eq!(
            table.arrive(1, t0),
            Seen::New,
            "written over: handled again"
        );
        assert_eq!(table.arrive(1, t0), Seen::InProgress);
        table.answer(1, &first);
        assert_eq!(table.arrive(1, t0), Seen::Answered(first));
        assert_eq!(table.arrive(3, t0), Seen::Answered(third));
        assert_eq!(
            table.arrive(2, t0),
            Seen::New,
            "the first's new answer took its bytes"
        );
    }

    proptest! {
        /// Whatever the answers' lengths, the ring gives back each answer as it was while
        /// no more than its capacity was written after it, and nothing after that.
        #[test]
        fn a_ring_gives_back_what_was_written_until_written_over(
            lengths in prop::collection::vec(0usize..3_000, 1..200),
            capacity in 65_535usize..80_000,
        ) {
            let mut ring = AnswerRing::new(capacity);
            let mut kept: Vec<(Span, Vec<u8>)> = Vec::new();
            for (i, len) in lengths.into_iter().enumerate() {
                let answer: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
                kept.push((ring.keep(&answer), answer));
                for (span, answer) in &kept {
                    let since = ring.head - span.at;
                    match ring.get(*span) {
                        Some(bytes) => {
                            prop_assert!(since <= capacity as u64);
                            prop_assert_eq!(bytes, &answer[..]);
                        }
                        None => prop_assert!(since > capacity as u64),
                    }
                }
            }
        }
    }
}
