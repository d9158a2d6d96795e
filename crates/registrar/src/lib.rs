//! The registrar on every Front End: SIP over UDP and TCP on the server's own address.
//!
//! - `REGISTER` is sign-in. The user is looked up in this server's CMS replica (the user
//!   directory is replicated to every Front End), authenticated with digest (RFC 3261 §22,
//!   SHA-256 or MD5) against the stored hash, and then either served — bindings stored in this pool's Back End
//!   (a refresh answered from memory and written behind, see [`bindings`]), the
//!   mode (`full` or `resiliency`) in the `X-Tandem-Mode` header of the 200 — or sent to the
//!   pool that serves the user with a 301 whose Contacts are that pool's registrars.
//! - `MESSAGE` is delivered to the recipient's registered contacts by the pool that serves
//!   the recipient; another pool relays it there. 480 when the recipient is not signed in.
//!   A user's message to a foreign domain goes to the Edge that carries it (`federate`):
//!   the XMPP route's Edge for an XMPP partner, the Edge pool with federation for a SIP
//!   partner, over mutual TLS to the Edge's internal port; any other domain is refused
//!   with 403 naming the cmdlet that allows it, and nothing from outside is relayed out.
//! - `OPTIONS` answers 200: it is also how a pool watches its partner.
//! - A `MESSAGE` from a federated partner comes through an Edge, over TLS with the Edge's
//!   certificate from the deployment's CA: a connection whose certificate names an Edge of
//!   the topology is the only thing that spares a sender the digest (no header is believed),
//!   and the sender must still be an allowed partner's user, never one of ours.
//!
//! Digest is done so that what crosses the wire cannot be reused: a nonce is signed (with a
//! key every server derives from the deployment's token) and bound to the Front End that
//! issued it, which remembers the highest nonce count each nonce carried (`sip::nonce`), so
//! a captured `Authorization` header replayed — to this server or another — gets a new
//! challenge, never a 200; the digest `uri` must be the Request-URI, so a header cannot be
//! moved to another recipient. Nothing says who exists: an unknown user is challenged like
//! a known one and refused like a wrong password. Failed sign-ins lock the (user, source)
//! pair and the source with backoff (`lockout`). Over UDP a retransmitted request gets the
//! cached answer instead of being run twice.
//!
//! A flood is kept to its source: its datagrams are read within a budget per source
//! address (`sipnet`), and requests over UDP that wait (a REGISTER for its batch's commit, a
//! MESSAGE for its delivery) are held at most [`UDP_IN_FLIGHT_PER_SOURCE`] at a time per
//! source address (and [`UDP_IN_FLIGHT`] in all; one answered at once holds nothing), the
//! rest dropped and counted in one log line per interval, so one flooding address
//! cannot crowd out other users' sign-ins; the partner pool's health probes (OPTIONS from
//! the deployment's servers) come on a queue of their own and are answered at once, so a
//! flood cannot make the partner believe this pool is down. TCP connections are capped per
//! listener and per source ([`TCP_CONNECTIONS`], [`TCP_CONNECTIONS_PER_SOURCE`]), in the
//! requests they have in flight (256 a connection, 4,096 over all; past them a 503) and in
//! time (`sipnet::FrameLimits::LISTENER`); the UDP transactions remembered for
//! retransmissions are bounded in number as well as in time. A user has at most [`MAX_BINDINGS`] contacts,
//! each at the address its REGISTER came from, so a MESSAGE fans out to at most that many,
//! toward the user's own address.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument as _;

use bindings::Committer;
use cms::directory::UserRecord;
use listener::{Admission, drops};
use lockout::{Lockouts, Verdict};
use node::Node;
use node::services::RTCSRV;
use sip::digest::{Algorithm, ChallengeText, Credentials, NonceCheck, NonceCounts, NonceUse};
use sip::{Method, NameAddr, Request, Response, Uri};
use sipnet::{
    Endpoint, Flow, Incoming, REGISTRAR_CHANGED, REGISTRATION_NOTIFY, answer_malformed,
    contact_address,
};
use store::{Binding, BindingUpdate};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use topology::serving::{Decision, Mode};
use transactions::{Seen, TransactionTable};

pub mod bindings;
pub mod lockout;
pub mod metrics;
pub mod resiliency;
mod transactions;
pub mod userservices;

pub use sipnet::{MODE_HEADER, SERVING_POOL_HEADER};
/// The header Edges once put on federated requests as a keyed proof; the Edge's
/// certificate took its place. Whoever still sends it is not believed: it is stripped.
const OLD_FEDERATION_HEADER: &str = "X-Tandem-Federation";
/// Asks the Front End a MESSAGE is relayed to (by another Front End, over mutual TLS) to
/// deliver it to this one contact, bound over a connection it holds.
pub const DELIVER_HEADER: &str = "X-Tandem-Deliver-To";
/// How long a nonce stays valid.
pub const NONCE_MAX_AGE_MS: u64 = 5 * 60 * 1000;
/// How many nonces a registrar remembers the counts of (32 bytes each, allocated at
/// start): a nonce keeps its place until one issued this many challenges later is used
/// (seconds even at the highest sign-in rates, and clients answer a challenge at once);
/// after that it is answered `stale=true`.
pub const NONCE_MEMORY: usize = 65_536;
/// The answer to a wrong password, and to a user who does not exist.
const WRONG_CREDENTIALS: &str = "Forbidden (wrong user name or password)";
/// Bindings last at most this long (and this long when the client does not say).
pub const MAX_EXPIRES: u32 = 3600;
/// The shortest registration taken (seconds): a shorter one gets `423 Interval Too Brief`
/// with this in `Min-Expires` (RFC 3261 §10.3), as Kamailio's registrar does by default.
pub const MIN_EXPIRES: u32 = 60;
/// How long a MESSAGE waits for a user's contact. Contacts are tried at once, in
/// parallel: the first to accept answers the sender, and a stale contact costs at most this.
pub const CONTACT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a MESSAGE relayed to the Front End of the recipient's pool waits: that Front
/// End answers within [`CONTACT_TIMEOUT`], so this is longer, and shorter than an Edge's
/// wait for its next hop (`edge::NEXT_HOP_TIMEOUT`), so that a sender never gets a
/// time-out for a message that was delivered.
pub const RELAY_TIMEOUT: Duration = Duration::from_secs(2);
/// SIP requests over UDP waiting at once (for a commit, a delivery), in all, from users
/// (and as many again from the deployment's servers): beyond it a request is dropped (its
/// sender retransmits).
pub const UDP_IN_FLIGHT: usize = 512;
/// SIP requests over UDP waiting at once for one source address: room for a benchmark's
/// 50 clients behind one address, not for one address to take the registrar.
pub const UDP_IN_FLIGHT_PER_SOURCE: usize = 64;
/// SIP TCP connections open at once on the registrar's listener.
pub const TCP_CONNECTIONS: usize = 1_024;
/// SIP TCP connections open at once from one source address.
pub const TCP_CONNECTIONS_PER_SOURCE: usize = 64;
/// Contacts one user may have registered at once. 10 covers a user's devices; at 512
/// bytes a contact at most, the 200 OK listing them stays far below the 65,000-byte limit.
pub const MAX_BINDINGS: usize = 10;
/// The longest contact URI a REGISTER may bind.
pub const MAX_CONTACT_BYTES: usize = 512;
/// The registrar of one Front End: its SIP endpoint, its UDP transaction memory, and the
/// key that signs and checks digest nonces.
#[derive(Debug)]
pub struct Registrar {
    node: Arc<Node>,
    /// Plain SIP over UDP, when the topology asks for it (`ports.sip_plain`).
    endpoint: Option<Arc<Endpoint>>,
    /// Mutual-TLS flows to the deployment's other servers (relays, hand-overs).
    links: Arc<sipnet::Links>,
    /// The partner watch's own links: its probes never queue behind relays.
    probe_links: Arc<sipnet::Links>,
    /// The flows clients signed in on, by address of record and the contact it bound
    /// there: how a client over TLS (or TCP) is reached. Kept to the user's current
    /// bindings at each REGISTER, and emptied of a flow when it closes.
    flows: std::sync::Mutex<sip::hashed::TrustedKeys<String, HashMap<String, Flow>>>,
    transactions: std::sync::Mutex<TransactionTable>,
    /// Derived from the deployment's token; nonces are bound to this server.
    nonce_key: sip::digest::NonceKey,
    /// The highest nonce count each nonce this server issued was used with.
    nonce_counts: std::sync::Mutex<NonceCounts>,
    /// Failed sign-ins, per (user, source) and per source.
    lockouts: std::sync::Mutex<Lockouts>,
    /// The group commit of binding changes to the pool's Back End (None without one).
    committer: Option<Committer>,
    /// Requests in flight over all connections ([`CONNECTIONS_IN_FLIGHT`]).
    connection_slots: Arc<tokio::sync::Semaphore>,
}

