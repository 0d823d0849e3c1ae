//! Crash and resume: replaying the journal repeats only the step in flight,
//! drains again a drained but unswitched node, resumes a restore in place,
//! and assumes an uncertain switch happened.

use crate::sim::{spec, Sim, World};
use glidepath_core::*;

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
