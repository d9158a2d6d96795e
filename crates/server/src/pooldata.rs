//! Cmdlets about one pool's stored data and its Backup Service: `Get-CsBackupServiceStatus`,
//! `Invoke-CsBackupServiceSync`, `Invoke-CsStorageServiceFlush`,
//! `Debug-CsInterPoolReplication`, `Export-CsUserData` and `Import-CsUserData`.
//!
//! They run on a Front End of the pool `-PoolFqdn` names, because only that pool's servers
//! open its Back End; a call made elsewhere is forwarded there. What they need from the
//! partner pool (its side of the status, its backup copy's checksums) they ask over the
//! backup link, never by opening the partner's database.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use axum::http::StatusCode;
use backup::Module;
use backup::protocol::{CHECKSUMS_PATH, Checksums, PoolStatus, STATUS_PATH};
use backup::status::{ExportFacts, estimated_rpo_secs, export_status};
use cmdlet::{Field, Invocation, Output, Record};
use store::{UserChange, UserItem, format_timestamp, now_ms};

use crate::Server;
use crate::api::{InvokeRequest, InvokeResponse};
use crate::archive::{self, UserData};
use crate::http::ApiError;

type Reply = Result<InvokeResponse, ApiError>;

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn records(records: Vec<Record>) -> InvokeResponse {
    InvokeResponse {
        output: Output::Records(records),
        warnings: vec![],
        cms_version: None,
    }
}

/// Runs the cmdlet here when this server is a Front End of `-PoolFqdn`, or forwards it to
/// one that answers.
pub(crate) async fn route(
    server: &Server,
    request: &InvokeRequest,
    inv: &Invocation,
    forwarded: bool,
) -> Reply {
    let pool = inv.text("PoolFqdn").unwrap_or_default();
    crate::exec::on_front_end_of(server, &pool, request, forwarded, here(server, inv)).await
}

async fn here(server: &Server, inv: &Invocation) -> Reply {
    let service = server.backup.as_ref().expect("checked by route");
    let modules = selected_modules(inv)?;
    match inv.cmdlet.name {
        "Get-CsBackupServiceStatus" => status(server, &modules).await,
        "Invoke-CsBackupServiceSync" => {
            let exported: Vec<Module> = modules
                .iter()
                .copied()
                .filter(|m| service.exports(*m))
                .collect();
            if service.partner().is_none() {
                return Err(not_paired(&server.pool));
            }
            for m in &exported {
                service.request_resync(*m).await.map_err(internal)?;
            }
            let left = wait_for_final(service, &exported, Duration::from_secs(60)).await?;
            let mut reply = InvokeResponse {
                output: Output::None,
                warnings: vec![],
                cms_version: None,
            };
            if left > 0 {
                reply.warnings.push(format!(
                    "the resync was started but {left} changes are still waiting after 60 seconds; Get-CsBackupServiceStatus -PoolFqdn {} shows the progress",
                    server.pool
                ));
            }
            Ok(reply)
        }
        "Invoke-CsStorageServiceFlush" => {
            let full = inv
                .text("FlushType")
                .is_some_and(|t| t.eq_ignore_ascii_case("FullFlush"));
            let wait = match inv.get("WaitTime") {
                Some(cmdlet::BoundValue::TimeSpan(d)) => *d,
                _ => Duration::from_secs(30),
            };
            service.wake();
            let modules = [Module::PresenceFocus, Module::DataConf];
            let left = if full {
                wait_for_final(service, &modules, wait).await?
            } else {
                pending(service, &modules).await?
            };
            Ok(InvokeResponse {
                output: Output::Text(format!(
                    "Storage Service flush ({}) on {}: every write is already committed to the Back End when it is acknowledged; \
                     the Backup Service was asked to ship now and {left} changes are still waiting to reach {}.",
                    if full { "FullFlush" } else { "SteadyState" },
                    server.pool,
                    service.partner().unwrap_or_else(|| "no backup pool".into())
                )),
                warnings: vec![],
                cms_version: None,
            })
        }
        "Debug-CsInterPoolReplication" => debug_replication(server, &modules).await,
        "Export-CsUserData" => export_user_data(server, inv).await,
        "Import-CsUserData" => import_user_data(server, inv).await,
        other => Err(internal(format!("{other} is not a pool data cmdlet"))),
    }
}

