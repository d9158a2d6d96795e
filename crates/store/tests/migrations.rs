//! The schema's migrations through sqlx's migrator, on each database: a store written by a
//! build from before sqlx recorded migrations (`tandem_migrations`) keeps its data and
//! gets the migrations it lacks, and a store of a newer build is refused.

/// The migration files of a dialect, in order, as a build before sqlx applied them.
fn files(postgres: bool) -> Vec<(i64, String)> {
    let dir = format!(
        "{}/migrations/backend/{}",
        env!("CARGO_MANIFEST_DIR"),
        if postgres { "postgres" } else { "sqlite" }
    );
    let mut files: Vec<(i64, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let version = name[..4].parse().unwrap();
            (version, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// A connection to the database at `url`, outside tandem.
enum Raw {
    Pg(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

async fn connect(url: &str, postgres: bool) -> Raw {
    use sqlx::Connection;
    if postgres {
        Raw::Pg(sqlx::PgConnection::connect(url).await.unwrap())
    } else {
        let options = url
            .parse::<sqlx::sqlite::SqliteConnectOptions>()
            .unwrap()
            .create_if_missing(true);
        Raw::Sqlite(
            sqlx::SqliteConnection::connect_with(&options)
                .await
                .unwrap(),
        )
    }
}

/// Runs a script of statements.
async fn exec(url: &str, postgres: bool, script: &str) {
    let script = sqlx::AssertSqlSafe(script.to_string());
    match connect(url, postgres).await {
        Raw::Pg(mut c) => drop(sqlx::raw_sql(script).execute(&mut c).await.unwrap()),
        Raw::Sqlite(mut c) => drop(sqlx::raw_sql(script).execute(&mut c).await.unwrap()),
    }
}

/// The first column of a query's rows, as text.
async fn sql(url: &str, postgres: bool, query: &str) -> Vec<String> {
    let query = sqlx::AssertSqlSafe(query.to_string());
    let rows: Vec<(String,)> = match connect(url, postgres).await {
        Raw::Pg(mut c) => sqlx::query_as(query).fetch_all(&mut c).await.unwrap(),
        Raw::Sqlite(mut c) => sqlx::query_as(query).fetch_all(&mut c).await.unwrap(),
    };
    rows.into_iter().map(|r| r.0).collect()
}

store::each_backend! {
    /// A Back End migrated to version 9 by the old runner, with data in it: opened by
    /// this build, its history becomes sqlx's (1..9 marked applied, not run again), the
    /// newer migrations run, the old table holds only the version that makes an older build
    /// refuse the store, and the data stays; opened again, nothing changes.
    async fn a_store_from_before_sqlx_keeps_its_data_and_gets_what_it_lacks(db) {
        let pg = db.is_postgres();
        let url = db.new_url("old").await;
        let old: Vec<_> = files(pg).into_iter().filter(|(v, _)| *v <= 9).collect();
        let mut script = String::from(
            "CREATE TABLE tandem_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL);",
        );
        for (version, text) in &old {
            script.push_str(text);
            script.push_str(&format!(
                "\nINSERT INTO tandem_migrations VALUES ({version}, 'm{version}', 0);\n"
            ));
        }
        script.push_str("UPDATE backend_principal SET term = 7, writes = 41 WHERE id = 1;");
        exec(&url, pg, &script).await;
        for _ in 0..2 {
            let be = store::BackEnd::open(&url, std::path::Path::new("/")).await.unwrap();
            be.close().await;
            let applied = sql(
                &url,
                pg,
                "SELECT CAST(version AS TEXT) FROM _sqlx_migrations WHERE success ORDER BY _sqlx_migrations.version",
            )
            .await;
            let all: Vec<String> = files(pg).iter().map(|(v, _)| v.to_string()).collect();
            assert_eq!(applied, all);
            let kept = sql(&url, pg, "SELECT CAST(term AS TEXT) FROM backend_principal").await;
            assert_eq!(kept, ["7"]);
            let vote = sql(&url, pg, "SELECT pool FROM cms_vote").await;
            assert_eq!(vote, [""]);
            // An older build finds a version it does not know, and refuses the store.
            let old_table = sql(&url, pg, "SELECT CAST(version AS TEXT) FROM tandem_migrations").await;
            assert_eq!(old_table, ["9999"]);
        }
    }
}

store::each_backend! {
    /// A store a newer build migrated further is refused, with its version and ours, and
    /// left as it was.
    async fn a_store_of_a_newer_build_is_refused(db) {
        let pg = db.is_postgres();
        let url = db.new_url("newer").await;
        let be = store::BackEnd::open(&url, std::path::Path::new("/")).await.unwrap();
        be.close().await;
        exec(
            &url,
            pg,
            &"INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
              VALUES (99, 'from the future', TRUE, X'00', 0)"
                .replace("X'00'", if pg { "'\\x00'::bytea" } else { "X'00'" }),
        )
        .await;
        let Err(err) = store::BackEnd::open(&url, std::path::Path::new("/")).await else {
            panic!("a store of a newer build was opened");
        };
        let said = err.to_string();
        assert!(said.contains("schema version 99") && said.contains("upgrade tandem"), "{said}");
    }
}
