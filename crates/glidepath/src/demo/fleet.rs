//! A local fleet of demo-node processes on 127.0.0.1, and a traffic
//! generator that sends requests only to nodes that are in rotation. Used by
//! `glidepath demo`, the integration tests and the benchmarks.

use super::node::{release_toml, Behaviour};
use crate::drivers::deploy_local::{stage_sync, switch_sync};
use crate::plan::{artifact_sha256, Release};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Write a release artifact `<dist>/<version>/release.toml`; returns it with its sha256.
pub fn write_release(dist: &Path, b: &Behaviour) -> std::io::Result<Release> {
    let dir = dist.join(&b.version);
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("release.toml");
    std::fs::write(&file, release_toml(b))?;
    Ok(Release {
        version: b.version.clone(),
        sha256: artifact_sha256(&file)?,
        artifact: file,
    })
}

/// A demo release that is unhealthy on the nodes named (`unhealthy_on`):
/// one bad host, healthy everywhere else.
pub fn write_release_unhealthy_on(
    dist: &Path,
    b: &Behaviour,
    nodes: &[&str],
) -> std::io::Result<Release> {
    let dir = dist.join(&b.version);
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("release.toml");
    let list: Vec<String> = nodes.iter().map(|n| format!("{n:?}")).collect();
    std::fs::write(
        &file,
        format!("{}unhealthy_on = [{}]\n", release_toml(b), list.join(", ")),
    )?;
    Ok(Release {
        version: b.version.clone(),
        sha256: artifact_sha256(&file)?,
        artifact: file,
    })
}

/// The body of a plan's `nodes` array: one inline table per (name, address).
pub fn plan_nodes<'a>(nodes: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    nodes
        .into_iter()
        .map(|(name, address)| format!("  {{ name = \"{name}\", address = \"{address}\" }},\n"))
        .collect()
}

/// The demo's releases 1 (installed), 2 (healthy) and 3 (broken) written
/// under `root/dist`, and a [`LocalFleet`] of `n` nodes serving release 1.
pub struct DemoFleet {
    pub fleet: LocalFleet,
    pub v1: Release,
    pub v2: Release,
    pub v3: Release,
    pub v4: Release,
}

impl DemoFleet {
    /// `bin` is the glidepath executable (it runs the nodes).
    pub fn start(bin: &Path, root: &Path, n: usize) -> std::io::Result<DemoFleet> {
        Self::start_with(bin, root, n, None)
    }

    /// [`DemoFleet::start`]; with `logs`, the nodes are started detached
    /// (see [`LocalFleet::start_with`]).
    pub fn start_with(
        bin: &Path,
        root: &Path,
        n: usize,
        logs: Option<&Path>,
    ) -> std::io::Result<DemoFleet> {
        let dist = root.join("dist");
        let [b1, b2, b3, b4] = super::releases();
        let v1 = write_release(&dist, &b1)?;
        let v2 = write_release(&dist, &b2)?;
        let v3 = write_release(&dist, &b3)?;
        let v4 = write_release(&dist, &b4)?;
        let fleet = LocalFleet::start_with(bin, root, "node", n, &v1, logs)?;
        Ok(DemoFleet {
            fleet,
            v1,
            v2,
            v3,
            v4,
        })
    }
}

pub struct FleetNode {
    pub name: String,
    pub address: String,
    pub dir: PathBuf,
    child: Child,
}

impl FleetNode {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stop this node (SIGKILL) and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Demo nodes as child processes; all killed on drop.
pub struct LocalFleet {
    pub nodes: Vec<FleetNode>,
}

/// Start a demo node. With `log`, it is detached (its own session, its
/// output into that file) so that it outlives whoever started it;
/// otherwise it dies with its parent, even on SIGKILL.
fn spawn_node(bin: &Path, dir: &Path, log: Option<&Path>) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    let _ = std::fs::remove_file(dir.join("node.addr"));
    let mut cmd = Command::new(bin);
    cmd.arg("demo-node")
        .arg("--dir")
        .arg(dir)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .stdin(Stdio::null());
    match log {
        Some(log) => {
            let f = std::fs::File::create(log)?;
            cmd.stdout(f.try_clone()?).stderr(f);
            // SAFETY: setsid is async-signal-safe; called between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    libc::setsid();
                    Ok(())
                });
            }
        }
        None => {
            cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
            // SAFETY: prctl is async-signal-safe; called between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
    }
    cmd.spawn()
}

/// Is `pid` a demo node serving `dir` (its command line says so)?
fn is_demo_node(pid: u32, dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    use std::os::unix::ffi::OsStrExt;
    fn named(a: &[u8]) -> &Path {
        Path::new(std::ffi::OsStr::from_bytes(a))
    }
    args.iter().any(|a| *a == b"demo-node")
        && args
            .windows(2)
            .any(|w| w[0] == b"--dir" && named(w[1]).canonicalize().ok().as_deref() == Some(dir))
}

