//! Table-driven tests of the decision core: a simulated fleet answers every
//! step, time advances only when the core asks to wait.

use glidepath_core::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

fn names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("n{i}")).collect()
}

fn spec(nodes: usize, batch: usize, window: bool) -> RolloutSpec {
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
            }],
            rollback_on_breach: true,
            pause_on_metrics_error: true,
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
    }
}

/// The simulated world: per-node current release, drained flag, and knobs.
struct World {
    current: BTreeMap<String, String>,
    drained: BTreeMap<String, bool>,
    /// Health fails for this release.
    unhealthy: Option<String>,
    /// Error ratio reported for nodes on the new release, and samples.
    error_ratio: f64,
    samples: u64,
    /// Active connections reported while draining.
    active: f64,
    /// Health fails only on the back track (restore).
    restore_fails: bool,
    /// The metrics source is down.
    metrics_down: bool,
    /// The balancer does not answer (drain, check_drained, enable, post_check).
    balancer_down: bool,
    /// Nodes that died: their health fails, a peers check finds them down.
    dead: BTreeSet<String>,
    /// Restoring these nodes fails their health check.
    restore_fails_on: BTreeSet<String>,
    /// Scripted faults, one per step performed, cycling (empty: none).
    script: Vec<Fault>,
    pos: usize,
    /// (kind, version) of every step performed.
    performed: Vec<(StepKind, Option<String>)>,
}

/// A scripted fault for the next step performed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
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
    fn new(n: usize) -> Self {
        World {
            current: names(n).into_iter().map(|n| (n, "1".into())).collect(),
            drained: names(n).into_iter().map(|n| (n, false)).collect(),
            unhealthy: None,
            error_ratio: 0.0,
            samples: 100,
            active: 0.0,
            restore_fails: false,
            metrics_down: false,
            balancer_down: false,
            dead: BTreeSet::new(),
            restore_fails_on: BTreeSet::new(),
            script: vec![],
            pos: 0,
            performed: vec![],
        }
    }

    fn perform(&mut self, step: &Step) -> StepOutcome {
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
                let bad = self.unhealthy.as_ref() == Some(v) || restoring;
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
                }],
                ..Default::default()
            },
            _ => StepOutcome::ok("done"),
        }
    }
}

struct Sim {
    spec: RolloutSpec,
    state: RunState,
    now: Millis,
    log: Vec<Event>,
}

