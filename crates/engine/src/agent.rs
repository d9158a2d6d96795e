//! The pool's part of a pool operation's step, done by a Front End on its own pool's
//! Back End when the runner asks it (the runner never opens another pool's Back End).
//!
//! Every action is safe to run twice: a fence that is up stays up, a promotion replaces
//! the users' items with the copy and logs only differences, a sign-out of users who are
//! signed out removes nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use backup::Module;
use backup::heard::HeardBacklog;
use backup::protocol::{CHECKSUMS_PATH, Checksums};
use clock::Backoff;
use dr::Loss;
use node::services::RTCSRV;
use serde::{Deserialize, Serialize};

use crate::{Engine, Error};

/// The user modules a pool operation moves.
pub const USER_MODULES: [Module; 2] = [Module::PresenceFocus, Module::DataConf];

/// What a step asks a pool's Front End to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum PoolAction {
    /// Refuse writes of the users homed on `home`.
    Fence { home: String, reason: String },
    /// Take their writes again (a cancelled operation).
    Unfence { home: String },
    /// A failback sent `home`'s users home: stop serving them in resiliency mode now.
    PartnerBack { home: String },
    /// Wait until the Backup Service has shipped every change committed so far.
    Drain { wait_ms: u64 },
    /// Compare this pool's copy of `home`'s users with the partner's backup copy.
    Verify { home: String },
    /// Make the backup copy from `source` the writable copy of `home`'s users.
    Promote { source: String, home: String },
    /// Remove the registrations of `home`'s users and tell their endpoints that `to`
    /// is their registrar now.
    SignOut { home: String, to: String },
    /// Drop the data of `home`'s users (they are served elsewhere now).
    Retire { home: String },
    /// The changes committed here after `cut`.
    Lost { cut: BTreeMap<String, i64> },
    /// Stop RTCSRV after `delay_mins`.
    StopServices { delay_mins: u32 },
    /// Start RTCSRV (a failback, before the users come home), dropping any stop a
    /// failover scheduled.
    StartServices,
}

/// What the Front End did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolActionReply {
    /// One line on what was done, for the operation record.
    pub detail: String,
    /// Drain: changes still waiting. Verify: users that differ.
    pub left: i64,
    pub users: i64,
    pub cut: BTreeMap<String, i64>,
    pub last_heard_ms: Option<i64>,
    pub loss: Option<Loss>,
    /// Promote: what the source pool had not shipped here when it last answered.
    #[serde(default)]
    pub heard: Option<HeardBacklog>,
    /// Verify: the users whose copies differ.
    #[serde(default)]
    pub affected: Vec<String>,
    /// Drain: why the backlog did not move, when the Backup Service knows (a stopped
    /// service, a partner that refuses), with the command that fixes it.
    #[serde(default)]
    pub stalled_by: Option<String>,
}

