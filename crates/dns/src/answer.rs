//! Answering one DNS message with hickory-server's catalog: each zone of the server as an
//! authoritative in-memory zone, EDNS(0) (a client's buffer size up to 64 KiB; 512 bytes without EDNS,
//! the answer truncated with TC set when it does not fit, so the client asks again over
//! TCP), NXDOMAIN with the SOA, REFUSED outside the zone, the SRV targets' addresses as
//! additional records. The sockets are the server's (`dnsserver`): it bounds its clients
//! in ways hickory's own listeners do not (per-source TCP caps, a connection's lifetime).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hickory_server::net::NetError;
use hickory_server::net::runtime::{TokioRuntimeProvider, TokioTime};
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Header, MessageType, ResponseCode};
use hickory_server::proto::rr::{LowerName, RecordSet, RrKey};
use hickory_server::proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{
    AxfrPolicy, Catalog, MessageResponse, MessageResponseBuilder, Queries, ZoneType,
};

use crate::record::WireError;
use crate::zone::Zone;

/// The server's zones, ready to answer queries.
pub struct Answerer {
    catalog: Catalog,
}

impl std::fmt::Debug for Answerer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Answerer")
    }
}

impl Answerer {
    /// The zone as hickory serves it; refused when a record cannot go on the wire.
    pub fn new(zone: &Zone) -> Result<Answerer, WireError> {
        Answerer::of([zone])
    }

    /// Every zone of a server (the deployment's and the primary zones added beside it),
    /// each its own authority in the catalog, which answers a name from the longest zone
    /// that contains it.
    pub fn of<'z>(zones: impl IntoIterator<Item = &'z Zone>) -> Result<Answerer, WireError> {
        let mut catalog = Catalog::new();
        for zone in zones {
            let (origin, handler) = handler(zone)?;
            catalog.upsert(LowerName::new(&origin), vec![Arc::new(handler)]);
        }
        Ok(Answerer { catalog })
    }

    /// The answer to `bytes` from `src`: `None` for what deserves none (shorter than a
    /// header, or itself a response — answering those would make the server a reflector);
    /// FORMERR for a message that has a header but is not a well-formed query.
    pub async fn answer(&self, bytes: &[u8], src: SocketAddr, tcp: bool) -> Option<Vec<u8>> {
        let protocol = if tcp { Protocol::Tcp } else { Protocol::Udp };
        let header = Header::read(&mut BinDecoder::new(bytes)).ok()?;
        if header.metadata.message_type == MessageType::Response {
            return None;
        }
        let capture = Capture {
            protocol,
            bytes: Arc::default(),
        };
        match Request::from_bytes(bytes.to_vec(), src, protocol) {
            Ok(request) => {
                self.catalog
                    .handle_request::<_, TokioTime>(&request, capture.clone())
                    .await;
            }
            Err(error) => {
                tracing::debug!(%src, %error, "a DNS message that is not a well-formed query");
                let none = Queries::read(&mut BinDecoder::new(&[]), 0).ok()?;
                let response = MessageResponseBuilder::new(&none, None)
                    .error_msg(&header.metadata, ResponseCode::FormErr);
                capture.clone().send_response(response).await.ok()?;
            }
        }
        capture.bytes.lock().ok()?.take()
    }
}

/// One zone as an authoritative in-memory zone of hickory's.
fn handler(
    zone: &Zone,
) -> Result<
    (
        hickory_server::proto::rr::Name,
        InMemoryZoneHandler<TokioRuntimeProvider>,
    ),
    WireError,
> {
    let mut sets: BTreeMap<RrKey, RecordSet> = BTreeMap::new();
    for record in zone.records_with_serial() {
        let wire = record.to_wire()?;
        sets.entry(RrKey::new(LowerName::new(&wire.name), wire.record_type()))
            .or_insert_with(|| RecordSet::new(wire.name.clone(), wire.record_type(), 0))
            .insert(wire, 0);
    }
    let origin = crate::record::fqdn(&zone.origin)?;
    let handler = InMemoryZoneHandler::<TokioRuntimeProvider>::new(
        origin.clone(),
        sets,
        ZoneType::Primary,
        AxfrPolicy::Deny,
    )
    .map_err(|reason| WireError {
        name: zone.origin.clone(),
        reason,
    })?;
    Ok((origin, handler))
}

