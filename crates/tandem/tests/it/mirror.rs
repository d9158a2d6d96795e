//! A pool's Back End mirror on a live lab: the mirror state read from the copies, a planned
//! `Invoke-CsDatabaseFailover` that loses nothing, and the seeds' `-MirrorSqlServerFqdn`
//! branch of the CMS failover once the mirror is the principal. Users' data is counted in
//! each copy's own file.

use crate::cms::{assert_master_in, cms_store_state, wait_standby_current};
use crate::failover::{add_contact, add_contacts, contacts, user_of};
use crate::lab::Lab;

const P1: &str = "pool1.contoso.com";
const P2: &str = "pool2.contoso.com";
const FE: &str = "pool2-fe1.contoso.com";

fn state(lab: &Lab, via: &str) -> serde_json::Value {
    cms_store_state(lab, via, P2)
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
    add_contacts(
        &lab,
        &bob,
        (0..5).map(|i| format!("sip:before{i}@contoso.com")),
    );
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
    lab.refused(
        Some(FE),
        "Invoke-CsManagementServerFailover -MirrorSqlServerFqdn pool2-be-mirror.contoso.com -MirrorSqlInstanceName rtc -Force",
        "-BackupSqlServerFqdn pool2-be.contoso.com",
    );

    // A planned failover of the Back End, run on one Front End; the other follows.
    let done = lab.record(
        Some(FE),
        "Invoke-CsDatabaseFailover -PoolFqdn pool2.contoso.com -DatabaseType CentralMgmt -NewPrincipal Mirror",
    );
    assert_eq!(done["To"], "Mirror", "{done}");
    assert_eq!(done["LostWrites"], 0, "{done}");
    assert_eq!(
        done["PrincipalSqlServerFqdn"],
        "pool2-be-mirror.contoso.com"
    );
    add_contacts(
        &lab,
        &bob,
        (0..5).map(|i| format!("sip:after{i}@contoso.com")),
    );
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
    lab.refused(
        Some(FE),
        "Invoke-CsManagementServerFailover -BackupSqlServerFqdn pool2-be.contoso.com -BackupSqlInstanceName rtc -Force",
        "-MirrorSqlServerFqdn pool2-be-mirror.contoso.com",
    );
    lab.ok(
        Some(FE),
        "Invoke-CsManagementServerFailover -MirrorSqlServerFqdn pool2-be-mirror.contoso.com -MirrorSqlInstanceName rtc -Force",
    );
    assert_master_in(&lab, "pool2-fe2.contoso.com", "pool2-");
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
    lab.refused(
        Some(FE),
        "Invoke-CsManagementServerFailover",
        "-MirrorSqlServerFqdn pool2-be-mirror.contoso.com",
    );
    // Seed step 5's mirror branch, in a disaster.
    lab.ok(
        Some(FE),
        "Invoke-CsManagementServerFailover -MirrorSqlServerFqdn pool2-be-mirror.contoso.com -MirrorSqlInstanceName rtc",
    );
    assert_master_in(&lab, "pool2-fe2.contoso.com", "pool2-");
    assert_eq!(state(&lab, FE)["CentralManagementStore"], "Active");
}
