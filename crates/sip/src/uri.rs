//! SIP URIs (RFC 3261 §19.1) and name-addr values (`"Alice" <sip:alice@x>;tag=1`, the
//! shape of From, To and Contact). They exist so the registrar can turn the To header
//! into an address-of-record key and read Contact bindings and tags without string
//! hacking at every call site.

use std::borrow::Cow;
use std::fmt;

use crate::syntax::ParseError;
use crate::syntax::{
    Params, check_params, checked_params, find_param, is_token_char, malformed, pairs,
    parse_hostport, parse_params, parse_quoted_in_place, quote, write_params,
};

/// A `sip:` or `sips:` URI. URI headers (`?name=value`) are not supported and are
/// rejected by [`Uri::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    /// `"sip"` or `"sips"`, lowercased.
    pub scheme: String,
    /// The userinfo as written (including a `:password` if one was given).
    pub user: Option<String>,
    /// Lowercased hostname, IPv4 address or bracketed IPv6 reference.
    pub host: String,
    pub port: Option<u16>,
    /// URI parameters, names and values as written.
    pub params: Vec<(String, Option<String>)>,
}

impl Uri {
    pub fn parse(s: &str) -> Result<Uri, ParseError> {
        UriView::of(s, parse_params).map(UriView::into_uri)
    }

    /// "sip:user@host" without port or params, user kept as-is, host lowercased: the
    /// address-of-record key.
    pub fn aor(&self) -> String {
        aor(&self.scheme, self.user.as_deref(), &self.host)
    }

    /// `Some(None)` for a flag parameter (`;lr`), `Some(Some(v))` for `;name=v`, `None`
    /// when absent. Names compare case-insensitively.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Piece by piece: every REGISTER writes its Contact's URI as the binding's key.
        f.write_str(&self.scheme)?;
        f.write_str(":")?;
        if let Some(user) = &self.user {
            f.write_str(user)?;
            f.write_str("@")?;
        }
        f.write_str(&self.host)?;
        write_port_and_params(f, self.port, pairs(&self.params))
    }
}

/// `:port` when there is one, then `;name[=value]` for each parameter: the end of a URI as
/// [`Uri`]'s `Display` writes it.
fn write_port_and_params<'a>(
    f: &mut impl fmt::Write,
    port: Option<u16>,
    params: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> fmt::Result {
    if let Some(port) = port {
        f.write_str(":")?;
        f.write_str(crate::hex::digits(u128::from(port), 10, &mut [0; 40]))?;
    }
    write_params(f, params)
}

/// `scheme:user@host`, scheme and host lowercased: the address-of-record key.
fn aor(scheme: &str, user: Option<&str>, host: &str) -> String {
    let mut aor = String::with_capacity(scheme.len() + user.map_or(0, str::len) + host.len() + 2);
    push_aor(&mut aor, scheme, user, host);
    aor
}

/// Appends [`aor`]'s text.
fn push_aor(out: &mut String, scheme: &str, user: Option<&str>, host: &str) {
    push_lowercase(out, scheme);
    out.push(':');
    if let Some(user) = user {
        out.push_str(user);
        out.push('@');
    }
    push_lowercase(out, host);
}

/// Appends `s` with its ASCII letters lowercased (others as they are), in one copy.
fn push_lowercase(out: &mut String, s: &str) {
    let start = out.len();
    out.push_str(s);
    out[start..].make_ascii_lowercase();
}

/// Whether a URI's user part holds a character it may not: a blank, a control, or one of
/// `<>"@`. Read a byte at a time when the part is ASCII, as it nearly always is.
fn bad_user(user: &str) -> bool {
    if user.is_ascii() {
        // In ASCII, every blank but the space is a control.
        return user
            .bytes()
            .any(|b| b == b' ' || b.is_ascii_control() || matches!(b, b'<' | b'>' | b'"' | b'@'));
    }
    user.chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '@'))
}

/// What reads a parameter list after it is split off: [`parse_params`] keeps the
/// parameters, [`check_params`] only checks them (for a caller that wants the address of
/// record alone), [`raw_params`] checks them and keeps the list as written. Either way the
/// list is read once.
type ReadParams<'a, P> = fn(&'a str, &str, bool) -> Result<P, ParseError>;

/// A parameter list as written (without its leading `;`), checked.
#[derive(Debug, Clone, Copy, Default)]
struct RawParams<'a>(&'a str);

