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
//!   answer gets 504 naming the command that moves it.
//! - XMPP: open while `RTCXMPPTGWPX` runs on the Edge server a site's XMPP route names. It
//!   answers a server-to-server stream header with its own and its features; a malformed
//!   header gets a `bad-format` stream error.
//!
//! Nothing a peer sends stops the server: what does not parse gets an answer (or the
//! connection is closed) and the listener goes on. Nothing a peer does holds it either:
//! each listener takes at most [`CONNECTIONS`] connections at once and
//! [`CONNECTIONS_PER_SOURCE`] from one address (more are closed at once and counted in one
//! log line per interval), a TLS handshake must complete within
//! `listener::Limits::DEFAULT.handshake`, a SIP message must complete within 10 s of its first byte and a
//! connection without one for 2 minutes is closed (`sipnet::FrameLimits::LISTENER`), and an
//! XMPP stream header must arrive within [`XMPP_HEADER_TIME`].

pub mod metrics;
pub mod mras;
mod webconf;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use listener::{Admission, PeerCertificate, drops};
use node::Node;
use node::services::{RTCDATAPROXY, RTCMEDIARELAY, RTCSRV, RTCXMPPTGWPX};
use sip::{Message, Method, Request, Response};
use sipnet::answer_malformed;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use topology::{Role, Topology};
/// How often the supervisor looks at the topology and the services.
const SUPERVISE_EVERY: Duration = Duration::from_millis(200);
/// How long the next hop may take to answer a routed request: longer than a Front End takes to answer a MESSAGE it delivers or relays
/// (`registrar::RELAY_TIMEOUT`), so a healthy next hop is never blamed and a delivered
/// message never reported as failed.
pub const NEXT_HOP_TIMEOUT: Duration = Duration::from_secs(3);
/// How long an open XMPP stream may stay silent.
const IDLE: Duration = Duration::from_secs(120);
/// How long an XMPP peer has to send its whole stream header.
pub const XMPP_HEADER_TIME: Duration = Duration::from_secs(10);
/// Connections one Edge listener holds at once.
pub const CONNECTIONS: usize = 1_024;
/// Connections one Edge listener holds at once from one address: a federated partner's
/// servers need a few each.
pub const CONNECTIONS_PER_SOURCE: usize = 32;
/// The XMPP namespace of server-to-server streams.
const STREAMS_NS: &str = "http://etherx.jabber.org/streams";

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
            media_relay_address: SocketAddr::from((external, topology.ports.media_relay)),
            web_conferencing_address: SocketAddr::from((
                external,
                topology.ports.web_conferencing_edge,
            )),
        })
    }
}

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
    ]
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
            let s = server.clone();
            reconcile(
                &mut xmpp,
                want_xmpp,
                setup.as_ref().map_or(unspecified, |x| x.xmpp_address),
                "XMPP",
                move |stream, _| {
                    let s = s.clone();
                    async move { xmpp_connection(&s, stream).await }
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
    let dir = data_dir.join(pki::ACCESS_EDGE_DIR);
    let fix = "issue the Access Edge's external certificate from a public CA into it and list the CAs partners' certificates come from in partner-roots.pem (`tandem lab up` does both)";
    let certs = pki::CertStore::open(&dir).map_err(|e| {
        format!(
            "no external certificate for the Access Edge in {}: {e}; {fix}",
            dir.display()
        )
    })?;
    let roots_file = dir.join(pki::PARTNER_ROOTS);
    let roots = pki::Roots::from_pem_file(&roots_file)
        .map_err(|e| format!("no roots to check federated partners' certificates: {e}; {fix}"))?;
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

/// A number no earlier answer of this process used, for To tags.
fn fresh_tag() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn reply(request: &Request, status: u16, reason: &str) -> Response {
    let mut r = Response::for_request(request, status, reason, Some(&format!("{:x}", fresh_tag())));
    r.headers.push("Server", "tandem Access Edge");
    r
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
        return reply(
            request,
            500,
            "Server Internal Error (this server is not an Edge of the topology)",
        );
    };
    if !setup.federation_enabled {
        let other = topology
            .federation_edge_pool()
            .map_or("no Edge pool".to_string(), |p| p.fqdn.clone());
        return reply(
            request,
            403,
            &format!(
                "Forbidden (federation is not enabled on {}; federated traffic goes through {other})",
                setup.edge_pool
            ),
        );
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
    match request.method {
        Method::Options => return reply(request, 200, "OK"),
        Method::Message => {}
        _ => {
            let mut r = reply(
                request,
                405,
                "Method Not Allowed (federation carries MESSAGE and OPTIONS)",
            );
            r.headers.push("Allow", "MESSAGE, OPTIONS");
            return r;
        }
    }
    let max_forwards = request.max_forwards();
    if max_forwards == 0 {
        return reply(request, 483, "Too Many Hops");
    }
    let mut onward = request.clone();
    onward
        .headers
        .set("Max-Forwards", (max_forwards - 1).to_string());
    onward.headers.remove_credentials();
    let hop = &setup.next_hop;
    // The registrars' SIP TLS port: the Edge's certificate is what says the request came
    // through it, and only a TLS connection carries one.
    let registrars = server
        .registrars_of(&topology, hop)
        .await
        .into_iter()
        .map(|a| SocketAddr::new(a.ip(), topology.ports.sip_tls));
    for dest in registrars {
        if let Ok(resp) = next_hop.request(dest, hop, &onward).await {
            return reply(request, resp.status, &resp.reason);
        }
    }
    let other = topology
        .front_end_pools
        .iter()
        .find(|p| !p.fqdn.eq_ignore_ascii_case(hop))
        .map_or("<pool>".to_string(), |p| p.fqdn.clone());
    reply(
        request,
        504,
        &format!(
            "Server Time-out (the next hop {hop} of {} does not answer; move it with Set-CsEdgeServer -Identity EdgeServer:{} -Registrar Registrar:{other})",
            setup.edge_pool, setup.edge_pool
        ),
    )
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

/// What an XMPP stream header said, or why it is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamHeader {
    /// A server-to-server stream to `to` (empty when not said).
    Open { to: String, from: String },
    /// Not a stream header: the reason.
    Bad(String),
    /// More bytes are needed.
    Incomplete,
}

/// The most of a stream's first bytes read for its header: past this, a header that has
/// not ended is refused.
const MAX_STREAM_HEADER: usize = 4096;

/// Reads an XMPP stream header (`<?xml ...?>` optional, then `<stream:stream ...>`) from
/// the start of `bytes`, with quick-xml: the element is the streams namespace's `stream`
/// whatever its prefix, attribute values may hold entities and `>`, and the default
/// namespace must be `jabber:server`. Pure, bounded, never panics.
pub fn parse_stream_header(bytes: &[u8]) -> StreamHeader {
    use quick_xml::events::Event;
    use quick_xml::name::{Namespace, ResolveResult};

    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        // A character cut at the end of what has arrived: wait for the rest.
        Err(e) if e.error_len().is_none() && bytes.len() <= MAX_STREAM_HEADER => {
            return StreamHeader::Incomplete;
        }
        Err(_) => return StreamHeader::Bad("the stream is not UTF-8".into()),
    };
    let incomplete = || {
        if text.len() > MAX_STREAM_HEADER {
            StreamHeader::Bad("an endless stream header".into())
        } else {
            StreamHeader::Incomplete
        }
    };
    let mut reader = quick_xml::NsReader::from_str(text);
    loop {
        let (namespace, event) = match reader.read_resolved_event() {
            Ok(read) => read,
            Err(quick_xml::Error::Syntax(_)) => return incomplete(),
            Err(e) => return StreamHeader::Bad(format!("the stream header is not XML: {e}")),
        };
        let element = match event {
            Event::Decl(_) => continue,
            Event::Text(t) if t.iter().all(u8::is_ascii_whitespace) => continue,
            Event::Text(_) | Event::GeneralRef(_) => {
                return StreamHeader::Bad("text before the stream header".into());
            }
            Event::Eof => return incomplete(),
            Event::Start(e) | Event::Empty(e) => e,
            Event::Comment(_) | Event::PI(_) | Event::DocType(_) | Event::CData(_) => {
                return StreamHeader::Bad(
                    "a comment, processing instruction, DTD or CDATA before the stream header (RFC 6120 forbids them)"
                        .into(),
                );
            }
            Event::End(_) => {
                return StreamHeader::Bad("an end tag before the stream header".into());
            }
        };
        let in_streams =
            matches!(namespace, ResolveResult::Bound(Namespace(ns)) if ns == STREAMS_NS.as_bytes());
        if element.local_name().as_ref() != b"stream" || !in_streams {
            let name: String = String::from_utf8_lossy(element.name().as_ref())
                .chars()
                .take(40)
                .collect();
            return StreamHeader::Bad(format!(
                "the first element is <{name}>, not the stream header (<stream:stream xmlns:stream='{STREAMS_NS}'>)"
            ));
        }
        let (mut to, mut from, mut default_ns) = (String::new(), String::new(), None);
        for attribute in element.attributes() {
            let attribute = match attribute {
                Ok(a) => a,
                Err(e) => return StreamHeader::Bad(format!("a malformed attribute: {e}")),
            };
            let value = match attribute.unescape_value() {
                Ok(v) => v.into_owned(),
                Err(e) => return StreamHeader::Bad(format!("a malformed attribute value: {e}")),
            };
            match attribute.key.as_ref() {
                b"to" => to = value,
                b"from" => from = value,
                b"xmlns" => default_ns = Some(value),
                _ => {}
            }
        }
        if default_ns.as_deref() != Some("jabber:server") {
            return StreamHeader::Bad(
                "not a server-to-server stream (xmlns is not jabber:server)".into(),
            );
        }
        return StreamHeader::Open { to, from };
    }
}

/// Text safe in XML content and attribute values.
fn xml_escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

async fn xmpp_connection(server: &Node, mut stream: TcpStream) {
    let domain = server.replica.topology().deployment.sip_domain.clone();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    let header_by = tokio::time::Instant::now() + XMPP_HEADER_TIME;
    let header = loop {
        match parse_stream_header(&buf) {
            StreamHeader::Incomplete => {}
            done => break done,
        }
        let read = tokio::time::timeout_at(header_by, stream.read(&mut chunk)).await;
        match read {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return,
        }
        if buf.len() > 8192 {
            break StreamHeader::Bad("a stream header longer than 8 KB".into());
        }
    };
    let id = format!("{:x}", server.clock.now_ms());
    let open = format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='{STREAMS_NS}' xmlns:db='jabber:server:dialback' from='{domain}' id='{id}' version='1.0'>"
    );
    metrics::xmpp_stream(match &header {
        StreamHeader::Open { to, .. } if !to.is_empty() && !to.eq_ignore_ascii_case(&domain) => {
            "host_unknown"
        }
        StreamHeader::Open { .. } => "features",
        StreamHeader::Bad(_) => "bad_format",
        StreamHeader::Incomplete => "incomplete",
    });
    let answer = match header {
        StreamHeader::Open { to, .. } if !to.is_empty() && !to.eq_ignore_ascii_case(&domain) => {
            format!(
                "{open}<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>this server serves {domain}, not {}</text></stream:error></stream:stream>",
                xml_escape(&to)
            )
        }
        StreamHeader::Open { .. } => format!(
            "{open}<stream:features><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback></stream:features>"
        ),
        StreamHeader::Bad(why) => format!(
            "{open}<stream:error><bad-format xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>{}</text></stream:error></stream:stream>",
            xml_escape(&why)
        ),
        StreamHeader::Incomplete => return,
    };
    if stream.write_all(answer.as_bytes()).await.is_err() {
        return;
    }
    // Keep an open stream until the peer closes it or goes quiet.
    if answer.ends_with("</stream:stream>") {
        return;
    }
    loop {
        match tokio::time::timeout(IDLE, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                if String::from_utf8_lossy(&chunk[..n]).contains("</stream:stream>") {
                    let _ = stream.write_all(b"</stream:stream>").await;
                    return;
                }
            }
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_headers_are_read_or_refused_with_a_reason() {
        let ok = "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='contoso.com' from='fabrikam.com' version='1.0'>";
        assert_eq!(
            parse_stream_header(ok.as_bytes()),
            StreamHeader::Open {
                to: "contoso.com".into(),
                from: "fabrikam.com".into()
            }
        );
        assert_eq!(
            parse_stream_header(&ok.as_bytes()[..20]),
            StreamHeader::Incomplete
        );
        assert!(matches!(
            parse_stream_header(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"),
            StreamHeader::Bad(_)
        ));
        assert!(matches!(
            parse_stream_header(b"<html>"),
            StreamHeader::Bad(_)
        ));
        assert!(matches!(
            parse_stream_header(b"hello"),
            StreamHeader::Bad(_)
        ));
        assert!(matches!(
            parse_stream_header(&[0xff, 0xfe]),
            StreamHeader::Bad(_)
        ));
        // Unicode whitespace is not XML whitespace: no panic, a refusal.
        let odd = format!("<{}stream:stream>", "\u{85}".repeat(7));
        assert!(matches!(
            parse_stream_header(odd.as_bytes()),
            StreamHeader::Bad(_)
        ));
        assert_eq!(
            sip::federation::header_domain("\"Bob\" <sip:bob@Fabrikam.com>;tag=1").as_deref(),
            Some("fabrikam.com")
        );
        assert_eq!(
            sip::federation::header_domain("sip:a@contoso.com;tag=2").as_deref(),
            Some("contoso.com")
        );
        assert!(matches!(
            parse_stream_header(b"<stream:stream to=contoso.com>"),
            StreamHeader::Bad(_)
        ));
    }

    #[test]
    fn a_stream_header_is_read_as_xml_whatever_its_prefix_and_entities() {
        // Another prefix for the streams namespace, an entity and a `>` in a value.
        let header = "<s:stream xmlns='jabber:server' xmlns:s='http://etherx.jabber.org/streams' to='contoso.com' from='a&amp;b>c.example' version='1.0'>";
        assert_eq!(
            parse_stream_header(header.as_bytes()),
            StreamHeader::Open {
                to: "contoso.com".into(),
                from: "a&b>c.example".into()
            }
        );
        // `stream:stream` bound to another namespace is not the stream header.
        assert!(matches!(
            parse_stream_header(b"<stream:stream xmlns='jabber:server' xmlns:stream='urn:other'>"),
            StreamHeader::Bad(_)
        ));
        // An unknown entity, a comment first: refused with the reason.
        assert!(matches!(
            parse_stream_header(b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='&bogus;'>"),
            StreamHeader::Bad(_)
        ));
        assert!(matches!(
            parse_stream_header(b"<!-- hi --><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>"),
            StreamHeader::Bad(_)
        ));
        // A header cut in a character or a tag waits for the rest; an endless one is refused.
        let cut = "<stream:stream xmlns='jabber:server' to='é";
        assert_eq!(
            parse_stream_header(&cut.as_bytes()[..cut.len() - 1]),
            StreamHeader::Incomplete
        );
        let endless = format!(
            "<stream:stream xmlns='jabber:server' to='{}",
            "a".repeat(5000)
        );
        assert!(matches!(
            parse_stream_header(endless.as_bytes()),
            StreamHeader::Bad(_)
        ));
        assert_eq!(xml_escape("<a b='c'>&"), "&lt;a b=&apos;c&apos;&gt;&amp;");
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

    proptest::proptest! {
        #[test]
        fn stream_header_parsing_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse_stream_header(&bytes);
        }

        #[test]
        fn stream_header_text_never_panics(text in "[<>'\"=a-z: /?\u{85}\u{a0}\u{2028}é]{0,120}") {
            let _ = parse_stream_header(text.as_bytes());
        }

        #[test]
        fn any_unicode_in_a_tag_never_panics(text in "\\PC{0,80}") {
            let _ = parse_stream_header(format!("<{text}>").as_bytes());
            let _ = parse_stream_header(format!("<stream:stream{text}>").as_bytes());
        }
    }
}
