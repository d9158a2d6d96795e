//! A TURN client over UDP: allocate with long-term credentials (401, then the realm and
//! nonce given; a stale nonce retried once), permissions, channels, Send indications and
//! channel data, and what comes back. For `tandem client media`, `tandem bench media` and
//! the tests; interoperability is checked with coturn's client, not this one.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::credentials::{Credentials, long_term_key};
use crate::stun::{self, Class, Message};

/// Why the relay did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the relay at {0} did not answer")]
    NoAnswer(SocketAddr),
    #[error("the relay refused: {code} {reason}")]
    Refused { code: u16, reason: String },
    #[error("the relay's answer lacked {0}")]
    Malformed(&'static str),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// An allocation on a relay, seen from its client.
#[derive(Debug)]
pub struct TurnClient {
    socket: UdpSocket,
    server: SocketAddr,
    username: String,
    realm: String,
    nonce: String,
    key: [u8; 16],
    password: String,
    wait: Duration,
    /// The relayed transport address: where peers send to reach this client.
    pub relayed: SocketAddr,
    /// This client's address as the relay sees it.
    pub mapped: SocketAddr,
    /// What [`TurnClient::recv`] reads into, kept between calls.
    buf: Vec<u8>,
}

/// What came back through the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A Data indication from a peer.
    Data { peer: SocketAddr, data: Vec<u8> },
    /// Channel data on a channel.
    Channel { channel: u16, data: Vec<u8> },
}

fn transaction() -> [u8; 12] {
    let mut t = [0u8; 12];
    let _ = getrandom::fill(&mut t);
    t
}

impl TurnClient {
    /// Allocates a relayed UDP address on the relay at `server`, from `bind` (port 0:
    /// any), with `credentials`, waiting `wait` for each answer.
    pub async fn allocate(
        server: SocketAddr,
        bind: IpAddr,
        credentials: &Credentials,
        wait: Duration,
    ) -> Result<TurnClient, ClientError> {
        let socket = UdpSocket::bind((bind, 0)).await?;
        let mut client = TurnClient {
            socket,
            server,
            username: credentials.username.clone(),
            realm: String::new(),
            nonce: String::new(),
            key: [0; 16],
            password: credentials.password.clone(),
            wait,
            relayed: server,
            mapped: server,
            buf: vec![0u8; stun::MAX_MESSAGE],
        };
        let answer = client
            .request(
                Message::new(Class::Request, stun::ALLOCATE, transaction())
                    .with(stun::REQUESTED_TRANSPORT, [17, 0, 0, 0])
                    .with(stun::LIFETIME, 600u32.to_be_bytes()),
            )
            .await?;
        client.relayed = answer
            .xor_address(stun::XOR_RELAYED_ADDRESS)
            .ok_or(ClientError::Malformed("XOR-RELAYED-ADDRESS"))?;
        client.mapped = answer
            .xor_address(stun::XOR_MAPPED_ADDRESS)
            .ok_or(ClientError::Malformed("XOR-MAPPED-ADDRESS"))?;
        Ok(client)
    }

    /// Sends `request` (authenticated once the relay has said how) and waits for its answer:
    /// a 401 the first time, or a 438, is answered with the realm and nonce it gives.
    async fn request(&mut self, request: Message) -> Result<Message, ClientError> {
        for _ in 0..3 {
            let mut m = request.clone();
            m.transaction = transaction();
            let bytes = if self.nonce.is_empty() {
                m.encode(None, true)
            } else {
                m.with(stun::USERNAME, self.username.as_str())
                    .with(stun::REALM, self.realm.as_str())
                    .with(stun::NONCE, self.nonce.as_str())
                    .encode(Some(&self.key), true)
            };
            let transaction = <[u8; 12]>::try_from(&bytes[8..20]).unwrap_or_default();
            let answer = self.answer_to(&bytes, transaction).await?;
            match (answer.class, answer.error_code()) {
                (Class::Success, _) => return Ok(answer),
                (Class::Error, Some(code @ (401 | 438)))
                    if code == 438 || self.nonce.is_empty() =>
                {
                    self.realm = answer
                        .text(stun::REALM)
                        .ok_or(ClientError::Malformed("REALM"))?
                        .to_string();
                    self.nonce = answer
                        .text(stun::NONCE)
                        .ok_or(ClientError::Malformed("NONCE"))?
                        .to_string();
                    self.key = long_term_key(&self.username, &self.realm, &self.password);
                }
                (_, code) => {
                    let reason = answer
                        .get(stun::ERROR_CODE)
                        .and_then(|v| std::str::from_utf8(v.get(4..)?).ok())
                        .unwrap_or_default()
                        .to_string();
                    return Err(ClientError::Refused {
                        code: code.unwrap_or(0),
                        reason,
                    });
                }
            }
        }
        Err(ClientError::Refused {
            code: 401,
            reason: "Unauthorized".into(),
        })
    }

