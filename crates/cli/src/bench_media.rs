//! `tandem bench media`: the A/V relay's allocation rate and relay throughput — and, with
//! `--peer coturn`, coturn's (Debian's `turnserver`, the TURN server operators already run)
//! beside it on the same machine, driven by the same client, with the ratio.
//!
//! Each relay runs in a process of its own on 127.0.0.1 (tandem's as `tandem relay`, as an
//! Edge runs it), both with the same shared secret, and is measured the same way:
//! allocations — each one as a client makes it: challenged, allocated, deleted — by eight
//! clients at once until `--allocations` are done; then `--pairs` pairs of allocations
//! bound to each other by channels, each sender keeping a window of packets in flight for
//! `--seconds`, every packet crossing the relay twice (client, its allocation, the peer's
//! allocation, the peer). The load generator shares the machine's two cores with the relay
//! under test, for both.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use relay::client::{Received, TurnClient};

/// How long a relay has to answer one request.
const WAIT: Duration = Duration::from_secs(2);
/// Packets a sender keeps in flight.
const WINDOW: usize = 32;
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Allocations to make (and delete), eight at a time.
    #[arg(long, default_value_t = 2000)]
    allocations: usize,
    /// How long to relay packets.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Pairs of allocations relaying to each other at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pairs: u16,
    /// Bytes in each packet (an audio frame is about 160).
    #[arg(long, default_value_t = 160, value_parser = clap::value_parser!(u16).range(8..=1200))]
    size: u16,
    /// Measure coturn's turnserver the same way, beside tandem's relay.
    #[arg(long, value_enum)]
    peer: Option<Peer>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Peer {
    Coturn,
}

/// One relay's figures.
#[derive(Debug, Clone, serde::Serialize)]
struct Figures {
    relay: &'static str,
    allocations: usize,
    allocations_per_sec: f64,
    packets_sent: u64,
    packets_relayed: u64,
    packets_per_sec: f64,
    megabits_per_sec: f64,
    loss_percent: f64,
}

