//! The edges of `[[pre]]`/`[[post]]` tasks a hostile review found: what a
//! capture must see in full, an abort while a task runs, a migration file
//! edited after the run started, a migration past its timeout, a capture
//! cut short by a crash, and an unreachable metrics server in a post probe.

use crate::harness::*;
use crate::real::available;
use glidepath::demo::infra::Postgres;
use glidepath::demo::DemoPlan;
use glidepath_core::Event;
use std::time::Duration;

fn plan(env: &Env, rel: &glidepath::plan::Release, extra: &str) -> std::path::PathBuf {
    env.plan(
        rel,
        &DemoPlan {
            extra: extra.into(),
            ..DemoPlan::quick("1s", 5)
        },
    )
}

fn finished_reason(events: &[Event]) -> String {
    events
        .iter()
        .find_map(|e| match e {
            Event::Finished { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_must_see_all_of_its_output_and_binary_output_is_compared_by_its_bytes() {
    let env = Env::start(3).await;
    // over the 1 MiB a command's output is read up to: refused, not hashed in part
    let p = plan(
        &env,
        &env.v2,
        r#"
[[pre]]
name = "hashes"
run = "head -c 1100000 /dev/zero | tr '\\000' a"
capture = true
"#,
    );
    let out = env.run(&["run", p.to_str().unwrap()]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let why = finished_reason(&env.events(&env.latest_run()));
    assert!(
        why.contains("printed more than 1048576 bytes: a capture must see everything"),
        "{why}"
    );
    env.assert_fleet(&["1", "1", "1"]).await;

    // two different invalid UTF-8 bytes are not "the same"
    std::fs::write(env.path().join("state.bin"), [0xffu8, 0x01]).unwrap();
    let p = plan(
        &env,
        &env.v2,
        r#"
[[pre]]
name = "digest"
run = "cat state.bin"
capture = true

[[pre]]
name = "change"
run = "printf '\\376\\001' > state.bin"
idempotent = true

[[post]]
name = "digest-unchanged"
compare_to = "digest"
"#,
    );
    let out = env.run(&["run", p.to_str().unwrap()]);
    assert_eq!(
        code(&out),
        1,
        "the change is caught and rolled back: {}",
        stderr(&out)
    );
    let why = finished_reason(&env.events(&env.latest_run()));
    assert!(why.contains("differs from what `digest` recorded"), "{why}");
    assert!(why.contains("not text"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_while_a_pre_task_runs_lets_it_finish_and_journals_it() {
    let env = Env::start(3).await;
    let p = plan(
        &env,
        &env.v2,
        r#"
[[pre]]
name = "backup"
run = "echo started > started; sleep 2; echo complete > backup.done"
idempotent = true
"#,
    );
    let child = env.spawn(&["run", p.to_str().unwrap()]);
    let started = env.path().join("started");
    wait_until("the backup to start", Duration::from_secs(60), || {
        started.exists()
    })
    .await;
    let run = env.latest_run();
    let out = env.run(&["abort", &run]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = wait_output(child, Duration::from_secs(60)).await;
    assert_eq!(code(&out), 5, "aborted: {}", stderr(&out));
    assert!(
        env.path().join("backup.done").exists(),
        "the backup ran to its end"
    );
    let events = env.events(&run);
    assert_journal_consistent(&events);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::Outcome { step, outcome, .. } if step.task.is_some() && outcome.ok))
            .count(),
        1,
        "the backup's outcome is journaled"
    );
    env.assert_fleet(&["1", "1", "1"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_cut_short_by_a_crash_is_repeated() {
    let env = Env::start(3).await;
    let p = plan(
        &env,
        &env.v2,
        r#"
[[pre]]
name = "hashes"
run = "echo room-1 abcd"
capture = true

[[post]]
name = "hashes-unchanged"
compare_to = "hashes"
"#,
    );
    env.run_until_killed(&["run", p.to_str().unwrap()], "done:task:hashes");
    let run = env.latest_run();
    let out = env.run(&["resume", &run]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let events = env.events(&run);
    assert!(finished_reason(&events).starts_with("all 3 nodes run 2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_metrics_server_in_a_post_probe_is_waited_out_not_rolled_back() {
    let env = Env::start(3).await;
    let port = glidepath::demo::infra::free_port();
    let mut knobs = DemoPlan {
        extra: format!(
            r#"
[[post]]
name = "close-codes"
probe = {{ promql = "sum(rate(ws_close_total[1m]))", prometheus = "http://127.0.0.1:{port}", max = 0.1 }}
"#
        ),
        ..DemoPlan::quick("1s", 5)
    };
    knobs.strategy_extra =
        "retry = { backoff = \"100ms\", max_backoff = \"200ms\", deadline = \"2s\" }".into();
    let p = env.plan(&env.v2, &knobs);
    let out = env.run(&["run", p.to_str().unwrap()]);
    assert_eq!(
        code(&out),
        4,
        "stopped resumable, not rolled back: {}",
        stderr(&out)
    );
    env.assert_fleet(&["2", "2", "2"]).await;
    let run = env.latest_run();
    assert_eq!(
        env.journal().run(&run).unwrap().status.as_str(),
        "suspended"
    );
    let out = env.run(&["status", &run]);
    assert!(
        stdout(&out).contains("infrastructure unreachable"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_edited_after_the_start_or_past_their_timeout_are_refused_and_cancelled() {
    if !available(&["psql", "runuser"]) {
        return;
    }
    let env = Env::start(3).await;
    let pg = Postgres::start(env.path()).expect("PostgreSQL starts");
    pg.psql("postgres", "CREATE DATABASE e").unwrap();
    pg.psql(
        "e",
        "CREATE TABLE applied (what text NOT NULL); CREATE TABLE users (id int)",
    )
    .unwrap();
    std::fs::write(env.path().join("db-url"), pg.url("e")).unwrap();
    let dir = env.path().join("migrations");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("0001_expand.sql");
    std::fs::write(&file, "INSERT INTO applied (what) VALUES ('validated');\n").unwrap();
    let tasks = r#"
[[pre]]
name = "expand"
migrate = ["migrations/0001_expand.sql"]
database_url_file = "db-url"
"#;
    let p = plan(&env, &env.v2, tasks);
    // 1. edited between a crash and the resume: refused, nothing applied
    env.run_until_killed(&["run", p.to_str().unwrap()], "intent:task:expand");
    let run = env.latest_run();
    std::fs::write(
        &file,
        "INSERT INTO applied (what) VALUES ('edited after the start');\n",
    )
    .unwrap();
    let out = env.run(&["resume", &run]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        finished_reason(&env.events(&run)).contains("changed since the run started"),
        "{}",
        finished_reason(&env.events(&run))
    );
    assert_eq!(pg.psql("e", "SELECT count(*) FROM applied").unwrap(), "0");

    // 2. past its timeout: the statement is cancelled on the server, its
    //    locks released, and the retry runs (and times out) in turn
    std::fs::write(
        &file,
        "ALTER TABLE users ADD COLUMN email text;\nSELECT pg_sleep(30);\n",
    )
    .unwrap();
    // as in production: a backend does not notice a client that went away
    pg.psql(
        "postgres",
        "ALTER DATABASE e SET client_connection_check_interval = 0",
    )
    .unwrap();
    let p = plan(
        &env,
        &env.v2,
        &tasks.replace(
            "database_url_file = \"db-url\"",
            "database_url_file = \"db-url\"\ntimeout = \"1s\"\nretries = 1\nretry_delay = \"100ms\"",
        ),
    );
    let out = env.run(&["run", p.to_str().unwrap()]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let run = env.latest_run();
    let attempts: Vec<String> = env
        .events(&run)
        .iter()
        .filter_map(|e| match e {
            Event::Outcome { step, outcome, .. } if step.task.is_some() => {
                Some(outcome.detail.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert!(
        attempts
            .iter()
            .all(|a| a.contains("the statement running was cancelled")),
        "{attempts:?}"
    );
    // nothing of it runs or holds a lock any more
    wait_until("the cancelled migration to leave the server", Duration::from_secs(10), || {
        pg.psql(
            "e",
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'glidepath' AND state <> 'idle'",
        )
        .is_ok_and(|n| n == "0")
    })
    .await;
    assert_eq!(
        pg.psql(
            "e",
            "SET lock_timeout = '500ms'; SELECT count(*) FROM users"
        )
        .unwrap(),
        "SET\n0",
        "the table is not locked"
    );
    assert_eq!(
        pg.psql("e", "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'email'").unwrap(),
        "0",
        "the cancelled transaction left nothing"
    );
}
