//! Team mode: several glidepath processes (distinct simulated hosts,
//! `GLIDEPATH_HOST`) sharing one PostgreSQL journal, against a real server
//! started in the test's directory (under `CI=true` a missing one fails).
//! Who holds a fleet, a stopped holder taken over and fenced, and the
//! server going away under a run.

use crate::harness::*;
use glidepath::demo::DemoPlan;
use glidepath::journal::RunStatus;
use glidepath_core::{Event, StepKind};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A glidepath in the background whose output is collected as it comes
/// (to wait on what it says), and echoed to the test's log.
struct Streamed {
    child: Running,
    out: Arc<Mutex<String>>,
    /// The pipe readers: they end at the pipes' end of file.
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Streamed {
    fn spawn(mut cmd: Command) -> Streamed {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn glidepath");
        let out = Arc::new(Mutex::new(String::new()));
        let pid = child.id();
        let pipes: Vec<Box<dyn std::io::Read + Send>> = vec![
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        let mut readers = Vec::new();
        for pipe in pipes {
            let out = out.clone();
            readers.push(std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("[glidepath {pid}] {line}");
                    let mut o = out.lock().unwrap();
                    o.push_str(&line);
                    o.push('\n');
                }
            }));
        }
        Streamed {
            child: Running::from(child),
            out,
            readers,
        }
    }

    fn text(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// Wait until it said `what`.
    async fn wait_for_text(&self, what: &str, timeout: Duration) {
        wait_until(&format!("glidepath to say {what:?}"), timeout, || {
            self.out.lock().unwrap().contains(what)
        })
        .await;
    }

    /// Wait for its exit (or kill it and fail at the deadline).
    async fn exit(&mut self, timeout: Duration) -> i32 {
        let status = wait_exit(&mut self.child, timeout).await;
        // the readers end at the pipes' end of file (bounded, should a
        // grandchild still hold a pipe)
        for r in self.readers.drain(..) {
            let joined = tokio::task::spawn_blocking(move || r.join());
            let _ = tokio::time::timeout(Duration::from_secs(10), joined).await;
        }
        status.code().unwrap_or(-1)
    }
}

/// `glidepath ARGS` as host `host` (with the env's journal).
fn as_host(env: &Env, host: &str, args: &[&str]) -> Command {
    let mut c = env.cmd(args);
    c.env("GLIDEPATH_HOST", host);
    c
}

/// The demo fleet's lease row: (run, host, epoch, heartbeat age in ms by
/// the server's clock); run and host empty when nobody holds it.
fn lease_row(pg: &PgJournalDb) -> (String, String, i64, i64) {
    let row = pg.psql(
        "SELECT coalesce(run_id, ''), host, epoch,
                (extract(epoch from clock_timestamp()) * 1000)::bigint - heartbeat
         FROM glidepath.leases WHERE fleet = 'demo'",
    );
    let f: Vec<&str> = row.split('|').collect();
    if f.len() != 4 {
        return (String::new(), String::new(), 0, 0);
    }
    (
        f[0].to_string(),
        f[1].to_string(),
        f[2].parse().unwrap(),
        f[3].parse().unwrap(),
    )
}

fn event_rows(pg: &PgJournalDb, run: &str) -> usize {
    pg.psql(&format!(
        "SELECT count(*) FROM glidepath.events WHERE run_id = '{run}'"
    ))
    .parse()
    .unwrap()
}

/// The run's event rows are numbered 1..N without a gap, and no event was
/// written twice (a retried append would repeat its text, timestamps and all).
fn assert_rows_gapless_and_single(pg: &PgJournalDb, run: &str, n: usize) {
    assert_eq!(
        pg.psql(&format!(
            "SELECT count(*), min(seq), max(seq) FROM glidepath.events WHERE run_id = '{run}'"
        )),
        format!("{n}|1|{n}"),
        "event rows numbered 1..{n}"
    );
    assert_eq!(
        pg.psql(&format!(
            "SELECT count(*) FROM (SELECT data FROM glidepath.events WHERE run_id = '{run}'
             GROUP BY data HAVING count(*) > 1) d"
        )),
        "0",
        "an event journaled twice"
    );
}

