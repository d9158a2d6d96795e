//! The interactive shell: a prompt with history and tab completion of cmdlet names,
//! parameter names and parameter values from fixed lists.
//!
//! A line ending in a backtick or `|` continues on the next, as in PowerShell. `exit`
//! leaves; Ctrl-C clears the line; Ctrl-D leaves.

use std::path::PathBuf;

use cmdlet::catalogue::spec::ParamType;
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Editor, Helper};

use super::{Executor, Mode, Session};
use crate::status::Status;

/// How many lines the history file keeps.
const HISTORY_LINES: usize = 2_000;

struct ShellHelper;

impl Helper for ShellHelper {}
impl Highlighter for ShellHelper {}
impl Hinter for ShellHelper {
    type Hint = String;
}

impl Validator for ShellHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        let input = ctx.input().trim_end();
        Ok(if input.ends_with('`') || input.ends_with('|') {
            ValidationResult::Incomplete
        } else {
            ValidationResult::Valid(None)
        })
    }
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        Ok(complete(line, pos))
    }
}

fn pair(text: &str) -> Pair {
    Pair {
        display: text.to_string(),
        replacement: text.to_string(),
    }
}

/// Completion candidates for the word before `pos`, and where that word starts.
pub(crate) fn complete(line: &str, pos: usize) -> (usize, Vec<Pair>) {
    let before = &line[..pos];
    let word_start = before
        .rfind(|c: char| c.is_whitespace() || matches!(c, '|' | ';' | ','))
        .map_or(0, |i| {
            i + before[i..].chars().next().map_or(1, char::len_utf8)
        });
    let word = &before[word_start..];
    // The command this word belongs to: the first word after the last `|` or `;`.
    let command_start = before[..word_start].rfind(['|', ';']).map_or(0, |i| i + 1);
    let words: Vec<&str> = before[command_start..word_start]
        .split_whitespace()
        .collect();
    let catalogue = cmdlet::catalogue();
    if words.is_empty() {
        let lower = word.to_ascii_lowercase();
        let names = catalogue
            .entries()
            .iter()
            .map(|e| e.spec.name)
            .filter(|n| n.to_ascii_lowercase().starts_with(&lower))
            .map(pair)
            .collect();
        return (word_start, names);
    }
    let Some(entry) = catalogue.find(words[0]) else {
        return (word_start, Vec::new());
    };
    if let Some(typed) = word.strip_prefix('-') {
        let lower = typed.to_ascii_lowercase();
        let params = entry
            .params
            .iter()
            .filter(|p| p.name.to_ascii_lowercase().starts_with(&lower))
            .map(|p| pair(&format!("-{}", p.name)))
            .collect();
        return (word_start, params);
    }
    // A value: complete from the previous parameter's list of values.
    if let Some(prev) = words.last().and_then(|w| w.strip_prefix('-'))
        && let Some(param) = entry.param_exact(prev)
        && let ParamType::Enum(values) = param.ty
    {
        let lower = word.to_ascii_lowercase();
        let values = values
            .iter()
            .filter(|v| v.to_ascii_lowercase().starts_with(&lower))
            .map(|v| pair(v))
            .collect();
        return (word_start, values);
    }
    (word_start, Vec::new())
}

fn history_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(base.join("tandem").join("shell_history"))
}

/// Runs the prompt until `exit` or end of input.
pub(crate) fn run<E: Executor>(session: &mut Session<E>) -> Status {
    let config = rustyline::Config::builder()
        .max_history_size(HISTORY_LINES)
        .map(|b| {
            b.auto_add_history(true)
                .completion_type(rustyline::CompletionType::List)
                .build()
        });
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot configure the prompt: {e}");
            return Status::Failed;
        }
    };
    let mut editor: Editor<ShellHelper, rustyline::history::DefaultHistory> =
        match Editor::with_config(config) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("error: cannot start the prompt: {e}");
                return Status::Failed;
            }
        };
    editor.set_helper(Some(ShellHelper));
    let history = history_path();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    println!(
        "tandem management shell. Get-Command lists the cmdlets, Get-Help <cmdlet> explains one; exit leaves."
    );
    loop {
        match editor.readline("PS tandem> ") {
            Ok(line) => {
                let trimmed = line.trim();
                if trimmed.eq_ignore_ascii_case("exit") || trimmed.eq_ignore_ascii_case("quit") {
                    break;
                }
                if trimmed.is_empty() {
                    continue;
                }
                session.run_source("line", &line, Mode::Interactive);
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("error: cannot read the line: {e}");
                return Status::Failed;
            }
        }
    }
    if let Some(path) = &history {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = editor.save_history(path);
    }
    Status::Success
}

#[cfg(test)]
mod tests {
    use super::complete;

    fn names(line: &str) -> Vec<String> {
        complete(line, line.len())
            .1
            .into_iter()
            .map(|p| p.replacement)
            .collect()
    }

    #[test]
    fn completes_cmdlet_names() {
        assert_eq!(
            names("invoke-cspoolf"),
            ["Invoke-CsPoolFailOver", "Invoke-CsPoolFailBack"]
        );
        assert_eq!(names("invoke-cspoolfailo"), ["Invoke-CsPoolFailOver"]);
        assert_eq!(names("Get-CsUser | format-t"), ["Format-Table"]);
    }

    #[test]
    fn completes_parameter_names() {
        assert_eq!(names("Invoke-CsPoolFailOver -Disa"), ["-DisasterMode"]);
        let all = names("Invoke-CsPoolFailOver -");
        assert!(all.contains(&"-PoolFqdn".to_string()) && all.contains(&"-WhatIf".to_string()));
    }

    #[test]
    fn completes_enum_values() {
        assert_eq!(
            names("Invoke-CsStorageServiceFlush -FlushType f"),
            ["FullFlush"]
        );
    }

    #[test]
    fn unknown_cmdlet_completes_nothing() {
        assert!(names("Frobnicate -").is_empty());
    }
}
