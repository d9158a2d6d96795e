//! A flow: one SIP connection (TCP or TLS) that carries requests both ways at once.
//!
//! A client over TLS has no address a server can open a connection to: the registrar
//! reaches it back over the connection the client signed in on (connection reuse, as
//! RFC 5626's flows), so a MESSAGE or a sign-out NOTIFY for that client goes down the
//! same connection its REGISTER came up. Servers use flows between themselves too (a
//! Front End relaying to another, an Edge to its next hop): one mutual-TLS connection per
//! peer, many requests in flight on it, matched to their responses by Via branch
//! (RFC 3261 §17.1.3), instead of a handshake per message.
//!
//! A flow is two tasks: a reader that frames what arrives (within [`FrameLimits`]),
//! hands requests to its owner and responses to the request waiting for them, and a
//! writer that sends what the owner and the requests queue. Either side closing ends both;
//! requests still waiting fail at once rather than at their timeout. Dropping the last
//! handle on a flow closes its connection.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sip::{Message, Request, Response};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{FrameLimits, Incoming, next_frame, push_top_via};

/// How many messages may wait to be written on one flow.
const WRITE_QUEUE: usize = 256;
/// Bytes written to a flow in one go, at most, when several messages are queued: a
/// connection that carries many users' requests at once (an SBC's, a load generator's)
/// costs one system call — over TLS one record — per burst of answers, not per answer.
const COALESCE: usize = 16 * 1024;
/// How many requests from the peer may wait for their owner on one flow.
const INCOMING_QUEUE: usize = 64;

/// One SIP connection, shared by whoever sends on it. Cloning gives another handle on
/// the same connection.
#[derive(Clone)]
pub struct Flow {
    inner: Arc<Inner>,
}

struct Inner {
    writer: mpsc::Sender<Vec<u8>>,
    pending: Mutex<HashMap<String, oneshot::Sender<Response>>>,
    closed: watch::Receiver<bool>,
    close: Arc<watch::Sender<bool>>,
    /// Why the connection ended, when it failed (a TLS alert, say): what a request that
    /// meets the close reports.
    why: Mutex<Option<String>>,
    local: SocketAddr,
    peer: SocketAddr,
    transport: &'static str,
    id: u64,
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("id", &self.inner.id)
            .field("local", &self.inner.local)
            .field("peer", &self.inner.peer)
            .field("transport", &self.inner.transport)
            .finish_non_exhaustive()
    }
}

/// Numbers flows and the branches of their requests.
static NEXT: AtomicU64 = AtomicU64::new(1);

