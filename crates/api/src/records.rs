//! Topology as cmdlet output: `Get-CsService`, `Get-CsPoolBackupRelationship`, the
//! forms of `Get-CsTopology`, the federation partners (`Get-CsAllowedDomain`,
//! `Get-CsXmppAllowedPartner`) and validation problems. Pure functions of a topology.

use cmdlet::{Field, Record};
use topology::Topology;

/// The names a deployment's hints use in their examples (`cmdlet::set_examples`): its
/// first Front End pool, Edge pool and server, and its SIP domain.
pub fn examples(t: &Topology) -> cmdlet::Examples {
    let mut names = cmdlet::Examples::default();
    if let Some(pool) = t.front_end_pools.first() {
        names.pool = pool.fqdn.clone();
        if let Some(server) = pool.servers.first() {
            names.address = server.address.to_string();
        }
    }
    if let Some(edge) = t.edge_pools.first() {
        names.edge_pool = edge.fqdn.clone();
    }
    names.sip_domain = t.deployment.sip_domain.clone();
    names
}

/// A validation report as `Test-CsTopology` rows: one per problem.
/// Errors first, then warnings: a refusal's reason is not buried under advisories.
pub fn problems(report: &topology::Report) -> Vec<Record> {
    report
        .errors()
        .chain(report.warnings())
        .map(|p| {
            Record::new()
                .with("Severity", p.severity.to_string())
                .with("Element", p.element.clone())
                .with("Message", p.message.clone())
        })
        .collect()
}

fn site_id(site: &str) -> String {
    format!("Site:{site}")
}

/// Every service of the topology, in the reference's identity form (`Registrar:pool1…`),
/// with a `Role` matching the `Get-CsService` role switch that selects it.
pub fn services(t: &Topology) -> Vec<Record> {
    let mut out = Vec::new();
    for (i, p) in t.front_end_pools.iter().enumerate() {
        let n = i + 1;
        let base = |role: &str| {
            Record::new()
                .with("Identity", format!("{role}:{}", p.fqdn))
                .with("ServiceId", format!("{n}-{role}-1"))
                .with("SiteId", site_id(&p.site))
                .with("PoolFqdn", p.fqdn.clone())
                .with("Role", role.to_string())
                .with("Version", p.product_version.build())
        };
        out.push(
            base("Registrar")
                .with("BackupPoolFqdn", opt(p.backup_pool.as_deref()))
                .with(
                    "FailureDetectionInterval",
                    i64::from(p.registrar.failure_detection_interval_secs),
                )
                .with(
                    "FailbackDetectionInterval",
                    i64::from(p.registrar.failback_detection_interval_secs),
                )
                .with("EnableAutomaticFailover", p.registrar.automatic_failover)
                .with("EdgePoolFqdn", opt(p.edge_pool.as_deref()))
                .with(
                    "DependentServiceList",
                    Field::List(vec![format!("UserServer:{}", p.fqdn).into()]),
                ),
        );
        out.push(
            base("UserServer")
                .with(
                    "UserDatabase",
                    format!("UserDatabase:{}", p.back_end.server_fqdn),
                )
                .with("DependentServiceList", Field::List(vec![])),
        );
        if let Some(backup) = &p.backup_pool {
            out.push(
                base("BackupServer")
                    .with("BackupPoolFqdn", backup.clone())
                    .with("DependentServiceList", Field::List(vec![])),
            );
        }
        if p.fqdn.eq_ignore_ascii_case(&t.deployment.cms_pool) {
            out.push(
                base("CentralManagement")
                    .with(
                        "CentralManagementDatabase",
                        format!("CentralManagementDatabase:{}", p.back_end.server_fqdn),
                    )
                    .with("DependentServiceList", Field::List(vec![])),
            );
            out.push(
                Record::new()
                    .with(
                        "Identity",
                        format!("CentralManagementDatabase:{}", p.back_end.server_fqdn),
                    )
                    .with("ServiceId", format!("{n}-CentralManagementDatabase-1"))
                    .with("SiteId", site_id(&p.site))
                    .with("PoolFqdn", p.back_end.server_fqdn.clone())
                    .with("Role", "CentralManagementDatabase")
                    .with("Version", p.product_version.build())
                    .with("SqlInstanceName", p.back_end.instance.clone())
                    .with("IsSqlBackendMirrored", p.back_end.mirror.is_some())
                    .with(
                        "MirrorSqlServerFqdn",
                        opt(p.back_end.mirror.as_ref().map(|m| m.server_fqdn.as_str())),
                    ),
            );
        }
    }
    for (i, e) in t.edge_pools.iter().enumerate() {
        let version = t
            .front_end_pool(&e.next_hop)
            .map_or("", |p| p.product_version.build());
        out.push(
            Record::new()
                .with("Identity", format!("EdgeServer:{}", e.fqdn))
                .with("ServiceId", format!("{}-EdgeServer-1", i + 1))
                .with("SiteId", site_id(&e.site))
                .with("PoolFqdn", e.fqdn.clone())
                .with("Role", "EdgeServer")
                .with("Version", version)
                .with("Registrar", format!("Registrar:{}", e.next_hop))
                .with(
                    "AccessEdgeInternalSipPort",
                    i64::from(t.ports.edge_internal_sip),
                )
                .with(
                    "AccessEdgeExternalSipPort",
                    i64::from(t.ports.edge_federation_sip),
                )
                .with("XmppListeningPort", i64::from(t.ports.xmpp_federation))
                .with("FederationEnabled", e.federation_enabled)
                .with("XmppEnabled", e.xmpp_enabled)
                .with(
                    "DependentServiceList",
                    Field::List(vec![format!("Registrar:{}", e.next_hop).into()]),
                ),
        );
    }
    out
}

