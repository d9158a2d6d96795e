//! The `tandem` command line, except the server: the shell, the lab, the client, the
//! federated partner, the DNS tools and the benchmarks. It reaches servers only through
//! their API (`api`) and SIP (`sipnet`); the `tandem` binary runs `tandem server` with the
//! `server` crate and hands every other command to [`run`].
//!
//! Subcommands follow clap conventions (`--help` everywhere). Exit codes are the same
//! everywhere: 0 success, 1 an operation failed, 2 a usage or parse error.

mod bench;
mod bench_cms;
mod bench_failover;
mod bench_federation;
mod bench_media;
mod bench_peer;
mod bench_signin;
mod bench_users;
mod client;
mod dns_cmd;
mod lab;
mod lab_logs;
mod lab_net;
mod lab_pg;
mod lab_process;
mod lab_wire;
mod media;
mod partner;
mod progress;
mod shell;
mod status;
mod table;
mod topology_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

pub use crate::status::Status;

/// tandem: two Front End pools, paired across sites, failed over and back from a shell.
#[derive(Debug, Parser)]
#[command(name = "tandem", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The management shell: run cmdlets interactively, from -c, or from a runbook.
    Shell(ShellArgs),
    /// Act as one user's client against a lab: sign in, contacts, meetings, content, messages.
    Client {
        /// The lab's folder.
        #[arg(long, default_value = "tandem-lab")]
        lab: PathBuf,
        /// The user's SIP address, e.g. sip:user0001.pool1@contoso.com.
        #[arg(long)]
        user: String,
        /// The password; default: the one in the lab's users.json.
        #[arg(long)]
        password: Option<String>,
        /// Ask this server's registrar first (a client's cached registrar); default: the
        /// Front Ends in the order the lab lists them.
        #[arg(long, value_name = "FQDN")]
        via: Option<String>,
        /// How to speak SIP to the registrar: TLS on its SIP TLS port (default), or plain
        /// TCP or UDP on its SIP port.
        #[arg(long, value_enum, default_value = "tls")]
        transport: client::Transport,
        #[command(subcommand)]
        command: client::ClientCommand,
    },
    /// Work with topology documents.
    #[command(subcommand)]
    Topology(TopologyCommand),
    /// Run one server of a deployment (the lab starts these for you).
    Server(ServerArgs),
    /// Run an A/V relay on its own, as an Edge runs it (TURN over UDP and TCP with the
    /// shared-secret credentials of the secret in DATA_DIR/av-edge/relay-secret), until
    /// SIGTERM or Ctrl-C: for `tandem bench media`, or a relay outside a lab.
    Relay {
        /// Where to listen (UDP and TCP); relayed addresses are allocated on its address.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// The folder holding the relay secret.
        #[arg(long)]
        data_dir: PathBuf,
        /// The realm clients are challenged with.
        #[arg(long)]
        realm: String,
    },
    /// A whole deployment on this machine: start, inspect, break and stop it.
    #[command(subcommand)]
    Lab(LabCommand),
    /// Measure: prints figures, or JSON with --json.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// The lab's DNS server, and dig-style queries to it.
    #[command(subcommand)]
    Dns(dns_cmd::DnsCommand),
    /// The shell completion script for `tandem` (bash, zsh, fish, elvish, powershell), on
    /// standard output: `tandem completions bash > /etc/bash_completion.d/tandem`.
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// The manual page of `tandem` (roff) on standard output, or with --dir one page for
    /// it and each of its commands (`tandem-lab-up.1`, ...): `tandem man | man -l -`.
    Man {
        /// Write every page into this folder instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// A federated partner (fabrikam.com) reaching the lab from outside: SIP or XMPP.
    Partner {
        /// The lab's folder.
        #[arg(long, default_value = "tandem-lab")]
        lab: PathBuf,
        #[command(subcommand)]
        command: partner::PartnerCommand,
    },
}

