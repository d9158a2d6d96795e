//! The operations engine for pool failover and failback, and the cmdlets around it:
//! `Invoke-CsPoolFailOver`, `Invoke-CsPoolFailBack`, `Get-CsPoolFailoverState`,
//! `Get-CsDisasterRecoveryOperation` and `Resume-CsDisasterRecoveryOperation`.
//!
//! An operation runs on the server the shell is connected to, in a task of its own (so a
//! shell that dies does not stop it). Its record — the plan of `dr::operation` with each
//! step's state — lives in the Central Management store and is rewritten after every
//! step, together with the pool's failover state when the step changes it. A crash of
//! any process therefore leaves a record whose first unfinished step is where a resume
//! starts, and every step is written to be run twice without harm.
//!
//! The engine never opens a pool's Back End: what a step does to a pool's data it asks
//! one of that pool's Front Ends to do ([`PoolAction`] over the management API), as the
//! Backup Service does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use backup::Module;
use cmdlet::{BoundValue, Field, Invocation, Output, Record};
use cms::master::Master;
use dr::operation::DEFAULT_WAIT_MS;
use dr::rules::{check_failback, check_failover};
use dr::state::{OPERATION_PREFIX, operation_key, pool_key};
use dr::{
    FailMode, Kind, Loss, OpState, Operation, Options, Phase, PoolState, Refusal, Step, StepState,
};
use serde::{Deserialize, Serialize};
use store::{format_timestamp, now_ms};

use crate::Server;
use crate::api::InvokeResponse;
use crate::exec::{MasterAt, call_error, locate_master, master_error};
use crate::http::ApiError;

type Reply = Result<InvokeResponse, ApiError>;

/// The route of the pool actions, on every Front End.
pub const POOL_ACTION_PATH: &str = "/internal/v1/dr/pool";
/// The route of the engine's reads and writes of the CMS, on the master.
pub const CMS_PATH: &str = "/internal/v1/dr/cms";
/// The fault-injection route, served only when `TANDEM_DR_FAULTS=1`.
pub const CRASH_PATH: &str = "/internal/v1/dr/crash";

/// How long the Apply step waits for servers to apply the switch.
const APPLY_WAIT: Duration = Duration::from_secs(15);

