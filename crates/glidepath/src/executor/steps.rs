//! Carrying out one step through the drivers, bounded in time.

use super::*;

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
pub(super) async fn perform(
    d: Drivers,
    target: Option<Target>,
    run_targets: Vec<(Target, Option<String>)>,
    baseline: Vec<Target>,
    release: Releases,
    step: Step,
) -> StepOutcome {
    let bound = step_bound(&step);
    let once = perform_once(d, target, run_targets, baseline, release, step);
    match tokio::time::timeout(bound, once).await {
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
    baseline: Vec<Target>,
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
                Ok(0) if !d.balancer.exists() => StepOutcome {
                    ok: true,
                    value: Some(0.0),
                    detail: "no balancer: no connection to wait for".into(),
                    ..Default::default()
                },
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
            // with no balancer there is no rotation: the nodes serving
            let pool = if d.balancer.exists() {
                "in rotation"
            } else {
                "serving"
            };
            return StepOutcome {
                ok: true,
                detail: if down.is_empty() {
                    format!("{} node(s) {pool} answer", results.len())
                } else {
                    format!(
                        "{} of {} node(s) {pool} found down: {}",
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
            Some(m) => m.start_window(&canaries, &baseline).await,
            None => Ok("no metrics source".into()),
        },
        (StepKind::Probe, _) => {
            let obs = match &d.metrics {
                Some(m) => m.observe(&canaries, &baseline).await,
                None => vec![],
            };
            let detail = obs
                .iter()
                .map(|o| {
                    let finite: Vec<f64> =
                        o.series.iter().copied().filter(|v| v.is_finite()).collect();
                    let canary = match (&o.error, o.value) {
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
                    };
                    let base = match o.baseline.as_ref().filter(|_| o.error.is_none()) {
                        Some(b) => {
                            let finite = b.series.iter().copied().filter(|v| v.is_finite());
                            match b.value.or_else(|| finite.reduce(f64::max)) {
                                Some(v) => format!(", baseline {v:.4} (n={})", b.samples),
                                None => format!(", baseline no data (n={})", b.samples),
                            }
                        }
                        None => String::new(),
                    };
                    let note = o
                        .note
                        .as_ref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default();
                    format!("{canary}{base}{note}")
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
        (StepKind::Task, _) => Err(crate::drivers::DriverError::Failed(
            "a task is carried out by crate::tasks, not the drivers".into(),
        )),
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
