//! The executor: asks the core what to do, journals the intent, runs the
//! step through a driver, journals the outcome, and asks again. It owns the
//! clock, the signals and the lease; the core owns every decision.
//!
//! Resume is the same loop started from a replayed journal: steps that were
//! in flight when the previous process died are marked interrupted and the
//! core issues them again (every node step is idempotent).
//!
//! `mod.rs` holds the loop (start, resume, journal, commands, the select
//! over outcomes and signals); `preflight.rs` the gates before `Started`;
//! `steps.rs` carrying out one step through the drivers; `signals.rs` the
//! signal watch and the SIGBUS last resort; `crash.rs` the test hook.

mod crash;
mod preflight;
mod signals;
mod steps;
pub mod unresolved;

pub use crash::CrashHook;
use signals::set_active_run;
pub use signals::{active_run, install_sigbus_handler, watch_signals, StopSignals};
use steps::perform;
pub use steps::{events_in_flight, Releases};

use crate::drivers::{Drivers, Target};
pub use crate::gates::builtin::{builtin_checks, same_release};
use crate::hints::Hints;
use crate::journal::{now_ms, CommandKind, JournalError, RunRecord, RunStatus, Store};
use crate::plan::Plan;
use crate::report::{with_run_id, Reporter};
use glidepath_core::{
    decide, Event, Outcome, Phase, RolloutSpec, RunState, Step, StepKind, StepOutcome, WaitsOn,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

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
    #[error("the journal {journal} cannot be written ({cause}): no new step was taken{}{}; `{}` finishes the run once the journal is writable again",
        if restored.is_empty() { String::new() } else { format!("; drained but unchanged, back in rotation: {}", restored.join(", ")) },
        if kept.is_empty() { String::new() } else { format!("; still out of rotation: {}", kept.join(", ")) },
        Hints::with_arg(run, Some(journal.clone())).cmd("resume"))]
    JournalLost {
        journal: String,
        run: String,
        cause: String,
        /// (Boxed slices keep `ExecError` small.)
        restored: Box<[String]>,
        kept: Box<[String]>,
        /// The journal's server stayed unreachable past the retry deadline
        /// (an infrastructure fault: exit 4), rather than failing to write.
        unreachable: bool,
    },
    /// A run of this journal left some of this plan's nodes for a person
    /// (`rollback_failed`, or a node kept out of rotation) and nobody
    /// resolved it: a node may still be out of rotation or half-restored.
    #[error("{fleet}: its last run {run} {why}\nno new run starts on nodes a failed run left for a person; no node was changed\nhint: check the node(s) first: `{}` names each node kept out of rotation and why; make sure each serves its previous release, answers its health check and is back in rotation; then `{}` closes that run",
        Hints::with_arg(run, journal.clone()).cmd("status"),
        Hints::with_arg(run, journal.clone()).cmd_with("resolve", "--reason \"what was fixed\""))]
    Unresolved {
        /// The fleet of the run that holds it back, as said: "fleet `a`",
        /// or "fleet `a` (a plan sharing nodes with fleet `b`)".
        fleet: String,
        run: String,
        why: String,
        /// `--journal` for the commands (none: the default journal).
        journal: Option<String>,
    },
    /// A run of another journal on this machine left one of this plan's
    /// nodes for a person: its marker in the lock directory says so.
    #[error("node {} ({}) was left for a person by run {} of fleet `{}` in journal {}, and that run is not resolved\nno new run starts on nodes a failed run left for a person; no node was changed\nhint: check the node; then `glidepath resolve {} --journal {} --reason \"what was fixed\"` closes that run; should that journal be gone, delete {} once the node is fine",
        .0.node, .0.address, .0.run, .0.fleet, .0.journal,
        .0.run, crate::hints::shell_word(&.0.journal), crate::hints::shell_word(&.0.path.display().to_string()))]
    HeldOnMachine(Box<crate::journal::locks::HeldMark>),
    #[error("the journaled plan of run {run} no longer parses: {message}")]
    BadJournaledPlan { run: String, message: String },
    /// A second Ctrl-C: stopped at once, the journal intact for `resume`.
    #[error("interrupted twice: stopped immediately; `{}` finishes the run", Hints::new(.0, .1).cmd("resume"))]
    Interrupted(String, String),
    /// An infrastructure outage outlasted the retry deadline: the run took
    /// no new step, let the steps in flight finish, and stopped resumable.
    #[error("run {run} stopped: {}\nno step is in flight; each node is as its last journaled step left it (`{}` shows which are out of rotation); `{}` continues once the infrastructure answers (`{}` restores it instead)",
        Hints::with_arg(run, journal.clone()).fill(reason),
        Hints::with_arg(run, journal.clone()).cmd("status"),
        Hints::with_arg(run, journal.clone()).cmd("resume"),
        Hints::with_arg(run, journal.clone()).cmd("rollback"))]
    Suspended {
        run: String,
        reason: String,
        /// `--journal` for the commands (none: the default journal).
        journal: Option<String>,
    },
}

