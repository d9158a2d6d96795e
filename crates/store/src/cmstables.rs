//! The Central Management store's own tables, statement by statement: the master lease
//! and its rule, the versions, and the store's role and terms. The CMS side of a Back
//! End ([`crate::backend`]) and its role changes ([`crate::cmsrole`]) are both written on
//! these, so neither needs the other.

use serde::{Deserialize, Serialize};

use crate::db::{self, Conn};
use crate::items::CMS;
use crate::{Context, Result, now_ms};

/// Who holds the master role, and until when.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct Lease {
    pub holder: String,
    pub epoch: i64,
    pub acquired_at: i64,
    pub renewed_at: i64,
    pub expires_at: i64,
}

impl Lease {
    /// A lease `holder` takes at `now` with `epoch`.
    pub fn new(holder: &str, epoch: i64, now: i64, ttl_ms: i64) -> Lease {
        Lease {
            holder: holder.to_string(),
            epoch,
            acquired_at: now,
            renewed_at: now,
            expires_at: now + ttl_ms,
        }
    }
}

/// What a claim of the master lease does (see [`claim`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Another holder's lease still lasts: the claim is refused.
    HeldByAnother(Lease),
    /// The claimant holds it: it lasts a TTL longer, in the same epoch.
    Renewed(Lease),
    /// It expired, was released or was never taken: the claimant takes a new one, in an
    /// epoch above every epoch the store knows, which fences the previous holder.
    New,
}

/// The lease rule, as a pure function of the lease as it stands and the time: the
/// transaction in [`BackEnd::acquire_lease`] applies it. At any `now` at most one holder
/// has a lease that has not expired, and a takeover always moves to a new epoch.
pub fn claim(current: Option<&Lease>, holder: &str, now: i64, ttl_ms: i64) -> Claim {
    match current {
        Some(l) if l.expires_at > now && l.holder != holder => Claim::HeldByAnother(l.clone()),
        Some(l) if l.expires_at > now => Claim::Renewed(Lease {
            renewed_at: now,
            expires_at: now + ttl_ms,
            ..l.clone()
        }),
        _ => Claim::New,
    }
}

/// One version of the CMS.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct VersionInfo {
    pub version: i64,
    pub epoch: i64,
    pub created_at: i64,
    pub description: String,
}

pub(crate) async fn lease_in(conn: &mut Conn, path: &str) -> Result<Option<Lease>> {
    db::query_as(
        "SELECT holder, epoch, acquired_at, renewed_at, expires_at FROM cms_master_lease WHERE id = 1",
    )
    .fetch_optional(&mut *conn)
    .await
    .at(path)
}

pub(crate) async fn insert_version(
    conn: &mut Conn,
    path: &str,
    version: i64,
    epoch: i64,
    changes: &[(String, Option<String>)],
    description: &str,
) -> Result<VersionInfo> {
    let created_at = now_ms();
    db::query(
        "INSERT INTO cms_version (version, epoch, created_at, description) VALUES ($1, $2, $3, $4)",
    )
    .bind(version)
    .bind(epoch)
    .bind(created_at)
    .bind(description)
    .execute(&mut *conn)
    .await
    .at(path)?;
    for (key, value) in changes {
        CMS.upsert(conn, path, key, value.as_deref(), version)
            .await?;
    }
    Ok(VersionInfo {
        version,
        epoch,
        created_at,
        description: description.to_string(),
    })
}

/// Epochs of term `t` are `t << TERM_SHIFT` plus the takeovers within the term.
pub const TERM_SHIFT: u32 = 32;

/// The term an epoch belongs to.
pub fn term_of(epoch: i64) -> i64 {
    epoch >> TERM_SHIFT
}

/// The epoch floor of the term after the newest one `known_epoch` belongs to.
pub fn next_term_floor(known_epoch: i64) -> i64 {
    (term_of(known_epoch) + 1) << TERM_SHIFT
}

/// What the CMS copy in this Back End is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmsMode {
    Active,
    Moving,
    Backup,
}

