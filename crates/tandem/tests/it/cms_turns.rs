//! The Central Management store pushed the way operators push it, on the second deployment
//! (`examples/fabrikam.toml`: other names, three Front Ends a pool): a second disaster
//! before the first is repaired, and both pools failing in turn. After each step the tests
//! check that the configuration never goes back in time, that what was lost is said once,
//! and that the pool failover records and their ids survive every CMS failover.

use crate::cms::{
    lost_in, masters, set_sync_interval, store_of, sync_interval_at, wait_all_up_to_date,
};
use crate::lab::{Lab, fabrikam};
use crate::{run, stderr, stdout};

const RED: &str = "fe-red.fabrikam.net";
const DUB: &str = "fe-dub.fabrikam.net";
const RED_FES: [&str; 3] = [
    "red-a.fabrikam.net",
    "red-b.fabrikam.net",
    "red-c.fabrikam.net",
];
const DUB_FES: [&str; 3] = [
    "dub-a.fabrikam.net",
    "dub-b.fabrikam.net",
    "dub-c.fabrikam.net",
];
/// The servers outside both paired pools: the Lync 2010 pool's and the Edges.
const OTHERS: [&str; 3] = [
    "lis-a.fabrikam.net",
    "edge-red-a.fabrikam.net",
    "edge-dub-a.fabrikam.net",
];

fn service(lab: &Lab, verb: &str, name: &str, servers: &[&str]) {
    for s in servers {
        lab.ok(
            Some(s),
            &format!("{verb}-CsWindowsService -Name {name} -ComputerName {s}"),
        );
    }
}

/// Runs a cmdlet expected to succeed; returns what it printed.
fn says(lab: &Lab, server: &str, line: &str) -> String {
    let out = run(&["shell", "--lab", lab.dir(), "--server", server, "-c", line]);
    let text = stdout(&out);
    assert!(out.status.success(), "{line}: {text}{}", stderr(&out));
    text
}

/// Waits until the store in `standby` is the standby of the store in `active` and holds
/// every one of its versions, with nobody running a cmdlet for it.
fn wait_standby_repaired(lab: &Lab, via: &str, active: &str, standby: &str) {
    crate::eventually(
        15,
        &format!("the store in {standby} to become a standby holding every version"),
        || {
            let (role, held) = store_of(lab, via, standby);
            let (active_role, head) = store_of(lab, via, active);
            (role == "Backup" && active_role == "Active" && held == head).then_some(())
        },
    );
}

fn pool_state(lab: &Lab, via: &str, pool: &str) -> serde_json::Value {
    let v = lab.json(
        Some(via),
        &format!("Get-CsPoolFailoverState -PoolFqdn {pool}"),
    );
    v.as_array().map_or(v.clone(), |a| a[0].clone())
}

/// The ids of every pool operation the CMS holds.
fn operation_ids(lab: &Lab, via: &str) -> Vec<u64> {
    let v = lab.json(Some(via), "Get-CsDisasterRecoveryOperation");
    let rows = v.as_array().cloned().unwrap_or_else(|| vec![v.clone()]);
    rows.iter()
        .filter_map(|r| r["Identity"].as_str()?.parse().ok())
        .collect()
}

fn cms_failover(lab: &Lab, server: &str, sql: &str) -> String {
    says(
        lab,
        server,
        &format!(
            "Invoke-CsManagementServerFailover -BackupSqlServerFqdn {sql} -BackupSqlInstanceName lync"
        ),
    )
}

