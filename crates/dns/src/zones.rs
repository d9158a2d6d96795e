//! Every zone the lab's DNS server holds: the deployment's own (built from its topology),
//! the primary zones an operator adds (`Add-DnsServerPrimaryZone`, a partner's domain in a
//! lab of two deployments) and the conditional forwarders
//! (`Add-DnsServerConditionalForwarderZone`: the names of a zone asked of other servers),
//! and which of them a name belongs to — the longest suffix, as the Windows DNS server
//! decides. No I/O: the server (`dnsserver`) keeps them in files and does the forwarding.

use std::net::{IpAddr, SocketAddr};

use crate::record::RecordData;
use crate::zone::{Zone, ZoneError, normalized};

/// The most master servers a forwarder names (each is tried in turn, so this bounds how
/// long a query of the zone may wait).
pub const MAX_MASTERS: usize = 8;

/// A conditional forwarder: the names of `zone` are asked of `master_servers`, in order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Forwarder {
    /// The zone, lower case, no final dot.
    pub zone: String,
    /// Where its queries go: address and port (53 unless the operator said otherwise).
    pub master_servers: Vec<SocketAddr>,
}

/// The zones an operator added, as the server keeps them beside the deployment's zone
/// file (see `dnsserver`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddedZones {
    /// Primary zones, with their records.
    #[serde(default)]
    pub primary: Vec<Zone>,
    /// Conditional forwarders.
    #[serde(default)]
    pub forwarders: Vec<Forwarder>,
}

/// What a name belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// A primary zone of this server (the catalog answers it).
    Primary(&'a str),
    /// A conditional forwarder's zone: the query goes to its masters.
    Forward(&'a Forwarder),
    /// No zone here: the catalog answers REFUSED.
    Outside,
}

/// Whether `name` is `zone` or below it (both lower case, no final dot).
fn in_zone(name: &str, zone: &str) -> bool {
    name == zone
        || (name.len() > zone.len()
            && name.ends_with(zone)
            && name.as_bytes()[name.len() - zone.len() - 1] == b'.')
}

/// Which zone of `primary` and `forwarders` `name` belongs to: the longest that contains
/// it, so a forwarder for `lab.partner.example` wins over a primary zone
/// `partner.example`, and a primary `partner.example` over a forwarder for `example`.
pub fn route<'a>(
    name: &str,
    primary: impl IntoIterator<Item = &'a str>,
    forwarders: &'a [Forwarder],
) -> Route<'a> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let mut best: (usize, Route<'a>) = (0, Route::Outside);
    for zone in primary {
        if in_zone(&name, zone) && (zone.len() + 1 > best.0) {
            best = (zone.len() + 1, Route::Primary(zone));
        }
    }
    for f in forwarders {
        if in_zone(&name, &f.zone) && (f.zone.len() + 1 > best.0) {
            best = (f.zone.len() + 1, Route::Forward(f));
        }
    }
    best.1
}

/// A master server as `-MasterServers` gives it: an address (`127.0.9.153`, `::1`), or an
/// address and port (`127.0.9.153:5353`, `[::1]:5353`, tandem's addition); port 53
/// otherwise.
pub fn parse_master(text: &str) -> Result<SocketAddr, ZoneError> {
    let text = text.trim();
    let address = match text.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => match text.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, 53),
            Err(_) => {
                return Err(ZoneError::BadMaster(format!(
                    "{text} is not an IP address (or address:port)"
                )));
            }
        },
    };
    let ip = address.ip();
    if ip.is_unspecified() || ip.is_multicast() || address.port() == 0 {
        return Err(ZoneError::BadMaster(format!(
            "{address} cannot be asked: give a DNS server's own address"
        )));
    }
    if let IpAddr::V4(v4) = ip
        && v4.is_broadcast()
    {
        return Err(ZoneError::BadMaster(format!(
            "{address} is a broadcast address"
        )));
    }
    Ok(address)
}

/// Whether a query sent to `master` would come back to the server listening at `own`.
pub fn is_own_address(master: SocketAddr, own: SocketAddr) -> bool {
    if master.port() != own.port() {
        return false;
    }
    let (m, o) = (master.ip().to_canonical(), own.ip().to_canonical());
    // A server listening on every address answers on each loopback address too.
    m == o || (o.is_unspecified() && m.is_loopback())
}

