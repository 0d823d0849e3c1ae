//! `[notify]`: notifications received by a real HTTP receiver (axum) and a
//! command, during real rollouts of demo nodes; retries, a dead receiver,
//! secrets kept out of the journal; and the section's diagnostics.

use crate::harness::*;
use crate::plans::{diagnose, setup};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use glidepath::demo::DemoPlan;
use glidepath_core::Event;
use serde_json::Value;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the receiver got: (path, Authorization header, body), and how many
/// requests it answered 500 to.
#[derive(Default)]
struct Received {
    got: Mutex<Vec<(String, Option<String>, Value)>>,
    requests: AtomicUsize,
    /// Answer 500 to this many requests first.
    fail_first: usize,
}

impl Received {
    fn bodies(&self, path: &str) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, _, b)| b.clone())
            .collect()
    }

    fn events(&self, path: &str) -> Vec<String> {
        self.bodies(path)
            .iter()
            .map(|b| b["event"].as_str().unwrap_or("?").to_string())
            .collect()
    }
}

async fn hook(
    State(r): State<Arc<Received>>,
    UrlPath(path): UrlPath<String>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let n = r.requests.fetch_add(1, Ordering::SeqCst);
    if n < r.fail_first {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let auth = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_string());
    let v: Value = serde_json::from_str(&body).expect("a JSON body");
    r.got.lock().unwrap().push((path, auth, v));
    StatusCode::OK
}

