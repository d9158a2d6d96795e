//! Central Management store failover against a real lab: the seeds' disaster runbook with
//! the store on the lost pool (paired and unpaired), the old store fenced when it comes
//! back, and a crash of the server running the failover at every step.

use crate::failover::{add_contact, arm_crash, contacts, user_of, wait_signed_in};
use crate::lab::Lab;
use crate::{run, run_env, stderr, stdout};

const P1: &str = "pool1.contoso.com";
const P2: &str = "pool2.contoso.com";

/// A pool's failover state, asked of pool2 (pool1 is the one lost in these tests).
fn pool_state(lab: &Lab, pool: &str) -> serde_json::Value {
    lab.record(
        Some("pool2-fe1.contoso.com"),
        &format!("Get-CsPoolFailoverState -PoolFqdn {pool}"),
    )
}

/// The CMS status record.
pub(crate) fn cms_status(lab: &Lab, server: &str) -> serde_json::Value {
    lab.record(
        Some(server),
        "Get-CsManagementStoreReplicationStatus -CentralManagementStoreStatus",
    )
}

/// Asserts that `server` names a master in the pool whose servers' names start with
/// `prefix` (`pool2-`).
pub(crate) fn assert_master_in(lab: &Lab, server: &str, prefix: &str) {
    let status = cms_status(lab, server);
    assert!(
        status["ActiveMasterFqdn"]
            .as_str()
            .unwrap()
            .starts_with(prefix),
        "{status}"
    );
}

/// The servers `lab status` reports as the active master of a store that takes changes:
/// never more than one (a store being moved away keeps its master, read-only).
pub(crate) fn masters(lab: &Lab) -> Vec<String> {
    lab.status_rows()
        .iter()
        .filter(|r| r["cms_writable"] == true)
        .map(|r| r["fqdn"].as_str().unwrap().to_string())
        .collect()
}

/// The role of the store in `pool`'s Back End (`Active`, `Moving`, `Backup`) and its version.
pub(crate) fn store_of(lab: &Lab, via: &str, pool: &str) -> (String, i64) {
    let xds = cms_store_state(lab, via, pool);
    assert_eq!(xds["DatabaseName"], "xds");
    (
        xds["CentralManagementStore"].as_str().unwrap().to_string(),
        xds["CentralManagementStoreVersion"].as_i64().unwrap(),
    )
}

/// The mirror-state record of the store in `pool`'s Back End, asked of `via`.
pub(crate) fn cms_store_state(lab: &Lab, via: &str, pool: &str) -> serde_json::Value {
    let v = lab.json(
        Some(via),
        &format!("Get-CsDatabaseMirrorState -PoolFqdn {pool} -DatabaseType Centralmgmt"),
    );
    v.as_array().unwrap()[0].clone()
}

/// The versions the store in `pool`'s Back End recorded as lost.
pub(crate) fn lost_in(lab: &Lab, via: &str, pool: &str) -> String {
    cms_store_state(lab, via, pool)["LostVersions"].to_string()
}

/// Waits until the standby in `standby_pool` holds every version of the active store.
pub(crate) fn wait_standby_current(lab: &Lab, via: &str, active_pool: &str, standby_pool: &str) {
    crate::eventually(
        20,
        &format!("the standby in {standby_pool} to hold every version"),
        || {
            let (_, active) = store_of(lab, via, active_pool);
            let (mode, standby) = store_of(lab, via, standby_pool);
            (mode == "Backup" && standby >= active && active > 0).then_some(())
        },
    );
}

/// Every replica `UpToDate`, waited for.
pub(crate) fn wait_all_up_to_date(lab: &Lab, via: &str) {
    lab.wait_all_up_to_date(Some(via));
}

/// The Backup Service sync interval as one server's local replica has it.
pub(crate) fn sync_interval_at(lab: &Lab, server: &str) -> String {
    let v = lab.record(Some(server), "Get-CsBackupServiceConfiguration");
    v["SyncInterval"].as_str().unwrap().to_string()
}

