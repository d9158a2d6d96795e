//! Configuration cmdlets: the topology (`Get-CsTopology`, `Publish-`/`Enable-CsTopology`,
//! the Topology Builder edits, `Set-Cs*`, the federation partners of
//! `New-`/`Get-`/`Remove-CsAllowedDomain` and `New-`/`Get-`/`Set-`/`Remove-CsXmppAllowedPartner`),
//! the store's replication, and the configuration exports and imports.
//!
//! Reads and changes run on the active master; reads fall back to this server's replica
//! (with a warning) when no master answers, and `-LocalStore` asks for the replica.

use std::path::Path;

use ::cms::keys;
use api::InvokeResponse;
use cmdlet::{Field, Invocation, Output, Record};
use store::{Item, format_timestamp};
use topology::Topology;
use topology::edit::{Edit, edge_pool_of};

use crate::Refused;
use crate::archive::{self, Configuration};
use crate::call::master;
use crate::call::{Call, Reply};

/// `Get-CsTopology`, `Get-CsService`, `Get-CsPoolBackupRelationship`,
/// `Get-CsPoolEdgeAssociation`: from the store, or
/// from this server's replica.
pub async fn read(call: &Call<'_>) -> Reply {
    match &call.master {
        Some(m) => read_topology(call.inv, &m.topology().await?),
        None => {
            let mut reply = read_topology(call.inv, &call.node().topology())?;
            if let Some(note) = replica_note(call).await? {
                reply.warnings.push(note);
            }
            Ok(reply)
        }
    }
}

/// The warning of a read answered from the replica because no master answered.
async fn replica_note(call: &Call<'_>) -> Result<Option<String>, crate::Error> {
    let Some(unavailable) = &call.unavailable else {
        return Ok(None);
    };
    let state = call.node().replica.state().await?;
    Ok(Some(format!(
        "{unavailable} Showing this server's local replica (version {}).",
        state.version
    )))
}

fn read_topology(inv: &Invocation, topology: &Topology) -> Reply {
    use api::records;
    match inv.cmdlet.name {
        "Get-CsTopology" if inv.switch("AsToml") => Ok(InvokeResponse::text(topology.to_toml())),
        "Get-CsTopology" if inv.switch("AsXml") => {
            Ok(InvokeResponse::text(records::topology_xml(topology)))
        }
        "Get-CsTopology" => Ok(InvokeResponse::records(records::topology_summary(topology))),
        "Get-CsPoolEdgeAssociation" => Ok(InvokeResponse::records(
            records::edge_associations(topology, inv.text("PoolFqdn").as_deref())
                .map_err(Refused::BadRequest)?,
        )),
        "Get-CsAllowedDomain" => Ok(InvokeResponse::records(
            records::allowed_domains(
                topology,
                inv.text("Identity").as_deref(),
                inv.text("Filter").as_deref(),
            )
            .map_err(Refused::NotFound)?,
        )),
        "Get-CsXmppAllowedPartner" => Ok(InvokeResponse::records(
            records::xmpp_partners(
                topology,
                inv.text("Identity").as_deref(),
                inv.text("Filter").as_deref(),
            )
            .map_err(Refused::NotFound)?,
        )),
        "Get-CsPoolBackupRelationship" => {
            let pool = inv.text("PoolFqdn").unwrap_or_default();
            let record =
                records::backup_relationship(topology, &pool).map_err(Refused::BadRequest)?;
            Ok(InvokeResponse::records(vec![record]))
        }
        _ => {
            let role = match inv.parameter_set {
                "Identity" => None,
                set => Some(set),
            };
            let pool = inv.text("PoolFqdn");
            let identity = inv.text("Identity");
            let rows: Vec<Record> = records::services(topology)
                .into_iter()
                .filter(|r| {
                    let field = |k: &str| {
                        r.fields
                            .iter()
                            .find(|(n, _)| n == k)
                            .map(|(_, v)| v.display())
                            .unwrap_or_default()
                    };
                    role.is_none_or(|role| field("Role") == role)
                        && pool
                            .as_deref()
                            .is_none_or(|p| field("PoolFqdn").eq_ignore_ascii_case(p))
                        && identity
                            .as_deref()
                            .is_none_or(|i| field("Identity").eq_ignore_ascii_case(i))
                })
                .collect();
            Ok(InvokeResponse::records(rows))
        }
    }
}

