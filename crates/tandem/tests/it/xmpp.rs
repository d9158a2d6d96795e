//! The XMPP gateway with a real XMPP server (issue 24): Prosody, started on a lab address
//! as contoso's XMPP partner litwareinc.com, resolving contoso.com through the lab's DNS
//! server (and the lab's DNS holding litwareinc.com's zone, as the Internet's would). A
//! Prosody user and a tandem user exchange messages both ways — SASL EXTERNAL with the
//! certificates of the lab's public CA — before and after the seed's XMPP failover (Edge
//! pool 1 killed, the route and the DNS records moved to Edge pool 2). On fabrikam.net, a
//! second Prosody, adatum.com with a self-signed certificate, is refused until a cmdlet
//! allows it, and then proves its domain with Server Dialback.

use std::net::{IpAddr, SocketAddr};
use std::process::Child;
use std::time::Duration;

use crate::failover::{client, user_of};
use crate::lab::{Lab, fabrikam};
use crate::prosody::{Prosody, ProsodyOptions};
use crate::{eventually, stderr, stdout};

fn prosody_installed() -> bool {
    let found = std::path::Path::new("/usr/bin/prosody").exists()
        && std::process::Command::new(crate::prosody::PYTHON)
            .args(["-c", "import slixmpp"])
            .output()
            .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("TANDEM_TEST_PROSODY_REQUIRED").is_none(),
            "Prosody or slixmpp is missing: apt-get install prosody lua-unbound python3-slixmpp"
        );
        eprintln!(
            "skipped: Prosody (Debian's prosody, lua-unbound, python3-slixmpp) is not installed"
        );
    }
    found
}

/// The lab's DNS server (DNS port).
fn lab_dns(lab: &Lab) -> SocketAddr {
    let dns = lab
        .servers()
        .into_iter()
        .find(|s| s["role"] == "Dns")
        .expect("the lab has a DNS server");
    SocketAddr::new(
        dns["address"].as_str().unwrap().parse().unwrap(),
        dns["dns_port"].as_u64().unwrap() as u16,
    )
}

