//! `tandem bench signin --sipp [--peer kamailio]`: the sign-in benchmark driven by SIPp, a
//! load generator that is not ours, against the Front End — and, with `--peer kamailio`,
//! against Kamailio set up as a registrar for the same users, in the same run, on the
//! same machine, so that the two numbers and their ratio come from one measurement.
//!
//! The scenario is `examples/sipp/register.xml` (built into the binary), the users the
//! lab's, written as SIPp's CSV like `examples/sipp/users.sh` does. Several SIPp processes
//! run at once, each from its own loopback address: one SIPp process tops out near
//! 3,000 sign-ins a second on these machines, and the registrar budgets datagrams per
//! source address as it should against a flood. Each sign-in is timed by SIPp itself
//! (`-trace_rtt`, first REGISTER to 200).
//!
//! Kamailio (Debian's `kamailio` and `kamailio-tls-modules`) gets a generated
//! configuration: two UDP and two TCP workers, `auth` with SHA-256 and `qop=auth` as the
//! Front End challenges, the users' passwords in an `htable`, `usrloc` in memory
//! (`db_mode` 0: bindings are not written anywhere, which tandem's are), and TLS with the
//! Front End's own certificate and key. It listens on the Front End's address on other
//! ports, so that SIPp checks the same certificate name for both.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

use crate::bench_users::{Run, Transport};
use crate::lab::{LabFile, LabServer, LabUser};

/// The scenario, as the repository documents it for SIPp users.
const SCENARIO: &str = include_str!("../../../examples/sipp/register.xml");
/// Sign-ins SIPp keeps in flight at saturation, over all its processes (each keeps its
/// share): the same load however many processes carry it.
const SIPP_IN_FLIGHT: usize = 400;

/// A SIPp binary, and whether it speaks TLS.
pub(crate) struct Sipp {
    binary: PathBuf,
    tls: bool,
}

impl Sipp {
    /// `explicit`, else `TANDEM_SIPP_TLS`, else where `.ci/sipp-tls` caches one, else
    /// `sipp` on the PATH (Debian's sip-tester: no TLS).
    pub(crate) fn find(explicit: Option<&Path>) -> anyhow::Result<Sipp> {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|c| c.join("tandem/sipp-tls/bin/sipp"));
        let candidates: Vec<PathBuf> = match explicit {
            Some(p) => vec![p.to_path_buf()],
            None => std::env::var_os("TANDEM_SIPP_TLS")
                .map(PathBuf::from)
                .into_iter()
                .chain(cache)
                .chain([PathBuf::from("sipp")])
                .collect(),
        };
        for binary in candidates {
            // `sipp -v` names the build ("SIPp v3.8.0-TLS-SCTP-PCAP.") and exits non-zero.
            let Ok(out) = Command::new(&binary).arg("-v").output() else {
                continue;
            };
            let version = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            if version.contains("SIPp v") {
                return Ok(Sipp {
                    tls: version.contains("-TLS"),
                    binary,
                });
            }
        }
        bail!(
            "no SIPp found: install Debian's sip-tester (apt-get install sip-tester), or run \
             .ci/sipp-tls for one that speaks TLS, or name one with --sipp-binary"
        )
    }
}

/// Where a registrar under test takes each transport, and the processes whose CPU it
/// spends.
struct Registrar {
    name: &'static str,
    plain: SocketAddr,
    tls: SocketAddr,
    pid: u32,
    /// The peer's process, when the benchmark started it (and so can start it again).
    peer: Option<Kamailio>,
}

impl Registrar {
    /// Whether the benchmark's own peer process has exited, and how (`None`: it runs, or it
    /// is not ours to watch).
    fn peer_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.peer.as_mut()?.child.try_wait().ok().flatten()
    }
}

/// How many times one run starts a peer again after it exited under load.
const PEER_RESTARTS: usize = 2;

/// One SIPp phase against one registrar: saturation, or a fixed rate.
#[derive(Clone, Copy)]
enum Load {
    Saturation { calls: usize },
    Rate { per_second: f64, seconds: f64 },
}

impl Load {
    fn name(self) -> &'static str {
        match self {
            Load::Saturation { .. } => "saturation",
            Load::Rate { .. } => "rate",
        }
    }
}

/// What the SIPp phases measured on one registrar, per transport: the median saturation
/// phase, the fixed-rate phase, and every saturation phase's rate in the order they ran.
struct RegistrarRuns {
    name: &'static str,
    runs: Vec<(Transport, SippRun, SippRun)>,
    round_rates: Vec<Vec<f64>>,
    /// Each time the registrar's process exited during a phase, which was then run again
    /// on a fresh process: what happened, and the end of its log.
    restarts: Vec<String>,
}

/// A SIPp phase's figures, the CPU the registrar spent on it and the CPU SIPp spent: on
/// these two cores they share, a registrar whose answers cost SIPp more completes fewer
/// sign-ins whatever its own cost.
#[derive(Clone)]
struct SippRun {
    run: Run,
    cpu_seconds: f64,
    sipp_cpu_seconds: f64,
    /// Requests SIPp sent again for want of an answer within its timer (500 ms over UDP):
    /// datagrams lost on the way, or dropped by the registrar.
    retransmissions: u64,
}