/// The deployment's zone and the zones added beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zones {
    /// The deployment's own zone, from its topology: never removed.
    pub deployment: Zone,
    pub added: AddedZones,
}

impl Zones {
    /// The zones of a server, checked: no zone twice.
    pub fn new(deployment: Zone, added: AddedZones) -> Result<Zones, ZoneError> {
        let mut zones = Zones {
            deployment,
            added: AddedZones::default(),
        };
        for z in added.primary {
            zones.check_new(&z.origin)?;
            zones.added.primary.push(z);
        }
        for f in added.forwarders {
            zones.check_new(&f.zone)?;
            zones.added.forwarders.push(f);
        }
        Ok(zones)
    }

    /// Every primary zone, the deployment's first.
    pub fn primaries(&self) -> impl Iterator<Item = &Zone> {
        std::iter::once(&self.deployment).chain(&self.added.primary)
    }

    /// The primary zone `name` (as an operator writes it), for the record cmdlets.
    pub fn zone_mut(&mut self, name: &str) -> Result<&mut Zone, ZoneError> {
        let name = zone_name(name)?;
        if let Some(f) = self.added.forwarders.iter().find(|f| f.zone == name) {
            return Err(ZoneError::Forwarder {
                zone: name,
                masters: masters_text(&f.master_servers),
            });
        }
        if self.deployment.origin == name {
            return Ok(&mut self.deployment);
        }
        self.added
            .primary
            .iter_mut()
            .find(|z| z.origin == name)
            .ok_or(ZoneError::NoSuchZone(name))
    }

    /// Refused when `name` is already a zone here.
    fn check_new(&self, name: &str) -> Result<(), ZoneError> {
        if self.primaries().any(|z| z.origin == name)
            || self.added.forwarders.iter().any(|f| f.zone == name)
        {
            return Err(ZoneError::ZoneExists(name.to_string()));
        }
        Ok(())
    }

    /// The name of this DNS server, as the deployment's zone names it (its NS record).
    fn server_name(&self) -> String {
        self.deployment
            .records
            .iter()
            .find_map(|r| match &r.data {
                RecordData::Ns { host } if r.name == self.deployment.origin => Some(host.clone()),
                _ => None,
            })
            .unwrap_or_else(|| format!("dns.{}", self.deployment.origin))
    }

    /// `Add-DnsServerPrimaryZone`: an empty zone, its SOA and NS naming this server, as
    /// the deployment's zone does.
    pub fn add_primary(&mut self, name: &str) -> Result<&Zone, ZoneError> {
        let origin = zone_name(name)?;
        self.check_new(&origin)?;
        let ns = self.server_name();
        self.added.primary.push(Zone::empty(&origin, &ns));
        Ok(self.added.primary.last().expect("just pushed"))
    }

    /// `Add-DnsServerConditionalForwarderZone`: the names of `name` asked of `masters`
    /// (as `-MasterServers` gives them); never of this server itself (`own`, where it
    /// answers DNS), which would send each query round until it timed out.
    pub fn add_forwarder(
        &mut self,
        name: &str,
        masters: &[String],
        own: SocketAddr,
    ) -> Result<&Forwarder, ZoneError> {
        let zone = zone_name(name)?;
        self.check_new(&zone)?;
        if masters.is_empty() {
            return Err(ZoneError::BadMaster(
                "give -MasterServers, the DNS servers that hold the zone".into(),
            ));
        }
        if masters.len() > MAX_MASTERS {
            return Err(ZoneError::BadMaster(format!(
                "{} master servers given; a forwarder here names at most {MAX_MASTERS}",
                masters.len()
            )));
        }
        let mut master_servers = Vec::new();
        for m in masters {
            let address = parse_master(m)?;
            if is_own_address(address, own) {
                return Err(ZoneError::BadMaster(format!(
                    "{address} is this DNS server itself: its queries would come back here; \
                     name the DNS server that holds {zone}"
                )));
            }
            if !master_servers.contains(&address) {
                master_servers.push(address);
            }
        }
        self.added.forwarders.push(Forwarder {
            zone,
            master_servers,
        });
        Ok(self.added.forwarders.last().expect("just pushed"))
    }