/// A topology written: no output, its version (so the caller waits for its replica), and
/// the warnings validation found.
async fn write_topology(
    master: &::cms::master::Master,
    topology: &Topology,
    description: &str,
    activate: bool,
) -> Reply {
    let written = master
        .write_topology(topology, description, activate)
        .await?;
    Ok(InvokeResponse {
        output: Output::None,
        warnings: written.warnings,
        cms_version: Some(written.version),
    })
}

/// `Publish-CsTopology -FileName`.
pub async fn publish(call: &Call<'_>) -> Reply {
    let master = master(call)?;
    let file = call.inv.text("FileName").unwrap_or_default();
    let text = std::fs::read_to_string(&file)
        .map_err(|e| Refused::BadRequest(format!("cannot read {file}: {e}")))?;
    if text.trim_start().starts_with('<') {
        return Err(Refused::BadRequest(format!(
            "{file} is XML; tandem publishes TOML topology documents. Get one with Get-CsTopology -AsToml, edit it and publish that"
        ))
        .into());
    }
    let topology = Topology::from_toml(&text).map_err(|e| {
        Refused::BadRequest(format!(
            "{file} is not a topology document: {e}; fix it and check it with Test-CsTopology -FileName {file}"
        ))
    })?;
    let _guard = master.lock().await;
    let reply = write_topology(master, &topology, &format!("published {file}"), false).await?;
    Ok(reply.warn("published, not yet active: run Enable-CsTopology to activate it"))
}

/// `Enable-CsTopology`: the published topology becomes the active one.
pub async fn enable(call: &Call<'_>) -> Reply {
    let master = master(call)?;
    let _guard = master.lock().await;
    let backend = master.backend();
    let published = backend.get(keys::TOPOLOGY_PUBLISHED).await?;
    let active = backend.get(keys::TOPOLOGY_ACTIVE).await?;
    let Some(published) = published else {
        return Err(Refused::Conflict(
            "no topology has been published; run Publish-CsTopology first".into(),
        )
        .into());
    };
    if Some(&published) == active.as_ref() {
        return Ok(InvokeResponse::of(Output::None)
            .warn("the published topology is already active; nothing changed"));
    }
    let topology = Topology::from_toml(&published)
        .map_err(|e| ::cms::master::MasterError::BadTopology(e.to_string()))?;
    write_topology(master, &topology, "enabled the published topology", true).await
}

/// The Topology Builder edits and the `Set-Cs*` configuration cmdlets.
pub async fn edit(call: &Call<'_>) -> Reply {
    let master = master(call)?;
    let _guard = master.lock().await;
    let current = master.topology().await?;
    let edit = edit_for(call.inv, &current)?;
    let changed =
        topology::edit::apply(&current, &edit).map_err(|e| Refused::Conflict(e.to_string()))?;
    write_topology(master, &changed, &edit.describe(), true).await
}

