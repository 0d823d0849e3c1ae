//! `source = "prometheus"`: instant PromQL queries over the HTTP API. A
//! `query` check has a value query and a sample-size query (and, compared
//! with the baseline, an `events_query`); `{instances}` (a regex alternation
//! of the watched group's addresses), `{address}`, `{node}`, `{nodes}`,
//! `{baseline}`, `{baseline_nodes}` and `{window}` (the time since the
//! window started, as a range) are filled in. An `error_ratio` or
//! `latency_quantile` check of a metric is turned into PromQL here:
//! `increase` over the window of the counter, or of the histogram's buckets
//! by `le`. Every check is read for the canary group and, the same query
//! with the baseline's instances, for the baseline group.
//!
//! An empty result is *no data* (inconclusive, never a pass); `NaN`
//! likewise. HTTP errors and timeouts are infrastructure faults, retried
//! with backoff and then reported as such, not as a verdict. Credentials
//! come from an env var or a file at each request, never logged.

use super::metrics_scrape::{observe_from, Readings, Scrapes, RECENT};
use super::{DResult, DriverError, MetricsSource, Target};
use crate::config::{Auth, CheckCfg, CheckKind, SecretRef};
use crate::template::Vars;
use async_trait::async_trait;
use glidepath_core::metrics::Sample;
use glidepath_core::{Counts, Group, Observation};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct PrometheusSource {
    url: String,
    auth: Option<Auth>,
    checks: Vec<CheckCfg>,
    client: reqwest::Client,
    /// When the window started (for `{window}`).
    started: Mutex<Option<Instant>>,
    /// The raw counters of the `error_ratio`/`latency_quantile` checks, by
    /// node: differenced like scrapes (never `increase`, which extrapolates).
    readings: Readings,
    /// A compared `query` check's counter totals at the window's start:
    /// (canary events, canary requests, baseline events, baseline requests).
    starts: Mutex<HashMap<String, [f64; 4]>>,
}

/// Every series of an instant vector, as samples (`__name__` as the name).
pub fn parse_series(body: &serde_json::Value) -> Result<Vec<Sample>, String> {
    parse_result(body)?;
    Ok(body["data"]["result"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| {
                    let mut labels: BTreeMap<String, String> = s["metric"]
                        .as_object()?
                        .iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect();
                    let name = labels.remove("__name__").unwrap_or_default();
                    let value = s["value"][1].as_str()?.parse::<f64>().ok()?;
                    Some(Sample {
                        name,
                        labels,
                        value,
                    })
                })
                .collect()
        })
        .unwrap_or_default())
}

