//! The SQLite journal's own tests: bounded events, fencing, concurrent opens.

use super::*;
use crate::journal::{
    bounded, dump, CampaignStatus, RunStatus, StageAction, StageRecord, StageStatus, Store,
    MAX_EVENT, MAX_TEXT,
};
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

fn campaign_c1(pid: u32) -> CampaignRecord {
    let stage = |index: usize, action: StageAction| StageRecord {
        index,
        action,
        why: "because".into(),
        status: StageStatus::Pending,
        run_id: None,
        detail: String::new(),
        updated_at: 1,
    };
    CampaignRecord {
        id: "c1".into(),
        system_path: "/s/system.toml".into(),
        system_source: "[[component]]\n".into(),
        to: vec!["server=2".into()],
        enable: vec!["streaming".into()],
        status: CampaignStatus::Running,
        reason: String::new(),
        pid,
        host: hostname(),
        created_at: 1,
        updated_at: 1,
        stages: vec![
            stage(
                0,
                StageAction::Upgrade {
                    component: "server".into(),
                    from: vec!["1".into()],
                    to: "2".into(),
                    rollout_plan: "/s/plan.toml".into(),
                    artifact: "/s/dist/2".into(),
                    sha256: "ab".repeat(32),
                },
            ),
            stage(
                1,
                StageAction::EnableFlag {
                    flag: "streaming".into(),
                    command: "true".into(),
                    timeout_ms: 1000,
                    dir: "/s".into(),
                },
            ),
        ],
    }
}

#[test]
fn a_campaign_and_its_stages_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(&dir.path().join("j.db")).unwrap();
    let c = campaign_c1(std::process::id());
    j.create_campaign(&c).unwrap();
    assert_eq!(j.campaign("c1").unwrap(), c);
    assert!(matches!(
        j.campaign("c2").unwrap_err(),
        JournalError::NoSuchCampaign(_)
    ));
    // a stage's run is found from the run
    j.set_stage("c1", 0, StageStatus::Running, Some("r1"), "")
        .unwrap();
    j.set_stage("c1", 0, StageStatus::Succeeded, None, "run r1 succeeded")
        .unwrap();
    let back = j.campaign_of_run("r1").unwrap().unwrap();
    assert_eq!(back.stages[0].status, StageStatus::Succeeded);
    assert_eq!(back.stages[0].run_id.as_deref(), Some("r1"), "kept");
    assert_eq!(back.stages[0].detail, "run r1 succeeded");
    assert_eq!(back.current().unwrap().index, 1);
    assert!(j.campaign_of_run("r9").unwrap().is_none());
    j.set_campaign_status("c1", CampaignStatus::Failed, "stage 2 failed")
        .unwrap();
    let back = j.campaign("c1").unwrap();
    assert_eq!(back.status, CampaignStatus::Failed);
    assert_eq!(back.reason, "stage 2 failed");
}

#[test]
fn a_campaign_held_by_a_live_process_is_not_claimed() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(&dir.path().join("j.db")).unwrap();
    // running under another live process of this host (our parent)
    let parent = std::os::unix::process::parent_id();
    j.create_campaign(&campaign_c1(parent)).unwrap();
    let e = j.claim_campaign("c1").unwrap_err();
    assert!(
        matches!(e, JournalError::CampaignHeld { pid, .. } if pid == parent),
        "{e}"
    );
    // stopped: anyone may continue it, and it is then ours
    j.set_campaign_status("c1", CampaignStatus::Stopped, "aborted")
        .unwrap();
    j.claim_campaign("c1").unwrap();
    let c = j.campaign("c1").unwrap();
    assert_eq!(
        (c.status, c.pid),
        (CampaignStatus::Running, std::process::id())
    );
    assert_eq!(c.reason, "");
    // a dead holder's campaign is claimed
    j.conn
        .execute("UPDATE campaigns SET pid = 999999999", [])
        .unwrap();
    j.claim_campaign("c1").unwrap();
}

#[test]
fn a_journal_written_before_campaigns_gains_their_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        // the first schema: runs and events, commands without `outcome`,
        // leases without `epoch`, no campaigns
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE runs (id TEXT PRIMARY KEY, fleet TEXT NOT NULL, plan_path TEXT NOT NULL,
                plan_hash TEXT NOT NULL, plan_source TEXT NOT NULL, version TEXT NOT NULL,
                status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL);
             CREATE TABLE events (run_id TEXT NOT NULL, seq INTEGER NOT NULL, at INTEGER NOT NULL,
                kind TEXT NOT NULL, node TEXT, step TEXT, data TEXT NOT NULL, PRIMARY KEY (run_id, seq));
             CREATE TABLE leases (fleet TEXT PRIMARY KEY, run_id TEXT NOT NULL, pid INTEGER NOT NULL,
                host TEXT NOT NULL, since INTEGER NOT NULL, heartbeat INTEGER NOT NULL);
             CREATE TABLE commands (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL,
                kind TEXT NOT NULL, reason TEXT NOT NULL, at INTEGER NOT NULL, consumed_at INTEGER);
             INSERT INTO runs VALUES ('r0', 'f', 'p', 'h', '', '1', 'succeeded', '', 1, 1);",
        )
        .unwrap();
    }
    let j = Journal::open(&path).unwrap();
    assert_eq!(j.run("r0").unwrap().status, RunStatus::Succeeded);
    assert!(j.campaign_of_run("r0").unwrap().is_none());
    j.create_campaign(&campaign_c1(std::process::id())).unwrap();
    assert_eq!(j.campaign("c1").unwrap().stages.len(), 2);
}

