//! Many datagrams a system call: a server's socket is read with `recvmmsg`, and the
//! answers to what one read brought are sent with one `sendmmsg`.
//!
//! Under sign-in load a Front End's socket always has datagrams waiting (they queue while
//! the ones before them are answered). Read one by one, each costs a `recvfrom` and its
//! answer a `sendto`, and each `sendto` that wakes a client is a point where the
//! scheduler may switch the reader out for it. Read together and answered together, a
//! batch costs two system calls and at most one such switch. Nothing waits to fill a
//! batch: a read takes what is there (one datagram on a quiet socket), and the answers
//! leave as soon as the requests read with them are handled — before the next read.
//!
//! The answers are kept in an [`Outbox`] that the reading task opens on its thread for
//! the time it hands the batch's requests to the server (synchronous code: no other task
//! runs on the thread meanwhile); [`crate::Endpoint::send`] on that socket, from that
//! thread, puts the answer there instead of sending it. An answer sent later (a request
//! that waited on the Back End) finds no outbox open and is sent at once, as before.

use std::cell::RefCell;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams a server's read takes at most.
pub(crate) const READ_BATCH: usize = 32;
/// The largest datagram a read takes whole (UDP's payload is at most 65,507 bytes).
const DATAGRAM: usize = 65_536;
/// Messages one `sendmmsg` takes at most (Linux's `UIO_MAXIOV`).
const SEND_BATCH: usize = 1_024;

/// The buffers one read fills, and what it put there.
#[derive(Debug)]
pub(crate) struct Inbox {
    buffers: Vec<Vec<u8>>,
    received: Vec<(usize, Option<SocketAddr>)>,
    /// The most datagrams the system said it had dropped on the socket, as of the
    /// datagrams read so far (`SO_RXQ_OVFL`, when the socket asks for it).
    dropped: u32,
}

impl Inbox {
    /// Room for `count` datagrams (the pages of a buffer are taken from the system only
    /// when a datagram fills them).
    pub(crate) fn new(count: usize) -> Inbox {
        let count = count.max(1);
        Inbox {
            buffers: (0..count).map(|_| vec![0u8; DATAGRAM]).collect(),
            received: Vec::with_capacity(count),
            dropped: 0,
        }
    }

    /// How many datagrams one read takes at most.
    pub(crate) fn room(&self) -> usize {
        self.buffers.len()
    }

    /// Reads the datagrams waiting on `socket`, as many as there is room for, without
    /// waiting: how many (at least one), or `WouldBlock` when none is.
    pub(crate) fn try_read(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let fd = socket.as_raw_fd();
        let Inbox {
            buffers,
            received,
            dropped,
        } = self;
        received.clear();
        socket.try_io(Interest::READABLE, || {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = buffers
                .iter_mut()
                .map(|b| [IoSliceMut::new(b.as_mut_slice())])
                .collect();
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(
                slices.len(),
                Some(nix::cmsg_space!(u32)),
            );
            let read = recvmmsg(
                fd,
                &mut headers,
                slices.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            )
            .map_err(io::Error::from)?;
            for message in read {
                // Each datagram carries the socket's drop count as it was queued.
                for control in message.cmsgs().into_iter().flatten() {
                    if let ControlMessageOwned::RxqOvfl(count) = control {
                        *dropped = (*dropped).max(count);
                    }
                }
                // A datagram without a source (not over UDP) cannot be answered.
                let from = message.address.as_ref().and_then(socket_addr);
                received.push((message.bytes, from));
            }
            Ok(received.len())
        })
    }

    /// How many datagrams the system dropped on the socket for want of room, as the
    /// datagrams read so far say (0 for a socket that does not ask, see [`count_drops`]).
    pub(crate) fn dropped(&self) -> u32 {
        self.dropped
    }

    /// The `i`th datagram of the last read and where it came from (None past them, and
    /// for one whose source the system did not give).
    pub(crate) fn datagram(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let (len, from) = *self.received.get(i)?;
        Some((&self.buffers[i][..len], from?))
    }
}

/// Asks the system to say, with each datagram, how many it dropped on `socket` for want
/// of room (`SO_RXQ_OVFL`): how a server knows its socket overflowed.
pub(crate) fn count_drops(socket: &socket2::Socket) -> io::Result<()> {
    nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::RxqOvfl, &1)
        .map_err(io::Error::from)
}

fn socket_addr(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    address
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

/// Answers kept to be sent together: their bytes one after the other, and where each goes.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// Which socket's answers it keeps (the address of the endpoint's shared state).
    owner: usize,
    bytes: Vec<u8>,
    messages: Vec<(usize, usize, SocketAddr)>,
}

thread_local! {
    /// The outbox open on this thread, if a reading task opened one.
    static OPEN: RefCell<Option<Outbox>> = const { RefCell::new(None) };
}

impl Outbox {
    /// Opens `self` on this thread for the answers sent on `owner`'s socket, until
    /// [`Outbox::close`].
    pub(crate) fn open(mut self, owner: usize) {
        self.owner = owner;
        OPEN.with(|open| *open.borrow_mut() = Some(self));
    }

    /// Closes the outbox open on this thread and gives it back with what it kept.
    pub(crate) fn close() -> Outbox {
        OPEN.with(|open| open.borrow_mut().take())
            .unwrap_or_default()
    }

