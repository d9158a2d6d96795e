//! Which users are homed on which pool, as this server's replica says.
//!
//! A failover works on "the users homed on pool X": it verifies, promotes and signs out
//! exactly those. With 200,000 users per pool, reading and parsing every user record for
//! each step costs about a second per step, so the answer is kept in memory and brought up
//! to date from the items the replica changed since it was last asked (an index on the
//! item version makes that a short range scan). A replacement of the whole replica starts
//! it over.

use std::collections::HashMap;
use std::sync::Arc;

use cms::directory::{USER_PREFIX, UserRecord};
use store::StoreError;

use crate::Server;

/// The home pool (lower case) of every enabled user, by SIP address.
#[derive(Debug, Default)]
pub(crate) struct HomeIndex {
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

impl Server {
    /// The SIP addresses of the users homed on `pool`, sorted.
    pub(crate) async fn users_homed_on(&self, pool: &str) -> Result<Vec<String>, StoreError> {
        let mut index = self.homes.lock().await;
        self.catch_up(&mut index).await?;
        Ok(index.homed_on(pool))
    }

    /// Applies to `index` what the replica changed since the index last looked.
    async fn catch_up(&self, index: &mut HomeIndex) -> Result<(), StoreError> {
        let store = self.replica.store();
        // Read the position first: everything at or below it is in the replica already,
        // and anything newer is read again next time.
        let version = self.replica.version();
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
}

/// Keeps the index current as the replica moves, so that a failover step never pays for
/// building it (about a second at 400,000 users).
pub(crate) async fn follow(server: Arc<Server>) {
    let mut versions = server.replica.subscribe_version();
    loop {
        {
            let mut index = server.homes.lock().await;
            if let Err(e) = server.catch_up(&mut index).await {
                tracing::warn!(error = %e, "updating the users' home pools from the replica");
            }
        }
        if versions.changed().await.is_err() {
            return;
        }
    }
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
