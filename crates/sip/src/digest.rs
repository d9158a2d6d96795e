//! HTTP Digest authentication as SIP uses it (RFC 3261 §22, RFC 7616, RFC 8760): MD5 and
//! SHA-256, with or without `qop=auth`. Both sides live here: the registrar issues
//! challenges (one per algorithm, SHA-256 first, as RFC 8760 §2.4 asks) and verifies
//! credentials; a client (`tandem client`, the benchmarks, tests) answers the strongest
//! challenge it was given. Nonces, and the memory that makes a captured header useless,
//! are in [`crate::nonce`].

use std::borrow::Cow;
use std::fmt;

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::hex::{HexDigest, ct_eq_ignore_case, to_hex};
use crate::syntax::ParseError;
use crate::syntax::{
    is_token, is_token_char, malformed, parse_quoted_in_place, quote, write_quoted,
};

pub use crate::nonce::{NonceCheck, NonceCounts, NonceKey, NonceUse};

/// Lowercase hex MD5 of `data`.
pub fn md5_hex(data: &[u8]) -> String {
    to_hex(&Md5::digest(data))
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    to_hex(&Sha256::digest(data))
}

/// The digest algorithms tandem speaks (RFC 8760 §2: SHA-256 preferred, MD5 kept for
/// the clients that know nothing else). The `-sess` variants are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    /// Strongest first: the order a server challenges in and a client prefers.
    pub const PREFERRED: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Md5];

    /// The `algorithm` parameter's value, case-insensitive; absent means MD5.
    pub fn parse(value: Option<&str>) -> Result<Algorithm, ParseError> {
        match value {
            None => Ok(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("MD5") => Ok(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("SHA-256") => Ok(Algorithm::Sha256),
            Some(_) => Err(malformed(
                "unsupported digest algorithm (only SHA-256 and MD5)",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Lowercase hex digest of `data` with this algorithm.
    pub fn hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => md5_hex(data),
            Algorithm::Sha256 => sha256_hex(data),
        }
    }

    /// Lowercase hex digest of `parts` joined with `:`, each fed to the hash as it is
    /// rather than joined into a copy first.
    pub fn hex_joined(self, parts: &[&str]) -> HexDigest {
        fn feed<D: Digest>(mut hash: D, parts: &[&str]) -> HexDigest {
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    hash.update(b":");
                }
                hash.update(part.as_bytes());
            }
            HexDigest::of(&hash.finalize())
        }
        match self {
            Algorithm::Md5 => feed(Md5::new(), parts),
            Algorithm::Sha256 => feed(Sha256::new(), parts),
        }
    }

    /// `H(username:realm:password)`: what a server keeps instead of the password. It is
    /// password-equivalent for this realm, so it stays on the servers that authenticate.
    pub fn ha1(self, username: &str, realm: &str, password: &str) -> String {
        self.hex_joined(&[username, realm, password]).to_string()
    }

    /// Length of this algorithm's hex digests.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 => 64,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `md5("user:realm:password")`, lowercase hex.
pub fn ha1(username: &str, realm: &str, password: &str) -> String {
    Algorithm::Md5.ha1(username, realm, password)
}

/// The request-digest with `algorithm`: the `qop=auth` form when `qop` is
/// `Some((nc, cnonce))`, the RFC 2069 form when `None`.
pub fn response_with(
    algorithm: Algorithm,
    ha1: &str,
    nonce: &str,
    method: &str,
    uri: &str,
    qop: Option<(&str, &str)>,
) -> HexDigest {
    let ha2 = algorithm.hex_joined(&[method, uri]);
    match qop {
        Some((nc, cnonce)) => algorithm.hex_joined(&[ha1, nonce, nc, cnonce, "auth", &ha2]),
        None => algorithm.hex_joined(&[ha1, nonce, &ha2]),
    }
}

/// Parses `Digest name=value, name="value", ...` into (lowercased name, unquoted value)
/// pairs, rejecting duplicates.
///
/// Scanned by bytes, not characters: every delimiter is ASCII, so each position found is a
/// character's boundary, and a byte that is not ASCII is neither part of a token nor a
/// delimiter, as the character it starts is not (a property test holds this to the
/// character-by-character reading it replaced). It runs at every sign-in.
fn parse_auth_params(header_value: &str) -> Result<AuthParams<'_>, ParseError> {
    let s = header_value.trim_start();
    let scheme_end = position(s, |b| b.is_ascii_whitespace());
    if !s[..scheme_end].eq_ignore_ascii_case("Digest") {
        return Err(malformed("authentication scheme is not Digest"));
    }
    let mut rest = &s[scheme_end..];
    let mut out: AuthParams<'_> = Vec::with_capacity(10);
    loop {
        rest = &rest[position(rest, |b| !(b.is_ascii_whitespace() || b == b','))..];
        if rest.is_empty() {
            return Ok(out);
        }
        let name_end = position(rest, |b| !(b.is_ascii() && is_token_char(char::from(b))));
        let name = &rest[..name_end];
        if name.is_empty() {
            return Err(malformed("invalid digest parameter name"));
        }
        rest = rest[name_end..].trim_start();
        rest = rest
            .strip_prefix('=')
            .ok_or_else(|| {
                malformed(format!(
                    "digest parameter {} has no value",
                    name.to_ascii_lowercase()
                ))
            })?
            .trim_start();
        let value = if rest.starts_with('"') {
            let (value, after) = parse_quoted_in_place(rest)?;
            rest = after;
            value
        } else {
            let end = position(rest, |b| b == b',' || b == b'"' || b.is_ascii_whitespace());
            let value = Cow::Borrowed(&rest[..end]);
            rest = &rest[end..];
            value
        };
        rest = rest.trim_start();
        if !rest.is_empty() && !rest.starts_with(',') {
            return Err(malformed("expected `,` between digest parameters"));
        }
        if out.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            return Err(malformed(format!(
                "duplicate digest parameter {}",
                name.to_ascii_lowercase()
            )));
        }
        out.push((name, value));
    }
}