#[test]
fn a_returning_store_that_lost_a_version_becomes_a_working_standby_by_itself_and_takes_a_second_disaster()
 {
    let lab = Lab::up_topology(&fabrikam(), &["--users", "3"], &[]);
    wait_standby_repaired(&lab, DUB_FES[0], RED, DUB);
    // fe-red's Backup Service and every other server's replica stop: the next change is
    // held by fe-red alone.
    service(&lab, "Stop", "LYNCBACKUP", &RED_FES);
    service(&lab, "Stop", "REPLICA", &DUB_FES);
    service(&lab, "Stop", "REPLICA", &OTHERS);
    set_sync_interval(&lab, RED_FES[0], "00:01:11");
    // fe-dub hears that fe-red holds a version its standby lacks.
    crate::eventually(10, "fe-dub to hear of the unshipped version", || {
        let rows = lab.json(
            Some(DUB_FES[0]),
            &format!("Get-CsBackupServiceStatus -PoolFqdn {DUB} -Category CMS"),
        );
        rows.as_array()
            .into_iter()
            .flatten()
            .any(|r| r["SourcePoolFqdn"] == RED && r["PendingWhenLastHeard"].as_i64() >= Some(1))
            .then_some(())
    });
    lab.kill(RED);
    service(&lab, "Start", "REPLICA", &DUB_FES);
    service(&lab, "Start", "REPLICA", &OTHERS);
    let text = cms_failover(&lab, DUB_FES[0], "sql-dub.fabrikam.net");
    assert!(text.contains("(Disaster): Completed"), "{text}");
    assert!(
        text.contains("1 configuration version(s) committed"),
        "the failover says a version did not reach the standby: {text}"
    );
    set_sync_interval(&lab, DUB_FES[1], "00:01:22");
    // fe-red comes back. Nobody runs a cmdlet: its store steps down, is rebuilt on fe-dub's
    // line, records the version nobody else held as lost (once), and catches up.
    lab.start(RED);
    wait_standby_repaired(&lab, DUB_FES[2], DUB, RED);
    let lost = lost_in(&lab, DUB_FES[2], RED);
    assert_eq!(lost.matches("SyncInterval 71s").count(), 1, "{lost}");
    wait_all_up_to_date(&lab, DUB_FES[0]);
    for server in RED_FES.iter().chain(&OTHERS) {
        assert_eq!(sync_interval_at(&lab, server), "00:01:22", "{server}");
    }
    // Every status cmdlet agrees the standby holds everything.
    let rows = lab.json(
        Some(RED_FES[1]),
        &format!("Get-CsBackupServiceStatus -PoolFqdn {DUB} -Category CMS"),
    );
    let shipping = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["SourcePoolFqdn"] == DUB)
        .cloned()
        .unwrap_or_else(|| panic!("no CMS row from {DUB}: {rows}"));
    assert_eq!(shipping["PendingChanges"], 0, "{shipping}");
    let debug = lab.json(
        Some(RED_FES[1]),
        &format!("Debug-CsInterPoolReplication -PoolFqdn {DUB}"),
    );
    let cms = debug
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["BackupModule"] == "CentralMgmt.CMSMaster")
        .cloned()
        .unwrap_or_else(|| panic!("no CMS row: {debug}"));
    assert_eq!(cms["Mismatches"], 0, "{cms}");
    assert_eq!(cms["PrimaryVersion"], cms["BackupVersion"], "{cms}");
    // A second disaster, before anyone repaired anything by hand: fe-dub is lost and the
    // store goes back to fe-red, forward in time.
    lab.kill(DUB);
    let text = cms_failover(&lab, RED_FES[2], "sql-red.fabrikam.net");
    assert!(text.contains("(Disaster): Completed"), "{text}");
    for server in RED_FES.iter().chain(&OTHERS) {
        assert_eq!(sync_interval_at(&lab, server), "00:01:22", "{server}");
    }
    set_sync_interval(&lab, RED_FES[0], "00:01:33");
    let lost = lost_in(&lab, RED_FES[0], RED);
    assert_eq!(lost.matches("SyncInterval 71s").count(), 1, "{lost}");
    // fe-dub comes back as a standby of fe-red, having lost nothing.
    lab.start(DUB);
    wait_standby_repaired(&lab, RED_FES[1], RED, DUB);
    assert_eq!(lost_in(&lab, RED_FES[1], DUB), "[]");
    wait_all_up_to_date(&lab, RED_FES[1]);
    assert_eq!(sync_interval_at(&lab, DUB_FES[2]), "00:01:33");
    crate::eventually(10, "one writable store", || {
        (masters(&lab).len() == 1).then_some(())
    });
}

