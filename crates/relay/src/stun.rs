//! STUN messages (RFC 8489) as TURN uses them: the 20-byte header, attributes padded to
//! four bytes, XOR-mapped addresses, MESSAGE-INTEGRITY (HMAC-SHA1 with the long-term key)
//! and FINGERPRINT (CRC-32). Parsing is bounded and never panics: a message is at most
//! [`MAX_MESSAGE`] bytes, its attributes must fill it exactly, and nothing after
//! MESSAGE-INTEGRITY but FINGERPRINT is taken. Channel data (RFC 8656 §12.4) is here too:
//! it shares the relay's ports with STUN and is told apart by its first two bits.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The magic cookie every STUN message carries.
pub const MAGIC: u32 = 0x2112_A442;
/// The largest message taken or sent (a UDP datagram on any path the lab has).
pub const MAX_MESSAGE: usize = 4096;

/// Methods.
pub const BINDING: u16 = 0x001;
pub const ALLOCATE: u16 = 0x003;
pub const REFRESH: u16 = 0x004;
pub const SEND: u16 = 0x006;
pub const DATA: u16 = 0x007;
pub const CREATE_PERMISSION: u16 = 0x008;
pub const CHANNEL_BIND: u16 = 0x009;

/// Attributes.
pub const USERNAME: u16 = 0x0006;
pub const MESSAGE_INTEGRITY: u16 = 0x0008;
pub const ERROR_CODE: u16 = 0x0009;
pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
pub const CHANNEL_NUMBER: u16 = 0x000C;
pub const LIFETIME: u16 = 0x000D;
pub const XOR_PEER_ADDRESS: u16 = 0x0012;
pub const DATA_ATTR: u16 = 0x0013;
pub const REALM: u16 = 0x0014;
pub const NONCE: u16 = 0x0015;
pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
pub const EVEN_PORT: u16 = 0x0018;
pub const REQUESTED_TRANSPORT: u16 = 0x0019;
pub const DONT_FRAGMENT: u16 = 0x001A;
pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
pub const RESERVATION_TOKEN: u16 = 0x0022;
pub const SOFTWARE: u16 = 0x8022;
pub const FINGERPRINT: u16 = 0x8028;

/// The four classes of message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

/// One STUN message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub class: Class,
    pub method: u16,
    pub transaction: [u8; 12],
    /// In the order they came (or go), without MESSAGE-INTEGRITY and FINGERPRINT, which
    /// [`Message::encode`] adds and [`parse`] checks.
    pub attributes: Vec<(u16, Vec<u8>)>,
}

/// Why bytes are not a STUN message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("shorter than a STUN header")]
    Short,
    #[error("not a STUN message (no magic cookie, or the first bits are not 00)")]
    NotStun,
    #[error("the length does not match the bytes")]
    Length,
    #[error("an attribute runs past the message")]
    Attribute,
    #[error("the FINGERPRINT does not match")]
    Fingerprint,
    #[error("an attribute after MESSAGE-INTEGRITY")]
    AfterIntegrity,
}

/// A parsed message, with what checking its integrity needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub message: Message,
    /// The MESSAGE-INTEGRITY's HMAC, and the bytes it covers (the header's length set to
    /// end after it), when there is one.
    integrity: Option<([u8; 20], Vec<u8>)>,
}

impl Parsed {
    /// Whether the message carries MESSAGE-INTEGRITY.
    pub fn has_integrity(&self) -> bool {
        self.integrity.is_some()
    }

    /// Whether its MESSAGE-INTEGRITY is the HMAC of `key` (constant time).
    pub fn integrity_matches(&self, key: &[u8]) -> bool {
        self.integrity.as_ref().is_some_and(|(mac, covered)| {
            let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
            aws_lc_rs::hmac::verify(&k, covered, mac).is_ok()
        })
    }
}

