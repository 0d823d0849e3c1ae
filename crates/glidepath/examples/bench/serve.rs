//! serve: `glidepath serve` (the release binary, a process of its own)
//! - event-to-client latency: a demo rollout (4 real demo nodes, traffic,
//!   a 6 s SLI window probed every second) journaled by this process; an
//!   SSE client reads the run's event stream from the server: from each
//!   event's journaled time (`at`, taken as it is appended) to its arrival;
//! - RSS with 1,000 runs in the journal (4-node runs by the engine's
//!   instant drivers), after listing them, one summary each of 50, and
//!   `/metrics` (which reads every run);
//! - a 200-node run's page: the API answer (`/api/v1/runs/{id}`, median of
//!   20) and, in headless Chromium over the DevTools protocol, from
//!   navigation start to the run drawn (200 node rows) and to
//!   `DOMContentLoaded`.

use glidepath::demo::fleet::{write_release, DemoFleet};
use glidepath::demo::plans::LocalPlan;
use glidepath::demo::{plan_text, relative_artifact, DemoPlan};
use glidepath::drivers::Drivers;
use glidepath::executor::Executor;
use glidepath::journal::{now_ms, Journal, Store};
use glidepath::report::Silent;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Served {
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(journal: &Path) -> Served {
    let mut child = Command::new(crate::glidepath_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--journal"])
        .arg(journal)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("glidepath serve");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .expect("serve prints its address")
        .to_string();
    std::thread::spawn(move || for _ in err.lines() {});
    Served {
        child,
        url: format!("http://{addr}"),
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let get = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("VmRSS:"), get("VmHWM:"))
}

async fn latency() {
    let dir = tempfile::tempdir().unwrap();
    let DemoFleet { fleet, v2, .. } =
        DemoFleet::start(&crate::glidepath_bin(), dir.path(), 4).unwrap();
    let traffic = fleet.traffic(200);
    let knobs = DemoPlan {
        window: "6s".into(),
        probe_interval: "1s".into(),
        ..Default::default()
    };
    let path = dir.path().join("plan.toml");
    let artifact = relative_artifact(&v2, dir.path());
    std::fs::write(&path, plan_text(&fleet, &v2, &artifact, &knobs)).unwrap();
    let (plan, _) = glidepath::plan::load(&path).unwrap_or_else(|_| panic!("plan"));
    let jpath = dir.path().join("glidepath.db");
    let journal = Journal::open(&jpath).unwrap();
    let s = serve(&jpath);
    let p2 = plan.clone();
    let run = tokio::spawn(async move {
        Executor::start(
            p2.clone(),
            journal,
            Drivers::for_plan(&p2),
            Arc::new(Silent),
        )
        .await
        .unwrap()
    });
    // the run's id once it exists
    let j = Journal::open(&jpath).unwrap();
    let id = loop {
        if let Some(r) = j.runs(1).unwrap().first() {
            break r.id.clone();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let client = reqwest::Client::new();
    let mut resp = client
        .get(format!("{}/api/v1/runs/{id}/events", s.url))
        .send()
        .await
        .unwrap();
    let (mut buf, mut lat, mut backlog) = (String::new(), Vec::new(), 0);
    let t0 = now_ms();
    'read: while let Some(chunk) = resp.chunk().await.unwrap() {
        let arrived = now_ms();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(i) = buf.find("\n\n") {
            let frame: String = buf.drain(..i + 2).collect();
            if frame.contains("event: end") {
                break 'read;
            }
            if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                let v: Value = serde_json::from_str(data).unwrap();
                let at = v["at"].as_u64().unwrap();
                if at < t0 {
                    // journaled before the stream opened: a backlog, not latency
                    backlog += 1;
                    continue;
                }
                lat.push(arrived.saturating_sub(at) as f64);
            }
        }
    }
    let r = run.await.unwrap();
    traffic.stop().await;
    let n = lat.len();
    println!(
        "serve: event-to-client latency over SSE (journal append to delivery, poll {} ms), demo rollout ({}), {n} events (+{backlog} already journaled): median {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        glidepath::serve::POLL_INTERVAL.as_millis(),
        r.outcome.as_str(),
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
        pct(&mut lat, 1.0)
    );
}

/// `runs` runs of a `nodes`-node local plan into `jpath`; the last run's id.
async fn fill(dir: &Path, jpath: &Path, runs: usize, nodes: usize) -> String {
    let rel = write_release(dir, &glidepath::demo::releases()[1]).unwrap();
    let path = LocalPlan::new(nodes, 10000).write(dir, &rel).unwrap();
    let (plan, _) = glidepath::plan::load(&path).unwrap_or_else(|_| panic!("bench plan invalid"));
    let mut last = String::new();
    for _ in 0..runs {
        let j = Journal::open(jpath).unwrap();
        let r = Executor::start(
            plan.clone(),
            j,
            crate::engine::instant_drivers(),
            Arc::new(Silent),
        )
        .await
        .unwrap();
        last = r.run_id;
    }
    last
}

async fn rss() {
    let dir = tempfile::tempdir().unwrap();
    let jpath = dir.path().join("glidepath.db");
    let t = Instant::now();
    fill(dir.path(), &jpath, 1000, 4).await;
    eprintln!(
        "  (1,000 runs journaled in {:.1}s)",
        t.elapsed().as_secs_f64()
    );
    let s = serve(&jpath);
    let client = reqwest::Client::new();
    let idle = rss_kib(s.child.id());
    let runs: Value = client
        .get(format!("{}/api/v1/runs?limit=1000", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<String> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 1000);
    for id in ids.iter().take(50) {
        client
            .get(format!("{}/api/v1/runs/{id}", s.url))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
    }
    let t = Instant::now();
    let m = client
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let first = t.elapsed();
    assert!(
        m.contains("glidepath_runs{status=\"succeeded\"} 1000"),
        "{m}"
    );
    let (rss, hwm) = rss_kib(s.child.id());
    println!(
        "serve: RSS with 1,000 runs in the journal: {:.1} MiB idle, {:.1} MiB after listing them, 50 summaries and /metrics (peak {:.1} MiB); first /metrics over 1,000 runs {:.0} ms",
        idle.0 as f64 / 1024.0,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        first.as_secs_f64() * 1e3
    );
}

async fn page() {
    let dir = tempfile::tempdir().unwrap();
    let jpath = dir.path().join("glidepath.db");
    let id = fill(dir.path(), &jpath, 1, 200).await;
    let s = serve(&jpath);
    let client = reqwest::Client::new();
    let mut api = Vec::new();
    let mut bytes = 0;
    for _ in 0..20 {
        let t = Instant::now();
        let body = client
            .get(format!("{}/api/v1/runs/{id}", s.url))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        api.push(t.elapsed().as_secs_f64() * 1e3);
        bytes = body.len();
    }
    let events = Journal::open(&jpath).unwrap().events(&id).unwrap().len();
    println!(
        "serve: 200-node run ({events} events): /api/v1/runs/{{id}} median {:.1} ms ({} KiB)",
        pct(&mut api, 0.5),
        bytes / 1024
    );
    let Some(mut cdp) = Cdp::start(dir.path()).await else {
        println!("serve: page load skipped: chromium is not installed");
        return;
    };
    let mut drawn = Vec::new();
    let mut dcl = Vec::new();
    for _ in 0..5 {
        cdp.call(
            "Page.navigate",
            json!({"url": format!("{}/runs/{id}", s.url)}),
        )
        .await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = cdp
                .eval("JSON.stringify({rows: document.querySelectorAll('#nodes tbody tr').length, now: performance.now(), dcl: performance.getEntriesByType('navigation')[0]?.domContentLoadedEventEnd || 0})")
                .await;
            let v: Value = serde_json::from_str(v.as_str().unwrap_or("{}")).unwrap_or_default();
            if v["rows"] == 200 {
                drawn.push(v["now"].as_f64().unwrap());
                dcl.push(v["dcl"].as_f64().unwrap());
                break;
            }
            assert!(Instant::now() < deadline, "the page never drew the run");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    println!(
        "serve: 200-node run page in headless Chromium, 5 loads: DOMContentLoaded median {:.0} ms; run drawn (200 node rows) median {:.0} ms (max {:.0} ms) after navigation start",
        pct(&mut dcl, 0.5),
        pct(&mut drawn, 0.5),
        pct(&mut drawn, 1.0)
    );
}

/// A DevTools session with headless Chromium's first page.
struct Cdp {
    _child: Served,
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    next: u64,
}

impl Cdp {
    async fn start(dir: &Path) -> Option<Cdp> {
        let mut child = Command::new("chromium")
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-port=0",
                "about:blank",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.join("chromium").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        let err = BufReader::new(child.stderr.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in err.lines().map_while(Result::ok) {
                if let Some(ws) = l.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(ws.to_string());
                }
            }
        });
        let ws = rx.recv_timeout(Duration::from_secs(60)).ok()?;
        let host = ws
            .trim_start_matches("ws://")
            .split('/')
            .next()?
            .to_string();
        let list: Value = reqwest::get(format!("http://{host}/json/list"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let page = list.as_array()?.iter().find(|t| t["type"] == "page")?["webSocketDebuggerUrl"]
            .as_str()?
            .to_string();
        let tcp = tokio::net::TcpStream::connect(&host).await.ok()?;
        let (ws, _) = tokio_tungstenite::client_async(page.as_str(), tcp)
            .await
            .ok()?;
        Some(Cdp {
            _child: Served {
                child,
                url: String::new(),
            },
            ws,
            next: 0,
        })
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        self.next += 1;
        let id = self.next;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(Message::Text(msg.into())).await.unwrap();
        while let Some(m) = self.ws.next().await {
            if let Ok(Message::Text(t)) = m {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["id"] == id {
                    return v["result"].clone();
                }
            }
        }
        Value::Null
    }

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

/// `what`: `serve` (all three), `serve-latency`, `serve-rss`, `serve-page`.
pub async fn serve_figures(what: &str) {
    if matches!(what, "serve" | "all" | "serve-latency") {
        latency().await;
    }
    if matches!(what, "serve" | "all" | "serve-rss") {
        rss().await;
    }
    if matches!(what, "serve" | "all" | "serve-page") {
        page().await;
    }
}
