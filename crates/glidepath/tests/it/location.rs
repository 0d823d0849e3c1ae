//! The journal's location on the command line and in the plan: a SQLite
//! path or a `postgres://` URL. A bad one is refused (exit 2), an
//! unreachable database is exit 4 at once, and no message ever shows a
//! password (neither the URL's nor the one from the environment).

use crate::harness::BIN;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// No PostgreSQL listens on port 1: connecting is refused at once.
const UNREACHABLE: &str = "postgres://glide:hunter2@127.0.0.1:1/fleet";

/// Run glidepath in `dir` (its own state and lock directories, the
/// journal's password in the environment), within `limit`.
fn glidepath(dir: &Path, args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
    let mut c = Command::new(BIN);
    c.args(args)
        .current_dir(dir)
        .env_remove("GLIDEPATH_JOURNAL")
        .env_remove("GLIDEPATH_JOURNAL_PASSWORD_FILE")
        .env("GLIDEPATH_JOURNAL_PASSWORD", "sekrit")
        .env("XDG_STATE_HOME", dir.join("state"))
        .env("GLIDEPATH_LOCK_DIR", dir.join("locks"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("spawn glidepath");
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("glidepath {args:?} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn assert_no_secret(args: &[&str], out: &Output) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for secret in ["sekrit", "hunter2"] {
        assert!(!all.contains(secret), "{args:?} shows `{secret}`:\n{all}");
    }
}

#[test]
fn an_unreachable_database_is_exit_4_at_once_for_every_command() {
    let (dir, good) = crate::plans::setup();
    let plan = dir.path().join("plan.toml");
    std::fs::write(&plan, &good).unwrap();
    let plan = plan.to_str().unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["status", "--journal", UNREACHABLE],
        vec!["status", "--journal", UNREACHABLE, "--output", "json"],
        vec!["status", "latest", "--watch", "--journal", UNREACHABLE],
        vec!["history", "--journal", UNREACHABLE],
        vec!["resume", "latest", "--journal", UNREACHABLE],
        vec!["abort", "latest", "--journal", UNREACHABLE],
        vec!["promote", "latest", "--journal", UNREACHABLE],
        vec!["upgrade", "--resume", "c1", "--journal", UNREACHABLE],
        vec!["serve", "--listen", "127.0.0.1:0", "--journal", UNREACHABLE],
        vec!["run", plan, "--journal", UNREACHABLE],
    ];
    for args in &cases {
        // at once: a refused connection is not waited out
        let out = glidepath(dir.path(), args, &[], Duration::from_secs(10));
        assert_no_secret(args, &out);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{args:?}: {err}");
        // named without its password
        assert!(
            err.contains("journal postgres://glide@127.0.0.1:1/fleet"),
            "{args:?}: {err}"
        );
    }
    // the variable too
    let out = glidepath(
        dir.path(),
        &["history"],
        &[("GLIDEPATH_JOURNAL", UNREACHABLE)],
        Duration::from_secs(20),
    );
    assert_no_secret(&["history"], &out);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
}

#[test]
fn a_bad_journal_location_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for (given, why) in [
        ("postgres://glide:hunter2@/fleet", "no host"),
        (
            "postgres://glide:hunter2@db:notaport/fleet",
            "not a PostgreSQL URL",
        ),
        ("postgresql://db/fleet?sslmode=require", "sslmode=require"),
        (
            "postgres://glide@db/fleet?password=hunter2&sslmode=require",
            "sslmode=require",
        ),
        ("postgres://glide:hun@ter2@db/fleet", "holds `@`"),
        // a misspelt scheme is not a SQLite file of that name (team mode
        // silently off), and libpq's key=value form is not echoed
        ("Postgress://glide:hunter2@db/fleet", "only postgres://"),
        ("mysql://glide@db/fleet", "only postgres://"),
        ("host=db user=glide password=hunter2", "key=value"),
    ] {
        let args = ["status", "--journal", given];
        let out = glidepath(dir.path(), &args, &[], Duration::from_secs(20));
        assert_no_secret(&args, &out);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{given}: {err}");
        assert!(
            err.contains("error: --journal: journal `"),
            "{given}: {err}"
        );
        assert!(err.contains(why), "{given}: {err}");
        assert!(err.contains("hint: "), "{given}: {err}");
    }
    // the password file named but missing: said so, with the variable
    let out = glidepath(
        dir.path(),
        &["history", "--journal", "postgres://glide@db/fleet"],
        &[(
            "GLIDEPATH_JOURNAL_PASSWORD_FILE",
            dir.path().join("nope").to_str().unwrap(),
        )],
        Duration::from_secs(20),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("GLIDEPATH_JOURNAL_PASSWORD_FILE"), "{err}");
    // a password file that is not a regular file (a device, a FIFO) is
    // refused, never read
    let out = glidepath(
        dir.path(),
        &["history", "--journal", "postgres://glide@db/fleet"],
        &[("GLIDEPATH_JOURNAL_PASSWORD_FILE", "/dev/zero")],
        Duration::from_secs(20),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not a regular file"), "{err}");
    // a command that needs no journal is not refused for it
    let (pdir, good) = crate::plans::setup();
    let plan = pdir.path().join("plan.toml");
    std::fs::write(&plan, &good).unwrap();
    let out = glidepath(
        dir.path(),
        &["validate", plan.to_str().unwrap()],
        &[("GLIDEPATH_JOURNAL", "postgres://glide:hunter2@/fleet")],
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn run_uses_the_database_its_plan_names() {
    let (dir, good) = crate::plans::setup();
    let plan = dir.path().join("plan.toml");
    let url = "postgres://glide@127.0.0.1:1/fleet";
    std::fs::write(&plan, format!("{good}\n[journal]\nurl = \"{url}\"\n")).unwrap();
    let args = ["run", plan.to_str().unwrap()];
    let out = glidepath(dir.path(), &args, &[], Duration::from_secs(20));
    assert_no_secret(&args, &out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains(&format!("journal {url} is unreachable")),
        "{err}"
    );
    // no SQLite journal was made instead
    assert!(!dir.path().join("state/glidepath/journal.db").exists());
}

/// The commands on a shared database: `run` there (its password from the
/// environment), `serve` and `status` from other processes see it live,
/// `promote` reaches it, `history` lists it; no output shows the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_works_on_a_shared_postgresql_journal() {
    use crate::harness::{stderr, stdout, wait_until_async, Env};
    use glidepath::demo::infra::Postgres;
    let env = Env::start(3).await;
    let pg = Postgres::start(env.path()).expect("PostgreSQL starts (apt-get install postgresql)");
    pg.psql("postgres", "CREATE DATABASE team").unwrap();
    let url = pg.url("team");
    // as messages show it (postgresql:// given, postgres:// shown)
    let shown = glidepath::journal::Location::parse(&url)
        .unwrap()
        .to_string();
    let secrets = env.path().join("pw");
    std::fs::write(&secrets, "sekrit\n").unwrap();
    let with_pw = |c: &mut Command| {
        c.env("GLIDEPATH_JOURNAL_PASSWORD_FILE", &secrets);
    };
    let gp = |args: &[&str]| {
        let mut c = env.cmd(args);
        with_pw(&mut c);
        c.arg("--journal").arg(&url);
        let out = c.output().unwrap();
        assert_no_secret(args, &out);
        out
    };
    // serve first: it opens (and makes) the database before any run
    let served = crate::serve::serve(&env, &["--journal", &url]).await;
    // the helper hands the address over before it logs the line
    let log = served.log.clone();
    wait_until_async("serve's address line", Duration::from_secs(10), || {
        let l = log.clone();
        async move { l.lock().unwrap().contains("(journal ") }
    })
    .await;
    let line = served.log.lock().unwrap().clone();
    assert!(line.contains(&format!("(journal {shown};")), "{line}");
    let plan = env.plan(&env.v2, &crate::rollout::knobs().paused_after_canary());
    let mut run = env.cmd(&["run", plan.to_str().unwrap(), "--journal", &url]);
    with_pw(&mut run);
    let run = run
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_async(
        "the run to pause after the canary",
        Duration::from_secs(90),
        || {
            let out = gp(&["status", "latest", "--output", "json"]);
            async move {
                serde_json::from_slice::<serde_json::Value>(&out.stdout)
                    .is_ok_and(|v| v["status"] == "paused")
            }
        },
    )
    .await;
    // not a SQLite journal on the side
    assert!(!env.journal_path().exists());
    let status = gp(&["status", "latest"]);
    assert!(
        stdout(&status).contains("waiting: paused after the canary"),
        "{}",
        stdout(&status)
    );
    let api = format!("{}/api/v1/runs", served.url);
    let runs: serde_json::Value = reqwest::get(&api).await.unwrap().json().await.unwrap();
    let id = runs["runs"][0]["run_id"].as_str().unwrap().to_string();
    assert_eq!(runs["runs"][0]["status"], "paused", "{runs}");
    let p = gp(&["promote", "latest", "--reason", "looks good"]);
    assert_eq!(p.status.code(), Some(0), "{}", stderr(&p));
    assert!(stdout(&p).contains("acknowledged"), "{}", stdout(&p));
    assert!(
        stdout(&p).contains(&format!("--journal {shown}")),
        "the hint names the journal: {}",
        stdout(&p)
    );
    let out = crate::harness::wait_output(run.into(), Duration::from_secs(120)).await;
    assert_no_secret(&["run"], &out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let history = gp(&["history", "--output", "json"]);
    let h: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(h["runs"][0]["run_id"], id.as_str(), "{h}");
    assert_eq!(h["runs"][0]["status"], "succeeded", "{h}");
    let run: serde_json::Value = reqwest::get(format!("{api}/{id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(run["status"], "succeeded", "{run}");
    let metrics = reqwest::get(format!("{}/metrics", served.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("glidepath_runs{status=\"succeeded\"} 1"),
        "{metrics}"
    );
    let log = served.log.lock().unwrap().clone();
    assert!(!log.contains("sekrit"), "{log}");
}
