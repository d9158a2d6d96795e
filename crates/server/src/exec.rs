//! Running cmdlets on a server.
//!
//! A call is bound with the shell's own catalogue and binder, then routed:
//!
//! - service control runs here, or on the server `-ComputerName` names;
//! - `-LocalStore` reads and imports use this server's replica;
//! - everything that reads or changes the Central Management store runs on the active
//!   master — here if this server is it, otherwise forwarded there. After a change, the
//!   answer waits (briefly) until this server's own replica has it, so a `Get-CsTopology
//!   -LocalStore` right after a `Set-CsSite` on the same server sees the change.
//!
//! When no master answers, reads fall back to the local replica with a warning, and
//! changes fail with an error naming `Invoke-CsManagementServerFailover`.

use std::path::Path;
use std::time::Duration;

use axum::http::StatusCode;
use cmdlet::catalogue::spec::Capability;
use cmdlet::{Field, Invocation, Output, Record};
use cms::keys;
use cms::master::{Master, MasterError, Role, targets};
use serde_json::Value;
use store::{Item, WriteRefused, format_timestamp, now_ms};
use topology::edit::{Edit, edge_pool_of};
use topology::{Topology, validate};

use crate::api::{CallError, ErrorBody, InvokeRequest, InvokeResponse};
use crate::archive::{self, Configuration};
use crate::http::ApiError;
use crate::services::{FTA, LYNCBACKUP, MASTER, REPLICA};
use crate::{Server, records};

/// How long a change waits for this server's replica before answering anyway.
const OWN_REPLICA_WAIT: Duration = Duration::from_secs(3);

pub(crate) type Reply = Result<InvokeResponse, ApiError>;

pub(crate) fn output(output: Output) -> InvokeResponse {
    InvokeResponse {
        output,
        warnings: Vec::new(),
        cms_version: None,
    }
}

pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

pub(crate) fn conflict(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, message)
}

/// The one cmdlet a call carries, parsed and bound.
pub(crate) fn bind_one(request: &InvokeRequest) -> Result<Invocation, ApiError> {
    let line = request_line(request)?;
    let mut statements = cmdlet::parse_and_bind(&line).map_err(|errors| {
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{} (the call was understood as: {line})", text.join("; ")),
        )
    })?;
    if statements.len() != 1 {
        return Err(bad_request("one call runs one cmdlet"));
    }
    Ok(statements.remove(0).invocation)
}