    /// `Remove-DnsServerZone`: a primary zone or a forwarder an operator added; the
    /// deployment's own zone stays.
    pub fn remove(&mut self, name: &str) -> Result<RemovedZone, ZoneError> {
        let name = zone_name(name)?;
        if self.deployment.origin == name {
            return Err(ZoneError::OwnZone(name));
        }
        if let Some(i) = self.added.primary.iter().position(|z| z.origin == name) {
            return Ok(RemovedZone::Primary(self.added.primary.remove(i)));
        }
        if let Some(i) = self.added.forwarders.iter().position(|f| f.zone == name) {
            return Ok(RemovedZone::Forwarder(self.added.forwarders.remove(i)));
        }
        Err(ZoneError::NoSuchZone(name))
    }

    /// Which zone `name` belongs to.
    pub fn route(&self, name: &str) -> Route<'_> {
        route(
            name,
            self.primaries().map(|z| z.origin.as_str()),
            &self.added.forwarders,
        )
    }
}

/// What `Remove-DnsServerZone` removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemovedZone {
    Primary(Zone),
    Forwarder(Forwarder),
}

/// A zone's name as an operator writes it, checked and in the one spelling.
pub fn zone_name(name: &str) -> Result<String, ZoneError> {
    let name = normalized(name)?;
    if name.starts_with('_') || name.contains("._") {
        // `_tcp.contoso.com` is a name inside a zone, not a zone.
        return Err(ZoneError::BadName(name));
    }
    Ok(name)
}

