//! SIP over real sockets: a UDP endpoint with client transactions (retransmission and
//! response matching by Via branch, RFC 3261 §17.1.2) and a one-shot TCP request, shared
//! by the registrar (relaying MESSAGEs, probing the partner pool), the Edge and `tandem
//! client`. The `sip` crate is the codec; this crate is the transport (as hickory splits
//! `proto` from `net`), and the services that answer requests sit above it.
//!
//! Every datagram and frame goes through the `sip` crate's bounded parser; what does not
//! parse is handed to the owner as [`Incoming::Malformed`] so it can answer 400 or 513
//! when the bytes allow it, and never stops the loop.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sip::{Message, Method, ParseError, Request, Response, Uri};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{Mutex, mpsc, oneshot};

/// RFC 3261's T1: the first retransmission interval over UDP.
pub const T1: Duration = Duration::from_millis(500);

/// What arrived on an endpoint that is not a response to one of its own requests.
#[derive(Debug)]
pub enum Incoming {
    Request(Request, SocketAddr),
    Malformed(Vec<u8>, ParseError, SocketAddr),
}

/// A UDP SIP endpoint. Its receiving task ends when the endpoint is dropped.
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
}

impl Endpoint {
    /// Binds `addr` and starts receiving; requests and malformed datagrams go to the
    /// returned channel.
    pub async fn bind(addr: SocketAddr) -> io::Result<(Arc<Endpoint>, mpsc::Receiver<Incoming>)> {
        let socket = UdpSocket::bind(addr).await?;
        let local = socket.local_addr()?;
        let shared = Arc::new(Shared {
            socket,
            local,
            pending: Mutex::new(HashMap::new()),
            counter: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel(1024);
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(shared.clone().receive(tx, stopped));
        Ok((
            Arc::new(Endpoint {
                shared,
                _stop: stop,
            }),
            rx,
        ))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }
}

impl Shared {
    /// Receives until `stopped` closes (the endpoint was dropped).
    async fn receive(
        self: Arc<Self>,
        tx: mpsc::Sender<Incoming>,
        mut stopped: oneshot::Receiver<()>,
    ) {
        let mut buf = vec![0u8; 65_536];
        loop {
            let received = tokio::select! {
                r = self.socket.recv_from(&mut buf) => r,
                _ = &mut stopped => return,
            };
            let (n, peer) = match received {
                Ok(r) => r,
                // ICMP errors of earlier sends surface here on some systems; keep going.
                Err(_) => continue,
            };
            let bytes = &buf[..n];
            if bytes.iter().all(|b| *b == b'\r' || *b == b'\n') {
                continue; // keep-alive
            }
            let incoming = match Message::parse(bytes) {
                Ok(Message::Response(resp)) => {
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
                    continue;
                }
                Ok(Message::Request(req)) => Incoming::Request(req, peer),
                Err(e) => Incoming::Malformed(bytes.to_vec(), e, peer),
            };
            if tx.try_send(incoming).is_err() {
                tracing::warn!(%peer, "SIP endpoint overloaded; dropping a datagram");
            }
        }
    }
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
    pub async fn send(&self, dest: SocketAddr, bytes: &[u8]) -> io::Result<()> {
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
        Connection::tcp(dest).await?.request(request, timeout).await
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
        Connection::tls(dest, server_name, tls)
            .await?
            .request(request, timeout)
            .await
    })
    .await
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

/// A stream a SIP connection runs on: TCP, or TLS over TCP.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for S {}

/// A client's SIP connection over TCP or TLS, kept open for several requests (as a client
/// keeps its connection to its registrar: the challenge and the answer on one connection).
pub struct Connection {
    stream: Box<dyn Stream>,
    buf: Vec<u8>,
    local: SocketAddr,
    dest: SocketAddr,
    transport: &'static str,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("local", &self.local)
            .field("dest", &self.dest)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A plain TCP connection to `dest`.
    pub async fn tcp(dest: SocketAddr) -> io::Result<Connection> {
        let stream = TcpStream::connect(dest).await?;
        let local = stream.local_addr()?;
        Ok(Connection {
            stream: Box::new(stream),
            buf: Vec::new(),
            local,
            dest,
            transport: "TCP",
        })
    }

    /// A TLS connection to `dest`, whose certificate must cover `server_name`. `tls` says
    /// what the caller trusts and, for a server, the certificate it presents (mutual TLS:
    /// how a registrar knows an Edge or another pool's registrar from a user).
    pub async fn tls(
        dest: SocketAddr,
        server_name: &str,
        tls: &Arc<rustls::ClientConfig>,
    ) -> io::Result<Connection> {
        let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let tcp = TcpStream::connect(dest).await?;
        let local = tcp.local_addr()?;
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await?;
        Ok(Connection {
            stream: Box::new(stream),
            buf: Vec::new(),
            local,
            dest,
            transport: "TLS",
        })
    }

    /// The address this end of the connection has.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Sends `request` (with a Via of this connection on top) and waits for its final
    /// response; provisional responses are skipped.
    pub async fn request(&mut self, request: &Request, timeout: Duration) -> io::Result<Response> {
        let mut request = request.clone();
        let via = format!(
            "SIP/2.0/{} {};branch=z9hG4bK{:x}{:x};rport",
            self.transport,
            self.local,
            self.local.port(),
            now_ms() ^ i64::from(NEXT_BRANCH.fetch_add(1, Ordering::Relaxed) as u32)
        );
        push_top_via(&mut request, via);
        self.stream.write_all(&request.to_bytes()).await?;
        self.stream.flush().await?;
        loop {
            let frame = next_frame(&mut self.stream, &mut self.buf, timeout).await?;
            let Some(frame) = frame else {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} closed the connection without answering", self.dest),
                ));
            };
            let message = frame
                .and_then(|bytes| Message::parse(&bytes))
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            if let Message::Response(r) = message
                && r.status >= 200
            {
                return Ok(r);
            }
        }
    }
}

/// Makes the branches of one connection's requests differ.
static NEXT_BRANCH: AtomicU64 = AtomicU64::new(0);

/// Reads until one whole message is at the front of `buf` and returns its bytes, leaving
/// what follows in `buf`; keep-alive CRLFs are skipped. `Ok(None)` at the end of the
/// stream; `Ok(Some(Err(_)))` when the stream can no longer be framed (`buf` then holds
/// what arrived, for an answer); an error when nothing arrives for `idle`.
pub async fn next_frame<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    idle: Duration,
) -> io::Result<Option<Result<Vec<u8>, ParseError>>> {
    let mut chunk = [0u8; 8192];
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
        let n = tokio::time::timeout(idle, stream.read(&mut chunk))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the connection was idle"))??;
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
    let uri = Uri::parse(contact).ok()?;
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
        endpoint.request(dest, request, timeout).await,
        Ok(r) if r.status == 200
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
