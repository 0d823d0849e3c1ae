//! The JSON output contract (README "JSON output"): every reporting command
//! with `--output json` prints exactly one JSON object on stdout, with
//! `schema_version`, and the same names for the same things: `run_id`,
//! RFC 3339 times, `holder` as an object.

use crate::harness::*;
use glidepath::demo::DemoPlan;
use serde_json::Value;
use std::process::Output;
use std::time::Duration;

fn knobs() -> DemoPlan {
    DemoPlan::quick("2s", 3)
}

/// Keys that the contract replaced: a run is `run_id`, times are `…_at`.
const OLD_KEYS: &[&str] = &["id", "created_at", "started"];

fn is_rfc3339(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| humantime::parse_rfc3339(s).is_ok() && s.ends_with('Z'))
}

/// Walk a document: the shared names and their shapes, everywhere.
fn check_names(v: &Value, path: &str) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let here = format!("{path}.{k}");
                assert!(!OLD_KEYS.contains(&k.as_str()), "old key {here}: {v}");
                if k.ends_with("_at") || k == "since" {
                    assert!(is_rfc3339(x), "{here} is not an RFC 3339 time: {x}");
                }
                if k == "run_id" {
                    assert!(x.as_str().is_some_and(|s| !s.is_empty()), "{here}: {x}");
                }
                if k == "holder" && !x.is_null() {
                    assert!(x["pid"].is_u64(), "{here}.pid: {x}");
                    assert!(x["host"].is_string(), "{here}.host: {x}");
                    assert!(is_rfc3339(&x["since"]), "{here}.since: {x}");
                    assert!(x["alive"].is_boolean(), "{here}.alive: {x}");
                }
                check_names(x, &here);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                check_names(x, &format!("{path}[{i}]"));
            }
        }
        _ => {}
    }
}

/// stdout is exactly one JSON object with `schema_version: 1` and the
/// shared names; returns it.
pub(crate) fn doc(out: &Output) -> Value {
    let text = stdout(out);
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("stdout is not exactly one JSON document ({e}):\n{text}"));
    assert!(v.is_object(), "not an object: {v}");
    assert_eq!(v["schema_version"], 1, "{v}");
    check_names(&v, "");
    v
}

fn run_json(env: &Env, args: &[&str]) -> (i32, Value) {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let out = env.run(&all);
    (code(&out), doc(&out))
}