/// Runs one call.
pub(crate) async fn invoke(
    server: &std::sync::Arc<Server>,
    request: InvokeRequest,
    forwarded: bool,
) -> Reply {
    let inv = bind_one(&request)?;
    let name = inv.cmdlet.name;
    if inv.cmdlet.capability == Capability::PoolFailover {
        // The engine prints its own -WhatIf plan: steps, users, data at risk.
        return crate::failover::route(server, &inv).await;
    }
    if name == "Invoke-CsManagementServerFailover" {
        // -WhatIf shows which pool hosts the store and what would change.
        return crate::cmsfailover::route(server, &request, &inv, forwarded).await;
    }
    if inv.cmdlet.changes_state && inv.switch("WhatIf") {
        return Ok(output(Output::Text(format!(
            "What if: {} would run on {}. Nothing was changed.",
            inv.canonical_line(),
            server.fqdn
        ))));
    }
    match name {
        "Get-CsWindowsService" | "Start-CsWindowsService" | "Stop-CsWindowsService" => {
            windows_service(server, &request, &inv, forwarded).await
        }
        "Invoke-CsServerSetup" => match on_computer(server, &request, &inv, forwarded).await {
            Some(reply) => reply,
            None => Ok(crate::edge::run_again(server).await),
        },
        "Get-CsTopology" | "Get-CsPoolBackupRelationship" | "Get-CsService"
            if !inv.switch("LocalStore") =>
        {
            on_master_or_local(server, &request, &inv, forwarded).await
        }
        "Get-CsTopology" | "Get-CsPoolBackupRelationship" | "Get-CsService" => {
            read_topology(&inv, &server.replica.topology())
        }
        "Export-CsConfiguration" if inv.switch("LocalStore") => export_local(server, &inv).await,
        "Import-CsConfiguration" if inv.switch("LocalStore") => import_local(server, &inv).await,
        "Get-CsManagementStoreReplicationStatus"
        | "Invoke-CsManagementStoreReplication"
        | "Export-CsConfiguration"
        | "Import-CsConfiguration"
        | "Export-CsLisConfiguration"
        | "Import-CsLisConfiguration"
        | "Publish-CsTopology"
        | "Enable-CsTopology"
        | "Set-CsEdgePoolNextHop"
        | "Enable-CsEdgePoolFederation"
        | "Disable-CsEdgePoolFederation"
        | "Set-CsPoolEdgeAssociation"
        | "Set-CsPoolBackupRelationship"
        | "Set-CsRegistrar"
        | "Set-CsEdgeServer"
        | "Set-CsSite"
        | "Enable-CsUser"
        | "Disable-CsUser"
        | "Set-CsBackupServiceConfiguration" => {
            on_master_or_local(server, &request, &inv, forwarded).await
        }
        "Get-CsUser" | "Get-CsUserPoolInfo" | "Get-CsBackupServiceConfiguration" => {
            crate::users::read(server, &inv).await
        }
        "Get-CsBackupServiceStatus"
        | "Invoke-CsBackupServiceSync"
        | "Invoke-CsStorageServiceFlush"
        | "Debug-CsInterPoolReplication"
        | "Export-CsUserData"
        | "Import-CsUserData" => crate::pooldata::route(server, &request, &inv, forwarded).await,
        _ if inv.cmdlet.capability == Capability::CmsFailover => {
            crate::cmsfailover::route(server, &request, &inv, forwarded).await
        }
        _ if inv.cmdlet.capability == Capability::Shell => Err(bad_request(format!(
            "{name} runs in the shell itself, not on a server; run it in `tandem shell`"
        ))),
        _ => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "{name} is not run by a tandem server ({}): `tandem shell --lab <dir>` sends the DnsServer cmdlets \
                 to the lab's DNS server and runs Test-NetConnection itself. Nothing was changed.",
                inv.cmdlet.capability.describe()
            ),
        )),
    }
}

/// The call as a shell line, so that the shell's binder checks it. Values are quoted, so
/// nothing in them can be read as syntax.
pub(crate) fn request_line(request: &InvokeRequest) -> Result<String, ApiError> {
    let word = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    };
    if !word(&request.cmdlet) {
        return Err(bad_request(format!(
            "'{}' is not a cmdlet name; GET /openapi.json describes the call and Get-Command lists the cmdlets",
            request.cmdlet
        )));
    }
    let mut line = request.cmdlet.clone();
    for (name, value) in &request.parameters {
        if !word(name) || name.starts_with('-') {
            return Err(bad_request(format!("'{name}' is not a parameter name")));
        }
        match value {
            Value::Bool(b) => line.push_str(&format!(" -{name}:${b}")),
            Value::Array(items) => {
                let parts = items
                    .iter()
                    .map(|v| scalar(name, v))
                    .collect::<Result<Vec<_>, _>>()?;
                line.push_str(&format!(" -{name} {}", parts.join(",")));
            }
            other => line.push_str(&format!(" -{name} {}", scalar(name, other)?)),
        }
    }
    Ok(line)
}

fn scalar(name: &str, value: &Value) -> Result<String, ApiError> {
    let wrong = || {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "parameter {name}: expected a string, a number, true/false or an array of those"
            ),
        )
    };
    match value {
        Value::Number(n) => Ok(n.to_string()),
        Value::String(s) => {
            if s.chars().any(|c| {
                c.is_control() || matches!(c, '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{201b}')
            }) {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "parameter {name}: control characters and typographic quotes are not allowed in values"
                    ),
                ));
            }
            Ok(format!("'{}'", s.replace('\'', "''")))
        }
        Value::Bool(b) => Ok(format!("${b}")),
        _ => Err(wrong()),
    }
}