/// How a run ended, for the CLI.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub run_id: String,
    pub outcome: Outcome,
    pub state: RunState,
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
    /// When the last heartbeat that the journal confirmed was sent (or the
    /// lease taken): the lease cannot have been taken over before this plus
    /// the TTL, whatever the journal's server did meanwhile.
    lease_confirmed: std::time::Instant,
}

/// What a caller may add to [`Executor::start`]: forced gates and the
/// process's signal watch (one is installed when none is given).
#[derive(Default)]
pub struct StartOptions {
    pub forces: Vec<(String, String)>,
    pub stop: Option<StopSignals>,
    /// Subscribers to the run's events, besides the narration.
    pub subscribers: Vec<Arc<dyn crate::events::Subscriber>>,
    /// The new run's id (default: [`new_run_id`]): a campaign journals it
    /// before the run exists, so a crash in between loses no run.
    pub run_id: Option<String>,
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

/// The run's notifier (`[notify]`), subscribed to the bus; the caller
/// gives it its grace once the run ends.
fn notifier(
    plan: &Plan,
    spec: &RolloutSpec,
    journal: &dyn Store,
    state: &RunState,
    bus: &mut crate::events::EventBus,
) -> Option<Arc<crate::notify::Notifier>> {
    let cfg = plan.notify.as_ref()?;
    let n = crate::notify::Notifier::start(
        cfg,
        spec,
        &plan.fleet_name,
        &journal.location(),
        state,
        plan.dir.clone(),
    );
    bus.add(n.clone());
    Some(n)
}

/// What a crash-hook point names besides the step kind: the node, or the task.
fn step_subject(step: &Step) -> Option<&str> {
    step.node
        .as_deref()
        .or(step.task.as_ref().map(|t| t.name.as_str()))
}

pub fn new_run_id() -> String {
    let now = now_ms();
    let t = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(now))
        .to_string();
    let compact: String = t.chars().filter(|c| c.is_ascii_digit()).collect();
    let salt = (now as u32 ^ std::process::id().wrapping_mul(2654435761)) & 0xffff;
    format!("r{}-{}-{salt:04x}", &compact[2..8], &compact[8..14])
}

/// "node a" or "nodes a, b".
fn node_list(nodes: &[String]) -> String {
    match nodes {
        [one] => format!("node {one}"),
        many => format!("nodes {}", many.join(", ")),
    }
}

fn node_locks(
    plan: &Plan,
    run: &str,
    journal: &dyn Store,
) -> Result<crate::journal::NodeLocks, JournalError> {
    crate::journal::NodeLocks::acquire(&plan.node_addresses(), run, &journal.location())
}

fn targets(plan: &Plan) -> BTreeMap<String, Target> {
    plan.nodes
        .iter()
        .map(|n| (n.name.clone(), plan.target(n)))
        .collect()
}

