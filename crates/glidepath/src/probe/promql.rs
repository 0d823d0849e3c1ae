//! `promql = QUERY, prometheus = URL`: one instant query through the
//! Prometheus source's client (`drivers::metrics_prometheus`: its answer
//! bounded at `PROMETHEUS_MAX`, retried on connection faults within the
//! deadline), one value, compared with `min` and `max`. No series is 0
//! unless `on_empty = "fail"` (the rate of an event that did not happen
//! has no series); several series fail (aggregate them: `sum(…)`).

use super::{show, OnEmpty, ProbeOutcome, PromQlProbe};
use crate::drivers::{DriverError, PrometheusSource};
use std::time::Duration;

pub(super) async fn run(p: &PromQlProbe, limit: Duration) -> ProbeOutcome {
    let what = format!("PromQL `{}`", p.query);
    let source = PrometheusSource::new(&p.prometheus, None, limit, Vec::new());
    let values = match tokio::time::timeout(limit, source.query(&p.query)).await {
        Err(_) => {
            return ProbeOutcome::infra(format!(
                "{what}: Prometheus {} did not answer within {}",
                p.prometheus,
                show(limit)
            ))
        }
        Ok(Err(DriverError::Unreachable(e))) => return ProbeOutcome::infra(e),
        Ok(Err(DriverError::Failed(e))) => return ProbeOutcome::fail(e, None),
        Ok(Ok(v)) => v,
    };
    judge(p, &what, &values)
}

/// The verdict on an instant query's values.
fn judge(p: &PromQlProbe, what: &str, values: &[f64]) -> ProbeOutcome {
    let (value, note) = match values {
        [] if p.on_empty == OnEmpty::Fail => {
            return ProbeOutcome::fail(format!("{what}: no series (on_empty = \"fail\")"), None)
        }
        [] => (0.0, " (no series, taken as 0)"),
        [v] => (*v, ""),
        many => {
            return ProbeOutcome::fail(
                format!(
                    "{what}: {} series, a probe checks one value: aggregate them (sum(…), max(…))",
                    many.len()
                ),
                None,
            )
        }
    };
    if !value.is_finite() {
        return ProbeOutcome::fail(
            format!("{what}: value {value}, no number to check"),
            Some(value.to_string()),
        );
    }
    let shown = Some(value.to_string());
    if let Some(max) = p.max.filter(|m| value > *m) {
        return ProbeOutcome::fail(format!("{what} = {value}{note}, above max {max}"), shown);
    }
    if let Some(min) = p.min.filter(|m| value < *m) {
        return ProbeOutcome::fail(format!("{what} = {value}{note}, below min {min}"), shown);
    }
    let bounds: Vec<String> = [
        p.min.map(|m| format!("min {m}")),
        p.max.map(|m| format!("max {m}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    ProbeOutcome::pass(
        format!("{what} = {value}{note}, within {}", bounds.join(", ")),
        shown,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::metrics_prometheus::parse_result;

    fn probe(min: Option<f64>, max: Option<f64>, on_empty: OnEmpty) -> PromQlProbe {
        PromQlProbe {
            query: "q".into(),
            prometheus: "http://127.0.0.1:9".into(),
            min,
            max,
            on_empty,
            within: None,
        }
    }

    fn vector(values: &[&str]) -> Vec<f64> {
        let result: Vec<_> = values
            .iter()
            .map(|v| serde_json::json!({"metric": {}, "value": [1.0, v]}))
            .collect();
        parse_result(&serde_json::json!({
            "status": "success",
            "data": {"resultType": "vector", "result": result}
        }))
        .unwrap()
    }

    #[test]
    fn one_value_against_min_and_max() {
        let p = probe(None, Some(0.1), OnEmpty::Zero);
        let o = judge(&p, "q", &vector(&["0.05"]));
        assert!(o.passed, "{o:?}");
        assert_eq!(o.detail, "q = 0.05, within max 0.1");
        assert_eq!(o.value.as_deref(), Some("0.05"));
        let o = judge(&p, "q", &vector(&["0.25"]));
        assert!(!o.passed && !o.infra);
        assert_eq!(o.detail, "q = 0.25, above max 0.1");
        let p = probe(Some(1.0), None, OnEmpty::Zero);
        let o = judge(&p, "q", &vector(&["0.5"]));
        assert_eq!(o.detail, "q = 0.5, below min 1");
        let o = judge(&p, "q", &vector(&["NaN"]));
        assert!(!o.passed && o.detail.contains("NaN"), "{o:?}");
    }

    #[test]
    fn no_series_is_zero_unless_the_plan_says_fail() {
        let o = judge(&probe(None, Some(0.1), OnEmpty::Zero), "q", &vector(&[]));
        assert!(o.passed, "{o:?}");
        assert_eq!(o.detail, "q = 0 (no series, taken as 0), within max 0.1");
        // …and 0 is still checked against a min.
        let o = judge(&probe(Some(1.0), None, OnEmpty::Zero), "q", &vector(&[]));
        assert!(!o.passed, "{o:?}");
        let o = judge(&probe(None, Some(0.1), OnEmpty::Fail), "q", &vector(&[]));
        assert!(!o.passed, "{o:?}");
        assert_eq!(o.detail, "q: no series (on_empty = \"fail\")");
    }

    #[test]
    fn several_series_are_refused() {
        let o = judge(
            &probe(None, Some(0.1), OnEmpty::Zero),
            "q",
            &vector(&["0", "0"]),
        );
        assert!(!o.passed);
        assert!(o.detail.contains("2 series"), "{}", o.detail);
    }
}
