//! What people and machines read: live narration of a run (every decision
//! with its reason), and summaries of runs rebuilt from the journal for
//! `status`, `history` and the end of `run`/`demo`.

use crate::journal::{fmt_time, RunRecord};
use crate::output::Holder;
pub use crate::output::{FailedNode, NodeSummary, RunSummary, TaskSummary};
use crate::plan::Plan;
use glidepath_core::{CauseKind, Event, NodeStatus, Phase, RolloutSpec, RunState, StepKind};
use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

/// Receives the executor's events as they happen.
pub trait Reporter: Send + Sync {
    fn run_started(&self, run_id: &str, plan: &Plan, spec: &RolloutSpec);
    fn run_resumed(&self, run_id: &str, plan: &Plan, spec: &RolloutSpec, events: &[Event]);
    fn event(&self, state: &RunState, ev: &Event);
    fn note(&self, msg: &str);
    fn waiting(&self, run_id: &str, why: &str);
}

/// A reporter that says nothing (benchmarks, JSON-only callers).
pub struct Silent;

impl Reporter for Silent {
    fn run_started(&self, _: &str, _: &Plan, _: &RolloutSpec) {}
    fn run_resumed(&self, _: &str, _: &Plan, _: &RolloutSpec, _: &[Event]) {}
    fn event(&self, _: &RunState, _: &Event) {}
    fn note(&self, _: &str) {}
    fn waiting(&self, _: &str, _: &str) {}
}

struct ConsoleState {
    start: Option<u64>,
    intents: HashMap<(Option<String>, StepKind), u64>,
    last_fail: HashMap<(Option<String>, StepKind), String>,
    /// Each SLI check's last narrated verdict (and whether it was an
    /// incident): a line is printed when it changes.
    verdicts: HashMap<String, (glidepath_core::Verdict, bool)>,
    announced: bool,
    /// Nodes already narrated as failed within the failure budget.
    budget: std::collections::BTreeSet<String>,
    /// An SLI window was under way when the resumed run's process died.
    window_open: bool,
}

/// How much the narration says (`-q`, the default, `-v`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verbosity {
    /// One line per node step (its outcome), the decisions and the end:
    /// compact, for large fleets.
    Quiet,
    #[default]
    Normal,
    /// Also every intent (each probe and each poll) and the drivers' detail
    /// (each poll's answer, each check's reading).
    Verbose,
}

/// Line-by-line narration on a terminal or a log.
pub struct Console {
    out: Mutex<Box<dyn Write + Send>>,
    color: bool,
    verbosity: Verbosity,
    prefix: String,
    st: Mutex<ConsoleState>,
}

impl Console {
    pub fn new(out: Box<dyn Write + Send>, color: bool) -> Self {
        Console {
            out: Mutex::new(out),
            color,
            verbosity: Verbosity::Normal,
            prefix: String::new(),
            st: Mutex::new(ConsoleState {
                start: None,
                intents: HashMap::new(),
                last_fail: HashMap::new(),
                verdicts: HashMap::new(),
                announced: false,
                budget: Default::default(),
                window_open: false,
            }),
        }
    }

    pub fn with_verbosity(mut self, v: Verbosity) -> Self {
        self.verbosity = v;
        self
    }

    pub fn with_prefix(mut self, p: &str) -> Self {
        self.prefix = p.to_string();
        self
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    fn line(&self, at: u64, who: &str, what: &str, text: &str) {
        let start = {
            let mut st = self.st.lock().expect("console lock");
            *st.start.get_or_insert(at)
        };
        let t = at.saturating_sub(start) as f64 / 1000.0;
        let mut out = self.out.lock().expect("console lock");
        let _ = writeln!(
            out,
            "{}{:>8} {:<8} {:<13} {}",
            self.prefix,
            format!("+{t:.2}s"),
            who,
            what,
            text
        );
        let _ = out.flush();
    }

    fn plain(&self, text: &str) {
        let mut out = self.out.lock().expect("console lock");
        let _ = writeln!(out, "{}{text}", self.prefix);
        let _ = out.flush();
    }
}

fn plan_line(plan: &Plan, spec: &RolloutSpec) -> String {
    let groups: Vec<String> = spec
        .groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            if i == 0 {
                format!("canary {}", g.join(","))
            } else {
                g.join(",")
            }
        })
        .collect();
    format!(
        "fleet `{}` → {} · {}",
        plan.fleet_name,
        plan.release.version,
        groups.join(" | ")
    )
}

