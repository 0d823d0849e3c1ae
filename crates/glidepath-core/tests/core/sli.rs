//! The SLI window: the table of verdicts, a breach on the first probe, a
//! breach held for the operator, and metrics outages (paused window,
//! rollback when the plan says so, bounded by the retry deadline).

use crate::sim::{spec, tick_until, Sim, World};
use glidepath_core::*;
use NodeStatus::*;

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
    let (at, why) = sim.suspended();
    assert!(at - from >= 60_000 && at - from < 62_000, "{}", at - from);
    assert!(why.contains("metrics source unreachable"), "{why}");
    assert_eq!(sim.state.phase, Phase::Rolling, "no verdict, no rollback");
}

/// A fleet-wide incident (canary and baseline both past the limit) pauses
/// the window instead of rolling back; when the fleet recovers, the window
/// goes on for its remaining time and the run completes.
#[test]
fn a_fleet_wide_incident_pauses_the_window_and_the_run_completes() {
    let mut sim = Sim::new(spec(4, 1, true));
    let mut w = World::new(4);
    w.baseline_ratio = Some(0.01);
    tick_until(&mut sim, &mut w, "two probes", |s| {
        s.state.window.as_ref().is_some_and(|x| x.probes >= 2)
    });
    w.error_ratio = 0.2;
    w.baseline_ratio = Some(0.25);
    // 30 s of incident: far past the 10 s window, and no rollback
    let until = sim.now + 30_000;
    while sim.now < until {
        sim.tick(&mut w);
        assert_eq!(sim.state.phase, Phase::Rolling);
    }
    let why = decide(&sim.spec, &sim.state, sim.now).waiting.unwrap();
    assert!(
        why.contains("fleet-wide incident") && why.contains("error rate"),
        "{why}"
    );
    // the figures of both groups are in the check's verdict
    let j = &sim.state.sli[0];
    assert!(
        j.incident && j.reason.contains("0.25") && j.reason.contains("0.2 "),
        "{}",
        j.reason
    );
    assert!(sim.state.windows_passed.is_empty());
    w.error_ratio = 0.01;
    w.baseline_ratio = Some(0.01);
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::Succeeded));
    assert!(sim
        .log
        .iter()
        .any(|e| matches!(e, Event::WindowClosed { passed: true, .. })));
}

/// The same incident with `on_incident = "rollback"` rolls the canary back,
/// saying why; a canary alone past the limit is still a breach.
#[test]
fn an_incident_rolls_back_when_the_plan_says_so_and_a_lone_canary_breaches() {
    let mut s = spec(4, 1, true);
    s.window.as_mut().unwrap().on_incident = IncidentPolicy::Rollback;
    let mut sim = Sim::new(s);
    let mut w = World::new(4);
    w.error_ratio = 0.2;
    w.baseline_ratio = Some(0.25);
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::RolledBack));
    let cause = sim.state.cause.clone().unwrap();
    assert!(
        cause.reason.contains("fleet-wide incident"),
        "{}",
        cause.reason
    );

    let mut sim = Sim::new(spec(4, 1, true));
    let mut w = World::new(4);
    w.error_ratio = 0.2;
    w.baseline_ratio = Some(0.01);
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::RolledBack));
    let cause = sim.state.cause.clone().unwrap();
    assert!(
        cause.reason.contains("error rate = 0.2 > max 0.05"),
        "{}",
        cause.reason
    );
}

/// An incident that does not end (it may be the canary's own doing: a
/// shared dependency it overloads) is bounded by the retry deadline like an
/// outage: the run stops resumable and says a rollback is the person's call.
#[test]
fn an_endless_incident_is_bounded_by_the_retry_deadline() {
    let mut sim = Sim::new(spec(3, 1, true));
    let mut w = World::new(3);
    w.baseline_ratio = Some(0.01);
    tick_until(&mut sim, &mut w, "two probes", |s| {
        s.state.window.as_ref().is_some_and(|x| x.probes >= 2)
    });
    w.error_ratio = 0.3;
    w.baseline_ratio = Some(0.3);
    let from = sim.now;
    assert_eq!(sim.run(&mut w, 100_000), None);
    let (at, why) = sim.suspended();
    assert!(at - from >= 60_000 && at - from < 62_000, "{}", at - from);
    assert!(
        why.contains("fleet-wide incident") && why.contains("glidepath rollback RUN"),
        "{why}"
    );
    assert_eq!(sim.state.phase, Phase::Rolling, "no verdict, no rollback");
}

fn with_windows(nodes: usize, bake: Option<u64>, watch: Option<u64>) -> RolloutSpec {
    let mut s = spec(nodes, 1, true);
    let w = s.window.as_mut().unwrap();
    w.bake_ms = bake;
    w.watch_ms = watch;
    s
}

/// A release that degrades only after the canary's window (a leak) is
/// caught by the watch after the last batch, and every node is reverted.
#[test]
fn the_watch_after_the_last_batch_reverts_every_node() {
    let mut sim = Sim::new(with_windows(4, None, Some(30_000)));
    let mut w = World::new(4);
    tick_until(&mut sim, &mut w, "the last batch", |s| s.state.group == 3);
    tick_until(&mut sim, &mut w, "the watch", |s| s.state.window.is_some());
    assert!(sim.state.nodes.values().all(|n| n.status == Updated));
    let why = sim
        .log
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Intent { step, .. } if step.kind == StepKind::StartWindow => {
                Some(step.reason.clone())
            }
            _ => None,
        })
        .unwrap();
    assert!(why.contains("watch the whole fleet for 30s"), "{why}");
    // the leak shows now
    w.error_ratio = 0.3;
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::RolledBack));
    assert_eq!(sim.statuses(), vec![RolledBack; 4], "every node reverted");
    assert!(w.current.values().all(|v| v == "1"));
    let cause = sim.state.cause.clone().unwrap();
    assert_eq!(cause.kind, CauseKind::Sli);
}

