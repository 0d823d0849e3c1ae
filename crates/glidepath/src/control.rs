//! What operators do to runs from another process: read a run's summary
//! (`status`, the end of `run`), and the command protocol of `promote`,
//! `abort` and `rollback`: queue the command in the journal for the live
//! process and wait for its acknowledgement, or take the run over and carry
//! the command out when no live process holds it.

use crate::drivers::Drivers;
use crate::executor::{ExecError, Executor, RunResult, StopSignals};
use crate::journal::{now_ms, JournalError, RunRecord, RunStatus, Store};
use crate::output::Holder;
use crate::plan::Plan;
use crate::report::{summarize_in, Reporter, RunSummary};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::journal::FORCED;

/// What an operator asks of a run.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub command: OperatorCommand,
    /// Journaled with the command.
    pub reason: &'a str,
    /// `rollback --force`: even though irreversible tasks ran.
    pub force: bool,
}

/// How long `promote`/`abort`/`rollback` wait for the live process to act.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a sender looks for the acknowledgement when the journal does
/// not wake it ([`Store::changes`]), and at the latest when it does.
pub const ACK_POLL: Duration = Duration::from_millis(100);

/// The same for [`queue`] (the API waits a short while only).
const QUEUE_POLL: Duration = Duration::from_millis(50);

/// An operator command (the journal's command kinds).
pub use crate::journal::CommandKind as OperatorCommand;

/// What became of a command.
#[derive(Debug)]
pub enum Sent {
    /// The run had already finished: nothing to do (abort only; a rollback
    /// of a finished run takes it over, a promote is refused).
    AlreadyFinished { status: RunStatus },
    /// The live process journaled it.
    Applied { holder: Holder },
    /// A promote with no live process: queued for `resume`.
    Queued,
    /// No live process held the run: this one took it over and carried the
    /// command out.
    CarriedOut(Box<RunResult>),
}

/// Why a command was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("run {run} was refused at preflight; nothing to {command}")]
    RefusedAtPreflight {
        run: String,
        command: OperatorCommand,
    },
    #[error("run {run} already finished ({status}): no pause waits for a promote")]
    PromoteFinished { run: String, status: RunStatus },
    #[error("run {run} is rolling back; abort would leave nodes half-restored, so the rollback continues (`glidepath status {run}`)")]
    RollingBack { run: String },
    #[error("run {run} is not waiting at a pause point{waits}: promote acts only on a pause that waits now, so nothing was sent\nhint: `glidepath status {run}` shows what the run does; pause points are [strategy] pauses")]
    NotPaused { run: String, waits: String },
    #[error("run {run} refused the {command}: {why}")]
    RefusedByRun {
        run: String,
        command: OperatorCommand,
        why: String,
    },
    #[error("run {run} ran irreversible task(s): {what}\na rollback restores every node's previous release, but it cannot undo these; the previous release may not work with what they changed\nhint: if you have checked that it does, `glidepath rollback {run} --force --reason \"why\"` (journaled with your reason)")]
    Irreversible { run: String, what: String },
    #[error("--force needs --reason \"why\": forcing a rollback past irreversible tasks is journaled with the reason")]
    ForceWithoutReason,
    #[error("run reference `{reference}` matches {} runs: {}\nhint: give more of the id (`glidepath history` lists runs)", .candidates.len(), .candidates.join(", "))]
    AmbiguousRun {
        reference: String,
        candidates: Vec<String>,
    },
    #[error("the journal has no runs yet")]
    NoRuns,
    #[error("run {run} {}: only a run that left a node for a person (rollback_failed, or a node kept out of rotation) is resolved{}", describe_status(*status), resolve_hint(*status))]
    NotRollbackFailed { run: String, status: RunStatus },
    #[error("--reason is required: say what was fixed (it is journaled with who and when)")]
    ResolveWithoutReason,
    #[error("run {run} did not pick up the {command} within {}s; it stays queued", ACK_TIMEOUT.as_secs())]
    NotPickedUp {
        run: String,
        command: OperatorCommand,
    },
}

fn describe_status(s: RunStatus) -> String {
    if s.is_final() {
        format!("already finished ({s}): nothing to resolve")
    } else {
        format!("is {s}, not finished: nothing to resolve yet")
    }
}