/// Every change to a node (drain, stage, switch, restart, enable,
/// post-check) was journaled exactly once per node and release: no step
/// repeated by two holders.
fn assert_node_steps_once(events: &[Event], nodes: &[&str]) {
    use std::collections::BTreeMap;
    let mut seen: BTreeMap<(String, String, Option<String>), usize> = BTreeMap::new();
    for e in events {
        if let Event::Outcome { step, .. } = e {
            if matches!(
                step.kind,
                StepKind::Drain
                    | StepKind::Stage
                    | StepKind::Switch
                    | StepKind::Restart
                    | StepKind::Enable
                    | StepKind::PostCheck
            ) {
                let node = step.node.clone().unwrap_or_default();
                *seen
                    .entry((node, step.kind.as_str().to_string(), step.version.clone()))
                    .or_default() += 1;
            }
        }
    }
    for ((node, kind, version), n) in &seen {
        assert_eq!(*n, 1, "{kind} of {node} ({version:?}) journaled {n} times");
    }
    for node in nodes {
        for kind in ["drain", "switch", "restart", "enable", "post_check"] {
            assert!(
                seen.keys().any(|(n, k, _)| n == node && k == kind),
                "no {kind} of {node} in the journal: {seen:?}"
            );
        }
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Two processes on two hosts race `run` of one fleet, 20 times: exactly
/// one holds it each time, and the other exits 6 naming the holder (its run
/// and host) while the holder still runs (it waits at a pause point until a
/// third host aborts it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_race_run_on_one_fleet_and_exactly_one_holds_it() {
    if !postgres_available() {
        return;
    }
    let env = Env::start_on(2, Backend::Postgres).await;
    let plan = env.plan(&env.v2, &DemoPlan::quick("2s", 3).paused_after_canary());
    let plan = plan.to_str().unwrap();
    let pg = env.pg();
    const TRIALS: usize = 20;
    let mut wins = std::collections::BTreeMap::<String, usize>::new();
    let mut refused_after = Vec::new();
    let mut trial_times = Vec::new();
    for trial in 1..=TRIALS {
        let t0 = Instant::now();
        let logs: Vec<_> = ["host-a", "host-b"]
            .iter()
            .map(|h| env.path().join(format!("race-{trial}-{h}.log")))
            .collect();
        // output to files: nobody reads the holder's pipe while it runs
        let spawn = |host: &str, log: &std::path::Path| {
            let f = std::fs::File::create(log).unwrap();
            Running::from(
                as_host(&env, host, &["run", plan])
                    .stdout(Stdio::from(f.try_clone().unwrap()))
                    .stderr(Stdio::from(f))
                    .spawn()
                    .expect("spawn glidepath"),
            )
        };
        let mut racers = [spawn("host-a", &logs[0]), spawn("host-b", &logs[1])];
        // the first to end is the one refused; the holder waits for a person
        let deadline = Instant::now() + Duration::from_secs(60);
        let (loser, code) = loop {
            let mut ended = None;
            for (i, r) in racers.iter_mut().enumerate() {
                if let Some(s) = r.try_wait().unwrap() {
                    ended = Some((i, s.code().unwrap_or(-1)));
                    break;
                }
            }
            if let Some(e) = ended {
                break e;
            }
            assert!(
                Instant::now() < deadline,
                "trial {trial}: neither racer ended within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        refused_after.push(t0.elapsed());
        let winner = 1 - loser;
        let (win_host, lose_host) = (["host-a", "host-b"][winner], ["host-a", "host-b"][loser]);
        let said = std::fs::read_to_string(&logs[loser]).unwrap();
        assert_eq!(code, 6, "trial {trial}: {lose_host} exits 6: {said}");
        assert!(
            racers[winner].try_wait().unwrap().is_none(),
            "trial {trial}: {win_host} still holds the fleet when {lose_host} is refused"
        );
        let (holder_run, holder_host, _, _) = lease_row(pg);
        assert_eq!(holder_host, win_host, "trial {trial}: the lease row");
        assert!(
            said.contains(&format!("locked by run {holder_run}"))
                && said.contains(&format!("on {win_host}")),
            "trial {trial}: {lose_host} names the holder (run {holder_run} on {win_host}): {said}"
        );
        // and says when a silent holder could be taken over (its 30 s TTL)
        assert!(
            said.contains("its last heartbeat was") && said.contains("once that passes 30s"),
            "trial {trial}: {said}"
        );
        *wins.entry(win_host.to_string()).or_default() += 1;
        // the holder's run goes on alone; a third host ends it at its pause
        let j = env.journal();
        wait_until(
            &format!("trial {trial}: the holder's run to pause"),
            Duration::from_secs(60),
            || j.run(&holder_run).unwrap().status == RunStatus::Paused,
        )
        .await;
        let before_abort = lease_row(pg);
        let abort = as_host(
            &env,
            "host-c",
            &["abort", &holder_run, "--reason", "race trial over"],
        )
        .output()
        .unwrap();
        assert_eq!(
            code_of(&abort),
            0,
            "trial {trial}: abort from host-c: {}{}\nthe lease before: {before_abort:?}\nthe holder said: {}",
            stdout(&abort),
            stderr(&abort),
            std::fs::read_to_string(&logs[winner]).unwrap()
        );
        assert!(
            stdout(&abort).contains(&format!(
                "(pid {} on {win_host}); waiting for it to act",
                racers[winner].id()
            )) && stdout(&abort).contains("acknowledged: the run journaled the abort"),
            "trial {trial}: the holder on {win_host} acknowledges the abort: {}",
            stdout(&abort)
        );
        let status = wait_exit(&mut racers[winner], Duration::from_secs(60)).await;
        assert_eq!(
            status.code(),
            Some(5),
            "trial {trial}: the holder ends aborted: {}",
            std::fs::read_to_string(&logs[winner]).unwrap()
        );
        assert_eq!(
            lease_row(pg).0,
            "",
            "trial {trial}: the lease is free again"
        );
        trial_times.push(t0.elapsed());
    }
    // every run of the journal: one aborted holder and one refused per trial
    let runs = env.journal().runs(1000).unwrap();
    let count = |s: RunStatus| runs.iter().filter(|r| r.status == s).count();
    assert_eq!(runs.len(), 2 * TRIALS);
    assert_eq!(count(RunStatus::Aborted), TRIALS);
    assert_eq!(count(RunStatus::Refused), TRIALS);
    env.assert_fleet(&["2", "1"]).await;
    println!(
        "race figures: {TRIALS} trials, wins {wins:?}; the loser refused after median {:?} (max {:?}); a trial took median {:?}",
        median(&mut refused_after.clone()),
        refused_after.iter().max().unwrap(),
        median(&mut trial_times.clone()),
    );
}

fn code_of(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// The TTL of the stale-holder test.
const TTL: Duration = Duration::from_secs(3);

/// `run` on host-a (declaring `ttl`), waited for until the canary is in
/// rotation again and its window runs: from there on, only probes (reads)
/// are in flight. The process and its run id.
async fn holder_past_the_canary(env: &Env, ttl: &str) -> (Streamed, String) {
    let plan = env.plan(&env.v2, &DemoPlan::quick("4s", 5));
    let first = Streamed::spawn({
        let mut c = as_host(env, "host-a", &["run", plan.to_str().unwrap()]);
        c.env("GLIDEPATH_LEASE_TTL", ttl);
        c
    });
    env.wait_event(
        "the canary's post-check",
        Duration::from_secs(60),
        |e| matches!(e, Event::Outcome { step, outcome, .. } if step.kind == StepKind::PostCheck && step.node.as_deref() == Some("node-1") && outcome.ok),
    )
    .await;
    (first, env.latest_run())
}

/// A holder stopped (SIGSTOP) mid-rollout past the TTL is taken over by
/// `resume` on another host, which finishes the run; woken (SIGCONT), the
/// first process writes nothing and stops itself with exit 6 within about a
/// heartbeat. Every node step is journaled once and the fleet ends on the
/// new release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_holder_is_taken_over_after_the_ttl_and_fenced() {
    if !postgres_available() {
        return;
    }
    let env = Env::start_on(4, Backend::Postgres).await;
    let ttl = "3s";
    let (mut first, run) = holder_past_the_canary(&env, ttl).await;
    let pg = env.pg();
    let (_, _, epoch_a, _) = lease_row(pg);
    signal(&first.child, libc::SIGSTOP);
    let stopped = Instant::now();
    // how old its last heartbeat was when it stopped
    let beat_age = Duration::from_millis(lease_row(pg).3.max(0) as u64);
    // past the TTL as the database sees the heartbeat
    wait_until(
        "the stopped holder's heartbeat to age past the TTL",
        TTL + Duration::from_secs(10),
        || lease_row(pg).3 > TTL.as_millis() as i64,
    )
    .await;
    let stale_seen = stopped.elapsed();
    let mut second = Streamed::spawn({
        let mut c = as_host(&env, "host-b", &["resume", &run]);
        c.env("GLIDEPATH_LEASE_TTL", ttl);
        c
    });
    wait_until(
        "host-b to take the lease over",
        Duration::from_secs(30),
        || {
            let (r, h, e, _) = lease_row(pg);
            r == run && h == "host-b" && e > epoch_a
        },
    )
    .await;
    let takeover = stopped.elapsed();
    let code = second.exit(Duration::from_secs(120)).await;
    assert_eq!(
        code,
        0,
        "resume on host-b finishes the run: {}",
        second.text()
    );
    assert_eq!(
        env.journal().run(&run).unwrap().status,
        RunStatus::Succeeded
    );
    let rows = event_rows(pg, &run);
    let lease_after = lease_row(pg);

    // the stale holder wakes up: it must notice and stop, writing nothing
    signal(&first.child, libc::SIGCONT);
    let woke = Instant::now();
    let code = first.exit(Duration::from_secs(30)).await;
    let stopped_after = woke.elapsed();
    let said = first.text();
    assert_eq!(code, 6, "the stale holder exits 6: {said}");
    assert!(said.contains("lost the lease"), "{said}");
    assert_eq!(
        event_rows(pg, &run),
        rows,
        "the stale holder wrote no event row"
    );
    assert_eq!(
        env.journal().run(&run).unwrap().status,
        RunStatus::Succeeded
    );
    assert_eq!(
        (lease_row(pg).0, lease_row(pg).2),
        (lease_after.0, lease_after.2)
    );

    let events = env.events(&run);
    assert_journal_consistent(&events);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Interrupted { .. })));
    assert_rows_gapless_and_single(pg, &run, events.len());
    assert_node_steps_once(&events, &["node-1", "node-2", "node-3", "node-4"]);
    env.assert_fleet(&["2", "2", "2", "2"]).await;
    assert_eq!(env.current_links(), ["2", "2", "2", "2"]);
    println!(
        "stale-holder figures: TTL {ttl}; heartbeat older than the TTL {stale_seen:?} after SIGSTOP; host-b held the lease {takeover:?} after SIGSTOP, {:?} after the holder's last heartbeat; the stale holder stopped {stopped_after:?} after SIGCONT",
        takeover + beat_age
    );
    assert!(
        takeover + beat_age < TTL + Duration::from_secs(5),
        "takeover took {:?} after the last heartbeat",
        takeover + beat_age
    );
    assert!(
        stopped_after < Duration::from_secs(5),
        "the stale holder took {stopped_after:?} to stop"
    );
}

