//! Metric arithmetic without Prometheus: parse the text exposition format,
//! and compute quantiles and ratios from the *difference* between two
//! scrapes of a node, handling counter resets (a restarted process starts
//! its counters from zero).

use std::collections::BTreeMap;

/// One sample line of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parse the Prometheus text exposition format. Comment lines and lines that
/// do not parse are skipped (a scrape is best effort, judged by sample counts).
///
/// ```
/// let s = glidepath_core::metrics::parse_text("# HELP x\nreq_total{code=\"500\"} 3\nup 1\n");
/// assert_eq!(s.len(), 2);
/// assert_eq!(s[0].labels["code"], "500");
/// ```
pub fn parse_text(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if rest.starts_with('{') {
        rest = &rest[1..];
        loop {
            rest = rest.trim_start_matches([',', ' ']);
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let eq = rest.find('=')?;
            let key = rest[..eq].trim().to_string();
            rest = rest[eq + 1..].strip_prefix('"')?;
            let mut val = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                let (i, c) = chars.next()?;
                match c {
                    '\\' => match chars.next()?.1 {
                        'n' => val.push('\n'),
                        other => val.push(other),
                    },
                    '"' => break i,
                    c => val.push(c),
                }
            };
            rest = &rest[end + 1..];
            labels.insert(key, val);
        }
    }
    let value_str = rest.split_whitespace().next()?;
    let value = match value_str {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Increase of a counter between two readings; a decrease means the process
/// restarted and the counter began again from zero.
pub fn counter_increase(before: f64, after: f64) -> f64 {
    if after < before {
        after
    } else {
        after - before
    }
}

/// A histogram summed over every label but `le`: cumulative counts per bound.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
}

impl Histogram {
    pub fn from_samples(samples: &[Sample], name: &str) -> Histogram {
        let bucket = format!("{name}_bucket");
        let mut by_le: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for s in samples.iter().filter(|s| s.name == bucket) {
            let Some(le) = s.labels.get("le").and_then(|v| match v.as_str() {
                "+Inf" => Some(f64::INFINITY),
                v => v.parse::<f64>().ok(),
            }) else {
                continue;
            };
            let e = by_le.entry(le.to_bits()).or_insert((le, 0.0));
            e.1 += s.value;
        }
        let mut buckets: Vec<(f64, f64)> = by_le.into_values().collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Histogram { buckets }
    }

    /// Total observations (the `+Inf` bucket).
    /// Several histograms (e.g. each canary's window) as one, bucket by
    /// bucket.
    pub fn merge(hs: &[Histogram]) -> Histogram {
        let mut out: Vec<(f64, f64)> = Vec::new();
        for h in hs {
            for &(le, c) in &h.buckets {
                match out.iter_mut().find(|b| b.0 == le) {
                    Some(b) => b.1 += c,
                    None => out.push((le, c)),
                }
            }
        }
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        Histogram { buckets: out }
    }

    pub fn count(&self) -> f64 {
        self.buckets.last().map_or(0.0, |b| b.1)
    }

    /// Observations made between `before` and `self`. If the total went
    /// down, the process restarted: everything in `self` is new.
    pub fn since(&self, before: &Histogram) -> Histogram {
        if self.count() < before.count() {
            return self.clone();
        }
        let buckets = self
            .buckets
            .iter()
            .map(|&(le, c)| {
                let prev = before
                    .buckets
                    .iter()
                    .find(|b| b.0 == le)
                    .map_or(0.0, |b| b.1);
                (le, (c - prev).max(0.0))
            })
            .collect();
        Histogram { buckets }
    }