// ---------------------------------------------------------------------------------------
// Routing to the master
// ---------------------------------------------------------------------------------------

/// Where the active master is.
pub(crate) enum MasterAt<'a> {
    Here(&'a Master),
    There(String),
}

/// Finds the active master: this server, or the Front End of the CMS pool that says it
/// holds the lease with the highest epoch.
pub(crate) async fn locate_master(server: &Server) -> Result<MasterAt<'_>, String> {
    if let Some(m) = server.master()
        && matches!(m.role(), Role::Active { .. })
    {
        return Ok(MasterAt::Here(m));
    }
    let topology = server.replica.topology();
    let cms_pool = topology.deployment.cms_pool.clone();
    // The Front Ends of the CMS pool and of its partner, which holds the standby store:
    // a replica that has not heard of a CMS failover yet still finds the new master.
    let candidates: Vec<_> = topology
        .front_end_pools
        .iter()
        .filter(|p| crate::hosts_cms_services(&topology, &p.fqdn))
        .flat_map(|p| p.servers.clone())
        .filter(|s| !s.fqdn.eq_ignore_ascii_case(&server.fqdn))
        .collect();
    let port = topology.ports.management;
    let mut set = tokio::task::JoinSet::new();
    for s in &candidates {
        let client = server.client.clone();
        let token = server.token.clone();
        let base = format!("http://{}:{port}", s.address);
        set.spawn(async move {
            let report =
                cms::protocol::fetch_role(&client, &base, &token, Duration::from_secs(2)).await?;
            report.active.then_some((report.epoch, base))
        });
    }
    let mut best: Option<(i64, String)> = None;
    while let Some(joined) = set.join_next().await {
        if let Ok(Some((epoch, base))) = joined
            && best.as_ref().is_none_or(|(e, _)| epoch > *e)
        {
            best = Some((epoch, base));
        }
    }
    best.map(|(_, base)| MasterAt::There(base)).ok_or_else(|| {
        let tried: Vec<_> = candidates.iter().map(|s| s.fqdn.as_str()).collect();
        format!(
            "the Central Management store is unavailable: no Front End of {cms_pool} holds the master role (asked {}). \
             Every server keeps running on its local replica, but configuration cannot be read from or changed in the store \
             until a Front End of {cms_pool} is back, or until the store is moved with Invoke-CsManagementServerFailover.",
            if tried.is_empty() { "none".to_string() } else { tried.join(", ") }
        )
    })
}

/// Sends the call on to another server.
pub(crate) async fn forward(server: &Server, base: &str, request: &InvokeRequest) -> Reply {
    let timeout = Duration::from_secs(120);
    crate::api::invoke(
        &server.client,
        base,
        &server.token,
        Some(&server.fqdn),
        request,
        timeout,
    )
    .await
    .map_err(call_error)
}

/// Runs `here` when this server is a Front End of `pool`, or forwards the call to one.
pub(crate) async fn on_front_end_of(
    server: &Server,
    pool: &str,
    request: &InvokeRequest,
    forwarded: bool,
    here: impl std::future::Future<Output = Reply>,
) -> Reply {
    let topology = server.replica.topology();
    let Some(fe_pool) = topology.front_end_pool(pool) else {
        return Err(conflict(format!(
            "{pool} is not a Front End pool of the topology; Get-CsPool lists the pools"
        )));
    };
    if server.pool.eq_ignore_ascii_case(&fe_pool.fqdn) && server.backend.is_some() {
        return here.await;
    }
    if forwarded {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{} is not a Front End of {pool}", server.fqdn),
        ));
    }
    forward_to_pool(server, &topology, fe_pool, request).await
}

