//! Two tandem deployments federating over SIP (issue 24): contoso.com and fabrikam.net,
//! each in a loopback block of its own, the second started with `lab up --federate-with`
//! the first. Each Access Edge finds the other through `_sipfederationtls._tcp` (each lab's
//! DNS server forwarding the other's zone), they prove who they are with certificates from
//! the one public CA, and a user of each messages a user of the other — before and after
//! the seed's SIP federation failover, run on one side and then on the other.

use std::process::Child;

use crate::failover::{client, user_of};
use crate::lab::{Lab, fabrikam};
use crate::{eventually, stderr, stdout};

/// What a user's client printed until it stopped.
fn received(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sends until delivered (a replica may still be applying a change, a DNS answer may be
/// cached for its 5 s): what the client said.
fn send_until_delivered(lab: &Lab, from: &str, to: &str, text: &str) -> String {
    eventually(30, &format!("'{text}' from {from} to reach {to}"), || {
        let out = client(lab, from, &["send", "--to", to, text]);
        out.status.success().then(|| stdout(&out))
    })
}

/// The external address of `edge` in the lab (its block).
fn external(lab: &Lab, t: &topology::Topology, edge: &str) -> String {
    t.server(edge)
        .unwrap()
        .server
        .external_address()
        .to_string()
        .replacen("127.0.", &lab.block(), 1)
}

#[test]
fn two_deployments_message_each_other_before_and_after_federation_failover_on_either_side() {
    let contoso_t = topology::contoso();
    let fabrikam_t = fabrikam();
    let contoso = Lab::up_topology(&contoso_t, &["--users", "1"], &[]);
    let fabrikam = Lab::up_topology(
        &fabrikam_t,
        &["--users", "1", "--federate-with", contoso.dir()],
        &[],
    );
    // A user of each, homed on the pool their federation Edge's next hop is.
    let alice = user_of(
        &contoso,
        &contoso_t.federation_edge_pool().unwrap().next_hop,
    );
    let bob = user_of(
        &fabrikam,
        &fabrikam_t.federation_edge_pool().unwrap().next_hop,
    );
    // Each deployment allows the other now (contoso's by New-CsAllowedDomain).
    let allowed = contoso.shell(None, "Get-CsAllowedDomain");
    assert!(
        stdout(&allowed).contains("fabrikam.net"),
        "{}",
        stdout(&allowed)
    );

    let exchange = |when: &str| {
        let at_bob = fabrikam.listen(&bob, 1, 60);
        let said = send_until_delivered(&contoso, &alice, &bob, &format!("to bob {when}"));
        assert!(said.contains("delivered"), "{said}");
        let got = received(at_bob);
        assert!(got.contains(&format!("to bob {when}")), "{got}");
        assert!(got.contains(&alice), "the sender is contoso's user: {got}");
        let at_alice = contoso.listen(&alice, 1, 60);
        send_until_delivered(&fabrikam, &bob, &alice, &format!("to alice {when}"));
        let got = received(at_alice);
        assert!(got.contains(&format!("to alice {when}")), "{got}");
    };
    exchange("before");

    // The benchmark: every message answered by bob's client across both deployments, and
    // counted there.
    let out = crate::run(&[
        "bench",
        "federation",
        "--lab",
        contoso.dir(),
        "--user",
        &alice,
        "--to",
        &bob,
        "--to-lab",
        fabrikam.dir(),
        "--count",
        "20",
        "--json",
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["delivered_and_counted"], 20, "{report}");
    assert!(
        report["latency_ms"]["p50"].as_f64().unwrap() > 0.0,
        "{report}"
    );

    // A user of ours cannot send to a domain that is no partner: refused, naming the fix.
    let out = client(
        &contoso,
        &alice,
        &["send", "--to", "sip:eve@adatum.example", "hi"],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("403") && stderr(&out).contains("New-CsAllowedDomain"),
        "{}",
        stderr(&out)
    );

    // contoso loses Edge pool 1 and runs the seed's SIP federation failover.
    contoso.kill("edgepool1.contoso.com");
    let text = contoso.runbook("pool1-fe1.contoso.com", "edge-federation-failover.ps1");
    assert!(text.contains("Enabled"), "{text}");
    exchange("after contoso's failover");

    // fabrikam loses its federation Edge pool (Dublin) and runs the same seed's steps with
    // its own names (examples/runbooks/fabrikam-federation-failover.ps1).
    let dublin = fabrikam_t.federation_edge_pool().unwrap().fqdn.clone();
    fabrikam.kill(&dublin);
    let cms = fabrikam_t.front_end_servers(&fabrikam_t.deployment.cms_pool)[0]
        .fqdn
        .clone();
    let (text, warned) = fabrikam.runbook_and_warnings(&cms, "fabrikam-federation-failover.ps1");
    let redmond = fabrikam_t.server("edge-red-a.fabrikam.net").unwrap();
    let redmond_outside = external(&fabrikam, &fabrikam_t, &redmond.server.fqdn);
    assert!(text.contains(&redmond_outside), "{text}");
    // Run Again said, in fabrikam's names, what the seed leaves out.
    assert!(
        warned.contains(&format!(
            "Set-DnsServerResourceRecord -ZoneName fabrikam.net -Name sip -RRType A -IPv4Address {redmond_outside}"
        )),
        "{warned}"
    );
    assert!(
        text.contains("contoso.com"),
        "fabrikam allows contoso: {text}"
    );
    exchange("after fabrikam's failover");
}
