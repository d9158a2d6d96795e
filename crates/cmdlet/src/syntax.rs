//! The shell's surface grammar: PowerShell command lines, as the seeds write them.
//!
//! Two layers. A lexer turns text into tokens with byte spans (so every error can point at
//! the offending text); a small parser groups tokens into statements, pipelines and
//! commands. Nothing here knows which cmdlets exist: that is the binder's job
//! ([`crate::bind`]), so a runbook can be checked for syntax even when it names a cmdlet
//! this build does not know.
//!
//! Supported, because operators copy these from the documentation: `Verb-Noun` names,
//! `-Param value`, `-Param:value`, switches, `$true` `$false` `$null`, single and double
//! quotes with PowerShell's escapes (including typographic quotes and dashes pasted from a
//! word processor), comma arrays, positional arguments, `#` and `<# … #>` comments, backtick
//! line continuation, a line ending in `|` continuing on the next, `;` between statements,
//! pipelines (`| Format-Table`) and the `Bootstrapper /Setup` form.
//!
//! Refused with a clear message, because guessing would be worse: other variables,
//! sub-expressions, script blocks, hashtables, redirection, and `<placeholders>` left in a
//! line copied from the documentation.

use std::fmt;

use winnow::Parser as _;
use winnow::error::ContextError;
use winnow::token::take_while;

use crate::diagnostic::{Diagnostic, error};

/// Longest input the parser accepts in one go. A runbook is a few hundred lines; anything
/// far larger is a mistake (a binary file, say) and is refused before any work is done.
pub const MAX_SCRIPT_BYTES: usize = 1 << 20;

pub use crate::diagnostic::Span;

/// A value with the span it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T> {
    pub node: T,
    pub span: Span,
}

/// A value as typed, before the binder gives it a type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A bare word or a quoted string, with escapes already applied.
    Text { text: String, quoted: bool },
    /// `$true` or `$false`.
    Bool(bool),
    /// `$null`.
    Null,
    /// `a, b, c`.
    Array(Vec<Spanned<Value>>),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text { text, .. } => f.write_str(text),
            Value::Bool(true) => f.write_str("$true"),
            Value::Bool(false) => f.write_str("$false"),
            Value::Null => f.write_str("$null"),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{}", item.node)?;
                }
                Ok(())
            }
        }
    }
}

/// One element after the command name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Element {
    /// `-Name`, `-Name value` (the binder decides whether the next argument is the value)
    /// or `-Name:value`.
    Parameter {
        name: Spanned<String>,
        /// Present only for the colon form, which always carries its value.
        colon_value: Option<Spanned<Value>>,
        span: Span,
    },
    /// Anything else: a value given by position, or the value of the preceding parameter.
    Argument(Spanned<Value>),
}

impl Element {
    pub fn span(&self) -> Span {
        match self {
            Element::Parameter { span, .. } => *span,
            Element::Argument(v) => v.span,
        }
    }
}

/// A command: a name and its elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub name: Spanned<String>,
    pub elements: Vec<Element>,
    pub span: Span,
}

/// One statement: commands joined by `|`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub pipeline: Vec<Command>,
    pub span: Span,
    /// 1-based line of the statement's first character.
    pub line: usize,
}

/// A parsed script: a single line typed at the prompt, or a whole runbook.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Script {
    pub statements: Vec<Statement>,
}

/// Parses a script. Statements are separated by newlines and `;`.
pub fn parse_script(src: &str) -> Result<Script, Diagnostic> {
    if src.len() > MAX_SCRIPT_BYTES {
        return Err(error(
            format!(
                "the script is {} bytes; the shell reads at most {MAX_SCRIPT_BYTES}",
                src.len()
            ),
            Span::new(0, 0),
        ));
    }
    let tokens = Lexer::new(src).tokenize()?;
    Parser {
        src,
        tokens,
        pos: 0,
    }
    .script()
}

/// Converts a byte offset to a 1-based (line, column), columns counted in characters.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

// ---------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// A bare word; `text` has backtick escapes applied.
    Word(String),
    /// A quoted string.
    Quoted(String),
    /// `-Name`; `colon` when written `-Name:`.
    Param {
        name: String,
        colon: bool,
    },
    Variable(Value),
    Comma,
    Pipe,
    /// Newline or `;`.
    End,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    span: Span,
}

struct Lexer<'s> {
    src: &'s str,
    /// What is left to read; winnow's `Stream` for `&str`.
    rest: &'s str,
}