/// The [`Edit`] a configuration cmdlet asks for.
fn edit_for(inv: &Invocation, current: &Topology) -> Result<Edit, Refused> {
    let text = |name: &str| inv.text(name).unwrap_or_default();
    let identity_fqdn = |name: &str| match inv.get(name) {
        Some(cmdlet::BoundValue::Identity { fqdn, .. }) => fqdn.clone(),
        Some(other) => {
            let t = other.to_text();
            t.split_once(':').map_or(t.clone(), |(_, f)| f.to_string())
        }
        None => String::new(),
    };
    Ok(match inv.cmdlet.name {
        "Set-CsEdgePoolNextHop" => Edit::EdgeNextHop {
            edge_pool: text("Identity"),
            next_hop: text("NextHopPool"),
        },
        "Enable-CsEdgePoolFederation" | "Disable-CsEdgePoolFederation" => Edit::EdgeFederation {
            edge_pool: text("Identity"),
            enabled: inv.cmdlet.name.starts_with("Enable"),
        },
        "Set-CsPoolEdgeAssociation" => Edit::PoolEdgeAssociation {
            pool: text("PoolFqdn"),
            edge_pool: text("EdgePoolFqdn"),
        },
        "Set-CsPoolBackupRelationship" => Edit::BackupRelationship {
            pool: text("PoolFqdn"),
            backup_pool: text("BackupPoolFqdn"),
        },
        "Set-CsRegistrar" => {
            let secs = |name: &str| -> Result<Option<u32>, Refused> {
                let bad = || Refused::BadRequest(format!("-{name} must be a number of seconds"));
                match inv.get(name) {
                    None => Ok(None),
                    Some(cmdlet::BoundValue::Int(n)) => {
                        u32::try_from(*n).map(Some).map_err(|_| bad())
                    }
                    Some(cmdlet::BoundValue::TimeSpan(d)) => Ok(Some(d.as_secs() as u32)),
                    Some(other) => other.to_text().parse().map(Some).map_err(|_| bad()),
                }
            };
            let automatic = match inv.get("EnableAutomaticFailover") {
                Some(cmdlet::BoundValue::Bool(b) | cmdlet::BoundValue::Switch(b)) => Some(*b),
                _ => None,
            };
            Edit::Registrar {
                pool: identity_fqdn("Identity"),
                failure_detection_interval_secs: secs("FailureDetectionInterval")?,
                failback_detection_interval_secs: secs("FailbackDetectionInterval")?,
                automatic_failover: automatic,
            }
        }
        "Set-CsEdgeServer" => {
            let ports: Vec<&str> = inv
                .args
                .iter()
                .map(|(n, _)| *n)
                .filter(|n| n.ends_with("Port") || n.ends_with("PortCount"))
                .collect();
            if !ports.is_empty() {
                return Err(Refused::Conflict(format!(
                    "-{} cannot be set per Edge pool in tandem: ports are deployment-wide, in the [ports] table of the topology; \
                     change them there and run Publish-CsTopology and Enable-CsTopology",
                    ports.join(", -")
                )));
            }
            let edge = identity_fqdn("Identity");
            let Some(next_hop) = inv.get("Registrar").map(|_| identity_fqdn("Registrar")) else {
                return Err(Refused::BadRequest(
                    "give -Registrar Registrar:<pool fqdn>, the Edge pool's new next hop".into(),
                ));
            };
            Edit::EdgeNextHop {
                edge_pool: edge_pool_of(current, &edge).unwrap_or(edge),
                next_hop,
            }
        }
        "Set-CsSite" => {
            let site = identity_fqdn("Identity");
            let site = if site.is_empty() {
                text("Identity")
            } else {
                site
            };
            let route = |name: &str| {
                inv.get(name).map(|_| {
                    let v = identity_fqdn(name);
                    (!v.is_empty() && !v.eq_ignore_ascii_case("$null")).then_some(v)
                })
            };
            let xmpp =
                route("XmppFederationRoute").or_else(|| route("XmppExternalFederationRoute"));
            match (route("FederationRoute"), xmpp) {
                (Some(route), None) => Edit::SiteFederationRoute { site, route },
                (None, Some(route)) => Edit::SiteXmppFederationRoute { site, route },
                (Some(_), Some(_)) => {
                    return Err(Refused::BadRequest(
                        "change one route per call: -FederationRoute, or -XmppFederationRoute"
                            .into(),
                    ));
                }
                (None, None) => {
                    return Err(Refused::BadRequest(
                        "nothing to change: give -FederationRoute or -XmppFederationRoute (-XmppExternalFederationRoute)".into(),
                    ));
                }
            }
        }
        "New-CsAllowedDomain" => {
            if inv.get("ProxyFqdn").is_some() {
                return Err(Refused::BadRequest(format!(
                    "-ProxyFqdn is not kept in tandem: a partner's Access Edge is found by the \
                     _sipfederationtls._tcp SRV record of its domain; run New-CsAllowedDomain -Identity {} \
                     without it, and publish the SRV record in the partner's DNS zone \
                     (Add-DnsServerResourceRecord -Srv). Nothing was changed",
                    text("Identity")
                )));
            }
            Edit::NewAllowedDomain {
                domain: text("Identity"),
            }
        }
        "Remove-CsAllowedDomain" => Edit::RemoveAllowedDomain {
            domain: text("Identity"),
        },
        "New-CsXmppAllowedPartner" => Edit::NewXmppPartner {
            domain: text("Identity"),
            change: xmpp_change(inv)?,
        },
        "Set-CsXmppAllowedPartner" => {
            let change = xmpp_change(inv)?;
            if change == topology::edit::XmppChange::default() {
                return Err(Refused::BadRequest(
                    "nothing to change: give -TlsNegotiation, -SaslNegotiation, -SupportDialbackNegotiation or -ProxyFqdn".into(),
                ));
            }
            Edit::SetXmppPartner {
                domain: text("Identity"),
                change,
            }
        }
        "Remove-CsXmppAllowedPartner" => Edit::RemoveXmppPartner {
            domain: text("Identity"),
        },
        other => {
            return Err(Refused::Unprocessable(format!(
                "{other} is not a topology edit"
            )));
        }
    })
}

