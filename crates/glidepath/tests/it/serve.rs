//! `glidepath serve` against live rollouts run by another process: the API
//! and its event stream (in order, from any sequence number), `/metrics`
//! (checked by `promtool` and parsed), the actions (401 without the token
//! or with a wrong one, applied with it), and the dashboard in a real
//! headless Chromium, followed live over the DevTools protocol.

use crate::harness::*;
use crate::real::available;
use glidepath::demo::DemoPlan;
use glidepath_core::Event;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "test-token-0123456789abcdef";

/// A `glidepath serve` child: its base URL and everything it wrote to stderr.
pub struct Served {
    _child: Running,
    pub url: String,
    pub log: Arc<Mutex<String>>,
}

/// Start `glidepath serve` on a free port (with the token in `GP_TOKEN`)
/// and wait for the address it prints.
pub async fn serve(env: &Env, extra: &[&str]) -> Served {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
    args.extend(extra);
    let mut child = env
        .cmd(&args)
        .env("GP_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn glidepath serve");
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let err = child.stderr.take().unwrap();
    let l = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("glidepath serve: http://") {
                let _ = tx.send(rest.split('/').next().unwrap_or("").to_string());
            }
            let mut l = l.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    let addr = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
        .await
        .unwrap()
        .expect("glidepath serve prints its address");
    Served {
        _child: Running::from(child),
        url: format!("http://{addr}"),
        log,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn get_json(url: &str) -> Value {
    let r = client().get(url).send().await.unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.json().await.unwrap()
}

/// Read an event stream until `stop` says so (or the stream ends): the
/// (id, data) of each event, and whether it ended with `end`.
async fn read_stream(
    url: &str,
    last_id: Option<i64>,
    limit: Duration,
    stop: impl Fn(&[(i64, Value)]) -> bool,
) -> (Vec<(i64, Value)>, bool) {
    let mut req = client()
        .get(url)
        .timeout(limit)
        .header("accept", "text/event-stream");
    if let Some(l) = last_id {
        req = req.header("last-event-id", l.to_string());
    }
    let mut resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let (mut buf, mut got, mut ended) = (String::new(), Vec::new(), false);
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && !ended && !stop(&got) {
        let Ok(Some(chunk)) = resp.chunk().await else {
            break;
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(i) = buf.find("\n\n") {
            let frame: String = buf.drain(..i + 2).collect();
            let (mut id, mut data, mut kind) = (None, String::new(), None);
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse::<i64>().ok();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                } else if let Some(v) = line.strip_prefix("event:") {
                    kind = Some(v.trim().to_string());
                }
            }
            if kind.as_deref() == Some("end") {
                ended = true;
            } else if let Some(id) = id {
                got.push((id, serde_json::from_str(&data).unwrap()));
            }
        }
    }
    (got, ended)
}

async fn post(url: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = client().post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_events_actions_and_metrics_follow_a_rollout_of_another_process() {
    let env = Env::start(3).await;
    env.journal(); // the journal exists before the run: serve starts first
    let s = serve(&env, &["--token-env", "GP_TOKEN"]).await;
    assert_eq!(
        get_json(&format!("{}/api/v1/runs", s.url)).await["runs"],
        json!([])
    );
    let plan = env.plan(&env.v2, &DemoPlan::quick("2s", 5).paused_after_canary());
    let mut child = env.spawn(&["run", plan.to_str().unwrap()]);
    wait_until("the run to exist", Duration::from_secs(60), || {
        env.journal().runs(1).is_ok_and(|r| !r.is_empty())
    })
    .await;
    let run = env.latest_run();
    // a stream from the first event, read while the run goes on, up to the pause
    let events_url = format!("{}/api/v1/runs/{run}/events", s.url);
    let (first, ended) = read_stream(&events_url, None, Duration::from_secs(90), |got| {
        got.iter().any(|(_, v)| v["event"] == "window_closed")
    })
    .await;
    assert!(!ended, "the run waits at its pause: the stream goes on");
    let ids: Vec<i64> = first.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids,
        (1..=ids.len() as i64).collect::<Vec<_>>(),
        "in order, no gap"
    );
    for (id, v) in &first {
        assert_eq!(v["seq"], *id);
    }
    // the same events as the journal, key for key
    let journaled = env.journal().events_since(&run, 0).unwrap();
    for ((id, v), (seq, ev)) in first.iter().zip(&journaled) {
        assert_eq!(id, seq);
        let mut want = serde_json::to_value(ev).unwrap();
        want["seq"] = json!(seq);
        assert_eq!(v, &want);
    }
    // from a given sequence number: ?from=N, and Last-Event-ID on a reconnect
    let (from5, _) = read_stream(
        &format!("{events_url}?from=5"),
        None,
        Duration::from_secs(30),
        |g| g.len() >= 3,
    )
    .await;
    assert_eq!(from5.iter().map(|e| e.0).collect::<Vec<_>>(), [5, 6, 7]);
    let (after7, _) = read_stream(&events_url, Some(7), Duration::from_secs(30), |g| {
        g.len() >= 2
    })
    .await;
    assert_eq!(after7.iter().map(|e| e.0).collect::<Vec<_>>(), [8, 9]);
    // the clients that went away (the run still waits) are dropped: no
    // stream stays open on the server
    let metrics = format!("{}/metrics", s.url);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = client()
            .get(&metrics)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let open = glidepath_core::metrics::parse_text(&text)
            .into_iter()
            .find(|m| m.name == "glidepath_serve_event_streams")
            .map(|m| m.value);
        if open == Some(0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "streams still open: {open:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // the run as `status --output json` shows it
    let api = get_json(&format!("{}/api/v1/runs/{run}", s.url)).await;
    let cli: Value =
        serde_json::from_slice(&env.run(&["status", &run, "--output", "json"]).stdout).unwrap();
    for k in [
        "schema_version",
        "run_id",
        "fleet",
        "version",
        "status",
        "nodes",
        "decisions",
        "waiting",
    ] {
        assert_eq!(api[k], cli[k], "{k}");
    }
    assert!(
        api["waiting"]
            .as_str()
            .unwrap()
            .contains("paused after the canary"),
        "{api}"
    );
    let steps = get_json(&format!("{}/api/v1/runs/{run}/steps", s.url)).await;
    let current: Vec<&Value> = steps["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "current")
        .collect();
    assert_eq!(current.len(), 1, "{steps}");
    assert!(
        current[0]["label"].as_str().unwrap().starts_with("pause"),
        "{steps}"
    );

    // actions: refused without the token, and with a wrong one (logged, without the token)
    let promote = format!("{}/api/v1/runs/{run}/promote", s.url);
    let (code, body) = post(&promote, None, json!({"reason": "x"})).await;
    assert_eq!(code, 401, "{body}");
    let (code, _) = post(
        &promote,
        Some("not-the-token-at-all"),
        json!({"reason": "x"}),
    )
    .await;
    assert_eq!(code, 401);
    wait_until("the refusals to be logged", Duration::from_secs(10), || {
        let l = s.log.lock().unwrap();
        l.contains(&format!("refused promote of run {run}"))
            && l.contains("no bearer token")
            && l.contains("wrong bearer token")
    })
    .await;
    assert!(
        !s.log.lock().unwrap().contains(TOKEN),
        "the token is never logged"
    );
    assert!(
        !env.events(&run)
            .iter()
            .any(|e| matches!(e, Event::Promoted { .. })),
        "nothing was queued"
    );
    // with the token: queued through the journal, applied by the live run
    let (code, body) = post(
        &promote,
        Some(TOKEN),
        json!({"reason": "canary looks good"}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["result"], "applied", "{body}");
    assert_eq!(body["acknowledged"], true);
    assert_eq!(body["holder"]["pid"], child.id());
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(120)).await.code(),
        Some(0)
    );
    assert!(env
        .events(&run)
        .iter()
        .any(|e| matches!(e, Event::Promoted { reason, .. }
        if reason.starts_with("canary looks good (via glidepath serve, from 127.0.0.1)"))));

    // the rest of the stream, after the last event read: to the end
    let (rest, ended) = read_stream(
        &events_url,
        Some(*ids.last().unwrap()),
        Duration::from_secs(30),
        |_| false,
    )
    .await;
    assert!(ended, "the stream ends with the run");
    let all = env.journal().events_since(&run, 0).unwrap();
    assert_eq!(
        rest.iter().map(|e| e.0).collect::<Vec<_>>(),
        all.iter().map(|e| e.0).skip(ids.len()).collect::<Vec<_>>()
    );

    // /metrics: valid exposition (promtool), and the figures of this run
    // (cached for 2 s: the run's end shows within that)
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && !text.contains("glidepath_runs{status=\"succeeded\"} 1") {
        tokio::time::sleep(Duration::from_millis(250)).await;
        text = client()
            .get(&metrics)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    }
    if available(&["promtool"]) {
        let dir = env.path().join("metrics.txt");
        std::fs::write(&dir, &text).unwrap();
        let out = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::fs::File::open(&dir).unwrap())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let samples = glidepath_core::metrics::parse_text(&text);
    let value = |name: &str, label: (&str, &str)| {
        samples
            .iter()
            .find(|s| s.name == name && s.labels.get(label.0).map(String::as_str) == Some(label.1))
            .map(|s| s.value)
    };
    assert_eq!(
        value("glidepath_runs", ("status", "succeeded")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(value("glidepath_runs", ("status", "running")), Some(0.0));
    assert_eq!(
        value("glidepath_step_duration_seconds_count", ("step", "switch")),
        Some(3.0),
        "one switch per node"
    );
    let intents = all
        .iter()
        .filter(|(_, e)| matches!(e, Event::Intent { .. }))
        .count() as f64;
    let steps_total: f64 = samples
        .iter()
        .filter(|s| s.name == "glidepath_step_duration_seconds_count")
        .map(|s| s.value)
        .sum();
    assert_eq!(steps_total, intents, "every step of the journal, once");
    assert!(samples
        .iter()
        .any(|s| s.name == "glidepath_decision_latency_seconds_count" && s.value > 0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_remote_address_and_actions_without_a_configured_token() {
    let env = Env::start(1).await;
    env.journal();
    let out = env.run(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("is not a loopback address"),
        "{}",
        stderr(&out)
    );
    // a token file others can read is refused; an unset variable too
    let tf = env.path().join("token");
    std::fs::write(&tf, format!("{TOKEN}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = env.run(&["serve", "--token-file", tf.to_str().unwrap()]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("readable by other users"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["serve", "--token-env", "GP_NO_SUCH_VARIABLE"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("GP_NO_SUCH_VARIABLE: the variable is not set"));
    let s = serve(&env, &[]).await;
    let plan = env.plan(&env.v2, &DemoPlan::quick("1s", 1));
    assert_eq!(code(&env.run(&["run", plan.to_str().unwrap()])), 0);
    let run = env.latest_run();
    let (code, body) = post(
        &format!("{}/api/v1/runs/{run}/abort", s.url),
        Some(TOKEN),
        json!({}),
    )
    .await;
    assert_eq!(
        code, 403,
        "no token configured: actions are disabled: {body}"
    );
    // a foreign Host (DNS rebinding) is refused; security headers, no CORS
    let r = client()
        .get(format!("{}/api/v1/runs", s.url))
        .header("host", "evil.example:80")
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);
    let r = client()
        .get(format!("{}/api/v1/runs", s.url))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    // an oversized body is refused before it is read whole
    let r = client()
        .post(format!("{}/api/v1/runs/{run}/abort", s.url))
        .body(vec![b' '; 1 << 20])
        .send()
        .await
        .unwrap();
    assert!(r.status() == 403 || r.status() == 413, "{}", r.status());
}

/// A DevTools protocol session with one page.
struct Cdp {
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    next: u64,
}

impl Cdp {
    async fn call(&mut self, method: &str, params: Value) -> Value {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        self.next += 1;
        let id = self.next;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(Message::Text(msg.into())).await.unwrap();
        loop {
            let m = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("DevTools answers")
                .expect("DevTools open")
                .unwrap();
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["id"] == id {
                    return v["result"].clone();
                }
            }
        }
    }

    /// Evaluate `expr` in the page; its JSON value.
    async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true}),
            )
            .await;
        r["result"]["value"].clone()
    }
}

/// Start headless Chromium on `url` with a DevTools port; the child and a
/// session with its page.
async fn chromium(dir: &Path, url: &str) -> (Running, Cdp) {
    let bin = if which("chromium") {
        "chromium"
    } else {
        "chromium-browser"
    };
    let mut child = std::process::Command::new(bin)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--remote-debugging-port=0",
            "--window-size=1280,1400",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.join("chromium").display()
        ))
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chromium");
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if let Some(ws) = line.strip_prefix("DevTools listening on ") {
                let _ = tx.send(ws.to_string());
            }
        }
    });
    let child = Running::from(child);
    let browser_ws = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)))
        .await
        .unwrap()
        .expect("chromium prints its DevTools address");
    let host = browser_ws
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    // the page's target
    let mut page = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while page.is_none() && Instant::now() < deadline {
        let list: Value = get_json(&format!("http://{host}/json/list")).await;
        page = list
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(String::from));
        if page.is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let page = page.expect("a page target");
    let tcp = tokio::net::TcpStream::connect(&host).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(page.as_str(), tcp)
        .await
        .unwrap();
    (child, Cdp { ws, next: 0 })
}

