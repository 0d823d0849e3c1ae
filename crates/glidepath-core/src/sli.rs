//! Judging one SLI observation against its check: pass, breach, or
//! inconclusive when there were too few samples. Too little data is never a
//! silent pass; only a plan that says `on_inconclusive = "pass"` makes it one.

use crate::spec::{CheckSpec, InconclusivePolicy};
use serde::{Deserialize, Serialize};

/// What a metrics source saw for one check at one probe. Drivers observe,
/// the core decides: a source answering several series gives them all in
/// `series`, and [`judge`] picks the one that decides (the worst against the
/// limit); a source that computed one value (the scrape source merges the
/// canaries' histograms) gives `value`. The top-level fields are the canary
/// group's; `baseline` is the same check read for the baseline group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Observation {
    pub check: String,
    /// `None` when the source had no data (empty result, 0/0) or gave
    /// `series` instead.
    pub value: Option<f64>,
    /// Sample size behind the value (e.g. requests in the window).
    pub samples: u64,
    /// The source could not be read, or refused the query: see `fault`.
    pub error: Option<String>,
    /// Every series the source answered, raw. JSON has no NaN or infinity:
    /// those are journaled as `null` and read back as NaN (never deciding).
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "nullable_f64s")]
    pub series: Vec<f64>,
    /// Which kind of failure `error` is. `None` with an error (journals
    /// written before this field) reads as unreachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
    /// The canary group's counts since the window started (compare checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<Counts>,
    /// The same check read for the baseline group, over the same span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Group>,
    /// What was seen, for a person (a probe check: the first failure's
    /// reason); appended to a breach's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One group's reading of a check (the baseline's, beside the canary's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Group {
    pub value: Option<f64>,
    pub samples: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "nullable_f64s")]
    pub series: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<Counts>,
}

/// A group's event counts since the window started: what the sequential
/// judge tests. Cumulative, so a lost probe loses nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Counts {
    /// Requests served.
    pub requests: f64,
    /// Bad requests (an error-ratio check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad: Option<f64>,
    /// A latency histogram: `(le, requests at most le)` for each finite
    /// bucket bound, ascending (the `+Inf` bucket is `requests`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<(f64, f64)>,
}

impl Group {
    /// The value that decides a limit: as [`Observation::deciding_value`].
    pub fn deciding_value(&self, spec: &CheckSpec) -> Option<f64> {
        deciding(self.value, &self.series, spec)
    }
}

mod nullable_f64s {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(|x| x.is_finite().then_some(*x))
            .collect::<Vec<Option<f64>>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<Option<f64>>::deserialize(d)?
            .into_iter()
            .map(|x| x.unwrap_or(f64::NAN))
            .collect())
    }
}

/// Why a metrics source gave no observation: kept apart to the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The source did not answer: an infrastructure fault, the window pauses.
    Unreachable,
    /// The source answered and refused (a rejected query): not an outage; the
    /// check is inconclusive, with the source's reason.
    Failed,
}

impl Observation {
    /// An infrastructure fault (the window pauses), as opposed to a refusal.
    pub fn is_outage(&self) -> bool {
        self.error.is_some() && self.fault != Some(Fault::Failed)
    }

    /// The value that decides the check: `value`, else the worst finite
    /// series against the check's limit (the highest under a `max`, the
    /// lowest under a `min`).
    pub fn deciding_value(&self, spec: &CheckSpec) -> Option<f64> {
        deciding(self.value, &self.series, spec)
    }
}

fn deciding(value: Option<f64>, series: &[f64], spec: &CheckSpec) -> Option<f64> {
    if value.is_some() {
        return value;
    }
    let finite = series.iter().copied().filter(|v| v.is_finite());
    if spec.max.is_some() || spec.min.is_none() {
        finite.reduce(f64::max)
    } else {
        finite.reduce(f64::min)
    }
}

/// How close to a limit counts as at it, for the baseline in the incident
/// rule: within 10 % of the limit. A fleet hovering at its limit makes the
/// canary's noisier reading cross it alone half the time.
pub const AT_LIMIT: f64 = 0.1;

/// The limit `value` is past or at (within [`AT_LIMIT`] of it), if any.
pub(crate) fn at_limit(spec: &CheckSpec, value: f64) -> Option<(&'static str, f64)> {
    beyond(spec, value, AT_LIMIT)
}

