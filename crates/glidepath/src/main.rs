//! The `glidepath` command: argument parsing, output format, and the one
//! place where errors become exit codes. Everything else is in the library.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use glidepath::drivers::Drivers;
use glidepath::executor::{ExecError, Executor, RunResult};
use glidepath::journal::{now_ms, Journal, JournalError, Store};
use glidepath::plan::{self, PlanError};
use glidepath::report::{summarize, Console, Reporter};
use glidepath_core::{CauseKind, NodeStatus, Outcome};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

// Output into a closed pipe (`glidepath status | head -1`) ends quietly:
// these shadow std's macros, which panic when stdout is gone.
macro_rules! println {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}
macro_rules! print {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}
macro_rules! eprintln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}
macro_rules! eprint {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($t)*);
    }};
}

/// Documented exit codes (README "Exit codes").
mod exit {
    pub const OK: u8 = 0;
    pub const ROLLED_BACK: u8 = 1;
    pub const INVALID: u8 = 2;
    pub const GATE: u8 = 3;
    pub const UNREACHABLE: u8 = 4;
    pub const ABORTED: u8 = 5;
    pub const LOCKED: u8 = 6;
    pub const ROLLBACK_FAILED: u8 = 7;
    pub const INTERNAL: u8 = 8;
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Parser)]
#[command(
    name = "glidepath",
    version,
    about = "Executable, provable upgrade runbooks: preflight, canary, SLI watch, batches, automatic rollback."
)]
struct Cli {
    /// Journal database (default: the plan's [journal] path, else one per machine: $XDG_STATE_HOME/glidepath/journal.db).
    #[arg(long, global = true, env = "GLIDEPATH_JOURNAL")]
    journal: Option<PathBuf>,
    /// Output format for reports.
    #[arg(long, global = true, value_enum, default_value = "text")]
    output: Format,
    /// Colors: auto (only on a terminal), always, never.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    color: ColorChoice,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LintReporter {
    Text,
    Json,
    Github,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand)]
