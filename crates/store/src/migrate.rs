//! Versioned schema migrations.
//!
//! Each store kind has an ordered list of migrations compiled into the binary. Opening a
//! database applies, in one transaction each, the ones it has not recorded yet; a database
//! whose recorded version is newer than the binary knows is refused rather than guessed at.
//! A Back End's migrations exist in two dialects, SQLite's and PostgreSQL's, version N
//! the same schema in both (the PostgreSQL form uses `BIGINT` for every integer, since
//! epochs are `term << 32`, and `COLLATE "C"` for every text column, since key ranges and
//! orders are byte orders, as in SQLite). A local replica is always SQLite.
//!
//! Applied under the store's write lock ([`crate::db::Db::begin_write`]), so that the
//! Front Ends of a pool opening a new store together apply each migration once.

use crate::db::{self, Db};
use crate::{Context, Result, StoreError};

/// One schema step.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    /// The step in SQLite's dialect.
    pub sqlite: &'static str,
    /// The step in PostgreSQL's dialect; `None` for a store kept only in SQLite.
    pub postgres: Option<&'static str>,
}

pub(crate) const BACKEND: &[Migration] = &[
    Migration {
        version: 1,
        name: "central management store",
        sqlite: include_str!("../migrations/backend/sqlite/0001_cms.sql"),
        postgres: Some(include_str!("../migrations/backend/postgres/0001_cms.sql")),
    },
    Migration {
        version: 2,
        name: "user data, change log, backup copy and registrations",
        sqlite: include_str!("../migrations/backend/sqlite/0002_user_data.sql"),
        postgres: Some(include_str!(
            "../migrations/backend/postgres/0002_user_data.sql"
        )),
    },
    Migration {
        version: 3,
        name: "write fences for pool failover",
        sqlite: include_str!("../migrations/backend/sqlite/0003_failover.sql"),
        postgres: Some(include_str!(
            "../migrations/backend/postgres/0003_failover.sql"
        )),
    },
    Migration {
        version: 4,
        name: "central management store roles, lost versions and failovers",
        sqlite: include_str!("../migrations/backend/sqlite/0004_cms_role.sql"),
        postgres: Some(include_str!(
            "../migrations/backend/postgres/0004_cms_role.sql"
        )),
    },
    Migration {
        version: 5,
        name: "what a central management store shares with the one it replaced",
        sqlite: include_str!("../migrations/backend/sqlite/0005_cms_shared_through.sql"),
        postgres: Some(include_str!(
            "../migrations/backend/postgres/0005_cms_shared_through.sql"
        )),
    },
    Migration {
        version: 6,
        name: "the history of the central management store's line",
        sqlite: include_str!("../migrations/backend/sqlite/0006_cms_history.sql"),
        postgres: Some(include_str!(
            "../migrations/backend/postgres/0006_cms_history.sql"
        )),
    },
    Migration {
        version: 7,
        name: "changes the backup service could not ship",
        sqlite: include_str!("../migrations/backend/sqlite/0007_backup_unshippable.sql"),
        postgres: Some(include_str!(
            "../migrations/backend/postgres/0007_backup_unshippable.sql"
        )),
    },
    Migration {
        version: 8,
        name: "parts of a full resync, staged until the last arrives",
        sqlite: include_str!("../migrations/backend/sqlite/0008_backup_staging.sql"),
        postgres: Some(include_str!(
            "../migrations/backend/postgres/0008_backup_staging.sql"
        )),
    },
    Migration {
        version: 9,
        name: "which copy of a mirrored Back End is the principal",
        sqlite: include_str!("../migrations/backend/sqlite/0009_principal.sql"),
        postgres: Some(include_str!(
            "../migrations/backend/postgres/0009_principal.sql"
        )),
    },
    Migration {
        version: 10,
        name: "the vote a standby central management store gives",
        sqlite: include_str!("../migrations/backend/sqlite/0010_cms_vote.sql"),
        postgres: Some(include_str!(
            "../migrations/backend/postgres/0010_cms_vote.sql"
        )),
    },
];

pub(crate) const REPLICA: &[Migration] = &[
    Migration {
        version: 1,
        name: "local replica",
        sqlite: include_str!("../migrations/replica/0001_replica.sql"),
        postgres: None,
    },
    Migration {
        version: 2,
        name: "items by version",
        sqlite: include_str!("../migrations/replica/0002_version_index.sql"),
        postgres: None,
    },
    Migration {
        version: 3,
        name: "the history of the replica's line",
        sqlite: include_str!("../migrations/replica/0003_history.sql"),
        postgres: None,
    },
];

/// Brings the store up to the last migration of `kind`.
pub(crate) async fn run(
    db: &Db,
    path: &str,
    kind: &'static str,
    migrations: &[Migration],
) -> Result<()> {
    let mut tx = crate::begin_write(db, path).await?;
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
    let (current,): (i64,) =
        db::query_as("SELECT COALESCE(MAX(version), 0) FROM tandem_migrations")
            .fetch_one(&mut tx)
            .await
            .at(path)?;
    let known = migrations.last().map_or(0, |m| m.version);
    if current > known {
        return Err(StoreError::SchemaTooNew {
            path: path.to_string(),
            kind,
            found: current,
            known,
        });
    }
    for m in migrations.iter().filter(|m| m.version > current) {
        let sql = if db.is_postgres() {
            m.postgres.ok_or(StoreError::UnsupportedUrl(format!(
                "{path}: {kind} is kept in SQLite only"
            )))?
        } else {
            m.sqlite
        };
        db::raw_sql(sql, &mut tx).await.at(path)?;
        db::query("INSERT INTO tandem_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
            .bind(m.version)
            .bind(m.name)
            .bind(crate::now_ms())
            .execute(&mut tx)
            .await
            .at(path)?;
    }
    tx.commit().await.at(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        for list in [BACKEND, REPLICA] {
            for (i, m) in list.iter().enumerate() {
                assert_eq!(m.version, i as i64 + 1, "{}", m.name);
            }
        }
    }
}
