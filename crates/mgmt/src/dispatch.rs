//! Where each cmdlet runs, and the one layer that sends a call there.
//!
//! [`place`] is the dispatch table: an exhaustive match on the catalogue's
//! [`CmdletId`], so a cmdlet added to the catalogue does not compile until it is given a
//! place here and a handler in [`crate::cmdlets::run`]. [`invoke`] binds a call, finds its
//! place, and either runs the handler on this server or forwards the call — to the active
//! master, to a Front End of a pool, to the server `-ComputerName` names — marked as
//! forwarded, so that it is never forwarded twice. Handlers never forward.

use std::time::Duration;
use tracing::Instrument as _;

use api::{InvokeRequest, InvokeResponse, bind::bind_one};
use cmdlet::Invocation;
use cmdlet::catalogue::spec::CmdletId;
use node::MasterAt;
use topology::Topology;

use crate::call::{Call, Reply};
use crate::operators::Operator;
use crate::{Mgmt, Refused, audit};

/// How long a change waits for this server's replica before answering anyway.
const OWN_REPLICA_WAIT: Duration = Duration::from_secs(3);
/// How long a forwarded call may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(120);

/// The pool a cmdlet's Front End belongs to, read from its parameters.
pub type PoolOf = fn(&Topology, &Invocation) -> Result<String, Refused>;

/// Where a cmdlet runs.
#[derive(Debug, Clone, Copy)]
pub enum Place {
    /// In the shell itself (help, formatting, topology checks): a server refuses it.
    Shell,
    /// Not on a tandem server: the lab's DNS server takes the DnsServer cmdlets, and the
    /// shell runs `Test-NetConnection` itself.
    Elsewhere,
    /// On the server the call reached.
    Here,
    /// On the server `-ComputerName` names, or here without it.
    Computer,
    /// On the active Central Management master. With `local_switch` given, on this
    /// server's replica instead; with `replica_when_unavailable`, also on the replica
    /// (with a warning) when no master answers.
    Master {
        local_switch: Option<&'static str>,
        replica_when_unavailable: bool,
    },
    /// On a Front End of the pool the parameters name: what reads or changes a pool's
    /// Back End runs on one of its own servers.
    FrontEndOf(PoolOf),
    /// On every server of the topology, the records merged (a server that does not answer
    /// is a warning); with `-ComputerName`, on that server only.
    EveryServer,
}

/// Changes the CMS, or reads it when it answers.
const MASTER: Place = Place::Master {
    local_switch: None,
    replica_when_unavailable: false,
};

fn pool_fqdn(_: &Topology, inv: &Invocation) -> Result<String, Refused> {
    Ok(inv.text("PoolFqdn").unwrap_or_default())
}

/// The dispatch table.
pub fn place(id: CmdletId) -> Place {
    use CmdletId::*;
    match id {
        GetCsTopology
        | GetCsService
        | GetCsPoolBackupRelationship
        | GetCsPoolEdgeAssociation
        | GetCsAllowedDomain
        | GetCsXmppAllowedPartner => Place::Master {
            local_switch: Some("LocalStore"),
            replica_when_unavailable: true,
        },
        ExportCsConfiguration | ImportCsConfiguration => Place::Master {
            local_switch: Some("LocalStore"),
            replica_when_unavailable: false,
        },
        GetCsManagementStoreReplicationStatus => Place::Master {
            local_switch: None,
            replica_when_unavailable: true,
        },
        PublishCsTopology
        | EnableCsTopology
        | SetCsEdgePoolNextHop
        | EnableCsEdgePoolFederation
        | DisableCsEdgePoolFederation
        | SetCsPoolEdgeAssociation
        | SetCsPoolBackupRelationship
        | ExportCsLisConfiguration
        | ImportCsLisConfiguration
        | SetCsRegistrar
        | SetCsEdgeServer
        | SetCsSite
        | NewCsAllowedDomain
        | RemoveCsAllowedDomain
        | NewCsXmppAllowedPartner
        | SetCsXmppAllowedPartner
        | RemoveCsXmppAllowedPartner
        | InvokeCsManagementStoreReplication
        | EnableCsUser
        | DisableCsUser
        | SetCsBackupServiceConfiguration
        | NewCsAdminOperator
        | RemoveCsAdminOperator => MASTER,
        GetCsAdminOperator | GetCsAdminRole => Place::Here,
        GetCsAdminAuditLog => Place::EveryServer,
        GetCsUser | GetCsUserPoolInfo | GetCsBackupServiceConfiguration => Place::Here,
        GetCsBackupServiceStatus
        | InvokeCsBackupServiceSync
        | InvokeCsStorageServiceFlush
        | DebugCsInterPoolReplication
        | ExportCsUserData
        | ImportCsUserData
        | GetCsDatabaseMirrorState
        | InvokeCsDatabaseFailover => Place::FrontEndOf(pool_fqdn),
        InstallCsDatabase => Place::FrontEndOf(crate::cmdlets::cms::pool_of_database),
        InvokeCsManagementServerFailover | MoveCsManagementServer | Bootstrapper => Place::Here,
        InvokeCsPoolFailOver
        | InvokeCsPoolFailBack
        | GetCsPoolFailoverState
        | GetCsDisasterRecoveryOperation
        | ResumeCsDisasterRecoveryOperation
        | StopCsDisasterRecoveryOperation => Place::Here,
        GetCsWindowsService
        | StartCsWindowsService
        | StopCsWindowsService
        | InvokeCsServerSetup
        | GetCsCertificate
        | RequestCsCertificate
        | SetCsCertificate => Place::Computer,
        GetDnsServerResourceRecord
        | AddDnsServerResourceRecordA
        | AddDnsServerResourceRecord
        | SetDnsServerResourceRecord
        | RemoveDnsServerResourceRecord
        | AddDnsServerPrimaryZone
        | AddDnsServerConditionalForwarderZone
        | GetDnsServerZone
        | RemoveDnsServerZone
        | TestNetConnection => Place::Elsewhere,
        TestCsTopology | GetCommand | GetHelp | FormatList | FormatTable | ConvertToJson => {
            Place::Shell
        }
    }
}

