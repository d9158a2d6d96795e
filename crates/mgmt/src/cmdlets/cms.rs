//! The Central Management store cmdlets: `Invoke-CsManagementServerFailover` (the engine
//! runs it), the Back End mirror's `Get-CsDatabaseMirrorState` and
//! `Invoke-CsDatabaseFailover` (the store keeps the mirror, see `store::mirror`), and the
//! unpaired path's
//! `Install-CsDatabase -CentralManagementDatabase`, `Move-CsManagementServer` and
//! `Bootstrapper /Setup`.

use ::cms::keys;
use api::InvokeResponse;
use cmdlet::{Field, Invocation, Output, Record};
use engine::cms_failover::{CmsFailoverRequest, MoveRequest, Said};
use store::format_timestamp;
use topology::Topology;

use crate::Refused;
use crate::archive;
use crate::call::{Call, Reply};

/// The documented value when a database has no mirror.
pub const NOT_MIRRORED: &str = "DatabaseInaccessibleOrMirroringNotEnabled";

fn said(s: Said) -> InvokeResponse {
    InvokeResponse {
        warnings: s.warnings,
        ..InvokeResponse::text(s.text)
    }
}

/// `Invoke-CsManagementServerFailover`.
pub async fn failover(call: &Call<'_>) -> Reply {
    let inv = call.inv;
    let request = CmsFailoverRequest {
        restore: inv.switch("Restore"),
        what_if: inv.switch("WhatIf"),
        force: inv.switch("Force"),
        report: inv.text("Report"),
        backup_sql_fqdn: inv.text("BackupSqlServerFqdn"),
        backup_sql_instance: inv.text("BackupSqlInstanceName"),
        backup_mirror_fqdn: inv.text("BackupMirrorSqlServerFqdn"),
        backup_mirror_instance: inv.text("BackupMirrorSqlInstanceName"),
    };
    Ok(said(call.mgmt.engine.cms_failover(request).await?))
}

/// `Get-CsDatabaseMirrorState`, on a Front End of the pool: which copy of the Back End is
/// principal and how far the mirror is behind, read from the copies themselves (see
/// `store::mirror`), with the CMS copy's role, version and lost versions.
pub async fn mirror_state(call: &Call<'_>) -> Reply {
    let node = call.node();
    let topology = node.topology();
    let pool = topology
        .front_end_pool(&node.pool)
        .expect("a Front End's pool is in its topology");
    let kind = call
        .inv
        .text("DatabaseType")
        .unwrap_or_else(|| "All".into())
        .to_ascii_lowercase();
    let mut databases: Vec<(&str, &str)> = Vec::new();
    if kind == "all" || kind == "centralmgmt" || kind == "cms" {
        databases.push(("xds", "CentralMgmt"));
        databases.push(("lis", "CentralMgmt"));
    }
    if kind == "all" || kind == "user" {
        databases.push(("rtcxds", "User"));
    }
    if databases.is_empty() {
        return Err(Refused::Conflict(format!(
            "{} keeps no {kind} database: tandem's Back End holds the CentralMgmt and User databases",
            pool.back_end.server_fqdn
        ))
        .into());
    }
    let be = node
        .backend
        .as_ref()
        .ok_or_else(|| Refused::Conflict(format!("{} is not a Front End", node.fqdn)))?;
    let mirror = match &pool.back_end.mirror {
        Some(_) => be.mirror_state().await?,
        None => None,
    };
    // With no copy of the Back End taking writes (its principal lost, the failover not
    // run yet), the mirror's state is all there is to say: the runbook reads it to decide.
    if mirror.as_ref().is_some_and(|m| !m.principal_answers) {
        return Ok(InvokeResponse::records(
            databases
                .into_iter()
                .map(|(name, _)| mirror_record(name, pool, mirror.as_ref()))
                .collect(),
        ));
    }
    let role = be.cms_role().await?;
    let version = be.current_version().await?.map_or(0, |v| v.version);
    // Versions a master of this store committed that never reached the store that
    // replaced it (recorded when it was fenced).
    let lost: Vec<String> = be
        .lost_cms_versions()
        .await?
        .iter()
        .map(|l| {
            let dropped = dr::state::dropped_records(l.keys.iter().map(String::as_str));
            format!(
                "{} ({}, {}, keys {}{})",
                l.version,
                l.description,
                format_timestamp(l.created_at),
                l.keys.join(" "),
                if dropped.is_empty() {
                    String::new()
                } else {
                    format!("; dropped {}", dropped.join(", "))
                }
            )
        })
        .collect();
    let rows = databases
        .into_iter()
        .map(|(name, kind)| {
            let mut r = mirror_record(name, pool, mirror.as_ref());
            if kind == "CentralMgmt" {
                r = r
                    .with("CentralManagementStore", role.mode.as_str())
                    .with("CentralManagementStoreVersion", version)
                    .with(
                        "LostVersions",
                        Field::List(lost.iter().map(|l| l.clone().into()).collect()),
                    );
            }
            r
        })
        .collect();
    Ok(InvokeResponse::records(rows))
}

