//! Honest messages and copy-paste hints (issue 14, items 3 and 5): a gate
//! with nothing to check is `skipped`, the narration claims no action that
//! did not happen, a restart whose background child holds the output says
//! so, and every hint names the real run and journal.

use crate::harness::*;
use crate::rollout::knobs;
use glidepath_core::Event;
use std::time::Duration;

/// The demo plan's restart line.
const RESTART: &str = "restart       = \"kill -HUP $(cat {install_dir}/node.pid)\"";

/// A restart that starts a background process without redirecting its
/// output: the shell exits at once, the process holds the pipe and keeps
/// writing to it, and survives glidepath's exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_whose_background_child_holds_the_output_succeeds_and_says_so() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs());
    let pids = env.path().join("bg.pids");
    let ticks = env.path().join("ticks");
    // a service that keeps writing to the output it inherited
    let src = std::fs::read_to_string(&plan).unwrap().replace(
        RESTART,
        &format!(
            "restart       = \"kill -HUP $(cat {{install_dir}}/node.pid); (i=0; while [ $i -lt 600 ]; do i=$((i+1)); echo $i > {ticks}.{{node}}; echo tick; sleep 0.1; done) & echo $! >> {}\"\nrestart_timeout = \"5s\"",
            pids.display(),
            ticks = ticks.display()
        ),
    );
    assert!(src.contains("echo tick"), "restart replaced");
    std::fs::write(&plan, src).unwrap();
    let out = env.run(&["run", plan.to_str().unwrap()]);
    let text = stdout(&out);
    // glidepath has exited: the writers go on (their output is drained, no
    // SIGPIPE); ticks counted after the exit prove it
    let (after_exit, alive) = ticks_go_on(&ticks).await;
    // the writers this test started
    for pid in std::fs::read_to_string(&pids).unwrap_or_default().lines() {
        if let Ok(p) = pid.trim().parse::<i32>() {
            // SAFETY: a process this test's plan started.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
    }
    assert!(
        alive,
        "the background writer outlived glidepath: ticks {after_exit}, then no more"
    );
    assert_eq!(code(&out), 0, "{text}{}", stderr(&out));
    env.assert_fleet(&["2", "2"]).await;
    assert!(!text.contains("timed out"), "{text}");
    assert!(
        text.contains("its output: it counts as done") && text.contains("setsid"),
        "says what holds the output and how to fix it: {text}"
    );
    let held = text
        .lines()
        .find(|l| l.contains("its output: it counts as done"))
        .unwrap();
    assert!(held.contains("(pid"), "names the process(es): {held}");
}

/// The count node-1's background writer wrote to `ticks` when glidepath
/// had exited, and whether it went on by 5 more within 20 s (it was not
/// killed by SIGPIPE when glidepath stopped reading its output).
async fn ticks_go_on(ticks: &std::path::Path) -> (u32, bool) {
    let tick = || {
        std::fs::read_to_string(format!("{}.node-1", ticks.display()))
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
            .unwrap_or(0)
    };
    let after_exit = tick();
    let alive = glidepath::demo::wait_for("ticks after the exit", Duration::from_secs(20), || {
        (tick() >= after_exit + 5).then_some(())
    })
    .await
    .is_ok();
    (after_exit, alive)
}

