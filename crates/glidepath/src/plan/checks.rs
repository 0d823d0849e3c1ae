//! `[[sli.check]]`: the SLI checks, each with a name, thresholds, a
//! sample minimum and an inconclusive policy; `error_ratio` and
//! `latency_quantile` for the scrape source, PromQL `query` checks for
//! the prometheus source.

use super::reader::{did_you_mean, Reader};
use super::{CheckCfg, CheckKind};
use crate::template::QUERY_PLACEHOLDERS;
use glidepath_core::{CheckSpec, InconclusivePolicy};
use toml_span::value::Table;
use toml_span::Span;

/// The keys of a check of the scrape source.
const SCRAPE_KEYS: &[&str] = &[
    "name",
    "kind",
    "metric",
    "label",
    "error_prefix",
    "quantile",
    "max",
    "min",
    "min_samples",
    "on_inconclusive",
];
/// The keys of a PromQL check.
const QUERY_KEYS: &[&str] = &[
    "name",
    "kind",
    "query",
    "samples_query",
    "max",
    "min",
    "min_samples",
    "on_inconclusive",
];

/// Every `[[sli.check]]` of `[sli]` (`t`, at `at`), names unique.
pub(super) fn read(r: &mut Reader, t: &Table<'_>, at: Span, prom: bool) -> Vec<CheckCfg> {
    let mut checks = Vec::new();
    match t.get("check") {
        None => r.missing(
            at,
            "[sli]",
            "[[sli.check]]",
            "a check table: [[sli.check]] name = \"error rate\" …",
        ),
        Some(v) => match v.as_array() {
            None => r.type_err(
                v,
                "check",
                "an array of tables ([[sli.check]])",
                "[[sli.check]]",
            ),
            Some(arr) => {
                for item in arr {
                    let Some(ct) = item.as_table() else {
                        r.type_err(item, "check", "a table", "[[sli.check]]");
                        continue;
                    };
                    if let Some(c) = read_one(r, ct, item.span, prom) {
                        if checks.iter().any(|x: &CheckCfg| x.spec.name == c.spec.name) {
                            r.err(
                                item.span,
                                format!("duplicate check name `{}`", c.spec.name),
                                "duplicate",
                                Some("give every check its own name".into()),
                            );
                        }
                        checks.push(c);
                    }
                }
            }
        },
    }
    checks
}

/// One check of the scrape source (with `prom`, a PromQL one).
fn read_one(r: &mut Reader, t: &Table<'_>, at: Span, prom: bool) -> Option<CheckCfg> {
    if prom {
        return read_query(r, t, at);
    }
    if let Some(v) = t.get("query") {
        r.err(v.span, "`query` needs the prometheus source", "PromQL query", Some("set [sli] source = \"prometheus\" and url = …, or use kind = \"error_ratio\"/\"latency_quantile\" with the scrape source".into()));
        return None;
    }
    r.known_keys(t, "[[sli.check]]", SCRAPE_KEYS);
    let common = read_common(r, t, at);
    let thresholds = [common.max, common.min];
    let kind = r.req_str(t, at, "[[sli.check]]", "kind", "\"error_ratio\"");
    let metric = r.req_str(t, at, "[[sli.check]]", "metric", "\"http_requests_total\"");
    let (kind_s, kind_span) = kind?;
    let metric = metric.clone();
    let ck = match kind_s.as_str() {
        "error_ratio" => {
            for (v, s) in thresholds.into_iter().flatten() {
                if !(0.0..=1.0).contains(&v) {
                    r.err(
                        s,
                        format!("threshold {v} is out of range for an error ratio"),
                        "must be between 0 and 1",
                        Some("an error ratio is a fraction: 0.01 means 1%".into()),
                    );
                }
            }
            let label = r.str(t, "label", "\"code\"").map_or("code".into(), |x| x.0);
            let prefix = r
                .str(t, "error_prefix", "\"5\"")
                .map_or("5".into(), |x| x.0);
            CheckKind::ErrorRatio {
                metric: metric.clone()?.0,
                label,
                prefix,
            }
        }
        "latency_quantile" => {
            for (v, s) in thresholds.into_iter().flatten() {
                if v <= 0.0 {
                    r.err(
                        s,
                        format!("threshold {v} is out of range for a latency"),
                        "must be above 0 (seconds)",
                        Some("latency thresholds are in seconds: 0.5 means 500 ms".into()),
                    );
                }
            }
            let q = match r.num(t, "quantile") {
                None => 0.95,
                Some((q, s)) => {
                    if !(q > 0.0 && q < 1.0) {
                        r.err(
                            s,
                            format!("quantile {q} is out of range"),
                            "must be between 0 and 1 (exclusive)",
                            Some("p95 is quantile = 0.95".into()),
                        );
                    }
                    q
                }
            };
            CheckKind::LatencyQuantile {
                metric: metric.clone()?.0,
                quantile: q,
            }
        }
        other => {
            r.err(
                kind_span,
                format!("unknown check kind `{other}`"),
                "unknown kind",
                Some(
                    did_you_mean(other, ["error_ratio", "latency_quantile"])
                        .unwrap_or_else(|| "kinds: \"error_ratio\", \"latency_quantile\"".into()),
                ),
            );
            return None;
        }
    };
    let min_samples = common.min_samples;
    Some(CheckCfg {
        spec: common.spec(min_samples)?,
        kind: ck,
    })
}

