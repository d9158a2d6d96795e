//! The rules a topology must follow before anything is built from it.
//!
//! Validation reports every problem at once, each naming the element it is about, so an
//! operator fixes a document in one pass. Errors make the topology unusable; warnings are
//! things the documentation calls unsupported or risky but that still work (a pair in one
//! site, detection intervals under 30 seconds in a lab).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::Ipv4Addr;

use serde::Serialize;

use crate::model::{EdgePool, FrontEndPool, Role, Topology};

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem, naming the element it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    /// `front_end_pool pool1.contoso.com`, `site Site2`, `deployment`…
    pub element: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.severity, self.element, self.message)
    }
}

/// Everything validation found.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Report {
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Warning)
    }

    pub fn is_valid(&self) -> bool {
        self.errors().next().is_none()
    }

    /// `2 errors, 1 warning`.
    pub fn summary(&self) -> String {
        let e = self.errors().count();
        let w = self.warnings().count();
        let plural = |n: usize, word: &str| {
            if n == 1 {
                format!("{n} {word}")
            } else {
                format!("{n} {word}s")
            }
        };
        format!("{}, {}", plural(e, "error"), plural(w, "warning"))
    }
}

/// Shortest and longest registrar detection intervals (CMDLETS.md: 1 s – 86,400 s).
pub const DETECTION_INTERVAL_SECS: std::ops::RangeInclusive<u32> = 1..=86_400;
/// Intervals under this work but the documentation warns against them.
pub const DETECTION_INTERVAL_WARN_BELOW_SECS: u32 = 30;
/// The documented supported maximum of Edge servers in a pool.
pub const MAX_EDGE_SERVERS: usize = 12;
/// The documented maximum of Front End servers in a pool (Skype for Business Server 2019).
pub const MAX_FRONT_END_SERVERS: usize = 16;

struct Checker<'t> {
    topology: &'t Topology,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn error(&mut self, element: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            severity: Severity::Error,
            element: element.into(),
            message: message.into(),
        });
    }

    fn warning(&mut self, element: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            severity: Severity::Warning,
            element: element.into(),
            message: message.into(),
        });
    }
}

fn fe_element(pool: &FrontEndPool) -> String {
    format!("front_end_pool {}", pool.fqdn)
}

fn edge_element(pool: &EdgePool) -> String {
    format!("edge_pool {}", pool.fqdn)
}

/// Checks a topology against every rule; returns all problems found.
pub fn validate(topology: &Topology) -> Report {
    let mut c = Checker {
        topology,
        problems: Vec::new(),
    };
    check_deployment(&mut c);
    check_names(&mut c);
    check_addresses_and_ports(&mut c);
    check_sites(&mut c);
    for pool in &topology.front_end_pools {
        check_front_end_pool(&mut c, pool);
    }
    check_back_ends(&mut c);
    check_pairing(&mut c);
    for pool in &topology.edge_pools {
        check_edge_pool(&mut c, pool);
    }
    check_federation(&mut c);
    check_routes(&mut c);
    Report {
        problems: c.problems,
    }
}

