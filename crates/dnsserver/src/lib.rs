//! The lab's DNS server: the deployment's zone (`dns::Zone`), the primary zones and
//! conditional forwarders an operator adds beside it (`dns::Zones`), answered on UDP and
//! TCP by hickory-server's catalog (`dns::Answerer`: EDNS, truncation, NXDOMAIN and
//! REFUSED) or forwarded to a forwarder's master servers ([`forward`]), and the Windows
//! DnsServer cmdlets (`Get-/Add-/Set-/Remove-DnsServerResourceRecord*`,
//! `Add-DnsServerPrimaryZone`, `Add-DnsServerConditionalForwarderZone`,
//! `Get-/Remove-DnsServerZone`) on a management API of its own, as an operator changes the
//! company's DNS during a failover.
//!
//! The deployment's zone is kept in a JSON file beside the lab (`zone.json`, written by
//! `tandem lab up`); the zones added are kept beside it in [`ADDED_ZONES_FILE`]
//! (`zones.json`: `{"primary": [<zone>...], "forwarders": [{"zone": "partner.example",
//! "master_servers": ["127.0.9.153:53"]}]}`, each zone as in `zone.json`; a missing file
//! is no zone added). Every change is written to the file it changes (to a temporary file,
//! then renamed) before it is answered, so a restarted server serves what was last
//! changed. A query it cannot parse gets FORMERR (or nothing, when not even the header is
//! there); a name outside every zone gets REFUSED. Nothing stops the server. The sockets
//! are this crate's, not hickory's `Server`, because it bounds TCP clients per source
//! address and a connection's lifetime ([`TcpLimits`]), and forwarded queries
//! ([`forward::Limits`]), which hickory's does not.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use cmdlet::{BoundValue, Field, Invocation, Output, Record as OutRecord};
use dns::{AddedZones, Answerer, Forwarder, Record, RecordData, RecordType, Zone, Zones};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use api::{ApiError, InvokeRequest, InvokeResponse};

mod ca;
pub mod forward;

/// The zones added beside the deployment's, in the DNS server's folder (see the crate's
/// documentation for its format).
pub const ADDED_ZONES_FILE: &str = "zones.json";

/// The largest query read, over UDP or TCP (a query with EDNS options is a few hundred
/// bytes).
const MAX_QUERY: usize = 4096;

struct DnsState {
    /// Every zone, as the cmdlets change them.
    zones: RwLock<Zones>,
    /// What is served: replaced, whole, after each change is saved.
    served: RwLock<Arc<Served>>,
    /// The deployment's zone file, and the file of the zones added beside it.
    file: PathBuf,
    added_file: PathBuf,
    /// Where this server answers DNS: never a forwarder's master.
    own: SocketAddr,
    token: String,
    queries: Queries,
    forwarding: forward::Forwarding,
}

/// The zones as served: the catalog of the primary zones, and where a name goes.
struct Served {
    answerer: Answerer,
    primary: Vec<String>,
    forwarders: Vec<Forwarder>,
}

impl Served {
    /// The zones as they are to be served; refused when a record cannot go on the wire.
    fn of(zones: &Zones) -> Result<Served, dns::record::WireError> {
        Ok(Served {
            answerer: Answerer::of(zones.primaries())?,
            primary: zones.primaries().map(|z| z.origin.clone()).collect(),
            forwarders: zones.added.forwarders.clone(),
        })
    }

    /// The master servers `query` goes to, when its name is in a forwarder's zone (the
    /// longest zone that contains it).
    fn masters_for(&self, query: &[u8]) -> Option<Vec<SocketAddr>> {
        if self.forwarders.is_empty() {
            return None;
        }
        let question = dns::forward::question(query)?;
        match dns::zones::route(
            &question.name,
            self.primary.iter().map(String::as_str),
            &self.forwarders,
        ) {
            dns::Route::Forward(f) => Some(f.master_servers.clone()),
            _ => None,
        }
    }
}

/// The queries answered, by transport and response code, for `GET /metrics`.
#[derive(Default)]
struct Queries {
    /// `[transport][rcode]`: UDP then TCP; response codes 0 to 15.
    counts: [[std::sync::atomic::AtomicU64; 16]; 2],
}

