//! `promote`, `abort`, `rollback`: the operator command protocol
//! (`glidepath::control::send`), and what it prints.

use super::{outcome_code, print_json, stop_signals, Ctx};
use crate::{exit, Failure};
use glidepath::control::{self, OperatorCommand, Sent};
use glidepath::output::{Command, CommandResult};

pub async fn run(
    ctx: &Ctx,
    run: &str,
    command: OperatorCommand,
    reason: &str,
    force: bool,
) -> Result<u8, Failure> {
    let (location, j) = ctx.open_existing()?;
    let run = &glidepath::control::resolve_run(j.as_ref(), run)?.id;
    let run = run.as_str();
    let json = ctx.json();
    let sent = control::send(
        location.open()?,
        run,
        control::Request {
            command,
            reason,
            force,
        },
        &|s: &str| ctx.say(s),
        ctx.reporter(),
        &stop_signals,
    )
    .await?;
    let doc = |acknowledged, result| Command {
        run_id: run,
        command: command.as_str(),
        acknowledged,
        result,
        status: None,
        holder: None,
        summary: None,
    };
    match sent {
        Sent::AlreadyFinished { status } => {
            let why = match command {
                OperatorCommand::Rollback => "no node runs its release any more",
                _ => "it waits for nothing",
            };
            let next = super::next_after(j.as_ref(), run)?;
            if json {
                print_json(Command {
                    status: Some(&status),
                    ..doc(false, CommandResult::AlreadyFinished)
                });
                eprintln!("run {run} already finished ({status}): nothing to {command}, {why}; nothing was journaled{next}");
            } else {
                println!("run {run} already finished ({status}): nothing to {command}, {why}; nothing was journaled{next}");
            }
            Ok(exit::NOTHING_TO_DO)
        }
        Sent::Applied { holder } => {
            if json {
                print_json(Command {
                    holder: Some(&holder),
                    ..doc(true, CommandResult::Applied)
                });
            } else {
                println!(
                    "acknowledged: the run journaled the {command}; `{}` follows it",
                    super::hints(run).cmd_with("status", "--watch")
                );
            }
            Ok(exit::OK)
        }
        Sent::Queued => {
            if json {
                print_json(doc(false, CommandResult::Queued));
            } else {
                println!(
                    "{command} recorded for run {run}, but no process is running it: `{}` continues it",
                    super::hints(run).cmd("resume")
                );
            }
            Ok(exit::OK)
        }
        Sent::CarriedOut(r) => {
            let j = location.open()?;
            let s = control::summary(j.as_ref(), &j.run(&r.run_id)?, false)?;
            if json {
                print_json(Command {
                    status: Some(&s.status),
                    summary: Some(&s),
                    ..doc(true, CommandResult::CarriedOut)
                });
            } else {
                print!("\n{}", s.render());
            }
            Ok(outcome_code(&r))
        }
    }
}

/// `resolve`: close a run that left node(s) for a person, once they are
/// fixed: each is checked first (refused, exit 3, while one still fails,
/// unless `--force`).
pub async fn resolve(ctx: &Ctx, run: &str, reason: &str, force: bool) -> Result<u8, Failure> {
    let (_, mut j) = ctx.open_existing()?;
    let run = glidepath::control::resolve_run(j.as_ref(), run)?.id;
    if reason.trim().is_empty() {
        return Err(control::ControlError::ResolveWithoutReason.into());
    }
    let (rec, nodes) = control::to_resolve(j.as_ref(), &run)?;
    let plan = control::journaled_plan(&rec)?;
    ctx.say(&format!(
        "checking {}: health on the release each runs, and back in rotation",
        nodes
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let wrong = control::still_wrong(&plan, &nodes).await;
    let mut reason = reason.trim().to_string();
    if !wrong.is_empty() {
        let list = wrong
            .iter()
            .map(|w| format!("  - {w}"))
            .collect::<Vec<_>>()
            .join("\n");
        if !force {
            let h = super::hints(&run);
            return Err(Failure::new(
                exit::GATE,
                format!(
                    "run {run} is not resolved: what it left for a person is not fine yet:\n{list}\nnothing was journaled\nhint: fix the node(s) and run this again; if a node is retired, or fine as it is, `{}` resolves it anyway (what failed is journaled with your reason)",
                    h.cmd_with("resolve", &format!("--reason {} --force", glidepath::hints::shell_word(&reason)))
                ),
            ));
        }
        reason = format!("{reason} (forced past: {})", wrong.join("; "));
    }
    let done = control::resolve(j.as_mut(), &run, &reason)?;
    let s = control::summary(j.as_ref(), &done.run, true)?;
    if ctx.json() {
        print_json(Command {
            run_id: &run,
            command: "resolve",
            acknowledged: true,
            result: CommandResult::CarriedOut,
            status: Some(&s.status),
            holder: None,
            summary: Some(&s),
        });
    } else {
        println!(
            "run {run} resolved by {}: {reason}; a new run of fleet `{}` (and of any plan on {}) may start",
            done.by,
            done.run.fleet,
            done.nodes.join(", ")
        );
        for p in &done.markers_left {
            println!(
                "warning: this machine's marker {} could not be removed (another user's?): runs from other journals stay refused until it is deleted",
                p.display()
            );
        }
    }
    Ok(exit::OK)
}
