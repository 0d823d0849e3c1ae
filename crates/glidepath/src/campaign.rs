//! `glidepath upgrade`: the stages `glidepath plan` computes, carried out one
//! after another as one journaled *campaign*.
//!
//! [`prepare`] plans (the same as `plan`), checks that every stage can be
//! carried out before any starts (each component's `rollout_plan` loads with
//! the release's `artifact` and `sha256` from the system file; each flag has
//! an `enable` command), and gives the stages. [`start`] journals the
//! campaign (the system file's text, the target, the stages) and drives it;
//! [`resume`] continues one. A stage moving a component runs its rollout plan
//! with the release overridden (`run --release`), through the executor; a
//! stage switching a flag runs the system file's command (`shell`).
//!
//! Each stage's run id is journaled before the run exists (the intent before
//! the effect), so a crash at any point leaves a campaign that [`resume`]
//! continues: a stage whose run succeeded is skipped, a run left unfinished
//! is resumed through `Executor::resume_with`, a run that never started is
//! started. The campaign stops at the first stage that does not succeed: a
//! rolled-back run (or a failed flag command) fails it for good (not
//! retried: the planner replans from the versions in use); a refusal before
//! any node changed, an operator's abort or an outage stops it resumable.

use crate::control::journaled_plan;
use crate::drivers::Drivers;
use crate::executor::{new_run_id, ExecError, Executor, RunResult, StartOptions, StopSignals};
use crate::journal::{
    hostname, now_ms, CampaignRecord, CampaignStatus, JournalError, Location, RunStatus,
    StageAction, StageRecord, StageStatus, Store,
};
use crate::plan::{self, PlanError, ReleaseOverride};
use crate::report::Reporter;
use crate::system::SystemFile;
use crate::upgrade::{self, PlannedStage, UpgradeError, UpgradePlan};
use glidepath_core::compat::Stage;
use glidepath_core::{Outcome, RunState};
use std::sync::Arc;
use std::time::Duration;

/// Why a campaign could not start or continue.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    #[error(transparent)]
    Upgrade(#[from] UpgradeError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("the target cannot be reached safely: {0}")]
    Unreachable(String),
    /// Some stage cannot be carried out; nothing was started.
    #[error("the campaign cannot be carried out; nothing was started:\n  {}", .0.join("\n  "))]
    NotReady(Vec<String>),
    /// `--resume` of a campaign that failed.
    #[error("campaign {campaign} failed at stage {stage} of {total} ({title}): {detail}\nhint: a failed stage is not retried: its run rolled back (or its command failed) and the earlier stages stay in place; fix the release or the system file, then start a new campaign (`glidepath upgrade SYSTEM --to …`): the planner starts from the versions in use now")]
    Failed {
        campaign: String,
        stage: usize,
        total: usize,
        title: String,
        detail: String,
    },
}

/// A campaign ready to start: the planner's answer and the stages.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub plan: UpgradePlan,
    pub record: CampaignRecord,
}

/// The run id prefix of campaigns: `c…`, runs are `r…`.
pub fn new_campaign_id() -> String {
    format!("c{}", &new_run_id()[1..])
}

/// Is `id` a campaign's id (rather than a run's)?
pub fn is_campaign_id(id: &str) -> bool {
    id.starts_with('c')
}

/// Plan the stages from the versions in use to `to` (and `enable`), and
/// check that each can be carried out: every problem is reported at once,
/// before anything changes.
pub async fn prepare(
    sf: &SystemFile,
    to: &[String],
    enable: &[String],
    timeout: Duration,
) -> Result<Prepared, CampaignError> {
    let plan = upgrade::plan(sf, to, enable, timeout).await?;
    if !plan.reachable {
        return Err(CampaignError::Unreachable(
            plan.reason.clone().unwrap_or_default(),
        ));
    }
    let id = new_campaign_id();
    let mut problems = Vec::new();
    let mut stages = Vec::new();
    for (index, ps) in plan.stages.iter().enumerate() {
        let (action, why) = match action_of(sf, &id, ps) {
            Ok(x) => x,
            Err(p) => {
                let title = match &ps.stage {
                    Stage::Upgrade {
                        component,
                        from,
                        to,
                        ..
                    } => format!("{component} {} → {to}", from.join("+")),
                    Stage::EnableFlag { flag, .. } => format!("switch flag `{flag}` on"),
                };
                problems.push(format!("stage {} ({title}): {p}", index + 1));
                continue;
            }
        };
        stages.push(StageRecord {
            index,
            action,
            why,
            status: StageStatus::Pending,
            run_id: None,
            detail: String::new(),
            updated_at: now_ms(),
        });
    }
    if !problems.is_empty() {
        return Err(CampaignError::NotReady(problems));
    }
    let now = now_ms();
    Ok(Prepared {
        plan,
        record: CampaignRecord {
            id,
            system_path: sf
                .path
                .canonicalize()
                .unwrap_or_else(|_| sf.path.clone())
                .display()
                .to_string(),
            system_source: sf.source.clone(),
            to: to.to_vec(),
            enable: enable.to_vec(),
            status: CampaignStatus::Running,
            reason: String::new(),
            pid: std::process::id(),
            host: hostname(),
            created_at: now,
            updated_at: now,
            stages,
        },
    })
}

