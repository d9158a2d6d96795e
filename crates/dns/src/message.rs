//! DNS messages (RFC 1035 §4): the query a client sends, the answer the lab's server
//! builds. Parsing is bounded and never panics: a query is at most [`MAX_MESSAGE`] bytes,
//! names at most 255 bytes, compression pointers may only point backwards.

use std::net::Ipv4Addr;

/// The largest message read or written (UDP without EDNS).
pub const MAX_MESSAGE: usize = 512;

/// Record types tandem serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum RecordType {
    A,
    Ns,
    Soa,
    Srv,
    /// A type this server holds no records of (answered with no data).
    Other(u16),
    /// `ANY` (255): every record of the name.
    Any,
}

impl RecordType {
    pub fn code(self) -> u16 {
        match self {
            RecordType::A => 1,
            RecordType::Ns => 2,
            RecordType::Soa => 6,
            RecordType::Srv => 33,
            RecordType::Any => 255,
            RecordType::Other(c) => c,
        }
    }

    pub fn from_code(code: u16) -> RecordType {
        match code {
            1 => RecordType::A,
            2 => RecordType::Ns,
            6 => RecordType::Soa,
            33 => RecordType::Srv,
            255 => RecordType::Any,
            c => RecordType::Other(c),
        }
    }

    /// The type's mnemonic (`A`, `SRV`, ...), as `Get-DnsServerResourceRecord` shows it.
    pub fn name(self) -> String {
        match self {
            RecordType::A => "A".into(),
            RecordType::Ns => "NS".into(),
            RecordType::Soa => "SOA".into(),
            RecordType::Srv => "SRV".into(),
            RecordType::Any => "ANY".into(),
            RecordType::Other(c) => format!("TYPE{c}"),
        }
    }

    pub fn parse(text: &str) -> Option<RecordType> {
        match text.to_ascii_uppercase().as_str() {
            "A" => Some(RecordType::A),
            "NS" => Some(RecordType::Ns),
            "SOA" => Some(RecordType::Soa),
            "SRV" => Some(RecordType::Srv),
            "ANY" => Some(RecordType::Any),
            _ => None,
        }
    }
}

/// Response codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError = 0,
    FormErr = 1,
    ServFail = 2,
    NxDomain = 3,
    NotImp = 4,
    Refused = 5,
}

/// The data of one record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "UPPERCASE")]
pub enum RecordData {
    A {
        address: Ipv4Addr,
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
}

impl RecordData {
    pub fn record_type(&self) -> RecordType {
        match self {
            RecordData::A { .. } => RecordType::A,
            RecordData::Ns { .. } => RecordType::Ns,
            RecordData::Soa { .. } => RecordType::Soa,
            RecordData::Srv { .. } => RecordType::Srv,
        }
    }

