//! The registrar's bindings: changes committed to the pool's Back End in batches before
//! they are answered, refreshes answered from memory and written behind.
//!
//! Bindings are shared by the pool's Front Ends through its Back End, as every other piece
//! of user state is. A REGISTER that changes what a user is bound to (a new contact, a
//! removal, `Contact: *`) is answered only once the Back End has it: a Front End killed
//! under sign-in load loses no binding it acknowledged (for those, the window is zero),
//! and the pool's other Front Ends serve every user it acknowledged. What makes that
//! fast is the batching: the writer takes every change that queued while the previous
//! batch committed and writes them in one transaction (`store::BackEnd::apply_registrations`),
//! so a commit costs a few statements however many sign-ins wait for it, and batches grow
//! with the load instead of the queue. There is no timer: an idle registrar commits a lone
//! REGISTER at once, after one turn of the scheduler that lets REGISTERs already running
//! join it.
//!
//! Most REGISTERs change nothing but a time: a client refreshing the contact it holds.
//! Those are answered from what this Front End last read of the user's bindings (at most
//! [`HELD_FOR`] ago) and their new expiry times written behind, within [`REFRESH_WINDOW`],
//! by the same writer, coalesced: a user refreshing ten times in the window costs one row
//! written. This is the one bounded window the registrar states: **a Front End that
//! crashes can lose the refreshes it answered in its last [`REFRESH_WINDOW`] — never a
//! binding.** The binding stays in the Back End with the expiry its previous REGISTER was
//! given, and the pool's other Front Ends go on serving the user; the purge spares
//! bindings for a [`REFRESH_WINDOW`] past their expiry, so that one refreshed just before
//! it expired is not purged before its refresh is written. A refresh written after its
//! binding was removed (a failover signed the user out, another device sent `Contact: *`)
//! binds it again, as any REGISTER with that contact after the removal would; a user this
//! Front End signs out is forgotten here at once ([`Committer::forget`]). A stopping Front
//! End writes what it holds before it exits.
//!
//! A task also purges expired bindings, in bounded rounds, every [`PURGE_EVERY`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clock::Clock;
use node::Node;
use sip::hashed::TrustedKeys;
use store::{BackEnd, Binding, BindingUpdate, Registered, RegistrationChange, StoreError};
use tokio::sync::{mpsc, oneshot};

/// Changes waiting for a batch, at most: a REGISTER past it waits for room.
pub const QUEUE: usize = 4_096;
/// Changes in one transaction, at most.
pub const MAX_BATCH: usize = 1_024;
/// How often a Front End purges the pool's expired bindings.
pub const PURGE_EVERY: Duration = Duration::from_secs(60);
/// Bindings one purge round deletes, at most.
const PURGE_ROUND: i64 = 5_000;
/// How long after its answer a refresh is written to the Back End, at most: what a Front
/// End's crash can lose (refreshes, never bindings; see the module's documentation).
pub const REFRESH_WINDOW: Duration = Duration::from_secs(1);
/// How long what this Front End read of a user's bindings answers that user's refreshes:
/// a change another Front End of the pool made to the user's bindings shows in this one's
/// answers within this time.
pub const HELD_FOR: Duration = Duration::from_secs(30);
/// Users whose bindings a Front End holds in memory, at most; past it, the others'
/// refreshes go to the Back End as changes do.
pub const HELD_USERS: usize = 250_000;

const fn millis(d: Duration) -> i64 {
    d.as_millis() as i64
}

type Waiter = oneshot::Sender<Result<Registered, Arc<StoreError>>>;

/// The queue to the writer, and what this Front End holds of its users' bindings.
#[derive(Debug, Clone)]
pub struct Committer {
    queue: mpsc::Sender<(RegistrationChange, Waiter)>,
    memory: Arc<Mutex<Memory>>,
    clock: Clock,
}

