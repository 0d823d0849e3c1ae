//! Rollouts against real demo-node processes: promotion, automatic
//! rollback, kill -9 at many points followed by resume, the fleet lease,
//! operator controls and preflight refusals.

use crate::harness::*;
use glidepath::demo::node::Behaviour;
use glidepath::demo::DemoPlan;
use glidepath_core::{Event, StepKind};
use std::time::Duration;

fn knobs() -> DemoPlan {
    DemoPlan {
        window: "3s".into(),
        probe_interval: "500ms".into(),
        batch_size: "2".into(),
        min_samples: 5,
        health_deadline: "10s".into(),
        ..Default::default()
    }
}

fn touched(events: &[Event], node: &str) -> bool {
    events
        .iter()
        .any(|e| matches!(e, Event::Intent { step, .. } if step.node.as_deref() == Some(node)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_release_is_promoted_to_every_node() {
    let env = Env::start(4).await;
    let plan = env.plan(&env.v2, &knobs());
    let out = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 0);
    let text = stdout(&out);
    assert!(text.contains("SLI window of 3s passed"), "{text}");
    assert!(text.contains("start batch 1/2 (node-2, node-3)"), "{text}");
    env.assert_fleet(&["2", "2", "2", "2"]).await;
    assert_eq!(env.current_links(), ["2", "2", "2", "2"]);
    let run = env.latest_run();
    let events = env.events(&run);
    assert_journal_consistent(&events);
    // canary first, then the window, then the peers
    let pos = |pred: &dyn Fn(&Event) -> bool| events.iter().position(pred).unwrap();
    let canary_done = pos(
        &|e| matches!(e, Event::Outcome { step, .. } if step.kind == StepKind::PostCheck && step.node.as_deref() == Some("node-1")),
    );
    let window = pos(&|e| matches!(e, Event::WindowClosed { passed: true, .. }));
    let peer =
        pos(&|e| matches!(e, Event::Intent { step, .. } if step.node.as_deref() == Some("node-2")));
    assert!(canary_done < window && window < peer);

    let status = env.run(&["status", &run, "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["nodes"][3]["now"], "2");
    let hist = env.run(&["history"]);
    assert!(stdout(&hist).contains(&run));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_release_is_rolled_back_on_the_canary_and_peers_are_never_touched() {
    let env = Env::start(3).await;
    let plan = env.plan(&env.v3, &knobs());
    let out = env.run(&["run", plan.to_str().unwrap(), "--output", "json"]);
    assert_eq!(code(&out), 1, "exit 1: rolled back");
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["status"], "rolled_back");
    assert_eq!(v["cause"]["kind"], "sli");
    let reason = v["cause"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("> max") && reason.contains("samples"),
        "reason names value, threshold, samples: {reason}"
    );
    env.assert_fleet(&["1", "1", "1"]).await;
    let events = env.events(v["run_id"].as_str().unwrap());
    assert_journal_consistent(&events);
    assert!(!touched(&events, "node-2") && !touched(&events, "node-3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_failing_its_health_deadline_is_restored() {
    let env = Env::start(2).await;
    // a release whose service never becomes healthy (it cannot read its release file)
    let broken = env.release(Behaviour {
        version: "9".into(),
        error_rate: 0.0,
        latency_ms: 1.0,
    });
    std::fs::write(&broken.artifact, "this is not toml").unwrap();
    let broken = glidepath::plan::Release {
        sha256: glidepath::plan::artifact_sha256(&broken.artifact).unwrap(),
        ..broken
    };
    let plan = env.plan(
        &broken,
        &DemoPlan {
            health_deadline: "1s".into(),
            ..knobs()
        },
    );
    let out = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    let text = stdout(&out);
    assert!(
        text.contains(
            "health check failed → automatic rollback: node-1 not healthy within the 1.0s deadline"
        ),
        "{text}"
    );
    env.assert_fleet(&["1", "1"]).await;
    assert_eq!(env.current_links(), ["1", "1"]);
}

/// Kill glidepath with SIGKILL at `point`, resume, and check the fleet and journal.
async fn crash_then_resume(point: &str, release: &str, expect: &[&str]) {
    let env = Env::start(4).await;
    let rel = if release == "2" { &env.v2 } else { &env.v3 };
    let plan = env.plan(rel, &knobs());
    env.run_until_killed(&["run", plan.to_str().unwrap()], point);
    let run = env.latest_run();
    let before = env.events(&run);
    assert!(
        !matches!(before.last(), Some(Event::Finished { .. })),
        "killed before finishing"
    );
    let out = env.run(&["resume", &run]);
    let want = if release == "2" { 0 } else { 1 };
    assert_eq!(code(&out), want, "resume after {point}");
    env.assert_fleet(expect).await;
    let links: Vec<String> = env.current_links();
    assert_eq!(links, expect, "current symlinks after {point}");
    let events = env.events(&run);
    assert_journal_consistent(&events);
    assert!(
        events[..before.len()] == before[..],
        "resume only appends to the journal"
    );
    // nothing but the step in flight is repeated: one successful switch per node and direction
    for n in ["node-1", "node-2", "node-3", "node-4"] {
        let switches: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                Event::Outcome { step, outcome, .. }
                    if step.kind == StepKind::Switch
                        && step.node.as_deref() == Some(n)
                        && outcome.ok =>
                {
                    step.version.as_deref()
                }
                _ => None,
            })
            .collect();
        let mut dedup = switches.clone();
        dedup.dedup();
        assert!(
            switches.len() <= 2 && dedup == switches,
            "{n} switched {switches:?} after {point}"
        );
    }
    let status = env.run(&["status", &run, "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert!(
        v["decisions"].to_string().contains("resumed after a crash"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_drain_then_resume() {
    // the balancer drained the canary but the journal never heard back
    crash_then_resume("done:drain:node-1", "2", &["2", "2", "2", "2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_switch_before_restart_then_resume() {
    crash_then_resume("outcome:switch:node-1", "2", &["2", "2", "2", "2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_health_check_then_resume() {
    crash_then_resume("intent:check_health:node-1", "2", &["2", "2", "2", "2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_sli_window_then_resume() {
    crash_then_resume("outcome:probe@2", "2", &["2", "2", "2", "2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_between_batches_then_resume() {
    crash_then_resume("transition:group_started@2", "2", &["2", "2", "2", "2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_mid_batch_after_restart_then_resume() {
    crash_then_resume("outcome:restart:node-3", "2", &["2", "2", "2", "2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_automatic_rollback_then_resume() {
    // second switch of node-1 is the switch back to 1
    crash_then_resume("outcome:switch:node-1@2", "3", &["1", "1", "1", "1"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_run_is_refused_while_one_holds_the_fleet_and_promote_continues_it() {
    let env = Env::start(3).await;
    let plan = env.plan(
        &env.v2,
        &DemoPlan {
            pauses: "pauses = [\"after-canary\"]".into(),
            ..knobs()
        },
    );
    let mut first = env.spawn(&["run", plan.to_str().unwrap()]);
    let j = env.journal();
    wait_until(
        "the first run to pause after the canary",
        Duration::from_secs(60),
        || {
            latest_events(&j)
                .iter()
                .any(|e| matches!(e, Event::WindowClosed { passed: true, .. }))
        },
    )
    .await;
    let run = env.latest_run();
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
    let plan = env.plan(
        &env.v2,
        &DemoPlan {
            pauses: "pauses = [\"after-canary\"]".into(),
            ..knobs()
        },
    );
    let mut first = env.spawn(&["run", plan.to_str().unwrap()]);
    let j = env.journal();
    wait_until("the run to pause", Duration::from_secs(60), || {
        latest_events(&j)
            .iter()
            .any(|e| matches!(e, Event::WindowClosed { .. }))
    })
    .await;
    let run = env.latest_run();
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
    let plan = env.plan(
        &env.v2,
        &DemoPlan {
            pauses: "pauses = [\"after-canary\"]".into(),
            ..knobs()
        },
    );
    let mut first = env.spawn(&["run", plan.to_str().unwrap()]);
    let j = env.journal();
    wait_until("the run to pause", Duration::from_secs(60), || {
        latest_events(&j)
            .iter()
            .any(|e| matches!(e, Event::WindowClosed { .. }))
    })
    .await;
    let run = env.latest_run();
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
    let mut child = env.spawn(&["run", plan.to_str().unwrap()]);
    let j = env.journal();
    wait_until("the SLI window to start", Duration::from_secs(60), || {
        latest_events(&j)
            .iter()
            .any(|e| matches!(e, Event::Outcome { step, .. } if step.kind == StepKind::Probe))
    })
    .await;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_refusals_change_nothing() {
    let mut env = Env::start(2).await;
    // artifact changed after review: checksum gate
    let plan = env.plan(&env.v2, &knobs());
    let good = std::fs::read_to_string(&env.v2.artifact).unwrap();
    std::fs::write(
        &env.v2.artifact,
        good.replace("latency_ms", "latency_ms = 1\n#"),
    )
    .unwrap();
    let out = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 3, "exit 3: gate refused");
    assert!(stderr(&out).contains("refusing to deploy an artifact that is not the one reviewed"));
    std::fs::write(&env.v2.artifact, good).unwrap();
    env.assert_fleet(&["1", "1"]).await;
    // a node that does not answer: infrastructure unreachable
    env.traffic.take().unwrap().stop().await;
    env.fleet.nodes[1].kill();
    let out = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 4, "exit 4: unreachable");
    assert!(
        stderr(&out).contains("node-2") && stderr(&out).contains("no node was changed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.current_links(), ["1", "1"]);
    let runs = env.journal().runs(10).unwrap();
    assert!(
        runs.iter().all(|r| r.status == "refused"),
        "refused runs are journaled as such"
    );
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
    let child = env.spawn(&["run", plan.to_str().unwrap(), "--output", "json"]);
    let j = env.journal();
    wait_until("the SLI window to probe", Duration::from_secs(60), || {
        latest_events(&j)
            .iter()
            .any(|e| matches!(e, Event::Outcome { step, .. } if step.kind == StepKind::Probe))
    })
    .await;
    env.fleet.nodes[2].kill();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
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
    let client = reqwest::Client::new();
    for n in &env.fleet.nodes[..2] {
        let s: serde_json::Value = client
            .get(format!("http://{}/admin/state", n.address))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            (s["version"].as_str(), s["drained"].as_bool()),
            (Some("2"), Some(false)),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_placeholder_has_its_value_in_the_post_check() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs());
    // a health command that needs {version}: empty, it fails
    let text = std::fs::read_to_string(&plan).unwrap().replacen(
        "[health]\n",
        "[health]\ncommand = '[ \"x{version}\" != \"x\" ]'\n",
        1,
    );
    assert!(text.contains("command = "));
    std::fs::write(&plan, text).unwrap();
    let out = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    env.assert_fleet(&["2", "2"]).await;
    let events = env.events(&env.latest_run());
    assert!(events.iter().any(|e| matches!(e, Event::Outcome { step, outcome, .. } if step.kind == StepKind::PostCheck && outcome.ok && step.version.as_deref() == Some("2"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_reports_refusals_too() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs());
    std::fs::write(&env.v2.artifact, "tampered").unwrap();
    let out = env.run(&["run", plan.to_str().unwrap(), "--output", "json"]);
    assert_eq!(code(&out), 3);
    // one document on stdout, nothing else
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["exit_code"], 3);
    assert!(v["error"].as_str().unwrap().contains("sha256"));
}

/// The `command` balancer and deployer, and TCP + command health probes,
/// driving the demo fleet with nothing but shell tools.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_drivers_roll_out_and_roll_back() {
    let env = Env::start(3).await;
    let plan_for = |rel: &glidepath::plan::Release| {
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
name  = "cmd"
nodes = [
{nodes}]

[strategy]
canary         = ["node-1"]
batch_size     = "100%"
sli_window     = "3s"
probe_interval = "500ms"

[balancer]
kind   = "command"
drain  = "curl -fsS -X POST http://{{address}}/admin/drain"
enable = "curl -fsS -X POST http://{{address}}/admin/ready"
active = "curl -fsS http://{{address}}/admin/state | grep -o '\"active\":[0-9]*' | cut -d: -f2"
check  = "curl -fsS http://{{address}}/admin/state | grep -q '\"drained\":false'"

[deploy]
kind    = "command"
install_dir = "{dir}/nodes/{{node}}"
current = "basename \"$(readlink {{install_dir}}/current)\""
stage   = "mkdir -p {{install_dir}}/releases/{{version}} && cp {{artifact}} {{install_dir}}/releases/{{version}}/ && echo '{{sha256}}  {{install_dir}}/releases/{{version}}/release.toml' | sha256sum -c -"
switch  = "ln -sfn releases/{{version}} {{install_dir}}/.next && mv -T {{install_dir}}/.next {{install_dir}}/current"
restart = "kill -HUP $(cat {{install_dir}}/node.pid)"

[health]
tcp         = "{{address}}"
command     = "curl -fsS http://{{address}}/health"
version_url = "http://{{address}}/version"
deadline    = "15s"
interval    = "100ms"

[sli]
source = "scrape"

[[sli.check]]
name        = "error rate"
kind        = "error_ratio"
metric      = "demo_http_requests_total"
max         = 0.05
min_samples = 5

[rollback]
on = ["health", "sli"]
"#,
            v = rel.version,
            sha = rel.sha256,
            nodes = env.fleet.plan_nodes(),
            dir = env.path().display(),
        );
        let path = env.path().join(format!("cmd-{}.toml", rel.version));
        std::fs::write(&path, text).unwrap();
        path
    };
    let out = env.run(&["run", plan_for(&env.v2).to_str().unwrap()]);
    assert_eq!(code(&out), 0);
    assert!(
        stdout(&out).contains("stage command ok"),
        "{}",
        stdout(&out)
    );
    env.assert_fleet(&["2", "2", "2"]).await;
    assert_eq!(env.current_links(), ["2", "2", "2"]);
    let out = env.run(&["run", plan_for(&env.v3).to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    env.assert_fleet(&["2", "2", "2"]).await;
    assert_eq!(env.current_links(), ["2", "2", "2"]);
}

/// A node that *reports* shell as its release (the command deployer's
/// `current` printed `1;touch PWNED`) is refused in preflight, named, and
/// the report never reaches a shell (here: the health command's `{version}`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reporting_shell_as_its_release_is_refused() {
    let env = Env::start(2).await;
    let artifact = env
        .v2
        .artifact
        .strip_prefix(env.path())
        .unwrap()
        .display()
        .to_string();
    let text = format!(
        r#"[release]
version  = "2"
artifact = "{artifact}"
sha256   = "{sha}"

[fleet]
name  = "reported"
nodes = [
{nodes}]

[strategy]
canary = ["node-1"]

[balancer]
kind = "none"

[deploy]
kind    = "command"
install_dir = "{dir}/nodes/{{node}}"
current = "case {{node}} in node-2) echo '1;touch PWNED' ;; *) basename \"$(readlink {{install_dir}}/current)\" ;; esac"
stage   = "false"
switch  = "false"
restart = "kill -HUP $(cat {{install_dir}}/node.pid)"

[health]
http    = "http://{{address}}/health"
command = "test -n {{version}}"

[rollback]
on = ["health"]
"#,
        sha = env.v2.sha256,
        nodes = env.fleet.plan_nodes(),
        dir = env.path().display(),
    );
    let plan = env.path().join("reported.toml");
    std::fs::write(&plan, text).unwrap();
    let out = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 3, "refused before any change");
    assert!(
        stdout(&out).contains("node node-2 reports \"1;touch PWNED\" as its current release"),
        "{}",
        stdout(&out)
    );
    assert!(
        !env.path().join("PWNED").exists(),
        "the reported release ran as shell"
    );
    env.assert_fleet(&["1", "1"]).await;
    assert_eq!(env.current_links(), ["1", "1"]);
}

/// Declared gates: a freeze window refuses the run before any change; a
/// forced gate runs, and the journal says who forced it and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_refuse_and_forcing_is_journaled() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs());
    let migrations = env.path().join("migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    std::fs::write(
        migrations.join("0001_add.sql"),
        "SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN nick text;\n",
    )
    .unwrap();
    std::fs::write(
        migrations.join("0002_drop.post.sql"),
        "SET lock_timeout = '2s';\nALTER TABLE users DROP COLUMN old;\n",
    )
    .unwrap();
    std::fs::write(
        env.path().join("deprecations.toml"),
        "[[key]]\nname = \"API_LEGACY\"\ndeprecated_in = \"2\"\nreplacement = \"API_NEW\"\n",
    )
    .unwrap();
    for n in &env.fleet.nodes {
        std::fs::write(n.dir.join("app.env"), "API_LEGACY=1\n").unwrap();
    }
    let gates = "\n[gates.config]\nmatrix = \"deprecations.toml\"\nfiles = [\"{install_dir}/app.env\"]\nenv = [\"API_MODE\", \"API_TOKEN\"]\nenv_clear = [\"API_MODE\"]\n\n[gates.migrations]\ndir = \"migrations\"\n\n[[gates.freeze]]\nname = \"always\"\nfrom = \"2000-01-01T00:00:00Z\"\nto = \"2100-01-01T00:00:00Z\"\n\n[[gates.custom]]\nname = \"ticket\"\ncommand = \"true\"\n";
    let text = std::fs::read_to_string(&plan).unwrap() + gates;
    std::fs::write(&plan, text).unwrap();

    let out = env.run(&["preflight", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 3);
    let table = stdout(&out);
    assert!(
        table.contains("migrations") && table.contains("2 file(s) safe"),
        "{table}"
    );
    assert!(
        table.contains("freeze                 FAIL     inside freeze window `always`"),
        "{table}"
    );
    assert!(table.contains("ticket                 pass"), "{table}");
    assert!(
        table.contains("config                 warn     `API_LEGACY` in"),
        "{table}"
    );
    assert!(
        table.contains(
            "rollback-target        pass     last-known-good releases: node-1=1 node-2=1"
        ),
        "{table}"
    );

    let out = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 3, "a gate refused");
    assert!(
        stderr(&out).contains("freeze: inside freeze window `always`")
            && stderr(&out).contains("--force freeze"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.current_links(), ["1", "1"]);

    let out = env.run(&["run", plan.to_str().unwrap(), "--force", "freeze"]);
    assert_eq!(code(&out), 2, "--force needs --reason");

    let out = env
        .cmd(&[
            "run",
            plan.to_str().unwrap(),
            "--force",
            "freeze",
            "--reason",
            "CVE-2026-1234 hotfix, approved in CHG-42",
        ])
        .env("API_MODE", "fast")
        .env("API_TOKEN", "s3cr3t-value")
        .env("XDG_STATE_HOME", env.path().join("state"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).contains("FORCED"), "{}", stdout(&out));
    let run = env.latest_run();
    let forced = env.events(&run).into_iter().find_map(|e| match e {
        Event::GateForced {
            gate, reason, by, ..
        } => Some((gate, reason, by)),
        _ => None,
    });
    let (gate, reason, by) = forced.expect("the override is journaled");
    assert_eq!(gate, "freeze");
    assert_eq!(reason, "CVE-2026-1234 hotfix, approved in CHG-42");
    assert!(by.contains('@'), "who: {by}");
    let status = env.run(&["status", &run]);
    assert!(
        stdout(&status).contains("gate `freeze` forced by"),
        "{}",
        stdout(&status)
    );
    // the snapshot: config hashes and env values, the secret fingerprinted and nowhere in the journal
    let snap = env.events(&run).into_iter().find_map(|e| match e {
        Event::Snapshot {
            config_hashes, env, ..
        } => Some((config_hashes, env)),
        _ => None,
    });
    let (hashes, vars) = snap.expect("a snapshot is journaled");
    assert_eq!(hashes.len(), 2);
    assert_eq!(vars[0], ("API_MODE".to_string(), "fast".to_string()));
    assert_eq!(vars[1].0, "API_TOKEN");
    assert!(vars[1].1.starts_with("hmac-sha256:"), "{vars:?}");
    let db = std::fs::read(env.journal_path()).unwrap();
    assert!(
        !db.windows(12).any(|w| w == b"s3cr3t-value"),
        "the secret never reaches the journal"
    );
    env.assert_fleet(&["2", "2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsafe_migration_or_failing_custom_gate_refuses_the_run() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs());
    let migrations = env.path().join("migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    std::fs::write(
        migrations.join("0003_drop.sql"),
        "SET lock_timeout = '2s';\nALTER TABLE users DROP COLUMN nickname;\n",
    )
    .unwrap();
    let text = std::fs::read_to_string(&plan).unwrap() + "\n[gates.migrations]\ndir = \"migrations\"\n\n[[gates.custom]]\nname = \"change-ticket\"\ncommand = \"echo 'CHG-7 is not approved' >&2; exit 1\"\n";
    std::fs::write(&plan, text).unwrap();
    let out = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 3);
    let err = stderr(&out);
    assert!(
        err.contains("migrations: backward-incompatible") && err.contains("ban-drop-column"),
        "{err}"
    );
    assert!(
        err.contains("change-ticket") && err.contains("CHG-7 is not approved"),
        "{err}"
    );
    assert_eq!(env.current_links(), ["1", "1"]);
    // built-in gates cannot be forced, unknown gates are named
    let out = env.run(&[
        "run",
        plan.to_str().unwrap(),
        "--force",
        "no-such-gate",
        "--reason",
        "x",
    ]);
    assert_eq!(code(&out), 3);
    assert!(
        stderr(&out).contains("the plan has no gate `no-such-gate`"),
        "{}",
        stderr(&out)
    );
}

/// Reachability and permissions are proven before anything changes: a
/// restart target that does not exist refuses the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_target_check_refuses_before_any_change() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs());
    let good = std::fs::read_to_string(&plan).unwrap().replace(
        "keep_releases = 3",
        "keep_releases = 3\ncheck = \"test -f {install_dir}/node.pid\"",
    );
    std::fs::write(
        &plan,
        good.replace(
            "test -f {install_dir}/node.pid",
            "systemctl-cat-nosuch-unit api",
        ),
    )
    .unwrap();
    let out = env.run(&["preflight", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 3);
    assert!(
        stdout(&out)
            .contains("permissions            FAIL     node-1: restart target check failed"),
        "{}",
        stdout(&out)
    );
    assert_eq!(code(&env.run(&["run", plan.to_str().unwrap()])), 3);
    assert_eq!(env.current_links(), ["1", "1"]);
    std::fs::write(&plan, good).unwrap();
    let out = env.run(&["preflight", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert!(
        stdout(&out).contains("install dirs writable, restart target checked on 2 node(s)"),
        "{}",
        stdout(&out)
    );
}

/// `since_git`: only the migrations added since a revision are the release's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_since_a_git_revision() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs());
    let m = env.path().join("migrations");
    std::fs::create_dir_all(&m).unwrap();
    let git = |args: &[&str]| {
        let o = std::process::Command::new("git")
            .args(args)
            .current_dir(&m)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    git(&["init", "-q"]);
    // an old, already-deployed migration that would fail today's lint
    std::fs::write(m.join("0001_old.sql"), "DROP TABLE legacy;\n").unwrap();
    git(&["add", "."]);
    git(&[
        "-c",
        "user.email=t@e",
        "-c",
        "user.name=t",
        "commit",
        "-qm",
        "1.0.9",
    ]);
    git(&["tag", "v1"]);
    std::fs::write(
        m.join("0002_new.sql"),
        "SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN nick text;\n",
    )
    .unwrap();
    git(&["add", "."]);
    git(&[
        "-c",
        "user.email=t@e",
        "-c",
        "user.name=t",
        "commit",
        "-qm",
        "1.0.10",
    ]);
    let text = std::fs::read_to_string(&plan).unwrap()
        + "\n[gates.migrations]\ndir = \"migrations\"\nsince_git = \"v1\"\n";
    std::fs::write(&plan, &text).unwrap();
    let out = env.run(&["preflight", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert!(
        stdout(&out).contains("migrations             pass     1 file(s) safe"),
        "{}",
        stdout(&out)
    );
    // the release the fleet runs now (1) names the tag: v{deployed} = v1
    std::fs::write(
        &plan,
        text.replace("since_git = \"v1\"", "since_git = \"v{deployed}\""),
    )
    .unwrap();
    let out = env.run(&["preflight", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert!(
        stdout(&out).contains("migrations             pass     1 file(s) safe"),
        "{}",
        stdout(&out)
    );
    std::fs::write(
        &plan,
        text.replace("since_git = \"v1\"", "since_git = \"no-such-tag\""),
    )
    .unwrap();
    let out = env.run(&["preflight", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 3);
    assert!(
        stdout(&out).contains("git diff no-such-tag"),
        "{}",
        stdout(&out)
    );
}

/// A node whose releases/ lost its last-known-good release: refused, unless
/// the plan provides it as a [rollback] artifact, which a rollback restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provided_rollback_artifact_restores_a_missing_last_known_good() {
    let env = Env::start(2).await;
    for n in &env.fleet.nodes {
        std::fs::remove_dir_all(n.dir.join("releases/1")).unwrap(); // current → releases/1 now dangles
    }
    let plan = env.plan(&env.v3, &knobs());
    let out = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 3);
    assert!(
        stderr(&out).contains(
            "the current release 1 is missing from releases/ (provide it with [rollback] artifact"
        ),
        "{}",
        stderr(&out)
    );
    let artifact = env
        .v1
        .artifact
        .strip_prefix(env.path())
        .unwrap()
        .display()
        .to_string();
    let text = std::fs::read_to_string(&plan).unwrap().replace("[rollback]\non = [\"health\", \"sli\"]", &format!("[rollback]\non = [\"health\", \"sli\"]\nartifact = \"{artifact}\"\nversion = \"1\"\nsha256 = \"{}\"", env.v1.sha256));
    std::fs::write(&plan, text).unwrap();
    let out = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "the bad canary was rolled back");
    assert!(
        stdout(&out).contains("restored from the [rollback] artifact"),
        "{}",
        stdout(&out)
    );
    env.assert_fleet(&["1", "1"]).await;
    assert!(env.fleet.nodes[0]
        .dir
        .join("releases/1/release.toml")
        .exists());
}
