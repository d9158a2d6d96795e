//! The Edge's internal SIP listener (the `edge_internal_sip` port on its internal
//! address): where a Front End hands over a user's message to someone outside the
//! deployment, and the Edge sends it on.
//!
//! Only the deployment's Front Ends may use it: the connection is mutual TLS with the
//! deployment's CA and the client's certificate must name a Front End of the topology
//! (403 otherwise). A `MESSAGE` whose recipient is in
//!
//! - an XMPP allowed partner's domain goes to the XMPP gateway (this Edge server must be
//!   a site's XMPP route, with `RTCXMPPTGWPX` running), which writes it on the partner's
//!   stream;
//! - an allowed SIP federation domain goes to that domain's Access Edge, found by its
//!   `_sipfederationtls._tcp` SRV record, over TLS with the Edge's external certificate
//!   (which is what lets the partner believe we speak for our domain) and the partner's
//!   checked against the partner roots; this Edge pool must have federation enabled.
//!
//! Anything else is refused with 403 naming the cmdlet that would allow it. The message
//! leaves without the deployment's inside: its Via, Contact and credentials are removed,
//! and the partner sees only the Edge's external address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use listener::PeerCertificate;
use node::Node;
use node::services::{RTCSRV, RTCXMPPTGWPX};
use sip::{Method, Request, Response, Uri};
use sipnet::{Flow, FrameLimits, Incoming, answer_malformed};
use tokio::sync::Semaphore;

use crate::metrics;
use crate::next_hop::{message_only, not_an_edge, reply};
use crate::setup::EdgeSetup;
use crate::xmpp::Gateway;

/// How long a partner's Access Edge may take to answer a message: longer than our own
/// Front End takes to deliver one (a partner's Edge waits for its Front End).
pub(crate) const PARTNER_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests one Front End connection may have in progress at once.
const IN_PROGRESS: usize = 64;
/// The SIP federation port when DNS gives none.
const SIP_FEDERATION_PORT: u16 = 5061;

/// What the internal listener needs: the gateway, and the links to partners' Access Edges.
#[derive(Debug)]
pub(crate) struct Outside {
    node: Arc<Node>,
    gateway: Arc<Gateway>,
    /// Mutual-TLS links to partners' Access Edges, made when first needed (the external
    /// certificate and partner roots read then).
    federation: tokio::sync::Mutex<Option<Arc<sipnet::Links>>>,
}

impl Outside {
    pub(crate) fn new(node: Arc<Node>, gateway: Arc<Gateway>) -> Arc<Outside> {
        Arc::new(Outside {
            node,
            gateway,
            federation: tokio::sync::Mutex::default(),
        })
    }

