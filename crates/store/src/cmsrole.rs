//! The role of the Central Management store held in a Back End, and the terms that fence
//! an old master (migration 4).
//!
//! A deployment has one CMS; when its pool is paired, the partner's Back End holds a
//! standby copy that the Backup Service keeps current. Each copy records its role here:
//! `Active` (its Front Ends contend for the master lease), `Moving` (a failover is under
//! way: the lease is kept, every write is refused) or `Backup` (no lease is ever taken).
//!
//! Epochs carry a *term* in their high bits ([`TERM_SHIFT`]). A lease takeover inside a
//! store adds one to the epoch and stays in the term; a CMS failover starts the next term
//! ([`next_term_floor`]). So an old master that comes back after a disaster failover can
//! take over its own lease as often as it likes and still carries an epoch below every
//! epoch of the new store: replicas refuse its pushes, and once it hears of the new term
//! it demotes its store to standby ([`BackEnd::demote_cms`]). The versions it committed
//! that never reached the new store are kept in `cms_lost_version` for the operator.

#[cfg(test)]
use crate::cmstables::TERM_SHIFT;
use crate::cmstables::{
    CmsMode, CmsRole, LostVersion, current_version_in, cut_after, grant_lease_in, history_in,
    max_epoch_in, next_term_floor, role_in, set_history_in, set_role_in, term_of,
};
use crate::db;
use crate::history::{History, fork_point};
use crate::{BackEnd, Context, Result, now_ms};

/// Why a role change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleRefused {
    #[error("the Central Management store in {path} is {}, not {wanted}", .mode.as_str())]
    WrongMode {
        path: String,
        mode: CmsMode,
        wanted: &'static str,
    },
    #[error(
        "the Central Management store in {path} is active; -Clean would drop the store every server replicates from"
    )]
    ActiveStore { path: String },
    #[error(
        "a Central Management store already exists in {path} (version {version}); add -Clean to drop it and install an empty one"
    )]
    Exists { path: String, version: i64 },
}

/// The vote a standby store gives the active store's master (migration 10): exclusive to
/// `pool` until `until_ms` (this side's clock), never again to a term below
/// `highest_term`. What a vote may be given for is decided in `cms::witness`; this is
/// only where a standby keeps it, so that every Front End of its pool answers alike.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct CmsVote {
    pub pool: String,
    pub term: i64,
    pub until_ms: i64,
    pub highest_term: i64,
    /// In an active store: when an operator's `-Force` made it active without the
    /// witness's vote (0: it was not).
    pub forced_at: i64,
}