/// The nonce key every server of a deployment shares.
pub fn nonce_key(token: &str) -> sip::digest::NonceKey {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("tandem digest nonce key:{token}").as_bytes());
    sip::digest::NonceKey::new(digest.into())
}

impl Registrar {
    /// Binds TLS on `tls_at` (with `tls`: this server's certificate, a client's optional)
    /// and, when `plain` is given, UDP and TCP there; starts serving, in tasks of the node
    /// that end when it shuts down.
    pub async fn start(
        node: Arc<Node>,
        plain: Option<SocketAddr>,
        tls_at: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
    ) -> io::Result<Arc<Registrar>> {
        let tls_listener = TcpListener::bind(tls_at).await?;
        let plain = match plain {
            Some(at) => Some((
                Endpoint::bind_server(at).await?,
                TcpListener::bind(at).await?,
            )),
            None => None,
        };
        let registrar = Arc::new(Registrar {
            nonce_key: nonce_key(&node.token),
            nonce_counts: std::sync::Mutex::new(NonceCounts::new(NONCE_MEMORY)),
            lockouts: std::sync::Mutex::default(),
            node: node.clone(),
            endpoint: plain.as_ref().map(|((endpoint, _), _)| endpoint.clone()),
            links: Arc::new(sipnet::Links::new(node.tls.clone()).from(node.address.ip())),
            probe_links: Arc::new(sipnet::Links::new(node.tls.clone()).from(node.address.ip())),
            flows: std::sync::Mutex::default(),
            transactions: std::sync::Mutex::default(),
            connection_slots: Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_IN_FLIGHT)),
            committer: node
                .backend
                .clone()
                .map(|be| Committer::start(&node, be, MAX_BINDINGS)),
        });
        if let Some(((endpoint, queues), tcp)) = plain {
            registrar.serve_plain(endpoint, queues, tcp);
        }
        node.spawn(serve_tls(registrar.clone(), tls_listener, tls));
        Ok(registrar)
    }

    /// Plain SIP: UDP (users' requests within per-source caps, the servers' probes on a
    /// queue of their own) and TCP.
    fn serve_plain(
        self: &Arc<Self>,
        endpoint: Arc<Endpoint>,
        queues: sipnet::ServerQueues,
        tcp: TcpListener,
    ) {
        let node = &self.node;
        let sipnet::ServerQueues {
            requests,
            mut probes,
            mut handed_over,
        } = queues;
        let in_flight = Admission::new(UDP_IN_FLIGHT, UDP_IN_FLIGHT_PER_SOURCE);
        // The deployment's servers (Front Ends relaying, Edges forwarding) answer for
        // many users each: they share a cap of their own.
        let servers_in_flight = Admission::new(UDP_IN_FLIGHT, UDP_IN_FLIGHT);
        // What a request read from the socket goes through: the per-source cap on requests
        // in flight, then its answer, here if it needs no waiting. Only a request that
        // waits holds a place: one answered at once holds nothing past this call, and
        // asking whether there is room is, with nothing waiting, a load of a number.
        let handler = {
            let udp = self.clone();
            move |dropped: &mut drops::Counter, message: Incoming, from_server: bool| {
                let source = message.peer().ip();
                let admission = if from_server {
                    &servers_in_flight
                } else {
                    &in_flight
                };
                if !admission.has_room(source) {
                    dropped.add(message.peer());
                    return;
                }
                // One count of the registrar's taken for the request, not the endpoint's
                // too: it holds the endpoint (each count is an atomic both readers' cores
                // write).
                let registrar = udp.clone();
                run_or_spawn(
                    &udp.node,
                    async move {
                        if let Some(endpoint) = &registrar.endpoint {
                            on_datagram(&registrar, endpoint, message).await;
                        }
                    },
                    || admission.admit(source),
                );
            }
        };
        let dropped =
            || drops::Counter::new("SIP requests dropped over the registrar's per-source limit");
        // One reader a worker thread: each answers what it read, in its own task.
        let readers = tokio::runtime::Handle::current()
            .metrics()
            .num_workers()
            .max(1);
        for _ in 0..readers {
            let (requests, handler, stop) =
                (requests.clone(), handler.clone(), node.shutdown.clone());
            node.spawn(async move {
                let mut dropped = dropped();
                let serve = requests
                    .serve(|message, from_server| handler(&mut dropped, message, from_server));
                tokio::select! {
                    () = serve => {}
                    () = stop.cancelled() => {}
                }
            });
        }
        // And what they handed over while the socket was behind.
        let stop = node.shutdown.clone();
        let handed_over_endpoint = endpoint.clone();
        node.spawn(async move {
            let mut dropped = dropped();
            loop {
                let message = tokio::select! {
                    m = handed_over.recv() => m,
                    () = stop.cancelled() => None,
                };
                let Some(message) = message else { return };
                let from_server = handed_over_endpoint.is_priority_source(message.peer().ip());
                handler(&mut dropped, message, from_server);
            }
        });
        let prober = self.clone();
        let stop = node.shutdown.clone();
        node.spawn(async move {
            let mut topology = prober.node.replica.subscribe_topology();
            trust_servers_of(&endpoint, &topology.borrow_and_update());
            loop {
                tokio::select! {
                    m = probes.recv() => match m {
                        Some(probe) => on_probe(&prober, &endpoint, probe).await,
                        None => return,
                    },
                    changed = topology.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        trust_servers_of(&endpoint, &topology.borrow_and_update());
                    }
                    () = stop.cancelled() => return,
                }
            }
        });
        let tcp_registrar = self.clone();
        let stop = node.shutdown.clone();
        node.spawn(async move {
            let admission = Admission::new(TCP_CONNECTIONS, TCP_CONNECTIONS_PER_SOURCE);
            let mut refused =
                drops::Counter::new("SIP TCP connections refused over the registrar's caps");
            while let Some((stream, peer, admitted)) =
                listener::accept_admitted(&tcp, &admission, &mut refused, &stop).await
            {
                let registrar = tcp_registrar.clone();
                tcp_registrar.node.spawn(async move {
                    let local = stream.local_addr().unwrap_or(peer);
                    let _ = stream.set_nodelay(true);
                    on_connection(registrar, stream, local, peer, "TCP", None).await;
                    drop(admitted);
                });
            }
        });
    }

    /// The registrar's plain UDP endpoint, when the topology asks for plain SIP.
    pub fn endpoint(&self) -> Option<&Arc<Endpoint>> {
        self.endpoint.as_ref()
    }

    /// The mutual-TLS links the partner watch probes over.
    pub fn probe_links(&self) -> &Arc<sipnet::Links> {
        &self.probe_links
    }
}

