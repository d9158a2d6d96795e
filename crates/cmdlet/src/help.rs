//! `Get-Help` and `Get-Command`, generated from the catalogue.
//!
//! The help page follows PowerShell's layout (NAME, SYNOPSIS, SYNTAX, DESCRIPTION,
//! PARAMETERS, EXAMPLES) so an operator who knows the original finds things where they
//! expect them; unlike PowerShell's default view, the short form already lists every
//! parameter with one line, because that is what an operator at a console during an
//! outage needs.

use crate::catalogue::spec::{Capability, ParamSpec, ParamType};
use crate::catalogue::{ALL_SETS, Catalogue, Entry};
use crate::output::{Output, Record};
use crate::value::type_name;

/// Which parts of the help page to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelpDetail {
    Normal,
    Full,
    Examples,
}

/// The syntax lines of a cmdlet, one per parameter set.
pub fn syntax_lines(entry: &Entry) -> Vec<String> {
    syntax_tokens(entry).iter().map(|t| t.join(" ")).collect()
}

/// Each parameter set's syntax as tokens (`-PoolFqdn <Fqdn>`, `[-Force]`), so wrapping
/// never splits a parameter from its type.
fn syntax_tokens(entry: &Entry) -> Vec<Vec<String>> {
    entry
        .parameter_sets()
        .into_iter()
        .map(|set| {
            let mut tokens = vec![entry.spec.name.to_string()];
            let mut params: Vec<&ParamSpec> = entry
                .params_in(set)
                .filter(|p| !entry.is_common(p) || is_state_param(p))
                .collect();
            // Positional first (by position), then mandatory, then the rest, as PowerShell.
            params.sort_by_key(|p| (p.position.is_none(), p.position, !p.mandatory));
            for p in params {
                let value = if p.ty == ParamType::Switch {
                    String::new()
                } else {
                    format!(" <{}>", type_name(p.ty))
                };
                let name = if p.position.is_some() {
                    format!("[-{}]", p.name)
                } else {
                    format!("-{}", p.name)
                };
                let body = format!("{name}{value}");
                tokens.push(if p.mandatory {
                    body
                } else {
                    format!("[{body}]")
                });
            }
            tokens.push("[<CommonParameters>]".to_string());
            tokens
        })
        .collect()
}

