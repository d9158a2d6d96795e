//! XMPP's XML, as a server-to-server stream carries it: the stream header, then one
//! top-level element (a stanza, or a negotiation element) after another, read with
//! quick-xml from what has arrived so far. Pure, bounded, never panics: a stanza past
//! [`MAX_STANZA`] bytes or [`MAX_DEPTH`] levels is refused, and what is not well-formed XML
//! is a reason for a `bad-format` stream error, not a crash.
//!
//! A stanza is read as a small tree ([`Element`]) with every name resolved to its
//! namespace, since a peer may bind any prefix (`db:`, or none with a default namespace)
//! to the dialback or streams namespaces. Elements are written as text ([`Element::to_xml`])
//! with every value escaped.

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, ResolveResult};

/// The namespace of stream elements (`<stream:stream>`, `<stream:features>`, `<stream:error>`).
pub const STREAMS_NS: &str = "http://etherx.jabber.org/streams";
/// Stanzas between servers.
pub const SERVER_NS: &str = "jabber:server";
/// Server Dialback's elements (`<db:result>`, `<db:verify>`).
pub const DIALBACK_NS: &str = "jabber:server:dialback";
/// Dialback's stream feature (XEP-0220 §2.4).
pub const DIALBACK_FEATURE_NS: &str = "urn:xmpp:features:dialback";
/// STARTTLS.
pub const TLS_NS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// SASL.
pub const SASL_NS: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// Stream error conditions.
pub const STREAM_ERRORS_NS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// Stanza error conditions.
pub const STANZA_ERRORS_NS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// The most bytes one stanza may take: messages between people are far smaller.
pub const MAX_STANZA: usize = 64 * 1024;
/// The deepest a stanza may nest.
pub const MAX_DEPTH: usize = 16;
/// The most of a stream's first bytes read for its header.
pub const MAX_STREAM_HEADER: usize = 4096;

/// What an XMPP stream header said, or why it is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamHeader {
    /// A server-to-server stream: `to` and `from` (empty when not said), its `id`, and
    /// how many bytes of the input the header took.
    Open {
        to: String,
        from: String,
        id: String,
        /// Whether the header declared the dialback namespace (`xmlns:db`): a peer that
        /// speaks dialback without the stream feature (older servers) does.
        dialback: bool,
        length: usize,
    },
    /// Not a stream header: the reason.
    Bad(String),
    /// More bytes are needed.
    Incomplete,
}

/// Reads an XMPP stream header (`<?xml ...?>` optional, then `<stream:stream ...>`) from
/// the start of `bytes`: the element is the streams namespace's `stream` whatever its
/// prefix, attribute values may hold entities and `>`, and the default namespace must be
/// `jabber:server`.
pub fn parse_stream_header(bytes: &[u8]) -> StreamHeader {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        // A character cut at the end of what has arrived: read what is whole.
        Err(e) if e.error_len().is_none() && bytes.len() <= MAX_STREAM_HEADER => {
            std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return StreamHeader::Bad("the stream is not UTF-8".into()),
    };
    let incomplete = || {
        if bytes.len() > MAX_STREAM_HEADER {
            StreamHeader::Bad("an endless stream header".into())
        } else {
            StreamHeader::Incomplete
        }
    };
    let mut reader = quick_xml::NsReader::from_str(text);
    loop {
        let (namespace, event) = match reader.read_resolved_event() {
            Ok(read) => read,
            Err(quick_xml::Error::Syntax(_)) => return incomplete(),
            Err(e) => return StreamHeader::Bad(format!("the stream header is not XML: {e}")),
        };
        let element = match event {
            Event::Decl(_) => continue,
            Event::Text(t) if t.iter().all(u8::is_ascii_whitespace) => continue,
            Event::Text(_) | Event::GeneralRef(_) => {
                return StreamHeader::Bad("text before the stream header".into());
            }
            Event::Eof => return incomplete(),
            Event::Start(e) => e,
            Event::Empty(_) => {
                return StreamHeader::Bad("the stream header closes itself".into());
            }
            Event::Comment(_) | Event::PI(_) | Event::DocType(_) | Event::CData(_) => {
                return StreamHeader::Bad(
                    "a comment, processing instruction, DTD or CDATA before the stream header (RFC 6120 forbids them)"
                        .into(),
                );
            }
            Event::End(_) => {
                return StreamHeader::Bad("an end tag before the stream header".into());
            }
        };
        let in_streams =
            matches!(namespace, ResolveResult::Bound(Namespace(ns)) if ns == STREAMS_NS.as_bytes());
        if element.local_name().as_ref() != b"stream" || !in_streams {
            let name: String = String::from_utf8_lossy(element.name().as_ref())
                .chars()
                .take(40)
                .collect();
            return StreamHeader::Bad(format!(
                "the first element is <{name}>, not the stream header (<stream:stream xmlns:stream='{STREAMS_NS}'>)"
            ));
        }
        let (mut to, mut from, mut id, mut default_ns, mut dialback) =
            (String::new(), String::new(), String::new(), None, false);
        for attribute in element.attributes() {
            let attribute = match attribute {
                Ok(a) => a,
                Err(e) => return StreamHeader::Bad(format!("a malformed attribute: {e}")),
            };
            let value = match attribute.unescape_value() {
                Ok(v) => v.into_owned(),
                Err(e) => return StreamHeader::Bad(format!("a malformed attribute value: {e}")),
            };
            match attribute.key.as_ref() {
                b"to" => to = value,
                b"from" => from = value,
                b"id" => id = value,
                b"xmlns" => default_ns = Some(value),
                key if key.starts_with(b"xmlns:") && value == DIALBACK_NS => dialback = true,
                _ => {}
            }
        }
        if default_ns.as_deref() != Some(SERVER_NS) {
            return StreamHeader::Bad(
                "not a server-to-server stream (xmlns is not jabber:server)".into(),
            );
        }
        return StreamHeader::Open {
            to,
            from,
            id,
            dialback,
            length: usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX),
        };
    }
}

