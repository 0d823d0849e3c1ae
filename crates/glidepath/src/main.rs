//! The `glidepath` command: argument parsing, and the one place where
//! errors become exit codes. Each command is a module of `cli/` (part of
//! this binary); what they compute is in the library, and what they print
//! with `--output json` is `glidepath::output`.

use clap::{Parser, Subcommand, ValueEnum};
use glidepath::campaign::CampaignError;
use glidepath::control::ControlError;
use glidepath::executor::ExecError;
use glidepath::journal::JournalError;
use glidepath::upgrade::UpgradeError;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

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

mod cli;

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
    /// Nothing to do: the run already ended (or no node runs its release
    /// any more); nothing was changed or journaled.
    pub const NOTHING_TO_DO: u8 = 9;
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Parser)]
#[command(
    name = "glidepath",
    version,
    about = "Executable, provable upgrade runbooks: preflight, canary, SLI watch, batches, automatic rollback."
)]
pub(crate) struct Cli {
    /// Journal: a SQLite file, or postgres://USER@HOST:PORT/DATABASE shared by a team (password from GLIDEPATH_JOURNAL_PASSWORD_FILE or GLIDEPATH_JOURNAL_PASSWORD). Default: for run, preflight and validate the plan's [journal]; else (and for every command that takes a run id) one per machine: $XDG_STATE_HOME/glidepath/journal.db.
    #[arg(long, global = true, env = "GLIDEPATH_JOURNAL", hide_env_values = true)]
    journal: Option<String>,
    /// Output format for reports.
    #[arg(long, global = true, value_enum, default_value = "text")]
    output: Format,
    /// Colors: auto (only on a terminal), always, never.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    color: ColorChoice,
    /// Compact narration: one line per node step (no live progress area).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// More narration: every probe and poll, and the drivers' detail.
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}

