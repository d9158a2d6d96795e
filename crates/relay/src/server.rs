//! The TURN relay (RFC 8656) on an Edge's external address, UDP and TCP: Allocate,
//! Refresh, CreatePermission, ChannelBind, Send and Data indications, channel data, and
//! Binding for clients that only want their address. Long-term credentials from the
//! shared secret ([`crate::credentials`]), checked without a table per user or per
//! unauthenticated request.
//!
//! Bounded everywhere an attacker could push: allocations in all and per username
//! ([`Limits`]), TCP clients in all and per source address (`listener::Admission`), a TCP
//! client must send a whole message within [`Limits::tcp_idle`], no message over
//! [`stun::MAX_MESSAGE`], lifetimes capped, and peers the relay will not send to
//! ([`Config::forbidden_peers`]: the Edge's internal side, so that the relay is no way into
//! the deployment). Every lifetime runs on the [`clock::Clock`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::credentials::{self, NonceCheck, Secret};
use crate::stun::{self, Class, Message};

/// The software the relay names in its answers.
const SOFTWARE: &str = "tandem A/V Edge";

/// What the relay allows.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub allocations: usize,
    pub allocations_per_user: usize,
    pub tcp_clients: usize,
    pub tcp_clients_per_source: usize,
    /// How long a TCP client may go without sending a whole message.
    pub tcp_idle: Duration,
    pub default_lifetime: Duration,
    pub max_lifetime: Duration,
    pub permission_lifetime: Duration,
    pub channel_lifetime: Duration,
}

impl Limits {
    /// RFC 8656's lifetimes (10 minutes by default, at most an hour; permissions 5
    /// minutes, channels 10) and caps for an Edge server.
    pub const DEFAULT: Limits = Limits {
        allocations: 4_096,
        allocations_per_user: 16,
        tcp_clients: 1_024,
        tcp_clients_per_source: 32,
        tcp_idle: Duration::from_secs(60),
        default_lifetime: Duration::from_secs(600),
        max_lifetime: Duration::from_secs(3600),
        permission_lifetime: Duration::from_secs(300),
        channel_lifetime: Duration::from_secs(600),
    };
}

/// How a relay is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where clients reach it (UDP and TCP): the Edge's external address and the TURN port.
    pub listen: SocketAddr,
    /// Where clients inside reach it too (the Edge's internal side): what they relay comes
    /// out of the relayed addresses on `relay_ip` as well.
    pub internal: Option<SocketAddr>,
    /// The address relayed transport addresses are allocated on (the external one).
    pub relay_ip: IpAddr,
    pub realm: String,
    pub secret: Secret,
    /// Addresses the relay never sends to.
    pub forbidden_peers: Vec<IpAddr>,
    pub limits: Limits,
    pub clock: clock::Clock,
}

/// What a relay has done, for `/metrics` and the benchmark.
#[derive(Debug, Default)]
pub struct Stats {
    pub allocations: AtomicU64,
    pub allocations_refused: AtomicU64,
    pub packets_to_peers: AtomicU64,
    pub packets_to_clients: AtomicU64,
    pub bytes_relayed: AtomicU64,
    pub unauthorized: AtomicU64,
}

/// A running relay: stopped (every allocation with it) when dropped or [`Relay::stop`]ped.
#[derive(Debug)]
pub struct Relay {
    stop: CancellationToken,
    tasks: JoinSet<()>,
    shared: Arc<Shared>,
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    /// The internal side's address, when it listens there too.
    pub internal: Option<SocketAddr>,
}