#[test]
fn when_both_pools_fail_in_turn_the_cms_keeps_every_pool_failover_and_never_reuses_an_id() {
    let lab = Lab::up_topology(&fabrikam(), &["--users", "3"], &[]);
    wait_standby_repaired(&lab, DUB_FES[0], RED, DUB);
    // fe-dub is lost first; its users fail over to fe-red, which hosts the store.
    lab.kill(DUB);
    lab.ok(
        Some(RED_FES[0]),
        &format!(
            "Set-CsEdgeServer -Identity EdgeServer:edge-dub.fabrikam.net -Registrar Registrar:{RED}"
        ),
    );
    let text = says(
        &lab,
        RED_FES[0],
        &format!("Invoke-CsPoolFailOver -PoolFqdn {DUB} -DisasterMode"),
    );
    assert!(
        text.contains("failed over to fe-red.fabrikam.net"),
        "{text}"
    );
    let first = pool_state(&lab, RED_FES[1], DUB);
    assert_eq!(first["State"], "FailedOver", "{first}");
    let first_id = first["OperationId"].as_str().unwrap().to_string();
    // fe-red's Backup Service stops, so fe-dub's store will come back behind; a change
    // during the failover reaches every replica.
    service(&lab, "Stop", "LYNCBACKUP", &RED_FES);
    set_sync_interval(&lab, RED_FES[1], "00:01:44");
    lab.start(DUB);
    wait_all_up_to_date(&lab, RED_FES[0]);
    let (role, behind) = store_of(&lab, RED_FES[0], DUB);
    let (_, head) = store_of(&lab, RED_FES[0], RED);
    assert_eq!(role, "Backup");
    assert!(behind < head, "the standby is behind ({behind} of {head})");
    let edge_version = |lab: &Lab| -> i64 {
        let rows = lab.json(Some(DUB_FES[0]), "Get-CsManagementStoreReplicationStatus");
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["ReplicaFqdn"] == OTHERS[2])
            .map(|r| r["Version"].as_i64().unwrap())
            .unwrap()
    };
    // Now fe-red is lost too. The store fails over to a standby that is behind; the
    // survivors hold the newest version, and the new store starts from it.
    lab.kill(RED);
    let what_if = says(
        &lab,
        DUB_FES[1],
        "Invoke-CsManagementServerFailover -WhatIf",
    );
    assert!(what_if.contains("Newest surviving replica"), "{what_if}");
    assert!(what_if.contains("behind"), "{what_if}");
    let text = cms_failover(&lab, DUB_FES[1], "sql-dub.fabrikam.net");
    assert!(text.contains("(Disaster): Completed"), "{text}");
    assert!(text.contains("the new store starts from it"), "{text}");
    // Nothing went back in time: the change made during the pool failover is everywhere,
    // the record that fe-dub was failed over is kept with its id, and no replica rewound.
    for server in DUB_FES.iter().chain(&OTHERS) {
        assert_eq!(sync_interval_at(&lab, server), "00:01:44", "{server}");
    }
    let kept = pool_state(&lab, DUB_FES[2], DUB);
    assert_eq!(kept["State"], "FailedOver", "{kept}");
    assert_eq!(kept["OperationId"].as_str().unwrap(), first_id, "{kept}");
    assert!(
        edge_version(&lab) >= head,
        "the Edge's replica was not rewound"
    );
    // fe-dub's users come home while fe-red is still lost, then fe-red's users fail over:
    // each operation gets an id no other had.
    let text = says(
        &lab,
        DUB_FES[0],
        &format!("Invoke-CsPoolFailBack -PoolFqdn {DUB} -DisasterMode"),
    );
    assert!(text.contains("failed back from"), "{text}");
    assert_eq!(pool_state(&lab, DUB_FES[0], DUB)["State"], "Normal");
    lab.ok(
        Some(DUB_FES[0]),
        &format!(
            "Set-CsEdgeServer -Identity EdgeServer:edge-red.fabrikam.net -Registrar Registrar:{DUB}"
        ),
    );
    lab.ok(
        Some(DUB_FES[0]),
        &format!(
            "Set-CsEdgeServer -Identity EdgeServer:edge-dub.fabrikam.net -Registrar Registrar:{DUB}"
        ),
    );
    let text = says(
        &lab,
        DUB_FES[2],
        &format!("Invoke-CsPoolFailOver -PoolFqdn {RED} -DisasterMode"),
    );
    assert!(text.contains("failed over to"), "{text}");
    let ids = operation_ids(&lab, DUB_FES[2]);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "ids repeat: {ids:?}");
    assert!(ids.len() >= 3, "{ids:?}");
    // fe-red comes back: its store becomes a standby of fe-dub's, having lost nothing
    // (every version it held had reached a survivor), and its users fail back.
    lab.start(RED);
    wait_standby_repaired(&lab, DUB_FES[1], DUB, RED);
    assert_eq!(lost_in(&lab, DUB_FES[1], RED), "[]");
    let text = says(
        &lab,
        DUB_FES[1],
        &format!("Invoke-CsPoolFailBack -PoolFqdn {RED}"),
    );
    assert!(text.contains("failed back from"), "{text}");
    for pool in [RED, DUB] {
        assert_eq!(
            pool_state(&lab, RED_FES[0], pool)["State"],
            "Normal",
            "{pool}"
        );
    }
    let ids = operation_ids(&lab, RED_FES[0]);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "ids repeat: {ids:?}");
    assert_eq!(
        sync_interval_at(&lab, "edge-red-a.fabrikam.net"),
        "00:01:44"
    );
}

