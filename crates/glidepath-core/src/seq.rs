//! Anytime-valid sequential tests: is the canary worse than its baseline?
//!
//! The judge may look after every probe, and the chance that it *ever*
//! declares a regression when the canary is no worse stays below `alpha`,
//! however many looks there are (Ville's inequality on a nonnegative
//! supermartingale). A naive test at every probe has no such bound.
//!
//! **The model.** Events of one kind (errors, requests slower than a latency
//! bound, or requests themselves) come from two arms: `a` (the canary) and
//! `b` (the baseline). In a span where arm `a` served a share `q` of the
//! traffic, an event comes from `a` with probability `θq / (θq + 1 − q)`:
//! `θ` is the ratio of the two arms' event rates per request (θ = 2: the
//! canary fails twice as often). Conditioning on each span's traffic share
//! keeps the test exact when the share drifts (a slow canary under
//! `leastconn` gets less traffic).
//!
//! **The test.** A mixture of likelihood ratios over θ (Lindon & Malek,
//! "Anytime-Valid Inference for Multinomial Count Data", NeurIPS 2022; used
//! for canaries in Lindon, Sanden & Shirikian, KDD 2022). The mixing
//! distribution is their Dirichlet prior, `Beta(kρ, k(1−ρ))` on the canary's
//! share of events with `k = 100` and `ρ` the expected traffic share, carried
//! to θ and put on a fixed grid of θ ([`GRID`] points, log-spaced from 1/64
//! to 64). With a constant share the two-sided mixture *is* their closed-form
//! Bayes factor ([`log_bf_dirichlet`]; a test checks the grid against it).
//! The one-sided test of "θ ≤ θ0" (θ0 = 1 + tolerance) mixes only over
//! θ > θ0, against the likelihood at θ0: under any θ ≤ θ0 every event's
//! likelihood ratio has mean ≤ 1, so the mixture is a test supermartingale
//! and `P(ever e ≥ 1/alpha) ≤ alpha`.
//!
//! The same machinery gives an anytime-valid confidence sequence for θ (the
//! grid values the two-sided mixture does not reject) and the traffic-share
//! check: requests as events, tested against the expected share.

use serde::{Deserialize, Serialize};

/// Points of the θ grid: θ_i = 64^((i − 120) / 120), so θ_60 = 1/8,
/// θ_120 = 1, θ_180 = 8 (steps of 3.5 %).
pub const GRID: usize = 241;
const MID: usize = 120;
const LN_SPAN: f64 = 4.158_883_083_359_672; // ln 64

/// The concentration of the mixing prior (the reference implementations'
/// `k = 100`).
pub const K: f64 = 100.0;

