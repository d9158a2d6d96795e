//! Votes that keep one writable Central Management store through a network cut.
//!
//! Without a witness, the master of the active store writes as long as it holds the lease
//! in its own Back End; a CMS failover run on the other side of a cut (which cannot tell
//! a cut from a lost site) promotes the standby, and both sides write until the cut
//! heals. With a witness (`deployment.cms_witness`, a server in a third site), the store
//! takes writes only with a majority of three voters: **its own store** (the lease), the
//! **standby store** in the partner pool's Back End, and the **witness**. So the master
//! also needs one of the two other votes, renewed every quarter of [`VOTE_TTL_MS`]; and
//! a failover needs both of the others: the witness's and its own standby store's.
//!
//! Each of those two voters gives its vote to one store at a time, for [`VOTE_TTL_MS`]
//! counted from when it received the request ([`decide`]), and the master counts a vote
//! from when it *sent* the request, less [`VOTE_MARGIN_MS`]: a vote the master still
//! counts is one its voter still holds. A cut-off master therefore stops taking writes
//! before either voter can give its vote to a failover, and a failover on the cut-off
//! side of a store that still reaches the witness is refused. A vote never goes to a
//! term below the highest one an active master renewed it in, so an old store that
//! returns after a failover gets none. The witness keeps its vote in memory and gives
//! none for [`VOTE_TTL_MS`] after it starts (it may have given one before it restarted);
//! a standby store keeps its vote in its Back End (`store::CmsVote`), so every Front End
//! of its pool answers alike.
//!
//! What this assumes: the voters' clocks advance at nearly the same rate as the master's
//! (the margin covers a write in flight and the drift), and the Front Ends of one pool
//! agree on the time within the margin (they share the standby's vote). What it does not
//! cover: if a store's site and the witness are both lost, no failover can get a majority;
//! the operator overrides that with `-Force`, asserting that the old site is down.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use store::{CmsMode, CmsRole, CmsVote};
use topology::Topology;

/// How long a vote lasts from when the voter received the request.
pub const VOTE_TTL_MS: i64 = crate::LEASE_TTL_MS;
/// What the master takes off a vote's life: the voter counted from later than the master
/// did, and a write that started inside the vote may take this long to commit.
pub const VOTE_MARGIN_MS: i64 = 500;
/// How long one call to a voter may take.
pub const VOTE_CALL_TIMEOUT: Duration = Duration::from_millis(600);

/// Which of the two other voters a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Voter {
    /// The deployment's witness (the server `cms_witness` names).
    Witness,
    /// The standby store, in the Back End of the Front End asked.
    Standby,
}

/// What is asked of a voter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ask {
    /// The active master of `pool`'s store keeps its vote (`term`: its epoch's term).
    Renew,
    /// A failover asks for the vote before it promotes `pool`'s store (`term`: the term
    /// the promotion starts). A claim does not raise the voter's highest term: a failover
    /// that stops before promoting leaves the old store free to win the vote back.
    Claim,
    /// The master of `pool`'s store gives its vote back (its store is moving).
    Release,
}

/// A request to a voter (`POST /internal/v1/cms/vote`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteRequest {
    pub voter: Voter,
    pub ask: Ask,
    /// The pool whose store the vote is for.
    pub pool: String,
    pub term: i64,
}

/// A voter's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case", deny_unknown_fields)]
pub enum VoteAnswer {
    /// The vote is the asker's for `ttl_ms` from when the voter received the request.
    Granted {
        ttl_ms: i64,
    },
    Released,
    /// Refused, and why (with whom the vote is and for how long).
    Refused {
        reason: String,
    },
}

/// Decides a request against the vote a voter holds, changing it when granted. `now` is
/// the voter's clock (unix ms).
pub fn decide(vote: &mut CmsVote, ask: Ask, pool: &str, term: i64, now: i64) -> VoteAnswer {
    if ask == Ask::Release {
        if vote.pool.eq_ignore_ascii_case(pool) {
            vote.until_ms = 0;
        }
        return VoteAnswer::Released;
    }
    if term < vote.highest_term {
        return VoteAnswer::Refused {
            reason: format!(
                "a store in term {} has held this vote, and {pool}'s store is of term {term}: it was failed over from",
                vote.highest_term
            ),
        };
    }
    if vote.until_ms > now && !vote.pool.eq_ignore_ascii_case(pool) {
        let left = vote.until_ms - now;
        return VoteAnswer::Refused {
            reason: if vote.pool.is_empty() {
                format!(
                    "it started less than {VOTE_TTL_MS} ms ago and gives no vote for another {left} ms"
                )
            } else {
                format!(
                    "its vote is {}'s store's for another {left} ms (renewed by that store's master)",
                    vote.pool
                )
            },
        };
    }
    vote.pool = pool.to_ascii_lowercase();
    vote.term = term;
    vote.until_ms = now + VOTE_TTL_MS;
    if ask == Ask::Renew {
        vote.highest_term = vote.highest_term.max(term);
    }
    VoteAnswer::Granted {
        ttl_ms: VOTE_TTL_MS,
    }
}

