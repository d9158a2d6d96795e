//! Whose users this server's pool serves, and how.
//!
//! The decision itself is `topology::serving::decide`, a pure function. Its inputs are
//! kept here: the pools' failover states as the replica holds them (read again only when
//! the replica moves to a new version), and this pool's verdict on its partner, which the
//! registrar's partner watch sets (true while the partner's users are served here in
//! resiliency mode).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cms::replica::ReplicaAgent;

/// Every pool's failover state, by lower-case pool FQDN.
pub type FailoverStates = BTreeMap<String, dr::PoolState>;

#[derive(Debug)]
pub struct Serving {
    partner_down: AtomicBool,
    /// The failover states as of a replica version.
    cache: tokio::sync::Mutex<(i64, Arc<FailoverStates>)>,
}

impl Default for Serving {
    fn default() -> Serving {
        Serving {
            partner_down: AtomicBool::new(false),
            cache: tokio::sync::Mutex::new((-1, Arc::default())),
        }
    }
}

impl Serving {
    /// Whether the partner pool is down, as this pool's watch last decided.
    pub fn partner_down(&self) -> bool {
        self.partner_down.load(Ordering::SeqCst)
    }

    pub fn set_partner_down(&self, down: bool) {
        self.partner_down.store(down, Ordering::SeqCst);
    }

    /// The pools' failover states in `replica`, read again only when the replica has
    /// moved to a new version.
    pub async fn failover_states(&self, replica: &ReplicaAgent) -> Arc<FailoverStates> {
        let version = replica.version();
        let mut cache = self.cache.lock().await;
        if cache.0 != version {
            match replica
                .store()
                .items_with_prefix(dr::state::POOL_PREFIX)
                .await
            {
                Ok(items) => {
                    let states = items
                        .iter()
                        .filter_map(|i| dr::PoolState::from_json(i.value.as_deref()?))
                        .map(|s| (s.pool.clone(), s))
                        .collect();
                    *cache = (version, Arc::new(states));
                }
                Err(e) => tracing::warn!(error = %e, "reading failover states from the replica"),
            }
        }
        cache.1.clone()
    }
}
