//! One way to run a statement on either database a store can live in.
//!
//! A Back End is a SQLite file in a lab and a PostgreSQL database in a deployment (the
//! topology's `database_url` says which); a server's local replica is always SQLite. The
//! stores are written once against this module: [`query`] and [`query_as`] take the SQL
//! and its arguments, and run them on a [`Db`] (a pool) or a [`Conn`] (a transaction or
//! one pooled connection) through sqlx's own driver for that database. The SQL is shared
//! where both databases read it the same way (`$n` placeholders, `ON CONFLICT`,
//! `RETURNING`); a statement that must differ carries its PostgreSQL form beside the
//! SQLite one ([`Query::postgres`]), so the two sit side by side at the one place they
//! differ.
//!
//! Not sqlx's `Any` driver: it decodes integers loosely and hides the database, where the
//! Back End wants PostgreSQL's advisory locks and snapshot transactions (see
//! [`Db::begin_write`], [`Db::begin_snapshot`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool};

/// The advisory lock every write transaction of a PostgreSQL Back End takes first: one
/// writer at a time, as SQLite's write lock gives, which the lease, the `MAX + 1`
/// versions, the fence checks and the change log's order rely on. The value is arbitrary
/// ("tandem" in ASCII); it only has to be the same everywhere.
pub(crate) const WRITE_LOCK: i64 = 0x74_61_6e_64_65_6d;

/// How a PostgreSQL read transaction sees one snapshot of the store.
const PG_SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";

/// A store's connection pool.
#[derive(Debug, Clone)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Pg(PgPool),
    /// A SQLite Back End with a mirror it writes in the same transactions.
    Pair(Arc<Pair>),
    /// A PostgreSQL Back End and its streaming standby: statements go to whichever is
    /// principal, found again when it stops taking writes.
    PgPair(Arc<PgPair>),
}

/// A transaction, or one connection taken from the pool for several reads.
#[derive(Debug)]
pub(crate) enum Conn {
    SqliteTx(sqlx::Transaction<'static, Sqlite>),
    Sqlite(PoolConnection<Sqlite>),
    PgTx(sqlx::Transaction<'static, Postgres>),
    Pg(PoolConnection<Postgres>),
    /// A write transaction on the principal copy of a SQLite pair and, unless the mirror
    /// is behind (it missed a commit and waits to be rebuilt), on the mirror in step.
    PairTx {
        principal: sqlx::Transaction<'static, Sqlite>,
        mirror: Option<sqlx::Transaction<'static, Sqlite>>,
        pair: Arc<Pair>,
    },
}

impl Db {
    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self, Db::Pg(_) | Db::PgPair(_))
    }

    /// Starts a write transaction that holds the store's one write lock from its first
    /// statement: SQLite's `BEGIN IMMEDIATE`, PostgreSQL's [`WRITE_LOCK`]. A writer waits
    /// its turn (under the busy or lock timeout) instead of failing half-way.
    pub(crate) async fn begin_write(&self) -> Result<Conn, sqlx::Error> {
        match self {
            Db::Sqlite(pool) => Ok(Conn::SqliteTx(pool.begin_with("BEGIN IMMEDIATE").await?)),
            Db::Pg(pool) => Ok(Conn::PgTx(begin_pg_write(pool).await?)),
            Db::Pair(pair) => pair.begin_write().await,
            Db::PgPair(pair) => pair.begin_write().await,
        }
    }

    /// Starts a read-only transaction whose reads all see one snapshot of the store.
    pub(crate) async fn begin_snapshot(&self) -> Result<Conn, sqlx::Error> {
        match self {
            // A deferred SQLite transaction reads one snapshot (WAL) from its first read.
            Db::Sqlite(pool) => Ok(Conn::SqliteTx(pool.begin().await?)),
            Db::Pg(pool) => Ok(Conn::PgTx(pool.begin_with(PG_SNAPSHOT).await?)),
            Db::Pair(pair) => Ok(Conn::SqliteTx(pair.principal_pool().begin().await?)),
            Db::PgPair(pair) => Ok(Conn::PgTx(
                pair.principal_pool().begin_with(PG_SNAPSHOT).await?,
            )),
        }
    }