/// Sends the call to the first Front End of `pool` that answers: what runs against a
/// pool's Back End runs on one of its own servers.
pub(crate) async fn forward_to_pool(
    server: &Server,
    topology: &Topology,
    pool: &topology::FrontEndPool,
    request: &InvokeRequest,
) -> Reply {
    let port = topology.ports.management;
    let mut last = String::new();
    for s in &pool.servers {
        let base = format!("http://{}:{port}", s.address);
        match forward(server, &base, request).await {
            Err(e) if e.status == StatusCode::BAD_GATEWAY => last = e.body.error,
            other => return other,
        }
    }
    let name = &pool.fqdn;
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "no Front End of {name} answers ({last}); its Back End can only be reached through its own servers. \
             If the pool is lost, fail it over with Invoke-CsPoolFailOver -PoolFqdn {name} -DisasterMode"
        ),
    ))
}

/// Another server's answer, passed on: a refusal keeps its status and reason; a server
/// that cannot be reached is a 502.
pub(crate) fn call_error(e: CallError) -> ApiError {
    match e {
        CallError::Unreachable { .. } => ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()),
        CallError::Refused { status, body } => ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            body,
        },
    }
}

async fn on_master_or_local(
    server: &Server,
    request: &InvokeRequest,
    inv: &Invocation,
    forwarded: bool,
) -> Reply {
    let reply = match locate_master(server).await {
        Ok(MasterAt::Here(master)) => on_master(master, inv).await,
        Ok(MasterAt::There(_)) | Err(_) if forwarded => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{} is not the active Central Management master",
                server.fqdn
            ),
        )),
        Ok(MasterAt::There(base)) => forward(server, &base, request).await,
        Err(unavailable) => return without_master(server, inv, unavailable).await,
    };
    let mut reply = reply?;
    if let Some(version) = reply.cms_version
        && !server
            .replica
            .wait_for_version(version, OWN_REPLICA_WAIT)
            .await
    {
        reply.warnings.push(format!(
            "the change is version {version} of the Central Management store; this server's replica has not applied it yet{}",
            if server.services.is_running(REPLICA) { "" } else { " (its REPLICA service is stopped)" }
        ));
    }
    Ok(reply)
}

/// What a call can still do while no master answers.
async fn without_master(server: &Server, inv: &Invocation, unavailable: String) -> Reply {
    let name = inv.cmdlet.name;
    let topology = server.replica.topology();
    let state = server.replica.state().await.map_err(internal)?;
    let note = format!(
        "{unavailable} Showing this server's local replica (version {}).",
        state.version
    );
    match name {
        "Get-CsTopology" | "Get-CsPoolBackupRelationship" | "Get-CsService" => {
            let mut reply = read_topology(inv, &topology)?;
            reply.warnings.push(note);
            Ok(reply)
        }
        "Get-CsManagementStoreReplicationStatus" if inv.switch("CentralManagementStoreStatus") => {
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
            Ok(InvokeResponse {
                output: Output::Records(vec![record]),
                warnings: vec![note],
                cms_version: None,
            })
        }
        _ => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, unavailable)),
    }
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

pub(crate) fn master_error(e: MasterError) -> ApiError {
    match e {
        MasterError::Refused(WriteRefused::NotMaster { .. }) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{e}; the change was not made. Run it again: the shell reaches whichever Front End is master now, \
                 or run Invoke-CsManagementServerFailover if none is"
            ),
        ),
        other => internal(other),
    }
}

// ---------------------------------------------------------------------------------------
// On the master
// ---------------------------------------------------------------------------------------

async fn on_master(master: &Master, inv: &Invocation) -> Reply {
    match inv.cmdlet.name {
        "Get-CsTopology" | "Get-CsPoolBackupRelationship" | "Get-CsService" => {
            let t = master.topology().await.map_err(master_error)?;
            read_topology(inv, &t)
        }
        "Get-CsManagementStoreReplicationStatus" => replication_status(master, inv).await,
        "Invoke-CsManagementStoreReplication" => {
            let replica = inv.text("ReplicaFqdn");
            master.replicate_now(replica.as_deref()).await;
            Ok(output(Output::None))
        }
        "Export-CsConfiguration" => export_from_master(master, inv, "").await,
        "Import-CsConfiguration" => import_to_cms(master, inv).await,
        "Export-CsLisConfiguration" => export_from_master(master, inv, keys::LIS_PREFIX).await,
        "Import-CsLisConfiguration" => import_lis(master, inv).await,
        "Enable-CsUser" | "Disable-CsUser" | "Set-CsBackupServiceConfiguration" => {
            crate::users::on_master(master, inv).await
        }
        "Publish-CsTopology" => publish(master, inv).await,
        "Enable-CsTopology" => enable(master).await,
        _ => {
            let _guard = master.lock().await;
            let current = master.topology().await.map_err(master_error)?;
            let edit = edit_for(inv, &current)?;
            let changed =
                topology::edit::apply(&current, &edit).map_err(|e| conflict(e.to_string()))?;
            write_topology(master, &changed, &edit.describe(), true).await
        }
    }
}

