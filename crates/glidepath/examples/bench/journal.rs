//! journal: the shared PostgreSQL journal beside the embedded SQLite one,
//! against a real PostgreSQL started here with its durable defaults (fsync
//! and full page writes on; SQLite runs `synchronous = FULL`):
//!
//! - event append latency (a holder's fenced append), median and p99;
//! - command delivery from another process: `glidepath promote` against a
//!   run paused at a pause point, from the command's queueing to the
//!   holder's journaled `promoted` event, and the `promote` process's whole
//!   time (start, connect, queue, acknowledgement, exit);
//! - takeover after a holder dies (`kill -9` on "host-a"): from the kill to
//!   `resume` on "host-b" holding the lease (goal: TTL + 1 s);
//! - 50 fleets rolled at once by 50 processes against the one server: wall
//!   time and the server's CPU.

use glidepath::demo::fleet::write_release;
use glidepath::demo::infra::Postgres;
use glidepath::demo::plans::{LocalPlan, Probe};
use glidepath::journal::{now_ms, Location, RunRecord, RunStatus, Store};
use glidepath_core::Event;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Wait until `ok` holds, checking every 5 ms, for at most `limit`.
fn wait(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub async fn journal() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start_durable(dir.path()).expect("PostgreSQL starts");
    pg.psql("postgres", "CREATE DATABASE bench").unwrap();
    let url = pg.url("bench");
    tokio::task::block_in_place(|| {
        append_latency(dir.path(), &url);
        command_delivery(dir.path(), &pg, &url);
        takeover(dir.path(), &url);
        fleets(dir.path(), &pg, 50);
    });
}

fn append_latency(dir: &Path, url: &str) {
    let n = 2_000;
    for (name, loc) in [
        ("SQLite", Location::Sqlite(dir.join("append.db"))),
        ("PostgreSQL", Location::parse(url).unwrap()),
    ] {
        let mut j = loc.open().unwrap();
        let run = format!("append-{}", name.to_lowercase());
        j.create_run(&RunRecord {
            id: run.clone(),
            fleet: run.clone(),
            plan_path: "bench".into(),
            plan_hash: "bench".into(),
            plan_source: String::new(),
            version: "2".into(),
            status: RunStatus::Running,
            reason: String::new(),
            created_at: now_ms(),
            updated_at: now_ms(),
        })
        .unwrap();
        j.acquire_lease(&run, &run, false).unwrap();
        let mut lat = Vec::with_capacity(n);
        for i in 0..n {
            let ev = Event::Promoted {
                at: now_ms(),
                reason: format!("{i:>200}"),
            };
            let t = Instant::now();
            j.append(&run, &ev).unwrap();
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        j.release_lease(&run, &run).unwrap();
        println!(
            "journal append ({name}, fenced, {n} events of ~250 bytes, durable): median {:.3} ms, p99 {:.3} ms",
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.99)
        );
    }
}