/// Runs `work` here as far as it goes without waiting, and spawns it only if it must wait,
/// holding what `hold_while_waiting` gives (a place under a cap) until it ends.
///
/// Most requests never wait: a challenge, a refusal, an OPTIONS are answered in one go.
/// Handling those in the loop that received them saves a task and, on a machine whose
/// other threads are idle, the wake-up of another thread to run it; only a request that
/// waits (a REGISTER for its batch to commit, a MESSAGE for its delivery) becomes a task.
/// Polling once with a waker that does nothing is sound: the spawned task is polled again
/// at once, and registers its own waker then. The work runs outside tokio's cooperative
/// budget: the reader that calls this counts each request against its own budget, and a
/// request must not find that budget spent half-way through a batch of datagrams and go
/// pending — becoming a task — for no reason but the reader's fairness.
fn run_or_spawn<F, H>(node: &Node, work: F, hold_while_waiting: impl FnOnce() -> H)
where
    F: std::future::Future<Output = ()> + Send + 'static,
    H: Send + 'static,
{
    let mut work = Box::pin(tokio::task::coop::unconstrained(work));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if work.as_mut().poll(&mut cx).is_pending() {
        let held = hold_while_waiting();
        node.spawn(async move {
            work.await;
            drop(held);
        });
    }
}

/// Lets the deployment's servers' OPTIONS (the partner pool's health probes over plain
/// SIP) take the priority queue.
fn trust_servers_of(endpoint: &Endpoint, topology: &topology::Topology) {
    let servers = topology
        .servers()
        .map(|s| std::net::IpAddr::V4(s.server.address))
        .collect();
    endpoint.set_priority_sources(servers);
}

/// A health probe of one of the deployment's servers: answered at once, off the queue the
/// users' requests share.
async fn on_probe(registrar: &Registrar, endpoint: &Endpoint, probe: Incoming) {
    if !registrar.node.services.is_running(RTCSRV) {
        return;
    }
    if let Incoming::Request(request, peer) = probe {
        let answer = handle(registrar, &request, &Arrival::datagram(peer)).await;
        let _ = endpoint.send(peer, &answer.to_bytes()).await;
    }
}

async fn on_datagram(registrar: &Registrar, endpoint: &Endpoint, message: Incoming) {
    let server = &*registrar.node;
    if !server.services.is_running(RTCSRV) {
        return; // a stopped RTCSRV answers nothing, as if not listening
    }
    match message {
        Incoming::Request(request, peer) => {
            if request.method == Method::Ack {
                return;
            }
            // A REGISTER or OPTIONS without credentials changes nothing here (it is
            // challenged, redirected, refused or answered with capabilities), so it is
            // answered statelessly, as RFC 3261 §8.2.7 lets a server do: a retransmission
            // is answered afresh. Only requests that can change state are remembered —
            // half the table under sign-in load, and none of its challenges.
            if is_stateless(&request) {
                let response = handle(registrar, &request, &Arrival::datagram(peer)).await;
                let _ = endpoint.send(peer, &response.to_bytes()).await;
                return;
            }
            let (key, seen) = {
                let mut transactions = registrar
                    .transactions
                    .lock()
                    .expect("the transactions lock");
                let key = transactions.key(&request, peer);
                (key, transactions.arrive(key, Instant::now()))
            };
            match seen {
                Seen::New => {}
                Seen::InProgress => return,
                Seen::Answered(bytes) => {
                    let _ = endpoint.send(peer, &bytes).await;
                    return;
                }
            }
            let response = handle(registrar, &request, &Arrival::datagram(peer)).await;
            let bytes = response.to_bytes();
            let _ = endpoint.send(peer, &bytes).await;
            registrar
                .transactions
                .lock()
                .expect("the transactions lock")
                .answer(key, &bytes);
        }
        Incoming::Malformed(bytes, error, peer) => {
            if let Some(resp) = answer_malformed(&bytes, &error) {
                let _ = endpoint.send(peer, &resp).await;
            }
        }
    }
}

/// Whether handling `request` can change nothing, so that a retransmission may be handled
/// again instead of answered from the transaction table: a REGISTER or OPTIONS without
/// credentials (a REGISTER's bindings change only after its credentials are checked).
fn is_stateless(request: &Request) -> bool {
    matches!(request.method, Method::Register | Method::Options)
        && request.headers.get("Authorization").is_none()
}

/// How a request reached the registrar: from where, on which connection, and — over
/// mutual TLS — which server of the deployment the caller's certificate names.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub peer: SocketAddr,
    /// The connection it came on (TCP or TLS); None over UDP.
    pub flow: Option<Flow>,
    /// The FQDN of the deployment's server whose certificate the caller presented.
    pub server: Option<String>,
}

impl Arrival {
    fn datagram(peer: SocketAddr) -> Arrival {
        Arrival {
            peer,
            flow: None,
            server: None,
        }
    }

    /// The deployment's server of `role` that sent the request, by its certificate.
    fn sent_by(&self, topology: &topology::Topology, role: topology::Role) -> Option<String> {
        let fqdn = self.server.as_deref()?;
        topology
            .server(fqdn)
            .filter(|s| s.role == role)
            .map(|s| s.server.fqdn.clone())
    }
}

/// SIP over TLS (the internal SIP TLS port): connections within the same caps as TCP's, the
/// handshake in time, then the same handling as TCP. A caller that presents the
/// certificate of one of the deployment's servers is known as that server.
async fn serve_tls(
    registrar: Arc<Registrar>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
) {
    let handshake = listener::Limits::DEFAULT.handshake;
    let admission = Admission::new(TCP_CONNECTIONS, TCP_CONNECTIONS_PER_SOURCE);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut refused = listener::drops::Counter::new("SIP TLS connections refused over the caps");
    let stop = registrar.node.shutdown.clone();
    while let Some((stream, peer, admitted)) =
        listener::accept_admitted(&listener, &admission, &mut refused, &stop).await
    {
        let registrar = registrar.clone();
        let acceptor = acceptor.clone();
        registrar.node.clone().spawn(async move {
            let _admitted = admitted;
            // A stopped RTCSRV takes no one, as if not listening.
            if !registrar.node.services.is_running(RTCSRV) {
                return;
            }
            let local = stream.local_addr().unwrap_or(peer);
            let _ = stream.set_nodelay(true);
            match listener::accept_tls(&acceptor, stream, handshake).await {
                Ok((stream, cert)) => {
                    let topology = registrar.node.replica.topology();
                    let server = cert
                        .and_then(|cert| cert.server_identity(&topology))
                        .map(|(_, fqdn)| fqdn);
                    on_connection(registrar, stream, local, peer, "TLS", server).await
                }
                Err(e) => tracing::debug!(%peer, error = %e, "SIP TLS handshake failed"),
            }
        });
    }
}

/// Requests of one connection handled at once: a client pipelining more is told to wait
/// (503). A connection from an SBC or a load generator carries many users' sign-ins at
/// once, and a batch of new bindings keeps its REGISTERs in flight for a commit: at 2,500
/// sign-ins a second on one connection, 64 (the UDP cap of one source) turned a commit's
/// hiccup into hundreds of refusals at a rate the Front End keeps up with.
const IN_FLIGHT_PER_CONNECTION: usize = 256;
/// Requests handled at once over all the registrar's connections: what bounds their memory
/// (a few KiB each) however many connections are open.
const CONNECTIONS_IN_FLIGHT: usize = 4_096;

