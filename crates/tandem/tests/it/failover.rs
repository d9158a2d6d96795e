//! Pool failover and failback against a real lab: the runbooks of `examples/runbooks/`,
//! checked with SIP sign-ins and the user services; a crash of the server running the
//! operation at every step; counts of acknowledged writes before and after.

use crate::lab::Lab;
use crate::{run, run_env, stderr, stdout};

/// The first user of each pool in the lab's users.json.
pub(crate) fn user_of(lab: &Lab, pool: &str) -> String {
    lab.users()
        .iter()
        .find(|u| u["home_pool"] == pool)
        .map(|u| u["sip_address"].as_str().unwrap().to_string())
        .unwrap()
}

/// `tandem client` as `user`: its options (`--via FE`), then the command.
pub(crate) fn client(lab: &Lab, user: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["client", "--lab", lab.dir(), "--user", user];
    all.extend_from_slice(args);
    run(&all)
}

/// Signs in; returns the serving pool and the mode the registrar answered.
pub(crate) fn sign_in(lab: &Lab, user: &str) -> (String, String) {
    let out = client(lab, user, &["sign-in"]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "sign-in of {user}: {text}{}",
        stderr(&out)
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("signed in"))
        .unwrap_or_else(|| panic!("{text}"));
    let pool = line
        .split(" at ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    let mode = line
        .rsplit(" in ")
        .next()
        .unwrap()
        .trim_end_matches(" mode");
    (pool.to_string(), mode.to_string())
}

pub(crate) fn add_contact(lab: &Lab, user: &str, contact: &str) -> bool {
    let out = client(lab, user, &["contacts", "add", contact]);
    out.status.success() && stdout(&out).contains("\"saved\":true")
}

/// Adds each contact, every one acknowledged.
pub(crate) fn add_contacts(lab: &Lab, user: &str, contacts: impl IntoIterator<Item = String>) {
    for contact in contacts {
        assert!(add_contact(lab, user, &contact), "{contact}");
    }
}

pub(crate) fn contacts(lab: &Lab, user: &str) -> Vec<String> {
    contacts_via(lab, user, &[])
}

/// The same, with options of `tandem client` (`--via FE`).
pub(crate) fn contacts_via(lab: &Lab, user: &str, options: &[&str]) -> Vec<String> {
    let out = client(lab, user, &[options, &["contacts"]].concat());
    assert!(out.status.success(), "contacts of {user}: {}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| c["sip_address"].as_str().unwrap().to_string())
        .collect()
}

fn state(lab: &Lab, pool: &str) -> serde_json::Value {
    let v = lab.json(None, &format!("Get-CsPoolFailoverState -PoolFqdn {pool}"));
    v.as_array().map_or(v.clone(), |a| a[0].clone())
}

fn operation(lab: &Lab, server: Option<&str>, id: &str) -> serde_json::Value {
    let v = lab.json(
        server,
        &format!("Get-CsDisasterRecoveryOperation -Identity {id}"),
    );
    v.as_array().map_or(v.clone(), |a| a[0].clone())
}

/// Waits until the pool's registrar serves `user` in `mode` at `pool` (clients retry).
pub(crate) fn wait_signed_in(lab: &Lab, user: &str, pool: &str, mode: &str) {
    crate::eventually(
        20,
        &format!("{user} signed in at {pool} in {mode} mode"),
        || (sign_in(lab, user) == (pool.to_string(), mode.to_string())).then_some(()),
    );
}

const P1: &str = "pool1.contoso.com";
const P2: &str = "pool2.contoso.com";

#[test]
fn planned_failover_and_failback_runbooks_move_users_and_lose_no_acknowledged_write() {
    let lab = Lab::up_with(&["--users", "20"]);
    let alice = user_of(&lab, P1);
    assert_eq!(sign_in(&lab, &alice), (P1.into(), "full".into()));
    // The failover is refused while Edge pool 1 uses pool1 as its next hop.
    let out = lab.shell(None, "Invoke-CsPoolFailOver -PoolFqdn pool1.contoso.com");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "This Front-end pool \"pool1.contoso.com\" is specified in topology as the next hop for the Edge server. \
             Failing over this pool may cause External access/Federation/Split-domain/XMPP features to stop working. \
             Please use Topology Builder to change the Edge internal next hop setting to point to a different \
             Front-end pool,  before you proceed."
        ),
        "{}",
        stderr(&out)
    );
    // A writer keeps saving contacts while the runbook runs; every acknowledged one counts.
    let writer = {
        let dir = lab.dir().to_string();
        let alice = alice.clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let saved = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (flag, count) = (stop.clone(), saved.clone());
        let handle = std::thread::spawn(move || {
            let mut acked = vec![];
            let mut i = 0;
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                i += 1;
                let c = format!("sip:planned{i}@contoso.com");
                let out = run(&[
                    "client", "--lab", &dir, "--user", &alice, "contacts", "add", &c,
                ]);
                if out.status.success() && stdout(&out).contains("\"saved\":true") {
                    acked.push(c);
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
            acked
        });
        (stop, handle, saved)
    };
    let saved = |w: &(_, _, std::sync::Arc<std::sync::atomic::AtomicUsize>)| {
        w.2.load(std::sync::atomic::Ordering::SeqCst)
    };
    // The writer is at work before the runbook starts.
    crate::eventually(20, "the writer's first saved contact", || {
        (saved(&writer) > 0).then_some(())
    });
    let out = lab.runbook("pool2-fe1.contoso.com", "pool1-planned-failover.ps1");
    assert!(out.contains("VERBOSE: Drain Done"), "{out}");
    assert!(
        out.contains("-FlushStorageService: nothing was held back"),
        "{out}"
    );
    assert!(out.contains("Data lost: nothing"), "{out}");
    // And saves at least once more, at the backup pool, after it.
    let before = saved(&writer);
    crate::eventually(20, "a contact saved after the failover", || {
        (saved(&writer) > before).then_some(())
    });
    writer.0.store(true, std::sync::atomic::Ordering::SeqCst);
    let acked = writer.1.join().unwrap();
    assert!(acked.len() >= 2, "the writer saved too little: {acked:?}");
    let s = state(&lab, P1);
    assert_eq!(
        (s["State"].as_str(), s["ServingPoolFqdn"].as_str()),
        (Some("FailedOver"), Some(P2))
    );
    // Users sign in again at the backup pool, in full mode, with all their data.
    wait_signed_in(&lab, &alice, P2, "full");
    let during = contacts(&lab, &alice);
    for c in &acked {
        assert!(
            during.contains(c),
            "{c} was acknowledged before the failover and is missing at pool2"
        );
    }
    assert!(add_contact(&lab, &alice, "sip:during-failover@contoso.com"));
    // pool2 users are not affected, and pool2 cannot be failed over now (seed 004).
    let bob = user_of(&lab, P2);
    assert_eq!(sign_in(&lab, &bob), (P2.into(), "full".into()));
    let out = lab.shell(None, "Invoke-CsPoolFailOver -PoolFqdn pool2.contoso.com");
    assert!(
        stderr(&out).contains("Invoke-CsPoolFailBack -PoolFqdn pool1.contoso.com"),
        "{}",
        stderr(&out)
    );
    let out = lab.shell(None, "Invoke-CsPoolFailOver -PoolFqdn pool1.contoso.com");
    assert!(
        stderr(&out).contains("already failed over"),
        "{}",
        stderr(&out)
    );

    lab.runbook("pool2-fe1.contoso.com", "pool1-planned-failback.ps1");
    wait_signed_in(&lab, &alice, P1, "full");
    let after = contacts(&lab, &alice);
    for c in acked
        .iter()
        .chain([&"sip:during-failover@contoso.com".to_string()])
    {
        assert!(after.contains(c), "{c} was lost by the failback");
    }
    let ops = lab.json(None, "Get-CsDisasterRecoveryOperation");
    let ops = ops.as_array().unwrap();
    assert_eq!(ops.len(), 2);
    for op in ops {
        assert_eq!(op["State"], "Completed", "{op}");
        assert_eq!(op["LostChanges"], 0, "{op}");
    }
    let s = state(&lab, P1);
    assert_eq!(s["State"], "Normal");
}

/// Sends `text` from `from` to `to` until it is delivered (the recipient's client may
/// still be signing in again); returns how many attempts it took.
fn send_until_delivered(lab: &Lab, from: &str, to: &str, text: &str) -> usize {
    let mut attempts = 0;
    crate::eventually(30, &format!("{text:?} delivered to {to}"), || {
        attempts += 1;
        let out = client(lab, from, &["send", "--to", to, text]);
        out.status.success().then_some(())
    });
    attempts
}

#[test]
fn a_signed_in_client_is_told_to_sign_in_at_the_backup_pool_and_back_and_keeps_its_messages() {
    let lab = Lab::up_with(&["--users", "4"]);
    let (alice, bob) = (user_of(&lab, P1), user_of(&lab, P2));
    // Alice's client stays signed in at pool1 through both operations.
    let listener = lab.listen(&alice, 3, 120);
    send_until_delivered(&lab, &bob, &alice, "before the failover");
    let out = lab.runbook("pool2-fe1.contoso.com", "pool1-planned-failover.ps1");
    assert!(
        out.contains("endpoints told to sign in at pool2.contoso.com"),
        "{out}"
    );
    // pool1 signed her out and named pool2; her client signed in there on its own.
    send_until_delivered(&lab, &bob, &alice, "after the failover");
    lab.runbook("pool2-fe1.contoso.com", "pool1-planned-failback.ps1");
    send_until_delivered(&lab, &bob, &alice, "after the failback");
    let out = listener.wait_with_output().unwrap();
    let said = stdout(&out);
    assert!(out.status.success(), "{said}{}", stderr(&out));
    let expect = [
        format!("signed in {alice} at {P1}"),
        "message from sip:".to_string(),
        format!(
            "signed out by {P1} (deregistered;event=preferred-registrar-change); signing in again at {P2}"
        ),
        format!("signed in {alice} at {P2}"),
        ": after the failover".to_string(),
        format!(
            "signed out by {P2} (deregistered;event=preferred-registrar-change); signing in again at {P1}"
        ),
        format!("signed in {alice} at {P1}"),
        ": after the failback".to_string(),
    ];
    // In this order, each in full mode.
    let mut rest = said.as_str();
    for e in &expect {
        let at = rest
            .find(e.as_str())
            .unwrap_or_else(|| panic!("{e:?} missing (in order) from:\n{said}"));
        rest = &rest[at + e.len()..];
    }
    for line in said.lines().filter(|l| l.starts_with("signed in")) {
        assert!(line.ends_with("in full mode"), "{said}");
    }
}

/// Waits until `pool`'s Backup Service shows `changes` of its own waiting to ship.
fn wait_pending(lab: &Lab, pool: &str, changes: i64) {
    let fe = format!("{}-fe1.contoso.com", pool.split('.').next().unwrap());
    crate::eventually(10, &format!("{changes} changes pending on {pool}"), || {
        let rows = lab.json(
            Some(&fe),
            &format!("Get-CsBackupServiceStatus -PoolFqdn {pool} | ConvertTo-Json"),
        );
        let pending: i64 = rows
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["SourcePoolFqdn"] == pool)
            .filter_map(|r| r["PendingChanges"].as_i64())
            .sum();
        (pending == changes).then_some(())
    });
}