fn refused(r: Refusal) -> ApiError {
    let status = match r {
        Refusal::CmsUnavailable { .. } | Refusal::TargetUnreachable { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::CONFLICT,
    };
    ApiError::new(status, r.to_string())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

// ---------------------------------------------------------------------------------------
// Fault injection (crash tests)
// ---------------------------------------------------------------------------------------

/// What the test hook does to this server at a step: crash just before the step starts
/// (`before`), crash just after its work is done and before the record says so (`after`,
/// the case that proves steps idempotent), or pause before it for `hold_ms` (`hold`), so
/// that a test can kill another process while the operation is at that step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrashPoint {
    pub step: String,
    /// `before`, `after` or `hold`.
    pub when: String,
    /// How long a `hold` lasts.
    #[serde(default)]
    pub hold_ms: Option<u64>,
}

pub(crate) fn faults_enabled() -> bool {
    std::env::var("TANDEM_DR_FAULTS").is_ok_and(|v| v == "1")
}

/// Applies the armed fault, if it is for `step` (a step of a pool operation or of a CMS
/// failover) at `when` (`before` or `after`).
pub(crate) async fn fault(server: &Server, step: &str, when: &str) {
    let hit = {
        let mut armed = server.crash_at.lock().expect("crash point lock");
        let matches = armed.as_ref().is_some_and(|c| {
            c.step.eq_ignore_ascii_case(step)
                && (c.when == when || (c.when == "hold" && when == "before"))
        });
        if matches { armed.take() } else { None }
    };
    let Some(point) = hit else { return };
    if point.when == "hold" {
        let ms = point.hold_ms.unwrap_or(1_000);
        eprintln!(
            "TANDEM_DR_FAULTS: {} holds before step {step} for {ms} ms",
            server.fqdn,
        );
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return;
    }
    eprintln!(
        "TANDEM_DR_FAULTS: {} crashes {when} step {step}",
        server.fqdn,
    );
    // A real crash: nothing after this line runs, no handler flushes or answers (an
    // orderly exit would let the runtime's other threads go on serving meanwhile).
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    std::process::abort();
}

// ---------------------------------------------------------------------------------------
// The CMS side: reads and compare-and-set writes on the master
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum CmsRequest {
    /// Every `dr/` item, and the store's current version.
    Read,
    /// Writes `changes` as one version if every `expect`ed key still has that value.
    Write {
        expect: Vec<(String, Option<String>)>,
        changes: Vec<(String, Option<String>)>,
        description: String,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CmsReply {
    pub items: Vec<(String, String)>,
    pub version: i64,
}

/// Runs a [`CmsRequest`] on the master (this server).
pub(crate) async fn on_master(master: &Master, request: CmsRequest) -> Result<CmsReply, ApiError> {
    match request {
        CmsRequest::Read => {
            let backend = master.backend();
            let items = backend.items_with_prefix("dr/").await.map_err(internal)?;
            let version = backend
                .current_version()
                .await
                .map_err(internal)?
                .map_or(0, |v| v.version);
            Ok(CmsReply {
                items: items
                    .into_iter()
                    .filter_map(|i| Some((i.key, i.value?)))
                    .collect(),
                version,
            })
        }
        CmsRequest::Write {
            expect,
            changes,
            description,
        } => {
            let _guard = master.lock().await;
            for (key, value) in &expect {
                let current = master.backend().get(key).await.map_err(internal)?;
                if current != *value {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        format!(
                            "{key} changed while this operation was deciding; another failover or failback is running. \
                             Get-CsDisasterRecoveryOperation shows it"
                        ),
                    ));
                }
            }
            let info = master
                .write(&changes, &description)
                .await
                .map_err(master_error)?;
            Ok(CmsReply {
                items: vec![],
                version: info.version,
            })
        }
    }
}

async fn cms(server: &Server, request: CmsRequest) -> Result<CmsReply, ApiError> {
    let master = locate_master(server).await.map_err(|detail| {
        refused(Refusal::CmsUnavailable {
            detail: format!("{detail}."),
        })
    })?;
    match master {
        MasterAt::Here(m) => on_master(m, request).await,
        MasterAt::There(base) => crate::api::call(
            &server.client,
            &base,
            CMS_PATH,
            &server.token,
            Some(&server.fqdn),
            &request,
            Duration::from_secs(30),
        )
        .await
        .map_err(call_error),
    }
}

/// How long a running operation waits for the CMS master to answer again before it stops:
/// longer than a master lease, so that the master moving to the other Front End of its
/// pool does not stop an operation.
const CMS_PATIENCE: Duration = Duration::from_secs(12);

/// [`cms`], riding over a master that is away for less than [`CMS_PATIENCE`].
async fn cms_patient(server: &Server, request: CmsRequest) -> Result<CmsReply, ApiError> {
    let deadline = Instant::now() + CMS_PATIENCE;
    loop {
        match cms(server, request.clone()).await {
            Err(e)
                if matches!(
                    e.status,
                    StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY
                ) && Instant::now() < deadline =>
            {
                tracing::info!(error = %e.body.error, "the CMS master does not answer; trying again");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            other => return other,
        }
    }
}

/// The pool states and operations in the CMS.
#[derive(Debug, Default)]
struct DrView {
    states: BTreeMap<String, PoolState>,
    ops: Vec<Operation>,
    raw: BTreeMap<String, String>,
}

impl DrView {
    fn from_items(items: Vec<(String, String)>) -> DrView {
        let mut view = DrView::default();
        for (key, value) in items {
            if key.starts_with(dr::state::POOL_PREFIX) {
                if let Some(s) = PoolState::from_json(&value) {
                    view.states.insert(s.pool.clone(), s);
                }
            } else if key.starts_with(OPERATION_PREFIX)
                && let Some(o) = Operation::from_json(&value)
            {
                view.ops.push(o);
            }
            view.raw.insert(key, value);
        }
        view.ops.sort_by_key(|o| o.id);
        view
    }

    fn state(&self, pool: &str, backup: &str) -> PoolState {
        self.states
            .get(&pool.to_ascii_lowercase())
            .cloned()
            .unwrap_or_else(|| PoolState::normal(pool, backup))
    }
}

async fn read_view(server: &Server) -> Result<DrView, ApiError> {
    Ok(DrView::from_items(
        cms(server, CmsRequest::Read).await?.items,
    ))
}

/// The local replica's view, for reads while the CMS is down.
async fn local_view(server: &Server) -> Result<DrView, ApiError> {
    let items = server
        .replica
        .store()
        .items_with_prefix("dr/")
        .await
        .map_err(internal)?;
    Ok(DrView::from_items(
        items
            .into_iter()
            .filter_map(|i| Some((i.key, i.value?)))
            .collect(),
    ))
}

// ---------------------------------------------------------------------------------------
// Pool actions: what a step asks a pool's Front End to do to its Back End
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum PoolAction {
    /// Refuse writes of the users homed on `home`.
    Fence { home: String, reason: String },
    /// Wait until the Backup Service has shipped every change committed so far.
    Drain { wait_ms: u64 },
    /// Compare this pool's copy of `home`'s users with the partner's backup copy.
    Verify { home: String },
    /// Make the backup copy from `source` the writable copy of `home`'s users.
    Promote { source: String, home: String },
    /// Remove the registrations of `home`'s users and tell their endpoints that `to`
    /// is their registrar now.
    SignOut { home: String, to: String },
    /// Drop the data of `home`'s users (they are served elsewhere now).
    Retire { home: String },
    /// The changes committed here after `cut`.
    Lost { cut: BTreeMap<String, i64> },
    /// Stop RTCSRV after `delay_mins`.
    StopServices { delay_mins: u32 },
    /// Start RTCSRV (a failback, before the users come home), dropping any stop a
    /// failover scheduled.
    StartServices,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolActionReply {
    /// One line on what was done, for the operation record.
    pub detail: String,
    /// Drain: changes still waiting. Verify: users that differ.
    pub left: i64,
    pub users: i64,
    pub cut: BTreeMap<String, i64>,
    pub last_heard_ms: Option<i64>,
    pub loss: Option<Loss>,
    /// Promote: what the source pool had not shipped here when it last answered.
    #[serde(default)]
    pub heard: Option<crate::heard::HeardBacklog>,
    /// Verify: the users whose copies differ.
    #[serde(default)]
    pub affected: Vec<String>,
}

/// The SIP addresses of the users homed on `home`, from this server's replica.
async fn users_of(server: &Server, home: &str) -> Result<Vec<String>, ApiError> {
    server.users_homed_on(home).await.map_err(internal)
}

const USER_MODULES: [Module; 2] = [Module::PresenceFocus, Module::DataConf];

/// Runs a pool action on this Front End.
pub(crate) async fn pool_action(
    server: &Server,
    action: PoolAction,
) -> Result<PoolActionReply, ApiError> {
    let (Some(be), Some(service)) = (&server.backend, &server.backup) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{} is not a Front End", server.fqdn),
        ));
    };
    let mut reply = PoolActionReply::default();
    match action {
        PoolAction::Fence { home, reason } => {
            be.fence(&home, &reason).await.map_err(internal)?;
            reply.detail = format!("{} refuses writes of {home}'s users", server.pool);
        }
        PoolAction::Drain { wait_ms } => {
            let mut heads = BTreeMap::new();
            for m in USER_MODULES {
                heads.insert(
                    m.short_name(),
                    be.change_head(m.short_name()).await.map_err(internal)?,
                );
            }
            let started = Instant::now();
            let deadline = started + Duration::from_millis(wait_ms);
            loop {
                let status = service.local_status().await.map_err(internal)?;
                let left: i64 = status
                    .exports
                    .iter()
                    .filter(|e| e.applicable)
                    .filter_map(|e| {
                        let head = heads.get(e.module.as_str())?;
                        Some((head - e.acked_seq).max(0))
                    })
                    .sum();
                if left == 0 || Instant::now() >= deadline {
                    reply.left = left;
                    reply.detail = if left == 0 {
                        format!(
                            "every change of {} reached {} ({} ms)",
                            server.pool,
                            service.partner().unwrap_or_default(),
                            started.elapsed().as_millis()
                        )
                    } else {
                        format!("{left} changes still waiting after {wait_ms} ms")
                    };
                    break;
                }
                service.wake();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        PoolAction::Verify { home } => {
            let Some(partner) = service.partner() else {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!("{} has no backup pool", server.pool),
                ));
            };
            let users: std::collections::BTreeSet<String> =
                users_of(server, &home).await?.into_iter().collect();
            let mut bad = Vec::new();
            for m in USER_MODULES {
                let mut primary = service.primary_checksums(m).await.map_err(internal)?;
                let mut copy = crate::pooldata::backup_copy_checksums(server, &partner, m).await?;
                primary.retain(|sip, _| users.contains(sip));
                copy.retain(|sip, _| users.contains(sip));
                bad.extend(backup::service::mismatches(&primary, &copy));
            }
            bad.sort();
            bad.dedup();
            reply.left = bad.len() as i64;
            reply.affected = bad.clone();
            reply.users = users.len() as i64;
            reply.detail = if bad.is_empty() {
                format!("{} users: the copy on {partner} matches", users.len())
            } else {
                format!(
                    "{} of {} users differ on {partner}, for example {}",
                    bad.len(),
                    users.len(),
                    bad.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
                )
            };
        }
        PoolAction::Promote { source, home } => {
            let users = users_of(server, &home).await?;
            let p = be
                .promote_backup(&source, &home, &users)
                .await
                .map_err(internal)?;
            reply.users = p.users;
            reply.cut = p.cut.iter().map(|(m, (s, _))| (m.clone(), *s)).collect();
            // A module the source never shipped a change of is cut at its start: every
            // change it holds there is lost, and the failback must count them.
            for m in USER_MODULES {
                reply.cut.entry(m.short_name().to_string()).or_insert(0);
            }
            reply.last_heard_ms = p.cut.values().map(|(_, t)| *t).max();
            reply.heard = server.partner_heard(Some(&source));
            reply.detail = format!(
                "{} serves {} users of {home} from the copy {source} shipped: {} items, {} changes queued for {source}",
                server.pool, p.users, p.items, p.changes_logged
            );
            service.wake();
        }
        PoolAction::SignOut { home, to } => {
            let users = users_of(server, &home).await?;
            let gone = be.unregister_users(&users).await.map_err(internal)?;
            let removed = gone.len();
            let told = crate::registrar::tell_signed_out(server, gone, &to);
            reply.users = users.len() as i64;
            reply.detail = format!(
                "{removed} registrations of {home}'s users removed from {}; {told} endpoints told to sign in at {to}",
                server.pool
            );
        }
        PoolAction::Retire { home } => {
            let users = users_of(server, &home).await?;
            let n = be.retire_users(&users).await.map_err(internal)?;
            be.unregister_users(&users).await.map_err(internal)?;
            reply.detail = format!("{n} items of {home}'s users dropped from {}", server.pool);
            service.wake();
        }
        PoolAction::Lost { cut } => {
            let lost = be.changes_after_cut(&cut).await.map_err(internal)?;
            let users = lost.users();
            let loss = Loss {
                changes: lost.changes.len() as i64,
                from_ms: lost.changes.first().map(|c| c.committed_at),
                to_ms: lost.changes.last().map(|c| c.committed_at),
                users,
                exact: true,
                note: format!(
                    "counted on {} from its change log: committed there but never copied before the disaster failover",
                    server.pool
                ),
            };
            reply.detail = format!(
                "{} changes of {} users were lost",
                loss.changes,
                loss.users.len()
            );
            reply.loss = Some(loss);
        }
        PoolAction::StopServices { delay_mins } => {
            let pool = server.pool.clone();
            let fqdn = server.fqdn.clone();
            reply.detail = format!("RTCSRV on {fqdn} stops in {delay_mins} minutes");
            // The server's own services are addressed through the same flag the
            // Stop-CsWindowsService cmdlet sets.
            let services = server.services.clone();
            let seen = services
                .list(Some(crate::services::RTCSRV))
                .first()
                .map_or(0, |s| s.changes);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(u64::from(delay_mins) * 60)).await;
                // A failback (or an operator) that started or stopped it since has the
                // last word.
                if services.stop_unless_changed(crate::services::RTCSRV, seen) {
                    tracing::info!(%pool, %fqdn, "RTCSRV stopped after the failover's ServicesStopDelayMins");
                }
            });
        }
        PoolAction::StartServices => {
            let was = server.services.is_running(crate::services::RTCSRV);
            server.services.set(crate::services::RTCSRV, true);
            reply.detail = format!(
                "RTCSRV on {} {}",
                server.fqdn,
                if was { "runs" } else { "started" }
            );
        }
    }
    Ok(reply)
}