impl SippRun {
    fn per_sign_in_us(&self, seconds: f64) -> f64 {
        seconds * 1e6 / (self.run.latencies.len().max(1) as f64)
    }

    fn cpu_us_per_sign_in(&self) -> f64 {
        self.per_sign_in_us(self.cpu_seconds)
    }

    fn figures(&self) -> serde_json::Value {
        let mut v = self.run.figures();
        v["registrar_cpu_seconds"] = self.cpu_seconds.into();
        v["registrar_cpu_us_per_sign_in"] = self.cpu_us_per_sign_in().into();
        v["sipp_cpu_us_per_sign_in"] = self.per_sign_in_us(self.sipp_cpu_seconds).into();
        v["sipp_retransmissions"] = self.retransmissions.into();
        v
    }

    fn line(&self) -> String {
        let retransmitted = match self.retransmissions {
            0 => String::new(),
            n => format!(", {n} requests retransmitted"),
        };
        format!(
            "{}, {:.0} µs CPU/sign-in (SIPp {:.0} µs){retransmitted}",
            self.run.line(),
            self.cpu_us_per_sign_in(),
            self.per_sign_in_us(self.sipp_cpu_seconds)
        )
    }

    /// Datagrams a second each of `instances` SIPp processes sent at this run's rate (a
    /// sign-in is two requests).
    fn datagrams_per_source(&self, instances: usize) -> f64 {
        2.0 * self.run.rate() / instances.max(1) as f64
    }
}

/// Everything `--sipp` measured.
pub(crate) struct SippReport {
    instances: usize,
    /// Kamailio's memory manager, when it was measured.
    peer_memory: Option<PeerMemory>,
    rounds: usize,
    registrars: Vec<RegistrarRuns>,
    skipped_tls: bool,
}

impl SippReport {
    pub(crate) fn figures(&self) -> serde_json::Value {
        let mut v = serde_json::json!({ "instances": self.instances, "rounds": self.rounds });
        if let Some(memory) = self.peer_memory {
            v["kamailio_memory_manager"] = memory.name().into();
        }
        for r in &self.registrars {
            v[r.name] = r
                .runs
                .iter()
                .zip(&r.round_rates)
                .map(|((t, sat, fixed), rounds)| {
                    serde_json::json!({
                        "transport": t.as_str(),
                        "saturation": sat.figures(),
                        "saturation_rounds_sign_ins_per_second": rounds,
                        "fixed_rate": fixed.figures(),
                    })
                })
                .collect::<Vec<_>>()
                .into();
            if !r.restarts.is_empty() {
                v[format!("{}_restarts", r.name)] = r.restarts.clone().into();
            }
        }
        if let [tandem, peer] = &self.registrars[..] {
            v["ratio_tandem_to_peer"] = tandem
                .runs
                .iter()
                .zip(&peer.runs)
                .map(|((t, a, _), (_, b, _))| {
                    serde_json::json!({
                        "transport": t.as_str(),
                        "sign_ins_per_second": a.run.rate() / b.run.rate().max(1e-9),
                        "cpu_per_sign_in": a.cpu_us_per_sign_in() / b.cpu_us_per_sign_in().max(1e-9),
                    })
                })
                .collect::<Vec<_>>()
                .into();
        }
        if self.skipped_tls {
            v["tls_skipped"] = "this SIPp is built without TLS".into();
        }
        v
    }

    pub(crate) fn print(&self) {
        let rounds = match self.rounds {
            1 => String::new(),
            n => format!("; saturation: the median of {n} rounds, taken in turn"),
        };
        let memory = match self.peer_memory {
            Some(m) => format!("; Kamailio with its {} memory manager", m.name()),
            None => String::new(),
        };
        println!(
            "SIPp ({} processes, examples/sipp/register.xml{rounds}{memory}):",
            self.instances
        );
        for r in &self.registrars {
            for ((t, sat, fixed), rates) in r.runs.iter().zip(&r.round_rates) {
                let name = t.as_str().to_uppercase();
                println!("  {:<8} {name:<4} saturation  {}", r.name, sat.line());
                if rates.len() > 1 {
                    let each: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
                    println!(
                        "  {:<8} {name:<4}   rounds    {} sign-ins/s",
                        r.name,
                        each.join(", ")
                    );
                }
                println!("  {:<8} {name:<4} fixed rate  {}", r.name, fixed.line());
            }
            for restart in &r.restarts {
                println!("  {restart}");
            }
        }
        // A Front End reads a stranger's datagrams within a budget per address: past it,
        // the benchmark measures that defence and SIPp's retransmission timer.
        let budget = sipnet::budget::PER_SOURCE_RATE;
        for r in self.registrars.iter().filter(|r| r.name == "tandem") {
            for (t, sat, _) in r.runs.iter().filter(|(t, _, _)| *t == Transport::Udp) {
                let each = sat.datagrams_per_source(self.instances);
                if each > budget {
                    println!(
                        "  (over {}: each SIPp process sent {each:.0} datagrams/s, past the {budget:.0} a Front End reads from one address; \
                         run with --sipp-instances {})",
                        t.as_str().to_uppercase(),
                        (2.0 * sat.run.rate() / budget).ceil() as usize + 1
                    );
                }
            }
        }
        if let [tandem, peer] = &self.registrars[..] {
            for ((t, a, _), (_, b, _)) in tandem.runs.iter().zip(&peer.runs) {
                println!(
                    "  {}: tandem completes {:.2}x the sign-ins/s of {} at saturation, spending {:.2}x its CPU per sign-in",
                    t.as_str().to_uppercase(),
                    a.run.rate() / b.run.rate().max(1e-9),
                    peer.name,
                    a.cpu_us_per_sign_in() / b.cpu_us_per_sign_in().max(1e-9),
                );
            }
        }
        if self.skipped_tls {
            println!("  (TLS skipped: this SIPp is built without TLS; .ci/sipp-tls provides one)");
        }
    }
}

