//! `glidepath upgrade`: a server, its CLI and its agents, each a fleet of
//! real demo nodes with its own rollout plan, and a protocol change that
//! needs a bridge release of the server. The campaign runs the planner's
//! stages in order (server to the bridge, the clients, the server again,
//! then the capability flag through its command), stops at a bad release
//! with the earlier stages in place, and survives a kill -9 mid-stage.

use crate::harness::*;
use crate::json::doc;
use glidepath::demo::fleet::{write_release, LocalFleet, Traffic};
use glidepath::demo::node::Behaviour;
use glidepath::demo::{plan_text, relative_artifact, DemoPlan};
use glidepath::journal::{CampaignStatus, StageAction, StageStatus};
use glidepath::plan::Release;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const TARGET: [&str; 9] = [
    "--to",
    "server=2.0",
    "--to",
    "cli=2.0",
    "--to",
    "agent=2.0",
    "--enable",
    "streaming",
    "--timeout",
];

struct Component {
    name: &'static str,
    fleet: LocalFleet,
    _traffic: Traffic,
}

struct System {
    dir: tempfile::TempDir,
    components: Vec<Component>,
    file: PathBuf,
}

fn behaviour(version: &str, bad: bool) -> Behaviour {
    Behaviour {
        version: version.into(),
        error_rate: if bad { 0.25 } else { 0.0 },
        latency_ms: if bad { 80.0 } else { 10.0 },
        leak_after_s: None,
    }
}

/// Three components, each a fleet of 2 demo nodes on release 1.0 with
/// traffic and a rollout plan; `bad` names a release that makes its canary
/// unhealthy (a breach of the SLI checks).
async fn system(bad: Option<(&str, &str)>) -> System {
    let dir = tempfile::Builder::new()
        .prefix("glidepath-upgrade-")
        .tempdir()
        .unwrap();
    // name, node prefix, releases (protocols as the system file says them)
    let decl: [(&str, &str, &[&str]); 3] = [
        ("server", "srv", &["1.0", "1.5", "2.0"]),
        ("cli", "cli", &["1.0", "2.0"]),
        ("agent", "agt", &["1.0", "2.0"]),
    ];
    let mut components = Vec::new();
    let mut releases: Vec<(&str, Vec<Release>)> = Vec::new();
    for (name, prefix, versions) in decl {
        let cdir = dir.path().join(name);
        let rels: Vec<Release> = versions
            .iter()
            .map(|v| {
                let b = behaviour(v, bad == Some((name, v)));
                write_release(&cdir.join("dist"), &b).unwrap()
            })
            .collect();
        let fleet = LocalFleet::start_named(Path::new(BIN), &cdir, prefix, 2, &rels[0]).unwrap();
        let knobs = DemoPlan {
            fleet: name.into(),
            ..DemoPlan::quick("2s", 5)
        };
        // the plan names release 1.0; each stage overrides it
        let text = plan_text(
            &fleet,
            &rels[0],
            &relative_artifact(&rels[0], &cdir),
            &knobs,
        );
        std::fs::write(cdir.join("plan.toml"), text).unwrap();
        components.push(Component {
            name,
            _traffic: fleet.traffic(100),
            fleet,
        });
        releases.push((name, rels));
    }
    let instances = |c: &Component| -> String {
        c.fleet
            .nodes
            .iter()
            .map(|n| {
                format!(
                    "{{ name = \"{}\", version_url = \"http://{}/version\" }}, ",
                    n.name, n.address
                )
            })
            .collect()
    };
    let rel = |name: &str, v: &str, extra: &str| -> String {
        let r = releases
            .iter()
            .find(|x| x.0 == name)
            .unwrap()
            .1
            .iter()
            .find(|r| r.version == v)
            .unwrap();
        format!(
            "  [[component.release]]\n  version = \"{v}\"\n  artifact = \"{}\"\n  sha256 = \"{}\"\n  {extra}\n",
            relative_artifact(r, dir.path()),
            r.sha256
        )
    };
    let text = format!(
        r#"[[component]]
name = "server"
rollout_plan = "server/plan.toml"
instances = [ {srv}]
{s10}{s15}{s20}
[[component]]
name = "cli"
talks_to = ["server"]
rollout_plan = "cli/plan.toml"
instances = [ {cli}]
{c10}{c20}
[[component]]
name = "agent"
talks_to = ["server"]
rollout_plan = "agent/plan.toml"
instances = [ {agt}]
{a10}{a20}
[[capability]]
name = "streaming"
members = ["server", "agent"]
enable = "echo {{flag}} {{campaign}} > flag-on.txt"
timeout = "10s"
"#,
        srv = instances(&components[0]),
        cli = instances(&components[1]),
        agt = instances(&components[2]),
        s10 = rel("server", "1.0", "protocols = { api = \"1\", sync = \"1\" }"),
        s15 = rel(
            "server",
            "1.5",
            "protocols = { api = \"1..2\", sync = \"1\" }"
        ),
        s20 = rel(
            "server",
            "2.0",
            "protocols = { api = \"2\", sync = \"2\" }\n  capabilities = [\"streaming\"]"
        ),
        c10 = rel("cli", "1.0", "protocols = { api = \"1\" }"),
        c20 = rel("cli", "2.0", "protocols = { api = \"2\" }"),
        a10 = rel("agent", "1.0", "protocols = { sync = \"1\" }"),
        a20 = rel(
            "agent",
            "2.0",
            "protocols = { sync = \"1..2\" }\n  capabilities = [\"streaming\"]"
        ),
    );
    let file = dir.path().join("system.toml");
    std::fs::write(&file, text).unwrap();
    System {
        dir,
        components,
        file,
    }
}

