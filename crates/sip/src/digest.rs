//! HTTP Digest authentication as SIP uses it (RFC 2617, RFC 3261 §22): MD5, with or
//! without `qop=auth`. Both sides live here: the registrar issues challenges with
//! stateless nonces and verifies credentials; a client (tests, the lab's load tools)
//! answers challenges. Nonces are stateless so any server holding the key can check them.

use std::fmt;

use md5::{Digest, Md5};

use crate::syntax::ParseError;
use crate::syntax::{is_token, is_token_char, malformed, parse_quoted, quote};

fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// Lowercase hex MD5 of `data`.
pub fn md5_hex(data: &[u8]) -> String {
    to_hex(&Md5::digest(data))
}

/// `md5("user:realm:password")`, lowercase hex.
pub fn ha1(username: &str, realm: &str, password: &str) -> String {
    md5_hex(format!("{username}:{realm}:{password}").as_bytes())
}

/// The request-digest: the `qop=auth` form when `qop` is `Some((nc, cnonce))`, the
/// RFC 2069 form when `None`.
pub fn response(
    ha1: &str,
    nonce: &str,
    method: &str,
    uri: &str,
    qop: Option<(&str, &str)>,
) -> String {
    let ha2 = md5_hex(format!("{method}:{uri}").as_bytes());
    match qop {
        Some((nc, cnonce)) => md5_hex(format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}").as_bytes()),
        None => md5_hex(format!("{ha1}:{nonce}:{ha2}").as_bytes()),
    }
}

/// Compares two hex digests without data-dependent early exit; ASCII case is ignored.
fn ct_eq_ignore_case(a: &str, b: &str) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| {
        acc | (x.to_ascii_lowercase() ^ y.to_ascii_lowercase())
    });
    diff == 0
}

/// Parses `Digest name=value, name="value", ...` into (lowercased name, unquoted value)
/// pairs, rejecting duplicates.
fn parse_auth_params(header_value: &str) -> Result<Vec<(String, String)>, ParseError> {
    let s = header_value.trim_start();
    let scheme_end = s.find(|c: char| c.is_ascii_whitespace()).unwrap_or(s.len());
    if !s[..scheme_end].eq_ignore_ascii_case("Digest") {
        return Err(malformed("authentication scheme is not Digest"));
    }
    let mut rest = &s[scheme_end..];
    let mut out: Vec<(String, String)> = Vec::new();
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == ',');
        if rest.is_empty() {
            return Ok(out);
        }
        let name_end = rest.find(|c: char| !is_token_char(c)).unwrap_or(rest.len());
        let name = rest[..name_end].to_ascii_lowercase();
        if name.is_empty() {
            return Err(malformed("invalid digest parameter name"));
        }
        rest = rest[name_end..].trim_start();
        rest = rest
            .strip_prefix('=')
            .ok_or_else(|| malformed(format!("digest parameter {name} has no value")))?
            .trim_start();
        let value = if rest.starts_with('"') {
            let (value, after) = parse_quoted(rest)?;
            rest = after;
            value
        } else {
            let end = rest
                .find(|c: char| c == ',' || c == '"' || c.is_ascii_whitespace())
                .unwrap_or(rest.len());
            let value = rest[..end].to_owned();
            rest = &rest[end..];
            value
        };
        rest = rest.trim_start();
        if !rest.is_empty() && !rest.starts_with(',') {
            return Err(malformed("expected `,` between digest parameters"));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(malformed(format!("duplicate digest parameter {name}")));
        }
        out.push((name, value));
    }
}

fn take(params: &mut Vec<(String, String)>, name: &str) -> Option<String> {
    let i = params.iter().position(|(n, _)| n == name)?;
    Some(params.swap_remove(i).1)
}

fn required(params: &mut Vec<(String, String)>, name: &str) -> Result<String, ParseError> {
    take(params, name).ok_or_else(|| malformed(format!("missing digest parameter {name}")))
}

fn check_algorithm(algorithm: Option<&str>) -> Result<(), ParseError> {
    match algorithm {
        Some(a) if !a.eq_ignore_ascii_case("MD5") => {
            Err(malformed("unsupported digest algorithm (only MD5)"))
        }
        _ => Ok(()),
    }
}