/// Whether a cmdlet's handler answers `-WhatIf` itself (with the plan of what it would
/// do), instead of the generic "would run on" line.
fn answers_what_if(id: CmdletId) -> bool {
    use CmdletId::*;
    matches!(
        id,
        InvokeCsPoolFailOver
            | InvokeCsPoolFailBack
            | ResumeCsDisasterRecoveryOperation
            | InvokeCsManagementServerFailover
    )
}

/// Who sent a call: the operator, and the server that forwarded it, if one did.
#[derive(Debug, Clone)]
pub struct Caller {
    pub operator: Operator,
    pub forwarded_by: Option<String>,
}

/// Runs one call: here, or where its place says, if the caller's roles allow it.
pub async fn invoke(mgmt: &Mgmt, request: InvokeRequest, caller: &Caller) -> Reply {
    let inv = bind_one(&request)?;
    // Every line logged while the call runs names it; the call's end is one line (reads
    // at debug level: the web console reads every second).
    let span = tracing::info_span!(
        "cmdlet",
        name = inv.cmdlet.name,
        operator = %caller.operator.name,
        forwarded_by = caller.forwarded_by.as_deref().unwrap_or_default()
    );
    let started = mgmt.node.clock.now_ms();
    let changes_state = inv.cmdlet.changes_state;
    let reply = invoke_bound(mgmt, &request, inv, caller)
        .instrument(span.clone())
        .await;
    let took_ms = mgmt.node.clock.now_ms() - started;
    let _in = span.enter();
    match (&reply, changes_state) {
        (Ok(_), true) => tracing::info!(took_ms, "cmdlet answered"),
        (Err(e), true) => tracing::info!(
            took_ms,
            status = e.status().as_u16(),
            error = e.message(),
            "cmdlet refused"
        ),
        (Ok(_), false) => tracing::debug!(took_ms, "cmdlet answered"),
        (Err(e), false) => tracing::debug!(
            took_ms,
            status = e.status().as_u16(),
            error = e.message(),
            "cmdlet refused"
        ),
    }
    reply
}

