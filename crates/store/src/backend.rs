//! A Front End pool's Back End database, and the Central Management store inside it.
//!
//! The CMS is a set of items; every write creates a new version and stamps the items it
//! changed with it, so a replica at version `v` catches up with exactly the items written
//! after `v` — a one-line change costs one row however large the configuration is.
//!
//! One writer, enforced here rather than trusted: a write runs in an immediate (write-
//! locked) transaction that first checks the caller still holds an unexpired master lease
//! with the epoch it claims. A master that lost its lease (paused, partitioned, replaced)
//! is refused even if it does not know yet.

use std::path::Path;

use crate::cmstables::{Claim, Lease, VersionInfo, claim, insert_version, lease_in};
use crate::db::{self, Conn, Db};
use crate::items::CMS;
use crate::{Context, Item, Result, migrate, now_ms, open_sqlite, sqlite_path};

/// Who holds the master's lease, in words.
fn lease_holder(holder: &Option<String>, epoch: i64) -> String {
    match holder {
        Some(h) => format!("the lease is held by {h} with epoch {epoch}"),
        None => format!("no server holds the lease; the last epoch is {epoch}"),
    }
}

/// Why the CMS refused a write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteRefused {
    #[error(
        "this server is not the active Central Management master ({})",
        lease_holder(.holder, *.epoch)
    )]
    NotMaster { holder: Option<String>, epoch: i64 },
    #[error(
        "###50020:XDSForceReplication: This central management store is being moved to another location. No changes can be made until this move is complete (moving to {to_pool}; Invoke-CsManagementServerFailover -Restore on a Front End of {to_pool} cancels the move)"
    )]
    Moving { to_pool: String },
}

/// What the master last heard from one replica.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReplicaStatusRow {
    pub fqdn: String,
    pub version: i64,
    pub last_status_report: i64,
    pub product_version: String,
}

/// Opens a store, trying again for up to 10 s while the failure is one that passes: the
/// Front Ends of a pool start together and open one new SQLite file (while one turns it to
/// WAL, another is told "locked"), and a server can start before its PostgreSQL does.
async fn retrying_while_transient<T, F, Fut>(mut open: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let started = std::time::Instant::now();
    let mut backoff = clock::Backoff::polling();
    loop {
        match open().await {
            Err(e)
                if e.is_transient() && started.elapsed() < std::time::Duration::from_secs(10) =>
            {
                tokio::time::sleep(backoff.next_wait()).await;
            }
            other => return other,
        }
    }
}

/// A pool's Back End database.
#[derive(Debug, Clone)]
pub struct BackEnd {
    pub(crate) db: Db,
    pub(crate) path: String,
}

impl BackEnd {
    /// Opens the Back End at `url` (from the topology: `sqlite://` with relative paths
    /// taken from `root`, or `postgres://`), creating its schema and applying migrations as
    /// needed.
    pub async fn open(url: &str, root: &Path) -> Result<BackEnd> {
        if crate::is_postgres_url(url) {
            return BackEnd::open_postgres(url).await;
        }
        let file = sqlite_path(url, root)?;
        let path = file.display().to_string();
        let db = retrying_while_transient(|| async {
            let pool = open_sqlite(&file).await?;
            migrate::run(&pool, &path, &migrate::BACKEND).await?;
            Ok(pool)
        })
        .await?;
        Ok(BackEnd { db, path })
    }

    /// A PostgreSQL Back End. Its password, when the URL has none, comes from the file
    /// `PGPASSFILE` names (or `~/.pgpass`), so that no secret has to be in the topology.
    async fn open_postgres(url: &str) -> Result<BackEnd> {
        let path = crate::redacted_url(url);
        let db = retrying_while_transient(|| async {
            let db = crate::open_postgres(url, &path).await?;
            migrate::run(&db, &path, &migrate::BACKEND).await?;
            Ok(db)
        })
        .await?;
        Ok(BackEnd { db, path })
    }

