//! A Back End's mirror: a second copy of the database that can take over as principal.
//!
//! The original keeps a pool's Back End on SQL Server with an optional synchronous mirror
//! (`Invoke-CsDatabaseFailover -NewPrincipal Mirror` swaps them). tandem has two:
//!
//! - A PostgreSQL Back End's mirror is a streaming hot standby that PostgreSQL itself keeps
//!   (`pg_basebackup -R`). Statements go to the principal (`db::PgPair`): the copy not in
//!   recovery and not fenced, with the highest term, found again when it stops taking
//!   writes. A planned failover fences the principal under its write lock (a write in
//!   progress finishes, none starts), waits until the standby has replayed to that point,
//!   and promotes it (`pg_promote`); a forced one promotes what the standby has. The
//!   transaction plumbing of both kinds of pair is in `db`; the failovers and the state
//!   an operator reads are here.
//! - A SQLite Back End keeps its mirror itself, here: a second SQLite file written in the
//!   same transactions. Every write transaction takes the write lock of both copies,
//!   principal first, runs each change on both, and commits the principal, then the
//!   mirror. A mirror that misses a commit (unreachable, disk full, a crash between the
//!   two commits) is *behind*: it is left alone, and rebuilt from the principal, whole and
//!   under the principal's write lock, before it is written again.
//!
//! Both copies hold one `backend_principal` row: which copy is principal, in which term,
//! and how many write transactions the copy committed. A failover starts a new term in
//! the copy that takes over, so when two copies disagree the higher term is principal and
//! the other (an old principal come back) is fenced: never written, rebuilt as the mirror.
//! Each server of the pool checks the row inside every write transaction, so all of them
//! follow a failover that any one of them ran. The write counts tell a mirror that missed
//! a commit, even one another server's commit missed.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub use crate::db::Copy;
pub(crate) use crate::db::Pair;
use crate::db::{
    Conn, Db, Orientation, PgPair, PgSide, PrincipalRow, PrincipalTuple, RECORD_LOSS,
    SELECT_PRINCIPAL_ROW, Side, TAKE_OVER, read_row,
};
use crate::{Context, Result, migrate, now_ms, open_sqlite_pool};

/// The mirror as its principal sees it, for `Get-CsDatabaseMirrorState`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MirrorState {
    /// The copy that takes the writes.
    pub principal: Copy,
    /// The failover term (0 until the first `Invoke-CsDatabaseFailover`).
    pub term: i64,
    /// Write transactions the principal has committed (`None`: it does not answer).
    pub principal_writes: Option<i64>,
    /// Write transactions the other copy holds (`None`: unreachable).
    pub mirror_writes: Option<i64>,
    /// The other copy holds every committed write and takes the next ones in step.
    pub synchronized: bool,
    /// How the mirror is kept: `Synchronous` (a SQLite mirror, in the same transactions;
    /// a PostgreSQL standby the primary waits for) or `Asynchronous` (a standby it does
    /// not wait for).
    pub mode: String,
    /// A PostgreSQL standby: the WAL it has yet to replay, in bytes, and how long ago the
    /// newest WAL it replayed was written (PostgreSQL's `replay_lag`).
    pub lag_bytes: Option<i64>,
    pub lag_ms: Option<i64>,
    /// What the last failover lost, in write transactions: 0 after a planned one; after a
    /// forced one, known once the old principal is seen again (`None` until then).
    pub last_failover_lost_writes: Option<i64>,
    /// Whether the principal answered (when not, the state is what the other copy says).
    pub principal_answers: bool,
    /// Why the mirror is behind or unreachable, if it is.
    pub problem: Option<String>,
}

impl MirrorState {
    /// The mirroring status in the product's words.
    pub fn status(&self) -> &'static str {
        if !self.principal_answers {
            return "Disconnected";
        }
        match (self.synchronized, self.mirror_writes) {
            (true, _) => "Synchronized",
            (false, Some(_)) => "Synchronizing",
            (false, None) => "Disconnected",
        }
    }

    /// Write transactions the mirror lacks (unknown while it is unreachable).
    pub fn lag_writes(&self) -> Option<i64> {
        Some((self.principal_writes? - self.mirror_writes?).max(0))
    }
}