/// Writes `value` bare when it is a token, quoted otherwise.
fn token_or_quoted(value: &str) -> String {
    if is_token(value) {
        value.to_owned()
    } else {
        quote(value)
    }
}

/// A `WWW-Authenticate` / `Proxy-Authenticate` Digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub stale: bool,
    /// The challenge offers `qop="auth"`.
    pub qop_auth: bool,
}

impl Challenge {
    pub fn parse(header_value: &str) -> Result<Challenge, ParseError> {
        let mut params = parse_auth_params(header_value)?;
        check_algorithm(take(&mut params, "algorithm").as_deref())?;
        let realm = required(&mut params, "realm")?;
        let nonce = required(&mut params, "nonce")?;
        let qop_auth = take(&mut params, "qop").is_some_and(|q| {
            q.split(',')
                .any(|option| option.trim().eq_ignore_ascii_case("auth"))
        });
        let stale = take(&mut params, "stale").is_some_and(|s| s.eq_ignore_ascii_case("true"));
        Ok(Challenge {
            realm,
            nonce,
            opaque: take(&mut params, "opaque"),
            stale,
            qop_auth,
        })
    }
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Digest realm={}, nonce={}, algorithm=MD5",
            quote(&self.realm),
            quote(&self.nonce)
        )?;
        if self.qop_auth {
            f.write_str(", qop=\"auth\"")?;
        }
        if let Some(opaque) = &self.opaque {
            write!(f, ", opaque={}", quote(opaque))?;
        }
        if self.stale {
            f.write_str(", stale=true")?;
        }
        Ok(())
    }
}

/// An `Authorization` / `Proxy-Authorization` Digest answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub cnonce: Option<String>,
    pub nc: Option<String>,
    pub qop: Option<String>,
    pub opaque: Option<String>,
    pub algorithm: Option<String>,
}

impl Credentials {
    /// Parses `Digest k=v, k="v"`: quoted strings with `\"` escapes or bare tokens, any
    /// order, unknown parameters ignored, duplicates rejected.
    pub fn parse(header_value: &str) -> Result<Credentials, ParseError> {
        let mut params = parse_auth_params(header_value)?;
        let algorithm = take(&mut params, "algorithm");
        check_algorithm(algorithm.as_deref())?;
        Ok(Credentials {
            username: required(&mut params, "username")?,
            realm: required(&mut params, "realm")?,
            nonce: required(&mut params, "nonce")?,
            uri: required(&mut params, "uri")?,
            response: required(&mut params, "response")?,
            cnonce: take(&mut params, "cnonce"),
            nc: take(&mut params, "nc"),
            qop: take(&mut params, "qop"),
            opaque: take(&mut params, "opaque"),
            algorithm,
        })
    }

    /// Builds credentials answering a challenge (client side); cnonce and nc supplied by
    /// caller. Uses `qop=auth` when the challenge offers it, the RFC 2069 form otherwise.
    pub fn answer(
        ch: &Challenge,
        username: &str,
        ha1: &str,
        method: &str,
        uri: &str,
        cnonce: &str,
        nc: u32,
    ) -> Credentials {
        let (qop, cnonce, nc) = if ch.qop_auth {
            (
                Some("auth".to_owned()),
                Some(cnonce.to_owned()),
                Some(format!("{nc:08x}")),
            )
        } else {
            (None, None, None)
        };
        let qop_args = nc.as_deref().zip(cnonce.as_deref());
        Credentials {
            username: username.to_owned(),
            realm: ch.realm.clone(),
            nonce: ch.nonce.clone(),
            uri: uri.to_owned(),
            response: response(ha1, &ch.nonce, method, uri, qop_args),
            cnonce,
            nc,
            qop,
            opaque: ch.opaque.clone(),
            algorithm: Some("MD5".to_owned()),
        }
    }

