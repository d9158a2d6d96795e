//! The A/V Edge: a signed-in user gets relay credentials from its Front End pool (MRAS on
//! the Edge pool the pool is associated with), and coturn's own TURN client relays media
//! through that Edge with them. When the Edge pool is lost, the seed's step
//! (Set-CsPoolEdgeAssociation) moves the pool's media to the other site's Edge pool, and
//! the same client relays through it. On fabrikam: three Front Ends a pool, TLS only.

use crate::lab::{Lab, fabrikam};
use crate::{eventually, run, stderr, stdout};

const RED: &str = "fe-red.fabrikam.net";
const EDGE_RED: &str = "edge-red.fabrikam.net";
const EDGE_DUB: &str = "edge-dub.fabrikam.net";

/// `method url` as `user` (HTTP Basic), over a client trusting `roots`: the status and body.
fn as_user(
    client: reqwest::Client,
    method: reqwest::Method,
    url: String,
    user: &serde_json::Value,
    body: Option<Vec<u8>>,
) -> (u16, Vec<u8>) {
    let name = user["sip_address"]
        .as_str()
        .unwrap()
        .trim_start_matches("sip:");
    let password = user["password"].as_str().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut call = client.request(method, url).basic_auth(name, Some(password));
        if let Some(body) = body {
            call = call.header("content-type", "application/json").body(body);
        }
        let r = call.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.bytes().await.unwrap().to_vec())
    })
}

/// User services of a Front End of `pool`.
fn user_services(lab: &Lab, pool: &str) -> String {
    let server = lab
        .servers()
        .into_iter()
        .find(|s| s["pool"] == pool && s["role"] == "FrontEnd")
        .unwrap();
    Lab::user_services(&server)
}

