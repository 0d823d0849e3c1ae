//! Infrastructure outages on the balancer: waited out mid-batch, suspended
//! (resumable) past the retry deadline, waited out during a rollback.

use crate::sim::{spec, tick_until, Sim, World};
use glidepath_core::*;
use NodeStatus::*;

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
    let (_, why) = sim.suspended();
    assert!(why.contains("past the retry deadline of 60s"), "{why}");
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
