//! Restart through a command template (`systemctl restart api`,
//! `incus exec … -- systemctl restart api`, `kill -HUP …`), run by `sh -c`
//! with a timeout; a non-zero exit fails the step with the output's tail.

use super::{DResult, DriverError, ServiceControl, Target};
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

pub use crate::shell::{tail, OUTPUT_MAX};

impl From<crate::shell::ShellError> for DriverError {
    fn from(e: crate::shell::ShellError) -> Self {
        DriverError::Failed(e.0)
    }
}

/// [`crate::shell::shell_output`], its failure a [`DriverError::Failed`].
pub async fn shell_output(cmd: &str, cwd: &std::path::Path, timeout: Duration) -> DResult<String> {
    Ok(crate::shell::shell_output(cmd, cwd, timeout).await?)
}

/// [`crate::shell::run_shell`], its failure a [`DriverError::Failed`].
pub async fn run_shell(cmd: &str, cwd: &std::path::Path, timeout: Duration) -> DResult<String> {
    Ok(crate::shell::run_shell(cmd, cwd, timeout).await?)
}

#[async_trait]
impl ServiceControl for CommandService {
    async fn restart(&self, t: &Target, version: &str) -> DResult<String> {
        let cmd = t.vars(version, &self.plan_dir).shell(&self.template);
        run_shell(&cmd, &self.plan_dir, self.timeout).await
    }

    async fn check(&self, t: &Target, template: &str) -> DResult<String> {
        let cmd = t.vars("", &self.plan_dir).shell(template);
        run_shell(&cmd, &self.plan_dir, self.timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn restart_and_check_fill_host_and_quote_every_value() {
        let tmp = tempfile::tempdir().unwrap();
        // a plan directory whose name is shell
        let plan_dir = tmp.path().join("plans $(touch PWNED) 'q'");
        std::fs::create_dir_all(&plan_dir).unwrap();
        let t = Target {
            name: "api-1".into(),
            address: "127.0.0.1:9001".into(),
            install_dir: plan_dir.join("nodes/api-1"),
            ..Default::default()
        };
        let svc = CommandService::new(
            "printf '%s|' {host} {node} {version} \"{plan_dir}\" > out",
            Duration::from_secs(10),
            plan_dir.clone(),
        );
        let msg = svc.restart(&t, "2").await.unwrap();
        assert!(msg.contains("'127.0.0.1'"), "{msg}");
        assert_eq!(
            std::fs::read_to_string(plan_dir.join("out")).unwrap(),
            format!("127.0.0.1|api-1|2|{}|", plan_dir.display())
        );
        svc.check(&t, "printf %s {host}:{install_dir} > check")
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(plan_dir.join("check")).unwrap(),
            format!("127.0.0.1:{}", t.install_dir.display())
        );
        assert!(!plan_dir.join("PWNED").exists() && !tmp.path().join("PWNED").exists());
    }
}