impl Reporter for Console {
    fn run_started(&self, run_id: &str, plan: &Plan, spec: &RolloutSpec) {
        self.plain(&self.paint("1", &format!("run {run_id}: {}", plan_line(plan, spec))));
    }

    fn run_resumed(&self, run_id: &str, plan: &Plan, spec: &RolloutSpec, events: &[Event]) {
        {
            let mut st = self.st.lock().expect("console lock");
            if let Some(e) = events.first() {
                st.start = Some(e.at());
            }
            st.window_open = RunState::replay(spec, events).window.is_some();
        }
        self.plain(&self.paint(
            "1",
            &format!(
                "resuming run {run_id} ({} journaled events): {}",
                events.len(),
                plan_line(plan, spec)
            ),
        ));
    }

    fn note(&self, msg: &str) {
        self.plain(&format!("  {msg}"));
    }

    fn waiting(&self, run_id: &str, why: &str) {
        let why = with_run_id(why, run_id);
        self.plain(&self.paint("33", &format!("  ⏸ run {run_id} waits: {why}")));
    }

    fn event(&self, state: &RunState, ev: &Event) {
        match ev {
            Event::Started { .. } | Event::GatesChecked { .. } | Event::Origin { .. } => {}
            Event::FilesPinned { at, files } => self.line(
                *at,
                "-",
                "pinned",
                &format!(
                    "{} migration file(s) pinned by sha256: an edit from now on is refused",
                    files.len()
                ),
            ),
            Event::Snapshot { at, config_hashes, env, .. } => self.line(
                *at,
                "-",
                "snapshot",
                &format!("recorded releases, {} config file hash(es), {} env value(s) (fingerprinted unless env_clear)", config_hashes.len(), env.len()),
            ),
            Event::GateForced {
                at,
                gate,
                reason,
                by,
            } => self.line(
                *at,
                "-",
                "preflight",
                &self.paint("33", &format!("! gate `{gate}` FORCED by {by}: {reason}")),
            ),
            Event::Intent { at, step } => {
                let key = (step.node.clone(), step.kind);
                let first = {
                    let mut st = self.st.lock().expect("console lock");
                    let first = !st.intents.contains_key(&key);
                    st.intents.entry(key).or_insert(*at);
                    first
                };
                let polling = matches!(
                    step.kind,
                    StepKind::CheckDrained | StepKind::CheckHealth | StepKind::Probe
                );
                let show = match self.verbosity {
                    Verbosity::Quiet => false,
                    Verbosity::Verbose => true,
                    Verbosity::Normal => first && !(polling && step.kind == StepKind::Probe),
                };
                if show {
                    self.line(
                        *at,
                        step.node.as_deref().unwrap_or("-"),
                        step.kind.as_str(),
                        &self.paint("2", &format!("→ {}", step.reason)),
                    );
                }
            }
            Event::Outcome { at, step, outcome } => {
                let key = (step.node.clone(), step.kind);
                let who = step.node.as_deref().unwrap_or("-");
                if step.kind == StepKind::Probe {
                    if self.verbosity != Verbosity::Quiet {
                        self.line(*at, who, "probe", &outcome.detail);
                    }
                    if self.verbosity == Verbosity::Verbose {
                        for o in &outcome.observations {
                            let base = o
                                .baseline
                                .as_ref()
                                .and_then(|b| b.value)
                                .map(|b| format!(", baseline {b:.4}"))
                                .unwrap_or_default();
                            let what = match (&o.error, o.value) {
                                (Some(e), _) => format!("error: {e}"),
                                (None, Some(v)) => format!("{v:.4}{base} ({} samples)", o.samples),
                                (None, None) => format!("no value{base} ({} samples)", o.samples),
                            };
                            self.line(*at, "-", "reading", &self.paint("2", &format!("{}: {what}", o.check)));
                        }
                    }
                    for j in &state.sli {
                        let now = (j.verdict, j.incident);
                        let before = self
                            .st
                            .lock()
                            .expect("console lock")
                            .verdicts
                            .insert(j.check.clone(), now);
                        if before == Some(now) {
                            continue;
                        }
                        let (code, mark) = match (j.verdict, j.incident) {
                            (_, true) => ("33", "⚠"),
                            (glidepath_core::Verdict::Breach, _) => ("31", "✗"),
                            (glidepath_core::Verdict::Pass, _) => ("32", "✓"),
                            (glidepath_core::Verdict::Inconclusive, _) => ("2", "…"),
                        };
                        let shadow = if j.shadow { " (shadow check, not acted on)" } else { "" };
                        self.line(*at, "-", "sli", &self.paint(code, &format!("{mark} {}{shadow}", j.reason)));
                    }
                    if let Some(w) = state
                        .window
                        .as_ref()
                        .filter(|w| w.restarts > 0 && w.started == *at)
                    {
                        self.line(
                            *at,
                            "-",
                            "sli_window",
                            &self.paint("33", &format!("↻ the metrics source answers again: the SLI window starts over (restart {}), a pass needs a full window watched", w.restarts)),
                        );
                    }
                } else if outcome.ok
                    && !(step.kind == StepKind::CheckDrained && outcome.value.unwrap_or(0.0) > 0.0)
                    || step.kind == StepKind::Task
                    || matches!(step.kind, StepKind::CheckDrained)
                        && state
                            .nodes
                            .get(who)
                            .is_some_and(|n| n.next_step() != Some(StepKind::CheckDrained))
                {
                    let since = self.st.lock().expect("console lock").intents.remove(&key);
                    let took = since
                        .map(|s| format!(" ({:.2}s)", at.saturating_sub(s) as f64 / 1000.0))
                        .unwrap_or_default();
                    let mark = if outcome.ok {
                        self.paint("32", "✓")
                    } else {
                        self.paint("31", "✗")
                    };
                    self.line(
                        *at,
                        who,
                        step.kind.as_str(),
                        &format!("{mark} {}{took}", outcome.detail),
                    );
                    self.st.lock().expect("console lock").last_fail.remove(&key);
                } else {
                    let changed = {
                        let mut st = self.st.lock().expect("console lock");
                        let prev = st.last_fail.insert(key.clone(), outcome.detail.clone());
                        prev.as_deref() != Some(outcome.detail.as_str())
                    };
                    let show = match self.verbosity {
                        // a failure is said; a poll that goes on is not
                        Verbosity::Quiet => {
                            changed
                                && !matches!(
                                    step.kind,
                                    StepKind::CheckDrained
                                        | StepKind::CheckHealth
                                        | StepKind::PostCheck
                                )
                        }
                        Verbosity::Verbose => true,
                        Verbosity::Normal => changed,
                    };
                    if show {
                        self.line(
                            *at,
                            who,
                            step.kind.as_str(),
                            &self.paint("33", &format!("… {}", outcome.detail)),
                        );
                    }
                    let polling_done = state
                        .nodes
                        .get(who)
                        .is_some_and(|n| n.next_step() != Some(step.kind));
                    if polling_done
                        || !matches!(step.kind, StepKind::CheckDrained | StepKind::CheckHealth)
                    {
                        self.st.lock().expect("console lock").intents.remove(&key);
                    }
                }
                if let Some(why) = state.nodes.get(who).and_then(|n| n.failed_forward.as_ref()) {
                    let first = self.st.lock().expect("console lock").budget.insert(who.to_string());
                    if first {
                        self.line(
                            *at,
                            who,
                            "budget",
                            &self.paint("33", &format!("✗ {why}: within the failure budget (max_failed_nodes), {who} alone is restored to its previous release and the run goes on")),
                        );
                    }
                }
                self.announce_cause(*at, state);
            }
            Event::Interrupted { at, in_flight } => {
                let what: Vec<String> = in_flight
                    .iter()
                    .map(|s| match &s.task {
                        Some(t) => format!("task {}", t.name),
                        None => format!("{} {}", s.node.as_deref().unwrap_or("-"), s.kind.as_str()),
                    })
                    .collect();
                let window = if self.st.lock().expect("console lock").window_open {
                    "; the SLI window under way starts over (observations are not carried over)"
                } else {
                    ""
                };
                let text = if what.is_empty() {
                    format!("the previous process died with no step in flight: going on from the journal{window}")
                } else {
                    format!(
                        "the previous process died with {} in flight: repeating what is safe to repeat{window}",
                        what.join(", ")
                    )
                };
                self.line(*at, "-", "resume", &self.paint("33", &format!("↻ {text}")));
            }
            Event::WindowClosed { at, passed, reason } => {
                let mark = if *passed {
                    self.paint("32", "✓")
                } else {
                    self.paint("31", "✗")
                };
                self.line(*at, "-", "sli_window", &format!("{mark} {reason}"));
                self.announce_cause(*at, state);
            }
            Event::GroupStarted { at, reason, .. } => {
                self.line(*at, "-", "batch", &self.paint("1", &format!("▶ {reason}")))
            }
            Event::Promoted { at, reason } => {
                self.line(*at, "-", "promote", &format!("! promoted: {reason}"))
            }
            Event::AbortRequested { at, reason } => self.line(
                *at,
                "-",
                "abort",
                &self.paint("33", &format!("! abort requested: {reason}")),
            ),
            Event::RollbackRequested { at, reason } => {
                self.st.lock().expect("console lock").announced = true;
                self.line(
                    *at,
                    "-",
                    "rollback",
                    &self.paint("33", &format!("! rollback requested: {reason}")),
                )
            }
            Event::Resolved { at, by, reason } => self.line(
                *at,
                "-",
                "resolved",
                &self.paint("32", &format!("✓ resolved by {by}: {reason}")),
            ),
            Event::Suspended { at, reason } => self.line(
                *at,
                "-",
                "suspended",
                &self.paint("31;1", &format!("■ stopped, resumable: {reason}")),
            ),
            Event::Finished {
                at,
                outcome,
                reason,
            } => {
                let code = if *outcome == glidepath_core::Outcome::Succeeded {
                    "32;1"
                } else {
                    "31;1"
                };
                self.line(
                    *at,
                    "-",
                    "finished",
                    &self.paint(code, &format!("■ {}: {reason}", outcome.as_str())),
                );
            }
        }
    }
}