/// Runs `action` on one Front End: here, or over the management API.
async fn on_front_end(
    server: &Server,
    fe: &topology::Server,
    action: &PoolAction,
    timeout: Duration,
) -> Result<PoolActionReply, String> {
    let result = if fe.fqdn.eq_ignore_ascii_case(&server.fqdn) {
        Box::pin(pool_action(server, action.clone()))
            .await
            .map_err(|e| e.body.error)
    } else {
        let port = server.replica.topology().ports.management;
        crate::api::call::<_, PoolActionReply>(
            &server.client,
            &format!("http://{}:{port}", fe.address),
            POOL_ACTION_PATH,
            &server.token,
            Some(&server.fqdn),
            action,
            timeout,
        )
        .await
        .map_err(|e| e.to_string())
    };
    result.map_err(|e| format!("{}: {e}", fe.fqdn))
}

/// Asks a Front End of `pool` to run `action`, trying each in turn.
async fn on_pool(
    server: &Server,
    pool: &str,
    action: &PoolAction,
    timeout: Duration,
) -> Result<PoolActionReply, String> {
    let topology = server.replica.topology();
    let mut last = format!("{pool} has no Front End");
    for fe in topology.front_end_servers(pool) {
        match on_front_end(server, fe, action, timeout).await {
            Ok(r) => return Ok(r),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// A server's `/health`, or why it did not answer.
async fn health(server: &Server, fe: &topology::Server) -> Result<crate::api::Health, String> {
    let port = server.replica.topology().ports.management;
    let response = server
        .client
        .get(format!("http://{}:{port}/health", fe.address))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .map_err(|e| format!("{} does not answer ({e})", fe.fqdn))?;
    if !response.status().is_success() {
        return Err(format!("{} answered {}", fe.fqdn, response.status()));
    }
    response
        .json()
        .await
        .map_err(|e| format!("{} answered what is not a health report ({e})", fe.fqdn))
}

/// Whether any Front End of `pool` answers, and if not why.
async fn reachable(server: &Server, pool: &str) -> Result<(), String> {
    let topology = server.replica.topology();
    let mut last = format!("{pool} has no Front End");
    for fe in topology.front_end_servers(pool) {
        if fe.fqdn.eq_ignore_ascii_case(&server.fqdn) {
            return Ok(());
        }
        match health(server, fe).await {
            Ok(_) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

// ---------------------------------------------------------------------------------------
// Cmdlets
// ---------------------------------------------------------------------------------------

pub(crate) async fn route(server: &Arc<Server>, inv: &Invocation) -> Reply {
    match inv.cmdlet.name {
        "Get-CsPoolFailoverState" => failover_state(server, inv).await,
        "Get-CsDisasterRecoveryOperation" => operations(server, inv).await,
        "Resume-CsDisasterRecoveryOperation" => resume(server, inv).await,
        "Invoke-CsPoolFailOver" => start(server, inv, Kind::FailOver).await,
        "Invoke-CsPoolFailBack" => start(server, inv, Kind::FailBack).await,
        other => Err(internal(format!("{other} is not a failover cmdlet"))),
    }
}

/// Reads from the CMS, or from the local replica with a warning when it is down.
async fn view_for_reading(server: &Server) -> Result<(DrView, Vec<String>), ApiError> {
    match read_view(server).await {
        Ok(v) => Ok((v, vec![])),
        Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => Ok((
            local_view(server).await?,
            vec![format!(
                "{} Showing this server's local replica.",
                e.body.error
            )],
        )),
        Err(e) => Err(e),
    }
}

async fn failover_state(server: &Server, inv: &Invocation) -> Reply {
    let (view, warnings) = view_for_reading(server).await?;
    let topology = server.replica.topology();
    let wanted = inv.text("PoolFqdn");
    if let Some(p) = &wanted
        && topology.front_end_pool(p).is_none()
    {
        return Err(refused(Refusal::NotAPool { pool: p.clone() }));
    }
    let rows = topology
        .front_end_pools
        .iter()
        .filter(|p| {
            wanted
                .as_ref()
                .is_none_or(|w| w.eq_ignore_ascii_case(&p.fqdn))
        })
        .map(|p| {
            let backup = p.backup_pool.clone().unwrap_or_default();
            let s = view.state(&p.fqdn, &backup);
            Record::new()
                .with("PoolFqdn", p.fqdn.clone())
                .with("BackupPoolFqdn", backup)
                .with("State", s.phase.as_str())
                .with(
                    "Mode",
                    if s.phase == Phase::Normal {
                        String::new()
                    } else {
                        s.mode.as_str().to_string()
                    },
                )
                .with("ServingPoolFqdn", s.serving_pool().to_string())
                .with("Since", format_timestamp(s.since_ms))
                .with(
                    "OperationId",
                    s.operation.map_or(String::new(), |o| o.to_string()),
                )
                .with("Epoch", s.epoch)
        })
        .collect();
    Ok(InvokeResponse {
        output: Output::Records(rows),
        warnings,
        cms_version: None,
    })
}

/// What a disaster failover may lose, before the lost pool can be asked: the changes it
/// reported unshipped when it last answered (a lower bound), and everything it committed
/// after its backup copy was last updated.
fn loss_as_last_heard(r: &PoolActionReply, source: &str, home: &str, kind: Kind) -> Loss {
    let updated = r.last_heard_ms.map_or("never".into(), format_timestamp);
    let exactly = match kind {
        Kind::FailOver => format!(
            "counted exactly by Invoke-CsPoolFailBack -PoolFqdn {home} once {source} is back"
        ),
        // Nothing comes after a failback to count them: the users start again from the
        // copy their home pool holds.
        Kind::FailBack => format!("their users continue on {home} without them"),
    };
    // What the report says was waiting, less what reached the copy after it.
    let known = r.heard.as_ref().map(|h| (h, h.known_unshipped(&r.cut)));
    match known {
        Some((h, k)) if k.changes > 0 => Loss {
            changes: k.changes,
            users: k.users.clone(),
            from_ms: h.oldest_ms,
            to_ms: Some(h.at_ms),
            exact: false,
            note: format!(
                "at least {} changes of {} users: {source} reported them unshipped when it last answered ({}), \
                 the oldest committed {}, and the backup copy does not hold them{}; anything it committed later is unknown until then — {exactly}",
                k.changes,
                k.users.len(),
                format_timestamp(h.at_ms),
                h.oldest_ms.map_or("-".into(), format_timestamp),
                if k.partly {
                    " (some arrived after the report: one change of that part is counted)"
                } else {
                    ""
                }
            ),
        },
        known => Loss {
            exact: false,
            from_ms: r.last_heard_ms,
            note: format!(
                "changes committed on {source} after its backup copy was last updated ({updated}){} — {exactly}",
                match known {
                    Some((h, _)) if h.changes > 0 => format!(
                        "; the {} changes it reported unshipped when it last answered ({}) all reached the copy",
                        h.changes,
                        format_timestamp(h.at_ms)
                    ),
                    Some((h, _)) => format!(
                        "; it reported nothing unshipped when it last answered ({})",
                        format_timestamp(h.at_ms)
                    ),
                    None => String::new(),
                }
            ),
            ..Loss::default()
        },
    }
}

fn loss_text(loss: &Option<Loss>, op: &Operation) -> String {
    match loss {
        Some(l) if l.exact => format!(
            "{} changes of {} users{}",
            l.changes,
            l.users.len(),
            match (l.from_ms, l.to_ms) {
                (Some(a), Some(b)) => format!(
                    ", committed {} to {}",
                    format_timestamp(a),
                    format_timestamp(b)
                ),
                _ => String::new(),
            }
        ),
        Some(l) => l.note.clone(),
        None if op.is_finished() => "nothing".into(),
        None => String::new(),
    }
}

fn op_record(op: &Operation) -> Record {
    let steps: Vec<Field> = op
        .steps
        .iter()
        .map(|s| {
            let ms = s
                .duration_ms()
                .map_or(String::new(), |ms| format!(" {ms} ms"));
            let retries = if s.attempts > 1 {
                format!(" ({} attempts)", s.attempts)
            } else {
                String::new()
            };
            Field::from(format!(
                "{} {}{ms}{retries}{}",
                s.step.as_str(),
                s.state.as_str(),
                if s.detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", s.detail)
                }
            ))
        })
        .collect();
    Record::new()
        .with("Identity", op.id.to_string())
        .with("Operation", op.kind.as_str())
        .with("PoolFqdn", op.pool.clone())
        .with("BackupPoolFqdn", op.backup_pool.clone())
        .with("Mode", op.mode().as_str())
        .with("State", op.state.as_str())
        .with(
            "CurrentStep",
            if op.is_finished() {
                String::new()
            } else {
                op.current_step().map_or("", Step::as_str).to_string()
            },
        )
        .with("Started", format_timestamp(op.started_ms))
        .with(
            "Finished",
            op.finished_ms.map_or(String::new(), format_timestamp),
        )
        .with(
            "DurationSeconds",
            op.finished_ms.map_or(String::new(), |f| {
                format!("{:.3}", (f - op.started_ms) as f64 / 1000.0)
            }),
        )
        .with("Users", op.users)
        .with("DataLost", loss_text(&op.loss, op))
        .with("LostChanges", op.loss.as_ref().map_or(0, |l| l.changes))
        .with(
            "LostUsers",
            Field::List(
                op.loss
                    .as_ref()
                    .map(|l| l.users.iter().cloned().map(Field::from).collect())
                    .unwrap_or_default(),
            ),
        )
        .with("LossIsExact", op.loss.as_ref().is_none_or(|l| l.exact))
        .with("Steps", Field::List(steps))
        .with("Error", op.error.clone().unwrap_or_default())
        .with("Runner", op.runner.clone())
}

async fn operations(server: &Server, inv: &Invocation) -> Reply {
    let (view, warnings) = view_for_reading(server).await?;
    let rows: Vec<Record> = match inv.text("Identity") {
        Some(id) => {
            let op = find_op(&view, &id)?;
            vec![op_record(op)]
        }
        None => view.ops.iter().map(op_record).collect(),
    };
    Ok(InvokeResponse {
        output: Output::Records(rows),
        warnings,
        cms_version: None,
    })
}

fn find_op<'v>(view: &'v DrView, id: &str) -> Result<&'v Operation, ApiError> {
    let n: u64 = id.trim().parse().map_err(|_| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("'{id}' is not an operation id; Get-CsDisasterRecoveryOperation lists them"),
        )
    })?;
    view.ops.iter().find(|o| o.id == n).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("there is no operation {n}; Get-CsDisasterRecoveryOperation lists them"),
        )
    })
}