impl Sim {
    fn new(spec: RolloutSpec) -> Self {
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
    fn push(&mut self, e: Event) {
        self.state.apply(&self.spec, &e);
        self.log.push(e);
    }
    /// Run until finished or until `stop` says so; returns the outcome.
    fn run(&mut self, world: &mut World, max_iters: usize) -> Option<Outcome> {
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
    fn tick(&mut self, world: &mut World) {
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
    fn statuses(&self) -> Vec<NodeStatus> {
        self.state.nodes.values().map(|n| n.status).collect()
    }
}

use NodeStatus::*;

#[test]
fn good_release_reaches_every_node() {
    let mut sim = Sim::new(spec(4, 2, true));
    let mut w = World::new(4);
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::Succeeded));
    assert!(w.current.values().all(|v| v == "2"));
    assert!(w.drained.values().all(|d| !d));
    assert_eq!(sim.statuses(), vec![Updated; 4]);
    // the window was probed 10 times before any peer started
    let probes = sim
        .log
        .iter()
        .filter(|e| matches!(e, Event::Outcome { step, .. } if step.kind == StepKind::Probe))
        .count();
    assert_eq!(probes, 10);
}

#[test]
fn table_of_sli_outcomes() {
    // (error ratio, samples, policy, expected outcome, reason fragment)
    let cases = [
        (
            0.20,
            100,
            InconclusivePolicy::Wait,
            Outcome::RolledBack,
            "error rate = 0.2 > max 0.05 (100 samples)",
        ),
        (
            0.01,
            100,
            InconclusivePolicy::Wait,
            Outcome::Succeeded,
            "all 4 nodes run 2",
        ),
        (
            0.20,
            5,
            InconclusivePolicy::Wait,
            Outcome::RolledBack,
            "inconclusive at the end of the window",
        ),
        (
            0.20,
            5,
            InconclusivePolicy::Fail,
            Outcome::RolledBack,
            "5 samples, need at least 20",
        ),
        (
            0.20,
            5,
            InconclusivePolicy::Pass,
            Outcome::Succeeded,
            "all 4 nodes run 2",
        ),
        (
            0.05,
            20,
            InconclusivePolicy::Wait,
            Outcome::Succeeded,
            "all 4 nodes run 2",
        ),
    ];
    for (ratio, samples, policy, expected, fragment) in cases {
        let mut s = spec(4, 1, true);
        s.window.as_mut().unwrap().checks[0].on_inconclusive = policy;
        let mut sim = Sim::new(s);
        let mut w = World::new(4);
        w.error_ratio = ratio;
        w.samples = samples;
        let got = sim.run(&mut w, 10_000);
        assert_eq!(got, Some(expected), "case {ratio} {samples} {policy:?}");
        let reason = format!(
            "{} {}",
            sim.state.finished_reason.clone().unwrap(),
            sim.state
                .cause
                .as_ref()
                .map(|c| c.reason.clone())
                .unwrap_or_default()
        );
        assert!(
            reason.contains(fragment),
            "case {ratio} {samples} {policy:?}: {reason}"
        );
        if expected == Outcome::RolledBack {
            // peers never touched, canary back on 1, nobody drained
            assert_eq!(
                sim.statuses(),
                vec![RolledBack, Untouched, Untouched, Untouched]
            );
            assert!(w.current.values().all(|v| v == "1"));
            assert!(w.drained.values().all(|d| !d));
        }
    }
}

#[test]
fn breach_rolls_back_on_first_probe() {
    let mut sim = Sim::new(spec(3, 1, true));
    let mut w = World::new(3);
    w.error_ratio = 0.3;
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::RolledBack));
    let probes = sim
        .log
        .iter()
        .filter(|e| matches!(e, Event::Outcome { step, .. } if step.kind == StepKind::Probe))
        .count();
    assert_eq!(probes, 1);
    assert_eq!(sim.state.cause.as_ref().unwrap().kind, CauseKind::Sli);
}

#[test]
fn health_deadline_fails_canary_and_restores_it() {
    let mut sim = Sim::new(spec(3, 1, true));
    let mut w = World::new(3);
    w.unhealthy = Some("2".into());
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::RolledBack));
    let cause = sim.state.cause.clone().unwrap();
    assert_eq!(cause.kind, CauseKind::Health);
    assert_eq!(cause.node.as_deref(), Some("n1"));
    assert!(
        cause
            .reason
            .contains("not healthy within the 3.0s deadline: HTTP 503"),
        "{}",
        cause.reason
    );
    // health was retried every 250 ms for 3 s: 13 tries on 2, then 1 on the restored 1
    let tries = sim
        .log
        .iter()
        .filter(|e| matches!(e, Event::Outcome { step, .. } if step.kind == StepKind::CheckHealth))
        .count();
    assert_eq!(tries, 14);
    assert_eq!(w.current["n1"], "1");
}

#[test]
fn failed_restore_is_reported_and_kept_out_of_rotation() {
    let mut sim = Sim::new(spec(2, 1, false));
    let mut w = World::new(2);
    w.unhealthy = Some("2".into());
    w.restore_fails = true;
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::RollbackFailed));
    assert_eq!(sim.state.nodes["n1"].status, Failed);
    assert!(
        w.drained["n1"],
        "a node that failed to restore must stay out of rotation"
    );
}

#[test]
fn drain_timeout_policies() {
    for (policy, expected) in [
        (DrainTimeoutPolicy::Proceed, Outcome::Succeeded),
        (DrainTimeoutPolicy::Fail, Outcome::RolledBack),
    ] {
        let mut s = spec(2, 1, false);
        s.on_drain_timeout = policy;
        let mut sim = Sim::new(s);
        let mut w = World::new(2);
        w.active = 3.0;
        assert_eq!(sim.run(&mut w, 10_000), Some(expected), "{policy:?}");
        assert!(w.drained.values().all(|d| !d));
    }
}

#[test]
fn batches_respect_max_unavailable() {
    let mut s = spec(7, 3, false);
    s.max_unavailable = 2;
    let mut sim = Sim::new(s);
    let mut w = World::new(7);
    let mut max_out = 0;
    loop {
        if sim.state.is_finished() {
            break;
        }
        sim.tick(&mut w);
        let out = w.drained.values().filter(|d| **d).count();
        max_out = max_out.max(out);
    }
    assert_eq!(max_out, 2);
    assert_eq!(sim.statuses(), vec![Updated; 7]);
}