/// Master servers as `Get-DnsServerZone` shows them.
pub fn masters_text(masters: &[SocketAddr]) -> String {
    masters
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn zones() -> Zones {
        let deployment = Zone::from_topology(&topology::contoso(), Ipv4Addr::new(127, 0, 0, 153));
        Zones::new(deployment, AddedZones::default()).unwrap()
    }

    const OWN: &str = "127.0.0.153:53";

    fn own() -> SocketAddr {
        OWN.parse().unwrap()
    }

    #[test]
    fn the_longest_suffix_decides_between_primary_zones_and_forwarders() {
        let mut z = zones();
        z.add_primary("Partner.Example.").unwrap();
        z.add_forwarder("example", &["127.0.9.153".into()], own())
            .unwrap();
        z.add_forwarder("lab.partner.example", &["127.0.9.154:5353".into()], own())
            .unwrap();
        z.add_forwarder("sub.contoso.com", &["127.0.9.155".into()], own())
            .unwrap();
        let zone_of = |name: &str| match z.route(name) {
            Route::Primary(zone) => format!("primary {zone}"),
            Route::Forward(f) => {
                format!("forward {} to {}", f.zone, masters_text(&f.master_servers))
            }
            Route::Outside => "outside".into(),
        };
        assert_eq!(zone_of("xmpp.partner.example"), "primary partner.example");
        assert_eq!(zone_of("PARTNER.example."), "primary partner.example");
        assert_eq!(
            zone_of("a.lab.partner.example"),
            "forward lab.partner.example to 127.0.9.154:5353"
        );
        assert_eq!(
            zone_of("other.example"),
            "forward example to 127.0.9.153:53"
        );
        assert_eq!(zone_of("example"), "forward example to 127.0.9.153:53");
        assert_eq!(zone_of("pool1.contoso.com"), "primary contoso.com");
        assert_eq!(
            zone_of("x.sub.contoso.com"),
            "forward sub.contoso.com to 127.0.9.155:53"
        );
        // A name that only ends with a zone's text is not in it.
        assert_eq!(zone_of("notcontoso.com"), "outside");
        assert_eq!(zone_of("xexample"), "outside");
        assert_eq!(zone_of("example.org"), "outside");
    }

    #[test]
    fn a_zone_added_then_removed_is_gone_and_the_deployments_stays() {
        let mut z = zones();
        let before = z.clone();
        let added = z.add_primary("partner.example").unwrap();
        assert_eq!(added.origin, "partner.example");
        assert!(matches!(
            &added.records[0].data,
            RecordData::Soa { mname, .. } if mname == "dns.contoso.com"
        ));
        assert!(matches!(
            &added.records[1].data,
            RecordData::Ns { host } if host == "dns.contoso.com"
        ));
        assert_eq!(
            z.add_primary("partner.example"),
            Err(ZoneError::ZoneExists("partner.example".into()))
        );
        assert!(z.zone_mut("PARTNER.example").is_ok());
        assert!(matches!(
            z.remove("partner.example"),
            Ok(RemovedZone::Primary(_))
        ));
        assert_eq!(z, before);
        assert_eq!(
            z.remove("partner.example"),
            Err(ZoneError::NoSuchZone("partner.example".into()))
        );
        assert!(
            ZoneError::NoSuchZone("partner.example".into())
                .to_string()
                .contains("Get-DnsServerZone")
        );
        // The deployment's own zone is never removed.
        let own_zone = z.remove("contoso.com").unwrap_err();
        assert_eq!(own_zone, ZoneError::OwnZone("contoso.com".into()));
        assert!(
            own_zone.to_string().contains("cannot be removed"),
            "{own_zone}"
        );
        assert!(z.zone_mut("contoso.com").is_ok());
        assert!(matches!(
            z.zone_mut("nothing.example"),
            Err(ZoneError::NoSuchZone(_))
        ));
        assert!(z.add_primary("_tcp.contoso.com").is_err());
        // A forwarder goes too, and is no place for records.
        z.add_forwarder("partner.example", &["127.0.9.153".into()], own())
            .unwrap();
        assert!(matches!(
            z.zone_mut("partner.example"),
            Err(ZoneError::Forwarder { .. })
        ));
        assert!(matches!(
            z.add_primary("partner.example"),
            Err(ZoneError::ZoneExists(_))
        ));
        assert!(matches!(
            z.remove("partner.example"),
            Ok(RemovedZone::Forwarder(_))
        ));
        assert_eq!(z, before);
        // Zones read back from a file are checked alike.
        let mut twice = AddedZones::default();
        twice.forwarders.push(Forwarder {
            zone: "contoso.com".into(),
            master_servers: vec!["127.0.9.153:53".parse().unwrap()],
        });
        assert!(Zones::new(z.deployment.clone(), twice).is_err());
    }

    #[test]
    fn a_forwarder_to_this_server_itself_or_to_no_server_is_refused() {
        let mut z = zones();
        for own_address in [OWN, "127.0.0.153"] {
            let refused = z
                .add_forwarder("partner.example", &[own_address.into()], own())
                .unwrap_err();
            assert!(
                refused.to_string().contains("this DNS server itself"),
                "{refused}"
            );
        }
        // The same address on another port is another server.
        z.add_forwarder("partner.example", &["127.0.0.153:5353".into()], own())
            .unwrap();
        // A server on every address is reached on any loopback address.
        let everywhere: SocketAddr = "0.0.0.0:53".parse().unwrap();
        assert!(is_own_address("127.0.0.1:53".parse().unwrap(), everywhere));
        assert!(!is_own_address("127.0.0.1:54".parse().unwrap(), everywhere));
        for bad in [
            "0.0.0.0",
            "127.0.9.153:0",
            "224.0.0.1",
            "255.255.255.255",
            "dns.example",
            "",
        ] {
            assert!(
                matches!(
                    z.add_forwarder("other.example", &[bad.into()], own()),
                    Err(ZoneError::BadMaster(_))
                ),
                "{bad}"
            );
        }
        assert!(z.add_forwarder("other.example", &[], own()).is_err());
        let many: Vec<String> = (1..=9).map(|i| format!("127.0.9.{i}")).collect();
        assert!(z.add_forwarder("other.example", &many, own()).is_err());
        assert_eq!(parse_master("[::1]:5353").unwrap().port(), 5353);
        assert_eq!(parse_master("::1").unwrap().port(), 53);
        // Nothing refused was added.
        assert_eq!(z.added.forwarders.len(), 1);
    }
}