    /// One connection of the pool, for several reads in a row.
    pub(crate) async fn acquire(&self) -> Result<Conn, sqlx::Error> {
        match self {
            Db::Sqlite(pool) => Ok(Conn::Sqlite(pool.acquire().await?)),
            Db::Pg(pool) => Ok(Conn::Pg(pool.acquire().await?)),
            Db::Pair(pair) => Ok(Conn::Sqlite(pair.principal_pool().acquire().await?)),
            Db::PgPair(pair) => Ok(Conn::Pg(pair.principal_pool().acquire().await?)),
        }
    }

    pub(crate) async fn close(&self) {
        match self {
            Db::Sqlite(pool) => pool.close().await,
            Db::Pg(pool) => pool.close().await,
            Db::Pair(pair) => pair.close().await,
            Db::PgPair(pair) => pair.close().await,
        }
    }
}

impl Conn {
    /// Commits a transaction; a pooled connection has nothing to commit.
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Conn::SqliteTx(tx) => tx.commit().await,
            Conn::PgTx(tx) => tx.commit().await,
            Conn::Sqlite(_) | Conn::Pg(_) => Ok(()),
            Conn::PairTx {
                principal,
                mirror,
                pair,
            } => {
                // The principal first: once it has committed, the write is acknowledged
                // whatever happens to the mirror, which is rebuilt if it missed it.
                principal.commit().await?;
                if let Some(mirror) = mirror
                    && let Err(e) = mirror.commit().await
                {
                    pair.mirror_missed(&e);
                }
                Ok(())
            }
        }
    }

    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self, Conn::PgTx(_) | Conn::Pg(_))
    }
}

/// Where a statement runs: a pool or one connection, of either database.
pub(crate) enum On<'a> {
    SqlitePool(&'a SqlitePool),
    Sqlite(&'a mut SqliteConnection),
    PgPool(&'a PgPool),
    Pg(&'a mut PgConnection),
    /// A SQLite pair outside a transaction: reads go to the principal, and a write runs in
    /// a write transaction of its own on both copies.
    PairPool(&'a Arc<Pair>),
    /// A PostgreSQL pair outside a transaction: a write runs in a write transaction of its
    /// own (which checks the principal still takes writes), a read on the principal,
    /// found again once if it fails.
    PgPairPool(&'a Arc<PgPair>),
    /// A write transaction of a SQLite pair: reads on the principal, writes on both.
    Pair(
        &'a mut SqliteConnection,
        &'a mut Option<sqlx::Transaction<'static, Sqlite>>,
        &'a Pair,
    ),
}

impl<'a> From<&'a Db> for On<'a> {
    fn from(db: &'a Db) -> On<'a> {
        match db {
            Db::Sqlite(pool) => On::SqlitePool(pool),
            Db::Pg(pool) => On::PgPool(pool),
            Db::Pair(pair) => On::PairPool(pair),
            Db::PgPair(pair) => On::PgPairPool(pair),
        }
    }
}

impl<'a> From<&'a mut Conn> for On<'a> {
    fn from(conn: &'a mut Conn) -> On<'a> {
        match conn {
            Conn::SqliteTx(tx) => On::Sqlite(tx),
            Conn::Sqlite(c) => On::Sqlite(c),
            Conn::PgTx(tx) => On::Pg(tx),
            Conn::Pg(c) => On::Pg(c),
            Conn::PairTx {
                principal,
                mirror,
                pair,
            } => On::Pair(principal, mirror, pair),
        }
    }
}

impl On<'_> {
    /// A write on a pair outside a transaction runs in a write transaction of its own (on
    /// both copies of a SQLite pair; on the checked principal of a PostgreSQL one): begins
    /// it. `None` where the statement runs as `on` says (`writes` is asked only of a pair).
    async fn own_write(&self, writes: impl Fn() -> bool) -> Result<Option<Conn>, sqlx::Error> {
        match self {
            On::PairPool(pair) if writes() => pair.begin_write().await.map(Some),
            On::PgPairPool(pair) if writes() => pair.begin_write().await.map(Some),
            _ => Ok(None),
        }
    }
}

/// Whether a statement changes the store (and so must reach a SQLite mirror too).
fn writes(sql: &str) -> bool {
    let word = sql
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default();
    !["SELECT", "WITH", "VALUES", ""]
        .iter()
        .any(|read| word.eq_ignore_ascii_case(read))
}

/// A statement's argument. Both databases take each of these natively.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(Option<i64>),
    Text(Option<String>),
    Bytes(Vec<u8>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::Int(Some(v))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Arg {
        Arg::Int(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(Some(v.to_string()))
    }
}
impl From<&&str> for Arg {
    fn from(v: &&str) -> Arg {
        Arg::Text(Some(v.to_string()))
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::Text(Some(v))
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Arg {
        Arg::Text(Some(v.clone()))
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Arg {
        Arg::Text(v.map(str::to_string))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Arg {
        Arg::Text(v)
    }
}
impl From<&Option<String>> for Arg {
    fn from(v: &Option<String>) -> Arg {
        Arg::Text(v.clone())
    }
}
impl From<Vec<u8>> for Arg {
    fn from(v: Vec<u8>) -> Arg {
        Arg::Bytes(v)
    }
}
impl From<&[u8]> for Arg {
    fn from(v: &[u8]) -> Arg {
        Arg::Bytes(v.to_vec())
    }
}

/// Binds `args` to an sqlx query of either kind (`query` or `query_as`), moving them in:
/// SQLite keeps each argument as it is given.
macro_rules! bind_all {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for arg in $args {
            q = match arg {
                Arg::Int(v) => q.bind(v),
                Arg::Text(v) => q.bind(v),
                Arg::Bytes(v) => q.bind(v),
            };
        }
        q
    }};
}

/// Binds `args` by reference. PostgreSQL encodes each argument into its message as it is
/// bound, so this costs what moving them in would, and a statement that found its
/// principal gone runs again on the next without a copy of its arguments made first.
macro_rules! bind_all_by_ref {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for arg in $args {
            q = match arg {
                Arg::Int(v) => q.bind(*v),
                Arg::Text(v) => q.bind(v.as_deref()),
                Arg::Bytes(v) => q.bind(v.as_slice()),
            };
        }
        q
    }};
}

/// A statement that returns no rows.
#[derive(Debug, Clone)]
#[must_use = "a statement does nothing until it is executed"]
pub(crate) struct Query<'q> {
    sqlite: &'q str,
    pg: &'q str,
    args: Vec<Arg>,
}

/// The outcome of [`Query::execute`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Done {
    rows: u64,
}

impl Done {
    pub(crate) fn rows_affected(&self) -> u64 {
        self.rows
    }
}

/// A statement whose SQL is the same on both databases (see [`Query::postgres`]).
pub(crate) fn query(sql: &str) -> Query<'_> {
    Query {
        sqlite: sql,
        pg: sql,
        args: Vec::new(),
    }
}

/// A statement that returns rows of type `T` (a tuple, usually).
pub(crate) fn query_as<T>(sql: &str) -> QueryAs<'_, T> {
    QueryAs {
        query: query(sql),
        row: std::marker::PhantomData,
    }
}

