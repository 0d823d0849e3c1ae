//! End to end against real HAProxy, Prometheus and sshd from the system's
//! packages, started on 127.0.0.1 in the test's directory. Under CI
//! (`CI=true`) a missing component fails the test; elsewhere it skips loudly.

use crate::harness::*;
use glidepath::demo::infra::{find, Haproxy, Prometheus, Sshd};
use glidepath::drivers::{HaproxyBalancer, Target};
use glidepath::plan::Release;
use glidepath_core::{Event, StepKind};
use std::path::PathBuf;
use std::time::Duration;

fn available(components: &[&str]) -> bool {
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

struct Real {
    env: Env,
    haproxy: Haproxy,
    prom: Prometheus,
}

async fn real(n: usize) -> Real {
    let mut env = Env::start(n).await;
    // traffic goes through HAProxy, not straight at the nodes
    env.traffic.take().unwrap().stop().await;
    let servers: Vec<(String, String)> = env
        .fleet
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.address.clone()))
        .collect();
    let haproxy = Haproxy::start(
        &env.path().join("haproxy"),
        &[("api", servers.clone()), ("api_internal", servers.clone())],
    )
    .await
    .expect("haproxy starts");
    let prom = Prometheus::start(
        &env.path().join("prometheus"),
        &servers.iter().map(|s| s.1.clone()).collect::<Vec<_>>(),
    )
    .await
    .expect("prometheus starts");
    env.traffic = Some(glidepath::demo::fleet::Traffic::through(
        &format!("{}/", haproxy.frontend),
        150,
    ));
    Real { env, haproxy, prom }
}

/// The classic recipe: HAProxy pool(s), Prometheus SLIs over a 10 s rate window.
fn real_plan(r: &Real, rel: &Release, window: &str, extra_strategy: &str) -> PathBuf {
    let env = &r.env;
    let artifact = rel
        .artifact
        .strip_prefix(env.path())
        .unwrap()
        .display()
        .to_string();
    let text = glidepath::demo::haproxy_prometheus_plan(
        &env.fleet,
        rel,
        &artifact,
        &r.haproxy.socket,
        &r.haproxy.frontend,
        &r.prom.url,
        window,
        extra_strategy,
    );
    let path = env.path().join(format!("real-{}.toml", rel.version));
    std::fs::write(&path, text).unwrap();
    path
}

fn haproxy_driver(r: &Real, backend: &str) -> HaproxyBalancer {
    HaproxyBalancer::new(
        Some(r.haproxy.socket.clone()),
        None,
        backend.into(),
        Default::default(),
        None,
        Duration::from_secs(5),
    )
}

