//! Stores for tests, on each database a Back End can live in.
//!
//! Every test of a Back End runs twice, on SQLite and on PostgreSQL ([`each_backend!`]).
//! PostgreSQL comes from the cluster `TANDEM_TEST_POSTGRES` names (`.ci/postgres` starts
//! one); each store is a new database in it, so tests never see each other's data. Without
//! the variable the PostgreSQL half passes after saying it was skipped, unless
//! `TANDEM_TEST_POSTGRES_REQUIRED=1` (as in CI), when it fails: a broken setup must not
//! pass as skipped.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::BackEnd;

/// Where a test's stores are made.
#[derive(Debug)]
pub enum TestDb {
    /// SQLite files in a temporary folder.
    Sqlite(tempfile::TempDir),
    /// New databases on the test cluster (its URL, naming a database to connect to).
    Postgres(String),
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        TestDb::Sqlite(tempfile::tempdir().expect("a temporary folder"))
    }

    /// The test cluster, or `None` (after saying so) when there is none.
    pub fn postgres() -> Option<TestDb> {
        match std::env::var("TANDEM_TEST_POSTGRES") {
            Ok(url) if !url.is_empty() => Some(TestDb::Postgres(url)),
            _ if std::env::var("TANDEM_TEST_POSTGRES_REQUIRED").as_deref() == Ok("1") => {
                panic!(
                    "TANDEM_TEST_POSTGRES_REQUIRED=1 but TANDEM_TEST_POSTGRES is not set: start a cluster with `.ci/postgres start DIR` and set it to the URL printed"
                )
            }
            _ => {
                eprintln!("skipped: TANDEM_TEST_POSTGRES is not set (see .ci/postgres)");
                None
            }
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, TestDb::Postgres(_))
    }

    /// The URL of a new, empty store called `name` (a topology's `database_url`).
    pub async fn new_url(&self, name: &str) -> String {
        match self {
            TestDb::Sqlite(dir) => format!("sqlite://{}/{name}.db", dir.path().display()),
            TestDb::Postgres(cluster) => {
                static N: AtomicU32 = AtomicU32::new(0);
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .subsec_nanos();
                let clean: String = name
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() {
                            c.to_ascii_lowercase()
                        } else {
                            '_'
                        }
                    })
                    .take(30)
                    .collect();
                let database = format!(
                    "t{}_{}_{stamp}_{clean}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                );
                let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(cluster)
                    .await
                    .unwrap_or_else(|e| panic!("cannot reach the test cluster {cluster}: {e}"));
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "CREATE DATABASE \"{database}\""
                )))
                .execute(&mut admin)
                .await
                .expect("a new test database");
                with_database(cluster, &database)
            }
        }
    }

    /// A new, empty Back End called `name`.
    pub async fn open(&self, name: &str) -> BackEnd {
        let url = self.new_url(name).await;
        BackEnd::open(&url, std::path::Path::new("/"))
            .await
            .unwrap_or_else(|e| panic!("opening the test store {url}: {e}"))
    }
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or_default();
    match query {
        Some(q) => format!("{scheme}://{authority}/{database}?{q}"),
        None => format!("{scheme}://{authority}/{database}"),
    }
}

/// Declares a test that runs once on each database: `each_backend! { async fn name(db) {
/// … db.open("pool1").await … } }` makes the tests `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! each_backend {
    ($(#[$meta:meta])* async fn $name:ident($db:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($db: $crate::testing::TestDb) $body

            #[tokio::test]
            async fn sqlite() {
                run($crate::testing::TestDb::sqlite()).await
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(db) = $crate::testing::TestDb::postgres() {
                    run(db).await
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_database_replaces_only_the_database_of_the_url() {
        assert_eq!(
            with_database("postgres://tandem@localhost/postgres?host=/tmp/pg", "t1"),
            "postgres://tandem@localhost/t1?host=/tmp/pg"
        );
        assert_eq!(
            with_database("postgres://u:p@10.0.0.1:5432", "t2"),
            "postgres://u:p@10.0.0.1:5432/t2"
        );
    }
}
