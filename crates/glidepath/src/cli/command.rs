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

/// `resolve`: close a rollback_failed run after a person fixed its node(s).
pub fn resolve(ctx: &Ctx, run: &str, reason: &str) -> Result<u8, Failure> {
    let (_, mut j) = ctx.open_existing()?;
    let run = glidepath::control::resolve_run(j.as_ref(), run)?.id;
    let done = control::resolve(j.as_mut(), &run, reason)?;
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
            "run {run} resolved by {}: {}; a new run of fleet `{}` may start",
            done.by,
            reason.trim(),
            done.run.fleet
        );
    }
    Ok(exit::OK)
}
