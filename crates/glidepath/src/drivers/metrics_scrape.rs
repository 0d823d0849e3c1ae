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

/// The default span of the values checked against `max`/`min`
/// (`[sli] recent`).
pub const RECENT: Duration = Duration::from_secs(60);

/// One node's readings: at the window's start, and those of the last
/// `recent` span (oldest first; never empty).
struct NodeReadings {
    start: Vec<Sample>,
    recent: VecDeque<(Instant, Vec<Sample>)>,
}

/// A node's readings for one probe: at the window's start, `recent` ago
/// (or at the start, if later), and now.
pub struct Scrapes {
    pub start: Vec<Sample>,
    pub recent: Vec<Sample>,
    pub now: Vec<Sample>,
}

/// Every node's readings over a window, by node name: what both metrics
/// sources difference. A node that does not answer a probe has its last
/// reading carried forward (its span counts nothing), so its counters are
/// never counted twice when it answers again.
pub struct Readings {
    recent: Duration,
    nodes: Mutex<HashMap<String, NodeReadings>>,
}

impl Readings {
    pub fn new(recent: Duration) -> Readings {
        Readings {
            recent,
            nodes: Mutex::new(HashMap::new()),
        }
    }

    /// The window starts: these are the nodes' first readings (a node not
    /// among them counts from its first reading at a probe).
    pub fn start(&self, readings: Vec<(String, Vec<Sample>)>) {
        let now = Instant::now();
        *self.nodes.lock().expect("readings lock") = readings
            .into_iter()
            .map(|(n, s)| {
                (
                    n,
                    NodeReadings {
                        start: s.clone(),
                        recent: VecDeque::from([(now, s)]),
                    },
                )
            })
            .collect();
    }

    /// One node's readings at this probe; `None` if it did not answer (its
    /// last reading stands in). `None` back when it has nothing to count yet.
    pub fn probe(&self, node: &str, now: Option<Vec<Sample>>) -> Option<Scrapes> {
        let mut all = self.nodes.lock().expect("readings lock");
        let Some(n) = all.get_mut(node) else {
            let s = now?;
            all.insert(
                node.to_string(),
                NodeReadings {
                    start: s.clone(),
                    recent: VecDeque::from([(Instant::now(), s)]),
                },
            );
            return None;
        };
        let now = match now {
            Some(s) => s,
            None => n.recent.back().map_or(&n.start, |r| &r.1).clone(),
        };
        let out = Scrapes {
            start: n.start.clone(),
            recent: n.recent.front().map_or(&n.start, |r| &r.1).clone(),
            now: now.clone(),
        };
        n.recent.push_back((Instant::now(), now));
        while n.recent.len() > 1
            && n.recent
                .front()
                .is_some_and(|r| r.0.elapsed() > self.recent)
        {
            n.recent.pop_front();
        }
        Some(out)
    }
}

pub struct ScrapeSource {
    url: String,
    checks: Vec<CheckCfg>,
    client: reqwest::Client,
    readings: Readings,
}

impl ScrapeSource {
    pub fn new(url: &str, timeout: Duration, checks: Vec<CheckCfg>) -> Self {
        ScrapeSource {
            url: url.into(),
            checks,
            client: http_client(timeout),
            readings: Readings::new(RECENT),
        }
    }

    /// The span of the values checked against `max`/`min`.
    pub fn with_recent(mut self, recent: Duration) -> Self {
        self.readings = Readings::new(recent);
        self
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

#[async_trait]
impl MetricsSource for ScrapeSource {
    async fn start_window(&self, canary: &[Target], baseline: &[Target]) -> DResult<String> {
        let mut got = Vec::new();
        for t in canary {
            got.push((t.name.clone(), self.scrape(t).await?));
        }
        // a baseline node that does not answer (it may be down, within
        // max_unavailable: the peers check judges that) is left out
        let mut answered = 0;
        for t in baseline {
            if let Ok(s) = self.scrape(t).await {
                got.push((t.name.clone(), s));
                answered += 1;
            }
        }
        self.readings.start(got);
        Ok(format!(
            "baseline scraped from {} canary and {answered} of {} baseline node(s)",
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
        let mut c = Vec::new();
        for t in canary {
            match self.scrape(t).await {
                Ok(now) => c.extend(self.readings.probe(&t.name, Some(now))),
                Err(e) => return failed(&self.checks, &e),
            }
        }
        // a baseline node that does not answer keeps its last reading
        let mut b = Vec::new();
        for t in baseline {
            let now = self.scrape(t).await.ok();
            b.extend(self.readings.probe(&t.name, now));
        }
        observe_from(&self.checks, &c, &b)
    }
}

/// Every check's observation when the source failed.
pub fn failed(checks: &[CheckCfg], e: &DriverError) -> Vec<Observation> {
    checks
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
        .collect()
}