/// `items` as a regex alternation that matches exactly them, written for a
/// double-quoted PromQL string: regex metacharacters (the dots of an IPv4
/// address, the brackets of an IPv6 one) are escaped, and the escaping
/// backslash doubled for the string.
pub fn regex_alternation<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items
        .map(|i| {
            i.chars()
                .map(|c| {
                    if "\\.^$|?*+()[]{}".contains(c) {
                        format!("\\\\{c}")
                    } else {
                        c.to_string()
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// The finite sum of a query's values (0 for no data).
fn total(v: &[f64]) -> f64 {
    v.iter()
        .copied()
        .filter(|x| x.is_finite())
        .sum::<f64>()
        .max(0.0)
}

/// The time of a probe's queries: now, in Unix seconds. Every query of one
/// probe is evaluated at it, so they describe the same instant.
fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The values of an instant query's result (vector or scalar).
pub fn parse_result(body: &serde_json::Value) -> Result<Vec<f64>, String> {
    if body["status"] != "success" {
        return Err(format!(
            "{}: {}",
            body["errorType"].as_str().unwrap_or("error"),
            body["error"].as_str().unwrap_or("query failed")
        ));
    }
    let data = &body["data"];
    let num = |v: &serde_json::Value| -> Option<f64> {
        v[1].as_str().and_then(|s| s.parse::<f64>().ok())
    };
    match data["resultType"].as_str() {
        Some("vector") => Ok(data["result"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| num(&s["value"])).collect())
            .unwrap_or_default()),
        Some("scalar") => Ok(num(&data["result"]).into_iter().collect()),
        other => Err(format!(
            "unsupported result type {other:?}: use an instant vector or scalar"
        )),
    }
}

impl PrometheusSource {
    pub fn new(url: &str, auth: Option<Auth>, timeout: Duration, checks: Vec<CheckCfg>) -> Self {
        PrometheusSource {
            url: url.trim_end_matches('/').to_string(),
            auth,
            checks,
            client: super::http_client(timeout),
            started: Mutex::new(None),
            readings: Readings::new(RECENT),
            starts: Mutex::new(HashMap::new()),
        }
    }

    /// The span of the values checked against `max`/`min`.
    pub fn with_recent(mut self, recent: Duration) -> Self {
        self.readings = Readings::new(recent);
        self
    }

    /// One instant query's values, retried on infrastructure faults.
    pub async fn query(&self, q: &str) -> DResult<Vec<f64>> {
        self.query_at(q, None).await
    }

    async fn query_at(&self, q: &str, at: Option<f64>) -> DResult<Vec<f64>> {
        let body = self.query_json(q, at).await?;
        parse_result(&body).map_err(|e| DriverError::Failed(format!("PromQL `{q}`: {e}")))
    }

    /// One instant query's answer, retried on infrastructure faults (3 tries).
    async fn query_json(&self, q: &str, at: Option<f64>) -> DResult<serde_json::Value> {
        let mut delay = Duration::from_millis(150);
        let mut last = None;
        for attempt in 0..3 {
            if attempt > 0 {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            match self.query_once(q, at).await {
                Err(e @ DriverError::Unreachable(_)) => last = Some(e),
                other => return other,
            }
        }
        Err(last.expect("an error was recorded"))
    }

    async fn query_once(&self, q: &str, at: Option<f64>) -> DResult<serde_json::Value> {
        let endpoint = format!("{}/api/v1/query", self.url);
        let mut req = self.client.get(&endpoint).query(&[("query", q)]);
        if let Some(t) = at {
            req = req.query(&[("time", format!("{t:.3}"))]);
        }
        match &self.auth {
            None => {}
            Some(Auth::Bearer(s)) => req = req.bearer_auth(read_secret(s)?),
            Some(Auth::Basic { user, password }) => {
                req = req.basic_auth(user, Some(read_secret(password)?))
            }
        }
        let resp = req
            .send()
            .await
            .map_err(|e| super::http_err(&format!("Prometheus {endpoint}"), e))?;
        let status = resp.status();
        let bytes = super::http::read_body(
            resp,
            super::http::PROMETHEUS_MAX,
            &format!("Prometheus {endpoint}"),
            DriverError::Unreachable,
        )
        .await?;
        let body: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            DriverError::Unreachable(format!(
                "Prometheus {endpoint}: HTTP {status}, unreadable answer: {e}"
            ))
        })?;
        if status.is_server_error()
            || status == reqwest::StatusCode::UNAUTHORIZED
            || status == reqwest::StatusCode::FORBIDDEN
        {
            return Err(DriverError::Unreachable(format!(
                "Prometheus {endpoint}: HTTP {status}"
            )));
        }
        Ok(body)
    }

    /// `q` for the group `nodes`, with `baseline` the baseline's nodes and
    /// `window` the range since the window started.
    fn render(&self, q: &str, nodes: &[Target], baseline: &[Target], window: &str) -> String {
        let join = |ts: &[Target], f: fn(&Target) -> &str| regex_alternation(ts.iter().map(f));
        let first = nodes.first();
        Vars::node(
            first.map_or("", |t| t.name.as_str()),
            first.map_or("", |t| t.address.as_str()),
        )
        .with("instances", join(nodes, |t| t.address.as_str()))
        .with("nodes", join(nodes, |t| t.name.as_str()))
        .with("baseline", join(baseline, |t| t.address.as_str()))
        .with("baseline_nodes", join(baseline, |t| t.name.as_str()))
        .with("window", window)
        .fill(q)
    }

    /// The time since the window started, as a PromQL range (at least 1s).
    fn window(&self) -> String {
        let since = self
            .started
            .lock()
            .expect("window lock")
            .map_or(1, |t| t.elapsed().as_secs_f64().ceil() as u64);
        format!("{}s", since.max(1))
    }

    /// The series the `error_ratio`/`latency_quantile` checks read.
    fn kind_metrics(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .checks
            .iter()
            .filter_map(|c| match &c.kind {
                CheckKind::ErrorRatio { metric, .. } => Some(metric.clone()),
                CheckKind::LatencyQuantile { metric, .. } => Some(format!("{metric}_bucket")),
                CheckKind::Query { .. } => None,
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The raw series of the kind checks for `nodes` at `at`, by node name
    /// (Prometheus's `instance` label is the node's address). A node with
    /// no series is absent.
    async fn raw(&self, nodes: &[Target], at: f64) -> DResult<HashMap<String, Vec<Sample>>> {
        let mut by_node: HashMap<String, Vec<Sample>> = HashMap::new();
        let metrics = self.kind_metrics();
        if metrics.is_empty() || nodes.is_empty() {
            return Ok(by_node);
        }
        let inst = regex_alternation(nodes.iter().map(|t| t.address.as_str()));
        for m in metrics {
            let q = format!("{m}{{instance=~\"{inst}\"}}");
            let body = self.query_json(&q, Some(at)).await?;
            let series = parse_series(&body)
                .map_err(|e| DriverError::Failed(format!("PromQL `{q}`: {e}")))?;
            for s in series {
                let Some(t) = nodes
                    .iter()
                    .find(|t| s.labels.get("instance") == Some(&t.address))
                else {
                    continue;
                };
                by_node.entry(t.name.clone()).or_default().push(s);
            }
        }
        Ok(by_node)
    }

    /// A `query` check read for the group `nodes` at `at`: the value query
    /// (every series, raw: the core decides), the sample size, and for a
    /// compared check the counter totals of `events_query`/`samples_query`.
    async fn query_group(
        &self,
        c: &CheckCfg,
        nodes: &[Target],
        baseline: &[Target],
        window: &str,
        at: f64,
    ) -> DResult<(Group, Option<(f64, f64)>)> {
        let CheckKind::Query {
            query,
            samples_query,
            events_query,
        } = &c.kind
        else {
            return Ok((Group::default(), None));
        };
        let render = |q: &str| self.render(q, nodes, baseline, window);
        let series = self.query_at(&render(query), Some(at)).await?;
        let requests = match samples_query {
            Some(sq) => Some(total(&self.query_at(&render(sq), Some(at)).await?)),
            None => None,
        };
        let totals = match (events_query, requests) {
            (Some(eq), Some(r)) if c.spec.compare.is_some() => {
                Some((total(&self.query_at(&render(eq), Some(at)).await?), r))
            }
            _ => None,
        };
        let samples = match (totals, requests) {
            // compared: the requests since the window started (set by the caller)
            (Some(_), _) => 0,
            (None, Some(r)) => r as u64,
            (None, None) => u64::from(series.iter().any(|v| v.is_finite())),
        };
        Ok((
            Group {
                value: None,
                samples,
                series,
                counts: None,
            },
            totals,
        ))
    }

    /// The `query` checks for both groups at `at`.
    async fn observe_queries(
        &self,
        canary: &[Target],
        baseline: &[Target],
        window: &str,
        at: f64,
    ) -> Vec<Observation> {
        let mut out = Vec::new();
        for c in &self.checks {
            if !matches!(c.kind, CheckKind::Query { .. }) {
                continue;
            }
            let read = async {
                let (mut g, ct) = self.query_group(c, canary, baseline, window, at).await?;
                let (mut b, bt) = if baseline.is_empty() {
                    (None, None)
                } else {
                    let (b, bt) = self.query_group(c, baseline, baseline, window, at).await?;
                    (Some(b), bt)
                };
                if let (Some((ce, cr)), Some((be, br)), Some(bg)) = (ct, bt, b.as_mut()) {
                    // counts since the window started: the totals' differences
                    let start = self
                        .starts
                        .lock()
                        .expect("starts lock")
                        .get(&c.spec.name)
                        .copied();
                    let [sce, scr, sbe, sbr] = start.unwrap_or([ce, cr, be, br]);
                    g.counts = Some(Counts {
                        requests: cr - scr,
                        bad: Some(ce - sce),
                        buckets: vec![],
                    });
                    g.samples = (cr - scr).max(0.0) as u64;
                    bg.counts = Some(Counts {
                        requests: br - sbr,
                        bad: Some(be - sbe),
                        buckets: vec![],
                    });
                    bg.samples = (br - sbr).max(0.0) as u64;
                    if start.is_none() {
                        self.starts
                            .lock()
                            .expect("starts lock")
                            .insert(c.spec.name.clone(), [ce, cr, be, br]);
                    }
                }
                Ok::<_, DriverError>(Observation {
                    check: c.spec.name.clone(),
                    value: g.value,
                    samples: g.samples,
                    series: g.series,
                    counts: g.counts,
                    baseline: b,
                    ..Observation::default()
                })
            };
            out.push(read.await.unwrap_or_else(|e| {
                super::metrics_scrape::failed(std::slice::from_ref(c), &e).remove(0)
            }));
        }
        out
    }
}

fn read_secret(s: &SecretRef) -> DResult<String> {
    s.read().map_err(DriverError::Failed)
}

#[async_trait]
impl MetricsSource for PrometheusSource {
    async fn start_window(&self, canary: &[Target], baseline: &[Target]) -> DResult<String> {
        let v = self.query("vector(1)").await?;
        if v.is_empty() {
            return Err(DriverError::Failed(
                "Prometheus answered `vector(1)` with no data".into(),
            ));
        }
        let at = now_secs();
        let all: Vec<Target> = canary.iter().chain(baseline).cloned().collect();
        let raw = self.raw(&all, at).await?;
        self.readings.start(raw.into_iter().collect());
        self.starts.lock().expect("starts lock").clear();
        // the compared query checks' counter totals now
        for c in &self.checks {
            if c.spec.compare.is_none() || baseline.is_empty() {
                continue;
            }
            let (_, ct) = self.query_group(c, canary, baseline, "1s", at).await?;
            let (_, bt) = self.query_group(c, baseline, baseline, "1s", at).await?;
            if let (Some((ce, cr)), Some((be, br))) = (ct, bt) {
                self.starts
                    .lock()
                    .expect("starts lock")
                    .insert(c.spec.name.clone(), [ce, cr, be, br]);
            }
        }
        *self.started.lock().expect("window lock") = Some(Instant::now());
        Ok(format!("Prometheus {} answers", self.url))
    }

    async fn preflight(&self, nodes: &[Target]) -> DResult<String> {
        self.query("vector(1)").await?;
        let at = now_secs();
        let raw = self.raw(nodes, at).await?;
        let mut n = self.kind_metrics().len();
        for c in &self.checks {
            if !matches!(c.kind, CheckKind::Query { .. }) {
                continue;
            }
            self.query_group(c, nodes, &[], "1m", at)
                .await
                .map_err(|e| match e {
                    DriverError::Failed(m) => {
                        DriverError::Failed(format!("check `{}`: {m}", c.spec.name))
                    }
                    other => other,
                })?;
            n += 1;
        }
        let seen = raw.len();
        Ok(format!(
            "Prometheus {} answers all {n} check queries ({seen} of {} node(s) have the checks' series)",
            self.url,
            nodes.len()
        ))
    }

    async fn observe(&self, canary: &[Target], baseline: &[Target]) -> Vec<Observation> {
        let window = self.window();
        let at = now_secs();
        let all: Vec<Target> = canary.iter().chain(baseline).cloned().collect();
        let mut raw = match self.raw(&all, at).await {
            Ok(r) => r,
            Err(e) => return super::metrics_scrape::failed(&self.checks, &e),
        };
        // a node without series this time keeps its last reading
        let mut group = |nodes: &[Target]| -> Vec<Scrapes> {
            nodes
                .iter()
                .filter_map(|t| self.readings.probe(&t.name, raw.remove(&t.name)))
                .collect()
        };
        let (c, b) = (group(canary), group(baseline));
        // observe_from reads the error_ratio/latency_quantile checks only
        let by_kind = observe_from(&self.checks, &c, &b);
        let queries = self.observe_queries(canary, baseline, &window, at).await;
        // in the plan's order
        self.checks
            .iter()
            .filter_map(|c| {
                by_kind
                    .iter()
                    .chain(&queries)
                    .find(|o| o.check == c.spec.name)
                    .cloned()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_query_placeholder_is_filled() {
        let src = PrometheusSource::new("http://127.0.0.1:1", None, Duration::from_secs(1), vec![]);
        let t = |name: &str, address: &str| Target {
            name: name.into(),
            address: address.into(),
            install_dir: "/opt".into(),
            ..Default::default()
        };
        let q: String = crate::template::QUERY_PLACEHOLDERS
            .iter()
            .map(|p| format!("{p}={{{p}}} "))
            .collect();
        assert_eq!(
            src.render(
                &q,
                &[t("api-1", "10.0.0.1:80"), t("api-2", "10.0.0.2:80")],
                &[t("api-3", "10.0.0.3:80")],
                "12s"
            ),
            "node=api-1 address=10.0.0.1:80 host=10.0.0.1 port=80 instances=10\\\\.0\\\\.0\\\\.1:80|10\\\\.0\\\\.0\\\\.2:80 nodes=api-1|api-2 baseline=10\\\\.0\\\\.0\\\\.3:80 baseline_nodes=api-3 window=12s "
        );
    }

    /// A stand-in HTTP endpoint (unit test only) that demands credentials.
    async fn serve(expect: &'static str) -> String {
        use axum::http::{HeaderMap, StatusCode};
        let app = axum::Router::new().route(
            "/api/v1/query",
            axum::routing::get(move |h: HeaderMap| async move {
                let ok = h.get("authorization").and_then(|v| v.to_str().ok()) == Some(expect);
                if ok {
                    (StatusCode::OK, r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"0.5"]}]}}"#)
                } else {
                    (StatusCode::UNAUTHORIZED, r#"{"status":"error","errorType":"unauthorized","error":"bad credentials"}"#)
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        url
    }

    #[tokio::test]
    async fn bearer_token_from_a_file_is_sent_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret-token\n").unwrap();
        let url = serve("Bearer s3cret-token").await;
        let good = PrometheusSource::new(
            &url,
            Some(Auth::Bearer(SecretRef::File(token))),
            Duration::from_secs(2),
            vec![],
        );
        assert_eq!(good.query("up").await.unwrap(), vec![0.5]);
        let wrong = dir.path().join("wrong");
        std::fs::write(&wrong, "not-it").unwrap();
        let bad = PrometheusSource::new(
            &url,
            Some(Auth::Bearer(SecretRef::File(wrong))),
            Duration::from_secs(2),
            vec![],
        );
        let err = bad.query("up").await.unwrap_err();
        assert!(
            err.is_infra(),
            "auth failures are infrastructure faults: {err}"
        );
        assert!(
            err.to_string().contains("401") && !err.to_string().contains("not-it"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn basic_auth_password_from_env() {
        // "glidepath:pw-123" in base64
        let url = serve("Basic Z2xpZGVwYXRoOnB3LTEyMw==").await;
        std::env::set_var("GLIDEPATH_TEST_PROM_PW", "pw-123");
        let src = PrometheusSource::new(
            &url,
            Some(Auth::Basic {
                user: "glidepath".into(),
                password: SecretRef::Env("GLIDEPATH_TEST_PROM_PW".into()),
            }),
            Duration::from_secs(2),
            vec![],
        );
        assert_eq!(src.query("up").await.unwrap(), vec![0.5]);
        let missing = PrometheusSource::new(
            &url,
            Some(Auth::Bearer(SecretRef::Env(
                "GLIDEPATH_TEST_UNSET_VAR".into(),
            ))),
            Duration::from_secs(2),
            vec![],
        );
        assert_eq!(
            missing.query("up").await.unwrap_err().to_string(),
            "environment variable GLIDEPATH_TEST_UNSET_VAR is not set"
        );
    }

    /// A node's address matches itself only: `.` is not any character, and
    /// an IPv6 address's brackets are not a character class.
    #[test]
    fn instances_are_matched_exactly() {
        let alt = regex_alternation(["10.0.0.1:80", "[::1]:9000"].into_iter());
        assert_eq!(alt, r"10\\.0\\.0\\.1:80|\\[::1\\]:9000");
    }

    #[test]
    fn results() {
        let v: serde_json::Value = serde_json::from_str(r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"0.25"]},{"metric":{},"value":[1,"NaN"]}]}}"#).unwrap();
        let r = parse_result(&v).unwrap();
        assert_eq!(r[0], 0.25);
        assert!(r[1].is_nan());
        let empty: serde_json::Value = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
        )
        .unwrap();
        assert!(parse_result(&empty).unwrap().is_empty());
        let bad: serde_json::Value = serde_json::from_str(
            r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
        )
        .unwrap();
        assert_eq!(parse_result(&bad).unwrap_err(), "bad_data: parse error");
        let scalar: serde_json::Value = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"scalar","result":[1,"3"]}}"#,
        )
        .unwrap();
        assert_eq!(parse_result(&scalar).unwrap(), vec![3.0]);
    }
}
