//! Leaving the forward path: a health deadline missed on the canary,
//! restores that fail (kept out of rotation, not blocking the others), an
//! operator abort and an operator rollback.

use crate::sim::{spec, tick_until, Sim, World};
use glidepath_core::*;
use NodeStatus::*;

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
    // health was retried for 3 s: 50 ms after the first try, then waiting
    // half the time waited so far, up to the 250 ms interval (0, 50, 100,
    // 150, 225, 337, 505, then every 250 ms to 3005): 17 tries on 2, then
    // 1 on the restored 1
    let tries: Vec<u64> = sim
        .log
        .iter()
        .filter_map(|e| match e {
            Event::Outcome { step, at, .. } if step.kind == StepKind::CheckHealth => Some(*at),
            _ => None,
        })
        .collect();
    assert_eq!(tries.len(), 18, "{tries:?}");
    let gaps: Vec<u64> = tries[..17].windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps[..7], [50, 50, 50, 75, 112, 168, 250], "{tries:?}");
    assert!(gaps[6..].iter().all(|g| *g == 250), "{tries:?}");
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