fn opt(value: Option<&str>) -> Field {
    value.map_or(Field::Null, |v| Field::Text(v.to_string()))
}

/// `Get-CsPoolBackupRelationship -PoolFqdn`.
pub fn backup_relationship(t: &Topology, pool: &str) -> Result<Record, String> {
    let p = t.front_end_pool(pool).ok_or_else(|| {
        format!("there is no Front End pool {pool} in the topology; Get-CsService -Registrar lists the pools")
    })?;
    Ok(Record::new()
        .with("PoolFqdn", p.fqdn.clone())
        .with("BackupPoolFqdn", opt(p.backup_pool.as_deref())))
}

/// `Get-CsPoolEdgeAssociation`: each Front End pool (or the one named) with the Edge pool
/// it uses for media and that pool's relays (`server address:port`).
pub fn edge_associations(t: &Topology, pool: Option<&str>) -> Result<Vec<Record>, String> {
    let pools: Vec<_> = t
        .front_end_pools
        .iter()
        .filter(|p| pool.is_none_or(|n| p.fqdn.eq_ignore_ascii_case(n)))
        .collect();
    if let Some(name) = pool
        && pools.is_empty()
    {
        return Err(format!(
            "there is no Front End pool {name} in the topology; Get-CsService -Registrar lists the pools"
        ));
    }
    Ok(pools
        .into_iter()
        .map(|p| {
            let edge = p.edge_pool.as_deref().and_then(|e| t.edge_pool(e));
            let relays = edge.map_or_else(Vec::new, |e| {
                e.servers
                    .iter()
                    .map(|s| {
                        format!(
                            "{} {}:{}",
                            s.fqdn,
                            s.external_address(),
                            t.ports.media_relay
                        )
                        .into()
                    })
                    .collect()
            });
            Record::new()
                .with("PoolFqdn", p.fqdn.clone())
                .with("Site", p.site.clone())
                .with("EdgePoolFqdn", opt(p.edge_pool.as_deref()))
                .with("EdgeSite", opt(edge.map(|e| e.site.as_str())))
                .with("MediaRelays", Field::List(relays))
        })
        .collect())
}

/// Which partners' domains a `Get-Cs*` of partners returns: the one `-Identity` names (in
/// any spelling), those `-Filter` matches, or every one.
fn partner_wanted(domain: &str, identity: Option<&str>, filter: Option<&str>) -> bool {
    let spelled =
        |d: &str| topology::domain::normalize(d).unwrap_or_else(|| d.to_ascii_lowercase());
    identity.is_none_or(|i| spelled(i) == spelled(domain))
        && filter.is_none_or(|f| cmdlet::help::wildcard_match(f, domain))
}

/// `Get-CsAllowedDomain`: the SIP federation partners (`ProxyFqdn` empty: tandem finds a
/// partner's Access Edge by DNS SRV).
pub fn allowed_domains(
    t: &Topology,
    identity: Option<&str>,
    filter: Option<&str>,
) -> Result<Vec<Record>, String> {
    let rows: Vec<Record> = t
        .deployment
        .allowed_domains
        .iter()
        .filter(|d| partner_wanted(d, identity, filter))
        .map(|d| {
            Record::new()
                .with("Identity", d.clone())
                .with("Domain", d.clone())
                .with("ProxyFqdn", Field::Null)
        })
        .collect();
    match identity {
        Some(i) if rows.is_empty() => Err(format!(
            "{i} is not a SIP federation partner; Get-CsAllowedDomain lists them, New-CsAllowedDomain -Identity {i} adds it"
        )),
        _ => Ok(rows),
    }
}