/// What to run with SIPp.
pub(crate) struct Plan {
    pub(crate) transports: Vec<Transport>,
    /// How long each phase lasts.
    pub(crate) seconds: f64,
    /// The fixed rate's offered load, or half of the lowest SIPp saturation rate (the
    /// median of the rounds) among the registrars measured, per transport.
    pub(crate) rate: Option<f64>,
    /// SIPp processes at once.
    pub(crate) instances: usize,
    /// Saturation phases per registrar and transport.
    pub(crate) rounds: usize,
    /// Measure Kamailio too.
    pub(crate) kamailio: bool,
    /// Kamailio's memory manager.
    pub(crate) kamailio_memory: PeerMemory,
    /// No progress lines.
    pub(crate) quiet: bool,
}

/// The SIPp phases on the Front End, then (with `--peer`) the same on the peer, and the
/// ratio.
pub(crate) fn compare(
    sipp: &Sipp,
    lab: &LabFile,
    fe: &LabServer,
    users: &[LabUser],
    plan: &Plan,
) -> anyhow::Result<SippReport> {
    let work = tempdir_in(&lab.dir, "sipp")?;
    std::fs::write(work.join("register.xml"), SCENARIO)?;
    let instances = plan.instances.clamp(1, 32);
    let csvs = write_csvs(&work, users, instances)?;
    let domain = cms::directory::realm_of(&users[0].sip_address);
    let ca = lab.dir.join(crate::lab::PKI_DIR).join("ca.pem");
    let transports: Vec<Transport> = plan
        .transports
        .iter()
        .copied()
        .filter(|t| *t != Transport::Tls || sipp.tls)
        .collect();
    let skipped_tls = transports.len() < plan.transports.len();
    let fe_address: IpAddr = fe.address.parse()?;
    let tandem = Registrar {
        name: "tandem",
        plain: SocketAddr::new(fe_address, fe.sip_port),
        tls: SocketAddr::new(fe_address, fe.sip_tls_port),
        pid: fe
            .pid
            .ok_or_else(|| anyhow!("{} has no process", fe.fqdn))?,
        peer: None,
    };
    let ctx = Ctx {
        sipp,
        work: &work,
        csvs: &csvs,
        domain: &domain,
        ca: &ca,
        plan,
    };
    // Kamailio idles until its phases: started before the first, stopped (dropped with
    // its registrar) after the last.
    let mut registrars = vec![tandem];
    if plan.kamailio {
        let k = Kamailio::start(&work, fe_address, fe, users, plan.kamailio_memory)?;
        registrars.push(Registrar {
            name: "kamailio",
            plain: k.plain,
            tls: k.tls,
            pid: k.child.id(),
            peer: Some(k),
        });
    }
    let measured = ctx.measure(&mut registrars, &transports);
    drop(registrars);
    let measured = measured?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(SippReport {
        instances,
        peer_memory: plan.kamailio.then_some(plan.kamailio_memory),
        rounds: plan.rounds.max(1),
        registrars: measured,
        skipped_tls,
    })
}

/// The run whose rate is the median of `runs` (the lower middle one of an even count).
fn median_by_rate(mut runs: Vec<SippRun>) -> Option<SippRun> {
    runs.sort_by(|a, b| a.run.rate().total_cmp(&b.run.rate()));
    let middle = runs.len().checked_sub(1)? / 2;
    Some(runs.swap_remove(middle))
}

/// What every SIPp phase shares.
struct Ctx<'a> {
    sipp: &'a Sipp,
    work: &'a Path,
    csvs: &'a [PathBuf],
    domain: &'a str,
    ca: &'a Path,
    plan: &'a Plan,
}

