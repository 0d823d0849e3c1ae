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

/// Run a shell command with a timeout; the child is killed if it overruns.
pub async fn run_shell(cmd: &str, cwd: &std::path::Path, timeout: Duration) -> DResult<String> {
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
    let text = String::from_utf8_lossy(if out.status.success() {
        &out.stdout
    } else {
        &out.stderr
    })
    .trim()
    .to_string();
    let tail: String = text
        .lines()
        .rev()
        .take(3)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join(" | ");
    if !out.status.success() {
        return Err(DriverError::Failed(format!(
            "`{cmd}` exited with {}: {tail}",
            out.status
        )));
    }
    Ok(if tail.is_empty() {
        format!("`{cmd}` ok")
    } else {
        format!("`{cmd}` ok: {tail}")
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
}