/// Serves one SIP connection (TCP or TLS) from `peer` until it closes, breaks a limit or
/// the service stops. The connection is a [`Flow`]: requests arrive on it, and the
/// registrar sends its own (a MESSAGE to the client, a sign-out NOTIFY) down it to the
/// contacts the client bound over it.
pub async fn on_connection<S>(
    registrar: Arc<Registrar>,
    stream: S,
    local: SocketAddr,
    peer: SocketAddr,
    transport: &'static str,
    server: Option<String>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (flow, mut incoming) = Flow::start(
        stream,
        local,
        peer,
        transport,
        sipnet::FrameLimits::LISTENER,
    );
    let arrival = Arrival {
        peer,
        flow: Some(flow.clone()),
        server,
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_PER_CONNECTION));
    let stop = registrar.node.shutdown.clone();
    // A stopped RTCSRV serves no one: its connections close within a second.
    let mut service_check = tokio::time::interval(Duration::from_secs(1));
    loop {
        let message = tokio::select! {
            m = incoming.recv() => m,
            () = stop.cancelled() => None,
            _ = service_check.tick() => {
                if registrar.node.services.is_running(RTCSRV) {
                    continue;
                }
                None
            }
        };
        let Some(message) = message else { break };
        if !registrar.node.services.is_running(RTCSRV) {
            break;
        }
        match message {
            Incoming::Request(request, _) if request.method == Method::Ack => {}
            // A health probe (or a client's keep-alive) is answered at once, never behind
            // the connection's other requests: a flood of messages on the partner's link
            // cannot make this pool look down.
            Incoming::Request(request, _) if request.method == Method::Options => {
                let answer = handle(&registrar, &request, &arrival).await;
                let _ = flow.answer(&answer).await;
            }
            Incoming::Request(request, _) => {
                // Past its share of requests in flight (or past what all connections may
                // have together), a connection is told to wait rather than stop being read.
                let slot = slots.clone().try_acquire_owned().and_then(|mine| {
                    let ours = registrar.connection_slots.clone().try_acquire_owned()?;
                    Ok((mine, ours))
                });
                let Ok(slot) = slot else {
                    let mut busy = reply(
                        &request,
                        503,
                        "Service Unavailable (too many requests in flight on this connection)",
                    );
                    busy.headers.push("Retry-After", "1");
                    let _ = flow.answer(&busy).await;
                    continue;
                };
                let (registrar, arrival, flow) = (registrar.clone(), arrival.clone(), flow.clone());
                let node = registrar.node.clone();
                run_or_spawn(
                    &node,
                    async move {
                        let answer = handle(&registrar, &request, &arrival).await;
                        let _ = flow.answer(&answer).await;
                        drop(slot);
                    },
                    || (),
                );
            }
            Incoming::Malformed(bytes, error, _) => {
                if let Some(answer) = answer_malformed(&bytes, &error) {
                    let _ = flow.send(answer).await;
                }
            }
        }
    }
    registrar.forget_flow(&flow);
}

impl Registrar {
    /// After a REGISTER of `aor` over `flow` that bound `added`: those contacts are reached
    /// over `flow`, and `aor` keeps flows only for the contacts it still has (`current`).
    fn keep_flows(&self, aor: &str, added: &[&str], flow: Option<&Flow>, current: &[Binding]) {
        let mut flows = self.flows.lock().expect("flows");
        // A client refreshing over the flow it bound over (the usual case) changes nothing
        // here: looked up once, by reference, nothing copied — and when the user's flows
        // are exactly the contacts just bound over this one, they are all still bound (an
        // answer's bindings hold what it bound) and nothing is to be dropped either.
        let mine = match flows.get_mut(aor) {
            Some(mine) => {
                if let Some(flow) = flow
                    && mine.len() == added.len()
                    && added
                        .iter()
                        .all(|c| mine.get(*c).is_some_and(|f| f.same(flow)))
                {
                    return;
                }
                mine
            }
            None if flow.is_none() || added.is_empty() => return,
            None => flows.entry(aor.to_string()).or_default(),
        };
        if let Some(flow) = flow {
            for contact in added {
                match mine.get(*contact) {
                    Some(f) if f.same(flow) => {}
                    _ => {
                        mine.insert((*contact).to_string(), flow.clone());
                    }
                }
            }
        }
        mine.retain(|contact, f| !f.is_closed() && current.iter().any(|b| &b.contact == contact));
        if mine.is_empty() {
            flows.remove(aor);
        }
    }

    /// Forgets the contacts bound over `flow`, which has closed.
    fn forget_flow(&self, flow: &Flow) {
        let mut flows = self.flows.lock().expect("flows");
        flows.retain(|_, mine| {
            mine.retain(|_, f| !f.same(flow) && !f.is_closed());
            !mine.is_empty()
        });
    }

    /// The open flow `aor` bound `contact` over here.
    fn flow_of(&self, aor: &str, contact: &str) -> Option<Flow> {
        self.flows
            .lock()
            .expect("flows")
            .get(aor)
            .and_then(|mine| mine.get(contact))
            .filter(|f| !f.is_closed())
            .cloned()
    }
}

/// A tag no other answer of this process carries (RFC 3261 §19.3 asks only that).
fn fresh_tag() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    static START: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let start = START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    });
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // `{start:x}{n:x}`, written without the formatting machinery (a tag an answer).
    let mut tag = String::with_capacity(24);
    tag.push_str(sip::digits(*start, 16, &mut [0; 40]));
    tag.push_str(sip::digits(u128::from(n), 16, &mut [0; 40]));
    tag
}

fn reply(request: &Request, status: u16, reason: &str) -> Response {
    let tag = (status >= 200).then(fresh_tag);
    let mut response = Response::for_request(request, status, reason, tag.as_deref());
    response.headers.push("Server", "tandem registrar");
    response
}

/// Answers one request, in a span of its own: the SIP transaction (method, Call-ID,
/// CSeq), at debug level — free when the level is off, as it is under sign-in load.
async fn handle(registrar: &Registrar, request: &Request, arrival: &Arrival) -> Response {
    let span = tracing::debug_span!(
        "sip",
        method = request.method.as_str(),
        call_id = request.headers.get("Call-ID").unwrap_or_default(),
        cseq = request.headers.get("CSeq").unwrap_or_default(),
    );
    if span.is_disabled() {
        return answer(registrar, request, arrival).await;
    }
    let response = answer(registrar, request, arrival)
        .instrument(span.clone())
        .await;
    span.in_scope(|| tracing::debug!(status = response.status, "answered"));
    response
}

async fn answer(registrar: &Registrar, request: &Request, arrival: &Arrival) -> Response {
    let server = &*registrar.node;
    // Another Front End hands over a request for a contact whose connection this one
    // holds; from anyone else the header means nothing.
    if let Some(contact) = request.headers.get(DELIVER_HEADER)
        && arrival
            .sent_by(&server.replica.topology(), topology::Role::FrontEnd)
            .is_some()
    {
        let contact = contact.to_string();
        let Ok(aor) = Uri::parse(&request.uri).map(|u| u.aor()) else {
            return reply(request, 400, "Bad Request (Request-URI is not a SIP URI)");
        };
        let mut onward = request.clone();
        onward.headers.remove(DELIVER_HEADER);
        return Box::pin(deliver_over_flow(
            registrar, request, onward, &aor, &contact,
        ))
        .await;
    }
    match &request.method {
        Method::Register => {
            let answer = register(registrar, request, arrival).await;
            metrics::sign_in(answer.status);
            answer
        }
        Method::Options => {
            let mut r = reply(request, 200, "OK");
            r.headers.push("Allow", "REGISTER, OPTIONS, MESSAGE, ACK");
            r.headers.push("Accept", "text/plain");
            r
        }
        // Boxed, as the hand-over above: a MESSAGE's delivery is a large future, and every
        // request's (a REGISTER's too) would otherwise be as large.
        Method::Message => Box::pin(message(server, registrar, request, arrival)).await,
        _ => {
            let mut r = reply(request, 405, "Method Not Allowed");
            r.headers.push("Allow", "REGISTER, OPTIONS, MESSAGE, ACK");
            r
        }
    }
}

