//! Users' stored data in their home pool's Back End, the change log the Backup Service
//! exports from, the backup copy of the partner pool's users, and SIP registrations.
//!
//! Every change to a user's data is written together with its change-log row in one
//! transaction, so "acknowledged to the client" and "queued for the backup pool" are the
//! same event: the Backup Service can never miss a change, and the oldest unshipped row
//! is exactly the recovery point at risk.
//!
//! The backup copy lives in its own tables, keyed by the pool it came from, so a pool's own
//! users and its partner's users never mix; importing is idempotent (a batch whose
//! sequence numbers were already applied changes nothing), which makes retries safe.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::db::{self, Conn, Db};
use crate::items::CMS;
use crate::{BackEnd, Context, Item, Result, StoreError, VersionInfo, now_ms};

/// One item of a user's data.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct UserItem {
    pub sip: String,
    pub key: String,
    pub module: String,
    pub value: String,
    pub updated_at: i64,
}

/// One change to write: `None` deletes the item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserChange {
    pub module: String,
    pub key: String,
    pub value: Option<String>,
}

/// One committed change, as the change log holds it and the Backup Service ships it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct Change {
    pub seq: i64,
    pub module: String,
    pub sip: String,
    pub key: String,
    pub value: Option<String>,
    pub committed_at: i64,
}

/// A change the Backup Service could not ship, with why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct Unshippable {
    pub module: String,
    pub seq: i64,
    pub sip: String,
    pub key: String,
    pub bytes: i64,
    pub reason: String,
    pub recorded_at: i64,
}

/// What the exporter of one module has shipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportState {
    pub module: String,
    pub target_pool: String,
    pub acked_seq: i64,
    pub last_sync_at: Option<i64>,
    pub last_error: Option<String>,
    /// A full resync of the module was asked for and has not run yet.
    pub resync: bool,
}

/// A `backup_export` row: module, target, acked, last sync, last error, resync.
type ExportRow = (String, String, i64, Option<i64>, Option<String>, i64);

/// The changes of one module not yet acknowledged by the backup pool.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Backlog {
    pub count: i64,
    pub oldest_committed_at: Option<i64>,
    pub head_seq: i64,
    /// The users the waiting changes belong to, sorted (at most [`BACKLOG_USERS_SHOWN`]).
    pub users: Vec<String>,
}

/// The most users a backlog names; the count is always complete.
pub(crate) const BACKLOG_USERS_SHOWN: i64 = 1_000;

/// How far one module of one source pool has been imported into this backup copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportState {
    pub source_pool: String,
    pub module: String,
    pub applied_seq: i64,
    pub last_import_at: i64,
}

/// One item of the backup copy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct BackupItem {
    pub sip: String,
    pub key: String,
    pub module: String,
    pub value: String,
    pub committed_at: i64,
    pub imported_at: i64,
}

/// One registered contact of a user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Binding {
    pub aor: String,
    pub contact: String,
    pub expires_at: i64,
    pub mode: String,
    pub server: String,
}

/// A `registration` row as selected: aor, contact, expires_at, mode, server.
pub(crate) type BindingRow = (String, String, i64, String, String);

impl From<BindingRow> for Binding {
    fn from((aor, contact, expires_at, mode, server): BindingRow) -> Binding {
        Binding {
            aor,
            contact,
            expires_at,
            mode,
            server,
        }
    }
}

impl BackEnd {
    /// The pool's file store (meeting content), a folder beside a SQLite database (its
    /// principal copy's, when mirrored); a PostgreSQL Back End keeps the files in its
    /// `file_blob` table instead.
    pub fn file_store(&self) -> PathBuf {
        match &self.db {
            Db::Pair(pair) => file_store_of(pair.path_of(pair.principal())),
            _ => file_store_of(Path::new(&self.path)),
        }
    }

