//! The binary's commands, one module each (not part of the library). Each
//! calls the library, prints text or the one JSON document of
//! `glidepath::output`, and returns its exit code. The print macros of
//! `main.rs` are in scope here: output into a closed pipe ends quietly.

pub mod command;
pub mod demo;
pub mod journal;
pub mod lint;
pub mod preflight;
pub mod run;
pub mod serve;
pub mod status;
pub mod system;
pub mod upgrade;
pub mod validate;

use crate::{exit, Failure, Format};
use glidepath::executor::RunResult;
use glidepath::journal::{Journal, Store};
use glidepath::plan::{self, PlanError};
use glidepath::report::{Console, Reporter};
use glidepath_core::{CauseKind, NodeStatus, Outcome};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What every command gets from the global options.
pub struct Ctx {
    pub format: Format,
    pub color: bool,
    /// `--journal` (or `GLIDEPATH_JOURNAL`).
    pub journal: Option<PathBuf>,
    /// `-q`, `-v`.
    pub verbosity: glidepath::report::Verbosity,
}

impl Ctx {
    pub fn json(&self) -> bool {
        self.format == Format::Json
    }

    /// The journal to read: `--journal`, else this machine's.
    pub fn journal_path(&self) -> PathBuf {
        self.journal
            .clone()
            .unwrap_or_else(glidepath::journal::default_path)
    }

    /// `--journal PATH` as the commands this one suggests need it: none
    /// when it is the default journal.
    pub fn journal_arg(&self) -> Option<String> {
        self.journal
            .as_ref()
            .filter(|p| **p != glidepath::journal::default_path())
            .map(|p| p.display().to_string())
    }

    /// The journal to read, which must exist.
    pub fn open_existing(&self) -> Result<(PathBuf, Journal), Failure> {
        let path = self.journal_path();
        if !path.exists() {
            return Err(Failure::new(
                exit::INVALID,
                format!("no journal at {}\nhint: pass --journal PATH (or GLIDEPATH_JOURNAL); the default is one journal per machine and user, in $XDG_STATE_HOME/glidepath/ (~/.local/state/glidepath/)", path.display()),
            ));
        }
        let j = Journal::open(&path)?;
        Ok((path, j))
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
                format!("`glidepath resume {run} --journal {journal}` finishes the run")
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
pub fn print_result(journal_path: &Path, r: &RunResult, ctx: &Ctx) -> Result<u8, Failure> {
    let j = Journal::open(journal_path)?;
    let s = glidepath::control::summary(&j, &j.run(&r.run_id)?, false)?;
    if ctx.json() {
        print_json(&s);
    } else {
        print!("\n{}", s.render());
    }
    Ok(outcome_code(r))
}
