//! Refusals before any change, against real demo-node processes: the
//! artifact checksum, unreachable nodes, a node reporting shell as its
//! release, the declared gates (and forcing them), the restart target
//! check, and a missing last-known-good release.

use crate::harness::*;
use crate::rollout::knobs;
use glidepath::demo::plans::{relative_artifact, release_and_fleet};
use glidepath_core::Event;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_refusals_change_nothing() {
    let mut env = Env::start(2).await;
    // artifact changed after review: checksum gate
    let plan = env.plan(&env.v2, &knobs());
    let good = std::fs::read_to_string(&env.v2.artifact).unwrap();
    std::fs::write(
        &env.v2.artifact,
        good.replace("latency_ms", "latency_ms = 1\n#"),
    )
    .unwrap();
    let out = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 3, "exit 3: gate refused");
    assert!(stderr(&out).contains("refusing to deploy an artifact that is not the one reviewed"));
    std::fs::write(&env.v2.artifact, good).unwrap();
    env.assert_fleet(&["1", "1"]).await;
    // a node that does not answer: a node unhealthy before the run
    env.traffic.take().unwrap().stop().await;
    env.fleet.nodes[1].kill();
    let out = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 3, "exit 3: a node down is unhealthy");
    assert!(
        stderr(&out).contains("node-2") && stderr(&out).contains("no node was changed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.current_links(), ["1", "1"]);
    let runs = env.journal().runs(10).unwrap();
    assert!(
        runs.iter().all(|r| r.status == "refused"),
        "refused runs are journaled as such"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_reports_refusals_too() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs());
    std::fs::write(&env.v2.artifact, "tampered").unwrap();
    let out = env.run(&["run", plan.to_str().unwrap(), "--output", "json"]);
    assert_eq!(code(&out), 3);
    // one document on stdout, nothing else
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["exit_code"], 3);
    assert!(v["error"].as_str().unwrap().contains("sha256"));
}

/// A node that *reports* shell as its release (the command deployer's
/// `current` printed `1;touch PWNED`) is refused in preflight, named, and
/// the report never reaches a shell (here: the health command's `{version}`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reporting_shell_as_its_release_is_refused() {
    let env = Env::start(2).await;
    let head = release_and_fleet(
        &env.v2,
        &relative_artifact(&env.v2, env.path()),
        "reported",
        &env.fleet.plan_nodes(),
    );
    let text = format!(
        r#"{head}
[strategy]
canary = ["node-1"]

[balancer]
kind = "none"

[deploy]
kind    = "command"
install_dir = "{dir}/nodes/{{node}}"
current = "case {{node}} in node-2) echo '1;touch PWNED' ;; *) basename \"$(readlink {{install_dir}}/current)\" ;; esac"
stage   = "false"
switch  = "false"
restart = "kill -HUP $(cat {{install_dir}}/node.pid)"

[health]
http    = "http://{{address}}/health"
command = "test -n {{version}}"

[rollback]
on = ["health"]
"#,
        dir = env.path().display(),
    );
    let plan = env.path().join("reported.toml");
    std::fs::write(&plan, text).unwrap();
    let out = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 3, "refused before any change");
    assert!(
        stdout(&out).contains("node node-2 reports \"1;touch PWNED\" as its current release"),
        "{}",
        stdout(&out)
    );
    assert!(
        !env.path().join("PWNED").exists(),
        "the reported release ran as shell"
    );
    env.assert_fleet(&["1", "1"]).await;
    assert_eq!(env.current_links(), ["1", "1"]);
}