    /// Stores `bytes` in the file store under their SHA-256, returning it. Written to a
    /// temporary name and renamed, so a crash never leaves a half file under a real name.
    /// A SQLite mirror gets the file too (or when it is rebuilt).
    pub async fn put_file(&self, bytes: &[u8]) -> Result<String> {
        let sha = hex_sha256(bytes);
        if self.db.is_postgres() {
            db::query("INSERT INTO file_blob (sha, bytes) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(&sha)
                .bind(bytes)
                .execute(&self.db)
                .await
                .at(&self.path)?;
            return Ok(sha);
        }
        write_file(&self.file_store(), &sha, bytes).await?;
        if let Db::Pair(pair) = &self.db {
            let mirror = file_store_of(pair.path_of(pair.principal().other()));
            if let Err(e) = write_file(&mirror, &sha, bytes).await {
                tracing::warn!("meeting content {sha} did not reach the Back End's mirror: {e}");
            }
        }
        Ok(sha)
    }

    /// The bytes stored under `sha`, if the file store has them.
    pub async fn get_file(&self, sha: &str) -> Option<Vec<u8>> {
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        if self.db.is_postgres() {
            let row: Option<(Vec<u8>,)> =
                db::query_as("SELECT bytes FROM file_blob WHERE sha = $1")
                    .bind(sha)
                    .fetch_optional(&self.db)
                    .await
                    .ok()?;
            return row.map(|(bytes,)| bytes);
        }
        tokio::fs::read(self.file_store().join(sha)).await.ok()
    }

    /// Every item of one user.
    pub async fn user_items(&self, sip: &str) -> Result<Vec<UserItem>> {
        db::query_as(
            "SELECT sip, key, module, value, updated_at FROM user_item WHERE sip = $1 ORDER BY key",
        )
        .bind(sip)
        .fetch_all(&self.db)
        .await
        .at(&self.path)
    }

    /// Every item of every user of this pool, optionally of one module.
    pub async fn all_user_items(&self, module: Option<&str>) -> Result<Vec<UserItem>> {
        db::query_as(
            "SELECT sip, key, module, value, updated_at FROM user_item
             WHERE $1 IS NULL OR module = $1 ORDER BY sip, key",
        )
        .bind(module)
        .fetch_all(&self.db)
        .await
        .at(&self.path)
    }

    /// Applies `changes` to one user's data and appends them to the change log, in one
    /// transaction. Returns the sequence number of the last change-log row (0 when
    /// `changes` is empty). Refused with [`StoreError::Fenced`] while the users of
    /// `home_pool` are fenced off this Back End by a failover or failback.
    pub async fn write_user(
        &self,
        home_pool: &str,
        sip: &str,
        changes: &[UserChange],
    ) -> Result<i64> {
        self.write_user_under(home_pool, sip, None, changes).await
    }

    /// [`BackEnd::write_user`], applied only while the user holds the item `parent`
    /// (a meeting's record, for its content), checked in the same transaction: a change
    /// cannot bring back what a concurrent delete of the parent removed. Refused with
    /// [`StoreError::NoParent`] otherwise.
    pub async fn write_user_under(
        &self,
        home_pool: &str,
        sip: &str,
        parent: Option<&str>,
        changes: &[UserChange],
    ) -> Result<i64> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        check_fence(&mut tx, &self.path, home_pool).await?;
        if let Some(parent) = parent {
            let (found,): (i64,) =
                db::query_as("SELECT COUNT(*) FROM user_item WHERE sip = $1 AND key = $2")
                    .bind(sip)
                    .bind(parent)
                    .fetch_one(&mut tx)
                    .await
                    .at(&self.path)?;
            if found == 0 {
                return Err(StoreError::NoParent {
                    key: parent.to_string(),
                });
            }
        }
        let mut last = 0;
        for change in changes {
            match &change.value {
                Some(value) => {
                    db::query(
                        "INSERT INTO user_item (sip, key, module, value, updated_at)
                         VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (sip, key) DO UPDATE SET module = $3, value = $4, updated_at = $5",
                    )
                    .bind(sip)
                    .bind(&change.key)
                    .bind(&change.module)
                    .bind(value)
                    .bind(now)
                    .execute(&mut tx)
                    .await
                    .at(&self.path)?;
                }
                None => {
                    db::query("DELETE FROM user_item WHERE sip = $1 AND key = $2")
                        .bind(sip)
                        .bind(&change.key)
                        .execute(&mut tx)
                        .await
                        .at(&self.path)?;
                }
            }
            let (seq,): (i64,) = db::query_as(
                "INSERT INTO change_log (module, sip, key, value, committed_at)
                 VALUES ($1, $2, $3, $4, $5) RETURNING seq",
            )
            .bind(&change.module)
            .bind(sip)
            .bind(&change.key)
            .bind(&change.value)
            .bind(now)
            .fetch_one(&mut tx)
            .await
            .at(&self.path)?;
            last = seq;
        }
        tx.commit().await.at(&self.path)?;
        Ok(last)
    }

