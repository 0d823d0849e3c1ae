//! End to end against real HAProxy, Prometheus and sshd from the system's
//! packages, started on 127.0.0.1 in the test's directory. Under CI
//! (`CI=true`) a missing component fails the test; elsewhere it skips loudly.

use crate::harness::*;
use glidepath::demo::infra::{find, Front};
use glidepath::demo::{haproxy_prometheus_plan, relative_artifact};
use glidepath::drivers::{HaproxyBalancer, Target};
use glidepath::plan::Release;
use glidepath_core::{Event, StepKind};
use std::path::PathBuf;
use std::time::Duration;

pub(crate) fn available(components: &[&str]) -> bool {
    let missing: Vec<&str> = components
        .iter()
        .copied()
        .filter(|c| find(c).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{} not installed: under CI every real component must be there (.ci/run installs them)",
            missing.join(", ")
        );
    }
    eprintln!("\n!!!!!!!! SKIPPING: {} not installed (run .ci/run, or apt-get install haproxy prometheus openssh-server) !!!!!!!!\n", missing.join(", "));
    false
}

/// A demo fleet behind real HAProxy and Prometheus, its traffic through
/// HAProxy's frontend.
pub(crate) struct Real {
    pub env: Env,
    pub front: Front,
}

pub(crate) async fn real(n: usize) -> Real {
    let mut env = Env::start(n).await;
    // traffic goes through HAProxy, not straight at the nodes
    env.traffic.take().unwrap().stop().await;
    let front = Front::start(env.path(), &env.fleet)
        .await
        .expect("haproxy and prometheus start");
    env.traffic = Some(front.traffic(150));
    Real { env, front }
}

/// The classic recipe: HAProxy pool(s), Prometheus SLIs over a 10 s rate window.
pub(crate) fn real_plan(r: &Real, rel: &Release, window: &str, extra_strategy: &str) -> PathBuf {
    let env = &r.env;
    let text = haproxy_prometheus_plan(
        &env.fleet,
        &r.front,
        rel,
        &relative_artifact(rel, env.path()),
        window,
        extra_strategy,
    );
    let path = env.path().join(format!("real-{}.toml", rel.version));
    std::fs::write(&path, text).unwrap();
    path
}

pub(crate) fn haproxy_driver(r: &Real, backend: &str) -> HaproxyBalancer {
    HaproxyBalancer::new(
        Some(r.front.haproxy.socket.clone()),
        None,
        backend.into(),
        Default::default(),
        None,
        Duration::from_secs(5),
    )
}

pub(crate) fn target(env: &Env, i: usize) -> Target {
    let n = &env.fleet.nodes[i];
    Target {
        name: n.name.clone(),
        address: n.address.clone(),
        install_dir: n.dir.clone(),
        ..Default::default()
    }
}

