//! The README's exit-code table, row by row: each code is produced by a real
//! scenario through the binary, and every code of the table has its test
//! here (`the_readme_table_and_these_tests_agree` reads both).

use crate::harness::*;
use crate::rollout::knobs;
use glidepath_core::Event;
use std::time::Duration;

/// Each code of the table and the test that produces it.
const ROWS: &[(u8, &str)] = &[
    (0, "code_0_a_good_release_everywhere"),
    (1, "code_1_and_9_an_operator_rollback_then_nothing_to_do"),
    (2, "code_2_invalid_input"),
    (3, "code_3_a_node_down_before_the_run"),
    (4, "code_4_the_balancer_unreachable_at_preflight"),
    (5, "code_5_and_6_aborted_while_a_second_run_is_locked_out"),
    (6, "code_5_and_6_aborted_while_a_second_run_is_locked_out"),
    (7, "code_7_a_failed_rollback_keeps_a_node_out"),
    (8, "code_8_a_journaled_plan_that_no_longer_parses"),
    (9, "code_1_and_9_an_operator_rollback_then_nothing_to_do"),
    (130, "code_130_a_second_signal"),
];

/// The codes of README "### Exit codes" (the first column of its table).
fn readme_codes() -> Vec<u8> {
    let readme = include_str!("../../../../README.md");
    let at = readme
        .find("### Exit codes")
        .expect("README has ### Exit codes");
    readme[at..]
        .lines()
        .skip(1)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.split('|').nth(1)?.trim().parse().ok())
        .collect()
}

#[test]
fn the_readme_table_and_these_tests_agree() {
    let codes = readme_codes();
    assert!(codes.len() >= 10, "the table was read: {codes:?}");
    let source = include_str!("exit_codes.rs");
    for c in &codes {
        let rows: Vec<&&str> = ROWS
            .iter()
            .filter(|(k, _)| k == c)
            .map(|(_, t)| t)
            .collect();
        assert!(!rows.is_empty(), "exit code {c} of the README has no test");
        for t in rows {
            assert!(
                source.contains(&format!("async fn {t}()")),
                "no test fn {t}"
            );
        }
    }
    for (c, _) in ROWS {
        assert!(
            codes.contains(c),
            "code {c} is tested but not in the README"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_0_a_good_release_everywhere() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs());
    let out = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    env.assert_fleet(&["2", "2"]).await;
}

/// 1: an operator rollback; then every command that changes nothing on the
/// finished run says so and exits 9, journaling nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_1_and_9_an_operator_rollback_then_nothing_to_do() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs());
    assert_eq!(code(&env.run(&["run", plan.to_str().unwrap()])), 0);
    let run = env.latest_run();
    for cmd in ["promote", "abort", "resume"] {
        let before = env.events(&run).len();
        let out = env.run(&[cmd, &run]);
        assert_eq!(code(&out), 9, "{cmd} on a finished run: {}", stderr(&out));
        let said = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            said.contains(&format!("run {run} already finished (succeeded)")),
            "{cmd}: {said}"
        );
        assert_eq!(env.events(&run).len(), before, "{cmd} journaled nothing");
    }
    let out = env.run(&["rollback", &run, "--reason", "data bug found"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    env.assert_fleet(&["1", "1"]).await;
    let before = env.events(&run);
    let again = env.run(&["rollback", &run]);
    assert_eq!(code(&again), 9, "a second rollback: {}", stderr(&again));
    let said = stdout(&again);
    assert!(
        said.contains("already finished (rolled_back)") && said.contains("nothing to rollback"),
        "{said}"
    );
    assert!(!said.contains("rolled back 2 node"), "{said}");
    assert_eq!(
        env.events(&run),
        before,
        "the second rollback journaled nothing"
    );
    let json = env.run(&["abort", &run, "--output", "json"]);
    assert_eq!(code(&json), 9);
    let v: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(v["result"], "already_finished", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_2_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.toml");
    std::fs::write(&plan, "[release]\nversion = \"1\"\n").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["validate", plan.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", String::from_utf8_lossy(&out.stderr));
}

/// 3: a node that refuses connections before the run is a node unhealthy
/// before the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_3_a_node_down_before_the_run() {
    let mut env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs());
    env.traffic.take().unwrap().stop().await;
    env.fleet.nodes[1].kill();
    let out = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("node-2 is unhealthy before the rollout"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.current_links(), ["1", "1"]);
}

/// 4: the infrastructure (here the balancer's API) does not answer, while
/// every node is healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_4_the_balancer_unreachable_at_preflight() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs());
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let src = std::fs::read_to_string(&plan).unwrap().replace(
        "http://{address}/admin/",
        &format!("http://127.0.0.1:{port}/admin/"),
    );
    std::fs::write(&plan, src).unwrap();
    let out = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no node was changed"),
        "{}",
        stderr(&out)
    );
}

