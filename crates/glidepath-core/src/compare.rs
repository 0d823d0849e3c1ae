//! Judging one probe of a check: the canary against its limits, the
//! incident rule, and for a compare check the canary against its baseline
//! with the sequential test of [`crate::seq`].
//!
//! - **Incident**: the canary and the baseline are both past the check's
//!   absolute limit: a fleet-wide incident, not a bad release. The verdict is
//!   inconclusive with `incident` set; the window pauses (or the run rolls
//!   back, as the plan says) until the fleet recovers.
//! - **Compare**: the canary's rate of bad events (errors, or requests slower
//!   than a bound taken from the baseline's histogram) against the
//!   baseline's, each span weighted by the canary's share of the traffic. A
//!   breach only when the canary is significantly worse than `1 + tolerance`
//!   times its baseline (e-value ≥ 1/alpha); a canary starved of traffic
//!   (under half its expected share, also tested sequentially) is
//!   inconclusive, never a pass. Past the limit alone, with a baseline that
//!   is not, is reported and not acted on: only a canary significantly worse
//!   than its baseline is a breach.

use crate::seq::ShareTest;
use crate::sli::{at_limit, fmt_num, judge, past_limit, Counts, Judgement, Observation, Verdict};
use crate::spec::{CheckSpec, CompareSpec};
use serde::{Deserialize, Serialize};

/// The evidence a compare check has gathered in the window so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareState {
    pub check: String,
    /// Is the canary's rate of bad events above `1 + tolerance` times the
    /// baseline's? (arm a = canary)
    test: ShareTest,
    /// Is the canary starved (under half its expected share of requests)?
    /// (arm a = baseline, against twice its expected odds)
    traffic: ShareTest,
    /// A latency check's bound between fast and slow requests: fixed from
    /// the baseline's histogram at the first probe with enough baseline
    /// requests, and only requests after that are counted.
    pub bound: Option<f64>,
    /// The counts at the last probe that fed the tests (canary, baseline).
    last: Option<(Counts, Counts)>,
}

/// The comparison behind a verdict, as the narration, `status` and JSON
/// show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Bad events (errors, or requests slower than `bound`) and requests
    /// of each group that the test has counted.
    pub canary_bad: f64,
    pub canary_requests: f64,
    pub baseline_bad: f64,
    pub baseline_requests: f64,
    /// The canary's rate of bad events over the baseline's: the estimate,
    /// and its anytime-valid `1 − alpha` confidence interval.
    pub ratio: f64,
    pub ratio_low: f64,
    pub ratio_high: f64,
    /// The evidence that the canary is more than `1 + tolerance` times
    /// worse, against the threshold `1 / alpha`.
    pub e_value: f64,
    pub threshold: f64,
    pub tolerance: f64,
    /// A latency check's bound (seconds) between fast and slow requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound: Option<f64>,
    /// The canary's share of the requests, and the share it should get.
    pub share: f64,
    pub expected_share: f64,
    /// The traffic check found the canary starved of requests.
    pub starved: bool,
}

/// The largest finite bucket bound with at least `1 − q` of the requests
/// above it (the boundary at or below the `q` quantile; the first bound if
/// none is).
fn bound_at(c: &Counts, q: f64) -> Option<f64> {
    let below = c
        .buckets
        .iter()
        .rfind(|(_, n)| *n <= q * c.requests)
        .map(|(le, _)| *le);
    below.or_else(|| c.buckets.first().map(|(le, _)| *le))
}

/// `e^x` for display and JSON: finite, however large the evidence.
fn shown_exp(x: f64) -> f64 {
    x.min(690.0).exp()
}

impl CompareState {
    pub fn new(spec: &CheckSpec, c: &CompareSpec) -> CompareState {
        CompareState {
            check: spec.name.clone(),
            test: ShareTest::new(1.0 + c.tolerance, c.expected_share),
            traffic: ShareTest::new(2.0, 1.0 - c.expected_share),
            bound: None,
            last: None,
        }
    }

    /// The same, expecting the watched group to get `share` of the
    /// requests (a bake after a batch watches more nodes than the canary).
    pub fn with_share(mut self, share: f64) -> CompareState {
        let theta0 = self.test.theta0;
        self.test = ShareTest::new(theta0, share);
        self.traffic = ShareTest::new(2.0, 1.0 - share);
        self
    }