fn is_dash(c: char) -> bool {
    // PowerShell accepts the en dash, em dash and horizontal bar wherever it accepts '-'.
    matches!(c, '-' | '\u{2013}' | '\u{2014}' | '\u{2015}')
}

fn is_single_quote(c: char) -> bool {
    matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}')
}

fn is_double_quote(c: char) -> bool {
    matches!(c, '"' | '\u{201C}' | '\u{201D}' | '\u{201E}')
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\u{00A0}' || c == '\u{FEFF}' || c == '\u{000C}'
}

/// Characters that end a bare word.
fn ends_word(c: char) -> bool {
    is_blank(c)
        || matches!(
            c,
            '\n' | '\r' | '|' | ';' | ',' | '(' | ')' | '{' | '}' | '&' | '>' | '<'
        )
        || is_single_quote(c)
        || is_double_quote(c)
}

/// Takes the longest run (at least `min` characters) of characters matching `pred`; an
/// empty slice when there are fewer than `min`.
fn scan<'s>(rest: &mut &'s str, min: usize, pred: impl Fn(char) -> bool) -> &'s str {
    take_while::<_, _, ContextError>(min.., pred)
        .parse_next(rest)
        .unwrap_or_default()
}

fn is_param_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '?'
}

impl<'s> Lexer<'s> {
    fn new(src: &'s str) -> Self {
        Lexer { src, rest: src }
    }

    fn offset(&self) -> usize {
        self.src.len() - self.rest.len()
    }

    fn peek(&self) -> Option<char> {
        self.rest.chars().next()
    }

    fn peek2(&self) -> Option<char> {
        self.rest.chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.rest = &self.rest[c.len_utf8()..];
        Some(c)
    }

    fn tokenize(mut self) -> Result<Vec<Token>, Diagnostic> {
        let mut tokens: Vec<Token> = Vec::new();
        loop {
            self.skip_blanks();
            let start = self.offset();
            let Some(c) = self.peek() else { break };
            let tok = match c {
                '\n' => {
                    self.bump();
                    // A line ending in `|` or `,` goes on: the pipeline or array is not done.
                    if matches!(tokens.last().map(|t| &t.tok), Some(Tok::Pipe | Tok::Comma)) {
                        continue;
                    }
                    Tok::End
                }
                '\r' => {
                    self.bump();
                    continue;
                }
                ';' => {
                    self.bump();
                    Tok::End
                }
                '#' => {
                    let _: &str = scan(&mut self.rest, 0, |c| c != '\n');
                    continue;
                }
                '<' if self.peek2() == Some('#') => {
                    self.block_comment(start)?;
                    continue;
                }
                '|' => {
                    self.bump();
                    if self.peek() == Some('|') {
                        return Err(error(
                            "`||` (run if the previous command failed) is not supported",
                            Span::new(start, start + 2),
                        )
                        .with_help("put the commands on separate lines"));
                    }
                    Tok::Pipe
                }
                ',' => {
                    self.bump();
                    Tok::Comma
                }
                '`' => {
                    // Line continuation: a backtick, optional blanks, then the end of the line.
                    self.bump();
                    let _: &str = scan(&mut self.rest, 0, is_blank);
                    match self.peek() {
                        Some('\n') => {
                            self.bump();
                            continue;
                        }
                        Some('\r') if self.peek2() == Some('\n') => {
                            self.bump();
                            self.bump();
                            continue;
                        }
                        None => continue,
                        Some(_) => {
                            // Not a continuation: an escaped character starting a word.
                            self.rest = &self.src[start..];
                            Tok::Word(self.word()?)
                        }
                    }
                }
                '$' => self.variable(start)?,
                '<' => return Err(self.placeholder_or_redirection(start)),
                '>' => {
                    return Err(error(
                        "output redirection (`>`) is not supported",
                        Span::new(start, start + 1),
                    )
                    .with_help(
                        "use `tandem shell -c '…' > file`, or -Report <file> where the cmdlet has it",
                    ));
                }
                '&' => {
                    return Err(error(
                        "`&` (call operator, background job) is not supported",
                        Span::new(start, start + 1),
                    ));
                }
                '(' | ')' => {
                    return Err(error(
                        "parentheses (sub-expressions) are not supported",
                        Span::new(start, start + 1),
                    )
                    .with_help("give the value directly, or run the inner command first"));
                }
                '{' | '}' => {
                    return Err(error(
                        "script blocks (`{ … }`) are not supported",
                        Span::new(start, start + 1),
                    ));
                }
                '@' if matches!(self.peek2(), Some('{' | '(')) => {
                    return Err(error(
                        "hashtables and array sub-expressions (`@{ }`, `@( )`) are not supported",
                        Span::new(start, start + 2),
                    )
                    .with_help("give arrays as comma lists: -Name a,b,c"));
                }
                c if is_single_quote(c) => Tok::Quoted(self.single_quoted(start)?),
                c if is_double_quote(c) => Tok::Quoted(self.double_quoted(start)?),
                c if is_dash(c)
                    && self
                        .peek2()
                        .is_some_and(|n| n.is_alphabetic() || n == '_' || n == '?') =>
                {
                    self.parameter()
                }
                _ => Tok::Word(self.word()?),
            };
            tokens.push(Token {
                tok,
                span: Span::new(start, self.offset()),
            });
        }
        Ok(tokens)
    }