impl Queries {
    /// Counts the answer `answer` (its response code is the low four bits of byte 3).
    fn count(&self, tcp: bool, answer: &[u8]) {
        let rcode = answer.get(3).map_or(0, |b| usize::from(b & 0x0f));
        self.counts[usize::from(tcp)][rcode].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The counts in Prometheus's text exposition format.
    fn exposition(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::from(
            "# HELP tandem_dns_queries_total DNS queries the lab's DNS server answered, by transport and response code\n\
             # TYPE tandem_dns_queries_total counter\n",
        );
        for (t, transport) in ["udp", "tcp"].iter().enumerate() {
            for (code, count) in self.counts[t].iter().enumerate() {
                let n = count.load(std::sync::atomic::Ordering::Relaxed);
                let name = dns::rcode_name(code as u16);
                // The usual codes always, so a dashboard has its series from the start.
                if n > 0 || matches!(code, 0 | 1 | 3 | 5) {
                    let _ = writeln!(
                        out,
                        "tandem_dns_queries_total{{transport=\"{transport}\",rcode=\"{name}\"}} {n}"
                    );
                }
            }
        }
        out
    }
}

/// Loads the zone file.
pub fn load_zone(file: &Path) -> anyhow::Result<Zone> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read the zone file {}: {e}", file.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a zone file: {e}", file.display()))
}

/// Writes the zone file (atomically).
pub fn save_zone(file: &Path, zone: &Zone) -> anyhow::Result<()> {
    write_json(file, zone)
}

/// `path` written whole or not at all: to a temporary file, then renamed.
fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, serde_json::to_string_pretty(value)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The file of the zones added beside the deployment's zone file `zone_file`.
pub fn added_zones_file(zone_file: &Path) -> PathBuf {
    zone_file.with_file_name(ADDED_ZONES_FILE)
}

/// Loads the zones added (none when the file is not there).
pub fn load_added_zones(file: &Path) -> anyhow::Result<AddedZones> {
    match std::fs::read_to_string(file) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{} is not a file of added zones: {e}", file.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AddedZones::default()),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", file.display())),
    }
}

/// Writes the zones added (atomically).
pub fn save_added_zones(file: &Path, added: &AddedZones) -> anyhow::Result<()> {
    write_json(file, added)
}

/// Every zone a DNS server whose deployment zone is in `zone_file` serves.
pub fn load_zones(zone_file: &Path) -> anyhow::Result<Zones> {
    let zone = load_zone(zone_file)?;
    let added_file = added_zones_file(zone_file);
    let added = load_added_zones(&added_file)?;
    Zones::new(zone, added).map_err(|e| anyhow::anyhow!("{}: {e}", added_file.display()))
}

/// Where the DNS server listens: DNS itself (UDP and TCP), and its management API.
#[derive(Debug, Clone, Copy)]
pub struct Listen {
    pub dns: SocketAddr,
    pub api: SocketAddr,
}

/// Serves the zone in `file` on `listen.dns` (UDP, and TCP within [`TcpLimits::DEFAULT`]
/// on `clock`'s time) and the DnsServer cmdlets on `listen.api` (over TLS with `tls`, as
/// every listener that takes the admin token) — with the deployment's CA signing renewals
/// there when `authority` is given — until `stop` completes; every task it started ends
/// with it.
pub async fn serve(
    file: PathBuf,
    Listen { dns, api }: Listen,
    tls: Arc<rustls::ServerConfig>,
    authority: Option<pki::Authority>,
    token: String,
    clock: clock::Clock,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = Arc::new(DnsState::open(file, dns, token)?);
    let udp = Arc::new(
        tokio::net::UdpSocket::bind(dns)
            .await
            .map_err(|e| anyhow::anyhow!("binding DNS on UDP {dns}: {e}"))?,
    );
    let tcp = tokio::net::TcpListener::bind(dns)
        .await
        .map_err(|e| anyhow::anyhow!("binding DNS on TCP {dns}: {e}"))?;
    let http = tokio::net::TcpListener::bind(api)
        .await
        .map_err(|e| anyhow::anyhow!("binding the DNS management API on {api}: {e}"))?;
    // The listeners' tasks: dropped (aborted) when the server stops.
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(serve_udp(udp, state.clone(), clock));
    tasks.spawn(serve_tcp(tcp, state.clone(), TcpLimits::DEFAULT, clock));
    let mut app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/api/v1/invoke", post(invoke))
        .route("/metrics", get(metrics))
        .with_state(state.clone());
    if let Some(authority) = authority {
        let ca = Arc::new(ca::Ca {
            authority,
            token: state.token.clone(),
        });
        app = app.merge(
            Router::new()
                .route(pki::SIGN_PATH, post(ca::sign))
                .with_state(ca),
        );
    }
    let app = app
        .fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "no such route; the DNS server takes POST /api/v1/invoke",
            )
        })
        .method_not_allowed_fallback(api::method_not_allowed);
    tracing::info!(%dns, %api, "DNS server started");
    let stopped = tokio_util::sync::CancellationToken::new();
    let cancel = stopped.clone();
    tasks.spawn(async move {
        stop.await;
        cancel.cancel();
    });
    listener::serve_http(http, Some(tls), app, listener::Limits::DEFAULT, stopped).await;
    tasks.shutdown().await;
    tracing::info!("DNS server stopped");
    Ok(())
}

