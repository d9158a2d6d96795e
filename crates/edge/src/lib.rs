//! An Edge server's listeners on its external address: the Access Edge's SIP federation
//! listener (TLS 1.3 with mutual TLS, the `edge_federation_sip` port) and the XMPP
//! federation listener (the `xmpp_federation` port).
//!
//! A supervisor opens and closes them as the topology and the services say, so that a
//! change published and replicated (federation moved to another Edge pool, the site's
//! XMPP route moved, a new next hop) takes effect here, and a stopped service really
//! stops listening:
//!
//! - federation: open while `RTCSRV` runs. A partner is who its certificate says: the
//!   listener presents the Edge's external certificate (from a public CA, in
//!   `access-edge/tls/`) and requires the partner's, chained to a root of
//!   `access-edge/partner-roots.pem` — no certificate, or one from another CA, and the
//!   handshake fails. A request is then taken only from a sender whose domain is foreign,
//!   an allowed partner and covered by that certificate (`sip::federation::admit`; 403
//!   otherwise, naming which). There is no plain federation: nothing outside the
//!   deployment needs it, and without the certificate nothing says who a partner is.
//!   An Edge pool with federation enabled routes a federated request to its next-hop pool
//!   over TLS to the pool's registrars' SIP TLS port (found by the pool's A records in the
//!   deployment's DNS when there is one), presenting the Edge's own certificate from the
//!   deployment's CA: that is how the registrar knows the request came through an Edge
//!   and not from anyone ([`NextHop`] keeps those connections open between messages).
//!   The registrar delivers it to the user's serving pool; an Edge pool without
//!   federation refuses with 403 and names the pool that has it; a next hop that does not
//!   answer gets a 504 that names nothing of the inside, and the Edge's log names the
//!   command that moves the next hop.
//! - XMPP: open while `RTCXMPPTGWPX` runs on the Edge server a site's XMPP route names:
//!   the XMPP gateway ([`xmpp`]), server-to-server streams with the XMPP allowed
//!   partners (STARTTLS, SASL EXTERNAL, Server Dialback) and messages translated to and
//!   from SIP.
//! - internal SIP (the `edge_internal_sip` port on the internal address, mutual TLS, Front
//!   Ends only): where a Front End hands over a user's message to a federated partner or
//!   an XMPP user, which the Edge sends on (`internal`): to the partner's Access Edge,
//!   found by `_sipfederationtls._tcp`, or through the gateway.
//!
//! Nothing a peer sends stops the server: what does not parse gets an answer (or the
//! connection is closed) and the listener goes on. Nothing a peer does holds it either:
//! each listener takes at most [`CONNECTIONS`] connections at once and
//! [`CONNECTIONS_PER_SOURCE`] from one address (more are closed at once and counted in one
//! log line per interval), a TLS handshake must complete within
//! `listener::Limits::DEFAULT.handshake`, a SIP message must complete within 10 s of its first byte and a
//! connection without one for 2 minutes is closed (`sipnet::FrameLimits::LISTENER`), and an
//! XMPP stream header must arrive within [`xmpp::HEADER_TIME`].

mod internal;
pub mod metrics;
pub mod mras;
mod next_hop;
mod reach;
mod setup;
mod webconf;
pub mod xmpp;

pub use next_hop::{NEXT_HOP_TIMEOUT, NextHop};
use next_hop::{message_only, not_an_edge, reply, to_next_hop};
pub use setup::EdgeSetup;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use listener::{Admission, PeerCertificate, drops};
use node::Node;
use node::services::{RTCDATAPROXY, RTCMEDIARELAY, RTCSRV, RTCXMPPTGWPX};
use sip::{Message, Method, Request, Response};
use sipnet::answer_malformed;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use topology::{Role, Topology};
/// How often the supervisor looks at the topology and the services.
const SUPERVISE_EVERY: Duration = Duration::from_millis(200);
/// Connections one Edge listener holds at once.
pub const CONNECTIONS: usize = 1_024;
/// Connections one Edge listener holds at once from one address: a federated partner's
/// servers need a few each.
pub const CONNECTIONS_PER_SOURCE: usize = 32;

