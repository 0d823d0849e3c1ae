//! `[[pre]]` and `[[post]]` tasks: order, retries, failures, holds,
//! irreversible tasks, crashes.

use crate::sim::*;
use glidepath_core::*;

fn task(name: &str) -> TaskSpec {
    TaskSpec {
        name: name.into(),
        what: format!("run {name}"),
        attempts: 1,
        retry_delay_ms: 1_000,
        idempotent: true,
        irreversible: None,
    }
}

/// A 3-node spec with a watch after the last batch, and these tasks.
fn with_tasks(pre: Vec<TaskSpec>, post: Vec<TaskSpec>) -> RolloutSpec {
    let mut s = spec(3, 2, true);
    s.window.as_mut().unwrap().watch_ms = Some(5_000);
    s.pre = pre;
    s.post = post;
    s
}

/// The journal's order of task steps and node/window steps, as labels.
fn order(sim: &Sim) -> Vec<String> {
    sim.log
        .iter()
        .filter_map(|e| match e {
            Event::Intent { step, .. } => Some(match (&step.task, &step.node) {
                (Some(t), _) => format!("{}:{}", t.phase.as_str(), t.name),
                (None, Some(n)) => format!("{}:{n}", step.kind.as_str()),
                (None, None) => step.kind.as_str().to_string(),
            }),
            Event::WindowClosed { passed, .. } => Some(format!("window_closed:{passed}")),
            _ => None,
        })
        .collect()
}

fn position(o: &[String], what: &str) -> usize {
    o.iter()
        .position(|x| x == what)
        .unwrap_or_else(|| panic!("{what} not in {o:?}"))
}

#[test]
fn pre_tasks_run_before_the_first_drain_and_post_tasks_after_the_watch() {
    let mut sim = Sim::new(with_tasks(
        vec![task("backup"), task("expand")],
        vec![task("contract"), task("verify")],
    ));
    let mut w = World::new(3);
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::Succeeded));
    let o = order(&sim);
    assert_eq!(&o[..3], ["pre:backup", "pre:expand", "drain:n1"], "{o:?}");
    // the watch after the last batch closes before the first post task
    let last_window = o.iter().rposition(|x| x == "window_closed:true").unwrap();
    assert!(last_window < position(&o, "post:contract"), "{o:?}");
    assert!(position(&o, "post:contract") < position(&o, "post:verify"));
    assert_eq!(o.last().unwrap(), "post:verify");
    assert_eq!(sim.state.tasks.pre_done, 2);
    assert_eq!(sim.state.tasks.post_done, 2);
}

#[test]
fn a_failed_pre_task_is_retried_then_ends_the_run_before_any_node_changes() {
    let mut t = task("expand");
    t.attempts = 3;
    let mut sim = Sim::new(with_tasks(vec![task("backup"), t], vec![task("verify")]));
    let mut w = World::new(3);
    w.task_fails.insert("expand".into(), u32::MAX);
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::Failed));
    let o = order(&sim);
    assert_eq!(o, ["pre:backup", "pre:expand", "pre:expand", "pre:expand"]);
    assert!(w.current.values().all(|v| v == "1"));
    assert!(w.drained.values().all(|d| !d));
    let why = sim.state.finished_reason.clone().unwrap();
    assert!(
        why.contains("pre 2/2 \"expand\" failed 3 times: expand: exit status 1"),
        "{why}"
    );
    assert!(why.contains("no node was changed"), "{why}");
    // the attempts were a retry delay apart
    let at: Vec<Millis> = sim
        .log
        .iter()
        .filter_map(|e| match e {
            Event::Intent { at, step }
                if step.task.as_ref().is_some_and(|t| t.name == "expand") =>
            {
                Some(*at)
            }
            _ => None,
        })
        .collect();
    assert!(at.windows(2).all(|p| p[1] - p[0] >= 1_000), "{at:?}");
}