/// Serves DNS over UDP: each datagram answered from the catalog, or — a name of a
/// forwarder's zone — forwarded in a task of its own (holding one of the forwarding slots,
/// or answered SERVFAIL at once when none is free), so a silent master holds up no other
/// query.
async fn serve_udp(udp: Arc<tokio::net::UdpSocket>, state: Arc<DnsState>, clock: clock::Clock) {
    let mut buf = vec![0u8; MAX_QUERY];
    // The forwarded queries' tasks, ended with this one.
    let mut forwards = tokio::task::JoinSet::new();
    loop {
        while forwards.try_join_next().is_some() {}
        let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
            continue;
        };
        let query = &buf[..n];
        let served = state.served();
        let answer = match served.masters_for(query) {
            None => served.answerer.answer(query, peer, false).await,
            Some(masters) => match state.forwarding.slot() {
                None => state.forwarding.busy(query, false),
                Some(slot) => {
                    let (udp, state, query) = (udp.clone(), state.clone(), query.to_vec());
                    forwards.spawn(async move {
                        let _slot = slot;
                        let answer = state
                            .forwarding
                            .forward(&query, &masters, state.own, false, &clock)
                            .await;
                        if let Some(answer) = answer {
                            state.queries.count(false, &answer);
                            let _ = udp.send_to(&answer, peer).await;
                        }
                    });
                    continue;
                }
            },
        };
        if let Some(answer) = answer {
            state.queries.count(false, &answer);
            let _ = udp.send_to(&answer, peer).await;
        }
    }
}

/// How the DNS server bounds its TCP clients, so that clients that hold connections open
/// and send nothing cannot keep others out (256 idle connections once filled it).
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// Clients at once, in all.
    pub total: usize,
    /// Clients at once from one address.
    pub per_source: usize,
    /// How long a client may take to send a whole query (its two length bytes and the
    /// message), counted from the connection or the last answer: a client that sends
    /// nothing or part of a query for this long is dropped.
    pub query: Duration,
    /// How long one connection may stay open, however busy.
    pub lifetime: Duration,
}

impl TcpLimits {
    pub const DEFAULT: TcpLimits = TcpLimits {
        total: 256,
        per_source: 16,
        query: Duration::from_secs(3),
        lifetime: Duration::from_secs(30),
    };
}

