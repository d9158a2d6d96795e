//! Servers apart (`tandem lab up --hosts --backend postgres`): every server and Back End
//! on a host (network namespace) of its own, the sites joined by a link the test cuts.
//!
//! What is checked is what the design promises when the network, not a server, fails:
//! - the seeds' site-loss runbook runs unchanged when no two servers share an address;
//! - under a cut with sign-in and write load, never two writable CMS masters, each pool
//!   keeps serving its own users in full mode and no user is served in full mode by both,
//!   every acknowledged write is kept (a history of them, checked after `heal`), CMS
//!   changes are refused on the side without the master and reach the other side after
//!   `heal`;
//! - a CMS failover an operator runs on the cut-off side, believing the other site lost:
//!   the design cannot tell a cut from a loss while the cut lasts (nor can the original),
//!   but when the network heals the higher term wins, the old master steps down, its
//!   store becomes the standby and what it took meanwhile is reported lost, and every
//!   replica converges;
//! - with a witness in a third site (fabrikam's): that failover is refused, a master cut
//!   off from the witness and the standby stops taking changes, and a sampler of the
//!   servers' own word never sees two writable masters (and does see them in the test
//!   without a witness, so the check can fail);
//! - every runbook of `examples/runbooks/` unchanged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::cms::{
    assert_master_in, cms_status, cms_store_state, masters, old_store_comes_back_fenced,
    set_sync_interval, store_of, sync_interval_at, wait_all_up_to_date, wait_standby_current,
};
use crate::failover::{
    add_contact, client, contacts, contacts_via, sign_in, user_of, wait_signed_in,
};
use crate::lab::Lab;
use crate::{run, stderr, stdout};

const P1: &str = "pool1.contoso.com";
const P2: &str = "pool2.contoso.com";