fn which(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
}

/// What the test reads of the page.
const DOM: &str = r#"JSON.stringify({
  loaded: window.__probe || (window.__probe = Math.random()),
  seq: Number(document.getElementById('main').dataset.seq || 0),
  status: document.getElementById('main').dataset.status || null,
  nodes: [...document.querySelectorAll('#nodes tbody tr')].map(r => r.dataset.node),
  nodeStatus: [...document.querySelectorAll('#nodes tbody tr td:nth-child(2)')].map(t => t.textContent),
  current: [...document.querySelectorAll('#steps li.current')].map(l => l.textContent),
  decisions: [...document.querySelectorAll('#decisions li')].map(l => l.textContent),
  injected: document.querySelectorAll('#decisions img, #decisions b').length,
  charts: [...document.querySelectorAll('#charts svg')].map(s => ({check: s.dataset.check, limit: s.querySelectorAll('line.limit').length, points: s.querySelectorAll('circle.canary').length})),
})"#;

async fn dom(cdp: &mut Cdp) -> Value {
    serde_json::from_str(cdp.eval(DOM).await.as_str().unwrap_or("{}")).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_headless_chromium_follows_a_rollout_live() {
    if !available(&["chromium"]) {
        return;
    }
    let env = Env::start(3).await;
    env.journal();
    let s = serve(&env, &["--token-env", "GP_TOKEN"]).await;
    let plan = env.plan(&env.v2, &DemoPlan::quick("3s", 5).paused_after_canary());
    let mut child = env.spawn(&["run", plan.to_str().unwrap()]);
    wait_until("the run to exist", Duration::from_secs(60), || {
        env.journal().runs(1).is_ok_and(|r| !r.is_empty())
    })
    .await;
    let run = env.latest_run();
    let (_browser, mut cdp) = chromium(env.path(), &format!("{}/runs/{run}", s.url)).await;
    // the page loads, shows the nodes, and follows the run to its pause
    let mut seen = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seqs = Vec::new();
    while Instant::now() < deadline {
        seen = dom(&mut cdp).await;
        seqs.push(seen["seq"].as_i64().unwrap_or(0));
        if seen["current"].as_array().is_some_and(|c| {
            c.iter()
                .any(|l| l.as_str().unwrap_or("").starts_with("pause"))
        }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let loaded = seen["loaded"].clone();
    assert_eq!(
        seen["nodes"],
        json!(["node-1", "node-2", "node-3"]),
        "{seen}"
    );
    assert_eq!(seen["nodeStatus"][0], "updated", "{seen}");
    // `paused` once the executor recorded the pause (a record change, not
    // an event: the page may still show the status of the last event)
    assert!(
        seen["status"] == "running" || seen["status"] == "paused",
        "{seen}"
    );
    // the page looks at the record again by itself: `paused` shows up
    // without any new event
    let deadline = Instant::now() + Duration::from_secs(15);
    while seen["status"] != "paused" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        seen = dom(&mut cdp).await;
    }
    assert_eq!(seen["status"], "paused", "{seen}");
    assert!(
        seen["decisions"].to_string().contains("SLI window passed")
            || seen["decisions"].as_array().is_some_and(|d| !d.is_empty()),
        "{seen}"
    );
    // the SLI charts: one per check, with its limit and the probes drawn
    let charts = seen["charts"].as_array().unwrap();
    assert_eq!(charts.len(), 2, "{seen}");
    for c in charts {
        assert_eq!(c["limit"], 1, "{c}");
        assert!(c["points"].as_i64().unwrap() >= 1, "{c}");
    }
    // promote with a reason that is markup: shown as text, never parsed
    let (code, body) = post(
        &format!("{}/api/v1/runs/{run}/promote", s.url),
        Some(TOKEN),
        json!({"reason": "<img src=x onerror=alert(1)><b>ok</b>"}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        seen = dom(&mut cdp).await;
        seqs.push(seen["seq"].as_i64().unwrap_or(0));
        if seen["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(seen["status"], "succeeded", "{seen}");
    // the page loaded once and followed the run: before the pause if the
    // browser started in time, and in any case from the pause to the end
    let distinct: std::collections::BTreeSet<i64> =
        seqs.iter().copied().filter(|s| *s > 0).collect();
    assert!(
        distinct.len() >= 2,
        "the page updated while the run progressed: {seqs:?}"
    );
    assert_eq!(
        seen["loaded"], loaded,
        "the same page, updated live (no reload)"
    );
    assert_eq!(seen["nodeStatus"], json!(["updated", "updated", "updated"]));
    assert_eq!(seen["injected"], 0, "{seen}");
    assert!(
        seen["decisions"]
            .to_string()
            .contains("promoted: <img src=x onerror=alert(1)><b>ok</b>"),
        "{seen}"
    );
    let last = env
        .journal()
        .events_since(&run, 0)
        .unwrap()
        .last()
        .unwrap()
        .0;
    assert_eq!(seen["seq"], last, "every event reached the page");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(60)).await.code(),
        Some(0)
    );
    // the screenshot, kept as the test's artifact
    let shot = cdp
        .call("Page.captureScreenshot", json!({"format": "png"}))
        .await;
    use base64::Engine as _;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-dashboard.png");
    std::fs::write(&path, &png).unwrap();
    eprintln!("screenshot of the dashboard: {}", path.display());
}
