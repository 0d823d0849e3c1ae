//! One SLI check's readings as an inline SVG chart: the canary's values
//! (a line, each point past the limit in red), the baseline's (grey), the
//! limit (a dashed line) and the starts of the SLI windows. Coordinates are
//! formatted with fixed decimals, so the same readings draw the same bytes.

use super::html::esc;
use super::{num, rel_time, CheckSeries};
use std::fmt::Write as _;

const W: f64 = 640.0;
const H: f64 = 200.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 28.0;

pub fn chart(c: &CheckSeries, windows: &[u64]) -> String {
    // a value that is not a number (NaN, ±inf from a journal) is not drawn
    let fin = |v: Option<f64>| v.filter(|v| v.is_finite());
    let ts = c
        .points
        .iter()
        .map(|p| p.t_ms)
        .chain(windows.iter().copied());
    let t_min = ts.clone().min().unwrap_or(0);
    let t_max = ts.max().unwrap_or(0).max(t_min + 1);
    let values = c
        .points
        .iter()
        .flat_map(|p| [fin(p.value), fin(p.baseline)])
        .flatten()
        .chain(fin(c.max))
        .chain(fin(c.min));
    let v_max = values.fold(0.0_f64, f64::max);
    let v_max = if v_max > 0.0 { v_max * 1.15 } else { 1.0 };
    let x = |t: u64| LEFT + (t - t_min) as f64 / (t_max - t_min) as f64 * (W - LEFT - RIGHT);
    let y = |v: f64| TOP + (1.0 - (v / v_max).clamp(0.0, 1.0)) * (H - TOP - BOTTOM);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{}">"#,
        esc(&format!("{} over the run", c.check))
    );
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, TOP, H - BOTTOM);
    let _ = write!(
        s,
        r##"<rect x="{x0}" y="{y0}" width="{:.1}" height="{:.1}" fill="#fafafa" stroke="#ccc"/>"##,
        x1 - x0,
        y1 - y0
    );
    // axes: 0 and the top value, the first and last time
    let _ = write!(
        s,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="end" class="ax">0</text><text x="{:.1}" y="{:.1}" text-anchor="end" class="ax">{}</text>"##,
        x0 - 4.0,
        y1,
        x0 - 4.0,
        y0 + 8.0,
        num(v_max)
    );
    let _ = write!(
        s,
        r##"<text x="{x0:.1}" y="{:.1}" class="ax">{}</text><text x="{x1:.1}" y="{:.1}" text-anchor="end" class="ax">{}</text>"##,
        H - 8.0,
        rel_time(t_min),
        H - 8.0,
        rel_time(t_max)
    );
    for w in windows {
        let _ = write!(
            s,
            r##"<line class="window" x1="{0:.1}" y1="{y0:.1}" x2="{0:.1}" y2="{y1:.1}" stroke="#888" stroke-dasharray="2 3"/><text x="{1:.1}" y="{2:.1}" class="ax">window</text>"##,
            x(*w),
            x(*w) + 3.0,
            y0 + 10.0
        );
    }
    for (limit, label) in [(fin(c.max), "max"), (fin(c.min), "min")] {
        if let Some(l) = limit {
            let _ = write!(
                s,
                r##"<line class="limit" x1="{x0:.1}" y1="{0:.1}" x2="{x1:.1}" y2="{0:.1}" stroke="#c62828" stroke-dasharray="6 4"/><text x="{1:.1}" y="{2:.1}" text-anchor="end" class="limit-label">{label} {3}</text>"##,
                y(l),
                x1 - 4.0,
                y(l) - 4.0,
                num(l)
            );
        }
    }
    let line = |pick: &dyn Fn(&super::Point) -> Option<f64>| -> String {
        c.points
            .iter()
            .filter_map(|p| fin(pick(p)).map(|v| format!("{:.1},{:.1}", x(p.t_ms), y(v))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let baseline = line(&|p| p.baseline);
    if !baseline.is_empty() {
        let _ = write!(
            s,
            r##"<polyline class="baseline" points="{baseline}" fill="none" stroke="#9e9e9e" stroke-width="1.5"/>"##
        );
    }
    let canary = line(&|p| p.value);
    if !canary.is_empty() {
        let _ = write!(
            s,
            r##"<polyline class="series" points="{canary}" fill="none" stroke="#1565c0" stroke-width="2"/>"##
        );
    }
    for p in &c.points {
        if let Some(b) = fin(p.baseline) {
            let _ = write!(
                s,
                r##"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="#9e9e9e"/>"##,
                x(p.t_ms),
                y(b)
            );
        }
        if let Some(v) = fin(p.value) {
            let _ = write!(
                s,
                r##"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"><title>{} {}: {} ({} samples)</title></circle>"##,
                x(p.t_ms),
                y(v),
                match p.verdict.as_deref() {
                    Some("breach") => "#c62828",
                    Some(v) if v.starts_with("inconclusive") => "#ef6c00",
                    Some(_) => "#1565c0",
                    None if p.over_limit => "#c62828",
                    None => "#1565c0",
                },
                rel_time(p.t_ms),
                esc(&c.check),
                num(v),
                p.samples
            );
        }
    }
    let _ = write!(
        s,
        r##"<text x="{0:.1}" y="{1:.1}" class="ax"><tspan fill="#1565c0">● canary</tspan> <tspan fill="#9e9e9e">● baseline</tspan> <tspan fill="#c62828">● breach</tspan> <tspan fill="#ef6c00">● inconclusive</tspan></text>"##,
        x0 + 120.0,
        H - 8.0
    );
    s.push_str("</svg>");
    s
}
