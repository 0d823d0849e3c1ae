//! Health probes: HTTP (2xx, optional body substring, and the served version
//! when the plan names a version URL), TCP connect, and a command's exit
//! code. Every configured probe must pass.

use super::http::{read_text, SMALL_MAX};
use super::service_command::shell_output;
use super::{http_client, send_checked, DResult, DriverError, HealthProbe, Target};
use crate::config::HealthCfg;
use async_trait::async_trait;
use std::path::PathBuf;

pub struct Health {
    cfg: HealthCfg,
    plan_dir: PathBuf,
    client: reqwest::Client,
}

impl Health {
    pub fn new(cfg: HealthCfg, plan_dir: PathBuf) -> Self {
        Health {
            client: http_client(cfg.timeout),
            cfg,
            plan_dir,
        }
    }
}

impl Health {
    /// The release the node says it serves (`version_url`, checked as a
    /// version), or `None` when the plan has no version URL.
    pub async fn served_version(&self, t: &Target) -> DResult<Option<String>> {
        let Some(vt) = &self.cfg.version_url else {
            return Ok(None);
        };
        let url = t.vars("", &self.plan_dir).fill(vt);
        let what = format!("GET {url}");
        let resp = send_checked(self.client.get(&url), &what, DriverError::Failed).await?;
        let body = read_text(resp, SMALL_MAX, &what, DriverError::Failed).await?;
        super::reported_version(t, &what, body.trim()).map(Some)
    }
}

#[async_trait]
impl HealthProbe for Health {
    async fn probe(&self, t: &Target, expect: Option<&str>) -> DResult<String> {
        let vars = t.vars(expect.unwrap_or(""), &self.plan_dir);
        let mut parts = Vec::new();
        if let Some(tpl) = &self.cfg.http {
            let url = vars.fill(tpl);
            let resp = send_checked(
                self.client.get(&url),
                &format!("GET {url}"),
                DriverError::Failed,
            )
            .await?;
            let status = resp.status();
            if let Some(want) = self.cfg.body.as_ref().map(|b| vars.fill(b)) {
                let body =
                    read_text(resp, SMALL_MAX, &format!("GET {url}"), DriverError::Failed).await?;
                if !body.contains(want.as_str()) {
                    let shown: String = body.chars().take(80).collect();
                    return Err(DriverError::Failed(format!(
                        "GET {url}: body {shown:?} does not contain {want:?}"
                    )));
                }
            }
            parts.push(format!("HTTP {status}"));
        }
        if let Some(tpl) = &self.cfg.tcp {
            let addr = vars.fill(tpl);
            match tokio::time::timeout(self.cfg.timeout, tokio::net::TcpStream::connect(&addr))
                .await
            {
                Ok(Ok(_)) => parts.push(format!("tcp {addr} accepts")),
                Ok(Err(e)) => return Err(DriverError::Failed(format!("tcp connect {addr}: {e}"))),
                Err(_) => {
                    return Err(DriverError::Failed(format!(
                        "tcp connect {addr}: timed out"
                    )))
                }
            }
        }
        if let Some(tpl) = &self.cfg.command {
            let cmd = vars.shell(tpl);
            shell_output(&cmd, &self.plan_dir, self.cfg.timeout).await?;
            parts.push("command exit 0".into());
        }
        if let (Some(vt), Some(expect)) = (&self.cfg.version_url, expect) {
            let vurl = vars.fill(vt);
            let what = format!("GET {vurl}");
            let resp = send_checked(self.client.get(&vurl), &what, DriverError::Failed).await?;
            let body = read_text(resp, SMALL_MAX, &what, DriverError::Failed).await?;
            let serving = body.trim();
            if serving != expect {
                return Err(DriverError::Failed(format!(
                    "serving {serving}, expected {expect}"
                )));
            }
            parts.push(format!("serving {serving}"));
        }
        Ok(parts.join(", "))
    }
}
