//! The reporters: text and GitHub workflow annotations (JSON is the
//! reports themselves).

use super::*;

/// Human output: one block per finding.
pub fn render_text(reports: &[FileReport]) -> String {
    let mut s = String::new();
    for r in reports {
        if let Some(m) = &r.error {
            s.push_str(&format!("{}: error: {m}\n", r.file));
        }
        for (l, c, m) in &r.syntax_errors {
            s.push_str(&format!("{}:{l}:{c}: error: syntax error: {m}\n", r.file));
        }
        for (l, m) in &r.problems {
            s.push_str(&format!("{}:{l}:1: error: {m}\n", r.file));
        }
        for f in &r.findings {
            let what = match (f.class, f.contract_in_post, &f.suppressed) {
                (_, _, Some(_)) => "suppressed",
                (_, true, _) => "ok (contract step in the post phase)",
                (Class::BackwardIncompatible, ..) => "error: backward-incompatible",
                (Class::LockRisk, ..) => "error: lock risk",
            };
            s.push_str(&format!(
                "{}:{}:{}: {what} [{}] {}\n",
                f.file, f.line, f.column, f.rule, f.message
            ));
            s.push_str(&format!("    {}\n", f.statement));
            match &f.suppressed {
                Some(why) => s.push_str(&format!("    suppressed: {why}\n")),
                None if !f.contract_in_post => {
                    s.push_str(&format!("    safe alternative: {}\n", f.safe_alternative))
                }
                None => {}
            }
        }
    }
    s.push_str(&summary(reports));
    s.push('\n');
    s
}

/// The last line of the text report: how many files were checked and
/// failed, each failing file counted once, by its first reason.
pub fn summary(reports: &[FileReport]) -> String {
    let failing = reports.iter().filter(|r| r.failed()).count();
    let unchecked = reports.iter().filter(|r| r.invalid()).count();
    let with_findings: Vec<usize> = reports
        .iter()
        .filter(|r| !r.invalid())
        .map(|r| r.findings.iter().filter(|f| f.fails()).count())
        .filter(|n| *n > 0)
        .collect();
    let bad_ignores = reports
        .iter()
        .filter(|r| r.failed() && !r.invalid())
        .filter(|r| r.findings.iter().all(|f| !f.fails()))
        .count();
    let mut parts = Vec::new();
    if !with_findings.is_empty() {
        parts.push(format!(
            "{} with {} failing finding(s)",
            with_findings.len(),
            with_findings.iter().sum::<usize>()
        ));
    }
    if unchecked > 0 {
        parts.push(format!(
            "{unchecked} that could not be checked (unreadable or a syntax error)"
        ));
    }
    if bad_ignores > 0 {
        parts.push(format!(
            "{bad_ignores} with a malformed glidepath-ignore comment"
        ));
    }
    let mut s = format!("{} file(s) checked, {failing} failing", reports.len());
    if !parts.is_empty() {
        s.push_str(": ");
        s.push_str(&parts.join(", "));
    }
    s
}

/// GitHub Actions workflow-command annotations.
pub fn render_github(reports: &[FileReport]) -> String {
    let esc = |s: &str| {
        s.replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    };
    let mut s = String::new();
    for r in reports {
        if let Some(m) = &r.error {
            s.push_str(&format!(
                "::error file={},title=not checked::{}\n",
                r.file,
                esc(m)
            ));
        }
        for (l, c, m) in &r.syntax_errors {
            s.push_str(&format!(
                "::error file={},line={l},col={c},title=syntax error::{}\n",
                r.file,
                esc(m)
            ));
        }
        for (l, m) in &r.problems {
            s.push_str(&format!(
                "::error file={},line={l},title=glidepath-ignore::{}\n",
                r.file,
                esc(m)
            ));
        }
        for f in r.findings.iter().filter(|f| f.fails()) {
            let title = match f.class {
                Class::BackwardIncompatible => "backward-incompatible",
                Class::LockRisk => "lock risk",
            };
            s.push_str(&format!(
                "::error file={},line={},col={},title={title}: {}::{}%0ASafe alternative: {}\n",
                f.file,
                f.line,
                f.column,
                f.rule,
                esc(&f.message),
                esc(&f.safe_alternative)
            ));
        }
    }
    s
}