async fn invoke_bound(
    mgmt: &Mgmt,
    request: &InvokeRequest,
    inv: cmdlet::Invocation,
    caller: &Caller,
) -> Reply {
    if let Err(refused) = caller.operator.may_run(inv.cmdlet.id) {
        let refused: Reply = Err(crate::Error(refused));
        record(mgmt, caller, &inv, audit::outcome(&refused));
        return refused;
    }
    let forwarded = caller.forwarded_by.is_some();
    let operator = &caller.operator;
    let id = inv.cmdlet.id;
    let here = |master, unavailable| Call {
        mgmt,
        inv: &inv,
        master,
        unavailable,
        operator,
    };
    if inv.cmdlet.changes_state && inv.switch("WhatIf") && !answers_what_if(id) {
        return Ok(InvokeResponse::text(format!(
            "What if: {} would run on {}. Nothing was changed.",
            inv.canonical_line(),
            mgmt.node.fqdn
        )));
    }
    match place(id) {
        Place::Shell => Err(Refused::BadRequest(format!(
            "{} runs in the shell itself, not on a server; run it in `tandem shell`",
            inv.cmdlet.name
        ))
        .into()),
        Place::Elsewhere => Err(Refused::Unprocessable(format!(
            "{} is not run by a tandem server ({}): `tandem shell --lab <dir>` sends the DnsServer cmdlets \
             to the lab's DNS server and runs Test-NetConnection itself. Nothing was changed.",
            inv.cmdlet.name,
            inv.cmdlet.capability.describe()
        ))
        .into()),
        Place::Here => run(caller, &here(None, None)).await,
        Place::Computer => match on_computer(mgmt, request, &inv, caller).await {
            Some(reply) => reply,
            None => run(caller, &here(None, None)).await,
        },
        Place::EveryServer => match on_computer(mgmt, request, &inv, caller).await {
            Some(reply) => reply,
            None if forwarded || inv.text("ComputerName").is_some() => {
                run(caller, &here(None, None)).await
            }
            None => on_every_server(mgmt, request, caller, here(None, None)).await,
        },
        Place::Master {
            local_switch,
            replica_when_unavailable,
        } => {
            if local_switch.is_some_and(|s| inv.switch(s)) {
                return run(caller, &here(None, None)).await;
            }
            let reply = match mgmt.node.locate_master().await {
                Ok(MasterAt::Here(master)) => run(caller, &here(Some(master), None)).await,
                Ok(MasterAt::There(_)) | Err(_) if forwarded => {
                    return Err(Refused::Unavailable(format!(
                        "{} is not the active Central Management master",
                        mgmt.node.fqdn
                    ))
                    .into());
                }
                Ok(MasterAt::There(base)) => forward(mgmt, &base, request, operator).await,
                Err(unavailable) if replica_when_unavailable => {
                    return run(caller, &here(None, Some(unavailable.0))).await;
                }
                Err(unavailable) => return Err(unavailable.into()),
            };
            wait_for_own_replica(mgmt, reply?).await
        }
        Place::FrontEndOf(pool_of) => {
            let topology = mgmt.node.topology();
            let pool = pool_of(&topology, &inv)?;
            on_front_end_of(mgmt, &topology, &pool, request, caller, here(None, None)).await
        }
    }
}

/// Runs the handler here; a call that changes state is recorded in the audit log with
/// its outcome.
async fn run(caller: &Caller, call: &Call<'_>) -> Reply {
    let reply = crate::cmdlets::run(call).await;
    if call.inv.cmdlet.changes_state && !call.inv.switch("WhatIf") {
        record(call.mgmt, caller, call.inv, audit::outcome(&reply));
    }
    reply
}

/// One audit entry for a call on this server.
fn record(mgmt: &Mgmt, caller: &Caller, inv: &cmdlet::Invocation, outcome: String) {
    let node = &mgmt.node;
    let entry = audit::entry(
        node.clock.now_ms(),
        &caller.operator,
        inv,
        &node.fqdn,
        caller.forwarded_by.clone(),
        outcome,
    );
    audit::append(&node.data_dir, &entry);
}

/// Runs the call on every server of the topology (here, and forwarded with
/// `-ComputerName` to the others) and merges the records; a server that does not answer
/// is a warning, not a failure.
async fn on_every_server(
    mgmt: &Mgmt,
    request: &InvokeRequest,
    caller: &Caller,
    call: Call<'_>,
) -> Reply {
    let topology = mgmt.node.topology();
    let mut records = Vec::new();
    let mut warnings = Vec::new();
    let mut take = |reply: Reply, fqdn: &str, warnings: &mut Vec<String>| match reply {
        Ok(InvokeResponse {
            output: cmdlet::Output::Records(rows),
            ..
        }) => records.extend(rows),
        Ok(_) => {}
        Err(e) => warnings.push(format!("{fqdn} did not answer: {}", e.message())),
    };
    let here = run(caller, &call).await;
    take(here, &mgmt.node.fqdn, &mut warnings);
    let others: Vec<_> = topology
        .servers()
        .filter(|s| !s.server.fqdn.eq_ignore_ascii_case(&mgmt.node.fqdn))
        .map(|s| {
            (
                s.server.fqdn.clone(),
                node::Node::base_of(&topology, s.server),
            )
        })
        .collect();
    // Every server at once, so that silent ones cost one timeout, not one each.
    let mut asked = tokio::task::JoinSet::new();
    for (n, (fqdn, base)) in others.iter().enumerate() {
        let mut one = request.clone();
        one.parameters.insert(
            "ComputerName".into(),
            serde_json::Value::String(fqdn.clone()),
        );
        let (api, base, on_behalf) = (
            mgmt.node.api.clone(),
            base.clone(),
            caller.operator.header_value(),
        );
        asked.spawn(async move {
            let reply = api.forward(&base, &one, &on_behalf, FORWARD_TIMEOUT).await;
            (n, reply)
        });
    }
    let mut replies: Vec<_> = asked.join_all().await;
    replies.sort_by_key(|(n, _)| *n);
    for (n, reply) in replies {
        take(
            reply.map_err(crate::Error::from),
            &others[n].0,
            &mut warnings,
        );
    }
    let mut answer = InvokeResponse::of(audit::merged(records));
    answer.warnings = warnings;
    Ok(answer)
}