impl Committer {
    /// Starts the writer (and the purge) on `be`, in tasks of `node` that end at shutdown.
    pub fn start(node: &Arc<Node>, be: BackEnd, max_bindings: usize) -> Committer {
        let (queue, mut incoming) = mpsc::channel::<(RegistrationChange, Waiter)>(QUEUE);
        let memory = Arc::new(Mutex::new(Memory::default()));
        let writer_be = be.clone();
        let writer_memory = memory.clone();
        let clock = node.clock;
        let stop = node.shutdown.clone();
        node.spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            let mut refreshes = tokio::time::interval(REFRESH_WINDOW);
            refreshes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let received = tokio::select! {
                    n = incoming.recv_many(&mut batch, MAX_BATCH) => n,
                    _ = refreshes.tick() => {
                        write_refreshes(&writer_be, &writer_memory).await;
                        continue;
                    }
                    () = stop.cancelled() => 0,
                };
                if received == 0 {
                    // Stopping: what was answered is written before the Back End closes.
                    write_refreshes(&writer_be, &writer_memory).await;
                    return;
                }
                // Once more round the scheduler before committing: the REGISTERs already
                // running on this runtime queue their changes into this batch instead of
                // waiting a whole commit for the next. No timer: an idle registrar loses
                // one turn of the scheduler, not a delay.
                if received < MAX_BATCH {
                    tokio::task::yield_now().await;
                    while batch.len() < MAX_BATCH {
                        match incoming.try_recv() {
                            Ok(change) => batch.push(change),
                            Err(_) => break,
                        }
                    }
                }
                let (changes, waiters): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
                let now = clock.now_ms();
                match writer_be
                    .apply_registrations(&changes, now, max_bindings)
                    .await
                {
                    Ok(outcomes) => {
                        let mut memory = writer_memory.lock().expect("the bindings' memory");
                        for (change, outcome) in changes.iter().zip(&outcomes) {
                            if let Registered::Bound(bindings) = outcome {
                                memory.committed(change, bindings, now);
                            }
                        }
                        drop(memory);
                        for (waiter, outcome) in waiters.into_iter().zip(outcomes) {
                            let _ = waiter.send(Ok(outcome));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, changes = changes.len(), "writing SIP bindings");
                        let mut memory = writer_memory.lock().expect("the bindings' memory");
                        for change in &changes {
                            memory.forget(&change.aor);
                        }
                        drop(memory);
                        let e = Arc::new(e);
                        for waiter in waiters {
                            let _ = waiter.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        let purge_memory = memory.clone();
        let stop = node.shutdown.clone();
        node.spawn(async move {
            let mut every = tokio::time::interval(PURGE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    () = stop.cancelled() => return,
                }
                purge_memory
                    .lock()
                    .expect("the bindings' memory")
                    .forget_stale(clock.now_ms());
                // A binding refreshed just before it expired is spared until its refresh
                // is written.
                let expired_by = clock.now_ms() - millis(REFRESH_WINDOW);
                loop {
                    match be.purge_expired_bindings(expired_by, PURGE_ROUND).await {
                        Ok(n) if n as i64 == PURGE_ROUND => continue,
                        Ok(_) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "purging expired SIP bindings");
                            break;
                        }
                    }
                }
            }
        });
        Committer {
            queue,
            memory,
            clock,
        }
    }

    /// Forgets the users of `aors`, signed out here (a failover moved them): nothing held of
    /// them answers a REGISTER or is written any more.
    pub fn forget<'a>(&self, aors: impl IntoIterator<Item = &'a str>) {
        let mut memory = self.memory.lock().expect("the bindings' memory");
        for aor in aors {
            memory.sign_out(aor);
        }
    }

    /// Answers `change` from memory when it only refreshes what the user holds (see the
    /// module's documentation); otherwise queues it and waits for the batch that holds it
    /// to commit. A refresh is answered from the change as borrowed: nothing of it is
    /// copied unless it goes to the Back End.
    pub async fn commit(&self, change: Change<'_>) -> Result<Bound, Arc<StoreError>> {
        let refreshed = self
            .memory
            .lock()
            .expect("the bindings' memory")
            .refresh(&change, self.clock.now_ms());
        if let Some(bindings) = refreshed {
            return Ok(Bound::Bindings(bindings));
        }
        let change = RegistrationChange {
            aor: change.aor.to_owned(),
            what: change.what,
            mode: change.mode.to_owned(),
            server: change.server.to_owned(),
        };
        let (waiter, answer) = oneshot::channel();
        let stopped = || Arc::new(StoreError::Refused("the registrar is stopping".into()));
        self.queue
            .send((change, waiter))
            .await
            .map_err(|_| stopped())?;
        match answer.await.map_err(|_| stopped())?? {
            Registered::Bound(bindings) => Ok(Bound::Bindings(Arc::new(bindings))),
            Registered::TooMany => Ok(Bound::TooMany),
        }
    }
}

