//! The safety promise at its edges: signals from the first instant, no gate
//! skipped on resume, fenced leases, journal faults, operator commands that
//! only act on what waits now, and output into closed pipes.

use crate::harness::*;
use glidepath::demo::DemoPlan;
use glidepath_core::{Event, StepKind};
use std::time::{Duration, Instant};

fn knobs() -> DemoPlan {
    DemoPlan::quick("2s", 5)
}

fn append(plan: &std::path::Path, text: &str) {
    let src = std::fs::read_to_string(plan).unwrap() + text;
    std::fs::write(plan, src).unwrap();
}

/// Everything a finished child wrote on stderr.
fn child_stderr(child: &mut std::process::Child) -> String {
    use std::io::Read;
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err).unwrap();
    }
    err
}

/// Item 1: SIGTERM while a gate runs ends the run as aborted (exit 5),
/// releases the lease and changes nothing; the next run is not locked out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_preflight_aborts_and_releases_the_lease() {
    signal_during_preflight(libc::SIGTERM).await;
}

/// A closed terminal or ssh session (SIGHUP) stops a run safely too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_during_preflight_aborts_and_releases_the_lease() {
    signal_during_preflight(libc::SIGHUP).await;
}

async fn signal_during_preflight(sig: i32) {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs());
    let marker = env.path().join("gate-started");
    append(
        &plan,
        &format!(
            "\n[[gates.custom]]\nname = \"slow\"\ncommand = \"touch {}; sleep 30\"\ntimeout = \"60s\"\n",
            marker.display()
        ),
    );
    let mut child = env.spawn(&["run", plan.to_str().unwrap()]);
    wait_until("the slow gate to start", Duration::from_secs(60), || {
        marker.exists()
    })
    .await;
    signal(&child, sig);
    let status = wait_exit(&mut child, Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(5), "exit 5: aborted during preflight");
    let run = env.latest_run();
    let j = env.journal();
    let rec = j.run(&run).unwrap();
    assert_eq!(rec.status, "aborted", "{}", rec.reason);
    assert!(rec.reason.contains("during preflight"), "{}", rec.reason);
    assert!(j.lease("demo").unwrap().is_none(), "the lease is released");
    let events = env.events(&run);
    assert!(!events.iter().any(|e| matches!(e, Event::Started { .. })));
    assert!(!events.iter().any(|e| matches!(e, Event::Intent { .. })));
    env.assert_fleet(&["1", "1"]).await;
    // nothing changed, so there is nothing to roll back (and no second finish)
    let before = env.events(&run).len();
    let rb = env.run(&["rollback", &run]);
    assert_eq!(code(&rb), 9, "nothing to do: {}", stderr(&rb));
    assert!(
        stdout(&rb).contains("nothing to rollback"),
        "{}",
        stdout(&rb)
    );
    assert_eq!(env.events(&run).len(), before);
    // the next attempt is not locked out: it reaches the gates again (and is
    // refused by a failing one, here, to keep the test short)
    std::fs::write(
        &plan,
        std::fs::read_to_string(&plan)
            .unwrap()
            .replace("sleep 30", "exit 1"),
    )
    .unwrap();
    let again = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(
        code(&again),
        3,
        "a gate refuses, not a lock: {}",
        stderr(&again)
    );
}

