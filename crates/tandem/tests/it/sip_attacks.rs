//! The attacks of issue 18 on SIP, replayed against a real lab: captured digest headers
//! sent again, guessing passwords, asking who exists. Each would succeed without its fix.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use sip::digest::{self, Algorithm, Challenge, Credentials};
use sip::{Headers, Message, Method, Request, Response};

use crate::lab::Lab;
use crate::{eventually, run, stderr, stdout};

const ALICE: &str = "sip:user0001.pool1@contoso.com";
const BOB: &str = "sip:user0002.pool1@contoso.com";
const CAROL: &str = "sip:user0003.pool1@contoso.com";

/// A registrar's SIP address, from lab.json.
pub(crate) fn registrar(lab: &Lab, fqdn: &str) -> SocketAddr {
    let s = lab.server(fqdn);
    format!("{}:{}", s["address"].as_str().unwrap(), s["sip_port"])
        .parse()
        .unwrap()
}

/// A SIP user agent over UDP from an address of the test's choosing, written with the
/// `sip` codec so that the test controls every header (and can replay them).
pub(crate) struct Ua {
    socket: UdpSocket,
    next: u32,
}

impl Ua {
    pub(crate) fn on(ip: &str) -> Ua {
        let socket = UdpSocket::bind((ip.parse::<IpAddr>().unwrap(), 0)).unwrap();
        Ua { socket, next: 0 }
    }

