//! Property tests: the parser and framer never panic on arbitrary or mutated input,
//! generated messages survive serialise → parse, framing finds exact message ends, and
//! the digest and nonce helpers behave as a client/server pair should.

use proptest::prelude::*;
use proptest::sample::Index;
use sip::digest::{Algorithm, Challenge, Credentials, NonceCheck, NonceKey};
use sip::{
    Headers, Message, Method, NameAddr, ParseError, Request, Response, Uri, Via, frame_length,
};

const REGISTER: &[u8] = b"REGISTER sip:registrar.biloxi.com SIP/2.0\r\n\
Via: SIP/2.0/UDP bobspc.biloxi.com:5060;branch=z9hG4bKnashds7\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.com>\r\n\
From: Bob <sip:bob@biloxi.com>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:bob@192.0.2.4>\r\n\
Expires: 7200\r\n\
Content-Length: 4\r\n\
\r\n\
body";

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Register),
        Just(Method::Options),
        Just(Method::Message),
        Just(Method::Invite),
        Just(Method::Ack),
        Just(Method::Bye),
        Just(Method::Cancel),
        "[A-Z][A-Z-]{2,10}".prop_map(|s| Method::parse(&s)),
    ]
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5}){0,2}",
        (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>())
            .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
        Just("[2001:db8::1]".to_owned()),
    ]
}

fn params() -> impl Strategy<Value = Vec<(String, Option<String>)>> {
    prop::collection::vec(
        (
            "[a-z][a-z0-9-]{0,8}",
            prop::option::of("[a-zA-Z0-9.!~*-]{1,10}"),
        ),
        0..3,
    )
}

fn uri() -> impl Strategy<Value = Uri> {
    (
        prop_oneof![Just("sip"), Just("sips")],
        prop::option::of("[a-zA-Z0-9._+-]{1,12}"),
        host(),
        prop::option::of(any::<u16>()),
        params(),
    )
        .prop_map(|(scheme, user, host, port, params)| Uri {
            scheme: scheme.to_owned(),
            user,
            host,
            port,
            params,
        })
}

fn name_addr() -> impl Strategy<Value = NameAddr> {
    (prop::option::of("[ -~]{0,12}"), uri(), params()).prop_map(|(display, uri, params)| NameAddr {
        display,
        uri,
        params,
    })
}

fn via() -> impl Strategy<Value = Via> {
    (
        prop_oneof![Just("UDP"), Just("TCP"), Just("TLS")],
        host(),
        prop::option::of(any::<u16>()),
        params(),
    )
        .prop_map(|(transport, host, port, mut params)| {
            params.insert(0, ("branch".to_owned(), Some("z9hG4bK42".to_owned())));
            Via {
                transport: transport.to_owned(),
                host,
                port,
                params,
            }
        })
}

/// Extra headers: token names (never Content-Length or its compact form) and values
/// without line breaks or edge whitespace.
fn extra_headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = "[A-Za-z][A-Za-z0-9-]{0,15}".prop_filter("not Content-Length", |n| {
        !n.eq_ignore_ascii_case("content-length") && !n.eq_ignore_ascii_case("l")
    });
    let value = prop_oneof!["", "[!-~]", "[!-~é][ -~é]{0,30}[!-~ü]"];
    prop::collection::vec((name, value), 0..6)
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..200)
}

fn common_headers(
    from: NameAddr,
    to: NameAddr,
    call_id: String,
    cseq: (u32, &Method),
    vias: Vec<Via>,
    extra: Vec<(String, String)>,
) -> Headers {
    let mut h = Headers::new();
    for v in vias {
        h.push("Via", v.to_string());
    }
    h.push("From", from.to_string());
    h.push("To", to.to_string());
    h.push("Call-ID", call_id);
    h.push("CSeq", format!("{} {}", cseq.0, cseq.1));
    for (n, v) in extra {
        h.push(n, v);
    }
    h
}

fn request() -> impl Strategy<Value = Message> {
    (
        method(),
        uri(),
        (name_addr(), name_addr(), "[a-zA-Z0-9]{1,20}@[a-z]{1,8}"),
        any::<u32>(),
        prop::collection::vec(via(), 1..3),
        extra_headers(),
        body(),
    )
        .prop_map(|(method, uri, (from, to, call_id), n, vias, extra, body)| {
            let headers = common_headers(from, to, call_id, (n, &method), vias, extra);
            Message::Request(Request {
                method,
                uri: uri.to_string(),
                headers,
                body,
            })
        })
}