#[test]
fn pause_point_waits_for_promote() {
    let mut s = spec(3, 1, false);
    s.pause_after = vec![0];
    let mut sim = Sim::new(s);
    let mut w = World::new(3);
    assert_eq!(sim.run(&mut w, 10_000), None);
    let d = decide(&sim.spec, &sim.state, sim.now);
    assert!(d.waiting.unwrap().contains("paused after the canary"));
    assert_eq!(sim.statuses(), vec![Updated, Untouched, Untouched]);
    sim.push(Event::Promoted {
        at: sim.now,
        reason: "looks good".into(),
    });
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::Succeeded));
}

#[test]
fn abort_finishes_step_in_flight_and_restores_half_deployed_nodes() {
    let mut sim = Sim::new(spec(4, 3, false));
    let mut w = World::new(4);
    // run until the batch of 3 has a node switched but not yet healthy
    while !sim
        .state
        .nodes
        .values()
        .any(|n| n.switched && !n.healthy_new && n.track == Track::Forward && sim.state.group == 1)
    {
        sim.tick(&mut w);
    }
    sim.push(Event::AbortRequested {
        at: sim.now,
        reason: "operator".into(),
    });
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::Aborted));
    assert!(w.drained.values().all(|d| !d), "no node left drained");
    for (n, st) in &sim.state.nodes {
        match st.status {
            Updated => assert_eq!(w.current[n], "2"),
            _ => assert_eq!(w.current[n], "1", "{n} is not half-deployed"),
        }
    }
}

#[test]
fn operator_rollback_after_success_restores_everything() {
    let mut sim = Sim::new(spec(3, 1, false));
    let mut w = World::new(3);
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::Succeeded));
    sim.push(Event::RollbackRequested {
        at: sim.now,
        reason: "bad data".into(),
    });
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::RolledBack));
    assert!(w.current.values().all(|v| v == "1"));
}

#[test]
fn replay_after_crash_repeats_only_the_step_in_flight() {
    let mut sim = Sim::new(spec(3, 1, true));
    let mut w = World::new(3);
    // stop with a restart in flight (intent journaled, no outcome)
    loop {
        let d = decide(&sim.spec, &sim.state, sim.now);
        if let Some(t) = d.transition {
            sim.push(t);
            continue;
        }
        if d.steps.is_empty() {
            sim.now = d.wake_at.unwrap();
            continue;
        }
        let s = d.steps[0].clone();
        sim.push(Event::Intent {
            at: sim.now,
            step: s.clone(),
        });
        if s.kind == StepKind::Restart {
            break;
        }
        sim.now += 10;
        let o = w.perform(&s);
        sim.push(Event::Outcome {
            at: sim.now,
            step: s,
            outcome: o,
        });
    }
    // a new process replays the journal
    let mut replayed = RunState::replay(&sim.spec, &sim.log);
    assert_eq!(replayed, sim.state);
    let in_flight: Vec<Step> = vec![];
    replayed.apply(
        &sim.spec,
        &Event::Interrupted {
            at: sim.now,
            in_flight,
        },
    );
    let d = decide(&sim.spec, &replayed, sim.now);
    assert_eq!(d.steps.len(), 1);
    assert_eq!(d.steps[0].kind, StepKind::Restart);
    sim.state = replayed;
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::Succeeded));
}

/// A node drained but not yet switched when the process stopped is drained
/// again on resume: a runner whose journal failed puts such nodes back into
/// rotation without being able to record it, so a resume must not stage and
/// switch a node that may be serving.
#[test]
fn replay_drains_again_a_node_drained_but_not_switched() {
    let mut sim = Sim::new(spec(3, 1, false));
    let mut w = World::new(3);
    loop {
        let d = decide(&sim.spec, &sim.state, sim.now);
        if let Some(t) = d.transition {
            sim.push(t);
            continue;
        }
        if d.steps.is_empty() {
            sim.now = d.wake_at.unwrap();
            continue;
        }
        let s = d.steps[0].clone();
        if s.kind == StepKind::Stage {
            break; // drained and checked, not staged
        }
        sim.push(Event::Intent {
            at: sim.now,
            step: s.clone(),
        });
        sim.now += 10;
        let o = w.perform(&s);
        sim.push(Event::Outcome {
            at: sim.now,
            step: s,
            outcome: o,
        });
    }
    let mut replayed = RunState::replay(&sim.spec, &sim.log);
    replayed.apply(
        &sim.spec,
        &Event::Interrupted {
            at: sim.now,
            in_flight: vec![],
        },
    );
    let d = decide(&sim.spec, &replayed, sim.now);
    assert_eq!(d.steps.len(), 1);
    assert_eq!(d.steps[0].kind, StepKind::Drain);
    sim.state = replayed;
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::Succeeded));
}

