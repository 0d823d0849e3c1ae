//! `[strategy]`: the canary, the batches, the pause points, the SLI window
//! and probe interval, the drain timeout and its policy, and the `retry`
//! budget for infrastructure faults.

use super::reader::{did_you_mean, sp, Keys, Reader};
use super::{Node, Strategy};
use crate::diag::{Diag, Severity};
use glidepath_core::{plan_groups, BatchSize, DrainTimeoutPolicy, FailureBudget, RetrySpec};
use std::time::Duration;
use toml_span::value::{Table, ValueInner};

const KEYS: &[&str] = &[
    "canary",
    "batch_size",
    "max_unavailable",
    "sli_window",
    "probe_interval",
    "batch_bake",
    "watch_after",
    "pauses",
    "drain_timeout",
    "on_drain_timeout",
    "retry",
    "max_failed_nodes",
];

impl Default for Strategy {
    /// What a `[strategy]` that only names its canary means.
    fn default() -> Strategy {
        Strategy {
            canary: vec![],
            batch: BatchSize::Count(1),
            max_unavailable: None,
            sli_window: None,
            probe_interval: Duration::from_secs(10),
            batch_bake: None,
            watch_after: None,
            max_failed_nodes: FailureBudget::default(),
            pause_after: vec![],
            drain_timeout: Duration::from_secs(30),
            on_drain_timeout: DrainTimeoutPolicy::Fail,
            retry: RetrySpec::default(),
        }
    }
}

pub(super) fn read(r: &mut Reader, root: &Table<'_>, nodes: &[Node]) -> Option<Strategy> {
    let (t, at) = r.required_section(
        root,
        "strategy",
        Keys::Only(KEYS),
        "add [strategy] with canary = [\"api-1\"]",
    )?;
    let mut strategy = Strategy::default();
    let node_names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    if let Some((rt, _)) = r.table(t, "retry") {
        strategy.retry = retry(r, rt);
    }
    match r.str_list(t, "canary", "[\"api-1\"]") {
        None if !t.contains_key("canary") => r.missing(
            at,
            "[strategy]",
            "canary",
            "[\"api-1\"]  # the node(s) that get the release first",
        ),
        None => {}
        Some(list) if list.is_empty() => r.err(
            t.get("canary").map(|v| v.span).unwrap_or(at),
            "no canary node",
            "empty",
            Some("name at least one fleet node: the canary gets the release first".into()),
        ),
        Some(list) => {
            for (c, s) in list {
                if !nodes.is_empty() && !node_names.contains(&c.as_str()) {
                    let hint = did_you_mean(&c, node_names.iter().copied())
                        .unwrap_or_else(|| format!("fleet nodes: {}", node_names.join(", ")));
                    r.err(
                        s,
                        format!("canary node `{c}` is not in the fleet"),
                        "not in [fleet].nodes",
                        Some(hint),
                    );
                } else if strategy.canary.contains(&c) {
                    r.err(
                        s,
                        format!("canary node `{c}` listed twice"),
                        "duplicate",
                        None,
                    );
                } else {
                    strategy.canary.push(c);
                }
            }
            if !nodes.is_empty() && strategy.canary.len() == nodes.len() && nodes.len() > 1 {
                let s = t.get("canary").map(|v| v.span).unwrap_or(at);
                r.diags.push(Diag {
                    severity: Severity::Warning,
                    message: "every node is a canary: there are no peers to protect".into(),
                    span: Some(sp(s)),
                    label: "all nodes".into(),
                    hint: Some("keep the canary a small part of the fleet".into()),
                });
            }
        }
    }
    if let Some(v) = t.get("batch_size") {
        match v.as_ref() {
            ValueInner::Integer(i) if *i >= 1 => strategy.batch = BatchSize::Count(*i as usize),
            ValueInner::Integer(i) => r.err(
                v.span,
                format!("`batch_size` = {i} is out of range"),
                "must be at least 1",
                Some("for example: batch_size = 2 or batch_size = \"25%\"".into()),
            ),
            ValueInner::String(s) => match s.strip_suffix('%').map(|p| p.trim().parse::<u32>()) {
                Some(Ok(p)) if (1..=100).contains(&p) => {
                    strategy.batch = BatchSize::Percent(p as u8)
                }
                Some(_) => r.err(
                    v.span,
                    format!("`batch_size` = \"{s}\" is out of range"),
                    "a percentage from 1% to 100%",
                    Some("for example: batch_size = \"25%\"".into()),
                ),
                None => r.err(
                    v.span,
                    format!("invalid `batch_size` \"{s}\""),
                    "not a count or a percentage",
                    Some(
                        "write a count (batch_size = 2) or a percentage (batch_size = \"25%\")"
                            .into(),
                    ),
                ),
            },
            _ => r.type_err(v, "batch_size", "an integer or a percentage string", "2"),
        }
    }
    if let Some((m, _)) = r.int(t, "max_unavailable", 1, "1") {
        strategy.max_unavailable = Some(m as usize);
    }
    strategy.sli_window = r.duration(t, "sli_window", None);
    strategy.batch_bake = r.duration(t, "batch_bake", None);
    strategy.watch_after = r.duration(t, "watch_after", None);
    if let Some(d) = r.duration(t, "probe_interval", Some(strategy.probe_interval)) {
        strategy.probe_interval = d;
    }
    if let Some(d) = r.duration(t, "drain_timeout", Some(strategy.drain_timeout)) {
        strategy.drain_timeout = d;
    }
    if let Some((p, s)) = r.str(t, "on_drain_timeout", "\"fail\"") {
        match p.as_str() {
            "fail" => strategy.on_drain_timeout = DrainTimeoutPolicy::Fail,
            "proceed" => strategy.on_drain_timeout = DrainTimeoutPolicy::Proceed,
            _ => r.err(
                s,
                format!("unknown `on_drain_timeout` \"{p}\""),
                "expected \"fail\" or \"proceed\"",
                did_you_mean(&p, ["fail", "proceed"]),
            ),
        }
    }
    if let Some(v) = t.get("max_failed_nodes") {
        strategy.max_failed_nodes = failure_budget(r, v, nodes.len(), &strategy.canary);
    }
    let pauses = r
        .str_list(t, "pauses", "[\"after-canary\"]")
        .unwrap_or_default();
    strategy.pause_after = pause_points(r, pauses, nodes, &strategy);
    Some(strategy)
}

