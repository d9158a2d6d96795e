//! A PostgreSQL Back End and its streaming hot standby: `.ci/postgres start-pair` makes a
//! real primary and a `pg_basebackup -R` standby on Unix sockets; the store follows the
//! principal, a planned failover loses nothing, a forced one promotes the standby with
//! what it has, and an old principal that comes back is fenced. Runs where the test
//! cluster runs (`TANDEM_TEST_POSTGRES`, see `store::testing`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use store::{BackEnd, Copy, UserChange};

const POOL: &str = "pool2.example.net";

/// A pair of clusters in a temporary folder, stopped when dropped.
struct Pair {
    dir: tempfile::TempDir,
    primary: String,
    standby: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/postgres")
}

/// Runs `.ci/postgres <command> <dir>`, which must succeed; returns what it printed.
fn run_script(command: &str, dir: &Path) -> String {
    let out = Command::new(script())
        .arg(command)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

impl Pair {
    fn start() -> Option<Pair> {
        store::testing::TestDb::postgres()?;
        let dir = tempfile::Builder::new()
            .prefix("tandem-pg-pair")
            .tempdir_in("/tmp")
            .unwrap();
        let text = run_script("start-pair", &dir.path().join("pg"));
        let mut urls = text.lines().map(str::to_string);
        Some(Pair {
            primary: urls.next().unwrap(),
            standby: urls.next().unwrap(),
            dir,
        })
    }

    fn cluster(&self, which: &str) -> PathBuf {
        self.dir.path().join("pg").join(which)
    }

    fn run(&self, command: &str, which: &str) {
        run_script(command, &self.cluster(which));
    }

    async fn open(&self) -> BackEnd {
        BackEnd::open_mirrored(&self.primary, Some(&self.standby), Path::new("/"))
            .await
            .unwrap()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("stop")
            .arg(self.dir.path().join("pg"))
            .output();
    }
}

async fn write(be: &BackEnd, key: &str) {
    be.write_user(
        POOL,
        "sip:ann@example.net",
        &[UserChange {
            module: "PresenceFocus".into(),
            key: key.into(),
            value: Some("{}".into()),
        }],
    )
    .await
    .unwrap();
}

async fn wait_synchronized(be: &BackEnd) -> store::MirrorState {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = be.mirror_state().await.unwrap().unwrap();
        if s.synchronized {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "the standby never caught up: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether a copy refuses a write made outside tandem.
async fn refuses_writes(url: &str) -> bool {
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap();
    sqlx::query("UPDATE backend_principal SET changed_at = changed_at")
        .execute(&mut c)
        .await
        .is_err()
}

#[tokio::test]
async fn a_planned_failover_to_the_standby_loses_nothing_and_every_server_follows() {
    let Some(pair) = Pair::start() else {
        return;
    };
    let fe1 = pair.open().await;
    let fe2 = pair.open().await;
    for i in 0..20 {
        write(&fe1, &format!("k{i}")).await;
    }
    let s = wait_synchronized(&fe1).await;
    assert_eq!(
        (s.principal, s.lag_bytes, s.mirror_writes),
        (Copy::Primary, Some(0), s.principal_writes)
    );
    assert_eq!(s.mode, "Asynchronous");

    let done = fe1.fail_over_database(Copy::Mirror, false).await.unwrap();
    assert_eq!(
        (done.to, done.term, done.lost_writes),
        (Copy::Mirror, 1, Some(0))
    );
    // fe2 still points at the old primary: its next write finds the fence and follows.
    write(&fe2, "after-fe2").await;
    write(&fe1, "after-fe1").await;
    assert_eq!(
        fe2.user_items("sip:ann@example.net").await.unwrap().len(),
        22
    );
    assert!(
        refuses_writes(&pair.primary).await,
        "the old primary is fenced"
    );
    let s = fe2.mirror_state().await.unwrap().unwrap();
    assert_eq!(s.principal, Copy::Mirror);
    assert!(!s.synchronized && s.problem.is_some(), "{s:?}");
    // Failing back needs the old primary rebuilt as a standby first: refused, clearly.
    let refused = fe1
        .fail_over_database(Copy::Primary, false)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("rebuild it as the standby"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_forced_failover_promotes_what_the_standby_has_and_the_old_primary_is_fenced_when_back() {
    let Some(pair) = Pair::start() else {
        return;
    };
    let fe = pair.open().await;
    for i in 0..10 {
        write(&fe, &format!("k{i}")).await;
    }
    wait_synchronized(&fe).await;
    // The standby stops receiving (its WAL receiver is stopped, then killed with what
    // was sent to it unread), five more writes commit on the primary alone, and the
    // primary is lost: those five, and one statement, are what a forced failover loses.
    let (receiver,): (i32,) = sqlx::query_as("SELECT pid FROM pg_stat_wal_receiver")
        .fetch_one(
            &mut <sqlx::PgConnection as sqlx::Connection>::connect(&pair.standby)
                .await
                .unwrap(),
        )
        .await
        .unwrap();
    signal(receiver, "STOP");
    for i in 0..5 {
        write(&fe, &format!("unshipped{i}")).await;
    }
    // A single statement outside a transaction is a write the standby lacks too.
    fe.request_resync("PresenceFocus", "pool2.example.net")
        .await
        .unwrap();
    pair.run("stop", "primary");
    signal(receiver, "KILL");
    // The standby restarts after losing a process; wait until it answers again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while <sqlx::PgConnection as sqlx::Connection>::connect(&pair.standby)
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the standby never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What the runbook reads first: the principal does not answer, the standby does.
    let s = fe.mirror_state().await.unwrap().unwrap();
    assert!(
        !s.principal_answers && s.principal_writes.is_none(),
        "{s:?}"
    );
    assert_eq!(s.status(), "Disconnected");
    assert!(
        s.problem.as_deref().unwrap_or_default().contains("-Force"),
        "{s:?}"
    );
    // Without -Force the failover is refused: the principal cannot be fenced.
    let refused = fe
        .fail_over_database(Copy::Mirror, false)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("-Force"), "{refused}");
    let done = fe.fail_over_database(Copy::Mirror, true).await.unwrap();
    assert_eq!((done.to, done.lost_writes), (Copy::Mirror, None));
    write(&fe, "after").await;
    assert_eq!(
        fe.user_items("sip:ann@example.net").await.unwrap().len(),
        11
    );
    // The old primary comes back, writable and with the old term: a server that opens
    // the pair follows the higher term and fences it.
    pair.run("restart", "primary");
    let fresh = pair.open().await;
    write(&fresh, "fresh").await;
    assert!(
        refuses_writes(&pair.primary).await,
        "the returning primary is fenced"
    );
    assert_eq!(
        fresh.user_items("sip:ann@example.net").await.unwrap().len(),
        12
    );
    let s = fresh.mirror_state().await.unwrap().unwrap();
    assert_eq!(s.principal, Copy::Mirror);
    assert_eq!(
        s.last_failover_lost_writes,
        Some(6),
        "measured once the old primary is back"
    );
}

fn signal(pid: i32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}
