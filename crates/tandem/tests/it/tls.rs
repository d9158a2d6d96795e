//! TLS on every listener that carries user or admin data, checked with tools that are not
//! ours (openssl) and replaying the attacks that found none: certificates from another CA on
//! the mutual-TLS backup link, connections that send nothing or half a request, one source
//! filling a listener; and a certificate renewed with no restart.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::eventually;
use crate::lab::{Lab, fabrikam};

const FE: &str = "red-a.fabrikam.net";
const EDGE: &str = "edge-red-a.fabrikam.net";
/// A route of the backup link (`backup::protocol::STATUS_PATH`).
const STATUS_PATH: &str = "/internal/v1/backup/status";

/// The first record of a cmdlet's JSON output (one record comes alone).
fn first(v: serde_json::Value) -> serde_json::Value {
    v.as_array().map_or(v.clone(), |a| a[0].clone())
}

/// `openssl s_client -brief` to `address`, trusting the lab's CA: what it printed.
fn s_client(lab: &Lab, address: &str) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-brief", "-connect", address, "-CAfile"])
        .arg(format!("{}/pki/ca.pem", lab.dir()))
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn address(lab: &Lab, fqdn: &str, port: u16) -> String {
    format!("{}:{port}", lab.server(fqdn)["address"].as_str().unwrap())
}

/// The SHA-256 thumbprint of the certificate served at `address`, as openssl sees it.
fn served_thumbprint(lab: &Lab, address: &str) -> String {
    let pem = Command::new("openssl")
        .args(["s_client", "-connect", address, "-CAfile"])
        .arg(format!("{}/pki/ca.pem", lab.dir()))
        .stdin(Stdio::null())
        .output()
        .unwrap()
        .stdout;
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    x509.stdin.take().unwrap().write_all(&pem).unwrap();
    let out = x509.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
}

/// A TLS client config presenting the certificate installed under `dir`.
fn presenting(lab: &Lab, dir: &std::path::Path) -> Arc<rustls::ClientConfig> {
    let roots =
        pki::Roots::from_pem_file(&std::path::Path::new(lab.dir()).join("pki/ca.pem")).unwrap();
    pki::client_config(&roots, Some(pki::CertStore::open(dir).unwrap()))
}

/// GET `url` with `tls`; the status, or the error when the handshake or the call failed.
fn get(tls: &Arc<rustls::ClientConfig>, url: &str) -> Result<u16, String> {
    get_as(tls, url, None)
}

/// The same, with `token` as the bearer token.
fn get_as(tls: &Arc<rustls::ClientConfig>, url: &str, token: Option<&str>) -> Result<u16, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = api::https(tls)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let mut call = client.get(url);
        if let Some(token) = token {
            call = call.bearer_auth(token);
        }
        call.send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| format!("{e:?}"))
    })
}

#[test]
fn every_user_and_admin_port_speaks_tls_1_3_with_the_deployments_certificate() {
    let lab = Lab::up_topology(&fabrikam(), &[], &[]);
    let dns = lab
        .servers()
        .into_iter()
        .find(|s| s["role"] == "Dns")
        .unwrap();
    let dns_api = format!(
        "{}:{}",
        dns["address"].as_str().unwrap(),
        dns["management_port"]
    );
    for (name, at) in [
        ("management API", address(&lab, FE, 4444)),
        ("user services", address(&lab, FE, 4443)),
        ("backup link", address(&lab, FE, 4445)),
        ("SIP over TLS", address(&lab, FE, 5061)),
        ("Edge management API", address(&lab, EDGE, 4444)),
        ("DNS server's API", dns_api),
    ] {
        let said = s_client(&lab, &at);
        assert!(
            said.contains("Protocol version: TLSv1.3"),
            "{name} {at}: {said}"
        );
        assert!(said.contains("Verification: OK"), "{name} {at}: {said}");
    }
    let said = s_client(&lab, &address(&lab, FE, 4444));
    assert!(said.contains("CN = red-a.fabrikam.net"), "{said}");
    // TLS 1.2 is not spoken.
    let out = Command::new("openssl")
        .args(["s_client", "-brief", "-tls1_2", "-connect"])
        .arg(address(&lab, FE, 4444))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "TLS 1.2 was accepted");

    // The backup link is mutual TLS: a server's certificate passes the handshake (and is
    // then asked for the token), one from another CA, or none, does not.
    let link = format!("https://{}{}", address(&lab, FE, 4445), STATUS_PATH);
    let server_dir = std::path::Path::new(lab.dir()).join("servers/dub-a.fabrikam.net");
    assert_eq!(get(&presenting(&lab, &server_dir), &link), Ok(401));
    // With the token, a Front End is answered; an Edge of the same deployment is not.
    let token = lab.admin_token();
    assert_eq!(
        get_as(&presenting(&lab, &server_dir), &link, Some(&token)),
        Ok(200)
    );
    let edge_dir = std::path::Path::new(lab.dir()).join("servers").join(EDGE);
    assert_eq!(
        get_as(&presenting(&lab, &edge_dir), &link, Some(&token)),
        Ok(403)
    );
    let mallory = crate::lab::from_another_ca(&["dub-a.fabrikam.net"]);
    let refused = get(&presenting(&lab, mallory.path()), &link);
    assert!(refused.is_err(), "a certificate of another CA: {refused:?}");
    let roots =
        pki::Roots::from_pem_file(&std::path::Path::new(lab.dir()).join("pki/ca.pem")).unwrap();
    let anonymous = get(&pki::client_config(&roots, None), &link);
    assert!(anonymous.is_err(), "no certificate: {anonymous:?}");
    // On the management API a certificate is optional: an operator brings the token.
    let health = format!("https://{}/health", address(&lab, FE, 4444));
    assert_eq!(get(&pki::client_config(&roots, None), &health), Ok(200));
    // But the servers' own routes want a server's certificate: the token alone (which
    // operators hold) cannot push a configuration or run an operation's step.
    let (status, body) = lab.post(FE, api::paths::REPLICA_SYNC, &serde_json::json!({}));
    assert_eq!(status, 403, "{body}");
    let role = format!(
        "https://{}{}",
        address(&lab, FE, 4444),
        api::paths::CMS_ROLE
    );
    assert_eq!(
        get_as(&presenting(&lab, &server_dir), &role, Some(&token)),
        Ok(200),
        "a server's certificate passes"
    );
    assert_eq!(
        get_as(&pki::client_config(&roots, None), &role, Some(&token)),
        Ok(403)
    );
}