    /// Server side: true when `response` matches what ha1 gives for this method.
    /// Constant-time comparison. Checking realm, nonce freshness and that `uri` names
    /// the Request-URI is the caller's job.
    pub fn verify(&self, ha1: &str, method: &str) -> bool {
        let qop_args = match &self.qop {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                match (self.nc.as_deref(), self.cnonce.as_deref()) {
                    (Some(nc), Some(cnonce)) => Some((nc, cnonce)),
                    _ => return false,
                }
            }
            Some(_) => return false,
        };
        let expected = response(ha1, &self.nonce, method, &self.uri, qop_args);
        ct_eq_ignore_case(&expected, &self.response)
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Digest username={}, realm={}, nonce={}, uri={}, response={}, algorithm={}",
            quote(&self.username),
            quote(&self.realm),
            quote(&self.nonce),
            quote(&self.uri),
            quote(&self.response),
            token_or_quoted(self.algorithm.as_deref().unwrap_or("MD5")),
        )?;
        if let Some(cnonce) = &self.cnonce {
            write!(f, ", cnonce={}", quote(cnonce))?;
        }
        if let Some(nc) = &self.nc {
            write!(f, ", nc={}", token_or_quoted(nc))?;
        }
        if let Some(qop) = &self.qop {
            write!(f, ", qop={}", token_or_quoted(qop))?;
        }
        if let Some(opaque) = &self.opaque {
            write!(f, ", opaque={}", quote(opaque))?;
        }
        Ok(())
    }
}

/// How far in the future a nonce's timestamp may be (clock skew between servers).
const FUTURE_SKEW_MS: u64 = 5_000;

/// Key for stateless nonces: `hex(timestamp_ms):hex(md5(key:timestamp:key))`, so any
/// server holding the key can check a nonce another one issued.
#[derive(Clone)]
pub struct NonceKey([u8; 32]);

impl fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NonceKey(<redacted>)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    Valid,
    /// Authentic but too old (or from the future): challenge again with `stale=true`.
    Stale,
    /// Forged or garbled.
    Invalid,
}

impl NonceKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        NonceKey(bytes)
    }

    fn mac(&self, timestamp_hex: &str) -> String {
        let mut h = Md5::new();
        h.update(self.0);
        h.update(b":");
        h.update(timestamp_hex.as_bytes());
        h.update(b":");
        h.update(self.0);
        to_hex(&h.finalize())
    }

    pub fn issue(&self, now_ms: u64) -> String {
        let ts = format!("{now_ms:016x}");
        let mac = self.mac(&ts);
        format!("{ts}:{mac}")
    }

    /// Stale when authentic but older than `max_age_ms` or from the future by more than
    /// 5 s; Invalid when forged or garbled.
    pub fn check(&self, nonce: &str, now_ms: u64, max_age_ms: u64) -> NonceCheck {
        let lower_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let Some((ts, mac)) = nonce.split_once(':') else {
            return NonceCheck::Invalid;
        };
        if ts.len() != 16 || mac.len() != 32 || !lower_hex(ts) || !lower_hex(mac) {
            return NonceCheck::Invalid;
        }
        if !ct_eq_ignore_case(mac, &self.mac(ts)) {
            return NonceCheck::Invalid;
        }
        let Ok(issued) = u64::from_str_radix(ts, 16) else {
            return NonceCheck::Invalid;
        };
        if issued > now_ms.saturating_add(FUTURE_SKEW_MS)
            || now_ms.saturating_sub(issued) > max_age_ms
        {
            return NonceCheck::Stale;
        }
        NonceCheck::Valid
    }
}