fn target(env: &Env, i: usize) -> Target {
    let n = &env.fleet.nodes[i];
    Target {
        name: n.name.clone(),
        address: n.address.clone(),
        install_dir: n.dir.clone(),
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
    let probes_ok = |j: &glidepath::journal::Journal| {
        latest_events(j).iter().filter(|e| matches!(e, Event::Outcome { step, outcome, .. } if step.kind == StepKind::Probe && outcome.observations.iter().all(|o| o.error.is_none()))).count()
    };
    wait_until("two good probes", Duration::from_secs(90), || {
        probes_ok(&j) >= 2
    })
    .await;
    r.prom.stop();
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
    r.prom.restart().await.expect("prometheus restarts");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
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
    let Real { env, haproxy, prom } = r;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_over_ssh_through_a_real_sshd() {
    if !available(&["sshd", "ssh"]) {
        return;
    }
    let env = Env::start(3).await;
    let sshd = Sshd::start(&env.path().join("sshd"))
        .await
        .expect("sshd starts");
    let write_with = |known_hosts: &std::path::Path, rel: &Release, health: &str| {
        let artifact = rel
            .artifact
            .strip_prefix(env.path())
            .unwrap()
            .display()
            .to_string();
        let text = format!(
            r#"[release]
version  = "{v}"
artifact = "{artifact}"
sha256   = "{sha}"

[fleet]
name  = "ssh"
nodes = [
{nodes}]

[strategy]
canary     = ["node-1"]
batch_size = 2

[balancer]
kind  = "http"
drain = "http://{{address}}/admin/drain"
ready = "http://{{address}}/admin/ready"
state = "http://{{address}}/admin/state"

[deploy]
kind          = "ssh"
host          = "127.0.0.1"
user          = "root"
port          = {port}
identity_file = "{key}"
ssh_options   = ["-o", "UserKnownHostsFile={known}"]
install_dir   = "{dir}/nodes/{{node}}"
restart       = "kill -HUP $(cat {{install_dir}}/node.pid)"

[health]
http        = "http://{{address}}/health"
version_url = "http://{{address}}/version"
deadline    = "15s"
interval    = "100ms"
{health}

[rollback]
on = ["health"]
"#,
            v = rel.version,
            sha = rel.sha256,
            nodes = env.fleet.plan_nodes(),
            port = sshd.port,
            key = sshd.client_key.display(),
            known = known_hosts.display(),
            dir = env.path().display(),
        );
        let path = env.path().join("ssh.toml");
        std::fs::write(&path, text).unwrap();
        path
    };
    let write = |known_hosts: &std::path::Path, rel: &Release| write_with(known_hosts, rel, "");
    // host key checking is on: an unknown host key refuses the run before any change
    let empty = env.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let out = env.run(&["run", write(&empty, &env.v2).to_str().unwrap()]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Host key verification failed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.current_links(), ["1", "1", "1"]);

    let out = env.run(&["run", write(&sshd.known_hosts, &env.v2).to_str().unwrap()]);
    assert_eq!(code(&out), 0);
    assert!(
        stdout(&out).contains("verified on the node"),
        "{}",
        stdout(&out)
    );
    env.assert_fleet(&["2", "2", "2"]).await;
    assert_eq!(env.current_links(), ["2", "2", "2"]);

    // a directory artifact travels as a tarball and is hashed on the node
    let d = env.path().join("dist/dir-4");
    std::fs::create_dir_all(d.join("doc")).unwrap();
    std::fs::write(
        d.join("release.toml"),
        glidepath::demo::node::release_toml(&glidepath::demo::node::Behaviour {
            version: "4".into(),
            error_rate: 0.0,
            latency_ms: 5.0,
        }),
    )
    .unwrap();
    std::fs::write(d.join("doc/NOTES"), "release notes").unwrap();
    let v4 = Release {
        version: "4".into(),
        sha256: glidepath::plan::artifact_sha256(&d).unwrap(),
        artifact: d,
    };
    let out = env.run(&["run", write(&sshd.known_hosts, &v4).to_str().unwrap()]);
    assert_eq!(code(&out), 0);
    env.assert_fleet(&["4", "4", "4"]).await;
    assert_eq!(
        std::fs::read_to_string(env.fleet.nodes[0].dir.join("current/doc/NOTES")).unwrap(),
        "release notes"
    );

    // symlinks inside the artifact travel as links and hash the same on the
    // node; a stale marker over a tampered releases/5 is not trusted
    let d5 = env.path().join("dist/dir-5");
    std::fs::create_dir_all(d5.join("doc")).unwrap();
    std::fs::write(
        d5.join("release.toml"),
        glidepath::demo::node::release_toml(&glidepath::demo::node::Behaviour {
            version: "5".into(),
            error_rate: 0.0,
            latency_ms: 5.0,
        }),
    )
    .unwrap();
    std::fs::write(d5.join("doc/NOTES"), "notes of 5").unwrap();
    std::os::unix::fs::symlink("doc/NOTES", d5.join("NOTES")).unwrap();
    std::os::unix::fs::symlink("../release.toml", d5.join("doc/release.toml")).unwrap();
    let v5 = Release {
        version: "5".into(),
        sha256: glidepath::plan::artifact_sha256(&d5).unwrap(),
        artifact: d5.clone(),
    };
    let planted = env.fleet.nodes[1].dir.join("releases/5");
    std::fs::create_dir_all(planted.join("doc")).unwrap();
    std::fs::write(planted.join(".glidepath-sha256"), &v5.sha256).unwrap();
    std::fs::write(planted.join("doc/NOTES"), "tampered").unwrap();
    let out = env.run(&["run", write(&sshd.known_hosts, &v5).to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert!(
        stdout(&out).contains("did not match"),
        "the planted releases/5 is staged again: {}",
        stdout(&out)
    );
    env.assert_fleet(&["5", "5", "5"]).await;
    for n in &env.fleet.nodes {
        assert_eq!(
            std::fs::read_link(n.dir.join("current/NOTES")).unwrap(),
            std::path::Path::new("doc/NOTES"),
            "kept as a link on {}",
            n.name
        );
        assert_eq!(
            std::fs::read_to_string(n.dir.join("current/NOTES")).unwrap(),
            "notes of 5"
        );
    }

    // a node whose `current` names shell is refused in preflight, and the
    // name never reaches a shell (the health command's {version})
    let node3 = &env.fleet.nodes[2].dir;
    std::fs::create_dir_all(node3.join("releases/1;touch PWNED")).unwrap();
    std::fs::remove_file(node3.join("current")).unwrap();
    std::os::unix::fs::symlink("releases/1;touch PWNED", node3.join("current")).unwrap();
    let out = env.run(&[
        "run",
        write_with(
            &sshd.known_hosts,
            &env.v3,
            "command = \"test -n {version}\"",
        )
        .to_str()
        .unwrap(),
    ]);
    assert_eq!(code(&out), 3, "{}", stdout(&out));
    assert!(
        stdout(&out).contains("node node-3 reports \"1;touch PWNED\" as its current release"),
        "{}",
        stdout(&out)
    );
    assert!(
        !env.path().join("PWNED").exists(),
        "the reported release ran as shell"
    );
    assert!(!node3.join("PWNED").exists());
}

/// A short retry budget for the outage tests.
const RETRY: &str = r#"retry = { backoff = "200ms", max_backoff = "1s", deadline = "60s" }"#;

fn infra_faults(events: &[Event], node: &str) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Outcome { step, outcome, .. } if step.node.as_deref() == Some(node) && outcome.infra && !outcome.ok))
        .count()
}

/// Every node runs `version` and is in rotation in both HAProxy backends.
async fn assert_in_rotation(r: &Real) {
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

async fn wait_child(child: std::process::Child, limit: Duration) -> std::process::Output {
    let pid = child.id();
    let waiter = tokio::task::spawn_blocking(move || child.wait_with_output());
    match tokio::time::timeout(limit, waiter).await {
        Ok(out) => {
            let out = out.unwrap().unwrap();
            eprintln!(
                "--- glidepath (spawned) → {:?}\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            out
        }
        Err(_) => {
            // SAFETY: killing the child we spawned, by its PID.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("glidepath did not end within {limit:?}: a step hangs");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_killed_mid_batch_pauses_the_run_and_it_finishes_when_back() {
    if !available(&["haproxy", "prometheus"]) {
        return;
    }
    let mut r = real(3).await;
    let plan = real_plan(&r, &r.env.v2, "3s", RETRY);
    let child = r.env.spawn(&["run", plan.to_str().unwrap()]);
    let j = r.env.journal();
    wait_until("node-2 (batch 1) drained", Duration::from_secs(90), || {
        latest_events(&j).iter().any(|e| matches!(e, Event::Outcome { step, outcome, .. } if step.kind == StepKind::Drain && step.node.as_deref() == Some("node-2") && outcome.ok))
    })
    .await;
    r.haproxy.kill();
    let run = r.env.latest_run();
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
    r.haproxy.restart().await.expect("haproxy restarts");
    let out = wait_child(child, Duration::from_secs(120)).await;
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
    let child = r.env.spawn(&["run", plan.to_str().unwrap()]);
    let j = r.env.journal();
    wait_until("node-2 (batch 1) drained", Duration::from_secs(90), || {
        latest_events(&j).iter().any(|e| matches!(e, Event::Outcome { step, outcome, .. } if step.kind == StepKind::Drain && step.node.as_deref() == Some("node-2") && outcome.ok))
    })
    .await;
    r.haproxy.kill();
    let out = wait_child(child, Duration::from_secs(60)).await;
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
    r.haproxy.restart().await.expect("haproxy restarts");
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
    let back_drains = |j: &glidepath::journal::Journal| {
        j.events(&run).unwrap().iter().filter(|e| matches!(e, Event::Outcome { step, outcome, .. } if step.kind == StepKind::Drain && outcome.ok && step.reason.contains("restore"))).count()
    };
    wait_until("a restore drained a node", Duration::from_secs(60), || {
        back_drains(&j) >= 1
    })
    .await;
    r.haproxy.kill();
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
    r.haproxy.restart().await.expect("haproxy restarts");
    let out = wait_child(child, Duration::from_secs(120)).await;
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
    let j = r.env.journal();
    wait_until("batch 1 restarting", Duration::from_secs(90), || {
        latest_events(&j).iter().any(|e| matches!(e, Event::Intent { step, .. } if step.kind == StepKind::Restart && step.node.as_deref() != Some("node-1")))
    })
    .await;
    r.haproxy.kill();
    let run = r.env.latest_run();
    wait_until("failed attempts", Duration::from_secs(30), || {
        let ev = j.events(&run).unwrap();
        infra_faults(&ev, "node-2") + infra_faults(&ev, "node-3") >= 2
    })
    .await;
    // the operator aborts while the balancer is down: acknowledged, and the
    // restores wait for the balancer instead of giving up or deadlocking
    let out = r.env.run(&["abort", &run, "--reason", "balancer trouble"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    r.haproxy.restart().await.expect("haproxy restarts");
    let out = wait_child(child, Duration::from_secs(120)).await;
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