/// The standby as the principal sees it: its row of `pg_stat_replication`.
#[derive(Debug, sqlx::FromRow)]
struct Streaming {
    state: String,
    sync_state: String,
    /// WAL the standby has yet to replay, in bytes.
    replay_lag_bytes: Option<i64>,
    replay_lag_ms: Option<i64>,
    /// WAL the standby has yet to write to its disk, in bytes.
    flush_lag_bytes: Option<i64>,
}

/// What a failover to the other copy did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DatabaseFailover {
    pub from: Copy,
    pub to: Copy,
    pub term: i64,
    /// Write transactions the old principal had committed that the new one lacks: 0 in a
    /// planned failover; `None` when the old principal could not be read (forced).
    pub lost_writes: Option<i64>,
    /// The old principal was reachable and is now the mirror, in step.
    pub old_principal_in_step: bool,
}

impl Pair {
    pub(crate) async fn open(primary: &Path, mirror: &Path) -> Result<Pair> {
        let mut sides = Vec::new();
        for path in [primary, mirror] {
            let pool = open_sqlite_pool(path).await?;
            migrate::run(
                &Db::Sqlite(pool.clone()),
                &path.display().to_string(),
                &migrate::BACKEND,
            )
            .await?;
            sides.push(Side {
                pool,
                path: path.to_path_buf(),
            });
        }
        let [p, m]: [Side; 2] = sides.try_into().expect("two sides");
        let pair = Pair {
            sides: [p, m],
            orientation: Orientation::default(),
            behind: AtomicBool::new(false),
            problem: Mutex::new(None),
        };
        let rows = [
            pair.row_of(Copy::Primary)
                .await
                .at(&pair.label(Copy::Primary))?,
            pair.row_of(Copy::Mirror)
                .await
                .at(&pair.label(Copy::Mirror))?,
        ];
        // The copy with the higher term says who is principal; a tie is the same row.
        let (older, newest) = if rows[1].term > rows[0].term {
            (rows[0], rows[1])
        } else {
            (rows[1], rows[0])
        };
        pair.follow(newest);
        if let Some(lost) = newest.loss_seen_in(&older) {
            let side = &pair.sides[newest.principal.index()];
            sqlx::query(RECORD_LOSS)
                .bind(lost)
                .execute(&side.pool)
                .await
                .at(&pair.label(newest.principal))?;
        }
        if rows[0] != rows[1] {
            pair.mark_behind("the copies differ (a commit reached only one of them)".into());
        }
        Ok(pair)
    }