    /// Keeps `bytes` for `dest` in the outbox open on this thread, if there is one for
    /// `owner`'s socket: whether it did.
    pub(crate) fn keep(owner: usize, dest: SocketAddr, bytes: &[u8]) -> bool {
        OPEN.with(|open| {
            let mut open = open.borrow_mut();
            match open.as_mut() {
                Some(outbox) if outbox.owner == owner => {
                    let start = outbox.bytes.len();
                    outbox.bytes.extend_from_slice(bytes);
                    outbox.messages.push((start, bytes.len(), dest));
                    true
                }
                _ => false,
            }
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Sends what it keeps on `socket`, as few `sendmmsg` as it takes, and empties it.
    /// A message the system refuses (its destination unreachable) is dropped, as a
    /// `sendto` that failed would be; the others still go.
    pub(crate) async fn send(&mut self, socket: &UdpSocket) {
        let mut next = 0;
        while next < self.messages.len() {
            match socket.try_io(Interest::WRITABLE, || self.send_from(socket, next)) {
                Ok(sent) => next += sent.max(1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if socket.writable().await.is_err() {
                        break;
                    }
                }
                Err(_) => next += 1,
            }
        }
        self.bytes.clear();
        self.messages.clear();
    }

    /// One `sendmmsg` of the messages from `first`: how many the system took.
    fn send_from(&self, socket: &UdpSocket, first: usize) -> io::Result<usize> {
        let messages = &self.messages[first..self.messages.len().min(first + SEND_BATCH)];
        let slices: Vec<[IoSlice<'_>; 1]> = messages
            .iter()
            .map(|&(start, len, _)| [IoSlice::new(&self.bytes[start..start + len])])
            .collect();
        let destinations: Vec<Option<SockaddrStorage>> = messages
            .iter()
            .map(|&(_, _, dest)| Some(SockaddrStorage::from(dest)))
            .collect();
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(slices.len(), None);
        let sent = sendmmsg(
            socket.as_raw_fd(),
            &mut headers,
            slices.iter(),
            &destinations,
            [],
            MsgFlags::empty(),
        )
        .map_err(io::Error::from)?;
        Ok(sent.count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn socket() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0").await.unwrap()
    }

    /// Waits until `socket` has something to read (the test's datagrams are on loopback).
    async fn readable(socket: &UdpSocket) {
        tokio::time::timeout(Duration::from_secs(5), socket.readable())
            .await
            .expect("a datagram in time")
            .unwrap();
    }

    #[tokio::test]
    async fn one_read_takes_every_datagram_waiting_with_its_source() {
        let server = socket().await;
        let (a, b) = (socket().await, socket().await);
        for (n, client) in [&a, &b, &a].iter().enumerate() {
            client
                .send_to(
                    format!("datagram {n}").as_bytes(),
                    server.local_addr().unwrap(),
                )
                .await
                .unwrap();
        }
        let mut inbox = Inbox::new(READ_BATCH);
        let mut got = Vec::new();
        while got.len() < 3 {
            readable(&server).await;
            let Ok(count) = inbox.try_read(&server) else {
                continue;
            };
            for i in 0..count {
                let (bytes, from) = inbox.datagram(i).unwrap();
                got.push((String::from_utf8(bytes.to_vec()).unwrap(), from));
            }
            assert!(inbox.datagram(count).is_none());
        }
        let (a, b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        assert_eq!(
            got,
            [
                ("datagram 0".to_string(), a),
                ("datagram 1".to_string(), b),
                ("datagram 2".to_string(), a)
            ]
        );
        // Nothing left: the next read says so rather than waiting.
        let empty = inbox.try_read(&server).unwrap_err();
        assert_eq!(empty.kind(), io::ErrorKind::WouldBlock);
    }

    #[tokio::test]
    async fn a_read_takes_no_more_than_its_room() {
        let server = socket().await;
        let client = socket().await;
        for n in 0..5u8 {
            client
                .send_to(&[n], server.local_addr().unwrap())
                .await
                .unwrap();
        }
        let mut inbox = Inbox::new(2);
        let mut got = Vec::new();
        while got.len() < 5 {
            readable(&server).await;
            if let Ok(count) = inbox.try_read(&server) {
                assert!(count <= 2, "{count}");
                got.extend((0..count).map(|i| inbox.datagram(i).unwrap().0[0]));
            }
        }
        assert_eq!(got, [0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn an_open_outbox_keeps_its_own_sockets_answers_and_sends_them_together() {
        let server = socket().await;
        let (a, b) = (socket().await, socket().await);
        let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        // Nothing is open: nothing is kept.
        assert!(!Outbox::keep(1, to_a, b"early"));
        Outbox::default().open(1);
        assert!(Outbox::keep(1, to_a, b"first"));
        assert!(!Outbox::keep(2, to_a, b"another socket's"));
        assert!(Outbox::keep(1, to_b, b"second"));
        // A destination this socket cannot reach (IPv6 from an IPv4 socket) is dropped;
        // the answers after it still go.
        assert!(Outbox::keep(1, "[::1]:9".parse().unwrap(), b"unreachable"));
        assert!(Outbox::keep(1, to_a, b"third"));
        let mut outbox = Outbox::close();
        assert!(!Outbox::keep(1, to_a, b"after closing"));
        outbox.send(&server).await;
        assert!(outbox.is_empty());
        let mut buf = [0u8; 64];
        let mut read = |socket: &UdpSocket| {
            let n = socket.try_recv(&mut buf).unwrap();
            String::from_utf8(buf[..n].to_vec()).unwrap()
        };
        readable(&a).await;
        assert_eq!(read(&a), "first");
        readable(&a).await;
        assert_eq!(read(&a), "third");
        readable(&b).await;
        assert_eq!(read(&b), "second");
        assert!(a.try_recv(&mut buf).is_err() && b.try_recv(&mut buf).is_err());
    }
}