    /// The q-quantile with Prometheus' `histogram_quantile` interpolation:
    /// linear within the bucket holding the rank; the upper bound of the
    /// highest finite bucket when the rank falls in `+Inf`. `None` without data.
    ///
    /// ```
    /// use glidepath_core::metrics::Histogram;
    /// let h = Histogram { buckets: vec![(0.1, 50.0), (0.2, 90.0), (0.5, 100.0), (f64::INFINITY, 100.0)] };
    /// // rank 95 lies in (0.2, 0.5], halfway: 0.2 + 0.3 * 5/10
    /// assert!((h.quantile(0.95).unwrap() - 0.35).abs() < 1e-9);
    /// ```
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * total;
        let mut prev_le = 0.0;
        let mut prev_count = 0.0;
        for &(le, count) in &self.buckets {
            if count >= rank {
                if le.is_infinite() {
                    return Some(prev_le);
                }
                let in_bucket = count - prev_count;
                if in_bucket <= 0.0 {
                    return Some(le);
                }
                return Some(prev_le + (le - prev_le) * (rank - prev_count) / in_bucket);
            }
            prev_le = le;
            prev_count = count;
        }
        Some(prev_le)
    }
}

/// Sum of a counter's increase across its series, optionally only those whose
/// `label` starts with `prefix` (e.g. `code` starting with `5`).
pub fn counter_sum_increase(
    before: &[Sample],
    after: &[Sample],
    name: &str,
    filter: Option<(&str, &str)>,
) -> f64 {
    let keep = |s: &&Sample| {
        s.name == name
            && filter.is_none_or(|(l, p)| s.labels.get(l).is_some_and(|v| v.starts_with(p)))
    };
    after
        .iter()
        .filter(keep)
        .map(|a| {
            let prev = before
                .iter()
                .filter(keep)
                .find(|b| b.labels == a.labels)
                .map_or(0.0, |b| b.value);
            counter_increase(prev, a.value)
        })
        .sum::<f64>()
        + 0.0 // an empty f64 sum is -0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_reset_counts_from_zero() {
        assert_eq!(counter_increase(100.0, 130.0), 30.0);
        assert_eq!(counter_increase(100.0, 7.0), 7.0);
    }

    #[test]
    fn histogram_delta_and_reset() {
        let before = parse_text("h_bucket{le=\"0.1\"} 10\nh_bucket{le=\"+Inf\"} 10\n");
        let after = parse_text("h_bucket{le=\"0.1\"} 10\nh_bucket{le=\"+Inf\"} 30\n");
        let d = Histogram::from_samples(&after, "h").since(&Histogram::from_samples(&before, "h"));
        assert_eq!(d.count(), 20.0);
        // all 20 new observations are above 0.1: the quantile is the highest finite bound
        assert_eq!(d.quantile(0.95), Some(0.1));
        let restarted = parse_text("h_bucket{le=\"0.1\"} 4\nh_bucket{le=\"+Inf\"} 5\n");
        let d =
            Histogram::from_samples(&restarted, "h").since(&Histogram::from_samples(&after, "h"));
        assert_eq!(d.count(), 5.0);
    }

    #[test]
    fn ratio_by_label_prefix_with_new_series() {
        let before = parse_text("r{code=\"200\"} 100\n");
        let after = parse_text("r{code=\"200\"} 180\nr{code=\"503\"} 20\n");
        assert_eq!(counter_sum_increase(&before, &after, "r", None), 100.0);
        assert_eq!(
            counter_sum_increase(&before, &after, "r", Some(("code", "5"))),
            20.0
        );
    }

    #[test]
    fn labels_with_escapes_and_spaces() {
        let s = parse_text(r#"m{a="x\"y", b="2"} 1.5e3 1700000000"#);
        assert_eq!(s[0].labels["a"], "x\"y");
        assert_eq!(s[0].value, 1500.0);
    }

    #[test]
    fn merged_histograms_add_bucket_by_bucket() {
        let a = parse_text("h_bucket{le=\"0.1\"} 8\nh_bucket{le=\"+Inf\"} 10\n");
        let b = parse_text("h_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 10\n");
        let m = Histogram::merge(&[
            Histogram::from_samples(&a, "h"),
            Histogram::from_samples(&b, "h"),
        ]);
        assert_eq!(m.count(), 20.0);
        let les: Vec<f64> = m.buckets.iter().map(|b| b.0).collect();
        assert_eq!(les, vec![0.1, 0.5, f64::INFINITY]);
    }

    #[test]
    fn empty_histogram_has_no_quantile() {
        assert_eq!(Histogram::default().quantile(0.95), None);
    }
}
