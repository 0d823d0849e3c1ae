//! The failure budget (`max_failed_nodes`): a batch node that fails within
//! it is restored on its own and the run goes on; one failure more rolls
//! every node back, naming them all; a canary failure always rolls back; a
//! budgeted node whose restore fails is kept out and takes a place under
//! `max_unavailable`; a crash mid-restore resumes in place.

use crate::sim::{spec, tick_until, Sim, World};
use glidepath_core::*;
use NodeStatus::*;

fn budget(nodes: usize, batch: usize, max_failed: usize) -> RolloutSpec {
    let mut s = spec(nodes, batch, false);
    s.max_failed_nodes = max_failed;
    s.max_unavailable = 1;
    s
}

fn set(nodes: &[&str]) -> std::collections::BTreeSet<String> {
    nodes.iter().map(|n| n.to_string()).collect()
}

/// Index in the log of the first (or last) event matching `f`.
fn first(sim: &Sim, f: impl Fn(&Event) -> bool) -> usize {
    sim.log.iter().position(f).expect("event in the log")
}

fn last(sim: &Sim, f: impl Fn(&Event) -> bool) -> usize {
    sim.log.iter().rposition(f).expect("event in the log")
}

fn intent(e: &Event, node: &str, kind: StepKind, version: &str) -> bool {
    matches!(e, Event::Intent { step, .. } if step.node.as_deref() == Some(node)
        && step.kind == kind && step.version.as_deref().is_none_or(|v| v == version))
}

#[test]
fn within_the_budget_the_node_is_restored_and_the_run_goes_on() {
    // [n1] [n2 n3] [n4 n5], max_unavailable 1
    let mut sim = Sim::new(budget(5, 2, 1));
    let mut w = World::new(5);
    w.unhealthy_on = set(&["n2"]);
    assert_eq!(sim.run(&mut w, 100_000), Some(Outcome::Succeeded));
    let n2 = &sim.state.nodes["n2"];
    assert_eq!(n2.status, RolledBack);
    assert!(
        n2.failed_forward
            .as_deref()
            .is_some_and(|r| r.contains("n2 not healthy within the 3.0s deadline")),
        "{n2:?}"
    );
    assert_eq!(w.current["n2"], "1");
    assert!(!w.drained["n2"], "back in rotation");
    for n in ["n1", "n3", "n4", "n5"] {
        assert_eq!(sim.state.nodes[n].status, Updated, "{n}");
        assert_eq!(w.current[n], "2");
    }
    assert_eq!(sim.state.cause, None);
    let reason = sim.state.finished_reason.clone().unwrap();
    assert!(
        reason.starts_with("4 of 5 nodes run 2; 1 failed within max_failed_nodes = 1: n2 (n2 not healthy within the 3.0s deadline: HTTP 503; restored to 1)"),
        "{reason}"
    );
    // not tried again: one switch to 2 only
    let switches = sim
        .log
        .iter()
        .filter(|e| intent(e, "n2", StepKind::Switch, "2"))
        .count();
    assert_eq!(switches, 1);
    // it held its place under max_unavailable = 1 while out of rotation:
    // n3 was drained only once n2 was back in rotation
    let n2_back = last(&sim, |e| intent(e, "n2", StepKind::Enable, "1"));
    let n3_drain = first(&sim, |e| intent(e, "n3", StepKind::Drain, "2"));
    assert!(
        n3_drain > n2_back,
        "n3 drained at {n3_drain}, n2 enabled at {n2_back}"
    );
    // an SLI window after these groups watches the upgraded nodes only: n2
    // runs the old release
    assert_eq!(sim.state.upgraded(&sim.spec, 1), ["n1", "n3"]);
    assert_eq!(sim.state.upgraded(&sim.spec, 2), ["n1", "n3", "n4", "n5"]);
}

/// With a bake after each batch, the window after batch 1 judges the
/// upgraded nodes without the failed one: a compare check expects their
/// share among the nodes that take part (the failed one does not).
#[test]
fn a_failed_node_takes_no_part_in_the_windows() {
    let mut s = budget(5, 2, 1);
    let mut w = spec(5, 2, true).window.unwrap();
    w.bake_ms = Some(5_000);
    let cmp = CompareSpec {
        tolerance: 0.1,
        alpha: 0.05,
        expected_share: 0.2,
        quantile: None,
    };
    w.checks[0].compare = Some(cmp.clone());
    let check = w.checks[0].clone();
    s.window = Some(w);
    let mut sim = Sim::new(s);
    let mut world = World::new(5);
    world.unhealthy_on = set(&["n2"]);
    tick_until(&mut sim, &mut world, "the bake after batch 1", |s| {
        s.state.group == 1 && s.state.window.is_some()
    });
    assert!(sim.state.nodes["n2"].failed_forward.is_some());
    // n1 and n3 upgraded, of the 4 nodes that take part: 1/2, not 2/5
    let want = CompareState::new(&check, &cmp).with_share(0.5);
    assert_eq!(sim.state.window.as_ref().unwrap().compare, [want]);
}

