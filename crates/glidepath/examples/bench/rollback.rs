//! rollback: the demo's broken release with a 1 s probe interval, several
//! times: from the bad release serving to the rollback decision and to the
//! canary serving the previous release again. prometheus: the same behind
//! real HAProxy with SLIs from real Prometheus.

use glidepath::demo::fleet::DemoFleet;
use glidepath::demo::infra::Front;
use glidepath::demo::RollbackTiming;
use glidepath::demo::{
    haproxy_prometheus_plan, plan_text, relative_artifact, rollback_timing, DemoPlan,
};
use glidepath::drivers::Drivers;
use glidepath::executor::Executor;
use glidepath::journal::{Journal, Store};
use glidepath::plan::Plan;
use glidepath::report::Silent;
use std::sync::Arc;
use std::time::Instant;

/// Run `plan` (a bad release) to its end: how fast its canary was caught and undone.
async fn timed_rollback(plan: &Plan) -> RollbackTiming {
    let journal = Journal::open(&plan.dir.join("glidepath.db")).unwrap();
    let r = Executor::start(
        plan.clone(),
        journal,
        Drivers::for_plan(plan),
        Arc::new(Silent),
    )
    .await
    .unwrap();
    let events = Journal::open(&plan.dir.join("glidepath.db"))
        .unwrap()
        .events(&r.run_id)
        .unwrap();
    rollback_timing(&plan.rollout_spec(), &events, "node-1")
        .expect("the bad canary was rolled back")
}

/// The median and the maximum of durations in ms, in seconds.
fn median_max(mut v: Vec<u64>) -> (f64, f64) {
    v.sort();
    (v[v.len() / 2] as f64 / 1e3, *v.last().unwrap() as f64 / 1e3)
}

pub async fn rollback(runs: usize) {
    let bin = crate::glidepath_bin();
    assert!(
        bin.exists(),
        "build the binary first: cargo build --release ({} missing)",
        bin.display()
    );
    let mut detect = Vec::new();
    let mut restore = Vec::new();
    for i in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let DemoFleet { fleet, v3, .. } = DemoFleet::start(&bin, dir.path(), 4).unwrap();
        let traffic = fleet.traffic(200);
        let knobs = DemoPlan {
            window: "30s".into(),
            probe_interval: "1s".into(),
            ..Default::default()
        };
        let path = dir.path().join("plan.toml");
        let artifact = relative_artifact(&v3, dir.path());
        std::fs::write(&path, plan_text(&fleet, &v3, &artifact, &knobs)).unwrap();
        let (plan, _) = glidepath::plan::load(&path).unwrap_or_else(|_| panic!("plan"));
        let t = timed_rollback(&plan).await;
        println!("  run {}: decision after {:.2}s, previous release serving after {:.2}s, healthy after {:.2}s", i + 1, t.detect_ms as f64 / 1e3, t.restore_ms as f64 / 1e3, t.healthy_ms as f64 / 1e3);
        detect.push(t.detect_ms);
        restore.push(t.restore_ms);
        traffic.stop().await;
    }
    let ((dm, dx), (rm, rx)) = (median_max(detect), median_max(restore));
    println!(
        "rollback (probe interval 1s, 200 req/s over 4 nodes, {runs} runs): bad release serving → decision median {:.2}s (max {:.2}s); → previous release serving median {:.2}s (max {:.2}s); goal ≤ 5s",
        dm, dx, rm, rx
    );
}

/// Real HAProxy + Prometheus (scrape 1 s, 10 s rate window): bad release
/// serving → rollback decision, and → the canary serving the old release.
pub async fn prometheus(runs: usize) {
    let bin = crate::glidepath_bin();
    let dir = tempfile::tempdir().unwrap();
    let DemoFleet { fleet, v3, .. } = DemoFleet::start(&bin, dir.path(), 4).unwrap();
    let front = Front::start(dir.path(), &fleet)
        .await
        .expect("haproxy and prometheus (apt-get install haproxy prometheus)");
    let traffic = front.traffic(200);
    let path = dir.path().join("plan.toml");
    let artifact = relative_artifact(&v3, dir.path());
    std::fs::write(
        &path,
        haproxy_prometheus_plan(&fleet, &front, &v3, &artifact, "60s", ""),
    )
    .unwrap();
    let (plan, _) = glidepath::plan::load(&path).unwrap_or_else(|_| panic!("plan"));
    let src = glidepath::drivers::PrometheusSource::new(
        &front.prom.url,
        None,
        std::time::Duration::from_secs(2),
        vec![],
    );
    let canary = &fleet.nodes[0].address;
    let mut detect = Vec::new();
    let mut restore = Vec::new();
    for i in 0..runs {
        // start clean: no errors from a previous run left in the 10 s rate window
        let q = format!("sum(rate(demo_http_requests_total{{instance=\"{canary}\",code=~\"5..\"}}[10s])) or vector(0)");
        let t0 = Instant::now();
        while src
            .query(&q)
            .await
            .map(|v| v.iter().sum::<f64>())
            .unwrap_or(1.0)
            > 0.0
        {
            assert!(
                t0.elapsed().as_secs() < 60,
                "errors never left the rate window"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let t = timed_rollback(&plan).await;
        println!(
            "  run {}: decision after {:.2}s, previous release serving after {:.2}s",
            i + 1,
            t.detect_ms as f64 / 1e3,
            t.restore_ms as f64 / 1e3
        );
        detect.push(t.detect_ms);
        restore.push(t.restore_ms);
    }
    traffic.stop().await;
    let ((dm, dx), (rm, rx)) = (median_max(detect), median_max(restore));
    println!(
        "prometheus (scrape 1s, rate window 10s, probe 1s, {runs} runs): bad release serving → decision median {:.2}s (max {:.2}s; goal ≤ 12s = window + 2 scrapes); → previous release serving median {:.2}s (max {:.2}s)",
        dm, dx, rm, rx
    );
}
