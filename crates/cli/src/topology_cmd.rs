//! `tandem topology check FILE`: the validation an operator runs before publishing.

use std::path::Path;

use topology::{Severity, Topology, validate};

use crate::status::Status;

pub(crate) fn check(path: &Path, json: bool) -> Status {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", path.display());
            return Status::Failed;
        }
    };
    let topology = match Topology::from_toml(&text) {
        Ok(t) => t,
        Err(e) => {
            match (e.line, e.column) {
                (Some(l), Some(c)) => eprintln!("error: {}:{l}:{c}: {}", path.display(), e.message),
                _ => eprintln!("error: {}: {}", path.display(), e.message),
            }
            eprintln!(
                "the document is not valid TOML for a topology; fix it and run: tandem topology check {}",
                path.display()
            );
            return Status::Failed;
        }
    };
    let report = validate(&topology);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("reports serialise")
        );
    } else {
        for severity in [Severity::Error, Severity::Warning] {
            for p in report.problems.iter().filter(|p| p.severity == severity) {
                println!("{p}");
            }
        }
        let verdict = if report.is_valid() {
            "valid"
        } else {
            "invalid"
        };
        println!("{}: {verdict} ({})", path.display(), report.summary());
    }
    if report.is_valid() {
        Status::Success
    } else {
        Status::Failed
    }
}
