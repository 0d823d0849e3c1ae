//! The judge's detection budget, by simulation (seeded): at a 10 % canary
//! traffic share, how many bad events (errors, or requests slower than the
//! baseline's p95) the sequential test needs to call a regression, looked
//! at every 5 events, and the seconds that takes at the demo's rate (50
//! requests/s, 5 % baseline errors); beside it, the events a fixed-horizon
//! one-sided binomial test of the same level needs for the same power
//! (0.8), which may only be looked at once, at its horizon.

use glidepath_core::seq::{ln_gamma, ShareTest};

const ALPHA: f64 = 0.01;
const TOLERANCE: f64 = 0.1;
const RUNS: usize = 1_000;
const LOOK_EVERY: u64 = 5;
const MAX_EVENTS: u64 = 50_000;
const RPS: f64 = 50.0;
const BASE_ERRORS: f64 = 0.05;

struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The canary's share of the events when it serves `traffic` of the
/// requests and its rate is `ratio` times the baseline's.
fn share(traffic: f64, ratio: f64) -> f64 {
    ratio * traffic / (ratio * traffic + 1.0 - traffic)
}

/// Events until the one-sided test rejects "ratio ≤ 1 + tolerance".
fn events_to_decide(rng: &mut Rng, traffic: f64, ratio: f64) -> u64 {
    let p = share(traffic, ratio);
    let mut t = ShareTest::new(1.0 + TOLERANCE, traffic);
    let mut n = 0;
    while n < MAX_EVENTS {
        let a = (0..LOOK_EVERY).filter(|_| rng.unit() < p).count() as f64;
        t.update(a, LOOK_EVERY as f64 - a, traffic);
        n += LOOK_EVERY;
        if t.log_e() >= (1.0 / ALPHA).ln() {
            return n;
        }
    }
    MAX_EVENTS
}

fn ln_binom_pmf(n: u64, k: u64, p: f64) -> f64 {
    let (n, k) = (n as f64, k as f64);
    ln_gamma(n + 1.0) - ln_gamma(k + 1.0) - ln_gamma(n - k + 1.0)
        + k * p.ln()
        + (n - k) * (1.0 - p).ln()
}

/// P(Bin(n, p) ≥ k).
fn upper_tail(n: u64, k: u64, p: f64) -> f64 {
    (k..=n).map(|i| ln_binom_pmf(n, i, p).exp()).sum()
}

/// The fewest events a one-sided exact binomial test at `ALPHA` of the
/// canary's share (null: ratio 1 + tolerance) needs for power 0.8 against
/// `ratio`.
fn fixed_horizon(traffic: f64, ratio: f64) -> u64 {
    let (p0, p1) = (share(traffic, 1.0 + TOLERANCE), share(traffic, ratio));
    let mut n = 5;
    loop {
        // the smallest critical count at level alpha
        let mut k = (n as f64 * p0).ceil() as u64;
        while k <= n && upper_tail(n, k, p0) > ALPHA {
            k += 1;
        }
        if k <= n && upper_tail(n, k, p1) >= 0.8 {
            return n;
        }
        n += if n < 200 { 1 } else { n / 50 };
    }
}

fn quantile(v: &mut [u64], q: f64) -> u64 {
    v.sort_unstable();
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Bad events per second at the demo's rate for a canary `ratio` times
/// worse, when the baseline's rate of them is `base`.
fn events_per_second(traffic: f64, base: f64, ratio: f64) -> f64 {
    RPS * (traffic * (base * ratio).min(1.0) + (1.0 - traffic) * base)
}

pub fn judge() {
    // 10 %: a canary among ten nodes; 25 %: the demo fleet's one of four
    for traffic in [0.1, 0.25] {
        table(traffic);
    }
    println!("  * events a fixed-horizon one-sided binomial test at the same alpha needs for power 0.8, read once at its horizon; the sequential test's p80 is its budget for the same power, and it may be read at every probe");
}

fn table(traffic: f64) {
    println!(
        "judge: detection budget at a {:.0} % canary traffic share, alpha {ALPHA}, tolerance {:.0} %, a look every {LOOK_EVERY} events, {RUNS} seeded runs each",
        traffic * 100.0,
        TOLERANCE * 100.0
    );
    println!(
        "  seconds at the demo's rate: {RPS} requests/s, {:.0} % baseline errors; latency uniform in ±50 % of its mean, slow = above the baseline's p95",
        BASE_ERRORS * 100.0
    );
    println!(
        "  {:<12} {:>6} {:>7} {:>7} {:>7} {:>9} {:>9} {:>9} {:>15}",
        "regression",
        "ratio",
        "median",
        "p90",
        "p99",
        "median s",
        "p90 s",
        "p99 s",
        "fixed horizon*"
    );
    // latency: a canary `s` times slower has P(s·U > 1.45) above the
    // baseline's p95 (U uniform on [0.5, 1.5]), against the baseline's 5 %
    let slow = |s: f64| (1.5 - 1.45 / s).clamp(0.0, 1.0);
    let cases: Vec<(&str, f64, f64)> = vec![
        ("errors ×1.5", 1.5, BASE_ERRORS),
        ("errors ×2", 2.0, BASE_ERRORS),
        ("errors ×5", 5.0, BASE_ERRORS),
        ("p95 +20 %", slow(1.2) / 0.05, 0.05),
        ("p95 +50 %", slow(1.5) / 0.05, 0.05),
    ];
    let mut rng = Rng(2026);
    for (name, ratio, base) in cases {
        let mut n: Vec<u64> = (0..RUNS)
            .map(|_| events_to_decide(&mut rng, traffic, ratio))
            .collect();
        let (med, p90, p99) = (
            quantile(&mut n, 0.5),
            quantile(&mut n, 0.9),
            quantile(&mut n, 0.99),
        );
        let p80 = quantile(&mut n, 0.8);
        let per_s = events_per_second(traffic, base, ratio);
        println!(
            "  {name:<12} {ratio:>6.2} {med:>7} {p90:>7} {p99:>7} {:>9.1} {:>9.1} {:>9.1} {:>6} (seq. p80 {p80})",
            med as f64 / per_s,
            p90 as f64 / per_s,
            p99 as f64 / per_s,
            fixed_horizon(traffic, ratio)
        );
    }
}