async fn receiver(fail_first: usize) -> (SocketAddr, Arc<Received>) {
    let r = Arc::new(Received {
        fail_first,
        ..Default::default()
    });
    let app = axum::Router::new()
        .route("/{*path}", post(hook))
        .with_state(r.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (addr, r)
}

fn knobs(extra: &str) -> DemoPlan {
    DemoPlan {
        extra: extra.to_string(),
        ..crate::rollout::knobs()
    }
}

fn spawn_with(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Running {
    let mut c = env.cmd(args);
    for (k, v) in vars {
        c.env(k, v);
    }
    Running::from(
        c.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn glidepath"),
    )
}

const SECRET_PATH: &str = "hook-s3cr3t-path-7f1c";
const SECRET_TOKEN: &str = "tok-s3cr3t-4b2e";

/// A good run paused after the canary: the webhook (URL and token from the
/// environment), the Slack sink and the command all hear start, waiting
/// and finished; the secrets reach neither the journal nor the output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_run_notifies_every_sink_and_keeps_secrets_out_of_the_journal() {
    let env = Env::start(3).await;
    let (addr, rx) = receiver(0).await;
    let extra = r#"
[notify]
[[notify.webhook]]
url_env   = "HOOK_URL"
token_env = "HOOK_TOKEN"

[[notify.slack]]
url = "http://ADDR/slack"
on  = ["start", "finished"]

[[notify.command]]
command = "{ cat; echo; } >> stdin.jsonl; printf '%s\n' \"$GLIDEPATH_EVENT\" >> env.jsonl"
"#
    .replace("ADDR", &addr.to_string());
    let plan = env.plan(&env.v2, &knobs(&extra).paused_after_canary());
    let hook_url = format!("http://{addr}/{SECRET_PATH}");
    let child = spawn_with(
        &env,
        &["run", plan.to_str().unwrap()],
        &[("HOOK_URL", &hook_url), ("HOOK_TOKEN", SECRET_TOKEN)],
    );
    wait_until("the waiting notification", Duration::from_secs(60), || {
        rx.events(SECRET_PATH).contains(&"waiting".to_string())
    })
    .await;
    let run = env.latest_run();
    let out = env.run(&["promote", &run]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = wait_output(child, Duration::from_secs(90)).await;
    assert_eq!(code(&out), 0);

    // "finished" is delivered before the process exits (the grace)
    assert_eq!(rx.events(SECRET_PATH), ["start", "waiting", "finished"]);
    let hooks = rx.bodies(SECRET_PATH);
    let fin = &hooks[2];
    assert_eq!(fin["run_id"], run.as_str());
    assert_eq!(fin["fleet"], "demo");
    assert_eq!(fin["release"], "2");
    assert_eq!(fin["status"], "succeeded");
    assert!(fin["hint"]
        .as_str()
        .unwrap()
        .starts_with(&format!("glidepath status {run}")));
    assert!(hooks[1]["reason"]
        .as_str()
        .unwrap()
        .contains("paused after the canary"));
    let with_token = rx
        .got
        .lock()
        .unwrap()
        .iter()
        .filter(|g| g.0 == SECRET_PATH)
        .all(|g| g.1.as_deref() == Some(&*format!("Bearer {SECRET_TOKEN}")));
    assert!(with_token, "every webhook call carries the bearer token");

    // Slack: one `text` key, only the events asked for
    let slack = rx.bodies("slack");
    assert_eq!(slack.len(), 2, "{slack:?}");
    for s in &slack {
        assert_eq!(s.as_object().unwrap().len(), 1, "{s}");
        assert!(s["text"].as_str().unwrap().contains(&run));
    }
    assert!(slack[1]["text"].as_str().unwrap().contains("finished"));

    // the command got the event on stdin and in $GLIDEPATH_EVENT
    for file in ["stdin.jsonl", "env.jsonl"] {
        let text = std::fs::read_to_string(env.path().join(file)).unwrap();
        let events: Vec<String> = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["event"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(events, ["start", "waiting", "finished"], "{file}");
    }

    // no secret in the journal file, nor in what glidepath printed
    let journal = std::fs::read(env.journal_path()).unwrap();
    let printed = format!("{}{}", stdout(&out), stderr(&out));
    for secret in [SECRET_PATH, SECRET_TOKEN] {
        let found = journal
            .windows(secret.len())
            .any(|w| w == secret.as_bytes());
        assert!(!found, "{secret} is in the journal");
        assert!(!printed.contains(secret), "{secret} was printed");
    }
}

/// A bad release: start, the breach that rolls back, and finished (rolled
/// back); the receiver fails the first call, which is retried exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_run_notifies_the_breach_and_a_failed_call_is_retried_once() {
    let env = Env::start(3).await;
    let (addr, rx) = receiver(1).await;
    let extra = format!(
        "\n[notify]\n[[notify.webhook]]\nurl = \"http://{addr}/hook\"\non = [\"start\", \"breach\", \"rollback\", \"finished\"]\n"
    );
    let plan = env.plan(&env.v3, &knobs(&extra));
    let out = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "rolled back");
    let events = rx.events("hook");
    assert_eq!(events, ["start", "breach", "finished"]);
    // one 500, then each notification once
    assert_eq!(rx.requests.load(Ordering::SeqCst), events.len() + 1);
    let bodies = rx.bodies("hook");
    assert_eq!(bodies[1]["status"], "rolling_back");
    assert!(!bodies[1]["reason"].as_str().unwrap().is_empty());
    assert_eq!(bodies[2]["status"], "rolled_back");
    assert!(!stderr(&out).contains("not delivered"), "{}", stderr(&out));
}

fn rollout_ms(events: &[Event]) -> u64 {
    let started = events.iter().find_map(|e| match e {
        Event::Started { at, .. } => Some(*at),
        _ => None,
    });
    let finished = events.iter().find_map(|e| match e {
        Event::Finished { at, .. } => Some(*at),
        _ => None,
    });
    finished.unwrap() - started.unwrap()
}

/// A receiver that accepts and never answers, and a closed port: the
/// rollout takes as long as one without notifications (within noise), and
/// the process ends within the grace after the run finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_receiver_delays_nothing() {
    let env = Env::start(2).await;
    // a baseline: 1 → 2 with no notifications
    let plan = env.plan(&env.v2, &knobs(""));
    let out = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 0);
    let baseline = rollout_ms(&env.events(&env.latest_run()));

    // a listener that accepts and never answers
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_addr = hang.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hang.accept().await {
            held.push(s);
        }
    });
    // a closed port
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let extra = format!(
        "\n[notify]\ngrace = \"2s\"\n[[notify.webhook]]\nurl = \"http://{hang_addr}/hook\"\ntimeout = \"30s\"\n[[notify.webhook]]\nurl = \"http://{closed_addr}/hook\"\n"
    );
    // 2 → 1, the same rollout backwards
    let plan = env.plan(&env.v1, &knobs(&extra));
    let t0 = Instant::now();
    let child = env.spawn(&["run", plan.to_str().unwrap()]);
    let out = wait_output(child, Duration::from_secs(120)).await;
    let wall = t0.elapsed();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let run = env.latest_run();
    let rollout = rollout_ms(&env.events(&run));
    eprintln!("rollout without notifications {baseline} ms, with dead receivers {rollout} ms, process {wall:?}");
    assert!(
        rollout <= baseline + baseline / 2 + 2000,
        "the rollout took {rollout} ms with dead receivers, {baseline} ms without"
    );
    // the process ends within the 2 s grace of the run's end (+ margin for
    // preflight and start-up, which the baseline measures too)
    assert!(
        wall <= Duration::from_millis(rollout) + Duration::from_secs(2 + 10),
        "the process took {wall:?} for a {rollout} ms rollout"
    );
    let err = stderr(&out);
    assert!(
        err.contains("not delivered") || err.contains("gave up"),
        "{err}"
    );
    assert!(
        err.contains("webhook 1") && err.contains("webhook 2"),
        "{err}"
    );
    for addr in [hang_addr, closed_addr] {
        assert!(
            !err.contains(&addr.to_string()),
            "the URL is never printed: {err}"
        );
    }
    // the closed port is named for what it is, the hung one by the grace
    assert!(err.contains("Connection refused"), "{err}");
    assert!(
        err.contains("undelivered: ") && err.contains("to webhook 1"),
        "{err}"
    );
}

