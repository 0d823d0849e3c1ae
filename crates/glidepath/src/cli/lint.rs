//! `lint`: migration safety, on its own (for CI).

use super::{print_json, Ctx};
use crate::{exit, Failure, LintReporter};
use std::path::PathBuf;

pub fn run(ctx: &Ctx, paths: &[PathBuf], reporter: LintReporter) -> Result<u8, Failure> {
    for p in paths {
        if !p.exists() {
            return Err(Failure::new(
                exit::INVALID,
                format!("{}: no such file or directory", p.display()),
            ));
        }
    }
    let reports = glidepath::lint::lint_paths(paths)
        .map_err(|e| Failure::new(exit::INVALID, e.to_string()))?;
    let reporter = if ctx.json() {
        LintReporter::Json
    } else {
        reporter
    };
    match reporter {
        LintReporter::Text => print!("{}", glidepath::lint::render_text(&reports)),
        LintReporter::Github => print!("{}", glidepath::lint::render_github(&reports)),
        LintReporter::Json => print_json(glidepath::output::Lint { files: &reports }),
    }
    // a file that cannot be read or parsed is invalid input; the others are still reported
    Ok(if reports.iter().any(|r| r.invalid()) {
        exit::INVALID
    } else if reports.iter().any(|r| r.failed()) {
        exit::GATE
    } else {
        exit::OK
    })
}