/// `tandem server`: what the binary hands to the `server` crate.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// This server's FQDN, as the topology names it.
    #[arg(long)]
    pub fqdn: String,
    /// Where the server keeps its local replica of the Central Management store.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// What relative sqlite:// Back End URLs of the topology are relative to.
    #[arg(long, default_value = ".")]
    pub backend_root: PathBuf,
    /// The deployment's admin token.
    #[arg(long, env = "TANDEM_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    /// The deployment's DNS server (address:port); the lab passes its own.
    #[arg(long)]
    pub dns: Option<std::net::SocketAddr>,
    /// The deployment's CA (`https://address:port`), which `Request-CsCertificate` asks;
    /// the lab passes its DNS server's.
    #[arg(long)]
    pub certificate_authority: Option<String>,
    /// Seconds an operation whose runner died waits before the active master's
    /// reconciler carries it on (an operator who resumes it sooner does it himself).
    #[arg(long, default_value_t = 20)]
    pub reconcile_after_secs: u64,
    /// How the server writes its log: readable text, or one JSON object a line for
    /// machines (`tandem lab logs` reads both). A lab's servers take it from the
    /// environment of `tandem lab up`.
    #[arg(long, value_enum, env = "TANDEM_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How a server writes its log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line an event, for people: time, level, span context, message, fields.
    #[default]
    Text,
    /// One JSON object an event, with its spans, for machines.
    Json,
}

