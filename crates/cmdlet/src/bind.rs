//! The binder: from a parsed command to a cmdlet invocation with typed arguments.
//!
//! It follows PowerShell's rules where operators rely on them: names are case-insensitive;
//! a parameter may be shortened to any unambiguous prefix; a switch takes a value only
//! with a colon (`-Force:$false`); unnamed arguments fill positional parameters in order;
//! the parameter set is the one the given parameters leave possible. Every error points
//! at the text that caused it and, where it can, suggests the fix.

use serde::Serialize;

use crate::catalogue::spec::{CmdletSpec, ParamSpec, ParamType};
use crate::catalogue::{ALL_SETS, Catalogue, Entry};
use crate::diagnostic::{Diagnostic, bind_error, suggest};
use crate::syntax::{Command, Element, Span, Spanned, Statement, Value};
use crate::value::{BoundValue, convert, type_name};

/// A cmdlet call, ready to run.
#[derive(Debug, Clone, Serialize)]
pub struct Invocation {
    #[serde(serialize_with = "serialize_cmdlet_name")]
    pub cmdlet: &'static CmdletSpec,
    /// The parameter set the arguments selected.
    pub parameter_set: &'static str,
    /// Bound arguments, in the order the cmdlet declares its parameters.
    pub args: Vec<(&'static str, BoundValue)>,
    #[serde(skip)]
    pub span: Span,
}

fn serialize_cmdlet_name<S: serde::Serializer>(
    spec: &&'static CmdletSpec,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(spec.name)
}

impl Invocation {
    /// The bound value of a parameter, by canonical name.
    pub fn get(&self, name: &str) -> Option<&BoundValue> {
        self.args
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Whether a switch was given (and not turned off with `:$false`).
    pub fn switch(&self, name: &str) -> bool {
        matches!(
            self.get(name),
            Some(BoundValue::Switch(true) | BoundValue::Bool(true))
        )
    }

    /// A text-like argument (text, FQDN, SIP URI, enum) as a string.
    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name).map(BoundValue::to_text)
    }

    /// The line as the binder understood it, with canonical names: what `-WhatIf` and
    /// error messages echo back.
    pub fn canonical_line(&self) -> String {
        let args = self.canonical_args();
        if args.is_empty() {
            self.cmdlet.name.to_string()
        } else {
            format!("{} {args}", self.cmdlet.name)
        }
    }

    /// The bound arguments alone, with canonical names: `-PoolFqdn pool1.contoso.com -Force`.
    pub fn canonical_args(&self) -> String {
        let mut line = String::new();
        for (name, value) in &self.args {
            match value {
                BoundValue::Switch(true) => line.push_str(&format!(" -{name}")),
                BoundValue::Switch(false) => line.push_str(&format!(" -{name}:$false")),
                other => {
                    let text = other.to_text();
                    if text.contains(' ') || text.is_empty() {
                        line.push_str(&format!(" -{name} '{}'", text.replace('\'', "''")));
                    } else {
                        line.push_str(&format!(" -{name} {text}"));
                    }
                }
            }
        }
        line.trim_start().to_string()
    }
}

/// How records leave a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Formatter {
    /// `Format-List [-Property a,b]`
    List { properties: Option<Vec<String>> },
    /// `Format-Table [-Property a,b]`
    Table { properties: Option<Vec<String>> },
    /// `ConvertTo-Json [-Compress]`
    Json { compress: bool },
}

/// A bound statement: one cmdlet and, optionally, how to format what it returns.
#[derive(Debug, Clone, Serialize)]
pub struct BoundStatement {
    pub invocation: Invocation,
    pub formatter: Option<Formatter>,
    /// 1-based line in the script.
    pub line: usize,
    #[serde(skip)]
    pub span: Span,
}

const FORMATTERS: &[&str] = &["Format-List", "Format-Table", "ConvertTo-Json"];

fn is_formatter(spec: &CmdletSpec) -> bool {
    FORMATTERS.iter().any(|f| f.eq_ignore_ascii_case(spec.name))
}