/// One element of a stanza, its names resolved.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    /// The local name: `message`, `result`, `body`.
    pub name: String,
    /// Its namespace: `jabber:server`, `jabber:server:dialback`...
    pub ns: String,
    /// Attributes other than namespace declarations, by their name as written (`to`,
    /// `xml:lang`).
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    /// The text directly inside it, unescaped.
    pub text: String,
}

impl Element {
    pub fn new(name: &str, ns: &str) -> Element {
        Element {
            name: name.into(),
            ns: ns.into(),
            ..Element::default()
        }
    }

    /// Whether it is `name` in `ns`.
    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn with_attr(mut self, name: &str, value: &str) -> Element {
        self.attrs.push((name.into(), value.into()));
        self
    }

    pub fn with_child(mut self, child: Element) -> Element {
        self.children.push(child);
        self
    }

    pub fn with_text(mut self, text: &str) -> Element {
        self.text = text.into();
        self
    }

    /// The first child named `name` in `ns`.
    pub fn child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(name, ns))
    }

    /// The element as XML, inside a stream whose default namespace is `jabber:server`
    /// and which declares `stream:` and `db:`: those are written with their prefix,
    /// any other namespace with an `xmlns` of its own.
    pub fn to_xml(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, SERVER_NS);
        out
    }

    fn write(&self, out: &mut String, parent_ns: &str) {
        let (qname, declare) = match self.ns.as_str() {
            STREAMS_NS => (format!("stream:{}", self.name), false),
            DIALBACK_NS => (format!("db:{}", self.name), false),
            ns => (self.name.clone(), ns != parent_ns),
        };
        out.push('<');
        out.push_str(&qname);
        if declare {
            out.push_str(" xmlns='");
            out.push_str(&escape(&self.ns));
            out.push('\'');
        }
        for (name, value) in &self.attrs {
            out.push(' ');
            out.push_str(name);
            out.push_str("='");
            out.push_str(&escape(value));
            out.push('\'');
        }
        if self.children.is_empty() && self.text.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        out.push_str(&escape(&self.text));
        // Children of a prefixed element are in the default namespace unless they say.
        let inner = match self.ns.as_str() {
            STREAMS_NS | DIALBACK_NS => parent_ns,
            ns => ns,
        };
        for child in &self.children {
            child.write(out, inner);
        }
        out.push_str("</");
        out.push_str(&qname);
        out.push('>');
    }
}

/// Text safe in XML content and attribute values: escaped, and without the characters
/// XML 1.0 does not allow at all (control characters a user's message may carry would
/// make the partner close the stream).
pub fn escape(text: &str) -> String {
    if text.chars().all(xml_char) {
        return quick_xml::escape::escape(text).into_owned();
    }
    let allowed: String = text.chars().filter(|c| xml_char(*c)).collect();
    quick_xml::escape::escape(&allowed).into_owned()
}