/// The [`Edit`] a configuration cmdlet asks for.
fn edit_for(inv: &Invocation, current: &Topology) -> Result<Edit, ApiError> {
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
            let secs = |name: &str| -> Result<Option<u32>, ApiError> {
                match inv.get(name) {
                    None => Ok(None),
                    Some(cmdlet::BoundValue::Int(n)) => u32::try_from(*n)
                        .map(Some)
                        .map_err(|_| bad_request(format!("-{name} must be a number of seconds"))),
                    Some(cmdlet::BoundValue::TimeSpan(d)) => Ok(Some(d.as_secs() as u32)),
                    Some(other) => {
                        other.to_text().parse().map(Some).map_err(|_| {
                            bad_request(format!("-{name} must be a number of seconds"))
                        })
                    }
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
                return Err(conflict(format!(
                    "-{} cannot be set per Edge pool in tandem: ports are deployment-wide, in the [ports] table of the topology; \
                     change them there and run Publish-CsTopology and Enable-CsTopology",
                    ports.join(", -")
                )));
            }
            let edge = identity_fqdn("Identity");
            let Some(next_hop) = inv.get("Registrar").map(|_| identity_fqdn("Registrar")) else {
                return Err(bad_request(
                    "give -Registrar Registrar:<pool fqdn>, the Edge pool's new next hop",
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
                    return Err(bad_request(
                        "change one route per call: -FederationRoute, or -XmppFederationRoute",
                    ));
                }
                (None, None) => {
                    return Err(bad_request(
                        "nothing to change: give -FederationRoute or -XmppFederationRoute (-XmppExternalFederationRoute)",
                    ));
                }
            }
        }
        other => return Err(internal(format!("{other} is not a topology edit"))),
    })
}

/// Validates and writes a topology; `activate` writes it as both published and active.
pub(crate) async fn write_topology(
    master: &Master,
    topology: &Topology,
    description: &str,
    activate: bool,
) -> Reply {
    let report = validate(topology);
    if !report.is_valid() {
        let rows = records::problems(&report);
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            body: ErrorBody {
                error: format!(
                    "the change would leave an invalid topology ({}); nothing was published",
                    report.summary()
                ),
                output: Some(Output::Records(rows)),
            },
        });
    }
    let text = topology.to_toml();
    let mut changes = vec![(keys::TOPOLOGY_PUBLISHED.to_string(), Some(text.clone()))];
    if activate {
        changes.push((keys::TOPOLOGY_ACTIVE.to_string(), Some(text)));
    }
    let info = master
        .write(&changes, description)
        .await
        .map_err(master_error)?;
    let warnings = report
        .problems
        .iter()
        .map(|p| format!("{}: {}", p.element, p.message))
        .collect();
    Ok(InvokeResponse {
        output: Output::None,
        warnings,
        cms_version: Some(info.version),
    })
}

