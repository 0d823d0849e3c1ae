//! After the last batch: `watch_after` keeps the SLI checks running over
//! the whole fleet, and a release that degrades only later (a leak) is
//! reverted on every node; `batch_bake` watches the nodes upgraded so far
//! between batches. Real demo nodes, real traffic.

use crate::harness::*;
use glidepath::demo::node::Behaviour;
use glidepath::demo::DemoPlan;
use glidepath_core::{Event, StepKind};
use std::time::Duration;

fn plan_with(strategy: &str) -> DemoPlan {
    DemoPlan {
        strategy_extra: strategy.into(),
        ..DemoPlan::quick("2s", 5)
    }
}

fn window_reasons(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Intent { step, .. } if step.kind == StepKind::StartWindow => {
                Some(step.reason.clone())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leak_after_the_canary_window_is_reverted_by_the_watch_on_every_node() {
    let env = Env::start(3).await;
    // fails half its requests from 8 s after it starts serving: well after
    // the canary's 2 s window, while the fleet is watched
    let leaky = env.release(Behaviour {
        version: "leaky".into(),
        error_rate: 0.0,
        latency_ms: 10.0,
        leak_after_s: Some(8.0),
    });
    let plan = env.plan(&leaky, &plan_with("watch_after = \"40s\""));
    let out = wait_output(
        env.spawn(&["run", plan.to_str().unwrap()]),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(code(&out), 1, "reverted (exit 1): {}", stderr(&out));
    let run = env.latest_run();
    let events = env.events(&run);
    assert_journal_consistent(&events);
    let windows = window_reasons(&events);
    assert!(
        windows
            .last()
            .is_some_and(|r| r.contains("watch the whole fleet")),
        "{windows:?}"
    );
    // the canary's window passed; the watch caught the leak
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::WindowClosed { passed: true, .. })));
    let rec = env.journal().run(&run).unwrap();
    assert_eq!(rec.status, "rolled_back");
    assert!(rec.reason.contains("SLI breach"), "{}", rec.reason);
    env.assert_fleet(&["1", "1", "1"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_release_succeeds_after_its_bakes_and_watch() {
    let env = Env::start(4).await;
    let plan = env.plan(
        &env.v2,
        &plan_with("batch_bake = \"2s\"\nwatch_after = \"3s\""),
    );
    let out = wait_output(
        env.spawn(&["run", plan.to_str().unwrap()]),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let events = env.events(&env.latest_run());
    let windows = window_reasons(&events);
    // 4 nodes, batches of 2: the canary's window, the bake after batch 1
    // (node-2, node-3), then the watch after the last batch (node-4)
    assert_eq!(windows.len(), 3, "{windows:?}");
    assert!(
        windows[1].contains("batch 1 done: bake, watching the 3 upgraded node(s) for 2s"),
        "{windows:?}"
    );
    assert!(
        windows[2].contains("watch the whole fleet for 3s"),
        "{windows:?}"
    );
    let passed = events
        .iter()
        .filter(|e| matches!(e, Event::WindowClosed { passed: true, .. }))
        .count();
    assert_eq!(passed, 3);
    env.assert_fleet(&["2", "2", "2", "2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_ends_the_watch_early() {
    let env = Env::start(3).await;
    let plan = env.plan(&env.v2, &plan_with("watch_after = \"10m\""));
    let child = env
        .spawn_until(&["run", plan.to_str().unwrap()], "the watch to start", |e| {
            matches!(e, Event::Intent { step, .. }
                if step.kind == StepKind::StartWindow && step.reason.contains("watch the whole fleet"))
        })
        .await;
    let run = env.latest_run();
    let out = env.run(&["promote", &run]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = wait_output(child, Duration::from_secs(60)).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(env.journal().run(&run).unwrap().status, "succeeded");
    env.assert_fleet(&["2", "2", "2"]).await;
}

/// A verification probe as an SLI check: the WebSocket handshake is checked
/// on every watched node at every probe; when it stops answering during
/// the watch after the last batch, every node is reverted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_check_failing_during_the_watch_reverts_every_node() {
    use glidepath::demo::ws_peer::{WsPeer, WsPeerCfg};
    let env = Env::start(3).await;
    let peer = WsPeer::start(WsPeerCfg::default()).await.unwrap();
    let mut knobs = plan_with("watch_after = \"60s\"");
    knobs.extra = String::new();
    let plan = env.plan(&env.v2, &knobs);
    // the check goes after the plan's own [[sli.check]]s
    let text = std::fs::read_to_string(&plan).unwrap().replace(
        "[rollback]",
        &format!(
            "[[sli.check]]\nname  = \"handshake\"\nprobe = {{ websocket = \"{}\", send = '{{\"type\":\"hello\"}}', expect_type = \"welcome\", caps = [\"chat\"], within = \"2s\" }}\n\n[rollback]",
            peer.url()
        ),
    );
    std::fs::write(&plan, text).unwrap();
    let out = env.run(&["validate", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let child = env
        .spawn_until(
            &["run", plan.to_str().unwrap()],
            "the watch to start",
            |e| {
                matches!(e, Event::Outcome { step, outcome, .. }
                if step.kind == StepKind::Probe && step.reason.contains("probe 1 ")
                    && outcome.detail.contains("handshake = 0")
                    && outcome.detail.matches("(n=3)").count() >= 1)
            },
        )
        .await;
    // the handshake answered on every node so far; now it stops
    assert!(peer.hellos() >= 3, "probed every watched node");
    drop(peer);
    let out = wait_output(child, Duration::from_secs(120)).await;
    assert_eq!(code(&out), 1, "reverted: {}", stderr(&out));
    env.assert_fleet(&["1", "1", "1"]).await;
    let run = env.latest_run();
    let events = env.events(&run);
    assert_journal_consistent(&events);
    let Some(Event::Finished { reason, .. }) = events.last() else {
        unreachable!()
    };
    assert!(
        reason.contains("handshake = 1 > max 0 (3 samples): node-1: websocket"),
        "{reason}"
    );
}