    /// Change-log rows of `module` after `after_seq`, oldest first, at most `limit`.
    pub async fn changes_after(
        &self,
        module: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Change>> {
        db::query_as(
            "SELECT seq, module, sip, key, value, committed_at FROM change_log
             WHERE module = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(module)
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.db)
        .await
        .at(&self.path)
    }

    /// The newest change-log sequence number of `module` (0 when none).
    pub async fn change_head(&self, module: &str) -> Result<i64> {
        let (head,): (i64,) =
            db::query_as("SELECT COALESCE(MAX(seq), 0) FROM change_log WHERE module = $1")
                .bind(module)
                .fetch_one(&self.db)
                .await
                .at(&self.path)?;
        Ok(head)
    }

    /// The changes of `module` after `acked_seq`: how many, and when the oldest committed.
    pub async fn backlog(&self, module: &str, acked_seq: i64) -> Result<Backlog> {
        let (count, oldest, head): (i64, Option<i64>, i64) = db::query_as(
            "SELECT COUNT(*), MIN(committed_at),
                    (SELECT COALESCE(MAX(seq), 0) FROM change_log WHERE module = $1)
             FROM change_log WHERE module = $1 AND seq > $2",
        )
        .bind(module)
        .bind(acked_seq)
        .fetch_one(&self.db)
        .await
        .at(&self.path)?;
        let users: Vec<(String,)> = db::query_as(
            "SELECT DISTINCT sip FROM change_log WHERE module = $1 AND seq > $2
             ORDER BY sip LIMIT $3",
        )
        .bind(module)
        .bind(acked_seq)
        .bind(BACKLOG_USERS_SHOWN)
        .fetch_all(&self.db)
        .await
        .at(&self.path)?;
        Ok(Backlog {
            count,
            oldest_committed_at: oldest,
            head_seq: head,
            users: users.into_iter().map(|(u,)| u).collect(),
        })
    }

    /// The CMS versions after `acked_version`: how many, and when the oldest was created.
    pub async fn cms_backlog(&self, acked_version: i64) -> Result<Backlog> {
        let (count, oldest, head): (i64, Option<i64>, i64) = db::query_as(
            "SELECT COUNT(*), MIN(created_at),
                    (SELECT COALESCE(MAX(version), 0) FROM cms_version)
             FROM cms_version WHERE version > $1",
        )
        .bind(acked_version)
        .fetch_one(&self.db)
        .await
        .at(&self.path)?;
        Ok(Backlog {
            count,
            oldest_committed_at: oldest,
            head_seq: head,
            users: Vec::new(),
        })
    }

    pub async fn export_state(&self, module: &str) -> Result<Option<ExportState>> {
        let row: Option<ExportRow> = db::query_as(
            "SELECT module, target_pool, acked_seq, last_sync_at, last_error, resync
             FROM backup_export WHERE module = $1",
        )
        .bind(module)
        .fetch_optional(&self.db)
        .await
        .at(&self.path)?;
        Ok(row.map(
            |(module, target_pool, acked_seq, last_sync_at, last_error, resync)| ExportState {
                module,
                target_pool,
                acked_seq,
                last_sync_at,
                last_error,
                resync: resync != 0,
            },
        ))
    }

    /// Records a successful shipment (`error` None, `acked_seq` advanced) or a failed one
    /// (`error` Some, `acked_seq` unchanged).
    pub async fn record_export(
        &self,
        module: &str,
        target_pool: &str,
        acked_seq: i64,
        error: Option<&str>,
    ) -> Result<()> {
        let now = now_ms();
        db::query(
            "INSERT INTO backup_export (module, target_pool, acked_seq, last_sync_at, last_error)
             VALUES ($1, $2, $3, CASE WHEN $4 IS NULL THEN $5 END, $4)
             ON CONFLICT (module) DO UPDATE SET target_pool = $2,
                 acked_seq = CASE WHEN backup_export.acked_seq > $3 THEN backup_export.acked_seq ELSE $3 END,
                 last_sync_at = CASE WHEN $4 IS NULL THEN $5 ELSE backup_export.last_sync_at END,
                 last_error = $4",
        )
        .bind(module)
        .bind(target_pool)
        .bind(acked_seq)
        .bind(error)
        .bind(now)
        .execute(&self.db)
        .await
        .at(&self.path)?;
        Ok(())
    }

    /// Users' changes before `seq` not yet acknowledged by the partner, over every module.
    pub async fn pending_user_changes_before(&self, seq: i64) -> Result<i64> {
        let (waiting,): (i64,) = db::query_as(
            "SELECT COUNT(*) FROM change_log c LEFT JOIN backup_export e ON e.module = c.module
             WHERE c.seq < $1 AND c.seq > COALESCE(e.acked_seq, 0)",
        )
        .bind(seq)
        .fetch_one(&self.db)
        .await
        .at(&self.path)?;
        Ok(waiting)
    }

    /// Whether every change from `first` to `last` (one write) has been shipped to the
    /// partner and acknowledged: none of them is above its module's acknowledged point.
    /// Changes ship in order, so everything before them has been too.
    pub async fn shipped_through(&self, first: i64, last: i64) -> Result<bool> {
        let (waiting,): (i64,) = db::query_as(
            "SELECT COUNT(*) FROM change_log c LEFT JOIN backup_export e ON e.module = c.module
             WHERE c.seq >= $1 AND c.seq <= $2 AND c.seq > COALESCE(e.acked_seq, 0)",
        )
        .bind(first)
        .bind(last)
        .fetch_one(&self.db)
        .await
        .at(&self.path)?;
        Ok(waiting == 0)
    }

    /// Records that the change `seq` of `module` cannot be shipped (`reason`), and counts it
    /// as shipped so the changes after it go on: one item never stops the Backup Service.
    /// The record stays until a later change of the same item is shipped.
    pub async fn record_unshippable(
        &self,
        change: &Change,
        bytes: i64,
        target_pool: &str,
        reason: &str,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        db::query(
            "INSERT INTO backup_unshippable (module, seq, sip, item_key, bytes, reason, recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (module, seq) DO UPDATE SET reason = $6, recorded_at = $7",
        )
        .bind(&change.module)
        .bind(change.seq)
        .bind(&change.sip)
        .bind(&change.key)
        .bind(bytes)
        .bind(reason)
        .bind(now_ms())
        .execute(&mut tx)
        .await
        .at(&self.path)?;
        db::query(
            "INSERT INTO backup_export (module, target_pool, acked_seq, last_error)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (module) DO UPDATE SET target_pool = $2,
                 acked_seq = CASE WHEN backup_export.acked_seq > $3 THEN backup_export.acked_seq ELSE $3 END, last_error = $4",
        )
        .bind(&change.module)
        .bind(target_pool)
        .bind(change.seq)
        .bind(reason)
        .execute(&mut tx)
        .await
        .at(&self.path)?;
        tx.commit().await.at(&self.path)?;
        Ok(())
    }

    /// The changes of `module` that could not be shipped and were not written again since,
    /// oldest first.
    pub async fn unshippable(&self, module: &str) -> Result<Vec<Unshippable>> {
        db::query_as(
            "SELECT u.module, u.seq, u.sip, u.item_key AS key, u.bytes, u.reason, u.recorded_at
             FROM backup_unshippable u
             WHERE u.module = $1 AND NOT EXISTS (
                 SELECT 1 FROM change_log c
                 WHERE c.module = u.module AND c.sip = u.sip AND c.key = u.item_key AND c.seq > u.seq)
             ORDER BY u.seq",
        )
        .bind(module)
        .fetch_all(&self.db)
        .await
        .at(&self.path)
    }

    /// Asks the active exporter for a full resync of `module` (Invoke-CsBackupServiceSync).
    pub async fn request_resync(&self, module: &str, target_pool: &str) -> Result<()> {
        db::query(
            "INSERT INTO backup_export (module, target_pool, acked_seq, resync) VALUES ($1, $2, 0, 1)
             ON CONFLICT (module) DO UPDATE SET resync = 1",
        )
        .bind(module)
        .bind(target_pool)
        .execute(&self.db)
        .await
        .at(&self.path)?;
        Ok(())
    }

    /// Records a finished full resync: the partner holds everything through `through_seq`
    /// and nothing after it, so shipping restarts exactly there.
    pub async fn complete_resync(
        &self,
        module: &str,
        target_pool: &str,
        through_seq: i64,
    ) -> Result<()> {
        db::query(
            "UPDATE backup_export SET target_pool = $2, acked_seq = $3, last_sync_at = $4,
                 last_error = NULL, resync = 0
             WHERE module = $1",
        )
        .bind(module)
        .bind(target_pool)
        .bind(through_seq)
        .bind(now_ms())
        .execute(&self.db)
        .await
        .at(&self.path)?;
        Ok(())
    }

    /// Takes or renews the Backup Service lease for `holder`: true when it holds it.
    pub async fn acquire_backup_lease(&self, holder: &str, ttl_ms: i64) -> Result<bool> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let current: Option<(String, i64)> =
            db::query_as("SELECT holder, expires_at FROM backup_lease WHERE id = 1")
                .fetch_optional(&mut tx)
                .await
                .at(&self.path)?;
        if let Some((other, expires_at)) = current
            && other != holder
            && expires_at > now
        {
            return Ok(false);
        }
        db::query(
            "INSERT INTO backup_lease (id, holder, expires_at) VALUES (1, $1, $2)
             ON CONFLICT (id) DO UPDATE SET holder = $1, expires_at = $2",
        )
        .bind(holder)
        .bind(now + ttl_ms)
        .execute(&mut tx)
        .await
        .at(&self.path)?;
        tx.commit().await.at(&self.path)?;
        Ok(true)
    }

