//! `kind = "ssh"`: the system OpenSSH client, so the user's ssh config,
//! agent and known_hosts apply; host key checking stays on (BatchMode: never
//! a prompt). Connections are reused through a ControlMaster per host.
//!
//! The layout on the node is the local deployer's: `releases/<version>`
//! staged through a temporary directory and verified *on the node* (the
//! manifest recipe of `plan::DIR_SHA256_PIPELINE`, so symlinks count the
//! same on both sides), `current` switched by `mv -T` of a new symlink
//! (atomic), the newest `keep_releases` kept. A staged release is hashed
//! again before it is reused or switched to; the marker is never trusted.

use super::service_command::tail;
use super::{reported_version, DResult, Deployer, DriverError, Installed, ServiceControl, Target};
use crate::artifact::DIR_SHA256_PIPELINE;
use crate::config::Release;
pub use crate::template::sq;
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
        let host = t.url_vars().fill(&self.host);
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
                "on {}: `{}` failed ({}): {}",
                t.name,
                crate::shell::shown(remote),
                out.status,
                tail(&stderr)
            ))),
        }
    }
}

/// The line a wrapped remote command prints on its stderr once it has
/// exited, with its status and its last background process (see
/// [`Ssh::run_until_exit`]).
const EXITED: &str = "__glidepath_exited=";

/// How long ssh may stay once the remote command said it exited: a
/// background process it started may hold the session's output for ever.
const HELD_GRACE: Duration = Duration::from_millis(500);

impl Ssh {
    /// Run `remote` on the node within `timeout`, done when the remote
    /// command exits: it reports its exit status (and `$!`, the last process
    /// it started in the background) on a line of its own, so a background process that keeps the
    /// session's output open (`daemon &` without a redirection) does not
    /// hold the step until the timeout. That process is then named, with
    /// the fix, in the result.
    pub async fn run_until_exit(
        &self,
        t: &Target,
        remote: &str,
        timeout: Duration,
    ) -> DResult<String> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt};
        let wrapped = format!(
            "{remote}\n__gp_rc=$?; printf '\\n{EXITED}%s %s\\n' \"$__gp_rc\" \"${{!:-}}\" >&2; exit \"$__gp_rc\""
        );
        let mut child = tokio::process::Command::new("ssh")
            .args(self.args(t))
            .arg("--")
            .arg(&wrapped)
            // killed by hand on a timeout; left running when it holds a
            // session (below)
            .kill_on_drop(false)
            // its own process group: a Ctrl-C at the terminal is glidepath's
            // to handle, and an ssh left to hold a session (below) outlives it
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| DriverError::Failed(format!("cannot run ssh: {e}")))?;
        use std::os::fd::AsFd;
        let dups = [
            child
                .stdout
                .as_ref()
                .and_then(|o| o.as_fd().try_clone_to_owned().ok()),
            child
                .stderr
                .as_ref()
                .and_then(|e| e.as_fd().try_clone_to_owned().ok()),
        ];
        let max = crate::shell::OUTPUT_MAX;
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let err = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, mut exited) = tokio::sync::watch::channel(None::<(i32, String)>);
        let mut so = child.stdout.take().expect("piped stdout");
        let se = child.stderr.take().expect("piped stderr");
        let keep = out.clone();
        let ho = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = so.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let mut k = keep.lock().expect("ssh output lock");
                let room = max.saturating_sub(k.len()).min(n);
                k.extend_from_slice(&buf[..room]);
            }
        });
        let keep = err.clone();
        let he = tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(se).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if let Some(rest) = l.strip_prefix(EXITED) {
                    let (rc, jobs) = rest.split_once(' ').unwrap_or((rest, ""));
                    let _ = tx.send(Some((
                        rc.trim().parse().unwrap_or(-1),
                        jobs.trim().to_string(),
                    )));
                    continue;
                }
                let mut k = keep.lock().expect("ssh output lock");
                if k.len() < max {
                    k.push_str(&l);
                    k.push('\n');
                }
            }
        });
        enum End {
            Status(std::io::Result<std::process::ExitStatus>),
            Said,
        }
        let run = async {
            tokio::select! {
                st = child.wait() => End::Status(st),
                _ = exited.wait_for(|v| v.is_some()) => End::Said,
            }
        };
        let end = match tokio::time::timeout(timeout, run).await {
            Err(_) => {
                let _ = child.start_kill();
                tokio::spawn(async move { child.wait().await });
                ho.abort();
                he.abort();
                return Err(DriverError::Failed(format!(
                    "`{}` timed out after {:?} on {} (ssh was stopped)",
                    crate::shell::shown(remote),
                    timeout,
                    t.name
                )));
            }
            Ok(End::Said) => match tokio::time::timeout(HELD_GRACE, child.wait()).await {
                Ok(st) => End::Status(st),
                Err(_) => End::Said,
            },
            Ok(e) => e,
        };
        let held = matches!(end, End::Said);
        if held {
            // the remote command is done; only its output is held open by a
            // process it started. Stopping ssh would close that output under
            // it (its next write: SIGPIPE), so ssh is left to hold the
            // session, its output drained by a detached `cat`, and reaped
            // here while this process lives; it ends with the remote process.
            ho.abort();
            he.abort();
            for fd in dups.into_iter().flatten() {
                crate::shell::drain_detached(fd);
            }
            tokio::spawn(async move { child.wait().await });
        } else {
            let _ = tokio::time::timeout(HELD_GRACE, ho).await;
            let _ = tokio::time::timeout(HELD_GRACE, he).await;
        }
        let stdout = String::from_utf8_lossy(&out.lock().expect("ssh output lock")).into_owned();
        let stderr = err.lock().expect("ssh output lock").clone();
        let said = exited.borrow().clone();
        let code = match (&end, &said) {
            (_, Some((rc, _))) => Some(*rc),
            (End::Status(Ok(st)), None) => st.code(),
            (End::Status(Err(e)), None) => {
                return Err(DriverError::Failed(format!("ssh: {e}")));
            }
            (End::Said, None) => None,
        };
        let note = if held {
            let pids: Vec<i32> = said
                .as_ref()
                .map(|(_, j)| {
                    j.split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            format!(" [on {}: {}]", t.name, crate::shell::held_open_note(&pids))
        } else {
            String::new()
        };
        match code {
            Some(0) => Ok(format!("{stdout}{note}")),
            Some(255) if said.is_none() => Err(DriverError::Unreachable(format!(
                "ssh {}: {}",
                t.name,
                tail(&stderr)
            ))),
            c => Err(DriverError::Failed(format!(
                "on {}: `{}` failed (exit {}): {}{note}",
                t.name,
                crate::shell::shown(remote),
                c.map_or("unknown".to_string(), |c| c.to_string()),
                tail(&stderr)
            ))),
        }
    }
}

