//! Following a run from another terminal: `status --watch` (off a
//! terminal: one plain line per change; in a real pseudo-terminal, under
//! tmux: redrawn in place), its exit code (the run's), run references
//! (`latest`, a unique prefix), and what a run waits for as a stable state
//! (`paused`, `waiting`).

use crate::harness::*;
use crate::rollout::knobs;
use glidepath::demo::DemoPlan;
use glidepath::journal::{RunRecord, RunStatus};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A quick plan whose last batch is watched too (2 s): each phase lasts
/// long enough to be seen by a follower polling every 200 ms.
fn watched(window: &str) -> DemoPlan {
    DemoPlan {
        strategy_extra: "watch_after = \"2s\"".into(),
        ..DemoPlan::quick(window, 5)
    }
}

/// Wait until the newest run exists.
async fn run_exists(env: &Env) {
    let j = env.journal_path();
    wait_until("the run to exist", Duration::from_secs(60), || {
        j.exists()
            && glidepath::journal::Journal::open(&j)
                .ok()
                .is_some_and(|j| j.runs(1).is_ok_and(|r| !r.is_empty()))
    })
    .await;
}

/// Spawn `status latest --watch` once the run exists (piped: no terminal).
async fn watch_latest(env: &Env) -> Running {
    run_exists(env).await;
    env.spawn(&["status", "latest", "--watch"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_off_a_terminal_prints_one_line_per_change_and_exits_with_the_run_code() {
    let env = Env::start(3).await;
    let plan = env.plan(&env.v2, &watched("2s"));
    let run = env.spawn(&["run", plan.to_str().unwrap()]);
    let watch = watch_latest(&env).await;
    let run_out = wait_output(run, Duration::from_secs(120)).await;
    let out = wait_output(watch, Duration::from_secs(60)).await;
    assert_eq!(code(&run_out), 0, "{}", stderr(&run_out));
    assert_eq!(code(&out), 0, "the run's exit code: {}", stderr(&out));
    let text = stdout(&out);
    assert!(!text.contains('\x1b'), "no ANSI off a terminal: {text}");
    // phases, batches, the window's progress, the end
    for want in [
        "phase: canary",
        "phase: batch 1 of 1",
        "SLI window: ",
        "error rate",
        "(max ",
        "node node-1 (canary): updated on 2 (in rotation)",
        "status: succeeded",
        "ended: all 3 nodes run 2",
    ] {
        assert!(text.contains(want), "`{want}` missing:\n{text}");
    }
    // one line per change: no line repeats itself back to back
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.windows(2).all(|w| w[0] != w[1]),
        "a line per change, not per poll:\n{text}"
    );
    let probes = lines
        .iter()
        .filter(|l| l.starts_with("SLI window: "))
        .count();
    assert!(
        probes >= 3,
        "the window's progress, probe by probe:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_of_a_rolled_back_run_exits_1_like_run() {
    let env = Env::start(3).await;
    let plan = env.plan(&env.v3, &knobs());
    let run = env.spawn(&["run", plan.to_str().unwrap()]);
    let watch = watch_latest(&env).await;
    let run_out = wait_output(run, Duration::from_secs(120)).await;
    let out = wait_output(watch, Duration::from_secs(60)).await;
    assert_eq!(code(&run_out), 1);
    assert_eq!(code(&out), 1, "rolled back: exit 1, as `run`");
    assert!(
        stdout(&out).contains("status: rolled_back"),
        "{}",
        stdout(&out)
    );
    // a finished run: `--watch` returns at once, with the same code
    let again = env.run(&["status", "latest", "--watch"]);
    assert_eq!(code(&again), 1);
}

/// A journaled run record with `plan` as its plan (no event).
fn record(id: &str, plan: &std::path::Path, created_at: u64) -> RunRecord {
    RunRecord {
        id: id.into(),
        fleet: "demo".into(),
        plan_path: plan.display().to_string(),
        plan_hash: String::new(),
        plan_source: std::fs::read_to_string(plan).unwrap(),
        version: "2".into(),
        status: RunStatus::Succeeded,
        reason: "all done".into(),
        created_at,
        updated_at: created_at,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_named_by_latest_or_a_unique_prefix_everywhere() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs());
    std::fs::create_dir_all(env.journal_path().parent().unwrap()).unwrap();
    let j = glidepath::journal::Journal::open(&env.journal_path()).unwrap();
    j.create_run(&record("r9-alpha", &plan, 1_000)).unwrap();
    j.create_run(&record("r9-beta", &plan, 2_000)).unwrap();
    let status = |r: &str| env.run(&["status", r, "--output", "json"]);
    let id = |out: &std::process::Output| {
        serde_json::from_str::<serde_json::Value>(&stdout(out)).unwrap()["run_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(id(&status("latest")), "r9-beta");
    assert_eq!(id(&status("r9-a")), "r9-alpha");
    assert_eq!(id(&status("r9-b")), "r9-beta");
    // ambiguous: exit 2, the candidates listed
    let amb = env.run(&["status", "r9"]);
    assert_eq!(code(&amb), 2);
    assert!(
        stderr(&amb).contains("matches 2 runs: r9-beta, r9-alpha"),
        "{}",
        stderr(&amb)
    );
    // no match: exit 2 with the hint
    let none = env.run(&["status", "r7"]);
    assert_eq!(code(&none), 2);
    assert!(
        stderr(&none).contains("no run `r7`") && stderr(&none).contains("`latest`"),
        "{}",
        stderr(&none)
    );
    // resume, promote, abort, rollback resolve the same way
    let resume = env.run(&["resume", "r9-a"]);
    assert_eq!(code(&resume), 9);
    assert!(
        stdout(&resume).contains("run r9-alpha already finished"),
        "{}",
        stdout(&resume)
    );
    let promote = env.run(&["promote", "latest"]);
    assert_eq!(code(&promote), 9);
    assert!(
        stderr(&promote).contains("run r9-beta already finished"),
        "{}",
        stderr(&promote)
    );
    let abort = env.run(&["abort", "r9-al"]);
    assert_eq!(code(&abort), 9);
    assert!(
        stdout(&abort).contains("run r9-alpha already finished"),
        "{}",
        stdout(&abort)
    );
    let rollback = env.run(&["rollback", "r9"]);
    assert_eq!(code(&rollback), 2, "ambiguous: {}", stderr(&rollback));
    let rollback = env.run(&["rollback", "r9-b"]);
    assert!(
        stdout(&rollback).contains("run r9-beta already finished"),
        "{}",
        stdout(&rollback)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_run_says_paused_and_why_in_every_poll() {
    let env = Env::start(3).await;
    let plan = env.plan(&env.v2, &knobs().paused_after_canary());
    let (child, run) = env.run_to_pause(&plan, &[]).await;
    // the executor writes the state right after the window closes
    wait_until("the run to be paused", Duration::from_secs(30), || {
        env.journal().run(&run).unwrap().status == RunStatus::Paused
    })
    .await;
    let prefix = &run[..run.len() - 2];
    for i in 0..10 {
        let out = env.run(&["status", prefix, "--output", "json"]);
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(v["status"], "paused", "poll {i}: {v}");
        let w = v["waiting"].as_str().unwrap_or_default();
        assert!(
            w.contains("paused after the canary")
                && w.contains(&format!("`glidepath promote {run}`")),
            "poll {i}, the reason with the real run id: {v}"
        );
    }
    let hist = env.run(&["history"]);
    assert!(
        stdout(&hist)
            .lines()
            .any(|l| l.contains(&run) && l.contains("paused")),
        "{}",
        stdout(&hist)
    );
    // --watch off a terminal says it once, with the commands that apply
    let mut watch = env.spawn(&["status", &run, "--watch"]);
    let promote = env.run(&["promote", &run]);
    assert_eq!(code(&promote), 0);
    wait_exit(&mut watch, Duration::from_secs(120)).await;
    let out = wait_output(watch, Duration::from_secs(5)).await;
    assert_eq!(code(&out), 0);
    let text = stdout(&out);
    assert_eq!(
        text.matches("waiting: paused after the canary").count(),
        1,
        "{text}"
    );
    assert!(
        text.contains(&format!("glidepath promote {run}")),
        "the commands that apply, with the run's id: {text}"
    );
    let out = wait_output(child, Duration::from_secs(120)).await;
    assert_eq!(code(&out), 0);
    assert_eq!(env.journal().run(&run).unwrap().status, "succeeded");
}

/// `status --watch` in a real pseudo-terminal (tmux): the screen is redrawn
/// in place with the batch and the window's progress changing, and the
/// command ends with the run's exit code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_in_a_terminal_redraws_the_batch_and_window_progress() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("tmux is not installed: skipped");
        return;
    }
    let env = Env::start(3).await;
    let plan = env.plan(&env.v2, &watched("3s"));
    let run = env.spawn(&["run", plan.to_str().unwrap()]);
    run_exists(&env).await;
    let (screens, screen_code) = in_tmux(&env, "status latest --watch").await;
    let run_out = wait_output(run, Duration::from_secs(60)).await;
    assert_eq!(code(&run_out), 0);
    assert_eq!(screen_code, 0, "the run's exit code");
    let last = screens.last().cloned().unwrap_or_default();
    eprintln!(
        "{} distinct screens; one mid-window:\n{}",
        screens.len(),
        screens
            .iter()
            .find(|s| s.contains("SLI window: "))
            .unwrap_or(&last)
    );
    // redrawn in place: the header appears once per screen, at the top
    for s in &screens {
        assert!(s.matches("status: ").count() <= 1, "redrawn in place:\n{s}");
    }
    assert!(last.contains("status: succeeded"), "{last}");
    let with = |what: &str| screens.iter().filter(|s| s.contains(what)).count();
    assert!(with("phase: canary") > 0, "{screens:#?}");
    assert!(with("phase: batch 1 of 1") > 0, "{screens:#?}");
    // the window's progress changes between screens
    let progress: std::collections::BTreeSet<String> = screens
        .iter()
        .filter_map(|s| s.lines().find(|l| l.starts_with("SLI window: ")))
        .map(str::to_string)
        .collect();
    assert!(
        progress.len() >= 3,
        "the window's progress changes on screen: {progress:#?}"
    );
}

/// During a metrics outage (Prometheus stopped mid-window), the run is
/// `waiting`, and the reason is the same in every poll: it is the run's
/// state, not re-derived per poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_outage_waiting_reason_is_stable_across_polls() {
    use crate::real::{available, real, real_plan};
    if !available(&["haproxy", "prometheus"]) {
        return;
    }
    let mut r = real(3).await;
    let plan = real_plan(
        &r,
        &r.env.v2,
        "20s",
        r#"retry = { backoff = "200ms", max_backoff = "1s", deadline = "60s" }"#,
    );
    let child = r
        .env
        .spawn_until(
            &["run", plan.to_str().unwrap()],
            "the SLI window to probe",
            probed,
        )
        .await;
    let run = r.env.latest_run();
    r.front.prom.stop();
    let j = r.env.journal();
    wait_until(
        "the run to wait on the outage",
        Duration::from_secs(30),
        || j.run(&run).unwrap().status == RunStatus::Waiting,
    )
    .await;
    let mut seen = Vec::new();
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let out = r.env.run(&["status", &run, "--output", "json"]);
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        seen.push((v["status"].clone(), v["waiting"].clone()));
    }
    assert!(seen.len() >= 5, "{seen:?}");
    assert!(seen.iter().all(|s| s == &seen[0]), "stable: {seen:#?}");
    assert_eq!(seen[0].0, "waiting");
    assert!(
        seen[0]
            .1
            .as_str()
            .is_some_and(|w| w.contains("metrics source unreachable")),
        "{seen:?}"
    );
    r.front.prom.restart().await.expect("prometheus restarts");
    let out = wait_output(child, Duration::from_secs(120)).await;
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert_eq!(r.env.journal().run(&run).unwrap().status, "succeeded");
}

/// Run `glidepath ARGS` in a real pseudo-terminal (a tmux pane 160x50) and
/// capture its screen until it ends: the distinct screens seen, and its
/// exit code.
async fn in_tmux(env: &Env, args: &str) -> (Vec<String>, i32) {
    let socket = env.path().join("tmux.sock");
    let code_file = env.path().join(format!("tmux-{}.code", args.len()));
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("tmux runs")
    };
    let shell = format!(
        "cd {} && XDG_STATE_HOME={} {BIN} {args}; echo $? > {}; sleep 600",
        env.path().display(),
        env.path().join("state").display(),
        code_file.display()
    );
    let started = tmux(&[
        "new-session",
        "-d",
        "-x",
        "160",
        "-y",
        "50",
        "-s",
        "glidepath",
        &shell,
    ]);
    assert!(started.status.success(), "{}", stderr(&started));
    struct Kill(Box<dyn Fn()>);
    impl Drop for Kill {
        fn drop(&mut self) {
            (self.0)()
        }
    }
    let sock = socket.clone();
    let _server = Kill(Box::new(move || {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&sock)
            .args(["kill-server"])
            .output();
    }));
    let mut screens: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = code_file.exists();
        let cap = tmux(&["capture-pane", "-p", "-t", "glidepath"]);
        let screen = stdout(&cap);
        if screens.last() != Some(&screen) {
            screens.push(screen);
        }
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "glidepath {args} did not end");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let code = std::fs::read_to_string(&code_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (screens, code)
}

/// `run` on a terminal keeps a progress area (groups, each node, the SLI
/// window) below the scrolling narration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_in_a_terminal_keeps_a_live_progress_area() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("tmux is not installed: skipped");
        return;
    }
    let env = Env::start(3).await;
    let plan = env.plan(&env.v2, &DemoPlan::quick("3s", 5));
    let (screens, code) = in_tmux(&env, &format!("run {}", plan.display())).await;
    assert_eq!(code, 0);
    let bar = |s: &String, what: &str| {
        s.lines()
            .any(|l| l.trim_start().starts_with(what) && l.contains('['))
    };
    let mid = screens
        .iter()
        .find(|s| bar(s, "SLI window") && s.contains("probe(s)"))
        .unwrap_or_else(|| panic!("no window progress on screen: {screens:#?}"));
    eprintln!("{} distinct screens; one mid-window:\n{mid}", screens.len());
    assert!(
        bar(mid, "groups") && bar(mid, "node-1") && bar(mid, "node-3"),
        "{mid}"
    );
    // the window's progress moves
    let progress: std::collections::BTreeSet<&str> = screens
        .iter()
        .filter_map(|s| s.lines().find(|l| l.trim_start().starts_with("SLI window")))
        .collect();
    assert!(progress.len() >= 3, "{progress:#?}");
    // the narration is still there, above
    let last = screens.last().unwrap();
    assert!(last.contains("succeeded"), "{last}");
}