    /// The data as dig prints it.
    pub fn text(&self) -> String {
        match self {
            RecordData::A { address } => address.to_string(),
            RecordData::Ns { host } => format!("{host}."),
            RecordData::Soa {
                mname,
                rname,
                serial,
            } => format!("{mname}. {rname}. {serial} 3600 600 86400 60"),
            RecordData::Srv {
                priority,
                weight,
                port,
                target,
            } => format!("{priority} {weight} {port} {target}."),
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

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    /// The question section as it arrived, echoed back as is (resolvers that randomise
    /// the case of names check it).
    pub question: Vec<u8>,
    pub recursion_desired: bool,
    /// Lower case, without the final dot.
    pub name: String,
    pub qtype: RecordType,
    pub qclass: u16,
}

/// Why a message is not a query this server can answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("shorter than a DNS header")]
    TooShort,
    #[error("longer than {MAX_MESSAGE} bytes")]
    TooLong,
    #[error("not a query")]
    NotAQuery,
    #[error("an operation other than a standard query")]
    NotImplemented,
    #[error("{0} questions; exactly one is answered")]
    QuestionCount(u16),
    #[error("bad name: {0}")]
    BadName(&'static str),
    #[error("truncated question")]
    Truncated,
}

impl ParseError {
    /// The id of the message, when the header was there: a FORMERR can be addressed.
    pub fn id_of(bytes: &[u8]) -> Option<u16> {
        (bytes.len() >= 2).then(|| u16::from_be_bytes([bytes[0], bytes[1]]))
    }
}

/// Reads a name at `pos`; returns it and the position after it (after the first
/// pointer, when compressed).
fn read_name(bytes: &[u8], mut pos: usize) -> Result<(String, usize), ParseError> {
    let mut labels: Vec<String> = Vec::new();
    let mut total = 0usize;
    let mut end: Option<usize> = None;
    let mut jumps = 0;
    loop {
        let len = *bytes.get(pos).ok_or(ParseError::Truncated)? as usize;
        if len & 0xC0 == 0xC0 {
            let low = *bytes.get(pos + 1).ok_or(ParseError::Truncated)? as usize;
            let target = ((len & 0x3F) << 8) | low;
            if target >= pos {
                return Err(ParseError::BadName(
                    "a compression pointer that does not point back",
                ));
            }
            jumps += 1;
            if jumps > 64 {
                return Err(ParseError::BadName("too many compression pointers"));
            }
            end.get_or_insert(pos + 2);
            pos = target;
            continue;
        }
        if len & 0xC0 != 0 {
            return Err(ParseError::BadName("an unknown label type"));
        }
        if len == 0 {
            let after = end.unwrap_or(pos + 1);
            return Ok((labels.join("."), after));
        }
        let label = bytes
            .get(pos + 1..pos + 1 + len)
            .ok_or(ParseError::Truncated)?;
        total += len + 1;
        if total > 255 {
            return Err(ParseError::BadName("longer than 255 bytes"));
        }
        if !label.iter().all(|b| b.is_ascii_graphic()) {
            return Err(ParseError::BadName(
                "a label with bytes that are not printable ASCII",
            ));
        }
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        pos += 1 + len;
    }
}

/// Parses a query with exactly one question.
pub fn parse_query(bytes: &[u8]) -> Result<Query, ParseError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(ParseError::TooLong);
    }
    if bytes.len() < 12 {
        return Err(ParseError::TooShort);
    }
    let id = u16::from_be_bytes([bytes[0], bytes[1]]);
    let flags = u16::from_be_bytes([bytes[2], bytes[3]]);
    if flags & 0x8000 != 0 {
        return Err(ParseError::NotAQuery);
    }
    if (flags >> 11) & 0xF != 0 {
        return Err(ParseError::NotImplemented);
    }
    let qdcount = u16::from_be_bytes([bytes[4], bytes[5]]);
    if qdcount != 1 {
        return Err(ParseError::QuestionCount(qdcount));
    }
    let (name, pos) = read_name(bytes, 12)?;
    let rest = bytes.get(pos..pos + 4).ok_or(ParseError::Truncated)?;
    Ok(Query {
        id,
        question: bytes[12..pos + 4].to_vec(),
        recursion_desired: flags & 0x0100 != 0,
        name,
        qtype: RecordType::from_code(u16::from_be_bytes([rest[0], rest[1]])),
        qclass: u16::from_be_bytes([rest[2], rest[3]]),
    })
}

fn write_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let bytes = label.as_bytes();
        let n = bytes.len().min(63);
        out.push(n as u8);
        out.extend_from_slice(&bytes[..n]);
    }
    out.push(0);
}

fn write_record(out: &mut Vec<u8>, r: &Record) {
    write_name(out, &r.name);
    out.extend_from_slice(&r.data.record_type().code().to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes()); // IN
    out.extend_from_slice(&r.ttl.to_be_bytes());
    let mut data = Vec::new();
    match &r.data {
        RecordData::A { address } => data.extend_from_slice(&address.octets()),
        RecordData::Ns { host } => write_name(&mut data, host),
        RecordData::Soa {
            mname,
            rname,
            serial,
        } => {
            write_name(&mut data, mname);
            write_name(&mut data, rname);
            for v in [*serial, 3600, 600, 86400, 60] {
                data.extend_from_slice(&v.to_be_bytes());
            }
        }
        RecordData::Srv {
            priority,
            weight,
            port,
            target,
        } => {
            for v in [*priority, *weight, *port] {
                data.extend_from_slice(&v.to_be_bytes());
            }
            write_name(&mut data, target);
        }
    }
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(&data);
}

