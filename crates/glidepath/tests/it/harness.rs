//! Test fleet: demo nodes, releases, plans, and helpers that wait on
//! conditions with deadlines (never fixed sleeps).

use glidepath::demo::fleet::{write_release, DemoFleet, LocalFleet, Traffic};
use glidepath::demo::infra::Postgres;
use glidepath::demo::node::Behaviour;
use glidepath::demo::{plan_text, relative_artifact, DemoPlan};
pub use glidepath::journal::Store;
use glidepath::journal::{Journal, Location};
use glidepath::plan::Release;
use glidepath_core::{Event, StepKind};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_glidepath");

/// Which journal the commands of an [`Env`] use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The per-machine SQLite file (in the test's directory).
    Sqlite,
    /// A PostgreSQL database on the env's own throwaway cluster.
    Postgres,
}

/// An env's PostgreSQL journal: its cluster (stopped when dropped) and the
/// URL the commands get as `GLIDEPATH_JOURNAL`.
pub struct PgJournalDb {
    pub server: Postgres,
    pub url: String,
}

impl PgJournalDb {
    /// The journal's database.
    pub const DB: &'static str = "glidepath";

    /// Run SQL on the journal's database (psql's unaligned, tuples-only output).
    pub fn psql(&self, sql: &str) -> String {
        self.server.psql(Self::DB, sql).unwrap()
    }
}

/// Is PostgreSQL installed? Under `CI=true` it must be (a failure, not a
/// skip); elsewhere a test without it skips loudly.
pub fn postgres_available() -> bool {
    if glidepath::demo::infra::postgres_bin().is_some() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("PostgreSQL is not installed: under CI every real component must be there (.ci/run installs it)");
    }
    eprintln!(
        "\n!!!!!!!! SKIPPING: PostgreSQL not installed (apt-get install postgresql) !!!!!!!!\n"
    );
    false
}