impl Ctx<'_> {
    /// Over each transport, `rounds` saturation phases per registrar taken in turn (so
    /// that drift in the machine's speed falls on every registrar alike), then one phase
    /// at a fixed rate each. The fixed rate is `--rate`, or half of the slower registrar's
    /// saturation rate on that transport, so that every registrar is offered the same
    /// load, and one it takes.
    fn measure(
        &self,
        registrars: &mut [Registrar],
        transports: &[Transport],
    ) -> anyhow::Result<Vec<RegistrarRuns>> {
        let rounds = self.plan.rounds.max(1);
        let mut measured: Vec<RegistrarRuns> = registrars
            .iter()
            .map(|r| RegistrarRuns {
                name: r.name,
                runs: Vec::new(),
                round_rates: Vec::new(),
                restarts: Vec::new(),
            })
            .collect();
        for &t in transports {
            let mut saturated: Vec<Vec<SippRun>> = vec![Vec::new(); registrars.len()];
            for round in 1..=rounds {
                for ((registrar, runs), out) in
                    registrars.iter_mut().zip(&mut saturated).zip(&mut measured)
                {
                    self.progress(registrar, t, round);
                    // Enough for `--seconds` at 20,000 sign-ins a second (either registrar
                    // reaches 15,000 here): a phase that ends early measures the start
                    // more than the run.
                    let calls = (self.plan.seconds * 20_000.0) as usize;
                    let load = Load::Saturation { calls };
                    runs.push(self.watched_phase(registrar, t, load, &mut out.restarts)?);
                }
            }
            let rates: Vec<Vec<f64>> = saturated
                .iter()
                .map(|runs| runs.iter().map(|r| r.run.rate()).collect())
                .collect();
            let medians = saturated
                .into_iter()
                .map(|runs| median_by_rate(runs).context("a saturation phase ran"))
                .collect::<anyhow::Result<Vec<_>>>()?;
            // Half of what the slower registrar reached with SIPp: a load both take, so
            // that the phase measures latency, not an overload (half of what tandem's own
            // clients reach, as before, was above SIPp's saturation once they got faster).
            let per_second = self.plan.rate.unwrap_or_else(|| {
                medians
                    .iter()
                    .map(|m| m.run.rate())
                    .fold(f64::INFINITY, f64::min)
                    / 2.0
            });
            for (((registrar, sat), rates), out) in registrars
                .iter_mut()
                .zip(medians)
                .zip(rates)
                .zip(&mut measured)
            {
                if !self.plan.quiet {
                    eprintln!(
                        "SIPp against {} over {} at {per_second:.0} sign-ins/s…",
                        registrar.name,
                        t.as_str().to_uppercase()
                    );
                }
                let load = Load::Rate {
                    per_second: per_second.max(1.0),
                    seconds: self.plan.seconds,
                };
                let fixed = self.watched_phase(registrar, t, load, &mut out.restarts)?;
                out.runs.push((t, sat, fixed));
                out.round_rates.push(rates);
            }
        }
        Ok(measured)
    }

    /// A phase on a registrar whose process the benchmark watches: when the peer it
    /// started exited during the phase (Debian's Kamailio 5.6 can, in its TLS module under
    /// load), that is said in the report with the end of its log, a fresh process is
    /// started on the same configuration and the phase runs again, at most
    /// [`PEER_RESTARTS`] times a run. Tandem's own Front End is never restarted: a phase
    /// it fails counts as failed.
    fn watched_phase(
        &self,
        registrar: &mut Registrar,
        t: Transport,
        load: Load,
        restarts: &mut Vec<String>,
    ) -> anyhow::Result<SippRun> {
        loop {
            let run = self.phase(registrar, t, load)?;
            let Some(status) = registrar.peer_exit() else {
                return Ok(run);
            };
            let what = format!(
                "{} exited ({status}) during a {} phase over {}",
                registrar.name,
                load.name(),
                t.as_str().to_uppercase()
            );
            let Some(peer) = registrar
                .peer
                .as_mut()
                .filter(|_| restarts.len() < PEER_RESTARTS)
            else {
                bail!(
                    "{what}, once too often to go on; see its log in {}",
                    self.work.display()
                );
            };
            let log = peer.restart()?;
            registrar.pid = peer.child.id();
            if !self.plan.quiet {
                eprintln!("{what}: started again, the phase runs again");
            }
            restarts.push(format!(
                "{what}; started again and the phase repeated; its log ended: {log}"
            ));
        }
    }

    fn progress(&self, registrar: &Registrar, t: Transport, round: usize) {
        if self.plan.quiet {
            return;
        }
        let rounds = match self.plan.rounds {
            0 | 1 => String::new(),
            n => format!(", round {round} of {n}"),
        };
        eprintln!(
            "SIPp against {} over {}{rounds}…",
            registrar.name,
            t.as_str().to_uppercase()
        );
    }

    /// One phase: the SIPp processes at once, each from its own address; their timings
    /// merged.
    fn phase(&self, registrar: &Registrar, t: Transport, load: Load) -> anyhow::Result<SippRun> {
        let n = self.csvs.len();
        let dest = match t {
            Transport::Tls => registrar.tls,
            _ => registrar.plain,
        };
        let cpu_before = cpu_seconds(registrar.pid);
        let sipp_cpu_before = ended_children_cpu_seconds();
        let mut children = Vec::new();
        for (k, csv) in self.csvs.iter().enumerate() {
            let phase = load.name();
            let dir = self
                .work
                .join(format!("{}-{}-{phase}-{k}", registrar.name, t.as_str()));
            // A new folder each phase: a round's files are not read as the next one's.
            match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
            std::fs::create_dir_all(&dir)?;
            let mut cmd = Command::new(&self.sipp.binary);
            cmd.current_dir(&dir)
                .args(["-sf", "../register.xml", "-inf"])
                .arg(csv)
                .args(["-auth_uri", self.domain])
                .args(["-i", &sipp_source(k).to_string()])
                .args([
                    "-t",
                    match t {
                        Transport::Udp => "u1",
                        Transport::Tcp => "t1",
                        Transport::Tls => "l1",
                    },
                ])
                .args([
                    "-trace_rtt",
                    "-rtt_freq",
                    "1",
                    "-trace_stat",
                    "-stf",
                    "stat.csv",
                ])
                .args(["-fd", "600", "-nostdin", "-timeout", "120s"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            if t == Transport::Tls {
                cmd.arg("-tls_ca").arg(self.ca);
            }
            match load {
                Load::Saturation { calls } => {
                    cmd.args(["-m", &(calls / n).max(1).to_string()]).args([
                        "-r",
                        "100000",
                        "-l",
                        &(SIPP_IN_FLIGHT / n).max(1).to_string(),
                    ]);
                }
                Load::Rate {
                    per_second,
                    seconds,
                } => {
                    // SIPp paces per `-rp` ms: its rate is calls per period.
                    let each = per_second / n as f64;
                    cmd.args([
                        "-m",
                        &((each * seconds).round().max(1.0) as u64).to_string(),
                    ])
                    .args([
                        "-r",
                        &format!("{:.0}", (each * 10.0).max(1.0)),
                        "-rp",
                        "10000",
                    ])
                    .args(["-l", "20000"]);
                }
            }
            cmd.arg(dest.to_string());
            let child = cmd
                .spawn()
                .with_context(|| format!("cannot run {}", self.sipp.binary.display()))?;
            children.push((dir, child));
        }
        let mut rows = Vec::new();
        let mut failed = 0u64;
        let mut retransmissions = 0u64;
        for (dir, child) in children {
            let out = child.wait_with_output()?;
            let stat = std::fs::read_to_string(dir.join("stat.csv")).unwrap_or_default();
            let Some(stat) = parse_stat(&stat) else {
                bail!(
                    "SIPp against {} over {} failed: {}",
                    registrar.name,
                    t.as_str(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            };
            failed += stat.failed;
            retransmissions += stat.retransmissions;
            let file = std::fs::read_dir(&dir)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with("_rtt.csv"));
            if let Some(f) = file {
                // Its times count from the process's start: on one clock with the others.
                rows.extend(
                    parse_rtt(&std::fs::read_to_string(f)?)
                        .into_iter()
                        .map(|(end, ms)| (stat.started_ms + end, ms)),
                );
            }
        }
        let cpu_seconds = cpu_seconds(registrar.pid) - cpu_before;
        let sipp_cpu_seconds = ended_children_cpu_seconds() - sipp_cpu_before;
        // SIPp's own clock: from the first sign-in's start to the last one's 200.
        let first = rows
            .iter()
            .map(|(end, ms)| end - ms)
            .fold(f64::INFINITY, f64::min);
        let last = rows.iter().map(|(end, _)| *end).fold(0.0, f64::max);
        let mut latencies: Vec<f64> = rows.iter().map(|(_, ms)| *ms).collect();
        latencies.sort_by(f64::total_cmp);
        Ok(SippRun {
            run: Run {
                offered: match load {
                    Load::Rate { per_second, .. } => Some(per_second),
                    Load::Saturation { .. } => None,
                },
                failed,
                not_started: 0,
                elapsed: Duration::from_secs_f64(((last - first) / 1000.0).max(1e-3)),
                latencies,
                first_error: None,
            },
            cpu_seconds,
            sipp_cpu_seconds,
            retransmissions,
        })
    }
}

/// The address SIPp process `k` sends from.
fn sipp_source(k: usize) -> IpAddr {
    Ipv4Addr::new(127, 253, 0, k as u8 + 1).into()
}

/// Rows of SIPp's `-trace_rtt` file (`Date_ms;response_time_ms;rtd_no` under a header):
/// when each timed sign-in ended (ms since the process started) and how long it took (ms).
pub(crate) fn parse_rtt(text: &str) -> Vec<(f64, f64)> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(';');
            let end: f64 = f.next()?.trim().parse().ok()?;
            let ms: f64 = f.next()?.trim().parse().ok()?;
            Some((end, ms))
        })
        .collect()
}