/// What every check has: a name, thresholds, a sample minimum and an
/// inconclusive policy.
struct Common {
    name: Option<String>,
    max: Option<(f64, Span)>,
    min: Option<(f64, Span)>,
    min_samples: u64,
    /// `min_samples` is written in the check (not the default).
    explicit_min_samples: bool,
    policy: InconclusivePolicy,
}

impl Common {
    fn spec(self, min_samples: u64) -> Option<CheckSpec> {
        Some(CheckSpec {
            name: self.name?,
            max: self.max.map(|x| x.0),
            min: self.min.map(|x| x.0),
            min_samples,
            on_inconclusive: self.policy,
        })
    }
}

fn read_common(r: &mut Reader, t: &Table<'_>, at: Span) -> Common {
    let name = r
        .req_str(t, at, "[[sli.check]]", "name", "\"error rate\"")
        .map(|x| x.0);
    let max = r.num(t, "max");
    let min = r.num(t, "min");
    let explicit = t.contains_key("min_samples");
    let min_samples = r
        .int(t, "min_samples", 0, "50")
        .map(|x| x.0 as u64)
        .unwrap_or(1);
    let policy = match r.str(t, "on_inconclusive", "\"wait\"") {
        None => InconclusivePolicy::Wait,
        Some((p, s)) => {
            match p.as_str() {
                "wait" => InconclusivePolicy::Wait,
                "fail" => InconclusivePolicy::Fail,
                "pass" => InconclusivePolicy::Pass,
                _ => {
                    r.err(s, format!("unknown `on_inconclusive` \"{p}\""), "expected wait, fail or pass", Some("\"wait\" keeps probing and fails if the window ends without enough data".into()));
                    InconclusivePolicy::Wait
                }
            }
        }
    };
    if max.is_none() && min.is_none() {
        r.err(
            at,
            format!(
                "check `{}` has no threshold",
                name.as_deref().unwrap_or("?")
            ),
            "no max or min",
            Some("add max = … (breach above) or min = … (breach below)".into()),
        );
    }
    Common {
        name,
        max,
        min,
        min_samples,
        explicit_min_samples: explicit,
        policy,
    }
}

/// A PromQL check: `query` gives the value, `samples_query` the sample size.
fn read_query(r: &mut Reader, t: &Table<'_>, at: Span) -> Option<CheckCfg> {
    r.known_keys(t, "[[sli.check]] (source = \"prometheus\")", QUERY_KEYS);
    if let Some((k, s)) = r.str(t, "kind", "\"query\"") {
        if k != "query" {
            r.err(s, format!("check kind `{k}` is for the scrape source"), "not a PromQL check", Some("with source = \"prometheus\" a check is a `query` (and a `samples_query`); drop `kind`".into()));
        }
    }
    let common = read_common(r, t, at);
    let query = r.req_template(t, at, "[[sli.check]]", "query", "'histogram_quantile(0.95, sum(rate(http_request_duration_seconds_bucket{instance=~\"{instances}\"}[1m])) by (le))'", QUERY_PLACEHOLDERS);
    let samples_query = r.template_str(
        t,
        "samples_query",
        "'sum(increase(http_requests_total{instance=~\"{instances}\"}[1m]))'",
        QUERY_PLACEHOLDERS,
    );
    if samples_query.is_none() && (common.min_samples > 0 && common.explicit_min_samples) {
        r.err(at, format!("check `{}` has min_samples but no samples_query", common.name.as_deref().unwrap_or("?")), "no way to count samples", Some("add samples_query = 'sum(increase(http_requests_total{instance=~\"{instances}\"}[1m]))'".into()));
    }
    let min_samples = if samples_query.is_none() {
        0
    } else {
        common.min_samples
    };
    Some(CheckCfg {
        spec: common.spec(min_samples)?,
        kind: CheckKind::Query {
            query: query?.0,
            samples_query: samples_query.map(|x| x.0),
        },
    })
}
