//! The XMPP gateway on the Edge server a site's XMPP route names: server-to-server
//! streams (RFC 6120) with the deployment's XMPP allowed partners, both ways, and the
//! translation between an XMPP `<message>` and a SIP `MESSAGE`.
//!
//! - **In** (a partner's server opens a stream to the deployment's domain, found by its
//!   `_xmpp-server._tcp` SRV record): the stream's `from` must be an allowed partner
//!   (`New-CsXmppAllowedPartner`), else a `policy-violation` stream error names the
//!   command. STARTTLS is offered with the Edge's external certificate (required when the
//!   partner's `TlsNegotiation` is); after it, SASL EXTERNAL is offered when the partner's
//!   certificate chains to the Edge's partner roots and covers its domain, and Server
//!   Dialback (XEP-0220) when the partner supports it — the gateway then asks the
//!   partner's authoritative server, over a stream of its own, to confirm the key. A
//!   `<message>` from an authenticated domain to a user of ours becomes a SIP `MESSAGE`
//!   sent to the Edge pool's next hop over mutual TLS, as federated SIP is; a failure
//!   comes back as a stanza error.
//! - **Out** (a user's `MESSAGE` to `alice@<partner>`, which a Front End hands this Edge
//!   over its internal listener): one stream per partner domain, opened on first use
//!   (SRV `_xmpp-server._tcp`, or the partner's `ProxyFqdn`), STARTTLS, then SASL EXTERNAL
//!   when the partner offers it and its certificate is trusted, else dialback with a key
//!   from [`dialback::Secret`]; the stream stays open for the next message and closes
//!   after [`IDLE`] without one.
//! - **Presence**: tandem keeps registrations, not presence, so there is nothing to map:
//!   a subscription or probe is answered with a `feature-not-implemented` presence error
//!   that says so, and no presence is sent out. Pings are answered; other requests get
//!   `service-unavailable`.
//!
//! Every read is bounded in size ([`xml::MAX_STANZA`]) and time; a peer that sends what
//! is not XMPP gets a stream error and the connection is closed; nothing it sends stops
//! the gateway.

pub mod dialback;
pub mod stream;
pub mod xml;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use listener::PeerCertificate;
use node::Node;
use sip::{Method, Request};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use topology::{Negotiation, XmppPartner};

use crate::metrics;
use stream::{Failure, Header, XmppStream};
use xml::{Element, SASL_NS, STANZA_ERRORS_NS, STREAMS_NS, TLS_NS};

/// How long a peer has to send its whole stream header.
pub const HEADER_TIME: Duration = Duration::from_secs(10);
/// How long a stream may stay silent before it is closed.
pub const IDLE: Duration = Duration::from_secs(120);
/// How long one write may take.
const WRITE: Duration = Duration::from_secs(5);
/// How long a connection to a partner's server may take to open.
const CONNECT: Duration = Duration::from_secs(3);
/// How long a partner's server has to answer each step of a negotiation (a TLS
/// handshake, a dialback verification: it asks our authoritative server meanwhile).
const STEP: Duration = Duration::from_secs(10);
/// How long a user's message may wait for the partner's stream (opened and authenticated
/// first, when it was not): shorter than a Front End waits for the Edge
/// (`registrar::FEDERATE_TIMEOUT`).
const SEND_WAIT: Duration = Duration::from_secs(6);
/// How long a peer has, from its first stream header, to authenticate a domain: a
/// stream that proves nothing is not kept.
const AUTH_TIME: Duration = Duration::from_secs(30);
/// How long opening and authenticating a stream to a partner may take in all.
const NEGOTIATE: Duration = Duration::from_secs(20);
/// Dialback verifications (each a connection to a partner's server) in progress at once,
/// over every stream: a peer's `db:result`s cannot make the Edge open connections at will.
const VERIFICATIONS: usize = 16;
/// Messages waiting for one partner's stream.
const QUEUE: usize = 256;
/// The XMPP server-to-server port when DNS gives none.
const XMPP_SERVER_PORT: u16 = 5269;

/// The gateway: what the Edge needs to carry stanzas both ways.
pub struct Gateway {
    node: Arc<Node>,
    next_hop: Arc<crate::next_hop::NextHop>,
    secret: dialback::Secret,
    /// One stream per partner domain, while it is open.
    sessions: std::sync::Mutex<HashMap<String, mpsc::Sender<Outgoing>>>,
    /// Dialback verifications in progress, at most [`VERIFICATIONS`].
    verifications: Arc<tokio::sync::Semaphore>,
    /// The TLS settings, read once (as the federation listener's are): not files read and
    /// configurations built again for every stream.
    tls: std::sync::Mutex<Option<Arc<Tls>>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

/// A stanza waiting for a partner's stream, and who waits to hear it was written.
struct Outgoing {
    stanza: Element,
    done: oneshot::Sender<Result<(), String>>,
}

/// The TLS the gateway speaks on the Internet side: the Edge's external certificate, and
/// the partner roots its peers' certificates are checked against.
struct Tls {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    roots: pki::Roots,
}

/// What a partner proved on a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proof {
    SaslExternal,
    Dialback,
}

impl Proof {
    fn label(self) -> &'static str {
        match self {
            Proof::SaslExternal => "sasl_external",
            Proof::Dialback => "dialback",
        }
    }
}

