//! `validate`: every problem of a plan at once, and the artifact's checksum.

use super::{invalid, load_plan, print_json, Ctx};
use crate::{exit, Failure};
use glidepath::plan;
use std::path::Path;

pub fn run(ctx: &Ctx, path: &Path) -> Result<u8, Failure> {
    let p = load_plan(path, ctx)?;
    // the checksum too: a plan whose artifact changed since review is not valid
    let sum = plan::artifact_sha256(&p.release.artifact).map_err(|e| {
        Failure::new(
            exit::INVALID,
            format!("cannot read artifact {}: {e}", p.release.artifact.display()),
        )
    })?;
    if sum != p.release.sha256 {
        let start = p.source.find(&p.release.sha256).unwrap_or(0);
        let report = glidepath::diag::Report {
            file: path.display().to_string(),
            source: p.source.clone(),
            diags: vec![glidepath::diag::Diag::error(
                format!("the artifact's sha256 is {sum}, not the one in the plan"),
                (start, start + p.release.sha256.len()),
                "does not match the artifact",
            )
            .hint(format!(
                "if {} is the reviewed release, put its sha256 here (for a directory, the README's \"Artifacts\" section has a shell recipe that reproduces it)",
                p.release.artifact.display(),
            ))],
        };
        return Err(invalid(
            &report,
            ctx,
            format!("{}: checksum mismatch; nothing was run", path.display()),
        ));
    }
    let steps = p.describe();
    if ctx.json() {
        print_json(glidepath::output::Valid {
            valid: true,
            plan: path,
            steps: &steps,
        });
    } else {
        println!("{}: valid. `glidepath run` would:", path.display());
        for (i, s) in steps.iter().enumerate() {
            println!("  {}. {s}", i + 1);
        }
    }
    Ok(exit::OK)
}