fn not_paired(pool: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        format!(
            "{pool} has no backup pool; pair it first with Set-CsPoolBackupRelationship -PoolFqdn {pool} -BackupPoolFqdn <pool>"
        ),
    )
}

fn selected_modules(inv: &Invocation) -> Result<Vec<Module>, ApiError> {
    let mut modules = Module::select(inv.text("BackupModule").as_deref());
    if let Some(category) = inv.text("Category") {
        if category.eq_ignore_ascii_case("RGS") {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "tandem has no Response Group service, so there is no RGS backup module; use -Category UserData or CMS",
            ));
        }
        modules.retain(|m| m.category().eq_ignore_ascii_case(&category));
    }
    Ok(modules)
}

/// The changes of `modules` still to ship, and whether a requested resync is still to run.
fn backlog(status: &PoolStatus, modules: &[Module]) -> (i64, bool) {
    status
        .exports
        .iter()
        .filter(|e| e.applicable && modules.iter().any(|m| m.short_name() == e.module))
        .fold((0, false), |(pending, resync), e| {
            (pending + e.pending, resync || e.resync)
        })
}

async fn pending(
    service: &backup::service::BackupService,
    modules: &[Module],
) -> Result<i64, ApiError> {
    let status = service.local_status().await.map_err(internal)?;
    Ok(backlog(&status, modules).0)
}

/// Waits until `modules` have nothing left to ship (FinalState) or `wait` passes; returns
/// how many changes are still pending.
async fn wait_for_final(
    service: &backup::service::BackupService,
    modules: &[Module],
    wait: Duration,
) -> Result<i64, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let status = service.local_status().await.map_err(internal)?;
        let (left, resync) = backlog(&status, modules);
        if left == 0 && !resync {
            return Ok(0);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(left.max(1));
        }
        service.wake();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asks a Front End of `pool` over the backup link.
pub(crate) async fn ask_partner<T: serde::de::DeserializeOwned>(
    server: &Server,
    pool: &str,
    path_and_query: &str,
) -> Result<T, String> {
    let topology = server.replica.topology();
    let mut last = format!("{pool} has no Front End servers");
    for base in backup::service::backup_endpoints(&topology, pool) {
        let result = server
            .client
            .get(format!("{base}{path_and_query}"))
            .header(cms::TOKEN_HEADER, cms::bearer(&server.token))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        match result {
            Ok(r) if r.status().is_success() => match r.json().await {
                Ok(v) => return Ok(v),
                Err(e) => last = format!("{base}: {e}"),
            },
            Ok(r) => last = format!("{base} answered {}", r.status()),
            Err(e) => last = format!("{base}: {e}"),
        }
    }
    Err(last)
}

/// The per-user checksums of the backup copy `partner` holds of this pool's `module`.
pub(crate) async fn backup_copy_checksums(
    server: &Server,
    partner: &str,
    module: Module,
) -> Result<Checksums, ApiError> {
    ask_partner(
        server,
        partner,
        &format!(
            "{CHECKSUMS_PATH}?source={}&module={}",
            server.pool,
            module.short_name()
        ),
    )
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{partner} does not answer: {e}"),
        )
    })
}

async fn status(server: &Server, modules: &[Module]) -> Reply {
    let service = server.backup.as_ref().expect("checked by route");
    let mine = service.local_status().await.map_err(internal)?;
    let partner = match &mine.partner {
        Some(p) => Some((
            p.clone(),
            ask_partner::<PoolStatus>(server, p, STATUS_PATH).await,
        )),
        None => None,
    };
    let mut rows = Vec::new();
    let Some((partner_pool, theirs)) = partner else {
        for m in modules {
            rows.push(
                status_row(m, &mine.pool, "", None, None, mine.sync_interval_secs)
                    .with("Error", "the pool has no backup pool"),
            );
        }
        return Ok(records(rows));
    };
    for m in modules {
        // This pool to the partner.
        let import = theirs.as_ref().ok().and_then(|t| {
            t.imports
                .iter()
                .find(|i| i.module == m.short_name())
                .cloned()
        });
        let export = mine.exports.iter().find(|e| e.module == m.short_name());
        let mut row = status_row(
            m,
            &mine.pool,
            &partner_pool,
            export,
            Some(import.is_some()),
            mine.sync_interval_secs,
        );
        if let Err(e) = &theirs {
            row = row.with("Error", format!("{partner_pool} does not answer: {e}"));
        }
        rows.push(row);
        // The partner to this pool.
        match &theirs {
            Ok(t) => {
                let export = t.exports.iter().find(|e| e.module == m.short_name());
                let imported = mine.imports.iter().any(|i| i.module == m.short_name());
                rows.push(status_row(
                    m,
                    &partner_pool,
                    &mine.pool,
                    export,
                    Some(imported),
                    mine.sync_interval_secs,
                ));
            }
            Err(e) => rows.push(
                status_row(
                    m,
                    &partner_pool,
                    &mine.pool,
                    None,
                    Some(true),
                    mine.sync_interval_secs,
                )
                .with("ExportStatus", "ErrorState")
                .with("Error", format!("{partner_pool} does not answer: {e}")),
            ),
        }
    }
    Ok(records(rows))
}

