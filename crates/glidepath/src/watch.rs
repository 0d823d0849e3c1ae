//! Following a run from the journal, from any process (`status --watch`):
//! a [`Follower`] reads the events since the last one it saw
//! (`Store::events_since`) and the run record, folds them into the run's
//! state, and gives a [`View`]: phase, batch k of n, each node, the SLI
//! window's progress with each check against its limit (and baseline), the
//! tasks, what the run waits for, and the operator commands that apply now.
//! A view renders as a screen (redrawn in place on a terminal) or as keyed
//! lines, printed when they change (a log, a pipe).

use crate::control::{journaled_plan, ControlError};
use crate::hints::{situation, Hints};
use crate::journal::{now_ms, RunRecord, RunStatus, Store};
use crate::output::TaskSummary;
use glidepath_core::{NodeStatus, Outcome, Phase, RolloutSpec, RunState};
use std::fmt::Write as _;

/// How often a follower polls the journal.
pub const POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// A run followed from the journal.
pub struct Follower {
    pub rec: RunRecord,
    pub spec: RolloutSpec,
    pub state: RunState,
    /// The last sequence number folded.
    pub seq: i64,
    /// The `--journal PATH` the suggested commands need (none for the default).
    journal_arg: Option<String>,
    holder_alive: Option<bool>,
}

/// How a followed run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It finished: the outcome (the exit code is `run`'s).
    Finished(Outcome),
    /// It stopped resumable (exit 4).
    Suspended,
    /// A gate or a lock refused it before anything changed.
    Refused,
}

impl Follower {
    pub fn new(
        j: &dyn Store,
        rec: RunRecord,
        journal_arg: Option<String>,
    ) -> Result<Self, ControlError> {
        let spec = journaled_plan(&rec)?.rollout_spec();
        let state = RunState::new(&spec);
        let mut f = Follower {
            rec,
            spec,
            state,
            seq: 0,
            journal_arg,
            holder_alive: None,
        };
        f.poll(j)?;
        Ok(f)
    }

    /// Read what is new; returns whether anything was.
    pub fn poll(&mut self, j: &dyn Store) -> Result<bool, ControlError> {
        let new = j.events_since(&self.rec.id, self.seq)?;
        let mut changed = !new.is_empty();
        for (seq, ev) in new {
            self.state.apply(&self.spec, &ev);
            self.seq = seq;
        }
        let rec = j.run(&self.rec.id)?;
        changed |= rec.status != self.rec.status || rec.reason != self.rec.reason;
        self.rec = rec;
        let alive = j
            .lease_of_run(&self.rec.id)?
            .map(|l| !l.holder_dead(now_ms()));
        changed |= alive != self.holder_alive;
        self.holder_alive = alive;
        Ok(changed)
    }

    /// The run ended, and how (a suspended run may be resumed later, but
    /// it is over for a follower).
    pub fn ended(&self) -> Option<Ended> {
        if let Phase::Finished(o) = self.state.phase {
            if self.rec.status.is_final() {
                return Some(Ended::Finished(o));
            }
        }
        match self.rec.status {
            RunStatus::Suspended => Some(Ended::Suspended),
            RunStatus::Refused => Some(Ended::Refused),
            s if s.is_final() => Some(match self.state.phase {
                Phase::Finished(o) => Ended::Finished(o),
                _ => Ended::Refused,
            }),
            _ => None,
        }
    }

    /// The commands for this run, spelled with its id and journal.
    fn hints(&self) -> Hints {
        Hints::with_arg(&self.rec.id, self.journal_arg.clone())
    }

    /// The operator commands that apply now.
    pub fn commands(&self) -> Vec<String> {
        self.hints().next_commands(situation(
            self.rec.status,
            &self.spec,
            &self.state,
            self.holder_alive,
        ))
    }

