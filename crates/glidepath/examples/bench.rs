//! Benchmarks that print figures (README "Performance").
//!
//!   cargo build --release && cargo run --release --example bench -- [engine|rollback|all]
//!
//! engine:   CPU time per node step of the executor + core + SQLite journal,
//!           with drivers that return at once (no waits on a fleet).
//! rollback: the demo's broken release with a 1 s probe interval, several
//!           times: from the bad release serving to the rollback decision and
//!           to the canary serving the previous release again.
//! lint:     `glidepath lint` vs squawk's CLI on a 20,000-statement file.
//! planner:  `glidepath plan` on 20 components × 50 releases, 10,000 instances.
//! prometheus: the same behind real HAProxy with SLIs from real Prometheus
//!           (scrape 1 s, 10 s rate window); needs haproxy and prometheus.
//! preflight: the preflight gates (built-in + declared) at 100 and 1,000
//!           local nodes: real install dirs (`releases/1`, `current`), a
//!           local deployer, `balancer = none`, a health check (tcp against
//!           one local listener; then `command = "true"`, a process per
//!           node) and a `[[gates.custom]]` command.

use async_trait::async_trait;
use glidepath::demo::fleet::{write_release, LocalFleet, Traffic};
use glidepath::demo::{plan_text, rollback_timing, DemoPlan};
use glidepath::drivers::*;
use glidepath::executor::Executor;
use glidepath::journal::{Journal, Store};
use glidepath::plan::Release;
use glidepath::report::Silent;
use glidepath_core::Observation;
use std::sync::Arc;
use std::time::Instant;

struct Instant0;

#[async_trait]
impl Balancer for Instant0 {
    async fn drain(&self, _: &Target) -> DResult<String> {
        Ok("drained".into())
    }
    async fn active(&self, _: &Target) -> DResult<u64> {
        Ok(0)
    }
    async fn enable(&self, _: &Target) -> DResult<String> {
        Ok("enabled".into())
    }
    async fn check_in_rotation(&self, _: &Target) -> DResult<String> {
        Ok("in".into())
    }
    async fn preflight(&self, _: &Target) -> DResult<String> {
        Ok("ok".into())
    }
}

#[async_trait]
impl Deployer for Instant0 {
    async fn current(&self, _: &Target) -> DResult<Option<String>> {
        Ok(Some("1".into()))
    }
    async fn stage(&self, _: &Target, _: &Release) -> DResult<String> {
        Ok("staged".into())
    }
    async fn switch(&self, _: &Target, v: &str) -> DResult<String> {
        Ok(format!("current → {v}"))
    }
    async fn has_release(&self, _: &Target, _: &str) -> DResult<bool> {
        Ok(true)
    }
}

#[async_trait]
impl ServiceControl for Instant0 {
    async fn restart(&self, _: &Target, _: &str) -> DResult<String> {
        Ok("restarted".into())
    }
    async fn check(&self, _: &Target, _: &str) -> DResult<String> {
        Ok("ok".into())
    }
}

#[async_trait]
impl HealthProbe for Instant0 {
    async fn probe(&self, _: &Target, _: Option<&str>) -> DResult<String> {
        Ok("200".into())
    }
}

#[async_trait]
impl MetricsSource for Instant0 {
    async fn start_window(&self, _: &[Target], _: &[Target]) -> DResult<String> {
        Ok("baseline".into())
    }
    async fn observe(&self, _: &[Target], _: &[Target]) -> Vec<Observation> {
        vec![]
    }
}

fn cpu_ms() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 * 1000.0 + tv.tv_usec as f64 / 1000.0;
    t(u.ru_utime) + t(u.ru_stime)
}

