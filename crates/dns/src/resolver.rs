//! Every lookup tandem makes in the deployment's DNS — a server finding a pool's
//! registrars, `tandem client` its registrar, `tandem partner` an Access Edge,
//! `Test-NetConnection`, `tandem dns query` — goes through this one hickory-resolver
//! configuration: the deployment's DNS server alone (no search list, no hosts file, the
//! names absolute), UDP first and TCP when an answer comes back truncated, random query
//! ids and ports, answers cached within their TTL (and "no such name" at most
//! [`crate::TTL`] seconds, so a record a runbook adds is seen within seconds), SRV targets
//! in RFC 2782 order ([`crate::srv`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{self, Name, RData};

use crate::record::{Record, RecordData, RecordType};
use crate::srv::{self, Target};

/// How long a lookup waits for an answer, and how many times it asks.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    pub timeout: Duration,
    pub attempts: usize,
}

impl Patience {
    /// A server looking up while it serves: one try of half a second, so that a frozen
    /// DNS server does not slow every request down (it falls back to the topology).
    pub const SERVER: Patience = Patience {
        timeout: Duration::from_millis(500),
        attempts: 1,
    };
    /// A tool an operator runs: three tries of half a second each.
    pub const TOOL: Patience = Patience {
        timeout: Duration::from_millis(500),
        attempts: 3,
    };
}

/// Why a lookup got no answer at all (a negative answer is an [`Answer`]).
#[derive(Debug, Clone, thiserror::Error)]
pub enum LookupError {
    #[error("{0} is not a valid DNS name")]
    BadName(String),
    #[error("no answer from the DNS server at {server} ({reason})")]
    NoAnswer { server: SocketAddr, reason: String },
}

/// What the server answered: its response code and its sections, as tandem keeps records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub rcode: u16,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
}

impl Answer {
    /// The response code's mnemonic, as dig prints it.
    pub fn status(&self) -> String {
        rcode_name(self.rcode)
    }

    /// The A records' addresses in the answer.
    pub fn addresses(&self) -> Vec<Ipv4Addr> {
        self.answers
            .iter()
            .filter_map(|r| match r.data {
                RecordData::A { address } => Some(address),
                _ => None,
            })
            .collect()
    }

    /// The SRV records of the answer, in the order to try them (RFC 2782).
    pub fn services(&self) -> Vec<Target> {
        srv::order(
            self.answers
                .iter()
                .filter_map(|r| match &r.data {
                    RecordData::Srv {
                        priority,
                        weight,
                        port,
                        target,
                    } => Some(Target {
                        priority: *priority,
                        weight: *weight,
                        port: *port,
                        target: target.clone(),
                    }),
                    _ => None,
                })
                .collect(),
        )
    }
}

/// A response code's mnemonic (RFC 1035, RFC 6895).
pub fn rcode_name(code: u16) -> String {
    match code {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        other => format!("RCODE{other}"),
    }
}

/// A resolver for the deployment's DNS server at one address. Cheap to clone (the cache is
/// shared); keep one for as long as the process looks names up, so the cache serves.
#[derive(Clone)]
pub struct Resolver {
    inner: hickory_resolver::TokioResolver,
    server: SocketAddr,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("server", &self.server)
            .finish()
    }
}

impl Resolver {
    /// Asks `server` (UDP and TCP on its port), from `source` when given (a lab on hosts of
    /// its own is reached from the address towards it).
    pub fn new(server: SocketAddr, source: Option<IpAddr>, patience: Patience) -> Resolver {
        let mut name_server = NameServerConfig::udp_and_tcp(server.ip());
        name_server.trust_negative_responses = true;
        for connection in &mut name_server.connections {
            connection.port = server.port();
            connection.bind_addr = source.map(|ip| SocketAddr::new(ip, 0));
        }
        let mut opts = ResolverOpts::default();
        opts.timeout = patience.timeout;
        opts.attempts = patience.attempts;
        opts.cache_size = 1024;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.negative_max_ttl = Some(Duration::from_secs(crate::TTL.into()));
        opts.recursion_desired = false;
        opts.try_tcp_on_error = true;
        let inner = hickory_resolver::Resolver::builder_with_config(
            ResolverConfig::from_parts(None, vec![], vec![name_server]),
            TokioRuntimeProvider::default(),
        )
        .with_options(opts)
        .build()
        .expect("a resolver with one name server and no system configuration builds");
        Resolver { inner, server }
    }

    /// The server asked.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Forgets every cached answer (for every clone): the next lookups ask the server.
    /// For an operator's explicit "apply what is configured now", which must not judge a
    /// record the operator just changed by its old answer.
    pub fn forget(&self) {
        self.inner.clear_cache();
    }

    /// Asks for the records of `name` of `rtype`; a negative answer (NXDOMAIN, REFUSED, no
    /// records of that type) is an answer, with its response code.
    pub async fn query(&self, name: &str, rtype: RecordType) -> Result<Answer, LookupError> {
        let fqdn = Name::from_ascii(format!("{}.", name.trim().trim_end_matches('.')))
            .map_err(|_| LookupError::BadName(name.to_string()))?;
        let keep = |records: &[rr::Record]| records.iter().filter_map(Record::from_wire).collect();
        match self.inner.lookup(fqdn, rtype.wire()).await {
            Ok(lookup) => Ok(Answer {
                rcode: ResponseCode::NoError.into(),
                answers: keep(lookup.answers()),
                authority: keep(lookup.authorities()),
                additional: keep(lookup.additionals()),
            }),
            Err(NetError::Dns(DnsError::NoRecordsFound(none))) => Ok(Answer {
                rcode: none.response_code.into(),
                authority: none
                    .soa
                    .iter()
                    .filter_map(|soa| {
                        Record::from_wire(&rr::Record::from_rdata(
                            soa.name.clone(),
                            soa.ttl,
                            RData::SOA(soa.data.clone()),
                        ))
                    })
                    .collect(),
                ..Answer::default()
            }),
            Err(NetError::Dns(DnsError::ResponseCode(code))) => Ok(Answer {
                rcode: code.into(),
                ..Answer::default()
            }),
            Err(e) => Err(LookupError::NoAnswer {
                server: self.server,
                reason: e.to_string(),
            }),
        }
    }

    /// The addresses (A records) of `name`; empty when it has none.
    pub async fn addresses(&self, name: &str) -> Result<Vec<Ipv4Addr>, LookupError> {
        Ok(self.query(name, RecordType::A).await?.addresses())
    }

    /// The targets of the SRV records `name`, in the order to try them.
    pub async fn services(&self, name: &str) -> Result<Vec<Target>, LookupError> {
        Ok(self.query(name, RecordType::Srv).await?.services())
    }
}