fn net(lab: &Lab, args: &[&str]) {
    let mut all = vec!["lab", "net"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--dir", lab.dir()]);
    let out = run(&all);
    assert!(out.status.success(), "lab net {args:?}: {}", stderr(&out));
}

#[test]
fn every_server_is_on_a_host_of_its_own_and_the_site_loss_runbook_runs_unchanged() {
    let Some(lab) = Lab::up_hosts(&topology::contoso(), &["--users", "4"]) else {
        return;
    };
    // Each server and cluster in a network namespace of its own, none on loopback.
    let file = lab.file();
    let mine = std::fs::read_link("/proc/self/ns/net").unwrap();
    let mut seen = Vec::new();
    for s in file["servers"]
        .as_array()
        .unwrap()
        .iter()
        .chain(file["clusters"].as_array().unwrap())
    {
        let address = s["address"].as_str().unwrap();
        assert!(address.starts_with("10."), "{s}");
        let pid = s["pid"].as_u64().unwrap();
        let ns = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
        assert_ne!(ns, mine, "{} runs on the operator's own network", s["fqdn"]);
        if s["role"] != "Dns" {
            assert!(!seen.contains(&ns), "{} shares a host", s["fqdn"]);
        }
        seen.push(ns);
    }
    // Seeds 000/001 on hosts: pool1 (with the store and its Back End server) is lost.
    let alice = user_of(&lab, P1);
    assert!(add_contact(&lab, &alice, "sip:before@contoso.com"));
    set_sync_interval(&lab, "pool2-fe1.contoso.com", "00:01:10");
    wait_standby_current(&lab, "pool2-fe1.contoso.com", P1, P2);
    lab.kill(P1);
    let text = lab.runbook(
        "pool2-fe1.contoso.com",
        "pool1-disaster-failover-with-cms.ps1",
    );
    assert!(text.contains("(Disaster): Completed"), "{text}");
    wait_signed_in(&lab, &alice, P2, "full");
    assert!(contacts(&lab, &alice).contains(&"sip:before@contoso.com".to_string()));
    set_sync_interval(&lab, "pool2-fe1.contoso.com", "00:01:20");
    // pool1 and its Back End server come back on their hosts, fenced.
    old_store_comes_back_fenced(&lab, P1, P2, "00:01:20");
}

/// Every other runbook of `examples/runbooks/` (the unpaired-CMS one needs a Lync Server
/// 2010 pool; `cms.rs` runs it) on hosts, unchanged but for the lab's addresses, in the
/// order an operator meets them: a planned pool failover and failback, the Edge's SIP and
/// XMPP federation routes moved while Edge pool 1 is down and back, the media
/// association, pool2 lost and back, and seed 004's sequence. Users keep their service
/// and their data through it all.
#[test]
fn every_pool_and_edge_runbook_runs_unchanged_on_hosts() {
    let Some(lab) = Lab::up_hosts(&topology::contoso(), &["--users", "4"]) else {
        return;
    };
    let (alice, bob) = (user_of(&lab, P1), user_of(&lab, P2));
    assert!(add_contact(&lab, &alice, "sip:a0@contoso.com"));
    assert!(add_contact(&lab, &bob, "sip:b0@contoso.com"));
    // Planned: pool1's users to pool2 and back.
    let out = lab.runbook("pool2-fe1.contoso.com", "pool1-planned-failover.ps1");
    assert!(out.contains("VERBOSE: Drain Done"), "{out}");
    wait_signed_in(&lab, &alice, P2, "full");
    assert!(add_contact(&lab, &alice, "sip:a1@contoso.com"));
    lab.runbook("pool2-fe1.contoso.com", "pool1-planned-failback.ps1");
    wait_signed_in(&lab, &alice, P1, "full");
    assert!(contacts(&lab, &alice).contains(&"sip:a1@contoso.com".to_string()));
    // Edge pool 1 down: SIP federation, then XMPP, move to Edge pool 2 and come back.
    let edge2 = format!("{}2.22", lab.block());
    for (failover, failback, name) in [
        (
            "edge-federation-failover.ps1",
            "edge-federation-failback.ps1",
            "sip.contoso.com",
        ),
        (
            "edge-xmpp-failover.ps1",
            "edge-xmpp-failback.ps1",
            "xmpp.contoso.com",
        ),
    ] {
        lab.kill("edgepool1.contoso.com");
        lab.runbook("pool1-fe1.contoso.com", failover);
        let out = run(&["dns", "query", "--lab", lab.dir(), "--json", name, "A"]);
        assert!(stdout(&out).contains(&edge2), "{name}: {}", stdout(&out));
        lab.start("edgepool1.contoso.com");
        lab.runbook("pool1-fe1.contoso.com", failback);
        let out = run(&["dns", "query", "--lab", lab.dir(), "--json", name, "A"]);
        assert!(!stdout(&out).contains(&edge2), "{name}: {}", stdout(&out));
    }
    let text = lab.runbook("pool1-fe2.contoso.com", "edge-media-association.ps1");
    assert!(text.contains("edgepool2.contoso.com"), "{text}");
    let text = lab.runbook("pool1-fe2.contoso.com", "edge-media-association-back.ps1");
    assert!(text.contains("edgepool1.contoso.com"), "{text}");
    // pool2 (not the store's pool) lost on its hosts, and back.
    wait_standby_current(&lab, "pool1-fe1.contoso.com", P1, P2);
    lab.kill(P2);
    let out = lab.runbook("pool1-fe1.contoso.com", "pool2-disaster-failover.ps1");
    assert!(out.contains("FailedOver"), "{out}");
    wait_signed_in(&lab, &bob, P1, "full");
    assert!(contacts(&lab, &bob).contains(&"sip:b0@contoso.com".to_string()));
    assert!(add_contact(&lab, &bob, "sip:b1@contoso.com"));
    lab.start(P2);
    lab.runbook("pool1-fe1.contoso.com", "pool2-disaster-failback.ps1");
    wait_signed_in(&lab, &bob, P2, "full");
    assert!(contacts(&lab, &bob).contains(&"sip:b1@contoso.com".to_string()));
    // Seed 004: both pools' users to pool1, and home again.
    let out = lab.runbook("pool1-fe2.contoso.com", "seed-004-p1-p2.ps1");
    assert!(out.contains("FailedOver"), "{out}");
    for pool in [P1, P2] {
        assert_eq!(
            lab.record(None, &format!("Get-CsPoolFailoverState -PoolFqdn {pool}"))["State"],
            "Normal",
            "{pool}"
        );
    }
    wait_signed_in(&lab, &alice, P1, "full");
    wait_signed_in(&lab, &bob, P2, "full");
    for (user, contact) in [(&alice, "sip:a1@contoso.com"), (&bob, "sip:b1@contoso.com")] {
        assert!(
            contacts(&lab, user).contains(&contact.to_string()),
            "{user}"
        );
    }
}

/// The last runbook, seed 001's unpaired path (the store rebuilt from an export in pool2),
/// on hosts.
#[test]
fn the_unpaired_cms_runbook_runs_unchanged_on_hosts() {
    let Some(lab) = Lab::up_hosts(&topology::contoso(), &["--users", "2"]) else {
        return;
    };
    crate::cms::unpaired_path_on(&lab);
}

/// An acknowledged write: which user, which contact, which server's user services said so.
#[derive(Debug, Clone)]
struct Acked {
    user: String,
    contact: String,
    by: String,
}

/// Writes contacts for each user through its home pool's Front Ends, one after another,
/// until stopped; records every acknowledged write and every refusal's status.
fn writers(
    lab: &Lab,
    users: &[(String, String, Vec<String>)],
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<Vec<Acked>>>,
) -> Vec<std::thread::JoinHandle<HashMap<u16, usize>>> {
    users
        .iter()
        .cloned()
        .map(|(user, password, bases)| {
            let (stop, history, http) = (stop.clone(), history.clone(), lab.http());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let _runtime = rt.enter();
                let client = http
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(std::time::Duration::from_secs(2))
                    .build()
                    .unwrap();
                let name = user.trim_start_matches("sip:").to_string();
                let mut refused: HashMap<u16, usize> = HashMap::new();
                let mut i = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let base = &bases[i % bases.len()];
                    let contact = format!("sip:w{i}-{}@contoso.com", name.replace('@', "."));
                    let sent = rt.block_on(
                        client
                            .put(format!("{base}/users/v1/contacts/{contact}"))
                            .basic_auth(&name, Some(&password))
                            .json(&serde_json::json!({ "group": "g" }))
                            .send(),
                    );
                    match sent {
                        Ok(r) if r.status() == 200 => history.lock().unwrap().push(Acked {
                            user: user.clone(),
                            contact,
                            by: base.clone(),
                        }),
                        Ok(r) => {
                            let status = r.status().as_u16();
                            if !refused.contains_key(&status) {
                                let body = rt.block_on(r.text()).unwrap_or_default();
                                eprintln!("{user} via {base}: {status} {body}");
                            }
                            *refused.entry(status).or_default() += 1
                        }
                        Err(_) => *refused.entry(0).or_default() += 1,
                    }
                    i += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                refused
            })
        })
        .collect()
}

