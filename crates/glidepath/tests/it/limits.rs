//! Bounded input: every HTTP answer glidepath reads (a node's `/metrics`, a
//! health body, a served version, a Prometheus answer, a balancer's state,
//! an inventory version URL) and every HAProxy runtime API answer has a
//! size cap, against a real local server that streams more than the cap.

use glidepath::drivers::http::{HAPROXY_MAX, METRICS_MAX, PROMETHEUS_MAX, SMALL_MAX};
use glidepath::drivers::{
    Balancer, HaproxyBalancer, Health, HealthProbe, HttpBalancer, MetricsSource, PrometheusSource,
    ScrapeSource, Target,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server on 127.0.0.1 whose every answer is `size` bytes of `# pad`
/// lines, written in 64 KiB chunks. `http`: after the request head, with a
/// status line and headers (and a `Content-Length` when `announce`);
/// otherwise raw, after the first line (the HAProxy runtime API's shape).
/// It stops at `size`, or as soon as the client goes away.
struct Huge {
    addr: String,
    /// Body bytes written, over every connection.
    sent: Arc<AtomicU64>,
    /// Connections whose writing has ended.
    done: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Huge {
    async fn start(size: u64, http: bool, announce: bool) -> Huge {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let (sent, done) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (s2, d2) = (sent.clone(), done.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut c, _)) = l.accept().await else {
                    return;
                };
                let (sent, done) = (s2.clone(), d2.clone());
                tokio::spawn(async move {
                    // the request: its head (HTTP) or its one line (raw), bounded
                    let end: &[u8] = if http { b"\r\n\r\n" } else { b"\n" };
                    let mut req = Vec::new();
                    let mut b = [0u8; 1024];
                    while !req.windows(end.len()).any(|w| w == end) && req.len() < 64 << 10 {
                        match c.read(&mut b).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => req.extend_from_slice(&b[..n]),
                        }
                    }
                    if http {
                        let len = if announce {
                            format!("Content-Length: {size}\r\n")
                        } else {
                            String::new()
                        };
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n{len}Connection: close\r\n\r\n"
                        );
                        if c.write_all(head.as_bytes()).await.is_err() {
                            done.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                    let chunk = b"# pad\n".repeat((64 << 10) / 6);
                    let mut left = size;
                    while left > 0 {
                        let n = (chunk.len() as u64).min(left) as usize;
                        if c.write_all(&chunk[..n]).await.is_err() {
                            break;
                        }
                        sent.fetch_add(n as u64, Ordering::SeqCst);
                        left -= n as u64;
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Huge {
            addr,
            sent,
            done,
            task,
        }
    }

    /// Once `n` connections have ended: the body bytes written.
    async fn sent_after(&self, n: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.done.load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "the server is still writing: the client did not stop reading"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.sent.load(Ordering::SeqCst)
    }
}

impl Drop for Huge {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// More than any cap.
const OVER: u64 = 64 << 20;
const T: Duration = Duration::from_secs(20);

fn target(addr: &str) -> Target {
    Target {
        name: "node-1".into(),
        address: addr.into(),
        install_dir: std::env::temp_dir(),
        ..Default::default()
    }
}

/// The client read at most about `cap` bytes before it stopped (what the
/// server could write beyond that sits in the socket buffers).
fn assert_stopped_near(sent: u64, cap: usize) {
    assert!(
        sent < cap as u64 + (24 << 20),
        "the client read on to {sent} bytes past a {cap}-byte cap"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_metrics_answer_is_refused_at_the_cap() {
    for announce in [false, true] {
        let srv = Huge::start(OVER, true, announce).await;
        let src = ScrapeSource::new("http://{address}/metrics", T, vec![]);
        let e = src
            .start_window(&[target(&srv.addr)], &[])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!(
                "GET http://{}/metrics: answer larger than 16 MiB",
                srv.addr
            )),
            "{e}"
        );
        assert_eq!(METRICS_MAX, 16 << 20);
        assert_stopped_near(srv.sent_after(1).await, METRICS_MAX);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_health_body_or_version_answer_is_refused_at_the_cap() {
    let srv = Huge::start(OVER, true, false).await;
    let cfg = |http: bool, version: bool| glidepath::plan::HealthCfg {
        http: http.then(|| "http://{address}/health".to_string()),
        body: http.then(|| "ok".to_string()),
        tcp: None,
        command: None,
        version_url: version.then(|| "http://{address}/version".to_string()),
        deadline: T,
        interval: Duration::from_millis(100),
        timeout: T,
        probe: None,
    };
    let h = Health::new(cfg(true, false), std::env::temp_dir());
    let e = h.probe(&target(&srv.addr), None).await.unwrap_err();
    assert!(!e.is_infra(), "the node answered: a failed probe");
    assert!(
        e.to_string().contains(&format!(
            "GET http://{}/health: answer larger than 1 MiB",
            srv.addr
        )),
        "{e}"
    );
    let h = Health::new(cfg(false, true), std::env::temp_dir());
    let e = h
        .probe(&target(&srv.addr), Some("2"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!(
            "GET http://{}/version: answer larger than 1 MiB",
            srv.addr
        )),
        "{e}"
    );
    let sent = srv.sent_after(2).await;
    assert_stopped_near(sent, 2 * SMALL_MAX);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_prometheus_answer_is_refused_at_the_cap() {
    let srv = Huge::start(OVER, true, false).await;
    let p = PrometheusSource::new(&format!("http://{}", srv.addr), None, T, vec![]);
    let e = p.query("vector(1)").await.unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "Prometheus http://{}/api/v1/query: answer larger than 16 MiB",
            srv.addr
        )),
        "{e}"
    );
    // three tries (an unusable answer is retried like an outage), each bounded
    assert_stopped_near(srv.sent_after(3).await, 3 * PROMETHEUS_MAX);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_balancer_state_is_refused_at_the_cap() {
    let srv = Huge::start(OVER, true, true).await;
    let b = HttpBalancer::new(
        "http://{address}/drain",
        "http://{address}/ready",
        "http://{address}/state",
        T,
    );
    let e = b
        .preflight(&target(&srv.addr))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!(
            "GET http://{}/state: answer larger than 1 MiB",
            srv.addr
        )),
        "{e}"
    );
    assert_stopped_near(srv.sent_after(1).await, SMALL_MAX);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_haproxy_runtime_api_answer_is_refused_at_the_cap() {
    let srv = Huge::start(OVER, false, false).await;
    let h = HaproxyBalancer::new(
        None,
        Some(srv.addr.clone()),
        "api".into(),
        Default::default(),
        None,
        T,
    );
    let e = h.command("show stat").await.unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "HAProxy runtime API {} `show stat`: answer larger than 16 MiB",
            srv.addr
        )),
        "{e}"
    );
    assert_stopped_near(srv.sent_after(1).await, HAPROXY_MAX);
}

/// `glidepath inventory` against a version URL that streams 1 GiB: a clear
/// error for that instance, and the process's peak memory stays small
/// (measured by the kernel for the child: wait4's ru_maxrss).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_of_a_huge_version_url_stays_small() {
    let srv = Huge::start(1 << 30, true, false).await;
    let dir = tempfile::tempdir().unwrap();
    let sys = dir.path().join("system.toml");
    std::fs::write(
        &sys,
        format!(
            "[[component]]\nname = \"server\"\ninstances = [ {{ name = \"s1\", version_url = \"http://{}/version\" }} ]\n  [[component.release]]\n  version = \"1\"\n  protocols = {{ api = \"1\" }}\n",
            srv.addr
        ),
    )
    .unwrap();
    let (out, max_rss_kib) = tokio::task::spawn_blocking(move || {
        #[allow(clippy::zombie_processes)] // reaped by wait4 below, for its rusage
        let mut child = std::process::Command::new(crate::harness::BIN)
            .args([
                "inventory",
                sys.to_str().unwrap(),
                "--timeout",
                "60s",
                "--output",
                "json",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
            s
        });
        let mut status = 0;
        // SAFETY: a zeroed rusage is valid; wait4 fills it for our own child.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // wait for the child with a deadline (it is ours and not reaped
        // until wait4 returns its pid, so killing that pid is safe)
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut killed = false;
        loop {
            // SAFETY: waiting for our own child, with valid pointers.
            let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
            if reaped == pid {
                break;
            }
            assert_eq!(reaped, 0, "wait4: {}", std::io::Error::last_os_error());
            if Instant::now() > deadline && !killed {
                // SAFETY: signalling our own child, not yet reaped.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                killed = true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !killed,
            "inventory still reading after 60 s (peak RSS {} MiB)",
            ru.ru_maxrss / 1024
        );
        (reader.join().unwrap(), ru.ru_maxrss)
    })
    .await
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).expect(&out);
    let err = v["instances"][0]["error"].as_str().unwrap_or_default();
    assert!(
        err.contains(&format!(
            "GET http://{}/version: answer larger than 1 MiB",
            srv.addr
        )),
        "{out}"
    );
    eprintln!("inventory peak RSS: {} MiB", max_rss_kib / 1024);
    assert!(
        max_rss_kib < 150 * 1024,
        "peak RSS {} MiB while refusing a 1 GiB answer",
        max_rss_kib / 1024
    );
    assert_stopped_near(srv.sent_after(1).await, SMALL_MAX);
}
