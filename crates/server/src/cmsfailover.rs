//! Moving the Central Management store: `Invoke-CsManagementServerFailover` (to the
//! standby store the Backup Service keeps in the CMS pool's partner), the unpaired path
//! (`Install-CsDatabase -CentralManagementDatabase`, `Move-CsManagementServer`,
//! `Bootstrapper /Setup`), and `Get-CsDatabaseMirrorState`.
//!
//! A failover runs on a Front End of the pool that will host the store, as the product
//! requires, in named steps recorded in that pool's Back End so that a crashed run is
//! resumed by running the cmdlet again, or cleared with `-Restore`:
//!
//! - `Freeze`: the old store stops taking changes (planned only; it keeps its lease).
//! - `Drain`: the Backup Service ships the standby every version (planned), or the loss is
//!   estimated from what the old pool's Backup Service last said it had not shipped.
//! - `Promote`: the standby becomes the active store in a new term (see `store::cmsrole`).
//! - `Takeover`: a Front End of this pool takes the master lease.
//! - `Publish`: the topology names this pool as the CMS pool.
//! - `Demote`: the old store becomes a standby (planned; in a disaster the old master
//!   steps down by itself when it comes back and hears of the new term).
//! - `Replicate`: every reachable server is up to date under the new master.
//!
//! There is never more than one writable store: the old one refuses writes from `Freeze`
//! on, the new one takes none before `Takeover`, and an old master that was cut off
//! carries an epoch of an older term, which every replica refuses.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use cmdlet::{Invocation, Output, Record};
use cms::master::{Master, Role};
use cms::protocol::RoleReport;
use cms::{bearer, keys};
use serde::{Deserialize, Serialize};
use store::{BackEnd, CmsMode, CmsRole, Item, format_timestamp, now_ms};
use topology::Topology;

use crate::Server;
use crate::api::InvokeRequest;
use crate::exec::{MasterAt, Reply, bad_request, conflict, internal, locate_master, output};
use crate::http::ApiError;

/// The route the failover calls on a Front End of the old CMS pool.
pub const STORE_PATH: &str = "/internal/v1/cms/store";

/// How long `Drain` waits for the standby to hold every version.
const DRAIN_WAIT: Duration = Duration::from_secs(30);
/// How long `Takeover` waits for a Front End of this pool to take the lease.
const TAKEOVER_WAIT: Duration = Duration::from_secs(10);
/// How long `Replicate` waits for the reachable servers.
const REPLICATE_WAIT: Duration = Duration::from_secs(20);

/// The steps, in order.
pub const STEPS: [&str; 7] = [
    "Freeze",
    "Drain",
    "Promote",
    "Takeover",
    "Publish",
    "Demote",
    "Replicate",
];

/// What the failover asks of the old store's Front End.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "action", rename_all = "snake_case")]
pub enum StoreAction {
    /// Where the store stands.
    State,
    /// Refuse writes: the store is moving to `to_pool`.
    Freeze { to_pool: String },
    /// Take writes again (the move was cancelled).
    Unfreeze,
    /// Become a standby of the store in `active_pool`.
    Demote {
        active_pool: String,
        shared_through: i64,
        epoch: i64,
    },
    /// The whole configuration (a move without an export file).
    Snapshot,
}

/// The old store's answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreReply {
    pub mode: String,
    pub version: i64,
    pub epoch: i64,
    pub lost_versions: i64,
    /// The store's `shared_through` (see `store::cmsrole`).
    pub shared_through: i64,
    /// The state of the newest CMS failover whose target is this store, if any.
    pub failover: Option<String>,
    #[serde(default)]
    pub items: Vec<Item>,
}

/// Serves [`StoreAction`] on a server with the Central Management services.
pub(crate) async fn store_action(
    server: &Server,
    action: StoreAction,
) -> Result<StoreReply, ApiError> {
    let Some(master) = server.master() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{} runs no Central Management services", server.fqdn),
        ));
    };
    let be = master.backend();
    let mut lost = 0;
    match &action {
        StoreAction::State | StoreAction::Snapshot => {}
        StoreAction::Freeze { to_pool } => {
            be.set_cms_moving(to_pool)
                .await
                .map_err(internal)?
                .map_err(|e| conflict(e.to_string()))?;
        }
        StoreAction::Unfreeze => {
            be.set_cms_active_again("the move was cancelled")
                .await
                .map_err(internal)?
                .map_err(|e| conflict(e.to_string()))?;
        }
        StoreAction::Demote {
            active_pool,
            shared_through,
            epoch,
        } => {
            lost = be
                .demote_cms(active_pool, *shared_through, *epoch)
                .await
                .map_err(internal)?
                .len() as i64;
            // Step down now rather than at the lease task's next turn.
            master.step_down().await;
        }
    }
    if let Some(b) = &server.backup {
        b.wake();
    }
    let role = be.cms_role().await.map_err(internal)?;
    let lease = be.lease().await.map_err(internal)?;
    Ok(StoreReply {
        mode: role.mode.as_str().into(),
        version: be
            .current_version()
            .await
            .map_err(internal)?
            .map_or(0, |v| v.version),
        epoch: lease.map_or(0, |l| l.epoch).max(role.epoch_floor),
        lost_versions: lost,
        shared_through: role.shared_through,
        failover: latest(be).await?.map(|r| r.record.state),
        items: if matches!(action, StoreAction::Snapshot) {
            be.items().await.map_err(internal)?
        } else {
            Vec::new()
        },
    })
}

/// Calls [`STORE_PATH`] on the first Front End of `pool` that answers; a demotion goes to
/// every one of them, so that whichever holds the lease steps down at once.
async fn on_pool_store(
    server: &Server,
    topology: &Topology,
    pool: &str,
    action: &StoreAction,
) -> Result<StoreReply, String> {
    let Some(fe) = topology.front_end_pool(pool) else {
        return Err(format!("{pool} is not a Front End pool of the topology"));
    };
    let mut last = format!("{pool} has no Front End");
    let every = matches!(action, StoreAction::Demote { .. });
    let mut first: Option<StoreReply> = None;
    for s in &fe.servers {
        let url = format!(
            "http://{}:{}{STORE_PATH}",
            s.address, topology.ports.management
        );
        let answer = server
            .client
            .post(url)
            .header(cms::TOKEN_HEADER, bearer(&server.token))
            .timeout(Duration::from_secs(10))
            .json(action)
            .send()
            .await;
        match answer {
            Ok(r) if r.status().is_success() => {
                let reply: StoreReply = r.json().await.map_err(|e| e.to_string())?;
                if !every {
                    return Ok(reply);
                }
                first.get_or_insert(reply);
            }
            Ok(r) => {
                let status = r.status();
                last = format!(
                    "{} answered {status}: {}",
                    s.fqdn,
                    r.text().await.unwrap_or_default()
                )
            }
            Err(e) => last = format!("{}: {e}", s.fqdn),
        }
    }
    first.ok_or(last)
}

