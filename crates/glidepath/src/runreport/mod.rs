//! `glidepath report`: a run's report to attach to a change ticket, as
//! Markdown (`md.rs`), a self-contained HTML page with inline SVG charts
//! (`html.rs`, `svg.rs`) or a JSON document (this module's [`RunReport`],
//! serialized as it is).
//!
//! A report is a pure function of the journal: [`RunReport::build`] reads
//! the run record and its events and nothing else (no clock, no file, no
//! environment), so the same journal always gives the same bytes. What the
//! core knows of the rollout (groups, the SLI checks and their limits,
//! which tasks are irreversible) comes from the journaled `Origin` event;
//! a journal written before it was recorded still renders, with those
//! parts marked unknown. Every journaled text is untrusted: each renderer
//! escapes it for its format.

mod html;
mod md;
mod svg;

use crate::journal::{RunRecord, RunStatus};
use glidepath_core::{Event, Judgement, NodeStatus, Phase, RolloutSpec, RunState, StepKind};
use serde::Serialize;
use std::collections::BTreeMap;

/// The version of the JSON document (its `report` key): bumped when a key
/// is renamed or removed, or changes meaning.
pub const REPORT_VERSION: u32 = 1;

/// What is said of the clients when nothing is journaled about them.
const CLIENTS_UNKNOWN: &str = "nothing is journaled about what clients saw beyond the SLI readings above; how long each node served the new release is computed from the journaled steps";

/// Everything a report shows, in the order it shows it. Times are
/// milliseconds since the run's first journaled event (`t_ms`), which is
/// `started_at` (UTC).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// [`REPORT_VERSION`].
    pub report: u32,
    pub run: RunInfo,
    /// Each process that started or resumed the run, in order (empty: not
    /// journaled, a journal older than this report).
    pub origins: Vec<Origin>,
    pub decisions: Vec<Decision>,
    /// `None`: the run never got to its gates (refused by the lease).
    pub gates: Option<Vec<GateRow>>,
    pub snapshot: Option<Snapshot>,
    pub checks: Vec<CheckSeries>,
    /// When each SLI window started (`t_ms`), for the charts.
    pub windows: Vec<u64>,
    pub nodes: Vec<NodeReport>,
    /// Steps of the run as a whole (windows, peers checks, tasks), probes
    /// aside (they are the charts).
    pub run_steps: Vec<StepRow>,
    pub rollback: Option<Rollback>,
    pub clients: Clients,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunInfo {
    pub run_id: String,
    pub fleet: String,
    pub release: String,
    pub status: String,
    /// The run record's reason (why it ended, what it waits for).
    pub reason: String,
    /// Not ended: a report of the journal as it stands.
    pub in_progress: bool,
    pub plan_path: String,
    pub plan_sha256: String,
    #[serde(with = "crate::output::rfc3339")]
    pub started_at: u64,
    /// From the first journaled event to the last.
    pub duration_ms: u64,
    /// The journal recorded the rollout (groups, checks, limits).
    pub rollout_known: bool,
    /// The node groups: `groups[0]` is the canary.
    pub groups: Vec<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Origin {
    pub t_ms: u64,
    pub user: String,
    pub host: String,
    pub pid: u32,
    pub tool_version: String,
    /// A later process that resumed the run (after a crash, or to carry out
    /// an abort or a rollback).
    pub resumed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub t_ms: u64,
    /// `started`, `resumed`, `gate_forced`, `group_started`,
    /// `window_passed`, `window_failed`, `promoted`, `abort_requested`, `rollback_requested`,
    /// `rollback`, `node_failed`, `interrupted`, `suspended`, `finished`.
    pub kind: &'static str,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateRow {
    pub gate: String,
    /// `pass`, `fail`, `skip`, `forced`, as journaled.
    pub verdict: String,
    pub reason: String,
    pub forced: Option<Forced>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forced {
    pub by: String,
    pub reason: String,
}

/// The pre-flight snapshot: env values are keyed fingerprints, as
/// journaled (in clear only for the names the plan lists in `env_clear`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub releases: BTreeMap<String, Option<String>>,
    pub config_hashes: Vec<(String, String)>,
    pub env: Vec<(String, String)>,
}

/// One SLI check over the run: every probe's reading.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckSeries {
    pub check: String,
    pub max: Option<f64>,
    pub min: Option<f64>,
    /// `compare = "baseline"`: the tolerance over the baseline's rate.
    pub compare_tolerance: Option<f64>,
    pub points: Vec<Point>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub t_ms: u64,
    /// The value that decides (the worst series); `None`: no data.
    pub value: Option<f64>,
    pub samples: u64,
    pub baseline: Option<f64>,
    /// Past `max` or under `min`.
    pub over_limit: bool,
    /// The core's verdict on this probe: `pass`, `breach`, `inconclusive`
    /// (`incident`: canary and baseline both past the limit); `None` when
    /// the rollout is unknown.
    pub verdict: Option<String>,
    /// The verdict's reason, with its figures.
    pub judged: Option<String>,
    /// The source could not be read.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeReport {
    pub node: String,
    /// 0 is the canary group; `None` when the rollout is unknown.
    pub group: Option<usize>,
    pub before: Option<String>,
    /// The release `current` was last switched to.
    pub after: Option<String>,
    /// The releases it ran, in order: `before`, then each switch.
    pub path: Vec<String>,
    /// The core's status (`unknown` when the rollout is unknown).
    pub status: String,
    pub steps: Vec<StepRow>,
}