/// θ at grid point `i`.
pub fn theta(i: usize) -> f64 {
    (LN_SPAN * (i as f64 - MID as f64) / MID as f64).exp()
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; relative error ~1e-15).
pub fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    use std::f64::consts::PI;
    if x < 0.5 {
        // reflection: Γ(x)Γ(1−x) = π / sin(πx)
        return (PI / (PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let a = C
        .iter()
        .enumerate()
        .skip(1)
        .fold(C[0], |a, (i, c)| a + c / (x + i as f64));
    0.5 * (2.0 * PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The closed-form log Bayes factor of the Dirichlet-multinomial mixture
/// (Lindon & Malek 2022) for counts `x` against shares `rho`:
/// `lnΓ(k) − lnΓ(k+n) + Σ [lnΓ(kρ_i + x_i) − lnΓ(kρ_i) − x_i ln ρ_i]`.
pub fn log_bf_dirichlet(x: &[f64], rho: &[f64], k: f64) -> f64 {
    let n: f64 = x.iter().sum();
    x.iter()
        .zip(rho)
        .fold(ln_gamma(k) - ln_gamma(k + n), |s, (xi, ri)| {
            s + ln_gamma(k * ri + xi) - ln_gamma(k * ri) - xi * ri.ln()
        })
}

/// ln Σ exp(v_i + w_i) without overflow.
fn log_sum_exp(terms: impl Iterator<Item = f64> + Clone) -> f64 {
    let m = terms.clone().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + terms.map(|t| (t - m).exp()).sum::<f64>().ln()
}

/// The log weight of a grid point outside a mixture.
const EXCLUDED: f64 = -1e300;

/// The mixing weights (log, normalized over the grid points `keep`):
/// `Beta(kρ, k(1−ρ))` on the share `p = θρ / (θρ + 1 − ρ)`, carried to ln θ
/// (density ∝ p^{kρ} (1−p)^{k(1−ρ)}).
fn log_weights(rho: f64, keep: impl Fn(usize) -> bool) -> Vec<f64> {
    let w: Vec<f64> = (0..GRID)
        .map(|i| {
            if !keep(i) {
                // no weight; finite, so that it survives JSON
                return EXCLUDED;
            }
            let t = theta(i);
            let p = t * rho / (t * rho + 1.0 - rho);
            K * rho * p.ln() + K * (1.0 - rho) * (1.0 - p).ln()
        })
        .collect();
    let z = log_sum_exp(w.iter().copied());
    w.into_iter().map(|v| v - z).collect()
}

/// One event count's test of arm `a` against arm `b`, fed span by span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareTest {
    /// The null hypothesis: θ ≤ `theta0` (1 + tolerance).
    pub theta0: f64,
    /// The expected traffic share of arm `a` (centres the mixing prior).
    pub rho: f64,
    /// Events from each arm so far.
    pub events_a: f64,
    pub events_b: f64,
    /// Events `a` would have had if θ were 1 (Σ n·q over spans).
    pub expected_a: f64,
    /// Log-likelihood at each grid point (up to a constant).
    loglik: Vec<f64>,
    /// Log-likelihood at `theta0`.
    loglik0: f64,
    /// The one-sided mixing weights (log; over θ > theta0).
    weights: Vec<f64>,
}

impl ShareTest {
    /// A test of "arm `a`'s event rate is at most `theta0` times arm `b`'s",
    /// with `rho` the share of traffic `a` is expected to get.
    pub fn new(theta0: f64, rho: f64) -> ShareTest {
        ShareTest {
            theta0,
            rho: rho.clamp(1e-6, 1.0 - 1e-6),
            events_a: 0.0,
            events_b: 0.0,
            expected_a: 0.0,
            loglik: vec![0.0; GRID],
            loglik0: 0.0,
            weights: log_weights(rho.clamp(1e-6, 1.0 - 1e-6), |i| theta(i) > theta0),
        }
    }

    /// One span: `a` and `b` events while arm `a` served a share `q` of the
    /// traffic. A span without traffic or events changes nothing.
    pub fn update(&mut self, a: f64, b: f64, q: f64) {
        let n = a + b;
        let usable = n > 0.0 && a >= 0.0 && b >= 0.0 && q > 0.0 && q < 1.0;
        if !usable {
            return;
        }
        let ll = |t: f64| a * t.ln() - n * (t * q + 1.0 - q).ln();
        for (i, l) in self.loglik.iter_mut().enumerate() {
            *l += ll(theta(i));
        }
        self.loglik0 += ll(self.theta0);
        self.events_a += a;
        self.events_b += b;
        self.expected_a += n * q;
    }

    /// ln of the one-sided e-value against "θ ≤ theta0".
    pub fn log_e(&self) -> f64 {
        log_sum_exp((0..GRID).map(|i| self.weights[i] + self.loglik[i])) - self.loglik0
    }

    /// ln of the two-sided e-value against θ = `theta(at)`.
    fn log_e_two_sided(&self, w: &[f64], at: usize) -> f64 {
        log_sum_exp((0..GRID).map(|i| w[i] + self.loglik[i])) - self.loglik[at]
    }

    /// ln of the two-sided e-value against θ = 1 (with a constant share,
    /// [`log_bf_dirichlet`] of the two counts).
    pub fn log_bf(&self) -> f64 {
        self.log_e_two_sided(&log_weights(self.rho, |_| true), MID)
    }

    /// The maximum-likelihood θ on the grid (1 before any event).
    pub fn estimate(&self) -> f64 {
        if self.events_a + self.events_b == 0.0 {
            return 1.0;
        }
        let best = (0..GRID)
            .max_by(|&i, &j| self.loglik[i].total_cmp(&self.loglik[j]))
            .expect("a grid");
        theta(best)
    }

    /// The anytime-valid `1 − alpha` confidence sequence for θ: the grid
    /// values the two-sided mixture does not reject (`(1/64, 64)` at most).
    pub fn confidence(&self, alpha: f64) -> (f64, f64) {
        let w = log_weights(self.rho, |_| true);
        let bound = (1.0 / alpha).ln();
        let kept: Vec<usize> = (0..GRID)
            .filter(|&g| self.log_e_two_sided(&w, g) < bound)
            .collect();
        match (kept.first(), kept.last()) {
            // one grid step outward: θ between two grid points is covered
            (Some(&lo), Some(&hi)) => (theta(lo.saturating_sub(1)), theta((hi + 1).min(GRID - 1))),
            _ => {
                let e = self.estimate();
                (e, e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gamma_matches_known_values() {
        let pi = std::f64::consts::PI;
        for (x, want) in [
            (1.0, 0.0),
            (2.0, 0.0),
            (5.0, 24f64.ln()),
            (0.5, pi.sqrt().ln()),
            (0.1, 2.252_712_651_734_206),
            (100.0, 359.134_205_369_575_4),
            (1e4, 82_099.717_496_442_37),
        ] {
            let got = ln_gamma(x);
            assert!(
                (got - want).abs() <= 1e-10 * want.abs().max(1.0),
                "lnΓ({x}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn the_grid_mixture_is_the_dirichlet_bayes_factor() {
        for (rho, a, b) in [
            (0.1, 0.0, 0.0),
            (0.1, 5.0, 20.0),
            (0.1, 30.0, 100.0),
            (0.5, 40.0, 60.0),
            (1.0 / 3.0, 200.0, 250.0),
            (0.1, 3.0, 400.0),
        ] {
            let mut t = ShareTest::new(1.0, rho);
            t.update(a, b, rho);
            let want = log_bf_dirichlet(&[a, b], &[rho, 1.0 - rho], K);
            let got = if a + b > 0.0 { t.log_bf() } else { 0.0 };
            assert!(
                (got - want).abs() < 0.01,
                "rho {rho}, {a}/{b}: grid {got}, closed form {want}"
            );
        }
    }

    #[test]
    fn spans_add_up_whatever_their_size() {
        let mut one = ShareTest::new(1.1, 0.2);
        one.update(6.0, 14.0, 0.2);
        let mut two = ShareTest::new(1.1, 0.2);
        two.update(2.0, 4.0, 0.2);
        two.update(4.0, 10.0, 0.2);
        assert!((one.log_e() - two.log_e()).abs() < 1e-9);
        assert_eq!(one.events_a, two.events_a);
    }

    #[test]
    fn a_clear_regression_is_rejected_and_estimated() {
        let mut t = ShareTest::new(1.1, 0.25);
        // the canary serves a quarter of the traffic but has 3× the error rate
        t.update(60.0, 60.0, 0.25);
        assert!(t.log_e() > (1.0f64 / 0.01).ln(), "e = {}", t.log_e().exp());
        let (lo, hi) = t.confidence(0.01);
        assert!(lo > 1.1 && hi > 3.0 && lo < 3.0, "{lo}..{hi}");
        assert!((t.estimate() - 3.0).abs() < 0.15, "{}", t.estimate());
        // no evidence either way: e stays small and the interval covers 1
        let mut t = ShareTest::new(1.1, 0.25);
        t.update(10.0, 30.0, 0.25);
        assert!(t.log_e() < 0.0);
        let (lo, hi) = t.confidence(0.01);
        assert!(lo < 1.0 && hi > 1.0);
    }

    #[test]
    fn a_drifting_share_is_accounted_for() {
        // The canary got less traffic in the second span: its fewer errors
        // there are no evidence of anything.
        let mut t = ShareTest::new(1.0, 0.5);
        t.update(10.0, 10.0, 0.5);
        t.update(2.0, 18.0, 0.1);
        assert!((t.estimate() - 1.0).abs() < 0.1, "{}", t.estimate());
    }

    #[test]
    fn a_test_survives_a_json_round_trip() {
        let mut t = ShareTest::new(1.1, 0.25);
        t.update(3.0, 5.0, 0.25);
        let back: ShareTest = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back.events_a, 3.0);
        assert!((back.log_e() - t.log_e()).abs() < 1e-9);
    }
}