// ---------------------------------------------------------------------------------------
// The record
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    /// Pending, Done, Skipped, Failed.
    pub state: String,
    pub started_at: i64,
    pub finished_at: i64,
    pub detail: String,
}

/// One CMS failover, stored in the target pool's Back End.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailoverRecord {
    pub id: i64,
    pub from_pool: String,
    pub to_pool: String,
    /// Planned (the old store answered) or Disaster.
    pub mode: String,
    /// Running, Completed, Failed, Cancelled.
    pub state: String,
    pub runner: String,
    pub started_at: i64,
    pub finished_at: i64,
    pub steps: Vec<StepRecord>,
    /// The newest epoch heard of when the failover started.
    pub known_epoch: i64,
    /// The old store's version when it was frozen (planned).
    pub frozen_version: i64,
    /// What may be lost (disaster).
    pub potential_loss: String,
    pub error: String,
    /// The process running it (server and start-up token): a record whose runner is
    /// another live process is not taken over.
    #[serde(default)]
    pub runner_boot: String,
}

/// A record as stored, with the token its next compare-and-set save expects.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) record: FailoverRecord,
    pub(crate) token: i64,
}

/// This process's start-up token.
fn boot() -> &'static str {
    static BOOT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BOOT.get_or_init(|| format!("{}-{}", std::process::id(), now_ms()))
}

impl FailoverRecord {
    fn step(&mut self, name: &str) -> &mut StepRecord {
        self.steps
            .iter_mut()
            .find(|s| s.name == name)
            .expect("every step is in the record")
    }

    fn is_done(&self, name: &str) -> bool {
        self.steps
            .iter()
            .any(|s| s.name == name && (s.state == "Done" || s.state == "Skipped"))
    }

    fn log(&self) -> String {
        let mut text = format!(
            "Central Management store failover {} from {} to {} ({}): {}\n",
            self.id, self.from_pool, self.to_pool, self.mode, self.state
        );
        for s in &self.steps {
            let took = if s.finished_at >= s.started_at && s.started_at > 0 {
                format!("{} ms", s.finished_at - s.started_at)
            } else {
                "-".into()
            };
            text.push_str(&format!(
                "  {:<10} {:<8} {:>9}  {}\n",
                s.name, s.state, took, s.detail
            ));
        }
        if !self.potential_loss.is_empty() {
            text.push_str(&format!("  Potential loss: {}\n", self.potential_loss));
        }
        if !self.error.is_empty() {
            text.push_str(&format!("  Error: {}\n", self.error));
        }
        text
    }
}

/// Saves the record if nobody else wrote it since this runner last did.
async fn save(be: &BackEnd, stored: &mut Stored) -> Result<(), ApiError> {
    let text = serde_json::to_string(&stored.record).map_err(internal)?;
    let id = Some(stored.record.id).filter(|i| *i > 0);
    match be
        .save_cms_failover_record(id, &text, stored.token)
        .await
        .map_err(internal)?
    {
        Some((id, token)) => {
            stored.record.id = id;
            stored.token = token;
            Ok(())
        }
        None => Err(conflict(format!(
            "the Central Management store failover {} was taken over by another run; \
             Invoke-CsManagementServerFailover -WhatIf shows where it stands",
            stored.record.id
        ))),
    }
}

async fn latest(be: &BackEnd) -> Result<Option<Stored>, ApiError> {
    let Some((id, text, token)) = be.cms_failover_record().await.map_err(internal)? else {
        return Ok(None);
    };
    let mut record: FailoverRecord = serde_json::from_str(&text).map_err(internal)?;
    record.id = id;
    Ok(Some(Stored { record, token }))
}

/// Whether a record still has work to do (a cancelled one has none).
fn unfinished(r: &FailoverRecord) -> bool {
    r.state == "Running" || r.state == "Failed"
}

/// One CMS failover or move at a time on this server.
static RUNNING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn one_at_a_time(server: &Server) -> Result<tokio::sync::MutexGuard<'static, ()>, ApiError> {
    RUNNING.try_lock().map_err(|_| {
        conflict(format!(
            "a Central Management store failover or move is already running on {}; wait for it, then check Get-CsManagementStoreReplicationStatus -CentralManagementStoreStatus",
            server.fqdn
        ))
    })
}

// ---------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------

pub(crate) async fn route(
    server: &Server,
    request: &InvokeRequest,
    inv: &Invocation,
    forwarded: bool,
) -> Reply {
    match inv.cmdlet.name {
        "Invoke-CsManagementServerFailover" => failover(server, inv).await,
        "Get-CsDatabaseMirrorState" => {
            let pool = inv.text("PoolFqdn").unwrap_or_default();
            crate::exec::on_front_end_of(
                server,
                &pool,
                request,
                forwarded,
                mirror_state(server, inv),
            )
            .await
        }
        "Install-CsDatabase" => install_database(server, request, inv, forwarded).await,
        "Move-CsManagementServer" => move_management_server(server, inv).await,
        "Bootstrapper" => bootstrapper(server, inv).await,
        other => Err(bad_request(format!("{other} is not a CMS cmdlet"))),
    }
}

// ---------------------------------------------------------------------------------------
// Get-CsDatabaseMirrorState
// ---------------------------------------------------------------------------------------

/// The documented value when a database has no mirror.
pub const NOT_MIRRORED: &str = "DatabaseInaccessibleOrMirroringNotEnabled";

