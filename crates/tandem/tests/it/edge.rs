//! Edge pools against a real lab: a federated partner (`tandem partner`, over mutual TLS
//! with the certificate the lab issued to fabrikam.com) reaches a signed-in user through
//! the Access Edge found in the lab's DNS, before, during and after each procedure of
//! seeds 000 and 002; XMPP streams; service control; bad input.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Child;
use std::time::Duration;

use crate::failover::user_of;
use crate::lab::Lab;
use crate::{eventually, run, stderr, stdout};

/// A federated message from fabrikam.com: the status line, or the error.
fn federate(lab: &Lab, to: &str, text: &str) -> (bool, String) {
    let out = run(&["partner", "--lab", lab.dir(), "message", "--to", to, text]);
    (
        out.status.success(),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

/// Sends until one is delivered (the DNS answer may be cached for its TTL, a replica may
/// still be applying the change).
fn federate_until_delivered(lab: &Lab, to: &str, text: &str) -> String {
    eventually(20, &format!("{text} to be delivered"), || {
        let (ok, said) = federate(lab, to, text);
        ok.then_some(said)
    })
}

fn dns_a(lab: &Lab, name: &str) -> String {
    let out = run(&["dns", "query", "--lab", lab.dir(), "--json", name, "A"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    v["answer"][0]["address"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A TLS connection to the Access Edge at `edge`, as fabrikam.com's federation server:
/// the lab's public CA trusted, fabrikam.com's certificate presented.
fn partner_stream(
    lab: &Lab,
    edge: &str,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    partner_tls(lab, std::net::TcpStream::connect(edge).unwrap())
}

/// TLS over `tcp` (a connection to the Access Edge), as fabrikam.com's federation server.
pub(crate) fn partner_tls(
    lab: &Lab,
    tcp: std::net::TcpStream,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    let dir = Path::new(lab.dir()).join("pki");
    let roots = pki::Roots::from_pem_file(&dir.join("public/ca.pem")).unwrap();
    let identity = pki::CertStore::open(&dir.join("partners/fabrikam.com")).unwrap();
    let config = pki::client_config(&roots, Some(identity));
    let name = rustls::pki_types::ServerName::try_from("sip.contoso.com").unwrap();
    let connection = rustls::ClientConnection::new(config, name).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    rustls::StreamOwned::new(connection, tcp)
}

fn received(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn federation_fails_over_to_edge_pool_2_and_back_and_messages_reach_the_user() {
    let lab = Lab::up_env(&["--users", "2"], &[]);
    let alice = user_of(&lab, "pool1.contoso.com");
    let b = lab.block();
    let listener = lab.listen(&alice, 4, 60);
    let said = federate_until_delivered(&lab, &alice, "before");
    assert!(said.contains(&format!("via {b}1.22:5061")), "{said}");
    // Edge pool 1 is lost: federated traffic fails with a clear error.
    lab.kill("edgepool1.contoso.com");
    let (ok, said) = federate(&lab, &alice, "lost");
    assert!(!ok);
    assert!(
        said.contains("sending to the Access Edge") && said.contains("refused"),
        "{said}"
    );
    // Edge pool 2 without federation refuses, naming the pool that has it.
    let out = run(&[
        "partner",
        "--lab",
        lab.dir(),
        "message",
        "--to",
        &alice,
        "wrong edge",
        "--via",
        &format!("{b}2.22:5061"),
    ]);
    assert!(
        stdout(&out).contains("403 Forbidden (federation is not enabled on edgepool2.contoso.com"),
        "{}",
        stdout(&out)
    );
    let (text, warned) =
        lab.runbook_and_warnings("pool1-fe1.contoso.com", "edge-federation-failover.ps1");
    assert!(text.contains("Enabled"), "{text}");
    // Run Again said what the seed leaves out: partners still find Edge pool 1.
    assert!(
        warned.contains(&format!(
            "Set-DnsServerResourceRecord -ZoneName contoso.com -Name sip -RRType A -IPv4Address {b}2.22"
        )) && warned.contains(&format!("points at {b}1.22")),
        "{warned}"
    );
    assert_eq!(dns_a(&lab, "sip.contoso.com"), format!("{b}2.22"));
    // Once repointed, Run Again at once says nothing of it (it asks the DNS afresh).
    let out = run(&[
        "shell",
        "--lab",
        lab.dir(),
        "-c",
        "Invoke-CsServerSetup -ComputerName edgeserver2.contoso.com",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("carries federation now"),
        "{}",
        stderr(&out)
    );
    let said = federate_until_delivered(&lab, &alice, "during");
    assert!(said.contains(&format!("via {b}2.22:5061")), "{said}");
    // Edge pool 1 is back: fail back.
    let out = run(&["lab", "start", "edgepool1.contoso.com", "--dir", lab.dir()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, warned) =
        lab.runbook_and_warnings("pool1-fe1.contoso.com", "edge-federation-failback.ps1");
    assert!(
        warned.contains(&format!("-Name sip -RRType A -IPv4Address {b}1.22")),
        "{warned}"
    );
    assert_eq!(dns_a(&lab, "sip.contoso.com"), format!("{b}1.22"));
    let said = federate_until_delivered(&lab, &alice, "after");
    assert!(said.contains(&format!("via {b}1.22:5061")), "{said}");
    let _ = federate(&lab, &alice, "last");
    let got = received(listener);
    for text in ["before", "during", "after"] {
        assert!(
            got.contains(&format!("sip:bob@fabrikam.com: {text}")),
            "{text}: {got}"
        );
    }
    assert!(!got.contains(": lost"), "{got}");
}

/// Opens an XMPP stream at `via` (or where DNS says) and returns the answer.
fn xmpp(lab: &Lab, raw: Option<&str>) -> (bool, String) {
    let mut args = vec!["partner", "--lab", lab.dir(), "xmpp"];
    if let Some(r) = raw {
        args.extend(["--raw", r]);
    }
    let out = run(&args);
    (
        out.status.success(),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

#[test]
fn xmpp_fails_over_to_edge_pool_2_and_back_with_the_dns_changes() {
    let lab = Lab::up();
    let b = lab.block();
    let (ok, said) = xmpp(&lab, None);
    assert!(ok && said.contains("<stream:features>"), "{said}");
    lab.kill("edgepool1.contoso.com");
    let (ok, said) = xmpp(&lab, None);
    assert!(
        !ok && said.contains("connecting to the XMPP gateway"),
        "{said}"
    );
    let text = lab.runbook("pool1-fe1.contoso.com", "edge-xmpp-failover.ps1");
    assert!(text.contains("TcpTestSucceeded : True"), "{text}");
    assert!(text.contains("the XMPP route of Site2"), "{text}");
    assert_eq!(dns_a(&lab, "xmpp.contoso.com"), format!("{b}2.22"));
    let (ok, said) = xmpp(&lab, None);
    assert!(ok && said.contains("<stream:features>"), "{said}");
    // Edge pool 1 is back; XMPP returns to it.
    let out = run(&["lab", "start", "edgepool1.contoso.com", "--dir", lab.dir()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = lab.runbook("pool1-fe1.contoso.com", "edge-xmpp-failback.ps1");
    assert!(text.contains("TcpTestSucceeded : True"), "{text}");
    assert_eq!(dns_a(&lab, "xmpp.contoso.com"), format!("{b}1.22"));
    let (ok, said) = xmpp(&lab, None);
    assert!(ok && said.contains("<stream:features>"), "{said}");
    // A stopped RTCXMPPTGWPX stops listening; started again, it listens.
    lab.ok(
        None,
        "Stop-CsWindowsService -Name RTCXMPPTGWPX -ComputerName edgeserver1.contoso.com",
    );
    eventually(5, "the XMPP listener to close", || {
        (!xmpp(&lab, None).0).then_some(())
    });
    lab.ok(
        None,
        "Start-CsWindowsService -Name RTCXMPPTGWPX -ComputerName edgeserver1.contoso.com",
    );
    eventually(5, "the XMPP listener to open again", || {
        xmpp(&lab, None).0.then_some(())
    });
    // Malformed stream headers get a stream error; the gateway goes on.
    for bad in [
        "<html>",
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
        "\u{1}\u{2}",
    ] {
        let (ok, said) = xmpp(&lab, Some(bad));
        assert!(!ok && said.contains("bad-format"), "{bad}: {said}");
    }
    assert!(xmpp(&lab, None).0);
    // A domain that is no XMPP partner gets no stream; an allowed one that sends a stanza
    // before it has proved its domain has its stream closed; neither stops the gateway.
    let gateway = format!("{b}1.22:5269");
    let said = raw_xmpp(
        &gateway,
        "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='eve.example' to='contoso.com' version='1.0'>",
    );
    assert!(
        said.contains("policy-violation") && said.contains("New-CsXmppAllowedPartner"),
        "{said}"
    );
    let said = raw_xmpp(
        &gateway,
        "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='litwareinc.com' to='contoso.com' version='1.0'><message from='mallory@litwareinc.com' to='user0001.pool1@contoso.com'><body>unproved</body></message>",
    );
    assert!(said.contains("not-authorized"), "{said}");
    assert!(xmpp(&lab, None).0);
}

/// Sends `text` to the XMPP gateway at `at` and gives what it answered until it closed the
/// stream (or 5 s passed).
fn raw_xmpp(at: &str, text: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(at).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    s.write_all(text.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = s.read(&mut chunk) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
        if String::from_utf8_lossy(&got).contains("</stream:stream>") {
            break;
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn the_next_hop_moves_before_pool1_fails_over_and_media_moves_with_the_edge() {
    let lab = Lab::up_env(&["--users", "2"], &[]);
    let alice = user_of(&lab, "pool1.contoso.com");
    // Failing pool1 over while Edge pool 1 uses it as next hop: the documented error.
    let out = lab.shell(
        None,
        "Invoke-CsPoolFailOver -PoolFqdn pool1.contoso.com -Force",
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is specified in topology as the next hop for the Edge server"),
        "{}",
        stderr(&out)
    );
    lab.ok(
        None,
        "Set-CsEdgeServer -Identity EdgeServer:edgepool1.contoso.com -Registrar Registrar:pool2.contoso.com",
    );
    let setup = lab.shell(
        None,
        "Invoke-CsServerSetup -ComputerName edgeserver1.contoso.com",
    );
    assert!(
        stdout(&setup).contains("pool2.contoso.com"),
        "{}",
        stdout(&setup)
    );
    let out = lab.shell(None, "Invoke-CsPoolFailOver -PoolFqdn pool1.contoso.com");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    // Federated messages reach Alice, now at pool2, through Edge pool 1 and its new next hop.
    let listener = lab.listen(&alice, 1, 60);
    federate_until_delivered(&lab, &alice, "after the failover");
    assert!(received(listener).contains("after the failover"));
    // Media: pool1's Edge association moves to Edge pool 2 and back.
    let text = lab.runbook("pool1-fe2.contoso.com", "edge-media-association.ps1");
    assert!(text.contains("edgepool2.contoso.com"), "{text}");
    let text = lab.runbook("pool1-fe2.contoso.com", "edge-media-association-back.ps1");
    assert!(text.contains("edgepool1.contoso.com"), "{text}");
}

#[test]
fn malformed_sip_from_a_federated_peer_gets_an_answer_and_stops_nothing() {
    let lab = Lab::up();
    let b = lab.block();
    let edge = format!("{b}1.22:5061");
    // Malformed but addressable: 400. Unframeable: the connection is closed.
    let bad = "MESSAGE sip:a@contoso.com SIP/2.0\r\nVia: SIP/2.0/TCP 1.2.3.4;branch=z9hG4bK1\r\nFrom: <sip:b@fabrikam.com>;tag=1\r\nTo: <sip:a@contoso.com>\r\nCall-ID: x\r\nCSeq: one MESSAGE\r\nContent-Length: 0\r\n\r\n";
    let mut s = partner_stream(&lab, &edge);
    s.write_all(bad.as_bytes()).unwrap();
    let mut buf = [0u8; 2048];
    let n = s.read(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 400"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let mut s = partner_stream(&lab, &edge);
    s.write_all(&[0xff; 100_000]).unwrap_or(());
    drop(s);
    // A peer cannot pass for one of our users, even with its own valid certificate.
    let fabrikam = format!("{}/pki/partners/fabrikam.com", lab.dir());
    let out = run(&[
        "partner",
        "--lab",
        lab.dir(),
        "message",
        "--from",
        "sip:ceo@contoso.com.",
        "--to",
        "sip:nobody@contoso.com",
        "--cert-dir",
        &fabrikam,
        "hi",
    ]);
    assert!(
        stdout(&out)
            .contains("403 Forbidden (a federated peer cannot send as a user of contoso.com)"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    // The Edge still answers, and a stopped RTCSRV really stops listening.
    let out = run(&[
        "partner",
        "--lab",
        lab.dir(),
        "message",
        "--to",
        "sip:nobody@contoso.com",
        "hi",
    ]);
    assert!(
        stdout(&out).contains("404"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    // A peer connected before the stop is cut off too.
    let mut connected = partner_stream(&lab, &edge);
    let options = "OPTIONS sip:contoso.com SIP/2.0\r\nVia: SIP/2.0/TLS 1.2.3.4;branch=z9hG4bK2\r\nFrom: <sip:b@fabrikam.com>;tag=1\r\nTo: <sip:contoso.com>\r\nCall-ID: y\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    connected.write_all(options.as_bytes()).unwrap();
    let n = connected.read(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    lab.ok(
        None,
        "Stop-CsWindowsService -Name RTCSRV -ComputerName edgeserver1.contoso.com",
    );
    eventually(5, "the federation listener to close", || {
        std::net::TcpStream::connect(&edge).is_err().then_some(())
    });
    let mut byte = [0u8; 1];
    assert!(
        matches!(connected.read(&mut byte), Ok(0) | Err(_)),
        "a connection made before the stop is still served"
    );
    lab.ok(
        None,
        "Start-CsWindowsService -Name RTCSRV -ComputerName edgeserver1.contoso.com",
    );
    eventually(5, "the federation listener to open again", || {
        std::net::TcpStream::connect(&edge).is_ok().then_some(())
    });
}

#[test]
fn a_silent_next_hop_gets_a_clear_error_until_the_next_hop_moves() {
    let lab = Lab::up_env(&["--users", "2"], &[]);
    let alice = user_of(&lab, "pool1.contoso.com");
    let b = lab.block();
    // Federation through Edge pool 2, whose next hop is pool2.
    for line in [
        "Disable-CsEdgePoolFederation -Identity edgepool1.contoso.com",
        "Enable-CsEdgePoolFederation -Identity edgepool2.contoso.com",
        &format!(
            "Set-DnsServerResourceRecord -ZoneName contoso.com -Name sip -RRType A -IPv4Address {b}2.22"
        ),
    ] {
        let out = lab.shell(None, line);
        assert!(out.status.success(), "{line}: {}", stderr(&out));
    }
    let listener = lab.listen(&alice, 1, 60);
    let out = run(&["lab", "kill", "pool2.contoso.com", "--dir", lab.dir()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (ok, said) = federate(&lab, &alice, "lost");
    assert!(!ok);
    // The partner learns only that the deployment cannot take it; the Edge's log tells the
    // operator which next hop does not answer and the command that moves it.
    assert!(
        said.contains("504 Server Time-out (contoso.com cannot take the request now)"),
        "{said}"
    );
    assert!(!said.contains("pool2"), "{said}");
    let log = std::path::Path::new(lab.dir()).join("logs/edgeserver2.contoso.com.log");
    eventually(5, "the Edge to log the fix", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("the next hop pool2.contoso.com of edgepool2.contoso.com does not answer; move it with Set-CsEdgeServer -Identity EdgeServer:edgepool2.contoso.com -Registrar Registrar:pool1.contoso.com")
            .then_some(())
    });
    lab.ok(
        None,
        "Set-CsEdgeServer -Identity EdgeServer:edgepool2.contoso.com -Registrar Registrar:pool1.contoso.com",
    );
    federate_until_delivered(&lab, &alice, "through pool1");
    let got = received(listener);
    assert!(
        got.contains("through pool1") && !got.contains(": lost"),
        "{got}"
    );
}

#[test]
fn the_edge_finds_its_next_hop_through_the_deployments_dns() {
    let lab = Lab::up_env(&["--users", "2"], &[]);
    let alice = user_of(&lab, "pool1.contoso.com");
    let b = lab.block();
    let listener = lab.listen(&alice, 1, 60);
    // pool1's name now points where nothing listens: the Edge, which asks DNS, cannot
    // reach its next hop.
    lab.ok(
        None,
        &format!("Set-DnsServerResourceRecord -ZoneName contoso.com -Name pool1 -RRType A -IPv4Address {b}9.9"),
    );
    let (ok, said) = federate(&lab, &alice, "lost");
    assert!(!ok && said.contains("504"), "{said}");
    // Back to a registrar of pool1: delivered.
    lab.ok(
        None,
        &format!("Set-DnsServerResourceRecord -ZoneName contoso.com -Name pool1 -RRType A -IPv4Address {b}1.11"),
    );
    federate_until_delivered(&lab, &alice, "found");
    assert!(received(listener).contains("found"));
}

#[test]
fn a_federated_message_to_a_user_with_a_stale_contact_is_delivered_once_and_answered_200() {
    let lab = Lab::up_env(&["--users", "2"], &[]);
    let alice = user_of(&lab, "pool1.contoso.com");
    // A contact nobody listens on any more (a client that signed in and went away), then
    // a live one.
    let out = run(&["client", "--lab", lab.dir(), "--user", &alice, "sign-in"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listener = lab.listen(&alice, 2, 20);
    let said = federate_until_delivered(&lab, &alice, "only once");
    assert!(said.contains("200"), "{said}");
    let (ok, said) = federate(&lab, &alice, "and again");
    assert!(ok, "the stale contact made the sender fail: {said}");
    let got = received(listener);
    assert_eq!(got.matches("only once").count(), 1, "{got}");
    assert_eq!(got.matches("and again").count(), 1, "{got}");
}