    pub async fn release_backup_lease(&self, holder: &str) -> Result<()> {
        db::query("UPDATE backup_lease SET expires_at = 0 WHERE holder = $1")
            .bind(holder)
            .execute(&self.db)
            .await
            .at(&self.path)?;
        Ok(())
    }

    /// The current holder of the Backup Service lease, if unexpired.
    pub async fn backup_lease_holder(&self) -> Result<Option<String>> {
        let row: Option<(String,)> =
            db::query_as("SELECT holder FROM backup_lease WHERE id = 1 AND expires_at > $1")
                .bind(now_ms())
                .fetch_optional(&self.db)
                .await
                .at(&self.path)?;
        Ok(row.map(|(h,)| h))
    }

    /// Applies shipped changes of `source_pool` to the backup copy, skipping any already
    /// applied. Returns the sequence number applied through.
    pub async fn import_changes(
        &self,
        source_pool: &str,
        module: &str,
        changes: &[Change],
    ) -> Result<i64> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let applied = import_seq_in(&mut tx, &self.path, source_pool, module).await?;
        let mut through = applied;
        for change in changes.iter().filter(|c| c.seq > applied) {
            match &change.value {
                Some(value) => {
                    db::query(
                        "INSERT INTO backup_item
                             (source_pool, sip, key, module, value, committed_at, imported_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)
                         ON CONFLICT (source_pool, sip, key) DO UPDATE SET module = $4,
                             value = $5, committed_at = $6, imported_at = $7",
                    )
                    .bind(source_pool)
                    .bind(&change.sip)
                    .bind(&change.key)
                    .bind(&change.module)
                    .bind(value)
                    .bind(change.committed_at)
                    .bind(now)
                    .execute(&mut tx)
                    .await
                    .at(&self.path)?;
                }
                None => {
                    db::query(
                        "DELETE FROM backup_item WHERE source_pool = $1 AND sip = $2 AND key = $3",
                    )
                    .bind(source_pool)
                    .bind(&change.sip)
                    .bind(&change.key)
                    .execute(&mut tx)
                    .await
                    .at(&self.path)?;
                }
            }
            through = through.max(change.seq);
        }
        set_import_seq(&mut tx, &self.path, source_pool, module, through, now).await?;
        tx.commit().await.at(&self.path)?;
        Ok(through)
    }

    /// Stages part `part` of the full resync `resync` of `source_pool`'s `module`. Part 0
    /// starts a new resync (dropping any earlier one cut short); any other part must follow
    /// the last one staged for the same resync. With `through_seq`, this was the last part:
    /// the staged content replaces the module's backup copy in one transaction and the copy
    /// counts as current through that sequence number.
    pub async fn stage_backup_part(
        &self,
        source_pool: &str,
        module: &str,
        resync: &str,
        part: i64,
        items: &[UserItem],
        through_seq: Option<i64>,
    ) -> Result<()> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        if part == 0 {
            clear_staging(&mut tx, &self.path, source_pool, module).await?;
        } else {
            let head: Option<(String, i64)> = db::query_as(
                "SELECT resync, next_part FROM backup_staging_head
                 WHERE source_pool = $1 AND module = $2",
            )
            .bind(source_pool)
            .bind(module)
            .fetch_optional(&mut tx)
            .await
            .at(&self.path)?;
            let expected = match head {
                Some((r, next)) if r == resync => next,
                _ => 0,
            };
            if expected != part {
                return Err(StoreError::StagingOutOfOrder {
                    resync: resync.to_string(),
                    expected,
                    got: part,
                });
            }
        }
        db::query(
            "INSERT INTO backup_staging_head (source_pool, module, resync, next_part)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (source_pool, module) DO UPDATE SET resync = $3, next_part = $4",
        )
        .bind(source_pool)
        .bind(module)
        .bind(resync)
        .bind(part + 1)
        .execute(&mut tx)
        .await
        .at(&self.path)?;
        for item in items {
            db::query(
                "INSERT INTO backup_staging (source_pool, module, sip, key, value, committed_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (source_pool, module, sip, key)
                 DO UPDATE SET value = $5, committed_at = $6",
            )
            .bind(source_pool)
            .bind(module)
            .bind(&item.sip)
            .bind(&item.key)
            .bind(&item.value)
            .bind(item.updated_at)
            .execute(&mut tx)
            .await
            .at(&self.path)?;
        }
        if let Some(through_seq) = through_seq {
            db::query("DELETE FROM backup_item WHERE source_pool = $1 AND module = $2")
                .bind(source_pool)
                .bind(module)
                .execute(&mut tx)
                .await
                .at(&self.path)?;
            db::query(
                "INSERT INTO backup_item
                     (source_pool, sip, key, module, value, committed_at, imported_at)
                 SELECT source_pool, sip, key, module, value, committed_at, $3
                 FROM backup_staging WHERE source_pool = $1 AND module = $2",
            )
            .bind(source_pool)
            .bind(module)
            .bind(now)
            .execute(&mut tx)
            .await
            .at(&self.path)?;
            clear_staging(&mut tx, &self.path, source_pool, module).await?;
            set_import_seq(&mut tx, &self.path, source_pool, module, through_seq, now).await?;
        }
        tx.commit().await.at(&self.path)?;
        Ok(())
    }

    pub async fn import_state(&self, source_pool: &str, module: &str) -> Result<ImportState> {
        let row: Option<(i64, i64)> = db::query_as(
            "SELECT applied_seq, last_import_at FROM backup_import
             WHERE source_pool = $1 AND module = $2",
        )
        .bind(source_pool)
        .bind(module)
        .fetch_optional(&self.db)
        .await
        .at(&self.path)?;
        let (applied_seq, last_import_at) = row.unwrap_or((0, 0));
        Ok(ImportState {
            source_pool: source_pool.to_string(),
            module: module.to_string(),
            applied_seq,
            last_import_at,
        })
    }

    /// The backup copy of `source_pool`'s users, optionally of one module or one user.
    pub async fn backup_items(
        &self,
        source_pool: &str,
        module: Option<&str>,
        sip: Option<&str>,
    ) -> Result<Vec<BackupItem>> {
        db::query_as(
            "SELECT sip, key, module, value, committed_at, imported_at FROM backup_item
             WHERE source_pool = $1 AND ($2 IS NULL OR module = $2) AND ($3 IS NULL OR sip = $3)
             ORDER BY sip, key",
        )
        .bind(source_pool)
        .bind(module)
        .bind(sip)
        .fetch_all(&self.db)
        .await
        .at(&self.path)
    }

    /// The unexpired bindings of `aor`.
    pub async fn bindings(&self, aor: &str) -> Result<Vec<Binding>> {
        let rows: Vec<BindingRow> = db::query_as(
            "SELECT aor, contact, expires_at, mode, server FROM registration
             WHERE aor = $1 AND expires_at > $2 ORDER BY contact",
        )
        .bind(aor)
        .bind(now_ms())
        .fetch_all(&self.db)
        .await
        .at(&self.path)?;
        Ok(rows.into_iter().map(Binding::from).collect())
    }

    /// Versions of the CMS after `version`, oldest first, at most `limit` (what the
    /// Backup Service's CentralMgmt.CMSMaster module ships to the standby).
    pub async fn versions_after(&self, version: i64, limit: i64) -> Result<Vec<VersionInfo>> {
        db::query_as(
            "SELECT version, epoch, created_at, description FROM cms_version
             WHERE version > $1 ORDER BY version LIMIT $2",
        )
        .bind(version)
        .bind(limit)
        .fetch_all(&self.db)
        .await
        .at(&self.path)
    }

    /// Applies CMS versions shipped from the active store, whose line is `line`, to this
    /// standby copy: `versions` are the sender's consecutive versions after `after`.
    ///
    /// A copy off the line is first cut back (what it held beyond the fork is recorded
    /// as lost, once) and rebuilt from scratch. Versions already held are skipped, and the
    /// import stops where the batch does not continue what is held (the sender then
    /// resends from the version returned: the newest held afterwards). Refused unless this
    /// copy is a standby: an active store is never overwritten by another.
    pub async fn import_cms_versions(
        &self,
        line: &crate::History,
        after: i64,
        versions: &[(VersionInfo, Vec<Item>)],
    ) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        must_be_standby(&mut tx, &self.path).await?;
        let mut have = crate::cmstables::current_version_in(&mut tx, &self.path).await?;
        let mine = crate::cmstables::history_in(&mut tx, &self.path).await?;
        if let crate::Standing::OffLine { fork } = crate::history::standing(&mine, have, line) {
            let lost =
                crate::cmstables::cut_after(&mut tx, &self.path, fork, line.last_term(), now_ms())
                    .await?;
            tracing::warn!(
                path = %self.path,
                fork,
                lost = lost.len(),
                "the standby Central Management store held versions the active store's line never had; rebuilding it"
            );
            have = 0;
        }
        crate::cmstables::set_history_in(&mut tx, &self.path, line).await?;
        let mut previous = after;
        for (info, items) in versions {
            if info.version <= have {
                previous = info.version;
                continue;
            }
            if previous != have {
                break;
            }
            insert_cms_version(&mut tx, &self.path, info, items).await?;
            have = info.version;
            previous = have;
        }
        tx.commit().await.at(&self.path)?;
        Ok(have)
    }

    /// Catches this standby up with versions a server's replica holds beyond it (a
    /// disaster failover taking the newest configuration any survivor has): `items` are
    /// the replica's items written after this copy's newest version, up to `to_version`,
    /// which was created at `to_created_at` under a master of `epoch`, on the replica's
    /// line `line` (which extends this copy's). Each version between gets the items the
    /// replica still holds of it (a value overwritten later arrives with the later
    /// version). Returns the newest version held afterwards.
    #[allow(clippy::too_many_arguments)]
    pub async fn catch_up_cms(
        &self,
        source: &str,
        line: &crate::History,
        epoch: i64,
        to_version: i64,
        to_created_at: i64,
        items: &[Item],
    ) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        must_be_standby(&mut tx, &self.path).await?;
        let have = crate::cmstables::current_version_in(&mut tx, &self.path).await?;
        if to_version > have {
            crate::cmstables::set_history_in(&mut tx, &self.path, line).await?;
        }
        let now = now_ms();
        for version in (have + 1)..=to_version {
            let info = VersionInfo {
                version,
                epoch,
                created_at: if version == to_version {
                    to_created_at
                } else {
                    now
                },
                description: format!("recovered from the replica of {source}"),
            };
            let of_version: Vec<Item> = items
                .iter()
                .filter(|i| i.version == version)
                .cloned()
                .collect();
            insert_cms_version(&mut tx, &self.path, &info, &of_version).await?;
        }
        tx.commit().await.at(&self.path)?;
        Ok(have.max(to_version))
    }
}

