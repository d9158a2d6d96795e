//! Pool failover and failback as durable operations.
//!
//! An operation runs on the server the shell is connected to, in a task of its own (so a
//! shell that goes away does not stop it). Its record — the plan of `dr::operation` with
//! each step's state — lives in the Central Management store and is saved by the runner
//! around every step, together with the pool's failover state when the step changes it.
//! What a step does to a pool's data it asks one of that pool's Front Ends to do
//! ([`crate::agent`]), as the Backup Service does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use backup::Module;
use clock::Backoff;
use cms::replica::VIEW_PROOF_TTL;
use dr::operation::{Finding, Kind, Loss, Operation, Options, Step, judge};
use dr::progress::{OpState, StepState};
use dr::rules::{check_failback, check_failover};
use dr::state::{OPERATION_PREFIX, operation_key, pool_key};
use dr::{FailMode, Phase, PoolState, Refusal};
use node::{MasterAt, Node};
use serde::{Deserialize, Serialize};
use store::format_timestamp;

use crate::agent::{PoolAction, PoolActionReply};
use crate::runner::{Durable, StepDone, StepFailed};
use crate::{Engine, Error};

/// How long the Apply step waits for servers to apply the switch.
const APPLY_WAIT: Duration = Duration::from_secs(15);
/// How long a running operation waits for the CMS master to answer again before it stops:
/// longer than a master lease, so that the master moving to the other Front End of its
/// pool does not stop an operation.
const CMS_PATIENCE: Duration = Duration::from_secs(12);
/// How long a call of the engine to the CMS master may take.
const CMS_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a `/health` probe of a pool's server may take.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a call to a lost source's Front End may take in disaster mode.
const LOST_SOURCE_TIMEOUT: Duration = Duration::from_secs(2);
/// Added to [`VIEW_PROOF_TTL`] when a disaster failover waits out a silent pool's views.
const VIEW_DOUBT_MARGIN: Duration = Duration::from_millis(500);

/// A pool none of whose Front Ends answered, from when.
#[derive(Debug, Clone, Copy)]
struct Silence {
    /// Some Front End timed out rather than refusing the connection.
    stalled: bool,
    since: tokio::time::Instant,
}

/// The engine's reads and compare-and-set writes of the CMS, run on the master.
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

/// The pool states and operations in the CMS.
#[derive(Debug, Default)]
pub struct DrView {
    pub states: BTreeMap<String, PoolState>,
    pub ops: Vec<Operation>,
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

    /// A pool's state (Normal when the CMS has none).
    pub fn state(&self, pool: &str, backup: &str) -> PoolState {
        self.states
            .get(&pool.to_ascii_lowercase())
            .cloned()
            .unwrap_or_else(|| PoolState::normal(pool, backup))
    }

    /// The operation `id` names, or why there is none.
    pub fn find(&self, id: &str) -> Result<&Operation, Error> {
        let n: u64 = id.trim().parse().map_err(|_| {
            Error::invalid(format!(
                "'{id}' is not an operation id; Get-CsDisasterRecoveryOperation lists them"
            ))
        })?;
        self.ops.iter().find(|o| o.id == n).ok_or_else(|| {
            Error::not_found(format!(
                "there is no operation {n}; Get-CsDisasterRecoveryOperation lists them"
            ))
        })
    }

    fn recorded(&self, id: u64) -> Option<String> {
        self.raw.get(&operation_key(id)).cloned()
    }
}

/// The key a runner lists a pool operation under in its `/health`.
pub fn pool_op_key(id: u64) -> String {
    format!("pool/{id}")
}

/// What a pool operation's cmdlet asked for.
#[derive(Debug, Clone)]
pub struct PoolRequest {
    pub kind: Kind,
    /// `-PoolFqdn` as given.
    pub pool: String,
    pub options: Options,
    pub what_if: bool,
    pub verbose: bool,
}

impl Engine {
    // -----------------------------------------------------------------------------------
    // The CMS side
    // -----------------------------------------------------------------------------------