/// `report --format`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReportFormat {
    Md,
    Html,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LintReporter {
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
    /// Rehearse a good release, a bad one, and a good one through a fleet-wide incident, on a local fleet (needs nothing installed).
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
        /// Keep the work directory (plans, journal, node dirs, logs) and leave the demo fleet running; `--stop DIR` stops it.
        #[arg(long)]
        keep: bool,
        /// Stop the demo fleet a `demo --keep` left running in DIR (only its own node processes, by pid).
        #[arg(long, value_name = "DIR", conflicts_with_all = ["keep", "dir"])]
        stop: Option<PathBuf>,
        /// Work directory (default: a fresh one under the system temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Write a commented first plan (from flags, or a short dialogue on a terminal), validated before it is written.
    Init(cli::init::InitArgs),
    /// Record what each node runs today as its first release (releases/<version> and current), for a fleet glidepath never deployed.
    ///
    /// Preflight refuses a fleet without a rollback target: a node needs `current` pointing at a release in `releases/`.
    /// `adopt` copies each node's install dir (every entry but releases/, current, hidden ones and --exclude) into
    /// releases/<version> and points `current` at it atomically. The running service is not touched: it keeps running
    /// on the files it started with, and the next restart (by glidepath: the plan's `restart`) must start the release in
    /// <install_dir>/current. The version comes from --release, else the plan's [health] version_url (each node's answer).
    /// A node whose `current` already points at a release is reported `already adopted` and left alone.
    /// For the local and ssh deployers; with kind = "command", your `current` command reports the release.
    /// Exit codes: 0 adopted (or nothing to do), 2 bad input (plan, no version known, a command deployer),
    /// 3 a node cannot be adopted (nothing was changed on any node), 4 a node unreachable.
    Adopt {
        plan: PathBuf,
        /// The version the nodes run today (default: each node's [health] version_url answer).
        #[arg(long = "release", value_name = "VERSION")]
        release: Option<String>,
        /// Leave this entry of the install dir out of the release (logs, data; repeatable).
        #[arg(long, value_name = "NAME")]
        exclude: Vec<String>,
        /// Print what would be done, change nothing.
        #[arg(long)]
        dry_run: bool,
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
        /// Roll out this release instead of the plan's `[release] version`
        /// (the plan's release is a default).
        #[arg(long = "release", value_name = "VERSION")]
        release: Option<String>,
        /// The release's artifact (relative to the current directory).
        #[arg(long, value_name = "PATH")]
        artifact: Option<PathBuf>,
        /// The artifact's reviewed sha256.
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
    },
    /// Run every preflight gate and print a verdict table (changes nothing).
    Preflight { plan: PathBuf },
    /// Show a run (default: the latest) per node, with reasons; or a campaign (c…) stage by stage.
    /// RUN is a run id, a unique prefix of one, or `latest`.
    Status {
        run: Option<String>,
        /// Follow the run until it ends (redrawn in place on a terminal,
        /// one line per change otherwise); exits with the run's exit code.
        #[arg(long)]
        watch: bool,
    },
    /// A run's report to attach to a change ticket: plan, who and where, gates, snapshot, decisions, SLI charts, steps, rollback.
    /// RUN is a run id, a unique prefix of one, or `latest` (the default).
    Report {
        run: Option<String>,
        /// md (default; json with --output json), html (one self-contained page), or json.
        #[arg(long, value_enum)]
        format: Option<ReportFormat>,
        /// Write the report to FILE instead of stdout.
        #[arg(long, short = 'o', value_name = "FILE")]
        out: Option<PathBuf>,
    },
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
        /// Why (journaled; required with --force).
        #[arg(long)]
        reason: Option<String>,
        /// Roll back even though irreversible tasks ran (they stay as they are).
        #[arg(long)]
        force: bool,
    },
    /// Close a run that left node(s) for a person (rollback_failed, or a node kept out of rotation) once they are fixed: each node is checked (health, back in rotation), then it is journaled with who and why; a new run on those nodes is refused until then.
    Resolve {
        run: String,
        /// What was fixed (journaled with who and when).
        #[arg(long)]
        reason: String,
        /// Resolve although a node still fails its checks (a node retired,
        /// or fine as it is): what failed is journaled with the reason.
        #[arg(long)]
        force: bool,
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
    /// Carry out the stages `plan` computes, one after another, as one journaled campaign.
    Upgrade {
        /// A system file ([[component]]s), or a plan with [system] file = "…".
        #[arg(required_unless_present = "resume")]
        file: Option<PathBuf>,
        /// COMPONENT=RELEASE (repeat for several components).
        #[arg(long = "to", value_name = "COMPONENT=RELEASE")]
        to: Vec<String>,
        /// Capability flag to switch on once every member supports it (repeatable).
        #[arg(long = "enable", value_name = "FLAG")]
        enable: Vec<String>,
        /// Timeout for each instance's version query.
        #[arg(long, default_value = "5s")]
        timeout: String,
        /// Continue a campaign (its id, c…) that stopped or whose process died.
        #[arg(long, value_name = "CAMPAIGN", conflicts_with_all = ["file", "to", "enable"])]
        resume: Option<String>,
    },
    /// Print the sha256 a plan's `[release] sha256` needs for a file or a directory (what every deployer verifies).
    Hash {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Print a directory's manifest (what its sha256 is taken of) instead.
        #[arg(long)]
        manifest: bool,
    },
    /// Print the shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout, or with --dir write one per command.
    Man {
        /// Write glidepath.1 and glidepath-COMMAND.1 into DIR.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Migration safety lint for rolling deploys (files or directories of .sql).
    Lint {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Output: text (the default), json, or github (workflow annotations).
        /// `--output json` is `--reporter json`; with another reporter it is refused.
        #[arg(long, value_enum)]
        reporter: Option<LintReporter>,
    },
    /// Serve a dashboard, a JSON API with live events, operator actions and /metrics, from the journal.
    Serve {
        /// Address to listen on (loopback unless --allow-remote).
        #[arg(long, default_value = glidepath::serve::DEFAULT_LISTEN)]
        listen: String,
        /// Listen on an address other than loopback (put a TLS proxy in front).
        #[arg(long)]
        allow_remote: bool,
        /// Environment variable holding the actions' bearer token.
        #[arg(long, value_name = "VAR", conflicts_with = "token_file")]
        token_env: Option<String>,
        /// File holding the actions' bearer token (mode 600).
        #[arg(long, value_name = "PATH")]
        token_file: Option<PathBuf>,
    },
    /// Move runs between journals (export/import) and describe one (info).
    Journal {
        #[command(subcommand)]
        cmd: JournalCmd,
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

#[derive(Subcommand)]
enum JournalCmd {
    /// Write runs and campaigns (default: every one) as JSON Lines, from --journal.
    Export {
        /// Runs (an id, a unique prefix, `latest`) and campaigns (c…, with their runs).
        #[arg(value_name = "RUN")]
        items: Vec<String>,
        /// Write the dump to FILE (default: stdout).
        #[arg(long, short = 'f', value_name = "FILE")]
        file: Option<PathBuf>,
        /// Export runs whose process is alive too, as they stand now.
        #[arg(long)]
        include_live: bool,
    },
    /// Add the runs and campaigns of a dump (FILE, or - for stdin) to --journal.
    Import { file: PathBuf },
    /// The journal's backend, location, schema version, runs and live leases.
    Info,
}

/// An error with its exit code.
pub(crate) struct Failure {
    code: u8,
    message: String,
    /// The JSON report was already printed (e.g. `validate --output json`).
    reported: bool,
}

impl Failure {
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            reported: false,
        }
    }
}

/// The exit code of a journal error.
fn journal_code(e: &JournalError) -> u8 {
    match e {
        JournalError::Locked { .. }
        | JournalError::Fenced { .. }
        | JournalError::OtherJournal { .. }
        | JournalError::NodeBusy { .. }
        | JournalError::CampaignHeld { .. } => exit::LOCKED,
        JournalError::NoSuchRun(_)
        | JournalError::NoSuchCampaign(_)
        | JournalError::NewerSchema { .. }
        | JournalError::BadLocation { .. }
        | JournalError::ImportConflict { .. }
        | JournalError::Unsupported { .. } => exit::INVALID,
        JournalError::Unavailable { .. } => exit::UNREACHABLE,
        _ => exit::INTERNAL,
    }
}

/// The exit code of an executor error (what `From<ExecError>` gives).
pub(crate) fn exec_code(e: &ExecError) -> u8 {
    match e {
        ExecError::Journal(j) => journal_code(j),
        ExecError::Gate(_) | ExecError::Unresolved { .. } | ExecError::HeldOnMachine(_) => {
            exit::GATE
        }
        ExecError::Unreachable(_) | ExecError::Suspended { .. } => exit::UNREACHABLE,
        ExecError::Interrupted(..) => exit::INTERRUPTED,
        ExecError::JournalLost {
            unreachable: true, ..
        } => exit::UNREACHABLE,
        ExecError::BadJournaledPlan { .. } | ExecError::JournalLost { .. } => exit::INTERNAL,
    }
}

impl From<JournalError> for Failure {
    fn from(e: JournalError) -> Self {
        match &e {
            JournalError::Locked { holder_dead: true, run_id, .. } => {
                let h = cli::hints(run_id);
                Failure::new(
                    exit::LOCKED,
                    format!("{e}\nhint: that process is gone; `{}` finishes its run, `{}` stops it safely", h.cmd("resume"), h.cmd("abort")),
                )
            }
            JournalError::Locked { run_id, heartbeat_age_ms, ttl_ms, .. } => {
                let h = cli::hints(run_id);
                Failure::new(exit::LOCKED, format!(
                    "{e}\nhint: wait for it (`{}` follows it to its end); its last heartbeat was {:.1}s ago: should it have stopped answering, `{}` takes it over once that passes {}s",
                    h.cmd_with("status", "--watch"),
                    *heartbeat_age_ms as f64 / 1000.0,
                    h.cmd("resume"),
                    ttl_ms / 1000
                ))
            }
            JournalError::NoSuchRun(_) => Failure::new(exit::INVALID, format!("{e}\nhint: `glidepath history` lists runs; a run is named by its id, a unique prefix of it, or `latest` (and --journal picks the database)")),
            JournalError::Fenced { run, .. } => Failure::new(
                exit::LOCKED,
                format!("{e}\nhint: another process resumed this run after this one stopped answering; `{}` follows it", cli::hints(run).cmd_with("status", "--watch")),
            ),
            JournalError::OtherJournal { journal, .. } => Failure::new(
                exit::LOCKED,
                format!("{e}\nhint: drive a fleet from one journal: pass --journal {} (or wait for that run to end)", glidepath::hints::shell_word(journal)),
            ),
            JournalError::NodeBusy { run, .. } => Failure::new(
                exit::LOCKED,
                format!("{e}\nhint: wait for it (`glidepath status {run} --watch`) or stop it (`glidepath abort {run}`); plans that share nodes should share one `[fleet] name`, so that one lease covers them"),
            ),
            JournalError::NoSuchCampaign(_) => Failure::new(exit::INVALID, format!("{e}\nhint: `glidepath upgrade` prints its campaign's id (c…), and --journal picks the database")),
            JournalError::Unavailable { .. } => Failure::new(exit::UNREACHABLE, format!("{e}\nhint: check that the server runs and this machine reaches it")),
            JournalError::NewerSchema { .. } => Failure::new(exit::INVALID, format!("{e}\nhint: a newer glidepath wrote this journal; use that version (or newer) here")),
            JournalError::CampaignHeld { campaign, .. } => Failure::new(exit::LOCKED, format!("{e}\nhint: wait for it, or `glidepath status {campaign}` to see where it stands")),
            _ => Failure::new(journal_code(&e), e.to_string()),
        }
    }
}

impl From<ExecError> for Failure {
    fn from(e: ExecError) -> Self {
        match e {
            ExecError::Journal(j) => j.into(),
            ExecError::Gate(_) => Failure::new(exit::GATE, format!("{e}\nno node was changed")),
            ExecError::Unresolved { .. } | ExecError::HeldOnMachine(_) => {
                Failure::new(exit::GATE, e.to_string())
            }
            ExecError::Unreachable(_) => {
                Failure::new(exit::UNREACHABLE, format!("{e}\nno node was changed"))
            }
            ExecError::Interrupted(..) => Failure::new(exit::INTERRUPTED, e.to_string()),
            ExecError::Suspended { .. } => Failure::new(exit::UNREACHABLE, e.to_string()),
            ExecError::BadJournaledPlan { .. } => Failure::new(exit::INTERNAL, e.to_string()),
            ExecError::JournalLost { .. } => Failure::new(exec_code(&e), e.to_string()),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::new(exit::INTERNAL, format!("{e:#}"))
    }
}

impl From<ControlError> for Failure {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Journal(j) => j.into(),
            ControlError::Exec(x) => x.into(),
            ControlError::NotPickedUp { .. } => Failure::new(exit::UNREACHABLE, e.to_string()),
            ControlError::RefusedAtPreflight { .. } | ControlError::PromoteFinished { .. } => {
                Failure::new(exit::NOTHING_TO_DO, e.to_string())
            }
            ControlError::NotRollbackFailed { status, .. } if status.is_final() => {
                Failure::new(exit::NOTHING_TO_DO, e.to_string())
            }
            ControlError::NotRollbackFailed { .. } | ControlError::ResolveWithoutReason => {
                Failure::new(exit::INVALID, e.to_string())
            }
            ControlError::RollingBack { .. }
            | ControlError::NotPaused { .. }
            | ControlError::RefusedByRun { .. }
            | ControlError::Irreversible { .. }
            | ControlError::AmbiguousRun { .. }
            | ControlError::NoRuns
            | ControlError::ForceWithoutReason => Failure::new(exit::INVALID, e.to_string()),
        }
    }
}

