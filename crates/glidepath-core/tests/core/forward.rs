//! The forward path: a good release reaches every node, drain timeout
//! policies, batch sizes and `max_unavailable` (peers found down count
//! against it), pause points, and the post-check's release.

use crate::sim::{spec, tick_until, Sim, World};
use glidepath_core::*;
use std::collections::BTreeSet;
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
