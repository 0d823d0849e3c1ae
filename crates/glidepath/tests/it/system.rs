//! `glidepath inventory` and `glidepath plan` against real version
//! endpoints (demo nodes), a command, and a static client list.

use crate::harness::*;

pub(crate) fn system_file(env: &Env) -> std::path::PathBuf {
    let servers: String = env
        .fleet
        .nodes
        .iter()
        .map(|n| {
            format!(
                "  {{ name = \"{}\", version_url = \"http://{}/version\" }},\n",
                n.name, n.address
            )
        })
        .collect();
    let text = format!(
        r#"[[component]]
name = "server"
instances = [
{servers}]
  [[component.release]]
  version = "1"
  protocols = {{ api = "1", agent = "1" }}
  [[component.release]]
  version = "2"
  protocols = {{ api = "1..2", agent = "1..2" }}
  [[component.release]]
  version = "3"
  protocols = {{ api = "2", agent = "2" }}
  capabilities = ["streaming"]

[[component]]
name = "cli"
talks_to = ["server"]
instances = [ {{ name = "laptops", version = "1.0", count = 250 }} ]
  [[component.release]]
  version = "1.0"
  protocols = {{ api = "1" }}
  [[component.release]]
  version = "2.0"
  protocols = {{ api = "2" }}

[[component]]
name = "agent"
talks_to = ["server"]
instances = [ {{ name = "agents", command = "echo 1.0", count = 1200 }} ]
  [[component.release]]
  version = "1.0"
  protocols = {{ agent = "1" }}
  [[component.release]]
  version = "2.0"
  protocols = {{ agent = "2" }}
  capabilities = ["streaming"]

[[capability]]
name = "streaming"
members = ["server", "agent"]
"#
    );
    let path = env.path().join("system.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_reads_endpoints_commands_and_static_lists() {
    let env = Env::start(3).await;
    let sys = system_file(&env);
    let out = env.run(&["inventory", sys.to_str().unwrap()]);
    assert_eq!(code(&out), 0);
    let text = stdout(&out);
    assert!(
        text.contains("laptops") && text.contains("250") && text.contains("1200"),
        "{text}"
    );
    assert!(
        text.contains("api: server 1 speaks 1 · cli 1.0 speaks 1"),
        "{text}"
    );
    assert!(
        text.contains("every communicating pair in use is compatible"),
        "{text}"
    );

    let out = env.run(&["inventory", sys.to_str().unwrap(), "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        v["instances"][0]["version"], "1",
        "read from the node's /version"
    );
    assert_eq!(v["instances"][4]["version"], "1.0", "read from the command");

    // node-3 now runs release 3: server 3 cannot talk to cli 1.0
    glidepath::drivers::deploy_local::stage_sync(&env.fleet.nodes[2].dir, &env.v3).unwrap();
    glidepath::drivers::deploy_local::switch_sync(&env.fleet.nodes[2].dir, "3", 3, None).unwrap();
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(env.fleet.nodes[2].pid() as i32, libc::SIGHUP) };
    wait_until(
        "node-3 serving 3",
        std::time::Duration::from_secs(20),
        || {
            std::process::Command::new("curl")
                .args([
                    "-fsS",
                    &format!("http://{}/version", env.fleet.nodes[2].address),
                ])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "3")
        },
    )
    .await;
    let out = env.run(&["inventory", sys.to_str().unwrap()]);
    assert_eq!(code(&out), 3, "incompatible pairs exit 3");
    assert!(
        stdout(&out)
            .contains("INCOMPATIBLE now: server 3 and cli 1.0 share no `api` protocol version"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_orders_the_bridge_first_and_explains_each_stage() {
    let env = Env::start(2).await;
    let sys = system_file(&env);
    let out = env.run(&[
        "plan",
        sys.to_str().unwrap(),
        "--to",
        "server=3",
        "--to",
        "cli=2.0",
        "--to",
        "agent=2.0",
        "--enable",
        "streaming",
        "--output",
        "json",
    ]);
    assert_eq!(code(&out), 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let stages = v["stages"].as_array().unwrap();
    let short: Vec<String> = stages
        .iter()
        .map(|s| match s["kind"].as_str().unwrap() {
            "upgrade" => format!(
                "{}→{}",
                s["component"].as_str().unwrap(),
                s["to"].as_str().unwrap()
            ),
            _ => format!("flag:{}", s["flag"].as_str().unwrap()),
        })
        .collect();
    assert_eq!(short.len(), 5, "{short:?}");
    assert_eq!(short[0], "server→2");
    assert_eq!(short[3], "server→3");
    assert_eq!(short[4], "flag:streaming");
    assert!(
        stages[0]["why"]
            .as_str()
            .unwrap()
            .starts_with("before the next stage: without it"),
        "{}",
        stages[0]
    );

    // unknown component / release: exit 2 with the choices
    let out = env.run(&["plan", sys.to_str().unwrap(), "--to", "server=9"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("server has no release `9` (releases: 1, 2, 3)"),
        "{}",
        stderr(&out)
    );

    // a target nothing can bridge: exit 3 with the broken pair
    let text = std::fs::read_to_string(&sys).unwrap().replace(
        "protocols = { api = \"1..2\", agent = \"1..2\" }",
        "protocols = { api = \"1\", agent = \"1\" }",
    );
    std::fs::write(&sys, text).unwrap();
    let out = env.run(&["plan", sys.to_str().unwrap(), "--to", "cli=2.0"]);
    assert_eq!(code(&out), 3);
    let err = stderr(&out);
    assert!(
        err.contains("cli 2.0")
            && err.contains("share no `api` protocol version")
            && err.contains("bridge release is missing"),
        "{err}"
    );
}

#[test]
fn system_file_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("system.toml");
    std::fs::write(
        &path,
        "[[component]]\nname = \"server\"\n  [[component.release]]\n  version = \"1\"\n  protocols = { api = \"2..1\" }\n\n[[component]]\nname = \"cli\"\ntalks_to = [\"sever\"]\ninstances = [ { name = \"x\" } ]\n  [[component.release]]\n  version = \"1\"\n  protocols = { api = \"1\" }\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["inventory", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid protocol range for `api`"), "{err}");
    assert!(
        err.contains("talks_to names unknown component `sever`"),
        "{err}"
    );
    assert!(err.contains("did you mean `server`?"), "{err}");
    assert!(
        err.contains("instance `x` needs exactly one of `version`, `version_url`, `command`"),
        "{err}"
    );
}

#[test]
fn the_shipped_system_example_plans() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/system/system.toml");
    let out = std::process::Command::new(BIN)
        .args([
            "plan",
            path.to_str().unwrap(),
            "--to",
            "server=2.0",
            "--to",
            "cli=2.0",
            "--to",
            "agent=2.0",
            "--enable",
            "streaming",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("5 stage(s)") && text.contains("1. server 1.0 → 1.5"),
        "{text}"
    );
    assert!(text.contains("roll out with: glidepath run"), "{text}");
    // the hand-off is a command to paste: a tidy path to the plan that
    // exists, and the stage's release rather than the plan's own
    let line = text
        .lines()
        .find(|l| l.contains("roll out with: glidepath run"))
        .unwrap();
    let plan = line.split_whitespace().nth(5).unwrap();
    assert!(!plan.contains("/../") && !plan.contains("/./"), "{line}");
    assert!(
        plan.ends_with("examples/haproxy-prometheus/plan.toml"),
        "{line}"
    );
    assert!(std::path::Path::new(plan).is_file(), "{line}");
    assert!(
        line.contains(" --release 1.5 --artifact PATH --sha256 HEX "),
        "{line}"
    );
}
