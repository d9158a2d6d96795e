//! What a pool failover or failback does to a Back End: fence a pool's users off it,
//! turn the backup copy of some users into their writable copy, drop a copy that is no
//! longer theirs, and count the changes a disaster cut off.
//!
//! Each function is one transaction and safe to run twice, because the operations engine
//! re-runs the step a crash interrupted. Promotion and retirement write change-log rows
//! for exactly the items they change, so the Backup Service carries the new state to the
//! partner's backup copy like any other write.

use std::collections::BTreeMap;

use crate::db::{self, Conn};
use crate::userdata::{Binding, BindingRow, Change};
use crate::{BackEnd, Context, Result, now_ms};

/// What a promotion did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Promotion {
    /// Users whose copy was promoted.
    pub users: i64,
    /// Items they now have here.
    pub items: i64,
    /// Change-log rows written (items that differed from what was here).
    pub changes_logged: i64,
    /// Per module: the last change of the source pool the copy holds, and when it arrived.
    pub cut: BTreeMap<String, (i64, i64)>,
}

/// The changes a pool committed after a cut: lost to a disaster failover.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lost {
    pub changes: Vec<Change>,
}

impl Lost {
    pub fn users(&self) -> Vec<String> {
        let mut u: Vec<String> = self.changes.iter().map(|c| c.sip.clone()).collect();
        u.sort();
        u.dedup();
        u
    }
}

/// Loads `users` into a temporary table of the transaction's connection.
async fn load_users(tx: &mut Conn, path: &str, users: &[String]) -> Result<()> {
    let create = if tx.is_postgres() {
        r#"CREATE TEMP TABLE IF NOT EXISTS dr_users (sip TEXT COLLATE "C" PRIMARY KEY);
           DELETE FROM dr_users;"#
    } else {
        "CREATE TEMP TABLE IF NOT EXISTS dr_users (sip TEXT PRIMARY KEY); DELETE FROM dr_users;"
    };
    db::raw_sql(create, &mut *tx).await.at(path)?;
    // A pool has many more users than users with data or registrations here: keep only
    // those, so that the table (and every join on it) is as small as the data moved.
    let present: Vec<(String,)> = db::query_as(
        "SELECT sip FROM user_item UNION SELECT sip FROM backup_item UNION SELECT aor FROM registration",
    )
    .fetch_all(&mut *tx)
    .await
    .at(path)?;
    let wanted: std::collections::HashSet<&str> = users.iter().map(String::as_str).collect();
    let users: Vec<&str> = present
        .iter()
        .map(|(sip,)| sip.as_str())
        .filter(|sip| wanted.contains(sip))
        .collect();
    // One statement for any number of users: the list travels as one JSON array.
    let list = serde_json::Value::from(users).to_string();
    db::query("INSERT OR IGNORE INTO dr_users (sip) SELECT value FROM json_each($1)")
        .postgres(
            "INSERT INTO dr_users (sip) SELECT jsonb_array_elements_text($1::jsonb)
             ON CONFLICT DO NOTHING",
        )
        .bind(list)
        .execute(&mut *tx)
        .await
        .at(path)?;
    Ok(())
}

impl BackEnd {
    /// Refuses, from now on, every write of the users homed on `home_pool`.
    ///
    /// Under the store's write lock, as every user write is: a write in progress commits
    /// before the fence does (and is shipped), and none commits after this returns.
    pub async fn fence(&self, home_pool: &str, reason: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        db::query(
            "INSERT INTO dr_fence (home_pool, reason, since) VALUES ($1, $2, $3)
             ON CONFLICT (home_pool) DO UPDATE SET reason = $2",
        )
        .bind(home_pool.to_ascii_lowercase())
        .bind(reason)
        .bind(now_ms())
        .execute(&mut tx)
        .await
        .at(&self.path)?;
        tx.commit().await.at(&self.path)
    }