/// The limit `value` is past, if any: `(">", max)` or `("<", min)`.
pub(crate) fn past_limit(spec: &CheckSpec, value: f64) -> Option<(&'static str, f64)> {
    beyond(spec, value, 0.0)
}

/// The limit `value` is past, or within `margin` (a fraction of the limit)
/// inside it: the max is checked first.
fn beyond(spec: &CheckSpec, value: f64, margin: f64) -> Option<(&'static str, f64)> {
    match (spec.max, spec.min) {
        (Some(max), _) if value > max - margin * max.abs() => Some((">", max)),
        (_, Some(min)) if value < min + margin * min.abs() => Some(("<", min)),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Breach,
    Inconclusive,
}

/// A verdict with its human-readable reason and the figures behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    pub check: String,
    pub verdict: Verdict,
    pub value: Option<f64>,
    pub samples: u64,
    pub reason: String,
    /// The baseline group's value, when the source read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_value: Option<f64>,
    /// The sequential comparison with the baseline (compare checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<crate::compare::Comparison>,
    /// Canary and baseline are both past the limit: a fleet-wide incident.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub incident: bool,
    /// A shadow check: reported, never acted on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
}

pub(crate) fn fmt_num(v: f64) -> String {
    if v != 0.0 && v.abs() < 0.001 {
        format!("{v:.2e}")
    } else {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    }
}

/// Judge one observation.
///
/// ```
/// use glidepath_core::{judge, CheckSpec, InconclusivePolicy, Observation, Verdict};
/// let spec = CheckSpec { name: "error rate".into(), max: Some(0.05), min: None,
///     min_samples: 20, on_inconclusive: InconclusivePolicy::Wait, compare: None, shadow: false };
/// let obs = Observation { check: "error rate".into(), value: Some(0.2), samples: 40,
///     ..Observation::default() };
/// let j = judge(&spec, &obs);
/// assert_eq!(j.verdict, Verdict::Breach);
/// assert_eq!(j.reason, "error rate = 0.2 > max 0.05 (40 samples)");
/// ```
pub fn judge(spec: &CheckSpec, obs: &Observation) -> Judgement {
    let decided = obs.deciding_value(spec);
    let mk = |verdict, reason: String| Judgement {
        check: spec.name.clone(),
        verdict,
        value: decided,
        samples: obs.samples,
        reason,
        baseline_value: None,
        comparison: None,
        incident: false,
        shadow: spec.shadow,
    };
    if let Some(err) = &obs.error {
        let what = if obs.is_outage() {
            "metrics source failed"
        } else {
            "the metrics source refused the query"
        };
        return mk(
            Verdict::Inconclusive,
            format!("{}: no data, {what}: {err}", spec.name),
        );
    }
    if obs.samples < spec.min_samples {
        return mk(
            Verdict::Inconclusive,
            format!(
                "{}: {} samples, need at least {} before any verdict",
                spec.name, obs.samples, spec.min_samples
            ),
        );
    }
    let Some(value) = decided.filter(|v| v.is_finite()) else {
        return mk(
            Verdict::Inconclusive,
            format!("{}: no value ({} samples)", spec.name, obs.samples),
        );
    };
    if let Some((op, limit)) = past_limit(spec, value) {
        let which = if op == ">" { "max" } else { "min" };
        let note = obs
            .note
            .as_ref()
            .map(|n| format!(": {n}"))
            .unwrap_or_default();
        return mk(
            Verdict::Breach,
            format!(
                "{} = {} {op} {which} {} ({} samples){note}",
                spec.name,
                fmt_num(value),
                fmt_num(limit),
                obs.samples
            ),
        );
    }
    let bound = match (spec.min, spec.max) {
        (_, Some(max)) => format!("≤ max {}", fmt_num(max)),
        (Some(min), None) => format!("≥ min {}", fmt_num(min)),
        (None, None) => "no threshold".to_string(),
    };
    mk(
        Verdict::Pass,
        format!(
            "{} = {} {} ({} samples)",
            spec.name,
            fmt_num(value),
            bound,
            obs.samples
        ),
    )
}

/// Does this judgement stop the window right away?
pub fn fails_now(spec: &CheckSpec, j: &Judgement) -> bool {
    if spec.shadow || j.incident {
        return false;
    }
    match j.verdict {
        Verdict::Breach => true,
        Verdict::Inconclusive => spec.on_inconclusive == InconclusivePolicy::Fail,
        Verdict::Pass => false,
    }
}