/// Requests that reached `node` between its drain being confirmed and its re-enable.
async fn arrivals_while_drained(env: &Env, events: &[Event], node: usize) -> u64 {
    let name = &env.fleet.nodes[node].name;
    let drained_at = events.iter().find_map(|e| match e {
        Event::Outcome { at, step, outcome }
            if step.kind == StepKind::CheckDrained
                && step.node.as_deref() == Some(name)
                && outcome.value == Some(0.0) =>
        {
            Some(*at)
        }
        _ => None,
    });
    let enable_at = events.iter().find_map(|e| match e {
        Event::Intent { at, step }
            if step.kind == StepKind::Enable && step.node.as_deref() == Some(name) =>
        {
            Some(*at)
        }
        _ => None,
    });
    let (from, to) = (
        drained_at.expect("drain confirmed"),
        enable_at.expect("re-enabled"),
    );
    assert!(to > from);
    let url = format!(
        "http://{}/admin/arrivals?from={from}&to={to}",
        env.fleet.nodes[node].address
    );
    reqwest::get(url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Every node runs `version` and is in rotation in both HAProxy backends.
pub(crate) async fn assert_in_rotation(r: &Real) {
    for backend in ["api", "api_internal"] {
        let hb = haproxy_driver(r, backend);
        for i in 0..r.env.fleet.nodes.len() {
            let st = hb.server_state(&target(&r.env, i)).await.unwrap();
            assert!(
                !st.out_of_rotation(),
                "{backend}/node-{} in rotation",
                i + 1
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_prometheus_good_release_is_promoted_with_no_client_errors() {
    if !available(&["haproxy", "prometheus"]) {
        return;
    }
    let r = real(3).await;
    let plan = real_plan(&r, &r.env.v2, "5s", "");
    let out = r.env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 0);
    let text = stdout(&out);
    assert!(
        text.contains("api/node-1 → drain; api_internal/node-1 → drain"),
        "both balancers act: {text}"
    );
    assert!(
        text.contains("frontend"),
        "LB-side check through the frontend: {text}"
    );
    r.env.assert_fleet(&["2", "2", "2"]).await;
    for backend in ["api", "api_internal"] {
        let hb = haproxy_driver(&r, backend);
        for i in 0..3 {
            let st = hb.server_state(&target(&r.env, i)).await.unwrap();
            assert!(
                !st.out_of_rotation(),
                "{backend}/node-{} back in rotation",
                i + 1
            );
        }
    }
    let events = r.env.events(&r.env.latest_run());
    assert_journal_consistent(&events);
    for i in 0..3 {
        assert_eq!(
            arrivals_while_drained(&r.env, &events, i).await,
            0,
            "no new request reached node-{} while drained",
            i + 1
        );
    }
    let mut env = r.env;
    let stats = env.traffic.take().unwrap().stop().await;
    let (ok, errors, failed): (u64, u64, u64) = stats.values().fold((0, 0, 0), |a, s| {
        (a.0 + s.ok, a.1 + s.errors, a.2 + s.failed)
    });
    assert!(ok > 100, "traffic flowed: {stats:?}");
    assert_eq!(
        (errors, failed),
        (0, 0),
        "clients saw no errors from drains and restarts: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_prometheus_bad_release_rolls_back_the_canary_only() {
    if !available(&["haproxy", "prometheus"]) {
        return;
    }
    let r = real(3).await;
    let plan = real_plan(&r, &r.env.v3, "30s", "");
    let out = r
        .env
        .run(&["run", plan.to_str().unwrap(), "--output", "json"]);
    assert_eq!(code(&out), 1);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["cause"]["kind"], "sli");
    r.env.assert_fleet(&["1", "1", "1"]).await;
    let events = r.env.events(v["run_id"].as_str().unwrap());
    assert_journal_consistent(&events);
    assert!(!events.iter().any(|e| matches!(e, Event::Intent { step, .. } if step.node.as_deref() != Some("node-1") && step.node.is_some())), "peers untouched");
    assert_eq!(
        arrivals_while_drained(&r.env, &events, 0).await,
        0,
        "no new request reached the canary while it was drained for deploy"
    );
    // decided within the rate window plus two scrape intervals of the bad release serving
    let t = glidepath::demo::rollback_timing(
        &glidepath::plan::load(&plan).unwrap().0.rollout_spec(),
        &events,
        "node-1",
    )
    .unwrap();
    eprintln!("prometheus rollback timing: {t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_down_mid_window_pauses_the_run_and_it_continues_when_back() {
    if !available(&["haproxy", "prometheus"]) {
        return;
    }
    let mut r = real(3).await;
    let plan = real_plan(&r, &r.env.v2, "8s", "");
    let child = r.env.spawn(&["run", plan.to_str().unwrap()]);
    let j = r.env.journal();
    let probes_ok = |j: &dyn Store| {
        latest_events(j).iter().filter(|e| matches!(e, Event::Outcome { step, outcome, .. } if step.kind == StepKind::Probe && outcome.observations.iter().all(|o| o.error.is_none()))).count()
    };
    wait_until("two good probes", Duration::from_secs(90), || {
        probes_ok(&*j) >= 2
    })
    .await;
    r.front.prom.stop();
    let run = r.env.latest_run();
    wait_until("a probe that found Prometheus down", Duration::from_secs(60), || {
        j.events(&run).unwrap().iter().any(|e| matches!(e, Event::Outcome { step, outcome, .. } if step.kind == StepKind::Probe && outcome.observations.iter().any(|o| o.error.is_some())))
    })
    .await;
    let status = r.env.run(&["status", &run]);
    assert!(
        stdout(&status).contains("metrics source unreachable since"),
        "{}",
        stdout(&status)
    );
    // stay down past the whole window: still no rollback
    let outage_start = std::time::Instant::now();
    wait_until("10 s of outage", Duration::from_secs(30), || {
        outage_start.elapsed() > Duration::from_secs(10)
    })
    .await;
    let events = j.events(&run).unwrap();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Finished { .. } | Event::WindowClosed { .. })),
        "paused, not judged"
    );
    assert!(
        r.env.current_links()[1..].iter().all(|v| v == "1"),
        "peers wait"
    );
    r.front.prom.restart().await.expect("prometheus restarts");
    let out = wait_output(child, Duration::from_secs(120)).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    r.env.assert_fleet(&["2", "2", "2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_socket_gone_refuses_before_any_node_changes() {
    if !available(&["haproxy", "prometheus"]) {
        return;
    }
    let r = real(3).await;
    let plan = real_plan(&r, &r.env.v2, "5s", "");
    // a check whose PromQL Prometheus rejects is caught at preflight too
    let broken = plan.with_file_name("broken-query.toml");
    std::fs::write(
        &broken,
        std::fs::read_to_string(&plan).unwrap().replacen(
            "histogram_quantile(0.95,",
            "histogram_quantile(0.95,,",
            1,
        ),
    )
    .unwrap();
    let out = r.env.run(&["preflight", broken.to_str().unwrap()]);
    assert_eq!(code(&out), 3, "{}", stdout(&out));
    assert!(
        stdout(&out).contains("metrics                FAIL")
            && stdout(&out).contains("check `p95 latency`")
            && stdout(&out).contains("bad_data"),
        "{}",
        stdout(&out)
    );
    let Real { env, front } = r;
    let Front { haproxy, prom } = front;
    drop(haproxy); // stopped by PID; its socket file is left behind, dead
    let out = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 4, "exit 4: infrastructure unreachable");
    let err = stderr(&out);
    assert!(
        err.contains("HAProxy runtime API") && err.contains("no node was changed"),
        "{err}"
    );
    assert_eq!(env.current_links(), ["1", "1", "1"]);
    let events = env.events(&env.latest_run());
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Intent { .. } | Event::Outcome { .. })),
        "no step was journaled"
    );
    assert!(
        events.iter().any(|e| matches!(e, Event::GatesChecked { results, .. } if results.iter().any(|g| g.gate == "balancer" && g.verdict == "fail"))),
        "the refused gate is journaled: {events:?}"
    );
    drop(prom);
}
