//! Property tests: the batch math covers every node once, and any sequence
//! of faults, operator actions and crashes ends in a terminal state.

use crate::sim::{names, spec, Fault, Sim, World};
use glidepath_core::*;
use proptest::prelude::*;
use NodeStatus::*;

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
        max_failed in 0usize..3,
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
        s.max_failed_nodes = max_failed;
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
            // every node updated, but those that failed within the budget
            // (batch nodes only, never more than it allows)
            let failed = sim.state.failed_forward(&sim.spec);
            prop_assert!(failed.len() <= max_failed, "{failed:?}");
            for (n, st) in &sim.state.nodes {
                if st.failed_forward.is_some() {
                    prop_assert!(sim.spec.group_of(n) != Some(0), "canary {n} failed within the budget");
                    prop_assert!(st.status != Updated && st.track == Track::Idle, "{n}: {st:?}");
                } else {
                    prop_assert!(st.status == Updated, "{n}: {st:?}");
                }
            }
        }
        if only_infra {
            prop_assert!(!sim.statuses().contains(&Failed), "{:?}", sim.state.finished_reason);
            prop_assert!(sim.state.cause.as_ref().is_none_or(|c| c.kind == CauseKind::Operator), "{:?}", sim.state.cause);
        }
    }
}