/// A REGISTER's change to its user's bindings, as the registrar holds it: the user, what
/// changes, in which mode, through which Front End.
#[derive(Debug)]
pub struct Change<'a> {
    pub aor: &'a str,
    pub what: BindingUpdate,
    pub mode: &'a str,
    pub server: &'a str,
}

/// What a REGISTER left its user bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    /// The user's bindings now (shared with what this Front End holds of them).
    Bindings(Arc<Vec<Binding>>),
    /// The change would have bound more contacts than a user may have.
    TooMany,
}

/// Writes the refreshes answered since the last time, in one transaction; refreshes that
/// could not be written are kept for the next round.
async fn write_refreshes(be: &BackEnd, memory: &Mutex<Memory>) {
    let rows = memory
        .lock()
        .expect("the bindings' memory")
        .take_unwritten();
    if rows.is_empty() {
        return;
    }
    if let Err(e) = be.refresh_bindings(&rows).await {
        tracing::warn!(error = %e, refreshes = rows.len(), "writing refreshed SIP bindings");
        memory
            .lock()
            .expect("the bindings' memory")
            .unwritten_again(rows);
    }
}

/// What a Front End holds of its users' bindings: each user's as last committed here, and
/// the refreshes answered and not yet written. One entry a user, so that a refresh looks
/// its user up once. Pure: the time comes in.
#[derive(Debug, Default)]
struct Memory {
    /// By address of record: users who authenticated, so the directory's keys.
    users: TrustedKeys<String, User>,
    /// The users with refreshes to write, noted when their first one since the last
    /// write was answered (a user may be named twice; the second finds nothing left).
    to_write: Vec<String>,
}

/// One user's entry: kept while either part holds something.
#[derive(Debug, Default)]
struct User {
    /// Their bindings as a commit here left them; None once forgotten.
    held: Option<Held>,
    /// The bindings refreshed, as the latest answer left them.
    unwritten: Vec<Binding>,
}

/// One user's bindings as a commit here left them (every Front End's), and when.
#[derive(Debug)]
struct Held {
    bindings: Arc<Vec<Binding>>,
    read_at: i64,
}

impl Memory {
    /// The user's bindings after `change` when it only binds again contacts the user
    /// holds (in the same mode, through this server), and what is held was read less than
    /// [`HELD_FOR`] ago; the refresh is then noted for writing.
    /// None when the change must be committed.
    fn refresh(&mut self, change: &Change<'_>, now: i64) -> Option<Arc<Vec<Binding>>> {
        let user = self.users.get_mut(change.aor)?;
        let held = user.held.as_mut()?;
        if now - held.read_at >= millis(HELD_FOR) {
            return None;
        }
        if held.bindings.iter().any(|b| b.expires_at <= now) {
            Arc::make_mut(&mut held.bindings).retain(|b| b.expires_at > now);
        }
        // A query (a REGISTER without Contact, rare) reads the Back End: it sees what
        // the pool's other Front Ends did at once.
        let BindingUpdate::Contacts(contacts) = &change.what else {
            return None;
        };
        let refreshes_held = |(contact, until): &(String, Option<i64>)| {
            until.is_some()
                && held.bindings.iter().any(|b| {
                    &b.contact == contact && b.mode == change.mode && b.server == change.server
                })
        };
        if !contacts.iter().all(refreshes_held) {
            return None;
        }
        // The answer shares the bindings held: they are copied only when an answer still
        // holds them as the next refresh changes them.
        let bindings = Arc::make_mut(&mut held.bindings);
        for (contact, until) in contacts {
            let Some(until) = *until else { continue };
            let Some(b) = bindings.iter_mut().find(|b| &b.contact == contact) else {
                continue;
            };
            b.expires_at = until;
            if user.unwritten.is_empty() {
                self.to_write.push(change.aor.to_owned());
            }
            match user.unwritten.iter_mut().find(|u| &u.contact == contact) {
                Some(entry) => entry.expires_at = until,
                None => user.unwritten.push(b.clone()),
            }
        }
        Some(held.bindings.clone())
    }