    fn skip_blanks(&mut self) {
        let _: &str = scan(&mut self.rest, 0, is_blank);
    }

    fn block_comment(&mut self, start: usize) -> Result<(), Diagnostic> {
        match self.rest.find("#>") {
            Some(end) => {
                self.rest = &self.rest[end + 2..];
                Ok(())
            }
            None => Err(error(
                "this block comment is never closed",
                Span::new(start, start + 2),
            )
            .with_help("end it with #>")),
        }
    }

    fn placeholder_or_redirection(&self, start: usize) -> Diagnostic {
        let line_rest = self.rest.split('\n').next().unwrap_or("");
        if let Some(close) = line_rest.find('>') {
            let placeholder = &line_rest[..=close];
            return error(
                format!("`{placeholder}` is a placeholder from the documentation"),
                Span::new(start, start + close + 1),
            )
            .with_help(format!(
                "replace {placeholder} with the real value, for example a pool FQDN such as pool1.contoso.com"
            ));
        }
        error(
            "`<` is reserved (input redirection is not supported)",
            Span::new(start, start + 1),
        )
    }

    fn parameter(&mut self) -> Tok {
        self.bump(); // the dash
        let name: &str = scan(&mut self.rest, 1, is_param_char);
        let name = name.to_string();
        let colon = if self.peek() == Some(':') {
            self.bump();
            true
        } else {
            false
        };
        Tok::Param { name, colon }
    }

    fn variable(&mut self, start: usize) -> Result<Tok, Diagnostic> {
        self.bump(); // '$'
        let name: &str = scan(&mut self.rest, 0, |c: char| c.is_alphanumeric() || c == '_');
        let span = Span::new(start, self.offset());
        match name.to_ascii_lowercase().as_str() {
            "true" => Ok(Tok::Variable(Value::Bool(true))),
            "false" => Ok(Tok::Variable(Value::Bool(false))),
            "null" => Ok(Tok::Variable(Value::Null)),
            "" => Err(error("`$` must be followed by true, false or null", span)),
            _ => Err(
                error(format!("variables are not supported (`${name}`)"), span)
                    .with_help("the shell knows $true, $false and $null; write other values out"),
            ),
        }
    }

    /// A bare word, up to a blank or a character that ends words. Backtick escapes the next
    /// character.
    fn word(&mut self) -> Result<String, Diagnostic> {
        let mut text = String::new();
        while let Some(c) = self.peek() {
            if c == '`' {
                let at = self.offset();
                self.bump();
                match self.bump() {
                    Some(escaped) => text.push(backtick_escape(escaped)),
                    None => {
                        return Err(error(
                            "a backtick at the very end escapes nothing",
                            Span::new(at, at + 1),
                        ));
                    }
                }
                continue;
            }
            if ends_word(c) {
                break;
            }
            text.push(c);
            self.bump();
        }
        Ok(text)
    }

    fn single_quoted(&mut self, start: usize) -> Result<String, Diagnostic> {
        let open = self.bump().map_or(1, char::len_utf8);
        let mut text = String::new();
        loop {
            match self.bump() {
                Some(c) if is_single_quote(c) => {
                    if self.peek().is_some_and(is_single_quote) {
                        self.bump();
                        text.push(c);
                    } else {
                        return Ok(text);
                    }
                }
                Some(c) => text.push(c),
                None => {
                    return Err(error(
                        "this string is missing its closing single quote",
                        Span::new(start, start + open),
                    ));
                }
            }
        }
    }