impl Relay {
    /// Binds the UDP and TCP listeners (on each side) and starts serving.
    pub async fn start(config: Config) -> std::io::Result<Relay> {
        let bind = |at: SocketAddr| async move {
            let udp = Arc::new(UdpSocket::bind(at).await?);
            let tcp = TcpListener::bind(udp.local_addr()?).await?;
            Ok::<_, std::io::Error>((udp, tcp))
        };
        let mut sides = vec![bind(config.listen).await?];
        if let Some(internal) = config.internal {
            sides.push(bind(internal).await?);
        }
        let (udp_at, tcp_at) = (sides[0].0.local_addr()?, sides[0].1.local_addr()?);
        let internal = match sides.get(1) {
            Some((udp, _)) => Some(udp.local_addr()?),
            None => None,
        };
        let shared = Arc::new(Shared {
            config,
            allocations: Mutex::new(HashMap::new()),
            stats: Stats::default(),
        });
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        // A reader per core on each UDP socket: each takes the next datagram, so that
        // relaying one client's packet does not wait for another's.
        let readers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        for (udp, tcp) in sides {
            for _ in 0..readers {
                tasks.spawn(serve_udp(shared.clone(), udp.clone(), stop.clone()));
            }
            tasks.spawn(serve_tcp(shared.clone(), tcp, stop.clone()));
        }
        tasks.spawn(sweep(shared.clone(), stop.clone()));
        tracing::info!(udp = %udp_at, tcp = %tcp_at, internal = ?internal, "A/V relay started");
        Ok(Relay {
            stop,
            tasks,
            shared,
            udp: udp_at,
            tcp: tcp_at,
            internal,
        })
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// A look at this relay that can be kept elsewhere (`/metrics` reads it at a scrape).
    pub fn reading(&self) -> Reading {
        Reading(self.shared.clone())
    }

    /// Allocations alive now.
    pub fn live_allocations(&self) -> usize {
        self.shared.table().len()
    }

    /// Stops listening and drops every allocation (their relay ports close).
    pub async fn stop(mut self) {
        self.stop.cancel();
        for (_, a) in self.shared.table().drain() {
            a.reader.abort();
        }
        self.tasks.shutdown().await;
        tracing::info!(udp = %self.udp, "A/V relay stopped");
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.cancel();
        for (_, a) in self.shared.table().drain() {
            a.reader.abort();
        }
    }
}

/// An allocation's 5-tuple: the client's address, the relay's, and whether over TCP.
type Key = (SocketAddr, SocketAddr, bool);

/// A look at a running relay: its counters and the allocations alive.
#[derive(Debug, Clone)]
pub struct Reading(Arc<Shared>);

impl Reading {
    pub fn stats(&self) -> &Stats {
        &self.0.stats
    }

    pub fn live_allocations(&self) -> usize {
        self.0.table().len()
    }
}

/// How a client is reached: the UDP listener's socket, or its TCP connection's writer.
#[derive(Debug, Clone)]
enum Client {
    Udp {
        socket: Arc<UdpSocket>,
        addr: SocketAddr,
        /// The relay's side it came to.
        local: SocketAddr,
    },
    Tcp {
        tx: mpsc::Sender<Vec<u8>>,
        addr: SocketAddr,
        local: SocketAddr,
    },
}

impl Client {
    fn addr(&self) -> SocketAddr {
        match self {
            Client::Udp { addr, .. } | Client::Tcp { addr, .. } => *addr,
        }
    }

    /// The allocation's key: RFC 8656's 5-tuple (the client's address, the relay's side it
    /// came to, the transport).
    fn key(&self) -> Key {
        match self {
            Client::Udp { addr, local, .. } => (*addr, *local, false),
            Client::Tcp { addr, local, .. } => (*addr, *local, true),
        }
    }

    async fn send(&self, bytes: Vec<u8>) {
        match self {
            Client::Udp { socket, addr, .. } => {
                let _ = socket.send_to(&bytes, addr).await;
            }
            // A client that does not read is not waited for: what does not fit is dropped.
            Client::Tcp { tx, .. } => {
                let _ = tx.try_send(bytes);
            }
        }
    }

    fn stream(&self) -> bool {
        matches!(self, Client::Tcp { .. })
    }
}

#[derive(Debug)]
struct Allocation {
    client: Client,
    username: String,
    relay: Arc<UdpSocket>,
    expires: Instant,
    permissions: HashMap<IpAddr, Instant>,
    /// Channel number to peer, and until when.
    channels: HashMap<u16, (SocketAddr, Instant)>,
    reader: AbortHandle,
}

impl Allocation {
    fn permitted(&self, peer: IpAddr, clock: &clock::Clock) -> bool {
        self.permissions
            .get(&peer)
            .is_some_and(|until| !clock.passed(*until))
    }

