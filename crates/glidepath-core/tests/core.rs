//! Table-driven tests of the decision core: a simulated fleet answers every
//! step, time advances only when the core asks to wait.

use glidepath_core::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

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
        }
    }

    fn perform(&mut self, step: &Step) -> StepOutcome {
        let node = step.node.clone().unwrap_or_default();
        match step.kind {
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
                let bad = self.unhealthy.as_ref() == Some(v) || (self.restore_fails && v == "1");
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
