//! The records of the deployment's zone as tandem keeps them: in the zone file (JSON), in
//! the DnsServer cmdlets' output and in `tandem dns query --json`. On the wire they are
//! hickory's ([`Record::to_wire`], [`Record::from_wire`]).

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_server::proto::rr::{self, Name, RData, rdata};

/// The record types the zone keeps, and `ANY` for queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum RecordType {
    A,
    Aaaa,
    Cname,
    Ns,
    Soa,
    Srv,
    Txt,
    /// `ANY` (255): every record of the name.
    Any,
}

impl RecordType {
    const ALL: [(RecordType, &'static str, rr::RecordType); 8] = [
        (RecordType::A, "A", rr::RecordType::A),
        (RecordType::Aaaa, "AAAA", rr::RecordType::AAAA),
        (RecordType::Cname, "CNAME", rr::RecordType::CNAME),
        (RecordType::Ns, "NS", rr::RecordType::NS),
        (RecordType::Soa, "SOA", rr::RecordType::SOA),
        (RecordType::Srv, "SRV", rr::RecordType::SRV),
        (RecordType::Txt, "TXT", rr::RecordType::TXT),
        (RecordType::Any, "ANY", rr::RecordType::ANY),
    ];

    /// The type's mnemonic (`A`, `SRV`, ...), as `Get-DnsServerResourceRecord` shows it.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|t| t.0 == self).map_or("?", |t| t.1)
    }

    /// The type's number on the wire (`Type` in the cmdlets' output).
    pub fn code(self) -> u16 {
        self.wire().into()
    }

    pub fn wire(self) -> rr::RecordType {
        Self::ALL
            .iter()
            .find(|t| t.0 == self)
            .map_or(rr::RecordType::ANY, |t| t.2)
    }

    pub fn parse(text: &str) -> Option<RecordType> {
        let text = text.to_ascii_uppercase();
        Self::ALL.iter().find(|t| t.1 == text).map(|t| t.0)
    }

    /// Every name, for errors ("A, AAAA, ... or ANY").
    pub fn names() -> String {
        Self::ALL.map(|t| t.1).join(", ")
    }
}

/// The data of one record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "UPPERCASE")]
pub enum RecordData {
    A {
        address: Ipv4Addr,
    },
    Aaaa {
        address: Ipv6Addr,
    },
    Cname {
        target: String,
    },
    Ns {
        host: String,
    },
    Soa {
        mname: String,
        rname: String,
        serial: u32,
    },
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Txt {
        text: String,
    },
}

/// The SOA's timers (refresh, retry, expire), and its minimum, which bounds how long a
/// resolver caches "no such name" (RFC 2308) — as short as the records' own TTL, so a name
/// added during a failover is seen within seconds.
const SOA_REFRESH: i32 = 3600;
const SOA_RETRY: i32 = 600;
const SOA_EXPIRE: i32 = 86400;
const SOA_MINIMUM: u32 = crate::TTL;

impl RecordData {
    pub fn record_type(&self) -> RecordType {
        match self {
            RecordData::A { .. } => RecordType::A,
            RecordData::Aaaa { .. } => RecordType::Aaaa,
            RecordData::Cname { .. } => RecordType::Cname,
            RecordData::Ns { .. } => RecordType::Ns,
            RecordData::Soa { .. } => RecordType::Soa,
            RecordData::Srv { .. } => RecordType::Srv,
            RecordData::Txt { .. } => RecordType::Txt,
        }
    }

    /// The data as dig prints it.
    pub fn text(&self) -> String {
        match self {
            RecordData::A { address } => address.to_string(),
            RecordData::Aaaa { address } => address.to_string(),
            RecordData::Cname { target } => format!("{target}."),
            RecordData::Ns { host } => format!("{host}."),
            RecordData::Soa {
                mname,
                rname,
                serial,
            } => format!(
                "{mname}. {rname}. {serial} {SOA_REFRESH} {SOA_RETRY} {SOA_EXPIRE} {SOA_MINIMUM}"
            ),
            RecordData::Srv {
                priority,
                weight,
                port,
                target,
            } => format!("{priority} {weight} {port} {target}."),
            RecordData::Txt { text } => format!("{text:?}"),
        }
    }
}

/// One resource record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// Lower case, without the final dot.
    pub name: String,
    pub ttl: u32,
    #[serde(flatten)]
    pub data: RecordData,
}

/// Why a record cannot go on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct WireError {
    pub name: String,
    pub reason: String,
}

pub(crate) fn fqdn(name: &str) -> Result<Name, WireError> {
    Name::from_ascii(format!("{}.", name.trim_end_matches('.'))).map_err(|e| WireError {
        name: name.to_string(),
        reason: e.to_string(),
    })
}

/// A name as tandem keeps it: lower case, no final dot.
fn plain(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

impl Record {
    /// The record as hickory sends it.
    pub fn to_wire(&self) -> Result<rr::Record, WireError> {
        let data = match &self.data {
            RecordData::A { address } => RData::A(rdata::A(*address)),
            RecordData::Aaaa { address } => RData::AAAA(rdata::AAAA(*address)),
            RecordData::Cname { target } => RData::CNAME(rdata::CNAME(fqdn(target)?)),
            RecordData::Ns { host } => RData::NS(rdata::NS(fqdn(host)?)),
            RecordData::Soa {
                mname,
                rname,
                serial,
            } => RData::SOA(rdata::SOA::new(
                fqdn(mname)?,
                fqdn(rname)?,
                *serial,
                SOA_REFRESH,
                SOA_RETRY,
                SOA_EXPIRE,
                SOA_MINIMUM,
            )),
            RecordData::Srv {
                priority,
                weight,
                port,
                target,
            } => RData::SRV(rdata::SRV::new(*priority, *weight, *port, fqdn(target)?)),
            RecordData::Txt { text } => RData::TXT(rdata::TXT::new(
                // A character-string holds at most 255 bytes (RFC 1035 §3.3).
                text.as_bytes()
                    .chunks(255)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect(),
            )),
        };
        Ok(rr::Record::from_rdata(fqdn(&self.name)?, self.ttl, data))
    }

    /// A record hickory received, when it is of a type tandem keeps.
    pub fn from_wire(record: &rr::Record) -> Option<Record> {
        let data = match &record.data {
            RData::A(a) => RecordData::A { address: a.0 },
            RData::AAAA(a) => RecordData::Aaaa { address: a.0 },
            RData::CNAME(c) => RecordData::Cname {
                target: plain(&c.0),
            },
            RData::NS(n) => RecordData::Ns { host: plain(&n.0) },
            RData::SOA(s) => RecordData::Soa {
                mname: plain(&s.mname),
                rname: plain(&s.rname),
                serial: s.serial,
            },
            RData::SRV(s) => RecordData::Srv {
                priority: s.priority,
                weight: s.weight,
                port: s.port,
                target: plain(&s.target),
            },
            RData::TXT(t) => RecordData::Txt {
                text: t
                    .txt_data
                    .iter()
                    .map(|part| String::from_utf8_lossy(part).into_owned())
                    .collect(),
            },
            _ => return None,
        };
        Some(Record {
            name: plain(&record.name),
            ttl: record.ttl,
            data,
        })
    }
}