fn resolve_hint(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Resolved => "; it was resolved before",
        s if s.is_final() => "",
        _ => "\nhint: a run that has not ended is stopped with `glidepath abort` or `glidepath rollback`; `glidepath status` shows it",
    }
}

/// What [`resolve`] journaled.
#[derive(Debug, Clone)]
pub struct Resolution {
    pub run: RunRecord,
    pub by: String,
    /// The nodes the run had left for a person.
    pub nodes: Vec<String>,
    /// This machine's markers of the run that could not be removed.
    pub markers_left: Vec<std::path::PathBuf>,
}

/// The nodes (name, address) a finished run left for a person and nobody
/// resolved, or why there is nothing to resolve.
pub fn to_resolve(
    j: &dyn Store,
    run: &str,
) -> Result<(RunRecord, Vec<(String, String)>), ControlError> {
    let rec = j.run(run)?;
    match crate::executor::unresolved::left_for_person(j, &rec)? {
        Some(nodes) => Ok((rec, nodes)),
        None => Err(ControlError::NotRollbackFailed {
            status: if rec.status.is_final()
                && rec.status != RunStatus::Refused
                && j.events(&rec.id)?
                    .iter()
                    .any(|e| matches!(e, glidepath_core::Event::Resolved { .. }))
            {
                RunStatus::Resolved
            } else {
                rec.status
            },
            run: rec.id,
        }),
    }
}

/// What is still wrong with the nodes a run left for a person, one line
/// per problem: a node with no current release, one that does not answer
/// its health check on the release it runs, one still out of rotation at
/// the balancer (or whose balancer does not answer). Empty: all fine.
pub async fn still_wrong(plan: &Plan, nodes: &[(String, String)]) -> Vec<String> {
    let drivers = Drivers::for_plan(plan);
    let mut out = Vec::new();
    for (name, _) in nodes {
        let Some(node) = plan.nodes.iter().find(|n| &n.name == name) else {
            continue;
        };
        let t = plan.target(node);
        let cur = match drivers.deployer.current(&t).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                out.push(format!(
                    "{name} has no current release in {}",
                    t.install_dir.display()
                ));
                continue;
            }
            Err(e) => {
                out.push(format!("{name}: {e}"));
                continue;
            }
        };
        let t = crate::drivers::Target {
            previous: cur.clone(),
            ..t
        };
        if let Err(e) = drivers.health.probe(&t, Some(&cur)).await {
            out.push(format!(
                "{name} runs {cur} but does not answer its health check ({e})"
            ));
        }
        match drivers.balancer.out_before(&t).await {
            Ok(None) => {}
            Ok(Some(why)) => out.push(format!("{name} is still out of rotation ({why})")),
            Err(e) => out.push(format!("{name}: the balancer does not answer ({e})")),
        }
    }
    out
}

/// Close a run that left node(s) for a person (`rollback_failed`, or a node
/// kept out of rotation in a run that went on) once a person fixed them:
/// the `Resolved` event (who, why) is journaled under the fleet's lease, a
/// `rollback_failed` run's status becomes `resolved`, and this machine's
/// markers of the run are removed, so that a new run on those nodes may
/// start. Any other run is refused (nothing is written). Whether the nodes
/// are fine is the caller's to check (`glidepath resolve` does).
pub fn resolve(j: &mut dyn Store, run: &str, reason: &str) -> Result<Resolution, ControlError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ControlError::ResolveWithoutReason);
    }
    let (rec, nodes) = to_resolve(j, run)?;
    let by = format!("{}@{}", operator(), crate::journal::hostname());
    j.acquire_lease(&rec.fleet, &rec.id, false)?;
    let written = j
        .append(
            &rec.id,
            &glidepath_core::Event::Resolved {
                at: now_ms(),
                by: by.clone(),
                reason: reason.to_string(),
            },
        )
        .and_then(|_| {
            if rec.status != RunStatus::RollbackFailed {
                return Ok(()); // a run that went on keeps its outcome
            }
            j.set_status(
                &rec.id,
                RunStatus::Resolved,
                &format!("resolved by {by}: {reason}"),
            )
        });
    let released = j.release_lease(&rec.fleet, &rec.id);
    written?;
    released?;
    let (_, markers_left) = crate::journal::locks::release_held(&rec.id, &j.location())?;
    Ok(Resolution {
        run: j.run(&rec.id)?,
        by,
        nodes: nodes.into_iter().map(|(n, _)| n).collect(),
        markers_left,
    })
}

