//! Federation's rules at the SIP level: which senders a federated peer may speak for, and
//! the proof an Edge of the deployment puts on what it routes inward, so that the
//! registrar behind it knows the request came through an Edge and not from anyone.

use sha2::Digest as _;

use crate::{NameAddr, Request};

/// Proves that a request came from a federated peer through an Edge of the deployment.
pub const FEDERATION_HEADER: &str = "X-Tandem-Federation";

/// The federation proof of a request: a keyed hash (the deployment token) of what the Edge
/// vouched for (the request URI, From, To, Call-ID and CSeq) under a label of its own, so
/// that it is never the relay proof of another request.
pub fn federation_proof(token: &str, request: &Request) -> String {
    let h = |name: &str| request.headers.get(name).unwrap_or("").to_string();
    let digest = sha2::Sha256::digest(
        format!(
            "{token}\0tandem-federation-v1\0{}\0{}\0{}\0{}\0{}",
            request.uri,
            h("From"),
            h("To"),
            request.call_id().unwrap_or(""),
            h("CSeq")
        )
        .as_bytes(),
    );
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The domain of a From/To header value (`"Bob" <sip:bob@fabrikam.com>;tag=1`), as the
/// SIP parser reads it.
pub fn header_domain(value: &str) -> Option<String> {
    let host = NameAddr::parse(value).ok()?.uri.host.to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// Whether `request` comes from a domain other than the deployment's `ours` (or one
/// below it): the only senders a federated peer may speak for. A From without a domain
/// is not.
pub fn from_foreign_domain(request: &Request, ours: &str) -> bool {
    let ours = ours.to_ascii_lowercase();
    request
        .headers
        .get("From")
        .and_then(header_domain)
        .is_some_and(|d| d != ours && !d.ends_with(&format!(".{ours}")))
}
