//! SIP messages (RFC 3261 §7): the request/response model, one defensive parser for
//! UDP datagrams and TCP frames, stream framing, serialisation, and the few header
//! accessors (CSeq, Call-ID, Via, Expires) the registrar and proxy logic need.
//!
//! It exists so that every byte from the network goes through a single bounded,
//! panic-free parser that enforces [`MAX_HEADER_BYTES`] and [`MAX_MESSAGE_BYTES`].

use std::fmt;

use crate::hex::digits;
use crate::syntax::{
    find_param, is_token, is_token_char, malformed, pairs, parse_digits_saturating, parse_hostport,
    parse_params, top_level, write_params,
};
use crate::uri::NameAddr;
use crate::{MAX_HEADER_BYTES, MAX_MESSAGE_BYTES};

/// A request method. Method names are case-sensitive (RFC 3261 §7.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Register,
    Options,
    Message,
    Invite,
    Ack,
    Bye,
    Cancel,
    /// Any other method token, as written.
    Other(String),
}

impl Method {
    pub fn as_str(&self) -> &str {
        match self {
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Message => "MESSAGE",
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Other(s) => s,
        }
    }

    /// Exact (case-sensitive) match on the known methods; anything else is
    /// [`Method::Other`]. Whether `s` is a valid token is checked by the message parser.
    pub fn parse(s: &str) -> Method {
        match s {
            "REGISTER" => Method::Register,
            "OPTIONS" => Method::Options,
            "MESSAGE" => Method::Message,
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            other => Method::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 3261 §7.3.3 compact forms, plus a few common extension ones.
const COMPACT: &[(&str, &str)] = &[
    ("v", "Via"),
    ("f", "From"),
    ("t", "To"),
    ("i", "Call-ID"),
    ("m", "Contact"),
    ("l", "Content-Length"),
    ("c", "Content-Type"),
    ("k", "Supported"),
    ("s", "Subject"),
    ("e", "Content-Encoding"),
    ("o", "Event"),
    ("r", "Refer-To"),
    ("b", "Referred-By"),
    ("u", "Allow-Events"),
    ("x", "Session-Expires"),
];

/// Headers whose comma-separated values [`Headers::get_all`] splits.
const MULTI_VALUE: &[&str] = &[
    "Via",
    "Contact",
    "Route",
    "Record-Route",
    "Path",
    "Service-Route",
];

fn expand(name: &str) -> &str {
    if name.len() == 1 {
        for (short, full) in COMPACT {
            if name.eq_ignore_ascii_case(short) {
                return full;
            }
        }
    }
    name
}

fn same_header(a: &str, b: &str) -> bool {
    expand(a).eq_ignore_ascii_case(expand(b))
}

/// Header names a field is tagged with when it is added (its compact form expanded), so
/// that a lookup compares a number rather than each field's name: the registrar looks up
/// some thirty fields a sign-in, each a walk over every field of the message.
const KNOWN: &[&str] = &[
    "Via",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Contact",
    "Content-Length",
    "Content-Type",
    "Max-Forwards",
    "Expires",
    "Authorization",
    "Proxy-Authorization",
    "WWW-Authenticate",
    "Route",
    "Record-Route",
    "Supported",
    "Event",
    "User-Agent",
    "Allow",
];

/// A field name's place in [`KNOWN`] plus one, or 0 for a name not there: two names are
/// the same header exactly when [`same_header`] says so, and a known one is found by its
/// number. Every field a message is parsed into is tagged, so the one candidate is picked
/// by length and first letters before a name is compared (a test holds this to [`KNOWN`]).
fn kind_of(name: &str) -> u8 {
    let name = expand(name);
    let b = name.as_bytes();
    let lower = |i: usize| b.get(i).map_or(0, u8::to_ascii_lowercase);
    let candidate = match (b.len(), lower(0)) {
        (3, b'v') => 0,
        (4, b'f') => 1,
        (2, b't') => 2,
        (7, b'c') if lower(1) == b'a' => 3,
        (4, b'c') => 4,
        (7, b'c') => 5,
        (14, b'c') => 6,
        (12, b'c') => 7,
        (12, b'm') => 8,
        (7, b'e') => 9,
        (13, b'a') => 10,
        (19, b'p') => 11,
        (16, b'w') => 12,
        (5, b'r') => 13,
        (12, b'r') => 14,
        (9, b's') => 15,
        (5, b'e') => 16,
        (10, b'u') => 17,
        (5, b'a') => 18,
        _ => return 0,
    };
    // As written in the RFCs (nearly every sender, and every lookup in this code), then
    // in any case.
    let known = KNOWN[candidate];
    if known.as_bytes() == b || known.eq_ignore_ascii_case(name) {
        candidate as u8 + 1
    } else {
        0
    }
}

/// The header fields of a message, in order, with their names as written. Lookups are
/// case-insensitive and treat compact forms (`v`, `i`, `l`, ...) as their long names.
///
/// Every name and value lives in one buffer, each field being two spans of it: a parsed
/// message costs two allocations for its headers rather than two a field, and a field
/// removed leaves its bytes behind until the headers are dropped (messages are short-lived).
#[derive(Clone, Default)]
pub struct Headers {
    text: String,
    fields: Vec<Field>,
}

/// The text of `text` between a span's start and end.
fn span(text: &str, (start, end): (u32, u32)) -> &str {
    &text[start as usize..end as usize]
}

/// Whether field `f` of `text` is named `name`, whose [`kind_of`] is `kind`: a known name
/// by its number, another by its text (compact forms expanded, case ignored).
fn is_named(text: &str, f: &Field, name: &str, kind: u8) -> bool {
    f.kind == kind && (kind != 0 || same_header(span(text, f.name), name))
}

/// Where one field's name and value are in [`Headers::text`].
#[derive(Debug, Clone, Copy)]
struct Field {
    name: (u32, u32),
    value: (u32, u32),
    /// The name's [`kind_of`].
    kind: u8,
}

impl PartialEq for Headers {
    fn eq(&self, other: &Headers) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Room for `fields` fields of `bytes` bytes in all, allocated at once.
    fn with_capacity(fields: usize, bytes: usize) -> Self {
        Headers {
            text: String::with_capacity(bytes),
            fields: Vec::with_capacity(fields),
        }
    }

    fn span(&self, at: (u32, u32)) -> &str {
        span(&self.text, at)
    }

    /// Appends `s` to the buffer and returns its span.
    fn append(&mut self, s: &str) -> (u32, u32) {
        let start = self.text.len();
        self.text.push_str(s);
        (start as u32, self.text.len() as u32)
    }

    /// The values of the fields with this name, each whole, in order.
    fn fields_named<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        let kind = kind_of(name);
        self.fields
            .iter()
            .filter(move |f| is_named(&self.text, f, name, kind))
            .map(|f| self.span(f.value))
    }

    /// The value of the first field with this name.
    pub fn get(&self, name: &str) -> Option<&str> {
        let kind = kind_of(name);
        self.fields
            .iter()
            .find(|f| is_named(&self.text, f, name, kind))
            .map(|f| self.span(f.value))
    }

    /// Every value of every field with this name. For Via, Contact, Route, Record-Route,
    /// Path and Service-Route, comma-separated values are split at top-level commas
    /// (not inside quotes or `<>`) and trimmed.
    pub fn get_all(&self, name: &str) -> Vec<&str> {
        self.values(name).collect()
    }

    /// What [`Headers::get_all`] collects, read lazily: the top Via of a request is its
    /// first, without a vector of all of them.
    pub fn values<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        let wanted = expand(name);
        let multi = MULTI_VALUE.iter().any(|m| m.eq_ignore_ascii_case(wanted));
        self.fields_named(name).flat_map(move |v| {
            let (whole, parts) = if multi {
                (
                    None,
                    Some(top_level(v, ',').map(str::trim).filter(|s| !s.is_empty())),
                )
            } else {
                (Some(v), None)
            };
            whole.into_iter().chain(parts.into_iter().flatten())
        })
    }

    pub fn push(&mut self, name: impl AsRef<str>, value: impl AsRef<str>) {
        let kind = kind_of(name.as_ref());
        let name = self.append(name.as_ref());
        let value = self.append(value.as_ref());
        self.fields.push(Field { name, value, kind });
    }

    /// Appends a field whose value `write` writes straight into the headers' buffer (with
    /// `write!` or `push_str`): a value made of pieces costs no string of its own.
    pub fn push_with(&mut self, name: &str, write: impl FnOnce(&mut String)) {
        let kind = kind_of(name);
        let name = self.append(name);
        let start = self.text.len();
        write(&mut self.text);
        let value = (start as u32, self.text.len() as u32);
        self.fields.push(Field { name, value, kind });
    }

    /// Replaces every field with this name (compact form included) with one field, at the
    /// position of the first; appends when there was none.
    pub fn set(&mut self, name: &str, value: impl AsRef<str>) {
        let kind = kind_of(name);
        let entry = Field {
            name: self.append(name),
            value: self.append(value.as_ref()),
            kind,
        };
        let text = &self.text;
        let named = |f: &Field| is_named(text, f, name, kind);
        match self.fields.iter().position(named) {
            Some(first) => {
                let mut i = 0;
                self.fields.retain(|f| {
                    let keep = i <= first || !named(f);
                    i += 1;
                    keep
                });
                self.fields[first] = entry;
            }
            None => self.fields.push(entry),
        }
    }

    pub fn remove(&mut self, name: &str) {
        let kind = kind_of(name);
        let text = &self.text;
        self.fields.retain(|f| !is_named(text, f, name, kind));
    }

    /// Drops the sender's `Authorization` and `Proxy-Authorization`: they prove who sent a
    /// request to the server that checked them, and would be a reusable credential in the
    /// hands of anyone the request is forwarded or delivered to.
    pub fn remove_credentials(&mut self) {
        self.remove("Authorization");
        self.remove("Proxy-Authorization");
    }

    /// Whether `Authorization` or `Proxy-Authorization` is present.
    pub fn carries_credentials(&self) -> bool {
        self.get("Authorization").is_some() || self.get("Proxy-Authorization").is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields
            .iter()
            .map(|f| (self.span(f.name), self.span(f.value)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The Request-URI as written (parse it with [`crate::Uri::parse`] when needed).
    pub uri: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

pub use crate::syntax::ParseError;

/// Length of the run of CR/LF keep-alive bytes at the start of `buf`.
fn keepalive_len(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count()
}

/// Where the lines of a header section are, as byte ranges without line ends.
#[derive(Debug, PartialEq, Eq)]
struct Scan {
    lines: Vec<(usize, usize)>,
    /// Offset just past the blank line that ends the header section; `None` when it has
    /// not arrived yet.
    end: Option<usize>,
}

/// Finds the header section at the start of `b` (which starts after any keep-alives).
/// Rejects control characters and bare CRs, and enforces [`MAX_HEADER_BYTES`].
fn scan_head(b: &[u8]) -> Result<Scan, ParseError> {
    // Line by line with memchr, each line's bytes checked at once, rather than a byte at
    // a time: this runs for every message received (twice on a stream: framing, then
    // parsing), and was the hottest loop of the registrar under sign-in load. What it
    // accepts and the first error it reports are the same as checking byte by byte.
    let mut lines = Vec::with_capacity(16);
    let mut line_start = 0;
    let limit = b.len().min(MAX_HEADER_BYTES);
    loop {
        let newline = memchr::memchr(b'\n', &b[line_start..limit]).map(|k| line_start + k);
        check_line_bytes(b, line_start, newline.unwrap_or(limit))?;
        let Some(i) = newline else {
            if b.len() > MAX_HEADER_BYTES {
                return Err(ParseError::TooLarge {
                    size: MAX_HEADER_BYTES + 1,
                    limit: MAX_HEADER_BYTES,
                });
            }
            return Ok(Scan { lines, end: None });
        };
        let mut end = i;
        if end > line_start && b[end - 1] == b'\r' {
            end -= 1;
        }
        if end == line_start {
            if lines.is_empty() {
                return Err(malformed("empty start line"));
            }
            return Ok(Scan {
                lines,
                end: Some(i + 1),
            });
        }
        lines.push((line_start, end));
        line_start = i + 1;
    }
}

/// Checks `b[from..to]` (a line without its LF, or what there is of it so far): no
/// control character but HTAB and the CR of a CRLF (or a CR that is the last byte so far,
/// whose LF may still come).
fn check_line_bytes(b: &[u8], from: usize, to: usize) -> Result<(), ParseError> {
    let mut text = &b[from..to];
    if text.last() == Some(&b'\r') && b.get(to) == Some(&b'\n') {
        text = &text[..text.len() - 1];
    }
    // Without an early exit the compiler checks many bytes at once (a header line is
    // short, and almost never has one).
    let controls = text
        .iter()
        .fold(false, |seen, &c| seen | (c < 0x20) | (c == 0x7f));
    if !controls {
        return Ok(());
    }
    for (i, &c) in b.iter().enumerate().take(to).skip(from) {
        match c {
            b'\r' if b.get(i + 1).is_some_and(|n| *n != b'\n') => {
                return Err(malformed("bare CR in header section"));
            }
            b'\r' | b'\t' => {}
            0..=0x1f | 0x7f => {
                return Err(malformed(format!(
                    "control character 0x{c:02x} in header section"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

fn line_str(b: &[u8], (start, end): (usize, usize)) -> Result<&str, ParseError> {
    std::str::from_utf8(&b[start..end]).map_err(|_| malformed("header section is not valid UTF-8"))
}

enum StartLine {
    Request { method: Method, uri: String },
    Response { status: u16, reason: String },
}

fn check_version(v: &str) -> Result<(), ParseError> {
    if v.eq_ignore_ascii_case("SIP/2.0") {
        Ok(())
    } else {
        Err(malformed("unsupported SIP version (need SIP/2.0)"))
    }
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    let looks_like_response = line
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"));
    if looks_like_response {
        let mut parts = line.splitn(3, ' ');
        check_version(parts.next().unwrap_or_default())?;
        let code = parts.next().unwrap_or_default();
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed("status code must be three digits"));
        }
        let status: u16 = code
            .parse()
            .map_err(|_| malformed("status code must be three digits"))?;
        if !(100..=699).contains(&status) {
            return Err(malformed("status code outside 100..=699"));
        }
        let reason = parts.next().unwrap_or_default().to_owned();
        return Ok(StartLine::Response { status, reason });
    }
    let mut parts = line.splitn(3, ' ');
    let (Some(method), Some(uri), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("request line must be `METHOD URI SIP/2.0`"));
    };
    if !is_token(method) {
        return Err(malformed("request method is not a token"));
    }
    check_request_uri(uri)?;
    check_version(version.trim_end_matches([' ', '\t']))?;
    Ok(StartLine::Request {
        method: Method::parse(method),
        uri: uri.to_owned(),
    })
}

/// Loose absolute-URI check (`scheme:rest`); scheme-specific parsing is left to the
/// caller so that e.g. `tel:` Request-URIs still reach it.
fn check_request_uri(uri: &str) -> Result<(), ParseError> {
    let ok = match uri.split_once(':') {
        Some((scheme, rest)) => {
            scheme
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
                && !rest.is_empty()
                && !rest.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(malformed("invalid Request-URI"))
    }
}

/// Header lines (everything after the start line) into [`Headers`], unfolding
/// continuation lines.
fn parse_header_lines(b: &[u8], lines: &[(usize, usize)]) -> Result<Headers, ParseError> {
    let bytes = lines.iter().map(|(s, e)| e - s).sum();
    let mut headers = Headers::with_capacity(lines.len(), bytes);
    for &range in lines {
        let line = line_str(b, range)?;
        if line.starts_with([' ', '\t']) {
            // A continuation: the last field's value is at the end of the buffer, so it
            // grows in place.
            let last = headers
                .fields
                .last()
                .copied()
                .ok_or_else(|| malformed("continuation line before the first header"))?;
            let more = line.trim_matches([' ', '\t']);
            if !more.is_empty() {
                if last.value.1 > last.value.0 {
                    headers.text.push(' ');
                }
                headers.text.push_str(more);
                let end = headers.text.len() as u32;
                if let Some(f) = headers.fields.last_mut() {
                    f.value.1 = end;
                }
            }
            continue;
        }
        let (name, value) = field_of(line)?;
        headers.push(name, value);
    }
    Ok(headers)
}

/// A header line's name and value, trimmed.
fn field_of(line: &str) -> Result<(&str, &str), ParseError> {
    let colon = memchr::memchr(b':', line.as_bytes())
        .ok_or_else(|| malformed("header line without a colon"))?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    let name = trim_blanks_end(name);
    if !is_token(name) {
        return Err(malformed("invalid header name"));
    }
    Ok((name, trim_blanks_end(trim_blanks_start(value))))
}

/// `s` without the spaces and tabs it starts with (bytes, not characters: both are ASCII,
/// so what is left starts at a character's boundary).
fn trim_blanks_start(s: &str) -> &str {
    let n = s.bytes().take_while(|b| matches!(b, b' ' | b'\t')).count();
    &s[n..]
}

/// `s` without the spaces and tabs it ends with.
fn trim_blanks_end(s: &str) -> &str {
    let n = s
        .bytes()
        .rev()
        .take_while(|b| matches!(b, b' ' | b'\t'))
        .count();
    &s[..s.len() - n]
}

/// What [`parse_header_lines`] and then [`content_length`] decide, errors and all, without
/// building the headers: framing a stream needs only the Content-Length, and runs for
/// every message a connection carries before [`Message::parse`] runs on it.
fn content_length_of_lines(b: &[u8], lines: &[(usize, usize)]) -> Result<Option<u64>, ParseError> {
    // The Content-Length values, as [`parse_header_lines`] would unfold them (the first
    // apart: a message has one, and it costs no allocation); whether the last field seen
    // is one of them.
    let mut first: Option<std::borrow::Cow<'_, str>> = None;
    let mut more: Vec<std::borrow::Cow<'_, str>> = Vec::new();
    let mut any_field = false;
    let mut last_is_length = false;
    for &range in lines {
        let line = line_str(b, range)?;
        if line.starts_with([' ', '\t']) {
            if !any_field {
                return Err(malformed("continuation line before the first header"));
            }
            let folded = line.trim_matches([' ', '\t']);
            if last_is_length
                && !folded.is_empty()
                && let Some(value) = more.last_mut().or(first.as_mut())
            {
                let value = value.to_mut();
                if !value.is_empty() {
                    value.push(' ');
                }
                value.push_str(folded);
            }
            continue;
        }
        let (name, value) = field_of(line)?;
        any_field = true;
        last_is_length = same_header(name, "Content-Length");
        if last_is_length {
            if first.is_none() {
                first = Some(value.into());
            } else {
                more.push(value.into());
            }
        }
    }
    agreed_length(first.iter().chain(&more).map(|v| &**v))
}

/// The Content-Length, if any. Duplicates must agree; values are digits only and
/// saturate instead of overflowing.
fn content_length(headers: &Headers) -> Result<Option<u64>, ParseError> {
    agreed_length(headers.fields_named("Content-Length"))
}

/// The one length `values` (a message's Content-Length values) agree on, if any.
fn agreed_length<'a>(values: impl Iterator<Item = &'a str>) -> Result<Option<u64>, ParseError> {
    let mut found = None;
    for value in values {
        let n = parse_digits_saturating(value)
            .ok_or_else(|| malformed("Content-Length is not a non-negative integer"))?;
        match found {
            Some(prev) if prev != n => {
                return Err(malformed("conflicting Content-Length headers"));
            }
            _ => found = Some(n),
        }
    }
    Ok(found)
}

fn parse_cseq(value: &str) -> Result<(u32, Method), ParseError> {
    let mut parts = value.split_ascii_whitespace();
    let (Some(number), Some(method), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(malformed("CSeq must be `number METHOD`"));
    };
    let number = parse_digits_saturating(number)
        .ok_or_else(|| malformed("CSeq number is not an integer"))?;
    let number = u32::try_from(number).map_err(|_| malformed("CSeq number out of range"))?;
    if !is_token(method) {
        return Err(malformed("CSeq method is not a token"));
    }
    Ok((number, Method::parse(method)))
}

fn require<'a>(headers: &'a Headers, name: &str) -> Result<&'a str, ParseError> {
    headers
        .get(name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| malformed(format!("missing {name} header")))
}

impl Message {
    /// Parses one complete message: a UDP datagram or a frame cut by [`frame_length`].
    ///
    /// Accepts CRLF and bare LF line ends and folded headers, and skips leading CRLF
    /// keep-alives. Input with no message after the keep-alives, or whose header section
    /// never ends, is [`ParseError::Incomplete`]. Never panics.
    pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
        let b = &bytes[keepalive_len(bytes)..];
        if b.len() > MAX_MESSAGE_BYTES {
            return Err(ParseError::TooLarge {
                size: b.len(),
                limit: MAX_MESSAGE_BYTES,
            });
        }
        if b.is_empty() {
            return Err(ParseError::Incomplete);
        }
        let scan = scan_head(b)?;
        let Some((&first, rest_lines)) = scan.lines.split_first() else {
            return Err(ParseError::Incomplete);
        };
        let start = parse_start_line(line_str(b, first)?)?;
        let headers = parse_header_lines(b, rest_lines)?;
        let Some(end) = scan.end else {
            return Err(ParseError::Incomplete);
        };
        let rest = &b[end..];
        let body = match content_length(&headers)? {
            Some(n) if n > rest.len() as u64 => {
                return Err(malformed("body shorter than Content-Length"));
            }
            Some(n) => rest[..n as usize].to_vec(),
            None => rest.to_vec(),
        };
        match start {
            StartLine::Request { method, uri } => {
                for name in ["Via", "From", "To", "Call-ID"] {
                    require(&headers, name)?;
                }
                let (_, cseq_method) = parse_cseq(require(&headers, "CSeq")?)?;
                if cseq_method != method {
                    return Err(malformed("CSeq method does not match the request method"));
                }
                Ok(Message::Request(Request {
                    method,
                    uri,
                    headers,
                    body,
                }))
            }
            StartLine::Response { status, reason } => {
                for name in ["From", "To", "Call-ID"] {
                    require(&headers, name)?;
                }
                parse_cseq(require(&headers, "CSeq")?)?;
                Ok(Message::Response(Response {
                    status,
                    reason,
                    headers,
                    body,
                }))
            }
        }
    }

    /// CRLF line ends, with a Content-Length equal to the body length (replacing any).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}

/// CR or LF in a name or value would smuggle in extra header lines; they become spaces.
fn push_clean(out: &mut Vec<u8>, s: &str) {
    // Copied whole between line breaks (there are none, nearly always), not a byte at a
    // time: every answer's fields go through here.
    let mut rest = s.as_bytes();
    while let Some(i) = memchr::memchr2(b'\r', b'\n', rest) {
        out.extend_from_slice(&rest[..i]);
        out.push(b' ');
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
}

/// A message's bytes: its start line (`start_line`'s pieces, one after the other), its
/// fields, and a Content-Length that is the body's.
fn serialize(start_line: &[&str], headers: &Headers, body: &[u8]) -> Vec<u8> {
    // Room for all of it at once: the start line, every field's name, value and 4 bytes
    // of `: ` and CRLF, and the Content-Length line.
    let start: usize = start_line.iter().map(|p| p.len()).sum();
    let fields: usize = headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    let mut out = Vec::with_capacity(start + 2 + fields + 40 + body.len());
    for piece in start_line {
        push_clean(&mut out, piece);
    }
    out.extend_from_slice(b"\r\n");
    let length = kind_of("Content-Length");
    for f in &headers.fields {
        if f.kind == length {
            continue;
        }
        let (name, value) = (headers.span(f.name), headers.span(f.value));
        push_clean(&mut out, name);
        out.extend_from_slice(b": ");
        push_clean(&mut out, value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(digits(body.len() as u128, 10, &mut [0; 40]).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    out
}

impl Request {
    /// See [`Message::to_bytes`].
    pub fn to_bytes(&self) -> Vec<u8> {
        serialize(
            &[self.method.as_str(), " ", &self.uri, " SIP/2.0"],
            &self.headers,
            &self.body,
        )
    }

    pub fn cseq(&self) -> Option<(u32, Method)> {
        parse_cseq(self.headers.get("CSeq")?).ok()
    }

    /// The Max-Forwards header (70, RFC 3261's initial value, when absent or unreadable).
    pub fn max_forwards(&self) -> u32 {
        self.headers
            .get("Max-Forwards")
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(70)
    }

    /// The request as a proxy passes it on: Max-Forwards one less and no credentials
    /// (they were for this hop); `None` when Max-Forwards is spent (answer 483).
    pub fn onward(&self) -> Option<Request> {
        let max_forwards = self.max_forwards();
        if max_forwards == 0 {
            return None;
        }
        let mut onward = self.clone();
        onward
            .headers
            .set("Max-Forwards", (max_forwards - 1).to_string());
        onward.headers.remove_credentials();
        Some(onward)
    }

    pub fn call_id(&self) -> Option<&str> {
        self.headers.get("Call-ID")
    }

    /// The topmost Via value, parsed; `None` when absent or unparseable.
    pub fn top_via(&self) -> Option<Via> {
        Via::parse(self.headers.values("Via").next()?).ok()
    }

    /// The `branch` parameter of the topmost Via, read in place (what
    /// `top_via()?.branch()` gives whenever the top Via parses): a UDP server keys every
    /// transaction by it, and parsing the whole Via for that costs a sign-in half a dozen
    /// allocations.
    pub fn top_via_branch(&self) -> Option<&str> {
        Via::branch_in(self.headers.values("Via").next()?)
    }

    /// The Expires header in seconds; values beyond `u32::MAX` saturate, and anything
    /// that is not an integer gives `None`.
    pub fn expires(&self) -> Option<u32> {
        let n = parse_digits_saturating(self.headers.get("Expires")?)?;
        Some(u32::try_from(n).unwrap_or(u32::MAX))
    }
}

impl Response {
    /// See [`Message::to_bytes`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut buf = [0; 40];
        let status = digits(u128::from(self.status), 10, &mut buf);
        serialize(
            &["SIP/2.0 ", status, " ", &self.reason],
            &self.headers,
            &self.body,
        )
    }

    /// RFC 3261 §8.2.6: copies every Via (in order), From, To, Call-ID, CSeq from the
    /// request; adds ";tag=<to_tag>" to To when it has no tag and to_tag is Some.
    pub fn for_request(req: &Request, status: u16, reason: &str, to_tag: Option<&str>) -> Response {
        // Room for what is copied, a tag, and a few fields the caller adds.
        let mut headers = Headers::with_capacity(12, req.headers.text.len().min(4096) + 512);
        for value in req.headers.fields_named("Via") {
            headers.push("Via", value);
        }
        for name in ["From", "To", "Call-ID", "CSeq"] {
            let Some(value) = req.headers.get(name) else {
                continue;
            };
            // A To without "tag" anywhere in it has none: parsed only when it may.
            let tag_to_add = match to_tag {
                Some(tag) if name == "To" => {
                    let may_have_one = value
                        .as_bytes()
                        .windows(3)
                        .any(|w| w.eq_ignore_ascii_case(b"tag"));
                    let has_one =
                        may_have_one && NameAddr::parse(value).is_ok_and(|to| to.tag().is_some());
                    (!has_one).then_some(tag)
                }
                _ => None,
            };
            match tag_to_add {
                Some(tag) => headers.push_with(name, |out| {
                    out.push_str(value);
                    out.push_str(";tag=");
                    out.push_str(tag);
                }),
                None => headers.push(name, value),
            }
        }
        Response {
            status,
            reason: reason.to_owned(),
            headers,
            body: Vec::new(),
        }
    }

    pub fn cseq(&self) -> Option<(u32, Method)> {
        parse_cseq(self.headers.get("CSeq")?).ok()
    }
}

/// For TCP: given the bytes received so far, the length of the first complete message at
/// the start of buf.
///
/// `Ok(None)` = need more bytes; `Ok(Some(n))` = `buf[..n]` is one message (leading CRLF
/// keep-alives count in n); `Err(TooLarge)` when the header section exceeds
/// [`MAX_HEADER_BYTES`] without finishing, when Content-Length makes the message exceed
/// [`MAX_MESSAGE_BYTES`], or when more than [`MAX_HEADER_BYTES`] of keep-alive CRLFs
/// precede it; `Err(Malformed)` for a missing/invalid Content-Length (stream transport
/// requires it, RFC 3261 §18.3) or a header section that is not even line-structured.
/// Only framing is checked here: run [`Message::parse`] on the frame for the rest.
pub fn frame_length(buf: &[u8]) -> Result<Option<usize>, ParseError> {
    let skip = keepalive_len(buf);
    if skip > MAX_HEADER_BYTES {
        return Err(ParseError::TooLarge {
            size: skip,
            limit: MAX_HEADER_BYTES,
        });
    }
    let b = &buf[skip..];
    if b.is_empty() {
        return Ok(None);
    }
    let scan = scan_head(b)?;
    let Some(end) = scan.end else {
        return Ok(None);
    };
    let length = content_length_of_lines(b, scan.lines.get(1..).unwrap_or_default())?
        .ok_or_else(|| malformed("missing Content-Length header (required on streams)"))?;
    let total = (end as u64).saturating_add(length);
    if total > MAX_MESSAGE_BYTES as u64 {
        return Err(ParseError::TooLarge {
            size: usize::try_from(total).unwrap_or(usize::MAX),
            limit: MAX_MESSAGE_BYTES,
        });
    }
    // total <= MAX_MESSAGE_BYTES, so it fits.
    let total = skip + total as usize;
    Ok((buf.len() >= total).then_some(total))
}

/// One Via value (RFC 3261 §20.42): `SIP/2.0/UDP host:port;branch=z9hG4bK..;rport`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// `"UDP"`, `"TCP"`, ... uppercased.
    pub transport: String,
    /// The sent-by host as written.
    pub host: String,
    pub port: Option<u16>,
    /// Via parameters, names and values as written.
    pub params: Vec<(String, Option<String>)>,
}

impl Via {
    /// Parses a single Via value (split multi-value fields with [`Headers::get_all`]).
    pub fn parse(value: &str) -> Result<Via, ParseError> {
        let mut rest = value.trim();
        let mut protocol = [""; 3];
        for (i, slot) in protocol.iter_mut().enumerate() {
            if i > 0 {
                rest = rest
                    .trim_start()
                    .strip_prefix('/')
                    .ok_or_else(|| malformed("Via: bad sent-protocol"))?
                    .trim_start();
            }
            let end = rest.find(|c: char| !is_token_char(c)).unwrap_or(rest.len());
            if end == 0 {
                return Err(malformed("Via: bad sent-protocol"));
            }
            *slot = &rest[..end];
            rest = &rest[end..];
        }
        let [name, version, transport] = protocol;
        if !name.eq_ignore_ascii_case("SIP") || version != "2.0" {
            return Err(malformed("Via: protocol must be SIP/2.0"));
        }
        if !rest.starts_with([' ', '\t']) {
            return Err(malformed("Via: missing sent-by"));
        }
        let rest = rest.trim_start();
        let (sent_by, params) = match rest.split_once(';') {
            Some((sent_by, params)) => (sent_by, parse_params(params, "Via", true)?),
            None => (rest, Vec::new()),
        };
        let (host, port) = parse_hostport(sent_by.trim_end())?;
        Ok(Via {
            transport: transport.to_ascii_uppercase(),
            host: host.to_owned(),
            port,
            params,
        })
    }

    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }

    /// The `branch` of one Via value without parsing the rest of it: the value of the
    /// first parameter named `branch` (any case) after the sent-by.
    pub fn branch_in(value: &str) -> Option<&str> {
        let (_, params) = value.split_once(';')?;
        let value = top_level(params, ';').find_map(|param| {
            let (name, value) = match param.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (param, None),
            };
            name.trim().eq_ignore_ascii_case("branch").then_some(value)
        })?;
        value.map(str::trim)
    }

    /// `Some(None)` for a flag (`;rport`), `Some(Some(v))` for `;name=v`, `None` when
    /// absent. Names compare case-insensitively.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write_params(f, pairs(&self.params))
    }
}

#[cfg(test)]
mod tests {

    /// A header name as a client may write it: a known one (or its compact form) in any
    /// case, or one of a few others, with spaces or not.
    fn header_name() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let names: Vec<&str> = KNOWN
            .iter()
            .copied()
            .chain(COMPACT.iter().map(|(short, _)| *short))
            .chain([
                "X-Tandem-Mode",
                "Viaa",
                "Vi",
                "Fro",
                "CSeqq",
                "Subject",
                "Q",
            ])
            .collect();
        (proptest::sample::select(names), any::<u64>()).prop_map(|(name, cases)| {
            name.chars()
                .enumerate()
                .map(|(i, c)| {
                    if cases >> (i % 64) & 1 == 1 {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    }
                })
                .collect()
        })
    }

    #[test]
    fn every_known_name_has_its_own_number() {
        for (i, name) in KNOWN.iter().enumerate() {
            assert_eq!(usize::from(kind_of(name)), i + 1, "{name}");
            assert_eq!(
                usize::from(kind_of(&name.to_ascii_uppercase())),
                i + 1,
                "{name}"
            );
        }
        for (short, long) in COMPACT {
            assert_eq!(kind_of(short), kind_of(long), "{short}");
        }
        for other in ["", "X", "Vias", "T\u{f6}", "Call-IX", "Subject", "Contacts"] {
            assert_eq!(kind_of(other), 0, "{other}");
        }
    }

    proptest::proptest! {
        /// Looking fields up by their number finds what comparing names finds.
        #[test]
        fn a_field_is_found_by_its_number_as_by_its_name(
            fields in proptest::collection::vec((header_name(), "[a-z0-9]{0,4}"), 0..12),
            wanted in header_name(),
        ) {
            let mut headers = Headers::new();
            for (name, value) in &fields {
                headers.push(name, value);
            }
            let by_name: Vec<&str> = fields
                .iter()
                .filter(|(name, _)| same_header(name, &wanted))
                .map(|(_, value)| value.as_str())
                .collect();
            proptest::prop_assert_eq!(headers.fields_named(&wanted).collect::<Vec<_>>(), by_name.clone());
            proptest::prop_assert_eq!(headers.get(&wanted), by_name.first().copied());
            let mut removed = headers.clone();
            removed.remove(&wanted);
            proptest::prop_assert_eq!(removed.fields.len(), fields.len() - by_name.len());
            proptest::prop_assert!(removed.get(&wanted).is_none());
        }
    }
    use super::*;
    use crate::uri::{NameAddr, Uri};
    use proptest::prelude::*;

    /// `scan_head` as it was, a byte at a time: the model the line-wise one must match.
    fn scan_head_bytewise(b: &[u8]) -> Result<Scan, ParseError> {
        let mut lines = Vec::new();
        let mut line_start = 0;
        for (i, &c) in b.iter().enumerate() {
            if i >= MAX_HEADER_BYTES {
                return Err(ParseError::TooLarge {
                    size: i + 1,
                    limit: MAX_HEADER_BYTES,
                });
            }
            if c == b'\n' {
                let end = if i > line_start && b[i - 1] == b'\r' {
                    i - 1
                } else {
                    i
                };
                if end > line_start {
                    lines.push((line_start, end));
                    line_start = i + 1;
                } else if lines.is_empty() {
                    return Err(malformed("empty start line"));
                } else {
                    return Ok(Scan {
                        lines,
                        end: Some(i + 1),
                    });
                }
            } else if c == b'\r' {
                if b.get(i + 1).is_some_and(|n| *n != b'\n') {
                    return Err(malformed("bare CR in header section"));
                }
            } else if c != b'\t' && (c.is_ascii_control()) {
                return Err(malformed(format!(
                    "control character 0x{c:02x} in header section"
                )));
            }
        }
        Ok(Scan { lines, end: None })
    }

    /// Pieces of a header section: text, line ends (mostly CRLF), control bytes, any byte.
    fn head_piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            8 => prop::sample::select(vec![b"ab".to_vec(), b": ".to_vec(), b"1".to_vec()]),
            4 => Just(b"\r\n".to_vec()),
            1 => Just(b"\n".to_vec()),
            1 => Just(b"\r".to_vec()),
            1 => prop::sample::select((0u8..0x20).chain([b'\t', 0x7f]).collect::<Vec<u8>>())
                .prop_map(|b| vec![b]),
            1 => any::<u8>().prop_map(|b| vec![b]),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]
        #[test]
        fn scanning_line_by_line_is_scanning_byte_by_byte(
            pieces in prop::collection::vec(head_piece(), 0..120),
            pad in prop::sample::select(vec![0usize, MAX_HEADER_BYTES - 100, MAX_HEADER_BYTES + 10]),
        ) {
            // Some inputs long enough to meet the header limit: a long first line.
            let mut b = vec![b'a'; pad];
            b.extend(pieces.concat());
            prop_assert_eq!(scan_head(&b), scan_head_bytewise(&b));
        }
    }

    /// Header sections made of pieces that meet every case of header parsing: Content-Length
    /// (long, compact, folded, duplicated), other fields, continuations, lines without a
    /// colon, bad names, bytes that are not UTF-8.
    fn header_piece() -> impl Strategy<Value = Vec<u8>> {
        prop::sample::select(vec![
            b"Content-Length: 12\r\n".to_vec(),
            b"content-length:12 \r\n".to_vec(),
            b"l: 7\r\n".to_vec(),
            b"Content-Length:\r\n".to_vec(),
            b"Content-Length: x\r\n".to_vec(),
            b" 3\r\n".to_vec(),
            b"\t \r\n".to_vec(),
            b"Via: SIP/2.0/UDP a\r\n".to_vec(),
            b"no colon\r\n".to_vec(),
            b"b@d: 1\r\n".to_vec(),
            b"To: \xff\r\n".to_vec(),
            b"Content-Length: 99999999999999999999999\r\n".to_vec(),
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]
        #[test]
        fn framing_finds_the_content_length_that_parsing_does(
            pieces in prop::collection::vec(header_piece(), 0..8),
        ) {
            let head = [b"REGISTER sip:a SIP/2.0\r\n".to_vec(), pieces.concat(), b"\r\n".to_vec()].concat();
            let scan = scan_head(&head).unwrap();
            let lines = &scan.lines[1..];
            let parsed = parse_header_lines(&head, lines).and_then(|h| content_length(&h));
            prop_assert_eq!(content_length_of_lines(&head, lines), parsed);
        }
    }

    proptest! {
        #[test]
        fn blanks_are_trimmed_as_the_characters_would_be(s in "[ \t]{0,3}\\PC{0,12}[ \t]{0,3}") {
            prop_assert_eq!(trim_blanks_end(trim_blanks_start(&s)), s.trim_matches([' ', '\t']));
            prop_assert_eq!(trim_blanks_end(&s), s.trim_end_matches([' ', '\t']));
        }
    }

    /// Via header values from pieces that meet every case of reading a branch: in any
    /// case, spaced, a flag, twice, inside a quoted parameter, in a second Via of the field.
    fn via_value() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            ";branch=z9hG4bK1",
            ";BRANCH = z9hG4bK2 ",
            ";branch",
            ";branch=",
            ";rport",
            ";received=192.0.2.1",
            ";x=\"a;branch=q,b\"",
            ", SIP/2.0/TCP other;branch=z9hG4bK3",
            ",",
            " ",
            ";",
            "=",
        ]);
        (
            prop::sample::select(vec![
                "SIP/2.0/UDP a.example:5060",
                "SIP/2.0/TLS [::1]",
                "x",
                "",
            ]),
            prop::collection::vec(piece, 0..6),
        )
            .prop_map(|(sent, pieces)| format!("{sent}{}", pieces.concat()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]
        #[test]
        fn the_branch_read_in_place_is_the_parsed_top_vias(
            vias in prop::collection::vec(via_value(), 1..3),
        ) {
            let mut headers = Headers::new();
            for via in &vias {
                headers.push("Via", via);
            }
            let request = Request { method: Method::Register, uri: "sip:a".into(), headers, body: vec![] };
            if let Some(top) = request.top_via() {
                prop_assert_eq!(request.top_via_branch(), top.branch());
            }
            for via in &vias {
                if let Ok(parsed) = Via::parse(via) {
                    prop_assert_eq!(Via::branch_in(via), parsed.branch());
                }
            }
        }
    }

    /// RFC 3261 §24.1 / §10: Bob registers.
    const REGISTER: &str = "REGISTER sip:registrar.biloxi.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP bobspc.biloxi.com:5060;branch=z9hG4bKnashds7\r\n\
        Max-Forwards: 70\r\n\
        To: Bob <sip:bob@biloxi.com>\r\n\
        From: Bob <sip:bob@biloxi.com>;tag=456248\r\n\
        Call-ID: 843817637684230@998sdasdh09\r\n\
        CSeq: 1826 REGISTER\r\n\
        Contact: <sip:bob@192.0.2.4>\r\n\
        Expires: 7200\r\n\
        Content-Length: 0\r\n\
        \r\n";

    /// RFC 3261 §24.1's answer, with its folded Via.
    const REGISTER_OK: &str = "SIP/2.0 200 OK\r\n\
        Via: SIP/2.0/UDP bobspc.biloxi.com:5060;branch=z9hG4bKnashds7\r\n \
        ;received=192.0.2.4\r\n\
        To: Bob <sip:bob@biloxi.com>;tag=2493k59kd\r\n\
        From: Bob <sip:bob@biloxi.com>;tag=456248\r\n\
        Call-ID: 843817637684230@998sdasdh09\r\n\
        CSeq: 1826 REGISTER\r\n\
        Contact: <sip:bob@192.0.2.4>\r\n\
        Expires: 7200\r\n\
        Content-Length: 0\r\n\
        \r\n";

    fn request(bytes: &[u8]) -> Request {
        match Message::parse(bytes) {
            Ok(Message::Request(r)) => r,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    fn response(bytes: &[u8]) -> Response {
        match Message::parse(bytes) {
            Ok(Message::Response(r)) => r,
            other => panic!("expected a response, got {other:?}"),
        }
    }

    #[test]
    fn rfc3261_register() {
        let r = request(REGISTER.as_bytes());
        assert_eq!(r.method, Method::Register);
        assert_eq!(r.uri, "sip:registrar.biloxi.com");
        assert_eq!(r.cseq(), Some((1826, Method::Register)));
        assert_eq!(r.call_id(), Some("843817637684230@998sdasdh09"));
        assert_eq!(r.expires(), Some(7200));
        assert!(r.body.is_empty());
        let via = r.top_via().unwrap();
        assert_eq!(via.transport, "UDP");
        assert_eq!(via.host, "bobspc.biloxi.com");
        assert_eq!(via.port, Some(5060));
        assert_eq!(via.branch(), Some("z9hG4bKnashds7"));
        let to = NameAddr::parse(r.headers.get("to").unwrap()).unwrap();
        assert_eq!(to.uri.aor(), "sip:bob@biloxi.com");
        let contact = NameAddr::parse(r.headers.get_all("Contact")[0]).unwrap();
        assert_eq!(contact.uri, Uri::parse("sip:bob@192.0.2.4").unwrap());
        // Serialising gives back the original bytes.
        assert_eq!(String::from_utf8(r.to_bytes()).unwrap(), REGISTER);
    }

    #[test]
    fn rfc3261_register_response_and_for_request() {
        let ok = response(REGISTER_OK.as_bytes());
        assert_eq!(ok.status, 200);
        assert_eq!(ok.reason, "OK");
        assert_eq!(ok.cseq(), Some((1826, Method::Register)));
        let via = Via::parse(ok.headers.get("Via").unwrap()).unwrap();
        assert_eq!(via.param("received"), Some(Some("192.0.2.4")));

        let req = request(REGISTER.as_bytes());
        let built = Response::for_request(&req, 200, "OK", Some("2493k59kd"));
        let names: Vec<_> = built.headers.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["Via", "From", "To", "Call-ID", "CSeq"]);
        assert_eq!(built.headers.get("To"), ok.headers.get("To"));
        assert_eq!(built.headers.get("From"), ok.headers.get("From"));
        // An existing To tag is kept.
        let tagged = REGISTER.replace(
            "To: Bob <sip:bob@biloxi.com>",
            "To: Bob <sip:bob@biloxi.com>;tag=2493k59kd",
        );
        let again = Response::for_request(&request(tagged.as_bytes()), 200, "OK", Some("x"));
        assert_eq!(again.headers.get("To"), ok.headers.get("To"));
        let no_tag = Response::for_request(&req, 100, "Trying", None);
        assert_eq!(no_tag.headers.get("To"), Some("Bob <sip:bob@biloxi.com>"));
    }

    #[test]
    fn for_request_copies_every_via_in_order() {
        let raw = "INVITE sip:bob@b SIP/2.0\r\nv: SIP/2.0/UDP p1;branch=z9hG4bK1, SIP/2.0/TCP p2;branch=z9hG4bK2\r\nMax-Forwards: 70\r\nVia: SIP/2.0/UDP p3;branch=z9hG4bK3\r\nf: <sip:a@a>;tag=1\r\nt: sip:bob@b\r\ni: abc\r\nCSeq: 1 INVITE\r\n\r\n";
        let req = request(raw.as_bytes());
        let resp = Response::for_request(&req, 180, "Ringing", Some("t1"));
        let vias: Vec<_> = resp.headers.get_all("Via");
        assert_eq!(vias.len(), 3);
        assert!(vias[0].ends_with("z9hG4bK1") && vias[2].ends_with("z9hG4bK3"));
        assert_eq!(resp.headers.get("To"), Some("sip:bob@b;tag=t1"));
        assert_eq!(
            NameAddr::parse(resp.headers.get("To").unwrap())
                .unwrap()
                .tag(),
            Some("t1")
        );
        let bytes = resp.to_bytes();
        assert!(bytes.starts_with(b"SIP/2.0 180 Ringing\r\n"));
        assert_eq!(response(&bytes).headers, {
            let mut h = resp.headers.clone();
            h.push("Content-Length", "0");
            h
        });
    }

    #[test]
    fn compact_headers() {
        let raw = "MESSAGE sip:bob@b SIP/2.0\r\n\
            v: SIP/2.0/TCP a.example:5061;branch=z9hG4bKx\r\n\
            f: \"A\" <sip:a@a>;tag=1\r\n\
            t: <sip:bob@b>\r\n\
            i: compact-call\r\n\
            CSeq: 7 MESSAGE\r\n\
            c: text/plain\r\n\
            k: path\r\n\
            s: hello\r\n\
            l: 5\r\n\
            \r\n\
            hello";
        let r = request(raw.as_bytes());
        assert_eq!(r.method, Method::Message);
        assert_eq!(r.call_id(), Some("compact-call"));
        assert_eq!(r.headers.get("Content-Type"), Some("text/plain"));
        assert_eq!(r.headers.get("SUPPORTED"), Some("path"));
        assert_eq!(r.headers.get("Subject"), Some("hello"));
        assert_eq!(r.headers.get("C"), Some("text/plain"));
        assert_eq!(r.body, b"hello");
        assert_eq!(r.top_via().unwrap().transport, "TCP");
        let out = String::from_utf8(r.to_bytes()).unwrap();
        assert!(out.contains("\r\nContent-Length: 5\r\n\r\nhello"));
        assert!(!out.contains("\r\nl: "));
    }

    #[test]
    fn folded_headers_and_bare_lf() {
        let raw = "\r\n\r\nOPTIONS sip:b SIP/2.0\n\
            Via: SIP/2.0/UDP h\n\
            \t;branch=z9hG4bKf\n\
            From: <sip:a@a>;tag=1\n\
            To:\n   <sip:b@b>\n\
            Call-ID: c\n\
            CSeq: 2\n  OPTIONS\n\
            Subject: a\n  b\n \n\
            \n\
            body-without-length";
        let r = request(raw.as_bytes());
        assert_eq!(r.method, Method::Options);
        assert_eq!(r.headers.get("Via"), Some("SIP/2.0/UDP h ;branch=z9hG4bKf"));
        assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bKf"));
        assert_eq!(r.headers.get("To"), Some("<sip:b@b>"));
        assert_eq!(r.headers.get("Subject"), Some("a b"));
        assert_eq!(r.cseq(), Some((2, Method::Options)));
        assert_eq!(r.body, b"body-without-length");
    }

    #[test]
    fn body_length_rules() {
        let head = "SIP/2.0 200 OK\r\nFrom: <sip:a@a>;tag=1\r\nTo: <sip:b@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n";
        let r = response(format!("{head}Content-Length: 3\r\n\r\nabcdef").as_bytes());
        assert_eq!(r.body, b"abc");
        let r = response(format!("{head}\r\nabcdef").as_bytes());
        assert_eq!(r.body, b"abcdef");
        assert_eq!(
            Message::parse(format!("{head}Content-Length: 9\r\n\r\nabc").as_bytes()),
            Err(ParseError::Malformed(
                "body shorter than Content-Length".into()
            ))
        );
        let r = response(format!("{head}l: 3\r\nContent-Length: 003\r\n\r\nabc").as_bytes());
        assert_eq!(r.body, b"abc");
        assert!(
            Message::parse(format!("{head}l: 2\r\nContent-Length: 3\r\n\r\nabc").as_bytes())
                .is_err()
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let no_call_id = REGISTER.replace("Call-ID: 843817637684230@998sdasdh09\r\n", "");
        assert_eq!(
            Message::parse(no_call_id.as_bytes()),
            Err(ParseError::Malformed("missing Call-ID header".into()))
        );
        let mismatch = REGISTER.replace("1826 REGISTER", "1826 INVITE");
        assert!(
            matches!(Message::parse(mismatch.as_bytes()), Err(ParseError::Malformed(m)) if m.contains("CSeq"))
        );
        let lowercase_method = REGISTER
            .replace("REGISTER sip:", "register sip:")
            .replace("1826 REGISTER", "1826 register");
        let r = request(lowercase_method.as_bytes());
        assert_eq!(r.method, Method::Other("register".into()));
        assert_eq!(Message::parse(b""), Err(ParseError::Incomplete));
        assert_eq!(Message::parse(b"\r\n\r\n"), Err(ParseError::Incomplete));
        assert_eq!(
            Message::parse(&REGISTER.as_bytes()[..60]),
            Err(ParseError::Incomplete)
        );
    }

    #[test]
    fn size_limits() {
        let big_header = format!(
            "{}X-Big: {}\r\n\r\n",
            REGISTER.trim_end(),
            "a".repeat(MAX_HEADER_BYTES)
        );
        assert!(matches!(
            Message::parse(big_header.as_bytes()),
            Err(ParseError::TooLarge {
                limit: MAX_HEADER_BYTES,
                ..
            })
        ));
        let mut big = REGISTER
            .replace(
                "Content-Length: 0",
                &format!("Content-Length: {MAX_MESSAGE_BYTES}"),
            )
            .into_bytes();
        big.resize(big.len() + MAX_MESSAGE_BYTES, b'x');
        assert!(matches!(
            Message::parse(&big),
            Err(ParseError::TooLarge {
                limit: MAX_MESSAGE_BYTES,
                ..
            })
        ));
    }

    #[test]
    fn tcp_framing_pipelined() {
        let first = REGISTER.as_bytes();
        let second_text = REGISTER
            .replace("Content-Length: 0", "Content-Length: 4")
            .replace("1826", "1827")
            + "ping";
        let second = second_text.as_bytes();
        let mut stream = b"\r\n\r\n".to_vec();
        stream.extend_from_slice(first);
        stream.extend_from_slice(second);
        stream.extend_from_slice(&first[..40]);

        let n1 = frame_length(&stream).unwrap().unwrap();
        assert_eq!(n1, 4 + first.len());
        assert_eq!(
            request(&stream[..n1]).cseq(),
            Some((1826, Method::Register))
        );
        let rest = &stream[n1..];
        let n2 = frame_length(rest).unwrap().unwrap();
        assert_eq!(n2, second.len());
        let r2 = request(&rest[..n2]);
        assert_eq!(r2.body, b"ping");
        assert_eq!(r2.cseq(), Some((1827, Method::Register)));
        let rest = &rest[n2..];
        assert_eq!(frame_length(rest), Ok(None));
        // Every strict prefix of a frame needs more bytes.
        for cut in 0..second.len() {
            assert_eq!(frame_length(&second[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn tcp_framing_errors() {
        let no_length = REGISTER.replace("Content-Length: 0\r\n", "");
        assert!(matches!(
            frame_length(no_length.as_bytes()),
            Err(ParseError::Malformed(_))
        ));
        let bad = REGISTER.replace("Content-Length: 0", "Content-Length: -1");
        assert!(matches!(
            frame_length(bad.as_bytes()),
            Err(ParseError::Malformed(_))
        ));
        let huge = REGISTER.replace("Content-Length: 0", "Content-Length: 65000");
        assert!(matches!(
            frame_length(huge.as_bytes()),
            Err(ParseError::TooLarge { .. })
        ));
        let endless = format!("{}X: {}", REGISTER.trim_end(), "a".repeat(MAX_HEADER_BYTES));
        assert!(matches!(
            frame_length(endless.as_bytes()),
            Err(ParseError::TooLarge { .. })
        ));
        assert_eq!(frame_length(b"\r\n\r\n"), Ok(None));
        assert!(frame_length(&[b'\n'; MAX_HEADER_BYTES + 1]).is_err());
    }

    #[test]
    fn headers_api() {
        let mut h = Headers::new();
        h.push(
            "Via",
            "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2",
        );
        h.push("Contact", "\"A, B\" <sip:a@x;p=1,2>;q=0.5, <sip:b@y>");
        h.push("v", "SIP/2.0/UDP c;branch=z9hG4bK3");
        h.push("Subject", "a, b");
        h.push("subject", "c");
        assert_eq!(
            h.get("VIA"),
            Some("SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2")
        );
        assert_eq!(h.get_all("v").len(), 3);
        assert_eq!(
            h.get_all("m"),
            ["\"A, B\" <sip:a@x;p=1,2>;q=0.5", "<sip:b@y>"]
        );
        assert_eq!(h.get_all("Subject"), ["a, b", "c"]);
        assert_eq!(h.get("Nope"), None);
        h.set("Via", "SIP/2.0/TCP z");
        assert_eq!(h.get_all("Via"), ["SIP/2.0/TCP z"]);
        assert_eq!(h.iter().next(), Some(("Via", "SIP/2.0/TCP z")));
        h.set("X-New", "1");
        assert_eq!(h.iter().last(), Some(("X-New", "1")));
        h.remove("s");
        assert_eq!(h.get("Subject"), None);
        assert_eq!(h.iter().count(), 3);
    }

    #[test]
    fn via_parse_and_display() {
        let v = Via::parse(
            "SIP / 2.0 / udp  [2001:db8::9]:5060 ; branch=z9hG4bKabc ; rport ;received=1.2.3.4",
        )
        .unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "[2001:db8::9]");
        assert_eq!(v.param("rport"), Some(None));
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP [2001:db8::9]:5060;branch=z9hG4bKabc;rport;received=1.2.3.4"
        );
        let no_branch = Via::parse("SIP/2.0/TCP host").unwrap();
        assert_eq!(no_branch.branch(), None);
        assert_eq!(Via::parse(&no_branch.to_string()).unwrap(), no_branch);
        for bad in [
            "",
            "SIP/2.0/UDP",
            "SIP/3.0/UDP h",
            "HTTP/2.0/UDP h",
            "SIP/2.0/UDPh",
            "SIP/2.0/UDP h:x",
            "SIP/2.0/UDP h;;x",
            "SIP/2.0/UDP a, SIP/2.0/UDP b",
        ] {
            assert!(Via::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn methods() {
        for m in [
            "REGISTER",
            "OPTIONS",
            "MESSAGE",
            "INVITE",
            "ACK",
            "BYE",
            "CANCEL",
            "SUBSCRIBE",
        ] {
            assert_eq!(Method::parse(m).as_str(), m);
            assert_eq!(Method::parse(m).to_string(), m);
        }
        assert_eq!(Method::parse("Invite"), Method::Other("Invite".into()));
    }

    #[test]
    fn expires_and_to_bytes_sanitises() {
        let mut r = request(REGISTER.as_bytes());
        r.headers.set("Expires", "99999999999");
        assert_eq!(r.expires(), Some(u32::MAX));
        r.headers.set("Expires", "soon");
        assert_eq!(r.expires(), None);
        r.headers.push("X-Evil", "a\r\nVia: injected");
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(text.contains("X-Evil: a  Via: injected\r\n"));
    }

    proptest::proptest! {
        #[test]
        fn a_field_is_written_with_each_line_break_a_space(
            text in "[a\r\n :]{0,40}|\\PC{0,40}",
        ) {
            let mut out = b"x".to_vec();
            push_clean(&mut out, &text);
            let byte_by_byte: Vec<u8> = std::iter::once(b'x')
                .chain(text.bytes().map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }))
                .collect();
            proptest::prop_assert_eq!(out, byte_by_byte);
        }
    }
}