/// What a planned stage does, with everything it needs, or why it cannot
/// be carried out.
fn action_of(
    sf: &SystemFile,
    campaign: &str,
    ps: &PlannedStage,
) -> Result<(StageAction, String), String> {
    let sys = sf.path.display();
    match &ps.stage {
        Stage::Upgrade {
            component,
            from,
            to,
            why,
        } => {
            let Some(plan_path) = ps.rollout_plan.clone() else {
                return Err(format!("component `{component}` names no `rollout_plan` in {sys}\n    hint: add rollout_plan = \"plans/{component}.toml\" to its [[component]]"));
            };
            let Some((artifact, sha256)) = sf.artifacts.get(&(component.clone(), to.clone()))
            else {
                return Err(format!("release `{to}` of `{component}` declares no `artifact` and `sha256` in {sys}\n    hint: add artifact = \"dist/{component}-{to}.tar.gz\" and sha256 = \"…\" to that [[component.release]]"));
            };
            if !artifact.exists() {
                return Err(format!(
                    "artifact {} not found (declared in {sys}; relative paths are from the system file's directory)",
                    artifact.display()
                ));
            }
            // the plan must load with the override, as the stage will run it
            let o = ReleaseOverride {
                version: Some(to.clone()),
                artifact: Some(artifact.clone()),
                sha256: Some(sha256.clone()),
            };
            match plan::load_with(&plan_path, &o) {
                Ok(_) => {}
                Err(PlanError::Invalid(r)) => {
                    return Err(format!(
                        "the rollout plan {} does not load with release {to}:\n    {}",
                        plan_path.display(),
                        r.short().trim_end().replace('\n', "\n    ")
                    ))
                }
                Err(e) => return Err(e.to_string()),
            }
            Ok((
                StageAction::Upgrade {
                    component: component.clone(),
                    from: from.clone(),
                    to: to.clone(),
                    rollout_plan: plan_path.canonicalize().unwrap_or(plan_path),
                    artifact: artifact.clone(),
                    sha256: sha256.clone(),
                },
                why.clone(),
            ))
        }
        Stage::EnableFlag { flag, why } => {
            let Some(cmd) = sf.flag_commands.get(flag) else {
                return Err(format!("its [[capability]] in {sys} declares no `enable` command to switch it\n    hint: enable = \"./flags.sh enable {{flag}}\" (run from the system file's directory; {{flag}} and {{campaign}} are filled, quoted)"));
            };
            Ok((
                StageAction::EnableFlag {
                    flag: flag.clone(),
                    command: crate::template::render_shell(
                        &cmd.enable,
                        &[("flag", flag), ("campaign", campaign)],
                    ),
                    timeout_ms: cmd.timeout.as_millis() as u64,
                    dir: sf.dir.clone(),
                },
                why.clone(),
            ))
        }
    }
}

/// What a campaign process needs: the journal (the campaign's and every
/// stage's run; a SQLite file or a PostgreSQL database), the narration,
/// and the process's signal watch.
pub struct Runner {
    pub journal: Location,
    pub reporter: Arc<dyn Reporter>,
    pub stop: StopSignals,
}

/// How a campaign ended (this time).
#[derive(Debug)]
pub enum Ended {
    /// Every stage succeeded.
    Succeeded,
    /// A stage's run ended without succeeding: rolled back or a rollback
    /// failed (the campaign failed), or aborted (stopped, resumable).
    RunEnded {
        stage: usize,
        result: Box<RunResult>,
    },
    /// A flag's `enable` command failed (the campaign failed).
    FlagFailed { stage: usize, error: String },
    /// A stage could not run or was stopped before its end: refused by
    /// preflight or a lock (nothing changed), suspended by an outage, a
    /// signal, or the journal lost. Resumable.
    Stopped { stage: usize, error: ExecError },
    /// A signal came between two stages: the next one was not started.
    Interrupted { stage: usize },
}

