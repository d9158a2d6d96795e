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

use api::InvokeResponse;
use backup::Module;
use backup::protocol::{CHECKSUMS_PATH, Checksums, PoolStatus, STATUS_PATH};
use backup::service::BackupService;
use backup::status::{ExportFacts, estimated_rpo_secs, export_status};
use clock::Backoff;
use cmdlet::{Field, Invocation, Output, Record};
use node::Node;
use store::{UserChange, UserItem, format_timestamp};

use crate::archive::{self, UserData};
use crate::call::{Call, Reply};
use crate::{Error, Refused};

fn records(records: Vec<Record>) -> InvokeResponse {
    InvokeResponse::records(records)
}

/// The Backup Service of this Front End (the dispatcher runs these cmdlets on one).
fn service(node: &Node) -> Result<&BackupService, Error> {
    node.backup
        .as_ref()
        .ok_or_else(|| Refused::Conflict(format!("{} runs no Backup Service", node.fqdn)).into())
}

/// `Invoke-CsBackupServiceSync`: a full resync of the selected modules, waited for.
pub async fn sync(call: &Call<'_>) -> Reply {
    let node = call.node();
    let service = service(node)?;
    let modules = selected_modules(call.inv)?;
    let exported: Vec<Module> = modules
        .iter()
        .copied()
        .filter(|m| service.exports(*m))
        .collect();
    if service.partner().is_none() {
        return Err(not_paired(&node.pool).into());
    }
    for m in &exported {
        service.request_resync(*m).await?;
    }
    let left = wait_for_final(node, service, &exported, Duration::from_secs(60)).await?;
    let mut reply = InvokeResponse::of(Output::None);
    if left > 0 {
        reply.warnings.push(format!(
            "the resync was started but {left} changes are still waiting after 60 seconds; Get-CsBackupServiceStatus -PoolFqdn {} shows the progress",
            node.pool
        ));
    }
    Ok(reply)
}

/// `Invoke-CsStorageServiceFlush`: nothing is held back; the Backup Service ships now.
pub async fn flush(call: &Call<'_>) -> Reply {
    let node = call.node();
    let service = service(node)?;
    let inv = call.inv;
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
        wait_for_final(node, service, &modules, wait).await?
    } else {
        pending(service, &modules).await?
    };
    Ok(InvokeResponse::text(format!(
        "Storage Service flush ({}) on {}: every write is already committed to the Back End when it is acknowledged; \
         the Backup Service was asked to ship now and {left} changes are still waiting to reach {}.",
        if full { "FullFlush" } else { "SteadyState" },
        node.pool,
        service.partner().unwrap_or_else(|| "no backup pool".into())
    )))
}

fn not_paired(pool: &str) -> Refused {
    Refused::Conflict(format!(
        "{pool} has no backup pool; pair it first with Set-CsPoolBackupRelationship -PoolFqdn {pool} -BackupPoolFqdn <pool>"
    ))
}

