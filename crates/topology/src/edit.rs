//! Changes to a topology, as the configuration cmdlets and Topology Builder make them.
//!
//! Each [`Edit`] names what it changes in the operator's terms; [`apply`] returns the
//! changed copy or says why the edit does not fit this topology (an unknown site, a pool
//! that does not exist). Whether the result is a *valid* topology is [`crate::validate`]'s
//! job, run by the caller before anything is written, so an edit can never publish a
//! topology that breaks the rules.

use crate::{Negotiation, Topology, XmppPartner};

/// One change to a topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// `Set-CsSite -FederationRoute`: the Edge pool (or server) a site's SIP federation uses.
    SiteFederationRoute { site: String, route: Option<String> },
    /// `Set-CsSite -XmppFederationRoute` / `-XmppExternalFederationRoute`.
    SiteXmppFederationRoute { site: String, route: Option<String> },
    /// `Set-CsRegistrar`: a pool's resiliency settings; `None` leaves a value as it is.
    Registrar {
        pool: String,
        failure_detection_interval_secs: Option<u32>,
        failback_detection_interval_secs: Option<u32>,
        automatic_failover: Option<bool>,
    },
    /// `Set-CsEdgeServer -Registrar` / `Set-CsEdgePoolNextHop`: an Edge pool's next hop.
    EdgeNextHop { edge_pool: String, next_hop: String },
    /// `Enable-/Disable-CsEdgePoolFederation`.
    EdgeFederation { edge_pool: String, enabled: bool },
    /// `Set-CsPoolEdgeAssociation`: the Edge pool a Front End pool uses for media.
    PoolEdgeAssociation { pool: String, edge_pool: String },
    /// `Set-CsPoolBackupRelationship`: pairs two pools (both directions).
    BackupRelationship { pool: String, backup_pool: String },
    /// `New-CsAllowedDomain`: a SIP federation partner added.
    NewAllowedDomain { domain: String },
    /// `Remove-CsAllowedDomain`.
    RemoveAllowedDomain { domain: String },
    /// `New-CsXmppAllowedPartner`: an XMPP partner added, with tandem's defaults where the
    /// change gives nothing.
    NewXmppPartner { domain: String, change: XmppChange },
    /// `Set-CsXmppAllowedPartner`: what the change gives replaces the partner's settings.
    SetXmppPartner { domain: String, change: XmppChange },
    /// `Remove-CsXmppAllowedPartner`.
    RemoveXmppPartner { domain: String },
}

/// The settings of an XMPP partner a cmdlet gives; `None` leaves one as it is (or as
/// tandem's default, for a new partner). `proxy_fqdn: Some(None)` removes the proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XmppChange {
    pub tls_negotiation: Option<Negotiation>,
    pub sasl_negotiation: Option<Negotiation>,
    pub support_dialback: Option<bool>,
    pub proxy_fqdn: Option<Option<String>>,
}

impl XmppChange {
    fn apply_to(&self, partner: &mut XmppPartner) {
        if let Some(v) = self.tls_negotiation {
            partner.tls_negotiation = v;
        }
        if let Some(v) = self.sasl_negotiation {
            partner.sasl_negotiation = v;
        }
        if let Some(v) = self.support_dialback {
            partner.support_dialback = v;
        }
        if let Some(v) = &self.proxy_fqdn {
            partner.proxy_fqdn = v.clone();
        }
    }
}

/// Why an edit does not fit the topology.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("there is no site '{0}' in the topology; Get-CsTopology lists the sites")]
    NoSite(String),
    #[error(
        "there is no Front End pool '{0}' in the topology; Get-CsService -Registrar lists them"
    )]
    NoFrontEndPool(String),
    #[error(
        "there is no Edge pool or Edge server '{0}' in the topology; Get-CsService -EdgeServer lists them"
    )]
    NoEdgePool(String),
    #[error("'{0}' is not a valid domain name")]
    BadDomain(String),
    #[error("{0} is already a SIP federation partner; Get-CsAllowedDomain -Identity {0} shows it")]
    AllowedDomainExists(String),
    #[error(
        "{0} is not a SIP federation partner; Get-CsAllowedDomain lists them, New-CsAllowedDomain -Identity {0} adds it"
    )]
    NoAllowedDomain(String),
    #[error(
        "{0} is already an XMPP partner; change it with Set-CsXmppAllowedPartner -Identity {0}"
    )]
    XmppPartnerExists(String),
    #[error(
        "{0} is not an XMPP partner; Get-CsXmppAllowedPartner lists them, New-CsXmppAllowedPartner -Identity {0} adds it"
    )]
    NoXmppPartner(String),
}