/// A journal call, retried while the journal's server is unreachable
/// ([`JournalError::Unavailable`]): the run takes no new step meanwhile
/// (the caller is the loop), the steps in flight go on, and past the plan's
/// retry deadline the error is returned (`drive` then puts drained but
/// unchanged nodes back and stops, resumable). The call is re-evaluated each
/// time: every journal write may be retried after a lost answer.
macro_rules! patient {
    ($ex:ident, $call:expr) => {{
        let mut outage: Option<(std::time::Instant, u32)> = None;
        loop {
            match $call {
                Err(JournalError::Unavailable { location, message }) => {
                    journal_unreachable(
                        (&$ex.spec.retry, &$ex.reporter, &$ex.run_id),
                        &mut outage,
                        location,
                        message,
                    )
                    .await?;
                }
                other => {
                    if outage.is_some() {
                        $ex.reporter
                            .note("the journal answers again: going on from where the run stood");
                    }
                    break other;
                }
            }
        }
    }};
}

/// One more wait for an unreachable journal, or the error once the plan's
/// retry deadline has passed. (It takes the executor's parts, not the
/// executor: its future must stay `Send` with a journal that is not `Sync`.)
async fn journal_unreachable(
    (retry, reporter, run_id): (&glidepath_core::RetrySpec, &Arc<dyn Reporter>, &str),
    outage: &mut Option<(std::time::Instant, u32)>,
    location: String,
    message: String,
) -> Result<(), ExecError> {
    let deadline = Duration::from_millis(retry.deadline_ms);
    let (since, tries) = outage.get_or_insert_with(|| {
        reporter.note(&format!(
            "the journal {location} is unreachable ({message}): taking no new step until it answers (the steps in flight go on); retrying for up to {}",
            humantime::format_duration(deadline)
        ));
        reporter.waiting(run_id, "the journal to answer");
        (std::time::Instant::now(), 0)
    });
    if since.elapsed() >= deadline {
        return Err(ExecError::Journal(JournalError::Unavailable {
            location,
            message: format!(
                "{message} (for {}, the plan's retry deadline)",
                humantime::format_duration(Duration::from_secs(since.elapsed().as_secs()))
            ),
        }));
    }
    *tries += 1;
    let wait = retry.delay(*tries).min(2_000);
    tokio::time::sleep(Duration::from_millis(wait)).await;
    Ok(())
}

impl Executor {
    /// Preflight, then journal the start of a new run and drive it.
    pub async fn start(
        plan: Plan,
        journal: impl Into<Box<dyn Store>>,
        drivers: Drivers,
        reporter: Arc<dyn Reporter>,
    ) -> Result<RunResult, ExecError> {
        Self::start_with(plan, journal, drivers, reporter, StartOptions::default()).await
    }