/// Declared gates: a freeze window refuses the run before any change; a
/// forced gate runs, and the journal says who forced it and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_refuse_and_forcing_is_journaled() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs());
    let migrations = env.path().join("migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    std::fs::write(
        migrations.join("0001_add.sql"),
        "SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN nick text;\n",
    )
    .unwrap();
    std::fs::write(
        migrations.join("0002_drop.post.sql"),
        "SET lock_timeout = '2s';\nALTER TABLE users DROP COLUMN old;\n",
    )
    .unwrap();
    std::fs::write(
        env.path().join("deprecations.toml"),
        "[[key]]\nname = \"API_LEGACY\"\ndeprecated_in = \"2\"\nreplacement = \"API_NEW\"\n",
    )
    .unwrap();
    for n in &env.fleet.nodes {
        std::fs::write(n.dir.join("app.env"), "API_LEGACY=1\n").unwrap();
    }
    let gates = "\n[gates.config]\nmatrix = \"deprecations.toml\"\nfiles = [\"{install_dir}/app.env\"]\nenv = [\"API_MODE\", \"API_TOKEN\"]\nenv_clear = [\"API_MODE\"]\n\n[gates.migrations]\ndir = \"migrations\"\n\n[[gates.freeze]]\nname = \"always\"\nfrom = \"2000-01-01T00:00:00Z\"\nto = \"2100-01-01T00:00:00Z\"\n\n[[gates.custom]]\nname = \"ticket\"\ncommand = \"true\"\n";
    let text = std::fs::read_to_string(&plan).unwrap() + gates;
    std::fs::write(&plan, text).unwrap();

    let out = env.run(&["preflight", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 3);
    let table = stdout(&out);
    assert!(
        table.contains("migrations") && table.contains("2 file(s) safe"),
        "{table}"
    );
    assert!(
        table.contains("freeze                 FAIL     inside freeze window `always`"),
        "{table}"
    );
    assert!(table.contains("ticket                 pass"), "{table}");
    assert!(
        table.contains("config                 warn     `API_LEGACY` in"),
        "{table}"
    );
    assert!(
        table.contains(
            "rollback-target        pass     last-known-good releases: node-1=1 node-2=1"
        ),
        "{table}"
    );

    let out = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 3, "a gate refused");
    assert!(
        stderr(&out).contains("freeze: inside freeze window `always`")
            && stderr(&out).contains("--force freeze"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.current_links(), ["1", "1"]);

    let out = env.run(&["run", plan.to_str().unwrap(), "--force", "freeze"]);
    assert_eq!(code(&out), 2, "--force needs --reason");

    let out = env
        .cmd(&[
            "run",
            plan.to_str().unwrap(),
            "--force",
            "freeze",
            "--reason",
            "CVE-2026-1234 hotfix, approved in CHG-42",
        ])
        .env("API_MODE", "fast")
        .env("API_TOKEN", "s3cr3t-value")
        .env("XDG_STATE_HOME", env.path().join("state"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).contains("FORCED"), "{}", stdout(&out));
    let run = env.latest_run();
    let forced = env.events(&run).into_iter().find_map(|e| match e {
        Event::GateForced {
            gate, reason, by, ..
        } => Some((gate, reason, by)),
        _ => None,
    });
    let (gate, reason, by) = forced.expect("the override is journaled");
    assert_eq!(gate, "freeze");
    assert_eq!(reason, "CVE-2026-1234 hotfix, approved in CHG-42");
    assert!(by.contains('@'), "who: {by}");
    let status = env.run(&["status", &run]);
    assert!(
        stdout(&status).contains("gate `freeze` forced by"),
        "{}",
        stdout(&status)
    );
    // the snapshot: config hashes and env values, the secret fingerprinted and nowhere in the journal
    let snap = env.events(&run).into_iter().find_map(|e| match e {
        Event::Snapshot {
            config_hashes, env, ..
        } => Some((config_hashes, env)),
        _ => None,
    });
    let (hashes, vars) = snap.expect("a snapshot is journaled");
    assert_eq!(hashes.len(), 2);
    assert_eq!(vars[0], ("API_MODE".to_string(), "fast".to_string()));
    assert_eq!(vars[1].0, "API_TOKEN");
    assert!(vars[1].1.starts_with("hmac-sha256:"), "{vars:?}");
    let db = std::fs::read(env.journal_path()).unwrap();
    assert!(
        !db.windows(12).any(|w| w == b"s3cr3t-value"),
        "the secret never reaches the journal"
    );
    env.assert_fleet(&["2", "2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsafe_migration_or_failing_custom_gate_refuses_the_run() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs());
    let migrations = env.path().join("migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    std::fs::write(
        migrations.join("0003_drop.sql"),
        "SET lock_timeout = '2s';\nALTER TABLE users DROP COLUMN nickname;\n",
    )
    .unwrap();
    let text = std::fs::read_to_string(&plan).unwrap() + "\n[gates.migrations]\ndir = \"migrations\"\n\n[[gates.custom]]\nname = \"change-ticket\"\ncommand = \"echo 'CHG-7 is not approved' >&2; exit 1\"\n";
    std::fs::write(&plan, text).unwrap();
    let out = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 3);
    let err = stderr(&out);
    assert!(
        err.contains("migrations: backward-incompatible") && err.contains("ban-drop-column"),
        "{err}"
    );
    assert!(
        err.contains("change-ticket") && err.contains("CHG-7 is not approved"),
        "{err}"
    );
    assert_eq!(env.current_links(), ["1", "1"]);
    // built-in gates cannot be forced, unknown gates are named
    let out = env.run(&[
        "run",
        plan.to_str().unwrap(),
        "--force",
        "no-such-gate",
        "--reason",
        "x",
    ]);
    assert_eq!(code(&out), 3);
    assert!(
        stderr(&out).contains("the plan has no gate `no-such-gate`"),
        "{}",
        stderr(&out)
    );
}

/// Reachability and permissions are proven before anything changes: a
/// restart target that does not exist refuses the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_target_check_refuses_before_any_change() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs());
    let good = std::fs::read_to_string(&plan).unwrap().replace(
        "keep_releases = 3",
        "keep_releases = 3\ncheck = \"test -f {install_dir}/node.pid\"",
    );
    std::fs::write(
        &plan,
        good.replace(
            "test -f {install_dir}/node.pid",
            "systemctl-cat-nosuch-unit api",
        ),
    )
    .unwrap();
    let out = env.run(&["preflight", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 3);
    assert!(
        stdout(&out)
            .contains("permissions            FAIL     node-1: restart target check failed"),
        "{}",
        stdout(&out)
    );
    assert_eq!(code(&env.run(&["run", plan.to_str().unwrap()])), 3);
    assert_eq!(env.current_links(), ["1", "1"]);
    std::fs::write(&plan, good).unwrap();
    let out = env.run(&["preflight", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert!(
        stdout(&out).contains("install dirs writable, restart target checked on 2 node(s)"),
        "{}",
        stdout(&out)
    );
}

/// `since_git`: only the migrations added since a revision are the release's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_since_a_git_revision() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs());
    let m = env.path().join("migrations");
    std::fs::create_dir_all(&m).unwrap();
    let git = |args: &[&str]| {
        let o = std::process::Command::new("git")
            .args(args)
            .current_dir(&m)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    git(&["init", "-q"]);
    // an old, already-deployed migration that would fail today's lint
    std::fs::write(m.join("0001_old.sql"), "DROP TABLE legacy;\n").unwrap();
    git(&["add", "."]);
    git(&[
        "-c",
        "user.email=t@e",
        "-c",
        "user.name=t",
        "commit",
        "-qm",
        "1.0.9",
    ]);
    git(&["tag", "v1"]);
    std::fs::write(
        m.join("0002_new.sql"),
        "SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN nick text;\n",
    )
    .unwrap();
    git(&["add", "."]);
    git(&[
        "-c",
        "user.email=t@e",
        "-c",
        "user.name=t",
        "commit",
        "-qm",
        "1.0.10",
    ]);
    let text = std::fs::read_to_string(&plan).unwrap();
    let preflight_since = |since: &str| {
        let gate = format!("\n[gates.migrations]\ndir = \"migrations\"\nsince_git = \"{since}\"\n");
        std::fs::write(&plan, text.clone() + &gate).unwrap();
        env.run(&["preflight", plan.to_str().unwrap()])
    };
    // the tag, then the release the fleet runs now (1) naming it: v{deployed} = v1
    for since in ["v1", "v{deployed}"] {
        let out = preflight_since(since);
        assert_eq!(code(&out), 0, "{since}: {}", stdout(&out));
        assert!(
            stdout(&out).contains("migrations             pass     1 file(s) safe"),
            "{since}: {}",
            stdout(&out)
        );
    }
    let out = preflight_since("no-such-tag");
    assert_eq!(code(&out), 3);
    assert!(
        stdout(&out).contains("git diff no-such-tag"),
        "{}",
        stdout(&out)
    );
}

/// A node whose releases/ lost its last-known-good release: refused, unless
/// the plan provides it as a [rollback] artifact, which a rollback restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provided_rollback_artifact_restores_a_missing_last_known_good() {
    let env = Env::start(2).await;
    for n in &env.fleet.nodes {
        std::fs::remove_dir_all(n.dir.join("releases/1")).unwrap(); // current → releases/1 now dangles
    }
    let plan = env.plan(&env.v3, &knobs());
    let out = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 3);
    assert!(
        stderr(&out).contains(
            "the current release 1 is missing from releases/ (provide it with [rollback] artifact"
        ),
        "{}",
        stderr(&out)
    );
    let artifact = relative_artifact(&env.v1, env.path());
    let text = std::fs::read_to_string(&plan).unwrap().replace("[rollback]\non = [\"health\", \"sli\"]", &format!("[rollback]\non = [\"health\", \"sli\"]\nartifact = \"{artifact}\"\nversion = \"1\"\nsha256 = \"{}\"", env.v1.sha256));
    std::fs::write(&plan, text).unwrap();
    let out = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "the bad canary was rolled back");
    assert!(
        stdout(&out).contains("restored from the [rollback] artifact"),
        "{}",
        stdout(&out)
    );
    env.assert_fleet(&["1", "1"]).await;
    assert!(env.fleet.nodes[0]
        .dir
        .join("releases/1/release.toml")
        .exists());
}

/// A node someone took out of rotation (maintenance, a failed run's kept-
/// out node) is refused at preflight: the rollout would put it back into
/// rotation without their say. Back in rotation, the same plan runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_already_out_of_rotation_is_refused() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &knobs());
    let admin = |what: &str| format!("http://{}/admin/{what}", env.fleet.nodes[1].address);
    reqwest::Client::new()
        .post(admin("drain"))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let out = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("node-2 is out of rotation before the rollout"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.current_links(), ["1", "1"]);
    reqwest::Client::new()
        .post(admin("ready"))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let out = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    env.assert_fleet(&["2", "2"]).await;
}