    pub(crate) fn local(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// A request with fresh Via branch, tags, Call-ID and CSeq.
    pub(crate) fn build(&mut self, method: Method, uri: &str, from: &str, to: &str) -> Request {
        self.next += 1;
        let n = self.next;
        let mut h = Headers::new();
        h.push(
            "Via",
            format!(
                "SIP/2.0/UDP {};branch=z9hG4bKt{n:x}x{}",
                self.local(),
                now()
            ),
        );
        h.push("Max-Forwards", "70");
        h.push("From", format!("<{from}>;tag=t{n}"));
        h.push("To", format!("<{to}>"));
        h.push("Call-ID", format!("attack-{n}-{}@{}", now(), self.local()));
        h.push("CSeq", format!("{n} {method}"));
        Request {
            method,
            uri: uri.to_string(),
            headers: h,
            body: Vec::new(),
        }
    }

    /// A REGISTER of `aor` binding `contact`.
    pub(crate) fn register(&mut self, aor: &str, contact: SocketAddr) -> Request {
        let (user, domain) = aor.trim_start_matches("sip:").split_once('@').unwrap();
        let mut r = self.build(Method::Register, &format!("sip:{domain}"), aor, aor);
        r.headers.push("Contact", format!("<sip:{user}@{contact}>"));
        r.headers.push("Expires", "300");
        r
    }

    /// Sends `request` and waits for its final answer, retransmitting as UDP asks.
    pub(crate) fn send(&self, dest: SocketAddr, request: &Request) -> Response {
        self.try_send(dest, request, Duration::from_secs(8))
            .unwrap_or_else(|| panic!("no answer from {dest} to {}", request.method))
    }

    /// [`Ua::send`], giving up (`None`) after `within`.
    pub(crate) fn try_send(
        &self,
        dest: SocketAddr,
        request: &Request,
        within: Duration,
    ) -> Option<Response> {
        let branch = request
            .top_via()
            .and_then(|v| v.branch().map(str::to_string))
            .unwrap();
        let bytes = request.to_bytes();
        let deadline = Instant::now() + within;
        let mut buf = vec![0u8; 65_536];
        while Instant::now() < deadline {
            self.socket.send_to(&bytes, dest).unwrap();
            self.socket
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let resend = Instant::now() + Duration::from_millis(500);
            while Instant::now() < resend {
                let Ok((n, _)) = self.socket.recv_from(&mut buf) else {
                    break;
                };
                if let Ok(Message::Response(r)) = Message::parse(&buf[..n])
                    && r.status >= 200
                    && r.headers
                        .get("Via")
                        .and_then(|v| sip::Via::parse(v).ok())
                        .and_then(|v| v.branch().map(str::to_string))
                        == Some(branch.clone())
                {
                    return Some(r);
                }
            }
        }
        None
    }

    /// Sends `request` once unauthenticated, then answers its challenge (the strongest,
    /// or the one of `algorithm`) with `password`: the final answer and the Authorization
    /// header that got it.
    pub(crate) fn authed(
        &mut self,
        dest: SocketAddr,
        request: &Request,
        password: &str,
        algorithm: Option<Algorithm>,
    ) -> (Response, String) {
        let first = self.fresh(request);
        let challenge = self.send(dest, &first);
        assert_eq!(challenge.status, 401, "{challenge:?}");
        let mut second = self.fresh(request);
        let header = answer(&challenge, &second, password, algorithm, 1);
        second.headers.push("Authorization", header.clone());
        (self.send(dest, &second), header)
    }

    /// The same request as a new transaction (new branch and CSeq, same Call-ID).
    pub(crate) fn fresh(&mut self, request: &Request) -> Request {
        let mut r = request.clone();
        self.next += 1;
        let n = self.next;
        r.headers.set(
            "Via",
            format!(
                "SIP/2.0/UDP {};branch=z9hG4bKt{n:x}x{}",
                self.local(),
                now()
            ),
        );
        r.headers.set("CSeq", format!("{n} {}", r.method));
        r
    }

    /// The next request that arrives on this agent within `wait`, answered 200.
    pub(crate) fn receive(&self, wait: Duration) -> Option<Request> {
        self.socket.set_read_timeout(Some(wait)).unwrap();
        let mut buf = vec![0u8; 65_536];
        let (n, from) = self.socket.recv_from(&mut buf).ok()?;
        let Ok(Message::Request(r)) = Message::parse(&buf[..n]) else {
            return None;
        };
        let ok = Response::for_request(&r, 200, "OK", Some("rx"));
        self.socket.send_to(&ok.to_bytes(), from).unwrap();
        Some(r)
    }
}

/// The Authorization header answering `challenge` (its `algorithm` one, or the strongest)
/// for `request` with `password` and nonce count `nc`.
pub(crate) fn answer(
    challenge: &Response,
    request: &Request,
    password: &str,
    algorithm: Option<Algorithm>,
    nc: u32,
) -> String {
    let ch = match algorithm {
        Some(a) => challenge
            .headers
            .get_all("WWW-Authenticate")
            .into_iter()
            .filter_map(|h| Challenge::parse(h).ok())
            .find(|c| c.algorithm == a)
            .unwrap(),
        None => digest::strongest_challenge(challenge).unwrap(),
    };
    let to = request.headers.get("From").unwrap();
    let aor = sip::NameAddr::parse(to).unwrap().uri.aor();
    let username = aor.trim_start_matches("sip:");
    let ha1 = ch.algorithm.ha1(username, &ch.realm, password);
    Credentials::answer(
        &ch,
        username,
        &ha1,
        request.method.as_str(),
        &request.uri,
        &format!("c{nc}"),
        nc,
    )
    .to_string()
}

fn now() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn message(ua: &mut Ua, from: &str, to: &str, text: &str) -> Request {
    let mut m = ua.build(Method::Message, to, from, to);
    m.headers.push("Content-Type", "text/plain");
    m.body = text.as_bytes().to_vec();
    m
}

#[test]
fn a_captured_digest_header_gets_nothing_and_nothing_says_who_exists() {
    let lab = Lab::up_with(&["--users", "4"]);
    let fe1 = registrar(&lab, "pool1-fe1.contoso.com");
    let fe2 = registrar(&lab, "pool1-fe2.contoso.com");
    let mut alice = Ua::on("127.0.0.1");
    let password = lab.password(ALICE);

    // The challenge offers SHA-256 first, then MD5, with one nonce.
    let register = alice.register(ALICE, alice.local());
    let challenge = alice.send(fe1, &register);
    assert_eq!(challenge.status, 401);
    let offered: Vec<Challenge> = challenge
        .headers
        .get_all("WWW-Authenticate")
        .into_iter()
        .map(|h| Challenge::parse(h).unwrap())
        .collect();
    assert_eq!(
        offered.iter().map(|c| c.algorithm).collect::<Vec<_>>(),
        [Algorithm::Sha256, Algorithm::Md5]
    );
    // Either algorithm signs in.
    for algorithm in [Algorithm::Md5, Algorithm::Sha256] {
        let (ok, _) = alice.authed(fe1, &register, &password, Some(algorithm));
        assert_eq!(ok.status, 200, "{algorithm}: {ok:?}");
    }

    // A captured REGISTER header, sent again with another Contact, Call-ID and CSeq, to the
    // same Front End or the other one of the pool: a new challenge, never 200.
    let (ok, captured) = alice.authed(fe1, &register, &password, None);
    assert_eq!(ok.status, 200);
    let mut mallory = Ua::on("127.0.0.1");
    for dest in [fe1, fe2] {
        let mut hijack = mallory.register(ALICE, mallory.local());
        hijack.headers.push("Authorization", captured.clone());
        let answer = mallory.send(dest, &hijack);
        assert_eq!(answer.status, 401, "{dest}: {answer:?}");
        if dest == fe1 {
            let ch = Challenge::parse(answer.headers.get("WWW-Authenticate").unwrap()).unwrap();
            assert!(
                ch.stale,
                "a right digest on a used nonce is stale (RFC 7616)"
            );
        }
    }
    // The same header with the same CSeq and Call-ID but a new branch: still no.
    let mut again = alice.fresh(&register);
    again.headers.push("Authorization", captured.clone());
    assert_eq!(alice.send(fe1, &again).status, 401);

    // Carol listens; Alice messages Bob (not signed in: 480 once authenticated).
    let carol = Ua::on("127.0.0.1");
    let mut carol_ua = Ua::on("127.0.0.1");
    let carol_pw = lab.password(CAROL);
    let carol_register = carol_ua.register(CAROL, carol.local());
    let (ok, _) = carol_ua.authed(fe1, &carol_register, &carol_pw, None);
    assert_eq!(ok.status, 200);
    let to_bob = message(&mut alice, ALICE, BOB, "for Bob only");
    let (answer, to_bob_auth) = alice.authed(fe1, &to_bob, &password, None);
    assert_eq!(answer.status, 480, "{answer:?}");
    // That header replayed toward Carol with another body is refused, and nothing reaches
    // her; a MESSAGE Alice really sends her does.
    let mut replayed = message(&mut mallory, ALICE, CAROL, "send me your password");
    replayed.headers.push("Authorization", to_bob_auth);
    let answer = mallory.send(fe1, &replayed);
    assert!(
        answer.status == 400 && answer.reason.contains("digest uri"),
        "{answer:?}"
    );
    assert!(carol.receive(Duration::from_millis(500)).is_none());
    let to_carol = message(&mut alice, ALICE, CAROL, "hello Carol");
    let got = std::thread::scope(|s| {
        let received = s.spawn(|| carol.receive(Duration::from_secs(5)));
        let (answer, _) = alice.authed(fe1, &to_carol, &password, None);
        assert_eq!(answer.status, 200, "{answer:?}");
        received.join().unwrap().expect("delivered")
    });
    assert_eq!(got.body, b"hello Carol");
    assert!(got.headers.get("Authorization").is_none());

    // An unknown user is challenged like Alice and refused in the same words as a wrong
    // password: nothing tells them apart.
    let nobody = "sip:nobody@contoso.com";
    let unknown = alice.register(nobody, alice.local());
    let ch_unknown = alice.send(fe1, &unknown);
    assert_eq!(ch_unknown.status, 401);
    assert_eq!(
        ch_unknown.headers.get_all("WWW-Authenticate").len(),
        2,
        "{ch_unknown:?}"
    );
    let (no, _) = alice.authed(fe1, &unknown, "guess", None);
    let (wrong, _) = alice.authed(fe1, &register, "guess", None);
    assert_eq!((no.status, &no.reason), (wrong.status, &wrong.reason));
    assert_eq!(no.status, 403);
}

#[test]
fn guessing_locks_the_guesser_out_and_not_the_user() {
    let lab = Lab::up_with(&["--users", "2"]);
    let fe1 = registrar(&lab, "pool1-fe1.contoso.com");
    let password = lab.password(ALICE);
    // The attacker guesses from its own address: one challenge, then 2,000 answers, each
    // with the next nonce count (the cheapest way to guess).
    let mut mallory = Ua::on("127.0.0.66");
    let register = mallory.register(ALICE, mallory.local());
    let challenge = mallory.send(fe1, &register);
    assert_eq!(challenge.status, 401);
    let mut locked = 0;
    let mut wrong = 0;
    for nc in 1..=2_000u32 {
        let mut guess = mallory.fresh(&register);
        let header = answer(&challenge, &guess, &format!("guess{nc}"), None, nc);
        guess.headers.push("Authorization", header);
        let r = mallory.send(fe1, &guess);
        assert_eq!(r.status, 403, "{r:?}");
        if r.reason.contains("too many failed sign-ins") {
            assert!(r.headers.get("Retry-After").is_some());
            locked += 1;
        } else {
            wrong += 1;
        }
    }
    assert!(
        wrong <= 20 && locked >= 1_980,
        "{wrong} guesses were checked, {locked} refused as locked"
    );
    // The right password from the guesser's address is not accepted while locked.
    let (r, _) = mallory.authed(fe1, &register, &password, None);
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.reason.contains("too many failed sign-ins"), "{r:?}");
    // Alice, from her own address, signs in at once.
    let out = run(&["client", "--lab", lab.dir(), "--user", ALICE, "sign-in"]);
    assert!(
        out.status.success() && stdout(&out).contains("in full mode"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    // Guesses with a nonce the server never issued count as well (a challenge for them
    // would say, by `stale`, whether the digest was right).
    let mut forger = Ua::on("127.0.0.67");
    let register = forger.register(ALICE, forger.local());
    let mut forged = forger.send(fe1, &register);
    let ch = Challenge::parse(forged.headers.get("WWW-Authenticate").unwrap()).unwrap();
    forged.headers.set(
        "WWW-Authenticate",
        Challenge {
            nonce: format!("{}0", &ch.nonce[..ch.nonce.len() - 1]),
            ..ch
        }
        .to_string(),
    );
    let reasons: Vec<String> = (1..=8u32)
        .map(|nc| {
            let mut guess = forger.fresh(&register);
            let header = answer(&forged, &guess, &format!("forged{nc}"), None, nc);
            guess.headers.push("Authorization", header);
            let r = forger.send(fe1, &guess);
            assert_eq!(r.status, 403, "{r:?}");
            r.reason
        })
        .collect();
    assert!(
        reasons[..5]
            .iter()
            .all(|r| r.contains("wrong user name or password"))
            && reasons[6..].iter().all(|r| r.contains("too many")),
        "{reasons:?}"
    );
    // And from any other address.
    let mut home = Ua::on("127.0.0.77");
    let register = home.register(ALICE, home.local());
    let (r, _) = home.authed(fe1, &register, &password, None);
    assert_eq!(r.status, 200, "{r:?}");
}

/// A TCP connection to `to` from the address `ip`.
fn connect_from(ip: &str, to: SocketAddr) -> std::net::TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let from: SocketAddr = format!("{ip}:0").parse().unwrap();
    socket.bind(&from.into()).unwrap();
    socket
        .connect_timeout(&to.into(), Duration::from_secs(3))
        .unwrap();
    socket.into()
}

/// Whether the server closed `stream` (within `wait`) rather than kept it open.
fn closed_by_server(stream: &mut std::net::TcpStream, wait: Duration) -> bool {
    use std::io::Read;
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// An OPTIONS over `stream` (from fabrikam.com, which a federated partner may send):
/// its status line.
fn options_over(stream: &mut (impl std::io::Read + std::io::Write)) -> String {
    let request = format!(
        "OPTIONS sip:contoso.com SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKo{}\r\n\
         From: <sip:probe@fabrikam.com>;tag=1\r\nTo: <sip:contoso.com>\r\nCall-ID: o{}\r\n\
         CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        now(),
        now()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// Holds connections to `to` from `ip` until the server refuses one: the ones it kept.
fn fill_connections(ip: &str, to: SocketAddr, try_up_to: usize) -> Vec<std::net::TcpStream> {
    let mut held = Vec::new();
    for _ in 0..try_up_to {
        let mut s = connect_from(ip, to);
        if closed_by_server(&mut s, Duration::from_millis(200)) {
            break;
        }
        held.push(s);
    }
    held
}

#[test]
fn connections_bindings_and_fan_out_are_bounded() {
    let lab = Lab::up_with(&["--users", "2"]);
    let fe1 = registrar(&lab, "pool1-fe1.contoso.com");

    // A message trickled a byte at a time is cut off 10 s after its first byte (a
    // per-read timeout held one 400 s); measured beside the other checks.
    let trickle = std::thread::spawn(move || {
        use std::io::Write;
        let mut s = connect_from("127.0.0.87", fe1);
        let start = Instant::now();
        s.write_all(b"O").unwrap();
        // One more byte every 3 s, until the server gives up on the message.
        let mut last = Instant::now();
        loop {
            if closed_by_server(&mut s, Duration::from_millis(500)) {
                return start.elapsed();
            }
            assert!(start.elapsed() < Duration::from_secs(30), "never closed");
            if last.elapsed() >= Duration::from_secs(3) && s.write_all(b"P").is_err() {
                return start.elapsed();
            }
            if last.elapsed() >= Duration::from_secs(3) {
                last = Instant::now();
            }
        }
    });

    // Connections per source: the registrar holds 64 from one address and closes the
    // next at once; another address is still served.
    let held = fill_connections("127.0.0.88", fe1, 80);
    assert_eq!(held.len(), 64);
    let mut first = held.into_iter().next().unwrap();
    let answer_within = Some(Duration::from_secs(5));
    first.set_read_timeout(answer_within).unwrap();
    assert!(options_over(&mut first).starts_with("SIP/2.0 200"));
    let mut other = connect_from("127.0.0.1", fe1);
    other.set_read_timeout(answer_within).unwrap();
    assert!(options_over(&mut other).starts_with("SIP/2.0 200"));
    // The Edge's federation listener: 32 from one address. They are a partner's, each
    // answered once over mutual TLS (a connection that does not finish its handshake is
    // closed within 5 s anyway); the next from that address is closed at once.
    let edge: SocketAddr = format!("{}1.22:5061", lab.block()).parse().unwrap();
    let partners: Vec<_> = (0..32)
        .map(|_| {
            let mut tls = crate::edge::partner_tls(&lab, connect_from("127.0.0.89", edge));
            assert!(options_over(&mut tls).starts_with("SIP/2.0 200"));
            tls
        })
        .collect();
    assert!(closed_by_server(
        &mut connect_from("127.0.0.89", edge),
        Duration::from_secs(2)
    ));
    drop(partners);

    // Bindings: 10 a user; a REGISTER that would add an 11th is refused whole, and the
    // 200 OK lists what there is.
    let password = lab.password(ALICE);
    let mut alice = Ua::on("127.0.0.1");
    let with_contacts = |ua: &mut Ua, ports: std::ops::Range<u16>| {
        let mut r = ua.register(ALICE, ua.local());
        r.headers.remove("Contact");
        for port in ports {
            r.headers
                .push("Contact", format!("<sip:alice@127.0.0.1:{port}>"));
        }
        r
    };
    let ten = with_contacts(&mut alice, 40_001..40_011);
    let (ok, _) = alice.authed(fe1, &ten, &password, None);
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.headers.get_all("Contact").len(), 10);
    let eleventh = with_contacts(&mut alice, 40_011..40_012);
    let (refused, _) = alice.authed(fe1, &eleventh, &password, None);
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(
        refused.reason.contains("at most 10 contacts"),
        "{refused:?}"
    );
    // At the limit, a contact already bound is refreshed and one is removed (RFC 3261
    // §10.3: the limit is on bindings, not on REGISTERs).
    let refresh = with_contacts(&mut alice, 40_001..40_002);
    let (ok, _) = alice.authed(fe1, &refresh, &password, None);
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.headers.get_all("Contact").len(), 10);
    let mut remove = with_contacts(&mut alice, 40_010..40_011);
    remove.headers.set("Expires", "0");
    let (ok, _) = alice.authed(fe1, &remove, &password, None);
    assert_eq!(ok.headers.get_all("Contact").len(), 9, "{ok:?}");
    // A binding for less than a minute is refused with the shortest the registrar takes.
    let mut brief = with_contacts(&mut alice, 40_010..40_011);
    brief.headers.set("Expires", "30");
    let (too_brief, _) = alice.authed(fe1, &brief, &password, None);
    assert_eq!(too_brief.status, 423, "{too_brief:?}");
    assert_eq!(too_brief.headers.get("Min-Expires"), Some("60"));
    brief.headers.set("Expires", "60");
    let (ok, _) = alice.authed(fe1, &brief, &password, None);
    assert_eq!(ok.headers.get_all("Contact").len(), 10, "{ok:?}");
    // The attack that added 3,200: 8 REGISTERs of 400 contacts each.
    for round in 0..8u16 {
        let start = 41_000 + round * 400;
        let many = with_contacts(&mut alice, start..start + 400);
        let (r, _) = alice.authed(fe1, &many, &password, None);
        assert_eq!(r.status, 403, "{r:?}");
    }
    // A contact at another address than the REGISTER's is refused: no fan-out toward
    // addresses the user does not hold.
    let mut elsewhere = alice.register(ALICE, "127.0.0.9:5060".parse().unwrap());
    elsewhere
        .headers
        .set("Contact", "<sip:alice@127.0.0.9:5060>");
    let (r, _) = alice.authed(fe1, &elsewhere, &password, None);
    assert!(r.status == 403 && r.reason.contains("address"), "{r:?}");
    let query = {
        let mut q = alice.register(ALICE, alice.local());
        q.headers.remove("Contact");
        q
    };
    let (listed, _) = alice.authed(fe1, &query, &password, None);
    assert_eq!(listed.headers.get_all("Contact").len(), 10);
    assert!(listed.to_bytes().len() < sip::MAX_MESSAGE_BYTES / 10);

    let cut_after = trickle.join().unwrap();
    assert!(
        cut_after >= Duration::from_secs(9) && cut_after <= Duration::from_secs(16),
        "{cut_after:?}"
    );
}

#[test]
fn a_register_flood_neither_stops_sign_ins_nor_causes_a_failover() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let lab = Lab::up_with(&["--users", "22"]);
    let fe1 = registrar(&lab, "pool1-fe1.contoso.com");
    let fe2 = registrar(&lab, "pool1-fe2.contoso.com");
    let users = lab.credentials_on("pool1.contoso.com");
    assert_eq!(users.len(), 22);
    // 8 s of unauthenticated REGISTERs at 20,000 a second from one address, to both
    // Front Ends of pool1: longer than the lab's 5 s failure detection interval.
    const FLOOD: Duration = Duration::from_secs(8);
    const RATE: u64 = 20_000;
    let sent = AtomicU64::new(0);
    let flooding = AtomicBool::new(true);
    let signed_in = std::thread::scope(|s| {
        let flood = s.spawn(|| {
            let socket = UdpSocket::bind("127.0.0.99:0").unwrap();
            let local = socket.local_addr().unwrap();
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed() < FLOOD {
                // Keep to the rate: send what is due, then wait for the next millisecond.
                let due = start.elapsed().as_micros() as u64 * RATE / 1_000_000;
                while n < due {
                    let request = format!(
                        "REGISTER sip:contoso.com SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKf{n}\r\n\
                         From: <sip:user0001.pool1@contoso.com>;tag={n}\r\nTo: <sip:user0001.pool1@contoso.com>\r\n\
                         Call-ID: flood{n}\r\nCSeq: 1 REGISTER\r\nContact: <sip:x@{local}>\r\nContent-Length: 0\r\n\r\n"
                    );
                    let dest = if n.is_multiple_of(2) { fe1 } else { fe2 };
                    let _ = socket.send_to(request.as_bytes(), dest);
                    n += 1;
                }
                sent.store(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
            flooding.store(false, Ordering::Relaxed);
            n
        });
        // Once the flood is on, 22 users sign in from their own addresses.
        while sent.load(Ordering::Relaxed) < RATE / 2 {
            std::thread::yield_now();
        }
        let started = Instant::now();
        let sign_ins: Vec<_> = users
            .iter()
            .enumerate()
            .map(|(i, (sip, password))| {
                let dest = if i.is_multiple_of(2) { fe1 } else { fe2 };
                s.spawn(move || {
                    let mut ua = Ua::on(&format!("127.0.0.{}", 10 + i));
                    let register = ua.register(sip, ua.local());
                    let (r, _) = ua.authed(dest, &register, password, None);
                    (r.status, started.elapsed())
                })
            })
            .collect();
        let results: Vec<(u16, Duration)> =
            sign_ins.into_iter().map(|t| t.join().unwrap()).collect();
        let during = flooding.load(Ordering::Relaxed);
        let total = flood.join().unwrap();
        assert!(total >= RATE * 7, "the flood sent {total}");
        assert!(during, "the sign-ins finished while the flood was on");
        results
    });
    for (status, after) in &signed_in {
        assert_eq!(*status, 200, "a sign-in during the flood: {signed_in:?}");
        assert!(*after < Duration::from_secs(5), "{signed_in:?}");
    }
    // pool2 never took pool1 for down, and pool1's users were never served elsewhere.
    let logs = std::path::Path::new(lab.dir()).join("logs");
    for fe in ["pool2-fe1.contoso.com", "pool2-fe2.contoso.com"] {
        let log = std::fs::read_to_string(logs.join(format!("{fe}.log"))).unwrap();
        assert!(
            !log.contains("partner pool unreachable"),
            "{fe} declared pool1 down during the flood"
        );
    }
    let info = lab.json(
        Some("pool2-fe1.contoso.com"),
        "Get-CsUserPoolInfo -Identity sip:user0001.pool1@contoso.com",
    );
    assert_eq!(info["Mode"], "Normal", "{info}");
    // Dropped datagrams were counted in a few lines, not one line each.
    for fe in ["pool1-fe1.contoso.com", "pool1-fe2.contoso.com"] {
        let log = std::fs::read_to_string(logs.join(format!("{fe}.log"))).unwrap();
        let lines = log.lines().filter(|l| l.contains("dropped")).count();
        assert!(lines <= 6, "{fe}: {lines} lines about dropped traffic");
    }
}

/// The bytes of a server's replica database and its write-ahead log.
fn replica_bytes(lab: &Lab, fqdn: &str) -> Vec<u8> {
    let dir = std::path::PathBuf::from(lab.server(fqdn)["data_dir"].as_str().unwrap());
    ["replica.db", "replica.db-wal"]
        .iter()
        .filter_map(|f| std::fs::read(dir.join(f)).ok())
        .flatten()
        .collect()
}

fn holds(bytes: &[u8], text: &str) -> bool {
    bytes.windows(text.len()).any(|w| w == text.as_bytes())
}

#[test]
fn the_password_equivalent_hash_stays_off_the_edges() {
    let lab = Lab::up_with(&["--users", "2"]);
    let password = lab.password(ALICE);
    let username = ALICE.trim_start_matches("sip:");
    let hashes =
        [Algorithm::Md5, Algorithm::Sha256].map(|a| a.ha1(username, "contoso.com", &password));
    // The Front Ends, which authenticate users, hold both hashes (what makes the check
    // below meaningful: the files are read the same way).
    for fe in ["pool1-fe1.contoso.com", "pool2-fe2.contoso.com"] {
        eventually(10, "the hashes on a Front End", || {
            let bytes = replica_bytes(&lab, fe);
            hashes.iter().all(|h| holds(&bytes, h)).then_some(())
        });
    }
    // An Edge's replica has the user (it knows who is homed where) and no hash.
    for edge in ["edgeserver1.contoso.com", "edgeserver2.contoso.com"] {
        let bytes = replica_bytes(&lab, edge);
        assert!(holds(&bytes, ALICE), "{edge} has the user record");
        for h in &hashes {
            assert!(!holds(&bytes, h), "{edge}'s replica holds a digest hash");
        }
    }
    // A user enabled now reaches the Edges without a hash too.
    let out = lab.shell(
        None,
        "Enable-CsUser -Identity Dave -SipAddress sip:dave@contoso.com -RegistrarPool pool1.contoso.com",
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let shown: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let shown = shown.as_array().map_or(shown.clone(), |a| a[0].clone());
    let dave_password = shown["Password"].as_str().unwrap().to_string();
    let dave = Algorithm::Sha256.ha1("dave@contoso.com", "contoso.com", &dave_password);
    eventually(10, "Dave on pool1-fe1 and on the Edge", || {
        (holds(&replica_bytes(&lab, "pool1-fe1.contoso.com"), &dave)
            && holds(
                &replica_bytes(&lab, "edgeserver1.contoso.com"),
                "sip:dave@contoso.com",
            ))
        .then_some(())
    });
    assert!(!holds(
        &replica_bytes(&lab, "edgeserver1.contoso.com"),
        &dave
    ));
    // And Dave signs in with SHA-256, which tandem client prefers.
    let mut ua = Ua::on("127.0.0.1");
    let register = ua.register("sip:dave@contoso.com", ua.local());
    let (r, header) = ua.authed(
        registrar(&lab, "pool1-fe1.contoso.com"),
        &register,
        &dave_password,
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(header.contains("algorithm=SHA-256"), "{header}");
}