impl System {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(self.path())
            .env_remove("GLIDEPATH_CRASH_AT")
            .env_remove("GLIDEPATH_JOURNAL")
            .env("XDG_STATE_HOME", self.path().join("state"))
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd(args).output().unwrap();
        eprintln!(
            "--- glidepath {args:?} → {:?}\n{}{}",
            out.status,
            stdout(&out),
            stderr(&out)
        );
        out
    }

    /// `upgrade` to the target, with `extra` arguments.
    fn upgrade_args(&self, extra: &[&str]) -> Vec<String> {
        let mut a = vec!["upgrade".to_string(), self.file.display().to_string()];
        a.extend(TARGET.iter().map(|s| s.to_string()));
        a.push("5s".into());
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }

    fn journal(&self) -> glidepath::journal::Journal {
        glidepath::journal::Journal::open(&self.path().join("state/glidepath/journal.db")).unwrap()
    }

    /// The only campaign in the journal.
    fn campaign(&self) -> glidepath::journal::CampaignRecord {
        let j = self.journal();
        let run = j.runs(1).unwrap().remove(0).id;
        j.campaign_of_run(&run)
            .unwrap()
            .expect("the run belongs to a campaign")
    }

    /// The versions a component's nodes serve (asked from the nodes), each
    /// in rotation.
    async fn serving(&self, name: &str) -> Vec<String> {
        let c = self.components.iter().find(|c| c.name == name).unwrap();
        let mut out = Vec::new();
        for n in &c.fleet.nodes {
            let v: Value = reqwest::Client::new()
                .get(format!("http://{}/admin/state", n.address))
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(v["drained"], false, "{name} node {} left drained", n.name);
            out.push(v["version"].as_str().unwrap().to_string());
        }
        out
    }

    /// Runs of the journal, oldest first: (fleet, version, status).
    fn runs(&self) -> Vec<(String, String, String)> {
        let mut r: Vec<_> = self
            .journal()
            .runs(100)
            .unwrap()
            .into_iter()
            .map(|r| (r.fleet, r.version, r.status.to_string()))
            .collect();
        r.reverse();
        r
    }
}