/// Joins tokens into indented lines of at most 96 columns, continuation lines indented
/// further.
fn wrap_tokens(tokens: &[String], by: usize) -> String {
    let mut out = String::new();
    let mut line = " ".repeat(by);
    let mut first_on_line = true;
    for token in tokens {
        if !first_on_line && line.len() + 1 + token.len() > 96 {
            out.push_str(line.trim_end());
            out.push('\n');
            line = " ".repeat(by + 4);
            first_on_line = true;
        }
        if !first_on_line {
            line.push(' ');
        }
        line.push_str(token);
        first_on_line = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

fn is_state_param(p: &ParamSpec) -> bool {
    crate::catalogue::STATE_CHANGE_PARAMS
        .iter()
        .any(|s| std::ptr::eq(s, p))
}

/// The help page of a cmdlet.
pub fn help_page(entry: &Entry, detail: HelpDetail) -> String {
    let spec = entry.spec;
    let mut out = String::new();
    let section = |out: &mut String, title: &str| {
        out.push('\n');
        out.push_str(title);
        out.push('\n');
    };
    section(&mut out, "NAME");
    out.push_str(&format!("    {}\n", spec.name));
    if !spec.aliases.is_empty() {
        out.push_str(&format!("    (also: {})\n", spec.aliases.join(", ")));
    }
    section(&mut out, "SYNOPSIS");
    out.push_str(&indent(spec.synopsis, 4));
    if detail == HelpDetail::Examples {
        examples(&mut out, entry);
        return out;
    }
    section(&mut out, "SYNTAX");
    for (i, line) in syntax_tokens(entry).iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&wrap_tokens(line, 4));
    }
    if !spec.description.is_empty() {
        section(&mut out, "DESCRIPTION");
        out.push_str(&indent(spec.description, 4));
    }
    if spec.capability != Capability::Shell {
        out.push_str(&indent(
            &format!("Carried out by: {}.", spec.capability.describe()),
            4,
        ));
    }
    section(&mut out, "PARAMETERS");
    for p in entry
        .params
        .iter()
        .filter(|p| !entry.is_common(p) || is_state_param(p))
    {
        let value = if p.ty == ParamType::Switch {
            String::new()
        } else {
            format!(" <{}>", type_name(p.ty))
        };
        out.push_str(&format!("    -{}{}\n", p.name, value));
        out.push_str(&indent(p.help, 8));
        if let ParamType::Enum(values) = p.ty {
            out.push_str(&indent(&format!("Values: {}", values.join(", ")), 8));
        }
        if detail == HelpDetail::Full {
            let sets: Vec<&str> = if p.sets.is_empty() {
                vec!["(All)"]
            } else {
                p.sets.to_vec()
            };
            out.push_str(&format!(
                "\n        Required?                    {}\n        Position?                    {}\n        Aliases                      {}\n        Parameter set name           {}\n",
                if p.mandatory { "true" } else { "false" },
                p.position.map_or("named".to_string(), |n| n.to_string()),
                if p.aliases.is_empty() { "None".to_string() } else { p.aliases.join(", ") },
                sets.join(", "),
            ));
        }
        out.push('\n');
    }
    let common: Vec<String> = entry
        .params
        .iter()
        .filter(|p| entry.is_common(p) && !is_state_param(p))
        .map(|p| p.name.to_string())
        .collect();
    out.push_str("    <CommonParameters>\n");
    out.push_str(&indent(
        &format!(
            "This cmdlet supports the common parameters: {}.",
            common.join(", ")
        ),
        8,
    ));
    if !spec.outputs.is_empty() {
        section(&mut out, "OUTPUTS");
        out.push_str(&indent(&spec.outputs.join(", "), 4));
    }
    if detail == HelpDetail::Full || !spec.examples.is_empty() {
        examples(&mut out, entry);
    }
    if detail != HelpDetail::Full {
        section(&mut out, "REMARKS");
        out.push_str(&indent(
            &format!(
                "For parameter sets, aliases and positions, type: Get-Help {} -Full",
                spec.name
            ),
            4,
        ));
    }
    out
}

fn examples(out: &mut String, entry: &Entry) {
    if entry.spec.examples.is_empty() {
        return;
    }
    out.push_str("\nEXAMPLES\n");
    for (i, (line, what)) in entry.spec.examples.iter().enumerate() {
        out.push_str(&format!("    ---------- Example {} ----------\n", i + 1));
        out.push_str(&format!("    PS> {line}\n"));
        out.push_str(&indent(what, 4));
        out.push('\n');
    }
}

/// Indents every line of a paragraph, wrapping at 96 columns.
fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    let mut out = String::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            if !line.is_empty() && by + line.len() + 1 + word.len() > 96 {
                out.push_str(&format!("{pad}{line}\n"));
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        out.push_str(&format!("{pad}{line}\n"));
    }
    out
}

/// `Get-Command [-Name pattern]`: records of the matching cmdlets. Patterns use `*` and
/// `?` wildcards, case-insensitively.
pub fn get_command(catalogue: &Catalogue, pattern: Option<&str>) -> Vec<Record> {
    catalogue
        .entries()
        .iter()
        .filter(|e| {
            pattern.is_none_or(|p| {
                wildcard_match(p, e.spec.name)
                    || e.spec.aliases.iter().any(|a| wildcard_match(p, a))
            })
        })
        .map(|e| {
            Record::new()
                .with("CommandType", "Cmdlet")
                .with("Name", e.spec.name)
                .with("Capability", e.spec.capability.describe())
                .with("Synopsis", e.spec.synopsis)
        })
        .collect()
}

