//! The Replica Replicator Agent: every server's end of CMS replication.
//!
//! It stores what the master pushes in the server's local replica, then makes the new
//! configuration live by publishing it on a watch channel the server's services follow.
//! When its service (`REPLICA`) is stopped it refuses pushes, so the master sees it fall
//! behind (`UpToDate False`) exactly as an operator would expect.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use store::{ApplyOutcome, Batch, Item, ReplicaState, ReplicaStore, StoreError};
use tokio::sync::watch;
use topology::Topology;

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
    /// Whether a master's push was applied since this server started: until then the
    /// replica is what the server held when it stopped, which may predate a failover.
    heard_from_master: AtomicBool,
}

impl ReplicaAgent {
    /// Starts the agent on a seeded replica.
    pub async fn open(store: ReplicaStore, path: &str) -> Result<ReplicaAgent, ReplicaError> {
        let text = store
            .get(keys::TOPOLOGY_ACTIVE)
            .await?
            .ok_or_else(|| ReplicaError::NoTopology(path.to_string()))?;
        let topology =
            Topology::from_toml(&text).map_err(|e| ReplicaError::BadTopology(e.to_string()))?;
        let state = store.state().await?;
        Ok(ReplicaAgent {
            store,
            running: AtomicBool::new(true),
            topology: watch::Sender::new(Arc::new(topology)),
            version: watch::Sender::new(state.version),
            heard_from_master: AtomicBool::new(false),
        })
    }

    /// Whether this replica applied a push of a proven active master since the server
    /// started (a heartbeat counts: the master pushes to the newest version every time).
    /// Until then the failover states it holds may predate a failover made while this
    /// server was down, and the server serves nobody in full mode.
    pub fn caught_up_since_start(&self) -> bool {
        self.heard_from_master.load(Ordering::SeqCst)
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
        let outcome = self.store.apply(&batch, store::now_ms()).await?;
        Ok(match outcome {
            ApplyOutcome::Applied { version } => {
                self.make_live(&req.items, version).await;
                if req.proven {
                    self.heard_from_master.store(true, Ordering::SeqCst);
                }
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
        self.store.replace_all(version, created_at, items).await?;
        self.make_live(items, version).await;
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

/// The path of a server's local replica inside its data folder.
pub fn replica_path(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("replica.db")
}