pub struct SshDeployer {
    pub ssh: Ssh,
    pub keep: usize,
    /// The releases whose sha256 the plan gives: re-verified before a switch.
    pub known: Vec<Release>,
}

fn dir(t: &Target) -> String {
    t.install_dir.display().to_string()
}

/// What a release directory on a node holds, compared with a release.
#[derive(Debug, PartialEq)]
enum Staged {
    Absent,
    Matches,
    Differs(String),
}

/// The remote command hashing the release directory `d` the way
/// [`crate::artifact::artifact_sha256`] does: the manifest recipe for a
/// directory artifact; for a file artifact, the number of entries (besides
/// the marker) and the file's sha256.
fn hash_command(d: &str, r: &Release) -> String {
    let d = sq(d);
    let hash = if r.artifact.is_file() {
        let n = sq(&file_name(r));
        format!(
            "cd {d} && test -f {n} && test ! -L {n} && echo \"$(find . -mindepth 1 -maxdepth 1 ! -path ./.glidepath-sha256 -printf x | wc -c) $(sha256sum < {n})\" || echo missing"
        )
    } else {
        format!("cd {d} && {DIR_SHA256_PIPELINE}")
    };
    format!(
        "if [ ! -e {d} ] && [ ! -L {d} ]; then echo absent; elif [ -L {d} ] || [ ! -d {d} ]; then echo not-a-directory; else {hash}; fi"
    )
}

fn file_name(r: &Release) -> String {
    r.artifact
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "artifact".into())
}

