//! `tandem client`: acts as one user's client against a lab.
//!
//! It signs in the way a client does: it asks a registrar (those the lab's DNS names in the
//! `_sipinternaltls._tcp` SRV records, lowest priority first — or the lab's list when its
//! DNS does not answer — skipping those that refuse a connection), follows 301 redirects to the
//! registrars of the pool that serves the user, answers digest challenges, and reports
//! the mode (`full` or `resiliency`). Stored data goes through the user-services API of
//! the serving pool, following its 307 redirects. Over TLS (the default) the client keeps
//! one connection to its registrar, binds a `transport=tls` contact on it, and receives
//! its messages and notifications down that same connection (a [`sipnet::Flow`]), as a
//! client behind a NAT or a firewall must; over UDP (`--transport udp`, where the topology
//! takes plain SIP) `listen` registers a UDP contact instead.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine as _;
use sip::{Method, Request, Response};
use sipnet::{
    Endpoint, Flow, FrameLimits, Incoming, MODE_HEADER, SERVING_POOL_HEADER, contact_address,
    tcp_request,
};

use crate::lab::{LabFile, load_users};

/// What the client was asked to do.
#[derive(Debug, Clone, clap::Subcommand)]
pub(crate) enum ClientCommand {
    /// Sign in (REGISTER) and print where and in which mode; `--expires 0` signs the
    /// user out everywhere (`Contact: *`).
    SignIn {
        #[arg(long, default_value_t = 3600)]
        expires: u32,
    },
    /// The contact list.
    Contacts {
        #[command(subcommand)]
        action: Option<ListAction>,
    },
    /// Scheduled meetings.
    Meetings {
        #[command(subcommand)]
        action: Option<MeetingAction>,
    },
    /// Upload a file as meeting content.
    Upload {
        meeting: String,
        file: std::path::PathBuf,
    },
    /// Download meeting content to a file.
    Download {
        meeting: String,
        name: String,
        #[arg(long)]
        out: std::path::PathBuf,
        /// As an external user: through the Web Conferencing Edge of the Edge pool the
        /// user's pool is associated with (its certificate from the public CA).
        #[arg(long)]
        external: bool,
    },
    /// Send an instant message.
    Send {
        #[arg(long)]
        to: String,
        text: String,
    },
    /// Media through the A/V Edge: relay credentials for this user and for `--to` from
    /// their Front End pools (each from the Edge pool its pool uses for media), a relay
    /// allocated for each, and `--count` packets sent from one to the other through both
    /// relays; prints what arrived, the loss and the round trip.
    Media {
        /// The other user (its password from the lab's users.json).
        #[arg(long)]
        to: String,
        #[arg(long, default_value_t = 100)]
        count: usize,
        /// Bytes in each packet (an audio frame is about 160).
        #[arg(long, default_value_t = 160)]
        size: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sign in with a contact and print the messages that arrive.
    Listen {
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<usize>,
    },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub(crate) enum ListAction {
    List,
    Add {
        sip: String,
        #[arg(long)]
        group: Option<String>,
    },
    Remove {
        sip: String,
    },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub(crate) enum MeetingAction {
    List,
    Add {
        id: String,
        #[arg(long)]
        subject: String,
        #[arg(long)]
        start: String,
    },
    Remove {
        id: String,
    },
}

/// How the client speaks SIP to its registrar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Transport {
    /// SIP over TLS on the registrar's SIP TLS port (5061), as the original's clients.
    Tls,
    /// Plain TCP on the SIP port (5060).
    Tcp,
    /// Plain UDP on the SIP port (5060); answers too large for a datagram come over TCP.
    Udp,
}

/// A signed-in user's session.
#[derive(Debug)]
struct Session {
    transport: Transport,
    tls: Arc<rustls::ClientConfig>,
    sip: String,
    username: String,
    realm: String,
    password: String,
    lab: LabFile,
    endpoint: Arc<Endpoint>,
    incoming: Option<tokio::sync::mpsc::Receiver<Incoming>>,
    /// Over TLS: the connection to the registrar, and what the registrar sends down it.
    flow: Option<Flow>,
    flow_incoming: Option<tokio::sync::mpsc::Receiver<Incoming>>,
    cseq: u32,
    call_id: String,
    /// `--via`: the registrar to ask first, instead of the ones DNS names.
    via: bool,
    /// The pool a registration notification named as the new registrar: asked first at
    /// the next sign-in.
    prefer: Option<String>,
    /// Say what happens on the way (a redirect) on standard output; not when the output is
    /// a report (a benchmark's JSON).
    chatty: bool,
}

/// The registrars of a domain from the lab's DNS: `_sipinternaltls._tcp.<domain>` SRV
/// records in the order RFC 2782 gives, each target's A records. `None` when the DNS does
/// not answer.
fn registrars_from_dns(dir: &Path, domain: &str) -> Option<Vec<SocketAddr>> {
    let dns = crate::dns_cmd::LabDns::of_lab(dir).ok()?;
    let mut out = Vec::new();
    for service in dns
        .services(&format!("_sipinternaltls._tcp.{domain}"))
        .ok()?
    {
        out.extend(
            dns.addresses(&service.target)
                .ok()?
                .into_iter()
                .map(|address| SocketAddr::from((address, service.port))),
        );
    }
    (!out.is_empty()).then_some(out)
}

/// The registrars of one pool: its A records in the lab's DNS (as the server's
/// `P-Preferred-Registrar` names it), the lab's list when the DNS does not answer; each
/// at the SIP port the lab gives that address.
fn registrars_of_pool(lab: &LabFile, pool: &str) -> Vec<SocketAddr> {
    let port_of = |ip: std::net::IpAddr| lab.sip_tls_port_of(ip);
    let from_dns: Vec<SocketAddr> = crate::dns_cmd::LabDns::of_lab(&lab.dir)
        .and_then(|dns| dns.addresses(pool))
        .map(|a| {
            a.into_iter()
                .map(|address| SocketAddr::from((address, port_of(address.into()))))
                .collect()
        })
        .unwrap_or_default();
    if !from_dns.is_empty() {
        return from_dns;
    }
    lab.servers
        .iter()
        .filter(|s| s.pool.eq_ignore_ascii_case(pool) && s.role == "FrontEnd")
        .filter_map(|s| format!("{}:{}", s.address, s.sip_tls_port).parse().ok())
        .collect()
}

/// What a registration notification (MS-SIPREGE `registration-notify`) asks of a client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RegistrationNotice {
    /// Signed out: sign in again, at this pool first when the server named one.
    SignInAgain { reason: String, at: Option<String> },
    /// Any other state: nothing to do.
    Other(String),
}

/// Reads a NOTIFY; None when it is not a registration notification.
pub(crate) fn registration_notice(request: &Request) -> Option<RegistrationNotice> {
    let event = request.headers.get("Event")?;
    let package = event.split(';').next().unwrap_or("").trim();
    if !package.eq_ignore_ascii_case(sipnet::REGISTRATION_NOTIFY) {
        return None;
    }
    let body = String::from_utf8_lossy(&request.body).trim().to_string();
    if !body
        .split(';')
        .next()
        .is_some_and(|state| state.trim().eq_ignore_ascii_case("deregistered"))
    {
        return Some(RegistrationNotice::Other(body));
    }
    let at = request
        .headers
        .get("P-Preferred-Registrar")
        .and_then(|v| sip::NameAddr::parse(v).ok())
        .map(|n| n.uri.host.to_ascii_lowercase());
    Some(RegistrationNotice::SignInAgain { reason: body, at })
}

/// Where and how the user is served.
#[derive(Debug)]
struct SignedIn {
    registrar: SocketAddr,
    pool: String,
    mode: String,
    bindings: Vec<String>,
}

pub(crate) fn run(
    dir: &Path,
    user: &str,
    password: Option<String>,
    via: Option<&str>,
    transport: Transport,
    command: ClientCommand,
) -> anyhow::Result<()> {
    let rt = crate::lab::runtime();
    rt.block_on(run_async(dir, user, password, via, transport, command))
}

/// Sends `count` messages from `user` (signed in over TLS, its password from the lab's
/// users.json) to `to`, one after another, each `body(i)`; how long each took from being
/// sent to its final 2xx answer — or, with `echo`, until the recipient's echo of it (a
/// MESSAGE back with the same text) arrived. A message that is refused ends it with the
/// answer; an echo that does not come within 10 s, with that.
pub(crate) fn message_round_trips(
    dir: &Path,
    user: &str,
    to: &str,
    count: usize,
    echo: bool,
    body: impl Fn(usize) -> String,
) -> anyhow::Result<Vec<Duration>> {
    let rt = crate::lab::runtime();
    rt.block_on(async {
        let mut session = Session::open(dir, user, None, None, Transport::Tls).await?;
        session.chatty = false;
        // Only a sender that waits for echoes needs a contact bound.
        let signed = session.sign_in(echo.then_some(300)).await?;
        let to = cms::directory::normalize_sip(to);
        let mut took = Vec::with_capacity(count);
        for i in 0..count {
            let started = std::time::Instant::now();
            let text = body(i);
            let response = session.message(signed.registrar, &to, &text).await?;
            if !(200..300).contains(&response.status) {
                bail!(
                    "message {} of {count} to {to} not delivered: {} {}",
                    i + 1,
                    response.status,
                    response.reason
                );
            }
            if echo {
                session.echo_of(&text, Duration::from_secs(10)).await?;
            }
            took.push(started.elapsed());
        }
        let _ = session.register_at(signed.registrar, None, true).await;
        Ok(took)
    })
}

async fn run_async(
    dir: &Path,
    user: &str,
    password: Option<String>,
    via: Option<&str>,
    transport: Transport,
    command: ClientCommand,
) -> anyhow::Result<()> {
    let mut session = Session::open(dir, user, password, via, transport).await?;
    match command {
        ClientCommand::SignIn { expires } => {
            let s = session.sign_in(Some(expires)).await?;
            print_signed_in(&session.sip, &s, session.transport);
        }
        ClientCommand::Contacts { action } => {
            let action = action.unwrap_or(ListAction::List);
            match action {
                ListAction::List => session.print_get("/users/v1/contacts").await?,
                ListAction::Add { sip, group } => {
                    let sip = cms::directory::normalize_sip(&sip);
                    let body = serde_json::json!({ "group": group });
                    session
                        .send_data(
                            reqwest::Method::PUT,
                            &format!("/users/v1/contacts/{sip}"),
                            body.to_string().into_bytes(),
                        )
                        .await?;
                }
                ListAction::Remove { sip } => {
                    let sip = cms::directory::normalize_sip(&sip);
                    session
                        .send_data(
                            reqwest::Method::DELETE,
                            &format!("/users/v1/contacts/{sip}"),
                            Vec::new(),
                        )
                        .await?;
                }
            }
        }
        ClientCommand::Meetings { action } => match action.unwrap_or(MeetingAction::List) {
            MeetingAction::List => session.print_get("/users/v1/meetings").await?,
            MeetingAction::Add { id, subject, start } => {
                let body = serde_json::json!({ "subject": subject, "start": start });
                session
                    .send_data(
                        reqwest::Method::PUT,
                        &format!("/users/v1/meetings/{id}"),
                        body.to_string().into_bytes(),
                    )
                    .await?;
            }
            MeetingAction::Remove { id } => {
                session
                    .send_data(
                        reqwest::Method::DELETE,
                        &format!("/users/v1/meetings/{id}"),
                        Vec::new(),
                    )
                    .await?;
            }
        },
        ClientCommand::Media {
            to,
            count,
            size,
            json,
        } => {
            let to = cms::directory::normalize_sip(&to);
            let to_password = load_users(dir)?
                .into_iter()
                .find(|u| u.sip_address == to)
                .map(|u| u.password)
                .ok_or_else(|| anyhow!("{to} is not in {}/users.json", dir.display()))?;
            let peer = session.as_user(to.clone(), to_password);
            let (mine, theirs) = (session.media_relay().await?, peer.media_relay().await?);
            let report =
                crate::media::exchange(&mine, &theirs, session.client_address(), count, size)
                    .await?;
            crate::media::print(&session.sip, &to, &report, json);
            if report.received == 0 {
                bail!("no packet of {count} reached {to} through the relays");
            }
        }
        ClientCommand::Upload { meeting, file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| anyhow!("{} has no file name", file.display()))?
                .to_string();
            session
                .send_data(
                    reqwest::Method::PUT,
                    &format!("/users/v1/meetings/{meeting}/content/{name}"),
                    bytes,
                )
                .await?;
        }
        ClientCommand::Download {
            meeting,
            name,
            out,
            external,
        } => {
            let path = format!("/users/v1/meetings/{meeting}/content/{name}");
            let bytes = if external {
                session.get_external(&path).await?
            } else {
                session.get(&path).await?
            };
            std::fs::write(&out, &bytes)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("saved {} bytes to {}", bytes.len(), out.display());
        }
        ClientCommand::Send { to, text } => {
            let signed = session.sign_in(None).await?;
            let to = cms::directory::normalize_sip(&to);
            let response = session.message(signed.registrar, &to, &text).await?;
            if (200..300).contains(&response.status) {
                println!("delivered to {to}");
            } else {
                bail!(
                    "not delivered to {to}: {} {}",
                    response.status,
                    response.reason
                );
            }
        }
        ClientCommand::Listen { seconds, count } => {
            let mut signed = session.sign_in(Some(seconds as u32 + 30)).await?;
            print_signed_in(&session.sip, &signed, session.transport);
            let received = session
                .listen(&mut signed, Duration::from_secs(seconds), count)
                .await;
            let _ = session.register_at(signed.registrar, None, true).await;
            received?;
        }
    }
    Ok(())
}