/// Off a terminal: `-q` prints one line per node step (no intents, no
/// polls), `-v` adds every probe and each check's reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_and_verbose_narration_off_a_terminal() {
    let env = Env::start(3).await;
    let plan = env.plan(&env.v2, &knobs());
    let out = env.run(&["run", plan.to_str().unwrap(), "-q"]);
    assert_eq!(code(&out), 0);
    let quiet = stdout(&out);
    assert!(!quiet.contains('\x1b'), "{quiet}");
    let node1: Vec<&str> = quiet
        .lines()
        .filter(|l| l.starts_with("  +") && l.contains(" node-1 "))
        .collect();
    assert!(
        node1.iter().all(|l| l.contains('✓')),
        "one line per node step, each its outcome: {node1:#?}"
    );
    for step in [
        "drain",
        "stage",
        "switch",
        "restart",
        "check_health",
        "enable",
    ] {
        assert_eq!(
            node1
                .iter()
                .filter(|l| l.split_whitespace().nth(2) == Some(step))
                .count(),
            1,
            "{step}: {node1:#?}"
        );
    }
    let mark = |l: &str| l.split_whitespace().nth(3).map(str::to_string);
    assert!(
        !quiet.lines().any(|l| mark(l).as_deref() == Some("→")),
        "no intents: {quiet}"
    );
    assert!(
        !quiet
            .lines()
            .any(|l| l.split_whitespace().nth(2) == Some("probe")),
        "no probe lines: {quiet}"
    );
    let plan = env.plan(&env.v3, &knobs());
    let out = env.run(&["run", plan.to_str().unwrap(), "-v"]);
    assert_eq!(code(&out), 1);
    let verbose = stdout(&out);
    assert!(verbose.contains(" reading "), "{verbose}");
    assert!(verbose.contains("→ probe 1 of the SLI window"), "{verbose}");
    assert!(verbose.lines().count() > quiet.lines().count());
}
