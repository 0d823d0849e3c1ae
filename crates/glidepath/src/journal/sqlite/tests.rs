//! The SQLite journal's own tests: bounded events, fencing, concurrent opens.

use super::*;
use crate::journal::{bounded, RunStatus, Store, MAX_EVENT, MAX_TEXT};
use glidepath_core::{Step, StepKind, StepOutcome};

fn run_r1() -> RunRecord {
    RunRecord {
        id: "r1".into(),
        fleet: "f".into(),
        plan_path: "p".into(),
        plan_hash: "h".into(),
        plan_source: String::new(),
        version: "2".into(),
        status: RunStatus::Running,
        reason: String::new(),
        created_at: 1,
        updated_at: 1,
    }
}

fn failed(detail: String) -> Event {
    Event::Outcome {
        at: 1,
        step: Step {
            kind: StepKind::CheckHealth,
            node: Some("n1".into()),
            version: Some("2".into()),
            reason: "probe".into(),
            task: None,
        },
        outcome: StepOutcome {
            ok: false,
            detail,
            ..Default::default()
        },
    }
}

#[test]
fn a_huge_answer_is_journaled_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(&dir.path().join("j.db")).unwrap();
    j.create_run(&run_r1()).unwrap();
    let ev = bounded(failed("x".repeat(20 << 20)));
    j.append("r1", &ev).unwrap();
    let size: i64 = j
        .conn
        .query_row("SELECT length(data) FROM events", [], |r| r.get(0))
        .unwrap();
    assert!(size < MAX_EVENT as i64, "{size} bytes journaled");
    let back = j.events("r1").unwrap();
    let Event::Outcome { outcome, .. } = &back[0] else {
        panic!("{back:?}")
    };
    assert!(outcome.detail.ends_with("more bytes not journaled]"));
    assert_eq!(back[0], ev, "what is applied is what is journaled");
    // a small event is untouched
    let small = failed("fine".into());
    assert_eq!(bounded(small.clone()), small);
    // the run's reason is bounded too
    j.set_status("r1", RunStatus::RollbackFailed, &"y".repeat(1 << 20))
        .unwrap();
    assert!(j.run("r1").unwrap().reason.len() < 2 * MAX_TEXT);
}

#[test]
fn a_takeover_fences_the_old_handle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let mut a = Journal::open(&path).unwrap();
    let mut b = Journal::open(&path).unwrap();
    {
        a.create_run(&run_r1()).unwrap();
    }
    a.acquire_lease("f", "r1", false).unwrap();
    a.append("r1", &failed("a1".into())).unwrap();
    // same pid here, so `mine` lets b take it: a new epoch all the same
    b.acquire_lease("f", "r1", true).unwrap();
    assert!(b.epoch() > a.epoch());
    let e = a.append("r1", &failed("a2".into())).unwrap_err();
    assert!(matches!(e, JournalError::Fenced { .. }), "{e}");
    assert!(matches!(
        a.heartbeat("f", "r1").unwrap_err(),
        JournalError::Fenced { .. }
    ));
    assert!(matches!(
        a.set_status("r1", RunStatus::Succeeded, "").unwrap_err(),
        JournalError::Fenced { .. }
    ));
    assert!(a.release_lease("f", "r1").is_err(), "cannot drop b's lease");
    b.append("r1", &failed("b1".into())).unwrap();
    assert_eq!(b.events("r1").unwrap().len(), 2);
    assert_eq!(b.run("r1").unwrap().status, "running");
}

#[test]
fn many_processes_may_open_a_fresh_journal_at_once() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || Journal::open(&p).map(|_| ()))
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
    }
}
