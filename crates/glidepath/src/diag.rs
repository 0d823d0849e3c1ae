//! Diagnostics for bad input: every problem in a file at once, each with a
//! file:line:column, a label and a hint, rendered for people (codespan) or
//! as JSON for machines.

use codespan_reporting::diagnostic::{Diagnostic, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, termcolor};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in an input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diag {
    pub severity: Severity,
    pub message: String,
    /// Byte range in the source, when the problem has a location.
    pub span: Option<(usize, usize)>,
    pub label: String,
    pub hint: Option<String>,
}

impl Diag {
    pub fn error(
        message: impl Into<String>,
        span: (usize, usize),
        label: impl Into<String>,
    ) -> Diag {
        Diag {
            severity: Severity::Error,
            message: message.into(),
            span: Some(span),
            label: label.into(),
            hint: None,
        }
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Diag {
        self.hint = Some(hint.into());
        self
    }
}

/// Diagnostics of one file.
#[derive(Debug, Clone)]
pub struct Report {
    pub file: String,
    pub source: String,
    pub diags: Vec<Diag>,
}

#[derive(Serialize)]
struct JsonDiag<'a> {
    file: &'a str,
    line: usize,
    column: usize,
    severity: &'a Severity,
    message: &'a str,
    label: &'a str,
    hint: Option<&'a str>,
}

/// 1-based line and column of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

impl Report {
    pub fn has_errors(&self) -> bool {
        self.diags.iter().any(|d| d.severity == Severity::Error)
    }

    /// Human rendering; colors only when `color` (a TTY).
    pub fn render(&self, color: bool) -> String {
        let file = SimpleFile::new(self.file.as_str(), self.source.as_str());
        let mut buf = if color {
            termcolor::Buffer::ansi()
        } else {
            termcolor::Buffer::no_color()
        };
        let config = term::Config::default();
        for d in &self.diags {
            let mut diag = match d.severity {
                Severity::Error => Diagnostic::error(),
                Severity::Warning => Diagnostic::warning(),
            }
            .with_message(&d.message);
            if let Some((s, e)) = d.span {
                let (s, e) = (s.min(self.source.len()), e.min(self.source.len()));
                diag =
                    diag.with_labels(vec![Label::primary((), s..e.max(s)).with_message(&d.label)]);
            }
            if let Some(h) = &d.hint {
                diag = diag.with_notes(vec![format!("hint: {h}")]);
            }
            let _ = term::emit(&mut buf, &config, &file, &diag);
        }
        String::from_utf8_lossy(buf.as_slice()).into_owned()
    }

    /// One line per problem: `file:line:col: error: message (hint: …)`.
    pub fn short(&self) -> String {
        let mut out = String::new();
        for d in &self.diags {
            let (l, c) = d.span.map_or((0, 0), |s| line_col(&self.source, s.0));
            let sev = match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            out.push_str(&format!("{}:{l}:{c}: {sev}: {}", self.file, d.message));
            if let Some(h) = &d.hint {
                out.push_str(&format!(" (hint: {h})"));
            }
            out.push('\n');
        }
        out
    }

    pub fn json(&self) -> serde_json::Value {
        let items: Vec<_> = self
            .diags
            .iter()
            .map(|d| {
                let (line, column) = d.span.map_or((0, 0), |s| line_col(&self.source, s.0));
                JsonDiag {
                    file: &self.file,
                    line,
                    column,
                    severity: &d.severity,
                    message: &d.message,
                    label: &d.label,
                    hint: d.hint.as_deref(),
                }
            })
            .collect();
        serde_json::to_value(items).expect("diagnostics serialize")
    }
}
