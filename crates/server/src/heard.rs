//! What the partner pool's Backup Service had not shipped here yet, as last heard.
//!
//! A disaster failover cannot ask the lost pool what it never shipped. What it can say is
//! what the partner reported the last time it answered: each Front End asks its partner's
//! Backup Service for its status every [`PERIOD`] and keeps the answer, so that the
//! promotion can report the changes (count, users, time window) that were known to be
//! waiting — a lower bound; anything committed after that moment is counted exactly by the
//! failback once the pool is back.

use std::sync::Arc;
use std::time::Duration;

use backup::Module;
use backup::protocol::{PoolStatus, STATUS_PATH};
use serde::{Deserialize, Serialize};
use store::now_ms;

use crate::Server;

/// How often the partner's backlog is asked for.
const PERIOD: Duration = Duration::from_millis(500);

/// The partner's user-data backlog toward this pool, as reported at `at_ms`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeardBacklog {
    pub pool: String,
    /// When the partner answered (unix ms).
    pub at_ms: i64,
    /// Changes it had committed and not shipped.
    pub changes: i64,
    /// Their users (the first 1,000 per module, sorted, without repeats).
    pub users: Vec<String>,
    /// When the oldest of them was committed.
    pub oldest_ms: Option<i64>,
    /// CMS versions the partner (when it hosts the active CMS) had not shipped to the
    /// standby here, and when the oldest was created: what a CMS failover may lose.
    #[serde(default)]
    pub cms_versions: i64,
    #[serde(default)]
    pub cms_oldest_ms: Option<i64>,
}

impl HeardBacklog {
    /// The user-data part of a partner's status (the CMS standby is not user data).
    pub fn from_status(status: &PoolStatus, at_ms: i64) -> HeardBacklog {
        let user_modules: Vec<&str> = [Module::PresenceFocus, Module::DataConf]
            .iter()
            .map(|m| m.short_name())
            .collect();
        let mut heard = HeardBacklog {
            pool: status.pool.to_ascii_lowercase(),
            at_ms,
            ..HeardBacklog::default()
        };
        for e in status
            .exports
            .iter()
            .filter(|e| e.applicable && user_modules.contains(&e.module.as_str()))
        {
            heard.changes += e.pending;
            heard.users.extend(e.pending_users.iter().cloned());
            heard.oldest_ms = match (heard.oldest_ms, e.oldest_pending_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        heard.users.sort();
        heard.users.dedup();
        if let Some(cms) = status
            .exports
            .iter()
            .find(|e| e.applicable && e.module == Module::CmsMaster.short_name())
        {
            heard.cms_versions = cms.pending;
            heard.cms_oldest_ms = cms.oldest_pending_ms;
        }
        heard
    }
}

/// Keeps [`Server::partner_backlog`] current while the partner answers.
pub(crate) async fn follow(server: Arc<Server>) {
    loop {
        let partner = server
            .replica
            .topology()
            .backup_pool_of(&server.pool)
            .map(str::to_string);
        if let Some(partner) = partner
            && let Ok(status) =
                crate::pooldata::ask_partner::<PoolStatus>(&server, &partner, STATUS_PATH).await
        {
            let heard = HeardBacklog::from_status(&status, now_ms());
            *server.partner_backlog.lock().expect("partner backlog lock") = Some(heard);
        }
        tokio::time::sleep(PERIOD).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup::protocol::ExportReport;

    fn export(module: &str, pending: i64, oldest: Option<i64>, users: &[&str]) -> ExportReport {
        ExportReport {
            module: module.into(),
            applicable: true,
            pending,
            oldest_pending_ms: oldest,
            pending_users: users.iter().map(|u| u.to_string()).collect(),
            acked_seq: 0,
            head_seq: pending,
            last_sync_at: None,
            last_error: None,
            resync: false,
        }
    }

    #[test]
    fn user_modules_add_up_and_the_cms_standby_counts_apart() {
        let status = PoolStatus {
            pool: "Pool2.contoso.com".into(),
            partner: Some("pool1.contoso.com".into()),
            sync_interval_secs: 120,
            exports: vec![
                export("PresenceFocus", 3, Some(20), &["sip:b@x", "sip:a@x"]),
                export("DataConf", 1, Some(10), &["sip:a@x"]),
                export("CMSMaster", 7, Some(1), &[]),
            ],
            imports: vec![],
            at_ms: 99,
            active_exporter: None,
        };
        let heard = HeardBacklog::from_status(&status, 100);
        assert_eq!(heard.pool, "pool2.contoso.com");
        assert_eq!(heard.changes, 4);
        assert_eq!(heard.users, vec!["sip:a@x", "sip:b@x"]);
        assert_eq!(heard.oldest_ms, Some(10));
        // The CMS standby's backlog is kept apart, for a CMS failover.
        assert_eq!((heard.cms_versions, heard.cms_oldest_ms), (7, Some(1)));
        assert_eq!(heard.at_ms, 100);
    }
}