/// A syntactically valid, fully qualified domain name.
pub fn is_valid_fqdn(name: &str) -> bool {
    name.len() <= 253
        && name.contains('.')
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn in_zone(name: &str, zone: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let zone = zone.to_ascii_lowercase();
    name == zone || name.ends_with(&format!(".{zone}"))
}

fn check_deployment(c: &mut Checker<'_>) {
    let d = &c.topology.deployment;
    let mut seen = std::collections::HashSet::new();
    for domain in &d.allowed_domains {
        match crate::domain::normalize(domain) {
            None => c.error(
                "deployment",
                format!("allowed domain '{domain}' is not a valid domain name"),
            ),
            Some(_) if crate::domain::within(domain, &d.sip_domain) => c.error(
                "deployment",
                format!(
                    "allowed domain '{domain}' is the deployment's own SIP domain {}: a partner cannot send as its users",
                    d.sip_domain
                ),
            ),
            Some(n) if !seen.insert(n.clone()) => c.error(
                "deployment",
                format!("allowed domain '{domain}' is listed twice"),
            ),
            Some(_) => {}
        }
    }
    let mut xmpp_seen = std::collections::HashSet::new();
    for p in &d.xmpp_partners {
        let domain = &p.domain;
        match crate::domain::normalize(domain) {
            None => c.error(
                "deployment",
                format!("XMPP partner '{domain}' is not a valid domain name"),
            ),
            Some(_) if crate::domain::within(domain, &d.sip_domain) => c.error(
                "deployment",
                format!(
                    "XMPP partner '{domain}' is the deployment's own domain {}: a partner cannot send as its users",
                    d.sip_domain
                ),
            ),
            Some(n) if !xmpp_seen.insert(n.clone()) => c.error(
                "deployment",
                format!("XMPP partner '{domain}' is listed twice"),
            ),
            Some(n) if d.allowed_domains.iter().any(|a| crate::domain::normalize(a).as_deref() == Some(n.as_str())) => c.error(
                "deployment",
                format!("'{domain}' is both an allowed SIP federation domain and an XMPP partner: a domain federates one way"),
            ),
            Some(_) => {}
        }
        use crate::model::Negotiation::{NotSupported, Required};
        if p.sasl_negotiation != NotSupported && p.tls_negotiation == NotSupported {
            c.error(
                "deployment",
                format!("XMPP partner '{domain}': SASL needs TLS (TlsNegotiation NotSupported with SaslNegotiation {})", p.sasl_negotiation),
            );
        }
        if p.sasl_negotiation == NotSupported && !p.support_dialback {
            c.error(
                "deployment",
                format!("XMPP partner '{domain}' has no way to authenticate: allow SASL (-SaslNegotiation Optional) or dialback (-SupportDialbackNegotiation $true)"),
            );
        }
        if p.sasl_negotiation == Required && p.tls_negotiation != Required {
            c.error(
                "deployment",
                format!("XMPP partner '{domain}': SASL Required needs TLS Required (TlsNegotiation is {})", p.tls_negotiation),
            );
        }
        if let Some(proxy) = &p.proxy_fqdn
            && !is_valid_fqdn(proxy)
        {
            c.error(
                "deployment",
                format!("XMPP partner '{domain}': proxy_fqdn '{proxy}' is not a valid FQDN"),
            );
        }
    }
    if !is_valid_fqdn(&d.sip_domain) {
        c.error(
            "deployment",
            format!("sip_domain '{}' is not a valid domain name", d.sip_domain),
        );
    }
    if !is_valid_fqdn(&d.dns_zone) {
        c.error(
            "deployment",
            format!("dns_zone '{}' is not a valid domain name", d.dns_zone),
        );
    }
    if c.topology.front_end_pool(&d.cms_pool).is_none() {
        let what = if c.topology.edge_pool(&d.cms_pool).is_some() {
            "an Edge pool; the Central Management store lives in a Front End pool's Back End"
        } else {
            "not a Front End pool of this topology"
        };
        c.error("deployment", format!("cms_pool '{}' is {what}", d.cms_pool));
    }
    if c.topology.front_end_pools.is_empty() {
        c.error("deployment", "the topology has no Front End pool");
    }
    if let Some(witness) = &d.cms_witness {
        check_witness(c, witness);
    }
}

/// The witness must be a server of the topology outside both pools that can hold the
/// Central Management store (the CMS pool and its partner): a witness that fails with a
/// store's pool cannot break a tie between the stores. In a site of its own it also
/// survives the loss of either store's site; in one of their sites it does not.
fn check_witness(c: &mut Checker<'_>, witness: &str) {
    let t = c.topology;
    let cms_pool = &t.deployment.cms_pool;
    let holders: Vec<&str> = std::iter::once(cms_pool.as_str())
        .chain(t.backup_pool_of(cms_pool))
        .collect();
    let Some(server) = t.server(witness) else {
        c.error(
            "deployment",
            format!("cms_witness '{witness}' is not a server of this topology"),
        );
        return;
    };
    if let Some(pool) = holders
        .iter()
        .find(|p| p.eq_ignore_ascii_case(server.pool_fqdn))
    {
        c.error(
            "deployment",
            format!(
                "cms_witness '{witness}' is in {pool}, which holds a copy of the Central Management store; \
                 name a server of another pool, in a third site"
            ),
        );
        return;
    }
    let store_sites: Vec<&str> = holders
        .iter()
        .filter_map(|p| t.front_end_pool(p))
        .map(|p| p.site.as_str())
        .collect();
    if let Some(site) = store_sites
        .iter()
        .find(|s| s.eq_ignore_ascii_case(server.site))
    {
        c.warning(
            "deployment",
            format!(
                "cms_witness '{witness}' is in site {site}, beside a copy of the Central Management store: \
                 losing that site loses the witness too, and a failover then needs -Force"
            ),
        );
    }
}

/// Every FQDN names one thing, is well formed and lies inside the DNS zone.
fn check_names(c: &mut Checker<'_>) {
    let t = c.topology;
    let zone = t.deployment.dns_zone.clone();
    let mut named: Vec<(String, String)> = Vec::new(); // (fqdn, element)
    for p in &t.front_end_pools {
        named.push((p.fqdn.clone(), fe_element(p)));
        for s in &p.servers {
            named.push((
                s.fqdn.clone(),
                format!("server {} of {}", s.fqdn, fe_element(p)),
            ));
        }
    }
    for p in &t.edge_pools {
        named.push((p.fqdn.clone(), edge_element(p)));
        for s in &p.servers {
            named.push((
                s.fqdn.clone(),
                format!("server {} of {}", s.fqdn, edge_element(p)),
            ));
        }
    }
    let mut seen: HashMap<String, String> = HashMap::new();
    for (fqdn, element) in &named {
        if !is_valid_fqdn(fqdn) {
            c.error(
                element.clone(),
                format!("'{fqdn}' is not a valid fully qualified domain name"),
            );
            continue;
        }
        if is_valid_fqdn(&zone) && !in_zone(fqdn, &zone) {
            c.error(
                element.clone(),
                format!("'{fqdn}' is outside the DNS zone {zone}, so the deployment's DNS cannot resolve it"),
            );
        }
        let key = fqdn.to_ascii_lowercase();
        if let Some(first) = seen.get(&key) {
            c.error(
                element.clone(),
                format!("FQDN {fqdn} is already used by {first}"),
            );
        } else {
            seen.insert(key, element.clone());
        }
    }
    // Back End servers may be shared by pools, but must not be a pool or a server.
    for p in &t.front_end_pools {
        let mut stores = vec![(&p.back_end.server_fqdn, "back_end")];
        if let Some(m) = &p.back_end.mirror {
            stores.push((&m.server_fqdn, "back_end.mirror"));
        }
        for (fqdn, what) in stores {
            if !is_valid_fqdn(fqdn) {
                c.error(
                    fe_element(p),
                    format!(
                        "{what} server_fqdn '{fqdn}' is not a valid fully qualified domain name"
                    ),
                );
            } else if let Some(other) = seen.get(&fqdn.to_ascii_lowercase()) {
                c.error(
                    fe_element(p),
                    format!("{what} server_fqdn {fqdn} is already used by {other}"),
                );
            }
        }
    }
}

/// Every address belongs to one server, and no two services of a server share an
/// address and port.
fn check_addresses_and_ports(c: &mut Checker<'_>) {
    let t = c.topology;
    let mut owner: HashMap<Ipv4Addr, String> = HashMap::new();
    for s in t.servers() {
        let element = format!("server {}", s.server.fqdn);
        let mut addrs = vec![s.server.address];
        if let Some(ext) = s.server.external_address {
            if s.role == Role::FrontEnd {
                c.error(
                    element.clone(),
                    "external_address is for Edge servers; a Front End server has one address",
                );
            }
            if ext != s.server.address {
                addrs.push(ext);
            }
        }
        for a in addrs {
            if a.is_unspecified() || a.is_broadcast() || a.is_multicast() {
                c.error(
                    element.clone(),
                    format!("address {a} cannot be a server's own address"),
                );
            }
            if let Some(first) = owner.get(&a) {
                if *first != s.server.fqdn {
                    c.error(
                        element.clone(),
                        format!("address {a} is already used by server {first}"),
                    );
                }
            } else {
                owner.insert(a, s.server.fqdn.clone());
            }
        }
    }

    let p = &t.ports;
    let all = [
        ("sip", p.sip),
        ("sip_tls", p.sip_tls),
        ("user_services", p.user_services),
        ("backup_service", p.backup_service),
        ("management", p.management),
        ("edge_internal_sip", p.edge_internal_sip),
        ("edge_federation_sip", p.edge_federation_sip),
        ("xmpp_federation", p.xmpp_federation),
        ("xmpp_internal", p.xmpp_internal),
        ("media_relay", p.media_relay),
        ("web_conferencing_edge", p.web_conferencing_edge),
        ("dns", p.dns),
    ];
    for (name, port) in all {
        if port == 0 {
            c.error("ports", format!("{name} is 0; ports run from 1 to 65535"));
        }
    }
    // TCP listeners by address for each role; the same port twice on one address clashes.
    let front_end = [
        ("sip", p.sip),
        ("sip_tls", p.sip_tls),
        ("user_services", p.user_services),
        ("backup_service", p.backup_service),
        ("management", p.management),
    ];
    clash(c, "a Front End server", &front_end);
    let edge_internal = [
        ("edge_internal_sip", p.edge_internal_sip),
        ("xmpp_internal", p.xmpp_internal),
        ("management", p.management),
    ];
    let edge_external = [
        ("edge_federation_sip", p.edge_federation_sip),
        ("xmpp_federation", p.xmpp_federation),
        ("media_relay", p.media_relay),
        ("web_conferencing_edge", p.web_conferencing_edge),
    ];
    clash(c, "an Edge server's internal address", &edge_internal);
    clash(c, "an Edge server's external address", &edge_external);
    let shared_address = t
        .edge_pools
        .iter()
        .flat_map(|e| &e.servers)
        .find(|s| s.external_address() == s.address);
    if let Some(server) = shared_address {
        let mut both: Vec<(&str, u16)> = edge_internal.to_vec();
        both.extend_from_slice(&edge_external);
        let before = c.problems.len();
        clash(c, "an Edge server with one address", &both);
        if c.problems.len() > before {
            c.error(
                format!("server {}", server.fqdn),
                "its internal and external ports clash on one address: give it an external_address",
            );
        }
    }
}

fn clash(c: &mut Checker<'_>, what: &str, ports: &[(&str, u16)]) {
    let mut by_port: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
    for (name, port) in ports {
        by_port.entry(*port).or_default().push(name);
    }
    for (port, names) in by_port {
        if names.len() > 1 && port != 0 {
            c.error(
                "ports",
                format!(
                    "{} share port {port} on {what}; each needs its own",
                    names.join(" and ")
                ),
            );
        }
    }
}

fn check_sites(c: &mut Checker<'_>) {
    let t = c.topology;
    let mut seen: Vec<String> = Vec::new();
    for s in &t.sites {
        let element = format!("site {}", s.name);
        if s.name.trim().is_empty() || s.name.contains(char::is_whitespace) || s.name.contains(':')
        {
            c.error(
                element.clone(),
                "a site name is one word without spaces or colons (Set-CsSite takes it as the identity)",
            );
        }
        if seen.iter().any(|n| n.eq_ignore_ascii_case(&s.name)) {
            c.error(element.clone(), "the site is defined twice");
        }
        seen.push(s.name.clone());
        let used = t
            .front_end_pools
            .iter()
            .any(|p| p.site.eq_ignore_ascii_case(&s.name))
            || t.edge_pools
                .iter()
                .any(|p| p.site.eq_ignore_ascii_case(&s.name));
        if !used {
            c.warning(element, "no pool is in this site");
        }
    }
    let pools = t
        .front_end_pools
        .iter()
        .map(|p| (fe_element(p), &p.site))
        .chain(t.edge_pools.iter().map(|p| (edge_element(p), &p.site)));
    for (element, site) in pools {
        if t.site(site).is_none() {
            c.error(
                element,
                format!("site '{site}' is not defined ([[site]] name = \"{site}\")"),
            );
        }
    }
}

fn check_front_end_pool(c: &mut Checker<'_>, pool: &FrontEndPool) {
    let element = fe_element(pool);
    if pool.servers.is_empty() {
        c.error(element.clone(), "the pool has no server");
    } else if pool.servers.len() > MAX_FRONT_END_SERVERS {
        c.warning(
            element.clone(),
            format!(
                "{} Front End servers; the documented maximum is {MAX_FRONT_END_SERVERS}",
                pool.servers.len()
            ),
        );
    }
    let r = &pool.registrar;
    for (name, value) in [
        (
            "failure_detection_interval_secs",
            r.failure_detection_interval_secs,
        ),
        (
            "failback_detection_interval_secs",
            r.failback_detection_interval_secs,
        ),
    ] {
        if !DETECTION_INTERVAL_SECS.contains(&value) {
            c.error(
                element.clone(),
                format!("registrar {name} is {value}; it must be from 1 to 86400 seconds"),
            );
        } else if value < DETECTION_INTERVAL_WARN_BELOW_SECS {
            c.warning(
                element.clone(),
                format!("registrar {name} is {value} s; under {DETECTION_INTERVAL_WARN_BELOW_SECS} s suits a lab, not production"),
            );
        }
    }
    if let Some(edge) = &pool.edge_pool
        && c.topology.edge_pool(edge).is_none()
    {
        let what = if c.topology.front_end_pool(edge).is_some() {
            "a Front End pool, not an Edge pool"
        } else {
            "not an Edge pool of this topology"
        };
        c.error(
            element,
            format!("edge_pool (media association) '{edge}' is {what}"),
        );
    }
}

fn check_back_ends(c: &mut Checker<'_>) {
    let t = c.topology;
    let mut urls: HashMap<String, String> = HashMap::new();
    for pool in &t.front_end_pools {
        let element = fe_element(pool);
        let mut stores = vec![(
            "back_end",
            &pool.back_end.database_url,
            &pool.back_end.instance,
        )];
        if let Some(m) = &pool.back_end.mirror {
            stores.push(("back_end.mirror", &m.database_url, &m.instance));
            if m.server_fqdn
                .eq_ignore_ascii_case(&pool.back_end.server_fqdn)
                && m.instance.eq_ignore_ascii_case(&pool.back_end.instance)
            {
                c.error(
                    element.clone(),
                    "the mirror is the same server and instance as the primary Back End",
                );
            }
        }
        for (what, url, instance) in stores {
            if instance.trim().is_empty() {
                c.error(element.clone(), format!("{what} instance is empty"));
            }
            let scheme_ok = url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://");
            if !scheme_ok {
                c.error(
                    element.clone(),
                    format!("{what} database_url '{url}' must start with sqlite:, postgres:// or postgresql://"),
                );
            }
            if let Some(other) = urls.get(url) {
                c.error(
                    element.clone(),
                    format!("{what} database_url {url} is already the store of {other}; no server opens another pool's Back End"),
                );
            } else {
                urls.insert(url.clone(), format!("{element} {what}"));
            }
        }
    }
}

/// Pairing is 1:1 and reciprocal, between Front End pools that support it.
fn check_pairing(c: &mut Checker<'_>) {
    let t = c.topology;
    for pool in &t.front_end_pools {
        let Some(backup_name) = &pool.backup_pool else {
            continue;
        };
        let element = fe_element(pool);
        if backup_name.eq_ignore_ascii_case(&pool.fqdn) {
            c.error(element, "the pool names itself as its backup pool");
            continue;
        }
        let Some(backup) = t.front_end_pool(backup_name) else {
            let what = if t.edge_pool(backup_name).is_some() {
                "an Edge pool; a backup pool is a Front End pool"
            } else {
                "not a Front End pool of this topology"
            };
            c.error(element, format!("backup_pool '{backup_name}' is {what}"));
            continue;
        };
        match &backup.backup_pool {
            Some(back) if back.eq_ignore_ascii_case(&pool.fqdn) => {}
            Some(other) => c.error(
                element.clone(),
                format!(
                    "backup_pool {} is already paired with {other}; pairing is 1:1 and reciprocal",
                    backup.fqdn
                ),
            ),
            None => c.error(
                element.clone(),
                format!(
                    "backup_pool {} does not name {} back; pairing is reciprocal (set backup_pool = \"{}\" there)",
                    backup.fqdn, pool.fqdn, pool.fqdn
                ),
            ),
        }
        if !pool.product_version.supports_pairing() {
            c.error(
                element.clone(),
                format!(
                    "{} pools cannot be paired; pairing needs Lync Server 2013 or later",
                    pool.product_version
                ),
            );
        }
        // Warn once per pair, from the pool that sorts first.
        let first_of_pair = pool.fqdn.to_ascii_lowercase() < backup.fqdn.to_ascii_lowercase();
        if first_of_pair && pool.site.eq_ignore_ascii_case(&backup.site) {
            c.warning(
                element.clone(),
                format!(
                    "paired with {} in the same site {}; losing the site loses both",
                    backup.fqdn, pool.site
                ),
            );
        }
        if first_of_pair && pool.product_version != backup.product_version {
            c.warning(
                element,
                format!(
                    "paired with {} which runs {}, not {}; pairs should be like for like",
                    backup.fqdn, backup.product_version, pool.product_version
                ),
            );
        }
    }
}

fn check_edge_pool(c: &mut Checker<'_>, pool: &EdgePool) {
    let element = edge_element(pool);
    let t = c.topology;
    if pool.servers.is_empty() {
        c.error(element.clone(), "the pool has no server");
    } else if pool.servers.len() > MAX_EDGE_SERVERS {
        c.warning(
            element.clone(),
            format!(
                "{} Edge servers; the supported maximum is {MAX_EDGE_SERVERS}",
                pool.servers.len()
            ),
        );
    }
    if t.front_end_pool(&pool.next_hop).is_none() {
        let what = if t.edge_pool(&pool.next_hop).is_some() {
            "an Edge pool; a next hop is a Front End pool"
        } else {
            "not a Front End pool of this topology"
        };
        c.error(element, format!("next_hop '{}' is {what}", pool.next_hop));
    }
}

fn check_federation(c: &mut Checker<'_>) {
    let enabled: Vec<&EdgePool> = c
        .topology
        .edge_pools
        .iter()
        .filter(|e| e.federation_enabled)
        .collect();
    if enabled.len() > 1 {
        let names: Vec<&str> = enabled.iter().map(|e| e.fqdn.as_str()).collect();
        c.error(
            "edge pools",
            format!(
                "federation is enabled on {}; at most one Edge pool may have it (Disable-CsEdgePoolFederation on the others)",
                names.join(" and ")
            ),
        );
    }
}

/// Strips the optional `EdgeServer:` prefix of a route value (`Set-CsSite
/// -FederationRoute EdgeServer:edgepool1.contoso.com`).
pub fn route_target(value: &str) -> &str {
    match value.split_once(':') {
        Some((prefix, rest)) if prefix.eq_ignore_ascii_case("EdgeServer") => rest,
        _ => value,
    }
}

fn check_routes(c: &mut Checker<'_>) {
    let t = c.topology;
    // XMPP from the internet reaches one Edge (the `_xmpp-server._tcp` record names one):
    // the seeds move the route from one site to the other, they never hold two.
    let xmpp_sites: Vec<&str> = t
        .sites
        .iter()
        .filter(|s| s.xmpp_federation_route.is_some())
        .map(|s| s.name.as_str())
        .collect();
    if let [first, rest @ ..] = &xmpp_sites[..]
        && !rest.is_empty()
    {
        c.warning(
            "deployment",
            format!(
                "sites {} hold an XMPP federation route at once; XMPP partners reach one Edge, so keep the route in one site: Set-CsSite -Identity {} -XmppExternalFederationRoute $null",
                xmpp_sites.join(" and "),
                rest.first().unwrap_or(first)
            ),
        );
    }
    for site in &t.sites {
        let element = format!("site {}", site.name);
        if let Some(route) = &site.federation_route {
            let target = route_target(route);
            let pool = t.edge_pool(target).or_else(|| {
                t.server(target)
                    .filter(|s| s.role == Role::Edge)
                    .and_then(|s| t.edge_pool(s.pool_fqdn))
            });
            match pool {
                None => c.error(
                    element.clone(),
                    format!("federation_route '{route}' is not an Edge pool or Edge server of this topology"),
                ),
                Some(pool) if !pool.federation_enabled => c.warning(
                    element.clone(),
                    format!("federation_route {route} goes through {}, which does not have federation enabled", pool.fqdn),
                ),
                Some(_) => {}
            }
        }
        if let Some(route) = &site.xmpp_federation_route {
            let target = route_target(route);
            match t.server(target) {
                Some(s) if s.role == Role::Edge => {
                    let pool = t.edge_pool(s.pool_fqdn).expect("servers come from pools");
                    if !pool.xmpp_enabled {
                        c.error(
                            element.clone(),
                            format!("xmpp_federation_route {route} is a server of {}, which has no XMPP proxy (xmpp_enabled = false)", pool.fqdn),
                        );
                    }
                    if !pool.site.eq_ignore_ascii_case(&site.name) {
                        c.warning(
                            element.clone(),
                            format!("xmpp_federation_route {route} is in site {}, not in this site", pool.site),
                        );
                    }
                }
                Some(s) => c.error(
                    element.clone(),
                    format!("xmpp_federation_route {route} is a Front End server of {}; it must name an Edge server", s.pool_fqdn),
                ),
                None => {
                    let hint = t
                        .edge_pool(target)
                        .and_then(|p| p.servers.first())
                        .map(|s| format!(" (it is an Edge pool; name one of its servers, such as {})", s.fqdn))
                        .unwrap_or_default();
                    c.error(
                        element.clone(),
                        format!("xmpp_federation_route '{route}' is not an Edge server of this topology{hint}"),
                    );
                }
            }
        }
    }
}