fn options_from(inv: &Invocation, kind: Kind) -> Result<Options, ApiError> {
    let wait_ms = match inv.get("WaitTime") {
        Some(BoundValue::TimeSpan(d)) => d.as_millis() as u64,
        _ => DEFAULT_WAIT_MS,
    };
    let positive = |name: &str| -> Result<Option<u32>, ApiError> {
        match inv.get(name) {
            Some(BoundValue::Int(n)) if *n >= 0 && *n <= i64::from(u32::MAX) => Ok(Some(*n as u32)),
            Some(BoundValue::Int(n)) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("-{name} must be zero or more, not {n}"),
            )),
            _ => Ok(None),
        }
    };
    Ok(Options {
        disaster: inv.switch("DisasterMode"),
        flush: kind == Kind::FailOver && inv.switch("FlushStorageService"),
        force: inv.switch("Force"),
        wait_ms,
        skip_verification: inv.switch("SkipDataVerification"),
        db_timeout_secs: positive("DatabaseCommandTimeoutInSeconds")?,
        services_stop_delay_mins: if kind == Kind::FailOver {
            positive("ServicesStopDelayMins")?
        } else {
            None
        },
    })
}

async fn start(server: &Arc<Server>, inv: &Invocation, kind: Kind) -> Reply {
    let options = options_from(inv, kind)?;
    let pool_arg = inv.text("PoolFqdn").unwrap_or_default();
    let topology = server.replica.topology();
    let Some(fe) = topology.front_end_pool(&pool_arg) else {
        return Err(refused(Refusal::NotAPool { pool: pool_arg }));
    };
    let pool = fe.fqdn.to_ascii_lowercase();
    let view = read_view(server).await?;
    // The same cmdlet run again carries an unfinished operation on, with the new options.
    if let Some(op) = view
        .ops
        .iter()
        .find(|o| !o.is_finished() && o.kind == kind && o.pool == pool)
    {
        let mut op = op.clone();
        // A planned operation whose source was lost on the way goes on from the backup copy.
        if options.disaster && op.go_on_in_disaster_mode() {
            tracing::warn!(id = op.id, pool = %op.pool, "operation carried on in disaster mode");
        }
        op.options.force |= options.force;
        op.options.skip_verification |= options.skip_verification;
        op.options.wait_ms = options.wait_ms;
        if options.skip_verification {
            for s in &mut op.steps {
                if s.step == Step::Verify && s.state != StepState::Done {
                    s.state = StepState::Skipped;
                }
            }
        }
        if inv.switch("WhatIf") {
            return Ok(text(what_if(server, &op, &view).await));
        }
        let recorded = view.raw.get(&operation_key(op.id)).cloned();
        return run_to_end(server, op, recorded, inv.switch("Verbose")).await;
    }
    let (backup, reconcile, undoes) = match kind {
        Kind::FailOver => (
            check_failover(&topology, &pool, &view.states, &view.ops).map_err(refused)?,
            false,
            None,
        ),
        Kind::FailBack => {
            let state =
                check_failback(&topology, &pool, &view.states, &view.ops).map_err(refused)?;
            (
                state.backup_pool.clone(),
                state.mode == FailMode::Disaster,
                state.operation,
            )
        }
    };
    let (source, target) = match kind {
        Kind::FailOver => (pool.clone(), backup.clone()),
        Kind::FailBack => (backup.clone(), pool.clone()),
    };
    if !options.disaster
        && let Err(detail) = reachable(server, &source).await
    {
        return Err(refused(Refusal::Unreachable {
            kind,
            pool: source,
            home: pool.clone(),
            detail,
        }));
    }
    if let Err(detail) = reachable(server, &target).await {
        return Err(refused(Refusal::TargetUnreachable {
            pool: target,
            detail,
        }));
    }
    let id = view.ops.iter().map(|o| o.id).max().unwrap_or(0) + 1;
    let mut op = Operation::new(id, kind, &pool, &backup, options, reconcile, now_ms());
    op.runner = server.fqdn.clone();
    op.undoes = undoes;
    if inv.switch("WhatIf") {
        return Ok(text(what_if(server, &op, &view).await));
    }
    let key = operation_key(id);
    let recorded = op.to_json();
    cms(
        server,
        CmsRequest::Write {
            expect: vec![(key.clone(), None)],
            changes: vec![(key, Some(recorded.clone()))],
            description: format!("{} of {pool}: operation {id} starts", kind.as_str()),
        },
    )
    .await?;
    run_to_end(server, op, Some(recorded), inv.switch("Verbose")).await
}

