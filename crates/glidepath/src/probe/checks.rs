//! `[[sli.check]]`s that are verification probes: every probe of an SLI
//! window (the canary's, a bake, the watch after the last batch) also runs
//! each probe check on every watched node, with that node's placeholders.
//! The check's value is the share of nodes whose probe failed, its samples
//! the nodes probed, and its note the first failure's reason: the core
//! judges it against `max` like any check. The metrics source is wrapped,
//! and never sees these checks.

use super::run;
use crate::config::ProbeCheck;
use crate::drivers::{DResult, MetricsSource, Target};
use async_trait::async_trait;
use glidepath_core::Observation;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// At most this many probes at once.
const CONCURRENCY: usize = 32;

pub struct WithProbeChecks {
    pub inner: Arc<dyn MetricsSource>,
    pub checks: Vec<ProbeCheck>,
    /// The deadline of each probe (its `within`, when shorter): `[sli] timeout`.
    pub timeout: Duration,
    /// The release the watched nodes run (`{version}`).
    pub version: String,
    pub plan_dir: PathBuf,
}

#[async_trait]
impl MetricsSource for WithProbeChecks {
    async fn start_window(&self, canary: &[Target], baseline: &[Target]) -> DResult<String> {
        self.inner.start_window(canary, baseline).await
    }

    async fn observe(&self, canary: &[Target], baseline: &[Target]) -> Vec<Observation> {
        let (mut obs, probed) =
            tokio::join!(self.inner.observe(canary, baseline), self.probe_all(canary));
        obs.extend(probed);
        obs
    }

    async fn preflight(&self, nodes: &[Target]) -> DResult<String> {
        self.inner.preflight(nodes).await
    }
}

impl WithProbeChecks {
    /// Each probe check on each watched node.
    async fn probe_all(&self, nodes: &[Target]) -> Vec<Observation> {
        let sem = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        let mut out = Vec::new();
        for c in &self.checks {
            let mut set = tokio::task::JoinSet::new();
            for t in nodes {
                let cfg = c.probe.fill(&t.vars(&self.version, &self.plan_dir));
                let (name, timeout, sem) = (t.name.clone(), self.timeout, sem.clone());
                set.spawn(async move {
                    let _permit = sem.acquire_owned().await;
                    (name, run(&cfg, timeout).await)
                });
            }
            let mut failed: Vec<(String, String)> = Vec::new();
            let mut total = 0u64;
            let mut unreachable: Option<String> = None;
            // the metrics server down is an outage, not a verdict (the
            // window pauses); a service that does not answer its own probe
            // is one
            let metrics = matches!(c.probe, crate::config::ProbeCfg::PromQl(_));
            while let Some(r) = set.join_next().await {
                total += 1;
                match r {
                    Ok((_, o)) if o.passed => {}
                    Ok((_, o)) if o.infra && metrics => {
                        unreachable.get_or_insert(o.detail);
                    }
                    Ok((name, o)) => failed.push((name, o.detail)),
                    Err(e) => failed.push(("?".into(), format!("probe task: {e}"))),
                }
            }
            if let Some(why) = unreachable {
                out.push(Observation {
                    check: c.spec.name.clone(),
                    error: Some(why),
                    fault: Some(glidepath_core::Fault::Unreachable),
                    ..Observation::default()
                });
                continue;
            }
            failed.sort();
            let note = failed.first().map(|(n, why)| {
                if failed.len() > 1 {
                    format!("{n}: {why} (and {} more)", failed.len() - 1)
                } else {
                    format!("{n}: {why}")
                }
            });
            out.push(Observation {
                check: c.spec.name.clone(),
                value: (total > 0).then(|| failed.len() as f64 / total as f64),
                samples: total,
                note,
                ..Observation::default()
            });
        }
        out
    }
}
