//! Histories of the Central Management store: which configuration line a copy is on.
//!
//! A version number alone does not say what a copy holds. Every promotion of a standby and
//! every rebuild (`Move-CsManagementServer`) starts a new *term* that continues an older
//! line from some version on; the old store may have gone on committing versions with the
//! same numbers that the new term never had. So every copy — the active store, the standby,
//! each server's replica — keeps its [`History`]: the terms of its line, each with the
//! version of the line it started after. Terms are numbered above every term known when
//! they start (see `cmstables::next_term_floor`), so one term number names one start.
//!
//! Two histories agree up to the newest term they share, and only up to where the earlier
//! of them left that term ([`fork_point`]). A copy holding versions beyond that point is
//! off the line: it is never promoted, never called up to date, and is rebuilt from the
//! active store; the versions it held beyond the fork are what the term that cut them lost.

use serde::{Deserialize, Serialize};

/// Where a term of a line started: its versions are those after `start` (up to the start
/// of the next term of the line, or the line's newest version).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermStart {
    pub term: i64,
    pub start: i64,
}

/// The terms of one configuration line, oldest first (never empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct History(Vec<TermStart>);

impl Default for History {
    fn default() -> History {
        History::root()
    }
}

impl History {
    /// The line a deployment starts with: term 0 from version 0.
    pub fn root() -> History {
        History(vec![TermStart { term: 0, start: 0 }])
    }

    /// A line from its terms, in any order; a term given twice keeps its lowest start, and
    /// an empty list is the root line.
    pub fn from_terms(terms: impl IntoIterator<Item = TermStart>) -> History {
        let mut terms: Vec<TermStart> = terms.into_iter().collect();
        terms.sort_by_key(|t| (t.term, t.start));
        terms.dedup_by_key(|t| t.term);
        if terms.is_empty() {
            return History::root();
        }
        History(terms)
    }

    /// The history of a copy whose line is only known by its newest term (a replica from
    /// before histories were kept): that term, from its first version.
    pub fn of_term(term: i64) -> History {
        History(vec![TermStart { term, start: 0 }])
    }

    pub fn terms(&self) -> &[TermStart] {
        &self.0
    }

    /// The newest term of the line.
    pub fn last_term(&self) -> i64 {
        self.0.last().map_or(0, |t| t.term)
    }

    /// The line with a new term `term` started after version `start` of it. A term the
    /// line already has is kept as it is. Terms of the line that started at or after
    /// `start` (a copy that was shipped the line's history but not its versions) are not
    /// part of the new line: it left the line before them.
    pub fn begin(&self, term: i64, start: i64) -> History {
        if self.0.iter().any(|t| t.term == term) {
            return self.clone();
        }
        let mut terms: Vec<TermStart> = self
            .0
            .iter()
            .enumerate()
            .filter(|(i, t)| *i == 0 || t.start < start)
            .map(|(_, t)| *t)
            .collect();
        terms.push(TermStart { term, start });
        History::from_terms(terms)
    }

    fn start_of(&self, term: i64) -> Option<i64> {
        self.0.iter().find(|t| t.term == term).map(|t| t.start)
    }

    /// Where the line left `term`: the start of the term after it (`None` while `term` is
    /// the newest, which the line still extends).
    fn end_of(&self, term: i64) -> Option<i64> {
        self.0.iter().find(|t| t.term > term).map(|t| t.start)
    }
}

/// How far two lines agree: every version up to the returned one is the same in both.
///
/// They agree up to the newest term both have, as far as the one that left it first went.
/// Lines with no term in common agree on nothing, except that a line whose first term is
/// newer than every term of the other continues it from that first term's start (a store
/// rebuilt from an export of the older line, which knows no more of it).
pub fn fork_point(a: &History, b: &History) -> i64 {
    let common = a
        .terms()
        .iter()
        .rev()
        .map(|t| t.term)
        .find(|t| b.start_of(*t).is_some());
    match common {
        Some(term) => {
            let ends = [a.end_of(term), b.end_of(term)];
            ends.into_iter().flatten().min().unwrap_or(i64::MAX)
        }
        None => {
            let (a0, b0) = (a.terms()[0], b.terms()[0]);
            if a0.term > b.last_term() {
                a0.start
            } else if b0.term > a.last_term() {
                b0.start
            } else {
                0
            }
        }
    }
}

/// What a copy is, measured against the line of the active store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Every version the copy holds is on the line.
    OnLine,
    /// The copy holds versions after `fork` that the line never had: it must be rebuilt,
    /// and those versions are lost.
    OffLine { fork: i64 },
}

