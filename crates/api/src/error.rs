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
        (self.status, Json(self.body)).into_response()
    }
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

/// Checks the deployment's admin token (`Authorization: Bearer <token>`, compared in
/// constant time): every listener that takes the token uses this.
pub fn check_token(headers: &HeaderMap, token: &str) -> Result<(), ApiError> {
    let given = headers
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim());
    match given {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this call needs the deployment's admin token as `Authorization: Bearer <token>`; \
             `tandem shell --lab <dir>` sends the one in <dir>/lab.json",
        )),
        Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the admin token is wrong; use the one in the lab's lab.json",
        )),
    }
}

/// Compares without stopping at the first difference, so timing does not reveal how much
/// of a guessed token was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_checked_with_or_without_bearer_and_refused_otherwise() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            check_token(&headers, "t0k").unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        headers.insert(TOKEN_HEADER, "Bearer t0k".parse().unwrap());
        assert!(check_token(&headers, "t0k").is_ok());
        headers.insert(TOKEN_HEADER, "Bearer t0x".parse().unwrap());
        assert!(check_token(&headers, "t0k").is_err());
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
