//! Verification probes (`glidepath::probe`) against real servers on
//! 127.0.0.1: the WebSocket test peer (`demo::ws_peer`), HTTP and TCP
//! listeners, shell commands, a real Prometheus; and `[health] probe`
//! through the drivers a plan builds.

use crate::real::available;
use axum::http::StatusCode;
use axum::routing::get;
use glidepath::demo::ws_peer::{Answer, WsPeer, WsPeerCfg};
use glidepath::drivers::{Drivers, Target};
use glidepath::probe::{
    run, CommandProbe, HttpProbe, OnEmpty, ProbeCfg, ProbeOutcome, PromQlProbe, TcpProbe, WsProbe,
};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

fn ws(url: &str, caps: &[&str], within: Option<Duration>) -> ProbeCfg {
    ProbeCfg::WebSocket(WsProbe {
        url: url.into(),
        send: Some(r#"{"type":"hello"}"#.into()),
        expect_type: Some("welcome".into()),
        caps: caps.iter().map(|c| c.to_string()).collect(),
        caps_field: "caps".into(),
        within,
    })
}

async fn peer(cfg: WsPeerCfg) -> WsPeer {
    WsPeer::start(cfg).await.expect("the ws peer starts")
}

fn failed(o: &ProbeOutcome, reason: &str) {
    assert!(!o.passed && !o.infra, "{o:?}");
    assert!(o.detail.contains(reason), "{:?} lacks {reason:?}", o.detail);
}

/// An address nothing listens on.
async fn closed_port() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_passes_on_the_right_caps() {
    let p = peer(WsPeerCfg::default()).await;
    let o = run(&ws(&p.url(), &["chat", "presence"], None), T).await;
    assert!(o.passed, "{o:?}");
    assert_eq!(
        o.detail,
        format!(
            "websocket {}: reply \"welcome\" with caps [chat, presence]",
            p.url()
        )
    );
    let v: serde_json::Value = serde_json::from_str(o.value.as_deref().unwrap()).unwrap();
    assert_eq!(v["type"], "welcome");
    assert_eq!(p.hellos(), 1, "the peer got the hello");
    // A subset of what the server offers passes; frames that are not text
    // (a ping, a binary frame) before the reply are skipped.
    let p = peer(WsPeerCfg {
        caps: vec!["chat".into(), "presence".into(), "typing".into()],
        noise: true,
        ..WsPeerCfg::default()
    })
    .await;
    let o = run(&ws(&p.url(), &["presence"], None), T).await;
    assert!(o.passed, "{o:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_fails_on_a_missing_capability() {
    let p = peer(WsPeerCfg::default()).await;
    let o = run(&ws(&p.url(), &["chat", "presence", "typing"], None), T).await;
    failed(&o, "missing capability typing (got [chat, presence])");
    let o = run(&ws(&p.url(), &["video", "typing"], None), T).await;
    failed(
        &o,
        "missing capabilities video, typing (got [chat, presence])",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_fails_on_a_timeout_within_the_deadline() {
    let p = peer(WsPeerCfg {
        answer: Answer::Never,
        ..WsPeerCfg::default()
    })
    .await;
    let within = Duration::from_millis(800);
    let t0 = Instant::now();
    let o = run(&ws(&p.url(), &["chat"], Some(within)), T).await;
    let took = t0.elapsed();
    failed(&o, "no reply within 800ms (expected type \"welcome\")");
    assert!(
        took >= within && took < within + Duration::from_millis(700),
        "the probe ended after {took:?}, its deadline was {within:?}"
    );
    // A reply later than the deadline is no reply: the caller's timeout,
    // shorter than `within`, is the deadline then.
    let p = peer(WsPeerCfg {
        delay: Duration::from_secs(3),
        ..WsPeerCfg::default()
    })
    .await;
    let t0 = Instant::now();
    let o = run(
        &ws(&p.url(), &["chat"], Some(Duration::from_secs(30))),
        Duration::from_millis(500),
    )
    .await;
    let took = t0.elapsed();
    failed(&o, "no reply within 500ms");
    assert!(took < Duration::from_millis(1200), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_fails_on_a_wrong_type_and_on_a_close_code() {
    let p = peer(WsPeerCfg {
        answer: Answer::Type("error".into()),
        ..WsPeerCfg::default()
    })
    .await;
    let o = run(&ws(&p.url(), &["chat"], None), T).await;
    failed(&o, "reply type was \"error\", expected \"welcome\"");
    let p = peer(WsPeerCfg {
        answer: Answer::Close(4001, "unauthorized".into()),
        ..WsPeerCfg::default()
    })
    .await;
    let o = run(&ws(&p.url(), &["chat"], None), T).await;
    failed(
        &o,
        "server closed the connection with code 4001 (reason \"unauthorized\") before a reply of type \"welcome\"",
    );
    let p = peer(WsPeerCfg {
        answer: Answer::Close(1011, String::new()),
        ..WsPeerCfg::default()
    })
    .await;
    let o = run(&ws(&p.url(), &["chat"], None), T).await;
    failed(&o, "server closed the connection with code 1011 before");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_refused_handshake_oversized_reply_and_no_server() {
    // Nobody listens: the target is unreachable, not failing.
    let addr = closed_port().await;
    let o = run(&ws(&format!("ws://{addr}/rt"), &["chat"], None), T).await;
    assert!(o.infra && !o.passed, "{o:?}");
    assert!(o.detail.contains("cannot connect"), "{}", o.detail);
    // An HTTP server that does not upgrade.
    let app = axum::Router::new().route("/rt", get(|| async { (StatusCode::NOT_FOUND, "no") }));
    let http = serve(app).await;
    let o = run(&ws(&format!("ws://{http}/rt"), &["chat"], None), T).await;
    failed(&o, "the handshake was refused with HTTP 404");
    // A reply over 64 KiB is refused, not read whole.
    let p = peer(WsPeerCfg {
        caps: vec!["x".repeat(70 << 10)],
        ..WsPeerCfg::default()
    })
    .await;
    let o = run(&ws(&p.url(), &["chat"], None), T).await;
    failed(&o, "reply refused, over the limit of 64 KiB");
}

async fn serve(app: axum::Router) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    addr
}

fn http(url: String, status: Option<u16>, json: &[(&str, serde_json::Value)]) -> ProbeCfg {
    ProbeCfg::Http(HttpProbe {
        url,
        status,
        body: None,
        json: json
            .iter()
            .map(|(p, v)| (p.to_string(), v.clone()))
            .collect(),
        within: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_status_and_json_fields() {
    use serde_json::json;
    let app = axum::Router::new()
        .route(
            "/healthz",
            get(|| async { r#"{"status":"ok","db":{"up":true,"lag":0}}"# }),
        )
        .route(
            "/degraded",
            get(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    r#"{"status":"degraded","db":{"up":false}}"#,
                )
            }),
        )
        .route("/big", get(|| async { "x".repeat(2 << 20) }));
    let a = serve(app).await;
    let ok = format!("http://{a}/healthz");
    let o = run(
        &http(
            ok.clone(),
            Some(200),
            &[("/status", json!("ok")), ("/db/up", json!(true))],
        ),
        T,
    )
    .await;
    assert!(o.passed, "{o:?}");
    assert_eq!(
        o.detail,
        format!("GET {ok}: HTTP 200, /status = \"ok\", /db/up = true")
    );
    assert_eq!(
        o.value.as_deref(),
        Some(r#"{"/db/up":true,"/status":"ok"}"#)
    );
    // One field: its value as it is.
    let o = run(&http(ok.clone(), None, &[("/status", json!("ok"))]), T).await;
    assert_eq!(o.value.as_deref(), Some("ok"));
    // A field that differs, one that is missing.
    let o = run(&http(ok.clone(), None, &[("/db/up", json!(false))]), T).await;
    failed(&o, "/db/up is true, expected false");
    let o = run(&http(ok.clone(), None, &[("/db/version", json!(3))]), T).await;
    failed(&o, "no field /db/version in the answer, expected 3");
    // The status: 2xx by default, or the one declared.
    let bad = format!("http://{a}/degraded");
    let o = run(&http(bad.clone(), None, &[]), T).await;
    failed(
        &o,
        "HTTP 503, expected 2xx (body \"{\\\"status\\\":\\\"degraded\\\"",
    );
    let o = run(
        &http(bad.clone(), Some(503), &[("/status", json!("degraded"))]),
        T,
    )
    .await;
    assert!(o.passed, "{o:?}");
    // A body substring.
    let o = run(
        &ProbeCfg::Http(HttpProbe {
            url: ok.clone(),
            status: None,
            body: Some("\"status\":\"ok\"".into()),
            json: Vec::new(),
            within: None,
        }),
        T,
    )
    .await;
    assert!(o.passed, "{o:?}");
    // Over 1 MiB: refused at the cap.
    let o = run(&http(format!("http://{a}/big"), None, &[]), T).await;
    failed(&o, "answer larger than 1 MiB");
    // Nobody there.
    let o = run(
        &http(format!("http://{}/", closed_port().await), None, &[]),
        T,
    )
    .await;
    assert!(o.infra && !o.passed, "{o:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_accepts_or_is_refused() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let tcp = |address: String| {
        ProbeCfg::Tcp(TcpProbe {
            address,
            within: None,
        })
    };
    let o = run(&tcp(addr.clone()), T).await;
    assert!(o.passed, "{o:?}");
    assert_eq!(o.detail, format!("tcp {addr} accepts"));
    drop(l);
    let o = run(&tcp(addr.clone()), T).await;
    assert!(o.infra && !o.passed, "{o:?}");
    assert!(
        o.detail
            .starts_with(&format!("tcp {addr}: cannot connect: ")),
        "{}",
        o.detail
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_exit_code_and_stdout() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hashes"), "room-1 ab12\nroom-2 cd34\n").unwrap();
    let cmd = |command: &str, stdout: Option<&str>, within: Option<Duration>| {
        ProbeCfg::Command(CommandProbe {
            command: command.into(),
            stdout: stdout.map(Into::into),
            dir: dir.path().to_path_buf(),
            within,
        })
    };
    // Runs in its directory; the value is the trimmed stdout.
    let o = run(&cmd("cat hashes", Some("room-2 cd34"), None), T).await;
    assert!(o.passed, "{o:?}");
    assert_eq!(o.value.as_deref(), Some("room-1 ab12\nroom-2 cd34"));
    let o = run(&cmd("cat hashes", Some("room-3"), None), T).await;
    failed(&o, "does not contain \"room-3\"");
    let o = run(&cmd("echo broken >&2; exit 3", None, None), T).await;
    failed(&o, "exited with exit status: 3: broken");
    // Its deadline kills it.
    let t0 = Instant::now();
    let o = run(&cmd("sleep 30", None, Some(Duration::from_millis(300))), T).await;
    failed(&o, "timed out after 0.3s");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

fn promql(prometheus: &str, query: &str, max: f64, on_empty: OnEmpty) -> ProbeCfg {
    ProbeCfg::PromQl(PromQlProbe {
        query: query.into(),
        prometheus: prometheus.into(),
        min: None,
        max: Some(max),
        on_empty,
        within: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promql_thresholds_against_a_real_prometheus() {
    // Unreachable Prometheus: not a verdict.
    let o = run(
        &promql(
            &format!("http://{}", closed_port().await),
            "up",
            1.0,
            OnEmpty::Zero,
        ),
        Duration::from_secs(3),
    )
    .await;
    assert!(o.infra && !o.passed, "{o:?}");
    if !available(&["prometheus"]) {
        return;
    }
    let app = axum::Router::new().route(
        "/metrics",
        get(|| async {
            "# TYPE ws_close_total counter\nws_close_total{code=\"4001\"} 3\nws_close_total{code=\"1000\"} 40\n"
        }),
    );
    let target = serve(app).await.to_string();
    let dir = tempfile::tempdir().unwrap();
    let prom = glidepath::demo::infra::Prometheus::start(dir.path(), &[target])
        .await
        .expect("prometheus starts");
    let closes = r#"sum(ws_close_total{code=~"4001|4008|1011"})"#;
    let o = run(&promql(&prom.url, closes, 5.0, OnEmpty::Zero), T).await;
    assert!(o.passed, "{o:?}");
    assert_eq!(o.value.as_deref(), Some("3"));
    let o = run(&promql(&prom.url, closes, 1.0, OnEmpty::Zero), T).await;
    failed(&o, "= 3, above max 1");
    // No series: 0 by default, a failure when the plan says so.
    let none = r#"sum(ws_close_total{code="4999"})"#;
    let o = run(&promql(&prom.url, none, 0.1, OnEmpty::Zero), T).await;
    assert!(o.passed, "{o:?}");
    assert!(o.detail.contains("(no series, taken as 0)"), "{}", o.detail);
    let o = run(&promql(&prom.url, none, 0.1, OnEmpty::Fail), T).await;
    failed(&o, "no series (on_empty = \"fail\")");
    let o = run(
        &promql(&prom.url, "ws_close_total", 100.0, OnEmpty::Zero),
        T,
    )
    .await;
    failed(&o, "2 series, a probe checks one value");
    // A query Prometheus refuses is the probe's failure.
    let o = run(&promql(&prom.url, "sum(", 1.0, OnEmpty::Zero), T).await;
    failed(&o, "bad_data");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probe_of_a_plan_runs_per_node() {
    use glidepath::demo::plans::{LocalPlan, Probe};
    let good = peer(WsPeerCfg::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let rel =
        glidepath::demo::fleet::write_release(dir.path(), &glidepath::demo::releases()[1]).unwrap();
    // n1 is at port_base + 1: the peer's address, as `{address}`.
    let local = LocalPlan::new(1, good.addr.port() - 1).probe(Probe::Command("true".into()));
    let health = |caps: &str| {
        let text = local.text(&rel, &glidepath::demo::relative_artifact(&rel, dir.path()));
        let text = text.replace(
            "[health]\n",
            &format!("[health]\nprobe = {{ websocket = \"ws://{{address}}/rt\", send = '{{\"type\":\"hello\"}}', expect_type = \"welcome\", caps = [{caps}] }}\n"),
        );
        let path = dir.path().join("plan.toml");
        std::fs::write(&path, text).unwrap();
        let (plan, _) = glidepath::plan::load(&path).expect("the plan is valid");
        Drivers::for_plan(&plan).health
    };
    let target = Target {
        name: "n1".into(),
        address: good.addr.to_string(),
        install_dir: dir.path().join("nodes/n1"),
        ..Default::default()
    };
    let ok = health("\"chat\"").probe(&target, None).await.unwrap();
    assert_eq!(
        ok,
        format!(
            "command exit 0, websocket ws://{}/rt: reply \"welcome\" with caps [chat, presence]",
            good.addr
        )
    );
    let e = health("\"chat\", \"video\"")
        .probe(&target, None)
        .await
        .unwrap_err();
    assert!(!e.is_infra());
    assert!(
        e.to_string()
            .ends_with("missing capability video (got [chat, presence])"),
        "{e}"
    );
}