pub use crate::executor::unresolved::journaled_plan;

/// A run's summary from the journal: per node, with reasons, what it waits
/// for and (with `holder`) the process holding it.
pub fn summary(j: &dyn Store, rec: &RunRecord, holder: bool) -> Result<RunSummary, ControlError> {
    let plan = journaled_plan(rec)?;
    let now = now_ms();
    let holder = if holder {
        j.lease_of_run(&rec.id)?.map(|l| Holder::of(&l, now))
    } else {
        None
    };
    let hints = crate::hints::Hints::new(&rec.id, &j.location());
    let mut s = summarize_in(
        rec,
        &plan.rollout_spec(),
        &j.events(&rec.id)?,
        holder,
        now,
        &hints,
    );
    s.campaign = j
        .campaign_of_run(&rec.id)?
        .and_then(|c| crate::output::CampaignRef::of(&c, &rec.id));
    Ok(s)
}

/// The run a reference names: `latest` (the newest run), a full run id, or
/// a unique prefix of one. An ambiguous prefix is refused with the
/// candidates; no match is [`JournalError::NoSuchRun`].
pub fn resolve_run(j: &dyn Store, reference: &str) -> Result<RunRecord, ControlError> {
    let reference = reference.trim();
    if reference == "latest" {
        return latest(j)?.ok_or(ControlError::NoRuns);
    }
    match j.run(reference) {
        Err(JournalError::NoSuchRun(_)) if !reference.is_empty() => {}
        other => return Ok(other?),
    }
    let mut found: Vec<RunRecord> = j
        .runs(i64::MAX as usize)?
        .into_iter()
        .filter(|r| r.id.starts_with(reference))
        .collect();
    match found.len() {
        0 => Err(JournalError::NoSuchRun(reference.to_string()).into()),
        1 => Ok(found.remove(0)),
        _ => Err(ControlError::AmbiguousRun {
            reference: reference.to_string(),
            candidates: found.into_iter().map(|r| r.id).collect(),
        }),
    }
}

/// The latest run of the journal, if any.
pub fn latest(j: &dyn Store) -> Result<Option<RunRecord>, ControlError> {
    Ok(j.runs(1)?.into_iter().next())
}

/// Send `command` to `run`: checked against the run's state, queued in the
/// journal, and acknowledged by the live process (within [`ACK_TIMEOUT`]).
/// With no live process, a promote stays queued, and an abort or a rollback
/// is carried out here: the run is resumed with `reporter` narrating and
/// `stop` (called only then) installing the signal handlers.
pub async fn send(
    j: impl Into<Box<dyn Store>>,
    run: &str,
    Request {
        command,
        reason,
        force,
    }: Request<'_>,
    say: &(dyn Fn(&str) + Send + Sync),
    reporter: Arc<dyn Reporter>,
    stop: &(dyn Fn() -> StopSignals + Send + Sync),
) -> Result<Sent, ControlError> {
    let j: Box<dyn Store> = j.into();
    let run = run.to_string();
    let reason = match prepare(j.as_ref(), &run, command, reason, force)? {
        Prepared::Done(sent) => return Ok(sent),
        Prepared::Queue(reason) => reason,
    };
    let reason = reason.as_str();
    use OperatorCommand::*;
    // the holder is read before the command is queued: a holder woken at
    // once (NOTIFY) may act, finish and give the lease back before a read
    // after the queueing, which would then take the finished run over
    let lease = j.lease_of_run(&run)?;
    let id = j.push_command(&run, command, reason)?;
    if let Some(l) = lease.filter(|l| !l.holder_dead(now_ms())) {
        say(&format!(
            "{command} sent to run {run} (pid {} on {}); waiting for it to act…",
            l.pid, l.host
        ));
        let outcome = wait_for(
            j.changes().as_deref(),
            Instant::now() + ACK_TIMEOUT,
            ACK_POLL,
            || j.command_outcome(id),
        )
        .await?;
        match outcome.as_deref() {
            None => {}
            Some("applied") => {
                return Ok(Sent::Applied {
                    holder: Holder::of(&l, now_ms()),
                })
            }
            Some(why) => {
                return Err(ControlError::RefusedByRun {
                    run,
                    command,
                    why: why.to_string(),
                })
            }
        }
        return Err(ControlError::NotPickedUp { run, command });
    }
    if command == Promote {
        return Ok(Sent::Queued);
    }
    say(&format!(
        "no live process holds run {run}: carrying out the {command} here"
    ));
    let r = Executor::resume_with(j, &run, Drivers::for_plan, reporter, Some(stop())).await?;
    Ok(Sent::CarriedOut(Box::new(r)))
}