/// A step, or a step polled several times (`tries`), from its first
/// intent to its last outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRow {
    pub t_ms: u64,
    pub step: String,
    pub version: Option<String>,
    pub tries: u32,
    pub duration_ms: u64,
    /// `ok`, `failed`, `infra` (the infrastructure did not answer), or
    /// `in_flight` (no outcome journaled).
    pub result: &'static str,
    pub reason: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rollback {
    /// Why the run left the forward path (`None`: unknown, or an abort).
    pub cause: Option<String>,
    /// Nodes switched back to their last-known-good release.
    pub restored: Vec<String>,
    /// What could not be reversed: nodes kept out of rotation (restoring
    /// them failed), and the irreversible tasks that ran.
    pub not_reversed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Clients {
    /// For each node that served the new release: for how long.
    pub exposure: Vec<Exposure>,
    /// Each check's worst reading over the run.
    pub worst: Vec<String>,
    pub note: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exposure {
    pub node: String,
    pub from_ms: u64,
    /// `None`: still in rotation when the journal ends.
    pub to_ms: Option<u64>,
}

impl RunReport {
    /// The report of `rec` with its `events` (as journaled, in order).
    pub fn build(rec: &RunRecord, events: &[Event]) -> RunReport {
        let t0 = events.first().map_or(rec.created_at, Event::at);
        let rel = |at: u64| at.saturating_sub(t0);
        let spec: Option<RolloutSpec> = events.iter().rev().find_map(|e| match e {
            Event::Origin { spec: Some(s), .. } => Some((**s).clone()),
            _ => None,
        });
        let mut decisions = Vec::new();
        let mut origins = Vec::new();
        let mut gates = None;
        let mut forced: BTreeMap<String, Forced> = BTreeMap::new();
        let mut snapshot = None;
        let mut before: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut windows = Vec::new();
        let mut state = spec.as_ref().map(RunState::new);
        // the core's verdicts after each probe, by event index
        let mut verdicts: BTreeMap<usize, Vec<Judgement>> = BTreeMap::new();
        for (i, ev) in events.iter().enumerate() {
            let t = rel(ev.at());
            let mut say = |kind, text: String| {
                decisions.push(Decision {
                    t_ms: t,
                    kind,
                    text,
                })
            };
            match ev {
                Event::Origin {
                    user,
                    host,
                    pid,
                    tool_version,
                    ..
                } => {
                    let resumed = !origins.is_empty();
                    if resumed {
                        say(
                            "resumed",
                            format!(
                                "resumed by {user}@{host} (pid {pid}, glidepath {tool_version})"
                            ),
                        );
                    }
                    origins.push(Origin {
                        t_ms: t,
                        user: user.clone(),
                        host: host.clone(),
                        pid: *pid,
                        tool_version: tool_version.clone(),
                        resumed,
                    });
                }
                Event::GatesChecked { results, .. } => {
                    gates = Some(
                        results
                            .iter()
                            .map(|g| GateRow {
                                gate: g.gate.clone(),
                                verdict: g.verdict.clone(),
                                reason: g.reason.clone(),
                                forced: None,
                            })
                            .collect::<Vec<_>>(),
                    )
                }
                Event::GateForced {
                    gate, reason, by, ..
                } => {
                    say(
                        "gate_forced",
                        format!("gate `{gate}` forced by {by}: {reason}"),
                    );
                    forced.insert(
                        gate.clone(),
                        Forced {
                            by: by.clone(),
                            reason: reason.clone(),
                        },
                    );
                }
                Event::Snapshot {
                    versions,
                    config_hashes,
                    env,
                    ..
                } => {
                    snapshot = Some(Snapshot {
                        releases: versions.clone(),
                        config_hashes: config_hashes.clone(),
                        env: env.clone(),
                    })
                }
                Event::Started { before: b, .. } => {
                    before = b.clone();
                    say(
                        "started",
                        format!("rollout of {} started on {} node(s)", rec.version, b.len()),
                    );
                }
                Event::Outcome { step, .. } if step.kind == StepKind::StartWindow => {
                    windows.push(t)
                }
                Event::GroupStarted { reason, .. } => say("group_started", reason.clone()),
                Event::WindowClosed { passed, reason, .. } => say(
                    if *passed {
                        "window_passed"
                    } else {
                        "window_failed"
                    },
                    reason.clone(),
                ),
                Event::Promoted { reason, .. } => say("promoted", reason.clone()),
                Event::AbortRequested { reason, .. } => say("abort_requested", reason.clone()),
                Event::RollbackRequested { reason, .. } => {
                    say("rollback_requested", reason.clone())
                }
                Event::Interrupted { in_flight, .. } => say(
                    "interrupted",
                    format!(
                        "the process driving the run was gone: {} step(s) in flight repeated",
                        in_flight.len()
                    ),
                ),
                Event::Suspended { reason, .. } => {
                    say("suspended", format!("stopped, resumable: {reason}"))
                }
                Event::Finished {
                    outcome, reason, ..
                } => say("finished", format!("{}: {reason}", outcome.as_str())),
                Event::Resolved { by, reason, .. } => say(
                    "resolved",
                    format!("resolved by {by} after the failed rollback: {reason}"),
                ),
                _ => {}
            }
            // What the core concluded from this event: a rollback's cause,
            // a node that failed.
            if let (Some(spec), Some(st)) = (&spec, &mut state) {
                let had_cause = st.cause.is_some();
                let failed: Vec<String> = failed_nodes(st);
                st.apply(spec, ev);
                if matches!(ev, Event::Outcome { step, .. } if step.kind == StepKind::Probe) {
                    verdicts.insert(i, st.sli.clone());
                }
                let asked = matches!(
                    ev,
                    Event::RollbackRequested { .. } | Event::AbortRequested { .. }
                );
                if let (false, false, Some(c)) = (had_cause, asked, &st.cause) {
                    say("rollback", format!("rolling back: {}", cause_text(c)));
                }
                for n in failed_nodes(st).into_iter().filter(|n| !failed.contains(n)) {
                    let why = st.nodes[&n]
                        .failed_forward
                        .clone()
                        .unwrap_or_else(|| st.nodes[&n].last_detail.clone());
                    say("node_failed", format!("node {n} failed: {why}"));
                }
            }
        }
        if let Some(g) = &mut gates {
            for row in g.iter_mut() {
                row.forced = forced.remove(&row.gate);
            }
        }
        let (nodes, run_steps) = timelines(events, rel, spec.as_ref(), state.as_ref(), &before);
        let checks = series(events, rel, spec.as_ref(), &verdicts);
        let rollback = rollback(&nodes, state.as_ref(), rec);
        let clients = clients(events, rel, &rec.version, &checks);
        RunReport {
            report: REPORT_VERSION,
            run: RunInfo {
                run_id: rec.id.clone(),
                fleet: rec.fleet.clone(),
                release: rec.version.clone(),
                status: rec.status.to_string(),
                reason: rec.reason.clone(),
                in_progress: !rec.status.is_final(),
                plan_path: rec.plan_path.clone(),
                plan_sha256: rec.plan_hash.clone(),
                started_at: t0,
                duration_ms: events.last().map_or(0, |e| rel(e.at())),
                rollout_known: spec.is_some(),
                groups: spec.map(|s| s.groups).unwrap_or_default(),
            },
            origins,
            decisions,
            gates,
            snapshot,
            checks,
            windows,
            nodes,
            run_steps,
            rollback,
            clients,
        }
    }

    /// The JSON document: `schema_version` (as every JSON output), then
    /// `report` (this document's own version), then the rest.
    pub fn json(&self) -> String {
        crate::output::document(self) + "\n"
    }

    /// Markdown.
    pub fn markdown(&self) -> String {
        md::render(self)
    }

    /// One self-contained HTML page (inline CSS and SVG, no script).
    pub fn html(&self) -> String {
        html::render(self)
    }

    /// `finished`, `in progress`, or `suspended (resumable)`: the run's
    /// state in words, for the headers.
    pub fn state_words(&self) -> String {
        match self.run.status.as_str() {
            s if s == RunStatus::Suspended.as_str() => "suspended (resumable): in progress".into(),
            _ if self.run.in_progress => format!("in progress ({})", self.run.status),
            s => format!("finished: {s}"),
        }
    }

    /// Who ran it, from where.
    pub fn run_by(&self) -> String {
        match self.origins.first() {
            Some(o) => format!(
                "{}@{} (pid {}, glidepath {})",
                o.user, o.host, o.pid, o.tool_version
            ),
            None => "unknown (not journaled by the glidepath that ran it)".into(),
        }
    }
}

fn failed_nodes(st: &RunState) -> Vec<String> {
    st.nodes
        .iter()
        .filter(|(_, n)| n.status == NodeStatus::Failed || n.failed_forward.is_some())
        .map(|(k, _)| k.clone())
        .collect()
}

fn cause_text(c: &glidepath_core::Cause) -> String {
    match &c.node {
        Some(n) if !c.reason.contains(n.as_str()) => format!("{n}: {}", c.reason),
        _ => c.reason.clone(),
    }
}

/// Each node's steps (and the run's own), polls of one step folded into
/// one row: from the first intent to the last outcome.
fn timelines(
    events: &[Event],
    rel: impl Fn(u64) -> u64,
    spec: Option<&RolloutSpec>,
    state: Option<&RunState>,
    before: &BTreeMap<String, Option<String>>,
) -> (Vec<NodeReport>, Vec<StepRow>) {
    let mut rows: BTreeMap<Option<String>, Vec<StepRow>> = BTreeMap::new();
    // the row a step's next outcome closes, per subject and step kind
    let mut open: BTreeMap<(Option<String>, StepKind), (usize, u64)> = BTreeMap::new();
    let mut switched: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for ev in events {
        match ev {
            Event::Intent { at, step } if step.kind != StepKind::Probe => {
                let subject = step.node.clone();
                let label = match &step.task {
                    Some(t) => format!("task {} \"{}\"", t.phase.as_str(), t.name),
                    None => step.kind.as_str().to_string(),
                };
                let list = rows.entry(subject.clone()).or_default();
                let key = (subject, step.kind);
                let polled = matches!(step.kind, StepKind::CheckDrained | StepKind::CheckHealth);
                match list.last_mut() {
                    Some(last)
                        if polled
                            && last.step == label
                            && last.version == step.version
                            && last.result != "in_flight" =>
                    {
                        last.tries += 1;
                        last.result = "in_flight";
                        open.insert(key, (list.len() - 1, *at));
                    }
                    _ => {
                        list.push(StepRow {
                            t_ms: rel(*at),
                            step: label,
                            version: step.version.clone(),
                            tries: 1,
                            duration_ms: 0,
                            result: "in_flight",
                            reason: step.reason.clone(),
                            detail: String::new(),
                        });
                        open.insert(key, (list.len() - 1, *at));
                    }
                }
            }
            Event::Outcome { at, step, outcome } if step.kind != StepKind::Probe => {
                let subject = step.node.clone();
                if let Some((i, _)) = open.remove(&(subject.clone(), step.kind)) {
                    let row = &mut rows.get_mut(&subject).expect("opened")[i];
                    row.duration_ms = rel(*at).saturating_sub(row.t_ms);
                    row.result = if outcome.ok {
                        "ok"
                    } else if outcome.infra {
                        "infra"
                    } else {
                        "failed"
                    };
                    row.detail = outcome.detail.clone();
                }
                if let (StepKind::Switch, true, Some(n), Some(v)) =
                    (step.kind, outcome.ok, &step.node, &step.version)
                {
                    switched.entry(n.clone()).or_default().push(v.clone());
                }
            }
            _ => {}
        }
    }
    let run_steps = rows.remove(&None).unwrap_or_default();
    let mut names: Vec<String> = match spec {
        Some(s) => s.nodes().cloned().collect(),
        None => before.keys().cloned().collect(),
    };
    for n in rows.keys().flatten() {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    let nodes = names
        .into_iter()
        .map(|node| {
            let was = before.get(&node).cloned().flatten();
            let mut path: Vec<String> = was.iter().cloned().collect();
            for v in switched.remove(&node).unwrap_or_default() {
                if path.last() != Some(&v) {
                    path.push(v);
                }
            }
            NodeReport {
                group: spec.and_then(|s| s.group_of(&node)),
                after: path.last().cloned(),
                path,
                before: was,
                status: state
                    .and_then(|s| s.nodes.get(&node))
                    .map_or("unknown", |n| n.status.as_str())
                    .to_string(),
                steps: rows.remove(&Some(node.clone())).unwrap_or_default(),
                node,
            }
        })
        .collect();
    (nodes, run_steps)
}

/// Every probe's reading of each check, with the check's limits.
fn series(
    events: &[Event],
    rel: impl Fn(u64) -> u64,
    spec: Option<&RolloutSpec>,
    verdicts: &BTreeMap<usize, Vec<Judgement>>,
) -> Vec<CheckSeries> {
    let specs: Vec<&glidepath_core::CheckSpec> = spec
        .and_then(|s| s.window.as_ref())
        .map(|w| w.checks.iter().collect())
        .unwrap_or_default();
    let mut out: BTreeMap<String, CheckSeries> = BTreeMap::new();
    for c in &specs {
        out.insert(
            c.name.clone(),
            CheckSeries {
                check: c.name.clone(),
                max: c.max,
                min: c.min,
                compare_tolerance: c.compare.as_ref().map(|x| x.tolerance),
                points: Vec::new(),
            },
        );
    }
    for (i, ev) in events.iter().enumerate() {
        let Event::Outcome { at, step, outcome } = ev else {
            continue;
        };
        if step.kind != StepKind::Probe {
            continue;
        }
        for o in &outcome.observations {
            let judged = verdicts
                .get(&i)
                .and_then(|js| js.iter().find(|j| j.check == o.check));
            let c = specs.iter().find(|c| c.name == o.check);
            let value = match c {
                Some(c) => o.deciding_value(c),
                None => o.value.or_else(|| {
                    o.series
                        .iter()
                        .copied()
                        .filter(|v| v.is_finite())
                        .reduce(f64::max)
                }),
            };
            let s = out.entry(o.check.clone()).or_insert_with(|| CheckSeries {
                check: o.check.clone(),
                max: None,
                min: None,
                compare_tolerance: None,
                points: Vec::new(),
            });
            let over_limit =
                value.is_some_and(|v| s.max.is_some_and(|m| v > m) || s.min.is_some_and(|m| v < m));
            s.points.push(Point {
                t_ms: rel(*at),
                value: value.filter(|v| v.is_finite()),
                samples: o.samples,
                baseline: o
                    .baseline
                    .as_ref()
                    .and_then(|b| match c {
                        Some(c) => b.deciding_value(c),
                        None => b.value,
                    })
                    .filter(|v| v.is_finite()),
                over_limit,
                verdict: judged.map(|j| {
                    let v = format!("{:?}", j.verdict).to_lowercase();
                    if j.incident {
                        format!("{v} (incident)")
                    } else {
                        v
                    }
                }),
                judged: judged.map(|j| j.reason.clone()),
                error: o.error.clone(),
            });
        }
    }
    out.into_values().collect()
}

fn rollback(nodes: &[NodeReport], state: Option<&RunState>, rec: &RunRecord) -> Option<Rollback> {
    let restored: Vec<String> = nodes
        .iter()
        .filter(|n| {
            n.steps.iter().any(|s| {
                s.step == "switch"
                    && s.result == "ok"
                    && s.version == n.before
                    && s.version.is_some()
            })
        })
        .map(|n| {
            format!(
                "{} (back to {})",
                n.node,
                n.before.as_deref().unwrap_or("?")
            )
        })
        .collect();
    let mut not_reversed = Vec::new();
    let mut cause = None;
    if let Some(st) = state {
        cause = st.cause.as_ref().map(cause_text);
        for (name, n) in &st.nodes {
            if n.status == NodeStatus::Failed {
                not_reversed.push(format!(
                    "node {name} kept out of rotation: restoring it failed ({})",
                    n.last_detail
                ));
            }
        }
        for t in &st.tasks.irreversible {
            not_reversed.push(format!("irreversible task ran: {t}"));
        }
    }
    let rolled = matches!(
        rec.status,
        RunStatus::RolledBack | RunStatus::RollbackFailed | RunStatus::Aborted
    ) || state
        .is_some_and(|s| matches!(s.phase, Phase::RollingBack | Phase::Aborting));
    (rolled || !restored.is_empty() || !not_reversed.is_empty()).then_some(Rollback {
        cause,
        restored,
        not_reversed,
    })
}

/// What clients were exposed to, as far as the journal tells: how long
/// each node served the new release, and each check's worst reading.
fn clients(
    events: &[Event],
    rel: impl Fn(u64) -> u64,
    release: &str,
    checks: &[CheckSeries],
) -> Clients {
    let mut on_new: BTreeMap<String, bool> = BTreeMap::new();
    let mut since: BTreeMap<String, u64> = BTreeMap::new();
    let mut exposure = Vec::new();
    for ev in events {
        let Event::Outcome { at, step, outcome } = ev else {
            continue;
        };
        let Some(node) = &step.node else { continue };
        match step.kind {
            StepKind::Switch if outcome.ok => {
                on_new.insert(node.clone(), step.version.as_deref() == Some(release));
            }
            StepKind::Enable if outcome.ok && on_new.get(node) == Some(&true) => {
                since.entry(node.clone()).or_insert(rel(*at));
            }
            StepKind::Drain if outcome.ok => {
                if let Some(from) = since.remove(node) {
                    exposure.push(Exposure {
                        node: node.clone(),
                        from_ms: from,
                        to_ms: Some(rel(*at)),
                    });
                }
            }
            _ => {}
        }
    }
    exposure.extend(since.into_iter().map(|(node, from)| Exposure {
        node,
        from_ms: from,
        to_ms: None,
    }));
    let worst = checks
        .iter()
        .filter_map(|c| {
            let low = c.min.is_some() && c.max.is_none();
            let p = c
                .points
                .iter()
                .filter(|p| p.value.is_some())
                .reduce(|a, b| {
                    let (x, y) = (a.value.unwrap_or(0.0), b.value.unwrap_or(0.0));
                    if (low && y < x) || (!low && y > x) {
                        b
                    } else {
                        a
                    }
                })?;
            Some(format!(
                "{}: worst reading {} ({} samples) at {}",
                c.check,
                num(p.value.unwrap_or(0.0)),
                p.samples,
                rel_time(p.t_ms)
            ))
        })
        .collect();
    Clients {
        exposure,
        worst,
        note: CLIENTS_UNKNOWN,
    }
}

/// A reading, as the narration writes it (at most 4 decimals).
pub(crate) fn num(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// `+1.43s` from the run's start.
pub(crate) fn rel_time(ms: u64) -> String {
    format!("+{}.{:02}s", ms / 1000, (ms % 1000) / 10)
}

/// A duration: `12 ms`, `1.43 s`, `2 min 5 s`.
pub(crate) fn duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1000..=119_999 => format!("{}.{:02} s", ms / 1000, (ms % 1000) / 10),
        _ => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// A limit in words: `max 0.05`, `min 10`, `≤ 1.1× baseline`.
pub(crate) fn limit_words(c: &CheckSeries) -> String {
    let mut parts = Vec::new();
    if let Some(m) = c.max {
        parts.push(format!("max {}", num(m)));
    }
    if let Some(m) = c.min {
        parts.push(format!("min {}", num(m)));
    }
    if let Some(t) = c.compare_tolerance {
        parts.push(format!("no worse than the baseline + {}%", num(t * 100.0)));
    }
    if parts.is_empty() {
        "limit unknown".into()
    } else {
        parts.join(", ")
    }
}

/// The UTC time of the run's start, to the millisecond.
pub(crate) fn utc(ms: u64) -> String {
    crate::output::rfc3339::format(ms)
}

#[cfg(test)]
mod tests;