/// Has `pid` exited (gone, or a zombie waiting for its parent)?
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// What [`stop_kept`] did with one node.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stopped {
    pub node: String,
    pub pid: Option<u32>,
    /// `stopped`, `not_running` (its pid is gone or is not a demo node of
    /// this dir: left alone), or `failed`.
    pub result: &'static str,
}

/// Stop the demo nodes `glidepath demo --keep` left running in `root`:
/// each `nodes/<name>/node.pid`, by pid, only while that process is a demo
/// node of that very directory; SIGTERM, then SIGKILL after 5 s.
pub fn stop_kept(root: &Path) -> std::io::Result<Vec<Stopped>> {
    let root = root.canonicalize()?;
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("nodes"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut out = Vec::new();
    for dir in dirs {
        let node = dir
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned());
        let pid = std::fs::read_to_string(dir.join("node.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .filter(|p| *p > 1);
        let Some(pid) = pid.filter(|p| !exited(*p) && is_demo_node(*p, &dir)) else {
            out.push(Stopped {
                node,
                pid,
                result: "not_running",
            });
            continue;
        };
        let gone = |sig: i32| {
            // SAFETY: a plain kill(2) of the pid checked above.
            unsafe { libc::kill(pid as i32, sig) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if exited(pid) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        };
        let result = if gone(libc::SIGTERM) || gone(libc::SIGKILL) {
            "stopped"
        } else {
            "failed"
        };
        out.push(Stopped {
            node,
            pid: Some(pid),
            result,
        });
    }
    Ok(out)
}

impl LocalFleet {
    /// Install `initial` on `n` nodes under `root/nodes/<name>` and start
    /// them: `node-1`, `node-2`, …
    pub fn start(
        bin: &Path,
        root: &Path,
        n: usize,
        initial: &Release,
    ) -> std::io::Result<LocalFleet> {
        Self::start_named(bin, root, "node", n, initial)
    }

    /// [`LocalFleet::start`] with nodes named `<prefix>-1`, `<prefix>-2`, …
    /// (fleets of several components side by side).
    pub fn start_named(
        bin: &Path,
        root: &Path,
        prefix: &str,
        n: usize,
        initial: &Release,
    ) -> std::io::Result<LocalFleet> {
        Self::start_with(bin, root, prefix, n, initial, None)
    }

    /// [`LocalFleet::start_named`]; with `logs`, each node is detached,
    /// its output in `<logs>/<name>.log`, so that after
    /// [`LocalFleet::detach`] it outlives this process.
    pub fn start_with(
        bin: &Path,
        root: &Path,
        prefix: &str,
        n: usize,
        initial: &Release,
        logs: Option<&Path>,
    ) -> std::io::Result<LocalFleet> {
        if let Some(l) = logs {
            std::fs::create_dir_all(l)?;
        }
        let mut nodes = Vec::new();
        for i in 1..=n {
            let name = format!("{prefix}-{i}");
            let dir = root.join("nodes").join(&name);
            std::fs::create_dir_all(&dir)?;
            stage_sync(&dir, initial).map_err(std::io::Error::other)?;
            switch_sync(&dir, &initial.version, 3, Some(initial)).map_err(std::io::Error::other)?;
            let log = logs.map(|l| l.join(format!("{name}.log")));
            let child = spawn_node(bin, &dir, log.as_deref())?;
            nodes.push(FleetNode {
                name,
                address: String::new(),
                dir,
                child,
            });
        }
        let mut fleet = LocalFleet { nodes };
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &mut fleet.nodes {
            loop {
                if let Ok(a) = std::fs::read_to_string(node.dir.join("node.addr")) {
                    node.address = a.trim().to_string();
                    break;
                }
                if let Ok(Some(status)) = node.child.try_wait() {
                    return Err(std::io::Error::other(format!(
                        "demo node {} exited at start: {status}",
                        node.name
                    )));
                }
                if Instant::now() > deadline {
                    return Err(std::io::Error::other(format!(
                        "demo node {} did not start within 20s",
                        node.name
                    )));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(fleet)
    }

    /// `[[fleet.nodes]]` entries for a plan.
    pub fn plan_nodes(&self) -> String {
        plan_nodes(
            self.nodes
                .iter()
                .map(|n| (n.name.as_str(), n.address.as_str())),
        )
    }

    /// (name, address) of every node: the servers of a balancer in front.
    pub fn servers(&self) -> Vec<(String, String)> {
        self.nodes
            .iter()
            .map(|n| (n.name.clone(), n.address.clone()))
            .collect()
    }

    /// Traffic at `rps` requests/s straight at the nodes in rotation.
    pub fn traffic(&self, rps: u32) -> Traffic {
        Traffic::start(self.servers(), rps)
    }

    /// An outside incident on every node (whatever their release): extra
    /// errors and latency until [`LocalFleet::recover`].
    pub async fn incident(&self, error_rate: f64, latency_ms: f64) -> anyhow::Result<()> {
        self.admin(&format!(
            "incident?error_rate={error_rate}&latency_ms={latency_ms}"
        ))
        .await
    }

    /// End the incident on every node.
    pub async fn recover(&self) -> anyhow::Result<()> {
        self.admin("recover").await
    }

    async fn admin(&self, what: &str) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        for n in &self.nodes {
            let url = format!("http://{}/admin/{what}", n.address);
            client.post(&url).send().await?.error_for_status()?;
        }
        Ok(())
    }

    /// Leave the nodes running (started with logs: detached) when this
    /// fleet is dropped; `glidepath demo --stop DIR` stops them.
    pub fn detach(mut self) {
        self.nodes.clear();
    }

    pub fn stop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.child.kill();
            let _ = n.child.wait();
        }
    }
}

impl Drop for LocalFleet {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Per-node client-side counts.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct NodeTraffic {
    pub ok: u64,
    pub errors: u64,
    pub failed: u64,
}

/// Synthetic traffic at the nodes in rotation (polling their drain state).
pub struct Traffic {
    stop: Arc<AtomicBool>,
    pub stats: Arc<Mutex<BTreeMap<String, NodeTraffic>>>,
    pub sent: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    /// Start sending about `rps` requests per second, spread over the nodes
    /// whose `/admin/state` says they are in rotation.
    pub fn start(nodes: Vec<(String, String)>, rps: u32) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let stats: Arc<Mutex<BTreeMap<String, NodeTraffic>>> = Arc::new(Mutex::new(
            nodes
                .iter()
                .map(|(n, _)| (n.clone(), NodeTraffic::default()))
                .collect(),
        ));
        let sent = Arc::new(AtomicU64::new(0));
        let ready: Arc<Mutex<Vec<(String, String)>>> = Arc::new(Mutex::new(nodes.clone()));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(32)
            .build()
            .expect("client");
        let mut tasks = Vec::new();
        {
            let (stop, ready, client, nodes) =
                (stop.clone(), ready.clone(), client.clone(), nodes.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let mut now_ready = Vec::new();
                    for (name, addr) in &nodes {
                        let url = format!("http://{addr}/admin/state");
                        if let Ok(r) = client
                            .get(&url)
                            .timeout(Duration::from_millis(500))
                            .send()
                            .await
                        {
                            if let Ok(v) = r.json::<serde_json::Value>().await {
                                if v["drained"] == false {
                                    now_ready.push((name.clone(), addr.clone()));
                                }
                            }
                        }
                    }
                    *ready.lock().expect("lock") = now_ready;
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }));
        }
        {
            let (stop, ready, stats, sent) =
                (stop.clone(), ready.clone(), stats.clone(), sent.clone());
            tasks.push(tokio::spawn(async move {
                let mut tick =
                    tokio::time::interval(Duration::from_secs_f64(1.0 / rps.max(1) as f64));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let target = {
                        let r = ready.lock().expect("lock");
                        if r.is_empty() {
                            continue;
                        }
                        i = i.wrapping_add(1);
                        r[i % r.len()].clone()
                    };
                    sent.fetch_add(1, Ordering::Relaxed);
                    let (client, stats) = (client.clone(), stats.clone());
                    tokio::spawn(async move {
                        let res = client.get(format!("http://{}/", target.1)).send().await;
                        let mut s = stats.lock().expect("lock");
                        let e = s.entry(target.0).or_default();
                        match res {
                            Ok(r) if r.status().is_success() => e.ok += 1,
                            Ok(_) => e.errors += 1,
                            Err(_) => e.failed += 1,
                        }
                    });
                }
            }));
        }
        Traffic {
            stop,
            stats,
            sent,
            tasks,
        }
    }

    /// Send about `rps` requests per second to one URL (a load balancer's
    /// frontend); responses are counted per node by their `x-node` header.
    pub fn through(url: &str, rps: u32) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let stats: Arc<Mutex<BTreeMap<String, NodeTraffic>>> =
            Arc::new(Mutex::new(BTreeMap::new()));
        let sent = Arc::new(AtomicU64::new(0));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(32)
            .build()
            .expect("client");
        let (st, stats2, sent2, url) = (stop.clone(), stats.clone(), sent.clone(), url.to_string());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rps.max(1) as f64));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !st.load(Ordering::Relaxed) {
                tick.tick().await;
                sent2.fetch_add(1, Ordering::Relaxed);
                let (client, stats, url) = (client.clone(), stats2.clone(), url.clone());
                tokio::spawn(async move {
                    let res = client.get(&url).send().await;
                    let mut s = stats.lock().expect("lock");
                    match res {
                        Ok(r) => {
                            let node = r
                                .headers()
                                .get("x-node")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("(balancer)")
                                .to_string();
                            let e = s.entry(node).or_default();
                            if r.status().is_success() {
                                e.ok += 1
                            } else {
                                e.errors += 1
                            }
                        }
                        Err(_) => s.entry("(balancer)".into()).or_default().failed += 1,
                    }
                });
            }
        });
        Traffic {
            stop,
            stats,
            sent,
            tasks: vec![task],
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, NodeTraffic> {
        self.stats.lock().expect("lock").clone()
    }

    pub async fn stop(self) -> BTreeMap<String, NodeTraffic> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        // let in-flight requests land
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.stats.lock().expect("lock").clone()
    }
}
