//! Media through the A/V Edge, as `tandem client media` and `tandem bench media` make it:
//! relay credentials for two users from their Front End pools (MRAS of the Edge pool each
//! pool uses), an allocation for each on the first relay given, permissions for each
//! other's relayed address, a channel each way, and packets sent from one through both
//! relays to the other (client → its relay → the peer's relay → the peer), each carrying
//! its number and when it left, so that the receiver counts what arrived and the round
//! trip back is timed.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use relay::MediaRelay;
use relay::client::{Received, TurnClient};

/// How long a relay has to answer one request.
const WAIT: Duration = Duration::from_secs(2);
/// The channel each side binds to the other's relayed address.
const CHANNEL: u16 = 0x4001;

/// What one exchange did.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Report {
    pub(crate) from_edge_pool: String,
    pub(crate) from_relay: SocketAddr,
    pub(crate) to_edge_pool: String,
    pub(crate) to_relay: SocketAddr,
    pub(crate) sent: usize,
    pub(crate) received: usize,
    /// Echoed back and timed, in milliseconds: median and worst.
    pub(crate) round_trip_p50_ms: f64,
    pub(crate) round_trip_max_ms: f64,
}

/// An allocation on the first relay of `answer` (what a user's Front End gave), from
/// `bind`.
async fn allocate(answer: &MediaRelay, bind: IpAddr) -> anyhow::Result<TurnClient> {
    let first = answer
        .relays
        .first()
        .ok_or_else(|| anyhow!("the Edge pool {} has no relay", answer.edge_pool))?;
    let credentials = relay::Credentials {
        username: answer.username.clone(),
        password: answer.password.clone(),
        expires_at: answer.expires_at,
    };
    TurnClient::allocate(
        SocketAddr::new(first.address, first.port),
        bind,
        &credentials,
        WAIT,
    )
    .await
    .with_context(|| {
        format!(
            "allocating on {} ({}:{})",
            first.server, first.address, first.port
        )
    })
}

/// Sends `count` packets of `size` bytes from the user `from` was given for to the user of
/// `to`, through a relay of each, from `bind`; each packet is echoed back.
pub(crate) async fn exchange(
    from: &MediaRelay,
    to: &MediaRelay,
    bind: IpAddr,
    count: usize,
    size: usize,
) -> anyhow::Result<Report> {
    let mut a = allocate(from, bind).await?;
    let mut b = allocate(to, bind).await?;
    a.bind_channel(CHANNEL, b.relayed).await?;
    b.bind_channel(CHANNEL, a.relayed).await?;
    let size = size.clamp(8, 1200);
    let mut received = 0;
    let mut trips = Vec::with_capacity(count);
    for n in 0..count {
        let mut packet = vec![0u8; size];
        packet[..8].copy_from_slice(&(n as u64).to_be_bytes());
        a.send_on(CHANNEL, &packet).await?;
        let left = Instant::now();
        // The peer takes it and sends it back the same way.
        if let Some(Received::Channel { data, .. }) = b.recv(WAIT).await
            && data.len() == size
            && data[..8] == packet[..8]
        {
            received += 1;
            b.send_on(CHANNEL, &data).await?;
            if let Some(Received::Channel { data: back, .. }) = a.recv(WAIT).await
                && back[..8] == packet[..8]
            {
                trips.push(left.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    trips.sort_by(f64::total_cmp);
    let _ = a.refresh(Duration::ZERO).await;
    let _ = b.refresh(Duration::ZERO).await;
    Ok(Report {
        from_edge_pool: from.edge_pool.clone(),
        from_relay: a.relayed,
        to_edge_pool: to.edge_pool.clone(),
        to_relay: b.relayed,
        sent: count,
        received,
        round_trip_p50_ms: trips.get(trips.len() / 2).copied().unwrap_or(0.0),
        round_trip_max_ms: trips.last().copied().unwrap_or(0.0),
    })
}

/// Prints a report for people, or as JSON.
pub(crate) fn print(from: &str, to: &str, report: &Report, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        );
        return;
    }
    println!(
        "{from} relayed at {} ({}) -> {to} relayed at {} ({})",
        report.from_relay, report.from_edge_pool, report.to_relay, report.to_edge_pool
    );
    println!(
        "sent {}, arrived {}, lost {} ({:.1}%); round trip p50 {:.2} ms, max {:.2} ms",
        report.sent,
        report.received,
        report.sent - report.received,
        100.0 * (report.sent - report.received) as f64 / report.sent.max(1) as f64,
        report.round_trip_p50_ms,
        report.round_trip_max_ms
    );
}
