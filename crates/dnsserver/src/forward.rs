//! Conditional forwarding: a query for a name of a forwarder's zone is sent on to the
//! zone's master servers, one after the other, and the first answer goes back to the client
//! with the client's query id (over UDP as the master gave it, a truncated answer included,
//! so the client asks again over TCP; over TCP for a query that came over TCP).
//!
//! Bounded like the rest of the server: at most [`Limits::in_flight`] queries forwarded at
//! once (SERVFAIL beyond), [`Limits::per_master`] for each master (then the next, then
//! SERVFAIL), answers read into a buffer of [`UDP_ANSWER`] bytes (UDP; one larger is
//! answered with TC set, so the client asks over TCP) or 65,535 (TCP). Each query goes from
//! a socket of its own on a port the system picks (bound to port 0) with an id of its own,
//! and only an answer from that master with that id and question is taken. Waits are on
//! the server's [`clock::Clock`] (tokio's time), so tests run them on paused time.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The largest answer a master may give over UDP (a larger one is not taken whole).
pub const UDP_ANSWER: usize = 4096;

/// How forwarding is bounded.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Queries being forwarded at once; one more is answered SERVFAIL at once.
    pub in_flight: usize,
    /// How long each master has to answer (connect, send and answer, over TCP).
    pub per_master: Duration,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        in_flight: 256,
        per_master: Duration::from_secs(2),
    };
}

/// What became of a forwarded query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A master answered; its answer went to the client.
    Answered,
    /// No master answered in time (or each refused): SERVFAIL.
    NoAnswer,
    /// Too many queries were being forwarded already: SERVFAIL at once.
    Busy,
    /// The master's UDP answer was larger than [`UDP_ANSWER`]: TC set, the client asks
    /// again over TCP.
    TooLarge,
}

impl Outcome {
    const ALL: [Outcome; 4] = [
        Outcome::Answered,
        Outcome::NoAnswer,
        Outcome::Busy,
        Outcome::TooLarge,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::NoAnswer => "no_answer",
            Outcome::Busy => "busy",
            Outcome::TooLarge => "too_large",
        }
    }
}

/// The server's forwarding: its slots and what it counted.
#[derive(Debug)]
pub struct Forwarding {
    limits: Limits,
    slots: Arc<Semaphore>,
    /// `[transport][outcome]`: UDP then TCP.
    counts: [[AtomicU64; 4]; 2],
}

impl Forwarding {
    pub fn new(limits: Limits) -> Forwarding {
        Forwarding {
            limits,
            slots: Arc::new(Semaphore::new(limits.in_flight)),
            counts: Default::default(),
        }
    }

    /// A slot for one forwarded query, held until it is answered; `None` when every slot
    /// is taken.
    pub fn slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    fn count(&self, tcp: bool, outcome: Outcome) {
        let i = Outcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or_default();
        self.counts[usize::from(tcp)][i].fetch_add(1, Ordering::Relaxed);
    }

    /// SERVFAIL for a query that found no slot (counted).
    pub fn busy(&self, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
        self.count(tcp, Outcome::Busy);
        dns::forward::servfail(query)
    }

    /// Asks `masters` in turn (never `own`, this server's DNS address) and returns what
    /// goes back to the client: the first master's answer with the client's id, SERVFAIL
    /// when none answered, an empty answer with TC set when a UDP answer was too large.
    /// Counted by outcome. The caller holds a [`Forwarding::slot`].
    pub async fn forward(
        &self,
        query: &[u8],
        masters: &[SocketAddr],
        own: SocketAddr,
        tcp: bool,
        clock: &clock::Clock,
    ) -> Option<Vec<u8>> {
        let (answer, outcome) = self.ask(query, masters, own, tcp, clock).await;
        self.count(tcp, outcome);
        answer
    }

