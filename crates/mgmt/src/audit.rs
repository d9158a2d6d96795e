//! The audit log: every cmdlet that changes state, run or refused, with the operator who
//! ran it. Each server appends to its own `audit.jsonl` (in its data folder, readable by
//! its owner only) the calls it ran or refused, and logs the same line; a call forwarded
//! to another server is recorded where it runs. `Get-CsAdminAuditLog` merges the logs of
//! every server that answers.
//!
//! Kept per server, not in the Central Management store, so that a change made while the
//! store is down (a CMS failover, a disaster pool failover) is recorded like any other.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use cmdlet::{Output, Record};
use serde::{Deserialize, Serialize};

use crate::operators::Operator;

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub when_ms: i64,
    pub operator: String,
    pub roles: String,
    pub cmdlet: String,
    pub line: String,
    /// `Completed`, or `Refused (status): reason`.
    pub outcome: String,
    /// The server that ran (or refused) the call.
    pub computer: String,
    /// The server the operator reached, when it forwarded the call here.
    #[serde(default)]
    pub reached_via: Option<String>,
}

impl AuditEntry {
    /// The entry as `Get-CsAdminAuditLog` prints it.
    pub fn record(&self) -> Record {
        Record::new()
            .with("When", clock::format_timestamp(self.when_ms))
            .with("Operator", self.operator.as_str())
            .with("Roles", self.roles.as_str())
            .with("Cmdlet", self.cmdlet.as_str())
            .with("CommandLine", self.line.as_str())
            .with("Outcome", self.outcome.as_str())
            .with("ComputerName", self.computer.as_str())
            .with("ReachedVia", self.reached_via.clone())
    }
}

/// The log's file in a server's data folder.
pub fn file(data_dir: &Path) -> PathBuf {
    data_dir.join("audit.jsonl")
}

/// The outcome of a call, in words.
pub fn outcome<T>(reply: &Result<T, crate::Error>) -> String {
    match reply {
        Ok(_) => "Completed".to_string(),
        Err(e) => format!("Refused ({}): {}", e.status().as_u16(), e.message()),
    }
}

/// Appends an entry (and logs it). A log that cannot be written is said in the server's
/// log and does not fail the call, whose change is already made.
pub fn append(data_dir: &Path, entry: &AuditEntry) {
    tracing::info!(
        operator = %entry.operator,
        cmdlet = %entry.cmdlet,
        outcome = %entry.outcome,
        line = %entry.line,
        "audit"
    );
    let path = file(data_dir);
    let line = serde_json::to_string(entry).expect("audit entries serialise") + "\n";
    let written = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        tracing::error!(path = %path.display(), error = %e, "the audit log could not be written");
    }
}

/// Every entry of this server's log, oldest first; `operator` keeps only that operator's.
pub fn read(data_dir: &Path, operator: Option<&str>) -> Vec<AuditEntry> {
    let text = std::fs::read_to_string(file(data_dir)).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<AuditEntry>(l).ok())
        .filter(|e| operator.is_none_or(|o| e.operator.eq_ignore_ascii_case(o)))
        .collect()
}

/// An entry for `operator`'s call of `line` on `computer`.
pub fn entry(
    when_ms: i64,
    operator: &Operator,
    inv: &cmdlet::Invocation,
    computer: &str,
    reached_via: Option<String>,
    outcome: String,
) -> AuditEntry {
    AuditEntry {
        when_ms,
        operator: operator.name.clone(),
        roles: operator.roles_text(),
        cmdlet: inv.cmdlet.name.to_string(),
        line: inv.canonical_line(),
        outcome,
        computer: computer.to_string(),
        reached_via,
    }
}

/// Records of several servers' logs merged, oldest first.
pub fn merged(mut outputs: Vec<Record>) -> Output {
    outputs.sort_by(|a, b| {
        let when = |r: &Record| r.get("When").map(|f| f.display()).unwrap_or_default();
        when(a).cmp(&when(b))
    });
    Output::Records(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_appended_read_back_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let operator = Operator::lab_administrator();
        let inv = cmdlet::parse_and_bind("Stop-CsWindowsService -Name RTCSRV")
            .unwrap()
            .remove(0)
            .invocation;
        for n in 0..2 {
            append(
                dir.path(),
                &entry(n, &operator, &inv, "fe1", None, "Completed".into()),
            );
        }
        let read_back = read(dir.path(), Some("ADMINISTRATOR"));
        assert_eq!(read_back.len(), 2);
        assert_eq!(read_back[1].when_ms, 1);
        assert!(read(dir.path(), Some("kim")).is_empty());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
