//! Restart through a command template (`systemctl restart api`,
//! `incus exec … -- systemctl restart api`, `kill -HUP …`), run by `sh -c`
//! with a timeout; a non-zero exit fails the step with the output's tail.

use super::{DResult, DriverError, ServiceControl, Target};
use crate::plan::render;
use async_trait::async_trait;
use std::path::PathBuf;
use std::time::Duration;

pub struct CommandService {
    template: String,
    timeout: Duration,
    plan_dir: PathBuf,
}

impl CommandService {
    pub fn new(template: &str, timeout: Duration, plan_dir: PathBuf) -> Self {
        CommandService {
            template: template.into(),
            timeout,
            plan_dir,
        }
    }
}

/// Run a shell command with a timeout (the child is killed if it overruns);
/// returns its stdout. A non-zero exit fails with the tail of its stderr.
pub async fn shell_output(cmd: &str, cwd: &std::path::Path, timeout: Duration) -> DResult<String> {
    let mut c = tokio::process::Command::new("sh");
    c.arg("-c")
        .arg(cmd)
        .current_dir(cwd)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    let out = match tokio::time::timeout(timeout, c.output()).await {
        Err(_) => {
            return Err(DriverError::Failed(format!(
                "`{cmd}` timed out after {}s",
                timeout.as_secs_f64()
            )))
        }
        Ok(Err(e)) => return Err(DriverError::Failed(format!("`{cmd}` could not start: {e}"))),
        Ok(Ok(o)) => o,
    };
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(DriverError::Failed(format!(
            "`{cmd}` exited with {}: {}",
            out.status,
            tail(&text)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The last 3 lines, joined.
pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// Run a shell command with a timeout; describe what happened.
pub async fn run_shell(cmd: &str, cwd: &std::path::Path, timeout: Duration) -> DResult<String> {
    let out = shell_output(cmd, cwd, timeout).await?;
    let t = tail(out.trim());
    Ok(if t.is_empty() {
        format!("`{cmd}` ok")
    } else {
        format!("`{cmd}` ok: {t}")
    })
}

#[async_trait]
impl ServiceControl for CommandService {
    async fn restart(&self, t: &Target, version: &str) -> DResult<String> {
        let dir = t.install_dir.display().to_string();
        let plan_dir = self.plan_dir.display().to_string();
        let cmd = render(&self.template, &t.vars(version, &dir, &plan_dir));
        run_shell(&cmd, &self.plan_dir, self.timeout).await
    }

    async fn check(&self, t: &Target, template: &str) -> DResult<String> {
        let dir = t.install_dir.display().to_string();
        let plan_dir = self.plan_dir.display().to_string();
        let cmd = render(template, &t.vars("", &dir, &plan_dir));
        run_shell(&cmd, &self.plan_dir, self.timeout).await
    }
}
