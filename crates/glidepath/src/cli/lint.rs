//! `lint`: migration safety, on its own (for CI).

use super::{print_json, Ctx};
use crate::{exit, Failure, LintReporter};
use std::path::PathBuf;

pub fn run(ctx: &Ctx, paths: &[PathBuf], reporter: Option<LintReporter>) -> Result<u8, Failure> {
    let reporter = match (ctx.json(), reporter) {
        (true, Some(r @ (LintReporter::Text | LintReporter::Github))) => {
            let name = if r == LintReporter::Text {
                "text"
            } else {
                "github"
            };
            return Err(Failure::new(
                exit::INVALID,
                format!("--output json and --reporter {name} ask for two different outputs: pass one of them (--output json is --reporter json)"),
            ));
        }
        (true, _) => LintReporter::Json,
        (false, r) => r.unwrap_or(LintReporter::Text),
    };
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