async fn publish(master: &Master, inv: &Invocation) -> Reply {
    let file = inv.text("FileName").unwrap_or_default();
    let text = std::fs::read_to_string(&file)
        .map_err(|e| bad_request(format!("cannot read {file}: {e}")))?;
    if text.trim_start().starts_with('<') {
        return Err(bad_request(format!(
            "{file} is XML; tandem publishes TOML topology documents. Get one with Get-CsTopology -AsToml, edit it and publish that"
        )));
    }
    let topology = Topology::from_toml(&text).map_err(|e| {
        bad_request(format!(
            "{file} is not a topology document: {e}; fix it and check it with Test-CsTopology -FileName {file}"
        ))
    })?;
    let _guard = master.lock().await;
    let mut reply = write_topology(master, &topology, &format!("published {file}"), false).await?;
    reply
        .warnings
        .push("published, not yet active: run Enable-CsTopology to activate it".into());
    Ok(reply)
}

async fn enable(master: &Master) -> Reply {
    let _guard = master.lock().await;
    let backend = master.backend();
    let published = backend
        .get(keys::TOPOLOGY_PUBLISHED)
        .await
        .map_err(internal)?;
    let active = backend.get(keys::TOPOLOGY_ACTIVE).await.map_err(internal)?;
    let Some(published) = published else {
        return Err(conflict(
            "no topology has been published; run Publish-CsTopology first",
        ));
    };
    if Some(&published) == active.as_ref() {
        return Ok(InvokeResponse {
            output: Output::None,
            warnings: vec!["the published topology is already active; nothing changed".into()],
            cms_version: None,
        });
    }
    let topology = Topology::from_toml(&published).map_err(internal)?;
    write_topology(master, &topology, "enabled the published topology", true).await
}

async fn replication_status(master: &Master, inv: &Invocation) -> Reply {
    let backend = master.backend();
    let current = backend.current_version().await.map_err(internal)?;
    let current_version = current.as_ref().map_or(0, |v| v.version);
    let statuses = backend.replica_statuses().await.map_err(internal)?;
    let topology = master.topology().await.map_err(master_error)?;
    let targets = targets(&topology);
    if inv.switch("CentralManagementStoreStatus") {
        let lease = backend.lease().await.map_err(internal)?;
        let live = lease.as_ref().filter(|l| l.expires_at > now_ms());
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
        return Ok(output(Output::Records(vec![record])));
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
            v => backend
                .version(v)
                .await
                .map_err(internal)?
                .map_or(0, |v| v.created_at),
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
        return Err(bad_request(format!(
            "{o} is not a server of the topology; Get-CsManagementStoreReplicationStatus lists every replica"
        )));
    }
    Ok(output(Output::Records(rows)))
}

// ---------------------------------------------------------------------------------------
// Reads, exports and imports
// ---------------------------------------------------------------------------------------

fn read_topology(inv: &Invocation, topology: &Topology) -> Reply {
    match inv.cmdlet.name {
        "Get-CsTopology" if inv.switch("AsToml") => Ok(output(Output::Text(topology.to_toml()))),
        "Get-CsTopology" if inv.switch("AsXml") => {
            Ok(output(Output::Text(records::topology_xml(topology))))
        }
        "Get-CsTopology" => Ok(output(Output::Records(records::topology_summary(topology)))),
        "Get-CsPoolBackupRelationship" => {
            let pool = inv.text("PoolFqdn").unwrap_or_default();
            let record = records::backup_relationship(topology, &pool).map_err(bad_request)?;
            Ok(output(Output::Records(vec![record])))
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
            Ok(output(Output::Records(rows)))
        }
    }
}

fn write_export(inv: &Invocation, config: Configuration) -> Reply {
    let file = inv.text("FileName").unwrap_or_default();
    archive::write(Path::new(&file), &config, inv.switch("Force")).map_err(conflict)?;
    Ok(InvokeResponse {
        output: Output::None,
        warnings: vec![format!(
            "exported version {} ({} items) to {file}",
            config.version,
            config.items.len()
        )],
        cms_version: None,
    })
}

async fn export_local(server: &Server, inv: &Invocation) -> Reply {
    let state = server.replica.state().await.map_err(internal)?;
    let items = server.replica.store().items().await.map_err(internal)?;
    write_export(
        inv,
        Configuration {
            format: 1,
            version: state.version,
            created_at: state.last_update_creation,
            items,
        },
    )
}