async fn resume(server: &Arc<Server>, inv: &Invocation) -> Reply {
    let view = read_view(server).await?;
    let op = find_op(&view, &inv.text("Identity").unwrap_or_default())?.clone();
    if op.is_finished() {
        return Ok(text(format!(
            "Operation {} ({} of {}) completed at {}; there is nothing to resume.\n",
            op.id,
            op.kind.as_str(),
            op.pool,
            op.finished_ms.map_or(String::new(), format_timestamp)
        )));
    }
    if inv.switch("WhatIf") {
        return Ok(text(what_if(server, &op, &view).await));
    }
    let recorded = view.raw.get(&operation_key(op.id)).cloned();
    run_to_end(server, op, recorded, inv.switch("Verbose")).await
}

fn text(t: String) -> InvokeResponse {
    InvokeResponse {
        output: Output::Text(t),
        warnings: vec![],
        cms_version: None,
    }
}

async fn what_if(server: &Server, op: &Operation, view: &DrView) -> String {
    let users = users_of(server, &op.pool)
        .await
        .map(|u| u.len())
        .unwrap_or(0);
    let mut out = format!(
        "What if: {} -PoolFqdn {} ({} mode{}) would move the {users} users homed on {} from {} to {}:\n",
        op.kind.cmdlet(),
        op.pool,
        op.mode().as_str().to_lowercase(),
        if view.ops.iter().any(|o| o.id == op.id) {
            format!(", resuming operation {}", op.id)
        } else {
            String::new()
        },
        op.pool,
        op.source(),
        op.target()
    );
    for (i, s) in op.steps.iter().enumerate() {
        let mark = match s.state {
            StepState::Done => " (done)",
            StepState::Skipped => " (skipped)",
            StepState::Failed => " (failed; runs again)",
            StepState::Pending => "",
        };
        out.push_str(&format!(
            "  {}. {}: {}{mark}\n",
            i + 1,
            s.step.as_str(),
            s.step.describe(op.kind, op.source(), op.target())
        ));
    }
    let at_risk = match (op.kind, op.options.disaster) {
        (Kind::FailOver, false) | (Kind::FailBack, false) => format!(
            "Data at risk: none. Writes are refused once step 1 is done; every change made before is shipped and verified ({}).",
            backlog_text(server, op.source()).await
        ),
        (Kind::FailOver, true) => format!(
            "Data at risk: changes committed on {} that its Backup Service had not shipped to {} when it was lost ({}).",
            op.source(),
            op.target(),
            last_heard_text(server, op.source(), op.target())
        ),
        (Kind::FailBack, true) => format!(
            "Data at risk: changes the users made on {} during the failover that had not reached {}.",
            op.source(),
            op.target()
        ),
    };
    out.push_str(&at_risk);
    out.push_str("\nNothing was changed.\n");
    out
}