#[test]
fn an_unpaired_lync_2010_store_gets_hints_that_fit_it_and_its_rebuild_is_a_whole_central_management_service()
 {
    const LEGACY: &str = "legacy.fabrikam.net";
    let mut topology = fabrikam();
    topology.deployment.cms_pool = LEGACY.into();
    // The witness may not be in the store's pool: an Edge server of another site is one
    // (and the move below must win its vote).
    topology.deployment.cms_witness = Some("edge-red-a.fabrikam.net".into());
    let lab = Lab::up_topology(&topology, &["--users", "3"], &[]);
    let files = std::path::Path::new(lab.dir()).join("exports");
    std::fs::create_dir_all(&files).unwrap();
    let config = files.join("config.zip");
    let lis = files.join("lis.zip");
    lab.ok(
        Some(RED_FES[0]),
        &format!("Export-CsConfiguration -FileName {}", config.display()),
    );
    lab.ok(
        Some(RED_FES[0]),
        &format!("Export-CsLisConfiguration -FileName {}", lis.display()),
    );
    // A change after the export: every survivor applies it, the export lacks it.
    set_sync_interval(&lab, RED_FES[1], "00:01:55");
    wait_all_up_to_date(&lab, RED_FES[0]);
    lab.kill(LEGACY);
    // -WhatIf proposes nothing that does not exist, says why, and how to rebuild.
    let what_if = says(
        &lab,
        RED_FES[0],
        "Invoke-CsManagementServerFailover -WhatIf",
    );
    for expected in [
        "LyncServer2010 pool, which cannot be paired",
        "Mode: nothing to promote",
        "Install-CsDatabase -CentralManagementDatabase -Clean -SqlServerFqdn sql-red.fabrikam.net -SqlInstanceName lync",
        "The newest surviving replica",
    ] {
        assert!(what_if.contains(expected), "{expected}: {what_if}");
    }
    assert!(!what_if.contains("would be promoted"), "{what_if}");
    assert!(!what_if.contains("(standby,"), "{what_if}");
    // The failover itself is refused with the same hint, never one to pair the pool.
    let out = lab.shell(Some(RED_FES[0]), "Invoke-CsManagementServerFailover");
    assert!(!out.status.success());
    let refusal = stderr(&out);
    assert!(
        refusal.contains("has no standby anywhere")
            && refusal.contains("cannot be paired")
            && refusal.contains("Move-CsManagementServer"),
        "{refusal}"
    );
    assert!(!refusal.contains("on a Front End of"), "{refusal}");
    // Seed 001 step 6 on fe-red.
    says(
        &lab,
        RED_FES[0],
        "Install-CsDatabase -CentralManagementDatabase -Clean -SqlServerFqdn sql-red.fabrikam.net -SqlInstanceName lync",
    );
    says(
        &lab,
        RED_FES[0],
        &format!(
            "Move-CsManagementServer -ConfigurationFileName {} -LisConfigurationFileName {} -Force",
            config.display(),
            lis.display()
        ),
    );
    let services = lab.json(
        Some(RED_FES[0]),
        &format!(
            "Get-CsWindowsService -Name MASTER -ComputerName {}",
            RED_FES[0]
        ),
    );
    let master = services
        .as_array()
        .map_or(services.clone(), |a| a[0].clone());
    assert_eq!(master["Status"], "Running", "{services}");
    crate::eventually(10, "one writable store, on fe-red", || {
        let m = masters(&lab);
        (m.len() == 1 && m[0].starts_with("red-")).then_some(())
    });
    // The old store comes back and stays fenced: one master, the rebuilt line kept.
    lab.start(LEGACY);
    set_sync_interval(&lab, "lis-a.fabrikam.net", "00:02:20");
    wait_all_up_to_date(&lab, RED_FES[2]);
    assert_eq!(masters(&lab).len(), 1);
    assert_eq!(
        sync_interval_at(&lab, "edge-dub-a.fabrikam.net"),
        "00:02:20"
    );
}

