//! SIP registrations written in batches: the registrar's group commit.
//!
//! A Front End signing users in at thousands a second cannot afford a transaction (and its
//! round trips to the database) per REGISTER, nor can it acknowledge a binding it has not
//! written: a crash would lose a sign-in the client was told had succeeded. So the
//! registrar queues each REGISTER's change and writes whatever has queued in one
//! transaction ([`BackEnd::apply_registrations`]), answering every REGISTER of the batch
//! once it has committed — the window a Front End's crash can lose is zero, and the cost of
//! a commit is shared by every sign-in that waited for it.
//!
//! Inside the transaction (which holds the Back End's write lock, so the pool's other Front
//! Ends' batches come before or after, never between) the batch reads the bindings its
//! users already have, decides each change in arrival order ([`decide`], pure), and writes
//! the outcome back: the limit on bindings is exact across the pool, and each REGISTER's
//! answer lists the user's bindings as committed. Expired bindings of the batch's users
//! are dropped on the way; [`BackEnd::purge_expired_bindings`] drops the rest.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use crate::db::{self, COUNT_WRITE};
use crate::userdata::BindingRow;
use crate::{BackEnd, Binding, Context, Result, now_ms};

/// The bindings of a batch's users, as one JSON array in one row: every row sqlx hands
/// over is a message between threads and a copy of each column, which at thousands of
/// sign-ins a second cost a tenth of the Front End's CPU.
const READ_SQLITE: &str =
    "SELECT coalesce(json_group_array(json_array(aor, contact, expires_at, mode, server)), '[]')
     FROM registration WHERE aor IN (SELECT value FROM json_each($1))";
/// Deletes the `[aor, contact]` pairs of a JSON array.
const DELETE_SQLITE: &str = "DELETE FROM registration WHERE (aor, contact) IN
     (SELECT value ->> 0, value ->> 1 FROM json_each($1))";
/// Writes the `[aor, contact, expires_at, mode, server]` rows of a JSON array.
const UPSERT_SQLITE: &str = "INSERT INTO registration (aor, contact, expires_at, mode, server)
     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4
     FROM json_each($1) WHERE true
     ON CONFLICT (aor, contact) DO UPDATE SET expires_at = excluded.expires_at,
         mode = excluded.mode, server = excluded.server";

/// [`UPSERT_SQLITE`] on PostgreSQL.
const UPSERT_POSTGRES: &str = "INSERT INTO registration (aor, contact, expires_at, mode, server)
     SELECT r ->> 0, r ->> 1, (r ->> 2)::bigint, r ->> 3, r ->> 4
     FROM jsonb_array_elements($1::jsonb) AS r
     ON CONFLICT (aor, contact) DO UPDATE SET expires_at = excluded.expires_at,
         mode = excluded.mode, server = excluded.server";

/// One binding as [`UPSERT_SQLITE`] and [`UPSERT_POSTGRES`] read it from their JSON array:
/// aor, contact, expires_at, mode, server.
fn upsert_row(b: &Binding) -> serde_json::Value {
    serde_json::json!([b.aor, b.contact, b.expires_at, b.mode, b.server])
}

/// [`BackEnd::apply_registrations`]'s first call on plain SQLite: begin, count, read.
static BEGIN_AND_READ_SQLITE: LazyLock<String> =
    LazyLock::new(|| format!("BEGIN IMMEDIATE; {COUNT_WRITE}; {READ_SQLITE}"));
/// Its second call, by what the plan writes (`[deletes?][upserts?]`): the deletes bound
/// first, the upserts after them, then `COMMIT`.
static WRITE_AND_COMMIT_SQLITE: LazyLock<[[String; 2]; 2]> = LazyLock::new(|| {
    let write = |gone: bool, upserts: bool| {
        let mut sql = String::new();
        if gone {
            sql.push_str(DELETE_SQLITE);
            sql.push_str("; ");
        }
        if upserts {
            let n = if gone { "$2" } else { "$1" };
            sql.push_str(&UPSERT_SQLITE.replace("$1", n));
            sql.push_str("; ");
        }
        sql + "COMMIT"
    };
    [
        [write(false, false), write(false, true)],
        [write(true, false), write(true, true)],
    ]
});

