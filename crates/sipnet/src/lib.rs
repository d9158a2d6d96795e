//! SIP over real sockets: a UDP endpoint with client transactions (retransmission and
//! response matching by Via branch, RFC 3261 §17.1.2), flows (one TCP or TLS connection
//! carrying requests both ways, [`flow`]) with mutual-TLS links between servers, and
//! one-shot requests over a flow of their own (`tcp_request`, `tls_request`), shared by
//! the registrar (relaying MESSAGEs, probing the partner pool), the Edge and `tandem
//! client`. The `sip` crate is the codec; this crate is the transport (as hickory splits
//! `proto` from `net`), and the services that answer requests sit above it.
//!
//! Every datagram and frame goes through the `sip` crate's bounded parser; what does not
//! parse is handed to the owner as [`Incoming::Malformed`] so it can answer 400 or 513
//! when the bytes allow it, and never stops the loop.
//!
//! A flood must not starve what keeps the deployment healthy: a server endpoint
//! ([`Endpoint::bind_server`]) hands OPTIONS from the deployment's own servers (the partner
//! pool's health probes) to a queue of their own, so a full queue of strangers' requests
//! never delays them (a 30 s REGISTER flood once made a partner pool declare a pool down).
//! Its other requests are handled in the task that read them ([`ServerRequests::serve`],
//! one task a worker thread reading the same socket): under sign-in load a hand-over
//! through a queue cost each datagram a wake-up of another thread, about a tenth of the
//! Front End's CPU per sign-in over UDP. A socket that stays behind (a flood) hands its
//! requests over to a bounded queue again, so that it is drained at the speed of parsing
//! and the probes behind the flood are read, not lost. Each source's datagrams are read
//! within a budget shared by those tasks. Dropped datagrams are logged as one line per
//! interval with a count, not one a datagram.
//! Over TCP, [`next_frame`] bounds time, not reads: a message must complete within
//! [`FrameLimits::partial`] of its first byte and a connection without a whole message
//! for [`FrameLimits::idle`] is closed, however its bytes trickle in.

mod batch;
pub mod budget;
pub mod flow;

pub use flow::{Flow, Links};

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sip::{Message, Method, ParseError, Request, Response, Uri};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::time::Instant;

/// RFC 3261's T1: the first retransmission interval over UDP.
pub const T1: Duration = Duration::from_millis(500);

/// What arrived on an endpoint that is not a response to one of its own requests.
#[derive(Debug)]
pub enum Incoming {
    Request(Request, SocketAddr),
    Malformed(Vec<u8>, ParseError, SocketAddr),
}

impl Incoming {
    /// Where it came from.
    pub fn peer(&self) -> SocketAddr {
        match self {
            Incoming::Request(_, peer) | Incoming::Malformed(_, _, peer) => *peer,
        }
    }
}

/// A UDP SIP endpoint. A client's ([`Endpoint::bind`]) receiving task ends when the
/// endpoint is dropped; a server's readers ([`ServerRequests::serve`]) when the server
/// drops them.
#[derive(Debug)]
pub struct Endpoint {
    shared: Arc<Shared>,
    /// Dropped with the endpoint: the receiving task sees the channel close and ends.
    _stop: oneshot::Sender<()>,
}

/// What the endpoint and its receiving task share.
#[derive(Debug)]
struct Shared {
    socket: UdpSocket,
    local: SocketAddr,
    pending: Mutex<HashMap<String, oneshot::Sender<Response>>>,
    counter: AtomicU64,
    /// The addresses whose OPTIONS take the priority queue: the deployment's servers.
    priority_sources: RwLock<HashSet<IpAddr>>,
}

/// How many requests wait in an endpoint's queue before more are dropped.
pub const QUEUE: usize = 1024;
/// How many health probes wait in a server endpoint's priority queue.
pub const PRIORITY_QUEUE: usize = 256;
/// The receive buffer asked of the kernel for an endpoint, so that a burst is queued
/// rather than dropped before it is read (the system may grant less).
const RECEIVE_BUFFER: usize = 4 * 1024 * 1024;

