//! The deployment's certificates and the TLS every listener and client speaks.
//!
//! The original deploys certificates from an internal CA to every server (its FQDN and its
//! pool's as names) and speaks TLS on every port that carries user or admin data, with
//! mutual TLS between servers, so that a server proves it is the server the topology names.
//! tandem does the same:
//!
//! - [`Authority`]: the deployment's CA (`tandem lab up` creates one; its key never leaves
//!   the lab folder) issues a certificate per server ([`Authority::issue`]) whose names are
//!   the server's FQDN, its pool's FQDN and its addresses.
//! - [`Installed`]: a server's certificate as it lies on disk (`tls/` under its data
//!   folder), read into a [`CertStore`] that hands rustls the current certificate on every
//!   handshake, so a renewed certificate is used without a restart.
//! - [`server_config`] and [`client_config`]: the one TLS policy (TLS 1.3 only, the
//!   deployment's CA as the only root, client certificates required, optional or not
//!   asked for), and [`peer_names`], the check that a peer's certificate covers a name.
//!
//! One crypto provider (aws-lc-rs) is installed once per process ([`install_provider`]),
//! since rustls refuses to pick one when more than one is compiled in.

mod authority;
mod installed;
mod tls;

pub use authority::{Authority, CertInfo, Issued, NewKey, Request, SERVER_VALIDITY_DAYS};
pub use installed::{CertStore, Installed, TLS_DIR};
pub use tls::{
    ClientAuth, Roots, client_config, install_provider, lenient, peer_covers, peer_covers_any,
    server_config,
};

/// Where an Edge server keeps what it shows and trusts on the Internet side, under its data
/// folder: its external (Access Edge) certificate, from a public CA, as an [`Installed`]
/// folder (`access-edge/tls/`), and the roots it trusts for partners ([`PARTNER_ROOTS`]).
/// Apart from the server's own `tls/`, which the deployment's CA signs: partners never see
/// the internal certificate, and servers never trust a public CA.
pub const ACCESS_EDGE_DIR: &str = "access-edge";
/// The CA certificates (PEM) the Access Edge trusts for federated partners' certificates,
/// in [`ACCESS_EDGE_DIR`]: the public CAs partners get theirs from (in the lab, the lab's
/// public CA, `D/pki/public/ca.pem`). A partner whose certificate chains to none of them
/// fails the handshake.
pub const PARTNER_ROOTS: &str = "partner-roots.pem";

/// Why a certificate or key could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Malformed { path: String, reason: String },
    #[error("the certificate authority could not sign: {0}")]
    Signing(String),
    #[error("TLS settings refused: {0}")]
    Tls(String),
}

impl PkiError {
    fn io(path: &std::path::Path, source: std::io::Error) -> PkiError {
        PkiError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    fn malformed(path: &std::path::Path, reason: impl std::fmt::Display) -> PkiError {
        PkiError::Malformed {
            path: path.display().to_string(),
            reason: reason.to_string(),
        }
    }
}

/// The SHA-256 of a certificate's DER, upper-case hex: the thumbprint `Get-CsCertificate`
/// shows and `Set-CsCertificate -Thumbprint` takes.
pub fn thumbprint(der: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// Where the deployment's CA signs certificates (`POST`, on the lab's DNS server, which
/// plays the enterprise CA as Active Directory Certificate Services does on a domain
/// controller).
pub const SIGN_PATH: &str = "/ca/v1/sign";
/// The longest validity the CA grants.
pub const MAX_VALIDITY_DAYS: u32 = 825;

/// A server asks the CA to sign its new public key for names its current certificate
/// already covers (a renewal: the CA issues nothing a caller could not already prove).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    pub names: Vec<String>,
    #[serde(default)]
    pub addresses: Vec<std::net::IpAddr>,
    /// Hex of the uncompressed P-256 point ([`NewKey::public_key`]).
    pub public_key: String,
    pub validity_days: u32,
}

/// The CA's answer: the certificate and what it says.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SignResponse {
    pub certificate: String,
    pub info: CertInfo,
}
