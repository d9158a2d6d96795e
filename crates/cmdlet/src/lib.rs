//! The tandem shell language, with no I/O: parse PowerShell-style command lines, bind them
//! to the cmdlet catalogue, and format what cmdlets return.
//!
//! The pipeline is `text → syntax::parse_script → bind::bind_statement → (run elsewhere) →
//! output::render`. Running is not here: the `tandem` binary runs the few cmdlets that
//! need no deployment and sends the rest to a server. Keeping this crate pure lets every
//! seed line, every error message and every format be tested exhaustively and fast.

pub mod bind;
pub mod catalogue;
pub mod diagnostic;
pub mod examples;
pub mod help;
pub mod output;
pub mod roles;
pub mod syntax;
pub mod value;

pub use bind::{BoundStatement, Formatter, Invocation, bind_command, bind_statement};
pub use catalogue::{Catalogue, catalogue};
pub use diagnostic::{Diagnostic, DiagnosticKind};
pub use examples::{Examples, set_examples};
pub use output::{Field, Output, OutputFormat, Record, render};
pub use syntax::{Script, Span, parse_script};
pub use value::BoundValue;

/// Parses and binds a whole script. A syntax error stops at the first one (the rest of the
/// text cannot be trusted); binding errors are collected for every statement, so a runbook
/// check reports them all at once.
pub fn parse_and_bind(src: &str) -> Result<Vec<BoundStatement>, Vec<Diagnostic>> {
    let script = parse_script(src).map_err(|e| vec![e])?;
    let mut bound = Vec::with_capacity(script.statements.len());
    let mut errors = Vec::new();
    for statement in &script.statements {
        match bind_statement(catalogue(), statement) {
            Ok(b) => bound.push(b),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(bound)
    } else {
        Err(errors)
    }
}
