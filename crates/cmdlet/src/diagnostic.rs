//! The one error shape of the shell language: a message, the span of the text it is
//! about, and what to do. The binary renders it with the source line and a caret; tests
//! compare spans.

use std::fmt;

/// A byte range in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }

    /// The smallest span covering both.
    pub fn join(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }

    pub fn len(self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(self) -> bool {
        self.start == self.end
    }
}

/// What kind of problem: decides the exit code (both are usage errors, 2) and the heading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiagnosticKind {
    /// The text is not a well-formed command line.
    Syntax,
    /// The line is well formed but does not fit the cmdlet's signature.
    Binding,
}

/// An error pointing at the text that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub kind: DiagnosticKind,
    pub message: String,
    pub span: Span,
    /// What to do about it, when there is something better to say than the message.
    pub help: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, " ({help})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

impl Diagnostic {
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

pub(crate) fn error(message: impl Into<String>, span: Span) -> Diagnostic {
    Diagnostic {
        kind: DiagnosticKind::Syntax,
        message: message.into(),
        span,
        help: None,
    }
}

pub(crate) fn bind_error(message: impl Into<String>, span: Span) -> Diagnostic {
    Diagnostic {
        kind: DiagnosticKind::Binding,
        message: message.into(),
        span,
        help: None,
    }
}

/// Names close to `typed` among `candidates`, best first: for "did you mean" hints.
/// Case-insensitive; a candidate that starts with what was typed counts as close.
pub fn suggest<'a>(typed: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let typed_lower = typed.to_ascii_lowercase();
    let limit = (typed.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .filter_map(|c| {
            let lower = c.to_ascii_lowercase();
            let distance = edit_distance(&typed_lower, &lower);
            (distance <= limit).then_some((distance, c))
        })
        .collect();
    scored.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1.eq_ignore_ascii_case(b.1));
    scored.into_iter().take(3).map(|(_, c)| c).collect()
}

/// Levenshtein distance with adjacent transpositions (optimal string alignment).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev2: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(prev2[j - 2] + 1);
            }
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("poolfqdn", "poolfqdn"), 0);
        assert_eq!(edit_distance("poolfdqn", "poolfqdn"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions_rank_closest_first() {
        let got = suggest("PoolFdqn", ["PoolFqdn", "Force", "WaitTime"]);
        assert_eq!(got, ["PoolFqdn"]);
        assert!(suggest("Zebra", ["PoolFqdn"]).is_empty());
    }
}
