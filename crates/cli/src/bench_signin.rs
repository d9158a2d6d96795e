//! `tandem bench signin`: sign-ins as users see them, on one Front End of a real lab.
//!
//! A sign-in is what a client does to come online: REGISTER, the 401 digest challenge,
//! REGISTER with credentials, 200 — and the 200 comes only once a new binding is committed
//! to the pool's Back End; a user signing in again with the contact it holds is a refresh,
//! answered from the Front End's memory and written behind within `registrar::bindings`'
//! window (every sign-in after a user's first, here as with SIPp and Kamailio's in-memory
//! location table). For each transport the Front End offers (UDP, TCP, TLS over
//! connections held open, as clients hold them) the benchmark measures two things:
//!
//! - **saturation**: `--concurrency` clients sign in back to back for `--seconds`; the
//!   rate they reach is the most the Front End completes;
//! - **a fixed offered rate**: sign-ins start on a schedule (`--rate`, or half the
//!   saturation rate), whatever the answers do, and each one's latency runs from when it
//!   was due, so a stall shows in p99 instead of slowing the load (no coordinated
//!   omission).
//!
//! The clients are tandem's own SIP stack, on the same two cores as the Front End. With
//! `--sipp` the same scenario is also driven by SIPp (`examples/sipp/register.xml`), a
//! load generator that is not ours, and `--peer kamailio` runs those SIPp phases against
//! Kamailio configured as a registrar with digest (Debian's package) beside the Front End,
//! with the ratio of the two: see [`crate::bench_peer`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use sipnet::{Endpoint, Flow};

use crate::bench_users::{Carrier, Run, Transport, register_as, sign_in_as, with_lab_of};
use crate::lab::{LabFile, LabServer, LabUser};

/// A peer to measure beside tandem with the same SIPp scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Peer {
    /// Debian's kamailio as a registrar with digest and an in-memory location table.
    Kamailio,
}

/// What `tandem bench signin` was asked for.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Options {
    /// The deployment to run it on (a topology file, moved to a free loopback block)
    /// [default: the contoso example].
    #[arg(long, value_name = "FILE")]
    pub(crate) topology: Option<std::path::PathBuf>,
    /// Users per pool (they sign in again and again for the whole phase).
    #[arg(long, default_value_t = 2000)]
    pub(crate) users: usize,
    /// tandem's clients signing in at once at saturation.
    #[arg(long, default_value_t = 64)]
    pub(crate) concurrency: usize,
    /// The offered rate of the fixed-rate phase, sign-ins a second [default: half the rate
    /// tandem's clients reached at saturation over that transport; with SIPp, half the
    /// lowest rate SIPp reached at saturation over it among the registrars measured].
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// Seconds each phase lasts.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) seconds: f64,
    /// The transports to measure, separated by commas (`--transports udp,tls`).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Transport::Udp, Transport::Tcp, Transport::Tls])]
    pub(crate) transports: Vec<Transport>,
    /// Drive the same Front End with SIPp and examples/sipp/register.xml as well.
    #[arg(long)]
    pub(crate) sipp: bool,
    /// The SIPp to run [default: $TANDEM_SIPP_TLS, the one .ci/sipp-tls caches, or sipp on
    /// the PATH].
    #[arg(long, value_name = "PATH")]
    pub(crate) sipp_binary: Option<std::path::PathBuf>,
    /// SIPp processes at once, each from its own loopback address, sharing 400 sign-ins in
    /// flight. A Front End reads at most 5,000 datagrams a second from one address
    /// (sipnet's per-source budget, its defence against a flood from one host), about
    /// 2,500 sign-ins: fewer processes than the rate needs lose datagrams to it and
    /// measure SIPp's retransmission timer (the report says so, and counts what SIPp sent
    /// again). Twelve carry 30,000 sign-ins a second.
    #[arg(long, default_value_t = 12)]
    pub(crate) sipp_instances: usize,
    /// Run the SIPp phases against this peer too, beside the Front End (needs --sipp).
    #[arg(long, value_enum)]
    pub(crate) peer: Option<Peer>,
    /// Kamailio's memory manager (its -x and -X): tlsf or fm, its allocators for speed, or
    /// qm, the default of Debian's build, which carries memory debugging and whose speed
    /// depends on the process's history.
    #[arg(long, value_enum, default_value = "tlsf")]
    pub(crate) peer_memory: crate::bench_peer::PeerMemory,
    /// SIPp saturation phases per registrar and transport, taken in turn (tandem, the
    /// peer, tandem, ...); each registrar's median is reported, so that a machine whose
    /// speed drifts during the run weighs on both alike.
    #[arg(long, default_value_t = 1)]
    pub(crate) rounds: usize,
    #[arg(long)]
    pub(crate) json: bool,
}

