//! Synchronous commit: under a pair set to commit synchronously
//! (`Set-CsBackupServiceConfiguration -SynchronousCommit $true`), a user's write is
//! acknowledged only once the partner pool has committed it, as SQL Server availability
//! groups' synchronous commit or Patroni's synchronous mode do. The write commits here
//! first (so a crash of the partner never loses it), then the Front End wakes the pool's
//! exporter and waits until the partner acknowledged the changes; that is about one round
//! trip between the pools. If the partner does not commit within the pair's timeout the
//! Front End falls back to asynchronous shipping — users are never blocked by a lost
//! partner — says so (status, a warning in its log), and returns to synchronous commit once
//! the partner has caught up with everything.

use std::time::Duration;

use clock::Backoff;

use crate::service::{BackupError, BackupService};
use crate::status::CommitState;

/// The route on a Front End's backup port that wakes its exporter at once (a Front End
/// that is not the exporter calls it after a synchronous write).
pub const WAKE_PATH: &str = "/internal/v1/backup/wake";

/// How one write was acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Commit {
    /// Shipped later (an asynchronous pair).
    Asynchronous,
    /// The partner committed it before this answer.
    Synchronous { waited_ms: i64 },
    /// The pair is synchronous but the partner is not keeping up: shipped later.
    FellBack { reason: String },
}

impl BackupService {
    /// After a user's write committed here as changes `first..=last`: under a synchronous
    /// pair, waits until the partner has committed them (see the module docs).
    pub async fn commit(&self, first: i64, last: i64) -> Result<Commit, BackupError> {
        let Some(partner) = self.partner() else {
            return Ok(Commit::Asynchronous);
        };
        let settings = self.settings().await;
        if !settings.is_synchronous(self.pool(), &partner) {
            self.set_commit_state(CommitState::Asynchronous);
            return Ok(Commit::Asynchronous);
        }
        let be = self.backend();
        let clock = self.clock();
        if let CommitState::FellBack { reason, .. } = self.commit_state() {
            // Caught up: nothing written before this write is still unacknowledged.
            if be.pending_user_changes_before(first).await? > 0 {
                return Ok(Commit::FellBack { reason });
            }
            tracing::warn!(%partner, "the backup pool has caught up: writes commit synchronously again");
        }
        let started = clock.now_ms();
        let timeout = Duration::from_millis(settings.synchronous_timeout_ms);
        let deadline = clock.deadline(timeout);
        if self.wait_shipped(first, last, deadline).await? {
            self.set_commit_state(CommitState::Synchronous);
            return Ok(Commit::Synchronous {
                waited_ms: clock.now_ms() - started,
            });
        }
        let reason = format!(
            "{partner} did not commit a write within {} ms (Get-CsBackupServiceStatus -PoolFqdn {} shows why)",
            settings.synchronous_timeout_ms,
            self.pool()
        );
        tracing::warn!(%reason, "falling back to asynchronous shipping");
        self.set_commit_state(CommitState::FellBack {
            since_ms: clock.now_ms(),
            reason: reason.clone(),
        });
        Ok(Commit::FellBack { reason })
    }

    /// Wakes the exporter and waits until changes `first..=last` are acknowledged by the
    /// partner, or `deadline`. On the exporter's Front End it waits for each acknowledged
    /// shipment; elsewhere it asks the exporter to ship and answer once they are
    /// ([`WAKE_PATH`]), so a write waits about one shipment, not a polling period.
    pub(crate) async fn wait_shipped(
        &self,
        first: i64,
        last: i64,
        deadline: tokio::time::Instant,
    ) -> Result<bool, BackupError> {
        let be = self.backend();
        let clock = self.clock();
        let holder = be.backup_lease_holder().await?;
        let remote = holder.filter(|h| !h.eq_ignore_ascii_case(self.fqdn()));
        let mut backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(20));
        loop {
            let signal = self.shipped_signal();
            if be.shipped_through(first, last).await? {
                return Ok(true);
            }
            if clock.passed(deadline) {
                return Ok(false);
            }
            let left = clock.remaining(deadline);
            match &remote {
                Some(exporter) => {
                    self.ask_exporter(exporter, first, last, left).await;
                    // The exporter answered (shipped, or gave up at the deadline), or is
                    // unreachable: look again, without spinning.
                    if !be.shipped_through(first, last).await? {
                        backoff.wait(&clock).await;
                    }
                }
                None => {
                    self.wake();
                    tokio::select! {
                        () = signal => {}
                        () = clock.sleep(left.min(Duration::from_millis(50))) => {}
                    }
                }
            }
        }
    }

    /// Asks the exporter `fqdn` to ship now and answer once `first..=last` are acknowledged
    /// (or `timeout` passed).
    async fn ask_exporter(&self, fqdn: &str, first: i64, last: i64, timeout: Duration) {
        let topology = self.topology();
        let Some(server) = topology.server(fqdn) else {
            return;
        };
        let base = api::base(server.server.address, topology.ports.backup_service);
        let _: Result<serde_json::Value, _> = self
            .api()
            .post(
                &base,
                WAKE_PATH,
                &WakeRequest {
                    first,
                    last,
                    timeout_ms: timeout.as_millis() as u64,
                },
                timeout + Duration::from_millis(500),
            )
            .await;
    }
}

/// `POST` [`WAKE_PATH`]: ship now, and answer once changes `first..=last` are acknowledged
/// by the partner or `timeout_ms` passed (at most 60 s).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WakeRequest {
    pub first: i64,
    pub last: i64,
    pub timeout_ms: u64,
}

impl BackupService {
    /// The exporter's side of [`WAKE_PATH`].
    pub async fn wake_and_wait(&self, request: &WakeRequest) -> Result<bool, BackupError> {
        let clock = self.clock();
        let deadline = clock.deadline(Duration::from_millis(request.timeout_ms.min(60_000)));
        let be = self.backend();
        loop {
            let signal = self.shipped_signal();
            if be.shipped_through(request.first, request.last).await? {
                return Ok(true);
            }
            if clock.passed(deadline) {
                return Ok(false);
            }
            self.wake();
            let left = clock.remaining(deadline);
            tokio::select! {
                () = signal => {}
                () = clock.sleep(left.min(Duration::from_millis(50))) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_says_when_and_why() {
        let s = CommitState::FellBack {
            since_ms: 0,
            reason: "pool2 did not commit".into(),
        };
        let text = s.describe();
        assert!(text.starts_with("Asynchronous (fell back"), "{text}");
        assert!(text.contains("pool2 did not commit"), "{text}");
        assert_eq!(CommitState::Synchronous.describe(), "Synchronous");
    }
}