pub(crate) fn read_import(inv: &Invocation) -> Result<Configuration, ApiError> {
    let file = inv.text("FileName").unwrap_or_default();
    let config = archive::read(Path::new(&file)).map_err(bad_request)?;
    let topology = config
        .items
        .iter()
        .find(|i| i.key == keys::TOPOLOGY_ACTIVE)
        .and_then(|i| i.value.as_deref())
        .ok_or_else(|| bad_request(format!("{file} holds no active topology")))?;
    let topology = Topology::from_toml(topology)
        .map_err(|e| bad_request(format!("the topology in {file} does not parse: {e}")))?;
    let report = validate(&topology);
    if !report.is_valid() {
        return Err(conflict(format!(
            "the topology in {file} is not valid ({}); nothing was imported",
            report.summary()
        )));
    }
    Ok(config)
}

async fn import_local(server: &Server, inv: &Invocation) -> Reply {
    let config = read_import(inv)?;
    server
        .replica
        .import(config.version, config.created_at, &config.items)
        .await
        .map_err(|e| conflict(e.to_string()))?;
    Ok(InvokeResponse {
        output: Output::None,
        warnings: vec![format!(
            "this server's local replica now holds version {} ({} items)",
            config.version,
            config.items.len()
        )],
        cms_version: None,
    })
}

