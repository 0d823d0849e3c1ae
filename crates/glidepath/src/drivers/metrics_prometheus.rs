//! `source = "prometheus"`: instant PromQL queries over the HTTP API. Each
//! check has a value query and a sample-size query; `{instances}` (a regex
//! alternation of the canaries' addresses), `{address}`, `{node}` and
//! `{nodes}` are filled in. An empty result is *no data* (inconclusive, never
//! a pass); `NaN` likewise. HTTP errors and timeouts are infrastructure
//! faults, retried with backoff and then reported as such, not as a verdict.
//! Credentials come from an env var or a file at each request, never logged.

use super::{DResult, DriverError, MetricsSource, Target};
use crate::config::{Auth, CheckCfg, CheckKind, SecretRef};
use crate::template::Vars;
use async_trait::async_trait;
use glidepath_core::{Fault, Observation};
use std::time::Duration;

pub struct PrometheusSource {
    url: String,
    auth: Option<Auth>,
    checks: Vec<CheckCfg>,
    client: reqwest::Client,
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
        }
    }

    /// One instant query, retried on infrastructure faults (3 tries).
    pub async fn query(&self, q: &str) -> DResult<Vec<f64>> {
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

    async fn query_once(&self, q: &str) -> DResult<Vec<f64>> {
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
        parse_result(&body).map_err(|e| DriverError::Failed(format!("PromQL `{q}`: {e}")))
    }

    fn render(&self, q: &str, nodes: &[Target]) -> String {
        let instances: Vec<&str> = nodes.iter().map(|t| t.address.as_str()).collect();
        let names: Vec<&str> = nodes.iter().map(|t| t.name.as_str()).collect();
        let first = nodes.first();
        Vars::node(
            first.map_or("", |t| t.name.as_str()),
            first.map_or("", |t| t.address.as_str()),
        )
        .with("instances", instances.join("|"))
        .with("nodes", names.join("|"))
        .fill(q)
    }
}

fn read_secret(s: &SecretRef) -> DResult<String> {
    s.read().map_err(DriverError::Failed)
}

#[async_trait]
impl MetricsSource for PrometheusSource {
    async fn start_window(&self, _nodes: &[Target]) -> DResult<String> {
        let v = self.query("vector(1)").await?;
        if v.is_empty() {
            return Err(DriverError::Failed(
                "Prometheus answered `vector(1)` with no data".into(),
            ));
        }
        Ok(format!("Prometheus {} answers", self.url))
    }

    async fn preflight(&self, nodes: &[Target]) -> DResult<String> {
        self.start_window(nodes).await?;
        let mut n = 0;
        for c in &self.checks {
            let CheckKind::Query {
                query,
                samples_query,
            } = &c.kind
            else {
                continue;
            };
            for q in std::iter::once(query).chain(samples_query.iter()) {
                self.query(&self.render(q, nodes))
                    .await
                    .map_err(|e| match e {
                        DriverError::Failed(m) => {
                            DriverError::Failed(format!("check `{}`: {m}", c.spec.name))
                        }
                        other => other,
                    })?;
                n += 1;
            }
        }
        Ok(format!(
            "Prometheus {} answers all {n} check queries",
            self.url
        ))
    }

    async fn observe(&self, nodes: &[Target]) -> Vec<Observation> {
        let mut out = Vec::new();
        for c in &self.checks {
            let CheckKind::Query {
                query,
                samples_query,
            } = &c.kind
            else {
                continue;
            };
            // the driver observes (every series, raw); the core decides
            let obs = async {
                let series = self.query(&self.render(query, nodes)).await?;
                let samples = match samples_query {
                    Some(sq) => self
                        .query(&self.render(sq, nodes))
                        .await?
                        .into_iter()
                        .filter(|v| v.is_finite())
                        .sum::<f64>()
                        .max(0.0) as u64,
                    None => u64::from(series.iter().any(|v| v.is_finite())),
                };
                Ok::<_, DriverError>(Observation {
                    check: c.spec.name.clone(),
                    value: None,
                    samples,
                    error: None,
                    series,
                    fault: None,
                })
            }
            .await;
            out.push(match obs {
                Ok(o) => o,
                Err(e) => Observation {
                    check: c.spec.name.clone(),
                    value: None,
                    samples: 0,
                    fault: Some(if e.is_infra() {
                        Fault::Unreachable
                    } else {
                        Fault::Failed
                    }),
                    error: Some(e.to_string()),
                    series: vec![],
                },
            });
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
            src.render(&q, &[t("api-1", "10.0.0.1:80"), t("api-2", "10.0.0.2:80")]),
            "node=api-1 address=10.0.0.1:80 host=10.0.0.1 instances=10.0.0.1:80|10.0.0.2:80 nodes=api-1|api-2 "
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
