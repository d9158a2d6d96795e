//! A server's local replica of the Central Management store.
//!
//! The replica holds the items and the position (version, master epoch) it reached. It
//! accepts a batch of changes only if the batch starts at or before its version (no gaps)
//! and comes from a master whose epoch is not older than one it already followed: that is
//! how a fenced master is ignored.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::db::{self, Db};
use crate::history::{History, Standing, standing};
use crate::items::REPLICA;
use crate::{Context, Item, Result, migrate, open_sqlite};

/// Where a replica stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplicaState {
    pub version: i64,
    pub epoch: i64,
    pub master_fqdn: String,
    /// When the version the replica holds was created on the master (unix ms).
    pub last_update_creation: i64,
    /// When the master was last heard from (unix ms).
    pub last_heartbeat: i64,
}

/// What became of a batch of changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Stored; the replica is now at this version.
    Applied { version: i64 },
    /// The batch starts after the replica's version; send from this version instead.
    Gap { version: i64 },
    /// The sender's epoch is older than one this replica already follows.
    Fenced { epoch: i64, master_fqdn: String },
    /// The sender starts a new term (a CMS failover) at a version below this replica's:
    /// the replica holds versions of the old store that the new one never had, and must
    /// be replaced whole.
    Diverged { version: i64 },
}

/// A batch of changes from the master.
#[derive(Debug, Clone)]
pub struct Batch<'a> {
    pub master_fqdn: &'a str,
    pub epoch: i64,
    pub from_version: i64,
    pub to_version: i64,
    pub to_version_created_at: i64,
    pub items: &'a [Item],
    /// The history of the sender's line: a replica off it holds versions the sender never
    /// had (see [`crate::history`]).
    pub history: &'a crate::History,
    /// The items are the whole configuration at `to_version`: replace everything.
    pub replace: bool,
}

#[derive(Debug, Clone)]
pub struct ReplicaStore {
    db: Db,
    path: String,
    /// Bumped by [`ReplicaStore::replace_all`]: a reader that follows changes by version
    /// must start over after a replacement, which can drop items without a version.
    replacements: Arc<AtomicU64>,
}

impl ReplicaStore {
    pub async fn open(file: &Path) -> Result<ReplicaStore> {
        let pool = open_sqlite(file).await?;
        let path = file.display().to_string();
        migrate::run(&pool, &path, &migrate::REPLICA).await?;
        Ok(ReplicaStore {
            db: pool,
            path,
            replacements: Arc::default(),
        })
    }

    pub async fn state(&self) -> Result<ReplicaState> {
        let (version, epoch, master_fqdn, last_update_creation, last_heartbeat): (
            i64,
            i64,
            String,
            i64,
            i64,
        ) = db::query_as(
            "SELECT version, epoch, master_fqdn, last_update_creation, last_heartbeat
             FROM replica_state WHERE id = 1",
        )
        .fetch_one(&self.db)
        .await
        .at(&self.path)?;
        Ok(ReplicaState {
            version,
            epoch,
            master_fqdn,
            last_update_creation,
            last_heartbeat,
        })
    }

    /// Stores a batch of changes from the master (see [`ApplyOutcome`]).
    pub async fn apply(&self, batch: &Batch<'_>, now: i64) -> Result<ApplyOutcome> {
        let mut tx = crate::begin_write(&self.db, &self.path).await?;
        let (version, epoch, master, history): (i64, i64, String, String) = db::query_as(
            "SELECT version, epoch, master_fqdn, history FROM replica_state WHERE id = 1",
        )
        .fetch_one(&mut tx)
        .await
        .at(&self.path)?;
        if batch.epoch < epoch {
            return Ok(ApplyOutcome::Fenced {
                epoch,
                master_fqdn: master,
            });
        }
        let (new_version, created) = if batch.replace {
            db::query("DELETE FROM replica_item")
                .execute(&mut tx)
                .await
                .at(&self.path)?;
            REPLICA
                .upsert_items(&mut tx, &self.path, batch.items)
                .await?;
            (batch.to_version, Some(batch.to_version_created_at))
        } else {
            let mine = line_of(&history, epoch);
            if let Standing::OffLine { .. } = standing(&mine, version, batch.history) {
                return Ok(ApplyOutcome::Diverged { version });
            }
            if batch.from_version > version {
                return Ok(ApplyOutcome::Gap { version });
            }
            let newer: Vec<&Item> = batch.items.iter().filter(|i| i.version > version).collect();
            REPLICA.upsert_items(&mut tx, &self.path, newer).await?;
            if batch.to_version > version {
                (batch.to_version, Some(batch.to_version_created_at))
            } else {
                (version, None)
            }
        };
        db::query(
            "UPDATE replica_state SET version = $1, epoch = $2, master_fqdn = $3,
                 last_heartbeat = $4,
                 last_update_creation = COALESCE($5, last_update_creation),
                 history = $6
             WHERE id = 1",
        )
        .bind(new_version)
        .bind(batch.epoch)
        .bind(batch.master_fqdn)
        .bind(now)
        .bind(created)
        .bind(serde_json::to_string(batch.history).unwrap_or_default())
        .execute(&mut tx)
        .await
        .at(&self.path)?;
        tx.commit().await.at(&self.path)?;
        if batch.replace {
            self.replacements.fetch_add(1, Ordering::SeqCst);
        }
        Ok(ApplyOutcome::Applied {
            version: new_version,
        })
    }