impl From<CampaignError> for Failure {
    fn from(e: CampaignError) -> Self {
        match e {
            CampaignError::Upgrade(u) => u.into(),
            CampaignError::Journal(j) => j.into(),
            CampaignError::Unreachable(_) => Failure::new(exit::GATE, e.to_string()),
            CampaignError::NotReady(_) | CampaignError::Failed { .. } => {
                Failure::new(exit::INVALID, e.to_string())
            }
        }
    }
}

impl From<UpgradeError> for Failure {
    fn from(e: UpgradeError) -> Self {
        let code = match e {
            UpgradeError::Unreachable(_) => exit::UNREACHABLE,
            UpgradeError::Declarations(_)
            | UpgradeError::BadTarget(_)
            | UpgradeError::UnknownVersions(_)
            | UpgradeError::NoInstances(_) => exit::INVALID,
        };
        Failure::new(code, e.to_string())
    }
}

fn main() -> ExitCode {
    glidepath::executor::install_sigbus_handler(exit::INTERNAL as i32);
    let cli = Cli::parse();
    // the journal's password goes no further than this process: no command
    // of a plan inherits it (still one thread here)
    glidepath::journal::postgres::take_password_env();
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
                    glidepath::output::document(glidepath::output::Error {
                        error: &f.message,
                        exit_code: f.code,
                    })
                );
            }
            ExitCode::from(f.code)
        }
    };
    // Never wait for a blocked step (a hung driver call) on the way out.
    rt.shutdown_background();
    code
}