async fn engine() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = 200;
    let rel = write_release(dir.path(), &glidepath::demo::releases()[1]).unwrap();
    let fleet_nodes: String = (1..=nodes)
        .map(|i| {
            format!(
                "  {{ name = \"n{i}\", address = \"127.0.0.1:{}\" }},\n",
                10000 + i
            )
        })
        .collect();
    let artifact = rel
        .artifact
        .strip_prefix(dir.path())
        .unwrap()
        .display()
        .to_string();
    let plan_src = format!(
        r#"[release]
version = "2"
artifact = "{artifact}"
sha256 = "{}"
[fleet]
name = "bench"
nodes = [
{fleet_nodes}]
[strategy]
canary = ["n1"]
batch_size = 20
[balancer]
kind = "none"
[deploy]
kind = "local"
install_dir = "nodes/{{node}}"
restart = "true"
[health]
http = "http://{{address}}/health"
[rollback]
on = ["health"]
"#,
        rel.sha256
    );
    let path = dir.path().join("bench.toml");
    std::fs::write(&path, plan_src).unwrap();
    let (plan, _) = glidepath::plan::load(&path).unwrap_or_else(|_| panic!("bench plan invalid"));
    let d = Arc::new(Instant0);
    let drivers = Drivers {
        balancer: d.clone(),
        deployer: d.clone(),
        service: d.clone(),
        health: d.clone(),
        metrics: Some(d),
    };
    let journal = Journal::open(&dir.path().join("glidepath.db")).unwrap();
    let (c0, w0) = (cpu_ms(), Instant::now());
    let r = Executor::start(plan.clone(), journal, drivers, Arc::new(Silent))
        .await
        .unwrap();
    let (cpu, wall) = (cpu_ms() - c0, w0.elapsed().as_secs_f64() * 1000.0);
    let events = Journal::open(&dir.path().join("glidepath.db"))
        .unwrap()
        .events(&r.run_id)
        .unwrap();
    let steps = events
        .iter()
        .filter(|e| matches!(e, glidepath_core::Event::Outcome { .. }))
        .count();
    println!(
        "engine: {nodes} nodes, {steps} node steps, outcome {}",
        r.outcome.as_str()
    );
    println!("  CPU per node step (executor + core + journal, drivers instant): {:.3} ms  (wall {:.3} ms/step incl. fsync)", cpu / steps as f64, wall / steps as f64);

    // the core alone: decide() + apply() per step
    let spec = plan.rollout_spec();
    let t0 = Instant::now();
    let mut state = glidepath_core::RunState::new(&spec);
    let mut decisions = 0u64;
    for e in &events {
        let _ = glidepath_core::decide(&spec, &state, e.at());
        state.apply(&spec, e);
        decisions += 1;
    }
    let per = t0.elapsed().as_secs_f64() * 1e6 / decisions as f64;
    println!("  core alone (decide + apply, {nodes}-node state): {per:.1} µs per event");
}

async fn rollback(runs: usize) {
    let bin = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("glidepath");
    assert!(
        bin.exists(),
        "build the binary first: cargo build --release ({} missing)",
        bin.display()
    );
    let mut detect = Vec::new();
    let mut restore = Vec::new();
    for i in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let [b1, _, b3] = glidepath::demo::releases();
        let v1 = write_release(&dir.path().join("dist"), &b1).unwrap();
        let v3 = write_release(&dir.path().join("dist"), &b3).unwrap();
        let fleet = LocalFleet::start(&bin, dir.path(), 4, &v1).unwrap();
        let traffic = Traffic::start(
            fleet
                .nodes
                .iter()
                .map(|n| (n.name.clone(), n.address.clone()))
                .collect(),
            200,
        );
        let artifact = v3
            .artifact
            .strip_prefix(dir.path())
            .unwrap()
            .display()
            .to_string();
        let path = dir.path().join("plan.toml");
        std::fs::write(
            &path,
            plan_text(
                &fleet,
                &v3,
                &artifact,
                &DemoPlan {
                    window: "30s".into(),
                    probe_interval: "1s".into(),
                    ..Default::default()
                },
            ),
        )
        .unwrap();
        let (plan, _) = glidepath::plan::load(&path).unwrap_or_else(|_| panic!("plan"));
        let journal = Journal::open(&plan.dir.join("glidepath.db")).unwrap();
        let r = Executor::start(
            plan.clone(),
            journal,
            Drivers::for_plan(&plan),
            Arc::new(Silent),
        )
        .await
        .unwrap();
        let events = Journal::open(&plan.dir.join("glidepath.db"))
            .unwrap()
            .events(&r.run_id)
            .unwrap();
        let t = rollback_timing(&plan.rollout_spec(), &events, "node-1")
            .expect("the bad canary was rolled back");
        println!("  run {}: decision after {:.2}s, previous release serving after {:.2}s, healthy after {:.2}s", i + 1, t.detect_ms as f64 / 1e3, t.restore_ms as f64 / 1e3, t.healthy_ms as f64 / 1e3);
        detect.push(t.detect_ms);
        restore.push(t.restore_ms);
        traffic.stop().await;
    }
    detect.sort();
    restore.sort();
    let med = |v: &Vec<u64>| v[v.len() / 2] as f64 / 1e3;
    println!(
        "rollback (probe interval 1s, 200 req/s over 4 nodes, {runs} runs): bad release serving → decision median {:.2}s (max {:.2}s); → previous release serving median {:.2}s (max {:.2}s); goal ≤ 5s",
        med(&detect),
        *detect.last().unwrap() as f64 / 1e3,
        med(&restore),
        *restore.last().unwrap() as f64 / 1e3
    );
}

