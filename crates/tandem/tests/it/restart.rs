//! A server serves nobody in full mode before it knows: a pool failed over in disaster
//! mode and then restarted — or frozen and let run again, as a host that stalls or a
//! network that drops it for a while would — while its users write to it must not take one
//! of those writes (they would fork the users' data: the backup pool serves them now).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::cms::wait_all_up_to_date;
use crate::lab::{Lab, fabrikam};
use crate::{run, stderr, stdout};

const RED: &str = "fe-red.fabrikam.net";
const DUB: &str = "fe-dub.fabrikam.net";

/// A user of fe-dub, with the password from the lab's users.json.
fn dub_user(lab: &Lab) -> (String, String) {
    let sip = crate::failover::user_of(lab, DUB);
    let password = lab.password(&sip);
    (sip.trim_start_matches("sip:").to_string(), password)
}

/// The user-services addresses of fe-dub's Front Ends.
fn dub_front_ends(lab: &Lab) -> Vec<String> {
    lab.servers()
        .iter()
        .filter(|s| s["pool"] == DUB)
        .map(Lab::user_services)
        .collect()
}

/// What a writer saw from fe-dub's Front Ends while they came back.
#[derive(Default)]
struct Seen {
    saved: AtomicUsize,
    refused: AtomicUsize,
    redirected: AtomicUsize,
}

/// Writes a new contact to each of `bases` in turn, as fast as they answer, until `stop`.
fn writer(
    http: reqwest::ClientBuilder,
    bases: Vec<String>,
    user: (String, String),
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let client = http
                .redirect(reqwest::redirect::Policy::none())
                .timeout(std::time::Duration::from_secs(2))
                .build()
                .unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                for base in &bases {
                    n += 1;
                    let answer = client
                        .put(format!("{base}/users/v1/contacts/sip:w{n}@fabrikam.net"))
                        .basic_auth(&user.0, Some(&user.1))
                        .json(&serde_json::json!({ "group": "g", "display_name": "w" }))
                        .send()
                        .await;
                    match answer.map(|r| r.status().as_u16()) {
                        Ok(200) => seen.saved.fetch_add(1, Ordering::SeqCst),
                        Ok(307) => seen.redirected.fetch_add(1, Ordering::SeqCst),
                        Ok(_) => seen.refused.fetch_add(1, Ordering::SeqCst),
                        // Not listening yet.
                        Err(_) => 0,
                    };
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        });
    })
}

/// A fabrikam lab whose fe-dub is lost `rounds` times: each round `lose` takes fe-dub away,
/// fe-red takes its users with a disaster failover, and `bring_back` returns fe-dub while
/// its user writes to each of its Front Ends. No write may be taken before every Front End
/// sends the user to fe-red; then the users come home for the next round.
fn lost_and_back(rounds: usize, lose: impl Fn(&Lab), bring_back: impl Fn(&Lab)) {
    let lab = Lab::up_topology(&fabrikam(), &["--users", "2"], &[]);
    let user = dub_user(&lab);
    let bases = dub_front_ends(&lab);
    lab.ok(
        Some("red-a.fabrikam.net"),
        &format!(
            "Set-CsEdgeServer -Identity EdgeServer:edge-dub.fabrikam.net -Registrar Registrar:{RED}"
        ),
    );
    for round in 0..rounds {
        lose(&lab);
        lab.ok(
            Some("red-b.fabrikam.net"),
            &format!("Invoke-CsPoolFailOver -PoolFqdn {DUB} -DisasterMode"),
        );
        let seen = Arc::new(Seen::default());
        let stop = Arc::new(AtomicBool::new(false));
        let writing = writer(
            lab.http(),
            bases.clone(),
            user.clone(),
            seen.clone(),
            stop.clone(),
        );
        bring_back(&lab);
        // Every Front End has caught up and sends the user to fe-red.
        crate::eventually(20, "every Front End of fe-dub to redirect", || {
            (seen.redirected.load(Ordering::SeqCst) >= 3 * bases.len()).then_some(())
        });
        stop.store(true, Ordering::SeqCst);
        writing.join().unwrap();
        assert_eq!(
            seen.saved.load(Ordering::SeqCst),
            0,
            "round {round}: fe-dub took writes for users fe-red serves ({} refused, {} redirected)",
            seen.refused.load(Ordering::SeqCst),
            seen.redirected.load(Ordering::SeqCst)
        );
        let out = lab.shell(
            Some("dub-a.fabrikam.net"),
            &format!("Invoke-CsPoolFailBack -PoolFqdn {DUB}"),
        );
        assert!(
            out.status.success(),
            "round {round}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        wait_all_up_to_date(&lab, "red-a.fabrikam.net");
    }
}

#[test]
fn a_pool_failed_over_in_disaster_mode_takes_no_write_when_it_comes_back_twenty_runs_of_twenty() {
    lost_and_back(
        20,
        |lab| lab.kill(DUB),
        |lab| {
            let out = run(&["lab", "start", DUB, "--dir", lab.dir()]);
            assert!(out.status.success(), "{}", stderr(&out));
        },
    );
}

/// Rounds of the frozen-pool test: `TANDEM_PAUSE_ROUNDS` (3 by default in CI).
fn pause_rounds() -> usize {
    std::env::var("TANDEM_PAUSE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// fe-dub freezes (it answers nothing, its view of who serves whom stops there) and runs
/// again after the failover.
#[test]
fn a_pool_failed_over_while_frozen_takes_no_write_when_it_runs_again() {
    lost_and_back(
        pause_rounds(),
        |lab| lab.pause(DUB, true),
        |lab| lab.pause(DUB, false),
    );
}
