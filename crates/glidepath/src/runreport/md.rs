//! The report as Markdown: tables a change ticket renders. Every journaled
//! text goes through [`cell`] (no `|`, no line break, no raw HTML).

use super::{
    duration, limit_words, num, rel_time, utc, CheckSeries, NodeReport, RunReport, StepRow,
};
use std::fmt::Write as _;

/// A journaled text made safe for a table cell (or a heading, a list item).
pub(crate) fn cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let chars: Vec<char> = s.chars().collect();
    let word = |i: Option<usize>| {
        i.and_then(|i| chars.get(i))
            .is_some_and(|c| c.is_alphanumeric())
    };
    for (i, &c) in chars.iter().enumerate() {
        match c {
            // inside a word (`rolled_back`) an underscore opens nothing
            '_' if word(i.checked_sub(1)) && word(Some(i + 1)) => out.push(c),
            '|' => out.push_str("\\|"),
            '\\' => out.push_str("\\\\"),
            // no tag can open: no raw HTML reaches a renderer
            '<' => out.push_str("&lt;"),
            // nor an entity, emphasis, code, a link or an image
            '&' => out.push_str("&amp;"),
            // a quote or a heading opens only at the start of a line
            '>' | '#' if i > 0 => out.push(c),
            '`' | '*' | '_' | '[' | ']' | '!' | '~' | '>' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '\r' | '\n' => out.push(' '),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn opt(v: &Option<String>) -> String {
    v.as_deref().map_or("-".into(), cell)
}

pub fn render(r: &RunReport) -> String {
    let mut o = String::new();
    let run = &r.run;
    let _ = writeln!(o, "# Run report: {}\n", cell(&run.run_id));
    let _ = writeln!(
        o,
        "**{}** — {}\n",
        cell(&r.state_words()),
        cell(&run.reason)
    );
    o.push_str("| | |\n|---|---|\n");
    let rows = [
        ("Run", cell(&run.run_id)),
        ("Fleet", cell(&run.fleet)),
        ("Release", cell(&run.release)),
        ("Plan", cell(&run.plan_path)),
        ("Plan sha256", cell(&run.plan_sha256)),
        ("Started (UTC)", utc(run.started_at)),
        ("Duration", duration(run.duration_ms)),
        ("Run by", cell(&r.run_by())),
        ("Groups", cell(&groups(r))),
    ];
    for (k, v) in rows {
        let _ = writeln!(o, "| {k} | {v} |");
    }
    for origin in r.origins.iter().filter(|o| o.resumed) {
        let _ = writeln!(
            o,
            "| Resumed at {} | {}@{} (pid {}, glidepath {}) |",
            rel_time(origin.t_ms),
            cell(&origin.user),
            cell(&origin.host),
            origin.pid,
            cell(&origin.tool_version)
        );
    }
    o.push_str("\nTimes are from the start (`+s`).\n");

    o.push_str("\n## Decisions\n\n| t | decision | reason and figures |\n|---|---|---|\n");
    for d in &r.decisions {
        let _ = writeln!(
            o,
            "| {} | {} | {} |",
            rel_time(d.t_ms),
            d.kind,
            cell(&d.text)
        );
    }

    o.push_str("\n## Pre-flight gates\n\n");
    match &r.gates {
        None => o.push_str("No gate was checked (the run was refused before its preflight).\n"),
        Some(g) => {
            o.push_str(
                "| gate | verdict | reason | forced by | why forced |\n|---|---|---|---|---|\n",
            );
            for g in g {
                let (by, why) = g
                    .forced
                    .as_ref()
                    .map_or(("-".into(), "-".into()), |f| (cell(&f.by), cell(&f.reason)));
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {by} | {why} |",
                    cell(&g.gate),
                    cell(&g.verdict),
                    cell(&g.reason)
                );
            }
        }
    }

    o.push_str("\n## Pre-flight snapshot\n\n");
    match &r.snapshot {
        None => o.push_str("None journaled.\n"),
        Some(s) => {
            o.push_str("| node | release |\n|---|---|\n");
            for (n, v) in &s.releases {
                let _ = writeln!(o, "| {} | {} |", cell(n), opt(v));
            }
            if !s.config_hashes.is_empty() {
                o.push_str("\n| config file | sha256 |\n|---|---|\n");
                for (f, h) in &s.config_hashes {
                    let _ = writeln!(o, "| {} | {} |", cell(f), cell(h));
                }
            }
            if !s.env.is_empty() {
                o.push_str("\n| env | value (keyed fingerprint unless `env_clear`) |\n|---|---|\n");
                for (k, v) in &s.env {
                    let _ = writeln!(o, "| {} | {} |", cell(k), cell(v));
                }
            }
        }
    }

    o.push_str("\n## SLI checks\n");
    if r.checks.is_empty() {
        o.push_str("\nNo SLI reading was journaled.\n");
    }
    for c in &r.checks {
        check(&mut o, r, c);
    }

    if let Some(rb) = &r.rollback {
        o.push_str("\n## Rollback\n\n");
        let _ = writeln!(
            o,
            "- Cause: {}",
            rb.cause.as_deref().map_or(
                "not known from the journal (see the decisions)".into(),
                cell
            )
        );
        let _ = writeln!(
            o,
            "- Restored: {}",
            if rb.restored.is_empty() {
                "no node".into()
            } else {
                cell(&rb.restored.join(", "))
            }
        );
        if rb.not_reversed.is_empty() {
            let _ = writeln!(
                o,
                "- Not reversed: {}",
                if r.run.rollout_known {
                    "nothing"
                } else {
                    "unknown (the journal does not record the rollout)"
                }
            );
        }
        for n in &rb.not_reversed {
            let _ = writeln!(o, "- Not reversed: {}", cell(n));
        }
    }

    o.push_str("\n## Client-visible outcome\n\n");
    if r.clients.exposure.is_empty() {
        let _ = writeln!(
            o,
            "- No node served release {} to clients.",
            cell(&run.release)
        );
    }
    for e in &r.clients.exposure {
        let _ = writeln!(o, "- {}", cell(&exposure_text(&run.release, e)));
    }
    for w in &r.clients.worst {
        let _ = writeln!(o, "- {}", cell(w));
    }
    let _ = writeln!(o, "- Note: {}.", r.clients.note);

    o.push_str("\n## Steps\n");
    for n in &r.nodes {
        node(&mut o, r, n);
    }
    if !r.run_steps.is_empty() {
        o.push_str("\n### The run\n\n");
        steps(&mut o, &r.run_steps);
    }
    o
}

/// `canary node-1 · batch 1: node-2, node-3`, or unknown.
pub(crate) fn groups(r: &RunReport) -> String {
    if !r.run.rollout_known {
        return "unknown (not journaled by the glidepath that ran it)".into();
    }
    r.run
        .groups
        .iter()
        .enumerate()
        .map(|(i, g)| format!("{}: {}", group_name(Some(i)), g.join(", ")))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// `2 → 3 → 2`: the releases a node ran (`unknown` before `Started`).
pub(crate) fn releases(n: &NodeReport) -> String {
    if n.path.is_empty() {
        return "release unknown".into();
    }
    n.path.join(" → ")
}

pub(crate) fn group_name(g: Option<usize>) -> String {
    match g {
        Some(0) => "canary".into(),
        Some(i) => format!("batch {i}"),
        None => "group unknown".into(),
    }
}

pub(crate) fn exposure_text(release: &str, e: &super::Exposure) -> String {
    match e.to_ms {
        Some(to) => format!(
            "{} served {release} from {} to {} ({})",
            e.node,
            rel_time(e.from_ms),
            rel_time(to),
            duration(to - e.from_ms)
        ),
        None => format!(
            "{} serves {release} since {} (still at the journal's end)",
            e.node,
            rel_time(e.from_ms)
        ),
    }
}

fn check(o: &mut String, r: &RunReport, c: &CheckSeries) {
    let _ = writeln!(o, "\n### {} ({})\n", cell(&c.check), limit_words(c));
    if !r.windows.is_empty() {
        let starts: Vec<String> = r.windows.iter().map(|t| rel_time(*t)).collect();
        let _ = writeln!(o, "Window started at {}.\n", starts.join(", "));
    }
    o.push_str("| t | value | samples | baseline | verdict |\n|---|---|---|---|---|\n");
    for p in &c.points {
        let value = p.value.map_or("no data".into(), num);
        let flag = match (&p.error, &p.verdict, p.over_limit) {
            (Some(e), ..) => cell(e),
            (None, Some(v), _) if v == "breach" => "**breach**".into(),
            (None, Some(v), _) => cell(v),
            (None, None, true) => "**past the limit**".into(),
            (None, None, false) => String::new(),
        };
        let _ = writeln!(
            o,
            "| {} | {value} | {} | {} | {flag} |",
            rel_time(p.t_ms),
            p.samples,
            p.baseline.map_or("-".into(), num)
        );
    }
}

fn node(o: &mut String, r: &RunReport, n: &NodeReport) {
    let _ = writeln!(
        o,
        "\n### {} — {} · {} · {}\n",
        cell(&n.node),
        if r.run.rollout_known {
            group_name(n.group)
        } else {
            "group unknown".into()
        },
        cell(&releases(n)),
        cell(&n.status)
    );
    if n.steps.is_empty() {
        o.push_str("No step.\n");
    } else {
        steps(o, &n.steps);
    }
}

fn steps(o: &mut String, rows: &[StepRow]) {
    o.push_str(
        "| t | step | release | tries | took | result | detail |\n|---|---|---|---|---|---|---|\n",
    );
    for s in rows {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} |",
            rel_time(s.t_ms),
            cell(&s.step),
            opt(&s.version),
            s.tries,
            duration(s.duration_ms),
            s.result,
            cell(&s.detail)
        );
    }
}
