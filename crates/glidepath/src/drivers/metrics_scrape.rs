//! `source = "scrape"`: metrics without Prometheus. At the start of the
//! window each node's `/metrics` is scraped as a baseline; every probe
//! scrapes again and computes, from the difference (counter resets
//! handled), the error ratio and latency quantiles over the window.

use super::http::{read_text, METRICS_MAX};
use super::{http_client, send_checked, DResult, DriverError, MetricsSource, Target};
use crate::config::{CheckCfg, CheckKind};
use async_trait::async_trait;
use glidepath_core::metrics::{counter_sum_increase, parse_text, Histogram, Sample};
use glidepath_core::Observation;
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

/// Observations for `checks` from (baseline, now) scrapes of every node.
pub fn observe_from(checks: &[CheckCfg], pairs: &[(Vec<Sample>, Vec<Sample>)]) -> Vec<Observation> {
    checks
        .iter()
        .filter(|c| !matches!(c.kind, CheckKind::Query { .. }))
        .map(|c| match &c.kind {
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
                Observation {
                    check: c.spec.name.clone(),
                    value: (total > 0.0).then(|| bad / total),
                    samples: total as u64,
                    error: None,
                    series: vec![],
                    fault: None,
                }
            }
            CheckKind::LatencyQuantile { metric, quantile } => {
                let deltas: Vec<Histogram> = pairs
                    .iter()
                    .map(|(b, a)| {
                        Histogram::from_samples(a, metric)
                            .since(&Histogram::from_samples(b, metric))
                    })
                    .collect();
                let h = Histogram::merge(&deltas);
                Observation {
                    check: c.spec.name.clone(),
                    value: h.quantile(*quantile),
                    samples: h.count() as u64,
                    error: None,
                    series: vec![],
                    fault: None,
                }
            }
            CheckKind::Query { .. } => unreachable!("filtered out"),
        })
        .collect()
}

#[async_trait]
impl MetricsSource for ScrapeSource {
    async fn start_window(&self, nodes: &[Target]) -> DResult<String> {
        let mut got = HashMap::new();
        for t in nodes {
            got.insert(t.name.clone(), self.scrape(t).await?);
        }
        let n = got.len();
        *self.baselines.lock().expect("baseline lock") = got;
        Ok(format!("baseline scraped from {n} node(s)"))
    }

    async fn observe(&self, nodes: &[Target]) -> Vec<Observation> {
        let mut pairs = Vec::new();
        for t in nodes {
            match self.scrape(t).await {
                Ok(now) => {
                    let before = self
                        .baselines
                        .lock()
                        .expect("baseline lock")
                        .get(&t.name)
                        .cloned()
                        .unwrap_or_default();
                    pairs.push((before, now));
                }
                Err(e) => {
                    return self
                        .checks
                        .iter()
                        .map(|c| Observation {
                            check: c.spec.name.clone(),
                            value: None,
                            samples: 0,
                            fault: Some(if e.is_infra() {
                                glidepath_core::Fault::Unreachable
                            } else {
                                glidepath_core::Fault::Failed
                            }),
                            error: Some(e.to_string()),
                            series: vec![],
                        })
                        .collect();
                }
            }
        }
        observe_from(&self.checks, &pairs)
    }
}