/// A server endpoint's requests, and the priority queue for the health probes of the
/// deployment's own servers.
#[derive(Debug)]
pub struct ServerQueues {
    pub requests: ServerRequests,
    pub probes: mpsc::Receiver<Incoming>,
    /// Requests read while the socket stays behind, for the server to handle elsewhere.
    pub handed_over: mpsc::Receiver<Incoming>,
}

/// A server endpoint's receiving, handed to the server: [`ServerRequests::serve`] reads
/// datagrams and gives each request to the server's handler in the task that read it.
/// A request answered without waiting (most are) costs no hand-over between tasks, and
/// so no wake-up of another thread; several tasks serving the same socket read in
/// parallel, as a SIP server's UDP worker processes do. While the socket is behind — the
/// system dropped datagrams on it for want of room, and it has not emptied since: a flood
/// — requests go to [`ServerQueues::handed_over`] instead, and what does not fit is
/// dropped: the reader drains the socket at the speed of parsing, so the deployment's
/// probes behind a flood are read, not lost. Clients waiting for their answers keep a
/// socket busy without overflowing it (each holds only the requests it waits on: SIPp's
/// saturation load, 400): they are answered by the readers however busy. (When "behind"
/// was counted as 256 reads in a row that found a datagram waiting, a third of the
/// sign-ins at SIPp's saturation were handed over, through a queue and another task.)
#[derive(Debug, Clone)]
pub struct ServerRequests {
    shared: Arc<Shared>,
    priority: mpsc::Sender<Incoming>,
    handover: mpsc::Sender<Incoming>,
    /// One budget per source however many tasks read.
    budget: Arc<std::sync::Mutex<budget::SourceBudget>>,
}

impl ServerRequests {
    /// Reads datagrams for ever (the caller stops it by dropping the future): health
    /// probes of the deployment's servers go to the priority queue, every other request
    /// and what does not parse to `on_request`, in this task, with whether it came from
    /// one of the deployment's servers (looked up once a datagram).
    pub async fn serve(self, on_request: impl FnMut(Incoming, bool)) {
        let mut on_request = on_request;
        let handover = self.handover;
        self.shared
            .receive(
                |incoming, behind, from_server| {
                    if behind {
                        return handover.try_send(incoming).is_ok();
                    }
                    on_request(incoming, from_server);
                    true
                },
                Some(ServerSide {
                    priority: self.priority,
                    budget: self.budget,
                }),
                std::future::pending(),
            )
            .await;
    }
}

impl Endpoint {
    /// Binds `addr` and starts receiving; requests and malformed datagrams go to the
    /// returned channel.
    /// The receive buffer is as large as a server's: one endpoint may stand for many
    /// clients (the benchmarks' do), and a burst of requests to all of them (a pool's
    /// sign-out notifications) must wait in it, not be dropped and retransmitted.
    pub async fn bind(addr: SocketAddr) -> io::Result<(Arc<Endpoint>, mpsc::Receiver<Incoming>)> {
        let socket = udp_socket(addr, false)?;
        let (endpoint, stopped) = Endpoint::start(socket)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(endpoint.shared.clone().receive(
            move |incoming, _, _| tx.try_send(incoming).is_ok(),
            None,
            async move {
                let _ = stopped.await;
            },
        ));
        Ok((endpoint, rx))
    }

    /// Binds `addr` as a server: a large receive buffer, and OPTIONS from the addresses
    /// given to [`Endpoint::set_priority_sources`] on a queue of their own.
    pub async fn bind_server(addr: SocketAddr) -> io::Result<(Arc<Endpoint>, ServerQueues)> {
        let (endpoint, _) = Endpoint::start(udp_socket(addr, true)?)?;
        let (priority, probes) = mpsc::channel(PRIORITY_QUEUE);
        let (handover, handed_over) = mpsc::channel(QUEUE);
        let requests = ServerRequests {
            shared: endpoint.shared.clone(),
            priority,
            handover,
            budget: Arc::default(),
        };
        Ok((
            endpoint,
            ServerQueues {
                requests,
                probes,
                handed_over,
            },
        ))
    }

