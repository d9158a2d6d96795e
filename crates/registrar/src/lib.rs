//! The registrar on every Front End: SIP over UDP and TCP on the server's own address.
//!
//! - `REGISTER` is sign-in. The user is looked up in this server's CMS replica (the user
//!   directory is replicated everywhere), authenticated with digest (RFC 3261 §22) against
//!   the stored hash, and then either served — bindings stored in this pool's Back End, the
//!   mode (`full` or `resiliency`) in the `X-Tandem-Mode` header of the 200 — or sent to the
//!   pool that serves the user with a 301 whose Contacts are that pool's registrars.
//! - `MESSAGE` is delivered to the recipient's registered contacts by the pool that serves
//!   the recipient; another pool relays it there. 480 when the recipient is not signed in.
//! - `OPTIONS` answers 200: it is also how a pool watches its partner.
//!
//! Nonces are stateless (signed with a key every server derives from the deployment's
//! token), so a client may be challenged by one Front End and answer another. Over UDP a
//! retransmitted request gets the cached answer instead of being run twice.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cms::directory::UserRecord;
use node::Node;
use node::services::RTCSRV;
use sip::digest::{Challenge, Credentials, NonceCheck};
use sip::federation::{FEDERATION_HEADER, federation_proof, from_foreign_domain};
use sip::{Message, Method, NameAddr, Request, Response, Uri};
use sipnet::{
    Endpoint, Incoming, REGISTRAR_CHANGED, REGISTRATION_NOTIFY, answer_malformed, contact_address,
};
use store::Binding;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use topology::serving::{Decision, Mode};

pub mod resiliency;
pub mod userservices;

pub use sipnet::{MODE_HEADER, SERVING_POOL_HEADER};
/// Proves that a MESSAGE was relayed by another server of the deployment.
pub const RELAY_HEADER: &str = "X-Tandem-Relay";
/// How long a nonce stays valid.
pub const NONCE_MAX_AGE_MS: u64 = 5 * 60 * 1000;
/// Bindings last at most this long (and this long when the client does not say).
pub const MAX_EXPIRES: u32 = 3600;
/// How long a MESSAGE waits for a user's contact. Contacts are tried at once, in
/// parallel: the first to accept answers the sender, and a stale contact costs at most this.
pub const CONTACT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a MESSAGE relayed to the Front End of the recipient's pool waits: that Front
/// End answers within [`CONTACT_TIMEOUT`], so this is longer, and shorter than an Edge's
/// wait for its next hop (`edge::NEXT_HOP_TIMEOUT`), so that a sender never gets a
/// time-out for a message that was delivered.
pub const RELAY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a TCP connection may stay silent before it is closed.
const TCP_IDLE: Duration = Duration::from_secs(300);
/// How long answered UDP transactions are remembered for retransmissions (64·T1).
const TRANSACTION_MEMORY: Duration = Duration::from_secs(32);

/// UDP server transactions: their answers (once there is one) by key, remembered for
/// [`TRANSACTION_MEMORY`] after the request first arrived so that a retransmission gets the
/// same answer. Forgetting is in arrival order, so each request costs O(1) however many
/// transactions a busy registrar remembers.
#[derive(Debug, Default)]
struct TransactionTable {
    answers: HashMap<String, Option<Vec<u8>>>,
    arrivals: VecDeque<(Instant, String)>,
}

/// What a registrar should do with a request it received over UDP.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// New: handle it.
    New,
    /// Being handled: drop the retransmission.
    InProgress,
    /// Answered: send this again.
    Answered(Vec<u8>),
}

impl TransactionTable {
    fn forget_before(&mut self, now: Instant) {
        while let Some((at, _)) = self.arrivals.front() {
            if now.duration_since(*at) < TRANSACTION_MEMORY {
                break;
            }
            if let Some((_, key)) = self.arrivals.pop_front() {
                self.answers.remove(&key);
            }
        }
    }

    /// Records the arrival of `key` and says what to do with it.
    fn arrive(&mut self, key: &str, now: Instant) -> Seen {
        self.forget_before(now);
        match self.answers.get(key) {
            Some(Some(bytes)) => Seen::Answered(bytes.clone()),
            Some(None) => Seen::InProgress,
            None => {
                self.answers.insert(key.to_string(), None);
                self.arrivals.push_back((now, key.to_string()));
                Seen::New
            }
        }
    }

    /// Keeps the answer to `key` for retransmissions (unless it was already forgotten).
    fn answer(&mut self, key: &str, bytes: Vec<u8>) {
        if let Some(slot) = self.answers.get_mut(key) {
            *slot = Some(bytes);
        }
    }
}