#[test]
fn sli_breach_without_auto_rollback_holds_for_the_operator() {
    let mut s = spec(3, 1, true);
    s.window.as_mut().unwrap().rollback_on_breach = false;
    let mut sim = Sim::new(s);
    let mut w = World::new(3);
    w.error_ratio = 0.5;
    assert_eq!(sim.run(&mut w, 10_000), None);
    let d = decide(&sim.spec, &sim.state, sim.now);
    assert!(d.waiting.unwrap().contains("automatic rollback is off"));
    sim.push(Event::RollbackRequested {
        at: sim.now,
        reason: "confirmed bad".into(),
    });
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::RolledBack));
}

/// Crash in the middle of restoring: the resumed run continues the restore
/// where it was (restart next), it does not just re-enable the node.
#[test]
fn crash_during_rollback_resumes_the_restore_in_place() {
    let mut sim = Sim::new(spec(3, 1, true));
    let mut w = World::new(3);
    w.error_ratio = 0.5;
    // run until the back-switch outcome is journaled
    while !sim.log.iter().any(|e| matches!(e, Event::Outcome { step, .. } if step.kind == StepKind::Switch && step.version.as_deref() == Some("1"))) {
        sim.tick(&mut w);
    }
    let mut replayed = RunState::replay(&sim.spec, &sim.log);
    replayed.apply(
        &sim.spec,
        &Event::Interrupted {
            at: sim.now,
            in_flight: vec![],
        },
    );
    let d = decide(&sim.spec, &replayed, sim.now);
    assert_eq!(d.steps.len(), 1);
    assert_eq!(d.steps[0].kind, StepKind::Restart);
    assert_eq!(d.steps[0].version.as_deref(), Some("1"));
}

/// A forward switch in flight when both the crash and a rollback happen is
/// assumed done: the node is restored, never just re-enabled on a maybe-new release.
#[test]
fn uncertain_switch_is_assumed_done_when_turning_back() {
    let mut sim = Sim::new(spec(3, 1, false));
    let mut w = World::new(3);
    loop {
        let d = decide(&sim.spec, &sim.state, sim.now);
        if let Some(s) = d.steps.first().filter(|s| s.kind == StepKind::Switch) {
            let s = s.clone();
            sim.push(Event::Intent {
                at: sim.now,
                step: s.clone(),
            });
            w.perform(&s); // it happened, but the outcome is lost
            break;
        }
        sim.tick(&mut w);
    }
    sim.push(Event::RollbackRequested {
        at: sim.now,
        reason: "operator".into(),
    });
    let in_flight = vec![];
    sim.push(Event::Interrupted {
        at: sim.now,
        in_flight,
    });
    let mut replayed = RunState::replay(&sim.spec, &sim.log[..sim.log.len() - 1]);
    let step = match &sim.log[sim.log.len() - 3] {
        Event::Intent { step, .. } => step.clone(),
        e => panic!("{e:?}"),
    };
    replayed.apply(
        &sim.spec,
        &Event::Interrupted {
            at: sim.now,
            in_flight: vec![step],
        },
    );
    sim.state = replayed;
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::RolledBack));
    assert_eq!(w.current["n1"], "1");
    assert!(!w.drained["n1"]);
}