    /// Sends `bytes` (up to three times) and waits for the answer of `transaction`.
    async fn answer_to(&self, bytes: &[u8], transaction: [u8; 12]) -> Result<Message, ClientError> {
        let mut buf = vec![0u8; stun::MAX_MESSAGE];
        for _ in 0..3 {
            self.socket.send_to(bytes, self.server).await?;
            let deadline = tokio::time::Instant::now() + self.wait;
            while let Ok(Ok((n, from))) =
                tokio::time::timeout_at(deadline, self.socket.recv_from(&mut buf)).await
            {
                if from != self.server {
                    continue;
                }
                if let Ok(p) = stun::parse(&buf[..n])
                    && p.message.transaction == transaction
                {
                    return Ok(p.message);
                }
            }
        }
        Err(ClientError::NoAnswer(self.server))
    }

    /// Lets `peer`'s address send to the relayed address (and be sent to).
    pub async fn permit(&mut self, peer: SocketAddr) -> Result<(), ClientError> {
        let m = Message::new(Class::Request, stun::CREATE_PERMISSION, transaction())
            .with_xor_address(stun::XOR_PEER_ADDRESS, peer);
        self.request(m).await.map(|_| ())
    }

    /// Binds `channel` to `peer`.
    pub async fn bind_channel(
        &mut self,
        channel: u16,
        peer: SocketAddr,
    ) -> Result<(), ClientError> {
        let m = Message::new(Class::Request, stun::CHANNEL_BIND, transaction())
            .with(
                stun::CHANNEL_NUMBER,
                [(channel >> 8) as u8, channel as u8, 0, 0],
            )
            .with_xor_address(stun::XOR_PEER_ADDRESS, peer);
        self.request(m).await.map(|_| ())
    }

    /// Renews the allocation for `lifetime` (zero deletes it).
    pub async fn refresh(&mut self, lifetime: Duration) -> Result<(), ClientError> {
        let m = Message::new(Class::Request, stun::REFRESH, transaction())
            .with(stun::LIFETIME, (lifetime.as_secs() as u32).to_be_bytes());
        self.request(m).await.map(|_| ())
    }

    /// Sends `data` to `peer` in a Send indication.
    pub async fn send(&self, peer: SocketAddr, data: &[u8]) -> Result<(), ClientError> {
        let m = Message::new(Class::Indication, stun::SEND, transaction())
            .with_xor_address(stun::XOR_PEER_ADDRESS, peer)
            .with(stun::DATA_ATTR, data);
        self.socket
            .send_to(&m.encode(None, false), self.server)
            .await?;
        Ok(())
    }

    /// Sends `data` on a bound channel.
    pub async fn send_on(&self, channel: u16, data: &[u8]) -> Result<(), ClientError> {
        self.socket
            .send_to(&stun::channel_data(channel, data, false), self.server)
            .await?;
        Ok(())
    }

    /// The next thing relayed to this client, within `wait`.
    pub async fn recv(&mut self, wait: Duration) -> Option<Received> {
        let buf = &mut self.buf;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let (n, from) = tokio::time::timeout_at(deadline, self.socket.recv_from(buf))
                .await
                .ok()?
                .ok()?;
            if from != self.server {
                continue;
            }
            if let Some((channel, data)) = stun::parse_channel_data(&buf[..n]) {
                return Some(Received::Channel {
                    channel,
                    data: data.to_vec(),
                });
            }
            if let Ok(p) = stun::parse(&buf[..n])
                && p.message.class == Class::Indication
                && p.message.method == stun::DATA
                && let (Some(peer), Some(data)) = (
                    p.message.xor_address(stun::XOR_PEER_ADDRESS),
                    p.message.get(stun::DATA_ATTR),
                )
            {
                return Some(Received::Data {
                    peer,
                    data: data.to_vec(),
                });
            }
        }
    }
}
