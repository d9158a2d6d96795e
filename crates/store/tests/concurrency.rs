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

store::each_backend! {
    /// The Backup Service's bookkeeping and the registrar's, end to end on one store:
    /// every statement they use runs, on each database, with the answers they rely on.
    async fn the_backup_and_registrar_bookkeeping_answers_alike_on_each_database(db) {
        let be = db.open("books").await;
        let module = "PresenceFocus";
        let partner = "pool2.example.net";
        let mut last = 0;
        for i in 0..3 {
            last = be
                .write_user(POOL, "sip:ann@example.net", &[change(format!("k{i}"))])
                .await
                .unwrap();
        }
        assert_eq!(last, 3);
        assert_eq!(be.pending_user_changes_before(4).await.unwrap(), 3);
        assert!(!be.shipped_through(1, 2).await.unwrap());
        be.record_export(module, partner, 2, None).await.unwrap();
        // An older acknowledgement never moves the shipped point back.
        be.record_export(module, partner, 1, Some("partner unreachable"))
            .await
            .unwrap();
        let state = be.export_state(module).await.unwrap().unwrap();
        assert_eq!(state.acked_seq, 2);
        assert_eq!(state.last_error.as_deref(), Some("partner unreachable"));
        assert!(be.shipped_through(1, 2).await.unwrap());
        assert_eq!(be.pending_user_changes_before(4).await.unwrap(), 1);

        let third = be.changes_after(module, 2, 10).await.unwrap().remove(0);
        be.record_unshippable(&third, 9_000_000, partner, "larger than the backup link takes")
            .await
            .unwrap();
        let skipped = be.unshippable(module).await.unwrap();
        assert_eq!((skipped.len(), skipped[0].seq, skipped[0].bytes), (1, 3, 9_000_000));
        assert_eq!(be.export_state(module).await.unwrap().unwrap().acked_seq, 3);

        be.request_resync(module, partner).await.unwrap();
        assert!(be.export_state(module).await.unwrap().unwrap().resync);
        be.complete_resync(module, partner, 3).await.unwrap();
        let state = be.export_state(module).await.unwrap().unwrap();
        assert!(!state.resync && state.last_error.is_none() && state.acked_seq == 3);

        let binding = |contact: &str| store::Binding {
            aor: "sip:ann@example.net".into(),
            contact: contact.into(),
            expires_at: store::now_ms() + 60_000,
            mode: "Normal".into(),
            server: "fe1.example.net".into(),
        };
        be.register(&binding("sip:a@1")).await.unwrap();
        be.register(&binding("sip:a@2")).await.unwrap();
        be.unregister("sip:ann@example.net", Some("sip:a@1")).await.unwrap();
        assert_eq!(be.bindings("sip:ann@example.net").await.unwrap().len(), 1);
        be.unregister("sip:ann@example.net", None).await.unwrap();
        assert!(be.bindings("sip:ann@example.net").await.unwrap().is_empty());
    }
}

store::each_backend! {
    /// The CMS master's bookkeeping: replica reports, the newest version under a prefix,
    /// the durable record of a CMS failover, and the backlog a standby is behind by.
    async fn the_cms_bookkeeping_answers_alike_on_each_database(db) {
        let be = db.open("cms").await;
        be.bootstrap(&[("users/a".into(), Some("1".into()))], "install")
            .await
            .unwrap();
        let (_, lease) = be.acquire_lease("fe1", 60_000, store::now_ms()).await.unwrap();
        be.write("fe1", lease.epoch, &[("sites/s1".into(), Some("x".into()))], "edit")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(be.newest_version_under(&["users/"]).await.unwrap(), 1);
        assert_eq!(be.newest_version_under(&["users/", "sites/"]).await.unwrap(), 2);
        assert_eq!(be.newest_version_under(&["none/"]).await.unwrap(), 0);
        for (fqdn, version) in [("fe2.example.net", 1), ("fe1.example.net", 2)] {
            be.record_replica_status(&store::ReplicaStatusRow {
                fqdn: fqdn.into(),
                version,
                last_status_report: store::now_ms(),
                product_version: "test".into(),
            })
            .await
            .unwrap();
        }
        let rows = be.replica_statuses().await.unwrap();
        assert_eq!(rows.iter().map(|r| r.fqdn.as_str()).collect::<Vec<_>>(), ["fe1.example.net", "fe2.example.net"]);
        let backlog = be.cms_backlog(1).await.unwrap();
        assert_eq!((backlog.count, backlog.head_seq), (1, 2));

        assert!(be.cms_failover_record().await.unwrap().is_none());
        let (id, at) = be
            .save_cms_failover_record(None, "{\"step\":1}", 0)
            .await
            .unwrap()
            .expect("a new record");
        let saved = be.cms_failover_record().await.unwrap().unwrap();
        assert_eq!((saved.0, saved.1.as_str(), saved.2), (id, "{\"step\":1}", at));
        // A writer that read an older record is refused.
        assert!(be.save_cms_failover_record(Some(id), "{\"step\":2}", at - 1).await.unwrap().is_none());
        assert!(be.save_cms_failover_record(Some(id), "{\"step\":2}", at).await.unwrap().is_some());
    }
}

/// The PostgreSQL schema reads as SQLite's: every integer is `BIGINT` (epochs are
/// `term << 32`, and sqlx decodes `i64` only from `INT8`) and every text column compares
/// bytes (`COLLATE "C"`), as key ranges and orders assume.
#[tokio::test]
async fn the_postgres_schema_has_only_bigints_and_byte_ordered_text() {
    let Some(db) = store::testing::TestDb::postgres() else {
        return;
    };
    let url = db.new_url("schema").await;
    store::BackEnd::open(&url, std::path::Path::new("/"))
        .await
        .unwrap();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let odd: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text, collation_name::text
         FROM information_schema.columns
         WHERE table_schema = 'public'
           -- sqlx's own record of the migrations it applied: no key ranges, no epochs
           AND table_name <> '_sqlx_migrations'
           AND (data_type IN ('integer', 'smallint', 'numeric')
                OR (data_type = 'text' AND collation_name IS DISTINCT FROM 'C'))",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(odd.is_empty(), "{odd:?}");
}

store::each_backend! {
    /// Eight Front Ends of a standby's pool give its vote at once, each to another store:
    /// the vote goes to exactly one (each decision reads and writes the row in one write
    /// transaction), and reads back as given.
    async fn a_standby_vote_asked_by_eight_at_once_goes_to_one(db) {
        let be = db.open("vote").await;
        let now = store::now_ms();
        let asks = (0..8).map(|i| {
            let be = be.clone();
            tokio::spawn(async move {
                let mine = format!("pool{i}");
                be.update_cms_vote(|_, v| {
                    if v.until_ms > now && v.pool != mine {
                        return false;
                    }
                    v.pool = mine;
                    v.term = i;
                    v.until_ms = now + 60_000;
                    true
                })
                .await
                .unwrap()
            })
        });
        let mut won = vec![];
        for (i, ask) in asks.enumerate() {
            if ask.await.unwrap() {
                won.push(i);
            }
        }
        assert_eq!(won.len(), 1, "{won:?}");
        let vote = be.cms_vote().await.unwrap();
        assert_eq!(vote.pool, format!("pool{}", won[0]));
        assert_eq!(vote.until_ms, now + 60_000);
        assert_eq!(vote.forced_at, 0);
        be.update_cms_vote(|_, v| v.forced_at = 7).await.unwrap();
        assert_eq!(be.cms_vote().await.unwrap().forced_at, 7);
    }
}