/// Preflight with a node down: the gates that could not check anything say
/// `skipped` (not an empty pass), and the refusal is a node unhealthy before
/// the run (exit 3), not an unreachable infrastructure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_down_at_preflight_is_unhealthy_and_empty_gates_are_skipped() {
    let mut env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs());
    env.traffic.take().unwrap().stop().await;
    env.fleet.nodes[0].kill();
    env.fleet.nodes[1].kill();
    let out = env.run(&["preflight", plan.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(code(&out), 3, "{text}{}", stderr(&out));
    for l in text.lines() {
        assert!(
            !(l.contains(" pass ") && (l.contains(" 0 of ") || l.contains("0 node(s)"))),
            "an empty pass: {l}"
        );
        assert!(
            !l.trim_end().ends_with("releases:"),
            "an empty list passed: {l}"
        );
    }
    let line = |g: &str| {
        text.lines()
            .find(|l| l.starts_with(g))
            .unwrap_or_else(|| panic!("no {g} line: {text}"))
            .to_string()
    };
    assert!(line("rollback-target").contains("skipped"), "{text}");
    assert!(line("permissions").contains("skipped"), "{text}");
    assert!(line("health ").contains("FAIL"), "{text}");
    let json = env.run(&["preflight", plan.to_str().unwrap(), "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    let verdict = |g: &str| {
        v["gates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["gate"] == g)
            .unwrap()["verdict"]
            .clone()
    };
    assert_eq!(verdict("rollback-target"), "skipped", "{v}");
    assert_eq!(verdict("health"), "fail", "{v}");
    let run = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(
        code(&run),
        3,
        "a node down before the run: {}",
        stderr(&run)
    );
    let events = env.events(&env.latest_run());
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::GatesChecked { results, .. }
            if results.iter().any(|g| g.gate == "permissions" && g.verdict == "skipped"))),
        "journaled as skipped: {events:?}"
    );
}

/// `balancer = "none"`: the balancer gate is skipped, and the narration
/// never claims a drain that no balancer did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_balancer_nothing_claims_a_balancer_answered() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs());
    let src = std::fs::read_to_string(&plan).unwrap().replace(
        glidepath::demo::plans::HTTP_BALANCER,
        "[balancer]\nkind = \"none\"\n",
    );
    assert!(src.contains("kind = \"none\""), "balancer replaced");
    std::fs::write(&plan, src).unwrap();
    let out = env.run(&["run", plan.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{text}{}", stderr(&out));
    assert!(
        !text.contains("balancer(s) answer"),
        "no balancer answered: {text}"
    );
    assert!(
        !text.contains("✓ 0 active connection"),
        "no connection was counted: {text}"
    );
    assert!(
        text.contains("✓ no balancer: no connection to wait for"),
        "{text}"
    );
    // the peers check speaks of the nodes serving, not of a rotation
    assert!(text.contains("node(s) serving answer"), "{text}");
    assert!(!text.contains("node(s) in rotation answer"), "{text}");
    let gate = text
        .lines()
        .find(|l| l.contains("preflight  balancer"))
        .unwrap();
    assert!(gate.contains("skipped"), "{gate}");
}

/// The pause prompt names the real run and the journal (not the default
/// one here), and the next commands; run as printed, promote goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pause_prompt_is_a_command_that_works_as_printed() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs().paused_after_canary());
    let journal = env.path().join("elsewhere/my journal.db");
    std::fs::create_dir_all(journal.parent().unwrap()).unwrap();
    let j = journal.to_str().unwrap();
    let child = env.spawn(&["run", plan.to_str().unwrap(), "--journal", j]);
    let store = || glidepath::journal::Journal::open(&journal).unwrap();
    wait_until("the run to pause", Duration::from_secs(60), || {
        journal.exists()
            && store()
                .runs(1)
                .ok()
                .and_then(|r| r.into_iter().next())
                .is_some_and(|r| r.status == "paused")
    })
    .await;
    let run = store().runs(1).unwrap().remove(0).id;
    let status = env.run(&["status", &run, "--journal", j]);
    let text = stdout(&status);
    let promote = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("glidepath promote "))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no promote command: {text}"));
    assert!(promote.contains(&run), "{promote}");
    assert!(
        text.contains(&format!("glidepath abort {run}")),
        "abort is named: {text}"
    );
    // as a shell would split it
    let words = shell_words(promote.split("  (").next().unwrap());
    assert_eq!(words[0], "glidepath");
    let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
    let p = env.run(&args);
    assert_eq!(code(&p), 0, "{}", stderr(&p));
    // what the runner printed when it paused said the same
    let out = wait_output(child, Duration::from_secs(60)).await;
    assert_eq!(code(&out), 0);
    let said = stdout(&out);
    assert!(
        said.contains(&format!("glidepath promote {run} --journal '{j}'")),
        "{said}"
    );
}

