//! `[sli]`: where the SLIs come from (each node's `/metrics`, or
//! Prometheus with its auth), what a metrics failure means, and the checks
//! (`plan/checks.rs`); and how `[sli]` and `[strategy] sli_window` must
//! agree.

use super::reader::{did_you_mean, Keys, Reader};
use super::{checks, Auth, SecretRef, SliCfg, SliSource, Strategy};
use crate::template::NODE_PLACEHOLDERS;
use glidepath_core::IncidentPolicy;
use std::path::Path;
use std::time::Duration;
use toml_span::value::Table;
use toml_span::Span;

const KEYS: &[&str] = &[
    "source",
    "url",
    "timeout",
    "on_error",
    "check",
    "alpha",
    "baseline",
    "on_incident",
    "recent",
];
/// The prometheus source's own keys: its auth.
const PROMETHEUS_KEYS: &[&str] = &[
    "bearer_token_env",
    "bearer_token_file",
    "basic_user",
    "basic_password_env",
    "basic_password_file",
];

pub(super) fn read(r: &mut Reader, root: &Table<'_>, dir: &Path) -> Option<SliCfg> {
    let (t, at) = r.section(root, "sli", Keys::ByReader)?;
    let src = r.str(t, "source", "\"scrape\"");
    let prom = src.as_ref().is_some_and(|s| s.0 == "prometheus");
    let mut allowed = KEYS.to_vec();
    if prom {
        allowed.extend(PROMETHEUS_KEYS);
    }
    r.known_keys(
        t,
        &format!(
            "[sli] (source = \"{}\")",
            if prom { "prometheus" } else { "scrape" }
        ),
        &allowed,
    );
    if let Some((s, span)) = &src {
        if s != "scrape" && s != "prometheus" {
            r.err(
                *span,
                format!("unknown SLI source `{s}`"),
                "unknown source",
                Some(
                    did_you_mean(s, ["scrape", "prometheus"]).unwrap_or_else(|| {
                        "sources: \"scrape\" (each node's /metrics), \"prometheus\" (PromQL)".into()
                    }),
                ),
            );
        }
    }
    let source = if prom {
        prometheus(r, t, at, dir)
    } else {
        let url = r
            .template_str(t, "url", "\"http://{address}/metrics\"", NODE_PLACEHOLDERS)
            .map(|x| x.0);
        Some(SliSource::Scrape {
            url: url.unwrap_or_else(|| "http://{address}/metrics".into()),
        })
    };
    let timeout = r.duration(
        t,
        "timeout",
        Some(Duration::from_secs(if prom { 5 } else { 2 })),
    );
    let pause_on_error = match r.str(t, "on_error", "\"pause\"") {
        None => true,
        Some((p, s)) => match p.as_str() {
            "pause" => true,
            "rollback" => false,
            _ => {
                r.err(s, format!("unknown `on_error` \"{p}\""), "expected pause or rollback", Some("\"pause\" waits for the metrics source to answer again, then watches a full window; \"rollback\" treats it as a failure".into()));
                true
            }
        },
    };
    let on_incident = match r.str(t, "on_incident", "\"pause\"") {
        None => IncidentPolicy::Pause,
        Some((p, s)) => match p.as_str() {
            "pause" => IncidentPolicy::Pause,
            "rollback" => IncidentPolicy::Rollback,
            _ => {
                r.err(s, format!("unknown `on_incident` \"{p}\""), "expected pause or rollback", Some("\"pause\" waits while the canary and its baseline are both past a limit (a fleet-wide incident), then goes on; \"rollback\" rolls the canary back".into()));
                IncidentPolicy::Pause
            }
        },
    };
    let alpha = match r.num(t, "alpha") {
        None => 0.01,
        Some((a, s)) => {
            if !(a > 0.0 && a <= 0.2) {
                r.err(s, format!("alpha {a} is out of range"), "must be above 0 and at most 0.2", Some("alpha is the chance of ever calling a good canary a regression: 0.01 means 1 %".into()));
            }
            a
        }
    };
    let recent = r.duration(t, "recent", Some(crate::drivers::RECENT));
    if let (Some(d), Some(v)) = (recent, t.get("recent")) {
        if d < Duration::from_secs(1) {
            r.err(v.span, "`recent` is shorter than 1s", "too short", Some("the values checked against max/min span the last `recent`: a few scrape intervals at least, e.g. \"1m\"".into()));
        }
    }
    let baseline = r
        .str_list(t, "baseline", "[\"api-5\", \"api-6\"]")
        .map(|l| l.into_iter().map(|x| x.0).collect());
    let (checks, probe_checks) = checks::read(r, t, at, prom, dir);
    Some(SliCfg {
        source: source?,
        timeout: timeout?,
        checks,
        pause_on_error,
        alpha,
        baseline,
        on_incident,
        recent: recent?,
        probe_checks,
    })
}