    /// The history of the line the replica holds.
    pub async fn history(&self) -> Result<History> {
        let (history, epoch): (String, i64) =
            db::query_as("SELECT history, epoch FROM replica_state WHERE id = 1")
                .fetch_one(&self.db)
                .await
                .at(&self.path)?;
        Ok(line_of(&history, epoch))
    }

    /// Replaces the whole replica (seeding a server, `Import-CsConfiguration -LocalStore`).
    /// The epoch is kept: seeding must not let a fenced master back in.
    pub async fn replace_all(&self, version: i64, created_at: i64, items: &[Item]) -> Result<()> {
        let mut tx = crate::begin_write(&self.db, &self.path).await?;
        db::query("DELETE FROM replica_item")
            .execute(&mut tx)
            .await
            .at(&self.path)?;
        REPLICA.upsert_items(&mut tx, &self.path, items).await?;
        db::query("UPDATE replica_state SET version = $1, last_update_creation = $2 WHERE id = 1")
            .bind(version)
            .bind(created_at)
            .execute(&mut tx)
            .await
            .at(&self.path)?;
        tx.commit().await.at(&self.path)?;
        self.replacements.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// How many times the whole replica was replaced since it was opened.
    pub fn replacements(&self) -> u64 {
        self.replacements.load(Ordering::SeqCst)
    }

    /// The items (deletions included) under `prefix` written after `version`: how a
    /// derived view catches up without reading everything again.
    pub async fn changed_since(&self, version: i64, prefix: &str) -> Result<Vec<Item>> {
        let end = format!("{prefix}\u{10FFFF}");
        db::query_as(
            // The planner would rather range over the key (every user); the point is to
            // range over the version (only what changed).
            "SELECT key, value, version FROM replica_item INDEXED BY replica_item_version
             WHERE version > $1 AND key >= $2 AND key < $3 ORDER BY version, key",
        )
        .bind(version)
        .bind(prefix)
        .bind(end)
        .fetch_all(&self.db)
        .await
        .at(&self.path)
    }

    /// Where the replica stands, its line, and with `after` every item written after that
    /// version, read as one snapshot: what a disaster failover copies from a survivor. The
    /// replica keeps a value only with the version that last wrote it, so only the whole
    /// range up to the replica's own version is a consistent copy; a part of it would claim
    /// a version without the values overwritten later.
    pub async fn snapshot_after(
        &self,
        after: Option<i64>,
    ) -> Result<(ReplicaState, History, Vec<Item>)> {
        let mut tx = self.db.begin_snapshot().await.at(&self.path)?;
        let (version, epoch, master_fqdn, last_update_creation, last_heartbeat, history): (
            i64,
            i64,
            String,
            i64,
            i64,
            String,
        ) = db::query_as(
            "SELECT version, epoch, master_fqdn, last_update_creation, last_heartbeat, history
             FROM replica_state WHERE id = 1",
        )
        .fetch_one(&mut tx)
        .await
        .at(&self.path)?;
        let items = match after {
            Some(after) if after < version => db::query_as(
                "SELECT key, value, version FROM replica_item INDEXED BY replica_item_version
                     WHERE version > $1 ORDER BY version, key",
            )
            .bind(after)
            .fetch_all(&mut tx)
            .await
            .at(&self.path)?,
            _ => Vec::new(),
        };
        tx.commit().await.at(&self.path)?;
        let state = ReplicaState {
            version,
            epoch,
            master_fqdn,
            last_update_creation,
            last_heartbeat,
        };
        Ok((state, line_of(&history, epoch), items))
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>> {
        REPLICA.get(&self.db, &self.path, key).await
    }

    /// Every live item.
    pub async fn items(&self) -> Result<Vec<Item>> {
        REPLICA.live(&self.db, &self.path).await
    }

    /// Every live item whose key starts with `prefix`.
    pub async fn items_with_prefix(&self, prefix: &str) -> Result<Vec<Item>> {
        REPLICA.prefixed(&self.db, &self.path, prefix).await
    }

    pub async fn close(&self) {
        self.db.close().await;
    }
}

/// A replica's recorded history, or for one from before histories were kept, the line of
/// the term it follows.
fn line_of(recorded: &str, epoch: i64) -> History {
    serde_json::from_str(recorded).unwrap_or_else(|_| History::of_term(crate::term_of(epoch)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TermStart;

    fn item(key: &str, value: &str, version: i64) -> Item {
        Item {
            key: key.into(),
            value: Some(value.into()),
            version,
        }
    }

    fn line(terms: &[(i64, i64)]) -> History {
        History::from_terms(terms.iter().map(|&(term, start)| TermStart { term, start }))
    }

    fn batch<'a>(
        epoch: i64,
        from: i64,
        to: i64,
        items: &'a [Item],
        history: &'a History,
    ) -> Batch<'a> {
        Batch {
            master_fqdn: "fe1",
            epoch,
            from_version: from,
            to_version: to,
            to_version_created_at: 1000 + to,
            items,
            history,
            replace: false,
        }
    }

    #[tokio::test]
    async fn a_snapshot_after_a_version_carries_every_value_up_to_the_replicas_own() {
        let dir = tempfile::tempdir().unwrap();
        let r = ReplicaStore::open(&dir.path().join("replica.db"))
            .await
            .unwrap();
        let root = History::root();
        let v1 = [item("a", "1", 1), item("b", "1", 1)];
        r.apply(&batch(1, 0, 1, &v1, &root), 5).await.unwrap();
        // "a" is written again at 3: only that value is kept, with version 3.
        let v3 = [item("b", "2", 2), item("a", "3", 3)];
        r.apply(&batch(1, 1, 3, &v3, &root), 6).await.unwrap();
        let (state, line, items) = r.snapshot_after(Some(1)).await.unwrap();
        assert_eq!((state.version, line), (3, root));
        let got: Vec<(&str, Option<&str>, i64)> = items
            .iter()
            .map(|i| (i.key.as_str(), i.value.as_deref(), i.version))
            .collect();
        assert_eq!(got, vec![("b", Some("2"), 2), ("a", Some("3"), 3)]);
        let (_, _, none) = r.snapshot_after(Some(3)).await.unwrap();
        assert!(none.is_empty());
        let (_, _, none) = r.snapshot_after(None).await.unwrap();
        assert!(none.is_empty());
    }

    #[tokio::test]
    async fn applies_in_order_refuses_gaps_and_stale_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let r = ReplicaStore::open(&dir.path().join("replica.db"))
            .await
            .unwrap();
        let root = History::root();
        let v1 = [item("a", "1", 1)];
        assert_eq!(
            r.apply(&batch(1, 0, 1, &v1, &root), 5).await.unwrap(),
            ApplyOutcome::Applied { version: 1 }
        );
        let v3 = [item("a", "3", 3)];
        assert_eq!(
            r.apply(&batch(1, 2, 3, &v3, &root), 6).await.unwrap(),
            ApplyOutcome::Gap { version: 1 }
        );
        let v2 = [item("b", "2", 2)];
        assert_eq!(
            r.apply(&batch(2, 1, 2, &v2, &root), 7).await.unwrap(),
            ApplyOutcome::Applied { version: 2 }
        );
        assert!(matches!(
            r.apply(&batch(1, 2, 3, &v3, &root), 8).await.unwrap(),
            ApplyOutcome::Fenced { epoch: 2, .. }
        ));
        assert_eq!(r.get("a").await.unwrap().as_deref(), Some("1"));
        let state = r.state().await.unwrap();
        assert_eq!(
            (state.version, state.epoch, state.last_update_creation),
            (2, 2, 1002)
        );
        assert_eq!(r.history().await.unwrap(), root);
    }

    #[tokio::test]
    async fn a_new_term_below_what_the_replica_holds_replaces_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let r = ReplicaStore::open(&dir.path().join("replica.db"))
            .await
            .unwrap();
        let root = History::root();
        let old = [item("a", "1", 1), item("b", "lost", 2)];
        r.apply(&batch(3, 0, 2, &old, &root), 5).await.unwrap();
        // The new store took over at version 1: version 2 here never reached it.
        let term = crate::next_term_floor(3) + 1;
        let new_line = root.begin(1, 1);
        assert_eq!(
            r.apply(&batch(term, 2, 2, &[], &new_line), 6)
                .await
                .unwrap(),
            ApplyOutcome::Diverged { version: 2 }
        );
        let whole = [item("a", "1", 1), item("c", "new", 2)];
        let mut replace = batch(term, 0, 2, &whole, &new_line);
        replace.replace = true;
        assert_eq!(
            r.apply(&replace, 7).await.unwrap(),
            ApplyOutcome::Applied { version: 2 }
        );
        assert_eq!(r.get("b").await.unwrap(), None);
        assert_eq!(r.get("c").await.unwrap().as_deref(), Some("new"));
        assert_eq!(r.history().await.unwrap(), new_line);
        // The old store, back with a takeover of its own, is fenced.
        assert!(matches!(
            r.apply(&batch(4, 2, 3, &[item("b", "x", 3)], &root), 8)
                .await
                .unwrap(),
            ApplyOutcome::Fenced { .. }
        ));
        // A replica that never went past the new term's start simply follows it.
        let dir2 = tempfile::tempdir().unwrap();
        let r2 = ReplicaStore::open(&dir2.path().join("replica.db"))
            .await
            .unwrap();
        r2.apply(&batch(3, 0, 1, &old[..1], &root), 5)
            .await
            .unwrap();
        assert_eq!(
            r2.apply(&batch(term, 1, 2, &whole[1..], &new_line), 6)
                .await
                .unwrap(),
            ApplyOutcome::Applied { version: 2 }
        );
    }