/// Refuses to change a copy that is not a standby: an active store is never overwritten.
async fn must_be_standby(conn: &mut Conn, path: &str) -> Result<()> {
    let role = crate::cmstables::role_in(conn, path).await?;
    if role.mode != crate::cmstables::CmsMode::Backup {
        return Err(StoreError::CmsNotStandby {
            path: path.to_string(),
            mode: role.mode.as_str(),
        });
    }
    Ok(())
}

async fn insert_cms_version(
    conn: &mut Conn,
    path: &str,
    info: &VersionInfo,
    items: &[Item],
) -> Result<()> {
    db::query(
        "INSERT INTO cms_version (version, epoch, created_at, description) VALUES ($1, $2, $3, $4)",
    )
    .bind(info.version)
    .bind(info.epoch)
    .bind(info.created_at)
    .bind(&info.description)
    .execute(&mut *conn)
    .await
    .at(path)?;
    for item in items {
        CMS.upsert(conn, path, &item.key, item.value.as_deref(), info.version)
            .await?;
    }
    Ok(())
}

async fn import_seq_in(
    conn: &mut Conn,
    path: &str,
    source_pool: &str,
    module: &str,
) -> Result<i64> {
    let row: Option<(i64,)> = db::query_as(
        "SELECT applied_seq FROM backup_import WHERE source_pool = $1 AND module = $2",
    )
    .bind(source_pool)
    .bind(module)
    .fetch_optional(&mut *conn)
    .await
    .at(path)?;
    Ok(row.map_or(0, |(s,)| s))
}

