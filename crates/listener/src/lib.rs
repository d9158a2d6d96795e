//! Every TCP listener of a server goes through here, so that no listener can be held open,
//! filled or read slowly by a client: the attacks this answers took a Front End's
//! management API and user services down with 20,000 idle connections, and held a partial
//! header open for 75 s.
//!
//! - [`Admission`]: a cap on connections per listener and per source address; a
//!   connection over either is closed at once (the SIP listeners use it too).
//! - TLS ([`accept_tls`]): the handshake must finish within [`Limits::handshake`]; the
//!   peer's verified certificate, if it gave one, reaches handlers as [`PeerCertificate`].
//! - HTTP ([`serve_http`]): hyper with a header-read timeout that also closes a kept-alive
//!   connection idle between requests, and a deadline on the whole request body.

mod admission;
mod deadline;

pub use admission::{Admission, Admitted};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// The bounds of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once on the listener.
    pub total: usize,
    /// Connections open at once from one address.
    pub per_source: usize,
    /// Time for a TLS handshake to complete.
    pub handshake: Duration,
    /// Time for a request's headers to arrive, counted from the connection's opening or
    /// from the previous answer (so it is also the idle timeout of a kept-alive connection).
    pub header_read: Duration,
    /// Time for a whole request body to arrive, once the handler reads it.
    pub body: Duration,
}

impl Limits {
    /// The limits of a listener servers, operators and users share: room for a whole
    /// pool's servers and a few hundred clients, but not for one client to fill it.
    pub const DEFAULT: Limits = Limits {
        total: 2_048,
        per_source: 256,
        handshake: Duration::from_secs(5),
        header_read: Duration::from_secs(10),
        body: Duration::from_secs(60),
    };
}

/// The peer's certificate, verified against the deployment's CA during the handshake:
/// present on a request only when the peer gave one.
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub Arc<CertificateDer<'static>>);

impl PeerCertificate {
    /// Whether the certificate covers `name` (a DNS name or an address).
    pub fn covers(&self, name: &str) -> bool {
        pki::peer_covers(&self.0, name)
    }

    /// Whether it covers any of `names`, the certificate read once.
    pub fn covers_any<'n>(&self, names: impl IntoIterator<Item = &'n str>) -> bool {
        pki::peer_covers_any(&self.0, names).is_some()
    }

    /// Which server of `topology` the certificate names (by FQDN), with its role: how a
    /// listener that also serves users (the registrar's SIP TLS port) knows an Edge or a
    /// Front End of the deployment from anyone else, by what the deployment's CA signed
    /// rather than by a header anyone can write. `None` for a certificate naming no server
    /// (a pool's name alone is not a server).
    pub fn server_identity(
        &self,
        topology: &topology::Topology,
    ) -> Option<(topology::Role, String)> {
        let fqdn =
            pki::peer_covers_any(&self.0, topology.servers().map(|s| s.server.fqdn.as_str()))?;
        topology
            .server(fqdn)
            .map(|s| (s.role, s.server.fqdn.clone()))
    }
}

/// The address a request came from.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddress(pub SocketAddr);

/// Completes a TLS handshake within `limit`, giving the stream and the peer's verified
/// certificate when it gave one.
pub async fn accept_tls<S>(
    acceptor: &TlsAcceptor,
    stream: S,
    limit: Duration,
) -> std::io::Result<(TlsStream<S>, Option<PeerCertificate>)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let tls = tokio::time::timeout(limit, acceptor.accept(stream))
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
        })??;
    let peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| PeerCertificate(Arc::new(cert.clone().into_owned())));
    Ok((tls, peer))
}

/// Serves `app` on `listener` until `stop` is cancelled, over TLS when `tls` is given,
/// within `limits`. Connections in progress get a graceful shutdown and are awaited.
pub async fn serve_http(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
) {
    let admission = Admission::new(limits.total, limits.per_source);
    let acceptor = tls.map(TlsAcceptor::from);
    let connections = TaskTracker::new();
    let mut refused = drops::Counter::new("HTTP connections refused over the listener's caps");
    while let Some((stream, peer, admitted)) =
        accept_admitted(&listener, &admission, &mut refused, &stop).await
    {
        let app = app.clone();
        let acceptor = acceptor.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            let _admitted = admitted;
            let _ = stream.set_nodelay(true);
            match acceptor {
                Some(acceptor) => match accept_tls(&acceptor, stream, limits.handshake).await {
                    Ok((tls, cert)) => serve_connection(tls, peer, cert, app, limits, stop).await,
                    Err(e) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                },
                None => serve_connection(stream, peer, None, app, limits, stop).await,
            }
        });
    }
    connections.close();
    connections.wait().await;
}