/// [`decide`] for a standby store: only a store that is a standby votes. An active or
/// moving store is itself the one a master writes to, and gives its vote to nobody else.
pub fn decide_as_standby(
    role: &CmsRole,
    vote: &mut CmsVote,
    ask: Ask,
    pool: &str,
    term: i64,
    now: i64,
) -> VoteAnswer {
    if ask != Ask::Release && role.mode != CmsMode::Backup {
        return VoteAnswer::Refused {
            reason: format!(
                "the Central Management store here is {}, not a standby",
                role.mode.as_str()
            ),
        };
    }
    decide(vote, ask, pool, term, now)
}

/// The witness's vote, kept in memory by the server `cms_witness` names.
#[derive(Debug)]
pub struct Witness {
    vote: std::sync::Mutex<CmsVote>,
}

impl Witness {
    /// A witness started at `now`: it gives no vote for [`VOTE_TTL_MS`].
    pub fn new(now: i64) -> Witness {
        Witness {
            vote: std::sync::Mutex::new(CmsVote {
                until_ms: now + VOTE_TTL_MS,
                ..CmsVote::default()
            }),
        }
    }

    pub fn decide(&self, ask: Ask, pool: &str, term: i64, now: i64) -> VoteAnswer {
        let mut vote = self.vote.lock().expect("witness vote lock");
        decide(&mut vote, ask, pool, term, now)
    }
}

/// Where a store's two other voters are, from the topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voters {
    /// The witness's FQDN and management address.
    pub witness: (String, Ipv4Addr),
    /// The partner pool and the management addresses of its Front Ends, in order.
    pub standby: Option<(String, Vec<(String, Ipv4Addr)>)>,
}

impl Voters {
    /// The voters of the store in `pool`; `None` when the deployment has no witness (a
    /// store then writes on its lease alone).
    pub fn of(topology: &Topology, pool: &str) -> Option<Voters> {
        let fqdn = topology.deployment.cms_witness.as_ref()?;
        let witness = topology
            .server(fqdn)
            .map_or((fqdn.clone(), Ipv4Addr::UNSPECIFIED), |s| {
                (s.server.fqdn.clone(), s.server.address)
            });
        let standby = topology.backup_pool_of(pool).map(|partner| {
            let servers = topology
                .front_end_servers(partner)
                .iter()
                .map(|s| (s.fqdn.clone(), s.address))
                .collect();
            (partner.to_string(), servers)
        });
        Some(Voters { witness, standby })
    }
}

/// What one voter answered, or why it could not be asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    Answer(VoteAnswer),
    /// Nobody answered (unreachable, timed out, or an error): the text says which.
    Silent(String),
}

/// One vote request to the server at `address`.
async fn post(
    client: &api::Client,
    address: Ipv4Addr,
    port: u16,
    request: &VoteRequest,
) -> Result<VoteAnswer, api::CallError> {
    let base = api::base(address, port);
    client
        .post(&base, api::paths::CMS_VOTE, request, VOTE_CALL_TIMEOUT)
        .await
}

/// Asks the witness.
pub async fn ask_witness(
    client: &api::Client,
    port: u16,
    voters: &Voters,
    ask: Ask,
    pool: &str,
    term: i64,
) -> Heard {
    let (fqdn, address) = &voters.witness;
    let request = VoteRequest {
        voter: Voter::Witness,
        ask,
        pool: pool.to_string(),
        term,
    };
    match post(client, *address, port, &request).await {
        Ok(answer) => Heard::Answer(answer),
        Err(e) => Heard::Silent(format!("the witness {fqdn} did not answer ({e})")),
    }
}