/// 5 and 6: a second run is locked out while the first waits at its pause
/// (6), and the first, aborted there, exits 5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_5_and_6_aborted_while_a_second_run_is_locked_out() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs().paused_after_canary());
    let (first, run) = env.run_to_pause(&plan, &[]).await;
    let second = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&second), 6, "{}", stderr(&second));
    let a = env.run(&["abort", &run]);
    assert_eq!(code(&a), 0, "{}", stderr(&a));
    let out = wait_output(first, Duration::from_secs(60)).await;
    assert_eq!(code(&out), 5);
    // after an abort, what to do next is said, spelled out
    let said = stdout(&out);
    let end = &said[said.rfind("status: aborted").expect("the summary")..];
    assert!(
        end.contains(&format!("next:\n  glidepath status {run}"))
            && end.contains(&format!("glidepath rollback {run}  (")),
        "the next commands after an abort: {end}"
    );
}

/// The demo plan with a restart that works while `broken` does not exist.
pub(crate) fn breakable(env: &Env, broken: &std::path::Path) -> std::path::PathBuf {
    let plan = env.plan(&env.v2, &knobs());
    let src = std::fs::read_to_string(&plan).unwrap().replace(
        "restart       = \"kill -HUP $(cat {install_dir}/node.pid)\"",
        &format!(
            "restart       = \"test ! -e {} && kill -HUP $(cat {{install_dir}}/node.pid)\"",
            broken.display()
        ),
    );
    assert!(src.contains("test ! -e"), "restart replaced");
    std::fs::write(&plan, src).unwrap();
    plan
}

/// 7: the restart breaks after a good run; an operator rollback cannot
/// restart the nodes, which stay out of rotation for a person.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_7_a_failed_rollback_keeps_a_node_out() {
    let env = Env::start(2).await;
    let broken = env.path().join("broken");
    let plan = breakable(&env, &broken);
    assert_eq!(code(&env.run(&["run", plan.to_str().unwrap()])), 0);
    let run = env.latest_run();
    std::fs::write(&broken, "").unwrap();
    let out = env.run(&["rollback", &run]);
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    assert_eq!(env.journal().run(&run).unwrap().status, "rollback_failed");
}

/// 8: an internal error: the plan journaled with a run no longer parses
/// (an edited or damaged journal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_8_a_journaled_plan_that_no_longer_parses() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs());
    assert_eq!(code(&env.run(&["run", plan.to_str().unwrap()])), 0);
    let run = env.latest_run();
    let db = rusqlite::Connection::open(env.journal_path()).unwrap();
    db.execute(
        "UPDATE runs SET plan_source = 'not a plan' WHERE id = ?1",
        [&run],
    )
    .unwrap();
    drop(db);
    let out = env.run(&["status", &run]);
    assert_eq!(code(&out), 8, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no longer parses"),
        "{}",
        stderr(&out)
    );
}

/// 130: a second SIGTERM while a restart hangs ends the process at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_130_a_second_signal() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs());
    let started = env.path().join("restart.started");
    let src = std::fs::read_to_string(&plan).unwrap().replace(
        "restart       = \"kill -HUP $(cat {install_dir}/node.pid)\"",
        &format!(
            "restart       = \"touch {}; exec sleep 120\"\nrestart_timeout = \"300s\"",
            started.display()
        ),
    );
    std::fs::write(&plan, src).unwrap();
    let mut child = env.spawn(&["run", plan.to_str().unwrap()]);
    wait_until("the restart to hang", Duration::from_secs(60), || {
        started.exists()
    })
    .await;
    signal(&child, libc::SIGTERM);
    env.wait_event("the abort to be journaled", Duration::from_secs(20), |e| {
        matches!(e, Event::AbortRequested { .. })
    })
    .await;
    signal(&child, libc::SIGTERM);
    let st = wait_exit(&mut child, Duration::from_secs(10)).await;
    assert_eq!(st.code(), Some(130));
}