/// Keeps the encoded answer instead of sending it: the server's own sockets send it.
#[derive(Clone)]
struct Capture {
    protocol: Protocol,
    bytes: Arc<Mutex<Option<Vec<u8>>>>,
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a hickory_server::proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_server::proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_server::proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_server::proto::rr::Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        // As hickory's own handler: over UDP the client's EDNS buffer (at least 512), 512
        // without EDNS (RFC 1035 §4.2.1); what does not fit is left out with TC set.
        let limit = match self.protocol {
            Protocol::Udp => response.edns().map_or(512, |e| e.max_payload().max(512)),
            _ => u16::MAX,
        };
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(limit);
        let info = response.destructive_emit(&mut encoder)?;
        if let Ok(mut slot) = self.bytes.lock() {
            *slot = Some(bytes);
        }
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_primary_zone_is_answered_and_names_outside_them_are_refused() {
        use crate::record::{Record, RecordData, RecordType};
        use hickory_server::proto::op::{Message, Query};
        use hickory_server::proto::rr::Name;
        let deployment = Zone::from_topology(
            &topology::contoso(),
            std::net::Ipv4Addr::new(127, 0, 0, 153),
        );
        let mut zones = crate::Zones::new(deployment, crate::AddedZones::default()).unwrap();
        let partner = zones.add_primary("partner.example").unwrap().origin.clone();
        let zone = zones.zone_mut(&partner).unwrap();
        zone.add(Record {
            name: "xmpp.partner.example".into(),
            ttl: crate::TTL,
            data: RecordData::A {
                address: std::net::Ipv4Addr::new(127, 0, 9, 1),
            },
        })
        .unwrap();
        let answerer = Answerer::of(zones.primaries()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let ask = |name: &str, t: RecordType| {
            let mut query = Message::query();
            query.add_query(Query::query(Name::from_ascii(name).unwrap(), t.wire()));
            let bytes = query.to_vec().unwrap();
            let answer = rt
                .block_on(answerer.answer(&bytes, "127.0.0.1:5300".parse().unwrap(), false))
                .unwrap();
            Message::from_vec(&answer).unwrap()
        };
        let a = ask("xmpp.partner.example.", RecordType::A);
        assert_eq!(a.metadata.response_code, ResponseCode::NoError);
        assert_eq!(a.answers.len(), 1);
        let soa = ask("partner.example.", RecordType::Soa);
        assert_eq!(soa.answers.len(), 1, "{soa:?}");
        assert_eq!(
            ask("pool1.contoso.com.", RecordType::A).answers.len(),
            2,
            "the deployment's zone is still answered"
        );
        assert_eq!(
            ask("nothing.partner.example.", RecordType::A)
                .metadata
                .response_code,
            ResponseCode::NXDomain
        );
        assert_eq!(
            ask("example.org.", RecordType::A).metadata.response_code,
            ResponseCode::Refused
        );
    }

    proptest! {
        #[test]
        fn whatever_arrives_gets_an_answer_or_none_and_never_a_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            tcp in any::<bool>(),
        ) {
            let zone = Zone::from_topology(&topology::contoso(), std::net::Ipv4Addr::LOCALHOST);
            let answerer = Answerer::new(&zone).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let answer = rt.block_on(answerer.answer(&bytes, "127.0.0.1:5300".parse().unwrap(), tcp));
            if let Some(answer) = answer {
                // An answer is addressed to the query: its id, and marked a response.
                prop_assert_eq!(&answer[..2], &bytes[..2]);
                prop_assert!(answer[2] & 0x80 != 0);
            }
        }
    }
}