impl Flow {
    /// Starts a flow on `stream` (already connected, after any TLS handshake). Requests
    /// and unparsable messages from the peer arrive on the receiver; a stream that can no
    /// longer be framed is answered when possible (400, 513) and closed.
    pub fn start<S>(
        stream: S,
        local: SocketAddr,
        peer: SocketAddr,
        transport: &'static str,
        limits: FrameLimits,
    ) -> (Flow, mpsc::Receiver<Incoming>)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (mut read, mut write) = tokio::io::split(stream);
        let (writer, mut to_write) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
        let (incoming, received) = mpsc::channel(INCOMING_QUEUE);
        let (close, closed) = watch::channel(false);
        let close = Arc::new(close);
        let inner = Arc::new(Inner {
            writer,
            pending: Mutex::default(),
            closed: closed.clone(),
            close: close.clone(),
            why: Mutex::default(),
            local,
            peer,
            transport,
            id: NEXT.fetch_add(1, Ordering::Relaxed),
        });
        let mut writer_closed = closed.clone();
        let writer_close = close.clone();
        tokio::spawn(async move {
            loop {
                // What is queued goes out before a close is heeded: the answer to what
                // could not be framed is queued just before the reader gives up.
                let bytes = tokio::select! {
                    biased;
                    b = to_write.recv() => b,
                    _ = writer_closed.wait_for(|c| *c) => None,
                };
                let Some(mut bytes) = bytes else { break };
                while bytes.len() < COALESCE {
                    match to_write.try_recv() {
                        Ok(more) => bytes.extend_from_slice(&more),
                        Err(_) => break,
                    }
                }
                // A peer that stops reading does not hold the writer: past the time a
                // message may take, the flow is closed.
                let written = tokio::time::timeout(limits.partial, async {
                    write.write_all(&bytes).await?;
                    write.flush().await
                })
                .await;
                if !matches!(written, Ok(Ok(()))) {
                    break;
                }
            }
            writer_close.send_replace(true);
            let _ = tokio::time::timeout(limits.partial, write.shutdown()).await;
        });
        let reader = Arc::downgrade(&inner);
        let mut reader_closed = closed;
        tokio::spawn(async move {
            let mut buf = Vec::new();
            loop {
                let frame = tokio::select! {
                    f = next_frame(&mut read, &mut buf, limits) => f,
                    _ = reader_closed.wait_for(|c| *c) => break,
                };
                let frame = match frame {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(e) => {
                        if let Some(inner) = reader.upgrade() {
                            *inner.why.lock().expect("why") = Some(e.to_string());
                        }
                        break;
                    }
                };
                let bytes = match frame {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        // Answered if it can be, then the stream is given up.
                        if let Some(answer) = crate::answer_malformed(&buf, &e)
                            && let Some(inner) = reader.upgrade()
                        {
                            let _ = inner.writer.try_send(answer);
                        }
                        break;
                    }
                };
                let message = match Message::parse(&bytes) {
                    Ok(Message::Response(response)) => {
                        let Some(inner) = reader.upgrade() else { break };
                        let branch = response
                            .headers
                            .get("Via")
                            .and_then(|v| sip::Via::parse(v).ok())
                            .and_then(|v| v.branch().map(str::to_string))
                            .unwrap_or_default();
                        // Provisional answers are skipped: the request waits for its
                        // final one.
                        if response.status >= 200 {
                            let waiting = inner.pending.lock().expect("pending").remove(&branch);
                            if let Some(waiting) = waiting {
                                let _ = waiting.send(response);
                            }
                        }
                        continue;
                    }
                    Ok(Message::Request(request)) => Incoming::Request(request, peer),
                    Err(e) => Incoming::Malformed(bytes, e, peer),
                };
                // An owner that takes nothing (a link's) lets requests fall; one that is
                // slow holds the reader, never past the flow's close.
                tokio::select! {
                    _ = incoming.send(message) => {}
                    _ = reader_closed.wait_for(|c| *c) => break,
                }
                if reader.strong_count() == 0 {
                    break;
                }
            }
            close.send_replace(true);
            if let Some(inner) = reader.upgrade() {
                inner.pending.lock().expect("pending").clear();
            }
        });
        (Flow { inner }, received)
    }

    /// Opens a TLS connection to `dest` (whose certificate must cover `name`: its FQDN or
    /// address) within `timeout`, from the local address `from` when given (a server's own,
    /// or a benchmark's clients spread over many, as users' devices are), and starts a flow
    /// on it.
    pub async fn connect_tls(
        from: Option<std::net::IpAddr>,
        dest: SocketAddr,
        name: &str,
        tls: &Arc<rustls::ClientConfig>,
        timeout: Duration,
        limits: FrameLimits,
    ) -> io::Result<(Flow, mpsc::Receiver<Incoming>)> {
        let name = rustls::pki_types::ServerName::try_from(name.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let connect = async {
            let tcp = connect_from(from, dest).await?;
            let local = tcp.local_addr()?;
            let tls = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name, tcp)
                .await?;
            io::Result::Ok((tls, local))
        };
        let (stream, local) = tokio::time::timeout(timeout, connect).await.map_err(|_| {
            io::Error::new(io::ErrorKind::TimedOut, format!("no answer from {dest}"))
        })??;
        Ok(Flow::start(stream, local, dest, "TLS", limits))
    }

    /// Opens a plain TCP connection to `dest` within `timeout`, from the local address
    /// `from` when given, and starts a flow on it (where the topology takes plain SIP).
    pub async fn connect_tcp(
        from: Option<std::net::IpAddr>,
        dest: SocketAddr,
        timeout: Duration,
        limits: FrameLimits,
    ) -> io::Result<(Flow, mpsc::Receiver<Incoming>)> {
        let tcp = tokio::time::timeout(timeout, connect_from(from, dest))
            .await
            .map_err(|_| {
                io::Error::new(io::ErrorKind::TimedOut, format!("no answer from {dest}"))
            })??;
        let local = tcp.local_addr()?;
        Ok(Flow::start(tcp, local, dest, "TCP", limits))
    }

    /// Sends `request` (with a Via of this flow on top) and waits for its final response.
    pub async fn request(&self, request: Request, timeout: Duration) -> io::Result<Response> {
        let mut request = request;
        let branch = format!(
            "z9hG4bKf{:x}{:x}",
            self.inner.id,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        push_top_via(
            &mut request,
            format!(
                "SIP/2.0/{} {};branch={branch};rport",
                self.inner.transport, self.inner.local
            ),
        );
        let (tx, rx) = oneshot::channel();
        self.inner
            .pending
            .lock()
            .expect("pending")
            .insert(branch.clone(), tx);
        // However this ends — answered, timed out, or the caller gone — the waiter goes.
        let _waiting = Waiting {
            inner: &self.inner,
            branch,
        };
        self.send(request.to_bytes()).await?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                self.closed_because(),
            )),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer from {}", self.inner.peer),
            )),
        }
    }

    /// Queues `bytes` (an answer, say) to be written. Never waits: a peer that has let
    /// [`WRITE_QUEUE`] messages pile up is not reading, and its flow is closed.
    pub async fn send(&self, bytes: Vec<u8>) -> io::Result<()> {
        if self.is_closed() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                self.closed_because(),
            ));
        }
        match self.inner.writer.try_send(bytes) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.close();
                Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    format!(
                        "{} is not reading what is sent to it: its connection is closed",
                        self.inner.peer
                    ),
                ))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                self.closed_because(),
            )),
        }
    }

    /// "the connection to … closed", with why when it failed.
    fn closed_because(&self) -> String {
        match self.inner.why.lock().expect("why").as_deref() {
            Some(why) => format!("the connection to {} closed: {why}", self.inner.peer),
            None => format!("the connection to {} closed", self.inner.peer),
        }
    }

    /// Closes the connection: what is queued is dropped, waiting requests fail.
    pub fn close(&self) {
        self.inner.close.send_replace(true);
    }

    /// Answers `request` on this flow.
    pub async fn answer(&self, response: &Response) -> io::Result<()> {
        self.send(response.to_bytes()).await
    }

    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        *self.inner.closed.borrow()
    }

    /// Waits until the connection closes.
    pub async fn closed(&self) {
        let mut closed = self.inner.closed.clone();
        let _ = closed.wait_for(|c| *c).await;
    }

    /// This end's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.peer
    }

    /// `TLS` or `TCP`.
    pub fn transport(&self) -> &'static str {
        self.inner.transport
    }

    /// Whether `other` is a handle on the same connection.
    pub fn same(&self, other: &Flow) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// Removes a request's waiter when the request ends, however it ends.
