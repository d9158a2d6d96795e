//! The databases of a tandem deployment.
//!
//! Two kinds of store live here:
//!
//! - [`BackEnd`]: a Front End pool's Back End database, a SQLite file in a lab or a
//!   PostgreSQL database (the topology's `database_url` says which; see `db`). Only that pool's own servers open
//!   it — no server ever opens another pool's Back End — so losing a site really loses
//!   the data there. On the pool that hosts the Central Management store (CMS) it holds
//!   the CMS: versioned configuration items, the master lease and the replicas' status.
//! - [`ReplicaStore`]: one server's local replica of the CMS (a SQLite file), which lets the server keep
//!   running on its last configuration while the CMS is unreachable.
//!
//! Schemas change only through the numbered migrations in `migrations/`, applied in order
//! and recorded in the database (see [`migrate`]).

mod backend;
mod checkpoint;
mod cmsrole;
mod cmstables;
mod db;
mod failover;
pub mod history;
mod items;
mod migrate;
pub mod mirror;
mod registration;
mod replica;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;
mod userdata;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use backend::{BackEnd, ReplicaStatusRow, WriteRefused};
pub use clock::format_timestamp;
pub use cmsrole::{CmsVote, RoleRefused};
pub use cmstables::{
    Claim, CmsMode, CmsRole, Lease, LostVersion, TERM_SHIFT, VersionInfo, claim, next_term_floor,
    term_of,
};
pub use failover::{Lost, Promotion};
pub use history::{History, Standing, TermStart};
pub use mirror::{Copy, DatabaseFailover, MirrorState};
pub use registration::{BindingUpdate, Registered, RegistrationChange};
pub use replica::{ApplyOutcome, Batch, ReplicaState, ReplicaStore};
pub use userdata::{
    Backlog, BackupItem, Binding, Change, ExportState, ImportState, Unshippable, UserChange,
    UserItem, hex_sha256,
};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "unsupported database URL '{0}': a Back End is sqlite://<path> or postgres://<user>@<host>/<database>"
    )]
    UnsupportedUrl(String),
    #[error("cannot create the folder {path} for a database: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database {path}: {source}")]
    Database { path: String, source: sqlx::Error },
    #[error(
        "database {path} has schema version {found} of {kind}, newer than this build of tandem knows ({known}); upgrade tandem"
    )]
    SchemaTooNew {
        path: String,
        kind: &'static str,
        found: i64,
        known: i64,
    },
    #[error("database {path}, {kind}: its migrations do not match this build's ({message})")]
    Migration {
        path: String,
        kind: &'static str,
        message: String,
    },
    #[error(
        "the Central Management store in {path} is {mode}, not in backup mode: it takes no copy of another store"
    )]
    CmsNotStandby { path: String, mode: &'static str },
    #[error("the data of the users homed on {home_pool} is read-only here: {reason}")]
    Fenced { home_pool: String, reason: String },
    #[error("{0}")]
    Refused(String),
    #[error("the user has no item {key}")]
    NoParent { key: String },
    #[error(
        "part {got} of full resync {resync} arrived while part {expected} was expected; the sender starts the resync again"
    )]
    StagingOutOfOrder {
        resync: String,
        expected: i64,
        got: i64,
    },
}

impl StoreError {
    /// The refusal of a write to users whose data has moved (see [`BackEnd::fence`]).
    pub fn fenced_reason(&self) -> Option<&str> {
        match self {
            StoreError::Fenced { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One configuration item: a key, its value (`None` once deleted) and the CMS version
/// that last wrote it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct Item {
    pub key: String,
    pub value: Option<String>,
    pub version: i64,
}

/// Milliseconds since the Unix epoch: how every timestamp is stored.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64
}

/// Where a `sqlite://` URL points. Relative paths are taken from `root` (the deployment's
/// folder), so one topology describes a lab wherever it is unpacked.
pub fn sqlite_path(url: &str, root: &Path) -> Result<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::UnsupportedUrl(url.to_string()))?;
    if rest.is_empty() {
        return Err(StoreError::UnsupportedUrl(url.to_string()));
    }
    let path = Path::new(rest);
    Ok(if path.is_absolute() {
        path.to_path_buf()
    } else {
        root.join(path)
    })
}

/// Opens (creating if needed) a SQLite file for one of our stores: WAL journal so that
/// the servers of a pool can share their Back End, a busy timeout so that they wait
/// for each other instead of failing, and checkpoints by a task of the pool's own
/// instead of by whichever commit fills the log ([`checkpoint`]).
async fn open_sqlite(path: &Path) -> Result<db::Db> {
    open_sqlite_pool(path).await.map(db::Db::Sqlite)
}

