//! The deployment's certificate authority, online: the lab's DNS server plays the
//! enterprise CA the original's servers request certificates from (Active Directory
//! Certificate Services on a domain controller), so that `Request-CsCertificate` on a
//! server renews its certificate without the lab folder's CA key leaving this process.
//!
//! The CA signs only for a caller that brings the admin token *and* a certificate of the
//! deployment that already covers every name and address it asks for: it renews what a
//! server can prove, and issues nothing new (new servers get theirs from `tandem lab up`).

use std::sync::Arc;

use api::ApiError;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use listener::PeerCertificate;
use pki::{Authority, MAX_VALIDITY_DAYS, SignRequest, SignResponse};

/// The CA's state: the authority and the token callers must bring.
pub(crate) struct Ca {
    pub(crate) authority: Authority,
    pub(crate) token: String,
}

/// `POST /ca/v1/sign`.
pub(crate) async fn sign(
    State(ca): State<Arc<Ca>>,
    headers: HeaderMap,
    peer: Option<Extension<PeerCertificate>>,
    body: Result<Json<SignRequest>, JsonRejection>,
) -> Result<Json<SignResponse>, ApiError> {
    api::check_token(&headers, &ca.token)?;
    let Json(wanted) = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let Some(Extension(peer)) = peer else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "the CA renews certificates only for a server that presents its current one",
        ));
    };
    if wanted.names.is_empty() || wanted.names.len() > 16 || wanted.addresses.len() > 16 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "a certificate names 1 to 16 names and at most 16 addresses",
        ));
    }
    let uncovered: Vec<String> = wanted
        .names
        .iter()
        .cloned()
        .chain(wanted.addresses.iter().map(ToString::to_string))
        .filter(|name| !peer.covers(name))
        .collect();
    if !uncovered.is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "the caller's certificate does not cover {}; the CA renews only names a server already holds",
                uncovered.join(", ")
            ),
        ));
    }
    if wanted.validity_days == 0 || wanted.validity_days > MAX_VALIDITY_DAYS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("validity_days must be 1 to {MAX_VALIDITY_DAYS}"),
        ));
    }
    let now = clock::Clock::system().now_ms() / 1000;
    let request = pki::Request {
        names: wanted.names,
        addresses: wanted.addresses,
        validity_days: wanted.validity_days,
        now,
    };
    let (certificate, info) = ca
        .authority
        .sign(&request, &wanted.public_key)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    tracing::info!(subject = %info.subject, thumbprint = %info.thumbprint, "certificate issued");
    Ok(Json(SignResponse { certificate, info }))
}
