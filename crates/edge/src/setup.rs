//! What an Edge server applies, from the topology: its pool, federation, next hop, the
//! sites whose XMPP route it is, and the addresses of its listeners.

use std::net::SocketAddr;

use topology::{Role, Topology};

/// What this Edge server applies now, from its topology: what `Invoke-CsServerSetup`
/// reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeSetup {
    pub edge_pool: String,
    pub federation_enabled: bool,
    pub next_hop: String,
    pub federation_address: SocketAddr,
    /// The sites whose XMPP route is this server.
    pub xmpp_route_of: Vec<String>,
    pub xmpp_address: SocketAddr,
    /// Where Front Ends hand over what leaves the deployment: SIP over mutual TLS on the
    /// internal address.
    pub internal_sip_address: SocketAddr,
    /// The A/V Edge's media relay (TURN, UDP and TCP) on the external address.
    pub media_relay_address: SocketAddr,
    /// The Web Conferencing Edge (HTTPS) on the external address.
    pub web_conferencing_address: SocketAddr,
}

impl EdgeSetup {
    pub fn of(topology: &Topology, fqdn: &str) -> Option<EdgeSetup> {
        let me = topology.server(fqdn).filter(|s| s.role == Role::Edge)?;
        let pool = topology.edge_pool(me.pool_fqdn)?;
        let external = me.server.external_address();
        Some(EdgeSetup {
            edge_pool: pool.fqdn.clone(),
            federation_enabled: pool.federation_enabled,
            next_hop: pool.next_hop.clone(),
            federation_address: SocketAddr::from((external, topology.ports.edge_federation_sip)),
            xmpp_route_of: if pool.xmpp_enabled {
                topology
                    .sites
                    .iter()
                    .filter(|s| {
                        s.xmpp_federation_route
                            .as_deref()
                            .is_some_and(|r| topology::route_target(r).eq_ignore_ascii_case(fqdn))
                    })
                    .map(|s| s.name.clone())
                    .collect()
            } else {
                Vec::new()
            },
            xmpp_address: SocketAddr::from((external, topology.ports.xmpp_federation)),
            internal_sip_address: SocketAddr::from((
                me.server.address,
                topology.ports.edge_internal_sip,
            )),
            media_relay_address: SocketAddr::from((external, topology.ports.media_relay)),
            web_conferencing_address: SocketAddr::from((
                external,
                topology.ports.web_conferencing_edge,
            )),
        })
    }
}

impl EdgeSetup {
    /// Why this Edge pool takes no federated traffic, naming the pool that does.
    pub(crate) fn not_federating(&self, topology: &Topology) -> String {
        let other = topology
            .federation_edge_pool()
            .map_or("no Edge pool".to_string(), |p| p.fqdn.clone());
        format!(
            "Forbidden (federation is not enabled on {}; federated traffic goes through {other})",
            self.edge_pool
        )
    }
}

/// What the Edge shows and trusts on the Internet side: its external certificate (from a
/// public CA, in `access-edge/tls/`) and the roots partners' certificates must chain to
/// (`access-edge/partner-roots.pem`). The error names the missing file and how it is made.
pub(crate) fn external_identity(
    data_dir: &std::path::Path,
) -> Result<(std::sync::Arc<pki::CertStore>, pki::Roots), String> {
    let dir = data_dir.join(pki::ACCESS_EDGE_DIR);
    let fix = "issue the Access Edge's external certificate from a public CA into it and list the CAs partners' certificates come from in partner-roots.pem (`tandem lab up` does both)";
    let certs = pki::CertStore::open(&dir).map_err(|e| {
        format!(
            "no external certificate for the Access Edge in {}: {e}; {fix}",
            dir.display()
        )
    })?;
    let roots = pki::Roots::from_pem_file(&dir.join(pki::PARTNER_ROOTS))
        .map_err(|e| format!("no roots to check federated partners' certificates: {e}; {fix}"))?;
    Ok((certs, roots))
}