/// After a change, waits (briefly) until this server's own replica has it, so that a
/// `Get-CsTopology -LocalStore` right after a `Set-CsSite` on the same server sees it.
async fn wait_for_own_replica(mgmt: &Mgmt, mut reply: InvokeResponse) -> Reply {
    if let Some(version) = reply.cms_version
        && !mgmt
            .node
            .replica
            .wait_for_version(version, OWN_REPLICA_WAIT)
            .await
    {
        reply.warnings.push(format!(
            "the change is version {version} of the Central Management store; this server's replica has not applied it yet{}",
            if mgmt.node.services.is_running(node::services::REPLICA) {
                ""
            } else {
                " (its REPLICA service is stopped)"
            }
        ));
    }
    Ok(reply)
}

/// Sends the call on to another server, on behalf of `operator`.
async fn forward(mgmt: &Mgmt, base: &str, request: &InvokeRequest, operator: &Operator) -> Reply {
    Ok(mgmt
        .node
        .api
        .forward(base, request, &operator.header_value(), FORWARD_TIMEOUT)
        .await?)
}

/// Runs `call` here when this server is a Front End of `pool`, or forwards it to the
/// first Front End of that pool that answers.
async fn on_front_end_of(
    mgmt: &Mgmt,
    topology: &Topology,
    pool: &str,
    request: &InvokeRequest,
    caller: &Caller,
    call: Call<'_>,
) -> Reply {
    let forwarded = caller.forwarded_by.is_some();
    let Some(fe_pool) = topology.front_end_pool(pool) else {
        return Err(Refused::Conflict(format!(
            "{pool} is not a Front End pool of the topology; Get-CsService -Registrar lists the pools"
        ))
        .into());
    };
    let node = &mgmt.node;
    if node.pool.eq_ignore_ascii_case(&fe_pool.fqdn) && node.backend.is_some() {
        return run(caller, &call).await;
    }
    if forwarded {
        return Err(
            Refused::Unavailable(format!("{} is not a Front End of {pool}", node.fqdn)).into(),
        );
    }
    let mut last = String::new();
    for s in &fe_pool.servers {
        let base = node::Node::base_of(topology, s);
        match forward(mgmt, &base, request, &caller.operator).await {
            Err(e) if e.status() == axum::http::StatusCode::BAD_GATEWAY => {
                last = e.message().to_string()
            }
            other => return other,
        }
    }
    let name = &fe_pool.fqdn;
    Err(Refused::Unavailable(format!(
        "no Front End of {name} answers ({last}); its Back End can only be reached through its own servers. \
         If the pool is lost, fail it over with Invoke-CsPoolFailOver -PoolFqdn {name} -DisasterMode"
    ))
    .into())
}

/// The call sent on to the server `-ComputerName` names, when that is not this one;
/// `None` when it runs here.
async fn on_computer(
    mgmt: &Mgmt,
    request: &InvokeRequest,
    inv: &Invocation,
    caller: &Caller,
) -> Option<Reply> {
    let forwarded = caller.forwarded_by.is_some();
    let computer = inv.text("ComputerName")?;
    let node = &mgmt.node;
    if computer.eq_ignore_ascii_case(&node.fqdn) {
        return None;
    }
    if forwarded {
        return Some(Err(Refused::BadRequest(format!(
            "this is {}, not {computer}",
            node.fqdn
        ))
        .into()));
    }
    let topology = node.topology();
    let Some(target) = topology.server(&computer) else {
        return Some(Err(Refused::BadRequest(format!(
            "{computer} is not a server of the topology; Get-CsTopology lists the computers"
        ))
        .into()));
    };
    let base = node::Node::base_of(&topology, target.server);
    Some(forward(mgmt, &base, request, &caller.operator).await)
}
