//! The bundled demo service (`glidepath demo-node`): a small HTTP server that
//! behaves like the release in `<dir>/current/release.toml` (or, with no
//! `current`, `<dir>/release.toml`: a node glidepath never deployed) (version, error
//! rate, latency, and a leak: `leak_after_s`, after which half of its
//! requests fail), with `/health`, `/version`, Prometheus `/metrics` (a
//! latency histogram and status-code counters), and a drain endpoint pair
//! speaking the `http` balancer protocol. `POST /admin/incident?error_rate=
//! 0.03&latency_ms=60` makes it worse whatever its release (an outside
//! incident: a slow database, a noisy neighbour) until `POST
//! /admin/recover`. SIGHUP restarts it in place: it
//! re-reads `current`, resets its counters (as a restarted process does) and
//! reports unhealthy while "booting". A release file may list
//! `unhealthy_on = ["node-3"]`: on the nodes named there (a node is named
//! by its directory), that release answers `/health` with 503 (one bad
//! host, for the failure budget's tests).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a release behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    pub version: String,
    pub error_rate: f64,
    pub latency_ms: f64,
    /// A leak: from this many seconds after the release starts serving,
    /// half of its requests fail.
    pub leak_after_s: Option<f64>,
}

/// The release file the node runs: `current/release.toml`, or, on a node
/// glidepath never deployed (no `current`), `release.toml` in its dir.
fn release_file(dir: &Path) -> PathBuf {
    let current = dir.join("current");
    if std::fs::symlink_metadata(&current).is_ok() {
        current.join("release.toml")
    } else {
        dir.join("release.toml")
    }
}

