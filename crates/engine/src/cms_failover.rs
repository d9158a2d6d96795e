//! Moving the Central Management store: `Invoke-CsManagementServerFailover` (to the
//! standby store the Backup Service keeps in the CMS pool's partner) as a durable
//! operation, `-Restore`, the old store's side of a move ([`StoreAction`]), and the
//! unpaired path's move from an export (`Move-CsManagementServer`).
//!
//! A failover runs on a Front End of the pool that will host the store, as the product
//! requires; its record (`dr::cms::CmsFailover`) is kept in that pool's Back End, since
//! the store it replaces may be lost. There is never more than one writable store: the
//! old one refuses writes from `Freeze` on, the new one takes none before `Takeover`, and
//! an old master that was cut off carries an epoch of an older term, which every replica
//! refuses.

use std::sync::Arc;
use std::time::Duration;

use clock::Backoff;
use cms::keys;
use cms::master::{Master, Role};
use cms::protocol::RoleReport;
use dr::FailMode;
use dr::cms::{CmsFailover, CmsStep, HeardCms};
use dr::progress::OpState;
use node::{MasterAt, Node};
use serde::{Deserialize, Serialize};
use store::{BackEnd, CmsMode, CmsRole, History, Item, Standing};
use topology::Topology;

use crate::runner::{Durable, StepDone, StepFailed};
use crate::{Engine, Error};

/// How long `Drain` waits for the standby to hold every version.
const DRAIN_WAIT: Duration = Duration::from_secs(30);
/// How long `Takeover` waits for a Front End of this pool to take the lease.
const TAKEOVER_WAIT: Duration = Duration::from_secs(10);
/// How long `Replicate` waits for the reachable servers.
const REPLICATE_WAIT: Duration = Duration::from_secs(20);
/// How long a call to the old store's Front End may take.
const STORE_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a probe of another server's role or health may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a promotion waits for the witness's and the standby store's votes: a vote the
/// old master renewed just before it was lost (or gave back as its store froze) runs out
/// within a vote's life.
const CLAIM_WAIT: Duration = Duration::from_millis(cms::witness::VOTE_TTL_MS as u64 + 1_500);

/// How a store won the votes it needed to become the active one (see `claim_votes`).
#[derive(Debug, Clone)]
struct Claimed {
    /// Said in the failover's step or the move's notes.
    said: String,
    /// `-Force` went on without the witness: the store's master writes on its lease alone
    /// until a voter answers (`store::CmsVote::forced_at`), set once the store is active.
    forced: bool,
}

impl Claimed {
    /// Records the override in the store just made active, when there was one.
    async fn mark(&self, be: &BackEnd, now: i64) -> Result<(), Error> {
        if self.forced {
            be.update_cms_vote(|_, v| v.forced_at = now).await?;
        }
        Ok(())
    }
}

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
    /// Become a standby of the store in `active_pool`, whose line is `history`.
    Demote {
        active_pool: String,
        history: History,
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
    /// The disaster-recovery records among what the lost versions held (see
    /// `dr::state::dropped_records`).
    #[serde(default)]
    pub dropped_records: Vec<String>,
    /// The store's `shared_through` (see `store::cmsrole`).
    pub shared_through: i64,
    /// The state of the newest CMS failover whose target is this store, if any.
    pub failover: Option<String>,
    /// The history of the store's line.
    #[serde(default)]
    pub history: History,
    #[serde(default)]
    pub items: Vec<Item>,
}

/// What `Invoke-CsManagementServerFailover` was asked for.
#[derive(Debug, Clone, Default)]
pub struct CmsFailoverRequest {
    pub restore: bool,
    pub what_if: bool,
    pub force: bool,
    /// `-Report`: where to write an HTML log.
    pub report: Option<String>,
    pub backup_sql_fqdn: Option<String>,
    pub backup_sql_instance: Option<String>,
    pub backup_mirror_fqdn: Option<String>,
    pub backup_mirror_instance: Option<String>,
}

/// What a failover, a `-Restore` or a move says.
#[derive(Debug, Clone, Default)]
pub struct Said {
    pub text: String,
    pub warnings: Vec<String>,
}

/// What `Move-CsManagementServer` moves when the old store does not answer.
#[derive(Debug, Clone)]
pub struct MoveRequest {
    /// `-TargetFqdn`, when given.
    pub target: Option<String>,
    pub force: bool,
    /// The configuration `Export-CsConfiguration` wrote: its items and version.
    pub from_file: Option<(Vec<Item>, i64)>,
    /// The Location Information Service items `Export-CsLisConfiguration` wrote.
    pub lis: Option<Vec<Item>>,
}

/// The pool, the Back End and the old master of the CMS as this server sees them.
#[derive(Debug)]
struct Situation {
    topology: Arc<Topology>,
    cms_pool: String,
    /// The active master's management URL, when one answers.
    master: Option<String>,
    master_fqdn: String,
    local: CmsRole,
    standby_version: i64,
    /// Which copy of this pool's Back End is principal, when it is mirrored.
    principal: Option<store::Copy>,
}

/// Why `cms_pool` has no standby in `here`, for a hint that fits: a Lync Server 2010 pool
/// cannot be paired at all; another pool can be, with `here` or the pool named.
fn unpaired_reason(topology: &Topology, cms_pool: &str, here: &str) -> String {
    let version = topology.front_end_pool(cms_pool).map(|p| p.product_version);
    match (version, topology.backup_pool_of(cms_pool)) {
        (Some(v), _) if !v.supports_pairing() => {
            format!(" ({cms_pool} is a {v} pool, which cannot be paired)")
        }
        (_, Some(p)) => format!(" (its standby is in {p}, the pool paired with it)"),
        (_, None) => format!(" ({cms_pool} is not paired with {here})"),
    }
}

/// The two cmdlets of seed 001 step 6 that rebuild the store in `here`'s Back End.
fn rebuild_hint(topology: &Topology, here: &str) -> String {
    let (server, instance) = topology.front_end_pool(here).map_or_else(
        || ("<Back End>".to_string(), "<instance>".to_string()),
        |p| (p.back_end.server_fqdn.clone(), p.back_end.instance.clone()),
    );
    format!(
        "move the store with Install-CsDatabase -CentralManagementDatabase -Clean -SqlServerFqdn {server} \
         -SqlInstanceName {instance} and Move-CsManagementServer -ConfigurationFileName <export> -Force"
    )
}

fn back_end_name(topology: &Topology, pool: &str) -> String {
    topology.front_end_pool(pool).map_or(String::new(), |p| {
        format!("{}\\{}", p.back_end.server_fqdn, p.back_end.instance)
    })
}

