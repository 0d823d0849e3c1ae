//! `[[gates.custom]]`: any check as a command (a change ticket approved,
//! an on-call acknowledged…): exit 0 passes, anything else fails with the
//! tail of its stderr.

use super::{tables, Context, GateResult, Reading, Verdict};
use crate::diag::Diag;
use std::time::Duration;
use toml_span::value::Table;

/// One `[[gates.custom]]` entry; its gate id is `name` with spaces as `-`.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomGate {
    pub name: String,
    /// Run by `sh -c` in the plan's directory.
    pub command: String,
    pub timeout: Duration,
}

/// Read `[[gates.custom]]`.
pub(super) fn read(r: &mut dyn Reading, t: &Table<'_>) -> Vec<CustomGate> {
    let mut out = Vec::new();
    for (ct, item_span) in tables(r, t, "custom", "name = \"change ticket approved\"") {
        r.known_keys(ct, "[[gates.custom]]", &["name", "command", "timeout"]);
        let name = r.req_str(
            ct,
            item_span,
            "[[gates.custom]]",
            "name",
            "\"change ticket approved\"",
        );
        let cmd = r.req_str(
            ct,
            item_span,
            "[[gates.custom]]",
            "command",
            "\"./scripts/ticket-approved.sh\"",
        );
        let timeout = r
            .duration(ct, "timeout", Some(Duration::from_secs(60)))
            .unwrap_or(Duration::from_secs(60));
        if let (Some((n, ns)), Some((c, _))) = (name, cmd) {
            if !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_ ".contains(c))
            {
                r.push(Diag::error(
                    format!("gate name `{n}` must be letters, digits, '-', '_' or spaces"),
                    (ns.start, ns.end),
                    "used with --force",
                ));
            }
            out.push(CustomGate {
                name: n,
                command: c,
                timeout,
            });
        }
    }
    out
}

/// The custom gates, one result each.
pub(super) async fn check(gates: &[CustomGate], cx: &Context<'_>) -> Vec<GateResult> {
    let plan_dir = cx.inputs.plan_dir.as_path();
    let mut out = Vec::new();
    for CustomGate {
        name,
        command: cmd,
        timeout,
    } in gates
    {
        let id = name.replace(' ', "-");
        out.push(
            match crate::shell::shell_output(cmd, plan_dir, *timeout).await {
                Ok(o) => GateResult::new(
                    &id,
                    Verdict::Pass,
                    format!("`{cmd}` exit 0: {}", crate::shell::tail(o.trim())),
                    None,
                ),
                Err(e) => GateResult::new(&id, Verdict::Fail, e.to_string(), None),
            },
        );
    }
    out
}
