//! The PostgreSQL store against a real server (Debian's packages; under
//! `CI=true` a missing one fails, as everywhere).

use super::*;
use crate::demo::infra::Postgres;
use glidepath_core::Event;

fn server() -> (tempfile::TempDir, Postgres) {
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start(dir.path()).expect("PostgreSQL starts (apt-get install postgresql)");
    (dir, pg)
}

fn open(pg: &Postgres, db: &str) -> PgJournal {
    let _ = pg.psql("postgres", &format!("CREATE DATABASE {db}"));
    PgJournal::open(&Target::parse(&pg.url(db)).unwrap()).unwrap()
}

fn run(id: &str, fleet: &str) -> RunRecord {
    RunRecord {
        id: id.into(),
        fleet: fleet.into(),
        plan_path: "/p/plan.toml".into(),
        plan_hash: "h".into(),
        plan_source: "[release]".into(),
        version: "2.0.0".into(),
        status: RunStatus::Running,
        reason: String::new(),
        created_at: now_ms(),
        updated_at: now_ms(),
    }
}

fn ev(i: u64) -> Event {
    Event::Promoted {
        at: i,
        reason: format!("event {i}"),
    }
}

#[test]
fn urls_parse_and_never_show_a_password() {
    let t = Target::parse("postgres://ops:s3cret@db.example:6432/glide").unwrap();
    assert_eq!(t.redacted(), "postgres://ops@db.example:6432/glide");
    assert!(!format!("{t:?}").contains("s3cret"));
    let bad = Target::parse("postgres://ops:s3cret@/")
        .unwrap_err()
        .to_string();
    assert!(!bad.contains("s3cret"), "{bad}");
    let tls = Target::parse("postgres://ops@db/glide?sslmode=require")
        .unwrap_err()
        .to_string();
    assert!(tls.contains("sslmode"), "{tls}");
    assert_eq!(
        redact_text("postgresql://u:pw@h/d"),
        "postgresql://u:***@h/d"
    );
    assert!(matches!(
        Location::parse("postgresql://u@h/d").unwrap(),
        Location::Postgres(_)
    ));
    assert!(matches!(
        Location::parse("j.db").unwrap(),
        Location::Sqlite(_)
    ));
}

