//! `tandem`: the command line of the tandem disaster-recovery system.
//!
//! Subcommands follow clap conventions (`--help` everywhere). Exit codes are the same
//! everywhere: 0 success, 1 an operation failed, 2 a usage or parse error.

#![forbid(unsafe_code)]

mod shell;
mod topology_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

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
    /// Work with topology documents.
    #[command(subcommand)]
    Topology(TopologyCommand),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let status = match cli.command {
        Command::Shell(args) => {
            let format = match args.output {
                OutputArg::List => cmdlet::OutputFormat::List,
                OutputArg::Table => cmdlet::OutputFormat::Table,
                OutputArg::Json => cmdlet::OutputFormat::Json,
            };
            let mut session = shell::Session::new(shell::LocalExecutor, format);
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
        Command::Topology(TopologyCommand::Check { file, json }) => {
            topology_cmd::check(&file, json)
        }
    };
    status.into()
}

/// The outcome of a command, as an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 0
    Success,
    /// 1: an operation (cmdlet, check) failed.
    Failed,
    /// 2: the input could not be understood.
    Usage,
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> Self {
        ExitCode::from(match s {
            Status::Success => 0,
            Status::Failed => 1,
            Status::Usage => 2,
        })
    }
}
