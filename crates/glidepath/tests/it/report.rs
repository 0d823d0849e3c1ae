//! `glidepath report`: the report of a journaled run, snapshot-tested in
//! Markdown, HTML and JSON on a fixture journal (fixed timestamps), the same
//! bytes twice and after the run moved to another journal (SQLite and
//! PostgreSQL), the report of a real rolled-back rollout, the HTML page in
//! headless Chromium (its screenshot kept in `target/tmp`), and bad input.

use crate::harness::*;
use glidepath::demo::DemoPlan;
use glidepath::journal::{Journal, RunRecord, RunStatus, Store};
use glidepath_core::{Event, StepKind};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The run record and events of `tests/fixtures/report_run.jsonl`: a demo
/// run whose canary breached its SLI and was rolled back, with a forced
/// gate, fingerprinted env values and hostile texts.
fn fixture() -> (RunRecord, Vec<Event>) {
    let text = include_str!("../fixtures/report_run.jsonl");
    let mut lines = text.lines();
    let r: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let s = |k: &str| r[k].as_str().unwrap().to_string();
    let rec = RunRecord {
        id: s("id"),
        fleet: s("fleet"),
        plan_path: s("plan_path"),
        plan_hash: s("plan_hash"),
        plan_source: s("plan_source"),
        version: s("version"),
        status: s("status").parse().unwrap(),
        reason: s("reason"),
        created_at: r["created_at"].as_u64().unwrap(),
        updated_at: r["updated_at"].as_u64().unwrap(),
    };
    (
        rec,
        lines.map(|l| serde_json::from_str(l).unwrap()).collect(),
    )
}

/// A SQLite journal at `path` holding `rec` with `events`.
fn journal_with(path: &Path, rec: &RunRecord, events: &[Event]) {
    let mut j = Journal::open(path).unwrap();
    j.create_run(rec).unwrap();
    for e in events {
        j.append(&rec.id, e).unwrap();
    }
}

/// `glidepath ARGS` with nothing of the caller's environment that names a
/// journal or a host.
fn glidepath(dir: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("GLIDEPATH_JOURNAL")
        .env_remove("GLIDEPATH_HOST")
        .env("XDG_STATE_HOME", dir.join("state"))
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!("glidepath {args:?}: {}", stderr(&out));
    }
    out
}

fn report(dir: &Path, journal: &str, run: &str, format: &str) -> String {
    let out = glidepath(
        dir,
        &["report", run, "--journal", journal, "--format", format],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    stdout(&out)
}

#[test]
fn the_report_of_a_journaled_run_is_snapshot_tested_in_md_html_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let (rec, events) = fixture();
    let j = dir.path().join("j.db");
    journal_with(&j, &rec, &events);
    let j = j.to_str().unwrap();
    insta::assert_snapshot!("report_md", report(dir.path(), j, &rec.id, "md"));
    insta::assert_snapshot!("report_html", report(dir.path(), j, &rec.id, "html"));
    insta::assert_snapshot!("report_json", report(dir.path(), j, &rec.id, "json"));
    // md is the default; `--output json` picks JSON; `latest` and a prefix name the run
    assert_eq!(
        stdout(&glidepath(dir.path(), &["report", "--journal", j])),
        report(dir.path(), j, &rec.id, "md")
    );
    assert_eq!(
        stdout(&glidepath(
            dir.path(),
            &["report", "r261101", "--journal", j, "--output", "json"]
        )),
        report(dir.path(), j, &rec.id, "json")
    );
}