/// `tandem bench failover --backend`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum BenchBackends {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Debug, Subcommand)]
enum LabCommand {
    /// Install the Central Management store, start every server, wait until every replica
    /// is up to date. Stays in the foreground (Ctrl-C stops the lab) unless --detach.
    Up {
        /// The topology (TOML); default: the seeds' contoso deployment.
        #[arg(long)]
        topology: Option<PathBuf>,
        /// The lab's folder: databases, replicas, logs, lab.json.
        #[arg(long, default_value = "tandem-lab")]
        dir: PathBuf,
        /// Return once the lab is up, leaving the servers running.
        #[arg(long)]
        detach: bool,
        /// Enable this many users on each Front End pool; passwords go to D/users.json.
        #[arg(long, default_value_t = 0)]
        users: usize,
        /// Registrar failure detection interval for every pool, in seconds (the lab's is short;
        /// the product's default is 120).
        #[arg(long, default_value_t = 5)]
        failure_detection_secs: u32,
        /// Registrar failback detection interval for every pool, in seconds (product default 240).
        #[arg(long, default_value_t = 10)]
        failback_detection_secs: u32,
        /// Seconds a failover whose runner died waits for an operator before the active
        /// master's reconciler carries it on.
        #[arg(long, default_value_t = lab::DEFAULT_RECONCILE_AFTER_SECS)]
        reconcile_after_secs: u64,
        /// Where the Back Ends live: the topology's SQLite files, or a PostgreSQL cluster
        /// per Back End server (and its mirror, a streaming standby), started by the lab.
        #[arg(long, value_enum, default_value_t = lab::Backend::Sqlite)]
        backend: lab::Backend,
        /// Every server and Back End on a host of its own (a network namespace; needs root
        /// and --backend postgres): 127.B.x.y becomes 10.B.x.y, the sites joined by a link
        /// that `tandem lab net` cuts, delays or makes lossy.
        #[arg(long)]
        hosts: bool,
        /// Move every address of the topology into 127.B.x.y (keeping x.y): a second
        /// deployment beside a first one needs a block of its own (its DNS server too).
        #[arg(long, value_name = "B")]
        block: Option<u8>,
        /// Federate with the deployment of the running lab in this folder: this one's
        /// Access Edges get their external certificates from that lab's public CA, each
        /// lab's DNS server forwards the other's zone to the other's (conditional
        /// forwarders), and each deployment allows the other's domain (New-CsAllowedDomain).
        #[arg(long, value_name = "DIR")]
        federate_with: Option<PathBuf>,
    },
    /// The link between the sites of a lab started with --hosts: cut, delay, loss, heal.
    #[command(subcommand)]
    Net(lab_net::NetCommand),
    /// The link between a --hosts lab's sites, as a process (started by `lab up --hosts`).
    #[command(hide = true)]
    Wire {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        block: u8,
        /// How many sites: a TAP device each.
        #[arg(long)]
        sites: usize,
    },
    /// Every server: running or not, its replica's version, which one is the CMS master.
    Status {
        #[arg(long, default_value = "tandem-lab")]
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Kill (SIGKILL, a disaster) every server of a site, a pool, or one server.
    Kill {
        /// A site name, a pool FQDN or a server FQDN.
        target: String,
        #[arg(long, default_value = "tandem-lab")]
        dir: PathBuf,
    },
    /// Freeze (SIGSTOP) every server of a site, a pool, or one server: it answers nothing
    /// and learns nothing until `lab resume`, as a server cut off by the network or stalled
    /// by its host would.
    Pause {
        /// A site name, a pool FQDN or a server FQDN.
        target: String,
        #[arg(long, default_value = "tandem-lab")]
        dir: PathBuf,
    },
    /// Let servers frozen by `lab pause` run again (SIGCONT).
    Resume {
        /// A site name, a pool FQDN or a server FQDN.
        target: String,
        #[arg(long, default_value = "tandem-lab")]
        dir: PathBuf,
    },
    /// Start again the servers of a site, a pool, or one server.
    Start {
        /// A site name, a pool FQDN or a server FQDN.
        target: String,
        #[arg(long, default_value = "tandem-lab")]
        dir: PathBuf,
    },
    /// Stop every server gracefully; the data stays.
    Down {
        #[arg(long, default_value = "tandem-lab")]
        dir: PathBuf,
    },
    /// Every server's log (or one server's), merged in time order, each line with its
    /// server's name.
    Logs {
        /// Only this server's log (an FQDN of the lab).
        server: Option<String>,
        /// Keep reading: print lines as the servers write them, until interrupted.
        #[arg(long)]
        follow: bool,
        /// Only the lines logged inside DR operation N (its `op_id`).
        #[arg(long, value_name = "N")]
        operation: Option<String>,
        #[arg(long, default_value = "tandem-lab")]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Time from a configuration change to every replica up to date.
    Replication {
        /// How many replicas (servers), 2 to 200.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(2..=200))]
        replicas: u32,
        /// How many changes to time.
        #[arg(long, default_value_t = 10)]
        changes: u32,
        #[arg(long)]
        json: bool,
    },
    /// Sign-ins with digest authentication on one Front End: the rate at saturation and
    /// the latency at a fixed offered rate, over UDP, TCP and TLS; with --sipp driven by
    /// SIPp too, and with --peer kamailio the same SIPp load on Kamailio, with the ratio.
    Signin(bench_signin::Options),
    /// Pool failover and failback: command times, time until the active users are signed
    /// in again, and acknowledged writes lost (planned) or lost against reported (disaster).
    Failover {
        /// Users enabled per pool.
        #[arg(long, default_value_t = 1000)]
        users: usize,
        /// Users of the failed-over pool that are signed in and have saved data.
        #[arg(long, default_value_t = 200)]
        active: usize,
        /// Run the disaster again with the pair committing synchronously: write latency and
        /// disaster loss of both modes side by side.
        #[arg(long)]
        synchronous: bool,
        /// The Back Ends: SQLite files, PostgreSQL clusters, or both (a lab of each, one
        /// after the other, figures side by side).
        #[arg(long, value_enum, default_value_t = BenchBackends::Sqlite)]
        backend: BenchBackends,
        /// Run it again on a new lab while every server's /metrics is scraped each second,
        /// and show both runs side by side: what watching the deployment costs it.
        #[arg(long)]
        scrape_metrics: bool,
        #[arg(long)]
        json: bool,
    },
    /// Central Management store failover: planned and disaster, from the command to every
    /// replica up to date under the new master; and the lost pool fenced when it returns.
    CmsFailover {
        /// Planned failovers to time, back and forth between the pools.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=100))]
        rounds: u32,
        #[arg(long)]
        json: bool,
    },
    /// The A/V relay: allocations per second and relayed packets per second; with
    /// --peer coturn, coturn's turnserver measured the same way beside it, and the ratio.
    Media(bench_media::Options),
    /// Message latency across a federation path, on running labs: to a user of another
    /// deployment (SIP federation, counted at the recipient) or to an XMPP user.
    Federation(bench_federation::Options),
    /// Backup Service replication lag under a steady write load.
    Backup {
        /// Users per pool.
        #[arg(long, default_value_t = 1000)]
        users: usize,
        /// Writes per second to users' contact lists.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=20000))]
        writes_per_sec: u32,
        /// How long to write (in each mode).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Run the load again with the pair committing synchronously, and show the write
        /// latency of both modes side by side.
        #[arg(long)]
        synchronous: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
struct ShellArgs {
    /// Run these command lines and exit.
    #[arg(short = 'c', long = "command", value_name = "LINE", conflicts_with_all = ["file", "check"])]
    command: Option<String>,
    /// Run a runbook (a file of command lines); stops at the first failing line.
    #[arg(long, value_name = "RUNBOOK", conflicts_with = "check")]
    file: Option<PathBuf>,
    /// Parse and bind every line of a runbook without running anything.
    #[arg(long, value_name = "RUNBOOK")]
    check: Option<PathBuf>,
    /// Connect to a server of the lab in this folder (default: a Front End of the CMS pool).
    #[arg(long, value_name = "DIR")]
    lab: Option<PathBuf>,
    /// The server to connect to, with --lab.
    #[arg(long, value_name = "FQDN", requires = "lab")]
    server: Option<String>,
    /// Act as this operator, with the token New-CsAdminOperator saved in
    /// DIR/operators/NAME.token (default: the lab administrator, lab.json's token).
    #[arg(long, value_name = "NAME", requires = "lab")]
    operator: Option<String>,
    /// How objects print when the line does not pipe them to a formatter.
    #[arg(long, value_enum, default_value_t = OutputArg::List)]
    output: OutputArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OutputArg {
    List,
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum TopologyCommand {
    /// Validate a topology document: every problem at once, errors apart from warnings.
    Check {
        /// The topology document (TOML).
        file: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Everything tandem creates — the lab's token and users' passwords, every Back End and
/// replica database, file stores, logs — is readable by its owner only (files 0600,
/// folders 0700): the servers it starts inherit the mask.
fn owner_only() {
    use nix::sys::stat::{Mode, umask};
    umask(Mode::S_IRWXG | Mode::S_IRWXO);
}

/// `tandem man`: the page of `tandem` on standard output, or every page into `dir`.
fn manual(dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let cmd = <Cli as clap::CommandFactory>::command();
    match dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page)?;
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), &page);
            Ok(())
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot make the folder {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write the pages into {}", dir.display()))?;
            eprintln!("manual pages written to {}", dir.display());
            Ok(())
        }
    }
}

/// Parses the command line and runs it; `tandem server` is handed to `serve`.
pub fn main(serve: impl FnOnce(ServerArgs) -> Status) -> ExitCode {
    quiet_on_closed_stdout();
    owner_only();
    let cli = Cli::parse();
    let status = match cli.command {
        Command::Shell(args) => {
            let format = match args.output {
                OutputArg::List => cmdlet::OutputFormat::List,
                OutputArg::Table => cmdlet::OutputFormat::Table,
                OutputArg::Json => cmdlet::OutputFormat::Json,
            };
            match &args.lab {
                Some(dir) => {
                    match remote_executor(dir, args.server.as_deref(), args.operator.as_deref()) {
                        Ok(executor) => run_shell(shell::Session::new(executor, format), args),
                        Err(e) => {
                            eprintln!("error: {e:#}");
                            Status::Usage
                        }
                    }
                }
                None => run_shell(shell::Session::new(shell::LocalExecutor, format), args),
            }
        }
        Command::Client {
            lab,
            user,
            password,
            via,
            transport,
            command,
        } => outcome(client::run(
            &lab,
            &user,
            password,
            via.as_deref(),
            transport,
            command,
        )),
        Command::Partner { lab, command } => outcome(partner::run(&lab, command)),
        Command::Completions { shell } => {
            // Made whole first, then written: a reader that stops early (`| head`) is no
            // error of ours.
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "tandem", &mut script);
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), &script);
            Status::Success
        }
        Command::Man { dir } => outcome(manual(dir.as_deref())),
        Command::Dns(command) => {
            if matches!(command, dns_cmd::DnsCommand::Serve { .. }) {
                init_tracing(log_format_from_env());
            }
            outcome(dns_cmd::run(command))
        }
        Command::Server(args) => serve(args),
        Command::Relay {
            listen,
            data_dir,
            realm,
        } => outcome(relay_alone(listen, &data_dir, realm)),
        Command::Lab(command) => outcome(match command {
            LabCommand::Up {
                topology,
                dir,
                detach,
                users,
                failure_detection_secs,
                failback_detection_secs,
                reconcile_after_secs,
                backend,
                hosts,
                block,
                federate_with,
            } => lab::up(lab::UpOptions {
                hosts,
                block,
                federate_with,
                topology,
                dir,
                detach,
                quiet: false,
                users,
                detection_secs: Some((failure_detection_secs, failback_detection_secs)),
                reconcile_after_secs,
                backend,
            }),
            LabCommand::Status { dir, json } => lab::status(&dir, json),
            LabCommand::Kill { target, dir } => lab::kill_servers(&dir, &target),
            LabCommand::Pause { target, dir } => lab::pause_servers(&dir, &target, true),
            LabCommand::Resume { target, dir } => lab::pause_servers(&dir, &target, false),
            LabCommand::Start { target, dir } => lab::start(&dir, &target),
            LabCommand::Down { dir } => lab::down(&dir),
            LabCommand::Logs {
                server,
                follow,
                operation,
                dir,
            } => lab_logs::run(&dir, server.as_deref(), operation.as_deref(), follow),
            LabCommand::Net(command) => lab::net(command),
            LabCommand::Wire { dir, block, sites } => lab_wire::run(&dir, block, sites),
        }),
        Command::Bench(BenchCommand::Replication {
            replicas,
            changes,
            json,
        }) => outcome(bench::replication(
            replicas as usize,
            changes as usize,
            json,
        )),
        Command::Bench(BenchCommand::Signin(options)) => outcome(bench_signin::signin(options)),
        Command::Bench(BenchCommand::Failover {
            users,
            active,
            synchronous,
            backend,
            scrape_metrics,
            json,
        }) => outcome(bench_failover::failover(
            users,
            active,
            synchronous,
            scrape_metrics,
            match backend {
                BenchBackends::Sqlite => &[lab::Backend::Sqlite],
                BenchBackends::Postgres => &[lab::Backend::Postgres],
                BenchBackends::Both => &[lab::Backend::Sqlite, lab::Backend::Postgres],
            },
            json,
        )),
        Command::Bench(BenchCommand::Media(options)) => outcome(bench_media::media(options)),
        Command::Bench(BenchCommand::Federation(options)) => {
            outcome(bench_federation::federation(options))
        }
        Command::Bench(BenchCommand::CmsFailover { rounds, json }) => {
            outcome(bench_cms::cms_failover(rounds as usize, json))
        }
        Command::Bench(BenchCommand::Backup {
            users,
            writes_per_sec,
            seconds,
            synchronous,
            json,
        }) => outcome(bench_users::backup(
            users,
            writes_per_sec,
            seconds,
            synchronous,
            json,
        )),
        Command::Topology(TopologyCommand::Check { file, json }) => {
            topology_cmd::check(&file, json)
        }
    };
    status.into()
}

fn run_shell<E: shell::Executor>(mut session: shell::Session<E>, args: ShellArgs) -> Status {
    if let Some(line) = args.command {
        session.run_source("-c", &line, shell::Mode::Command)
    } else if let Some(path) = args.file {
        session.run_file(&path, shell::Mode::Runbook)
    } else if let Some(path) = args.check {
        session.run_file(&path, shell::Mode::Check)
    } else {
        shell::repl::run(&mut session)
    }
}

/// The shell's connection to a lab server: the one named, or a Front End of the CMS pool.
fn remote_executor(
    dir: &std::path::Path,
    fqdn: Option<&str>,
    operator: Option<&str>,
) -> anyhow::Result<shell::RemoteExecutor> {
    let lab = lab::LabFile::load(dir)?;
    let token = match operator {
        Some(name) => shell::operator_token(dir, name)?,
        None => lab.admin_token.clone(),
    };
    let server = match fqdn {
        Some(f) => lab
            .servers
            .iter()
            .find(|s| s.fqdn.eq_ignore_ascii_case(f))
            .ok_or_else(|| {
                let names: Vec<_> = lab.servers.iter().map(|s| s.fqdn.as_str()).collect();
                anyhow::anyhow!(
                    "{f} is not a server of the lab in {}; choose one of {}",
                    dir.display(),
                    names.join(", ")
                )
            })?,
        None => lab
            .servers
            .iter()
            .find(|s| s.pool.eq_ignore_ascii_case(&lab.cms_pool))
            .ok_or_else(|| {
                anyhow::anyhow!("the lab has no server in the CMS pool {}", lab.cms_pool)
            })?,
    };
    // The hints' examples name this lab's pools, not the documentation's.
    if let Ok(topology) = lab.installed_topology() {
        cmdlet::set_examples(api::records::examples(&topology));
    }
    Ok(shell::RemoteExecutor::new(
        server.base_url(),
        server.fqdn.clone(),
        token,
        dir.display().to_string(),
        &lab.client_tls()?,
    ))
}

/// Logs to standard error in `format`, filtered by `TANDEM_LOG` (default `info`).
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TANDEM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    match format {
        LogFormat::Text => log.init(),
        LogFormat::Json => log.json().with_span_list(true).init(),
    }
}