/// The nodes a release file declares it is unhealthy on
/// (`unhealthy_on = ["node-3"]`).
fn unhealthy_on(dir: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(release_file(dir)) else {
        return vec![];
    };
    let Ok(mut v) = toml_span::parse(&text) else {
        return vec![];
    };
    let toml_span::value::ValueInner::Table(t) = v.take() else {
        return vec![];
    };
    match t.get("unhealthy_on").map(|v| v.as_ref()) {
        Some(toml_span::value::ValueInner::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    }
}

/// Write a demo release file.
pub fn release_toml(b: &Behaviour) -> String {
    format!(
        "# a glidepath demo release\nversion = \"{}\"\nerror_rate = {:?}\nlatency_ms = {:?}\n{}",
        b.version,
        b.error_rate,
        b.latency_ms,
        b.leak_after_s
            .map_or(String::new(), |s| format!("leak_after_s = {s:?}\n"))
    )
}

pub fn read_release(dir: &Path) -> Result<Behaviour, String> {
    let path = release_file(dir);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut v = toml_span::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let t = v.take();
    let toml_span::value::ValueInner::Table(t) = t else {
        return Err("not a table".into());
    };
    let num = |k: &str| {
        t.get(k).and_then(|v| match v.as_ref() {
            toml_span::value::ValueInner::Float(f) => Some(*f),
            toml_span::value::ValueInner::Integer(i) => Some(*i as f64),
            _ => None,
        })
    };
    Ok(Behaviour {
        version: t
            .get("version")
            .and_then(|v| v.as_str())
            .ok_or("no version")?
            .to_string(),
        error_rate: num("error_rate").unwrap_or(0.0),
        latency_ms: num("latency_ms").unwrap_or(5.0),
        leak_after_s: num("leak_after_s"),
    })
}

const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Default)]
struct Metrics {
    by_code: std::collections::BTreeMap<u16, u64>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

struct Node {
    dir: PathBuf,
    name: String,
    /// Arrival times (ms since the epoch) of the last requests, to prove
    /// when traffic did or did not reach this node.
    arrivals: Mutex<std::collections::VecDeque<u64>>,
    behaviour: Mutex<Option<Behaviour>>,
    /// The release declares itself unhealthy on this node.
    unhealthy: AtomicBool,
    /// When the release was (re)loaded: a leak counts from there.
    loaded: Mutex<Instant>,
    /// An outside incident: extra error rate and latency (ms) on top of
    /// the release's.
    incident: Mutex<Option<(f64, f64)>>,
    metrics: Mutex<Metrics>,
    active: AtomicU64,
    drained: AtomicBool,
    starting: AtomicBool,
    served_while_drained: AtomicU64,
    rng: AtomicU64,
}

impl Node {
    fn random(&self) -> f64 {
        // xorshift64*: good enough for synthetic errors and jitter.
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.store(x, Ordering::Relaxed);
        (x.wrapping_mul(0x2545F4914F6CDD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn reload(&self) {
        *self.loaded.lock().expect("lock") = Instant::now();
        let b = read_release(&self.dir).ok();
        *self.behaviour.lock().expect("lock") = b;
        self.unhealthy.store(
            unhealthy_on(&self.dir).contains(&self.name),
            Ordering::SeqCst,
        );
        *self.metrics.lock().expect("lock") = Metrics::default();
    }
}

struct ActiveGuard<'a>(&'a AtomicU64);
impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn work(State(n): State<Arc<Node>>) -> (StatusCode, [(&'static str, String); 1], String) {
    {
        let mut a = n.arrivals.lock().expect("lock");
        if a.len() >= 200_000 {
            a.pop_front();
        }
        a.push_back(crate::journal::now_ms());
    }
    let hdr = [("x-node", n.name.clone())];
    n.active.fetch_add(1, Ordering::SeqCst);
    let _g = ActiveGuard(&n.active);
    if n.drained.load(Ordering::SeqCst) {
        n.served_while_drained.fetch_add(1, Ordering::Relaxed);
    }
    let start = Instant::now();
    let Some(b) = n.behaviour.lock().expect("lock").clone() else {
        return (StatusCode::SERVICE_UNAVAILABLE, hdr, "no release".into());
    };
    let (extra_errors, extra_ms) = n.incident.lock().expect("lock").unwrap_or((0.0, 0.0));
    let jitter = 0.5 + n.random();
    let ms = b.latency_ms * jitter + extra_ms;
    tokio::time::sleep(Duration::from_secs_f64(ms / 1000.0)).await;
    let leaking = b
        .leak_after_s
        .is_some_and(|s| n.loaded.lock().expect("lock").elapsed().as_secs_f64() >= s);
    let errors = if leaking { 0.5 } else { b.error_rate };
    let code = if n.random() < errors + extra_errors {
        500
    } else {
        200
    };
    let secs = start.elapsed().as_secs_f64();
    {
        let mut m = n.metrics.lock().expect("lock");
        *m.by_code.entry(code).or_default() += 1;
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                m.buckets[i] += 1;
            }
        }
        m.count += 1;
        m.sum += secs;
    }
    let status = StatusCode::from_u16(code).expect("valid code");
    (
        status,
        hdr,
        format!("hello from {} ({})\n", b.version, n.name),
    )
}

#[derive(serde::Deserialize)]
struct Range {
    from: u64,
    to: u64,
}

/// How many requests arrived in [from, to] (ms since the epoch).
async fn arrivals(
    State(n): State<Arc<Node>>,
    axum::extract::Query(r): axum::extract::Query<Range>,
) -> String {
    let a = n.arrivals.lock().expect("lock");
    format!(
        "{}\n",
        a.iter().filter(|t| **t >= r.from && **t <= r.to).count()
    )
}

async fn health(State(n): State<Arc<Node>>) -> (StatusCode, &'static str) {
    if n.starting.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting\n");
    }
    if n.unhealthy.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "this release is unhealthy on this node\n",
        );
    }
    match n.behaviour.lock().expect("lock").as_ref() {
        Some(_) => (StatusCode::OK, "ok\n"),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no readable release in current/\n",
        ),
    }
}

async fn version(State(n): State<Arc<Node>>) -> (StatusCode, String) {
    match n.behaviour.lock().expect("lock").as_ref() {
        Some(b) => (StatusCode::OK, format!("{}\n", b.version)),
        None => (StatusCode::SERVICE_UNAVAILABLE, "none\n".into()),
    }
}