/// The last line of SIPp's `-trace_stat` file: when the process started, and the calls
/// it counted as failed.
#[derive(Debug, PartialEq)]
pub(crate) struct Stat {
    /// ms since the epoch.
    pub(crate) started_ms: f64,
    pub(crate) failed: u64,
    /// Requests sent again (0 when the file does not say).
    pub(crate) retransmissions: u64,
}

/// Reads a `-trace_stat` file: `;`-separated columns named in its first line; a date is
/// `YYYY-MM-DD<TAB>hh:mm:ss.micro<TAB>epoch.micro`.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next()?.split(';').collect();
    let last: Vec<&str> = lines.next_back()?.split(';').collect();
    let column = |name: &str| -> Option<&str> {
        let i = header.iter().position(|h| h.trim() == name)?;
        last.get(i).copied()
    };
    let started_ms = column("StartTime")?
        .split('\t')
        .next_back()?
        .trim()
        .parse::<f64>()
        .ok()?
        * 1000.0;
    let failed = column("FailedCall(C)")?.trim().parse().ok()?;
    let retransmissions = column("Retransmissions(C)")
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    Some(Stat {
        started_ms,
        failed,
        retransmissions,
    })
}

/// SIPp's users file for each process: a share of the users each, so that a user signs
/// in from one address and refreshes its binding there (the registrars keep ten a user).
fn write_csvs(work: &Path, users: &[LabUser], n: usize) -> anyhow::Result<Vec<PathBuf>> {
    let n = n.clamp(1, users.len().max(1));
    (0..n)
        .map(|k| {
            let mut text = String::from("SEQUENTIAL\n");
            for u in users.iter().skip(k).step_by(n) {
                text.push_str(&sipp_row(u));
            }
            let path = work.join(format!("users-{k}.csv"));
            std::fs::write(&path, text)?;
            Ok(path)
        })
        .collect()
}