fn print_signed_in(sip: &str, s: &SignedIn, transport: Transport) {
    println!(
        "signed in {sip} at {} ({} over {transport:?}) in {} mode",
        s.pool, s.registrar, s.mode
    );
    for b in &s.bindings {
        println!("  contact {b}");
    }
}

impl Session {
    /// A session for `user` of the lab in `dir` (not signed in yet): its password from the
    /// lab's users.json unless given, its registrar `via` one server when given.
    async fn open(
        dir: &Path,
        user: &str,
        password: Option<String>,
        via: Option<&str>,
        transport: Transport,
    ) -> anyhow::Result<Session> {
        let mut lab = LabFile::load(dir)?;
        let tls = lab.client_tls()?;
        if let Some(via) = via {
            let Some(first) = lab
                .servers
                .iter()
                .position(|s| s.fqdn.eq_ignore_ascii_case(via))
            else {
                bail!("{via} is not a server of the lab in {}", dir.display());
            };
            let server = lab.servers.remove(first);
            lab.servers.insert(0, server);
        }
        let sip = cms::directory::normalize_sip(user);
        let password = match password {
            Some(p) => p,
            None => load_users(dir)?
                .into_iter()
                .find(|u| u.sip_address == sip)
                .map(|u| u.password)
                .ok_or_else(|| {
                    anyhow!(
                        "{sip} is not in {}/users.json; pass --password",
                        dir.display()
                    )
                })?,
        };
        let (endpoint, incoming) =
            Endpoint::bind(std::net::SocketAddr::new(lab.client_address(), 0)).await?;
        let username = sip.trim_start_matches("sip:").to_string();
        let realm = cms::directory::realm_of(&sip);
        Ok(Session {
            transport,
            tls,
            sip,
            username,
            realm,
            password,
            lab,
            endpoint,
            incoming: Some(incoming),
            flow: None,
            flow_incoming: None,
            cseq: 0,
            call_id: format!("tandem-client-{}-{}", std::process::id(), store::now_ms()),
            via: via.is_some(),
            prefer: None,
            chatty: true,
        })
    }
}