impl Gateway {
    pub fn new(node: Arc<Node>, next_hop: Arc<crate::next_hop::NextHop>) -> Arc<Gateway> {
        Arc::new(Gateway {
            secret: dialback::Secret::of_token(&node.token),
            node,
            next_hop,
            sessions: std::sync::Mutex::default(),
            verifications: Arc::new(tokio::sync::Semaphore::new(VERIFICATIONS)),
            tls: std::sync::Mutex::default(),
        })
    }

    fn domain(&self) -> String {
        self.node
            .replica
            .topology()
            .deployment
            .sip_domain
            .to_ascii_lowercase()
    }

    /// The TLS settings: read the first time they are wanted (and again while they cannot
    /// be: a certificate installed later is found).
    fn tls(&self) -> Result<Arc<Tls>, String> {
        let mut kept = self
            .tls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tls) = kept.as_ref() {
            return Ok(tls.clone());
        }
        let tls = Arc::new(load_tls(&self.node)?);
        *kept = Some(tls.clone());
        Ok(tls)
    }

    // ---------------------------------------------------------------------------------
    // In: a partner's server opened a stream to us.

    /// Serves one connection a peer opened on the XMPP listener.
    pub async fn accept(self: Arc<Self>, tcp: TcpStream, peer: SocketAddr) {
        let ours = self.domain();
        let mut stream = XmppStream::new(Box::new(tcp));
        let tls = self
            .tls()
            .map_err(|e| tracing::warn!(error = %e, "XMPP streams go without STARTTLS"))
            .ok();
        let mut encrypted = false;
        let mut trusted: Option<PeerCertificate> = None;
        let mut sasl_done = false;
        let mut authenticated: Vec<String> = Vec::new();
        // Whether this stream tried dialback for its domain: one try (a new one after TLS).
        let mut dialback_tried = false;
        let auth_by = tokio::time::Instant::now() + AUTH_TIME;
        'streams: loop {
            let header = match stream.read_header(HEADER_TIME).await {
                Ok(h) => h,
                Err(Failure::Bad(why)) => {
                    metrics::xmpp_stream("bad_format");
                    let _ = stream
                        .send_text(&stream::header(&ours, "", Some(&new_id())), WRITE)
                        .await;
                    stream.close(Some(("bad-format", &why)), WRITE).await;
                    return;
                }
                Err(_) => return,
            };
            let id = new_id();
            if stream
                .send_text(&stream::header(&ours, &header.from, Some(&id)), WRITE)
                .await
                .is_err()
            {
                return;
            }
            if !header.to.is_empty() && !header.to.eq_ignore_ascii_case(&ours) {
                metrics::xmpp_stream("host_unknown");
                let why = format!("this server serves {ours}, not {}", header.to);
                stream.close(Some(("host-unknown", &why)), WRITE).await;
                return;
            }
            let topology = self.node.replica.topology();
            if sasl_done
                && !xml::jid_domain(&header.from).is_some_and(|d| authenticated.contains(&d))
            {
                let why = "the stream restarted after SASL names another domain";
                stream.close(Some(("not-authorized", why)), WRITE).await;
                return;
            }
            let Some(partner) =
                xml::jid_domain(&header.from).and_then(|d| topology.xmpp_partner(&d).cloned())
            else {
                metrics::xmpp_stream("refused");
                metrics::xmpp_authenticated("in", "refused");
                let why = if header.from.is_empty() {
                    "the stream header names no domain (from)".to_string()
                } else {
                    format!(
                        "{} is not an XMPP partner of {ours}; an administrator allows it with New-CsXmppAllowedPartner -Identity {}",
                        header.from, header.from
                    )
                };
                tracing::info!(%peer, from = %header.from, "XMPP stream refused: not an allowed partner");
                stream.close(Some(("policy-violation", &why)), WRITE).await;
                return;
            };
            metrics::xmpp_stream("features");
            let offer_tls =
                !encrypted && tls.is_some() && partner.tls_negotiation != Negotiation::NotSupported;
            let offer_sasl = encrypted
                && !sasl_done
                && partner.sasl_negotiation != Negotiation::NotSupported
                && trusted.as_ref().is_some_and(|c| c.covers(&partner.domain));
            let dialback_now = partner.support_dialback
                && !sasl_done
                && (encrypted || partner.tls_negotiation != Negotiation::Required)
                && partner.sasl_negotiation != Negotiation::Required;
            let mut features = Element::new("features", STREAMS_NS);
            if offer_tls {
                let mut starttls = Element::new("starttls", TLS_NS);
                if partner.tls_negotiation == Negotiation::Required {
                    starttls = starttls.with_child(Element::new("required", TLS_NS));
                }
                features = features.with_child(starttls);
            }
            if offer_sasl {
                features = features.with_child(
                    Element::new("mechanisms", SASL_NS)
                        .with_child(Element::new("mechanism", SASL_NS).with_text("EXTERNAL")),
                );
            }
            if dialback_now {
                features = features.with_child(
                    Element::new("dialback", xml::DIALBACK_FEATURE_NS)
                        .with_child(Element::new("errors", xml::DIALBACK_FEATURE_NS)),
                );
            }
            if stream.send(&features, WRITE).await.is_err() {
                return;
            }
            loop {
                // Until a domain is authenticated, the stream has what is left of its
                // time to prove one.
                let idle = if authenticated.is_empty() {
                    auth_by.saturating_duration_since(tokio::time::Instant::now())
                } else {
                    IDLE
                };
                let element = match stream.next(idle).await {
                    Ok(e) => e,
                    Err(Failure::Closed) => {
                        stream.close(None, WRITE).await;
                        return;
                    }
                    Err(Failure::Bad(why)) => {
                        stream.close(Some(("not-well-formed", &why)), WRITE).await;
                        return;
                    }
                    Err(Failure::Timeout) => {
                        let why = if authenticated.is_empty() {
                            "no domain was authenticated in time"
                        } else {
                            "the stream was idle"
                        };
                        stream.close(Some(("connection-timeout", why)), WRITE).await;
                        return;
                    }
                    Err(Failure::Io(_)) => return,
                };
                if element.is("starttls", TLS_NS) && offer_tls {
                    let Some(tls) = &tls else { return };
                    if stream
                        .send(&Element::new("proceed", TLS_NS), WRITE)
                        .await
                        .is_err()
                    {
                        return;
                    }
                    let Ok(io) = stream.into_io() else { return };
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
                    let Ok(Ok(secured)) = tokio::time::timeout(STEP, acceptor.accept(io)).await
                    else {
                        tracing::debug!(%peer, "XMPP STARTTLS handshake failed");
                        return;
                    };
                    let chain: Vec<_> = secured
                        .get_ref()
                        .1
                        .peer_certificates()
                        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                        .unwrap_or_default();
                    trusted = (!chain.is_empty()
                        && pki::lenient::client_trusted(&tls.roots, &chain))
                    .then(|| PeerCertificate(Arc::new(chain[0].clone())));
                    encrypted = true;
                    // What was proved before TLS counts for nothing after it.
                    authenticated.clear();
                    dialback_tried = false;
                    stream = XmppStream::new(Box::new(secured));
                    continue 'streams;
                }
                if partner.tls_negotiation == Negotiation::Required && !encrypted {
                    let why = format!(
                        "{} must use TLS (its TlsNegotiation is Required)",
                        partner.domain
                    );
                    stream.close(Some(("policy-violation", &why)), WRITE).await;
                    return;
                }
                if element.is("auth", SASL_NS) {
                    let mechanism = element.attr("mechanism").unwrap_or_default();
                    let authzid = match element.text.trim() {
                        "" | "=" => Some(partner.domain.clone()),
                        text => base64::engine::general_purpose::STANDARD
                            .decode(text)
                            .ok()
                            .and_then(|b| String::from_utf8(b).ok()),
                    };
                    let ok = offer_sasl
                        && mechanism == "EXTERNAL"
                        && authzid.is_some_and(|a| a.eq_ignore_ascii_case(&partner.domain));
                    if !ok {
                        metrics::xmpp_authenticated("in", "refused");
                        let failure = Element::new("failure", SASL_NS)
                            .with_child(Element::new("not-authorized", SASL_NS));
                        if stream.send(&failure, WRITE).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    if stream
                        .send(&Element::new("success", SASL_NS), WRITE)
                        .await
                        .is_err()
                    {
                        return;
                    }
                    metrics::xmpp_authenticated("in", Proof::SaslExternal.label());
                    sasl_done = true;
                    if let Some(d) = topology::domain::normalize(&partner.domain)
                        && !authenticated.contains(&d)
                    {
                        authenticated.push(d);
                    }
                    continue 'streams;
                }
                if element.is("result", xml::DIALBACK_NS) && element.attr("type").is_none() {
                    let from = element.attr("from").and_then(xml::jid_domain);
                    let to = element.attr("to").unwrap_or_default();
                    let answer = |kind: &str, from_domain: &str| {
                        Element::new("result", xml::DIALBACK_NS)
                            .with_attr("from", &ours)
                            .with_attr("to", from_domain)
                            .with_attr("type", kind)
                    };
                    let Some(from) = from else {
                        stream
                            .close(
                                Some(("improper-addressing", "db:result without from")),
                                WRITE,
                            )
                            .await;
                        return;
                    };
                    // Only the stream's own domain, whose settings decided what this
                    // stream offered, and once: another domain's TLS or SASL policy
                    // cannot be skipped on it, nor the Edge made to call out at will.
                    let own = xml::jid_domain(&header.from).is_some_and(|d| d == from);
                    let first = own && !dialback_tried;
                    dialback_tried |= own;
                    let valid = first
                        && dialback_now
                        && to.eq_ignore_ascii_case(&ours)
                        && self
                            .verify_with_authoritative(&partner, &from, &id, element.text.trim())
                            .await;
                    if valid {
                        metrics::xmpp_authenticated("in", Proof::Dialback.label());
                        if !authenticated.contains(&from) {
                            authenticated.push(from.clone());
                        }
                    } else {
                        metrics::xmpp_authenticated("in", "refused");
                        tracing::info!(%peer, %from, "XMPP dialback refused");
                    }
                    let kind = if valid { "valid" } else { "invalid" };
                    if stream.send(&answer(kind, &from), WRITE).await.is_err() {
                        return;
                    }
                    continue;
                }
                if element.is("verify", xml::DIALBACK_NS) {
                    // We are the authoritative server: was this key ours, for this stream?
                    let receiving = element.attr("from").unwrap_or_default().to_string();
                    let originating = element.attr("to").unwrap_or_default();
                    let stream_id = element.attr("id").unwrap_or_default().to_string();
                    let valid = originating.eq_ignore_ascii_case(&ours)
                        && self.secret.verify(
                            element.text.trim(),
                            &receiving.to_ascii_lowercase(),
                            &ours,
                            &stream_id,
                        );
                    let reply = Element::new("verify", xml::DIALBACK_NS)
                        .with_attr("from", &ours)
                        .with_attr("to", &receiving)
                        .with_attr("id", &stream_id)
                        .with_attr("type", if valid { "valid" } else { "invalid" });
                    if stream.send(&reply, WRITE).await.is_err() {
                        return;
                    }
                    continue;
                }
                // A stanza: only from a domain this stream authenticated.
                let from_domain = element.attr("from").and_then(xml::jid_domain);
                if !from_domain
                    .as_ref()
                    .is_some_and(|d| authenticated.contains(d))
                {
                    let why = format!(
                        "a stanza from {} before that domain authenticated on this stream",
                        element.attr("from").unwrap_or("nobody")
                    );
                    metrics::xmpp_stanza("in", "unauthenticated");
                    stream.close(Some(("not-authorized", &why)), WRITE).await;
                    return;
                }
                // A server-to-server stream goes one way (RFC 6120 §4.1): answers leave
                // on our own stream to the sender's domain.
                if let (Some(reply), Some(domain)) =
                    (self.stanza_in(&element, &ours).await, from_domain)
                {
                    let gateway = self.clone();
                    self.node.spawn(async move {
                        if let Err(e) = gateway.send_stanza(&domain, reply).await {
                            tracing::debug!(%domain, error = %e, "an answer to the XMPP partner was not sent");
                        }
                    });
                }
            }
        }
    }

    /// Handles one stanza from an authenticated partner; the reply to send back, if any.
    async fn stanza_in(&self, stanza: &Element, ours: &str) -> Option<Element> {
        match triage(stanza, ours) {
            Triage::Ignore(label) => {
                metrics::xmpp_stanza("in", label);
                None
            }
            Triage::Reply(reply, label) => {
                metrics::xmpp_stanza("in", label);
                Some(reply)
            }
            Triage::Deliver {
                sender,
                recipient,
                body,
            } => match self.to_sip(&sender, &recipient, &body).await {
                Ok(()) => {
                    metrics::xmpp_stanza("in", "delivered");
                    None
                }
                Err((kind, condition, why, label)) => {
                    metrics::xmpp_stanza("in", label);
                    Some(stanza_error(stanza, kind, condition, &why))
                }
            },
        }
    }

    /// Hands an XMPP user's message to a user of ours: a SIP MESSAGE to the Edge pool's
    /// next hop. The error is the stanza error's type, condition, text and the metric's
    /// outcome label.
    async fn to_sip(
        &self,
        sender: &str,
        recipient: &str,
        body: &str,
    ) -> Result<(), (&'static str, &'static str, String, &'static str)> {
        let mut headers = sip::Headers::new();
        headers.push("From", format!("<sip:{sender}>;tag={}", new_id()));
        headers.push("To", format!("<sip:{recipient}>"));
        let sender_domain = sender.rsplit('@').next().unwrap_or("xmpp.invalid");
        headers.push("Call-ID", format!("xmpp-{}@{sender_domain}", new_id()));
        headers.push("CSeq", "1 MESSAGE");
        headers.push("Max-Forwards", "70");
        headers.push("Content-Type", "text/plain; charset=UTF-8");
        let request = Request {
            method: Method::Message,
            uri: format!("sip:{recipient}"),
            headers,
            body: body.as_bytes().to_vec(),
        };
        let answer = crate::next_hop::to_next_hop(&self.node, &self.next_hop, &request).await;
        match answer.status {
            200..=299 => Ok(()),
            404 => Err((
                "cancel",
                "item-not-found",
                format!("{recipient} is not a user here"),
                "no_such_user",
            )),
            480 => Err((
                "wait",
                "recipient-unavailable",
                format!("{recipient} is not signed in"),
                "not_signed_in",
            )),
            403 => Err((
                "auth",
                "forbidden",
                format!("{recipient} does not take messages from {sender}"),
                "forbidden",
            )),
            _ => {
                // The reason may name the inside (pools, commands): it stays in the log.
                tracing::info!(status = answer.status, reason = %answer.reason, %recipient, "an XMPP partner's message was not delivered");
                Err((
                    "wait",
                    "service-unavailable",
                    "the deployment could not take the message now".to_string(),
                    "unavailable",
                ))
            }
        }
    }

    /// Asks the authoritative server of `domain` whether `key` is the one it gave for the
    /// stream `stream_id` it opened to us (XEP-0220 §2.2).
    async fn verify_with_authoritative(
        &self,
        partner: &XmppPartner,
        domain: &str,
        stream_id: &str,
        key: &str,
    ) -> bool {
        let ours = self.domain();
        let Ok(_permit) = self.verifications.clone().try_acquire_owned() else {
            tracing::info!(%domain, "dialback not verified: {VERIFICATIONS} verifications already in progress");
            return false;
        };
        let verified = async {
            let (mut stream, _, _, _) = self.open(partner, domain).await?;
            let verify = Element::new("verify", xml::DIALBACK_NS)
                .with_attr("from", &ours)
                .with_attr("to", domain)
                .with_attr("id", stream_id)
                .with_text(key);
            stream
                .send(&verify, WRITE)
                .await
                .map_err(|e| e.to_string())?;
            loop {
                let answer = stream.next(STEP).await.map_err(|e| e.to_string())?;
                if answer.is("verify", xml::DIALBACK_NS) {
                    let valid = answer.attr("type") == Some("valid")
                        && answer.attr("id") == Some(stream_id);
                    stream.close(None, WRITE).await;
                    return Ok::<bool, String>(valid);
                }
            }
        };
        match tokio::time::timeout(NEGOTIATE, verified)
            .await
            .unwrap_or_else(|_| Err("no answer in time".into()))
        {
            Ok(valid) => valid,
            Err(why) => {
                tracing::info!(%domain, error = %why, "dialback verification failed");
                false
            }
        }
    }

    // ---------------------------------------------------------------------------------
    // Out: a user of ours sends to an XMPP partner.

    /// Sends a user's message to an XMPP user (`to`, `user@partner`): on the partner's
    /// stream, opened first if need be. Done when the stanza is written (XMPP has no
    /// delivery answer); the error says why it could not be.
    pub async fn send_message(
        self: &Arc<Self>,
        from: &str,
        to: &str,
        body: &str,
    ) -> Result<(), String> {
        let (Some((from, _)), Some((to, domain))) = (xml::bare_jid(from), xml::bare_jid(to)) else {
            return Err(format!("{to} is not an XMPP address (user@domain)"));
        };
        let topology = self.node.replica.topology();
        if topology.xmpp_partner(&domain).is_none() {
            return Err(format!(
                "{domain} is not an XMPP partner; an administrator allows it with New-CsXmppAllowedPartner -Identity {domain}"
            ));
        }
        let stanza = Element::new("message", xml::SERVER_NS)
            .with_attr("from", &from)
            .with_attr("to", &to)
            .with_attr("type", "chat")
            .with_attr("id", &new_id())
            .with_child(Element::new("body", xml::SERVER_NS).with_text(body));
        let result = self.send_stanza(&domain, stanza).await;
        metrics::xmpp_stanza(
            "out",
            if result.is_ok() {
                "delivered"
            } else {
                "failed"
            },
        );
        result
    }

    /// Writes `stanza` on our stream to `domain` (opened first if need be), within
    /// [`SEND_WAIT`].
    async fn send_stanza(self: &Arc<Self>, domain: &str, stanza: Element) -> Result<(), String> {
        let (done, written) = oneshot::channel();
        let queue = self.session(domain);
        let sent = tokio::time::timeout(SEND_WAIT, async {
            queue
                .send(Outgoing { stanza, done })
                .await
                .map_err(|_| format!("the stream to {domain} closed"))?;
            written
                .await
                .unwrap_or_else(|_| Err(format!("the stream to {domain} closed")))
        })
        .await;
        sent.unwrap_or_else(|_| Err(format!("{domain} did not take the message in time")))
    }

    /// The queue of the open stream to `domain`, or of a new one.
    fn session(self: &Arc<Self>, domain: &str) -> mpsc::Sender<Outgoing> {
        let mut sessions = self
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(queue) = sessions.get(domain).filter(|q| !q.is_closed()) {
            return queue.clone();
        }
        let (queue, waiting) = mpsc::channel(QUEUE);
        sessions.insert(domain.to_string(), queue.clone());
        let gateway = self.clone();
        let domain = domain.to_string();
        self.node
            .spawn(async move { gateway.run_session(domain, waiting).await });
        queue
    }
}