    /// The endpoint on `socket`, and what tells its receiving that it was dropped.
    fn start(socket: UdpSocket) -> io::Result<(Arc<Endpoint>, oneshot::Receiver<()>)> {
        let local = socket.local_addr()?;
        let shared = Arc::new(Shared {
            socket,
            local,
            pending: Mutex::new(HashMap::new()),
            counter: AtomicU64::new(0),
            priority_sources: RwLock::default(),
        });
        let (stop, stopped) = oneshot::channel();
        Ok((
            Arc::new(Endpoint {
                shared,
                _stop: stop,
            }),
            stopped,
        ))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// Whether `source` is one of the addresses given to [`Endpoint::set_priority_sources`].
    pub fn is_priority_source(&self, source: IpAddr) -> bool {
        self.shared.is_server(source)
    }

    /// The addresses whose OPTIONS go to the priority queue (the deployment's servers).
    pub fn set_priority_sources(&self, sources: HashSet<IpAddr>) {
        if let Ok(mut s) = self.shared.priority_sources.write()
            && *s != sources
        {
            *s = sources;
        }
    }
}

/// A UDP socket bound to `addr` with [`RECEIVE_BUFFER`] asked of the kernel.
/// A server's also counts what the system drops on it ([`batch::count_drops`]).
fn udp_socket(addr: SocketAddr, server: bool) -> io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if let Err(e) = socket.set_recv_buffer_size(RECEIVE_BUFFER) {
        tracing::debug!(error = %e, "the SIP receive buffer stays at the system's size");
    }
    if server && let Err(e) = batch::count_drops(&socket) {
        tracing::debug!(error = %e, "the system will not say when the SIP socket overflows");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

impl Shared {
    /// Whether `source` is one of the deployment's servers.
    fn is_server(&self, source: IpAddr) -> bool {
        self.priority_sources
            .read()
            .is_ok_and(|s| s.contains(&source))
    }

    /// Receives until `stopped` completes (the endpoint was dropped), giving each request
    /// (and what does not parse) to `deliver`, with whether the socket is behind (see
    /// [`ServerRequests`]) and whether it came from one of the deployment's servers (a
    /// server's endpoint only); `deliver` says whether it took it. A server's (`server`: its
    /// priority queue and the budget of its sources) reads a stranger's datagrams within
    /// the source's budget and puts its servers' probes on the queue.
    async fn receive(
        self: Arc<Self>,
        mut deliver: impl FnMut(Incoming, bool, bool) -> bool,
        server: Option<ServerSide>,
        stopped: impl std::future::Future<Output = ()>,
    ) {
        let mut dropped =
            listener::drops::Counter::new("SIP datagrams dropped: the endpoint's queue is full");
        let mut over_budget = listener::drops::Counter::new(
            "SIP datagrams dropped: their source sent more than its share",
        );
        // A server reads many datagrams a call and answers them together (see [`batch`]).
        let mut inbox = batch::Inbox::new(if server.is_some() {
            batch::READ_BATCH
        } else {
            1
        });
        let mut outbox = batch::Outbox::default();
        let owner = Arc::as_ptr(&self) as usize;
        let mut stopped = std::pin::pin!(stopped);
        let mut waited = true;
        let mut responses = Vec::new();
        // A server's socket is behind from a read that shows the system dropped datagrams
        // on it for want of room to the first read that finds it emptied.
        let mut behind = false;
        let mut dropped_before = 0;
        // Per datagram of a batch: whether it came from one of the deployment's servers,
        // and whether it is read (a stranger's, within its source's budget).
        let mut verdicts: Vec<(bool, bool)> = Vec::with_capacity(inbox.room());
        loop {
            // What is waiting is read at once; otherwise the task waits for the socket to
            // have some.
            let count = match inbox.try_read(&self.socket) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    behind = false;
                    waited = true;
                    tokio::select! {
                        r = self.socket.readable() => if r.is_err() { return },
                        () = &mut stopped => return,
                    }
                    continue;
                }
                // ICMP errors of earlier sends surface here on some systems; keep going.
                Err(_) => continue,
                Ok(count) => count,
            };
            if inbox.dropped() > dropped_before {
                dropped_before = inbox.dropped();
                behind = server.is_some();
            }
            if waited {
                waited = false;
            } else {
                // Reads that never wait still give the worker's other tasks their turn,
                // after as many datagrams as when they were read one at a time.
                for _ in 0..count {
                    tokio::task::coop::consume_budget().await;
                }
            }
            // A server reads a stranger's datagrams within its budget, before parsing;
            // the batch's sources are looked up together, each shared table once.
            verdicts.clear();
            if let Some(side) = &server {
                let servers = self.priority_sources.read().ok();
                let mut budget = side.budget.lock().expect("the sources' budget");
                let now = Instant::now();
                verdicts.extend((0..count).map(|i| match inbox.datagram(i) {
                    Some((_, peer)) => {
                        let source = peer.ip();
                        let from_server = servers.as_ref().is_some_and(|s| s.contains(&source));
                        (from_server, from_server || budget.take(source, now))
                    }
                    None => (false, false),
                }));
            }
            // From here to the outbox's closing nothing awaits: no other task runs on
            // this thread, and the answers sent meanwhile are this batch's.
            if server.is_some() {
                std::mem::take(&mut outbox).open(owner);
            }
            for i in 0..count {
                let Some((bytes, peer)) = inbox.datagram(i) else {
                    continue;
                };
                let (from_server, within_budget) =
                    verdicts.get(i).copied().unwrap_or((false, true));
                if !within_budget {
                    over_budget.add(peer);
                    continue;
                }
                if bytes.iter().all(|b| *b == b'\r' || *b == b'\n') {
                    continue; // keep-alive
                }
                let incoming = match Message::parse(bytes) {
                    Ok(Message::Response(resp)) => {
                        responses.push(resp);
                        continue;
                    }
                    Ok(Message::Request(req)) => {
                        if let Some(side) = &server
                            && req.method == Method::Options
                            && from_server
                        {
                            if side
                                .priority
                                .try_send(Incoming::Request(req, peer))
                                .is_err()
                            {
                                dropped.add(peer);
                            }
                            continue;
                        }
                        Incoming::Request(req, peer)
                    }
                    Err(e) => Incoming::Malformed(bytes.to_vec(), e, peer),
                };
                if !deliver(incoming, behind, from_server) {
                    dropped.add(peer);
                }
            }
            if server.is_some() {
                outbox = batch::Outbox::close();
                if !outbox.is_empty() {
                    outbox.send(&self.socket).await;
                }
            }
            for resp in responses.drain(..) {
                self.match_response(resp).await;
            }
            // A read that did not fill its room emptied the socket: caught up.
            if count < inbox.room() {
                behind = false;
            }
        }
    }

