//! The topology document: what Topology Builder would publish, as plain data.
//!
//! A topology names every site, pool and server of a deployment and how they relate:
//! which pool backs up which, which Edge pool routes federation to which next hop, where
//! the Central Management store lives. It is the desired state; servers take their role,
//! addresses and ports from it. The TOML form is what operators write and what
//! `Get-CsTopology -AsToml` prints; unknown keys are refused so a typo cannot be ignored.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// A whole deployment's topology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    pub deployment: Deployment,
    #[serde(default)]
    pub ports: Ports,
    #[serde(default, rename = "site")]
    pub sites: Vec<Site>,
    #[serde(default, rename = "front_end_pool")]
    pub front_end_pools: Vec<FrontEndPool>,
    #[serde(default, rename = "edge_pool")]
    pub edge_pools: Vec<EdgePool>,
}

/// Deployment-wide settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// The SIP domain users sign in with: `contoso.com` in `sip:alice@contoso.com`.
    pub sip_domain: String,
    /// The DNS zone the deployment's records live in; every server's FQDN is inside it.
    pub dns_zone: String,
    /// The Front End pool whose Back End holds the Central Management store.
    pub cms_pool: String,
    /// The domains federated partners may send from, as the original's allowed domains
    /// (`New-CsAllowedDomain`): the Access Edge takes a federated request only from a
    /// domain listed here, and only from a partner whose certificate covers it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_domains: Vec<String>,
    /// The XMPP domains whose users may exchange messages with the deployment's, as the
    /// original's XMPP allowed partners (`New-CsXmppAllowedPartner`): the Edge's XMPP
    /// gateway opens streams only with these, and only as each one's negotiation says.
    #[serde(
        default,
        rename = "xmpp_partner",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub xmpp_partners: Vec<XmppPartner>,
    /// The server, in a third site, whose vote decides which copy of the Central
    /// Management store may take writes when the two stores' sites cannot reach each
    /// other (see `cms::witness`). Without one, a failover run on the side of a network
    /// cut makes a second writable master until the cut heals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cms_witness: Option<String>,
}

/// How an XMPP partner negotiates TLS or SASL (the original's `TlsNegotiation` and
/// `SaslNegotiation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Negotiation {
    NotSupported,
    #[default]
    Optional,
    Required,
}

impl std::fmt::Display for Negotiation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Negotiation::NotSupported => "NotSupported",
            Negotiation::Optional => "Optional",
            Negotiation::Required => "Required",
        })
    }
}

impl std::str::FromStr for Negotiation {
    type Err = String;
    fn from_str(text: &str) -> Result<Negotiation, String> {
        [
            Negotiation::NotSupported,
            Negotiation::Optional,
            Negotiation::Required,
        ]
        .into_iter()
        .find(|n| n.to_string().eq_ignore_ascii_case(text))
        .ok_or_else(|| format!("'{text}' is not NotSupported, Optional or Required"))
    }
}

/// An XMPP allowed partner: a domain whose servers the XMPP gateway exchanges stanzas with.
///
/// TLS is the stream's encryption (STARTTLS); SASL is SASL EXTERNAL, the partner proved by
/// the certificate it presents (chained to the Edge's partner roots, covering the
/// domain); dialback is Server Dialback (XEP-0220), the partner proved by a key its
/// authoritative server confirms. SASL needs TLS, and a partner needs SASL or dialback:
/// `validate` refuses the rest, as the original's table of negotiation settings does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XmppPartner {
    /// `jabber.example`: the partner's XMPP domain.
    pub domain: String,
    #[serde(default)]
    pub tls_negotiation: Negotiation,
    #[serde(default)]
    pub sasl_negotiation: Negotiation,
    #[serde(default = "yes")]
    pub support_dialback: bool,
    /// The partner's XMPP server, when it is not found by its domain's
    /// `_xmpp-server._tcp` SRV record (or the domain's own address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_fqdn: Option<String>,
}

fn yes() -> bool {
    true
}

impl XmppPartner {
    /// A partner with tandem's defaults: TLS and SASL when the partner offers them,
    /// dialback otherwise.
    pub fn new(domain: &str) -> XmppPartner {
        XmppPartner {
            domain: domain.to_string(),
            tls_negotiation: Negotiation::Optional,
            sasl_negotiation: Negotiation::Optional,
            support_dialback: true,
            proxy_fqdn: None,
        }
    }
}