fn status_row(
    module: &Module,
    source: &str,
    target: &str,
    export: Option<&backup::protocol::ExportReport>,
    import_ok: Option<bool>,
    sync_interval_secs: u64,
) -> Record {
    let now = now_ms();
    let facts = export.map_or(
        ExportFacts {
            applicable: false,
            pending: 0,
            oldest_pending_ms: None,
            failing: false,
        },
        |e| ExportFacts {
            applicable: e.applicable,
            pending: e.pending,
            oldest_pending_ms: e.oldest_pending_ms,
            failing: e.last_error.is_some(),
        },
    );
    let (state, lag) = export_status(facts, now, sync_interval_secs);
    let rpo = estimated_rpo_secs(state, lag, backup::service::POLL.as_secs_f64());
    let import = match (facts.applicable, import_ok) {
        (true, Some(false)) => "ErrorState",
        _ => "NormalState",
    };
    Record::new()
        .with("BackupModule", module.long_name())
        .with("SourcePoolFqdn", source.to_string())
        .with("TargetPoolFqdn", target.to_string())
        .with("ExportStatus", state.as_str())
        .with("ImportStatus", import)
        .with("PendingChanges", facts.pending)
        .with("LagSeconds", Field::Text(format!("{lag:.3}")))
        .with(
            "LastSyncTime",
            export
                .and_then(|e| e.last_sync_at)
                .map(format_timestamp)
                .unwrap_or_default(),
        )
        .with(
            "EstimatedRpoSeconds",
            Field::Text(if facts.applicable {
                format!("{rpo:.3}")
            } else {
                String::new()
            }),
        )
}

async fn debug_replication(server: &Server, modules: &[Module]) -> Reply {
    let service = server.backup.as_ref().expect("checked by route");
    let Some(partner) = service.partner() else {
        return Err(not_paired(&server.pool));
    };
    let mine = service.local_status().await.map_err(internal)?;
    let mut rows = Vec::new();
    for m in modules {
        let pending = mine
            .exports
            .iter()
            .find(|e| e.module == m.short_name())
            .map_or(0, |e| e.pending);
        let row = Record::new()
            .with("BackupModule", m.long_name())
            .with("PoolFqdn", server.pool.clone())
            .with("BackupPoolFqdn", partner.clone());
        if *m == Module::CmsMaster {
            if !service.exports(*m) {
                rows.push(
                    row.with(
                        "Result",
                        "Skipped: the Central Management store is not on this pool",
                    )
                    .with("Mismatches", 0i64),
                );
                continue;
            }
            let theirs = ask_partner::<PoolStatus>(server, &partner, STATUS_PATH)
                .await
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("{partner} does not answer: {e}"),
                    )
                })?;
            let standby = theirs
                .imports
                .iter()
                .find(|i| i.module == m.short_name())
                .map_or(0, |i| i.applied_seq);
            let head = mine
                .exports
                .iter()
                .find(|e| e.module == m.short_name())
                .map_or(0, |e| e.head_seq);
            let ok = standby == head;
            rows.push(
                row.with("PrimaryVersion", head)
                    .with("BackupVersion", standby)
                    .with("Mismatches", i64::from(!ok))
                    .with(
                        "Result",
                        if ok {
                            "The standby Central Management store matches the active one."
                                .to_string()
                        } else {
                            format!(
                                "The standby is at version {standby}, the active store at {head}."
                            )
                        },
                    ),
            );
            continue;
        }
        let primary = service.primary_checksums(*m).await.map_err(internal)?;
        let backup = backup_copy_checksums(server, &partner, *m).await?;
        let bad = backup::service::mismatches(&primary, &backup);
        let compared = primary
            .keys()
            .chain(backup.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        rows.push(
            row.with("UsersCompared", compared as i64)
                .with("Mismatches", bad.len() as i64)
                .with("PendingChanges", pending)
                .with("MismatchedUsers", Field::List(bad.iter().cloned().map(Field::from).collect()))
                .with(
                    "Result",
                    if bad.is_empty() {
                        "No mismatch: the backup copy matches the primary.".to_string()
                    } else if pending > 0 {
                        format!("{} users differ; {pending} changes are still being shipped, so run it again once Get-CsBackupServiceStatus shows FinalState.", bad.len())
                    } else {
                        format!("{} users differ; Invoke-CsBackupServiceSync -PoolFqdn {} -BackupModule {} resynchronises them.", bad.len(), server.pool, m.long_name())
                    },
                ),
        );
    }
    Ok(records(rows))
}