    fn channel_of(&self, peer: SocketAddr, clock: &clock::Clock) -> Option<u16> {
        self.channels
            .iter()
            .find(|(_, (p, until))| *p == peer && !clock.passed(*until))
            .map(|(n, _)| *n)
    }
}

#[derive(Debug)]
struct Shared {
    config: Config,
    allocations: Mutex<HashMap<Key, Allocation>>,
    stats: Stats,
}

impl Shared {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Allocation>> {
        self.allocations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn forbidden(&self, peer: IpAddr) -> bool {
        peer.is_unspecified()
            || peer.is_multicast()
            || matches!(peer, IpAddr::V4(v4) if v4.is_broadcast())
            || self.config.forbidden_peers.contains(&peer)
    }

    fn now_secs(&self) -> i64 {
        self.config.clock.now_ms() / 1000
    }
}

async fn serve_udp(shared: Arc<Shared>, socket: Arc<UdpSocket>, stop: CancellationToken) {
    let Ok(local) = socket.local_addr() else {
        return;
    };
    let mut buf = vec![0u8; stun::MAX_MESSAGE + 4];
    loop {
        let (n, addr) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(_) => continue,
            },
            () = stop.cancelled() => return,
        };
        let client = Client::Udp {
            socket: socket.clone(),
            addr,
            local,
        };
        handle(&shared, &client, &buf[..n]).await;
    }
}

async fn serve_tcp(shared: Arc<Shared>, listener: TcpListener, stop: CancellationToken) {
    let Ok(local) = listener.local_addr() else {
        return;
    };
    let limits = shared.config.limits;
    let admission = listener::Admission::new(limits.tcp_clients, limits.tcp_clients_per_source);
    let mut clients = JoinSet::new();
    loop {
        while clients.try_join_next().is_some() {}
        let (stream, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(r) => r,
                Err(_) => {
                    shared.config.clock.sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.cancelled() => return,
        };
        let Some(admitted) = admission.admit(addr.ip()) else {
            continue;
        };
        let shared = shared.clone();
        clients.spawn(async move {
            let _admitted = admitted;
            tcp_client(&shared, stream, addr, local).await;
            // The connection is gone: so are its allocations.
            if let Some(a) = shared.table().remove(&(addr, local, true)) {
                a.reader.abort();
            }
        });
    }
}

async fn tcp_client(shared: &Arc<Shared>, stream: TcpStream, addr: SocketAddr, local: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(256);
    let writing = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    let client = Client::Tcp { tx, addr, local };
    let idle = shared.config.limits.tcp_idle;
    let mut frame = vec![0u8; stun::MAX_MESSAGE + 4];
    loop {
        let read = async {
            let mut head = [0u8; 4];
            reader.read_exact(&mut head).await.ok()?;
            let len = stun::frame_length(head);
            if len > frame.len() || len < 4 {
                return None;
            }
            frame[..4].copy_from_slice(&head);
            reader.read_exact(&mut frame[4..len]).await.ok()?;
            Some(len)
        };
        let deadline = shared.config.clock.deadline(idle);
        let Ok(Some(len)) = tokio::time::timeout_at(deadline, read).await else {
            break;
        };
        handle(shared, &client, &frame[..len]).await;
    }
    writing.abort();
}

/// Drops allocations past their lifetime, once a second.
async fn sweep(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = shared.config.clock.sleep(Duration::from_secs(1)) => {}
            () = stop.cancelled() => return,
        }
        let clock = &shared.config.clock;
        shared.table().retain(|_, a| {
            let alive = !clock.passed(a.expires);
            if !alive {
                a.reader.abort();
            } else {
                a.permissions.retain(|_, until| !clock.passed(*until));
                a.channels.retain(|_, (_, until)| !clock.passed(*until));
            }
            alive
        });
    }
}

