//! The binary's commands, one module each (not part of the library). Each
//! calls the library, prints text or the one JSON document of
//! `glidepath::output`, and returns its exit code. The print macros of
//! `main.rs` are in scope here: output into a closed pipe ends quietly.

pub mod adopt;
pub mod command;
pub mod demo;
pub mod init;
pub mod journal;
pub mod lint;
pub mod preflight;
pub mod report;
pub mod run;
pub mod serve;
pub mod status;
pub mod system;
pub mod tools;
pub mod upgrade;
pub mod validate;

use crate::{exit, Failure, Format};
use glidepath::executor::RunResult;
use glidepath::journal::{Location, Store};
use glidepath::plan::{self, PlanError};
use glidepath::report::{Console, Reporter};
use glidepath_core::{CauseKind, NodeStatus, Outcome};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;

/// What every command gets from the global options.
pub struct Ctx {
    pub format: Format,
    pub color: bool,
    /// `--journal` (or `GLIDEPATH_JOURNAL`) as given: a SQLite path or a
    /// PostgreSQL URL, read by [`Ctx::journal_location`] when a command
    /// needs a journal (a command that does not is not refused for it).
    pub journal: Option<String>,
    /// `-q`, `-v`.
    pub verbosity: glidepath::report::Verbosity,
}

impl Ctx {
    pub fn json(&self) -> bool {
        self.format == Format::Json
    }

    /// `--journal` (or `GLIDEPATH_JOURNAL`) if given, read: a bad one is
    /// refused (exit 2), naming it without its password.
    pub fn given_journal(&self) -> Result<Option<Location>, Failure> {
        let Some(given) = self.journal.as_deref() else {
            return Ok(None);
        };
        Location::parse(given).map(Some).map_err(|e| {
            Failure::new(
                exit::INVALID,
                format!("--journal: {e}\nhint: --journal (or GLIDEPATH_JOURNAL) is a SQLite file's path or postgres://USER@HOST:PORT/DATABASE; the database's password comes from GLIDEPATH_JOURNAL_PASSWORD_FILE (a file) or GLIDEPATH_JOURNAL_PASSWORD"),
            )
        })
    }

    /// The journal to use: `--journal`, else this machine's.
    pub fn journal_location(&self) -> Result<Location, Failure> {
        let l = self
            .given_journal()?
            .unwrap_or_else(|| glidepath::journal::default_path().into());
        used_journal(&l);
        Ok(l)
    }

    /// `--journal …` as the commands this one suggests need it (a path, or
    /// the URL without its password): none when it is the default journal.
    pub fn journal_arg(&self) -> Option<String> {
        self.given_journal()
            .ok()
            .flatten()
            .filter(|l| *l != Location::from(glidepath::journal::default_path()))
            .map(|l| l.to_string())
    }

    /// The journal to read, which must exist (a database always "exists":
    /// opening it says whether it answers).
    pub fn open_existing(&self) -> Result<(Location, Box<dyn Store>), Failure> {
        let location = self.journal_location()?;
        if !location.exists() {
            return Err(Failure::new(
                exit::INVALID,
                format!("no journal at {location}\nhint: pass --journal PATH (or GLIDEPATH_JOURNAL; a postgres:// URL for a shared journal); the default is one journal per machine and user, in $XDG_STATE_HOME/glidepath/ (~/.local/state/glidepath/). A plan with `[journal] path` journals there: give that path (relative to the plan's directory) to --journal"),
            ));
        }
        let j = location.open()?;
        Ok((location, j))
    }

    /// The live narration: stdout for people, stderr when stdout is JSON;
    /// on a terminal, with the live progress area (not with `-q`).
    pub fn reporter(&self) -> Arc<dyn Reporter> {
        use glidepath::report::Verbosity;
        use std::io::IsTerminal;
        let v = self.verbosity;
        match self.format {
            Format::Json => {
                Arc::new(Console::new(Box::new(std::io::stderr()), false).with_verbosity(v))
            }
            Format::Text if v != Verbosity::Quiet && std::io::stdout().is_terminal() => {
                glidepath::live::Live::new(self.color, v)
            }
            Format::Text => {
                Arc::new(Console::new(Box::new(std::io::stdout()), self.color).with_verbosity(v))
            }
        }
    }

    /// A sentence for people: stdout in text, stderr when stdout is JSON.
    pub fn say(&self, s: &str) {
        if self.json() {
            eprintln!("{s}");
        } else {
            println!("{s}");
        }
    }
}

/// The journal this command uses, once known: the hints of its messages
/// name it ([`hints`]).
static JOURNAL_USED: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Record the journal this command uses (the first one given counts).
pub fn used_journal(l: &Location) {
    let _ = JOURNAL_USED.set(l.to_string());
}

/// The commands a message suggests for `run`: its id, and `--journal` when
/// the journal this command uses is not the default one.
pub fn hints(run: &str) -> glidepath::hints::Hints {
    match JOURNAL_USED.get() {
        Some(j) => glidepath::hints::Hints::new(run, j),
        None => glidepath::hints::Hints::with_arg(run, None),
    }
}

