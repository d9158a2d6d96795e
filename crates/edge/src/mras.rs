//! The Media Relay Authentication Service (MRAS) of an Edge server: credentials for its
//! pool's media relays, asked for by a Front End on the Edge's internal side for one of
//! its users (`/internal/v1/mras/credentials`, the deployment's token). They are made from
//! the pool's relay secret (`relay::credentials`), so any relay of the pool takes them and
//! the Edge keeps nothing per user.

use node::Node;
use node::services::RTCMRAUTH;
use relay::{MediaRelay, RelayAddress, Secret};
use topology::Role;

/// The longest user address taken.
const MAX_USER: usize = 256;

/// Why MRAS gives no credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MrasError {
    #[error("{0} is no Edge server of the topology; MRAS runs on Edge servers")]
    NotAnEdge(String),
    #[error(
        "the {RTCMRAUTH} service of {0} is stopped; Start-CsWindowsService -Name {RTCMRAUTH} -ComputerName {0} starts it"
    )]
    Stopped(String),
    #[error("{0}")]
    NoSecret(String),
    #[error("{0:?} is not a user's SIP address (sip:name@domain, at most {MAX_USER} characters)")]
    BadUser(String),
}

/// Credentials for `user` on the relays of this Edge's pool, valid for
/// [`relay::credentials::CREDENTIAL_LIFETIME_SECS`].
pub fn issue(server: &Node, user: &str) -> Result<MediaRelay, MrasError> {
    let topology = server.replica.topology();
    let me = topology
        .server(&server.fqdn)
        .filter(|s| s.role == Role::Edge)
        .ok_or_else(|| MrasError::NotAnEdge(server.fqdn.clone()))?;
    if !server.services.is_running(RTCMRAUTH) {
        return Err(MrasError::Stopped(server.fqdn.clone()));
    }
    let address = user.strip_prefix("sip:").unwrap_or(user);
    if user.len() > MAX_USER
        || !address.contains('@')
        || !address
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@.-_+".contains(&b))
    {
        return Err(MrasError::BadUser(user.chars().take(MAX_USER).collect()));
    }
    let secret = Secret::load(&server.data_dir).map_err(MrasError::NoSecret)?;
    let pool = topology.edge_pool(me.pool_fqdn);
    let relays = pool
        .map(|p| {
            p.servers
                .iter()
                .map(|s| RelayAddress {
                    server: s.fqdn.clone(),
                    address: s.external_address().into(),
                    internal_address: (s.address != s.external_address()).then(|| s.address.into()),
                    port: topology.ports.media_relay,
                })
                .collect()
        })
        .unwrap_or_default();
    let web_conferencing = pool
        .map(|p| {
            p.servers
                .iter()
                .map(|s| {
                    format!(
                        "https://{}:{}",
                        s.external_address(),
                        topology.ports.web_conferencing_edge
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let credentials = secret.issue(
        &format!("sip:{address}"),
        server.clock.now_ms() / 1000,
        relay::credentials::CREDENTIAL_LIFETIME_SECS,
    );
    metrics::counter!(crate::metrics::MRAS_ISSUED).increment(1);
    Ok(MediaRelay {
        edge_pool: me.pool_fqdn.to_string(),
        issued_by: server.fqdn.clone(),
        relays,
        username: credentials.username,
        password: credentials.password,
        realm: topology.deployment.sip_domain.clone(),
        expires_at: credentials.expires_at,
        web_conferencing,
    })
}