#[test]
fn the_schema_version_is_recorded_and_a_newer_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    {
        let j = Journal::open(&path).unwrap();
        assert_eq!(
            SqliteJournal::schema_version(&j.conn).unwrap(),
            SCHEMA_VERSION
        );
        assert_eq!(j.info().unwrap().schema_version, 1);
        j.create_run(&run_r1()).unwrap();
    }
    // a journal from before versioning (user_version 0) is upgraded to 1
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 0)
        .unwrap();
    let j = Journal::open(&path).unwrap();
    assert_eq!(SqliteJournal::schema_version(&j.conn).unwrap(), 1);
    drop(j);
    // written by a newer glidepath: refused, and left as it is
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let e = Journal::open(&path).err().expect("refused");
    assert!(
        matches!(
            e,
            JournalError::NewerSchema {
                found: 2,
                known: 1,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("schema version 2"), "{e}");
    let v: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 2, "not rewritten");
}

#[test]
fn a_run_and_a_campaign_move_between_journals_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Journal::open(&dir.path().join("a.db")).unwrap();
    a.create_run(&run_r1()).unwrap();
    a.append("r1", &failed("one".into())).unwrap();
    a.append("r1", &failed("two".into())).unwrap();
    let c = a
        .push_command("r1", crate::journal::CommandKind::Abort, "stop")
        .unwrap();
    a.refuse_command(c, "too late").unwrap();
    a.push_command("r1", crate::journal::CommandKind::Promote, "go")
        .unwrap();
    a.set_status("r1", RunStatus::Paused, "waiting").unwrap();
    a.create_campaign(&campaign_c1(std::process::id())).unwrap();
    // an event's text as stored is kept, even where serde would write it
    // otherwise (here: spaces)
    a.conn
        .execute(
            "UPDATE events SET data = replace(data, ',', ', ') WHERE seq = 2",
            [],
        )
        .unwrap();
    let run = a.export_run("r1").unwrap();
    assert!(run.events[1].data.contains(", "));
    assert_eq!(run.commands.len(), 2);
    assert_eq!(run.commands[0].outcome.as_deref(), Some("too late"));
    assert_eq!(run.commands[1].consumed_at, None);
    assert_eq!(a.campaign_ids().unwrap(), ["c1"]);
    let camp = a.export_campaign("c1").unwrap();

    let mut b = Journal::open(&dir.path().join("b.db")).unwrap();
    assert_eq!(b.import_run(&run).unwrap(), dump::Imported::Added);
    assert_eq!(b.import_campaign(&camp).unwrap(), dump::Imported::Added);
    assert_eq!(b.export_run("r1").unwrap(), run);
    assert_eq!(b.export_campaign("c1").unwrap(), camp);
    assert_eq!(
        b.run("r1").unwrap().updated_at,
        a.run("r1").unwrap().updated_at
    );
    assert_eq!(b.events("r1").unwrap(), a.events("r1").unwrap());
    assert_eq!(b.pending_commands("r1").unwrap().len(), 1);
    // again: skipped
    assert_eq!(b.import_run(&run).unwrap(), dump::Imported::Skipped);
    assert_eq!(b.import_campaign(&camp).unwrap(), dump::Imported::Skipped);
    // another run under the same id: refused, nothing of it written
    let mut other = run.clone();
    other.events.pop();
    other.status = RunStatus::Succeeded;
    let e = b.import_run(&other).unwrap_err();
    assert!(
        matches!(&e, JournalError::ImportConflict { id, .. } if id == "r1"),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("status") && msg.contains("2 events here, 1 in the dump"),
        "{msg}"
    );
    assert_eq!(b.export_run("r1").unwrap(), run);
    let mut camp2 = camp.clone();
    camp2.stages[1].status = StageStatus::Succeeded;
    let e = b.import_campaign(&camp2).unwrap_err();
    assert!(e.to_string().contains("stage 2 differs"), "{e}");
}

#[test]
fn an_import_that_fails_midway_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Journal::open(&dir.path().join("a.db")).unwrap();
    a.create_run(&run_r1()).unwrap();
    a.append("r1", &failed("one".into())).unwrap();
    let mut run = a.export_run("r1").unwrap();
    // two rows with one sequence number: the second insert fails
    run.events.push(run.events[0].clone());
    let mut b = Journal::open(&dir.path().join("b.db")).unwrap();
    assert!(b.import_run(&run).is_err());
    assert!(matches!(
        b.run("r1").unwrap_err(),
        JournalError::NoSuchRun(_)
    ));
    assert!(b.events("r1").unwrap().is_empty());
}
