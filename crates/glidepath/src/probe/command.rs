//! `command = "…"`: run through `crate::shell` (its own process group,
//! killed at the deadline, output bounded); exit 0 passes, and `stdout`
//! must be in its output. A command's failure is its own, never `infra`.

use super::{quote, CommandProbe, ProbeOutcome};
use std::time::Duration;

pub(super) async fn run(p: &CommandProbe, limit: Duration) -> ProbeOutcome {
    match crate::shell::shell_output(&p.command, &p.dir, limit).await {
        Err(e) => ProbeOutcome::fail(e.0, None),
        Ok(out) => {
            let out = out.trim().to_string();
            let what = format!("`{}`", crate::shell::shown(&p.command));
            match &p.stdout {
                Some(want) if !out.contains(want.as_str()) => ProbeOutcome::fail(
                    format!(
                        "{what} exited 0, but its stdout {} does not contain {want:?}",
                        quote(&out)
                    ),
                    Some(out),
                ),
                _ => ProbeOutcome::pass(format!("{what} exited 0"), Some(out)),
            }
        }
    }
}