/// One user as `examples/sipp/users.sh` writes it: `user@domain;[authentication …];domain;user`.
pub(crate) fn sipp_row(u: &LabUser) -> String {
    let address = u.sip_address.trim_start_matches("sip:");
    let (name, domain) = address.split_once('@').unwrap_or((address, ""));
    format!(
        "{address};[authentication username={address} password={}];{domain};{name}\n",
        u.password
    )
}

/// CPU seconds (user and system) spent by process `pid` and its children now alive:
/// Kamailio works in child processes, tandem in threads of one. Read from /proc, whose
/// times are in USER_HZ ticks, 100 a second on Linux.
fn cpu_seconds(pid: u32) -> f64 {
    let ticks = |stat: &str| -> Option<(u32, f64)> {
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        let ppid: u32 = f.get(1)?.parse().ok()?;
        let utime: f64 = f.get(11)?.parse().ok()?;
        let stime: f64 = f.get(12)?.parse().ok()?;
        Some((ppid, utime + stime))
    };
    let mut total = 0.0;
    for p in processes() {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        if let Some((ppid, t)) = ticks(&stat)
            && (p == pid || ppid == pid)
        {
            total += t;
        }
    }
    total / 100.0
}

/// CPU seconds (user and system) of this process's children that have ended and been
/// waited for: across a phase, its SIPp processes (they end with it, and nothing else this
/// process starts ends meanwhile).
fn ended_children_cpu_seconds() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    getrusage(UsageWho::RUSAGE_CHILDREN)
        .map_or(0.0, |u| seconds(u.user_time()) + seconds(u.system_time()))
}

/// The ids of the processes running now, from /proc.
fn processes() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
}

