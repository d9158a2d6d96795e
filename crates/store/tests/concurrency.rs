//! The one-writer guarantees of a Back End under concurrent callers, on each database.
//!
//! SQLite gives one writer by its file lock; PostgreSQL by the advisory lock every write
//! transaction takes first. These tests race real connections against one store and check
//! what the lease, the change log and the failover fence promise, by counting.

use std::collections::BTreeSet;

use store::{BackEnd, StoreError, UserChange};

const POOL: &str = "pool1.example.net";

fn change(key: String) -> UserChange {
    UserChange {
        module: "PresenceFocus".into(),
        key,
        value: Some("{}".into()),
    }
}

store::each_backend! {
    /// Eight Front Ends claim an expired lease at once: exactly one gets it, with an epoch
    /// above the old one.
    async fn one_of_eight_claimants_of_an_expired_lease_wins(db) {
        let be = db.open("lease").await;
        be.bootstrap(&[("a".into(), Some("1".into()))], "install")
            .await
            .unwrap();
        let (_, old) = be.acquire_lease("old", 60_000, store::now_ms()).await.unwrap();
        be.release_lease("old", store::now_ms()).await.unwrap();
        let claims = (0..8).map(|i| {
            let be = be.clone();
            tokio::spawn(async move {
                be.acquire_lease(&format!("fe{i}"), 60_000, store::now_ms())
                    .await
                    .unwrap()
            })
        });
        let mut winners = vec![];
        for claim in claims {
            let (won, lease) = claim.await.unwrap();
            if won {
                winners.push(lease);
            }
        }
        assert_eq!(winners.len(), 1, "{winners:?}");
        let lease = be.lease().await.unwrap().unwrap();
        assert_eq!(lease.holder, winners[0].holder);
        assert!(lease.epoch > old.epoch);
    }
}

store::each_backend! {
    /// Writers racing on one store: every write's changes get consecutive sequence numbers
    /// (the Backup Service's synchronous check relies on it), no number is given twice,
    /// and the change log holds every acknowledged change.
    async fn racing_writers_get_consecutive_sequences_and_lose_nothing(db) {
        let be = db.open("seq").await;
        let writers = (0..6).map(|w| {
            let be = be.clone();
            tokio::spawn(async move {
                let mut acknowledged = vec![];
                for i in 0..20 {
                    let changes = [
                        change(format!("contacts/{w}-{i}-a")),
                        change(format!("contacts/{w}-{i}-b")),
                    ];
                    let last = be
                        .write_user(POOL, &format!("sip:user{w}@example.net"), &changes)
                        .await
                        .unwrap();
                    acknowledged.push(last);
                }
                acknowledged
            })
        });
        let mut seqs = BTreeSet::new();
        for writer in writers {
            for last in writer.await.unwrap() {
                assert!(seqs.insert(last - 1), "sequence {} given twice", last - 1);
                assert!(seqs.insert(last), "sequence {last} given twice");
            }
        }
        assert_eq!(seqs.len(), 240);
        let logged = be.changes_after("PresenceFocus", 0, 1_000).await.unwrap();
        let logged: BTreeSet<i64> = logged.iter().map(|c| c.seq).collect();
        assert_eq!(logged, seqs, "the change log holds exactly the acknowledged changes");
    }
}

store::each_backend! {
    /// A failover fences a pool's users while writers are busy: every write acknowledged
    /// committed before the fence returned (it is in the change log by then), and every
    /// write after it is refused.
    async fn no_write_commits_after_the_fence_returns(db) {
        let be = db.open("fence").await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let (be, stop) = (be.clone(), stop.clone());
                tokio::spawn(async move {
                    let (mut acknowledged, mut refused) = (vec![], 0);
                    for i in 0.. {
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        match be
                            .write_user(
                                POOL,
                                &format!("sip:user{w}@example.net"),
                                &[change(format!("k{i}"))],
                            )
                            .await
                        {
                            Ok(seq) => acknowledged.push(seq),
                            Err(StoreError::Fenced { .. }) => refused += 1,
                            Err(e) => panic!("{e}"),
                        }
                        tokio::task::yield_now().await;
                    }
                    (acknowledged, refused)
                })
            })
            .collect();
        // Let the writers get going, then fence.
        wait_for_changes(&be, 20).await;
        be.fence(POOL, "failed over to pool2").await.unwrap();
        let at_fence = be.changes_after("PresenceFocus", 0, 100_000).await.unwrap();
        let head = at_fence.iter().map(|c| c.seq).max().unwrap_or(0);
        // Every writer must have been refused at least once before we stop them.
        wait_for_refusals(&be).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (mut acknowledged, mut refused) = (vec![], 0);
        for writer in writers {
            let (a, r) = writer.await.unwrap();
            acknowledged.extend(a);
            refused += r;
        }
        assert!(refused > 0);
        let after = be.changes_after("PresenceFocus", 0, 100_000).await.unwrap();
        assert_eq!(after.len(), at_fence.len(), "a write committed after the fence returned");
        assert!(acknowledged.iter().all(|&s| s <= head));
        assert_eq!(acknowledged.len(), at_fence.len(), "every acknowledged write is logged");
    }
}

async fn wait_for_changes(be: &BackEnd, n: usize) {
    for _ in 0..10_000 {
        if be
            .changes_after("PresenceFocus", 0, 100_000)
            .await
            .unwrap()
            .len()
            >= n
        {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the writers wrote fewer than {n} changes");
}

/// A write after the fence is refused (checked by writing one ourselves).
async fn wait_for_refusals(be: &BackEnd) {
    let refused = be
        .write_user(POOL, "sip:probe@example.net", &[change("probe".into())])
        .await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { .. })),
        "{refused:?}"
    );
}
