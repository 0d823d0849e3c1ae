//! `[rollback]`: what triggers a rollback (`health` always, `sli`
//! optionally), and the last-known-good release as an artifact.

use super::reader::{did_you_mean, Keys, Reader};
use super::Release;
use crate::diag::Severity;
use crate::names::check_version;
use std::path::Path;
use toml_span::value::Table;
use toml_span::Span;

const KEYS: &[&str] = &["on", "artifact", "version", "sha256", "on_post_failure"];

/// What `[rollback]` says.
#[derive(Debug, Default)]
pub(super) struct Rollback {
    /// The triggers: `health`, `sli`.
    pub on: Vec<String>,
    /// The last-known-good release, for nodes that no longer keep it.
    pub release: Option<Release>,
    /// What a failed `[[post]]` task does.
    pub on_post_failure: glidepath_core::PostFailurePolicy,
}

pub(super) fn read(r: &mut Reader, root: &Table<'_>, dir: &Path) -> Option<Rollback> {
    if !root.contains_key("rollback") {
        r.missing_section(
            "the plan has no rollback path: missing [rollback] section",
            "add [rollback] with on = [\"health\", \"sli\"]: glidepath refuses a rollout it cannot undo",
        );
        return None;
    }
    let (t, _) = r.section(root, "rollback", Keys::Only(KEYS))?;
    let head = Span::new(0, 0);
    let mut out = Rollback::default();
    let a = r.str(t, "artifact", "\"dist/api-1.0.9\"");
    let v = r.str(t, "version", "\"1.0.9\"");
    let h = r.str(t, "sha256", "\"<64 hex digits>\"");
    match (a, v, h) {
        (None, None, None) => {}
        (Some((a, asp)), Some((v, vsp)), Some((h, hsp))) => {
            let p = dir.join(&a);
            if let Err(why) = check_version(&v) {
                r.err(
                    vsp,
                    format!("invalid version: {why}"),
                    "not a version",
                    Some("the last-known-good release's version, such as \"1.0.9\"".into()),
                );
            } else if !p.exists() {
                r.err(
                    asp,
                    format!("rollback artifact `{a}` not found"),
                    format!("looked for {}", p.display()),
                    None,
                );
            } else if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
                r.err(hsp, "`sha256` must be 64 hex digits", "not a sha256", None);
            } else {
                out.release = Some(Release {
                    version: v,
                    artifact: p,
                    sha256: h.to_lowercase(),
                });
            }
        }
        _ => r.err(
            t.get("artifact")
                .or(t.get("version"))
                .or(t.get("sha256"))
                .map_or(head, |x| x.span),
            "a rollback artifact needs `artifact`, `version` and `sha256`",
            "incomplete",
            Some(
                "the last-known-good release, for nodes that no longer keep it in releases/".into(),
            ),
        ),
    }
    if let Some((v, s)) = r.str(t, "on_post_failure", "\"hold\"") {
        out.on_post_failure = match v.as_str() {
            "rollback" => glidepath_core::PostFailurePolicy::Rollback,
            "hold" => glidepath_core::PostFailurePolicy::Hold,
            _ => {
                r.err(
                    s,
                    format!("unknown `on_post_failure` \"{v}\""),
                    "expected rollback or hold",
                    Some("rollback: restore every node's previous release; hold: wait for a person (`promote` accepts, `rollback` restores)".into()),
                );
                Default::default()
            }
        };
    }
    let list = r
        .str_list(t, "on", "[\"health\", \"sli\"]")
        .unwrap_or_else(|| vec![("health".into(), head), ("sli".into(), head)]);
    for (o, s) in list {
        if !["health", "sli"].contains(&o.as_str()) {
            r.err(
                s,
                format!("unknown rollback trigger `{o}`"),
                "not a trigger",
                Some(
                    did_you_mean(&o, ["health", "sli"])
                        .unwrap_or_else(|| "triggers: \"health\", \"sli\"".into()),
                ),
            );
        } else {
            out.on.push(o);
        }
    }
    if !out.on.iter().any(|o| o == "health")
        && r.diags
            .iter()
            .all(|d| d.severity != Severity::Error || !d.message.contains("rollback trigger"))
    {
        let s = t.get("on").map(|v| v.span).unwrap_or(head);
        r.err(s, "rollback.on must include \"health\"", "a node failing its health check would be left broken", Some("on = [\"health\", \"sli\"]; leave out \"sli\" to pause for a person on an SLI breach instead".into()));
    }
    Some(out)
}
