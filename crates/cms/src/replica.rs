//! The Replica Replicator Agent: every server's end of CMS replication.
//!
//! It stores what the master pushes in the server's local replica, then makes the new
//! configuration live by publishing it on a watch channel the server's services follow.
//! When its service (`REPLICA`) is stopped it refuses pushes, so the master sees it fall
//! behind (`UpToDate False`) exactly as an operator would expect.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use clock::Clock;

use store::{ApplyOutcome, Batch, Item, ReplicaState, ReplicaStore, StoreError};
use tokio::sync::watch;
use topology::Topology;

use crate::directory::{USER_PREFIX, UserRecord};
use crate::keys;
use crate::protocol::{ReplicaChanges, ReplicaChangesRequest, SyncRequest, SyncResponse};

/// Why the agent could not take a push.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error(
        "the REPLICA service is stopped on this server; start it with Start-CsWindowsService -Name REPLICA"
    )]
    Stopped,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the local replica at {0} holds no topology; seed it with `tandem lab up` or Import-CsConfiguration -LocalStore"
    )]
    NoTopology(String),
    #[error("the topology in the local replica does not parse: {0}")]
    BadTopology(String),
}

#[derive(Debug)]
pub struct ReplicaAgent {
    store: ReplicaStore,
    running: AtomicBool,
    topology: watch::Sender<Arc<Topology>>,
    version: watch::Sender<i64>,
    clock: Clock,
    /// When (clock ms) this server last asked the active master a question whose answer
    /// proved its view current (the master's store of the same term, whose last change of
    /// who serves whom this replica holds). Dated when the question left, not when the answer came: an
    /// answer delayed by a pause proves nothing about the time after it. `NEVER` until the
    /// first proof since the server started: until then the replica is what the server
    /// held when it stopped, which may predate a failover.
    proven_at: AtomicI64,
    /// When a check last found no active master to ask (the Central Management store is
    /// down, or out of reach): the last proven view stands, as the original keeps serving
    /// from its replica while the store is away — if the master went away while the view
    /// was still proven (see `master_away_since`).
    master_away_at: AtomicI64,
    /// When the first check since the last proof (or since a silence past the TTL) found
    /// no master. The view stands while
    /// the master is away only if that was within [`VIEW_PROOF_TTL`] of the proof: a
    /// server that was frozen (or cut off) past the TTL and then finds no master has an
    /// old view with nothing to say it is still true, and the pool may have been failed
    /// over meanwhile.
    master_away_since: AtomicI64,
    /// The user directory as this replica holds it, by normal SIP address: what the
    /// registrar authenticates against at every REGISTER, read from memory rather than
    /// from the replica's file. Kept in step with the file by [`ReplicaAgent::sync`] and
    /// [`ReplicaAgent::import`], which change both under `applying`. Its keys are the
    /// directory's, so it hashes them with `sip::hashed::TrustedKeys`'s faster hash.
    users: RwLock<Users>,
    /// Held while a push or an import changes the file and then the memory, so that two
    /// cannot leave the memory in an order the file is not in.
    applying: tokio::sync::Mutex<()>,
}

/// A view older than this since its last proof is in doubt: servers ask every second.
pub const VIEW_PROOF_TTL: Duration = Duration::from_secs(3);

const NEVER: i64 = i64::MIN;

/// Why a server's view of the configuration (and of who serves whom) is not known to be
/// current; a Front End serves nobody in full mode and takes no user's write while it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewDoubt {
    /// Nothing has proven it since the server started.
    SinceStart,
    /// Last proven this long ago (ms): the server was paused or cut off, or the master is
    /// ahead of it (a push not yet applied) or slow to answer.
    Stale { ms: i64 },
}

