//! `kind = "command"`: any load balancer with a CLI. `drain`/`enable` are
//! commands, `active` prints the node's active connections, `check` exits 0
//! when the node is in rotation.

use super::service_command::shell_output;
use super::{Balancer, DResult, DriverError, Target};
use async_trait::async_trait;
use std::path::PathBuf;
use std::time::Duration;

pub struct CommandBalancer {
    pub drain: String,
    pub enable: String,
    pub active: String,
    pub check: Option<String>,
    pub timeout: Duration,
    pub plan_dir: PathBuf,
}

impl CommandBalancer {
    async fn run(&self, tpl: &str, t: &Target) -> DResult<String> {
        let cmd = t.vars("", &self.plan_dir).shell(tpl);
        shell_output(&cmd, &self.plan_dir, self.timeout).await
    }
}

#[async_trait]
impl Balancer for CommandBalancer {
    async fn drain(&self, t: &Target) -> DResult<String> {
        self.run(&self.drain, t)
            .await
            .map(|_| "drain command ok".into())
    }
    async fn active(&self, t: &Target) -> DResult<u64> {
        let out = self.run(&self.active, t).await?;
        out.trim().parse().map_err(|_| {
            DriverError::Failed(format!(
                "`active` command printed {:?}, expected a number",
                out.trim()
            ))
        })
    }
    async fn enable(&self, t: &Target) -> DResult<String> {
        self.run(&self.enable, t)
            .await
            .map(|_| "enable command ok".into())
    }
    async fn check_in_rotation(&self, t: &Target) -> DResult<String> {
        match &self.check {
            Some(c) => self.run(c, t).await.map(|_| "check command ok".into()),
            None => Ok("no check command".into()),
        }
    }
    async fn preflight(&self, t: &Target) -> DResult<String> {
        self.active(t)
            .await
            .map(|n| format!("active command answers ({n})"))
    }
}