#[test]
fn a_renewed_certificate_is_served_without_a_restart_and_slow_or_crowding_clients_are_cut_off() {
    let lab = Lab::up_topology(&fabrikam(), &[], &[]);
    let at = address(&lab, FE, 4443);
    let served = || served_thumbprint(&lab, &at);
    let before = served();
    let listed = first(lab.json(Some(FE), "Get-CsCertificate"));
    assert_eq!(listed["Thumbprint"], before.as_str(), "{listed}");
    assert_eq!(listed["Use"], "Assigned");
    assert!(listed["DaysLeft"].as_i64().unwrap() >= 364, "{listed}");
    let requested = first(lab.json(
        Some(FE),
        "Request-CsCertificate -New -Type Default -ValidityDays 30",
    ));
    let thumbprint = requested["Thumbprint"].as_str().unwrap().to_string();
    assert_ne!(thumbprint, before);
    assert_eq!(served(), before, "requested, not yet in use");
    lab.ok(
        Some(FE),
        &format!("Set-CsCertificate -Type Default -Thumbprint {thumbprint}"),
    );
    assert_eq!(
        served(),
        thumbprint,
        "the renewed certificate is served at once"
    );
    let listed = first(lab.json(Some(FE), "Get-CsCertificate"));
    let days = listed["DaysLeft"].as_i64().unwrap();
    assert!((29..=30).contains(&days), "{listed}");
    // The server still calls the others with it: the CMS pushes and every server's
    // health go on (a configuration change reaches every replica).
    lab.ok(
        None,
        "Set-CsRegistrar -Identity Registrar:fe-red.fabrikam.net -FailureDetectionInterval 00:01:00",
    );
    // Only names the server holds: a renewal, never a new identity. (The CA refuses a
    // caller without a certificate of the deployment covering them: the shell's own call
    // has none.)
    let (status, body) = lab.post(
        "red-a.fabrikam.net",
        "/api/v1/invoke",
        &serde_json::json!({"cmdlet": "Set-CsCertificate", "parameters": {"Type": "Default", "Thumbprint": "../../etc"}}),
    );
    assert_eq!(status, 404, "{body}");

    // A connection that sends nothing is closed once the handshake is overdue; one that
    // sends half a request, once the headers are.
    let started = std::time::Instant::now();
    let mut idle = std::net::TcpStream::connect(&at).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 64];
    match idle.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("an idle connection was not closed: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    let mut half = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &at, "-CAfile"])
        .arg(format!("{}/pki/ca.pem", lab.dir()))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = half.stdin.take().unwrap();
    stdin
        .write_all(b"GET /users/v1/contacts HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    stdin.flush().unwrap();
    eventually(30, "the server closes a half-sent request", || {
        half.try_wait().unwrap()
    });
    drop(stdin);

    // One source cannot fill the listener: its connections past its cap are closed at
    // once, while another source is served.
    let block = lab.block();
    let source: std::net::SocketAddr = format!("{block}250.1:0").parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let target: std::net::SocketAddr = at.parse().unwrap();
    let held = rt.block_on(async {
        let mut held = Vec::new();
        for _ in 0..256 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(source).unwrap();
            held.push(socket.connect(target).await.unwrap());
        }
        held
    });
    let over = rt.block_on(async {
        use tokio::io::AsyncReadExt;
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(source).unwrap();
        let mut s = socket.connect(target).await.unwrap();
        let mut b = [0u8; 8];
        tokio::time::timeout(Duration::from_secs(3), s.read(&mut b)).await
    });
    assert!(
        matches!(over, Ok(Ok(0)) | Ok(Err(_))),
        "the 257th connection of one source was closed at once: {over:?}"
    );
    let roots =
        pki::Roots::from_pem_file(&std::path::Path::new(lab.dir()).join("pki/ca.pem")).unwrap();
    let health = format!("https://{}/health", address(&lab, FE, 4444));
    assert_eq!(get(&pki::client_config(&roots, None), &health), Ok(200));
    let contacts = format!("https://{at}/users/v1/contacts");
    assert_eq!(
        get(&pki::client_config(&roots, None), &contacts),
        Ok(401),
        "user services serve another source while one is at its cap"
    );
    drop(held);
}
