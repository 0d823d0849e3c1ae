//! Onboarding: `init` writes plans that validate, `adopt` makes a fleet
//! glidepath never deployed runnable (locally and over a real sshd), and
//! `demo --keep` leaves a fleet running until `demo --stop`.

use crate::harness::*;
use crate::real::available;
use glidepath::demo::fleet::write_release;
use glidepath::demo::node::{release_toml, Behaviour};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `glidepath ARGS` in `dir`, stdin a pipe kept open (a prompt would hang
/// for ever: the run is bounded and fails naming `args`).
fn glidepath_in(dir: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn glidepath");
    let _open_stdin = child.stdin.take();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("glidepath {args:?} hung (waiting for input?)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Every combination of balancer, deployer and metrics source `init`
/// offers gives a plan that `validate` accepts, and each says what it is.
#[test]
fn init_writes_a_valid_plan_for_every_combination_of_kinds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("dist")).unwrap();
    std::fs::write(dir.join("dist/app.tar"), "release 1.4\n").unwrap();
    for balancer in ["haproxy", "http", "command", "none"] {
        for deploy in ["local", "ssh", "command"] {
            for metrics in ["scrape", "prometheus", "none"] {
                let name = format!("{balancer}-{deploy}-{metrics}.toml");
                let out = glidepath_in(
                    dir,
                    &[
                        "init",
                        &name,
                        "--balancer",
                        balancer,
                        "--deploy",
                        deploy,
                        "--metrics",
                        metrics,
                        "--node",
                        "api-1=10.0.0.11:8080",
                        "--node",
                        "api-2=10.0.0.12:8080",
                        "--release",
                        "1.4",
                        "--artifact",
                        "dist/app.tar",
                    ],
                );
                assert_eq!(code(&out), 0, "{name}: {}", stderr(&out));
                let text = std::fs::read_to_string(dir.join(&name)).unwrap();
                let kind_line = |section: &str| {
                    text.split(section)
                        .nth(1)
                        .and_then(|rest| rest.lines().next())
                        .unwrap_or_default()
                        .to_string()
                };
                assert!(
                    kind_line("[balancer]\n").contains(&format!("\"{balancer}\"")),
                    "{name}:\n{text}"
                );
                assert!(
                    kind_line("[deploy]\n").contains(&format!("\"{deploy}\"")),
                    "{name}:\n{text}"
                );
                assert_eq!(
                    text.contains("\n[sli]\n"),
                    metrics != "none",
                    "{name}:\n{text}"
                );
                let v = glidepath_in(dir, &["validate", &name]);
                assert_eq!(
                    code(&v),
                    0,
                    "{name} does not validate:\n{}\n{text}",
                    stderr(&v)
                );
            }
        }
    }
}

/// The commands `init` prints next, its defaults off a terminal (never a
/// prompt), no overwrite without --force, and hostile input: reported as
/// `validate` would, nothing written.
#[test]
fn init_says_what_next_refuses_hostile_input_and_never_overwrites() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = glidepath_in(dir, &["init"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for next in [
        "glidepath hash ARTIFACT",
        "glidepath validate plan.toml",
        "glidepath adopt plan.toml",
        "glidepath run plan.toml",
    ] {
        assert!(stdout(&out).contains(next), "{next}: {}", stdout(&out));
    }
    assert!(
        stderr(&out).contains("--balancer none") && stderr(&out).contains("--deploy local"),
        "the defaults are said: {}",
        stderr(&out)
    );
    let first = std::fs::read_to_string(dir.join("plan.toml")).unwrap();
    let out = glidepath_in(dir, &["init", "--balancer", "http"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(dir.join("plan.toml")).unwrap(),
        first,
        "not overwritten"
    );
    let out = glidepath_in(dir, &["init", "--force", "--balancer", "http"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(std::fs::read_to_string(dir.join("plan.toml"))
        .unwrap()
        .contains("kind  = \"http\""));
    // a name that tries to leave its TOML string, and one that is shell
    for (node, expect) in [
        (
            "api-1\" }, ]\n[journal]\npath = \"/etc/x\"\n#=127.0.0.1:1",
            "invalid node name",
        ),
        ("$(touch PWNED)=127.0.0.1:1", "invalid node name"),
        ("api-1=127.0.0.1:1;reboot", "invalid address"),
    ] {
        let out = glidepath_in(dir, &["init", "hostile.toml", "--node", node]);
        assert_eq!(code(&out), 2, "{node}: {}", stderr(&out));
        assert!(stderr(&out).contains(expect), "{node}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("nothing was written"),
            "{}",
            stderr(&out)
        );
        assert!(!dir.join("hostile.toml").exists(), "{node}: written");
    }
    assert!(!dir.join("PWNED").exists());
}

/// Demo nodes started on release `version` the way a fleet is before
/// glidepath: `release.toml` in each node's dir, no `releases/`, no
/// `current`. Killed when dropped.
struct Fresh {
    nodes: Vec<(String, String, Running)>,
}

impl Fresh {
    async fn start(root: &Path, n: usize, version: &str) -> Fresh {
        let mut nodes = Vec::new();
        for i in 1..=n {
            let name = format!("node-{i}");
            let d = root.join("nodes").join(&name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("release.toml"), release_toml(&behaviour(version))).unwrap();
            let child = Command::new(BIN)
                .args(["demo-node", "--dir"])
                .arg(&d)
                .args(["--listen", "127.0.0.1:0"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            nodes.push((name, String::new(), Running::from(child)));
        }
        for (name, addr, _) in &mut nodes {
            let f = root.join("nodes").join(&*name).join("node.addr");
            wait_until("a demo node listens", Duration::from_secs(20), || {
                f.exists()
            })
            .await;
            *addr = std::fs::read_to_string(&f).unwrap().trim().to_string();
        }
        Fresh { nodes }
    }

    fn node_args(&self) -> Vec<String> {
        self.nodes
            .iter()
            .flat_map(|(n, a, _)| ["--node".to_string(), format!("{n}={a}")])
            .collect()
    }

    async fn versions(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (_, a, _) in &self.nodes {
            let v = reqwest::get(format!("http://{a}/version"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            out.push(v.trim().to_string());
        }
        out
    }
}

fn behaviour(version: &str) -> Behaviour {
    Behaviour {
        version: version.into(),
        error_rate: 0.0,
        latency_ms: 5.0,
        leak_after_s: None,
    }
}

fn links(root: &Path, n: usize) -> Vec<Option<PathBuf>> {
    (1..=n)
        .map(|i| std::fs::read_link(root.join(format!("nodes/node-{i}/current"))).ok())
        .collect()
}

/// A plan for the fresh fleet written by `init` (`deploy` extra flags).
fn init_plan(root: &Path, fleet: &Fresh, extra: &[&str]) -> PathBuf {
    let rel = write_release(&root.join("dist"), &behaviour("2")).unwrap();
    let mut args: Vec<String> = [
        "init",
        "plan.toml",
        "--balancer",
        "http",
        "--restart",
        "kill -HUP $(cat {install_dir}/node.pid)",
        "--version-url",
        "http://{address}/version",
        "--release",
        "2",
        "--artifact",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(rel.artifact.display().to_string());
    args.extend(fleet.node_args());
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = glidepath_in(root, &args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    root.join("plan.toml")
}

/// A fleet glidepath never deployed: preflight refuses it (no rollback
/// target, exit 3) and the hint names `adopt`; `adopt --dry-run` changes
/// nothing; `adopt` records release 1 on every node while the nodes keep
/// serving (same processes, never restarted); a second `adopt` leaves them
/// alone; then `run` goes through, and a rollback returns to the adopted
/// release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_makes_a_fleet_never_deployed_by_glidepath_runnable() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let fleet = Fresh::start(root, 3, "1").await;
    let plan = init_plan(root, &fleet, &["--install-dir", "nodes/{node}"]);
    let plan = plan.to_str().unwrap();
    let journal = root.join("glidepath.db");
    let j = journal.to_str().unwrap();
    let out = glidepath_in(root, &["run", plan, "--journal", j]);
    assert_eq!(code(&out), 3, "{}{}", stdout(&out), stderr(&out));
    let all = stdout(&out) + &stderr(&out);
    assert!(all.contains("rollback-target"), "{all}");
    assert!(
        all.contains("glidepath adopt"),
        "the hint names adopt: {all}"
    );

    let out = glidepath_in(root, &["adopt", plan, "--dry-run"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("would copy"), "{}", stdout(&out));
    assert_eq!(
        links(root, 3),
        [None, None, None],
        "a dry run changes nothing"
    );

    let pids: Vec<u32> = fleet.nodes.iter().map(|(_, _, c)| c.id()).collect();
    let out = glidepath_in(root, &["adopt", plan]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        stdout(&out).matches("✓ adopted").count(),
        3,
        "{}",
        stdout(&out)
    );
    let adopted = Some(PathBuf::from("releases/1"));
    assert_eq!(links(root, 3), [adopted.clone(), adopted.clone(), adopted]);
    for i in 1..=3 {
        assert!(root
            .join(format!("nodes/node-{i}/releases/1/release.toml"))
            .is_file());
    }
    assert_eq!(fleet.versions().await, ["1", "1", "1"], "still serving");
    for ((_, _, c), pid) in fleet.nodes.iter().zip(&pids) {
        assert_eq!(c.id(), *pid);
    }
    let out = glidepath_in(root, &["adopt", plan]);
    assert_eq!(code(&out), 0);
    assert_eq!(
        stdout(&out)
            .matches("already adopted (current -> releases/1)")
            .count(),
        3,
        "{}",
        stdout(&out)
    );

    let out = glidepath_in(root, &["run", plan, "--journal", j]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(fleet.versions().await, ["2", "2", "2"]);
    let out = glidepath_in(root, &["rollback", "latest", "--journal", j]);
    assert!(
        stdout(&out).contains("rolled back 3 node(s)"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(
        fleet.versions().await,
        ["1", "1", "1"],
        "back on the adopted release"
    );
}

/// `adopt` with a command deployer says it does not apply, and what to
/// do; without a version to record (no --release, no version_url) it is
/// bad input; a version the nodes do not serve refuses every node, changing
/// none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_refuses_what_it_cannot_do_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let fleet = Fresh::start(root, 2, "1").await;
    let plan = init_plan(root, &fleet, &["--install-dir", "nodes/{node}"]);
    let p = plan.to_str().unwrap();
    let out = glidepath_in(root, &["adopt", p, "--release", "7"]);
    assert_eq!(code(&out), 3, "{}", stdout(&out));
    assert!(stdout(&out).contains("it serves 1"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("nothing was changed"),
        "{}",
        stdout(&out)
    );
    assert_eq!(links(root, 2), [None, None]);
    let text = std::fs::read_to_string(&plan).unwrap();
    std::fs::write(&plan, text.replace("version_url = ", "# version_url = ")).unwrap();
    let out = glidepath_in(root, &["adopt", p]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("--release VERSION"),
        "{}",
        stderr(&out)
    );
    let out = glidepath_in(
        root,
        &[
            "init",
            "cmd.toml",
            "--deploy",
            "command",
            "--artifact",
            "dist/2/release.toml",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = glidepath_in(root, &["adopt", "cmd.toml", "--release", "1"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("adopt does not apply"),
        "{}",
        stderr(&out)
    );
}

/// The same over a real sshd: the remote commands copy each node's
/// install into releases/1 and point `current` at it; then a run and a
/// rollback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_over_ssh_through_a_real_sshd() {
    if !available(&["sshd", "ssh"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let fleet = Fresh::start(root, 2, "1").await;
    let sshd = glidepath::demo::infra::Sshd::start(&root.join("sshd"))
        .await
        .expect("sshd starts");
    // an entry with a space and a quote, and one left out
    std::fs::write(root.join("nodes/node-1/it's a file"), "x").unwrap();
    std::fs::write(root.join("nodes/node-1/app.log"), "log").unwrap();
    let plan = init_plan(
        root,
        &fleet,
        &[
            "--deploy",
            "ssh",
            "--install-dir",
            &format!("{}/nodes/{{node}}", root.display()),
        ],
    );
    let text = std::fs::read_to_string(&plan).unwrap();
    let text = text.replace(
        "# user        = \"deploy\"",
        &format!(
            "host = \"127.0.0.1\"\nuser = \"root\"\nport = {}\nidentity_file = \"{}\"\nssh_options = [\"-o\", \"UserKnownHostsFile={}\"]",
            sshd.port,
            sshd.client_key.display(),
            sshd.known_hosts.display()
        ),
    );
    std::fs::write(&plan, text).unwrap();
    let p = plan.to_str().unwrap();
    let j = root.join("glidepath.db");
    let j = j.to_str().unwrap();
    let out = glidepath_in(root, &["preflight", p, "--journal", j]);
    assert_eq!(code(&out), 3, "{}{}", stdout(&out), stderr(&out));
    let out = glidepath_in(root, &["adopt", p, "--exclude", "app.log"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let adopted = Some(PathBuf::from("releases/1"));
    assert_eq!(links(root, 2), [adopted.clone(), adopted]);
    let r1 = root.join("nodes/node-1/releases/1");
    assert!(r1.join("it's a file").is_file() && r1.join("release.toml").is_file());
    assert!(!r1.join("app.log").exists(), "--exclude is left out");
    let out = glidepath_in(root, &["adopt", p]);
    assert_eq!(
        stdout(&out).matches("already adopted").count(),
        2,
        "{}",
        stdout(&out)
    );
    let out = glidepath_in(root, &["run", p, "--journal", j]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(fleet.versions().await, ["2", "2"]);
    let out = glidepath_in(root, &["rollback", "latest", "--journal", j]);
    assert!(
        stdout(&out).contains("rolled back 2 node(s)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(fleet.versions().await, ["1", "1"]);
}

/// Stops what `demo --keep` left running when the test ends, however it
/// ends (by pid, through the same check `demo --stop` makes).
struct KeptFleet(PathBuf);

impl Drop for KeptFleet {
    fn drop(&mut self) {
        let _ = glidepath::demo::fleet::stop_kept(&self.0);
    }
}

/// `demo --keep` leaves the demo nodes answering after the demo exits,
/// prints how to stop them, and `demo --stop DIR` stops exactly those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_keep_leaves_the_fleet_running_until_demo_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kept");
    let _guard = KeptFleet(dir.clone());
    let d = dir.to_str().unwrap();
    let out = glidepath_in(
        tmp.path(),
        &[
            "demo",
            "--keep",
            "--dir",
            d,
            "--nodes",
            "2",
            "--window",
            "2s",
            "--probe-interval",
            "500ms",
        ],
    );
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let stop = format!("glidepath demo --stop {d}");
    assert!(stdout(&out).contains(&stop), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(&format!(
            "glidepath status latest --journal {d}/glidepath.db"
        )),
        "{}",
        stdout(&out)
    );
    let addrs: Vec<String> = (1..=2)
        .map(|i| {
            std::fs::read_to_string(dir.join(format!("nodes/node-{i}/node.addr")))
                .unwrap()
                .trim()
                .to_string()
        })
        .collect();
    for a in &addrs {
        let r = reqwest::get(format!("http://{a}/health")).await;
        assert!(
            r.is_ok_and(|r| r.status().is_success()),
            "{a} answers after the demo ended"
        );
    }
    assert!(dir.join("logs/node-1.log").is_file());
    let out = glidepath_in(tmp.path(), &["demo", "--stop", d]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stdout(&out).matches(": stopped").count(),
        2,
        "{}",
        stdout(&out)
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    for a in &addrs {
        let url = format!("http://{a}/health");
        wait_until_async("the node stops answering", Duration::from_secs(10), || {
            let (c, u) = (client.clone(), url.clone());
            async move { c.get(&u).send().await.is_err() }
        })
        .await;
    }
    let out = glidepath_in(tmp.path(), &["demo", "--stop", d]);
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).contains("no demo node"), "{}", stdout(&out));
}