    /// A group's bad events: its errors, or its requests above the bound.
    fn bad(&self, c: &Counts, latency: bool) -> Option<f64> {
        if !latency {
            return c.bad;
        }
        let b = self.bound?;
        let fast = c.buckets.iter().find(|(le, _)| *le == b)?.1;
        Some((c.requests - fast).max(0.0))
    }

    /// Feed one probe's counts (cumulative since the window started).
    fn feed(&mut self, c: &CompareSpec, canary: &Counts, baseline: &Counts, min_samples: u64) {
        let latency = c.quantile.is_some();
        if let (Some(q), None) = (c.quantile, self.bound) {
            // enough baseline requests that the bound rests on about 20
            // requests above it, not on a handful
            let need = (min_samples as f64).max((20.0 / (1.0 - q)).ceil());
            if baseline.requests >= need {
                self.bound = bound_at(baseline, q);
            }
            if self.bound.is_some() {
                self.last = Some((canary.clone(), baseline.clone()));
            }
            return;
        }
        let zero = Counts {
            requests: 0.0,
            bad: Some(0.0),
            buckets: vec![],
        };
        let (lc, lb) = self.last.clone().unwrap_or((zero.clone(), zero));
        let deltas = (|| {
            let dcr = canary.requests - lc.requests;
            let dbr = baseline.requests - lb.requests;
            let dcb = self.bad(canary, latency)? - self.bad(&lc, latency).unwrap_or(0.0);
            let dbb = self.bad(baseline, latency)? - self.bad(&lb, latency).unwrap_or(0.0);
            let ok = [dcr, dbr, dcb, dbb]
                .iter()
                .all(|d| d.is_finite() && *d >= 0.0);
            ok.then_some((dcr, dbr, dcb, dbb))
        })();
        // A counter that went back (a reset the source could not see
        // through, or extrapolation noise): start counting again from here.
        self.last = Some((canary.clone(), baseline.clone()));
        let Some((dcr, dbr, dcb, dbb)) = deltas else {
            return;
        };
        if dcr + dbr > 0.0 {
            self.traffic.update(dbr, dcr, 1.0 - c.expected_share);
            self.test.update(dcb, dbb, dcr / (dcr + dbr));
        }
    }

    /// The comparison so far.
    pub fn comparison(&self, c: &CompareSpec) -> Comparison {
        let (lo, hi) = self.test.confidence(c.alpha);
        let requests = self.traffic.events_a + self.traffic.events_b;
        Comparison {
            canary_bad: self.test.events_a,
            canary_requests: self.traffic.events_b,
            baseline_bad: self.test.events_b,
            baseline_requests: self.traffic.events_a,
            ratio: self.test.estimate(),
            ratio_low: lo,
            ratio_high: hi,
            e_value: shown_exp(self.test.log_e()),
            threshold: 1.0 / c.alpha,
            tolerance: c.tolerance,
            bound: self.bound,
            share: if requests > 0.0 {
                self.traffic.events_b / requests
            } else {
                0.0
            },
            expected_share: c.expected_share,
            starved: self.traffic.log_e() >= (1.0 / c.alpha).ln(),
        }
    }

    fn rejected(&self, c: &CompareSpec) -> bool {
        self.test.log_e() >= (1.0 / c.alpha).ln()
    }
}

fn pct(x: f64) -> String {
    format!("{}%", fmt_num(x * 100.0))
}

