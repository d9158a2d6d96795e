//! The deployment's zone: the records the lab's DNS server answers with, filled from the
//! topology and changed by the DnsServer cmdlets. No I/O.

use std::net::Ipv4Addr;

use topology::{Role, Topology};

use crate::record::{Record, RecordData, RecordType};

/// How long answers may be cached: short, so that a changed record is seen within seconds.
pub const TTL: u32 = 5;

/// Why a change to the zone was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    #[error(
        "{name} is not in the zone {zone}: names are relative to the zone (\"xmpp\"), or end in .{zone}"
    )]
    OutOfZone { name: String, zone: String },
    #[error("{0} is not a valid DNS name")]
    BadName(String),
    #[error(
        "no {rtype} record {name} in the zone {zone}{detail}; Get-DnsServerResourceRecord -ZoneName {zone} lists them"
    )]
    NoSuchRecord {
        name: String,
        rtype: String,
        zone: String,
        detail: String,
    },
    #[error("the record already exists: {0}")]
    Exists(String),
    #[error(
        "this DNS server has no zone {0}; Get-DnsServerZone lists its zones, Add-DnsServerPrimaryZone -Name {0} adds one"
    )]
    NoSuchZone(String),
    #[error(
        "the zone {0} is already on this DNS server (Get-DnsServerZone shows it); remove it first with Remove-DnsServerZone -Name {0}"
    )]
    ZoneExists(String),
    #[error(
        "{0} is the deployment's own zone, built from its topology: it cannot be removed (its records can, with Remove-DnsServerResourceRecord -ZoneName {0})"
    )]
    OwnZone(String),
    #[error(
        "{zone} is a conditional forwarder zone (its names are asked of {masters}): it holds no records here; Remove-DnsServerZone -Name {zone} and Add-DnsServerPrimaryZone -Name {zone} make it a zone of this server"
    )]
    Forwarder { zone: String, masters: String },
    #[error("-MasterServers: {0}")]
    BadMaster(String),
}

/// The zone: its origin, serial and records.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Zone {
    pub origin: String,
    pub serial: u32,
    pub records: Vec<Record>,
}

impl Zone {
    /// A zone with only its SOA and NS records, both naming the DNS server `ns`.
    pub fn empty(origin: &str, ns: &str) -> Zone {
        Zone {
            origin: origin.to_string(),
            serial: 1,
            records: vec![
                Record {
                    name: origin.to_string(),
                    ttl: TTL,
                    data: RecordData::Soa {
                        mname: ns.to_string(),
                        rname: format!("hostmaster.{origin}"),
                        serial: 1,
                    },
                },
                Record {
                    name: origin.to_string(),
                    ttl: TTL,
                    data: RecordData::Ns {
                        host: ns.to_string(),
                    },
                },
            ],
        }
    }
}

fn a(name: &str, address: Ipv4Addr) -> Record {
    Record {
        name: name.to_ascii_lowercase(),
        ttl: TTL,
        data: RecordData::A { address },
    }
}

fn srv(name: &str, priority: u16, port: u16, target: &str) -> Record {
    Record {
        name: name.to_ascii_lowercase(),
        ttl: TTL,
        data: RecordData::Srv {
            priority,
            weight: 0,
            port,
            target: target.to_ascii_lowercase(),
        },
    }
}

impl Zone {
    /// The records a deployment publishes, from its topology: an A record for every server
    /// (its internal address) and pool (each of its servers), `sip.<zone>` for the Access
    /// Edge that has federation, `xmpp.<zone>` for the Edge on site 1's XMPP route,
    /// `<edge>-ext.<zone>` for every Edge server's external address, and the SRV records
    /// clients and partners look up: `_sipinternaltls._tcp` (each Front End pool, in
    /// topology order as priority), `_sipfederationtls._tcp` and `_xmpp-server._tcp`.
    /// `dns_address` is the server's own address (`dns.<zone>`, the NS).
    pub fn from_topology(topology: &Topology, dns_address: Ipv4Addr) -> Zone {
        let origin = topology.deployment.dns_zone.to_ascii_lowercase();
        let domain = topology.deployment.sip_domain.to_ascii_lowercase();
        let ns = format!("dns.{origin}");
        let mut records = Zone::empty(&origin, &ns).records;
        records.push(a(&ns, dns_address));
        for s in topology.servers() {
            records.push(a(&s.server.fqdn, s.server.address));
            if s.role == Role::Edge {
                let short = s.server.fqdn.split('.').next().unwrap_or_default();
                records.push(a(
                    &format!("{short}-ext.{origin}"),
                    s.server.external_address.unwrap_or(s.server.address),
                ));
            }
        }
        for p in &topology.front_end_pools {
            for s in &p.servers {
                records.push(a(&p.fqdn, s.address));
            }
        }
        for e in &topology.edge_pools {
            for s in &e.servers {
                records.push(a(&e.fqdn, s.address));
            }
        }
        if let Some(fed) = topology.federation_edge_pool() {
            for s in &fed.servers {
                records.push(a(
                    &format!("sip.{origin}"),
                    s.external_address.unwrap_or(s.address),
                ));
            }
            records.push(srv(
                &format!("_sipfederationtls._tcp.{domain}"),
                0,
                topology.ports.edge_federation_sip,
                &format!("sip.{origin}"),
            ));
        }
        let xmpp_edge = topology
            .sites
            .iter()
            .find_map(|s| s.xmpp_federation_route.clone())
            .and_then(|route| {
                let target = topology::route_target(&route).to_string();
                topology
                    .servers()
                    .find(|s| s.role == Role::Edge && s.server.fqdn.eq_ignore_ascii_case(&target))
                    .map(|s| s.server.external_address.unwrap_or(s.server.address))
            });
        if let Some(address) = xmpp_edge {
            records.push(a(&format!("xmpp.{origin}"), address));
            records.push(srv(
                &format!("_xmpp-server._tcp.{domain}"),
                0,
                topology.ports.xmpp_federation,
                &format!("xmpp.{origin}"),
            ));
        }
        for (i, p) in topology.front_end_pools.iter().enumerate() {
            records.push(srv(
                &format!("_sipinternaltls._tcp.{domain}"),
                (i as u16) * 10,
                topology.ports.sip_tls,
                &p.fqdn,
            ));
        }
        Zone {
            origin,
            serial: 1,
            records,
        }
    }

