//! The console's sign-in sessions.
//!
//! A browser cannot be made to send `Authorization: Bearer` on a page load or an
//! `EventSource`, so the console trades the token for a session once: the operator types it
//! into the sign-in form, the server checks it exactly as the API does
//! (`operators::authenticate`) and answers with a cookie naming a new random session
//! (256 bits from the operating system; `HttpOnly`, `Secure`, `SameSite=Strict`, limited to
//! `/console`). The token is never kept: an operator's session remembers the hash of the
//! token it was opened with, and every request checks that the operator still exists with
//! that token (`Remove-CsAdminOperator`, or a new token, ends its sessions). Sessions live
//! in this server's memory for at most [`SESSION_TTL_MS`], at most [`MAX_SESSIONS`] of them
//! (the oldest goes first); forms that change something carry the session's own
//! anti-forgery token as well.
//!
//! Failed sign-ins are counted per source address: past [`MAX_FAILED_PER_MINUTE`] in a
//! minute the form answers "try again in a minute" to that address, so guessing is bounded
//! whatever the token's strength, and one address's failures do not lock others out (at
//! most [`MAX_TRACKED_SOURCES`] addresses are remembered; the quietest is forgotten first).

use std::collections::HashMap;
use std::sync::Mutex;

use console::action::ActionRecord;
use tokio::sync::watch;

use crate::operators::Operator;

/// How long a session lasts after sign-in.
pub const SESSION_TTL_MS: i64 = 8 * 3600 * 1000;
/// Sessions one server keeps at once.
pub const MAX_SESSIONS: usize = 256;
/// Failed sign-ins a server takes in a minute before it refuses every attempt until the
/// minute is over.
pub const MAX_FAILED_PER_MINUTE: usize = 20;
/// Source addresses whose failed sign-ins are counted at once.
pub const MAX_TRACKED_SOURCES: usize = 1024;
/// Actions a session remembers (the oldest are forgotten).
pub const MAX_ACTIONS: usize = 20;

/// The cookie's name.
pub const COOKIE: &str = "tandem_console";

/// One session, as a request sees it.
#[derive(Debug, Clone)]
pub struct Session {
    pub operator: Operator,
    /// The hash of the operator's token at sign-in (`None` for the deployment's token).
    pub token_sha256: Option<String>,
    /// The anti-forgery token its forms carry.
    pub csrf: String,
    pub expires_ms: i64,
    /// The actions it started, which its event stream shows.
    pub actions: watch::Sender<Vec<ActionRecord>>,
}

/// Every session of this server, by the SHA-256 of its id (the id itself is not kept, so
/// a look-up's timing says nothing about it).
#[derive(Debug, Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<[u8; 32], Session>,
    /// Each source address's failed sign-ins of the last minute.
    failures: HashMap<std::net::IpAddr, Vec<i64>>,
    next_action: u64,
}

impl Sessions {
    /// A new session for `operator`: its id (the cookie's value).
    pub fn open(&self, operator: Operator, token_sha256: Option<String>, now_ms: i64) -> String {
        let id = crate::operators::random_hex();
        let session = Session {
            operator,
            token_sha256,
            csrf: crate::operators::random_hex(),
            expires_ms: now_ms + SESSION_TTL_MS,
            actions: watch::Sender::new(Vec::new()),
        };
        let mut inner = self.inner.lock().expect("sessions lock");
        inner.sessions.retain(|_, s| s.expires_ms > now_ms);
        if inner.sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = inner
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.expires_ms)
                .map(|(k, _)| *k)
        {
            inner.sessions.remove(&oldest);
        }
        inner.sessions.insert(api::token_digest(&id), session);
        id
    }

    /// The session `id` names, while it lasts.
    pub fn get(&self, id: &str, now_ms: i64) -> Option<Session> {
        if id.len() != 64 {
            return None;
        }
        let key = api::token_digest(id);
        let mut inner = self.inner.lock().expect("sessions lock");
        match inner.sessions.get(&key) {
            Some(s) if s.expires_ms > now_ms => Some(s.clone()),
            Some(_) => {
                inner.sessions.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends the session `id` names.
    pub fn close(&self, id: &str) {
        let key = api::token_digest(id);
        self.inner
            .lock()
            .expect("sessions lock")
            .sessions
            .remove(&key);
    }

    /// Whether a sign-in from `source` may be tried now.
    pub fn may_try(&self, source: std::net::IpAddr, now_ms: i64) -> bool {
        let mut inner = self.inner.lock().expect("sessions lock");
        let Some(times) = inner.failures.get_mut(&source) else {
            return true;
        };
        times.retain(|t| *t > now_ms - 60_000);
        times.len() < MAX_FAILED_PER_MINUTE
    }

    /// Counts a failed sign-in from `source`.
    pub fn failed(&self, source: std::net::IpAddr, now_ms: i64) {
        let mut inner = self.inner.lock().expect("sessions lock");
        if !inner.failures.contains_key(&source) && inner.failures.len() >= MAX_TRACKED_SOURCES {
            inner
                .failures
                .retain(|_, times| times.last().is_some_and(|t| *t > now_ms - 60_000));
            if inner.failures.len() >= MAX_TRACKED_SOURCES
                && let Some(quietest) = inner
                    .failures
                    .iter()
                    .min_by_key(|(_, times)| times.last().copied().unwrap_or(0))
                    .map(|(a, _)| *a)
            {
                inner.failures.remove(&quietest);
            }
        }
        inner.failures.entry(source).or_default().push(now_ms);
    }

    /// A number for a new action, unique on this server.
    pub fn next_action(&self) -> u64 {
        let mut inner = self.inner.lock().expect("sessions lock");
        inner.next_action += 1;
        inner.next_action
    }
}

/// The session id in a request's `Cookie` header.
pub fn cookie_value(header: Option<&str>) -> Option<&str> {
    header?.split(';').find_map(|part| {
        let (name, value) = part.trim().split_once('=')?;
        (name == COOKIE).then_some(value)
    })
}

/// The `Set-Cookie` value that gives the browser session `id`.
pub fn set_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; Path=/console; Max-Age={}; HttpOnly; Secure; SameSite=Strict",
        SESSION_TTL_MS / 1000
    )
}

