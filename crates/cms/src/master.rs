//! The Master Replicator and the File Transfer Agent.
//!
//! Every Front End of the CMS pool runs one [`Master`]. Its lease task tries to take or
//! renew the master lease in the pool's Back End every quarter of [`LEASE_TTL_MS`]; the
//! holder is the active master, the others are standby and take over when the lease
//! expires (the holder crashed) or is released (graceful stop, `MASTER` service stopped).
//!
//! The active master's push task (the File Transfer Agent's job here) sends every server
//! of the active topology the items written since the version that server last
//! acknowledged: right after each write, and once a second as a heartbeat otherwise. A
//! server it has not heard from yet gets an empty batch at the current version first; the
//! replica answers with where it stands and the next batch starts there. Each replica's
//! answer is recorded in the Back End for `Get-CsManagementStoreReplicationStatus`.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clock::Clock;
use store::{BackEnd, Item, ReplicaStatusRow, StoreError, VersionInfo, WriteRefused};
use tokio::sync::{Mutex, Notify, watch};
use tokio::task::JoinSet;
use topology::{Role as ServerRole, Topology};

use crate::protocol::{SyncRequest, SyncResponse};
use crate::{LEASE_TTL_MS, keys};

/// How often the active master pushes when nothing changed.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long one push may take before the replica counts as unreachable this round, plus
/// [`PUSH_TIMEOUT_PER_ITEM`] for each item it carries (a replica applying a large catch-up
/// on a busy machine is slow, not gone).
const PUSH_TIMEOUT: Duration = Duration::from_secs(2);
const PUSH_TIMEOUT_PER_ITEM: Duration = Duration::from_millis(2);
/// [`PUSH_TIMEOUT`] for a replica that did not answer its last push (a heartbeat to a
/// server that runs again is answered in a few milliseconds).
const SUSPECT_PUSH_TIMEOUT: Duration = Duration::from_millis(300);
/// A replica's status row is rewritten at least this often while it answers.
const STATUS_REFRESH_MS: i64 = 5_000;
/// How long a master that has just taken the lease waits for each server's answer to its
/// heartbeat (the check that no store of a later term is active) before it takes writes.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1_000);

/// This server's part in the master role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not the master; `holder` is the master this server saw in the lease, if any.
    Standby { holder: Option<String> },
    /// The active master since `since` (unix ms), with this epoch.
    Active { epoch: i64, since: i64 },
}

/// Why the master could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error(transparent)]
    Refused(#[from] WriteRefused),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The deployment has a witness, and this master has neither the witness's vote nor
    /// the standby store's (see [`crate::witness`]).
    #[error("{0}")]
    NoQuorum(String),
    #[error("the active topology in the Central Management store does not parse: {0}")]
    BadTopology(String),
    /// A change would leave a topology with errors; nothing was written.
    #[error("the change would leave an invalid topology: {}; nothing was published ({})", first_error(.0), .0.summary())]
    InvalidTopology(topology::Report),
}

/// A refused topology's first error, named in the refusal itself.
fn first_error(report: &topology::Report) -> String {
    report
        .errors()
        .next()
        .map_or_else(String::new, |p| format!("{}: {}", p.element, p.message))
}

/// A topology written to the store: its version, and the warnings validation found.
#[derive(Debug, Clone)]
pub struct TopologyWritten {
    pub version: i64,
    pub warnings: Vec<String>,
}

/// Whether the active master may write, as its votes say (see [`crate::witness`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quorum {
    /// Writes are allowed before this (this server's clock, unix ms): `i64::MAX` when the
    /// deployment has no witness, 0 when this server is not the active master.
    pub until_ms: i64,
    /// What the voters said at the last renewal.
    pub heard: String,
}

/// How long a write waits for the votes of a master that has just become active, or has
/// just lost them: longer than a witness that has just started withholds its vote.
const QUORUM_WAIT: Duration = Duration::from_millis(crate::witness::VOTE_TTL_MS as u64 + 1_000);

/// One server of the topology, as the master pushes to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub fqdn: String,
    pub address: Ipv4Addr,
    pub port: u16,
    pub product_version: String,
    /// The server authenticates users (a Front End): it gets the users' digest hashes.
    /// Others get user records without them (`directory::without_secrets`).
    pub holds_secrets: bool,
}

/// Every server of `topology`, with the management address the master pushes to.
pub fn targets(topology: &Topology) -> Vec<Target> {
    topology
        .servers()
        .map(|s| {
            let pool = match s.role {
                ServerRole::FrontEnd => topology.front_end_pool(s.pool_fqdn),
                ServerRole::Edge => topology
                    .edge_pool(s.pool_fqdn)
                    .and_then(|e| topology.front_end_pool(&e.next_hop)),
            };
            Target {
                fqdn: s.server.fqdn.clone(),
                address: s.server.address,
                port: topology.ports.management,
                product_version: pool
                    .map_or(topology::ProductVersion::SkypeForBusinessServer2019, |p| {
                        p.product_version
                    })
                    .build()
                    .to_string(),
                holds_secrets: s.role == ServerRole::FrontEnd,
            }
        })
        .collect()
}

/// What the master knows of one replica between rounds.
#[derive(Debug, Clone, Copy)]
struct Acked {
    version: i64,
    recorded_at: i64,
    recorded_version: i64,
}

