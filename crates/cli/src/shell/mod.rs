//! The management shell: reads command lines, binds them, runs them, prints the results.
//!
//! A session parses and binds a whole input (a `-c` line or a runbook) before running
//! any of it, so a typo on line 40 of a runbook is found before line 1 fails a pool over.
//! Running is delegated to an [`Executor`]; today the [`LocalExecutor`] runs the cmdlets
//! that need no deployment and refuses the others, naming what they would do.

mod diagnostics;
mod local;
mod remote;
pub(crate) mod repl;

use std::io::Write;
use std::path::Path;

use cmdlet::{BoundStatement, BoundValue, Formatter, Invocation, Output, OutputFormat};

pub(crate) use local::LocalExecutor;
pub(crate) use remote::{RemoteExecutor, operator_token, request};

use crate::status::Status;

/// Why a cmdlet did not do what it was asked.
#[derive(Debug)]
pub(crate) struct Failure {
    /// One or more sentences naming the cause and the command that fixes it.
    pub(crate) message: String,
    /// Output produced before the failure (a validation report, say), printed first.
    pub(crate) output: Option<Output>,
}

impl Failure {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            output: None,
        }
    }
}

/// Runs bound cmdlets.
pub(crate) trait Executor {
    fn execute(&mut self, invocation: &Invocation) -> Result<Output, Failure>;
}

/// How an input is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `tandem shell -c`: run every statement, stop at the first failure.
    Command,
    /// `tandem shell --file`: the same, naming the failing line.
    Runbook,
    /// `tandem shell --check`: parse and bind only.
    Check,
    /// A line typed at the prompt.
    Interactive,
}

pub(crate) struct Session<E> {
    executor: E,
    default_format: OutputFormat,
}

impl<E: Executor> Session<E> {
    pub(crate) fn new(executor: E, default_format: OutputFormat) -> Self {
        Session {
            executor,
            default_format,
        }
    }

    pub(crate) fn run_file(&mut self, path: &Path, mode: Mode) -> Status {
        match std::fs::read_to_string(path) {
            Ok(src) => self.run_source(&path.display().to_string(), &src, mode),
            Err(e) => {
                eprintln!("error: cannot read runbook {}: {e}", path.display());
                Status::Usage
            }
        }
    }

    /// Parses, binds and (unless checking) runs a source text. `name` is how errors
    /// refer to it: a file name, or `-c`.
    pub(crate) fn run_source(&mut self, name: &str, src: &str, mode: Mode) -> Status {
        let statements = match cmdlet::parse_and_bind(src) {
            Ok(s) => s,
            Err(errors) => {
                for e in &errors {
                    eprint!("{}", diagnostics::render(name, src, e));
                }
                if mode == Mode::Check || errors.len() > 1 {
                    eprintln!(
                        "{name}: {} problem{}; nothing was run",
                        errors.len(),
                        if errors.len() == 1 { "" } else { "s" }
                    );
                }
                return Status::Usage;
            }
        };
        if mode == Mode::Check {
            let mut out = std::io::stdout().lock();
            for s in &statements {
                let _ = writeln!(out, "{:>5}  {}", s.line, describe(s));
            }
            let _ = writeln!(
                out,
                "{name}: {} statement{} parse and bind; nothing was run",
                statements.len(),
                if statements.len() == 1 { "" } else { "s" }
            );
            return Status::Success;
        }
        let mut status = Status::Success;
        for statement in &statements {
            if let Err(failure) = self.run_statement(statement) {
                let cmdlet = statement.invocation.cmdlet.name;
                match mode {
                    Mode::Runbook => eprintln!(
                        "{name}:{}: {cmdlet} failed: {}",
                        statement.line, failure.message
                    ),
                    _ => eprintln!("{cmdlet}: {}", failure.message),
                }
                status = Status::Failed;
                if !continues_after_failure(&statement.invocation) {
                    if mode == Mode::Runbook {
                        eprintln!(
                            "{name}: stopped at line {}; later lines were not run",
                            statement.line
                        );
                    }
                    break;
                }
            }
        }
        status
    }

    fn run_statement(&mut self, statement: &BoundStatement) -> Result<(), Failure> {
        let result = self.executor.execute(&statement.invocation);
        let (output, failure) = match result {
            Ok(output) => (Some(output), None),
            Err(mut f) => (f.output.take(), Some(f)),
        };
        if let Some(output) = output {
            print!("{}", self.format(&output, statement.formatter.as_ref()));
        }
        match failure {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    fn format(&self, output: &Output, formatter: Option<&Formatter>) -> String {
        match output {
            Output::None => String::new(),
            // A message ends its line, so that whatever is printed next starts on its own.
            Output::Text(text) if !text.is_empty() && !text.ends_with('\n') => format!("{text}\n"),
            Output::Text(text) => text.clone(),
            Output::Records(records) => match formatter {
                Some(Formatter::List { properties }) => {
                    cmdlet::render(records, OutputFormat::List, properties.as_deref(), false)
                }
                Some(Formatter::Table { properties }) => {
                    cmdlet::render(records, OutputFormat::Table, properties.as_deref(), false)
                }
                Some(Formatter::Json { compress }) => {
                    cmdlet::render(records, OutputFormat::Json, None, *compress)
                }
                None => cmdlet::render(records, self.default_format, None, false),
            },
        }
    }
}

/// `-ErrorAction Continue|SilentlyContinue|Ignore` lets a runbook go on past this line.
fn continues_after_failure(invocation: &Invocation) -> bool {
    matches!(
        invocation.get("ErrorAction"),
        Some(BoundValue::Enum(a)) if a != "Stop"
    )
}

/// The statement as the binder understood it, for `--check`.
fn describe(statement: &BoundStatement) -> String {
    let mut line = statement.invocation.canonical_line();
    match &statement.formatter {
        Some(Formatter::List { .. }) => line.push_str(" | Format-List"),
        Some(Formatter::Table { .. }) => line.push_str(" | Format-Table"),
        Some(Formatter::Json { .. }) => line.push_str(" | ConvertTo-Json"),
        None => {}
    }
    line
}
