//! `glidepath demo`: a rehearsal with nothing installed. It starts a local
//! fleet of demo nodes, drives traffic at them, and runs two real rollouts
//! through the same plan parser, executor, journal and drivers as `run`:
//! a healthy release promoted everywhere, then a broken one that the SLI
//! window catches on the canary and rolls back automatically, then a
//! healthy one whose SLI window sees the whole fleet degrade (an outside
//! incident): the canary, compared with its baseline, is not blamed; the
//! window pauses until the fleet recovers, and the release goes out.

pub mod fleet;
pub mod infra;
pub mod node;
pub mod plans;
pub mod ws_peer;

use crate::drivers::Drivers;
use crate::executor::{ExecError, Executor, RunResult};
use crate::journal::Location;
use crate::report::{summarize, Console, Reporter};
use fleet::{DemoFleet, LocalFleet};
use glidepath_core::{Event, Outcome, RolloutSpec, StepKind, Track};
use node::Behaviour;
pub use plans::{
    haproxy_prometheus_compare_plan, haproxy_prometheus_plan, plan_text, relative_artifact,
    DemoPlan,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The demo releases: 1 (installed), 2 (healthy), 3 (broken: 25% 5xx, 8×
/// latency), 4 (healthy: rolled out through a fleet-wide incident).
pub fn releases() -> [Behaviour; 4] {
    [
        Behaviour {
            version: "1".into(),
            error_rate: 0.0,
            latency_ms: 10.0,
            leak_after_s: None,
        },
        Behaviour {
            version: "2".into(),
            error_rate: 0.0,
            latency_ms: 10.0,
            leak_after_s: None,
        },
        Behaviour {
            version: "3".into(),
            error_rate: 0.25,
            latency_ms: 80.0,
            leak_after_s: None,
        },
        Behaviour {
            version: "4".into(),
            error_rate: 0.0,
            latency_ms: 10.0,
            leak_after_s: None,
        },
    ]
}

/// How fast a bad canary was caught and undone, from the journal.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RollbackTiming {
    /// Bad release serving (its restart finished) → breach decided.
    pub detect_ms: u64,
    /// Bad release serving → previous release serving again (restart back finished).
    pub restore_ms: u64,
    /// … → previous release confirmed healthy.
    pub healthy_ms: u64,
}

pub fn rollback_timing(
    spec: &glidepath_core::RolloutSpec,
    events: &[Event],
    canary: &str,
) -> Option<RollbackTiming> {
    let mut state = glidepath_core::RunState::new(spec);
    let (mut bad, mut decided, mut restored, mut healthy) = (None, None, None, None);
    for e in events {
        state.apply(spec, e);
        if decided.is_none() && state.phase == glidepath_core::Phase::RollingBack {
            decided = Some(e.at());
        }
        if let Event::Outcome { at, step, outcome } = e {
            if step.node.as_deref() != Some(canary) || !outcome.ok {
                continue;
            }
            match (step.kind, decided.is_some()) {
                (StepKind::Restart, false) => bad = Some(*at),
                (StepKind::Restart, true) => restored = restored.or(Some(*at)),
                (StepKind::CheckHealth, true) => healthy = healthy.or(Some(*at)),
                _ => {}
            }
        }
    }
    let bad = bad?;
    Some(RollbackTiming {
        detect_ms: decided?.saturating_sub(bad),
        restore_ms: restored?.saturating_sub(bad),
        healthy_ms: healthy?.saturating_sub(bad),
    })
}

/// Options of `glidepath demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub nodes: usize,
    pub keep: bool,
    pub color: bool,
    pub rps: u32,
    pub knobs: DemoPlan,
    pub dir: Option<PathBuf>,
    pub quiet: bool,
}

/// What the demo proved.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DemoReport {
    pub good: String,
    pub bad: String,
    /// Rehearsal 3: the healthy release rolled out through an incident.
    pub incident: String,
    /// Rehearsal 3's window paused for the incident.
    pub incident_paused: bool,
    pub timing: Option<RollbackTiming>,
    pub dir: PathBuf,
    pub passed: bool,
    /// Stopped by Ctrl-C/SIGTERM (the fleet is stopped, nothing left running).
    pub interrupted: bool,
}

struct DirGuard {
    dir: PathBuf,
    keep: bool,
}

