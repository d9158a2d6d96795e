//! The lab's DNS server: the deployment's zone (`dns::Zone`) answered on UDP and TCP by
//! hickory-server's catalog (`dns::Answerer`: EDNS, truncation, NXDOMAIN and REFUSED), and
//! the Windows DnsServer cmdlets (`Get-/Add-/Set-/Remove-DnsServerResourceRecord*`) on a
//! management API of its own, as an operator changes the company's DNS during a failover.
//!
//! The zone is kept in a JSON file beside the lab; every change is written there (to a
//! temporary file, then renamed) before it is answered, so a restarted server serves what
//! was last changed. A query it cannot parse gets FORMERR (or nothing, when not even the
//! header is there); a name outside the zone gets REFUSED. Nothing stops the server. The
//! sockets are this crate's, not hickory's `Server`, because it bounds TCP clients per
//! source address and a connection's lifetime ([`TcpLimits`]), which hickory's does not.

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
use dns::{Answerer, Record, RecordData, RecordType, Zone};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use api::{ApiError, InvokeRequest, InvokeResponse};

mod ca;

/// The largest query read, over UDP or TCP (a query with EDNS options is a few hundred
/// bytes).
const MAX_QUERY: usize = 4096;

struct DnsState {
    zone: RwLock<Zone>,
    /// The zone as served: replaced, whole, after each change is saved.
    answerer: RwLock<Arc<Answerer>>,
    file: PathBuf,
    token: String,
    queries: Queries,
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
    let tmp = file.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(zone)?)?;
    std::fs::rename(&tmp, file)?;
    Ok(())
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
    let zone = load_zone(&file)?;
    let answerer = Answerer::new(&zone).map_err(|e| {
        anyhow::anyhow!(
            "the zone file {} holds a record that cannot be served: {e}",
            file.display()
        )
    })?;
    let state = Arc::new(DnsState {
        zone: RwLock::new(zone),
        answerer: RwLock::new(Arc::new(answerer)),
        file,
        token,
        queries: Queries::default(),
    });
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
    {
        let state = state.clone();
        tasks.spawn(async move {
            let mut buf = vec![0u8; MAX_QUERY];
            loop {
                let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                    continue;
                };
                if let Some(answer) = state.answerer().answer(&buf[..n], peer, false).await {
                    state.queries.count(false, &answer);
                    let _ = udp.send_to(&answer, peer).await;
                }
            }
        });
    }
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
                let Some(answer) = state.answerer().answer(&msg, peer, true).await else {
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
    /// The zone as served now.
    fn answerer(&self) -> Arc<Answerer> {
        self.answerer
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
        state.queries.exposition(),
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
            "What if: {} would change the zone. Nothing was changed.",
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

/// Runs one DnsServer cmdlet against the zone.
fn run(state: &DnsState, inv: &Invocation) -> Result<Output, String> {
    let name = inv.cmdlet.name;
    let mut live = state
        .zone
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Changes are made on a copy, saved, then served: a change that could not be saved is
    // neither served nor lost on a restart.
    let mut zone = live.clone();
    if let Some(z) = inv.text("ZoneName")
        && !z.trim_end_matches('.').eq_ignore_ascii_case(&zone.origin)
    {
        return Err(format!(
            "this DNS server holds the zone {} only, not {z}",
            zone.origin
        ));
    }
    let rtype = inv
        .text("RRType")
        .map(|t| {
            RecordType::parse(&t).ok_or(format!(
                "-RRType {t}: this server keeps {} records",
                KEPT.map(RecordType::name).join(", ")
            ))
        })
        .transpose()?;
    let output = match name {
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
            return Ok(Output::Records(rows));
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
                data: data_of(inv, &zone, kind)?,
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
                data: data_of(inv, &zone, t)?,
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
    };
    // Built before it is saved: a record that cannot be served is refused, not kept.
    let answerer = Answerer::new(&zone).map_err(|e| format!("{e}; nothing was changed"))?;
    if let Err(e) = save_zone(&state.file, &zone) {
        return Err(format!(
            "the change could not be saved ({e}); it is not served either"
        ));
    }
    *live = zone;
    *state
        .answerer
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(answerer);
    Ok(output)
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