    async fn ask(
        &self,
        query: &[u8],
        masters: &[SocketAddr],
        own: SocketAddr,
        tcp: bool,
        clock: &clock::Clock,
    ) -> (Option<Vec<u8>>, Outcome) {
        let Some(client) = dns::forward::question(query) else {
            return (None, Outcome::NoAnswer);
        };
        for &master in masters {
            if dns::zones::is_own_address(master, own) {
                continue;
            }
            let sent = dns::forward::with_id(query, dns::forward::random_id());
            let by = clock.deadline(self.limits.per_master);
            let asked = async {
                if tcp {
                    ask_tcp(master, &sent).await
                } else {
                    ask_udp(master, &sent).await
                }
            };
            match tokio::time::timeout_at(by, asked).await {
                Ok(Ok(Reply::Answer(answer))) => {
                    return (
                        Some(dns::forward::with_id(&answer, client.id)),
                        Outcome::Answered,
                    );
                }
                Ok(Ok(Reply::TooLarge)) => {
                    return (dns::forward::truncated(query), Outcome::TooLarge);
                }
                Ok(Err(error)) => {
                    tracing::debug!(%master, %error, zone_name = client.name, "a master server gave no answer");
                }
                Err(_) => {
                    tracing::debug!(%master, zone_name = client.name, "a master server did not answer in time");
                }
            }
        }
        (dns::forward::servfail(query), Outcome::NoAnswer)
    }

    /// The counts in Prometheus's text exposition format.
    pub fn exposition(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::from(
            "# HELP tandem_dns_forwarded_total Queries the lab's DNS server forwarded to a conditional forwarder's master servers, by transport and outcome\n\
             # TYPE tandem_dns_forwarded_total counter\n",
        );
        for (t, transport) in ["udp", "tcp"].iter().enumerate() {
            for (i, outcome) in Outcome::ALL.iter().enumerate() {
                let n = self.counts[t][i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "tandem_dns_forwarded_total{{transport=\"{transport}\",outcome=\"{}\"}} {n}",
                    outcome.label()
                );
            }
        }
        let in_flight = self
            .limits
            .in_flight
            .saturating_sub(self.slots.available_permits());
        let _ = write!(
            out,
            "# HELP tandem_dns_forwards_in_flight Queries being forwarded now (at most {})\n\
             # TYPE tandem_dns_forwards_in_flight gauge\n\
             tandem_dns_forwards_in_flight {in_flight}\n",
            self.limits.in_flight
        );
        out
    }
}

/// What a master sent back.
enum Reply {
    Answer(Vec<u8>),
    TooLarge,
}

