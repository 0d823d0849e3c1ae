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
        j,
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
            if json {
                print_json(Command {
                    status: Some(&status),
                    ..doc(false, CommandResult::AlreadyFinished)
                });
            } else {
                println!("run {run} already finished ({status}); nothing to {command}");
            }
            Ok(exit::OK)
        }
        Sent::Applied { holder } => {
            if json {
                print_json(Command {
                    holder: Some(&holder),
                    ..doc(true, CommandResult::Applied)
                });
            } else {
                println!("acknowledged: the run journaled the {command}; `glidepath status {run} --watch{}` follows it", ctx.journal_arg().map(|p| format!(" --journal {p}")).unwrap_or_default());
            }
            Ok(exit::OK)
        }
        Sent::Queued => {
            if json {
                print_json(doc(false, CommandResult::Queued));
            } else {
                println!("{command} recorded for run {run}, but no process is running it: `glidepath resume {run}` continues it");
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