/// The registrar of one Front End: its SIP endpoint, its UDP transaction memory, and the
/// key that signs and checks digest nonces.
#[derive(Debug)]
pub struct Registrar {
    node: Arc<Node>,
    endpoint: Arc<Endpoint>,
    transactions: Mutex<TransactionTable>,
    /// Derived from the deployment's token so that any Front End can check a nonce another
    /// issued.
    nonce_key: sip::digest::NonceKey,
}

/// The nonce key every server of a deployment shares.
pub fn nonce_key(token: &str) -> sip::digest::NonceKey {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("tandem digest nonce key:{token}").as_bytes());
    sip::digest::NonceKey::new(digest.into())
}

impl Registrar {
    /// Binds UDP and TCP on `at` and TLS on `tls_at` (with `tls`: this server's
    /// certificate, a client's optional) and starts serving, in tasks of the node that end
    /// when it shuts down.
    pub async fn start(
        node: Arc<Node>,
        at: SocketAddr,
        tls_at: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
    ) -> io::Result<Arc<Registrar>> {
        let (endpoint, mut incoming) = Endpoint::bind(at).await?;
        let tcp = TcpListener::bind(at).await?;
        let tls_listener = TcpListener::bind(tls_at).await?;
        let registrar = Arc::new(Registrar {
            nonce_key: nonce_key(&node.token),
            node: node.clone(),
            endpoint,
            transactions: Mutex::default(),
        });
        let udp = registrar.clone();
        let stop = node.shutdown.clone();
        node.spawn(async move {
            loop {
                let message = tokio::select! {
                    m = incoming.recv() => m,
                    () = stop.cancelled() => None,
                };
                let Some(message) = message else { return };
                let registrar = udp.clone();
                udp.node
                    .spawn(async move { on_datagram(&registrar, message).await });
            }
        });
        let tcp_registrar = registrar.clone();
        let stop = node.shutdown.clone();
        node.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = tcp.accept() => a,
                    () = stop.cancelled() => return,
                };
                let Ok((stream, peer)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let registrar = tcp_registrar.clone();
                tcp_registrar
                    .node
                    .spawn(async move { on_connection(&registrar, stream, peer).await });
            }
        });
        node.spawn(serve_tls(registrar.clone(), tls_listener, tls));
        Ok(registrar)
    }

    /// The registrar's UDP endpoint (the partner watch probes from it).
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }
}

async fn on_datagram(registrar: &Registrar, message: Incoming) {
    let server = &*registrar.node;
    if !server.services.is_running(RTCSRV) {
        return; // a stopped RTCSRV answers nothing, as if not listening
    }
    match message {
        Incoming::Request(request, peer) => {
            if request.method == Method::Ack {
                return;
            }
            let key = transaction_key(&request, peer);
            let seen = registrar
                .transactions
                .lock()
                .await
                .arrive(&key, Instant::now());
            match seen {
                Seen::New => {}
                Seen::InProgress => return,
                Seen::Answered(bytes) => {
                    let _ = registrar.endpoint.send(peer, &bytes).await;
                    return;
                }
            }
            let response = handle(registrar, &request, peer).await;
            let bytes = response.to_bytes();
            let _ = registrar.endpoint.send(peer, &bytes).await;
            registrar.transactions.lock().await.answer(&key, bytes);
        }
        Incoming::Malformed(bytes, error, peer) => {
            if let Some(resp) = answer_malformed(&bytes, &error) {
                let _ = registrar.endpoint.send(peer, &resp).await;
            }
        }
    }
}

fn transaction_key(request: &Request, peer: SocketAddr) -> String {
    let branch = request
        .top_via()
        .and_then(|v| v.branch().map(str::to_string))
        .unwrap_or_default();
    format!(
        "{peer}|{branch}|{}|{}",
        request.method,
        request.headers.get("CSeq").unwrap_or("")
    )
}

/// SIP over TLS (the internal SIP TLS port): connections within the listener's caps, the
/// handshake in time, then the same handling as TCP.
async fn serve_tls(
    registrar: Arc<Registrar>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
) {
    let limits = listener::Limits::DEFAULT;
    let admission = listener::Admission::new(limits.total, limits.per_source);
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
            match listener::accept_tls(&acceptor, stream, limits.handshake).await {
                Ok((stream, _cert)) => on_connection(&registrar, stream, peer).await,
                Err(e) => tracing::debug!(%peer, error = %e, "SIP TLS handshake failed"),
            }
        });
    }
}

