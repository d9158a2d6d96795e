//! The attacks of issue 18 on SIP, replayed against a real lab: captured digest headers
//! sent again, guessing passwords, asking who exists. Each would succeed without its fix.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use sip::digest::{self, Algorithm, Challenge, Credentials};
use sip::{Headers, Message, Method, Request, Response};

use crate::lab::Lab;
use crate::{run, stderr, stdout};

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
        let mut r = self.build(Method::Register, "sip:contoso.com", aor, aor);
        let user = aor.trim_start_matches("sip:").split('@').next().unwrap();
        r.headers.push("Contact", format!("<sip:{user}@{contact}>"));
        r.headers.push("Expires", "300");
        r
    }

    /// Sends `request` and waits for its final answer, retransmitting as UDP asks.
    pub(crate) fn send(&self, dest: SocketAddr, request: &Request) -> Response {
        let branch = request
            .top_via()
            .and_then(|v| v.branch().map(str::to_string))
            .unwrap();
        let bytes = request.to_bytes();
        let deadline = Instant::now() + Duration::from_secs(8);
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
                    return r;
                }
            }
        }
        panic!("no answer from {dest} to {}", request.method)
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
    // And from any other address.
    let mut home = Ua::on("127.0.0.77");
    let register = home.register(ALICE, home.local());
    let (r, _) = home.authed(fe1, &register, &password, None);
    assert_eq!(r.status, 200, "{r:?}");
}