/// `source = "prometheus"`: the URL, and bearer or basic auth whose
/// secrets come from the environment or a file.
fn prometheus(r: &mut Reader, t: &Table<'_>, at: Span, dir: &Path) -> Option<SliSource> {
    let url = r
        .req_str(t, at, "[sli]", "url", "\"http://prometheus:9090\"")
        .map(|x| x.0);
    let secret = |r: &mut Reader, env_key: &str, file_key: &str| -> Option<SecretRef> {
        let env = r.str(t, env_key, "\"PROM_TOKEN\"");
        let file = r.str(t, file_key, "\"/etc/glidepath/prom-token\"");
        match (env, file) {
            (Some(_), Some((_, s))) => {
                r.err(
                    s,
                    format!("`{env_key}` and `{file_key}` both set"),
                    "choose one",
                    Some("a secret comes from one place: an environment variable or a file".into()),
                );
                None
            }
            (Some((e, _)), None) => Some(SecretRef::Env(e)),
            (None, Some((f, _))) => Some(SecretRef::File(dir.join(f))),
            (None, None) => None,
        }
    };
    let bearer = secret(r, "bearer_token_env", "bearer_token_file");
    let user = r.str(t, "basic_user", "\"glidepath\"");
    let password = secret(r, "basic_password_env", "basic_password_file");
    let auth = match (bearer, user, password) {
        (Some(b), None, None) => Some(Auth::Bearer(b)),
        (None, Some((u, _)), Some(p)) => Some(Auth::Basic {
            user: u,
            password: p,
        }),
        (None, None, None) => None,
        (None, Some((_, s)), None) => {
            r.err(
                s,
                "`basic_user` without a password",
                "no basic_password_env/_file",
                Some(
                    "add basic_password_env = \"PROM_PASSWORD\" (the value is never logged)".into(),
                ),
            );
            None
        }
        (None, None, Some(_)) => {
            r.err(
                at,
                "a basic-auth password without `basic_user`",
                "no user",
                None,
            );
            None
        }
        (Some(_), _, _) => {
            r.err(
                at,
                "both bearer and basic auth configured",
                "choose one",
                None,
            );
            None
        }
    };
    url.map(|url| SliSource::Prometheus { url, auth })
}

/// `[sli]` and `[strategy] sli_window` go together, and the window must
/// hold at least one probe.
pub(super) fn check_window(
    r: &mut Reader,
    root: &Table<'_>,
    sli: Option<&SliCfg>,
    strategy: &Strategy,
) {
    let head = Span::new(0, 0);
    let strategy_t = root.get("strategy").and_then(|v| v.as_table());
    let span_of = |key: &str| strategy_t.and_then(|t| t.get(key)).map(|v| v.span);
    let (window_span, probe_span) = (span_of("sli_window"), span_of("probe_interval"));
    match (sli, strategy.sli_window) {
        (Some(_), None) if root.contains_key("strategy") && window_span.is_none() => {
            let at = root.get("strategy").map(|v| v.span).unwrap_or(head);
            r.missing(
                at,
                "[strategy]",
                "sli_window",
                "\"10m\"  # how long to watch the canary's SLIs",
            );
        }
        (None, Some(_)) if !root.contains_key("sli") => {
            r.err(
                window_span.unwrap_or(head),
                "`sli_window` is set but the plan has no [sli] checks",
                "nothing to watch",
                Some("add [sli] with at least one [[sli.check]], or remove sli_window".into()),
            );
        }
        (None, _) if strategy.batch_bake.is_some() || strategy.watch_after.is_some() => {
            let key = if strategy.watch_after.is_some() {
                "watch_after"
            } else {
                "batch_bake"
            };
            r.err(
                span_of(key).unwrap_or(head),
                format!("`{key}` is set but the plan has no [sli] checks"),
                "nothing to watch",
                Some("add [sli] with at least one [[sli.check]], or remove it".into()),
            );
        }
        (Some(_), Some(w)) if strategy.probe_interval > w => {
            r.err(probe_span.or(window_span).unwrap_or(head), "`probe_interval` is longer than `sli_window`", "no probe would run inside the window", Some("probe several times per window, e.g. sli_window = \"10m\", probe_interval = \"30s\"".into()));
        }
        _ => {}
    }
}

/// `[sli] baseline` names nodes of the fleet outside the canary group, and
/// a compare check has a baseline to compare with.
pub(super) fn check_baseline(
    r: &mut Reader,
    root: &Table<'_>,
    sli: Option<&SliCfg>,
    nodes: &[super::Node],
    strategy: &Strategy,
) {
    let Some(sli) = sli else { return };
    let sli_t = root.get("sli").and_then(|v| v.as_table());
    let at = sli_t
        .and_then(|t| t.get("baseline"))
        .map(|v| v.span)
        .or_else(|| root.get("sli").map(|v| v.span))
        .unwrap_or(Span::new(0, 0));
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    for b in sli.baseline.iter().flatten() {
        if !names.contains(&b.as_str()) {
            let hint = did_you_mean(b, names.iter().copied())
                .unwrap_or_else(|| "baseline nodes are nodes of [fleet]".into());
            r.err(
                at,
                format!("baseline node `{b}` is not in the fleet"),
                "unknown node",
                Some(hint),
            );
        } else if strategy.canary.contains(b) {
            r.err(
                at,
                format!("baseline node `{b}` is a canary"),
                "a canary cannot be its own baseline",
                Some("list nodes that stay on the old release while the window runs".into()),
            );
        }
    }
    let baseline = match &sli.baseline {
        Some(b) => b.len(),
        None => nodes.len().saturating_sub(strategy.canary.len()),
    };
    if baseline == 0 {
        if let Some(c) = sli.checks.iter().find(|c| c.spec.compare.is_some()) {
            r.err(at, format!("check `{}` compares the canary with its baseline, but no node is left outside the canary group", c.spec.name), "no baseline", Some("keep at least one node out of `canary`, or drop compare = \"baseline\"".into()));
        }
    }
}