async fn mirror_state(server: &Server, inv: &Invocation) -> Reply {
    let topology = server.replica.topology();
    let pool = topology
        .front_end_pool(&server.pool)
        .expect("a Front End's pool is in its topology");
    let kind = inv
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
        return Err(conflict(format!(
            "{} keeps no {kind} database: tandem's Back End holds the CentralMgmt and User databases",
            pool.back_end.server_fqdn
        )));
    }
    let be = server.backend.as_ref().expect("checked by the route");
    let role = be.cms_role().await.map_err(internal)?;
    let version = be
        .current_version()
        .await
        .map_err(internal)?
        .map_or(0, |v| v.version);
    // Versions a master of this store committed that never reached the store that
    // replaced it (recorded when it was fenced).
    let lost: Vec<String> = be
        .lost_cms_versions()
        .await
        .map_err(internal)?
        .iter()
        .map(|l| {
            format!(
                "{} ({}, {}, keys {})",
                l.version,
                l.description,
                format_timestamp(l.created_at),
                l.keys.join(" ")
            )
        })
        .collect();
    let rows = databases
        .into_iter()
        .map(|(name, kind)| {
            // tandem does not mirror Back Ends yet: the primary always holds the
            // principal copy, and a declared mirror holds nothing.
            let (on_primary, on_mirror) = match &pool.back_end.mirror {
                Some(_) => ("Principal", NOT_MIRRORED),
                None => (NOT_MIRRORED, NOT_MIRRORED),
            };
            let mut r = Record::new()
                .with("DatabaseName", name)
                .with("StateOnPrimary", on_primary)
                .with("StateOnMirror", on_mirror)
                .with("MirroringStatusOnPrimary", "")
                .with("MirroringStatusOnSecondary", "")
                .with("PrincipalSqlServerFqdn", pool.back_end.server_fqdn.clone())
                .with("PrincipalSqlInstanceName", pool.back_end.instance.clone())
                .with(
                    "MirrorSqlServerFqdn",
                    pool.back_end
                        .mirror
                        .as_ref()
                        .map_or(String::new(), |m| m.server_fqdn.clone()),
                );
            if kind == "CentralMgmt" {
                r = r
                    .with("CentralManagementStore", role.mode.as_str())
                    .with("CentralManagementStoreVersion", version)
                    .with(
                        "LostVersions",
                        cmdlet::Field::List(lost.iter().map(|l| l.clone().into()).collect()),
                    );
            }
            r
        })
        .collect();
    Ok(output(Output::Records(rows)))
}

// ---------------------------------------------------------------------------------------
// Invoke-CsManagementServerFailover
// ---------------------------------------------------------------------------------------

/// The pool, the Back End and the old master of the CMS as this server sees them.
struct Situation {
    topology: Arc<Topology>,
    cms_pool: String,
    /// The active master's management URL, when one answers.
    master: Option<String>,
    master_fqdn: String,
    local: CmsRole,
    standby_version: i64,
}

async fn situation(server: &Server) -> Result<Situation, ApiError> {
    let be = server.backend.as_ref().ok_or_else(|| {
        conflict(format!(
            "{} is not a Front End: run Invoke-CsManagementServerFailover on a Front End of the pool that will host the Central Management store",
            server.fqdn
        ))
    })?;
    let topology = server.replica.topology();
    let cms_pool = topology.deployment.cms_pool.clone();
    let (master, master_fqdn) = match locate_master(server).await {
        Ok(MasterAt::Here(m)) => (Some(server_base(server)), m.fqdn().to_string()),
        Ok(MasterAt::There(base)) => {
            let fqdn = role_of(server, &base)
                .await
                .map(|r| r.fqdn)
                .unwrap_or_default();
            (Some(base), fqdn)
        }
        Err(_) => (None, String::new()),
    };
    Ok(Situation {
        cms_pool,
        master,
        master_fqdn,
        local: be.cms_role().await.map_err(internal)?,
        standby_version: be
            .current_version()
            .await
            .map_err(internal)?
            .map_or(0, |v| v.version),
        topology,
    })
}

fn server_base(server: &Server) -> String {
    format!("http://{}", server.address)
}

async fn role_of(server: &Server, base: &str) -> Option<RoleReport> {
    cms::protocol::fetch_role(&server.client, base, &server.token, Duration::from_secs(2)).await
}

fn back_end_name(topology: &Topology, pool: &str) -> String {
    topology.front_end_pool(pool).map_or(String::new(), |p| {
        format!("{}\\{}", p.back_end.server_fqdn, p.back_end.instance)
    })
}

async fn failover(server: &Server, inv: &Invocation) -> Reply {
    let s = situation(server).await?;
    let be = server.backend.clone().expect("checked by situation");
    if inv.switch("Restore") {
        return restore(server, &s, &be).await;
    }
    let pending = latest(&be).await?.filter(|r| unfinished(&r.record));
    if inv.switch("WhatIf") {
        return Ok(output(Output::Text(what_if(
            server,
            &s,
            pending.as_ref().map(|p| &p.record),
        ))));
    }
    let report = inv.text("Report");
    let _one = one_at_a_time(server)?;
    let mut stored = match pending {
        Some(p) => {
            // A run of another live process (this server's own before a restart, or
            // another Front End of this pool) is not taken over while it goes on.
            let r = &p.record;
            let recent = now_ms() - p.token < RUNNER_SILENCE_MS;
            if r.state == "Running"
                && r.runner_boot != boot()
                && recent
                && runner_alive(server, r).await
            {
                return Err(conflict(format!(
                    "the Central Management store failover {} is running on {}; wait for it, or if that server is gone \
                     run Invoke-CsManagementServerFailover -Restore",
                    r.id, r.runner
                )));
            }
            p
        }
        None => {
            check_can_fail_over(server, &s, inv)?;
            let mode = if s.master.is_some() {
                "Planned"
            } else {
                "Disaster"
            };
            let r = FailoverRecord {
                id: 0,
                from_pool: s.cms_pool.clone(),
                to_pool: server.pool.clone(),
                mode: mode.into(),
                state: "Running".into(),
                runner: server.fqdn.clone(),
                started_at: now_ms(),
                finished_at: 0,
                steps: STEPS
                    .iter()
                    .map(|n| StepRecord {
                        name: n.to_string(),
                        state: "Pending".into(),
                        started_at: 0,
                        finished_at: 0,
                        detail: String::new(),
                    })
                    .collect(),
                known_epoch: server.replica.state().await.map_err(internal)?.epoch,
                frozen_version: 0,
                potential_loss: String::new(),
                error: String::new(),
                runner_boot: boot().into(),
            };
            Stored {
                record: r,
                token: 0,
            }
        }
    };
    stored.record.runner = server.fqdn.clone();
    stored.record.runner_boot = boot().into();
    stored.record.state = "Running".into();
    stored.record.error.clear();
    save(&be, &mut stored).await?;
    let result = run(server, &s, &be, &mut stored, inv.switch("Force")).await;
    match &result {
        Ok(()) => stored.record.state = "Completed".into(),
        // A cancelled failover stays cancelled: the old store takes changes again.
        Err(_) if stored.record.state == "Cancelled" => {}
        Err(_) => stored.record.state = "Failed".into(),
    }
    if let Err(e) = &result {
        stored.record.error = e.body.error.clone();
    }
    stored.record.finished_at = now_ms();
    save(&be, &mut stored).await?;
    if let Some(file) = report {
        write_report(&file, &stored.record)?;
    }
    result?;
    let record = &stored.record;
    let mut reply = output(Output::Text(record.log()));
    if record.mode == "Disaster" {
        reply.warnings.push(format!(
            "the store in {} was unreachable: it is fenced, and becomes a standby of {} when its servers come back",
            record.from_pool, record.to_pool
        ));
    }
    Ok(reply)
}

