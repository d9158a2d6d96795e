//! The tandem topology: the document that says which sites, pools and servers make up a
//! deployment and how they relate, and the rules a valid one follows.
//!
//! Pure data and pure functions: no files, no sockets. Everything that acts on a
//! deployment (the lab, the servers, the Central Management store) starts from a
//! [`Topology`] that [`validate`] has accepted.

pub mod domain;
pub mod edit;
mod model;
pub mod serving;
mod validate;

pub use model::*;
pub use validate::{
    DETECTION_INTERVAL_SECS, DETECTION_INTERVAL_WARN_BELOW_SECS, MAX_EDGE_SERVERS,
    MAX_FRONT_END_SERVERS, Problem, Report, Severity, is_valid_fqdn, route_target, validate,
};

use std::borrow::Cow;
use std::fmt;

/// `name` with its ASCII letters in lower case, copied only when it has capitals: the
/// deployment's names (pools, servers) and the addresses of record are compared so, and
/// nearly always arrive so already.
pub fn lowercase(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// A topology document that could not be read, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    /// 1-based line, when the parser could place the error.
    pub line: Option<usize>,
    /// 1-based column, in characters.
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => {
                write!(f, "line {line}, column {column}: {}", self.message)
            }
            _ => f.write_str(&self.message),
        }
    }
}

impl ParseError {
    fn from_toml(text: &str, err: &toml::de::Error) -> Self {
        let (line, column) = match err.span() {
            Some(span) => {
                let (l, c) = line_col(text, span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        ParseError {
            line,
            column,
            message: err.message().trim().to_string(),
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

/// The seeds' deployment (`examples/contoso.toml`), built in so `tandem lab up` works
/// with no file at hand.
pub const CONTOSO_TOML: &str = include_str!("../../../examples/contoso.toml");

/// The seeds' deployment, parsed.
pub fn contoso() -> Topology {
    Topology::from_toml(CONTOSO_TOML).expect("examples/contoso.toml parses")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_copied_to_lower_case_only_when_it_has_capitals() {
        assert!(matches!(
            lowercase("pool1.contoso.com"),
            Cow::Borrowed("pool1.contoso.com")
        ));
        assert_eq!(lowercase("Pool1.CONTOSO.com"), "pool1.contoso.com");
        assert_eq!(lowercase("sip:Ünï@X.org"), "sip:Ünï@x.org");
    }
}