struct Waiting<'a> {
    inner: &'a Inner,
    branch: String,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.inner
            .pending
            .lock()
            .expect("pending")
            .remove(&self.branch);
    }
}

/// Flows to the deployment's other servers over mutual TLS (this server's certificate
/// presented, theirs checked against the deployment's CA), one per peer address, opened on
/// first use and again once one has closed.
pub struct Links {
    tls: Arc<rustls::ClientConfig>,
    /// The address links leave from: the server's own, so that a peer counts them against
    /// this server and not against whoever else shares the machine's default address.
    from: Option<std::net::IpAddr>,
    /// By peer address and the name its certificate must cover: a link opened for one
    /// name is never used for another.
    flows: Mutex<HashMap<Peer, Flow>>,
    /// One connection attempt at a time per peer: after a peer restarts, its callers wait
    /// for one new link instead of each opening their own.
    connecting: Mutex<HashMap<Peer, Arc<tokio::sync::Mutex<()>>>>,
}

/// A link's peer: its address, and the name its certificate must cover.
type Peer = (SocketAddr, String);

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links").finish_non_exhaustive()
    }
}

impl Links {
    /// Links that present and check certificates as `tls` says.
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Links {
        Links {
            tls,
            from: None,
            flows: Mutex::default(),
            connecting: Mutex::default(),
        }
    }

