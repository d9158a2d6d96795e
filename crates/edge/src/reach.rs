//! How the Edge reaches a server outside: the targets of an SRV record (RFC 2782 order),
//! the addresses of a name in the deployment's DNS, and a connection from the Edge's
//! external address.

use std::net::SocketAddr;
use std::time::Duration;

use node::Node;
use tokio::net::TcpStream;

/// The servers of a service, in the order to try them: the SRV record `srv`'s targets
/// (RFC 2782), else `host` itself on `default_port` (as XMPP falls back to the domain's
/// address).
pub(crate) async fn service_targets(
    server: &Node,
    srv: &str,
    host: &str,
    default_port: u16,
) -> Vec<(String, u16)> {
    if let Some(dns) = &server.dns
        && let Ok(targets) = dns.services(srv).await
        && !targets.is_empty()
    {
        return targets.into_iter().map(|t| (t.target, t.port)).collect();
    }
    vec![(host.to_string(), default_port)]
}

/// The addresses of `name` in the deployment's DNS (an address literal is itself).
pub(crate) async fn addresses_of(server: &Node, name: &str) -> Vec<std::net::IpAddr> {
    if let Ok(ip) = name.parse::<std::net::IpAddr>() {
        return vec![ip];
    }
    match &server.dns {
        Some(dns) => dns
            .addresses(name)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(std::net::IpAddr::V4)
            .collect(),
        None => Vec::new(),
    }
}

/// The Edge's external address: where it speaks to the Internet from.
pub(crate) fn external_ip(server: &Node) -> std::net::IpAddr {
    server
        .replica
        .topology()
        .server(&server.fqdn)
        .map_or(server.address.ip(), |s| s.server.external_address().into())
}

/// A TCP connection to `to` from `from` (any port), within `limit`.
pub(crate) async fn connect_from(
    from: std::net::IpAddr,
    to: SocketAddr,
    limit: Duration,
) -> std::io::Result<TcpStream> {
    let socket = match to {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    if from.is_ipv4() == to.is_ipv4() {
        socket.bind(SocketAddr::new(from, 0))?;
    }
    tokio::time::timeout(limit, socket.connect(to))
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{to} did not answer"))
        })?
}
