//! The deployment's DNS on hickory: the zone filled from the topology and changed by the
//! DnsServer cmdlets (`zone`, its records in `record`), the zones and conditional
//! forwarders added beside it and which a name belongs to (`zones`), answered by
//! hickory-server's catalog (`answer`, for the lab's DNS server's own sockets, `dnsserver`;
//! what forwarding does to messages in `forward`), and the one
//! resolver configuration every lookup in tandem goes through (`resolver`, SRV targets in
//! RFC 2782 order by `srv`).

pub mod answer;
pub mod forward;
pub mod record;
pub mod resolver;
pub mod srv;
pub mod zone;
pub mod zones;

pub use answer::Answerer;
pub use record::{Record, RecordData, RecordType};
pub use resolver::{Answer, LookupError, Patience, Resolver, rcode_name};
pub use zone::{TTL, Zone, ZoneError};
pub use zones::{AddedZones, Forwarder, RemovedZone, Route, Zones};
