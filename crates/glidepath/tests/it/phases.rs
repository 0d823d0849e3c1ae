//! `[[pre]]` and `[[post]]` tasks against a real PostgreSQL: a backup
//! command and an expand migration before the canary, a contract migration
//! after the watch; each migration runs exactly once across kill -9 and
//! `resume` (at the commit, and in the middle of its transaction); a failed
//! pre task stops the run before any node changes; an irreversible task
//! makes `rollback` need `--force --reason`.

use crate::harness::*;
use crate::real::available;
use glidepath::demo::infra::Postgres;
use glidepath::demo::node::Behaviour;
use glidepath::demo::DemoPlan;
use glidepath_core::{Event, StepKind};
use std::path::Path;
use std::time::Duration;

const EXPAND: &str = "ALTER TABLE users ADD COLUMN email text;
INSERT INTO applied (what) VALUES ('expand');
-- slow only when a test asks: it kills the process mid-transaction
SELECT pg_sleep(CASE WHEN EXISTS (SELECT 1 FROM slow) THEN 60 ELSE 0 END);
";

const CONTRACT: &str = "-- glidepath: contract
ALTER TABLE users DROP COLUMN legacy_name;
INSERT INTO applied (what) VALUES ('contract');
";

const SETUP: &str = "CREATE TABLE users (id int PRIMARY KEY, legacy_name text);
CREATE TABLE applied (what text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE slow (x int);";

/// The tasks: a backup, the expand migration, and after the watch the
/// contract migration and a check.
fn tasks() -> String {
    r#"
[[pre]]
name = "backup"
run = "echo backup-{version} >> backups.log"
idempotent = true

[[pre]]
name = "expand"
migrate = ["migrations/0001_expand.sql"]
database_url_file = "db-url"
timeout = "2m"

[[post]]
name = "contract"
migrate = ["migrations/0002_contract.post.sql"]
database_url_file = "db-url"

[[post]]
name = "smoke"
run = "test -s backups.log"
"#
    .into()
}

fn plan(env: &Env, rel: &glidepath::plan::Release, extra: &str) -> std::path::PathBuf {
    let dir = env.path().join("migrations");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("0001_expand.sql"), EXPAND).unwrap();
    std::fs::write(dir.join("0002_contract.post.sql"), CONTRACT).unwrap();
    env.plan(
        rel,
        &DemoPlan {
            strategy_extra: "watch_after = \"2s\"".into(),
            extra: extra.into(),
            ..DemoPlan::quick("2s", 5)
        },
    )
}

/// A fresh database for a scenario; the plan reads its URL from `db-url`.
fn database(pg: &Postgres, dir: &Path, name: &str) {
    pg.psql("postgres", &format!("CREATE DATABASE {name}"))
        .unwrap();
    pg.psql(name, SETUP).unwrap();
    std::fs::write(dir.join("db-url"), pg.url(name)).unwrap();
}

fn count(pg: &Postgres, db: &str, what: &str) -> String {
    pg.psql(
        db,
        &format!("SELECT count(*) FROM applied WHERE what = '{what}'"),
    )
    .unwrap()
}

fn good(version: &str) -> Behaviour {
    Behaviour {
        version: version.into(),
        error_rate: 0.0,
        latency_ms: 10.0,
        leak_after_s: None,
    }
}

fn task_intents(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Intent { step, .. } => step.task.as_ref().map(|t| t.name.clone()),
            _ => None,
        })
        .collect()
}

/// Position of the first event matching `f`.
fn first(events: &[Event], f: impl Fn(&Event) -> bool) -> usize {
    events.iter().position(f).expect("event present")
}

