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
use sip::digest::{Challenge, Credentials, NonceCheck};
use sip::{Message, Method, NameAddr, ParseError, Request, Response, Uri};
use store::{Binding, now_ms};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use topology::serving::{Decision, Mode};

use crate::Server;
use crate::services::RTCSRV;
use crate::sipnet::{Endpoint, Incoming};

/// The header of a 200 to REGISTER that says how the user is served.
pub const MODE_HEADER: &str = "X-Tandem-Mode";
/// The header naming the pool that serves the user (200 and 301).
pub const SERVING_POOL_HEADER: &str = "X-Tandem-Serving-Pool";
/// Proves that a MESSAGE was relayed by another server of the deployment.
pub const RELAY_HEADER: &str = "X-Tandem-Relay";
/// How long a nonce stays valid.
pub const NONCE_MAX_AGE_MS: u64 = 5 * 60 * 1000;
/// Bindings last at most this long (and this long when the client does not say).
pub const MAX_EXPIRES: u32 = 3600;
/// How long a relayed or delivered MESSAGE may wait for an answer.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(4);
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

/// Shared registrar state.
#[derive(Debug)]
pub struct Registrar {
    pub endpoint: Arc<Endpoint>,
    transactions: Mutex<TransactionTable>,
}

/// Binds UDP and TCP on `at` and starts serving.
pub(crate) async fn start(server: Arc<Server>, at: SocketAddr) -> io::Result<()> {
    let (endpoint, mut incoming) = Endpoint::bind(at).await?;
    let tcp = TcpListener::bind(at).await?;
    let registrar = Arc::new(Registrar {
        endpoint,
        transactions: Mutex::default(),
    });
    let _ = server.registrar.set(registrar.clone());
    let udp_server = server.clone();
    let udp_registrar = registrar.clone();
    tokio::spawn(async move {
        while let Some(message) = incoming.recv().await {
            let server = udp_server.clone();
            let registrar = udp_registrar.clone();
            tokio::spawn(async move { on_datagram(&server, &registrar, message).await });
        }
    });
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = tcp.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let server = server.clone();
            let registrar = registrar.clone();
            tokio::spawn(async move { on_connection(&server, &registrar, stream, peer).await });
        }
    });
    Ok(())
}

