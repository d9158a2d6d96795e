//! A pool's failover state, held in the Central Management store so that every server's
//! replica knows which pool serves a pool's users.

use serde::{Deserialize, Serialize};
use topology::serving::Failover;

/// CMS keys of pool states start with this.
pub const POOL_PREFIX: &str = "dr/pools/";
/// CMS keys of operation records start with this.
pub const OPERATION_PREFIX: &str = "dr/operations/";

/// The CMS key of a pool's state.
pub fn pool_key(pool: &str) -> String {
    format!("{POOL_PREFIX}{}", pool.to_ascii_lowercase())
}

/// The CMS key of an operation record. Ids are zero-padded so keys sort by id.
pub fn operation_key(id: u64) -> String {
    format!("{OPERATION_PREFIX}{id:08}")
}

/// The disaster-recovery records among the keys of configuration versions a CMS failover
/// dropped, said the way an operator knows them ("pool operation 17", "the failover state of
/// pool2.contoso.com"), once each and in key order: a failover that loses versions names
/// the pool operations it took with them, since those are what decide who serves whom.
pub fn dropped_records<'k>(keys: impl IntoIterator<Item = &'k str>) -> Vec<String> {
    let mut keys: Vec<&str> = keys.into_iter().collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .filter_map(|key| {
            if let Some(id) = key.strip_prefix(OPERATION_PREFIX) {
                let id = id.trim_start_matches('0');
                Some(format!(
                    "pool operation {}",
                    if id.is_empty() { "0" } else { id }
                ))
            } else {
                key.strip_prefix(POOL_PREFIX)
                    .map(|pool| format!("the failover state of {pool}"))
            }
        })
        .collect()
}

/// Where a pool's users are in the failover cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Served by their home pool.
    Normal,
    /// A failover is running: still served by the home pool, read-only.
    FailingOver,
    /// Served by the backup pool in full mode.
    FailedOver,
    /// A failback is running: still served by the backup pool, read-only.
    FailingBack,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Normal => "Normal",
            Phase::FailingOver => "FailingOver",
            Phase::FailedOver => "FailedOver",
            Phase::FailingBack => "FailingBack",
        }
    }
}

/// Whether the pool on the far side cooperated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailMode {
    Planned,
    Disaster,
}

impl FailMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailMode::Planned => "Planned",
            FailMode::Disaster => "Disaster",
        }
    }
}

/// One Front End pool's failover state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolState {
    /// The users' home pool.
    pub pool: String,
    /// The pool that serves them while failed over.
    pub backup_pool: String,
    pub phase: Phase,
    /// The mode of the failover that is running or in force (Planned when Normal).
    pub mode: FailMode,
    /// When the phase began (unix ms).
    pub since_ms: i64,
    /// Bumped on every change of phase, so a stale decision can be told from a new one.
    pub epoch: i64,
    /// The operation that set this phase.
    pub operation: Option<u64>,
}

impl PoolState {
    /// The state of a pool that was never failed over.
    pub fn normal(pool: &str, backup_pool: &str) -> PoolState {
        PoolState {
            pool: pool.to_ascii_lowercase(),
            backup_pool: backup_pool.to_ascii_lowercase(),
            phase: Phase::Normal,
            mode: FailMode::Planned,
            since_ms: 0,
            epoch: 0,
            operation: None,
        }
    }

    /// The next phase, with a new epoch.
    pub fn with_phase(&self, phase: Phase, mode: FailMode, now_ms: i64, op: u64) -> PoolState {
        PoolState {
            phase,
            mode,
            since_ms: now_ms,
            epoch: self.epoch + 1,
            operation: Some(op),
            ..self.clone()
        }
    }

    /// The pool serving the users now.
    pub fn serving_pool(&self) -> &str {
        match self.phase {
            Phase::Normal | Phase::FailingOver => &self.pool,
            Phase::FailedOver | Phase::FailingBack => &self.backup_pool,
        }
    }

    /// What the serving decision needs to know.
    pub fn view(&self) -> Failover {
        match self.phase {
            Phase::Normal => Failover::None,
            Phase::FailingOver => Failover::FailingOver,
            Phase::FailedOver => Failover::ServedBy {
                pool: self.backup_pool.clone(),
                read_only: false,
            },
            Phase::FailingBack => Failover::ServedBy {
                pool: self.backup_pool.clone(),
                read_only: true,
            },
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a pool state serialises")
    }

    pub fn from_json(text: &str) -> Option<PoolState> {
        serde_json::from_str(text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_records_name_pool_operations_and_states_once_and_skip_other_keys() {
        let op = operation_key(17);
        let state = pool_key("Pool2.contoso.com");
        let said = dropped_records([
            state.as_str(),
            "settings/backup-service",
            op.as_str(),
            state.as_str(),
        ]);
        assert_eq!(
            said,
            vec![
                "pool operation 17".to_string(),
                "the failover state of pool2.contoso.com".to_string(),
            ]
        );
        assert!(dropped_records(["topology"]).is_empty());
    }

    #[test]
    fn each_phase_names_the_serving_pool_and_bumps_the_epoch() {
        let s = PoolState::normal("Pool1.contoso.com", "pool2.contoso.com");
        assert_eq!(s.serving_pool(), "pool1.contoso.com");
        assert_eq!(s.view(), Failover::None);
        let f = s.with_phase(Phase::FailingOver, FailMode::Planned, 5, 1);
        assert_eq!((f.epoch, f.serving_pool()), (1, "pool1.contoso.com"));
        assert_eq!(f.view(), Failover::FailingOver);
        let o = f.with_phase(Phase::FailedOver, FailMode::Planned, 6, 1);
        assert_eq!((o.epoch, o.serving_pool()), (2, "pool2.contoso.com"));
        assert_eq!(
            o.view(),
            Failover::ServedBy {
                pool: "pool2.contoso.com".into(),
                read_only: false
            }
        );
        let b = o.with_phase(Phase::FailingBack, FailMode::Planned, 7, 2);
        assert!(matches!(
            b.view(),
            Failover::ServedBy {
                read_only: true,
                ..
            }
        ));
        assert_eq!(PoolState::from_json(&b.to_json()), Some(b));
    }

    #[test]
    fn keys_sort_by_operation_id() {
        assert!(operation_key(9) < operation_key(10));
        assert_eq!(pool_key("POOL1.contoso.com"), "dr/pools/pool1.contoso.com");
    }
}