/// What a lost pool's Backup Service last reported unshipped, as this server heard it (a
/// Front End of the backup pool asks its partner every half second).
fn last_heard_text(server: &Server, source: &str, target: &str) -> String {
    match server.partner_heard(Some(source)) {
        Some(h) => format!(
            "when {source} last answered, {}, it had {} changes of {} users not yet shipped; anything it committed later is lost too",
            format_timestamp(h.at_ms),
            h.changes,
            h.users.len()
        ),
        None if server.pool.eq_ignore_ascii_case(target) => {
            format!("{source} has not answered {target}'s Backup Service since this server started")
        }
        None => format!(
            "run the command with -WhatIf on a Front End of {target} to see what {source} last reported"
        ),
    }
}

/// A pool's Backup Service backlog in words, when it answers.
async fn backlog_text(server: &Server, pool: &str) -> String {
    match crate::pooldata::ask_partner::<backup::protocol::PoolStatus>(
        server,
        pool,
        backup::protocol::STATUS_PATH,
    )
    .await
    {
        Ok(status) => {
            let pending: i64 = status
                .exports
                .iter()
                .filter(|e| e.applicable && e.module != Module::CmsMaster.short_name())
                .map(|e| e.pending)
                .sum();
            let heard = status
                .imports
                .iter()
                .map(|i| i.last_import_at)
                .max()
                .unwrap_or(0);
            format!(
                "{pool} has {pending} changes waiting to ship; its backup copy was last updated {}",
                if heard > 0 {
                    format_timestamp(heard)
                } else {
                    "never".into()
                }
            )
        }
        Err(e) => format!("{pool} does not answer: {e}"),
    }
}

// ---------------------------------------------------------------------------------------
// Running the steps
// ---------------------------------------------------------------------------------------

/// Runs the operation in its own task (so that the caller going away does not stop it)
/// and waits for the end. `recorded` is the operation's record as last read from the CMS.
async fn run_to_end(
    server: &Arc<Server>,
    op: Operation,
    recorded: Option<String>,
    verbose: bool,
) -> Reply {
    let started = Instant::now();
    let from_step = op.next_step().unwrap_or(op.steps.len());
    let running = Running::claim(server, &op).await?;
    let s = server.clone();
    let result = tokio::spawn(async move {
        let _running = running;
        run(&s, op, recorded).await
    })
    .await
    .map_err(internal)?;
    let (op, failure) = match result {
        Ok(op) => (op, None),
        Err((op, e)) => (op, Some(e)),
    };
    let mut lines = String::new();
    if verbose {
        for s in op.steps.iter().skip(from_step) {
            let ms = s
                .duration_ms()
                .map_or(String::new(), |ms| format!(" ({ms} ms)"));
            lines.push_str(&format!(
                "VERBOSE: {} {}{ms}: {}\n",
                s.step.as_str(),
                s.state.as_str(),
                if s.detail.is_empty() {
                    s.step.describe(op.kind, op.source(), op.target())
                } else {
                    s.detail.clone()
                }
            ));
        }
    }
    if let Some(mut e) = failure {
        if !lines.is_empty() {
            e.body.output = Some(Output::Text(lines));
        }
        return Err(e);
    }
    let verb = match op.kind {
        Kind::FailOver => "failed over to",
        Kind::FailBack => "failed back from",
    };
    lines.push_str(&format!(
        "{} {verb} {} in {:.2} s (operation {}, {} mode): {} users. Data lost: {}.\n",
        op.pool,
        op.backup_pool,
        started.elapsed().as_secs_f64(),
        op.id,
        op.mode().as_str().to_lowercase(),
        op.users,
        loss_text(&op.loss, &op)
    ));
    Ok(text(lines))
}

/// The step loop. On failure the record says which step stopped and why.
///
/// Every save of the record is a compare-and-set against the record this runner last
/// read or wrote (`recorded`): if another server resumed the operation meanwhile, this one
/// finds the record changed and stops, so that one runner carries an operation on.
async fn run(
    server: &Server,
    mut op: Operation,
    mut recorded: Option<String>,
) -> Result<Operation, (Operation, ApiError)> {
    op.runner = server.fqdn.clone();
    if op.state == OpState::Stopped {
        op.state = OpState::Running;
        op.error = None;
    }
    while let Some(i) = op.next_step() {
        let step = op.steps[i].step;
        fault(server, step.as_str(), "before").await;
        op.steps[i].attempts += 1;
        op.steps[i].started_ms = Some(now_ms());
        // Claim the step before doing it: if another server took the operation over, the
        // record changed and this runner stops here instead of doing the step twice.
        if let Err(e) = save(server, &op, &mut recorded, vec![]).await {
            op.state = OpState::Stopped;
            return Err((op, e));
        }
        let outcome = run_step(server, &mut op, step).await;
        fault(server, step.as_str(), "after").await;
        let record = &mut op.steps[i];
        record.finished_ms = Some(now_ms());
        match outcome {
            Ok(StepOutcome { detail, extra }) => {
                record.state = StepState::Done;
                record.detail = detail;
                if let Err(e) = save(server, &op, &mut recorded, extra).await {
                    return Err((op, e));
                }
            }
            Err(e) => {
                record.state = StepState::Failed;
                record.detail = e.body.error.clone();
                op.state = OpState::Stopped;
                op.error = Some(format!(
                    "{} Resume-CsDisasterRecoveryOperation -Identity {} carries it on from step {}.",
                    e.body.error,
                    op.id,
                    step.as_str()
                ));
                let _ = save(server, &op, &mut recorded, vec![]).await;
                let message = op.error.clone().unwrap_or_default();
                return Err((op, ApiError::new(e.status, message)));
            }
        }
    }
    op.state = OpState::Completed;
    op.finished_ms = Some(now_ms());
    if let Err(e) = save(server, &op, &mut recorded, vec![]).await {
        return Err((op, e));
    }
    Ok(op)
}

/// An operation this server's engine is running, listed in its `/health` until dropped.
struct Running {
    server: Arc<Server>,
    id: u64,
}