/// PostgreSQL stopped under a run (once the canary's drain is journaled) and
/// started again: the run says it waits for the journal, then completes;
/// no event lost or written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_rollout_the_run_waits_and_completes() {
    if !postgres_available() {
        return;
    }
    let env = Env::start_on(4, Backend::Postgres).await;
    let plan = env.plan(&env.v2, &DemoPlan::quick("3s", 5));
    let mut runner = Streamed::spawn(env.cmd(&["run", plan.to_str().unwrap()]));
    env.wait_event(
        "the canary to start (its drain's intent)",
        Duration::from_secs(60),
        |e| matches!(e, Event::Intent { step, .. } if step.kind == StepKind::Drain),
    )
    .await;
    let run = env.latest_run();
    let pg = env.pg();
    pg.server.stop_fast().unwrap();
    let down = Instant::now();
    runner
        .wait_for_text("is unreachable", Duration::from_secs(30))
        .await;
    pg.server.start_again().unwrap();
    let outage = down.elapsed();
    runner
        .wait_for_text("the journal answers again", Duration::from_secs(30))
        .await;
    let code = runner.exit(Duration::from_secs(120)).await;
    assert_eq!(code, 0, "{}", runner.text());
    let events = env.events(&run);
    assert_journal_consistent(&events);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Interrupted { .. })),
        "the process never stopped"
    );
    assert_rows_gapless_and_single(pg, &run, events.len());
    assert_node_steps_once(&events, &["node-1", "node-2", "node-3", "node-4"]);
    env.assert_fleet(&["2", "2", "2", "2"]).await;
    assert_eq!(env.current_links(), ["2", "2", "2", "2"]);
    println!("restart figures: the server was down {outage:?}");
}