/// A command queued by [`queue`]: its id in the journal, and what became
/// of it.
#[derive(Debug)]
pub struct Queued {
    pub id: i64,
    pub sent: Sent,
}

/// Queue `command` for `run`, checked like [`send`], without ever taking
/// the run over (what `glidepath serve` does): when a live process holds
/// the run, wait up to `wait` for it to act ([`Sent::Applied`], or an
/// error if it refused); otherwise, or if it has not acted yet, the
/// command stays queued ([`Sent::Queued`]) for the holder or for `resume`.
/// Blocking: it polls the journal, and wakes early on the journal's notice
/// ([`Store::changes`]). Call it on a blocking thread (`spawn_blocking`)
/// or outside a runtime, never on an async task.
pub fn queue(
    j: &dyn Store,
    run: &str,
    Request {
        command,
        reason,
        force,
    }: Request<'_>,
    wait: Duration,
) -> Result<Queued, ControlError> {
    let reason = match prepare(j, run, command, reason, force)? {
        Prepared::Done(sent) => return Ok(Queued { id: 0, sent }),
        Prepared::Queue(reason) => reason,
    };
    let id = j.push_command(run, command, &reason)?;
    let Some(l) = j.lease_of_run(run)?.filter(|l| !l.holder_dead(now_ms())) else {
        return Ok(Queued {
            id,
            sent: Sent::Queued,
        });
    };
    let changes = j.changes();
    let look = wait_for(
        changes.as_deref(),
        Instant::now() + wait,
        QUEUE_POLL,
        || j.command_outcome(id),
    );
    // on a blocking thread of the runtime (`spawn_blocking`), or outside any
    let outcome = match tokio::runtime::Handle::try_current() {
        Ok(rt) => rt.block_on(look),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| JournalError::Unavailable {
                location: j.location(),
                message: format!("cannot wait for the acknowledgement: {e}"),
            })?
            .block_on(look),
    }?;
    match outcome.as_deref() {
        None => Ok(Queued {
            id,
            sent: Sent::Queued,
        }),
        Some("applied") => Ok(Queued {
            id,
            sent: Sent::Applied {
                holder: Holder::of(&l, now_ms()),
            },
        }),
        Some(why) => Err(ControlError::RefusedByRun {
            run: run.to_string(),
            command,
            why: why.to_string(),
        }),
    }
}