/// A campaign at the end of this process's part, and what to tell people.
#[derive(Debug)]
pub struct CampaignResult {
    pub campaign: CampaignRecord,
    pub ended: Ended,
    /// What happened, naming the stage and its run, and what to do next.
    pub message: String,
}

/// Journal a prepared campaign and carry it out.
pub async fn start(p: Prepared, r: &Runner) -> Result<CampaignResult, CampaignError> {
    let j = r.journal.open()?;
    j.create_campaign(&p.record)?;
    r.reporter.note(&format!(
        "campaign {} · {} stage(s) · journal {} · follow it with: glidepath status {} --journal {}",
        p.record.id,
        p.record.stages.len(),
        j.location(),
        p.record.id,
        j.location()
    ));
    drive(j.as_ref(), &p.record.id, r).await
}

/// Continue a campaign: succeeded stages are skipped, an unfinished run is
/// resumed, a failed campaign is refused.
pub async fn resume(id: &str, r: &Runner) -> Result<CampaignResult, CampaignError> {
    let j = r.journal.open()?;
    let c = j.campaign(id)?;
    match c.status {
        CampaignStatus::Succeeded => {
            return Ok(CampaignResult {
                message: format!(
                    "campaign {id} already succeeded ({} stage(s)): nothing to do",
                    c.stages.len()
                ),
                campaign: c,
                ended: Ended::Succeeded,
            })
        }
        CampaignStatus::Failed => {
            let s = c
                .stages
                .iter()
                .find(|s| s.status == StageStatus::Failed)
                .or(c.current());
            return Err(CampaignError::Failed {
                campaign: id.to_string(),
                stage: s.map_or(0, |s| s.index + 1),
                total: c.stages.len(),
                title: s.map(|s| s.action.title()).unwrap_or_default(),
                detail: s.map(|s| s.detail.clone()).unwrap_or(c.reason.clone()),
            });
        }
        CampaignStatus::Running | CampaignStatus::Stopped => {}
    }
    j.claim_campaign(id)?;
    r.reporter.note(&format!(
        "resuming campaign {id}: {} of {} stage(s) done",
        c.stages
            .iter()
            .filter(|s| s.status == StageStatus::Succeeded)
            .count(),
        c.stages.len()
    ));
    drive(j.as_ref(), id, r).await
}

/// How one stage ended.
enum StageEnd {
    Succeeded(String),
    Ended(Ended),
}

async fn drive(j: &dyn Store, id: &str, r: &Runner) -> Result<CampaignResult, CampaignError> {
    let c = j.campaign(id)?;
    let total = c.stages.len();
    for s in &c.stages {
        let k = s.index + 1;
        if s.status == StageStatus::Succeeded {
            r.reporter.note(&format!(
                "stage {k} of {total}: {} — done before{}: skipped",
                s.action.title(),
                s.run_id
                    .as_deref()
                    .map_or(String::new(), |run| format!(" (run {run})"))
            ));
            continue;
        }
        if r.stop.borrow().0 > 0 {
            return finish(j, &c, Ended::Interrupted { stage: s.index });
        }
        r.reporter
            .note(&format!("━━ stage {k} of {total}: {}", s.action.title()));
        let end = match &s.action {
            StageAction::Upgrade { .. } => upgrade_stage(j, id, s, r).await?,
            StageAction::EnableFlag {
                command,
                timeout_ms,
                dir,
                ..
            } => {
                j.set_stage(id, s.index, StageStatus::Running, None, "")?;
                match crate::shell::run_shell(command, dir, Duration::from_millis(*timeout_ms))
                    .await
                {
                    Ok(detail) => StageEnd::Succeeded(detail),
                    Err(e) => StageEnd::Ended(Ended::FlagFailed {
                        stage: s.index,
                        error: e.0,
                    }),
                }
            }
        };
        match end {
            StageEnd::Succeeded(detail) => {
                j.set_stage(id, s.index, StageStatus::Succeeded, None, &detail)?;
                r.reporter
                    .note(&format!("stage {k} of {total} succeeded: {detail}"));
            }
            StageEnd::Ended(e) => return finish(j, &c, e),
        }
    }
    finish(j, &c, Ended::Succeeded)
}

/// The stage where a campaign ended: its index, its new status (none when
/// it stays as it is), what became of it.
type StageEnding = (usize, Option<StageStatus>, String);

