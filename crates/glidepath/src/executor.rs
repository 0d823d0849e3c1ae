//! The executor: asks the core what to do, journals the intent, runs the
//! step through a driver, journals the outcome, and asks again. It owns the
//! clock, the signals and the lease; the core owns every decision.
//!
//! Resume is the same loop started from a replayed journal: steps that were
//! in flight when the previous process died are marked interrupted and the
//! core issues them again (every node step is idempotent).

use crate::drivers::{Drivers, Target};
pub use crate::gates::builtin::{builtin_checks, same_release};
use crate::journal::{now_ms, CommandKind, JournalError, RunRecord, RunStatus, Store};
use crate::plan::Plan;
use crate::report::Reporter;
use glidepath_core::{
    decide, Event, Outcome, Phase, RolloutSpec, RunState, Step, StepKind, StepOutcome,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Termination requests (SIGINT, SIGTERM, SIGHUP) the process has received, counted.
/// [`watch_signals`] installs the handlers; the executor reacts to the first
/// (abort safely, or end a preflight as aborted) from the first instant of a
/// run, not only once the rollout loop starts.
pub type StopSignals = watch::Receiver<(u32, &'static str)>;

static ACTIVE_RUN: std::sync::Mutex<Option<(String, String)>> = std::sync::Mutex::new(None);

/// The run this process drives and its journal, once known (for the message
/// printed when a second signal ends the process at once).
pub fn active_run() -> Option<(String, String)> {
    ACTIVE_RUN.lock().ok().and_then(|g| g.clone())
}

fn set_active_run(run: &str, journal: &dyn Store) {
    if let Ok(mut g) = ACTIVE_RUN.lock() {
        *g = Some((run.to_string(), journal.location()));
    }
    let msg = format!(
        "error: the journal {j} failed under a memory-mapped write (SIGBUS: its files were made immutable, truncated or lost their disk); the process stops here; `glidepath resume {run} --journal {j}` finishes the run once the journal is writable again\n",
        j = journal.location()
    );
    let msg: &'static [u8] = Box::leak(msg.into_bytes().into_boxed_slice());
    SIGBUS_LEN.store(0, std::sync::atomic::Ordering::SeqCst);
    SIGBUS_MSG.store(msg.as_ptr() as *mut u8, std::sync::atomic::Ordering::SeqCst);
    SIGBUS_LEN.store(msg.len(), std::sync::atomic::Ordering::SeqCst);
}

static SIGBUS_MSG: std::sync::atomic::AtomicPtr<u8> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());
static SIGBUS_LEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static SIGBUS_CODE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(8);

extern "C" fn on_sigbus(_: libc::c_int) {
    let len = SIGBUS_LEN.load(std::sync::atomic::Ordering::SeqCst);
    let ptr = SIGBUS_MSG.load(std::sync::atomic::Ordering::SeqCst);
    // SAFETY: write(2) and _exit(2) are async-signal-safe; the message is a
    // leaked, never-freed buffer published before its length.
    unsafe {
        if !ptr.is_null() && len > 0 {
            libc::write(2, ptr as *const libc::c_void, len);
        } else {
            let m = b"error: SIGBUS (a memory-mapped file failed under the journal)\n";
            libc::write(2, m.as_ptr() as *const libc::c_void, m.len());
        }
        libc::_exit(SIGBUS_CODE.load(std::sync::atomic::Ordering::SeqCst));
    }
}

/// The last resort for a journal whose files fail under SQLite's memory map
/// (WAL index): a SIGBUS ends the process with `code` and a message naming
/// the journal and the run, instead of a silent crash. The journal checks
/// its files before each access (`journal::check_writable`), so this only
/// covers a fault landing between that check and the access.
pub fn install_sigbus_handler(code: i32) {
    SIGBUS_CODE.store(code, std::sync::atomic::Ordering::SeqCst);
    // SAFETY: installing a handler that only calls async-signal-safe functions.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
    }
}

