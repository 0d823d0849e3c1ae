//! `/metrics`: the journal's runs in the Prometheus text format.
//!
//! - `glidepath_runs{status}`: runs by status (a gauge; every status, 0
//!   included).
//! - `glidepath_rollbacks_total{cause}`: runs that rolled back (or whose
//!   rollback failed), by the cause that turned them back (`health`, `sli`,
//!   `step`, `infra`, `operator`, `task`).
//! - `glidepath_step_duration_seconds{step}`: a histogram of every step's
//!   duration, from its `intent` to its `outcome` in the journal.
//! - `glidepath_decision_latency_seconds`: a histogram of the time from a
//!   step's `outcome` to the next event of its run, the decision that
//!   followed (the next step's `intent`, or a transition). A poll that
//!   repeats after its interval by design (`probe`, `check_health`,
//!   `check_drained`) is a wait, not a decision, and is not counted.
//! - `glidepath_serve_event_streams`: event streams open now.
//!
//! A finished run's figures never change: they are computed once and kept;
//! the others are recomputed at most every [`TTL`].

use super::App;
use crate::journal::{JournalError, RunRecord, RunStatus, Store};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use glidepath_core::{CauseKind, Event, Step, StepKind};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an answer is reused.
pub const TTL: Duration = Duration::from_secs(2);
/// The runs considered (newest first).
pub const MAX_RUNS: usize = 100_000;

const STEP_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
const DECISION_BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// One run's figures.
#[derive(Debug, Clone, Default)]
struct Facts {
    /// Step durations in seconds, by step kind.
    steps: Vec<(StepKind, f64)>,
    /// Decision latencies in seconds.
    decisions: Vec<f64>,
    /// Why it rolled back.
    cause: Option<CauseKind>,
}

#[derive(Default)]
pub(crate) struct Cache {
    answer: Option<(Instant, String)>,
    /// Finished runs' figures, by run id.
    finished: HashMap<String, Facts>,
}

/// A fixed-bucket histogram.
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }
    fn observe(&mut self, v: f64) {
        for (i, b) in self.bounds.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let l = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{l} {}", self.sum);
        let _ = writeln!(out, "{name}_count{l} {}", self.count);
    }
}

/// The key that pairs a step's intent with its outcome.
fn key(s: &Step) -> (StepKind, Option<String>, Option<(String, usize)>) {
    (
        s.kind,
        s.node.clone(),
        s.task
            .as_ref()
            .map(|t| (t.phase.as_str().to_string(), t.index)),
    )
}

/// A run's figures from its events (and its cause, from the journaled plan,
/// when it rolled back).
fn facts(j: &dyn Store, rec: &RunRecord) -> Result<Facts, JournalError> {
    let events = j.events(&rec.id)?;
    let mut f = Facts::default();
    let mut open = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        match e {
            Event::Intent { at, step } => {
                open.insert(key(step), *at);
            }
            Event::Outcome { at, step, .. } => {
                if let Some(t0) = open.remove(&key(step)) {
                    f.steps
                        .push((step.kind, at.saturating_sub(t0) as f64 / 1000.0));
                }
                let next = events.get(i + 1);
                let waits = matches!(next, Some(Event::Intent { step, .. })
                    if matches!(step.kind, StepKind::Probe | StepKind::CheckHealth | StepKind::CheckDrained));
                // an outcome followed by an outcome: steps ran together
                let decided = matches!(next, Some(n) if !matches!(n, Event::Outcome { .. }));
                if decided && !waits {
                    let next_at = next.map_or(*at, |n| n.at());
                    f.decisions
                        .push(next_at.saturating_sub(*at) as f64 / 1000.0);
                }
            }
            Event::Interrupted { .. } => open.clear(),
            _ => {}
        }
    }
    if matches!(
        rec.status,
        RunStatus::RolledBack | RunStatus::RollbackFailed | RunStatus::Resolved
    ) {
        f.cause = crate::control::journaled_plan(rec).ok().and_then(|p| {
            glidepath_core::RunState::replay(&p.rollout_spec(), &events)
                .cause
                .map(|c| c.kind)
        });
    }
    Ok(f)
}