/// Without a leak, the run succeeds only after the watch; `promote` ends
/// the watch early.
#[test]
fn the_run_succeeds_after_the_watch_and_promote_ends_it_early() {
    let mut sim = Sim::new(with_windows(3, None, Some(60_000)));
    let mut w = World::new(3);
    tick_until(&mut sim, &mut w, "the watch", |s| {
        s.state.group == 2 && s.state.window.is_some()
    });
    let started = sim.now;
    assert!(awaiting_promotion(&sim.spec, &sim.state).is_some());
    tick_until(&mut sim, &mut w, "ten seconds of watch", |s| {
        s.now >= started + 10_000
    });
    assert!(!sim.state.is_finished());
    sim.push(Event::Promoted {
        at: sim.now,
        reason: "looks good".into(),
    });
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::Succeeded));
    assert!(sim.now < started + 60_000, "ended early");

    // and without promote, the whole watch
    let mut sim = Sim::new(with_windows(3, None, Some(60_000)));
    let mut w = World::new(3);
    assert_eq!(sim.run(&mut w, 100_000), Some(Outcome::Succeeded));
    let closed = sim
        .log
        .iter()
        .filter(|e| matches!(e, Event::WindowClosed { passed: true, .. }))
        .count();
    assert_eq!(closed, 2, "the canary's window and the watch");
}

/// `batch_bake`: after each batch the upgraded nodes are watched before the
/// next batch; a breach during a bake rolls back every upgraded node and
/// leaves the rest untouched.
#[test]
fn a_breach_during_a_bake_rolls_back_the_upgraded_nodes() {
    let mut sim = Sim::new(with_windows(4, Some(20_000), None));
    let mut w = World::new(4);
    tick_until(&mut sim, &mut w, "the bake after batch 1", |s| {
        s.state.group == 1 && s.state.window.is_some()
    });
    w.error_ratio = 0.3;
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::RolledBack));
    assert_eq!(
        sim.statuses(),
        vec![RolledBack, RolledBack, Untouched, Untouched]
    );
    // a clean run bakes after every batch but the last, then finishes
    let mut sim = Sim::new(with_windows(4, Some(20_000), None));
    let mut w = World::new(4);
    assert_eq!(sim.run(&mut w, 100_000), Some(Outcome::Succeeded));
    let windows = sim
        .log
        .iter()
        .filter(|e| matches!(e, Event::WindowClosed { passed: true, .. }))
        .count();
    assert_eq!(
        windows, 4,
        "canary, batches 1 and 2, and the last batch's bake"
    );
}

/// What the run waits for during a metrics outage is the same at every
/// moment, a probe (a retry) in flight or not: a `status` poll never sees
/// it vanish.
#[test]
fn a_metrics_outage_says_the_same_waiting_reason_with_a_probe_in_flight() {
    let mut sim = Sim::new(spec(3, 1, true));
    let mut w = World::new(3);
    while sim.state.window.as_ref().is_none_or(|x| x.probes < 3) {
        sim.tick(&mut w);
    }
    w.metrics_down = true;
    // the first failed probe starts the outage
    while sim.state.window.as_ref().unwrap().outage_since.is_none() {
        sim.tick(&mut w);
    }
    let mut seen = Vec::new();
    let until = sim.now + 5_000;
    while sim.now < until {
        let d = decide(&sim.spec, &sim.state, sim.now);
        seen.push((d.waiting.clone(), d.waits_on));
        if let Some(probe) = d.steps.iter().find(|s| s.kind == StepKind::Probe) {
            // the retry is in flight: the reason holds
            let mut inflight = sim.state.clone();
            inflight.apply(
                &sim.spec,
                &Event::Intent {
                    at: sim.now,
                    step: probe.clone(),
                },
            );
            let d = decide(&sim.spec, &inflight, sim.now + 5);
            seen.push((d.waiting, d.waits_on));
        }
        sim.tick(&mut w);
    }
    assert!(seen.len() > 5, "{seen:?}");
    assert!(
        seen.iter().all(|s| s == &seen[0]),
        "the reason is stable: {seen:?}"
    );
    assert!(seen[0]
        .0
        .as_deref()
        .is_some_and(|w| w.contains("metrics source unreachable since")));
    assert_eq!(seen[0].1, Some(WaitsOn::Infrastructure));
}

#[test]
fn a_pause_point_waits_on_a_person() {
    let mut s = spec(3, 1, true);
    s.pause_after = vec![0];
    let mut sim = Sim::new(s);
    let mut w = World::new(3);
    while sim.state.windows_passed.is_empty() {
        sim.tick(&mut w);
    }
    let d = decide(&sim.spec, &sim.state, sim.now);
    assert!(d.steps.is_empty() && d.transition.is_none());
    assert_eq!(d.waits_on, Some(WaitsOn::Person));
    assert!(d.waiting.unwrap().contains("paused after the canary"));
}
