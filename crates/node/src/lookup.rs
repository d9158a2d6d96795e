//! Lookups in the deployment's DNS, as the servers make them (an Edge finding its next
//! hop's registrars, a registrar relaying to another pool's).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use dns::RecordType;

/// How long a lookup waits for the DNS server's answer.
const ANSWER_WAIT: Duration = Duration::from_millis(500);

/// Lookups made, by `outcome` (`answered`, or `no_answer`: no address within the wait),
/// for `/metrics`.
pub const DNS_LOOKUPS: &str = "tandem_dns_lookups_total";

/// Looks `name` up in the deployment's DNS server at `dns` (A records); `None` when it does
/// not answer within half a second or has no such name.
pub async fn resolve_a(dns: SocketAddr, name: &str) -> Option<Vec<Ipv4Addr>> {
    let found = lookup_a(dns, name).await;
    let outcome = if found.is_some() {
        "answered"
    } else {
        "no_answer"
    };
    metrics::counter!(DNS_LOOKUPS, "outcome" => outcome).increment(1);
    found
}

async fn lookup_a(dns: SocketAddr, name: &str) -> Option<Vec<Ipv4Addr>> {
    let socket = tokio::net::UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .ok()?;
    let mut id = [0u8; 2];
    getrandom::fill(&mut id).ok()?;
    let id = u16::from_be_bytes(id);
    socket
        .send_to(&dns::build_query(id, name, RecordType::A), dns)
        .await
        .ok()?;
    // Only the server's own answer counts (a reply from elsewhere is ignored).
    socket.connect(dns).await.ok()?;
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(ANSWER_WAIT, socket.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    let answer = dns::parse_response(&buf[..n]).ok().filter(|a| a.id == id)?;
    let addresses = answer.addresses();
    (!addresses.is_empty()).then_some(addresses)
}