impl Console {
    fn announce_cause(&self, at: u64, state: &RunState) {
        if state.phase != Phase::RollingBack {
            return;
        }
        let mut st = self.st.lock().expect("console lock");
        if st.announced {
            return;
        }
        st.announced = true;
        drop(st);
        if let Some(c) = &state.cause {
            let what = match c.kind {
                CauseKind::Sli => "SLI breach",
                CauseKind::Health => "health check failed",
                CauseKind::Infra => "infrastructure unreachable",
                CauseKind::Step => "step failed",
                CauseKind::Operator => "operator",
                CauseKind::Task => "post task failed",
            };
            self.line(
                at,
                c.node.as_deref().unwrap_or("-"),
                "decision",
                &self.paint(
                    "31;1",
                    &format!("✗ {what} → automatic rollback: {}", c.reason),
                ),
            );
        }
    }
}

/// How long a node's steps took, from its events (intents and outcomes,
/// in order): each step from its intent to its outcome, and the waits
/// between the attempts of one step (the polls of `check_drained` and
/// `check_health`, the retries through an outage), but not
/// the time the node sat between two steps (an SLI window, a pause, a
/// person deciding to roll back) nor a dead process's downtime.
pub fn node_busy_ms(mine: &[&Event]) -> u64 {
    mine.windows(2)
        .map(|w| match (w[0], w[1]) {
            (
                Event::Intent { step: a, at: t0 },
                Event::Outcome {
                    step: b, at: t1, ..
                },
            ) if a.kind == b.kind => t1.saturating_sub(*t0),
            (
                Event::Outcome {
                    step: a, at: t0, ..
                },
                Event::Intent { step: b, at: t1 },
            ) if a.kind == b.kind => t1.saturating_sub(*t0),
            _ => 0,
        })
        .sum()
}