fn glidepath(dir: &Path, url: &str, host: &str, args: &[&str]) -> Command {
    let mut c = Command::new(crate::glidepath_bin());
    c.args(args)
        .current_dir(dir)
        .env("GLIDEPATH_JOURNAL", url)
        .env("GLIDEPATH_HOST", host)
        .env("XDG_STATE_HOME", dir.join("state"))
        .env("GLIDEPATH_LOCK_DIR", dir.join("locks"))
        .env_remove("GLIDEPATH_CRASH_AT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// A local fleet `name` of `nodes` nodes (batches of `batch`) with its
/// plan, in `dir/name`; `pauses` goes into `[strategy]`.
fn local_fleet(
    dir: &Path,
    name: &str,
    nodes: usize,
    batch: usize,
    port: u16,
    pauses: &str,
) -> std::path::PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let rel = write_release(&d, &glidepath::demo::releases()[1]).unwrap();
    let p = LocalPlan {
        batch_size: batch,
        ..LocalPlan::new(nodes, port)
    }
    .probe(Probe::Command("true".into()));
    p.install(&d, "1").unwrap();
    let text = p
        .text(&rel, &glidepath::demo::relative_artifact(&rel, &d))
        .replace("name  = \"bench\"", &format!("name  = \"{name}\""))
        .replace(
            &format!("batch_size = {batch}\n"),
            &format!("batch_size = {batch}\npauses = [{pauses}]\n"),
        );
    let path = d.join("plan.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn the_run(j: &dyn Store, fleet: &str) -> Option<RunRecord> {
    j.runs(200).ok()?.into_iter().find(|r| r.fleet == fleet)
}

fn command_delivery(dir: &Path, pg: &Postgres, url: &str) {
    let promotes = 20;
    let pauses: Vec<String> = std::iter::once("\"after-canary\"".to_string())
        .chain((1..promotes).map(|i| format!("\"after-batch-{i}\"")))
        .collect();
    let plan = local_fleet(dir, "delivery", promotes + 1, 1, 20_000, &pauses.join(", "));
    let j = Location::parse(url).unwrap().open().unwrap();
    let mut holder = glidepath(dir, url, "host-a", &["run", plan.to_str().unwrap()])
        .spawn()
        .unwrap();
    let mut whole = Vec::new();
    let mut run = String::new();
    // each pause point has its own reason: wait for the next one
    let mut last_reason = String::new();
    for i in 0..promotes {
        wait("the run to pause", Duration::from_secs(60), || {
            the_run(j.as_ref(), "delivery").is_some_and(|r| {
                run = r.id.clone();
                r.status == RunStatus::Paused && r.reason != last_reason
            })
        });
        last_reason = j.run(&run).unwrap().reason;
        let t = Instant::now();
        let st = glidepath(dir, url, "host-b", &["promote", &run])
            .status()
            .unwrap();
        assert!(st.success(), "promote {i} failed: {st}");
        whole.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    assert!(holder.wait().unwrap().success());
    // from each command's queueing to its `promoted` event (one machine, one clock)
    let queued = pg
        .psql(
            "bench",
            &format!("SELECT at FROM glidepath.commands WHERE run_id = '{run}' AND kind = 'promote' ORDER BY id"),
        )
        .unwrap();
    let queued: Vec<u64> = queued
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let promoted: Vec<u64> = j
        .events(&run)
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::Promoted { at, .. } => Some(*at),
            _ => None,
        })
        .collect();
    let mut delivery: Vec<f64> = queued
        .iter()
        .zip(&promoted)
        .map(|(q, p)| p.saturating_sub(*q) as f64)
        .collect();
    println!(
        "command delivery, another process (PostgreSQL, LISTEN/NOTIFY), {} promotes: queued → promoted journaled median {:.0} ms, p99 {:.0} ms; the whole `glidepath promote` process (start, connect, queue, acknowledgement) median {:.0} ms, p99 {:.0} ms",
        delivery.len(),
        pct(&mut delivery, 0.5),
        pct(&mut delivery, 0.99),
        pct(&mut whole, 0.5),
        pct(&mut whole, 0.99)
    );
}

fn takeover(dir: &Path, url: &str) {
    let ttl_s = 5;
    let trials = 3;
    let j = Location::parse(url).unwrap().open().unwrap();
    let mut times = Vec::new();
    for t in 0..trials {
        let fleet = format!("takeover{t}");
        let plan = local_fleet(
            dir,
            &fleet,
            3,
            2,
            21_000 + 10 * t as u16,
            "\"after-canary\"",
        );
        let ttl = format!("{ttl_s}s");
        let mut holder = glidepath(dir, url, "host-a", &["run", plan.to_str().unwrap()])
            .env("GLIDEPATH_LEASE_TTL", &ttl)
            .spawn()
            .unwrap();
        let mut run = String::new();
        wait("the run to pause", Duration::from_secs(60), || {
            the_run(j.as_ref(), &fleet).is_some_and(|r| {
                run = r.id.clone();
                r.status == RunStatus::Paused
            })
        });
        holder.kill().unwrap();
        let died = Instant::now();
        holder.wait().unwrap();
        // `resume` on another host, again and again, until it holds the lease
        let taken = loop {
            let mut c = glidepath(dir, url, "host-b", &["resume", &run])
                .env("GLIDEPATH_LEASE_TTL", &ttl)
                .spawn()
                .unwrap();
            let mut held = false;
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if j.lease(&fleet)
                    .ok()
                    .flatten()
                    .is_some_and(|l| l.host == "host-b")
                {
                    held = true;
                    break;
                }
                if c.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            if held {
                let at = died.elapsed();
                let _ = glidepath(dir, url, "host-c", &["abort", &run]).status();
                c.wait().unwrap();
                break at;
            }
            let _ = c.wait();
            assert!(died.elapsed() < Duration::from_secs(60), "no takeover");
        };
        times.push(taken.as_secs_f64());
    }
    let mut sorted = times.clone();
    println!(
        "takeover after a holder is killed (TTL {ttl_s} s, heartbeat 1 s, `resume` retried from another host): {} s; worst {:.2} s (goal ≤ TTL + 1 s = {} s)",
        times.iter().map(|t| format!("{t:.2}")).collect::<Vec<_>>().join(", "),
        pct(&mut sorted, 1.0),
        ttl_s + 1
    );
}

/// CPU seconds of the server: the postmaster, its live children, and the
/// children it reaped (each session's backend).
fn server_cpu(pg: &Postgres) -> f64 {
    let pm = pg.pid().expect("postmaster.pid");
    let tick = 100.0; // USER_HZ
    let stat = |pid: u32| -> Option<Vec<u64>> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = s.rsplit(')').next()?;
        Some(
            rest.split_whitespace()
                .map(|f| f.parse().unwrap_or(0))
                .collect(),
        )
    };
    // fields after the name: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14)
    let mut total = stat(pm).map_or(0, |f| f[11] + f[12] + f[13] + f[14]);
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) {
            if let Some(f) = stat(pid) {
                if f[1] == pm as u64 {
                    total += f[11] + f[12];
                }
            }
        }
    }
    total as f64 / tick
}