impl Running {
    /// Refuses to start an operation that is running here or on the server recorded as
    /// its runner (a resume is for an operation nobody runs any more).
    async fn claim(server: &Arc<Server>, op: &Operation) -> Result<Running, ApiError> {
        let busy = |runner: &str| {
            ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "operation {} ({} of {}) is running on {runner} now, at step {}; \
                     `Get-CsDisasterRecoveryOperation -Identity {}` shows its progress",
                    op.id,
                    op.kind.as_str(),
                    op.pool,
                    op.current_step().map_or("-", Step::as_str),
                    op.id
                ),
            )
        };
        if op.state == OpState::Running && !op.runner.eq_ignore_ascii_case(&server.fqdn) {
            let topology = server.replica.topology();
            if let Some(runner) = topology
                .servers()
                .find(|s| s.server.fqdn.eq_ignore_ascii_case(&op.runner))
                && let Ok(h) = health(server, runner.server).await
                && h.running_operations.contains(&op.id)
            {
                return Err(busy(&op.runner));
            }
        }
        if !server
            .running
            .lock()
            .expect("running operations lock")
            .insert(op.id)
        {
            return Err(busy(&server.fqdn));
        }
        Ok(Running {
            server: server.clone(),
            id: op.id,
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.server
            .running
            .lock()
            .expect("running operations lock")
            .remove(&self.id);
    }
}

impl Server {
    /// The ids of the operations this server is running now.
    pub fn running_operations(&self) -> Vec<u64> {
        self.running
            .lock()
            .expect("running operations lock")
            .iter()
            .copied()
            .collect()
    }
}

/// Writes the record, with `extra` changes (a pool state) in the same version, if the
/// CMS still holds `recorded`; then `recorded` is the new record.
async fn save(
    server: &Server,
    op: &Operation,
    recorded: &mut Option<String>,
    extra: Vec<(String, Option<String>)>,
) -> Result<i64, ApiError> {
    let key = operation_key(op.id);
    let json = op.to_json();
    let mut changes = vec![(key.clone(), Some(json.clone()))];
    changes.extend(extra);
    let reply = cms_patient(
        server,
        CmsRequest::Write {
            expect: vec![(key, recorded.clone())],
            changes,
            description: format!(
                "{} of {}: operation {} at step {}",
                op.kind.as_str(),
                op.pool,
                op.id,
                op.current_step().map_or("", Step::as_str)
            ),
        },
    )
    .await?;
    *recorded = Some(json);
    Ok(reply.version)
}

struct StepOutcome {
    detail: String,
    /// CMS changes to write with the record.
    extra: Vec<(String, Option<String>)>,
}

fn done(detail: impl Into<String>) -> Result<StepOutcome, ApiError> {
    Ok(StepOutcome {
        detail: detail.into(),
        extra: vec![],
    })
}

/// What to do when a step cannot reach the pool the users leave: carry on from the backup
/// copy, in disaster mode.
fn lost_source_hint(op: &Operation) -> String {
    let source = op.source();
    if op.options.disaster {
        return format!(
            "Run {} -PoolFqdn {} again once {source} answers.",
            op.kind.cmdlet(),
            op.pool
        );
    }
    format!(
        "Run {} -PoolFqdn {} again once {source} answers, or with -DisasterMode if {source} is lost \
         (the operation goes on from the backup copy; what {source} had not shipped is reported lost).",
        op.kind.cmdlet(),
        op.pool
    )
}

fn step_failed(message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, message)
}