/// Sign-ins started in one phase that may wait for their answers at once; past it the
/// schedule's sign-ins are counted as not started (the Front End is far behind).
const MAX_IN_FLIGHT: usize = 20_000;
/// How long one REGISTER transaction may take before the sign-in counts as failed.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(5);

/// The loopback address client `k` of the benchmark sends from: one each, as users'
/// devices come from many (the registrar budgets datagrams and connections per source).
pub(crate) fn source(k: usize) -> IpAddr {
    Ipv4Addr::new(127, 254, (k / 250) as u8, (k % 250 + 1) as u8).into()
}

/// A way to the Front End, held for the whole phase, and the users who sign in over it.
#[derive(Clone)]
struct Link {
    way: Way,
    /// The link's number: it signs in the users whose index is `k` modulo the links.
    k: usize,
    of: usize,
}

#[derive(Clone)]
enum Way {
    Udp(Arc<Endpoint>, SocketAddr),
    Flow(Flow),
}

impl Link {
    fn carrier(&self) -> Carrier<'_> {
        match &self.way {
            Way::Udp(endpoint, dest) => Carrier::Udp(endpoint, *dest),
            Way::Flow(flow) => Carrier::Flow(flow),
        }
    }

    /// The contact it binds: one per source address and user whatever the transport and
    /// the port, so that a user signing in again refreshes one binding instead of adding
    /// another (the registrar keeps ten a user).
    fn contact(&self) -> SocketAddr {
        SocketAddr::new(source(self.k), 5060)
    }

    /// The `n`th user of this link's share.
    fn user<'u>(&self, users: &'u [LabUser], n: u64) -> &'u LabUser {
        let share = (users.len() - self.k).div_ceil(self.of).max(1);
        &users[(self.k + self.of * (n as usize % share)).min(users.len() - 1)]
    }

    async fn sign_in(&self, users: &[LabUser], n: u64) -> anyhow::Result<sip::Response> {
        sign_in_as(self.carrier(), self.user(users, n), n, self.contact()).await
    }

    /// Removes this link's binding of every user of its share.
    async fn sign_out_all(&self, users: &[LabUser]) -> anyhow::Result<()> {
        for user in users.iter().skip(self.k).step_by(self.of) {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            register_as(self.carrier(), user, n, self.contact(), 0).await?;
        }
        Ok(())
    }
}

/// Where the Front End takes each transport.
struct Target {
    udp: SocketAddr,
    tls: SocketAddr,
    tls_config: Arc<rustls::ClientConfig>,
}