/// The address of record a header names, or the error answer.
fn address_of(request: &Request, header: &str) -> Result<String, Response> {
    let value = request.headers.get(header).unwrap_or_default();
    NameAddr::aor_of(value).map_err(|_| {
        reply(
            request,
            400,
            &format!("Bad Request (the {header} header is not a SIP address)"),
        )
    })
}

/// Whether the digest `uri` names the Request-URI (RFC 7616 §3.4.6): the same text, or the
/// same URI written another way.
fn uri_matches(digest_uri: &str, request_uri: &str) -> bool {
    digest_uri == request_uri
        || matches!(
            (Uri::parse(digest_uri), Uri::parse(request_uri)),
            (Ok(a), Ok(b)) if a == b
        )
}

/// A hash no password gives, checked for users who do not exist, so that they cost the
/// same as users who do.
const NO_ONE: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Digest authentication of `aor` (`user` when it exists) for `request` from `peer`: None
/// when authenticated, else the answer (401 challenge, 400, or 403). An unknown user gets
/// the same challenge and the same refusal as a known one with a wrong password.
fn authenticate(
    registrar: &Registrar,
    request: &Request,
    aor: &str,
    user: Option<&UserRecord>,
    peer: SocketAddr,
) -> Option<Response> {
    let server = &*registrar.node;
    let now = server.clock.now_ms().max(0) as u64;
    let realm: std::borrow::Cow<'_, str> = match user {
        Some(u) => u.realm.as_str().into(),
        None => cms::directory::realm_of(aor).into(),
    };
    let username = aor.strip_prefix("sip:").unwrap_or(aor);
    // A record written before SHA-256 can only be checked with MD5.
    let offered: [Option<Algorithm>; 2] =
        Algorithm::PREFERRED.map(|a| user.is_none_or(|u| u.digest_hash(a).is_some()).then_some(a));
    let challenge = |stale: bool| {
        let mut r = reply(request, 401, "Unauthorized");
        let nonce = registrar.nonce_key.issue(now, &server.fqdn);
        // One nonce, one challenge per algorithm offered, written into the answer.
        for algorithm in offered.iter().flatten() {
            let challenge = ChallengeText {
                realm: &realm,
                nonce: &nonce,
                opaque: None,
                stale,
                qop_auth: true,
                algorithm: *algorithm,
            };
            r.headers
                .push_with("WWW-Authenticate", |out| _ = challenge.write_to(out));
        }
        r
    };
    let Some(header) = request.headers.get("Authorization") else {
        return Some(challenge(false));
    };
    let Ok(creds) = Credentials::parse(header) else {
        return Some(reply(
            request,
            400,
            "Bad Request (malformed Authorization header)",
        ));
    };
    if !creds.username.eq_ignore_ascii_case(username)
        || creds.realm != *realm
        || !offered.contains(&Some(creds.algorithm))
    {
        return Some(challenge(false));
    }
    if !uri_matches(&creds.uri, &request.uri) {
        return Some(reply(
            request,
            400,
            "Bad Request (the digest uri is not the Request-URI)",
        ));
    }
    let Some(count) = creds.count() else {
        return Some(reply(
            request,
            400,
            "Bad Request (the digest nc is not eight hex digits)",
        ));
    };
    let source = peer.ip();
    let who = topology::lowercase(aor);
    let mut lockouts = registrar.lockouts.lock().expect("the lockouts lock");
    if let Verdict::Locked { retry_after_ms } = lockouts.verdict(&who, source, now) {
        lockouts.failed(&who, source, now);
        let mut r = reply(
            request,
            403,
            "Forbidden (too many failed sign-ins from this address; try again later)",
        );
        r.headers
            .push("Retry-After", retry_after_ms.div_ceil(1000).to_string());
        return Some(r);
    }
    let verified = match user.and_then(|u| u.digest_hash(creds.algorithm)) {
        Some(hash) => creds.verify(hash, request.method.as_str()),
        None => {
            let _ = creds.verify(
                &NO_ONE[..creds.algorithm.hex_len()],
                request.method.as_str(),
            );
            false
        }
    };
    // A wrong digest is a failed guess whatever its nonce: answering a stale or forged
    // nonce with a challenge that says whether the digest was right (`stale`) would let
    // guesses go uncounted.
    if !verified {
        lockouts.failed(&who, source, now);
        return Some(reply(request, 403, WRONG_CREDENTIALS));
    }
    let (issued, sequence) =
        match registrar
            .nonce_key
            .check(&creds.nonce, &server.fqdn, now, NONCE_MAX_AGE_MS)
        {
            NonceCheck::Valid {
                issued_ms,
                sequence,
            } => (issued_ms, sequence),
            // RFC 7616 §3.3: stale when the digest was right for an expired nonce.
            NonceCheck::Stale => return Some(challenge(true)),
            NonceCheck::Invalid => return Some(challenge(false)),
        };
    let used = registrar
        .nonce_counts
        .lock()
        .expect("the nonce counts lock")
        .admit(issued, sequence, count);
    if used == NonceUse::Replayed {
        return Some(challenge(true));
    }
    lockouts.succeeded(&who, source);
    None
}

