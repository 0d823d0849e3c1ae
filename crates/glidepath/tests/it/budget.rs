//! The failure budget (`max_failed_nodes`) against real demo nodes: a
//! release that is unhealthy on one batch node only. Within the budget the
//! run succeeds with that node back on its old release and in rotation;
//! one failure more rolls every node back.

use crate::harness::*;
use glidepath::demo::fleet::write_release_unhealthy_on;
use glidepath::demo::node::Behaviour;
use glidepath::demo::DemoPlan;
use std::time::Duration;

/// Release "5", healthy except on `bad`.
fn bad_on(env: &Env, bad: &[&str]) -> glidepath::plan::Release {
    let b = Behaviour {
        version: "5".into(),
        error_rate: 0.0,
        latency_ms: 10.0,
        leak_after_s: None,
    };
    write_release_unhealthy_on(&env.path().join("dist"), &b, bad).unwrap()
}

/// 4 nodes: canary node-1, batches [node-2, node-3] and [node-4].
fn budget_plan(env: &Env, rel: &glidepath::plan::Release) -> std::path::PathBuf {
    env.plan(
        rel,
        &DemoPlan {
            strategy_extra: "max_failed_nodes = 1".into(),
            health_deadline: "3s".into(),
            ..DemoPlan::quick("2s", 5)
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_node_within_the_budget_is_restored_and_the_run_succeeds() {
    let env = Env::start(4).await;
    let rel = bad_on(&env, &["node-3"]);
    let plan = budget_plan(&env, &rel);
    let out = wait_output(
        env.spawn(&["run", plan.to_str().unwrap()]),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(code(&out), 0, "succeeded: {}", stderr(&out));
    // the narration says so when it happens
    let err = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        err.contains("within the failure budget (max_failed_nodes), node-3 alone is restored"),
        "{err}"
    );
    // node-3 serves its old release, in rotation; the others the new one
    env.assert_fleet(&["5", "5", "1", "5"]).await;
    let run = env.latest_run();
    let rec = env.journal().run(&run).unwrap();
    assert_eq!(rec.status, "succeeded");
    assert!(
        rec.reason.starts_with(
            "3 of 4 nodes run 5; 1 failed within max_failed_nodes = 1: node-3 (node-3 not healthy within the 3.0s deadline"
        ) && rec.reason.contains("restored to 1)"),
        "{}",
        rec.reason
    );
    assert_journal_consistent(&env.events(&run));
    // status: the node is listed apart, in JSON and in text
    let st = env.run(&["status", &run, "--output", "json"]);
    assert_eq!(code(&st), 0, "{}", stderr(&st));
    let v: serde_json::Value = serde_json::from_str(&stdout(&st)).unwrap();
    let failed = v["failed_nodes"].as_array().expect("failed_nodes");
    assert_eq!(failed.len(), 1, "{v}");
    assert_eq!(failed[0]["node"], "node-3");
    assert_eq!(failed[0]["status"], "rolled_back");
    assert_eq!(failed[0]["now"], "1");
    assert_eq!(failed[0]["rotation"], "in");
    assert!(
        failed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("not healthy within the 3.0s deadline: GET http://"),
        "{v}"
    );
    let text = stdout(&env.run(&["status", &run]));
    assert!(
        text.contains("failed within the failure budget (max_failed_nodes)")
            && text.contains("  - node-3: node-3 not healthy")
            && text.contains("— serves 1, in rotation"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_bad_node_spends_the_budget_and_rolls_back() {
    let env = Env::start(4).await;
    let rel = bad_on(&env, &["node-2", "node-3"]);
    let plan = budget_plan(&env, &rel);
    let out = wait_output(
        env.spawn(&["run", plan.to_str().unwrap()]),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(code(&out), 1, "rolled back: {}", stderr(&out));
    env.assert_fleet(&["1", "1", "1", "1"]).await;
    let run = env.latest_run();
    let rec = env.journal().run(&run).unwrap();
    assert_eq!(rec.status, "rolled_back");
    assert!(
        rec.reason
            .contains("max_failed_nodes = 1 is spent, 1 node(s) failed before: node-")
            && rec.reason.contains("node-2")
            && rec.reason.contains("node-3"),
        "{}",
        rec.reason
    );
    assert_journal_consistent(&env.events(&run));
}