#[test]
fn metrics_outage_pauses_the_window_instead_of_rolling_back() {
    let mut sim = Sim::new(spec(3, 1, true));
    let mut w = World::new(3);
    while sim.state.window.as_ref().is_none_or(|x| x.probes < 3) {
        sim.tick(&mut w);
    }
    let started = sim.state.window.as_ref().unwrap().started;
    w.metrics_down = true;
    // 30 s of outage: far past the 10 s window, and no rollback
    let until = sim.now + 30_000;
    while sim.now < until {
        sim.tick(&mut w);
        assert_eq!(sim.state.phase, Phase::Rolling);
    }
    let d = decide(&sim.spec, &sim.state, sim.now);
    assert!(
        d.waiting
            .unwrap()
            .contains("metrics source unreachable since"),
        "the run says why it waits"
    );
    assert!(
        sim.state.nodes["n2"].status == NodeStatus::Untouched,
        "peers wait"
    );
    w.metrics_down = false;
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::Succeeded));
    // the window closed only after 10 s of *observed* time
    let closed = sim
        .log
        .iter()
        .find_map(|e| match e {
            Event::WindowClosed { at, .. } => Some(*at),
            _ => None,
        })
        .unwrap();
    assert!(
        closed >= started + 10_000 + 29_000,
        "pause time is added to the window: closed {}ms after the start",
        closed - started
    );
}

#[test]
fn metrics_outage_rolls_back_when_the_plan_says_so() {
    let mut s = spec(3, 1, true);
    s.window.as_mut().unwrap().pause_on_metrics_error = false;
    let mut sim = Sim::new(s);
    let mut w = World::new(3);
    w.metrics_down = true;
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::RolledBack));
    assert_eq!(sim.state.cause.as_ref().unwrap().kind, CauseKind::Infra);
}

proptest! {
    #[test]
    fn groups_cover_every_node_once(n in 1usize..60, canary in 0usize..3, batch in 1usize..20, pct in 1u8..=100, use_pct: bool) {
        let all = names(n);
        let canary: Vec<String> = all.iter().take(canary.min(n)).cloned().collect();
        let size = if use_pct { BatchSize::Percent(pct) } else { BatchSize::Count(batch) };
        let groups = plan_groups(&all, &canary, size);
        let flat: Vec<String> = groups.iter().flatten().cloned().collect();
        let mut sorted = flat.clone();
        sorted.sort();
        let mut expect = all.clone();
        expect.sort();
        prop_assert_eq!(sorted, expect);
        let peers = n - canary.len();
        let per = size.resolve(peers);
        let skip = usize::from(!canary.is_empty());
        for g in groups.iter().skip(skip) {
            prop_assert!(!g.is_empty() && g.len() <= per);
        }
        if peers > 0 {
            prop_assert_eq!(groups.len() - skip, peers.div_ceil(per));
        }
    }
}

/// Tick until `f` holds (bounded).
fn tick_until(sim: &mut Sim, w: &mut World, what: &str, f: impl Fn(&Sim) -> bool) {
    for _ in 0..100_000 {
        if f(sim) {
            return;
        }
        sim.tick(w);
    }
    panic!("never reached: {what}");
}

#[test]
fn balancer_outage_mid_batch_pauses_and_continues_when_it_answers() {
    let mut sim = Sim::new(spec(4, 2, false));
    let mut w = World::new(4);
    tick_until(&mut sim, &mut w, "batch 1", |s| s.state.group == 1);
    w.balancer_down = true;
    let until = sim.now + 20_000;
    while sim.now < until {
        sim.tick(&mut w);
        assert_eq!(sim.state.phase, Phase::Rolling, "an outage is no verdict");
    }
    assert!(!sim.statuses().contains(&Failed));
    let d = decide(&sim.spec, &sim.state, sim.now);
    let why = d.waiting.expect("the run says why it waits");
    assert!(
        why.contains("infrastructure unreachable")
            && why.contains("drain failed: HAProxy runtime API: connection refused")
            && why.contains("for up to 60s"),
        "{why}"
    );
    // stable: the same text a second later (status shows it; the executor prints it once)
    assert_eq!(
        decide(&sim.spec, &sim.state, sim.now + 1_000).waiting,
        Some(why)
    );
    // retried with backoff (200 ms doubling to 1 s): about 20 tries in 20 s, not 100
    let tries = sim.state.nodes["n2"].outage.as_ref().unwrap().tries;
    assert!((15..=25).contains(&tries), "{tries} tries");
    w.balancer_down = false;
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::Succeeded));
    assert!(w.drained.values().all(|d| !d));
}