#[test]
fn a_pre_task_that_fails_once_is_retried_and_the_run_goes_on() {
    let mut t = task("expand");
    t.attempts = 2;
    let mut sim = Sim::new(with_tasks(vec![t], vec![]));
    let mut w = World::new(3);
    w.task_fails.insert("expand".into(), 1);
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::Succeeded));
    let retry = sim
        .log
        .iter()
        .filter_map(|e| match e {
            Event::Intent { step, .. } if step.kind == StepKind::Task => Some(step.reason.clone()),
            _ => None,
        })
        .nth(1)
        .unwrap();
    assert!(retry.contains("attempt 2 of 2"), "{retry}");
    assert!(retry.contains("exit status 1"), "{retry}");
}

#[test]
fn a_failed_post_task_rolls_every_node_back() {
    let mut sim = Sim::new(with_tasks(vec![], vec![task("verify")]));
    let mut w = World::new(3);
    w.task_fails.insert("verify".into(), u32::MAX);
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::RolledBack));
    assert!(w.current.values().all(|v| v == "1"), "{:?}", w.current);
    let cause = sim.state.cause.clone().unwrap();
    assert_eq!(cause.kind, CauseKind::Task);
    assert!(
        cause.reason.contains("post 1/1 \"verify\" failed"),
        "{cause:?}"
    );
}

#[test]
fn a_failed_post_task_holds_when_the_plan_says_so_and_promote_accepts_it() {
    let mut s = with_tasks(vec![], vec![task("verify"), task("notify")]);
    s.on_post_failure = PostFailurePolicy::Hold;
    let mut sim = Sim::new(s);
    let mut w = World::new(3);
    w.task_fails.insert("verify".into(), u32::MAX);
    assert_eq!(sim.run(&mut w, 10_000), None, "waits on a person");
    let d = decide(&sim.spec, &sim.state, sim.now);
    let why = d.waiting.unwrap();
    assert!(why.contains("verify") && why.contains("promote"), "{why}");
    assert!(awaiting_promotion(&sim.spec, &sim.state).is_some());
    sim.push(Event::Promoted {
        at: sim.now,
        reason: "checked by hand".into(),
    });
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::Succeeded));
    assert!(w.current.values().all(|v| v == "2"));
    let why = sim.state.finished_reason.clone().unwrap();
    assert!(why.contains("accepted by a person: verify"), "{why}");
    assert_eq!(order(&sim).last().unwrap(), "post:notify");
}

#[test]
fn after_an_irreversible_task_a_failure_holds_and_only_a_person_rolls_back() {
    let mut contract = task("contract");
    contract.irreversible = Some("drops column users.name".into());
    // on_post_failure = rollback (the default): held anyway
    let mut sim = Sim::new(with_tasks(vec![], vec![contract, task("verify")]));
    let mut w = World::new(3);
    w.task_fails.insert("verify".into(), u32::MAX);
    assert_eq!(sim.run(&mut w, 10_000), None, "held, not rolled back");
    assert!(w.current.values().all(|v| v == "2"));
    let held = sim.state.held.clone().unwrap();
    assert!(
        held.contains("contract (drops column users.name) cannot be undone"),
        "{held}"
    );
    assert!(held.contains("--force"), "{held}");
    assert_eq!(
        sim.state.irreversible_list().unwrap(),
        "contract (drops column users.name)"
    );
    sim.push(Event::RollbackRequested {
        at: sim.now,
        reason: "forced by ops: the verify failure is data loss".into(),
    });
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::RolledBack));
    assert!(w.current.values().all(|v| v == "1"));
    let why = sim.state.finished_reason.clone().unwrap();
    assert!(
        why.contains("Not undone (irreversible): contract (drops column users.name)"),
        "{why}"
    );
}

#[test]
fn an_irreversible_task_counts_as_run_from_its_intent() {
    let mut flag = task("flag");
    flag.irreversible = Some("enables feature x".into());
    let mut sim = Sim::new(with_tasks(vec![flag], vec![]));
    let d = decide(&sim.spec, &sim.state, sim.now);
    let step = d.steps[0].clone();
    sim.push(Event::Intent {
        at: sim.now,
        step: step.clone(),
    });
    // the process dies before the outcome: it may have run
    sim.push(Event::Interrupted {
        at: sim.now + 5,
        in_flight: vec![step],
    });
    assert!(sim.state.irreversible_list().is_some());
}

