//! The reconciler: an operation whose runner died is carried on without an operator.
//!
//! It runs on every Front End with the Central Management services and acts only while
//! that server is the active master, so exactly one server looks. Every
//! [`PERIOD`] it reads the operations:
//!
//! - a pool operation recorded as running whose runner no longer lists it in its
//!   `/health` (the process died, or restarted) is resumed here once it has been
//!   orphaned for the engine's grace period — long enough that an operator who resumes it
//!   right away does so himself;
//! - a CMS failover recorded in this pool's Back End is finished the same way once it is
//!   past its point of no return (the standby was promoted — the record or the store
//!   says so — and finishing is the only way on).
//!   Before that it waits for the operator, who chooses between a resume and `-Restore`,
//!   and the reconciler says so in the log once.
//!
//! A stopped operation (a step failed and said why: a drain that timed out, copies that
//! differ) also waits for the operator: its error names the command that carries it on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dr::progress::OpState;

use crate::Engine;
use crate::pool::pool_op_key;

/// How often the reconciler looks.
pub const PERIOD: Duration = Duration::from_secs(1);

/// What the reconciler has seen orphaned, and since when (ms).
#[derive(Debug, Default)]
struct Orphans {
    since: BTreeMap<String, i64>,
    /// CMS failovers already said to wait for the operator.
    told: std::collections::BTreeSet<String>,
}

impl Orphans {
    /// Notes `key` orphaned now; true once it has been for `grace`.
    fn due(&mut self, key: &str, now: i64, grace: Duration) -> bool {
        let since = *self.since.entry(key.to_string()).or_insert(now);
        now - since >= grace.as_millis() as i64
    }

    /// Forgets everything not in `seen`.
    fn keep_only(&mut self, seen: &[String]) {
        self.since.retain(|k, _| seen.contains(k));
    }
}

impl Engine {
    /// Starts the reconciler as a task of the node; it ends when the node shuts down.
    pub fn start_reconciler(self: &Arc<Self>) {
        let engine = self.clone();
        self.node.spawn(async move {
            let mut orphans = Orphans::default();
            let clock = engine.node.clock;
            loop {
                tokio::select! {
                    () = clock.sleep(PERIOD) => {}
                    () = engine.node.shutdown.cancelled() => return,
                }
                if engine.node.is_active_master() {
                    engine.reconcile_once(&mut orphans).await;
                } else {
                    orphans = Orphans::default();
                }
            }
        });
    }

    async fn reconcile_once(self: &Arc<Self>, orphans: &mut Orphans) {
        let now = self.node.clock.now_ms();
        let mut seen = Vec::new();
        // Pool operations, from the CMS (this server is its master).
        if let Ok(view) = self.dr_view().await {
            for op in crate::pool::running_ops(&view) {
                let key = pool_op_key(op.id);
                if self.runner_alive(&op.progress.runner, &key).await {
                    continue;
                }
                seen.push(key.clone());
                if !orphans.due(&key, now, self.reconcile_after) {
                    continue;
                }
                tracing::warn!(
                    id = op.id,
                    runner = %op.progress.runner,
                    "operation {} was left running by a runner that is gone; carrying it on here",
                    op.id
                );
                let engine = self.clone();
                let id = op.id.to_string();
                self.node.spawn(async move {
                    match engine.resume_pool_operation(&id, false, false).await {
                        Ok(summary) => {
                            tracing::info!(%summary, "reconciler finished operation {id}")
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "reconciler could not finish operation {id}")
                        }
                    }
                });
                orphans.since.remove(&key);
            }
        }
        // A CMS failover kept in this pool's Back End.
        if let Some(be) = &self.node.backend
            && let Ok(Some(stored)) = crate::cms_failover::latest(be).await
            && stored.record.progress.state == OpState::Running
        {
            let key = stored.record.key();
            let runner = stored.record.progress.runner.clone();
            if !self.runner_alive(&runner, &key).await {
                seen.push(key.clone());
                let target_active = be
                    .cms_role()
                    .await
                    .is_ok_and(|r| r.mode == store::CmsMode::Active);
                if !stored.record.may_finish_alone(target_active) {
                    if orphans.told.insert(key.clone()) {
                        tracing::warn!(
                            id = stored.record.id,
                            %runner,
                            "the Central Management store failover {} stopped before its promotion; it waits for an operator: \
                             Invoke-CsManagementServerFailover carries it on, -Restore cancels it",
                            stored.record.id
                        );
                    }
                } else if orphans.due(&key, now, self.reconcile_after) {
                    tracing::warn!(
                        id = stored.record.id,
                        %runner,
                        "the Central Management store failover {} was promoted and left by a runner that is gone; finishing it here",
                        stored.record.id
                    );
                    let engine = self.clone();
                    self.node.spawn(async move {
                        match engine.run_cms_failover_again(stored).await {
                            Ok(()) => tracing::info!("reconciler finished the CMS failover"),
                            Err(e) => tracing::warn!(error = %e, "reconciler could not finish the CMS failover"),
                        }
                    });
                    orphans.since.remove(&key);
                }
            }
        }
        orphans.keep_only(&seen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_orphan_is_due_after_the_grace_period_and_forgotten_when_gone() {
        let mut o = Orphans::default();
        let grace = Duration::from_secs(20);
        assert!(!o.due("pool/1", 1_000, grace));
        assert!(!o.due("pool/1", 20_999, grace));
        assert!(o.due("pool/1", 21_000, grace));
        // Its runner came back (or it finished): the clock starts again next time.
        o.keep_only(&[]);
        assert!(!o.due("pool/1", 30_000, grace));
    }
}