/// A node that failed before it left rotation (its drain refused) changed
/// nothing: it counts against the budget, is never tried again, and the
/// run succeeds around it.
#[test]
fn a_node_whose_drain_fails_is_not_tried_again() {
    // [n1] [n2 n3] [n4]: n2 fails while n3 still has its turn to come
    let mut sim = Sim::new(budget(4, 2, 1));
    let mut w = World::new(4);
    w.drain_fails_on = set(&["n2"]);
    assert_eq!(sim.run(&mut w, 100_000), Some(Outcome::Succeeded));
    let drains = sim
        .log
        .iter()
        .filter(|e| intent(e, "n2", StepKind::Drain, "2"))
        .count();
    assert_eq!(drains, 1, "not tried again");
    assert_eq!(sim.statuses(), [Updated, Untouched, Updated, Updated]);
    assert_eq!(w.current["n2"], "1");
    let reason = sim.state.finished_reason.clone().unwrap();
    assert!(
        reason.starts_with("3 of 4 nodes run 2; 1 failed within max_failed_nodes = 1: n2 (n2: drain failed: server is in maintenance by another tool; still on 1, never switched)"),
        "{reason}"
    );
}

#[test]
fn one_failure_past_the_budget_rolls_back_every_node_and_names_them() {
    let mut sim = Sim::new(budget(5, 1, 1));
    let mut w = World::new(5);
    w.unhealthy_on = set(&["n3", "n4"]);
    assert_eq!(sim.run(&mut w, 100_000), Some(Outcome::RolledBack));
    let cause = sim.state.cause.clone().unwrap();
    assert_eq!(cause.kind, CauseKind::Health);
    assert_eq!(cause.node.as_deref(), Some("n4"));
    assert!(
        cause.reason.starts_with("n4 not healthy within the 3.0s deadline: HTTP 503; max_failed_nodes = 1 is spent, 1 node(s) failed before: n3 (n3 not healthy within the 3.0s deadline"),
        "{}",
        cause.reason
    );
    for n in ["n1", "n2", "n3", "n4", "n5"] {
        assert_eq!(w.current[n], "1", "{n} restored");
        assert!(!w.drained[n], "{n} in rotation");
    }
    assert_eq!(
        sim.statuses(),
        [RolledBack, RolledBack, RolledBack, RolledBack, Untouched]
    );
}

#[test]
fn a_canary_failure_rolls_back_whatever_the_budget() {
    let mut sim = Sim::new(budget(4, 1, 3));
    let mut w = World::new(4);
    w.unhealthy_on = set(&["n1"]);
    assert_eq!(sim.run(&mut w, 100_000), Some(Outcome::RolledBack));
    let cause = sim.state.cause.clone().unwrap();
    assert_eq!(cause.node.as_deref(), Some("n1"));
    assert!(
        cause
            .reason
            .ends_with("(a canary failure rolls back whatever max_failed_nodes = 3 allows)"),
        "{}",
        cause.reason
    );
    assert!(sim.state.nodes["n1"].failed_forward.is_none());
    assert_eq!(w.current["n1"], "1");
    assert_eq!(
        sim.statuses(),
        [RolledBack, Untouched, Untouched, Untouched]
    );
}

#[test]
fn without_a_budget_a_batch_failure_rolls_back() {
    let mut sim = Sim::new(budget(4, 1, 0));
    let mut w = World::new(4);
    w.unhealthy_on = set(&["n3"]);
    assert_eq!(sim.run(&mut w, 100_000), Some(Outcome::RolledBack));
    let cause = sim.state.cause.clone().unwrap();
    assert_eq!(cause.node.as_deref(), Some("n3"));
    assert!(
        !cause.reason.contains("max_failed_nodes"),
        "{}",
        cause.reason
    );
}

#[test]
fn a_percentage_of_the_fleet_rounds_down() {
    use FailureBudget::*;
    let cases = [
        (Percent(10), 9, 0),
        (Percent(10), 10, 1),
        (Percent(10), 19, 1),
        (Percent(25), 4, 1),
        (Percent(50), 5, 2),
        (Percent(99), 3, 2),
        (Percent(0), 50, 0),
        (Count(2), 1, 2),
    ];
    for (b, fleet, want) in cases {
        assert_eq!(b.resolve(fleet), want, "{b:?} of {fleet}");
    }
    assert_eq!(FailureBudget::default().resolve(100), 0);
}

#[test]
fn a_budgeted_node_whose_restore_fails_is_kept_out_and_takes_a_place() {
    // [n1] [n2 n3] [n4 n5] [n6], max_unavailable 2: n2's restore fails, it
    // stays out, so only one more node at a time may leave rotation
    let mut s = budget(6, 2, 2);
    s.max_unavailable = 2;
    let mut sim = Sim::new(s);
    let mut w = World::new(6);
    w.unhealthy_on = set(&["n2"]);
    w.restore_fails_on = set(&["n2"]);
    let mut most_out = 0;
    for _ in 0..100_000 {
        if sim.state.is_finished() {
            break;
        }
        sim.tick(&mut w);
        most_out = most_out.max(w.drained.values().filter(|d| **d).count());
    }
    assert_eq!(sim.state.phase, Phase::Finished(Outcome::Succeeded));
    assert_eq!(most_out, 2, "never more than max_unavailable out");
    assert_eq!(sim.state.nodes["n2"].status, Failed);
    assert!(w.drained["n2"], "kept out for a human");
    let reason = sim.state.finished_reason.clone().unwrap();
    assert!(
        reason.contains("5 of 6 nodes run 2; 1 failed within max_failed_nodes = 2: n2 (")
            && reason.contains("its restore failed: kept out of rotation for a human"),
        "{reason}"
    );
}

