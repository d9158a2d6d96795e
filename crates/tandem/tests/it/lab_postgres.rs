//! A lab whose Back Ends are PostgreSQL clusters (`tandem lab up --backend postgres`), on
//! a deployment of our own (fabrikam's names and sites, three Front Ends a pool, a
//! synchronous mirror added to one pool): the users' data is in PostgreSQL, no password
//! is anywhere but the lab's pgpass, and when the pool's primary Back End server is lost
//! the documented command keeps the pool working on the mirror, with the loss counted;
//! the old primary comes back as the standby, and a planned failback loses nothing.

use crate::failover::{add_contact, contacts, user_of};
use crate::lab::{Lab, fabrikam};
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
    let v = lab.json(
        Some(DUB_FE),
        &format!("Get-CsDatabaseMirrorState -PoolFqdn {DUB} -DatabaseType User"),
    );
    v.as_array().map_or(v.clone(), |a| a[0].clone())
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
    let password = std::fs::read_to_string(&pgpass)
        .unwrap()
        .trim()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
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
    for entry in walk(&dir.join("servers")) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&password),
            "{} holds the database password",
            entry.display()
        );
    }

    // A user's data lands in PostgreSQL, and the synchronous mirror has it.
    let user = user_of(&lab, DUB);
    for i in 0..5 {
        assert!(add_contact(
            &lab,
            &user,
            &format!("sip:before{i}@fabrikam.net")
        ));
    }
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
    let v = lab.json(
        Some(DUB_FE),
        &format!("Invoke-CsDatabaseFailover -PoolFqdn {DUB} -DatabaseType User -NewPrincipal Mirror -Force"),
    );
    let done = v.as_array().map_or(&v, |a| &a[0]);
    assert_eq!(done["To"], "Mirror", "{done}");
    for i in 0..5 {
        assert!(add_contact(
            &lab,
            &user,
            &format!("sip:after{i}@fabrikam.net")
        ));
    }
    assert_eq!(contacts(&lab, &user).len(), 10);

    // The old primary comes back as the standby; the loss is counted: none (synchronous).
    let out = run(&["lab", "start", "sql-dub.fabrikam.net", "--dir", lab.dir()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("rebuilt as the standby"),
        "{}",
        stderr(&out)
    );
    let s = mirror_state(&lab);
    assert_eq!(s["StateOnMirror"], "Principal", "{s}");
    assert_eq!(s["MirroringStatusOnPrimary"], "Synchronized", "{s}");
    assert_eq!(s["LastFailoverLostWrites"], 0, "{s}");

    // A planned failback to the primary loses nothing.
    let v = lab.json(
        Some(DUB_FE),
        &format!(
            "Invoke-CsDatabaseFailover -PoolFqdn {DUB} -DatabaseType User -NewPrincipal Primary"
        ),
    );
    let done = v.as_array().map_or(&v, |a| &a[0]);
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

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = vec![];
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files
}