    /// The same links, leaving from `ip`.
    pub fn from(self, ip: std::net::IpAddr) -> Links {
        Links {
            from: Some(ip),
            ..self
        }
    }

    /// Sends `request` to the server at `dest` (whose certificate must cover
    /// `server_name`) and waits for its final response, within `timeout` in all.
    pub async fn request(
        &self,
        dest: SocketAddr,
        server_name: &str,
        request: Request,
        timeout: Duration,
    ) -> io::Result<Response> {
        let deadline = tokio::time::Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
        let (flow, reused) = self.flow(dest, server_name, timeout).await?;
        match flow.request(request.clone(), left()).await {
            // The peer closed a link that was idle (its idle limit, a restart) before it
            // read the request: send it once more on a new one.
            Err(e) if reused && e.kind() == io::ErrorKind::ConnectionAborted => {
                let (flow, _) = self.flow(dest, server_name, left()).await?;
                flow.request(request, left()).await
            }
            answer => answer,
        }
    }

    /// The open flow to `dest` (true) or a new one (false).
    async fn flow(
        &self,
        dest: SocketAddr,
        name: &str,
        timeout: Duration,
    ) -> io::Result<(Flow, bool)> {
        let key = (dest, name.to_string());
        let open = |links: &Links| {
            links
                .flows
                .lock()
                .expect("links")
                .get(&key)
                .filter(|f| !f.is_closed())
                .cloned()
        };
        if let Some(flow) = open(self) {
            return Ok((flow, true));
        }
        let gate = self
            .connecting
            .lock()
            .expect("links")
            .entry(key.clone())
            .or_default()
            .clone();
        let started = tokio::time::Instant::now();
        let _turn = tokio::time::timeout(timeout, gate.lock())
            .await
            .map_err(|_| {
                io::Error::new(io::ErrorKind::TimedOut, format!("no answer from {dest}"))
            })?;
        // Another caller may have connected while this one waited.
        if let Some(flow) = open(self) {
            return Ok((flow, true));
        }
        // A peer never sends requests on a link it did not open: nothing takes them.
        let (flow, _requests) = Flow::connect_tls(
            self.from,
            dest,
            name,
            &self.tls,
            timeout.saturating_sub(started.elapsed()),
            FrameLimits::LISTENER,
        )
        .await?;
        self.flows.lock().expect("links").insert(key, flow.clone());
        Ok((flow, false))
    }
}