/// `pauses = ["after-canary", "after-batch-N"]` as group indexes: they
/// need the group count, so the fleet and the batch size.
fn pause_points(
    r: &mut Reader,
    pauses: Vec<(String, toml_span::Span)>,
    nodes: &[Node],
    strategy: &Strategy,
) -> Vec<usize> {
    let groups = plan_groups(
        &nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>(),
        &strategy.canary,
        strategy.batch,
    );
    let mut out = Vec::new();
    for (p, s) in pauses {
        let idx = if p == "after-canary" {
            Some(0)
        } else if let Some(n) = p
            .strip_prefix("after-batch-")
            .and_then(|n| n.parse::<usize>().ok())
        {
            if n == 0 || n >= groups.len() {
                r.err(
                    s,
                    format!("pause `{p}`: there is no batch {n}"),
                    format!(
                        "this plan has {} batch(es) after the canary",
                        groups.len().saturating_sub(1)
                    ),
                    None,
                );
                None
            } else {
                Some(n)
            }
        } else {
            r.err(
                s,
                format!("unknown pause point `{p}`"),
                "not a pause point",
                Some("use \"after-canary\" or \"after-batch-N\"".into()),
            );
            None
        };
        if let Some(i) = idx {
            out.push(i);
        }
    }
    out
}

