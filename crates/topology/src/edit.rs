//! Changes to a topology, as the configuration cmdlets and Topology Builder make them.
//!
//! Each [`Edit`] names what it changes in the operator's terms; [`apply`] returns the
//! changed copy or says why the edit does not fit this topology (an unknown site, a pool
//! that does not exist). Whether the result is a *valid* topology is [`crate::validate`]'s
//! job, run by the caller before anything is written, so an edit can never publish a
//! topology that breaks the rules.

use crate::Topology;

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
    }
    Ok(t)
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
}