fn is_task(e: &Event, name: &str) -> bool {
    matches!(e, Event::Intent { step, .. } if step.task.as_ref().is_some_and(|t| t.name == name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_in_their_phases_and_exactly_once_across_kills() {
    if !available(&["psql", "runuser"]) {
        return;
    }
    let env = Env::start(3).await;
    let pg = Postgres::start(env.path()).expect("PostgreSQL starts");
    let p2 = plan(&env, &env.v2, &tasks());
    let plan2 = p2.to_str().unwrap();

    // 1. killed right after the expand migration committed, before its
    //    outcome was journaled: resume must find it in the ledger
    database(&pg, env.path(), "a");
    env.run_until_killed(&["run", plan2], "done:task:expand");
    let run = env.latest_run();
    assert_eq!(count(&pg, "a", "expand"), "1");
    env.assert_fleet(&["1", "1", "1"]).await; // no node changed yet
                                              // 2. resumed, and killed right after the contract migration committed
    env.run_until_killed(&["resume", &run], "done:task:contract");
    assert_eq!(count(&pg, "a", "contract"), "1");
    // 3. resumed to the end
    let out = env.run(&["resume", &run]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    env.assert_fleet(&["2", "2", "2"]).await;
    assert_eq!(count(&pg, "a", "expand"), "1", "expand ran exactly once");
    assert_eq!(
        count(&pg, "a", "contract"),
        "1",
        "contract ran exactly once"
    );
    assert_eq!(
        pg.psql(
            "a",
            "SELECT string_agg(name || ':' || task, ',' ORDER BY name) FROM glidepath_migrations"
        )
        .unwrap(),
        "migrations/0001_expand.sql:expand,migrations/0002_contract.post.sql:contract"
    );
    let events = env.events(&run);
    assert_journal_consistent(&events);
    // the order: backup, expand, then the first drain; contract only after
    // the watch after the last batch passed
    let drain = first(
        &events,
        |e| matches!(e, Event::Intent { step, .. } if step.kind == StepKind::Drain),
    );
    assert!(first(&events, |e| is_task(e, "expand")) < drain);
    assert!(first(&events, |e| is_task(e, "backup")) < first(&events, |e| is_task(e, "expand")));
    let watch_passed = events
        .iter()
        .rposition(|e| matches!(e, Event::WindowClosed { passed: true, .. }))
        .unwrap();
    assert!(watch_passed < first(&events, |e| is_task(e, "contract")));
    // the repeated attempts found the ledger rows
    let details: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Outcome { step, outcome, .. } if step.kind == StepKind::Task => {
                Some(outcome.detail.clone())
            }
            _ => None,
        })
        .collect();
    assert!(
        details
            .iter()
            .any(|d| d.starts_with("already applied: migrations/0001_expand.sql")),
        "{details:?}"
    );
    assert_eq!(
        task_intents(&events),
        ["backup", "expand", "expand", "contract", "contract", "smoke"]
    );

    // 4. killed in the middle of the expand transaction (a fresh database):
    //    nothing of it is kept, and resume applies it once
    database(&pg, env.path(), "b");
    pg.psql("b", "INSERT INTO slow VALUES (1)").unwrap();
    let v4 = env.release(good("4"));
    let p3 = plan(&env, &v4, &tasks());
    let child = env.spawn(&["run", p3.to_str().unwrap()]);
    wait_until("the expand migration to be running", Duration::from_secs(60), || {
        pg.psql(
            "b",
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'glidepath' AND query LIKE '%pg_sleep%'",
        )
        .is_ok_and(|n| n == "1")
    })
    .await;
    let mut child = child.into_inner();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(
        count(&pg, "b", "expand"),
        "0",
        "the transaction left nothing"
    );
    pg.psql("b", "DELETE FROM slow").unwrap();
    let run = env.latest_run();
    let out = env.run(&["resume", &run]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(count(&pg, "b", "expand"), "1");
    assert_eq!(count(&pg, "b", "contract"), "1");
    env.assert_fleet(&["4", "4", "4"]).await;
    // 5. a migration that fails: PostgreSQL's message, SQLSTATE and line;
    //    nothing of it is kept, and the run stops before any node changes
    database(&pg, env.path(), "c");
    std::fs::write(
        env.path().join("migrations/0003_bad.sql"),
        "INSERT INTO applied (what) VALUES ('bad');\nSELECT no_such_column FROM users;\n",
    )
    .unwrap();
    let v5 = env.release(good("5"));
    let p5 = plan(
        &env,
        &v5,
        "[[pre]]\nname = \"bad\"\nmigrate = [\"migrations/0003_bad.sql\"]\ndatabase_url_file = \"db-url\"\n",
    );
    let out = env.run(&["run", p5.to_str().unwrap()]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("migrations/0003_bad.sql: column \"no_such_column\" does not exist (SQLSTATE 42703) at line 2, column 8"),
        "{text}"
    );
    assert_eq!(count(&pg, "c", "bad"), "0");
    env.assert_fleet(&["4", "4", "4"]).await;
    assert_eq!(
        std::fs::read_to_string(env.path().join("backups.log")).unwrap(),
        "backup-2\nbackup-4\n",
        "a finished task is not repeated by resume"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_pre_task_stops_the_run_before_any_node_changes() {
    let env = Env::start(3).await;
    let p = plan(
        &env,
        &env.v2,
        r#"
[[pre]]
name = "backup"
run = "echo 'pg_dump: connection refused' >&2; exit 3"
retries = 1
retry_delay = "200ms"
"#,
    );
    let out = env.run(&["run", p.to_str().unwrap()]);
    assert_eq!(
        code(&out),
        3,
        "a failed pre task exits like a gate: {}",
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(text.contains("pre 1/1 \"backup\" failed 2 times"), "{text}");
    assert!(text.contains("pg_dump: connection refused"), "{text}");
    assert!(text.contains("no node was changed"), "{text}");
    env.assert_fleet(&["1", "1", "1"]).await;
    let run = env.latest_run();
    assert_eq!(env.journal().run(&run).unwrap().status.as_str(), "failed");
    let events = env.events(&run);
    assert_journal_consistent(&events);
    assert!(!events
        .iter()
        .any(|e| matches!(e, Event::Intent { step, .. } if step.node.is_some())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_irreversible_task_rollback_needs_force_and_a_reason() {
    let env = Env::start(3).await;
    let p = plan(
        &env,
        &env.v2,
        r#"
[[post]]
name = "flag"
run = "touch flag-on"
reversible = false
note = "turns on the new wire format"

[[post]]
name = "verify"
run = "echo 'replay hash differs for room 7' >&2; false"
"#,
    );
    // the summary lists what cannot be undone before anything runs
    let out = env.run(&["validate", p.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("IRREVERSIBLE: post flag (turns on the new wire format)"),
        "{text}"
    );
    // verify fails after flag ran: the run holds instead of rolling back
    let child = env
        .spawn_until(
            &["run", p.to_str().unwrap()],
            "the failed post task to hold",
            |e| {
                matches!(e, Event::Outcome { step, outcome, .. }
                if step.task.as_ref().is_some_and(|t| t.name == "verify") && !outcome.ok)
            },
        )
        .await;
    let run = env.latest_run();
    assert!(env.path().join("flag-on").exists());
    let out = env.run(&["rollback", &run]);
    assert_eq!(code(&out), 2, "refused without --force");
    let err = stderr(&out);
    assert!(err.contains("flag (turns on the new wire format)"), "{err}");
    assert!(err.contains("--force --reason"), "{err}");
    let out = env.run(&["rollback", &run, "--force"]);
    assert_eq!(code(&out), 2, "--force needs a reason: {}", stderr(&out));
    env.assert_fleet(&["2", "2", "2"]).await;
    let out = env.run(&[
        "rollback",
        &run,
        "--force",
        "--reason",
        "old release reads both formats",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = wait_output(child, Duration::from_secs(60)).await;
    assert_eq!(code(&out), 1, "rolled back: {}", stderr(&out));
    env.assert_fleet(&["1", "1", "1"]).await;
    let events = env.events(&run);
    assert_journal_consistent(&events);
    let forced = events
        .iter()
        .find_map(|e| match e {
            Event::RollbackRequested { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        forced.starts_with(
            "forced past irreversible tasks (flag (turns on the new wire format)) by "
        ) && forced.ends_with(": old release reads both formats"),
        "{forced}"
    );
    // status lists the tasks and what could not be undone
    let out = env.run(&["status", &run]);
    let text = stdout(&out);
    assert!(
        text.contains("post flag")
            && text.contains("done")
            && text.contains("[IRREVERSIBLE: turns on the new wire format]"),
        "{text}"
    );
    assert!(
        text.contains("post verify") && text.contains("failed"),
        "{text}"
    );
    assert!(
        text.contains("cannot be undone (ran): flag (turns on the new wire format)"),
        "{text}"
    );
    let out = env.run(&["status", &run, "--output", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["irreversible"][0],
        "flag (turns on the new wire format)"
    );
    assert_eq!(doc["tasks"][1]["status"], "failed", "{doc}");
    let Some(Event::Finished { reason, .. }) = events.last() else {
        unreachable!()
    };
    assert!(
        reason.contains("Not undone (irreversible): flag (turns on the new wire format)"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migrations_gate_lints_exactly_the_task_files() {
    let env = Env::start(2).await;
    let dir = env.path().join("migrations");
    std::fs::create_dir_all(&dir).unwrap();
    // a broken file nobody runs, and a task file that does not parse
    std::fs::write(dir.join("0000_unused.sql"), "DROP TABLE users;").unwrap();
    std::fs::write(dir.join("0001_expand.sql"), "ALTER TABLE users ADD COLUMN;").unwrap();
    std::fs::write(
        dir.join("0002_contract.sql"),
        "SET lock_timeout = '2s';\nALTER TABLE users DROP COLUMN legacy_name;",
    )
    .unwrap();
    std::fs::write(
        env.path().join("db-url"),
        "postgresql://nobody@127.0.0.1:1/none",
    )
    .unwrap();
    let p = env.plan(
        &env.v2,
        &DemoPlan {
            extra: r#"
[[pre]]
name = "expand"
migrate = ["migrations/0001_expand.sql"]
database_url_file = "db-url"

[[post]]
name = "contract"
migrate = ["migrations/0002_contract.sql"]
database_url_file = "db-url"
"#
            .into(),
            ..DemoPlan::quick("1s", 5)
        },
    );
    let out = env.run(&["preflight", p.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(code(&out), 3, "{text}{}", stderr(&out));
    let line = text
        .lines()
        .find(|l| l.starts_with("migrations"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("FAIL") && line.contains("0001_expand.sql:1: syntax error"),
        "{line}"
    );
    // the post file's DROP is expected after the rollout; the unused file is not looked at
    assert!(
        !text.contains("0002_contract") && !text.contains("0000_unused"),
        "{text}"
    );
    // fixed: the gate passes on both files
    std::fs::write(
        dir.join("0001_expand.sql"),
        "SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN email text;",
    )
    .unwrap();
    let out = env.run(&["preflight", p.to_str().unwrap()]);
    let text = stdout(&out);
    let line = text.lines().find(|l| l.starts_with("migrations")).unwrap();
    assert!(
        line.contains("pass") && line.contains("2 file(s) of the [[pre]]/[[post]] migrate tasks"),
        "{line}"
    );
}

/// Probes as tasks: a WebSocket handshake after the rollout must still
/// offer every capability; the node's `/version` JSON is captured before
/// and compared after. A missing capability holds the run (on_post_failure
/// = "hold") until a person accepts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_tasks_check_the_handshake_and_compare_a_capture() {
    use glidepath::demo::ws_peer::{WsPeer, WsPeerCfg};
    let env = Env::start(3).await;
    let peer = WsPeer::start(WsPeerCfg::default()).await.unwrap();
    let node1 = env.fleet.nodes[0].address.clone();
    let tasks = |caps: &str| {
        format!(
            r#"on_post_failure = "hold"

[[pre]]
name    = "health-before"
probe   = {{ http = "http://{node1}/health", status = 200 }}
capture = true

[[post]]
name  = "handshake"
probe = {{ websocket = "{url}", send = '{{"type":"hello"}}', expect_type = "welcome", caps = [{caps}], within = "2s" }}

[[post]]
name       = "health-after"
compare_to = "health-before"
"#,
            url = peer.url()
        )
    };
    let p = plan(&env, &env.v2, &tasks("\"chat\", \"presence\""));
    let out = env.run(&["run", p.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(peer.hellos(), 1, "the handshake ran once");
    let run = env.latest_run();
    let details: Vec<(String, String)> = env
        .events(&run)
        .iter()
        .filter_map(|e| match e {
            Event::Outcome { step, outcome, .. } if step.kind == StepKind::Task => Some((
                step.task.as_ref().unwrap().name.clone(),
                outcome.detail.clone(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(details.len(), 3, "{details:?}");
    assert!(
        details[2]
            .1
            .starts_with("same as `health-before` recorded before the rollout"),
        "{details:?}"
    );

    // a capability the server does not offer: held, then accepted
    let v4 = env.release(good("4"));
    let p = plan(&env, &v4, &tasks("\"chat\", \"typing\""));
    let child = env
        .spawn_until(
            &["run", p.to_str().unwrap()],
            "the handshake to fail",
            |e| {
                matches!(e, Event::Outcome { step, outcome, .. }
                if step.task.as_ref().is_some_and(|t| t.name == "handshake") && !outcome.ok)
            },
        )
        .await;
    let run = env.latest_run();
    let out = env.run(&["status", &run]);
    let text = stdout(&out);
    assert!(text.contains("missing capability typing"), "{text}");
    assert!(text.contains("on_post_failure = \"hold\""), "{text}");
    env.assert_fleet(&["4", "4", "4"]).await;
    let out = env.run(&["promote", &run, "--reason", "typing ships next week"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = wait_output(child, Duration::from_secs(60)).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let Some(Event::Finished { reason, .. }) = env.events(&run).last().cloned() else {
        unreachable!()
    };
    assert!(
        reason.contains("accepted by a person: handshake"),
        "{reason}"
    );
}