/// Serves DNS over TCP (RFC 1035 section 4.2.2: a two-byte length, then the message;
/// several queries on one connection) within `limits`, on `clock`'s time. A connection over
/// either cap is closed at once: the client retries or uses UDP.
async fn serve_tcp(
    tcp: tokio::net::TcpListener,
    state: Arc<DnsState>,
    limits: TcpLimits,
    clock: clock::Clock,
) {
    let admission = listener::Admission::new(limits.total, limits.per_source);
    // The clients' tasks, ended with this one.
    let mut clients = tokio::task::JoinSet::new();
    loop {
        while clients.try_join_next().is_some() {}
        let (mut stream, peer) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                // Out of descriptors, say: wait rather than spin.
                clock.sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(admitted) = admission.admit(peer.ip()) else {
            tracing::debug!(%peer, "a DNS TCP client over the connection caps, closed");
            continue;
        };
        let state = state.clone();
        clients.spawn(async move {
            let _admitted = admitted;
            let closes_at = clock.deadline(limits.lifetime);
            loop {
                let query = async {
                    let mut len = [0u8; 2];
                    stream.read_exact(&mut len).await.ok()?;
                    let n = u16::from_be_bytes(len) as usize;
                    if n == 0 || n > MAX_QUERY {
                        return None;
                    }
                    let mut msg = vec![0u8; n];
                    stream.read_exact(&mut msg).await.ok()?;
                    Some(msg)
                };
                let by = clock.deadline(limits.query).min(closes_at);
                let Ok(Some(msg)) = tokio::time::timeout_at(by, query).await else {
                    return;
                };
                let served = state.served();
                let answer = match served.masters_for(&msg) {
                    None => served.answerer.answer(&msg, peer, true).await,
                    Some(masters) => match state.forwarding.slot() {
                        None => state.forwarding.busy(&msg, true),
                        Some(_slot) => {
                            let forwarded = state
                                .forwarding
                                .forward(&msg, &masters, state.own, true, &clock);
                            tokio::time::timeout_at(closes_at, forwarded)
                                .await
                                .ok()
                                .flatten()
                        }
                    },
                };
                let Some(answer) = answer else {
                    return;
                };
                state.queries.count(true, &answer);
                let mut out = (answer.len() as u16).to_be_bytes().to_vec();
                out.extend_from_slice(&answer);
                match tokio::time::timeout_at(closes_at, stream.write_all(&out)).await {
                    Ok(Ok(())) => {}
                    _ => return,
                }
            }
        });
    }
}

impl DnsState {
    /// The server whose deployment zone is in `file`, answering DNS at `own`.
    fn open(file: PathBuf, own: SocketAddr, token: String) -> anyhow::Result<DnsState> {
        let zones = load_zones(&file)?;
        let served = Served::of(&zones).map_err(|e| {
            anyhow::anyhow!(
                "the zone files in {} hold a record that cannot be served: {e}",
                file.parent().unwrap_or(Path::new(".")).display()
            )
        })?;
        Ok(DnsState {
            zones: RwLock::new(zones),
            served: RwLock::new(Arc::new(served)),
            added_file: added_zones_file(&file),
            file,
            own,
            token,
            queries: Queries::default(),
            forwarding: forward::Forwarding::new(forward::Limits::DEFAULT),
        })
    }

    /// The zones as served now.
    fn served(&self) -> Arc<Served> {
        self.served
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// `GET /metrics`: the queries answered, for the deployment's token.
async fn metrics(
    State(state): State<Arc<DnsState>>,
    headers: axum::http::HeaderMap,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    api::check_token(&headers, &state.token)?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.queries.exposition() + &state.forwarding.exposition(),
    ))
}

async fn invoke(
    State(state): State<Arc<DnsState>>,
    headers: axum::http::HeaderMap,
    body: Result<Json<InvokeRequest>, JsonRejection>,
) -> Result<Json<InvokeResponse>, ApiError> {
    api::check_token(&headers, &state.token)?;
    let Json(request) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let inv = api::bind::bind_one(&request)?;
    if inv.cmdlet.changes_state && inv.switch("WhatIf") {
        return Ok(Json(InvokeResponse::text(format!(
            "What if: {} would change the DNS server's zones. Nothing was changed.",
            inv.canonical_line()
        ))));
    }
    let output = run(&state, &inv).map_err(|e| ApiError::new(StatusCode::CONFLICT, e))?;
    Ok(Json(InvokeResponse::of(output)))
}

fn number(inv: &Invocation, name: &str, default: u16) -> Result<u16, String> {
    match inv.get(name) {
        None => Ok(default),
        Some(BoundValue::Int(i)) => {
            u16::try_from(*i).map_err(|_| format!("-{name} {i} is out of range (0 to 65535)"))
        }
        Some(other) => other
            .to_text()
            .parse()
            .map_err(|_| format!("-{name} must be a number from 0 to 65535")),
    }
}

fn ttl(inv: &Invocation) -> u32 {
    match inv.get("TimeToLive") {
        Some(BoundValue::TimeSpan(d)) => d.as_secs().min(u32::MAX as u64) as u32,
        _ => dns::TTL,
    }
}