async fn register(registrar: &Registrar, request: &Request, arrival: &Arrival) -> Response {
    let peer = arrival.peer;
    let server = &*registrar.node;
    let aor = match address_of(request, "To") {
        Ok(aor) => aor,
        Err(r) => return r,
    };
    let user = server.replica.user(&aor);
    if let Some(answer) = authenticate(registrar, request, &aor, user.as_deref(), peer) {
        return answer;
    }
    let Some(user) = user else {
        return reply(request, 403, WRONG_CREDENTIALS);
    };
    if !user.enabled {
        return reply(request, 403, "Forbidden (user disabled)");
    }
    let topology = server.replica.topology();
    let decision = server
        .serving_decision(&topology, &user.registrar_pool)
        .await;
    let mode = match decision {
        Decision::Serve(mode) => mode,
        Decision::Redirect { pool } => return redirect(request, &topology, &pool),
    };
    let Some(committer) = &registrar.committer else {
        return reply(request, 500, "Server Internal Error (no Back End)");
    };
    let now = server.clock.now_ms();
    let default_expires = request.expires().unwrap_or(MAX_EXPIRES).min(MAX_EXPIRES);
    // Read where they are, each time: a REGISTER binds one contact, nearly always.
    let contacts = || request.headers.values("Contact");
    let what = if contacts().any(|c| c.trim() == "*") {
        if default_expires != 0 || contacts().nth(1).is_some() {
            return reply(
                request,
                400,
                "Bad Request (Contact: * needs Expires: 0 and no other Contact)",
            );
        }
        BindingUpdate::RemoveAll
    } else if contacts().next().is_none() {
        BindingUpdate::Query
    } else {
        let mut changes: Vec<(String, Option<i64>)> = Vec::with_capacity(1);
        for value in contacts() {
            let Ok(contact) = NameAddr::contact_of(value) else {
                return reply(request, 400, "Bad Request (malformed Contact header)");
            };
            let expires = contact
                .expires
                .flatten()
                .and_then(|e| e.parse::<u32>().ok())
                .unwrap_or(default_expires)
                .min(MAX_EXPIRES);
            // RFC 3261 §10.3 step 7: a binding asked for less than the registrar keeps
            // gets 423 and the least it takes.
            if expires > 0 && expires < MIN_EXPIRES {
                let mut r = reply(request, 423, "Interval Too Brief");
                r.headers.push("Min-Expires", MIN_EXPIRES.to_string());
                return r;
            }
            if contact.uri.len() > MAX_CONTACT_BYTES {
                return reply(
                    request,
                    400,
                    &format!("Bad Request (a contact is at most {MAX_CONTACT_BYTES} bytes)"),
                );
            }
            if expires > 0 && contact.address().map(|a| a.ip()) != Some(peer.ip()) {
                return reply(
                    request,
                    403,
                    "Forbidden (a contact must be at the address the REGISTER comes from)",
                );
            }
            let until = (expires > 0).then(|| now + i64::from(expires) * 1000);
            changes.push((contact.uri, until));
        }
        BindingUpdate::Contacts(changes)
    };
    // The contacts bound over a connection (TCP, TLS), which reaches them; over UDP
    // there is no flow to keep and nothing is copied.
    let bound: Vec<String> = match (&what, &arrival.flow) {
        (BindingUpdate::Contacts(c), Some(_)) => c
            .iter()
            .filter(|(_, until)| until.is_some())
            .map(|(uri, _)| uri.clone())
            .collect(),
        _ => Vec::new(),
    };
    let change = bindings::Change {
        aor: &aor,
        what,
        mode: mode.as_str(),
        server: &server.fqdn,
    };
    let bindings = match committer.commit(change).await {
        Ok(bindings::Bound::Bindings(bindings)) => bindings,
        Ok(bindings::Bound::TooMany) => return too_many_bindings(request),
        Err(_) => {
            return reply(
                request,
                500,
                "Server Internal Error (the Back End is unavailable)",
            );
        }
    };
    // Contacts bound over this connection are reached over it; the user keeps flows only
    // for the contacts it has.
    let bound: Vec<&str> = bound.iter().map(String::as_str).collect();
    registrar.keep_flows(&aor, &bound, arrival.flow.as_ref(), &bindings);
    let mut r = reply(request, 200, "OK");
    for b in bindings.iter() {
        let expires = ((b.expires_at - now) / 1000).max(0);
        r.headers.push_with("Contact", |out| {
            _ = write!(out, "<{}>;expires={expires}", b.contact);
        });
    }
    r.headers.push(MODE_HEADER, mode.as_str());
    r.headers.push(SERVING_POOL_HEADER, &server.pool);
    if mode == Mode::Resiliency {
        let why = match server.not_caught_up() {
            Some(_) => format!(
                "{} has not yet caught up with the Central Management store since it started",
                server.fqdn
            ),
            None => format!("your home pool {} is unreachable", user.registrar_pool),
        };
        r.headers.push(
            "Warning",
            format!(
                "399 {} \"resiliency mode: {why}; sign-in and messaging work, contacts, meetings and other stored data do not\"",
                server.fqdn
            ),
        );
    }
    r
}

/// The refusal of a REGISTER that would bind more than [`MAX_BINDINGS`] contacts: 403, a
/// final answer that tells the client not to retry as it is (a 5xx would invite retries,
/// and 486 Busy Here speaks of a callee, not of a registration), with the cap named.
fn too_many_bindings(request: &Request) -> Response {
    reply(
        request,
        403,
        &format!("Forbidden (at most {MAX_BINDINGS} contacts per user; sign a device out first)"),
    )
}

/// A 301 whose Contacts are the registrars of `pool`, in preferred order.
fn redirect(request: &Request, topology: &topology::Topology, pool: &str) -> Response {
    let mut r = reply(request, 301, "Moved Permanently");
    // SIP over TLS first; plain TCP too where the topology takes plain SIP.
    for s in topology.front_end_servers(pool) {
        r.headers.push(
            "Contact",
            format!(
                "<sip:{}:{};transport=tls>",
                s.address, topology.ports.sip_tls
            ),
        );
    }
    if topology.ports.sip_plain {
        for s in topology.front_end_servers(pool) {
            r.headers.push(
                "Contact",
                format!("<sip:{}:{};transport=tcp>", s.address, topology.ports.sip),
            );
        }
    }
    r.headers.push(SERVING_POOL_HEADER, pool);
    r
}

async fn message(
    server: &Node,
    registrar: &Registrar,
    request: &Request,
    arrival: &Arrival,
) -> Response {
    let peer = arrival.peer;
    // Another Front End of the deployment, known by its certificate, relays a message
    // for the pool that serves its recipient or hands it to the Front End holding the
    // recipient's connection.
    let topology = server.replica.topology();
    let relayed = arrival
        .sent_by(&topology, topology::Role::FrontEnd)
        .is_some();
    // From a federated partner through an Edge of the deployment: the sender is not one
    // of our users, and the Edge — known by the certificate it presented, which the
    // deployment's CA signed for an Edge server of the topology, never by a header —
    // vouches for the route, having checked the partner's certificate.
    let federated = arrival.sent_by(&topology, topology::Role::Edge).is_some();
    if federated && let Err(refusal) = sip::federation::partner_domain(&topology, request) {
        // The Edge vouches for an allowed partner's sender, never for one of ours.
        return reply(request, refusal.status(), &refusal.reason());
    }
    if !relayed && !federated {
        let from = match address_of(request, "From") {
            Ok(aor) => aor,
            Err(r) => return r,
        };
        let sender = server.replica.user(&from);
        if let Some(answer) = authenticate(registrar, request, &from, sender.as_deref(), peer) {
            return answer;
        }
        if !sender.is_some_and(|s| s.enabled) {
            return reply(request, 403, "Forbidden (user disabled)");
        }
    }
    let Ok(target) = Uri::parse(&request.uri) else {
        return reply(request, 400, "Bad Request (Request-URI is not a SIP URI)");
    };
    // To someone outside the deployment: through the Edge, for our own users only (the
    // deployment relays nothing between outside domains).
    if let Some(domain) = topology::domain::normalize(&target.host)
        .filter(|d| !topology.is_own_domain(d) && d.parse::<std::net::Ipv4Addr>().is_err())
    {
        if relayed || federated {
            return reply(
                request,
                403,
                "Forbidden (the deployment does not relay between outside domains)",
            );
        }
        return federate(server, registrar, request, &topology, &domain).await;
    }
    let aor = target.aor();
    let Some(recipient) = server.replica.user(&aor) else {
        return reply(request, 404, "Not Found (no such user)");
    };
    if !recipient.enabled {
        return reply(request, 404, "Not Found (user disabled)");
    }
    let max_forwards = request.max_forwards();
    if max_forwards == 0 {
        return reply(request, 483, "Too Many Hops");
    }
    let decision = server
        .serving_decision(&topology, &recipient.registrar_pool)
        .await;
    let mut onward = request.clone();
    onward
        .headers
        .set("Max-Forwards", (max_forwards - 1).to_string());
    onward.headers.remove(OLD_FEDERATION_HEADER);
    onward.headers.remove(DELIVER_HEADER);
    onward.headers.remove_credentials();
    match decision {
        Decision::Serve(_) => deliver(server, registrar, request, onward, &aor).await,
        Decision::Redirect { pool } if !relayed => {
            relay(server, registrar, request, onward, &topology, &pool).await
        }
        Decision::Redirect { pool } => reply(
            request,
            480,
            &format!("Temporarily Unavailable ({aor} is served by {pool})"),
        ),
    }
}