/// Client side: answers the challenge of a 401 by adding an `Authorization` header to
/// `request`, which should carry the next CSeq.
pub fn authorize(
    request: &mut crate::Request,
    unauthorized: &crate::Response,
    username: &str,
    ha1: &str,
    cnonce: &str,
) -> Result<(), ParseError> {
    let header = unauthorized
        .headers
        .get("WWW-Authenticate")
        .ok_or_else(|| ParseError::Malformed("a 401 without WWW-Authenticate".into()))?;
    let challenge = Challenge::parse(header)?;
    let credentials = Credentials::answer(
        &challenge,
        username,
        ha1,
        request.method.as_str(),
        &request.uri,
        cnonce,
        1,
    );
    request
        .headers
        .push("Authorization", credentials.to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 2617 §3.5.
    const RFC_HA1_INPUT: (&str, &str, &str) = ("Mufasa", "testrealm@host.com", "Circle Of Life");
    const RFC_NONCE: &str = "dcd98b7102dd2f0e8b11d0f600bfb0c093";

    #[test]
    fn md5_known_vectors() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn rfc2617_worked_example() {
        let (u, r, p) = RFC_HA1_INPUT;
        let h = ha1(u, r, p);
        assert_eq!(h, "939e7578ed9e3c518a452acee763bce9");
        let got = response(
            &h,
            RFC_NONCE,
            "GET",
            "/dir/index.html",
            Some(("00000001", "0a4f113b")),
        );
        assert_eq!(got, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn rfc2617_header_parses_and_verifies() {
        let header = r#"Digest username="Mufasa",
                 realm="testrealm@host.com",
                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
                 uri="/dir/index.html",
                 qop=auth,
                 nc=00000001,
                 cnonce="0a4f113b",
                 response="6629fae49393a05397450978507c4ef1",
                 opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
        let c = Credentials::parse(header).unwrap();
        assert_eq!(c.username, "Mufasa");
        assert_eq!(c.qop.as_deref(), Some("auth"));
        assert_eq!(c.algorithm, None);
        let (u, r, p) = RFC_HA1_INPUT;
        assert!(c.verify(&ha1(u, r, p), "GET"));
        assert!(!c.verify(&ha1(u, r, "wrong"), "GET"));
        assert!(!c.verify(&ha1(u, r, p), "POST"));
        let mut upper = c.clone();
        upper.response = upper.response.to_ascii_uppercase();
        assert!(upper.verify(&ha1(u, r, p), "GET"));
    }

    #[test]
    fn rfc2617_challenge_round_trip() {
        let ch = Challenge::parse(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        assert!(ch.qop_auth);
        assert!(!ch.stale);
        assert_eq!(
            ch.opaque.as_deref(),
            Some("5ccc069c403ebaf9f0171e9517f40e41")
        );
        assert_eq!(
            ch.to_string(),
            r#"Digest realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", algorithm=MD5, qop="auth", opaque="5ccc069c403ebaf9f0171e9517f40e41""#
        );
        assert_eq!(Challenge::parse(&ch.to_string()).unwrap(), ch);
        let stale = Challenge::parse(r#"digest realm="r", nonce="n", stale=TRUE"#).unwrap();
        assert!(stale.stale && !stale.qop_auth);
    }

    #[test]
    fn answer_matches_rfc_example() {
        let ch = Challenge {
            realm: "testrealm@host.com".into(),
            nonce: RFC_NONCE.into(),
            opaque: Some("5ccc069c403ebaf9f0171e9517f40e41".into()),
            stale: false,
            qop_auth: true,
        };
        let (u, r, p) = RFC_HA1_INPUT;
        let c = Credentials::answer(
            &ch,
            u,
            &ha1(u, r, p),
            "GET",
            "/dir/index.html",
            "0a4f113b",
            1,
        );
        assert_eq!(c.response, "6629fae49393a05397450978507c4ef1");
        assert_eq!(c.nc.as_deref(), Some("00000001"));
        assert_eq!(
            c.to_string(),
            r#"Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", response="6629fae49393a05397450978507c4ef1", algorithm=MD5, cnonce="0a4f113b", nc=00000001, qop=auth, opaque="5ccc069c403ebaf9f0171e9517f40e41""#
        );
        assert_eq!(Credentials::parse(&c.to_string()).unwrap(), c);
    }

    #[test]
    fn rfc2069_form() {
        let ch = Challenge {
            realm: "r".into(),
            nonce: "n".into(),
            opaque: None,
            stale: false,
            qop_auth: false,
        };
        let h = ha1("u", "r", "p");
        let c = Credentials::answer(&ch, "u", &h, "REGISTER", "sip:r", "ignored", 1);
        assert_eq!(c.qop, None);
        assert_eq!(c.cnonce, None);
        let ha2 = md5_hex(b"REGISTER:sip:r");
        assert_eq!(c.response, md5_hex(format!("{h}:n:{ha2}").as_bytes()));
        assert!(c.verify(&h, "REGISTER"));
        let mut bad_qop = c.clone();
        bad_qop.qop = Some("auth-int".into());
        assert!(!bad_qop.verify(&h, "REGISTER"));
        let mut no_cnonce = c;
        no_cnonce.qop = Some("auth".into());
        assert!(!no_cnonce.verify(&h, "REGISTER"));
    }

    #[test]
    fn credentials_errors() {
        let full = r#"Digest username="u", realm="r", nonce="n", uri="sip:x", response="00""#;
        assert!(Credentials::parse(full).is_ok());
        for missing in ["username", "realm", "nonce", "uri", "response"] {
            let header: String = full
                .split(", ")
                .filter(|p| !p.trim_start_matches("Digest ").starts_with(missing))
                .collect::<Vec<_>>()
                .join(", ");
            let header = if header.starts_with("Digest") {
                header
            } else {
                format!("Digest {header}")
            };
            match Credentials::parse(&header) {
                Err(ParseError::Malformed(m)) => assert!(m.contains(missing), "{m}"),
                other => panic!("{missing}: {other:?}"),
            }
        }
        for bad in [
            "Basic dXNlcjpwYXNz",
            &format!("{full}, algorithm=SHA-256"),
            &format!("{full}, username=\"again\""),
            &format!("{full}, opaque=\"open"),
            &format!("{full} junk"),
            &format!("{full}, =x"),
            &format!("{full}, novalue"),
        ] {
            assert!(Credentials::parse(bad).is_err(), "{bad}");
        }
        let with_extras = format!(r#"{full}, algorithm=md5, foo=bar, baz="q\"x""#);
        let c = Credentials::parse(&with_extras).unwrap();
        assert_eq!(c.algorithm.as_deref(), Some("md5"));
        let escaped = Credentials::parse(
            r#"Digest username="a\"b\\c", realm="r", nonce="n", uri="u", response="x""#,
        )
        .unwrap();
        assert_eq!(escaped.username, "a\"b\\c");
    }

    #[test]
    fn challenge_errors() {
        assert!(Challenge::parse(r#"Digest nonce="n""#).is_err());
        assert!(Challenge::parse(r#"Digest realm="r""#).is_err());
        assert!(Challenge::parse(r#"Digest realm="r", nonce="n", algorithm=MD5-sess"#).is_err());
    }

    #[test]
    fn nonces() {
        let key = NonceKey::new([7; 32]);
        let other = NonceKey::new([8; 32]);
        let n = key.issue(1_000_000);
        assert_eq!(key.check(&n, 1_000_000, 30_000), NonceCheck::Valid);
        assert_eq!(key.check(&n, 1_030_000, 30_000), NonceCheck::Valid);
        assert_eq!(key.check(&n, 1_030_001, 30_000), NonceCheck::Stale);
        assert_eq!(key.check(&n, 995_000, 30_000), NonceCheck::Valid);
        assert_eq!(key.check(&n, 994_999, 30_000), NonceCheck::Stale);
        assert_eq!(other.check(&n, 1_000_000, 30_000), NonceCheck::Invalid);
        assert_eq!(key.check("", 0, 1), NonceCheck::Invalid);
        assert_eq!(
            key.check(&n.to_ascii_uppercase(), 1_000_000, 30_000),
            NonceCheck::Invalid
        );
        assert_eq!(
            key.check(&format!("{n}0"), 1_000_000, 30_000),
            NonceCheck::Invalid
        );
        assert_eq!(format!("{key:?}"), "NonceKey(<redacted>)");
    }

    #[test]
    fn authorize_answers_a_401_so_that_the_server_verifies() {
        let mut headers = crate::Headers::new();
        for (n, v) in [
            ("Via", "SIP/2.0/UDP h;branch=z9hG4bK1"),
            ("From", "<sip:a@x>;tag=1"),
            ("To", "<sip:a@x>"),
            ("Call-ID", "c"),
            ("CSeq", "1 REGISTER"),
        ] {
            headers.push(n, v);
        }
        let mut request = crate::Request {
            method: crate::Method::Register,
            uri: "sip:x".into(),
            headers,
            body: Vec::new(),
        };
        let mut unauthorized = crate::Response::for_request(&request, 401, "Unauthorized", None);
        let ch = Challenge {
            realm: "x".into(),
            nonce: "n1".into(),
            opaque: None,
            stale: false,
            qop_auth: true,
        };
        unauthorized
            .headers
            .push("WWW-Authenticate", ch.to_string());
        let ha1 = ha1("a@x", "x", "pw");
        authorize(&mut request, &unauthorized, "a@x", &ha1, "c1").unwrap();
        let creds = Credentials::parse(request.headers.get("Authorization").unwrap()).unwrap();
        assert!(creds.verify(&ha1, "REGISTER"));
        let bare = crate::Response::for_request(&request, 401, "Unauthorized", None);
        assert!(authorize(&mut request, &bare, "a@x", &ha1, "c1").is_err());
    }
}
