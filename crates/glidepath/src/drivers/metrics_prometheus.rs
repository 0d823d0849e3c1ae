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

use super::{DResult, DriverError, MetricsSource, Target};
use crate::config::{Auth, CheckCfg, CheckKind, SecretRef};
use crate::template::Vars;
use async_trait::async_trait;
use glidepath_core::metrics::Histogram;
use glidepath_core::{Counts, Fault, Group, Observation};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct PrometheusSource {
    url: String,
    auth: Option<Auth>,
    checks: Vec<CheckCfg>,
    client: reqwest::Client,
    /// When the window started (for `{window}`).
    started: Mutex<Option<Instant>>,
}

/// Each series' `label` and value (an instant vector).
pub fn parse_labeled(body: &serde_json::Value, label: &str) -> Result<Vec<(String, f64)>, String> {
    parse_result(body)?;
    Ok(body["data"]["result"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| {
                    let l = s["metric"][label].as_str()?.to_string();
                    let v = s["value"][1].as_str()?.parse::<f64>().ok()?;
                    Some((l, v))
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The range of the values checked against `max`/`min`: the window so far,
/// at most [`super::metrics_scrape::RECENT`] (counts span the whole window).
fn recent_range(window: &str) -> String {
    let secs: u64 = window.trim_end_matches('s').parse().unwrap_or(1);
    format!("{}s", secs.min(super::metrics_scrape::RECENT.as_secs()))
}

/// The finite sum of a query's values (0 for no data).
fn total(v: &[f64]) -> f64 {
    v.iter()
        .copied()
        .filter(|x| x.is_finite())
        .sum::<f64>()
        .max(0.0)
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
        }
    }

    /// One instant query's values, retried on infrastructure faults.
    pub async fn query(&self, q: &str) -> DResult<Vec<f64>> {
        let body = self.query_json(q).await?;
        parse_result(&body).map_err(|e| DriverError::Failed(format!("PromQL `{q}`: {e}")))
    }

    /// One instant query's series by `label`.
    async fn query_by(&self, q: &str, label: &str) -> DResult<Vec<(String, f64)>> {
        let body = self.query_json(q).await?;
        parse_labeled(&body, label).map_err(|e| DriverError::Failed(format!("PromQL `{q}`: {e}")))
    }

    /// One instant query's answer, retried on infrastructure faults (3 tries).
    async fn query_json(&self, q: &str) -> DResult<serde_json::Value> {
        let mut delay = Duration::from_millis(150);
        let mut last = None;
        for attempt in 0..3 {
            if attempt > 0 {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            match self.query_once(q).await {
                Err(e @ DriverError::Unreachable(_)) => last = Some(e),
                other => return other,
            }
        }
        Err(last.expect("an error was recorded"))
    }

    async fn query_once(&self, q: &str) -> DResult<serde_json::Value> {
        let endpoint = format!("{}/api/v1/query", self.url);
        let mut req = self.client.get(&endpoint).query(&[("query", q)]);
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
        let join =
            |ts: &[Target], f: fn(&Target) -> &str| ts.iter().map(f).collect::<Vec<_>>().join("|");
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

    /// One check read for the group `nodes` (the canaries, or the baseline).
    async fn group(
        &self,
        c: &CheckCfg,
        nodes: &[Target],
        baseline: &[Target],
        window: &str,
    ) -> DResult<Group> {
        let inst = nodes
            .iter()
            .map(|t| t.address.as_str())
            .collect::<Vec<_>>()
            .join("|");
        match &c.kind {
            CheckKind::Query {
                query,
                samples_query,
                events_query,
            } => {
                let render = |q: &str| self.render(q, nodes, baseline, window);
                // the driver observes (every series, raw); the core decides
                let series = self.query(&render(query)).await?;
                let requests = match samples_query {
                    Some(sq) => Some(total(&self.query(&render(sq)).await?)),
                    None => None,
                };
                let samples = requests
                    .map_or(u64::from(series.iter().any(|v| v.is_finite())), |r| {
                        r as u64
                    });
                let counts = match (events_query, requests) {
                    (Some(eq), Some(requests)) if c.spec.compare.is_some() => Some(Counts {
                        requests,
                        bad: Some(total(&self.query(&render(eq)).await?)),
                        buckets: vec![],
                    }),
                    _ => None,
                };
                Ok(Group {
                    value: None,
                    samples,
                    series,
                    counts,
                })
            }
            CheckKind::ErrorRatio {
                metric,
                label,
                prefix,
            } => {
                let count = |range: &str, bad: bool| {
                    let filter = if bad {
                        format!(",{label}=~\"{prefix}.*\"")
                    } else {
                        String::new()
                    };
                    format!("sum(increase({metric}{{instance=~\"{inst}\"{filter}}}[{range}]))")
                };
                let requests = total(&self.query(&count(window, false)).await?);
                let bad = total(&self.query(&count(window, true)).await?);
                // the value checked against max/min: over the last RECENT
                let recent = recent_range(window);
                let (rr, rb) = if recent == window {
                    (requests, bad)
                } else {
                    (
                        total(&self.query(&count(&recent, false)).await?),
                        total(&self.query(&count(&recent, true)).await?),
                    )
                };
                Ok(Group {
                    value: (rr > 0.0).then(|| rb / rr),
                    samples: rr as u64,
                    series: vec![],
                    counts: Some(Counts {
                        requests,
                        bad: Some(bad),
                        buckets: vec![],
                    }),
                })
            }
            CheckKind::LatencyQuantile { metric, quantile } => {
                let whole = self.histogram(metric, &inst, window).await?;
                let recent = recent_range(window);
                let last = if recent == window {
                    whole.clone()
                } else {
                    self.histogram(metric, &inst, &recent).await?
                };
                Ok(Group {
                    value: last.quantile(*quantile),
                    samples: last.count() as u64,
                    series: vec![],
                    counts: Some(Counts {
                        requests: whole.count(),
                        bad: None,
                        buckets: whole
                            .buckets
                            .into_iter()
                            .filter(|b| b.0.is_finite())
                            .collect(),
                    }),
                })
            }
        }
    }

    /// A histogram's increase over `range` on the instances `inst`.
    async fn histogram(&self, metric: &str, inst: &str, range: &str) -> DResult<Histogram> {
        let q = format!("sum by (le) (increase({metric}_bucket{{instance=~\"{inst}\"}}[{range}]))");
        let mut buckets: Vec<(f64, f64)> = self
            .query_by(&q, "le")
            .await?
            .into_iter()
            .filter_map(|(le, n)| Some((le.parse::<f64>().ok()?, n.max(0.0))))
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(Histogram { buckets })
    }

    /// One check for both groups.
    async fn observe_check(
        &self,
        c: &CheckCfg,
        canary: &[Target],
        baseline: &[Target],
        window: &str,
    ) -> DResult<Observation> {
        let g = self.group(c, canary, baseline, window).await?;
        let base = if baseline.is_empty() {
            None
        } else {
            Some(self.group(c, baseline, baseline, window).await?)
        };
        Ok(Observation {
            check: c.spec.name.clone(),
            value: g.value,
            samples: g.samples,
            series: g.series,
            counts: g.counts,
            baseline: base,
            ..Observation::default()
        })
    }
}

fn read_secret(s: &SecretRef) -> DResult<String> {
    s.read().map_err(DriverError::Failed)
}

#[async_trait]
impl MetricsSource for PrometheusSource {
    async fn start_window(&self, _canary: &[Target], _baseline: &[Target]) -> DResult<String> {
        let v = self.query("vector(1)").await?;
        if v.is_empty() {
            return Err(DriverError::Failed(
                "Prometheus answered `vector(1)` with no data".into(),
            ));
        }
        *self.started.lock().expect("window lock") = Some(Instant::now());
        Ok(format!("Prometheus {} answers", self.url))
    }

    async fn preflight(&self, nodes: &[Target]) -> DResult<String> {
        self.start_window(nodes, &[]).await?;
        let mut n = 0;
        for c in &self.checks {
            self.group(c, nodes, &[], "1m").await.map_err(|e| match e {
                DriverError::Failed(m) => {
                    DriverError::Failed(format!("check `{}`: {m}", c.spec.name))
                }
                other => other,
            })?;
            n += 1;
        }
        Ok(format!("Prometheus {} answers all {n} check(s)", self.url))
    }

    async fn observe(&self, canary: &[Target], baseline: &[Target]) -> Vec<Observation> {
        let window = self.window();
        let mut out = Vec::new();
        for c in &self.checks {
            out.push(
                match self.observe_check(c, canary, baseline, &window).await {
                    Ok(o) => o,
                    Err(e) => Observation {
                        check: c.spec.name.clone(),
                        fault: Some(if e.is_infra() {
                            Fault::Unreachable
                        } else {
                            Fault::Failed
                        }),
                        error: Some(e.to_string()),
                        ..Observation::default()
                    },
                },
            );
        }
        out
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
            "node=api-1 address=10.0.0.1:80 host=10.0.0.1 instances=10.0.0.1:80|10.0.0.2:80 nodes=api-1|api-2 baseline=10.0.0.3:80 baseline_nodes=api-3 window=12s "
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