    /// Hands a final response to the client transaction waiting for it.
    async fn match_response(&self, resp: Response) {
        let branch = resp
            .headers
            .get("Via")
            .and_then(|v| sip::Via::parse(v).ok())
            .and_then(|v| v.branch().map(str::to_string));
        if resp.status >= 200
            && let Some(branch) = branch
            && let Some(waiter) = self.pending.lock().await.remove(&branch)
        {
            let _ = waiter.send(resp);
        }
    }
}

/// What a server endpoint's receiving has that a client's has not: the priority queue for
/// its servers' probes, and the budget of its sources.
#[derive(Debug)]
struct ServerSide {
    priority: mpsc::Sender<Incoming>,
    budget: Arc<std::sync::Mutex<budget::SourceBudget>>,
}

impl Endpoint {
    /// A fresh branch (RFC 3261 magic cookie prefix).
    pub fn branch(&self) -> String {
        let n = self.shared.counter.fetch_add(1, Ordering::Relaxed);
        format!("z9hG4bK{:x}{:x}{n:x}", self.shared.local.port(), now_ms())
    }

    /// Sends `request` to `dest` as a client transaction: adds a top Via with a new branch,
    /// retransmits per T1 until a final response or `timeout`.
    pub async fn request(
        &self,
        dest: SocketAddr,
        mut request: Request,
        timeout: Duration,
    ) -> io::Result<Response> {
        let branch = self.branch();
        push_top_via(
            &mut request,
            format!("SIP/2.0/UDP {};branch={branch};rport", self.shared.local),
        );
        let bytes = request.to_bytes();
        let (tx, mut rx) = oneshot::channel();
        self.shared.pending.lock().await.insert(branch.clone(), tx);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut interval = T1;
        let result = loop {
            if let Err(e) = self.shared.socket.send_to(&bytes, dest).await {
                break Err(e);
            }
            let wait =
                interval.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            match tokio::time::timeout(wait, &mut rx).await {
                Ok(Ok(resp)) => break Ok(resp),
                Ok(Err(_)) => break Err(io::Error::other("transaction dropped")),
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    break Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no answer from {dest} within {timeout:?}"),
                    ));
                }
                Err(_) => interval = (interval * 2).min(Duration::from_secs(4)),
            }
        };
        self.shared.pending.lock().await.remove(&branch);
        result
    }

    /// Sends a response (or any bytes) to `dest`.
    /// While the task that read a batch hands it to the server, an answer on this
    /// endpoint from that thread waits in the batch's outbox (see [`batch`]).
    pub async fn send(&self, dest: SocketAddr, bytes: &[u8]) -> io::Result<()> {
        if batch::Outbox::keep(Arc::as_ptr(&self.shared) as usize, dest, bytes) {
            return Ok(());
        }
        self.shared.socket.send_to(bytes, dest).await.map(drop)
    }
}