/// The XMPP partner settings `New-`/`Set-CsXmppAllowedPartner` give.
fn xmpp_change(inv: &Invocation) -> Result<topology::edit::XmppChange, Refused> {
    let negotiation = |name: &str| {
        inv.text(name)
            .map(|t| {
                t.parse::<topology::Negotiation>()
                    .map_err(|e| Refused::BadRequest(format!("-{name}: {e}")))
            })
            .transpose()
    };
    let dialback = match inv.get("SupportDialbackNegotiation") {
        None => None,
        Some(cmdlet::BoundValue::Bool(b) | cmdlet::BoundValue::Switch(b)) => Some(*b),
        Some(other) => {
            return Err(Refused::BadRequest(format!(
                "-SupportDialbackNegotiation takes $true or $false, not {}",
                other.to_text()
            )));
        }
    };
    let proxy = inv.text("ProxyFqdn").map(|p| {
        let p = p.trim().trim_end_matches('.').to_ascii_lowercase();
        (!p.is_empty() && p != "$null").then_some(p)
    });
    Ok(topology::edit::XmppChange {
        tls_negotiation: negotiation("TlsNegotiation")?,
        sasl_negotiation: negotiation("SaslNegotiation")?,
        support_dialback: dialback,
        proxy_fqdn: proxy,
    })
}

