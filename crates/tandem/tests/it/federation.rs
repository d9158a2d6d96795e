//! Federation identity from certificates (issue 18), on a deployment of the tests' own
//! (fabrikam.net with two allowed partners), every name read from its topology: the Access
//! Edge speaks TLS 1.3 with its external certificate and requires a partner's certificate
//! from a CA it trusts; a partner speaks only for an allowed domain its certificate covers
//! and never for ours, in any spelling; and a Front End takes a request as federated only
//! from a connection whose certificate names an Edge of the topology — no header, no
//! plain client, no other server's certificate makes it so.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sip::{Method, Request, Response};

use crate::failover::user_of;
use crate::lab::{Lab, fabrikam};
use crate::sip_attacks::{Ua, registrar};
use crate::{eventually, run, stderr, stdout};

/// The partner whose certificate the tests mostly present.
const PARTNER: &str = "litwareinc.com";
/// Another allowed partner: `PARTNER`'s certificate must not speak for it.
const OTHER_PARTNER: &str = "adatum.com";

/// fabrikam.net with the two partners allowed.
fn topology() -> topology::Topology {
    let mut t = fabrikam();
    t.deployment.allowed_domains = vec![PARTNER.into(), OTHER_PARTNER.into()];
    t
}

/// What a test needs to know of the lab's federation, from its topology.
struct Federation {
    lab: Lab,
    /// The deployment's SIP domain.
    ours: String,
    /// The federation listener of the Edge server federation goes through, on its
    /// external address.
    edge_at: String,
    /// The name partners reach it by (`sip.<zone>`, the SRV target).
    edge_name: String,
    /// A user homed on the next hop.
    user: String,
}

impl Federation {
    fn up() -> Federation {
        let topology = topology();
        let lab = Lab::up_topology(&topology, &["--users", "1"], &[]);
        let pool = topology
            .federation_edge_pool()
            .expect("one Edge pool has federation");
        let edge = pool.servers[0].fqdn.clone();
        let external = topology.server(&edge).unwrap().server.external_address();
        let edge_at = format!(
            "{}:{}",
            external.to_string().replacen("127.0.", &lab.block(), 1),
            topology.ports.edge_federation_sip
        );
        let user = user_of(&lab, &pool.next_hop);
        Federation {
            edge_name: format!("sip.{}", topology.deployment.dns_zone),
            ours: topology.deployment.sip_domain.clone(),
            lab,
            edge_at,
            user,
        }
    }

    fn pki(&self) -> PathBuf {
        Path::new(self.lab.dir()).join("pki")
    }

    /// The folder of the certificate the lab issued to an allowed partner domain.
    fn partner_cert(&self, domain: &str) -> PathBuf {
        self.pki().join("partners").join(domain)
    }

    /// `tandem partner message` from `from` to `to`, presenting the certificate in
    /// `cert_dir` (the From domain's when `None`): success, and what it printed.
    fn partner(&self, from: &str, to: &str, text: &str, cert_dir: Option<&Path>) -> (bool, String) {
        let mut args = vec![
            "partner",
            "--lab",
            self.lab.dir(),
            "message",
            "--from",
            from,
            "--to",
            to,
            text,
        ];
        let dir;
        if let Some(d) = cert_dir {
            dir = d.to_str().unwrap().to_string();
            args.extend(["--cert-dir", &dir]);
        }
        let out = run(&args);
        (
            out.status.success(),
            format!("{}{}", stdout(&out), stderr(&out)),
        )
    }
}

