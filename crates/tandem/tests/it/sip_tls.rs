//! SIP over TLS only, on a deployment whose topology takes no plain SIP (fabrikam: three
//! Front Ends a pool): no listener on the plain SIP port, DNS sends clients to the SIP TLS
//! port, a plain client is told why it cannot sign in, and messages reach a client over the
//! connection it signed in on — from its own Front End, from another Front End of its pool
//! (which hands the message over, over mutual TLS) and from the other pool (a relay over
//! mutual TLS). What only a Front End may ask of another is refused to anyone else.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::lab::{Lab, fabrikam};
use crate::{eventually, run, stderr, stdout};

const RED: &str = "fe-red.fabrikam.net";
const DUB: &str = "fe-dub.fabrikam.net";

/// The lab's users homed on `pool`.
fn users_of(lab: &Lab, pool: &str) -> Vec<String> {
    lab.users()
        .into_iter()
        .filter(|u| u["home_pool"] == pool)
        .map(|u| u["sip_address"].as_str().unwrap().to_string())
        .collect()
}

fn client(lab: &Lab, user: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["client", "--lab", lab.dir(), "--user", user];
    all.extend_from_slice(args);
    run(&all)
}

/// A user's client listening through `via`, until `count` messages arrived.
fn listen_via(lab: &Lab, user: &str, via: &str, count: usize) -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("tandem"))
        .args(["client", "--lab", lab.dir(), "--user", user, "--via", via])
        .args(["listen", "--seconds", "60", "--count", &count.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_deployment_without_plain_sip_signs_in_and_delivers_over_tls_only() {
    let lab = Lab::up_topology(&fabrikam(), &["--users", "2"], &[]);
    let red = users_of(&lab, RED);
    let dub = users_of(&lab, DUB);
    assert!(red.len() >= 2 && !dub.is_empty(), "{red:?} {dub:?}");
    let fe = |fqdn: &str| lab.server(fqdn)["address"].as_str().unwrap().to_string();

    // Nothing listens for plain SIP.
    for server in ["red-a.fabrikam.net", "dub-a.fabrikam.net"] {
        let plain: SocketAddr = format!("{}:5060", fe(server)).parse().unwrap();
        assert!(
            TcpStream::connect_timeout(&plain, Duration::from_secs(2)).is_err(),
            "{server} takes plain SIP over TCP"
        );
    }
    // DNS sends clients to the SIP TLS port.
    let srv = dig(
        &lab,
        &["_sipinternaltls._tcp.fabrikam.net", "SRV", "+short"],
    );
    assert!(
        srv.lines().all(|l| l.contains(" 5061 ")) && srv.lines().count() >= 2,
        "{srv}"
    );
    // A plain client is told why, and what changes it.
    let out = client(&lab, &red[0], &["--transport", "udp", "sign-in"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("ports.sip_plain"), "{}", stderr(&out));

    // red[0] listens through red-a; messages come from red-a itself, from red-b (handed
    // over to red-a), and from the other pool (relayed to fe-red).
    let listener = listen_via(&lab, &red[0], "red-a.fabrikam.net", 3);
    eventually(20, "the listener to sign in", || {
        let out = client(
            &lab,
            &red[1],
            &[
                "--via",
                "red-a.fabrikam.net",
                "send",
                "--to",
                &red[0],
                "one",
            ],
        );
        out.status.success().then_some(())
    });
    let out = client(
        &lab,
        &red[1],
        &[
            "--via",
            "red-b.fabrikam.net",
            "send",
            "--to",
            &red[0],
            "two",
        ],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let out = client(&lab, &dub[0], &["send", "--to", &red[0], "three"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let heard = listener.wait_with_output().unwrap();
    let text = stdout(&heard);
    for (n, word) in ["one", "two", "three"].iter().enumerate() {
        assert_eq!(
            text.matches(&format!(": {word}\n")).count(),
            1,
            "message {n} once: {text}{}",
            stderr(&heard)
        );
    }
    assert!(!text.contains("credentials"), "{text}");

    // Only a Front End, by its certificate, may hand a message over: a client over TLS
    // that asks red-b to deliver to a contact gets a challenge, and nothing is delivered.
    let contact = format!("sip:x@{}:1;transport=tls", fe("red-b.fabrikam.net"));
    let answer = raw_tls(
        &lab,
        &format!("{}:5061", fe("red-b.fabrikam.net")),
        &format!(
            "MESSAGE sip:{to} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:1;branch=z9hG4bKforged\r\nFrom: <sip:{from}>;tag=1\r\nTo: <sip:{to}>\r\nCall-ID: forged\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nX-Tandem-Deliver-To: {contact}\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nforged",
            to = red[0].trim_start_matches("sip:"),
            from = red[1].trim_start_matches("sip:"),
        ),
    );
    assert!(answer.starts_with("SIP/2.0 401"), "{answer}");
}

/// `dig` at the lab's DNS server.
fn dig(lab: &Lab, args: &[&str]) -> String {
    let dns = lab
        .servers()
        .into_iter()
        .find(|s| s["role"] == "Dns")
        .unwrap();
    let out = std::process::Command::new("dig")
        .arg(format!("@{}", dns["address"].as_str().unwrap()))
        .args(["-p", &dns["dns_port"].to_string(), "+time=2", "+tries=2"])
        .args(args)
        .output()
        .expect("dig runs: install Debian's bind9-dnsutils (.ci/run does)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sends `message` over TLS (trusting the lab's CA, presenting no certificate) and returns
/// the first answer's text.
fn raw_tls(lab: &Lab, at: &str, message: &str) -> String {
    let roots =
        pki::Roots::from_pem_file(&std::path::Path::new(lab.dir()).join("pki/ca.pem")).unwrap();
    let config: Arc<rustls::ClientConfig> = pki::client_config(&roots, None);
    let address: SocketAddr = at.parse().unwrap();
    let name = rustls::pki_types::ServerName::try_from(address.ip().to_string()).unwrap();
    let connection = rustls::ClientConnection::new(config, name).unwrap();
    let tcp = TcpStream::connect(address).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    tls.write_all(message.as_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tls.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// A user of the pool cannot cut another user off from the connection the other signed in
/// on, nor take it over, by naming that user's contact in its own REGISTER — even from the
/// same address (users behind one NAT): a connection's contacts are the user's who bound
/// them.
#[test]
fn a_user_cannot_unbind_or_take_over_another_users_connection() {
    use std::io::BufRead;

    use crate::sip_attacks::{Ua, registrar};

    let lab = Lab::up_with(&["--users", "2"]);
    let users = users_of(&lab, "pool1.contoso.com");
    let (alice, mallory) = (users[0].clone(), users[1].clone());
    let fe = "pool1-fe1.contoso.com";
    let mut listener = listen_via(&lab, &alice, fe, 1);
    // Alice's contact, as her client prints it once signed in.
    let out = listener.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut printed = String::new();
    let contact = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("alice never signed in: {printed}"));
        printed.push_str(&line);
        printed.push('\n');
        if let Some(rest) = line.trim().strip_prefix("contact <") {
            break rest.split('>').next().unwrap().to_string();
        }
    };
    assert!(contact.contains("transport=tls"), "{contact}");

    // Mallory, from the same address, unbinds Alice's contact text, then binds it as hers.
    let alice_ip = contact
        .split('@')
        .nth(1)
        .and_then(|host| host.split(':').next())
        .unwrap();
    let mut ua = Ua::on(alice_ip);
    let at = registrar(&lab, fe);
    let password = lab.password(&mallory);
    for expires in [0, 300] {
        let mut r = ua.build(sip::Method::Register, "sip:contoso.com", &mallory, &mallory);
        r.headers
            .push("Contact", format!("<{contact}>;expires={expires}"));
        let (answer, _) = ua.authed(at, &r, &password, None);
        assert_eq!(answer.status, 200, "expires={expires}: {answer:?}");
    }
    // Alice still gets her message, over her own connection.
    let out = client(&lab, &mallory, &["send", "--to", &alice, "still yours"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(listener.wait().unwrap().success());
    let rest: String = rx.iter().collect::<Vec<_>>().join("\n");
    assert!(rest.contains(": still yours"), "{printed}{rest}");
}