/// The outbound side: streams this gateway opens to partners' servers.
impl Gateway {
    /// Runs the stream to `domain`: opened and authenticated, then stanzas written as
    /// they come, and what the partner sends read (errors logged, pings answered), until
    /// it is idle for [`IDLE`] or fails.
    async fn run_session(self: Arc<Self>, domain: String, mut waiting: mpsc::Receiver<Outgoing>) {
        let connected = tokio::time::timeout(NEGOTIATE, self.connect(&domain))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "{domain}'s server did not complete the stream in time"
                ))
            });
        let mut stream = match connected {
            Ok(stream) => stream,
            Err(why) => {
                tracing::warn!(%domain, error = %why, "cannot open an XMPP stream to the partner");
                waiting.close();
                while let Some(o) = waiting.recv().await {
                    let _ = o.done.send(Err(why.clone()));
                }
                return;
            }
        };
        loop {
            tokio::select! {
                next = waiting.recv() => {
                    let Some(o) = next else {
                        stream.close(None, WRITE).await;
                        return;
                    };
                    // Its sender has been told it failed (it waited too long): not sent late.
                    if o.done.is_closed() {
                        continue;
                    }
                    let written = stream.send(&o.stanza, WRITE).await.map_err(|e| e.to_string());
                    let failed = written.is_err();
                    let _ = o.done.send(written);
                    if failed {
                        return;
                    }
                }
                read = stream.next(IDLE) => match read {
                    Ok(element) => {
                        if element.attr("type") == Some("error") {
                            tracing::info!(%domain, stanza = %element.to_xml(), "the XMPP partner returned an error");
                        }
                    }
                    Err(Failure::Timeout) => {
                        waiting.close();
                        stream.close(None, WRITE).await;
                        // Messages that came in the meantime fail rather than wait.
                        while let Some(o) = waiting.recv().await {
                            let _ = o.done.send(Err(format!("the stream to {domain} closed")));
                        }
                        return;
                    }
                    Err(_) => return,
                },
            }
        }
    }

    /// Opens and authenticates a stream to `domain` as its partner settings say.
    async fn connect(&self, domain: &str) -> Result<XmppStream, String> {
        let ours = self.domain();
        let topology = self.node.replica.topology();
        let partner = topology
            .xmpp_partner(domain)
            .cloned()
            .ok_or_else(|| format!("{domain} is not an XMPP partner"))?;
        let (mut stream, header, features, trusted) = self.open(&partner, domain).await?;
        let sasl_offered = features
            .child("mechanisms", SASL_NS)
            .is_some_and(|m| m.children.iter().any(|c| c.text.trim() == "EXTERNAL"));
        if trusted && sasl_offered && partner.sasl_negotiation != Negotiation::NotSupported {
            let auth = Element::new("auth", SASL_NS)
                .with_attr("mechanism", "EXTERNAL")
                .with_text(&base64::engine::general_purpose::STANDARD.encode(&ours));
            stream.send(&auth, WRITE).await.map_err(|e| e.to_string())?;
            let answer = stream.next(STEP).await.map_err(|e| e.to_string())?;
            if answer.is("success", SASL_NS) {
                stream
                    .send_text(&stream::header(&ours, domain, None), WRITE)
                    .await
                    .map_err(|e| e.to_string())?;
                stream.read_header(STEP).await.map_err(|e| e.to_string())?;
                let _features = stream.next(STEP).await.map_err(|e| e.to_string())?;
                metrics::xmpp_authenticated("out", Proof::SaslExternal.label());
                return Ok(stream);
            }
            if partner.sasl_negotiation == Negotiation::Required {
                return Err(format!(
                    "{domain} refused SASL EXTERNAL ({}), and its SaslNegotiation is Required",
                    answer.to_xml()
                ));
            }
            // Else fall back to dialback on a new stream: a refused SASL attempt leaves
            // this one in no defined state.
            stream.close(None, WRITE).await;
            return self.dialback(&partner, domain).await;
        }
        if partner.sasl_negotiation == Negotiation::Required {
            return Err(format!(
                "{domain} offered no SASL EXTERNAL with a trusted certificate, and its SaslNegotiation is Required"
            ));
        }
        let dialback_offered = features
            .child("dialback", xml::DIALBACK_FEATURE_NS)
            .is_some()
            || header.dialback;
        if !(partner.support_dialback && dialback_offered) {
            return Err(format!(
                "no way to authenticate to {domain}: {} and {}",
                if sasl_offered && trusted {
                    "SASL EXTERNAL is not allowed for it"
                } else if sasl_offered {
                    "its certificate is not trusted for SASL EXTERNAL"
                } else {
                    "it offered no SASL EXTERNAL"
                },
                if partner.support_dialback {
                    "it offered no dialback"
                } else {
                    "dialback is not allowed for it (Set-CsXmppAllowedPartner -SupportDialbackNegotiation $true)"
                }
            ));
        }
        self.authenticate_by_dialback(stream, &header, domain).await
    }

    /// A new stream to `domain` authenticated with dialback.
    async fn dialback(&self, partner: &XmppPartner, domain: &str) -> Result<XmppStream, String> {
        if !partner.support_dialback {
            return Err(format!(
                "{domain} refused SASL EXTERNAL and dialback is not allowed for it"
            ));
        }
        let (stream, header, _, _) = self.open(partner, domain).await?;
        self.authenticate_by_dialback(stream, &header, domain).await
    }

    async fn authenticate_by_dialback(
        &self,
        mut stream: XmppStream,
        header: &Header,
        domain: &str,
    ) -> Result<XmppStream, String> {
        let ours = self.domain();
        if header.id.is_empty() {
            return Err(format!(
                "{domain}'s server gave its stream no id, which a dialback key is bound to"
            ));
        }
        let key = self.secret.key(domain, &ours, &header.id);
        let result = Element::new("result", xml::DIALBACK_NS)
            .with_attr("from", &ours)
            .with_attr("to", domain)
            .with_text(&key);
        stream
            .send(&result, WRITE)
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let answer = stream
                .next(STEP)
                .await
                .map_err(|e| format!("{domain} did not confirm our dialback key: {e}"))?;
            if answer.is("result", xml::DIALBACK_NS) {
                return match answer.attr("type") {
                    Some("valid") => {
                        metrics::xmpp_authenticated("out", Proof::Dialback.label());
                        Ok(stream)
                    }
                    other => Err(format!(
                        "{domain} did not accept our dialback key (type {})",
                        other.unwrap_or("none")
                    )),
                };
            }
        }
    }

    /// Opens a stream to `domain`'s server and negotiates TLS: the stream, the peer's
    /// last header, its features, and whether its certificate is trusted for `domain`.
    async fn open(
        &self,
        partner: &XmppPartner,
        domain: &str,
    ) -> Result<(XmppStream, Header, Element, bool), String> {
        let ours = self.domain();
        let tcp = self.reach(partner, domain).await?;
        let mut stream = XmppStream::new(Box::new(tcp));
        let step = |e: Failure| format!("{domain}: {e}");
        stream
            .send_text(&stream::header(&ours, domain, None), WRITE)
            .await
            .map_err(step)?;
        let mut header = stream.read_header(STEP).await.map_err(step)?;
        let mut features = stream.next(STEP).await.map_err(step)?;
        if !features.is("features", STREAMS_NS) {
            return Err(format!(
                "{domain} sent {} instead of its stream features",
                features.name
            ));
        }
        let starttls = features.child("starttls", TLS_NS).is_some();
        if !starttls || partner.tls_negotiation == Negotiation::NotSupported {
            if partner.tls_negotiation == Negotiation::Required {
                return Err(format!(
                    "{domain} offered no STARTTLS, and its TlsNegotiation is Required"
                ));
            }
            return Ok((stream, header, features, false));
        }
        let tls = self.tls()?;
        stream
            .send(&Element::new("starttls", TLS_NS), WRITE)
            .await
            .map_err(step)?;
        let proceed = stream.next(STEP).await.map_err(step)?;
        if !proceed.is("proceed", TLS_NS) {
            return Err(format!("{domain} refused STARTTLS"));
        }
        let io = stream.into_io().map_err(step)?;
        let name = rustls::pki_types::ServerName::try_from(domain.to_string())
            .map_err(|e| format!("{domain} is not a name TLS can check: {e}"))?;
        let connector = tokio_rustls::TlsConnector::from(tls.client.clone());
        let secured = tokio::time::timeout(STEP, connector.connect(name, io))
            .await
            .map_err(|_| format!("{domain}: the TLS handshake timed out"))?
            .map_err(|e| format!("{domain}: the TLS handshake failed: {e}"))?;
        let chain: Vec<_> = secured
            .get_ref()
            .1
            .peer_certificates()
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let trusted = pki::lenient::server_trusted(&tls.roots, &chain, domain);
        if !trusted && !partner.support_dialback {
            return Err(format!(
                "{domain}'s certificate is not trusted (it does not chain to the Edge's partner roots or does not cover {domain}), and dialback is not allowed for it"
            ));
        }
        stream = XmppStream::new(Box::new(secured));
        stream
            .send_text(&stream::header(&ours, domain, None), WRITE)
            .await
            .map_err(step)?;
        header = stream.read_header(STEP).await.map_err(step)?;
        features = stream.next(STEP).await.map_err(step)?;
        Ok((stream, header, features, trusted))
    }

    /// A TCP connection to `domain`'s XMPP server, from the Edge's external address:
    /// the partner's proxy when it names one, else the `_xmpp-server._tcp` SRV targets
    /// in order, else the domain's own address.
    async fn reach(&self, partner: &XmppPartner, domain: &str) -> Result<TcpStream, String> {
        let targets = match &partner.proxy_fqdn {
            Some(proxy) => vec![(proxy.clone(), XMPP_SERVER_PORT)],
            None => {
                crate::reach::service_targets(
                    &self.node,
                    &format!("_xmpp-server._tcp.{domain}"),
                    domain,
                    XMPP_SERVER_PORT,
                )
                .await
            }
        };
        let from = crate::reach::external_ip(&self.node);
        let mut last = format!("DNS gives no server for {domain}");
        for (name, port) in targets {
            for address in crate::reach::addresses_of(&self.node, &name).await {
                let at = SocketAddr::new(address, port);
                match crate::reach::connect_from(from, at, CONNECT).await {
                    Ok(tcp) => return Ok(tcp),
                    Err(e) => last = format!("{name} ({at}): {e}"),
                }
            }
        }
        Err(format!("cannot reach {domain}'s XMPP server: {last}"))
    }
}