/// A data centre.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// `Site1`; what `Set-CsSite` takes as its identity.
    pub name: String,
    /// The Edge pool (or one of its servers) this site's SIP federation goes through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federation_route: Option<String>,
    /// The Edge server this site's XMPP federation goes through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xmpp_federation_route: Option<String>,
}

/// The product version a pool runs; decides which procedures apply (seed 001 step 6 is
/// for a CMS on a Lync Server 2010 pool, which cannot be paired).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProductVersion {
    LyncServer2010,
    LyncServer2013,
    SkypeForBusinessServer2015,
    SkypeForBusinessServer2019,
}

/// As the topology spells it (`product_version = "LyncServer2010"`), which is how answers
/// name it.
impl std::fmt::Display for ProductVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProductVersion::LyncServer2010 => "LyncServer2010",
            ProductVersion::LyncServer2013 => "LyncServer2013",
            ProductVersion::SkypeForBusinessServer2015 => "SkypeForBusinessServer2015",
            ProductVersion::SkypeForBusinessServer2019 => "SkypeForBusinessServer2019",
        })
    }
}

impl ProductVersion {
    pub const ALL: [ProductVersion; 4] = [
        ProductVersion::LyncServer2010,
        ProductVersion::LyncServer2013,
        ProductVersion::SkypeForBusinessServer2015,
        ProductVersion::SkypeForBusinessServer2019,
    ];

    /// Pool pairing and the Backup Service arrived with Lync Server 2013.
    pub fn supports_pairing(self) -> bool {
        self != ProductVersion::LyncServer2010
    }

    /// The build number `Get-CsManagementStoreReplicationStatus` reports as `ProductVersion`.
    pub fn build(self) -> &'static str {
        match self {
            ProductVersion::LyncServer2010 => "4.0.7577.0",
            ProductVersion::LyncServer2013 => "5.0.8308.0",
            ProductVersion::SkypeForBusinessServer2015 => "6.0.9319.0",
            ProductVersion::SkypeForBusinessServer2019 => "7.0.2046.0",
        }
    }
}

/// A Front End pool: servers sharing one Back End store; users are homed on a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontEndPool {
    pub fqdn: String,
    pub site: String,
    pub product_version: ProductVersion,
    /// The pool paired with this one (1:1 and reciprocal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_pool: Option<String>,
    /// The Edge pool this pool uses for media ("Associate Edge Pool (for media components)").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_pool: Option<String>,
    pub back_end: BackEnd,
    #[serde(default)]
    pub registrar: RegistrarResiliency,
    #[serde(rename = "server")]
    pub servers: Vec<Server>,
}

/// A pool's Back End store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackEnd {
    /// The SQL server's FQDN, as the CMS failover cmdlets name it.
    pub server_fqdn: String,
    /// The SQL instance name (`rtc` in the seeds).
    pub instance: String,
    /// Where the store is: `sqlite://…` (lab) or `postgres://…` (production).
    pub database_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<DatabaseMirror>,
}

/// A mirror of a Back End store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseMirror {
    pub server_fqdn: String,
    pub instance: String,
    pub database_url: String,
    /// Whether the primary waits for the mirror before a commit returns. A SQLite mirror
    /// is always written in the same transaction; a PostgreSQL standby is synchronous
    /// (`synchronous_standby_names`) only when this says so: asynchronous by default, so
    /// that a standby that is down never stops the pool's writes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub synchronous: bool,
}

/// Registrar resiliency settings (Topology Builder's Resiliency section).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrarResiliency {
    /// How long the backup pool waits after losing its partner before serving the
    /// partner's users in resiliency mode.
    #[serde(default = "default_failure_detection")]
    pub failure_detection_interval_secs: u32,
    /// How long the partner must be reachable again before its users are sent home.
    #[serde(default = "default_failback_detection")]
    pub failback_detection_interval_secs: u32,
    /// "Automatic failover and failback for Voice".
    #[serde(default)]
    pub automatic_failover: bool,
}

/// Topology Builder's default failure detection interval.
pub const DEFAULT_FAILURE_DETECTION_SECS: u32 = 120;
/// Topology Builder's default failback ("fallback") detection interval.
pub const DEFAULT_FAILBACK_DETECTION_SECS: u32 = 240;