impl Edit {
    /// One line saying what the edit does, for the CMS version's description.
    pub fn describe(&self) -> String {
        match self {
            Edit::SiteFederationRoute { site, route } => {
                format!(
                    "site {site}: federation route {}",
                    route.as_deref().unwrap_or("(none)")
                )
            }
            Edit::SiteXmppFederationRoute { site, route } => {
                format!(
                    "site {site}: XMPP federation route {}",
                    route.as_deref().unwrap_or("(none)")
                )
            }
            Edit::Registrar { pool, .. } => format!("registrar {pool}: resiliency settings"),
            Edit::EdgeNextHop {
                edge_pool,
                next_hop,
            } => {
                format!("edge pool {edge_pool}: next hop {next_hop}")
            }
            Edit::EdgeFederation { edge_pool, enabled } => format!(
                "edge pool {edge_pool}: federation {}",
                if *enabled { "enabled" } else { "disabled" }
            ),
            Edit::PoolEdgeAssociation { pool, edge_pool } => {
                format!("pool {pool}: media through {edge_pool}")
            }
            Edit::BackupRelationship { pool, backup_pool } => {
                format!("pools {pool} and {backup_pool} paired")
            }
            Edit::NewAllowedDomain { domain } => format!("SIP federation partner {domain} added"),
            Edit::RemoveAllowedDomain { domain } => {
                format!("SIP federation partner {domain} removed")
            }
            Edit::NewXmppPartner { domain, .. } => format!("XMPP partner {domain} added"),
            Edit::SetXmppPartner { domain, .. } => format!("XMPP partner {domain} changed"),
            Edit::RemoveXmppPartner { domain } => format!("XMPP partner {domain} removed"),
        }
    }
}

/// The Edge pool an FQDN names: the pool itself or one of its servers.
pub fn edge_pool_of(topology: &Topology, fqdn: &str) -> Option<String> {
    topology
        .edge_pools
        .iter()
        .find(|p| {
            p.fqdn.eq_ignore_ascii_case(fqdn)
                || p.servers.iter().any(|s| s.fqdn.eq_ignore_ascii_case(fqdn))
        })
        .map(|p| p.fqdn.clone())
}

/// Applies `edit` to a copy of `topology`.
pub fn apply(topology: &Topology, edit: &Edit) -> Result<Topology, EditError> {
    let mut t = topology.clone();
    match edit {
        Edit::SiteFederationRoute { site, route } => {
            site_mut(&mut t, site)?.federation_route = route.clone();
        }
        Edit::SiteXmppFederationRoute { site, route } => {
            site_mut(&mut t, site)?.xmpp_federation_route = route.clone();
        }
        Edit::Registrar {
            pool,
            failure_detection_interval_secs,
            failback_detection_interval_secs,
            automatic_failover,
        } => {
            let r = &mut fe_mut(&mut t, pool)?.registrar;
            if let Some(v) = failure_detection_interval_secs {
                r.failure_detection_interval_secs = *v;
            }
            if let Some(v) = failback_detection_interval_secs {
                r.failback_detection_interval_secs = *v;
            }
            if let Some(v) = automatic_failover {
                r.automatic_failover = *v;
            }
        }
        Edit::EdgeNextHop {
            edge_pool,
            next_hop,
        } => {
            let next_hop = fe_mut(&mut t, next_hop)?.fqdn.clone();
            edge_mut(&mut t, edge_pool)?.next_hop = next_hop;
        }
        Edit::EdgeFederation { edge_pool, enabled } => {
            edge_mut(&mut t, edge_pool)?.federation_enabled = *enabled;
        }
        Edit::PoolEdgeAssociation { pool, edge_pool } => {
            let edge = edge_mut(&mut t, edge_pool)?.fqdn.clone();
            fe_mut(&mut t, pool)?.edge_pool = Some(edge);
        }
        Edit::BackupRelationship { pool, backup_pool } => {
            let a = fe_mut(&mut t, pool)?.fqdn.clone();
            let b = fe_mut(&mut t, backup_pool)?.fqdn.clone();
            fe_mut(&mut t, &a)?.backup_pool = Some(b.clone());
            fe_mut(&mut t, &b)?.backup_pool = Some(a);
        }
        Edit::NewAllowedDomain { domain } => {
            let name = domain_name(domain)?;
            if t.allowed_partner(&name).is_some() {
                return Err(EditError::AllowedDomainExists(name));
            }
            t.deployment.allowed_domains.push(name);
        }
        Edit::RemoveAllowedDomain { domain } => {
            let name = domain_name(domain)?;
            let before = t.deployment.allowed_domains.len();
            t.deployment
                .allowed_domains
                .retain(|d| crate::domain::normalize(d).as_deref() != Some(name.as_str()));
            if t.deployment.allowed_domains.len() == before {
                return Err(EditError::NoAllowedDomain(name));
            }
        }
        Edit::NewXmppPartner { domain, change } => {
            let name = domain_name(domain)?;
            if t.xmpp_partner(&name).is_some() {
                return Err(EditError::XmppPartnerExists(name));
            }
            let mut partner = XmppPartner::new(&name);
            change.apply_to(&mut partner);
            t.deployment.xmpp_partners.push(partner);
        }
        Edit::SetXmppPartner { domain, change } => {
            change.apply_to(xmpp_mut(&mut t, domain)?);
        }
        Edit::RemoveXmppPartner { domain } => {
            let name = xmpp_mut(&mut t, domain)?.domain.clone();
            t.deployment.xmpp_partners.retain(|p| p.domain != name);
        }
    }
    Ok(t)
}

