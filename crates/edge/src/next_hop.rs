//! The Edge's way into the deployment: requests from outside (federated partners', and
//! the messages the XMPP gateway translates) go to the Edge pool's next-hop pool, over
//! mutual TLS with the Edge's own certificate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use node::Node;
use sip::{Request, Response};

use crate::setup::EdgeSetup;

/// How long the next hop may take to answer a routed request: longer than a Front End takes to answer a MESSAGE it delivers or relays
/// (`registrar::RELAY_TIMEOUT`), so a healthy next hop is never blamed and a delivered
/// message never reported as failed.
pub const NEXT_HOP_TIMEOUT: Duration = Duration::from_secs(3);

/// Sends a request from outside (a federated partner's, or one the XMPP gateway made) to
/// this Edge pool's next hop and gives its answer. When no registrar of it answers, the
/// answer is a 504 that names nothing of the inside (whoever sent it is outside), and the
/// Edge's log names the next hop and the command that moves it, for the operator.
pub(crate) async fn to_next_hop(server: &Node, next_hop: &NextHop, request: &Request) -> Response {
    let topology = server.replica.topology();
    let Some(setup) = EdgeSetup::of(&topology, &server.fqdn) else {
        return not_an_edge(request);
    };
    let hop = &setup.next_hop;
    // The registrars' SIP TLS port: the Edge's certificate is what says the request came
    // through it, and only a TLS connection carries one.
    let registrars = server
        .registrars_of(&topology, hop)
        .await
        .into_iter()
        .map(|a| SocketAddr::new(a.ip(), topology.ports.sip_tls));
    for dest in registrars {
        if let Ok(resp) = next_hop.request(dest, hop, request).await {
            return reply(request, resp.status, &resp.reason);
        }
    }
    let other = topology
        .front_end_pools
        .iter()
        .find(|p| !p.fqdn.eq_ignore_ascii_case(hop))
        .map_or("<pool>".to_string(), |p| p.fqdn.clone());
    tracing::warn!(
        "a request from outside found no next hop: the next hop {hop} of {} does not answer; move it with Set-CsEdgeServer -Identity EdgeServer:{} -Registrar Registrar:{other}",
        setup.edge_pool,
        setup.edge_pool
    );
    let ours = &topology.deployment.sip_domain;
    reply(
        request,
        504,
        &format!("Server Time-out ({ours} cannot take the request now)"),
    )
}

/// The answer of a server that the topology no longer makes an Edge.
pub(crate) fn not_an_edge(request: &Request) -> Response {
    reply(
        request,
        500,
        "Server Internal Error (this server is not an Edge of the topology)",
    )
}

/// What an Edge takes from a peer: `None` for a MESSAGE, to be carried on; the answer
/// otherwise (200 to OPTIONS, 405 with `Allow` to the rest, saying `why`).
pub(crate) fn message_only(request: &Request, why: &str) -> Option<Response> {
    match request.method {
        sip::Method::Message => None,
        sip::Method::Options => Some(reply(request, 200, "OK")),
        _ => {
            let mut r = reply(request, 405, &format!("Method Not Allowed ({why})"));
            r.headers.push("Allow", "MESSAGE, OPTIONS");
            Some(r)
        }
    }
}

/// The Edge's connections to its next hop's registrars: SIP over TLS to their SIP TLS
/// port, the Edge presenting its own certificate from the deployment's CA (mutual TLS:
/// what the registrar takes as "federated, through an Edge") and checking that the
/// registrar's covers the next-hop pool's name. One link per registrar (`sipnet::Links`)
/// stays open between messages and carries many at once, matched by Via branch, so a
/// message costs a handshake only when the link was closed.
#[derive(Debug)]
pub struct NextHop {
    links: sipnet::Links,
}

impl NextHop {
    pub fn new(node: Arc<Node>) -> NextHop {
        NextHop {
            links: sipnet::Links::new(node.tls.clone()).from(node.address.ip()),
        }
    }

    /// Sends `request` to the registrar at `dest` (whose certificate must cover `pool`)
    /// and waits for its final answer, within [`NEXT_HOP_TIMEOUT`] in all: over one
    /// mutual-TLS link per registrar, kept open between messages and carrying many at once.
    pub async fn request(
        &self,
        dest: SocketAddr,
        pool: &str,
        request: &Request,
    ) -> std::io::Result<Response> {
        self.links
            .request(dest, pool, request.clone(), NEXT_HOP_TIMEOUT)
            .await
    }
}

/// An answer of the Edge to `request`.
pub(crate) fn reply(request: &Request, status: u16, reason: &str) -> Response {
    let mut r = Response::for_request(request, status, reason, Some(&format!("{:x}", fresh_tag())));
    r.headers.push("Server", "tandem Access Edge");
    r
}

/// A number no earlier answer of this process used, for To tags.
fn fresh_tag() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