/// `count` links of `transport` to the Front End, each from its own source address.
async fn links(
    target: &Target,
    transport: Transport,
    count: usize,
    users: usize,
) -> anyhow::Result<Vec<Link>> {
    let count = count.clamp(1, users.max(1));
    let mut out = Vec::with_capacity(count);
    for k in 0..count {
        let from = source(k);
        let link = match transport {
            Transport::Udp => {
                let (endpoint, _incoming) = Endpoint::bind(SocketAddr::new(from, 0)).await?;
                Way::Udp(endpoint, target.udp)
            }
            Transport::Tcp => {
                let (flow, _incoming) = Flow::connect_tcp(
                    Some(from),
                    target.udp,
                    TRANSACTION_TIMEOUT,
                    sipnet::FrameLimits::LISTENER,
                )
                .await?;
                Way::Flow(flow)
            }
            Transport::Tls => {
                let (flow, _incoming) = Flow::connect_tls(
                    Some(from),
                    target.tls,
                    &target.tls.ip().to_string(),
                    &target.tls_config,
                    TRANSACTION_TIMEOUT,
                    sipnet::FrameLimits::LISTENER,
                )
                .await?;
                Way::Flow(flow)
            }
        };
        out.push(Link {
            way: link,
            k,
            of: count,
        });
    }
    Ok(out)
}

/// Numbers the sign-ins of every phase, so that each has its own Call-ID.
static NEXT: AtomicU64 = AtomicU64::new(0);
/// Sign-ins completed, for the progress bar.
static DONE: AtomicU64 = AtomicU64::new(0);

/// Runs a phase that lasts `seconds` under a bar of its seconds, with the sign-ins
/// completed so far and their rate beside it (nothing when `show` is false: `--json`).
async fn timed<F: std::future::Future<Output = Run>>(
    what: &str,
    seconds: f64,
    show: bool,
    phase: F,
) -> Run {
    if !show {
        return phase.await;
    }
    let total = seconds.ceil() as u64;
    let mut bar = crate::progress::Progress::new(what, total, crate::progress::SECONDS);
    let from = DONE.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut phase = std::pin::pin!(phase);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            run = &mut phase => {
                bar.set(total, "");
                bar.finish();
                return run;
            }
            _ = tick.tick() => {
                let n = DONE.load(Ordering::Relaxed) - from;
                let secs = started.elapsed().as_secs_f64();
                bar.figure(&format!("{n} sign-ins, {:.0}/s", n as f64 / secs.max(1e-3)));
                bar.set((secs as u64).min(total), "");
            }
        }
    }
}

