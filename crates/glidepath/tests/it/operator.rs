//! What operators do to a rollout from another process: the fleet lease,
//! promote, abort, Ctrl-C, an operator rollback, and a run that stops
//! resumable when a peer dies.

use crate::harness::*;
use crate::rollout::knobs;
use glidepath::demo::DemoPlan;
use glidepath_core::{Event, StepKind};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_run_is_refused_while_one_holds_the_fleet_and_promote_continues_it() {
    let env = Env::start(3).await;
    let plan = env.plan(&env.v2, &knobs().paused_after_canary());
    let (mut first, run) = env.run_to_pause(&plan, &[]).await;
    let second = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&second), 6, "exit 6: fleet locked");
    let err = stderr(&second);
    assert!(
        err.contains(&format!(
            "fleet `demo` is locked by run {run} (pid {} on",
            first.id()
        )),
        "{err}"
    );
    assert!(err.contains("since 20"), "names since when: {err}");
    let status = env.run(&["status", &run]);
    assert!(
        stdout(&status).contains("waiting: paused after the canary"),
        "{}",
        stdout(&status)
    );
    let p = env.run(&["promote", &run, "--reason", "canary looks good"]);
    assert_eq!(code(&p), 0);
    assert!(stdout(&p).contains("acknowledged"));
    let status = first.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    env.assert_fleet(&["2", "2", "2"]).await;
    let events = env.events(&run);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Promoted { reason, .. } if reason == "canary looks good")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_of_a_dead_process_is_detected_and_taken_over_by_resume() {
    let env = Env::start(3).await;
    let plan = env.plan(&env.v2, &knobs().paused_after_canary());
    let (mut first, run) = env.run_to_pause(&plan, &[]).await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let again = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&again), 6);
    assert!(
        stderr(&again).contains(&format!("that process is gone; `glidepath resume {run}`")),
        "{}",
        stderr(&again)
    );
    let status = env.run(&["status", &run]);
    assert!(stdout(&status).contains("is gone"), "{}", stdout(&status));
    // resume takes the lease over; the run still waits at its pause point, so promote first
    let p = env.run(&["promote", &run]);
    assert!(stdout(&p).contains("resume"), "{}", stdout(&p));
    let out = env.run(&["resume", &run]);
    assert_eq!(code(&out), 0);
    env.assert_fleet(&["2", "2", "2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_stops_safely_at_a_pause_point() {
    let env = Env::start(3).await;
    let plan = env.plan(&env.v2, &knobs().paused_after_canary());
    let (mut first, run) = env.run_to_pause(&plan, &[]).await;
    let a = env.run(&["abort", &run, "--reason", "change freeze"]);
    assert_eq!(code(&a), 0);
    assert_eq!(first.wait().unwrap().code(), Some(5), "exit 5: aborted");
    env.assert_fleet(&["2", "1", "1"]).await;
    assert_eq!(env.journal().run(&run).unwrap().status, "aborted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_aborts_safely_mid_rollout() {
    let env = Env::start(3).await;
    let plan = env.plan(
        &env.v2,
        &DemoPlan {
            window: "30s".into(),
            ..knobs()
        },
    );
    let mut child = env
        .spawn_until(
            &["run", plan.to_str().unwrap()],
            "the SLI window to start",
            probed,
        )
        .await;
    signal(&child, libc::SIGINT);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(5));
    env.assert_fleet(&["2", "1", "1"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_rollback_restores_every_updated_node() {
    let env = Env::start(3).await;
    let plan = env.plan(&env.v2, &knobs());
    assert_eq!(code(&env.run(&["run", plan.to_str().unwrap()])), 0);
    let run = env.latest_run();
    let out = env.run(&["rollback", &run, "--reason", "data bug found"]);
    assert_eq!(code(&out), 1);
    assert!(stdout(&out).contains("rollback requested: data bug found"));
    env.assert_fleet(&["1", "1", "1"]).await;
    assert_eq!(env.current_links(), ["1", "1", "1"]);
}

/// A short retry budget: `pauses` is spliced into [strategy].
fn knobs_retry(deadline: &str) -> DemoPlan {
    DemoPlan {
        pauses: format!(
            "retry = {{ backoff = \"100ms\", max_backoff = \"500ms\", deadline = \"{deadline}\" }}"
        ),
        ..knobs()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_dies_mid_rollout_is_found_down_and_the_run_stops_resumable() {
    // 3 nodes: canary node-1, then node-2 and node-3 (max_unavailable 2).
    let mut env = Env::start(3).await;
    let plan = env.plan(&env.v2, &knobs_retry("3s"));
    let child = env
        .spawn_until(
            &["run", plan.to_str().unwrap(), "--output", "json"],
            "the SLI window to probe",
            probed,
        )
        .await;
    env.fleet.nodes[2].kill();
    let out = wait_output(child, Duration::from_secs(120)).await;
    assert_eq!(
        out.status.code(),
        Some(4),
        "exit 4: infrastructure unreachable, resumable; stderr {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = env.latest_run();
    let events = env.events(&run);
    // the batch-boundary check found it down and counted it: node-2 was
    // deployed alone, never together with node-3 out
    let peers = events
        .iter()
        .find_map(|e| match e {
            Event::Outcome { step, outcome, .. } if step.kind == StepKind::CheckPeers => {
                Some(outcome.clone())
            }
            _ => None,
        })
        .expect("a peers check after the canary");
    assert!(peers.down.contains_key("node-3"), "{peers:?}");
    assert_eq!(env.journal().run(&run).unwrap().status, "suspended");
    let status = stdout(&env.run(&["status", &run]));
    assert!(
        status.contains("found DOWN") && status.contains("stopped: infrastructure unreachable"),
        "{status}"
    );
    // no success claimed, nothing half-way: node-1 and node-2 serve 2 in rotation
    for (i, n) in env.fleet.nodes[..2].iter().enumerate() {
        assert_eq!(
            env.node_state(i).await,
            ("2".to_string(), false),
            "{}",
            n.name
        );
    }
    assert!(!events.iter().any(|e| matches!(e, Event::Finished { .. })));
    // the operator decides: roll back the live nodes
    let out = env.run(&["rollback", &run, "--reason", "node-3 died"]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let v: Vec<String> = env.current_links()[..2].to_vec();
    assert_eq!(v, ["1", "1"]);
}