/// Item 1: a run killed during preflight (after its gates passed, before it
/// started) is resumed through every gate again: a gate that now fails
/// refuses it and nothing changes; an abort of it just ends it; a resume with
/// passing gates finishes the rollout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_during_preflight_is_resumed_through_every_gate() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs());
    let frozen = env.path().join("frozen");
    append(
        &plan,
        &format!(
            "\n[[gates.custom]]\nname = \"not-frozen\"\ncommand = \"test ! -e {}\"\n",
            frozen.display()
        ),
    );
    let p = plan.to_str().unwrap();

    // 1. killed during preflight, then aborted: nothing to undo
    env.run_until_killed(&["run", p], "transition:gates_checked");
    let run1 = env.latest_run();
    assert_eq!(env.journal().run(&run1).unwrap().status, "preflight");
    let locked = env.run(&["run", p]);
    assert_eq!(code(&locked), 6);
    let a = env.run(&["abort", &run1]);
    assert_eq!(code(&a), 5, "{}", stderr(&a));
    assert_eq!(env.journal().run(&run1).unwrap().status, "aborted");
    assert!(!env
        .events(&run1)
        .iter()
        .any(|e| matches!(e, Event::Intent { .. })));

    // 2. killed during preflight; the freeze begins; resume must refuse
    env.run_until_killed(&["run", p], "transition:gates_checked");
    let run2 = env.latest_run();
    std::fs::write(&frozen, "").unwrap();
    let r = env.run(&["resume", &run2]);
    assert_eq!(code(&r), 3, "the gate refuses the resumed run");
    assert!(
        stdout(&r).contains("never passed preflight"),
        "{}",
        stdout(&r)
    );
    assert_eq!(env.journal().run(&run2).unwrap().status, "refused");
    assert!(!env
        .events(&run2)
        .iter()
        .any(|e| matches!(e, Event::Intent { .. } | Event::Started { .. })));
    env.assert_fleet(&["1", "1"]).await;
    assert_eq!(env.current_links(), ["1", "1"]);

    // 3. killed during preflight; resume passes the gates again and finishes
    std::fs::remove_file(&frozen).unwrap();
    env.run_until_killed(&["run", p], "transition:gates_checked");
    let run3 = env.latest_run();
    let r = env.run(&["resume", &run3]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    let events = env.events(&run3);
    let gates = events
        .iter()
        .filter(|e| matches!(e, Event::GatesChecked { .. }))
        .count();
    assert_eq!(gates, 2, "the gates ran again on resume");
    env.assert_fleet(&["2", "2"]).await;
}

/// Item 6: a second signal ends the process at once even while a step
/// blocks (here a restart command that hangs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_always_ends_the_process() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs());
    let pidfile = env.path().join("restart.pid");
    let src = std::fs::read_to_string(&plan).unwrap().replace(
        "restart       = \"kill -HUP $(cat {install_dir}/node.pid)\"",
        &format!(
            "restart       = \"echo $$ > {}; exec sleep 120\"\nrestart_timeout = \"300s\"",
            pidfile.display()
        ),
    );
    std::fs::write(&plan, src).unwrap();
    let mut child = env.spawn(&["run", plan.to_str().unwrap()]);
    wait_until("the restart to hang", Duration::from_secs(60), || {
        std::fs::read_to_string(&pidfile).is_ok_and(|s| !s.trim().is_empty())
    })
    .await;
    signal(&child, libc::SIGTERM);
    env.wait_event("the abort to be journaled", Duration::from_secs(20), |e| {
        matches!(e, Event::AbortRequested { .. })
    })
    .await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first signal waits for the step in flight"
    );
    let t = Instant::now();
    signal(&child, libc::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(130));
    assert!(t.elapsed() < Duration::from_secs(10));
    let err = child_stderr(&mut child);
    assert!(err.contains("stopped immediately"), "{err}");
    assert!(err.contains("glidepath resume r"), "names the run: {err}");
    // the hanging restart went with the process (its whole group)
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let alive = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            let st = s.rsplit(')').next().unwrap_or("").trim_start();
            !st.starts_with('Z') && !st.starts_with('X')
        })
    };
    wait_until(
        "the restart command to be gone",
        Duration::from_secs(10),
        || !alive(pid),
    )
    .await;
    // the journal is intact: resume finishes the abort
    let run = env.latest_run();
    let events = env.events(&run);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Intent { step, .. } if step.kind == StepKind::Restart)));
}