enum Cmd {
    /// Rehearse a good and a bad release on a local fleet (needs nothing installed).
    Demo {
        /// Number of demo nodes (at least 2).
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Requests per second of synthetic traffic.
        #[arg(long, default_value_t = 200)]
        rps: u32,
        /// SLI window of the rehearsals.
        #[arg(long, default_value = "6s")]
        window: String,
        /// Probe interval of the rehearsals.
        #[arg(long, default_value = "1s")]
        probe_interval: String,
        /// Keep the work directory (plans, journal, node dirs) afterwards.
        #[arg(long)]
        keep: bool,
        /// Work directory (default: a fresh one under the system temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Check a plan file; report every problem with file:line:column and a hint.
    Validate { plan: PathBuf },
    /// Execute a rollout (preflight first).
    Run {
        plan: PathBuf,
        /// Force past a failing declared gate (repeatable); needs --reason.
        #[arg(long = "force", value_name = "GATE")]
        force: Vec<String>,
        /// Why the forced gates may be ignored (journaled with who and when).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Run every preflight gate and print a verdict table (changes nothing).
    Preflight { plan: PathBuf },
    /// Show a run (default: the latest) per node, with reasons.
    Status { run: Option<String> },
    /// List past runs.
    History {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Finish a run whose process died (kill -9, crash, reboot).
    Resume { run: String },
    /// Continue a run waiting at a pause point (or accept a held SLI breach).
    Promote {
        run: String,
        #[arg(long, default_value = "promoted by operator")]
        reason: String,
    },
    /// Stop a run safely: finish steps in flight, restore half-deployed nodes, re-enable drained ones.
    Abort {
        run: String,
        #[arg(long, default_value = "aborted by operator")]
        reason: String,
    },
    /// Roll back every node that has the run's release.
    Rollback {
        run: String,
        #[arg(long, default_value = "rollback requested by operator")]
        reason: String,
    },
    /// Versions and protocol versions in use, and pairs already incompatible.
    Inventory {
        /// A system file ([[component]]s), or a plan with [system] file = "…".
        file: PathBuf,
        /// Timeout for each instance's version query.
        #[arg(long, default_value = "5s")]
        timeout: String,
    },
    /// Step-by-step safe upgrade order across components.
    Plan {
        /// A system file ([[component]]s), or a plan with [system] file = "…".
        file: PathBuf,
        /// COMPONENT=RELEASE (repeat for several components).
        #[arg(long = "to", value_name = "COMPONENT=RELEASE")]
        to: Vec<String>,
        /// Capability flag to switch on once every member supports it (repeatable).
        #[arg(long = "enable", value_name = "FLAG")]
        enable: Vec<String>,
        #[arg(long, default_value = "5s")]
        timeout: String,
    },
    /// Migration safety lint for rolling deploys (files or directories of .sql).
    Lint {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Output: text, json, or github (workflow annotations).
        #[arg(long, value_enum, default_value = "text")]
        reporter: LintReporter,
    },
    /// Run one demo node (used by `demo` and the tests).
    #[command(hide = true)]
    DemoNode {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        #[arg(long, default_value_t = 150)]
        boot_ms: u64,
    },
}

/// An error with its exit code.
struct Failure {
    code: u8,
    message: String,
    /// The JSON report was already printed (e.g. `validate --output json`).
    reported: bool,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            reported: false,
        }
    }
}

impl From<JournalError> for Failure {
    fn from(e: JournalError) -> Self {
        match &e {
            JournalError::Locked { holder_dead: true, run_id, .. } => Failure::new(
                exit::LOCKED,
                format!("{e}\nhint: that process is gone; `glidepath resume {run_id}` finishes its run, `glidepath abort {run_id}` stops it safely"),
            ),
            JournalError::Locked { .. } => Failure::new(exit::LOCKED, format!("{e}\nhint: wait for it, or `glidepath status` to watch it")),
            JournalError::NoSuchRun(_) => Failure::new(exit::INVALID, format!("{e}\nhint: `glidepath history` lists runs (and --journal picks the database)")),
            JournalError::Fenced { run, .. } => Failure::new(
                exit::LOCKED,
                format!("{e}\nhint: another process resumed this run after this one stopped answering; `glidepath status {run}` follows it"),
            ),
            JournalError::OtherJournal { journal, .. } => Failure::new(
                exit::LOCKED,
                format!("{e}\nhint: drive a fleet from one journal: pass --journal {journal} (or wait for that run to end)"),
            ),
            _ => Failure::new(exit::INTERNAL, e.to_string()),
        }
    }
}

impl From<ExecError> for Failure {
    fn from(e: ExecError) -> Self {
        match e {
            ExecError::Journal(j) => j.into(),
            ExecError::Gate(_) => Failure::new(exit::GATE, format!("{e}\nno node was changed")),
            ExecError::Unreachable(_) => {
                Failure::new(exit::UNREACHABLE, format!("{e}\nno node was changed"))
            }
            ExecError::Interrupted(_) => Failure::new(exit::INTERRUPTED, e.to_string()),
            ExecError::Suspended { .. } => Failure::new(exit::UNREACHABLE, e.to_string()),
            ExecError::BadJournaledPlan { .. } => Failure::new(exit::INTERNAL, e.to_string()),
            ExecError::JournalLost { .. } => Failure::new(exit::INTERNAL, e.to_string()),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::new(exit::INTERNAL, format!("{e:#}"))
    }
}

fn main() -> ExitCode {
    glidepath::executor::install_sigbus_handler(exit::INTERNAL as i32);
    let cli = Cli::parse();
    let color = match cli.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
        }
    };
    let rt = if matches!(cli.cmd, Cmd::DemoNode { .. }) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    let format = cli.output;
    let code = match rt.block_on(dispatch(cli, color)) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("error: {}", f.message);
            if format == Format::Json && !f.reported {
                println!(
                    "{}",
                    serde_json::json!({ "error": f.message, "exit_code": f.code })
                );
            }
            ExitCode::from(f.code)
        }
    };
    // Never wait for a blocked step (a hung driver call) on the way out.
    rt.shutdown_background();
    code
}