/// An authoritative answer to `query`: the answer records, the authority records (the
/// SOA with no data or NXDOMAIN) and the additional ones (A records of SRV targets).
/// Records that would not fit in `limit` bytes ([`MAX_MESSAGE`] over UDP, 65535 over
/// TCP) are left out, and TC is set when an answer record was.
pub fn build_response(
    query: &Query,
    rcode: Rcode,
    answers: &[Record],
    authority: &[Record],
    additional: &[Record],
    limit: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_MESSAGE);
    out.extend_from_slice(&query.id.to_be_bytes());
    // QR, AA, RD copied.
    let mut flags: u16 = 0x8000 | 0x0400 | rcode as u16;
    if query.recursion_desired {
        flags |= 0x0100;
    }
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&[0; 6]);
    if query.question.is_empty() {
        write_name(&mut out, &query.name);
        out.extend_from_slice(&query.qtype.code().to_be_bytes());
        out.extend_from_slice(&query.qclass.to_be_bytes());
    } else {
        out.extend_from_slice(&query.question);
    }
    let mut counts = [0u16; 3];
    let mut truncated = false;
    for (i, section) in [answers, authority, additional].iter().enumerate() {
        for r in section.iter() {
            let mut one = Vec::new();
            write_record(&mut one, r);
            if out.len() + one.len() > limit {
                truncated |= i == 0;
                break;
            }
            out.extend_from_slice(&one);
            counts[i] += 1;
        }
    }
    out[6..8].copy_from_slice(&counts[0].to_be_bytes());
    out[8..10].copy_from_slice(&counts[1].to_be_bytes());
    out[10..12].copy_from_slice(&counts[2].to_be_bytes());
    if truncated {
        out[2] |= 0x02;
    }
    out
}

/// A bare error answer (FORMERR, NOTIMP) for a message whose question could not be read.
pub fn error_response(id: u16, rcode: Rcode) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&(0x8000u16 | rcode as u16).to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    out
}

/// A query message (what `tandem dns query` and the clients send).
pub fn build_query(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&0x0100u16.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&[0; 6]);
    write_name(&mut out, name);
    out.extend_from_slice(&qtype.code().to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out
}

/// A parsed answer: the response code and the records of every section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub id: u16,
    pub rcode: u8,
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
}

impl Answer {
    /// The IPv4 addresses among the answers, in their order.
    pub fn addresses(&self) -> Vec<std::net::Ipv4Addr> {
        self.answers
            .iter()
            .filter_map(|r| match r.data {
                RecordData::A { address } => Some(address),
                _ => None,
            })
            .collect()
    }

    /// The SRV answers as (port, target): the lowest priority first and, within one, the
    /// highest weight first (RFC 2782's order, without its random draw).
    pub fn srv_targets(&self) -> Vec<(u16, String)> {
        let mut srvs: Vec<(u16, u16, u16, String)> = self
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RecordData::Srv {
                    priority,
                    weight,
                    port,
                    target,
                } => Some((*priority, u16::MAX - *weight, *port, target.clone())),
                _ => None,
            })
            .collect();
        srvs.sort();
        srvs.into_iter()
            .map(|(_, _, port, target)| (port, target))
            .collect()
    }
}

