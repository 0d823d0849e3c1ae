//! health: a good release rolled out to a fleet of local demo nodes with
//! the health check's default `interval` (1 s) and with 20 ms: the sum of
//! the nodes' step times (`node_busy_ms`, what `status` shows) and the wall
//! time. A node that is healthy a few ms after its restart must not wait a
//! whole interval for its next check.

use glidepath::demo::fleet::DemoFleet;
use glidepath::demo::{plan_text, relative_artifact, DemoPlan};
use glidepath::drivers::Drivers;
use glidepath::executor::Executor;
use glidepath::journal::{Journal, Store};
use glidepath::report::{node_busy_ms, Silent};
use glidepath_core::Event;
use std::sync::Arc;
use std::time::Instant;

/// The sum of the nodes' step times, the wall time, and the time spent
/// waiting between the health checks of a node, in seconds.
async fn rollout(nodes: usize, interval: &str) -> (f64, f64, f64) {
    let bin = crate::glidepath_bin();
    let dir = tempfile::tempdir().unwrap();
    let DemoFleet { fleet, v2, .. } = DemoFleet::start(&bin, dir.path(), nodes).unwrap();
    let traffic = fleet.traffic(200);
    let knobs = DemoPlan {
        window: "1s".into(),
        probe_interval: "500ms".into(),
        batch_size: "10".into(),
        min_samples: 1,
        ..Default::default()
    };
    let artifact = relative_artifact(&v2, dir.path());
    let text = plan_text(&fleet, &v2, &artifact, &knobs).replace(
        "interval    = \"100ms\"",
        &format!("interval    = \"{interval}\""),
    );
    assert!(text.contains(&format!("interval    = \"{interval}\"")));
    let path = dir.path().join("plan.toml");
    std::fs::write(&path, text).unwrap();
    let (plan, _) = glidepath::plan::load(&path).unwrap_or_else(|_| panic!("plan"));
    let db = plan.dir.join("glidepath.db");
    let t0 = Instant::now();
    let r = Executor::start(
        plan.clone(),
        Journal::open(&db).unwrap(),
        Drivers::for_plan(&plan),
        Arc::new(Silent),
    )
    .await
    .unwrap();
    let wall = t0.elapsed().as_secs_f64();
    traffic.stop().await;
    let events = Journal::open(&db).unwrap().events(&r.run_id).unwrap();
    let busy: u64 = fleet
        .nodes
        .iter()
        .map(|n| {
            let mine: Vec<&Event> = events
                .iter()
                .filter(|e| matches!(e, Event::Intent { step, .. } | Event::Outcome { step, .. } if step.node.as_deref() == Some(n.name.as_str())))
                .collect();
            node_busy_ms(&mine)
        })
        .sum();
    // where the time went, by step kind: (in flight, waiting between tries)
    let by = {
        let mut by: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
        let mut open: std::collections::HashMap<(String, &str), (u64, bool)> = Default::default();
        for e in &events {
            match e {
                Event::Intent { at, step } if step.node.is_some() => {
                    let k = (step.node.clone().unwrap(), step.kind.as_str());
                    if let Some((t, false)) = open.get(&k) {
                        by.entry(step.kind.as_str()).or_default().1 += at - t;
                    }
                    open.insert(k, (*at, true));
                }
                Event::Outcome { at, step, .. } if step.node.is_some() => {
                    let k = (step.node.clone().unwrap(), step.kind.as_str());
                    if let Some((t, true)) = open.get(&k) {
                        by.entry(step.kind.as_str()).or_default().0 += at - t;
                    }
                    open.insert(k, (*at, false));
                }
                _ => {}
            }
        }
        by
    };
    if std::env::var_os("BENCH_DETAIL").is_some() {
        println!("  {interval}: {by:?}");
    }
    let waits = by.get("check_health").map_or(0, |x| x.1) + by.get("post_check").map_or(0, |x| x.1);
    (busy as f64 / 1e3, wall, waits as f64 / 1e3)
}

pub async fn health(nodes: usize) {
    let (b1, w1, h1) = rollout(nodes, "1s").await;
    let (b20, w20, h20) = rollout(nodes, "20ms").await;
    println!(
        "health interval ({nodes} demo nodes, batches of 10): default 1s → waits between health checks {h1:.2}s in all, nodes' steps {b1:.1}s, wall {w1:.1}s; 20ms → waits {h20:.2}s, steps {b20:.1}s, wall {w20:.1}s; ratio of step time {:.2} (goal ≤ 1.2)",
        b1 / b20
    );
}