/// `GET /users/v1/media-relay` for `user` on a Front End of `pool`: the status and body.
fn media_relay(lab: &Lab, pool: &str, user: &serde_json::Value) -> (u16, serde_json::Value) {
    let url = format!("{}/users/v1/media-relay", user_services(lab, pool));
    let (status, body) = as_user(
        lab.http().build().unwrap(),
        reqwest::Method::GET,
        url,
        user,
        None,
    );
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// What coturn's client counted relaying between two allocations on `relay` with the
/// credentials in `answer` (over TCP to the relay when `tcp`): sent and received.
fn coturn_relays(answer: &serde_json::Value, tcp: bool) -> (u64, u64, String) {
    coturn_relays_at(answer, "address", tcp)
}

/// The same, to the relay's address `side` names (`address`: outside, `internal_address`:
/// inside).
fn coturn_relays_at(answer: &serde_json::Value, side: &str, tcp: bool) -> (u64, u64, String) {
    let relay = &answer["relays"][0];
    let mut command = std::process::Command::new("turnutils_uclient");
    if tcp {
        command.arg("-t");
    }
    let out = command
        .args(["-y", "-c", "-n", "20", "-m", "2", "-l", "160", "-z", "5"])
        .args(["-u", answer["username"].as_str().unwrap()])
        .args(["-w", answer["password"].as_str().unwrap()])
        .args(["-p", &relay["port"].to_string()])
        .arg(relay[side].as_str().unwrap())
        .output()
        .expect("turnutils_uclient runs: install Debian's coturn (.ci/run does)");
    let said = format!("{}{}", stdout(&out), stderr(&out));
    let count = |label: &str| {
        said.lines()
            .rev()
            .find_map(|l| {
                let rest = &l[l.find(label)? + label.len()..];
                rest.split(|c: char| !c.is_ascii_digit())
                    .find(|p| !p.is_empty())?
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    };
    (count("tot_send_msgs="), count("tot_recv_msgs="), said)
}

/// Saves `bytes` as content of a meeting of `user`'s, at the user's pool.
fn save_content(lab: &Lab, user: &serde_json::Value, bytes: &[u8]) {
    let base = user_services(lab, RED);
    for (path, body) in [
        (
            "/users/v1/meetings/review",
            br#"{"subject": "Review", "start": "2026-12-07T10:00:00Z"}"#.to_vec(),
        ),
        ("/users/v1/meetings/review/content/deck.bin", bytes.to_vec()),
    ] {
        let client = lab.http().build().unwrap();
        let (status, said) = as_user(
            client,
            reqwest::Method::PUT,
            format!("{base}{path}"),
            user,
            Some(body),
        );
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&said));
    }
}

/// `GET .../content/deck.bin` from outside, at the Web Conferencing Edge `edge`
/// (its certificate from the lab's public CA): the status and the bytes.
fn download(lab: &Lab, edge: &str, user: &serde_json::Value) -> (u16, Vec<u8>) {
    download_from(lab, edge, user, "127.0.0.1".parse().unwrap())
}

/// The same, from the local address `from`.
fn download_from(
    lab: &Lab,
    edge: &str,
    user: &serde_json::Value,
    from: std::net::IpAddr,
) -> (u16, Vec<u8>) {
    let roots =
        pki::Roots::from_pem_file(&std::path::Path::new(lab.dir()).join("pki/public/ca.pem"))
            .unwrap();
    let client = api::https(&pki::client_config(&roots, None))
        .local_address(from)
        .build()
        .unwrap();
    let url = format!("{edge}/users/v1/meetings/review/content/deck.bin");
    as_user(client, reqwest::Method::GET, url, user, None)
}

/// A user homed on site Dublin's pool.
fn dub_user(lab: &Lab) -> serde_json::Value {
    lab.users()
        .into_iter()
        .find(|u| u["home_pool"] == "fe-dub.fabrikam.net")
        .unwrap()
}

/// `tandem client media` from `from` to `to`, 50 packets: its JSON report.
fn client_media(lab: &Lab, from: &serde_json::Value, to: &serde_json::Value) -> serde_json::Value {
    let out = run(&[
        "client",
        "--lab",
        lab.dir(),
        "--user",
        from["sip_address"].as_str().unwrap(),
        "media",
        "--to",
        to["sip_address"].as_str().unwrap(),
        "--count",
        "50",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

fn coturn_installed() -> bool {
    let found = std::process::Command::new("turnutils_uclient")
        .output()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("TANDEM_TEST_COTURN_REQUIRED").is_none(),
            "turnutils_uclient is missing: apt-get install coturn"
        );
        eprintln!("skipped: turnutils_uclient (Debian's coturn) is not installed");
    }
    found
}

#[test]
fn media_flows_through_the_associated_edge_and_through_the_other_sites_after_the_seeds_step() {
    if !coturn_installed() {
        return;
    }
    let lab = Lab::up_topology(&fabrikam(), &["--users", "2"], &[]);
    let user = lab
        .users()
        .into_iter()
        .find(|u| u["home_pool"] == RED)
        .unwrap();

    let (status, answer) = media_relay(&lab, RED, &user);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["edge_pool"], EDGE_RED, "{answer}");
    assert_eq!(answer["realm"], "fabrikam.net", "{answer}");
    for tcp in [false, true] {
        let (sent, received, said) = coturn_relays(&answer, tcp);
        assert_eq!((sent, received), (40, 40), "tcp {tcp}: {said}");
    }
    // The Edge counts it for Prometheus.
    let (status, _, body) = crate::metrics::scrape(
        &lab,
        &lab.server("edge-red-a.fabrikam.net"),
        Some(&lab.admin_token()),
    );
    assert_eq!(status, 200, "{body}");
    let samples = crate::metrics::parse(&body);
    let total = |name: &str, labels: &[(&str, &str)]| crate::metrics::sum(&samples, name, labels);
    assert!(
        total("tandem_edge_relay_allocations_total", &[]) >= 4.0,
        "{body}"
    );
    assert!(
        total(
            "tandem_edge_relay_packets_total",
            &[("direction", "to_peers")]
        ) >= 80.0,
        "{body}"
    );
    assert!(
        total("tandem_edge_mras_credentials_issued_total", &[]) >= 1.0,
        "{body}"
    );
    // A client inside reaches the same relay on the Edge's internal side.
    let inside = answer["relays"][0]["internal_address"].as_str().unwrap();
    assert_ne!(inside, answer["relays"][0]["address"], "{answer}");
    let (sent, received, said) = coturn_relays_at(&answer, "internal_address", false);
    assert_eq!((sent, received), (40, 40), "inside: {said}");
    // Meeting content: saved at the red pool, downloaded from outside through red's Web
    // Conferencing Edge, the one the user's pool is associated with; Dublin's refuses it.
    let deck: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    save_content(&lab, &user, &deck);
    let through = |answer: &serde_json::Value| {
        download(&lab, answer["web_conferencing"][0].as_str().unwrap(), &user)
    };
    assert_eq!(through(&answer), (200, deck.clone()));
    let (_, dubs) = media_relay(&lab, "fe-dub.fabrikam.net", &dub_user(&lab));
    let dub_edge = dubs["web_conferencing"][0].as_str().unwrap().to_string();
    let (status, body) = download(&lab, &dub_edge, &user);
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(
        String::from_utf8_lossy(&body).contains("goes through edge-red.fabrikam.net"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // tandem's own client: a red user's packets through red's relay and dub's to a dub user.
    let report = client_media(&lab, &user, &dub_user(&lab));
    assert_eq!(report["from_edge_pool"], EDGE_RED, "{report}");
    assert_eq!(report["to_edge_pool"], EDGE_DUB, "{report}");
    assert_eq!(
        (report["sent"].as_u64(), report["received"].as_u64()),
        (Some(50), Some(50)),
        "{report}"
    );
    // The services: RTCMEDIARELAY and RTCMRAUTH run on every Edge.
    let services = lab.json(
        None,
        "Get-CsWindowsService -ComputerName edge-red-a.fabrikam.net",
    );
    let names: Vec<&str> = services
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["Name"].as_str())
        .collect();
    assert!(
        names.contains(&"RTCMEDIARELAY") && names.contains(&"RTCMRAUTH"),
        "{names:?}"
    );

    // Site red's Edge pool is lost: no relay credentials, and the answer says what moves it.
    lab.kill(EDGE_RED);
    let (status, refused) = media_relay(&lab, RED, &user);
    assert_eq!(status, 503, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("Set-CsPoolEdgeAssociation -PoolFqdn fe-red.fabrikam.net"),
        "{refused}"
    );

    // The seed's step: the pool's media to the Edge pool of the site still running.
    let out = lab.shell(
        None,
        &format!("Set-CsPoolEdgeAssociation -PoolFqdn {RED} -EdgePoolFqdn {EDGE_DUB}"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let association = lab.json(None, &format!("Get-CsPoolEdgeAssociation -PoolFqdn {RED}"));
    let association = association
        .as_array()
        .map_or(association.clone(), |a| a[0].clone());
    assert_eq!(association["EdgePoolFqdn"], EDGE_DUB, "{association}");
    let moved = eventually(30, "the association replicated to fe-red", || {
        let (status, answer) = media_relay(&lab, RED, &user);
        (status == 200 && answer["edge_pool"] == EDGE_DUB).then_some(answer)
    });
    // The shell shows the relays the user was given.
    let given = &moved["relays"][0];
    assert_eq!(
        association["MediaRelays"][0],
        format!(
            "edge-dub-a.fabrikam.net {}:{}",
            given["address"].as_str().unwrap(),
            given["port"]
        ),
        "{association} {moved}"
    );
    for tcp in [false, true] {
        let (sent, received, said) = coturn_relays(&moved, tcp);
        assert_eq!((sent, received), (40, 40), "tcp {tcp}: {said}");
    }
    // And the meeting content goes through Dublin's Web Conferencing Edge now, for tandem's
    // client too.
    assert_eq!(through(&moved), (200, deck.clone()));
    let saved = std::path::Path::new(lab.dir()).join("deck-external.bin");
    let out = run(&[
        "client",
        "--lab",
        lab.dir(),
        "--user",
        user["sip_address"].as_str().unwrap(),
        "download",
        "review",
        "deck.bin",
        "--external",
        "--out",
        saved.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Web Conferencing Edge of edge-dub.fabrikam.net"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&saved).unwrap(), deck);
    // Guessing the user's password through the Edge locks out the guesser's address, not
    // the Edge's: the user downloading from elsewhere still gets the content.
    let edge = moved["web_conferencing"][0].as_str().unwrap();
    let mut wrong = user.clone();
    wrong["password"] = "not-the-password".into();
    let guesser: std::net::IpAddr = "127.0.0.3".parse().unwrap();
    for _ in 0..8 {
        let (status, _) = download_from(&lab, edge, &wrong, guesser);
        assert_ne!(status, 200);
    }
    let (status, _) = download_from(&lab, edge, &user, guesser);
    assert_ne!(
        status, 200,
        "the guesser's address is locked out, even with the password"
    );
    let elsewhere: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    assert_eq!(
        download_from(&lab, edge, &user, elsewhere),
        (200, deck.clone())
    );
    // Both users' media now goes through dub's Edge pool, every packet of it.
    let report = client_media(&lab, &user, &dub_user(&lab));
    assert_eq!(report["from_edge_pool"], EDGE_DUB, "{report}");
    assert_eq!(
        (report["sent"].as_u64(), report["received"].as_u64()),
        (Some(50), Some(50)),
        "{report}"
    );
    // A stopped A/V Edge service closes the relay; started again, it relays again.
    let edge = "edge-dub-a.fabrikam.net";
    let relay_state = || {
        let rows = lab.json(None, &format!("Invoke-CsServerSetup -ComputerName {edge}"));
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["Component"] == "A/V Edge (media relay)")
            .map(|r| r["State"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(relay_state(), "Running");
    lab.ok(
        None,
        &format!("Stop-CsWindowsService -Name RTCMEDIARELAY -ComputerName {edge}"),
    );
    eventually(10, "the relay closed", || {
        (relay_state() == "Stopped").then_some(())
    });
    lab.ok(
        None,
        &format!("Start-CsWindowsService -Name RTCMEDIARELAY -ComputerName {edge}"),
    );
    eventually(10, "the relay open again", || {
        (relay_state() == "Running").then_some(())
    });
    let (sent, received, said) = coturn_relays(&moved, false);
    assert_eq!((sent, received), (40, 40), "{said}");
}

#[test]
fn the_media_benchmark_measures_tandems_relay_and_coturns_side_by_side() {
    if !coturn_installed() {
        return;
    }
    let out = run(&[
        "bench",
        "media",
        "--allocations",
        "40",
        "--seconds",
        "1",
        "--pairs",
        "1",
        "--peer",
        "coturn",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let relays = v["relays"].as_array().unwrap();
    assert_eq!(relays.len(), 2, "{v}");
    for (relay, name) in relays.iter().zip(["tandem", "coturn"]) {
        assert_eq!(relay["relay"], name, "{v}");
        assert_eq!(relay["allocations"], 40, "{v}");
        assert!(relay["allocations_per_sec"].as_f64().unwrap() > 0.0, "{v}");
        assert!(relay["packets_relayed"].as_u64().unwrap() > 0, "{v}");
    }
    assert!(v["ratio_allocations"].as_f64().is_some(), "{v}");
    assert!(v["ratio_packets"].as_f64().is_some(), "{v}");
}