    /// Serves one Front End's connection (after the TLS handshake).
    pub(crate) async fn serve<S>(
        self: Arc<Self>,
        stream: S,
        local: SocketAddr,
        peer: SocketAddr,
        certificate: Option<PeerCertificate>,
    ) where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        let (flow, mut incoming) = Flow::start(stream, local, peer, "TLS", FrameLimits::LISTENER);
        let in_progress = Arc::new(Semaphore::new(IN_PROGRESS));
        while let Some(message) = incoming.recv().await {
            match message {
                // An ACK gets no answer (RFC 3261 §17.2.1); none belongs to a MESSAGE.
                Incoming::Request(request, _) if request.method == Method::Ack => {}
                Incoming::Request(request, _) => {
                    let Ok(permit) = in_progress.clone().acquire_owned().await else {
                        return;
                    };
                    let (this, flow, certificate) =
                        (self.clone(), flow.clone(), certificate.clone());
                    self.node.spawn(async move {
                        let answer = this.handle(&request, certificate.as_ref()).await;
                        let _ = flow.answer(&answer).await;
                        drop(permit);
                    });
                }
                Incoming::Malformed(bytes, error, _) => {
                    if let Some(answer) = answer_malformed(&bytes, &error) {
                        let _ = flow.send(answer).await;
                    }
                }
            }
        }
    }

    async fn handle(&self, request: &Request, certificate: Option<&PeerCertificate>) -> Response {
        let topology = self.node.replica.topology();
        let from_front_end = certificate
            .and_then(|c| c.server_identity(&topology))
            .is_some_and(|(role, _)| role == topology::Role::FrontEnd);
        if !from_front_end {
            return reply(
                request,
                403,
                "Forbidden (only the deployment's Front Ends send through the Edge's internal side)",
            );
        }
        if let Some(answer) = message_only(request, "the Edge sends MESSAGE out") {
            return answer;
        }
        let Some(setup) = EdgeSetup::of(&topology, &self.node.fqdn) else {
            return not_an_edge(request);
        };
        let Some(domain) = Uri::parse(&request.uri)
            .ok()
            .and_then(|u| topology::domain::normalize(&u.host))
        else {
            return reply(
                request,
                400,
                "Bad Request (the Request-URI names no domain)",
            );
        };
        if topology.xmpp_partner(&domain).is_some() {
            return self.to_xmpp(request, &setup).await;
        }
        if topology.allowed_partner(&domain).is_some() {
            return self.to_partner(request, &setup, &domain).await;
        }
        reply(
            request,
            403,
            &format!(
                "Forbidden ({domain} is not a federated partner: allow it with New-CsAllowedDomain -Identity {domain}, or New-CsXmppAllowedPartner -Identity {domain} for an XMPP domain)"
            ),
        )
    }

    /// A message to an XMPP partner's user, through the gateway.
    async fn to_xmpp(&self, request: &Request, setup: &EdgeSetup) -> Response {
        if setup.xmpp_route_of.is_empty() || !self.node.services.is_running(RTCXMPPTGWPX) {
            return reply(
                request,
                503,
                &format!(
                    "Service Unavailable ({} is not running an XMPP gateway that a site's XMPP route names; see Get-CsSite and Start-CsWindowsService RTCXMPPTGWPX)",
                    self.node.fqdn
                ),
            );
        }
        let content_type = request.headers.get("Content-Type").unwrap_or("text/plain");
        if !content_type.to_ascii_lowercase().starts_with("text/plain") {
            return reply(
                request,
                415,
                "Unsupported Media Type (XMPP carries text/plain messages)",
            );
        }
        let (Some(from), Ok(to)) = (
            request.headers.get("From").and_then(address_of),
            Uri::parse(&request.uri),
        ) else {
            return reply(request, 400, "Bad Request (no sender or recipient address)");
        };
        let to = format!("{}@{}", to.user.unwrap_or_default(), to.host);
        let body = String::from_utf8_lossy(&request.body);
        match self.gateway.send_message(&from, &to, &body).await {
            Ok(()) => reply(request, 200, "OK"),
            Err(why) => reply(request, 503, &format!("Service Unavailable ({why})")),
        }
    }

    /// A message to a SIP federation partner's user, to the partner's Access Edge.
    async fn to_partner(&self, request: &Request, setup: &EdgeSetup, domain: &str) -> Response {
        let topology = self.node.replica.topology();
        if !setup.federation_enabled {
            return reply(request, 403, &setup.not_federating(&topology));
        }
        if !self.node.services.is_running(RTCSRV) {
            return reply(
                request,
                503,
                "Service Unavailable (RTCSRV is stopped on this Edge)",
            );
        }
        let links = match self.links().await {
            Ok(links) => links,
            Err(why) => return reply(request, 503, &format!("Service Unavailable ({why})")),
        };
        let Some(mut onward) = request.onward() else {
            return reply(request, 483, "Too Many Hops");
        };
        // The inside stays inside: the partner sees the Edge's own Via, and no contact.
        onward.headers.remove("Via");
        onward.headers.remove("Contact");
        let targets = crate::reach::service_targets(
            &self.node,
            &format!("_sipfederationtls._tcp.{domain}"),
            &format!("sip.{domain}"),
            SIP_FEDERATION_PORT,
        )
        .await;
        let mut last = format!("DNS gives no Access Edge for {domain}");
        // One deadline for every target: the Front End waits for this answer, and a second
        // Edge it then tried would send the message again.
        let deadline = tokio::time::Instant::now() + PARTNER_TIMEOUT;
        for (name, port) in targets {
            for address in crate::reach::addresses_of(&self.node, &name).await {
                let at = SocketAddr::new(address, port);
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                match links.request(at, &name, onward.clone(), left).await {
                    Ok(answer) => {
                        metrics::federation_outbound(answer.status);
                        return reply(request, answer.status, &answer.reason);
                    }
                    Err(e) => last = format!("{name} ({at}): {e}"),
                }
            }
        }
        metrics::federation_outbound(504);
        tracing::info!(%domain, error = %last, "a federated partner's Access Edge did not answer");
        reply(
            request,
            504,
            &format!("Server Time-out ({domain}'s Access Edge does not answer: {last})"),
        )
    }

    /// The links to partners' Access Edges, made on first use.
    async fn links(&self) -> Result<Arc<sipnet::Links>, String> {
        let mut links = self.federation.lock().await;
        if let Some(links) = links.as_ref() {
            return Ok(links.clone());
        }
        let (certs, roots) = crate::setup::external_identity(&self.node.data_dir)?;
        let made = Arc::new(
            sipnet::Links::new(pki::client_config(&roots, Some(certs)))
                .from(crate::reach::external_ip(&self.node)),
        );
        *links = Some(made.clone());
        Ok(made)
    }
}

/// `user@domain` of a From header value.
fn address_of(value: &str) -> Option<String> {
    let uri = sip::NameAddr::parse(value).ok()?.uri;
    Some(format!("{}@{}", uri.user?, uri.host))
}
