//! The cmdlets the shell runs by itself, with no deployment: help, formatting, topology
//! validation. Every other cmdlet needs a part of tandem that carries it out; until the
//! shell can reach one, it says which part, what the cmdlet would do, and that nothing
//! changed. It never reports success for work it did not do.

use cmdlet::catalogue::spec::Capability;
use cmdlet::help::{HelpDetail, get_command, get_help};
use cmdlet::{Invocation, Output, Record};
use topology::{Topology, validate};

use super::{Executor, Failure};

#[derive(Debug, Default)]
pub(crate) struct LocalExecutor;

impl Executor for LocalExecutor {
    fn execute(&mut self, inv: &Invocation) -> Result<Output, Failure> {
        match inv.cmdlet.name {
            "Get-Command" => {
                let pattern = inv.text("Name");
                let records = get_command(cmdlet::catalogue(), pattern.as_deref());
                if records.is_empty() {
                    return Err(Failure::new(format!(
                        "no cmdlet matches '{}'",
                        pattern.unwrap_or_default()
                    )));
                }
                Ok(Output::Records(records))
            }
            "Get-Help" => {
                let name = inv.text("Name").unwrap_or_default();
                let detail = if inv.switch("Full") {
                    HelpDetail::Full
                } else if inv.switch("Examples") {
                    HelpDetail::Examples
                } else {
                    HelpDetail::Normal
                };
                get_help(
                    cmdlet::catalogue(),
                    &name,
                    detail,
                    inv.text("Parameter").as_deref(),
                )
                .map_err(Failure::new)
            }
            "Test-CsTopology" => test_topology(inv),
            _ => Err(needs_capability(inv)),
        }
    }
}

fn test_topology(inv: &Invocation) -> Result<Output, Failure> {
    let file = inv.text("FileName").unwrap_or_default();
    let text = std::fs::read_to_string(&file)
        .map_err(|e| Failure::new(format!("cannot read {file}: {e}")))?;
    let topology = Topology::from_toml(&text).map_err(|e| {
        Failure::new(format!(
            "{file} is not a valid topology document: {e}; fix it and run Test-CsTopology -FileName {file} again"
        ))
    })?;
    let report = validate(&topology);
    let mut records = api::records::problems(&report);
    let verdict = if report.is_valid() {
        "valid"
    } else {
        "invalid"
    };
    records.push(
        Record::new()
            .with("Severity", "information")
            .with("Element", file.clone())
            .with("Message", format!("{verdict} ({})", report.summary())),
    );
    if report.is_valid() {
        Ok(Output::Records(records))
    } else {
        Err(Failure {
            message: format!("{file} is not a valid topology ({})", report.summary()),
            output: Some(Output::Records(records)),
        })
    }
}

/// The refusal for a cmdlet this shell cannot carry out: names the cmdlet, what it would
/// do with the arguments given, and what part of tandem it needs.
fn needs_capability(inv: &Invocation) -> Failure {
    let spec = inv.cmdlet;
    debug_assert_ne!(spec.capability, Capability::Shell, "{} is local", spec.name);
    let args = inv.canonical_args();
    let with = if args.is_empty() {
        String::new()
    } else {
        format!(" (with {args})")
    };
    Failure::new(format!(
        "needs a running deployment: start one with `tandem lab up` and run it in `tandem shell --lab <dir>`. \
         What it does: {}{with}. Nothing was changed.",
        spec.synopsis.trim_end_matches('.'),
    ))
}