async fn on_connection<S>(registrar: &Registrar, mut stream: S, peer: SocketAddr)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let server = &*registrar.node;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let frame = match sipnet::next_frame(&mut stream, &mut buf, TCP_IDLE).await {
            Ok(Some(frame)) => frame,
            Ok(None) | Err(_) => return,
        };
        if !server.services.is_running(RTCSRV) {
            return;
        }
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                // The stream cannot be framed any more: answer if possible, then close.
                if let Some(bytes) = answer_malformed(&buf, &e) {
                    let _ = stream.write_all(&bytes).await;
                }
                return;
            }
        };
        let reply = match Message::parse(&frame) {
            Ok(Message::Request(req)) if req.method == Method::Ack => continue,
            Ok(Message::Request(req)) => Some(handle(registrar, &req, peer).await.to_bytes()),
            Ok(Message::Response(_)) => None,
            Err(e) => answer_malformed(&frame, &e),
        };
        if let Some(bytes) = reply
            && stream.write_all(&bytes).await.is_err()
        {
            return;
        }
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
    format!("{start:x}{n:x}")
}

fn reply(request: &Request, status: u16, reason: &str) -> Response {
    let tag = (status >= 200).then(fresh_tag);
    let mut response = Response::for_request(request, status, reason, tag.as_deref());
    response.headers.push("Server", "tandem registrar");
    response
}

/// Answers one request.
async fn handle(registrar: &Registrar, request: &Request, peer: SocketAddr) -> Response {
    let server = &*registrar.node;
    match &request.method {
        Method::Register => register(registrar, request).await,
        Method::Options => {
            let mut r = reply(request, 200, "OK");
            r.headers.push("Allow", "REGISTER, OPTIONS, MESSAGE, ACK");
            r.headers.push("Accept", "text/plain");
            r
        }
        Method::Message => message(server, registrar, request, peer).await,
        _ => {
            let mut r = reply(request, 405, "Method Not Allowed");
            r.headers.push("Allow", "REGISTER, OPTIONS, MESSAGE, ACK");
            r
        }
    }
}

/// The user a header's address names, or the error answer.
async fn user_of(
    server: &Node,
    request: &Request,
    header: &str,
) -> Result<(String, UserRecord), Response> {
    let value = request.headers.get(header).unwrap_or_default();
    let aor = NameAddr::parse(value).map(|n| n.uri.aor()).map_err(|_| {
        reply(
            request,
            400,
            &format!("Bad Request (the {header} header is not a SIP address)"),
        )
    })?;
    match cms::directory::lookup(server.replica.store(), &aor).await {
        Some(user) => Ok((aor, user)),
        None => Err(reply(request, 404, "Not Found (no such user)")),
    }
}