/// Runs one DnsServer cmdlet against the server's zones.
fn run(state: &DnsState, inv: &Invocation) -> Result<Output, String> {
    let name = inv.cmdlet.name;
    let mut live = state
        .zones
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Changes are made on a copy, saved, then served: a change that could not be saved is
    // neither served nor lost on a restart.
    let mut zones = live.clone();
    let err = |e: dns::ZoneError| e.to_string();
    let output = match name {
        "Get-DnsServerZone" => {
            let rows = match inv.text("Name") {
                None => zone_rows(&zones, None),
                Some(wanted) => {
                    let wanted = dns::zones::zone_name(&wanted).map_err(err)?;
                    let rows = zone_rows(&zones, Some(&wanted));
                    if rows.is_empty() {
                        return Err(err(dns::ZoneError::NoSuchZone(wanted)));
                    }
                    rows
                }
            };
            return Ok(Output::Records(rows));
        }
        "Add-DnsServerPrimaryZone" => {
            let zone = zones
                .add_primary(&inv.text("Name").unwrap_or_default())
                .map_err(err)?;
            Output::Records(vec![primary_row(zone)])
        }
        "Add-DnsServerConditionalForwarderZone" => {
            let masters: Vec<String> = match inv.get("MasterServers") {
                Some(BoundValue::Array(items)) => items.iter().map(BoundValue::to_text).collect(),
                Some(other) => other.to_text().split(',').map(str::to_string).collect(),
                None => Vec::new(),
            };
            let forwarder = zones
                .add_forwarder(&inv.text("Name").unwrap_or_default(), &masters, state.own)
                .map_err(err)?;
            Output::Records(vec![forwarder_row(forwarder)])
        }
        "Remove-DnsServerZone" => {
            let removed = zones
                .remove(&inv.text("Name").unwrap_or_default())
                .map_err(err)?;
            Output::Text(match removed {
                dns::RemovedZone::Primary(z) => format!(
                    "removed the primary zone {} and its {} record(s)",
                    z.origin,
                    z.records.len()
                ),
                dns::RemovedZone::Forwarder(f) => format!(
                    "removed the conditional forwarder {} (to {})",
                    f.zone,
                    dns::zones::masters_text(&f.master_servers)
                ),
            })
        }
        _ => records(&mut zones, inv)?,
    };
    // Built before it is saved: a record that cannot be served is refused, not kept.
    let served = Served::of(&zones).map_err(|e| format!("{e}; nothing was changed"))?;
    let saved = if zones.deployment != live.deployment {
        save_zone(&state.file, &zones.deployment)
    } else if zones.added != live.added {
        save_added_zones(&state.added_file, &zones.added)
    } else {
        Ok(())
    };
    if let Err(e) = saved {
        return Err(format!(
            "the change could not be saved ({e}); it is not served either"
        ));
    }
    *live = zones;
    *state
        .served
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(served);
    Ok(output)
}

/// The record cmdlets, on the primary zone `-ZoneName` names.
fn records(zones: &mut Zones, inv: &Invocation) -> Result<Output, String> {
    let name = inv.cmdlet.name;
    let zone = zones
        .zone_mut(&inv.text("ZoneName").unwrap_or_default())
        .map_err(|e| e.to_string())?;
    let rtype = inv
        .text("RRType")
        .map(|t| {
            RecordType::parse(&t).ok_or(format!(
                "-RRType {t}: this server keeps {} records",
                KEPT.map(RecordType::name).join(", ")
            ))
        })
        .transpose()?;
    Ok(match name {
        "Get-DnsServerResourceRecord" => {
            let wanted = inv
                .text("Name")
                .map(|n| zone.absolute(&n))
                .transpose()
                .map_err(|e| e.to_string())?;
            let rows = zone
                .records
                .iter()
                .filter(|r| wanted.as_ref().is_none_or(|w| &r.name == w))
                .filter(|r| rtype.is_none_or(|t| t == RecordType::Any || r.data.record_type() == t))
                .map(|r| row(&zone.origin, r))
                .collect();
            Output::Records(rows)
        }
        "Add-DnsServerResourceRecordA" | "Add-DnsServerResourceRecord" => {
            let kind = if name == "Add-DnsServerResourceRecordA" {
                RecordType::A
            } else {
                [
                    ("Srv", RecordType::Srv),
                    ("A", RecordType::A),
                    ("AAAA", RecordType::Aaaa),
                    ("CName", RecordType::Cname),
                    ("Txt", RecordType::Txt),
                ]
                .into_iter()
                .find(|(switch, _)| inv.switch(switch))
                .map(|(_, kind)| kind)
                .ok_or("name the record type: -Srv, -A, -AAAA, -CName or -Txt")?
            };
            let record = Record {
                name: zone
                    .absolute(&inv.text("Name").unwrap_or_default())
                    .map_err(|e| e.to_string())?,
                ttl: ttl(inv),
                data: data_of(inv, zone, kind)?,
            };
            zone.add(record.clone()).map_err(|e| e.to_string())?;
            Output::Records(vec![row(&zone.origin, &record)])
        }
        "Set-DnsServerResourceRecord" => {
            // The records of that name and type (the one -RecordData names, when given) are
            // replaced by the new data.
            let n = zone
                .absolute(&inv.text("Name").unwrap_or_default())
                .map_err(|e| e.to_string())?;
            let t = rtype.ok_or("-RRType says which records change")?;
            let record = Record {
                name: n.clone(),
                ttl: ttl(inv),
                data: data_of(inv, zone, t)?,
            };
            zone.remove(&n, t, inv.text("RecordData").as_deref())
                .map_err(|e| e.to_string())?;
            zone.add(record.clone()).map_err(|e| e.to_string())?;
            Output::Records(vec![row(&zone.origin, &record)])
        }
        "Remove-DnsServerResourceRecord" => {
            let n = zone
                .absolute(&inv.text("Name").unwrap_or_default())
                .map_err(|e| e.to_string())?;
            let t = rtype.ok_or("-RRType says which records go")?;
            let data = inv.text("RecordData");
            let removed = zone
                .remove(&n, t, data.as_deref())
                .map_err(|e| e.to_string())?;
            Output::Text(format!("removed {removed} {} record(s) of {n}", t.name()))
        }
        other => return Err(format!("{other} is not a DnsServer cmdlet")),
    })
}

