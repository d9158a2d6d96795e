//! Lexical helpers shared by the message, URI and digest parsers: tokens, quoted
//! strings, parameter lists and `host[:port]`. Kept in one place so every parser agrees
//! on what a token or a parameter is.

use std::borrow::Cow;

/// Why bytes are not a SIP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The message (or its header section) is over a limit: answer 513.
    #[error("message too large: {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    /// More bytes are needed (stream framing), or the datagram was truncated.
    #[error("incomplete message")]
    Incomplete,
    /// Not valid SIP; the reason is human readable.
    #[error("malformed: {0}")]
    Malformed(String),
}

pub(crate) fn malformed(reason: impl Into<String>) -> ParseError {
    ParseError::Malformed(reason.into())
}

/// RFC 3261 §25.1 `token` character.
pub(crate) fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '.' | '!' | '%' | '*' | '_' | '+' | '`' | '\'' | '~'
        )
}

pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_token_char)
}

/// The parts of `s` between the `sep`s outside double quotes and angle brackets, in
/// order, read in place (the registrar reads the top Via's branch of every request
/// without a vector of all of them).
pub(crate) fn top_level(s: &str, sep: char) -> TopLevel<'_> {
    TopLevel { rest: Some(s), sep }
}

/// See [`top_level`].
pub(crate) struct TopLevel<'a> {
    rest: Option<&'a str>,
    sep: char,
}

impl<'a> Iterator for TopLevel<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        let mut depth = 0usize;
        let mut in_quotes = false;
        let mut escaped = false;
        for (i, c) in s.char_indices() {
            if in_quotes {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    in_quotes = false;
                }
                continue;
            }
            match c {
                '"' => in_quotes = true,
                '<' => depth += 1,
                '>' => depth = depth.saturating_sub(1),
                c if c == self.sep && depth == 0 => {
                    self.rest = Some(&s[i + c.len_utf8()..]);
                    return Some(&s[..i]);
                }
                _ => {}
            }
        }
        self.rest = None;
        Some(s)
    }
}

/// Parses a quoted string at the start of `s` (which must begin with `"`), undoing
/// backslash escapes. Returns the content and what follows the closing quote.
pub(crate) fn parse_quoted(s: &str) -> Result<(String, &str), ParseError> {
    parse_quoted_in_place(s).map(|(content, rest)| (content.into_owned(), rest))
}

/// [`parse_quoted`], borrowing the content when it has no escapes (most have none).
pub(crate) fn parse_quoted_in_place(s: &str) -> Result<(Cow<'_, str>, &str), ParseError> {
    let body = s
        .strip_prefix('"')
        .ok_or_else(|| malformed("expected a quoted string"))?;
    // Most quoted strings have no escapes: taken in one piece when the closing quote
    // comes before any backslash or line break.
    if let Some(end) = body
        .bytes()
        .position(|b| matches!(b, b'"' | b'\\' | b'\r' | b'\n'))
        && body.as_bytes()[end] == b'"'
    {
        return Ok((Cow::Borrowed(&body[..end]), &body[end + 1..]));
    }
    let mut out = String::new();
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        if c == '\r' || c == '\n' {
            return Err(malformed("line break inside quoted string"));
        }
        if escaped {
            out.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' => return Ok((Cow::Owned(out), &body[i + 1..])),
            _ => out.push(c),
        }
    }
    Err(malformed("unterminated quoted string"))
}

/// Writes `s` as a quoted string, escaping `"` and `\`.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    let _ = write_quoted(&mut out, s);
    out
}

/// [`quote`], written into `out` rather than into a new string.
pub(crate) fn write_quoted(out: &mut impl std::fmt::Write, s: &str) -> std::fmt::Result {
    out.write_char('"')?;
    let mut rest = s;
    while let Some(i) = rest.find(['"', '\\']) {
        out.write_str(&rest[..i])?;
        out.write_char('\\')?;
        out.write_str(&rest[i..=i])?;
        rest = &rest[i + 1..];
    }
    out.write_str(rest)?;
    out.write_char('"')
}

/// A `;name[=value]` list; the names and values are kept as written.
pub(crate) type Params = Vec<(String, Option<String>)>;

/// Parses the text after the first `;` of a parameter list (`a=1;b;c="x"`).
/// `quoted_ok` allows quoted-string values (header parameters; URI parameters never
/// have them).
pub(crate) fn parse_params(s: &str, what: &str, quoted_ok: bool) -> Result<Params, ParseError> {
    params_in(s, what, quoted_ok)
        .map(|param| param.map(|(name, value)| (name.to_owned(), value.map(str::to_owned))))
        .collect()
}

/// Checks a parameter list as [`parse_params`] does, keeping nothing.
pub(crate) fn check_params(s: &str, what: &str, quoted_ok: bool) -> Result<(), ParseError> {
    params_in(s, what, quoted_ok).try_for_each(|param| param.map(drop))
}

/// Each parameter of a list, checked, as written (trimmed): what [`parse_params`] keeps
/// and [`check_params`] checks.
fn params_in<'a>(
    s: &'a str,
    what: &'a str,
    quoted_ok: bool,
) -> impl Iterator<Item = Result<(&'a str, Option<&'a str>), ParseError>> + 'a {
    top_level(s, ';').map(move |part| {
        let part = part.trim();
        if part.is_empty() {
            return Err(malformed(format!("empty {what} parameter")));
        }
        let (name, value) = split_param(part);
        if !is_token(name) {
            return Err(malformed(format!("invalid {what} parameter name")));
        }
        if let Some(v) = value {
            check_param_value(v, what, quoted_ok)?;
        }
        Ok((name, value))
    })
}