/// `Get-CsManagementStoreReplicationStatus`: every replica's version, or the master's
/// state with `-CentralManagementStoreStatus`; what the replica knows when no master
/// answers.
pub async fn replication_status(call: &Call<'_>) -> Reply {
    let inv = call.inv;
    let Some(master) = &call.master else {
        let unavailable = call.unavailable.clone().unwrap_or_default();
        if !inv.switch("CentralManagementStoreStatus") {
            return Err(Refused::Unavailable(unavailable).into());
        }
        let state = call.node().replica.state().await?;
        let record = Record::new()
            .with("ActiveMasterFqdn", "")
            .with("ActiveFileTransferAgents", Field::List(vec![]))
            .with("ActiveReplicas", Field::List(vec![]))
            .with("DeletedReplicas", Field::List(vec![]))
            .with(
                "ActiveMasterLastHeartbeat",
                format_timestamp(state.last_heartbeat),
            )
            .with(
                "FileTransferAgentLastHeartbeat",
                format_timestamp(state.last_heartbeat),
            )
            .with("Epoch", state.epoch)
            .with("CurrentVersion", state.version);
        let note = format!(
            "{unavailable} Showing this server's local replica (version {}).",
            state.version
        );
        return Ok(InvokeResponse::records(vec![record]).warn(note));
    };
    let backend = master.backend();
    let current = backend.current_version().await?;
    let current_version = current.as_ref().map_or(0, |v| v.version);
    let statuses = backend.replica_statuses().await?;
    let topology = master.topology().await?;
    let targets = ::cms::master::targets(&topology);
    if inv.switch("CentralManagementStoreStatus") {
        let lease = backend.lease().await?;
        let now = call.node().clock.now_ms();
        let live = lease.as_ref().filter(|l| l.expires_at > now);
        let master_fqdn = live.map(|l| l.holder.clone()).unwrap_or_default();
        let ftas: Vec<Field> = if master.fta_running() && !master_fqdn.is_empty() {
            vec![master_fqdn.clone().into()]
        } else {
            vec![]
        };
        let deleted: Vec<Field> = statuses
            .iter()
            .filter(|s| !targets.iter().any(|t| t.fqdn.eq_ignore_ascii_case(&s.fqdn)))
            .map(|s| s.fqdn.clone().into())
            .collect();
        let last_report = statuses
            .iter()
            .map(|s| s.last_status_report)
            .max()
            .unwrap_or(0);
        let record = Record::new()
            .with("ActiveMasterFqdn", master_fqdn)
            .with("ActiveFileTransferAgents", Field::List(ftas))
            .with(
                "ActiveReplicas",
                Field::List(targets.iter().map(|t| t.fqdn.clone().into()).collect()),
            )
            .with("DeletedReplicas", Field::List(deleted))
            .with(
                "ActiveMasterLastHeartbeat",
                format_timestamp(live.map_or(0, |l| l.renewed_at)),
            )
            .with(
                "FileTransferAgentLastHeartbeat",
                format_timestamp(last_report),
            )
            .with("Epoch", live.map_or(0, |l| l.epoch))
            .with("CurrentVersion", current_version);
        // tandem's own: the witness, and the votes the active master holds (how long its
        // writes are covered, and what each voter said at the last renewal).
        let record = match &topology.deployment.cms_witness {
            None => record.with("Witness", ""),
            Some(witness) => {
                let quorum = master.quorum();
                let active = matches!(master.role(), ::cms::master::Role::Active { .. });
                record
                    .with("Witness", witness.clone())
                    .with(
                        "VotesValidForMs",
                        if active {
                            (quorum.until_ms - now).max(0)
                        } else {
                            0
                        },
                    )
                    .with("Votes", if active { quorum.heard } else { String::new() })
            }
        };
        return Ok(InvokeResponse::records(vec![record]));
    }
    let only = inv.text("ReplicaFqdn");
    let mut rows = Vec::new();
    for t in &targets {
        if only
            .as_deref()
            .is_some_and(|o| !o.eq_ignore_ascii_case(&t.fqdn))
        {
            continue;
        }
        let status = statuses
            .iter()
            .find(|s| s.fqdn.eq_ignore_ascii_case(&t.fqdn));
        let version = status.map_or(0, |s| s.version);
        let created = match version {
            0 => 0,
            v => backend.version(v).await?.map_or(0, |v| v.created_at),
        };
        rows.push(
            Record::new()
                .with("ReplicaFqdn", t.fqdn.clone())
                .with("UpToDate", status.is_some() && version >= current_version)
                .with(
                    "LastStatusReport",
                    format_timestamp(status.map_or(0, |s| s.last_status_report)),
                )
                .with("LastUpdateCreation", format_timestamp(created))
                .with("ProductVersion", t.product_version.clone())
                .with("Version", version)
                .with("VersionsBehind", current_version - version),
        );
    }
    if rows.is_empty()
        && let Some(o) = only
    {
        return Err(Refused::BadRequest(format!(
            "{o} is not a server of the topology; Get-CsManagementStoreReplicationStatus lists every replica"
        ))
        .into());
    }
    Ok(InvokeResponse::records(rows))
}

/// `Invoke-CsManagementStoreReplication`: a push round now.
pub async fn replicate(call: &Call<'_>) -> Reply {
    let master = master(call)?;
    let replica = call.inv.text("ReplicaFqdn");
    master.replicate_now(replica.as_deref()).await;
    Ok(InvokeResponse::of(Output::None))
}

fn write_export(inv: &Invocation, config: Configuration) -> Reply {
    let file = inv.text("FileName").unwrap_or_default();
    archive::write(Path::new(&file), &config, inv.switch("Force")).map_err(Refused::Conflict)?;
    // What was written, and where: said as the outcome, not as a warning.
    Ok(InvokeResponse::of(Output::Text(format!(
        "exported version {} ({} items) to {file}",
        config.version,
        config.items.len()
    ))))
}

/// `Export-CsConfiguration`, from the store or (`-LocalStore`) from the replica.
pub async fn export(call: &Call<'_>) -> Reply {
    match &call.master {
        Some(master) => export_from_master(master, call.inv, "").await,
        None => {
            let node = call.node();
            let state = node.replica.state().await?;
            let items = node.replica.store().items().await?;
            write_export(
                call.inv,
                Configuration {
                    format: 1,
                    version: state.version,
                    created_at: state.last_update_creation,
                    items,
                },
            )
        }
    }
}

/// `Export-CsLisConfiguration`: the `lis/` items of the store.
pub async fn export_lis(call: &Call<'_>) -> Reply {
    export_from_master(master(call)?, call.inv, keys::LIS_PREFIX).await
}

