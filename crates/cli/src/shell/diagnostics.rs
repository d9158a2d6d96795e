//! Renders shell-language errors with the offending text underlined, via miette.

use std::fmt;
use std::io::IsTerminal;

use miette::{GraphicalReportHandler, GraphicalTheme, NamedSource, SourceSpan};

#[derive(Debug)]
struct Report {
    message: String,
    source: NamedSource<String>,
    span: SourceSpan,
    label: String,
    help: Option<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Report {}

impl miette::Diagnostic for Report {
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(
            miette::LabeledSpan::new_with_span(Some(self.label.clone()), self.span),
        )))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h.clone()) as Box<dyn fmt::Display>)
    }
}

/// The error with its source line and a marker under the offending text; colours only
/// on a terminal.
pub(super) fn render(name: &str, src: &str, d: &cmdlet::Diagnostic) -> String {
    let label = match d.kind {
        cmdlet::DiagnosticKind::Syntax => "here",
        cmdlet::DiagnosticKind::Binding => "this",
    };
    let report = Report {
        message: d.message.clone(),
        source: NamedSource::new(name, src.to_string()),
        span: SourceSpan::new(d.span.start.into(), d.span.len()),
        label: label.to_string(),
        help: d.help.clone(),
    };
    let theme = if std::io::stderr().is_terminal() {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let mut out = String::new();
    match GraphicalReportHandler::new_themed(theme)
        .with_width(100)
        .render_report(&mut out, &report)
    {
        Ok(()) => out,
        Err(_) => {
            let (line, col) = cmdlet::syntax::line_col(src, d.span.start);
            format!("error: {name}:{line}:{col}: {d}\n")
        }
    }
}