/// A socket of its own for one query: the system's port, of the master's family.
fn any_port(master: SocketAddr) -> SocketAddr {
    match master {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// One query over UDP: the first datagram from `master` that answers it.
async fn ask_udp(master: SocketAddr, sent: &[u8]) -> std::io::Result<Reply> {
    let socket = tokio::net::UdpSocket::bind(any_port(master)).await?;
    // Connected: datagrams from anyone else are not received, and a master that is not
    // listening is known at once (ICMP port unreachable).
    socket.connect(master).await?;
    socket.send(sent).await?;
    let mut buf = vec![0u8; UDP_ANSWER + 1];
    loop {
        let n = socket.recv(&mut buf).await?;
        if n > UDP_ANSWER {
            // Cut at the buffer: its header says whether it was the answer.
            let id_matches = buf[..2] == sent[..2] && buf[2] & 0x80 != 0;
            if id_matches {
                return Ok(Reply::TooLarge);
            }
            continue;
        }
        if dns::forward::answers(&buf[..n], sent) {
            return Ok(Reply::Answer(buf[..n].to_vec()));
        }
    }
}

/// One query over TCP (RFC 1035 section 4.2.2: two length bytes, then the message).
async fn ask_tcp(master: SocketAddr, sent: &[u8]) -> std::io::Result<Reply> {
    let socket = match master {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(any_port(master))?;
    let mut stream = socket.connect(master).await?;
    let len = u16::try_from(sent.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "query too long"))?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(sent);
    stream.write_all(&out).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut answer).await?;
    if dns::forward::answers(&answer, sent) {
        Ok(Reply::Answer(answer))
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the master's answer is not an answer to the query",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `name`'s A record, id 0x4242.
    fn query(name: &str) -> Vec<u8> {
        let mut q = vec![0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.trim_end_matches('.').split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q
    }

    fn rcode(answer: &[u8]) -> u8 {
        answer[3] & 0x0f
    }

    /// A master that never answers.
    async fn silent() -> (tokio::net::UdpSocket, SocketAddr) {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let at = socket.local_addr().unwrap();
        (socket, at)
    }

    /// A master that answers every query with its id and question (NOERROR, no records).
    async fn answering() -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let at = socket.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let (n, peer) = socket.recv_from(&mut buf).await.unwrap();
                let mut answer = buf[..n].to_vec();
                answer[2] |= 0x80;
                socket.send_to(&answer, peer).await.unwrap();
            }
        });
        (at, task)
    }

    const OWN: &str = "127.0.0.1:53";

    #[tokio::test(start_paused = true)]
    async fn silent_masters_each_have_their_time_then_the_client_gets_servfail() {
        let (_a, first) = silent().await;
        let (_b, second) = silent().await;
        let forwarding = Forwarding::new(Limits::DEFAULT);
        let q = query("xmpp.partner.example");
        let started = tokio::time::Instant::now();
        let fail = forwarding
            .forward(
                &q,
                &[first, second],
                OWN.parse().unwrap(),
                false,
                &clock::Clock::system(),
            )
            .await
            .unwrap();
        assert_eq!(rcode(&fail), 2, "SERVFAIL");
        assert_eq!(&fail[..2], &q[..2], "the client's id");
        // Two seconds each, on paused time (no real wait), and no more.
        let took = started.elapsed();
        assert!(took >= Limits::DEFAULT.per_master * 2, "{took:?}");
        assert!(took < Limits::DEFAULT.per_master * 3, "{took:?}");
        let metrics = forwarding.exposition();
        assert!(
            metrics
                .contains("tandem_dns_forwarded_total{transport=\"udp\",outcome=\"no_answer\"} 1"),
            "{metrics}"
        );
    }

    #[tokio::test]
    async fn the_next_master_answers_when_one_is_silent_with_the_clients_id() {
        let (_a, quiet) = silent().await;
        let (master, task) = answering().await;
        let limits = Limits {
            in_flight: 4,
            per_master: Duration::from_millis(300),
        };
        let forwarding = Forwarding::new(limits);
        let q = query("xmpp.partner.example");
        let started = tokio::time::Instant::now();
        let answer = forwarding
            .forward(
                &q,
                &[quiet, master],
                OWN.parse().unwrap(),
                false,
                &clock::Clock::system(),
            )
            .await
            .unwrap();
        assert_eq!(&answer[..2], &q[..2], "the client's id");
        assert_eq!(rcode(&answer), 0);
        assert!(started.elapsed() >= limits.per_master);
        assert!(
            forwarding
                .exposition()
                .contains("tandem_dns_forwarded_total{transport=\"udp\",outcome=\"answered\"} 1")
        );
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn beyond_the_slots_a_query_is_answered_servfail_at_once_and_never_sent_to_itself() {
        let (_a, itself) = silent().await;
        let forwarding = Forwarding::new(Limits {
            in_flight: 1,
            per_master: Duration::from_secs(2),
        });
        let held = forwarding.slot().unwrap();
        assert!(forwarding.slot().is_none());
        let q = query("a.partner.example");
        assert_eq!(rcode(&forwarding.busy(&q, false).unwrap()), 2);
        drop(held);
        assert!(forwarding.slot().is_some());
        // A master that is this server itself is skipped: SERVFAIL at once, nothing sent.
        let started = tokio::time::Instant::now();
        let fail = forwarding
            .forward(&q, &[itself], itself, true, &clock::Clock::system())
            .await
            .unwrap();
        assert_eq!(rcode(&fail), 2);
        assert!(started.elapsed() < Duration::from_millis(10));
        let metrics = forwarding.exposition();
        assert!(metrics.contains("outcome=\"busy\"} 1"), "{metrics}");
        assert!(
            metrics.contains("tandem_dns_forwards_in_flight 0"),
            "{metrics}"
        );
    }
}