async fn metrics(State(n): State<Arc<Node>>) -> String {
    let m = n.metrics.lock().expect("lock");
    let mut s = String::from("# HELP demo_http_requests_total Requests by status code.\n# TYPE demo_http_requests_total counter\n");
    for (code, c) in &m.by_code {
        s.push_str(&format!(
            "demo_http_requests_total{{code=\"{code}\"}} {c}\n"
        ));
    }
    s.push_str("# HELP demo_http_request_duration_seconds Request latency.\n# TYPE demo_http_request_duration_seconds histogram\n");
    for (i, le) in BUCKETS.iter().enumerate() {
        s.push_str(&format!(
            "demo_http_request_duration_seconds_bucket{{le=\"{le}\"}} {}\n",
            m.buckets[i]
        ));
    }
    s.push_str(&format!(
        "demo_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {}\n",
        m.count
    ));
    s.push_str(&format!(
        "demo_http_request_duration_seconds_sum {}\ndemo_http_request_duration_seconds_count {}\n",
        m.sum, m.count
    ));
    s.push_str(&format!(
        "demo_served_while_drained_total {}\n",
        n.served_while_drained.load(Ordering::Relaxed)
    ));
    s
}

#[derive(serde::Deserialize)]
struct Incident {
    #[serde(default)]
    error_rate: f64,
    #[serde(default)]
    latency_ms: f64,
}

/// Start an outside incident on this node (see the module docs).
async fn incident(
    State(n): State<Arc<Node>>,
    axum::extract::Query(i): axum::extract::Query<Incident>,
) -> (StatusCode, &'static str) {
    let ok = (0.0..=1.0).contains(&i.error_rate) && (0.0..=60_000.0).contains(&i.latency_ms);
    if !ok {
        return (
            StatusCode::BAD_REQUEST,
            "error_rate in [0, 1], latency_ms in [0, 60000]\n",
        );
    }
    *n.incident.lock().expect("lock") = Some((i.error_rate, i.latency_ms));
    (StatusCode::OK, "incident\n")
}

async fn recover(State(n): State<Arc<Node>>) -> &'static str {
    *n.incident.lock().expect("lock") = None;
    "recovered\n"
}

async fn drain(State(n): State<Arc<Node>>) -> &'static str {
    n.drained.store(true, Ordering::SeqCst);
    "drained\n"
}

async fn ready(State(n): State<Arc<Node>>) -> &'static str {
    n.drained.store(false, Ordering::SeqCst);
    "ready\n"
}

async fn state(State(n): State<Arc<Node>>) -> Json<serde_json::Value> {
    let version = n
        .behaviour
        .lock()
        .expect("lock")
        .as_ref()
        .map(|b| b.version.clone());
    Json(serde_json::json!({
        "drained": n.drained.load(Ordering::SeqCst),
        "active": n.active.load(Ordering::SeqCst),
        "version": version,
        "starting": n.starting.load(Ordering::SeqCst),
    }))
}

/// Run a demo node until killed. Writes `<dir>/node.pid` and, once
/// listening, `<dir>/node.addr` (so `--listen 127.0.0.1:0` works).
pub async fn serve(dir: PathBuf, listen: &str, boot_ms: u64) -> std::io::Result<()> {
    let node = Arc::new(Node {
        name: dir
            .file_name()
            .map_or("node".into(), |n| n.to_string_lossy().into_owned()),
        arrivals: Mutex::new(std::collections::VecDeque::new()),
        dir: dir.clone(),
        behaviour: Mutex::new(None),
        unhealthy: AtomicBool::new(false),
        incident: Mutex::new(None),
        loaded: Mutex::new(Instant::now()),
        metrics: Mutex::new(Metrics::default()),
        active: AtomicU64::new(0),
        drained: AtomicBool::new(false),
        starting: AtomicBool::new(false),
        served_while_drained: AtomicU64::new(0),
        rng: AtomicU64::new((std::process::id() as u64).wrapping_mul(0x9E3779B97F4A7C15) | 1),
    });
    node.reload();
    let app = Router::new()
        .route("/", get(work))
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .route("/admin/drain", post(drain))
        .route("/admin/ready", post(ready))
        .route("/admin/state", get(state))
        .route("/admin/incident", post(incident))
        .route("/admin/recover", post(recover))
        .route("/admin/arrivals", get(arrivals))
        .with_state(node.clone());
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    std::fs::write(dir.join("node.pid"), format!("{}\n", std::process::id()))?;
    let tmp = dir.join("node.addr.tmp");
    std::fs::write(&tmp, addr.to_string())?;
    std::fs::rename(&tmp, dir.join("node.addr"))?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let n2 = node.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            n2.starting.store(true, Ordering::SeqCst);
            n2.reload();
            tokio::time::sleep(Duration::from_millis(boot_ms)).await;
            n2.starting.store(false, Ordering::SeqCst);
        }
    });
    axum::serve(listener, app).await
}