impl Engine {
    fn backend(&self) -> Result<&BackEnd, Error> {
        self.node.backend.as_ref().ok_or_else(|| {
            Error::conflict(format!(
                "{} is not a Front End: run Invoke-CsManagementServerFailover on a Front End of the pool that will host the Central Management store",
                self.node.fqdn
            ))
        })
    }

    async fn situation(&self) -> Result<Situation, Error> {
        let be = self.backend()?;
        let topology = self.node.topology();
        let cms_pool = topology.deployment.cms_pool.clone();
        let (master, master_fqdn) = match self.node.locate_master().await {
            Ok(MasterAt::Here(m)) => (Some(self.node.base()), m.fqdn().to_string()),
            Ok(MasterAt::There(base)) => {
                let fqdn = self
                    .role_of(&base)
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
            local: be.cms_role().await?,
            standby_version: be.current_version().await?.map_or(0, |v| v.version),
            principal: be.mirror_state().await?.map(|m| m.principal),
            topology,
        })
    }

    /// Before a store in `to` is promoted or loaded as the active one, when the deployment
    /// has a witness: the witness's vote, and with `standby_too` this pool's standby
    /// store's (see `cms::witness`), so that no master elsewhere still counts either.
    /// Waits up to [`CLAIM_WAIT`]; says how the votes went, or why the store must not
    /// become active. `force` goes on without a witness that does not answer (the operator
    /// asserts that the old store's site is down), never against one that refuses.
    async fn claim_votes(
        &self,
        topology: &Topology,
        from: &str,
        to: &str,
        term: i64,
        standby_too: bool,
        force: bool,
    ) -> Result<Option<Claimed>, Error> {
        use cms::witness::{self, Ask, Heard, VoteAnswer};
        let Some(voters) = witness::Voters::of(topology, to) else {
            return Ok(None);
        };
        let be = self.backend()?;
        let clock = self.node.clock;
        let port = topology.ports.management;
        let name = voters.witness.0.clone();
        let deadline = clock.deadline(CLAIM_WAIT);
        let mut backoff = Backoff::polling();
        loop {
            let from_witness =
                witness::ask_witness(&self.node.api, port, &voters, Ask::Claim, to, term).await;
            let witness_said = match &from_witness {
                Heard::Answer(VoteAnswer::Granted { .. }) => None,
                Heard::Answer(VoteAnswer::Refused { reason }) => {
                    Some((false, format!("the witness {name} refused: {reason}")))
                }
                Heard::Answer(VoteAnswer::Released) => Some((
                    false,
                    format!("the witness {name} answered a claim as a release"),
                )),
                Heard::Silent(why) => Some((true, why.clone())),
            };
            let witness_ok = match &witness_said {
                None => true,
                Some((true, _)) => force,
                Some((false, _)) => false,
            };
            let mut standby_said = None;
            if witness_ok && standby_too {
                let now = clock.now_ms();
                let answer = be
                    .update_cms_vote(|role, vote| {
                        witness::decide_as_standby(role, vote, Ask::Claim, to, term, now)
                    })
                    .await?;
                if let VoteAnswer::Refused { reason } = answer {
                    standby_said = Some(reason);
                }
            }
            if witness_ok && standby_said.is_none() {
                return Ok(Some(match witness_said {
                    None => Claimed {
                        said: format!(
                            "the witness {name}{} voted for {to}",
                            if standby_too {
                                " and the standby store"
                            } else {
                                ""
                            }
                        ),
                        forced: false,
                    },
                    Some((_, why)) => Claimed {
                        said: format!(
                            "-Force: {why}; {to} was promoted without the witness's vote"
                        ),
                        forced: true,
                    },
                }));
            }
            if clock.passed(deadline) {
                return Err(match (witness_said, standby_said) {
                    (Some((false, why)), _) => Error::conflict(format!(
                        "{why}. The master of the store in {from} is alive and reaches the witness: {from} is cut off \
                         from here, not lost, and promoting this store would make a second writable one. Nothing was \
                         promoted. Wait for the network to return, or stop the servers of {from}'s site first; \
                         Invoke-CsManagementServerFailover -Restore on a Front End of {to} clears this failover"
                    )),
                    (Some((true, why)), _) => Error::unavailable(format!(
                        "{why}, and without the witness's vote this failover could make a second writable store \
                         if {from} is only cut off. Nothing was promoted. Run the cmdlet again once the witness \
                         answers, or with -Force if {from}'s site is down"
                    )),
                    (None, Some(why)) => Error::conflict(format!(
                        "the standby store here refused its vote: {why}. The master of the store in {from} still \
                         reaches this pool; nothing was promoted. Run the failover while the old store answers \
                         (planned), or Invoke-CsManagementServerFailover -Restore on a Front End of {to}"
                    )),
                    (None, None) => unreachable!("both votes granted returns above"),
                });
            }
            backoff.wait(&clock).await;
        }
    }

    async fn role_of(&self, base: &str) -> Option<RoleReport> {
        cms::protocol::fetch_role(&self.node.api, base, PROBE_TIMEOUT).await
    }

    // -----------------------------------------------------------------------------------
    // The old store's side
    // -----------------------------------------------------------------------------------

    /// Serves a [`StoreAction`] on a server with the Central Management services.
    pub async fn store_action(&self, action: StoreAction) -> Result<StoreReply, Error> {
        let Some(master) = self.node.master() else {
            return Err(Error::unavailable(format!(
                "{} runs no Central Management services",
                self.node.fqdn
            )));
        };
        let be = master.backend();
        let mut lost = 0;
        let mut dropped = Vec::new();
        match &action {
            StoreAction::State | StoreAction::Snapshot => {}
            StoreAction::Freeze { to_pool } => {
                be.set_cms_moving(to_pool)
                    .await?
                    .map_err(|e| Error::conflict(e.to_string()))?;
            }
            StoreAction::Unfreeze => {
                be.set_cms_active_again("the move was cancelled")
                    .await?
                    .map_err(|e| Error::conflict(e.to_string()))?;
            }
            StoreAction::Demote {
                active_pool,
                history,
                epoch,
            } => {
                let versions = be.demote_cms(active_pool, history, *epoch).await?;
                lost = versions.len() as i64;
                dropped = dr::state::dropped_records(
                    versions
                        .iter()
                        .flat_map(|v| v.keys.iter().map(String::as_str)),
                );
                // Step down now rather than at the lease task's next turn.
                master.step_down().await;
            }
        }
        if let Some(b) = &self.node.backup {
            b.wake();
        }
        let role = be.cms_role().await?;
        let lease = be.lease().await?;
        Ok(StoreReply {
            mode: role.mode.as_str().into(),
            version: be.current_version().await?.map_or(0, |v| v.version),
            epoch: lease.map_or(0, |l| l.epoch).max(role.epoch_floor),
            lost_versions: lost,
            dropped_records: dropped,
            shared_through: role.shared_through,
            failover: latest(be)
                .await?
                .map(|r| r.record.progress.state.as_str().to_string()),
            history: be.history().await?,
            items: if matches!(action, StoreAction::Snapshot) {
                be.items().await?
            } else {
                Vec::new()
            },
        })
    }

