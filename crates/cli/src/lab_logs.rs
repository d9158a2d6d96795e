//! `tandem lab logs [SERVER] [--follow] [--operation N]`: the lab's servers' logs merged in
//! time order, each line after its server's name — what an operator reads to follow one
//! failover across the servers that took part in it.
//!
//! Every server logs one event a line, text or JSON (`--log-format`), each beginning with
//! (or holding, as `timestamp`) an RFC 3339 UTC time with a fixed number of digits, so the
//! times sort as text. A line without a time (a panic's backtrace) keeps the time of the
//! line before it. A DR operation's events carry its `op_id` in their span context
//! (`engine::runner`), which `--operation` selects.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;

use crate::lab::LabFile;

/// How often `--follow` looks for new lines.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// One log line, with its server and time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    at: String,
    server: String,
    text: String,
}

/// The time an event line begins with (text) or holds (JSON), if any.
fn timestamp(line: &str) -> Option<String> {
    if line.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        return v.get("timestamp")?.as_str().map(str::to_string);
    }
    let first = line.split_whitespace().next()?;
    let b = first.as_bytes();
    let looks = b.len() >= 20 && b[4] == b'-' && b[10] == b'T' && first.ends_with('Z');
    looks.then(|| first.to_string())
}

/// Whether `line` was logged inside DR operation `id`: its span context names `op_id=id`
/// (text) or `"op_id":"id"` (JSON), and not a longer number that begins with it.
fn in_operation(line: &str, id: &str) -> bool {
    for key in ["op_id=", "\"op_id\":\""] {
        let mut rest = line;
        while let Some(at) = rest.find(key) {
            let after = &rest[at + key.len()..];
            if let Some(tail) = after.strip_prefix(id)
                && !tail.starts_with(|c: char| c.is_ascii_digit())
            {
                return true;
            }
            rest = after;
        }
    }
    false
}

/// The complete lines of `text` from `server`, each with its time (or the one before it,
/// starting from `last`); returns the time of the last.
fn lines_of(server: &str, text: &str, last: &mut String) -> Vec<Line> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            if let Some(at) = timestamp(l) {
                *last = at;
            }
            Line {
                at: last.clone(),
                server: server.to_string(),
                text: l.to_string(),
            }
        })
        .collect()
}

/// `lines` in time order (stable: a server's own lines keep their order).
fn merged(mut lines: Vec<Line>) -> Vec<Line> {
    lines.sort_by(|a, b| a.at.cmp(&b.at));
    lines
}

/// One server's log file and how far it has been read.
struct Follow {
    server: String,
    path: PathBuf,
    read: u64,
    last: String,
    /// The start of a line not yet ended when last read.
    partial: String,
}

impl Follow {
    /// The lines written since the last read (complete lines only).
    fn new_lines(&mut self) -> anyhow::Result<Vec<Line>> {
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let len = file.metadata()?.len();
        if len < self.read {
            // Started again with a new file.
            self.read = 0;
            self.partial.clear();
        }
        file.seek(SeekFrom::Start(self.read))?;
        let mut bytes = Vec::new();
        file.take(len - self.read).read_to_end(&mut bytes)?;
        self.read = len;
        self.partial.push_str(&String::from_utf8_lossy(&bytes));
        let Some(end) = self.partial.rfind('\n') else {
            return Ok(Vec::new());
        };
        let complete: String = self.partial.drain(..=end).collect();
        Ok(lines_of(&self.server, &complete, &mut self.last))
    }
}

pub(crate) fn run(
    dir: &Path,
    server: Option<&str>,
    operation: Option<&str>,
    follow: bool,
) -> anyhow::Result<()> {
    let lab = LabFile::load(dir)?;
    let mut logs: Vec<Follow> = lab
        .servers
        .iter()
        .filter(|s| server.is_none_or(|f| s.fqdn.eq_ignore_ascii_case(f)))
        .map(|s| Follow {
            server: s.fqdn.clone(),
            path: s.log.clone(),
            read: 0,
            last: String::new(),
            partial: String::new(),
        })
        .collect();
    if logs.is_empty() {
        bail!(
            "{} is not a server of the lab in {}; `tandem lab status --dir {}` lists them",
            server.unwrap_or_default(),
            dir.display(),
            dir.display()
        );
    }
    let width = logs.iter().map(|l| l.server.len()).max().unwrap_or(0);
    let print = |lines: Vec<Line>| {
        for l in merged(lines) {
            if operation.is_none_or(|id| in_operation(&l.text, id)) {
                println!("{:<width$} {}", l.server, l.text);
            }
        }
    };
    let mut first = Vec::new();
    for log in &mut logs {
        first.extend(log.new_lines()?);
    }
    print(first);
    if !follow {
        return Ok(());
    }
    // Until interrupted (Ctrl-C ends the process).
    loop {
        std::thread::sleep(FOLLOW_EVERY);
        let mut more = Vec::new();
        for log in &mut logs {
            more.extend(log.new_lines()?);
        }
        print(more);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_lines_give_their_time() {
        assert_eq!(
            timestamp("2026-12-06T00:52:55.169345Z  INFO dnsserver: started").as_deref(),
            Some("2026-12-06T00:52:55.169345Z")
        );
        assert_eq!(
            timestamp(r#"{"timestamp":"2026-12-06T00:52:56.000001Z","level":"INFO"}"#).as_deref(),
            Some("2026-12-06T00:52:56.000001Z")
        );
        assert_eq!(timestamp("   0: std::backtrace"), None);
        assert_eq!(timestamp("{not json"), None);
    }

    #[test]
    fn servers_lines_merge_in_time_order_and_untimed_lines_stay_with_theirs() {
        let mut a_last = String::new();
        let mut b_last = String::new();
        let a = lines_of(
            "fe1",
            "2026-12-06T00:00:01.000000Z INFO one\n   at backtrace\n2026-12-06T00:00:03.000000Z INFO three\n",
            &mut a_last,
        );
        let b = lines_of("fe2", "2026-12-06T00:00:02.000000Z INFO two\n", &mut b_last);
        let order: Vec<String> = merged([a, b].concat())
            .into_iter()
            .map(|l| format!("{} {}", l.server, l.text.split_whitespace().last().unwrap()))
            .collect();
        assert_eq!(order, ["fe1 one", "fe1 backtrace", "fe2 two", "fe1 three"]);
    }

    #[test]
    fn an_operation_is_selected_by_its_id_not_a_longer_one() {
        let text = "2026-12-06T00:00:01Z INFO operation{kind=pool_failover op_id=12 runner=fe1}: step ended";
        assert!(in_operation(text, "12"));
        assert!(!in_operation(text, "1"));
        let json = r#"{"timestamp":"x","spans":[{"name":"operation","op_id":"7"}]}"#;
        assert!(in_operation(json, "7"));
        assert!(!in_operation(json, "70"));
        assert!(!in_operation("no operation here", "7"));
    }
}