    /// `change` committed, leaving the user `bindings` at `now`: they answer the user's
    /// next refreshes. A refresh not yet written of a contact the change left alone is
    /// newer than what the batch read; one of a contact the change wrote is older.
    fn committed(&mut self, change: &RegistrationChange, bindings: &[Binding], now: i64) {
        // A user not held yet is held while there is room (and has nothing unwritten).
        let room = self.users.len() < HELD_USERS;
        let user = match self.users.get_mut(&change.aor) {
            Some(user) => user,
            None if room => self.users.entry(change.aor.clone()).or_default(),
            None => return,
        };
        let written = |contact: &str| match &change.what {
            BindingUpdate::Query => false,
            BindingUpdate::RemoveAll => true,
            BindingUpdate::Contacts(contacts) => contacts.iter().any(|(c, _)| c == contact),
        };
        user.unwritten.retain(|u| !written(&u.contact));
        let mut bindings = bindings.to_vec();
        for u in &user.unwritten {
            if let Some(b) = bindings.iter_mut().find(|b| b.contact == u.contact) {
                b.expires_at = u.expires_at;
            }
        }
        user.held = Some(Held {
            bindings: Arc::new(bindings),
            read_at: now,
        });
    }

    /// Forgets what is held of `aor`: their next REGISTER is committed. Their refreshes
    /// not yet written are still written.
    fn forget(&mut self, aor: &str) {
        if let Some(user) = self.users.get_mut(aor) {
            user.held = None;
            if user.unwritten.is_empty() {
                self.users.remove(aor);
            }
        }
    }

    /// Forgets `aor` wholly, refreshes not yet written too: the user was signed out.
    fn sign_out(&mut self, aor: &str) {
        self.users.remove(aor);
    }

    /// Drops what was read [`HELD_FOR`] ago or more: it answers nothing any more.
    fn forget_stale(&mut self, now: i64) {
        self.users.retain(|_, user| {
            if user
                .held
                .as_ref()
                .is_some_and(|held| now - held.read_at >= millis(HELD_FOR))
            {
                user.held = None;
            }
            user.held.is_some() || !user.unwritten.is_empty()
        });
    }

    /// The refreshes to write, taken (each binding names its user).
    fn take_unwritten(&mut self) -> Vec<Binding> {
        let mut rows = Vec::new();
        let mut to_write = std::mem::take(&mut self.to_write);
        for aor in to_write.drain(..) {
            if let Some(user) = self.users.get_mut(&aor) {
                rows.append(&mut user.unwritten);
                if user.held.is_none() {
                    self.users.remove(&aor);
                }
            }
        }
        // The next second's list starts with the room this one's took.
        self.to_write = to_write;
        rows
    }