/// Binds a statement: its first command, and a formatter after `|` if there is one.
pub fn bind_statement(
    catalogue: &Catalogue,
    statement: &Statement,
) -> Result<BoundStatement, Diagnostic> {
    let first = &statement.pipeline[0];
    let invocation = bind_command(catalogue, first)?;
    let mut formatter = None;
    for command in &statement.pipeline[1..] {
        let bound = bind_command(catalogue, command)?;
        if !is_formatter(bound.cmdlet) {
            return Err(bind_error(
                format!("{} cannot take input from a pipeline", bound.cmdlet.name),
                command.name.span,
            )
            .with_help("only Format-List, Format-Table and ConvertTo-Json may follow a `|`"));
        }
        if formatter.is_some() {
            return Err(bind_error(
                "only one formatter may end a pipeline",
                command.span,
            ));
        }
        let properties = match bound.get("Property") {
            Some(BoundValue::Array(items)) => {
                Some(items.iter().map(BoundValue::to_text).collect::<Vec<_>>())
            }
            Some(other) => Some(vec![other.to_text()]),
            None => None,
        };
        formatter = Some(match bound.cmdlet.name {
            "Format-List" => Formatter::List { properties },
            "Format-Table" => Formatter::Table { properties },
            _ => Formatter::Json {
                compress: bound.switch("Compress"),
            },
        });
    }
    if is_formatter(invocation.cmdlet) {
        return Err(bind_error(
            format!(
                "{} formats what another cmdlet returns",
                invocation.cmdlet.name
            ),
            first.name.span,
        )
        .with_help(format!(
            "put it after a `|`, for example: Get-CsPoolFailoverState | {}",
            invocation.cmdlet.name
        )));
    }
    Ok(BoundStatement {
        invocation,
        formatter,
        line: statement.line,
        span: statement.span,
    })
}

/// One argument bound to a parameter, with where it came from.
struct Bound {
    param: &'static ParamSpec,
    value: BoundValue,
    span: Span,
}