/// PostgreSQL stays down past the plan's retry deadline while the canary is
/// drained (its drain command held until the server is down): the runner
/// takes no new step, stops with exit 4 and puts the drained, unchanged
/// canary back into rotation; once the server is back, `resume` finishes
/// the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_past_the_retry_deadline_stops_the_run_resumable() {
    if !postgres_available() {
        return;
    }
    let env = Env::start_on(4, Backend::Postgres).await;
    let go = env.path().join("drain-may-finish");
    let plan = env.plan(
        &env.v2,
        &DemoPlan {
            strategy_extra: r#"retry = { backoff = "200ms", max_backoff = "1s", deadline = "3s" }"#
                .into(),
            ..DemoPlan::quick("3s", 5)
        },
    );
    // the balancer by commands, its drain finishing only once told to
    let text = std::fs::read_to_string(&plan).unwrap().replacen(
        glidepath::demo::plans::HTTP_BALANCER,
        &format!(
            r#"[balancer]
kind   = "command"
drain  = "curl -fsS -X POST http://{{address}}/admin/drain && while [ ! -e '{go}' ]; do sleep 0.05; done"
enable = "curl -fsS -X POST http://{{address}}/admin/ready"
active = "curl -fsS http://{{address}}/admin/state | grep -o '\"active\":[0-9]*' | cut -d: -f2"
check  = "curl -fsS http://{{address}}/admin/state | grep -q '\"drained\":false'"
"#,
            go = go.display()
        ),
        1,
    );
    assert!(text.contains("kind   = \"command\""), "{text}");
    std::fs::write(&plan, text).unwrap();
    let mut runner = Streamed::spawn(env.cmd(&["run", plan.to_str().unwrap()]));
    wait_until_async("the canary drained", Duration::from_secs(60), || async {
        env.node_state(0).await.1
    })
    .await;
    let run = env.latest_run();
    let pg = env.pg();
    pg.server.stop_fast().unwrap();
    let down = Instant::now();
    std::fs::write(&go, "").unwrap();
    let code = runner.exit(Duration::from_secs(60)).await;
    let gave_up = down.elapsed();
    let said = runner.text();
    assert_eq!(code, 4, "exit 4 past the retry deadline: {said}");
    assert!(said.contains("is unreachable"), "{said}");
    assert!(
        said.contains("drained but unchanged, back in rotation: node-1"),
        "{said}"
    );
    assert!(
        said.contains(&format!("`glidepath resume {run} --journal ")),
        "the message says how to finish the run: {said}"
    );
    // nothing changed, nothing left drained
    env.assert_fleet(&["1", "1", "1", "1"]).await;
    assert_eq!(env.current_links(), ["1", "1", "1", "1"]);

    pg.server.start_again().unwrap();
    let out = env.run(&["resume", &run]);
    assert_eq!(code_of(&out), 0, "resume finishes the run");
    let events = env.events(&run);
    assert_journal_consistent(&events);
    assert_rows_gapless_and_single(pg, &run, events.len());
    env.assert_fleet(&["2", "2", "2", "2"]).await;
    assert_eq!(env.current_links(), ["2", "2", "2", "2"]);
    println!(
        "deadline figures: the runner stopped {gave_up:?} after the server went down (retry deadline 3s)"
    );
}

