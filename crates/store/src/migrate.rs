//! Versioned schema migrations.
//!
//! Each store kind has an ordered list of migrations compiled into the binary. Opening a
//! database applies, in one transaction each, the ones it has not recorded yet; a database
//! whose recorded version is newer than the binary knows is refused rather than guessed at.
//! Written by hand rather than with sqlx's migrator so that the same list works through
//! sqlx's `Any` driver when PostgreSQL arrives.

use sqlx::SqlitePool;

use crate::{Context, Result, StoreError};

/// One schema step.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub(crate) const BACKEND: &[Migration] = &[
    Migration {
        version: 1,
        name: "central management store",
        sql: include_str!("../migrations/backend/0001_cms.sql"),
    },
    Migration {
        version: 2,
        name: "user data, change log, backup copy and registrations",
        sql: include_str!("../migrations/backend/0002_user_data.sql"),
    },
    Migration {
        version: 3,
        name: "write fences for pool failover",
        sql: include_str!("../migrations/backend/0003_failover.sql"),
    },
    Migration {
        version: 4,
        name: "central management store roles, lost versions and failovers",
        sql: include_str!("../migrations/backend/0004_cms_role.sql"),
    },
    Migration {
        version: 5,
        name: "what a central management store shares with the one it replaced",
        sql: include_str!("../migrations/backend/0005_cms_shared_through.sql"),
    },
    Migration {
        version: 6,
        name: "the history of the central management store's line",
        sql: include_str!("../migrations/backend/0006_cms_history.sql"),
    },
    Migration {
        version: 7,
        name: "changes the backup service could not ship",
        sql: include_str!("../migrations/backend/0007_backup_unshippable.sql"),
    },
    Migration {
        version: 8,
        name: "parts of a full resync, staged until the last arrives",
        sql: include_str!("../migrations/backend/0008_backup_staging.sql"),
    },
];

pub(crate) const REPLICA: &[Migration] = &[
    Migration {
        version: 1,
        name: "local replica",
        sql: include_str!("../migrations/replica/0001_replica.sql"),
    },
    Migration {
        version: 2,
        name: "items by version",
        sql: include_str!("../migrations/replica/0002_version_index.sql"),
    },
    Migration {
        version: 3,
        name: "the history of the replica's line",
        sql: include_str!("../migrations/replica/0003_history.sql"),
    },
];

/// Brings `pool` up to the last migration of `kind`.
pub(crate) async fn run(
    pool: &SqlitePool,
    path: &str,
    kind: &'static str,
    migrations: &[Migration],
) -> Result<()> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS tandem_migrations (
            version INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at INTEGER NOT NULL)",
    )
    .execute(pool)
    .await
    .at(path)?;
    let mut tx = crate::begin_write(pool, path).await?;
    let (current,): (i64,) =
        sqlx::query_as("SELECT COALESCE(MAX(version), 0) FROM tandem_migrations")
            .fetch_one(&mut *tx)
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
        sqlx::raw_sql(m.sql).execute(&mut *tx).await.at(path)?;
        sqlx::query(
            "INSERT INTO tandem_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(m.version)
        .bind(m.name)
        .bind(crate::now_ms())
        .execute(&mut *tx)
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