/// One message from a client.
async fn handle(shared: &Arc<Shared>, client: &Client, bytes: &[u8]) {
    if let Some((channel, data)) = stun::parse_channel_data(bytes) {
        let target = {
            let table = shared.table();
            let clock = &shared.config.clock;
            table.get(&client.key()).and_then(|a| {
                let (peer, until) = *a.channels.get(&channel)?;
                (!clock.passed(until) && a.permitted(peer.ip(), clock))
                    .then(|| (a.relay.clone(), peer))
            })
        };
        if let Some((relay, peer)) = target {
            relayed_to_peer(shared, &relay, peer, data).await;
        }
        return;
    }
    let Ok(parsed) = stun::parse(bytes) else {
        return;
    };
    let m = &parsed.message;
    match (m.class, m.method) {
        (Class::Indication, stun::SEND) => {
            let (Some(peer), Some(data)) = (
                m.xor_address(stun::XOR_PEER_ADDRESS),
                m.get(stun::DATA_ATTR),
            ) else {
                return;
            };
            let relay = {
                let table = shared.table();
                table
                    .get(&client.key())
                    .filter(|a| a.permitted(peer.ip(), &shared.config.clock))
                    .map(|a| a.relay.clone())
            };
            if let Some(relay) = relay {
                relayed_to_peer(shared, &relay, peer, data).await;
            }
        }
        (Class::Request, stun::BINDING) => {
            let answer = Message::new(Class::Success, stun::BINDING, m.transaction)
                .with_xor_address(stun::XOR_MAPPED_ADDRESS, client.addr())
                .with(stun::SOFTWARE, SOFTWARE);
            client.send(answer.encode(None, true)).await;
        }
        (
            Class::Request,
            stun::ALLOCATE | stun::REFRESH | stun::CREATE_PERMISSION | stun::CHANNEL_BIND,
        ) => {
            let answer = match authenticate(shared, client, &parsed) {
                Err(refusal) => refusal.encode(None, true),
                Ok((username, key)) => {
                    let answer = match m.method {
                        stun::ALLOCATE => allocate(shared, client, m, &username).await,
                        stun::REFRESH => refresh(shared, client, m, &username),
                        stun::CREATE_PERMISSION => permit(shared, client, m, &username),
                        _ => bind_channel(shared, client, m, &username),
                    };
                    answer.encode(Some(&key), true)
                }
            };
            client.send(answer).await;
        }
        // Anything else a relay is not asked: a request gets 400, the rest nothing.
        (Class::Request, method) => {
            let answer =
                Message::new(Class::Error, method, m.transaction).with_error(400, "Bad Request");
            client.send(answer.encode(None, true)).await;
        }
        _ => {}
    }
}

async fn relayed_to_peer(shared: &Shared, relay: &UdpSocket, peer: SocketAddr, data: &[u8]) {
    if shared.forbidden(peer.ip()) {
        return;
    }
    if relay.send_to(data, peer).await.is_ok() {
        shared
            .stats
            .packets_to_peers
            .fetch_add(1, Ordering::Relaxed);
        shared
            .stats
            .bytes_relayed
            .fetch_add(data.len() as u64, Ordering::Relaxed);
    }
}

fn error(m: &Message, code: u16, reason: &str) -> Message {
    Message::new(Class::Error, m.method, m.transaction)
        .with_error(code, reason)
        .with(stun::SOFTWARE, SOFTWARE)
}

/// The long-term credential check (RFC 8489 §9.2): a request without integrity gets 401
/// with the realm and a nonce; one with a nonce this relay did not make for this client,
/// or with a username past its expiry or a wrong password, 401 again; a stale nonce 438.
fn authenticate(
    shared: &Shared,
    client: &Client,
    parsed: &stun::Parsed,
) -> Result<(String, [u8; 16]), Message> {
    let m = &parsed.message;
    let config = &shared.config;
    let now = config.clock.now_ms();
    let who = client.addr().to_string();
    let challenge = |code: u16, reason: &str| {
        shared.stats.unauthorized.fetch_add(1, Ordering::Relaxed);
        error(m, code, reason)
            .with(stun::REALM, config.realm.as_str())
            .with(stun::NONCE, config.secret.nonce(&who, now))
    };
    if !parsed.has_integrity() {
        return Err(challenge(401, "Unauthorized"));
    }
    let (Some(username), Some(realm), Some(nonce)) = (
        m.text(stun::USERNAME),
        m.text(stun::REALM),
        m.text(stun::NONCE),
    ) else {
        return Err(error(m, 400, "Bad Request"));
    };
    match config.secret.check_nonce(nonce, &who, now) {
        NonceCheck::Good => {}
        NonceCheck::Stale => return Err(challenge(438, "Stale Nonce")),
        NonceCheck::Forged => return Err(challenge(401, "Unauthorized")),
    }
    let expired = credentials::expiry_of(username).is_none_or(|at| at < shared.now_secs());
    if realm != config.realm || expired {
        return Err(challenge(401, "Unauthorized"));
    }
    let key = credentials::long_term_key(username, realm, &config.secret.password(username));
    if !parsed.integrity_matches(&key) {
        return Err(challenge(401, "Unauthorized"));
    }
    Ok((username.to_string(), key))
}