/// Several statements separated by `;`, without arguments, run as given.
pub(crate) async fn raw_sql<'e>(sql: &str, on: impl Into<On<'e>>) -> Result<(), sqlx::Error> {
    let on = on.into();
    let Some(mut tx) = on.own_write(|| true).await? else {
        return raw_sql_here(sql, on).await;
    };
    raw_sql_here(sql, On::from(&mut tx)).await?;
    tx.commit().await
}

/// [`raw_sql`] where `on` says, a pair's write already in its transaction.
async fn raw_sql_here(sql: &str, on: On<'_>) -> Result<(), sqlx::Error> {
    let raw = || sqlx::raw_sql(sqlx::AssertSqlSafe(sql));
    match on {
        On::SqlitePool(p) => raw().execute(p).await.map(drop),
        On::Sqlite(c) => raw().execute(c).await.map(drop),
        On::PgPool(p) => raw().execute(p).await.map(drop),
        On::Pg(c) => raw().execute(c).await.map(drop),
        On::Pair(principal, mirror, pair) => {
            raw().execute(principal).await?;
            if let Some(m) = mirror.as_mut()
                && let Err(e) = raw().execute(&mut **m).await
            {
                pair.mirror_missed(&e);
                *mirror = None;
            }
            Ok(())
        }
        On::PairPool(_) | On::PgPairPool(_) => unreachable!("{OWN_WRITE}"),
    }
}

/// Why a pair outside a transaction never reaches the `_here` functions.
const OWN_WRITE: &str = "a pair's write runs in a write transaction of its own (On::own_write)";