/// `Export-CsConfiguration` (everything) or `Export-CsLisConfiguration` (the items under
/// `prefix`), from the store itself.
async fn export_from_master(master: &Master, inv: &Invocation, prefix: &str) -> Reply {
    let current = master.backend().current_version().await.map_err(internal)?;
    let items = if prefix.is_empty() {
        master.backend().items().await
    } else {
        master.backend().items_with_prefix(prefix).await
    }
    .map_err(internal)?;
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

/// `Import-CsLisConfiguration`: the file's Location Information Service items replace the
/// store's.
async fn import_lis(master: &Master, inv: &Invocation) -> Reply {
    let file = inv.text("FileName").unwrap_or_default();
    let config = archive::read_lis(Path::new(&file)).map_err(bad_request)?;
    let _guard = master.lock().await;
    let existing = master
        .backend()
        .items_with_prefix(keys::LIS_PREFIX)
        .await
        .map_err(internal)?;
    let changes = replacement(&config.items, existing);
    if changes.is_empty() {
        return Ok(output(Output::None));
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

async fn import_to_cms(master: &Master, inv: &Invocation) -> Reply {
    let config = read_import(inv)?;
    let _guard = master.lock().await;
    let existing = master.backend().items().await.map_err(internal)?;
    let changes = replacement(&config.items, existing);
    write_config(
        master,
        &changes,
        &format!("imported {}", inv.text("FileName").unwrap_or_default()),
    )
    .await
}

/// Writes `changes` as one CMS version: the answer of a cmdlet that only changes
/// configuration (no output; the version, so the caller can wait for its replica).
pub(crate) async fn write_config(
    master: &Master,
    changes: &[(String, Option<String>)],
    description: &str,
) -> Reply {
    let info = master
        .write(changes, description)
        .await
        .map_err(master_error)?;
    Ok(InvokeResponse {
        output: Output::None,
        warnings: Vec::new(),
        cms_version: Some(info.version),
    })
}

// ---------------------------------------------------------------------------------------
// Services
// ---------------------------------------------------------------------------------------

/// The call sent on to the server `-ComputerName` names, when that is not this one;
/// `None` when it runs here.
async fn on_computer(
    server: &Server,
    request: &InvokeRequest,
    inv: &Invocation,
    forwarded: bool,
) -> Option<Reply> {
    let computer = inv.text("ComputerName")?;
    if computer.eq_ignore_ascii_case(&server.fqdn) {
        return None;
    }
    if forwarded {
        return Some(Err(bad_request(format!(
            "this is {}, not {computer}",
            server.fqdn
        ))));
    }
    let topology = server.replica.topology();
    let Some(target) = topology.server(&computer) else {
        return Some(Err(bad_request(format!(
            "{computer} is not a server of the topology; Get-CsTopology lists the computers"
        ))));
    };
    let base = format!(
        "http://{}:{}",
        target.server.address, topology.ports.management
    );
    Some(forward(server, &base, request).await)
}

async fn windows_service(
    server: &Server,
    request: &InvokeRequest,
    inv: &Invocation,
    forwarded: bool,
) -> Reply {
    if let Some(reply) = on_computer(server, request, inv, forwarded).await {
        return reply;
    }
    let name = inv.text("Name");
    let listed = server.services.list(name.as_deref());
    if listed.is_empty() {
        let known: Vec<_> = server.services.list(None).iter().map(|s| s.name).collect();
        return Err(bad_request(format!(
            "{} has no service '{}'; its services are {}",
            server.fqdn,
            name.unwrap_or_default(),
            known.join(", ")
        )));
    }
    let start = match inv.cmdlet.name {
        "Start-CsWindowsService" => Some(true),
        "Stop-CsWindowsService" => Some(false),
        _ => None,
    };
    if let Some(running) = start {
        for s in &listed {
            set_service(server, s.name, running).await;
        }
        if server.role == topology::Role::Edge {
            // The Edge's listeners open or close before the cmdlet answers.
            crate::edge::settle(server).await;
        }
        return Ok(output(Output::None));
    }
    let rows = listed
        .into_iter()
        .map(|s| {
            Record::new()
                .with("Name", s.name)
                .with("Status", if s.running { "Running" } else { "Stopped" })
                .with("ComputerName", server.fqdn.clone())
                .with("DisplayName", s.display_name)
        })
        .collect();
    Ok(output(Output::Records(rows)))
}

/// Starts or stops one service for real.
pub(crate) async fn set_service(server: &Server, name: &'static str, running: bool) {
    server.services.set(name, running);
    match name {
        REPLICA => server.replica.set_running(running),
        MASTER => {
            if let Some(m) = server.master() {
                m.set_master_running(running).await;
            }
        }
        FTA => {
            if let Some(m) = server.master() {
                m.set_fta_running(running);
            }
        }
        LYNCBACKUP => {
            if let Some(b) = &server.backup {
                b.set_running(running).await;
            }
        }
        _ => {}
    }
    tracing::info!(service = name, running, "service state changed");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> InvokeRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn request_lines_quote_every_value() {
        let line = request_line(&request(serde_json::json!({
            "cmdlet": "Set-CsSite",
            "parameters": {"Identity": "Site1", "Description": "it's; Remove-Everything", "Force": true}
        })))
        .unwrap();
        assert_eq!(
            line,
            "Set-CsSite -Identity 'Site1' -Description 'it''s; Remove-Everything' -Force:$true"
        );
        let bound = cmdlet::parse_and_bind(&line).unwrap();
        assert_eq!(bound.len(), 1);
    }

    #[test]
    fn request_lines_refuse_what_is_not_a_value() {
        for bad in [
            serde_json::json!({"cmdlet": "Get-CsTopology; rm", "parameters": {}}),
            serde_json::json!({"cmdlet": "Set-CsSite", "parameters": {"Identity": {"a": 1}}}),
            serde_json::json!({"cmdlet": "Set-CsSite", "parameters": {"Identity": null}}),
            serde_json::json!({"cmdlet": "Set-CsSite", "parameters": {"Iden tity": "x"}}),
            serde_json::json!({"cmdlet": "Set-CsSite", "parameters": {"Identity": "a\nb"}}),
        ] {
            assert!(request_line(&request(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn typed_parameters_bind_from_json() {
        let line = request_line(&request(serde_json::json!({
            "cmdlet": "Set-CsRegistrar",
            "parameters": {"Identity": "Registrar:pool1.contoso.com", "FailureDetectionInterval": 60, "EnableAutomaticFailover": false}
        })))
        .unwrap();
        let bound = cmdlet::parse_and_bind(&line).unwrap();
        assert_eq!(bound[0].invocation.cmdlet.name, "Set-CsRegistrar");
    }
}