/// A node kept out after its restore failed is left for a person when a
/// later failure spends the budget: the rollback does not try it again.
#[test]
fn the_rollback_past_the_budget_leaves_a_kept_out_node_alone() {
    // [n1] [n2 n3] [n4 n5] [n6], max_unavailable 2, budget 1
    let mut s = budget(6, 2, 1);
    s.max_unavailable = 2;
    let mut sim = Sim::new(s);
    let mut w = World::new(6);
    w.unhealthy_on = set(&["n2", "n4"]);
    w.restore_fails_on = set(&["n2"]);
    assert_eq!(sim.run(&mut w, 100_000), Some(Outcome::RollbackFailed));
    let cause = sim.state.cause.clone().unwrap();
    assert_eq!(cause.node.as_deref(), Some("n4"));
    assert!(
        cause
            .reason
            .contains("max_failed_nodes = 1 is spent, 1 node(s) failed before: n2 ("),
        "{}",
        cause.reason
    );
    let restores = sim
        .log
        .iter()
        .filter(|e| intent(e, "n2", StepKind::Switch, "1"))
        .count();
    assert_eq!(restores, 1, "n2's restore is not tried again");
    assert_eq!(sim.state.nodes["n2"].status, Failed);
    assert!(w.drained["n2"]);
    for n in ["n1", "n3", "n4", "n5"] {
        assert_eq!(w.current[n], "1", "{n}");
    }
}

#[test]
fn a_kept_out_node_that_leaves_no_room_rolls_back() {
    // max_unavailable 1: a node kept out leaves no room to drain another
    let mut sim = Sim::new(budget(4, 1, 2));
    let mut w = World::new(4);
    w.unhealthy_on = set(&["n2"]);
    w.restore_fails_on = set(&["n2"]);
    assert_eq!(sim.run(&mut w, 100_000), Some(Outcome::RollbackFailed));
    let cause = sim.state.cause.clone().unwrap();
    assert_eq!(cause.node.as_deref(), Some("n2"));
    assert!(
        cause
            .reason
            .contains("leaves no room under max_unavailable = 1"),
        "{}",
        cause.reason
    );
    // not restored again automatically: one restore attempt only
    let restores = sim
        .log
        .iter()
        .filter(|e| intent(e, "n2", StepKind::Switch, "1"))
        .count();
    assert_eq!(restores, 1);
    assert!(w.drained["n2"]);
    assert_eq!(w.current["n1"], "1", "the canary restored");
    assert_eq!(sim.statuses(), [RolledBack, Failed, Untouched, Untouched]);
}

#[test]
fn a_crash_mid_restore_of_a_budgeted_node_resumes_the_restore() {
    let mut sim = Sim::new(budget(4, 1, 1));
    let mut w = World::new(4);
    w.unhealthy_on = set(&["n3"]);
    tick_until(&mut sim, &mut w, "n3 restoring, about to restart", |s| {
        let n = &s.state.nodes["n3"];
        n.track == Track::Back && n.next_step() == Some(StepKind::Restart)
    });
    // the process dies with the restart in flight
    let d = decide(&sim.spec, &sim.state, sim.now);
    assert_eq!(d.steps.len(), 1);
    assert_eq!(d.steps[0].kind, StepKind::Restart);
    sim.push(Event::Intent {
        at: sim.now,
        step: d.steps[0].clone(),
    });
    let interrupted = Event::Interrupted {
        at: sim.now + 100,
        in_flight: d.steps.clone(),
    };
    let mut replayed = RunState::replay(&sim.spec, &sim.log);
    assert_eq!(replayed, sim.state);
    replayed.apply(&sim.spec, &interrupted);
    assert_eq!(replayed.phase, Phase::Rolling, "the budget still holds");
    let n3 = &replayed.nodes["n3"];
    assert!(n3.failed_forward.is_some());
    assert_eq!(
        (n3.track, n3.next_step()),
        (Track::Back, Some(StepKind::Restart))
    );
    let d = decide(&sim.spec, &replayed, sim.now + 100);
    assert_eq!(d.steps.len(), 1, "{d:?}");
    assert_eq!(
        (d.steps[0].kind, d.steps[0].node.as_deref()),
        (StepKind::Restart, Some("n3"))
    );
    sim.log.push(interrupted);
    sim.state = replayed;
    sim.now += 100;
    assert_eq!(sim.run(&mut w, 100_000), Some(Outcome::Succeeded));
    assert_eq!(sim.statuses(), [Updated, Updated, RolledBack, Updated]);
    assert_eq!(w.current["n3"], "1");
    assert!(!w.drained["n3"]);
}