/// `Invoke-CsServerSetup` (the Deployment Wizard's Run Again): what this server applies
/// now. An Edge applies a published and replicated change by itself; this reports it,
/// with whether each listener is open.
pub async fn setup_report(server: &Node) -> Vec<cmdlet::Record> {
    let topology = server.replica.topology();
    let row = |component: &str, state: &str, detail: String| {
        cmdlet::Record::new()
            .with("Computer", server.fqdn.clone())
            .with("Component", component)
            .with("State", state)
            .with("Detail", detail)
    };
    let version = format!("configuration version {}", server.replica.version());
    let Some(setup) = EdgeSetup::of(&topology, &server.fqdn) else {
        return vec![row(
            "Front End",
            "Applied",
            format!("{version}; a Front End has no Edge listeners"),
        )];
    };
    let open = |address: SocketAddr| async move {
        tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(address))
            .await
            .is_ok_and(|r| r.is_ok())
    };
    let federation_open = open(setup.federation_address).await;
    let xmpp_open = open(setup.xmpp_address).await;
    let relay_open = open(setup.media_relay_address).await;
    let webconf_open = open(setup.web_conferencing_address).await;
    let inside_open = open(setup.internal_sip_address).await;
    let partners = &topology.deployment.xmpp_partners;
    vec![
        row(
            "Edge pool",
            "Applied",
            format!("{} ({version})", setup.edge_pool),
        ),
        row(
            "Federation (Access Edge)",
            if setup.federation_enabled {
                "Enabled"
            } else {
                "Disabled"
            },
            format!(
                "listener on {} {}; {}",
                setup.federation_address,
                if federation_open {
                    "open"
                } else {
                    "closed (RTCSRV stopped)"
                },
                if setup.federation_enabled {
                    "federated traffic is routed to the next hop".to_string()
                } else {
                    "federated traffic is refused with 403".to_string()
                }
            ),
        ),
        row("Next hop", "Applied", setup.next_hop.clone()),
        row(
            "Web Conferencing Edge",
            if webconf_open { "Running" } else { "Stopped" },
            format!(
                "HTTPS on {} {}",
                setup.web_conferencing_address,
                if webconf_open {
                    "open: meeting content downloads pass to the pools that use this Edge pool"
                } else {
                    "closed (RTCDATAPROXY stopped)"
                }
            ),
        ),
        row(
            "A/V Edge (media relay)",
            if relay_open { "Running" } else { "Stopped" },
            format!(
                "TURN on {} (UDP and TCP) {}",
                setup.media_relay_address,
                if relay_open {
                    "open"
                } else {
                    "closed (RTCMEDIARELAY stopped, or no relay secret)"
                }
            ),
        ),
        row(
            "XMPP federation",
            if setup.xmpp_route_of.is_empty() {
                "NotRouted"
            } else {
                "Routed"
            },
            if setup.xmpp_route_of.is_empty() {
                "no site's XMPP route names this server".to_string()
            } else {
                format!(
                    "the XMPP route of {}; listener on {} {}",
                    setup.xmpp_route_of.join(", "),
                    setup.xmpp_address,
                    if xmpp_open {
                        "open"
                    } else {
                        "closed (RTCXMPPTGWPX stopped)"
                    }
                )
            },
        ),
        row(
            "Internal SIP (out)",
            if inside_open { "Running" } else { "Stopped" },
            format!(
                "Front Ends' messages to partners on {} {}; XMPP partners: {}",
                setup.internal_sip_address,
                if inside_open {
                    "open (mutual TLS, Front Ends only)"
                } else {
                    "closed (RTCSRV and RTCXMPPTGWPX stopped)"
                },
                if partners.is_empty() {
                    "none (New-CsXmppAllowedPartner)".to_string()
                } else {
                    partners
                        .iter()
                        .map(|p| p.domain.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        ),
    ]
}

/// After Run Again on an Edge that now carries federation: a warning when partners would
/// not find it. Partners look up `_sipfederationtls._tcp.<domain>` and connect to its
/// target (`sip.<domain>` in the seeds); when that name points at none of this Edge pool's
/// external addresses, inbound federation keeps going to the old Access Edge until the
/// record is changed, a step the documented procedure leaves out. `None` when it points
/// here, when this server does not carry federation, or when the DNS cannot say.
pub async fn inbound_federation_warning(server: &Node) -> Option<String> {
    let topology = server.replica.topology();
    let setup = EdgeSetup::of(&topology, &server.fqdn)?;
    if !setup.federation_enabled {
        return None;
    }
    let ours: Vec<std::net::IpAddr> = topology
        .edge_pool(&setup.edge_pool)?
        .servers
        .iter()
        .map(|s| s.external_address().into())
        .collect();
    let domain = &topology.deployment.sip_domain;
    let srv = format!("_sipfederationtls._tcp.{domain}");
    let dns = server.dns.as_ref()?;
    // What the DNS says now: the operator may have just changed the record.
    dns.forget();
    let target = dns.services(&srv).await.ok()?.into_iter().next()?.target;
    let target = target.trim_end_matches('.').to_ascii_lowercase();
    let now = reach::addresses_of(server, &target).await;
    if now.iter().any(|ip| ours.contains(ip)) {
        return None;
    }
    let here = setup.federation_address.ip();
    let fix = match target.strip_suffix(&format!(".{domain}")) {
        Some(name) => format!(
            "Set-DnsServerResourceRecord -ZoneName {domain} -Name {name} -RRType A -IPv4Address {here}"
        ),
        None => format!("point {target} at {here} in the DNS that serves it"),
    };
    let pointed = if now.is_empty() {
        "has no address".to_string()
    } else {
        let listed: Vec<String> = now.iter().map(ToString::to_string).collect();
        format!("points at {}", listed.join(", "))
    };
    Some(format!(
        "{} carries federation now, but partners find the Access Edge through {srv} -> \
         {target}, which {pointed}, not this Edge pool's Access Edge ({here}): inbound \
         federation fails until it does; {fix}",
        setup.edge_pool
    ))
}

struct Listener {
    address: SocketAddr,
    task: JoinHandle<()>,
}

/// The A/V Edge's media relay, as the supervisor keeps it: running while RTCMEDIARELAY
/// runs and the pool's relay secret is there, on the external address the topology gives.
#[derive(Default)]
struct MediaRelay {
    running: Option<relay::Relay>,
    /// Where the running relay's reading is kept for `/metrics`.
    reading: Arc<std::sync::Mutex<Option<relay::Reading>>>,
    /// The last reason it could not run, logged once.
    problem: String,
}

impl MediaRelay {
    async fn reconcile(&mut self, server: &Node, topology: &Topology, want: Option<&EdgeSetup>) {
        let at = want.map(|s| s.media_relay_address);
        if self.running.as_ref().map(|r| r.udp) == at {
            return;
        }
        if let Some(old) = self.running.take() {
            self.set_reading(None);
            old.stop().await;
        }
        let Some(at) = at else { return };
        let result = match relay::Secret::load(&server.data_dir) {
            Err(e) => Err(e),
            Ok(secret) => relay::Relay::start(relay::Config {
                listen: at,
                // Clients inside reach it on the internal address too (when it is another).
                internal: topology
                    .server(&server.fqdn)
                    .map(|s| SocketAddr::new(s.server.address.into(), at.port()))
                    .filter(|inside| inside.ip() != at.ip()),
                relay_ip: at.ip(),
                realm: topology.deployment.sip_domain.clone(),
                secret,
                forbidden_peers: internal_addresses(topology),
                limits: relay::Limits::DEFAULT,
                clock: server.clock,
            })
            .await
            .map_err(|e| format!("cannot listen on {at}: {e}")),
        };
        match result {
            Ok(running) => {
                self.problem.clear();
                self.set_reading(Some(running.reading()));
                self.running = Some(running);
            }
            Err(e) if e != self.problem => {
                tracing::error!(error = %e, "the A/V relay stays closed");
                self.problem = e;
            }
            Err(_) => {}
        }
    }
}

impl MediaRelay {
    fn set_reading(&self, reading: Option<relay::Reading>) {
        *self
            .reading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = reading;
    }
}

/// The Web Conferencing Edge's listener, as the supervisor keeps it: open while
/// RTCDATAPROXY runs and the Edge's external certificate is there.
#[derive(Default)]
struct WebConferencing {
    running: Option<(
        SocketAddr,
        tokio_util::sync::CancellationToken,
        JoinHandle<()>,
    )>,
    problem: String,
}

impl WebConferencing {
    async fn reconcile(&mut self, server: &Arc<Node>, want: Option<&EdgeSetup>) {
        let at = want.map(|s| s.web_conferencing_address);
        if self.running.as_ref().map(|r| r.0) == at {
            return;
        }
        if let Some((old, stop, task)) = self.running.take() {
            stop.cancel();
            let _ = task.await;
            tracing::info!(address = %old, "web conferencing listener closed");
        }
        let Some(at) = at else { return };
        let started = async {
            let dir = server.data_dir.join(pki::ACCESS_EDGE_DIR);
            let certs = pki::CertStore::open(&dir).map_err(|e| {
                format!(
                    "no external certificate in {}: {e} (`tandem lab up` issues one)",
                    dir.display()
                )
            })?;
            let tls = pki::server_config(certs, pki::ClientAuth::NotAsked, &[b"http/1.1"])
                .map_err(|e| format!("the Web Conferencing Edge's TLS settings: {e}"))?;
            let app = webconf::router(server.clone())?;
            let listener = TcpListener::bind(at)
                .await
                .map_err(|e| format!("cannot listen on {at}: {e}"))?;
            Ok::<_, String>((tls, app, listener))
        };
        match started.await {
            Ok((tls, app, listener)) => {
                let stop = tokio_util::sync::CancellationToken::new();
                let task = tokio::spawn(listener::serve_http(
                    listener,
                    Some(tls),
                    app,
                    listener::Limits::DEFAULT,
                    stop.clone(),
                ));
                tracing::info!(address = %at, "web conferencing listener open");
                self.problem.clear();
                self.running = Some((at, stop, task));
            }
            Err(e) if e != self.problem => {
                tracing::error!(error = %e, "the Web Conferencing Edge stays closed");
                self.problem = e;
            }
            Err(_) => {}
        }
    }
}

/// The deployment's internal addresses that are no Edge's external one: a relay never
/// sends there, so that it is no way into the deployment from outside.
fn internal_addresses(topology: &Topology) -> Vec<std::net::IpAddr> {
    let external: Vec<std::net::IpAddr> = topology
        .servers()
        .filter(|s| s.role == Role::Edge)
        .map(|s| s.server.external_address().into())
        .collect();
    topology
        .servers()
        .map(|s| std::net::IpAddr::from(s.server.address))
        .filter(|a| !external.contains(a))
        .collect()
}

/// The Edge's listeners and the supervisor that opens and closes them.
#[derive(Debug, Clone)]
pub struct EdgeService {
    node: Arc<Node>,
    /// Wakes the supervisor before its period ends (a service started or stopped).
    wake: Arc<Notify>,
    /// How many passes the supervisor has made.
    passes: watch::Sender<u64>,
    /// The A/V relay while it runs, for `/metrics`.
    relay: Arc<std::sync::Mutex<Option<relay::Reading>>>,
}

impl EdgeService {
    /// Starts the supervisor, as a task of the node that ends when it shuts down (and
    /// closes the listeners and their connections).
    pub fn start(node: Arc<Node>) -> EdgeService {
        let service = EdgeService {
            node: node.clone(),
            wake: Arc::new(Notify::new()),
            passes: watch::Sender::new(0),
            relay: Arc::default(),
        };
        node.spawn(service.clone().supervise());
        service
    }

    /// The A/V relay's counters and live allocations, while it runs.
    pub fn relay_reading(&self) -> Option<relay::Reading> {
        self.relay
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Waits until the supervisor has looked at the services and topology as they are
    /// now (a service just started or stopped): its listeners then follow them.
    pub async fn settle(&self) {
        let mut passes = self.passes.subscribe();
        let seen = *passes.borrow_and_update();
        self.wake.notify_one();
        let _ =
            tokio::time::timeout(Duration::from_secs(2), passes.wait_for(|n| *n >= seen + 2)).await;
    }

    /// Opens and closes the Edge's listeners as the topology and the services say.
    async fn supervise(self) {
        let server = self.node.clone();
        let next_hop = Arc::new(NextHop::new(server.clone()));
        let gateway = xmpp::Gateway::new(server.clone(), next_hop.clone());
        let outside = internal::Outside::new(server.clone(), gateway.clone());
        // Front Ends only, by the certificate the deployment's CA gave them.
        let internal_tls = pki::Roots::new(server.certs.ca())
            .and_then(|roots| {
                pki::server_config(server.certs.clone(), pki::ClientAuth::Required(roots), &[])
            })
            .map(TlsAcceptor::from)
            .map_err(|e| tracing::error!(error = %e, "the internal SIP listener stays closed: no TLS settings"))
            .ok();
        let mut inside: Option<Listener> = None;
        let mut access_edge: Option<TlsAcceptor> = None;
        let mut access_edge_error = String::new();
        let mut federation: Option<Listener> = None;
        let mut xmpp: Option<Listener> = None;
        let mut media = MediaRelay {
            reading: self.relay.clone(),
            ..MediaRelay::default()
        };
        let mut webconf = WebConferencing::default();
        loop {
            let topology = server.replica.topology();
            // A server that is no Edge of the topology (any more) listens for nothing;
            // one that shuts down closes both.
            let setup = EdgeSetup::of(&topology, &server.fqdn);
            let stopping = server.shutdown.is_cancelled();
            let mut want_federation =
                !stopping && setup.is_some() && server.services.is_running(RTCSRV);
            // The external certificate and the partners' roots are read when the listener
            // is first wanted; without them there is no federation (never a plain one).
            if want_federation && access_edge.is_none() {
                match access_edge_tls(&server.data_dir) {
                    Ok(acceptor) => access_edge = Some(acceptor),
                    Err(e) => {
                        if e != access_edge_error {
                            tracing::error!(error = %e, "the federation listener stays closed");
                            access_edge_error = e;
                        }
                    }
                }
            }
            want_federation &= access_edge.is_some();
            let want_xmpp = !stopping
                && setup.as_ref().is_some_and(|s| !s.xmpp_route_of.is_empty())
                && server.services.is_running(RTCXMPPTGWPX);
            let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
            let s = server.clone();
            let hop = next_hop.clone();
            let acceptor = access_edge.clone();
            reconcile(
                &mut federation,
                want_federation,
                setup.as_ref().map_or(unspecified, |x| x.federation_address),
                "federation",
                move |stream, peer| {
                    let (s, hop, acceptor) = (s.clone(), hop.clone(), acceptor.clone());
                    async move {
                        let Some(acceptor) = acceptor else { return };
                        let handshake = listener::Limits::DEFAULT.handshake;
                        match listener::accept_tls(&acceptor, stream, handshake).await {
                            Ok((tls, partner)) => {
                                federation_connection(&s, &hop, tls, peer, partner).await
                            }
                            Err(e) => {
                                tracing::debug!(%peer, error = %e, "federation TLS handshake failed")
                            }
                        }
                    }
                },
            )
            .await;
            let g = gateway.clone();
            reconcile(
                &mut xmpp,
                want_xmpp,
                setup.as_ref().map_or(unspecified, |x| x.xmpp_address),
                "XMPP",
                move |stream, peer| g.clone().accept(stream, peer),
            )
            .await;
            // The internal side, where Front Ends hand over what leaves the deployment:
            // open while the Edge runs any service that sends out.
            let want_inside = !stopping
                && internal_tls.is_some()
                && setup.is_some()
                && (server.services.is_running(RTCSRV) || server.services.is_running(RTCXMPPTGWPX));
            let (o, acceptor) = (outside.clone(), internal_tls.clone());
            reconcile(
                &mut inside,
                want_inside,
                setup.as_ref().map_or(unspecified, |x| x.internal_sip_address),
                "internal SIP",
                move |stream, peer| {
                    let (o, acceptor) = (o.clone(), acceptor.clone());
                    async move {
                        let Some(acceptor) = acceptor else { return };
                        let Ok(local) = stream.local_addr() else { return };
                        let handshake = listener::Limits::DEFAULT.handshake;
                        match listener::accept_tls(&acceptor, stream, handshake).await {
                            Ok((tls, certificate)) => o.serve(tls, local, peer, certificate).await,
                            Err(e) => {
                                tracing::debug!(%peer, error = %e, "internal SIP TLS handshake failed")
                            }
                        }
                    }
                },
            )
            .await;
            let want_webconf = !stopping && server.services.is_running(RTCDATAPROXY);
            webconf
                .reconcile(&server, setup.as_ref().filter(|_| want_webconf))
                .await;
            let want_relay = !stopping && server.services.is_running(RTCMEDIARELAY);
            media
                .reconcile(&server, &topology, setup.as_ref().filter(|_| want_relay))
                .await;
            self.passes.send_modify(|n| *n += 1);
            if stopping {
                return;
            }
            tokio::select! {
                () = server.clock.sleep(SUPERVISE_EVERY) => {}
                () = self.wake.notified() => {}
                () = server.shutdown.cancelled() => {}
            }
        }
    }
}

/// The federation listener's TLS: the Edge's external certificate (`access-edge/tls/`),
/// a client certificate required and checked against the partners' roots
/// (`access-edge/partner-roots.pem`), TLS 1.3 only. The error names the missing file and
/// how it is made.
fn access_edge_tls(data_dir: &std::path::Path) -> Result<TlsAcceptor, String> {
    let (certs, roots) = setup::external_identity(data_dir)?;
    let config = pki::server_config(certs, pki::ClientAuth::Required(roots), &[])
        .map_err(|e| format!("the Access Edge's TLS settings: {e}"))?;
    Ok(TlsAcceptor::from(config))
}

/// Opens or closes one listener. The accept task owns its connections: closing it
/// (aborting and awaiting the task) ends them too, so a stopped service serves no one.
async fn reconcile<F, Fut>(
    slot: &mut Option<Listener>,
    wanted: bool,
    address: SocketAddr,
    what: &'static str,
    on_connection: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    if slot
        .as_ref()
        .is_some_and(|l| !wanted || l.address != address || l.task.is_finished())
    {
        let l = slot.take().expect("checked");
        l.task.abort();
        let _ = l.task.await;
        tracing::info!(address = %l.address, "{what} listener closed");
    }
    if wanted && slot.is_none() {
        match TcpListener::bind(address).await {
            Ok(listener) => {
                tracing::info!(%address, "{what} listener open");
                let task = tokio::spawn(async move {
                    let mut connections = tokio::task::JoinSet::new();
                    let admission = Admission::new(CONNECTIONS, CONNECTIONS_PER_SOURCE);
                    let mut refused =
                        drops::Counter::new("Edge connections refused over the listener's caps");
                    loop {
                        tokio::select! {
                            accepted = listener.accept() => match accepted {
                                Ok((stream, peer)) => match admission.admit(peer.ip()) {
                                    Some(place) => {
                                        let connection = on_connection(stream, peer);
                                        connections.spawn(async move {
                                            connection.await;
                                            drop(place);
                                        });
                                    }
                                    None => refused.add(peer),
                                },
                                // Out of descriptors, say: wait rather than spin.
                                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                            },
                            Some(_) = connections.join_next(), if !connections.is_empty() => {}
                        }
                    }
                });
                *slot = Some(Listener { address, task });
            }
            Err(e) => {
                tracing::warn!(%address, error = %e, "cannot open the {what} listener; trying again")
            }
        }
    }
}

/// Serves one federation connection from `peer` until it closes or breaks a limit.
/// Generic over the stream (the listener gives it the stream after the TLS handshake);
/// `partner` is the certificate the partner presented, which every request is checked
/// against (`None`: no request is taken from it).
pub async fn federation_connection<S>(
    server: &Node,
    next_hop: &NextHop,
    mut stream: S,
    peer: SocketAddr,
    partner: Option<PeerCertificate>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut buf = Vec::new();
    loop {
        let limits = sipnet::FrameLimits::LISTENER;
        let frame = match sipnet::next_frame(&mut stream, &mut buf, limits).await {
            Ok(Some(frame)) => frame,
            Ok(None) | Err(_) => return,
        };
        let answer = match frame {
            Ok(bytes) => match Message::parse(&bytes) {
                Ok(Message::Request(r)) if r.method == Method::Ack => continue,
                Ok(Message::Request(r)) => {
                    let answer = route(server, next_hop, &r, peer, partner.as_ref()).await;
                    metrics::federated(&r.method, answer.status);
                    Some(answer.to_bytes())
                }
                Ok(Message::Response(_)) => None,
                Err(e) => answer_malformed(&bytes, &e),
            },
            Err(e) => {
                if let Some(bytes) = answer_malformed(&buf, &e) {
                    let _ = stream.write_all(&bytes).await;
                }
                return;
            }
        };
        if let Some(bytes) = answer
            && stream.write_all(&bytes).await.is_err()
        {
            return;
        }
    }
}

/// Routes one federated request from the partner whose certificate is `partner`.
async fn route(
    server: &Node,
    next_hop: &NextHop,
    request: &Request,
    _peer: SocketAddr,
    partner: Option<&PeerCertificate>,
) -> Response {
    let topology = server.replica.topology();
    let Some(setup) = EdgeSetup::of(&topology, &server.fqdn) else {
        return not_an_edge(request);
    };
    if !setup.federation_enabled {
        return reply(request, 403, &setup.not_federating(&topology));
    }
    // A partner speaks for its own domain only, and only for one the topology allows and
    // its certificate covers: a From in the deployment's domain would let it pass for one
    // of our users, one in another partner's for that partner.
    let covers = |names: &[String]| {
        partner.is_some_and(|cert| cert.covers_any(names.iter().map(String::as_str)))
    };
    if let Err(refusal) = sip::federation::admit(&topology, request, covers) {
        return reply(request, refusal.status(), &refusal.reason());
    }
    if let Some(answer) = message_only(request, "federation carries MESSAGE and OPTIONS") {
        return answer;
    }
    let Some(onward) = request.onward() else {
        return reply(request, 483, "Too Many Hops");
    };
    let answer = to_next_hop(server, next_hop, &onward).await;
    reply(request, answer.status, &answer.reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn federation_header_domains_are_read_in_one_spelling() {
        assert_eq!(
            sip::federation::header_domain("\"Bob\" <sip:bob@Fabrikam.com>;tag=1").as_deref(),
            Some("fabrikam.com")
        );
        assert_eq!(
            sip::federation::header_domain("sip:a@contoso.com;tag=2").as_deref(),
            Some("contoso.com")
        );
    }

    #[test]
    fn the_setup_follows_the_topology() {
        let t = topology::contoso();
        let one = EdgeSetup::of(&t, "edgeserver1.contoso.com").unwrap();
        assert!(one.federation_enabled);
        assert_eq!(one.next_hop, "pool1.contoso.com");
        assert_eq!(one.xmpp_route_of, vec!["Site1".to_string()]);
        let two = EdgeSetup::of(&t, "edgeserver2.contoso.com").unwrap();
        assert!(!two.federation_enabled);
        assert!(EdgeSetup::of(&t, "pool1-fe1.contoso.com").is_none());
    }
}