/// How long a runner may stay silent (between two saves of its record) and still count
/// as running.
const RUNNER_SILENCE_MS: i64 = 60_000;

/// Whether the runner named in the record still answers and is not this process.
async fn runner_alive(server: &Server, r: &FailoverRecord) -> bool {
    if r.runner.eq_ignore_ascii_case(&server.fqdn) {
        // This server, restarted: the run of the process before is over.
        return false;
    }
    let topology = server.replica.topology();
    let Some(s) = topology.server(&r.runner) else {
        return false;
    };
    health_answers(
        server,
        &s.server.address,
        topology.ports.management,
        Duration::from_secs(1),
    )
    .await
}

fn check_can_fail_over(server: &Server, s: &Situation, inv: &Invocation) -> Result<(), ApiError> {
    let here = &server.pool;
    if s.cms_pool.eq_ignore_ascii_case(here) && s.local.mode == CmsMode::Active {
        return Err(conflict(format!(
            "the Central Management store is already hosted by {here} (active master {}); there is nothing to fail over",
            if s.master_fqdn.is_empty() {
                "starting"
            } else {
                &s.master_fqdn
            }
        )));
    }
    let standby_pool = s.topology.backup_pool_of(&s.cms_pool);
    if standby_pool.is_none_or(|p| !p.eq_ignore_ascii_case(here)) {
        return Err(conflict(format!(
            "the standby of the Central Management store of {} is not in {here}: {}. \
             Run Invoke-CsManagementServerFailover on a Front End of that pool, or move the store with \
             Install-CsDatabase -CentralManagementDatabase and Move-CsManagementServer",
            s.cms_pool,
            match standby_pool {
                Some(p) => format!("it is in {p}, the pool paired with {}", s.cms_pool),
                None => format!("{} is not paired, so there is no standby", s.cms_pool),
            }
        )));
    }
    if s.local.mode != CmsMode::Backup {
        return Err(conflict(format!(
            "Cannot fail over the Central Management Server. The new Central Management Store located at \"{here}\" is not in backup mode \
             (its store is {}); Invoke-CsManagementServerFailover -Restore on a Front End of {here} clears a half-done failover",
            s.local.mode.as_str(),
        )));
    }
    // A planned failover drains the standby first; a disaster has only what it holds.
    if s.standby_version == 0 && s.master.is_none() {
        return Err(conflict(format!(
            "the standby Central Management store in {here} is empty: the Backup Service never shipped it the store of {} \
             (Get-CsBackupServiceStatus -PoolFqdn {here} -Category CMS). Rebuild the store from an export instead: \
             Install-CsDatabase -CentralManagementDatabase and Move-CsManagementServer -ConfigurationFileName <file> -Force",
            s.cms_pool
        )));
    }
    let fe = s
        .topology
        .front_end_pool(here)
        .expect("this server's pool is in its topology");
    if let Some(named) = inv.text("BackupMirrorSqlServerFqdn") {
        let what = match &fe.back_end.mirror {
            Some(m) if m.server_fqdn.eq_ignore_ascii_case(&named) => format!(
                "{named} is the mirror of {here}'s Back End, and the principal copy of the Central Management database is on the primary, {} (Get-CsDatabaseMirrorState -DatabaseType Centralmgmt -PoolFqdn {here})",
                fe.back_end.server_fqdn
            ),
            _ => format!("{named} is not the mirror of {here}'s Back End"),
        };
        return Err(conflict(format!(
            "{what}; run Invoke-CsManagementServerFailover -BackupSqlServerFqdn {} -BackupSqlInstanceName {}",
            fe.back_end.server_fqdn, fe.back_end.instance
        )));
    }
    match inv.text("BackupSqlServerFqdn") {
        Some(named) if !named.eq_ignore_ascii_case(&fe.back_end.server_fqdn) => {
            return Err(conflict(format!(
                "{named} does not hold the standby Central Management database: {here}'s Back End is {}; \
                 run Invoke-CsManagementServerFailover -BackupSqlServerFqdn {} -BackupSqlInstanceName {}",
                fe.back_end.server_fqdn, fe.back_end.server_fqdn, fe.back_end.instance
            )));
        }
        Some(_) => {
            if let Some(instance) = inv.text("BackupSqlInstanceName")
                && !instance.eq_ignore_ascii_case(&fe.back_end.instance)
            {
                return Err(conflict(format!(
                    "{} has no instance {instance}: the standby is in instance {}",
                    fe.back_end.server_fqdn, fe.back_end.instance
                )));
            }
        }
        None if s.master.is_none() => {
            return Err(conflict(format!(
                "the Central Management store in {} is unreachable (no Front End of {} holds the master role). \
                 To promote the standby in {here}, run Invoke-CsManagementServerFailover -BackupSqlServerFqdn {} -BackupSqlInstanceName {}",
                s.cms_pool, s.cms_pool, fe.back_end.server_fqdn, fe.back_end.instance
            )));
        }
        None => {}
    }
    Ok(())
}

fn what_if(server: &Server, s: &Situation, unfinished: Option<&FailoverRecord>) -> String {
    let here = &server.pool;
    let backlog = server.partner_heard(None);
    let mut text = format!(
        "What if: Invoke-CsManagementServerFailover on {}.\n\
         Current State:\n\
         \x20 Central Management Server Pool : {}\n\
         \x20 Central Management Store      : {}\n\
         \x20 Active master                  : {}\n\
         Proposed State:\n\
         \x20 Central Management Server Pool : {here}\n\
         \x20 Central Management Store      : {} (standby, {}, version {})\n",
        server.fqdn,
        s.cms_pool,
        back_end_name(&s.topology, &s.cms_pool),
        if s.master_fqdn.is_empty() {
            "none answers (the store is unavailable)".to_string()
        } else {
            s.master_fqdn.clone()
        },
        back_end_name(&s.topology, here),
        s.local.mode.as_str(),
        s.standby_version,
    );
    if let Some(r) = unfinished {
        text.push_str(&format!(
            "An unfinished failover ({}, {}) would be resumed; -Restore clears it instead.\n",
            r.id, r.mode
        ));
    } else if s.cms_pool.eq_ignore_ascii_case(here) && s.local.mode == CmsMode::Active {
        text.push_str("Nothing would change: this pool already hosts the store.\n");
    } else if s.master.is_some() {
        text.push_str(
            "Mode: planned. The store would become read-only, the standby would receive every version, \
             then the standby would become the active store and the old one its standby. Nothing would be lost.\n",
        );
    } else {
        text.push_str(&format!(
            "Mode: disaster. The standby would be promoted in a new term; {}.\n",
            potential_loss(backlog.as_ref(), &s.cms_pool)
        ));
    }
    text.push_str("Nothing was changed.");
    text
}