fn upgrade_of(a: &StageAction) -> (String, String) {
    match a {
        StageAction::Upgrade { component, to, .. } => (component.clone(), to.clone()),
        StageAction::EnableFlag { flag, .. } => ("flag".into(), flag.clone()),
    }
}

/// The order the planner must find: the server to its bridge release, the
/// clients (either order), the server again, then the flag.
fn assert_planned_order(stages: &[(String, String)]) {
    assert_eq!(stages.len(), 5, "{stages:?}");
    assert_eq!(stages[0], ("server".into(), "1.5".into()));
    let mut middle = vec![stages[1].clone(), stages[2].clone()];
    middle.sort();
    assert_eq!(
        middle,
        [("agent".into(), "2.0".into()), ("cli".into(), "2.0".into())]
    );
    assert_eq!(stages[3], ("server".into(), "2.0".into()));
    assert_eq!(stages[4], ("flag".into(), "streaming".into()));
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_carries_out_the_bridge_stages_in_order() {
    let sys = system(None).await;
    let args = sys.upgrade_args(&[]);
    let out = sys.run(&strs(&args));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    // the stages are printed before they run, as `plan` prints them
    assert!(text.contains("5 stage(s)"), "{text}");
    assert!(text.contains("stage 1 of 5: server 1.0 → 1.5"), "{text}");
    // and `plan`'s hint is a command that can be followed
    assert!(
        text.contains("server/plan.toml --release 1.5 --artifact /")
            && text.contains("server/dist/1.5/release.toml --sha256 "),
        "{text}"
    );
    assert!(text.contains("succeeded: 5 stage(s) carried out"), "{text}");

    // every component on its target, every node in rotation
    assert_eq!(sys.serving("server").await, ["2.0", "2.0"]);
    assert_eq!(sys.serving("cli").await, ["2.0", "2.0"]);
    assert_eq!(sys.serving("agent").await, ["2.0", "2.0"]);
    // the flag's command ran last, with its placeholders filled
    let c = sys.campaign();
    let flag = std::fs::read_to_string(sys.path().join("flag-on.txt")).unwrap();
    assert_eq!(flag.trim(), format!("streaming {}", c.id));

    // the journal: the campaign, its stages in order, one run per upgrade
    // stage, in the same order
    assert_eq!(c.status, CampaignStatus::Succeeded);
    assert!(c
        .system_source
        .contains("rollout_plan = \"server/plan.toml\""));
    assert_eq!(c.to, ["server=2.0", "cli=2.0", "agent=2.0"]);
    let planned: Vec<_> = c.stages.iter().map(|s| upgrade_of(&s.action)).collect();
    assert_planned_order(&planned);
    assert!(c.stages.iter().all(|s| s.status == StageStatus::Succeeded));
    let runs = sys.runs();
    let ran: Vec<(String, String)> = runs.iter().map(|r| (r.0.clone(), r.1.clone())).collect();
    assert_eq!(ran, planned[..4].to_vec(), "one run per stage, in order");
    assert!(runs.iter().all(|r| r.2 == "succeeded"), "{runs:?}");
    for s in &c.stages[..4] {
        let run = s.run_id.as_deref().unwrap();
        let events = sys.journal().events(run).unwrap();
        assert_journal_consistent(&events);
    }

    // status: the campaign, and a run's place in it
    let out = sys.run(&["status", &c.id, "--output", "json"]);
    assert_eq!(code(&out), 0);
    let v = doc(&out);
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["stages_total"], 5);
    assert_eq!(v["stages"][4]["kind"], "enable_flag");
    assert_eq!(v["stages"][0]["component"], "server");
    let second = c.stages[1].run_id.clone().unwrap();
    let out = sys.run(&["status", &second]);
    assert!(
        stdout(&out).contains(&format!("campaign {}: stage 2 of 5", c.id)),
        "{}",
        stdout(&out)
    );
    let out = sys.run(&["status", &second, "--output", "json"]);
    let v = doc(&out);
    assert_eq!(v["campaign"]["stage"], 2);
    assert_eq!(v["campaign"]["stages"], 5);
    assert_eq!(v["campaign"]["campaign_id"], c.id.as_str());

    // already there: nothing to do, no new run
    let mut again = vec!["upgrade".to_string(), sys.file.display().to_string()];
    again.extend(TARGET[..6].iter().map(|s| s.to_string()));
    let out = sys.run(&strs(&again));
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).contains("already there"), "{}", stdout(&out));
    assert_eq!(sys.runs().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_release_stops_the_campaign_at_its_stage() {
    let sys = system(Some(("server", "2.0"))).await;
    let args = sys.upgrade_args(&["--output", "json"]);
    let out = sys.run(&strs(&args));
    assert_eq!(code(&out), 1, "exit 1 like the run: rolled back");
    let v = doc(&out);
    assert_eq!(v["status"], "failed");
    assert_eq!(v["stage"], 4);
    assert_eq!(v["exit_code"], 1);
    let error = v["error"].as_str().unwrap();
    let c = sys.campaign();
    let run = c.stages[3].run_id.clone().unwrap();
    assert!(
        error.contains("failed at stage 4 of 5 (server 1.5 → 2.0)")
            && error.contains(&run)
            && error.contains("rolled_back")
            && error.contains("start a new campaign"),
        "{error}"
    );
    // the stage's run rolled back; the earlier stages stay in place
    assert_eq!(sys.journal().run(&run).unwrap().status, "rolled_back");
    let status: Vec<StageStatus> = c.stages.iter().map(|s| s.status).collect();
    use StageStatus::*;
    assert_eq!(status, [Succeeded, Succeeded, Succeeded, Failed, Pending]);
    assert_eq!(sys.serving("server").await, ["1.5", "1.5"]);
    assert_eq!(sys.serving("cli").await, ["2.0", "2.0"]);
    assert_eq!(sys.serving("agent").await, ["2.0", "2.0"]);
    assert!(
        !sys.path().join("flag-on.txt").exists(),
        "the flag stage never ran"
    );

    // status names the failed stage
    let out = sys.run(&["status", &c.id]);
    let text = stdout(&out);
    assert!(text.contains("status: failed, stage 4 of 5"), "{text}");
    assert!(text.contains("4. failed     server 1.5 → 2.0"), "{text}");
    // a failed stage is not retried silently
    let out = sys.run(&["upgrade", "--resume", &c.id]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("is not retried"), "{}", stderr(&out));
    assert_eq!(sys.runs().len(), 4, "no new run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stage_then_resume_finishes_without_rerunning_stages() {
    let sys = system(None).await;
    let args = sys.upgrade_args(&[]);
    // killed in the cli's stage, after its second node switched
    let out = sys
        .cmd(&strs(&args))
        .env("GLIDEPATH_CRASH_AT", "outcome:switch:cli-2")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(9), "{}", stderr(&out));
    let c = sys.campaign();
    assert_eq!(c.status, CampaignStatus::Running);
    let k = c
        .stages
        .iter()
        .position(|s| upgrade_of(&s.action).0 == "cli")
        .unwrap();
    assert_eq!(c.stages[k].status, StageStatus::Running);
    let cli_run = c.stages[k].run_id.clone().unwrap();
    // status: the run's place, and the campaign's holder gone
    let out = sys.run(&["status", &cli_run]);
    assert!(
        stdout(&out).contains(&format!("stage {} of 5", k + 1)),
        "{}",
        stdout(&out)
    );
    let out = sys.run(&["status", &c.id]);
    assert!(
        stdout(&out).contains(&format!("status: running, stage {} of 5", k + 1))
            && stdout(&out).contains("is gone — `glidepath upgrade --resume"),
        "{}",
        stdout(&out)
    );
    // `resume` of a campaign id points at `upgrade --resume`
    let out = sys.run(&["resume", &c.id]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("upgrade --resume"),
        "{}",
        stderr(&out)
    );
    let runs_before = sys.runs();

    let out = sys.run(&["upgrade", "--resume", &c.id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("skipped"), "{}", stdout(&out));
    assert_eq!(sys.serving("server").await, ["2.0", "2.0"]);
    assert_eq!(sys.serving("cli").await, ["2.0", "2.0"]);
    assert_eq!(sys.serving("agent").await, ["2.0", "2.0"]);
    assert!(sys.path().join("flag-on.txt").exists());

    // from the journal: the finished stages were not run again, the
    // interrupted one was resumed (same run, marked interrupted)
    let c = sys.campaign();
    assert_eq!(c.status, CampaignStatus::Succeeded);
    assert_eq!(c.stages[k].run_id.as_deref(), Some(cli_run.as_str()));
    let runs = sys.runs();
    assert_eq!(runs[..runs_before.len()].len(), runs_before.len());
    assert_eq!(runs.len(), 4, "one run per upgrade stage: {runs:?}");
    let planned: Vec<_> = c.stages.iter().map(|s| upgrade_of(&s.action)).collect();
    let ran: Vec<(String, String)> = runs.iter().map(|r| (r.0.clone(), r.1.clone())).collect();
    assert_eq!(ran, planned[..4].to_vec());
    let events = sys.journal().events(&cli_run).unwrap();
    assert!(events
        .iter()
        .any(|e| matches!(e, glidepath_core::Event::Interrupted { .. })));
    assert_journal_consistent(&events);
    for s in &c.stages[..k] {
        // earlier stages: their runs have no resume in them
        let ev = sys.journal().events(s.run_id.as_deref().unwrap()).unwrap();
        assert!(!ev
            .iter()
            .any(|e| matches!(e, glidepath_core::Event::Interrupted { .. })));
    }
}

#[test]
fn the_release_and_flag_keys_are_checked_in_the_system_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("system.toml");
    std::fs::write(
        &path,
        r#"[[component]]
name = "server"
instances = [ { name = "s", version = "1" } ]
  [[component.release]]
  version = "1"
  protocols = { api = "1" }
  artifact = "dist/1.tar"
  [[component.release]]
  version = "2"
  protocols = { api = "1" }
  artifact = "dist/2.tar"
  sha256 = "not-hex"

[[capability]]
name = "fast"
members = ["server"]
enable = "flags on {flg}"
timeout = "soon"
"#,
    )
    .unwrap();
    let out = output_within(
        &["plan", path.to_str().unwrap(), "--to", "server=2"],
        Duration::from_secs(30),
        "a broken system file",
    );
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    for want in [
        "server release `1` needs both `artifact` and `sha256`, or neither",
        "server release `2`: `sha256` must be 64 hex digits",
        "unknown placeholder `{flg}` in `enable`",
        "did you mean `flag`?",
        "invalid duration `soon` for `timeout`",
    ] {
        assert!(err.contains(want), "missing «{want}» in:\n{err}");
    }
}

#[test]
fn a_campaign_that_cannot_be_carried_out_is_refused_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("server")).unwrap();
    // a rollout plan that does not load
    std::fs::write(
        dir.path().join("server/plan.toml"),
        "[release]\nversion = 1\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("2.tar"), "x").unwrap();
    let sha = "ab".repeat(32);
    let path = dir.path().join("system.toml");
    std::fs::write(
        &path,
        format!(
            r#"[[component]]
name = "server"
rollout_plan = "server/plan.toml"
instances = [ {{ name = "s", version = "1" }} ]
  [[component.release]]
  version = "1"
  protocols = {{ api = "1" }}
  [[component.release]]
  version = "1.5"
  protocols = {{ api = "1..2" }}
  artifact = "missing.tar"
  sha256 = "{sha}"
  [[component.release]]
  version = "2"
  protocols = {{ api = "2" }}
  capabilities = ["fast"]
  artifact = "2.tar"
  sha256 = "{sha}"

[[component]]
name = "cli"
talks_to = ["server"]
instances = [ {{ name = "c", version = "1" }} ]
  [[component.release]]
  version = "1"
  protocols = {{ api = "1" }}
  [[component.release]]
  version = "2"
  protocols = {{ api = "2" }}

[[capability]]
name = "fast"
members = ["server"]
"#
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let mut child = std::process::Command::new(BIN);
    child
        .args([
            "upgrade",
            path.to_str().unwrap(),
            "--to",
            "server=2",
            "--to",
            "cli=2",
            "--enable",
            "fast",
        ])
        .env("XDG_STATE_HOME", &state)
        .env_remove("GLIDEPATH_JOURNAL");
    let out = child.output().unwrap();
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    for want in [
        "nothing was started",
        "stage 1 (server 1 → 1.5): artifact",
        "missing.tar not found",
        "stage 2 (cli 1 → 2): component `cli` names no `rollout_plan`",
        "stage 3 (server 1.5 → 2): the rollout plan",
        "does not load with release 2:\n    ",
        "missing [fleet] section",
        "stage 4 (switch flag `fast` on): its [[capability]]",
        "declares no `enable` command",
    ] {
        assert!(err.contains(want), "missing «{want}» in:\n{err}");
    }
    assert!(
        !state.join("glidepath/journal.db").exists(),
        "no campaign journaled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_the_campaign_and_resume_starts_the_stage_again() {
    let sys = system(None).await;
    let args = sys.upgrade_args(&[]);
    let mut child = sys
        .cmd(&strs(&args))
        // into a file: a full pipe must not block the narration
        .stdout(std::fs::File::create(sys.path().join("upgrade.log")).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // wait for the second stage's canary to be switched
    let j = sys.journal();
    let second_switched = || {
        let Some(run) = j.runs(1).unwrap().into_iter().next() else {
            return false;
        };
        let in_stage_2 = j
            .campaign_of_run(&run.id)
            .unwrap()
            .is_some_and(|c| c.stages[1].run_id.as_deref() == Some(run.id.as_str()));
        in_stage_2
            && j.events(&run.id).unwrap().iter().any(|e| {
                matches!(e, glidepath_core::Event::Outcome { step, .. }
                    if step.kind == glidepath_core::StepKind::Switch)
            })
    };
    wait_until(
        "stage 2's canary switched",
        Duration::from_secs(60),
        second_switched,
    )
    .await;
    signal(&child, libc::SIGINT);
    let status = wait_exit(&mut child, Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(5), "exit 5: aborted by an operator");
    let c = sys.campaign();
    assert_eq!(c.status, CampaignStatus::Stopped);
    assert_eq!(c.stages[0].status, StageStatus::Succeeded);
    assert_eq!(c.stages[1].status, StageStatus::Stopped);
    let aborted = c.stages[1].run_id.clone().unwrap();
    assert_eq!(sys.journal().run(&aborted).unwrap().status, "aborted");
    let (component, _) = upgrade_of(&c.stages[1].action);
    // the abort restored the stage's fleet; the first stage stays
    assert_eq!(sys.serving(&component).await, ["1.0", "1.0"]);
    assert_eq!(sys.serving("server").await, ["1.5", "1.5"]);

    let out = sys.run(&["upgrade", "--resume", &c.id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let c = sys.campaign();
    assert_eq!(c.status, CampaignStatus::Succeeded);
    let again = c.stages[1].run_id.clone().unwrap();
    assert_ne!(again, aborted, "a new run for the stopped stage");
    assert_eq!(sys.serving(&component).await, ["2.0", "2.0"]);
    // stage 1 ran once; stage 2 twice (aborted, then succeeded)
    let runs = sys.runs();
    let count = |fleet: &str, v: &str| runs.iter().filter(|r| r.0 == fleet && r.1 == v).count();
    assert_eq!(count("server", "1.5"), 1, "{runs:?}");
    assert_eq!(count(&component, "2.0"), 2, "{runs:?}");
    assert_eq!(runs.len(), 5, "{runs:?}");
}