async fn on_datagram(server: &Server, registrar: &Registrar, message: Incoming) {
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
            let response = handle(server, registrar, &request, peer).await;
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

async fn on_connection(
    server: &Server,
    registrar: &Registrar,
    mut stream: TcpStream,
    peer: SocketAddr,
) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let frame = match crate::sipnet::next_frame(&mut stream, &mut buf, TCP_IDLE).await {
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
            Ok(Message::Request(req)) => {
                Some(handle(server, registrar, &req, peer).await.to_bytes())
            }
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

/// A 400 or 513 for bytes that did not parse, when they carry enough of a request's
/// headers (Via, From, To, Call-ID, CSeq) to address an answer; otherwise nothing, as
/// RFC 3261 §16.3 allows for what cannot be answered.
pub fn answer_malformed(bytes: &[u8], error: &ParseError) -> Option<Vec<u8>> {
    let (status, reason) = match error {
        ParseError::TooLarge { .. } => (513, "Message Too Large".to_string()),
        ParseError::Incomplete => (400, "Bad Request (truncated message)".to_string()),
        ParseError::Malformed(why) => (400, format!("Bad Request ({})", one_line(why))),
    };
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(bytes.len().min(sip::MAX_HEADER_BYTES));
    let head = String::from_utf8_lossy(&bytes[..head_end]);
    let mut lines = head.lines();
    let start = lines.next()?;
    if start.starts_with("SIP/") {
        return None; // never answer a response
    }
    let mut headers = sip::Headers::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let canonical = match name.trim().to_ascii_lowercase().as_str() {
            "via" | "v" => "Via",
            "from" | "f" => "From",
            "to" | "t" => "To",
            "call-id" | "i" => "Call-ID",
            "cseq" => "CSeq",
            _ => continue,
        };
        headers.push(canonical, value.trim().to_string());
    }
    for required in ["Via", "From", "To", "Call-ID", "CSeq"] {
        headers.get(required)?;
    }
    let response = Response {
        status,
        reason,
        headers,
        body: Vec::new(),
    };
    Some(response.to_bytes())
}

fn one_line(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(100).collect()
}

fn reply(request: &Request, status: u16, reason: &str) -> Response {
    let tag = (status >= 200).then(|| format!("{:x}", now_ms()));
    let mut response = Response::for_request(request, status, reason, tag.as_deref());
    response.headers.push("Server", "tandem registrar");
    response
}

/// Answers one request.
pub(crate) async fn handle(
    server: &Server,
    registrar: &Registrar,
    request: &Request,
    peer: SocketAddr,
) -> Response {
    match &request.method {
        Method::Register => register(server, request).await,
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
    server: &Server,
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
    match crate::users::lookup(server.replica.store(), &aor).await {
        Some(user) => Ok((aor, user)),
        None => Err(reply(request, 404, "Not Found (no such user)")),
    }
}

/// Digest authentication of `user` for `request`: None when authenticated, else the
/// answer (401 challenge or 403).
fn authenticate(server: &Server, request: &Request, user: &UserRecord) -> Option<Response> {
    let now = now_ms().max(0) as u64;
    let challenge = |stale: bool| {
        let mut r = reply(request, 401, "Unauthorized");
        let ch = Challenge {
            realm: user.realm.clone(),
            nonce: server.nonce_key.issue(now),
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
    match server.nonce_key.check(&creds.nonce, now, NONCE_MAX_AGE_MS) {
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

async fn register(server: &Server, request: &Request) -> Response {
    let (aor, user) = match user_of(server, request, "To").await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if !user.enabled {
        return reply(request, 403, "Forbidden (user disabled)");
    }
    if let Some(answer) = authenticate(server, request, &user) {
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
                    expires_at: now_ms() + i64::from(expires) * 1000,
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
    let now = now_ms();
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
        r.headers.push(
            "Warning",
            format!(
                "399 {} \"resiliency mode: your home pool {} is unreachable; sign-in and messaging work, contacts, meetings and other stored data do not\"",
                server.fqdn, user.registrar_pool
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
fn relay_proof(server: &Server, request: &Request) -> String {
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
    server: &Server,
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
        .get(crate::edge::FEDERATION_HEADER)
        .is_some_and(|p| p == crate::edge::federation_proof(&server.token, request));
    if federated {
        // The Edge vouches for a sender of another domain, never for one of ours.
        let ours = server.replica.topology().deployment.sip_domain.clone();
        if !crate::edge::from_foreign_domain(request, &ours) {
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
        if let Some(answer) = authenticate(server, request, &sender) {
            return answer;
        }
    }
    let Ok(target) = Uri::parse(&request.uri) else {
        return reply(request, 400, "Bad Request (Request-URI is not a SIP URI)");
    };
    let aor = target.aor();
    let Some(recipient) = crate::users::lookup(server.replica.store(), &aor).await else {
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
    onward.headers.remove(crate::edge::FEDERATION_HEADER);
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
    server: &Server,
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
    let mut last = reply(
        request,
        480,
        "Temporarily Unavailable (no contact answered)",
    );
    for b in bindings {
        let Some(dest) = contact_address(&b.contact) else {
            continue;
        };
        let mut to_contact = onward.clone();
        to_contact.uri = b.contact.clone();
        match registrar
            .endpoint
            .request(dest, to_contact, DELIVERY_TIMEOUT)
            .await
        {
            Ok(resp) if (200..300).contains(&resp.status) => return reply(request, 200, "OK"),
            Ok(resp) => last = reply(request, resp.status, &resp.reason),
            Err(_) => {}
        }
    }
    last
}

async fn relay(
    server: &Server,
    registrar: &Registrar,
    request: &Request,
    onward: Request,
    topology: &topology::Topology,
    pool: &str,
) -> Response {
    for dest in crate::registrars_of(server, topology, pool).await {
        if let Ok(resp) = registrar
            .endpoint
            .request(dest, onward.clone(), DELIVERY_TIMEOUT)
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

/// The `text/registration-event` body (MS-SIPREGE §2.2.1.13) that tells an endpoint its
/// registrar has changed; `P-Preferred-Registrar` names the new one.
pub const REGISTRAR_CHANGED: &str = "deregistered;event=preferred-registrar-change";
/// The event package of registration notifications.
pub const REGISTRATION_NOTIFY: &str = "registration-notify";
/// How many sign-out notifications may wait for their answers at once.
const SIGN_OUT_IN_FLIGHT: usize = 256;
/// How long one sign-out notification is retransmitted before the endpoint is given up.
const SIGN_OUT_TIMEOUT: Duration = Duration::from_secs(4);

/// Tells the endpoints behind `bindings`, which a failover or failback has just removed,
/// that they are signed out and that `serving_pool` is their registrar now: one NOTIFY
/// (`Event: registration-notify`, body [`REGISTRAR_CHANGED`]) to each contact that has not
/// expired. Without it a client would learn of the move only at its next refresh, minutes
/// later. The notifications go out in the background, so that the step that removed the
/// bindings does not wait for clients; an endpoint that does not answer still finds its
/// way at its next refresh (the old pool answers 301). Returns how many are sent.
pub(crate) fn tell_signed_out(
    server: &Server,
    bindings: Vec<Binding>,
    serving_pool: &str,
) -> usize {
    let Some(registrar) = server.registrar.get() else {
        return 0;
    };
    let now = now_ms();
    let targets: Vec<(Binding, SocketAddr)> = bindings
        .into_iter()
        .filter(|b| b.expires_at > now)
        .filter_map(|b| contact_address(&b.contact).map(|dest| (b, dest)))
        .collect();
    let sent = targets.len();
    if sent == 0 {
        return 0;
    }
    let endpoint = registrar.endpoint.clone();
    let (pool, fqdn, serving) = (
        server.pool.clone(),
        server.fqdn.clone(),
        serving_pool.to_string(),
    );
    tokio::spawn(async move {
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
    headers.push("From", format!("<sip:{pool}>;tag={:x}", now_ms()));
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

/// The socket address of a contact URI with a numeric host.
pub fn contact_address(contact: &str) -> Option<SocketAddr> {
    let uri = Uri::parse(contact).ok()?;
    let ip: std::net::IpAddr = uri.host.parse().ok()?;
    Some(SocketAddr::new(ip, uri.port.unwrap_or(5060)))
}

/// Sends OPTIONS to `dest` from the registrar's endpoint: true when it answers 200.
pub async fn probe(endpoint: &Endpoint, dest: SocketAddr, from_host: &str) -> bool {
    let mut headers = sip::Headers::new();
    headers.push(
        "From",
        format!("<sip:health@{from_host}>;tag={:x}", now_ms()),
    );
    headers.push("To", format!("<sip:{dest}>"));
    headers.push(
        "Call-ID",
        format!("probe-{}-{:x}", endpoint.branch(), now_ms()),
    );
    headers.push("CSeq", "1 OPTIONS");
    headers.push("Max-Forwards", "70");
    let request = Request {
        method: Method::Options,
        uri: format!("sip:{dest}"),
        headers,
        body: Vec::new(),
    };
    matches!(
        endpoint.request(dest, request, Duration::from_millis(800)).await,
        Ok(r) if r.status == 200
    )
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

    #[test]
    fn malformed_requests_get_400_when_addressable() {
        let bytes = b"REGISTER sip:contoso.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5000;branch=z9hG4bK1\r\nFrom: <sip:a@contoso.com>;tag=1\r\nTo: <sip:a@contoso.com>\r\nCall-ID: x\r\nCSeq: one REGISTER\r\n\r\n";
        let err = ParseError::Malformed("bad CSeq".into());
        let answer = answer_malformed(bytes, &err).unwrap();
        let text = String::from_utf8(answer).unwrap();
        assert!(
            text.starts_with("SIP/2.0 400 Bad Request (bad CSeq)"),
            "{text}"
        );
        assert!(answer_malformed(b"\x00\x01garbage", &err).is_none());
        let big = ParseError::TooLarge {
            size: 70_000,
            limit: 65_000,
        };
        let text = String::from_utf8(answer_malformed(bytes, &big).unwrap()).unwrap();
        assert!(text.starts_with("SIP/2.0 513"), "{text}");
        // Responses are never answered.
        assert!(answer_malformed(b"SIP/2.0 200 OK\r\n\r\n", &err).is_none());
    }

    #[test]
    fn contacts_resolve_to_socket_addresses() {
        assert_eq!(
            contact_address("sip:alice@127.0.0.1:40000;transport=udp"),
            Some("127.0.0.1:40000".parse().unwrap())
        );
        assert_eq!(contact_address("sip:alice@example.com"), None);
    }
}