/// Real HAProxy + Prometheus (scrape 1 s, 10 s rate window): bad release
/// serving → rollback decision, and → the canary serving the old release.
async fn prometheus(runs: usize) {
    use glidepath::demo::infra::{Haproxy, Prometheus};
    let bin = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("glidepath");
    let dir = tempfile::tempdir().unwrap();
    let [b1, _, b3] = glidepath::demo::releases();
    let v1 = write_release(&dir.path().join("dist"), &b1).unwrap();
    let v3 = write_release(&dir.path().join("dist"), &b3).unwrap();
    let fleet = LocalFleet::start(&bin, dir.path(), 4, &v1).unwrap();
    let servers: Vec<(String, String)> = fleet
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.address.clone()))
        .collect();
    let haproxy = Haproxy::start(
        &dir.path().join("haproxy"),
        &[("api", servers.clone()), ("api_internal", servers.clone())],
    )
    .await
    .expect("haproxy (apt-get install haproxy)");
    let prom = Prometheus::start(
        &dir.path().join("prom"),
        &servers.iter().map(|s| s.1.clone()).collect::<Vec<_>>(),
    )
    .await
    .expect("prometheus (apt-get install prometheus)");
    let traffic = Traffic::through(&format!("{}/", haproxy.frontend), 200);
    let artifact = v3
        .artifact
        .strip_prefix(dir.path())
        .unwrap()
        .display()
        .to_string();
    let path = dir.path().join("plan.toml");
    std::fs::write(
        &path,
        glidepath::demo::haproxy_prometheus_plan(
            &fleet,
            &v3,
            &artifact,
            &haproxy.socket,
            &haproxy.frontend,
            &prom.url,
            "60s",
            "",
        ),
    )
    .unwrap();
    let (plan, _) = glidepath::plan::load(&path).unwrap_or_else(|_| panic!("plan"));
    let src = glidepath::drivers::PrometheusSource::new(
        &prom.url,
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
        let journal = Journal::open(&plan.dir.join("glidepath.db")).unwrap();
        let r = Executor::start(
            plan.clone(),
            journal,
            Drivers::for_plan(&plan),
            Arc::new(Silent),
        )
        .await
        .unwrap();
        let events = Journal::open(&plan.dir.join("glidepath.db"))
            .unwrap()
            .events(&r.run_id)
            .unwrap();
        let t = rollback_timing(&plan.rollout_spec(), &events, "node-1")
            .expect("the bad canary was rolled back");
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
    detect.sort();
    restore.sort();
    let med = |v: &Vec<u64>| v[v.len() / 2] as f64 / 1e3;
    println!(
        "prometheus (scrape 1s, rate window 10s, probe 1s, {runs} runs): bad release serving → decision median {:.2}s (max {:.2}s; goal ≤ 12s = window + 2 scrapes); → previous release serving median {:.2}s (max {:.2}s)",
        med(&detect),
        *detect.last().unwrap() as f64 / 1e3,
        med(&restore),
        *restore.last().unwrap() as f64 / 1e3
    );
}