fn message_type(class: Class, method: u16) -> u16 {
    let c = match class {
        Class::Request => 0,
        Class::Indication => 1,
        Class::Success => 2,
        Class::Error => 3,
    };
    (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | ((c & 1) << 4)
        | ((c & 2) << 7)
}

fn split_type(t: u16) -> (Class, u16) {
    let method = (t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80);
    let class = match ((t >> 4) & 1) | ((t >> 7) & 2) {
        0 => Class::Request,
        1 => Class::Indication,
        2 => Class::Success,
        _ => Class::Error,
    };
    (class, method)
}

/// Whether `bytes` start like a STUN message (first two bits 00 and the magic cookie).
pub fn is_stun(bytes: &[u8]) -> bool {
    bytes.len() >= 20 && bytes[0] & 0xC0 == 0 && bytes[4..8] == MAGIC.to_be_bytes()
}

/// Parses one message; its FINGERPRINT, if any, is checked here.
pub fn parse(bytes: &[u8]) -> Result<Parsed, ParseError> {
    if bytes.len() < 20 {
        return Err(ParseError::Short);
    }
    if !is_stun(bytes) {
        return Err(ParseError::NotStun);
    }
    let length = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    if length % 4 != 0 || 20 + length != bytes.len() || bytes.len() > MAX_MESSAGE {
        return Err(ParseError::Length);
    }
    let (class, method) = split_type(u16::from_be_bytes([bytes[0], bytes[1]]));
    let mut transaction = [0u8; 12];
    transaction.copy_from_slice(&bytes[8..20]);
    let mut attributes = Vec::new();
    let mut integrity = None;
    let mut at = 20;
    while at < bytes.len() {
        let head = bytes.get(at..at + 4).ok_or(ParseError::Attribute)?;
        let kind = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let value = bytes
            .get(at + 4..at + 4 + len)
            .ok_or(ParseError::Attribute)?;
        let next = at + 4 + len.div_ceil(4) * 4;
        if next > bytes.len() {
            return Err(ParseError::Attribute);
        }
        match kind {
            FINGERPRINT => {
                if len != 4 || next != bytes.len() {
                    return Err(ParseError::Fingerprint);
                }
                let expected = crc32fast::hash(&bytes[..at]) ^ 0x5354_554E;
                if value != expected.to_be_bytes() {
                    return Err(ParseError::Fingerprint);
                }
            }
            _ if integrity.is_some() => return Err(ParseError::AfterIntegrity),
            MESSAGE_INTEGRITY => {
                let mac: [u8; 20] = value.try_into().map_err(|_| ParseError::Attribute)?;
                let mut covered = bytes[..at].to_vec();
                let through = (next - 20) as u16;
                covered[2..4].copy_from_slice(&through.to_be_bytes());
                integrity = Some((mac, covered));
            }
            _ => attributes.push((kind, value.to_vec())),
        }
        at = next;
    }
    Ok(Parsed {
        message: Message {
            class,
            method,
            transaction,
            attributes,
        },
        integrity,
    })
}

impl Message {
    /// A new message of `class` for `method` in the transaction `transaction`.
    pub fn new(class: Class, method: u16, transaction: [u8; 12]) -> Message {
        Message {
            class,
            method,
            transaction,
            attributes: Vec::new(),
        }
    }

    /// The first attribute of `kind`.
    pub fn get(&self, kind: u16) -> Option<&[u8]> {
        self.attributes
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| v.as_slice())
    }

    /// The first attribute of `kind` as text.
    pub fn text(&self, kind: u16) -> Option<&str> {
        self.get(kind).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The first attribute of `kind` as an XOR-encoded address.
    pub fn xor_address(&self, kind: u16) -> Option<SocketAddr> {
        xor_decode(self.get(kind)?, &self.transaction)
    }

    pub fn with(mut self, kind: u16, value: impl Into<Vec<u8>>) -> Message {
        self.attributes.push((kind, value.into()));
        self
    }

    pub fn with_xor_address(self, kind: u16, address: SocketAddr) -> Message {
        let value = xor_encode(address, &self.transaction);
        self.with(kind, value)
    }

    /// An ERROR-CODE attribute: `code` (300 to 699) and its reason.
    pub fn with_error(self, code: u16, reason: &str) -> Message {
        let mut value = vec![0, 0, (code / 100) as u8, (code % 100) as u8];
        value.extend_from_slice(reason.as_bytes());
        self.with(ERROR_CODE, value)
    }

    /// The ERROR-CODE's number, if any.
    pub fn error_code(&self) -> Option<u16> {
        let v = self.get(ERROR_CODE)?;
        (v.len() >= 4).then(|| u16::from(v[2] & 7) * 100 + u16::from(v[3]))
    }

    /// The bytes of the message, with MESSAGE-INTEGRITY under `key` when given, then
    /// FINGERPRINT when asked.
    pub fn encode(&self, key: Option<&[u8]>, fingerprint: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&message_type(self.class, self.method).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.extend_from_slice(&self.transaction);
        for (kind, value) in &self.attributes {
            push_attribute(&mut out, *kind, value);
        }
        let set_length = |out: &mut Vec<u8>, extra: usize| {
            let len = (out.len() - 20 + extra) as u16;
            out[2..4].copy_from_slice(&len.to_be_bytes());
        };
        if let Some(key) = key {
            set_length(&mut out, 24);
            let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
            let mac = aws_lc_rs::hmac::sign(&k, &out);
            push_attribute(&mut out, MESSAGE_INTEGRITY, mac.as_ref());
        }
        if fingerprint {
            set_length(&mut out, 8);
            let crc = crc32fast::hash(&out) ^ 0x5354_554E;
            push_attribute(&mut out, FINGERPRINT, &crc.to_be_bytes());
        }
        set_length(&mut out, 0);
        out
    }
}

fn push_attribute(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + (4 - value.len() % 4) % 4, 0);
}