fn response() -> impl Strategy<Value = Message> {
    (
        100u16..=699,
        prop_oneof![Just(String::new()), "[A-Za-z][A-Za-z ]{0,20}"],
        (name_addr(), name_addr(), "[a-zA-Z0-9]{1,20}"),
        (any::<u32>(), method()),
        prop::collection::vec(via(), 0..3),
        extra_headers(),
        body(),
    )
        .prop_map(
            |(status, reason, (from, to, call_id), (n, m), vias, extra, body)| {
                let headers = common_headers(from, to, call_id, (n, &m), vias, extra);
                Message::Response(Response {
                    status,
                    reason,
                    headers,
                    body,
                })
            },
        )
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![request(), response()]
}

fn without_content_length(m: &Message) -> Message {
    let mut m = m.clone();
    match &mut m {
        Message::Request(r) => r.headers.remove("Content-Length"),
        Message::Response(r) => r.headers.remove("Content-Length"),
    }
    m
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Truncate(Index),
    Insert(Index, Vec<u8>),
    Delete(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        any::<Index>().prop_map(Mutation::Truncate),
        (
            any::<Index>(),
            prop::collection::vec(
                prop_oneof![
                    any::<u8>(),
                    Just(b'\r'),
                    Just(b'\n'),
                    Just(b':'),
                    Just(b' '),
                    Just(b'"'),
                    Just(b'<')
                ],
                1..8
            )
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::Flip(i, x) => {
            if !bytes.is_empty() {
                let i = i.index(bytes.len());
                bytes[i] ^= x;
            }
        }
        Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len() + 1)),
        Mutation::Insert(i, b) => {
            let at = i.index(bytes.len() + 1);
            bytes.splice(at..at, b.iter().copied());
        }
        Mutation::Delete(i) => {
            if !bytes.is_empty() {
                let i = i.index(bytes.len());
                bytes.remove(i);
            }
        }
    }
}