/// The upgrade planner: 20 components × 50 releases, 10,000 instances.
fn planner() {
    use glidepath_core::compat::*;
    use std::collections::{BTreeMap, BTreeSet};
    let rel = |v: String, p: &[(&str, u32, u32)], stop: bool| ReleaseSpec {
        version: v,
        protocols: p
            .iter()
            .map(|(a, x, y)| (a.to_string(), Range { min: *x, max: *y }))
            .collect::<BTreeMap<_, _>>(),
        required_stop: stop,
        capabilities: BTreeSet::new(),
    };
    let v = |k: usize| format!("1.{k}");
    let mut comps = Vec::new();
    // the server: a bridge from 25 to 39 speaks both api/agent protocol 1 and 2
    comps.push(ComponentSpec {
        name: "server".into(),
        releases: (0..50)
            .map(|k| {
                let p = if k < 25 {
                    (1, 1)
                } else if k < 40 {
                    (1, 2)
                } else {
                    (2, 2)
                };
                rel(
                    v(k),
                    &[
                        ("api", p.0, p.1),
                        ("agent", p.0, p.1),
                        ("sql", 1, 1),
                        ("cache", 1, 1),
                    ],
                    false,
                )
            })
            .collect(),
        stateful: false,
        talks_to: vec!["db".into(), "cache".into()],
    });
    for i in 0..12 {
        comps.push(ComponentSpec {
            name: format!("client-{i}"),
            releases: (0..50)
                .map(|k| {
                    rel(
                        v(k),
                        &[(
                            "api",
                            if k < 30 { 1 } else { 2 },
                            if k < 30 { 1 } else { 2 },
                        )],
                        false,
                    )
                })
                .collect(),
            stateful: false,
            talks_to: vec!["server".into()],
        });
    }
    for i in 0..5 {
        comps.push(ComponentSpec {
            name: format!("agent-{i}"),
            releases: (0..50)
                .map(|k| {
                    rel(
                        v(k),
                        &[(
                            "agent",
                            if k < 30 { 1 } else { 2 },
                            if k < 30 { 1 } else { 2 },
                        )],
                        false,
                    )
                })
                .collect(),
            stateful: false,
            talks_to: vec!["server".into()],
        });
    }
    comps.push(ComponentSpec {
        name: "db".into(),
        releases: (0..50)
            .map(|k| rel(v(k), &[("sql", 1, 1)], false))
            .collect(),
        stateful: true,
        talks_to: vec![],
    });
    comps.push(ComponentSpec {
        name: "cache".into(),
        releases: (0..50)
            .map(|k| rel(v(k), &[("cache", 1, 1)], k % 10 == 0 && k > 0))
            .collect(),
        stateful: false,
        talks_to: vec![],
    });
    let skew = (0..5)
        .map(|i| SkewRule {
            component: format!("agent-{i}"),
            anchor: "server".into(),
            max_newer: 0,
            max_older: 49,
        })
        .collect();
    let spec = SystemSpec {
        components: comps,
        skew,
        capabilities: vec![],
    };
    // 10,000 instances: where they run now
    let mut instances: Vec<(String, String)> = Vec::new();
    for _ in 0..20 {
        instances.push(("server".into(), v(0)));
    }
    for i in 0..8000 {
        instances.push((
            format!("client-{}", i % 12),
            v(if i % 3 == 0 { 5 } else { 0 }),
        ));
    }
    for i in 0..1900 {
        instances.push((format!("agent-{}", i % 5), v(0)));
    }
    for _ in 0..3 {
        instances.push(("db".into(), v(45)));
    }
    for _ in 0..77 {
        instances.push(("cache".into(), v(0)));
    }
    assert_eq!(instances.len(), 10_000);
    let runs = 20;
    let mut times = Vec::new();
    let mut stages = 0;
    for _ in 0..runs {
        let t0 = Instant::now();
        let sys = System::new(spec.clone()).unwrap();
        let mut versions = vec![0u64; sys.spec.components.len()];
        for (c, ver) in &instances {
            let ci = sys.component(c).unwrap();
            versions[ci] |= 1 << sys.release(ci, ver).unwrap();
        }
        let start = State { versions, flags: 0 };
        let target = Target {
            releases: (0..20).map(|c| (c, 49)).collect(),
            flags: vec![],
        };
        let moves = sys.plan(&start, &target, 5_000_000).expect("a plan");
        let explained = sys.explain(&start, &moves);
        stages = explained.len();
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "planner: 20 components × 50 releases, 10,000 instances (mixed start, a bridge, skew, a stateful db, required stops): {stages} stages; median {:.1} ms, max {:.1} ms over {runs} runs (goal < 200 ms)",
        times[runs / 2],
        times[runs - 1]
    );
}