async fn dispatch(cli: Cli, color: bool) -> Result<u8, Failure> {
    let ctx = cli::Ctx {
        format: cli.output,
        color,
        journal: cli.journal,
        verbosity: if cli.quiet {
            glidepath::report::Verbosity::Quiet
        } else if cli.verbose {
            glidepath::report::Verbosity::Verbose
        } else {
            glidepath::report::Verbosity::Normal
        },
    };
    use glidepath::control::OperatorCommand as Op;
    match cli.cmd {
        Cmd::DemoNode {
            dir,
            listen,
            boot_ms,
        } => cli::demo::node(dir, &listen, boot_ms).await,
        Cmd::Demo {
            nodes,
            rps,
            window,
            probe_interval,
            keep,
            stop,
            dir,
        } => {
            if let Some(kept) = stop {
                return cli::demo::stop(&ctx, &kept);
            }
            let knobs = glidepath::demo::DemoPlan {
                window,
                probe_interval,
                ..Default::default()
            };
            cli::demo::run(&ctx, nodes, rps, knobs, keep, dir).await
        }
        Cmd::Init(args) => cli::init::run(&ctx, &args),
        Cmd::Adopt {
            plan,
            release,
            exclude,
            dry_run,
        } => cli::adopt::run(&ctx, &plan, release.as_deref(), &exclude, dry_run).await,
        Cmd::Validate { plan } => cli::validate::run(&ctx, &plan),
        Cmd::Run {
            plan,
            force,
            reason,
            release,
            artifact,
            sha256,
        } => {
            let release = glidepath::plan::ReleaseOverride {
                version: release,
                artifact,
                sha256,
            };
            cli::run::run(&ctx, &plan, force, reason, release).await
        }
        Cmd::Preflight { plan } => cli::preflight::run(&ctx, &plan).await,
        Cmd::Resume { run } => cli::run::resume(&ctx, &run).await,
        Cmd::Promote { run, reason } => {
            cli::command::run(&ctx, &run, Op::Promote, &reason, false).await
        }
        Cmd::Abort { run, reason } => {
            cli::command::run(&ctx, &run, Op::Abort, &reason, false).await
        }
        Cmd::Rollback { run, reason, force } => {
            if force && reason.is_none() {
                return Err(glidepath::control::ControlError::ForceWithoutReason.into());
            }
            let reason = reason.unwrap_or_else(|| "rollback requested by operator".into());
            cli::command::run(&ctx, &run, Op::Rollback, &reason, force).await
        }
        Cmd::Resolve { run, reason, force } => {
            cli::command::resolve(&ctx, &run, &reason, force).await
        }
        Cmd::Status { run, watch } => cli::status::status(&ctx, run.as_deref(), watch).await,
        Cmd::History { limit } => cli::status::history(&ctx, limit),
        Cmd::Report { run, format, out } => {
            cli::report::run(&ctx, run.as_deref(), format, out.as_deref())
        }
        Cmd::Inventory { file, timeout } => cli::system::inventory(&ctx, &file, &timeout).await,
        Cmd::Plan {
            file,
            to,
            enable,
            timeout,
        } => cli::system::plan(&ctx, &file, &to, &enable, &timeout).await,
        Cmd::Upgrade {
            file,
            to,
            enable,
            timeout,
            resume,
        } => {
            cli::upgrade::run(
                &ctx,
                file.as_deref(),
                &to,
                &enable,
                &timeout,
                resume.as_deref(),
            )
            .await
        }
        Cmd::Journal { cmd } => match cmd {
            JournalCmd::Export {
                items,
                file,
                include_live,
            } => cli::journal::export(&ctx, &items, file.as_deref(), include_live),
            JournalCmd::Import { file } => cli::journal::import(&ctx, &file),
            JournalCmd::Info => cli::journal::info(&ctx),
        },
        Cmd::Lint { paths, reporter } => cli::lint::run(&ctx, &paths, reporter),
        Cmd::Hash { paths, manifest } => cli::tools::hash(&ctx, &paths, manifest),
        Cmd::Completions { shell } => cli::tools::completions(shell),
        Cmd::Man { dir } => cli::tools::man(dir.as_deref()),
        Cmd::Serve {
            listen,
            allow_remote,
            token_env,
            token_file,
        } => {
            cli::serve::run(
                &ctx,
                &listen,
                allow_remote,
                token_env.as_deref(),
                token_file.as_deref(),
            )
            .await
        }
    }
}