/// A holder stopped inside one of its transactions (its backend idle in
/// transaction, the lease row locked `FOR SHARE`) must not block the
/// takeover: the server ends such a session, so `resume` elsewhere takes the
/// lease after the TTL as usual. (A partitioned holder leaves the same
/// open transaction behind.) To stop it there for sure, an insert of its is
/// held up by a table lock, it is stopped while waiting, and the lock goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_stopped_inside_a_transaction_does_not_block_the_takeover() {
    if !postgres_available() {
        return;
    }
    let env = Env::start_on(4, Backend::Postgres).await;
    let ttl = "3s";
    let (mut first, run) = holder_past_the_canary(&env, ttl).await;
    let pg = env.pg();
    let (locker, connection) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    locker
        .batch_execute("BEGIN; LOCK TABLE glidepath.events IN EXCLUSIVE MODE")
        .await
        .unwrap();
    // the holder's next append waits for the table, inside its transaction
    wait_until(
        "the holder's insert to wait for the table lock",
        Duration::from_secs(30),
        || {
            pg.psql(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE application_name = 'glidepath' AND wait_event_type = 'Lock'",
            ) == "1"
        },
    )
    .await;
    signal(&first.child, libc::SIGSTOP);
    let stopped = Instant::now();
    locker.batch_execute("COMMIT").await.unwrap();
    let idle_in_tx = || {
        pg.psql(
            "SELECT count(*) FROM pg_stat_activity
             WHERE application_name = 'glidepath' AND state = 'idle in transaction'",
        )
    };
    wait_until(
        "the stopped holder's transaction to sit idle",
        Duration::from_secs(10),
        || idle_in_tx() == "1",
    )
    .await;
    wait_until(
        "the stopped holder's heartbeat to age past the TTL",
        TTL + Duration::from_secs(10),
        || lease_row(pg).3 > TTL.as_millis() as i64,
    )
    .await;
    let mut second = Streamed::spawn({
        let mut c = as_host(&env, "host-b", &["resume", &run]);
        c.env("GLIDEPATH_LEASE_TTL", ttl);
        c
    });
    wait_until(
        "host-b to take the lease over",
        Duration::from_secs(30),
        || {
            let (r, h, _, _) = lease_row(pg);
            (r == run && h == "host-b") || second.child.try_wait().ok().flatten().is_some()
        },
    )
    .await;
    let takeover = stopped.elapsed();
    let code = second.exit(Duration::from_secs(120)).await;
    assert_eq!(
        code,
        0,
        "resume on host-b finishes the run: {}",
        second.text()
    );
    let rows = event_rows(pg, &run);
    signal(&first.child, libc::SIGCONT);
    let code = first.exit(Duration::from_secs(30)).await;
    assert_eq!(code, 6, "the stale holder exits 6: {}", first.text());
    assert_eq!(
        event_rows(pg, &run),
        rows,
        "the stale holder wrote no event row"
    );
    let events = env.events(&run);
    assert_journal_consistent(&events);
    assert_rows_gapless_and_single(pg, &run, events.len());
    assert_node_steps_once(&events, &["node-1", "node-2", "node-3", "node-4"]);
    env.assert_fleet(&["2", "2", "2", "2"]).await;
    println!("stopped-in-a-transaction figures: TTL {ttl}; host-b held the lease {takeover:?} after SIGSTOP");
}