/// Puts `via` above the request's Via headers, as each hop does (RFC 3261 §8.1.1.7).
fn push_top_via(request: &mut Request, via: String) {
    let mut headers = sip::Headers::new();
    headers.push("Via", via);
    for (name, value) in request.headers.iter() {
        headers.push(name, value);
    }
    request.headers = headers;
}

/// Sends one request over a new TCP connection and waits for its final response.
pub async fn tcp_request(
    dest: SocketAddr,
    request: &Request,
    timeout: Duration,
) -> io::Result<Response> {
    within(timeout, dest, async {
        let tcp = TcpStream::connect(dest).await?;
        let local = tcp.local_addr()?;
        let (flow, _requests) = Flow::start(tcp, local, dest, "TCP", one_exchange(timeout));
        flow.request(request.clone(), timeout).await
    })
    .await
}

/// Sends one request over a new TLS connection to `dest` (whose certificate must cover
/// `server_name`: its FQDN or address) and waits for its final response.
pub async fn tls_request(
    dest: SocketAddr,
    server_name: &str,
    tls: &Arc<rustls::ClientConfig>,
    request: &Request,
    timeout: Duration,
) -> io::Result<Response> {
    within(timeout, dest, async {
        let (flow, _requests) =
            Flow::connect_tls(None, dest, server_name, tls, timeout, one_exchange(timeout)).await?;
        flow.request(request.clone(), timeout).await
    })
    .await
}

/// The limits of a connection opened for one request and its answer.
fn one_exchange(timeout: Duration) -> FrameLimits {
    FrameLimits {
        idle: timeout,
        partial: timeout,
    }
}

/// `work`, or a timeout naming `dest`.
async fn within<T>(
    timeout: Duration,
    dest: SocketAddr,
    work: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer from {dest}"),
            ))
        })
}

/// How long a stream may take over its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// The longest wait for a whole message, counted from the call (the end of the
    /// previous message, or the connection's opening); keep-alive CRLFs do not restart it.
    pub idle: Duration,
    /// The longest a message may take from its first byte to its last.
    pub partial: Duration,
}

impl FrameLimits {
    /// SIP over TCP and TLS on every listener: a message completes within 10 s of its
    /// first byte (a client that has one to send sends it at once), and a connection idle
    /// for 2 minutes is closed (a client keeps a connection only while it uses it).
    pub const LISTENER: FrameLimits = FrameLimits {
        idle: Duration::from_secs(120),
        partial: Duration::from_secs(10),
    };
}

/// Makes health probes' Call-IDs differ.
static NEXT_PROBE: AtomicU64 = AtomicU64::new(0);