/// Whether XML 1.0 allows `c` in a document (its `Char` production).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// What the next bytes of a stream hold after its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// A whole top-level element, and how many bytes it (and whitespace before it) took.
    Element(Element, usize),
    /// Only whitespace (a keepalive), this many bytes.
    Whitespace(usize),
    /// The peer closed the stream (`</stream:stream>`).
    End,
    /// More bytes are needed.
    Incomplete,
    /// Not well-formed, or past a limit: the reason.
    Bad(String),
}

/// The namespaces a stream's header declared, so that its stanzas are read with them in
/// scope: a synthetic start tag written before what is parsed.
#[derive(Debug, Clone)]
pub struct Scope {
    open: String,
}

impl Default for Scope {
    fn default() -> Scope {
        Scope::of_header(&[])
    }
}

impl Scope {
    /// The scope of a stream whose header declared `declarations` (prefix, namespace);
    /// the default namespace is `jabber:server` and `stream:` the streams namespace
    /// unless declared otherwise.
    pub fn of_header(declarations: &[(String, String)]) -> Scope {
        Scope::named("stream", declarations)
    }

    /// The scope of a stream whose header element was written with `prefix` (`stream`,
    /// or whatever the peer bound the streams namespace to), so that its closing tag
    /// (`</s:stream>`) closes the synthetic one.
    fn named(prefix: &str, declarations: &[(String, String)]) -> Scope {
        let mut open =
            format!("<{prefix}:stream xmlns='{SERVER_NS}' xmlns:{prefix}='{STREAMS_NS}'");
        if prefix != "stream" {
            open.push_str(&format!(" xmlns:stream='{STREAMS_NS}'"));
        }
        for (declared, ns) in declarations {
            if declared == prefix || declared == "stream" || declared.is_empty() {
                continue;
            }
            open.push_str(&format!(" xmlns:{declared}='{}'", escape(ns)));
        }
        open.push('>');
        Scope { open }
    }

    /// The scope declared by a stream header (its bytes).
    pub fn from_header_bytes(header: &[u8]) -> Scope {
        let text = String::from_utf8_lossy(header);
        let mut reader = quick_xml::Reader::from_str(&text);
        let mut declarations = Vec::new();
        let mut prefix = "stream".to_string();
        while let Ok(event) = reader.read_event() {
            match event {
                Event::Start(e) | Event::Empty(e) => {
                    if let Some(p) = e.name().prefix() {
                        let p = String::from_utf8_lossy(p.as_ref()).into_owned();
                        // Only a name XML allows: it is written into the synthetic tag.
                        if p.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                            && p.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
                        {
                            prefix = p;
                        }
                    }
                    for a in e.attributes().flatten() {
                        if let Some(declared) = a.key.as_ref().strip_prefix(b"xmlns:")
                            && let Ok(v) = a.unescape_value()
                        {
                            let declared = String::from_utf8_lossy(declared).into_owned();
                            if declared
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                            {
                                declarations.push((declared, v.into()));
                            }
                        }
                    }
                    break;
                }
                Event::Eof => break,
                _ => {}
            }
        }
        Scope::named(&prefix, &declarations)
    }