/// `openssl s_client` to `address`, checking its certificate against `ca_file` for
/// `name`, with `extra` arguments and `input` on stdin; what it printed once the server
/// answered a SIP request (a line starting `SIP/2.0`) or closed the connection.
fn s_client(address: &str, ca_file: &Path, name: &str, extra: &[&str], input: &str) -> String {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", address, "-verify_hostname", name])
        .args(["-verify_return_error", "-ign_eof", "-CAfile"])
        .arg(ca_file)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl runs");
    child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    for stream in [
        Box::new(stdout) as Box<dyn std::io::Read + Send>,
        Box::new(stderr),
    ] {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stream)
                .lines()
                .map_while(Result::ok)
            {
                let _ = lines.send(line);
            }
        });
    }
    drop(lines);
    let mut said = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match seen.recv_timeout(left) {
            Ok(line) => {
                let answered = line.starts_with("SIP/2.0");
                said.push_str(&line);
                said.push('\n');
                if answered {
                    break;
                }
            }
            // Both streams ended: openssl is done (the server closed the connection).
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    said
}

/// An OPTIONS from `from` to the deployment, as a partner's server sends it over a stream.
fn options_from(from: &str, ours: &str) -> String {
    format!(
        "OPTIONS sip:{ours} SIP/2.0\r\nVia: SIP/2.0/TLS 192.0.2.1:5061;branch=z9hG4bKfed1\r\n\
         Max-Forwards: 70\r\nFrom: <{from}>;tag=1\r\nTo: <sip:{ours}>\r\nCall-ID: fed-options-1\r\n\
         CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn a_partner_is_who_its_certificate_says() {
    let f = Federation::up();
    let lab = &f.lab;
    let from = format!("sip:bob@{PARTNER}");

    // The Access Edge shows its external certificate (the public CA's, for the name
    // partners find it by) over TLS 1.3, and refuses a client without a certificate.
    let public_ca = f.pki().join("public/ca.pem");
    let refused = s_client(
        &f.edge_at,
        &public_ca,
        &f.edge_name,
        &[],
        &options_from(&from, &f.ours),
    );
    assert!(refused.contains("New, TLSv1.3"), "{refused}");
    assert!(
        refused.contains(&format!("CN = {}", f.edge_name)),
        "the Edge's external certificate: {refused}"
    );
    assert!(refused.contains("Verify return code: 0 (ok)"), "{refused}");
    assert!(refused.contains("alert certificate required"), "{refused}");
    assert!(
        !refused.contains("SIP/2.0"),
        "answered without a certificate: {refused}"
    );
    // The deployment's internal CA is not what it shows partners.
    let internal = s_client(&f.edge_at, &f.pki().join("ca.pem"), &f.edge_name, &[], "");
    assert!(
        !internal.contains("Verify return code: 0 (ok)"),
        "{internal}"
    );
    // With the partner's certificate, openssl is answered.
    let cert = f.partner_cert(PARTNER).join("tls");
    let (cert_pem, key_pem) = (cert.join("cert.pem"), cert.join("key.pem"));
    let answered = s_client(
        &f.edge_at,
        &public_ca,
        &f.edge_name,
        &[
            "-cert",
            cert_pem.to_str().unwrap(),
            "-key",
            key_pem.to_str().unwrap(),
        ],
        &options_from(&from, &f.ours),
    );
    assert!(answered.contains("SIP/2.0 200 OK"), "{answered}");
    // The lab keeps partners' keys to their owner.
    let mode = std::fs::metadata(&key_pem).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    // A partner's message reaches the user over mutual TLS, found through DNS.
    let listener = lab.listen(&f.user, 1, 60);
    let said = eventually(20, "the partner's message to be delivered", || {
        let (ok, said) = f.partner(&from, &f.user, "over mutual TLS", None);
        ok.then_some(said)
    });
    assert!(said.contains("200 OK"), "{said}");
    let got = String::from_utf8_lossy(&listener.wait_with_output().unwrap().stdout).into_owned();
    assert!(got.contains(&format!("{from}: over mutual TLS")), "{got}");

    // A certificate from a CA the Edge does not trust fails the handshake, even for the
    // right names.
    let mallory = crate::lab::from_another_ca(&[PARTNER, &format!("sip.{PARTNER}")]);
    let (ok, said) = f.partner(&from, &f.user, "forged", Some(mallory.path()));
    assert!(!ok, "{said}");
    assert!(said.contains("alert"), "{said}");
    assert!(
        !said.contains("SIP/2.0") && !said.contains("200 OK"),
        "{said}"
    );

    // PARTNER's certificate speaks for PARTNER only: not for the other allowed partner,
    // nor for a domain nobody allowed.
    let mine = f.partner_cert(PARTNER);
    let (ok, said) = f.partner(
        &format!("sip:eve@{OTHER_PARTNER}"),
        &f.user,
        "as another partner",
        Some(&mine),
    );
    assert!(!ok);
    assert!(
        said.contains(&format!(
            "403 Forbidden (the partner's certificate does not cover {OTHER_PARTNER})"
        )),
        "{said}"
    );
    // The other partner, with its own certificate, is taken.
    let nobody = format!("sip:nobody@{}", f.ours);
    let (ok, said) = f.partner(&format!("sip:carol@{OTHER_PARTNER}"), &nobody, "hi", None);
    assert!(!ok && said.contains("404"), "{said}");
    let (ok, said) = f.partner("sip:x@not-allowed.example", &f.user, "hi", Some(&mine));
    assert!(!ok);
    assert!(
        said.contains("403 Forbidden (not-allowed.example is not an allowed federated partner")
            && said.contains("deployment.allowed_domains"),
        "{said}"
    );

    // Our own domain, however spelt, is refused — even with a valid partner certificate.
    let upper = f.ours.to_ascii_uppercase();
    for spelling in [
        format!("sip:ceo@{}", f.ours),
        format!("sip:ceo@{}.", f.ours),
        format!("sip:ceo@{upper}"),
        format!("sip:ceo@{upper}.."),
        format!("sip:ceo@sip.{}.", f.ours),
    ] {
        let (ok, said) = f.partner(&spelling, &f.user, "as one of yours", Some(&mine));
        assert!(!ok);
        assert!(
            said.contains(&format!(
                "403 Forbidden (a federated peer cannot send as a user of {})",
                f.ours
            )),
            "{spelling}: {said}"
        );
    }
    // Full-width letters name the same domain under IDNA; a SIP host cannot carry them,
    // so the request never passes for one of ours either.
    let full_width: String = f
        .ours
        .chars()
        .map(|c| match c {
            'a'..='z' => char::from_u32(c as u32 - 'a' as u32 + 0xFF41).unwrap(),
            other => other,
        })
        .collect();
    let (ok, said) = f.partner(
        &format!("sip:ceo@{full_width}"),
        &f.user,
        "idn",
        Some(&mine),
    );
    assert!(
        !ok && (said.contains("403") || said.contains("400")),
        "{said}"
    );
    assert!(!said.contains("200 OK"), "{said}");
}

/// Sends `request` over a new TCP or TLS connection to `dest` (presenting `tls`'s
/// certificate, if any): the final answer.
fn over_stream(
    dest: SocketAddr,
    tls: Option<(&str, &Arc<rustls::ClientConfig>)>,
    request: &Request,
) -> std::io::Result<Response> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let timeout = Duration::from_secs(5);
        match tls {
            Some((name, config)) => sipnet::tls_request(dest, name, config, request, timeout).await,
            None => sipnet::tcp_request(dest, request, timeout).await,
        }
    })
}