/// Item 11: `promote` acts only on a pause that waits now; sent during the
/// SLI window it is refused (exit 2) and the after-canary pause still comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_is_refused_unless_a_pause_waits_now() {
    let env = Env::start(3).await;
    let plan = env.plan(&env.v2, &DemoPlan::quick("4s", 5).paused_after_canary());
    let mut child = env
        .spawn_until(
            &["run", plan.to_str().unwrap()],
            "the SLI window to run",
            probed,
        )
        .await;
    let run = env.latest_run();
    let early = env.run(&["promote", &run]);
    assert_eq!(code(&early), 2, "refused: nothing waits yet");
    assert!(
        stderr(&early).contains("not waiting at a pause point"),
        "{}",
        stderr(&early)
    );
    env.wait_event(
        "the pause after the canary",
        Duration::from_secs(60),
        window_passed,
    )
    .await;
    let status = env.run(&["status", &run]);
    assert!(
        stdout(&status).contains("waiting: paused after the canary"),
        "the early promote pre-approved nothing: {}",
        stdout(&status)
    );
    assert!(!env
        .events(&run)
        .iter()
        .any(|e| matches!(e, Event::Promoted { .. })));
    let ok = env.run(&["promote", &run]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(120)).await.code(),
        Some(0)
    );
    let late = env.run(&["promote", &run]);
    assert_ne!(code(&late), 0, "nothing to promote on a finished run");
}

/// Item 11: output into a closed pipe ends quietly, with the command's own
/// exit code (no panic, no exit 101).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_ends_output_quietly() {
    let env = Env::start(2).await;
    let sql = env.path().join("migrations");
    std::fs::create_dir_all(&sql).unwrap();
    for i in 0..50 {
        std::fs::write(
            sql.join(format!("{i:03}.sql")),
            "ALTER TABLE t DROP COLUMN c;\n",
        )
        .unwrap();
    }
    let plan = env.plan(&env.v2, &knobs());
    env.run_until_killed(&["run", plan.to_str().unwrap()], "transition:gates_checked");
    for args in [
        vec!["lint", sql.to_str().unwrap()],
        vec!["status"],
        vec!["history"],
        vec!["status", "--output", "json"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader); // the reader is gone before glidepath writes a byte
        let out = env
            .cmd(&args)
            .stdout(std::process::Stdio::from(writer))
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_ne!(code(&out), 101, "{args:?}: {err}");
    }
}

fn paused_plan(env: &Env) -> std::path::PathBuf {
    env.plan(&env.v2, &knobs().paused_after_canary())
}