/// Runs a write on a pair's mirror transaction too; a mirror that fails it falls behind.
async fn on_mirror_too(
    query: &Query<'_>,
    mirror: &mut Option<sqlx::Transaction<'static, Sqlite>>,
    pair: &Pair,
) {
    if let Some(m) = mirror.as_mut()
        && let Err(e) = query.clone().sqlite_query().execute(&mut **m).await
    {
        pair.mirror_missed(&e);
        *mirror = None;
    }
}

impl<'q> Query<'q> {
    pub(crate) fn bind(mut self, arg: impl Into<Arg>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// The statement's PostgreSQL form, where the two databases spell it differently.
    pub(crate) fn postgres(mut self, sql: &'q str) -> Self {
        self.pg = sql;
        self
    }

    pub(crate) async fn execute<'e>(self, on: impl Into<On<'e>>) -> Result<Done, sqlx::Error> {
        let on = on.into();
        let Some(mut tx) = on.own_write(|| true).await? else {
            return self.execute_here(on).await;
        };
        let done = self.execute_here(On::from(&mut tx)).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// [`Query::execute`] where `on` says, a pair's write already in its transaction.
    async fn execute_here(self, on: On<'_>) -> Result<Done, sqlx::Error> {
        let rows = match on {
            On::SqlitePool(p) => self.sqlite_query().execute(p).await?.rows_affected(),
            On::Sqlite(c) => self.sqlite_query().execute(c).await?.rows_affected(),
            On::PgPool(p) => self.pg_query().execute(p).await?.rows_affected(),
            On::Pg(c) => self.pg_query().execute(c).await?.rows_affected(),
            On::Pair(principal, mirror, pair) => {
                on_mirror_too(&self, mirror, pair).await;
                self.sqlite_query()
                    .execute(principal)
                    .await?
                    .rows_affected()
            }
            On::PairPool(_) | On::PgPairPool(_) => unreachable!("{OWN_WRITE}"),
        };
        Ok(Done { rows })
    }

    fn sqlite_query(self) -> sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments> {
        bind_all!(sqlx::query(sqlx::AssertSqlSafe(self.sqlite)), self.args)
    }

    fn pg_query(&self) -> sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments> {
        bind_all_by_ref!(sqlx::query(sqlx::AssertSqlSafe(self.pg)), &self.args)
    }
}

/// A statement that returns rows; see [`query_as`].
#[derive(Debug)]
#[must_use = "a statement does nothing until it is fetched"]
pub(crate) struct QueryAs<'q, T> {
    query: Query<'q>,
    row: std::marker::PhantomData<fn() -> T>,
}

/// A row type both databases decode.
pub(crate) trait Row:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}
impl<T> Row for T where T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{}

/// Runs one fetch method of a [`QueryAs`] on whichever database `on` is: a write on a pair
/// outside a transaction in a write transaction of its own, a read there as it is.
macro_rules! fetch {
    ($self:ident, $on:ident, $method:ident) => {{
        let on: On<'_> = $on.into();
        let own = on.own_write(|| writes($self.query.sqlite)).await?;
        match own {
            Some(mut tx) => {
                let rows = fetch!(@here $self, On::from(&mut tx), $method)?;
                tx.commit().await?;
                Ok(rows)
            }
            None => fetch!(@here $self, on, $method),
        }
    }};
    (@here $self:ident, $on:expr, $method:ident) => {
        match $on {
            On::SqlitePool(p) => $self.sqlite_query().$method(p).await,
            On::Sqlite(c) => $self.sqlite_query().$method(c).await,
            On::PgPool(p) => $self.pg_query().$method(p).await,
            On::Pg(c) => $self.pg_query().$method(c).await,
            On::Pair(principal, mirror, pair) => {
                if writes($self.query.sqlite) {
                    on_mirror_too(&$self.query, mirror, pair).await;
                }
                $self.sqlite_query().$method(principal).await
            }
            // A read: on the principal, found again once if it stopped being it.
            On::PairPool(pair) => $self.sqlite_query().$method(pair.principal_pool()).await,
            On::PgPairPool(pair) => match $self.pg_query().$method(pair.principal_pool()).await {
                Err(e) if PgPair::lost(&e) => {
                    pair.resolve().await?;
                    $self.pg_query().$method(pair.principal_pool()).await
                }
                other => other,
            },
        }
    };
}