/// `max_failed_nodes = 2` or `"10%"` (of the fleet, rounded down): how many
/// batch nodes may fail, each restored on its own, before the run rolls
/// back. It must leave at least one batch node to succeed: a run where
/// every batch node failed is no success. A canary's failure always rolls
/// back.
fn failure_budget(
    r: &mut Reader,
    v: &toml_span::Value<'_>,
    fleet: usize,
    canary: &[String],
) -> FailureBudget {
    let budget = match v.as_ref() {
        ValueInner::Integer(i) if *i >= 0 => FailureBudget::Count(*i as usize),
        ValueInner::Integer(i) => {
            r.err(
                v.span,
                format!("`max_failed_nodes` = {i} is out of range"),
                "must be 0 or more",
                Some("for example: max_failed_nodes = 1 or max_failed_nodes = \"10%\" (0: any failure rolls back)".into()),
            );
            return FailureBudget::default();
        }
        ValueInner::String(s) => match s.strip_suffix('%').map(|p| p.trim().parse::<u32>()) {
            Some(Ok(p)) if p < 100 => FailureBudget::Percent(p as u8),
            Some(_) => {
                r.err(
                    v.span,
                    format!("`max_failed_nodes` = \"{s}\" is out of range"),
                    "a percentage of the fleet from 0% to 99%",
                    Some("for example: max_failed_nodes = \"10%\"".into()),
                );
                return FailureBudget::default();
            }
            None => {
                r.err(
                    v.span,
                    format!("invalid `max_failed_nodes` \"{s}\""),
                    "not a count or a percentage",
                    Some("write a count (max_failed_nodes = 1) or a percentage of the fleet (max_failed_nodes = \"10%\")".into()),
                );
                return FailureBudget::default();
            }
        },
        _ => {
            r.type_err(
                v,
                "max_failed_nodes",
                "an integer or a percentage string",
                "1",
            );
            return FailureBudget::default();
        }
    };
    if fleet == 0 {
        return budget;
    }
    let peers = fleet.saturating_sub(canary.len());
    let n = budget.resolve(fleet);
    if n > 0 && n >= peers {
        r.err(
            v.span,
            format!(
                "`max_failed_nodes` allows {n} failed node(s), but this plan has {peers} batch node(s): every one could fail and the run still succeed"
            ),
            "no batch node left to succeed",
            Some(format!(
                "keep it below the number of batch nodes (at most {}); a canary's failure always rolls back",
                peers.saturating_sub(1)
            )),
        );
    } else if n == 0 && matches!(budget, FailureBudget::Percent(p) if p > 0) {
        r.diags.push(Diag {
            severity: Severity::Warning,
            message: format!(
                "`max_failed_nodes` of a fleet of {fleet} node(s) rounds down to 0: any failure rolls back"
            ),
            span: Some(sp(v.span)),
            label: "0 nodes".into(),
            hint: Some("write a count (max_failed_nodes = 1) to tolerate one failed node".into()),
        });
    }
    budget
}

/// `[strategy] retry = { backoff = "500ms", max_backoff = "10s", deadline = "5m" }`.
fn retry(r: &mut Reader<'_>, t: &Table<'_>) -> RetrySpec {
    let def = RetrySpec::default();
    r.known_keys(
        t,
        "[strategy] retry",
        &["backoff", "max_backoff", "deadline"],
    );
    let ms = |d: Duration| d.as_millis() as u64;
    let get = |r: &mut Reader<'_>, key: &str, default: u64| {
        r.duration(t, key, Some(Duration::from_millis(default)))
            .map_or(default, ms)
    };
    let out = RetrySpec {
        backoff_ms: get(r, "backoff", def.backoff_ms),
        max_backoff_ms: get(r, "max_backoff", def.max_backoff_ms),
        deadline_ms: get(r, "deadline", def.deadline_ms),
    };
    if out.max_backoff_ms < out.backoff_ms {
        if let Some(v) = t.get("max_backoff").or_else(|| t.get("backoff")) {
            r.err(
                v.span,
                format!(
                    "`max_backoff` ({}ms) is shorter than `backoff` ({}ms)",
                    out.max_backoff_ms, out.backoff_ms
                ),
                "max_backoff < backoff",
                Some("the wait doubles from `backoff` up to `max_backoff`: e.g. retry = { backoff = \"500ms\", max_backoff = \"10s\" }".into()),
            );
        }
    }
    if out.deadline_ms < out.backoff_ms {
        if let Some(v) = t.get("deadline") {
            r.err(
                v.span,
                format!(
                    "`deadline` ({}ms) leaves no time for a retry after `backoff` ({}ms)",
                    out.deadline_ms, out.backoff_ms
                ),
                "deadline < backoff",
                Some("the deadline is how long an outage is waited out before the run stops (exit 4, resumable): e.g. deadline = \"5m\"".into()),
            );
        }
    }
    out
}