#[test]
fn an_unreachable_server_is_an_infrastructure_fault_at_once() {
    let port = crate::demo::infra::free_port();
    let t = Target::parse(&format!("postgres://postgres@127.0.0.1:{port}/x")).unwrap();
    let started = std::time::Instant::now();
    let e = PgJournal::open(&t).err().expect("nothing listens there");
    assert!(matches!(e, JournalError::Unavailable { .. }), "{e}");
    assert!(
        started.elapsed() < CONNECT_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn the_store_round_trips_and_fences_a_stale_holder() {
    let (_dir, pg) = server();
    let mut a = open(&pg, "j1");
    // schema created once, version recorded; a second open is a no-op
    let mut b = open(&pg, "j1");
    assert_eq!(
        pg.psql(
            "j1",
            "SELECT value FROM glidepath.meta WHERE key = 'schema_version'"
        )
        .unwrap(),
        SCHEMA_VERSION.to_string()
    );

    a.create_run(&run("r1", "web")).unwrap();
    a.create_run(&run("r1", "web")).unwrap(); // a retry is harmless
    a.acquire_lease("web", "r1", false).unwrap();
    assert_eq!(a.epoch(), Some(1));
    for i in 1..=3 {
        assert_eq!(a.append("r1", &ev(i)).unwrap(), i as i64);
    }
    a.set_status("r1", RunStatus::Paused, "why").unwrap();
    a.heartbeat("web", "r1").unwrap();
    assert_eq!(b.run("r1").unwrap().status, RunStatus::Paused);
    assert_eq!(b.events_since("r1", 1).unwrap().len(), 2);
    assert_eq!(b.runs(10).unwrap().len(), 1);

    // a live holder (on another host: in this process, `b` would be `a`)
    // keeps the fleet
    pg.psql(
        "j1",
        "UPDATE glidepath.leases SET host = 'host-a', token = 'pid:[1]/other'",
    )
    .unwrap();
    b.create_run(&run("r2", "web")).unwrap();
    let e = b.acquire_lease("web", "r2", true).unwrap_err();
    assert!(
        matches!(
            e,
            JournalError::Locked {
                holder_dead: false,
                ..
            }
        ),
        "{e}"
    );

    // the holder stops answering past the TTL: b takes the run over
    pg.psql(
        "j1",
        "UPDATE glidepath.leases SET heartbeat = heartbeat - 3600000",
    )
    .unwrap();
    let l = b.lease("web").unwrap().unwrap();
    assert!(l.holder_dead(now_ms()), "{l:?}");
    b.acquire_lease("web", "r1", true).unwrap();
    assert_eq!(b.epoch(), Some(2));

    // every write of the stale holder fails and changes nothing
    let before = pg
        .psql("j1", "SELECT count(*) FROM glidepath.events")
        .unwrap();
    let e = a.append("r1", &ev(9)).unwrap_err();
    assert!(
        matches!(&e, JournalError::Fenced { epoch: 1, taken_by: Some(t), .. } if t.contains("epoch 2")),
        "{e}"
    );
    assert!(matches!(
        a.set_status("r1", RunStatus::Succeeded, "").unwrap_err(),
        JournalError::Fenced { .. }
    ));
    assert!(matches!(
        a.heartbeat("web", "r1").unwrap_err(),
        JournalError::Fenced { .. }
    ));
    assert!(matches!(
        a.release_lease("web", "r1").unwrap_err(),
        JournalError::Fenced { .. }
    ));
    assert_eq!(
        pg.psql("j1", "SELECT count(*) FROM glidepath.events")
            .unwrap(),
        before
    );
    assert_eq!(b.run("r1").unwrap().status, RunStatus::Paused);
    assert_eq!(b.lease("web").unwrap().unwrap().epoch, 2);

    // the new holder goes on from the journal's sequence
    assert_eq!(b.append("r1", &ev(4)).unwrap(), 4);
    b.release_lease("web", "r1").unwrap();
    assert!(b.lease("web").unwrap().is_none());
    // the epoch only grows, across releases
    b.acquire_lease("web", "r2", false).unwrap();
    assert_eq!(b.epoch(), Some(3));
}

#[test]
fn an_append_retried_after_a_lost_answer_is_written_once() {
    let (_dir, pg) = server();
    let mut a = open(&pg, "j2");
    a.create_run(&run("r1", "web")).unwrap();
    a.acquire_lease("web", "r1", false).unwrap();
    assert_eq!(a.append("r1", &ev(1)).unwrap(), 1);
    // the answer of the second append is lost: the caller retries it
    assert_eq!(a.append("r1", &ev(2)).unwrap(), 2);
    a.next_seq.insert("r1".into(), 2);
    assert_eq!(a.append("r1", &ev(2)).unwrap(), 2);
    assert_eq!(a.events("r1").unwrap().len(), 2);
    // a different event at a taken number is an error, never a silent overwrite
    a.next_seq.insert("r1".into(), 2);
    assert!(matches!(
        a.append("r1", &ev(3)).unwrap_err(),
        JournalError::Database { .. }
    ));
    assert_eq!(a.append("r1", &ev(3)).unwrap(), 3);
}

#[test]
fn commands_wake_the_holder_and_acknowledgements_the_sender() {
    let (_dir, pg) = server();
    let mut holder = open(&pg, "j3");
    let sender = open(&pg, "j3");
    holder.create_run(&run("r1", "web")).unwrap();
    holder.acquire_lease("web", "r1", false).unwrap();
    let wake = holder.changes().expect("PostgreSQL notifies");
    let acks = sender.changes().expect("PostgreSQL notifies");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // drain the permit the listener leaves when it starts
        let _ = tokio::time::timeout(Duration::from_millis(50), wake.notified()).await;
        let _ = tokio::time::timeout(Duration::from_millis(50), acks.notified()).await;
        let started = std::time::Instant::now();
        let id = sender
            .push_command("r1", CommandKind::Abort, "stop")
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), wake.notified())
            .await
            .expect("the holder is woken by NOTIFY");
        let woke = started.elapsed();
        let pending = holder.pending_commands("r1").unwrap();
        assert_eq!(pending.len(), 1);
        holder.refuse_command(id, "not now").unwrap();
        tokio::time::timeout(Duration::from_secs(5), acks.notified())
            .await
            .expect("the sender is woken by the acknowledgement");
        assert_eq!(
            sender.command_outcome(id).unwrap().as_deref(),
            Some("not now")
        );
        assert!(woke < Duration::from_secs(5));
    });
}

#[test]
fn a_restarted_server_is_unreachable_then_answers_again() {
    let (_dir, pg) = server();
    let mut a = open(&pg, "j4");
    a.create_run(&run("r1", "web")).unwrap();
    a.acquire_lease("web", "r1", false).unwrap();
    a.append("r1", &ev(1)).unwrap();
    pg.stop_fast().unwrap();
    let e = a.append("r1", &ev(2)).unwrap_err();
    assert!(matches!(e, JournalError::Unavailable { .. }), "{e}");
    pg.start_again().unwrap();
    // the same call again: written once, at the next number
    assert_eq!(a.append("r1", &ev(2)).unwrap(), 2);
    assert_eq!(a.events("r1").unwrap().len(), 2);
}

#[test]
fn a_newer_schema_is_refused() {
    let (_dir, pg) = server();
    drop(open(&pg, "j5"));
    pg.psql(
        "j5",
        "UPDATE glidepath.meta SET value = '99' WHERE key = 'schema_version'",
    )
    .unwrap();
    let e = PgJournal::open(&Target::parse(&pg.url("j5")).unwrap())
        .err()
        .unwrap();
    assert!(
        matches!(
            e,
            JournalError::NewerSchema {
                found: 99,
                known: SCHEMA_VERSION,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn a_url_is_shown_without_its_password_wherever_it_is() {
    for (given, shown) in [
        ("postgresql://u:pw@h/d", "postgresql://u:***@h/d"),
        ("postgres://u:p@w?x/y@h:1/d", "postgres://u:***@h:1/d"),
        (
            "postgres://u@h/d?sslmode=require&password=pw",
            "postgres://u@h/d?sslmode=require&password=***",
        ),
        ("postgres://h/d", "postgres://h/d"),
        ("j.db", "j.db"),
    ] {
        assert_eq!(redact_text(given), shown, "{given}");
    }
    let bad = Target::parse("postgres://u@h/d?password=s3cret&sslmode=require")
        .unwrap_err()
        .to_string();
    assert!(bad.contains("sslmode") && !bad.contains("s3cret"), "{bad}");
}