async fn run_step(
    server: &Server,
    op: &mut Operation,
    step: Step,
) -> Result<StepOutcome, ApiError> {
    let timeout = Duration::from_secs(u64::from(op.options.db_timeout_secs.unwrap_or(60)).max(5));
    let (source, target, home) = (
        op.source().to_string(),
        op.target().to_string(),
        op.pool.clone(),
    );
    let disaster = op.options.disaster;
    match step {
        Step::Freeze => {
            let phase = match op.kind {
                Kind::FailOver => Phase::FailingOver,
                Kind::FailBack => Phase::FailingBack,
            };
            let view = read_view(server).await?;
            let current = view.state(&home, &op.backup_pool);
            if !(current.phase == phase && current.operation == Some(op.id)) {
                let next = current.with_phase(phase, op.mode(), now_ms(), op.id);
                let key = pool_key(&home);
                // Compare-and-set: the state must still be what the checks saw.
                cms(
                    server,
                    CmsRequest::Write {
                        expect: vec![(key.clone(), view.raw.get(&key).cloned())],
                        changes: vec![(key, Some(next.to_json()))],
                        description: format!("{} of {home}: {}", op.kind.as_str(), phase.as_str()),
                    },
                )
                .await?;
            }
            let reason = format!(
                "operation {} ({} of {home}) moved them to {target}",
                op.id,
                op.kind.as_str()
            );
            let fence = PoolAction::Fence {
                home: home.clone(),
                reason,
            };
            match on_pool(server, &source, &fence, timeout).await {
                Ok(r) => done(format!("{}: {}", phase.as_str(), r.detail)),
                Err(e) if disaster => done(format!(
                    "{}; {source} could not be fenced ({e}): its copy is left as it was lost",
                    phase.as_str()
                )),
                Err(e) => Err(step_failed(format!(
                    "{source} could not be made read-only: {e}. No data has moved and {source} still serves the users. {}",
                    lost_source_hint(op)
                ))),
            }
        }
        Step::Drain => {
            let wait_ms = op.options.wait_ms;
            let r = on_pool(
                server,
                &source,
                &PoolAction::Drain { wait_ms },
                timeout + Duration::from_millis(wait_ms),
            )
            .await
            .map_err(|e| {
                step_failed(format!(
                    "{source} did not drain: {e}. {}",
                    lost_source_hint(op)
                ))
            })?;
            // Every acknowledged write is committed to the Back End before it is
            // acknowledged: the storage service holds nothing back to flush.
            let flushed = if op.options.flush {
                "-FlushStorageService: nothing was held back (writes are committed when acknowledged); "
            } else {
                ""
            };
            if r.left == 0 {
                return done(format!("{flushed}{}", r.detail));
            }
            if op.options.force {
                op.loss = Some(Loss {
                    changes: r.left,
                    exact: true,
                    note: format!("{} changes not shipped when -Force went on", r.left),
                    ..Loss::default()
                });
                return done(format!(
                    "{flushed}{}; went on anyway (-Force): they are lost",
                    r.detail
                ));
            }
            Err(step_failed(format!(
                "the Backup Service of {source} still has {} changes to ship to {target} after {} (-WaitTime). \
                 Get-CsBackupServiceStatus -PoolFqdn {source} shows the backlog. Run {} -PoolFqdn {home} again with a longer -WaitTime, \
                 or with -Force to go on without those changes (they would be lost).",
                r.left,
                cmdlet::value::format_timespan(Duration::from_millis(wait_ms)),
                op.kind.cmdlet()
            )))
        }
        Step::Verify => {
            let r = on_pool(
                server,
                &source,
                &PoolAction::Verify { home: home.clone() },
                timeout,
            )
            .await
            .map_err(|e| {
                step_failed(format!(
                    "the data could not be verified: {e}. {}",
                    lost_source_hint(op)
                ))
            })?;
            if r.left == 0 {
                done(r.detail)
            } else if op.options.force {
                // -Force went on without the changes Drain could not ship: the users whose
                // copy differs are the ones who lose them.
                let loss = op.loss.get_or_insert_with(Loss::default);
                loss.users = r.affected.clone();
                loss.note = format!("{}; {}", loss.note, r.detail);
                done(format!(
                    "{}; went on anyway (-Force): their unshipped changes are lost",
                    r.detail
                ))
            } else {
                Err(step_failed(format!(
                    "{}. Debug-CsInterPoolReplication -PoolFqdn {source} lists them; Invoke-CsBackupServiceSync -PoolFqdn {source} resynchronises, \
                     then run {} -PoolFqdn {home} again (or add -SkipDataVerification)",
                    r.detail,
                    op.kind.cmdlet()
                )))
            }
        }
        Step::Reconcile => {
            let view = read_view(server).await?;
            let failover = op
                .undoes
                .and_then(|id| view.ops.iter().find(|o| o.id == id).cloned());
            let Some(mut failover) = failover else {
                return done("no disaster failover to account for");
            };
            let r = on_pool(
                server,
                &home,
                &PoolAction::Lost {
                    cut: failover.cut.clone(),
                },
                timeout,
            )
            .await
            .map_err(|e| step_failed(format!("{home} could not count its lost changes: {e}")))?;
            failover.loss = r.loss.clone();
            done_with(
                format!("operation {}: {}", failover.id, r.detail),
                vec![(operation_key(failover.id), Some(failover.to_json()))],
            )
        }
        Step::Promote => {
            let mut r = on_pool(
                server,
                &target,
                &PoolAction::Promote {
                    source: source.clone(),
                    home: home.clone(),
                },
                timeout,
            )
            .await
            .map_err(|e| step_failed(format!("{target} could not take the users' data: {e}")))?;
            op.users = r.users;
            if disaster && op.kind == Kind::FailOver {
                op.cut = r.cut.clone();
                op.last_heard_ms = r.last_heard_ms;
                op.loss = Some(loss_as_last_heard(&r, &source, &home, op.kind));
            }
            if op.kind == Kind::FailBack {
                // The home pool's Front Ends take their users back: a failover's
                // -ServicesStopDelayMins may have stopped their RTCSRV.
                let started =
                    on_every_front_end(server, &target, &PoolAction::StartServices, timeout).await;
                r.detail = format!("{}; {started}", r.detail);
            }
            if disaster && op.kind == Kind::FailBack {
                // What the backup pool had not shipped home when it was last heard from.
                op.last_heard_ms = r.last_heard_ms;
                op.loss = Some(loss_as_last_heard(&r, &source, &home, op.kind));
            }
            done(r.detail)
        }
        Step::Switch => {
            let view = read_view(server).await?;
            let current = view.state(&home, &op.backup_pool);
            let phase = match op.kind {
                Kind::FailOver => Phase::FailedOver,
                Kind::FailBack => Phase::Normal,
            };
            if current.phase == phase && current.operation == Some(op.id) {
                return done(format!("{target} already serves the users"));
            }
            let next = current.with_phase(phase, op.mode(), now_ms(), op.id);
            done_with(
                format!(
                    "{home}: {} (epoch {}); {target} serves the users",
                    phase.as_str(),
                    next.epoch
                ),
                vec![(pool_key(&home), Some(next.to_json()))],
            )
        }
        Step::Apply => {
            let wanted = cms(server, CmsRequest::Read).await?.version;
            let (applied, missing) = wait_applied(server, &[&source, &target], wanted).await;
            done(if missing.is_empty() {
                format!("{applied} servers of {source} and {target} applied version {wanted}")
            } else {
                format!(
                    "{applied} servers applied version {wanted}; not reached: {} (they apply it when they are back)",
                    missing.join(", ")
                )
            })
        }
        Step::SignOut => {
            match on_pool(
                server,
                &source,
                &PoolAction::SignOut {
                    home: home.clone(),
                    to: target.clone(),
                },
                timeout,
            )
            .await
            {
                Ok(r) => done(r.detail),
                Err(e) if disaster => done(format!(
                    "{source} unreachable ({e}); its registrations went with it"
                )),
                Err(e) => Err(step_failed(format!(
                    "{source} could not sign the users out: {e}"
                ))),
            }
        }
        Step::Retire => {
            match on_pool(
                server,
                &source,
                &PoolAction::Retire { home: home.clone() },
                timeout,
            )
            .await
            {
                Ok(r) => done(r.detail),
                Err(e) if disaster => done(format!(
                    "{source} unreachable ({e}); its stale copy is fenced and replaced at the next failover"
                )),
                Err(e) => Err(step_failed(format!(
                    "{source} could not drop the users' data: {e}"
                ))),
            }
        }
        Step::StopServices => {
            let delay = op.options.services_stop_delay_mins.unwrap_or(0);
            let action = PoolAction::StopServices { delay_mins: delay };
            done(on_every_front_end(server, &source, &action, timeout).await)
        }
    }
}

/// Runs `action` on each Front End of `pool` (each its own server's part, as services
/// are); what each said, or why it could not, in one line.
async fn on_every_front_end(
    server: &Server,
    pool: &str,
    action: &PoolAction,
    timeout: Duration,
) -> String {
    let topology = server.replica.topology();
    let mut lines = vec![];
    for fe in topology.front_end_servers(pool) {
        lines.push(match on_front_end(server, fe, action, timeout).await {
            Ok(r) => r.detail,
            Err(e) => e,
        });
    }
    lines.join("; ")
}

fn done_with(
    detail: String,
    extra: Vec<(String, Option<String>)>,
) -> Result<StepOutcome, ApiError> {
    Ok(StepOutcome { detail, extra })
}

/// Waits until every server of `pools` that answers reports a replica at `version`.
async fn wait_applied(server: &Server, pools: &[&str], version: i64) -> (usize, Vec<String>) {
    let topology = server.replica.topology();
    let deadline = Instant::now() + APPLY_WAIT;
    let mut applied = 0;
    let mut missing = vec![];
    for fe in pools.iter().flat_map(|p| topology.front_end_servers(p)) {
        loop {
            match health(server, fe).await.map(|h| h.replica_version) {
                Ok(v) if v >= version => {
                    applied += 1;
                    break;
                }
                Err(_) => {
                    missing.push(fe.fqdn.clone());
                    break;
                }
                Ok(_) if Instant::now() >= deadline => {
                    missing.push(format!("{} (replica behind)", fe.fqdn));
                    break;
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
    (applied, missing)
}