    #[tokio::test]
    async fn a_replica_that_missed_two_failovers_is_checked_against_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let r = ReplicaStore::open(&dir.path().join("replica.db"))
            .await
            .unwrap();
        // Term 0: versions 1..3; version 3 never reached term 1's store (started at 2).
        let old = [item("a", "1", 1), item("b", "2", 2), item("c", "lost", 3)];
        r.apply(&batch(1, 0, 3, &old, &History::root()), 5)
            .await
            .unwrap();
        // Term 2's store started at 5; it knows term 1 started at 2.
        let epoch = (2 << crate::TERM_SHIFT) + 1;
        let known = line(&[(0, 0), (1, 2), (2, 5)]);
        assert_eq!(
            r.apply(&batch(epoch, 3, 3, &[], &known), 6).await.unwrap(),
            ApplyOutcome::Diverged { version: 3 }
        );
    }

    #[tokio::test]
    async fn a_replica_of_a_competing_term_is_off_the_line_even_below_its_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let r = ReplicaStore::open(&dir.path().join("replica.db"))
            .await
            .unwrap();
        // It followed term 1, which started at 2 and wrote 3; the line went term 0 to 2
        // and term 2 started at 5: its version 3 is not the line's version 3.
        let competing = line(&[(0, 0), (1, 2)]);
        let epoch1 = (1 << crate::TERM_SHIFT) + 1;
        r.apply(
            &batch(epoch1, 0, 3, &[item("x", "term1", 3)], &competing),
            5,
        )
        .await
        .unwrap();
        let epoch2 = (2 << crate::TERM_SHIFT) + 1;
        let the_line = line(&[(0, 0), (2, 5)]);
        assert_eq!(
            r.apply(&batch(epoch2, 3, 3, &[], &the_line), 6)
                .await
                .unwrap(),
            ApplyOutcome::Diverged { version: 3 }
        );
    }
}
