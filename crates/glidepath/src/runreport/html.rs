//! The report as one self-contained HTML page: inline CSS, an inline SVG
//! chart per SLI check (`svg.rs`), no script, no external asset. Every
//! journaled text goes through [`esc`].

use super::md::{exposure_text, group_name, groups};
use super::{duration, limit_words, num, rel_time, svg, utc, RunReport, StepRow};
use std::fmt::Write as _;

const CSS: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}\
h1{font-size:1.5em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}\
th{background:#f3f3f3}td.n{text-align:right;white-space:nowrap}.bad{color:#c62828;font-weight:600}.ok{color:#2e7d32}\
.state{font-size:1.1em;padding:.4em .8em;background:#f3f3f3;border-left:4px solid #888}\
.ax{font-size:10px;fill:#555}.limit-label{font-size:11px;fill:#c62828}code{font-size:12px}";

/// A journaled text made safe for HTML text and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn opt(v: &Option<String>) -> String {
    v.as_deref().map_or("-".into(), esc)
}

fn class_of(result: &str) -> &'static str {
    match result {
        "ok" | "pass" => "ok",
        "failed" | "fail" | "forced" | "infra" => "bad",
        _ => "",
    }
}

pub fn render(r: &RunReport) -> String {
    let run = &r.run;
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Run report {}</title><style>{CSS}</style></head><body>\n",
        esc(&run.run_id)
    );
    let _ = writeln!(o, "<h1>Run report: {}</h1>", esc(&run.run_id));
    let _ = writeln!(
        o,
        "<p class=\"state\"><b>{}</b> — {}</p>",
        esc(&r.state_words()),
        esc(&run.reason)
    );
    o.push_str("<table>");
    let mut rows = vec![
        ("Fleet", esc(&run.fleet)),
        ("Release", esc(&run.release)),
        ("Plan", format!("<code>{}</code>", esc(&run.plan_path))),
        (
            "Plan sha256",
            format!("<code>{}</code>", esc(&run.plan_sha256)),
        ),
        ("Started (UTC)", utc(run.started_at)),
        ("Duration", duration(run.duration_ms)),
        ("Run by", esc(&r.run_by())),
        ("Groups", esc(&groups(r))),
    ];
    for origin in r.origins.iter().filter(|o| o.resumed) {
        rows.push((
            "Resumed",
            format!(
                "at {} by {}@{} (pid {}, glidepath {})",
                rel_time(origin.t_ms),
                esc(&origin.user),
                esc(&origin.host),
                origin.pid,
                esc(&origin.tool_version)
            ),
        ));
    }
    for (k, v) in rows {
        let _ = write!(o, "<tr><th>{k}</th><td>{v}</td></tr>");
    }
    o.push_str("</table>\n<p>Times are from the start (+s).</p>\n");

    o.push_str("<h2>Decisions</h2>\n<table><tr><th>t</th><th>decision</th><th>reason and figures</th></tr>");
    for d in &r.decisions {
        let class = if matches!(
            d.kind,
            "rollback" | "node_failed" | "abort_requested" | "rollback_requested" | "suspended"
        ) {
            "bad"
        } else {
            ""
        };
        let _ = write!(
            o,
            "<tr><td class=\"n\">{}</td><td class=\"{class}\">{}</td><td>{}</td></tr>",
            rel_time(d.t_ms),
            d.kind,
            esc(&d.text)
        );
    }
    o.push_str("</table>\n");

    o.push_str("<h2>Pre-flight gates</h2>\n");
    match &r.gates {
        None => {
            o.push_str("<p>No gate was checked (the run was refused before its preflight).</p>\n")
        }
        Some(g) => {
            o.push_str("<table><tr><th>gate</th><th>verdict</th><th>reason</th><th>forced by</th><th>why forced</th></tr>");
            for g in g {
                let (by, why) = g
                    .forced
                    .as_ref()
                    .map_or(("-".into(), "-".into()), |f| (esc(&f.by), esc(&f.reason)));
                let _ = write!(
                    o,
                    "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{by}</td><td>{why}</td></tr>",
                    esc(&g.gate),
                    class_of(&g.verdict),
                    esc(&g.verdict),
                    esc(&g.reason)
                );
            }
            o.push_str("</table>\n");
        }
    }

    o.push_str("<h2>Pre-flight snapshot</h2>\n");
    match &r.snapshot {
        None => o.push_str("<p>None journaled.</p>\n"),
        Some(s) => {
            o.push_str("<table><tr><th>node</th><th>release</th></tr>");
            for (n, v) in &s.releases {
                let _ = write!(o, "<tr><td>{}</td><td>{}</td></tr>", esc(n), opt(v));
            }
            o.push_str("</table>\n");
            if !s.config_hashes.is_empty() {
                o.push_str("<table><tr><th>config file</th><th>sha256</th></tr>");
                for (f, h) in &s.config_hashes {
                    let _ = write!(
                        o,
                        "<tr><td><code>{}</code></td><td><code>{}</code></td></tr>",
                        esc(f),
                        esc(h)
                    );
                }
                o.push_str("</table>\n");
            }
            if !s.env.is_empty() {
                o.push_str("<table><tr><th>env</th><th>value (keyed fingerprint unless env_clear)</th></tr>");
                for (k, v) in &s.env {
                    let _ = write!(
                        o,
                        "<tr><td>{}</td><td><code>{}</code></td></tr>",
                        esc(k),
                        esc(v)
                    );
                }
                o.push_str("</table>\n");
            }
        }
    }

    o.push_str("<h2>SLI checks</h2>\n");
    if r.checks.is_empty() {
        o.push_str("<p>No SLI reading was journaled.</p>\n");
    }
    for c in &r.checks {
        let _ = writeln!(
            o,
            "<h3>{} <small>({})</small></h3>",
            esc(&c.check),
            esc(&limit_words(c))
        );
        o.push_str(&svg::chart(c, &r.windows));
        o.push_str("\n<table><tr><th>t</th><th>value</th><th>samples</th><th>baseline</th><th>verdict</th></tr>");
        for p in &c.points {
            let flag = match (&p.error, &p.verdict, p.over_limit) {
                (Some(e), ..) => esc(e),
                (None, Some(v), _) => format!(
                    "<span class=\"{}\" title=\"{}\">{}</span>",
                    if v == "breach" { "bad" } else { "" },
                    esc(p.judged.as_deref().unwrap_or("")),
                    esc(v)
                ),
                (None, None, true) => "<span class=\"bad\">past the limit</span>".into(),
                (None, None, false) => String::new(),
            };
            let _ = write!(
                o,
                "<tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{flag}</td></tr>",
                rel_time(p.t_ms),
                p.value.map_or("no data".into(), num),
                p.samples,
                p.baseline.map_or("-".into(), num)
            );
        }
        o.push_str("</table>\n");
    }

    if let Some(rb) = &r.rollback {
        o.push_str("<h2>Rollback</h2>\n<ul>");
        let _ = write!(
            o,
            "<li>Cause: {}</li><li>Restored: {}</li>",
            rb.cause
                .as_deref()
                .map_or("not known from the journal (see the decisions)".into(), esc),
            if rb.restored.is_empty() {
                "no node".into()
            } else {
                esc(&rb.restored.join(", "))
            }
        );
        if rb.not_reversed.is_empty() {
            let _ = write!(
                o,
                "<li>Not reversed: {}</li>",
                if r.run.rollout_known {
                    "nothing"
                } else {
                    "unknown (the journal does not record the rollout)"
                }
            );
        }
        for n in &rb.not_reversed {
            let _ = write!(o, "<li class=\"bad\">Not reversed: {}</li>", esc(n));
        }
        o.push_str("</ul>\n");
    }

    o.push_str("<h2>Client-visible outcome</h2>\n<ul>");
    if r.clients.exposure.is_empty() {
        let _ = write!(
            o,
            "<li>No node served release {} to clients.</li>",
            esc(&run.release)
        );
    }
    for e in &r.clients.exposure {
        let _ = write!(o, "<li>{}</li>", esc(&exposure_text(&run.release, e)));
    }
    for w in &r.clients.worst {
        let _ = write!(o, "<li>{}</li>", esc(w));
    }
    let _ = writeln!(o, "<li>Note: {}.</li></ul>", esc(r.clients.note));

    o.push_str("<h2>Steps</h2>\n");
    for n in &r.nodes {
        let _ = writeln!(
            o,
            "<h3>{} <small>{} · {} · {}</small></h3>",
            esc(&n.node),
            if run.rollout_known {
                group_name(n.group)
            } else {
                "group unknown".into()
            },
            esc(&super::md::releases(n)),
            esc(&n.status)
        );
        steps(&mut o, &n.steps);
    }
    if !r.run_steps.is_empty() {
        o.push_str("<h3>The run</h3>\n");
        steps(&mut o, &r.run_steps);
    }
    o.push_str("</body></html>\n");
    o
}

fn steps(o: &mut String, rows: &[StepRow]) {
    if rows.is_empty() {
        o.push_str("<p>No step.</p>\n");
        return;
    }
    o.push_str("<table><tr><th>t</th><th>step</th><th>release</th><th>tries</th><th>took</th><th>result</th><th>detail</th></tr>");
    for s in rows {
        let _ = write!(
            o,
            "<tr><td class=\"n\">{}</td><td title=\"{}\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
            rel_time(s.t_ms),
            esc(&s.reason),
            esc(&s.step),
            opt(&s.version),
            s.tries,
            duration(s.duration_ms),
            class_of(s.result),
            s.result,
            esc(&s.detail)
        );
    }
    o.push_str("</table>\n");
}