/// (user, password, the user-services addresses of its home pool's Front Ends).
fn load_users(lab: &Lab, per_pool: usize) -> Vec<(String, String, Vec<String>)> {
    let servers = lab.servers();
    let mut out = Vec::new();
    for pool in [P1, P2] {
        let bases: Vec<String> = servers
            .iter()
            .filter(|s| s["pool"] == pool)
            .map(Lab::user_services)
            .collect();
        for u in lab
            .users()
            .iter()
            .filter(|u| u["home_pool"] == pool)
            .take(per_pool)
        {
            let sip = u["sip_address"].as_str().unwrap().to_string();
            out.push((sip.clone(), lab.password(&sip), bases.clone()));
        }
    }
    out
}

fn home_pool(user: &str) -> &'static str {
    if user.contains(".pool1@") { P1 } else { P2 }
}

/// The Front End a user of that side of the cut asks first.
fn home_fe(user: &str) -> String {
    let pool = home_pool(user).split('.').next().unwrap_or_default();
    format!("{pool}-fe1.contoso.com")
}

fn acked_count(history: &Mutex<Vec<Acked>>, user: &str) -> usize {
    history
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a.user == user)
        .count()
}

#[test]
fn a_cut_between_sites_keeps_one_cms_writer_serves_each_user_once_and_heals() {
    let Some(lab) = Lab::up_hosts(&topology::contoso(), &["--users", "4"]) else {
        return;
    };
    let rounds: usize = std::env::var("TANDEM_PARTITION_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2);
    let users = load_users(&lab, 2);
    let stop = Arc::new(AtomicBool::new(false));
    let history = Arc::new(Mutex::new(Vec::new()));
    let handles = writers(&lab, &users, stop.clone(), history.clone());
    let site_of = |fqdn: &str| {
        if fqdn.starts_with("pool1-") || fqdn.starts_with("edgeserver1") {
            1
        } else {
            2
        }
    };
    for round in 0..rounds {
        let before: Vec<usize> = users.iter().map(|u| acked_count(&history, &u.0)).collect();
        net(&lab, &["cut", "Site1", "Site2"]);
        // Every user keeps writing through its own pool, on both sides of the cut, while
        // the masters are watched.
        crate::eventually(60, "writes on both sides of the cut", || {
            let m = masters(&lab);
            assert!(m.len() <= 1, "two writable masters during the cut: {m:?}");
            assert!(
                m.iter().all(|f| site_of(f) == 1),
                "a master outside Site1: {m:?}"
            );
            users
                .iter()
                .zip(&before)
                .all(|(u, b)| acked_count(&history, &u.0) >= b + 10)
                .then_some(())
        });
        // Each user is served in full mode by its own pool, which its side reaches; the
        // other pool, which finds its partner silent, serves it at most in resiliency mode.
        for (user, _, _) in &users {
            let fe = home_fe(user);
            let out = client(&lab, user, &["--via", &fe, "sign-in"]);
            assert!(
                stdout(&out).contains(&format!("at {} (", home_pool(user)))
                    && stdout(&out).contains("in full mode"),
                "{user} via {fe}: {}{}",
                stdout(&out),
                stderr(&out)
            );
            let (pool, mode) = sign_in(&lab, user);
            assert!(
                pool == home_pool(user) || mode != "full",
                "{user} served in full mode by {pool}"
            );
            // Signed out again (every device), so that many rounds stay under the
            // per-user limit of bindings.
            let out = client(&lab, user, &["--via", &fe, "sign-in", "--expires", "0"]);
            assert!(out.status.success(), "{}", stderr(&out));
        }
        // A change of the configuration: refused on the side without the master, naming
        // why; taken on the master's side.
        let interval = format!("00:0{}:{}0", round % 9 + 1, round % 6);
        let out = lab.shell(
            Some("pool2-fe1.contoso.com"),
            &format!("Set-CsBackupServiceConfiguration -SyncInterval {interval}"),
        );
        assert!(!out.status.success(), "a CMS change taken across the cut");
        assert!(
            stderr(&out).to_lowercase().contains("unavailable")
                || stderr(&out).to_lowercase().contains("master"),
            "{}",
            stderr(&out)
        );
        set_sync_interval(&lab, "pool1-fe1.contoso.com", &interval);
        net(&lab, &["heal"]);
        // After the heal: one master, every replica up to date with the change.
        wait_all_up_to_date(&lab, "pool2-fe1.contoso.com");
        crate::eventually(20, "the change on every server", || {
            ["pool2-fe2.contoso.com", "edgeserver2.contoso.com"]
                .iter()
                .all(|s| sync_interval_at(&lab, s) == interval)
                .then_some(())
        });
        assert_eq!(masters(&lab).len(), 1);
    }
    stop.store(true, Ordering::SeqCst);
    let mut refused: HashMap<u16, usize> = HashMap::new();
    for h in handles {
        for (status, n) in h.join().unwrap() {
            *refused.entry(status).or_default() += n;
        }
    }
    // The history: every acknowledged write is in the user's contacts, and each user's
    // writes were acknowledged by its home pool's servers only.
    let history = history.lock().unwrap().clone();
    for (user, _, bases) in &users {
        let mine: Vec<&Acked> = history.iter().filter(|a| &a.user == user).collect();
        assert!(mine.iter().all(|a| bases.contains(&a.by)), "{user}");
        let kept = contacts_via(&lab, user, &["--via", &home_fe(user)]);
        let missing: Vec<&&Acked> = mine.iter().filter(|a| !kept.contains(&a.contact)).collect();
        assert!(
            missing.is_empty(),
            "{} of {} acknowledged writes of {user} lost: {missing:?}",
            missing.len(),
            mine.len()
        );
    }
    eprintln!(
        "partition: {rounds} rounds, {} acknowledged writes, all kept; refused or unanswered: {refused:?}",
        history.len()
    );
}

#[test]
fn a_cms_failover_run_on_the_cut_off_side_is_fenced_when_the_network_heals() {
    let Some(lab) = Lab::up_hosts(&topology::contoso(), &["--users", "2"]) else {
        return;
    };
    wait_standby_current(&lab, "pool2-fe1.contoso.com", P1, P2);
    net(&lab, &["cut", "Site1", "Site2"]);
    // From Site2 the store looks lost: the operator fails it over to pool2.
    crate::eventually(20, "Site2 to find no master", || {
        (cms_status(&lab, "pool2-fe1.contoso.com")["ActiveMasterFqdn"] == "").then_some(())
    });
    let out = lab.shell(
        Some("pool2-fe1.contoso.com"),
        "Invoke-CsManagementServerFailover -BackupSqlServerFqdn pool2-be.contoso.com -BackupSqlInstanceName rtc",
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    // Both sides change the configuration while cut apart.
    set_sync_interval(&lab, "pool2-fe1.contoso.com", "00:03:30");
    set_sync_interval(&lab, "pool1-fe1.contoso.com", "00:04:40");
    // Without a witness that is two writable masters, and the check that the witness test
    // relies on sees them.
    assert_eq!(masters(&lab).len(), 2, "{:?}", masters(&lab));
    net(&lab, &["heal"]);
    // The higher term wins: one master, in pool2; pool1's store steps down to the standby
    // and reports the change it took meanwhile as lost; every replica converges on pool2's.
    crate::eventually(30, "one writable store, in pool2", || {
        let m = masters(&lab);
        (m.len() == 1 && m[0].starts_with("pool2-")).then_some(())
    });
    wait_all_up_to_date(&lab, "pool2-fe1.contoso.com");
    crate::eventually(20, "pool1's store to step down", || {
        (store_of(&lab, "pool2-fe1.contoso.com", P1).0 == "Backup").then_some(())
    });
    for server in [
        "pool1-fe1.contoso.com",
        "pool1-fe2.contoso.com",
        "edgeserver1.contoso.com",
        "pool2-fe2.contoso.com",
    ] {
        crate::eventually(20, &format!("{server} to converge"), || {
            (sync_interval_at(&lab, server) == "00:03:30").then_some(())
        });
    }
    let xds = cms_store_state(&lab, "pool1-fe2.contoso.com", P1);
    assert!(
        xds["LostVersions"]
            .as_array()
            .is_some_and(|l| !l.is_empty()),
        "the change pool1 took during the cut is reported lost: {xds}"
    );
    assert_master_in(&lab, "pool1-fe1.contoso.com", "pool2-");
}

#[test]
fn a_second_deployment_of_three_sites_cut_between_two_keeps_one_master_and_heals() {
    let Some(lab) = Lab::up_hosts(&crate::lab::fabrikam(), &["--users", "2"]) else {
        return;
    };
    let file = lab.file();
    let sites: Vec<&str> = file["network"]["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(sites, ["Redmond", "Dublin", "Lisbon"]);
    // Redmond (the store's site) and Dublin cut apart; Lisbon still reaches both.
    net(&lab, &["cut", "Redmond", "Dublin"]);
    crate::eventually(30, "Dublin to refuse a change of the configuration", || {
        let m = masters(&lab);
        assert!(
            m.len() <= 1 && m.iter().all(|f| f.starts_with("red-")),
            "{m:?}"
        );
        let out = lab.shell(
            Some("dub-a.fabrikam.net"),
            "Set-CsBackupServiceConfiguration -SyncInterval 00:05:00",
        );
        (!out.status.success()).then_some(())
    });
    // Lisbon reaches the master: its change is taken, and Dublin gets it after the heal.
    set_sync_interval(&lab, "lis-a.fabrikam.net", "00:06:10");
    assert_eq!(masters(&lab).len(), 1);
    net(&lab, &["heal"]);
    wait_all_up_to_date(&lab, "red-a.fabrikam.net");
    crate::eventually(20, "Dublin to converge", || {
        (sync_interval_at(&lab, "dub-c.fabrikam.net") == "00:06:10").then_some(())
    });
    assert_eq!(masters(&lab).len(), 1);
}

/// fabrikam's witness is in Lisbon. The store's site (Redmond) cut from Dublin: the
/// operator on Dublin's side fails the store over anyway, and the witness, which still
/// hears from Redmond's master, refuses its vote, so nothing is promoted and Redmond
/// keeps taking changes. Then Redmond is cut off from Lisbon too: its master, left with
/// its own store's vote only, stops taking changes before either voter can give its vote
/// away, and only then does the failover on Dublin win. At no point do two masters take
/// changes; after `heal` Redmond's store is Dublin's standby, and the change it took
/// while cut from Dublin is reported lost.
#[test]
fn with_a_witness_a_failover_on_the_cut_off_side_is_refused_and_an_isolated_master_stops_writing() {
    const RED: &str = "fe-red.fabrikam.net";
    const DUB: &str = "fe-dub.fabrikam.net";
    let Some(lab) = Lab::up_hosts(&crate::lab::fabrikam(), &["--users", "2"]) else {
        return;
    };
    let failover = "Invoke-CsManagementServerFailover -BackupSqlServerFqdn sql-dub.fabrikam.net -BackupSqlInstanceName lync";
    let one_master_in = |site: &str| {
        let m = masters(&lab);
        assert!(
            m.len() <= 1 && m.iter().all(|f| f.starts_with(site)),
            "{m:?}"
        );
        m.len() == 1
    };
    // Every 0.1 s or so, which servers say they hold a writable store (`lab status`, all
    // asked at once): never two, through the whole test.
    let stop = AtomicBool::new(false);
    let (samples, doubles) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let (mut samples, mut doubles) = (0, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                let m = masters(&lab);
                samples += 1;
                if m.len() > 1 {
                    doubles.push(m);
                }
            }
            (samples, doubles)
        });
        // The sampler stops however the scenario ends, a failed assertion too.
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _stop = Stop(&stop);
        wait_standby_current(&lab, "dub-a.fabrikam.net", RED, DUB);
        net(&lab, &["cut", "Redmond", "Dublin"]);
        crate::eventually(20, "Dublin to find no master", || {
            (cms_status(&lab, "dub-a.fabrikam.net")["ActiveMasterFqdn"] == "").then_some(())
        });
        let out = lab.shell(Some("dub-a.fabrikam.net"), failover);
        let said = format!("{}{}", stdout(&out), stderr(&out));
        assert!(!out.status.success(), "promoted across a cut: {said}");
        assert!(
            said.contains("the witness lis-a.fabrikam.net refused")
                && said.contains("fe-red.fabrikam.net's store")
                && said.contains("Nothing was promoted"),
            "{said}"
        );
        assert!(one_master_in("red-"));
        set_sync_interval(&lab, "red-b.fabrikam.net", "00:04:10");
        // Redmond alone: its master stops taking changes.
        net(&lab, &["cut", "Redmond", "Lisbon"]);
        crate::eventually(15, "Redmond's master to stop taking changes", || {
            let out = lab.shell(
                Some("red-a.fabrikam.net"),
                "Set-CsBackupServiceConfiguration -SyncInterval 00:04:20",
            );
            (!out.status.success() && stderr(&out).contains("holds no vote but its own store's"))
                .then_some(())
        });
        assert!(!one_master_in("red-"), "a master without a majority");
        let out = lab.shell(Some("dub-a.fabrikam.net"), failover);
        let said = format!("{}{}", stdout(&out), stderr(&out));
        assert!(out.status.success(), "{said}");
        assert!(
            said.contains("the witness lis-a.fabrikam.net and the standby store voted for fe-dub"),
            "{said}"
        );
        set_sync_interval(&lab, "dub-b.fabrikam.net", "00:05:50");
        assert!(one_master_in("dub-"));
        let out = lab.shell(
            Some("red-c.fabrikam.net"),
            "Set-CsBackupServiceConfiguration -SyncInterval 00:04:30",
        );
        assert!(!out.status.success(), "Redmond took a change beside Dublin");
        net(&lab, &["heal"]);
        crate::eventually(20, "Redmond's store to step down", || {
            (store_of(&lab, "dub-a.fabrikam.net", RED).0 == "Backup").then_some(())
        });
        wait_all_up_to_date(&lab, "dub-a.fabrikam.net");
        for server in [
            "red-a.fabrikam.net",
            "red-c.fabrikam.net",
            "lis-a.fabrikam.net",
        ] {
            crate::eventually(20, &format!("{server} to converge"), || {
                (sync_interval_at(&lab, server) == "00:05:50").then_some(())
            });
        }
        assert!(one_master_in("dub-"));
        let xds = cms_store_state(&lab, "red-a.fabrikam.net", RED);
        assert!(
            xds["LostVersions"]
                .as_array()
                .is_some_and(|l| !l.is_empty()),
            "the change Redmond took while cut from Dublin is reported lost: {xds}"
        );
        drop(_stop);
        sampler.join().unwrap()
    });
    assert!(doubles.is_empty(), "two writable masters seen: {doubles:?}");
    eprintln!("witness: {samples} samples of the masters, none with two");
}