    /// Opens a Back End and, when the topology gives it one, its mirror (see
    /// [`crate::mirror`]): a SQLite Back End keeps its mirror itself; a PostgreSQL one's is
    /// its streaming standby, and this follows whichever copy is principal.
    pub async fn open_mirrored(url: &str, mirror: Option<&str>, root: &Path) -> Result<BackEnd> {
        let Some(mirror) = mirror else {
            return BackEnd::open(url, root).await;
        };
        match (crate::is_postgres_url(url), crate::is_postgres_url(mirror)) {
            (true, true) => {
                let pair =
                    retrying_while_transient(|| crate::db::PgPair::open(url, mirror)).await?;
                return Ok(BackEnd {
                    db: Db::PgPair(std::sync::Arc::new(pair)),
                    path: format!(
                        "{} (mirrored in {})",
                        crate::redacted_url(url),
                        crate::redacted_url(mirror)
                    ),
                });
            }
            (false, false) => {}
            _ => {
                return Err(crate::StoreError::UnsupportedUrl(format!(
                    "{} with the mirror {}: a Back End and its mirror are both SQLite or both PostgreSQL",
                    crate::redacted_url(url),
                    crate::redacted_url(mirror)
                )));
            }
        }
        let (primary, mirror) = (sqlite_path(url, root)?, sqlite_path(mirror, root)?);
        let path = format!("{} (mirrored in {})", primary.display(), mirror.display());
        let pair =
            retrying_while_transient(|| crate::mirror::Pair::open(&primary, &mirror)).await?;
        Ok(BackEnd {
            db: Db::Pair(std::sync::Arc::new(pair)),
            path,
        })
    }

    /// The mirror's state, or `None` when this Back End has no mirror tandem keeps.
    pub async fn mirror_state(&self) -> Result<Option<crate::MirrorState>> {
        match &self.db {
            Db::Pair(pair) => pair.state().await.map(Some),
            Db::PgPair(pair) => pair.state().await.map(Some),
            _ => Ok(None),
        }
    }

    /// Makes `to` the principal copy (`Invoke-CsDatabaseFailover`); see
    /// [`crate::mirror`] for what a planned and a forced failover do.
    pub async fn fail_over_database(
        &self,
        to: crate::Copy,
        force: bool,
    ) -> Result<crate::DatabaseFailover> {
        match &self.db {
            Db::Pair(pair) => pair.fail_over(to, force).await,
            Db::PgPair(pair) => pair.fail_over(to, force).await,
            _ => Err(crate::StoreError::Refused(format!(
                "{} has no mirror to fail over to",
                self.path
            ))),
        }
    }

    /// A write transaction on this Back End, counted in its `backend_principal` row so
    /// that a mirror that missed it can tell and a forced failover can count what it lost
    /// (see [`crate::mirror`]). A mirrored Back End (either kind of pair) counts it itself,
    /// in its own write transaction, so that a statement run outside one is counted too.
    ///
    /// A mirror that is behind is rebuilt first (under the principal's write lock), so that
    /// this transaction reaches both copies again.
    pub(crate) async fn begin_write(&self) -> Result<Conn> {
        if let Db::Pair(pair) = &self.db
            && pair.behind.load(std::sync::atomic::Ordering::SeqCst)
            && let Err(e) = pair.rebuild_mirror().await
        {
            tracing::warn!("rebuilding the Back End's mirror failed: {e}");
        }
        let mut tx = crate::begin_write(&self.db, &self.path).await?;
        if let Db::Sqlite(_) | Db::Pg(_) = &self.db {
            db::query(db::COUNT_WRITE)
                .execute(&mut tx)
                .await
                .at(&self.path)?;
        }
        Ok(tx)
    }

    /// Whether this Back End is a PostgreSQL database (rather than a SQLite file).
    pub fn is_postgres(&self) -> bool {
        self.db.is_postgres()
    }

