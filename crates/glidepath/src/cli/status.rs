//! `status` (one run, per node, with reasons and its holder; or a campaign,
//! stage by stage) and `history`.

use super::{outcome_code, print_json, Ctx};
use crate::{exit, Failure};
use glidepath::executor::RunResult;
use glidepath::journal::{RunRecord, Store};
use glidepath::output::{History, RunEntry};
use std::collections::HashMap;

pub async fn status(ctx: &Ctx, run: Option<&str>, watch: bool) -> Result<u8, Failure> {
    let (_, journal) = ctx.open_existing()?;
    let journal = journal.as_ref();
    if let Some(id) = run.filter(|id| glidepath::campaign::is_campaign_id(id)) {
        if watch {
            return watch_campaign(ctx, journal, id).await;
        }
        let c = glidepath::output::CampaignSummary::of(&journal.campaign(id)?);
        if ctx.json() {
            print_json(&c);
        } else {
            print!("{}", c.render());
        }
        return Ok(exit::OK);
    }
    let rec = glidepath::control::resolve_run(journal, run.unwrap_or("latest"))?;
    if watch {
        return follow(ctx, journal, rec).await;
    }
    let s = glidepath::control::summary(journal, &rec, true)?;
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
        let mut reason: String = r.reason.chars().take(90).collect();
        if reason.len() < r.reason.len() {
            reason.push('…');
        }
        println!(
            "{:<22} {:<20} {:<10} {:<8} {:<16} {}",
            r.id,
            glidepath::journal::fmt_time(r.created_at),
            r.fleet,
            r.version,
            // `{:<16}` pads only a string (a Display may ignore it)
            r.status.to_string(),
            reason
        );
    }
    Ok(exit::OK)
}

/// `status RUN --watch`: follow the run from the journal until it ends,
/// redrawn in place on a terminal, one line per change otherwise (with
/// `--output json`, the summary once it ends); the run's exit code.
async fn follow(ctx: &Ctx, journal: &dyn Store, rec: RunRecord) -> Result<u8, Failure> {
    use glidepath::watch::{Ended, Follower, POLL};
    use std::io::IsTerminal;
    let tty = !ctx.json() && std::io::stdout().is_terminal();
    let mut f = Follower::new(journal, rec, ctx.journal_arg())?;
    let mut printed: HashMap<String, String> = HashMap::new();
    loop {
        let view = f.view(glidepath::journal::now_ms());
        if tty {
            // home, clear, the whole view: redrawn in place
            print!("\x1b[H\x1b[2J{}", view.screen());
        } else if !ctx.json() {
            for (key, line) in view.lines() {
                if printed.get(&key) != Some(&line) {
                    if !line.is_empty() {
                        println!("{line}");
                    }
                    printed.insert(key, line);
                }
            }
        }
        {
            use std::io::Write as _;
            let _ = std::io::stdout().flush();
        }
        if let Some(end) = f.ended() {
            if ctx.json() {
                print_json(glidepath::control::summary(journal, &f.rec, true)?);
            }
            return Ok(match end {
                Ended::Suspended => exit::UNREACHABLE,
                Ended::Refused => exit::GATE,
                Ended::Finished(outcome) => outcome_code(&RunResult {
                    run_id: f.rec.id.clone(),
                    outcome,
                    state: f.state.clone(),
                }),
            });
        }
        // the journal is polled: another process writes it
        tokio::time::sleep(POLL).await;
        f.poll(journal)?;
    }
}

/// `status CAMPAIGN --watch`: follow each stage's run as the campaign
/// reaches it, until the campaign ends (its last run's exit code, 0 when
/// every stage succeeded).
async fn watch_campaign(ctx: &Ctx, journal: &dyn Store, id: &str) -> Result<u8, Failure> {
    use glidepath::journal::CampaignStatus;
    let mut followed: Vec<String> = Vec::new();
    let mut last = exit::OK;
    loop {
        let c = journal.campaign(id)?;
        let next = c
            .stages
            .iter()
            .filter_map(|s| s.run_id.clone())
            .find(|r| !followed.contains(r));
        if let Some(run) = next {
            if !ctx.json() {
                println!("campaign {id}: following run {run}");
            }
            last = follow(ctx, journal, journal.run(&run)?).await?;
            followed.push(run);
            continue;
        }
        if c.status != CampaignStatus::Running {
            if !ctx.json() {
                print!("{}", glidepath::output::CampaignSummary::of(&c).render());
            }
            return Ok(match c.status {
                CampaignStatus::Failed if last == exit::OK => exit::ROLLED_BACK,
                _ => last,
            });
        }
        tokio::time::sleep(glidepath::watch::POLL).await;
    }
}