/// Each parameter of a list [`check_params`] accepted, name and value as [`parse_params`]
/// keeps them, read again without checking them again (an empty list has none).
pub(crate) fn checked_params(s: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    top_level(s, ';')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(split_param)
}

/// `name[=value]`, each trimmed.
fn split_param(part: &str) -> (&str, Option<&str>) {
    match part.split_once('=') {
        Some((n, v)) => (n.trim(), Some(v.trim())),
        None => (part, None),
    }
}

fn check_param_value(v: &str, what: &str, quoted_ok: bool) -> Result<(), ParseError> {
    if v.starts_with('"') && quoted_ok {
        let (_, rest) = parse_quoted(v)?;
        if rest.is_empty() {
            return Ok(());
        }
        return Err(malformed(format!(
            "text after quoted {what} parameter value"
        )));
    }
    let bad = |c: char| {
        c.is_whitespace()
            || c.is_control()
            || matches!(c, ';' | ',' | '"' | '<' | '>' | '?' | '@' | '=')
    };
    if v.chars().any(bad) {
        return Err(malformed(format!("invalid {what} parameter value")));
    }
    Ok(())
}

/// Looks a parameter up by case-insensitive name.
pub(crate) fn find_param<'a>(params: &'a Params, name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_deref())
}

/// Kept parameters as the borrowed pairs [`write_params`] writes.
pub(crate) fn pairs(params: &Params) -> impl Iterator<Item = (&str, Option<&str>)> {
    params.iter().map(|(n, v)| (n.as_str(), v.as_deref()))
}

/// Writes `;name[=value]` for each parameter.
pub(crate) fn write_params<'a>(
    f: &mut impl std::fmt::Write,
    params: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> std::fmt::Result {
    // Piece by piece rather than through `write!`: a Contact's URI is written at every
    // REGISTER.
    for (name, value) in params {
        f.write_str(";")?;
        f.write_str(name)?;
        if let Some(v) = value {
            f.write_str("=")?;
            f.write_str(v)?;
        }
    }
    Ok(())
}

/// Parses `host[:port]` where host is a hostname, an IPv4 address or a bracketed IPv6
/// reference. The host is returned as written.
pub(crate) fn parse_hostport(s: &str) -> Result<(&str, Option<u16>), ParseError> {
    let (host, rest) = if s.starts_with('[') {
        let close = s
            .find(']')
            .ok_or_else(|| malformed("unterminated IPv6 reference"))?;
        let inner = &s[1..close];
        if !inner.contains(':')
            || !inner
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(malformed("invalid IPv6 reference"));
        }
        (&s[..=close], &s[close + 1..])
    } else {
        let end = s.find(':').unwrap_or(s.len());
        let host = &s[..end];
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            return Err(malformed("invalid host"));
        }
        (host, &s[end..])
    };
    if rest.is_empty() {
        return Ok((host, None));
    }
    let digits = rest
        .strip_prefix(':')
        .ok_or_else(|| malformed("unexpected text after host"))?;
    Ok((host, Some(parse_port(digits)?)))
}

fn parse_port(digits: &str) -> Result<u16, ParseError> {
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed("invalid port"));
    }
    digits.parse().map_err(|_| malformed("port out of range"))
}

/// Parses a run of ASCII digits, saturating instead of overflowing. `None` when `s` is
/// empty or has any other character (signs included).
pub(crate) fn parse_digits_saturating(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |acc, b| {
        acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_outside_quotes_and_angles() {
        assert_eq!(
            top_level(r#""a, \"b" <sip:x;a=1,2>, c"#, ',').collect::<Vec<_>>(),
            vec![r#""a, \"b" <sip:x;a=1,2>"#, " c"]
        );
    }

    #[test]
    fn quoted_strings() {
        assert_eq!(
            parse_quoted(r#""a\"b" rest"#).unwrap(),
            ("a\"b".into(), " rest")
        );
        assert!(parse_quoted(r#""open"#).is_err());
        assert_eq!(quote("a\"b\\"), r#""a\"b\\""#);
    }

    #[test]
    fn params() {
        let p = parse_params(r#"a=1; b ;c="x;y""#, "test", true).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(find_param(&p, "C"), Some(Some(r#""x;y""#)));
        assert_eq!(find_param(&p, "b"), Some(None));
        assert_eq!(find_param(&p, "d"), None);
        assert!(parse_params("a;;b", "test", true).is_err());
        assert!(parse_params(r#"c="x""#, "test", false).is_err());
    }

    #[test]
    fn hostport() {
        assert_eq!(parse_hostport("a.b:5060").unwrap(), ("a.b", Some(5060)));
        assert_eq!(parse_hostport("[::1]:5").unwrap(), ("[::1]", Some(5)));
        assert_eq!(parse_hostport("x").unwrap(), ("x", None));
        assert!(parse_hostport("x:70000").is_err());
        assert!(parse_hostport("x:").is_err());
        assert!(parse_hostport("").is_err());
        assert!(parse_hostport("[zz]").is_err());
    }

    #[test]
    fn digits() {
        assert_eq!(parse_digits_saturating("0012"), Some(12));
        assert_eq!(
            parse_digits_saturating("99999999999999999999999"),
            Some(u64::MAX)
        );
        assert_eq!(parse_digits_saturating("-1"), None);
        assert_eq!(parse_digits_saturating(""), None);
    }
}