/// What becomes of a stanza from an authenticated partner.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Triage {
    /// A message for a user of ours: passed on as SIP.
    Deliver {
        sender: String,
        recipient: String,
        body: String,
    },
    /// Answered here, and counted under the label.
    Reply(Element, &'static str),
    /// Nothing to do (counted under the label).
    Ignore(&'static str),
}

/// Decides what to do with `stanza`, from a partner, to the deployment whose domain is
/// `ours`. Pure: messages to our users are delivered; presence subscriptions and probes
/// are answered that tandem has no presence; pings are answered; other requests get
/// `service-unavailable`; the rest is ignored.
fn triage(stanza: &Element, ours: &str) -> Triage {
    let from = stanza.attr("from").unwrap_or_default();
    let to = stanza.attr("to").unwrap_or_default();
    let kind = stanza.attr("type").unwrap_or_default();
    let error = |kind, condition, why: &str, label| {
        Triage::Reply(stanza_error(stanza, kind, condition, why), label)
    };
    // Presence and requests are answered only when they are for us.
    if stanza.name != "message" && xml::jid_domain(to).as_deref() != Some(ours) {
        return Triage::Ignore("not_ours");
    }
    match stanza.name.as_str() {
        "message" if kind == "error" => Triage::Ignore("error_from_partner"),
        "message" => {
            let (Some((sender, _)), Some((recipient, recipient_domain))) =
                (xml::bare_jid(from), xml::bare_jid(to))
            else {
                return error(
                    "modify",
                    "jid-malformed",
                    "the from or to address is not user@domain",
                    "bad_address",
                );
            };
            if recipient_domain != ours {
                return error(
                    "cancel",
                    "item-not-found",
                    &format!("this gateway serves {ours}"),
                    "not_ours",
                );
            }
            // A message without a body (chat states, receipts) has nothing to carry.
            match stanza.child("body", xml::SERVER_NS) {
                Some(body) => Triage::Deliver {
                    sender,
                    recipient,
                    body: body.text.clone(),
                },
                None => Triage::Ignore("no_body"),
            }
        }
        "presence" if matches!(kind, "subscribe" | "probe") => error(
            "cancel",
            "feature-not-implemented",
            "tandem carries instant messages only: it keeps no presence to share or subscribe to",
            "presence_not_mapped",
        ),
        "presence" => Triage::Ignore("presence"),
        "iq" if matches!(kind, "get" | "set") => {
            if stanza.child("ping", "urn:xmpp:ping").is_none() {
                return error(
                    "cancel",
                    "service-unavailable",
                    "the gateway answers pings only",
                    "iq_not_served",
                );
            }
            let mut reply = Element::new("iq", xml::SERVER_NS)
                .with_attr("from", to)
                .with_attr("to", from)
                .with_attr("type", "result");
            if let Some(id) = stanza.attr("id") {
                reply = reply.with_attr("id", id);
            }
            Triage::Reply(reply, "ping")
        }
        _ => Triage::Ignore("other"),
    }
}

/// A stanza error answering `stanza` (RFC 6120 §8.3): back to its sender, with its id,
/// `kind` (`cancel`, `modify`, `wait`, `auth`), the condition and a text.
fn stanza_error(stanza: &Element, kind: &str, condition: &str, why: &str) -> Element {
    let mut e = Element::new(&stanza.name, xml::SERVER_NS)
        .with_attr("from", stanza.attr("to").unwrap_or_default())
        .with_attr("to", stanza.attr("from").unwrap_or_default())
        .with_attr("type", "error");
    if let Some(id) = stanza.attr("id") {
        e = e.with_attr("id", id);
    }
    e.with_child(
        Element::new("error", xml::SERVER_NS)
            .with_attr("type", kind)
            .with_child(Element::new(condition, STANZA_ERRORS_NS))
            .with_child(Element::new("text", STANZA_ERRORS_NS).with_text(why)),
    )
}

/// The external certificate and partner roots, read from the Edge's folder (the
/// certificate through a `pki::CertStore`, which every handshake asks for the current one).
fn load_tls(node: &Node) -> Result<Tls, String> {
    let (certs, roots) = crate::setup::external_identity(&node.data_dir)?;
    Ok(Tls {
        server: pki::lenient::server_config(&roots, certs.clone()).map_err(|e| e.to_string())?,
        client: pki::lenient::client_config(&roots, certs).map_err(|e| e.to_string())?,
        roots,
    })
}

/// A random stream or stanza id.
fn new_id() -> String {
    let mut bytes = [0u8; 12];
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza(xml: &str) -> Element {
        match xml::Scope::default().next(xml.as_bytes()) {
            xml::Next::Element(e, _) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn messages_to_our_users_are_delivered_and_the_rest_answered_or_ignored() {
        let ours = "contoso.com";
        assert_eq!(
            triage(
                &stanza(
                    "<message from='Alice@Litwareinc.com/phone' to='bob@contoso.com' type='chat'><body>hi</body></message>"
                ),
                ours
            ),
            Triage::Deliver {
                sender: "alice@litwareinc.com".into(),
                recipient: "bob@contoso.com".into(),
                body: "hi".into()
            }
        );
        // Chat states only, an error bounced to us, or another's presence: nothing.
        for quiet in [
            "<message from='a@l.example' to='bob@contoso.com'><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
            "<message from='a@l.example' to='bob@contoso.com' type='error'/>",
            "<presence from='a@l.example/r' to='bob@contoso.com'/>",
        ] {
            assert!(
                matches!(triage(&stanza(quiet), ours), Triage::Ignore(_)),
                "{quiet}"
            );
        }
        // Not ours, or not an address: an error back to the sender, with the id.
        let Triage::Reply(e, _) = triage(
            &stanza(
                "<message id='m1' from='a@l.example' to='bob@fabrikam.com'><body>x</body></message>",
            ),
            ours,
        ) else {
            panic!()
        };
        assert_eq!(
            (e.attr("type"), e.attr("id"), e.attr("to")),
            (Some("error"), Some("m1"), Some("a@l.example"))
        );
        assert!(
            e.child("error", xml::SERVER_NS)
                .unwrap()
                .child("item-not-found", STANZA_ERRORS_NS)
                .is_some()
        );
        let Triage::Reply(e, _) = triage(
            &stanza("<message from='l.example' to='bob@contoso.com'><body>x</body></message>"),
            ours,
        ) else {
            panic!()
        };
        assert!(
            e.child("error", xml::SERVER_NS)
                .unwrap()
                .child("jid-malformed", STANZA_ERRORS_NS)
                .is_some()
        );
        // Presence: said that tandem has none.
        let Triage::Reply(e, label) = triage(
            &stanza("<presence type='subscribe' from='a@l.example' to='bob@contoso.com'/>"),
            ours,
        ) else {
            panic!()
        };
        assert_eq!(label, "presence_not_mapped");
        let error = e.child("error", xml::SERVER_NS).unwrap();
        assert!(
            error
                .child("feature-not-implemented", STANZA_ERRORS_NS)
                .is_some()
        );
        assert!(
            error
                .child("text", STANZA_ERRORS_NS)
                .unwrap()
                .text
                .contains("no presence")
        );
        // A ping is answered; another request is not served.
        let Triage::Reply(e, _) = triage(
            &stanza(
                "<iq type='get' id='p1' from='l.example' to='contoso.com'><ping xmlns='urn:xmpp:ping'/></iq>",
            ),
            ours,
        ) else {
            panic!()
        };
        assert_eq!(
            (e.attr("type"), e.attr("id"), e.attr("to")),
            (Some("result"), Some("p1"), Some("l.example"))
        );
        let Triage::Reply(e, _) = triage(
            &stanza(
                "<iq type='get' id='v1' from='l.example' to='contoso.com'><query xmlns='jabber:iq:version'/></iq>",
            ),
            ours,
        ) else {
            panic!()
        };
        assert_eq!(e.attr("type"), Some("error"));
        assert!(matches!(
            triage(&stanza("<iq type='result' id='x'/>"), ours),
            Triage::Ignore(_)
        ));
    }
}