impl ReplicaAgent {
    /// Starts the agent on a seeded replica.
    pub async fn open(
        store: ReplicaStore,
        path: &str,
        clock: Clock,
    ) -> Result<ReplicaAgent, ReplicaError> {
        let text = store
            .get(keys::TOPOLOGY_ACTIVE)
            .await?
            .ok_or_else(|| ReplicaError::NoTopology(path.to_string()))?;
        let topology =
            Topology::from_toml(&text).map_err(|e| ReplicaError::BadTopology(e.to_string()))?;
        let state = store.state().await?;
        let users = RwLock::new(users_in(&store).await?);
        Ok(ReplicaAgent {
            users,
            applying: tokio::sync::Mutex::new(()),
            store,
            running: AtomicBool::new(true),
            topology: watch::Sender::new(Arc::new(topology)),
            version: watch::Sender::new(state.version),
            clock,
            proven_at: AtomicI64::new(NEVER),
            master_away_at: AtomicI64::new(NEVER),
            master_away_since: AtomicI64::new(NEVER),
        })
    }

    /// Whether this replica's view is in doubt now (see [`ViewDoubt`]); `None` when it
    /// was proven within [`VIEW_PROOF_TTL`], or when the last proof stands because the
    /// last check found no master to ask.
    pub fn view_doubt(&self) -> Option<ViewDoubt> {
        let now = self.clock.now_ms();
        let ttl = VIEW_PROOF_TTL.as_millis() as i64;
        let proven = self.proven_at.load(Ordering::SeqCst);
        if proven == NEVER {
            return Some(ViewDoubt::SinceStart);
        }
        if now - proven <= ttl {
            return None;
        }
        // The master went away while the view was proven, and is still found away.
        let since = self.master_away_since.load(Ordering::SeqCst);
        let away = self.master_away_at.load(Ordering::SeqCst);
        if since != NEVER && since >= proven && since - proven <= ttl && now - away <= ttl {
            return None;
        }
        Some(ViewDoubt::Stale { ms: now - proven })
    }

    /// Records what a check of the active master, asked at `asked_at` (clock ms), found:
    /// its epoch and the newest version of its store that changed who serves whom (`None`:
    /// no master answered). A master of this replica's term whose version this replica
    /// holds proves the view current as of `asked_at`; one ahead leaves it in doubt until
    /// its push has been applied and a check says so.
    pub async fn note_master_check(
        &self,
        asked_at: i64,
        master: Option<(i64, i64)>,
    ) -> Result<(), StoreError> {
        let state = self.store.state().await?;
        // The version the server serves from, not the file's: a push written to the file
        // but not yet made live (its version published, so the failover states cached
        // under the last one are read again) proves nothing about what is served.
        let live = self.version().min(state.version);
        self.note_check(asked_at, master, (state.epoch, live));
        Ok(())
    }

    /// [`ReplicaAgent::note_master_check`] with the replica's own epoch and version read.
    fn note_check(&self, asked_at: i64, master: Option<(i64, i64)>, (epoch, version): (i64, i64)) {
        match master {
            None => {
                // Only a view proven since the start can stand while the master is away.
                let proven = self.proven_at.load(Ordering::SeqCst);
                if proven != NEVER {
                    let since = self.master_away_since.load(Ordering::SeqCst);
                    let last = self.master_away_at.load(Ordering::SeqCst);
                    let ttl = VIEW_PROOF_TTL.as_millis() as i64;
                    if since == NEVER || since < proven || asked_at.saturating_sub(last) > ttl {
                        // The first check since the proof to find no master, or the first
                        // after a silence past the TTL (the server was frozen): when the
                        // master went away, as far as this server can tell.
                        self.master_away_since.store(asked_at, Ordering::SeqCst);
                    }
                    self.master_away_at.fetch_max(asked_at, Ordering::SeqCst);
                }
            }
            Some((master_epoch, serving_version)) => {
                if store::term_of(epoch) == store::term_of(master_epoch)
                    && version >= serving_version
                {
                    self.proven_at.fetch_max(asked_at, Ordering::SeqCst);
                } else {
                    // The master is back and ahead (this server comes back from a cut, or
                    // the store moved on while it was away): the last proven view no
                    // longer stands for want of a master to ask.
                    self.master_away_at.store(NEVER, Ordering::SeqCst);
                    self.master_away_since.store(NEVER, Ordering::SeqCst);
                }
            }
        }
    }

