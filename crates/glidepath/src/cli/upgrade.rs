//! `upgrade SYSTEM --to C=R…` (plan the stages, print them, carry them out
//! as one campaign) and `upgrade --resume CAMPAIGN` (`glidepath::campaign`).

use super::system::{load_system, print_stages, timeout};
use super::{outcome_code, print_json, stop_signals, Ctx};
use crate::{exit, Failure};
use glidepath::campaign::{self, CampaignResult, Ended, Runner};
use glidepath::output::{CampaignFailed, CampaignSummary};
use std::path::Path;

pub async fn run(
    ctx: &Ctx,
    file: Option<&Path>,
    to: &[String],
    enable: &[String],
    timeout_s: &str,
    resume: Option<&str>,
) -> Result<u8, Failure> {
    let stop = stop_signals();
    let runner = Runner {
        journal: ctx.journal_location()?,
        reporter: ctx.reporter(),
        stop,
    };
    let result = match (resume, file) {
        (Some(id), _) => {
            ctx.open_existing()?;
            campaign::resume(id, &runner).await?
        }
        (None, None) => {
            return Err(Failure::new(
                exit::INVALID,
                "give a system file and --to COMPONENT=RELEASE, or --resume CAMPAIGN",
            ))
        }
        (None, Some(file)) => {
            let t = timeout(timeout_s)?;
            if to.is_empty() && enable.is_empty() {
                return Err(Failure::new(
                    exit::INVALID,
                    "nothing to upgrade: give --to COMPONENT=RELEASE (and/or --enable FLAG)",
                ));
            }
            let sf = load_system(file, ctx)?;
            let prepared = campaign::prepare(&sf, to, enable, t).await?;
            if !ctx.json() {
                print_stages(&prepared.plan);
            }
            if prepared.record.stages.is_empty() {
                if ctx.json() {
                    print_json(CampaignSummary::of(&prepared.record));
                }
                return Ok(exit::OK);
            }
            campaign::start(prepared, &runner).await?
        }
    };
    report(ctx, result)
}

/// The campaign's end: its summary (text or JSON) and the exit code.
fn report(ctx: &Ctx, r: CampaignResult) -> Result<u8, Failure> {
    let code = match &r.ended {
        Ended::Succeeded => exit::OK,
        Ended::RunEnded { result, .. } => outcome_code(result),
        Ended::FlagFailed { .. } => exit::ROLLED_BACK,
        // the executor's error decides (refused 3, outage 4, locked 6, …)
        Ended::Stopped { error, .. } => crate::exec_code(error),
        Ended::Interrupted { .. } => exit::ABORTED,
    };
    let summary = CampaignSummary::of(&r.campaign);
    if code == exit::OK {
        if ctx.json() {
            print_json(&summary);
        } else {
            print!("\n{}", summary.render());
            println!("{}", r.message);
        }
        return Ok(code);
    }
    if ctx.json() {
        print_json(CampaignFailed {
            campaign: &summary,
            error: &r.message,
            exit_code: code,
        });
    } else {
        print!("\n{}", summary.render());
    }
    Err(Failure {
        reported: ctx.json(),
        ..Failure::new(code, r.message)
    })
}