fn fleets(dir: &Path, pg: &Postgres, n: usize) {
    pg.psql("postgres", "CREATE DATABASE fleets").unwrap();
    let url = pg.url("fleets");
    let plans: Vec<_> = (0..n)
        .map(|i| local_fleet(dir, &format!("fleet{i}"), 4, 3, 22_000 + 10 * i as u16, ""))
        .collect();
    let cpu0 = server_cpu(pg);
    let t = Instant::now();
    let mut kids: Vec<_> = plans
        .iter()
        .map(|p| {
            glidepath(dir, &url, "host-a", &["run", p.to_str().unwrap()])
                .spawn()
                .unwrap()
        })
        .collect();
    let ok = kids
        .iter_mut()
        .map(|k| k.wait().unwrap().success())
        .filter(|ok| *ok)
        .count();
    let wall = t.elapsed().as_secs_f64();
    // the sessions' backends have ended (and been reaped, their CPU counted)
    wait("the sessions to end", Duration::from_secs(30), || {
        pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
        )
        .is_ok_and(|n| n.trim() == "1")
    });
    let cpu = server_cpu(pg) - cpu0;
    let j = Location::parse(&url).unwrap().open().unwrap();
    let events: usize = j
        .runs(1000)
        .unwrap()
        .iter()
        .map(|r| j.events(&r.id).unwrap().len())
        .sum();
    assert_eq!(ok, n, "every fleet's run succeeds");
    println!(
        "{n} fleets (4 local nodes each) rolled at once by {n} processes against one PostgreSQL: wall {wall:.1} s, {events} events journaled, server CPU {cpu:.1} s ({:.0} % of one core)",
        cpu / wall * 100.0
    );
}
