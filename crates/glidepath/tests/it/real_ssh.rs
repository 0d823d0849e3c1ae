//! Deploys over a real OpenSSH sshd on 127.0.0.1: files and directories
//! (symlinks included), host key checking on, a tampered release staged
//! again, and a node whose `current` names shell refused.

use crate::harness::*;
use crate::real::available;
use glidepath::demo::infra::Sshd;
use glidepath::demo::node::{release_toml, Behaviour};
use glidepath::demo::plans::{relative_artifact, release_and_fleet, HTTP_BALANCER};
use glidepath::plan::Release;
use std::path::Path;

/// A directory artifact `dist/dir-<version>`: its `release.toml` and a
/// `doc/` directory, then what `fill` adds; hashed like any artifact.
fn dir_release(env: &Env, version: &str, fill: impl FnOnce(&Path)) -> Release {
    let d = env.path().join(format!("dist/dir-{version}"));
    std::fs::create_dir_all(d.join("doc")).unwrap();
    std::fs::write(
        d.join("release.toml"),
        release_toml(&Behaviour {
            version: version.into(),
            error_rate: 0.0,
            latency_ms: 5.0,
            leak_after_s: None,
        }),
    )
    .unwrap();
    fill(&d);
    Release {
        version: version.into(),
        sha256: glidepath::plan::artifact_sha256(&d).unwrap(),
        artifact: d,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_over_ssh_through_a_real_sshd() {
    if !available(&["sshd", "ssh"]) {
        return;
    }
    let env = Env::start(3).await;
    let sshd = Sshd::start(&env.path().join("sshd"))
        .await
        .expect("sshd starts");
    let write_with = |known_hosts: &Path, rel: &Release, health: &str| {
        let head = release_and_fleet(
            rel,
            &relative_artifact(rel, env.path()),
            "ssh",
            &env.fleet.plan_nodes(),
        );
        let text = format!(
            r#"{head}
[strategy]
canary     = ["node-1"]
batch_size = 2

{balancer}
[deploy]
kind          = "ssh"
host          = "127.0.0.1"
user          = "root"
port          = {port}
identity_file = "{key}"
ssh_options   = ["-o", "UserKnownHostsFile={known}"]
install_dir   = "{dir}/nodes/{{node}}"
restart       = "kill -HUP $(cat {{install_dir}}/node.pid)"

[health]
http        = "http://{{address}}/health"
version_url = "http://{{address}}/version"
deadline    = "15s"
interval    = "100ms"
{health}

[rollback]
on = ["health"]
"#,
            balancer = HTTP_BALANCER,
            port = sshd.port,
            key = sshd.client_key.display(),
            known = known_hosts.display(),
            dir = env.path().display(),
        );
        let path = env.path().join("ssh.toml");
        std::fs::write(&path, text).unwrap();
        path
    };
    let write = |known_hosts: &Path, rel: &Release| write_with(known_hosts, rel, "");
    // host key checking is on: an unknown host key refuses the run before any change
    let empty = env.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let out = env.run(&["run", write(&empty, &env.v2).to_str().unwrap()]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Host key verification failed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.current_links(), ["1", "1", "1"]);

    let out = env.run(&["run", write(&sshd.known_hosts, &env.v2).to_str().unwrap()]);
    assert_eq!(code(&out), 0);
    assert!(
        stdout(&out).contains("verified on the node"),
        "{}",
        stdout(&out)
    );
    env.assert_fleet(&["2", "2", "2"]).await;
    assert_eq!(env.current_links(), ["2", "2", "2"]);

    // a directory artifact travels as a tarball and is hashed on the node
    let v4 = dir_release(&env, "4", |d| {
        std::fs::write(d.join("doc/NOTES"), "release notes").unwrap();
    });
    let out = env.run(&["run", write(&sshd.known_hosts, &v4).to_str().unwrap()]);
    assert_eq!(code(&out), 0);
    env.assert_fleet(&["4", "4", "4"]).await;
    assert_eq!(
        std::fs::read_to_string(env.fleet.nodes[0].dir.join("current/doc/NOTES")).unwrap(),
        "release notes"
    );

    // symlinks inside the artifact travel as links and hash the same on the
    // node; a stale marker over a tampered releases/5 is not trusted
    let v5 = dir_release(&env, "5", |d5| {
        std::fs::write(d5.join("doc/NOTES"), "notes of 5").unwrap();
        std::os::unix::fs::symlink("doc/NOTES", d5.join("NOTES")).unwrap();
        std::os::unix::fs::symlink("../release.toml", d5.join("doc/release.toml")).unwrap();
    });
    let planted = env.fleet.nodes[1].dir.join("releases/5");
    std::fs::create_dir_all(planted.join("doc")).unwrap();
    std::fs::write(planted.join(".glidepath-sha256"), &v5.sha256).unwrap();
    std::fs::write(planted.join("doc/NOTES"), "tampered").unwrap();
    let out = env.run(&["run", write(&sshd.known_hosts, &v5).to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert!(
        stdout(&out).contains("did not match"),
        "the planted releases/5 is staged again: {}",
        stdout(&out)
    );
    env.assert_fleet(&["5", "5", "5"]).await;
    for n in &env.fleet.nodes {
        assert_eq!(
            std::fs::read_link(n.dir.join("current/NOTES")).unwrap(),
            std::path::Path::new("doc/NOTES"),
            "kept as a link on {}",
            n.name
        );
        assert_eq!(
            std::fs::read_to_string(n.dir.join("current/NOTES")).unwrap(),
            "notes of 5"
        );
    }

    // a node whose `current` names shell is refused in preflight, and the
    // name never reaches a shell (the health command's {version})
    let node3 = &env.fleet.nodes[2].dir;
    std::fs::create_dir_all(node3.join("releases/1;touch PWNED")).unwrap();
    std::fs::remove_file(node3.join("current")).unwrap();
    std::os::unix::fs::symlink("releases/1;touch PWNED", node3.join("current")).unwrap();
    let out = env.run(&[
        "run",
        write_with(
            &sshd.known_hosts,
            &env.v3,
            "command = \"test -n {version}\"",
        )
        .to_str()
        .unwrap(),
    ]);
    assert_eq!(code(&out), 3, "{}", stdout(&out));
    assert!(
        stdout(&out).contains("node node-3 reports \"1;touch PWNED\" as its current release"),
        "{}",
        stdout(&out)
    );
    assert!(
        !env.path().join("PWNED").exists(),
        "the reported release ran as shell"
    );
    assert!(!node3.join("PWNED").exists());
}