impl Engine {
    /// Runs a pool action on this Front End.
    pub async fn pool_action(&self, action: PoolAction) -> Result<PoolActionReply, Error> {
        let server = &*self.node;
        let (Some(be), Some(service)) = (&server.backend, &server.backup) else {
            return Err(Error::conflict(format!(
                "{} is not a Front End",
                server.fqdn
            )));
        };
        let users_of = |home: String| async move { server.users_homed_on(&home).await };
        let mut reply = PoolActionReply::default();
        match action {
            PoolAction::Fence { home, reason } => {
                be.fence(&home, &reason).await?;
                reply.detail = format!("{} refuses writes of {home}'s users", server.pool);
            }
            PoolAction::PartnerBack { home } => {
                server.serving.partner_is_back();
                reply.detail = format!("{} sends {home}'s users home at once", server.fqdn);
            }
            PoolAction::Unfence { home } => {
                be.unfence(&home).await?;
                reply.detail = format!("{} takes writes of {home}'s users again", server.pool);
            }
            PoolAction::Drain { wait_ms } => {
                let mut heads = BTreeMap::new();
                for m in USER_MODULES {
                    heads.insert(m.short_name(), be.change_head(m.short_name()).await?);
                }
                let clock = server.clock;
                let started = clock.now_ms();
                let deadline = clock.deadline(Duration::from_millis(wait_ms));
                let mut backoff =
                    Backoff::new(Duration::from_millis(10), Duration::from_millis(50));
                loop {
                    let status = service.local_status().await.map_err(Error::internal)?;
                    let left: i64 = status
                        .exports
                        .iter()
                        .filter(|e| e.applicable)
                        .filter_map(|e| {
                            let head = heads.get(e.module.as_str())?;
                            Some((head - e.acked_seq).max(0))
                        })
                        .sum();
                    if left == 0 || clock.passed(deadline) {
                        reply.left = left;
                        reply.detail = if left == 0 {
                            format!(
                                "every change of {} reached {} ({} ms)",
                                server.pool,
                                service.partner().unwrap_or_default(),
                                clock.now_ms() - started
                            )
                        } else {
                            format!("{left} changes still waiting after {wait_ms} ms")
                        };
                        reply.stalled_by = stalled_by(&status, &server.pool);
                        break;
                    }
                    service.wake();
                    backoff.wait(&clock).await;
                }
            }
            PoolAction::Verify { home } => {
                let Some(partner) = service.partner() else {
                    return Err(Error::conflict(format!(
                        "{} has no backup pool",
                        server.pool
                    )));
                };
                let users: std::collections::BTreeSet<String> =
                    users_of(home).await?.into_iter().collect();
                let mut bad = Vec::new();
                for m in USER_MODULES {
                    let mut primary = service
                        .primary_checksums(m)
                        .await
                        .map_err(Error::internal)?;
                    let mut copy: Checksums = service
                        .ask(
                            &partner,
                            &format!(
                                "{CHECKSUMS_PATH}?source={}&module={}",
                                server.pool,
                                m.short_name()
                            ),
                        )
                        .await
                        .map_err(|e| {
                            Error::unavailable(format!("{partner} does not answer: {e}"))
                        })?;
                    primary.retain(|sip, _| users.contains(sip));
                    copy.retain(|sip, _| users.contains(sip));
                    bad.extend(backup::service::mismatches(&primary, &copy));
                }
                bad.sort();
                bad.dedup();
                reply.left = bad.len() as i64;
                reply.affected = bad.clone();
                reply.users = users.len() as i64;
                reply.detail = if bad.is_empty() {
                    format!("{} users: the copy on {partner} matches", users.len())
                } else {
                    format!(
                        "{} of {} users differ on {partner}, for example {}",
                        bad.len(),
                        users.len(),
                        bad.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
                    )
                };
            }
            PoolAction::Promote { source, home } => {
                let users = users_of(home.clone()).await?;
                let p = be.promote_backup(&source, &home, &users).await?;
                reply.users = p.users;
                reply.cut = p.cut.iter().map(|(m, (s, _))| (m.clone(), *s)).collect();
                // A module the source never shipped a change of is cut at its start: every
                // change it holds there is lost, and the failback must count them.
                for m in USER_MODULES {
                    reply.cut.entry(m.short_name().to_string()).or_insert(0);
                }
                reply.last_heard_ms = p.cut.values().map(|(_, t)| *t).max();
                reply.heard = service.partner_heard(Some(&source));
                reply.detail = format!(
                    "{} serves {} users of {home} from the copy {source} shipped: {} items, {} changes queued for {source}",
                    server.pool, p.users, p.items, p.changes_logged
                );
                service.wake();
            }
            PoolAction::SignOut { home, to } => {
                let users = users_of(home.clone()).await?;
                let gone = be.unregister_users(&users).await?;
                let removed = gone.len();
                let told = match self.sign_out.get() {
                    Some(s) => s.tell_signed_out(gone, &to),
                    None => 0,
                };
                reply.users = users.len() as i64;
                reply.detail = format!(
                    "{removed} registrations of {home}'s users removed from {}; {told} endpoints told to sign in at {to}",
                    server.pool
                );
            }
            PoolAction::Retire { home } => {
                let users = users_of(home.clone()).await?;
                let n = be.retire_users(&users).await?;
                be.unregister_users(&users).await?;
                reply.detail = format!("{n} items of {home}'s users dropped from {}", server.pool);
                service.wake();
            }
            PoolAction::Lost { cut } => {
                let lost = be.changes_after_cut(&cut).await?;
                let users = lost.users();
                let loss = Loss {
                    estimated: None,
                    changes: lost.changes.len() as i64,
                    from_ms: lost.changes.first().map(|c| c.committed_at),
                    to_ms: lost.changes.last().map(|c| c.committed_at),
                    users,
                    exact: true,
                    note: format!(
                        "counted on {} from its change log: committed there but never copied before the disaster failover",
                        server.pool
                    ),
                };
                reply.detail = format!(
                    "{} changes of {} users were lost",
                    loss.changes,
                    loss.users.len()
                );
                reply.loss = Some(loss);
            }
            PoolAction::StopServices { delay_mins } => {
                let (pool, fqdn) = (server.pool.clone(), server.fqdn.clone());
                reply.detail = format!("RTCSRV on {fqdn} stops in {delay_mins} minutes");
                // The server's own services are addressed through the same flag the
                // Stop-CsWindowsService cmdlet sets.
                let services = server.services.clone();
                let seen = services.list(Some(RTCSRV)).first().map_or(0, |s| s.changes);
                let (clock, stop) = (server.clock, server.shutdown.clone());
                server.spawn(async move {
                    tokio::select! {
                        () = clock.sleep(Duration::from_secs(u64::from(delay_mins) * 60)) => {}
                        () = stop.cancelled() => return,
                    }
                    // A failback (or an operator) that started or stopped it since has the
                    // last word.
                    if services.stop_unless_changed(RTCSRV, seen) {
                        tracing::info!(%pool, %fqdn, "RTCSRV stopped after the failover's ServicesStopDelayMins");
                    }
                });
            }
            PoolAction::StartServices => {
                let was = server.services.is_running(RTCSRV);
                server.services.set(RTCSRV, true);
                reply.detail = format!(
                    "RTCSRV on {} {}",
                    server.fqdn,
                    if was { "runs" } else { "started" }
                );
            }
        }
        Ok(reply)
    }
}

/// Why a pool's Backup Service is not shipping, from its own status: no Front End runs the
/// exporter (`LYNCBACKUP` stopped everywhere), or the last shipment failed (the partner's
/// service stopped, the partner unreachable or refusing).
fn stalled_by(status: &backup::protocol::PoolStatus, pool: &str) -> Option<String> {
    if status.active_exporter.is_none() {
        return Some(format!(
            "the Backup Service (LYNCBACKUP) is stopped on every Front End of {pool}; \
             Start-CsWindowsService -Name LYNCBACKUP -ComputerName <a Front End of {pool}> starts it"
        ));
    }
    status
        .exports
        .iter()
        .filter(|e| e.applicable && e.pending > 0)
        .find_map(|e| e.last_error.clone())
        .map(|e| format!("its last shipment failed: {e}"))
}
