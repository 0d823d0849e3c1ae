//! `status` (one run, per node, with reasons and its holder; or a campaign,
//! stage by stage) and `history`.

use super::{print_json, Ctx};
use crate::{exit, Failure};
use glidepath::journal::Store;
use glidepath::output::{History, RunEntry};

pub fn status(ctx: &Ctx, run: Option<&str>) -> Result<u8, Failure> {
    let (_, journal) = ctx.open_existing()?;
    if let Some(id) = run.filter(|id| glidepath::campaign::is_campaign_id(id)) {
        let c = glidepath::output::CampaignSummary::of(&journal.campaign(id)?);
        if ctx.json() {
            print_json(&c);
        } else {
            print!("{}", c.render());
        }
        return Ok(exit::OK);
    }
    let rec = match run {
        Some(id) => journal.run(id)?,
        None => glidepath::control::latest(&journal)?
            .ok_or_else(|| Failure::new(exit::INVALID, "the journal has no runs yet"))?,
    };
    let s = glidepath::control::summary(&journal, &rec, true)?;
    if ctx.json() {
        print_json(&s);
    } else {
        print!("{}", s.render());
    }
    Ok(exit::OK)
}

pub fn history(ctx: &Ctx, limit: usize) -> Result<u8, Failure> {
    let (_, journal) = ctx.open_existing()?;
    let runs = journal.runs(limit)?;
    if ctx.json() {
        print_json(History {
            runs: runs.iter().map(RunEntry::from).collect(),
        });
        return Ok(exit::OK);
    }
    println!(
        "{:<22} {:<20} {:<10} {:<8} {:<16} reason",
        "run", "started", "fleet", "release", "status"
    );
    for r in runs {
        let reason: String = r.reason.chars().take(90).collect();
        println!(
            "{:<22} {:<20} {:<10} {:<8} {:<16} {}",
            r.id,
            glidepath::journal::fmt_time(r.created_at),
            r.fleet,
            r.version,
            r.status,
            reason
        );
    }
    Ok(exit::OK)
}