/// `Get-DnsServerZone`'s rows: every zone (the deployment's first, then the primary zones
/// added, then the forwarders), or the one named `only`.
fn zone_rows(zones: &Zones, only: Option<&str>) -> Vec<OutRecord> {
    let wanted = |name: &str| only.is_none_or(|o| o == name);
    zones
        .primaries()
        .filter(|z| wanted(&z.origin))
        .map(primary_row)
        .chain(
            zones
                .added
                .forwarders
                .iter()
                .filter(|f| wanted(&f.zone))
                .map(forwarder_row),
        )
        .collect()
}

/// A zone as `Get-DnsServerZone` shows it.
fn zone_row(name: &str, kind: &str, masters: Vec<Field>, records: usize) -> OutRecord {
    OutRecord::new()
        .with("ZoneName", name)
        .with("ZoneType", kind)
        .with("IsAutoCreated", false)
        .with("IsDsIntegrated", false)
        .with("IsReverseLookupZone", false)
        .with("MasterServers", Field::List(masters))
        .with("RecordCount", records as i64)
}

fn primary_row(zone: &Zone) -> OutRecord {
    zone_row(&zone.origin, "Primary", Vec::new(), zone.records.len())
}

fn forwarder_row(f: &Forwarder) -> OutRecord {
    let masters = f
        .master_servers
        .iter()
        .map(|m| Field::from(m.to_string()))
        .collect();
    zone_row(&f.zone, "Forwarder", masters, 0)
}

/// The record types the cmdlets add, change and remove.
const KEPT: [RecordType; 7] = [
    RecordType::A,
    RecordType::Aaaa,
    RecordType::Cname,
    RecordType::Ns,
    RecordType::Soa,
    RecordType::Srv,
    RecordType::Txt,
];

/// The longest TXT record taken (it goes out as strings of 255 bytes).
const MAX_TXT: usize = 4000;