    pub async fn unfence(&self, home_pool: &str) -> Result<()> {
        db::query("DELETE FROM dr_fence WHERE home_pool = $1")
            .bind(home_pool.to_ascii_lowercase())
            .execute(&self.db)
            .await
            .at(&self.path)?;
        Ok(())
    }

    /// Why the users of `home_pool` may not write here, if they may not.
    pub async fn fence_reason(&self, home_pool: &str) -> Result<Option<String>> {
        let row: Option<(String,)> =
            db::query_as("SELECT reason FROM dr_fence WHERE home_pool = $1")
                .bind(home_pool.to_ascii_lowercase())
                .fetch_optional(&self.db)
                .await
                .at(&self.path)?;
        Ok(row.map(|(r,)| r))
    }

    /// Makes the backup copy that `source_pool` shipped here the writable copy of `users`
    /// (homed on `home_pool`): their items here become exactly the copy's, the differences
    /// are logged for the Backup Service, and the fence on `home_pool` is lifted — all in
    /// one transaction.
    pub async fn promote_backup(
        &self,
        source_pool: &str,
        home_pool: &str,
        users: &[String],
    ) -> Result<Promotion> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        load_users(&mut tx, &self.path, users).await?;
        let deleted = db::query(
            "INSERT INTO change_log (module, sip, key, value, committed_at)
             SELECT u.module, u.sip, u.key, NULL, $2 FROM user_item u JOIN dr_users d ON d.sip = u.sip
             WHERE NOT EXISTS (SELECT 1 FROM backup_item b
                               WHERE b.source_pool = $1 AND b.sip = u.sip AND b.key = u.key)
             ORDER BY u.sip, u.key",
        )
        .bind(source_pool)
        .bind(now)
        .execute(&mut tx)
        .await
        .at(&self.path)?
        .rows_affected();
        let changed = db::query(
            "INSERT INTO change_log (module, sip, key, value, committed_at)
             SELECT b.module, b.sip, b.key, b.value, $2 FROM backup_item b JOIN dr_users d ON d.sip = b.sip
             WHERE b.source_pool = $1 AND NOT EXISTS (
                 SELECT 1 FROM user_item u
                 WHERE u.sip = b.sip AND u.key = b.key AND u.module = b.module AND u.value = b.value)
             ORDER BY b.sip, b.key",
        )
        .bind(source_pool)
        .bind(now)
        .execute(&mut tx)
        .await
        .at(&self.path)?
        .rows_affected();
        db::query("DELETE FROM user_item WHERE sip IN (SELECT sip FROM dr_users)")
            .execute(&mut tx)
            .await
            .at(&self.path)?;
        let items = db::query(
            "INSERT INTO user_item (sip, key, module, value, updated_at)
             SELECT b.sip, b.key, b.module, b.value, b.committed_at
             FROM backup_item b JOIN dr_users d ON d.sip = b.sip WHERE b.source_pool = $1",
        )
        .bind(source_pool)
        .execute(&mut tx)
        .await
        .at(&self.path)?
        .rows_affected();
        db::query("DELETE FROM dr_fence WHERE home_pool = $1")
            .bind(home_pool.to_ascii_lowercase())
            .execute(&mut tx)
            .await
            .at(&self.path)?;
        let cut: Vec<(String, i64, i64)> = db::query_as(
            "SELECT module, applied_seq, last_import_at FROM backup_import WHERE source_pool = $1",
        )
        .bind(source_pool)
        .fetch_all(&mut tx)
        .await
        .at(&self.path)?;
        tx.commit().await.at(&self.path)?;
        Ok(Promotion {
            users: users.len() as i64,
            items: items as i64,
            changes_logged: (deleted + changed) as i64,
            cut: cut.into_iter().map(|(m, s, t)| (m, (s, t))).collect(),
        })
    }

    /// Drops the data of `users` from this pool (logged, so the partner's backup copy of
    /// this pool drops it too). Returns how many items went.
    pub async fn retire_users(&self, users: &[String]) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        load_users(&mut tx, &self.path, users).await?;
        db::query(
            "INSERT INTO change_log (module, sip, key, value, committed_at)
             SELECT u.module, u.sip, u.key, NULL, $1 FROM user_item u JOIN dr_users d ON d.sip = u.sip
             ORDER BY u.sip, u.key",
        )
        .bind(now_ms())
        .execute(&mut tx)
        .await
        .at(&self.path)?;
        let gone = db::query("DELETE FROM user_item WHERE sip IN (SELECT sip FROM dr_users)")
            .execute(&mut tx)
            .await
            .at(&self.path)?
            .rows_affected();
        tx.commit().await.at(&self.path)?;
        Ok(gone as i64)
    }

    /// Removes every registration of `users` and returns them, so that the endpoints
    /// behind them can be told to sign in elsewhere.
    pub async fn unregister_users(&self, users: &[String]) -> Result<Vec<Binding>> {
        let mut tx = self.begin_write().await?;
        load_users(&mut tx, &self.path, users).await?;
        let gone: Vec<BindingRow> = db::query_as(
            "DELETE FROM registration WHERE aor IN (SELECT sip FROM dr_users)
             RETURNING aor, contact, expires_at, mode, server",
        )
        .fetch_all(&mut tx)
        .await
        .at(&self.path)?;
        tx.commit().await.at(&self.path)?;
        Ok(gone.into_iter().map(Binding::from).collect())
    }

    /// The change-log rows after `cut` (per module), oldest first: what a disaster
    /// failover cut off, once this pool is readable again.
    pub async fn changes_after_cut(&self, cut: &BTreeMap<String, i64>) -> Result<Lost> {
        let mut changes = Vec::new();
        for (module, seq) in cut {
            let mut after = *seq;
            loop {
                let batch = self.changes_after(module, after, 5_000).await?;
                let Some(last) = batch.last() else { break };
                after = last.seq;
                changes.extend(batch);
            }
        }
        changes.sort_by_key(|c| (c.committed_at, c.seq));
        Ok(Lost { changes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UserChange;

    const P1: &str = "pool1.contoso.com";
    const P2: &str = "pool2.contoso.com";

    fn put(key: &str, value: Option<&str>) -> UserChange {
        UserChange {
            module: "PresenceFocus".into(),
            key: key.into(),
            value: value.map(str::to_string),
        }
    }

    crate::each_backend! {
        async fn a_fence_refuses_writes_until_promotion_lifts_it(db) {
            let be = db.open("p").await;
            let alice = "sip:alice@contoso.com".to_string();
            be.write_user(P1, &alice, &[put("contacts/bob", Some("{}"))])
                .await
                .unwrap();
            be.fence(P1, "pool1 is failing over").await.unwrap();
            be.fence(P1, "pool1 is failing over").await.unwrap();
            let e = be
                .write_user(P1, &alice, &[put("contacts/carol", Some("{}"))])
                .await
                .unwrap_err();
            assert_eq!(e.fenced_reason(), Some("pool1 is failing over"));
            // Other pools' users are not fenced.
            be.write_user(P2, "sip:zed@contoso.com", &[put("k", Some("1"))])
                .await
                .unwrap();
            be.promote_backup(P2, P1, std::slice::from_ref(&alice))
                .await
                .unwrap();
            assert_eq!(be.fence_reason(P1).await.unwrap(), None);
            be.write_user(P1, &alice, &[put("contacts/carol", Some("{}"))])
                .await
                .unwrap();
        }
    }

    crate::each_backend! {
        async fn unregistering_users_returns_exactly_their_bindings(db) {
            let be = db.open("p").await;
            let binding = |aor: &str, contact: &str| Binding {
                aor: aor.into(),
                contact: contact.into(),
                expires_at: now_ms() + 60_000,
                mode: "full".into(),
                server: "pool1-fe1.contoso.com".into(),
            };
            for b in [
                binding("sip:alice@contoso.com", "sip:alice@127.0.0.1:5070"),
                binding("sip:alice@contoso.com", "sip:alice@127.0.0.1:5071"),
                binding("sip:bob@contoso.com", "sip:bob@127.0.0.1:5072"),
            ] {
                be.register(&b).await.unwrap();
            }
            let mut gone = be
                .unregister_users(&["sip:alice@contoso.com".to_string()])
                .await
                .unwrap();
            gone.sort_by(|a, b| a.contact.cmp(&b.contact));
            let contacts: Vec<&str> = gone.iter().map(|b| b.contact.as_str()).collect();
            assert_eq!(
                contacts,
                ["sip:alice@127.0.0.1:5070", "sip:alice@127.0.0.1:5071"]
            );
            assert!(
                be.bindings("sip:alice@contoso.com")
                    .await
                    .unwrap()
                    .is_empty()
            );
            assert_eq!(be.bindings("sip:bob@contoso.com").await.unwrap().len(), 1);
            // Running it again (a resumed step) finds nothing more to remove.
            assert!(
                be.unregister_users(&["sip:alice@contoso.com".to_string()])
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
    }

    crate::each_backend! {
        async fn promotion_replaces_exactly_and_logs_only_differences(db) {
            let home = db.open("home").await;
            let backup = db.open("backup")
                .await;
            let alice = "sip:alice@contoso.com".to_string();
            // The backup pool holds alice's data as she left it on the home pool...
            home.write_user(P1, &alice, &[put("a", Some("1")), put("b", Some("2"))])
                .await
                .unwrap();
            let shipped = home.changes_after("PresenceFocus", 0, 100).await.unwrap();
            backup
                .import_changes(P1, "PresenceFocus", &shipped)
                .await
                .unwrap();
            let p = backup
                .promote_backup(P1, P1, std::slice::from_ref(&alice))
                .await
                .unwrap();
            assert_eq!((p.users, p.items, p.changes_logged), (1, 2, 2));
            assert_eq!(p.cut.get("PresenceFocus").map(|c| c.0), Some(2));
            // ...she changes it there, and it comes back.
            backup
                .write_user(P1, &alice, &[put("b", None), put("c", Some("3"))])
                .await
                .unwrap();
            let back = backup.changes_after("PresenceFocus", 0, 100).await.unwrap();
            home.import_changes(P2, "PresenceFocus", &back)
                .await
                .unwrap();
            let again = home
                .promote_backup(P2, P1, std::slice::from_ref(&alice))
                .await
                .unwrap();
            // a unchanged; b deleted; c new: two rows logged.
            assert_eq!(again.changes_logged, 2);
            let keys: Vec<_> = home
                .user_items(&alice)
                .await
                .unwrap()
                .into_iter()
                .map(|i| (i.key, i.value))
                .collect();
            assert_eq!(keys, [("a".into(), "1".into()), ("c".into(), "3".into())]);
            // Running it twice changes nothing more.
            let twice = home
                .promote_backup(P2, P1, std::slice::from_ref(&alice))
                .await
                .unwrap();
            assert_eq!(twice.changes_logged, 0);
            assert_eq!(
                backup
                    .retire_users(std::slice::from_ref(&alice))
                    .await
                    .unwrap(),
                2
            );
            assert!(backup.user_items(&alice).await.unwrap().is_empty());
        }
    }

    crate::each_backend! {
        async fn the_changes_after_a_cut_are_the_lost_ones(db) {
            let be = db.open("p").await;
            for i in 0..5 {
                be.write_user(P1, &format!("sip:u{i}@contoso.com"), &[put("k", Some("v"))])
                    .await
                    .unwrap();
            }
            let lost = be
                .changes_after_cut(&BTreeMap::from([("PresenceFocus".to_string(), 3)]))
                .await
                .unwrap();
            assert_eq!(lost.changes.len(), 2);
            assert_eq!(lost.users(), ["sip:u3@contoso.com", "sip:u4@contoso.com"]);
        }
    }
}