/// The commands that apply to a run now, as lines to append to a message
/// (empty when none does).
pub fn next_after(j: &dyn Store, run: &str) -> Result<String, Failure> {
    let rec = j.run(run)?;
    let s = glidepath::control::summary(j, &rec, true)?;
    Ok(s.next_commands
        .iter()
        .map(|c| format!("\nnext: {c}"))
        .collect())
}

/// Print the command's one JSON document.
pub fn print_json<T: Serialize>(body: T) {
    println!("{}", glidepath::output::document(body));
}

/// SIGINT/SIGTERM handlers for the commands that drive a run, installed
/// before anything else: the first signal stops the run safely (a preflight
/// ends as aborted), the second ends the process at once, whatever it waits on.
pub fn stop_signals() -> glidepath::executor::StopSignals {
    glidepath::executor::watch_signals(|name| {
        let hint = match glidepath::executor::active_run() {
            Some((run, journal)) => {
                format!(
                    "`{}` finishes the run",
                    glidepath::hints::Hints::new(&run, &journal).cmd("resume")
                )
            }
            None => "no run had started".to_string(),
        };
        // the commands in flight go with the process (their groups)
        glidepath::shell::kill_all();
        eprintln!("error: second {name}: stopped immediately; the journal is intact, {hint}");
        std::process::exit(exit::INTERRUPTED as i32);
    })
}

/// Print a file's diagnostics (JSON on stdout, or rendered on stderr) and
/// return the exit-2 failure.
pub fn invalid(report: &glidepath::diag::Report, ctx: &Ctx, message: String) -> Failure {
    if ctx.json() {
        print_json(glidepath::output::Invalid {
            valid: false,
            problems: report.json(),
            error: &message,
            exit_code: exit::INVALID,
        });
    } else {
        eprint!("{}", report.render(ctx.color));
    }
    Failure {
        reported: ctx.json(),
        ..Failure::new(exit::INVALID, message)
    }
}

pub fn load_plan(path: &Path, ctx: &Ctx) -> Result<plan::Plan, Failure> {
    load_plan_with(path, ctx, &plan::ReleaseOverride::default())
}

/// [`load_plan`] with the release overridden (`run --release …`).
pub fn load_plan_with(
    path: &Path,
    ctx: &Ctx,
    o: &plan::ReleaseOverride,
) -> Result<plan::Plan, Failure> {
    match plan::load_with(path, o) {
        Ok((p, warnings)) => {
            if !warnings.diags.is_empty() && !ctx.json() {
                eprint!("{}", warnings.render(ctx.color));
            }
            Ok(p)
        }
        Err(PlanError::Invalid(report)) => {
            let n = report
                .diags
                .iter()
                .filter(|d| d.severity == glidepath::diag::Severity::Error)
                .count();
            Err(invalid(
                &report,
                ctx,
                format!("{} has {n} problem(s); nothing was run", path.display()),
            ))
        }
        Err(e @ (PlanError::Io { .. } | PlanError::Override { .. })) => {
            Err(Failure::new(exit::INVALID, e.to_string()))
        }
    }
}

/// A run's exit code from how it ended.
pub fn outcome_code(r: &RunResult) -> u8 {
    match r.outcome {
        // a node that failed within the failure budget and whose restore
        // failed is kept out of rotation for a person, even in a success
        Outcome::Succeeded
            if r.state
                .nodes
                .values()
                .any(|n| n.status == NodeStatus::Failed && n.out_of_rotation) =>
        {
            exit::ROLLBACK_FAILED
        }
        Outcome::Succeeded => exit::OK,
        Outcome::RolledBack
            if r.state
                .cause
                .as_ref()
                .is_some_and(|c| c.kind == CauseKind::Infra) =>
        {
            exit::UNREACHABLE
        }
        Outcome::RolledBack => exit::ROLLED_BACK,
        Outcome::Aborted => exit::ABORTED,
        // 7 only when a node is really kept out of rotation for a human; a
        // restore that failed with the node in rotation is reported as such.
        Outcome::RollbackFailed
            if r.state
                .nodes
                .values()
                .any(|n| n.status == NodeStatus::Failed && n.out_of_rotation) =>
        {
            exit::ROLLBACK_FAILED
        }
        Outcome::RollbackFailed => exit::ROLLED_BACK,
        // a pre task failed: like a gate, before any node changed
        Outcome::Failed => exit::GATE,
    }
}

/// The end of `run`, `resume` and a taken-over `abort`/`rollback`: the
/// run's summary (text, or the JSON document), and its exit code.
pub fn print_result(journal: &Location, r: &RunResult, ctx: &Ctx) -> Result<u8, Failure> {
    let j = journal.open()?;
    let s = glidepath::control::summary(j.as_ref(), &j.run(&r.run_id)?, false)?;
    if ctx.json() {
        print_json(&s);
    } else {
        print!("\n{}", s.render());
    }
    Ok(outcome_code(r))
}