impl CmsMode {
    fn parse(s: &str) -> CmsMode {
        match s {
            "Active" => CmsMode::Active,
            "Moving" => CmsMode::Moving,
            _ => CmsMode::Backup,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CmsMode::Active => "Active",
            CmsMode::Moving => "Moving",
            CmsMode::Backup => "Backup",
        }
    }
}

/// The role row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CmsRole {
    pub mode: CmsMode,
    pub epoch_floor: i64,
    pub term_start: i64,
    /// The old store's versions up to here are in this store (see migration 5).
    pub shared_through: i64,
    /// Moving: the pool the store moves to. Backup: the pool of the active store (when known).
    pub other_pool: String,
    pub changed_at: i64,
    pub reason: String,
}

/// A version an old master committed that never reached the store that replaced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostVersion {
    pub version: i64,
    pub epoch: i64,
    pub created_at: i64,
    pub description: String,
    pub keys: Vec<String>,
    pub lost_at: i64,
    /// The term whose line cut it off (0 when recorded before terms were kept).
    #[serde(default)]
    pub cut_by_term: i64,
}

type RoleRow = (String, i64, i64, i64, String, i64, String);

fn role(
    (mode, epoch_floor, term_start, shared_through, other_pool, changed_at, reason): RoleRow,
) -> CmsRole {
    CmsRole {
        mode: CmsMode::parse(&mode),
        epoch_floor,
        term_start,
        shared_through: if shared_through < 0 {
            term_start
        } else {
            shared_through
        },
        other_pool,
        changed_at,
        reason,
    }
}

pub(crate) async fn role_in(conn: &mut Conn, path: &str) -> Result<CmsRole> {
    let row: Option<RoleRow> = db::query_as(
        "SELECT mode, epoch_floor, term_start, shared_through, other_pool, changed_at, reason
         FROM cms_role WHERE id = 1",
    )
    .fetch_optional(&mut *conn)
    .await
    .at(path)?;
    if let Some(row) = row {
        return Ok(role(row));
    }
    // A store from before roles were recorded: the one where a master lease was ever
    // taken is the active store.
    let (leases,): (i64,) = db::query_as("SELECT COUNT(*) FROM cms_master_lease")
        .fetch_one(&mut *conn)
        .await
        .at(path)?;
    Ok(CmsRole {
        mode: if leases > 0 {
            CmsMode::Active
        } else {
            CmsMode::Backup
        },
        epoch_floor: 0,
        term_start: 0,
        shared_through: 0,
        other_pool: String::new(),
        changed_at: 0,
        reason: "recorded before CMS roles".into(),
    })
}

pub(crate) async fn set_role_in(conn: &mut Conn, path: &str, r: &CmsRole) -> Result<()> {
    db::query(
        "INSERT INTO cms_role
             (id, mode, epoch_floor, term_start, shared_through, other_pool, changed_at, reason)
         VALUES (1, $1, $2, $3, $7, $4, $5, $6)
         ON CONFLICT (id) DO UPDATE SET mode = $1, epoch_floor = $2, term_start = $3,
             other_pool = $4, changed_at = $5, reason = $6, shared_through = $7",
    )
    .bind(r.mode.as_str())
    .bind(r.epoch_floor)
    .bind(r.term_start)
    .bind(&r.other_pool)
    .bind(r.changed_at)
    .bind(&r.reason)
    .bind(r.shared_through)
    .execute(&mut *conn)
    .await
    .at(path)?;
    Ok(())
}

/// The newest epoch the store knows of: its lease, its versions, its floor.
pub(crate) async fn max_epoch_in(conn: &mut Conn, path: &str) -> Result<i64> {
    let (lease, versions): (i64, i64) = db::query_as(
        "SELECT (SELECT COALESCE(MAX(epoch), 0) FROM cms_master_lease),
                (SELECT COALESCE(MAX(epoch), 0) FROM cms_version)",
    )
    .fetch_one(&mut *conn)
    .await
    .at(path)?;
    let floor = role_in(conn, path).await?.epoch_floor;
    Ok(lease.max(versions).max(floor))
}