/// The database's password does not reach the plan's commands through the
/// environment: a captured `[[pre]]` task would write it into the shared
/// journal, where every member of the team reads it (`status`, `history`,
/// `serve`, `journal export`). (Found by review; failed before the binary
/// took the password variables out of its environment.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_password_is_not_handed_to_the_plans_commands() {
    if !postgres_available() {
        return;
    }
    let env = Env::start_on(2, Backend::Postgres).await;
    let plan = env.plan(&env.v2, &DemoPlan::quick("2s", 3));
    let mut text = std::fs::read_to_string(&plan).unwrap();
    text.push_str(
        "\n[[pre]]\nname = \"env\"\nrun = \"printenv GLIDEPATH_JOURNAL_PASSWORD || echo none\"\ncapture = true\n",
    );
    std::fs::write(&plan, text).unwrap();
    const SECRET: &str = "pw-a13-sentinel";
    let out = env
        .cmd(&["run", plan.to_str().unwrap()])
        .env("GLIDEPATH_JOURNAL_PASSWORD", SECRET)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let journal = env
        .pg()
        .psql("SELECT count(*) FROM glidepath.events WHERE data LIKE '%pw-a13-sentinel%'");
    assert_eq!(
        journal.trim(),
        "0",
        "the shared journal holds the database's password"
    );
    assert!(
        !stdout(&out).contains(SECRET),
        "the run printed the database's password"
    );
}