/// Delivers to every registered contact of `aor`; 200 when one accepted.
///
/// A contact bound over plain UDP is sent to directly. One bound over a connection (TCP or
/// TLS) is reached over that connection: here when this Front End holds it, else through
/// the Front End that does (the binding names it), over mutual TLS.
async fn deliver(
    server: &Node,
    registrar: &Registrar,
    request: &Request,
    onward: Request,
    aor: &str,
) -> Response {
    let Some(be) = &server.backend else {
        return reply(request, 500, "Server Internal Error (no Back End)");
    };
    let bindings = be.bindings(aor).await.unwrap_or_default();
    if bindings.is_empty() {
        return reply(request, 480, "Temporarily Unavailable (not signed in)");
    }
    let topology = server.replica.topology();
    // Every contact at once; the first that accepts answers the sender. The others run
    // to their end on their own (each within CONTACT_TIMEOUT) and clean up after
    // themselves.
    let (answers, mut answered) = tokio::sync::mpsc::channel(bindings.len().max(1));
    let mut tried = 0;
    // Never more than a user may have, whatever the Back End holds.
    for b in bindings.into_iter().take(MAX_BINDINGS) {
        let mut to_contact = onward.clone();
        to_contact.uri = b.contact.clone();
        let Some(route) = registrar.route_of(&topology, &b) else {
            continue;
        };
        let answers = answers.clone();
        let links = registrar.links.clone();
        tried += 1;
        server.spawn(async move {
            let result = route.request(&links, to_contact, &b, CONTACT_TIMEOUT).await;
            let _ = answers.send(result).await;
        });
    }
    drop(answers);
    let mut last = reply(
        request,
        480,
        "Temporarily Unavailable (no contact answered)",
    );
    for _ in 0..tried {
        match answered.recv().await {
            Some(Ok(resp)) if (200..300).contains(&resp.status) => {
                return reply(request, 200, "OK");
            }
            Some(Ok(resp)) => last = reply(request, resp.status, &resp.reason),
            Some(Err(_)) => {}
            None => break,
        }
    }
    last
}

/// How one contact is reached.
enum Route {
    /// Over the connection it was bound on, held here.
    Flow(Flow),
    /// Over plain UDP.
    Datagram(Arc<Endpoint>, SocketAddr),
    /// Through the Front End holding its connection (address, FQDN).
    Holder(SocketAddr, String),
}

impl Route {
    /// Sends `request` (whose Request-URI is the contact of `binding`) along the route.
    async fn request(
        self,
        links: &sipnet::Links,
        request: Request,
        binding: &Binding,
        timeout: Duration,
    ) -> io::Result<Response> {
        match self {
            Route::Flow(flow) => flow.request(request, timeout).await,
            Route::Datagram(endpoint, dest) => endpoint.request(dest, request, timeout).await,
            Route::Holder(dest, name) => {
                let mut handed = request;
                handed.uri = binding.aor.clone();
                handed.headers.set(DELIVER_HEADER, binding.contact.clone());
                let longer = timeout + (HANDOVER_TIMEOUT - CONTACT_TIMEOUT);
                links.request(dest, &name, handed, longer).await
            }
        }
    }
}

impl Registrar {
    /// How the contact of `binding` is reached from here, if it can be.
    fn route_of(&self, topology: &topology::Topology, b: &Binding) -> Option<Route> {
        if let Some(flow) = self.flow_of(&b.aor, &b.contact) {
            return Some(Route::Flow(flow));
        }
        if connection_bound(&b.contact) {
            // Held here and closed, or by a server no longer in the topology: gone.
            let holder = topology
                .server(&b.server)
                .filter(|_| !b.server.eq_ignore_ascii_case(&self.node.fqdn))?;
            return Some(Route::Holder(
                SocketAddr::from((holder.server.address, topology.ports.sip_tls)),
                holder.server.fqdn.clone(),
            ));
        }
        let dest = contact_address(&b.contact)?;
        Some(Route::Datagram(self.endpoint.clone()?, dest))
    }
}

/// How long a Front End waits for another to deliver over a connection that one holds:
/// longer than that delivery may take ([`CONTACT_TIMEOUT`]), shorter than a relay's wait
/// ([`RELAY_TIMEOUT`]), so a delivered message is never reported as failed.
pub const HANDOVER_TIMEOUT: Duration = Duration::from_millis(1_500);

/// Whether a contact is reached over the connection it was bound on: one that names TCP or
/// TLS as its transport (or a `sips:` URI).
fn connection_bound(contact: &str) -> bool {
    let lower = contact.to_ascii_lowercase();
    lower.starts_with("sips:")
        || lower.contains(";transport=tls")
        || lower.contains(";transport=tcp")
}

/// Delivers `onward` to `contact` of `aor` over the connection this Front End holds for it
/// (asked by another Front End, which found the binding).
async fn deliver_over_flow(
    registrar: &Registrar,
    request: &Request,
    mut onward: Request,
    aor: &str,
    contact: &str,
) -> Response {
    let Some(flow) = registrar.flow_of(aor, contact) else {
        return reply(
            request,
            480,
            "Temporarily Unavailable (the contact's connection is closed)",
        );
    };
    onward.uri = contact.to_string();
    match flow.request(onward, CONTACT_TIMEOUT).await {
        Ok(resp) => reply(request, resp.status, &resp.reason),
        Err(_) => reply(
            request,
            480,
            "Temporarily Unavailable (no contact answered)",
        ),
    }
}

async fn relay(
    server: &Node,
    registrar: &Registrar,
    request: &Request,
    onward: Request,
    topology: &topology::Topology,
    pool: &str,
) -> Response {
    for dest in server.registrars_of(topology, pool).await {
        let dest = SocketAddr::new(dest.ip(), topology.ports.sip_tls);
        let name = dest.ip().to_string();
        if let Ok(resp) = registrar
            .links
            .request(dest, &name, onward.clone(), RELAY_TIMEOUT)
            .await
        {
            return reply(request, resp.status, &resp.reason);
        }
    }
    reply(
        request,
        480,
        &format!("Temporarily Unavailable (the recipient's pool {pool} does not answer)"),
    )
}

/// How long the Edge may take to pass a user's message to a federated partner or an XMPP
/// user: longer than it waits for the partner (`edge`'s partner timeout, 5 s, or an XMPP
/// stream being opened and authenticated).
pub const FEDERATE_TIMEOUT: Duration = Duration::from_secs(8);

/// Sends a user's message to `domain`, outside the deployment, through the Edge that
/// carries it: the XMPP routes of the sites (this Front End's site's first) for an XMPP
/// partner, the Edge pool with federation enabled for a SIP federation partner; over
/// mutual TLS to the Edge's internal SIP port. Anything else is refused, naming the
/// cmdlet that would allow it.
async fn federate(
    server: &Node,
    registrar: &Registrar,
    request: &Request,
    topology: &topology::Topology,
    domain: &str,
) -> Response {
    let edges: Vec<&topology::Server> = if topology.xmpp_partner(domain).is_some() {
        // Every site's XMPP route, this Front End's site's first: after the seed's XMPP
        // failover another site's route carries it while this one's may be down.
        let own_site = topology.server(&server.fqdn).map(|s| s.site.to_string());
        let mut sites: Vec<&topology::Site> = topology
            .sites
            .iter()
            .filter(|s| s.xmpp_federation_route.is_some())
            .collect();
        sites.sort_by_key(|s| Some(&s.name) != own_site.as_ref());
        let mut edges: Vec<&topology::Server> = Vec::new();
        for route in sites
            .iter()
            .filter_map(|s| s.xmpp_federation_route.as_deref())
        {
            if let Some(edge) = topology.server(topology::route_target(route))
                && !edges.iter().any(|e| e.fqdn == edge.server.fqdn)
            {
                edges.push(edge.server);
            }
        }
        if edges.is_empty() {
            return reply(
                request,
                503,
                "Service Unavailable (no site has an XMPP route; set one with Set-CsSite -XmppExternalFederationRoute)",
            );
        }
        edges
    } else if topology.allowed_partner(domain).is_some() {
        let Some(pool) = topology.federation_edge_pool() else {
            return reply(
                request,
                503,
                "Service Unavailable (no Edge pool has federation enabled; enable it with Set-CsEdgeServer -EnableFederation)",
            );
        };
        pool.servers.iter().collect()
    } else {
        return reply(
            request,
            403,
            &format!(
                "Forbidden ({domain} is not a federated partner: allow it with New-CsAllowedDomain -Identity {domain}, or New-CsXmppAllowedPartner -Identity {domain} for an XMPP domain)"
            ),
        );
    };
    let Some(onward) = request.onward() else {
        return reply(request, 483, "Too Many Hops");
    };
    let mut tried = Vec::new();
    for edge in edges {
        let dest = SocketAddr::from((edge.address, topology.ports.edge_internal_sip));
        match registrar
            .links
            .request(dest, &edge.fqdn, onward.clone(), FEDERATE_TIMEOUT)
            .await
        {
            Ok(resp) => return reply(request, resp.status, &resp.reason),
            // An Edge that took the message but did not answer in time may still send it:
            // another Edge would send it twice.
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return reply(
                    request,
                    504,
                    &format!(
                        "Server Time-out (the Edge {} did not answer in time)",
                        edge.fqdn
                    ),
                );
            }
            Err(_) => tried.push(edge.fqdn.clone()),
        }
    }
    reply(
        request,
        504,
        &format!(
            "Server Time-out (the Edge {} does not answer; Get-CsWindowsService -ComputerName on it shows its services)",
            tried.join(", ")
        ),
    )
}