fn lifetime(shared: &Shared, m: &Message) -> Duration {
    let limits = shared.config.limits;
    m.get(stun::LIFETIME)
        .and_then(|v| <[u8; 4]>::try_from(v).ok())
        .map(|v| Duration::from_secs(u32::from_be_bytes(v).into()))
        .unwrap_or(limits.default_lifetime)
        .min(limits.max_lifetime)
}

fn lifetime_attr(d: Duration) -> Vec<u8> {
    (d.as_secs() as u32).to_be_bytes().to_vec()
}

async fn allocate(shared: &Arc<Shared>, client: &Client, m: &Message, username: &str) -> Message {
    let config = &shared.config;
    let refused = |code, reason| {
        shared
            .stats
            .allocations_refused
            .fetch_add(1, Ordering::Relaxed);
        error(m, code, reason)
    };
    match m.get(stun::REQUESTED_TRANSPORT) {
        Some([17, ..]) => {}
        Some(_) => return refused(442, "Unsupported Transport Protocol"),
        None => return refused(400, "Bad Request"),
    }
    if m.get(stun::REQUESTED_ADDRESS_FAMILY)
        .is_some_and(|f| f.first() != Some(&1))
        || m.get(stun::RESERVATION_TOKEN).is_some()
    {
        return refused(440, "Address Family not Supported");
    }
    {
        let table = shared.table();
        if table.contains_key(&client.key()) {
            return refused(437, "Allocation Mismatch");
        }
        if table.len() >= config.limits.allocations {
            return refused(508, "Insufficient Capacity");
        }
        if table.values().filter(|a| a.username == username).count()
            >= config.limits.allocations_per_user
        {
            return refused(486, "Allocation Quota Reached");
        }
    }
    // EVEN-PORT asks for an even port: a few tries.
    let even = m.get(stun::EVEN_PORT).is_some();
    let mut relay = None;
    for _ in 0..if even { 16 } else { 1 } {
        match UdpSocket::bind((config.relay_ip, 0)).await {
            Ok(s) if !even || s.local_addr().is_ok_and(|a| a.port() % 2 == 0) => {
                relay = Some(Arc::new(s));
                break;
            }
            _ => {}
        }
    }
    let Some(relay) = relay else {
        return refused(508, "Insufficient Capacity");
    };
    let Ok(relayed) = relay.local_addr() else {
        return refused(508, "Insufficient Capacity");
    };
    let life = lifetime(shared, m).max(Duration::from_secs(1));
    let reader = tokio::spawn(relay_reader(
        Arc::downgrade(shared),
        client.key(),
        relay.clone(),
    ))
    .abort_handle();
    let allocation = Allocation {
        client: client.clone(),
        username: username.to_string(),
        relay,
        expires: config.clock.deadline(life),
        permissions: HashMap::new(),
        channels: HashMap::new(),
        reader,
    };
    {
        let mut table = shared.table();
        // Checked again: another request may have allocated meanwhile.
        if table.contains_key(&client.key()) {
            allocation.reader.abort();
            return refused(437, "Allocation Mismatch");
        }
        table.insert(client.key(), allocation);
    }
    shared.stats.allocations.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(client = %client.addr(), %relayed, username, "allocated");
    Message::new(Class::Success, stun::ALLOCATE, m.transaction)
        .with_xor_address(stun::XOR_RELAYED_ADDRESS, relayed)
        .with(stun::LIFETIME, lifetime_attr(life))
        .with_xor_address(stun::XOR_MAPPED_ADDRESS, client.addr())
        .with(stun::SOFTWARE, SOFTWARE)
}