/// Binds one command to its cmdlet.
pub fn bind_command(catalogue: &Catalogue, command: &Command) -> Result<Invocation, Diagnostic> {
    let Some(entry) = catalogue.find(&command.name.node) else {
        let mut err = bind_error(
            format!("'{}' is not a cmdlet tandem knows", command.name.node),
            command.name.span,
        );
        let near = catalogue.suggest(&command.name.node);
        err = if near.is_empty() {
            err.with_help("Get-Command lists every cmdlet")
        } else {
            err.with_help(format!("did you mean {}?", near.join(" or ")))
        };
        return Err(err);
    };

    let mut named: Vec<Bound> = Vec::new();
    let mut positional: Vec<&Spanned<Value>> = Vec::new();
    let mut elements = command.elements.iter().peekable();
    while let Some(element) = elements.next() {
        match element {
            Element::Parameter {
                name,
                colon_value,
                span,
            } => {
                let param = resolve_param(entry, name)?;
                if let Some(previous) = named.iter().find(|b| std::ptr::eq(b.param, param)) {
                    return Err(bind_error(
                        format!("-{} is given more than once", param.name),
                        *span,
                    )
                    .with_help(format!(
                        "it was already given at column {}",
                        previous.span.start + 1
                    )));
                }
                let (value, value_span) = match (param.ty, colon_value) {
                    (ParamType::Switch, None) => (BoundValue::Switch(true), *span),
                    (_, Some(v)) => (convert_for(param, v)?, v.span),
                    (_, None) => match elements.peek() {
                        Some(Element::Argument(v)) => {
                            elements.next();
                            (convert_for(param, v)?, v.span)
                        }
                        _ => {
                            return Err(bind_error(
                                format!(
                                    "-{} needs a value of type {}",
                                    param.name,
                                    type_name(param.ty)
                                ),
                                *span,
                            )
                            .with_help(example_value(param)));
                        }
                    },
                };
                named.push(Bound {
                    param,
                    value,
                    span: span.join(value_span),
                });
            }
            Element::Argument(v) => {
                if entry.spec.slash_switches
                    && let Value::Text {
                        text,
                        quoted: false,
                    } = &v.node
                    && let Some(switch) = text.strip_prefix('/')
                {
                    let name = Spanned {
                        node: switch.to_string(),
                        span: Span::new(v.span.start + 1, v.span.end),
                    };
                    let param = resolve_param(entry, &name)?;
                    if param.ty != ParamType::Switch {
                        return Err(bind_error(
                            format!("/{} is not a switch of {}", param.name, entry.spec.name),
                            v.span,
                        ));
                    }
                    named.push(Bound {
                        param,
                        value: BoundValue::Switch(true),
                        span: v.span,
                    });
                } else {
                    positional.push(v);
                }
            }
        }
    }

    let sets = entry.parameter_sets();
    // The sets that contain every parameter given by name.
    let candidates: Vec<&'static str> = sets
        .iter()
        .copied()
        .filter(|set| named.iter().all(|b| in_set(b.param, set)))
        .collect();
    if candidates.is_empty() {
        return Err(conflict_error(entry, &named));
    }

    // Try each candidate set: bind positionals, check mandatory parameters.
    let mut outcomes: Vec<(&'static str, Result<Vec<Bound>, Diagnostic>)> = Vec::new();
    for set in candidates {
        outcomes.push((
            set,
            complete_in_set(entry, set, &named, &positional, command),
        ));
    }
    let viable: Vec<&'static str> = outcomes
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(s, _)| *s)
        .collect();
    let chosen = match viable.as_slice() {
        [] => None,
        [only] => Some(*only),
        several => match entry.spec.default_set {
            Some(d) if several.contains(&d) => Some(d),
            // Several sets accept the same arguments and none is the default: the bound
            // values are identical in each, so take the first declared.
            _ => Some(several[0]),
        },
    };
    let (set, extra) = match chosen {
        Some(set) => {
            let idx = outcomes.iter().position(|(s, _)| *s == set).unwrap_or(0);
            let (set, result) = outcomes.swap_remove(idx);
            (set, result.unwrap_or_default())
        }
        None => {
            // Report the failure of the set the operator most likely meant.
            let idx = entry
                .spec
                .default_set
                .and_then(|d| outcomes.iter().position(|(s, _)| *s == d))
                .unwrap_or(0);
            let (_, result) = outcomes.swap_remove(idx);
            return Err(result.err().unwrap_or_else(|| {
                bind_error("the arguments fit no parameter set", command.span)
            }));
        }
    };

    let mut all: Vec<Bound> = named;
    all.extend(extra);
    let mut args: Vec<(&'static str, BoundValue)> = Vec::new();
    for p in &entry.params {
        if let Some(b) = all.iter().find(|b| std::ptr::eq(b.param, *p)) {
            args.push((p.name, b.value.clone()));
        }
    }
    Ok(Invocation {
        cmdlet: entry.spec,
        parameter_set: set,
        args,
        span: command.span,
    })
}

fn in_set(param: &ParamSpec, set: &str) -> bool {
    set == ALL_SETS || param.sets.is_empty() || param.sets.contains(&set)
}

/// Binds positional arguments within one set and checks its mandatory parameters.
/// Returns the positionally bound arguments.
fn complete_in_set(
    entry: &Entry,
    set: &'static str,
    named: &[Bound],
    positional: &[&Spanned<Value>],
    command: &Command,
) -> Result<Vec<Bound>, Diagnostic> {
    let mut open: Vec<&'static ParamSpec> = entry
        .params_in(set)
        .filter(|p| p.position.is_some() && !named.iter().any(|b| std::ptr::eq(b.param, *p)))
        .collect();
    open.sort_by_key(|p| p.position);
    let mut bound = Vec::new();
    for (i, value) in positional.iter().enumerate() {
        let Some(param) = open.get(i) else {
            return Err(unexpected_argument(entry, command, value));
        };
        bound.push(Bound {
            param,
            value: convert_for(param, value)?,
            span: value.span,
        });
    }
    let missing: Vec<&str> = entry
        .params_in(set)
        .filter(|p| p.mandatory)
        .filter(|p| {
            !named.iter().any(|b| std::ptr::eq(b.param, *p))
                && !bound.iter().any(|b| std::ptr::eq(b.param, *p))
        })
        .map(|p| p.name)
        .collect();
    if let Some(first) = missing.first() {
        let param = entry.param_exact(first).expect("listed from the entry");
        let list = missing
            .iter()
            .map(|m| format!("-{m}"))
            .collect::<Vec<_>>()
            .join(", ");
        let noun = if missing.len() == 1 {
            "parameter"
        } else {
            "parameters"
        };
        let at = Span::new(command.span.end, command.span.end);
        return Err(
            bind_error(format!("{} needs the {noun} {list}", entry.spec.name), at).with_help(
                format!("for example: -{} {}", param.name, example_text(param)),
            ),
        );
    }
    Ok(bound)
}

fn unexpected_argument(entry: &Entry, command: &Command, value: &Spanned<Value>) -> Diagnostic {
    let mut err = bind_error(
        format!("{} does not take '{}' here", entry.spec.name, value.node),
        value.span,
    );
    // A `-Switch $false` is the classic mistake: suggest the colon form.
    let previous = command
        .elements
        .iter()
        .take_while(|e| e.span().start < value.span.start)
        .last();
    if let Some(Element::Parameter {
        name,
        colon_value: None,
        ..
    }) = previous
        && let Ok(param) = resolve_param(entry, name)
        && param.ty == ParamType::Switch
    {
        return err.with_help(format!(
            "-{} is a switch; give it a value with a colon: -{}:{}",
            param.name, param.name, value.node
        ));
    }
    let positional: Vec<String> = entry
        .params
        .iter()
        .filter(|p| p.position.is_some())
        .map(|p| format!("-{}", p.name))
        .collect();
    err = if positional.is_empty() {
        err.with_help(format!(
            "{} takes no value by position; name the parameter it is for",
            entry.spec.name
        ))
    } else {
        err.with_help(format!(
            "values without a parameter name go to {} in that order; name the parameter it is for",
            positional.join(", ")
        ))
    };
    err
}

fn conflict_error(entry: &Entry, named: &[Bound]) -> Diagnostic {
    // Find two parameters that share no set.
    for (i, a) in named.iter().enumerate() {
        for b in &named[i + 1..] {
            let together = entry
                .parameter_sets()
                .iter()
                .any(|s| in_set(a.param, s) && in_set(b.param, s));
            if !together {
                return bind_error(
                    format!(
                        "-{} and -{} cannot be used together",
                        a.param.name, b.param.name
                    ),
                    b.span,
                )
                .with_help(format!(
                    "Get-Help {} lists the parameter sets",
                    entry.spec.name
                ));
            }
        }
    }
    let span = named.first().map_or(Span::default(), |b| b.span);
    bind_error("these parameters fit no single parameter set", span).with_help(format!(
        "Get-Help {} lists the parameter sets",
        entry.spec.name
    ))
}

fn convert_for(param: &ParamSpec, value: &Spanned<Value>) -> Result<BoundValue, Diagnostic> {
    convert(&value.node, param.ty).map_err(|why| {
        bind_error(format!("-{} {why}", param.name), value.span).with_help(example_value(param))
    })
}

/// Resolves a typed parameter name: exact name or alias first, then a unique prefix.
fn resolve_param(entry: &Entry, name: &Spanned<String>) -> Result<&'static ParamSpec, Diagnostic> {
    if let Some(p) = entry.param_exact(&name.node) {
        return Ok(p);
    }
    let lower = name.node.to_ascii_lowercase();
    let mut matches: Vec<&'static ParamSpec> = Vec::new();
    for p in &entry.params {
        let hit = p.name.to_ascii_lowercase().starts_with(&lower)
            || p.aliases
                .iter()
                .any(|a| a.to_ascii_lowercase().starts_with(&lower));
        if hit && !matches.iter().any(|m| std::ptr::eq(*m, *p)) {
            matches.push(p);
        }
    }
    let span = Span::new(name.span.start.saturating_sub(1), name.span.end);
    match matches.as_slice() {
        [only] => Ok(only),
        [] => {
            let all = entry
                .params
                .iter()
                .flat_map(|p| std::iter::once(p.name).chain(p.aliases.iter().copied()));
            let near = suggest(&name.node, all);
            let err = bind_error(
                format!("{} has no parameter -{}", entry.spec.name, name.node),
                span,
            );
            Err(if let Some(best) = near.first() {
                let canonical = entry.param_exact(best).map_or(*best, |p| p.name);
                err.with_help(format!("did you mean -{canonical}?"))
            } else {
                err.with_help(format!("Get-Help {} lists its parameters", entry.spec.name))
            })
        }
        several => Err(bind_error(
            format!(
                "-{} is ambiguous: it could be {}",
                name.node,
                several
                    .iter()
                    .map(|p| format!("-{}", p.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            span,
        )
        .with_help("type more of the name")),
    }
}

fn example_text(param: &ParamSpec) -> String {
    example_with(param, crate::examples::examples())
}

/// An example value of `param`'s type with `names`.
fn example_with(param: &ParamSpec, names: crate::examples::Examples) -> String {
    match param.ty {
        ParamType::Switch => String::new(),
        ParamType::Boolean => "$true".into(),
        ParamType::String | ParamType::StringArray => "'text'".into(),
        ParamType::Fqdn => names.pool,
        ParamType::Int32 => "60".into(),
        ParamType::UInt16 => "5061".into(),
        ParamType::TimeSpan => "00:01:30".into(),
        ParamType::SipUri => format!("sip:alice@{}", names.sip_domain),
        ParamType::Path => "c:\\CsConfigurationFile.zip".into(),
        ParamType::Ipv4 => names.address,
        ParamType::Identity(crate::catalogue::spec::IdentityKind::EdgeServer) => {
            format!("EdgeServer:{}", names.edge_pool)
        }
        ParamType::Identity(crate::catalogue::spec::IdentityKind::Registrar) => {
            format!("Registrar:{}", names.pool)
        }
        ParamType::Identity(crate::catalogue::spec::IdentityKind::Scope) => "global".into(),
        ParamType::Enum(values) => values.first().copied().unwrap_or("").to_string(),
    }
}

fn example_value(param: &ParamSpec) -> String {
    format!("for example: -{} {}", param.name, example_text(param))
        .trim_end()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::catalogue;
    use crate::syntax::parse_script;

    fn bind(line: &str) -> Result<BoundStatement, Diagnostic> {
        let script = parse_script(line).expect("parses");
        bind_statement(catalogue(), &script.statements[0])
    }

    #[test]
    fn binds_named_prefix_and_case_insensitive() {
        let b = bind("invoke-cspoolfailover -poolf POOL1.contoso.com -disaster -WaitT 00:00:30")
            .unwrap();
        let inv = b.invocation;
        assert_eq!(inv.cmdlet.name, "Invoke-CsPoolFailOver");
        assert_eq!(inv.text("PoolFqdn").as_deref(), Some("pool1.contoso.com"));
        assert!(inv.switch("DisasterMode"));
        assert_eq!(
            inv.get("WaitTime"),
            Some(&BoundValue::TimeSpan(std::time::Duration::from_secs(30)))
        );
    }

    #[test]
    fn switch_colon_false_turns_it_off() {
        let inv = bind("Invoke-CsPoolFailOver -PoolFqdn pool1.contoso.com -Confirm:$false")
            .unwrap()
            .invocation;
        assert!(!inv.switch("Confirm"));
        assert_eq!(inv.get("Confirm"), Some(&BoundValue::Switch(false)));
    }

    #[test]
    fn switch_with_a_space_separated_value_gets_the_colon_hint() {
        let err = bind("Invoke-CsPoolFailOver -PoolFqdn pool1.contoso.com -DisasterMode $false")
            .unwrap_err();
        assert!(
            err.help
                .as_deref()
                .unwrap_or("")
                .contains("-DisasterMode:$false"),
            "{err:?}"
        );
    }

    #[test]
    fn misspelt_parameter_gets_a_suggestion() {
        let err = bind("Invoke-CsPoolFailOver -PoolFdqn pool1.contoso.com").unwrap_err();
        assert!(err.message.contains("no parameter -PoolFdqn"), "{err:?}");
        assert_eq!(err.help.as_deref(), Some("did you mean -PoolFqdn?"));
        assert_eq!(err.span, Span::new(22, 31));
    }

    #[test]
    fn misspelt_cmdlet_gets_a_suggestion() {
        let err = bind("Invoke-CsPoolFailovr -PoolFqdn pool1.contoso.com").unwrap_err();
        assert!(
            err.help
                .as_deref()
                .unwrap_or("")
                .contains("Invoke-CsPoolFailOver"),
            "{err:?}"
        );
    }

    #[test]
    fn ambiguous_prefix_lists_the_candidates() {
        let err = bind("Invoke-CsPoolFailOver -PoolFqdn pool1.contoso.com -W 5").unwrap_err();
        assert!(err.message.contains("ambiguous"), "{err:?}");
        assert!(
            err.message.contains("-WaitTime") && err.message.contains("-WhatIf"),
            "{err:?}"
        );
    }

    #[test]
    fn missing_mandatory_parameter() {
        let err = bind("Invoke-CsPoolFailOver -DisasterMode").unwrap_err();
        assert!(
            err.message.contains("needs the parameter -PoolFqdn"),
            "{err:?}"
        );
    }

    #[test]
    fn type_errors_point_at_the_value() {
        let src = "Invoke-CsPoolFailOver -PoolFqdn pool1.contoso.com -DatabaseCommandTimeoutInSeconds soon";
        let err = bind(src).unwrap_err();
        assert_eq!(&src[err.span.start..err.span.end], "soon");
        assert!(err.message.contains("whole number"), "{err:?}");
    }

    #[test]
    fn repeated_parameter_is_refused() {
        let err = bind("Invoke-CsPoolFailOver -PoolFqdn a.contoso.com -PoolFqdn b.contoso.com")
            .unwrap_err();
        assert!(err.message.contains("more than once"), "{err:?}");
    }

    #[test]
    fn positional_identity_for_set_cssite() {
        let inv = bind("Set-CsSite Site2 -XmppExternalFederationRoute EdgeServer2.contoso.com")
            .unwrap()
            .invocation;
        assert_eq!(inv.text("Identity").as_deref(), Some("Site2"));
        assert_eq!(
            inv.text("XmppExternalFederationRoute").as_deref(),
            Some("EdgeServer:edgeserver2.contoso.com")
        );
    }

    #[test]
    fn too_many_positionals() {
        let err = bind("Get-CsPoolFailoverState pool1.contoso.com extra").unwrap_err();
        assert!(err.message.contains("does not take"), "{err:?}");
    }

    #[test]
    fn bootstrapper_slash_setup() {
        let inv = bind("Bootstrapper /Setup").unwrap().invocation;
        assert!(inv.switch("Setup"));
        let inv = bind("bootstrapper.exe /setup").unwrap().invocation;
        assert_eq!(inv.cmdlet.name, "Bootstrapper");
        assert!(inv.switch("Setup"));
    }

    #[test]
    fn cms_failover_parameter_sets() {
        let inv = bind("Invoke-CsManagementServerFailover -Whatif")
            .unwrap()
            .invocation;
        assert!(inv.switch("WhatIf"));
        let inv = bind("Invoke-CSManagementServerFailover -MirrorSQLServerFqdn pool2-be-mirror.contoso.com -MirrorSQLInstanceName rtc").unwrap().invocation;
        assert_eq!(
            inv.text("BackupMirrorSqlServerFqdn").as_deref(),
            Some("pool2-be-mirror.contoso.com")
        );
        let err = bind(
            "Invoke-CsManagementServerFailover -Restore -BackupSqlServerFqdn pool2-be.contoso.com",
        )
        .unwrap_err();
        assert!(err.message.contains("cannot be used together"), "{err:?}");
    }

    #[test]
    fn pipeline_formatters() {
        let b = bind("Get-CsPoolFailoverState | Format-Table PoolFqdn,State").unwrap();
        assert_eq!(
            b.formatter,
            Some(Formatter::Table {
                properties: Some(vec!["PoolFqdn".into(), "State".into()])
            })
        );
        let b = bind("Get-CsUser | ConvertTo-Json -Compress").unwrap();
        assert_eq!(b.formatter, Some(Formatter::Json { compress: true }));
        assert!(bind("Get-CsUser | Get-CsUser").is_err());
        assert!(bind("Format-Table").is_err());
    }

    #[test]
    fn canonical_line_uses_reference_spelling() {
        let inv = bind("invoke-cspoolfailback -poolfqdn POOL1.contoso.com -wait 15 -verbose")
            .unwrap()
            .invocation;
        assert_eq!(
            inv.canonical_line(),
            "Invoke-CsPoolFailBack -PoolFqdn pool1.contoso.com -WaitTime 00:00:15 -Verbose"
        );
    }

    #[test]
    fn a_hint_names_the_deployment_it_is_given() {
        let cmd = catalogue().find("Set-CsEdgeServer").unwrap();
        let fabrikam = crate::examples::Examples {
            pool: "fe-red.fabrikam.net".into(),
            edge_pool: "edge-red.fabrikam.net".into(),
            sip_domain: "fabrikam.net".into(),
            address: "127.0.5.41".into(),
        };
        let identity = cmd.param_exact("Identity").unwrap();
        assert_eq!(
            example_with(identity, fabrikam.clone()),
            "EdgeServer:edge-red.fabrikam.net"
        );
        let registrar = cmd.param_exact("Registrar").unwrap();
        assert_eq!(
            example_with(registrar, fabrikam),
            "Registrar:fe-red.fabrikam.net"
        );
        assert_eq!(
            example_with(registrar, crate::examples::Examples::default()),
            "Registrar:pool1.contoso.com"
        );
    }
}