    /// Runs a [`CmsRequest`] on the master (this server).
    pub async fn dr_cms(&self, request: CmsRequest) -> Result<CmsReply, Error> {
        let Some(master) = self.node.master().filter(|_| self.node.is_active_master()) else {
            return Err(Error::unavailable(format!(
                "{} is not the active Central Management master",
                self.node.fqdn
            )));
        };
        match request {
            CmsRequest::Read => {
                let backend = master.backend();
                let items = backend.items_with_prefix("dr/").await?;
                let version = backend.current_version().await?.map_or(0, |v| v.version);
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
                    let current = master.backend().get(key).await?;
                    if current != *value {
                        return Err(Error::conflict(format!(
                            "{key} changed while this operation was deciding; another failover or failback is running. \
                             Get-CsDisasterRecoveryOperation shows it"
                        )));
                    }
                }
                let info = master.write(&changes, &description).await?;
                Ok(CmsReply {
                    items: vec![],
                    version: info.version,
                })
            }
        }
    }

    async fn cms(&self, request: CmsRequest) -> Result<CmsReply, Error> {
        match self.node.locate_master().await {
            Err(unavailable) => Err(Refusal::CmsUnavailable {
                detail: format!("{unavailable}."),
            }
            .into()),
            Ok(MasterAt::Here(_)) => self.dr_cms(request).await,
            Ok(MasterAt::There(base)) => Ok(self
                .node
                .api
                .post(&base, api::paths::DR_CMS, &request, CMS_CALL_TIMEOUT)
                .await?),
        }
    }

    /// [`Engine::cms`], riding over a master that is away for less than [`CMS_PATIENCE`].
    async fn cms_patient(&self, request: CmsRequest) -> Result<CmsReply, Error> {
        let clock = self.node.clock;
        let deadline = clock.deadline(CMS_PATIENCE);
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        loop {
            match self.cms(request.clone()).await {
                Err(e) if e.is_unavailable() && !clock.passed(deadline) => {
                    tracing::info!(error = %e, "the CMS master does not answer; trying again");
                    backoff.wait(&clock).await;
                }
                other => return other,
            }
        }
    }

    /// The id of a new operation: above every id the CMS holds, and above every id this
    /// server has seen in its replica or in versions its Back End recorded as lost, so that
    /// an id dropped with a lost version is not given again.
    async fn next_operation_id(&self, view: &DrView) -> u64 {
        let id_of = |key: &str| -> Option<u64> { key.strip_prefix(OPERATION_PREFIX)?.parse().ok() };
        let mut high = view.ops.iter().map(|o| o.id).max().unwrap_or(0);
        if let Ok(items) = self
            .node
            .replica
            .store()
            .items_with_prefix(OPERATION_PREFIX)
            .await
        {
            high = high.max(
                items
                    .iter()
                    .filter_map(|i| id_of(&i.key))
                    .max()
                    .unwrap_or(0),
            );
        }
        if let Some(be) = &self.node.backend
            && let Ok(lost) = be.lost_cms_versions().await
        {
            let ids = lost
                .iter()
                .flat_map(|l| l.keys.iter())
                .filter_map(|k| id_of(k));
            high = high.max(ids.max().unwrap_or(0));
        }
        high + 1
    }

    /// The pool states and operations, from the CMS.
    pub async fn dr_view(&self) -> Result<DrView, Error> {
        Ok(DrView::from_items(self.cms(CmsRequest::Read).await?.items))
    }

    /// The pool states and operations from the CMS, or from this server's replica with a
    /// warning when the CMS is unavailable.
    pub async fn dr_view_for_reading(&self) -> Result<(DrView, Vec<String>), Error> {
        match self.dr_view().await {
            Ok(v) => Ok((v, vec![])),
            Err(e) if e.is_unavailable() => {
                let items = self.node.replica.store().items_with_prefix("dr/").await?;
                let view = DrView::from_items(
                    items
                        .into_iter()
                        .filter_map(|i| Some((i.key, i.value?)))
                        .collect(),
                );
                Ok((
                    view,
                    vec![format!("{e} Showing this server's local replica.")],
                ))
            }
            Err(e) => Err(e),
        }
    }

    // -----------------------------------------------------------------------------------
    // Pools' Front Ends
    // -----------------------------------------------------------------------------------

    /// Runs `action` on one Front End: here, or over the management API.
    async fn on_front_end(
        &self,
        fe: &topology::Server,
        action: &PoolAction,
        timeout: Duration,
    ) -> Result<PoolActionReply, String> {
        let result = if fe.fqdn.eq_ignore_ascii_case(&self.node.fqdn) {
            Box::pin(self.pool_action(action.clone()))
                .await
                .map_err(|e| e.to_string())
        } else {
            let base = Node::base_of(&self.node.topology(), fe);
            self.node
                .api
                .post::<_, PoolActionReply>(&base, api::paths::DR_POOL, action, timeout)
                .await
                .map_err(|e| e.to_string())
        };
        result.map_err(|e| format!("{}: {e}", fe.fqdn))
    }

    /// Asks a Front End of `pool` to run `action`, trying each in turn.
    async fn on_pool(
        &self,
        pool: &str,
        action: &PoolAction,
        timeout: Duration,
    ) -> Result<PoolActionReply, String> {
        let topology = self.node.topology();
        let mut last = format!("{pool} has no Front End");
        for fe in topology.front_end_servers(pool) {
            match self.on_front_end(fe, action, timeout).await {
                Ok(r) => return Ok(r),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// [`Self::on_pool`] for a pool taken in disaster mode: its Front Ends are asked at once
    /// whether they answer ([`LOST_SOURCE_TIMEOUT`]), and only those that do are given the
    /// action, so a pool frozen or cut off costs one short wait, not one per server.
    async fn on_lost_pool(
        &self,
        pool: &str,
        action: &PoolAction,
    ) -> Result<PoolActionReply, String> {
        let mut last = format!("{pool} has no Front End");
        let mut answering = Vec::new();
        for (fe, answer) in self.probe_front_ends(pool, LOST_SOURCE_TIMEOUT).await {
            match answer {
                Ok(()) => answering.push(fe),
                Err(e) => last = format!("{}: {e}", fe.fqdn),
            }
        }
        for fe in &answering {
            match self.on_front_end(fe, action, LOST_SOURCE_TIMEOUT).await {
                Ok(r) => return Ok(r),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Runs `action` on each Front End of `pool` (each its own server's part, as services
    /// are); what each said, or why it could not, in one line.
    async fn on_every_front_end(
        &self,
        pool: &str,
        action: &PoolAction,
        timeout: Duration,
    ) -> String {
        let topology = self.node.topology();
        let mut lines = vec![];
        for fe in topology.front_end_servers(pool) {
            lines.push(match self.on_front_end(fe, action, timeout).await {
                Ok(r) => r.detail,
                Err(e) => e,
            });
        }
        lines.join("; ")
    }

    /// A Front End's `/health`, or why it did not answer.
    async fn health_of(&self, fe: &topology::Server) -> Result<api::Health, String> {
        let base = Node::base_of(&self.node.topology(), fe);
        self.node
            .api
            .health(&base, HEALTH_TIMEOUT)
            .await
            .map_err(|e| format!("{} does not answer ({e})", fe.fqdn))
    }

    /// Whether any Front End of `pool` answers, and if not why.
    async fn reachable(&self, pool: &str) -> Result<(), String> {
        let topology = self.node.topology();
        let mut last = format!("{pool} has no Front End");
        for fe in topology.front_end_servers(pool) {
            if fe.fqdn.eq_ignore_ascii_case(&self.node.fqdn) {
                return Ok(());
            }
            match self.health_of(fe).await {
                Ok(_) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Whether some Front End of `pool` answers (`None`), else whether any of them may only
    /// be paused, overloaded or cut off: its call timed out instead of finding nothing
    /// listening.
    async fn silence_of(&self, pool: &str) -> Option<Silence> {
        let mut stalled = false;
        for (_, answer) in self.probe_front_ends(pool, HEALTH_TIMEOUT).await {
            match answer {
                Ok(()) => return None,
                Err(e) => stalled |= !e.nothing_listens(),
            }
        }
        Some(Silence {
            stalled,
            since: tokio::time::Instant::now(),
        })
    }

    /// Asks every Front End of `pool` at once for its `/health` (this server answers for
    /// itself): each with whether it answered within `timeout`.
    async fn probe_front_ends(
        &self,
        pool: &str,
        timeout: Duration,
    ) -> Vec<(topology::Server, Result<(), api::CallError>)> {
        let topology = self.node.topology();
        let mut probes = tokio::task::JoinSet::new();
        for fe in topology.front_end_servers(pool) {
            let fe = fe.clone();
            let base = Node::base_of(&topology, &fe);
            let api = self.node.api.clone();
            let here = fe.fqdn.eq_ignore_ascii_case(&self.node.fqdn);
            probes.spawn(async move {
                let answer = if here {
                    Ok(())
                } else {
                    api.health(&base, timeout).await.map(|_| ())
                };
                (fe, answer)
            });
        }
        probes.join_all().await
    }

    /// A disaster failover of a pool some of whose Front Ends may be paused or cut off
    /// rather than down waits until each of them has gone [`VIEW_PROOF_TTL`] (and a
    /// margin) since it was found silent before the backup pool takes its users: by then
    /// its own view is in doubt, and if it comes back it serves nobody in full mode until
    /// the master has told it about this failover (see `cms::replica::ViewDoubt`). A pool
    /// whose servers are down needs no wait: a restarted server starts in doubt.
    async fn wait_out_stale_views(&self, pool: &str, silence: &Silence) {
        if !silence.stalled {
            return;
        }
        let until = silence.since + VIEW_PROOF_TTL + VIEW_DOUBT_MARGIN;
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        tracing::info!(
            %pool,
            wait_ms = left.as_millis() as u64,
            "a Front End of the failed pool timed out rather than being down: waiting until it would doubt its own view"
        );
        self.node.clock.sleep(left).await;
    }

    /// The user-data changes `pool` says it has not shipped to its partner, asked of it now
    /// over the backup link (when this server's pool is paired with it).
    async fn unshipped_by(&self, pool: &str) -> Option<i64> {
        let service = self.node.backup.as_ref()?;
        if !service
            .partner()
            .is_some_and(|p| p.eq_ignore_ascii_case(pool))
        {
            return None;
        }
        let status = service
            .ask::<backup::protocol::PoolStatus>(pool, backup::protocol::STATUS_PATH)
            .await
            .ok()?;
        Some(
            status
                .exports
                .iter()
                .filter(|e| e.applicable && e.module != Module::CmsMaster.short_name())
                .map(|e| e.pending)
                .sum(),
        )
    }

    // -----------------------------------------------------------------------------------
    // Starting, resuming, and -WhatIf
    // -----------------------------------------------------------------------------------

    /// `Invoke-CsPoolFailOver` / `Invoke-CsPoolFailBack`: starts an operation, or carries an
    /// unfinished one of the same kind and pool on with the new options. Returns the
    /// summary (or the `-WhatIf` plan).
    pub async fn start_pool_operation(
        self: &Arc<Self>,
        request: PoolRequest,
    ) -> Result<String, Error> {
        let PoolRequest {
            kind,
            pool: pool_arg,
            options,
            what_if,
            verbose,
        } = request;
        let topology = self.node.topology();
        let Some(fe) = topology.front_end_pool(&pool_arg) else {
            return Err(Refusal::NotAPool { pool: pool_arg }.into());
        };
        let pool = fe.fqdn.to_ascii_lowercase();
        let view = self.dr_view().await?;
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
                for s in &mut op.progress.steps {
                    if s.step == Step::Verify && s.state != StepState::Done {
                        s.state = StepState::Skipped;
                    }
                }
            }
            if what_if {
                return Ok(self.what_if(&op, &view).await);
            }
            let recorded = view.recorded(op.id);
            return self.run_to_end(op, recorded, verbose).await;
        }
        let (backup, reconcile, undoes) = match kind {
            Kind::FailOver => (
                check_failover(&topology, &pool, &view.states, &view.ops)?,
                false,
                None,
            ),
            Kind::FailBack => {
                let state = check_failback(&topology, &pool, &view.states, &view.ops)?;
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
            && let Err(detail) = self.reachable(&source).await
        {
            return Err(Refusal::Unreachable {
                kind,
                pool: source,
                home: pool.clone(),
                detail,
            }
            .into());
        }
        let mut silence = None;
        if options.disaster && !options.force {
            silence = self.silence_of(&source).await;
            if silence.is_none() {
                return Err(Refusal::DisasterButAnswers {
                    kind,
                    unshipped: self.unshipped_by(&source).await,
                    pool: source,
                    home: pool.clone(),
                }
                .into());
            }
        }
        if let Err(detail) = self.reachable(&target).await {
            return Err(Refusal::TargetUnreachable {
                pool: target,
                detail,
            }
            .into());
        }
        let id = self.next_operation_id(&view).await;
        let mut op = Operation::new(
            id,
            kind,
            &pool,
            &backup,
            options,
            reconcile,
            self.node.clock.now_ms(),
        );
        op.progress.runner = self.node.fqdn.clone();
        op.undoes = undoes;
        if what_if {
            return Ok(self.what_if(&op, &view).await);
        }
        if let Some(silence) = &silence {
            self.wait_out_stale_views(&source, silence).await;
        }
        let key = operation_key(id);
        let recorded = op.to_json();
        self.cms(CmsRequest::Write {
            expect: vec![(key.clone(), None)],
            changes: vec![(key, Some(recorded.clone()))],
            description: format!("{} of {pool}: operation {id} starts", kind.as_str()),
        })
        .await?;
        self.run_to_end(op, Some(recorded), verbose).await
    }

    /// `Resume-CsDisasterRecoveryOperation`.
    pub async fn resume_pool_operation(
        self: &Arc<Self>,
        id: &str,
        what_if: bool,
        verbose: bool,
    ) -> Result<String, Error> {
        let view = self.dr_view().await?;
        let op = view.find(id)?.clone();
        if op.is_finished() {
            return Ok(format!(
                "Operation {} ({} of {}) {} at {}; there is nothing to resume.\n",
                op.id,
                op.kind.as_str(),
                op.pool,
                op.progress.state.as_str().to_lowercase(),
                op.progress
                    .finished_ms
                    .map_or(String::new(), format_timestamp)
            ));
        }
        if what_if {
            return Ok(self.what_if(&op, &view).await);
        }
        let recorded = view.recorded(op.id);
        self.run_to_end(op, recorded, verbose).await
    }

    /// `Stop-CsDisasterRecoveryOperation`: cancels an operation not past its point of no
    /// return (see `Operation::cancel_plan`). The fence on the source is lifted first, then
    /// the pool's state and the operation's record are written back in one CMS version:
    /// if the fence cannot be lifted, nothing changes and the refusal says why.
    pub async fn cancel_pool_operation(self: &Arc<Self>, id: &str) -> Result<String, Error> {
        let view = self.dr_view().await?;
        let mut op = view.find(id)?.clone();
        let plan = op.cancel_plan().map_err(Error::conflict)?;
        // No runner may be at work on it while it is undone.
        let _claim = self.claim_pool_op(&op).await?;
        let source = op.source().to_string();
        let mut undone = Vec::new();
        if plan.lift_fence {
            let action = PoolAction::Unfence {
                home: op.pool.clone(),
            };
            let reply = self
                .on_pool(&source, &action, Duration::from_secs(10))
                .await
                .map_err(|e| {
                    Error::unavailable(format!(
                        "{source} did not lift its fence ({e}); nothing was changed. Stop-CsDisasterRecoveryOperation -Identity {} \
                         works once {source} answers, or Resume-CsDisasterRecoveryOperation -Identity {} goes on (with -DisasterMode if {source} is lost)",
                        op.id, op.id
                    ))
                })?;
            undone.push(reply.detail);
        }
        let now = self.node.clock.now_ms();
        let current = view.state(&op.pool, &op.backup_pool);
        let mut expect = Vec::new();
        let mut changes = Vec::new();
        if current.operation == Some(op.id) && current.phase != plan.back_to {
            let mode = match plan.back_to {
                Phase::FailedOver => op
                    .undoes
                    .and_then(|u| view.ops.iter().find(|o| o.id == u))
                    .map_or(FailMode::Planned, Operation::mode),
                _ => FailMode::Planned,
            };
            let back = current.with_phase(plan.back_to, mode, now, op.id);
            undone.push(format!(
                "{} is {} again (it was {}), served by {}",
                op.pool,
                plan.back_to.as_str(),
                current.phase.as_str(),
                back.serving_pool()
            ));
            let key = pool_key(&op.pool);
            expect.push((key.clone(), view.raw.get(&key).cloned()));
            changes.push((key, Some(back.to_json())));
        }
        op.progress.state = OpState::Cancelled;
        op.progress.finished_ms = Some(now);
        op.progress.error = None;
        op.progress.runner = self.node.fqdn.clone();
        op.undone = undone.clone();
        let key = operation_key(op.id);
        expect.push((key.clone(), view.recorded(op.id)));
        changes.push((key, Some(op.to_json())));
        self.cms(CmsRequest::Write {
            expect,
            changes,
            description: format!(
                "{} of {}: operation {} cancelled",
                op.kind.as_str(),
                op.pool,
                op.id
            ),
        })
        .await?;
        Ok(format!(
            "Operation {} ({} of {}) cancelled: {}.\n",
            op.id,
            op.kind.as_str(),
            op.pool,
            if undone.is_empty() {
                "nothing had been done yet".to_string()
            } else {
                undone.join("; ")
            }
        ))
    }

    async fn what_if(&self, op: &Operation, view: &DrView) -> String {
        let users = self
            .node
            .users_homed_on(&op.pool)
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
        for (i, s) in op.progress.steps.iter().enumerate() {
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
            (_, false) => format!(
                "Data at risk: none. Writes are refused once step 1 is done; every change made before is shipped and verified ({}).",
                self.backlog_text(op.source()).await
            ),
            (Kind::FailOver, true) => format!(
                "Data at risk: changes committed on {} that its Backup Service had not shipped to {} when it was lost ({}).",
                op.source(),
                op.target(),
                self.last_heard_text(op.source(), op.target())
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

    /// What a lost pool's Backup Service last reported unshipped, as this server heard it
    /// (a Front End of the backup pool asks its partner every half second).
    fn last_heard_text(&self, source: &str, target: &str) -> String {
        let heard = self
            .node
            .backup
            .as_ref()
            .and_then(|b| b.partner_heard(Some(source)));
        match heard {
            Some(h) => format!(
                "when {source} last answered, {}, it had {} changes of {} users not yet shipped; anything it committed later is lost too",
                format_timestamp(h.at_ms),
                h.changes,
                h.users.len()
            ),
            None if self.node.pool.eq_ignore_ascii_case(target) => {
                format!(
                    "{source} has not answered {target}'s Backup Service since this server started"
                )
            }
            None => format!(
                "run the command with -WhatIf on a Front End of {target} to see what {source} last reported"
            ),
        }
    }

    /// A pool's Backup Service backlog in words, when it answers.
    async fn backlog_text(&self, pool: &str) -> String {
        let Some(service) = &self.node.backup else {
            return format!("{pool}'s backlog is unknown here: this server runs no Backup Service");
        };
        match service
            .ask::<backup::protocol::PoolStatus>(pool, backup::protocol::STATUS_PATH)
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

    // -----------------------------------------------------------------------------------
    // Running
    // -----------------------------------------------------------------------------------

    /// Refuses to run an operation that runs here, or on the server recorded as its
    /// runner (a resume is for an operation nobody runs any more); otherwise lists it as
    /// running here.
    async fn claim_pool_op(&self, op: &Operation) -> Result<crate::Running, Error> {
        let key = pool_op_key(op.id);
        let busy = |runner: &str| {
            Error::conflict(format!(
                "operation {} ({} of {}) is running on {runner} now, at step {}; \
                 `Get-CsDisasterRecoveryOperation -Identity {}` shows its progress",
                op.id,
                op.kind.as_str(),
                op.pool,
                op.current_step().map_or("-", Step::as_str),
                op.id
            ))
        };
        let runner = &op.progress.runner;
        if op.progress.state == OpState::Running
            && !runner.eq_ignore_ascii_case(&self.node.fqdn)
            && self.runner_alive(runner, &key).await
        {
            return Err(busy(runner));
        }
        self.claim(&key).ok_or_else(|| busy(&self.node.fqdn))
    }

    /// Runs the operation in its own task (so that the caller going away does not stop
    /// it) and waits for the end. `recorded` is the operation's record as last read from
    /// the CMS.
    pub(crate) async fn run_to_end(
        self: &Arc<Self>,
        op: Operation,
        recorded: Option<String>,
        verbose: bool,
    ) -> Result<String, Error> {
        let clock = self.node.clock;
        let started = clock.now_ms();
        let from_step = op.next_step().unwrap_or(op.progress.steps.len());
        let running = self.claim_pool_op(&op).await?;
        let engine = self.clone();
        let (op, result) = self
            .node
            .spawn(async move {
                let _running = running;
                let mut run = PoolRun {
                    engine: &engine,
                    op,
                    recorded,
                    extra: Vec::new(),
                };
                let result = engine.run_here(&mut run).await;
                (run.op, result)
            })
            .await
            .map_err(Error::internal)?;
        let mut lines = String::new();
        if verbose {
            for s in op.progress.steps.iter().skip(from_step) {
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
        if let Err(e) = result {
            return Err(if lines.is_empty() {
                e
            } else {
                e.with_output(lines)
            });
        }
        let verb = match op.kind {
            Kind::FailOver => "failed over to",
            Kind::FailBack => "failed back from",
        };
        // A failback that reconciled a disaster failover says what that one lost: the
        // count its Reconcile step just made, not only its own "nothing".
        let reconciled = match op.undoes {
            Some(id)
                if op
                    .progress
                    .steps
                    .iter()
                    .any(|s| s.step == Step::Reconcile && s.state == StepState::Done) =>
            {
                self.dr_view()
                    .await
                    .ok()
                    .and_then(|v| v.ops.iter().find(|o| o.id == id).cloned())
                    .map(|f| {
                        format!(
                            " The disaster failover it undoes (operation {id}) lost {}.",
                            f.loss_text()
                        )
                    })
            }
            _ => None,
        };
        lines.push_str(&format!(
            "{} {verb} {} in {:.2} s (operation {}, {} mode): {} users. Data lost{}: {}.{}\n",
            op.pool,
            op.backup_pool,
            (clock.now_ms() - started) as f64 / 1000.0,
            op.id,
            op.mode().as_str().to_lowercase(),
            op.users,
            if reconciled.is_some() {
                " by this failback"
            } else {
                ""
            },
            op.loss_text(),
            reconciled.unwrap_or_default()
        ));
        Ok(lines)
    }

    /// Writes the record, with `extra` changes (a pool state) in the same version, if the
    /// CMS still holds `recorded`; then `recorded` is the new record.
    async fn save_op(
        &self,
        op: &Operation,
        recorded: &mut Option<String>,
        extra: Vec<(String, Option<String>)>,
    ) -> Result<i64, Error> {
        let key = operation_key(op.id);
        let json = op.to_json();
        let mut changes = vec![(key.clone(), Some(json.clone()))];
        changes.extend(extra);
        let reply = self
            .cms_patient(CmsRequest::Write {
                expect: vec![(key, recorded.clone())],
                changes,
                description: format!(
                    "{} of {}: operation {} at step {}",
                    op.kind.as_str(),
                    op.pool,
                    op.id,
                    op.current_step().map_or("", Step::as_str)
                ),
            })
            .await?;
        *recorded = Some(json);
        Ok(reply.version)
    }

    /// Waits until every server of `pools` that answers reports a replica at `version`.
    async fn wait_applied(&self, pools: &[&str], version: i64) -> (usize, Vec<String>) {
        let topology = self.node.topology();
        let clock = self.node.clock;
        let deadline = clock.deadline(APPLY_WAIT);
        let mut applied = 0;
        let mut missing = vec![];
        for fe in pools.iter().flat_map(|p| topology.front_end_servers(p)) {
            let mut backoff = Backoff::polling();
            loop {
                match self.health_of(fe).await.map(|h| h.replica_version) {
                    Ok(v) if v >= version => {
                        applied += 1;
                        break;
                    }
                    Err(_) => {
                        missing.push(fe.fqdn.clone());
                        break;
                    }
                    Ok(_) if clock.passed(deadline) => {
                        missing.push(format!("{} (replica behind)", fe.fqdn));
                        break;
                    }
                    Ok(_) => backoff.wait(&clock).await,
                }
            }
        }
        (applied, missing)
    }
}

/// What a disaster failover may lose, before the lost pool can be asked: the changes it
/// reported unshipped when it last answered (a lower bound), and everything it committed
/// after its backup copy was last updated.
fn loss_as_last_heard(
    r: &PoolActionReply,
    source: &str,
    home: &str,
    kind: Kind,
    now_ms: i64,
) -> Loss {
    if let Some(h) = r.heard.as_ref().filter(|h| h.synchronous) {
        // Every write it acknowledged was committed here first: what it held beyond the
        // copy was never acknowledged to its users.
        // Unless it fell back to asynchronous commit after that answer: then what it
        // acknowledged since is at most what it may have committed since.
        let more = h.may_have_committed_by(now_ms);
        return Loss {
            changes: 0,
            estimated: Some([0, more]),
            note: format!(
                "nothing acknowledged: {source} committed its users' writes synchronously with its partner when it last answered ({}); \
                 writes in flight then were never acknowledged to their users. Had it fallen back to asynchronous commit since, \
                 it could have acknowledged at most about {more} more — {}",
                format_timestamp(h.at_ms),
                match kind {
                    Kind::FailOver => format!(
                        "Invoke-CsPoolFailBack -PoolFqdn {home} counts them once {source} is back"
                    ),
                    Kind::FailBack => format!("their users continue on {home}"),
                }
            ),
            ..Loss::default()
        };
    }
    let mut loss = loss_known_when_heard(r, source, home, kind);
    // The range: what it certainly had not shipped, up to the most it may not have
    // shipped when it answered plus what it may have committed since, at its write rate.
    if let Some(h) = &r.heard {
        let more = h.may_have_committed_by(now_ms);
        let most = h.known_unshipped(&r.cut).at_most.max(loss.changes);
        loss.estimated = Some([loss.changes, most + more]);
        loss.note = format!(
            "{}. The range: {} to about {} changes ({more} of them an estimate of what it committed after its last answer: it was committing about {} changes a minute when last heard, {:.1} s before this operation)",
            loss.note,
            loss.changes,
            most + more,
            h.writes_per_min,
            (now_ms - h.at_ms).max(0) as f64 / 1000.0
        );
    }
    loss
}

fn loss_known_when_heard(r: &PoolActionReply, source: &str, home: &str, kind: Kind) -> Loss {
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
            estimated: None,
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

/// A pool operation being run: the record, what the CMS last held of it, and the CMS
/// changes to save with the next record (a pool state).
struct PoolRun<'e> {
    engine: &'e Engine,
    op: Operation,
    recorded: Option<String>,
    extra: Vec<(String, Option<String>)>,
}

impl Durable for PoolRun<'_> {
    type Step = Step;

    fn operation(&self) -> &'static str {
        match self.op.kind {
            Kind::FailOver => "pool_failover",
            Kind::FailBack => "pool_failback",
        }
    }

    fn id(&self) -> String {
        self.op.id.to_string()
    }

    fn progress(&self) -> &dr::Progress<Step> {
        &self.op.progress
    }

    fn progress_mut(&mut self) -> &mut dr::Progress<Step> {
        &mut self.op.progress
    }

    async fn save(&mut self) -> Result<(), Error> {
        let extra = std::mem::take(&mut self.extra);
        self.engine
            .save_op(&self.op, &mut self.recorded, extra)
            .await
            .map(|_| ())
    }

    async fn run_step(&mut self, step: Step) -> Result<StepDone, StepFailed> {
        self.step(step).await.map_err(StepFailed::from)
    }

    fn resume_hint(&self, step: Step) -> Option<String> {
        Some(format!(
            "Resume-CsDisasterRecoveryOperation -Identity {} carries it on from step {}.",
            self.op.id,
            step.as_str()
        ))
    }
}

fn step_failed(message: String) -> Error {
    Error::conflict(message)
}

impl PoolRun<'_> {
    async fn step(&mut self, step: Step) -> Result<StepDone, Error> {
        let engine = self.engine;
        let now = engine.node.clock.now_ms();
        let op = &mut self.op;
        let timeout =
            Duration::from_secs(u64::from(op.options.db_timeout_secs.unwrap_or(60)).max(5));
        let (source, target, home) = (
            op.source().to_string(),
            op.target().to_string(),
            op.pool.clone(),
        );
        let disaster = op.options.disaster;
        // A lost source gets one short try: one that is frozen or cut off rather than down
        // would otherwise hold every step for the whole -DatabaseTimeout of each server.
        let on_source = async |action: &PoolAction| {
            if disaster {
                engine.on_lost_pool(&source, action).await
            } else {
                engine.on_pool(&source, action, timeout).await
            }
        };
        match step {
            Step::Freeze => {
                let phase = match op.kind {
                    Kind::FailOver => Phase::FailingOver,
                    Kind::FailBack => Phase::FailingBack,
                };
                let view = engine.dr_view().await?;
                let current = view.state(&home, &op.backup_pool);
                if !(current.phase == phase && current.operation == Some(op.id)) {
                    let next = current.with_phase(phase, op.mode(), now, op.id);
                    let key = pool_key(&home);
                    // Compare-and-set: the state must still be what the checks saw.
                    engine
                        .cms(CmsRequest::Write {
                            expect: vec![(key.clone(), view.raw.get(&key).cloned())],
                            changes: vec![(key, Some(next.to_json()))],
                            description: format!(
                                "{} of {home}: {}",
                                op.kind.as_str(),
                                phase.as_str()
                            ),
                        })
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
                match on_source(&fence).await {
                    Ok(r) => Ok(StepDone::done(format!("{}: {}", phase.as_str(), r.detail))),
                    Err(e) if disaster => Ok(StepDone::done(format!(
                        "{}; {source} could not be fenced ({e}): its copy is left as it was lost",
                        phase.as_str()
                    ))),
                    Err(e) => Err(step_failed(format!(
                        "{source} could not be made read-only: {e}. No data has moved and {source} still serves the users. {}",
                        lost_source_hint(op)
                    ))),
                }
            }
            Step::Drain => {
                let wait_ms = op.options.wait_ms;
                let r = engine
                    .on_pool(
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
                match judge(r.left, op.options.force) {
                    Finding::Clean => Ok(StepDone::done(format!("{flushed}{}", r.detail))),
                    Finding::GoOnLosing => {
                        op.loss = Some(Loss {
                            changes: r.left,
                            exact: true,
                            note: format!("{} changes not shipped when -Force went on", r.left),
                            ..Loss::default()
                        });
                        Ok(StepDone::done(format!(
                            "{flushed}{}; went on anyway (-Force): they are lost",
                            r.detail
                        )))
                    }
                    Finding::Stop => Err(step_failed(match &r.stalled_by {
                        Some(cause) => format!(
                            "the Backup Service of {source} still has {} changes to ship to {target}, and they are not moving: {cause}. \
                             Then run {} -PoolFqdn {home} again (Get-CsBackupServiceStatus -PoolFqdn {source} shows the backlog), \
                             or with -Force to go on without those changes (they would be lost).",
                            r.left,
                            op.kind.cmdlet()
                        ),
                        None => format!(
                            "the Backup Service of {source} still has {} changes to ship to {target} after {} (-WaitTime). \
                             Get-CsBackupServiceStatus -PoolFqdn {source} shows the backlog. Run {} -PoolFqdn {home} again with a longer -WaitTime, \
                             or with -Force to go on without those changes (they would be lost).",
                            r.left,
                            cmdlet::value::format_timespan(Duration::from_millis(wait_ms)),
                            op.kind.cmdlet()
                        ),
                    })),
                }
            }
            Step::Verify => {
                let r = engine
                    .on_pool(&source, &PoolAction::Verify { home: home.clone() }, timeout)
                    .await
                    .map_err(|e| {
                        step_failed(format!(
                            "the data could not be verified: {e}. {}",
                            lost_source_hint(op)
                        ))
                    })?;
                match judge(r.left, op.options.force) {
                    Finding::Clean => Ok(StepDone::done(r.detail)),
                    // -Force went on without the changes Drain could not ship: the users
                    // whose copy differs are the ones who lose them.
                    Finding::GoOnLosing => {
                        let loss = op.loss.get_or_insert_with(Loss::default);
                        loss.users = r.affected.clone();
                        loss.note = format!("{}; {}", loss.note, r.detail);
                        Ok(StepDone::done(format!(
                            "{}; went on anyway (-Force): their unshipped changes are lost",
                            r.detail
                        )))
                    }
                    Finding::Stop => Err(step_failed(format!(
                        "{}. Debug-CsInterPoolReplication -PoolFqdn {source} lists them; Invoke-CsBackupServiceSync -PoolFqdn {source} resynchronises, \
                         then run {} -PoolFqdn {home} again (or add -SkipDataVerification)",
                        r.detail,
                        op.kind.cmdlet()
                    ))),
                }
            }
            Step::Reconcile => {
                let view = engine.dr_view().await?;
                let failover = op
                    .undoes
                    .and_then(|id| view.ops.iter().find(|o| o.id == id).cloned());
                let Some(mut failover) = failover else {
                    return Ok(StepDone::done("no disaster failover to account for"));
                };
                let r = engine
                    .on_pool(
                        &home,
                        &PoolAction::Lost {
                            cut: failover.cut.clone(),
                        },
                        timeout,
                    )
                    .await
                    .map_err(|e| {
                        step_failed(format!("{home} could not count its lost changes: {e}"))
                    })?;
                let estimated = failover.loss.as_ref().and_then(|l| l.estimated);
                failover.loss = r.loss.clone().map(|l| Loss { estimated, ..l });
                self.extra
                    .push((operation_key(failover.id), Some(failover.to_json())));
                Ok(StepDone::done(format!(
                    "operation {}: {}",
                    failover.id, r.detail
                )))
            }
            Step::Promote => {
                let mut r = engine
                    .on_pool(
                        &target,
                        &PoolAction::Promote {
                            source: source.clone(),
                            home: home.clone(),
                        },
                        timeout,
                    )
                    .await
                    .map_err(|e| {
                        step_failed(format!("{target} could not take the users' data: {e}"))
                    })?;
                op.users = r.users;
                if disaster && op.kind == Kind::FailOver {
                    op.cut = r.cut.clone();
                    op.last_heard_ms = r.last_heard_ms;
                    op.loss = Some(loss_as_last_heard(&r, &source, &home, op.kind, now));
                }
                if op.kind == Kind::FailBack {
                    // The home pool's Front Ends take their users back: a failover's
                    // -ServicesStopDelayMins may have stopped their RTCSRV.
                    let started = engine
                        .on_every_front_end(&target, &PoolAction::StartServices, timeout)
                        .await;
                    r.detail = format!("{}; {started}", r.detail);
                }
                if disaster && op.kind == Kind::FailBack {
                    // What the backup pool had not shipped home when it was last heard from.
                    op.last_heard_ms = r.last_heard_ms;
                    op.loss = Some(loss_as_last_heard(&r, &source, &home, op.kind, now));
                }
                Ok(StepDone::done(r.detail))
            }
            Step::Switch => {
                let view = engine.dr_view().await?;
                let current = view.state(&home, &op.backup_pool);
                let phase = match op.kind {
                    Kind::FailOver => Phase::FailedOver,
                    Kind::FailBack => Phase::Normal,
                };
                if current.phase == phase && current.operation == Some(op.id) {
                    return Ok(StepDone::done(format!("{target} already serves the users")));
                }
                let next = current.with_phase(phase, op.mode(), now, op.id);
                self.extra.push((pool_key(&home), Some(next.to_json())));
                Ok(StepDone::done(format!(
                    "{home}: {} (epoch {}); {target} serves the users",
                    phase.as_str(),
                    next.epoch
                )))
            }
            Step::Apply => {
                let wanted = engine.cms(CmsRequest::Read).await?.version;
                // A lost source's servers apply it when they are back: only the pool that
                // takes the users is waited for.
                let pools: &[&str] = if disaster {
                    &[&target]
                } else {
                    &[&source, &target]
                };
                let (applied, missing) = engine.wait_applied(pools, wanted).await;
                let mut detail = if missing.is_empty() && disaster {
                    format!(
                        "{applied} servers of {target} applied version {wanted}; those of {source} apply it when they are back"
                    )
                } else if missing.is_empty() {
                    format!("{applied} servers of {source} and {target} applied version {wanted}")
                } else {
                    format!(
                        "{applied} servers applied version {wanted}; not reached: {} (they apply it when they are back)",
                        missing.join(", ")
                    )
                };
                if op.kind == Kind::FailBack {
                    // The backup pool may be serving them in resiliency mode (its watch
                    // saw the home pool down): tell it at once that they are home.
                    let told = engine
                        .on_every_front_end(
                            &source,
                            &PoolAction::PartnerBack { home: home.clone() },
                            timeout,
                        )
                        .await;
                    detail = format!("{detail}; {told}");
                }
                Ok(StepDone::done(detail))
            }
            Step::SignOut => {
                let action = PoolAction::SignOut {
                    home: home.clone(),
                    to: target.clone(),
                };
                match on_source(&action).await {
                    Ok(r) => Ok(StepDone::done(r.detail)),
                    Err(e) if disaster => Ok(StepDone::done(format!(
                        "{source} unreachable ({e}); its registrations went with it"
                    ))),
                    Err(e) => Err(step_failed(format!(
                        "{source} could not sign the users out: {e}"
                    ))),
                }
            }
            Step::Retire => {
                let action = PoolAction::Retire { home: home.clone() };
                match on_source(&action).await {
                    Ok(r) => Ok(StepDone::done(r.detail)),
                    Err(e) if disaster => Ok(StepDone::done(format!(
                        "{source} unreachable ({e}); its stale copy is fenced and replaced at the next failover"
                    ))),
                    Err(e) => Err(step_failed(format!(
                        "{source} could not drop the users' data: {e}"
                    ))),
                }
            }
            Step::StopServices => {
                let delay = op.options.services_stop_delay_mins.unwrap_or(0);
                let action = PoolAction::StopServices { delay_mins: delay };
                Ok(StepDone::done(
                    engine.on_every_front_end(&source, &action, timeout).await,
                ))
            }
        }
    }
}

/// The ids of the pool operations whose runner may have died, for the reconciler.
pub(crate) fn running_ops(view: &DrView) -> impl Iterator<Item = &Operation> {
    view.ops
        .iter()
        .filter(|o| o.progress.state == OpState::Running)
}
