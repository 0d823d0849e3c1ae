//! `kind = "command"`: every deploy step is a command template (incus,
//! docker, a vendor CLI…). `current` prints the release a node runs,
//! `stage` places `{artifact}` (checksum `{sha256}`) as `{version}`, `switch`
//! makes `{version}` current (also used to switch back on rollback).

use super::service_command::shell_output;
use super::{reported_version, DResult, Deployer, Target};
use crate::config::Release;
use async_trait::async_trait;
use std::path::PathBuf;
use std::time::Duration;

pub struct CommandDeployer {
    pub current: String,
    pub stage: String,
    pub switch: String,
    pub timeout: Duration,
    pub plan_dir: PathBuf,
}

impl CommandDeployer {
    async fn run(
        &self,
        tpl: &str,
        t: &Target,
        version: &str,
        artifact: &str,
        sha: &str,
    ) -> DResult<String> {
        let cmd = t
            .vars(version, &self.plan_dir)
            .with("artifact", artifact)
            .with("sha256", sha)
            .shell(tpl);
        shell_output(&cmd, &self.plan_dir, self.timeout)
            .await
            .map(|o| o.trim().to_string())
    }
}

#[async_trait]
impl Deployer for CommandDeployer {
    async fn current(&self, t: &Target) -> DResult<Option<String>> {
        let out = self.run(&self.current, t, "", "", "").await?;
        let v = out.lines().last().unwrap_or("").trim();
        let v = v.rsplit('/').next().unwrap_or(v);
        if v.is_empty() {
            return Ok(None);
        }
        reported_version(t, "the `current` command's output", v).map(Some)
    }
    async fn stage(&self, t: &Target, r: &Release) -> DResult<String> {
        let art = r.artifact.display().to_string();
        self.run(&self.stage, t, &r.version, &art, &r.sha256)
            .await
            .map(|o| format!("stage command ok {o}").trim().to_string())
    }
    async fn switch(&self, t: &Target, version: &str) -> DResult<String> {
        self.run(&self.switch, t, version, "", "")
            .await
            .map(|o| format!("switch command ok {o}").trim().to_string())
    }
    async fn has_release(&self, _: &Target, _: &str) -> DResult<bool> {
        // the command deployer cannot tell; `switch` fails if it is missing
        Ok(true)
    }
}