#[test]
fn a_crash_repeats_an_idempotent_task_and_holds_one_that_is_not() {
    for idempotent in [true, false] {
        let mut t = task("backup");
        t.idempotent = idempotent;
        let mut sim = Sim::new(with_tasks(vec![t], vec![]));
        let d = decide(&sim.spec, &sim.state, sim.now);
        let step = d.steps[0].clone();
        assert_eq!(step.kind, StepKind::Task);
        assert!(
            step.reason.contains("before any node changes"),
            "{}",
            step.reason
        );
        sim.push(Event::Intent {
            at: sim.now,
            step: step.clone(),
        });
        sim.push(Event::Interrupted {
            at: sim.now + 5,
            in_flight: vec![step],
        });
        // replayed from the journal, as resume does
        let replayed = RunState::replay(&sim.spec, &sim.log);
        assert_eq!(replayed, sim.state);
        let d = decide(&sim.spec, &sim.state, sim.now + 10);
        if idempotent {
            assert_eq!(d.steps.len(), 1);
            assert_eq!(d.steps[0].task.as_ref().unwrap().name, "backup");
        } else {
            assert!(d.steps.is_empty());
            let why = d.waiting.unwrap();
            assert!(why.contains("not declared idempotent"), "{why}");
            // a person checked: promote counts it done, and the rollout starts
            sim.push(Event::Promoted {
                at: sim.now + 20,
                reason: "backup is complete".into(),
            });
            assert!(sim.state.held.is_none());
            assert!(
                sim.state.promoted.is_empty(),
                "accepting a task pre-approves no pause"
            );
            let d = decide(&sim.spec, &sim.state, sim.now + 30);
            assert_eq!(d.steps[0].kind, StepKind::Drain);
        }
    }
}

#[test]
fn a_capture_is_kept_in_the_state_rebuilt_from_the_journal() {
    let mut sim = Sim::new(with_tasks(
        vec![task("capture-hashes")],
        vec![task("compare")],
    ));
    let mut w = World::new(3);
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::Succeeded));
    let replayed = RunState::replay(&sim.spec, &sim.log);
    assert_eq!(
        replayed
            .tasks
            .captured
            .get("capture-hashes")
            .map(String::as_str),
        Some("hash-of-capture-hashes")
    );
}

#[test]
fn an_abort_during_the_pre_tasks_changes_no_node() {
    let mut sim = Sim::new(with_tasks(vec![task("backup"), task("expand")], vec![]));
    let mut w = World::new(3);
    sim.tick(&mut w); // backup done
    sim.push(Event::AbortRequested {
        at: sim.now,
        reason: "operator".into(),
    });
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::Aborted));
    assert_eq!(order(&sim), ["pre:backup"]);
    assert!(w.current.values().all(|v| v == "1"));
}

#[test]
fn an_abort_waits_for_the_task_in_flight_before_the_run_ends() {
    let mut sim = Sim::new(with_tasks(vec![task("expand")], vec![]));
    let mut w = World::new(3);
    let step = decide(&sim.spec, &sim.state, sim.now).steps[0].clone();
    sim.push(Event::Intent {
        at: sim.now,
        step: step.clone(),
    });
    sim.push(Event::AbortRequested {
        at: sim.now + 5,
        reason: "SIGINT received".into(),
    });
    let d = decide(&sim.spec, &sim.state, sim.now + 10);
    assert!(d.transition.is_none() && d.steps.is_empty(), "{d:?}");
    // the task's outcome arrives: now the run ends, with the task journaled
    sim.push(Event::Outcome {
        at: sim.now + 20,
        step,
        outcome: StepOutcome::ok("expand done"),
    });
    assert_eq!(sim.run(&mut w, 1_000), Some(Outcome::Aborted));
    assert_eq!(sim.state.tasks.pre_done, 1);
}