/// Judge one probe of `spec`: [`judge`] on the canary's value, then the
/// incident rule and, for a compare check, the comparison (`state` holds
/// the window's evidence so far and is fed here).
pub fn judge_probe(
    spec: &CheckSpec,
    obs: &Observation,
    state: Option<&mut CompareState>,
) -> Judgement {
    let mut j = judge(spec, obs);
    if obs.error.is_some() {
        return j;
    }
    j.baseline_value = obs.baseline.as_ref().and_then(|b| b.deciding_value(spec));
    let enough = |samples: u64| samples >= spec.min_samples;
    let canary_past = j
        .value
        .filter(|v| v.is_finite() && enough(obs.samples))
        .and_then(|v| past_limit(spec, v).map(|l| (v, l)));
    // the baseline past the limit, or at it (a fleet hovering at its limit:
    // the canary's noisier reading crossing it alone is no evidence)
    let baseline_past = obs
        .baseline
        .as_ref()
        .filter(|b| enough(b.samples))
        .and_then(|b| b.deciding_value(spec))
        .filter(|v| v.is_finite())
        .and_then(|v| at_limit(spec, v).map(|l| (v, l)));
    let incident = match (canary_past, baseline_past) {
        (Some((cv, (op, limit))), Some((bv, _))) => Some(format!(
            "fleet-wide incident: {} is {} on the canary and {} on the baseline, both {op} {} or within 10 % of it (not the release's doing: the window waits for the fleet to recover)",
            spec.name,
            fmt_num(cv),
            fmt_num(bv),
            fmt_num(limit)
        )),
        _ => None,
    };
    // no baseline to compare with (the watch after the last batch: every
    // node runs the release): the limits alone decide
    let state = state.filter(|_| obs.baseline.is_some());
    let (Some(c), Some(st)) = (spec.compare.as_ref(), state) else {
        if let Some(why) = incident {
            j.verdict = Verdict::Inconclusive;
            j.incident = true;
            j.reason = why;
        }
        return j;
    };
    let base_counts = obs.baseline.as_ref().and_then(|b| b.counts.as_ref());
    let (Some(cc), Some(bc)) = (obs.counts.as_ref(), base_counts) else {
        j.verdict = Verdict::Inconclusive;
        j.reason = format!(
            "{}: no request counts for both the canary and its baseline to compare",
            spec.name
        );
        return j;
    };
    st.feed(c, cc, bc, spec.min_samples);
    let cmp = st.comparison(c);
    let what = match cmp.bound {
        Some(b) => format!("requests slower than {}s", fmt_num(b)),
        None if c.quantile.is_some() => "slow requests".to_string(),
        None => "errors".to_string(),
    };
    let figures = format!(
        "canary {:.0}/{:.0} vs baseline {:.0}/{:.0} {what}: canary {}× the baseline's rate (confidence interval {}–{}), evidence e = {} against 1/alpha = {}",
        cmp.canary_bad,
        cmp.canary_requests,
        cmp.baseline_bad,
        cmp.baseline_requests,
        fmt_num(cmp.ratio),
        fmt_num(cmp.ratio_low),
        fmt_num(cmp.ratio_high),
        fmt_num(cmp.e_value),
        fmt_num(cmp.threshold)
    );
    let rejected = st.rejected(c);
    let starved = cmp.starved;
    let waiting_bound = c.quantile.is_some() && cmp.bound.is_none();
    let counted = cmp.canary_requests;
    j.comparison = Some(cmp);
    if rejected {
        j.verdict = Verdict::Breach;
        j.reason = format!(
            "{}: the canary is significantly worse than its baseline (more than {} worse): {figures}",
            spec.name,
            pct(c.tolerance)
        );
    } else if let Some(why) = incident {
        j.verdict = Verdict::Inconclusive;
        j.incident = true;
        j.reason = format!("{why}; {figures}");
    } else if starved {
        let cmp = j.comparison.as_ref().expect("set");
        j.verdict = Verdict::Inconclusive;
        j.reason = format!(
            "{}: the canary got {} of the requests, it should get {}: starved of traffic, it cannot be compared ({figures})",
            spec.name,
            pct(cmp.share),
            pct(cmp.expected_share)
        );
    } else if let (Some((v, (op, limit))), None) = (canary_past, baseline_past) {
        // the SLO guard rail: never a pass while the canary alone is past
        // it; not a breach on one reading either (a compared check breaches
        // on evidence): inconclusive, which fails the window if it lasts
        j.verdict = Verdict::Inconclusive;
        j.reason = format!(
            "{}: the canary's {} is {op} {} while its baseline's is {}, not yet significantly worse: {figures}",
            spec.name,
            fmt_num(v),
            fmt_num(limit),
            j.baseline_value.map_or("-".to_string(), fmt_num)
        );
    } else if waiting_bound {
        j.verdict = Verdict::Inconclusive;
        j.reason = format!(
            "{}: {:.0} baseline requests so far, not yet enough to fix the latency bound",
            spec.name, bc.requests
        );
    } else if !enough(counted as u64) {
        j.verdict = Verdict::Inconclusive;
        j.reason = format!(
            "{}: {:.0} canary requests counted, need at least {} before any verdict",
            spec.name, counted, spec.min_samples
        );
    } else {
        j.verdict = Verdict::Pass;
        j.reason = format!(
            "{}: not significantly worse than the baseline (tolerance {}): {figures}",
            spec.name,
            pct(c.tolerance)
        );
    }
    j
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sli::Group;
    use crate::spec::InconclusivePolicy;

    fn spec(compare: bool, quantile: Option<f64>) -> CheckSpec {
        CheckSpec {
            name: "errors".into(),
            max: Some(0.05),
            min: None,
            min_samples: 20,
            on_inconclusive: InconclusivePolicy::Wait,
            compare: compare.then(|| CompareSpec {
                tolerance: 0.1,
                alpha: 0.01,
                expected_share: 1.0 / 3.0,
                quantile,
            }),
            shadow: false,
        }
    }

    fn counts(requests: f64, bad: f64) -> Counts {
        Counts {
            requests,
            bad: Some(bad),
            buckets: vec![],
        }
    }

    fn obs(c: (f64, f64), b: (f64, f64)) -> Observation {
        Observation {
            check: "errors".into(),
            value: Some(c.1 / c.0.max(1.0)),
            samples: c.0 as u64,
            counts: Some(counts(c.0, c.1)),
            baseline: Some(Group {
                value: Some(b.1 / b.0.max(1.0)),
                samples: b.0 as u64,
                series: vec![],
                counts: Some(counts(b.0, b.1)),
            }),
            ..Observation::default()
        }
    }

    /// Each row: canary (requests, errors), baseline (requests, errors), all
    /// since the window started, and the verdict after one probe.
    #[test]
    fn verdicts_table() {
        type Row = (&'static str, bool, (f64, f64), (f64, f64), Verdict, bool);
        let rows: &[Row] = &[
            // both groups at 8 % errors, past max 5 %: an incident, for a
            // fixed-limit check and a compare check alike
            (
                "incident, fixed",
                false,
                (100.0, 8.0),
                (200.0, 16.0),
                Verdict::Inconclusive,
                true,
            ),
            (
                "incident, compare",
                true,
                (100.0, 8.0),
                (200.0, 16.0),
                Verdict::Inconclusive,
                true,
            ),
            // a fleet hovering at its limit (baseline 4.8 %, max 5 %): the
            // canary's 6 % alone is no breach, it is the fleet's incident
            (
                "fleet at its limit, fixed",
                false,
                (100.0, 6.0),
                (500.0, 24.0),
                Verdict::Inconclusive,
                true,
            ),
            // canary alone past the limit: a fixed check breaches
            (
                "canary alone, fixed",
                false,
                (100.0, 8.0),
                (200.0, 2.0),
                Verdict::Breach,
                false,
            ),
            // a compare check: 8 % vs 1 % on 100 requests (10 errors) is not
            // yet evidence, but the canary alone is past the guard rail:
            // never a pass; on 1,000 requests it is a breach
            (
                "canary alone, compare, 10 errors",
                true,
                (100.0, 8.0),
                (200.0, 2.0),
                Verdict::Inconclusive,
                false,
            ),
            (
                "canary alone, compare",
                true,
                (1000.0, 80.0),
                (2000.0, 20.0),
                Verdict::Breach,
                false,
            ),
            // the canary 3× worse but within the limit: the compare check sees it
            (
                "3x within limit",
                true,
                (3000.0, 90.0),
                (6000.0, 60.0),
                Verdict::Breach,
                false,
            ),
            (
                "3x within limit, fixed",
                false,
                (1000.0, 30.0),
                (2000.0, 20.0),
                Verdict::Pass,
                false,
            ),
            // the same rate: pass
            (
                "same rate",
                true,
                (1000.0, 10.0),
                (2000.0, 20.0),
                Verdict::Pass,
                false,
            ),
            // too few canary requests
            (
                "few requests",
                true,
                (10.0, 0.0),
                (2000.0, 20.0),
                Verdict::Inconclusive,
                false,
            ),
        ];
        for (what, compare, c, b, verdict, incident) in rows {
            let spec = spec(*compare, None);
            let mut st = spec.compare.as_ref().map(|c| CompareState::new(&spec, c));
            let j = judge_probe(&spec, &obs(*c, *b), st.as_mut());
            assert_eq!(
                (j.verdict, j.incident),
                (*verdict, *incident),
                "{what}: {}",
                j.reason
            );
            assert_eq!(j.comparison.is_some(), *compare, "{what}");
        }
    }

    /// A fleet-wide incident with a significantly worse canary is still a
    /// breach: only the release's own regression rolls back.
    #[test]
    fn a_worse_canary_during_an_incident_is_a_breach() {
        let spec = spec(true, None);
        let mut st = CompareState::new(&spec, spec.compare.as_ref().unwrap());
        let j = judge_probe(&spec, &obs((1000.0, 300.0), (2000.0, 160.0)), Some(&mut st));
        assert_eq!(j.verdict, Verdict::Breach, "{}", j.reason);
        assert!(!j.incident);
    }

    #[test]
    fn a_starved_canary_is_inconclusive_never_a_pass() {
        let spec = spec(true, None);
        let mut st = CompareState::new(&spec, spec.compare.as_ref().unwrap());
        // expected a third of the requests, got 2 %
        let j = judge_probe(&spec, &obs((100.0, 1.0), (4900.0, 49.0)), Some(&mut st));
        assert_eq!(j.verdict, Verdict::Inconclusive, "{}", j.reason);
        assert!(j.reason.contains("starved"), "{}", j.reason);
        assert!(j.comparison.unwrap().starved);
    }

    #[test]
    fn the_latency_bound_comes_from_the_baseline_and_counts_after_it() {
        let spec = spec(true, Some(0.95));
        let mut st = CompareState::new(&spec, spec.compare.as_ref().unwrap());
        let hist = |requests: f64, fast: [f64; 3]| Counts {
            requests,
            bad: None,
            buckets: vec![(0.025, fast[0]), (0.05, fast[1]), (0.1, fast[2])],
        };
        let o = |c: Counts, b: Counts| Observation {
            check: "errors".into(),
            value: Some(0.03),
            samples: c.requests as u64,
            counts: Some(c),
            baseline: Some(Group {
                value: Some(0.03),
                samples: b.requests as u64,
                counts: Some(b),
                ..Group::default()
            }),
            ..Observation::default()
        };
        // probe 1: 100 baseline requests are too few to fix a p95 bound
        // (about 20 above it are needed: 400)
        judge_probe(
            &spec,
            &o(
                hist(50.0, [40.0, 49.0, 50.0]),
                hist(100.0, [80.0, 97.0, 100.0]),
            ),
            Some(&mut st),
        );
        assert_eq!(st.bound, None);
        // probe 2: the baseline's p95 lies in (0.025, 0.05]: the bound is 0.025
        let j = judge_probe(
            &spec,
            &o(
                hist(200.0, [160.0, 196.0, 200.0]),
                hist(400.0, [320.0, 388.0, 400.0]),
            ),
            Some(&mut st),
        );
        assert_eq!(st.bound, Some(0.025));
        assert_eq!(j.verdict, Verdict::Inconclusive, "{}", j.reason);
        // then the canary slows down: most of its new requests are above 25 ms
        let j = judge_probe(
            &spec,
            &o(
                hist(500.0, [180.0, 450.0, 500.0]),
                hist(1000.0, [800.0, 970.0, 1000.0]),
            ),
            Some(&mut st),
        );
        let cmp = j.comparison.clone().unwrap();
        assert_eq!(
            (cmp.canary_bad, cmp.canary_requests),
            (280.0, 300.0),
            "counted after the bound"
        );
        assert_eq!((cmp.baseline_bad, cmp.baseline_requests), (120.0, 600.0));
        assert_eq!(j.verdict, Verdict::Breach, "{}", j.reason);
    }

    #[test]
    fn a_counter_going_back_restarts_the_count_without_a_verdict_from_it() {
        let spec = spec(true, None);
        let mut st = CompareState::new(&spec, spec.compare.as_ref().unwrap());
        judge_probe(&spec, &obs((1000.0, 10.0), (2000.0, 20.0)), Some(&mut st));
        let j = judge_probe(&spec, &obs((50.0, 40.0), (2100.0, 21.0)), Some(&mut st));
        assert_eq!(j.comparison.unwrap().canary_requests, 1000.0);
    }

    #[test]
    fn shadow_checks_never_act() {
        let mut s = spec(true, None);
        s.shadow = true;
        let mut st = CompareState::new(&s, s.compare.as_ref().unwrap());
        let j = judge_probe(&s, &obs((1000.0, 80.0), (2000.0, 20.0)), Some(&mut st));
        assert_eq!(j.verdict, Verdict::Breach);
        assert!(j.shadow && !crate::sli::fails_now(&s, &j));
    }
}