/// What a batch does to the bindings it read: each change's outcome, and the rows to
/// delete and to write (JSON arrays; None when there are none).
#[derive(Debug)]
struct Plan {
    outcomes: Vec<Registered>,
    gone: Option<String>,
    upserts: Option<String>,
}

/// Decides a batch against the bindings its users have (`rows`, the JSON of the read):
/// each change in arrival order ([`decide`]), expired bindings dropped on the way, and only
/// what differs written — a refresh is one row updated.
fn plan(
    rows: &str,
    changes: &[RegistrationChange],
    now: i64,
    max: usize,
) -> std::result::Result<Plan, sqlx::Error> {
    let rows: Vec<BindingRow> =
        serde_json::from_str(rows).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    // Every row the batch's users have, expired ones included, and their unexpired
    // bindings, which the changes are decided against.
    let stored: Vec<Binding> = rows.into_iter().map(Binding::from).collect();
    let mut held: BTreeMap<String, Vec<Binding>> = BTreeMap::new();
    for b in stored.iter().filter(|b| b.expires_at > now) {
        held.entry(b.aor.clone()).or_default().push(b.clone());
    }
    let outcomes: Vec<Registered> = changes
        .iter()
        .map(|c| decide(held.entry(c.aor.clone()).or_default(), c, max))
        .collect();
    // (Per user: a batch holds up to a thousand users of at most `max` bindings each.)
    let mut before: BTreeMap<&str, Vec<&Binding>> = BTreeMap::new();
    for b in &stored {
        before.entry(b.aor.as_str()).or_default().push(b);
    }
    let mut gone = Vec::new();
    let mut upserts = Vec::new();
    for (aor, was) in &before {
        let after = held.get(*aor).map(Vec::as_slice).unwrap_or_default();
        for b in was {
            if !after.iter().any(|a| a.contact == b.contact) {
                gone.push(serde_json::json!([b.aor, b.contact]));
            }
        }
    }
    for (aor, after) in &held {
        let was = before
            .get(aor.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        for b in after {
            if !was.contains(&b) {
                upserts.push(upsert_row(b));
            }
        }
    }
    let json =
        |v: Vec<serde_json::Value>| (!v.is_empty()).then(|| serde_json::Value::from(v).to_string());
    Ok(Plan {
        outcomes,
        gone: json(gone),
        upserts: json(upserts),
    })
}

/// A pooled SQLite connection inside a transaction its statements began: dropped before
/// [`OpenTransaction::ended`] (the batch's future dropped between its calls, or a
/// rollback that failed), the connection is closed rather than returned to the pool, and
/// SQLite rolls the transaction back as it closes.
struct OpenTransaction(Option<sqlx::pool::PoolConnection<sqlx::Sqlite>>);

impl OpenTransaction {
    /// The transaction ended (committed or rolled back): the connection goes back to the pool.
    fn ended(&mut self) {
        self.0.take();
    }
}

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            drop(conn.detach());
        }
    }
}

/// One REGISTER's change to its user's bindings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationChange {
    /// The address of record (`sip:alice@contoso.com`).
    pub aor: String,
    /// What to do with the user's bindings.
    pub what: BindingUpdate,
    /// The mode the user is served in (`full` or `resiliency`), kept with new bindings.
    pub mode: String,
    /// The Front End that took the REGISTER.
    pub server: String,
}

/// What a REGISTER asks of the user's bindings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingUpdate {
    /// `Contact: *` with `Expires: 0`: remove every binding.
    RemoveAll,
    /// Each contact bound until a time (unix ms), or removed (`None`).
    Contacts(Vec<(String, Option<i64>)>),
    /// Nothing to change: a REGISTER without Contact asks for the current bindings.
    Query,
}