/// Asks the standby store through every Front End of its pool at once; the first answer
/// counts (they share the store's vote, so they answer alike), and a Front End cut off or
/// down costs no more than [`VOTE_CALL_TIMEOUT`] once.
pub async fn ask_standby(
    client: &api::Client,
    port: u16,
    voters: &Voters,
    ask: Ask,
    pool: &str,
    term: i64,
) -> Heard {
    let Some((partner, servers)) = &voters.standby else {
        return Heard::Silent(format!("{pool} is not paired, so it has no standby store"));
    };
    let request = VoteRequest {
        voter: Voter::Standby,
        ask,
        pool: pool.to_string(),
        term,
    };
    let mut asks = tokio::task::JoinSet::new();
    for &(_, address) in servers {
        let (client, request) = (client.clone(), request.clone());
        asks.spawn(async move { post(&client, address, port, &request).await });
    }
    while let Some(joined) = asks.join_next().await {
        if let Ok(Ok(answer)) = joined {
            return Heard::Answer(answer);
        }
    }
    Heard::Silent(format!(
        "no Front End of {partner}, which holds the standby store, answered"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(a: &VoteAnswer) -> bool {
        matches!(a, VoteAnswer::Granted { .. })
    }

    #[test]
    fn a_vote_is_one_stores_while_it_lasts() {
        let mut v = CmsVote::default();
        assert!(granted(&decide(&mut v, Ask::Renew, "a.x", 1, 1_000)));
        // Another store's claim is refused while the vote lasts, and names the holder.
        let refused = decide(&mut v, Ask::Claim, "b.x", 2, 1_000 + VOTE_TTL_MS - 1);
        assert!(
            matches!(&refused, VoteAnswer::Refused { reason } if reason.contains("a.x") && reason.contains("1 ms")),
            "{refused:?}"
        );
        // The holder renews; the claim succeeds only once the renewed vote ran out.
        assert!(granted(&decide(&mut v, Ask::Renew, "A.X", 1, 2_000)));
        assert!(!granted(&decide(
            &mut v,
            Ask::Claim,
            "b.x",
            2,
            2_000 + VOTE_TTL_MS - 1
        )));
        assert!(granted(&decide(
            &mut v,
            Ask::Claim,
            "b.x",
            2,
            2_000 + VOTE_TTL_MS
        )));
        assert_eq!(v.pool, "b.x");
    }

    #[test]
    fn a_claim_that_never_promoted_leaves_the_old_store_free_to_win_it_back() {
        let mut v = CmsVote::default();
        assert!(granted(&decide(&mut v, Ask::Renew, "a", 1, 0)));
        assert!(granted(&decide(&mut v, Ask::Claim, "b", 2, VOTE_TTL_MS)));
        assert!(!granted(&decide(
            &mut v,
            Ask::Renew,
            "a",
            1,
            VOTE_TTL_MS + 10
        )));
        assert!(granted(&decide(
            &mut v,
            Ask::Renew,
            "a",
            1,
            2 * VOTE_TTL_MS
        )));
    }

    #[test]
    fn a_store_failed_over_from_never_gets_the_vote_again() {
        let mut v = CmsVote::default();
        assert!(granted(&decide(&mut v, Ask::Renew, "a", 1, 0)));
        assert!(granted(&decide(&mut v, Ask::Claim, "b", 2, VOTE_TTL_MS)));
        // The promoted store's master renews in its term.
        assert!(granted(&decide(
            &mut v,
            Ask::Renew,
            "b",
            2,
            VOTE_TTL_MS + 5
        )));
        // Long after, with b's master silent, the old store of term 1 is still refused.
        let late = decide(&mut v, Ask::Renew, "a", 1, 100 * VOTE_TTL_MS);
        assert!(
            matches!(&late, VoteAnswer::Refused { reason } if reason.contains("term 2")),
            "{late:?}"
        );
        // A later failover back (term 3) may have it.
        assert!(granted(&decide(
            &mut v,
            Ask::Claim,
            "a",
            3,
            100 * VOTE_TTL_MS
        )));
    }

    #[test]
    fn release_frees_the_vote_only_for_its_holder() {
        let mut v = CmsVote::default();
        assert!(granted(&decide(&mut v, Ask::Renew, "a", 1, 0)));
        assert_eq!(
            decide(&mut v, Ask::Release, "b", 1, 10),
            VoteAnswer::Released
        );
        assert!(!granted(&decide(&mut v, Ask::Claim, "b", 2, 20)));
        assert_eq!(
            decide(&mut v, Ask::Release, "a", 1, 30),
            VoteAnswer::Released
        );
        assert!(granted(&decide(&mut v, Ask::Claim, "b", 2, 40)));
    }

    #[test]
    fn a_witness_gives_no_vote_until_a_vote_it_may_have_given_before_has_run_out() {
        let w = Witness::new(10_000);
        let early = w.decide(Ask::Renew, "a", 1, 10_000 + VOTE_TTL_MS - 1);
        assert!(
            matches!(&early, VoteAnswer::Refused { reason } if reason.contains("started")),
            "{early:?}"
        );
        assert!(granted(&w.decide(Ask::Renew, "a", 1, 10_000 + VOTE_TTL_MS)));
    }

    #[test]
    fn only_a_standby_store_votes() {
        let role = |mode| CmsRole {
            mode,
            epoch_floor: 0,
            term_start: 0,
            shared_through: 0,
            other_pool: String::new(),
            changed_at: 0,
            reason: String::new(),
        };
        let mut v = CmsVote::default();
        for mode in [CmsMode::Active, CmsMode::Moving] {
            let a = decide_as_standby(&role(mode), &mut v, Ask::Renew, "a", 1, 0);
            assert!(!granted(&a), "{mode:?}: {a:?}");
        }
        assert!(granted(&decide_as_standby(
            &role(CmsMode::Backup),
            &mut v,
            Ask::Renew,
            "a",
            1,
            0
        )));
    }
}
