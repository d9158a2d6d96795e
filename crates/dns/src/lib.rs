//! The deployment's DNS: the messages (`message`) and the zone filled from the topology
//! and changed by the DnsServer cmdlets (`zone`). No I/O: the lab's DNS server
//! (`server::dnsserver`) serves it on UDP and TCP.

pub mod message;
pub mod zone;

pub use message::{
    Answer, MAX_MESSAGE, ParseError, Query, Rcode, Record, RecordData, RecordType, build_query,
    build_response, error_response, parse_query, parse_response,
};
pub use zone::{TTL, Zone, ZoneError};