    /// Calls [`api::paths::CMS_STORE`] on the first Front End of `pool` that answers; a
    /// demotion goes to every one of them, so that whichever holds the lease steps down
    /// at once.
    async fn on_pool_store(
        &self,
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
            let base = Node::base_of(topology, s);
            match self
                .node
                .api
                .post::<_, StoreReply>(&base, api::paths::CMS_STORE, action, STORE_CALL_TIMEOUT)
                .await
            {
                Ok(reply) if !every => return Ok(reply),
                Ok(reply) => {
                    first.get_or_insert(reply);
                }
                Err(e) => last = format!("{}: {e}", s.fqdn),
            }
        }
        first.ok_or(last)
    }

    /// What the old store is told once the store in `active_pool` (this Back End) is
    /// active: to become its standby, losing what it committed beyond where its line and
    /// this store's part, fenced by the new store's current epoch.
    async fn demotion(&self, be: &BackEnd, active_pool: &str) -> Result<StoreAction, Error> {
        let role = be.cms_role().await?;
        let epoch = be.lease().await?.map_or(role.epoch_floor, |l| l.epoch);
        Ok(StoreAction::Demote {
            active_pool: active_pool.to_string(),
            history: be.history().await?,
            epoch,
        })
    }

    /// Lets the old store in `from` take changes again; says how that went.
    async fn unfreeze(&self, topology: &Topology, from: &str) -> String {
        match self
            .on_pool_store(topology, from, &StoreAction::Unfreeze)
            .await
        {
            Ok(_) => format!("the store in {from} takes changes again"),
            Err(e) => format!(
                "the store in {from} could not be told to take changes again ({e}); run \
                 Invoke-CsManagementServerFailover -Restore on a Front End of {from} when it answers"
            ),
        }
    }

    // -----------------------------------------------------------------------------------
    // Invoke-CsManagementServerFailover
    // -----------------------------------------------------------------------------------

    /// `Invoke-CsManagementServerFailover`: `-WhatIf`, `-Restore`, a resume of an unfinished
    /// failover, or a new one.
    pub async fn cms_failover(
        self: &Arc<Self>,
        request: CmsFailoverRequest,
    ) -> Result<Said, Error> {
        let s = self.situation().await?;
        let be = self.backend()?.clone();
        if request.restore {
            return self.restore(&s, &be).await;
        }
        let pending = latest(&be)
            .await?
            .filter(|r| r.record.progress.state.is_unfinished());
        if request.what_if {
            return Ok(Said {
                text: self
                    .cms_what_if(&s, pending.as_ref().map(|p| &p.record))
                    .await,
                warnings: vec![],
            });
        }
        let mut stored = match pending {
            Some(p) => p,
            None => {
                self.check_can_fail_over(&s, &request)?;
                let mode = if s.master.is_some() {
                    FailMode::Planned
                } else {
                    FailMode::Disaster
                };
                let known_epoch = self.node.replica.state().await?.epoch;
                Stored {
                    record: CmsFailover::new(
                        &s.cms_pool,
                        &self.node.pool,
                        mode,
                        known_epoch,
                        self.node.clock.now_ms(),
                    ),
                    token: 0,
                }
            }
        };
        if stored.record.id == 0 {
            // Saved once to be numbered: its key is what /health lists.
            save(&be, &mut stored).await?;
        }
        let outcome = self.run_cms_failover(stored, request.force, Some(s)).await;
        let (record, result) = match outcome {
            Ok(pair) => pair,
            Err(busy) => return Err(busy),
        };
        if let Some(file) = &request.report {
            write_report(file, &record)?;
        }
        result?;
        let mut said = Said {
            text: record.log(),
            warnings: vec![],
        };
        if record.mode == FailMode::Disaster {
            said.warnings.push(format!(
                "the store in {} was unreachable: it is fenced, and becomes a standby of {} when its servers come back",
                record.from_pool, record.to_pool
            ));
        }
        Ok(said)
    }

    /// Runs a CMS failover to its end on this server, unless its runner is alive
    /// elsewhere (refused) or here (refused). The outer error is the refusal; the inner
    /// result is the run's.
    async fn run_cms_failover(
        self: &Arc<Self>,
        mut stored: Stored,
        force: bool,
        situation: Option<Situation>,
    ) -> Result<(CmsFailover, Result<(), Error>), Error> {
        let key = stored.record.key();
        let runner = stored.record.progress.runner.clone();
        if stored.record.progress.state == OpState::Running
            && !runner.is_empty()
            && !runner.eq_ignore_ascii_case(&self.node.fqdn)
            && self.runner_alive(&runner, &key).await
        {
            return Err(Error::conflict(format!(
                "the Central Management store failover {} is running on {runner}; wait for it, or if that server is gone \
                 run Invoke-CsManagementServerFailover -Restore",
                stored.record.id
            )));
        }
        let Some(running) = self.claim(&key) else {
            return Err(Error::conflict(format!(
                "a Central Management store failover or move is already running on {}; wait for it, then check Get-CsManagementStoreReplicationStatus -CentralManagementStoreStatus",
                self.node.fqdn
            )));
        };
        let be = self.backend()?.clone();
        let target_active = be.cms_role().await?.mode == CmsMode::Active;
        stored.record.prepare_resume(target_active);
        let engine = self.clone();
        let (record, result) = self
            .node
            .spawn(async move {
                let _running = running;
                let s = match situation {
                    Some(s) => s,
                    None => match engine.situation().await {
                        Ok(s) => s,
                        Err(e) => return (stored.record, Err(e)),
                    },
                };
                let mut run = CmsRun {
                    engine: &engine,
                    situation: s,
                    be,
                    stored,
                    force,
                };
                let result = engine.run_here(&mut run).await;
                (run.stored.record, result)
            })
            .await
            .map_err(Error::internal)?;
        Ok((record, result))
    }

    /// Finishes a failover whose runner is gone (the reconciler's way on).
    pub(crate) async fn run_cms_failover_again(
        self: &Arc<Self>,
        stored: Stored,
    ) -> Result<(), Error> {
        let (_, result) = self.run_cms_failover(stored, false, None).await?;
        result
    }

    fn check_can_fail_over(
        &self,
        s: &Situation,
        request: &CmsFailoverRequest,
    ) -> Result<(), Error> {
        let here = &self.node.pool;
        if s.cms_pool.eq_ignore_ascii_case(here) && s.local.mode == CmsMode::Active {
            return Err(Error::conflict(format!(
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
            let rebuild = rebuild_hint(&s.topology, here);
            return Err(Error::conflict(match standby_pool {
                Some(p) => format!(
                    "the standby of the Central Management store of {} is not in {here}: it is in {p}, the pool paired with it. \
                     Run Invoke-CsManagementServerFailover on a Front End of {p}, or {rebuild}",
                    s.cms_pool
                ),
                None => format!(
                    "the Central Management store of {} has no standby anywhere{}. \
                     Rebuild it in {here} from an export (seed 001 step 6): {rebuild}",
                    s.cms_pool,
                    unpaired_reason(&s.topology, &s.cms_pool, here)
                ),
            }));
        }
        if s.local.mode != CmsMode::Backup {
            return Err(Error::conflict(format!(
                "Cannot fail over the Central Management Server. The new Central Management Store located at \"{here}\" is not in backup mode \
                 (its store is {}); Invoke-CsManagementServerFailover -Restore on a Front End of {here} clears a half-done failover",
                s.local.mode.as_str(),
            )));
        }
        // A planned failover drains the standby first; a disaster has only what it holds.
        if s.standby_version == 0 && s.master.is_none() {
            return Err(Error::conflict(format!(
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
        // The seeds name the copy of the Back End that holds the principal database:
        // -BackupSqlServerFqdn the primary, -MirrorSqlServerFqdn its mirror (after
        // Invoke-CsDatabaseFailover -NewPrincipal Mirror).
        let principal = s.principal.unwrap_or(store::Copy::Primary);
        let state_hint =
            format!("Get-CsDatabaseMirrorState -DatabaseType Centralmgmt -PoolFqdn {here}");
        if let Some(named) = &request.backup_mirror_fqdn {
            match &fe.back_end.mirror {
                Some(m) if m.server_fqdn.eq_ignore_ascii_case(named) => {
                    if principal != store::Copy::Mirror {
                        return Err(Error::conflict(format!(
                            "{named} is the mirror of {here}'s Back End, and the principal copy of the Central Management database is on the primary, {} ({state_hint}); \
                             run Invoke-CsManagementServerFailover -BackupSqlServerFqdn {} -BackupSqlInstanceName {}",
                            fe.back_end.server_fqdn, fe.back_end.server_fqdn, fe.back_end.instance
                        )));
                    }
                    if let Some(instance) = &request.backup_mirror_instance
                        && !instance.eq_ignore_ascii_case(&m.instance)
                    {
                        return Err(Error::conflict(format!(
                            "{named} has no instance {instance}: the mirror is in instance {}",
                            m.instance
                        )));
                    }
                }
                _ => {
                    return Err(Error::conflict(format!(
                        "{named} is not the mirror of {here}'s Back End; run Invoke-CsManagementServerFailover -BackupSqlServerFqdn {} -BackupSqlInstanceName {}",
                        fe.back_end.server_fqdn, fe.back_end.instance
                    )));
                }
            }
        }
        match &request.backup_sql_fqdn {
            Some(named)
                if named.eq_ignore_ascii_case(&fe.back_end.server_fqdn)
                    && principal == store::Copy::Mirror =>
            {
                let m = fe
                    .back_end
                    .mirror
                    .as_ref()
                    .expect("a principal mirror is in the topology");
                return Err(Error::conflict(format!(
                    "the principal copy of {here}'s Back End is its mirror, {} ({state_hint}); \
                     run Invoke-CsManagementServerFailover -MirrorSqlServerFqdn {} -MirrorSqlInstanceName {}",
                    m.server_fqdn, m.server_fqdn, m.instance
                )));
            }
            Some(named) if !named.eq_ignore_ascii_case(&fe.back_end.server_fqdn) => {
                return Err(Error::conflict(format!(
                    "{named} does not hold the standby Central Management database: {here}'s Back End is {}; \
                     run Invoke-CsManagementServerFailover -BackupSqlServerFqdn {} -BackupSqlInstanceName {}",
                    fe.back_end.server_fqdn, fe.back_end.server_fqdn, fe.back_end.instance
                )));
            }
            Some(_) => {
                if let Some(instance) = &request.backup_sql_instance
                    && !instance.eq_ignore_ascii_case(&fe.back_end.instance)
                {
                    return Err(Error::conflict(format!(
                        "{} has no instance {instance}: the standby is in instance {}",
                        fe.back_end.server_fqdn, fe.back_end.instance
                    )));
                }
            }
            // A disaster names the copy to promote: the primary, or the mirror when it is
            // principal (checked above when the mirror is named).
            None if s.master.is_none() && request.backup_mirror_fqdn.is_none() => {
                let (option, server, instance) = match (&fe.back_end.mirror, principal) {
                    (Some(m), store::Copy::Mirror) => ("Mirror", &m.server_fqdn, &m.instance),
                    _ => ("Backup", &fe.back_end.server_fqdn, &fe.back_end.instance),
                };
                return Err(Error::conflict(format!(
                    "the Central Management store in {} is unreachable (no Front End of {} holds the master role). \
                     To promote the standby in {here}, run Invoke-CsManagementServerFailover -{option}SqlServerFqdn {server} -{option}SqlInstanceName {instance}",
                    s.cms_pool, s.cms_pool
                )));
            }
            None => {}
        }
        Ok(())
    }

    fn heard_cms(&self, pool: &str) -> Option<HeardCms> {
        let h = self.node.backup.as_ref()?.partner_heard(Some(pool))?;
        Some(HeardCms {
            at_ms: h.at_ms,
            versions: h.cms_versions,
            oldest_ms: h.cms_oldest_ms,
        })
    }

    async fn cms_what_if(&self, s: &Situation, unfinished: Option<&CmsFailover>) -> String {
        let here = &self.node.pool;
        let standby_here = s
            .topology
            .backup_pool_of(&s.cms_pool)
            .is_some_and(|p| p.eq_ignore_ascii_case(here));
        let proposed = if standby_here || s.local.mode != CmsMode::Backup {
            format!(
                "{} (standby, {}, version {})",
                back_end_name(&s.topology, here),
                s.local.mode.as_str(),
                s.standby_version
            )
        } else {
            format!(
                "none: {here} holds no standby of the store of {}{}",
                s.cms_pool,
                unpaired_reason(&s.topology, &s.cms_pool, here)
            )
        };
        let mut text = format!(
            "What if: Invoke-CsManagementServerFailover on {}.\n\
             Current State:\n\
             \x20 Central Management Server Pool : {}\n\
             \x20 Central Management Store      : {}\n\
             \x20 Active master                  : {}\n\
             Proposed State:\n\
             \x20 Central Management Server Pool : {here}\n\
             \x20 Central Management Store      : {proposed}\n",
            self.node.fqdn,
            s.cms_pool,
            back_end_name(&s.topology, &s.cms_pool),
            if s.master_fqdn.is_empty() {
                "none answers (the store is unavailable)".to_string()
            } else {
                s.master_fqdn.clone()
            },
        );
        let line = match self.backend() {
            Ok(be) => be.history().await.ok(),
            Err(_) => None,
        };
        let newest = match line {
            Some(line) if s.master.is_none() && standby_here && unfinished.is_none() => {
                self.newest_survivor(&line, s.standby_version).await
            }
            // No standby here: what the survivors hold is what a rebuild from an older
            // export would lose.
            _ if s.master.is_none() && !standby_here && unfinished.is_none() => {
                match self.node.replica.store().history().await {
                    Ok(line) => self.newest_survivor(&line, 0).await,
                    Err(_) => None,
                }
            }
            _ => None,
        };
        if let Some(n) = newest.as_ref().filter(|_| standby_here) {
            text.push_str(&format!(
                "  Newest surviving replica        : {} at version {} ({})\n",
                n.server,
                n.version,
                if n.version > s.standby_version {
                    format!(
                        "the standby is {} version(s) behind; it would be caught up from it first",
                        n.version - s.standby_version
                    )
                } else {
                    "the standby is not behind it".to_string()
                }
            ));
        }
        if let Some(r) = unfinished {
            text.push_str(&format!(
                "An unfinished failover ({}, {}) would be resumed; -Restore clears it instead.\n",
                r.id,
                r.mode.as_str()
            ));
        } else if s.cms_pool.eq_ignore_ascii_case(here) && s.local.mode == CmsMode::Active {
            text.push_str("Nothing would change: this pool already hosts the store.\n");
        } else if !standby_here {
            text.push_str(&format!(
                "Mode: nothing to promote. Rebuild the store here from an export (seed 001 step 6): {}. {}\n",
                rebuild_hint(&s.topology, here),
                match &newest {
                    Some(n) => format!(
                        "The newest surviving replica, {}'s, holds version {}: a rebuild from an export taken before that \
                         version loses what came after it",
                        n.server, n.version
                    ),
                    None => "No surviving server's replica answered".to_string(),
                }
            ));
        } else if s.master.is_some() {
            text.push_str(
                "Mode: planned. The store would become read-only, the standby would receive every version, \
                 then the standby would become the active store and the old one its standby. Nothing would be lost.\n",
            );
        } else {
            text.push_str(&format!(
                "Mode: disaster. The standby would be promoted in a new term; {}.\n",
                dr::cms::potential_loss(
                    self.heard_cms(&s.cms_pool),
                    &s.cms_pool,
                    newest.map(|n| n.survivor(s.standby_version)).as_ref()
                )
            ));
        }
        text.push_str("Nothing was changed.");
        text
    }

    /// This server's master, holding the lease of this pool's (active) store: a failover
    /// resumed after a crash finds the lease with another Front End of the pool, or
    /// expired.
    async fn ensure_master_here(&self, be: &BackEnd) -> Result<(Master, i64), Error> {
        let server = &*self.node;
        let (master, _) = server.install_master().expect("a Front End has a Back End");
        master.set_master_running(true).await;
        let clock = server.clock;
        let deadline = clock.deadline(TAKEOVER_WAIT);
        let mut backoff = Backoff::polling();
        loop {
            // Active with the lease the store holds now (not with one of an older term).
            if let Role::Active { epoch, .. } = master.role()
                && be.lease().await?.is_some_and(|l| {
                    l.holder == server.fqdn && l.epoch == epoch && l.expires_at > clock.now_ms()
                })
            {
                return Ok((master.clone(), epoch));
            }
            be.take_lease_over(&server.fqdn, cms::LEASE_TTL_MS)
                .await?
                .ok_or_else(|| {
                    Error::conflict(format!(
                        "the store in {} is not active; nothing to take over",
                        server.pool
                    ))
                })?;
            master.claim_now();
            if clock.passed(deadline) {
                return Err(Error::unavailable(format!(
                    "{} did not become the active master within {TAKEOVER_WAIT:?}; run the cmdlet again",
                    server.fqdn
                )));
            }
            backoff.wait(&clock).await;
        }
    }

    /// Waits until every server that answers is up to date under this pool's master.
    async fn replicate(&self, master: &Master) -> Result<String, Error> {
        let clock = self.node.clock;
        let deadline = clock.deadline(REPLICATE_WAIT);
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(250));
        loop {
            master.replicate_now(None).await;
            let current = master
                .backend()
                .current_version()
                .await?
                .map_or(0, |v| v.version);
            let statuses = master.backend().replica_statuses().await?;
            let topology = master.topology().await?;
            let mut behind = Vec::new();
            for t in cms::master::targets(&topology) {
                let ok = statuses
                    .iter()
                    .any(|s| s.fqdn.eq_ignore_ascii_case(&t.fqdn) && s.version >= current);
                let base = api::base(t.address, t.port);
                if !ok
                    && self
                        .node
                        .api
                        .health(&base, Duration::from_millis(500))
                        .await
                        .is_ok()
                {
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
                return Ok(format!(
                    "{up} of {total} servers up to date at version {current}{rest}"
                ));
            }
            if clock.passed(deadline) {
                return Err(Error::unavailable(format!(
                    "not up to date after {REPLICATE_WAIT:?}: {}; Get-CsManagementStoreReplicationStatus shows them",
                    behind.join(", ")
                )));
            }
            backoff.wait(&clock).await;
        }
    }

    /// `-Restore`: brings the store of this server's pool back to a consistent state.
    async fn restore(self: &Arc<Self>, s: &Situation, be: &BackEnd) -> Result<Said, Error> {
        let here = self.node.pool.clone();
        let mut done = Vec::new();
        let pending = latest(be)
            .await?
            .filter(|r| r.record.progress.state.is_unfinished());
        match s.local.mode {
            CmsMode::Moving => {
                // Frozen for a move to `target`: what the target's store is decides. Taking
                // changes again without knowing could make two writable stores.
                let target = s.local.other_pool.clone();
                let answer = self
                    .on_pool_store(&s.topology, &target, &StoreAction::State)
                    .await;
                match answer {
                    Ok(t) if t.mode == "Active" => {
                        let lost = be.demote_cms(&target, &t.history, t.epoch).await?;
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
                                .is_some_and(|f| f == "Running" || f == "Stopped") =>
                    {
                        be.set_cms_active_again(
                            "restored (Invoke-CsManagementServerFailover -Restore)",
                        )
                        .await?
                        .map_err(|e| Error::conflict(e.to_string()))?;
                        done.push(format!(
                            "the move to {target} was cancelled: the store in {here} takes changes again"
                        ));
                    }
                    Ok(t) => {
                        return Err(Error::conflict(format!(
                            "the failover to {target} is unfinished there (its store is {}, the failover {}); run \
                             Invoke-CsManagementServerFailover -Restore on a Front End of {target} first: it cancels the \
                             failover before the promotion or finishes it after",
                            t.mode,
                            t.failover.unwrap_or_default()
                        )));
                    }
                    Err(e) => {
                        return Err(Error::unavailable(format!(
                            "the store in {here} is frozen for a move to {target}, and {target} does not answer ({e}), so whether it \
                             took over is unknown: the store stays read-only. Run -Restore again once {target} answers, or, if \
                             {target} is lost, fail over to the standby"
                        )));
                    }
                }
            }
            CmsMode::Active => {
                if let Some(stored) = pending {
                    // This pool was the target and was promoted: finish the move.
                    let id = stored.record.id;
                    let (record, result) = self.run_cms_failover(stored, false, None).await?;
                    result?;
                    done.push(format!(
                        "the failover {id} had promoted the store in {here}: its remaining steps ran\n{}",
                        record.log()
                    ));
                }
                let (master, _) = self
                    .node
                    .install_master()
                    .expect("a Front End has a Back End");
                master.set_master_running(true).await;
            }
            CmsMode::Backup => {
                if let Some(mut stored) = pending {
                    // This pool was the target and was never promoted: cancel it first (the
                    // old store decides from this record), then let the old store take
                    // changes again.
                    let key = stored.record.key();
                    let runner = stored.record.progress.runner.clone();
                    if stored.record.progress.state == OpState::Running
                        && !runner.eq_ignore_ascii_case(&self.node.fqdn)
                        && self.runner_alive(&runner, &key).await
                    {
                        return Err(Error::conflict(format!(
                            "the Central Management store failover {} is running on {runner}; wait for it to stop before cancelling it",
                            stored.record.id
                        )));
                    }
                    stored.record.progress.state = OpState::Cancelled;
                    stored.record.progress.finished_ms = Some(self.node.clock.now_ms());
                    save(be, &mut stored).await?;
                    let from = stored.record.from_pool.clone();
                    let unfrozen = self.unfreeze(&s.topology, &from).await;
                    done.push(format!(
                        "the failover {} from {from} was cancelled before the standby in {here} was promoted; {unfrozen}",
                        stored.record.id
                    ));
                }
            }
        }
        if let Some(b) = &self.node.backup {
            b.wake();
        }
        if done.is_empty() {
            done.push(format!(
                "nothing to restore: the store in {here} is {} and no failover is unfinished",
                s.local.mode.as_str()
            ));
        }
        Ok(Said {
            text: done.join("\n"),
            warnings: vec![],
        })
    }

    // -----------------------------------------------------------------------------------
    // The unpaired path
    // -----------------------------------------------------------------------------------

    /// `Move-CsManagementServer`: loads the store here (from the old store when it answers,
    /// else from the export files), makes this Front End the master and publishes the move.
    pub async fn move_management_server(&self, request: MoveRequest) -> Result<Said, Error> {
        let s = self.situation().await?;
        let here = self.node.pool.clone();
        if let Some(target) = &request.target
            && !target.eq_ignore_ascii_case(&here)
        {
            return Err(Error::conflict(format!(
                "Move-CsManagementServer moves the store to the pool of the computer it runs on ({here}); run it on a Front End of {target}"
            )));
        }
        if s.cms_pool.eq_ignore_ascii_case(&here) && s.local.mode == CmsMode::Active {
            return Err(Error::conflict(format!(
                "the Central Management store is already hosted by {here}"
            )));
        }
        let be = self.backend()?.clone();
        let Some(_one) = self.claim("cms/move") else {
            return Err(Error::conflict(format!(
                "a Central Management store failover or move is already running on {}; wait for it, then check Get-CsManagementStoreReplicationStatus -CentralManagementStoreStatus",
                self.node.fqdn
            )));
        };
        let fe = s
            .topology
            .front_end_pool(&here)
            .expect("this server's pool is in its topology");
        let old_answers = s.master.is_some();
        let mut notes = Vec::new();
        // A move that loaded the store here and stopped before it was published is
        // finished; anything else needs the empty store Install-CsDatabase made.
        let resuming = s.local.mode == CmsMode::Active;
        if !resuming {
            if s.local.mode != CmsMode::Backup || s.standby_version > 0 {
                return Err(Error::conflict(format!(
                    "the Central Management database in {} is not empty (its store is {} at version {}): first run \
                     Install-CsDatabase -CentralManagementDatabase -Clean -SqlServerFqdn {} -SqlInstanceName {}",
                    fe.back_end.server_fqdn,
                    s.local.mode.as_str(),
                    s.standby_version,
                    fe.back_end.server_fqdn,
                    fe.back_end.instance
                )));
            }
            if !old_answers && !request.force {
                return Err(Error::conflict(format!(
                    "the Central Management store in {} is unreachable: a move without it needs -Force and \
                     -ConfigurationFileName <the file Export-CsConfiguration wrote>",
                    s.cms_pool
                )));
            }
            if !old_answers && request.from_file.is_none() {
                return Err(Error::conflict(
                    "-ConfigurationFileName is needed when the old store is unreachable: the file Export-CsConfiguration wrote",
                ));
            }
            let mut known_epoch = self.node.replica.state().await?.epoch;
            // With the old store up, it stops taking changes and its own content moves: an
            // export file would miss what changed after it was written.
            let (mut items, shared_through, line) = if old_answers {
                let frozen = self
                    .on_pool_store(
                        &s.topology,
                        &s.cms_pool,
                        &StoreAction::Freeze {
                            to_pool: here.clone(),
                        },
                    )
                    .await
                    .map_err(Error::unavailable)?;
                known_epoch = known_epoch.max(frozen.epoch);
                let snapshot = self
                    .on_pool_store(&s.topology, &s.cms_pool, &StoreAction::Snapshot)
                    .await
                    .map_err(Error::unavailable)?;
                if request.from_file.is_some() {
                    notes.push(format!(
                        "The store in {} answered: its own content (version {}) was moved, not the export file.",
                        s.cms_pool, snapshot.version
                    ));
                }
                (snapshot.items, snapshot.version, snapshot.history)
            } else {
                // The export's version is one of the line this server's replica followed.
                let (items, version) = request.from_file.clone().expect("checked above");
                (items, version, self.node.replica.store().history().await?)
            };
            if let Some(lis) = request.lis {
                items.retain(|i| !i.key.starts_with(keys::LIS_PREFIX));
                items.extend(lis);
            }
            let changes: Vec<(String, Option<String>)> = items
                .into_iter()
                .filter(|i| i.value.is_some())
                .map(|i| (i.key, i.value))
                .collect();
            let votes = self
                .claim_votes(
                    &s.topology,
                    &s.cms_pool,
                    &here,
                    store::term_of(known_epoch) + 1,
                    false,
                    request.force,
                )
                .await?;
            be.load_cms_and_activate(
                &changes,
                &format!("moved from {}", s.cms_pool),
                &line,
                shared_through,
                known_epoch,
                &s.cms_pool,
                &self.node.fqdn,
                cms::LEASE_TTL_MS,
            )
            .await?
            .map_err(|e| Error::conflict(e.to_string()))?;
            if let Some(votes) = votes {
                votes.mark(&be, self.node.clock.now_ms()).await?;
                notes.push(format!("Votes: {}.", votes.said));
            }
        }
        let (master, _) = self.ensure_master_here(&be).await?;
        let detail = publish_cms_pool(&master, &here).await?;
        notes.insert(
            0,
            format!(
                "The Central Management store is now hosted by {here} ({}); {detail}.",
                back_end_name(&s.topology, &here)
            ),
        );
        if old_answers {
            let action = self.demotion(&be, &here).await?;
            let demoted = self.on_pool_store(&s.topology, &s.cms_pool, &action).await;
            notes.push(match demoted {
                Ok(_) => format!("The store in {} is now inactive.", s.cms_pool),
                Err(e) => format!(
                    "The store in {} did not answer ({e}); it stays read-only and steps down when it hears of the new store.",
                    s.cms_pool
                ),
            });
        }
        let mut setup: Vec<String> = fe
            .servers
            .iter()
            .filter(|x| !x.fqdn.eq_ignore_ascii_case(&self.node.fqdn))
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
        Ok(Said {
            text: notes.join("\n"),
            warnings: vec![],
        })
    }
}

/// Writes the topology with `pool` as the CMS pool (published and active).
async fn publish_cms_pool(master: &Master, pool: &str) -> Result<String, Error> {
    let _guard = master.lock().await;
    let mut topology = master.topology().await?;
    if topology.deployment.cms_pool.eq_ignore_ascii_case(pool) {
        return Ok(format!("the topology already names {pool}"));
    }
    let old = std::mem::replace(&mut topology.deployment.cms_pool, pool.to_string());
    let written = master
        .write_topology(
            &topology,
            &format!("Central Management store moved from {old} to {pool}"),
            true,
        )
        .await?;
    Ok(format!(
        "version {} names {pool} as the CMS pool",
        written.version
    ))
}

/// A record as stored, with the token its next compare-and-set save expects.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) record: CmsFailover,
    token: i64,
}

/// Saves the record if nobody else wrote it since this runner last did.
async fn save(be: &BackEnd, stored: &mut Stored) -> Result<(), Error> {
    let text = stored.record.to_json();
    let id = Some(stored.record.id).filter(|i| *i > 0);
    match be.save_cms_failover_record(id, &text, stored.token).await? {
        Some((id, token)) => {
            stored.record.id = id;
            stored.token = token;
            Ok(())
        }
        None => Err(Error::conflict(format!(
            "the Central Management store failover {} was taken over by another run; \
             Invoke-CsManagementServerFailover -WhatIf shows where it stands",
            stored.record.id
        ))),
    }
}

/// The newest CMS failover record this Back End keeps.
pub(crate) async fn latest(be: &BackEnd) -> Result<Option<Stored>, Error> {
    let Some((id, text, token)) = be.cms_failover_record().await? else {
        return Ok(None);
    };
    let mut record = CmsFailover::from_json(&text).ok_or_else(|| {
        Error::internal(format!(
            "the Central Management store failover record {id} does not parse"
        ))
    })?;
    record.id = id;
    Ok(Some(Stored { record, token }))
}

/// A CMS failover being run.
struct CmsRun<'e> {
    engine: &'e Arc<Engine>,
    situation: Situation,
    be: BackEnd,
    stored: Stored,
    force: bool,
}

impl Durable for CmsRun<'_> {
    type Step = CmsStep;

    fn operation(&self) -> &'static str {
        "cms_failover"
    }

    fn id(&self) -> String {
        self.stored.record.id.to_string()
    }

    fn progress(&self) -> &dr::Progress<CmsStep> {
        &self.stored.record.progress
    }

    fn progress_mut(&mut self) -> &mut dr::Progress<CmsStep> {
        &mut self.stored.record.progress
    }

    async fn save(&mut self) -> Result<(), Error> {
        save(&self.be, &mut self.stored).await
    }

    async fn run_step(&mut self, step: CmsStep) -> Result<StepDone, StepFailed> {
        self.step(step).await
    }
}

impl CmsRun<'_> {
    async fn step(&mut self, step: CmsStep) -> Result<StepDone, StepFailed> {
        let engine = self.engine;
        let s = &self.situation;
        let be = &self.be;
        let record = &mut self.stored.record;
        let from = record.from_pool.clone();
        let to = record.to_pool.clone();
        let planned = record.mode == FailMode::Planned;
        let clock = engine.node.clock;
        match step {
            CmsStep::Freeze if !planned => Ok(StepDone::skipped(format!("{from} is unreachable"))),
            CmsStep::Freeze => {
                let reply = engine
                    .on_pool_store(
                        &s.topology,
                        &from,
                        &StoreAction::Freeze {
                            to_pool: to.clone(),
                        },
                    )
                    .await
                    .map_err(|e| {
                        Error::unavailable(format!(
                            "cannot make the store in {from} read-only: {e}; run the cmdlet again, or -Restore to cancel"
                        ))
                    })?;
                record.frozen_version = reply.version;
                record.known_epoch = record.known_epoch.max(reply.epoch);
                Ok(StepDone::done(format!(
                    "{from} read-only at version {}",
                    reply.version
                )))
            }
            CmsStep::Drain if !planned => {
                // Take the newest configuration any surviving server applied.
                let line = be.history().await?;
                let standby = be.current_version().await?.map_or(0, |v| v.version);
                let newest = engine.newest_survivor(&line, standby).await;
                if let Some(n) = newest.as_ref().filter(|n| n.version > standby) {
                    engine.catch_up_standby(be, n).await?;
                }
                record.potential_loss = dr::cms::potential_loss(
                    engine.heard_cms(&from),
                    &from,
                    newest.map(|n| n.survivor(standby)).as_ref(),
                );
                Ok(StepDone::done(record.potential_loss.clone()))
            }
            CmsStep::Drain => {
                // What the standby holds counts only if it is a copy of the old store's
                // line: a copy of another (a store that came back, never rebuilt) is
                // rebuilt by the Backup Service, and the drain waits for that.
                let old_line = engine
                    .on_pool_store(&s.topology, &from, &StoreAction::State)
                    .await
                    .map_err(|e| {
                        Error::unavailable(format!(
                            "the store in {from} stopped answering while the standby drained ({e}); run the cmdlet \
                             again: it fails over in disaster mode from what the standby and the surviving servers hold"
                        ))
                    })?
                    .history;
                let deadline = clock.deadline(DRAIN_WAIT);
                let mut backoff = Backoff::polling();
                loop {
                    let held = be.current_version().await?.map_or(0, |v| v.version);
                    let on_line = store::history::standing(&be.history().await?, held, &old_line)
                        == Standing::OnLine;
                    let have = if on_line { held } else { 0 };
                    let judged = dr::cms::drain(
                        have,
                        record.frozen_version,
                        clock.passed(deadline),
                        self.force,
                    );
                    if judged == dr::cms::Drain::Done {
                        return Ok(StepDone::done(format!("the standby holds version {have}")));
                    }
                    if judged == dr::cms::Drain::GiveUp {
                        record.potential_loss = format!(
                            "-Force: versions {}..{} of {from} had not reached the standby after {DRAIN_WAIT:?} and are lost",
                            have + 1,
                            record.frozen_version
                        );
                        return Ok(StepDone::done(record.potential_loss.clone()));
                    }
                    if judged == dr::cms::Drain::Cancel {
                        let unfrozen = engine.unfreeze(&s.topology, &from).await;
                        return Err(StepFailed {
                            error: Error::unavailable(format!(
                                "the standby in {to} holds version {have} of {} after {DRAIN_WAIT:?}, so the failover was cancelled; {unfrozen}. \
                                 Check Get-CsBackupServiceStatus -PoolFqdn {from} -Category CMS, then run the cmdlet again \
                                 (or add -Force to give the missing versions up)",
                                record.frozen_version
                            )),
                            cancels: true,
                        });
                    }
                    backoff.wait(&clock).await;
                }
            }
            CmsStep::Promote => {
                let votes = engine
                    .claim_votes(
                        &s.topology,
                        &from,
                        &to,
                        store::term_of(record.known_epoch) + 1,
                        true,
                        self.force,
                    )
                    .await
                    .map_err(|error| StepFailed {
                        error,
                        cancels: false,
                    })?;
                let role = be
                    .promote_cms(
                        record.known_epoch,
                        &from,
                        &engine.node.fqdn,
                        cms::LEASE_TTL_MS,
                    )
                    .await?
                    .map_err(|e| {
                        Error::conflict(format!(
                            "{e}; Invoke-CsManagementServerFailover -Restore on a Front End of {to} clears the failover"
                        ))
                    })?;
                if let Some(votes) = &votes {
                    votes.mark(be, clock.now_ms()).await?;
                }
                Ok(StepDone::done(format!(
                    "active from version {} in term {}{}",
                    role.term_start,
                    store::term_of(role.epoch_floor),
                    votes.map(|v| format!("; {}", v.said)).unwrap_or_default()
                )))
            }
            CmsStep::Takeover => {
                let fresh = engine.node.master().is_none();
                let (_, epoch) = engine.ensure_master_here(be).await?;
                Ok(StepDone::done(format!(
                    "{} is the active master (epoch {epoch}){}",
                    engine.node.fqdn,
                    if fresh {
                        "; Central Management services installed"
                    } else {
                        ""
                    }
                )))
            }
            CmsStep::Publish => {
                let (master, _) = engine.ensure_master_here(be).await?;
                Ok(StepDone::done(publish_cms_pool(&master, &to).await?))
            }
            CmsStep::Demote if !planned => Ok(StepDone::skipped(format!(
                "{from} is unreachable; its master steps down when it comes back"
            ))),
            CmsStep::Demote => {
                let action = engine.demotion(be, &to).await?;
                match engine.on_pool_store(&s.topology, &from, &action).await {
                    Ok(r) => Ok(StepDone::done(format!(
                        "{from} is a standby ({} versions lost{})",
                        r.lost_versions,
                        if r.dropped_records.is_empty() {
                            String::new()
                        } else {
                            format!(", with {}", r.dropped_records.join(", "))
                        }
                    ))),
                    // Its writes stay refused (Moving), and its master steps down by itself
                    // when it hears of the new term.
                    Err(e) => Ok(StepDone::skipped(format!(
                        "{from} did not answer ({e}); it is fenced"
                    ))),
                }
            }
            CmsStep::Replicate => {
                let (master, _) = engine.ensure_master_here(be).await?;
                Ok(StepDone::done(engine.replicate(&master).await?))
            }
        }
    }
}

fn write_report(file: &str, record: &CmsFailover) -> Result<(), Error> {
    let mut html =
        String::from("<html><head><title>Central Management store failover</title></head><body>\n");
    html.push_str(&format!(
        "<h1>Central Management store failover {}</h1>\n<p>From {} to {}, {} mode: <b>{}</b></p>\n<table border=\"1\"><tr><th>Step</th><th>State</th><th>Started</th><th>Took (ms)</th><th>Detail</th></tr>\n",
        record.id,
        escape(&record.from_pool),
        escape(&record.to_pool),
        record.mode.as_str(),
        record.progress.state.as_str()
    ));
    for s in &record.progress.steps {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            dr::StepName::as_str(s.step),
            s.state.as_str(),
            s.started_ms.map_or(String::new(), store::format_timestamp),
            s.duration_ms().map_or(String::new(), |d| d.to_string()),
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
    if let Some(e) = &record.progress.error {
        html.push_str(&format!("<p>Error: {}</p>\n", escape(e)));
    }
    html.push_str("</body></html>\n");
    std::fs::write(file, html)
        .map_err(|e| Error::invalid(format!("cannot write the report {file}: {e}")))
}

/// Text safe in the report's HTML.
fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}