    pub fn store(&self) -> &ReplicaStore {
        &self.store
    }

    /// The live topology.
    pub fn topology(&self) -> Arc<Topology> {
        self.topology.borrow().clone()
    }

    pub fn subscribe_topology(&self) -> watch::Receiver<Arc<Topology>> {
        self.topology.subscribe()
    }

    pub fn version(&self) -> i64 {
        *self.version.borrow()
    }

    /// Wakes on every new version the replica reaches.
    pub fn subscribe_version(&self) -> watch::Receiver<i64> {
        self.version.subscribe()
    }

    pub async fn state(&self) -> Result<ReplicaState, StoreError> {
        self.store.state().await
    }

    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Starts or stops the `REPLICA` service.
    pub fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::SeqCst);
    }

    /// Takes a push from the master.
    pub async fn sync(&self, req: &SyncRequest) -> Result<SyncResponse, ReplicaError> {
        if !self.is_running() {
            return Err(ReplicaError::Stopped);
        }
        let batch = Batch {
            master_fqdn: &req.master_fqdn,
            epoch: req.epoch,
            from_version: req.from_version,
            to_version: req.to_version,
            to_version_created_at: req.to_version_created_at,
            items: &req.items,
            history: &req.history,
            replace: req.replace,
        };
        let _applying = self.applying.lock().await;
        let outcome = self.store.apply(&batch, store::now_ms()).await?;
        Ok(match outcome {
            ApplyOutcome::Applied { version } => {
                if req.replace {
                    self.reload_users().await?;
                } else {
                    self.note_users(&req.items);
                }
                self.make_live(&req.items, version).await;
                SyncResponse::Applied { version }
            }
            ApplyOutcome::Gap { version } => SyncResponse::Gap { version },
            ApplyOutcome::Diverged { version } => SyncResponse::Diverged { version },
            ApplyOutcome::Fenced { epoch, master_fqdn } => {
                SyncResponse::Fenced { epoch, master_fqdn }
            }
        })
    }

    /// Where the replica stands and, with `after`, everything it holds after that version,
    /// up to its own version as one snapshot (see `ReplicaStore::snapshot_after`). Served
    /// even while the `REPLICA` service is stopped: it reads, and a failover needs what it
    /// holds.
    pub async fn changes(
        &self,
        fqdn: &str,
        req: &ReplicaChangesRequest,
    ) -> Result<ReplicaChanges, ReplicaError> {
        let (state, history, items) = self.store.snapshot_after(req.after).await?;
        let through = state.version;
        Ok(ReplicaChanges {
            fqdn: fqdn.to_string(),
            version: state.version,
            epoch: state.epoch,
            created_at: state.last_update_creation,
            history,
            items,
            through,
        })
    }

    /// Replaces the whole replica (`Import-CsConfiguration -LocalStore`).
    pub async fn import(
        &self,
        version: i64,
        created_at: i64,
        items: &[Item],
    ) -> Result<(), ReplicaError> {
        let text = items
            .iter()
            .find(|i| i.key == keys::TOPOLOGY_ACTIVE)
            .and_then(|i| i.value.clone())
            .ok_or_else(|| ReplicaError::NoTopology("the imported configuration".into()))?;
        Topology::from_toml(&text).map_err(|e| ReplicaError::BadTopology(e.to_string()))?;
        let _applying = self.applying.lock().await;
        self.store.replace_all(version, created_at, items).await?;
        self.reload_users().await?;
        self.make_live(items, version).await;
        Ok(())
    }

    /// The user of `sip_address` (with or without `sip:`, any case) in this replica, from
    /// memory.
    pub fn user(&self, sip_address: &str) -> Option<Arc<UserRecord>> {
        let users = self.users.read().expect("the directory lock");
        // No copy for an address already normalised (the registrar's are).
        if crate::directory::is_normalized(sip_address) {
            return users.get(sip_address).cloned();
        }
        users
            .get(&crate::directory::normalize_sip(sip_address))
            .cloned()
    }

    /// Takes the user records among `items` (a push's changes) into memory.
    fn note_users(&self, items: &[Item]) {
        let mut users = self.users.write().expect("the directory lock");
        for item in items {
            let Some(sip) = item.key.strip_prefix(USER_PREFIX) else {
                continue;
            };
            match crate::directory::record_in(item) {
                Some(record) => users.insert(sip.to_string(), Arc::new(record)),
                None => users.remove(sip),
            };
        }
    }

    /// Reads the whole directory from the file again (after a push or an import that
    /// replaced the replica).
    async fn reload_users(&self) -> Result<(), StoreError> {
        let users = users_in(&self.store).await?;
        *self.users.write().expect("the directory lock") = users;
        Ok(())
    }

    /// Waits until the replica holds `version` or `timeout` passes; true if it does.
    pub async fn wait_for_version(&self, version: i64, timeout: Duration) -> bool {
        let mut rx = self.version.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|v| *v >= version))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    async fn make_live(&self, items: &[Item], version: i64) {
        if let Some(item) = items.iter().find(|i| i.key == keys::TOPOLOGY_ACTIVE) {
            match item.value.as_deref().map(Topology::from_toml) {
                Some(Ok(t)) => {
                    self.topology.send_replace(Arc::new(t));
                }
                Some(Err(e)) => {
                    tracing::error!(error = %e, "replicated topology does not parse; keeping the previous one");
                }
                None => tracing::error!(
                    "replicated change deletes the topology; keeping the previous one"
                ),
            }
        }
        self.version.send_if_modified(|v| {
            let changed = *v != version;
            *v = version;
            changed
        });
    }
}