/// A TCP connection to `dest`, from the local address `from` when given, without Nagle's
/// delay (a SIP message is written whole).
async fn connect_from(
    from: Option<std::net::IpAddr>,
    dest: SocketAddr,
) -> io::Result<tokio::net::TcpStream> {
    let tcp = match from {
        Some(ip) => {
            let socket = if ip.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            socket.bind(SocketAddr::new(ip, 0))?;
            socket.connect(dest).await?
        }
        None => tokio::net::TcpStream::connect(dest).await?,
    };
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn options(n: u32) -> Request {
        let mut headers = sip::Headers::new();
        headers.push("From", format!("<sip:a@x>;tag={n}"));
        headers.push("To", "<sip:b@x>");
        headers.push("Call-ID", format!("c{n}"));
        headers.push("CSeq", format!("{n} OPTIONS"));
        headers.push("Max-Forwards", "70");
        Request {
            method: sip::Method::Options,
            uri: "sip:b@x".into(),
            headers,
            body: Vec::new(),
        }
    }

    fn pair() -> (
        (Flow, mpsc::Receiver<Incoming>),
        (Flow, mpsc::Receiver<Incoming>),
    ) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (at_a, at_b): (SocketAddr, SocketAddr) = (
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.2:2".parse().unwrap(),
        );
        (
            Flow::start(a, at_a, at_b, "TLS", FrameLimits::LISTENER),
            Flow::start(b, at_b, at_a, "TLS", FrameLimits::LISTENER),
        )
    }

    #[tokio::test]
    async fn requests_go_both_ways_and_answers_find_their_request_in_any_order() {
        let ((a, mut a_in), (b, mut b_in)) = pair();
        let first = tokio::spawn({
            let a = a.clone();
            async move { a.request(options(1), Duration::from_secs(5)).await }
        });
        let second = tokio::spawn({
            let a = a.clone();
            async move { a.request(options(2), Duration::from_secs(5)).await }
        });
        let mut got = Vec::new();
        for _ in 0..2 {
            match b_in.recv().await {
                Some(Incoming::Request(r, _)) => got.push(r),
                other => panic!("{other:?}"),
            }
        }
        // Answered in the reverse order they came.
        for r in got.iter().rev() {
            let status = if r.headers.get("CSeq") == Some("1 OPTIONS") {
                201
            } else {
                202
            };
            b.answer(&Response::for_request(r, status, "OK", Some("t")))
                .await
                .unwrap();
        }
        assert_eq!(first.await.unwrap().unwrap().status, 201);
        assert_eq!(second.await.unwrap().unwrap().status, 202);
        // And the other way, on the same connection.
        let back = tokio::spawn(async move { b.request(options(3), Duration::from_secs(5)).await });
        let Some(Incoming::Request(r, _)) = a_in.recv().await else {
            panic!("no request")
        };
        assert_eq!(r.headers.get("CSeq"), Some("3 OPTIONS"));
        a.answer(&Response::for_request(&r, 200, "OK", Some("t")))
            .await
            .unwrap();
        assert_eq!(back.await.unwrap().unwrap().status, 200);
    }

    #[tokio::test]
    async fn what_cannot_be_framed_is_answered_before_the_flow_closes() {
        let (mut raw, theirs) = tokio::io::duplex(64 * 1024);
        let at: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let (flow, _incoming) = Flow::start(theirs, at, at, "TCP", FrameLimits::LISTENER);
        let head = "OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:x>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 900000\r\n\r\n";
        raw.write_all(head.as_bytes()).await.unwrap();
        let mut answer = String::new();
        raw.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("SIP/2.0 513"), "{answer}");
        flow.closed().await;
        let refused = flow.request(options(1), Duration::from_secs(5)).await;
        assert_eq!(
            refused.unwrap_err().kind(),
            io::ErrorKind::ConnectionAborted
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_is_cut_off_and_holds_nothing() {
        let (_silent, theirs) = tokio::io::duplex(1024);
        let at: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let (flow, _incoming) = Flow::start(theirs, at, at, "TLS", FrameLimits::LISTENER);
        // Never read: the socket fills, then the queue; sending never waits, and the flow
        // closes rather than hold its writer or its callers.
        let mut refused = None;
        for n in 0..(WRITE_QUEUE + 10) {
            if let Err(e) = flow.send(vec![b'x'; 1024]).await {
                refused = Some((n, e));
                break;
            }
        }
        let (n, e) = refused.expect("a full queue is refused");
        assert!(n >= WRITE_QUEUE - 1, "refused after {n}");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
        flow.closed().await;
        let late = flow.request(options(1), Duration::from_secs(60)).await;
        assert_eq!(late.unwrap_err().kind(), io::ErrorKind::ConnectionAborted);
    }

    #[tokio::test]
    async fn dropping_the_last_handle_closes_the_connection() {
        let ((a, a_in), (b, _b_in)) = pair();
        let other = a.clone();
        drop(a);
        assert!(!b.is_closed(), "one handle is still held");
        drop((other, a_in));
        b.closed().await;
        assert!(b.is_closed());
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_request_times_out_and_a_closed_peer_fails_it_at_once() {
        let ((a, _a_in), (b, b_in)) = pair();
        let silent = a.request(options(1), Duration::from_secs(2)).await;
        assert_eq!(silent.unwrap_err().kind(), io::ErrorKind::TimedOut);
        let waiting = tokio::spawn({
            let a = a.clone();
            async move { a.request(options(2), Duration::from_secs(3600)).await }
        });
        tokio::task::yield_now().await;
        drop((b, b_in));
        // Fails when the peer goes, not after its hour.
        let failed = waiting.await.unwrap();
        assert_eq!(failed.unwrap_err().kind(), io::ErrorKind::ConnectionAborted);
        a.closed().await;
        assert!(a.is_closed());
    }
}
