//! The safety promise at its edges: signals from the first instant, no gate
//! skipped on resume, fenced leases, journal faults, operator commands that
//! only act on what waits now, and output into closed pipes.

use crate::harness::*;
use glidepath::demo::DemoPlan;
use glidepath_core::{Event, StepKind};
use std::time::{Duration, Instant};

fn knobs() -> DemoPlan {
    DemoPlan {
        window: "2s".into(),
        probe_interval: "500ms".into(),
        batch_size: "2".into(),
        min_samples: 5,
        health_deadline: "10s".into(),
        ..Default::default()
    }
}

fn append(plan: &std::path::Path, text: &str) {
    let src = std::fs::read_to_string(plan).unwrap() + text;
    std::fs::write(plan, src).unwrap();
}

/// Wait for a child to exit, or panic at the deadline.
async fn wait_exit(child: &mut std::process::Child, timeout: Duration) -> std::process::ExitStatus {
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

fn signal(child: &std::process::Child, sig: i32) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// Item 1: SIGTERM while a gate runs ends the run as aborted (exit 5),
/// releases the lease and changes nothing; the next run is not locked out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_preflight_aborts_and_releases_the_lease() {
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
    signal(&child, libc::SIGTERM);
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
    let j = env.journal();
    signal(&child, libc::SIGTERM);
    wait_until("the abort to be journaled", Duration::from_secs(20), || {
        latest_events(&j)
            .iter()
            .any(|e| matches!(e, Event::AbortRequested { .. }))
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
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("stopped immediately"), "{err}");
    assert!(err.contains("glidepath resume r"), "names the run: {err}");
    // our own leftover: the hanging restart command
    if let Ok(pid) = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse::<i32>()
    {
        // SAFETY: the sleep this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    // the journal is intact: resume finishes the abort
    let run = env.latest_run();
    let events = env.events(&run);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Intent { step, .. } if step.kind == StepKind::Restart)));
}