impl<'q, T: Row> QueryAs<'q, T> {
    pub(crate) fn bind(mut self, arg: impl Into<Arg>) -> Self {
        self.query = self.query.bind(arg);
        self
    }

    /// The statement's PostgreSQL form, where the two databases spell it differently.
    pub(crate) fn postgres(mut self, sql: &'q str) -> Self {
        self.query = self.query.postgres(sql);
        self
    }

    pub(crate) async fn fetch_all<'e>(self, on: impl Into<On<'e>>) -> Result<Vec<T>, sqlx::Error> {
        fetch!(self, on, fetch_all)
    }

    pub(crate) async fn fetch_one<'e>(self, on: impl Into<On<'e>>) -> Result<T, sqlx::Error> {
        fetch!(self, on, fetch_one)
    }

    pub(crate) async fn fetch_optional<'e>(
        self,
        on: impl Into<On<'e>>,
    ) -> Result<Option<T>, sqlx::Error> {
        fetch!(self, on, fetch_optional)
    }

    fn sqlite_query(self) -> sqlx::query::QueryAs<'q, Sqlite, T, sqlx::sqlite::SqliteArguments> {
        bind_all!(
            sqlx::query_as(sqlx::AssertSqlSafe(self.query.sqlite)),
            self.query.args
        )
    }

    fn pg_query(&self) -> sqlx::query::QueryAs<'_, Postgres, T, sqlx::postgres::PgArguments> {
        bind_all_by_ref!(
            sqlx::query_as(sqlx::AssertSqlSafe(self.query.pg)),
            &self.query.args
        )
    }
}

// ---------------------------------------------------------------------------------------
// A SQLite Back End's mirror: the two copies and their lock-step write transactions.

/// Which copy of a mirrored Back End: the topology's primary server or its mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Copy {
    Primary,
    Mirror,
}

impl Copy {
    pub fn as_str(self) -> &'static str {
        match self {
            Copy::Primary => "Primary",
            Copy::Mirror => "Mirror",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Copy::Primary => 0,
            Copy::Mirror => 1,
        }
    }

    pub(crate) fn of(index: usize) -> Copy {
        if index == 0 {
            Copy::Primary
        } else {
            Copy::Mirror
        }
    }

    pub fn other(self) -> Copy {
        Copy::of(1 - self.index())
    }

    pub fn parse(s: &str) -> Option<Copy> {
        match s.to_ascii_lowercase().as_str() {
            "primary" => Some(Copy::Primary),
            "mirror" => Some(Copy::Mirror),
            _ => None,
        }
    }
}

/// What a copy's `backend_principal` row says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PrincipalRow {
    pub(crate) term: i64,
    pub(crate) principal: Copy,
    pub(crate) writes: i64,
    /// This copy's `writes` when it took over, and what the last failover lost (-1: not
    /// known until the old principal is seen again).
    pub(crate) took_over_at: i64,
    pub(crate) lost_writes: i64,
}

/// The columns [`PrincipalRow`] is read from: a macro, so that the statements reading them
/// are put together once, when compiled, not at every write transaction.
macro_rules! principal_row {
    () => {
        "term, principal, writes, took_over_at, lost_writes"
    };
}

/// Reads a copy's [`PrincipalRow`] (as a [`PrincipalTuple`]).
pub(crate) const SELECT_PRINCIPAL_ROW: &str = concat!(
    "SELECT ",
    principal_row!(),
    " FROM backend_principal WHERE id = 1"
);

/// Records in the principal's row what the last forced failover lost, once known.
/// Counts a write transaction in the copy's `backend_principal` row: how a mirror that
/// missed a commit tells, and what a forced failover's loss is counted in.
pub(crate) const COUNT_WRITE: &str =
    "UPDATE backend_principal SET writes = writes + 1 WHERE id = 1";
pub(crate) const RECORD_LOSS: &str = "UPDATE backend_principal SET lost_writes = $1 WHERE id = 1";

/// What the copy that takes over writes in its row, in any kind of failover: the new term
/// ($1), itself as principal ($2), no fence, when ($3), the point it took over at, and
/// what the failover lost ($4; -1 until known).
pub(crate) const TAKE_OVER: &str =
    "UPDATE backend_principal SET term = $1, principal = $2, fenced = 0,
     changed_at = $3, took_over_at = writes, lost_writes = $4 WHERE id = 1";