impl<'a> RawParams<'a> {
    /// Each parameter, name and value as [`parse_params`] keeps them.
    fn each(self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> {
        checked_params(self.0)
    }
}

/// [`check_params`], keeping the list as written.
fn raw_params<'a>(s: &'a str, what: &str, quoted_ok: bool) -> Result<RawParams<'a>, ParseError> {
    check_params(s, what, quoted_ok)?;
    Ok(RawParams(s))
}

/// A URI as written, borrowed, checked as [`Uri::parse`] checks it, with its parameters
/// as `P` ([`ReadParams`]).
struct UriView<'a, P> {
    scheme: &'a str,
    user: Option<&'a str>,
    host: &'a str,
    port: Option<u16>,
    params: P,
}

impl<'a, P: Default> UriView<'a, P> {
    fn of(s: &'a str, read_params: ReadParams<'a, P>) -> Result<UriView<'a, P>, ParseError> {
        let s = s.trim();
        let (scheme, rest) = s
            .split_once(':')
            .ok_or_else(|| malformed("URI without a scheme"))?;
        if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
            return Err(malformed("unsupported URI scheme (only sip and sips)"));
        }
        let (user, hostpart) = match rest.find('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        if let Some(user) = user
            && (user.is_empty() || bad_user(user))
        {
            return Err(malformed("invalid user part in URI"));
        }
        if hostpart.contains('?') {
            return Err(malformed("URI headers (`?`) are not supported"));
        }
        let (hostport, params) = match hostpart.split_once(';') {
            Some((hp, params)) => (hp, read_params(params, "URI", false)?),
            None => (hostpart, P::default()),
        };
        let (host, port) = parse_hostport(hostport)?;
        Ok(UriView {
            scheme,
            user,
            host,
            port,
            params,
        })
    }

    /// [`Uri::aor`] of this URI, the one string it allocates.
    fn aor(&self) -> String {
        aor(self.scheme, self.user, self.host)
    }
}

impl UriView<'_, Params> {
    fn into_uri(self) -> Uri {
        Uri {
            scheme: self.scheme.to_ascii_lowercase(),
            user: self.user.map(str::to_owned),
            host: self.host.to_ascii_lowercase(),
            port: self.port,
            params: self.params,
        }
    }
}

/// A name-addr or addr-spec header value: From, To, Contact, Route, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted and unescaped.
    pub display: Option<String>,
    pub uri: Uri,
    /// Header parameters (`tag`, `expires`, `q`, ...). Quoted values keep their quotes.
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    /// Accepts `"Alice" <sip:alice@x>;tag=1`, `Alice <sip:alice@x>`, `<sip:a@x>;expires=60`
    /// and the bare `sip:a@x;tag=1` (where, per RFC 3261 §20.10, parameters after the URI
    /// belong to the header). The Contact wildcard `*` is not a name-addr and is rejected.
    pub fn parse(s: &str) -> Result<NameAddr, ParseError> {
        let view = NameAddrView::of(s, parse_params)?;
        Ok(NameAddr {
            display: view.display.map(Cow::into_owned),
            uri: view.uri.into_uri(),
            params: view.params,
        })
    }

    /// The address of record of a name-addr header value (`uri.aor()` of what
    /// [`NameAddr::parse`] gives, refused as it refuses), reading it in place: the
    /// registrar takes the To of every REGISTER.
    pub fn aor_of(s: &str) -> Result<String, ParseError> {
        NameAddrView::of(s, check_params).map(|view| view.uri.aor())
    }

    /// What a registrar keeps of a Contact header value (see [`Contact`]), read in place:
    /// the same as [`NameAddr::parse`] gives, refused as it refuses, with one string
    /// written — the binding's key. Every REGISTER that binds reads its Contact.
    pub fn contact_of(s: &str) -> Result<Contact<'_>, ParseError> {
        let view = NameAddrView::of(s, raw_params)?;
        let UriView {
            scheme,
            user,
            host,
            port,
            params,
        } = view.uri;
        let mut uri = String::with_capacity(s.len());
        push_aor(&mut uri, scheme, user, host);
        // Into a String: writing cannot fail.
        let _ = write_port_and_params(&mut uri, port, params.each());
        let expires = view
            .params
            .each()
            .find(|(name, _)| name.eq_ignore_ascii_case("expires"))
            .map(|(_, value)| value);
        Ok(Contact {
            uri,
            host,
            port,
            expires,
        })
    }

    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }

    /// Header parameter lookup, case-insensitive by name (see [`Uri::param`]).
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }
}

