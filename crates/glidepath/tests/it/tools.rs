//! `hash`, `completions` and `man`: the commands around the rollout.

use crate::harness::{code, stderr, stdout, Env, BIN};
use std::process::Command;

fn glidepath(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("glidepath runs")
}

/// `hash` prints what the plan's `sha256` must be: for the demo's release
/// the sha256 its plan carries; for a directory the same value as the
/// README's shell recipe (`DIR_SHA256_PIPELINE`) run in it; for a file its
/// bytes' sha256; JSON too; a missing path is exit 2 naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_prints_the_sha256_a_plan_needs() {
    let env = Env::start(2).await;
    let art = env.path().join(&env.v2.artifact);
    let out = glidepath(&["hash", art.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("{}  {}\n", env.v2.sha256, art.display()),
        "the sha256 the demo plan carries for release {}",
        env.v2.version
    );
    // a directory with a file, an executable, a subdirectory and a link
    let dir = env.path().join("app");
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    std::fs::write(dir.join("lib/a.txt"), "a\n").unwrap();
    std::fs::write(dir.join("run.sh"), "#!/bin/sh\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("lib/a.txt", dir.join("current")).unwrap();
    let recipe = Command::new("sh")
        .arg("-c")
        .arg(glidepath::artifact::DIR_SHA256_PIPELINE)
        .current_dir(&dir)
        .output()
        .unwrap();
    let expected = stdout(&recipe)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let out = glidepath(&["hash", dir.to_str().unwrap(), "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["artifacts"][0]["sha256"], expected.as_str(), "{v}");
    assert_eq!(v["artifacts"][0]["kind"], "directory");
    let out = glidepath(&["hash", dir.to_str().unwrap(), "--manifest"]);
    // paths hex-encoded: run.sh, an executable
    assert!(stdout(&out).contains("72756e2e7368 x "), "{}", stdout(&out));
    let file = env.path().join("note.txt");
    std::fs::write(&file, "hello\n").unwrap();
    let out = glidepath(&["hash", file.to_str().unwrap()]);
    // sha256sum of "hello\n"
    assert!(
        stdout(&out)
            .starts_with("5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03  "),
        "{}",
        stdout(&out)
    );
    let missing = env.path().join("nope");
    let out = glidepath(&["hash", missing.to_str().unwrap()]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
}

#[test]
fn completions_for_each_shell() {
    for (shell, mark) in [
        ("bash", "complete -F _glidepath"),
        ("zsh", "#compdef glidepath"),
        ("fish", "complete -c glidepath"),
    ] {
        let out = glidepath(&["completions", shell]);
        assert_eq!(code(&out), 0, "{shell}: {}", stderr(&out));
        let s = stdout(&out);
        assert!(s.contains(mark), "{shell}: {s}");
        // every command is offered
        for cmd in ["run", "resume", "promote", "journal", "serve"] {
            assert!(s.contains(cmd), "{shell} completes `{cmd}`");
        }
    }
    let out = glidepath(&["completions", "tcsh"]);
    assert_eq!(code(&out), 2, "an unknown shell is a usage error");
}

#[test]
fn man_pages_for_the_tool_and_each_command() {
    let out = glidepath(&["man"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let page = stdout(&out);
    assert!(page.contains(".TH glidepath 1"), "{page}");
    assert!(page.contains("resume"), "{page}");
    let dir = tempfile::tempdir().unwrap();
    let out = glidepath(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let run = std::fs::read_to_string(dir.path().join("glidepath-run.1")).unwrap();
    assert!(run.contains("glidepath\\-run"), "{run}");
    assert!(run.contains("\\-\\-force"), "{run}");
    // the hidden internal command has no page
    assert!(!dir.path().join("glidepath-demo-node.1").exists());
    assert!(stdout(&out).lines().count() > 10, "{}", stdout(&out));
}