/// What became of one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// Applied (or a query): the user's bindings afterwards, by contact.
    Bound(Vec<Binding>),
    /// Refused: it would have left the user more than the limit of bindings. Nothing of it
    /// was applied.
    TooMany,
}

/// Decides `change` against `current` (the user's unexpired bindings, updated in place when
/// the change is applied), with at most `max` bindings a user.
pub(crate) fn decide(
    current: &mut Vec<Binding>,
    change: &RegistrationChange,
    max: usize,
) -> Registered {
    match &change.what {
        BindingUpdate::Query => {}
        BindingUpdate::RemoveAll => current.clear(),
        BindingUpdate::Contacts(contacts) => {
            // The bindings afterwards, counted before anything changes: a refused change
            // must leave `current` as it was. (A contact named twice counts as written
            // last.)
            let last_word =
                |i: usize, contact: &str| !contacts[i + 1..].iter().any(|(c, _)| c == contact);
            let held = |contact: &str| current.iter().any(|b| b.contact == contact);
            let mut added = 0;
            let mut removed = 0;
            for (i, (contact, until)) in contacts.iter().enumerate() {
                if !last_word(i, contact) {
                    continue;
                }
                match (until.is_some(), held(contact)) {
                    (true, false) => added += 1,
                    (false, true) => removed += 1,
                    _ => {}
                }
            }
            // Refreshing or removing what is held never counts against the limit: a user
            // at the limit can still refresh and sign devices out.
            if added > 0 && current.len() + added - removed > max {
                return Registered::TooMany;
            }
            for (contact, until) in contacts {
                current.retain(|b| &b.contact != contact);
                if let Some(until) = until {
                    current.push(Binding {
                        aor: change.aor.clone(),
                        contact: contact.clone(),
                        expires_at: *until,
                        mode: change.mode.clone(),
                        server: change.server.clone(),
                    });
                }
            }
        }
    }
    current.sort_by(|a, b| a.contact.cmp(&b.contact));
    Registered::Bound(current.clone())
}