#[derive(Debug)]
struct Inner {
    fqdn: String,
    backend: BackEnd,
    api: api::Client,
    clock: Clock,
    /// The `MASTER` service: off means give the lease up and stay standby.
    master_running: AtomicBool,
    /// The `FTA` service: off means no pushes.
    fta_running: AtomicBool,
    role: watch::Sender<Role>,
    wake: Notify,
    /// Wakes the lease task before its period ends (a failover just gave this server the
    /// lease).
    lease_wake: Notify,
    /// The votes this master holds, and what wakes their renewal early.
    quorum: watch::Sender<Quorum>,
    vote_wake: Notify,
    /// Push rounds completed, and started: a round is numbered by the count it started.
    rounds: watch::Sender<u64>,
    rounds_started: std::sync::atomic::AtomicU64,
    acked: Mutex<HashMap<String, Acked>>,
    /// Replicas whose last push timed out or found nobody: the next ones get
    /// [`SUSPECT_PUSH_TIMEOUT`], so that one frozen or cut-off server does not hold every
    /// round, and every other replica's next version, for [`PUSH_TIMEOUT`].
    suspects: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Serialises read-modify-write changes made through this master.
    write_lock: Mutex<()>,
    shutdown: watch::Sender<bool>,
}

/// A handle on this server's master role; cheap to clone.
#[derive(Debug, Clone)]
pub struct Master {
    inner: Arc<Inner>,
    /// The lease and push tasks, awaited by [`Master::shutdown`].
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Master {
    /// Starts the lease and push tasks.
    pub fn spawn(fqdn: String, backend: BackEnd, api: api::Client, clock: Clock) -> Master {
        let inner = Arc::new(Inner {
            fqdn,
            backend,
            api,
            clock,
            master_running: AtomicBool::new(true),
            fta_running: AtomicBool::new(true),
            role: watch::Sender::new(Role::Standby { holder: None }),
            wake: Notify::new(),
            lease_wake: Notify::new(),
            quorum: watch::Sender::new(Quorum {
                until_ms: 0,
                heard: String::new(),
            }),
            vote_wake: Notify::new(),
            rounds: watch::Sender::new(0),
            rounds_started: std::sync::atomic::AtomicU64::new(0),
            acked: Mutex::new(HashMap::new()),
            suspects: Default::default(),
            write_lock: Mutex::new(()),
            shutdown: watch::Sender::new(false),
        });
        let tasks = vec![
            tokio::spawn(lease_task(inner.clone())),
            tokio::spawn(push_task(inner.clone())),
            tokio::spawn(vote_task(inner.clone())),
        ];
        Master {
            inner,
            tasks: Arc::new(std::sync::Mutex::new(tasks)),
        }
    }

    pub fn role(&self) -> Role {
        self.inner.role.borrow().clone()
    }

    pub fn subscribe_role(&self) -> watch::Receiver<Role> {
        self.inner.role.subscribe()
    }

    /// The votes this master holds.
    pub fn quorum(&self) -> Quorum {
        self.inner.quorum.borrow().clone()
    }

    pub fn backend(&self) -> &BackEnd {
        &self.inner.backend
    }

    pub fn fqdn(&self) -> &str {
        &self.inner.fqdn
    }

    pub fn master_running(&self) -> bool {
        self.inner.master_running.load(Ordering::SeqCst)
    }

    pub fn fta_running(&self) -> bool {
        self.inner.fta_running.load(Ordering::SeqCst)
    }

    /// Starts or stops the `MASTER` service. Stopping it gives the lease up at once.
    pub async fn set_master_running(&self, running: bool) {
        self.inner.master_running.store(running, Ordering::SeqCst);
        if !running {
            step_down(&self.inner).await;
        }
    }

    /// Renews or takes the lease now rather than at the lease task's next turn.
    pub fn claim_now(&self) {
        self.inner.lease_wake.notify_one();
    }

    /// Gives the lease up now (the store just became a standby): the lease task takes it
    /// again only where the store allows.
    pub async fn step_down(&self) {
        step_down(&self.inner).await;
    }

    /// Starts or stops the `FTA` service.
    pub fn set_fta_running(&self, running: bool) {
        self.inner.fta_running.store(running, Ordering::SeqCst);
        self.inner.wake.notify_one();
    }

    /// Takes the write lock for a read-modify-write change: hold the guard while reading
    /// the current value and calling [`Master::write`].
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.write_lock.lock().await
    }

    /// Writes `changes` as a new version (if this server is the active master) and pushes
    /// it to every replica at once.
    pub async fn write(
        &self,
        changes: &[(String, Option<String>)],
        description: &str,
    ) -> Result<VersionInfo, MasterError> {
        let mut renewed = false;
        loop {
            let epoch = match self.role() {
                Role::Active { epoch, .. } => epoch,
                Role::Standby { holder } => {
                    return Err(WriteRefused::NotMaster { holder, epoch: 0 }.into());
                }
            };
            self.await_quorum().await?;
            match self
                .inner
                .backend
                .write(&self.inner.fqdn, epoch, changes, description)
                .await?
            {
                Ok(info) => {
                    self.inner.wake.notify_one();
                    return Ok(info);
                }
                Err(WriteRefused::NotMaster {
                    holder: Some(holder),
                    ..
                }) if !renewed && holder == self.inner.fqdn => {
                    // This server's own lease lapsed and no other server took it (its
                    // lease task was held up past the TTL on a loaded machine): nothing
                    // was written. Take the lease again now — a new term, checked for a
                    // newer store like any other — and try once more under it.
                    renewed = true;
                    tracing::warn!(
                        epoch,
                        "the master lease lapsed before a write; taking it again"
                    );
                    if !self.reclaimed_after(epoch).await {
                        return Err(WriteRefused::NotMaster {
                            holder: Some(holder),
                            epoch,
                        }
                        .into());
                    }
                }
                Err(refused) => return Err(refused.into()),
            }
        }
    }

