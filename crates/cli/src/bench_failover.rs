//! `tandem bench failover`: pool failover and failback timed on a real lab.
//!
//! pool2 (the pool without the CMS) has `--users` users; `--active` of them each save one
//! contact and are signed in. The bench then
//!
//! 1. fails pool2 over (planned) and times the command, and the time until every active
//!    user has signed in again at pool1 in full mode. The clients do so when pool2's
//!    notification signs them out (`registration-notify`, naming pool1 as their registrar
//!    now), as a signed-in client does: the time includes pool2 telling 40,000 endpoints;
//! 2. counts the acknowledged writes that pool1 serves (the planned failover must lose 0);
//! 3. fails pool2 back and times it, and counts again at pool2;
//! 4. kills pool2 while a writer is saving contacts, fails it over in disaster mode (timed),
//!    counts the acknowledged writes pool1 does not have and what the operation reports at
//!    once (what pool2 had not shipped when it last answered), starts pool2 again, fails
//!    back, and compares that count with what the operation then reports as lost.
//!
//! Counts are read from the Back End files directly, as an auditor would, after the
//! servers have committed them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use api::InvokeResponse;
use base64::Engine as _;
use sipnet::{Endpoint, Flow, FrameLimits, Incoming};

use crate::bench_users::{Carrier, client_address, pct, sign_in, sign_in_over, with_lab};
use crate::client::{RegistrationNotice, registration_notice};
use crate::lab::{self, LabFile, LabUser};

const HOME: &str = "pool2.contoso.com";
const BACKUP: &str = "pool1.contoso.com";

async fn invoke(lab: &LabFile, line: &str) -> anyhow::Result<InvokeResponse> {
    let fe = lab
        .servers
        .iter()
        .find(|s| s.pool == BACKUP)
        .ok_or_else(|| anyhow!("no Front End of {BACKUP}"))?;
    invoke_on(lab, &fe.fqdn, line).await
}

/// Runs one cmdlet line on the lab server `fqdn`, as `tandem shell -c` would.
pub(crate) async fn invoke_on(
    lab: &LabFile,
    fqdn: &str,
    line: &str,
) -> anyhow::Result<InvokeResponse> {
    let fe = lab
        .servers
        .iter()
        .find(|s| s.fqdn == fqdn)
        .ok_or_else(|| anyhow!("no server {fqdn} in the lab"))?;
    // Bound by the shell's own binder, as `tandem shell -c` would send it.
    let mut statements = cmdlet::parse_and_bind(line).map_err(|e| anyhow!("{line}: {e:?}"))?;
    let request = crate::shell::request(&statements.remove(0).invocation, &lab.dir);
    lab.api()?
        .invoke(&fe.base_url(), &request, Duration::from_secs(600))
        .await
        .map_err(|e| anyhow!("{line}: {e}"))
}

/// Saves contact `name` for `user` through the user services of `base`; true when acknowledged.
async fn save(client: &reqwest::Client, bases: &[String], user: &LabUser, name: &str) -> bool {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        user.sip_address.trim_start_matches("sip:"),
        user.password
    ));
    for base in bases {
        let r = client
            .put(format!("{base}/users/v1/contacts/sip:{name}@contoso.com"))
            .header("authorization", format!("Basic {auth}"))
            .header("content-type", "application/json")
            .body("{\"group\":\"bench\"}")
            .send()
            .await;
        if let Ok(r) = r {
            if r.status().is_success() {
                return r.text().await.is_ok_and(|t| t.contains("\"saved\":true"));
            }
            if r.status().is_redirection() {
                continue;
            }
            return false;
        }
    }
    false
}

/// How many contact items named `<prefix>*` the pool's Back End holds (its
/// `database_url` in the lab's topology: a SQLite file or a PostgreSQL database).
async fn count_in(lab: &LabFile, pool: &str, prefix: &str) -> anyhow::Result<i64> {
    let topology = lab.installed_topology()?;
    let fe = topology
        .front_end_pool(pool)
        .ok_or_else(|| anyhow!("the bench topology has no pool {pool}"))?;
    let be = crate::lab_pg::open_back_end(&fe.back_end, &lab.dir).await?;
    let items = be.all_user_items(Some("PresenceFocus")).await?;
    be.close().await;
    Ok(items
        .iter()
        .filter(|i| i.key.starts_with(&format!("contacts/sip:{prefix}")))
        .count() as i64)
}

