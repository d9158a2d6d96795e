//! When a failover or failback is refused, and the message that says what to run instead.

use std::collections::BTreeMap;
use std::fmt;

use topology::Topology;

use crate::operation::{Kind, Operation};
use crate::state::{Phase, PoolState};

/// Why an operation may not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotAPool {
        pool: String,
    },
    NoBackupPool {
        pool: String,
    },
    /// An Edge pool uses the pool as its next hop (seeds 000/001 give the text).
    EdgeNextHop {
        pool: String,
        edge_pool: String,
    },
    /// The ordering rule of seed 004: `pool` serves users of `other` that are failed over.
    ServesFailedOverUsers {
        pool: String,
        other: String,
    },
    AlreadyFailedOver {
        pool: String,
        backup_pool: String,
    },
    NotFailedOver {
        pool: String,
    },
    InProgress {
        id: u64,
        kind: Kind,
        pool: String,
        step: String,
    },
    /// The pool to leave cannot be reached, and the operation is not in disaster mode.
    Unreachable {
        kind: Kind,
        /// The pool that cannot be reached: the home pool of a failover, the backup pool
        /// of a failback.
        pool: String,
        /// The users' home pool (`-PoolFqdn`).
        home: String,
        detail: String,
    },
    /// `-DisasterMode` while the pool to leave still answers: a disaster operation drops
    /// what it has not shipped, so it needs `-Force`.
    DisasterButAnswers {
        kind: Kind,
        /// The pool that answers (the one the users leave).
        pool: String,
        home: String,
        /// What it has not shipped to the other pool, when it said.
        unshipped: Option<i64>,
    },
    /// The pool that must take the users cannot be reached.
    TargetUnreachable {
        pool: String,
        detail: String,
    },
    CmsUnavailable {
        detail: String,
    },
}

impl std::error::Error for Refusal {}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotAPool { pool } => write!(
                f,
                "{pool} is not a Front End pool of the topology; Get-CsService -Registrar lists the pools"
            ),
            Refusal::NoBackupPool { pool } => write!(
                f,
                "{pool} has no backup pool, and a pool can only be failed over to its backup pool. \
                 Pair it first: Set-CsPoolBackupRelationship -PoolFqdn {pool} -BackupPoolFqdn <pool in another site>"
            ),
            Refusal::EdgeNextHop { pool, .. } => write!(
                f,
                "This Front-end pool \"{pool}\" is specified in topology as the next hop for the Edge server. \
                 Failing over this pool may cause External access/Federation/Split-domain/XMPP features to stop working. \
                 Please use Topology Builder to change the Edge internal next hop setting to point to a different \
                 Front-end pool,  before you proceed."
            ),
            Refusal::ServesFailedOverUsers { pool, other } => write!(
                f,
                "{pool} cannot be failed over: it is serving the users of {other}, which are failed over to it. \
                 Fail them back first with Invoke-CsPoolFailBack -PoolFqdn {other}, then run this command again"
            ),
            Refusal::AlreadyFailedOver { pool, backup_pool } => write!(
                f,
                "{pool} is already failed over: its users are served by {backup_pool}. \
                 Get-CsPoolFailoverState -PoolFqdn {pool} shows since when; Invoke-CsPoolFailBack -PoolFqdn {pool} returns them"
            ),
            Refusal::NotFailedOver { pool } => write!(
                f,
                "{pool} is not failed over: its users are served by {pool} itself, so there is nothing to fail back. \
                 Get-CsPoolFailoverState shows every pool"
            ),
            Refusal::InProgress {
                id,
                kind,
                pool,
                step,
            } => write!(
                f,
                "operation {id} ({} of {pool}) is not finished: it is at step {step}. \
                 Resume it with Resume-CsDisasterRecoveryOperation -Identity {id} (or run {} -PoolFqdn {pool} again); \
                 Get-CsDisasterRecoveryOperation -Identity {id} shows where it stands",
                kind.as_str(),
                kind.cmdlet()
            ),
            Refusal::Unreachable {
                kind: Kind::FailOver,
                pool,
                detail,
                ..
            } => write!(
                f,
                "{pool} cannot be reached ({detail}), so a planned failover cannot drain and verify its data. \
                 If the pool is lost, run Invoke-CsPoolFailOver -PoolFqdn {pool} -DisasterMode: \
                 its users are served from the backup copy, and changes not yet copied are reported as lost"
            ),
            Refusal::Unreachable {
                kind: Kind::FailBack,
                pool,
                home,
                detail,
            } => write!(
                f,
                "the backup pool {pool} cannot be reached ({detail}), so the changes made there cannot be copied back. \
                 Bring it back, or run Invoke-CsPoolFailBack -PoolFqdn {home} -DisasterMode to fail back without them \
                 (they are reported as lost)"
            ),
            Refusal::DisasterButAnswers {
                kind,
                pool,
                home,
                unshipped,
            } => write!(
                f,
                "{pool} still answers, and a disaster-mode {} drops what its Backup Service has not shipped{}. \
                 Run {} -PoolFqdn {home} without -DisasterMode to move the users with all their data, \
                 or add -Force to go on in disaster mode and lose those changes (they are reported)",
                kind.as_str(),
                match unshipped {
                    Some(0) => " (nothing, as it reports now; changes made before the operation starts would be lost)".to_string(),
                    Some(n) => format!(" ({n} changes, as it reports now; Get-CsBackupServiceStatus -PoolFqdn {pool} lists them)"),
                    None => format!(" (Get-CsBackupServiceStatus -PoolFqdn {pool} shows it)"),
                },
                kind.cmdlet()
            ),
            Refusal::TargetUnreachable { pool, detail } => write!(
                f,
                "{pool} must serve the users but cannot be reached ({detail}); start its Front Ends \
                 (tandem lab start {pool}) and run the command again"
            ),
            Refusal::CmsUnavailable { detail } => write!(
                f,
                "{detail} A pool's failover state is kept in the Central Management store: \
                 fail the store over first with Invoke-CsManagementServerFailover, then run this command again"
            ),
        }
    }
}

