//! Sign-ins under load meeting a Front End's crash: the registrar answers a REGISTER that
//! changes a user's bindings only after the change is committed to the pool's Back End (in
//! a batch with the others that arrived meanwhile), so every binding a user was told about
//! survives the Front End that took it, and the pool's other Front Ends reach that user at
//! once. Refreshes are answered from memory and written behind, within the registrar's
//! stated window, and before a Front End stops.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sip::Method;

use crate::eventually;
use crate::lab::Lab;
use crate::sip_attacks::{Ua, answer, registrar};

/// Clients signing in at once, each from its own loopback address (the registrar's
/// per-source budget would otherwise pace them).
const CLIENTS: usize = 4;

/// On the second deployment (fabrikam: other names, three Front Ends a pool), with plain
/// SIP on so that the clients can be plain UDP user agents.
#[test]
fn a_front_end_killed_under_sign_in_load_loses_no_acknowledged_binding() {
    let mut topology = crate::lab::fabrikam();
    topology.ports.sip_plain = true;
    let lab = Lab::up_topology(&topology, &["--users", "120"], &[]);
    let fe1 = registrar(&lab, "red-a.fabrikam.net");
    // The pool's two other Front Ends deliver, in turn.
    let others = [
        registrar(&lab, "red-b.fabrikam.net"),
        registrar(&lab, "red-c.fabrikam.net"),
    ];
    let users = lab.credentials_on("fe-red.fabrikam.net");
    // The first user sends the messages at the end; the others sign in, in turn.
    let (sender, signing_in) = users.split_first().unwrap();

    // Each client signs its share of users in at fe1 again and again, binding each to its
    // own address, until fe1 stops answering; it keeps what was acknowledged with 200.
    let acknowledged: Arc<Vec<AtomicUsize>> =
        Arc::new((0..CLIENTS).map(|_| AtomicUsize::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let mine: Vec<(String, String)> = signing_in
                .iter()
                .skip(c)
                .step_by(CLIENTS)
                .cloned()
                .collect();
            let acknowledged = acknowledged.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut ua = Ua::on(&format!("127.0.0.{}", 60 + c));
                let mut bound = BTreeMap::new();
                'load: for round in 0.. {
                    for (aor, password) in &mine {
                        if stop.load(Ordering::SeqCst) && round > 0 {
                            break 'load;
                        }
                        let register = ua.register(aor, ua.local());
                        let first = ua.fresh(&register);
                        let within = Duration::from_secs(2);
                        let Some(challenge) = ua.try_send(fe1, &first, within) else {
                            break 'load;
                        };
                        assert_eq!(challenge.status, 401, "{challenge:?}");
                        let mut second = ua.fresh(&register);
                        let header = answer(&challenge, &second, password, None, 1);
                        second.headers.push("Authorization", header);
                        let Some(ok) = ua.try_send(fe1, &second, within) else {
                            break 'load;
                        };
                        assert_eq!(ok.status, 200, "{ok:?}");
                        bound.insert(aor.clone(), ());
                        acknowledged[c].fetch_add(1, Ordering::SeqCst);
                    }
                }
                (ua, bound.into_keys().collect::<Vec<_>>())
            })
        })
        .collect();

    // fe1 is killed in the middle of it: once every client has signed all its users in
    // and is going round again, while the clients still send.
    let share = signing_in.len().div_ceil(CLIENTS);
    eventually(60, "every user signed in once", || {
        acknowledged
            .iter()
            .all(|n| n.load(Ordering::SeqCst) > share)
            .then_some(())
    });
    lab.kill("red-a.fabrikam.net");
    stop.store(true, Ordering::SeqCst);
    let clients: Vec<(Ua, Vec<String>)> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let told: usize = clients.iter().map(|(_, b)| b.len()).sum();
    assert_eq!(
        told,
        signing_in.len(),
        "every user was signed in at least once"
    );

    // The others deliver a message to every user whose sign-in was acknowledged, at the
    // address that sign-in bound.
    let (sender_aor, sender_password) = sender;
    let mut from = Ua::on("127.0.0.59");
    let delivered = Mutex::new(0usize);
    for (ua, bound) in &clients {
        for (n, aor) in bound.iter().enumerate() {
            let via = others[n % others.len()];
            let mut message = from.build(Method::Message, aor, sender_aor, aor);
            message.headers.push("Content-Type", "text/plain");
            message.body = format!("still here, {aor}").into_bytes();
            std::thread::scope(|s| {
                let received = s.spawn(|| {
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while Instant::now() < deadline {
                        // Late answers to the load's requests may still be queued.
                        if let Some(r) = ua.receive(Duration::from_millis(500))
                            && r.method == Method::Message
                        {
                            return Some(r);
                        }
                    }
                    None
                });
                let (answer, _) = from.authed(via, &message, sender_password, None);
                assert_eq!(answer.status, 200, "{aor}: {answer:?}");
                let got = received.join().unwrap().expect("delivered");
                assert_eq!(got.body, format!("still here, {aor}").into_bytes());
                *delivered.lock().unwrap() += 1;
            });
        }
    }
    assert_eq!(*delivered.lock().unwrap(), signing_in.len());
}