/// Build a summary from the journal's record and events (its hints name
/// no journal: see [`summarize_in`]).
pub fn summarize(
    rec: &RunRecord,
    spec: &RolloutSpec,
    events: &[Event],
    holder: Option<Holder>,
    now: u64,
) -> RunSummary {
    let hints = crate::hints::Hints::with_arg(&rec.id, None);
    summarize_in(rec, spec, events, holder, now, &hints)
}

/// [`summarize`], the commands it suggests spelled by `hints` (the run's
/// journal when it is not the default one).
pub fn summarize_in(
    rec: &RunRecord,
    spec: &RolloutSpec,
    events: &[Event],
    holder: Option<Holder>,
    now: u64,
    hints: &crate::hints::Hints,
) -> RunSummary {
    let state = RunState::replay(spec, events);
    let mut nodes = Vec::new();
    for name in spec.nodes() {
        let st = &state.nodes[name];
        let mine: Vec<&Event> = events
            .iter()
            .filter(|e| matches!(e, Event::Intent { step, .. } | Event::Outcome { step, .. } if step.node.as_deref() == Some(name)))
            .collect();
        let steps = mine
            .iter()
            .filter(|e| matches!(e, Event::Outcome { .. }))
            .count();
        let busy = node_busy_ms(&mine);
        // The journaled target: where `current` was last switched to.
        let now_v = match st.status {
            NodeStatus::Updated => Some(spec.version.clone()),
            _ if st.switched => Some(spec.version.clone()),
            _ => st.before.clone(),
        };
        nodes.push(NodeSummary {
            node: name.clone(),
            before: st.before.clone(),
            now: now_v,
            seen: st.seen.clone(),
            rotation: if st.out_of_rotation { "out" } else { "in" },
            down: state.down.get(name).cloned(),
            status: st.status.as_str().to_string(),
            steps,
            busy_ms: busy,
            last: st.last_detail.clone(),
        });
    }
    let decisions = events
        .iter()
        .filter_map(|e| match e {
            Event::GroupStarted { reason, .. } => Some(reason.clone()),
            Event::WindowClosed { reason, .. } => Some(reason.clone()),
            Event::Finished { reason, .. } => Some(reason.clone()),
            Event::AbortRequested { reason, .. } => Some(format!("abort requested: {reason}")),
            Event::RollbackRequested { reason, .. } => {
                Some(format!("rollback requested: {reason}"))
            }
            Event::Promoted { reason, .. } => Some(format!("promoted: {reason}")),
            Event::GateForced {
                gate, reason, by, ..
            } => Some(format!("gate `{gate}` forced by {by}: {reason}")),
            Event::Suspended { reason, .. } => Some(format!("stopped, resumable: {reason}")),
            Event::Interrupted { in_flight, .. } => Some(format!(
                "resumed after a crash ({} step(s) in flight repeated)",
                in_flight.len()
            )),
            _ => None,
        })
        .collect();
    let first = events.first().map_or(rec.created_at, |e| e.at());
    let last = events.last().map_or(rec.updated_at, |e| e.at());
    // What the run waits for is the run record's state, written by the
    // executor when it changes (`paused`/`waiting` with the reason), so
    // that every poll sees the same; a suspended run waits for `resume`.
    use crate::journal::RunStatus;
    let waiting = match rec.status {
        _ if state.is_finished() => None,
        RunStatus::Paused | RunStatus::Waiting if !rec.reason.is_empty() => {
            Some(rec.reason.clone())
        }
        RunStatus::Suspended => glidepath_core::decide(spec, &state, now).waiting,
        _ => None,
    }
    .map(|w| hints.fill(&w));
    let next_commands = hints.next_commands(crate::hints::situation(
        rec.status,
        spec,
        &state,
        holder.as_ref().map(|h| h.alive),
    ));
    RunSummary {
        run_id: rec.id.clone(),
        fleet: rec.fleet.clone(),
        version: rec.version.clone(),
        status: rec.status.to_string(),
        reason: hints.fill(&rec.reason),
        next_commands,
        cause: state.cause.clone(),
        started_at: rec.created_at,
        updated_at: last,
        duration_ms: last.saturating_sub(first),
        waiting,
        holder,
        nodes,
        decisions,
        sli: state.sli.clone(),
        tasks: task_summaries(spec, &state, events),
        irreversible: state.tasks.irreversible.clone(),
        failed_nodes: state
            .failed_forward(spec)
            .into_iter()
            .map(|(name, why)| {
                let st = &state.nodes[name];
                FailedNode {
                    node: name.clone(),
                    reason: why.to_string(),
                    status: st.status.as_str().to_string(),
                    now: state.expected_version(spec, name),
                    rotation: if st.out_of_rotation { "out" } else { "in" },
                }
            })
            .collect(),
        campaign: None,
    }
}