/// `Get-CsXmppAllowedPartner`: the XMPP partners and how each negotiates.
pub fn xmpp_partners(
    t: &Topology,
    identity: Option<&str>,
    filter: Option<&str>,
) -> Result<Vec<Record>, String> {
    let rows: Vec<Record> = t
        .deployment
        .xmpp_partners
        .iter()
        .filter(|p| partner_wanted(&p.domain, identity, filter))
        .map(|p| {
            Record::new()
                .with("Identity", p.domain.clone())
                .with("Domain", p.domain.clone())
                .with("TlsNegotiation", p.tls_negotiation.to_string())
                .with("SaslNegotiation", p.sasl_negotiation.to_string())
                .with("SupportDialbackNegotiation", p.support_dialback)
                .with("ProxyFqdn", opt(p.proxy_fqdn.as_deref()))
        })
        .collect();
    match identity {
        Some(i) if rows.is_empty() => Err(format!(
            "{i} is not an XMPP partner; Get-CsXmppAllowedPartner lists them, New-CsXmppAllowedPartner -Identity {i} adds it"
        )),
        _ => Ok(rows),
    }
}

/// `Get-CsTopology` without a switch: one record per pool.
pub fn topology_summary(t: &Topology) -> Vec<Record> {
    let mut out = Vec::new();
    for p in &t.front_end_pools {
        out.push(
            Record::new()
                .with("Identity", p.fqdn.clone())
                .with("Kind", "FrontEndPool")
                .with("SiteId", site_id(&p.site))
                .with(
                    "Computers",
                    Field::List(p.servers.iter().map(|s| s.fqdn.clone().into()).collect()),
                )
                .with("BackupPoolFqdn", opt(p.backup_pool.as_deref()))
                .with(
                    "BackEnd",
                    format!("{}\\{}", p.back_end.server_fqdn, p.back_end.instance),
                )
                .with(
                    "CentralManagementStore",
                    p.fqdn.eq_ignore_ascii_case(&t.deployment.cms_pool),
                ),
        );
    }
    for e in &t.edge_pools {
        out.push(
            Record::new()
                .with("Identity", e.fqdn.clone())
                .with("Kind", "EdgePool")
                .with("SiteId", site_id(&e.site))
                .with(
                    "Computers",
                    Field::List(e.servers.iter().map(|s| s.fqdn.clone().into()).collect()),
                )
                .with("NextHop", e.next_hop.clone())
                .with("FederationEnabled", e.federation_enabled)
                .with("XmppEnabled", e.xmpp_enabled),
        );
    }
    for s in &t.sites {
        out.push(
            Record::new()
                .with("Identity", site_id(&s.name))
                .with("Kind", "Site")
                .with("FederationRoute", opt(s.federation_route.as_deref()))
                .with(
                    "XmppFederationRoute",
                    opt(s.xmpp_federation_route.as_deref()),
                ),
        );
    }
    out
}

/// `Get-CsTopology -AsXml`: the same document as `-AsToml`, element per field.
pub fn topology_xml(t: &Topology) -> String {
    let value = serde_json::to_value(t).expect("a topology serialises");
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    xml_element("Topology", &value, 0, &mut out);
    out
}

fn xml_element(name: &str, value: &serde_json::Value, depth: usize, out: &mut String) {
    use serde_json::Value;
    let pad = "  ".repeat(depth);
    match value {
        Value::Null => {}
        Value::Array(items) => {
            for item in items {
                xml_element(name, item, depth, out);
            }
        }
        Value::Object(fields) => {
            out.push_str(&format!("{pad}<{name}>\n"));
            for (k, v) in fields {
                xml_element(k, v, depth + 1, out);
            }
            out.push_str(&format!("{pad}</{name}>\n"));
        }
        Value::String(s) => out.push_str(&format!("{pad}<{name}>{}</{name}>\n", xml_escape(s))),
        other => out.push_str(&format!("{pad}<{name}>{other}</{name}>\n")),
    }
}

/// Text safe in the document's elements and attributes.
fn xml_escape(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contoso_services_cover_every_role_switch() {
        let records = services(&topology::contoso());
        let role = |r: &Record| {
            r.fields
                .iter()
                .find(|(k, _)| k == "Role")
                .unwrap()
                .1
                .display()
        };
        let roles: Vec<String> = records.iter().map(role).collect();
        for wanted in [
            "Registrar",
            "UserServer",
            "BackupServer",
            "CentralManagement",
            "CentralManagementDatabase",
            "EdgeServer",
        ] {
            assert!(
                roles.iter().any(|r| r == wanted),
                "{wanted} missing from {roles:?}"
            );
        }
        let xml = topology_xml(&topology::contoso());
        assert!(xml.contains("<fqdn>pool1.contoso.com</fqdn>"));
    }

    #[test]
    fn backup_relationship_names_the_partner_or_the_fix() {
        let t = topology::contoso();
        let r = backup_relationship(&t, "pool1.contoso.com").unwrap();
        assert_eq!(r.fields[1].1.display(), "pool2.contoso.com");
        assert!(
            backup_relationship(&t, "pool9.contoso.com")
                .unwrap_err()
                .contains("Get-CsService")
        );
    }
}
