//! WAL checkpoints off the path of every write.
//!
//! SQLite in WAL mode appends each commit to the `-wal` file and, by default, the commit
//! that takes the log past 1,000 pages also copies it back into the database file
//! (a checkpoint) before it returns — with two `fsync`s, even at `synchronous=NORMAL`.
//! On these machines that is 5–20 ms, paid by whichever write happened to cross the
//! mark: under a steady trickle of sign-ins, every few hundredth REGISTER waited for the
//! disk, and it set the registrar's p99 (10 ms at 300 sign-ins a second, against a
//! median of 1 ms; `strace` showed the `fsync` pairs on the committing threads).
//!
//! So no connection of ours checkpoints as it commits (`wal_autocheckpoint=0`, set in
//! [`crate::open_sqlite_pool`]): each pool has a task that checkpoints it every
//! [`CHECKPOINT_EVERY`], in `PASSIVE` mode, which copies what no reader still needs and
//! never waits for writers or makes them wait. The log stays as short as the writes of
//! one period; a commit costs its own append and nothing more. The task ends when the
//! pool is closed. Every process that opens a file checkpoints it, so a file shared by a
//! pool's Front Ends is checkpointed while any of them runs; SQLite lets one checkpoint
//! run at a time, and one that finds another running is skipped until the next period.

use std::time::Duration;

/// How often each open SQLite file is checkpointed.
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Checkpoints `pool` every [`CHECKPOINT_EVERY`] until it is closed (a task of the
/// runtime it is called on; none outside one, where the connections checkpoint as they
/// close).
pub(crate) fn keep_checkpointed(pool: &sqlx::SqlitePool) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let pool = pool.clone();
    runtime.spawn(async move {
        let mut closed = std::pin::pin!(pool.close_event());
        let mut every = tokio::time::interval(CHECKPOINT_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            tokio::select! {
                () = &mut closed => return,
                _ = every.tick() => {}
            }
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                // Busy (another process's checkpoint, a restore holding the file) or
                // closing: the next period tries again.
                tracing::debug!(error = %e, "WAL checkpoint skipped");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The database file's length in pages of 4 KiB (SQLite's default page size).
    fn pages(path: &std::path::Path) -> u64 {
        std::fs::metadata(path).map_or(0, |m| m.len()) / 4096
    }

    #[tokio::test]
    async fn writes_reach_the_database_file_through_the_task_not_the_writer() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("wal.db");
        let pool = crate::open_sqlite_pool(&path).await.expect("opened");
        let (autocheckpoint,): (i64,) = sqlx::query_as("PRAGMA wal_autocheckpoint")
            .fetch_one(&pool)
            .await
            .expect("read");
        assert_eq!(autocheckpoint, 0, "a commit never checkpoints");
        sqlx::query("CREATE TABLE t (x BLOB)")
            .execute(&pool)
            .await
            .expect("created");
        // 2,000 pages, a commit each: twice SQLite's own mark of 1,000.
        for _ in 0..2_000 {
            sqlx::query("INSERT INTO t VALUES (randomblob(4000))")
                .execute(&pool)
                .await
                .expect("inserted");
        }
        let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM t")
            .fetch_one(&pool)
            .await
            .expect("counted");
        assert_eq!(rows, 2_000);
        // The task copies the log into the database file: wait for it (a few periods).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while pages(&path) < 1_900 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the database file has {} pages; the log was never checkpointed",
                pages(&path)
            );
            tokio::time::sleep(CHECKPOINT_EVERY / 5).await;
        }
        pool.close().await;
    }
}