/// Digest parameters as written: names (compared in any case) and values, borrowed from
/// the header unless a quoted value had escapes to undo.
type AuthParams<'a> = Vec<(&'a str, Cow<'a, str>)>;

/// The index of the first byte of `s` that `stop` accepts, or its length. `stop` accepts
/// only ASCII bytes, or every byte that is not ASCII: either way the index is a
/// character's boundary.
fn position(s: &str, stop: impl Fn(u8) -> bool) -> usize {
    s.bytes().position(stop).unwrap_or(s.len())
}

fn take<'a>(params: &mut AuthParams<'a>, name: &str) -> Option<Cow<'a, str>> {
    let i = params
        .iter()
        .position(|(n, _)| n.eq_ignore_ascii_case(name))?;
    Some(params.swap_remove(i).1)
}

fn required<'a>(params: &mut AuthParams<'a>, name: &str) -> Result<Cow<'a, str>, ParseError> {
    take(params, name).ok_or_else(|| malformed(format!("missing digest parameter {name}")))
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
    pub algorithm: Algorithm,
}

impl Challenge {
    pub fn parse(header_value: &str) -> Result<Challenge, ParseError> {
        let mut params = parse_auth_params(header_value)?;
        let algorithm = Algorithm::parse(take(&mut params, "algorithm").as_deref())?;
        let realm = required(&mut params, "realm")?.into_owned();
        let nonce = required(&mut params, "nonce")?.into_owned();
        let qop_auth = take(&mut params, "qop").is_some_and(|q| {
            q.split(',')
                .any(|option| option.trim().eq_ignore_ascii_case("auth"))
        });
        let stale = take(&mut params, "stale").is_some_and(|s| s.eq_ignore_ascii_case("true"));
        Ok(Challenge {
            realm,
            nonce,
            opaque: take(&mut params, "opaque").map(Cow::into_owned),
            stale,
            qop_auth,
            algorithm,
        })
    }
}

impl Challenge {
    /// This challenge as [`ChallengeText`].
    pub fn text(&self) -> ChallengeText<'_> {
        ChallengeText {
            realm: &self.realm,
            nonce: &self.nonce,
            opaque: self.opaque.as_deref(),
            stale: self.stale,
            qop_auth: self.qop_auth,
            algorithm: self.algorithm,
        }
    }
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.text().fmt(f)
    }
}