/// SIGINT/SIGTERM handlers for the commands that drive a run, installed
/// before anything else: the first signal stops the run safely (a preflight
/// ends as aborted), the second ends the process at once, whatever it waits on.
fn stop_signals() -> glidepath::executor::StopSignals {
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

fn default_journal(cli_journal: &Option<PathBuf>) -> PathBuf {
    cli_journal
        .clone()
        .unwrap_or_else(glidepath::journal::default_path)
}

fn open_existing(path: &Path) -> Result<Journal, Failure> {
    if !path.exists() {
        return Err(Failure::new(
            exit::INVALID,
            format!("no journal at {}\nhint: pass --journal PATH (or GLIDEPATH_JOURNAL); the default is one journal per machine and user, in $XDG_STATE_HOME/glidepath/ (~/.local/state/glidepath/)", path.display()),
        ));
    }
    Ok(Journal::open(path)?)
}

/// Print a file's diagnostics (JSON on stdout, or rendered on stderr) and
/// return the exit-2 failure.
fn invalid(
    report: &glidepath::diag::Report,
    format: Format,
    color: bool,
    message: String,
) -> Failure {
    if format == Format::Json {
        println!(
            "{}",
            serde_json::json!({ "valid": false, "problems": report.json() })
        );
    } else {
        eprint!("{}", report.render(color));
    }
    Failure {
        reported: format == Format::Json,
        ..Failure::new(exit::INVALID, message)
    }
}

fn load_plan(path: &Path, format: Format, color: bool) -> Result<plan::Plan, Failure> {
    match plan::load(path) {
        Ok((p, warnings)) => {
            if !warnings.diags.is_empty() && format == Format::Text {
                eprint!("{}", warnings.render(color));
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
                format,
                color,
                format!("{} has {n} problem(s); nothing was run", path.display()),
            ))
        }
        Err(e @ PlanError::Io { .. }) => Err(Failure::new(exit::INVALID, e.to_string())),
    }
}

fn reporter(format: Format, color: bool) -> Arc<dyn Reporter> {
    match format {
        // machines read stdout; the narration goes to stderr
        Format::Json => Arc::new(Console::new(Box::new(std::io::stderr()), false)),
        Format::Text => Arc::new(Console::new(Box::new(std::io::stdout()), color)),
    }
}

fn outcome_code(r: &RunResult) -> u8 {
    match r.outcome {
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
    }
}

fn print_result(journal_path: &Path, r: &RunResult, format: Format) -> Result<u8, Failure> {
    let j = Journal::open(journal_path)?;
    let rec = j.run(&r.run_id)?;
    let plan = journaled_plan(&rec)?;
    let s = summarize(
        &rec,
        &plan.rollout_spec(),
        &j.events(&r.run_id)?,
        None,
        now_ms(),
    );
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&s).expect("json")),
        Format::Text => print!("\n{}", s.render()),
    }
    Ok(outcome_code(r))
}