pub(crate) type PrincipalTuple = (i64, String, i64, i64, i64);

impl PrincipalRow {
    pub(crate) fn from_tuple(
        (term, principal, writes, took_over_at, lost_writes): PrincipalTuple,
    ) -> Self {
        PrincipalRow {
            term,
            principal: Copy::parse(&principal).unwrap_or(Copy::Primary),
            writes,
            took_over_at,
            lost_writes,
        }
    }

    /// What the last forced failover lost, once known: the write transactions the old
    /// principal (`old`, seen again) committed beyond the point this copy took over at.
    pub(crate) fn loss_seen_in(&self, old: &PrincipalRow) -> Option<i64> {
        (self.lost_writes < 0 && old.term < self.term)
            .then(|| (old.writes - self.took_over_at).max(0))
    }
}

/// Which copy of a pair this server takes for the principal, and in which term: what a
/// failover (here or on another server) changes.
#[derive(Debug, Default)]
pub(crate) struct Orientation {
    principal: AtomicUsize,
    term: AtomicI64,
}

impl Orientation {
    pub(crate) fn principal(&self) -> Copy {
        Copy::of(self.principal.load(Ordering::SeqCst))
    }

    pub(crate) fn term(&self) -> i64 {
        self.term.load(Ordering::SeqCst)
    }

    pub(crate) fn set(&self, principal: Copy, term: i64) {
        self.principal.store(principal.index(), Ordering::SeqCst);
        self.term.store(term, Ordering::SeqCst);
    }
}

#[derive(Debug)]
pub(crate) struct Side {
    pub(crate) pool: SqlitePool,
    pub(crate) path: PathBuf,
}

/// A SQLite Back End and its mirror, written in the same transactions (see
/// `crate::mirror` for the whole design; this is the transaction plumbing).
#[derive(Debug)]
pub(crate) struct Pair {
    pub(crate) sides: [Side; 2],
    pub(crate) orientation: Orientation,
    /// The non-principal copy missed a commit: rebuilt before it is written again.
    pub(crate) behind: AtomicBool,
    pub(crate) problem: Mutex<Option<String>>,
}

impl Pair {
    pub(crate) async fn row_of(&self, copy: Copy) -> Result<PrincipalRow, sqlx::Error> {
        let mut conn = self.sides[copy.index()].pool.acquire().await?;
        read_row(&mut conn).await
    }

    pub(crate) fn follow(&self, row: PrincipalRow) {
        self.orientation.set(row.principal, row.term);
    }

    pub(crate) fn label(&self, copy: Copy) -> String {
        self.sides[copy.index()].path.display().to_string()
    }

    pub(crate) fn principal(&self) -> Copy {
        self.orientation.principal()
    }

    pub(crate) fn principal_pool(&self) -> &SqlitePool {
        &self.sides[self.principal().index()].pool
    }

    pub(crate) fn path_of(&self, copy: Copy) -> &Path {
        &self.sides[copy.index()].path
    }

    pub(crate) fn mark_behind(&self, why: String) {
        tracing::warn!(mirror = %self.label(self.principal().other()), "the Back End's mirror is behind: {why}");
        *self.problem.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        self.behind.store(true, Ordering::SeqCst);
    }

    /// The mirror failed a statement or its commit: it is rebuilt before the next write.
    pub(crate) fn mirror_missed(&self, e: &sqlx::Error) {
        self.mark_behind(format!("a commit did not reach it: {e}"));
    }

    pub(crate) async fn close(&self) {
        for side in &self.sides {
            side.pool.close().await;
        }
    }

    /// A write transaction on both copies (see the module's documentation).
    pub(crate) async fn begin_write(self: &Arc<Pair>) -> Result<Conn, sqlx::Error> {
        loop {
            let me = self.principal();
            let mut principal = self.sides[me.index()]
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await?;
            let row = read_row(&mut principal).await?;
            if row.principal != me || row.term != self.orientation.term() {
                // Another server failed the pool's Back End over: follow it.
                drop(principal);
                self.follow(row);
                continue;
            }
            let mut mirror = None;
            if !self.behind.load(Ordering::SeqCst) {
                match self.begin_mirror(row).await {
                    Ok(tx) => mirror = Some(tx),
                    Err(why) => self.mark_behind(why),
                }
            }
            sqlx::query(COUNT_WRITE).execute(&mut *principal).await?;
            if let Some(m) = mirror.as_mut()
                && let Err(e) = sqlx::query(COUNT_WRITE).execute(&mut **m).await
            {
                self.mirror_missed(&e);
                mirror = None;
            }
            return Ok(Conn::PairTx {
                principal,
                mirror,
                pair: self.clone(),
            });
        }
    }

