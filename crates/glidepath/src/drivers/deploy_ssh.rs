//! `kind = "ssh"`: the system OpenSSH client, so the user's ssh config,
//! agent and known_hosts apply; host key checking stays on (BatchMode: never
//! a prompt). Connections are reused through a ControlMaster per host.
//!
//! The layout on the node is the local deployer's: `releases/<version>`
//! staged through a temporary directory and verified *on the node*
//! (`sha256sum`), `current` switched by `mv -T` of a new symlink (atomic),
//! the newest `keep_releases` kept.

use super::service_command::tail;
use super::{DResult, Deployer, DriverError, ServiceControl, Target};
use crate::plan::{host_of, render, Release};
use async_trait::async_trait;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

pub struct Ssh {
    pub host: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_file: Option<PathBuf>,
    pub options: Vec<String>,
    pub timeout: Duration,
    pub control_dir: PathBuf,
}

/// Quote for a POSIX shell.
pub fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl Ssh {
    pub fn new(
        host: String,
        user: Option<String>,
        port: Option<u16>,
        identity_file: Option<PathBuf>,
        options: Vec<String>,
        timeout: Duration,
    ) -> Self {
        let control_dir =
            std::env::temp_dir().join(format!("glidepath-ssh-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&control_dir);
        Ssh {
            host,
            user,
            port,
            identity_file,
            options,
            timeout,
            control_dir,
        }
    }

    fn args(&self, t: &Target) -> Vec<String> {
        let mut a = vec![
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "ControlMaster=auto".into(),
            "-o".into(),
            format!("ControlPath={}/%C", self.control_dir.display()),
            "-o".into(),
            "ControlPersist=15".into(),
            "-o".into(),
            format!("ConnectTimeout={}", self.timeout.as_secs().clamp(1, 30)),
        ];
        if let Some(p) = self.port {
            a.extend(["-p".into(), p.to_string()]);
        }
        if let Some(i) = &self.identity_file {
            a.extend(["-i".into(), i.display().to_string()]);
        }
        a.extend(self.options.iter().cloned());
        let host = render(
            &self.host,
            &[
                ("node", &t.name),
                ("address", &t.address),
                ("host", host_of(&t.address)),
            ],
        );
        a.push(match &self.user {
            Some(u) => format!("{u}@{host}"),
            None => host,
        });
        a
    }

    /// Run `remote` on the node; `stdin` is streamed to it. Exit 255 is
    /// ssh's own failure (unreachable, auth, host key): an infrastructure fault.
    pub async fn run(&self, t: &Target, remote: &str, stdin: Option<&Path>) -> DResult<String> {
        self.run_input(t, remote, stdin, None).await
    }

    /// Like [`Ssh::run`], with the remote command's stdin fed by `pipe`
    /// (another process's stdout) when given.
    pub async fn run_input(
        &self,
        t: &Target,
        remote: &str,
        stdin: Option<&Path>,
        pipe: Option<Stdio>,
    ) -> DResult<String> {
        let mut cmd = tokio::process::Command::new("ssh");
        cmd.args(self.args(t))
            .arg("--")
            .arg(remote)
            .kill_on_drop(true)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let has_pipe = pipe.is_some();
        cmd.stdin(match (stdin, pipe) {
            (_, Some(p)) => p,
            (Some(_), None) => Stdio::piped(),
            (None, None) => Stdio::null(),
        });
        let fut = async {
            let mut child = cmd
                .spawn()
                .map_err(|e| DriverError::Failed(format!("cannot run ssh: {e}")))?;
            if let Some(path) = stdin.filter(|_| !has_pipe) {
                let mut input = child.stdin.take().expect("piped stdin");
                let mut f = tokio::fs::File::open(path)
                    .await
                    .map_err(|e| DriverError::Failed(format!("{}: {e}", path.display())))?;
                tokio::io::copy(&mut f, &mut input).await.map_err(|e| {
                    DriverError::Unreachable(format!(
                        "ssh {}: sending {}: {e}",
                        t.name,
                        path.display()
                    ))
                })?;
                input.shutdown().await.ok();
                drop(input);
            }
            child
                .wait_with_output()
                .await
                .map_err(|e| DriverError::Failed(format!("ssh: {e}")))
        };
        let out = match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => {
                return Err(DriverError::Unreachable(format!(
                    "ssh {}: timed out after {:?}",
                    t.name, self.timeout
                )))
            }
            Ok(r) => r?,
        };
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        match out.status.code() {
            Some(0) => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
            Some(255) => Err(DriverError::Unreachable(format!(
                "ssh {}: {}",
                t.name,
                tail(&stderr)
            ))),
            _ => Err(DriverError::Failed(format!(
                "on {}: `{remote}` failed ({}): {}",
                t.name,
                out.status,
                tail(&stderr)
            ))),
        }
    }
}

pub struct SshDeployer {
    pub ssh: Ssh,
    pub keep: usize,
}

fn dir(t: &Target) -> String {
    t.install_dir.display().to_string()
}

#[async_trait]
impl Deployer for SshDeployer {
    async fn current(&self, t: &Target) -> DResult<Option<String>> {
        let out = self
            .ssh
            .run(
                t,
                &format!("readlink {}/current || true", sq(&dir(t))),
                None,
            )
            .await?;
        let link = out.trim();
        Ok((!link.is_empty()).then(|| link.rsplit('/').next().unwrap_or(link).to_string()))
    }

    async fn stage(&self, t: &Target, release: &Release) -> DResult<String> {
        let d = dir(t);
        let dest = format!("{d}/releases/{}", release.version);
        let done = self
            .ssh
            .run(
                t,
                &format!("cat {}/.glidepath-sha256 2>/dev/null || true", sq(&dest)),
                None,
            )
            .await?;
        if done.trim() == release.sha256 {
            return Ok(format!(
                "{}:{dest} already staged, sha256 verified earlier",
                t.name
            ));
        }
        let tmp = format!("{d}/releases/.{}.staging", release.version);
        let got = if release.artifact.is_dir() {
            // stream a tarball through ssh, then hash the unpacked copy on the node
            let mut tar = tokio::process::Command::new("tar")
                .arg("-C")
                .arg(&release.artifact)
                .args(["-cf", "-", "."])
                .stdout(Stdio::piped())
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| DriverError::Failed(format!("cannot run tar: {e}")))?;
            let out: Stdio = tar
                .stdout
                .take()
                .expect("piped")
                .try_into()
                .map_err(|e| DriverError::Failed(format!("tar pipe: {e}")))?;
            self.ssh
                .run_input(
                    t,
                    &format!(
                        "rm -rf {tmp} && mkdir -p {tmp} && tar -xf - -C {tmp}",
                        tmp = sq(&tmp)
                    ),
                    None,
                    Some(out),
                )
                .await?;
            let _ = tar.wait().await;
            self.ssh
                .run(
                    t,
                    &format!("cd {} && {}", sq(&tmp), crate::plan::DIR_SHA256_PIPELINE),
                    None,
                )
                .await?
        } else {
            let name = release
                .artifact
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "artifact".into());
            self.ssh
                .run(
                    t,
                    &format!(
                        "rm -rf {tmp} && mkdir -p {tmp} && cat > {tmp}/{n}",
                        tmp = sq(&tmp),
                        n = sq(&name)
                    ),
                    Some(&release.artifact),
                )
                .await?;
            self.ssh
                .run(t, &format!("sha256sum {}/{}", sq(&tmp), sq(&name)), None)
                .await?
        };
        let got = got.split_whitespace().next().unwrap_or("").to_string();
        if got != release.sha256 {
            let _ = self.ssh.run(t, &format!("rm -rf {}", sq(&tmp)), None).await;
            return Err(DriverError::Failed(format!(
                "checksum mismatch on {} after copying: got {got}, the plan says {}",
                t.name, release.sha256
            )));
        }
        self.ssh
            .run(
                t,
                &format!(
                    "printf %s {sum} > {tmp}/.glidepath-sha256 && rm -rf {dest} && mv {tmp} {dest}",
                    sum = sq(&got),
                    tmp = sq(&tmp),
                    dest = sq(&dest)
                ),
                None,
            )
            .await?;
        Ok(format!(
            "copied to {}:{dest}, sha256 {}… verified on the node",
            t.name,
            &got[..12.min(got.len())]
        ))
    }

    async fn switch(&self, t: &Target, version: &str) -> DResult<String> {
        let d = sq(&dir(t));
        let v = sq(version);
        let script = format!(
            "cd {d} && test -d releases/{v} || {{ echo \"release {version} is not on the node\" >&2; exit 3; }}; \
             prev=$(basename \"$(readlink current 2>/dev/null)\" 2>/dev/null); \
             if [ \"$prev\" = {v} ]; then echo already; exit 0; fi; \
             ln -sfn releases/{v} .current.tmp && mv -T .current.tmp current && \
             ls -1t releases | grep -v '^\\.' | tail -n +{keep1} | grep -vx -e {v} -e \"$prev\" | while read r; do rm -rf \"releases/$r\"; done; \
             echo \"was $prev\"",
            keep1 = self.keep + 1
        );
        let out = self.ssh.run(t, &script, None).await?;
        let out = out.trim();
        Ok(if out == "already" {
            format!("current already → {version}")
        } else {
            format!("current → {version} ({out})")
        })
    }

    async fn check_writable(&self, t: &Target) -> DResult<String> {
        let d = sq(&format!("{}/releases", dir(t)));
        self.ssh
            .run(
                t,
                &format!("mkdir -p {d} && test -w {d} && echo writable"),
                None,
            )
            .await
            .map(|_| format!("{}:{}/releases is writable", t.name, dir(t)))
    }

    async fn has_release(&self, t: &Target, version: &str) -> DResult<bool> {
        let out = self
            .ssh
            .run(
                t,
                &format!(
                    "test -d {}/releases/{} && echo yes || true",
                    sq(&dir(t)),
                    sq(version)
                ),
                None,
            )
            .await?;
        Ok(out.trim() == "yes")
    }
}