/// The allocation of `client`, when it is `username`'s; the error to answer otherwise.
fn with_allocation<T>(
    shared: &Shared,
    client: &Client,
    m: &Message,
    username: &str,
    f: impl FnOnce(&mut Allocation) -> Result<T, Message>,
) -> Result<T, Message> {
    let mut table = shared.table();
    let Some(a) = table.get_mut(&client.key()) else {
        return Err(error(m, 437, "Allocation Mismatch"));
    };
    if a.username != username {
        return Err(error(m, 441, "Wrong Credentials"));
    }
    f(a)
}

fn refresh(shared: &Shared, client: &Client, m: &Message, username: &str) -> Message {
    let life = lifetime(shared, m);
    let done = with_allocation(shared, client, m, username, |a| {
        a.expires = shared.config.clock.deadline(life);
        Ok(())
    });
    if let Err(e) = done {
        return e;
    }
    if life.is_zero()
        && let Some(a) = shared.table().remove(&client.key())
    {
        a.reader.abort();
    }
    Message::new(Class::Success, stun::REFRESH, m.transaction)
        .with(stun::LIFETIME, lifetime_attr(life))
}

fn peers(m: &Message) -> Vec<SocketAddr> {
    m.attributes
        .iter()
        .filter(|(k, _)| *k == stun::XOR_PEER_ADDRESS)
        .filter_map(|(_, v)| stun::xor_decode(v, &m.transaction))
        .collect()
}

fn permit(shared: &Shared, client: &Client, m: &Message, username: &str) -> Message {
    let peers = peers(m);
    if peers.is_empty() {
        return error(m, 400, "Bad Request");
    }
    if peers.iter().any(|p| shared.forbidden(p.ip())) {
        return error(m, 403, "Forbidden");
    }
    let clock = &shared.config.clock;
    let until = clock.deadline(shared.config.limits.permission_lifetime);
    match with_allocation(shared, client, m, username, |a| {
        for p in &peers {
            a.permissions.insert(p.ip(), until);
        }
        Ok(())
    }) {
        Ok(()) => Message::new(Class::Success, stun::CREATE_PERMISSION, m.transaction),
        Err(e) => e,
    }
}

fn bind_channel(shared: &Shared, client: &Client, m: &Message, username: &str) -> Message {
    let number = m
        .get(stun::CHANNEL_NUMBER)
        .filter(|v| v.len() == 4)
        .map(|v| u16::from_be_bytes([v[0], v[1]]));
    let peers = peers(m);
    let (Some(number), [peer]) = (number, peers.as_slice()) else {
        return error(m, 400, "Bad Request");
    };
    let peer = *peer;
    if !stun::CHANNELS.contains(&number) {
        return error(m, 400, "Bad Request");
    }
    if shared.forbidden(peer.ip()) {
        return error(m, 403, "Forbidden");
    }
    let clock = &shared.config.clock;
    let limits = shared.config.limits;
    match with_allocation(shared, client, m, username, |a| {
        let taken = a
            .channels
            .get(&number)
            .is_some_and(|(p, until)| *p != peer && !clock.passed(*until))
            || a.channel_of(peer, clock).is_some_and(|n| n != number);
        if taken {
            return Err(error(m, 400, "Bad Request"));
        }
        a.channels
            .insert(number, (peer, clock.deadline(limits.channel_lifetime)));
        a.permissions
            .insert(peer.ip(), clock.deadline(limits.permission_lifetime));
        Ok(())
    }) {
        Ok(()) => Message::new(Class::Success, stun::CHANNEL_BIND, m.transaction),
        Err(e) => e,
    }
}