/// An unfinished operation involving either pool of the pair.
fn in_progress(pool: &str, backup: &str, ops: &[Operation]) -> Option<Refusal> {
    ops.iter()
        .filter(|o| !o.is_finished())
        .find(|o| {
            [pool, backup]
                .iter()
                .any(|p| o.pool.eq_ignore_ascii_case(p) || o.backup_pool.eq_ignore_ascii_case(p))
        })
        .map(|o| Refusal::InProgress {
            id: o.id,
            kind: o.kind,
            pool: o.pool.clone(),
            step: o
                .current_step()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
        })
}

/// The state of `pool`, Normal if never recorded.
pub fn state_of<'a>(states: &'a BTreeMap<String, PoolState>, pool: &str) -> Option<&'a PoolState> {
    states.get(&pool.to_ascii_lowercase())
}

/// Checks a new failover of `pool`; returns its backup pool.
pub fn check_failover(
    topology: &Topology,
    pool: &str,
    states: &BTreeMap<String, PoolState>,
    ops: &[Operation],
) -> Result<String, Refusal> {
    let fe = topology
        .front_end_pool(pool)
        .ok_or_else(|| Refusal::NotAPool {
            pool: pool.to_string(),
        })?;
    let Some(backup) = fe.backup_pool.clone() else {
        return Err(Refusal::NoBackupPool {
            pool: fe.fqdn.clone(),
        });
    };
    if let Some(r) = in_progress(&fe.fqdn, &backup, ops) {
        return Err(r);
    }
    if let Some(s) = state_of(states, &fe.fqdn)
        && s.phase != Phase::Normal
    {
        return Err(Refusal::AlreadyFailedOver {
            pool: fe.fqdn.clone(),
            backup_pool: s.backup_pool.clone(),
        });
    }
    if let Some(s) = state_of(states, &backup)
        && s.phase != Phase::Normal
        && s.backup_pool.eq_ignore_ascii_case(&fe.fqdn)
    {
        return Err(Refusal::ServesFailedOverUsers {
            pool: fe.fqdn.clone(),
            other: s.pool.clone(),
        });
    }
    if let Some(edge) = topology
        .edge_pools
        .iter()
        .find(|e| e.next_hop.eq_ignore_ascii_case(&fe.fqdn))
    {
        return Err(Refusal::EdgeNextHop {
            pool: fe.fqdn.clone(),
            edge_pool: edge.fqdn.clone(),
        });
    }
    Ok(backup)
}