pub struct Env {
    /// Set when the commands journal in PostgreSQL (dropped first: the
    /// cluster stops before its directory goes).
    pub pg: Option<PgJournalDb>,
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
        let DemoFleet {
            fleet, v1, v2, v3, ..
        } = DemoFleet::start(Path::new(BIN), dir.path(), n).expect("fleet starts");
        let traffic = Some(fleet.traffic(150));
        Env {
            pg: None,
            dir,
            fleet,
            traffic,
            v1,
            v2,
            v3,
        }
    }

    /// `n` demo nodes, their commands journaling in `backend`.
    pub async fn start_on(n: usize, backend: Backend) -> Env {
        let env = Env::start(n).await;
        match backend {
            Backend::Sqlite => env,
            Backend::Postgres => env.with_postgres(),
        }
    }

    /// From now on the commands journal in a PostgreSQL database of a
    /// throwaway cluster of this env's own (check [`postgres_available`]
    /// first).
    pub fn with_postgres(mut self) -> Env {
        let server = Postgres::start(&self.path().join("journal-db"))
            .expect("PostgreSQL starts (apt-get install postgresql)");
        server
            .psql("postgres", &format!("CREATE DATABASE {}", PgJournalDb::DB))
            .unwrap();
        let url = server.url(PgJournalDb::DB);
        self.pg = Some(PgJournalDb { server, url });
        self
    }

    /// The env's PostgreSQL journal (an env made by [`Env::with_postgres`]).
    pub fn pg(&self) -> &PgJournalDb {
        self.pg.as_ref().expect("an env journaling in PostgreSQL")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn release(&self, b: Behaviour) -> Release {
        write_release(&self.path().join("dist"), &b).unwrap()
    }

    /// Write a plan rolling out `rel`; returns its path.
    pub fn plan(&self, rel: &Release, knobs: &DemoPlan) -> PathBuf {
        let artifact = relative_artifact(rel, self.path());
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
            .env_remove("GLIDEPATH_JOURNAL_PASSWORD")
            .env_remove("GLIDEPATH_JOURNAL_PASSWORD_FILE")
            .env_remove("GLIDEPATH_HOST")
            .env_remove("GLIDEPATH_LEASE_TTL")
            // the per-machine journal and node locks live in the test's dir
            .env("XDG_STATE_HOME", self.path().join("state"))
            // and so do this machine's markers of nodes left for a person
            // (they outlive a process: a shared directory would carry them
            // to the next test that gets the same port)
            .env("GLIDEPATH_LOCK_DIR", self.path().join("locks"))
            .stdin(Stdio::null());
        if let Some(pg) = &self.pg {
            c.env("GLIDEPATH_JOURNAL", &pg.url);
        }
        c
    }

    /// Run glidepath to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd(args).output().expect("glidepath runs");
        log_output(&format!("{args:?}"), &out);
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

    /// Start glidepath in the background, its output piped.
    pub fn spawn(&self, args: &[&str]) -> Running {
        Running::from(
            self.cmd(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn glidepath"),
        )
    }

    /// Wait (up to `timeout`) until the newest run's journal holds an event
    /// for which `pred` holds.
    pub async fn wait_event(&self, what: &str, timeout: Duration, pred: impl Fn(&Event) -> bool) {
        let j = self.journal();
        wait_until(what, timeout, || {
            latest_events(j.as_ref()).iter().any(&pred)
        })
        .await;
    }

    /// Start `glidepath run <plan> [extra…]` (a plan paused after the
    /// canary) and wait until its window passed and the pause waits; returns
    /// the child and the run's id.
    pub async fn run_to_pause(&self, plan: &Path, extra: &[&str]) -> (Running, String) {
        let mut args = vec!["run", plan.to_str().unwrap()];
        args.extend(extra);
        let child = self
            .spawn_until(&args, "the run to pause after the canary", window_passed)
            .await;
        (child, self.latest_run())
    }

    /// Start glidepath with `args` in the background and wait (up to 60 s)
    /// until the newest run's journal holds an event for which `pred` holds.
    pub async fn spawn_until(
        &self,
        args: &[&str],
        what: &str,
        pred: impl Fn(&Event) -> bool,
    ) -> Running {
        let child = self.spawn(args);
        self.wait_event(what, Duration::from_secs(60), pred).await;
        child
    }

    /// The journal the commands use by default (this machine's, which the
    /// test points into its own directory).
    pub fn journal_path(&self) -> PathBuf {
        self.path().join("state/glidepath/journal.db")
    }

    /// The journal the commands use: the SQLite file, or the env's
    /// PostgreSQL database.
    pub fn journal(&self) -> Box<dyn Store> {
        match &self.pg {
            Some(pg) => Location::parse(&pg.url).unwrap().open().unwrap(),
            None => Box::new(Journal::open(&self.journal_path()).unwrap()),
        }
    }

    pub fn latest_run(&self) -> String {
        self.journal().runs(1).unwrap().remove(0).id
    }

    pub fn events(&self, run: &str) -> Vec<Event> {
        self.journal().events(run).unwrap()
    }

    /// (version served, drained) of node `i`, asked from the node itself.
    pub async fn node_state(&self, i: usize) -> (String, bool) {
        let v: serde_json::Value = reqwest::Client::new()
            .get(format!(
                "http://{}/admin/state",
                self.fleet.nodes[i].address
            ))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            v["version"].as_str().unwrap_or("none").to_string(),
            v["drained"].as_bool().unwrap(),
        )
    }

    /// (version served, drained) per node, asked from the nodes themselves.
    pub async fn fleet_state(&self) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        for i in 0..self.fleet.nodes.len() {
            out.push(self.node_state(i).await);
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
pub fn latest_events(j: &dyn Store) -> Vec<Event> {
    j.runs(1)
        .ok()
        .and_then(|r| r.first().cloned())
        .map_or(vec![], |r| j.events(&r.id).unwrap())
}

/// What a glidepath run printed, for the test's log.
fn log_output(what: &str, out: &Output) {
    eprintln!(
        "--- glidepath {what} → {:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
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

/// Poll until `f` holds, or panic at the deadline (the kit's `demo::wait_for`).
/// Poll an async condition (every 20 ms) until it holds, or panic at the
/// deadline.
pub async fn wait_until_async<F: std::future::Future<Output = bool>>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> F,
) {
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    glidepath::demo::wait_for(what, timeout, || f().then_some(()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The canary's SLI window passed (a pause after the canary waits now).
pub fn window_passed(e: &Event) -> bool {
    matches!(e, Event::WindowClosed { passed: true, .. })
}

/// A probe of the SLI window came back.
pub fn probed(e: &Event) -> bool {
    matches!(e, Event::Outcome { step, .. } if step.kind == StepKind::Probe)
}

/// A glidepath started in the background, killed (and reaped) if the test
/// ends before it does: a failing assertion must not leave a run waiting at
/// a pause for ever.
pub struct Running(Option<Child>);

impl From<Child> for Running {
    fn from(child: Child) -> Running {
        Running(Some(child))
    }
}

impl Running {
    /// The child, no longer guarded.
    pub fn into_inner(mut self) -> Child {
        self.0.take().expect("a child")
    }
}

impl Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.0.as_ref().expect("a child")
    }
}

impl DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().expect("a child")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            if c.try_wait().ok().flatten().is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Send `sig` to our own child.
pub fn signal(child: &Child, sig: i32) {
    // SAFETY: signalling our own child, by its PID.
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// Wait for a child to exit, or kill it and panic at the deadline.
pub async fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the child did not exit within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Run the glidepath binary with `args` from a synchronous test, and wait
/// (up to `limit`) for it to end: a hang (e.g. on a FIFO) kills it and fails
/// the test naming `what`.
pub fn output_within(args: &[&str], limit: Duration, what: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn glidepath");
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("glidepath {args:?} hung on {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Wait for a child to exit and collect its output, or kill it and panic
/// at the deadline (a step hangs).
pub async fn wait_output(child: Running, limit: Duration) -> Output {
    let child = child.into_inner();
    let pid = child.id();
    let waiter = tokio::task::spawn_blocking(move || child.wait_with_output());
    match tokio::time::timeout(limit, waiter).await {
        Ok(out) => {
            let out = out.unwrap().unwrap();
            log_output("(spawned)", &out);
            out
        }
        Err(_) => {
            // SAFETY: killing the child we spawned, by its PID.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("glidepath did not end within {limit:?}: a step hangs");
        }
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