/// Record how the campaign ended (and its stage's status), and say it. The
/// writes are best-effort: a journal that fails here (the reason a stage
/// stopped, perhaps) must not hide the stage's own message.
fn finish(
    j: &dyn Store,
    c: &CampaignRecord,
    ended: Ended,
) -> Result<CampaignResult, CampaignError> {
    let id = &c.id;
    let total = c.stages.len();
    let resume = format!(
        "glidepath upgrade --resume {id} --journal {}",
        crate::hints::shell_word(&j.location())
    );
    // (stage, its new status, what became of it), the campaign's status,
    // and the message's tail (what to do)
    let (stage, status, tail): (Option<StageEnding>, _, String) =
        match &ended {
            Ended::Succeeded => (None, CampaignStatus::Succeeded, String::new()),
            Ended::RunEnded { stage, result } => {
                let (st, reason) = match j.run(&result.run_id) {
                    Ok(rec) => (rec.status.to_string(), rec.reason),
                    Err(_) => (RunStatus::from(result.outcome).to_string(), String::new()),
                };
                let detail = format!(
                    "run {} {st}{}",
                    result.run_id,
                    if reason.is_empty() {
                        String::new()
                    } else {
                        format!(" — {reason}")
                    }
                );
                if result.outcome == Outcome::Aborted {
                    (
                        Some((*stage, Some(StageStatus::Stopped), detail)),
                        CampaignStatus::Stopped,
                        format!("the earlier stages stay in place; `{resume}` starts this stage again"),
                    )
                } else {
                    (
                        Some((*stage, Some(StageStatus::Failed), detail)),
                        CampaignStatus::Failed,
                        format!("{}`glidepath status {}` shows the run\nhint: a failed stage is not retried: fix the release (or the system file) and start a new campaign (`glidepath upgrade SYSTEM --to …`); the planner starts from the versions in use now", earlier(c, *stage), result.run_id),
                    )
                }
            }
            Ended::FlagFailed { stage, error } => (
                Some((*stage, Some(StageStatus::Failed), error.clone())),
                CampaignStatus::Failed,
                format!("{}hint: fix the command (it must be safe to run again) and start a new campaign; the flag may be partly switched", earlier(c, *stage)),
            ),
            Ended::Stopped { stage, error } => {
                // refused before anything changed: the stage starts a new run;
                // otherwise its run stays the stage's, to be resumed
                let refused = matches!(
                    error,
                    ExecError::Gate(_)
                        | ExecError::Unreachable(_)
                        | ExecError::Journal(
                            JournalError::Locked { .. }
                                | JournalError::OtherJournal { .. }
                                | JournalError::NodeBusy { .. }
                        )
                );
                let then = if refused {
                    "starts this stage again (no node was changed)"
                } else {
                    "continues this stage's run"
                };
                (
                    Some((
                        *stage,
                        refused.then_some(StageStatus::Stopped),
                        error.to_string(),
                    )),
                    CampaignStatus::Stopped,
                    format!("the earlier stages stay in place; `{resume}` {then}"),
                )
            }
            Ended::Interrupted { stage } => (
                Some((*stage, None, "stopped by a signal before it started".into())),
                CampaignStatus::Stopped,
                format!("`{resume}` continues"),
            ),
        };
    let (message, reason) = match &stage {
        None => (
            format!("campaign {id} succeeded: {total} stage(s) carried out"),
            String::new(),
        ),
        Some((i, _, detail)) => {
            let head = format!(
                "stage {} of {total} ({}): {detail}",
                i + 1,
                c.stages[*i].action.title()
            );
            let verb = if status == CampaignStatus::Failed {
                "failed"
            } else {
                "stopped"
            };
            (format!("campaign {id} {verb} at {head}\n{tail}"), head)
        }
    };
    let mut written: Result<(), JournalError> = Ok(());
    if let Some((i, Some(st), detail)) = &stage {
        written = j.set_stage(id, *i, *st, None, detail);
    }
    let written = written.and_then(|_| j.set_campaign_status(id, status, &reason));
    let (campaign, message) = match written.and_then(|_| j.campaign(id)) {
        Ok(now) => (now, message),
        Err(e) => {
            let mut now = c.clone();
            now.status = status;
            now.reason = reason;
            (
                now,
                format!("{message}\n(the journal could not record how the campaign ended: {e})"),
            )
        }
    };
    Ok(CampaignResult {
        campaign,
        ended,
        message,
    })
}