/// Issue 16's bar: a change every surviving server applied survives a disaster CMS
/// failover 20 runs of 20. Each round the standby misses the change (its Backup Service
/// is stopped), the CMS pool is lost, the store fails over to the other pool, and the old
/// pool comes back as its standby; the next round goes the other way.
#[test]
fn a_change_every_survivor_applied_survives_twenty_disaster_cms_failovers_of_twenty() {
    const ROUNDS: usize = 20;
    let lab = Lab::up_topology(&fabrikam(), &["--users", "2"], &[]);
    let pools = [
        (RED, RED_FES, "sql-red.fabrikam.net"),
        (DUB, DUB_FES, "sql-dub.fabrikam.net"),
    ];
    wait_standby_repaired(&lab, DUB_FES[0], RED, DUB);
    for round in 0..ROUNDS {
        let (lost, lost_fes, _) = pools[round % 2];
        let (keep, keep_fes, keep_sql) = pools[(round + 1) % 2];
        let value = format!("00:03:{round:02}");
        service(&lab, "Stop", "LYNCBACKUP", &lost_fes);
        set_sync_interval(&lab, lost_fes[round % 3], &value);
        for server in keep_fes.iter().chain(&OTHERS) {
            crate::eventually(10, &format!("round {round}: {server} applied it"), || {
                (sync_interval_at(&lab, server) == value).then_some(())
            });
        }
        lab.kill(lost);
        let text = cms_failover(&lab, keep_fes[round % 3], keep_sql);
        assert!(
            text.contains("(Disaster): Completed"),
            "round {round}: {text}"
        );
        assert!(
            text.contains("the new store starts from it"),
            "round {round}: the standby missed the change, a survivor had it: {text}"
        );
        for server in keep_fes.iter().chain(&OTHERS) {
            assert_eq!(
                sync_interval_at(&lab, server),
                value,
                "round {round}: {server}"
            );
        }
        lab.start(lost);
        wait_standby_repaired(&lab, keep_fes[0], keep, lost);
        assert_eq!(lost_in(&lab, keep_fes[0], lost), "[]", "round {round}");
        assert_eq!(sync_interval_at(&lab, lost_fes[0]), value, "round {round}");
    }
}