/// A partner's domain in its one spelling (`topology::domain::normalize`).
fn domain_name(domain: &str) -> Result<String, EditError> {
    crate::domain::normalize(domain).ok_or_else(|| EditError::BadDomain(domain.to_string()))
}

fn xmpp_mut<'t>(t: &'t mut Topology, domain: &str) -> Result<&'t mut XmppPartner, EditError> {
    let name = domain_name(domain)?;
    t.deployment
        .xmpp_partners
        .iter_mut()
        .find(|p| crate::domain::normalize(&p.domain).as_deref() == Some(name.as_str()))
        .ok_or(EditError::NoXmppPartner(name))
}

fn site_mut<'t>(t: &'t mut Topology, name: &str) -> Result<&'t mut crate::Site, EditError> {
    t.sites
        .iter_mut()
        .find(|s| s.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| EditError::NoSite(name.to_string()))
}

fn fe_mut<'t>(t: &'t mut Topology, fqdn: &str) -> Result<&'t mut crate::FrontEndPool, EditError> {
    t.front_end_pools
        .iter_mut()
        .find(|p| p.fqdn.eq_ignore_ascii_case(fqdn))
        .ok_or_else(|| EditError::NoFrontEndPool(fqdn.to_string()))
}

fn edge_mut<'t>(t: &'t mut Topology, fqdn: &str) -> Result<&'t mut crate::EdgePool, EditError> {
    let pool = edge_pool_of(t, fqdn).ok_or_else(|| EditError::NoEdgePool(fqdn.to_string()))?;
    Ok(t.edge_pools
        .iter_mut()
        .find(|p| p.fqdn == pool)
        .expect("edge_pool_of found it"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{contoso, validate};

    #[test]
    fn next_hop_moves_and_the_result_is_valid() {
        let t = contoso();
        let edit = Edit::EdgeNextHop {
            edge_pool: "EdgeServer1.contoso.com".into(),
            next_hop: "pool2.contoso.com".into(),
        };
        let changed = apply(&t, &edit).unwrap();
        assert_eq!(
            changed.edge_pool("edgepool1.contoso.com").unwrap().next_hop,
            "pool2.contoso.com"
        );
        assert!(
            validate(&changed).is_valid(),
            "{:?}",
            validate(&changed).problems
        );
    }

    #[test]
    fn unknown_names_are_refused_with_the_command_that_lists_them() {
        let t = contoso();
        let err = apply(
            &t,
            &Edit::SiteFederationRoute {
                site: "Site9".into(),
                route: None,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("Get-CsTopology"));
        assert!(matches!(
            apply(
                &t,
                &Edit::Registrar {
                    pool: "nope.contoso.com".into(),
                    failure_detection_interval_secs: Some(60),
                    failback_detection_interval_secs: None,
                    automatic_failover: None
                }
            ),
            Err(EditError::NoFrontEndPool(_))
        ));
    }

    #[test]
    fn registrar_changes_only_what_is_given() {
        let t = contoso();
        let changed = apply(
            &t,
            &Edit::Registrar {
                pool: "pool1.contoso.com".into(),
                failure_detection_interval_secs: Some(60),
                failback_detection_interval_secs: None,
                automatic_failover: None,
            },
        )
        .unwrap();
        let r = &changed
            .front_end_pool("pool1.contoso.com")
            .unwrap()
            .registrar;
        assert_eq!(r.failure_detection_interval_secs, 60);
        assert_eq!(
            r.failback_detection_interval_secs,
            t.front_end_pool("pool1.contoso.com")
                .unwrap()
                .registrar
                .failback_detection_interval_secs
        );
    }

    #[test]
    fn allowed_domains_are_added_once_in_one_spelling_and_removed() {
        let t = contoso();
        let added = apply(
            &t,
            &Edit::NewAllowedDomain {
                domain: "Northwind.EXAMPLE.".into(),
            },
        )
        .unwrap();
        assert!(
            added
                .deployment
                .allowed_domains
                .ends_with(&["northwind.example".to_string()])
        );
        assert!(
            validate(&added).is_valid(),
            "{:?}",
            validate(&added).problems
        );
        let again = apply(
            &added,
            &Edit::NewAllowedDomain {
                domain: "northwind.example".into(),
            },
        )
        .unwrap_err();
        assert_eq!(
            again,
            EditError::AllowedDomainExists("northwind.example".into())
        );
        assert!(again.to_string().contains("Get-CsAllowedDomain"));
        let removed = apply(
            &added,
            &Edit::RemoveAllowedDomain {
                domain: "NORTHWIND.example".into(),
            },
        )
        .unwrap();
        assert_eq!(removed, t);
        let missing = apply(
            &removed,
            &Edit::RemoveAllowedDomain {
                domain: "northwind.example".into(),
            },
        )
        .unwrap_err();
        assert!(
            missing.to_string().contains("New-CsAllowedDomain"),
            "{missing}"
        );
        assert!(matches!(
            apply(
                &t,
                &Edit::NewAllowedDomain {
                    domain: "a..b".into()
                }
            ),
            Err(EditError::BadDomain(_))
        ));
        // The deployment's own domain is the validation's to refuse.
        let own = apply(
            &t,
            &Edit::NewAllowedDomain {
                domain: t.deployment.sip_domain.clone(),
            },
        )
        .unwrap();
        assert!(!validate(&own).is_valid());
    }

    #[test]
    fn an_xmpp_partner_is_added_with_defaults_changed_in_part_and_removed() {
        let t = contoso();
        let new = Edit::NewXmppPartner {
            domain: "Jabber.Example".into(),
            change: XmppChange {
                tls_negotiation: Some(Negotiation::Required),
                ..XmppChange::default()
            },
        };
        let added = apply(&t, &new).unwrap();
        let partner = added.xmpp_partner("jabber.example").unwrap();
        assert_eq!(partner.domain, "jabber.example");
        assert_eq!(partner.tls_negotiation, Negotiation::Required);
        assert_eq!(partner.sasl_negotiation, Negotiation::Optional);
        assert!(partner.support_dialback);
        assert!(
            validate(&added).is_valid(),
            "{:?}",
            validate(&added).problems
        );
        let twice = apply(&added, &new).unwrap_err();
        assert!(
            twice.to_string().contains("Set-CsXmppAllowedPartner"),
            "{twice}"
        );

        let changed = apply(
            &added,
            &Edit::SetXmppPartner {
                domain: "jabber.example.".into(),
                change: XmppChange {
                    sasl_negotiation: Some(Negotiation::Required),
                    support_dialback: Some(false),
                    proxy_fqdn: Some(Some("xmpp.jabber.example".into())),
                    ..XmppChange::default()
                },
            },
        )
        .unwrap();
        let partner = changed.xmpp_partner("jabber.example").unwrap();
        assert_eq!(partner.tls_negotiation, Negotiation::Required, "kept");
        assert_eq!(partner.sasl_negotiation, Negotiation::Required);
        assert!(!partner.support_dialback);
        assert_eq!(partner.proxy_fqdn.as_deref(), Some("xmpp.jabber.example"));
        assert!(
            validate(&changed).is_valid(),
            "{:?}",
            validate(&changed).problems
        );
        let cleared = apply(
            &changed,
            &Edit::SetXmppPartner {
                domain: "jabber.example".into(),
                change: XmppChange {
                    proxy_fqdn: Some(None),
                    ..XmppChange::default()
                },
            },
        )
        .unwrap();
        assert_eq!(
            cleared.xmpp_partner("jabber.example").unwrap().proxy_fqdn,
            None
        );

        // SASL without TLS applies, and validation refuses it.
        let invalid = apply(
            &added,
            &Edit::SetXmppPartner {
                domain: "jabber.example".into(),
                change: XmppChange {
                    tls_negotiation: Some(Negotiation::NotSupported),
                    sasl_negotiation: Some(Negotiation::Required),
                    ..XmppChange::default()
                },
            },
        )
        .unwrap();
        assert!(!validate(&invalid).is_valid());

        let unknown = apply(
            &t,
            &Edit::SetXmppPartner {
                domain: "jabber.example".into(),
                change: XmppChange::default(),
            },
        )
        .unwrap_err();
        assert_eq!(unknown, EditError::NoXmppPartner("jabber.example".into()));
        assert!(unknown.to_string().contains("Get-CsXmppAllowedPartner"));
        let removed = apply(
            &changed,
            &Edit::RemoveXmppPartner {
                domain: "JABBER.example".into(),
            },
        )
        .unwrap();
        assert_eq!(removed, t);
        assert!(matches!(
            apply(
                &t,
                &Edit::RemoveXmppPartner {
                    domain: "jabber.example".into()
                }
            ),
            Err(EditError::NoXmppPartner(_))
        ));
    }
}