/// Gives the lease to `holder` with `epoch`, whoever held it before.
pub(crate) async fn grant_lease_in(
    conn: &mut Conn,
    path: &str,
    holder: &str,
    epoch: i64,
    ttl_ms: i64,
) -> Result<()> {
    let now = now_ms();
    db::query(
        "INSERT INTO cms_master_lease (id, holder, epoch, acquired_at, renewed_at, expires_at)
         VALUES (1, $1, $2, $3, $3, $4)
         ON CONFLICT (id) DO UPDATE SET holder = $1, epoch = $2, acquired_at = $3,
             renewed_at = $3, expires_at = $4",
    )
    .bind(holder)
    .bind(epoch)
    .bind(now)
    .bind(now + ttl_ms)
    .execute(&mut *conn)
    .await
    .at(path)?;
    Ok(())
}

/// The newest version of the store (0 when empty).
pub(crate) async fn current_version_in(conn: &mut Conn, path: &str) -> Result<i64> {
    let (current,): (i64,) = db::query_as("SELECT COALESCE(MAX(version), 0) FROM cms_version")
        .fetch_one(&mut *conn)
        .await
        .at(path)?;
    Ok(current)
}

/// The history of the line this store holds (the root line when none is recorded).
pub(crate) async fn history_in(conn: &mut Conn, path: &str) -> Result<crate::History> {
    let rows: Vec<(i64, i64)> = db::query_as("SELECT term, start FROM cms_term ORDER BY term")
        .fetch_all(&mut *conn)
        .await
        .at(path)?;
    Ok(crate::History::from_terms(
        rows.into_iter()
            .map(|(term, start)| crate::TermStart { term, start }),
    ))
}

/// Records `history` as the line this store holds.
pub(crate) async fn set_history_in(
    conn: &mut Conn,
    path: &str,
    history: &crate::History,
) -> Result<()> {
    db::query("DELETE FROM cms_term")
        .execute(&mut *conn)
        .await
        .at(path)?;
    for t in history.terms() {
        db::query("INSERT INTO cms_term (term, start) VALUES ($1, $2)")
            .bind(t.term)
            .bind(t.start)
            .execute(&mut *conn)
            .await
            .at(path)?;
    }
    Ok(())
}

/// Records every version of this store after `fork` as lost, cut off by the line of
/// `cut_by_term`, and returns them (a version already recorded is not recorded again).
/// When there is any, the whole copy is dropped: the values before them are gone from it,
/// so it is rebuilt from the active store.
pub(crate) async fn cut_after(
    conn: &mut Conn,
    path: &str,
    fork: i64,
    cut_by_term: i64,
    now: i64,
) -> Result<Vec<LostVersion>> {
    let versions: Vec<(i64, i64, i64, String)> = db::query_as(
        "SELECT version, epoch, created_at, description FROM cms_version
         WHERE version > $1 ORDER BY version",
    )
    .bind(fork)
    .fetch_all(&mut *conn)
    .await
    .at(path)?;
    let mut lost = Vec::with_capacity(versions.len());
    for (version, epoch, created_at, description) in versions {
        let keys: Vec<(String,)> =
            db::query_as("SELECT key FROM cms_item WHERE version = $1 ORDER BY key")
                .bind(version)
                .fetch_all(&mut *conn)
                .await
                .at(path)?;
        let keys: Vec<String> = keys.into_iter().map(|(k,)| k).collect();
        db::query(
            "INSERT INTO cms_lost_version
                 (version, epoch, created_at, description, keys, lost_at, cut_by_term)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(version)
        .bind(epoch)
        .bind(created_at)
        .bind(&description)
        .bind(serde_json::to_string(&keys).unwrap_or_default())
        .bind(now)
        .bind(cut_by_term)
        .execute(&mut *conn)
        .await
        .at(path)?;
        lost.push(LostVersion {
            version,
            epoch,
            created_at,
            description,
            keys,
            lost_at: now,
            cut_by_term,
        });
    }
    if !lost.is_empty() {
        db::raw_sql("DELETE FROM cms_item; DELETE FROM cms_version;", &mut *conn)
            .await
            .at(path)?;
    }
    Ok(lost)
}