    /// Wakes the lease task and waits, up to one lease TTL, for this server to be the
    /// active master under a term other than `lapsed`; false if it is not by then.
    async fn reclaimed_after(&self, lapsed: i64) -> bool {
        let mut role = self.inner.role.subscribe();
        let deadline = self
            .inner
            .clock
            .deadline(Duration::from_millis(LEASE_TTL_MS as u64));
        self.inner.lease_wake.notify_one();
        loop {
            if let Role::Active { epoch, .. } = *role.borrow_and_update()
                && epoch != lapsed
            {
                return true;
            }
            if self.inner.clock.passed(deadline) {
                return false;
            }
            tokio::select! {
                changed = role.changed() => {
                    if changed.is_err() {
                        return false;
                    }
                }
                _ = self.inner.clock.sleep(self.inner.clock.remaining(deadline)) => {}
            }
        }
    }

    /// Waits up to [`QUORUM_WAIT`] for this master to hold a vote other than its own
    /// store's (at once without a witness).
    async fn await_quorum(&self) -> Result<(), MasterError> {
        let mut quorum = self.inner.quorum.subscribe();
        let deadline = self.inner.clock.deadline(QUORUM_WAIT);
        loop {
            let (until, heard) = {
                let q = quorum.borrow_and_update();
                (q.until_ms, q.heard.clone())
            };
            if until > self.inner.clock.now_ms() {
                return Ok(());
            }
            if self.inner.clock.passed(deadline) {
                return Err(MasterError::NoQuorum(format!(
                    "the Central Management master {} holds no vote but its own store's, so it may be cut off \
                     from the rest of the deployment and takes no change ({heard}); once it reaches the witness or \
                     the standby store again, run the cmdlet again (a failover on the other side, if this site is \
                     down: Invoke-CsManagementServerFailover)",
                    self.inner.fqdn,
                    heard = if heard.is_empty() {
                        "no vote asked yet"
                    } else {
                        heard.as_str()
                    },
                )));
            }
            self.inner.vote_wake.notify_one();
            tokio::select! {
                _ = quorum.changed() => {}
                _ = self.inner.clock.sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    /// Validates `topology` and writes it as the published topology, and as the active one
    /// too when `activate`. A topology with errors is never written.
    pub async fn write_topology(
        &self,
        topology: &Topology,
        description: &str,
        activate: bool,
    ) -> Result<TopologyWritten, MasterError> {
        let report = topology::validate(topology);
        if !report.is_valid() {
            return Err(MasterError::InvalidTopology(report));
        }
        let text = topology.to_toml();
        let mut changes = vec![(keys::TOPOLOGY_PUBLISHED.to_string(), Some(text.clone()))];
        if activate {
            changes.push((keys::TOPOLOGY_ACTIVE.to_string(), Some(text)));
        }
        let info = self.write(&changes, description).await?;
        Ok(TopologyWritten {
            version: info.version,
            warnings: report
                .problems
                .iter()
                .map(|p| format!("{}: {}", p.element, p.message))
                .collect(),
        })
    }

    /// The active topology, from the CMS.
    pub async fn topology(&self) -> Result<Topology, MasterError> {
        self.inner.topology_in_store().await
    }

    /// Pushes now (`Invoke-CsManagementStoreReplication`) and waits for the round to end.
    /// With `replica`, that replica is first asked where it stands, as if new.
    pub async fn replicate_now(&self, replica: Option<&str>) {
        if let Some(fqdn) = replica {
            self.inner
                .acked
                .lock()
                .await
                .remove(&fqdn.to_ascii_lowercase());
        }
        // The first round to start after this point: the next one, or the one after the
        // round in progress (which may have read what it pushes before now). It starts
        // at once, woken here, rather than at the next heartbeat.
        let mut rounds = self.inner.rounds.subscribe();
        let target = self.inner.rounds_started.load(Ordering::SeqCst) + 1;
        self.inner.wake.notify_one();
        let _ = tokio::time::timeout(PUSH_TIMEOUT * 3, rounds.wait_for(|r| *r >= target)).await;
    }

    /// Gives the lease up and stops both tasks (graceful shutdown), waiting for them.
    pub async fn shutdown(&self) {
        self.inner.master_running.store(false, Ordering::SeqCst);
        self.inner.shutdown.send_replace(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().expect("master tasks lock"));
        for task in tasks {
            let _ = task.await;
        }
        step_down(&self.inner).await;
    }
}

impl Inner {
    /// The active topology in this server's store.
    async fn topology_in_store(&self) -> Result<Topology, MasterError> {
        let text = self
            .backend
            .get(keys::TOPOLOGY_ACTIVE)
            .await?
            .ok_or_else(|| MasterError::BadTopology("there is none".into()))?;
        Topology::from_toml(&text).map_err(|e| MasterError::BadTopology(e.to_string()))
    }
}

/// Times this server became the active master (`change="acquired"`) or stopped being it
/// (`change="lost"`), for `/metrics`.
pub const LEASE_CHANGES: &str = "tandem_cms_lease_changes_total";

/// Sets the master's role, counting the changes an operator alerts on: becoming active
/// (or active under a new term) and ceasing to be.
fn set_role(role: &watch::Sender<Role>, new: Role) {
    let change = match (&*role.borrow(), &new) {
        (Role::Active { epoch: was, .. }, Role::Active { epoch, .. }) if was != epoch => {
            Some("acquired")
        }
        (Role::Standby { .. }, Role::Active { .. }) => Some("acquired"),
        (Role::Active { .. }, Role::Standby { .. }) => Some("lost"),
        _ => None,
    };
    role.send_replace(new);
    if let Some(change) = change {
        metrics::counter!(LEASE_CHANGES, "change" => change).increment(1);
    }
}

async fn step_down(inner: &Inner) {
    if matches!(*inner.role.borrow(), Role::Active { .. })
        && let Err(e) = inner
            .backend
            .release_lease(&inner.fqdn, inner.clock.now_ms())
            .await
    {
        tracing::warn!(error = %e, "could not release the master lease; it will expire");
    }
    set_role(&inner.role, Role::Standby { holder: None });
    inner.quorum.send_modify(|q| q.until_ms = 0);
}

/// Renews the active master's votes every quarter of their life (see [`crate::witness`]);
/// a master whose store is moving gives them back instead.
async fn vote_task(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.subscribe();
    let period = Duration::from_millis((crate::witness::VOTE_TTL_MS / 4) as u64);
    let mut roles = inner.role.subscribe();
    let mut cached: Option<VoterCache> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let epoch = match *roles.borrow_and_update() {
            Role::Active { epoch, .. } => Some(epoch),
            Role::Standby { .. } => None,
        };
        if let Some(epoch) = epoch
            && let Some(voters) = voters(&inner, &mut cached).await
        {
            renew_votes(&inner, epoch, &voters).await;
        }
        tokio::select! {
            _ = inner.clock.sleep(period) => {}
            _ = inner.vote_wake.notified() => {}
            _ = roles.changed() => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Who votes for this master's store, as the active topology says.
#[derive(Debug, Clone)]
struct StoreVoters {
    pool: String,
    port: u16,
    /// `None`: the deployment has no witness.
    voters: Option<crate::witness::Voters>,
}

/// [`StoreVoters`] and the version they were read at: the topology changes only with the
/// store's version, so it is read and parsed again only then (as a push round does), not
/// at every renewal.
#[derive(Debug)]
struct VoterCache {
    version: i64,
    created_at: i64,
    voters: StoreVoters,
}

async fn voters(inner: &Inner, cached: &mut Option<VoterCache>) -> Option<StoreVoters> {
    let current = inner.backend.current_version().await.ok()??;
    if let Some(c) = cached
        .as_ref()
        .filter(|c| (c.version, c.created_at) == (current.version, current.created_at))
    {
        return Some(c.voters.clone());
    }
    let topology = inner.topology_in_store().await.ok()?;
    let pool = topology.server(&inner.fqdn)?.pool_fqdn.to_string();
    let voters = StoreVoters {
        voters: crate::witness::Voters::of(&topology, &pool),
        pool,
        port: topology.ports.management,
    };
    *cached = Some(VoterCache {
        version: current.version,
        created_at: current.created_at,
        voters: voters.clone(),
    });
    Some(voters)
}

/// Counts a vote asked at `sent` (this server's clock): writes are covered until its life,
/// less the margin, from then. A later answer never shortens an earlier one (they may
/// return out of order), and a time without a witness ends.
fn cover(quorum: &mut Quorum, sent: i64) {
    let until = sent + crate::witness::VOTE_TTL_MS - crate::witness::VOTE_MARGIN_MS;
    quorum.until_ms = if quorum.until_ms == i64::MAX {
        until
    } else {
        quorum.until_ms.max(until)
    };
}

/// One renewal: the witness and the standby store asked together; one vote is enough.
async fn renew_votes(inner: &Arc<Inner>, epoch: i64, store: &StoreVoters) {
    use crate::witness::{self, Ask, Heard, VoteAnswer};
    let StoreVoters { pool, port, voters } = store;
    let Some(voters) = voters else {
        inner.quorum.send_replace(Quorum {
            until_ms: i64::MAX,
            heard: "the deployment has no witness".into(),
        });
        return;
    };
    let moving = matches!(
        inner.backend.cms_role().await.map(|r| r.mode),
        Ok(store::CmsMode::Moving)
    );
    let ask = if moving { Ask::Release } else { Ask::Renew };
    let term = store::term_of(epoch);
    let sent = inner.clock.now_ms();
    // The first vote granted counts at once, without waiting for the other voter (which
    // may be cut off and answer only by timing out).
    let counted = |heard: Heard| {
        if !moving && matches!(heard, Heard::Answer(VoteAnswer::Granted { .. })) {
            inner.quorum.send_modify(|q| cover(q, sent));
        }
        heard
    };
    let (from_witness, from_standby) = tokio::join!(
        async { counted(witness::ask_witness(&inner.api, *port, voters, ask, pool, term).await) },
        async { counted(witness::ask_standby(&inner.api, *port, voters, ask, pool, term).await) },
    );
    if moving {
        inner.quorum.send_replace(Quorum {
            until_ms: 0,
            heard: format!("the store is moving to {pool}: votes given back"),
        });
        return;
    }
    let said = |who: &str, heard: &Heard| match heard {
        Heard::Answer(VoteAnswer::Granted { .. }) => format!("{who}: granted"),
        Heard::Answer(VoteAnswer::Released) => format!("{who}: released"),
        Heard::Answer(VoteAnswer::Refused { reason }) => format!("{who} refused: {reason}"),
        Heard::Silent(why) => why.clone(),
    };
    let granted = [&from_witness, &from_standby]
        .iter()
        .any(|h| matches!(h, Heard::Answer(VoteAnswer::Granted { .. })));
    let mut heard = format!(
        "{}; {}",
        said(&format!("the witness {}", voters.witness.0), &from_witness),
        said("the standby store", &from_standby)
    );
    // A store an operator made active with -Force (its site the only one left) writes on
    // its lease alone until a voter answers again; from then on the votes decide.
    let answered = [&from_witness, &from_standby]
        .iter()
        .any(|h| matches!(h, Heard::Answer(_)));
    let mut forced = false;
    if let Ok(vote) = inner.backend.cms_vote().await
        && vote.forced_at > 0
    {
        if answered {
            let _ = inner.backend.update_cms_vote(|_, v| v.forced_at = 0).await;
            tracing::info!(%heard, "a voter answers again: the -Force override of the votes ends");
        } else {
            forced = true;
            heard = format!("-Force: no voter answers ({heard})");
        }
    }
    inner.quorum.send_modify(|q| {
        if forced {
            cover(q, sent);
        } else if !granted && q.until_ms == i64::MAX {
            q.until_ms = 0;
        }
        if !granted && !forced && q.heard != heard {
            tracing::warn!(%heard, "the Central Management master holds no vote but its own store's");
        }
        q.heard = heard;
    });
}

async fn lease_task(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.subscribe();
    let period = Duration::from_millis((LEASE_TTL_MS / 4) as u64);
    loop {
        if *shutdown.borrow() {
            return;
        }
        if inner.master_running.load(Ordering::SeqCst) {
            match inner
                .backend
                .acquire_lease(&inner.fqdn, LEASE_TTL_MS, inner.clock.now_ms())
                .await
            {
                Ok((true, lease)) => {
                    let was_active = matches!(
                        *inner.role.borrow(),
                        Role::Active { epoch, .. } if epoch == lease.epoch
                    );
                    if !was_active {
                        inner.acked.lock().await.clear();
                        // Before taking a single write, push once: a replica that follows
                        // a newer store (this one was failed over while it was away)
                        // says so, and this store steps down instead.
                        match probe(&inner, lease.epoch).await {
                            Ok(Some(newer)) => fence_self(&inner, newer).await,
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot check for a newer store; not taking writes yet");
                                set_role(&inner.role, Role::Standby { holder: None });
                            }
                            Ok(None) => {
                                tracing::info!(
                                    epoch = lease.epoch,
                                    "became the active Central Management master"
                                );
                                set_role(
                                    &inner.role,
                                    Role::Active {
                                        epoch: lease.epoch,
                                        since: lease.acquired_at,
                                    },
                                );
                                inner.wake.notify_one();
                            }
                        }
                    }
                }
                Ok((false, lease)) => {
                    if matches!(*inner.role.borrow(), Role::Active { .. }) {
                        tracing::warn!(holder = %lease.holder, "lost the master lease");
                    }
                    set_role(
                        &inner.role,
                        Role::Standby {
                            holder: Some(lease.holder).filter(|h| !h.is_empty()),
                        },
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach the Back End for the master lease");
                    set_role(&inner.role, Role::Standby { holder: None });
                }
            }
        }
        tokio::select! {
            _ = inner.clock.sleep(period) => {}
            _ = inner.lease_wake.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn push_task(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.subscribe();
    let mut cached: Option<RoundCache> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        inner.rounds_started.fetch_add(1, Ordering::SeqCst);
        let epoch = match *inner.role.borrow() {
            Role::Active { epoch, .. } => Some(epoch),
            Role::Standby { .. } => None,
        };
        if let Some(epoch) = epoch
            && inner.fta_running.load(Ordering::SeqCst)
        {
            match push_round(&inner, epoch, &mut cached).await {
                Ok(Some(newer)) => fence_self(&inner, newer).await,
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "replication round failed"),
            }
        }
        inner.rounds.send_modify(|r| *r += 1);
        tokio::select! {
            _ = inner.clock.sleep(HEARTBEAT) => {}
            _ = inner.wake.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// A replica's word that a store of a later term is active: its master and epoch.
#[derive(Debug, Clone)]
struct Newer {
    master: String,
    epoch: i64,
}

/// This store was failed over while its master was away or cut off: step down, ask the
/// new master where its term started, and turn this store into a standby of it (the
/// versions committed here after that are recorded as lost). If the new master cannot
/// be asked, only step down: the lease task will try again, and never takes a write first.
async fn fence_self(inner: &Arc<Inner>, newer: Newer) {
    tracing::warn!(
        master = %newer.master,
        epoch = newer.epoch,
        "a Central Management store of a later term is active; this one steps down"
    );
    step_down(inner).await;
    set_role(
        &inner.role,
        Role::Standby {
            holder: Some(newer.master.clone()),
        },
    );
    let report = async {
        let topology = inner.topology_in_store().await.ok()?;
        let server = topology.server(&newer.master)?;
        let pool = server.pool_fqdn.to_string();
        let base = api::base(server.server.address, topology.ports.management);
        let report = crate::protocol::fetch_role(&inner.api, &base, PUSH_TIMEOUT).await?;
        (report.active && store::term_of(report.epoch) > 0).then_some((pool, report))
    }
    .await;
    let Some((pool, report)) = report else {
        return;
    };
    match inner
        .backend
        .demote_cms(&pool, &report.history, report.epoch)
        .await
    {
        Ok(lost) if lost.is_empty() => {
            tracing::warn!(active_pool = %pool, "this Central Management store is now a standby");
        }
        Ok(lost) => {
            let versions: Vec<String> = lost
                .iter()
                .map(|l| format!("{} ({})", l.version, l.description))
                .collect();
            tracing::warn!(
                active_pool = %pool,
                lost = lost.len(),
                versions = %versions.join(", "),
                "this Central Management store is now a standby; the versions it committed after the failover never reached the new store and are lost"
            );
        }
        Err(e) => tracing::warn!(error = %e, "could not turn this store into a standby"),
    }
}

/// A heartbeat (no items) to every server, each with [`PROBE_TIMEOUT`]: the first answer
/// that a store of a later term is active is returned at once. A server that does not
/// answer cannot say so, and does not hold the master back.
async fn probe(inner: &Arc<Inner>, epoch: i64) -> Result<Option<Newer>, MasterError> {
    let Some(current) = inner.backend.current_version().await? else {
        return Ok(None);
    };
    let history = inner.backend.history().await?;
    let topology = inner.topology_in_store().await?;
    let mut set = JoinSet::new();
    for target in targets(&topology) {
        let request = SyncRequest {
            master_fqdn: inner.fqdn.clone(),
            epoch,
            from_version: current.version,
            to_version: current.version,
            to_version_created_at: current.created_at,
            items: Vec::new(),
            history: history.clone(),
            replace: false,
        };
        let client = inner.api.clone();
        set.spawn(async move {
            let base = api::base(target.address, target.port);
            let answer: SyncResponse = client
                .post(&base, api::paths::REPLICA_SYNC, &request, PROBE_TIMEOUT)
                .await
                .ok()?;
            match answer {
                SyncResponse::Fenced {
                    epoch: theirs,
                    master_fqdn,
                } if store::term_of(theirs) > store::term_of(epoch) => Some(Newer {
                    master: master_fqdn,
                    epoch: theirs,
                }),
                _ => None,
            }
        });
    }
    while let Some(joined) = set.join_next().await {
        if let Ok(Some(newer)) = joined {
            set.abort_all();
            return Ok(Some(newer));
        }
    }
    Ok(None)
}

/// What a push round reads from the store that changes only with its version.
#[derive(Debug, Clone)]
struct RoundCache {
    /// The lease epoch it was read under: a promotion starts a new term without a version.
    epoch: i64,
    version: i64,
    created_at: i64,
    targets: Arc<Vec<Target>>,
    history: Arc<store::History>,
}

/// One push to every server. Returns the newest store a replica says it follows, when
/// that store is of a later term than this one.
async fn push_round(
    inner: &Arc<Inner>,
    epoch: i64,
    cached: &mut Option<RoundCache>,
) -> Result<Option<Newer>, MasterError> {
    let Some(current) = inner.backend.current_version().await? else {
        return Ok(None);
    };
    // The topology and the terms can only have changed with the version or the epoch: read
    // them again only then, not at every heartbeat.
    let round = match cached {
        Some(c)
            if (c.epoch, c.version, c.created_at)
                == (epoch, current.version, current.created_at) =>
        {
            c.clone()
        }
        _ => {
            let text = inner
                .backend
                .get(keys::TOPOLOGY_ACTIVE)
                .await?
                .unwrap_or_default();
            let topology =
                Topology::from_toml(&text).map_err(|e| MasterError::BadTopology(e.to_string()))?;
            let c = RoundCache {
                epoch,
                version: current.version,
                created_at: current.created_at,
                targets: Arc::new(targets(&topology)),
                history: Arc::new(inner.backend.history().await?),
            };
            *cached = Some(c.clone());
            c
        }
    };
    let (targets, history) = (round.targets, round.history);
    // Replicas at the same version get the same batch: read it from the Back End once.
    let batches: Arc<Batches> = Arc::default();
    let mut set = JoinSet::new();
    for target in targets.iter().cloned() {
        let inner = inner.clone();
        let current = current.clone();
        let batches = batches.clone();
        let history = history.clone();
        set.spawn(async move {
            match push_one(&inner, &batches, epoch, &history, &current, &target).await {
                Err(PushError::Fenced {
                    master,
                    epoch: theirs,
                }) if store::term_of(theirs) > store::term_of(epoch) => Some(Newer {
                    master,
                    epoch: theirs,
                }),
                Err(e) => {
                    tracing::debug!(replica = %target.fqdn, error = %e, "push failed");
                    None
                }
                Ok(()) => None,
            }
        });
    }
    let mut newest: Option<Newer> = None;
    while let Some(joined) = set.join_next().await {
        if let Ok(Some(n)) = joined
            && newest.as_ref().is_none_or(|b| n.epoch > b.epoch)
        {
            newest = Some(n);
        }
    }
    Ok(newest)
}

#[derive(Debug, thiserror::Error)]
enum PushError {
    #[error(transparent)]
    Call(#[from] api::CallError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("replica follows a newer master {master} (epoch {epoch})")]
    Fenced { master: String, epoch: i64 },
    #[error("replica did not converge")]
    NoProgress,
}

/// The batches read during one round, by the version they start from: the items, the
/// version they lead to and when that version was created.
type Batches = Mutex<HashMap<i64, Arc<(Vec<Item>, i64, i64)>>>;

/// The key of [`Batches`] under which the whole configuration is kept: after a failover
/// every replica of the old term diverges at once and gets the same one.
const WHOLE: i64 = i64::MIN;

async fn push_one(
    inner: &Inner,
    batches: &Batches,
    epoch: i64,
    history: &store::History,
    current: &VersionInfo,
    target: &Target,
) -> Result<(), PushError> {
    let key = target.fqdn.to_ascii_lowercase();
    let known = inner.acked.lock().await.get(&key).copied();
    let mut from = known.map_or(current.version, |a| a.version);
    let mut replace = false;
    for _ in 0..64 {
        let batch_key = if replace { WHOLE } else { from };
        let cached = batches.lock().await.get(&batch_key).cloned();
        let batch = match cached {
            Some(b) => b,
            // The whole configuration, for a replica that diverged.
            None if replace => {
                let b = Arc::new((
                    inner.backend.items().await?,
                    current.version,
                    current.created_at,
                ));
                batches.lock().await.insert(WHOLE, b.clone());
                b
            }
            None => {
                let b = Arc::new(batch(&inner.backend, from, current).await?);
                batches.lock().await.insert(from, b.clone());
                b
            }
        };
        let (items, to, to_created) = &*batch;
        let request = SyncRequest {
            master_fqdn: inner.fqdn.clone(),
            epoch,
            from_version: from,
            to_version: (*to).max(from),
            to_version_created_at: *to_created,
            items: if target.holds_secrets {
                items.clone()
            } else {
                items
                    .iter()
                    .map(crate::directory::without_secrets)
                    .collect()
            },
            history: history.clone(),
            replace,
        };
        let base = api::base(target.address, target.port);
        let suspect = inner.suspects.lock().is_ok_and(|s| s.contains(&key));
        let first = if suspect {
            SUSPECT_PUSH_TIMEOUT
        } else {
            PUSH_TIMEOUT
        };
        let timeout = first + PUSH_TIMEOUT_PER_ITEM * request.items.len() as u32;
        let answer = inner
            .api
            .post::<_, SyncResponse>(&base, api::paths::REPLICA_SYNC, &request, timeout)
            .await;
        if let Ok(mut suspects) = inner.suspects.lock() {
            match &answer {
                Err(api::CallError::Unreachable { .. }) => suspects.insert(key.clone()),
                _ => suspects.remove(&key),
            };
        }
        let response = answer?;
        match response {
            SyncResponse::Applied { version } => {
                replace = false;
                record(inner, &key, target, version, known).await?;
                if version >= current.version {
                    return Ok(());
                }
                from = version;
            }
            SyncResponse::Gap { version } => from = version,
            SyncResponse::Diverged { version } => {
                tracing::info!(
                    replica = %target.fqdn,
                    version,
                    "the replica holds versions of a fenced store; sending it the whole configuration"
                );
                replace = true;
            }
            SyncResponse::Fenced { epoch, master_fqdn } => {
                return Err(PushError::Fenced {
                    master: master_fqdn,
                    epoch,
                });
            }
        }
    }
    Err(PushError::NoProgress)
}

/// The items after `from` for one push, read as one snapshot, and the version (with its
/// creation time) the replica reaches by applying them: always the newest. A store keeps a
/// value only with the version that last wrote it, so a push that stopped at an older
/// version would leave the replica claiming a version whose overwritten values it lacks (a
/// survivor a disaster failover could then copy back in time). A backlog is never larger
/// than the whole configuration, which a replica that diverged gets in one push anyway.
async fn batch(
    backend: &BackEnd,
    from: i64,
    current: &VersionInfo,
) -> Result<(Vec<Item>, i64, i64), StoreError> {
    if from >= current.version {
        return Ok((Vec::new(), current.version, current.created_at));
    }
    let shipment = backend.cms_shipment(from).await?;
    let (to, created_at) = shipment
        .last()
        .map_or((current.version, current.created_at), |(v, _)| {
            (v.version, v.created_at)
        });
    let items = shipment.into_iter().flat_map(|(_, items)| items).collect();
    Ok((items, to, created_at))
}

async fn record(
    inner: &Inner,
    key: &str,
    target: &Target,
    version: i64,
    known: Option<Acked>,
) -> Result<(), StoreError> {
    let now = inner.clock.now_ms();
    let stale = known
        .is_none_or(|a| a.recorded_version != version || now - a.recorded_at >= STATUS_REFRESH_MS);
    let mut acked = Acked {
        version,
        recorded_at: known.map_or(0, |a| a.recorded_at),
        recorded_version: known.map_or(-1, |a| a.recorded_version),
    };
    if stale {
        inner
            .backend
            .record_replica_status(&ReplicaStatusRow {
                fqdn: target.fqdn.clone(),
                version,
                last_status_report: now,
                product_version: target.product_version.clone(),
            })
            .await?;
        acked.recorded_at = now;
        acked.recorded_version = version;
    }
    inner.acked.lock().await.insert(key.to_string(), acked);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(k: &str, v: &str) -> (String, Option<String>) {
        (k.to_string(), Some(v.to_string()))
    }

    /// One Front End, at an address of TEST-NET-1 (RFC 5737) that nothing here answers:
    /// the master's pushes and its probe find nobody, as with every replica away.
    const ONE_SERVER: &str = r#"
[deployment]
sip_domain = "example.org"
dns_zone = "example.org"
cms_pool = "pool.example.org"

[[site]]
name = "Only"

[[front_end_pool]]
fqdn = "pool.example.org"
site = "Only"
product_version = "SkypeForBusinessServer2019"

[front_end_pool.back_end]
server_fqdn = "sql.example.org"
instance = "rtc"
database_url = "sqlite://backend/pool.db"

[[front_end_pool.server]]
fqdn = "fe1.example.org"
address = "192.0.2.1"
"#;

    /// Waits for `master` to be active under a term other than `not`; its epoch.
    async fn active(master: &Master, not: i64) -> i64 {
        let mut role = master.subscribe_role();
        loop {
            if let Role::Active { epoch, .. } = *role.borrow_and_update()
                && epoch != not
            {
                return epoch;
            }
            role.changed().await.unwrap();
        }
    }

    store::each_backend! {
        /// A master whose own lease lapsed with no other server taking it (its lease task
        /// held up past the TTL on a loaded machine) takes the lease again and makes the
        /// write, under a new term, rather than refusing the operator's change; the
        /// version is written once.
        async fn a_write_after_the_masters_own_lease_lapsed_unclaimed_is_made_under_a_new_term(db) {
            let be = db.open("pool1").await;
            let topology = (keys::TOPOLOGY_ACTIVE.to_string(), Some(ONE_SERVER.to_string()));
            be.bootstrap(&[topology], "install").await.unwrap();
            let roots = pki::Roots::new(&[]).unwrap();
            let api = api::Client::new("test", &pki::client_config(&roots, None));
            let master = Master::spawn("fe1.example.org".into(), be.clone(), api, Clock::system());
            let first = tokio::time::timeout(Duration::from_secs(10), active(&master, 0))
                .await
                .expect("the only Front End becomes the master");
            // The lease lapses while the role still says active.
            be.release_lease("fe1.example.org", store::now_ms()).await.unwrap();
            let before = be.current_version().await.unwrap().unwrap().version;
            let info = master.write(&[change("k", "1")], "edit").await.unwrap();
            assert!(info.epoch > first, "a new term: {} after {first}", info.epoch);
            assert_eq!(info.version, before + 1);
            assert_eq!(be.get("k").await.unwrap().as_deref(), Some("1"));
            // A lease another server holds is still refused, and not taken.
            master.set_master_running(false).await;
            be.acquire_lease("fe2.example.org", 60_000, store::now_ms()).await.unwrap();
            master.set_master_running(true).await;
            let refused = master.write(&[change("k", "2")], "edit").await.unwrap_err();
            assert!(
                matches!(refused, MasterError::Refused(WriteRefused::NotMaster { .. })),
                "{refused}"
            );
            assert_eq!(be.get("k").await.unwrap().as_deref(), Some("1"));
            master.shutdown().await;
        }
    }

    store::each_backend! {
        /// However many versions a replica lacks, one push takes it to the newest, with the
        /// newest value of a key written again later: a push stopped at an older version would
        /// leave it claiming that version without the value the key had then.
        async fn a_push_runs_to_the_newest_version_with_every_overwritten_value(db) {
            let be = db.open("pool1")
                .await;
            be.bootstrap(&[change("k", "0")], "install").await.unwrap();
            let (_, lease) = be
                .acquire_lease("fe1", 60_000, store::now_ms())
                .await
                .unwrap();
            for i in 1..=3_000 {
                let key = if i % 2 == 0 {
                    "k".to_string()
                } else {
                    format!("other{i}")
                };
                be.write("fe1", lease.epoch, &[change(&key, &i.to_string())], "edit")
                    .await
                    .unwrap()
                    .unwrap();
            }
            let current = be.current_version().await.unwrap().unwrap();
            let (items, to, created_at) = batch(&be, 1, &current).await.unwrap();
            assert_eq!((to, created_at), (current.version, current.created_at));
            assert_eq!(items.len(), 1 + 1_500);
            let k = items.iter().find(|i| i.key == "k").unwrap();
            assert_eq!(k.value.as_deref(), Some("3000"));
            let (none, at, _) = batch(&be, current.version, &current).await.unwrap();
            assert!(none.is_empty());
            assert_eq!(at, current.version);
        }
    }
}