fn cause_name(k: CauseKind) -> &'static str {
    match k {
        CauseKind::Health => "health",
        CauseKind::Sli => "sli",
        CauseKind::Step => "step",
        CauseKind::Infra => "infra",
        CauseKind::Operator => "operator",
        CauseKind::Task => "task",
    }
}

/// The exposition, from the journal (`cache` keeps finished runs' figures).
fn render(
    j: &dyn Store,
    cache: &mut HashMap<String, Facts>,
    streams: usize,
) -> Result<String, JournalError> {
    // an unreachable journal is an error (503), never a page of zeros
    let runs = j.runs(MAX_RUNS)?;
    let mut by_status: BTreeMap<&str, u64> =
        RunStatus::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    let mut causes: BTreeMap<&str, u64> = [
        CauseKind::Health,
        CauseKind::Sli,
        CauseKind::Step,
        CauseKind::Infra,
        CauseKind::Operator,
        CauseKind::Task,
    ]
    .iter()
    .map(|c| (cause_name(*c), 0))
    .collect();
    let mut steps: BTreeMap<StepKind, Histogram> = BTreeMap::new();
    let mut decisions = Histogram::new(&DECISION_BUCKETS);
    for rec in &runs {
        *by_status.entry(rec.status.as_str()).or_default() += 1;
        let fresh;
        // only what was read whole is kept for a finished run
        let f = if rec.status.is_final() {
            if !cache.contains_key(&rec.id) {
                let read = facts(j, rec)?;
                cache.insert(rec.id.clone(), read);
            }
            &cache[&rec.id]
        } else {
            fresh = facts(j, rec)?;
            &fresh
        };
        if let Some(c) = f.cause {
            *causes.entry(cause_name(c)).or_default() += 1;
        }
        for (k, d) in &f.steps {
            steps
                .entry(*k)
                .or_insert_with(|| Histogram::new(&STEP_BUCKETS))
                .observe(*d);
        }
        for d in &f.decisions {
            decisions.observe(*d);
        }
    }
    let mut out = String::new();
    out.push_str(
        "# HELP glidepath_runs Runs in the journal, by status.\n# TYPE glidepath_runs gauge\n",
    );
    for (s, n) in &by_status {
        let _ = writeln!(out, "glidepath_runs{{status=\"{s}\"}} {n}");
    }
    out.push_str("# HELP glidepath_rollbacks_total Runs that rolled back (or whose rollback failed), by cause.\n# TYPE glidepath_rollbacks_total counter\n");
    for (c, n) in &causes {
        let _ = writeln!(out, "glidepath_rollbacks_total{{cause=\"{c}\"}} {n}");
    }
    out.push_str("# HELP glidepath_step_duration_seconds Steps from intent to outcome, by step.\n# TYPE glidepath_step_duration_seconds histogram\n");
    for (k, h) in &steps {
        h.write(
            &mut out,
            "glidepath_step_duration_seconds",
            &format!("step=\"{}\"", k.as_str()),
        );
    }
    out.push_str("# HELP glidepath_decision_latency_seconds From a step's outcome to the next event of its run (polls repeating after their interval excluded).\n# TYPE glidepath_decision_latency_seconds histogram\n");
    decisions.write(&mut out, "glidepath_decision_latency_seconds", "");
    out.push_str("# HELP glidepath_serve_event_streams Event streams open now.\n# TYPE glidepath_serve_event_streams gauge\n");
    let _ = writeln!(out, "glidepath_serve_event_streams {streams}");
    Ok(out)
}

/// `GET /metrics`.
pub(crate) async fn handler(State(app): State<Arc<App>>) -> Response {
    let a = app.clone();
    let body = tokio::task::spawn_blocking(move || {
        let mut cache = a.metrics.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((t, s)) = &cache.answer {
            if t.elapsed() < TTL {
                return Ok(s.clone());
            }
        }
        let streams = super::MAX_STREAMS - a.streams.available_permits();
        let s = {
            let j = a.db.lock().unwrap_or_else(|p| p.into_inner());
            render(j.as_ref(), &mut cache.finished, streams)?
        };
        cache.answer = Some((Instant::now(), s.clone()));
        Ok::<_, JournalError>(s)
    })
    .await;
    match body {
        Ok(Err(e)) => super::api::journal_error(e),
        Ok(Ok(s)) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            s,
        )
            .into_response(),
        Err(e) => super::api::error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