    /// Like [`Executor::start`], with forced gates and a signal watch.
    pub async fn start_with(
        plan: Plan,
        journal: impl Into<Box<dyn Store>>,
        drivers: Drivers,
        reporter: Arc<dyn Reporter>,
        opts: StartOptions,
    ) -> Result<RunResult, ExecError> {
        let mut journal: Box<dyn Store> = journal.into();
        // Signals first: a Ctrl-C during preflight must end the run cleanly.
        let stop = opts.stop.unwrap_or_else(|| watch_signals(|_| {}));
        let forces = opts.forces;
        let run_id = opts.run_id.unwrap_or_else(new_run_id);
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
        let lease_confirmed = std::time::Instant::now();
        if let Err(e) = journal.acquire_lease(&plan.fleet_name, &run_id, false) {
            journal.set_status(&run_id, RunStatus::Refused, &e.to_string())?;
            return Err(e.into());
        }
        let held = unresolved::unresolved(journal.as_ref(), &plan, &run_id).and_then(|h| match h {
            Some(h) => Ok(Some(h)),
            None => unresolved::check_marks(journal.as_ref(), &plan).map(|_| None),
        });
        match held {
            Ok(None) => {}
            Ok(Some(unresolved::Held { run: failed, nodes })) => {
                let e = ExecError::Unresolved {
                    fleet: if failed.fleet == plan.fleet_name {
                        format!("fleet `{}`", failed.fleet)
                    } else {
                        format!(
                            "fleet `{}` (a plan sharing nodes with fleet `{}`)",
                            failed.fleet, plan.fleet_name
                        )
                    },
                    why: format!(
                        "ended {} and left {} for a person; it is not resolved ({})",
                        failed.status,
                        node_list(&nodes),
                        with_run_id(&failed.reason, &failed.id)
                    ),
                    run: failed.id,
                    journal: crate::hints::journal_arg(&journal.location()),
                };
                journal.set_status(&run_id, RunStatus::Refused, &e.to_string())?;
                journal.release_lease(&plan.fleet_name, &run_id)?;
                return Err(e);
            }
            Err(e) => {
                journal.set_status(&run_id, RunStatus::Refused, &e.to_string())?;
                journal.release_lease(&plan.fleet_name, &run_id)?;
                return Err(e);
            }
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
        let mut event_bus = bus(&reporter, opts.subscribers);
        let notifier = notifier(&plan, &spec, journal.as_ref(), &state, &mut event_bus);
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
            lease_confirmed,
        };
        set_active_run(&ex.run_id, ex.journal.as_ref());
        ex.reporter.run_started(&ex.run_id, &ex.plan, &ex.spec);
        let jp = ex.journal.location();
        ex.reporter.note(&format!(
            "journal {jp} · follow it with: {}",
            Hints::new(&ex.run_id, &jp).cmd_with("status", "--watch")
        ));
        let origin = ex.origin();
        let result = match ex.record(origin).await {
            Ok(()) => ex.preflight_then_drive().await,
            Err(e) => Err(e),
        };
        if let Some(n) = notifier {
            n.finish().await;
        }
        result
    }

    /// Continue a run from its journal (after a crash, or to carry out an
    /// abort/rollback on a run whose process is gone).
    pub async fn resume(
        journal: impl Into<Box<dyn Store>>,
        run_id: &str,
        make_drivers: impl FnOnce(&Plan) -> Drivers,
        reporter: Arc<dyn Reporter>,
    ) -> Result<RunResult, ExecError> {
        Self::resume_with(journal, run_id, make_drivers, reporter, None).await
    }