/// `Export-CsConfiguration` (everything) or `Export-CsLisConfiguration` (the items under
/// `prefix`), from the store itself.
async fn export_from_master(
    master: &::cms::master::Master,
    inv: &Invocation,
    prefix: &str,
) -> Reply {
    let current = master.backend().current_version().await?;
    let items = if prefix.is_empty() {
        master.backend().items().await
    } else {
        master.backend().items_with_prefix(prefix).await
    }?;
    let (version, created_at) = current.map_or((0, 0), |v| (v.version, v.created_at));
    write_export(
        inv,
        Configuration {
            format: 1,
            version,
            created_at,
            items,
        },
    )
}

/// The configuration in `-FileName`, checked: it parses and its topology is valid.
pub(crate) async fn read_import(inv: &Invocation) -> Result<Configuration, crate::Error> {
    let file = inv.text("FileName").unwrap_or_default();
    let path = std::path::PathBuf::from(&file);
    let config = archive::off_runtime(move || archive::read(&path))
        .await
        .map_err(Refused::BadRequest)?;
    let topology = config
        .items
        .iter()
        .find(|i| i.key == keys::TOPOLOGY_ACTIVE)
        .and_then(|i| i.value.as_deref())
        .ok_or_else(|| Refused::BadRequest(format!("{file} holds no active topology")))?;
    let topology = Topology::from_toml(topology)
        .map_err(|e| Refused::BadRequest(format!("the topology in {file} does not parse: {e}")))?;
    let report = topology::validate(&topology);
    if !report.is_valid() {
        return Err(Refused::Conflict(format!(
            "the topology in {file} is not valid ({}); nothing was imported",
            report.summary()
        ))
        .into());
    }
    Ok(config)
}

/// `Import-CsConfiguration`: into the store, or (`-LocalStore`) into this server's replica.
pub async fn import(call: &Call<'_>) -> Reply {
    let config = read_import(call.inv).await?;
    let Some(master) = &call.master else {
        call.node()
            .replica
            .import(config.version, config.created_at, &config.items)
            .await
            .map_err(|e| Refused::Conflict(e.to_string()))?;
        return Ok(InvokeResponse::of(Output::None).warn(format!(
            "this server's local replica now holds version {} ({} items)",
            config.version,
            config.items.len()
        )));
    };
    let _guard = master.lock().await;
    let existing = master.backend().items().await?;
    let changes = replacement(&config.items, existing);
    write_config(
        master,
        &changes,
        &format!("imported {}", call.inv.text("FileName").unwrap_or_default()),
    )
    .await
}

/// `Import-CsLisConfiguration`: the file's Location Information Service items replace the
/// store's.
pub async fn import_lis(call: &Call<'_>) -> Reply {
    let master = master(call)?;
    let file = call.inv.text("FileName").unwrap_or_default();
    let path = std::path::PathBuf::from(&file);
    let config = archive::off_runtime(move || archive::read_lis(&path))
        .await
        .map_err(Refused::BadRequest)?;
    let _guard = master.lock().await;
    let existing = master.backend().items_with_prefix(keys::LIS_PREFIX).await?;
    let changes = replacement(&config.items, existing);
    if changes.is_empty() {
        return Ok(InvokeResponse::of(Output::None));
    }
    write_config(master, &changes, &format!("imported {file}")).await
}

/// The changes that make a store's `existing` items exactly `items`: each of `items`
/// written, each existing key they lack deleted.
fn replacement(items: &[Item], existing: Vec<Item>) -> Vec<(String, Option<String>)> {
    let mut changes: Vec<(String, Option<String>)> = items
        .iter()
        .map(|i| (i.key.clone(), i.value.clone()))
        .collect();
    for item in existing {
        if !items.iter().any(|i| i.key == item.key) {
            changes.push((item.key, None));
        }
    }
    changes
}

/// Writes `changes` as one CMS version: the answer of a cmdlet that only changes
/// configuration (no output; the version, so the caller can wait for its replica).
pub(crate) async fn write_config(
    master: &::cms::master::Master,
    changes: &[(String, Option<String>)],
    description: &str,
) -> Reply {
    let info = master.write(changes, description).await?;
    Ok(InvokeResponse {
        output: Output::None,
        warnings: Vec::new(),
        cms_version: Some(info.version),
    })
}
