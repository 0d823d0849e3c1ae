//! `[[sli.check]]`: the SLI checks, each with a name, thresholds, a
//! sample minimum and an inconclusive policy; `error_ratio` and
//! `latency_quantile` for the scrape source, PromQL `query` checks for
//! the prometheus source.

use super::reader::{did_you_mean, Reader};
use super::{CheckCfg, CheckKind};
use crate::config::ProbeCheck;
use crate::template::QUERY_PLACEHOLDERS;
use glidepath_core::{CheckSpec, CompareSpec, InconclusivePolicy};
use toml_span::value::Table;
use toml_span::value::ValueInner;
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
    "compare",
    "tolerance",
    "mode",
];
/// The keys of a PromQL check.
const QUERY_KEYS: &[&str] = &[
    "name",
    "kind",
    "query",
    "samples_query",
    "events_query",
    "max",
    "min",
    "min_samples",
    "on_inconclusive",
    "compare",
    "tolerance",
    "mode",
];

/// The keys of a probe check.
const PROBE_KEYS: &[&str] = &[
    "name",
    "kind",
    "probe",
    "max",
    "min_samples",
    "on_inconclusive",
];

/// Every `[[sli.check]]` of `[sli]` (`t`, at `at`), names unique: the
/// metric checks, and the probe checks (`probe = {…}`).
pub(super) fn read(
    r: &mut Reader,
    t: &Table<'_>,
    at: Span,
    prom: bool,
    dir: &std::path::Path,
) -> (Vec<CheckCfg>, Vec<ProbeCheck>) {
    let mut checks = Vec::new();
    let mut probes: Vec<ProbeCheck> = Vec::new();
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
                    if ct.contains_key("probe")
                        || ct.get("kind").and_then(|k| k.as_str()) == Some("probe")
                    {
                        if let Some(c) = read_probe_check(r, ct, item.span, dir) {
                            if checks.iter().any(|x: &CheckCfg| x.spec.name == c.spec.name)
                                || probes.iter().any(|x| x.spec.name == c.spec.name)
                            {
                                r.err(
                                    item.span,
                                    format!("duplicate check name `{}`", c.spec.name),
                                    "duplicate",
                                    Some("give every check its own name".into()),
                                );
                            }
                            probes.push(c);
                        }
                        continue;
                    }
                    if let Some(c) = read_one(r, ct, item.span, prom) {
                        if checks.iter().any(|x: &CheckCfg| x.spec.name == c.spec.name)
                            || probes.iter().any(|x| x.spec.name == c.spec.name)
                        {
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
    (checks, probes)
}

/// A probe check: `probe = {…}` on each watched node (its placeholders
/// those of a node), `max` the share of them that may fail (default 0:
/// any failure breaches), judged at every probe of the window.
fn read_probe_check(
    r: &mut Reader,
    t: &Table<'_>,
    at: Span,
    dir: &std::path::Path,
) -> Option<ProbeCheck> {
    r.known_keys(t, "[[sli.check]] with a probe", PROBE_KEYS);
    if let Some((k, s)) = r.str(t, "kind", "\"probe\"") {
        if k != "probe" {
            r.err(
                s,
                format!("a check with `probe` is of kind \"probe\", not \"{k}\""),
                "wrong kind",
                Some("drop `kind`, or write kind = \"probe\"".into()),
            );
        }
    }
    let Some(v) = t.get("probe") else {
        r.missing(
            at,
            "[[sli.check]]",
            "probe",
            "{ http = \"http://{address}/healthz\" }",
        );
        return None;
    };
    let probe = super::probe::read(r, v, "[[sli.check]] probe", super::probe::Scope::Node, dir);
    let common = read_common(r, t, at);
    if let Some((m, s)) = common.max {
        if !(0.0..=1.0).contains(&m) {
            r.err(
                s,
                format!("`max` {m} is out of range for a probe check"),
                "a share of the nodes, 0 to 1",
                Some("max = 0 (the default): any node whose probe fails breaches; 0.5: half of them may".into()),
            );
        }
    }
    let max = common.max.map_or(0.0, |m| m.0);
    let min_samples = common.min_samples;
    let mut spec = common.spec(min_samples)?;
    spec.max = Some(max);
    spec.min = None;
    Some(ProbeCheck {
        spec,
        probe: probe?,
    })
}

/// One check: a PromQL `query` (the prometheus source), or an
/// `error_ratio`/`latency_quantile` of a metric (either source).
fn read_one(r: &mut Reader, t: &Table<'_>, at: Span, prom: bool) -> Option<CheckCfg> {
    let query_kind = t
        .get("kind")
        .and_then(|v| v.as_str())
        .is_some_and(|k| k == "query");
    if prom && (t.contains_key("query") || query_kind || !t.contains_key("kind")) {
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
    // metric and label names, and the error prefix, go into PromQL and
    // match scraped text: their grammar is Prometheus's
    for key in ["metric", "label"] {
        if let Some((v, s)) = t
            .get(key)
            .and_then(|v| v.as_str().map(|x| (x.to_string(), v.span)))
        {
            if !prom_name(&v) {
                r.err(
                    s,
                    format!("`{key}` {v:?} is not a Prometheus name"),
                    "letters, digits, _ and :",
                    Some("e.g. metric = \"http_requests_total\", label = \"code\"".into()),
                );
            }
        }
    }
    if let Some((v, s)) = t
        .get("error_prefix")
        .and_then(|v| v.as_str().map(|x| (x.to_string(), v.span)))
    {
        if !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            r.err(
                s,
                format!("`error_prefix` {v:?} may hold only letters, digits and _"),
                "not a plain prefix",
                Some("error_prefix = \"5\" counts the codes starting with 5".into()),
            );
        }
    }
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
    let mut spec = common.spec(min_samples)?;
    if let (Some(c), CheckKind::LatencyQuantile { quantile, .. }) = (spec.compare.as_mut(), &ck) {
        c.quantile = Some(*quantile);
    }
    Some(CheckCfg { spec, kind: ck })
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
    /// `compare = "baseline"`, with its `tolerance`.
    compare: Option<(f64, Span)>,
    shadow: bool,
}

impl Common {
    fn spec(self, min_samples: u64) -> Option<CheckSpec> {
        Some(CheckSpec {
            name: self.name?,
            max: self.max.map(|x| x.0),
            min: self.min.map(|x| x.0),
            min_samples,
            on_inconclusive: self.policy,
            // alpha and the expected share are the rollout's: see
            // `Plan::rollout_spec`
            compare: self.compare.map(|(tolerance, _)| CompareSpec {
                tolerance,
                alpha: 0.0,
                expected_share: 0.0,
                quantile: None,
            }),
            shadow: self.shadow,
        })
    }
}

/// `compare`, `tolerance` (a fraction, or a percentage string) and `mode`.
fn read_compare(r: &mut Reader, t: &Table<'_>) -> (Option<(f64, Span)>, bool) {
    let compare = match r.str(t, "compare", "\"baseline\"") {
        None => None,
        Some((c, s)) if c == "baseline" => Some(s),
        Some((c, s)) => {
            r.err(s, format!("unknown `compare` \"{c}\""), "expected \"baseline\"", Some("compare = \"baseline\" judges the canary against the nodes still on the old release".into()));
            None
        }
    };
    let tolerance = match t.get("tolerance") {
        None => None,
        Some(v) => {
            let parsed = match v.as_ref() {
                ValueInner::Float(f) => Some(*f),
                ValueInner::Integer(i) => Some(*i as f64),
                ValueInner::String(s) => s
                    .trim()
                    .strip_suffix('%')
                    .and_then(|p| p.trim().parse::<f64>().ok())
                    .map(|p| p / 100.0),
                _ => None,
            };
            match parsed {
                Some(x) if (0.0..=10.0).contains(&x) => Some((x, v.span)),
                _ => {
                    r.err(v.span, "`tolerance` must be a fraction or a percentage from 0 to 1000 %", "not a tolerance", Some("tolerance = \"10%\" (or 0.1): a canary at most 10 % worse than its baseline passes".into()));
                    None
                }
            }
        }
    };
    if let (Some((_, s)), None) = (tolerance, compare) {
        r.err(
            s,
            "`tolerance` without `compare = \"baseline\"`",
            "nothing to compare",
            Some("add compare = \"baseline\", or drop tolerance".into()),
        );
    }
    let shadow = match r.str(t, "mode", "\"enforce\"") {
        None => false,
        Some((m, s)) => match m.as_str() {
            "enforce" => false,
            "shadow" => true,
            _ => {
                r.err(
                    s,
                    format!("unknown `mode` \"{m}\""),
                    "expected enforce or shadow",
                    Some("\"shadow\" computes and reports the check without acting on it".into()),
                );
                false
            }
        },
    };
    (compare.map(|s| (tolerance.map_or(0.1, |t| t.0), s)), shadow)
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
    let (compare, shadow) = read_compare(r, t);
    // a probe check's max defaults to 0 (any failure breaches)
    let probe = t.contains_key("probe");
    if max.is_none() && min.is_none() && compare.is_none() && !probe {
        r.err(
            at,
            format!(
                "check `{}` has no threshold",
                name.as_deref().unwrap_or("?")
            ),
            "no max or min",
            Some(
                "add max = … (breach above) or min = … (breach below), or compare = \"baseline\""
                    .into(),
            ),
        );
    }
    Common {
        name,
        max,
        min,
        min_samples,
        explicit_min_samples: explicit,
        policy,
        compare,
        shadow,
    }
}

/// A PromQL check: `query` gives the value, `samples_query` the sample size.
fn read_query(r: &mut Reader, t: &Table<'_>, at: Span) -> Option<CheckCfg> {
    r.known_keys(t, "[[sli.check]] (source = \"prometheus\")", QUERY_KEYS);
    if let Some((k, s)) = r.str(t, "kind", "\"query\"") {
        if k != "query" {
            r.err(s, format!("check kind `{k}` does not go with `query`"), "a PromQL check", Some("a check is a `query` (with `samples_query`), or a kind = \"error_ratio\"/\"latency_quantile\" of a `metric`; not both".into()));
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
    let events_query = r.template_str(
        t,
        "events_query",
        "'sum(http_requests_total{instance=~\"{instances}\",code=~\"5..\"})'",
        QUERY_PLACEHOLDERS,
    );
    if let Some((_, s)) = common.compare {
        if events_query.is_none() || samples_query.is_none() {
            r.err(s, format!("check `{}` compares with the baseline but has no `events_query` and `samples_query` to count with", common.name.as_deref().unwrap_or("?")), "nothing to count", Some("add the counter totals events_query = 'sum(http_requests_total{instance=~\"{instances}\",code=~\"5..\"})' and samples_query = 'sum(http_requests_total{instance=~\"{instances}\"})', or use kind = \"error_ratio\"/\"latency_quantile\" with a metric".into()));
        }
        // counter totals: glidepath differences them between probes
        for (key, q) in [
            ("events_query", &events_query),
            ("samples_query", &samples_query),
        ] {
            if let Some((text, span)) = q {
                let ranged = ["rate(", "increase(", "irate(", "delta(", "["]
                    .iter()
                    .any(|f| text.contains(f));
                if ranged {
                    r.err(*span, format!("`{key}` of a compared check must be a counter total, without a range or rate"), "a range or rate", Some(format!("{key} = 'sum(http_requests_total{{instance=~\"{{instances}}\"}})': glidepath takes the differences between probes itself (a range such as [1m] would count events twice, and increase() extrapolates)")));
                }
            }
        }
    } else if let Some((_, s)) = &events_query {
        r.err(
            *s,
            "`events_query` without `compare = \"baseline\"`",
            "nothing to compare",
            Some("add compare = \"baseline\", or drop events_query".into()),
        );
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
            events_query: events_query.map(|x| x.0),
        },
    })
}

/// A Prometheus metric or label name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn prom_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}
