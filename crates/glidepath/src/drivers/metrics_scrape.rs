//! `source = "scrape"`: metrics without Prometheus. At the start of the
//! window each canary's and baseline node's `/metrics` is scraped; every
//! probe scrapes them again and computes, for each group from the
//! difference (counter resets handled), the error ratio or latency quantile
//! over the window and the counts behind it.

use super::http::{read_text, METRICS_MAX};
use super::{http_client, send_checked, DResult, DriverError, MetricsSource, Target};
use crate::config::{CheckCfg, CheckKind};
use async_trait::async_trait;
use glidepath_core::metrics::{counter_sum_increase, parse_text, Histogram, Sample};
use glidepath_core::{Counts, Group, Observation};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

pub struct ScrapeSource {
    url: String,
    checks: Vec<CheckCfg>,
    client: reqwest::Client,
    baselines: Mutex<HashMap<String, Vec<Sample>>>,
}

impl ScrapeSource {
    pub fn new(url: &str, timeout: Duration, checks: Vec<CheckCfg>) -> Self {
        ScrapeSource {
            url: url.into(),
            checks,
            client: http_client(timeout),
            baselines: Mutex::new(HashMap::new()),
        }
    }

    async fn scrape(&self, t: &Target) -> DResult<Vec<Sample>> {
        let url = t.url_vars().fill(&self.url);
        let resp = send_checked(
            self.client.get(&url),
            &format!("GET {url}"),
            DriverError::Unreachable,
        )
        .await?;
        let text = read_text(
            resp,
            METRICS_MAX,
            &format!("GET {url}"),
            DriverError::Unreachable,
        )
        .await?;
        Ok(parse_text(&text))
    }
}

/// One group's reading of `checks` from (baseline, now) scrapes of each of
/// its nodes: the error ratio or the latency quantile over the window, and
/// the counts behind it.
fn group_of(c: &CheckCfg, pairs: &[(Vec<Sample>, Vec<Sample>)]) -> Group {
    match &c.kind {
        CheckKind::ErrorRatio {
            metric,
            label,
            prefix,
        } => {
            let total: f64 = pairs
                .iter()
                .map(|(b, a)| counter_sum_increase(b, a, metric, None))
                .sum();
            let bad: f64 = pairs
                .iter()
                .map(|(b, a)| counter_sum_increase(b, a, metric, Some((label, prefix))))
                .sum();
            Group {
                value: (total > 0.0).then(|| bad / total),
                samples: total as u64,
                series: vec![],
                counts: Some(Counts {
                    requests: total,
                    bad: Some(bad),
                    buckets: vec![],
                }),
            }
        }
        CheckKind::LatencyQuantile { metric, quantile } => {
            let deltas: Vec<Histogram> = pairs
                .iter()
                .map(|(b, a)| {
                    Histogram::from_samples(a, metric).since(&Histogram::from_samples(b, metric))
                })
                .collect();
            let h = Histogram::merge(&deltas);
            Group {
                value: h.quantile(*quantile),
                samples: h.count() as u64,
                series: vec![],
                counts: Some(Counts {
                    requests: h.count(),
                    bad: None,
                    buckets: h
                        .buckets
                        .iter()
                        .copied()
                        .filter(|b| b.0.is_finite())
                        .collect(),
                }),
            }
        }
        CheckKind::Query { .. } => Group::default(),
    }
}

/// Observations for `checks` from (baseline, now) scrapes of every canary,
/// and of every baseline node when there are any.
pub fn observe_from(
    checks: &[CheckCfg],
    canary: &[(Vec<Sample>, Vec<Sample>)],
    baseline: &[(Vec<Sample>, Vec<Sample>)],
) -> Vec<Observation> {
    checks
        .iter()
        .filter(|c| !matches!(c.kind, CheckKind::Query { .. }))
        .map(|c| {
            let g = group_of(c, canary);
            Observation {
                check: c.spec.name.clone(),
                value: g.value,
                samples: g.samples,
                counts: g.counts,
                baseline: (!baseline.is_empty()).then(|| group_of(c, baseline)),
                ..Observation::default()
            }
        })
        .collect()
}

impl ScrapeSource {
    /// (baseline, now) scrapes of each node.
    async fn pairs(&self, nodes: &[Target]) -> DResult<Vec<(Vec<Sample>, Vec<Sample>)>> {
        let mut pairs = Vec::new();
        for t in nodes {
            let now = self.scrape(t).await?;
            let before = self
                .baselines
                .lock()
                .expect("baseline lock")
                .get(&t.name)
                .cloned()
                .unwrap_or_default();
            pairs.push((before, now));
        }
        Ok(pairs)
    }
}

#[async_trait]
impl MetricsSource for ScrapeSource {
    async fn start_window(&self, canary: &[Target], baseline: &[Target]) -> DResult<String> {
        let mut got = HashMap::new();
        for t in canary.iter().chain(baseline) {
            got.insert(t.name.clone(), self.scrape(t).await?);
        }
        *self.baselines.lock().expect("baseline lock") = got;
        Ok(format!(
            "baseline scraped from {} canary and {} baseline node(s)",
            canary.len(),
            baseline.len()
        ))
    }

    async fn observe(&self, canary: &[Target], baseline: &[Target]) -> Vec<Observation> {
        // A baseline node that does not answer (it may have died: the peers
        // check is the judge of that) leaves the baseline to the others.
        let mut answered = Vec::new();
        for t in baseline {
            if let Ok(p) = self.pairs(std::slice::from_ref(t)).await {
                answered.extend(p);
            }
        }
        match self.pairs(canary).await {
            Ok(c) => observe_from(&self.checks, &c, &answered),
            Err(e) => self
                .checks
                .iter()
                .map(|c| Observation {
                    check: c.spec.name.clone(),
                    fault: Some(if e.is_infra() {
                        glidepath_core::Fault::Unreachable
                    } else {
                        glidepath_core::Fault::Failed
                    }),
                    error: Some(e.to_string()),
                    ..Observation::default()
                })
                .collect(),
        }
    }
}