fn default_failure_detection() -> u32 {
    DEFAULT_FAILURE_DETECTION_SECS
}

fn default_failback_detection() -> u32 {
    DEFAULT_FAILBACK_DETECTION_SECS
}

impl Default for RegistrarResiliency {
    fn default() -> Self {
        RegistrarResiliency {
            failure_detection_interval_secs: DEFAULT_FAILURE_DETECTION_SECS,
            failback_detection_interval_secs: DEFAULT_FAILBACK_DETECTION_SECS,
            automatic_failover: false,
        }
    }
}

/// A server of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub fqdn: String,
    /// The internal address: every service of a Front End, the internal side of an Edge.
    pub address: Ipv4Addr,
    /// An Edge server's external (federation, XMPP) address; the internal one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_address: Option<Ipv4Addr>,
}

impl Server {
    pub fn external_address(&self) -> Ipv4Addr {
        self.external_address.unwrap_or(self.address)
    }
}

/// An Edge pool: federation and XMPP at the perimeter, routed to a next-hop pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgePool {
    pub fqdn: String,
    pub site: String,
    /// The Front End pool federation traffic goes to.
    pub next_hop: String,
    /// "Enable federation for this Edge pool (Port 5061)": at most one Edge pool has it.
    #[serde(default)]
    pub federation_enabled: bool,
    /// The XMPP proxy is deployed on this pool's servers.
    #[serde(default)]
    pub xmpp_enabled: bool,
    #[serde(rename = "server")]
    pub servers: Vec<Server>,
}

/// Ports, with the defaults of the reference where it gives them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ports {
    /// Front End registrar, SIP over TCP and UDP (SipServerTcpPort): listened on only when
    /// [`Ports::sip_plain`] asks for it.
    pub sip: u16,
    /// Whether Front Ends also take plain SIP (UDP and TCP) on `sip`. Off unless the
    /// topology asks: users' messages and sign-ins then cross the network only over TLS
    /// (`sip_tls`). A lab turns it on for tools that speak no TLS (Debian's SIPp) and for
    /// benchmarks that compare plain with TLS.
    pub sip_plain: bool,
    /// Front End SIP over TLS.
    pub sip_tls: u16,
    /// Front End user services (HTTP/JSON API for contacts, meetings, content).
    pub user_services: u16,
    /// Front End Backup Service, pool to pool.
    pub backup_service: u16,
    /// Management API on every server (cmdlets, CMS replication).
    pub management: u16,
    /// Edge internal SIP (from the next-hop pool), AccessEdgeInternalSipPort.
    pub edge_internal_sip: u16,
    /// Edge external SIP federation, AccessEdgeExternalSipPort.
    pub edge_federation_sip: u16,
    /// Edge external XMPP server-to-server.
    pub xmpp_federation: u16,
    /// Edge internal XMPP (from the XMPP gateway), XmppInternalPort.
    pub xmpp_internal: u16,
    /// The A/V Edge's media relay (TURN, UDP and TCP) on an Edge's external address
    /// (the product's 3478/UDP; it also takes TCP on 443, which a lab on one machine
    /// keeps for other listeners).
    pub media_relay: u16,
    /// The Web Conferencing Edge on an Edge's external address: meeting content external
    /// users download, passed to their Front End pool (HTTPS; the product's 443).
    pub web_conferencing_edge: u16,
    /// The deployment's DNS server.
    pub dns: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            sip: 5060,
            sip_plain: false,
            sip_tls: 5061,
            user_services: 4443,
            backup_service: 4445,
            management: 4444,
            edge_internal_sip: 5061,
            edge_federation_sip: 5061,
            xmpp_federation: 5269,
            xmpp_internal: 5098,
            media_relay: 3478,
            web_conferencing_edge: 443,
            dns: 53,
        }
    }
}

/// The role a server has, from the pool it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    FrontEnd,
    Edge,
}

/// A server with its pool, as found by [`Topology::server`].
#[derive(Debug, Clone, Copy)]
pub struct ServerRef<'t> {
    pub server: &'t Server,
    pub role: Role,
    pub pool_fqdn: &'t str,
    pub site: &'t str,
}

impl Topology {
    /// Parses a TOML document. Errors carry the line and column.
    pub fn from_toml(text: &str) -> Result<Topology, crate::ParseError> {
        toml::from_str(text).map_err(|e| crate::ParseError::from_toml(text, &e))
    }

