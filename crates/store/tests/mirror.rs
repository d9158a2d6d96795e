//! A SQLite Back End's mirror: written in step, failed over to, rebuilt when it missed a
//! commit. Counted in each copy's own file.

use std::path::Path;

use store::{BackEnd, Copy, UserChange};

const POOL: &str = "pool2.example.net";

fn change(key: &str) -> UserChange {
    UserChange {
        module: "PresenceFocus".into(),
        key: key.into(),
        value: Some("{}".into()),
    }
}

async fn pair(dir: &Path) -> BackEnd {
    BackEnd::open_mirrored(
        "sqlite://be/pool2.db",
        Some("sqlite://be/pool2-mirror.db"),
        dir,
    )
    .await
    .unwrap()
}

/// The users' items one copy holds, read from its file alone.
async fn items_in(dir: &Path, file: &str) -> usize {
    let copy = BackEnd::open(&format!("sqlite://be/{file}"), dir)
        .await
        .unwrap();
    let n = copy.all_user_items(None).await.unwrap().len();
    copy.close().await;
    n
}

async fn write(be: &BackEnd, user: &str, key: &str) {
    be.write_user(POOL, &format!("sip:{user}@example.net"), &[change(key)])
        .await
        .unwrap();
}

/// A server that knows nothing of the mirror writes to the primary's file alone.
async fn write_to_primary_alone(dir: &Path, user: &str, key: &str) {
    let alone = BackEnd::open("sqlite://be/pool2.db", dir).await.unwrap();
    write(&alone, user, key).await;
    alone.close().await;
}

#[tokio::test]
async fn every_acknowledged_write_is_in_both_copies() {
    let dir = tempfile::tempdir().unwrap();
    let be = pair(dir.path()).await;
    for i in 0..25 {
        write(&be, "ann", &format!("k{i}")).await;
    }
    be.register(&store::Binding {
        aor: "sip:ann@example.net".into(),
        contact: "sip:ann@10.0.0.1".into(),
        expires_at: store::now_ms() + 60_000,
        mode: "Normal".into(),
        server: "fe1".into(),
    })
    .await
    .unwrap();
    let sha = be.put_file(b"slides").await.unwrap();
    let state = be.mirror_state().await.unwrap().unwrap();
    assert!(state.synchronized, "{state:?}");
    assert_eq!(state.status(), "Synchronized");
    assert_eq!(state.principal, Copy::Primary);
    assert_eq!(state.lag_writes(), Some(0));
    be.close().await;
    assert_eq!(items_in(dir.path(), "pool2.db").await, 25);
    assert_eq!(items_in(dir.path(), "pool2-mirror.db").await, 25);
    assert!(dir.path().join("be/pool2-mirror.files").join(&sha).exists());
}

#[tokio::test]
async fn a_planned_failover_loses_nothing_and_every_server_follows_it() {
    let dir = tempfile::tempdir().unwrap();
    // Two Front Ends of the pool, each with its own handle on the pair.
    let fe1 = pair(dir.path()).await;
    let fe2 = pair(dir.path()).await;
    for i in 0..10 {
        write(&fe1, "ann", &format!("a{i}")).await;
        write(&fe2, "bob", &format!("b{i}")).await;
    }
    let done = fe1.fail_over_database(Copy::Mirror, false).await.unwrap();
    assert_eq!(
        (done.from, done.to, done.term),
        (Copy::Primary, Copy::Mirror, 1)
    );
    assert_eq!(done.lost_writes, Some(0));
    // fe2 learns of the failover at its next write, and writes to the new principal.
    write(&fe2, "bob", "after").await;
    write(&fe1, "ann", "after").await;
    let state = fe2.mirror_state().await.unwrap().unwrap();
    assert_eq!(state.principal, Copy::Mirror);
    assert!(state.synchronized, "{state:?}");
    assert_eq!(fe2.all_user_items(None).await.unwrap().len(), 22);
    // And back, from the other server.
    fe2.fail_over_database(Copy::Primary, false).await.unwrap();
    write(&fe1, "ann", "back").await;
    assert_eq!(
        fe1.mirror_state().await.unwrap().unwrap().principal,
        Copy::Primary
    );
    fe1.close().await;
    fe2.close().await;
    assert_eq!(items_in(dir.path(), "pool2.db").await, 23);
    assert_eq!(items_in(dir.path(), "pool2-mirror.db").await, 23);
}

#[tokio::test]
async fn a_mirror_that_missed_a_commit_is_rebuilt_before_it_is_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let be = pair(dir.path()).await;
    write(&be, "ann", "k1").await;
    write_to_primary_alone(dir.path(), "cid", "only-on-primary").await;
    let state = be.mirror_state().await.unwrap().unwrap();
    assert!(!state.synchronized);
    assert_eq!(state.status(), "Synchronizing");
    assert_eq!(state.lag_writes(), Some(1));
    // The next write notices, rebuilds the mirror from the principal, and goes on in step.
    write(&be, "ann", "k2").await;
    write(&be, "ann", "k3").await;
    let state = be.mirror_state().await.unwrap().unwrap();
    assert!(state.synchronized, "{state:?}");
    be.close().await;
    assert_eq!(items_in(dir.path(), "pool2-mirror.db").await, 4);
}

#[tokio::test]
async fn an_old_principal_that_comes_back_is_fenced_by_the_newer_term() {
    let dir = tempfile::tempdir().unwrap();
    let be = pair(dir.path()).await;
    write(&be, "ann", "k1").await;
    be.fail_over_database(Copy::Mirror, false).await.unwrap();
    be.close().await;
    // A server that knows nothing of the mirror writes to the old principal's file.
    write_to_primary_alone(dir.path(), "eve", "stale").await;
    // A server opening the pair follows the higher term: the mirror is principal, and
    // the primary is rebuilt from it, dropping what it took meanwhile.
    let be = pair(dir.path()).await;
    let state = be.mirror_state().await.unwrap().unwrap();
    assert_eq!(state.principal, Copy::Mirror);
    write(&be, "ann", "k2").await;
    assert!(be.mirror_state().await.unwrap().unwrap().synchronized);
    be.close().await;
    assert_eq!(items_in(dir.path(), "pool2.db").await, 2);
    assert_eq!(items_in(dir.path(), "pool2-mirror.db").await, 2);
}

#[tokio::test]
async fn a_back_end_without_a_mirror_refuses_a_database_failover() {
    let dir = tempfile::tempdir().unwrap();
    let be = BackEnd::open("sqlite://be/p.db", dir.path()).await.unwrap();
    assert!(be.mirror_state().await.unwrap().is_none());
    let refused = be
        .fail_over_database(Copy::Mirror, false)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("has no mirror"), "{refused}");
}
