//! The error answer every listener gives, and the admin token check they share.

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::TOKEN_HEADER;
use crate::client::CallError;
use crate::types::ErrorBody;

/// An error answer: a status and an [`ErrorBody`]. Services turn their own errors into it
/// in one place each (a `From` per error type), never in a handler.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                error: message.into(),
                output: None,
            },
        }
    }

    /// The same error with output produced before it (a validation report, say).
    pub fn with_output(mut self, output: cmdlet::Output) -> ApiError {
        self.body.output = Some(output);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let challenge = self.status == StatusCode::UNAUTHORIZED;
        let mut response = (self.status, Json(self.body)).into_response();
        if challenge {
            // RFC 6750: a 401 names the scheme it wants.
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"tandem\""),
            );
        }
        response
    }
}

/// The answer to a known route called with a method it does not take (axum adds the
/// `Allow` header): every router of tandem sets it with `method_not_allowed_fallback`.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} does not take {method}; the Allow header lists the methods it takes",
            uri.path()
        ),
    )
}

/// Another server's answer, passed on: a refusal keeps its status and reason; a server
/// that cannot be reached is a 502.
impl From<CallError> for ApiError {
    fn from(e: CallError) -> ApiError {
        match e {
            CallError::Unreachable { .. } => ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()),
            CallError::Refused { status, body } => ApiError {
                status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                body,
            },
        }
    }
}

/// The token of `Authorization: Bearer <token>`. The scheme's name is case-insensitive
/// (RFC 7235); a bare token, another scheme or an empty token is refused, so that a
/// token pasted into the wrong header or scheme is never half-accepted.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let Some(value) = headers.get(TOKEN_HEADER) else {
        return Err(unauthorized(
            "this call needs an operator's token as `Authorization: Bearer <token>`; \
             `tandem shell --lab <dir>` sends the lab administrator's (in <dir>/lab.json), \
             `tandem shell --lab <dir> --operator <name>` another operator's",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty());
    token.ok_or_else(|| {
        unauthorized(
            "the Authorization header must be `Bearer <token>`: a token without the Bearer scheme, \
             or another scheme, is not accepted",
        )
    })
}

/// Checks the deployment's token (`Authorization: Bearer <token>`, compared in constant
/// time): every listener that takes only the deployment's token uses this.
pub fn check_token(headers: &HeaderMap, token: &str) -> Result<(), ApiError> {
    if tokens_match(bearer_token(headers)?, token) {
        Ok(())
    } else {
        Err(unauthorized(
            "the token is wrong; use the one in the lab's lab.json",
        ))
    }
}

/// A 401 with the reason.
pub fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, message)
}

/// Whether a presented token is the expected one. Both are hashed first, so the comparison
/// takes the same time whatever their lengths and however much of a guess was right.
pub fn tokens_match(given: &str, expected: &str) -> bool {
    constant_time_eq(&token_digest(given), &token_digest(expected))
}

/// SHA-256 of a token: what is kept of an operator's token, and what is compared.
pub fn token_digest(token: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// Compares without stopping at the first difference, so timing does not reveal how much
/// of a guessed token was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

/// A value the caller sent, quoted for an answer in words: in single quotes, control
/// characters and quotes replaced, at most 80 characters — never Rust's debug form.
pub fn shown(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(80)
        .map(|c| if c.is_control() || c == '\'' { '?' } else { c })
        .collect();
    if value.chars().count() > 80 {
        out.push('…');
    }
    format!("'{out}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(TOKEN_HEADER, value.parse().unwrap());
        headers
    }

    #[test]
    fn only_a_bearer_token_is_accepted() {
        let none = check_token(&HeaderMap::new(), "t0k").unwrap_err();
        assert_eq!(none.status, StatusCode::UNAUTHORIZED);
        assert!(none.body.error.contains("Bearer"), "{}", none.body.error);
        assert!(check_token(&with("Bearer t0k"), "t0k").is_ok());
        assert!(check_token(&with("bearer t0k"), "t0k").is_ok());
        for refused in [
            "t0k",
            "Basic t0k",
            "Bearer",
            "Bearer ",
            "Bearert0k",
            "Bearer t0x",
        ] {
            let e = check_token(&with(refused), "t0k").unwrap_err();
            assert_eq!(e.status, StatusCode::UNAUTHORIZED, "{refused}");
        }
        let bare = check_token(&with("t0k"), "t0k").unwrap_err();
        assert!(
            bare.body.error.contains("Bearer <token>"),
            "{}",
            bare.body.error
        );
    }

    #[test]
    fn tokens_of_any_length_compare_by_digest() {
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abc", "abcd"));
        assert!(!tokens_match("", "abc"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn values_are_shown_in_words_not_debug_form() {
        assert_eq!(shown("pool1"), "'pool1'");
        assert_eq!(shown("a\nb'c\"d"), "'a?b?c\"d'");
        assert_eq!(shown(&"x".repeat(100)).chars().count(), 83);
    }

    #[test]
    fn a_401_names_the_bearer_scheme() {
        let r = unauthorized("no").into_response();
        assert_eq!(
            r.headers()[axum::http::header::WWW_AUTHENTICATE],
            "Bearer realm=\"tandem\""
        );
    }
}