#[test]
fn balancer_outage_past_the_deadline_suspends_resumable_then_resume_finishes() {
    let mut sim = Sim::new(spec(4, 2, false));
    let mut w = World::new(4);
    tick_until(&mut sim, &mut w, "n2 switched", |s| {
        s.state.nodes["n2"].switched
    });
    w.balancer_down = true;
    // nothing waits on a person until the deadline: the run stops by itself
    assert_eq!(sim.run(&mut w, 100_000), None);
    let at = sim
        .log
        .iter()
        .find_map(|e| match e {
            Event::Suspended { at, reason } => Some((*at, reason.clone())),
            _ => None,
        })
        .expect("suspended");
    assert!(at.1.contains("past the retry deadline of 60s"), "{}", at.1);
    assert!(sim.state.in_flight().is_empty() && sim.state.run_step_in_flight.is_none());
    assert!(!sim.state.is_finished(), "resumable");
    assert!(!sim.statuses().contains(&Failed));
    assert!(decide(&sim.spec, &sim.state, sim.now + 60_000)
        .waiting
        .unwrap()
        .contains("`glidepath resume RUN`"));
    // resume (a new process) once the balancer answers
    w.balancer_down = false;
    sim.push(Event::Interrupted {
        at: sim.now,
        in_flight: vec![],
    });
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::Succeeded));
    assert!(w.current.values().all(|v| v == "2"));
    assert!(w.drained.values().all(|d| !d));
}

#[test]
fn rollback_waits_out_a_balancer_outage_instead_of_giving_up() {
    let mut s = spec(6, 2, false);
    s.max_unavailable = 3;
    let mut sim = Sim::new(s);
    let mut w = World::new(6);
    tick_until(&mut sim, &mut w, "batch 1 restarting", |s| {
        s.state.group == 1 && s.state.nodes["n2"].switched
    });
    sim.push(Event::RollbackRequested {
        at: sim.now,
        reason: "operator".into(),
    });
    w.balancer_down = true;
    let until = sim.now + 10_000;
    while sim.now < until {
        sim.tick(&mut w);
    }
    assert_eq!(sim.state.phase, Phase::RollingBack, "still restoring");
    assert!(!sim.statuses().contains(&Failed), "an outage fails no node");
    w.balancer_down = false;
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::RolledBack));
    assert!(w.current.values().all(|v| v == "1"));
    assert!(w.drained.values().all(|d| !d));
}

#[test]
fn failed_restores_do_not_block_the_canary_restore() {
    // batch of 2 with max_unavailable 2: both fail to restore and stay out;
    // the canary's restore drain must still be scheduled (it used to deadlock).
    let mut sim = Sim::new(spec(5, 2, false));
    let mut w = World::new(5);
    tick_until(&mut sim, &mut w, "batch 1", |s| s.state.group == 1);
    w.unhealthy = Some("2".into());
    w.restore_fails_on = ["n2", "n3"].map(String::from).into();
    assert_eq!(sim.run(&mut w, 100_000), Some(Outcome::RollbackFailed));
    assert_eq!(sim.state.nodes["n1"].status, RolledBack);
    assert_eq!(w.current["n1"], "1");
    assert!(!w.drained["n1"]);
    assert!(w.drained["n2"] && w.drained["n3"], "kept out for a human");
    let reason = sim.state.finished_reason.clone().unwrap();
    assert!(
        reason.contains("restoring n2, n3 failed; kept out of rotation"),
        "{reason}"
    );
}

#[test]
fn a_failed_restore_in_rotation_is_not_called_kept_out() {
    let mut sim = Sim::new(spec(2, 1, false));
    let mut w = World::new(2);
    w.unhealthy = Some("2".into());
    // the restore's post-check fails after the node is back in rotation
    tick_until(&mut sim, &mut w, "canary restoring, enabled", |s| {
        s.state.nodes["n1"].track == Track::Back
            && s.state.nodes["n1"].next_step() == Some(StepKind::PostCheck)
    });
    w.dead.insert("n1".into());
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::RollbackFailed));
    let n1 = &sim.state.nodes["n1"];
    assert_eq!(n1.status, Failed);
    assert!(!n1.out_of_rotation && !w.drained["n1"]);
    let reason = sim.state.finished_reason.clone().unwrap();
    assert!(
        !reason.contains("kept out of rotation for a human")
            && reason.contains("no node left out of rotation")
            && reason.contains("restoring n1 failed but it is in rotation"),
        "{reason}"
    );
}

