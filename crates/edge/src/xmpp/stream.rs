//! One XMPP connection as the gateway reads and writes it: bytes in, a stream header then
//! elements out ([`super::xml`]), elements and text written back, every read bounded in
//! time. The connection may be upgraded to TLS (STARTTLS) in place: the bytes read so far
//! must all have been used (RFC 6120 §5.4.3.3: nothing may follow `<starttls/>` before
//! `<proceed/>`), else the upgrade is refused.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::xml::{self, Element, Next, Scope, StreamHeader};

/// How long a stanza may take from its first byte to its last.
pub const STANZA_TIME: Duration = Duration::from_secs(10);
/// What the buffer may hold beyond one stanza (the start of the next) before the stream
/// is refused.
const MAX_HEADER_SLACK: usize = 4096;

/// Anything a stream runs over: TCP, then TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Why a stream cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The peer closed the connection, or ended its stream.
    Closed,
    /// Nothing (or not enough) arrived in time.
    Timeout,
    /// What arrived is not what XMPP allows: the reason, for a stream error.
    Bad(String),
    /// The connection failed.
    Io(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Closed => f.write_str("the peer closed the stream"),
            Failure::Timeout => f.write_str("the peer did not answer in time"),
            Failure::Bad(why) => write!(f, "the peer sent what XMPP does not allow: {why}"),
            Failure::Io(why) => write!(f, "the connection failed: {why}"),
        }
    }
}

/// A peer's stream header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub to: String,
    pub from: String,
    pub id: String,
    /// It declared the dialback namespace.
    pub dialback: bool,
}

/// An XMPP connection.
pub struct XmppStream {
    io: Box<dyn Io>,
    buf: Vec<u8>,
    scope: Scope,
    /// When the stanza now in the buffer began to arrive.
    begun: Option<tokio::time::Instant>,
}