/// The `Set-Cookie` value that makes the browser forget its session.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/console; Max-Age=0; HttpOnly; Secure; SameSite=Strict")
}

/// Adds `record` to a session's actions, or replaces the one with its id.
pub fn record_action(actions: &watch::Sender<Vec<ActionRecord>>, record: ActionRecord) {
    actions.send_modify(|list| {
        if let Some(old) = list.iter_mut().find(|a| a.id == record.id) {
            *old = record;
        } else {
            list.push(record);
            if list.len() > MAX_ACTIONS {
                list.remove(0);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_lasts_its_time_and_ends_when_closed() {
        let sessions = Sessions::default();
        let id = sessions.open(Operator::lab_administrator(), None, 1_000);
        assert_eq!(id.len(), 64);
        let s = sessions.get(&id, 1_000 + SESSION_TTL_MS - 1).unwrap();
        assert_eq!(s.operator.name, "administrator");
        assert_eq!(s.csrf.len(), 64);
        assert_ne!(s.csrf, id);
        assert!(sessions.get(&id, 1_000 + SESSION_TTL_MS).is_none());
        let id = sessions.open(Operator::lab_administrator(), None, 1_000);
        sessions.close(&id);
        assert!(sessions.get(&id, 1_001).is_none());
        assert!(sessions.get("short", 1_001).is_none());
    }

    #[test]
    fn the_oldest_session_goes_when_there_are_too_many() {
        let sessions = Sessions::default();
        let first = sessions.open(Operator::lab_administrator(), None, 0);
        let mut last = String::new();
        for i in 1..=MAX_SESSIONS as i64 {
            last = sessions.open(Operator::lab_administrator(), None, i);
        }
        assert!(sessions.get(&first, 10_000).is_none());
        assert!(sessions.get(&last, 10_000).is_some());
    }

    #[test]
    fn failed_sign_ins_are_bounded_per_minute_and_per_address() {
        let sessions = Sessions::default();
        let (mallory, alice) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for i in 0..MAX_FAILED_PER_MINUTE as i64 {
            assert!(sessions.may_try(mallory, i));
            sessions.failed(mallory, i);
        }
        assert!(!sessions.may_try(mallory, 30_000));
        assert!(
            sessions.may_try(alice, 30_000),
            "another address is not locked out"
        );
        assert!(sessions.may_try(mallory, 60_000 + MAX_FAILED_PER_MINUTE as i64));
        // Addresses beyond the bound push out the quietest, not the memory's limit.
        for i in 0..(MAX_TRACKED_SOURCES as u32 + 10) {
            sessions.failed(
                std::net::IpAddr::from(i.to_be_bytes()),
                70_000 + i64::from(i),
            );
        }
        assert!(sessions.inner.lock().unwrap().failures.len() <= MAX_TRACKED_SOURCES);
    }

    #[test]
    fn the_cookie_is_found_among_others_and_set_safely() {
        assert_eq!(
            cookie_value(Some("a=1; tandem_console=abc; b=2")),
            Some("abc")
        );
        assert_eq!(cookie_value(Some("tandem_consolex=abc")), None);
        assert_eq!(cookie_value(None), None);
        let set = set_cookie("abc");
        for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/console"] {
            assert!(set.contains(attribute), "{set}");
        }
        assert!(clear_cookie().contains("Max-Age=0"));
    }

    #[test]
    fn a_session_keeps_its_newest_actions() {
        let (tx, _) = watch::channel(Vec::new());
        for id in 0..(MAX_ACTIONS as u64 + 5) {
            record_action(
                &tx,
                ActionRecord {
                    id,
                    line: "Get-CsTopology".into(),
                    started: String::new(),
                    state: console::action::ActionState::Running,
                    output: String::new(),
                },
            );
        }
        record_action(
            &tx,
            ActionRecord {
                id: 10,
                line: "done".into(),
                started: String::new(),
                state: console::action::ActionState::Succeeded,
                output: String::new(),
            },
        );
        let list = tx.borrow();
        assert_eq!(list.len(), MAX_ACTIONS);
        assert_eq!(list[0].id, 5);
        assert_eq!(list.iter().find(|a| a.id == 10).unwrap().line, "done");
    }
}
