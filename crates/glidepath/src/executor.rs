//! The executor: asks the core what to do, journals the intent, runs the
//! step through a driver, journals the outcome, and asks again. It owns the
//! clock, the signals and the lease; the core owns every decision.
//!
//! Resume is the same loop started from a replayed journal: steps that were
//! in flight when the previous process died are marked interrupted and the
//! core issues them again (every node step is idempotent).

use crate::drivers::{Drivers, Target};
use crate::journal::{now_ms, Journal, JournalError, RunRecord};
use crate::plan::{artifact_sha256, Plan};
use crate::report::Reporter;
use glidepath_core::{
    decide, Event, Outcome, Phase, RolloutSpec, RunState, Step, StepKind, StepOutcome,
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
    pub journal: Journal,
    pub run_id: String,
    pub drivers: Drivers,
    pub reporter: Arc<dyn Reporter>,
    pub state: RunState,
    pub crash: CrashHook,
    targets: BTreeMap<String, Target>,
    /// `--force GATE --reason …` given to `run`.
    forces: Vec<(String, String)>,
}

pub fn new_run_id() -> String {
    let now = now_ms();
    let t = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(now))
        .to_string();
    let compact: String = t.chars().filter(|c| c.is_ascii_digit()).collect();
    let salt = (now as u32 ^ std::process::id().wrapping_mul(2654435761)) & 0xffff;
    format!("r{}-{}-{salt:04x}", &compact[2..8], &compact[8..14])
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
        journal: Journal,
        drivers: Drivers,
        reporter: Arc<dyn Reporter>,
    ) -> Result<RunResult, ExecError> {
        Self::start_forced(plan, journal, drivers, reporter, Vec::new()).await
    }

    /// Like [`Executor::start`], forcing the named failing gates with a reason.
    pub async fn start_forced(
        plan: Plan,
        mut journal: Journal,
        drivers: Drivers,
        reporter: Arc<dyn Reporter>,
        forces: Vec<(String, String)>,
    ) -> Result<RunResult, ExecError> {
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
            status: "preflight".into(),
            reason: String::new(),
            created_at: now_ms(),
            updated_at: now_ms(),
        })?;
        if let Err(e) = journal.acquire_lease(&plan.fleet_name, &run_id, false) {
            journal.set_status(&run_id, "refused", &e.to_string())?;
            return Err(e.into());
        }
        let state = RunState::new(&spec);
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
        };
        ex.reporter.run_started(&ex.run_id, &ex.plan, &ex.spec);
        let jp = ex.journal.path().display().to_string();
        ex.reporter.note(&format!(
            "journal {jp} · follow it with: glidepath status {} --journal {jp}",
            ex.run_id
        ));
        let before = match ex.preflight().await {
            Ok(b) => b,
            Err(e) => {
                let status = "refused";
                ex.journal.set_status(&ex.run_id, status, &e.to_string())?;
                ex.journal.release_lease(&ex.plan.fleet_name, &ex.run_id)?;
                return Err(e);
            }
        };
        ex.journal.set_status(&ex.run_id, "running", "")?;
        ex.record(Event::Started {
            at: now_ms(),
            before,
        })?;
        ex.drive().await
    }

    /// Continue a run from its journal (after a crash, or to carry out an
    /// abort/rollback on a run whose process is gone).
    pub async fn resume(
        mut journal: Journal,
        run_id: &str,
        make_drivers: impl FnOnce(&Plan) -> Drivers,
        reporter: Arc<dyn Reporter>,
    ) -> Result<RunResult, ExecError> {
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
        let spec = plan.rollout_spec();
        let events = journal.events(run_id)?;
        let state = RunState::replay(&spec, &events);
        let drivers = make_drivers(&plan);
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
        };
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
        ex.journal.set_status(&ex.run_id, "running", "")?;
        ex.drive().await
    }

    /// Gates that must pass before any node changes: the built-in ones
    /// (checksum, rollback targets, reachability, health) and the plan's
    /// `[gates]`. A failing declared gate may be forced with a reason.
    async fn preflight(&mut self) -> Result<BTreeMap<String, Option<String>>, ExecError> {
        let (mut results, before) = builtin_checks(&self.plan, &self.drivers).await;
        let deployed = same_release(&before);
        let now = jiff::Timestamp::now();
        results.extend(crate::gates::evaluate(&self.plan, now, deployed.as_deref()).await);
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
            let (config_hashes, env) = crate::gates::snapshot(&self.plan);
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
        self.journal.append(&self.run_id, &ev)?;
        self.state.apply(&self.spec, &ev);
        self.reporter.event(&self.state, &ev);
        if let Event::Finished {
            outcome, reason, ..
        } = &ev
        {
            self.journal
                .set_status(&self.run_id, outcome.as_str(), reason)?;
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

    fn take_commands(&mut self) -> Result<(), ExecError> {
        for c in self.journal.pending_commands(&self.run_id)? {
            let at = now_ms();
            let reason = c.reason.clone();
            let ev = match c.kind.as_str() {
                "promote" => Event::Promoted { at, reason },
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
                self.journal.set_status(&self.run_id, "running", "")?;
            }
            self.journal.append_for_command(&self.run_id, &ev, c.id)?;
            self.state.apply(&self.spec, &ev);
            self.reporter.event(&self.state, &ev);
        }
        Ok(())
    }

    async fn drive(&mut self) -> Result<RunResult, ExecError> {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Step, StepOutcome)>();
        use tokio::signal::unix::{signal, SignalKind};
        let mut sigterm = signal(SignalKind::terminate()).ok();
        let mut sigint = signal(SignalKind::interrupt()).ok();
        let mut interrupts = 0;
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
                    .set_status(&self.run_id, "suspended", &reason)?;
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
                Some(_) = async { match sigint.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
                    interrupts += 1;
                    self.interrupted(interrupts, "Ctrl-C")?;
                }
                Some(_) = async { match sigterm.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
                    interrupts += 1;
                    self.interrupted(interrupts, "SIGTERM")?;
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

/// The built-in gates every run passes: artifact checksum, a rollback
/// target on every node, the balancer, health, and the metrics source.
/// Returns the results and each node's current release.
pub async fn builtin_checks(
    plan: &Plan,
    drivers: &Drivers,
) -> (
    Vec<crate::gates::GateResult>,
    BTreeMap<String, Option<String>>,
) {
    use crate::gates::{GateResult, Verdict};
    let mut out = Vec::new();
    let builtin = |mut g: GateResult, infra: bool| {
        g.builtin = true;
        g.infra = infra;
        g
    };
    let rel = &plan.release;
    out.push(match artifact_sha256(&rel.artifact) {
        Ok(sum) if sum == rel.sha256 => builtin(GateResult::new("artifact", Verdict::Pass, format!("sha256 {}… matches", &sum[..12]), None), false),
        Ok(sum) => builtin(
            GateResult::new(
                "artifact",
                Verdict::Fail,
                format!("artifact {} has sha256 {sum}, the plan says {}: refusing to deploy an artifact that is not the one reviewed", rel.artifact.display(), rel.sha256),
                Some("rebuild or re-download the reviewed artifact, or review this one and put its sha256 in the plan"),
            ),
            false,
        ),
        Err(e) => builtin(GateResult::new("artifact", Verdict::Fail, format!("cannot read artifact {}: {e}", rel.artifact.display()), None), false),
    });
    if let Some(rb) = &plan.rollback_release {
        match artifact_sha256(&rb.artifact) {
            Ok(sum) if sum == rb.sha256 => {}
            Ok(sum) => out.push(builtin(
                GateResult::new(
                    "artifact",
                    Verdict::Fail,
                    format!(
                        "the [rollback] artifact {} has sha256 {sum}, the plan says {}",
                        rb.artifact.display(),
                        rb.sha256
                    ),
                    Some("point [rollback] at the reviewed last-known-good artifact"),
                ),
                false,
            )),
            Err(e) => out.push(builtin(
                GateResult::new(
                    "artifact",
                    Verdict::Fail,
                    format!(
                        "cannot read the [rollback] artifact {}: {e}",
                        rb.artifact.display()
                    ),
                    None,
                ),
                false,
            )),
        }
    }
    let mut before = BTreeMap::new();
    let (mut lb, mut targets_bad, mut health_bad) = (Vec::new(), Vec::new(), Vec::new());
    let (mut lb_infra, mut target_infra, mut health_infra) = (true, true, true);
    let (mut perms, mut perm_infra) = (Vec::new(), true);
    let mut provided: Vec<String> = Vec::new();
    for t in targets(plan).values() {
        if let Err(e) = drivers.balancer.preflight(t).await {
            lb_infra &= e.is_infra();
            lb.push(format!("{}: {e}", t.name));
            continue;
        }
        let cur = match drivers.deployer.current(t).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                target_infra = false;
                targets_bad.push(format!(
                    "{} has no current release in {}: nothing to roll back to",
                    t.name,
                    t.install_dir.display()
                ));
                continue;
            }
            Err(e) => {
                target_infra &= e.is_infra();
                targets_bad.push(format!("{}: {e}", t.name));
                continue;
            }
        };
        if let Err(e) = drivers.deployer.check_writable(t).await {
            perm_infra &= e.is_infra();
            perms.push(format!("{}: {e}", t.name));
        }
        if let Some(c) = &plan.deploy.check {
            if let Err(e) = drivers.service.check(t, c).await {
                perm_infra &= e.is_infra();
                perms.push(format!("{}: restart target check failed: {e}", t.name));
            }
        }
        if !drivers.deployer.has_release(t, &cur).await.unwrap_or(false) {
            if plan
                .rollback_release
                .as_ref()
                .is_some_and(|r| r.version == cur)
            {
                provided.push(t.name.clone());
            } else {
                target_infra = false;
                targets_bad.push(format!("{}: the current release {cur} is missing from releases/ (provide it with [rollback] artifact, version and sha256)", t.name));
                continue;
            }
        }
        if let Err(e) = drivers.health.probe(t, Some(&cur)).await {
            health_infra &= e.is_infra();
            health_bad.push(format!("{} is unhealthy before the rollout ({e})", t.name));
        }
        before.insert(t.name.clone(), Some(cur));
    }
    let n = plan.nodes.len();
    out.push(if lb.is_empty() {
        builtin(
            GateResult::new(
                "balancer",
                Verdict::Pass,
                format!(
                    "{} balancer(s) answer for all {n} nodes",
                    plan.balancers.len()
                ),
                None,
            ),
            false,
        )
    } else {
        builtin(
            GateResult::new(
                "balancer",
                Verdict::Fail,
                lb.join("; "),
                Some("check the balancer's address/socket and that it knows each node"),
            ),
            lb_infra,
        )
    });
    out.push(if targets_bad.is_empty() {
        let versions: Vec<String> = before.iter().map(|(n, v)| format!("{n}={}", v.as_deref().unwrap_or("-"))).collect();
        builtin(GateResult::new("rollback-target", Verdict::Pass, if provided.is_empty() {
                    format!("last-known-good releases: {}", versions.join(" "))
                } else {
                    format!("last-known-good releases: {} (restored from the [rollback] artifact on {} if needed)", versions.join(" "), provided.join(", "))
                }, None), false)
    } else {
        builtin(GateResult::new("rollback-target", Verdict::Fail, targets_bad.join("; "), Some("install the current release through glidepath (releases/<version> + current) before rolling out")), target_infra)
    });
    out.push(if perms.is_empty() {
        let what = if plan.deploy.check.is_some() {
            "install dirs writable, restart target checked"
        } else {
            "install dirs writable (add [deploy] check = … to prove the restart target)"
        };
        builtin(
            GateResult::new(
                "permissions",
                Verdict::Pass,
                format!("{what} on {} node(s)", before.len()),
                None,
            ),
            false,
        )
    } else {
        builtin(
            GateResult::new(
                "permissions",
                Verdict::Fail,
                perms.join("; "),
                Some("fix ownership/sudo rules or the unit name on the node before the rollout"),
            ),
            perm_infra,
        )
    });
    out.push(if health_bad.is_empty() {
        builtin(
            GateResult::new(
                "health",
                Verdict::Pass,
                format!("{} of {n} nodes healthy", before.len()),
                None,
            ),
            false,
        )
    } else {
        builtin(
            GateResult::new(
                "health",
                Verdict::Fail,
                health_bad.join("; "),
                Some("fix the fleet first: a rollout starts from a healthy fleet"),
            ),
            health_infra,
        )
    });
    if let Some(m) = &drivers.metrics {
        let all: Vec<Target> = targets(plan).into_values().collect();
        out.push(match m.preflight(&all).await {
            Ok(d) => builtin(GateResult::new("metrics", Verdict::Pass, d, None), false),
            Err(e) => builtin(
                GateResult::new(
                    "metrics",
                    Verdict::Fail,
                    format!("metrics source: {e}"),
                    None,
                ),
                e.is_infra(),
            ),
        });
    }
    (out, before)
}

/// The release every node runs, when they all run the same one.
pub fn same_release(before: &BTreeMap<String, Option<String>>) -> Option<String> {
    let mut it = before.values().flatten();
    let first = it.next()?.clone();
    it.all(|v| *v == first).then_some(first)
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
                .map(|o| match (&o.error, o.value) {
                    (Some(e), _) => format!("{}: {e}", o.check),
                    (None, Some(v)) => format!("{} = {v:.4} (n={})", o.check, o.samples),
                    (None, None) => format!("{}: no data (n={})", o.check, o.samples),
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