    /// What the run looks like now.
    pub fn view(&self, now: u64) -> View {
        let s = &self.state;
        let spec = &self.spec;
        let batches = spec.groups.len().saturating_sub(1);
        let pre_pending = s.tasks.pre_done < spec.pre.len();
        let phase = match s.phase {
            Phase::Finished(o) => o.as_str().to_string(),
            Phase::RollingBack => "rolling back".to_string(),
            Phase::Aborting => "aborting".to_string(),
            Phase::Rolling if self.rec.status == RunStatus::Preflight => "preflight".into(),
            Phase::Rolling if pre_pending => "pre tasks".into(),
            Phase::Rolling if s.group >= spec.groups.len() => "post tasks".into(),
            Phase::Rolling
                if s.group + 1 == spec.groups.len()
                    && s.group_complete(spec, s.group)
                    && s.windows_passed.contains(&s.group)
                    && s.tasks.post_done < spec.post.len() =>
            {
                "post tasks".into()
            }
            Phase::Rolling if s.group == 0 => "canary".into(),
            Phase::Rolling => format!("batch {} of {batches}", s.group),
        };
        let nodes = spec
            .nodes()
            .map(|name| {
                let n = &s.nodes[name];
                let group = spec.group_of(name).unwrap_or(0);
                let version = if n.status == NodeStatus::Updated || n.switched {
                    Some(spec.version.clone())
                } else {
                    n.before.clone()
                };
                NodeLine {
                    node: name.clone(),
                    group: if group == 0 {
                        "canary".into()
                    } else {
                        format!("batch {group}")
                    },
                    status: n.status.as_str().to_string(),
                    step: n.in_flight.map(|k| k.as_str().to_string()),
                    version,
                    rotation: if n.out_of_rotation { "out" } else { "in" },
                    down: s.down.get(name).cloned(),
                    last: n.last_detail.clone(),
                }
            })
            .collect();
        let window = match (&s.window, &spec.window) {
            (Some(ws), Some(w)) if !s.windows_passed.contains(&s.group) => {
                w.length_after(s.group, spec.groups.len()).map(|length_ms| {
                    let remaining = ws.end(length_ms, now).saturating_sub(now);
                    let elapsed = length_ms.saturating_sub(remaining).min(length_ms);
                    WindowView {
                        elapsed_ms: elapsed,
                        total_ms: length_ms,
                        probes: ws.probes,
                        paused: ws.outage_since.is_some() || ws.incident_since.is_some(),
                        checks: w
                            .checks
                            .iter()
                            .map(|c| {
                                let j = s.sli.iter().find(|j| j.check == c.name);
                                CheckLine {
                                    check: c.name.clone(),
                                    value: j.and_then(|j| j.value),
                                    max: c.max,
                                    min: c.min,
                                    baseline: j.and_then(|j| j.baseline_value),
                                    verdict: j.map(|j| {
                                        if j.incident {
                                            "incident".to_string()
                                        } else {
                                            format!("{:?}", j.verdict).to_lowercase()
                                        }
                                    }),
                                    samples: j.map_or(0, |j| j.samples),
                                }
                            })
                            .collect(),
                    }
                })
            }
            _ => None,
        };
        let tasks = crate::report::task_summaries(spec, s, &[]);
        let waiting = match self.rec.status {
            RunStatus::Paused | RunStatus::Waiting if !self.rec.reason.is_empty() => {
                Some(self.hints().fill(&self.rec.reason))
            }
            RunStatus::Suspended => Some(format!(
                "stopped, resumable: {}",
                self.hints().fill(&self.rec.reason)
            )),
            _ if self.holder_alive == Some(false) && !self.rec.status.is_final() => {
                Some("the process holding the run is gone".to_string())
            }
            _ => None,
        };
        View {
            run_id: self.rec.id.clone(),
            fleet: self.rec.fleet.clone(),
            version: self.rec.version.clone(),
            status: self.rec.status.to_string(),
            reason: if self.rec.status.is_final() {
                self.rec.reason.clone()
            } else {
                String::new()
            },
            phase,
            nodes,
            window,
            tasks,
            waiting,
            commands: self.commands(),
        }
    }
}

/// One node in a [`View`].
#[derive(Debug, Clone, PartialEq)]
pub struct NodeLine {
    pub node: String,
    /// `canary` or `batch k`.
    pub group: String,
    pub status: String,
    /// The step in flight, if any.
    pub step: Option<String>,
    pub version: Option<String>,
    pub rotation: &'static str,
    pub down: Option<String>,
    pub last: String,
}

/// The SLI window under way.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowView {
    /// Time watched so far (pauses for outages and incidents not counted).
    pub elapsed_ms: u64,
    pub total_ms: u64,
    pub probes: u32,
    /// Paused for a metrics outage or a fleet-wide incident.
    pub paused: bool,
    pub checks: Vec<CheckLine>,
}

/// A check's latest value against its limit (and the baseline's value).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckLine {
    pub check: String,
    pub value: Option<f64>,
    pub max: Option<f64>,
    pub min: Option<f64>,
    pub baseline: Option<f64>,
    /// `pass`, `breach`, `inconclusive` or `incident` (none before a probe).
    pub verdict: Option<String>,
    pub samples: u64,
}