pub(crate) fn set_sync_interval(lab: &Lab, server: &str, interval: &str) {
    let out = lab.shell(
        Some(server),
        &format!("Set-CsBackupServiceConfiguration -SyncInterval {interval}"),
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

/// The old store comes back: its master steps down, its store becomes the standby of the
/// new one, the changes made meanwhile are everywhere and nothing overwrote them.
pub(crate) fn old_store_comes_back_fenced(
    lab: &Lab,
    old_pool: &str,
    new_pool: &str,
    interval: &str,
) {
    let out = run(&["lab", "start", old_pool, "--dir", lab.dir()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let new_fe = format!("{}-fe1.contoso.com", new_pool.split('.').next().unwrap());
    let old_fe = format!("{}-fe1.contoso.com", old_pool.split('.').next().unwrap());
    wait_all_up_to_date(lab, &new_fe);
    let prefix = format!("{}-", new_pool.split('.').next().unwrap());
    assert_master_in(lab, &old_fe, &prefix);
    crate::eventually(10, "one writable store", || {
        (masters(lab).len() == 1).then_some(())
    });
    assert!(masters(lab)[0].starts_with(&prefix));
    assert_eq!(store_of(lab, &new_fe, old_pool).0, "Backup");
    for server in [
        "pool1-fe1.contoso.com",
        "pool1-fe2.contoso.com",
        "pool2-fe2.contoso.com",
        "edgeserver1.contoso.com",
    ] {
        assert_eq!(sync_interval_at(lab, server), interval, "{server}");
    }
    // A change through a server of the old pool reaches the new master and everyone.
    set_sync_interval(lab, &old_fe, "00:02:10");
    wait_all_up_to_date(lab, &new_fe);
    assert_eq!(sync_interval_at(lab, "edgeserver2.contoso.com"), "00:02:10");
    // The old store catches up as a standby of the new one.
    wait_standby_current(lab, &new_fe, new_pool, old_pool);
}

#[test]
fn disaster_runbook_with_the_cms_on_the_lost_pool_fails_the_store_over_first() {
    let lab = Lab::up_env(&["--users", "10"], &[]);
    let alice = user_of(&lab, P1);
    assert!(add_contact(&lab, &alice, "sip:before@contoso.com"));
    set_sync_interval(&lab, "pool2-fe1.contoso.com", "00:01:10");
    wait_standby_current(&lab, "pool2-fe1.contoso.com", P1, P2);
    // Seeds 000/001: pool1, which hosts the store, is lost.
    lab.kill(P1);
    let status = cms_status(&lab, "pool2-fe1.contoso.com");
    assert_eq!(
        status["ActiveMasterFqdn"], "",
        "the store is down: {status}"
    );
    // Out of order, the pool failover is refused, naming the step that comes first.
    lab.refused(
        Some("pool2-fe1.contoso.com"),
        "Invoke-CsPoolFailOver -PoolFqdn pool1.contoso.com -DisasterMode",
        "fail the store over first with Invoke-CsManagementServerFailover",
    );
    let text = lab.runbook(
        "pool2-fe1.contoso.com",
        "pool1-disaster-failover-with-cms.ps1",
    );
    assert!(
        text.contains("Central Management Server Pool : pool1.contoso.com"),
        "{text}"
    );
    assert!(text.contains("(Disaster): Completed"), "{text}");
    let status = cms_status(&lab, "pool2-fe2.contoso.com");
    assert!(
        status["ActiveMasterFqdn"]
            .as_str()
            .unwrap()
            .starts_with("pool2-"),
        "{status}"
    );
    assert_eq!(
        status["ActiveFileTransferAgents"],
        status["ActiveMasterFqdn"]
            .as_str()
            .map(|m| serde_json::json!([m]))
            .unwrap()
    );
    assert_eq!(pool_state(&lab, P1)["State"], "FailedOver");
    // The configuration made before the loss survived the move.
    assert_eq!(
        sync_interval_at(&lab, "edgeserver1.contoso.com"),
        "00:01:10"
    );
    // Alice is served by pool2 with her data.
    wait_signed_in(&lab, &alice, P2, "full");
    assert!(contacts(&lab, &alice).contains(&"sip:before@contoso.com".to_string()));
    // A change on the new master, then pool1 comes back.
    set_sync_interval(&lab, "pool2-fe1.contoso.com", "00:01:20");
    old_store_comes_back_fenced(&lab, P1, P2, "00:01:20");
}

#[test]
fn a_change_every_survivor_applied_survives_a_disaster_cms_failover_the_standby_missed() {
    let lab = Lab::up();
    wait_standby_current(&lab, "pool2-fe1.contoso.com", P1, P2);
    // The Backup Service of pool1 stops: the next change reaches the replicas only.
    for fe in ["pool1-fe1.contoso.com", "pool1-fe2.contoso.com"] {
        lab.ok(
            Some(fe),
            &format!("Stop-CsWindowsService -Name LYNCBACKUP -ComputerName {fe}"),
        );
    }
    set_sync_interval(&lab, "pool1-fe1.contoso.com", "00:00:50");
    crate::eventually(10, "the change on edgeserver1", || {
        (sync_interval_at(&lab, "edgeserver1.contoso.com") == "00:00:50").then_some(())
    });
    // pool2 heard pool1 say it holds a version it did not ship to the standby.
    crate::eventually(10, "pool2 to hear of the unshipped version", || {
        let rows = lab.json(
            Some("pool2-fe1.contoso.com"),
            "Get-CsBackupServiceStatus -PoolFqdn pool2.contoso.com -Category CMS | ConvertTo-Json",
        );
        rows.as_array()
            .into_iter()
            .flatten()
            .any(|r| r["SourcePoolFqdn"] == P1 && r["PendingWhenLastHeard"].as_i64() >= Some(1))
            .then_some(())
    });
    lab.kill(P1);
    // Without naming the standby, the refusal says how.
    let out = lab.shell(
        Some("pool2-fe1.contoso.com"),
        "Invoke-CsManagementServerFailover",
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out)
            .contains("-BackupSqlServerFqdn pool2-be.contoso.com -BackupSqlInstanceName rtc"),
        "{}",
        stderr(&out)
    );
    let out = run(&[
        "shell",
        "--lab",
        lab.dir(),
        "--server",
        "pool2-fe1.contoso.com",
        "-c",
        "Invoke-CsManagementServerFailover -BackupSqlServerFqdn pool2-be.contoso.com -BackupSqlInstanceName rtc",
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    // The standby missed the change; the surviving replicas had it, and the new store
    // starts from the newest of them.
    assert!(text.contains("replica holds version"), "{text}");
    assert!(
        text.contains("1 configuration version(s) committed"),
        "{text}"
    );
    for server in [
        "pool2-fe1.contoso.com",
        "pool2-fe2.contoso.com",
        "edgeserver1.contoso.com",
        "edgeserver2.contoso.com",
    ] {
        assert_eq!(sync_interval_at(&lab, server), "00:00:50", "{server}");
    }
    // pool1 comes back: its master steps down, nothing of it is lost, and its store
    // becomes a working standby of the new one without an operator.
    let out = run(&["lab", "start", P1, "--dir", lab.dir()]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_all_up_to_date(&lab, "pool2-fe1.contoso.com");
    crate::eventually(10, "one writable store", || {
        (masters(&lab).len() == 1).then_some(())
    });
    assert_eq!(sync_interval_at(&lab, "pool1-fe1.contoso.com"), "00:00:50");
    let lost = lost_in(&lab, "pool1-fe2.contoso.com", P1);
    assert_eq!(lost, "[]");
    wait_standby_current(&lab, "pool2-fe1.contoso.com", P2, P1);
}

#[test]
fn unpaired_path_rebuilds_the_store_from_an_export_and_lists_where_bootstrapper_runs() {
    unpaired_path_on(&Lab::up());
}

/// The seeds' unpaired-CMS runbook on `lab` (contoso, loopback or hosts): the store
/// rebuilt in pool2 from an export, then failed back.
pub(crate) fn unpaired_path_on(lab: &Lab) {
    let files = std::path::Path::new(lab.dir()).join("exports");
    std::fs::create_dir_all(&files).unwrap();
    let config = files.join("CsConfigurationFile.zip");
    let lis = files.join("CsLisConfigurationFile.zip");
    for (cmdlet, file) in [
        ("Export-CsConfiguration", &config),
        ("Export-CsLisConfiguration", &lis),
    ] {
        lab.ok(None, &format!("{cmdlet} -FileName {}", file.display()));
    }
    set_sync_interval(lab, "pool1-fe1.contoso.com", "00:01:30");
    lab.kill(P1);
    // The seed's runbook with its c:\ files where this test saved them.
    let text =
        std::fs::read_to_string("../../examples/runbooks/pool1-disaster-failover-unpaired-cms.ps1")
            .or_else(|_| {
                std::fs::read_to_string(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../../examples/runbooks/pool1-disaster-failover-unpaired-cms.ps1"
                ))
            })
            .unwrap()
            .replace("c:\\", &format!("{}/", files.display()));
    let script = files.join("runbook.ps1");
    std::fs::write(&script, text).unwrap();
    let out = run(&[
        "shell",
        "--lab",
        lab.dir(),
        "--server",
        "pool2-fe1.contoso.com",
        "--file",
        script.to_str().unwrap(),
    ]);
    let printed = stdout(&out);
    assert!(out.status.success(), "{printed}{}", stderr(&out));
    assert!(
        printed.contains("Installed an empty Central Management database in pool2-be.contoso.com"),
        "{printed}"
    );
    assert!(
        printed.contains("Run Bootstrapper /Setup on these computers"),
        "{printed}"
    );
    assert!(
        printed.contains("pool2-fe2.contoso.com (installs"),
        "{printed}"
    );
    let status = cms_status(lab, "pool2-fe2.contoso.com");
    assert_eq!(
        status["ActiveMasterFqdn"], "pool2-fe1.contoso.com",
        "{status}"
    );
    // The export was taken before the last change: the store holds what the file held.
    assert_eq!(sync_interval_at(lab, "edgeserver2.contoso.com"), "00:02:00");
    let out = lab.shell(Some("pool2-fe2.contoso.com"), "Bootstrapper /Setup");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Central Management services"),
        "{}",
        stdout(&out)
    );
    assert_eq!(pool_state(lab, P1)["State"], "FailedOver");
    set_sync_interval(lab, "pool2-fe2.contoso.com", "00:01:40");
    old_store_comes_back_fenced(lab, P1, P2, "00:01:40");
    // The old store had gone on past the export (00:01:30): that version is recorded as
    // lost, and its copy was rebuilt from the new line rather than kept beside it.
    let lost = lost_in(lab, "pool1-fe1.contoso.com", P1);
    assert!(lost.contains("Set-CsBackupServiceConfiguration"), "{lost}");
    // Failing the store back to the old pool goes forward, never back to what the old
    // store held: the newest configuration (00:02:10, set as it came back) and the pool
    // failover record are kept.
    let out = lab.shell(
        Some("pool1-fe1.contoso.com"),
        "Invoke-CsManagementServerFailover",
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("(Planned): Completed"), "{text}");
    for server in ["edgeserver1.contoso.com", "pool2-fe1.contoso.com"] {
        crate::eventually(
            10,
            &format!("{server} to keep the newest configuration"),
            || (sync_interval_at(lab, server) == "00:02:10").then_some(()),
        );
    }
    assert_eq!(pool_state(lab, P1)["State"], "FailedOver");
}

#[test]
fn a_crash_of_the_server_running_a_cms_failover_at_every_step_is_resumed_or_restored() {
    let lab = Lab::up_env(&[], &[("TANDEM_DR_FAULTS", "1")]);
    // Every step twice: a crash before it, and a crash after its work and before its
    // record (the step runs again on the resume, and must be safe to).
    let crashes: Vec<(&str, &str)> = dr::cms::CMS_STEPS
        .iter()
        .flat_map(|s| {
            [
                (dr::StepName::as_str(*s), "before"),
                (dr::StepName::as_str(*s), "after"),
            ]
        })
        .collect();
    let mut expected = "00:02:00".to_string();
    for (i, (step, when)) in crashes.iter().enumerate() {
        // The store is in `from`; the failover moves it to `to`, run on to's fe1.
        let status = cms_status(&lab, "pool1-fe2.contoso.com");
        let master = status["ActiveMasterFqdn"].as_str().unwrap().to_string();
        let (from, to) = if master.starts_with("pool1") {
            (P1, P2)
        } else {
            (P2, P1)
        };
        let runner = format!("{}-fe1.contoso.com", &to[..5]);
        let witness = format!("{}-fe2.contoso.com", &from[..5]);
        wait_standby_current(&lab, &witness, from, to);
        arm_crash(&lab, &runner, step, when);
        let out = lab.shell(Some(&runner), "Invoke-CsManagementServerFailover");
        assert!(
            !out.status.success(),
            "the runner should have crashed {when} {step}"
        );
        let log = std::fs::read_to_string(format!("{}/logs/{runner}.log", lab.dir())).unwrap();
        assert!(
            log.contains(&format!("crashes {when} step {step}")),
            "{runner} did not crash {when} {step}"
        );
        assert!(
            masters(&lab).len() <= 1,
            "two writable stores after a crash {when} {step}"
        );
        let out = run_env(
            &["lab", "start", &runner, "--dir", lab.dir()],
            &[("TANDEM_DR_FAULTS", "1")],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        if *step == "Drain" && *when == "before" {
            // Frozen: the old store refuses changes with the documented text.
            let out = lab.shell(
                Some(&witness),
                "Set-CsBackupServiceConfiguration -SyncInterval 00:03:00",
            );
            assert!(!out.status.success());
            assert!(
                stderr(&out).contains("###50020:XDSForceReplication"),
                "{}",
                stderr(&out)
            );
        }
        // Each step once by running the cmdlet again (resume), once by -Restore on the
        // runner's pool, then on the old pool; before and after take turns.
        if (i + i / 2) % 2 == 0 {
            let out = lab.shell(Some(&runner), "Invoke-CsManagementServerFailover");
            assert!(
                out.status.success(),
                "resume after a crash {when} {step}: {}{}",
                stdout(&out),
                stderr(&out)
            );
        } else {
            for server in [runner.as_str(), witness.as_str()] {
                let out = lab.shell(Some(server), "Invoke-CsManagementServerFailover -Restore");
                assert!(
                    out.status.success(),
                    "-Restore on {server} after a crash {when} {step}: {}{}",
                    stdout(&out),
                    stderr(&out)
                );
            }
        }
        // One writable store, which takes a change every server gets.
        crate::eventually(15, &format!("a single master after {when} {step}"), || {
            (masters(&lab).len() == 1).then_some(())
        });
        let before = expected.clone();
        expected = format!("00:{:02}:{:02}", 1 + i % 2, 10 + i);
        assert_ne!(before, expected);
        set_sync_interval(&lab, &witness, &expected);
        wait_all_up_to_date(&lab, &witness);
        for server in [
            "pool1-fe1.contoso.com",
            "pool2-fe2.contoso.com",
            "edgeserver1.contoso.com",
        ] {
            assert_eq!(
                sync_interval_at(&lab, server),
                expected,
                "{server} after {step}"
            );
        }
    }
}

#[test]
fn restore_never_unfreezes_the_old_store_without_word_from_the_target() {
    let lab = Lab::up_env(&[], &[("TANDEM_DR_FAULTS", "1")]);
    wait_standby_current(&lab, "pool2-fe1.contoso.com", P1, P2);
    // The failover froze pool1's store and stopped before the promotion.
    arm_crash(&lab, "pool2-fe1.contoso.com", "Promote", "before");
    let out = lab.shell(
        Some("pool2-fe1.contoso.com"),
        "Invoke-CsManagementServerFailover",
    );
    assert!(!out.status.success());
    lab.kill(P2);
    // pool2 cannot say whether it took over: pool1 stays read-only.
    let out = lab.shell(
        Some("pool1-fe1.contoso.com"),
        "Invoke-CsManagementServerFailover -Restore",
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not answer"), "{}", stderr(&out));
    let out = lab.shell(
        Some("pool1-fe1.contoso.com"),
        "Set-CsBackupServiceConfiguration -SyncInterval 00:03:00",
    );
    assert!(stderr(&out).contains("###50020"), "{}", stderr(&out));
    // On the wire the documented refusal is a conflict (409), from the master and from a
    // server that passes the change on, never a server error.
    for server in ["pool1-fe1.contoso.com", "pool1-fe2.contoso.com"] {
        let (status, reply) = lab.invoke_http(
            server,
            "Set-CsBackupServiceConfiguration",
            serde_json::json!({ "SyncInterval": "00:03:00" }),
        );
        assert_eq!(status, 409, "{server}: {reply}");
        assert!(
            reply["error"]
                .as_str()
                .unwrap_or_default()
                .contains("###50020"),
            "{reply}"
        );
    }
    // pool2 back: -Restore there cancels the failover and unfreezes pool1.
    let out = run(&["lab", "start", P2, "--dir", lab.dir()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = lab.shell(
        Some("pool2-fe1.contoso.com"),
        "Invoke-CsManagementServerFailover -Restore",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("was cancelled"), "{}", stdout(&out));
    set_sync_interval(&lab, "pool1-fe1.contoso.com", "00:03:00");
    let m = masters(&lab);
    assert!(m.len() == 1 && m[0].starts_with("pool1-"), "{m:?}");
    // The cancelled failover is not resumed as if pool1 were still frozen: running the
    // cmdlet again starts a new one, which freezes and drains again.
    let out = lab.shell(
        Some("pool2-fe1.contoso.com"),
        "Invoke-CsManagementServerFailover",
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    wait_all_up_to_date(&lab, "pool2-fe1.contoso.com");
    assert_eq!(
        sync_interval_at(&lab, "edgeserver2.contoso.com"),
        "00:03:00"
    );
}

#[test]
fn a_normal_move_takes_the_old_stores_own_content_and_loses_nothing() {
    let lab = Lab::up();
    set_sync_interval(&lab, "pool1-fe1.contoso.com", "00:01:50");
    lab.ok(
        Some("pool2-fe1.contoso.com"),
        "Install-CsDatabase -CentralManagementDatabase -Clean -SqlServerFqdn pool2-be.contoso.com -SqlInstanceName rtc",
    );
    let out = lab.shell(Some("pool2-fe1.contoso.com"), "Move-CsManagementServer");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("is now inactive"), "{}", stdout(&out));
    wait_all_up_to_date(&lab, "pool2-fe1.contoso.com");
    assert_eq!(masters(&lab), vec!["pool2-fe1.contoso.com".to_string()]);
    assert_eq!(
        sync_interval_at(&lab, "edgeserver1.contoso.com"),
        "00:01:50"
    );
    let xds = cms_store_state(&lab, "pool1-fe1.contoso.com", P1);
    assert_eq!(xds["CentralManagementStore"], "Backup");
    assert_eq!(xds["LostVersions"], serde_json::json!([]), "{xds}");
}

#[test]
fn a_cms_failover_its_runner_left_after_the_promotion_is_finished_by_the_reconciler() {
    let lab = Lab::up_env(
        &["--reconcile-after-secs", "1"],
        &[("TANDEM_DR_FAULTS", "1")],
    );
    wait_standby_current(&lab, "pool2-fe1.contoso.com", P1, P2);
    // The runner dies right after promoting the standby, and stays dead.
    arm_crash(&lab, "pool2-fe1.contoso.com", "Promote", "after");
    let out = lab.shell(
        Some("pool2-fe1.contoso.com"),
        "Invoke-CsManagementServerFailover",
    );
    assert!(!out.status.success());
    // The other Front End of pool2 takes the promoted store's lease and finishes the move:
    // the topology names pool2, the old store is its standby, and a change reaches every
    // server that answers.
    crate::eventually(30, "pool2-fe2 to master the store in pool2", || {
        (masters(&lab) == ["pool2-fe2.contoso.com"]).then_some(())
    });
    crate::eventually(30, "the old store to become the standby", || {
        (store_of(&lab, "pool2-fe2.contoso.com", P1).0 == "Backup").then_some(())
    });
    crate::eventually(30, "the reconciler to finish the failover", || {
        std::fs::read_to_string(format!("{}/logs/pool2-fe2.contoso.com.log", lab.dir()))
            .unwrap_or_default()
            .contains("reconciler finished the CMS failover")
            .then_some(())
    });
    // The record says so too: nothing is left to resume.
    let out = lab.shell(
        Some("pool2-fe2.contoso.com"),
        "Invoke-CsManagementServerFailover -WhatIf",
    );
    assert!(
        !stdout(&out).contains("An unfinished failover"),
        "{}",
        stdout(&out)
    );
    set_sync_interval(&lab, "pool1-fe2.contoso.com", "00:01:30");
    crate::eventually(20, "every live replica to be up to date", || {
        let rows = lab.json(
            Some("pool1-fe2.contoso.com"),
            "Get-CsManagementStoreReplicationStatus",
        );
        rows.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["ReplicaFqdn"] != "pool2-fe1.contoso.com")
            .all(|r| r["UpToDate"] == true)
            .then_some(())
    });
    assert_eq!(
        sync_interval_at(&lab, "edgeserver1.contoso.com"),
        "00:01:30"
    );
}