#[test]
fn post_check_knows_the_version_it_checks() {
    let mut sim = Sim::new(spec(2, 1, false));
    let mut w = World::new(2);
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::Succeeded));
    let post: Vec<&Option<String>> = w
        .performed
        .iter()
        .filter(|(k, _)| *k == StepKind::PostCheck)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(post, vec![&Some("2".to_string()); 2]);
    // and on the way back, the last-known-good release
    sim.push(Event::RollbackRequested {
        at: sim.now,
        reason: "operator".into(),
    });
    w.performed.clear();
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::RolledBack));
    assert!(w
        .performed
        .iter()
        .filter(|(k, _)| *k == StepKind::PostCheck)
        .all(|(_, v)| v.as_deref() == Some("1")));
    // what was observed: each node last seen serving 1 again
    assert!(sim
        .state
        .nodes
        .values()
        .all(|n| n.seen.as_deref() == Some("1")));
}

#[test]
fn a_peer_found_down_counts_against_max_unavailable() {
    // 6 nodes, batches of 2, max_unavailable 2: [n1] [n2 n3] [n4 n5] [n6]
    let mut sim = Sim::new(spec(6, 2, false));
    let mut w = World::new(6);
    tick_until(&mut sim, &mut w, "canary done", |s| {
        s.state.nodes["n1"].status == Updated
    });
    w.dead.insert("n6".into());
    let mut max_out = 0;
    tick_until(&mut sim, &mut w, "batch 1 done", |s| {
        s.state.nodes["n3"].status == Updated
    });
    // replay the batch: never more than 2 out, counting the dead peer
    let mut drained = BTreeSet::new();
    for e in &sim.log {
        if let Event::Outcome { step, outcome, .. } = e {
            let n = step.node.clone().unwrap_or_default();
            match step.kind {
                StepKind::Drain if outcome.ok => drop(drained.insert(n)),
                StepKind::Enable if outcome.ok => drop(drained.remove(&n)),
                _ => {}
            }
            max_out = max_out.max(drained.len() + usize::from(sim.state.group >= 1));
        }
    }
    assert_eq!(max_out, 2, "one drained at a time while n6 is down");
    assert_eq!(sim.state.down.keys().collect::<Vec<_>>(), ["n6"]);
    // a second peer dies: no room left, the run must not go on (nor succeed)
    w.dead.insert("n5".into());
    assert_eq!(sim.run(&mut w, 100_000), None);
    assert!(
        !sim.log.iter().any(|e| matches!(e, Event::Finished { .. })),
        "no success with 3 of 6 out against a limit of 2"
    );
    let why = sim
        .log
        .iter()
        .find_map(|e| match e {
            Event::Suspended { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .expect("stopped at the deadline, resumable");
    assert!(
        why.contains("2 node(s) found down") && why.contains("n5"),
        "{why}"
    );
    assert_eq!(w.current["n4"], "1", "batch 2 never started");
    // both come back: resume finishes
    w.dead.clear();
    sim.push(Event::Interrupted {
        at: sim.now,
        in_flight: vec![],
    });
    assert_eq!(sim.run(&mut w, 100_000), Some(Outcome::Succeeded));
    assert!(sim.state.down.is_empty());
}

/// An operator action or a crash injected at a decide round.
#[derive(Debug, Clone, Copy)]
enum Op {
    Abort,
    Rollback,
    Crash,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Any sequence of step outcomes (ok, failed, infrastructure faults,
    /// timeouts, slow polls), operator aborts/rollbacks and crashes: every
    /// run stops within a bounded number of decide rounds, either finished
    /// or suspended (resumable); a resumed run on a healed fleet finishes;
    /// and a finished run leaves out of rotation only nodes reported failed.
    #[test]
    fn every_run_reaches_a_terminal_state(
        nodes in 2usize..7,
        batch in 1usize..4,
        max_unavailable in 1usize..4,
        window in any::<bool>(),
        script in prop::collection::vec(
            prop_oneof![
                6 => Just(Fault::Ok),
                1 => Just(Fault::Fail),
                2 => Just(Fault::Infra),
                1 => Just(Fault::Timeout),
                1 => Just(Fault::Slow),
            ],
            0..40,
        ),
        ops in prop::collection::vec((0usize..400, prop_oneof![Just(Op::Abort), Just(Op::Rollback), Just(Op::Crash)]), 0..3),
    ) {
        let mut s = spec(nodes, batch, window);
        s.max_unavailable = max_unavailable;
        let mut sim = Sim::new(s);
        let mut w = World::new(nodes);
        // infrastructure faults alone are never a verdict on any node
        let only_infra = script
            .iter()
            .all(|f| matches!(f, Fault::Ok | Fault::Infra | Fault::Timeout));
        w.script = script;
        let bound = 20_000;
        let mut rounds = 0;
        let mut resumed = false;
        loop {
            rounds += 1;
            prop_assert!(rounds < bound, "no terminal state after {bound} rounds: {:?}", sim.state.phase);
            if sim.state.is_finished() {
                break;
            }
            if sim.state.suspended.is_some() {
                // a suspended run: the process stopped with nothing in flight
                prop_assert!(sim.state.in_flight().is_empty());
                prop_assert!(!resumed, "suspended twice although the fleet healed");
                resumed = true;
                w.script.clear();
                sim.push(Event::Interrupted { at: sim.now + 1_000, in_flight: vec![] });
                continue;
            }
            for (at, op) in &ops {
                if *at == rounds {
                    match op {
                        Op::Abort => sim.push(Event::AbortRequested { at: sim.now, reason: "op".into() }),
                        Op::Rollback => sim.push(Event::RollbackRequested { at: sim.now, reason: "op".into() }),
                        Op::Crash => {}
                    }
                }
            }
            let d = decide(&sim.spec, &sim.state, sim.now);
            if let Some(t) = d.transition {
                sim.push(t);
                continue;
            }
            if d.steps.is_empty() {
                match d.wake_at {
                    Some(t) => sim.now = t.max(sim.now + 1),
                    None => {
                        // waits on a person (a pause or a held breach): promote
                        prop_assert!(d.waiting.is_some());
                        sim.push(Event::Promoted { at: sim.now, reason: "op".into() });
                    }
                }
                continue;
            }
            for st in &d.steps {
                sim.push(Event::Intent { at: sim.now, step: st.clone() });
            }
            sim.now += 10;
            if ops.iter().any(|(at, op)| *at == rounds && matches!(op, Op::Crash)) {
                // the process dies with the steps in flight: they may or may not have happened
                for st in &d.steps {
                    if rounds % 2 == 0 { let _ = w.perform(st); }
                }
                sim.push(Event::Interrupted { at: sim.now, in_flight: d.steps.clone() });
                continue;
            }
            for st in d.steps {
                let o = w.perform(&st);
                sim.push(Event::Outcome { at: sim.now, step: st, outcome: o });
            }
        }
        // finished: only failed nodes may be out of rotation
        for (n, st) in &sim.state.nodes {
            if st.status != Failed {
                prop_assert!(!st.out_of_rotation, "{n} left out of rotation: {st:?}");
            }
        }
        if sim.state.phase == Phase::Finished(Outcome::Succeeded) {
            prop_assert!(sim.statuses().iter().all(|s| *s == Updated));
        }
        if only_infra {
            prop_assert!(!sim.statuses().contains(&Failed), "{:?}", sim.state.finished_reason);
            prop_assert!(sim.state.cause.as_ref().is_none_or(|c| c.kind == CauseKind::Operator), "{:?}", sim.state.cause);
        }
    }
}

#[test]
fn a_metrics_outage_is_bounded_by_the_retry_deadline() {
    let mut sim = Sim::new(spec(3, 1, true));
    let mut w = World::new(3);
    tick_until(&mut sim, &mut w, "two probes", |s| {
        s.state.window.as_ref().is_some_and(|x| x.probes >= 2)
    });
    w.metrics_down = true;
    let from = sim.now;
    assert_eq!(sim.run(&mut w, 100_000), None);
    let (at, why) = sim
        .log
        .iter()
        .find_map(|e| match e {
            Event::Suspended { at, reason } => Some((*at, reason.clone())),
            _ => None,
        })
        .expect("suspended");
    assert!(at - from >= 60_000 && at - from < 62_000, "{}", at - from);
    assert!(why.contains("metrics source unreachable"), "{why}");
    assert_eq!(sim.state.phase, Phase::Rolling, "no verdict, no rollback");
}