/// Checks a new failback of `pool`; returns the state it undoes.
pub fn check_failback(
    topology: &Topology,
    pool: &str,
    states: &BTreeMap<String, PoolState>,
    ops: &[Operation],
) -> Result<PoolState, Refusal> {
    let fe = topology
        .front_end_pool(pool)
        .ok_or_else(|| Refusal::NotAPool {
            pool: pool.to_string(),
        })?;
    let backup = fe.backup_pool.clone().unwrap_or_default();
    if let Some(r) = in_progress(&fe.fqdn, &backup, ops) {
        return Err(r);
    }
    match state_of(states, &fe.fqdn) {
        Some(s) if s.phase == Phase::FailedOver => Ok(s.clone()),
        _ => Err(Refusal::NotFailedOver {
            pool: fe.fqdn.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::Options;
    use crate::state::FailMode;

    const P1: &str = "pool1.contoso.com";
    const P2: &str = "pool2.contoso.com";

    fn contoso_without_next_hops() -> Topology {
        let mut t = topology::contoso();
        for e in &mut t.edge_pools {
            e.next_hop = String::new();
        }
        t
    }

    fn failed_over(pool: &str, to: &str) -> BTreeMap<String, PoolState> {
        let s = PoolState::normal(pool, to).with_phase(Phase::FailedOver, FailMode::Planned, 1, 1);
        BTreeMap::from([(pool.to_string(), s)])
    }

    #[test]
    fn the_edge_next_hop_refusal_is_the_documented_text() {
        let t = topology::contoso();
        let e = check_failover(&t, P1, &BTreeMap::new(), &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "This Front-end pool \"pool1.contoso.com\" is specified in topology as the next hop for the Edge server. \
             Failing over this pool may cause External access/Federation/Split-domain/XMPP features to stop working. \
             Please use Topology Builder to change the Edge internal next hop setting to point to a different \
             Front-end pool,  before you proceed."
        );
    }

    #[test]
    fn a_pool_serving_failed_over_users_waits_for_their_failback() {
        let t = contoso_without_next_hops();
        let states = failed_over(P1, P2);
        let e = check_failover(&t, P2, &states, &[]).unwrap_err();
        assert_eq!(
            e,
            Refusal::ServesFailedOverUsers {
                pool: P2.into(),
                other: P1.into()
            }
        );
        assert!(
            e.to_string()
                .contains("Invoke-CsPoolFailBack -PoolFqdn pool1.contoso.com")
        );
        assert!(matches!(
            check_failover(&t, P1, &states, &[]),
            Err(Refusal::AlreadyFailedOver { .. })
        ));
        assert_eq!(
            check_failback(&t, P1, &states, &[]).unwrap().backup_pool,
            P2
        );
        assert!(matches!(
            check_failback(&t, P2, &states, &[]),
            Err(Refusal::NotFailedOver { .. })
        ));
    }

    #[test]
    fn an_unfinished_operation_on_either_pool_blocks_a_new_one() {
        let t = contoso_without_next_hops();
        let op = Operation::new(3, Kind::FailOver, P1, P2, Options::default(), false, 0);
        let e = check_failover(&t, P2, &BTreeMap::new(), &[op]).unwrap_err();
        assert!(matches!(e, Refusal::InProgress { id: 3, .. }));
        assert!(
            e.to_string()
                .contains("Resume-CsDisasterRecoveryOperation -Identity 3")
        );
    }

    #[test]
    fn refusals_name_the_command_that_fixes_them() {
        let texts = [
            (
                Refusal::NoBackupPool { pool: P1.into() },
                "Set-CsPoolBackupRelationship -PoolFqdn pool1.contoso.com -BackupPoolFqdn",
            ),
            (
                Refusal::CmsUnavailable {
                    detail: "no Central Management master answers.".into(),
                },
                "fail the store over first with Invoke-CsManagementServerFailover",
            ),
            (
                Refusal::Unreachable {
                    kind: Kind::FailOver,
                    pool: P1.into(),
                    home: P1.into(),
                    detail: "connection refused".into(),
                },
                "Invoke-CsPoolFailOver -PoolFqdn pool1.contoso.com -DisasterMode",
            ),
            (
                Refusal::Unreachable {
                    kind: Kind::FailBack,
                    pool: P2.into(),
                    home: P1.into(),
                    detail: "connection refused".into(),
                },
                "Invoke-CsPoolFailBack -PoolFqdn pool1.contoso.com -DisasterMode",
            ),
            (
                Refusal::TargetUnreachable {
                    pool: P2.into(),
                    detail: "connection refused".into(),
                },
                "tandem lab start pool2.contoso.com",
            ),
            (
                Refusal::AlreadyFailedOver {
                    pool: P1.into(),
                    backup_pool: P2.into(),
                },
                "Invoke-CsPoolFailBack -PoolFqdn pool1.contoso.com",
            ),
        ];
        for (refusal, fix) in texts {
            assert!(refusal.to_string().contains(fix), "{refusal}");
        }
    }

    #[test]
    fn no_backup_pool_and_unknown_pools_are_refused() {
        let mut t = contoso_without_next_hops();
        t.front_end_pools[0].backup_pool = None;
        assert!(matches!(
            check_failover(&t, P1, &BTreeMap::new(), &[]),
            Err(Refusal::NoBackupPool { .. })
        ));
        assert!(matches!(
            check_failover(&t, "nope.contoso.com", &BTreeMap::new(), &[]),
            Err(Refusal::NotAPool { .. })
        ));
        assert_eq!(
            check_failover(&contoso_without_next_hops(), P1, &BTreeMap::new(), &[]),
            Ok(P2.to_string())
        );
    }
}