/// Item 5: a runner stopped (SIGSTOP) past the lease TTL loses the lease to
/// `resume`; once continued, it writes nothing and stops at once (exit 6),
/// while the new holder finishes the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_holder_that_lost_its_lease_writes_nothing_and_stops() {
    let env = Env::start(3).await;
    let plan = paused_plan(&env);
    // the holder declares a 2 s TTL in its lease: past it, `resume` may take over
    let mut first = Running::from(
        env.cmd(&["run", plan.to_str().unwrap()])
            .env("GLIDEPATH_LEASE_TTL", "2s")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    env.wait_event(
        "the run to pause after the canary",
        Duration::from_secs(60),
        window_passed,
    )
    .await;
    let run = env.latest_run();
    let j = env.journal();
    let epoch1 = j.lease("demo").unwrap().unwrap().epoch;
    signal(&first, libc::SIGSTOP);
    wait_until("the heartbeat to go stale", Duration::from_secs(30), || {
        j.lease("demo")
            .unwrap()
            .is_some_and(|l| glidepath::journal::now_ms().saturating_sub(l.heartbeat) > 2_500)
    })
    .await;
    let mut second = Running::from(
        env.cmd(&["resume", &run])
            .env("GLIDEPATH_LEASE_TTL", "2s")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_until(
        "resume to take the lease over",
        Duration::from_secs(30),
        || {
            j.lease("demo")
                .unwrap()
                .is_some_and(|l| l.pid == second.id() && l.epoch > epoch1)
        },
    )
    .await;
    wait_until(
        "resume to journal the interruption",
        Duration::from_secs(30),
        || {
            env.events(&run)
                .iter()
                .any(|e| matches!(e, Event::Interrupted { .. }))
        },
    )
    .await;
    // the new holder waits at the pause: from here on it writes nothing
    // until promoted, so every new event would be the old holder's
    let before = env.events(&run).len();
    signal(&first, libc::SIGCONT);
    let st = wait_exit(&mut first, Duration::from_secs(20)).await;
    assert_eq!(st.code(), Some(6), "the fenced holder stops with exit 6");
    let err = child_stderr(&mut first);
    assert!(err.contains("lost the lease"), "{err}");
    assert_eq!(
        env.events(&run).len(),
        before,
        "the old holder wrote nothing after losing the lease"
    );
    let p = env.run(&["promote", &run]);
    assert_eq!(code(&p), 0, "{}", stderr(&p));
    assert_eq!(
        wait_exit(&mut second, Duration::from_secs(120))
            .await
            .code(),
        Some(0)
    );
    env.assert_fleet(&["2", "2", "2"]).await;
    assert_journal_consistent(&env.events(&run));
}

/// Item 5: one machine has one lease per fleet: a copy of the plan elsewhere
/// uses the same (per-machine) journal and is locked out; an explicit second
/// journal on the same nodes is refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_copies_or_two_journals_cannot_drive_one_fleet() {
    let env = Env::start(2).await;
    let plan = paused_plan(&env);
    let (mut first, run) = env.run_to_pause(&plan, &[]).await;
    // a second checkout of the same plan
    let copy = env.path().join("checkout-2");
    std::fs::create_dir_all(&copy).unwrap();
    std::os::unix::fs::symlink(env.path().join("dist"), copy.join("dist")).unwrap();
    std::os::unix::fs::symlink(env.path().join("nodes"), copy.join("nodes")).unwrap();
    let copied = copy.join("plan.toml");
    std::fs::copy(&plan, &copied).unwrap();
    let out = env.run(&["run", copied.to_str().unwrap()]);
    assert_eq!(code(&out), 6, "same machine, same fleet: one lease");
    assert!(
        stderr(&out).contains(&format!("locked by run {run}")),
        "{}",
        stderr(&out)
    );
    // the same journal, the copy under another fleet name: another lease,
    // but the nodes are still driven by the first run
    let renamed = std::fs::read_to_string(&copied)
        .unwrap()
        .replace("name  = \"demo\"", "name  = \"demo-copy\"");
    assert!(renamed.contains("\"demo-copy\""), "{renamed}");
    std::fs::write(&copied, renamed).unwrap();
    let out = env.run(&["run", copied.to_str().unwrap()]);
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "is being rolled out by run {run} (pid {}) of another fleet in this journal",
            first.id()
        )),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains(&format!("glidepath abort {run}")));
    // an explicit other journal, the nodes spelled differently
    std::fs::write(
        &copied,
        std::fs::read_to_string(&copied)
            .unwrap()
            .replace("\"127.0.0.1:", "\"localhost:"),
    )
    .unwrap();
    assert!(std::fs::read_to_string(&copied)
        .unwrap()
        .contains("\"localhost:"));
    let other = env.path().join("other.db");
    let out = env.run(&[
        "run",
        copied.to_str().unwrap(),
        "--journal",
        other.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("from another journal"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(&run),
        "names the run holding the nodes"
    );
    let a = env.run(&["abort", &run]);
    assert_eq!(code(&a), 0);
    assert_eq!(
        wait_exit(&mut first, Duration::from_secs(60)).await.code(),
        Some(5)
    );
    env.assert_fleet(&["2", "1"]).await;
}

/// A tmpfs mounted on a directory the test owns, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// `None` when this machine cannot mount (not root): a skip locally, a
    /// failure under CI.
    fn mount(dir: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "cannot mount a tmpfs for the disk-full test (CI runs as root)"
            );
            eprintln!("SKIP: cannot mount a tmpfs here (not root)");
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Item 8: run with the canary's drain held (until the test says go), make
/// the journal unwritable with `fault`, and check the runner takes no new
/// step, puts the drained (never switched) canary back into rotation and exits
/// 8 naming the journal and the run; after `unfault`, `resume` drains it again
/// and finishes the rollout.
async fn journal_fault_while_draining(
    env: &Env,
    journal: &std::path::Path,
    fault: impl FnOnce(),
    unfault: impl FnOnce(),
) {
    let (mark, go) = (env.path().join("draining"), env.path().join("go"));
    let plan = env.plan(&env.v2, &knobs());
    let src = std::fs::read_to_string(&plan).unwrap().replace(
        "kind  = \"http\"\ndrain = \"http://{address}/admin/drain\"\nready = \"http://{address}/admin/ready\"\nstate = \"http://{address}/admin/state\"",
        &format!(
            "kind   = \"command\"\ndrain  = \"curl -fsS -X POST http://{{address}}/admin/drain && touch {m} && while [ ! -e {g} ]; do sleep 0.05; done\"\nenable = \"curl -fsS -X POST http://{{address}}/admin/ready\"\nactive = \"curl -fsS http://{{address}}/admin/state | grep -o '\\\"active\\\":[0-9]*' | cut -d: -f2\"\ntimeout = \"60s\"",
            m = mark.display(),
            g = go.display()
        ),
    );
    assert!(src.contains("kind   = \"command\""), "balancer replaced");
    std::fs::write(&plan, src).unwrap();
    let j = journal.to_str().unwrap();
    let mut child = env.spawn(&["run", plan.to_str().unwrap(), "--journal", j]);
    wait_until("the canary to be draining", Duration::from_secs(60), || {
        mark.exists()
    })
    .await;
    fault();
    std::fs::write(&go, "").unwrap();
    let st = wait_exit(&mut child, Duration::from_secs(90)).await;
    let err = child_stderr(&mut child);
    assert_eq!(st.code(), Some(8), "{st:?} {err}");
    assert!(err.contains(j), "names the journal: {err}");
    assert!(err.contains("glidepath resume r"), "names the run: {err}");
    assert!(err.contains("back in rotation: node-1"), "{err}");
    env.assert_fleet(&["1", "1"]).await;
    unfault();
    let run = glidepath::journal::Journal::open(journal)
        .unwrap()
        .runs(1)
        .unwrap()
        .remove(0)
        .id;
    let r = env.run(&["resume", &run, "--journal", j]);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    env.assert_fleet(&["2", "2"]).await;
    let events = glidepath::journal::Journal::open(journal)
        .unwrap()
        .events(&run)
        .unwrap();
    let drains = events
        .iter()
        .filter(|e| matches!(e, Event::Intent { step, .. } if step.kind == StepKind::Drain && step.node.as_deref() == Some("node-1")))
        .count();
    assert_eq!(drains, 2, "the canary is drained again after the resume");
    assert_journal_consistent(&events);
}

/// Item 8: the journal's disk fills while the canary is drained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_journal_disk_stops_the_run_with_no_node_left_drained() {
    let env = Env::start(2).await;
    let Some(fs) = Tmpfs::mount(&env.path().join("jfs"), "4m") else {
        return;
    };
    let filler = fs.0.join("filler");
    journal_fault_while_draining(
        &env,
        &fs.0.join("journal.db"),
        || {
            use std::io::Write;
            let mut f = std::fs::File::create(&filler).unwrap();
            let chunk = vec![0u8; 64 * 1024];
            while f.write_all(&chunk).is_ok() {}
        },
        || std::fs::remove_file(&filler).unwrap(),
    )
    .await;
}

