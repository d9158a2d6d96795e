//! A lab whose Back Ends are PostgreSQL clusters (`tandem lab up --backend postgres`), on
//! a deployment of our own (fabrikam's names and sites, three Front Ends a pool, a
//! synchronous mirror added to one pool): the users' data is in PostgreSQL, no password
//! is anywhere but the lab's pgpass, and when the pool's primary Back End server is lost
//! the documented command keeps the pool working on the mirror, with the loss counted;
//! the old primary comes back as the standby, and a planned failback loses nothing.

use crate::failover::{add_contacts, contacts, user_of};
use crate::lab::{Lab, fabrikam};
use crate::roles::files_containing;
use crate::{run, stderr};

const DUB: &str = "fe-dub.fabrikam.net";
const DUB_FE: &str = "dub-b.fabrikam.net";

fn mirrored() -> topology::Topology {
    let mut t = fabrikam();
    let pool = t
        .front_end_pools
        .iter_mut()
        .find(|p| p.fqdn == DUB)
        .unwrap();
    pool.back_end.mirror = Some(topology::DatabaseMirror {
        server_fqdn: "sql-dub-mirror.fabrikam.net".into(),
        instance: pool.back_end.instance.clone(),
        // The lab gives it a cluster and rewrites this.
        database_url: "sqlite://backend/dub-mirror.db".into(),
        synchronous: true,
    });
    t
}

fn mirror_state(lab: &Lab) -> serde_json::Value {
    lab.record(
        Some(DUB_FE),
        &format!("Get-CsDatabaseMirrorState -PoolFqdn {DUB} -DatabaseType User"),
    )
}

fn clusters(lab: &Lab) -> Vec<serde_json::Value> {
    lab.status_rows()
        .into_iter()
        .filter(|r| r["role"] == "BackEnd" || r["role"] == "BackEndMirror")
        .collect()
}

#[test]
fn a_postgres_lab_keeps_a_pool_working_on_its_mirror_and_rebuilds_the_old_primary() {
    let Some(lab) = Lab::up_postgres(&mirrored(), &["--users", "3"]) else {
        return;
    };
    let rows = clusters(&lab);
    assert_eq!(
        rows.len(),
        4,
        "a cluster per Back End server and the mirror: {rows:?}"
    );
    assert!(rows.iter().all(|r| r["state"] == "running"), "{rows:?}");

    // No secret but in the 0600 password file.
    let dir = std::path::PathBuf::from(lab.dir());
    let pgpass = dir.join("pgpass");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&pgpass).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let password = lab.database_password().unwrap();
    let installed = std::fs::read_to_string(dir.join("installed-topology.toml")).unwrap();
    assert!(!installed.contains(&password));
    let dub_url = installed
        .lines()
        .filter(|l| l.starts_with("database_url = \"postgres://"))
        .nth(1)
        .unwrap()
        .split('"')
        .nth(1)
        .unwrap()
        .to_string();
    let holding = files_containing(
        &dir.join("servers"),
        password.as_bytes(),
        std::path::Path::new(""),
    );
    assert!(holding.is_empty(), "{holding:?} hold the database password");

    // A user's data lands in PostgreSQL, and the synchronous mirror has it.
    let user = user_of(&lab, DUB);
    add_contacts(
        &lab,
        &user,
        (0..5).map(|i| format!("sip:before{i}@fabrikam.net")),
    );
    assert_eq!(lab.contacts_in_store(&dub_url, &user), 5);
    let s = mirror_state(&lab);
    assert_eq!(s["MirroringMode"], "Synchronous", "{s}");
    assert_eq!(s["MirroringStatusOnPrimary"], "Synchronized", "{s}");
    assert_eq!(s["MirrorLagWrites"], 0, "{s}");

    // The primary Back End server is lost; the documented command fails over to the mirror.
    lab.kill("sql-dub.fabrikam.net");
    // The runbook's first look: the primary inaccessible, the mirror a standby.
    let s = mirror_state(&lab);
    assert_eq!(
        s["StateOnPrimary"], "DatabaseInaccessibleOrMirroringNotEnabled",
        "{s}"
    );
    assert_eq!(s["StateOnMirror"], "Mirror", "{s}");
    assert!(
        s["MirrorProblem"]
            .as_str()
            .unwrap_or_default()
            .contains("-NewPrincipal Mirror -Force"),
        "{s}"
    );
    let done = lab.record(
        Some(DUB_FE),
        &format!("Invoke-CsDatabaseFailover -PoolFqdn {DUB} -DatabaseType User -NewPrincipal Mirror -Force"),
    );
    assert_eq!(done["To"], "Mirror", "{done}");
    add_contacts(
        &lab,
        &user,
        (0..5).map(|i| format!("sip:after{i}@fabrikam.net")),
    );
    assert_eq!(contacts(&lab, &user).len(), 10);

    // The old primary comes back as the standby; the loss is counted: none (synchronous).
    let out = run(&["lab", "start", "sql-dub.fabrikam.net", "--dir", lab.dir()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("rebuilt as the standby"),
        "{}",
        stderr(&out)
    );
    // Streaming at once; in step once it has replayed what it streamed.
    let s = crate::eventually(20, "the rebuilt standby in step", || {
        let s = mirror_state(&lab);
        (s["MirroringStatusOnPrimary"] == "Synchronized").then_some(s)
    });
    assert_eq!(s["StateOnMirror"], "Principal", "{s}");
    assert_eq!(s["LastFailoverLostWrites"], 0, "{s}");

    // A planned failback to the primary loses nothing.
    let done = lab.record(
        Some(DUB_FE),
        &format!(
            "Invoke-CsDatabaseFailover -PoolFqdn {DUB} -DatabaseType User -NewPrincipal Primary"
        ),
    );
    assert_eq!(done["LostWrites"], 0, "{done}");
    assert_eq!(contacts(&lab, &user).len(), 10);
    assert_eq!(lab.contacts_in_store(&dub_url, &user), 10);

    // Down leaves no PostgreSQL of this lab behind.
    drop(lab);
    let left = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c).contains(&format!("{}/backend/", dir.display()))
            })
        })
        .count();
    assert_eq!(left, 0, "PostgreSQL processes of the lab are left");
}
