//! A pool's Back End mirror on a live lab: the mirror state read from the copies, a planned
//! `Invoke-CsDatabaseFailover` that loses nothing, and the seeds' `-MirrorSqlServerFqdn`
//! branch of the CMS failover once the mirror is the principal. Users' data is counted in
//! each copy's own file.

use crate::cms::{cms_status, wait_standby_current};
use crate::failover::{add_contact, contacts, user_of};
use crate::lab::Lab;
use crate::stderr;

const P1: &str = "pool1.contoso.com";
const P2: &str = "pool2.contoso.com";
const FE: &str = "pool2-fe1.contoso.com";

fn state(lab: &Lab, via: &str) -> serde_json::Value {
    let v = lab.json(
        Some(via),
        &format!("Get-CsDatabaseMirrorState -PoolFqdn {P2} -DatabaseType Centralmgmt"),
    );
    v.as_array().unwrap()[0].clone()
}

#[test]
fn the_mirror_takes_over_without_loss_and_the_seeds_mirror_branch_moves_the_store_to_it() {
    if crate::lab::on_postgres() {
        // It counts in the SQLite copies' files; lab_postgres.rs tests the PostgreSQL mirror.
        eprintln!("skipped: this test reads the SQLite mirror's files");
        return;
    }
    let lab = Lab::up_env(&["--users", "5"], &[]);
    let bob = user_of(&lab, P2);
    for i in 0..5 {
        assert!(add_contact(
            &lab,
            &bob,
            &format!("sip:before{i}@contoso.com")
        ));
    }
    // Step 5 of the seeds: which copy of Backup_Pool's Back End is principal.
    let s = state(&lab, FE);
    assert_eq!(s["StateOnPrimary"], "Principal", "{s}");
    assert_eq!(s["StateOnMirror"], "Mirror", "{s}");
    assert_eq!(s["MirroringStatusOnPrimary"], "Synchronized", "{s}");
    assert_eq!(s["MirrorLagWrites"], 0, "{s}");
    assert_eq!(
        lab.contacts_in_store("sqlite://backend/pool2-mirror.db", &bob),
        5
    );

    // The mirror branch is refused while the primary is principal, naming the right form.
    let out = lab.shell(
        Some(FE),
        "Invoke-CsManagementServerFailover -MirrorSqlServerFqdn pool2-be-mirror.contoso.com -MirrorSqlInstanceName rtc -Force",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("-BackupSqlServerFqdn pool2-be.contoso.com"),
        "{}",
        stderr(&out)
    );

    // A planned failover of the Back End, run on one Front End; the other follows.
    let v = lab.json(
        Some(FE),
        "Invoke-CsDatabaseFailover -PoolFqdn pool2.contoso.com -DatabaseType CentralMgmt -NewPrincipal Mirror",
    );
    let done = v.as_array().map_or(&v, |a| &a[0]);
    assert_eq!(done["To"], "Mirror", "{done}");
    assert_eq!(done["LostWrites"], 0, "{done}");
    assert_eq!(
        done["PrincipalSqlServerFqdn"],
        "pool2-be-mirror.contoso.com"
    );
    for i in 0..5 {
        assert!(add_contact(
            &lab,
            &bob,
            &format!("sip:after{i}@contoso.com")
        ));
    }
    let s = state(&lab, "pool2-fe2.contoso.com");
    assert_eq!(s["StateOnMirror"], "Principal", "{s}");
    assert_eq!(s["StateOnPrimary"], "Mirror", "{s}");
    assert_eq!(s["MirroringStatusOnPrimary"], "Synchronized", "{s}");
    assert_eq!(contacts(&lab, &bob).len(), 10);
    assert_eq!(
        lab.contacts_in_store("sqlite://backend/pool2-mirror.db", &bob),
        10
    );
    assert_eq!(lab.contacts_in_store("sqlite://backend/pool2.db", &bob), 10);

    // Now the seeds' mirror branch: the primary form is refused, the mirror form works.
    wait_standby_current(&lab, FE, P1, P2);
    let out = lab.shell(
        Some(FE),
        "Invoke-CsManagementServerFailover -BackupSqlServerFqdn pool2-be.contoso.com -BackupSqlInstanceName rtc -Force",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("-MirrorSqlServerFqdn pool2-be-mirror.contoso.com"),
        "{}",
        stderr(&out)
    );
    lab.ok(
        Some(FE),
        "Invoke-CsManagementServerFailover -MirrorSqlServerFqdn pool2-be-mirror.contoso.com -MirrorSqlInstanceName rtc -Force",
    );
    let status = cms_status(&lab, "pool2-fe2.contoso.com");
    assert!(
        status["ActiveMasterFqdn"]
            .as_str()
            .unwrap()
            .starts_with("pool2-"),
        "{status}"
    );
    // The store is in the principal copy (and the other, in step).
    let s = state(&lab, FE);
    assert_eq!(s["CentralManagementStore"], "Active", "{s}");
}

#[test]
fn when_the_store_is_lost_the_seeds_mirror_branch_promotes_the_standby_in_the_mirror() {
    let lab = Lab::up_env(&["--users", "2"], &[]);
    let alice = user_of(&lab, P1);
    assert!(add_contact(&lab, &alice, "sip:before@contoso.com"));
    wait_standby_current(&lab, FE, P1, P2);
    // pool2's Back End moved to its mirror earlier; then pool1, with the store, is lost.
    lab.ok(
        Some(FE),
        "Invoke-CsDatabaseFailover -PoolFqdn pool2.contoso.com -DatabaseType CentralMgmt -NewPrincipal Mirror",
    );
    lab.kill(P1);
    // Asked without a copy, the refusal names the principal one: the mirror.
    let out = lab.shell(Some(FE), "Invoke-CsManagementServerFailover");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("-MirrorSqlServerFqdn pool2-be-mirror.contoso.com"),
        "{}",
        stderr(&out)
    );
    // Seed step 5's mirror branch, in a disaster.
    lab.ok(
        Some(FE),
        "Invoke-CsManagementServerFailover -MirrorSqlServerFqdn pool2-be-mirror.contoso.com -MirrorSqlInstanceName rtc",
    );
    let status = cms_status(&lab, "pool2-fe2.contoso.com");
    assert!(
        status["ActiveMasterFqdn"]
            .as_str()
            .unwrap()
            .starts_with("pool2-"),
        "{status}"
    );
    assert_eq!(state(&lab, FE)["CentralManagementStore"], "Active");
}