/// A challenge to write, borrowing its realm and nonce: a server sends one nonce in a
/// challenge per algorithm at every first REGISTER of a sign-in, written straight into
/// the answer without a [`Challenge`] (and its copies) for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChallengeText<'a> {
    pub realm: &'a str,
    pub nonce: &'a str,
    pub opaque: Option<&'a str>,
    pub stale: bool,
    /// The challenge offers `qop="auth"`.
    pub qop_auth: bool,
    pub algorithm: Algorithm,
}

impl fmt::Display for ChallengeText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl ChallengeText<'_> {
    /// Writes the challenge into `f`. A server writes one into its answer's text
    /// directly, not through `format_args!`: a challenge is written for every first
    /// REGISTER of a sign-in.
    pub fn write_to(&self, f: &mut impl fmt::Write) -> fmt::Result {
        f.write_str("Digest realm=")?;
        write_quoted(f, self.realm)?;
        f.write_str(", nonce=")?;
        write_quoted(f, self.nonce)?;
        f.write_str(", algorithm=")?;
        f.write_str(self.algorithm.as_str())?;
        if self.qop_auth {
            f.write_str(", qop=\"auth\"")?;
        }
        if let Some(opaque) = self.opaque {
            f.write_str(", opaque=")?;
            write_quoted(f, opaque)?;
        }
        if self.stale {
            f.write_str(", stale=true")?;
        }
        Ok(())
    }
}

/// An `Authorization` / `Proxy-Authorization` Digest answer.
#[derive(Debug, Clone, PartialEq, Eq)]
///
/// Parsed, it borrows from the header it was read from (a server checks credentials on
/// every second REGISTER of a sign-in: no copy of each parameter); built to answer a
/// challenge, it owns its values.
pub struct Credentials<'a> {
    pub username: Cow<'a, str>,
    pub realm: Cow<'a, str>,
    pub nonce: Cow<'a, str>,
    pub uri: Cow<'a, str>,
    pub response: Cow<'a, str>,
    pub cnonce: Option<Cow<'a, str>>,
    pub nc: Option<Cow<'a, str>>,
    pub qop: Option<Cow<'a, str>>,
    pub opaque: Option<Cow<'a, str>>,
    pub algorithm: Algorithm,
}

impl<'a> Credentials<'a> {
    /// Parses `Digest k=v, k="v"`: quoted strings with `\"` escapes or bare tokens, any
    /// order, unknown parameters ignored, duplicates rejected.
    pub fn parse(header_value: &'a str) -> Result<Credentials<'a>, ParseError> {
        let mut params = parse_auth_params(header_value)?;
        let algorithm = Algorithm::parse(take(&mut params, "algorithm").as_deref())?;
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

    /// Builds credentials answering a challenge (client side) with `ha1` made with the
    /// challenge's algorithm; cnonce and nc supplied by caller. Uses `qop=auth` when the
    /// challenge offers it, the RFC 2069 form otherwise.
    pub fn answer(
        ch: &Challenge,
        username: &str,
        ha1: &str,
        method: &str,
        uri: &str,
        cnonce: &str,
        nc: u32,
    ) -> Credentials<'static> {
        let (qop, cnonce, nc) = if ch.qop_auth {
            (
                Some(Cow::Borrowed("auth")),
                Some(Cow::Owned(cnonce.to_owned())),
                Some(Cow::Owned(format!("{nc:08x}"))),
            )
        } else {
            (None, None, None)
        };
        let qop_args = nc.as_deref().zip(cnonce.as_deref());
        let response = response_with(ch.algorithm, ha1, &ch.nonce, method, uri, qop_args);
        Credentials {
            username: Cow::Owned(username.to_owned()),
            realm: Cow::Owned(ch.realm.clone()),
            nonce: Cow::Owned(ch.nonce.clone()),
            uri: Cow::Owned(uri.to_owned()),
            response: Cow::Owned(response.to_string()),
            cnonce,
            nc,
            qop,
            opaque: ch.opaque.clone().map(Cow::Owned),
            algorithm: ch.algorithm,
        }
    }

    /// Server side: true when `response` matches what `ha1` (made with the credentials'
    /// algorithm) gives for this method. Constant-time comparison. Checking realm, nonce
    /// freshness, the nonce count and that `uri` names the Request-URI is the caller's job.
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
        let expected = response_with(
            self.algorithm,
            ha1,
            &self.nonce,
            method,
            &self.uri,
            qop_args,
        );
        ct_eq_ignore_case(&expected, &self.response)
    }