/// The verdict of a whole window from the latest judgement of each check.
/// Returns `(passed, reason)`.
pub fn close_window(checks: &[CheckSpec], latest: &[Judgement], length_ms: u64) -> (bool, String) {
    let mut parts = Vec::new();
    let mut passed = true;
    for spec in checks {
        if spec.shadow {
            if let Some(j) = latest.iter().find(|j| j.check == spec.name) {
                parts.push(format!("{} (shadow check, not acted on)", j.reason));
            }
            continue;
        }
        match latest.iter().find(|j| j.check == spec.name) {
            None => match spec.on_inconclusive {
                InconclusivePolicy::Pass => {
                    parts.push(format!("{}: never measured, passed by policy", spec.name))
                }
                _ => {
                    passed = false;
                    parts.push(format!(
                        "{}: never measured during the window (inconclusive fails by policy)",
                        spec.name
                    ));
                }
            },
            Some(j) => match (j.verdict, spec.on_inconclusive) {
                (Verdict::Pass, _) => parts.push(j.reason.clone()),
                (Verdict::Inconclusive, InconclusivePolicy::Pass) => {
                    parts.push(format!("{} (inconclusive, passed by policy)", j.reason))
                }
                (Verdict::Inconclusive, _) => {
                    passed = false;
                    parts.push(format!(
                        "inconclusive at the end of the window: {} (on_inconclusive = \"wait\" fails)",
                        j.reason
                    ));
                }
                (Verdict::Breach, _) => {
                    passed = false;
                    parts.push(j.reason.clone());
                }
            },
        }
    }
    let secs = length_ms as f64 / 1000.0;
    let head = if passed {
        format!("SLI window of {secs}s passed")
    } else {
        format!("SLI window of {secs}s failed")
    };
    (passed, format!("{head}: {}", parts.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(max: Option<f64>, min: Option<f64>) -> CheckSpec {
        CheckSpec {
            name: "q".into(),
            max,
            min,
            min_samples: 1,
            on_inconclusive: InconclusivePolicy::Wait,
            compare: None,
            shadow: false,
        }
    }

    fn obs(series: Vec<f64>) -> Observation {
        Observation {
            check: "q".into(),
            value: None,
            samples: 10,
            error: None,
            series,
            ..Observation::default()
        }
    }

    /// The worst series decides: the highest under a max, the lowest under
    /// a min; non-finite series never decide.
    #[test]
    fn the_core_picks_the_deciding_series() {
        let o = obs(vec![0.01, f64::NAN, 0.2, 0.03]);
        let j = judge(&spec(Some(0.1), None), &o);
        assert_eq!((j.verdict, j.value), (Verdict::Breach, Some(0.2)));
        let j = judge(&spec(None, Some(0.02)), &o);
        assert_eq!((j.verdict, j.value), (Verdict::Breach, Some(0.01)));
        let j = judge(&spec(Some(0.5), None), &obs(vec![f64::INFINITY]));
        assert_eq!(j.verdict, Verdict::Inconclusive);
    }

    /// NaN and infinite series survive the journal (as null, read back as NaN).
    #[test]
    fn non_finite_series_round_trip_through_json() {
        let o = obs(vec![0.5, f64::NAN, f64::INFINITY]);
        let back: Observation = serde_json::from_str(&serde_json::to_string(&o).unwrap()).unwrap();
        assert_eq!(back.series[0], 0.5);
        assert!(back.series[1].is_nan() && back.series[2].is_nan());
        let j = judge(&spec(Some(1.0), None), &back);
        assert_eq!((j.verdict, j.value), (Verdict::Pass, Some(0.5)));
    }

    /// A refused query is not an outage, and says so; an unreachable source
    /// (or an error journaled before faults were recorded) is.
    #[test]
    fn faults_are_kept_apart() {
        let mut o = obs(vec![]);
        o.error = Some("bad_data: parse error".into());
        o.fault = Some(Fault::Failed);
        assert!(!o.is_outage());
        let j = judge(&spec(Some(1.0), None), &o);
        assert!(j.reason.contains("refused the query"), "{}", j.reason);
        o.fault = Some(Fault::Unreachable);
        assert!(o.is_outage());
        o.fault = None;
        assert!(o.is_outage(), "old journals: an error was an outage");
    }
}