    fn double_quoted(&mut self, start: usize) -> Result<String, Diagnostic> {
        let open = self.bump().map_or(1, char::len_utf8);
        let mut text = String::new();
        loop {
            let at = self.offset();
            match self.bump() {
                Some(c) if is_double_quote(c) => {
                    if self.peek().is_some_and(is_double_quote) {
                        self.bump();
                        text.push(c);
                    } else {
                        return Ok(text);
                    }
                }
                Some('`') => match self.bump() {
                    Some(escaped) => text.push(backtick_escape(escaped)),
                    None => break,
                },
                Some('$')
                    if self.peek().is_some_and(|c| {
                        c.is_alphanumeric() || c == '_' || c == '{' || c == '('
                    }) =>
                {
                    return Err(error(
                        "variables and sub-expressions inside double quotes are not supported",
                        // `$` and the character after it, which may be several bytes long.
                        Span::new(at, at + 1 + self.peek().map_or(0, char::len_utf8)),
                    )
                    .with_help("use single quotes, or write `$ for a literal dollar sign"));
                }
                Some(c) => text.push(c),
                None => break,
            }
        }
        Err(error(
            "this string is missing its closing double quote",
            Span::new(start, start + open),
        ))
    }
}

/// PowerShell's backtick escapes: `` `n `` newline, `` `t `` tab, and so on; any other
/// character stands for itself.
fn backtick_escape(c: char) -> char {
    match c {
        '0' => '\0',
        'a' => '\u{7}',
        'b' => '\u{8}',
        'e' => '\u{1b}',
        'f' => '\u{c}',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\u{b}',
        other => other,
    }
}

// ---------------------------------------------------------------------------------------
// Parser