/// A TCP relay to the journal's server that the test can cut: the holder
/// alone loses the database (a partition), while other hosts still reach it.
struct Relay {
    port: u16,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    async fn to(target: u16) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Default::default();
        let t = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                else {
                    continue;
                };
                let pipe = tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                t.lock().unwrap().push(pipe);
            }
        });
        tasks.lock().unwrap().push(accept);
        Relay { port, tasks }
    }

    /// Stop accepting and drop every relayed connection.
    fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

/// A holder cut off from the database (a partition: other hosts still reach
/// it) waits out its retry deadline; by then another host took the lease
/// over after the TTL and drives the node the holder had drained. The holder
/// must not touch the fleet: it leaves the node as it is, says why, and
/// exits 4. (Found by review; before, it put the node back into rotation
/// in the middle of the other host's rollout.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_holder_does_not_touch_the_fleet_after_the_takeover() {
    if !postgres_available() {
        return;
    }
    let env = Env::start_on(3, Backend::Postgres).await;
    let go = env.path().join("drain-may-finish");
    let enables = env.path().join("enables.log");
    let plan = env.plan(
        &env.v2,
        &DemoPlan {
            strategy_extra:
                r#"retry = { backoff = "200ms", max_backoff = "1s", deadline = "10s" }"#.into(),
            ..DemoPlan::quick("2s", 3)
        },
    );
    // the balancer by commands: the drain finishes once told to, and each
    // enable says which host ran it
    let text = std::fs::read_to_string(&plan).unwrap().replacen(
        glidepath::demo::plans::HTTP_BALANCER,
        &format!(
            r#"[balancer]
kind   = "command"
drain  = "curl -fsS -X POST http://{{address}}/admin/drain && while [ ! -e '{go}' ]; do sleep 0.05; done"
enable = "echo \"$GLIDEPATH_HOST {{node}}\" >> '{enables}'; curl -fsS -X POST http://{{address}}/admin/ready"
active = "curl -fsS http://{{address}}/admin/state | grep -o '\"active\":[0-9]*' | cut -d: -f2"
check  = "curl -fsS http://{{address}}/admin/state | grep -q '\"drained\":false'"
"#,
            go = go.display(),
            enables = enables.display(),
        ),
        1,
    );
    assert!(text.contains("kind   = \"command\""), "{text}");
    std::fs::write(&plan, text).unwrap();
    let pg = env.pg();
    let pg_port: u16 = pg
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let relay = Relay::to(pg_port).await;
    let relayed_url = pg
        .url
        .replace(&format!(":{pg_port}/"), &format!(":{}/", relay.port));
    let mut holder = Streamed::spawn({
        let mut c = as_host(&env, "host-a", &["run", plan.to_str().unwrap()]);
        c.env("GLIDEPATH_JOURNAL", &relayed_url)
            .env("GLIDEPATH_LEASE_TTL", "3s")
            .env("GLIDEPATH_LOCK_DIR", env.path().join("locks-a"));
        c
    });
    wait_until_async("the canary drained", Duration::from_secs(60), || async {
        env.node_state(0).await.1
    })
    .await;
    let run = env.latest_run();
    // host-a alone loses the database, its drain's outcome unwritten
    relay.cut();
    std::fs::write(&go, "").unwrap();
    wait_until(
        "host-a's heartbeat older than the TTL",
        Duration::from_secs(30),
        || lease_row(pg).3 > 3_500,
    )
    .await;
    let out = {
        let mut c = as_host(&env, "host-b", &["resume", &run]);
        c.env("GLIDEPATH_LEASE_TTL", "3s")
            .env("GLIDEPATH_LOCK_DIR", env.path().join("locks-b"));
        c.output().unwrap()
    };
    assert_eq!(
        code(&out),
        0,
        "host-b finishes the run: {}{}",
        stdout(&out),
        stderr(&out)
    );
    let code_a = holder.exit(Duration::from_secs(60)).await;
    let said = holder.text();
    let log = std::fs::read_to_string(&enables).unwrap_or_default();
    assert!(
        !log.lines().any(|l| l.starts_with("host-a")),
        "host-a (exit {code_a}) put a node back into rotation after host-b took the lease over:\n{log}\n{said}"
    );
    assert_eq!(code_a, 4, "{said}");
    assert!(
        said.contains("another process may have taken the run over"),
        "{said}"
    );
}