/// A fresh folder under `parent`.
fn tempdir_in(parent: &Path, what: &str) -> anyhow::Result<PathBuf> {
    let dir = parent.join(format!("{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Kamailio as a registrar for the lab's users, stopped when dropped.
struct Kamailio {
    child: Child,
    plain: SocketAddr,
    tls: SocketAddr,
    binary: PathBuf,
    /// Its configuration and log.
    dir: PathBuf,
    memory: PeerMemory,
}

/// Kamailio's memory manager for its shared and private memory (`-x`, `-X`): the three
/// Debian's build has. Its default, `qm`, is built with Kamailio's memory debugging
/// (`DBG_SR_MEMORY`) and walks free lists whose length depends on the history of the
/// process: measured here, it spent 22% of the machine in `qm_malloc` in one run and 10% in
/// another, which made Kamailio's figures over TCP and TLS jump between two levels (16.5k
/// and 21k sign-ins a second). `fm` and `tlsf` are its allocators for speed; `tlsf` (O(1))
/// is the default here, so that tandem is compared with Kamailio at its best and steady.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum PeerMemory {
    Tlsf,
    Fm,
    Qm,
}

impl PeerMemory {
    fn name(self) -> &'static str {
        match self {
            PeerMemory::Tlsf => "tlsf",
            PeerMemory::Fm => "fm",
            PeerMemory::Qm => "qm",
        }
    }
}

impl Kamailio {
    fn start(
        work: &Path,
        address: IpAddr,
        fe: &LabServer,
        users: &[LabUser],
        memory: PeerMemory,
    ) -> anyhow::Result<Kamailio> {
        let binary = which("kamailio").ok_or_else(|| {
            anyhow!(
                "kamailio is not installed: apt-get install kamailio kamailio-tls-modules \
                 (Debian's packages), or leave out --peer"
            )
        })?;
        // Debian's packages put the modules under the architecture's library folder.
        let modules = std::fs::read_dir("/usr/lib")?
            .filter_map(Result::ok)
            .map(|e| e.path().join("kamailio/modules"))
            .chain([PathBuf::from("/usr/lib/kamailio/modules")])
            .find(|d| d.join("tls.so").is_file())
            .ok_or_else(|| {
                anyhow!(
                    "kamailio's tls module is not installed: apt-get install kamailio-tls-modules"
                )
            })?;
        let plain = SocketAddr::new(address, free_port(address)?);
        let tls = SocketAddr::new(address, free_port(address)?);
        let tls_dir = fe.data_dir.join("tls");
        let dir = work.join("kamailio");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("tls.cfg"),
            kamailio_tls_cfg(&tls_dir.join("cert.pem"), &tls_dir.join("key.pem")),
        )?;
        std::fs::write(
            dir.join("kamailio.cfg"),
            kamailio_cfg(plain, tls, &dir.join("tls.cfg"), &modules, users),
        )?;
        let child = Kamailio::spawn(&binary, &dir, memory)?;
        let mut k = Kamailio {
            child,
            plain,
            tls,
            binary,
            dir,
            memory,
        };
        k.wait_ready()?;
        Ok(k)
    }

    fn spawn(binary: &Path, dir: &Path, memory: PeerMemory) -> anyhow::Result<Child> {
        let log = std::fs::File::create(dir.join("kamailio.log"))?;
        Ok(Command::new(binary)
            .arg("-f")
            .arg(dir.join("kamailio.cfg"))
            .arg("-Y")
            .arg(dir)
            .args(["-DD", "-E", "-m", "256", "-M", "64"])
            .args(["-x", memory.name(), "-X", memory.name()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?)
    }

    /// Ready once it answers OPTIONS (the registrars' own health probe).
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let address = self.plain.ip();
        let log = self.dir.join("kamailio.log");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (endpoint, _incoming) =
            rt.block_on(sipnet::Endpoint::bind(SocketAddr::new(address, 0)))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let from = address.to_string();
        while !rt.block_on(sipnet::probe(
            &endpoint,
            self.plain,
            &from,
            Duration::from_millis(500),
        )) {
            if let Some(status) = self.child.try_wait()? {
                bail!("kamailio exited ({status}) at start: see {}", log.display());
            }
            if Instant::now() > deadline {
                bail!(
                    "kamailio did not answer OPTIONS on {}: see {}",
                    self.plain,
                    log.display()
                );
            }
        }
        Ok(())
    }

    /// Starts an exited Kamailio again on the same configuration (its ports are its own
    /// again once it is gone): the old log is kept beside as `kamailio.log.N`, and its
    /// last lines are returned for the report.
    fn restart(&mut self) -> anyhow::Result<String> {
        self.stop_workers();
        let log = self.dir.join("kamailio.log");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(3).collect();
        let tail = tail.into_iter().rev().collect::<Vec<_>>().join(" | ");
        let mut n = 1;
        while self.dir.join(format!("kamailio.log.{n}")).exists() {
            n += 1;
        }
        std::fs::rename(&log, self.dir.join(format!("kamailio.log.{n}")))?;
        self.child = Kamailio::spawn(&self.binary, &self.dir, self.memory)?;
        self.wait_ready()?;
        Ok(tail)
    }

    /// Stops what is left of an exited Kamailio's workers: orphans that may still hold
    /// its ports, found by the configuration file on their command line (their parent is
    /// gone, so they are not its children any more).
    fn stop_workers(&self) {
        let cfg = self.dir.join("kamailio.cfg");
        let cfg = cfg.as_os_str().as_encoded_bytes();
        for p in processes() {
            let Ok(cmdline) = std::fs::read(format!("/proc/{p}/cmdline")) else {
                continue;
            };
            if cmdline.split(|b| *b == 0).any(|arg| arg == cfg) {
                let pid = nix::unistd::Pid::from_raw(p as i32);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SIGTERM: the main process stops its workers.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// A port free for both UDP and TCP on `address`.
fn free_port(address: IpAddr) -> anyhow::Result<u16> {
    for _ in 0..100 {
        let tcp = std::net::TcpListener::bind(SocketAddr::new(address, 0))?;
        let port = tcp.local_addr()?.port();
        if std::net::UdpSocket::bind(SocketAddr::new(address, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port on {address}")
}

/// Kamailio's TLS settings: the Front End's certificate and key, no client certificate.
fn kamailio_tls_cfg(cert: &Path, key: &Path) -> String {
    format!(
        "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n\
         certificate = {}\nprivate_key = {}\n\n[client:default]\nverify_certificate = no\n",
        cert.display(),
        key.display()
    )
}

/// Kamailio as a registrar with digest for `users`, as close to the Front End's work as
/// its modules allow: challenge with SHA-256 and qop=auth, check the password, save the
/// binding in memory.
pub(crate) fn kamailio_cfg(
    plain: SocketAddr,
    tls: SocketAddr,
    tls_cfg: &Path,
    modules: &Path,
    users: &[LabUser],
) -> String {
    let mut passwords = String::new();
    for u in users {
        let address = u.sip_address.trim_start_matches("sip:");
        passwords.push_str(&format!(
            "    $sht(pw=>{address}) = \"{}\";\n",
            u.password.replace('\\', "\\\\").replace('"', "\\\"")
        ));
    }
    let ip = plain.ip();
    format!(
        r#"#!KAMAILIO
# Generated by `tandem bench signin --peer kamailio`: a registrar with digest for the
# lab's users, beside the Front End, for the same SIPp scenario.
debug=1
log_stderror=yes
children=2
tcp_children=2
auto_aliases=no
enable_tls=yes
listen=udp:{ip}:{pport}
listen=tcp:{ip}:{pport}
listen=tls:{ip}:{tport}
mpath="{modules}/"

loadmodule "kex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "htable.so"
loadmodule "tls.so"

modparam("usrloc", "db_mode", 0)
modparam("registrar", "max_contacts", 10)
modparam("registrar", "min_expires", 60)
modparam("auth", "algorithm", "SHA-256")
modparam("auth", "nonce_count", 1)
modparam("auth", "qop", "auth")
modparam("htable", "htable", "pw=>size=14;")
modparam("tls", "config", "{tls_cfg}")

event_route[htable:mod-init] {{
{passwords}}}

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (is_method("OPTIONS")) {{
        sl_send_reply("200", "OK");
        exit;
    }}
    if (!is_method("REGISTER")) {{
        sl_send_reply("405", "Method Not Allowed");
        exit;
    }}
    # No credentials yet: the challenge at once (pv_www_authenticate would log an error a
    # REGISTER for the password of a user it cannot name, a cost tandem does not pay).
    if (!is_present_hf("Authorization")) {{
        www_challenge("$td", "1");
        exit;
    }}
    if (!pv_www_authenticate("$td", "$sht(pw=>$aU)", "0")) {{
        www_challenge("$td", "1");
        exit;
    }}
    if (!save("location")) {{
        sl_reply_error();
    }}
    exit;
}}
"#,
        pport = plain.port(),
        tport = tls.port(),
        tls_cfg = tls_cfg.display(),
        modules = modules.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_rows_are_read_and_the_header_skipped() {
        let text = "Date_ms;response_time_ms;rtd_no\n1733400000123.456;1.250;signin\n1733400000124;2;signin\n";
        assert_eq!(
            parse_rtt(text),
            [(1_733_400_000_123.456, 1.25), (1_733_400_000_124.0, 2.0)]
        );
    }

    #[test]
    fn the_stat_file_gives_the_start_and_the_failures() {
        let text = "StartTime;LastResetTime;CurrentTime;SuccessfulCall(C);FailedCall(C);Retransmissions(C)\n\
                    2026-12-05\t13:31:41.186083\t1796477501.186083;x;y;20;0;0\n\
                    2026-12-05\t13:31:41.186083\t1796477501.186083;x;y;18;2;7\n";
        let stat = parse_stat(text).unwrap();
        assert!(
            (stat.started_ms - 1_796_477_501_186.083).abs() < 0.01,
            "{stat:?}"
        );
        assert_eq!(stat.failed, 2);
        assert_eq!(stat.retransmissions, 7);
        // An older SIPp's file without the column: none counted.
        let older = "StartTime;FailedCall(C)\n2026-12-05\t13:31:41.1\t1796477501.1;1\n";
        assert_eq!(parse_stat(older).unwrap().retransmissions, 0);
        assert_eq!(parse_stat("StartTime;FailedCall(C)\n"), None);
    }

    #[test]
    fn kamailio_gets_every_user_and_listens_where_it_is_told() {
        let users = [LabUser {
            sip_address: "sip:ann@fabrikam.com".into(),
            password: "se\"cret".into(),
            home_pool: "red.fabrikam.com".into(),
        }];
        let cfg = kamailio_cfg(
            "127.9.1.11:15060".parse().unwrap(),
            "127.9.1.11:15061".parse().unwrap(),
            Path::new("/x/tls.cfg"),
            Path::new("/usr/lib/kamailio/modules"),
            &users,
        );
        for line in [
            "listen=udp:127.9.1.11:15060",
            "listen=tcp:127.9.1.11:15060",
            "listen=tls:127.9.1.11:15061",
            "mpath=\"/usr/lib/kamailio/modules/\"",
            "modparam(\"tls\", \"config\", \"/x/tls.cfg\")",
            // A quote in a password is escaped, not the string's end.
            "$sht(pw=>ann@fabrikam.com) = \"se\\\"cret\";",
            // A REGISTER without credentials is challenged before any password lookup.
            "if (!is_present_hf(\"Authorization\")) {",
        ] {
            assert!(cfg.contains(line), "{line} not in:\n{cfg}");
        }
    }

    #[test]
    fn the_cpu_of_children_counts_once_they_end() {
        let before = ended_children_cpu_seconds();
        // A child that spins for a while, then is waited for, as SIPp is.
        let status = Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(status.success());
        let spent = ended_children_cpu_seconds() - before;
        assert!(spent > 0.05, "the child's CPU was not counted: {spent} s");
    }

    #[test]
    fn the_median_round_is_the_middle_rate_and_the_lower_middle_of_an_even_count() {
        let run = |sign_ins: usize| SippRun {
            run: Run {
                offered: None,
                failed: 0,
                not_started: 0,
                elapsed: Duration::from_secs(1),
                latencies: vec![1.0; sign_ins],
                first_error: None,
            },
            cpu_seconds: 0.0,
            sipp_cpu_seconds: 0.0,
            retransmissions: 0,
        };
        let rate = |r: Option<SippRun>| r.map(|r| r.run.rate());
        assert_eq!(rate(median_by_rate(vec![])), None);
        assert_eq!(rate(median_by_rate(vec![run(7)])), Some(7.0));
        assert_eq!(
            rate(median_by_rate(vec![run(30), run(10), run(20)])),
            Some(20.0)
        );
        assert_eq!(
            rate(median_by_rate(vec![run(40), run(10), run(30), run(20)])),
            Some(20.0)
        );
    }

    #[test]
    fn a_user_row_is_what_users_sh_writes() {
        let u = LabUser {
            sip_address: "sip:user0001.pool1@fabrikam.com".into(),
            password: "pw".into(),
            home_pool: "pool1.fabrikam.com".into(),
        };
        assert_eq!(
            sipp_row(&u),
            "user0001.pool1@fabrikam.com;[authentication username=user0001.pool1@fabrikam.com password=pw];fabrikam.com;user0001.pool1\n"
        );
    }
}
