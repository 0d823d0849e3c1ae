//! Test fleet: demo nodes, releases, plans, and helpers that wait on
//! conditions with deadlines (never fixed sleeps).

use glidepath::demo::fleet::{write_release, LocalFleet, Traffic};
use glidepath::demo::node::Behaviour;
use glidepath::demo::{plan_text, DemoPlan};
use glidepath::journal::Journal;
pub use glidepath::journal::Store;
use glidepath::plan::Release;
use glidepath_core::Event;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_glidepath");

pub struct Env {
    pub dir: tempfile::TempDir,
    pub fleet: LocalFleet,
    pub traffic: Option<Traffic>,
    #[allow(dead_code)]
    pub v1: Release,
    pub v2: Release,
    pub v3: Release,
}

impl Env {
    /// `n` demo nodes serving release 1, and traffic at them.
    pub async fn start(n: usize) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("glidepath-it-")
            .tempdir()
            .expect("tempdir");
        let dist = dir.path().join("dist");
        let [b1, b2, b3] = glidepath::demo::releases();
        let v1 = write_release(&dist, &b1).unwrap();
        let v2 = write_release(&dist, &b2).unwrap();
        let v3 = write_release(&dist, &b3).unwrap();
        let fleet = LocalFleet::start(Path::new(BIN), dir.path(), n, &v1).expect("fleet starts");
        let traffic = Some(Traffic::start(
            fleet
                .nodes
                .iter()
                .map(|n| (n.name.clone(), n.address.clone()))
                .collect(),
            150,
        ));
        Env {
            dir,
            fleet,
            traffic,
            v1,
            v2,
            v3,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn release(&self, b: Behaviour) -> Release {
        write_release(&self.path().join("dist"), &b).unwrap()
    }

    /// Write a plan rolling out `rel`; returns its path.
    pub fn plan(&self, rel: &Release, knobs: &DemoPlan) -> PathBuf {
        let artifact = rel
            .artifact
            .strip_prefix(self.path())
            .unwrap()
            .display()
            .to_string();
        let path = self.path().join(format!("plan-{}.toml", rel.version));
        std::fs::write(&path, plan_text(&self.fleet, rel, &artifact, knobs)).unwrap();
        path
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(self.path())
            .env_remove("GLIDEPATH_CRASH_AT")
            .env_remove("GLIDEPATH_JOURNAL")
            // the per-machine journal and node locks live in the test's dir
            .env("XDG_STATE_HOME", self.path().join("state"))
            .stdin(Stdio::null());
        c
    }

    /// Run glidepath to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd(args).output().expect("glidepath runs");
        eprintln!(
            "--- glidepath {args:?} → {:?}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Run glidepath with the crash hook; it must die by SIGKILL.
    pub fn run_until_killed(&self, args: &[&str], crash_at: &str) -> Output {
        let out = self
            .cmd(args)
            .env("GLIDEPATH_CRASH_AT", crash_at)
            .output()
            .expect("glidepath runs");
        use std::os::unix::process::ExitStatusExt;
        eprintln!(
            "--- glidepath {args:?} (crash at {crash_at}) → {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(
            out.status.signal(),
            Some(9),
            "expected SIGKILL at {crash_at}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn glidepath")
    }

    /// The journal the commands use by default (this machine's, which the
    /// test points into its own directory).
    pub fn journal_path(&self) -> PathBuf {
        self.path().join("state/glidepath/journal.db")
    }

    pub fn journal(&self) -> Journal {
        Journal::open(&self.journal_path()).unwrap()
    }

    pub fn latest_run(&self) -> String {
        self.journal().runs(1).unwrap().remove(0).id
    }

    pub fn events(&self, run: &str) -> Vec<Event> {
        self.journal().events(run).unwrap()
    }

    /// (version served, drained) per node, asked from the nodes themselves.
    pub async fn fleet_state(&self) -> Vec<(String, bool)> {
        let client = reqwest::Client::new();
        let mut out = Vec::new();
        for n in &self.fleet.nodes {
            let v: serde_json::Value = client
                .get(format!("http://{}/admin/state", n.address))
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            out.push((
                v["version"].as_str().unwrap_or("none").to_string(),
                v["drained"].as_bool().unwrap(),
            ));
        }
        out
    }

    /// Every node serves `version` and is in rotation.
    pub async fn assert_fleet(&self, versions: &[&str]) {
        let st = self.fleet_state().await;
        let got: Vec<&str> = st.iter().map(|(v, _)| v.as_str()).collect();
        assert_eq!(got, versions, "versions served");
        assert!(
            st.iter().all(|(_, d)| !d),
            "no node may be left drained: {st:?}"
        );
    }

    /// The `current` symlink of each node.
    pub fn current_links(&self) -> Vec<String> {
        self.fleet
            .nodes
            .iter()
            .map(|n| {
                glidepath::drivers::deploy_local::read_current(&n.dir)
                    .unwrap()
                    .unwrap_or_default()
            })
            .collect()
    }
}

/// Events of the newest run in a journal (empty before the first run).
pub fn latest_events(j: &Journal) -> Vec<Event> {
    j.runs(1)
        .ok()
        .and_then(|r| r.first().cloned())
        .map_or(vec![], |r| j.events(&r.id).unwrap())
}

pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Poll until `f` holds, or panic at the deadline.
pub async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Journal invariants after any run: every intent has at most one outcome,
/// and an intent without an outcome is followed by an `interrupted` marker.
pub fn assert_journal_consistent(events: &[Event]) {
    let mut open: Vec<(glidepath_core::StepKind, Option<String>)> = Vec::new();
    for e in events {
        match e {
            Event::Intent { step, .. } => {
                assert!(
                    !open.contains(&(step.kind, step.node.clone())),
                    "two intents in flight for {step:?}"
                );
                open.push((step.kind, step.node.clone()));
            }
            Event::Outcome { step, .. } => {
                let i = open
                    .iter()
                    .position(|o| *o == (step.kind, step.node.clone()))
                    .unwrap_or_else(|| panic!("outcome without intent: {step:?}"));
                open.remove(i);
            }
            Event::Interrupted { .. } => open.clear(),
            _ => {}
        }
    }
    assert!(open.is_empty(), "steps left in flight at the end: {open:?}");
    assert!(
        matches!(events.last(), Some(Event::Finished { .. })),
        "the journal ends with `finished`"
    );
}