/// The core's texts name the run `RUN` (it does not know its id): the
/// commands they suggest, with the real id ([`crate::hints::Hints::fill`]).
pub fn with_run_id(text: &str, run: &str) -> String {
    crate::hints::Hints::with_arg(run, None).fill(text)
}

/// Where each task stands, from the state and (for the attempts and the
/// last detail) the events; `status --watch` passes none.
pub(crate) fn task_summaries(
    spec: &RolloutSpec,
    state: &RunState,
    events: &[Event],
) -> Vec<TaskSummary> {
    use glidepath_core::TaskPhase;
    let mut out = Vec::new();
    for phase in [TaskPhase::Pre, TaskPhase::Post] {
        let done = state.tasks.done(phase);
        for (i, t) in spec.tasks(phase).iter().enumerate() {
            let mine = |step: &glidepath_core::Step| {
                step.task
                    .as_ref()
                    .is_some_and(|r| r.phase == phase && r.index == i)
            };
            let attempts = events
                .iter()
                .filter(|e| matches!(e, Event::Intent { step, .. } if mine(step)))
                .count() as u32;
            let detail = events
                .iter()
                .rev()
                .find_map(|e| match e {
                    Event::Outcome { step, outcome, .. } if mine(step) => {
                        Some(outcome.detail.clone())
                    }
                    _ => None,
                })
                .unwrap_or_default();
            let current = state
                .tasks
                .in_flight
                .as_ref()
                .is_some_and(|r| r.phase == phase && r.index == i);
            let failed = state
                .tasks
                .failed
                .as_ref()
                .is_some_and(|(r, _)| r.phase == phase && r.index == i);
            let status = if i < done {
                if state
                    .tasks
                    .accepted
                    .iter()
                    .any(|a| a.starts_with(&format!("{} (", t.name)))
                {
                    "accepted"
                } else {
                    "done"
                }
            } else if current {
                "running"
            } else if failed {
                "failed"
            } else if i == done && attempts > 0 {
                "retrying"
            } else {
                "pending"
            };
            out.push(TaskSummary {
                phase: phase.as_str().into(),
                name: t.name.clone(),
                what: t.what.clone(),
                status: status.into(),
                detail,
                attempts,
                irreversible: t.irreversible.clone(),
            });
        }
    }
    out
}