/// Item 8: the journal's files are made immutable mid-run (`chattr +i`):
/// exit 8 with a message, not a SIGBUS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immutable_journal_stops_the_run_with_a_message_not_sigbus() {
    let env = Env::start(2).await;
    // chattr needs a file system with inode flags: the target dir's (ext4
    // here), not a tmpfs /tmp
    let dir = tempfile::Builder::new()
        .prefix("immutable-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let journal = dir.path().join("journal.db");
    let files = |flag: &str| {
        for suffix in ["", "-wal", "-shm"] {
            let p = format!("{}{suffix}", journal.display());
            let ok = std::process::Command::new("chattr")
                .args([flag, &p])
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "chattr {flag} {p} (needs root and ext4-like inode flags)"
            );
        }
    };
    journal_fault_while_draining(&env, &journal, || files("+i"), || files("-i")).await;
}

/// Item 3/7: a FIFO where a migration (or any gate input) is expected is
/// refused at once, named, and the other files are still linted.
#[test]
fn lint_refuses_a_fifo_migration_without_hanging() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mig");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("001_ok.sql"), "ALTER TABLE t DROP COLUMN c;\n").unwrap();
    let fifo = dir.join("002_pipe.sql");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let out = output_within(
        &["lint", dir.to_str().unwrap()],
        Duration::from_secs(20),
        "a FIFO",
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("002_pipe.sql") && text.contains("not a regular file"),
        "{text}"
    );
    assert!(
        text.contains("001_ok.sql"),
        "the other file is linted: {text}"
    );
}