/// A MESSAGE from `from` to `to`, carrying the header Edges once proved themselves with
/// (a stray one must change nothing).
fn message(ua: &mut Ua, to: &str, from: &str) -> Request {
    let mut m = ua.build(Method::Message, to, from, to);
    m.headers.push("Content-Type", "text/plain");
    m.headers.push("X-Tandem-Federation", "0".repeat(64));
    m.body = b"pretending".to_vec();
    m
}

#[test]
fn a_front_end_takes_as_federated_only_what_an_edge_certificate_sends() {
    // Plain SIP on, so that UDP and TCP are tried too.
    let mut topology = topology();
    topology.ports.sip_plain = true;
    let lab = Lab::up_topology(&topology, &["--users", "1"], &[]);
    let pool = topology.federation_edge_pool().unwrap();
    let fe = topology.front_end_servers(&pool.next_hop)[0].fqdn.clone();
    let user = user_of(&lab, &pool.next_hop);
    let udp = registrar(&lab, &fe);
    let tls_at = SocketAddr::new(udp.ip(), topology.ports.sip_tls);
    let ours = topology.deployment.sip_domain.clone();
    let foreign = format!("sip:bob@{PARTNER}");
    let nobody = format!("sip:nobody@{ours}");

    // A MESSAGE from a partner's user, straight to the registrar, with the header Edges
    // once proved themselves with: the registrar wants the sender to sign in.
    let mut ua = Ua::on("127.0.0.1");
    let direct = message(&mut ua, &user, &foreign);
    assert_eq!(ua.send(udp, &direct).status, 401, "over UDP");
    assert_eq!(
        over_stream(udp, None, &direct).unwrap().status,
        401,
        "over TCP"
    );
    let roots = pki::Roots::from_pem_file(&Path::new(lab.dir()).join("pki/ca.pem")).unwrap();
    let anonymous = pki::client_config(&roots, None);
    assert_eq!(
        over_stream(tls_at, Some((&pool.next_hop, &anonymous)), &direct)
            .unwrap()
            .status,
        401,
        "over TLS without a certificate"
    );
    // Another Front End's certificate is a relay's, not an Edge's: believed as a Front End
    // relaying what it authenticated (here the user is not signed in: 480), never taken
    // as federated.
    let servers = Path::new(lab.dir()).join("servers");
    let presenting = |fqdn: &str| {
        pki::client_config(
            &roots,
            Some(pki::CertStore::open(&servers.join(fqdn)).unwrap()),
        )
    };
    let other_fe = topology
        .front_end_pools
        .iter()
        .find(|p| p.fqdn != pool.next_hop)
        .unwrap()
        .servers[0]
        .fqdn
        .clone();
    assert_eq!(
        over_stream(
            tls_at,
            Some((&pool.next_hop, &presenting(&other_fe))),
            &direct
        )
        .unwrap()
        .status,
        480,
        "over TLS with a Front End's certificate"
    );
    // A partner's certificate is from a CA the registrar does not trust: no handshake.
    let partner_cert =
        pki::CertStore::open(&Path::new(lab.dir()).join("pki/partners").join(PARTNER));
    let partner_tls = pki::client_config(&roots, Some(partner_cert.unwrap()));
    assert!(over_stream(tls_at, Some((&pool.next_hop, &partner_tls)), &direct).is_err());

    // The Edge's own certificate from the deployment's CA is what makes a request
    // federated: no digest is asked, and the registrar checks the sender again.
    let edge = presenting(&pool.servers[0].fqdn);
    let federated = over_stream(
        tls_at,
        Some((&pool.next_hop, &edge)),
        &message(&mut ua, &nobody, &foreign),
    )
    .unwrap();
    assert_eq!(federated.status, 404, "{federated:?}");
    let as_ours = over_stream(
        tls_at,
        Some((&pool.next_hop, &edge)),
        &message(
            &mut ua,
            &user,
            &format!("sip:ceo@{}.", ours.to_ascii_uppercase()),
        ),
    )
    .unwrap();
    assert_eq!(as_ours.status, 403, "{as_ours:?}");
    assert!(
        as_ours
            .reason
            .contains(&format!("a federated peer cannot send as a user of {ours}")),
        "{as_ours:?}"
    );
    let not_allowed = over_stream(
        tls_at,
        Some((&pool.next_hop, &edge)),
        &message(&mut ua, &user, "sip:x@not-allowed.example"),
    )
    .unwrap();
    assert_eq!(not_allowed.status, 403, "{not_allowed:?}");
}