/// Drops the staged parts of `source_pool`'s `module` (a resync starting again or landed).
async fn clear_staging(conn: &mut Conn, path: &str, source_pool: &str, module: &str) -> Result<()> {
    for sql in [
        "DELETE FROM backup_staging WHERE source_pool = $1 AND module = $2",
        "DELETE FROM backup_staging_head WHERE source_pool = $1 AND module = $2",
    ] {
        db::query(sql)
            .bind(source_pool)
            .bind(module)
            .execute(&mut *conn)
            .await
            .at(path)?;
    }
    Ok(())
}

async fn set_import_seq(
    conn: &mut Conn,
    path: &str,
    source_pool: &str,
    module: &str,
    applied_seq: i64,
    now: i64,
) -> Result<()> {
    db::query(
        "INSERT INTO backup_import (source_pool, module, applied_seq, last_import_at)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (source_pool, module) DO UPDATE SET applied_seq = $3, last_import_at = $4",
    )
    .bind(source_pool)
    .bind(module)
    .bind(applied_seq)
    .bind(now)
    .execute(&mut *conn)
    .await
    .at(path)?;
    Ok(())
}

/// The file store of the SQLite database at `db`: a folder beside it.
pub(crate) fn file_store_of(db: &Path) -> PathBuf {
    let path = db.display().to_string();
    PathBuf::from(format!("{}.files", path.trim_end_matches(".db")))
}

