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
    /// Bumped when the partner's users were just sent home by a failback: the partner
    /// watch starts over from "up" instead of waiting out a detection interval.
    partner_back: std::sync::atomic::AtomicU64,
    /// The failover states as of a replica version.
    cache: tokio::sync::Mutex<(i64, Arc<FailoverStates>)>,
}

impl Default for Serving {
    fn default() -> Serving {
        Serving {
            partner_down: AtomicBool::new(false),
            partner_back: std::sync::atomic::AtomicU64::new(0),
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

    /// A failback just sent the partner's users home: it is up (it serves them), so they
    /// are redirected there at once rather than after the failback detection interval.
    pub fn partner_is_back(&self) {
        self.partner_down.store(false, Ordering::SeqCst);
        self.partner_back.fetch_add(1, Ordering::SeqCst);
    }

    /// How many times [`Serving::partner_is_back`] was called: the partner watch starts
    /// over when it changes.
    pub fn partner_back_count(&self) -> u64 {
        self.partner_back.load(Ordering::SeqCst)
    }

    /// The pools' failover states in `replica`, read again only when the replica has
    /// moved to a new version.
    pub async fn failover_states(&self, replica: &ReplicaAgent) -> Arc<FailoverStates> {
        let version = replica.version();
        let mut cache = self.cache.lock().await;
        if cache.0 != version {
            // Boxed: the query's future is large, and every request's future would
            // carry it though it runs only when the replica's version changed.
            match Box::pin(replica.store().items_with_prefix(dr::state::POOL_PREFIX)).await {
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