/// Judges a copy with `history` holding versions up to `version` against `line`.
pub fn standing(history: &History, version: i64, line: &History) -> Standing {
    let fork = fork_point(history, line);
    if version <= fork {
        Standing::OnLine
    } else {
        Standing::OffLine { fork }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(terms: &[(i64, i64)]) -> History {
        History::from_terms(terms.iter().map(|&(term, start)| TermStart { term, start }))
    }

    #[test]
    fn a_standby_behind_on_the_line_is_on_it_and_one_ahead_of_a_fork_is_not() {
        let line = h(&[(0, 0), (1, 300), (2, 319)]);
        // Shipped up to 306 of term 1, which the line left at 319.
        assert_eq!(
            standing(&h(&[(0, 0), (1, 300)]), 306, &line),
            Standing::OnLine
        );
        // The old store went on to 343 in term 0, which the line left at 300.
        assert_eq!(
            standing(&History::root(), 343, &line),
            Standing::OffLine { fork: 300 }
        );
        // The line itself, at any version.
        assert_eq!(standing(&line, 400, &line), Standing::OnLine);
    }

    #[test]
    fn a_store_rebuilt_from_an_export_continues_the_old_line_from_the_export() {
        // Moved from an export of version 340; the old store reached 343.
        let moved = h(&[(5, 340)]);
        assert_eq!(fork_point(&History::root(), &moved), 340);
        assert_eq!(
            standing(&History::root(), 343, &moved),
            Standing::OffLine { fork: 340 }
        );
        assert_eq!(standing(&History::root(), 340, &moved), Standing::OnLine);
        // An unrelated store of a later term shares nothing with it.
        assert_eq!(fork_point(&h(&[(7, 0)]), &moved), 0);
    }

    #[test]
    fn a_term_begun_twice_is_kept_once() {
        let line = History::root().begin(1, 10).begin(1, 12);
        assert_eq!(line, h(&[(0, 0), (1, 10)]));
        assert_eq!(line.last_term(), 1);
        let json = serde_json::to_string(&line).unwrap();
        assert_eq!(json, r#"[{"term":0,"start":0},{"term":1,"start":10}]"#);
        assert_eq!(serde_json::from_str::<History>(&json).unwrap(), line);
    }

    /// A simulated deployment: copies hold a list of version identities and a history;
    /// the active copy writes, copies take prefixes of the active one, and any copy can be
    /// promoted with a new term. The fork point of two histories must be exactly the
    /// length of the common prefix of what the two copies hold.
    #[derive(Debug, Clone)]
    enum Event {
        Write,
        Copy { to: usize, upto: usize },
        Promote { copy: usize },
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            3 => Just(Event::Write),
            3 => (0..4usize, 0..100usize).prop_map(|(to, upto)| Event::Copy { to, upto }),
            1 => (0..4usize).prop_map(|copy| Event::Promote { copy }),
        ]
    }

    proptest! {
        #[test]
        fn the_fork_point_is_where_what_two_copies_hold_parts(
            events in proptest::collection::vec(event(), 1..80)
        ) {
            // Copy 0 is active at first; every copy starts on the root line, empty.
            let mut held: Vec<Vec<u64>> = vec![Vec::new(); 4];
            let mut lines: Vec<History> = vec![History::root(); 4];
            let mut active = 0usize;
            let mut next_id = 0u64;
            let mut next_term = 1i64;
            for e in events {
                match e {
                    Event::Write => {
                        next_id += 1;
                        held[active].push(next_id);
                    }
                    Event::Copy { to, upto } => {
                        if to == active {
                            continue;
                        }
                        // A copy takes the active line up to some version (a standby's
                        // shipment or a replica's push, rebuilt if it was off the line).
                        let upto = upto.min(held[active].len());
                        let fork = fork_point(&lines[to], &lines[active]);
                        let mut keep = held[to].len().min(usize::try_from(fork).unwrap_or(usize::MAX));
                        if keep < held[to].len() {
                            keep = 0; // rebuilt whole
                        }
                        if upto < keep {
                            continue;
                        }
                        held[to].truncate(keep);
                        let taken = held[active][keep..upto].to_vec();
                        held[to].extend_from_slice(&taken);
                        lines[to] = lines[active].clone();
                    }
                    Event::Promote { copy } => {
                        if copy == active {
                            continue;
                        }
                        let start = held[copy].len() as i64;
                        lines[copy] = lines[copy].begin(next_term, start);
                        next_term += 1;
                        active = copy;
                    }
                }
                for a in 0..4 {
                    for b in 0..4 {
                        let common = held[a]
                            .iter()
                            .zip(&held[b])
                            .take_while(|(x, y)| x == y)
                            .count() as i64;
                        let fork = fork_point(&lines[a], &lines[b]);
                        let shorter = held[a].len().min(held[b].len()) as i64;
                        // Where both hold versions, they agree exactly up to the fork.
                        prop_assert_eq!(
                            common,
                            fork.min(shorter),
                            "copies {} and {}: {:?} {:?} / {:?} {:?}",
                            a, b, held[a], lines[a], held[b], lines[b]
                        );
                    }
                }
            }
        }
    }
}