    /// Whether `name` (lower case, no final dot) is in the zone.
    pub fn contains(&self, name: &str) -> bool {
        name == self.origin || name.ends_with(&format!(".{}", self.origin))
    }

    /// A name as the cmdlets give it (relative to the zone, `@` for the zone itself, or
    /// absolute, with or without the final dot) made absolute and checked.
    pub fn absolute(&self, name: &str) -> Result<String, ZoneError> {
        let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty()
            || name.len() > 253
            || name.split('.').any(|l| {
                l.is_empty()
                    || l.len() > 63
                    || !l
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'@')
            })
        {
            return Err(ZoneError::BadName(name));
        }
        let full = if name == "@" {
            self.origin.clone()
        } else if self.contains(&name) {
            name
        } else if name.contains('@') {
            return Err(ZoneError::BadName(name));
        } else if name.contains('.')
            && !name
                .rsplit('.')
                .next()
                .is_some_and(|last| last.starts_with('_'))
        {
            // `xmpp.example.org` is another domain's name, not a name relative to this
            // zone (`_xmpp-server._tcp` is: its labels are service labels).
            return Err(ZoneError::OutOfZone {
                name,
                zone: self.origin.clone(),
            });
        } else {
            format!("{name}.{}", self.origin)
        };
        if !valid_name(&full) {
            return Err(ZoneError::BadName(full));
        }
        Ok(full)
    }

    /// Checks an absolute name (for names given absolute, which must end in the zone).
    pub fn check_in_zone(&self, name: &str) -> Result<String, ZoneError> {
        let name = normalized(name)?;
        if !self.contains(&name) {
            return Err(ZoneError::OutOfZone {
                name,
                zone: self.origin.clone(),
            });
        }
        Ok(name)
    }

    /// The records of `name` of `rtype` (every type for `Any`).
    pub fn lookup(&self, name: &str, rtype: RecordType) -> Vec<&Record> {
        self.records
            .iter()
            .filter(|r| {
                r.name == name && (rtype == RecordType::Any || r.data.record_type() == rtype)
            })
            .collect()
    }

    /// Adds a record; refused if the very same record exists.
    pub fn add(&mut self, record: Record) -> Result<(), ZoneError> {
        if self
            .records
            .iter()
            .any(|r| r.name == record.name && r.data == record.data)
        {
            return Err(ZoneError::Exists(format!(
                "{} {} {}",
                record.name,
                record.data.record_type().name(),
                record.data.text()
            )));
        }
        self.records.push(record);
        self.serial = self.serial.wrapping_add(1);
        Ok(())
    }

    /// Removes the records of `name` of `rtype` (those whose data is `data`, when given);
    /// returns how many.
    pub fn remove(
        &mut self,
        name: &str,
        rtype: RecordType,
        data: Option<&str>,
    ) -> Result<usize, ZoneError> {
        let before = self.records.len();
        self.records.retain(|r| {
            !(r.name == name
                && r.data.record_type() == rtype
                && data.is_none_or(|d| matches_data(&r.data, d)))
        });
        let removed = before - self.records.len();
        if removed == 0 {
            return Err(ZoneError::NoSuchRecord {
                name: name.into(),
                rtype: rtype.name().into(),
                zone: self.origin.clone(),
                detail: data.map_or(String::new(), |d| format!(" with data {d}")),
            });
        }
        self.serial = self.serial.wrapping_add(1);
        Ok(removed)
    }

    /// The records as they are served: the SOA's serial is the zone's.
    pub fn records_with_serial(&self) -> impl Iterator<Item = Record> + '_ {
        self.records.iter().cloned().map(|mut r| {
            if let RecordData::Soa { serial, .. } = &mut r.data {
                *serial = self.serial;
            }
            r
        })
    }
}