async fn export_user_data(server: &Server, inv: &Invocation) -> Reply {
    let be = server.backend.as_ref().expect("a Front End has a Back End");
    let file = inv.text("FileName").unwrap_or_default();
    let path = Path::new(&file);
    if path.exists() && !inv.switch("Force") {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{file} already exists; choose another -FileName"),
        ));
    }
    let items = be.all_user_items(None).await.map_err(internal)?;
    let mut files = BTreeMap::new();
    for item in &items {
        if let Some(sha) = backup::service::content_sha(&item.value)
            && let Some(bytes) = be.get_file(&sha).await
        {
            files.insert(sha, bytes);
        }
    }
    let export = UserData {
        format: 1,
        pool: server.pool.clone(),
        created_at: now_ms(),
        items,
    };
    let users = export
        .items
        .iter()
        .map(|i| i.sip.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let count = export.items.len();
    archive::write_user_data(path, &export, &files)
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, e))?;
    Ok(InvokeResponse {
        output: Output::None,
        warnings: vec![format!(
            "exported {count} items of {users} users and {} files of {} to {file}",
            files.len(),
            server.pool
        )],
        cms_version: None,
    })
}

async fn import_user_data(server: &Server, inv: &Invocation) -> Reply {
    let be = server.backend.as_ref().expect("a Front End has a Back End");
    let file = inv.text("FileName").unwrap_or_default();
    let (export, files) = archive::read_user_data(Path::new(&file))
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    // Only users homed here may be imported here: their data lives in their home pool.
    let replica = server.replica.store();
    let mut by_user: BTreeMap<String, Vec<UserItem>> = BTreeMap::new();
    for item in export.items {
        by_user.entry(item.sip.clone()).or_default().push(item);
    }
    for sip in by_user.keys() {
        match crate::users::lookup(replica, sip).await {
            Some(u) if u.registrar_pool.eq_ignore_ascii_case(&server.pool) => {}
            Some(u) => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "{sip} is homed on {}, not {}; nothing was imported. Import the file with -PoolFqdn {}",
                        u.registrar_pool, server.pool, u.registrar_pool
                    ),
                ));
            }
            None => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "{sip} is not an enabled user; nothing was imported. Enable-CsUser enables it"
                    ),
                ));
            }
        }
    }
    for bytes in files.values() {
        be.put_file(bytes).await.map_err(internal)?;
    }
    let mut count = 0;
    for (sip, items) in &by_user {
        let current = be.user_items(sip).await.map_err(internal)?;
        let mut changes: Vec<UserChange> = current
            .iter()
            .filter(|c| !items.iter().any(|i| i.key == c.key))
            .map(|c| UserChange {
                module: c.module.clone(),
                key: c.key.clone(),
                value: None,
            })
            .collect();
        changes.extend(items.iter().map(|i| UserChange {
            module: i.module.clone(),
            key: i.key.clone(),
            value: Some(i.value.clone()),
        }));
        count += items.len();
        let home = crate::users::lookup(server.replica.store(), sip)
            .await
            .map(|u| u.registrar_pool)
            .unwrap_or_else(|| server.pool.clone());
        be.write_user(&home, sip, &changes).await.map_err(|e| {
            if e.fenced_reason().is_some() {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            } else {
                internal(e)
            }
        })?;
    }
    if let Some(service) = &server.backup {
        service.wake();
    }
    Ok(InvokeResponse {
        output: Output::None,
        warnings: vec![format!(
            "imported {count} items of {} users into {}",
            by_user.len(),
            server.pool
        )],
        cms_version: None,
    })
}