/// An address XOR-encoded with the magic cookie (and the transaction, for IPv6).
pub fn xor_encode(address: SocketAddr, transaction: &[u8; 12]) -> Vec<u8> {
    let port = address.port() ^ (MAGIC >> 16) as u16;
    let mut out = vec![0];
    match address.ip() {
        IpAddr::V4(ip) => {
            out.push(1);
            out.extend_from_slice(&port.to_be_bytes());
            out.extend_from_slice(&(u32::from(ip) ^ MAGIC).to_be_bytes());
        }
        IpAddr::V6(ip) => {
            out.push(2);
            out.extend_from_slice(&port.to_be_bytes());
            let mut mask = MAGIC.to_be_bytes().to_vec();
            mask.extend_from_slice(transaction);
            out.extend(ip.octets().iter().zip(mask).map(|(a, m)| a ^ m));
        }
    }
    out
}

/// The address an XOR-encoded attribute holds.
pub fn xor_decode(value: &[u8], transaction: &[u8; 12]) -> Option<SocketAddr> {
    let port = u16::from_be_bytes([*value.get(2)?, *value.get(3)?]) ^ (MAGIC >> 16) as u16;
    match (value.get(1)?, value.len()) {
        (1, 8) => {
            let raw = u32::from_be_bytes(value[4..8].try_into().ok()?) ^ MAGIC;
            Some(SocketAddr::from((Ipv4Addr::from(raw), port)))
        }
        (2, 20) => {
            let mut mask = MAGIC.to_be_bytes().to_vec();
            mask.extend_from_slice(transaction);
            let octets: [u8; 16] = value[4..20]
                .iter()
                .zip(mask)
                .map(|(a, m)| a ^ m)
                .collect::<Vec<u8>>()
                .try_into()
                .ok()?;
            Some(SocketAddr::from((Ipv6Addr::from(octets), port)))
        }
        _ => None,
    }
}