    /// Where the Back End is, for messages: a file's path, or a URL without its password.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Writes the first version of the CMS if the store is empty (installing the CMS).
    /// Returns false, changing nothing, when the store already has a configuration.
    pub async fn bootstrap(
        &self,
        items: &[(String, Option<String>)],
        description: &str,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let (count,): (i64,) = db::query_as("SELECT COUNT(*) FROM cms_version")
            .fetch_one(&mut tx)
            .await
            .at(&self.path)?;
        if count > 0 {
            return Ok(false);
        }
        insert_version(&mut tx, &self.path, 1, 0, items, description).await?;
        crate::cmstables::set_role_in(
            &mut tx,
            &self.path,
            &crate::cmstables::CmsRole {
                mode: crate::cmstables::CmsMode::Active,
                epoch_floor: 0,
                term_start: 0,
                shared_through: 0,
                other_pool: String::new(),
                changed_at: now_ms(),
                reason: "installed".into(),
            },
        )
        .await?;
        tx.commit().await.at(&self.path)?;
        Ok(true)
    }

    /// Takes or renews the master lease for `holder`. Returns the lease as it stands
    /// afterwards and whether `holder` has it. Taking over an expired lease bumps the
    /// epoch, which fences the previous master. A standby store (see [`crate::cmsrole`])
    /// gives no lease.
    pub async fn acquire_lease(
        &self,
        holder: &str,
        ttl_ms: i64,
        now: i64,
    ) -> Result<(bool, Lease)> {
        let mut tx = self.begin_write().await?;
        let current = lease_in(&mut tx, &self.path).await?;
        let role = crate::cmstables::role_in(&mut tx, &self.path).await?;
        if role.mode == crate::cmstables::CmsMode::Backup {
            return Ok((
                false,
                current.filter(|l| l.expires_at > now).unwrap_or(Lease {
                    holder: String::new(),
                    epoch: 0,
                    acquired_at: 0,
                    renewed_at: 0,
                    expires_at: 0,
                }),
            ));
        }
        let lease = match claim(current.as_ref(), holder, now, ttl_ms) {
            Claim::HeldByAnother(l) => return Ok((false, l)),
            Claim::Renewed(l) => l,
            Claim::New => {
                // Above every epoch the store knows: the lease's, its versions', its floor.
                let epoch = crate::cmstables::max_epoch_in(&mut tx, &self.path).await? + 1;
                Lease::new(holder, epoch, now, ttl_ms)
            }
        };
        db::query(
            "INSERT INTO cms_master_lease (id, holder, epoch, acquired_at, renewed_at, expires_at)
             VALUES (1, $1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET holder = $1, epoch = $2, acquired_at = $3,
                 renewed_at = $4, expires_at = $5",
        )
        .bind(&lease.holder)
        .bind(lease.epoch)
        .bind(lease.acquired_at)
        .bind(lease.renewed_at)
        .bind(lease.expires_at)
        .execute(&mut tx)
        .await
        .at(&self.path)?;
        tx.commit().await.at(&self.path)?;
        Ok((true, lease))
    }

    /// Gives the lease up at once (graceful shutdown, MASTER service stopped), so that
    /// another Front End takes over without waiting for it to expire.
    pub async fn release_lease(&self, holder: &str, now: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        db::query("UPDATE cms_master_lease SET expires_at = $1 WHERE holder = $2")
            .bind(now)
            .bind(holder)
            .execute(&mut tx)
            .await
            .at(&self.path)?;
        tx.commit().await.at(&self.path)
    }

    pub async fn lease(&self) -> Result<Option<Lease>> {
        let mut conn = self.db.acquire().await.at(&self.path)?;
        lease_in(&mut conn, &self.path).await
    }

    /// Writes `changes` (key, new value or `None` to delete) as one new version, if
    /// `holder` still holds the lease with `epoch`.
    pub async fn write(
        &self,
        holder: &str,
        epoch: i64,
        changes: &[(String, Option<String>)],
        description: &str,
    ) -> Result<Result<VersionInfo, WriteRefused>> {
        let mut tx = self.begin_write().await?;
        let lease = lease_in(&mut tx, &self.path).await?;
        match &lease {
            Some(l) if l.holder == holder && l.epoch == epoch && l.expires_at > now_ms() => {}
            other => {
                return Ok(Err(WriteRefused::NotMaster {
                    holder: other.as_ref().map(|l| l.holder.clone()),
                    epoch: other.as_ref().map_or(0, |l| l.epoch),
                }));
            }
        }
        let role = crate::cmstables::role_in(&mut tx, &self.path).await?;
        match role.mode {
            crate::cmstables::CmsMode::Active => {}
            crate::cmstables::CmsMode::Moving => {
                return Ok(Err(WriteRefused::Moving {
                    to_pool: role.other_pool,
                }));
            }
            crate::cmstables::CmsMode::Backup => {
                return Ok(Err(WriteRefused::NotMaster {
                    holder: None,
                    epoch: role.epoch_floor,
                }));
            }
        }
        let last = crate::cmstables::current_version_in(&mut tx, &self.path).await?;
        let info =
            insert_version(&mut tx, &self.path, last + 1, epoch, changes, description).await?;
        tx.commit().await.at(&self.path)?;
        Ok(Ok(info))
    }

    /// The newest version.
    pub async fn current_version(&self) -> Result<Option<VersionInfo>> {
        let row: Option<VersionInfo> = db::query_as(
            "SELECT version, epoch, created_at, description FROM cms_version
             ORDER BY version DESC LIMIT 1",
        )
        .fetch_optional(&self.db)
        .await
        .at(&self.path)?;
        Ok(row)
    }

    pub async fn version(&self, version: i64) -> Result<Option<VersionInfo>> {
        let row: Option<VersionInfo> = db::query_as(
            "SELECT version, epoch, created_at, description FROM cms_version WHERE version = $1",
        )
        .bind(version)
        .fetch_optional(&self.db)
        .await
        .at(&self.path)?;
        Ok(row)
    }

    /// Items written after `version`, oldest first, at most `limit` of them.
    pub async fn changes_since(&self, version: i64, limit: i64) -> Result<Vec<Item>> {
        db::query_as(
            "SELECT key, value, version FROM cms_item WHERE version > $1
             ORDER BY version, key LIMIT $2",
        )
        .bind(version)
        .bind(limit)
        .fetch_all(&self.db)
        .await
        .at(&self.path)
    }

    /// Every version after `after` up to the newest, each with the items whose newest
    /// write it is, read in one transaction: what the Backup Service ships the standby.
    ///
    /// A copy holds exactly this store's configuration only at its newest version: a value
    /// overwritten later is kept only with the later version. So a shipment always runs to
    /// the newest version, read as one snapshot; a standby stopped half-way through older
    /// versions would claim a version whose values it does not all hold.
    pub async fn cms_shipment(&self, after: i64) -> Result<Vec<(VersionInfo, Vec<Item>)>> {
        let mut tx = self.db.begin_snapshot().await.at(&self.path)?;
        let versions: Vec<VersionInfo> = db::query_as(
            "SELECT version, epoch, created_at, description FROM cms_version
             WHERE version > $1 ORDER BY version",
        )
        .bind(after)
        .fetch_all(&mut tx)
        .await
        .at(&self.path)?;
        let rows: Vec<Item> = db::query_as(
            "SELECT key, value, version FROM cms_item WHERE version > $1 ORDER BY version, key",
        )
        .bind(after)
        .fetch_all(&mut tx)
        .await
        .at(&self.path)?;
        tx.commit().await.at(&self.path)?;
        let mut by_version: std::collections::HashMap<i64, Vec<Item>> = Default::default();
        for i in rows {
            by_version.entry(i.version).or_default().push(i);
        }
        Ok(versions
            .into_iter()
            .map(|info| {
                let items = by_version.remove(&info.version).unwrap_or_default();
                (info, items)
            })
            .collect())
    }

    /// Every item written by one version (a batch must not split a version).
    pub async fn items_at_version(&self, version: i64) -> Result<Vec<Item>> {
        db::query_as("SELECT key, value, version FROM cms_item WHERE version = $1 ORDER BY key")
            .bind(version)
            .fetch_all(&self.db)
            .await
            .at(&self.path)
    }

    /// The live value of one item.
    pub async fn get(&self, key: &str) -> Result<Option<String>> {
        CMS.get(&self.db, &self.path, key).await
    }

    /// Every live item (the whole configuration, for an export).
    pub async fn items(&self) -> Result<Vec<Item>> {
        CMS.live(&self.db, &self.path).await
    }

    /// Every live CMS item whose key starts with `prefix`.
    pub async fn items_with_prefix(&self, prefix: &str) -> Result<Vec<Item>> {
        CMS.prefixed(&self.db, &self.path, prefix).await
    }

    /// The newest version that wrote (or deleted) an item whose key starts with one of
    /// `prefixes`; 0 when none did.
    pub async fn newest_version_under(&self, prefixes: &[&str]) -> Result<i64> {
        let mut newest = 0;
        for prefix in prefixes {
            let end = format!("{prefix}\u{10FFFF}");
            let (version,): (i64,) = db::query_as(
                "SELECT COALESCE(MAX(version), 0) FROM cms_item WHERE key >= $1 AND key < $2",
            )
            .bind(prefix)
            .bind(end)
            .fetch_one(&self.db)
            .await
            .at(&self.path)?;
            newest = newest.max(version);
        }
        Ok(newest)
    }

    pub async fn record_replica_status(&self, row: &ReplicaStatusRow) -> Result<()> {
        db::query(
            "INSERT INTO cms_replica_status (fqdn, version, last_status_report, product_version)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (fqdn) DO UPDATE SET version = $2, last_status_report = $3,
                 product_version = $4",
        )
        .bind(&row.fqdn)
        .bind(row.version)
        .bind(row.last_status_report)
        .bind(&row.product_version)
        .execute(&self.db)
        .await
        .at(&self.path)?;
        Ok(())
    }

    pub async fn replica_statuses(&self) -> Result<Vec<ReplicaStatusRow>> {
        db::query_as(
            "SELECT fqdn, version, last_status_report, product_version
             FROM cms_replica_status ORDER BY fqdn",
        )
        .fetch_all(&self.db)
        .await
        .at(&self.path)
    }

    pub async fn close(&self) {
        self.db.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_the_lease_holder_in_words() {
        let held = WriteRefused::NotMaster {
            holder: Some("pool1-fe1.contoso.com".into()),
            epoch: 3,
        };
        assert!(
            held.to_string()
                .ends_with("(the lease is held by pool1-fe1.contoso.com with epoch 3)"),
            "{held}"
        );
        let free = WriteRefused::NotMaster {
            holder: None,
            epoch: 3,
        };
        assert!(!free.to_string().contains("None"), "{free}");
    }

    /// Two Front Ends claim the lease on a simulated clock: each renews every quarter
    /// TTL while alive; the first is cut off at 10 s. At every millisecond at most one
    /// holds an unexpired lease, the second takes over within one TTL of the last renewal,
    /// and the takeover moves to a new epoch.
    #[test]
    fn the_lease_has_one_holder_at_a_time_and_a_takeover_fences_the_old_one() {
        const TTL: i64 = 3_000;
        let mut lease: Option<Lease> = None;
        let mut epoch = 0;
        let mut takeover_at = None;
        let mut holders_seen = vec![];
        for now in (0..20_000).step_by(50) {
            for (who, alive) in [("fe1", now < 10_000), ("fe2", true)] {
                // Each claims every 750 ms, fe2 a little later in the period.
                let offset = if who == "fe1" { 0 } else { 400 };
                if !alive || (now - offset) % (TTL / 4) != 0 {
                    continue;
                }
                match claim(lease.as_ref(), who, now, TTL) {
                    Claim::HeldByAnother(_) => {}
                    Claim::Renewed(l) => lease = Some(l),
                    Claim::New => {
                        epoch += 1;
                        if lease.as_ref().is_some_and(|l| l.holder != who) {
                            takeover_at = Some(now);
                        }
                        lease = Some(Lease::new(who, epoch, now, TTL));
                    }
                }
            }
            let valid: Vec<_> = lease
                .iter()
                .filter(|l| l.expires_at > now)
                .map(|l| (l.holder.clone(), l.epoch))
                .collect();
            assert!(valid.len() <= 1);
            if let Some(v) = valid.first()
                && holders_seen.last() != Some(v)
            {
                holders_seen.push(v.clone());
            }
        }
        assert_eq!(
            holders_seen,
            [("fe1".to_string(), 1), ("fe2".to_string(), 2)]
        );
        // fe1 last renewed at 9 750 ms; its lease ran to 12 750, and fe2 took over at its
        // first claim after that.
        let at = takeover_at.expect("fe2 took the lease over");
        assert!((12_750..12_750 + TTL / 4).contains(&at), "{at}");
    }

    fn change(k: &str, v: &str) -> (String, Option<String>) {
        (k.to_string(), Some(v.to_string()))
    }

    crate::each_backend! {
        async fn one_lease_holder_at_a_time_and_takeover_bumps_the_epoch(db) {
            let be = db.open("pool1").await;
            // A store nobody installed is no CMS: it gives no lease.
            assert!(!be.acquire_lease("fe1", 60_000, now_ms()).await.unwrap().0);
            be.bootstrap(&[change("a", "1")], "install").await.unwrap();
            let (mine, lease) = be.acquire_lease("fe1", 60_000, now_ms()).await.unwrap();
            assert!(mine);
            assert_eq!(lease.epoch, 1);
            let (mine, lease) = be.acquire_lease("fe2", 60_000, now_ms()).await.unwrap();
            assert!(!mine, "fe2 must not take an unexpired lease");
            assert_eq!(lease.holder, "fe1");
            be.release_lease("fe1", now_ms()).await.unwrap();
            let (mine, lease) = be.acquire_lease("fe2", 60_000, now_ms()).await.unwrap();
            assert!(mine);
            assert_eq!(lease.epoch, 2);
        }
    }

    crate::each_backend! {
        async fn a_fenced_master_cannot_write(db) {
            let be = db.open("pool1").await;
            be.bootstrap(&[change("a", "1")], "install").await.unwrap();
            let (_, old) = be.acquire_lease("fe1", 60_000, now_ms()).await.unwrap();
            be.write("fe1", old.epoch, &[change("a", "2")], "edit")
                .await
                .unwrap()
                .unwrap();
            be.release_lease("fe1", now_ms()).await.unwrap();
            let (_, new) = be.acquire_lease("fe2", 60_000, now_ms()).await.unwrap();
            let refused = be
                .write("fe1", old.epoch, &[change("a", "3")], "stale")
                .await
                .unwrap();
            assert!(refused.is_err());
            let v = be
                .write("fe2", new.epoch, &[change("b", "1")], "edit")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(v.version, 3);
            assert_eq!(be.get("a").await.unwrap().as_deref(), Some("2"));
        }
    }

    crate::each_backend! {
        async fn changes_since_returns_only_newer_items(db) {
            let be = db.open("pool1").await;
            let many: Vec<_> = (0..1000)
                .map(|i| change(&format!("user/{i}"), "x"))
                .collect();
            be.bootstrap(&many, "install").await.unwrap();
            let (_, l) = be.acquire_lease("fe1", 60_000, now_ms()).await.unwrap();
            be.write("fe1", l.epoch, &[change("user/7", "y")], "one line")
                .await
                .unwrap()
                .unwrap();
            let changes = be.changes_since(1, 100).await.unwrap();
            assert_eq!(changes.len(), 1);
            assert_eq!(changes[0].key, "user/7");
            assert_eq!(be.changes_since(0, 5000).await.unwrap().len(), 1000);
            assert!(!be.bootstrap(&[change("a", "1")], "again").await.unwrap());
        }
    }
}