#[test]
fn a_report_is_the_same_bytes_twice_and_after_the_run_moved_to_another_journal() {
    let dir = tempfile::tempdir().unwrap();
    let (rec, events) = fixture();
    let a = dir.path().join("a.db");
    journal_with(&a, &rec, &events);
    let a = a.to_str().unwrap();
    let formats = ["md", "html", "json"];
    let first: Vec<String> = formats
        .iter()
        .map(|f| report(dir.path(), a, &rec.id, f))
        .collect();
    let again: Vec<String> = formats
        .iter()
        .map(|f| report(dir.path(), a, &rec.id, f))
        .collect();
    assert_eq!(first, again);
    // exported, imported into another SQLite journal
    let dump = dir.path().join("run.jsonl");
    let out = glidepath(
        dir.path(),
        &[
            "journal",
            "export",
            &rec.id,
            "--journal",
            a,
            "-f",
            dump.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 0);
    let b = dir.path().join("b.db");
    let b = b.to_str().unwrap();
    let out = glidepath(
        dir.path(),
        &["journal", "import", dump.to_str().unwrap(), "--journal", b],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let moved: Vec<String> = formats
        .iter()
        .map(|f| report(dir.path(), b, &rec.id, f))
        .collect();
    assert_eq!(first, moved, "the same report from the imported journal");
    // and into PostgreSQL: the same report through the other Store
    if !postgres_available() {
        return;
    }
    let server = glidepath::demo::infra::Postgres::start(&dir.path().join("pg")).unwrap();
    server
        .psql("postgres", "CREATE DATABASE glidepath")
        .unwrap();
    let url = server.url("glidepath");
    let out = glidepath(
        dir.path(),
        &[
            "journal",
            "import",
            dump.to_str().unwrap(),
            "--journal",
            &url,
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let pg: Vec<String> = formats
        .iter()
        .map(|f| report(dir.path(), &url, &rec.id, f))
        .collect();
    assert_eq!(first, pg, "the same report from PostgreSQL");
}

#[test]
fn a_run_in_progress_is_reported_as_far_as_it_went() {
    let dir = tempfile::tempdir().unwrap();
    let (mut rec, events) = fixture();
    rec.status = RunStatus::Running;
    rec.reason = String::new();
    let cut = events
        .iter()
        .position(|e| matches!(e, Event::Intent { step, .. } if step.kind == StepKind::Stage))
        .unwrap();
    let j = dir.path().join("j.db");
    journal_with(&j, &rec, &events[..=cut]);
    let md = report(dir.path(), j.to_str().unwrap(), &rec.id, "md");
    assert!(md.contains("**in progress (running)**"), "{md}");
    assert!(md.contains("| stage | 3 | 1 | 0 ms | in_flight |"), "{md}");
    assert!(!md.contains("## Rollback"), "{md}");
}

#[test]
fn bad_input_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let (rec, events) = fixture();
    let j = dir.path().join("j.db");
    journal_with(&j, &rec, &events);
    let j = j.to_str().unwrap();
    // an unknown run: exit 2, as `status`
    let out = glidepath(dir.path(), &["report", "r999", "--journal", j]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("no run `r999`") && stderr(&out).contains("glidepath history"),
        "{}",
        stderr(&out)
    );
    // a file that is no journal
    let not = dir.path().join("notes.txt");
    std::fs::write(&not, "these are notes, not a journal\n".repeat(200)).unwrap();
    let out = glidepath(
        dir.path(),
        &["report", "latest", "--journal", not.to_str().unwrap()],
    );
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("notes.txt"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    // no journal at all
    let out = glidepath(dir.path(), &["report", "--journal", "missing.db"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("no journal at missing.db"),
        "{}",
        stderr(&out)
    );
    // an unwritable output file
    let out = glidepath(
        dir.path(),
        &["report", "--journal", j, "-o", "no/such/dir/r.md"],
    );
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("--out no/such/dir/r.md"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_of_a_rolled_back_rollout_names_the_breach_its_figures_and_the_rollback() {
    let env = Env::start(3).await;
    let plan = env.plan(&env.v3, &DemoPlan::quick("3s", 5));
    let out = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "rolled back");
    let run = env.latest_run();
    let out = env.run(&["report", &run]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let md = stdout(&out);
    assert!(md.contains("**finished: rolled_back**"), "{md}");
    // the decision, with the breach's figures
    let rollback = md
        .lines()
        .find(|l| l.contains("| rollback | rolling back: SLI breach"))
        .unwrap_or_else(|| panic!("a rollback decision: {md}"));
    assert!(
        rollback.contains("> max") && rollback.contains("samples"),
        "{rollback}"
    );
    // the probe that breached, judged by the core, in the check's series
    assert!(md.contains("### error rate (max 0.05)"), "{md}");
    assert!(md.contains("| **breach** |"), "{md}");
    // the rollback: what was restored, nothing left unreversed
    assert!(md.contains("- Restored: node-1 (back to 1)"), "{md}");
    assert!(md.contains("- Not reversed: nothing"), "{md}");
    assert!(md.contains("- node-1 served 3 from +"), "{md}");
    // who ran it, from where (the journaled origin), and the plan
    let by = md.lines().find(|l| l.starts_with("| Run by |")).unwrap();
    assert!(
        !by.contains("unknown") && by.contains("(pid ") && by.contains("glidepath "),
        "{by}"
    );
    assert!(
        md.contains(&format!(
            "| Plan | {} |",
            plan.canonicalize().unwrap().display()
        )),
        "{md}"
    );
    let sha = glidepath::plan::sha256_hex(std::fs::read(&plan).unwrap().as_slice());
    assert!(md.contains(&format!("| Plan sha256 | {sha} |")), "{md}");
    // the same run as JSON names the same cause
    let out = env.run(&["report", &run, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["report"], 1);
    assert!(
        v["rollback"]["cause"]
            .as_str()
            .unwrap()
            .contains("SLI breach"),
        "{v}"
    );
    assert_eq!(v["nodes"][0]["status"], "rolled_back");
    assert_eq!(v["nodes"][1]["status"], "untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_of_a_resumed_run_names_each_process_that_drove_it() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v3, &DemoPlan::quick("3s", 5));
    // killed while rolling the canary back, by alice on ops-1
    let out = env
        .cmd(&["run", plan.to_str().unwrap()])
        .env("GLIDEPATH_CRASH_AT", "outcome:switch:node-1@2")
        .env("USER", "alice")
        .env("GLIDEPATH_HOST", "ops-1")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(9), "{}", stderr(&out));
    let run = env.latest_run();
    // resumed by bob (on the same host: the dead holder is seen dead)
    let out = env
        .cmd(&["resume", &run])
        .env("USER", "bob")
        .env("GLIDEPATH_HOST", "ops-1")
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let md = stdout(&env.run(&["report", &run]));
    let by = md.lines().find(|l| l.starts_with("| Run by |")).unwrap();
    assert!(by.starts_with("| Run by | alice@ops-1 (pid "), "{md}");
    let resumed = md
        .lines()
        .find(|l| l.starts_with("| Resumed at +"))
        .unwrap_or_else(|| panic!("{md}"));
    assert!(resumed.contains("| bob@ops-1 (pid "), "{resumed}");
    for kind in [
        "| rollback |",
        "| interrupted |",
        "| resumed | resumed by bob@ops-1",
        "| finished | rolled_back",
    ] {
        assert!(md.contains(kind), "{kind}: {md}");
    }
    assert!(md.contains("- Restored: node-1 (back to 1)"), "{md}");
}

fn chromium_bin() -> Option<&'static str> {
    let on_path = |b: &str| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(b).is_file()))
    };
    ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| on_path(b))
}

fn chromium(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(chromium_bin().unwrap())
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.join("chromium").display()
        ))
        .args(args)
        .output()
        .expect("chromium runs")
}

#[test]
fn the_html_report_renders_in_headless_chromium() {
    if chromium_bin().is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("chromium is not installed: under CI it must be (.ci/run installs it)");
        }
        eprintln!(
            "\n!!!!!!!! SKIPPING: chromium not installed (apt-get install chromium) !!!!!!!!\n"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (rec, events) = fixture();
    let j = dir.path().join("j.db");
    journal_with(&j, &rec, &events);
    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let html = artifacts.join("report-rolled-back.html");
    let out = glidepath(
        dir.path(),
        &[
            "report",
            &rec.id,
            "--journal",
            j.to_str().unwrap(),
            "--format",
            "html",
            "-o",
            html.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 0);
    let url = format!("file://{}", html.display());
    // the DOM as the browser built it: the charts, no script
    let dom = stdout(&chromium(dir.path(), &["--dump-dom", &url]));
    assert_eq!(dom.matches("<svg class=\"chart\"").count(), 2, "{dom}");
    assert_eq!(
        dom.matches("class=\"limit\"").count(),
        2,
        "a limit line per chart"
    );
    assert!(
        dom.contains("class=\"series\""),
        "the canary's series is drawn"
    );
    assert!(!dom.contains("<script"), "a journaled <script> stays text");
    // the picture, kept as the test's artifact
    let png = artifacts.join("report-rolled-back.png");
    let _ = std::fs::remove_file(&png);
    let out = chromium(
        dir.path(),
        &[
            "--window-size=1280,2000",
            &format!("--screenshot={}", png.display()),
            &url,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = std::fs::read(&png).expect("a screenshot");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    assert_eq!(width, 1280);
    assert!(
        bytes.len() > 50_000,
        "a page with content, not a blank: {} bytes",
        bytes.len()
    );
    eprintln!("the report's screenshot: {}", png.display());
}
