//! `source = "scrape"`: metrics without Prometheus. At the start of the
//! window each canary's and baseline node's `/metrics` is scraped; every
//! probe scrapes them again and computes, for each group from the
//! differences (counter resets handled), the counts since the window
//! started (what the sequential judge tests) and the error ratio or latency
//! quantile over the last [`RECENT`] (what `max`/`min` are checked against,
//! like a `rate(…[10s])`: an incident that is over stops counting soon).
//! Only the samples the checks name are kept.

use super::http::{read_text, METRICS_MAX};
use super::{http_client, send_checked, DResult, DriverError, MetricsSource, Target};
use crate::config::{CheckCfg, CheckKind};
use async_trait::async_trait;
use glidepath_core::metrics::{counter_sum_increase, parse_text, Histogram, Sample};
use glidepath_core::{Counts, Group, Observation};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The span of the values checked against `max`/`min`.
pub const RECENT: Duration = Duration::from_secs(10);

/// One node's scrapes: at the window's start, and those of the last
/// [`RECENT`] (oldest first; never empty).
struct NodeScrapes {
    start: Vec<Sample>,
    recent: VecDeque<(Instant, Vec<Sample>)>,
}

/// A node's scrapes for one probe: at the window's start, [`RECENT`] ago
/// (or at the start, if later), and now.
pub struct Scrapes {
    pub start: Vec<Sample>,
    pub recent: Vec<Sample>,
    pub now: Vec<Sample>,
}

pub struct ScrapeSource {
    url: String,
    checks: Vec<CheckCfg>,
    client: reqwest::Client,
    nodes: Mutex<HashMap<String, NodeScrapes>>,
}

impl ScrapeSource {
    pub fn new(url: &str, timeout: Duration, checks: Vec<CheckCfg>) -> Self {
        ScrapeSource {
            url: url.into(),
            checks,
            client: http_client(timeout),
            nodes: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a sample is one a check reads.
    fn wanted(&self, s: &Sample) -> bool {
        self.checks.iter().any(|c| match &c.kind {
            CheckKind::ErrorRatio { metric, .. } => s.name == *metric,
            CheckKind::LatencyQuantile { metric, .. } => {
                s.name.strip_suffix("_bucket") == Some(metric.as_str())
            }
            CheckKind::Query { .. } => false,
        })
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
        let mut samples = parse_text(&text);
        samples.retain(|s| self.wanted(s));
        Ok(samples)
    }
}

/// One group's reading of a check from the scrapes of each of its nodes:
/// the counts since the window started, and the error ratio or latency
/// quantile over the last [`RECENT`].
fn group_of(c: &CheckCfg, nodes: &[Scrapes]) -> Group {
    match &c.kind {
        CheckKind::ErrorRatio {
            metric,
            label,
            prefix,
        } => {
            let sum = |from: fn(&Scrapes) -> &Vec<Sample>, bad: bool| -> f64 {
                let filter = bad.then_some((label.as_str(), prefix.as_str()));
                nodes
                    .iter()
                    .map(|n| counter_sum_increase(from(n), &n.now, metric, filter))
                    .sum()
            };
            let (total, bad) = (sum(|n| &n.start, false), sum(|n| &n.start, true));
            let (recent_total, recent_bad) = (sum(|n| &n.recent, false), sum(|n| &n.recent, true));
            Group {
                value: (recent_total > 0.0).then(|| recent_bad / recent_total),
                samples: recent_total as u64,
                series: vec![],
                counts: Some(Counts {
                    requests: total,
                    bad: Some(bad),
                    buckets: vec![],
                }),
            }
        }
        CheckKind::LatencyQuantile { metric, quantile } => {
            let merged = |from: fn(&Scrapes) -> &Vec<Sample>| {
                let deltas: Vec<Histogram> = nodes
                    .iter()
                    .map(|n| {
                        Histogram::from_samples(&n.now, metric)
                            .since(&Histogram::from_samples(from(n), metric))
                    })
                    .collect();
                Histogram::merge(&deltas)
            };
            let (window, recent) = (merged(|n| &n.start), merged(|n| &n.recent));
            Group {
                value: recent.quantile(*quantile),
                samples: recent.count() as u64,
                series: vec![],
                counts: Some(Counts {
                    requests: window.count(),
                    bad: None,
                    buckets: window
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

/// Observations for `checks` from the scrapes of every canary, and of
/// every baseline node when there are any.
pub fn observe_from(
    checks: &[CheckCfg],
    canary: &[Scrapes],
    baseline: &[Scrapes],
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
    /// Each node's scrapes for this probe (scraping it now).
    async fn scrapes(&self, nodes: &[Target]) -> DResult<Vec<Scrapes>> {
        let mut out = Vec::new();
        for t in nodes {
            let now = self.scrape(t).await?;
            let mut all = self.nodes.lock().expect("scrapes lock");
            let Some(n) = all.get_mut(&t.name) else {
                // not scraped at the window's start: it counts from now
                all.insert(
                    t.name.clone(),
                    NodeScrapes {
                        start: now.clone(),
                        recent: VecDeque::from([(Instant::now(), now)]),
                    },
                );
                continue;
            };
            let recent = n.recent.front().map_or(&n.start, |r| &r.1).clone();
            out.push(Scrapes {
                start: n.start.clone(),
                recent,
                now: now.clone(),
            });
            n.recent.push_back((Instant::now(), now));
            while n.recent.len() > 1 && n.recent.front().is_some_and(|r| r.0.elapsed() > RECENT) {
                n.recent.pop_front();
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl MetricsSource for ScrapeSource {
    async fn start_window(&self, canary: &[Target], baseline: &[Target]) -> DResult<String> {
        let mut got = HashMap::new();
        for t in canary.iter().chain(baseline) {
            let s = self.scrape(t).await?;
            got.insert(
                t.name.clone(),
                NodeScrapes {
                    start: s.clone(),
                    recent: VecDeque::from([(Instant::now(), s)]),
                },
            );
        }
        *self.nodes.lock().expect("scrapes lock") = got;
        Ok(format!(
            "baseline scraped from {} canary and {} baseline node(s)",
            canary.len(),
            baseline.len()
        ))
    }

    async fn preflight(&self, nodes: &[Target]) -> DResult<String> {
        for t in nodes {
            self.scrape(t).await?;
        }
        Ok(format!("/metrics answers on all {} node(s)", nodes.len()))
    }

    async fn observe(&self, canary: &[Target], baseline: &[Target]) -> Vec<Observation> {
        // A baseline node that does not answer (it may have died: the peers
        // check is the judge of that) leaves the baseline to the others.
        let mut answered = Vec::new();
        for t in baseline {
            if let Ok(p) = self.scrapes(std::slice::from_ref(t)).await {
                answered.extend(p);
            }
        }
        match self.scrapes(canary).await {
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