/// Install SIGINT and SIGTERM handlers now and count what arrives. From the
/// second signal on, `on_second` is called with the signal's name (the binary
/// ends the process there, whatever the executor is blocked on). Call it
/// inside a tokio runtime.
pub fn watch_signals(on_second: impl Fn(&'static str) + Send + 'static) -> StopSignals {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = watch::channel((0u32, ""));
    let mut sigint = signal(SignalKind::interrupt()).ok();
    let mut sigterm = signal(SignalKind::terminate()).ok();
    let mut sighup = signal(SignalKind::hangup()).ok();
    tokio::spawn(async move {
        let mut count = 0;
        loop {
            let name = tokio::select! {
                Some(_) = async { match sigint.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => "Ctrl-C",
                Some(_) = async { match sigterm.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => "SIGTERM",
                // the terminal or ssh session went away: stop safely, as for Ctrl-C
                Some(_) = async { match sighup.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => "SIGHUP",
                else => return,
            };
            count += 1;
            if count >= 2 {
                on_second(name);
            }
            if tx.send((count, name)).is_err() && count >= 2 {
                return;
            }
        }
    });
    rx
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A preflight gate refused the run before any node changed.
    #[error("preflight refused the run: {0}")]
    Gate(String),
    /// The infrastructure did not answer during preflight.
    #[error("infrastructure unreachable: {0}")]
    Unreachable(String),
    /// The journal could not be written mid-run: no new step was taken.
    #[error("the journal {journal} cannot be written ({cause}): no new step was taken{}{}; `glidepath resume {run} --journal {journal}` finishes the run once the journal is writable again",
        if restored.is_empty() { String::new() } else { format!("; drained but unchanged, back in rotation: {}", restored.join(", ")) },
        if kept.is_empty() { String::new() } else { format!("; still out of rotation: {}", kept.join(", ")) })]
    JournalLost {
        journal: String,
        run: String,
        cause: String,
        restored: Vec<String>,
        kept: Vec<String>,
    },
    #[error("the journaled plan of run {run} no longer parses: {message}")]
    BadJournaledPlan { run: String, message: String },
    /// A second Ctrl-C: stopped at once, the journal intact for `resume`.
    #[error("interrupted twice: stopped immediately; `glidepath resume {0}` finishes the run")]
    Interrupted(String),
    /// An infrastructure outage outlasted the retry deadline: the run took
    /// no new step, let the steps in flight finish, and stopped resumable.
    #[error("run {run} stopped: {reason}\nno step is in flight; each node is as its last journaled step left it (`glidepath status {run}` shows which are out of rotation); `glidepath resume {run}` continues once the infrastructure answers (`glidepath rollback {run}` restores it instead)")]
    Suspended { run: String, reason: String },
}

/// How a run ended, for the CLI.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub run_id: String,
    pub outcome: Outcome,
    pub state: RunState,
}

/// A test hook: `GLIDEPATH_CRASH_AT=<intent|done|outcome>:<step>[:<node>][@N]`
/// or `transition:<event>[@N]` makes the process SIGKILL itself at the Nth
/// (default first) such point, to prove crash safety at exact places.
/// Unset in normal use.
#[derive(Debug, Default)]
pub struct CrashHook {
    at: Option<(String, String, Option<String>, u32)>,
    seen: std::sync::atomic::AtomicU32,
}

impl CrashHook {
    pub fn from_env() -> Self {
        let Ok(v) = std::env::var("GLIDEPATH_CRASH_AT") else {
            return CrashHook::default();
        };
        let (v, nth) = match v.rsplit_once('@') {
            Some((a, n)) => (a.to_string(), n.parse().unwrap_or(1)),
            None => (v, 1),
        };
        let mut parts = v.splitn(3, ':');
        let phase = parts.next().unwrap_or_default().to_string();
        let what = parts.next().unwrap_or_default().to_string();
        CrashHook {
            at: Some((phase, what, parts.next().map(str::to_string), nth)),
            seen: Default::default(),
        }
    }

    fn hit(&self, phase: &str, what: &str, node: Option<&str>) {
        if let Some((p, w, n, nth)) = &self.at {
            if p == phase
                && w == what
                && (n.is_none() || n.as_deref() == node)
                && self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == *nth
            {
                use std::io::Write;
                let _ = std::io::stdout().flush();
                eprintln!("GLIDEPATH_CRASH_AT={phase}:{what}: killing myself (test hook)");
                // SAFETY: sending SIGKILL to our own pid.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
            }
        }
    }
}

pub struct Executor {
    pub plan: Plan,
    pub spec: RolloutSpec,
    pub journal: Box<dyn Store>,
    pub run_id: String,
    pub drivers: Drivers,
    pub reporter: Arc<dyn Reporter>,
    pub state: RunState,
    pub crash: CrashHook,
    targets: BTreeMap<String, Target>,
    /// `--force GATE --reason …` given to `run`.
    forces: Vec<(String, String)>,
    stop: StopSignals,
    /// This machine's locks on the nodes (held while the executor lives).
    _locks: crate::journal::NodeLocks,
    /// Every journaled event goes to these (the narration first).
    bus: crate::events::EventBus,
}

/// What a caller may add to [`Executor::start`]: forced gates and the
/// process's signal watch (one is installed when none is given).
#[derive(Default)]
pub struct StartOptions {
    pub forces: Vec<(String, String)>,
    pub stop: Option<StopSignals>,
    /// Subscribers to the run's events, besides the narration.
    pub subscribers: Vec<Arc<dyn crate::events::Subscriber>>,
}

fn bus(
    reporter: &Arc<dyn Reporter>,
    more: Vec<Arc<dyn crate::events::Subscriber>>,
) -> crate::events::EventBus {
    let mut b =
        crate::events::EventBus::with(vec![Arc::new(crate::events::Narration(reporter.clone()))]);
    for s in more {
        b.add(s);
    }
    b
}

pub fn new_run_id() -> String {
    let now = now_ms();
    let t = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(now))
        .to_string();
    let compact: String = t.chars().filter(|c| c.is_ascii_digit()).collect();
    let salt = (now as u32 ^ std::process::id().wrapping_mul(2654435761)) & 0xffff;
    format!("r{}-{}-{salt:04x}", &compact[2..8], &compact[8..14])
}