/// The section's diagnostics: each case edits a valid plan once.
#[test]
fn notify_plans_and_their_diagnostics() {
    let (dir, good) = setup();
    let ok = "\n[notify]\n[[notify.webhook]]\nurl_env = \"HOOK_URL\"\n";
    assert_eq!(diagnose(dir.path(), &format!("{good}{ok}")), "valid");
    let (plan, _) = glidepath::plan::parse(
        std::path::Path::new("plan.toml"),
        &format!("{good}{ok}token_file = \"hook-token\"\non = [\"finished\"]\n"),
        dir.path(),
    )
    .unwrap();
    let text = plan.describe().join("\n");
    assert!(
        text.contains("notify (never blocks the rollout; up to 5s at the end): webhook 1 (URL from $HOOK_URL, bearer token from "),
        "{text}"
    );
    assert!(text.contains("hook-token) on finished"), "{text}");
    let cases: &[(&str, &str)] = &[
        ("no_sink", "\n[notify]\ngrace = \"5s\"\n"),
        ("unknown_key", "\n[notify]\n[[notify.webhook]]\nurl_env = \"U\"\ntoken = \"abc\"\n"),
        ("unknown_section_key", "\n[notify]\nslak = []\n[[notify.slack]]\nurl_env = \"U\"\n"),
        ("https_refused", "\n[notify]\n[[notify.slack]]\nurl = \"https://hooks.slack.com/services/T/B/X\"\n"),
        ("not_a_url", "\n[notify]\n[[notify.webhook]]\nurl = \"hooks:8080\"\n"),
        ("url_twice", "\n[notify]\n[[notify.webhook]]\nurl = \"http://h/x\"\nurl_env = \"U\"\n"),
        ("no_url", "\n[notify]\n[[notify.webhook]]\non = [\"finished\"]\n"),
        ("token_twice", "\n[notify]\n[[notify.webhook]]\nurl_env = \"U\"\ntoken_env = \"T\"\ntoken_file = \"t\"\n"),
        ("unknown_event", "\n[notify]\n[[notify.webhook]]\nurl_env = \"U\"\non = [\"finish\", \"start\"]\n"),
        ("command_without_command", "\n[notify]\n[[notify.command]]\nformat = \"json\"\n"),
        ("bad_format", "\n[notify]\n[[notify.command]]\ncommand = \"logger\"\nformat = \"xml\"\n"),
        ("grace_too_long", "\n[notify]\ngrace = \"5m\"\n[[notify.command]]\ncommand = \"logger\"\n"),
        ("sink_not_a_table", "\n[notify]\nwebhook = \"http://h/x\"\n"),
    ];
    let mut all = String::new();
    for (name, section) in cases {
        let out = diagnose(dir.path(), &format!("{good}{section}"));
        assert_ne!(out, "valid", "case {name} must be refused");
        all.push_str(&format!("## {name}\n{out}\n"));
    }
    insta::assert_snapshot!("notify_plans", all);
}