    /// Copies the principal whole onto the mirror, under the principal's write lock, and
    /// puts the mirror back in step. Meeting content files the mirror lacks are copied.
    pub(crate) async fn rebuild_mirror(&self) -> Result<(), sqlx::Error> {
        let me = self.principal();
        let mirror = &self.sides[me.other().index()];
        // The mirror's schema, in case its file is new or was lost.
        Box::pin(migrate::run(
            &Db::Sqlite(mirror.pool.clone()),
            &mirror.path.display().to_string(),
            &migrate::BACKEND,
        ))
        .await
        .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        let mut conn = self.sides[me.index()].pool.acquire().await?;
        sqlx::query("ATTACH DATABASE $1 AS mirror")
            .bind(mirror.path.display().to_string())
            .execute(&mut *conn)
            .await?;
        let copied = async {
            sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
            let tables: Vec<(String,)> = sqlx::query_as(
                "SELECT name FROM main.sqlite_master WHERE type = 'table'
                 AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .fetch_all(&mut *conn)
            .await?;
            let mut script = String::new();
            for (table,) in tables.iter().chain([&("sqlite_sequence".to_string(),)]) {
                script.push_str(&format!(
                    "DELETE FROM mirror.\"{table}\"; INSERT INTO mirror.\"{table}\" SELECT * FROM main.\"{table}\";"
                ));
            }
            sqlx::raw_sql(sqlx::AssertSqlSafe(script))
                .execute(&mut *conn)
                .await?;
            sqlx::query("COMMIT").execute(&mut *conn).await?;
            Ok::<_, sqlx::Error>(())
        }
        .await;
        if copied.is_err() {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        }
        let _ = sqlx::query("DETACH DATABASE mirror")
            .execute(&mut *conn)
            .await;
        copied?;
        copy_files(
            &crate::userdata::file_store_of(&self.sides[me.index()].path),
            &crate::userdata::file_store_of(&mirror.path),
        )
        .await;
        self.behind.store(false, Ordering::SeqCst);
        *self.problem.lock().unwrap_or_else(|e| e.into_inner()) = None;
        tracing::info!(mirror = %mirror.path.display(), "the Back End's mirror was rebuilt from the principal");
        Ok(())
    }

    /// The mirror as the principal sees it. Another server may have failed the Back End
    /// over since this one last wrote: the principal's row says so, and this one follows
    /// it first, as a write would.
    pub(crate) async fn state(&self) -> Result<MirrorState> {
        let mut me = self.principal();
        let mut principal = self.row_of(me).await.at(&self.label(me))?;
        if principal.principal != me || principal.term != self.orientation.term() {
            self.follow(principal);
            me = principal.principal;
            principal = self.row_of(me).await.at(&self.label(me))?;
        }
        let mirror = self.row_of(me.other()).await;
        let problem = self
            .problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mirror_writes = mirror.as_ref().ok().map(|r| r.writes);
        let synchronized =
            !self.behind.load(Ordering::SeqCst) && mirror.as_ref().is_ok_and(|r| *r == principal);
        Ok(MirrorState {
            principal: me,
            term: principal.term,
            principal_writes: Some(principal.writes),
            mirror_writes,
            synchronized,
            mode: "Synchronous".into(),
            lag_bytes: None,
            lag_ms: None,
            last_failover_lost_writes: (principal.lost_writes >= 0)
                .then_some(principal.lost_writes),
            principal_answers: true,
            problem: match mirror {
                Err(e) => Some(format!("the mirror cannot be read: {e}")),
                Ok(_) if synchronized => None,
                Ok(r) => problem.or(Some(format!(
                    "it holds {} write transactions in term {}, the principal {} in term {}",
                    r.writes, r.term, principal.writes, principal.term
                ))),
            },
        })
    }

    /// Makes `to` the principal. Planned (the current principal answers): the mirror is
    /// brought in step first, so nothing is lost, and the old principal becomes the mirror,
    /// in step. Forced (`force`, the principal does not answer): the mirror takes over with
    /// what it holds, and the old principal is fenced by the new term and rebuilt as the
    /// mirror when it answers again.
    pub(crate) async fn fail_over(
        self: &Arc<Pair>,
        to: Copy,
        force: bool,
    ) -> Result<DatabaseFailover> {
        let from = self.principal();
        if from == to {
            return Err(crate::StoreError::Refused(format!(
                "the {} copy is already the principal",
                to.as_str()
            )));
        }
        let label = self.label(to);
        let planned = async {
            let mut tx = self.begin_write().await?;
            let Conn::PairTx {
                mirror: Some(_), ..
            } = &tx
            else {
                return Err(sqlx::Error::Protocol(
                    "the mirror is not in step with the principal".into(),
                ));
            };
            let term = self.orientation.term() + 1;
            crate::db::query(TAKE_OVER)
                .bind(term)
                .bind(to.as_str())
                .bind(now_ms())
                .bind(0)
                .execute(&mut tx)
                .await?;
            // Both copies changed in the one transaction, or the failover did not happen.
            let Conn::PairTx {
                principal, mirror, ..
            } = tx
            else {
                unreachable!()
            };
            let mirror = mirror.expect("checked above");
            mirror.commit().await?;
            principal.commit().await?;
            Ok::<_, sqlx::Error>(term)
        };
        match planned.await {
            Ok(term) => {
                self.orientation.set(to, term);
                Ok(DatabaseFailover {
                    from,
                    to,
                    term,
                    lost_writes: Some(0),
                    old_principal_in_step: true,
                })
            }
            Err(e) if !force => Err(crate::StoreError::Refused(format!(
                "a planned failover to the {} copy needs both copies in step, and {e}; \
                 Invoke-CsDatabaseFailover -Force makes the {} copy principal with what it holds",
                to.as_str(),
                to.as_str()
            ))),
            Err(_) => {
                // Forced: the new principal alone starts the new term.
                let old = self.row_of(from).await.ok();
                let side = &self.sides[to.index()];
                let mut tx = side.pool.begin_with("BEGIN IMMEDIATE").await.at(&label)?;
                let row = read_row(&mut tx).await.at(&label)?;
                let term = row.term.max(self.orientation.term()) + 1;
                let lost = old.as_ref().map(|o| (o.writes - row.writes).max(0));
                sqlx::query(TAKE_OVER)
                    .bind(term)
                    .bind(to.as_str())
                    .bind(now_ms())
                    .bind(lost.unwrap_or(-1))
                    .execute(&mut *tx)
                    .await
                    .at(&label)?;
                tx.commit().await.at(&label)?;
                self.orientation.set(to, term);
                self.mark_behind(format!(
                    "the {} copy was made principal without it (forced failover)",
                    to.as_str()
                ));
                Ok(DatabaseFailover {
                    from,
                    to,
                    term,
                    lost_writes: lost,
                    old_principal_in_step: false,
                })
            }
        }
    }
}

/// Copies the files of `from` that `to` lacks (meeting content is named by its hash).
async fn copy_files(from: &Path, to: &Path) {
    let Ok(mut entries) = tokio::fs::read_dir(from).await else {
        return;
    };
    let _ = tokio::fs::create_dir_all(to).await;
    while let Ok(Some(entry)) = entries.next_entry().await {
        let target = to.join(entry.file_name());
        if entry.file_name().to_string_lossy().contains(".tmp")
            || tokio::fs::try_exists(&target).await.unwrap_or(false)
        {
            continue;
        }
        let tmp = to.join(format!(
            "{}.tmp{}",
            entry.file_name().to_string_lossy(),
            std::process::id()
        ));
        if tokio::fs::copy(entry.path(), &tmp).await.is_ok() {
            let _ = tokio::fs::rename(&tmp, &target).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// PostgreSQL: the standby PostgreSQL streams to.

impl PgPair {
    /// Connects to both copies (a copy that is down is connected to when it answers),
    /// applies migrations on the principal (the standby gets them by streaming) and finds
    /// the principal.
    pub(crate) async fn open(primary: &str, mirror: &str) -> Result<PgPair> {
        let mut sides = Vec::new();
        for url in [primary, mirror] {
            let label = crate::redacted_url(url);
            let pool = crate::connect_postgres_lazy(url, &label)?;
            sides.push(PgSide { pool, label });
        }
        let [p, m]: [PgSide; 2] = sides.try_into().expect("two sides");
        let pair = PgPair {
            sides: [p, m],
            orientation: Orientation::default(),
        };
        // The copies not in recovery can be written; migrations go there first.
        let mut writable = vec![];
        let mut why = vec![];
        for copy in [Copy::Primary, Copy::Mirror] {
            let side = &pair.sides[copy.index()];
            match sqlx::query_as::<_, (bool,)>("SELECT pg_is_in_recovery()")
                .fetch_one(&side.pool)
                .await
            {
                Ok((false,)) => writable.push(copy),
                Ok((true,)) => {}
                Err(e) => why.push(format!("{}: {e}", side.label)),
            }
        }
        if writable.is_empty() {
            return Err(crate::StoreError::Refused(format!(
                "no copy of the Back End takes writes: both are standbys or do not answer ({}); \
                 Invoke-CsDatabaseFailover -NewPrincipal <Primary|Mirror> -Force promotes one",
                why.join("; ")
            )));
        }
        for copy in writable {
            let side = &pair.sides[copy.index()];
            migrate::run(&Db::Pg(side.pool.clone()), &side.label, &migrate::BACKEND).await?;
        }
        pair.resolve().await.at(&pair.sides[0].label)?;
        Ok(pair)
    }

    fn label(&self, copy: Copy) -> &str {
        &self.sides[copy.index()].label
    }

    /// The standby as the principal sees it: `pg_stat_replication` on the principal, the
    /// replayed row on the standby.
    pub(crate) async fn state(&self) -> Result<MirrorState> {
        // Another server may have failed the Back End over since this one last wrote.
        let mut me = self.principal();
        let principal = match self.copy_state(me).await {
            Ok(s) if !s.in_recovery && !s.fenced => s,
            Ok(_) | Err(_) => match self.resolve().await {
                Ok(copy) => {
                    me = copy;
                    self.copy_state(me).await.at(self.label(me))?
                }
                // No copy takes writes: the state the runbook reads before failing over.
                Err(_) => return Ok(self.state_without_principal(me).await),
            },
        };
        let standby = self.copy_state(me.other()).await;
        let streaming: Option<Streaming> = sqlx::query_as(
            "SELECT state, sync_state,
                    pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS replay_lag_bytes,
                    (EXTRACT(EPOCH FROM replay_lag) * 1000)::bigint AS replay_lag_ms,
                    pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn)::bigint AS flush_lag_bytes
             FROM pg_stat_replication ORDER BY backend_start DESC LIMIT 1",
        )
        .fetch_optional(&self.sides[me.index()].pool)
        .await
        .at(self.label(me))?;
        // An old principal come back writable (lower term): fence it, and count what it
        // had committed that the failover lost.
        if let Ok(other) = &standby
            && !other.in_recovery
            && !other.fenced
            && !other.read_only
            && other.row.term < principal.row.term
        {
            self.resolve().await.at(self.label(me))?;
        }
        let mirror_writes = standby.as_ref().ok().map(|s| s.row.writes);
        let (mode, lag_bytes, lag_ms, flush_lag_bytes, state) = match &streaming {
            Some(s) => (
                match s.sync_state.as_str() {
                    "sync" | "quorum" => "Synchronous".to_string(),
                    _ => "Asynchronous".to_string(),
                },
                s.replay_lag_bytes,
                s.replay_lag_ms,
                s.flush_lag_bytes,
                s.state.clone(),
            ),
            None => ("Asynchronous".to_string(), None, None, None, String::new()),
        };
        // A standby reports where it replayed to only with its next status message when
        // nothing else changed (up to `wal_receiver_status_interval`, 10 s), so on an idle
        // principal a few bytes of WAL that are no write of ours (a checkpoint's, the
        // running-transactions record) look unreplayed for that long. A synchronous standby
        // holds every committed write once it has flushed all WAL or replayed every write
        // transaction; an asynchronous one is in step only when nothing is left to replay.
        let writes_in_step = standby
            .as_ref()
            .is_ok_and(|s| s.row.writes == principal.row.writes);
        let holds_everything = lag_bytes == Some(0)
            || (mode == "Synchronous" && (flush_lag_bytes == Some(0) || writes_in_step));
        let synchronized = state == "streaming"
            && holds_everything
            && standby.as_ref().is_ok_and(|s| s.in_recovery);
        let problem = match (&standby, &streaming) {
            (Err(e), _) => Some(format!("the standby does not answer: {e}")),
            (Ok(s), _) if !s.in_recovery => Some(
                "the other copy is not a standby (a fenced old principal): rebuild it as the standby (pg_rewind, or pg_basebackup from the principal)"
                    .to_string(),
            ),
            (Ok(_), None) => Some("the standby is not streaming from the principal".to_string()),
            (Ok(_), Some(_)) if !synchronized => Some(format!(
                "the standby is {state}, {} bytes of WAL behind",
                lag_bytes.unwrap_or(0)
            )),
            _ => None,
        };
        Ok(MirrorState {
            principal: me,
            term: principal.row.term,
            principal_writes: Some(principal.row.writes),
            mirror_writes: if streaming.is_some() {
                mirror_writes
            } else {
                None
            },
            synchronized,
            mode,
            lag_bytes,
            lag_ms,
            last_failover_lost_writes: (principal.row.lost_writes >= 0)
                .then_some(principal.row.lost_writes),
            principal_answers: true,
            problem,
        })
    }

    /// What can be said while no copy takes writes (the principal lost, the failover not
    /// run yet): what the standby holds, and the command that makes it principal.
    async fn state_without_principal(&self, last: Copy) -> MirrorState {
        let standby = self.copy_state(last.other()).await.ok();
        let held = standby
            .as_ref()
            .map_or("does not answer either".to_string(), |s| {
                format!("holds {} write transactions", s.row.writes)
            });
        MirrorState {
            principal: last,
            term: self.orientation.term(),
            principal_writes: None,
            mirror_writes: standby.as_ref().map(|s| s.row.writes),
            synchronized: false,
            mode: "Asynchronous".into(),
            lag_bytes: None,
            lag_ms: None,
            last_failover_lost_writes: None,
            principal_answers: false,
            problem: Some(format!(
                "the principal {} does not answer, and the {} copy {} {held}; Invoke-CsDatabaseFailover -NewPrincipal {} -Force makes it principal",
                self.label(last),
                last.other().as_str(),
                self.label(last.other()),
                last.other().as_str()
            )),
        }
    }

    /// Promotes the standby. Planned: the principal is fenced under its write lock (a write
    /// in progress finishes, none starts), the standby replays up to that point, then is
    /// promoted: nothing is lost. Forced: the standby is promoted with what it has, and the
    /// old principal, if it answers, is fenced.
    pub(crate) async fn fail_over(&self, to: Copy, force: bool) -> Result<DatabaseFailover> {
        let from = self.principal();
        if from == to {
            return Err(crate::StoreError::Refused(format!(
                "the {} copy is already the principal",
                to.as_str()
            )));
        }
        let old = &self.sides[from.index()];
        let new = &self.sides[to.index()];
        let before = self.copy_state(from).await.ok();
        let standby = self.copy_state(to).await.at(&new.label)?;
        if !standby.in_recovery {
            return Err(crate::StoreError::Refused(format!(
                "{} is not a standby of the principal (it was fenced and not rebuilt): rebuild it as the standby first (pg_rewind, or pg_basebackup from {})",
                new.label, old.label
            )));
        }
        let fenced_at = match crate::db::fence(&old.pool).await {
            Ok(lsn) => Some(lsn),
            Err(e) if force => {
                tracing::warn!("the old principal {} could not be fenced: {e}", old.label);
                None
            }
            Err(e) => {
                return Err(crate::StoreError::Refused(format!(
                    "the principal {} cannot be fenced ({}); Invoke-CsDatabaseFailover -Force promotes the standby with what it has",
                    old.label,
                    crate::db::describe(&e)
                )));
            }
        };
        if let Some(lsn) = &fenced_at {
            // The standby replays everything the principal committed before the fence.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            let mut backoff = clock::Backoff::polling();
            loop {
                let (caught_up,): (bool,) =
                    sqlx::query_as("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn")
                        .bind(lsn)
                        .fetch_one(&new.pool)
                        .await
                        .at(&new.label)?;
                if caught_up {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    if force {
                        break;
                    }
                    let _ = unfence(&old.pool).await;
                    return Err(crate::StoreError::Refused(format!(
                        "the standby {} did not replay the principal's last writes within 30 s; nothing changed. Invoke-CsDatabaseFailover -Force promotes it with what it has",
                        new.label
                    )));
                }
                tokio::time::sleep(backoff.next_wait()).await;
            }
        }
        let (promoted,): (bool,) = sqlx::query_as("SELECT pg_promote(true, 60)")
            .fetch_one(&new.pool)
            .await
            .at(&new.label)?;
        if !promoted {
            return Err(crate::StoreError::Refused(format!(
                "{} was not promoted within 60 s (its log says why)",
                new.label
            )));
        }
        // A synchronous mirror's settings came over with it: the promoted copy would wait
        // for a standby that is not there yet, and no commit would return. It commits
        // alone until a standby is rebuilt (which sets them again).
        let (waits_for,): (String,) = sqlx::query_as("SHOW synchronous_standby_names")
            .fetch_one(&new.pool)
            .await
            .at(&new.label)?;
        if !waits_for.is_empty() {
            for statement in [
                "ALTER SYSTEM SET synchronous_standby_names = ''",
                "SELECT pg_reload_conf()",
            ] {
                sqlx::query(statement)
                    .execute(&new.pool)
                    .await
                    .at(&new.label)?;
            }
        }
        let term = before
            .as_ref()
            .map_or(standby.row.term, |b| b.row.term.max(standby.row.term))
            + 1;
        let mut tx = crate::db::begin_pg_write(&new.pool).await.at(&new.label)?;
        let lost_writes = match &before {
            _ if fenced_at.is_some() => Some(0),
            Some(b) => Some((b.row.writes - standby.row.writes).max(0)),
            None => None,
        };
        sqlx::query(TAKE_OVER)
            .bind(term)
            .bind(to.as_str())
            .bind(now_ms())
            .bind(lost_writes.unwrap_or(-1))
            .execute(&mut *tx)
            .await
            .at(&new.label)?;
        tx.commit().await.at(&new.label)?;
        self.orientation.set(to, term);
        Ok(DatabaseFailover {
            from,
            to,
            term,
            lost_writes,
            old_principal_in_step: false,
        })
    }
}

/// Lifts a fence set by a failover that did not happen after all.
async fn unfence(pool: &sqlx::PgPool) -> Result<(), sqlx::Error> {
    for statement in [
        "ALTER SYSTEM RESET default_transaction_read_only",
        "SELECT pg_reload_conf()",
    ] {
        sqlx::query(statement).execute(pool).await?;
    }
    // Read-write whatever this session has heard of the reload yet.
    let mut tx = pool.begin_with("BEGIN READ WRITE").await?;
    sqlx::query("UPDATE backend_principal SET fenced = 0 WHERE id = 1")
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Records, in the principal at `principal_url`, what the last forced failover lost: what
/// the old principal at `old_url` committed beyond the point the principal took over at.
/// For the lab, which reads an old primary (started read-only) before it rebuilds it as
/// the standby. Returns the loss, or `None` when it was known already.
pub async fn record_loss_from(principal_url: &str, old_url: &str) -> Result<Option<i64>> {
    let label = crate::redacted_url(principal_url);
    let row = |url: String| async move {
        let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await?;
        let t: PrincipalTuple = sqlx::query_as(SELECT_PRINCIPAL_ROW)
            .fetch_one(&mut c)
            .await?;
        Ok::<_, sqlx::Error>((c, PrincipalRow::from_tuple(t)))
    };
    let (_, old) = row(old_url.to_string()).await.at(&label)?;
    let (mut c, principal) = row(principal_url.to_string()).await.at(&label)?;
    let Some(lost) = principal.loss_seen_in(&old) else {
        return Ok(None);
    };
    sqlx::query(RECORD_LOSS)
        .bind(lost)
        .execute(&mut c)
        .await
        .at(&label)?;
    Ok(Some(lost))
}