fn node_locks(
    plan: &Plan,
    run: &str,
    journal: &dyn Store,
) -> Result<crate::journal::NodeLocks, JournalError> {
    let nodes: Vec<(String, String)> = plan
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.address.clone()))
        .collect();
    crate::journal::NodeLocks::acquire(&nodes, run, std::path::Path::new(&journal.location()))
}

fn targets(plan: &Plan) -> BTreeMap<String, Target> {
    plan.nodes
        .iter()
        .map(|n| {
            (
                n.name.clone(),
                Target {
                    name: n.name.clone(),
                    address: n.address.clone(),
                    install_dir: plan.install_dir(n),
                },
            )
        })
        .collect()
}

impl Executor {
    /// Preflight, then journal the start of a new run and drive it.
    pub async fn start(
        plan: Plan,
        journal: impl Store + 'static,
        drivers: Drivers,
        reporter: Arc<dyn Reporter>,
    ) -> Result<RunResult, ExecError> {
        Self::start_with(plan, journal, drivers, reporter, StartOptions::default()).await
    }

    /// Like [`Executor::start`], with forced gates and a signal watch.
    pub async fn start_with(
        plan: Plan,
        journal: impl Store + 'static,
        drivers: Drivers,
        reporter: Arc<dyn Reporter>,
        opts: StartOptions,
    ) -> Result<RunResult, ExecError> {
        let mut journal: Box<dyn Store> = Box::new(journal);
        // Signals first: a Ctrl-C during preflight must end the run cleanly.
        let stop = opts.stop.unwrap_or_else(|| watch_signals(|_| {}));
        let forces = opts.forces;
        let run_id = new_run_id();
        let spec = plan.rollout_spec();
        journal.create_run(&RunRecord {
            id: run_id.clone(),
            fleet: plan.fleet_name.clone(),
            plan_path: plan
                .path
                .canonicalize()
                .unwrap_or_else(|_| plan.path.clone())
                .display()
                .to_string(),
            plan_hash: plan.hash.clone(),
            plan_source: plan.source.clone(),
            version: plan.release.version.clone(),
            status: RunStatus::Preflight,
            reason: String::new(),
            created_at: now_ms(),
            updated_at: now_ms(),
        })?;
        if let Err(e) = journal.acquire_lease(&plan.fleet_name, &run_id, false) {
            journal.set_status(&run_id, RunStatus::Refused, &e.to_string())?;
            return Err(e.into());
        }
        let locks = match node_locks(&plan, &run_id, journal.as_ref()) {
            Ok(l) => l,
            Err(e) => {
                journal.set_status(&run_id, RunStatus::Refused, &e.to_string())?;
                journal.release_lease(&plan.fleet_name, &run_id)?;
                return Err(e.into());
            }
        };
        let state = RunState::new(&spec);
        let event_bus = bus(&reporter, opts.subscribers);
        let mut ex = Executor {
            targets: targets(&plan),
            plan,
            spec,
            journal,
            run_id,
            drivers,
            reporter,
            state,
            crash: CrashHook::from_env(),
            forces,
            stop,
            _locks: locks,
            bus: event_bus,
        };
        set_active_run(&ex.run_id, ex.journal.as_ref());
        ex.reporter.run_started(&ex.run_id, &ex.plan, &ex.spec);
        let jp = ex.journal.location();
        ex.reporter.note(&format!(
            "journal {jp} · follow it with: glidepath status {} --journal {jp}",
            ex.run_id
        ));
        ex.preflight_then_drive().await
    }