/// `concurrency` clients over `links` sign `users` in back to back for `seconds`.
async fn saturation(
    links: &[Link],
    users: &Arc<Vec<LabUser>>,
    concurrency: usize,
    seconds: f64,
) -> Run {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..concurrency.max(1) {
        let link = links[w % links.len()].clone();
        let users = users.clone();
        tasks.spawn(async move {
            let (mut latencies, mut failed, mut first_error) = (Vec::new(), 0u64, None);
            while Instant::now() < deadline {
                let n = NEXT.fetch_add(1, Ordering::Relaxed);
                let t0 = Instant::now();
                match link.sign_in(&users, n).await {
                    Ok(_) => {
                        DONE.fetch_add(1, Ordering::Relaxed);
                        latencies.push(t0.elapsed().as_secs_f64() * 1000.0)
                    }
                    Err(e) => {
                        failed += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            (latencies, failed, first_error)
        });
    }
    let mut run = Run {
        offered: None,
        failed: 0,
        not_started: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        first_error: None,
    };
    while let Some(done) = tasks.join_next().await {
        if let Ok((latencies, failed, first_error)) = done {
            run.latencies.extend(latencies);
            run.failed += failed;
            run.first_error = run.first_error.take().or(first_error);
        }
    }
    run.elapsed = started.elapsed();
    run.latencies.sort_by(f64::total_cmp);
    run
}

/// Sign-ins started at `rate` a second for `seconds`, over `links` in turn, each timed
/// from when it was due.
async fn fixed_rate(links: &[Link], users: &Arc<Vec<LabUser>>, rate: f64, seconds: f64) -> Run {
    let total = (rate * seconds).round().max(1.0) as u64;
    let started = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut run = Run {
        offered: Some(rate),
        failed: 0,
        not_started: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        first_error: None,
    };
    let reap = |r: Result<Result<f64, String>, tokio::task::JoinError>, run: &mut Run| match r {
        Ok(Ok(ms)) => run.latencies.push(ms),
        Ok(Err(e)) => {
            run.failed += 1;
            run.first_error.get_or_insert(e);
        }
        Err(e) => {
            run.failed += 1;
            run.first_error.get_or_insert(e.to_string());
        }
    };
    for i in 0..total {
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due).await;
        while let Some(r) = tasks.try_join_next() {
            reap(r, &mut run);
        }
        if tasks.len() >= MAX_IN_FLIGHT {
            run.not_started += 1;
            continue;
        }
        let link = links[i as usize % links.len()].clone();
        let users = users.clone();
        tasks.spawn(async move {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            match link.sign_in(&users, n).await {
                Ok(_) => {
                    DONE.fetch_add(1, Ordering::Relaxed);
                    Ok(due.elapsed().as_secs_f64() * 1000.0)
                }
                Err(e) => Err(e.to_string()),
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        reap(r, &mut run);
    }
    run.elapsed = started.elapsed();
    run.latencies.sort_by(f64::total_cmp);
    run
}

/// Both phases of one transport with tandem's own clients.
pub(crate) struct TransportRuns {
    pub(crate) transport: Transport,
    pub(crate) saturation: Run,
    pub(crate) fixed: Run,
}

impl TransportRuns {
    pub(crate) fn figures(&self) -> serde_json::Value {
        serde_json::json!({
            "transport": self.transport.as_str(),
            "saturation": self.saturation.figures(),
            "fixed_rate": self.fixed.figures(),
        })
    }
}

fn front_end(lab: &LabFile) -> anyhow::Result<&LabServer> {
    lab.servers
        .iter()
        .find(|s| s.role == "FrontEnd")
        .ok_or_else(|| anyhow!("the lab has no Front End"))
}

/// `tandem bench signin`.
pub(crate) fn signin(options: Options) -> anyhow::Result<()> {
    if options.peer.is_some() && !options.sipp {
        bail!("--peer measures the peer with SIPp: add --sipp");
    }
    if !(options.seconds > 0.0 && options.seconds <= 600.0) {
        bail!("--seconds is between 0 and 600");
    }
    if let Some(rate) = options.rate
        && !(rate > 0.0 && rate <= 1_000_000.0)
    {
        bail!("--rate is a number of sign-ins a second, above 0 and at most 1000000");
    }
    if !(1..=20).contains(&options.rounds) {
        bail!("--rounds is between 1 and 20");
    }
    if options.users == 0 || options.concurrency == 0 {
        bail!("--users and --concurrency are at least 1");
    }
    let sipp = if options.sipp {
        Some(crate::bench_peer::Sipp::find(
            options.sipp_binary.as_deref(),
        )?)
    } else {
        None
    };
    let base = match &options.topology {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            topology::Topology::from_toml(&text).map_err(|e| {
                anyhow!(
                    "{}: {e}; `tandem topology check {}` says more",
                    file.display(),
                    file.display()
                )
            })?
        }
        None => topology::contoso(),
    };
    // UDP and TCP are there only where the topology takes plain SIP.
    let mut options = options;
    let skipped: Vec<Transport> = if base.ports.sip_plain {
        Vec::new()
    } else {
        let plain = |t: &Transport| *t != Transport::Tls;
        let skipped = options.transports.iter().copied().filter(plain).collect();
        options.transports.retain(|t| !plain(t));
        skipped
    };
    if !skipped.is_empty() && !options.json {
        eprintln!("this topology takes no plain SIP (ports.sip_plain): measuring over TLS only");
    }
    if options.transports.is_empty() {
        bail!(
            "this topology takes no plain SIP (ports.sip_plain): measure it with --transports tls"
        );
    }
    let options = options;
    let report = with_lab_of(
        &base,
        options.users,
        crate::lab::Backend::Sqlite,
        |lab, all| {
            let fe = front_end(lab)?;
            let target = Target {
                udp: format!("{}:{}", fe.address, fe.sip_port).parse()?,
                tls: format!("{}:{}", fe.address, fe.sip_tls_port).parse()?,
                tls_config: lab.client_tls()?,
            };
            let mine: Vec<LabUser> = all.into_iter().filter(|u| u.home_pool == fe.pool).collect();
            if mine.is_empty() {
                bail!("the pool of {} has no users", fe.fqdn);
            }
            let users = Arc::new(mine);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let mut native = Vec::new();
            for &transport in &options.transports {
                if !options.json {
                    eprintln!(
                        "tandem's clients over {}…",
                        transport.as_str().to_uppercase()
                    );
                }
                native.push(rt.block_on(async {
                    let count = options.concurrency.clamp(1, 16);
                    let links = links(&target, transport, count, users.len()).await?;
                    let name = transport.as_str().to_uppercase();
                    let saturation = timed(
                        &format!("{name} at saturation"),
                        options.seconds,
                        !options.json,
                        saturation(&links, &users, options.concurrency, options.seconds),
                    )
                    .await;
                    let rate = options.rate.unwrap_or((saturation.rate() / 2.0).max(1.0));
                    let fixed = timed(
                        &format!("{name} at {rate:.0}/s"),
                        options.seconds,
                        !options.json,
                        fixed_rate(&links, &users, rate, options.seconds),
                    )
                    .await;
                    // The next phase (SIPp, or the next transport) starts from a location
                    // service without these bindings, as the peer's does: otherwise each of
                    // its 200s would list one more contact, and each commit read one more.
                    let mut signing_out = tokio::task::JoinSet::new();
                    for link in links {
                        let users = users.clone();
                        signing_out.spawn(async move { link.sign_out_all(&users).await });
                    }
                    while let Some(done) = signing_out.join_next().await {
                        done.context("signing the users out")?
                            .context("signing the users out after the phase")?;
                    }
                    anyhow::Ok(TransportRuns {
                        transport,
                        saturation,
                        fixed,
                    })
                })?);
            }
            let sipp_report = match &sipp {
                Some(sipp) => {
                    let plan = crate::bench_peer::Plan {
                        transports: options.transports.clone(),
                        seconds: options.seconds,
                        rate: options.rate,
                        instances: options.sipp_instances,
                        rounds: options.rounds,
                        kamailio: options.peer == Some(Peer::Kamailio),
                        kamailio_memory: options.peer_memory,
                        quiet: options.json,
                    };
                    Some(crate::bench_peer::compare(sipp, lab, fe, &users, &plan)?)
                }
                None => None,
            };
            Ok((fe.fqdn.clone(), native, sipp_report))
        },
    )?;
    let (front_end, native, sipp_report) = report;
    if options.json {
        let mut v = serde_json::json!({
            "bench": "signin",
            "front_end": front_end,
            "users": options.users,
            "concurrency": options.concurrency,
            "seconds": options.seconds,
            "tandem_clients": native.iter().map(TransportRuns::figures).collect::<Vec<_>>(),
            "skipped_no_plain_sip": skipped.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
        });
        if let Some(s) = &sipp_report {
            v["sipp"] = s.figures();
        }
        println!("{v}");
        return Ok(());
    }
    println!(
        "sign-in with digest (REGISTER, 401, REGISTER, 200: a new binding committed first, a refresh written behind within 1 s) on {front_end}, {} users",
        options.users
    );
    if !skipped.is_empty() {
        println!("(no UDP or TCP: the topology takes no plain SIP)");
    }
    println!("tandem's clients ({} at saturation):", options.concurrency);
    for t in &native {
        let name = t.transport.as_str().to_uppercase();
        println!("  {name:<4} saturation  {}", t.saturation.line());
        println!("  {name:<4} fixed rate  {}", t.fixed.line());
    }
    if let Some(s) = &sipp_report {
        s.print();
    }
    Ok(())
}