/// "stages 1–2 stay as they are (…)" for a campaign stopped at `stage`.
fn earlier(c: &CampaignRecord, stage: usize) -> String {
    if stage == 0 {
        return "no earlier stage was carried out\n".into();
    }
    let done: Vec<String> = c.stages[..stage].iter().map(|s| s.action.title()).collect();
    format!(
        "the earlier stages stay as they are: {}\n",
        done.join(" · ")
    )
}

/// Carry out an upgrade stage: continue its run if it has one, else start
/// one (its id journaled first).
async fn upgrade_stage(
    j: &dyn Store,
    id: &str,
    s: &StageRecord,
    r: &Runner,
) -> Result<StageEnd, CampaignError> {
    let StageAction::Upgrade {
        to,
        rollout_plan,
        artifact,
        sha256,
        ..
    } = &s.action
    else {
        unreachable!("an upgrade stage")
    };
    let mut run_id = None;
    if let (StageStatus::Running | StageStatus::Failed, Some(run)) = (s.status, &s.run_id) {
        match j.run(run) {
            Err(JournalError::NoSuchRun(_)) => run_id = Some(run.clone()),
            Err(e) => return Err(e.into()),
            Ok(rec) if rec.status == RunStatus::Refused => {}
            Ok(rec) if rec.status.is_final() => {
                r.reporter.note(&format!(
                    "run {run} already ended ({}) while the campaign's process was gone",
                    rec.status
                ));
                return Ok(ended_run(s.index, finished(j, &rec)?));
            }
            Ok(_) => {
                r.reporter.note(&format!("resuming run {run}"));
                let res = Executor::resume_with(
                    r.journal.open()?,
                    run,
                    Drivers::for_plan,
                    r.reporter.clone(),
                    Some(r.stop.clone()),
                )
                .await;
                return Ok(stage_end(s.index, res));
            }
        }
    }
    let run_id = run_id.unwrap_or_else(new_run_id);
    j.set_stage(id, s.index, StageStatus::Running, Some(&run_id), "")?;
    let o = ReleaseOverride {
        version: Some(to.clone()),
        artifact: Some(artifact.clone()),
        sha256: Some(sha256.clone()),
    };
    let p = match plan::load_with(rollout_plan, &o) {
        Ok((p, _)) => p,
        Err(e) => {
            let msg = match e {
                PlanError::Invalid(r) => r.short(),
                other => other.to_string(),
            };
            return Ok(StageEnd::Ended(Ended::Stopped {
                stage: s.index,
                error: ExecError::Gate(format!(
                    "the rollout plan {} no longer loads with release {to}: {}",
                    rollout_plan.display(),
                    msg.trim_end()
                )),
            }));
        }
    };
    let drivers = Drivers::for_plan(&p);
    let opts = StartOptions {
        stop: Some(r.stop.clone()),
        run_id: Some(run_id),
        ..Default::default()
    };
    let res = Executor::start_with(p, r.journal.open()?, drivers, r.reporter.clone(), opts).await;
    Ok(stage_end(s.index, res))
}

fn stage_end(stage: usize, res: Result<RunResult, ExecError>) -> StageEnd {
    match res {
        Ok(result) => ended_run(stage, result),
        Err(error) => StageEnd::Ended(Ended::Stopped { stage, error }),
    }
}

fn ended_run(stage: usize, result: RunResult) -> StageEnd {
    if result.outcome == Outcome::Succeeded {
        StageEnd::Succeeded(format!("run {} succeeded", result.run_id))
    } else {
        StageEnd::Ended(Ended::RunEnded {
            stage,
            result: Box::new(result),
        })
    }
}

/// A finished run's result, from its journal.
fn finished(j: &dyn Store, rec: &crate::journal::RunRecord) -> Result<RunResult, CampaignError> {
    let spec = journaled_plan(rec)
        .map_err(|e| CampaignError::NotReady(vec![e.to_string()]))?
        .rollout_spec();
    let state = RunState::replay(&spec, &j.events(&rec.id)?);
    let outcome = match state.phase {
        glidepath_core::Phase::Finished(o) => o,
        _ => match rec.status {
            RunStatus::Succeeded => Outcome::Succeeded,
            RunStatus::Aborted => Outcome::Aborted,
            RunStatus::RollbackFailed => Outcome::RollbackFailed,
            _ => Outcome::RolledBack,
        },
    };
    Ok(RunResult {
        run_id: rec.id.clone(),
        outcome,
        state,
    })
}