/// Look with `check` until it finds something or `deadline` passes (then
/// `None`): after each miss, wait for the journal's notice (`changes`,
/// [`Store::changes`]) or `poll`, whichever comes first. The notice is
/// listened for before each look, so one between the look and the wait is
/// not missed.
async fn wait_for<T>(
    changes: Option<&tokio::sync::Notify>,
    deadline: Instant,
    poll: Duration,
    mut check: impl FnMut() -> Result<Option<T>, JournalError>,
) -> Result<Option<T>, JournalError> {
    loop {
        let mut woken = std::pin::pin!(changes.map(|n| n.notified()));
        if let Some(w) = woken.as_mut().as_pin_mut() {
            w.enable();
        }
        if let Some(found) = check()? {
            return Ok(Some(found));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        match woken.as_mut().as_pin_mut() {
            Some(w) => {
                let _ = tokio::time::timeout(poll.min(left), w).await;
            }
            None => tokio::time::sleep(poll.min(left)).await,
        }
    }
}

/// What [`prepare`] found: nothing to send, or the reason to queue with.
enum Prepared {
    Done(Sent),
    Queue(String),
}

/// Check `command` against the run's state: an error, nothing to do, or
/// the reason to journal with it (a forced rollback's says so).
fn prepare(
    j: &dyn Store,
    run: &str,
    command: OperatorCommand,
    reason: &str,
    force: bool,
) -> Result<Prepared, ControlError> {
    use OperatorCommand::*;
    let rec = j.run(run)?;
    let run = run.to_string();
    if rec.status == RunStatus::Refused {
        return Err(ControlError::RefusedAtPreflight { run, command });
    }
    if rec.status.is_final() && command == Promote {
        return Err(ControlError::PromoteFinished {
            run,
            status: rec.status,
        });
    }
    if rec.status.is_final() && command != Rollback {
        return Ok(Prepared::Done(Sent::AlreadyFinished { status: rec.status }));
    }
    let plan = journaled_plan(&rec)?;
    let spec = plan.rollout_spec();
    let state = glidepath_core::RunState::replay(&spec, &j.events(&run)?);
    if rec.status.is_final() && command == Rollback {
        // a finished run with no node on its release: nothing to roll back
        // (journaling a second finish would only blur the record)
        let changed = state
            .nodes
            .values()
            .any(|n| n.switched || n.status == glidepath_core::NodeStatus::Updated);
        if !changed {
            return Ok(Prepared::Done(Sent::AlreadyFinished { status: rec.status }));
        }
    }
    let reason = match (command, state.irreversible_list()) {
        (Rollback, Some(what)) if !force => {
            return Err(ControlError::Irreversible { run, what });
        }
        (Rollback, Some(what)) => {
            format!("{FORCED} ({what}) by {}: {reason}", operator())
        }
        _ => reason.to_string(),
    };
    if command == Abort && state.phase == glidepath_core::Phase::RollingBack {
        return Err(ControlError::RollingBack { run });
    }
    if command == Promote && glidepath_core::awaiting_promotion(&spec, &state).is_none() {
        let waits = glidepath_core::decide(&spec, &state, now_ms())
            .waiting
            .map(|w| format!(" (it waits for: {w})"))
            .unwrap_or_default();
        return Err(ControlError::NotPaused { run, waits });
    }
    Ok(Prepared::Queue(reason))
}

pub use crate::journal::operator;

#[cfg(test)]
mod tests {
    use super::*;

    /// A look that misses once, with the journal's notice (as a store
    /// that hears the holder's acknowledgement would), and finds on its
    /// second call. Returns the time from the first look to the second.
    async fn gap_after_notice(
        notice: Option<Arc<tokio::sync::Notify>>,
        poll: Duration,
    ) -> Duration {
        let times = std::sync::Mutex::new(Vec::new());
        let found = wait_for(
            notice.as_deref(),
            Instant::now() + Duration::from_secs(10),
            poll,
            || {
                let mut t = times.lock().unwrap();
                t.push(Instant::now());
                if t.len() > 1 {
                    return Ok(Some("applied".to_string()));
                }
                if let Some(n) = &notice {
                    n.notify_waiters();
                }
                Ok(None)
            },
        )
        .await
        .unwrap();
        assert_eq!(found.as_deref(), Some("applied"));
        let t = times.lock().unwrap();
        assert_eq!(t.len(), 2);
        t[1] - t[0]
    }

    #[tokio::test]
    async fn a_notice_wakes_the_wait_before_the_poll() {
        let poll = Duration::from_secs(5);
        let gap = gap_after_notice(Some(Arc::new(tokio::sync::Notify::new())), poll).await;
        assert!(gap < Duration::from_secs(1), "woken after {gap:?}");
    }

    #[tokio::test]
    async fn without_notices_the_wait_polls() {
        let poll = Duration::from_millis(200);
        let gap = gap_after_notice(None, poll).await;
        assert!(gap >= poll, "looked again after {gap:?}");
    }

    #[tokio::test]
    async fn the_wait_ends_at_the_deadline() {
        let n = tokio::sync::Notify::new();
        let t0 = Instant::now();
        let found: Option<()> = wait_for(
            Some(&n),
            t0 + Duration::from_millis(300),
            Duration::from_millis(50),
            || Ok(None),
        )
        .await
        .unwrap();
        assert!(found.is_none());
        assert!(t0.elapsed() >= Duration::from_millis(300));
        assert!(t0.elapsed() < Duration::from_secs(5));
    }
}
