//! What the Media Relay Authentication Service (MRAS) answers: the relays of its Edge pool
//! and credentials for them. An Edge serves it to the Front Ends on its internal side
//! (`/internal/v1/mras/credentials`, the deployment's token); a Front End hands it to a
//! signed-in user (`GET /users/v1/media-relay`), from the Edge pool its pool is associated
//! with for media.

use std::net::IpAddr;

/// A Front End asking MRAS for a user's credentials.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MrasRequest {
    /// The user's SIP address.
    pub user: String,
}

/// One relay of the Edge pool: an Edge server's external side.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct RelayAddress {
    /// The Edge server.
    pub server: String,
    /// Its external address, for clients outside.
    #[schema(value_type = String)]
    pub address: IpAddr,
    /// Its internal address, for clients inside (the same port), when it is another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub internal_address: Option<IpAddr>,
    /// TURN over UDP and over TCP on this port.
    pub port: u16,
}

/// Relays and the credentials for them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct MediaRelay {
    /// The Edge pool whose relays these are.
    pub edge_pool: String,
    /// The Edge that issued the credentials.
    pub issued_by: String,
    pub relays: Vec<RelayAddress>,
    /// `<expiry>:<user>`, as TURN's long-term credentials take it.
    pub username: String,
    pub password: String,
    /// The TURN realm the relays challenge with.
    pub realm: String,
    /// When the credentials stop working, in Unix seconds.
    pub expires_at: i64,
    /// Where the user downloads meeting content from outside: the Web Conferencing Edge of
    /// each of the pool's Edges (`https://address:port`).
    #[serde(default)]
    pub web_conferencing: Vec<String>,
}