    /// The nonce count as a number: `nc` (eight hex digits, RFC 7616 §3.4), or 1 for the
    /// RFC 2069 form, which has none (so such a nonce is good for one request). None when
    /// `nc` is not a count.
    pub fn count(&self) -> Option<u32> {
        match &self.nc {
            None if self.qop.is_none() => Some(1),
            None => None,
            Some(nc) if nc.len() == 8 && nc.bytes().all(|b| b.is_ascii_hexdigit()) => {
                u32::from_str_radix(nc, 16).ok()
            }
            Some(_) => None,
        }
    }
}

impl fmt::Display for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Digest username={}, realm={}, nonce={}, uri={}, response={}, algorithm={}",
            quote(&self.username),
            quote(&self.realm),
            quote(&self.nonce),
            quote(&self.uri),
            quote(&self.response),
            self.algorithm,
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

/// The challenge a client answers among a 401's `WWW-Authenticate` headers: the strongest
/// algorithm it knows (SHA-256 before MD5); challenges it cannot parse are skipped.
pub fn strongest_challenge(unauthorized: &crate::Response) -> Result<Challenge, ParseError> {
    let mut offered: Vec<Challenge> = unauthorized
        .headers
        .get_all("WWW-Authenticate")
        .into_iter()
        .filter_map(|h| Challenge::parse(h).ok())
        .collect();
    offered.sort_by_key(|c| {
        Algorithm::PREFERRED
            .iter()
            .position(|a| *a == c.algorithm)
            .unwrap_or(usize::MAX)
    });
    offered
        .into_iter()
        .next()
        .ok_or_else(|| ParseError::Malformed("a 401 without a Digest challenge".into()))
}