impl Drop for DirGuard {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

async fn rollout(
    fleet: &LocalFleet,
    dir: &Path,
    release: &crate::plan::Release,
    knobs: &DemoPlan,
    reporter: Arc<dyn Reporter>,
) -> Result<(RunResult, Vec<Event>, String, RolloutSpec), ExecError> {
    let artifact = relative_artifact(release, dir);
    let path = dir.join(format!("plan-{}.toml", release.version));
    // the demo keeps its own journal in its work directory
    let text =
        plan_text(fleet, release, &artifact, knobs) + "\n[journal]\npath = \"glidepath.db\"\n";
    std::fs::write(&path, text).expect("write demo plan");
    let (plan, _) = match crate::plan::load(&path) {
        Ok(p) => p,
        Err(crate::plan::PlanError::Invalid(r)) => panic!("demo plan invalid:\n{}", r.short()),
        Err(e) => panic!("{e}"),
    };
    let journal = plan.journal_location().open()?;
    let drivers = Drivers::for_plan(&plan);
    let result = Executor::start(plan.clone(), journal, drivers, reporter).await?;
    let j = plan.journal_location().open()?;
    let events = j.events(&result.run_id)?;
    let rec = j.run(&result.run_id)?;
    let summary = summarize(
        &rec,
        &plan.rollout_spec(),
        &events,
        None,
        crate::journal::now_ms(),
    );
    Ok((result, events, summary.render(), plan.rollout_spec()))
}

/// Run the rehearsal. `bin` is the glidepath executable (for the nodes).
pub async fn run(bin: &Path, opts: DemoOptions) -> anyhow::Result<DemoReport> {
    let dir = match &opts.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("glidepath-demo-{}", std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let dir = dir.canonicalize()?;
    let _guard = DirGuard {
        dir: dir.clone(),
        keep: opts.keep,
    };
    let say = |s: &str| {
        if !opts.quiet {
            use std::io::Write as _;
            let _ = writeln!(std::io::stdout(), "{s}");
        }
    };
    // Ctrl-C at any point stops the demo cleanly; during a rollout the
    // executor also hears it and aborts safely first.
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        use tokio::signal::unix::{signal, SignalKind};
        let flag = interrupted.clone();
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        tokio::spawn(async move {
            tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        });
    }
    let stopped = || interrupted.load(std::sync::atomic::Ordering::SeqCst);
    let early = |dir: &Path| DemoReport {
        good: "not run".into(),
        bad: "not run".into(),
        incident: "not run".into(),
        incident_paused: false,
        timing: None,
        dir: dir.to_path_buf(),
        passed: false,
        interrupted: true,
    };
    say(&format!(
        "glidepath demo — a local fleet of {} nodes on 127.0.0.1 (work dir {})",
        opts.nodes,
        dir.display()
    ));
    let DemoFleet {
        mut fleet,
        v2: rel2,
        v3: rel3,
        v4: rel4,
        ..
    } = DemoFleet::start_with(
        bin,
        &dir,
        opts.nodes,
        opts.keep.then(|| dir.join("logs")).as_deref(),
    )?;
    for n in &fleet.nodes {
        say(&format!(
            "  {} listening on {} (pid {}), serving release 1",
            n.name,
            n.address,
            n.pid()
        ));
    }
    if stopped() {
        return Ok(early(&dir));
    }
    let traffic = fleet.traffic(opts.rps);
    say(&format!(
        "  traffic: ~{} requests/s spread over the nodes in rotation\n",
        opts.rps
    ));
    let reporter = |_: &str| -> Arc<dyn Reporter> {
        if opts.quiet {
            Arc::new(crate::report::Silent)
        } else {
            Arc::new(Console::new(Box::new(std::io::stdout()), opts.color).with_prefix("  "))
        }
    };

    say("━━ rehearsal 1: release 2 (healthy) — a backup and a capture first, canary, SLI window, batches, then a check that the data is unchanged");
    std::fs::create_dir_all(dir.join("data"))?;
    std::fs::write(
        dir.join("data/rooms.txt"),
        "room-1 3 members\nroom-2 5 members\n",
    )?;
    let knobs = DemoPlan {
        extra: REHEARSAL_1_TASKS.into(),
        ..opts.knobs.clone()
    };
    let (good, _, good_summary, _) = rollout(&fleet, &dir, &rel2, &knobs, reporter("good")).await?;
    say("");
    if good.outcome == Outcome::Aborted || stopped() {
        let _ = traffic.stop().await;
        fleet.stop();
        say("demo interrupted: fleet stopped, nothing left running");
        return Ok(DemoReport {
            good: good.outcome.as_str().into(),
            ..early(&dir)
        });
    }
    if good.outcome != Outcome::Succeeded {
        let _ = traffic.stop().await;
        fleet.stop();
        say(&good_summary);
        anyhow::bail!(
            "the healthy release did not roll out: {}",
            good.outcome.as_str()
        );
    }
    say("━━ rehearsal 2: release 3 (broken: 25% errors, 8× latency) — the canary must be caught and rolled back");
    let (bad, bad_events, bad_summary, bad_spec) =
        rollout(&fleet, &dir, &rel3, &opts.knobs, reporter("bad")).await?;
    if bad.outcome == Outcome::Aborted || stopped() {
        let _ = traffic.stop().await;
        fleet.stop();
        say("demo interrupted: fleet stopped, nothing left running");
        return Ok(DemoReport {
            good: good.outcome.as_str().into(),
            bad: bad.outcome.as_str().into(),
            ..early(&dir)
        });
    }
    say("");
    say("━━ rehearsal 3: release 4 (healthy) — the whole fleet degrades during its SLI window (+10% errors, +100 ms: an outside incident)");
    let knobs = DemoPlan {
        compare: true,
        ..opts.knobs.clone()
    };
    let (incident, incident_events, incident_summary, incident_spec) = {
        let journal = dir.join("glidepath.db");
        let run = rollout(&fleet, &dir, &rel4, &knobs, reporter("incident"));
        let storm = incident_during_window(&fleet, &journal, &rel4.version, &say);
        let (res, storm) = tokio::join!(run, storm);
        if let Err(e) = storm {
            say(&format!("  (the incident could not be staged: {e})"));
        }
        res?
    };
    let incident_paused = {
        let mut st = glidepath_core::RunState::new(&incident_spec);
        incident_events.iter().any(|e| {
            st.apply(&incident_spec, e);
            st.window
                .as_ref()
                .is_some_and(|w| w.incident_since.is_some())
        })
    };
    let stats = traffic.stop().await;
    if incident.outcome == Outcome::Aborted || stopped() {
        fleet.stop();
        say("demo interrupted: fleet stopped, nothing left running");
        return Ok(DemoReport {
            good: good.outcome.as_str().into(),
            bad: bad.outcome.as_str().into(),
            ..early(&dir)
        });
    }
    let timing = rollback_timing(&bad_spec, &bad_events, "node-1");
    let peers_untouched = bad
        .state
        .nodes
        .iter()
        .filter(|(n, _)| n.as_str() != "node-1")
        .all(|(_, s)| s.status == glidepath_core::NodeStatus::Untouched && s.track == Track::Idle);
    let passed = bad.outcome == Outcome::RolledBack
        && peers_untouched
        && incident.outcome == Outcome::Succeeded
        && incident_paused;

    say("\n━━ summary");
    say(&format!(
        "rehearsal 1 (release 2):\n{}",
        indent(&good_summary)
    ));
    say(&format!(
        "rehearsal 2 (release 3):\n{}",
        indent(&bad_summary)
    ));
    say(&format!(
        "rehearsal 3 (release 4, through an incident):\n{}",
        indent(&incident_summary)
    ));
    if let Some(t) = &timing {
        say(&format!(
            "bad canary: SLI breach decided {:.2}s after release 3 started serving; release 2 serving again after {:.2}s (healthy at {:.2}s)",
            t.detect_ms as f64 / 1000.0,
            t.restore_ms as f64 / 1000.0,
            t.healthy_ms as f64 / 1000.0
        ));
    }
    let mut tl = String::from("client traffic per node (ok / 5xx / failed):");
    for (n, s) in &stats {
        tl.push_str(&format!("  {n} {}/{}/{}", s.ok, s.errors, s.failed));
    }
    say(&tl);
    say(&format!(
        "{}: healthy release promoted on every node; broken release {} on the canary, peers {}; through a fleet-wide incident the window {} and the healthy release {}",
        if passed { "demo passed" } else { "DEMO FAILED" },
        if bad.outcome == Outcome::RolledBack {
            "rolled back"
        } else {
            "NOT rolled back"
        },
        if peers_untouched {
            "never touched"
        } else {
            "TOUCHED"
        },
        if incident_paused {
            "paused"
        } else {
            "did NOT pause"
        },
        if incident.outcome == Outcome::Succeeded {
            "went out"
        } else {
            "did NOT go out"
        }
    ));
    if opts.keep {
        // a next release for a first plan of one's own
        fleet::write_release(
            &dir.join("dist"),
            &Behaviour {
                version: "5".into(),
                ..releases()[3].clone()
            },
        )?;
        say(&kept(&fleet, &dir));
        fleet.detach();
    } else {
        fleet.stop();
    }
    Ok(DemoReport {
        good: good.outcome.as_str().into(),
        bad: bad.outcome.as_str().into(),
        incident: incident.outcome.as_str().into(),
        incident_paused,
        timing,
        dir,
        passed,
        interrupted: false,
    })
}

/// What `demo --keep` leaves, and the commands to try next against it.
fn kept(fleet: &LocalFleet, dir: &Path) -> String {
    let d = dir.display();
    let w = |p: String| crate::hints::shell_word(&p);
    let db = w(format!("{d}/glidepath.db"));
    let install = w(format!("{d}/nodes/{{node}}"));
    let artifact = w(format!("{d}/dist/5/release.toml"));
    let dq = w(d.to_string());
    let pids: Vec<String> = fleet.nodes.iter().map(|n| n.pid().to_string()).collect();
    let nodes: String = fleet
        .nodes
        .iter()
        .map(|n| format!(" --node {}={}", n.name, n.address))
        .collect();
    format!(
        "\nkept {d}: the demo fleet is still running (pids {pids}; their output in {d}/logs/).\n\
         try, against it:\n\
         \x20 glidepath history --journal {db}\n\
         \x20 glidepath status latest --journal {db}\n\
         \x20 curl -s http://{addr}/version\n\
         a first plan of your own for it (README \"Your first plan\"):\n\
         \x20 glidepath init plan.toml --balancer http{nodes} --install-dir {install} --restart 'kill -HUP $(cat {{install_dir}}/node.pid)' --version-url 'http://{{address}}/version' --release 5 --artifact {artifact}\n\
         \x20 glidepath run plan.toml\n\
         stop it with:\n\
         \x20 glidepath demo --stop {dq}",
        pids = pids.join(" "),
        addr = fleet.nodes.first().map_or("", |n| n.address.as_str()),
    )
}

/// Rehearsal 1's `[[pre]]`/`[[post]]` tasks: a backup, a capture of the
/// data's hash before the rollout, and a comparison after it.
const REHEARSAL_1_TASKS: &str = r#"
[[pre]]
name       = "backup"
run        = "mkdir -p backups && cp data/rooms.txt backups/rooms-before-{version}.txt"
idempotent = true

[[pre]]
name    = "room-hashes"
run     = "sha256sum data/rooms.txt"
capture = true

[[post]]
name       = "room-hashes-unchanged"
compare_to = "room-hashes"
"#;

/// Rehearsal 3's incident: once the SLI window of `version`'s run has
/// probed twice, every node gets +10% errors and +100 ms (past both
/// limits, on the canary and its baseline alike) for a few probes, then
/// recovers.
async fn incident_during_window(
    fleet: &LocalFleet,
    journal: &Path,
    version: &str,
    say: &impl Fn(&str),
) -> anyhow::Result<()> {
    let probed = |n: usize| -> Option<()> {
        let j = Location::from(journal.to_path_buf()).open().ok()?;
        let run = j.runs(1).ok()?.into_iter().next()?;
        if run.version != version {
            return None;
        }
        let probes = j
            .events(&run.id)
            .ok()?
            .iter()
            .filter(|e| matches!(e, Event::Outcome { step, .. } if step.kind == StepKind::Probe))
            .count();
        (probes >= n).then_some(())
    };
    wait_for(
        "two probes of the SLI window",
        Duration::from_secs(120),
        || probed(2),
    )
    .await?;
    fleet.incident(0.10, 100.0).await?;
    say("  ⚡ incident: every node now answers with +10% errors and +100 ms (canary and baseline alike)");
    // The incident lasts a few probes (what it lasts is the scenario here,
    // not a synchronization: the run decides on its own).
    wait_for(
        "four probes into the incident",
        Duration::from_secs(120),
        || probed(6),
    )
    .await?;
    fleet.recover().await?;
    say("  ⚡ incident over: the fleet recovers");
    Ok(())
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

/// Wait helper shared by tests: poll `f` until it returns `Some`, or fail at the deadline.
pub async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
