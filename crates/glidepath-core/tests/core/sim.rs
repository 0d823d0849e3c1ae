//! The simulated fleet the core tests run against: a [`World`] that answers
//! every step (with knobs and scripted faults) and a [`Sim`] that journals,
//! folds and decides, advancing time only when the core asks to wait.

use glidepath_core::*;
use std::collections::{BTreeMap, BTreeSet};

pub(crate) fn names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("n{i}")).collect()
}

pub(crate) fn spec(nodes: usize, batch: usize, window: bool) -> RolloutSpec {
    let all = names(nodes);
    RolloutSpec {
        version: "2".into(),
        groups: plan_groups(&all, &all[..1], BatchSize::Count(batch)),
        max_unavailable: batch,
        pause_after: vec![],
        window: window.then(|| WindowSpec {
            length_ms: 10_000,
            interval_ms: 1_000,
            checks: vec![CheckSpec {
                name: "error rate".into(),
                max: Some(0.05),
                min: None,
                min_samples: 20,
                on_inconclusive: InconclusivePolicy::Wait,
                compare: None,
                shadow: false,
            }],
            rollback_on_breach: true,
            pause_on_metrics_error: true,
            on_incident: Default::default(),
            bake_ms: None,
            watch_ms: None,
        }),
        drain_timeout_ms: 5_000,
        drain_poll_ms: 200,
        on_drain_timeout: DrainTimeoutPolicy::Proceed,
        health_deadline_ms: 3_000,
        health_interval_ms: 250,
        retry: RetrySpec {
            backoff_ms: 200,
            max_backoff_ms: 1_000,
            deadline_ms: 60_000,
        },
        pre: vec![],
        post: vec![],
        on_post_failure: Default::default(),
        max_failed_nodes: 0,
    }
}

/// The simulated world: per-node current release, drained flag, and knobs.
pub(crate) struct World {
    pub(crate) current: BTreeMap<String, String>,
    pub(crate) drained: BTreeMap<String, bool>,
    /// Health fails for this release.
    pub(crate) unhealthy: Option<String>,
    /// Error ratio reported for nodes on the new release, and samples.
    pub(crate) error_ratio: f64,
    pub(crate) samples: u64,
    /// Active connections reported while draining.
    pub(crate) active: f64,
    /// Health fails only on the back track (restore).
    pub(crate) restore_fails: bool,
    /// The baseline group's error ratio, when the source reads it.
    pub(crate) baseline_ratio: Option<f64>,
    /// The metrics source is down.
    pub(crate) metrics_down: bool,
    /// The balancer does not answer (drain, check_drained, enable, post_check).
    pub(crate) balancer_down: bool,
    /// Nodes that died: their health fails, a peers check finds them down.
    pub(crate) dead: BTreeSet<String>,
    /// Restoring these nodes fails their health check.
    pub(crate) restore_fails_on: BTreeSet<String>,
    /// The new release fails its health check on these nodes only.
    pub(crate) unhealthy_on: BTreeSet<String>,
    /// The balancer refuses to drain these nodes (the step's own failure).
    pub(crate) drain_fails_on: BTreeSet<String>,
    /// Scripted faults, one per step performed, cycling (empty: none).
    pub(crate) script: Vec<Fault>,
    pub(crate) pos: usize,
    /// (kind, version) of every step performed.
    pub(crate) performed: Vec<(StepKind, Option<String>)>,
    /// Tasks that fail, by name: how many more attempts fail.
    pub(crate) task_fails: BTreeMap<String, u32>,
    /// Tasks whose infrastructure (database, metrics server) is down.
    pub(crate) task_infra_down: BTreeSet<String>,
}

/// A scripted fault for the next step performed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Fault {
    Ok,
    /// The step's own failure.
    Fail,
    /// The infrastructure refused the connection.
    Infra,
    /// The infrastructure timed out.
    Timeout,
    /// A polling step answers "not yet" (connections left, unhealthy).
    Slow,
}