#[test]
fn a_rollback_waits_for_the_post_task_in_flight() {
    let mut sim = Sim::new(with_tasks(vec![], vec![task("backfill"), task("verify")]));
    let mut w = World::new(3);
    tick_until(&mut sim, &mut w, "the post task to be due", |s| {
        decide(&s.spec, &s.state, s.now)
            .steps
            .iter()
            .any(|s| s.kind == StepKind::Task)
    });
    let step = decide(&sim.spec, &sim.state, sim.now).steps[0].clone();
    sim.push(Event::Intent {
        at: sim.now,
        step: step.clone(),
    });
    sim.push(Event::RollbackRequested {
        at: sim.now + 5,
        reason: "operator".into(),
    });
    for _ in 0..1_000 {
        let d = decide(&sim.spec, &sim.state, sim.now);
        assert!(
            !matches!(d.transition, Some(Event::Finished { .. })),
            "finished while the post task runs"
        );
        if d.steps.is_empty() && d.transition.is_none() && d.wake_at.is_none() {
            break; // every node restored; only the task is left
        }
        sim.tick(&mut w);
    }
    assert!(w.current.values().all(|v| v == "1"));
    sim.push(Event::Outcome {
        at: sim.now + 10,
        step,
        outcome: StepOutcome::ok("backfill done"),
    });
    assert_eq!(sim.run(&mut w, 1_000), Some(Outcome::RolledBack));
}

#[test]
fn post_tasks_wait_for_a_person_while_a_budgeted_node_runs_the_old_release() {
    let mut s = spec(5, 2, false);
    s.max_failed_nodes = 1;
    s.max_unavailable = 1;
    let mut contract = task("contract");
    contract.irreversible = Some("contract migration 0043_drop.post.sql".into());
    s.post = vec![contract];
    let mut sim = Sim::new(s);
    let mut w = World::new(5);
    w.unhealthy_on = [String::from("n2")].into_iter().collect();
    assert_eq!(sim.run(&mut w, 100_000), None, "waits on a person");
    assert_eq!(w.current["n2"], "1");
    assert!(order(&sim).iter().all(|o| !o.starts_with("post:")));
    let why = decide(&sim.spec, &sim.state, sim.now).waiting.unwrap();
    assert!(
        why.starts_with("n2 failed within max_failed_nodes and do(es) not run 2: the 1 post task(s) (some cannot be undone)"),
        "{why}"
    );
    assert!(awaiting_promotion(&sim.spec, &sim.state).is_some());
    // a person fixed n2 (or accepts): promote runs the post tasks
    sim.push(Event::Promoted {
        at: sim.now,
        reason: "n2 fixed by hand".into(),
    });
    assert_eq!(sim.run(&mut w, 100_000), Some(Outcome::Succeeded));
    assert_eq!(order(&sim).last().unwrap(), "post:contract");
    assert!(
        sim.state.promoted.is_empty(),
        "approving the post tasks pre-approves no pause"
    );
}

#[test]
fn a_task_whose_infrastructure_is_down_waits_it_out_then_stops_resumable() {
    let mut sim = Sim::new(with_tasks(vec![task("expand")], vec![]));
    let mut w = World::new(3);
    w.task_infra_down.insert("expand".into());
    // a few retries, with backoff, are no verdict
    tick_until(&mut sim, &mut w, "three attempts", |s| {
        s.state.tasks.outage.as_ref().is_some_and(|o| o.tries >= 3)
    });
    assert_eq!(
        sim.state.tasks.tries, 0,
        "an outage is not a failed attempt"
    );
    let d = decide(&sim.spec, &sim.state, sim.now);
    assert!(
        d.waiting
            .as_deref()
            .is_some_and(|w| w
                .starts_with("infrastructure unreachable: task \"expand\" failed: cannot connect")),
        "{d:?}"
    );
    // the database answers again: the run goes on
    w.task_infra_down.clear();
    assert_eq!(sim.run(&mut w, 10_000), Some(Outcome::Succeeded));

    // past the retry deadline, the run stops resumable with nothing changed
    let mut sim = Sim::new(with_tasks(vec![task("expand")], vec![]));
    let mut w = World::new(3);
    w.task_infra_down.insert("expand".into());
    assert_eq!(sim.run(&mut w, 10_000), None);
    let (_, why) = sim.suspended();
    assert!(
        why.contains("task: cannot connect to the database"),
        "{why}"
    );
    assert!(w.current.values().all(|v| v == "1"));
}