/// Relays what peers send to an allocation's port back to its client: as channel data on
/// the peer's channel, or a Data indication; only from peers with a permission.
async fn relay_reader(shared: std::sync::Weak<Shared>, key: Key, relay: Arc<UdpSocket>) {
    let mut buf = vec![0u8; stun::MAX_MESSAGE];
    // Data indications need distinct transaction ids, not secret ones: a random start
    // once, then a count, instead of a system call for every packet.
    let mut transaction = [0u8; 12];
    let _ = getrandom::fill(&mut transaction);
    let mut sequence = u64::from_be_bytes(transaction[4..].try_into().unwrap_or_default());
    loop {
        let Ok((n, peer)) = relay.recv_from(&mut buf).await else {
            continue;
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let out = {
            let table = shared.table();
            let Some(a) = table.get(&key) else { return };
            let clock = &shared.config.clock;
            if !a.permitted(peer.ip(), clock) {
                continue;
            }
            let bytes = match a.channel_of(peer, clock) {
                Some(channel) => stun::channel_data(channel, &buf[..n], a.client.stream()),
                None => {
                    sequence = sequence.wrapping_add(1);
                    transaction[4..].copy_from_slice(&sequence.to_be_bytes());
                    Message::new(Class::Indication, stun::DATA, transaction)
                        .with_xor_address(stun::XOR_PEER_ADDRESS, peer)
                        .with(stun::DATA_ATTR, &buf[..n])
                        .encode(None, false)
                }
            };
            (a.client.clone(), bytes)
        };
        shared
            .stats
            .packets_to_clients
            .fetch_add(1, Ordering::Relaxed);
        shared
            .stats
            .bytes_relayed
            .fetch_add(n as u64, Ordering::Relaxed);
        out.0.send(out.1).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ClientError, Received, TurnClient};

    const WAIT: Duration = Duration::from_secs(2);
    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    async fn relay(limits: Limits, forbidden: Vec<IpAddr>) -> (Relay, Secret) {
        let secret = Secret::new(*b"0123456789abcdef0123456789abcdef");
        let relay = Relay::start(Config {
            listen: SocketAddr::new(LOCAL, 0),
            internal: None,
            relay_ip: LOCAL,
            realm: "fabrikam.net".into(),
            secret: secret.clone(),
            forbidden_peers: forbidden,
            limits,
            clock: clock::Clock::system(),
        })
        .await
        .unwrap();
        (relay, secret)
    }

    fn now_secs() -> i64 {
        clock::Clock::system().now_ms() / 1000
    }

    #[tokio::test]
    async fn data_goes_both_ways_through_an_allocation_by_indication_and_by_channel() {
        let (relay, secret) = relay(Limits::DEFAULT, vec![]).await;
        let credentials = secret.issue("alice@fabrikam.net", now_secs(), 60);
        let mut alice = TurnClient::allocate(relay.udp, LOCAL, &credentials, WAIT)
            .await
            .unwrap();
        assert_eq!(alice.relayed.ip(), LOCAL);
        let peer = UdpSocket::bind((LOCAL, 0)).await.unwrap();
        let peer_at = peer.local_addr().unwrap();
        // Nothing from a peer without a permission reaches the client.
        peer.send_to(b"uninvited", alice.relayed).await.unwrap();
        assert_eq!(alice.recv(Duration::from_millis(200)).await, None);
        alice.permit(peer_at).await.unwrap();
        peer.send_to(b"hello alice", alice.relayed).await.unwrap();
        assert_eq!(
            alice.recv(WAIT).await,
            Some(Received::Data {
                peer: peer_at,
                data: b"hello alice".to_vec()
            })
        );
        alice.send(peer_at, b"hello peer").await.unwrap();
        let mut buf = [0u8; 256];
        let (n, from) = peer.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"hello peer"[..], alice.relayed));
        alice.bind_channel(0x4001, peer_at).await.unwrap();
        for i in 0..50u8 {
            alice.send_on(0x4001, &[i; 100]).await.unwrap();
        }
        for _ in 0..50 {
            let (n, _) = peer.recv_from(&mut buf).await.unwrap();
            assert_eq!(n, 100);
        }
        peer.send_to(b"on the channel", alice.relayed)
            .await
            .unwrap();
        assert_eq!(
            alice.recv(WAIT).await,
            Some(Received::Channel {
                channel: 0x4001,
                data: b"on the channel".to_vec()
            })
        );
        assert_eq!(relay.stats().packets_to_peers.load(Ordering::Relaxed), 51);
        assert_eq!(relay.stats().packets_to_clients.load(Ordering::Relaxed), 2);
        // Deleting the allocation closes its port.
        alice.refresh(Duration::ZERO).await.unwrap();
        assert_eq!(relay.live_allocations(), 0);
    }

    #[tokio::test]
    async fn wrong_expired_or_forged_credentials_are_refused_and_quotas_hold() {
        let limits = Limits {
            allocations_per_user: 2,
            ..Limits::DEFAULT
        };
        let (relay, secret) = relay(limits, vec!["127.0.0.2".parse().unwrap()]).await;
        let refused = |r: Result<TurnClient, ClientError>| match r {
            Err(ClientError::Refused { code, .. }) => code,
            other => panic!("{other:?}"),
        };
        let good = secret.issue("bob@fabrikam.net", now_secs(), 60);
        let mut wrong = good.clone();
        wrong.password = Secret::new(*b"not the deployment's secret 32b!").password(&good.username);
        assert_eq!(
            refused(TurnClient::allocate(relay.udp, LOCAL, &wrong, WAIT).await),
            401
        );
        let expired = secret.issue("bob@fabrikam.net", now_secs() - 120, 60);
        assert_eq!(
            refused(TurnClient::allocate(relay.udp, LOCAL, &expired, WAIT).await),
            401
        );
        assert!(relay.stats().unauthorized.load(Ordering::Relaxed) >= 4);
        let mut first = TurnClient::allocate(relay.udp, LOCAL, &good, WAIT)
            .await
            .unwrap();
        let _second = TurnClient::allocate(relay.udp, LOCAL, &good, WAIT)
            .await
            .unwrap();
        assert_eq!(
            refused(TurnClient::allocate(relay.udp, LOCAL, &good, WAIT).await),
            486
        );
        // Another user has a quota of their own.
        let carol = secret.issue("carol@fabrikam.net", now_secs(), 60);
        TurnClient::allocate(relay.udp, LOCAL, &carol, WAIT)
            .await
            .unwrap();
        // The Edge's internal side is no peer.
        match first.permit("127.0.0.2:5061".parse().unwrap()).await {
            Err(ClientError::Refused { code: 403, .. }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(relay.live_allocations(), 3);
    }

    #[tokio::test]
    async fn an_allocation_ends_with_its_lifetime_and_a_stale_nonce_is_renewed() {
        let (relay, secret) = relay(Limits::DEFAULT, vec![]).await;
        let credentials = secret.issue("dave@fabrikam.net", now_secs(), 8 * 3600);
        let mut dave = TurnClient::allocate(relay.udp, LOCAL, &credentials, WAIT)
            .await
            .unwrap();
        let _other = TurnClient::allocate(relay.udp, LOCAL, &credentials, WAIT)
            .await
            .unwrap();
        assert_eq!(relay.live_allocations(), 2);
        // Time moves on the relay's clock without waiting for it: at 590 s both
        // allocations (ten minutes each) and dave's nonce (ten minutes) are still good.
        tokio::time::pause();
        tokio::time::advance(Duration::from_secs(590)).await;
        tokio::time::resume();
        dave.refresh(Duration::from_secs(600)).await.unwrap();
        // At 620 s the other allocation is over and swept; dave's refresh kept his.
        tokio::time::pause();
        tokio::time::advance(Duration::from_secs(30)).await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        tokio::time::resume();
        crate::tests::eventually(|| relay.live_allocations() == 1).await;
        // dave's nonce is stale now: 438, and the client goes on with the new one.
        let challenged = relay.stats().unauthorized.load(Ordering::Relaxed);
        dave.refresh(Duration::from_secs(600)).await.unwrap();
        assert_eq!(
            relay.stats().unauthorized.load(Ordering::Relaxed),
            challenged + 1
        );
        assert_eq!(relay.live_allocations(), 1);
    }
}