/// Waits until both Front Ends of `pool` last heard `source` report `changes` of its
/// users' changes not yet shipped to them (what a disaster failover reports at once).
pub(crate) fn wait_heard(lab: &Lab, pool: &str, source: &str, changes: i64) {
    let short = pool.split('.').next().unwrap();
    for fe in [
        format!("{short}-fe1.contoso.com"),
        format!("{short}-fe2.contoso.com"),
    ] {
        crate::eventually(10, &format!("{fe} to hear {changes} unshipped"), || {
            let rows = lab.json(
                Some(&fe),
                &format!(
                    "Get-CsBackupServiceStatus -PoolFqdn {pool} -Category UserData | ConvertTo-Json"
                ),
            );
            let heard: i64 = rows
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["SourcePoolFqdn"] == source)
                .filter_map(|r| r["PendingWhenLastHeard"].as_i64())
                .sum();
            (heard == changes).then_some(())
        });
    }
}

#[test]
fn disaster_failover_of_the_pool_without_the_cms_reports_exactly_the_lost_writes() {
    let lab = Lab::up_with(&["--users", "10"]);
    let bob = user_of(&lab, P2);
    add_contacts(
        &lab,
        &bob,
        (0..3).map(|i| format!("sip:shipped{i}@contoso.com")),
    );
    let out = lab.shell(
        None,
        "Invoke-CsStorageServiceFlush -PoolFqdn pool2.contoso.com -FlushType FullFlush",
    );
    assert!(
        stdout(&out).contains("0 changes are still waiting"),
        "{}",
        stdout(&out)
    );
    // pool2's Backup Service stops: what is written now never reaches pool1.
    for fe in ["pool2-fe1.contoso.com", "pool2-fe2.contoso.com"] {
        lab.ok(
            None,
            &format!("Stop-CsWindowsService -Name LYNCBACKUP -ComputerName {fe}"),
        );
    }
    let mut unshipped = vec![];
    for i in 0..4 {
        let c = format!("sip:unshipped{i}@contoso.com");
        assert!(add_contact(&lab, &bob, &c));
        unshipped.push(c);
    }
    // A meeting with content: the content is the first change of its module
    // (ConfServices.DataConf) pool2 ever made, so pool1 never heard of that module.
    let out = client(
        &lab,
        &bob,
        &[
            "meetings",
            "add",
            "lost",
            "--subject",
            "Lost",
            "--start",
            "2026-12-01T10:00Z",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let deck = std::path::Path::new(lab.dir()).join("deck.pptx");
    std::fs::write(&deck, b"slides that never left pool2").unwrap();
    let out = client(&lab, &bob, &["upload", "lost", deck.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The four contacts, the meeting and its content.
    let unshipped_changes = unshipped.len() as i64 + 2;
    // pool2's status shows them waiting, and pool1 has heard so.
    wait_pending(&lab, P2, unshipped_changes);
    wait_heard(&lab, P1, P2, unshipped_changes);
    lab.kill(P2);
    // Without -DisasterMode the failover says to use it.
    edgepool2_next_hop_to_pool1(&lab, Some("pool1-fe1.contoso.com"));
    let out = lab.shell(
        Some("pool1-fe1.contoso.com"),
        "Invoke-CsPoolFailOver -PoolFqdn pool2.contoso.com",
    );
    assert!(stderr(&out).contains("-DisasterMode"), "{}", stderr(&out));
    // -WhatIf shows what pool2 last reported unshipped, and changes nothing.
    let out = lab.shell(
        Some("pool1-fe1.contoso.com"),
        "Invoke-CsPoolFailOver -PoolFqdn pool2.contoso.com -DisasterMode -WhatIf",
    );
    assert!(
        stdout(&out).contains("it had 6 changes of 1 users not yet shipped"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(state(&lab, P2)["State"], "Normal");

    let out = lab.runbook("pool1-fe1.contoso.com", "pool2-disaster-failover.ps1");
    assert!(out.contains("counted exactly by"), "{out}");
    // What pool2 last reported unshipped is reported at once, as a lower bound.
    assert!(out.contains("at least 6 changes of 1 users"), "{out}");
    let failover = operation(&lab, Some("pool1-fe2.contoso.com"), "1");
    assert_eq!(failover["LostChanges"], unshipped_changes, "{failover}");
    assert_eq!(failover["LossIsExact"], false, "{failover}");
    assert_eq!(failover["LostUsers"], serde_json::json!([bob.clone()]));
    wait_signed_in(&lab, &bob, P1, "full");
    let at_pool1 = contacts(&lab, &bob);
    for i in 0..3 {
        assert!(at_pool1.contains(&format!("sip:shipped{i}@contoso.com")));
    }
    let lost: Vec<_> = unshipped.iter().filter(|c| !at_pool1.contains(c)).collect();
    assert_eq!(lost.len(), unshipped.len(), "{at_pool1:?}");
    assert!(add_contact(&lab, &bob, "sip:made-on-pool1@contoso.com"));

    // pool2 comes back; the failback counts the lost writes from pool2's own log.
    let out = run(&["lab", "start", P2, "--dir", lab.dir()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = lab.runbook("pool1-fe1.contoso.com", "pool2-disaster-failback.ps1");
    // The failback's summary repeats what its Reconcile step counted.
    assert!(
        said.contains(&format!(
            "Data lost by this failback: nothing. The disaster failover it undoes (operation 1) lost {unshipped_changes} changes of 1 users"
        )),
        "{said}"
    );
    let failover = operation(&lab, None, "1");
    assert_eq!(failover["Mode"], "Disaster");
    assert_eq!(lost.len(), 4);
    assert_eq!(failover["LostChanges"], unshipped_changes, "{failover}");
    assert_eq!(failover["LossIsExact"], true);
    // The range said at once contains what the failback counted.
    let range: Vec<i64> = failover["LossEstimatedAtOnce"]
        .as_str()
        .unwrap()
        .split(" to ")
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(
        range[0] <= unshipped_changes && unshipped_changes <= range[1],
        "{failover}"
    );
    assert_eq!(failover["LostUsers"], serde_json::json!([bob.clone()]));
    wait_signed_in(&lab, &bob, P2, "full");
    let back = contacts(&lab, &bob);
    assert!(
        back.contains(&"sip:made-on-pool1@contoso.com".to_string()),
        "{back:?}"
    );
    for c in &unshipped {
        assert!(
            !back.contains(c),
            "{c} was reported lost but is back: {back:?}"
        );
    }
}

#[test]
fn seed_004_sequence_runs_in_the_documented_order() {
    let lab = Lab::up_with(&["--users", "10"]);
    let (alice, bob) = (user_of(&lab, P1), user_of(&lab, P2));
    assert!(add_contact(&lab, &bob, "sip:kept@contoso.com"));
    let out = lab.runbook("pool1-fe2.contoso.com", "seed-004-p1-p2.ps1");
    assert!(out.contains("FailedOver"), "{out}");
    let ops = lab.json(None, "Get-CsDisasterRecoveryOperation");
    let kinds: Vec<_> = ops
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            format!(
                "{} {}",
                o["Operation"].as_str().unwrap(),
                o["PoolFqdn"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "FailOver pool1.contoso.com",
            "FailBack pool1.contoso.com",
            "FailOver pool2.contoso.com",
            "FailBack pool2.contoso.com"
        ]
    );
    assert_eq!(sign_in(&lab, &alice), (P1.into(), "full".into()));
    wait_signed_in(&lab, &bob, P2, "full");
    assert!(contacts(&lab, &bob).contains(&"sip:kept@contoso.com".to_string()));
    // -WhatIf changes nothing and shows the plan.
    let out = lab.shell(
        None,
        "Invoke-CsPoolFailOver -PoolFqdn pool1.contoso.com -WhatIf",
    );
    assert!(
        stderr(&out).contains("next hop"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let out = lab.shell(
        None,
        "Set-CsEdgeServer -Identity EdgeServer:edgepool1.contoso.com -Registrar Registrar:pool2.contoso.com",
    );
    assert!(out.status.success());
    let out = lab.shell(
        None,
        "Invoke-CsPoolFailOver -PoolFqdn pool1.contoso.com -WhatIf",
    );
    let plan = stdout(&out);
    assert!(
        plan.contains("1. Freeze") && plan.contains("Data at risk: none"),
        "{plan}"
    );
    assert_eq!(state(&lab, P1)["State"], "Normal");
}

/// Arms the test hook of one server: it exits when the engine reaches `step`.
pub(crate) fn arm_crash(lab: &Lab, server: &str, step: &str, when: &str) {
    arm(
        lab,
        server,
        serde_json::json!({ "step": step, "when": when }),
    );
}

/// Arms the test hook of one server with a fault point (see `api::faults::FaultPoint`).
fn arm(lab: &Lab, server: &str, point: serde_json::Value) {
    let (status, reply) = lab.post(server, api::paths::DR_FAULT, &point);
    assert!(
        (200..300).contains(&status),
        "arming {server}: {status} {reply}"
    );
}

#[test]
fn a_crash_of_the_server_running_the_operation_at_every_step_resumes_cleanly() {
    let lab = Lab::up_env(&["--users", "10"], &[("TANDEM_DR_FAULTS", "1")]);
    let bob = user_of(&lab, P2);
    let mut acked = vec![];
    for i in 0..3 {
        let c = format!("sip:before{i}@contoso.com");
        assert!(add_contact(&lab, &bob, &c));
        acked.push(c);
    }
    edgepool2_next_hop_to_pool1(&lab, None);
    let runner = "pool2-fe1.contoso.com";
    let cmdlets = ["Invoke-CsPoolFailOver", "Invoke-CsPoolFailBack"];
    let failover = [
        "Freeze", "Drain", "Verify", "Promote", "Switch", "Apply", "SignOut",
    ];
    let failback = [
        "Freeze", "Drain", "Verify", "Promote", "Switch", "Apply", "SignOut", "Retire",
    ];
    // Alternate so that each resumed operation leaves the pool where the next one starts.
    let mut crashes = vec![];
    for (i, back) in failback.iter().enumerate() {
        if let Some(s) = failover.get(i) {
            crashes.push((0, *s));
        }
        crashes.push((1, *back));
    }
    let mut cycle = 0;
    for (kind, step) in crashes {
        // Bring the pool to the state the cmdlet starts from.
        let want = if kind == 0 { "Normal" } else { "FailedOver" };
        if state(&lab, P2)["State"] != want {
            let other = cmdlets[1 - kind];
            lab.ok(
                Some("pool1-fe1.contoso.com"),
                &format!("{other} -PoolFqdn pool2.contoso.com"),
            );
        }
        let cmdlet = cmdlets[kind];
        let when = if step == "Freeze" && kind == 0 {
            "before"
        } else {
            "after"
        };
        arm_crash(&lab, runner, step, when);
        let out = lab.shell(
            Some(runner),
            &format!("{cmdlet} -PoolFqdn pool2.contoso.com"),
        );
        assert!(
            !out.status.success(),
            "{cmdlet} should have crashed at {step}: {}",
            stdout(&out)
        );
        // The runner is gone; the record says where it stopped.
        let start = run_env(
            &["lab", "start", runner, "--dir", lab.dir()],
            &[("TANDEM_DR_FAULTS", "1")],
        );
        assert!(start.status.success(), "{}", stderr(&start));
        let ops = lab.json(
            Some("pool1-fe1.contoso.com"),
            "Get-CsDisasterRecoveryOperation",
        );
        let last = ops
            .as_array()
            .map_or(ops.clone(), |a| a.last().unwrap().clone());
        assert_ne!(last["State"], "Completed", "crash at {step}: {last}");
        let id = last["Identity"].as_str().unwrap().to_string();
        // Resume it: on odd cycles from another server, on even ones by running the cmdlet again.
        let resume = if cycle % 2 == 0 {
            lab.shell(
                Some("pool1-fe1.contoso.com"),
                &format!("Resume-CsDisasterRecoveryOperation -Identity {id}"),
            )
        } else {
            lab.shell(
                Some(runner),
                &format!("{cmdlet} -PoolFqdn pool2.contoso.com"),
            )
        };
        assert!(
            resume.status.success(),
            "resume after {step}: {}{}",
            stdout(&resume),
            stderr(&resume)
        );
        let op = operation(&lab, None, &id);
        assert_eq!(op["State"], "Completed", "{op}");
        assert_eq!(op["LostChanges"], 0, "{op}");
        let expected = if kind == 0 { "FailedOver" } else { "Normal" };
        assert_eq!(
            state(&lab, P2)["State"],
            expected,
            "after a crash at {step}"
        );
        // Users are served by the right pool with every acknowledged write.
        let serving = if kind == 0 { P1 } else { P2 };
        served_with_every_write(
            &lab,
            &bob,
            serving,
            &mut acked,
            &format!("a crash at {step} of {cmdlet}"),
        );
        cycle += 1;
    }
    assert_eq!(
        cycle,
        failover.len() + failback.len(),
        "every step crashed once"
    );
}

/// `user` signs in at `serving` in full mode, saves one more contact there, and finds
/// every contact acknowledged so far (`acked`, which gains the new one).
fn served_with_every_write(
    lab: &Lab,
    user: &str,
    serving: &str,
    acked: &mut Vec<String>,
    after: &str,
) {
    wait_signed_in(lab, user, serving, "full");
    let c = format!("sip:after{}@contoso.com", acked.len());
    assert!(add_contact(lab, user, &c), "write after {after}");
    acked.push(c);
    let now = contacts(lab, user);
    for c in acked.iter() {
        assert!(now.contains(c), "{c} lost after {after}: {now:?}");
    }
}

/// Starts `line` in a shell on `server` without waiting for it.
fn spawn_shell(lab: &Lab, server: &str, line: &str) -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("tandem"))
        .args(["shell", "--lab", lab.dir(), "--server", server, "-c", line])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Edge pool 2 relays through pool1, so that pool2 may be failed over (the seeds' first step).
fn edgepool2_next_hop_to_pool1(lab: &Lab, via: Option<&str>) {
    lab.ok(
        via,
        "Set-CsEdgeServer -Identity EdgeServer:edgepool2.contoso.com -Registrar Registrar:pool1.contoso.com",
    );
}

/// Starts `line` in a shell on `runner`, armed to pause before `step` until [`release`]d,
/// and returns once the runner holds there.
fn start_held(lab: &Lab, runner: &str, step: &str, line: &str) -> std::process::Child {
    let seen = holds_logged(lab, runner);
    arm(
        lab,
        runner,
        serde_json::json!({ "step": step, "when": "hold", "hold_ms": 60_000 }),
    );
    let shell = spawn_shell(lab, runner, line);
    wait_held(lab, runner, seen);
    shell
}

/// Waits until `runner` logged more fault lines than `seen`.
fn wait_held(lab: &Lab, runner: &str, seen: usize) {
    crate::eventually(20, &format!("{runner} to reach the hold"), || {
        (holds_logged(lab, runner) > seen).then_some(())
    });
}

/// Ends the hold `runner` is in: the operation goes on.
fn release(lab: &Lab, runner: &str) {
    arm(lab, runner, serde_json::json!({ "release": true }));
}

#[test]
fn a_pool_lost_during_its_planned_failover_is_failed_over_in_disaster_mode() {
    let lab = Lab::up_env(&["--users", "10"], &[("TANDEM_DR_FAULTS", "1")]);
    let bob = user_of(&lab, P2);
    assert!(add_contact(&lab, &bob, "sip:shipped@contoso.com"));
    edgepool2_next_hop_to_pool1(&lab, None);
    // The planned failover pauses before Drain, and pool2 is lost meanwhile.
    let runner = "pool1-fe2.contoso.com";
    let shell = start_held(
        &lab,
        runner,
        "Drain",
        "Invoke-CsPoolFailOver -PoolFqdn pool2.contoso.com",
    );
    lab.kill(P2);
    release(&lab, runner);
    let out = shell.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let said = stderr(&out);
    assert!(
        said.contains("pool2.contoso.com did not drain")
            && said.contains(
                "Invoke-CsPoolFailOver -PoolFqdn pool2.contoso.com again once pool2.contoso.com answers, or with -DisasterMode"
            ),
        "{said}"
    );
    assert_eq!(state(&lab, P2)["State"], "FailingOver");
    // Resuming as it was cannot get past Drain; -DisasterMode carries the same operation on.
    let out = lab.shell(
        Some(runner),
        "Invoke-CsPoolFailOver -PoolFqdn pool2.contoso.com",
    );
    assert!(stderr(&out).contains("-DisasterMode"), "{}", stderr(&out));
    let out = lab.shell(
        Some(runner),
        "Invoke-CsPoolFailOver -PoolFqdn pool2.contoso.com -DisasterMode",
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    // The same operation went on: there is only the one.
    let op = lab.json(Some(runner), "Get-CsDisasterRecoveryOperation");
    assert!(op.is_object(), "one operation, not several: {op}");
    let steps = op["Steps"].to_string();
    assert!(steps.contains("carried on in disaster mode"), "{steps}");
    assert_eq!(
        (op["State"].as_str(), op["Mode"].as_str()),
        (Some("Completed"), Some("Disaster")),
        "{op}"
    );
    let s = state(&lab, P2);
    assert_eq!(
        (
            s["State"].as_str(),
            s["Mode"].as_str(),
            s["ServingPoolFqdn"].as_str()
        ),
        (Some("FailedOver"), Some("Disaster"), Some(P1))
    );
    // Bob is served by pool1 in full mode with what pool2 had shipped.
    wait_signed_in(&lab, &bob, P1, "full");
    assert!(contacts(&lab, &bob).contains(&"sip:shipped@contoso.com".to_string()));
}

#[test]
fn a_drain_that_times_out_stops_the_failover_and_force_goes_on_reporting_the_loss() {
    let lab = Lab::up_with(&["--users", "10"]);
    let bob = user_of(&lab, P2);
    assert!(add_contact(&lab, &bob, "sip:shipped@contoso.com"));
    edgepool2_next_hop_to_pool1(&lab, None);
    // The first contact is shipped before pool2's Backup Service stops; what bob writes
    // after that cannot drain.
    wait_pending(&lab, P2, 0);
    for fe in ["pool2-fe1.contoso.com", "pool2-fe2.contoso.com"] {
        lab.ok(
            None,
            &format!("Stop-CsWindowsService -Name LYNCBACKUP -ComputerName {fe}"),
        );
    }
    assert!(add_contact(&lab, &bob, "sip:stuck@contoso.com"));
    let out = lab.shell(
        None,
        "Invoke-CsPoolFailOver -PoolFqdn pool2.contoso.com -WaitTime 00:00:01",
    );
    assert_eq!(out.status.code(), Some(1));
    let said = stderr(&out);
    assert!(
        said.contains("still has 1 changes to ship to pool1.contoso.com, and they are not moving: \
                       the Backup Service (LYNCBACKUP) is stopped on every Front End of pool2.contoso.com")
            && said.contains("Get-CsBackupServiceStatus -PoolFqdn pool2.contoso.com")
            && said.contains("-Force"),
        "{said}"
    );
    // Users are read-only meanwhile: a write is refused with the reason, not lost.
    assert!(!add_contact(&lab, &bob, "sip:refused@contoso.com"));
    let out = lab.shell(
        None,
        "Invoke-CsPoolFailOver -PoolFqdn pool2.contoso.com -WaitTime 00:00:01 -Force",
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let op = operation(&lab, None, "1");
    assert_eq!(op["State"], "Completed", "{op}");
    assert_eq!(op["LostChanges"], 1, "{op}");
    assert_eq!(op["LostUsers"], serde_json::json!([bob.clone()]), "{op}");
    wait_signed_in(&lab, &bob, P1, "full");
    let now = contacts(&lab, &bob);
    assert!(
        now.contains(&"sip:shipped@contoso.com".to_string()),
        "{now:?}"
    );
    assert!(
        !now.contains(&"sip:stuck@contoso.com".to_string()),
        "{now:?}"
    );
    assert!(
        !now.contains(&"sip:refused@contoso.com".to_string()),
        "{now:?}"
    );
}

#[test]
fn a_disaster_failback_reports_what_the_lost_backup_pool_had_not_shipped_home() {
    let lab = Lab::up_with(&["--users", "4"]);
    let alice = user_of(&lab, P1);
    assert!(add_contact(&lab, &alice, "sip:kept@contoso.com"));
    lab.ok(
        None,
        "Set-CsEdgeServer -Identity EdgeServer:edgepool1.contoso.com -Registrar Registrar:pool2.contoso.com",
    );
    let out = lab.shell(None, "Invoke-CsPoolFailOver -PoolFqdn pool1.contoso.com");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    wait_signed_in(&lab, &alice, P2, "full");
    // pool2 serves alice now; its Backup Service stops, so what she writes stays there.
    for fe in ["pool2-fe1.contoso.com", "pool2-fe2.contoso.com"] {
        lab.ok(
            None,
            &format!("Stop-CsWindowsService -Name LYNCBACKUP -ComputerName {fe}"),
        );
    }
    for c in ["sip:stranded1@contoso.com", "sip:stranded2@contoso.com"] {
        assert!(add_contact(&lab, &alice, c));
    }
    // pool1's Front Ends hear of the backlog (they ask every half second), then pool2 is lost.
    wait_pending(&lab, P2, 2);
    wait_heard(&lab, P1, P2, 2);
    lab.kill(P2);
    let out = lab.shell(None, "Invoke-CsPoolFailBack -PoolFqdn pool1.contoso.com");
    assert!(
        stderr(&out).contains("Invoke-CsPoolFailBack -PoolFqdn pool1.contoso.com -DisasterMode"),
        "{}",
        stderr(&out)
    );
    let out = lab.shell(
        None,
        "Invoke-CsPoolFailBack -PoolFqdn pool1.contoso.com -DisasterMode",
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let op = operation(&lab, None, "2");
    assert_eq!(
        (op["State"].as_str(), op["Mode"].as_str()),
        (Some("Completed"), Some("Disaster")),
        "{op}"
    );
    assert_eq!(op["LostChanges"], 2, "{op}");
    assert_eq!(op["LostUsers"], serde_json::json!([alice.clone()]), "{op}");
    assert!(
        op["DataLost"]
            .as_str()
            .unwrap_or_default()
            .contains("continue on pool1.contoso.com without them"),
        "{op}"
    );
    wait_signed_in(&lab, &alice, P1, "full");
    let now = contacts(&lab, &alice);
    assert!(now.contains(&"sip:kept@contoso.com".to_string()), "{now:?}");
    assert!(
        !now.contains(&"sip:stranded1@contoso.com".to_string()),
        "{now:?}"
    );
    assert_eq!(state(&lab, P1)["State"], "Normal");
}

/// RTCSRV's status on `server`.
fn rtcsrv(lab: &Lab, server: &str) -> String {
    let v = lab.json(
        None,
        &format!("Get-CsWindowsService -Name RTCSRV -ComputerName {server}"),
    );
    let v = v.as_array().map_or(v.clone(), |a| a[0].clone());
    v["Status"].as_str().unwrap_or_default().to_string()
}

#[test]
fn services_stopped_after_a_failover_start_again_when_the_users_come_home() {
    let lab = Lab::up_with(&["--users", "4"]);
    let bob = user_of(&lab, P2);
    edgepool2_next_hop_to_pool1(&lab, None);
    let out = lab.shell(
        None,
        "Invoke-CsPoolFailOver -PoolFqdn pool2.contoso.com -ServicesStopDelayMins 0",
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    for fe in ["pool2-fe1.contoso.com", "pool2-fe2.contoso.com"] {
        crate::eventually(10, &format!("RTCSRV stopped on {fe}"), || {
            (rtcsrv(&lab, fe) == "Stopped").then_some(())
        });
    }
    wait_signed_in(&lab, &bob, P1, "full");
    let out = lab.shell(None, "Invoke-CsPoolFailBack -PoolFqdn pool2.contoso.com");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    for fe in ["pool2-fe1.contoso.com", "pool2-fe2.contoso.com"] {
        assert_eq!(rtcsrv(&lab, fe), "Running", "{fe}");
    }
    let op = operation(&lab, None, "2");
    assert!(
        op["Steps"]
            .to_string()
            .contains("RTCSRV on pool2-fe1.contoso.com started"),
        "{op}"
    );
    wait_signed_in(&lab, &bob, P2, "full");
}

/// The process a kill test takes away while the operation holds at a step.
#[derive(Clone, Copy, Debug)]
enum Victim {
    /// The shell that started the operation.
    Shell,
    /// A Front End of the backup pool (pool1, which also holds the CMS).
    BackupPoolServer,
    /// The other Front End of the home pool, beside the one running the operation.
    HomePoolServer,
}

/// Counts the hold lines the runner has logged so far.
fn holds_logged(lab: &Lab, runner: &str) -> usize {
    std::fs::read_to_string(format!("{}/logs/{runner}.log", lab.dir()))
        .unwrap_or_default()
        .matches("TANDEM_DR_FAULTS: ")
        .count()
}

/// At every step of failover and failback: the runner pauses there, `victim` is killed,
/// the operation finishes or stops, the victim comes back, a stopped operation is resumed,
/// and then the users are served by the right pool with every acknowledged write.
fn kill_at_every_step(victim: Victim) {
    let lab = Lab::up_env(&["--users", "10"], &[("TANDEM_DR_FAULTS", "1")]);
    let bob = user_of(&lab, P2);
    let mut acked = vec![];
    assert!(add_contact(&lab, &bob, "sip:before@contoso.com"));
    acked.push("sip:before@contoso.com".to_string());
    edgepool2_next_hop_to_pool1(&lab, Some("pool2-fe1.contoso.com"));
    let runner = "pool2-fe1.contoso.com";
    // Never the victim: reads and resumes go through it.
    let witness = "pool1-fe2.contoso.com";
    let steps: [(&str, &[&str]); 2] = [
        (
            "Invoke-CsPoolFailOver",
            &[
                "Freeze", "Drain", "Verify", "Promote", "Switch", "Apply", "SignOut",
            ],
        ),
        (
            "Invoke-CsPoolFailBack",
            &[
                "Freeze", "Drain", "Verify", "Promote", "Switch", "Apply", "SignOut", "Retire",
            ],
        ),
    ];
    let mut rounds = 0;
    for i in 0..8 {
        for (kind, (cmdlet, names)) in steps.iter().enumerate() {
            let Some(step) = names.get(i) else { continue };
            // Bring the pool to the state the cmdlet starts from.
            let want = if kind == 0 { "Normal" } else { "FailedOver" };
            if state(&lab, P2)["State"] != want {
                let other = steps[1 - kind].0;
                lab.ok(
                    Some(witness),
                    &format!("{other} -PoolFqdn pool2.contoso.com"),
                );
            }
            let mut shell = start_held(
                &lab,
                runner,
                step,
                &format!("{cmdlet} -PoolFqdn pool2.contoso.com"),
            );
            let killed = match victim {
                Victim::Shell => {
                    shell.kill().unwrap();
                    None
                }
                Victim::BackupPoolServer => Some("pool1-fe1.contoso.com"),
                Victim::HomePoolServer => Some("pool2-fe2.contoso.com"),
            };
            if let Some(server) = killed {
                lab.kill(server);
            }
            release(&lab, runner);
            let _ = shell.wait();
            // The operation goes on without the victim, or stops where it could not.
            let op = crate::eventually(40, "the operation to end or stop", || {
                let ops = lab.json(Some(witness), "Get-CsDisasterRecoveryOperation");
                let last = ops
                    .as_array()
                    .map_or(ops.clone(), |a| a.last().unwrap().clone());
                (last["State"] != "Running").then_some(last)
            });
            if let Some(server) = killed {
                let out = run_env(
                    &["lab", "start", server, "--dir", lab.dir()],
                    &[("TANDEM_DR_FAULTS", "1")],
                );
                assert!(out.status.success(), "{}", stderr(&out));
            }
            let id = op["Identity"].as_str().unwrap().to_string();
            if op["State"] != "Completed" {
                let out = lab.shell(
                    Some(witness),
                    &format!("Resume-CsDisasterRecoveryOperation -Identity {id}"),
                );
                assert!(
                    out.status.success(),
                    "resume after {victim:?} died at {step} of {cmdlet}: {}{}",
                    stdout(&out),
                    stderr(&out)
                );
            }
            let op = operation(&lab, Some(witness), &id);
            assert_eq!(op["State"], "Completed", "{op}");
            assert_eq!(op["LostChanges"], 0, "{op}");
            let (expected, serving) = if kind == 0 {
                ("FailedOver", P1)
            } else {
                ("Normal", P2)
            };
            assert_eq!(state(&lab, P2)["State"], expected, "{victim:?} at {step}");
            served_with_every_write(
                &lab,
                &bob,
                serving,
                &mut acked,
                &format!("{victim:?} died at {step} of {cmdlet}"),
            );
            rounds += 1;
        }
    }
    assert_eq!(
        rounds, 15,
        "every step of failover and failback was held once"
    );
}

#[test]
fn killing_the_shell_at_every_step_leaves_the_operation_running_to_the_end() {
    kill_at_every_step(Victim::Shell);
}

#[test]
fn killing_a_backup_pool_server_at_every_step_is_followed_by_a_clean_resume() {
    kill_at_every_step(Victim::BackupPoolServer);
}

#[test]
fn killing_another_home_pool_server_at_every_step_is_followed_by_a_clean_resume() {
    kill_at_every_step(Victim::HomePoolServer);
}

#[test]
fn an_operation_running_on_a_live_server_cannot_be_resumed_elsewhere() {
    let lab = Lab::up_env(&["--users", "2"], &[("TANDEM_DR_FAULTS", "1")]);
    edgepool2_next_hop_to_pool1(&lab, None);
    let runner = "pool2-fe1.contoso.com";
    let shell = start_held(
        &lab,
        runner,
        "Promote",
        "Invoke-CsPoolFailOver -PoolFqdn pool2.contoso.com",
    );
    for (server, line) in [
        (
            "pool1-fe2.contoso.com",
            "Resume-CsDisasterRecoveryOperation -Identity 1",
        ),
        (
            "pool1-fe1.contoso.com",
            "Invoke-CsPoolFailOver -PoolFqdn pool2.contoso.com",
        ),
        (runner, "Resume-CsDisasterRecoveryOperation -Identity 1"),
    ] {
        let out = lab.shell(Some(server), line);
        assert!(
            !out.status.success(),
            "{line} on {server} ran a second runner"
        );
        assert!(
            stderr(&out).contains("is running on pool2-fe1.contoso.com now, at step Promote"),
            "{}",
            stderr(&out)
        );
    }
    release(&lab, runner);
    let out = shell.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let op = operation(&lab, Some("pool1-fe2.contoso.com"), "1");
    assert_eq!(op["State"], "Completed", "{op}");
    assert_eq!(op["Runner"], runner, "{op}");
}

#[test]
fn an_operation_whose_runner_died_is_finished_by_the_reconciler_without_an_operator() {
    let lab = Lab::up_env(
        &["--users", "4", "--reconcile-after-secs", "1"],
        &[("TANDEM_DR_FAULTS", "1")],
    );
    let bob = user_of(&lab, P2);
    assert!(add_contact(&lab, &bob, "sip:before@contoso.com"));
    edgepool2_next_hop_to_pool1(&lab, None);
    // The runner dies between Promote's work and its record, and stays dead.
    let runner = "pool2-fe1.contoso.com";
    arm_crash(&lab, runner, "Promote", "after");
    let out = lab.shell(
        Some(runner),
        "Invoke-CsPoolFailOver -PoolFqdn pool2.contoso.com",
    );
    assert!(!out.status.success(), "{}", stdout(&out));
    // Nobody resumes it: the active master's reconciler carries it on.
    let witness = "pool1-fe2.contoso.com";
    let op = crate::eventually(30, "the reconciler to finish operation 1", || {
        let op = operation(&lab, Some(witness), "1");
        (op["State"] == "Completed").then_some(op)
    });
    assert_eq!(op["LostChanges"], 0, "{op}");
    assert_ne!(op["Runner"], runner, "{op}");
    assert!(
        op["Steps"].to_string().contains("Promote Done"),
        "the interrupted step ran again: {op}"
    );
    assert_eq!(state(&lab, P2)["State"], "FailedOver");
    wait_signed_in(&lab, &bob, P1, "full");
    assert!(contacts(&lab, &bob).contains(&"sip:before@contoso.com".to_string()));
}

#[test]
fn a_stopped_planned_failover_is_cancelled_and_its_users_write_again() {
    let lab = Lab::up_with(&["--users", "4"]);
    let bob = user_of(&lab, P2);
    edgepool2_next_hop_to_pool1(&lab, None);
    for fe in ["pool2-fe1.contoso.com", "pool2-fe2.contoso.com"] {
        lab.ok(
            None,
            &format!("Stop-CsWindowsService -Name LYNCBACKUP -ComputerName {fe}"),
        );
    }
    assert!(add_contact(&lab, &bob, "sip:waiting@contoso.com"));
    // The failover stops at Drain: bob is read-only.
    let out = lab.shell(
        None,
        "Invoke-CsPoolFailOver -PoolFqdn pool2.contoso.com -WaitTime 00:00:01",
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(!add_contact(&lab, &bob, "sip:refused@contoso.com"));
    assert_eq!(state(&lab, P2)["State"], "FailingOver");
    // Cancelled: the fence is lifted, the pool is Normal again, and the record says what
    // was undone.
    let out = lab.shell(None, "Stop-CsDisasterRecoveryOperation -Identity 1");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("cancelled"), "{}", stdout(&out));
    assert_eq!(state(&lab, P2)["State"], "Normal");
    assert!(add_contact(&lab, &bob, "sip:after@contoso.com"));
    wait_signed_in(&lab, &bob, P2, "full");
    let op = operation(&lab, None, "1");
    assert_eq!(op["State"], "Cancelled", "{op}");
    let undone = op["Undone"].to_string();
    assert!(
        undone.contains("takes writes of pool2.contoso.com's users again")
            && undone.contains("Normal again"),
        "{undone}"
    );
    // A cancelled operation is over: stopping it again says so, and a new failover runs.
    let out = lab.shell(None, "Stop-CsDisasterRecoveryOperation -Identity 1");
    assert!(stderr(&out).contains("nothing to stop"), "{}", stderr(&out));
    for fe in ["pool2-fe1.contoso.com", "pool2-fe2.contoso.com"] {
        lab.ok(
            None,
            &format!("Start-CsWindowsService -Name LYNCBACKUP -ComputerName {fe}"),
        );
    }
    // -DisasterMode on a pool that answers would drop what it has not shipped: refused
    // without -Force, saying so.
    let out = lab.shell(
        None,
        "Invoke-CsPoolFailOver -PoolFqdn pool2.contoso.com -DisasterMode",
    );
    assert_eq!(out.status.code(), Some(1));
    let said = stderr(&out);
    assert!(
        said.contains("pool2.contoso.com still answers") && said.contains("-Force"),
        "{said}"
    );
    let out = lab.shell(None, "Invoke-CsPoolFailOver -PoolFqdn pool2.contoso.com");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    wait_signed_in(&lab, &bob, P1, "full");
    let now = contacts(&lab, &bob);
    for c in ["sip:waiting@contoso.com", "sip:after@contoso.com"] {
        assert!(now.contains(&c.to_string()), "{c}: {now:?}");
    }
}

#[test]
fn after_a_failback_the_backup_pool_sends_the_users_home_at_once_not_after_its_detection_interval()
{
    let lab = Lab::up_with(&["--users", "4"]);
    let bob = user_of(&lab, P2);
    edgepool2_next_hop_to_pool1(&lab, None);
    lab.kill(P2);
    // pool1 sees pool2 down (its failure detection interval) and serves bob in resiliency
    // mode; then the disaster failover serves him in full mode.
    crate::eventually(20, "bob in resiliency mode at pool1", || {
        let text = stdout(&client(&lab, &bob, &["sign-in"]));
        (text.contains("at pool1.contoso.com") && text.contains("in resiliency mode")).then_some(())
    });
    lab.ok(
        None,
        "Invoke-CsPoolFailOver -PoolFqdn pool2.contoso.com -DisasterMode",
    );
    wait_signed_in(&lab, &bob, P1, "full");
    let out = run(&["lab", "start", P2, "--dir", lab.dir()]);
    assert!(out.status.success(), "{}", stderr(&out));
    lab.ok(None, "Invoke-CsPoolFailBack -PoolFqdn pool2.contoso.com");
    // At once, well within pool2's failback detection interval (10 s in a lab): pool1
    // sends bob home rather than serving him in resiliency mode.
    let out = client(&lab, &bob, &["--via", "pool1-fe1.contoso.com", "sign-in"]);
    let text = stdout(&out);
    assert!(
        text.contains("redirected by")
            && text.contains("at pool2.contoso.com")
            && text.contains("in full mode"),
        "{text}{}",
        stderr(&out)
    );
}