/// Digest authentication of `user` for `request`: None when authenticated, else the
/// answer (401 challenge or 403).
fn authenticate(registrar: &Registrar, request: &Request, user: &UserRecord) -> Option<Response> {
    let now = registrar.node.clock.now_ms().max(0) as u64;
    let challenge = |stale: bool| {
        let mut r = reply(request, 401, "Unauthorized");
        let ch = Challenge {
            realm: user.realm.clone(),
            nonce: registrar.nonce_key.issue(now),
            opaque: None,
            stale,
            qop_auth: true,
        };
        r.headers.push("WWW-Authenticate", ch.to_string());
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
    if !creds.username.eq_ignore_ascii_case(user.username()) || creds.realm != user.realm {
        return Some(challenge(false));
    }
    match registrar
        .nonce_key
        .check(&creds.nonce, now, NONCE_MAX_AGE_MS)
    {
        NonceCheck::Valid => {}
        NonceCheck::Stale => return Some(challenge(true)),
        NonceCheck::Invalid => return Some(challenge(false)),
    }
    if creds.verify(&user.ha1, request.method.as_str()) {
        None
    } else {
        Some(reply(request, 403, "Forbidden (wrong password)"))
    }
}

async fn register(registrar: &Registrar, request: &Request) -> Response {
    let server = &*registrar.node;
    let (aor, user) = match user_of(server, request, "To").await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if !user.enabled {
        return reply(request, 403, "Forbidden (user disabled)");
    }
    if let Some(answer) = authenticate(registrar, request, &user) {
        return answer;
    }
    let topology = server.replica.topology();
    let decision = server
        .serving_decision(&topology, &user.registrar_pool)
        .await;
    let mode = match decision {
        Decision::Serve(mode) => mode,
        Decision::Redirect { pool } => return redirect(request, &topology, &pool),
    };
    let Some(be) = &server.backend else {
        return reply(request, 500, "Server Internal Error (no Back End)");
    };
    let default_expires = request.expires().unwrap_or(MAX_EXPIRES).min(MAX_EXPIRES);
    let contacts = request.headers.get_all("Contact");
    if contacts.iter().any(|c| c.trim() == "*") {
        if default_expires != 0 || contacts.len() != 1 {
            return reply(
                request,
                400,
                "Bad Request (Contact: * needs Expires: 0 and no other Contact)",
            );
        }
        if be.unregister(&aor, None).await.is_err() {
            return reply(request, 500, "Server Internal Error");
        }
    } else {
        for value in contacts {
            let Ok(contact) = NameAddr::parse(value) else {
                return reply(request, 400, "Bad Request (malformed Contact header)");
            };
            let expires = contact
                .param("expires")
                .flatten()
                .and_then(|e| e.parse::<u32>().ok())
                .unwrap_or(default_expires)
                .min(MAX_EXPIRES);
            let uri = contact.uri.to_string();
            let result = if expires == 0 {
                be.unregister(&aor, Some(&uri)).await
            } else {
                be.register(&Binding {
                    aor: aor.clone(),
                    contact: uri,
                    expires_at: server.clock.now_ms() + i64::from(expires) * 1000,
                    mode: mode.as_str().to_string(),
                    server: server.fqdn.clone(),
                })
                .await
            };
            if result.is_err() {
                return reply(
                    request,
                    500,
                    "Server Internal Error (the Back End is unavailable)",
                );
            }
        }
    }
    let bindings = be.bindings(&aor).await.unwrap_or_default();
    let mut r = reply(request, 200, "OK");
    let now = server.clock.now_ms();
    for b in &bindings {
        r.headers.push(
            "Contact",
            format!(
                "<{}>;expires={}",
                b.contact,
                ((b.expires_at - now) / 1000).max(0)
            ),
        );
    }
    r.headers.push(MODE_HEADER, mode.as_str());
    r.headers.push(SERVING_POOL_HEADER, server.pool.clone());
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

/// A 301 whose Contacts are the registrars of `pool`, in preferred order.
fn redirect(request: &Request, topology: &topology::Topology, pool: &str) -> Response {
    let mut r = reply(request, 301, "Moved Permanently");
    for s in topology.front_end_servers(pool) {
        r.headers.push(
            "Contact",
            format!("<sip:{}:{};transport=tcp>", s.address, topology.ports.sip),
        );
    }
    r.headers.push(SERVING_POOL_HEADER, pool.to_string());
    r
}

/// The relay proof for a request: a hash of the deployment token and the transaction.
fn relay_proof(server: &Node, request: &Request) -> String {
    sip::digest::md5_hex(
        format!(
            "{}:{}:{}",
            server.token,
            request.call_id().unwrap_or(""),
            request.headers.get("CSeq").unwrap_or("")
        )
        .as_bytes(),
    )
}

async fn message(
    server: &Node,
    registrar: &Registrar,
    request: &Request,
    _peer: SocketAddr,
) -> Response {
    let relayed = request
        .headers
        .get(RELAY_HEADER)
        .is_some_and(|p| p == relay_proof(server, request));
    // From a federated partner through an Edge of the deployment: the sender is not one
    // of our users, the Edge vouches for the route.
    let federated = request
        .headers
        .get(FEDERATION_HEADER)
        .is_some_and(|p| p == federation_proof(&server.token, request));
    if federated {
        // The Edge vouches for a sender of another domain, never for one of ours.
        let ours = server.replica.topology().deployment.sip_domain.clone();
        if !from_foreign_domain(request, &ours) {
            return reply(
                request,
                403,
                &format!("Forbidden (a federated sender cannot be a user of {ours})"),
            );
        }
    }
    if !relayed && !federated {
        let sender = match user_of(server, request, "From").await {
            Ok((_, u)) => u,
            Err(r) => return r,
        };
        if !sender.enabled {
            return reply(request, 403, "Forbidden (user disabled)");
        }
        if let Some(answer) = authenticate(registrar, request, &sender) {
            return answer;
        }
    }
    let Ok(target) = Uri::parse(&request.uri) else {
        return reply(request, 400, "Bad Request (Request-URI is not a SIP URI)");
    };
    let aor = target.aor();
    let Some(recipient) = cms::directory::lookup(server.replica.store(), &aor).await else {
        return reply(request, 404, "Not Found (no such user)");
    };
    if !recipient.enabled {
        return reply(request, 404, "Not Found (user disabled)");
    }
    let max_forwards = request.max_forwards();
    if max_forwards == 0 {
        return reply(request, 483, "Too Many Hops");
    }
    let topology = server.replica.topology();
    let decision = server
        .serving_decision(&topology, &recipient.registrar_pool)
        .await;
    let mut onward = request.clone();
    onward
        .headers
        .set("Max-Forwards", (max_forwards - 1).to_string());
    onward.headers.remove(FEDERATION_HEADER);
    onward.headers.remove_credentials();
    match decision {
        Decision::Serve(_) => deliver(server, registrar, request, onward, &aor).await,
        Decision::Redirect { pool } if !relayed => {
            onward
                .headers
                .set(RELAY_HEADER, relay_proof(server, request));
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
async fn deliver(
    server: &Node,
    registrar: &Registrar,
    request: &Request,
    mut onward: Request,
    aor: &str,
) -> Response {
    let Some(be) = &server.backend else {
        return reply(request, 500, "Server Internal Error (no Back End)");
    };
    let bindings = be.bindings(aor).await.unwrap_or_default();
    if bindings.is_empty() {
        return reply(request, 480, "Temporarily Unavailable (not signed in)");
    }
    onward.headers.remove(RELAY_HEADER);
    // Every contact at once; the first that accepts answers the sender. The others run
    // to their end on their own (each within CONTACT_TIMEOUT) and clean up after
    // themselves.
    let (answers, mut answered) = tokio::sync::mpsc::channel(bindings.len().max(1));
    let mut tried = 0;
    for b in bindings {
        let Some(dest) = contact_address(&b.contact) else {
            continue;
        };
        let mut to_contact = onward.clone();
        to_contact.uri = b.contact.clone();
        let endpoint = registrar.endpoint.clone();
        let answers = answers.clone();
        tried += 1;
        server.spawn(async move {
            let result = endpoint.request(dest, to_contact, CONTACT_TIMEOUT).await;
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

async fn relay(
    server: &Node,
    registrar: &Registrar,
    request: &Request,
    onward: Request,
    topology: &topology::Topology,
    pool: &str,
) -> Response {
    for dest in server.registrars_of(topology, pool).await {
        if let Ok(resp) = registrar
            .endpoint
            .request(dest, onward.clone(), RELAY_TIMEOUT)
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
        let now = server.clock.now_ms();
        let targets: Vec<(Binding, SocketAddr)> = bindings
            .into_iter()
            .filter(|b| b.expires_at > now)
            .filter_map(|b| contact_address(&b.contact).map(|dest| (b, dest)))
            .collect();
        let sent = targets.len();
        if sent == 0 {
            return 0;
        }
        let endpoint = self.endpoint.clone();
        let (pool, fqdn, serving) = (
            server.pool.clone(),
            server.fqdn.clone(),
            serving_pool.to_string(),
        );
        server.spawn(async move {
            let slots = Arc::new(tokio::sync::Semaphore::new(SIGN_OUT_IN_FLIGHT));
            let mut tasks = tokio::task::JoinSet::new();
            for (binding, dest) in targets {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                let notify = sign_out_notify(&endpoint, &binding, &pool, &fqdn, &serving);
                let endpoint = endpoint.clone();
                tasks.spawn(async move {
                    let answered = endpoint.request(dest, notify, SIGN_OUT_TIMEOUT).await;
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
fn sign_out_notify(
    endpoint: &Endpoint,
    binding: &Binding,
    pool: &str,
    fqdn: &str,
    serving: &str,
) -> Request {
    let mut headers = sip::Headers::new();
    headers.push("Max-Forwards", "70");
    headers.push("From", format!("<sip:{pool}>;tag={}", fresh_tag()));
    headers.push("To", format!("<{}>", binding.aor));
    headers.push("Call-ID", format!("signout-{}@{fqdn}", endpoint.branch()));
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

    #[test]
    fn retransmissions_get_the_same_answer_until_forgotten() {
        let mut table = TransactionTable::default();
        let t0 = Instant::now();
        assert_eq!(table.arrive("a", t0), Seen::New);
        assert_eq!(table.arrive("a", t0), Seen::InProgress);
        table.answer("a", b"200".to_vec());
        assert_eq!(table.arrive("a", t0), Seen::Answered(b"200".to_vec()));
        assert_eq!(table.arrive("b", t0 + Duration::from_secs(1)), Seen::New);
        // "a" is forgotten 32 s after it arrived; "b" a second later.
        let later = t0 + TRANSACTION_MEMORY;
        assert_eq!(table.arrive("c", later), Seen::New);
        assert_eq!(table.answers.len(), 2);
        assert_eq!(table.arrive("a", later), Seen::New);
        // An answer to a forgotten transaction is not kept.
        table.answer("zz", b"200".to_vec());
        assert!(!table.answers.contains_key("zz"));
    }
}