/// A run summary (`run`, `resume`, `status`, a carried-out command).
fn assert_summary(v: &Value, run: &str) {
    assert_eq!(v["run_id"], run, "{v}");
    assert!(is_rfc3339(&v["started_at"]), "{v}");
    assert!(is_rfc3339(&v["updated_at"]), "{v}");
    assert!(v["nodes"].is_array(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_contract_of_run_status_promote_history_and_rollback() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs().paused_after_canary());
    let (child, run) = env.run_to_pause(&plan, &["--output", "json"]).await;

    // status of a live run: the holder is an object, alive
    let (c, v) = run_json(&env, &["status", &run]);
    assert_eq!(c, 0);
    assert_summary(&v, &run);
    assert_eq!(v["holder"]["pid"], child.id(), "{v}");
    assert_eq!(v["holder"]["alive"], true, "{v}");
    assert!(v["waiting"].as_str().unwrap().contains("paused"), "{v}");

    // promote: JSON, acknowledged by the live process
    let (c, v) = run_json(&env, &["promote", &run]);
    assert_eq!(c, 0, "{v}");
    assert_eq!(v["run_id"], run.as_str());
    assert_eq!(v["command"], "promote");
    assert_eq!(v["acknowledged"], true);
    assert_eq!(v["result"], "applied");
    assert_eq!(v["holder"]["pid"], child.id(), "{v}");

    // run: the summary at the end, nothing else on stdout
    let out = wait_output(child, Duration::from_secs(120)).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = doc(&out);
    assert_summary(&v, &run);
    assert_eq!(v["status"], "succeeded");

    // status of a finished run: no holder
    let (_, v) = run_json(&env, &["status"]);
    assert_summary(&v, &run);
    assert!(v["holder"].is_null(), "{v}");

    // history: an object with `runs`, each with run_id and RFC 3339 times
    let (c, v) = run_json(&env, &["history"]);
    assert_eq!(c, 0);
    let runs = v["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1, "{v}");
    assert_eq!(runs[0]["run_id"], run.as_str());
    assert!(is_rfc3339(&runs[0]["started_at"]) && is_rfc3339(&runs[0]["updated_at"]));
    assert_eq!(runs[0]["status"], "succeeded");

    // abort of a finished run: nothing to do, said in JSON
    let (c, v) = run_json(&env, &["abort", &run]);
    assert_eq!(c, 9, "exit 9: nothing to do");
    assert_eq!(v["result"], "already_finished", "{v}");
    assert_eq!(v["acknowledged"], false);
    assert_eq!(v["status"], "succeeded");

    // rollback with no live process: taken over here; the sentence goes
    // to stderr, stdout is the one document
    let out = env.run(&["rollback", &run, "--output", "json"]);
    assert_eq!(code(&out), 1, "rolled back: {}", stderr(&out));
    assert!(
        stderr(&out).contains("carrying out the rollback here"),
        "{}",
        stderr(&out)
    );
    let v = doc(&out);
    assert_eq!(v["command"], "rollback");
    assert_eq!(v["result"], "carried_out");
    assert_eq!(v["acknowledged"], true);
    assert_summary(&v["summary"], &run);
    env.assert_fleet(&["1", "1"]).await;

    // promote of a finished run: the error object
    let (c, v) = run_json(&env, &["promote", &run]);
    assert_eq!(c, 9);
    assert_eq!(v["exit_code"], 9);
    assert!(
        v["error"].as_str().unwrap().contains("already finished"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_contract_of_resume_and_abort_taking_a_run_over() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs());
    let p = plan.to_str().unwrap();

    // a run whose process died, resumed
    env.run_until_killed(&["run", p], "outcome:switch:node-1");
    let run = env.latest_run();
    let (c, v) = run_json(&env, &["resume", &run]);
    assert_eq!(c, 0, "{v}");
    assert_summary(&v, &run);
    assert_eq!(v["status"], "succeeded");
    // resume of a finished run: the summary too, not a sentence (exit 9:
    // nothing to do)
    let (c, v) = run_json(&env, &["resume", &run]);
    assert_eq!(c, 9);
    assert_summary(&v, &run);

    // a second run dies; abort takes it over, stdout stays one document
    let plan3 = env.plan(&env.v3, &knobs());
    env.run_until_killed(&["run", plan3.to_str().unwrap()], "outcome:switch:node-1");
    let run3 = env.latest_run();
    assert_ne!(run3, run);
    let out = env.run(&["abort", &run3, "--output", "json"]);
    assert_eq!(code(&out), 5, "aborted: {}", stderr(&out));
    assert!(stderr(&out).contains("no live process holds run"));
    let v = doc(&out);
    assert_eq!(v["run_id"], run3.as_str());
    assert_eq!(v["command"], "abort");
    assert_eq!(v["result"], "carried_out");
    assert_eq!(v["status"], "aborted");
    assert_summary(&v["summary"], &run3);
    env.assert_fleet(&["2", "2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_contract_of_validate_preflight_lint_and_errors() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs());
    let p = plan.to_str().unwrap();

    let (c, v) = run_json(&env, &["validate", p]);
    assert_eq!(c, 0);
    assert_eq!(v["valid"], true);
    assert!(!v["steps"].as_array().unwrap().is_empty());

    // an invalid plan: the problems, and the error with its exit code
    let bad = env.path().join("bad.toml");
    let text = std::fs::read_to_string(&plan).unwrap();
    std::fs::write(
        &bad,
        text.replacen("[strategy]", "[strategy]\nbogus = 1", 1),
    )
    .unwrap();
    let (c, v) = run_json(&env, &["validate", bad.to_str().unwrap()]);
    assert_eq!(c, 2);
    assert_eq!(v["valid"], false);
    assert!(v["problems"][0]["message"].is_string(), "{v}");
    assert_eq!(v["exit_code"], 2);
    assert!(v["error"].is_string());

    // preflight: an object with the gates, not a bare array
    let (c, v) = run_json(&env, &["preflight", p]);
    assert_eq!(c, 0, "{v}");
    assert_eq!(v["passed"], true);
    let gates = v["gates"].as_array().expect("gates");
    assert!(gates.iter().any(|g| g["gate"] == "artifact"), "{v}");

    // lint: an object with the files, with --output json or --reporter json
    let sql = env.path().join("sql");
    std::fs::create_dir_all(&sql).unwrap();
    std::fs::write(
        sql.join("001.sql"),
        "SET lock_timeout = '2s';\nALTER TABLE t DROP COLUMN c;\n",
    )
    .unwrap();
    let (c, v) = run_json(&env, &["lint", sql.to_str().unwrap()]);
    assert_eq!(c, 3);
    assert_eq!(
        v["files"][0]["findings"][0]["rule"], "ban-drop-column",
        "{v}"
    );
    let out = env.run(&["lint", sql.to_str().unwrap(), "--reporter", "json"]);
    assert_eq!(doc(&out)["files"], v["files"]);

    // errors: one object with error and exit_code
    let (c, v) = run_json(&env, &["status"]);
    assert_eq!(c, 2);
    assert_eq!(v["exit_code"], 2);
    assert!(v["error"].as_str().unwrap().contains("no journal"), "{v}");
    let (c, v) = run_json(&env, &["history"]);
    assert_eq!((c, &v["exit_code"]), (2, &Value::from(2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_contract_of_inventory_and_plan() {
    let env = Env::start(2).await;
    let sys = crate::system::system_file(&env);
    let s = sys.to_str().unwrap();
    let (c, v) = run_json(&env, &["inventory", s]);
    assert_eq!(c, 0, "{v}");
    assert_eq!(v["instances"][0]["version"], "1");
    assert!(v["axes"]["api"].is_array(), "{v}");
    assert!(v["incompatible"].as_array().unwrap().is_empty());

    let (c, v) = run_json(&env, &["plan", s, "--to", "server=2"]);
    assert_eq!(c, 0, "{v}");
    assert_eq!(v["reachable"], true);
    assert_eq!(v["stages"][0]["component"], "server");
    assert!(v["current"].is_array());

    // a target no safe order reaches: the plan says why, and the error
    let (c, v) = run_json(&env, &["plan", s, "--to", "server=3", "--to", "cli=1.0"]);
    assert_eq!(c, 3, "{v}");
    assert_eq!(v["reachable"], false);
    assert!(v["reason"].is_string());
    assert_eq!(v["exit_code"], 3);
}

#[test]
fn json_contract_of_demo() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("demo");
    let out = std::process::Command::new(BIN)
        .args([
            "demo",
            "--nodes",
            "2",
            "--window",
            "1s",
            "--probe-interval",
            "200ms",
        ])
        .args(["--dir", work.to_str().unwrap(), "--output", "json"])
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = doc(&out);
    assert_eq!(v["passed"], true, "{v}");
    assert_eq!(
        (&v["good"], &v["bad"]),
        (&"succeeded".into(), &"rolled_back".into())
    );
}