/// How many sign-out notifications may wait for their answers at once.
const SIGN_OUT_IN_FLIGHT: usize = 256;
/// How long one sign-out notification is retransmitted before the endpoint is given up.
const SIGN_OUT_TIMEOUT: Duration = Duration::from_secs(4);

impl Registrar {
    /// Tells the endpoints behind `bindings`, which a failover or failback has just removed,
    /// that they are signed out and that `serving_pool` is their registrar now: one NOTIFY
    /// (`Event: registration-notify`, body [`REGISTRAR_CHANGED`]) to each contact that has not
    /// expired. Without it a client would learn of the move only at its next refresh, minutes
    /// later. The notifications go out in the background, so that the step that removed the
    /// bindings does not wait for clients; an endpoint that does not answer still finds its
    /// way at its next refresh (the old pool answers 301). Returns how many are sent.
    pub fn tell_signed_out(&self, bindings: Vec<Binding>, serving_pool: &str) -> usize {
        let server = &*self.node;
        // Their bindings are gone from the Back End: nothing held of them here answers a
        // refresh or is written again.
        if let Some(committer) = &self.committer {
            committer.forget(bindings.iter().map(|b| b.aor.as_str()));
        }
        let now = server.clock.now_ms();
        let topology = server.replica.topology();
        let targets: Vec<(Binding, Route)> = bindings
            .into_iter()
            .filter(|b| b.expires_at > now)
            .filter_map(|b| self.route_of(&topology, &b).map(|route| (b, route)))
            .collect();
        let sent = targets.len();
        if sent == 0 {
            return 0;
        }
        let links = self.links.clone();
        let (pool, fqdn, serving) = (
            server.pool.clone(),
            server.fqdn.clone(),
            serving_pool.to_string(),
        );
        server.spawn(async move {
            let slots = Arc::new(tokio::sync::Semaphore::new(SIGN_OUT_IN_FLIGHT));
            let mut tasks = tokio::task::JoinSet::new();
            for (binding, route) in targets {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                let notify = sign_out_notify(&binding, &pool, &fqdn, &serving);
                let links = links.clone();
                tasks.spawn(async move {
                    let answered = route
                        .request(&links, notify, &binding, SIGN_OUT_TIMEOUT)
                        .await;
                    drop(slot);
                    matches!(answered, Ok(r) if (200..300).contains(&r.status))
                });
            }
            let mut answered = 0;
            while let Some(r) = tasks.join_next().await {
                answered += usize::from(r.unwrap_or(false));
            }
            tracing::info!(
                sent,
                answered,
                %serving,
                "endpoints told to sign in at their new registrar"
            );
        });
        sent
    }
}

/// The NOTIFY that tells one endpoint of `binding` to sign in at `serving`.
fn sign_out_notify(binding: &Binding, pool: &str, fqdn: &str, serving: &str) -> Request {
    let mut headers = sip::Headers::new();
    headers.push("Max-Forwards", "70");
    headers.push("From", format!("<sip:{pool}>;tag={}", fresh_tag()));
    headers.push("To", format!("<{}>", binding.aor));
    headers.push("Call-ID", format!("signout-{}@{fqdn}", fresh_tag()));
    headers.push("CSeq", "1 NOTIFY");
    headers.push("Event", REGISTRATION_NOTIFY);
    headers.push("Subscription-State", "terminated");
    headers.push("P-Preferred-Registrar", format!("<sip:{serving}>"));
    headers.push("Content-Type", "text/registration-event");
    Request {
        method: Method::Other("NOTIFY".into()),
        uri: binding.contact.clone(),
        headers,
        body: REGISTRAR_CHANGED.as_bytes().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request of `method` with `extra` header lines.
    fn request_with(branch: &str, method: &str, cseq: &str, extra: &str) -> Request {
        let text = format!(
            "{method} sip:contoso.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.9:5060;branch={branch}\r\n\
             From: <sip:a@contoso.com>;tag=1\r\nTo: <sip:a@contoso.com>\r\nCall-ID: c\r\n\
             CSeq: {cseq}\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        match sip::Message::parse(text.as_bytes()).unwrap() {
            sip::Message::Request(r) => r,
            sip::Message::Response(_) => unreachable!(),
        }
    }

    #[test]
    fn only_requests_without_credentials_that_change_nothing_skip_the_table() {
        let auth = "Authorization: Digest username=\"a@contoso.com\", realm=\"contoso.com\", \
                    nonce=\"n\", uri=\"sip:contoso.com\", response=\"r\"\r\n";
        assert!(is_stateless(&request_with(
            "b",
            "REGISTER",
            "1 REGISTER",
            ""
        )));
        assert!(is_stateless(&request_with("b", "OPTIONS", "1 OPTIONS", "")));
        // A REGISTER with credentials may bind or sign out; a MESSAGE is delivered.
        assert!(!is_stateless(&request_with(
            "b",
            "REGISTER",
            "2 REGISTER",
            auth
        )));
        assert!(!is_stateless(&request_with(
            "b",
            "MESSAGE",
            "1 MESSAGE",
            ""
        )));
        assert!(!is_stateless(&request_with(
            "b",
            "MESSAGE",
            "1 MESSAGE",
            auth
        )));
    }

    #[test]
    fn a_transaction_is_its_source_branch_method_and_cseq() {
        let table = TransactionTable::default();
        let request =
            |branch: &str, method: &str, cseq: &str| request_with(branch, method, cseq, "");
        let peer: SocketAddr = "127.0.0.9:5060".parse().unwrap();
        let other: SocketAddr = "127.0.0.9:5061".parse().unwrap();
        let first = table.key(&request("z9hG4bK1", "REGISTER", "1 REGISTER"), peer);
        assert_eq!(
            first,
            table.key(&request("z9hG4bK1", "REGISTER", "1 REGISTER"), peer),
            "a retransmission is the same transaction"
        );
        for different in [
            table.key(&request("z9hG4bK2", "REGISTER", "1 REGISTER"), peer),
            table.key(&request("z9hG4bK1", "OPTIONS", "1 OPTIONS"), peer),
            table.key(&request("z9hG4bK1", "REGISTER", "2 REGISTER"), peer),
            table.key(&request("z9hG4bK1", "REGISTER", "1 REGISTER"), other),
        ] {
            assert_ne!(first, different);
        }
    }
}