/// Channel numbers a client may bind: RFC 5766's range (RFC 8656 §12 narrows it to
/// 0x4FFF, but clients written to 5766, coturn's among them, use the rest of it).
pub const CHANNELS: std::ops::RangeInclusive<u16> = 0x4000..=0x7FFF;

/// Channel data: a channel number and the application data.
pub fn channel_data(channel: u16, data: &[u8], padded: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + data.len() + 3);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
    if padded {
        out.resize(out.len() + (4 - data.len() % 4) % 4, 0);
    }
    out
}

/// A channel-data message's channel and data (the data must be all there; padding after
/// it is allowed).
pub fn parse_channel_data(bytes: &[u8]) -> Option<(u16, &[u8])> {
    let channel = u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]);
    let len = usize::from(u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?]));
    CHANNELS
        .contains(&channel)
        .then(|| bytes.get(4..4 + len))
        .flatten()
        .map(|data| (channel, data))
}

/// How long the next frame on a stream (TCP) is, from its first four bytes: a STUN
/// message's header length plus 20, or a channel-data message padded to four bytes.
pub fn frame_length(head: [u8; 4]) -> usize {
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    if head[0] & 0xC0 == 0x40 {
        4 + len.div_ceil(4) * 4
    } else {
        20 + len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_message_round_trips_with_integrity_and_fingerprint() {
        let m = Message::new(Class::Request, ALLOCATE, [7; 12])
            .with(USERNAME, "1700000000:alice")
            .with(REQUESTED_TRANSPORT, [17, 0, 0, 0])
            .with_xor_address(XOR_PEER_ADDRESS, "127.0.4.9:50000".parse().unwrap());
        let bytes = m.encode(Some(b"key"), true);
        let parsed = parse(&bytes).unwrap();
        assert_eq!(parsed.message, m);
        assert!(parsed.integrity_matches(b"key"));
        assert!(!parsed.integrity_matches(b"other"));
        assert_eq!(
            parsed.message.xor_address(XOR_PEER_ADDRESS),
            Some("127.0.4.9:50000".parse().unwrap())
        );
        // One bit changed after the integrity: the fingerprint catches it.
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 9] ^= 1;
        assert_eq!(parse(&bad), Err(ParseError::Fingerprint));
    }

    #[test]
    fn the_rfc_5769_request_is_read_and_its_integrity_checked() {
        // RFC 5769 §2.1: a request with the short-term password "VOkJxbRl1RmTxUk/WvJxBt".
        let hex = "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74002400046e0001ff80290008932ff9b151263b36000600096576746a3a68367659202020000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf";
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let parsed = parse(&bytes).unwrap();
        assert_eq!(parsed.message.method, BINDING);
        assert_eq!(parsed.message.text(USERNAME), Some("evtj:h6vY"));
        assert!(parsed.integrity_matches(b"VOkJxbRl1RmTxUk/WvJxBt"));
    }

    #[test]
    fn channel_data_is_framed_and_read_back() {
        let bytes = channel_data(0x4001, b"hello", true);
        assert_eq!(bytes.len(), 12);
        assert_eq!(frame_length(bytes[..4].try_into().unwrap()), 12);
        assert_eq!(parse_channel_data(&bytes), Some((0x4001, &b"hello"[..])));
        assert_eq!(parse_channel_data(&channel_data(0x3FFF, b"x", false)), None);
        assert_eq!(parse_channel_data(&channel_data(0x8000, b"x", false)), None);
    }

    proptest! {
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&bytes);
            let _ = parse_channel_data(&bytes);
        }

        #[test]
        fn a_stun_header_with_any_attributes_never_panics(
            body in proptest::collection::vec(any::<u8>(), 0..200),
            len in any::<u16>(),
        ) {
            let mut bytes = vec![0, 1];
            bytes.extend_from_slice(&len.to_be_bytes());
            bytes.extend_from_slice(&MAGIC.to_be_bytes());
            bytes.extend_from_slice(&[1; 12]);
            bytes.extend_from_slice(&body);
            let _ = parse(&bytes);
        }
    }
}