/// Client side: answers the strongest challenge of a 401 by adding an `Authorization`
/// header to `request`, which should carry the next CSeq.
pub fn authorize(
    request: &mut crate::Request,
    unauthorized: &crate::Response,
    username: &str,
    password: &str,
    cnonce: &str,
) -> Result<(), ParseError> {
    let challenge = strongest_challenge(unauthorized)?;
    let ha1 = challenge
        .algorithm
        .ha1(username, &challenge.realm, password);
    let credentials = Credentials::answer(
        &challenge,
        username,
        &ha1,
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
    use crate::syntax::parse_quoted;

    use proptest::prelude::*;

    /// The character-by-character reading [`parse_auth_params`] replaced: what it must
    /// agree with.
    // Parses `Digest name=value, name="value", ...` into (lowercased name, unquoted value)
    // pairs, rejecting duplicates.
    fn parse_auth_params_by_chars(header_value: &str) -> Result<Vec<(String, String)>, ParseError> {
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

    /// Authorization values from pieces that meet every case of the parameter syntax:
    /// quoted strings with escapes, tokens, blanks, stray commas and quotes, characters
    /// that are not ASCII (a no-break space among them, which is Unicode blank space),
    /// duplicates, other schemes.
    fn auth_piece() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "username=\"bob\"",
            "realm=\"a\\\"b\"",
            "nc=00000001",
            "qop=auth",
            " ",
            ",",
            ", ",
            "\t",
            "=",
            "\"",
            "Algorithm=SHA-256",
            "uri=\"sip:a\"",
            "\u{e9}",
            "na\u{e9}me=x",
            "x=\u{a0}y",
            "\u{a0}",
            "cnonce=\"\u{e9}\"",
            "nonce=\"",
            "a b",
            "=v",
            "k=v\"",
            "\\",
        ])
        .prop_map(str::to_string)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        #[test]
        fn reading_parameters_by_bytes_is_reading_them_by_characters(
            scheme in prop::sample::select(vec!["Digest ", "digest\t", " Digest  ", "Basic ", "Digest", "Digest\u{a0}"]),
            pieces in prop::collection::vec(auth_piece(), 0..12),
        ) {
            let value = format!("{scheme}{}", pieces.concat());
            let by_bytes = parse_auth_params(&value).map(|params| {
                params
                    .into_iter()
                    .map(|(name, value)| (name.to_ascii_lowercase(), value.into_owned()))
                    .collect::<Vec<_>>()
            });
            prop_assert_eq!(by_bytes, parse_auth_params_by_chars(&value));
        }
    }

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
        let got = response_with(
            Algorithm::Md5,
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
        assert_eq!(c.algorithm, Algorithm::Md5, "absent means MD5");
        let (u, r, p) = RFC_HA1_INPUT;
        assert!(c.verify(&ha1(u, r, p), "GET"));
        assert!(!c.verify(&ha1(u, r, "wrong"), "GET"));
        assert!(!c.verify(&ha1(u, r, p), "POST"));
        let mut upper = c.clone();
        upper.response = upper.response.to_ascii_uppercase().into();
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
            algorithm: Algorithm::Md5,
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
            algorithm: Algorithm::Md5,
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
            &format!("{full}, algorithm=SHA-512"),
            &format!("{full}, algorithm=MD5-sess"),
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
        assert_eq!(c.algorithm, Algorithm::Md5);
        let escaped = Credentials::parse(
            r#"Digest username="a\"b\\c", realm="r", nonce="n", uri="u", response="x""#,
        )
        .unwrap();
        assert_eq!(escaped.username, "a\"b\\c");
    }

    #[test]
    fn sha256_known_vectors_and_rfc7616_example() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // RFC 7616 §3.9.1, SHA-256 part.
        let h = Algorithm::Sha256.ha1("Mufasa", "http-auth@example.org", "Circle of Life");
        let got = response_with(
            Algorithm::Sha256,
            &h,
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            "GET",
            "/dir/index.html",
            Some(("00000001", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")),
        );
        assert_eq!(
            got,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn counts_are_read_from_nc() {
        let base = r#"Digest username="u", realm="r", nonce="n", uri="sip:x", response="00""#;
        let c = |extra: &str| {
            Credentials::parse(&format!("{base}{extra}"))
                .unwrap()
                .count()
        };
        assert_eq!(c(""), Some(1), "RFC 2069 form: one use");
        assert_eq!(c(", qop=auth, nc=0000000a, cnonce=x"), Some(10));
        assert_eq!(c(", qop=auth, cnonce=x"), None);
        assert_eq!(c(", qop=auth, nc=zz, cnonce=x"), None);
    }

    #[test]
    fn challenge_errors() {
        assert!(Challenge::parse(r#"Digest nonce="n""#).is_err());
        assert!(Challenge::parse(r#"Digest realm="r""#).is_err());
        assert!(Challenge::parse(r#"Digest realm="r", nonce="n", algorithm=MD5-sess"#).is_err());
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
            algorithm: Algorithm::Md5,
        };
        // SHA-256 is preferred wherever it stands among the challenges.
        let sha = Challenge {
            algorithm: Algorithm::Sha256,
            ..ch.clone()
        };
        for h in [ch.to_string(), sha.to_string(), "Digest garbage".into()] {
            unauthorized.headers.push("WWW-Authenticate", h);
        }
        authorize(&mut request, &unauthorized, "a@x", "pw", "c1").unwrap();
        let creds = Credentials::parse(request.headers.get("Authorization").unwrap()).unwrap();
        assert_eq!(creds.algorithm, Algorithm::Sha256);
        assert!(creds.verify(&Algorithm::Sha256.ha1("a@x", "x", "pw"), "REGISTER"));
        assert!(!creds.verify(&ha1("a@x", "x", "pw"), "REGISTER"));
        let bare = crate::Response::for_request(&request, 401, "Unauthorized", None);
        assert!(authorize(&mut request, &bare, "a@x", "pw", "c1").is_err());
    }
}