/// Split a line as `sh` would (single quotes, double quotes, backslashes).
pub fn shell_words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut any = false;
    let mut it = line.chars();
    while let Some(c) = it.next() {
        match c {
            '\'' => {
                any = true;
                for d in it.by_ref() {
                    if d == '\'' {
                        break;
                    }
                    cur.push(d);
                }
            }
            '"' => {
                any = true;
                while let Some(d) = it.next() {
                    match d {
                        '"' => break,
                        '\\' => cur.extend(it.next()),
                        d => cur.push(d),
                    }
                }
            }
            '\\' => cur.extend(it.next()),
            c if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A plan with no `[sli]`, its process killed mid-run: the resumed
/// narration does not speak of an SLI window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_a_plan_without_sli_speaks_of_no_window() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs());
    let src = std::fs::read_to_string(&plan).unwrap();
    let (head, rest) = src.split_once("[sli]").unwrap();
    let (_, tail) = rest.split_once("[rollback]").unwrap();
    let text = format!("{head}[rollback]{tail}")
        .lines()
        .filter(|l| !l.starts_with("sli_window") && !l.starts_with("probe_interval"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("on = [\"health\", \"sli\"]", "on = [\"health\"]");
    std::fs::write(&plan, text).unwrap();
    env.run_until_killed(&["run", plan.to_str().unwrap()], "outcome:switch:node-1");
    let run = env.latest_run();
    let out = env.run(&["resume", &run]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let said = stdout(&out);
    assert!(said.contains("the previous process died"), "{said}");
    assert!(!said.contains("SLI window"), "{said}");
}

/// A person's fix of a node a failed rollback kept out: restart it on the
/// release its `current` names, and put it back into rotation.
async fn fix_by_hand(env: &Env, i: usize) {
    let n = &env.fleet.nodes[i];
    let ok = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("kill -HUP $(cat '{}/node.pid')", n.dir.display()))
        .status()
        .unwrap()
        .success();
    assert!(ok, "restarted {}", n.name);
    wait_until_async("the node to serve 1", Duration::from_secs(20), || async {
        env.node_state(i).await.0 == "1"
    })
    .await;
    reqwest::Client::new()
        .post(format!("http://{}/admin/ready", n.address))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    // and checks that it answers its health check
    let health = format!("http://{}/health", n.address);
    wait_until_async(
        "the node to be healthy",
        Duration::from_secs(20),
        || async {
            reqwest::get(&health)
                .await
                .is_ok_and(|r| r.status().is_success())
        },
    )
    .await;
}

/// A run that ended rollback_failed blocks the next run of its fleet until
/// a person resolves it (journaled, with who and why), on either journal.
async fn resolve_closes_a_failed_rollback(backend: Backend) {
    let env = Env::start_on(2, backend).await;
    let broken = env.path().join("broken");
    let plan = crate::exit_codes::breakable(&env, &broken);
    let p = plan.to_str().unwrap();
    assert_eq!(code(&env.run(&["run", p])), 0);
    let run = env.latest_run();
    std::fs::write(&broken, "").unwrap();
    let rb = env.run(&["rollback", &run]);
    assert_eq!(code(&rb), 7, "{}", stderr(&rb));
    assert!(
        stdout(&rb).contains(&format!("glidepath resolve {run}")),
        "the end of the failed rollback points at resolve: {}",
        stdout(&rb)
    );
    // a new run is refused, naming the run and what to check first
    let again = env.run(&["run", p]);
    assert_eq!(code(&again), 3, "{}", stderr(&again));
    let err = stderr(&again);
    assert!(err.contains(&format!("glidepath resolve {run}")), "{err}");
    assert!(err.contains("check the node(s) first"), "{err}");
    if backend == Backend::Postgres {
        assert!(err.contains(" --journal postgres://"), "{err}");
    }
    let refused = env.latest_run();
    assert_ne!(refused, run);
    // resume points at resolve too; resolve refuses other runs
    let r = env.run(&["resume", &run]);
    assert_eq!(code(&r), 9);
    assert!(
        stdout(&r).contains(&format!("glidepath resolve {run}")),
        "{}",
        stdout(&r)
    );
    let other = env.run(&["resolve", &refused, "--reason", "x"]);
    assert_eq!(code(&other), 9, "{}", stderr(&other));
    assert!(stderr(&other).contains("only a run that left a node for a person"));
    let empty = env.run(&["resolve", &run, "--reason", " "]);
    assert_eq!(code(&empty), 2);
    // a copy of the plan under another fleet name is refused all the same
    let renamed = env.path().join("renamed.toml");
    let text = std::fs::read_to_string(&plan).unwrap();
    assert!(text.contains("name  = \"demo\""), "{text}");
    std::fs::write(
        &renamed,
        text.replacen("name  = \"demo\"", "name = \"renamed-copy\"", 1),
    )
    .unwrap();
    let copy = env.run(&["run", renamed.to_str().unwrap()]);
    assert_eq!(code(&copy), 3, "{}", stderr(&copy));
    assert!(
        stderr(&copy).contains("a plan sharing nodes with fleet `renamed-copy`"),
        "{}",
        stderr(&copy)
    );
    // and so is a run from another journal on this machine
    let elsewhere = env.path().join("elsewhere.db");
    let other_journal = ["run", p, "--journal", elsewhere.to_str().unwrap()];
    let out = env
        .cmd(&other_journal)
        .env_remove("GLIDEPATH_JOURNAL")
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("was left for a person by run {run}")),
        "{}",
        stderr(&out)
    );
    for i in 0..2 {
        assert_eq!(
            env.node_state(i).await.0,
            "2",
            "no refused run touched a node"
        );
    }
    // resolving nodes that are still broken is refused, and nothing journaled
    let early = env.run(&["resolve", &run, "--reason", "looks fine"]);
    assert_eq!(code(&early), 3, "{}", stderr(&early));
    assert!(
        stderr(&early).contains("is still out of rotation"),
        "{}",
        stderr(&early)
    );
    assert!(stderr(&early).contains("--force"), "{}", stderr(&early));
    assert_eq!(env.journal().run(&run).unwrap().status, "rollback_failed");
    // the person fixes the nodes, then resolves
    std::fs::remove_file(&broken).unwrap();
    for i in 0..2 {
        fix_by_hand(&env, i).await;
    }
    env.assert_fleet(&["1", "1"]).await;
    let ok = env.run(&["resolve", &run, "--reason", "restarted both nodes by hand"]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    let events = env.events(&run);
    assert!(
        matches!(events.last(), Some(Event::Resolved { by, reason, .. })
            if reason == "restarted both nodes by hand" && by.contains('@')),
        "{:?}",
        events.last()
    );
    let status = env.run(&["status", &run, "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(v["status"], "resolved", "{v}");
    assert!(v["reason"]
        .as_str()
        .unwrap()
        .contains("restarted both nodes by hand"));
    let history = stdout(&env.run(&["history"]));
    assert!(history.contains("resolved"), "{history}");
    // the status column is padded like its header, the reason cut with an ellipsis
    let line = history.lines().find(|l| l.starts_with(&run)).unwrap();
    assert!(line.contains(&format!(" {:<16} ", "resolved")), "{history}");
    // the change ticket's report says who closed it and why
    let report = stdout(&env.run(&["report", &run]));
    assert!(
        report.contains("after the failed rollback: restarted both nodes by hand"),
        "{report}"
    );
    let twice = env.run(&["resolve", &run, "--reason", "again"]);
    assert_eq!(code(&twice), 9, "{}", stderr(&twice));
    // the other journal's run is no longer held back by this machine's marker
    let held = std::fs::read_dir(env.path().join("locks"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "held"))
        .count();
    assert_eq!(held, 0, "resolve removed the markers");
    // and the fleet may be rolled out again
    let next = env.run(&["run", p]);
    assert_eq!(code(&next), 0, "{}", stderr(&next));
    env.assert_fleet(&["2", "2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_closes_a_failed_rollback_in_sqlite() {
    resolve_closes_a_failed_rollback(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_closes_a_failed_rollback_in_postgres() {
    if !postgres_available() {
        return;
    }
    resolve_closes_a_failed_rollback(Backend::Postgres).await;
}

/// The same over ssh (a real sshd): the remote process holding the
/// session's output kept ssh open until the restart timed out; now the
/// restart is done when the remote command exits, and says what holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssh_restart_whose_background_child_holds_the_session_succeeds_and_says_so() {
    if !crate::real::available(&["sshd", "ssh"]) {
        return;
    }
    let env = Env::start(2).await;
    let sshd = glidepath::demo::infra::Sshd::start(&env.path().join("sshd"))
        .await
        .expect("sshd starts");
    let pids = env.path().join("bg.pids");
    let ticks = env.path().join("ticks");
    let rel = &env.v2;
    let head = glidepath::demo::plans::release_and_fleet(
        rel,
        &glidepath::demo::plans::relative_artifact(rel, env.path()),
        "ssh",
        &env.fleet.plan_nodes(),
    );
    let text = format!(
        r#"{head}
[strategy]
canary     = ["node-1"]
batch_size = 1

{balancer}
[deploy]
kind            = "ssh"
host            = "127.0.0.1"
user            = "root"
port            = {port}
identity_file   = "{key}"
ssh_options     = ["-o", "UserKnownHostsFile={known}"]
install_dir     = "{dir}/nodes/{{node}}"
restart         = "kill -HUP $(cat {{install_dir}}/node.pid); (i=0; while [ $i -lt 600 ]; do i=$((i+1)); echo $i > {ticks}.{{node}}; echo tick; sleep 0.1; done) & echo $! >> {pids}"
restart_timeout = "5s"

[health]
http        = "http://{{address}}/health"
version_url = "http://{{address}}/version"
deadline    = "15s"
interval    = "100ms"

[rollback]
on = ["health"]
"#,
        balancer = glidepath::demo::plans::HTTP_BALANCER,
        port = sshd.port,
        key = sshd.client_key.display(),
        known = sshd.known_hosts.display(),
        dir = env.path().display(),
        pids = pids.display(),
        ticks = ticks.display(),
    );
    let plan = env.path().join("ssh.toml");
    std::fs::write(&plan, text).unwrap();
    let t = std::time::Instant::now();
    let out = env.run(&["run", plan.to_str().unwrap()]);
    // the remote writer outlives glidepath (ssh holds its session, drained)
    let (after_exit, alive) = ticks_go_on(&ticks).await;
    for pid in std::fs::read_to_string(&pids).unwrap_or_default().lines() {
        if let Ok(p) = pid.trim().parse::<i32>() {
            // SAFETY: a process this test's plan started.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
    }
    let said = stdout(&out);
    assert_eq!(code(&out), 0, "{said}{}", stderr(&out));
    assert!(!said.contains("timed out"), "{said}");
    assert!(
        said.contains("its output: it counts as done") && said.contains("(pid"),
        "names the process holding the output: {said}"
    );
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    assert!(
        alive,
        "the remote writer outlived glidepath: ticks {after_exit}, then no more"
    );
    env.assert_fleet(&["2", "2"]).await;
}