    /// Refreshes that could not be written, back in the queue behind any newer answer.
    fn unwritten_again(&mut self, again: Vec<Binding>) {
        for b in again {
            let user = match self.users.get_mut(&b.aor) {
                Some(user) => user,
                None => self.users.entry(b.aor.clone()).or_default(),
            };
            if user.unwritten.is_empty() {
                self.to_write.push(b.aor.clone());
            }
            if !user.unwritten.iter().any(|u| u.contact == b.contact) {
                user.unwritten.push(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "sip:alice@contoso.com";
    const FE: &str = "pool1-fe1.contoso.com";
    const PHONE: &str = "sip:alice@127.0.0.60:5060";
    const LAPTOP: &str = "sip:alice@127.0.0.61:5060";

    fn change(what: BindingUpdate) -> RegistrationChange {
        RegistrationChange {
            aor: ALICE.into(),
            what,
            mode: "full".into(),
            server: FE.into(),
        }
    }

    fn bind(contacts: &[(&str, Option<i64>)]) -> RegistrationChange {
        change(BindingUpdate::Contacts(
            contacts
                .iter()
                .map(|(c, u)| ((*c).to_string(), *u))
                .collect(),
        ))
    }

    impl Memory {
        /// [`Memory::refresh`] of a change as the Back End takes it.
        fn refresh_change(&mut self, c: &RegistrationChange, now: i64) -> Option<Vec<Binding>> {
            let change = Change {
                aor: &c.aor,
                what: c.what.clone(),
                mode: &c.mode,
                server: &c.server,
            };
            self.refresh(&change, now).map(|b| b.to_vec())
        }
    }

    fn binding(contact: &str, expires_at: i64, server: &str) -> Binding {
        Binding {
            aor: ALICE.into(),
            contact: contact.into(),
            expires_at,
            mode: "full".into(),
            server: server.into(),
        }
    }

    /// Memory after the phone's binding was committed at t=1000, until t=3_601_000.
    fn holding_the_phone() -> Memory {
        let mut memory = Memory::default();
        let first = bind(&[(PHONE, Some(3_601_000))]);
        memory.committed(&first, &[binding(PHONE, 3_601_000, FE)], 1_000);
        memory
    }

    fn unwritten(memory: &Memory) -> Vec<(String, i64)> {
        let refreshed = memory
            .users
            .get(ALICE)
            .map(|user| user.unwritten.clone())
            .unwrap_or_default();
        refreshed
            .into_iter()
            .map(|b| (b.contact, b.expires_at))
            .collect()
    }

    #[test]
    fn a_refresh_of_a_held_contact_is_answered_from_memory_and_noted_for_writing() {
        let mut memory = holding_the_phone();
        let answer = memory.refresh_change(&bind(&[(PHONE, Some(3_602_000))]), 2_000);
        assert_eq!(answer, Some(vec![binding(PHONE, 3_602_000, FE)]));
        // Coalesced: three refreshes in the window are one row to write, the latest.
        memory.refresh_change(&bind(&[(PHONE, Some(3_603_000))]), 3_000);
        memory.refresh_change(&bind(&[(PHONE, Some(3_604_000))]), 4_000);
        assert_eq!(unwritten(&memory), vec![(PHONE.to_string(), 3_604_000)]);
        assert_eq!(memory.take_unwritten().len(), 1);
        assert!(memory.take_unwritten().is_empty());
    }

    #[test]
    fn whatever_changes_the_bindings_goes_to_the_back_end() {
        let mut memory = holding_the_phone();
        let commits = [
            // A query reads what the pool's other Front Ends did.
            change(BindingUpdate::Query),
            bind(&[(LAPTOP, Some(3_602_000))]),
            bind(&[(PHONE, Some(3_602_000)), (LAPTOP, Some(3_602_000))]),
            bind(&[(PHONE, None)]),
            change(BindingUpdate::RemoveAll),
        ];
        for c in &commits {
            assert_eq!(memory.refresh_change(c, 2_000), None, "{c:?}");
        }
        // In another mode, or taken by another Front End: committed too.
        let mut resiliency = bind(&[(PHONE, Some(3_602_000))]);
        resiliency.mode = "resiliency".into();
        assert_eq!(memory.refresh_change(&resiliency, 2_000), None);
        let mut elsewhere = bind(&[(PHONE, Some(3_602_000))]);
        elsewhere.server = "pool1-fe2.contoso.com".into();
        assert_eq!(memory.refresh_change(&elsewhere, 2_000), None);
        // A user never committed here, or whose binding expired.
        assert_eq!(
            Memory::default().refresh_change(&bind(&[(PHONE, Some(9))]), 2_000),
            None
        );
        assert_eq!(
            memory.refresh_change(&bind(&[(PHONE, Some(3_700_000))]), 3_601_000),
            None
        );
        assert!(memory.take_unwritten().is_empty());
    }

    #[test]
    fn what_was_read_answers_for_a_while_only() {
        let mut memory = holding_the_phone();
        let read_at = 1_000;
        let last = read_at + millis(HELD_FOR) - 1;
        assert!(
            memory
                .refresh_change(&bind(&[(PHONE, Some(3_700_000))]), last)
                .is_some()
        );
        assert_eq!(
            memory.refresh_change(&bind(&[(PHONE, Some(3_700_000))]), last + 1),
            None
        );
        memory.forget_stale(last);
        assert!(memory.users[ALICE].held.is_some());
        memory.forget_stale(last + 1);
        assert!(memory.users[ALICE].held.is_none());
        // What was refreshed is still written; then nothing of the user is left.
        assert_eq!(unwritten(&memory), vec![(PHONE.to_string(), 3_700_000)]);
        assert_eq!(memory.take_unwritten().len(), 1);
        assert!(memory.users.is_empty());
    }

    #[test]
    fn a_commit_keeps_the_newer_of_its_read_and_an_unwritten_refresh() {
        let mut memory = holding_the_phone();
        memory.refresh_change(&bind(&[(PHONE, Some(3_605_000))]), 5_000);
        // The laptop's commit read the phone's binding before its refresh was written,
        // and left it alone: the refresh is newer, and still to be written.
        let laptop = bind(&[(LAPTOP, Some(3_606_000))]);
        let read = [
            binding(LAPTOP, 3_606_000, FE),
            binding(PHONE, 3_601_000, FE),
        ];
        memory.committed(&laptop, &read, 6_000);
        let held = memory.users[ALICE].held.as_ref().unwrap().bindings.clone();
        assert_eq!(held[1], binding(PHONE, 3_605_000, FE));
        assert_eq!(unwritten(&memory), vec![(PHONE.to_string(), 3_605_000)]);
        // A commit that wrote the phone's binding itself supersedes the refresh.
        let phone = bind(&[(PHONE, Some(3_607_000))]);
        memory.committed(&phone, &[binding(PHONE, 3_607_000, FE)], 7_000);
        assert!(unwritten(&memory).is_empty());
    }

    #[test]
    fn refreshes_that_could_not_be_written_wait_behind_newer_answers() {
        let mut memory = holding_the_phone();
        memory.refresh_change(&bind(&[(PHONE, Some(3_602_000))]), 2_000);
        let failed = memory.take_unwritten();
        memory.refresh_change(&bind(&[(PHONE, Some(3_603_000))]), 3_000);
        memory.unwritten_again(failed);
        assert_eq!(unwritten(&memory), vec![(PHONE.to_string(), 3_603_000)]);
        let mut memory = holding_the_phone();
        memory.refresh_change(&bind(&[(PHONE, Some(3_602_000))]), 2_000);
        let failed = memory.take_unwritten();
        memory.unwritten_again(failed);
        assert_eq!(unwritten(&memory), vec![(PHONE.to_string(), 3_602_000)]);
    }

    #[test]
    fn a_user_signed_out_is_forgotten_with_the_refreshes_not_yet_written() {
        let mut memory = holding_the_phone();
        memory.refresh_change(&bind(&[(PHONE, Some(3_602_000))]), 2_000);
        memory.sign_out(ALICE);
        assert!(memory.take_unwritten().is_empty());
        assert_eq!(
            memory.refresh_change(&bind(&[(PHONE, Some(3_603_000))]), 3_000),
            None
        );
    }

    #[test]
    fn a_user_forgotten_after_a_failed_commit_still_has_their_refreshes_written() {
        let mut memory = holding_the_phone();
        memory.refresh_change(&bind(&[(PHONE, Some(3_602_000))]), 2_000);
        memory.forget(ALICE);
        assert_eq!(
            memory.refresh_change(&bind(&[(PHONE, Some(3_603_000))]), 3_000),
            None,
            "nothing held answers a refresh"
        );
        let rows = memory.take_unwritten();
        assert_eq!(rows, vec![binding(PHONE, 3_602_000, FE)]);
        assert!(memory.users.is_empty());
        // A user forgotten with nothing to write leaves nothing.
        let mut memory = holding_the_phone();
        memory.forget(ALICE);
        assert!(memory.users.is_empty());
    }

    #[test]
    fn memory_is_bounded() {
        let mut memory = Memory::default();
        for n in 0..HELD_USERS + 10 {
            let mut c = bind(&[(PHONE, Some(3_601_000))]);
            c.aor = format!("sip:user{n}@contoso.com");
            memory.committed(&c, &[], 1_000);
        }
        assert_eq!(memory.users.len(), HELD_USERS);
    }
}
