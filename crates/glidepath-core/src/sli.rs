//! Judging one SLI observation against its check: pass, breach, or
//! inconclusive when there were too few samples. Too little data is never a
//! silent pass; only a plan that says `on_inconclusive = "pass"` makes it one.

use crate::spec::{CheckSpec, InconclusivePolicy};
use serde::{Deserialize, Serialize};

/// What a metrics source saw for one check at one probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub check: String,
    /// `None` when the source had no data (empty result, 0/0).
    pub value: Option<f64>,
    /// Sample size behind the value (e.g. requests in the window).
    pub samples: u64,
    /// The source could not be read (an infrastructure fault, not a verdict).
    pub error: Option<String>,
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
}

fn fmt_num(v: f64) -> String {
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
///     min_samples: 20, on_inconclusive: InconclusivePolicy::Wait };
/// let obs = Observation { check: "error rate".into(), value: Some(0.2), samples: 40, error: None };
/// let j = judge(&spec, &obs);
/// assert_eq!(j.verdict, Verdict::Breach);
/// assert_eq!(j.reason, "error rate = 0.2 > max 0.05 (40 samples)");
/// ```
pub fn judge(spec: &CheckSpec, obs: &Observation) -> Judgement {
    let mk = |verdict, reason: String| Judgement {
        check: spec.name.clone(),
        verdict,
        value: obs.value,
        samples: obs.samples,
        reason,
    };
    if let Some(err) = &obs.error {
        return mk(
            Verdict::Inconclusive,
            format!("{}: no data, metrics source failed: {err}", spec.name),
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
    let Some(value) = obs.value.filter(|v| v.is_finite()) else {
        return mk(
            Verdict::Inconclusive,
            format!("{}: no value ({} samples)", spec.name, obs.samples),
        );
    };
    if let Some(max) = spec.max {
        if value > max {
            return mk(
                Verdict::Breach,
                format!(
                    "{} = {} > max {} ({} samples)",
                    spec.name,
                    fmt_num(value),
                    fmt_num(max),
                    obs.samples
                ),
            );
        }
    }
    if let Some(min) = spec.min {
        if value < min {
            return mk(
                Verdict::Breach,
                format!(
                    "{} = {} < min {} ({} samples)",
                    spec.name,
                    fmt_num(value),
                    fmt_num(min),
                    obs.samples
                ),
            );
        }
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
