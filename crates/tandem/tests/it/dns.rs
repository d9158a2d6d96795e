//! The lab's DNS server: the records the topology gives, the DnsServer cmdlets, dig-style
//! queries, and bad input that gets an error without stopping the server.

use crate::lab::Lab;
use crate::{run, stderr, stdout};

/// `tandem dns query --json`: the status and the answer records.
fn query(lab: &Lab, name: &str, rtype: &str) -> serde_json::Value {
    let out = run(&["dns", "query", "--lab", lab.dir(), "--json", name, rtype]);
    serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)))
}

/// The lab's loopback block ("127.B."): addresses inside it are the lab's own.
fn block(lab: &Lab) -> String {
    let at = dns_address(lab).ip().to_string();
    let parts: Vec<&str> = at.split('.').collect();
    format!("127.{}.", parts[1])
}

fn dns_address(lab: &Lab) -> std::net::SocketAddr {
    let lab_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{}/lab.json", lab.dir())).unwrap())
            .unwrap();
    let dns = lab_json["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["role"] == "Dns")
        .unwrap()
        .clone();
    format!("{}:{}", dns["address"].as_str().unwrap(), dns["dns_port"])
        .parse()
        .unwrap()
}

#[test]
fn the_lab_dns_answers_from_the_topology_and_the_cmdlets_change_it() {
    let lab = Lab::up();
    let fed = query(&lab, "_sipfederationtls._tcp.contoso.com", "SRV");
    assert_eq!(fed["status"], "NOERROR");
    assert_eq!(fed["answer"][0]["target"], "sip.contoso.com", "{fed}");
    assert_eq!(fed["answer"][0]["port"], 5061);
    let internal = query(&lab, "_sipinternaltls._tcp.contoso.com", "SRV");
    assert_eq!(
        internal["answer"].as_array().unwrap().len(),
        2,
        "{internal}"
    );
    let pool = query(&lab, "pool1.contoso.com", "A");
    assert_eq!(pool["answer"].as_array().unwrap().len(), 2, "{pool}");

    // The XMPP procedure's DNS steps: a second SRV record, the A record moved.
    lab.ok(
        None,
        "Add-DnsServerResourceRecord -Srv -ZoneName contoso.com -Name _xmpp-server._tcp -DomainName edgeserver2-ext.contoso.com -Priority 10 -Weight 0 -Port 5269",
    );
    let xmpp = query(&lab, "_xmpp-server._tcp.contoso.com", "SRV");
    assert_eq!(xmpp["answer"].as_array().unwrap().len(), 2, "{xmpp}");
    lab.ok(
        None,
        &format!("Set-DnsServerResourceRecord -ZoneName contoso.com -Name xmpp -RRType A -IPv4Address {}9.9", block(&lab)),
    );
    let a = query(&lab, "xmpp.contoso.com", "A");
    assert_eq!(
        a["answer"][0]["address"],
        format!("{}9.9", block(&lab)),
        "{a}"
    );
    let out = lab.shell(
        None,
        "Remove-DnsServerResourceRecord -ZoneName contoso.com -Name _xmpp-server._tcp -RRType SRV -RecordData edgeserver2-ext.contoso.com",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = lab.json(
        None,
        "Get-DnsServerResourceRecord -ZoneName contoso.com -Name _xmpp-server._tcp -RRType SRV",
    );
    let rows = rows.as_array().map_or(vec![rows.clone()], |a| a.clone());
    assert_eq!(rows.len(), 1, "{rows:?}");

    // Bad input: names out of the zone, another zone, a target outside the zone.
    for (line, says) in [
        (
            "Add-DnsServerResourceRecordA -ZoneName contoso.com -Name xmpp.example.org -IPv4Address 127.0.9.9",
            "is not in the zone contoso.com",
        ),
        (
            "Add-DnsServerResourceRecordA -ZoneName example.org -Name xmpp -IPv4Address 127.0.9.9",
            "has no zone example.org; Get-DnsServerZone lists its zones, Add-DnsServerPrimaryZone -Name example.org adds one",
        ),
        (
            "Add-DnsServerResourceRecord -Srv -ZoneName contoso.com -Name _xmpp-server._tcp -DomainName xmpp.example.org -Priority 0 -Weight 0 -Port 5269",
            "must be an A record of the zone",
        ),
        (
            "Remove-DnsServerResourceRecord -ZoneName contoso.com -Name nothing -RRType A",
            "no A record nothing.contoso.com",
        ),
    ] {
        let out = lab.shell(None, line);
        assert_eq!(out.status.code(), Some(1), "{line}");
        assert!(stderr(&out).contains(says), "{line}: {}", stderr(&out));
    }
    let outside = run(&[
        "dns",
        "query",
        "--lab",
        lab.dir(),
        "--json",
        "example.org",
        "A",
    ]);
    assert!(!outside.status.success());
    assert!(stdout(&outside).contains("REFUSED"), "{}", stdout(&outside));
    // Garbage on the DNS port: FORMERR when it has a header, nothing otherwise, and the
    // server goes on answering.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(1)))
        .unwrap();
    socket
        .send_to(
            &[
                0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1,
            ],
            dns_address(&lab),
        )
        .unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = socket.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..2], &[0x12, 0x34]);
    assert_eq!(buf[3] & 0x0F, 1, "FORMERR: {:?}", &buf[..n]);
    socket.send_to(b"x", dns_address(&lab)).unwrap();
    assert_eq!(query(&lab, "xmpp.contoso.com", "A")["status"], "NOERROR");

    // Changes are kept: the server restarted serves them.
    lab.kill("dns.contoso.com");
    let out = run(&["lab", "start", "dns.contoso.com", "--dir", lab.dir()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let a = query(&lab, "xmpp.contoso.com", "A");
    assert_eq!(
        a["answer"][0]["address"],
        format!("{}9.9", block(&lab)),
        "{a}"
    );
    // Test-NetConnection looks the name up there and tries the port.
    let v = lab.json(
        None,
        "Test-NetConnection -ComputerName pool1.contoso.com -Port 4444",
    );
    let v = v.as_array().map_or(v.clone(), |a| a[0].clone());
    assert_eq!(v["TcpTestSucceeded"], true, "{v}");
    let v = lab.json(
        None,
        "Test-NetConnection -ComputerName xmpp.contoso.com -Port 5269",
    );
    let v = v.as_array().map_or(v.clone(), |a| a[0].clone());
    assert_eq!(v["TcpTestSucceeded"], false, "{v}");
}

#[test]
fn an_ordinary_dns_tool_gets_the_answers() {
    let lab = Lab::up();
    let at = dns_address(&lab);
    let dig = |args: &[&str]| dig(at, args);
    let srv = dig(&["_sipfederationtls._tcp.contoso.com", "SRV", "+short"]);
    assert_eq!(srv.trim(), "0 0 5061 sip.contoso.com.", "{srv}");
    let tcp = dig(&["+tcp", "pool2.contoso.com", "A", "+short"]);
    assert_eq!(tcp.lines().count(), 2, "{tcp}");
    let outside = dig(&["example.org", "A"]);
    assert!(outside.contains("status: REFUSED"), "{outside}");
    let missing = dig(&["nothing.contoso.com", "A"]);
    assert!(
        missing.contains("status: NXDOMAIN") && missing.contains("flags: qr aa"),
        "{missing}"
    );
    // The server counts what it answered, for Prometheus, to the deployment's token.
    let dns = lab
        .servers()
        .into_iter()
        .find(|s| s["role"] == "Dns")
        .unwrap();
    let (status, kind, body) = crate::metrics::scrape(&lab, &dns, Some(&lab.admin_token()));
    assert_eq!(status, 200, "{body}");
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    let samples = crate::metrics::parse(&body);
    let answered = |transport: &str, rcode: &str| {
        crate::metrics::sum(
            &samples,
            "tandem_dns_queries_total",
            &[("transport", transport), ("rcode", rcode)],
        )
    };
    assert!(answered("udp", "NOERROR") >= 1.0, "{body}");
    assert!(answered("udp", "REFUSED") >= 1.0, "{body}");
    assert!(answered("udp", "NXDOMAIN") >= 1.0, "{body}");
    assert!(answered("tcp", "NOERROR") >= 1.0, "{body}");
    assert_eq!(crate::metrics::scrape(&lab, &dns, None).0, 401);
}

/// `dig` asking the server at `at`, what it prints.
fn dig(at: std::net::SocketAddr, args: &[&str]) -> String {
    let out = std::process::Command::new("dig")
        .arg(format!("@{}", at.ip()))
        .args(["-p", &at.port().to_string(), "+time=2", "+tries=2"])
        .args(args)
        .output()
        .expect("dig runs: install Debian's bind9-dnsutils (.ci/run does)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `dig +tcp` from `source` (an address of the loopback block) for a record of the zone.
fn dig_tcp_from(at: std::net::SocketAddr, source: &str, name: &str) -> String {
    let out = std::process::Command::new("dig")
        .arg(format!("@{}", at.ip()))
        .args(["-p", &at.port().to_string(), "-b", source])
        .args(["+tcp", "+time=2", "+tries=1", "+short", name, "A"])
        .output()
        .expect("dig runs: install Debian's bind9-dnsutils (.ci/run does)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `stream` is still open (nothing to read, not closed by the server).
fn is_open(stream: &std::net::TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let open = matches!(
        std::io::Read::read(&mut &*stream, &mut byte),
        Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock
    );
    stream.set_nonblocking(false).unwrap();
    open
}

/// Whether the server closed `stream` (a read ends, with nothing or an error), within
/// `secs`.
fn closed_within(stream: &mut std::net::TcpStream, secs: u64) -> bool {
    use std::io::Read;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(secs)))
        .unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

#[test]
fn idle_tcp_clients_of_one_source_cannot_keep_others_from_the_dns_server() {
    let lab = Lab::up();
    let at = dns_address(&lab);
    let crowd: std::net::IpAddr = format!("{}9.9", block(&lab)).parse().unwrap();
    // 300 connections from one address that send nothing (256 once filled the server):
    // past the per-source cap they are closed at once.
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(connect_from(crowd, at));
    }
    // The ones over the cap are closed at once, well before the idle limit (3 s) closes
    // the rest: the moment 284 are closed, 16 are still open.
    let open = crate::eventually(2, "the connections over the per-source cap closed", || {
        let open = idle.iter().filter(|s| is_open(s)).count();
        (open <= 16).then_some(open)
    });
    assert_eq!(open, 16, "idle connections of one address kept");
    // Another address is answered while the crowd holds its share.
    let answer = dig_tcp_from(at, &format!("{}9.10", block(&lab)), "pool2.contoso.com");
    assert_eq!(answer.lines().count(), 2, "{answer}");
    // A client that sends nothing, or half a query, is dropped within a few seconds.
    let mut silent = connect_from(format!("{}9.11", block(&lab)).parse().unwrap(), at);
    let mut partial = connect_from(format!("{}9.12", block(&lab)).parse().unwrap(), at);
    std::io::Write::write_all(&mut partial, &[0, 40, 1, 2, 3]).unwrap();
    let started = std::time::Instant::now();
    assert!(closed_within(&mut silent, 10), "a silent client was kept");
    assert!(
        closed_within(&mut partial, 10),
        "a client with half a query was kept"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    // And once the crowd is dropped its address is served again.
    drop(idle);
    let answer = crate::eventually(10, "the crowd's address served again", || {
        let a = dig_tcp_from(at, &crowd.to_string(), "pool2.contoso.com");
        (a.lines().count() == 2).then_some(a)
    });
    assert!(answer.contains(&block(&lab)), "{answer}");
}

/// A TCP connection to `to` from the local address `from` (std cannot bind before it
/// connects; tokio's socket can), as a blocking std stream.
fn connect_from(from: std::net::IpAddr, to: std::net::SocketAddr) -> std::net::TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(std::net::SocketAddr::new(from, 0)).unwrap();
        let stream = socket.connect(to).await.unwrap();
        let stream = stream.into_std().unwrap();
        stream.set_nonblocking(false).unwrap();
        stream
    })
}

/// What the lab's DNS server has answered over TCP so far (its `/metrics`).
fn answered_over_tcp(lab: &Lab) -> f64 {
    let dns = lab
        .servers()
        .into_iter()
        .find(|s| s["role"] == "Dns")
        .unwrap();
    let (_, _, body) = crate::metrics::scrape(lab, &dns, Some(&lab.admin_token()));
    crate::metrics::sum(
        &crate::metrics::parse(&body),
        "tandem_dns_queries_total",
        &[("transport", "tcp")],
    )
}

#[test]
fn dig_gets_aaaa_txt_and_edns_answers_a_truncated_one_again_over_tcp_and_names_at_the_limits() {
    let lab = Lab::up();
    let at = dns_address(&lab);
    let dig = |args: &[&str]| dig(at, args);
    lab.ok(
        None,
        "Add-DnsServerResourceRecord -AAAA -ZoneName contoso.com -Name v6 -IPv6Address 2001:db8::7",
    );
    assert_eq!(
        dig(&["v6.contoso.com", "AAAA", "+short"]).trim(),
        "2001:db8::7"
    );
    lab.ok(
        None,
        "Add-DnsServerResourceRecord -Txt -ZoneName contoso.com -Name notes -DescriptiveText 'drill 2026'",
    );
    assert_eq!(
        dig(&["notes.contoso.com", "TXT", "+short"]).trim(),
        "\"drill 2026\""
    );

    // Two TXT records of 1,500 bytes: an answer of about 3 KB.
    for c in ['x', 'y'] {
        let text: String = std::iter::repeat_n(c, 1500).collect();
        lab.ok(
            None,
            &format!("Add-DnsServerResourceRecord -Txt -ZoneName contoso.com -Name big -DescriptiveText {text}"),
        );
    }
    // With EDNS and a 4,096-byte buffer it comes whole over UDP.
    let edns = dig(&["+bufsize=4096", "+ignore", "big.contoso.com", "TXT"]);
    assert!(edns.contains("ANSWER: 2,"), "{edns}");
    assert!(
        !edns.contains(" tc"),
        "truncated with a 4,096-byte buffer: {edns}"
    );
    assert!(edns.contains("udp: 4096"), "{edns}");
    // Without EDNS (512 bytes) it is truncated, and dig asks again over TCP.
    let plain = dig(&["+noedns", "+ignore", "big.contoso.com", "TXT"]);
    assert!(plain.contains("flags: qr aa tc"), "{plain}");
    let retried = dig(&["+noedns", "big.contoso.com", "TXT"]);
    assert!(
        retried.contains("Truncated, retrying in TCP mode"),
        "{retried}"
    );
    assert!(retried.contains("ANSWER: 2,"), "{retried}");
    // tandem's resolver does the same (its EDNS buffer is 1,232 bytes).
    let before = answered_over_tcp(&lab);
    let ours = query(&lab, "big.contoso.com", "TXT");
    assert_eq!(ours["answer"].as_array().unwrap().len(), 2, "{ours}");
    assert!(
        answered_over_tcp(&lab) > before,
        "tandem's resolver did not retry over TCP"
    );

    // Names at the length limits: labels of 63 bytes, a name of 253; one past is refused.
    let label = |c: char, n: usize| -> String { std::iter::repeat_n(c, n).collect() };
    let longest = format!(
        "{}.{}.{}.{}.contoso.com",
        label('a', 63),
        label('b', 63),
        label('c', 63),
        label('d', 49)
    );
    assert_eq!(longest.len(), 253);
    lab.ok(
        None,
        &format!(
            "Add-DnsServerResourceRecordA -ZoneName contoso.com -Name {longest} -IPv4Address {}9.9",
            block(&lab)
        ),
    );
    assert_eq!(
        dig(&[&longest, "A", "+short"]).trim(),
        format!("{}9.9", block(&lab))
    );
    assert_eq!(query(&lab, &longest, "A")["status"], "NOERROR");
    for too_long in [
        format!("{}.contoso.com", label('e', 64)),
        format!("e{longest}"),
    ] {
        let out = lab.shell(
            None,
            &format!("Add-DnsServerResourceRecordA -ZoneName contoso.com -Name {too_long} -IPv4Address {}9.9", block(&lab)),
        );
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("is not a valid DNS name"),
            "{}",
            stderr(&out)
        );
    }
}

/// A DNS server of another domain beside a lab: a `tandem dns serve` process of its own on
/// an address of the lab's block (which the lab holds for its life), serving `zone` with
/// `host.<zone>` at `127.B.9.7`; killed when dropped.
struct OtherDns {
    child: std::process::Child,
    at: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl OtherDns {
    fn start(lab: &Lab, zone: &str) -> OtherDns {
        let block = block(lab);
        let address: std::net::Ipv4Addr = format!("{block}9.153").parse().unwrap();
        // Ports the system picks (the address is the lab's: nobody else binds there).
        let dns_port = loop {
            let udp = std::net::UdpSocket::bind((address, 0)).unwrap();
            let port = udp.local_addr().unwrap().port();
            if std::net::TcpListener::bind((address, port)).is_ok() {
                break port;
            }
        };
        let api_port = std::net::TcpListener::bind((address, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let ca = pki::Authority::create("Other DNS CA", now).unwrap();
        let issued = ca
            .issue(&pki::Request {
                names: vec![format!("dns.{zone}")],
                addresses: vec![],
                validity_days: 30,
                now,
            })
            .unwrap();
        pki::Installed::install(dir.path(), ca.cert_pem(), &issued).unwrap();
        let record = |name: String, data: serde_json::Value| {
            let mut r = serde_json::json!({ "name": name, "ttl": 5 });
            r.as_object_mut()
                .unwrap()
                .extend(data.as_object().unwrap().clone());
            r
        };
        let zone_file = serde_json::json!({
            "origin": zone,
            "serial": 1,
            "records": [
                record(zone.into(), serde_json::json!({"type": "SOA", "mname": format!("dns.{zone}"), "rname": format!("hostmaster.{zone}"), "serial": 1})),
                record(zone.into(), serde_json::json!({"type": "NS", "host": format!("dns.{zone}")})),
                record(format!("host.{zone}"), serde_json::json!({"type": "A", "address": format!("{block}9.7")})),
            ],
        });
        std::fs::write(dir.path().join("zone.json"), zone_file.to_string()).unwrap();
        let at = std::net::SocketAddr::from((address, dns_port));
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("tandem"))
            .args([
                "dns",
                "serve",
                "--fqdn",
                &format!("dns.{zone}"),
                "--data-dir",
            ])
            .arg(dir.path())
            .arg("--listen")
            .arg(at.to_string())
            .arg("--api")
            .arg(format!("{address}:{api_port}"))
            .args(["--admin-token", "other-token"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let other = OtherDns {
            child,
            at,
            _dir: dir,
        };
        crate::eventually(20, "the other DNS server answering", || {
            let a = dig(other.at, &["+short", &format!("host.{zone}"), "A"]);
            (a.trim() == format!("{block}9.7")).then_some(())
        });
        other
    }
}

impl Drop for OtherDns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn zones_added_are_served_and_a_conditional_forwarder_asks_another_dns_server() {
    let lab = Lab::up();
    let at = dns_address(&lab);
    let block = block(&lab);
    let dig = |args: &[&str]| dig(at, args);

    // A partner's zone served beside the deployment's.
    lab.ok(None, "Add-DnsServerPrimaryZone -Name partner.example");
    lab.ok(
        None,
        &format!("Add-DnsServerResourceRecordA -ZoneName partner.example -Name xmpp -IPv4Address {block}9.1"),
    );
    lab.ok(
        None,
        "Add-DnsServerResourceRecord -Srv -ZoneName partner.example -Name _xmpp-server._tcp -DomainName xmpp.partner.example -Priority 0 -Weight 0 -Port 5269",
    );
    assert_eq!(
        dig(&["+short", "xmpp.partner.example", "A"]).trim(),
        format!("{block}9.1")
    );
    assert_eq!(
        dig(&["+short", "_xmpp-server._tcp.partner.example", "SRV"]).trim(),
        "0 0 5269 xmpp.partner.example."
    );
    let soa = dig(&["partner.example", "SOA"]);
    assert!(
        soa.contains("status: NOERROR") && soa.contains("dns.contoso.com."),
        "{soa}"
    );
    lab.refused(
        None,
        "Remove-DnsServerZone -Name contoso.com -Force",
        "the deployment's own zone",
    );

    // Another domain's DNS server, asked through a conditional forwarder, over UDP and TCP.
    let other = OtherDns::start(&lab, "far.example");
    lab.refused(
        None,
        &format!(
            "Add-DnsServerConditionalForwarderZone -Name far.example -MasterServers {}",
            at
        ),
        "this DNS server itself",
    );
    lab.ok(
        None,
        &format!(
            "Add-DnsServerConditionalForwarderZone -Name far.example -MasterServers {}",
            other.at
        ),
    );
    let udp = dig(&["host.far.example", "A"]);
    assert!(udp.contains("status: NOERROR"), "{udp}");
    assert!(udp.contains(&format!("{block}9.7")), "{udp}");
    assert_eq!(
        dig(&["+tcp", "+short", "host.far.example", "A"]).trim(),
        format!("{block}9.7")
    );
    let missing = dig(&["nothing.far.example", "A"]);
    assert!(missing.contains("status: NXDOMAIN"), "{missing}");
    let zones = lab.json(None, "Get-DnsServerZone");
    let zones = zones.as_array().cloned().unwrap_or_else(|| vec![zones]);
    let far = zones
        .iter()
        .find(|z| z["ZoneName"] == "far.example")
        .unwrap_or_else(|| panic!("{zones:?}"));
    assert_eq!(far["ZoneType"], "Forwarder", "{far}");
    assert_eq!(far["MasterServers"][0], other.at.to_string(), "{far}");
    assert!(
        zones
            .iter()
            .any(|z| z["ZoneName"] == "partner.example" && z["ZoneType"] == "Primary"),
        "{zones:?}"
    );

    // A forwarder whose master never answers: SERVFAIL within a few seconds, never a hang.
    let silent = std::net::UdpSocket::bind(format!("{block}9.154:0")).unwrap();
    lab.ok(
        None,
        &format!(
            "Add-DnsServerConditionalForwarderZone -Name silent.example -MasterServers {}",
            silent.local_addr().unwrap()
        ),
    );
    let started = std::time::Instant::now();
    let out = std::process::Command::new("dig")
        .arg(format!("@{}", at.ip()))
        .args(["-p", &at.port().to_string(), "+time=8", "+tries=1"])
        .args(["x.silent.example", "A"])
        .output()
        .unwrap();
    let took = started.elapsed();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("status: SERVFAIL"), "{out}");
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");

    // Counted for Prometheus.
    let dns = lab
        .servers()
        .into_iter()
        .find(|s| s["role"] == "Dns")
        .unwrap();
    let (_, _, body) = crate::metrics::scrape(&lab, &dns, Some(&lab.admin_token()));
    let samples = crate::metrics::parse(&body);
    let forwarded = |transport: &str, outcome: &str| {
        crate::metrics::sum(
            &samples,
            "tandem_dns_forwarded_total",
            &[("transport", transport), ("outcome", outcome)],
        )
    };
    assert!(forwarded("udp", "answered") >= 2.0, "{body}");
    assert!(forwarded("tcp", "answered") >= 1.0, "{body}");
    assert!(forwarded("udp", "no_answer") >= 1.0, "{body}");

    // Kept across a restart; a forwarder removed is no longer asked.
    lab.kill("dns.contoso.com");
    lab.start("dns.contoso.com");
    assert_eq!(
        dig(&["+short", "xmpp.partner.example", "A"]).trim(),
        format!("{block}9.1")
    );
    assert_eq!(
        dig(&["+short", "host.far.example", "A"]).trim(),
        format!("{block}9.7")
    );
    lab.ok(None, "Remove-DnsServerZone -Name far.example -Force");
    assert!(dig(&["host.far.example", "A"]).contains("status: REFUSED"));
    lab.ok(None, "Remove-DnsServerZone -Name partner.example");
    assert!(dig(&["xmpp.partner.example", "A"]).contains("status: REFUSED"));
    drop(other);
}
