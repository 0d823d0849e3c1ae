//! `[health] probe = { … }`: a node's health probe, then the plan's
//! verification probe with the node's placeholders filled in. The health
//! driver (`drivers::health_http`) stays as it is; `Drivers::for_plan`
//! wraps it when the plan declares a probe.

use super::{run, ProbeCfg};
use crate::drivers::{DResult, DriverError, HealthProbe, Target};
use async_trait::async_trait;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub struct WithProbe {
    pub inner: Arc<dyn HealthProbe>,
    pub probe: ProbeCfg,
    /// `[health] timeout`, the probe's deadline (its `within`, when shorter).
    pub timeout: Duration,
    pub plan_dir: PathBuf,
}

#[async_trait]
impl HealthProbe for WithProbe {
    async fn probe(&self, t: &Target, expect: Option<&str>) -> DResult<String> {
        let first = self.inner.probe(t, expect).await?;
        let cfg = self
            .probe
            .fill(&t.vars(expect.unwrap_or(""), &self.plan_dir));
        let o = run(&cfg, self.timeout).await;
        if o.infra {
            return Err(DriverError::Unreachable(o.detail));
        }
        if !o.passed {
            return Err(DriverError::Failed(o.detail));
        }
        Ok(if first.is_empty() {
            o.detail
        } else {
            format!("{first}, {}", o.detail)
        })
    }
}