    /// Reads the next top-level element of the stream from `bytes`.
    pub fn next(&self, bytes: &[u8]) -> Next {
        let whole = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) if e.error_len().is_none() => {
                std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default()
            }
            Err(_) => return Next::Bad("the stream is not UTF-8".into()),
        };
        // Whitespace between stanzas is a keepalive.
        let trimmed = whole.trim_start_matches([' ', '\t', '\r', '\n']);
        let skipped = whole.len() - trimmed.len();
        if trimmed.is_empty() {
            return if skipped > 0 {
                Next::Whitespace(skipped)
            } else {
                Next::Incomplete
            };
        }
        // Look at no more than a stanza may take.
        let window = floor_char_boundary(trimmed, MAX_STANZA);
        let text = format!("{}{}", self.open, &trimmed[..window]);
        let over = trimmed.len() > MAX_STANZA;
        let incomplete = || {
            if over {
                Next::Bad(format!("a stanza longer than {MAX_STANZA} bytes"))
            } else {
                Next::Incomplete
            }
        };
        let mut reader = quick_xml::NsReader::from_str(&text);
        let mut stack: Vec<Element> = Vec::new();
        let mut opened = false;
        loop {
            let (namespace, event) = match reader.read_resolved_event() {
                Ok(read) => read,
                Err(quick_xml::Error::Syntax(_)) => return incomplete(),
                Err(e) => return Next::Bad(format!("not well-formed XML: {e}")),
            };
            match event {
                Event::Start(e) if !opened => {
                    // The synthetic stream tag.
                    let _ = e;
                    opened = true;
                }
                Event::Start(e) => {
                    if stack.len() >= MAX_DEPTH {
                        return Next::Bad(format!("a stanza nested deeper than {MAX_DEPTH}"));
                    }
                    match element_of(&e, &namespace) {
                        Ok(el) => stack.push(el),
                        Err(why) => return Next::Bad(why),
                    }
                }
                Event::Empty(e) => {
                    let el = match element_of(&e, &namespace) {
                        Ok(el) => el,
                        Err(why) => return Next::Bad(why),
                    };
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => return done(el, &reader, &self.open, skipped),
                    }
                }
                Event::End(_) => match stack.pop() {
                    Some(el) => match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => return done(el, &reader, &self.open, skipped),
                    },
                    // The stream's own end tag.
                    None => return Next::End,
                },
                Event::Text(t) => {
                    let text = match t.decode() {
                        Ok(t) => t,
                        Err(e) => return Next::Bad(format!("undecodable text: {e}")),
                    };
                    match stack.last_mut() {
                        Some(el) => el.text.push_str(&text),
                        None if text
                            .bytes()
                            .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')) => {}
                        None => return Next::Bad("text outside a stanza".into()),
                    }
                }
                Event::CData(t) => {
                    let Some(el) = stack.last_mut() else {
                        return Next::Bad("CDATA outside a stanza".into());
                    };
                    let text = String::from_utf8_lossy(&t);
                    if !text.chars().all(xml_char) {
                        return Next::Bad("a character XML does not allow".into());
                    }
                    el.text.push_str(&text);
                }
                Event::GeneralRef(r) => {
                    let Some(el) = stack.last_mut() else {
                        return Next::Bad("an entity outside a stanza".into());
                    };
                    match resolve_reference(&r) {
                        Some(c) => el.text.push(c),
                        None => {
                            return Next::Bad(format!(
                                "an unknown entity &{};",
                                String::from_utf8_lossy(&r)
                            ));
                        }
                    }
                }
                Event::Comment(_) | Event::PI(_) | Event::DocType(_) | Event::Decl(_) => {
                    return Next::Bad(
                        "a comment, processing instruction or DTD in the stream (RFC 6120 forbids them)"
                            .into(),
                    );
                }
                Event::Eof => return incomplete(),
            }
        }
    }
}

/// The element and the bytes of the input (after the synthetic tag) it took.
fn done(el: Element, reader: &quick_xml::NsReader<&[u8]>, open: &str, skipped: usize) -> Next {
    let end = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
    Next::Element(el, skipped + end.saturating_sub(open.len()))
}

/// The predefined entities and character references.
fn resolve_reference(r: &[u8]) -> Option<char> {
    match r {
        b"lt" => Some('<'),
        b"gt" => Some('>'),
        b"amp" => Some('&'),
        b"apos" => Some('\''),
        b"quot" => Some('"'),
        _ => {
            let r = std::str::from_utf8(r).ok()?.strip_prefix('#')?;
            let code = match r.strip_prefix('x') {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => r.parse().ok()?,
            };
            char::from_u32(code).filter(|c| xml_char(*c))
        }
    }
}

fn element_of(e: &BytesStart<'_>, namespace: &ResolveResult<'_>) -> Result<Element, String> {
    let ns = match namespace {
        ResolveResult::Bound(Namespace(ns)) => String::from_utf8_lossy(ns).into_owned(),
        ResolveResult::Unbound => String::new(),
        ResolveResult::Unknown(prefix) => {
            return Err(format!(
                "an undeclared prefix {}:",
                String::from_utf8_lossy(prefix)
            ));
        }
    };
    let mut el = Element::new(&String::from_utf8_lossy(e.local_name().as_ref()), &ns);
    for attribute in e.attributes() {
        let a = attribute.map_err(|e| format!("a malformed attribute: {e}"))?;
        let key = a.key.as_ref();
        if key == b"xmlns" || key.starts_with(b"xmlns:") {
            continue;
        }
        let value = a
            .unescape_value()
            .map_err(|e| format!("a malformed attribute value: {e}"))?;
        el.attrs.push((
            String::from_utf8_lossy(key).into_owned(),
            value.into_owned(),
        ));
    }
    Ok(el)
}