/// The user directory in memory.
type Users = sip::hashed::TrustedKeys<String, Arc<UserRecord>>;

/// Every user record in `store`, by normal SIP address.
async fn users_in(store: &ReplicaStore) -> Result<Users, StoreError> {
    Ok(store
        .items_with_prefix(USER_PREFIX)
        .await?
        .into_iter()
        .filter_map(|i| {
            let record = crate::directory::record_in(&i)?;
            Some((
                i.key.strip_prefix(USER_PREFIX)?.to_string(),
                Arc::new(record),
            ))
        })
        .collect())
}

/// The path of a server's local replica inside its data folder.
pub fn replica_path(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("replica.db")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPOLOGY: &str = include_str!("../../../examples/contoso.toml");

    async fn agent(dir: &std::path::Path, clock: Clock) -> ReplicaAgent {
        let store = ReplicaStore::open(&dir.join("replica.db")).await.unwrap();
        let topology = Item {
            key: keys::TOPOLOGY_ACTIVE.into(),
            value: Some(TOPOLOGY.into()),
            version: 5,
        };
        store.replace_all(5, 0, &[topology]).await.unwrap();
        ReplicaAgent::open(store, "replica.db", clock)
            .await
            .unwrap()
    }

    async fn advance(ms: u64) {
        tokio::time::advance(Duration::from_millis(ms)).await;
    }

    #[tokio::test]
    async fn a_view_is_proven_by_asking_the_master_and_doubted_once_the_proof_is_old() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::starting_at(1_000_000);
        let agent = agent(dir.path(), clock).await;
        let epoch = agent.state().await.unwrap().epoch;
        // Time stands still from here; the store is not read again.
        tokio::time::pause();
        let here = (epoch, 5);
        assert_eq!(agent.view_doubt(), Some(ViewDoubt::SinceStart));
        // No master to ask proves nothing for a server that has just started.
        agent.note_check(clock.now_ms(), None, here);
        assert_eq!(agent.view_doubt(), Some(ViewDoubt::SinceStart));
        // A master ahead, or of another term, proves nothing either.
        agent.note_check(clock.now_ms(), Some((epoch, 6)), here);
        agent.note_check(
            clock.now_ms(),
            Some((store::next_term_floor(epoch), 5)),
            here,
        );
        assert_eq!(agent.view_doubt(), Some(ViewDoubt::SinceStart));
        // The master of this term at this replica's version does.
        let asked = clock.now_ms();
        agent.note_check(asked, Some((epoch, 5)), here);
        assert_eq!(agent.view_doubt(), None);
        advance(3_000).await;
        assert_eq!(agent.view_doubt(), None);
        advance(1).await;
        assert_eq!(agent.view_doubt(), Some(ViewDoubt::Stale { ms: 3_001 }));
        // An answer that arrives late (the server was paused while it waited) is dated when
        // the question left, and proves nothing about the time since.
        agent.note_check(asked, Some((epoch, 5)), here);
        assert_eq!(agent.view_doubt(), Some(ViewDoubt::Stale { ms: 3_001 }));
        // A master that has moved on since leaves the view in doubt.
        agent.note_check(clock.now_ms(), Some((epoch, 9)), here);
        assert!(agent.view_doubt().is_some());
        // A master that is ahead and then gone leaves it in doubt: it is known to be behind.
        agent.note_check(clock.now_ms(), None, here);
        assert!(agent.view_doubt().is_some());
        // Proven again; the master goes away within the TTL: the last proven view stands,
        // as long as the master is asked about and still found away.
        agent.note_check(clock.now_ms(), Some((epoch, 5)), here);
        advance(1_000).await;
        agent.note_check(clock.now_ms(), None, here);
        for _ in 0..5 {
            advance(1_000).await;
            agent.note_check(clock.now_ms(), None, here);
            assert_eq!(agent.view_doubt(), None);
        }
        advance(3_001).await;
        assert!(agent.view_doubt().is_some(), "no one asked for 3 s");
        agent.note_check(clock.now_ms(), None, here);
        assert!(agent.view_doubt().is_some(), "an old proof is not revived");
        // Found again ahead of this replica (back from a cut): in doubt at once.
        agent.note_check(clock.now_ms(), Some((epoch, 5)), here);
        advance(1_000).await;
        agent.note_check(clock.now_ms(), None, here);
        advance(2_500).await;
        agent.note_check(clock.now_ms(), None, here);
        assert_eq!(agent.view_doubt(), None);
        agent.note_check(clock.now_ms(), Some((epoch, 7)), here);
        assert!(agent.view_doubt().is_some());
        agent.note_check(clock.now_ms(), Some((epoch, 5)), here);
        assert_eq!(agent.view_doubt(), None);
        // Frozen past the TTL (SIGSTOP, a VM paused), then no master to ask: the old proof
        // is not revived, as the pool may have been failed over meanwhile.
        advance(10_000).await;
        agent.note_check(clock.now_ms(), None, here);
        assert!(agent.view_doubt().is_some());
        advance(1_000).await;
        agent.note_check(clock.now_ms(), None, here);
        assert!(agent.view_doubt().is_some());
    }

    #[tokio::test]
    async fn a_push_written_but_not_yet_live_proves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::starting_at(1_000_000);
        let agent = agent(dir.path(), clock).await;
        let epoch = agent.state().await.unwrap().epoch;
        // The file moves to version 6 (a push being applied); the server still serves 5.
        let topology = Item {
            key: keys::TOPOLOGY_ACTIVE.into(),
            value: Some(TOPOLOGY.into()),
            version: 6,
        };
        agent.store().replace_all(6, 0, &[topology]).await.unwrap();
        assert_eq!(agent.state().await.unwrap().version, 6);
        assert_eq!(agent.version(), 5);
        agent
            .note_master_check(clock.now_ms(), Some((epoch, 6)))
            .await
            .unwrap();
        assert_eq!(agent.view_doubt(), Some(ViewDoubt::SinceStart));
        // What is live, the master's version of who serves whom, proves it.
        agent
            .note_master_check(clock.now_ms(), Some((epoch, 5)))
            .await
            .unwrap();
        assert_eq!(agent.view_doubt(), None);
    }
}