fn potential_loss(heard: Option<&crate::heard::HeardBacklog>, pool: &str) -> String {
    match heard.filter(|h| h.pool.eq_ignore_ascii_case(pool)) {
        Some(h) if h.cms_versions > 0 => format!(
            "at least {} configuration version(s) committed in {pool} from {} had not reached the standby when {pool} last answered at {}",
            h.cms_versions,
            h.cms_oldest_ms.map_or("-".into(), format_timestamp),
            format_timestamp(h.at_ms)
        ),
        Some(h) => format!(
            "{pool}'s Backup Service had shipped every configuration version when it last answered at {}; \
             changes made after that are lost (the old store records them when it comes back)",
            format_timestamp(h.at_ms)
        ),
        None => format!("{pool} was not heard from; what it had not shipped is unknown"),
    }
}

async fn run(
    server: &Server,
    s: &Situation,
    be: &BackEnd,
    stored: &mut Stored,
    force: bool,
) -> Result<(), ApiError> {
    // Until the standby is promoted, a resumed planned failover freezes and drains again:
    // the old store may have been unfrozen (a cancelled drain, a -Restore) and taken
    // changes since.
    if stored.record.mode == "Planned" && !stored.record.is_done("Promote") {
        for name in ["Freeze", "Drain"] {
            stored.record.step(name).state = "Pending".into();
        }
    }
    for name in STEPS {
        if stored.record.is_done(name) {
            continue;
        }
        crate::failover::fault(server, name, "before").await;
        stored.record.step(name).started_at = now_ms();
        let outcome = step(server, s, be, &mut stored.record, name, force).await;
        let st = stored.record.step(name);
        st.finished_at = now_ms();
        match outcome {
            Ok((state, detail)) => {
                st.state = state.into();
                st.detail = detail;
            }
            Err(e) => {
                st.state = "Failed".into();
                st.detail = e.body.error.clone();
                save(be, stored).await?;
                return Err(e);
            }
        }
        save(be, stored).await?;
        crate::failover::fault(server, name, "after").await;
    }
    Ok(())
}