/// How the bench's clients reach their registrars.
#[derive(Clone)]
enum Clients {
    /// One UDP endpoint stands for every client (plain SIP); notifications arrive at it.
    Udp(Arc<Endpoint>),
    /// Each client has its own TLS connection to the SIP TLS port, kept open after the
    /// sign-in: the registrar's notification comes down it.
    Tls {
        config: Arc<rustls::ClientConfig>,
        told: tokio::sync::mpsc::UnboundedSender<Told>,
        kept: Arc<std::sync::Mutex<Vec<Flow>>>,
    },
}

impl Clients {
    /// Where these clients reach the Front End `server`.
    fn at(&self, server: &lab::LabServer) -> anyhow::Result<SocketAddr> {
        let port = match self {
            Clients::Udp(_) => server.sip_port,
            Clients::Tls { .. } => server.sip_tls_port,
        };
        Ok(format!("{}:{port}", server.address).parse()?)
    }

    /// `UDP` or `TLS`.
    fn transport(&self) -> &'static str {
        match self {
            Clients::Udp(_) => "UDP",
            Clients::Tls { .. } => "TLS",
        }
    }
}

/// Signs `user` in at `dest` until the registrar answers 200 in full mode (a minute at most).
async fn sign_in_full(
    clients: &Clients,
    dest: SocketAddr,
    user: &LabUser,
    n: u64,
) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let mut flow: Option<Flow> = None;
    loop {
        let answer = match clients {
            Clients::Udp(endpoint) => sign_in(endpoint, dest, user, n).await,
            Clients::Tls { config, told, .. } => {
                if flow.as_ref().is_none_or(Flow::is_closed) {
                    let name = dest.ip().to_string();
                    let (opened, incoming) = Flow::connect_tls(
                        Some(client_address(n)),
                        dest,
                        &name,
                        config,
                        Duration::from_secs(5),
                        FrameLimits::LISTENER,
                    )
                    .await?;
                    answer_notifications(Notified::Flow(opened.clone()), incoming, told.clone());
                    flow = Some(opened);
                }
                let carrier = Carrier::Flow(flow.as_ref().expect("opened"));
                sign_in_over(carrier, user, n).await
            }
        };
        match answer {
            Ok(r) if r.headers.get("X-Tandem-Mode") == Some("full") => {
                if let (Clients::Tls { kept, .. }, Some(flow)) = (clients, flow) {
                    kept.lock().expect("kept").push(flow);
                }
                return Ok(());
            }
            _ if t0.elapsed() > Duration::from_secs(60) => {
                anyhow::bail!("{} never signed in in full mode", user.sip_address)
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Signs every user in at `dest` until each gets 200 in full mode.
async fn sign_in_all(
    clients: &Clients,
    users: &[LabUser],
    dest: SocketAddr,
    concurrency: usize,
) -> anyhow::Result<()> {
    let owned: Vec<LabUser> = users.to_vec();
    let queue = Arc::new(tokio::sync::Mutex::new(owned.into_iter().enumerate()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (queue, clients) = (queue.clone(), clients.clone());
        tasks.spawn(async move {
            loop {
                let next = queue.lock().await.next();
                let Some((n, user)) = next else { break };
                sign_in_full(&clients, dest, &user, n as u64 + 1_000_000).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

/// A user a registration notification signed out: who, the registrar pool it named, and
/// when it arrived.
type Told = (String, Option<String>, Instant);

/// Where notifications arrive and are answered.
enum Notified {
    /// At the clients' shared UDP endpoint.
    Endpoint(Arc<Endpoint>),
    /// On one client's TLS connection.
    Flow(Flow),
}

/// Answers every request that reaches the clients (as each client would) and passes on
/// each sign-out.
fn answer_notifications(
    at: Notified,
    mut incoming: tokio::sync::mpsc::Receiver<Incoming>,
    told: tokio::sync::mpsc::UnboundedSender<Told>,
) {
    tokio::spawn(async move {
        while let Some(message) = incoming.recv().await {
            let Incoming::Request(request, peer) = message else {
                continue;
            };
            let answer = sip::Response::for_request(&request, 200, "OK", Some("bench"));
            let _ = match &at {
                Notified::Endpoint(endpoint) => endpoint.send(peer, &answer.to_bytes()).await,
                Notified::Flow(flow) => flow.answer(&answer).await,
            };
            let Some(RegistrationNotice::SignInAgain { at, .. }) = registration_notice(&request)
            else {
                continue;
            };
            let Some(aor) = request
                .headers
                .get("To")
                .and_then(|t| sip::NameAddr::parse(t).ok())
                .map(|n| n.uri.aor())
            else {
                continue;
            };
            let _ = told.send((aor, at, Instant::now()));
        }
    });
}

/// Signs in again each of `expected` users as its sign-out notification arrives, at the
/// registrars of the pool it names (spread over them, as DNS would); returns, per user,
/// the time from the notification to the 200 in full mode. Fails when some users are not
/// told within a minute.
async fn sign_in_when_told(
    clients: &Clients,
    told: &mut tokio::sync::mpsc::UnboundedReceiver<Told>,
    users: &[LabUser],
    registrars: impl Fn(&str) -> Vec<SocketAddr>,
    concurrency: usize,
) -> anyhow::Result<Vec<f64>> {
    let by_aor: std::collections::HashMap<&str, &LabUser> =
        users.iter().map(|u| (u.sip_address.as_str(), u)).collect();
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut tasks = tokio::task::JoinSet::new();
    let mut received = 0usize;
    // A retransmitted notification (our 200 was lost) is acted on once.
    let mut seen = std::collections::HashSet::new();
    while received < users.len() {
        let next = tokio::time::timeout_at(deadline, told.recv()).await;
        let Ok(Some((aor, at, when))) = next else {
            anyhow::bail!(
                "{} of {} signed-in users were never told to sign in again",
                users.len() - received,
                users.len()
            );
        };
        let Some(user) = by_aor.get(aor.as_str()).map(|u| (*u).clone()) else {
            continue;
        };
        if !seen.insert((aor.clone(), at.clone())) {
            continue;
        }
        let pool =
            at.ok_or_else(|| anyhow!("{aor} was signed out without a registrar to go to"))?;
        let candidates = registrars(&pool);
        let dest = *candidates
            .get(received % candidates.len().max(1))
            .ok_or_else(|| anyhow!("no registrar of {pool} in the lab"))?;
        received += 1;
        let slot = slots.clone().acquire_owned().await?;
        let (clients, n) = (clients.clone(), received as u64 + 2_000_000);
        tasks.spawn(async move {
            sign_in_full(&clients, dest, &user, n).await?;
            drop(slot);
            anyhow::Ok(when.elapsed().as_secs_f64() * 1000.0)
        });
    }
    let mut samples = vec![];
    while let Some(r) = tasks.join_next().await {
        samples.push(r??);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples)
}

fn op_field(reply: &InvokeResponse, name: &str) -> Option<serde_json::Value> {
    match &reply.output {
        cmdlet::Output::Records(r) => r
            .last()
            .and_then(|rec| rec.get(name))
            .map(|f| serde_json::to_value(f).unwrap_or_default()),
        _ => None,
    }
}

pub(crate) fn failover(
    users: usize,
    active: usize,
    synchronous: bool,
    scrape_metrics: bool,
    backends: &[crate::lab::Backend],
    json: bool,
) -> anyhow::Result<()> {
    let mut all_figures = Vec::new();
    let scraping: &[bool] = if scrape_metrics {
        &[false, true]
    } else {
        &[false]
    };
    // One lab per kind of Back End (and, with --scrape-metrics, one more scraped), one
    // after the other, in this one run.
    for &backend in backends {
        for &scraped in scraping {
            let figures = with_lab(users, backend, |lab, all| {
                // The clients hash digests and parse SIP: give them both cores, as `bench
                // signin` does.
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async {
                    let scraper = scraped.then(|| MetricsScraper::start(lab)).transpose()?;
                    let mut figures = run(lab, all, active, synchronous).await?;
                    if let Some(scraper) = scraper {
                        let (scrapes, failed) = scraper.stop().await;
                        figures["metrics_scrapes"] = scrapes.into();
                        figures["metrics_scrapes_failed"] = failed.into();
                    }
                    anyhow::Ok(figures)
                })
            })?;
            let name = match (backend, scraped) {
                (crate::lab::Backend::Sqlite, false) => "sqlite",
                (crate::lab::Backend::Sqlite, true) => "sqlite, /metrics scraped",
                (crate::lab::Backend::Postgres, false) => "postgres",
                (crate::lab::Backend::Postgres, true) => "postgres, /metrics scraped",
            };
            all_figures.push((name, figures));
        }
    }
    if json {
        match &all_figures[..] {
            [(_, one)] => println!("{one}"),
            many => println!(
                "{}",
                serde_json::Value::Object(
                    many.iter()
                        .map(|(n, f)| (n.to_string(), f.clone()))
                        .collect()
                )
            ),
        }
        return Ok(());
    }
    for (name, figures) in &all_figures {
        if all_figures.len() > 1 {
            println!("Back Ends on {name}:");
        }
        print_figures(figures);
    }
    // Side by side: each Back End against the first, or each scraped run against its own
    // unscraped one.
    let step = scraping.len();
    let pairs: Vec<(usize, usize)> = if step == 2 {
        (0..all_figures.len())
            .step_by(2)
            .map(|i| (i, i + 1))
            .collect()
    } else {
        (1..all_figures.len()).map(|i| (0, i)).collect()
    };
    for (i, j) in pairs {
        let ((a, fa), (b, fb)) = (&all_figures[i], &all_figures[j]);
        let ratio = |key: &str| ratio(fa, fb, key);
        println!(
            "{b} / {a}: planned failover {:.2}x, all signed in again {:.2}x, planned failback {:.2}x, disaster failover {:.2}x",
            ratio("planned_failover_s"),
            ratio("all_signed_in_again_s"),
            ratio("planned_failback_s"),
            ratio("disaster_failover_s"),
        );
    }
    Ok(())
}

/// Scrapes every server's `/metrics` once a second, as a Prometheus would, until stopped.
struct MetricsScraper {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<(u64, u64)>,
}

impl MetricsScraper {
    fn start(lab: &LabFile) -> anyhow::Result<MetricsScraper> {
        let client = api::https(&lab.client_tls()?).build()?;
        let urls: Vec<String> = lab
            .servers
            .iter()
            .filter(|s| s.role == "FrontEnd" || s.role == "Edge")
            .map(|s| format!("{}/metrics", api::base(&s.address, s.management_port)))
            .collect();
        let token = format!("Bearer {}", lab.admin_token);
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let (mut scrapes, mut failed) = (0u64, 0u64);
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = stopped.wait_for(|s| *s) => return (scrapes, failed),
                }
                for url in &urls {
                    let answer = client
                        .get(url)
                        .header("authorization", &token)
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                    let ok = match answer {
                        Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                        _ => false,
                    };
                    scrapes += 1;
                    failed += u64::from(!ok);
                }
            }
        });
        Ok(MetricsScraper { stop, task })
    }

    /// Stops scraping; how many scrapes were made, and how many failed (a server the
    /// benchmark killed fails its scrapes, as it would a Prometheus's).
    async fn stop(self) -> (u64, u64) {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// `to[key] / from[key]`, 0 when `from` has no such figure.
fn ratio(from: &serde_json::Value, to: &serde_json::Value, key: &str) -> f64 {
    let x = from[key].as_f64().unwrap_or(0.0);
    let y = to[key].as_f64().unwrap_or(0.0);
    if x > 0.0 { y / x } else { 0.0 }
}

/// The figures of one lab, in words.
fn print_figures(f: &serde_json::Value) {
    println!(
        "pool failover of {HOME} ({} enabled users, {} active) to {BACKUP}:",
        f["users"], f["active"]
    );
    println!(
        "  planned failover: {:.3} s; all {} active users, signed out by {HOME}, signed in again at {BACKUP} in full mode after {:.3} s (p50 {:.1} ms from the notification to the sign-in)",
        f["planned_failover_s"].as_f64().unwrap_or(0.0),
        f["active"],
        f["all_signed_in_again_s"].as_f64().unwrap_or(0.0),
        f["resign_in_ms"]["p50"].as_f64().unwrap_or(0.0)
    );
    println!(
        "  acknowledged writes: {}; served by {BACKUP} after failover: {}; at {HOME} after failback: {} (lost in planned operations: {})",
        f["acknowledged_writes"],
        f["present_after_failover"],
        f["present_after_failback"],
        f["lost_planned"]
    );
    println!(
        "  planned failback: {:.3} s",
        f["planned_failback_s"].as_f64().unwrap_or(0.0)
    );
    let t = &f["over_tls"];
    let ratio = |key: &str| ratio(f, t, key);
    println!(
        "  over TLS ({} active users, each its own connection, notified down it): planned failover {:.3} s ({:.2}x plain); all signed in again after {:.3} s ({:.2}x; p50 {:.1} ms from the notification); planned failback {:.3} s ({:.2}x)",
        t["clients"],
        t["planned_failover_s"].as_f64().unwrap_or(0.0),
        ratio("planned_failover_s"),
        t["all_signed_in_again_s"].as_f64().unwrap_or(0.0),
        ratio("all_signed_in_again_s"),
        t["resign_in_ms"]["p50"].as_f64().unwrap_or(0.0),
        t["planned_failback_s"].as_f64().unwrap_or(0.0),
        ratio("planned_failback_s"),
    );
    println!(
        "  disaster failover (pool killed under writes): {:.3} s; acknowledged writes missing at {BACKUP}: {}; reported at failover (unshipped when last heard, a lower bound): {}; reported lost after the failback counted them: {}",
        f["disaster_failover_s"].as_f64().unwrap_or(0.0),
        f["disaster_lost_observed"],
        f["disaster_reported_at_failover"],
        f["disaster_lost_reported"]
    );
    if f["disaster_lost_reported"] != f["disaster_lost_observed"] {
        println!(
            "  (the count after the failback includes writes pool2 committed as it was killed whose answer never reached the client: committed, so lost, but never acknowledged)"
        );
    }
    for round in f["disaster_rounds"].as_array().into_iter().flatten() {
        println!(
            "  disaster under {} commit: {} acknowledged writes, write latency p50 {:.2} ms, p99 {:.2} ms; acknowledged writes missing at {BACKUP}: {}; said at once: {}",
            round["commit"].as_str().unwrap_or_default(),
            round["acknowledged"],
            round["write_latency_ms"]["p50"].as_f64().unwrap_or(0.0),
            round["write_latency_ms"]["p99"].as_f64().unwrap_or(0.0),
            round["lost_observed"],
            round["said_at_once"].as_str().unwrap_or_default()
        );
    }
    if let Some(scrapes) = f["metrics_scrapes"].as_u64() {
        println!(
            "  /metrics of every server scraped each second throughout: {scrapes} scrapes, {} failed (servers the benchmark had stopped)",
            f["metrics_scrapes_failed"]
        );
    }
}

async fn run(
    lab: &LabFile,
    all: Vec<LabUser>,
    active: usize,
    synchronous: bool,
) -> anyhow::Result<serde_json::Value> {
    let mine: Vec<LabUser> = all.into_iter().filter(|u| u.home_pool == HOME).collect();
    let enabled = mine.len();
    let active_users: Vec<LabUser> = mine.iter().take(active.min(enabled)).cloned().collect();
    let bases = |pool: &str| -> Vec<String> {
        lab.servers
            .iter()
            .filter(|s| s.pool == pool && s.role == "FrontEnd")
            .map(|s| api::base(&s.address, s.user_services_port))
            .collect()
    };
    // The benchmark's phases, one bar: the users ready, the planned failover with the
    // users signing in again, the failback, the round over TLS, the disaster round(s).
    let phases = if synchronous { 6 } else { 5 };
    let mut bar = crate::progress::Progress::new("Failover benchmark", phases, "phases");
    bar.set(0, "saving contacts and signing the active users in");
    let client = api::https(&lab.client_tls()?)
        .pool_max_idle_per_host(64)
        .build()?;
    // Each active user saves one contact and signs in at the home pool.
    let home_bases = bases(HOME);
    let mut acked = 0i64;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, u) in active_users.iter().enumerate() {
        let (client, b, u) = (client.clone(), home_bases.clone(), u.clone());
        tasks.spawn(async move { save(&client, &b, &u, &format!("bench-{i}")).await });
        if tasks.len() >= 64 {
            acked += i64::from(tasks.join_next().await.context("join")??);
        }
    }
    while let Some(r) = tasks.join_next().await {
        acked += i64::from(r?);
    }
    // One endpoint stands for the active users' clients over plain SIP: they sign in
    // from it, and the notifications that sign them out arrive at it.
    let (endpoint, incoming) = Endpoint::bind("127.0.0.1:0".parse()?).await?;
    let (told_tx, mut told) = tokio::sync::mpsc::unbounded_channel();
    answer_notifications(Notified::Endpoint(endpoint.clone()), incoming, told_tx);
    let plain = Clients::Udp(endpoint);
    sign_in_all(
        &plain,
        &active_users,
        plain.at(front_end_of(lab, HOME)?)?,
        64,
    )
    .await?;
    invoke(
        lab,
        "Set-CsEdgeServer -Identity EdgeServer:edgepool2.contoso.com -Registrar Registrar:pool1.contoso.com",
    )
    .await?;

    bar.set(1, "planned failover and the users signing in again");
    let t0 = Instant::now();
    invoke(lab, &format!("Invoke-CsPoolFailOver -PoolFqdn {HOME}")).await?;
    let planned_failover = t0.elapsed();
    let resign = sign_in_when_told(
        &plain,
        &mut told,
        &active_users,
        |pool| registrars(lab, &plain, pool),
        64,
    )
    .await?;
    let all_signed_in = t0.elapsed();
    let present_after_failover = count_in(lab, BACKUP, "bench-").await?;

    bar.set(2, "planned failback");
    let t1 = Instant::now();
    invoke(lab, &format!("Invoke-CsPoolFailBack -PoolFqdn {HOME}")).await?;
    let planned_failback = t1.elapsed();
    let present_after_failback = count_in(lab, HOME, "bench-").await?;

    // The same planned round with every client on its own TLS connection.
    bar.set(3, "the planned round again over TLS");
    let over_tls = tls_round(lab, &active_users).await?;

    // Disaster: a writer saves contacts while the pool is killed.
    bar.set(4, "disaster round: the pool killed under writes");
    let first = disaster_round(lab, &client, &active_users, &home_bases, "disaster").await?;
    let mut rounds = vec![first.clone()];
    if synchronous {
        invoke(
            lab,
            &format!("Set-CsBackupServiceConfiguration -SynchronousCommit $true -PoolFqdn {HOME}"),
        )
        .await?;
        let client_api = lab.api()?;
        while !lab::all_up_to_date(&client_api, lab).await?.0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bar.set(5, "disaster round with synchronous commit");
        rounds.push(disaster_round(lab, &client, &active_users, &home_bases, "synchronous").await?);
    }
    bar.set(phases, "");
    bar.finish();
    let disaster_acked = first["acknowledged"].as_i64().unwrap_or(0);
    let observed = first["lost_observed"].as_i64().unwrap_or(0);
    let reported = first["lost_reported"].as_i64().unwrap_or(-1);
    let reported_at_failover = first["reported_at_failover"].as_i64().unwrap_or(-1);
    let disaster_failover = Duration::from_secs_f64(first["failover_s"].as_f64().unwrap_or(0.0));
    let disaster_failback = Duration::from_secs_f64(first["failback_s"].as_f64().unwrap_or(0.0));

    Ok(serde_json::json!({
        "bench": "failover",
        "users": enabled,
        "active": active_users.len(),
        "planned_failover_s": planned_failover.as_secs_f64(),
        "all_signed_in_again_s": all_signed_in.as_secs_f64(),
        "resign_in_ms": {
            "p50": pct(&resign, 0.5),
            "p99": pct(&resign, 0.99),
            "max": resign.last().copied().unwrap_or(0.0),
        },
        "acknowledged_writes": acked,
        "present_after_failover": present_after_failover,
        "present_after_failback": present_after_failback,
        "lost_planned": (acked - present_after_failover).max(acked - present_after_failback),
        "planned_failback_s": planned_failback.as_secs_f64(),
        "disaster_acknowledged_writes": disaster_acked,
        "disaster_failover_s": disaster_failover.as_secs_f64(),
        "disaster_lost_observed": observed,
        "disaster_lost_reported": reported,
        "disaster_reported_at_failover": reported_at_failover,
        "disaster_failback_s": disaster_failback.as_secs_f64(),
        "disaster_rounds": rounds,
        "over_tls": over_tls,
    }))
}

/// A Front End of `pool`.
fn front_end_of<'l>(lab: &'l LabFile, pool: &str) -> anyhow::Result<&'l lab::LabServer> {
    lab.servers
        .iter()
        .find(|s| s.pool.eq_ignore_ascii_case(pool) && s.role == "FrontEnd")
        .ok_or_else(|| anyhow!("no Front End of {pool}"))
}

/// Where `clients` reach the registrars of `pool`.
fn registrars(lab: &LabFile, clients: &Clients, pool: &str) -> Vec<SocketAddr> {
    lab.servers
        .iter()
        .filter(|s| s.pool.eq_ignore_ascii_case(pool) && s.role == "FrontEnd")
        .filter_map(|s| clients.at(s).ok())
        .collect()
}

/// Active users signed in over TLS in the TLS round: under one Front End's connection cap
/// (`registrar::TCP_CONNECTIONS`, 1,024), with room for the lab's own.
const TLS_CLIENTS: usize = 1_000;

/// A planned failover and failback of the home pool with every active user signed in over
/// its own TLS connection: the failover's and the failback's times, and how soon the
/// clients the notification (down each connection) signed out were signed in again.
async fn tls_round(lab: &LabFile, users: &[LabUser]) -> anyhow::Result<serde_json::Value> {
    // They all sign in at one Front End first, which holds at most
    // `registrar::TCP_CONNECTIONS` connections: past that, the first ones do.
    let users = &users[..users.len().min(TLS_CLIENTS)];
    let (told_tx, mut told) = tokio::sync::mpsc::unbounded_channel();
    let tls = Clients::Tls {
        config: lab.client_tls()?,
        told: told_tx,
        kept: Arc::default(),
    };
    sign_in_all(&tls, users, tls.at(front_end_of(lab, HOME)?)?, 64).await?;
    let t0 = Instant::now();
    invoke(lab, &format!("Invoke-CsPoolFailOver -PoolFqdn {HOME}")).await?;
    let failover = t0.elapsed();
    let resign = sign_in_when_told(
        &tls,
        &mut told,
        users,
        |pool| registrars(lab, &tls, pool),
        64,
    )
    .await?;
    let all_signed_in = t0.elapsed();
    let t1 = Instant::now();
    invoke(lab, &format!("Invoke-CsPoolFailBack -PoolFqdn {HOME}")).await?;
    let failback = t1.elapsed();
    Ok(serde_json::json!({
        "transport": tls.transport(),
        "clients": users.len(),
        "planned_failover_s": failover.as_secs_f64(),
        "all_signed_in_again_s": all_signed_in.as_secs_f64(),
        "resign_in_ms": {
            "p50": pct(&resign, 0.5),
            "p99": pct(&resign, 0.99),
            "max": resign.last().copied().unwrap_or(0.0),
        },
        "planned_failback_s": failback.as_secs_f64(),
    }))
}

/// Kills the home pool while a writer saves contacts, fails it over in disaster mode
/// (reading back the operation it started), counts what the backup pool holds, brings the pool back and
/// fails it back; the writer times every acknowledged write.
async fn disaster_round(
    lab: &LabFile,
    client: &reqwest::Client,
    users: &[LabUser],
    bases: &[String],
    tag: &str,
) -> anyhow::Result<serde_json::Value> {
    let writer_users = users.to_vec();
    let writer_bases = bases.to_vec();
    let writer_client = client.clone();
    let prefix = format!("{tag}-");
    let writer_prefix = prefix.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let writer = tokio::spawn(async move {
        let mut latency = Vec::new();
        let mut i = 0usize;
        while !flag.load(std::sync::atomic::Ordering::SeqCst) {
            let u = &writer_users[i % writer_users.len()];
            let sent = Instant::now();
            if save(
                &writer_client,
                &writer_bases,
                u,
                &format!("{writer_prefix}{i}"),
            )
            .await
            {
                latency.push(sent.elapsed().as_secs_f64() * 1000.0);
            }
            i += 1;
        }
        latency
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let dir = lab.dir.clone();
    tokio::task::spawn_blocking(move || lab::kill_servers(&dir, HOME)).await??;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut latency = writer.await?;
    latency.sort_by(f64::total_cmp);
    let acked = latency.len() as i64;
    let t = Instant::now();
    invoke(
        lab,
        &format!("Invoke-CsPoolFailOver -PoolFqdn {HOME} -DisasterMode"),
    )
    .await?;
    let failover_s = t.elapsed().as_secs_f64();
    // The operation it started: the newest one.
    let all = invoke(lab, "Get-CsDisasterRecoveryOperation").await?;
    let failover_id = match &all.output {
        cmdlet::Output::Records(records) => records
            .iter()
            .filter_map(|r| r.get("Identity"))
            .filter_map(|v| serde_json::to_value(v).ok())
            .filter_map(|v| v.as_str().and_then(|t| t.parse::<u64>().ok()))
            .max(),
        _ => None,
    }
    .ok_or_else(|| anyhow!("Get-CsDisasterRecoveryOperation lists no operation"))?;
    // Before the lost pool is back: what the failover said at once.
    let id = format!("Get-CsDisasterRecoveryOperation -Identity {failover_id}");
    let at_failover = invoke(lab, &id).await?;
    let reported_at_failover = op_field(&at_failover, "LostChanges")
        .and_then(|v| v.as_i64())
        .unwrap_or(-1);
    let said_at_once = op_field(&at_failover, "LossEstimatedAtOnce")
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let at_backup = count_in(lab, BACKUP, &prefix).await?;
    let dir = lab.dir.clone();
    tokio::task::spawn_blocking(move || lab::start(&dir, HOME)).await??;
    let t = Instant::now();
    invoke(lab, &format!("Invoke-CsPoolFailBack -PoolFqdn {HOME}")).await?;
    let failback_s = t.elapsed().as_secs_f64();
    let after = invoke(lab, &id).await?;
    let reported = op_field(&after, "LostChanges")
        .and_then(|v| v.as_i64())
        .unwrap_or(-1);
    Ok(serde_json::json!({
        "commit": if tag == "synchronous" { "synchronous" } else { "asynchronous" },
        "acknowledged": acked,
        "write_latency_ms": { "p50": pct(&latency, 0.5), "p99": pct(&latency, 0.99) },
        // A write the pool committed and shipped as it was killed, whose answer never
        // reached the writer, is in the copy without being acknowledged.
        "lost_observed": (acked - at_backup).max(0),
        "reported_at_failover": reported_at_failover,
        "said_at_once": said_at_once,
        "lost_reported": reported,
        "failover_s": failover_s,
        "failback_s": failback_s,
    }))
}
