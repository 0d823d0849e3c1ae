//! Templates that fit real fleets: `{port}`, `{version}` and `{previous}`
//! in the commands and checks of a real rollout and rollback, a health
//! `body` naming the release (checked against the old release at
//! preflight, the new one after the switch), and a multi-line command shown
//! by its first line only.

use crate::harness::*;
use crate::plans::diagnose;
use glidepath::demo::DemoPlan;
use glidepath_core::{Event, StepKind};

/// A restart script of three lines that logs its placeholders before the
/// usual `kill -HUP`, a health check whose body is the release (the demo
/// node's `/version` answers it with 200), and a
/// `[[pre]]` task that records `{previous}`.
fn templated(plan: &std::path::Path) {
    let src = std::fs::read_to_string(plan).unwrap();
    let restart = "restart       = \"kill -HUP $(cat {install_dir}/node.pid)\"";
    assert!(src.contains(restart), "{src}");
    let src = src
        .replace(
            restart,
            "restart = '''\n# restart the demo node\necho \"{node} {port} {version} {previous}\" >> {plan_dir}/restarts.log\nkill -HUP $(cat {install_dir}/node.pid)\n'''",
        )
        .replace(
            "[health]\nhttp        = \"http://{address}/health\"\n",
            "[health]\nhttp        = \"http://{address}/version\"\nbody        = \"{version}\"\n",
        );
    assert!(src.contains("body        = \"{version}\""), "{src}");
    let src = format!(
        "{src}\n[[pre]]\nname = \"note-previous\"\nrun  = \"echo {{previous}} > {{plan_dir}}/previous.txt\"\n"
    );
    std::fs::write(plan, src).unwrap();
}

fn log_lines(env: &Env) -> Vec<String> {
    std::fs::read_to_string(env.path().join("restarts.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn port(env: &Env, i: usize) -> String {
    let a = &env.fleet.nodes[i].address;
    a.rsplit_once(':').unwrap().1.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placeholders_follow_the_release_each_step_is_about() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v2, &DemoPlan::quick("2s", 3));
    templated(&plan);
    let out = env.run(&["run", plan.to_str().unwrap()]);
    // preflight checked the old fleet's body with `1`: it passed
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    env.assert_fleet(&["2", "2"]).await;
    assert_eq!(
        log_lines(&env),
        [
            format!("node-1 {} 2 1", port(&env, 0)),
            format!("node-2 {} 2 1", port(&env, 1)),
        ]
    );
    let prev = std::fs::read_to_string(env.path().join("previous.txt")).unwrap();
    assert_eq!(prev.trim(), "1");
    // the narration and the journal show the script's first line only
    let text = stdout(&out);
    assert!(
        text.contains("# restart the demo node … (+2 lines)"),
        "{text}"
    );
    assert!(!text.contains("kill -HUP"), "{text}");
    let events = env.events(&env.latest_run());
    let restarts: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Outcome { step, outcome, .. } if step.kind == StepKind::Restart => {
                Some(&outcome.detail)
            }
            _ => None,
        })
        .collect();
    assert_eq!(restarts.len(), 2);
    for d in restarts {
        assert!(d.contains("(+2 lines)") && !d.contains("kill"), "{d}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_restarts_with_the_last_known_good_as_version() {
    let env = Env::start(2).await;
    let plan = env.plan(&env.v3, &DemoPlan::quick("3s", 3));
    templated(&plan);
    let out = env.run(&["run", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "the breach rolls back: {}", stdout(&out));
    env.assert_fleet(&["1", "1"]).await;
    let p = port(&env, 0);
    // forward to 3, then back to 1; the body check passed on each release
    assert_eq!(
        log_lines(&env),
        [format!("node-1 {p} 3 1"), format!("node-1 {p} 1 1")]
    );
}

#[test]
fn port_needs_an_address_with_a_port() {
    let (dir, good) = crate::plans::setup();
    let src = good.replacen("127.0.0.1:9002", "127.0.0.1", 1).replacen(
        "restart     = \"systemctl restart api\"",
        "restart     = \"systemctl restart api@{port}\"",
        1,
    );
    assert_ne!(src, good);
    let text = diagnose(dir.path(), &src);
    assert!(
        text.contains(
            "`{port}` is used here, but node `api-2` has no port in its address `127.0.0.1`"
        ),
        "{text}"
    );
    assert!(text.contains("host:port"), "{text}");
    // with every address carrying a port, `{port}` and `{previous}` are fine
    let ok = good.replacen(
        "restart     = \"systemctl restart api\"",
        "restart     = \"systemctl restart api@{port} # from {previous}\"",
        1,
    );
    let text = diagnose(dir.path(), &ok);
    assert_eq!(text, "valid");
}

/// `[journal] path` is relative to the plan's directory: a path that
/// repeats that directory (written from the working directory) is warned
/// about, naming where the journal really goes.
#[test]
fn a_journal_path_repeating_the_plan_directory_is_warned_about() {
    let (tmp, good) = crate::plans::setup();
    let cwd = std::env::current_dir().unwrap();
    let dir = cwd.join("results/dev");
    let art = tmp.path().join("dist/2/release.toml");
    let src = good.replace("dist/2/release.toml", art.to_str().unwrap());
    let with = |p: &str| format!("{src}\n[journal]\npath = \"{p}\"\n");
    let parse = |s: &str| {
        glidepath::plan::parse(std::path::Path::new("results/dev/plan.toml"), s, &dir)
            .map(|(_, warnings)| warnings.short())
            .map_err(|e| format!("{e:?}"))
    };
    let text = parse(&with("results/dev/glidepath.db")).unwrap();
    assert!(
        text.contains("`path` in [journal] is relative to the plan's directory (results/dev), like every path in a plan: this journal is results/dev/results/dev/glidepath.db"),
        "{text}"
    );
    assert!(text.contains("write path = \"glidepath.db\""), "{text}");
    let text = parse(&with("glidepath.db")).unwrap();
    assert!(!text.contains("[journal]"), "{text}");
}