impl std::fmt::Debug for XmppStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XmppStream")
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl XmppStream {
    pub fn new(io: Box<dyn Io>) -> XmppStream {
        XmppStream {
            io,
            buf: Vec::new(),
            scope: Scope::default(),
            begun: None,
        }
    }

    /// Reads bytes into the buffer, within `limit`.
    async fn fill(&mut self, limit: Duration) -> Result<(), Failure> {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(limit, self.io.read(&mut chunk)).await {
            Err(_) => Err(Failure::Timeout),
            Ok(Ok(0)) => Err(Failure::Closed),
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Ok(Err(e)) => Err(Failure::Io(e.to_string())),
        }
    }

    /// Reads the peer's stream header, which must arrive whole within `limit`; its
    /// namespace declarations are in scope for what follows.
    pub async fn read_header(&mut self, limit: Duration) -> Result<Header, Failure> {
        let by = tokio::time::Instant::now() + limit;
        loop {
            match xml::parse_stream_header(&self.buf) {
                StreamHeader::Incomplete => {}
                StreamHeader::Bad(why) => return Err(Failure::Bad(why)),
                StreamHeader::Open {
                    to,
                    from,
                    id,
                    dialback,
                    length,
                } => {
                    self.scope = Scope::from_header_bytes(&self.buf[..length]);
                    self.buf.drain(..length.min(self.buf.len()));
                    return Ok(Header {
                        to,
                        from,
                        id,
                        dialback,
                    });
                }
            }
            let left = by.saturating_duration_since(tokio::time::Instant::now());
            self.fill(left).await?;
        }
    }

    /// The next element, waiting at most `idle` for each read (whitespace keepalives
    /// count as traffic); a stanza begun must end within [`STANZA_TIME`] of its first
    /// byte. `Failure::Closed` when the peer ends its stream. Cancellation-safe: what was
    /// read stays in the buffer, and when the stanza began with it.
    pub async fn next(&mut self, idle: Duration) -> Result<Element, Failure> {
        let mut parse = true;
        loop {
            // Only a `>` can end an element: bytes without one are not parsed again (a
            // peer sending a byte at a time would otherwise cost a parse per byte).
            if parse {
                match self.scope.next(&self.buf) {
                    Next::Element(element, used) => {
                        self.buf.drain(..used.min(self.buf.len()));
                        self.begun = None;
                        return Ok(element);
                    }
                    Next::Whitespace(used) => {
                        self.buf.drain(..used.min(self.buf.len()));
                        self.begun = None;
                    }
                    Next::End => {
                        self.buf.clear();
                        return Err(Failure::Closed);
                    }
                    Next::Bad(why) => return Err(Failure::Bad(why)),
                    Next::Incomplete => {
                        self.begun.get_or_insert_with(tokio::time::Instant::now);
                    }
                }
            }
            if self.buf.len() > xml::MAX_STANZA + MAX_HEADER_SLACK {
                return Err(Failure::Bad(format!(
                    "a stanza longer than {} bytes",
                    xml::MAX_STANZA
                )));
            }
            let limit = match self.begun {
                Some(begun) => idle.min(STANZA_TIME.saturating_sub(begun.elapsed())),
                None => idle,
            };
            if limit.is_zero() {
                return Err(Failure::Timeout);
            }
            let before = self.buf.len();
            self.fill(limit).await?;
            let fresh = &self.buf[before..];
            parse = fresh.contains(&b'>') || self.buf.iter().all(u8::is_ascii_whitespace);
        }
    }

    /// Writes `text` (a header, an element, a closing tag) within `limit`.
    pub async fn send_text(&mut self, text: &str, limit: Duration) -> Result<(), Failure> {
        match tokio::time::timeout(limit, async {
            self.io.write_all(text.as_bytes()).await?;
            self.io.flush().await
        })
        .await
        {
            Err(_) => Err(Failure::Timeout),
            Ok(Err(e)) => Err(Failure::Io(e.to_string())),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Writes one element.
    pub async fn send(&mut self, element: &Element, limit: Duration) -> Result<(), Failure> {
        self.send_text(&element.to_xml(), limit).await
    }

    /// The connection, for a TLS upgrade; refused when the peer sent more after
    /// `<starttls/>` than it may.
    pub fn into_io(self) -> Result<Box<dyn Io>, Failure> {
        if self.buf.iter().any(|b| !b.is_ascii_whitespace()) {
            return Err(Failure::Bad(
                "data after <starttls/> before the TLS handshake".into(),
            ));
        }
        Ok(self.io)
    }

    /// Ends the stream: a stream error (when given) and the closing tag, then the
    /// connection is closed.
    pub async fn close(mut self, error: Option<(&str, &str)>, limit: Duration) {
        let mut text = String::new();
        if let Some((condition, why)) = error {
            text.push_str(&stream_error(condition, why));
        }
        text.push_str("</stream:stream>");
        let _ = self.send_text(&text, limit).await;
        let _ = tokio::time::timeout(limit, self.io.shutdown()).await;
    }
}

/// A stream error element: `condition` of RFC 6120 §4.9.3 and a text saying why.
pub fn stream_error(condition: &str, why: &str) -> String {
    format!(
        "<stream:error><{condition} xmlns='{ns}'/><text xmlns='{ns}'>{}</text></stream:error>",
        xml::escape(why),
        ns = xml::STREAM_ERRORS_NS
    )
}

/// A stream header this server sends: from `from` to `to`, with `id` when it is the
/// receiving side.
pub fn header(from: &str, to: &str, id: Option<&str>) -> String {
    let mut text = format!(
        "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' xmlns:db='{}' version='1.0' from='{}'",
        xml::SERVER_NS,
        xml::STREAMS_NS,
        xml::DIALBACK_NS,
        xml::escape(from)
    );
    if !to.is_empty() {
        text.push_str(&format!(" to='{}'", xml::escape(to)));
    }
    if let Some(id) = id {
        text.push_str(&format!(" id='{}'", xml::escape(id)));
    }
    text.push('>');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stream_reads_its_header_then_elements_across_reads() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut stream = XmppStream::new(Box::new(a));
        let writer = tokio::spawn(async move {
            let text = format!(
                "{}<db:result from='j.example' to='c.example'>k</db:result> <message to='a@c.example'><body>hi</body></message></stream:stream>",
                header("j.example", "c.example", None)
            );
            // In small pieces: the reader must put them together.
            for piece in text.as_bytes().chunks(7) {
                b.write_all(piece).await.unwrap();
            }
            b
        });
        let h = stream.read_header(Duration::from_secs(5)).await.unwrap();
        assert_eq!((h.from.as_str(), h.to.as_str()), ("j.example", "c.example"));
        assert!(h.dialback);
        let r = stream.next(Duration::from_secs(5)).await.unwrap();
        assert!(r.is("result", xml::DIALBACK_NS));
        let m = stream.next(Duration::from_secs(5)).await.unwrap();
        assert!(m.is("message", xml::SERVER_NS));
        assert_eq!(
            stream.next(Duration::from_secs(5)).await,
            Err(Failure::Closed)
        );
        drop(writer.await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_times_out() {
        let (a, _b) = tokio::io::duplex(64);
        let mut stream = XmppStream::new(Box::new(a));
        assert_eq!(
            stream.read_header(Duration::from_secs(10)).await,
            Err(Failure::Timeout)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stanza_sent_a_byte_at_a_time_must_end_within_its_time() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut stream = XmppStream::new(Box::new(a));
        let dribble = tokio::spawn(async move {
            for byte in b"<message><body>".iter().cycle().take(4000) {
                if b.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let started = tokio::time::Instant::now();
        assert_eq!(
            stream.next(Duration::from_secs(120)).await,
            Err(Failure::Timeout)
        );
        assert!(started.elapsed() <= STANZA_TIME + Duration::from_millis(200));
        dribble.abort();
    }

    #[tokio::test]
    async fn bytes_without_an_end_past_the_stanza_limit_are_refused() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut stream = XmppStream::new(Box::new(a));
        let flood = vec![b'a'; xml::MAX_STANZA * 2];
        tokio::spawn(async move {
            let _ = b.write_all(b"<message><body>").await;
            let _ = b.write_all(&flood).await;
            b
        });
        assert!(matches!(
            stream.next(Duration::from_secs(5)).await,
            Err(Failure::Bad(_))
        ));
    }

    #[test]
    fn stream_errors_are_escaped() {
        assert_eq!(
            stream_error("policy-violation", "a<b"),
            "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>a&lt;b</text></stream:error>"
        );
    }
}