/// A new record's data of type `kind`, from the cmdlet's parameters.
fn data_of(inv: &Invocation, zone: &Zone, kind: RecordType) -> Result<RecordData, String> {
    Ok(match kind {
        RecordType::A => RecordData::A {
            address: ipv4(inv)?,
        },
        RecordType::Aaaa => RecordData::Aaaa {
            address: inv
                .text("IPv6Address")
                .ok_or("an AAAA record needs -IPv6Address")?
                .parse()
                .map_err(|_| {
                    "-IPv6Address must be an IPv6 address, such as 2001:db8::7".to_string()
                })?,
        },
        RecordType::Cname => RecordData::Cname {
            target: dns::zone::normalized(
                &inv.text("HostNameAlias")
                    .ok_or("a CNAME record needs -HostNameAlias <target host>")?,
            )
            .map_err(|e| e.to_string())?,
        },
        RecordType::Txt => {
            let text = inv
                .text("DescriptiveText")
                .ok_or("a TXT record needs -DescriptiveText")?;
            if text.len() > MAX_TXT {
                return Err(format!(
                    "-DescriptiveText is {} bytes; a TXT record here holds at most {MAX_TXT}",
                    text.len()
                ));
            }
            RecordData::Txt { text }
        }
        RecordType::Srv => RecordData::Srv {
            priority: number(inv, "Priority", 0)?,
            weight: number(inv, "Weight", 0)?,
            port: match number(inv, "Port", 0)? {
                0 => return Err("an SRV record needs -Port (1 to 65535)".into()),
                p => p,
            },
            target: zone
                .check_in_zone(
                    &inv.text("DomainName")
                        .ok_or("an SRV record needs -DomainName <target host>")?,
                )
                .map_err(|e| {
                    format!("{e} (an SRV record's target must be an A record of the zone)")
                })?,
        },
        other => {
            return Err(format!(
                "{} records are not added or changed here; A, AAAA, CNAME, SRV and TXT are",
                other.name()
            ));
        }
    })
}

fn ipv4(inv: &Invocation) -> Result<Ipv4Addr, String> {
    match inv.get("IPv4Address") {
        Some(BoundValue::Ipv4(a)) => Ok(*a),
        Some(other) => other
            .to_text()
            .parse()
            .map_err(|_| "-IPv4Address must be an IPv4 address".to_string()),
        None => Err("-IPv4Address is needed".into()),
    }
}

