//! The newest configuration any surviving server holds, for a disaster CMS failover.
//!
//! The standby is shipped by the old pool's Backup Service and can lag; every server's
//! replica is pushed by the old master right after each write. So when the CMS pool is
//! lost, a change every survivor applied may be missing from the standby. Before the
//! standby is promoted it is caught up from the most advanced replica that is on its line
//! (see `store::history`): a configuration change any surviving server applied is never
//! lost by the failover. Only Front Ends are asked: an Edge's replica holds user records
//! without their digest hashes (`cms::directory::without_secrets`), and a standby caught
//! up from it would lose them.

use std::time::Duration;

use cms::protocol::{REPLICA_CHANGES_PATH, ReplicaChanges, ReplicaChangesRequest};
use dr::cms::Survivor;
use store::{BackEnd, History, Standing};
use tokio::task::JoinSet;

use crate::{Engine, Error};

/// How long one server may take to say where its replica stands.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one server may take to send a batch of what it holds.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// The most advanced replica on a line, and where to reach it.
#[derive(Debug, Clone)]
pub struct Newest {
    pub server: String,
    /// The server's management URL; `None` for this server.
    base: Option<String>,
    pub version: i64,
    pub epoch: i64,
    pub created_at: i64,
    /// The replica's line, which the standby takes with its versions.
    pub history: History,
}

impl Newest {
    pub fn survivor(&self, standby: i64) -> Survivor {
        Survivor {
            server: self.server.clone(),
            version: self.version,
            standby,
        }
    }
}

/// Of the replicas that answered, the most advanced whose line holds everything the
/// standby holds (`line` up to `standby`): the standby is a prefix of it, so catching up
/// from it only adds versions. Ties go to the first that answered.
pub fn pick(
    line: &History,
    standby: i64,
    answers: &[(Option<String>, ReplicaChanges)],
) -> Option<Newest> {
    answers
        .iter()
        .filter(|(_, r)| store::history::standing(line, standby, &r.history) == Standing::OnLine)
        .fold(
            None::<&(Option<String>, ReplicaChanges)>,
            |best, a| match best {
                Some(b) if b.1.version >= a.1.version => Some(b),
                _ => Some(a),
            },
        )
        .map(|(base, r)| Newest {
            server: r.fqdn.clone(),
            base: base.clone(),
            version: r.version,
            epoch: r.epoch,
            created_at: r.created_at,
            history: r.history.clone(),
        })
}

impl Engine {
    async fn replica_changes(
        &self,
        base: Option<&str>,
        after: Option<i64>,
        timeout: Duration,
    ) -> Result<ReplicaChanges, String> {
        let request = ReplicaChangesRequest { after };
        match base {
            None => self
                .node
                .replica
                .changes(&self.node.fqdn, &request)
                .await
                .map_err(|e| e.to_string()),
            Some(base) => self
                .node
                .api
                .post(base, REPLICA_CHANGES_PATH, &request, timeout)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// Asks every server of the topology (this one directly) where its replica stands and
    /// picks the most advanced that extends the standby (`line` up to `standby`). Servers
    /// that do not answer in time are left out.
    pub async fn newest_survivor(&self, line: &History, standby: i64) -> Option<Newest> {
        let topology = self.node.topology();
        let mut set = JoinSet::new();
        let mut answers = Vec::new();
        let holds_secrets = |role: topology::Role| role == topology::Role::FrontEnd;
        let me = topology.server(&self.node.fqdn).map(|s| s.role);
        if me.is_some_and(holds_secrets)
            && let Ok(mine) = self.replica_changes(None, None, ASK_TIMEOUT).await
        {
            answers.push((None, mine));
        }
        for server in topology.servers() {
            if server.server.fqdn.eq_ignore_ascii_case(&self.node.fqdn)
                || !holds_secrets(server.role)
            {
                continue;
            }
            let base = api::base(server.server.address, topology.ports.management);
            let api = self.node.api.clone();
            set.spawn(async move {
                let request = ReplicaChangesRequest { after: None };
                let answer: Result<ReplicaChanges, _> = api
                    .post(&base, REPLICA_CHANGES_PATH, &request, ASK_TIMEOUT)
                    .await;
                answer.ok().map(|a| (Some(base), a))
            });
        }
        while let Some(joined) = set.join_next().await {
            if let Ok(Some(answer)) = joined {
                answers.push(answer);
            }
        }
        pick(line, standby, &answers)
    }

    /// Catches the standby in `be` up from `newest`'s replica; returns the version it
    /// holds afterwards.
    pub async fn catch_up_standby(&self, be: &BackEnd, newest: &Newest) -> Result<i64, Error> {
        let mut have = be.current_version().await?.map_or(0, |v| v.version);
        while have < newest.version {
            let got = self
                .replica_changes(newest.base.as_deref(), Some(have), FETCH_TIMEOUT)
                .await
                .map_err(|e| {
                    Error::unavailable(format!(
                        "cannot read the replica of {} to catch the standby up ({e}); run the cmdlet again",
                        newest.server
                    ))
                })?;
            if got.through <= have {
                break;
            }
            let created_at = if got.through == got.version {
                got.created_at
            } else {
                self.node.clock.now_ms()
            };
            have = be
                .catch_up_cms(
                    &newest.server,
                    &newest.history,
                    newest.epoch,
                    got.through,
                    created_at,
                    &got.items,
                )
                .await?;
        }
        Ok(have)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::TermStart;

    fn answer(fqdn: &str, version: i64, history: History) -> (Option<String>, ReplicaChanges) {
        (
            Some(format!("http://{fqdn}")),
            ReplicaChanges {
                fqdn: fqdn.into(),
                version,
                epoch: 1,
                created_at: 0,
                history,
                items: vec![],
                through: version,
            },
        )
    }

    #[test]
    fn the_most_advanced_replica_on_the_line_is_picked_and_one_off_it_never() {
        let line = History::root().begin(1, 300);
        let answers = [
            answer("fe2", 306, line.clone()),
            answer("edge1", 319, line.clone()),
            answer("edge2", 319, line.clone()),
            // Followed a store of a term the standby's line never had.
            answer(
                "stray",
                400,
                History::from_terms([
                    TermStart { term: 0, start: 0 },
                    TermStart {
                        term: 2,
                        start: 310,
                    },
                ]),
            ),
        ];
        let newest = pick(&line, 306, &answers).unwrap();
        assert_eq!((newest.server.as_str(), newest.version), ("edge1", 319));
        assert_eq!(newest.survivor(306).standby, 306);
        assert!(pick(&line, 306, &answers[3..]).is_none());
        assert!(pick(&line, 306, &[]).is_none());
        // A standby that was not told of a later term the line began is still a prefix
        // of a replica that followed it.
        let later = line.begin(3, 310);
        let ahead = [answer("edge1", 330, later.clone())];
        assert_eq!(pick(&line, 306, &ahead).unwrap().history, later);
        // But not once it holds versions past where that term began.
        assert!(pick(&line, 312, &ahead).is_none());
    }
}