/// One database's row of `Get-CsDatabaseMirrorState`: which copy is principal and the
/// mirror's state, in the product's words and in numbers.
fn mirror_record(
    name: &str,
    pool: &topology::FrontEndPool,
    mirror: Option<&store::MirrorState>,
) -> Record {
    let (on_primary, on_mirror, status) = match mirror {
        None => (NOT_MIRRORED, NOT_MIRRORED, ""),
        Some(m) => {
            // The copy that does not answer is inaccessible, as SQL Server says.
            let other = if m.mirror_writes.is_some() {
                "Mirror"
            } else {
                NOT_MIRRORED
            };
            let principal = if m.principal_answers {
                "Principal"
            } else {
                NOT_MIRRORED
            };
            match m.principal {
                store::Copy::Primary => (principal, other, m.status()),
                store::Copy::Mirror => (other, principal, m.status()),
            }
        }
    };
    let (principal_fqdn, principal_instance) =
        copy_server(pool, mirror.map_or(store::Copy::Primary, |m| m.principal));
    let mut r = Record::new()
        .with("DatabaseName", name)
        .with("StateOnPrimary", on_primary)
        .with("StateOnMirror", on_mirror)
        .with("MirroringStatusOnPrimary", status)
        .with("MirroringStatusOnSecondary", status)
        .with("PrincipalSqlServerFqdn", principal_fqdn)
        .with("PrincipalSqlInstanceName", principal_instance)
        .with(
            "MirrorSqlServerFqdn",
            pool.back_end
                .mirror
                .as_ref()
                .map_or(String::new(), |m| m.server_fqdn.clone()),
        );
    if let Some(m) = mirror {
        // Numbers, not only state names: how far behind, in what term.
        r = r
            .with("MirroringMode", m.mode.clone())
            .with(
                "MirrorLagBytes",
                m.lag_bytes.map_or(Field::Null, Field::from),
            )
            .with(
                "MirrorLagMilliseconds",
                m.lag_ms.map_or(Field::Null, Field::from),
            )
            .with(
                "PrincipalWrites",
                m.principal_writes.map_or(Field::Null, Field::from),
            )
            .with(
                "MirrorWrites",
                m.mirror_writes.map_or(Field::Null, Field::from),
            )
            .with(
                "MirrorLagWrites",
                m.lag_writes().map_or(Field::Null, Field::from),
            )
            .with("FailoverTerm", m.term)
            .with(
                "LastFailoverLostWrites",
                m.last_failover_lost_writes.map_or(Field::Null, Field::from),
            )
            .with("MirrorProblem", m.problem.clone().unwrap_or_default());
    }
    r
}

/// The SQL server and instance that hold `copy` of the pool's Back End (the primary when
/// the topology names no mirror).
fn copy_server(pool: &topology::FrontEndPool, copy: store::Copy) -> (&str, &str) {
    match (copy, &pool.back_end.mirror) {
        (store::Copy::Mirror, Some(m)) => (&m.server_fqdn, &m.instance),
        _ => (&pool.back_end.server_fqdn, &pool.back_end.instance),
    }
}