/// `Get-Help <name> [-Full|-Examples] [-Parameter p]`.
pub fn get_help(
    catalogue: &Catalogue,
    name: &str,
    detail: HelpDetail,
    parameter: Option<&str>,
) -> Result<Output, String> {
    if name.contains('*') || name.contains('?') {
        let matches = get_command(catalogue, Some(name));
        if matches.is_empty() {
            return Err(format!("no cmdlet matches '{name}'"));
        }
        return Ok(Output::Records(matches));
    }
    let Some(entry) = catalogue.find(name) else {
        let near = catalogue.suggest(name);
        return Err(if near.is_empty() {
            format!(
                "no help for '{name}': it is not a cmdlet tandem knows (Get-Command lists them)"
            )
        } else {
            format!("no help for '{name}'; did you mean {}?", near.join(" or "))
        });
    };
    if let Some(pattern) = parameter {
        let params: Vec<&&ParamSpec> = entry
            .params
            .iter()
            .filter(|p| wildcard_match(pattern, p.name))
            .collect();
        if params.is_empty() {
            return Err(format!(
                "{} has no parameter matching '{pattern}'",
                entry.spec.name
            ));
        }
        let mut out = String::new();
        for p in params {
            out.push_str(&format!("\n-{} <{}>\n", p.name, type_name(p.ty)));
            out.push_str(&indent(p.help, 4));
            out.push_str(&format!(
                "    Required? {}  Position? {}  Aliases: {}  Sets: {}\n",
                p.mandatory,
                p.position.map_or("named".to_string(), |n| n.to_string()),
                if p.aliases.is_empty() {
                    "none".to_string()
                } else {
                    p.aliases.join(", ")
                },
                if p.sets.is_empty() {
                    ALL_SETS.to_string()
                } else {
                    p.sets.join(", ")
                },
            ));
        }
        return Ok(Output::Text(out));
    }
    Ok(Output::Text(help_page(entry, detail)))
}

/// Case-insensitive glob with `*` and `?`. A pattern without wildcards matches whole names.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let n: Vec<char> = name.to_lowercase().chars().collect();
    // Iterative matcher with backtracking on the last `*`.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::catalogue;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*failover*", "Invoke-CsPoolFailOver"));
        assert!(wildcard_match("get-cs?ser", "Get-CsUser"));
        assert!(!wildcard_match("Get-CsUser", "Get-CsUserPoolInfo"));
        assert!(wildcard_match("*", ""));
    }

    #[test]
    fn pool_failover_help_lists_the_reference_parameters() {
        let Output::Text(page) = get_help(
            catalogue(),
            "Invoke-CsPoolFailOver",
            HelpDetail::Normal,
            None,
        )
        .unwrap() else {
            panic!("help is text")
        };
        for p in [
            "PoolFqdn",
            "Confirm",
            "DisasterMode",
            "FlushStorageService",
            "Force",
            "WaitTime",
            "WhatIf",
            "DatabaseCommandTimeoutInSeconds",
            "ServicesStopDelayMins",
            "SkipDataVerification",
            "<CommonParameters>",
        ] {
            assert!(
                page.contains(&format!("    -{p}")) || page.contains(&format!("    {p}")),
                "{p} missing:\n{page}"
            );
        }
    }

    #[test]
    fn full_help_shows_positions_and_sets() {
        let Output::Text(page) =
            get_help(catalogue(), "Set-CsSite", HelpDetail::Full, None).unwrap()
        else {
            panic!()
        };
        assert!(page.contains("Position?                    0"), "{page}");
    }

    #[test]
    fn unknown_cmdlet_help_suggests() {
        let err = get_help(catalogue(), "Get-CsUsr", HelpDetail::Normal, None).unwrap_err();
        assert!(err.contains("Get-CsUser"), "{err}");
    }

    #[test]
    fn get_command_filters() {
        let all = get_command(catalogue(), None);
        assert!(all.len() > 50);
        let some = get_command(catalogue(), Some("invoke-*poolfail*"));
        let names: Vec<_> = some
            .iter()
            .map(|r| r.get("Name").unwrap().display())
            .collect();
        assert_eq!(names, ["Invoke-CsPoolFailOver", "Invoke-CsPoolFailBack"]);
    }
}