impl BackEnd {
    /// Reads the store's role and its vote, lets `decide` change the vote, and saves it,
    /// in one write transaction (so two Front Ends of the pool never give it twice).
    pub async fn update_cms_vote<T>(
        &self,
        decide: impl FnOnce(&CmsRole, &mut CmsVote) -> T,
    ) -> Result<T> {
        let mut tx = self.begin_write().await?;
        let role = role_in(&mut tx, &self.path).await?;
        let mut vote = vote_in(&mut tx, &self.path).await?;
        let before = vote.clone();
        let answer = decide(&role, &mut vote);
        if vote != before {
            db::query(
                "INSERT INTO cms_vote (id, pool, term, until_ms, highest_term, forced_at)
                 VALUES (1, $1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO UPDATE SET pool = $1, term = $2, until_ms = $3,
                     highest_term = $4, forced_at = $5",
            )
            .bind(&vote.pool)
            .bind(vote.term)
            .bind(vote.until_ms)
            .bind(vote.highest_term)
            .bind(vote.forced_at)
            .execute(&mut tx)
            .await
            .at(&self.path)?;
        }
        tx.commit().await.at(&self.path)?;
        Ok(answer)
    }

    /// The vote row as it stands.
    pub async fn cms_vote(&self) -> Result<CmsVote> {
        let mut conn = self.db.acquire().await.at(&self.path)?;
        vote_in(&mut conn, &self.path).await
    }

    /// The role of the CMS copy here.
    pub async fn cms_role(&self) -> Result<CmsRole> {
        let mut conn = self.db.acquire().await.at(&self.path)?;
        role_in(&mut conn, &self.path).await
    }

    /// The newest epoch this store knows of (its lease, its versions, its floor).
    pub async fn max_epoch(&self) -> Result<i64> {
        let mut conn = self.db.acquire().await.at(&self.path)?;
        max_epoch_in(&mut conn, &self.path).await
    }

    /// Marks the active store as moving to `to_pool`: the master keeps its lease and every
    /// write is refused until the move completes or is undone. Idempotent.
    pub async fn set_cms_moving(
        &self,
        to_pool: &str,
    ) -> Result<std::result::Result<CmsRole, RoleRefused>> {
        self.switch_mode(
            CmsMode::Active,
            CmsMode::Moving,
            to_pool,
            format!("moving to {to_pool}"),
        )
        .await
    }

    /// Undoes [`BackEnd::set_cms_moving`]: the store takes writes again. Idempotent.
    pub async fn set_cms_active_again(
        &self,
        reason: &str,
    ) -> Result<std::result::Result<CmsRole, RoleRefused>> {
        self.switch_mode(CmsMode::Moving, CmsMode::Active, "", reason.to_string())
            .await
    }

    /// Moves the role from `from` to `to` (with `other_pool`); a store already there is
    /// left as it is, one in any other mode is refused.
    async fn switch_mode(
        &self,
        from: CmsMode,
        to: CmsMode,
        other_pool: &str,
        reason: String,
    ) -> Result<std::result::Result<CmsRole, RoleRefused>> {
        let mut tx = self.begin_write().await?;
        let mut r = role_in(&mut tx, &self.path).await?;
        if r.mode == to && r.other_pool.eq_ignore_ascii_case(other_pool) {
            return Ok(Ok(r));
        }
        if r.mode != from {
            return Ok(Err(RoleRefused::WrongMode {
                path: self.path.clone(),
                mode: r.mode,
                wanted: from.as_str(),
            }));
        }
        r.mode = to;
        r.other_pool = other_pool.to_string();
        r.changed_at = now_ms();
        r.reason = reason;
        set_role_in(&mut tx, &self.path, &r).await?;
        tx.commit().await.at(&self.path)?;
        Ok(Ok(r))
    }

    /// Makes this standby the active store, in a new term above `known_epoch` (the newest
    /// epoch the caller heard of anywhere). Its versions so far are what it shares with
    /// the store it replaces. Idempotent: a store already active in a term above
    /// `known_epoch` is left as it is.
    ///
    /// The lease goes to `holder` (the server running the failover) with the term's first
    /// epoch, so that the server that will publish the change is the master.
    pub async fn promote_cms(
        &self,
        known_epoch: i64,
        from_pool: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<std::result::Result<CmsRole, RoleRefused>> {
        let mut tx = self.begin_write().await?;
        let r = role_in(&mut tx, &self.path).await?;
        if r.mode == CmsMode::Active && term_of(r.epoch_floor) > term_of(known_epoch) {
            return Ok(Ok(r));
        }
        if r.mode != CmsMode::Backup {
            return Ok(Err(RoleRefused::WrongMode {
                path: self.path.clone(),
                mode: r.mode,
                wanted: "Backup (a standby)",
            }));
        }
        let known = known_epoch.max(max_epoch_in(&mut tx, &self.path).await?);
        let current = current_version_in(&mut tx, &self.path).await?;
        let floor = next_term_floor(known);
        let line = history_in(&mut tx, &self.path)
            .await?
            .begin(term_of(floor), current);
        set_history_in(&mut tx, &self.path, &line).await?;
        let r = CmsRole {
            mode: CmsMode::Active,
            epoch_floor: floor,
            term_start: current,
            shared_through: current,
            other_pool: String::new(),
            changed_at: now_ms(),
            reason: format!("took over from {from_pool} at version {current}"),
        };
        set_role_in(&mut tx, &self.path, &r).await?;
        grant_lease_in(&mut tx, &self.path, holder, r.epoch_floor + 1, ttl_ms).await?;
        tx.commit().await.at(&self.path)?;
        Ok(Ok(r))
    }

    /// Turns this store into a standby of the active store in `active_pool`, whose line
    /// is `line`: the lease ends, every version here beyond where the two lines part is
    /// recorded as lost, and if there is any the whole copy is dropped so that the Backup
    /// Service rebuilds it from the active store. Idempotent.
    pub async fn demote_cms(
        &self,
        active_pool: &str,
        line: &History,
        active_epoch: i64,
    ) -> Result<Vec<LostVersion>> {
        let mut tx = self.begin_write().await?;
        let r = role_in(&mut tx, &self.path).await?;
        if r.mode == CmsMode::Backup {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let fork = fork_point(&history_in(&mut tx, &self.path).await?, line);
        let lost = cut_after(&mut tx, &self.path, fork, line.last_term(), now).await?;
        // What it keeps (if anything) is a prefix of the active line.
        set_history_in(&mut tx, &self.path, line).await?;
        db::query("DELETE FROM cms_replica_status")
            .execute(&mut tx)
            .await
            .at(&self.path)?;
        db::query("UPDATE cms_master_lease SET expires_at = $1")
            .bind(now)
            .execute(&mut tx)
            .await
            .at(&self.path)?;
        let demoted = CmsRole {
            mode: CmsMode::Backup,
            epoch_floor: r.epoch_floor.max(active_epoch),
            term_start: r.term_start,
            shared_through: r.shared_through,
            other_pool: active_pool.to_string(),
            changed_at: now,
            reason: if lost.is_empty() {
                format!("fenced: the active store is in {active_pool}")
            } else {
                format!(
                    "fenced: the active store is in {active_pool}, whose line this one left after version {fork}; \
                     the {} version(s) after it are recorded as lost",
                    lost.len()
                )
            },
        };
        set_role_in(&mut tx, &self.path, &demoted).await?;
        tx.commit().await.at(&self.path)?;
        Ok(lost)
    }

    /// Moves the master lease of this active store to `holder` at once (the server running
    /// a failover, which must publish it): a takeover within the term, so the previous
    /// holder's writes are refused from now on. Returns the new epoch; `None` when the
    /// store is not active. Keeps a lease `holder` already has.
    pub async fn take_lease_over(&self, holder: &str, ttl_ms: i64) -> Result<Option<i64>> {
        let mut tx = self.begin_write().await?;
        let r = role_in(&mut tx, &self.path).await?;
        if r.mode != CmsMode::Active {
            return Ok(None);
        }
        let lease = crate::cmstables::lease_in(&mut tx, &self.path).await?;
        if let Some(l) = lease.filter(|l| l.holder == holder && l.expires_at > now_ms()) {
            return Ok(Some(l.epoch));
        }
        let epoch = max_epoch_in(&mut tx, &self.path).await? + 1;
        grant_lease_in(&mut tx, &self.path, holder, epoch, ttl_ms).await?;
        tx.commit().await.at(&self.path)?;
        Ok(Some(epoch))
    }

    /// The history of the line this store holds (see [`crate::history`]).
    pub async fn history(&self) -> Result<History> {
        let mut conn = self.db.acquire().await.at(&self.path)?;
        history_in(&mut conn, &self.path).await
    }

    /// Versions recorded as lost when this store was fenced, oldest first.
    pub async fn lost_cms_versions(&self) -> Result<Vec<LostVersion>> {
        let rows: Vec<(i64, i64, i64, String, String, i64, i64)> = db::query_as(
            "SELECT version, epoch, created_at, description, keys, lost_at, cut_by_term
             FROM cms_lost_version ORDER BY lost_at, version",
        )
        .fetch_all(&self.db)
        .await
        .at(&self.path)?;
        Ok(rows
            .into_iter()
            .map(
                |(version, epoch, created_at, description, keys, lost_at, cut_by_term)| {
                    LostVersion {
                        version,
                        epoch,
                        created_at,
                        description,
                        keys: serde_json::from_str(&keys).unwrap_or_default(),
                        lost_at,
                        cut_by_term,
                    }
                },
            )
            .collect())
    }

    /// `Install-CsDatabase -CentralManagementDatabase`: an empty standby store here. An
    /// existing store is kept unless `clean`; the active store is never dropped.
    pub async fn install_cms(
        &self,
        clean: bool,
    ) -> Result<std::result::Result<CmsRole, RoleRefused>> {
        let mut tx = self.begin_write().await?;
        let r = role_in(&mut tx, &self.path).await?;
        let current = current_version_in(&mut tx, &self.path).await?;
        if r.mode != CmsMode::Backup {
            return Ok(Err(RoleRefused::ActiveStore {
                path: self.path.clone(),
            }));
        }
        if current > 0 && !clean {
            return Ok(Err(RoleRefused::Exists {
                path: self.path.clone(),
                version: current,
            }));
        }
        db::raw_sql(
            "DELETE FROM cms_item; DELETE FROM cms_version; DELETE FROM cms_replica_status;
             DELETE FROM cms_failover; DELETE FROM cms_term;",
            &mut tx,
        )
        .await
        .at(&self.path)?;
        let installed = CmsRole {
            changed_at: now_ms(),
            reason: "installed empty (Install-CsDatabase -CentralManagementDatabase)".into(),
            ..r
        };
        set_role_in(&mut tx, &self.path, &installed).await?;
        tx.commit().await.at(&self.path)?;
        Ok(Ok(installed))
    }

    /// `Move-CsManagementServer`: loads a whole configuration (the old store's at version
    /// `shared_through` of the line `line`) into the empty store installed here and makes
    /// it the active store in a new term above `known_epoch`. The line goes on: the
    /// configuration is its version `shared_through + 1`, the new term's first, so a copy
    /// of the old line up to `shared_through` stays on it and one beyond it is rebuilt.
    /// Refused unless the store is an empty standby.
    #[allow(clippy::too_many_arguments)]
    pub async fn load_cms_and_activate(
        &self,
        items: &[(String, Option<String>)],
        description: &str,
        line: &History,
        shared_through: i64,
        known_epoch: i64,
        from_pool: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<std::result::Result<CmsRole, RoleRefused>> {
        let mut tx = self.begin_write().await?;
        let r = role_in(&mut tx, &self.path).await?;
        let current = current_version_in(&mut tx, &self.path).await?;
        if r.mode != CmsMode::Backup {
            return Ok(Err(RoleRefused::WrongMode {
                path: self.path.clone(),
                mode: r.mode,
                wanted: "an empty standby (Install-CsDatabase -CentralManagementDatabase)",
            }));
        }
        if current > 0 {
            return Ok(Err(RoleRefused::Exists {
                path: self.path.clone(),
                version: current,
            }));
        }
        let known = known_epoch
            .max(max_epoch_in(&mut tx, &self.path).await?)
            .max(line.last_term() << crate::TERM_SHIFT);
        let floor = next_term_floor(known);
        crate::cmstables::insert_version(
            &mut tx,
            &self.path,
            shared_through + 1,
            floor,
            items,
            description,
        )
        .await?;
        set_history_in(
            &mut tx,
            &self.path,
            &line.begin(term_of(floor), shared_through),
        )
        .await?;
        let activated = CmsRole {
            mode: CmsMode::Active,
            epoch_floor: floor,
            term_start: shared_through,
            shared_through,
            other_pool: String::new(),
            changed_at: now_ms(),
            reason: format!("moved from {from_pool} (Move-CsManagementServer)"),
        };
        set_role_in(&mut tx, &self.path, &activated).await?;
        grant_lease_in(&mut tx, &self.path, holder, floor + 1, ttl_ms).await?;
        tx.commit().await.at(&self.path)?;
        Ok(Ok(activated))
    }

    /// The newest CMS failover record whose target is this Back End: its id, its JSON and
    /// when it was last written (the token of [`BackEnd::save_cms_failover_record`]).
    pub async fn cms_failover_record(&self) -> Result<Option<(i64, String, i64)>> {
        db::query_as("SELECT id, record, updated_at FROM cms_failover ORDER BY id DESC LIMIT 1")
            .fetch_optional(&self.db)
            .await
            .at(&self.path)
    }

    /// Stores a CMS failover record: a new one when `id` is `None`, else only if it was
    /// last written at `expected` (compare-and-set: two runners of one record cannot both
    /// go on). Returns its id and new token, or `None` when someone else wrote it since.
    pub async fn save_cms_failover_record(
        &self,
        id: Option<i64>,
        record: &str,
        expected: i64,
    ) -> Result<Option<(i64, i64)>> {
        let mut tx = self.begin_write().await?;
        let (id, previous) = match id {
            Some(id) => {
                let row: Option<(i64,)> =
                    db::query_as("SELECT updated_at FROM cms_failover WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut tx)
                        .await
                        .at(&self.path)?;
                match row {
                    Some((at,)) if at == expected => (id, at),
                    _ => return Ok(None),
                }
            }
            None => {
                let (next,): (i64,) =
                    db::query_as("SELECT COALESCE(MAX(id), 0) + 1 FROM cms_failover")
                        .fetch_one(&mut tx)
                        .await
                        .at(&self.path)?;
                (next, 0)
            }
        };
        // Strictly increasing, so that two writes in one millisecond differ.
        let at = now_ms().max(previous + 1);
        db::query(
            "INSERT INTO cms_failover (id, record, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET record = $2, updated_at = $3",
        )
        .bind(id)
        .bind(record)
        .bind(at)
        .execute(&mut tx)
        .await
        .at(&self.path)?;
        tx.commit().await.at(&self.path)?;
        Ok(Some((id, at)))
    }
}

async fn vote_in(conn: &mut db::Conn, path: &str) -> Result<CmsVote> {
    let vote: Option<CmsVote> = db::query_as(
        "SELECT pool, term, until_ms, highest_term, forced_at FROM cms_vote WHERE id = 1",
    )
    .fetch_optional(&mut *conn)
    .await
    .at(path)?;
    Ok(vote.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_epoch_of_a_later_term_is_above_every_epoch_of_an_earlier_one() {
        let floor = next_term_floor(7);
        assert_eq!(term_of(floor), 1);
        assert!(floor > 7 + 1_000_000);
        assert_eq!(next_term_floor(floor + 12), 2 << TERM_SHIFT);
        assert_eq!(term_of(floor - 1), 0);
    }

    fn change(k: &str, v: &str) -> (String, Option<String>) {
        (k.to_string(), Some(v.to_string()))
    }

    crate::each_backend! {
        async fn a_failover_moves_the_one_writable_store_and_fences_the_old_one(db) {
            let old = db.open("pool1")
                .await;
            let new = db.open("pool2")
                .await;
            old.bootstrap(&[change("a", "1")], "install").await.unwrap();
            let (_, lease) = old.acquire_lease("fe1", 60_000, now_ms()).await.unwrap();
            old.write("fe1", lease.epoch, &[change("a", "2")], "edit")
                .await
                .unwrap()
                .unwrap();
            // The standby took versions 1 and 2; the Backup Service ships them in order.
            for v in 1..=2 {
                let info = old.version(v).await.unwrap().unwrap();
                let items = old.items_at_version(v).await.unwrap();
                assert_eq!(
                    new.import_cms_versions(&History::root(), v - 1, &[(info, items)])
                        .await
                        .unwrap(),
                    v
                );
            }
            // An active store takes no copy of another.
            let info = new.version(1).await.unwrap().unwrap();
            assert!(matches!(
                old.import_cms_versions(&History::root(), 0, &[(info, vec![])])
                    .await,
                Err(crate::StoreError::CmsNotStandby { .. })
            ));
            // A standby gives no lease and takes no write.
            assert!(!new.acquire_lease("fe3", 60_000, now_ms()).await.unwrap().0);
            // Moving: the master keeps its lease, writes are refused with the documented text.
            old.set_cms_moving("pool2").await.unwrap().unwrap();
            let refused = old
                .write("fe1", lease.epoch, &[change("a", "3")], "during the move")
                .await
                .unwrap()
                .unwrap_err();
            assert!(
                refused
                    .to_string()
                    .starts_with("###50020:XDSForceReplication")
            );
            // A disaster instead: the old store takes writes again, one of them never shipped.
            old.set_cms_active_again("restored").await.unwrap().unwrap();
            old.write("fe1", lease.epoch, &[change("b", "lost")], "never shipped")
                .await
                .unwrap()
                .unwrap();
            // Only a standby is promoted: the active store is not.
            assert!(matches!(
                old.promote_cms(lease.epoch, "pool2", "fe1", 60_000)
                    .await
                    .unwrap(),
                Err(RoleRefused::WrongMode {
                    mode: CmsMode::Active,
                    ..
                })
            ));
            let promoted = new
                .promote_cms(lease.epoch, "pool1", "fe3", 60_000)
                .await
                .unwrap()
                .unwrap();
            assert_eq!((promoted.mode, promoted.term_start), (CmsMode::Active, 2));
            // The server that ran the promotion holds the lease; the other Front End waits.
            assert!(!new.acquire_lease("fe4", 60_000, now_ms()).await.unwrap().0);
            let (mine, new_lease) = new.acquire_lease("fe3", 60_000, now_ms()).await.unwrap();
            assert!(mine);
            assert_eq!(term_of(new_lease.epoch), 1);
            // The old store's own takeovers stay below the new term.
            old.release_lease("fe1", now_ms()).await.unwrap();
            let (_, again) = old.acquire_lease("fe2", 60_000, now_ms()).await.unwrap();
            assert!(again.epoch < new_lease.epoch);
            // Where the terms started, as the new store tells replicas.
            let line = new.history().await.unwrap();
            assert_eq!(line, History::root().begin(1, 2));
            // Fenced: the version it wrote after the cut is recorded lost, the copy dropped.
            let lost = old
                .demote_cms("pool2", &line, new_lease.epoch)
                .await
                .unwrap();
            assert_eq!(lost.len(), 1);
            assert_eq!(lost[0].keys, vec!["b".to_string()]);
            assert_eq!(old.lost_cms_versions().await.unwrap(), lost);
            assert_eq!(old.cms_role().await.unwrap().mode, CmsMode::Backup);
            assert!(old.current_version().await.unwrap().is_none());
            assert!(!old.acquire_lease("fe2", 60_000, now_ms()).await.unwrap().0);
            // Idempotent.
            assert!(
                old.demote_cms("pool2", &line, new_lease.epoch)
                    .await
                    .unwrap()
                    .is_empty()
            );
            assert_eq!(
                new.promote_cms(lease.epoch, "pool1", "fe3", 60_000)
                    .await
                    .unwrap()
                    .unwrap()
                    .epoch_floor,
                promoted.epoch_floor
            );
        }
    }

    crate::each_backend! {
        async fn install_keeps_what_exists_unless_clean_and_never_drops_the_active_store(db) {
            let active = db.open("a").await;
            active
                .bootstrap(&[change("a", "1")], "install")
                .await
                .unwrap();
            assert!(matches!(
                active.install_cms(true).await.unwrap(),
                Err(RoleRefused::ActiveStore { .. })
            ));
            let standby = db.open("b").await;
            let info = active.version(1).await.unwrap().unwrap();
            let items = active.items_at_version(1).await.unwrap();
            standby
                .import_cms_versions(&History::root(), 0, &[(info, items)])
                .await
                .unwrap();
            assert!(matches!(
                standby.install_cms(false).await.unwrap(),
                Err(RoleRefused::Exists { version: 1, .. })
            ));
            standby.install_cms(true).await.unwrap().unwrap();
            assert!(standby.current_version().await.unwrap().is_none());
            let role = standby
                .load_cms_and_activate(
                    &[change("a", "1")],
                    "moved",
                    &History::root(),
                    1,
                    5,
                    "pool1",
                    "fe1",
                    60_000,
                )
                .await
                .unwrap()
                .unwrap();
            assert_eq!(role.mode, CmsMode::Active);
            assert_eq!(standby.get("a").await.unwrap().as_deref(), Some("1"));
            assert!(matches!(
                standby
                    .load_cms_and_activate(
                        &[],
                        "again",
                        &History::root(),
                        1,
                        5,
                        "pool1",
                        "fe1",
                        60_000,
                    )
                    .await
                    .unwrap(),
                Err(RoleRefused::WrongMode { .. })
            ));
        }
    }

    /// Ships every version of `from` after `after` to the standby `to`.
    async fn ship(from: &BackEnd, to: &BackEnd, after: i64) -> i64 {
        let line = from.history().await.unwrap();
        let mut batch = vec![];
        for v in from.versions_after(after, 1000).await.unwrap() {
            let items = from.items_at_version(v.version).await.unwrap();
            batch.push((v, items));
        }
        to.import_cms_versions(&line, after, &batch).await.unwrap()
    }

    crate::each_backend! {
        async fn a_standby_off_the_line_is_rebuilt_and_what_it_held_beyond_the_fork_is_lost_once(db) {
            let old = db.open("old").await;
            let new = db.open("new").await;
            old.bootstrap(&[change("a", "1")], "install").await.unwrap();
            let (_, lease) = old.acquire_lease("fe1", 60_000, now_ms()).await.unwrap();
            for v in 2..=4 {
                old.write("fe1", lease.epoch, &[change("a", &v.to_string())], "edit")
                    .await
                    .unwrap()
                    .unwrap();
            }
            // Seed 001's rebuild from an export of version 3; the old store reached 4.
            new.load_cms_and_activate(
                &[change("a", "3")],
                "moved",
                &History::root(),
                3,
                lease.epoch,
                "pool1",
                "fe3",
                60_000,
            )
            .await
            .unwrap()
            .unwrap();
            assert_eq!(new.current_version().await.unwrap().unwrap().version, 4);
            // The old store comes back and is demoted: version 4 is not the new line's 4.
            let line = new.history().await.unwrap();
            let lost = old.demote_cms("pool2", &line, 1 << 40).await.unwrap();
            assert_eq!(lost.iter().map(|l| l.version).collect::<Vec<_>>(), vec![4]);
            assert_eq!(lost[0].cut_by_term, line.last_term());
            assert!(old.current_version().await.unwrap().is_none());
            // It is rebuilt from the new store, whose versions start after the export's.
            assert_eq!(ship(&new, &old, 0).await, 4);
            assert_eq!(old.get("a").await.unwrap().as_deref(), Some("3"));
            // Shipping again changes nothing, and records nothing lost again.
            assert_eq!(ship(&new, &old, 0).await, 4);
            assert_eq!(old.lost_cms_versions().await.unwrap().len(), 1);

            // A standby that kept a stale line (shipped before histories) is rebuilt by the
            // first shipment that carries the active line.
            let stale = db.open("stale")
                .await;
            let mut versions = vec![];
            for v in old.versions_after(0, 10).await.unwrap() {
                versions.push((v, vec![]));
            }
            let other = History::root().begin(9, 0);
            stale
                .import_cms_versions(&other, 0, &versions)
                .await
                .unwrap();
            assert_eq!(ship(&new, &stale, 0).await, 4);
            assert_eq!(stale.lost_cms_versions().await.unwrap().len(), 1);
            assert_eq!(stale.get("a").await.unwrap().as_deref(), Some("3"));
        }
    }

    crate::each_backend! {
        async fn a_standby_catches_up_from_a_replica_keeping_its_line(db) {
            let standby = db.open("s").await;
            let items = [
                crate::Item {
                    key: "a".into(),
                    value: Some("x".into()),
                    version: 3,
                },
                crate::Item {
                    key: "b".into(),
                    value: None,
                    version: 5,
                },
            ];
            assert_eq!(
                standby
                    .catch_up_cms("edge1", &History::root().begin(1, 2), 7, 5, 99, &items)
                    .await
                    .unwrap(),
                5
            );
            assert_eq!(standby.get("a").await.unwrap().as_deref(), Some("x"));
            let v = standby.current_version().await.unwrap().unwrap();
            assert_eq!((v.version, v.epoch, v.created_at), (5, 7, 99));
            assert!(v.description.contains("edge1"));
            assert_eq!(
                standby.history().await.unwrap(),
                History::root().begin(1, 2)
            );
        }
    }
}
