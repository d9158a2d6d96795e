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
    /// The failover states as of a replica version: read by every REGISTER, so behind a
    /// lock held for a copy of an `Arc` and never across an await (a request that found an
    /// async lock taken by the other reader thread went pending, became a task and was
    /// answered alone: 7% of sign-ins under load).
    cache: std::sync::Mutex<(i64, Arc<FailoverStates>)>,
    /// Held while the states are read again from the replica, one reading at a time.
    reading: tokio::sync::Mutex<()>,
}

impl Default for Serving {
    fn default() -> Serving {
        Serving {
            partner_down: AtomicBool::new(false),
            partner_back: std::sync::atomic::AtomicU64::new(0),
            cache: std::sync::Mutex::new((-1, Arc::default())),
            reading: tokio::sync::Mutex::new(()),
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
        if let Some(states) = self.cached(version) {
            return states;
        }
        let _reading = self.reading.lock().await;
        // Another request may have read them while this one waited.
        if let Some(states) = self.cached(version) {
            return states;
        }
        // Boxed: the query's future is large, and every request's future would carry it
        // though it runs only when the replica's version changed.
        match Box::pin(replica.store().items_with_prefix(dr::state::POOL_PREFIX)).await {
            Ok(items) => {
                let states: Arc<FailoverStates> = Arc::new(
                    items
                        .iter()
                        .filter_map(|i| dr::PoolState::from_json(i.value.as_deref()?))
                        .map(|s| (s.pool.clone(), s))
                        .collect(),
                );
                *self.cache.lock().expect("the failover states") = (version, states.clone());
                states
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading failover states from the replica");
                self.cache.lock().expect("the failover states").1.clone()
            }
        }
    }

    /// The states read at `version`, if they are the ones kept.
    fn cached(&self, version: i64) -> Option<Arc<FailoverStates>> {
        let cache = self.cache.lock().expect("the failover states");
        (cache.0 == version).then(|| cache.1.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::{Context, Poll, Waker};

    #[tokio::test]
    async fn current_states_are_read_without_waiting_on_a_reading_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let store = store::ReplicaStore::open(&dir.path().join("replica.db"))
            .await
            .unwrap();
        let topology = store::Item {
            key: cms::keys::TOPOLOGY_ACTIVE.into(),
            value: Some(include_str!("../../../examples/contoso.toml").into()),
            version: 5,
        };
        store.replace_all(5, 0, &[topology]).await.unwrap();
        let replica = ReplicaAgent::open(store, "replica.db", clock::Clock::starting_at(0))
            .await
            .unwrap();
        let serving = Serving::default();
        let first = serving.failover_states(&replica).await;
        // As if another request were reading them again (for a newer version).
        let _reading = serving.reading.lock().await;
        let again = std::pin::pin!(serving.failover_states(&replica));
        let mut cx = Context::from_waker(Waker::noop());
        match again.poll(&mut cx) {
            Poll::Ready(states) => assert!(Arc::ptr_eq(&states, &first)),
            Poll::Pending => panic!("a request waited for states it had"),
        }
    }
}