    /// Preflight (cancellable by a signal), then `Started`, then the loop.
    /// Used by `start` and by `resume` of a run that never passed preflight:
    /// no node changes before every gate has passed in this process.
    async fn preflight_then_drive(&mut self) -> Result<RunResult, ExecError> {
        let mut stop = self.stop.clone();
        let already = stop.borrow_and_update().0 > 0;
        let pre = if already {
            Err(stop.borrow().1)
        } else {
            tokio::select! {
                r = self.preflight() => Ok(r),
                _ = stop.changed() => Err(stop.borrow().1),
            }
        };
        let before = match pre {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                self.journal
                    .set_status(&self.run_id, RunStatus::Refused, &e.to_string())?;
                self.journal
                    .release_lease(&self.plan.fleet_name, &self.run_id)?;
                return Err(e);
            }
            Err(signal) => {
                return self.finish_before_start(
                    Outcome::Aborted,
                    format!(
                        "{signal} during preflight: the run was stopped before any node changed"
                    ),
                );
            }
        };
        self.journal
            .set_status(&self.run_id, RunStatus::Running, "")?;
        self.record(Event::Started {
            at: now_ms(),
            before,
        })?;
        self.drive().await
    }

    /// End a run that never started (nothing changed): journal `Finished`,
    /// release the lease.
    fn finish_before_start(
        &mut self,
        outcome: Outcome,
        reason: String,
    ) -> Result<RunResult, ExecError> {
        self.reporter.note(&reason);
        self.record(Event::Finished {
            at: now_ms(),
            outcome,
            reason,
        })?;
        self.journal
            .release_lease(&self.plan.fleet_name, &self.run_id)?;
        Ok(RunResult {
            run_id: self.run_id.clone(),
            outcome,
            state: self.state.clone(),
        })
    }

    /// Continue a run from its journal (after a crash, or to carry out an
    /// abort/rollback on a run whose process is gone).
    pub async fn resume(
        journal: impl Store + 'static,
        run_id: &str,
        make_drivers: impl FnOnce(&Plan) -> Drivers,
        reporter: Arc<dyn Reporter>,
    ) -> Result<RunResult, ExecError> {
        Self::resume_with(journal, run_id, make_drivers, reporter, None).await
    }

    /// Like [`Executor::resume`], with the process's signal watch.
    pub async fn resume_with(
        journal: impl Store + 'static,
        run_id: &str,
        make_drivers: impl FnOnce(&Plan) -> Drivers,
        reporter: Arc<dyn Reporter>,
        stop: Option<StopSignals>,
    ) -> Result<RunResult, ExecError> {
        let stop = stop.unwrap_or_else(|| watch_signals(|_| {}));
        let mut journal: Box<dyn Store> = Box::new(journal);
        let rec = journal.run(run_id)?;
        let path = std::path::PathBuf::from(&rec.plan_path);
        let dir = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    std::path::Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(std::path::Path::new("."))
            .to_path_buf();
        let (plan, _) = crate::plan::parse(&path, &rec.plan_source, &dir).map_err(|e| {
            ExecError::BadJournaledPlan {
                run: run_id.to_string(),
                message: match e {
                    crate::plan::PlanError::Invalid(r) => r.short(),
                    other => other.to_string(),
                },
            }
        })?;
        if let Ok(on_disk) = std::fs::read_to_string(&path) {
            if crate::plan::sha256_hex(on_disk.as_bytes()) != rec.plan_hash {
                reporter.note(&format!(
                    "{} changed since the run started; resuming with the plan journaled at the start",
                    path.display()
                ));
            }
        }
        journal.acquire_lease(&plan.fleet_name, run_id, true)?;
        let locks = match node_locks(&plan, run_id, journal.as_ref()) {
            Ok(l) => l,
            Err(e) => {
                journal.release_lease(&plan.fleet_name, run_id)?;
                return Err(e.into());
            }
        };
        let spec = plan.rollout_spec();
        let events = journal.events(run_id)?;
        let state = RunState::replay(&spec, &events);
        let drivers = make_drivers(&plan);
        let event_bus = bus(&reporter, Vec::new());
        let mut ex = Executor {
            targets: targets(&plan),
            plan,
            spec,
            journal,
            run_id: run_id.to_string(),
            drivers,
            reporter,
            state,
            crash: CrashHook::from_env(),
            forces: Vec::new(),
            stop,
            _locks: locks,
            bus: event_bus,
        };
        set_active_run(&ex.run_id, ex.journal.as_ref());
        if !events.iter().any(|e| matches!(e, Event::Started { .. })) {
            return ex.resume_before_start(&events).await;
        }
        ex.reporter
            .run_resumed(&ex.run_id, &ex.plan, &ex.spec, &events);
        let in_flight: Vec<Step> = events_in_flight(&events);
        // A run that was not finished lost its process: mark it, so the
        // journal shows the resume and steps in flight are repeated.
        if !ex.state.is_finished() {
            ex.record(Event::Interrupted {
                at: now_ms(),
                in_flight,
            })?;
        }
        ex.journal.set_status(&ex.run_id, RunStatus::Running, "")?;
        ex.drive().await
    }

    /// Resume a run whose process died before preflight passed (no
    /// `Started` event): nothing has changed, so an abort or rollback waiting
    /// for it just ends it; otherwise every gate runs again, with the forces
    /// journaled by the first attempt (who, when and why stay on record).
    async fn resume_before_start(&mut self, events: &[Event]) -> Result<RunResult, ExecError> {
        let pending = self.journal.pending_commands(&self.run_id)?;
        if let Some(c) = pending
            .iter()
            .find(|c| matches!(c.kind, CommandKind::Abort | CommandKind::Rollback))
        {
            for c in &pending {
                self.journal.consume_command(c.id)?;
            }
            self.journal
                .set_status(&self.run_id, RunStatus::Running, "")?;
            return self.finish_before_start(
                Outcome::Aborted,
                format!(
                    "{} before preflight passed ({}): no node was changed",
                    c.kind, c.reason
                ),
            );
        }
        self.forces = events
            .iter()
            .filter_map(|e| match e {
                Event::GateForced { gate, reason, .. } => Some((gate.clone(), reason.clone())),
                _ => None,
            })
            .collect();
        self.forces.dedup();
        self.reporter.note(&format!(
            "run {} never passed preflight (its process died during it): running every gate again before any node changes",
            self.run_id
        ));
        self.journal
            .set_status(&self.run_id, RunStatus::Preflight, "")?;
        self.preflight_then_drive().await
    }

    /// Gates that must pass before any node changes: the built-in ones
    /// (checksum, rollback targets, reachability, health) and the plan's
    /// `[gates]`. A failing declared gate may be forced with a reason.
    async fn preflight(&mut self) -> Result<BTreeMap<String, Option<String>>, ExecError> {
        let (mut results, before) = builtin_checks(&self.plan, &self.drivers).await;
        let deployed = same_release(&before);
        let now = jiff::Timestamp::now();
        let inputs = crate::gates::Inputs::of(&self.plan);
        results.extend(
            crate::gates::evaluate(&self.plan.gates, &inputs, now, deployed.as_deref()).await,
        );
        let by = format!(
            "{}@{}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
            crate::journal::hostname()
        );
        for r in results.iter_mut() {
            if r.verdict == crate::gates::Verdict::Fail && !r.builtin {
                if let Some(reason) = self
                    .forces
                    .iter()
                    .find(|(g, _)| *g == r.gate)
                    .map(|(_, why)| why.clone())
                {
                    r.forced = Some(reason.clone());
                    self.record(Event::GateForced {
                        at: now_ms(),
                        gate: r.gate.clone(),
                        reason,
                        by: by.clone(),
                    })?;
                }
            }
        }
        for (g, _) in &self.forces {
            if !results.iter().any(|r| &r.gate == g) {
                return Err(ExecError::Gate(format!(
                    "--force {g}: the plan has no gate `{g}` (gates: {})",
                    results
                        .iter()
                        .map(|r| r.gate.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        self.record(Event::GatesChecked {
            at: now_ms(),
            results: results
                .iter()
                .map(|r| glidepath_core::GateRecord {
                    gate: r.gate.clone(),
                    verdict: if r.forced.is_some() {
                        "forced".into()
                    } else {
                        format!("{:?}", r.verdict).to_lowercase()
                    },
                    reason: r.reason.clone(),
                })
                .collect(),
        })?;
        for line in crate::gates::render(&results).lines() {
            self.reporter.note(&format!("preflight  {line}"));
        }
        let failing: Vec<&crate::gates::GateResult> = results
            .iter()
            .filter(|r| r.verdict == crate::gates::Verdict::Fail && r.forced.is_none())
            .collect();
        if failing.is_empty() {
            let (config_hashes, env) =
                crate::gates::snapshot(self.plan.gates.config.as_ref(), &inputs);
            self.record(Event::Snapshot {
                at: now_ms(),
                versions: before.clone(),
                config_hashes,
                env,
            })?;
            return Ok(before);
        }
        let text = failing
            .iter()
            .map(|r| {
                let force = if r.builtin {
                    String::new()
                } else {
                    format!(" (or --force {} --reason \"…\")", r.gate)
                };
                format!(
                    "{}: {}{}{force}",
                    r.gate,
                    r.reason,
                    r.fix
                        .as_ref()
                        .map(|f| format!(" — fix: {f}"))
                        .unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n  ");
        if failing.iter().all(|r| r.infra) {
            Err(ExecError::Unreachable(text))
        } else {
            Err(ExecError::Gate(text))
        }
    }

    /// Journal an event, apply it, report it.
    fn record(&mut self, ev: Event) -> Result<(), ExecError> {
        let ev = crate::journal::bounded(ev);
        let seq = self.journal.append(&self.run_id, &ev)?;
        self.state.apply(&self.spec, &ev);
        self.publish(seq, &ev);
        if let Event::Finished {
            outcome, reason, ..
        } = &ev
        {
            self.journal
                .set_status(&self.run_id, RunStatus::from(*outcome), reason)?;
        }
        match &ev {
            Event::Intent { step, .. } => {
                self.crash
                    .hit("intent", step.kind.as_str(), step.node.as_deref())
            }
            Event::Outcome { step, .. } => {
                self.crash
                    .hit("outcome", step.kind.as_str(), step.node.as_deref())
            }
            other => self.crash.hit("transition", other.kind(), None),
        }
        Ok(())
    }

    fn publish(&self, seq: i64, ev: &Event) {
        self.bus.publish(
            crate::events::Published {
                run_id: self.run_id.clone(),
                seq,
                event: ev.clone(),
            },
            &self.state,
        );
    }

    fn take_commands(&mut self) -> Result<(), ExecError> {
        for c in self.journal.pending_commands(&self.run_id)? {
            let at = now_ms();
            let reason = c.reason.clone();
            let ev = match c.kind.as_str() {
                "promote" => {
                    if glidepath_core::awaiting_promotion(&self.spec, &self.state).is_none() {
                        // never pre-approve a pause that has not come yet
                        self.journal.refuse_command(
                            c.id,
                            "the run is not waiting at a pause point or a held breach now",
                        )?;
                        continue;
                    }
                    Event::Promoted { at, reason }
                }
                "abort" => Event::AbortRequested { at, reason },
                "rollback" => Event::RollbackRequested { at, reason },
                _ => {
                    self.journal.consume_command(c.id)?;
                    continue;
                }
            };
            if matches!(
                ev,
                Event::RollbackRequested { .. } | Event::AbortRequested { .. }
            ) && self.state.is_finished()
            {
                self.journal
                    .set_status(&self.run_id, RunStatus::Running, "")?;
            }
            let seq = self.journal.append_for_command(&self.run_id, &ev, c.id)?;
            self.state.apply(&self.spec, &ev);
            self.publish(seq, &ev);
        }
        Ok(())
    }

    /// The rollout loop, and what happens when the journal fails under it:
    /// no new step, the steps in flight finish, and nodes drained but never
    /// switched go back into rotation (they still run the old release).
    async fn drive(&mut self) -> Result<RunResult, ExecError> {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Step, StepOutcome)>();
        match self.drive_loop(tx, &mut rx).await {
            Err(ExecError::Journal(e)) if !matches!(e, JournalError::Fenced { .. }) => {
                Err(self.journal_lost(e, &mut rx).await)
            }
            other => other,
        }
    }

    async fn journal_lost(
        &mut self,
        cause: JournalError,
        rx: &mut mpsc::UnboundedReceiver<(Step, StepOutcome)>,
    ) -> ExecError {
        self.journal.abandon();
        self.reporter.note(&format!(
            "the journal cannot be written ({cause}): taking no new step; waiting for the steps in flight, then putting back nodes drained but not yet changed"
        ));
        // outcomes that arrive now cannot be journaled; they still tell us
        // what each node went through
        let deadline = tokio::time::Instant::now() + self.journal_lost_wait();
        while !self.state.in_flight().is_empty() || self.state.run_step_in_flight.is_some() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((step, outcome))) => {
                    let ev = Event::Outcome {
                        at: now_ms(),
                        step,
                        outcome,
                    };
                    self.state.apply(&self.spec, &ev);
                }
                _ => break,
            }
        }
        let mut restored = Vec::new();
        let mut kept = Vec::new();
        for (name, n) in &self.state.nodes {
            // a drain in flight may have happened: count it as drained
            let drained = n.out_of_rotation || n.in_flight == Some(StepKind::Drain);
            if !drained {
                continue;
            }
            let changed = n.switched
                || n.in_flight.is_some_and(|k| {
                    matches!(
                        k,
                        StepKind::Switch | StepKind::Restart | StepKind::CheckHealth
                    )
                });
            let Some(t) = self.targets.get(name).cloned() else {
                continue;
            };
            if changed {
                kept.push(format!("{name} (switched, left out of rotation)"));
                continue;
            }
            match self.drivers.balancer.enable(&t).await {
                Ok(_) => restored.push(name.clone()),
                Err(e) => kept.push(format!("{name} (re-enabling failed: {e})")),
            }
        }
        ExecError::JournalLost {
            journal: self.journal.location(),
            run: self.run_id.clone(),
            cause: cause.to_string(),
            restored,
            kept,
        }
    }

    /// How long the steps in flight may take to finish once the journal failed.
    fn journal_lost_wait(&self) -> Duration {
        (self.plan.deploy.restart_timeout + self.plan.deploy.command_timeout)
            .max(Duration::from_secs(10))
    }

    async fn drive_loop(
        &mut self,
        tx: mpsc::UnboundedSender<(Step, StepOutcome)>,
        rx: &mut mpsc::UnboundedReceiver<(Step, StepOutcome)>,
    ) -> Result<RunResult, ExecError> {
        let mut stop = self.stop.clone();
        let mut interrupts = 0;
        // a signal that arrived before the loop (e.g. during preflight's last
        // step) is acted on now
        let (n, what) = *stop.borrow_and_update();
        if n > 0 {
            interrupts = n;
            self.interrupted(n, what)?;
        }
        let mut last_beat = std::time::Instant::now();
        let mut last_waiting: Option<String> = None;
        loop {
            self.take_commands()?;
            if let Phase::Finished(outcome) = self.state.phase {
                if self.state.in_flight().is_empty() {
                    self.journal
                        .release_lease(&self.plan.fleet_name, &self.run_id)?;
                    return Ok(RunResult {
                        run_id: self.run_id.clone(),
                        outcome,
                        state: self.state.clone(),
                    });
                }
            }
            if let Some(reason) = self.state.suspended.clone() {
                // decide suspends only with nothing in flight
                self.journal
                    .set_status(&self.run_id, RunStatus::Suspended, &reason)?;
                self.journal
                    .release_lease(&self.plan.fleet_name, &self.run_id)?;
                return Err(ExecError::Suspended {
                    run: self.run_id.clone(),
                    reason,
                });
            }
            let now = now_ms();
            let d = decide(&self.spec, &self.state, now);
            if let Some(ev) = d.transition {
                self.record(ev)?;
                continue;
            }
            for step in d.steps {
                self.record(Event::Intent {
                    at: now_ms(),
                    step: step.clone(),
                })?;
                let fut = perform(
                    self.drivers.clone(),
                    self.target_for(&step),
                    self.run_targets(&step),
                    Releases {
                        new: self.plan.release.clone(),
                        rollback: self.plan.rollback_release.clone(),
                    },
                    step.clone(),
                );
                let tx = tx.clone();
                tokio::spawn(async move {
                    let outcome = fut.await;
                    let _ = tx.send((step, outcome));
                });
            }
            if d.waiting != last_waiting {
                if let Some(w) = &d.waiting {
                    self.reporter.waiting(&self.run_id, w);
                }
                last_waiting = d.waiting.clone();
            }
            let wait_ms = d
                .wake_at
                .map_or(250, |w| w.saturating_sub(now_ms()))
                .min(250);
            tokio::select! {
                Some((step, outcome)) = rx.recv() => {
                    self.crash.hit("done", step.kind.as_str(), step.node.as_deref());
                    self.record(Event::Outcome { at: now_ms(), step, outcome })?;
                }
                _ = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
                Ok(()) = stop.changed() => {
                    let (n, what) = *stop.borrow_and_update();
                    if n > interrupts {
                        interrupts = n;
                        self.interrupted(n, what)?;
                    }
                }
            }
            if last_beat.elapsed() > Duration::from_secs(1) {
                self.journal
                    .heartbeat(&self.plan.fleet_name, &self.run_id)?;
                last_beat = std::time::Instant::now();
            }
        }
    }

    fn interrupted(&mut self, count: u32, what: &str) -> Result<(), ExecError> {
        if count > 1 {
            return Err(ExecError::Interrupted(self.run_id.clone()));
        }
        self.reporter.note(&format!(
            "{what}: aborting safely (finishing steps in flight, restoring half-deployed nodes); press Ctrl-C again to stop at once"
        ));
        self.record(Event::AbortRequested {
            at: now_ms(),
            reason: format!("{what} received"),
        })
    }

    fn target_for(&self, step: &Step) -> Option<Target> {
        step.node
            .as_ref()
            .and_then(|n| self.targets.get(n).cloned())
    }

    /// The nodes a run-level step acts on, with the release each should
    /// serve: the canaries for the SLI window, the peers for `check_peers`.
    fn run_targets(&self, step: &Step) -> Vec<(Target, Option<String>)> {
        let named: Vec<(String, Option<String>)> = match step.kind {
            StepKind::CheckPeers => self.state.peers_to_check(&self.spec),
            _ => self.spec.groups.first().map_or(vec![], |g| {
                g.iter()
                    .map(|n| (n.clone(), Some(self.spec.version.clone())))
                    .collect()
            }),
        };
        named
            .into_iter()
            .filter_map(|(n, v)| self.targets.get(&n).cloned().map(|t| (t, v)))
            .collect()
    }
}

/// The releases a step may need: the new one, and the last-known-good as
/// an artifact when the plan provides it.
#[derive(Debug, Clone)]
pub struct Releases {
    pub new: crate::plan::Release,
    pub rollback: Option<crate::plan::Release>,
}

/// Steps whose intent is journaled without an outcome.
pub fn events_in_flight(events: &[Event]) -> Vec<Step> {
    let mut open: Vec<Step> = Vec::new();
    for e in events {
        match e {
            Event::Intent { step, .. } => open.push(step.clone()),
            Event::Outcome { step, .. } => {
                if let Some(i) = open
                    .iter()
                    .position(|s| s.kind == step.kind && s.node == step.node)
                {
                    open.remove(i);
                }
            }
            Event::Interrupted { .. } => open.clear(),
            _ => {}
        }
    }
    open
}

/// Carry out one step, once. An infrastructure fault comes back as an
/// outcome marked `infra`: the core waits it out (retrying with the plan's
/// `[strategy] retry` backoff, journaled attempt by attempt, until its
/// deadline), so no attempt count is hidden here. Every driver call is
/// bounded by its own timeout; this adds an outer bound as a last resort.
async fn perform(
    d: Drivers,
    target: Option<Target>,
    run_targets: Vec<(Target, Option<String>)>,
    release: Releases,
    step: Step,
) -> StepOutcome {
    let bound = step_bound(&step);
    match tokio::time::timeout(bound, perform_once(d, target, run_targets, release, step)).await {
        Ok(out) => out,
        Err(_) => StepOutcome {
            ok: false,
            infra: true,
            detail: format!("no answer within {bound:?} (outer step bound)"),
            ..Default::default()
        },
    }
}

/// The outer bound of one step: generous, since each driver call has its
/// own timeout (staging copies a whole release).
fn step_bound(step: &Step) -> Duration {
    match step.kind {
        StepKind::Stage => Duration::from_secs(3600),
        _ => Duration::from_secs(600),
    }
}

/// Carry out one step through the drivers.
async fn perform_once(
    d: Drivers,
    target: Option<Target>,
    run_targets: Vec<(Target, Option<String>)>,
    release: Releases,
    step: Step,
) -> StepOutcome {
    let canaries: Vec<Target> = run_targets.iter().map(|(t, _)| t.clone()).collect();
    let fail = |e: crate::drivers::DriverError| StepOutcome {
        ok: false,
        detail: e.to_string(),
        infra: e.is_infra(),
        ..Default::default()
    };
    let version = step.version.clone().unwrap_or_default();
    if version.is_empty() && matches!(step.kind, StepKind::Stage | StepKind::Switch) {
        // a rollback target is never empty: `current -> releases/` is not a release
        return fail(crate::drivers::DriverError::Failed(format!(
            "no release is known for step {} (no last-known-good was recorded for this node): refusing to switch to nothing",
            step.kind.as_str()
        )));
    }
    let r = match (step.kind, target.as_ref()) {
        (StepKind::Drain, Some(t)) => d.balancer.drain(t).await,
        (StepKind::CheckDrained, Some(t)) => {
            // Re-assert the drain first (idempotent): a balancer restarted
            // from its config has forgotten it.
            if let Err(e) = d.balancer.drain(t).await {
                return fail(e);
            }
            return match d.balancer.active(t).await {
                Ok(n) => StepOutcome {
                    ok: true,
                    value: Some(n as f64),
                    detail: format!("{n} active connection(s)"),
                    ..Default::default()
                },
                Err(e) => fail(e),
            };
        }
        (StepKind::Stage, Some(t)) if version == release.new.version => {
            d.deployer.stage(t, &release.new).await
        }
        // the back track: the last-known-good release must be on the node
        (StepKind::Stage, Some(t)) => match d.deployer.has_release(t, &version).await {
            Ok(true) => Ok(format!("{version} is on the node")),
            Ok(false) => match release.rollback.as_ref().filter(|r| r.version == version) {
                Some(r) => d
                    .deployer
                    .stage(t, r)
                    .await
                    .map(|m| format!("restored from the [rollback] artifact: {m}")),
                None => Err(crate::drivers::DriverError::Failed(format!(
                    "release {version} is not on the node and no [rollback] artifact provides it"
                ))),
            },
            Err(e) => Err(e),
        },
        (StepKind::Switch, Some(t)) => d.deployer.switch(t, &version).await,
        // A restart happens out of rotation: re-assert the drain (idempotent)
        // in case the balancer forgot it, and wait out a balancer outage
        // rather than restart a node that may be taking traffic.
        (StepKind::Restart, Some(t)) => match d.balancer.drain(t).await {
            Ok(_) => d.service.restart(t, &version).await,
            Err(e) => Err(e),
        },
        (StepKind::CheckHealth, Some(t)) => d.health.probe(t, Some(&version)).await,
        (StepKind::Enable, Some(t)) => d.balancer.enable(t).await,
        (StepKind::PostCheck, Some(t)) => match d.balancer.check_in_rotation(t).await {
            // The health half is the node's own verdict, never an outage.
            Ok(a) => d
                .health
                .probe(t, step.version.as_deref())
                .await
                .map(|b| format!("{a}; {b}"))
                .map_err(|e| crate::drivers::DriverError::Failed(e.to_string())),
            Err(e) => Err(e),
        },
        (StepKind::CheckPeers, _) => {
            let mut set = tokio::task::JoinSet::new();
            for (t, v) in run_targets.iter().cloned() {
                let h = d.health.clone();
                set.spawn(async move { (t.name.clone(), h.probe(&t, v.as_deref()).await) });
            }
            let mut results = Vec::new();
            while let Some(r) = set.join_next().await {
                match r {
                    Ok(x) => results.push(x),
                    Err(e) => results.push((
                        "?".to_string(),
                        Err(crate::drivers::DriverError::Failed(format!(
                            "health probe task: {e}"
                        ))),
                    )),
                }
            }
            let down: BTreeMap<String, String> = results
                .iter()
                .filter_map(|(n, r)| r.as_ref().err().map(|e| (n.clone(), e.to_string())))
                .collect();
            return StepOutcome {
                ok: true,
                detail: if down.is_empty() {
                    format!("{} node(s) in rotation answer", results.len())
                } else {
                    format!(
                        "{} of {} node(s) in rotation found down: {}",
                        down.len(),
                        results.len(),
                        down.iter()
                            .map(|(n, e)| format!("{n} ({e})"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
                down,
                ..Default::default()
            };
        }
        (StepKind::StartWindow, _) => match &d.metrics {
            Some(m) => m.start_window(&canaries).await,
            None => Ok("no metrics source".into()),
        },
        (StepKind::Probe, _) => {
            let obs = match &d.metrics {
                Some(m) => m.observe(&canaries).await,
                None => vec![],
            };
            let detail = obs
                .iter()
                .map(|o| {
                    let finite: Vec<f64> =
                        o.series.iter().copied().filter(|v| v.is_finite()).collect();
                    match (&o.error, o.value) {
                        (Some(e), _) => format!("{}: {e}", o.check),
                        (None, Some(v)) => format!("{} = {v:.4} (n={})", o.check, o.samples),
                        (None, None) if finite.len() == 1 => {
                            format!("{} = {:.4} (n={})", o.check, finite[0], o.samples)
                        }
                        (None, None) if !finite.is_empty() => format!(
                            "{}: {} series from {:.4} to {:.4} (n={})",
                            o.check,
                            finite.len(),
                            finite.iter().copied().fold(f64::INFINITY, f64::min),
                            finite.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                            o.samples
                        ),
                        (None, None) => format!("{}: no data (n={})", o.check, o.samples),
                    }
                })
                .collect::<Vec<_>>()
                .join("; ");
            return StepOutcome {
                ok: true,
                detail,
                observations: obs,
                ..Default::default()
            };
        }
        (_, None) => Err(crate::drivers::DriverError::Failed(format!(
            "step {} has no node",
            step.kind.as_str()
        ))),
    };
    match r {
        Ok(detail) => StepOutcome::ok(detail),
        Err(e) => fail(e),
    }
}