async fn dispatch(cli: Cli, color: bool) -> Result<u8, Failure> {
    let format = cli.output;
    match cli.cmd {
        Cmd::DemoNode {
            dir,
            listen,
            boot_ms,
        } => {
            glidepath::demo::node::serve(dir, &listen, boot_ms)
                .await
                .context("demo node")?;
            Ok(exit::OK)
        }
        Cmd::Demo {
            nodes,
            rps,
            window,
            probe_interval,
            keep,
            dir,
        } => {
            if nodes < 2 {
                return Err(Failure::new(
                    exit::INVALID,
                    "--nodes must be at least 2 (a canary and a peer)",
                ));
            }
            for (flag, v) in [("--window", &window), ("--probe-interval", &probe_interval)] {
                plan::parse_duration(v)
                    .map_err(|e| Failure::new(exit::INVALID, format!("{flag} {v}: {e}")))?;
            }
            let bin = std::env::current_exe().context("locating the glidepath binary")?;
            let knobs = glidepath::demo::DemoPlan {
                window,
                probe_interval,
                ..Default::default()
            };
            let opts = glidepath::demo::DemoOptions {
                nodes,
                keep,
                color,
                rps,
                knobs,
                dir,
                quiet: format == Format::Json,
            };
            let report = glidepath::demo::run(&bin, opts).await?;
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&report).expect("json"));
            }
            Ok(if report.passed {
                exit::OK
            } else {
                exit::ROLLED_BACK
            })
        }
        Cmd::Validate { plan: path } => {
            let p = load_plan(&path, format, color)?;
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
                    format,
                    color,
                    format!("{}: checksum mismatch; nothing was run", path.display()),
                ));
            }
            let steps = p.describe();
            if format == Format::Json {
                println!(
                    "{}",
                    serde_json::json!({ "valid": true, "plan": path, "steps": steps })
                );
            } else {
                println!("{}: valid. `glidepath run` would:", path.display());
                for (i, s) in steps.iter().enumerate() {
                    println!("  {}. {s}", i + 1);
                }
            }
            Ok(exit::OK)
        }
        Cmd::Run {
            plan: path,
            force,
            reason,
        } => {
            let forces = match (force.is_empty(), reason) {
                (true, _) => Vec::new(),
                (false, Some(why)) if !why.trim().is_empty() => force.into_iter().map(|g| (g, why.clone())).collect(),
                (false, _) => return Err(Failure::new(exit::INVALID, "--force needs --reason \"why this gate may be ignored\" (it is journaled with who and when)")),
            };
            let stop = stop_signals();
            let p = load_plan(&path, format, color)?;
            let jpath = cli.journal.clone().unwrap_or_else(|| p.journal_path());
            let journal = Journal::open(&jpath)?;
            let drivers = Drivers::for_plan(&p);
            let opts = glidepath::executor::StartOptions {
                forces,
                stop: Some(stop),
                ..Default::default()
            };
            let r =
                Executor::start_with(p, journal, drivers, reporter(format, color), opts).await?;
            print_result(&jpath, &r, format)
        }
        Cmd::Preflight { plan: path } => {
            let p = load_plan(&path, format, color)?;
            let drivers = Drivers::for_plan(&p);
            let (mut results, before) = glidepath::executor::builtin_checks(&p, &drivers).await;
            use glidepath::executor::same_release;
            results.extend(
                glidepath::gates::evaluate(
                    &p.gates,
                    &glidepath::gates::Inputs::of(&p),
                    jiff::Timestamp::now(),
                    same_release(&before).as_deref(),
                )
                .await,
            );
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&results).expect("json"));
            } else {
                print!("{}", glidepath::gates::render(&results));
            }
            let failing: Vec<_> = results
                .iter()
                .filter(|r| r.verdict == glidepath::gates::Verdict::Fail)
                .collect();
            Ok(if failing.is_empty() {
                exit::OK
            } else if failing.iter().all(|r| r.infra) {
                exit::UNREACHABLE
            } else {
                exit::GATE
            })
        }
        Cmd::Resume { run } => {
            let jpath = default_journal(&cli.journal);
            let journal = open_existing(&jpath)?;
            let rec = journal.run(&run)?;
            if is_final(&rec.status) && journal.pending_commands(&run)?.is_empty() {
                println!(
                    "run {run} already finished: {} — {}",
                    rec.status, rec.reason
                );
                return Ok(exit::OK);
            }
            let stop = stop_signals();
            let r = Executor::resume_with(
                journal,
                &run,
                Drivers::for_plan,
                reporter(format, color),
                Some(stop),
            )
            .await?;
            print_result(&jpath, &r, format)
        }
        Cmd::Promote { run, reason } => {
            command(&cli.journal, &run, "promote", &reason, format, color).await
        }
        Cmd::Abort { run, reason } => {
            command(&cli.journal, &run, "abort", &reason, format, color).await
        }
        Cmd::Rollback { run, reason } => {
            command(&cli.journal, &run, "rollback", &reason, format, color).await
        }
        Cmd::Status { run } => {
            let journal = open_existing(&default_journal(&cli.journal))?;
            let rec =
                match run {
                    Some(id) => journal.run(&id)?,
                    None => journal.runs(1)?.into_iter().next().ok_or_else(|| {
                        Failure::new(exit::INVALID, "the journal has no runs yet")
                    })?,
                };
            let plan = journaled_plan(&rec)?;
            let lease = journal.lease_of_run(&rec.id)?;
            let holder = lease.map(|l| {
                if l.holder_dead(now_ms()) {
                    format!(
                        "pid {} on {} is gone — `glidepath resume {}` finishes the run",
                        l.pid, l.host, rec.id
                    )
                } else {
                    format!(
                        "pid {} on {} (since {})",
                        l.pid,
                        l.host,
                        glidepath::journal::fmt_time(l.since)
                    )
                }
            });
            let s = summarize(
                &rec,
                &plan.rollout_spec(),
                &journal.events(&rec.id)?,
                holder,
                now_ms(),
            );
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&s).expect("json")),
                Format::Text => print!("{}", s.render()),
            }
            Ok(exit::OK)
        }
        Cmd::Inventory { file, timeout } => {
            let timeout = plan::parse_duration(&timeout)
                .map_err(|e| Failure::new(exit::INVALID, format!("--timeout: {e}")))?;
            let sf = load_system(&file, format, color)?;
            let sys = glidepath_core::compat::System::new(sf.spec.clone())
                .map_err(|e| Failure::new(exit::INVALID, e.0))?;
            let obs = glidepath::system::collect(&sf, timeout).await;
            let (state, unreachable, unknown) = state_of(&sys, &obs);
            let incompatible = sys.violations(&state);
            // protocol versions in use per axis
            let mut axes: std::collections::BTreeMap<String, Vec<String>> = Default::default();
            for (c, comp) in sys.spec.components.iter().enumerate() {
                for r in (0..comp.releases.len()).filter(|r| state.versions[c] & (1 << r) != 0) {
                    for (axis, range) in &comp.releases[r].protocols {
                        let span = if range.min == range.max {
                            range.min.to_string()
                        } else {
                            format!("{}..{}", range.min, range.max)
                        };
                        let entry =
                            format!("{} {} speaks {span}", comp.name, comp.releases[r].version);
                        let list = axes.entry(axis.clone()).or_default();
                        if !list.contains(&entry) {
                            list.push(entry);
                        }
                    }
                }
            }
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "instances": obs, "axes": axes, "incompatible": incompatible, "unreachable": unreachable, "unknown_versions": unknown })).expect("json"));
            } else {
                println!(
                    "{:<14} {:<22} {:>6}  {:<10} protocols",
                    "component", "instance", "count", "version"
                );
                for o in &obs {
                    let protos = o.version.as_ref().and_then(|v| {
                        let c = sys.component(&o.component)?;
                        let r = sys.release(c, v)?;
                        Some(
                            sys.spec.components[c].releases[r]
                                .protocols
                                .iter()
                                .map(|(a, x)| {
                                    if x.min == x.max {
                                        format!("{a} {}", x.min)
                                    } else {
                                        format!("{a} {}..{}", x.min, x.max)
                                    }
                                })
                                .collect::<Vec<_>>()
                                .join(", "),
                        )
                    });
                    println!(
                        "{:<14} {:<22} {:>6}  {:<10} {}",
                        o.component,
                        o.instance,
                        o.count,
                        o.version.as_deref().unwrap_or("?"),
                        protos.unwrap_or_else(|| o
                            .error
                            .clone()
                            .unwrap_or_else(|| "not a declared release".into()))
                    );
                }
                println!("\nprotocol versions in use, per axis:");
                for (axis, list) in &axes {
                    println!("  {axis}: {}", list.join(" · "));
                }
                if incompatible.is_empty() && unknown.is_empty() && unreachable.is_empty() {
                    println!("\nevery communicating pair in use is compatible");
                }
                for p in &incompatible {
                    println!("INCOMPATIBLE now: {p}");
                }
                for p in unknown.iter().chain(&unreachable) {
                    println!("UNKNOWN: {p}");
                }
            }
            Ok(if !unreachable.is_empty() {
                exit::UNREACHABLE
            } else if !incompatible.is_empty() || !unknown.is_empty() {
                exit::GATE
            } else {
                exit::OK
            })
        }
        Cmd::Plan {
            file,
            to,
            enable,
            timeout,
        } => {
            let timeout = plan::parse_duration(&timeout)
                .map_err(|e| Failure::new(exit::INVALID, format!("--timeout: {e}")))?;
            if to.is_empty() && enable.is_empty() {
                return Err(Failure::new(
                    exit::INVALID,
                    "nothing to plan: give --to COMPONENT=RELEASE (and/or --enable FLAG)",
                ));
            }
            let sf = load_system(&file, format, color)?;
            let sys = glidepath_core::compat::System::new(sf.spec.clone())
                .map_err(|e| Failure::new(exit::INVALID, e.0))?;
            let mut target = glidepath_core::compat::Target::default();
            for t in &to {
                let (c, v) = t.split_once('=').ok_or_else(|| {
                    Failure::new(
                        exit::INVALID,
                        format!("--to {t}: expected COMPONENT=RELEASE"),
                    )
                })?;
                let ci = sys.component(c).ok_or_else(|| {
                    Failure::new(
                        exit::INVALID,
                        format!(
                            "--to {t}: no component `{c}` (components: {})",
                            sys.spec
                                .components
                                .iter()
                                .map(|x| x.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?;
                let ri = sys.release(ci, v).ok_or_else(|| {
                    Failure::new(
                        exit::INVALID,
                        format!(
                            "--to {t}: {c} has no release `{v}` (releases: {})",
                            sys.spec.components[ci]
                                .releases
                                .iter()
                                .map(|r| r.version.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?;
                target.releases.push((ci, ri));
            }
            for f in &enable {
                target.flags.push(sys.capability(f).ok_or_else(|| {
                    Failure::new(exit::INVALID, format!("--enable {f}: no capability `{f}`"))
                })?);
            }
            let obs = glidepath::system::collect(&sf, timeout).await;
            let (state, unreachable, unknown) = state_of(&sys, &obs);
            if !unreachable.is_empty() {
                return Err(Failure::new(
                    exit::UNREACHABLE,
                    format!(
                        "cannot read the versions in use:\n  {}",
                        unreachable.join("\n  ")
                    ),
                ));
            }
            if !unknown.is_empty() {
                return Err(Failure::new(exit::INVALID, format!("versions in use are not declared:\n  {}\nhint: add them as [[component.release]] entries", unknown.join("\n  "))));
            }
            if let Some((c, _)) = sys
                .spec
                .components
                .iter()
                .enumerate()
                .find(|(c, _)| state.versions[*c] == 0)
            {
                return Err(Failure::new(exit::INVALID, format!("component `{}` lists no instances, so its versions in use are unknown\nhint: add instances = [{{ name = \"…\", version = \"…\", count = N }}] for clients that cannot be polled", sys.spec.components[c].name)));
            }
            let current: Vec<String> = sys
                .spec
                .components
                .iter()
                .enumerate()
                .map(|(c, comp)| format!("{} {}", comp.name, sys.versions_of(&state, c).join("+")))
                .collect();
            match sys.plan(&state, &target, 2_000_000) {
                Err(u) => {
                    if format == Format::Json {
                        println!(
                            "{}",
                            serde_json::json!({ "reachable": false, "current": current, "reason": u.reason })
                        );
                    }
                    Err(Failure {
                        reported: format == Format::Json,
                        ..Failure::new(
                            exit::GATE,
                            format!("the target cannot be reached safely: {}", u.reason),
                        )
                    })
                }
                Ok(moves) => {
                    let stages = sys.explain(&state, &moves);
                    if format == Format::Json {
                        let with_plans: Vec<serde_json::Value> = stages
                            .iter()
                            .map(|s| {
                                let mut v = serde_json::to_value(s).expect("json");
                                if let glidepath_core::compat::Stage::Upgrade {
                                    component, ..
                                } = s
                                {
                                    if let Some(p) = sf.rollout_plans.get(component) {
                                        v["rollout_plan"] =
                                            serde_json::Value::String(p.display().to_string());
                                    }
                                }
                                v
                            })
                            .collect();
                        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "reachable": true, "current": current, "stages": with_plans })).expect("json"));
                    } else {
                        println!("current: {}", current.join(" · "));
                        if stages.is_empty() {
                            println!("already there: nothing to do");
                        } else {
                            println!(
                                "{} stage(s), each safe while it rolls node by node:",
                                stages.len()
                            );
                        }
                        for (i, s) in stages.iter().enumerate() {
                            match s {
                                glidepath_core::compat::Stage::Upgrade {
                                    component,
                                    from,
                                    to,
                                    why,
                                } => {
                                    println!("  {}. {component} {} → {to}", i + 1, from.join("+"));
                                    if let Some(p) = sf.rollout_plans.get(component) {
                                        println!(
                                            "     roll out with: glidepath run {} (release {to})",
                                            p.display()
                                        );
                                    }
                                    if !why.is_empty() {
                                        println!("     {why}");
                                    }
                                }
                                glidepath_core::compat::Stage::EnableFlag { flag, why } => {
                                    println!("  {}. switch flag `{flag}` on (every member now supports it)", i + 1);
                                    if !why.is_empty() {
                                        println!("     {why}");
                                    }
                                }
                            }
                        }
                    }
                    Ok(exit::OK)
                }
            }
        }
        Cmd::Lint { paths, reporter } => {
            for p in &paths {
                if !p.exists() {
                    return Err(Failure::new(
                        exit::INVALID,
                        format!("{}: no such file or directory", p.display()),
                    ));
                }
            }
            let reports = glidepath::lint::lint_paths(&paths)
                .map_err(|e| Failure::new(exit::INVALID, e.to_string()))?;
            let reporter = if format == Format::Json {
                LintReporter::Json
            } else {
                reporter
            };
            match reporter {
                LintReporter::Text => print!("{}", glidepath::lint::render_text(&reports)),
                LintReporter::Github => print!("{}", glidepath::lint::render_github(&reports)),
                LintReporter::Json => {
                    println!("{}", serde_json::to_string_pretty(&reports).expect("json"))
                }
            }
            // a file that cannot be read or parsed is invalid input; the others are still reported
            Ok(if reports.iter().any(|r| r.invalid()) {
                exit::INVALID
            } else if reports.iter().any(|r| r.failed()) {
                exit::GATE
            } else {
                exit::OK
            })
        }
        Cmd::History { limit } => {
            let journal = open_existing(&default_journal(&cli.journal))?;
            let runs = journal.runs(limit)?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&runs).expect("json")),
                Format::Text => {
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
                }
            }
            Ok(exit::OK)
        }
    }
}

fn load_system(
    path: &Path,
    format: Format,
    color: bool,
) -> Result<glidepath::system::SystemFile, Failure> {
    match glidepath::system::load(path) {
        Ok(s) => Ok(s),
        Err(PlanError::Invalid(report)) => Err(invalid(
            &report,
            format,
            color,
            format!("{} is invalid; nothing was done", path.display()),
        )),
        Err(e) => Err(Failure::new(exit::INVALID, e.to_string())),
    }
}

/// Observed versions → planner state; problems that prevent knowing it.
fn state_of(
    sys: &glidepath_core::compat::System,
    obs: &[glidepath::system::Observed],
) -> (glidepath_core::compat::State, Vec<String>, Vec<String>) {
    let mut versions = vec![0u64; sys.spec.components.len()];
    let (mut unreachable, mut unknown) = (Vec::new(), Vec::new());
    for o in obs {
        let c = sys.component(&o.component).expect("declared");
        match (&o.version, &o.error) {
            (Some(v), _) => match sys.release(c, v) {
                Some(r) => versions[c] |= 1 << r,
                None => unknown.push(format!(
                    "{} {} runs {v}, which is not a declared release of {}",
                    o.component, o.instance, o.component
                )),
            },
            (None, e) => unreachable.push(format!(
                "{} {}: {}",
                o.component,
                o.instance,
                e.clone().unwrap_or_default()
            )),
        }
    }
    (
        glidepath_core::compat::State { versions, flags: 0 },
        unreachable,
        unknown,
    )
}

/// The plan a run was started with, as journaled.
fn journaled_plan(rec: &glidepath::journal::RunRecord) -> Result<plan::Plan, Failure> {
    let path = Path::new(&rec.plan_path);
    plan::parse(
        path,
        &rec.plan_source,
        path.parent().unwrap_or(Path::new(".")),
    )
    .map(|(p, _)| p)
    .map_err(|_| {
        Failure::new(
            exit::INTERNAL,
            format!("the plan journaled for run {} no longer parses", rec.id),
        )
    })
}

fn is_final(status: &str) -> bool {
    matches!(
        status,
        "succeeded" | "rolled_back" | "aborted" | "rollback_failed" | "refused"
    )
}

/// promote / abort / rollback: queue the command for the live process, or
/// carry it out here when no process holds the run.
async fn command(
    journal: &Option<PathBuf>,
    run: &str,
    kind: &str,
    reason: &str,
    format: Format,
    color: bool,
) -> Result<u8, Failure> {
    let jpath = default_journal(journal);
    let j = open_existing(&jpath)?;
    let rec = j.run(run)?;
    if rec.status == "refused" {
        return Err(Failure::new(
            exit::INVALID,
            format!("run {run} was refused at preflight; nothing to {kind}"),
        ));
    }
    if is_final(&rec.status) && kind == "promote" {
        return Err(Failure::new(
            exit::INVALID,
            format!(
                "run {run} already finished ({}): no pause waits for a promote",
                rec.status
            ),
        ));
    }
    if is_final(&rec.status) && kind != "rollback" {
        println!(
            "run {run} already finished ({}); nothing to {kind}",
            rec.status
        );
        return Ok(exit::OK);
    }
    if kind == "abort" {
        let plan = journaled_plan(&rec)?;
        let state = glidepath_core::RunState::replay(&plan.rollout_spec(), &j.events(run)?);
        if state.phase == glidepath_core::Phase::RollingBack {
            return Err(Failure::new(
                exit::INVALID,
                format!("run {run} is rolling back; abort would leave nodes half-restored, so the rollback continues (`glidepath status {run}`)"),
            ));
        }
    }
    if kind == "promote" {
        let plan = journaled_plan(&rec)?;
        let spec = plan.rollout_spec();
        let state = glidepath_core::RunState::replay(&spec, &j.events(run)?);
        if glidepath_core::awaiting_promotion(&spec, &state).is_none() {
            let now = glidepath_core::decide(&spec, &state, now_ms())
                .waiting
                .map(|w| format!(" (it waits for: {w})"))
                .unwrap_or_default();
            return Err(Failure::new(
                exit::INVALID,
                format!("run {run} is not waiting at a pause point{now}: promote acts only on a pause that waits now, so nothing was sent\nhint: `glidepath status {run}` shows what the run does; pause points are [strategy] pauses"),
            ));
        }
    }
    let id = j.push_command(
        run,
        kind.parse().map_err(|e: glidepath::journal::UnknownName| {
            Failure::new(exit::INTERNAL, e.to_string())
        })?,
        reason,
    )?;
    let lease = j.lease_of_run(run)?;
    if let Some(l) = lease.filter(|l| !l.holder_dead(now_ms())) {
        println!(
            "{kind} sent to run {run} (pid {} on {}); waiting for it to act…",
            l.pid, l.host
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            match j.command_outcome(id)?.as_deref() {
                None => {}
                Some("applied") => {
                    println!("acknowledged: the run journaled the {kind}; `glidepath status {run}` follows it");
                    return Ok(exit::OK);
                }
                Some(why) => {
                    return Err(Failure::new(
                        exit::INVALID,
                        format!("run {run} refused the {kind}: {why}"),
                    ))
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        return Err(Failure::new(
            exit::UNREACHABLE,
            format!("run {run} did not pick up the {kind} within 30s; it stays queued"),
        ));
    }
    if kind == "promote" {
        println!("promote recorded for run {run}, but no process is running it: `glidepath resume {run}` continues it");
        return Ok(exit::OK);
    }
    println!("no live process holds run {run}: carrying out the {kind} here");
    let stop = stop_signals();
    let r = Executor::resume_with(
        j,
        run,
        Drivers::for_plan,
        reporter(format, color),
        Some(stop),
    )
    .await?;
    print_result(&jpath, &r, format)
}