/// `Invoke-CsDatabaseFailover`, on a Front End of the pool: makes the primary or the
/// mirror copy of its Back End the principal (see `store::mirror`).
pub async fn database_failover(call: &Call<'_>) -> Reply {
    let node = call.node();
    let topology = node.topology();
    let pool = topology
        .front_end_pool(&node.pool)
        .expect("a Front End's pool is in its topology");
    if pool.back_end.mirror.is_none() {
        return Err(Refused::Conflict(format!(
            "{}'s Back End {} has no mirror in the topology: there is nothing to fail over to (a mirror is [front_end_pool.back_end.mirror] in the topology)",
            pool.fqdn, pool.back_end.server_fqdn
        ))
        .into());
    }
    let to = call
        .inv
        .text("NewPrincipal")
        .as_deref()
        .and_then(store::Copy::parse)
        .ok_or_else(|| Refused::Conflict("-NewPrincipal is Primary or Mirror".into()))?;
    let be = node
        .backend
        .as_ref()
        .ok_or_else(|| Refused::Conflict(format!("{} is not a Front End", node.fqdn)))?;
    let done = be
        .fail_over_database(to, call.inv.switch("Force"))
        .await
        // A failover the copies refuse, or one that cannot reach them, is the operator's
        // to resolve: a conflict either way.
        .map_err(|e| Refused::Conflict(e.to_string()))?;
    let fqdn_of = |c: store::Copy| copy_server(pool, c).0;
    tracing::warn!(
        pool = %pool.fqdn,
        from = done.from.as_str(),
        to = done.to.as_str(),
        term = done.term,
        "the Back End failed over"
    );
    let mut reply = InvokeResponse::records(vec![
        Record::new()
            .with("PoolFqdn", pool.fqdn.clone())
            .with("From", done.from.as_str())
            .with("To", done.to.as_str())
            .with("PrincipalSqlServerFqdn", fqdn_of(done.to))
            .with("Term", done.term)
            .with(
                "LostWrites",
                done.lost_writes.map_or(Field::Null, Field::from),
            )
            .with("OldPrincipalInStep", done.old_principal_in_step),
    ]);
    if !done.old_principal_in_step {
        reply.warnings.push(format!(
            "{} is fenced: it takes no writes, and is no mirror until it is rebuilt as the standby of {} \
             (on PostgreSQL: pg_basebackup -R or pg_rewind from the new principal; in a lab: tandem lab start {}). \
             Get-CsDatabaseMirrorState shows when the mirror is back",
            fqdn_of(done.from),
            fqdn_of(done.to),
            fqdn_of(done.from)
        ));
    }
    Ok(reply)
}

/// Where `Install-CsDatabase` runs: a Front End of the pool whose Back End is
/// `-SqlServerFqdn` (the dispatcher sends it there).
pub fn pool_of_database(topology: &Topology, inv: &Invocation) -> Result<String, Refused> {
    if !inv.switch("CentralManagementDatabase") {
        return Err(Refused::Conflict(
            "a pool's Back End databases are created by its Front Ends when they first start; \
             Install-CsDatabase changes something only with -CentralManagementDatabase"
                .into(),
        ));
    }
    let sql = inv.text("SqlServerFqdn").unwrap_or_default();
    let pool = topology.front_end_pools.iter().find(|p| {
        p.back_end.server_fqdn.eq_ignore_ascii_case(&sql)
            || p.back_end
                .mirror
                .as_ref()
                .is_some_and(|m| m.server_fqdn.eq_ignore_ascii_case(&sql))
    });
    let Some(pool) = pool else {
        return Err(Refused::Conflict(format!(
            "{sql} is not the Back End of a Front End pool of the topology; Get-CsService -CentralManagementDatabase lists them"
        )));
    };
    if !pool.back_end.server_fqdn.eq_ignore_ascii_case(&sql) {
        return Err(Refused::Conflict(format!(
            "{sql} is the mirror of {}'s Back End, and tandem does not mirror Back Ends: install on the primary, {}",
            pool.fqdn, pool.back_end.server_fqdn
        )));
    }
    if let Some(instance) = inv.text("SqlInstanceName")
        && !instance.eq_ignore_ascii_case(&pool.back_end.instance)
    {
        return Err(Refused::Conflict(format!(
            "{sql} has no instance {instance}: its instance is {}",
            pool.back_end.instance
        )));
    }
    Ok(pool.fqdn.clone())
}