impl World {
    pub(crate) fn new(n: usize) -> Self {
        World {
            current: names(n).into_iter().map(|n| (n, "1".into())).collect(),
            drained: names(n).into_iter().map(|n| (n, false)).collect(),
            unhealthy: None,
            error_ratio: 0.0,
            samples: 100,
            active: 0.0,
            restore_fails: false,
            baseline_ratio: None,
            metrics_down: false,
            balancer_down: false,
            dead: BTreeSet::new(),
            restore_fails_on: BTreeSet::new(),
            unhealthy_on: BTreeSet::new(),
            drain_fails_on: BTreeSet::new(),
            script: vec![],
            pos: 0,
            performed: vec![],
            task_fails: BTreeMap::new(),
            task_infra_down: BTreeSet::new(),
        }
    }

    pub(crate) fn perform(&mut self, step: &Step) -> StepOutcome {
        self.performed.push((step.kind, step.version.clone()));
        let node = step.node.clone().unwrap_or_default();
        let infra = |detail: &str| StepOutcome {
            ok: false,
            infra: true,
            detail: detail.into(),
            ..Default::default()
        };
        let balancer_step = matches!(
            step.kind,
            StepKind::Drain | StepKind::CheckDrained | StepKind::Enable | StepKind::PostCheck
        );
        if self.balancer_down && balancer_step {
            return infra("HAProxy runtime API: connection refused");
        }
        if !self.script.is_empty() {
            let f = self.script[self.pos % self.script.len()];
            self.pos += 1;
            match f {
                Fault::Ok => {}
                Fault::Fail => return StepOutcome::failed("scripted failure"),
                Fault::Infra => return infra("connection refused"),
                Fault::Timeout => return infra("timed out after 5s"),
                Fault::Slow if step.kind == StepKind::CheckDrained => {
                    return StepOutcome {
                        ok: true,
                        value: Some(2.0),
                        detail: "2 active".into(),
                        ..Default::default()
                    }
                }
                Fault::Slow if step.kind == StepKind::CheckHealth => {
                    return StepOutcome::failed("HTTP 503")
                }
                Fault::Slow => {}
            }
        }
        if self.dead.contains(&node)
            && matches!(step.kind, StepKind::CheckHealth | StepKind::PostCheck)
        {
            return StepOutcome::failed("connection refused (node down)");
        }
        match step.kind {
            // the post-enable check verifies the release it is told about
            StepKind::PostCheck if step.version.as_ref() != Some(&self.current[&node]) => {
                StepOutcome::failed(format!(
                    "serving {}, expected {:?}",
                    self.current[&node], step.version
                ))
            }
            StepKind::CheckPeers => StepOutcome {
                ok: true,
                detail: format!("{} down", self.dead.len()),
                down: self
                    .dead
                    .iter()
                    .map(|n| (n.clone(), "connection refused".to_string()))
                    .collect(),
                ..Default::default()
            },
            StepKind::Drain if self.drain_fails_on.contains(&node) => {
                StepOutcome::failed("server is in maintenance by another tool")
            }
            StepKind::Drain => {
                self.drained.insert(node, true);
                StepOutcome::ok("drained")
            }
            StepKind::Enable => {
                self.drained.insert(node, false);
                StepOutcome::ok("enabled")
            }
            StepKind::CheckDrained => StepOutcome {
                ok: true,
                value: Some(self.active),
                detail: format!("{} active", self.active),
                ..Default::default()
            },
            StepKind::Switch => {
                self.current.insert(node, step.version.clone().unwrap());
                StepOutcome::ok("switched")
            }
            StepKind::CheckHealth => {
                let v = &self.current[&node];
                let restoring =
                    v == "1" && (self.restore_fails || self.restore_fails_on.contains(&node));
                let bad = self.unhealthy.as_ref() == Some(v)
                    || (v != "1" && self.unhealthy_on.contains(&node))
                    || restoring;
                if bad {
                    StepOutcome::failed("HTTP 503")
                } else {
                    StepOutcome::ok("200")
                }
            }
            StepKind::Probe => StepOutcome {
                ok: true,
                observations: vec![Observation {
                    check: "error rate".into(),
                    value: (!self.metrics_down).then_some(self.error_ratio),
                    samples: if self.metrics_down { 0 } else { self.samples },
                    error: self.metrics_down.then(|| "connection refused".to_string()),
                    series: vec![],
                    fault: self
                        .metrics_down
                        .then_some(glidepath_core::Fault::Unreachable),
                    baseline: self.baseline_ratio.map(|r| Group {
                        value: Some(r),
                        samples: self.samples,
                        ..Group::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            },
            StepKind::Task => {
                let name = step
                    .task
                    .as_ref()
                    .expect("a task step names its task")
                    .name
                    .clone();
                if self.task_infra_down.contains(&name) {
                    return infra(
                        "cannot connect to the database ($DATABASE_URL): connection refused",
                    );
                }
                match self.task_fails.get_mut(&name) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        StepOutcome::failed(format!("{name}: exit status 1"))
                    }
                    _ => StepOutcome {
                        captured: name
                            .starts_with("capture")
                            .then(|| format!("hash-of-{name}")),
                        ..StepOutcome::ok(format!("{name} done"))
                    },
                }
            }
            _ => StepOutcome::ok("done"),
        }
    }
}

pub(crate) struct Sim {
    pub(crate) spec: RolloutSpec,
    pub(crate) state: RunState,
    pub(crate) now: Millis,
    pub(crate) log: Vec<Event>,
}

impl Sim {
    pub(crate) fn new(spec: RolloutSpec) -> Self {
        let state = RunState::new(&spec);
        let mut sim = Sim {
            spec,
            state,
            now: 1_000_000,
            log: vec![],
        };
        let before = sim
            .state
            .nodes
            .keys()
            .map(|n| (n.clone(), Some("1".to_string())))
            .collect();
        sim.push(Event::Started {
            at: sim.now,
            before,
        });
        sim
    }
    pub(crate) fn push(&mut self, e: Event) {
        self.state.apply(&self.spec, &e);
        self.log.push(e);
    }
    /// Run until finished or until `stop` says so; returns the outcome.
    pub(crate) fn run(&mut self, world: &mut World, max_iters: usize) -> Option<Outcome> {
        for _ in 0..max_iters {
            if let Phase::Finished(o) = self.state.phase {
                return Some(o);
            }
            let d = decide(&self.spec, &self.state, self.now);
            if let Some(t) = d.transition {
                self.push(t);
                continue;
            }
            if d.steps.is_empty() {
                match d.wake_at {
                    Some(t) => self.now = t.max(self.now + 1),
                    None => return None, // waiting on a person
                }
                continue;
            }
            for s in &d.steps {
                self.push(Event::Intent {
                    at: self.now,
                    step: s.clone(),
                });
            }
            self.now += 10;
            for s in d.steps {
                let o = world.perform(&s);
                self.push(Event::Outcome {
                    at: self.now,
                    step: s,
                    outcome: o,
                });
            }
        }
        panic!(
            "no end after {max_iters} iterations: {:?}",
            self.state.phase
        )
    }
    /// One decide/perform round.
    pub(crate) fn tick(&mut self, world: &mut World) {
        let d = decide(&self.spec, &self.state, self.now);
        if let Some(t) = d.transition {
            return self.push(t);
        }
        if d.steps.is_empty() {
            self.now = d
                .wake_at
                .expect("not waiting on a person")
                .max(self.now + 1);
            return;
        }
        for s in &d.steps {
            self.push(Event::Intent {
                at: self.now,
                step: s.clone(),
            });
        }
        self.now += 10;
        for s in d.steps {
            let o = world.perform(&s);
            self.push(Event::Outcome {
                at: self.now,
                step: s,
                outcome: o,
            });
        }
    }
    /// When the run stopped resumable, and why (it must have).
    pub(crate) fn suspended(&self) -> (Millis, String) {
        self.log
            .iter()
            .find_map(|e| match e {
                Event::Suspended { at, reason } => Some((*at, reason.clone())),
                _ => None,
            })
            .expect("suspended")
    }

    pub(crate) fn statuses(&self) -> Vec<NodeStatus> {
        self.state.nodes.values().map(|n| n.status).collect()
    }
}

/// Tick until `f` holds (bounded).
pub(crate) fn tick_until(sim: &mut Sim, w: &mut World, what: &str, f: impl Fn(&Sim) -> bool) {
    for _ in 0..100_000 {
        if f(sim) {
            return;
        }
        sim.tick(w);
    }
    panic!("never reached: {what}");
}