/// A folder of its own for the relays' secret and coturn's log, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<TempDir> {
        let dir = std::env::temp_dir().join(format!("tandem-bench-media-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A relay process, stopped when dropped.
struct Running {
    child: Child,
    at: SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A UDP and TCP port free on 127.0.0.1 now.
fn free_port() -> anyhow::Result<u16> {
    for _ in 0..20 {
        let udp = std::net::UdpSocket::bind((LOCAL, 0))?;
        let port = udp.local_addr()?.port();
        if std::net::TcpListener::bind((LOCAL, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no port free for both UDP and TCP on 127.0.0.1")
}

/// Waits until something answers a TURN Binding at `at`.
fn wait_until_answering(at: SocketAddr, what: &str) -> anyhow::Result<()> {
    let socket = std::net::UdpSocket::bind((LOCAL, 0))?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let request =
        relay::stun::Message::new(relay::stun::Class::Request, relay::stun::BINDING, [7; 12])
            .encode(None, false);
    let mut buf = [0u8; 512];
    let mut backoff = clock::Backoff::polling();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let _ = socket.send_to(&request, at);
        if socket.recv_from(&mut buf).is_ok() {
            return Ok(());
        }
        std::thread::sleep(backoff.next_wait());
    }
    bail!("{what} did not answer on {at} within 10 s")
}

fn start_tandem(dir: &Path, secret: &relay::Secret) -> anyhow::Result<Running> {
    secret.save(dir)?;
    let at = SocketAddr::new(LOCAL, free_port()?);
    let child = Command::new(std::env::current_exe()?)
        .args(["relay", "--listen", &at.to_string(), "--data-dir"])
        .arg(dir)
        .args(["--realm", "bench"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting tandem relay")?;
    let running = Running { child, at };
    wait_until_answering(at, "tandem relay")?;
    Ok(running)
}

fn start_coturn(dir: &Path, secret: &str) -> anyhow::Result<Running> {
    let at = SocketAddr::new(LOCAL, free_port()?);
    let child = Command::new("turnserver")
        .args(["-n", "--no-tls", "--no-dtls", "--no-cli", "--fingerprint"])
        .args(["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1"])
        .args(["--listening-port", &at.port().to_string()])
        .args(["--use-auth-secret", "--static-auth-secret", secret])
        .args(["--realm", "bench", "--allow-loopback-peers"])
        .args(["--no-stdout-log", "--log-file"])
        .arg(dir.join("turnserver.log"))
        .arg("--pidfile")
        .arg(dir.join("turnserver.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| anyhow!("cannot start coturn's turnserver ({e}): apt-get install coturn"))?;
    let running = Running { child, at };
    wait_until_answering(at, "coturn's turnserver")?;
    Ok(running)
}

/// Credentials for a bench user, good for an hour.
fn credentials(secret: &relay::Secret, n: usize) -> relay::Credentials {
    secret.issue(
        &format!("bench{n}"),
        clock::Clock::system().now_ms() / 1000,
        3600,
    )
}

async fn measure(
    name: &'static str,
    at: SocketAddr,
    secret: &relay::Secret,
    options: &Options,
) -> anyhow::Result<Figures> {
    // Allocations: eight clients at once, each allocating and deleting in turn.
    let started = Instant::now();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (next, secret, total) = (next.clone(), secret.clone(), options.allocations);
        workers.spawn(async move {
            // Each client's socket is kept open until the measurement ends, so that no
            // later client comes from a port a deleted allocation had (coturn remembers
            // those for a while and answers 437).
            let mut done = Vec::new();
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= total {
                    return Ok::<Vec<TurnClient>, anyhow::Error>(done);
                }
                let mut client =
                    TurnClient::allocate(at, LOCAL, &credentials(&secret, n), WAIT).await?;
                client.refresh(Duration::ZERO).await?;
                done.push(client);
            }
        });
    }
    let mut kept = Vec::new();
    while let Some(done) = workers.join_next().await {
        kept.extend(done??);
    }
    let allocation_time = started.elapsed().as_secs_f64();

    // Throughput: pairs of allocations, each sender keeping a window in flight.
    let mut pairs = tokio::task::JoinSet::new();
    let until = Instant::now() + Duration::from_secs(options.seconds);
    for p in 0..usize::from(options.pairs) {
        let secret = secret.clone();
        let size = usize::from(options.size);
        pairs.spawn(async move {
            let mut a = TurnClient::allocate(at, LOCAL, &credentials(&secret, 2 * p), WAIT).await?;
            let mut b =
                TurnClient::allocate(at, LOCAL, &credentials(&secret, 2 * p + 1), WAIT).await?;
            a.bind_channel(0x4001, b.relayed).await?;
            b.bind_channel(0x4001, a.relayed).await?;
            let packet = vec![0x5au8; size];
            let (mut sent, mut relayed) = (0u64, 0u64);
            while Instant::now() < until {
                for _ in 0..WINDOW {
                    a.send_on(0x4001, &packet).await?;
                }
                sent += WINDOW as u64;
                for _ in 0..WINDOW {
                    match b.recv(Duration::from_millis(200)).await {
                        Some(Received::Channel { .. }) => relayed += 1,
                        _ => break,
                    }
                }
            }
            Ok::<(u64, u64), anyhow::Error>((sent, relayed))
        });
    }
    let relay_started = Instant::now();
    let (mut sent, mut relayed) = (0, 0);
    while let Some(done) = pairs.join_next().await {
        let (s, r) = done??;
        sent += s;
        relayed += r;
    }
    let elapsed = relay_started.elapsed().as_secs_f64();
    drop(kept);
    Ok(Figures {
        relay: name,
        allocations: options.allocations,
        allocations_per_sec: options.allocations as f64 / allocation_time,
        packets_sent: sent,
        packets_relayed: relayed,
        packets_per_sec: relayed as f64 / elapsed,
        megabits_per_sec: relayed as f64 * f64::from(options.size) * 8.0 / elapsed / 1e6,
        loss_percent: 100.0 * (sent - relayed.min(sent)) as f64 / sent.max(1) as f64,
    })
}

/// `tandem bench media`.
pub(crate) fn media(options: Options) -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let mut hex = [0u8; 16];
    getrandom::fill(&mut hex).map_err(|e| anyhow!("no random numbers: {e}"))?;
    // coturn takes its secret as text: both use these bytes.
    let text: String = hex.iter().map(|b| format!("{b:02x}")).collect();
    let secret = relay::Secret::new(text.clone().into_bytes());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut results = Vec::new();
    {
        let ours = start_tandem(dir.path(), &secret)?;
        results.push(runtime.block_on(measure("tandem", ours.at, &secret, &options))?);
    }
    if options.peer == Some(Peer::Coturn) {
        let theirs = start_coturn(dir.path(), &text)?;
        results.push(runtime.block_on(measure("coturn", theirs.at, &secret, &options))?);
    }
    let ratio = |f: fn(&Figures) -> f64| {
        (results.len() == 2 && f(&results[1]) > 0.0).then(|| f(&results[0]) / f(&results[1]))
    };
    let allocation_ratio = ratio(|f| f.allocations_per_sec);
    let throughput_ratio = ratio(|f| f.packets_per_sec);
    if options.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "relays": results,
                "pairs": options.pairs,
                "packet_bytes": options.size,
                "seconds": options.seconds,
                "ratio_allocations": allocation_ratio,
                "ratio_packets": throughput_ratio,
            }))?
        );
        return Ok(());
    }
    let rows = results
        .iter()
        .map(|f| {
            vec![
                f.relay.to_string(),
                format!("{:.0}", f.allocations_per_sec),
                format!("{:.0}", f.packets_per_sec),
                format!("{:.1}", f.megabits_per_sec),
                format!("{:.2}%", f.loss_percent),
            ]
        })
        .collect();
    let table = crate::table::render(
        &[
            "relay",
            "allocations/s",
            "relayed packets/s",
            "Mbit/s",
            "loss",
        ],
        rows,
        &[1, 2, 3, 4],
    );
    println!("{table}");
    if let (Some(a), Some(t)) = (allocation_ratio, throughput_ratio) {
        println!("tandem / coturn: allocations {a:.2}x, relayed packets {t:.2}x");
    }
    println!(
        "{} allocations (8 clients at once); {} pairs relaying {}-byte packets for {} s, each packet through the relay twice",
        options.allocations, options.pairs, options.size, options.seconds
    );
    Ok(())
}