/// The log format `TANDEM_LOG_FORMAT` names (`json`), text otherwise: for the processes
/// without a `--log-format` of their own (the lab's DNS server).
fn log_format_from_env() -> LogFormat {
    match std::env::var("TANDEM_LOG_FORMAT").as_deref() {
        Ok(f) if f.eq_ignore_ascii_case("json") => LogFormat::Json,
        _ => LogFormat::Text,
    }
}

/// An operation's result as an exit status, with the error printed.
/// `tandem relay`: one relay until SIGTERM or Ctrl-C.
fn relay_alone(
    listen: std::net::SocketAddr,
    data_dir: &std::path::Path,
    realm: String,
) -> anyhow::Result<()> {
    let secret = relay::Secret::load(data_dir).map_err(|e| anyhow::anyhow!(e))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let running = relay::Relay::start(relay::Config {
            listen,
            internal: None,
            relay_ip: listen.ip(),
            realm,
            secret,
            forbidden_peers: Vec::new(),
            limits: relay::Limits::DEFAULT,
            clock: clock::Clock::system(),
        })
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
        println!(
            "relaying on {} (UDP) and {} (TCP)",
            running.udp, running.tcp
        );
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        running.stop().await;
        Ok(())
    })
}

pub fn outcome(result: anyhow::Result<()>) -> Status {
    match result {
        Ok(()) => Status::Success,
        Err(e) => {
            eprintln!("error: {e:#}");
            Status::Failed
        }
    }
}

/// `tandem lab status | head -3` ends quietly once the reader has gone, as Unix tools do,
/// instead of panicking in `println!` (Rust ignores SIGPIPE, and unsafe code to restore it
/// is forbidden here): exit status 141, the shell's code for a closed pipe.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info)
    }));
}