/// A name-addr as written, borrowed, checked as [`NameAddr::parse`] checks it; its
/// parameters and its URI's as `P` ([`ReadParams`]).
struct NameAddrView<'a, P> {
    display: Option<Cow<'a, str>>,
    uri: UriView<'a, P>,
    /// The header parameters after the URI's `;` or `>;`.
    params: P,
}

impl<'a, P: Default> NameAddrView<'a, P> {
    fn of(s: &'a str, read_params: ReadParams<'a, P>) -> Result<NameAddrView<'a, P>, ParseError> {
        let s = s.trim();
        if s == "*" {
            return Err(malformed("`*` is not a name-addr"));
        }
        let angle = s.find('<');
        let colon = s.find(':');
        let angle_form = s.starts_with('"')
            || matches!((angle, colon), (Some(a), Some(c)) if a < c)
            || (angle.is_some() && colon.is_none());
        if !angle_form {
            let (uri, params) = match s.split_once(';') {
                Some((uri, params)) => (uri, read_params(params, "header", true)?),
                None => (s, P::default()),
            };
            if uri.contains(',') {
                return Err(malformed("comma in bare URI"));
            }
            return Ok(NameAddrView {
                display: None,
                uri: UriView::of(uri, read_params)?,
                params,
            });
        }
        let (display, rest) = if s.starts_with('"') {
            let (display, rest) = parse_quoted_in_place(s)?;
            let rest = rest.trim_start();
            if !rest.starts_with('<') {
                return Err(malformed("expected `<` after display name"));
            }
            (Some(display), rest)
        } else {
            let lt = angle.unwrap_or(0);
            let name = s[..lt].trim();
            if !name
                .chars()
                .all(|c| is_token_char(c) || c == ' ' || c == '\t')
            {
                return Err(malformed("invalid display name"));
            }
            let display = (!name.is_empty()).then_some(Cow::Borrowed(name));
            (display, &s[lt..])
        };
        let inner = &rest[1..];
        let gt = inner
            .find('>')
            .ok_or_else(|| malformed("missing `>` after URI"))?;
        let uri = UriView::of(&inner[..gt], read_params)?;
        let after = inner[gt + 1..].trim();
        let params = if after.is_empty() {
            P::default()
        } else {
            let params = after
                .strip_prefix(';')
                .ok_or_else(|| malformed("unexpected text after `>`"))?;
            read_params(params, "header", true)?
        };
        Ok(NameAddrView {
            display,
            uri,
            params,
        })
    }
}

/// What a registrar keeps of a Contact header value: [`NameAddr::contact_of`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact<'a> {
    /// The URI as [`Uri`]'s `Display` writes it: the binding's key.
    pub uri: String,
    /// The URI's host as written.
    pub host: &'a str,
    pub port: Option<u16>,
    /// The header's `expires` parameter, as [`NameAddr::param`] finds it.
    pub expires: Option<Option<&'a str>>,
}

