//! `tandem bench backup`, and what the benchmarks of users share: a lab of their own (the
//! contoso topology moved to a free loopback block) and a client's sign-in (REGISTER, 401
//! challenge, REGISTER with digest credentials, 200; `tandem bench signin` is in
//! [`crate::bench_signin`]).
//!
//! - `backup`: writes to users' contact lists through user services at a steady rate,
//!   then reads the backup copy in the partner pool's Back End and reports, for every
//!   write, the time from its commit in the home pool to its arrival in the backup copy
//!   (replication lag), and how many changes were shipped per second.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use base64::Engine as _;
use sip::{Method, Request};
use sipnet::Endpoint;

use crate::lab::{self, LabFile, LabUser, UpOptions};

/// `base` moved to 127.B.x.y, where nothing listens.
fn on_free_block(base: &topology::Topology) -> anyhow::Result<String> {
    let seed = std::process::id() as usize;
    for k in 0..100 {
        let block = 150 + ((seed + k * 11) % 100) as u8;
        let mut t = base.clone();
        t.move_to_loopback_block(block);
        let free = t
            .servers()
            .all(|s| std::net::TcpListener::bind((s.server.address, t.ports.management)).is_ok());
        if !free {
            continue;
        }
        return Ok(t.to_toml());
    }
    bail!("no free loopback block found for the benchmark lab")
}