impl CheckLine {
    fn text(&self) -> String {
        let num = |v: f64| {
            let s = format!("{v:.4}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        };
        let mut t = format!(
            "{} = {}",
            self.check,
            self.value.map_or("–".to_string(), num)
        );
        if let Some(m) = self.max {
            let _ = write!(t, " (max {})", num(m));
        }
        if let Some(m) = self.min {
            let _ = write!(t, " (min {})", num(m));
        }
        if let Some(b) = self.baseline {
            let _ = write!(t, ", baseline {}", num(b));
        }
        let _ = write!(
            t,
            " [{}, {} samples]",
            self.verdict.as_deref().unwrap_or("no probe yet"),
            self.samples
        );
        t
    }
}

/// A run as a follower sees it.
#[derive(Debug, Clone)]
pub struct View {
    pub run_id: String,
    pub fleet: String,
    pub version: String,
    pub status: String,
    /// How it ended (a finished run).
    pub reason: String,
    /// `preflight`, `pre tasks`, `canary`, `batch k of n`, `post tasks`,
    /// `rolling back`, `aborting`, or the outcome.
    pub phase: String,
    pub nodes: Vec<NodeLine>,
    pub window: Option<WindowView>,
    pub tasks: Vec<TaskSummary>,
    pub waiting: Option<String>,
    pub commands: Vec<String>,
}

fn secs(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

impl View {
    /// The whole view, for a terminal redrawn in place.
    pub fn screen(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "run {}  fleet `{}`  release {}",
            self.run_id, self.fleet, self.version
        );
        let _ = writeln!(s, "status: {}   phase: {}", self.status, self.phase);
        if !self.reason.is_empty() {
            let _ = writeln!(s, "ended: {}", self.reason);
        }
        let _ = writeln!(
            s,
            "\n{:<12} {:<9} {:<12} {:<8} {:<4} {:<14} last",
            "node", "group", "status", "release", "lb", "step"
        );
        for n in &self.nodes {
            let last: String = match &n.down {
                Some(why) => format!("found DOWN: {why}"),
                None => n.last.clone(),
            }
            .chars()
            .take(60)
            .collect();
            let _ = writeln!(
                s,
                "{:<12} {:<9} {:<12} {:<8} {:<4} {:<14} {}",
                n.node,
                n.group,
                n.status,
                n.version.as_deref().unwrap_or("-"),
                n.rotation,
                n.step.as_deref().unwrap_or("-"),
                last
            );
        }
        if let Some(w) = &self.window {
            let _ = writeln!(s, "\n{}", window_line(w));
            for c in &w.checks {
                let _ = writeln!(s, "  - {}", c.text());
            }
        }
        if !self.tasks.is_empty() {
            let _ = writeln!(s, "\ntasks:");
            for t in &self.tasks {
                let _ = writeln!(s, "  - {:<4} {:<22} {}", t.phase, t.name, t.status);
            }
        }
        if let Some(w) = &self.waiting {
            let _ = writeln!(s, "\nwaiting: {w}");
        }
        if !self.commands.is_empty() {
            let _ = writeln!(s, "\ncommands:");
            for c in &self.commands {
                let _ = writeln!(s, "  {c}");
            }
        }
        s
    }

    /// The view as keyed lines: a follower off a terminal prints the ones
    /// whose text changed since the last view.
    pub fn lines(&self) -> Vec<(String, String)> {
        let mut out = vec![(
            "status".to_string(),
            format!("status: {}, phase: {}", self.status, self.phase),
        )];
        for n in &self.nodes {
            out.push((
                format!("node {}", n.node),
                format!(
                    "node {} ({}): {}{} on {} ({} rotation){}",
                    n.node,
                    n.group,
                    n.status,
                    n.step
                        .as_ref()
                        .map(|k| format!(", {k}"))
                        .unwrap_or_default(),
                    n.version.as_deref().unwrap_or("-"),
                    n.rotation,
                    n.down
                        .as_ref()
                        .map(|d| format!(", found DOWN: {d}"))
                        .unwrap_or_default()
                ),
            ));
        }
        if let Some(w) = &self.window {
            // one line a probe: the elapsed time changes between them
            let checks: Vec<String> = w.checks.iter().map(CheckLine::text).collect();
            out.push((
                format!("window {}", w.probes),
                format!("{}: {}", window_line(w), checks.join("; ")),
            ));
        }
        for t in &self.tasks {
            out.push((
                format!("task {} {}", t.phase, t.name),
                format!("task {} {}: {}", t.phase, t.name, t.status),
            ));
        }
        out.push((
            "waiting".into(),
            match &self.waiting {
                Some(w) => format!("waiting: {w}"),
                None => String::new(),
            },
        ));
        out.push((
            "commands".into(),
            if self.commands.is_empty() {
                String::new()
            } else {
                format!(
                    "commands: {}",
                    self.commands
                        .iter()
                        .map(|c| c.split("  (").next().unwrap_or(c))
                        .collect::<Vec<_>>()
                        .join(" | ")
                )
            },
        ));
        if !self.reason.is_empty() {
            out.push(("ended".into(), format!("ended: {}", self.reason)));
        }
        out
    }
}

fn window_line(w: &WindowView) -> String {
    format!(
        "SLI window: {} of {} watched, {} probe(s){}",
        secs(w.elapsed_ms),
        secs(w.total_ms),
        w.probes,
        if w.paused { " (paused)" } else { "" }
    )
}
