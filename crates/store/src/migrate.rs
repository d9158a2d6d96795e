//! Versioned schema migrations, embedded by `sqlx::migrate!` and run by sqlx's migrator.
//!
//! Each store kind has one folder of migrations per dialect (`migrations/backend/sqlite`,
//! `migrations/backend/postgres`, `migrations/replica`), `NNNN_<what>.sql`, version N the
//! same schema in both (the PostgreSQL form uses `BIGINT` for every integer, since epochs
//! are `term << 32`, and `COLLATE "C"` for every text column, since key ranges and orders
//! are byte orders, as in SQLite). A local replica is always SQLite. sqlx records what it
//! applied, with each file's checksum, in `_sqlx_migrations`: an applied migration whose
//! file changed is refused, and so is a database with a migration this build lacks (a
//! newer tandem's).
//!
//! The migrator runs inside the store's write transaction ([`crate::db::Db::begin_write`]),
//! each migration in a savepoint of it: the Front Ends of a pool that open a new SQLite
//! file together apply each migration once (sqlx itself locks only PostgreSQL), and a
//! failed migration leaves nothing half-applied. A store written by a build from before
//! sqlx recorded migrations (`tandem_migrations`) has its history adopted first: the
//! versions it recorded are marked applied, with their checksums. The old table then
//! holds only [`SQLX_RECORDS`], in every store, so that such an older build refuses the
//! store as too new ("upgrade tandem") instead of running its first migration again.

use sqlx::migrate::{MigrateError, Migrator};

use crate::db::{self, Conn, Db};
use crate::{Context, Result, StoreError};

/// One kind of store and its migrations in each dialect.
#[derive(Debug)]
pub(crate) struct Kind {
    /// What the store is, for errors ("a Back End").
    pub(crate) name: &'static str,
    pub(crate) sqlite: &'static Migrator,
    /// `None` for a store kept only in SQLite.
    pub(crate) postgres: Option<&'static Migrator>,
}

/// The one version `tandem_migrations` records once sqlx keeps the history: above any an
/// older build knows.
pub(crate) const SQLX_RECORDS: i64 = 9_999;

static BACKEND_SQLITE: Migrator = sqlx::migrate!("migrations/backend/sqlite");
static BACKEND_POSTGRES: Migrator = sqlx::migrate!("migrations/backend/postgres");
static REPLICA_SQLITE: Migrator = sqlx::migrate!("migrations/replica");

pub(crate) static BACKEND: Kind = Kind {
    name: "a Back End",
    sqlite: &BACKEND_SQLITE,
    postgres: Some(&BACKEND_POSTGRES),
};

pub(crate) static REPLICA: Kind = Kind {
    name: "a local replica",
    sqlite: &REPLICA_SQLITE,
    postgres: None,
};

impl Kind {
    /// The newest version this build knows.
    fn known(&self) -> i64 {
        self.sqlite.iter().map(|m| m.version).max().unwrap_or(0)
    }
}

/// Brings the store up to the last migration of `kind`.
pub(crate) async fn run(db: &Db, path: &str, kind: &'static Kind) -> Result<()> {
    let migrator = if db.is_postgres() {
        kind.postgres.ok_or_else(|| {
            StoreError::UnsupportedUrl(format!("{path}: {} is kept in SQLite only", kind.name))
        })?
    } else {
        kind.sqlite
    };
    let mut tx = crate::begin_write(db, path).await?;
    let recorded = recorded_before_sqlx(&mut tx, path).await?;
    match recorded {
        Some(SQLX_RECORDS) => {}
        Some(version) if version > kind.known() => return Err(too_new(path, kind, version)),
        Some(version) => direct(&mut tx, migrator, Some(version), true)
            .await
            .map_err(|e| migrate_error(path, kind, e))?,
        None => {}
    }
    direct(&mut tx, migrator, None, false)
        .await
        .map_err(|e| migrate_error(path, kind, e))?;
    if recorded != Some(SQLX_RECORDS) {
        db::query(
            "CREATE TABLE IF NOT EXISTS tandem_migrations (
                version INTEGER PRIMARY KEY,
                name TEXT NOT NULL,
                applied_at INTEGER NOT NULL)",
        )
        .postgres(
            r#"CREATE TABLE IF NOT EXISTS tandem_migrations (
                version BIGINT PRIMARY KEY,
                name TEXT COLLATE "C" NOT NULL,
                applied_at BIGINT NOT NULL)"#,
        )
        .execute(&mut tx)
        .await
        .at(path)?;
        db::query("DELETE FROM tandem_migrations")
            .execute(&mut tx)
            .await
            .at(path)?;
        db::query("INSERT INTO tandem_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
            .bind(SQLX_RECORDS)
            .bind("migrations are recorded by sqlx, in _sqlx_migrations")
            .bind(crate::now_ms())
            .execute(&mut tx)
            .await
            .at(path)?;
    }
    tx.commit().await.at(path)
}

/// sqlx's migrator on the write transaction's connection: to `target`, applying (or with
/// `skip`, only recording) what is missing.
async fn direct(
    tx: &mut Conn,
    migrator: &Migrator,
    target: Option<i64>,
    skip: bool,
) -> std::result::Result<(), MigrateError> {
    match tx {
        Conn::SqliteTx(t) => migrator.run_direct(target, &mut **t, skip).await,
        Conn::PgTx(t) => migrator.run_direct(target, &mut **t, skip).await,
        _ => unreachable!("a store is migrated one copy at a time, in a write transaction"),
    }
}

/// The newest version `tandem_migrations` recorded, when the store has that table.
async fn recorded_before_sqlx(tx: &mut Conn, path: &str) -> Result<Option<i64>> {
    let (tables,): (i64,) = db::query_as(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'tandem_migrations'",
    )
    .postgres(
        "SELECT COUNT(*) FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_name = 'tandem_migrations'",
    )
    .fetch_one(&mut *tx)
    .await
    .at(path)?;
    if tables == 0 {
        return Ok(None);
    }
    let (version,): (i64,) =
        db::query_as("SELECT COALESCE(MAX(version), 0) FROM tandem_migrations")
            .fetch_one(&mut *tx)
            .await
            .at(path)?;
    Ok(Some(version))
}

fn too_new(path: &str, kind: &Kind, found: i64) -> StoreError {
    StoreError::SchemaTooNew {
        path: path.to_string(),
        kind: kind.name,
        found,
        known: kind.known(),
    }
}

fn migrate_error(path: &str, kind: &Kind, e: MigrateError) -> StoreError {
    match e {
        MigrateError::VersionMissing(found) => too_new(path, kind, found),
        MigrateError::Execute(source) | MigrateError::ExecuteMigration(source, _) => {
            StoreError::Database {
                path: path.to_string(),
                source,
            }
        }
        other => StoreError::Migration {
            path: path.to_string(),
            kind: kind.name,
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_from_one_without_gaps_and_alike_in_both_dialects() {
        for migrator in [&BACKEND_SQLITE, &BACKEND_POSTGRES, &REPLICA_SQLITE] {
            for (i, m) in migrator.iter().enumerate() {
                assert_eq!(m.version, i as i64 + 1, "{}", m.description);
            }
        }
        let described = |m: &Migrator| -> Vec<(i64, String)> {
            m.iter()
                .map(|m| (m.version, m.description.to_string()))
                .collect()
        };
        assert_eq!(described(&BACKEND_SQLITE), described(&BACKEND_POSTGRES));
    }
}