/// Writes one content file into `dir` under `sha`, by a temporary name and a rename.
async fn write_file(dir: &Path, sha: &str, bytes: &[u8]) -> Result<()> {
    let target = dir.join(sha);
    if tokio::fs::try_exists(&target).await.unwrap_or(false) {
        return Ok(());
    }
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    let tmp = dir.join(format!("{sha}.tmp{}", std::process::id()));
    let io = |source| StoreError::CreateDir {
        path: target.clone(),
        source,
    };
    tokio::fs::write(&tmp, bytes).await.map_err(io)?;
    tokio::fs::rename(&tmp, &target).await.map_err(io)?;
    Ok(())
}

/// Lower-case hex SHA-256 of `bytes`: the name of a file in the file store, and the
/// checksum the replication check compares.
pub fn hex_sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Refuses a write of `home_pool`'s users while a failover fences them (see
/// `crate::failover`): checked inside every user write's transaction.
pub(crate) async fn check_fence(tx: &mut Conn, path: &str, home_pool: &str) -> Result<()> {
    let reason: Option<(String,)> =
        db::query_as("SELECT reason FROM dr_fence WHERE home_pool = $1")
            .bind(home_pool.to_ascii_lowercase())
            .fetch_optional(&mut *tx)
            .await
            .at(path)?;
    match reason {
        Some((reason,)) => Err(StoreError::Fenced {
            home_pool: home_pool.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(module: &str, key: &str, value: Option<&str>) -> UserChange {
        UserChange {
            module: module.into(),
            key: key.into(),
            value: value.map(str::to_string),
        }
    }

    crate::each_backend! {
        async fn writes_are_logged_and_imports_are_idempotent(db) {
            let primary = db.open("p1").await;
            let backup = db.open("p2").await;
            let alice = "sip:alice@contoso.com";
            primary
                .write_user(
                    "pool1.contoso.com",
                    alice,
                    &[change("PresenceFocus", "contacts/bob", Some("{}"))],
                )
                .await
                .unwrap();
            let last = primary
                .write_user(
                    "pool1.contoso.com",
                    alice,
                    &[
                        change("PresenceFocus", "settings/note", Some("\"hi\"")),
                        change("PresenceFocus", "contacts/bob", None),
                    ],
                )
                .await
                .unwrap();
            assert_eq!(last, 3);
            assert_eq!(primary.user_items(alice).await.unwrap().len(), 1);
            let backlog = primary.backlog("PresenceFocus", 0).await.unwrap();
            assert_eq!((backlog.count, backlog.head_seq), (3, 3));

            let changes = primary
                .changes_after("PresenceFocus", 0, 100)
                .await
                .unwrap();
            assert_eq!(
                backup
                    .import_changes("pool1", "PresenceFocus", &changes[..2])
                    .await
                    .unwrap(),
                2
            );
            assert_eq!(
                backup
                    .backup_items("pool1", None, None)
                    .await
                    .unwrap()
                    .len(),
                2
            );
            // A retry of everything applies only what is new.
            assert_eq!(
                backup
                    .import_changes("pool1", "PresenceFocus", &changes)
                    .await
                    .unwrap(),
                3
            );
            let copy = backup
                .backup_items("pool1", None, Some(alice))
                .await
                .unwrap();
            assert_eq!(copy.len(), 1);
            assert_eq!(copy[0].key, "settings/note");
            // The backup copy is apart from the pool's own users.
            assert!(backup.all_user_items(None).await.unwrap().is_empty());
        }
    }

    crate::each_backend! {
        async fn a_write_under_a_parent_needs_the_parent_and_logs_nothing_without_it(db) {
            let be = db.open("p1").await;
            let alice = "sip:alice@contoso.com";
            let pool = "pool1.contoso.com";
            let deck = [change("DataConf", "content/m1/deck", Some("{}"))];
            let refused = be.write_user_under(pool, alice, Some("meetings/m1"), &deck).await;
            assert!(
                matches!(&refused, Err(StoreError::NoParent { key }) if key == "meetings/m1"),
                "{refused:?}"
            );
            assert!(be.user_items(alice).await.unwrap().is_empty());
            assert_eq!(be.backlog("DataConf", 0).await.unwrap().count, 0);

            be.write_user(pool, alice, &[change("PresenceFocus", "meetings/m1", Some("{}"))])
                .await
                .unwrap();
            be.write_user_under(pool, alice, Some("meetings/m1"), &deck)
                .await
                .unwrap();
            let keys: Vec<String> =
                be.user_items(alice).await.unwrap().into_iter().map(|i| i.key).collect();
            assert_eq!(keys, ["content/m1/deck", "meetings/m1"]);
        }
    }

    crate::each_backend! {
        async fn one_backup_lease_holder_at_a_time(db) {
            let be = db.open("p1").await;
            assert!(be.acquire_backup_lease("fe1", 3000).await.unwrap());
            assert!(!be.acquire_backup_lease("fe2", 3000).await.unwrap());
            be.release_backup_lease("fe1").await.unwrap();
            assert!(be.acquire_backup_lease("fe2", 3000).await.unwrap());
            assert_eq!(
                be.backup_lease_holder().await.unwrap().as_deref(),
                Some("fe2")
            );
        }
    }

    crate::each_backend! {
        async fn files_are_content_addressed(db) {
            let be = db.open("p1").await;
            let sha = be.put_file(b"slides").await.unwrap();
            assert_eq!(be.get_file(&sha).await.unwrap(), b"slides");
            assert!(be.get_file("../p1.db").await.is_none());
        }
    }

    fn item(sip: &str, key: &str, value: &str) -> UserItem {
        UserItem {
            sip: sip.into(),
            key: key.into(),
            module: "PresenceFocus".into(),
            value: value.into(),
            updated_at: 1,
        }
    }

    crate::each_backend! {
        async fn a_full_resync_replaces_the_copy_only_when_its_last_part_arrives(db) {
            let be = db.open("b").await;
            let (pool, module) = ("pool1.contoso.com", "PresenceFocus");
            let copy = |be: &BackEnd| {
                let be = be.clone();
                async move {
                    be.backup_items(pool, Some(module), None)
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|i| i.key)
                        .collect::<Vec<_>>()
                }
            };
            be.stage_backup_part(
                pool,
                module,
                "r1",
                0,
                &[item("sip:a@x", "old", "1")],
                Some(5),
            )
            .await
            .unwrap();
            assert_eq!(copy(&be).await, ["old"]);

            // A resync cut short after its first part leaves the copy as it was.
            be.stage_backup_part(pool, module, "r2", 0, &[item("sip:a@x", "k1", "1")], None)
                .await
                .unwrap();
            assert_eq!(copy(&be).await, ["old"]);
            // A part out of order is refused, and so is a part of another resync.
            let skipped = be
                .stage_backup_part(pool, module, "r2", 2, &[], Some(9))
                .await
                .unwrap_err();
            assert!(matches!(
                skipped,
                StoreError::StagingOutOfOrder {
                    expected: 1,
                    got: 2,
                    ..
                }
            ));
            assert!(
                be.stage_backup_part(pool, module, "r3", 1, &[], Some(9))
                    .await
                    .is_err()
            );
            assert_eq!(copy(&be).await, ["old"]);

            // The next resync starts again at part 0 and lands whole.
            be.stage_backup_part(pool, module, "r4", 0, &[item("sip:a@x", "k1", "1")], None)
                .await
                .unwrap();
            be.stage_backup_part(
                pool,
                module,
                "r4",
                1,
                &[item("sip:b@x", "k2", "2")],
                Some(9),
            )
            .await
            .unwrap();
            assert_eq!(copy(&be).await, ["k1", "k2"]);
            assert_eq!(be.import_state(pool, module).await.unwrap().applied_seq, 9);
        }
    }
}