/// Starts a lab of the contoso topology with `users` users per pool, runs `work`, and
/// always stops the lab.
pub(crate) fn with_lab<T>(
    users: usize,
    backend: lab::Backend,
    work: impl FnOnce(&LabFile, Vec<LabUser>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    with_lab_of(&topology::contoso(), users, backend, work)
}

/// [`with_lab`] of any deployment.
pub(crate) fn with_lab_of<T>(
    base: &topology::Topology,
    users: usize,
    backend: lab::Backend,
    work: impl FnOnce(&LabFile, Vec<LabUser>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let dir = std::env::temp_dir().join(format!("tandem-bench-users-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let topology_file = dir.join("topology.toml");
    std::fs::write(&topology_file, on_free_block(base)?)?;
    let up = lab::up(UpOptions {
        block: None,
        federate_with: None,
        hosts: false,
        topology: Some(topology_file),
        dir: dir.clone(),
        detach: true,
        quiet: true,
        users,
        detection_secs: None,
        reconcile_after_secs: lab::DEFAULT_RECONCILE_AFTER_SECS,
        backend,
    });
    let result = up.and_then(|()| {
        let lab = LabFile::load(&dir)?;
        let users = lab::load_users(&dir)?;
        work(&lab, users)
    });
    let _ = lab::down(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The loopback address the client numbered `n` connects from: 32 clients an address, as
/// users' devices come from many (a registrar takes at most 64 connections an address).
pub(crate) fn client_address(n: u64) -> std::net::IpAddr {
    let group = n % 1_000_000 / 32;
    std::net::Ipv4Addr::new(127, 254, (group / 250) as u8, (group % 250 + 1) as u8).into()
}

/// Percentile of sorted samples.
pub(crate) fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// How a benchmark client reaches the registrar.
pub(crate) enum Carrier<'a> {
    /// Plain UDP on the SIP port, from a shared endpoint.
    Udp(&'a Endpoint, SocketAddr),
    /// Its own TLS connection to the SIP TLS port (the registrar reaches the client back
    /// over it while it is open).
    Flow(&'a sipnet::Flow),
}

impl Carrier<'_> {
    fn contact(&self) -> SocketAddr {
        match self {
            Carrier::Udp(endpoint, _) => endpoint.local_addr(),
            Carrier::Flow(flow) => flow.local_addr(),
        }
    }

    async fn request(&mut self, request: Request) -> std::io::Result<sip::Response> {
        let timeout = Duration::from_secs(5);
        match self {
            Carrier::Udp(endpoint, dest) => endpoint.request(*dest, request, timeout).await,
            Carrier::Flow(flow) => flow.request(request, timeout).await,
        }
    }
}

/// One full sign-in: REGISTER, 401, REGISTER with credentials, 200.
pub(crate) async fn sign_in(
    endpoint: &Endpoint,
    dest: SocketAddr,
    user: &LabUser,
    n: u64,
) -> anyhow::Result<sip::Response> {
    sign_in_over(Carrier::Udp(endpoint, dest), user, n).await
}

/// [`sign_in`] over any carrier.
pub(crate) async fn sign_in_over(
    carrier: Carrier<'_>,
    user: &LabUser,
    n: u64,
) -> anyhow::Result<sip::Response> {
    let contact = carrier.contact();
    sign_in_as(carrier, user, n, contact).await
}

/// [`sign_in_over`], binding `contact` (an address of the carrier's host) rather than the
/// carrier's own address and port.
pub(crate) async fn sign_in_as(
    carrier: Carrier<'_>,
    user: &LabUser,
    n: u64,
    contact: SocketAddr,
) -> anyhow::Result<sip::Response> {
    register_as(carrier, user, n, contact, 600).await
}

/// A REGISTER of `contact` for `expires` seconds, answering the digest challenge; with
/// `expires` 0 it removes the binding (RFC 3261 §10.2.2).
pub(crate) async fn register_as(
    mut carrier: Carrier<'_>,
    user: &LabUser,
    n: u64,
    contact: SocketAddr,
    expires: u32,
) -> anyhow::Result<sip::Response> {
    let aor = &user.sip_address;
    let username = aor.trim_start_matches("sip:");
    let realm = cms::directory::realm_of(aor);
    let build = |cseq: u32| {
        let mut h = sip::Headers::new();
        h.push("Max-Forwards", "70");
        h.push("From", format!("<{aor}>;tag=b{n}"));
        h.push("To", format!("<{aor}>"));
        h.push("Call-ID", format!("bench-{n}-{}", std::process::id()));
        h.push("CSeq", format!("{cseq} REGISTER"));
        h.push("Contact", format!("<sip:bench@{contact}>"));
        h.push("Expires", expires.to_string());
        Request {
            method: Method::Register,
            uri: format!("sip:{realm}"),
            headers: h,
            body: Vec::new(),
        }
    };
    let first = carrier.request(build(1)).await?;
    if first.status != 401 {
        bail!(
            "expected a 401 challenge, got {} {}",
            first.status,
            first.reason
        );
    }
    let mut second = build(2);
    sip::digest::authorize(
        &mut second,
        &first,
        username,
        &user.password,
        &format!("{n:x}"),
    )
    .map_err(|e| anyhow!("bad challenge: {e}"))?;
    let ok = carrier.request(second).await?;
    if ok.status != 200 {
        let what = if expires == 0 { "sign-out" } else { "sign-in" };
        bail!("{what} refused: {} {}", ok.status, ok.reason);
    }
    Ok(ok)
}

/// One mode's writes: what was acknowledged, and how long each acknowledgement took.
struct Phase {
    mode: &'static str,
    written: u64,
    errors: u64,
    synchronous: u64,
    started_ms: i64,
    latency_ms: Vec<f64>,
}

/// Writes `writes_per_sec` contacts a second for `seconds` to the users `mine` through
/// the Front Ends `fes`, timing each write from request to acknowledgement.
async fn write_phase(
    tls: &std::sync::Arc<rustls::ClientConfig>,
    fes: &[String],
    mine: &[LabUser],
    writes_per_sec: u32,
    seconds: u64,
    mode: &'static str,
) -> anyhow::Result<Phase> {
    let client = api::https(tls).pool_max_idle_per_host(64).build()?;
    let total = writes_per_sec as u64 * seconds;
    let interval = Duration::from_secs_f64(1.0 / f64::from(writes_per_sec.max(1)));
    let started_ms = store::now_ms();
    let started = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut bar = crate::progress::Progress::new(&format!("Writing ({mode})"), total, "writes");
    for i in 0..total {
        tokio::time::sleep_until(started + interval * i as u32).await;
        bar.set(i + 1, "");
        let user = mine[i as usize % mine.len()].clone();
        let url = format!(
            "{}/users/v1/contacts/sip:bench-{mode}-{i}@contoso.com",
            fes[i as usize % fes.len()]
        );
        let client = client.clone();
        tasks.spawn(async move {
            let auth = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                user.sip_address.trim_start_matches("sip:"),
                user.password
            ));
            let sent = Instant::now();
            let answer = client
                .put(url)
                .header("authorization", format!("Basic {auth}"))
                .header("content-type", "application/json")
                .body("{\"group\":\"bench\"}")
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())?;
            let body: serde_json::Value = answer.json().await.ok()?;
            Some((
                sent.elapsed().as_secs_f64() * 1000.0,
                body["commit"] == "synchronous",
            ))
        });
    }
    bar.finish();
    let mut phase = Phase {
        mode,
        written: 0,
        errors: 0,
        synchronous: 0,
        started_ms,
        latency_ms: Vec::new(),
    };
    while let Some(done) = tasks.join_next().await {
        match done.ok().flatten() {
            Some((ms, synchronous)) => {
                phase.written += 1;
                phase.synchronous += u64::from(synchronous);
                phase.latency_ms.push(ms);
            }
            None => phase.errors += 1,
        }
    }
    phase.latency_ms.sort_by(f64::total_cmp);
    Ok(phase)
}

/// `tandem bench backup`: replication lag under a steady write load; with `synchronous`,
/// the same load again with the pair committing synchronously, and the write latency of
/// both modes side by side.
pub(crate) fn backup(
    users: usize,
    writes_per_sec: u32,
    seconds: u64,
    synchronous: bool,
    json: bool,
) -> anyhow::Result<()> {
    let (phases, mut lags, span) = with_lab(users, crate::lab::Backend::Sqlite, |lab, all| {
        let home = lab
            .servers
            .iter()
            .find(|s| s.role == "FrontEnd")
            .ok_or_else(|| anyhow!("no Front End"))?
            .pool
            .clone();
        let fes: Vec<String> = lab
            .servers
            .iter()
            .filter(|s| s.pool == home)
            .map(|s| api::base(&s.address, s.user_services_port))
            .collect();
        let mine: Vec<LabUser> = all.into_iter().filter(|u| u.home_pool == home).collect();
        let tls = lab.client_tls()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let mut phases = vec![rt.block_on(write_phase(
            &tls,
            &fes,
            &mine,
            writes_per_sec,
            seconds,
            "asynchronous",
        ))?];
        if synchronous {
            let client = lab.api()?;
            let via = lab
                .servers
                .iter()
                .find(|s| s.pool == home)
                .ok_or_else(|| anyhow!("no Front End of {home}"))?;
            rt.block_on(async {
                lab::call(
                    &client,
                    lab,
                    via,
                    "Set-CsBackupServiceConfiguration",
                    serde_json::json!({ "SynchronousCommit": true, "PoolFqdn": home }),
                )
                .await?;
                let deadline = Instant::now() + Duration::from_secs(30);
                while !lab::all_up_to_date(&client, lab).await?.0 {
                    if Instant::now() > deadline {
                        bail!("the synchronous setting did not reach every server");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                anyhow::Ok(())
            })?;
            phases.push(rt.block_on(write_phase(
                &tls,
                &fes,
                &mine,
                writes_per_sec,
                seconds,
                "synchronous",
            ))?);
        }
        let written: u64 = phases.iter().map(|p| p.written).sum();
        let started_ms = phases.iter().map(|p| p.started_ms).min().unwrap_or(0);
        // Let the Backup Service finish, then read the backup copy in the partner's Back End.
        let partner = lab
            .servers
            .iter()
            .find(|s| s.role == "FrontEnd" && s.pool != home)
            .ok_or_else(|| anyhow!("no partner pool"))?
            .pool
            .clone();
        let url = lab
            .installed_topology()?
            .front_end_pool(&partner)
            .map(|p| crate::lab_pg::with_password(&p.back_end.database_url, &lab.dir))
            .ok_or_else(|| anyhow!("no Back End for {partner}"))??;
        let rt = lab::runtime();
        let (lags, span) = rt.block_on(async {
            let be = store::BackEnd::open(&url, &lab.dir).await?;
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let items = be.backup_items(&home, Some("PresenceFocus"), None).await?;
                let rows: Vec<_> = items
                    .iter()
                    .filter(|i| {
                        i.key.starts_with("contacts/sip:bench-") && i.committed_at >= started_ms
                    })
                    .collect();
                if rows.len() as u64 >= written || Instant::now() > deadline {
                    let lags: Vec<f64> = rows
                        .iter()
                        .map(|i| (i.imported_at - i.committed_at) as f64 / 1000.0)
                        .collect();
                    let first = rows.iter().map(|i| i.committed_at).min().unwrap_or(0);
                    let last = rows.iter().map(|i| i.imported_at).max().unwrap_or(0);
                    be.close().await;
                    return anyhow::Ok((lags, (last - first) as f64 / 1000.0));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })?;
        Ok((phases, lags, span))
    })?;
    lags.sort_by(f64::total_cmp);
    let written: u64 = phases.iter().map(|p| p.written).sum();
    let errors: u64 = phases.iter().map(|p| p.errors).sum();
    let shipped = lags.len();
    let per_sec = if span > 0.0 {
        shipped as f64 / span
    } else {
        0.0
    };
    let modes: Vec<serde_json::Value> = phases
        .iter()
        .map(|p| {
            serde_json::json!({
                "mode": p.mode,
                "writes_acknowledged": p.written,
                "writes_failed": p.errors,
                "acknowledged_synchronously": p.synchronous,
                "write_latency_ms": {
                    "p50": pct(&p.latency_ms, 0.5),
                    "p99": pct(&p.latency_ms, 0.99),
                },
            })
        })
        .collect();
    let figures = serde_json::json!({
        "bench": "backup",
        "users": users,
        "writes_per_second_asked": writes_per_sec,
        "seconds": seconds,
        "writes_acknowledged": written,
        "writes_failed": errors,
        "changes_in_backup_copy": shipped,
        "changes_shipped_per_second": per_sec,
        "lag_seconds": {
            "p50": pct(&lags, 0.5),
            "p99": pct(&lags, 0.99),
            "max": lags.last().copied().unwrap_or(0.0),
        },
        "modes": modes,
    });
    if json {
        println!("{figures}");
    } else {
        println!(
            "backup of {written} acknowledged writes ({writes_per_sec}/s for {seconds} s per mode, {users} users per pool; {errors} failed)"
        );
        println!("  {shipped} reached the backup copy; {per_sec:.0} changes shipped per second");
        println!(
            "  replication lag (commit → backup copy): p50 {:.3} s, p99 {:.3} s, max {:.3} s",
            pct(&lags, 0.5),
            pct(&lags, 0.99),
            lags.last().copied().unwrap_or(0.0)
        );
        for p in &phases {
            println!(
                "  {:<12} write latency p50 {:.2} ms, p99 {:.2} ms ({} of {} acknowledged synchronously)",
                p.mode,
                pct(&p.latency_ms, 0.5),
                pct(&p.latency_ms, 0.99),
                p.synchronous,
                p.written
            );
        }
    }
    if (shipped as u64) < written {
        bail!(
            "{} acknowledged writes never reached the backup copy",
            written - shipped as u64
        );
    }
    Ok(())
}

/// A transport the Front End takes sign-ins over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// What one phase measured.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    /// The rate sign-ins were started at, for a fixed-rate phase.
    pub(crate) offered: Option<f64>,
    pub(crate) failed: u64,
    /// Sign-ins the schedule could not start: [`MAX_IN_FLIGHT`] were waiting already.
    pub(crate) not_started: u64,
    pub(crate) elapsed: Duration,
    /// Each completed sign-in's latency, ms, sorted.
    pub(crate) latencies: Vec<f64>,
    /// What the first failed sign-in met.
    pub(crate) first_error: Option<String>,
}

impl Run {
    pub(crate) fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub(crate) fn figures(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "completed": self.latencies.len(),
            "failed": self.failed,
            "seconds": self.elapsed.as_secs_f64(),
            "sign_ins_per_second": self.rate(),
            "latency_ms": {
                "p50": pct(&self.latencies, 0.5),
                "p99": pct(&self.latencies, 0.99),
                "max": self.latencies.last().copied().unwrap_or(0.0),
            },
        });
        if let Some(offered) = self.offered {
            v["offered_per_second"] = offered.into();
            v["not_started"] = self.not_started.into();
        }
        if let Some(e) = &self.first_error {
            v["first_error"] = e.clone().into();
        }
        v
    }

    pub(crate) fn line(&self) -> String {
        let offered = match self.offered {
            Some(r) => format!("offered {r:.0}/s, "),
            None => String::new(),
        };
        let mut s = format!(
            "{offered}{:.0} sign-ins/s ({} in {:.1} s), p50 {:.2} ms, p99 {:.2} ms",
            self.rate(),
            self.latencies.len(),
            self.elapsed.as_secs_f64(),
            pct(&self.latencies, 0.5),
            pct(&self.latencies, 0.99),
        );
        if self.failed > 0 {
            s.push_str(&format!(", {} failed", self.failed));
            if let Some(e) = &self.first_error {
                s.push_str(&format!(" (the first: {e})"));
            }
        }
        if self.not_started > 0 {
            s.push_str(&format!(", {} not started", self.not_started));
        }
        s
    }
}
