//! `run PLAN --release V --artifact PATH --sha256 HEX`: the plan's release
//! is a default. The override is journaled with the plan, so `resume`
//! carries on with the same release after a kill -9.

use crate::harness::*;
use glidepath::demo::node::Behaviour;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_rolls_out_another_release_and_resume_keeps_it() {
    let env = Env::start(3).await;
    // the plan names release 2; roll out 7 instead
    let plan = env.plan(&env.v2, &crate::rollout::knobs());
    let seven = env.release(Behaviour {
        version: "7".into(),
        error_rate: 0.0,
        latency_ms: 10.0,
        leak_after_s: None,
    });
    let artifact = seven.artifact.display().to_string();
    let args = [
        "run",
        plan.to_str().unwrap(),
        "--release",
        "7",
        "--artifact",
        &artifact,
        "--sha256",
        &seven.sha256,
    ];
    // killed after the first batch's switch, then resumed
    env.run_until_killed(&args, "outcome:switch:node-2");
    let run = env.latest_run();
    let rec = env.journal().run(&run).unwrap();
    assert_eq!(rec.version, "7");
    assert!(
        rec.plan_source.contains("version  = \"7\""),
        "{}",
        rec.plan_source
    );
    let out = env.run(&["resume", &run]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    env.assert_fleet(&["7", "7", "7"]).await;

    // a release goes with its artifact and checksum, or not at all
    let out = env.run(&["run", plan.to_str().unwrap(), "--release", "8"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("--release, --artifact and --sha256 go together"),
        "{}",
        stderr(&out)
    );
    // and an override is validated like the file: a wrong checksum is the
    // artifact gate's refusal, before any node changes
    let out = env.run(&[
        "run",
        plan.to_str().unwrap(),
        "--release",
        "8",
        "--artifact",
        &artifact,
        "--sha256",
        &"0".repeat(64),
    ]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    env.assert_fleet(&["7", "7", "7"]).await;
    let out = env.run(&[
        "run",
        plan.to_str().unwrap(),
        "--release",
        "../8",
        "--artifact",
        &artifact,
        "--sha256",
        &seven.sha256,
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("version"), "{}", stderr(&out));
}