    /// Serialises as TOML; parsing the result gives an equal topology.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a topology always serialises")
    }

    pub fn front_end_pool(&self, fqdn: &str) -> Option<&FrontEndPool> {
        self.front_end_pools
            .iter()
            .find(|p| p.fqdn.eq_ignore_ascii_case(fqdn))
    }

    /// The servers of a Front End pool, in preferred order (none for an unknown pool).
    pub fn front_end_servers(&self, pool: &str) -> &[Server] {
        self.front_end_pool(pool).map_or(&[], |p| &p.servers)
    }

    /// The backup pool a Front End pool is paired with.
    pub fn backup_pool_of(&self, pool: &str) -> Option<&str> {
        self.front_end_pool(pool)
            .and_then(|p| p.backup_pool.as_deref())
    }

    /// Moves every address to the loopback block 127.`block`.x.y, keeping x.y, so that
    /// several copies of a deployment (tests, benchmarks) can run on one machine.
    pub fn move_to_loopback_block(&mut self, block: u8) {
        self.move_addresses([127, block]);
    }

    /// Moves every address into `prefix[0].prefix[1].x.y`, keeping x.y: `tandem lab up
    /// --hosts` puts a loopback deployment on hosts of its own as 10.B.x.y.
    pub fn move_addresses(&mut self, prefix: [u8; 2]) {
        let remap = |a: Ipv4Addr| {
            let o = a.octets();
            Ipv4Addr::new(prefix[0], prefix[1], o[2], o[3])
        };
        for p in &mut self.front_end_pools {
            for s in &mut p.servers {
                s.address = remap(s.address);
            }
        }
        for p in &mut self.edge_pools {
            for s in &mut p.servers {
                s.address = remap(s.address);
                s.external_address = s.external_address.map(remap);
            }
        }
    }

    pub fn edge_pool(&self, fqdn: &str) -> Option<&EdgePool> {
        self.edge_pools
            .iter()
            .find(|p| p.fqdn.eq_ignore_ascii_case(fqdn))
    }

    pub fn site(&self, name: &str) -> Option<&Site> {
        self.sites
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name))
    }

    /// Every server, Front End and Edge, with its pool.
    pub fn servers(&self) -> impl Iterator<Item = ServerRef<'_>> {
        let fe = self.front_end_pools.iter().flat_map(|p| {
            p.servers.iter().map(move |s| ServerRef {
                server: s,
                role: Role::FrontEnd,
                pool_fqdn: &p.fqdn,
                site: &p.site,
            })
        });
        let edge = self.edge_pools.iter().flat_map(|p| {
            p.servers.iter().map(move |s| ServerRef {
                server: s,
                role: Role::Edge,
                pool_fqdn: &p.fqdn,
                site: &p.site,
            })
        });
        fe.chain(edge)
    }

    /// Finds a server by FQDN.
    pub fn server(&self, fqdn: &str) -> Option<ServerRef<'_>> {
        self.servers()
            .find(|s| s.server.fqdn.eq_ignore_ascii_case(fqdn))
    }

    /// Whether `domain` is the deployment's own SIP domain or below it, in any spelling.
    pub fn is_own_domain(&self, domain: &str) -> bool {
        crate::domain::within(domain, &self.deployment.sip_domain)
    }

    /// The allowed partner domain `domain` is, in any spelling (its normalized name).
    pub fn allowed_partner(&self, domain: &str) -> Option<String> {
        let wanted = crate::domain::normalize(domain)?;
        self.deployment
            .allowed_domains
            .iter()
            .filter_map(|d| crate::domain::normalize(d))
            .find(|d| *d == wanted)
    }

    /// The XMPP allowed partner `domain` is, in any spelling.
    pub fn xmpp_partner(&self, domain: &str) -> Option<&XmppPartner> {
        let wanted = crate::domain::normalize(domain)?;
        self.deployment
            .xmpp_partners
            .iter()
            .find(|p| crate::domain::normalize(&p.domain).as_deref() == Some(wanted.as_str()))
    }

    /// The Edge pool that has federation enabled, if exactly one has.
    pub fn federation_edge_pool(&self) -> Option<&EdgePool> {
        let mut enabled = self.edge_pools.iter().filter(|e| e.federation_enabled);
        let first = enabled.next()?;
        enabled.next().is_none().then_some(first)
    }
}