impl Contact<'_> {
    /// The socket address the URI names when its host is an IP address (port 5060 when
    /// it names none); None for a host name.
    pub fn address(&self) -> Option<std::net::SocketAddr> {
        let ip: std::net::IpAddr = self.host.parse().ok()?;
        Some(std::net::SocketAddr::new(ip, self.port.unwrap_or(5060)))
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(display) = &self.display {
            write!(f, "{} ", quote(display))?;
        }
        write!(f, "<{}>", self.uri)?;
        write_params(f, pairs(&self.params))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::parse_quoted;

    /// `Uri::parse` as it was before the borrowed views, copying as it read: the model
    /// the views must match.
    fn uri_by_copying(s: &str) -> Result<Uri, ParseError> {
        let s = s.trim();
        let (scheme, rest) = s
            .split_once(':')
            .ok_or_else(|| malformed("URI without a scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "sip" && scheme != "sips" {
            return Err(malformed("unsupported URI scheme (only sip and sips)"));
        }
        let (user, hostpart) = match rest.find('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        if let Some(user) = user {
            let bad =
                |c: char| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '@');
            if user.is_empty() || user.chars().any(bad) {
                return Err(malformed("invalid user part in URI"));
            }
        }
        if hostpart.contains('?') {
            return Err(malformed("URI headers (`?`) are not supported"));
        }
        let (hostport, params) = match hostpart.split_once(';') {
            Some((hp, params)) => (hp, parse_params(params, "URI", false)?),
            None => (hostpart, Vec::new()),
        };
        let (host, port) = parse_hostport(hostport)?;
        Ok(Uri {
            scheme,
            user: user.map(str::to_owned),
            host: host.to_ascii_lowercase(),
            port,
            params,
        })
    }

    /// `NameAddr::parse` as it was before the borrowed views (see [`uri_by_copying`]).
    fn name_addr_by_copying(s: &str) -> Result<NameAddr, ParseError> {
        let s = s.trim();
        if s == "*" {
            return Err(malformed("`*` is not a name-addr"));
        }
        let angle = s.find('<');
        let colon = s.find(':');
        let angle_form = s.starts_with('"')
            || matches!((angle, colon), (Some(a), Some(c)) if a < c)
            || (angle.is_some() && colon.is_none());
        if !angle_form {
            let (uri, params) = match s.split_once(';') {
                Some((uri, params)) => (uri, parse_params(params, "header", true)?),
                None => (s, Vec::new()),
            };
            if uri.contains(',') {
                return Err(malformed("comma in bare URI"));
            }
            return Ok(NameAddr {
                display: None,
                uri: uri_by_copying(uri)?,
                params,
            });
        }
        let (display, rest) = if s.starts_with('"') {
            let (display, rest) = parse_quoted(s)?;
            let rest = rest.trim_start();
            if !rest.starts_with('<') {
                return Err(malformed("expected `<` after display name"));
            }
            (Some(display), rest)
        } else {
            let lt = angle.unwrap_or(0);
            let name = s[..lt].trim();
            if !name
                .chars()
                .all(|c| is_token_char(c) || c == ' ' || c == '\t')
            {
                return Err(malformed("invalid display name"));
            }
            let display = (!name.is_empty()).then(|| name.to_owned());
            (display, &s[lt..])
        };
        let inner = &rest[1..];
        let gt = inner
            .find('>')
            .ok_or_else(|| malformed("missing `>` after URI"))?;
        let uri = uri_by_copying(&inner[..gt])?;
        let after = inner[gt + 1..].trim();
        let params = if after.is_empty() {
            Vec::new()
        } else {
            let params = after
                .strip_prefix(';')
                .ok_or_else(|| malformed("unexpected text after `>`"))?;
            parse_params(params, "header", true)?
        };
        Ok(NameAddr {
            display,
            uri,
            params,
        })
    }

    /// Header values built from parts that meet every case of a name-addr, each part
    /// well formed or not: quoted and bare display names, angle and bare forms, schemes in
    /// any case, users, hosts and ports, URI and header parameters, stray blanks.
    fn name_addr_value() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::sample::select;
        use proptest::strategy::Strategy as _;
        (
            (
                select(vec!["", " ", "Bob ", "\"A \\\"q\\\"\" ", "B@d ", "\"open "]),
                select(vec!["<", "", "<<"]),
                select(vec!["sip:", "SIPS:", "tel:", "", "sip"]),
                select(vec![
                    "",
                    "bob@",
                    "B%20b@",
                    "a b@",
                    "@",
                    "bob:pw@",
                    "bö@",
                    "b\u{a0}c@",
                    "a\tb@",
                ]),
            ),
            (
                select(vec![
                    "Biloxi.COM",
                    "[::1]",
                    "",
                    "h?x",
                    "a,b",
                    "192.0.2.4",
                    "127.0.0.1",
                ]),
                select(vec!["", ":5060", ":x", ":99999"]),
                select(vec!["", ";lr", ";transport=TCP", ";", ";x=\"q\"", ";a=b=c"]),
                select(vec![">", "", "> "]),
                select(vec![
                    "",
                    ";tag=1",
                    ";x=\"a;b\"",
                    ";",
                    " junk",
                    ";expires=60;q=0.5",
                    ";q=1;EXPIRES=0",
                    ",",
                ]),
            ),
        )
            .prop_map(
                |((display, open, scheme, user), (host, port, uri_params, close, params))| {
                    [
                        display, open, scheme, user, host, port, uri_params, close, params,
                    ]
                    .concat()
                },
            )
    }

    #[test]
    fn the_aor_of_a_name_addr() {
        let aor = |v: &str| NameAddr::aor_of(v).ok();
        let bob = Some("sip:bob@biloxi.com".to_string());
        assert_eq!(
            aor("\"Bob\" <sip:bob@Biloxi.COM:5060;transport=tcp>;tag=1"),
            bob
        );
        assert_eq!(aor("Bob <SIP:bob@biloxi.com>"), bob);
        assert_eq!(aor("sip:bob@biloxi.com;tag=1"), bob);
        assert_eq!(aor("<sip:biloxi.com>"), Some("sip:biloxi.com".to_string()));
        assert_eq!(aor("<sip:bob@biloxi.com"), None);
        assert_eq!(aor("*"), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]
        #[test]
        fn names_read_in_place_are_read_as_when_copied(
            value in name_addr_value(),
        ) {
            let copied = name_addr_by_copying(&value);
            proptest::prop_assert_eq!(&NameAddr::parse(&value), &copied, "{:?}", value);
            proptest::prop_assert_eq!(NameAddr::aor_of(&value), copied.clone().map(|n| n.uri.aor()));
            let contact = NameAddr::contact_of(&value);
            proptest::prop_assert_eq!(
                contact.as_ref().map(|c| (c.uri.clone(), c.expires, c.address())),
                copied.as_ref().map(|n| (
                    n.uri.to_string(),
                    n.param("expires"),
                    n.uri.host.parse().ok().map(|ip| std::net::SocketAddr::new(ip, n.uri.port.unwrap_or(5060))),
                )),
                "{:?}", value
            );
            let bare = value.trim_start_matches(['<', ' ']).trim_end_matches(['>', ' ']);
            proptest::prop_assert_eq!(Uri::parse(bare), uri_by_copying(bare));
        }
    }

    #[test]
    fn parses_full_uri() {
        let u = Uri::parse("SIP:Alice@Example.COM:5070;transport=tcp;lr").unwrap();
        assert_eq!(u.scheme, "sip");
        assert_eq!(u.user.as_deref(), Some("Alice"));
        assert_eq!(u.host, "example.com");
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.param("Transport"), Some(Some("tcp")));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.param("maddr"), None);
        assert_eq!(u.to_string(), "sip:Alice@example.com:5070;transport=tcp;lr");
        assert_eq!(u.aor(), "sip:Alice@example.com");
    }

    #[test]
    fn uri_forms() {
        let u = Uri::parse("sips:[2001:db8::1]:5061").unwrap();
        assert_eq!(u.host, "[2001:db8::1]");
        assert_eq!(u.aor(), "sips:[2001:db8::1]");
        let u = Uri::parse("sip:registrar.biloxi.com").unwrap();
        assert_eq!(u.user, None);
        let u = Uri::parse("sip:alice;day=tue@x.org").unwrap();
        assert_eq!(u.user.as_deref(), Some("alice;day=tue"));
        assert_eq!(u.to_string(), "sip:alice;day=tue@x.org");
    }

    #[test]
    fn uri_errors() {
        for bad in [
            "",
            "alice@x",
            "tel:+123",
            "sip:",
            "sip:@x",
            "sip:a@",
            "sip:a@x:99999",
            "sip:a@x?subject=hi",
            "sip:a b@x",
            "sip:a@x;;lr",
            "sip:a@x;=1",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse(r#""Alice \"A\"" <sip:alice@x>;tag=1"#).unwrap();
        assert_eq!(n.display.as_deref(), Some("Alice \"A\""));
        assert_eq!(n.tag(), Some("1"));
        assert_eq!(n.to_string(), r#""Alice \"A\"" <sip:alice@x>;tag=1"#);

        let n = NameAddr::parse("Bob <sip:bob@biloxi.com>").unwrap();
        assert_eq!(n.display.as_deref(), Some("Bob"));
        assert_eq!(n.tag(), None);

        let n = NameAddr::parse("<sip:a@x;lr>;expires=60").unwrap();
        assert_eq!(n.display, None);
        assert_eq!(n.uri.param("lr"), Some(None));
        assert_eq!(n.param("expires"), Some(Some("60")));

        let n = NameAddr::parse("sip:a@x;tag=1").unwrap();
        assert!(n.uri.params.is_empty());
        assert_eq!(n.tag(), Some("1"));
        assert_eq!(n.to_string(), "<sip:a@x>;tag=1");

        let n = NameAddr::parse(r#"<sip:a@x>;+sip.instance="<urn:uuid:1;2>""#).unwrap();
        assert_eq!(n.param("+sip.instance"), Some(Some(r#""<urn:uuid:1;2>""#)));
    }

    #[test]
    fn name_addr_errors() {
        for bad in [
            "*",
            "",
            "<sip:a@x",
            "\"open <sip:a@x>",
            "\"A\" sip:a@x",
            "<sip:a@x> junk",
            "A@B <sip:a@x>",
            "<tel:1>",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad:?} should fail");
        }
    }
}