impl BackEnd {
    /// Applies `changes` in order in one transaction, at `now` (unix ms): see the module's
    /// documentation. Returns what became of each, in the same order.
    pub async fn apply_registrations(
        &self,
        changes: &[RegistrationChange],
        now: i64,
        max: usize,
    ) -> Result<Vec<Registered>> {
        let aors: Vec<&str> = {
            let mut a: Vec<&str> = changes.iter().map(|c| c.aor.as_str()).collect();
            a.sort_unstable();
            a.dedup();
            a
        };
        let aor_list = serde_json::Value::from(aors).to_string();
        if let db::Db::Sqlite(pool) = &self.db {
            return self
                .apply_on_sqlite(pool, &aor_list, changes, now, max)
                .await;
        }
        let mut tx = self.begin_write().await?;
        let (rows,): (String,) = db::query_as(READ_SQLITE)
            .postgres(
                "SELECT coalesce(jsonb_agg(jsonb_build_array(aor, contact, expires_at, mode, server)),
                     '[]'::jsonb)::text
                 FROM registration WHERE aor IN (SELECT jsonb_array_elements_text($1::jsonb))",
            )
            .bind(&aor_list)
            .fetch_one(&mut tx)
            .await
            .at(&self.path)?;
        let plan = plan(&rows, changes, now, max).at(&self.path)?;
        if let Some(gone) = plan.gone {
            db::query(DELETE_SQLITE)
                .postgres(
                    "DELETE FROM registration WHERE (aor, contact) IN
                     (SELECT r ->> 0, r ->> 1 FROM jsonb_array_elements($1::jsonb) AS r)",
                )
                .bind(gone)
                .execute(&mut tx)
                .await
                .at(&self.path)?;
        }
        if let Some(upserts) = plan.upserts {
            db::query(UPSERT_SQLITE)
                .postgres(UPSERT_POSTGRES)
                .bind(upserts)
                .execute(&mut tx)
                .await
                .at(&self.path)?;
        }
        tx.commit().await.at(&self.path)?;
        Ok(plan.outcomes)
    }

    /// [`BackEnd::apply_registrations`] on a plain SQLite Back End in two calls to the
    /// connection's thread rather than five: under sign-in load each call waits for that
    /// thread to get a core and then for the caller's to get one back, and the batch — and
    /// every REGISTER in it — waits for all of them. The first call begins the transaction
    /// (taking the write lock), counts it ([`COUNT_WRITE`]) and reads the users'
    /// bindings; the second writes the plan and commits. The transaction is the
    /// statements' own rather than sqlx's, so a connection left in it (an error, or the
    /// batch dropped between the calls) is rolled back or closed, never put back in the pool.
    async fn apply_on_sqlite(
        &self,
        pool: &sqlx::SqlitePool,
        aor_list: &str,
        changes: &[RegistrationChange],
        now: i64,
        max: usize,
    ) -> Result<Vec<Registered>> {
        let conn = pool.acquire().await.at(&self.path)?;
        let mut open = OpenTransaction(Some(conn));
        let result = async {
            let conn = open
                .0
                .as_mut()
                .expect("the connection is held until the end");
            let (rows,): (String,) = sqlx::query_as(BEGIN_AND_READ_SQLITE.as_str())
                .bind(aor_list)
                .fetch_one(&mut **conn)
                .await?;
            let plan = plan(&rows, changes, now, max)?;
            let write = &WRITE_AND_COMMIT_SQLITE[usize::from(plan.gone.is_some())]
                [usize::from(plan.upserts.is_some())];
            let mut query = sqlx::query(write.as_str());
            for json in [plan.gone, plan.upserts].into_iter().flatten() {
                query = query.bind(json);
            }
            query.execute(&mut **conn).await?;
            Ok::<_, sqlx::Error>(plan.outcomes)
        }
        .await;
        match result {
            Ok(outcomes) => {
                open.ended();
                Ok(outcomes)
            }
            Err(e) => {
                if let Some(conn) = open.0.as_mut()
                    && sqlx::query("ROLLBACK").execute(&mut **conn).await.is_ok()
                {
                    open.ended();
                }
                Err(e).at(&self.path)
            }
        }
    }

    /// Adds or refreshes one binding, whatever the limit: [`BackEnd::apply_registrations`]
    /// with that one change.
    pub async fn register(&self, binding: &Binding) -> Result<()> {
        let change = RegistrationChange {
            aor: binding.aor.clone(),
            what: BindingUpdate::Contacts(vec![(
                binding.contact.clone(),
                Some(binding.expires_at),
            )]),
            mode: binding.mode.clone(),
            server: binding.server.clone(),
        };
        self.apply_registrations(&[change], now_ms(), usize::MAX)
            .await
            .map(drop)
    }

    /// Removes one binding, or every binding of `aor` when `contact` is None.
    pub async fn unregister(&self, aor: &str, contact: Option<&str>) -> Result<()> {
        let what = match contact {
            Some(contact) => BindingUpdate::Contacts(vec![(contact.to_string(), None)]),
            None => BindingUpdate::RemoveAll,
        };
        let change = RegistrationChange {
            aor: aor.to_string(),
            what,
            mode: String::new(),
            server: String::new(),
        };
        self.apply_registrations(&[change], now_ms(), usize::MAX)
            .await
            .map(drop)
    }

    /// Writes refreshed bindings, in one transaction: the registrar's refreshes written
    /// behind their answers (see `registrar::bindings`). A binding removed meanwhile (its
    /// user signed out by a failover, say) is written again: the REGISTER that refreshed
    /// it came after, and a REGISTER with a contact binds it. Returns how many it wrote.
    pub async fn refresh_bindings(&self, refreshed: &[Binding]) -> Result<u64> {
        if refreshed.is_empty() {
            return Ok(0);
        }
        let rows = serde_json::Value::from(refreshed.iter().map(upsert_row).collect::<Vec<_>>())
            .to_string();
        let mut tx = self.begin_write().await?;
        let written = db::query(UPSERT_SQLITE)
            .postgres(UPSERT_POSTGRES)
            .bind(rows)
            .execute(&mut tx)
            .await
            .at(&self.path)?
            .rows_affected();
        tx.commit().await.at(&self.path)?;
        Ok(written)
    }

    /// The bindings not expired at `now` (`/metrics`'s `tandem_sip_bindings`).
    pub async fn count_live_bindings(&self, now: i64) -> Result<i64> {
        let (n,): (i64,) = db::query_as("SELECT count(*) FROM registration WHERE expires_at > $1")
            .bind(now)
            .fetch_one(&self.db)
            .await
            .at(&self.path)?;
        Ok(n)
    }

    /// Drops at most `limit` bindings that expired by `now` (unix ms); returns how many.
    /// Bounded, so that a purge never holds the write lock long behind a backlog.
    pub async fn purge_expired_bindings(&self, now: i64, limit: i64) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let gone = db::query(
            "DELETE FROM registration WHERE rowid IN
             (SELECT rowid FROM registration WHERE expires_at <= $1 LIMIT $2)",
        )
        .postgres(
            "DELETE FROM registration WHERE ctid IN
             (SELECT ctid FROM registration WHERE expires_at <= $1 LIMIT $2)",
        )
        .bind(now)
        .bind(limit)
        .execute(&mut tx)
        .await
        .at(&self.path)?
        .rows_affected();
        tx.commit().await.at(&self.path)?;
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "sip:alice@contoso.com";
    const BOB: &str = "sip:bob@contoso.com";

    fn change(aor: &str, contacts: &[(&str, Option<i64>)]) -> RegistrationChange {
        RegistrationChange {
            aor: aor.into(),
            what: BindingUpdate::Contacts(
                contacts
                    .iter()
                    .map(|(c, until)| ((*c).to_string(), *until))
                    .collect(),
            ),
            mode: "full".into(),
            server: "pool1-fe1.contoso.com".into(),
        }
    }

    fn contacts(outcome: &Registered) -> Vec<&str> {
        match outcome {
            Registered::Bound(b) => b.iter().map(|b| b.contact.as_str()).collect(),
            Registered::TooMany => panic!("refused"),
        }
    }

    proptest::proptest! {
        /// Whatever REGISTERs come, in any order: a user never holds more than the limit,
        /// a refused change leaves the bindings as they were, an applied one leaves each
        /// named contact as its last mention says, and a refresh or removal is never
        /// refused.
        #[test]
        fn decisions_keep_the_limit_and_do_what_each_change_says(
            steps in proptest::collection::vec(
                proptest::collection::vec((0u8..6, proptest::option::of(1i64..1000)), 0..5),
                1..30,
            ),
            max in 1usize..5,
        ) {
            let mut current: Vec<Binding> = Vec::new();
            for step in &steps {
                let named: Vec<(String, Option<i64>)> = step
                    .iter()
                    .map(|(c, until)| (format!("sip:a@{c}"), *until))
                    .collect();
                let before: Vec<String> = current.iter().map(|b| b.contact.clone()).collect();
                let adds = named.iter().any(|(c, until)| {
                    until.is_some() && !before.contains(c)
                });
                let change = RegistrationChange {
                    what: BindingUpdate::Contacts(named.clone()),
                    ..change(ALICE, &[])
                };
                match decide(&mut current, &change, max) {
                    Registered::TooMany => {
                        proptest::prop_assert!(adds);
                        let after: Vec<String> =
                            current.iter().map(|b| b.contact.clone()).collect();
                        proptest::prop_assert_eq!(after, before);
                    }
                    Registered::Bound(bound) => {
                        proptest::prop_assert!(bound.len() <= max);
                        for (contact, _) in &named {
                            let last = named.iter().rev().find(|(c, _)| c == contact).unwrap().1;
                            let held = bound.iter().find(|b| &b.contact == contact);
                            proptest::prop_assert_eq!(held.map(|b| b.expires_at), last);
                        }
                        let mut sorted: Vec<&str> =
                            bound.iter().map(|b| b.contact.as_str()).collect();
                        sorted.dedup();
                        proptest::prop_assert_eq!(sorted.len(), bound.len());
                        proptest::prop_assert!(sorted.windows(2).all(|w| w[0] < w[1]));
                    }
                }
            }
        }
    }

    #[test]
    fn a_user_at_the_limit_can_refresh_and_remove_but_not_add() {
        let mut current = Vec::new();
        let two = change(ALICE, &[("sip:a@1", Some(10)), ("sip:a@2", Some(10))]);
        assert_eq!(
            contacts(&decide(&mut current, &two, 2)),
            ["sip:a@1", "sip:a@2"]
        );
        let third = change(ALICE, &[("sip:a@3", Some(10))]);
        assert_eq!(decide(&mut current, &third, 2), Registered::TooMany);
        assert_eq!(current.len(), 2, "a refused change applies nothing");
        let refresh = change(ALICE, &[("sip:a@1", Some(20))]);
        let Registered::Bound(after) = decide(&mut current, &refresh, 2) else {
            panic!("a refresh at the limit is taken")
        };
        assert_eq!(after[0].expires_at, 20);
        // Removing one and adding another in the same REGISTER stays within the limit.
        let swap = change(ALICE, &[("sip:a@2", None), ("sip:a@3", Some(10))]);
        assert_eq!(
            contacts(&decide(&mut current, &swap, 2)),
            ["sip:a@1", "sip:a@3"]
        );
        let all = RegistrationChange {
            what: BindingUpdate::RemoveAll,
            ..third
        };
        assert_eq!(decide(&mut current, &all, 2), Registered::Bound(vec![]));
    }

    crate::each_backend! {
        async fn a_batch_applies_in_order_within_the_limit_and_drops_what_expired(db) {
            let be = db.open("p").await;
            let now = crate::now_ms();
            // Bob holds an expired binding: it neither counts nor survives the batch.
            let first = [
                change(BOB, &[("sip:bob@old", Some(now + 5))]),
                change(ALICE, &[("sip:alice@1", Some(now + 60_000))]),
            ];
            be.apply_registrations(&first, now, 2).await.unwrap();
            let later = now + 10;
            let batch = [
                change(BOB, &[("sip:bob@1", Some(later + 60_000))]),
                change(ALICE, &[("sip:alice@2", Some(later + 60_000))]),
                // Past the limit of 2: refused, and only this one.
                change(ALICE, &[("sip:alice@3", Some(later + 60_000))]),
                change(ALICE, &[("sip:alice@1", None)]),
                RegistrationChange {
                    what: BindingUpdate::Query,
                    ..change(BOB, &[])
                },
            ];
            let out = be.apply_registrations(&batch, later, 2).await.unwrap();
            assert_eq!(contacts(&out[0]), ["sip:bob@1"]);
            assert_eq!(contacts(&out[1]), ["sip:alice@1", "sip:alice@2"]);
            assert_eq!(out[2], Registered::TooMany);
            assert_eq!(contacts(&out[3]), ["sip:alice@2"]);
            assert_eq!(contacts(&out[4]), ["sip:bob@1"]);
            // What was answered is what is stored.
            let stored: Vec<String> = be
                .bindings(ALICE)
                .await
                .unwrap()
                .into_iter()
                .map(|b| b.contact)
                .collect();
            assert_eq!(stored, ["sip:alice@2"]);
            assert_eq!(be.purge_expired_bindings(later, 100).await.unwrap(), 0);
            assert_eq!(
                be.purge_expired_bindings(later + 60_001, 100).await.unwrap(),
                2
            );
        }
    }

    crate::each_backend! {
        /// A batch whose write fails changes nothing, not even the Back End's count of
        /// write transactions, and leaves no connection inside a transaction: every batch
        /// after it commits (on SQLite the batch runs its own BEGIN and COMMIT).
        async fn a_batch_that_fails_writes_nothing_and_the_next_ones_commit(db) {
            let be = db.open("p").await;
            let now = crate::now_ms();
            let writes = || async {
                let (n,): (i64,) = db::query_as("SELECT writes FROM backend_principal WHERE id = 1")
                    .fetch_one(&be.db)
                    .await
                    .unwrap();
                n
            };
            // A contact the database refuses, as a full disk or a broken file would.
            db::raw_sql(
                "CREATE TABLE refused (contact TEXT NOT NULL CHECK (contact <> 'sip:boom'))",
                &be.db,
            )
            .await
            .unwrap();
            let refuse = if be.is_postgres() {
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN
                     INSERT INTO refused VALUES (NEW.contact); RETURN NEW; END $$ LANGUAGE plpgsql;
                 CREATE TRIGGER refuse BEFORE INSERT ON registration
                     FOR EACH ROW EXECUTE FUNCTION refuse()"
            } else {
                "CREATE TRIGGER refuse BEFORE INSERT ON registration
                     BEGIN INSERT INTO refused VALUES (NEW.contact); END"
            };
            db::raw_sql(refuse, &be.db).await.unwrap();
            be.apply_registrations(&[change(ALICE, &[("sip:alice@1", Some(now + 60_000))])], now, 4)
                .await
                .unwrap();
            let before = writes().await;
            let failing = [
                change(BOB, &[("sip:bob@1", Some(now + 60_000))]),
                change(ALICE, &[("sip:boom", Some(now + 60_000))]),
            ];
            // More failures than the pool has connections: none is left in a transaction.
            for _ in 0..6 {
                assert!(be.apply_registrations(&failing, now, 4).await.is_err());
            }
            assert_eq!(writes().await, before, "the failed batches were not counted");
            assert!(be.bindings(BOB).await.unwrap().is_empty());
            for i in 0..6 {
                let bob = format!("sip:bob@{i}");
                let out = be
                    .apply_registrations(&[change(BOB, &[(&bob, Some(now + 60_000))])], now, 8)
                    .await
                    .unwrap();
                assert_eq!(contacts(&out[0]).len(), i + 1);
            }
            assert_eq!(writes().await, before + 6);
            assert_eq!(be.bindings(ALICE).await.unwrap().len(), 1);
        }
    }

    crate::each_backend! {
        /// Refreshes written behind update their bindings, and write again one removed
        /// meanwhile (the REGISTER came after the removal).
        async fn refreshes_written_behind_update_and_restore_bindings(db) {
            let be = db.open("p").await;
            let now = crate::now_ms();
            be.apply_registrations(
                &[
                    change(ALICE, &[("sip:alice@1", Some(now + 60_000))]),
                    change(BOB, &[("sip:bob@1", Some(now + 60_000))]),
                ],
                now,
                4,
            )
            .await
            .unwrap();
            be.unregister(BOB, None).await.unwrap();
            let refreshed = |aor: &str, contact: &str| Binding {
                aor: aor.into(),
                contact: contact.into(),
                expires_at: now + 120_000,
                mode: "full".into(),
                server: "pool1-fe1.contoso.com".into(),
            };
            let rows = [refreshed(ALICE, "sip:alice@1"), refreshed(BOB, "sip:bob@1")];
            assert_eq!(be.refresh_bindings(&rows).await.unwrap(), 2);
            for (aor, row) in [(ALICE, &rows[0]), (BOB, &rows[1])] {
                assert_eq!(be.bindings(aor).await.unwrap(), std::slice::from_ref(row));
            }
            assert_eq!(be.refresh_bindings(&[]).await.unwrap(), 0);
        }
    }
}