/// What a user's client printed until it stopped.
fn received(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Edge's counter of XMPP authentications by `method` and `direction`.
fn authentications(lab: &Lab, edge: &str, direction: &str, method: &str) -> u64 {
    let (_, _, text) = crate::metrics::scrape(lab, &lab.server(edge), Some(&lab.admin_token()));
    let labels = [
        format!("direction=\"{direction}\""),
        format!("method=\"{method}\""),
    ];
    text.lines()
        .filter(|l| l.starts_with("tandem_edge_xmpp_authentications_total{"))
        .filter(|l| labels.iter().all(|label| l.contains(label.as_str())))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// `tandem bench federation` of 20 messages from `user` to `to` (with `extra` options):
/// its JSON report.
fn bench(lab: &Lab, user: &str, to: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "bench",
        "federation",
        "--lab",
        lab.dir(),
        "--user",
        user,
        "--to",
        to,
        "--count",
        "20",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = crate::run(&args);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

/// A message each way between `xmpp_user` (on `prosody`) and `ours`: tandem to XMPP with
/// `tandem client send`, XMPP to tandem with the XMPP client, the tandem user listening.
fn exchange(lab: &Lab, prosody: &Prosody, xmpp_user: &str, ours: &str, when: &str) {
    let ours_jid = ours.trim_start_matches("sip:");
    let theirs = format!("sip:{}", prosody.jid(xmpp_user));
    // tandem → XMPP.
    let at_xmpp = prosody.receiver(xmpp_user, ours_jid, 1, Duration::from_secs(40));
    let text = format!("from tandem {when}");
    eventually(30, &format!("'{text}' to reach {theirs}"), || {
        let out = client(lab, ours, &["send", "--to", &theirs, &text]);
        out.status.success().then_some(())
    });
    let got = at_xmpp.wait().expect("the XMPP user receives");
    assert!(
        got.iter()
            .any(|(from, body)| from == ours_jid && *body == text),
        "{got:?}\n{}",
        prosody.diagnostics()
    );
    // XMPP → tandem.
    let at_ours = lab.listen(ours, 1, 40);
    let text = format!("from xmpp {when}");
    // Until it does not bounce: Prosody may hold DNS answers from before a move for their
    // 5 s, and bounces what it cannot deliver (the client exits 4 then).
    eventually(30, &format!("'{text}' not to bounce"), || {
        let out = prosody
            .client(xmpp_user)
            .args(["send", "--to", ours_jid, "--text", &text, "--linger", "2"])
            .output()
            .unwrap();
        match out.status.code() {
            Some(0) => Some(()),
            Some(4) => None,
            _ => panic!(
                "the XMPP client failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                prosody.diagnostics()
            ),
        }
    });
    let got = received(at_ours);
    assert!(
        got.contains(&text) && got.contains(&prosody.jid(xmpp_user)),
        "{got}\n{}",
        prosody.diagnostics()
    );
}

#[test]
fn a_prosody_user_and_a_tandem_user_exchange_messages_before_and_after_the_xmpp_failover() {
    if !prosody_installed() {
        return;
    }
    let lab = Lab::up_with(&["--users", "1"]);
    let b = lab.block();
    let bob = user_of(&lab, "pool1.contoso.com");
    let cms = "pool1-fe1.contoso.com";
    // litwareinc.com's DNS zone in the lab's DNS server; its server on 127.B.77.10.
    lab.runbook(cms, "xmpp-partner-litwareinc.ps1");
    let pki = std::path::Path::new(lab.dir()).join("pki");
    let cert = pki.join("partners/litwareinc.com/tls");
    let litware = Prosody::start(
        ProsodyOptions::new(
            "litwareinc.com",
            format!("{b}77.10").parse::<IpAddr>().unwrap(),
            lab_dns(&lab),
        )
        .user("alice", "alice-secret")
        .certificates(
            &cert.join("cert.pem"),
            &cert.join("key.pem"),
            &pki.join("public/ca.pem"),
        ),
    );
    exchange(&lab, &litware, "alice", &bob, "before the failover");
    // The benchmark's XMPP path: each message passed on by the gateway, and all of them
    // received by the XMPP user.
    let at_alice = litware.receiver(
        "alice",
        bob.trim_start_matches("sip:"),
        20,
        Duration::from_secs(60),
    );
    let report = bench(&lab, &bob, "sip:alice@litwareinc.com", &[]);
    assert_eq!(report["messages"], 20, "{report}");
    let got = at_alice
        .wait()
        .expect("the XMPP user receives every message");
    assert_eq!(
        got.iter()
            .filter(|(_, body)| body.starts_with("bench message"))
            .count(),
        20
    );
    // And there and back: the XMPP user echoes each message, which comes back to bob.
    let echoing = litware.echo(
        "alice",
        bob.trim_start_matches("sip:"),
        20,
        Duration::from_secs(60),
    );
    let report = bench(&lab, &bob, "sip:alice@litwareinc.com", &["--echo"]);
    assert!(
        report["path"].as_str().unwrap().contains("echo"),
        "{report}"
    );
    echoing.wait().expect("the XMPP user echoed every message");
    // Both directions proved with certificates (SASL EXTERNAL), none with dialback.
    let edge1 = "edgeserver1.contoso.com";
    assert!(authentications(&lab, edge1, "in", "sasl_external") >= 1);
    assert!(authentications(&lab, edge1, "out", "sasl_external") >= 1);
    assert_eq!(authentications(&lab, edge1, "in", "dialback"), 0);

    // Edge pool 1 is lost; the seed's XMPP failover moves the route and DNS to Edge pool 2.
    lab.kill("edgepool1.contoso.com");
    let text = lab.runbook(cms, "edge-xmpp-failover.ps1");
    assert!(text.contains("TcpTestSucceeded : True"), "{text}");
    exchange(&lab, &litware, "alice", &bob, "after the failover");
    let edge2 = "edgeserver2.contoso.com";
    assert!(authentications(&lab, edge2, "in", "sasl_external") >= 1);
}

#[test]
fn on_another_deployment_an_xmpp_partner_is_refused_until_allowed_then_proves_itself_by_dialback() {
    if !prosody_installed() {
        return;
    }
    let t = fabrikam();
    let lab = Lab::up_topology(&t, &["--users", "1"], &[]);
    let b = lab.block();
    // The Edge on a site's XMPP route, and a user of the pool it hands messages to.
    let edge = t
        .sites
        .iter()
        .find_map(|s| s.xmpp_federation_route.as_deref())
        .map(topology::route_target)
        .expect("fabrikam has an XMPP route")
        .to_string();
    let edge_pool = t.server(&edge).unwrap().pool_fqdn.to_string();
    let bob = user_of(&lab, &t.edge_pool(&edge_pool).unwrap().next_hop);
    let cms = t.front_end_servers(&t.deployment.cms_pool)[0].fqdn.clone();
    let edge = edge.as_str();
    // adatum.com, self-signed: not an allowed partner yet, so its stream is refused.
    let adatum = Prosody::start(
        ProsodyOptions::new(
            "adatum.com",
            format!("{b}77.11").parse::<IpAddr>().unwrap(),
            lab_dns(&lab),
        )
        .user("carol", "carol-secret")
        .secure_auth(false),
    );
    let refused_before = authentications(&lab, edge, "in", "refused");
    let out = adatum
        .client("carol")
        .args([
            "send",
            "--to",
            bob.trim_start_matches("sip:"),
            "--text",
            "too soon",
        ])
        .args(["--linger", "10"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "the message bounces: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(authentications(&lab, edge, "in", "refused") > refused_before);
    // Nor can a user of ours write to it.
    let out = client(&lab, &bob, &["send", "--to", "sip:carol@adatum.com", "no"]);
    assert!(
        stderr(&out).contains("New-CsXmppAllowedPartner -Identity adatum.com"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    // Allowed (with its DNS zone), it proves its domain with dialback, both ways (the
    // exchange retries until the replicas it goes through have the change).
    lab.runbook(&cms, "xmpp-partner-adatum.ps1");
    exchange(&lab, &adatum, "carol", &bob, "with dialback");
    assert!(authentications(&lab, edge, "in", "dialback") >= 1);
    assert!(authentications(&lab, edge, "out", "dialback") >= 1);
}