/// The largest index at most `at` that is a character boundary of `text`.
fn floor_char_boundary(text: &str, at: usize) -> usize {
    if at >= text.len() {
        return text.len();
    }
    (0..=at)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0)
}

/// The bare JID (`user@domain`) of a JID (`user@domain/resource`), and its domain, in
/// their one spelling (lower case); `None` when it is not `localpart@domain`.
pub fn bare_jid(jid: &str) -> Option<(String, String)> {
    let bare = jid.split('/').next()?;
    let (local, domain) = bare.split_once('@')?;
    let domain = topology::domain::normalize(domain)?;
    if local.is_empty()
        || local.len() > 1023
        || local.contains(['"', '&', '\'', '/', ':', '<', '>', '@', ' '])
    {
        return None;
    }
    Some((format!("{}@{domain}", local.to_lowercase()), domain))
}

/// The domain of a JID (`domain`, `user@domain`, `user@domain/resource`).
pub fn jid_domain(jid: &str) -> Option<String> {
    let bare = jid.split('/').next()?;
    let domain = bare.rsplit_once('@').map_or(bare, |(_, d)| d);
    topology::domain::normalize(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_headers_are_read_or_refused_with_a_reason() {
        let ok = "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' to='contoso.com' from='fabrikam.com' id='x1' version='1.0'>";
        match parse_stream_header(ok.as_bytes()) {
            StreamHeader::Open {
                to,
                from,
                id,
                dialback,
                length,
            } => {
                assert_eq!(
                    (to.as_str(), from.as_str(), id.as_str()),
                    ("contoso.com", "fabrikam.com", "x1")
                );
                assert!(dialback);
                assert_eq!(length, ok.len());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_stream_header(&ok.as_bytes()[..20]),
            StreamHeader::Incomplete
        );
        for bad in [
            &b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"[..],
            b"<html>",
            b"hello",
            &[0xff, 0xfe],
            b"<stream:stream to=contoso.com>",
            b"<stream:stream xmlns='jabber:server' xmlns:stream='urn:other'>",
            b"<!-- hi --><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>",
        ] {
            assert!(
                matches!(parse_stream_header(bad), StreamHeader::Bad(_)),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let odd = format!("<{}stream:stream>", "\u{85}".repeat(7));
        assert!(matches!(
            parse_stream_header(odd.as_bytes()),
            StreamHeader::Bad(_)
        ));
        // Another prefix, an entity and a `>` in a value.
        let header = "<s:stream xmlns='jabber:server' xmlns:s='http://etherx.jabber.org/streams' to='contoso.com' from='a&amp;b>c.example' version='1.0'>";
        assert!(matches!(
            parse_stream_header(header.as_bytes()),
            StreamHeader::Open { from, .. } if from == "a&b>c.example"
        ));
        let cut = "<stream:stream xmlns='jabber:server' to='é";
        assert_eq!(
            parse_stream_header(&cut.as_bytes()[..cut.len() - 1]),
            StreamHeader::Incomplete
        );
        let endless = format!(
            "<stream:stream xmlns='jabber:server' to='{}",
            "a".repeat(5000)
        );
        assert!(matches!(
            parse_stream_header(endless.as_bytes()),
            StreamHeader::Bad(_)
        ));
        assert_eq!(escape("<a b='c'>&"), "&lt;a b=&apos;c&apos;&gt;&amp;");
    }

    #[test]
    fn stanzas_are_read_one_at_a_time_with_the_headers_prefixes() {
        let scope = Scope::from_header_bytes(
            b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback'>",
        );
        let input = " \n<db:result from='jabber.example' to='contoso.com'>abc</db:result><message to='a@contoso.com' from='b@jabber.example/r' type='chat'><body>hi &amp; &#x263A; <![CDATA[<x>]]></body><active xmlns='http://jabber.org/protocol/chatstates'/></message></stream:stream>";
        let Next::Element(result, used) = scope.next(input.as_bytes()) else {
            panic!()
        };
        assert!(result.is("result", DIALBACK_NS));
        assert_eq!(result.attr("from"), Some("jabber.example"));
        assert_eq!(result.text, "abc");
        let rest = &input[used..];
        let Next::Element(message, used) = scope.next(rest.as_bytes()) else {
            panic!("{:?}", scope.next(rest.as_bytes()))
        };
        assert!(message.is("message", SERVER_NS));
        assert_eq!(
            message.child("body", SERVER_NS).unwrap().text,
            "hi & \u{263a} <x>"
        );
        assert!(
            message
                .child("active", "http://jabber.org/protocol/chatstates")
                .is_some()
        );
        assert_eq!(scope.next(&rest.as_bytes()[used..]), Next::End);
        // Cut anywhere, a stanza waits for the rest.
        for cut in 1..input.len() - 1 {
            if !input.is_char_boundary(cut) {
                continue;
            }
            let n = scope.next(&input.as_bytes()[..cut]);
            assert!(
                matches!(
                    n,
                    Next::Incomplete | Next::Whitespace(_) | Next::Element(..)
                ),
                "{cut}: {n:?}"
            );
        }
        assert!(matches!(scope.next(b"<a></b>"), Next::Bad(_)));
        assert!(matches!(scope.next(b"<x:a/>"), Next::Bad(_)));
        assert!(matches!(scope.next(b"hello"), Next::Bad(_)));
        let deep = "<a>".repeat(MAX_DEPTH + 1);
        assert!(matches!(scope.next(deep.as_bytes()), Next::Bad(_)));
        let long = format!("<message><body>{}</body></message>", "a".repeat(MAX_STANZA));
        assert!(matches!(scope.next(long.as_bytes()), Next::Bad(_)));
        assert_eq!(scope.next(b"  "), Next::Whitespace(2));
        // CDATA or non-XML whitespace between stanzas, a NUL by reference: refused.
        assert!(matches!(scope.next(b"<![CDATA[x]]>"), Next::Bad(_)));
        assert!(matches!(scope.next("\u{a0}<a/>".as_bytes()), Next::Bad(_)));
        assert!(matches!(scope.next(b"<a>&#0;</a>"), Next::Bad(_)));
        // A peer that bound the streams namespace to another prefix closes with it.
        let other = Scope::from_header_bytes(
            b"<s:stream xmlns='jabber:server' xmlns:s='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback'>",
        );
        assert!(matches!(
            other.next(b"<db:result from='a.example' to='b.example'>k</db:result>"),
            Next::Element(..)
        ));
        assert_eq!(other.next(b"</s:stream>"), Next::End);
    }

    #[test]
    fn elements_are_written_with_the_streams_prefixes_and_escaped() {
        let m = Element::new("message", SERVER_NS)
            .with_attr("to", "a@x'y")
            .with_child(Element::new("body", SERVER_NS).with_text("<hi>"));
        assert_eq!(
            m.to_xml(),
            "<message to='a@x&apos;y'><body>&lt;hi&gt;</body></message>"
        );
        let r = Element::new("result", DIALBACK_NS).with_attr("type", "valid");
        assert_eq!(r.to_xml(), "<db:result type='valid'/>");
        // Characters XML does not allow are left out, not sent to break the stream.
        assert_eq!(
            Element::new("body", SERVER_NS)
                .with_text("a\u{1}b\u{0}")
                .to_xml(),
            "<body>ab</body>"
        );
        let f = Element::new("features", STREAMS_NS).with_child(
            Element::new("starttls", TLS_NS).with_child(Element::new("required", TLS_NS)),
        );
        assert_eq!(
            f.to_xml(),
            "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>"
        );
        // What is written reads back the same.
        let scope = Scope::default();
        let xml = m.to_xml();
        assert_eq!(scope.next(xml.as_bytes()), Next::Element(m, xml.len()));
    }

    #[test]
    fn jids_are_read_in_one_spelling() {
        assert_eq!(
            bare_jid("Alice@Jabber.Example/phone"),
            Some(("alice@jabber.example".into(), "jabber.example".into()))
        );
        assert_eq!(bare_jid("jabber.example"), None);
        assert_eq!(bare_jid("a b@x.example"), None);
        assert_eq!(jid_domain("jabber.example"), Some("jabber.example".into()));
        assert_eq!(
            jid_domain("a@Jabber.Example/r"),
            Some("jabber.example".into())
        );
    }

    proptest::proptest! {
        #[test]
        fn stream_header_parsing_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse_stream_header(&bytes);
        }

        #[test]
        fn stanza_reading_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = Scope::default().next(&bytes);
        }

        #[test]
        fn stanza_text_never_panics(text in "[<>/'\"=a-z: &;#x\u{85}\u{a0}é]{0,160}") {
            let _ = Scope::default().next(text.as_bytes());
            let _ = parse_stream_header(text.as_bytes());
        }
    }
}