/// `glidepath lint` against squawk's CLI (PyPI `squawk-cli`) on the same
/// generated 20,000-statement file: time ratio and backward-compatibility findings.
fn lint_vs_squawk() {
    use std::collections::BTreeMap;
    let bin = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("glidepath");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.sql");
    let templates = [
        "ALTER TABLE t{i} ADD COLUMN c{i} text;",
        "ALTER TABLE t{i} DROP COLUMN c{i};",
        "CREATE INDEX CONCURRENTLY i{i} ON t{i} (a);",
        "ALTER TABLE t{i} RENAME COLUMN a{i} TO b{i};",
        "ALTER TABLE t{i} ALTER COLUMN c{i} TYPE bigint;",
        "ALTER TABLE t{i} ADD COLUMN r{i} int NOT NULL;",
        "CREATE TABLE n{i} (id bigint PRIMARY KEY, v text);",
        "ALTER TABLE t{i} ALTER COLUMN c{i} DROP NOT NULL;",
        "DROP TABLE old{i};",
        "UPDATE t{i} SET a = 1 WHERE id = {i};",
    ];
    let mut sql = String::from("SET lock_timeout = '2s';\nSET statement_timeout = '5s';\n");
    for i in 0..20_000 {
        sql.push_str(&templates[i % templates.len()].replace("{i}", &i.to_string()));
        sql.push('\n');
    }
    std::fs::write(&file, &sql).unwrap();
    let time = |cmd: &mut std::process::Command| {
        let mut best = f64::MAX;
        let mut out = None;
        for _ in 0..3 {
            let t0 = Instant::now();
            let o = cmd.output().expect("runs");
            best = best.min(t0.elapsed().as_secs_f64());
            out = Some(o);
        }
        (best, out.unwrap())
    };
    let (g, gout) = time(
        std::process::Command::new(&bin)
            .arg("lint")
            .arg(&file)
            .arg("--output")
            .arg("json"),
    );
    let Ok(_) = std::process::Command::new("squawk")
        .arg("--version")
        .output()
    else {
        println!("lint: glidepath {g:.2}s on 20,000 statements; squawk not installed (pip install squawk-cli==2.68.0) — no comparison");
        return;
    };
    let (q, qout) = time(
        std::process::Command::new("squawk")
            .arg("--reporter")
            .arg("gcc")
            .arg(&file),
    );
    let compat: Vec<String> = glidepath::lint::RULES
        .iter()
        .filter(|r| r.1 == glidepath::lint::Class::BackwardIncompatible)
        .map(|r| r.0.to_string())
        .collect();
    let mut ours: BTreeMap<String, usize> = BTreeMap::new();
    let v: serde_json::Value = serde_json::from_slice(&gout.stdout).unwrap();
    for f in v["files"][0]["findings"].as_array().unwrap() {
        let rule = f["rule"].as_str().unwrap().to_string();
        if compat.contains(&rule) {
            *ours.entry(rule).or_default() += 1;
        }
    }
    let mut theirs: BTreeMap<String, usize> = BTreeMap::new();
    for line in String::from_utf8_lossy(&qout.stdout).lines() {
        if let Some(rule) = line
            .split(": warning: ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
        {
            if compat.iter().any(|c| c == rule) {
                *theirs.entry(rule.to_string()).or_default() += 1;
            }
        }
    }
    println!(
        "lint: 20,000 statements — glidepath {g:.2}s, squawk {q:.2}s: ratio {:.2} (goal ≤ 1.0); backward-compatibility findings {} (glidepath {:?} / squawk {:?})",
        g / q,
        if ours == theirs { "identical" } else { "DIFFER" },
        ours,
        theirs
    );
}

/// Preflight at `n` local nodes: the real local deployer on real install
/// dirs, a tcp health check per node against one listener, and one custom
/// gate. Returns the wall time of the built-in and declared gates.
async fn preflight_at(n: usize, command_health: bool) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let rel = write_release(dir.path(), &glidepath::demo::releases()[1]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accept = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            drop(s);
        }
    });
    let mut fleet_nodes = String::new();
    for i in 1..=n {
        fleet_nodes.push_str(&format!(
            "  {{ name = \"n{i}\", address = \"127.0.0.1:{}\" }},\n",
            20000 + i
        ));
        let node = dir.path().join("nodes").join(format!("n{i}"));
        std::fs::create_dir_all(node.join("releases").join("1")).unwrap();
        std::os::unix::fs::symlink("releases/1", node.join("current")).unwrap();
    }
    let artifact = rel
        .artifact
        .strip_prefix(dir.path())
        .unwrap()
        .display()
        .to_string();
    let plan_src = format!(
        r#"[release]
version = "2"
artifact = "{artifact}"
sha256 = "{}"
[fleet]
name = "bench"
nodes = [
{fleet_nodes}]
[strategy]
canary = ["n1"]
batch_size = 20
[balancer]
kind = "none"
[deploy]
kind = "local"
install_dir = "nodes/{{node}}"
restart = "true"
[health]
{health}
[rollback]
on = ["health"]

[[gates.custom]]
name = "ticket"
command = "true"
"#,
        rel.sha256,
        health = if command_health {
            "command = \"true\"".to_string()
        } else {
            format!("tcp = \"127.0.0.1:{port}\"")
        }
    );
    let path = dir.path().join("bench.toml");
    std::fs::write(&path, plan_src).unwrap();
    let (plan, _) = glidepath::plan::load(&path).unwrap_or_else(|_| panic!("bench plan invalid"));
    let drivers = Drivers::for_plan(&plan);
    let t0 = Instant::now();
    let (mut results, before) = glidepath::executor::builtin_checks(
        &glidepath::gates::builtin::BuiltinInputs::of(&plan),
        &drivers,
    )
    .await;
    results.extend(
        glidepath::gates::evaluate(
            &plan.gates,
            &glidepath::gates::Inputs::of(&plan),
            jiff::Timestamp::now(),
            glidepath::executor::same_release(&before).as_deref(),
        )
        .await,
    );
    let wall = t0.elapsed().as_secs_f64();
    accept.abort();
    let failing: Vec<_> = results
        .iter()
        .filter(|r| r.verdict != glidepath::gates::Verdict::Pass)
        .collect();
    assert!(failing.is_empty(), "preflight bench: {failing:?}");
    assert_eq!(before.len(), n);
    wall
}

async fn preflight() {
    for command_health in [false, true] {
        for n in [100, 1000] {
            let mut runs = Vec::new();
            for _ in 0..3 {
                runs.push(preflight_at(n, command_health).await);
            }
            runs.sort_by(|a, b| a.total_cmp(b));
            println!(
                "preflight: {n} local nodes, health {}: {:.3} s (best of 3; {:.2} ms per node; worst {:.3} s)",
                if command_health { "command = \"true\"" } else { "tcp" },
                runs[0],
                runs[0] * 1000.0 / n as f64,
                runs[2]
            );
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let what = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    if what == "engine" || what == "all" {
        engine().await;
    }
    if what == "rollback" || what == "all" {
        rollback(5).await;
    }
    if what == "lint" || what == "all" {
        lint_vs_squawk();
    }
    if what == "planner" || what == "all" {
        planner();
    }
    if what == "preflight" || what == "all" {
        preflight().await;
    }
    if what == "prometheus" || what == "all" {
        prometheus(5).await;
    }
}