/// Parsing must agree with framing: a framed message that parses has the same length.
fn check_consistent(bytes: &[u8]) {
    let parsed = Message::parse(bytes);
    if let Ok(Some(n)) = frame_length(bytes) {
        assert!(n <= bytes.len());
        if let Ok(m) = Message::parse(&bytes[..n]) {
            let _ = m.to_bytes();
        }
    }
    if let Ok(m) = parsed {
        let again = Message::parse(&m.to_bytes()).expect("serialised message parses");
        assert_eq!(without_content_length(&again), without_content_length(&m));
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        check_consistent(&bytes);
    }

    #[test]
    fn sip_ish_text_never_panics(text in "([A-Z]{1,8} |SIP/2.0 |sip:|[a-z@.:;=<>\", ]{1,12}|\r\n|\n|\r| |\t|[0-9]{1,3}|Content-Length: [0-9]{1,3}\r\n|l: [0-9]\r\n){0,60}") {
        check_consistent(text.as_bytes());
    }

    #[test]
    fn mutated_register_never_panics(mutations in prop::collection::vec(mutation(), 1..6)) {
        let mut bytes = REGISTER.to_vec();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        check_consistent(&bytes);
    }

    #[test]
    fn round_trip(m in message()) {
        let bytes = m.to_bytes();
        let parsed = Message::parse(&bytes).map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&bytes))))?;
        prop_assert_eq!(without_content_length(&parsed), without_content_length(&m));
        prop_assert_eq!(parsed.to_bytes(), bytes);
    }

    #[test]
    fn frame_length_finds_the_end(m in message(), junk in prop::collection::vec(any::<u8>(), 0..64), keepalives in 0usize..3) {
        let mut stream = b"\r\n\r\n".repeat(keepalives);
        let bytes = m.to_bytes();
        stream.extend_from_slice(&bytes);
        let len = stream.len();
        stream.extend_from_slice(&junk);
        prop_assert_eq!(frame_length(&stream), Ok(Some(len)));
        for cut in [0, len / 3, len / 2, len - 1] {
            prop_assert_eq!(frame_length(&stream[..cut]), Ok(None));
        }
    }

    #[test]
    fn uri_and_name_addr_round_trip(u in uri(), n in name_addr(), v in via()) {
        prop_assert_eq!(Uri::parse(&u.to_string()), Ok(u));
        prop_assert_eq!(NameAddr::parse(&n.to_string()), Ok(n));
        prop_assert_eq!(Via::parse(&v.to_string()), Ok(v));
    }

    #[test]
    fn digest_answer_verifies(
        user in "[ -~]{0,16}",
        realm in "[ -~]{0,16}",
        password in "[ -~]{0,16}",
        nonce in "[ -~]{1,40}",
        opaque in prop::option::of("[ -~]{0,16}"),
        qop_auth in any::<bool>(),
        methods in (method(), method()).prop_filter("different methods", |(a, b)| a != b),
        uri in uri(),
        cnonce in "[a-zA-Z0-9]{1,16}",
        nc in any::<u32>(),
        sha256 in any::<bool>(),
    ) {
        let algorithm = if sha256 { Algorithm::Sha256 } else { Algorithm::Md5 };
        let ch = Challenge { realm: realm.clone(), nonce, opaque, stale: false, qop_auth, algorithm };
        prop_assert_eq!(Challenge::parse(&ch.to_string()), Ok(ch.clone()));
        let (method, other_method) = methods;
        let uri = uri.to_string();
        let h = algorithm.ha1(&user, &realm, &password);
        let c = Credentials::answer(&ch, &user, &h, method.as_str(), &uri, &cnonce, nc);
        prop_assert!(c.verify(&h, method.as_str()));
        prop_assert!(!c.verify(&h, other_method.as_str()));
        prop_assert_eq!(c.count(), if qop_auth { Some(nc) } else { Some(1) });
        let wrong = algorithm.ha1(&user, &realm, &format!("{password}x"));
        prop_assert!(!c.verify(&wrong, method.as_str()));
        let header = c.to_string();
        let parsed = Credentials::parse(&header);
        prop_assert_eq!(parsed.as_ref(), Ok(&c));
        prop_assert!(parsed.map(|p| p.verify(&h, method.as_str())).unwrap_or(false));
    }

    #[test]
    fn credentials_display_round_trip(
        strings in prop::collection::vec("[ -~]{0,20}", 5),
        cnonce in prop::option::of("[ -~]{0,12}"),
        nc in prop::option::of("[0-9a-f]{8}"),
        qop in prop::option::of(prop_oneof![Just("auth".to_owned()), "[ -~]{1,10}"]),
        opaque in prop::option::of("[ -~]{0,12}"),
    ) {
        let c = Credentials {
            username: strings[0].clone().into(),
            realm: strings[1].clone().into(),
            nonce: strings[2].clone().into(),
            uri: strings[3].clone().into(),
            response: strings[4].clone().into(),
            cnonce: cnonce.map(Into::into),
            nc: nc.map(Into::into),
            qop: qop.map(Into::into),
            opaque: opaque.map(Into::into),
            algorithm: Algorithm::Sha256,
        };
        let header = c.to_string();
        prop_assert_eq!(Credentials::parse(&header), Ok(c));
    }

    #[test]
    fn nonces_check(
        key in any::<[u8; 32]>(),
        issued in 0u64..(1 << 50),
        max_age in 1u64..3_600_000,
        age_fraction in 0.0f64..=1.0,
        overshoot in 1u64..1_000_000,
        edit_at in any::<Index>(),
        replacement in prop_oneof![proptest::char::range('0', '9'), proptest::char::range('a', 'z'), proptest::char::range('A', 'Z'), Just(':'), Just('é')],
    ) {
        let key = NonceKey::new(key);
        let me = "fe1.contoso.com";
        let nonce = key.issue(issued, me);
        let age = (max_age as f64 * age_fraction) as u64;
        let valid = key.check(&nonce, me, issued + age, max_age);
        prop_assert!(matches!(valid, NonceCheck::Valid { issued_ms, .. } if issued_ms == issued), "{:?}", valid);
        prop_assert_eq!(key.check(&nonce, "fe2.contoso.com", issued + age, max_age), NonceCheck::Invalid);
        prop_assert_eq!(key.check(&nonce, me, issued + max_age + overshoot, max_age), NonceCheck::Stale);
        if issued > 5_000 + overshoot {
            prop_assert_eq!(key.check(&nonce, me, issued - 5_000 - overshoot, max_age), NonceCheck::Stale);
        }
        let mut chars: Vec<char> = nonce.chars().collect();
        let i = edit_at.index(chars.len());
        prop_assume!(chars[i] != replacement);
        chars[i] = replacement;
        let forged: String = chars.into_iter().collect();
        prop_assert_eq!(key.check(&forged, me, issued, max_age), NonceCheck::Invalid);
    }
}

#[test]
fn errors_are_displayable() {
    let e = ParseError::TooLarge {
        size: 70_000,
        limit: 65_000,
    };
    assert_eq!(
        e.to_string(),
        "message too large: 70000 bytes exceeds the limit of 65000"
    );
}