fn judge(out: &str, r: &Release) -> Staged {
    let words: Vec<&str> = out.split_whitespace().collect();
    let got = match words.as_slice() {
        ["absent"] => return Staged::Absent,
        ["not-a-directory"] => return Staged::Differs("not a directory".into()),
        ["missing"] => return Staged::Differs("the artifact file is missing".into()),
        [n, sum, "-"] if r.artifact.is_file() => {
            if *n != "1" {
                return Staged::Differs(format!(
                    "it holds {n} entries besides the marker, not just the artifact file"
                ));
            }
            *sum
        }
        [sum, "-"] if !r.artifact.is_file() => *sum,
        _ => return Staged::Differs(format!("unexpected hash output {:?}", tail(out))),
    };
    if got == r.sha256 {
        Staged::Matches
    } else {
        Staged::Differs(format!("sha256 {got}, the plan says {}", r.sha256))
    }
}

impl SshDeployer {
    /// Hash the release directory `d` on the node, now.
    async fn staged(&self, t: &Target, d: &str, r: &Release) -> DResult<Staged> {
        let out = self.ssh.run(t, &hash_command(d, r), None).await?;
        Ok(judge(&out, r))
    }
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
        let v = link.rsplit('/').next().unwrap_or(link);
        if v.is_empty() {
            return Ok(None);
        }
        reported_version(t, "its `current` link", v).map(Some)
    }

    async fn stage(&self, t: &Target, release: &Release) -> DResult<String> {
        let d = dir(t);
        let dest = format!("{d}/releases/{}", release.version);
        let note = match self.staged(t, &dest, release).await? {
            Staged::Matches => {
                return Ok(format!(
                    "{}:{dest} already staged, sha256 re-verified on the node",
                    t.name
                ))
            }
            Staged::Differs(why) => {
                format!("; the copy already there did not match ({why}) and was replaced")
            }
            Staged::Absent => String::new(),
        };
        let tmp = format!("{d}/releases/.{}.staging", release.version);
        if release.artifact.is_dir() {
            // stream a tarball through ssh (symlinks travel as links)
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
        } else {
            self.ssh
                .run(
                    t,
                    &format!(
                        "rm -rf {tmp} && mkdir -p {tmp} && cat > {tmp}/{n}",
                        tmp = sq(&tmp),
                        n = sq(&file_name(release))
                    ),
                    Some(&release.artifact),
                )
                .await?;
        }
        // hash the unpacked copy on the node
        let why = match self.staged(t, &tmp, release).await? {
            Staged::Matches => None,
            Staged::Absent => Some("the copy is missing".to_string()),
            Staged::Differs(why) => Some(why),
        };
        if let Some(why) = why {
            let _ = self.ssh.run(t, &format!("rm -rf {}", sq(&tmp)), None).await;
            return Err(DriverError::Failed(format!(
                "checksum mismatch on {} after copying: {why}",
                t.name
            )));
        }
        self.ssh
            .run(
                t,
                &format!(
                    "printf %s {sum} > {tmp}/.glidepath-sha256 && rm -rf {dest} && mv {tmp} {dest}",
                    sum = sq(&release.sha256),
                    tmp = sq(&tmp),
                    dest = sq(&dest)
                ),
                None,
            )
            .await?;
        Ok(format!(
            "copied to {}:{dest}, sha256 {}… verified on the node{note}",
            t.name,
            &release.sha256[..12]
        ))
    }

    async fn switch(&self, t: &Target, version: &str) -> DResult<String> {
        if let Some(r) = self.known.iter().find(|r| r.version == version) {
            let at = format!("{}/releases/{version}", dir(t));
            if let Staged::Differs(why) = self.staged(t, &at, r).await? {
                return Err(DriverError::Failed(format!(
                    "{}:{at} changed after staging ({why}): refusing to switch to it",
                    t.name
                )));
            }
        }
        let d = sq(&dir(t));
        let v = sq(version);
        let script = format!(
            "cd {d} && test -d releases/{v} || {{ echo release {v} is not on the node >&2; exit 3; }}; \
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

    async fn installed(&self, t: &Target, exclude: &[String]) -> DResult<Installed> {
        let out = self
            .ssh
            .run(t, &installed_command(&dir(t), exclude), None)
            .await?;
        let mut found = Installed::default();
        for line in out.lines() {
            match line.split_once(' ') {
                Some(("current", c)) => {
                    let v = c.rsplit('/').next().unwrap_or(c);
                    found.current = Some(reported_version(t, "its `current` link", v)?);
                }
                Some(("entry", e)) => found.entries.push(e.to_string()),
                _ if line == "present" => found.current_present = true,
                _ if line == "not-a-link" => {
                    return Err(super::deploy_local::not_a_link(&format!(
                        "{}:{}/current",
                        t.name,
                        dir(t)
                    )))
                }
                _ => {}
            }
        }
        Ok(found)
    }

    async fn adopt(&self, t: &Target, version: &str, exclude: &[String]) -> DResult<String> {
        let out = self
            .ssh
            .run(t, &adopt_command(&dir(t), version, exclude), None)
            .await?;
        let out = out.trim();
        Ok(match out.strip_prefix("already ") {
            Some(c) => format!("already adopted (current -> {c})"),
            None => format!(
                "{}; current -> releases/{version}",
                out.trim_end_matches("adopted").trim()
            ),
        })
    }
}

/// The shell loop over the install dir's entries a first release takes
/// (hidden ones are not matched by `*`); `body` runs with `$e` set.
fn entries_loop(exclude: &[String], body: &str) -> String {
    let pattern: String = ["releases", "current"]
        .iter()
        .map(|s| s.to_string())
        .chain(exclude.iter().map(|e| sq(e)))
        .collect::<Vec<_>>()
        .join("|");
    format!(
        "for e in *; do {{ [ -e \"$e\" ] || [ -L \"$e\" ]; }} || continue; case \"$e\" in {pattern}) continue;; esac; {body}; done"
    )
}

/// The remote script of [`Deployer::installed`]: `current TARGET` when
/// there is one (then `present` when `releases/<current>` is there), then
/// `entry NAME` lines.
fn installed_command(d: &str, exclude: &[String]) -> String {
    format!(
        "cd {d} 2>/dev/null || exit 0; if [ -L current ]; then c=$(readlink current); printf 'current %s\\n' \"$c\"; [ -d \"releases/$(basename \"$c\")\" ] && echo present; elif [ -e current ]; then echo not-a-link; exit 0; fi; {}",
        entries_loop(exclude, "printf 'entry %s\\n' \"$e\""),
        d = sq(d)
    )
}

/// The remote script of [`Deployer::adopt`]: the same as the local
/// deployer's `adopt_sync`, with `cp -a` and `mv -T`.
fn adopt_command(d: &str, version: &str, exclude: &[String]) -> String {
    let v = sq(version);
    format!(
        "set -e; cd {d}; if [ -L current ]; then printf 'already %s\\n' \"$(readlink current)\"; exit 0; fi; \
         mkdir -p releases; \
         if [ ! -d releases/{v} ]; then tmp=releases/.{v}.adopting; rm -rf \"$tmp\"; mkdir \"$tmp\"; \
         {copy}; \
         [ -n \"$(ls -A \"$tmp\")\" ] || {{ rmdir \"$tmp\"; echo nothing is installed in {d} >&2; exit 3; }}; \
         mv -T \"$tmp\" releases/{v}; printf 'copied '; ls -A releases/{v} | tr '\\n' ' '; else printf 'releases/%s was already there ' {v}; fi; \
         ln -sfn releases/{v} .current.tmp && mv -T .current.tmp current; echo adopted",
        d = sq(d),
        copy = entries_loop(exclude, "cp -a -- \"$e\" \"$tmp/\""),
    )
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
        let cmd = t.vars("", &self.plan_dir).shell(template);
        self.ssh
            .ssh
            .run(t, &cmd, None)
            .await
            .map(|_| format!("`{}` ok on {}", crate::shell::shown(&cmd), t.name))
    }

    async fn restart(&self, t: &Target, version: &str) -> DResult<String> {
        let cmd = t.vars(version, &self.plan_dir).shell(&self.template);
        self.ssh
            .ssh
            .run_until_exit(t, &cmd, self.timeout)
            .await
            .map(|o| {
                let t = tail(o.trim());
                if t.is_empty() {
                    format!("`{}` ok on the node", crate::shell::shown(&cmd))
                } else {
                    format!("`{}` ok on the node: {t}", crate::shell::shown(&cmd))
                }
            })
    }
}