    /// The mirror's write transaction, if it holds exactly what the principal holds.
    async fn begin_mirror(
        &self,
        principal: PrincipalRow,
    ) -> Result<sqlx::Transaction<'static, Sqlite>, String> {
        let side = &self.sides[self.principal().other().index()];
        let mut tx = side
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| format!("it cannot be written: {e}"))?;
        let row = read_row(&mut tx)
            .await
            .map_err(|e| format!("it cannot be read: {e}"))?;
        if row != principal {
            return Err(format!(
                "it holds {} write transactions in term {}, the principal {} in term {}",
                row.writes, row.term, principal.writes, principal.term
            ));
        }
        Ok(tx)
    }
}

pub(crate) async fn read_row(
    conn: &mut sqlx::SqliteConnection,
) -> Result<PrincipalRow, sqlx::Error> {
    let row: PrincipalTuple = sqlx::query_as(SELECT_PRINCIPAL_ROW).fetch_one(conn).await?;
    Ok(PrincipalRow::from_tuple(row))
}

// ---------------------------------------------------------------------------------------
// A PostgreSQL Back End and its streaming standby.

/// One copy of a PostgreSQL pair.
#[derive(Debug)]
pub(crate) struct PgSide {
    pub(crate) pool: PgPool,
    pub(crate) label: String,
}

/// A PostgreSQL Back End's primary and mirror (a streaming hot standby PostgreSQL keeps).
/// Statements go to the principal: the copy that is not in recovery and not fenced, with
/// the highest term (see `crate::mirror`).
#[derive(Debug)]
pub(crate) struct PgPair {
    pub(crate) sides: [PgSide; 2],
    pub(crate) orientation: Orientation,
}

/// What one copy of a PostgreSQL pair says of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PgCopyState {
    pub(crate) in_recovery: bool,
    pub(crate) read_only: bool,
    pub(crate) row: PrincipalRow,
    pub(crate) fenced: bool,
}

impl PgPair {
    pub(crate) fn principal(&self) -> Copy {
        self.orientation.principal()
    }

    pub(crate) fn principal_pool(&self) -> &PgPool {
        &self.sides[self.principal().index()].pool
    }

    pub(crate) async fn close(&self) {
        for side in &self.sides {
            side.pool.close().await;
        }
    }