/// Parses a response (the client side). Records of types tandem does not serve are skipped.
pub fn parse_response(bytes: &[u8]) -> Result<Answer, ParseError> {
    if bytes.len() < 12 {
        return Err(ParseError::TooShort);
    }
    let u16_at = |p: usize| -> Result<u16, ParseError> {
        let b = bytes.get(p..p + 2).ok_or(ParseError::Truncated)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    };
    let u32_at = |p: usize| -> Result<u32, ParseError> {
        let b = bytes.get(p..p + 4).ok_or(ParseError::Truncated)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let id = u16_at(0)?;
    let flags = u16_at(2)?;
    let counts = [u16_at(4)?, u16_at(6)?, u16_at(8)?, u16_at(10)?];
    let mut pos = 12;
    for _ in 0..counts[0] {
        let (_, after) = read_name(bytes, pos)?;
        pos = after + 4;
    }
    let mut sections: [Vec<Record>; 3] = Default::default();
    for (i, section) in sections.iter_mut().enumerate() {
        for _ in 0..counts[i + 1] {
            let (name, after) = read_name(bytes, pos)?;
            let rtype = u16_at(after)?;
            let ttl = u32_at(after + 4)?;
            let len = u16_at(after + 8)? as usize;
            let start = after + 10;
            let rdata = bytes.get(start..start + len).ok_or(ParseError::Truncated)?;
            let data = match RecordType::from_code(rtype) {
                RecordType::A if len == 4 => Some(RecordData::A {
                    address: Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]),
                }),
                RecordType::Ns => Some(RecordData::Ns {
                    host: read_name(bytes, start)?.0,
                }),
                RecordType::Soa => {
                    let (mname, p) = read_name(bytes, start)?;
                    let (rname, p) = read_name(bytes, p)?;
                    Some(RecordData::Soa {
                        mname,
                        rname,
                        serial: u32_at(p)?,
                    })
                }
                RecordType::Srv if len >= 7 => Some(RecordData::Srv {
                    priority: u16_at(start)?,
                    weight: u16_at(start + 2)?,
                    port: u16_at(start + 4)?,
                    target: read_name(bytes, start + 6)?.0,
                }),
                _ => None,
            };
            if let Some(data) = data {
                section.push(Record { name, ttl, data });
            }
            pos = start + len;
        }
    }
    let [answers, authority, additional] = sections;
    Ok(Answer {
        id,
        rcode: (flags & 0xF) as u8,
        authoritative: flags & 0x0400 != 0,
        answers,
        authority,
        additional,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srv_targets_come_by_priority_then_weight_and_addresses_keep_their_order() {
        let srv = |priority, weight, port, target: &str| Record {
            name: "_sip._tcp.contoso.com".into(),
            ttl: 5,
            data: RecordData::Srv {
                priority,
                weight,
                port,
                target: target.into(),
            },
        };
        let a = |address: [u8; 4]| Record {
            name: "pool1.contoso.com".into(),
            ttl: 5,
            data: RecordData::A {
                address: address.into(),
            },
        };
        let answer = Answer {
            id: 1,
            rcode: 0,
            authoritative: true,
            answers: vec![
                srv(20, 0, 5061, "pool2.contoso.com"),
                srv(10, 5, 5062, "light.contoso.com"),
                a([127, 0, 0, 2]),
                srv(10, 50, 5063, "heavy.contoso.com"),
                a([127, 0, 0, 1]),
            ],
            authority: vec![],
            additional: vec![],
        };
        assert_eq!(
            answer.srv_targets(),
            [
                (5063, "heavy.contoso.com".to_string()),
                (5062, "light.contoso.com".to_string()),
                (5061, "pool2.contoso.com".to_string()),
            ]
        );
        assert_eq!(
            answer.addresses(),
            [
                [127, 0, 0, 2].into(),
                std::net::Ipv4Addr::from([127, 0, 0, 1])
            ]
        );
    }

    #[test]
    fn a_query_round_trips_through_an_answer() {
        let q = parse_query(&build_query(
            7,
            "_sipfederationtls._tcp.Contoso.com",
            RecordType::Srv,
        ))
        .unwrap();
        assert_eq!(q.name, "_sipfederationtls._tcp.contoso.com");
        assert_eq!(q.qtype, RecordType::Srv);
        let srv = Record {
            name: q.name.clone(),
            ttl: 60,
            data: RecordData::Srv {
                priority: 0,
                weight: 0,
                port: 5061,
                target: "sip.contoso.com".into(),
            },
        };
        let a = Record {
            name: "sip.contoso.com".into(),
            ttl: 60,
            data: RecordData::A {
                address: Ipv4Addr::new(127, 0, 10, 1),
            },
        };
        let bytes = build_response(
            &q,
            Rcode::NoError,
            std::slice::from_ref(&srv),
            &[],
            std::slice::from_ref(&a),
            MAX_MESSAGE,
        );
        let answer = parse_response(&bytes).unwrap();
        assert_eq!(answer.id, 7);
        assert!(answer.authoritative);
        assert_eq!(answer.answers, vec![srv]);
        assert_eq!(answer.additional, vec![a]);
    }

    #[test]
    fn the_question_is_echoed_as_it_came_and_other_opcodes_are_not_implemented() {
        let bytes = build_query(3, "Pool1.CONTOSO.com", RecordType::A);
        let q = parse_query(&bytes).unwrap();
        let answer = build_response(&q, Rcode::NoError, &[], &[], &[], MAX_MESSAGE);
        assert_eq!(&answer[12..], &bytes[12..]);
        let mut notify = bytes.clone();
        notify[2] |= 4 << 3;
        assert_eq!(parse_query(&notify), Err(ParseError::NotImplemented));
    }

    #[test]
    fn compression_pointers_must_point_back() {
        let mut bytes = build_query(1, "a.b", RecordType::A);
        // Replace the name with a pointer to itself.
        bytes.truncate(12);
        bytes.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
        assert!(matches!(parse_query(&bytes), Err(ParseError::BadName(_))));
    }
}
