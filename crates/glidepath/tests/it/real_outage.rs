//! Infrastructure outages against real HAProxy and Prometheus: HAProxy
//! killed mid-batch, past the retry deadline, during a rollback and while a
//! batch of two restarts. An outage is waited out, never a verdict.

use crate::harness::*;
use crate::real::{assert_in_rotation, available, real, real_plan, Real};
use glidepath_core::{Event, StepKind};
use std::path::Path;
use std::time::Duration;

/// A short retry budget for the outage tests.
const RETRY: &str = r#"retry = { backoff = "200ms", max_backoff = "1s", deadline = "60s" }"#;

/// Start the run of `plan` and kill HAProxy once node-2, the first node of
/// batch 1, is drained.
async fn kill_haproxy_once_node2_drained(r: &mut Real, plan: &Path) -> Running {
    let child = r.env.spawn(&["run", plan.to_str().unwrap()]);
    r.env
        .wait_event("node-2 (batch 1) drained", Duration::from_secs(90), |e| {
            matches!(e, Event::Outcome { step, outcome, .. } if step.kind == StepKind::Drain && step.node.as_deref() == Some("node-2") && outcome.ok)
        })
        .await;
    r.front.haproxy.kill();
    child
}

fn infra_faults(events: &[Event], node: &str) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Outcome { step, outcome, .. } if step.node.as_deref() == Some(node) && outcome.infra && !outcome.ok))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_killed_mid_batch_pauses_the_run_and_it_finishes_when_back() {
    if !available(&["haproxy", "prometheus"]) {
        return;
    }
    let mut r = real(3).await;
    let plan = real_plan(&r, &r.env.v2, "3s", RETRY);
    let child = kill_haproxy_once_node2_drained(&mut r, &plan).await;
    let run = r.env.latest_run();
    let j = r.env.journal();
    wait_until(
        "three failed attempts on node-2",
        Duration::from_secs(30),
        || infra_faults(&j.events(&run).unwrap(), "node-2") >= 3,
    )
    .await;
    let status = r.env.run(&["status", &run]);
    assert!(
        stdout(&status).contains("waiting: infrastructure unreachable: node-2")
            && stdout(&status).contains("HAProxy runtime API"),
        "the pause and its reason are in status: {}",
        stdout(&status)
    );
    r.front.haproxy.restart().await.expect("haproxy restarts");
    let out = wait_output(child, Duration::from_secs(120)).await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    r.env.assert_fleet(&["2", "2", "2"]).await;
    assert_in_rotation(&r).await;
    let events = r.env.events(&run);
    assert_journal_consistent(&events);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::RollbackRequested { .. })),
        "an outage is not a verdict on the release"
    );
    assert!(r.env.current_links().iter().all(|v| v == "2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_down_past_the_retry_deadline_stops_resumable_then_resume_finishes() {
    if !available(&["haproxy", "prometheus"]) {
        return;
    }
    let mut r = real(3).await;
    let plan = real_plan(
        &r,
        &r.env.v2,
        "3s",
        r#"retry = { backoff = "200ms", max_backoff = "500ms", deadline = "3s" }"#,
    );
    let child = kill_haproxy_once_node2_drained(&mut r, &plan).await;
    let out = wait_output(child, Duration::from_secs(60)).await;
    assert_eq!(out.status.code(), Some(4), "exit 4: resumable");
    let err = stderr(&out);
    assert!(
        err.contains("past the retry deadline of 3s") && err.contains("glidepath resume"),
        "{err}"
    );
    let run = r.env.latest_run();
    assert_eq!(r.env.journal().run(&run).unwrap().status, "suspended");
    let events = r.env.events(&run);
    assert!(
        glidepath::executor::events_in_flight(&events).is_empty(),
        "stopped with no step in flight"
    );
    assert!(matches!(events.last(), Some(Event::Suspended { .. })));
    // the lease is free: `status` names no holder and says how to continue
    let status = stdout(&r.env.run(&["status", &run]));
    assert!(
        status.contains("stopped: infrastructure unreachable") && !status.contains("holder:"),
        "{status}"
    );
    r.front.haproxy.restart().await.expect("haproxy restarts");
    let out = r.env.run(&["resume", &run]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    r.env.assert_fleet(&["2", "2", "2"]).await;
    assert_in_rotation(&r).await;
    assert_journal_consistent(&r.env.events(&run));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_killed_during_a_rollback_the_restore_waits_and_finishes() {
    if !available(&["haproxy", "prometheus"]) {
        return;
    }
    let mut r = real(3).await;
    let plan = real_plan(&r, &r.env.v2, "3s", RETRY);
    assert_eq!(code(&r.env.run(&["run", plan.to_str().unwrap()])), 0);
    let run = r.env.latest_run();
    let child = r
        .env
        .spawn(&["rollback", &run, "--reason", "data bug found"]);
    let j = r.env.journal();
    let back_drains = |j: &dyn Store| {
        j.events(&run).unwrap().iter().filter(|e| matches!(e, Event::Outcome { step, outcome, .. } if step.kind == StepKind::Drain && outcome.ok && step.reason.contains("restore"))).count()
    };
    wait_until("a restore drained a node", Duration::from_secs(60), || {
        back_drains(&*j) >= 1
    })
    .await;
    r.front.haproxy.kill();
    wait_until("three failed attempts", Duration::from_secs(30), || {
        let ev = j.events(&run).unwrap();
        ["node-1", "node-2", "node-3"]
            .iter()
            .map(|n| infra_faults(&ev, n))
            .sum::<usize>()
            >= 3
    })
    .await;
    // status: paused with its reason, and each node's last observed release
    // is the one it really serves (not the pre-run one for updated nodes)
    let st = r.env.run(&["status", &run, "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&st)).unwrap();
    assert!(
        v["waiting"]
            .as_str()
            .unwrap_or_default()
            .contains("infrastructure unreachable"),
        "{v}"
    );
    let served = r.env.fleet_state().await;
    for (i, (version, _)) in served.iter().enumerate() {
        assert_eq!(
            v["nodes"][i]["seen"].as_str(),
            Some(version.as_str()),
            "status: node-{} last seen serving what it serves: {v}",
            i + 1
        );
    }
    r.front.haproxy.restart().await.expect("haproxy restarts");
    let out = wait_output(child, Duration::from_secs(120)).await;
    assert_eq!(out.status.code(), Some(1), "rolled back: {}", stdout(&out));
    assert!(!stdout(&out).contains("kept out of rotation"));
    r.env.assert_fleet(&["1", "1", "1"]).await;
    assert_in_rotation(&r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_killed_while_a_batch_of_two_restarts_then_abort_finishes_with_every_node_in_rotation(
) {
    if !available(&["haproxy", "prometheus"]) {
        return;
    }
    let mut r = real(4).await;
    let plan = real_plan(&r, &r.env.v2, "3s", RETRY);
    let text = std::fs::read_to_string(&plan).unwrap();
    std::fs::write(
        &plan,
        text.replacen("batch_size     = 1", "batch_size     = 2", 1),
    )
    .unwrap();
    let child = r.env.spawn(&["run", plan.to_str().unwrap()]);
    r.env
        .wait_event("batch 1 restarting", Duration::from_secs(90), |e| {
            matches!(e, Event::Intent { step, .. } if step.kind == StepKind::Restart && step.node.as_deref() != Some("node-1"))
        })
        .await;
    r.front.haproxy.kill();
    let run = r.env.latest_run();
    let j = r.env.journal();
    wait_until("failed attempts", Duration::from_secs(30), || {
        let ev = j.events(&run).unwrap();
        infra_faults(&ev, "node-2") + infra_faults(&ev, "node-3") >= 2
    })
    .await;
    // the operator aborts while the balancer is down: acknowledged, and the
    // restores wait for the balancer instead of giving up or deadlocking
    let out = r.env.run(&["abort", &run, "--reason", "balancer trouble"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    r.front.haproxy.restart().await.expect("haproxy restarts");
    let out = wait_output(child, Duration::from_secs(120)).await;
    assert_eq!(out.status.code(), Some(5), "aborted: {}", stdout(&out));
    assert!(!stdout(&out).contains("kept out of rotation"));
    // nodes healthy on 2 when the abort came are finished, the others
    // restored (which depends on when the kill landed); none is drained,
    // none failed, and `status` says what each one serves
    let served = r.env.fleet_state().await;
    assert!(served.iter().all(|(_, drained)| !drained), "{served:?}");
    assert_eq!(served[0].0, "2", "the canary keeps the release");
    assert_eq!(served[3].0, "1", "node-4 never touched");
    let st = r.env.run(&["status", &run, "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&st)).unwrap();
    for (i, (version, _)) in served.iter().enumerate() {
        assert_eq!(
            v["nodes"][i]["seen"].as_str(),
            Some(version.as_str()),
            "{v}"
        );
        assert_eq!(v["nodes"][i]["now"].as_str(), Some(version.as_str()), "{v}");
        assert_ne!(v["nodes"][i]["status"], "failed", "{v}");
    }
    assert_in_rotation(&r).await;
    assert_journal_consistent(&r.env.events(&run));
}
