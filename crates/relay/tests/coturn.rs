//! coturn's own client (`turnutils_uclient`, Debian's `coturn`) allocates on the relay with
//! credentials issued from the shared secret and relays between two of its clients, over
//! UDP and over TCP. Skipped (with a line saying so) where coturn is not installed, unless
//! TANDEM_TEST_COTURN_REQUIRED is set, as .ci/run does.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use relay::{Config, Limits, Relay, Secret};

fn coturn_client() -> Option<std::path::PathBuf> {
    let found = std::process::Command::new("turnutils_uclient")
        .output()
        .is_ok()
        .then(|| "turnutils_uclient".into());
    if found.is_none() {
        assert!(
            std::env::var_os("TANDEM_TEST_COTURN_REQUIRED").is_none(),
            "turnutils_uclient is missing: apt-get install coturn"
        );
        eprintln!("skipped: turnutils_uclient (Debian's coturn) is not installed");
    }
    found
}

/// What the client printed: its lines with the totals.
async fn run_uclient(relay: &Relay, args: &[&str], user: &str, password: &str) -> String {
    let port = relay.udp.port().to_string();
    let out = tokio::process::Command::new("turnutils_uclient")
        .args(args)
        .args(["-y", "-c", "-n", "20", "-m", "2", "-l", "120", "-z", "5"])
        .args(["-u", user, "-w", password, "-p", &port])
        .arg(relay.udp.ip().to_string())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("turnutils_uclient finishes within a minute")
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The number after `label` on the last line that has it (`Total lost packets 0 (...)`,
/// `tot_send_msgs=40,`).
fn total(said: &str, label: &str) -> Option<u64> {
    let line = said.lines().rev().find(|l| l.contains(label))?;
    let rest = &line[line.find(label)? + label.len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .find(|part| !part.is_empty())?
        .parse()
        .ok()
}

#[tokio::test]
async fn coturns_client_relays_between_two_allocations_over_udp_and_tcp() {
    if coturn_client().is_none() {
        return;
    }
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let secret = Secret::new(*b"a secret of this deployment 32b!");
    let relay = Relay::start(Config {
        listen: SocketAddr::new(local, 0),
        internal: None,
        relay_ip: local,
        realm: "fabrikam.net".into(),
        secret: secret.clone(),
        forbidden_peers: vec![],
        limits: Limits::DEFAULT,
        clock: clock::Clock::system(),
    })
    .await
    .unwrap();
    let now = clock::Clock::system().now_ms() / 1000;
    let credentials = secret.issue("alice@fabrikam.net", now, 3600);
    for transport in [&[][..], &["-t"][..]] {
        let said = run_uclient(
            &relay,
            transport,
            &credentials.username,
            &credentials.password,
        )
        .await;
        assert_eq!(
            total(&said, "Total lost packets"),
            Some(0),
            "{transport:?}: {said}"
        );
        // Two clients, 20 messages each, each one relayed to the other and counted there.
        assert_eq!(
            total(&said, "tot_send_msgs="),
            Some(40),
            "{transport:?}: {said}"
        );
        assert_eq!(
            total(&said, "tot_recv_msgs="),
            Some(40),
            "{transport:?}: {said}"
        );
    }
    assert!(
        relay
            .stats()
            .allocations
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 4
    );
    // The wrong password: coturn's client gets no allocation.
    let refused = || {
        relay
            .stats()
            .unauthorized
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = refused();
    let said = run_uclient(&relay, &[], &credentials.username, "not-the-password").await;
    assert!(said.contains("Cannot complete Allocation"), "{said}");
    // The first request of each is challenged, the one with the wrong password refused.
    assert!(refused() >= before + 2, "{said}");
}