    /// Like [`Executor::resume`], with the process's signal watch.
    pub async fn resume_with(
        journal: impl Into<Box<dyn Store>>,
        run_id: &str,
        make_drivers: impl FnOnce(&Plan) -> Drivers,
        reporter: Arc<dyn Reporter>,
        stop: Option<StopSignals>,
    ) -> Result<RunResult, ExecError> {
        let stop = stop.unwrap_or_else(|| watch_signals(|_| {}));
        let mut journal: Box<dyn Store> = journal.into();
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
            // a run started with `--release …` journaled the file with its
            // release replaced: the same file on disk is not a change
            let overridden = crate::plan::with_release(
                &on_disk,
                &crate::plan::ReleaseOverride {
                    version: Some(plan.release.version.clone()),
                    artifact: Some(plan.release.artifact.clone()),
                    sha256: Some(plan.release.sha256.clone()),
                },
                &dir,
            );
            if crate::plan::sha256_hex(on_disk.as_bytes()) != rec.plan_hash
                && overridden.ok().as_deref() != Some(rec.plan_source.as_str())
            {
                reporter.note(&format!(
                    "{} changed since the run started; resuming with the plan journaled at the start",
                    path.display()
                ));
            }
        }
        let lease_confirmed = std::time::Instant::now();
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
        let mut event_bus = bus(&reporter, Vec::new());
        let notifier = notifier(&plan, &spec, journal.as_ref(), &state, &mut event_bus);
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
            lease_confirmed,
        };
        set_active_run(&ex.run_id, ex.journal.as_ref());
        let result = ex.resume_events(&events).await;
        if let Some(n) = notifier {
            n.finish().await;
        }
        result
    }

    async fn resume_events(&mut self, events: &[Event]) -> Result<RunResult, ExecError> {
        let ex = self;
        if !ex.state.is_finished() {
            ex.record(ex.origin()).await?;
        }
        if !events.iter().any(|e| matches!(e, Event::Started { .. })) {
            return ex.resume_before_start(events).await;
        }
        ex.reporter
            .run_resumed(&ex.run_id, &ex.plan, &ex.spec, events);
        let in_flight: Vec<Step> = events_in_flight(events);
        // A run that was not finished lost its process: mark it, so the
        // journal shows the resume and steps in flight are repeated.
        if !ex.state.is_finished() {
            ex.record(Event::Interrupted {
                at: now_ms(),
                in_flight,
            })
            .await?;
        }
        patient!(
            ex,
            ex.journal.set_status(&ex.run_id, RunStatus::Running, "")
        )?;
        ex.drive().await
    }

    /// Who drives the run from where (this process), and the rollout it
    /// drives: what a report reads from the journal.
    fn origin(&self) -> Event {
        Event::Origin {
            at: now_ms(),
            user: crate::journal::operator(),
            host: crate::journal::hostname(),
            pid: std::process::id(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            spec: Some(Box::new(self.spec.clone())),
        }
    }

    /// Journal an event, apply it, report it.
    async fn record(&mut self, ev: Event) -> Result<(), ExecError> {
        let ev = crate::journal::bounded(ev);
        let seq = patient!(self, self.journal.append(&self.run_id, &ev))?;
        self.state.apply(&self.spec, &ev);
        self.publish(seq, &ev);
        if let Event::Finished {
            outcome, reason, ..
        } = &ev
        {
            patient!(
                self,
                self.journal
                    .set_status(&self.run_id, RunStatus::from(*outcome), reason)
            )?;
            self.mark_left_for_person();
        }
        match &ev {
            Event::Intent { step, .. } => {
                self.crash
                    .hit("intent", step.kind.as_str(), step_subject(step))
            }
            Event::Outcome { step, .. } => {
                self.crash
                    .hit("outcome", step.kind.as_str(), step_subject(step))
            }
            other => self.crash.hit("transition", other.kind(), None),
        }
        Ok(())
    }

    /// The run ended: mark on this machine the nodes it left for a person,
    /// so that a run from another journal does not take them over. A
    /// marker that cannot be written is said (the journal still holds this
    /// journal's runs back).
    fn mark_left_for_person(&self) {
        let marked = self
            .journal
            .run(&self.run_id)
            .map_err(ExecError::from)
            .and_then(|rec| unresolved::mark(self.journal.as_ref(), &rec));
        if let Err(e) = marked {
            self.reporter.note(&format!(
                "warning: could not mark on this machine the node(s) left for a person ({e}); runs from other journals are not held back"
            ));
        }
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

    async fn take_commands(&mut self) -> Result<(), ExecError> {
        for c in patient!(self, self.journal.pending_commands(&self.run_id))? {
            let at = now_ms();
            let reason = c.reason.clone();
            let ev = match c.kind.as_str() {
                "promote" => {
                    if glidepath_core::awaiting_promotion(&self.spec, &self.state).is_none() {
                        // never pre-approve a pause that has not come yet
                        patient!(
                            self,
                            self.journal.refuse_command(
                                c.id,
                                "the run is not waiting at a pause point or a held breach now",
                            )
                        )?;
                        continue;
                    }
                    Event::Promoted { at, reason }
                }
                "abort" => Event::AbortRequested { at, reason },
                "rollback" => {
                    if let Some(what) = self.state.irreversible_list() {
                        if !reason.starts_with(crate::journal::FORCED) {
                            // the CLI checks too; this closes the race with a
                            // task that ran since
                            let why = format!("irreversible task(s) ran: {what}; `rollback --force --reason` if the previous release works with them");
                            patient!(self, self.journal.refuse_command(c.id, &why))?;
                            continue;
                        }
                    }
                    Event::RollbackRequested { at, reason }
                }
                _ => {
                    patient!(self, self.journal.consume_command(c.id))?;
                    continue;
                }
            };
            if matches!(
                ev,
                Event::RollbackRequested { .. } | Event::AbortRequested { .. }
            ) && self.state.is_finished()
            {
                patient!(
                    self,
                    self.journal
                        .set_status(&self.run_id, RunStatus::Running, "")
                )?;
            }
            let seq = patient!(
                self,
                self.journal.append_for_command(&self.run_id, &ev, c.id)
            )?;
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
            Err(ExecError::Journal(e @ JournalError::Fenced { .. })) => {
                // another process holds the run now: the commands of the
                // steps in flight here stop with this process
                crate::shell::kill_all();
                Err(ExecError::Journal(e))
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
        // unheard for the TTL, the lease may have been taken over: another
        // process may drive these nodes now, so they are left as they are
        let ttl = Duration::from_millis(crate::journal::lease_ttl_ms());
        let silent = self.lease_confirmed.elapsed();
        let may_be_taken = matches!(cause, JournalError::Unavailable { .. })
            && silent + Duration::from_secs(1) >= ttl;
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
            if may_be_taken {
                kept.push(format!(
                    "{name} (left as it is: the lease was last confirmed {}s ago, past the {}s TTL, so another process may have taken the run over)",
                    silent.as_secs(),
                    ttl.as_secs()
                ));
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
            unreachable: matches!(cause, JournalError::Unavailable { .. }),
            cause: cause.to_string(),
            restored: restored.into(),
            kept: kept.into(),
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
            self.interrupted(n, what).await?;
        }
        let mut last_beat = std::time::Instant::now();
        let mut last_waiting: Option<String> = None;
        // a shared journal wakes the loop when a command is queued
        // (LISTEN/NOTIFY); the embedded one is polled each round
        let wake = self.journal.changes();
        loop {
            self.take_commands().await?;
            if let Phase::Finished(outcome) = self.state.phase {
                if self.state.in_flight().is_empty() && self.state.run_step_in_flight.is_none() {
                    patient!(
                        self,
                        self.journal
                            .release_lease(&self.plan.fleet_name, &self.run_id)
                    )?;
                    return Ok(RunResult {
                        run_id: self.run_id.clone(),
                        outcome,
                        state: self.state.clone(),
                    });
                }
            }
            if let Some(reason) = self.state.suspended.clone() {
                // decide suspends only with nothing in flight
                patient!(
                    self,
                    self.journal
                        .set_status(&self.run_id, RunStatus::Suspended, &reason)
                )?;
                patient!(
                    self,
                    self.journal
                        .release_lease(&self.plan.fleet_name, &self.run_id)
                )?;
                return Err(ExecError::Suspended {
                    run: self.run_id.clone(),
                    reason,
                    journal: crate::hints::journal_arg(&self.journal.location()),
                });
            }
            let now = now_ms();
            let d = decide(&self.spec, &self.state, now);
            if let Some(ev) = d.transition {
                self.record(ev).await?;
                continue;
            }
            for step in d.steps {
                self.record(Event::Intent {
                    at: now_ms(),
                    step: step.clone(),
                })
                .await?;
                if step.kind == StepKind::Task {
                    let fut = self.task_future(&step);
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let outcome = fut.await;
                        let _ = tx.send((step, outcome));
                    });
                    continue;
                }
                let fut = perform(
                    self.drivers.clone(),
                    self.target_for(&step),
                    self.run_targets(&step),
                    self.baseline_targets(&step),
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
                // what the run waits for is a state of the run record
                // (`paused`, `waiting`, or back to `running`), written when
                // it changes: `status` reads it, never re-deriving it per poll
                let status = match (d.waits_on, &d.waiting) {
                    (Some(WaitsOn::Person), Some(_)) => RunStatus::Paused,
                    (Some(WaitsOn::Infrastructure), Some(_)) => RunStatus::Waiting,
                    _ => RunStatus::Running,
                };
                if !self.state.is_finished() {
                    patient!(
                        self,
                        self.journal.set_status(
                            &self.run_id,
                            status,
                            d.waiting.as_deref().unwrap_or(""),
                        )
                    )?;
                }
                if let Some(w) = &d.waiting {
                    let hints = Hints::new(&self.run_id, &self.journal.location());
                    self.reporter.waiting(&self.run_id, &hints.fill(w));
                    if d.waits_on == Some(WaitsOn::Person) {
                        let now = crate::hints::situation(
                            RunStatus::Paused,
                            &self.spec,
                            &self.state,
                            Some(true),
                        );
                        for c in hints.next_commands(now) {
                            self.reporter.note(&format!("  next: {c}"));
                        }
                    }
                }
                last_waiting = d.waiting.clone();
            }
            let wait_ms = d
                .wake_at
                .map_or(250, |w| w.saturating_sub(now_ms()))
                .min(250);
            tokio::select! {
                Some((step, outcome)) = rx.recv() => {
                    self.crash.hit("done", step.kind.as_str(), step_subject(&step));
                    self.record(Event::Outcome { at: now_ms(), step, outcome }).await?;
                }
                _ = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
                _ = async {
                    match &wake {
                        Some(n) => n.notified().await,
                        None => std::future::pending().await,
                    }
                } => {}
                Ok(()) = stop.changed() => {
                    let (n, what) = *stop.borrow_and_update();
                    if n > interrupts {
                        interrupts = n;
                        self.interrupted(n, what).await?;
                    }
                }
            }
            if last_beat.elapsed() > Duration::from_secs(1) {
                let sent = std::time::Instant::now();
                patient!(
                    self,
                    self.journal.heartbeat(&self.plan.fleet_name, &self.run_id)
                )?;
                // a heartbeat that took long (an outage waited out) was
                // written at an unknown moment: the next quick one confirms
                if sent.elapsed() < Duration::from_secs(1) {
                    self.lease_confirmed = sent;
                }
                last_beat = std::time::Instant::now();
            }
        }
    }

    async fn interrupted(&mut self, count: u32, what: &str) -> Result<(), ExecError> {
        if count > 1 {
            return Err(ExecError::Interrupted(
                self.run_id.clone(),
                self.journal.location(),
            ));
        }
        self.reporter.note(&format!(
            "{what}: aborting safely (finishing steps in flight, restoring half-deployed nodes); press Ctrl-C again to stop at once"
        ));
        self.record(Event::AbortRequested {
            at: now_ms(),
            reason: format!("{what} received"),
        })
        .await
    }

    /// A `[[pre]]`/`[[post]]` task, carried out by `crate::tasks`.
    fn task_future(
        &self,
        step: &Step,
    ) -> impl std::future::Future<Output = StepOutcome> + Send + 'static {
        let task = step.task.as_ref().and_then(|r| {
            self.plan
                .tasks_of(r.phase)
                .get(r.index)
                .filter(|t| t.name == r.name)
                .map(|t| (*t).clone())
        });
        let captured = task.as_ref().and_then(|t| match &t.action {
            crate::config::TaskAction::CompareTo { capture, .. } => {
                self.state.tasks.captured.get(capture).cloned()
            }
            _ => None,
        });
        let cx = crate::tasks::TaskContext {
            plan_dir: self.plan.dir.clone(),
            version: self.plan.release.version.clone(),
            previous: self.previous_release(),
            run_id: self.run_id.clone(),
            captured,
            pinned: self.state.tasks.pinned.clone(),
        };
        let what = step.reason.clone();
        async move {
            match task {
                Some(t) => crate::tasks::perform(&t, &cx).await,
                None => StepOutcome::failed(format!(
                    "the plan has no such task ({what}): was the journaled plan changed?"
                )),
            }
        }
    }

    fn target_for(&self, step: &Step) -> Option<Target> {
        let n = step.node.as_ref()?;
        let mut t = self.targets.get(n).cloned()?;
        self.with_releases(&mut t);
        if let Some(v) = &step.version {
            t.release = v.clone();
        }
        Some(t)
    }

    /// A task's `{previous}`: the release every node ran when the run
    /// started.
    fn previous_release(&self) -> Result<String, String> {
        let befores: std::collections::BTreeSet<Option<&String>> = self
            .state
            .nodes
            .values()
            .map(|n| n.before.as_ref())
            .collect();
        match befores.into_iter().collect::<Vec<_>>()[..] {
            [Some(v)] => Ok(v.clone()),
            [None] | [] => Err("no node had a release when the run started".into()),
            _ => Err("the nodes ran different releases when the run started".into()),
        }
    }

    /// Fill a target's `{version}` (the release its track leads to) and
    /// `{previous}` (its release when the run started) from the state.
    fn with_releases(&self, t: &mut Target) {
        let Some(ns) = self.state.nodes.get(&t.name) else {
            return;
        };
        let before = ns.before.clone().unwrap_or_default();
        t.release = match ns.track {
            glidepath_core::Track::Forward => self.spec.version.clone(),
            glidepath_core::Track::Back if !before.is_empty() => before.clone(),
            _ if ns.switched => self.spec.version.clone(),
            _ => before.clone(),
        };
        t.previous = before;
    }

    /// The nodes the SLI window compares the canaries with (none for any
    /// other step).
    fn baseline_targets(&self, step: &Step) -> Vec<Target> {
        if !matches!(step.kind, StepKind::StartWindow | StepKind::Probe) {
            return vec![];
        }
        // the nodes not upgraded yet (all but the canary for its window;
        // none for the watch after the last batch); a node of the groups
        // reached that failed within the failure budget runs the old
        // release but is neither watched nor baseline: it is set apart
        let g = self
            .state
            .group
            .min(self.spec.groups.len().saturating_sub(1));
        let reached: Vec<&String> = self.spec.groups[..=g].iter().flatten().collect();
        self.plan
            .baseline_nodes()
            .iter()
            .filter(|n| !reached.contains(n))
            .filter_map(|n| self.targets.get(n).cloned())
            .collect()
    }

    /// The nodes an SLI window watches: the groups upgraded so far (the
    /// canary; after a batch, every batch so far; after the last, the
    /// fleet), but those that failed within the failure budget (they run
    /// their old release).
    fn watched(&self) -> impl Iterator<Item = &String> {
        self.state
            .upgraded(&self.spec, self.state.group)
            .into_iter()
    }

    /// The nodes a run-level step acts on, with the release each should
    /// serve: the watched nodes for an SLI window, the peers for
    /// `check_peers`.
    fn run_targets(&self, step: &Step) -> Vec<(Target, Option<String>)> {
        let named: Vec<(String, Option<String>)> = match step.kind {
            StepKind::CheckPeers => self.state.peers_to_check(&self.spec),
            _ if self.spec.groups.is_empty() => vec![],
            _ => self
                .watched()
                .map(|n| (n.clone(), Some(self.spec.version.clone())))
                .collect(),
        };
        named
            .into_iter()
            .filter_map(|(n, v)| {
                let mut t = self.targets.get(&n).cloned()?;
                self.with_releases(&mut t);
                Some((t, v))
            })
            .collect()
    }
}
