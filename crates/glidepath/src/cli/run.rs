//! `run` (preflight, then the rollout) and `resume` (finish a run whose
//! process died).

use super::{load_plan_with, print_json, print_result, stop_signals, Ctx};
use crate::{exit, Failure};
use glidepath::drivers::Drivers;
use glidepath::executor::Executor;
use std::path::Path;

pub async fn run(
    ctx: &Ctx,
    path: &Path,
    force: Vec<String>,
    reason: Option<String>,
    release: glidepath::plan::ReleaseOverride,
) -> Result<u8, Failure> {
    let forces = match (force.is_empty(), reason) {
        (true, _) => Vec::new(),
        (false, Some(why)) if !why.trim().is_empty() => {
            force.into_iter().map(|g| (g, why.clone())).collect()
        }
        (false, _) => {
            return Err(Failure::new(
                exit::INVALID,
                "--force needs --reason \"why this gate may be ignored\" (it is journaled with who and when)",
            ))
        }
    };
    let parts = [
        release.version.is_some(),
        release.artifact.is_some(),
        release.sha256.is_some(),
    ];
    if parts.iter().any(|p| *p) && !parts.iter().all(|p| *p) {
        return Err(Failure::new(
            exit::INVALID,
            "--release, --artifact and --sha256 go together: a release is its version, its artifact and the artifact's reviewed sha256\nhint: glidepath run PLAN --release 1.5 --artifact dist/1.5.tar --sha256 $(glidepath hash dist/1.5.tar | cut -d' ' -f1)",
        ));
    }
    let stop = stop_signals();
    let p = load_plan_with(path, ctx, &release)?;
    let location = ctx.given_journal()?.unwrap_or_else(|| p.journal_location());
    super::used_journal(&location);
    let journal = location.open()?;
    let drivers = Drivers::for_plan(&p);
    let opts = glidepath::executor::StartOptions {
        forces,
        stop: Some(stop),
        ..Default::default()
    };
    let r = Executor::start_with(p, journal, drivers, ctx.reporter(), opts).await?;
    print_result(&location, &r, ctx)
}

pub async fn resume(ctx: &Ctx, run: &str) -> Result<u8, Failure> {
    let (location, journal) = ctx.open_existing()?;
    if glidepath::campaign::is_campaign_id(run) && journal.campaign(run).is_ok() {
        return Err(Failure::new(
            exit::INVALID,
            format!(
                "{run} is a campaign, not a run
hint: `glidepath upgrade --resume {run}` continues a campaign"
            ),
        ));
    }
    let rec = glidepath::control::resolve_run(journal.as_ref(), run)?;
    let run = rec.id.as_str();
    if rec.status.is_final() && journal.pending_commands(run)?.is_empty() {
        let next = super::next_after(journal.as_ref(), run)?;
        let said = format!(
            "run {run} already finished ({}): nothing to resume; nothing was journaled{}{next}",
            rec.status,
            if rec.reason.is_empty() {
                String::new()
            } else {
                format!("\n{}", glidepath::report::with_run_id(&rec.reason, run))
            }
        );
        if ctx.json() {
            print_json(glidepath::control::summary(journal.as_ref(), &rec, true)?);
            eprintln!("{said}");
        } else {
            println!("{said}");
        }
        return Ok(exit::NOTHING_TO_DO);
    }
    let stop = stop_signals();
    let r =
        Executor::resume_with(journal, run, Drivers::for_plan, ctx.reporter(), Some(stop)).await?;
    print_result(&location, &r, ctx)
}