struct Parser<'s> {
    src: &'s str,
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn script(mut self) -> Result<Script, Diagnostic> {
        let mut statements = Vec::new();
        while let Some(token) = self.peek() {
            if token.tok == Tok::End {
                self.pos += 1;
                continue;
            }
            statements.push(self.statement()?);
        }
        Ok(Script { statements })
    }

    fn statement(&mut self) -> Result<Statement, Diagnostic> {
        let start = self.peek().map_or(0, |t| t.span.start);
        let mut pipeline = vec![self.command()?];
        while let Some(token) = self.peek() {
            match token.tok {
                Tok::Pipe => {
                    let pipe_span = token.span;
                    self.pos += 1;
                    match self.peek() {
                        None
                        | Some(Token {
                            tok: Tok::End | Tok::Pipe,
                            ..
                        }) => {
                            return Err(error("a `|` must be followed by a command", pipe_span)
                                .with_help("for example: | Format-Table"));
                        }
                        _ => pipeline.push(self.command()?),
                    }
                }
                Tok::End => break,
                _ => unreachable!("command() stops only at `|`, a statement end or the input end"),
            }
        }
        let end = pipeline.last().map_or(start, |c| c.span.end);
        Ok(Statement {
            pipeline,
            span: Span::new(start, end),
            line: line_col(self.src, start).0,
        })
    }

    fn command(&mut self) -> Result<Command, Diagnostic> {
        let Some(first) = self.peek().cloned() else {
            return Err(error(
                "expected a command",
                Span::new(self.src.len(), self.src.len()),
            ));
        };
        let name = match first.tok {
            Tok::Word(name) => name,
            Tok::Quoted(_) | Tok::Variable(_) => {
                return Err(
                    error("a command line starts with a cmdlet name", first.span)
                        .with_help("for example: Get-CsPoolFailoverState"),
                );
            }
            Tok::Param { .. } => {
                return Err(error(
                    "a command line starts with a cmdlet name, not a parameter",
                    first.span,
                ));
            }
            Tok::Comma => return Err(error("unexpected `,`", first.span)),
            Tok::Pipe => return Err(error("a `|` must follow a command", first.span)),
            Tok::End => unreachable!("callers skip statement ends"),
        };
        self.pos += 1;
        let name = Spanned {
            node: name.replace(is_dash, "-"),
            span: first.span,
        };
        let mut elements = Vec::new();
        while let Some(token) = self.peek().cloned() {
            match token.tok {
                Tok::Pipe | Tok::End => break,
                Tok::Param { name: pname, colon } => {
                    self.pos += 1;
                    let pspan = Span::new(token.span.start, token.span.end - usize::from(colon));
                    let name = Spanned {
                        node: pname,
                        span: Span::new(pspan.start + 1, pspan.end),
                    };
                    if colon {
                        let value = self.value(token.span)?;
                        let span = token.span.join(value.span);
                        elements.push(Element::Parameter {
                            name,
                            colon_value: Some(value),
                            span,
                        });
                    } else {
                        elements.push(Element::Parameter {
                            name,
                            colon_value: None,
                            span: pspan,
                        });
                    }
                }
                Tok::Comma => return Err(error("a `,` must follow a value", token.span)),
                Tok::Word(_) | Tok::Quoted(_) | Tok::Variable(_) => {
                    let value = self.value(token.span)?;
                    elements.push(Element::Argument(value));
                }
            }
        }
        let end = elements.last().map_or(name.span.end, |e| e.span().end);
        Ok(Command {
            span: Span::new(name.span.start, end),
            name,
            elements,
        })
    }

    /// A value, or a comma list of values. `after` is the span of what came before, for
    /// the error when the value is missing.
    fn value(&mut self, after: Span) -> Result<Spanned<Value>, Diagnostic> {
        let first = self.single_value(after)?;
        if !matches!(
            self.peek(),
            Some(Token {
                tok: Tok::Comma,
                ..
            })
        ) {
            return Ok(first);
        }
        let mut items = vec![first];
        while let Some(Token {
            tok: Tok::Comma,
            span,
        }) = self.peek().cloned()
        {
            self.pos += 1;
            items.push(self.single_value(span)?);
        }
        let span = items[0].span.join(items[items.len() - 1].span);
        Ok(Spanned {
            node: Value::Array(items),
            span,
        })
    }

    fn single_value(&mut self, after: Span) -> Result<Spanned<Value>, Diagnostic> {
        let Some(token) = self.peek().cloned() else {
            return Err(error("a value is missing here", after));
        };
        let node = match token.tok {
            Tok::Word(text) => Value::Text {
                text,
                quoted: false,
            },
            Tok::Quoted(text) => Value::Text { text, quoted: true },
            Tok::Variable(v) => v,
            _ => return Err(error("a value is missing here", after)),
        };
        self.pos += 1;
        Ok(Spanned {
            node,
            span: token.span,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> Command {
        let script = parse_script(src).unwrap();
        assert_eq!(script.statements.len(), 1, "{script:?}");
        script.statements[0].pipeline[0].clone()
    }

    fn text(v: &Value) -> &str {
        match v {
            Value::Text { text, .. } => text,
            other => panic!("not text: {other:?}"),
        }
    }

    #[test]
    fn named_parameter_then_argument() {
        let c = one("Invoke-CsPoolFailOver -PoolFqdn pool1.contoso.com -DisasterMode");
        assert_eq!(c.name.node, "Invoke-CsPoolFailOver");
        assert_eq!(c.elements.len(), 3);
        assert!(
            matches!(&c.elements[0], Element::Parameter { name, colon_value: None, .. } if name.node == "PoolFqdn")
        );
        assert!(
            matches!(&c.elements[1], Element::Argument(v) if text(&v.node) == "pool1.contoso.com")
        );
    }

    #[test]
    fn colon_form_carries_its_value() {
        let c = one("Invoke-CsPoolFailOver -Confirm:$false -WaitTime:00:01:30");
        match &c.elements[0] {
            Element::Parameter {
                colon_value: Some(v),
                ..
            } => assert_eq!(v.node, Value::Bool(false)),
            other => panic!("{other:?}"),
        }
        match &c.elements[1] {
            Element::Parameter {
                colon_value: Some(v),
                ..
            } => assert_eq!(text(&v.node), "00:01:30"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn quotes_and_escapes() {
        let c = one(r#"X -A 'it''s' -B "say ""hi"" `n" -C `"bare"#);
        let values: Vec<String> = c
            .elements
            .iter()
            .filter_map(|e| match e {
                Element::Argument(v) => Some(text(&v.node).to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(values, ["it's", "say \"hi\" \n", "\"bare"]);
    }

    #[test]
    fn typographic_quotes_and_dashes_from_documents() {
        let c =
            one("Invoke\u{2013}CsPoolFailback \u{2013}PoolFqdn \u{201C}pool1.contoso.com\u{201D}");
        assert_eq!(c.name.node, "Invoke-CsPoolFailback");
        assert!(
            matches!(&c.elements[0], Element::Parameter { name, .. } if name.node == "PoolFqdn")
        );
        assert!(
            matches!(&c.elements[1], Element::Argument(v) if text(&v.node) == "pool1.contoso.com")
        );
    }

    #[test]
    fn comma_arrays() {
        let c = one("Format-Table -Property a, b,c");
        match &c.elements[1] {
            Element::Argument(Spanned {
                node: Value::Array(items),
                ..
            }) => assert_eq!(items.len(), 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn comments_continuation_and_statements() {
        let src = "# a runbook\nGet-CsUser -Identity `\n  sip:alice@contoso.com # trailing\n\nGet-Command; Get-Help Get-Command\n<# block\n comment #>Get-CsTopology";
        let script = parse_script(src).unwrap();
        let names: Vec<_> = script
            .statements
            .iter()
            .map(|s| s.pipeline[0].name.node.as_str())
            .collect();
        assert_eq!(
            names,
            ["Get-CsUser", "Get-Command", "Get-Help", "Get-CsTopology"]
        );
        assert_eq!(script.statements[0].line, 2);
        assert_eq!(script.statements[0].pipeline[0].elements.len(), 2);
        assert_eq!(script.statements[1].line, 5);
    }

    #[test]
    fn pipelines_and_trailing_pipe_continues() {
        let script = parse_script("Get-CsUser |\n Format-Table").unwrap();
        assert_eq!(script.statements.len(), 1);
        assert_eq!(script.statements[0].pipeline.len(), 2);
        assert_eq!(script.statements[0].pipeline[1].name.node, "Format-Table");
    }

    #[test]
    fn bootstrapper_slash_form_is_an_argument() {
        let c = one("Bootstrapper /Setup");
        assert!(matches!(&c.elements[0], Element::Argument(v) if text(&v.node) == "/Setup"));
        let c = one("Bootstrapper.exe /Setup");
        assert_eq!(c.name.node, "Bootstrapper.exe");
    }

    #[test]
    fn windows_paths_and_negative_numbers_are_words() {
        let c =
            one(r"Move-CsManagementServer -ConfigurationFileName c:\CsConfigurationFile.zip -X -5");
        assert!(
            matches!(&c.elements[1], Element::Argument(v) if text(&v.node) == r"c:\CsConfigurationFile.zip")
        );
        assert!(matches!(&c.elements[3], Element::Argument(v) if text(&v.node) == "-5"));
    }

    #[test]
    fn placeholders_are_refused_with_a_hint() {
        let err =
            parse_script("Invoke-CsPoolFailover -PoolFQDN <Pool1 FQDN> -DisasterMode").unwrap_err();
        assert!(err.message.contains("<Pool1 FQDN>"), "{err:?}");
        assert_eq!(err.span, Span::new(32, 44));
        assert!(err.help.unwrap().contains("replace"));
    }

    #[test]
    fn unterminated_strings_point_at_the_opening_quote() {
        let err = parse_script("Get-CsUser -Identity 'alice").unwrap_err();
        assert_eq!(err.span, Span::new(21, 22));
        let err = parse_script("Get-CsUser -Identity \"alice").unwrap_err();
        assert!(err.message.contains("double quote"));
    }

    #[test]
    fn unsupported_constructs_say_so() {
        for (src, needle) in [
            ("Get-CsUser -Identity $alice", "variables"),
            ("Get-CsUser > out.txt", "redirection"),
            ("Get-CsUser -Identity (Get-X)", "parentheses"),
            ("Get-CsUser | ", "followed by a command"),
            ("-PoolFqdn x", "starts with a cmdlet name"),
            ("Get-X -A @{a=1}", "hashtables"),
            ("Get-X \"$pool\"", "inside double quotes"),
        ] {
            let err = parse_script(src).unwrap_err();
            assert!(err.message.contains(needle), "{src}: {err:?}");
        }
    }

    #[test]
    fn error_spans_end_on_character_boundaries() {
        // Found by the property test: a multi-byte letter after `$` inside double quotes.
        let src = "Get-X \u{201C} $\u{b2}";
        let err = parse_script(src).unwrap_err();
        assert!(
            src.is_char_boundary(err.span.start) && src.is_char_boundary(err.span.end),
            "{err:?}"
        );
        let src = "Get-X \"$\u{b2}\"";
        let err = parse_script(src).unwrap_err();
        assert_eq!(&src[err.span.start..err.span.end], "$\u{b2}");
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncdé f", 0), (1, 1));
        assert_eq!(line_col("ab\ncdé f", 3), (2, 1));
        assert_eq!(line_col("ab\ncdé f", 8), (2, 5));
    }
}