/// A record as `Get-DnsServerResourceRecord` shows it.
fn row(origin: &str, r: &Record) -> OutRecord {
    let host = if r.name == origin {
        "@".to_string()
    } else {
        r.name
            .strip_suffix(&format!(".{origin}"))
            .unwrap_or(&r.name)
            .to_string()
    };
    OutRecord::new()
        .with("HostName", host)
        .with("RecordType", r.data.record_type().name())
        .with("Type", i64::from(r.data.record_type().code()))
        .with(
            "TimeToLive",
            format!(
                "{:02}:{:02}:{:02}",
                r.ttl / 3600,
                r.ttl / 60 % 60,
                r.ttl % 60
            ),
        )
        .with("RecordData", r.data.text())
        .with("Fqdn", Field::from(format!("{}.", r.name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DNS server's state on contoso's zone, in a folder of its own.
    fn server(dir: &Path) -> DnsState {
        let zone = Zone::from_topology(&topology_contoso(), Ipv4Addr::new(127, 0, 0, 153));
        save_zone(&dir.join("zone.json"), &zone).unwrap();
        DnsState::open(
            dir.join("zone.json"),
            "127.0.0.153:53".parse().unwrap(),
            "token".into(),
        )
        .unwrap()
    }

    fn topology_contoso() -> topology::Topology {
        topology::contoso()
    }

    /// Runs one cmdlet line.
    fn line(state: &DnsState, text: &str) -> Result<Output, String> {
        let bound = cmdlet::parse_and_bind(text).map_err(|e| format!("{e:?}"))?;
        run(state, &bound[0].invocation)
    }

    fn records(output: Output) -> Vec<OutRecord> {
        match output {
            Output::Records(rows) => rows,
            other => panic!("{other:?}"),
        }
    }

    fn field(row: &OutRecord, name: &str) -> String {
        row.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.display())
            .unwrap_or_default()
    }

    #[test]
    fn zones_and_forwarders_added_are_saved_served_and_kept_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let state = server(dir.path());
        line(
            &state,
            "Add-DnsServerPrimaryZone -Name partner.example -ZoneFile partner.dns",
        )
        .unwrap();
        line(
            &state,
            "Add-DnsServerResourceRecordA -ZoneName partner.example -Name xmpp -IPv4Address 127.0.9.1",
        )
        .unwrap();
        line(
            &state,
            "Add-DnsServerResourceRecord -Srv -ZoneName partner.example -Name _xmpp-server._tcp -DomainName xmpp.partner.example -Priority 0 -Weight 0 -Port 5269",
        )
        .unwrap();
        line(
            &state,
            "Add-DnsServerConditionalForwarderZone -Name other.example -MasterServers 127.0.9.153:5353,127.0.9.154",
        )
        .unwrap();
        let rows = records(line(&state, "Get-DnsServerZone").unwrap());
        let summary: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{} {} {} {}",
                    field(r, "ZoneName"),
                    field(r, "ZoneType"),
                    field(r, "RecordCount"),
                    field(r, "MasterServers")
                )
            })
            .collect();
        assert_eq!(summary[1], "partner.example Primary 4 {}", "{summary:?}");
        assert_eq!(
            summary[2], "other.example Forwarder 0 {127.0.9.153:5353, 127.0.9.154:53}",
            "{summary:?}"
        );
        assert!(summary[0].starts_with("contoso.com Primary"), "{summary:?}");
        // Served at once: the partner's name from the catalog, the other zone forwarded.
        let served = state.served();
        assert!(served.masters_for(&query("xmpp.partner.example")).is_none());
        assert_eq!(
            served.masters_for(&query("a.other.example")).unwrap(),
            vec![
                "127.0.9.153:5353".parse::<SocketAddr>().unwrap(),
                "127.0.9.154:53".parse().unwrap()
            ]
        );
        // Kept: a restarted server has every zone; the deployment's zone file is unchanged.
        let again =
            DnsState::open(dir.path().join("zone.json"), state.own, "token".into()).unwrap();
        assert_eq!(*again.zones.read().unwrap(), *state.zones.read().unwrap());
        assert_eq!(
            load_zone(&dir.path().join("zone.json")).unwrap(),
            state.zones.read().unwrap().deployment
        );
        let saved: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(ADDED_ZONES_FILE)).unwrap(),
        )
        .unwrap();
        assert_eq!(saved["forwarders"][0]["zone"], "other.example");
        assert_eq!(saved["primary"][0]["origin"], "partner.example");

        // Removed, both kinds; the deployment's zone stays, with a message that says why.
        line(&state, "Remove-DnsServerZone -Name partner.example -Force").unwrap();
        line(&state, "Remove-DnsServerZone other.example").unwrap();
        assert_eq!(records(line(&state, "Get-DnsServerZone").unwrap()).len(), 1);
        let own = line(&state, "Remove-DnsServerZone -Name contoso.com").unwrap_err();
        assert!(own.contains("deployment's own zone"), "{own}");
        assert!(
            state
                .served()
                .masters_for(&query("a.other.example"))
                .is_none()
        );
        let restarted =
            DnsState::open(dir.path().join("zone.json"), state.own, "token".into()).unwrap();
        assert!(restarted.zones.read().unwrap().added.primary.is_empty());
    }

    #[test]
    fn refusals_name_the_cause_and_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let state = server(dir.path());
        for (text, says) in [
            (
                "Add-DnsServerResourceRecordA -ZoneName partner.example -Name xmpp -IPv4Address 127.0.9.1",
                "no zone partner.example; Get-DnsServerZone lists its zones, Add-DnsServerPrimaryZone -Name partner.example adds one",
            ),
            (
                "Get-DnsServerZone -Name partner.example",
                "Get-DnsServerZone",
            ),
            (
                "Add-DnsServerConditionalForwarderZone -Name partner.example -MasterServers 127.0.0.153",
                "this DNS server itself",
            ),
            (
                "Add-DnsServerConditionalForwarderZone -Name partner.example -MasterServers 127.0.0.153:53",
                "this DNS server itself",
            ),
            (
                "Add-DnsServerPrimaryZone -Name contoso.com",
                "already on this DNS server",
            ),
            (
                "Remove-DnsServerZone -Name partner.example",
                "no zone partner.example",
            ),
        ] {
            let refused = line(&state, text).unwrap_err();
            assert!(refused.contains(says), "{text}: {refused}");
        }
        line(
            &state,
            "Add-DnsServerConditionalForwarderZone -Name partner.example -MasterServers 127.0.9.153",
        )
        .unwrap();
        let on_forwarder = line(
            &state,
            "Add-DnsServerResourceRecordA -ZoneName partner.example -Name xmpp -IPv4Address 127.0.9.1",
        )
        .unwrap_err();
        assert!(
            on_forwarder.contains("conditional forwarder"),
            "{on_forwarder}"
        );
        assert_eq!(records(line(&state, "Get-DnsServerZone").unwrap()).len(), 2);
    }

    /// A query for `name`'s A record.
    fn query(name: &str) -> Vec<u8> {
        let mut q = vec![0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q
    }
}