/// `serve` against PostgreSQL: its event streams share the server's one
/// connection (ten streams do not take ten connections), and while the
/// database is down the API and `/metrics` answer 503 with `Retry-After`,
/// never a page of zeros; once it is back they answer again. (Found by
/// review: a stream opened a connection of its own, and `/metrics` showed
/// zeros.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_postgres_shares_its_connection_and_says_503_while_it_is_down() {
    if !postgres_available() {
        return;
    }
    let env = Env::start_on(2, Backend::Postgres).await;
    // a database that does not exist is a wrong location (exit 2, with a
    // hint), not an outage
    let wrong = env.pg().url.replace("/glidepath", "/nosuchdb");
    let out = env.run(&["history", "--journal", &wrong]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("3D000"), "{}", stderr(&out));
    let plan = env.plan(&env.v2, &DemoPlan::quick("1s", 3));
    let out = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let run = env.latest_run();
    let served = crate::serve::serve(&env, &[]).await;
    let connections = || {
        env.pg()
            .psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND application_name = 'glidepath'")
            .trim()
            .parse::<usize>()
            .unwrap()
    };
    let before = connections();
    let client = reqwest::Client::new();
    let mut streams = Vec::new();
    for _ in 0..10 {
        let r = client
            .get(format!("{}/api/v1/runs/{run}/events", served.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        streams.push(r);
    }
    // each stream has read the run (its first poll) through the shared handle
    let during = connections();
    assert!(
        during <= before + 1,
        "10 event streams took {} more connections",
        during - before
    );
    drop(streams);
    env.pg().server.stop_fast().unwrap();
    for path in ["/api/v1/runs", "/metrics"] {
        let r = client
            .get(format!("{}{path}", served.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "{path}: {}", r.text().await.unwrap());
        assert!(r.headers().contains_key("retry-after"), "{path}");
    }
    env.pg().server.start_again().unwrap();
    wait_until_async("the API to answer again", Duration::from_secs(30), || {
        let c = client.clone();
        let url = format!("{}/metrics", served.url);
        async move { c.get(&url).send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    let metrics = client
        .get(format!("{}/metrics", served.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("glidepath_runs{status=\"succeeded\"} 1"),
        "{metrics}"
    );
}