async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    cert: Option<PeerCertificate>,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request =
            request.map(|body| axum::body::Body::new(deadline::Deadline::new(body, limits.body)));
        request.extensions_mut().insert(PeerAddress(peer));
        if let Some(cert) = &cert {
            request.extensions_mut().insert(cert.clone());
        }
        app.clone().oneshot(request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .max_buf_size(64 * 1024);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "an HTTP connection ended");
            }
        }
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(limits.header_read, connection).await;
        }
    }
}

/// Accepts TCP connections within an [`Admission`], for listeners that are not HTTP (SIP,
/// XMPP): the next admitted connection, or `None` once `stop` is cancelled.
pub async fn accept_admitted(
    listener: &TcpListener,
    admission: &Admission,
    refused: &mut drops::Counter,
    stop: &CancellationToken,
) -> Option<(TcpStream, SocketAddr, Admitted)> {
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        match admission.admit(peer.ip()) {
            Some(admitted) => return Some((stream, peer, admitted)),
            None => refused.add(peer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    /// A certificate of `ca` for `names`.
    fn certificate(ca: &pki::Authority, names: &[&str]) -> PeerCertificate {
        let issued = ca
            .issue(&pki::Request {
                names: names.iter().map(|n| n.to_string()).collect(),
                addresses: vec![],
                validity_days: 30,
                now: 1_800_000_000,
            })
            .unwrap();
        let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        PeerCertificate(Arc::new(der))
    }

    #[test]
    fn a_certificate_names_the_server_of_the_topology_it_covers() {
        let t = topology::contoso();
        let ca = pki::Authority::create("Test CA", 1_800_000_000).unwrap();
        let edge = certificate(&ca, &["edgeserver1.contoso.com", "edgepool1.contoso.com"]);
        assert_eq!(
            edge.server_identity(&t),
            Some((topology::Role::Edge, "edgeserver1.contoso.com".to_string()))
        );
        let fe = certificate(&ca, &["pool1-fe1.contoso.com", "pool1.contoso.com"]);
        assert_eq!(
            fe.server_identity(&t),
            Some((
                topology::Role::FrontEnd,
                "pool1-fe1.contoso.com".to_string()
            ))
        );
        // A pool's name alone, a partner's domain: no server of the topology.
        for names in [
            &["edgepool1.contoso.com"][..],
            &["fabrikam.com", "sip.fabrikam.com"],
        ] {
            assert_eq!(
                certificate(&ca, names).server_identity(&t),
                None,
                "{names:?}"
            );
        }
    }
}

pub mod drops {
    //! Log lines for refused or dropped traffic, at most one a interval with a count: a
    //! flood must not fill the disk with one line per datagram.

    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    /// How often a counter writes its line while traffic keeps being dropped.
    pub const INTERVAL: Duration = Duration::from_secs(10);

    /// Counts dropped things and logs one WARN line with the count per [`INTERVAL`].
    #[derive(Debug)]
    pub struct Counter {
        what: &'static str,
        count: u64,
        last: Option<SocketAddr>,
        since: Option<Instant>,
    }

    impl Counter {
        pub fn new(what: &'static str) -> Counter {
            Counter {
                what,
                count: 0,
                last: None,
                since: None,
            }
        }

        /// Counts one from `peer`; logs if the interval has passed.
        pub fn add(&mut self, peer: SocketAddr) {
            self.add_at(peer, Instant::now());
        }

        /// [`Counter::add`] at a given instant; returns whether a line was written.
        pub fn add_at(&mut self, peer: SocketAddr, now: Instant) -> bool {
            self.count += 1;
            self.last = Some(peer);
            let due = self
                .since
                .is_none_or(|since| now.duration_since(since) >= INTERVAL);
            if due {
                tracing::warn!(
                    count = self.count,
                    last_source = %peer,
                    "{} (count since the last line)", self.what
                );
                self.count = 0;
                self.since = Some(now);
                return true;
            }
            false
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn one_line_per_interval_however_many_are_dropped() {
            let mut c = Counter::new("test drops");
            let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
            let t0 = Instant::now();
            let lines = (0..10_000u64)
                .filter(|i| c.add_at(peer, t0 + Duration::from_millis(i * 3)))
                .count();
            // 30 s of drops: the first, then one per 10 s.
            assert_eq!(lines, 1 + 2);
        }
    }
}