async fn step(
    server: &Server,
    s: &Situation,
    be: &BackEnd,
    record: &mut FailoverRecord,
    name: &str,
    force: bool,
) -> Result<(&'static str, String), ApiError> {
    let from = record.from_pool.clone();
    let to = record.to_pool.clone();
    let planned = record.mode == "Planned";
    match name {
        "Freeze" if !planned => Ok(("Skipped", format!("{from} is unreachable"))),
        "Freeze" => {
            let reply = on_pool_store(server, &s.topology, &from, &StoreAction::Freeze { to_pool: to.clone() })
                .await
                .map_err(|e| unavailable(format!("cannot make the store in {from} read-only: {e}; run the cmdlet again, or -Restore to cancel")))?;
            record.frozen_version = reply.version;
            record.known_epoch = record.known_epoch.max(reply.epoch);
            Ok((
                "Done",
                format!("{from} read-only at version {}", reply.version),
            ))
        }
        "Drain" if !planned => {
            let heard = server.partner_heard(None);
            record.potential_loss = potential_loss(heard.as_ref(), &from);
            Ok(("Done", record.potential_loss.clone()))
        }
        "Drain" => {
            let deadline = Instant::now() + DRAIN_WAIT;
            loop {
                let have = be
                    .current_version()
                    .await
                    .map_err(internal)?
                    .map_or(0, |v| v.version);
                if have >= record.frozen_version {
                    return Ok(("Done", format!("the standby holds version {have}")));
                }
                if Instant::now() > deadline && force {
                    record.potential_loss = format!(
                        "-Force: versions {}..{} of {from} had not reached the standby after {DRAIN_WAIT:?} and are lost",
                        have + 1,
                        record.frozen_version
                    );
                    return Ok(("Done", record.potential_loss.clone()));
                }
                if Instant::now() > deadline {
                    record.state = "Cancelled".into();
                    let unfrozen = unfreeze(server, &s.topology, &from).await;
                    return Err(unavailable(format!(
                        "the standby in {to} holds version {have} of {} after {DRAIN_WAIT:?}, so the failover was cancelled; {unfrozen}. \
                         Check Get-CsBackupServiceStatus -PoolFqdn {from} -Category CMS, then run the cmdlet again \
                         (or add -Force to give the missing versions up)",
                        record.frozen_version
                    )));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        "Promote" => {
            let role = be
                .promote_cms(record.known_epoch, &from, &server.fqdn, cms::LEASE_TTL_MS)
                .await
                .map_err(internal)?
                .map_err(|e| {
                    conflict(format!(
                        "{e}; Invoke-CsManagementServerFailover -Restore on a Front End of {to} clears the failover"
                    ))
                })?;
            Ok((
                "Done",
                format!(
                    "active from version {} in term {}",
                    role.term_start,
                    store::term_of(role.epoch_floor)
                ),
            ))
        }
        "Takeover" => {
            let fresh = server.master().is_none();
            let (_, epoch) = ensure_master_here(server, be).await?;
            Ok((
                "Done",
                format!(
                    "{} is the active master (epoch {epoch}){}",
                    server.fqdn,
                    if fresh {
                        "; Central Management services installed"
                    } else {
                        ""
                    }
                ),
            ))
        }
        "Publish" => {
            let (master, _) = ensure_master_here(server, be).await?;
            publish_cms_pool(&master, &to).await
        }
        "Demote" if !planned => Ok((
            "Skipped",
            format!("{from} is unreachable; its master steps down when it comes back"),
        )),
        "Demote" => {
            let action = demotion(be, &to).await?;
            match on_pool_store(server, &s.topology, &from, &action).await {
                Ok(r) => Ok((
                    "Done",
                    format!("{from} is a standby ({} versions lost)", r.lost_versions),
                )),
                // Its writes stay refused (Moving), and its master steps down by itself
                // when it hears of the new term.
                Err(e) => Ok((
                    "Skipped",
                    format!("{from} did not answer ({e}); it is fenced"),
                )),
            }
        }
        "Replicate" => {
            let (master, _) = ensure_master_here(server, be).await?;
            replicate(server, &master).await
        }
        _ => unreachable!("every step is handled"),
    }
}

/// What the old store is told once the store in `active_pool` (this Back End) is active:
/// to become its standby, losing what it committed after `shared_through`, fenced by the
/// new store's current epoch.
async fn demotion(be: &store::BackEnd, active_pool: &str) -> Result<StoreAction, ApiError> {
    let role = be.cms_role().await.map_err(internal)?;
    let epoch = be
        .lease()
        .await
        .map_err(internal)?
        .map_or(role.epoch_floor, |l| l.epoch);
    Ok(StoreAction::Demote {
        active_pool: active_pool.to_string(),
        shared_through: role.shared_through,
        epoch,
    })
}

/// Lets the old store in `from` take changes again; says how that went.
async fn unfreeze(server: &Server, topology: &Topology, from: &str) -> String {
    match on_pool_store(server, topology, from, &StoreAction::Unfreeze).await {
        Ok(_) => format!("the store in {from} takes changes again"),
        Err(e) => format!(
            "the store in {from} could not be told to take changes again ({e}); run \
             Invoke-CsManagementServerFailover -Restore on a Front End of {from} when it answers"
        ),
    }
}

fn unavailable(message: String) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
}

/// This server's master, holding the lease of this pool's (active) store: a failover
/// resumed after a crash finds the lease with another Front End of the pool, or expired.
async fn ensure_master_here(server: &Server, be: &BackEnd) -> Result<(Master, i64), ApiError> {
    let (master, _) = server.install_master().expect("a Front End has a Back End");
    master.set_master_running(true).await;
    let deadline = Instant::now() + TAKEOVER_WAIT;
    loop {
        // Active with the lease the store holds now (not with one of an older term).
        if let Role::Active { epoch, .. } = master.role()
            && be.lease().await.map_err(internal)?.is_some_and(|l| {
                l.holder == server.fqdn && l.epoch == epoch && l.expires_at > now_ms()
            })
        {
            return Ok((master.clone(), epoch));
        }
        be.take_lease_over(&server.fqdn, cms::LEASE_TTL_MS)
            .await
            .map_err(internal)?
            .ok_or_else(|| {
                conflict(format!(
                    "the store in {} is not active; nothing to take over",
                    server.pool
                ))
            })?;
        master.claim_now();
        if Instant::now() > deadline {
            return Err(unavailable(format!(
                "{} did not become the active master within {TAKEOVER_WAIT:?}; run the cmdlet again",
                server.fqdn
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes the topology with `pool` as the CMS pool (published and active).
async fn publish_cms_pool(master: &Master, pool: &str) -> Result<(&'static str, String), ApiError> {
    let _guard = master.lock().await;
    let mut topology = master.topology().await.map_err(crate::exec::master_error)?;
    if topology.deployment.cms_pool.eq_ignore_ascii_case(pool) {
        return Ok(("Done", format!("the topology already names {pool}")));
    }
    let old = std::mem::replace(&mut topology.deployment.cms_pool, pool.to_string());
    let reply = crate::exec::write_topology(
        master,
        &topology,
        &format!("Central Management store moved from {old} to {pool}"),
        true,
    )
    .await?;
    Ok((
        "Done",
        format!(
            "version {} names {pool} as the CMS pool",
            reply.cms_version.unwrap_or(0)
        ),
    ))
}

/// Waits until every server that answers is up to date under this pool's master.
async fn replicate(server: &Server, master: &Master) -> Result<(&'static str, String), ApiError> {
    let deadline = Instant::now() + REPLICATE_WAIT;
    loop {
        master.replicate_now(None).await;
        let current = master
            .backend()
            .current_version()
            .await
            .map_err(internal)?
            .map_or(0, |v| v.version);
        let statuses = master
            .backend()
            .replica_statuses()
            .await
            .map_err(internal)?;
        let topology = master.topology().await.map_err(crate::exec::master_error)?;
        let mut behind = Vec::new();
        for t in cms::master::targets(&topology) {
            let ok = statuses
                .iter()
                .any(|s| s.fqdn.eq_ignore_ascii_case(&t.fqdn) && s.version >= current);
            if !ok && answers(server, &t).await {
                behind.push(t.fqdn);
            }
        }
        if behind.is_empty() {
            let total = cms::master::targets(&topology).len();
            let up = statuses.iter().filter(|s| s.version >= current).count();
            let rest = if up < total {
                "; the others do not answer"
            } else {
                ""
            };
            return Ok((
                "Done",
                format!("{up} of {total} servers up to date at version {current}{rest}"),
            ));
        }
        if Instant::now() > deadline {
            return Err(unavailable(format!(
                "not up to date after {REPLICATE_WAIT:?}: {}; Get-CsManagementStoreReplicationStatus shows them",
                behind.join(", ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn answers(server: &Server, t: &cms::master::Target) -> bool {
    health_answers(server, &t.address, t.port, Duration::from_millis(500)).await
}

/// Whether the server at `address:port` answers its `/health` within `timeout`.
async fn health_answers(
    server: &Server,
    address: &std::net::Ipv4Addr,
    port: u16,
    timeout: Duration,
) -> bool {
    server
        .client
        .get(format!("http://{address}:{port}/health"))
        .timeout(timeout)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

fn write_report(file: &str, record: &FailoverRecord) -> Result<(), ApiError> {
    let mut html =
        String::from("<html><head><title>Central Management store failover</title></head><body>\n");
    html.push_str(&format!(
        "<h1>Central Management store failover {}</h1>\n<p>From {} to {}, {} mode: <b>{}</b></p>\n<table border=\"1\"><tr><th>Step</th><th>State</th><th>Started</th><th>Took (ms)</th><th>Detail</th></tr>\n",
        record.id, escape(&record.from_pool), escape(&record.to_pool), record.mode, record.state
    ));
    for s in &record.steps {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            s.name,
            s.state,
            if s.started_at > 0 {
                format_timestamp(s.started_at)
            } else {
                String::new()
            },
            if s.started_at > 0 && s.finished_at >= s.started_at {
                (s.finished_at - s.started_at).to_string()
            } else {
                String::new()
            },
            escape(&s.detail)
        ));
    }
    html.push_str("</table>\n");
    if !record.potential_loss.is_empty() {
        html.push_str(&format!(
            "<p>Potential loss: {}</p>\n",
            escape(&record.potential_loss)
        ));
    }
    if !record.error.is_empty() {
        html.push_str(&format!("<p>Error: {}</p>\n", escape(&record.error)));
    }
    html.push_str("</body></html>\n");
    std::fs::write(file, html)
        .map_err(|e| bad_request(format!("cannot write the report {file}: {e}")))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `-Restore`: brings the store of this server's pool back to a consistent state.
async fn restore(server: &Server, s: &Situation, be: &BackEnd) -> Reply {
    let _one = RUNNING.lock().await;
    let here = server.pool.clone();
    let mut done = Vec::new();
    let pending = latest(be).await?.filter(|r| unfinished(&r.record));
    match s.local.mode {
        CmsMode::Moving => {
            // Frozen for a move to `target`: what the target's store is decides. Taking
            // changes again without knowing could make two writable stores.
            let target = s.local.other_pool.clone();
            let answer = on_pool_store(server, &s.topology, &target, &StoreAction::State).await;
            match answer {
                Ok(t) if t.mode == "Active" => {
                    let lost = be
                        .demote_cms(&target, t.shared_through, t.epoch)
                        .await
                        .map_err(internal)?;
                    done.push(format!(
                        "the store already moved to {target}: the store in {here} is now its standby ({} versions lost)",
                        lost.len()
                    ));
                }
                Ok(t)
                    if t.mode == "Backup"
                        && !t
                            .failover
                            .as_deref()
                            .is_some_and(|f| f == "Running" || f == "Failed") =>
                {
                    be.set_cms_active_again(
                        "restored (Invoke-CsManagementServerFailover -Restore)",
                    )
                    .await
                    .map_err(internal)?
                    .map_err(|e| conflict(e.to_string()))?;
                    done.push(format!(
                        "the move to {target} was cancelled: the store in {here} takes changes again"
                    ));
                }
                Ok(t) => {
                    return Err(conflict(format!(
                        "the failover to {target} is unfinished there (its store is {}, the failover {}); run \
                         Invoke-CsManagementServerFailover -Restore on a Front End of {target} first: it cancels the \
                         failover before the promotion or finishes it after",
                        t.mode,
                        t.failover.unwrap_or_default()
                    )));
                }
                Err(e) => {
                    return Err(unavailable(format!(
                        "the store in {here} is frozen for a move to {target}, and {target} does not answer ({e}), so whether it \
                         took over is unknown: the store stays read-only. Run -Restore again once {target} answers, or, if \
                         {target} is lost, fail over to the standby"
                    )));
                }
            }
        }
        CmsMode::Active => {
            if let Some(mut stored) = pending {
                // This pool was the target and was promoted: finish the move.
                stored.record.state = "Running".into();
                stored.record.runner = server.fqdn.clone();
                stored.record.runner_boot = boot().into();
                let result = run(server, s, be, &mut stored, false).await;
                stored.record.state = if result.is_ok() {
                    "Completed".into()
                } else {
                    "Failed".into()
                };
                stored.record.finished_at = now_ms();
                save(be, &mut stored).await?;
                result?;
                done.push(format!(
                    "the failover {} had promoted the store in {here}: its remaining steps ran\n{}",
                    stored.record.id,
                    stored.record.log()
                ));
            }
            let (master, _) = server.install_master().expect("a Front End has a Back End");
            master.set_master_running(true).await;
        }
        CmsMode::Backup => {
            if let Some(mut stored) = pending {
                // This pool was the target and was never promoted: cancel it first (the
                // old store decides from this record), then let the old store take
                // changes again.
                stored.record.state = "Cancelled".into();
                stored.record.finished_at = now_ms();
                save(be, &mut stored).await?;
                let from = stored.record.from_pool.clone();
                let unfrozen = unfreeze(server, &s.topology, &from).await;
                done.push(format!(
                    "the failover {} from {from} was cancelled before the standby in {here} was promoted; {unfrozen}",
                    stored.record.id
                ));
            }
        }
    }
    if let Some(b) = &server.backup {
        b.wake();
    }
    if done.is_empty() {
        done.push(format!(
            "nothing to restore: the store in {here} is {} and no failover is unfinished",
            s.local.mode.as_str()
        ));
    }
    Ok(output(Output::Text(done.join("\n"))))
}

// ---------------------------------------------------------------------------------------
// The unpaired path
// ---------------------------------------------------------------------------------------

async fn install_database(
    server: &Server,
    request: &InvokeRequest,
    inv: &Invocation,
    forwarded: bool,
) -> Reply {
    if !inv.switch("CentralManagementDatabase") {
        return Err(conflict(
            "a pool's Back End databases are created by its Front Ends when they first start; \
             Install-CsDatabase changes something only with -CentralManagementDatabase",
        ));
    }
    let sql = inv.text("SqlServerFqdn").unwrap_or_default();
    let topology = server.replica.topology();
    let pool = topology.front_end_pools.iter().find(|p| {
        p.back_end.server_fqdn.eq_ignore_ascii_case(&sql)
            || p.back_end
                .mirror
                .as_ref()
                .is_some_and(|m| m.server_fqdn.eq_ignore_ascii_case(&sql))
    });
    let Some(pool) = pool else {
        return Err(conflict(format!(
            "{sql} is not the Back End of a Front End pool of the topology; Get-CsService -CentralManagementDatabase and Get-CsPool list them"
        )));
    };
    if !pool.back_end.server_fqdn.eq_ignore_ascii_case(&sql) {
        return Err(conflict(format!(
            "{sql} is the mirror of {}'s Back End, and tandem does not mirror Back Ends: install on the primary, {}",
            pool.fqdn, pool.back_end.server_fqdn
        )));
    }
    if let Some(instance) = inv.text("SqlInstanceName")
        && !instance.eq_ignore_ascii_case(&pool.back_end.instance)
    {
        return Err(conflict(format!(
            "{sql} has no instance {instance}: its instance is {}",
            pool.back_end.instance
        )));
    }
    let clean = inv.switch("Clean");
    let pool_fqdn = pool.fqdn.clone();
    let here = async {
        let be = server.backend.as_ref().expect("checked by on_front_end_of");
        let role = be
            .install_cms(clean)
            .await
            .map_err(internal)?
            .map_err(|e| conflict(e.to_string()))?;
        Ok(output(Output::Text(format!(
            "Installed an empty Central Management database in {sql}\\{} ({pool_fqdn}); it is a {} store. \
             Next, on a Front End of {pool_fqdn}: Move-CsManagementServer -ConfigurationFileName <Export-CsConfiguration zip> -Force",
            inv.text("SqlInstanceName")
                .unwrap_or_else(|| "default instance".into()),
            role.mode.as_str()
        ))))
    };
    crate::exec::on_front_end_of(server, &pool_fqdn, request, forwarded, here).await
}

async fn move_management_server(server: &Server, inv: &Invocation) -> Reply {
    let s = situation(server).await?;
    let here = server.pool.clone();
    if let Some(target) = inv.text("TargetFqdn")
        && !target.eq_ignore_ascii_case(&here)
    {
        return Err(conflict(format!(
            "Move-CsManagementServer moves the store to the pool of the computer it runs on ({here}); run it on a Front End of {target}"
        )));
    }
    if s.cms_pool.eq_ignore_ascii_case(&here) && s.local.mode == CmsMode::Active {
        return Err(conflict(format!(
            "the Central Management store is already hosted by {here}"
        )));
    }
    let be = server.backend.clone().expect("checked by situation");
    let force = inv.switch("Force");
    let _one = one_at_a_time(server)?;
    let fe = s
        .topology
        .front_end_pool(&here)
        .expect("this server's pool is in its topology");
    let old_answers = s.master.is_some();
    let mut notes = Vec::new();
    // A move that loaded the store here and stopped before it was published is finished;
    // anything else needs the empty store Install-CsDatabase made.
    let resuming = s.local.mode == CmsMode::Active;
    if !resuming {
        if s.local.mode != CmsMode::Backup || s.standby_version > 0 {
            return Err(conflict(format!(
                "the Central Management database in {} is not empty (its store is {} at version {}): first run \
                 Install-CsDatabase -CentralManagementDatabase -Clean -SqlServerFqdn {} -SqlInstanceName {}",
                fe.back_end.server_fqdn,
                s.local.mode.as_str(),
                s.standby_version,
                fe.back_end.server_fqdn,
                fe.back_end.instance
            )));
        }
        if !old_answers && !force {
            return Err(conflict(format!(
                "the Central Management store in {} is unreachable: a move without it needs -Force and \
                 -ConfigurationFileName <the file Export-CsConfiguration wrote>",
                s.cms_pool
            )));
        }
        // Every file is read and checked before the old store is touched.
        let from_file = match inv.text("ConfigurationFileName") {
            Some(file) => {
                let config =
                    crate::archive::read(std::path::Path::new(&file)).map_err(bad_request)?;
                if !config
                    .items
                    .iter()
                    .any(|i| i.key == keys::TOPOLOGY_ACTIVE && i.value.is_some())
                {
                    return Err(bad_request(format!(
                        "{file} holds no active topology; nothing was moved"
                    )));
                }
                Some(config)
            }
            None if old_answers => None,
            None => {
                return Err(conflict(
                    "-ConfigurationFileName is needed when the old store is unreachable: the file Export-CsConfiguration wrote",
                ));
            }
        };
        let lis = match inv.text("LisConfigurationFileName") {
            Some(file) => Some(
                crate::archive::read_lis(std::path::Path::new(&file)).map_err(|e| {
                    bad_request(format!("-LisConfigurationFileName: {e}; nothing was moved"))
                })?,
            ),
            None => None,
        };
        let mut known_epoch = server.replica.state().await.map_err(internal)?.epoch;
        // With the old store up, it stops taking changes and its own content moves: an
        // export file would miss what changed after it was written.
        let (mut items, shared_through) = if old_answers {
            let frozen = on_pool_store(
                server,
                &s.topology,
                &s.cms_pool,
                &StoreAction::Freeze {
                    to_pool: here.clone(),
                },
            )
            .await
            .map_err(unavailable)?;
            known_epoch = known_epoch.max(frozen.epoch);
            let snapshot = on_pool_store(server, &s.topology, &s.cms_pool, &StoreAction::Snapshot)
                .await
                .map_err(unavailable)?;
            if from_file.is_some() {
                notes.push(format!(
                    "The store in {} answered: its own content (version {}) was moved, not the export file.",
                    s.cms_pool, snapshot.version
                ));
            }
            (snapshot.items, snapshot.version)
        } else {
            let config = from_file.expect("checked above");
            (config.items, config.version)
        };
        if let Some(config) = lis {
            items.retain(|i| !i.key.starts_with(keys::LIS_PREFIX));
            items.extend(config.items);
        }
        let changes: Vec<(String, Option<String>)> = items
            .into_iter()
            .filter(|i| i.value.is_some())
            .map(|i| (i.key, i.value))
            .collect();
        be.load_cms_and_activate(
            &changes,
            &format!("moved from {}", s.cms_pool),
            shared_through,
            known_epoch,
            &s.cms_pool,
            &server.fqdn,
            cms::LEASE_TTL_MS,
        )
        .await
        .map_err(internal)?
        .map_err(|e| conflict(e.to_string()))?;
    }
    let (master, _) = ensure_master_here(server, &be).await?;
    let (_, detail) = publish_cms_pool(&master, &here).await?;
    notes.insert(
        0,
        format!(
            "The Central Management store is now hosted by {here} ({}); {detail}.",
            back_end_name(&s.topology, &here)
        ),
    );
    if old_answers {
        let action = demotion(&be, &here).await?;
        let demoted = on_pool_store(server, &s.topology, &s.cms_pool, &action).await;
        notes.push(match demoted {
            Ok(_) => format!("The store in {} is now inactive.", s.cms_pool),
            Err(e) => format!("The store in {} did not answer ({e}); it stays read-only and steps down when it hears of the new store.", s.cms_pool),
        });
    }
    let mut setup: Vec<String> = fe
        .servers
        .iter()
        .filter(|x| !x.fqdn.eq_ignore_ascii_case(&server.fqdn))
        .map(|x| format!("{} (installs the Central Management services)", x.fqdn))
        .collect();
    if let Some(old) = s.topology.front_end_pool(&s.cms_pool) {
        setup.extend(old.servers.iter().map(|x| {
            format!(
                "{} (removes the inactive Central Management services, once it is back)",
                x.fqdn
            )
        }));
    }
    notes.push(format!(
        "Run Bootstrapper /Setup on these computers:\n  {}",
        setup.join("\n  ")
    ));
    Ok(output(Output::Text(notes.join("\n"))))
}

async fn bootstrapper(server: &Server, inv: &Invocation) -> Reply {
    let topology = server.replica.topology();
    let mut rows = Vec::new();
    let component = |name: &str, state: &str, detail: String| {
        Record::new()
            .with("Computer", server.fqdn.clone())
            .with("Component", name)
            .with("State", state)
            .with("Detail", detail)
    };
    rows.push(component(
        "Replica Replicator Agent",
        "Installed",
        format!("local replica at version {}", server.replica.version()),
    ));
    if !inv.switch("Setup") {
        rows.push(component(
            "Central Management services",
            if server.master().is_some() {
                "Installed"
            } else {
                "NotInstalled"
            },
            "add /Setup to install what this server's role needs".into(),
        ));
        return Ok(output(Output::Records(rows)));
    }
    let wanted = server.backend.is_some() && crate::hosts_cms_services(&topology, &server.pool);
    match (wanted, server.master()) {
        (true, _) => {
            let (m, fresh) = server.install_master().expect("a Front End has a Back End");
            m.set_master_running(true).await;
            let mode = m.backend().cms_role().await.map_err(internal)?.mode;
            rows.push(component(
                "Central Management services",
                if fresh { "InstalledNow" } else { "Installed" },
                format!(
                    "Master Replicator and File Transfer Agent on {} ({} store)",
                    server.pool,
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
                    server.pool, topology.deployment.cms_pool
                ),
            ));
        }
        (false, None) => rows.push(component(
            "Central Management services",
            "NotNeeded",
            format!(
                "{} neither hosts the Central Management store ({}) nor holds its standby",
                server.fqdn, topology.deployment.cms_pool
            ),
        )),
    }
    Ok(output(Output::Records(rows)))
}