impl RunSummary {
    pub fn render(&self) -> String {
        let mut s = format!(
            "run {}  fleet `{}`  release {}  started {}  ({:.1}s)\nstatus: {}{}\n",
            self.run_id,
            self.fleet,
            self.version,
            fmt_time(self.started_at),
            self.duration_ms as f64 / 1000.0,
            self.status,
            if self.reason.is_empty() || self.waiting.as_deref() == Some(self.reason.as_str()) {
                String::new()
            } else {
                format!(" — {}", self.reason)
            }
        );
        match &self.holder {
            Some(h) if h.alive => s.push_str(&format!(
                "holder: pid {} on {} (since {})\n",
                h.pid,
                h.host,
                fmt_time(h.since)
            )),
            Some(h) => match &self.campaign {
                Some(c) => s.push_str(&format!(
                    "holder: pid {} on {} is gone — `glidepath upgrade --resume {}` finishes the run and continues its campaign\n",
                    h.pid, h.host, c.campaign_id
                )),
                None => s.push_str(&format!(
                    "holder: pid {} on {} is gone — `glidepath resume {}` finishes the run\n",
                    h.pid, h.host, self.run_id
                )),
            },
            None => {}
        }
        if let Some(c) = &self.campaign {
            s.push_str(&format!(
                "campaign {}: stage {} of {} ({}), campaign {}\n",
                c.campaign_id, c.stage, c.stages, c.title, c.status
            ));
        }
        if let Some(w) = &self.waiting {
            s.push_str(&format!("waiting: {w}\n"));
        }
        if !self.next_commands.is_empty() {
            s.push_str("next:\n");
            for c in &self.next_commands {
                s.push_str(&format!("  {c}\n"));
            }
        }
        if let Some(c) = &self.cause {
            s.push_str(&format!("why it left the forward path: {}\n", c.reason));
        }
        s.push_str(&format!(
            "{:<10} {:<8} {:<8} {:<8} {:<4} {:<12} {:>5} {:>8}  {}\n",
            "node", "before", "now", "seen", "lb", "status", "steps", "time", "last"
        ));
        for n in &self.nodes {
            let last: String = match &n.down {
                Some(why) => format!("found DOWN: {why}"),
                None => n.last.clone(),
            }
            .chars()
            .take(70)
            .collect();
            s.push_str(&format!(
                "{:<10} {:<8} {:<8} {:<8} {:<4} {:<12} {:>5} {:>8}  {}\n",
                n.node,
                n.before.as_deref().unwrap_or("-"),
                n.now.as_deref().unwrap_or("-"),
                n.seen.as_deref().unwrap_or("-"),
                n.rotation,
                n.status,
                n.steps,
                if n.busy_ms > 0 {
                    format!("{:.2}s", n.busy_ms as f64 / 1000.0)
                } else {
                    "-".into()
                },
                last
            ));
        }
        if !self.tasks.is_empty() {
            s.push_str("tasks:\n");
            for t in &self.tasks {
                let tries = if t.attempts > 1 {
                    format!(" ({} attempts)", t.attempts)
                } else {
                    String::new()
                };
                let detail: String = t.detail.chars().take(100).collect();
                s.push_str(&format!(
                    "  - {:<4} {:<22} {:<8}{tries} {}{}\n",
                    t.phase,
                    t.name,
                    t.status,
                    if detail.is_empty() {
                        t.what.clone()
                    } else {
                        detail
                    },
                    match &t.irreversible {
                        Some(n) => format!("  [IRREVERSIBLE: {n}]"),
                        None => String::new(),
                    }
                ));
            }
        }
        if !self.irreversible.is_empty() {
            s.push_str(&format!(
                "cannot be undone (ran): {}\n",
                self.irreversible.join("; ")
            ));
        }
        if !self.failed_nodes.is_empty() {
            s.push_str(
                "failed within the failure budget (max_failed_nodes), restored on their own; the run went on without them:\n",
            );
            for f in &self.failed_nodes {
                let now = match (f.status.as_str(), &f.now) {
                    ("failed", _) if f.rotation == "out" => {
                        "its restore failed: kept out of rotation for a person".to_string()
                    }
                    ("failed", _) => "its restore failed, in rotation: check it".to_string(),
                    ("in_progress", _) => "being restored".to_string(),
                    (_, Some(v)) => format!("serves {v}, in rotation"),
                    (_, None) => "release unknown".to_string(),
                };
                s.push_str(&format!("  - {}: {} — {now}\n", f.node, f.reason));
            }
        }
        if !self.sli.is_empty() {
            s.push_str("SLI checks (latest probe):\n");
            for j in &self.sli {
                let what = match (j.verdict, j.incident, j.shadow) {
                    (_, true, _) => "incident",
                    (v, _, true) => match v {
                        glidepath_core::Verdict::Breach => "shadow: would breach",
                        _ => "shadow",
                    },
                    (glidepath_core::Verdict::Pass, ..) => "pass",
                    (glidepath_core::Verdict::Breach, ..) => "BREACH",
                    (glidepath_core::Verdict::Inconclusive, ..) => "inconclusive",
                };
                s.push_str(&format!("  - [{what}] {}\n", j.reason));
            }
        }
        if !self.decisions.is_empty() {
            s.push_str("decisions:\n");
            for d in &self.decisions {
                s.push_str(&format!("  - {d}\n"));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glidepath_core::{Step, StepOutcome};

    fn step(kind: StepKind) -> Step {
        Step {
            kind,
            node: Some("node-1".into()),
            version: None,
            reason: String::new(),
            task: None,
        }
    }
    fn intent(at: u64, kind: StepKind) -> Event {
        Event::Intent {
            at,
            step: step(kind),
        }
    }
    fn outcome(at: u64, kind: StepKind) -> Event {
        Event::Outcome {
            at,
            step: step(kind),
            outcome: StepOutcome::ok(""),
        }
    }

    #[test]
    fn a_node_time_leaves_out_what_it_waited_between_steps() {
        use StepKind::*;
        let events = [
            intent(0, Drain),
            outcome(100, Drain),
            intent(100, CheckDrained),
            outcome(150, CheckDrained), // still 1 connection
            intent(650, CheckDrained),  // the next poll, 500 ms later
            outcome(700, CheckDrained),
            // an operator aborts 19.5 s later: the node goes back in
            // rotation; the process dies while enabling it, and the resume
            // 10 s later repeats the step: the downtime is not time spent
            intent(20_200, Enable),
            intent(30_000, Enable),
            outcome(30_100, Enable),
        ];
        let mine: Vec<&Event> = events.iter().collect();
        assert_eq!(node_busy_ms(&mine), 100 + 50 + 500 + 50 + 100);
    }
}