    /// The principal answered in a way that says it is no longer the principal (it is
    /// read-only, in recovery, or gone): find the principal again and retry.
    pub(crate) fn lost(e: &sqlx::Error) -> bool {
        match e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
            // 25006 read_only_sql_transaction, 57P01 admin_shutdown, 57P03 cannot_connect_now
            sqlx::Error::Database(db) => {
                matches!(db.code().as_deref(), Some("25006" | "57P01" | "57P03"))
            }
            _ => false,
        }
    }

    pub(crate) async fn copy_state(&self, copy: Copy) -> Result<PgCopyState, sqlx::Error> {
        let (in_recovery, read_only, fenced, term, principal, writes, took_over_at, lost_writes): (
            bool,
            bool,
            i64,
            i64,
            String,
            i64,
            i64,
            i64,
        ) = sqlx::query_as(concat!(
            "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only') = 'on',
                    fenced, ",
            principal_row!(),
            " FROM backend_principal WHERE id = 1"
        ))
        .fetch_one(&self.sides[copy.index()].pool)
        .await?;
        Ok(PgCopyState {
            in_recovery,
            read_only,
            row: PrincipalRow::from_tuple((term, principal, writes, took_over_at, lost_writes)),
            fenced: fenced != 0,
        })
    }

    /// Finds the principal: of the copies that take writes (not in recovery, not fenced,
    /// not read-only), the one with the highest term. Another that also takes writes (an
    /// old principal come back) is fenced.
    pub(crate) async fn resolve(&self) -> Result<Copy, sqlx::Error> {
        let mut writable = Vec::new();
        let mut why = Vec::new();
        for copy in [Copy::Primary, Copy::Mirror] {
            match self.copy_state(copy).await {
                Ok(s) if !s.in_recovery && !s.read_only && !s.fenced => writable.push((copy, s)),
                Ok(s) => why.push(format!(
                    "{} is {}",
                    self.sides[copy.index()].label,
                    if s.in_recovery { "a standby" } else { "fenced" }
                )),
                Err(e) => why.push(format!(
                    "{} does not answer: {e}",
                    self.sides[copy.index()].label
                )),
            }
        }
        writable.sort_by_key(|(_, s)| std::cmp::Reverse(s.row.term));
        let Some((copy, state)) = writable.first().cloned() else {
            return Err(sqlx::Error::Protocol(format!(
                "no copy of the Back End takes writes ({}); Invoke-CsDatabaseFailover -NewPrincipal <Primary|Mirror> -Force makes one principal",
                why.join("; ")
            )));
        };
        for (other, old) in writable.iter().skip(1) {
            tracing::warn!(
                copy = %self.sides[other.index()].label,
                "two copies of the Back End take writes; fencing the one with the lower term"
            );
            let _ = fence(&self.sides[other.index()].pool).await;
            if let Some(lost) = state.row.loss_seen_in(&old.row) {
                let _ = sqlx::query(RECORD_LOSS)
                    .bind(lost)
                    .execute(&self.sides[copy.index()].pool)
                    .await;
            }
        }
        self.orientation.set(copy, state.row.term);
        Ok(copy)
    }

    /// A write transaction on the principal, under the store's write lock, after checking
    /// (under that lock) that the principal is still the principal; counted in the
    /// principal's row, as a SQLite pair counts its own, so that a forced failover counts
    /// every write the standby had not replayed, a single statement's too.
    pub(crate) async fn begin_write(&self) -> Result<Conn, sqlx::Error> {
        let mut last = None;
        for _ in 0..3 {
            let attempt = async {
                let mut tx = begin_pg_write(self.principal_pool()).await?;
                let (term, fenced, read_only): (i64, i64, bool) = sqlx::query_as(
                    "SELECT term, fenced, current_setting('transaction_read_only') = 'on'
                     FROM backend_principal WHERE id = 1",
                )
                .fetch_one(&mut *tx)
                .await?;
                Ok::<_, sqlx::Error>((tx, term, fenced != 0 || read_only))
            };
            match attempt.await {
                Ok((mut tx, term, false)) if term == self.orientation.term() => {
                    sqlx::query(COUNT_WRITE).execute(&mut *tx).await?;
                    return Ok(Conn::PgTx(tx));
                }
                Ok(_) => {}
                Err(e) if PgPair::lost(&e) => last = Some(e),
                Err(e) => return Err(e),
            }
            self.resolve().await?;
        }
        Err(last.unwrap_or_else(|| {
            sqlx::Error::Protocol("the Back End's principal changed three times in a row".into())
        }))
    }
}

/// A PostgreSQL transaction holding the store's one write lock ([`WRITE_LOCK`]): every
/// writer of a PostgreSQL Back End starts here.
pub(crate) async fn begin_pg_write(
    pool: &PgPool,
) -> Result<sqlx::Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(WRITE_LOCK)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// An error in words an operator can act on: a copy that does not answer says so, where
/// sqlx says its pool timed out.
pub(crate) fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::PoolTimedOut => "it does not answer: no connection could be made".into(),
        other => other.to_string(),
    }
}

/// Makes a PostgreSQL copy refuse writes: under the write lock, so that a write in
/// progress finishes first and none starts after, and in its configuration, so that
/// nothing else writes it either. Returns its WAL position then.
pub(crate) async fn fence(pool: &PgPool) -> Result<String, sqlx::Error> {
    let mut tx = begin_pg_write(pool).await?;
    sqlx::query("UPDATE backend_principal SET fenced = 1 WHERE id = 1")
        .execute(&mut *tx)
        .await?;
    let (lsn,): (String,) = sqlx::query_as("SELECT pg_current_wal_lsn()::text")
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    // One statement each: several in one simple query run as one transaction block, where
    // ALTER SYSTEM may not.
    sqlx::query("ALTER SYSTEM SET default_transaction_read_only = on")
        .execute(pool)
        .await?;
    sqlx::query("SELECT pg_reload_conf()").execute(pool).await?;
    Ok(lsn)
}
