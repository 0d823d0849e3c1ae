//! Rollouts against real demo-node processes: promotion, automatic
//! rollback, kill -9 at many points followed by resume, and the command
//! drivers.

use crate::harness::*;
use glidepath::demo::node::Behaviour;
use glidepath::demo::plans::{relative_artifact, release_and_fleet};
use glidepath::demo::DemoPlan;
use glidepath_core::{Event, StepKind};

/// The rollouts' plan: a 3 s SLI window, 5 samples per check.
pub(crate) fn knobs() -> DemoPlan {
    DemoPlan::quick("3s", 5)
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
    // the same release again: nothing to roll out, and nothing to roll back to
    let again = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&again), 3, "{}", stdout(&again));
    assert!(
        stdout(&again).contains("every node already runs 2: nothing to roll out"),
        "{}",
        stdout(&again)
    );
    env.assert_fleet(&["2", "2", "2", "2"]).await;
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
        leak_after_s: None,
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

/// Kill glidepath with SIGKILL at `point`, resume, and check the fleet and
/// journal (`backend`: where the commands journal).
async fn crash_then_resume_on(backend: Backend, point: &str, release: &str, expect: &[&str]) {
    if backend == Backend::Postgres && !postgres_available() {
        return;
    }
    let env = Env::start_on(4, backend).await;
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
    if backend == Backend::Postgres {
        // the rows themselves: numbered 1..N without a gap, none written twice
        let pg = env.pg();
        let n = events.len();
        assert_eq!(
            pg.psql(&format!(
                "SELECT count(*), min(seq), max(seq) FROM glidepath.events WHERE run_id = '{run}'"
            )),
            format!("{n}|1|{n}"),
            "the run's event rows after {point}"
        );
        assert_eq!(
            pg.psql("SELECT count(*) FROM (SELECT data FROM glidepath.events GROUP BY run_id, data HAVING count(*) > 1) d"),
            "0",
            "an event journaled twice after {point}"
        );
        assert_eq!(
            pg.psql("SELECT count(*) FROM glidepath.leases WHERE run_id IS NOT NULL"),
            "0",
            "the lease is given back at the end"
        );
    }
}

async fn crash_then_resume(point: &str, release: &str, expect: &[&str]) {
    crash_then_resume_on(Backend::Sqlite, point, release, expect).await;
}

/// The same crash on the PostgreSQL journal.
async fn pg_crash_then_resume(point: &str, release: &str, expect: &[&str]) {
    crash_then_resume_on(Backend::Postgres, point, release, expect).await;
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

// The kill -9 suite again, journaling in PostgreSQL.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_kill_during_drain_then_resume() {
    pg_crash_then_resume("done:drain:node-1", "2", &["2", "2", "2", "2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_kill_after_switch_before_restart_then_resume() {
    pg_crash_then_resume("outcome:switch:node-1", "2", &["2", "2", "2", "2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_kill_during_health_check_then_resume() {
    pg_crash_then_resume("intent:check_health:node-1", "2", &["2", "2", "2", "2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_kill_during_sli_window_then_resume() {
    pg_crash_then_resume("outcome:probe@2", "2", &["2", "2", "2", "2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_kill_between_batches_then_resume() {
    pg_crash_then_resume("transition:group_started@2", "2", &["2", "2", "2", "2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_kill_mid_batch_after_restart_then_resume() {
    pg_crash_then_resume("outcome:restart:node-3", "2", &["2", "2", "2", "2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_kill_during_automatic_rollback_then_resume() {
    pg_crash_then_resume("outcome:switch:node-1@2", "3", &["1", "1", "1", "1"]).await;
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

/// The `command` balancer and deployer, and TCP + command health probes,
/// driving the demo fleet with nothing but shell tools.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_drivers_roll_out_and_roll_back() {
    let env = Env::start(3).await;
    let plan_for = |rel: &glidepath::plan::Release| {
        let head = release_and_fleet(
            rel,
            &relative_artifact(rel, env.path()),
            "cmd",
            &env.fleet.plan_nodes(),
        );
        let text = format!(
            r#"{head}
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