/// fabrikam names a witness (`cms_witness = lis-a`, in Lisbon). A site lost with its
/// store: the failover gets the witness's vote and says so. The witness lost too: the
/// failover promotes nothing and says why and what to do, and `-Force` (the operator
/// asserting that Redmond is down) goes on without it. Every master holds the votes it
/// needs: changes are taken before and after (after `-Force` on the lease alone, until a
/// voter answers again).
#[test]
fn with_a_witness_a_disaster_failover_needs_its_vote_or_force() {
    let lab = Lab::up_topology(&fabrikam(), &["--users", "2"], &[]);
    wait_standby_repaired(&lab, DUB_FES[0], RED, DUB);
    // The operator sees the witness and the votes the master holds (the witness gives
    // none for its first 3 s).
    let status = crate::eventually(10, "both votes granted", || {
        let status = crate::cms::cms_status(&lab, RED_FES[2]);
        assert_eq!(status["Witness"], "lis-a.fabrikam.net", "{status}");
        status["Votes"]
            .as_str()
            .is_some_and(|v| {
                v.contains("the witness lis-a.fabrikam.net: granted")
                    && v.contains("the standby store: granted")
            })
            .then_some(status)
    });
    assert!(status["VotesValidForMs"].as_i64() > Some(0), "{status}");
    set_sync_interval(&lab, RED_FES[1], "00:02:12");
    // Redmond lost: the witness's vote goes to Dublin once Redmond's has run out.
    lab.kill(RED);
    let text = cms_failover(&lab, DUB_FES[0], "sql-dub.fabrikam.net");
    assert!(text.contains("(Disaster): Completed"), "{text}");
    assert!(
        text.contains("the witness lis-a.fabrikam.net and the standby store voted for fe-dub"),
        "the failover says how it won the votes: {text}"
    );
    set_sync_interval(&lab, DUB_FES[1], "00:02:21");
    lab.start(RED);
    wait_standby_repaired(&lab, DUB_FES[0], DUB, RED);
    // Now Dublin and the witness are lost together: Redmond cannot win a majority.
    lab.kill(DUB);
    lab.kill(OTHERS[0]);
    let out = lab.shell(
        Some(RED_FES[0]),
        "Invoke-CsManagementServerFailover -BackupSqlServerFqdn sql-red.fabrikam.net -BackupSqlInstanceName lync",
    );
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        !out.status.success(),
        "promoted without the witness: {said}"
    );
    assert!(
        said.contains("the witness lis-a.fabrikam.net did not answer")
            && said.contains("Nothing was promoted")
            && said.contains("-Force"),
        "{said}"
    );
    assert!(masters(&lab).is_empty(), "{:?}", masters(&lab));
    let text = says(
        &lab,
        RED_FES[0],
        "Invoke-CsManagementServerFailover -BackupSqlServerFqdn sql-red.fabrikam.net -BackupSqlInstanceName lync -Force",
    );
    assert!(text.contains("(Disaster): Completed"), "{text}");
    assert!(
        text.contains("-Force: the witness lis-a.fabrikam.net did not answer"),
        "{text}"
    );
    // With -Force, Redmond's master writes on its lease alone while no voter answers, and
    // by the votes again once the witness is back.
    set_sync_interval(&lab, RED_FES[2], "00:03:03");
    lab.start(OTHERS[0]);
    set_sync_interval(&lab, RED_FES[1], "00:03:13");
    assert_eq!(masters(&lab).len(), 1);
    crate::eventually(10, "Redmond's change to reach every survivor", || {
        (sync_interval_at(&lab, OTHERS[0]) == "00:03:13").then_some(())
    });
}