impl Session {
    /// Waits for a MESSAGE whose text is `text` on the connection this session signed in
    /// over (answering it and whatever else arrives with 200), within `limit`.
    async fn echo_of(&mut self, text: &str, limit: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let (Some(incoming), Some(flow)) = (self.flow_incoming.as_mut(), self.flow.clone())
            else {
                bail!("no connection to the registrar to hear the echo on (sign in over TLS)");
            };
            let next = tokio::time::timeout_at(deadline, incoming.recv()).await;
            let request = match next {
                Err(_) => bail!("no echo of '{text}' within {} s", limit.as_secs()),
                Ok(None) => {
                    bail!("the registrar closed the connection before the echo of '{text}'")
                }
                Ok(Some(Incoming::Request(request, _))) => request,
                Ok(Some(Incoming::Malformed(..))) => continue,
            };
            let _ = flow
                .answer(&Response::for_request(&request, 200, "OK", Some("bench")))
                .await;
            if request.method == Method::Message && request.body == text.as_bytes() {
                return Ok(());
            }
        }
    }

    fn headers(&mut self, method: &Method, to: &str) -> sip::Headers {
        self.cseq += 1;
        let mut h = sip::Headers::new();
        h.push("Max-Forwards", "70");
        h.push(
            "From",
            format!("<{}>;tag={:x}", self.sip, std::process::id()),
        );
        h.push("To", format!("<{to}>"));
        h.push("Call-ID", self.call_id.clone());
        h.push("CSeq", format!("{} {method}", self.cseq));
        h.push("User-Agent", "tandem client");
        h
    }

    /// The transport a request goes over: plain TCP instead of UDP when `tcp` (an answer
    /// that may not fit a datagram).
    fn transport_for(&self, tcp: bool) -> Transport {
        match self.transport {
            Transport::Udp if tcp => Transport::Tcp,
            t => t,
        }
    }

    /// The connection to the registrar at `ip` over TLS: the open one, or a new one.
    async fn flow_to(&mut self, ip: std::net::IpAddr) -> anyhow::Result<Flow> {
        let at = SocketAddr::new(ip, self.lab.sip_tls_port_of(ip));
        if let Some(flow) = &self.flow
            && flow.peer_addr() == at
            && !flow.is_closed()
        {
            return Ok(flow.clone());
        }
        // The registrar closes a connection that carries nothing for 2 minutes; this end
        // waits as long as it is used (listen sends a keep-alive OPTIONS every minute).
        let limits = FrameLimits {
            idle: Duration::from_secs(24 * 3600),
            partial: FrameLimits::LISTENER.partial,
        };
        // From the same address as the UDP endpoint: the lab's client address.
        let (flow, incoming) = Flow::connect_tls(
            Some(self.endpoint.local_addr().ip()),
            at,
            &ip.to_string(),
            &self.tls,
            Duration::from_secs(3),
            limits,
        )
        .await
        .with_context(|| format!("no TLS connection to {at}"))?;
        self.flow = Some(flow.clone());
        self.flow_incoming = Some(incoming);
        Ok(flow)
    }

    /// Sends `req` once to the registrar at `ip` over `transport`.
    async fn send_once(
        &mut self,
        ip: std::net::IpAddr,
        transport: Transport,
        req: Request,
    ) -> anyhow::Result<Response> {
        let timeout = Duration::from_secs(3);
        Ok(match transport {
            Transport::Tls => self.flow_to(ip).await?.request(req, timeout).await?,
            Transport::Tcp => {
                let at = SocketAddr::new(ip, self.lab.sip_port_of(ip)?);
                tcp_request(at, &req, timeout).await?
            }
            Transport::Udp => {
                let at = SocketAddr::new(ip, self.lab.sip_port_of(ip)?);
                self.endpoint.request(at, req, timeout).await?
            }
        })
    }

    /// Sends a request built by `build` to the registrar at `dest`'s address, answering
    /// one digest challenge.
    async fn authed(
        &mut self,
        dest: SocketAddr,
        tcp: bool,
        build: impl Fn(&mut Session) -> Request,
    ) -> anyhow::Result<Response> {
        let transport = self.transport_for(tcp);
        let first = build(self);
        let response = self.send_once(dest.ip(), transport, first).await?;
        if response.status != 401 {
            return Ok(response);
        }
        let mut second = build(self);
        let cnonce = format!("{:x}", store::now_ms());
        sip::digest::authorize(
            &mut second,
            &response,
            &self.username,
            &self.password,
            &cnonce,
        )
        .map_err(|e| anyhow!("{dest} sent a bad challenge: {e}"))?;
        self.send_once(dest.ip(), transport, second).await
    }

    /// REGISTER at `dest`: bind this client's contact for `expires` seconds (0: remove every
    /// binding), or with None only ask — or, with `own_only`, remove this client's contact.
    /// A registrar that finds the interval too brief (423) is asked again, once, for the
    /// `Min-Expires` it named (RFC 3261 §10.2.8).
    async fn register_at(
        &mut self,
        dest: SocketAddr,
        expires: Option<u32>,
        own_only: bool,
    ) -> anyhow::Result<Response> {
        let response = self.register_once(dest, expires, own_only).await?;
        let least = response
            .headers
            .get("Min-Expires")
            .and_then(|v| v.trim().parse::<u32>().ok());
        match (response.status, expires, least) {
            (423, Some(e), Some(least)) if e > 0 && least > e => {
                self.register_once(dest, Some(least), own_only).await
            }
            _ => Ok(response),
        }
    }

    async fn register_once(
        &mut self,
        dest: SocketAddr,
        expires: Option<u32>,
        own_only: bool,
    ) -> anyhow::Result<Response> {
        let domain = self.realm.clone();
        let tcp = expires.is_none() && !own_only;
        let user = self.username.split('@').next().unwrap_or("").to_string();
        // Over TLS the contact is this end of the connection, reached over it.
        let contact = match self.transport_for(tcp) {
            Transport::Tls => format!(
                "<sip:{user}@{};transport=tls>",
                self.flow_to(dest.ip()).await?.local_addr()
            ),
            _ => format!("<sip:{user}@{}>", self.endpoint.local_addr()),
        };
        self.authed(dest, tcp, |s| {
            let to = s.sip.clone();
            let mut headers = s.headers(&Method::Register, &to);
            match expires {
                // Signing out removes every binding of the user (RFC 3261 §10.2.2).
                Some(0) => {
                    headers.push("Contact", "*");
                    headers.push("Expires", "0");
                }
                Some(e) => {
                    headers.push("Contact", contact.clone());
                    headers.push("Expires", e.to_string());
                }
                None if own_only => {
                    headers.push("Contact", contact.clone());
                    headers.push("Expires", "0");
                }
                None => {}
            }
            Request {
                method: Method::Register,
                uri: format!("sip:{domain}"),
                headers,
                body: Vec::new(),
            }
        })
        .await
    }

    /// Finds the serving registrar and registers (`expires` Some) or only asks (None).
    async fn sign_in(&mut self, expires: Option<u32>) -> anyhow::Result<SignedIn> {
        // As a client does: the registrars the domain's _sipinternaltls._tcp SRV records
        // name, lowest priority first; the lab's list when its DNS does not answer.
        let from_dns = if self.via {
            None
        } else {
            let domain = self.sip.rsplit('@').next().unwrap_or_default().to_string();
            let dir = self.lab.dir.clone();
            tokio::task::spawn_blocking(move || registrars_from_dns(&dir, &domain))
                .await
                .ok()
                .flatten()
        };
        let mut candidates: Vec<SocketAddr> = from_dns.unwrap_or_else(|| {
            self.lab
                .servers
                .iter()
                .filter(|s| s.role == "FrontEnd")
                .filter_map(|s| format!("{}:{}", s.address, s.sip_tls_port).parse().ok())
                .collect()
        });
        // The registrar a notification named goes first; the others stay behind it.
        if let Some(pool) = self.prefer.take() {
            let lab = self.lab.clone();
            let preferred = tokio::task::spawn_blocking(move || registrars_of_pool(&lab, &pool))
                .await
                .unwrap_or_default();
            candidates.retain(|c| !preferred.contains(c));
            candidates.splice(0..0, preferred);
        }
        let mut tried = Vec::new();
        let mut redirects = 0;
        while let Some(dest) = (!candidates.is_empty()).then(|| candidates.remove(0)) {
            // A registrar that refuses TCP is down: skip it at once, as a client would.
            if tokio::time::timeout(
                Duration::from_millis(500),
                tokio::net::TcpStream::connect(dest),
            )
            .await
            .map_or(true, |r| r.is_err())
            {
                tried.push(format!("{dest} (not answering)"));
                continue;
            }
            let response = match self.register_at(dest, expires, false).await {
                Ok(r) => r,
                Err(e) => {
                    tried.push(format!("{dest} ({e})"));
                    continue;
                }
            };
            match response.status {
                200 => {
                    return Ok(SignedIn {
                        registrar: dest,
                        pool: response
                            .headers
                            .get(SERVING_POOL_HEADER)
                            .unwrap_or("")
                            .to_string(),
                        mode: response
                            .headers
                            .get(MODE_HEADER)
                            .unwrap_or("full")
                            .to_string(),
                        bindings: response
                            .headers
                            .get_all("Contact")
                            .into_iter()
                            .map(str::to_string)
                            .collect(),
                    });
                }
                301 | 302 if redirects < 3 => {
                    redirects += 1;
                    let pool = response
                        .headers
                        .get(SERVING_POOL_HEADER)
                        .unwrap_or("another pool");
                    if self.chatty {
                        println!("redirected by {dest} to {pool}");
                    }
                    candidates = response
                        .headers
                        .get_all("Contact")
                        .into_iter()
                        .filter_map(|c| sip::NameAddr::parse(c).ok())
                        .filter_map(|n| contact_address(&n.uri.to_string()))
                        .collect();
                    // One candidate per registrar: the transport picks the port.
                    let mut seen = std::collections::HashSet::new();
                    candidates.retain(|c| seen.insert(c.ip()));
                    tried.push(format!("{dest} (redirected to {pool})"));
                }
                status => bail!(
                    "sign-in of {} refused by {dest}: {status} {}",
                    self.sip,
                    response.reason
                ),
            }
        }
        bail!(
            "no registrar signed {} in; tried {}",
            self.sip,
            if tried.is_empty() {
                "none".to_string()
            } else {
                tried.join(", ")
            }
        )
    }

    async fn message(
        &mut self,
        registrar: SocketAddr,
        to: &str,
        text: &str,
    ) -> anyhow::Result<Response> {
        let to = to.to_string();
        let body = text.as_bytes().to_vec();
        self.authed(registrar, false, |s| {
            let mut headers = s.headers(&Method::Message, &to);
            headers.push("Content-Type", "text/plain");
            Request {
                method: Method::Message,
                uri: to.clone(),
                headers,
                body: body.clone(),
            }
        })
        .await
    }

    /// Prints the messages that arrive; signs in again where the registrar says when it
    /// signs this client out (a failover or failback moved the user).
    async fn listen(
        &mut self,
        signed: &mut SignedIn,
        for_how_long: Duration,
        count: Option<usize>,
    ) -> anyhow::Result<()> {
        use std::io::Write as _;
        let mut udp = self.incoming.take().expect("listen runs once");
        let deadline = tokio::time::Instant::now() + for_how_long;
        let mut received = 0;
        // Notifications acted on, by Call-ID: a retransmission (our 200 was lost) is
        // answered again, not acted on twice.
        let mut handled = std::collections::HashSet::new();
        // Over TLS the registrar closes a connection silent for 2 minutes: a request a
        // minute keeps it (and the contact bound on it).
        let mut keep_alive = tokio::time::interval(Duration::from_secs(60));
        keep_alive.tick().await;
        loop {
            let from_flow = self.flow_incoming.as_mut();
            let next = tokio::select! {
                m = async {
                    match from_flow {
                        Some(incoming) => incoming.recv().await,
                        None => std::future::pending().await,
                    }
                } => Some((m, true)),
                m = udp.recv() => Some((m, false)),
                _ = keep_alive.tick(), if self.transport == Transport::Tls => {
                    if let Some(flow) = self.flow.clone() {
                        let ping = self.ping(&flow);
                        // No answer: the registrar is gone or cut off; closing the
                        // connection makes this client sign in again.
                        if flow.request(ping, Duration::from_secs(5)).await.is_err() {
                            flow.close();
                        }
                    }
                    None
                }
                () = tokio::time::sleep_until(deadline) => return Ok(()),
            };
            let Some((message, over_flow)) = next else {
                continue;
            };
            let Some(Incoming::Request(request, peer)) = message else {
                if message.is_none() && over_flow {
                    // The registrar closed the connection: sign in again.
                    self.flow_incoming = None;
                    println!(
                        "the connection to {} closed; signing in again",
                        signed.registrar
                    );
                    *signed = self.sign_in_again(deadline).await?;
                    print_signed_in(&self.sip, signed, self.transport);
                    let _ = std::io::stdout().flush();
                }
                continue;
            };
            let flow = over_flow.then(|| self.flow.clone()).flatten();
            let answer = |response: Response| {
                let (flow, endpoint) = (flow.clone(), self.endpoint.clone());
                async move {
                    match flow {
                        Some(flow) => {
                            let _ = flow.answer(&response).await;
                        }
                        None => {
                            let _ = endpoint.send(peer, &response.to_bytes()).await;
                        }
                    }
                }
            };
            if request.method.as_str() == "NOTIFY"
                && let Some(notice) = registration_notice(&request)
            {
                let call_id = request.call_id().unwrap_or_default().to_string();
                // Only the pool this client is signed in at may sign it out: over TLS,
                // the registrar this connection is to; over UDP, by its address.
                let from_its_pool = handled.contains(&call_id)
                    || over_flow
                    || self.lab.servers.iter().any(|s| {
                        s.pool.eq_ignore_ascii_case(&signed.pool)
                            && s.address.parse() == Ok(peer.ip())
                    });
                let status = if from_its_pool {
                    (200, "OK")
                } else {
                    (403, "Forbidden (not from the registrar of this client)")
                };
                answer(Response::for_request(
                    &request,
                    status.0,
                    status.1,
                    Some("listener"),
                ))
                .await;
                if let (true, RegistrationNotice::SignInAgain { reason, at }) =
                    (from_its_pool && handled.insert(call_id), notice)
                {
                    println!(
                        "signed out by {} ({reason}); signing in again{}",
                        signed.pool,
                        at.as_deref().map_or(String::new(), |p| format!(" at {p}"))
                    );
                    self.prefer = at;
                    *signed = self.sign_in_again(deadline).await?;
                    print_signed_in(&self.sip, signed, self.transport);
                    let _ = std::io::stdout().flush();
                }
                continue;
            }
            answer(Response::for_request(&request, 200, "OK", Some("listener"))).await;
            if request.method == Method::Message {
                let from = request
                    .headers
                    .get("From")
                    .and_then(|f| sip::NameAddr::parse(f).ok())
                    .map(|n| n.uri.aor())
                    .unwrap_or_default();
                // A delivered message must never carry the sender's credentials.
                let warning = if request.headers.carries_credentials() {
                    " (it carried the sender's credentials)"
                } else {
                    ""
                };
                println!(
                    "message from {from}{warning}: {}",
                    String::from_utf8_lossy(&request.body)
                );
                let _ = std::io::stdout().flush();
                received += 1;
                if count.is_some_and(|c| received >= c) {
                    return Ok(());
                }
            }
        }
    }

    /// Signs in again, once a second until `deadline` while no registrar takes this
    /// client (its pool down, its partner not yet serving it).
    async fn sign_in_again(&mut self, deadline: tokio::time::Instant) -> anyhow::Result<SignedIn> {
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.sign_in(Some(left.as_secs() as u32 + 30)).await {
                Ok(signed) => return Ok(signed),
                Err(e) if left > Duration::from_secs(1) => {
                    println!("not signed in yet ({e}); trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// An OPTIONS to the registrar at the other end of `flow`: a keep-alive.
    fn ping(&mut self, flow: &Flow) -> Request {
        let to = format!("sip:{}", flow.peer_addr());
        let headers = self.headers(&Method::Options, &to);
        Request {
            method: Method::Options,
            uri: to,
            headers,
            body: Vec::new(),
        }
    }

    fn http(&self) -> anyhow::Result<reqwest::Client> {
        Ok(api::https(&self.lab.client_tls()?)
            .timeout(Duration::from_secs(10))
            // 307s are followed by hand: reqwest drops the Authorization header when a
            // redirect changes host, and every Front End is its own host.
            .redirect(reqwest::redirect::Policy::none())
            .build()?)
    }

    fn authorization(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    /// The same lab and transport, as another user.
    fn as_user(&self, sip: String, password: String) -> Session {
        Session {
            transport: self.transport,
            tls: self.tls.clone(),
            username: sip.trim_start_matches("sip:").to_string(),
            realm: cms::directory::realm_of(&sip),
            sip,
            password,
            lab: self.lab.clone(),
            endpoint: self.endpoint.clone(),
            incoming: None,
            flow: None,
            flow_incoming: None,
            cseq: 0,
            call_id: format!("tandem-client-{}-{}", std::process::id(), store::now_ms()),
            via: self.via,
            prefer: None,
            chatty: true,
        }
    }

    /// The user's media relays and credentials (`GET /users/v1/media-relay`).
    async fn media_relay(&self) -> anyhow::Result<relay::MediaRelay> {
        let body = self.get("/users/v1/media-relay").await?;
        serde_json::from_slice(&body).context("the Front End's media relay answer")
    }

    /// `path` from outside: through the first Web Conferencing Edge the user's Front End
    /// names (the Edge pool its pool uses), trusting the lab's public CA only.
    async fn get_external(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let relay = self.media_relay().await?;
        let edge = relay.web_conferencing.first().ok_or_else(|| {
            anyhow!(
                "{}'s Edge pool {} has no Web Conferencing Edge",
                self.sip,
                relay.edge_pool
            )
        })?;
        let ca = self
            .lab
            .dir
            .join(crate::lab::PKI_DIR)
            .join(crate::lab::PUBLIC_CA_DIR)
            .join("ca.pem");
        let roots = pki::Roots::from_pem_file(&ca)?;
        let http = api::https(&pki::client_config(&roots, None)).build()?;
        let response = http
            .get(format!("{edge}{path}"))
            .header("authorization", self.authorization())
            .send()
            .await
            .with_context(|| format!("reaching the Web Conferencing Edge at {edge}"))?;
        let status = response.status();
        let body = response.bytes().await?.to_vec();
        if !status.is_success() {
            bail!("{status} from {edge}: {}", reason(&body));
        }
        eprintln!(
            "through the Web Conferencing Edge of {} ({edge})",
            relay.edge_pool
        );
        Ok(body)
    }

    /// The address this client speaks from (towards the lab).
    fn client_address(&self) -> std::net::IpAddr {
        self.lab.client_address()
    }

    /// The user-services base URL of the first Front End that answers.
    async fn base(&self) -> anyhow::Result<String> {
        for s in self
            .lab
            .servers
            .iter()
            .filter(|s| s.role == "FrontEnd" && s.user_services_port != 0)
        {
            let base = api::base(&s.address, s.user_services_port);
            if tokio::time::timeout(
                Duration::from_millis(500),
                tokio::net::TcpStream::connect((s.address.as_str(), s.user_services_port)),
            )
            .await
            .is_ok_and(|r| r.is_ok())
            {
                return Ok(base);
            }
        }
        bail!("no Front End of the lab answers on its user-services port")
    }

    /// One user-services call, following the serving pool's 307s with the credentials.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<(reqwest::StatusCode, Vec<u8>)> {
        let http = self.http()?;
        let mut url = format!("{}{path}", self.base().await?);
        for _ in 0..4 {
            let mut request = http
                .request(method.clone(), &url)
                .header("authorization", self.authorization());
            if let Some(b) = &body {
                request = request
                    .header("content-type", "application/json")
                    .body(b.clone());
            }
            let response = request.send().await?;
            let status = response.status();
            if status == reqwest::StatusCode::TEMPORARY_REDIRECT
                && let Some(location) = response
                    .headers()
                    .get("location")
                    .and_then(|l| l.to_str().ok())
            {
                url = location.to_string();
                continue;
            }
            return Ok((status, response.bytes().await?.to_vec()));
        }
        bail!("too many redirects for {path} (last: {url})")
    }

    async fn get(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let (status, body) = self.call(reqwest::Method::GET, path, None).await?;
        if !status.is_success() {
            bail!("{status}: {}", reason(&body));
        }
        Ok(body)
    }

    async fn print_get(&self, path: &str) -> anyhow::Result<()> {
        let body = self.get(path).await?;
        let value: serde_json::Value = serde_json::from_slice(&body)?;
        println!("{}", serde_json::to_string_pretty(&value)?);
        Ok(())
    }

    async fn send_data(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<()> {
        let (status, body) = self.call(method, path, Some(body)).await?;
        if !status.is_success() {
            bail!("{status}: {}", reason(&body));
        }
        println!("saved ({})", String::from_utf8_lossy(&body));
        Ok(())
    }
}

fn reason(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notify(headers: &[(&str, &str)], body: &str) -> Request {
        let mut h = sip::Headers::new();
        for (name, value) in headers {
            h.push(*name, *value);
        }
        Request {
            method: Method::Other("NOTIFY".into()),
            uri: "sip:alice@127.0.0.1:5070".into(),
            headers: h,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_registrar_change_signs_in_again_at_the_pool_it_names() {
        let n = notify(
            &[
                ("Event", "registration-notify"),
                ("P-Preferred-Registrar", "<sip:Pool1.contoso.com>"),
            ],
            " deregistered;event=preferred-registrar-change\r\n",
        );
        assert_eq!(
            registration_notice(&n),
            Some(RegistrationNotice::SignInAgain {
                reason: "deregistered;event=preferred-registrar-change".into(),
                at: Some("pool1.contoso.com".into()),
            })
        );
    }

    #[test]
    fn other_notifications_ask_nothing_and_other_events_are_not_ours() {
        // Signed out without a registrar named: discover again.
        let n = notify(
            &[("Event", "Registration-Notify;id=1")],
            "deregistered;event=deactivated",
        );
        assert_eq!(
            registration_notice(&n),
            Some(RegistrationNotice::SignInAgain {
                reason: "deregistered;event=deactivated".into(),
                at: None,
            })
        );
        let n = notify(
            &[("Event", "registration-notify")],
            "registered;event=userservices-unavailable",
        );
        assert!(matches!(
            registration_notice(&n),
            Some(RegistrationNotice::Other(_))
        ));
        // A presence notification, or none at all, is not a registration notice.
        assert_eq!(
            registration_notice(&notify(&[("Event", "presence")], "")),
            None
        );
        assert_eq!(registration_notice(&notify(&[], "deregistered")), None);
    }
}