/// Reads until one whole message is at the front of `buf` and returns its bytes, leaving
/// what follows in `buf`; keep-alive CRLFs are skipped. `Ok(None)` at the end of the
/// stream; `Ok(Some(Err(_)))` when the stream can no longer be framed (`buf` then holds
/// what arrived, for an answer); a `TimedOut` error when no whole message arrives within
/// `limits` (see [`FrameLimits`]). Generic over the stream, so TCP and TLS share it.
pub async fn next_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    limits: FrameLimits,
) -> io::Result<Option<Result<Vec<u8>, ParseError>>> {
    let mut chunk = [0u8; 8192];
    let idle_deadline = Instant::now() + limits.idle;
    // When the message in progress began (its first byte other than a keep-alive).
    let mut started: Option<Instant> = None;
    loop {
        match sip::frame_length(buf) {
            Ok(Some(n)) => {
                let frame: Vec<u8> = buf.drain(..n).collect();
                if frame.iter().all(|b| *b == b'\r' || *b == b'\n') {
                    continue;
                }
                return Ok(Some(Ok(frame)));
            }
            Ok(None) => {}
            Err(e) => return Ok(Some(Err(e))),
        }
        if started.is_none() && buf.iter().any(|b| *b != b'\r' && *b != b'\n') {
            started = Some(Instant::now());
        }
        // A message begun gets its whole `partial` time, even late in the idle time.
        let deadline = started.map_or(idle_deadline, |at| at + limits.partial);
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .map_err(|_| {
                let what = if started.is_some() {
                    "a message did not complete in time"
                } else {
                    "the connection was idle"
                };
                io::Error::new(io::ErrorKind::TimedOut, what)
            })??;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Milliseconds since the Unix epoch: the unique parts of branches, tags and Call-IDs.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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
        headers.push(canonical, value.trim());
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

/// The header of a 200 to REGISTER that says how the user is served.
pub const MODE_HEADER: &str = "X-Tandem-Mode";
/// The header naming the pool that serves the user (200 and 301).
pub const SERVING_POOL_HEADER: &str = "X-Tandem-Serving-Pool";

/// The `text/registration-event` body (MS-SIPREGE §2.2.1.13) that tells an endpoint its
/// registrar has changed; `P-Preferred-Registrar` names the new one.
pub const REGISTRAR_CHANGED: &str = "deregistered;event=preferred-registrar-change";
/// The event package of registration notifications.
pub const REGISTRATION_NOTIFY: &str = "registration-notify";

/// The socket address of a contact URI with a numeric host.
pub fn contact_address(contact: &str) -> Option<SocketAddr> {
    uri_address(&Uri::parse(contact).ok()?)
}

/// [`contact_address`] of a URI already parsed.
pub fn uri_address(uri: &Uri) -> Option<SocketAddr> {
    let ip: std::net::IpAddr = uri.host.parse().ok()?;
    Some(SocketAddr::new(ip, uri.port.unwrap_or(5060)))
}

/// Sends OPTIONS to `dest` from `endpoint`: true when it answers 200 within `timeout`.
pub async fn probe(
    endpoint: &Endpoint,
    dest: SocketAddr,
    from_host: &str,
    timeout: Duration,
) -> bool {
    matches!(
        endpoint.request(dest, probe_request(dest, from_host), timeout).await,
        Ok(r) if r.status == 200
    )
}

/// Sends OPTIONS over a mutual-TLS link to the server at `dest` (whose certificate must
/// cover `name`): true when it answers 200 within `timeout`. A probe answered by anyone
/// else does not count.
pub async fn probe_link(
    links: &Links,
    dest: SocketAddr,
    name: &str,
    from_host: &str,
    timeout: Duration,
) -> bool {
    matches!(
        links.request(dest, name, probe_request(dest, from_host), timeout).await,
        Ok(r) if r.status == 200
    )
}

/// The OPTIONS a health probe sends.
fn probe_request(dest: SocketAddr, from_host: &str) -> Request {
    let mut headers = sip::Headers::new();
    headers.push(
        "From",
        format!("<sip:health@{from_host}>;tag={:x}", now_ms()),
    );
    headers.push("To", format!("<sip:{dest}>"));
    headers.push(
        "Call-ID",
        format!(
            "probe-{:x}-{:x}",
            NEXT_PROBE.fetch_add(1, Ordering::Relaxed),
            now_ms()
        ),
    );
    headers.push("CSeq", "1 OPTIONS");
    headers.push("Max-Forwards", "70");
    Request {
        method: Method::Options,
        uri: format!("sip:{dest}"),
        headers,
        body: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

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

    /// A server's readers answer what they read in their own task however busy its socket
    /// is; once the system drops datagrams on it for want of room (a flood), what they
    /// read is handed over until the socket empties, and the deployment's probes still
    /// take their queue.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_socket_that_overflows_hands_its_requests_over() {
        use std::sync::atomic::AtomicBool;
        let (endpoint, queues) = Endpoint::bind_server("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let ServerQueues {
            requests,
            mut probes,
            mut handed_over,
        } = queues;
        let server = endpoint.local_addr();
        // A source of the deployment's: its OPTIONS are probes, and its other requests are
        // not held to a stranger's budget (the flood reaches the readers whole).
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        endpoint.set_priority_sources([client.local_addr().unwrap().ip()].into());
        let register = String::from_utf8(OPTIONS.to_vec())
            .unwrap()
            .replace("OPTIONS", "REGISTER");
        // The first request holds the reader until the socket has overflowed.
        let (blocked, is_blocked) = std::sync::mpsc::channel::<()>();
        let (flooded, is_flooded) = std::sync::mpsc::channel::<()>();
        let mut hold = Some((blocked, is_flooded));
        let (here, answered_here) = mpsc::unbounded_channel::<SocketAddr>();
        tokio::spawn(requests.serve(move |incoming, _| {
            if let Some((blocked, flooded)) = hold.take() {
                blocked.send(()).unwrap();
                flooded.recv().unwrap();
            }
            let _ = here.send(incoming.peer());
        }));
        client.send_to(register.as_bytes(), server).unwrap();
        tokio::task::spawn_blocking(move || is_blocked.recv_timeout(Duration::from_secs(10)))
            .await
            .unwrap()
            .expect("the reader took the first request");
        // Far more than the socket holds: the system drops the rest, and counts them.
        for _ in 0..40_000 {
            client.send_to(register.as_bytes(), server).unwrap();
        }
        flooded.send(()).unwrap();
        // The flood goes on while the reader catches up (what is queued now says the
        // socket overflowed), with probes among it: the system drops what comes to a full
        // socket, probes too, but the reader makes room faster than if it answered.
        let stop = Arc::new(AtomicBool::new(false));
        let flood = std::thread::spawn({
            let stop = stop.clone();
            let register = register.clone();
            move || {
                let mut sent = 0u32;
                while !stop.load(Ordering::SeqCst) && sent < 2_000_000 {
                    client.send_to(register.as_bytes(), server).unwrap();
                    sent += 1;
                    if sent.is_multiple_of(1_000) {
                        client.send_to(OPTIONS, server).unwrap();
                    }
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(30), handed_over.recv())
            .await
            .expect("handed over in time")
            .expect("a request");
        let probe = tokio::time::timeout(Duration::from_secs(30), probes.recv()).await;
        assert!(matches!(probe, Ok(Some(Incoming::Request(r, _))) if r.method == Method::Options));
        stop.store(true, Ordering::SeqCst);
        flood.join().unwrap();
        // The socket empties: a stranger's request is answered by the reader again (sent
        // again if it came while the reader was still behind).
        let stranger = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
        let stranger_addr = stranger.local_addr().unwrap();
        let mut answered_here = answered_here;
        'answered: for _ in 0..20 {
            stranger.send_to(register.as_bytes(), server).unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            loop {
                tokio::select! {
                    peer = answered_here.recv() => {
                        if peer == Some(stranger_addr) {
                            break 'answered;
                        }
                    }
                    _ = handed_over.recv() => {}
                    () = tokio::time::sleep_until(deadline) => continue 'answered,
                }
            }
        }
        // Nothing was left behind: the next request from the stranger is answered here too.
        stranger.send_to(register.as_bytes(), server).unwrap();
        let peer = tokio::time::timeout(Duration::from_secs(10), answered_here.recv())
            .await
            .expect("answered in time");
        assert_eq!(peer, Some(stranger_addr));
        assert!(handed_over.try_recv().is_err());
    }

    /// A stranger's requests past its source's budget are dropped before they are parsed,
    /// while another stranger's and the deployment's servers' (never budgeted) are read.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_source_past_its_budget_is_cut_off_and_the_others_are_not() {
        let (endpoint, queues) = Endpoint::bind_server("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let server = endpoint.local_addr();
        let flooder = std::net::UdpSocket::bind("127.0.0.3:0").unwrap();
        let marker = std::net::UdpSocket::bind("127.0.0.4:0").unwrap();
        let deployment = std::net::UdpSocket::bind("127.0.0.5:0").unwrap();
        endpoint.set_priority_sources([deployment.local_addr().unwrap().ip()].into());
        let (seen, mut read) = mpsc::unbounded_channel::<IpAddr>();
        tokio::spawn(queues.requests.serve(move |incoming, _| {
            let _ = seen.send(incoming.peer().ip());
        }));
        let register = String::from_utf8(OPTIONS.to_vec())
            .unwrap()
            .replace("OPTIONS", "REGISTER");
        // In rounds small enough for the socket to hold, each closed by the marker's
        // request: once it is read, everything sent before it was read or dropped.
        let mut rounds = |from: &std::net::UdpSocket, rounds: usize| {
            let mut counted = HashMap::<IpAddr, usize>::new();
            for _ in 0..rounds {
                for _ in 0..100 {
                    from.send_to(register.as_bytes(), server).unwrap();
                }
                marker.send_to(register.as_bytes(), server).unwrap();
                loop {
                    let source = read.blocking_recv().expect("the reader runs");
                    *counted.entry(source).or_default() += 1;
                    if source == marker.local_addr().unwrap().ip() {
                        break;
                    }
                }
            }
            counted
        };
        let (counted, took) = tokio::task::block_in_place(|| {
            let start = std::time::Instant::now();
            (rounds(&flooder, 300), start.elapsed())
        });
        let flooded = counted[&flooder.local_addr().unwrap().ip()];
        let allowed = budget::PER_SOURCE_BURST + budget::PER_SOURCE_RATE * took.as_secs_f64();
        assert!(
            (flooded as f64) <= allowed + 1.0 && flooded >= budget::PER_SOURCE_BURST as usize,
            "30,000 sent in {took:?}: {flooded} read, {allowed} allowed"
        );
        assert_eq!(counted[&marker.local_addr().unwrap().ip()], 300);
        // A server of the deployment's answers for many users: no budget holds it back.
        let counted = tokio::task::block_in_place(|| rounds(&deployment, 100));
        assert_eq!(counted[&deployment.local_addr().unwrap().ip()], 10_000);
    }

    /// A stream that yields `chunks`, one every `every`, then stays open and silent.
    async fn trickle(chunks: Vec<&'static [u8]>, every: Duration) -> tokio::io::DuplexStream {
        let (client, server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let mut client = client;
            for c in chunks {
                tokio::time::sleep(every).await;
                if client.write_all(c).await.is_err() {
                    return;
                }
            }
            std::future::pending::<()>().await;
        });
        server
    }

    const OPTIONS: &[u8] = b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:x>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

    #[tokio::test(start_paused = true)]
    async fn a_message_trickled_a_byte_at_a_time_is_cut_off_after_its_time() {
        // One byte every 5 s: a per-read timeout would never fire.
        let bytes: Vec<&'static [u8]> = OPTIONS.chunks(1).collect();
        let mut stream = trickle(bytes, Duration::from_secs(5)).await;
        let start = Instant::now();
        let mut buf = Vec::new();
        let err = next_frame(&mut stream, &mut buf, FrameLimits::LISTENER)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        // The first byte came at 5 s; the message had until 15 s.
        assert_eq!(start.elapsed(), Duration::from_secs(15));
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alives_do_not_hold_a_connection_past_its_idle_time() {
        let crlfs: Vec<&'static [u8]> = vec![b"\r\n\r\n"; 100];
        let mut stream = trickle(crlfs, Duration::from_secs(30)).await;
        let start = Instant::now();
        let err = next_frame(&mut stream, &mut Vec::new(), FrameLimits::LISTENER)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), FrameLimits::LISTENER.idle);
    }

    #[tokio::test(start_paused = true)]
    async fn whole_messages_in_time_are_framed_one_after_another() {
        let mut stream = trickle(vec![OPTIONS, OPTIONS], Duration::from_secs(100)).await;
        let mut buf = Vec::new();
        for _ in 0..2 {
            let frame = next_frame(&mut stream, &mut buf, FrameLimits::LISTENER)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(frame, OPTIONS);
        }
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