/// [`open_sqlite`]'s pool itself.
async fn open_sqlite_pool(path: &Path) -> Result<sqlx::SqlitePool> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
        // Checkpoints are a task's, not a commit's (see [`checkpoint`]).
        .pragma("wal_autocheckpoint", "0");
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(4)
        // A connection to a local file does not go stale: no ping (a call to the
        // connection's thread) before each use.
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .map_err(|source| StoreError::Database {
            path: path.display().to_string(),
            source,
        })?;
    checkpoint::keep_checkpointed(&pool);
    Ok(pool)
}

impl StoreError {
    /// SQLite said the database is locked (`SQLITE_BUSY`): worth trying again.
    pub fn is_busy(&self) -> bool {
        match self {
            StoreError::Database {
                source: sqlx::Error::Database(db),
                ..
            } => db
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .is_some_and(|c| c & 0xff == 5), // SQLITE_BUSY and its extended codes
            _ => false,
        }
    }

    /// A failure that trying again soon may cure: SQLite busy, a PostgreSQL server that
    /// is starting or unreachable, or a lock or serialization conflict.
    pub fn is_transient(&self) -> bool {
        let StoreError::Database { source, .. } = self else {
            return false;
        };
        match source {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
            sqlx::Error::Database(db) => {
                // 57P03 cannot_connect_now (starting up), 55P03 lock_not_available,
                // 40001 serialization_failure, 40P01 deadlock_detected.
                matches!(
                    db.code().as_deref(),
                    Some("57P03" | "55P03" | "40001" | "40P01")
                ) || self.is_busy()
            }
            _ => false,
        }
    }
}

/// Whether a Back End URL names a PostgreSQL database.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// A database URL without its password, for messages and logs.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        _ => url.to_string(),
    }
}

/// How tandem connects to a PostgreSQL Back End: a statement waits at most 10 s for a
/// lock, and a transaction left idle (a server that stopped mid-way) is ended after 15 s so
/// that it cannot hold the write lock for ever.
fn postgres_options(url: &str, path: &str) -> Result<sqlx::postgres::PgConnectOptions> {
    use std::str::FromStr;
    Ok(sqlx::postgres::PgConnectOptions::from_str(url)
        .at(path)?
        .application_name("tandem")
        .options([
            ("lock_timeout", "10s"),
            ("idle_in_transaction_session_timeout", "15s"),
        ]))
}

fn postgres_pool(acquire_timeout: Duration) -> sqlx::postgres::PgPoolOptions {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(acquire_timeout)
}

/// A pool on a PostgreSQL copy that connects when first used, so that a copy that is
/// down does not stop its pair from opening.
fn connect_postgres_lazy(url: &str, path: &str) -> Result<sqlx::PgPool> {
    Ok(postgres_pool(Duration::from_secs(3)).connect_lazy_with(postgres_options(url, path)?))
}

/// Connects to a PostgreSQL Back End.
async fn open_postgres(url: &str, path: &str) -> Result<db::Db> {
    postgres_pool(Duration::from_secs(10))
        .connect_with(postgres_options(url, path)?)
        .await
        .map(db::Db::Pg)
        .at(path)
}

/// Starts a write transaction that takes SQLite's write lock at once (`BEGIN IMMEDIATE`):
/// a writer then waits its turn under the busy timeout, instead of failing when a read
/// transaction would have to be upgraded.
async fn begin_write(db: &db::Db, path: &str) -> Result<db::Conn> {
    db.begin_write().await.at(path)
}

/// Attaches the database's path to an sqlx error.
trait Context<T> {
    fn at(self, path: &str) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, sqlx::Error> {
    fn at(self, path: &str) -> Result<T> {
        self.map_err(|source| StoreError::Database {
            path: path.to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_resolve_against_the_deployment_root() {
        let root = Path::new("/labs/one");
        assert_eq!(
            sqlite_path("sqlite://backend/pool1.db", root).unwrap(),
            Path::new("/labs/one/backend/pool1.db")
        );
        assert_eq!(
            sqlite_path("sqlite:///var/pool1.db", root).unwrap(),
            Path::new("/var/pool1.db")
        );
        assert!(sqlite_path("postgres://db/pool1", root).is_err());
        assert!(sqlite_path("sqlite://", root).is_err());
    }

    #[test]
    fn a_url_in_a_message_has_no_password() {
        assert_eq!(
            redacted_url("postgres://tandem:s3cret@10.0.0.5:5432/pool1"),
            "postgres://tandem:***@10.0.0.5:5432/pool1"
        );
        assert_eq!(
            redacted_url("postgres://tandem@be1/pool1?sslmode=require"),
            "postgres://tandem@be1/pool1?sslmode=require"
        );
        assert_eq!(
            redacted_url("sqlite://backend/pool1.db"),
            "sqlite://backend/pool1.db"
        );
        assert!(is_postgres_url("postgresql://h/db") && !is_postgres_url("sqlite://x"));
    }
}