/// `Install-CsDatabase -CentralManagementDatabase`, on a Front End of the pool whose Back
/// End it names: an empty store, never over the active one.
pub async fn install_database(call: &Call<'_>) -> Reply {
    let node = call.node();
    let inv = call.inv;
    let be = node
        .backend
        .as_ref()
        .ok_or_else(|| Refused::Conflict(format!("{} is not a Front End", node.fqdn)))?;
    let sql = inv.text("SqlServerFqdn").unwrap_or_default();
    let role = be
        .install_cms(inv.switch("Clean"))
        .await?
        .map_err(|e| Refused::Conflict(e.to_string()))?;
    Ok(InvokeResponse::text(format!(
        "Installed an empty Central Management database in {sql}\\{} ({}); it is a {} store. \
         Next, on a Front End of {}: Move-CsManagementServer -ConfigurationFileName <Export-CsConfiguration zip> -Force",
        inv.text("SqlInstanceName")
            .unwrap_or_else(|| "default instance".into()),
        node.pool,
        role.mode.as_str(),
        node.pool
    )))
}

/// `Move-CsManagementServer`: every file is read and checked before the engine touches
/// anything.
pub async fn move_management_server(call: &Call<'_>) -> Reply {
    let inv = call.inv;
    let from_file = match inv.text("ConfigurationFileName") {
        Some(file) => {
            let path = std::path::PathBuf::from(&file);
            let config = archive::off_runtime(move || archive::read(&path))
                .await
                .map_err(Refused::BadRequest)?;
            if !config
                .items
                .iter()
                .any(|i| i.key == keys::TOPOLOGY_ACTIVE && i.value.is_some())
            {
                return Err(Refused::BadRequest(format!(
                    "{file} holds no active topology; nothing was moved"
                ))
                .into());
            }
            Some((config.items, config.version))
        }
        None => None,
    };
    let lis = match inv.text("LisConfigurationFileName") {
        Some(file) => Some(
            archive::off_runtime({
                let path = std::path::PathBuf::from(&file);
                move || archive::read_lis(&path)
            })
            .await
            .map_err(|e| {
                Refused::BadRequest(format!("-LisConfigurationFileName: {e}; nothing was moved"))
            })?
            .items,
        ),
        None => None,
    };
    let request = MoveRequest {
        target: inv.text("TargetFqdn"),
        force: inv.switch("Force"),
        from_file,
        lis,
    };
    Ok(said(
        call.mgmt.engine.move_management_server(request).await?,
    ))
}

/// `Bootstrapper [/Setup]`: the Central Management services where the topology needs them,
/// removed elsewhere.
pub async fn bootstrapper(call: &Call<'_>) -> Reply {
    let node = call.node();
    let topology = node.topology();
    let mut rows = Vec::new();
    let component = |name: &str, state: &str, detail: String| {
        Record::new()
            .with("Computer", node.fqdn.clone())
            .with("Component", name)
            .with("State", state)
            .with("Detail", detail)
    };
    rows.push(component(
        "Replica Replicator Agent",
        "Installed",
        format!("local replica at version {}", node.replica.version()),
    ));
    if !call.inv.switch("Setup") {
        rows.push(component(
            "Central Management services",
            if node.master().is_some() {
                "Installed"
            } else {
                "NotInstalled"
            },
            "add /Setup to install what this server's role needs".into(),
        ));
        return Ok(InvokeResponse::records(rows));
    }
    let wanted = node.backend.is_some() && node::hosts_cms_services(&topology, &node.pool);
    match (wanted, node.master()) {
        (true, _) => {
            let (m, fresh) = node.install_master().expect("a Front End has a Back End");
            m.set_master_running(true).await;
            let mode = m.backend().cms_role().await?.mode;
            rows.push(component(
                "Central Management services",
                if fresh { "InstalledNow" } else { "Installed" },
                format!(
                    "Master Replicator and File Transfer Agent on {} ({} store)",
                    node.pool,
                    mode.as_str()
                ),
            ));
        }
        (false, Some(m)) => {
            m.set_master_running(false).await;
            rows.push(component(
                "Central Management services",
                "Removed",
                format!(
                    "{} neither hosts the Central Management store ({}) nor holds its standby",
                    node.pool, topology.deployment.cms_pool
                ),
            ));
        }
        (false, None) => rows.push(component(
            "Central Management services",
            "NotNeeded",
            format!(
                "{} neither hosts the Central Management store ({}) nor holds its standby",
                node.fqdn, topology.deployment.cms_pool
            ),
        )),
    }
    Ok(InvokeResponse {
        output: Output::Records(rows),
        ..InvokeResponse::of(Output::None)
    })
}