/// The seconds `answer` gives the binding of `contact`.
fn expires_of(answer: &sip::Response, contact: std::net::SocketAddr) -> u64 {
    let bound = answer.headers.get_all("Contact");
    let mine = bound
        .iter()
        .find(|c| c.contains(&contact.to_string()))
        .unwrap_or_else(|| panic!("{contact} is not among {bound:?}"));
    let (_, expires) = mine.split_once(";expires=").expect("expires");
    expires.parse().unwrap()
}

/// A refresh (a REGISTER binding again what the user holds) is answered from the Front
/// End's memory and written behind: the pool's other Front End reads it from the Back End
/// within the window, and a Front End stopped as an operator stops it writes what it
/// answered before it exits. On contoso (the first test is on fabrikam).
#[test]
fn refreshes_reach_the_back_end_within_the_window_and_before_a_front_end_stops() {
    let lab = Lab::up_with(&["--users", "4"]);
    let (aor, password) = lab.credentials_on("pool1.contoso.com").remove(0);
    let fe1 = registrar(&lab, "pool1-fe1.contoso.com");
    let fe2 = registrar(&lab, "pool1-fe2.contoso.com");
    let mut ua = Ua::on("127.0.0.62");
    let contact = ua.local();
    let binding = |ua: &mut Ua, expires: &str| {
        let mut r = ua.register(&aor, contact);
        r.headers.set("Expires", expires);
        r
    };
    // What the Back End holds, as fe2 reads it for a REGISTER without Contact.
    let (_, domain) = aor.trim_start_matches("sip:").split_once('@').unwrap();
    let ask = |ua: &mut Ua| {
        let query = ua.build(Method::Register, &format!("sip:{domain}"), &aor, &aor);
        let (answer, _) = ua.authed(fe2, &query, &password, None);
        assert_eq!(answer.status, 200, "{answer:?}");
        expires_of(&answer, contact)
    };

    // Signed in for five minutes (committed before the answer), then refreshed for an hour.
    let (first, _) = {
        let r = binding(&mut ua, "300");
        ua.authed(fe1, &r, &password, None)
    };
    assert_eq!(first.status, 200, "{first:?}");
    let (refresh, _) = {
        let r = binding(&mut ua, "3600");
        ua.authed(fe1, &r, &password, None)
    };
    assert_eq!(refresh.status, 200, "{refresh:?}");
    assert!(expires_of(&refresh, contact) > 3500);
    eventually(10, "the refresh written to the Back End", || {
        (ask(&mut ua) > 3500).then_some(())
    });

    // Refreshed for two minutes, and fe1 stopped at once (SIGTERM, as `lab down` does).
    let (refresh, _) = {
        let r = binding(&mut ua, "120");
        ua.authed(fe1, &r, &password, None)
    };
    assert_eq!(refresh.status, 200, "{refresh:?}");
    let pid = lab.server("pool1-fe1.contoso.com")["pid"].as_u64().unwrap();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    eventually(20, "fe1 stopped", || {
        let zombie = std::fs::read_to_string(proc_dir.join("stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true);
        zombie.then_some(())
    });
    let after = ask(&mut ua);
    assert!(
        after <= 120,
        "the last refresh was written as fe1 stopped: {after} s"
    );
}