/// Restart through ssh: the restart template runs on the node.
pub struct SshService {
    pub ssh: std::sync::Arc<SshDeployer>,
    pub template: String,
    pub timeout: Duration,
    pub plan_dir: PathBuf,
}

#[async_trait]
impl ServiceControl for SshService {
    async fn check(&self, t: &Target, template: &str) -> DResult<String> {
        let d = dir(t);
        let pd = self.plan_dir.display().to_string();
        let cmd = render(
            template,
            &[
                ("node", &t.name),
                ("address", &t.address),
                ("host", host_of(&t.address)),
                ("version", ""),
                ("install_dir", &d),
                ("plan_dir", &pd),
            ],
        );
        self.ssh
            .ssh
            .run(t, &cmd, None)
            .await
            .map(|_| format!("`{cmd}` ok on {}", t.name))
    }

    async fn restart(&self, t: &Target, version: &str) -> DResult<String> {
        let d = dir(t);
        let pd = self.plan_dir.display().to_string();
        let cmd = render(
            &self.template,
            &[
                ("node", &t.name),
                ("address", &t.address),
                ("host", host_of(&t.address)),
                ("version", version),
                ("install_dir", &d),
                ("plan_dir", &pd),
            ],
        );
        let fut = self.ssh.ssh.run(t, &cmd, None);
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r.map(|o| {
                let t = tail(o.trim());
                if t.is_empty() {
                    format!("`{cmd}` ok on the node")
                } else {
                    format!("`{cmd}` ok on the node: {t}")
                }
            }),
            Err(_) => Err(DriverError::Failed(format!(
                "`{cmd}` timed out after {:?}",
                self.timeout
            ))),
        }
    }
}
