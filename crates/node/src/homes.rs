//! Which users are homed on which pool, as this server's replica says.
//!
//! A failover works on "the users homed on pool X": it verifies, promotes and signs out
//! exactly those. With 200,000 users per pool, reading and parsing every user record for
//! each step costs about a second per step, so the answer is kept in memory and brought up
//! to date from the items the replica changed since it was last asked (an index on the
//! item version makes that a short range scan). A replacement of the whole replica starts
//! it over.

use std::collections::HashMap;

use cms::directory::{USER_PREFIX, UserRecord};
use cms::replica::ReplicaAgent;
use store::StoreError;
use tokio_util::sync::CancellationToken;

/// The home pool (lower case) of every enabled user, by SIP address.
#[derive(Debug, Default)]
struct HomeIndex {
    /// The replica version the index reflects, and the replica's replacement count then.
    seen: Option<(i64, u64)>,
    home: HashMap<String, String>,
}

impl HomeIndex {
    fn apply(&mut self, key: &str, value: Option<&str>) {
        let Some(sip) = key.strip_prefix(USER_PREFIX) else {
            return;
        };
        match value.and_then(|v| serde_json::from_str::<UserRecord>(v).ok()) {
            Some(user) => {
                self.home
                    .insert(sip.to_string(), user.registrar_pool.to_ascii_lowercase());
            }
            None => {
                self.home.remove(sip);
            }
        }
    }

    fn homed_on(&self, pool: &str) -> Vec<String> {
        let pool = pool.to_ascii_lowercase();
        let mut users: Vec<String> = self
            .home
            .iter()
            .filter(|(_, home)| **home == pool)
            .map(|(sip, _)| sip.clone())
            .collect();
        users.sort();
        users
    }
}

/// The index, behind the lock its readers share.
#[derive(Debug, Default)]
pub struct Homes {
    index: tokio::sync::Mutex<HomeIndex>,
}

impl Homes {
    /// The SIP addresses of the users homed on `pool`, sorted.
    pub async fn homed_on(
        &self,
        replica: &ReplicaAgent,
        pool: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut index = self.index.lock().await;
        catch_up(replica, &mut index).await?;
        Ok(index.homed_on(pool))
    }

    /// Keeps the index current as the replica moves, so that a failover step never pays
    /// for building it (about a second at 400,000 users). Ends when `stop` is cancelled.
    pub async fn follow(&self, replica: &ReplicaAgent, stop: CancellationToken) {
        let mut versions = replica.subscribe_version();
        loop {
            {
                let mut index = self.index.lock().await;
                if let Err(e) = catch_up(replica, &mut index).await {
                    tracing::warn!(error = %e, "updating the users' home pools from the replica");
                }
            }
            tokio::select! {
                changed = versions.changed() => if changed.is_err() { return },
                () = stop.cancelled() => return,
            }
        }
    }
}

/// Applies to `index` what the replica changed since the index last looked.
async fn catch_up(replica: &ReplicaAgent, index: &mut HomeIndex) -> Result<(), StoreError> {
    let store = replica.store();
    // Read the position first: everything at or below it is in the replica already,
    // and anything newer is read again next time.
    let version = replica.version();
    let replaced = store.replacements();
    let since = match index.seen {
        Some((v, r)) if r == replaced && v <= version => v,
        _ => {
            *index = HomeIndex::default();
            -1
        }
    };
    for item in store.changed_since(since, USER_PREFIX).await? {
        index.apply(&item.key, item.value.as_deref());
    }
    index.seen = Some((version, replaced));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sip: &str, pool: &str) -> String {
        serde_json::to_string(&UserRecord {
            identity: sip.into(),
            sip_address: sip.into(),
            realm: "contoso.com".into(),
            registrar_pool: pool.into(),
            enabled: true,
            ha1: "0".repeat(32),
            ha1_sha256: None,
        })
        .unwrap()
    }

    #[test]
    fn moves_and_deletions_are_followed() {
        let mut index = HomeIndex::default();
        let a = "sip:a@contoso.com";
        let b = "sip:b@contoso.com";
        index.apply(&format!("users/{a}"), Some(&record(a, "Pool1.contoso.com")));
        index.apply(&format!("users/{b}"), Some(&record(b, "pool1.contoso.com")));
        index.apply("topology/active", Some("not a user"));
        assert_eq!(index.homed_on("POOL1.contoso.com"), vec![a, b]);
        index.apply(&format!("users/{a}"), Some(&record(a, "pool2.contoso.com")));
        index.apply(&format!("users/{b}"), None);
        assert_eq!(index.homed_on("pool1.contoso.com"), Vec::<String>::new());
        assert_eq!(index.homed_on("pool2.contoso.com"), vec![a]);
    }
}