/// An absolute name as the zone keeps it (lower case, no final dot), checked.
pub fn normalized(name: &str) -> Result<String, ZoneError> {
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    if valid_name(&name) {
        Ok(name)
    } else {
        Err(ZoneError::BadName(name))
    }
}

/// Labels of 1 to 63 letters, digits, `-` or `_`; at most 253 characters in all.
fn valid_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Whether `text` names this record's data: the whole of it as dig prints it, or for an
/// SRV record its target alone (`-RecordData edgeserver1.contoso.com`).
fn matches_data(data: &RecordData, text: &str) -> bool {
    let text = text.trim().trim_end_matches('.').to_ascii_lowercase();
    data.text().trim_end_matches('.') == text
        || matches!(data, RecordData::Srv { target, .. } if *target == text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::Answerer;
    use hickory_server::proto::op::{Message, Query};
    use hickory_server::proto::rr::Name;

    /// What the zone answers to a query for `name` of type `t`, over UDP without EDNS.
    pub(crate) fn ask(zone: &Zone, name: &str, t: RecordType) -> crate::Answer {
        let mut query = Message::query();
        query.add_query(Query::query(Name::from_ascii(name).unwrap(), t.wire()));
        let bytes = query.to_vec().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let answer = rt
            .block_on(Answerer::new(zone).unwrap().answer(
                &bytes,
                "127.0.0.1:5300".parse().unwrap(),
                false,
            ))
            .unwrap();
        let m = Message::from_vec(&answer).unwrap();
        let keep = |rs: &[hickory_server::proto::rr::Record]| {
            rs.iter().filter_map(Record::from_wire).collect()
        };
        crate::Answer {
            rcode: m.metadata.response_code.into(),
            answers: keep(&m.answers),
            authority: keep(&m.authorities),
            additional: keep(&m.additionals),
        }
    }

    #[test]
    fn the_contoso_zone_has_what_clients_and_partners_look_up() {
        let t = topology::contoso();
        let zone = Zone::from_topology(&t, Ipv4Addr::new(127, 0, 0, 53));
        let fed = ask(&zone, "_sipfederationtls._tcp.contoso.com", RecordType::Srv);
        assert_eq!(fed.answers.len(), 1, "{fed:?}");
        assert!(
            matches!(&fed.answers[0].data, RecordData::Srv { port: 5061, target, .. } if target == "sip.contoso.com")
        );
        assert!(!fed.additional.is_empty());
        let xmpp = ask(&zone, "_xmpp-server._tcp.contoso.com", RecordType::Srv);
        assert!(matches!(
            &xmpp.answers[0].data,
            RecordData::Srv { port: 5269, .. }
        ));
        let internal = ask(&zone, "_sipinternaltls._tcp.contoso.com", RecordType::Srv);
        assert_eq!(internal.answers.len(), t.front_end_pools.len());
        let pool = ask(&zone, "pool1.contoso.com", RecordType::A);
        assert_eq!(pool.answers.len(), 2);
        let missing = ask(&zone, "nothing.contoso.com", RecordType::A);
        assert_eq!(missing.rcode, 3);
        assert_eq!(missing.authority.len(), 1);
        let outside = ask(&zone, "example.org", RecordType::A);
        assert_eq!(outside.rcode, 5);
        // A name with names below it exists, with no data.
        let parent = ask(&zone, "_tcp.contoso.com", RecordType::A);
        assert_eq!((parent.rcode, parent.answers.len()), (0, 0));
    }

    #[test]
    fn cmdlet_names_are_relative_to_the_zone_and_changes_are_checked() {
        let t = topology::contoso();
        let mut zone = Zone::from_topology(&t, Ipv4Addr::new(127, 0, 0, 53));
        assert_eq!(zone.absolute("xmpp").unwrap(), "xmpp.contoso.com");
        assert_eq!(
            zone.absolute("XMPP.contoso.com.").unwrap(),
            "xmpp.contoso.com"
        );
        assert_eq!(zone.absolute("@").unwrap(), "contoso.com");
        assert!(zone.absolute("bad..name").is_err());
        assert!(zone.check_in_zone("xmpp.example.org").is_err());
        assert!(matches!(
            zone.absolute("xmpp.example.org"),
            Err(ZoneError::OutOfZone { .. })
        ));
        assert_eq!(
            zone.absolute("_xmpp-server._tcp").unwrap(),
            "_xmpp-server._tcp.contoso.com"
        );
        let serial = zone.serial;
        let name = zone.absolute("xmpp").unwrap();
        assert_eq!(zone.remove(&name, RecordType::A, None).unwrap(), 1);
        assert!(zone.remove(&name, RecordType::A, None).is_err());
        zone.add(a(&name, Ipv4Addr::new(127, 0, 20, 1))).unwrap();
        assert!(zone.add(a(&name, Ipv4Addr::new(127, 0, 20, 1))).is_err());
        assert_eq!(zone.serial, serial + 2);
        let xmpp = ask(&zone, "xmpp.contoso.com", RecordType::A);
        assert!(
            matches!(xmpp.answers[0].data, RecordData::A { address } if address == Ipv4Addr::new(127, 0, 20, 1))
        );
    }
}