fn selected_modules(inv: &Invocation) -> Result<Vec<Module>, Refused> {
    let mut modules = Module::select(inv.text("BackupModule").as_deref());
    if let Some(category) = inv.text("Category") {
        if category.eq_ignore_ascii_case("RGS") {
            return Err(Refused::Conflict(
                "tandem has no Response Group service, so there is no RGS backup module; use -Category UserData or CMS".into(),
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

async fn pending(service: &BackupService, modules: &[Module]) -> Result<i64, Error> {
    let status = service.local_status().await?;
    Ok(backlog(&status, modules).0)
}

/// Waits until `modules` have nothing left to ship (FinalState) or `wait` passes; returns
/// how many changes are still pending.
async fn wait_for_final(
    node: &Node,
    service: &BackupService,
    modules: &[Module],
    wait: Duration,
) -> Result<i64, Error> {
    let clock = node.clock;
    let deadline = clock.deadline(wait);
    let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(100));
    loop {
        let status = service.local_status().await?;
        let (left, resync) = backlog(&status, modules);
        if left == 0 && !resync {
            return Ok(0);
        }
        if clock.passed(deadline) {
            return Ok(left.max(1));
        }
        service.wake();
        backoff.wait(&clock).await;
    }
}

/// The per-user checksums of the backup copy `partner` holds of this pool's `module`.
async fn backup_copy_checksums(
    node: &Node,
    service: &BackupService,
    partner: &str,
    module: Module,
) -> Result<Checksums, Refused> {
    service
        .ask(
            partner,
            &format!(
                "{CHECKSUMS_PATH}?source={}&module={}",
                node.pool,
                module.short_name()
            ),
        )
        .await
        .map_err(|e| Refused::Unavailable(format!("{partner} does not answer: {e}")))
}

/// `Get-CsBackupServiceStatus`: both directions of each module, with numbers.
pub async fn status(call: &Call<'_>) -> Reply {
    let node = call.node();
    let service = service(node)?;
    let modules = &selected_modules(call.inv)?;
    let now = node.clock.now_ms();
    let mine = service.local_status().await?;
    let partner = match &mine.partner {
        Some(p) => Some((p.clone(), service.ask::<PoolStatus>(p, STATUS_PATH).await)),
        None => None,
    };
    let mut rows = Vec::new();
    let Some((partner_pool, theirs)) = partner else {
        for m in modules {
            rows.push(
                status_row(now, m, &mine.pool, "", None, None, mine.sync_interval_secs)
                    .with("Error", "the pool has no backup pool"),
            );
        }
        return Ok(records(rows));
    };
    // What the partner last said it had not shipped here, kept for a disaster (its loss
    // is reported from it).
    let heard = service.partner_heard(Some(&partner_pool));
    for m in modules {
        // This pool to the partner.
        let import = theirs.as_ref().ok().and_then(|t| {
            t.imports
                .iter()
                .find(|i| i.module == m.short_name())
                .cloned()
        });
        let mut row = status_row(
            now,
            m,
            &mine.pool,
            &partner_pool,
            Some(&mine),
            Some(import.is_some()),
            mine.sync_interval_secs,
        );
        if let Err(e) = &theirs {
            row = row.with("Error", format!("{partner_pool} does not answer: {e}"));
        }
        rows.push(row);
        // The partner to this pool.
        let heard_pending = heard.as_ref().map(|h| match m {
            Module::CmsMaster => h.cms_versions,
            _ => h
                .modules
                .iter()
                .find(|x| x.module == m.short_name())
                .map_or(0, |x| x.pending),
        });
        let with_heard = |row: Record| match (&heard, heard_pending) {
            (Some(h), Some(pending)) => row
                .with("PendingWhenLastHeard", pending)
                .with(
                    "CommitModeWhenLastHeard",
                    if h.synchronous {
                        "Synchronous"
                    } else {
                        "Asynchronous"
                    },
                )
                .with("LastHeard", format_timestamp(h.at_ms)),
            _ => row
                .with("PendingWhenLastHeard", "")
                .with("CommitModeWhenLastHeard", "")
                .with("LastHeard", ""),
        };
        match &theirs {
            Ok(t) => {
                let imported = mine.imports.iter().any(|i| i.module == m.short_name());
                rows.push(with_heard(status_row(
                    now,
                    m,
                    &partner_pool,
                    &mine.pool,
                    Some(t),
                    Some(imported),
                    mine.sync_interval_secs,
                )));
            }
            Err(e) => rows.push(with_heard(
                status_row(
                    now,
                    m,
                    &partner_pool,
                    &mine.pool,
                    None,
                    Some(true),
                    mine.sync_interval_secs,
                )
                .with("ExportStatus", "ErrorState")
                .with("Error", format!("{partner_pool} does not answer: {e}")),
            )),
        }
    }
    Ok(records(rows))
}

/// One direction of one module. `source_status` is what the source pool reported (none
/// when it does not answer).
fn status_row(
    now: i64,
    module: &Module,
    source: &str,
    target: &str,
    source_status: Option<&PoolStatus>,
    import_ok: Option<bool>,
    sync_interval_secs: u64,
) -> Record {
    let export =
        source_status.and_then(|s| s.exports.iter().find(|e| e.module == module.short_name()));
    let no_exporter = source_status.is_some_and(|s| s.active_exporter.is_none());
    let facts = export.map_or(
        ExportFacts {
            applicable: false,
            pending: 0,
            oldest_pending_ms: None,
            failing: false,
            no_exporter: false,
            unshippable: 0,
        },
        |e| e.facts(no_exporter),
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
        .with(
            "CommitMode",
            source_status.map_or(String::new(), |s| s.commit.describe()),
        )
        .with("LastError", export_error(source, export, facts))
        .with(
            "Unshippable",
            Field::List(
                export
                    .map(|e| {
                        e.unshippable
                            .iter()
                            .map(|u| u.reason.clone().into())
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
        )
}

/// Why a direction is in `ErrorState`, with the command that fixes it; empty otherwise.
fn export_error(
    source: &str,
    export: Option<&backup::protocol::ExportReport>,
    facts: ExportFacts,
) -> String {
    if !facts.applicable {
        return String::new();
    }
    if facts.no_exporter && facts.pending > 0 {
        return format!(
            "no Front End of {source} runs the Backup Service (LYNCBACKUP is stopped): {} changes wait; \
             Start-CsWindowsService -Name LYNCBACKUP -ComputerName <a Front End of {source}> starts it",
            facts.pending
        );
    }
    match export.and_then(|e| e.last_error.clone()) {
        Some(e) if facts.pending > 0 || facts.unshippable > 0 => e,
        _ => String::new(),
    }
}

/// `Debug-CsInterPoolReplication`: each module's copy compared with the partner's.
pub async fn debug_replication(call: &Call<'_>) -> Reply {
    let server = call.node();
    let service = service(server)?;
    let modules = &selected_modules(call.inv)?;
    let Some(partner) = service.partner() else {
        return Err(not_paired(&server.pool).into());
    };
    let mine = service.local_status().await?;
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
            let theirs = service
                .ask::<PoolStatus>(&partner, STATUS_PATH)
                .await
                .map_err(|e| Refused::Unavailable(format!("{partner} does not answer: {e}")))?;
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
        let primary = service.primary_checksums(*m).await?;
        let backup = backup_copy_checksums(server, service, &partner, *m).await?;
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

/// The Back End of this Front End (the dispatcher runs these cmdlets on one).
fn backend(node: &Node) -> Result<&store::BackEnd, Error> {
    node.backend
        .as_ref()
        .ok_or_else(|| Refused::Conflict(format!("{} is not a Front End", node.fqdn)).into())
}

/// `Export-CsUserData`: the pool's users' data and meeting content in one file.
pub async fn export_user_data(call: &Call<'_>) -> Reply {
    let server = call.node();
    let inv = call.inv;
    let be = backend(server)?;
    let file = inv.text("FileName").unwrap_or_default();
    let path = Path::new(&file);
    if path.exists() && !inv.switch("Force") {
        return Err(
            Refused::Conflict(format!("{file} already exists; choose another -FileName")).into(),
        );
    }
    let items = be.all_user_items(None).await?;
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
        created_at: server.clock.now_ms(),
        items,
    };
    let users = export
        .items
        .iter()
        .map(|i| i.sip.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let count = export.items.len();
    archive::write_user_data(path, &export, &files).map_err(Refused::Conflict)?;
    // What was written, and where: said as the outcome, not as a warning.
    Ok(InvokeResponse::of(Output::Text(format!(
        "exported {count} items of {users} users and {} files of {} to {file}",
        files.len(),
        server.pool
    ))))
}

/// `Import-CsUserData`: users homed here get the file's data back.
pub async fn import_user_data(call: &Call<'_>) -> Reply {
    let server = call.node();
    let be = backend(server)?;
    let file = call.inv.text("FileName").unwrap_or_default();
    let path = std::path::PathBuf::from(&file);
    let (export, files) = archive::off_runtime(move || archive::read_user_data(&path))
        .await
        .map_err(Refused::BadRequest)?;
    // Only users homed here may be imported here: their data lives in their home pool.
    let replica = server.replica.store();
    let mut by_user: BTreeMap<String, Vec<UserItem>> = BTreeMap::new();
    for item in export.items {
        by_user.entry(item.sip.clone()).or_default().push(item);
    }
    for sip in by_user.keys() {
        match ::cms::directory::lookup(replica, sip).await {
            Some(u) if u.registrar_pool.eq_ignore_ascii_case(&server.pool) => {}
            Some(u) => {
                return Err(Refused::Conflict(format!(
                    "{sip} is homed on {}, not {}; nothing was imported. Import the file with -PoolFqdn {}",
                    u.registrar_pool, server.pool, u.registrar_pool
                ))
                .into());
            }
            None => {
                return Err(Refused::Conflict(format!(
                    "{sip} is not an enabled user; nothing was imported. Enable-CsUser enables it"
                ))
                .into());
            }
        }
    }
    for bytes in files.values() {
        be.put_file(bytes).await?;
    }
    let mut count = 0;
    for (sip, items) in &by_user {
        let current = be.user_items(sip).await?;
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
        let home = ::cms::directory::lookup(server.replica.store(), sip)
            .await
            .map(|u| u.registrar_pool)
            .unwrap_or_else(|| server.pool.clone());
        be.write_user(&home, sip, &changes)
            .await
            .map_err(|e| -> Error {
                if e.fenced_reason().is_some() {
                    Refused::Conflict(e.to_string()).into()
                } else {
                    e.into()
                }
            })?;
    }
    if let Some(service) = &server.backup {
        service.wake();
    }
    Ok(InvokeResponse::of(Output::None).warn(format!(
        "imported {count} items of {} users into {}",
        by_user.len(),
        server.pool
    )))
}
