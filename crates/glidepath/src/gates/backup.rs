//! `[gates.backup]`: a fresh backup exists, proven by a file's age or by a
//! command's exit status.

use super::{one_table, Context, GateResult, Reading, Verdict};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml_span::value::Table;

/// `[gates.backup]`: exactly one of `file` and `command` (the parser
/// reports a plan with both or neither).
#[derive(Debug, Clone, PartialEq)]
pub struct BackupGate {
    /// A backup file whose modification time must be within `max_age`.
    pub file: Option<PathBuf>,
    /// A command (run by `sh -c` in the plan's directory) that exits 0 when
    /// a fresh backup exists.
    pub command: Option<String>,
    pub max_age: Duration,
}

/// Read `[gates.backup]`.
pub(super) fn read(r: &mut dyn Reading, t: &Table<'_>, dir: &Path) -> Option<BackupGate> {
    let (b, bat) = one_table(r, t, "backup")?;
    r.known_keys(b, "[gates.backup]", &["file", "command", "max_age"]);
    let file = r
        .str(b, "file", "\"/var/backups/db/latest.dump\"")
        .map(|x| dir.join(x.0));
    let command = r
        .str(b, "command", "\"pgbackrest info --output=json | jq -e …\"")
        .map(|x| x.0);
    if file.is_none() == command.is_none() {
        r.err(
            bat,
            "[gates.backup] needs exactly one of `file` or `command`",
            "how to prove a fresh backup",
            None,
        );
    }
    let max_age = r
        .duration(b, "max_age", Some(Duration::from_secs(24 * 3600)))
        .unwrap_or(Duration::from_secs(86400));
    Some(BackupGate {
        file,
        command,
        max_age,
    })
}

/// The backup gate.
pub(super) async fn check(g: &BackupGate, cx: &Context<'_>) -> Vec<GateResult> {
    let (file, command, max_age) = (&g.file, &g.command, &g.max_age);
    let plan_dir = cx.inputs.plan_dir.as_path();
    let age_s = humantime::format_duration(*max_age).to_string();
    vec![match (file, command) {
        (Some(f), _) => match std::fs::metadata(f).and_then(|m| m.modified()) {
            Err(e) => GateResult::new(
                "backup",
                Verdict::Fail,
                format!("no backup at {}: {e}", f.display()),
                Some("take a backup before a storage-impacting release"),
            ),
            Ok(t) => {
                let age = std::time::SystemTime::now()
                    .duration_since(t)
                    .unwrap_or_default();
                if age > *max_age {
                    GateResult::new(
                        "backup",
                        Verdict::Fail,
                        format!(
                            "{} is {} old (max {age_s})",
                            f.display(),
                            humantime::format_duration(Duration::from_secs(age.as_secs()))
                        ),
                        Some("take a fresh backup"),
                    )
                } else {
                    GateResult::new(
                        "backup",
                        Verdict::Pass,
                        format!(
                            "{} is {} old (max {age_s})",
                            f.display(),
                            humantime::format_duration(Duration::from_secs(age.as_secs()))
                        ),
                        None,
                    )
                }
            }
        },
        (None, Some(c)) => {
            match crate::shell::shell_output(c, plan_dir, Duration::from_secs(120)).await {
                Ok(o) => GateResult::new(
                    "backup",
                    Verdict::Pass,
                    format!("`{c}`: {}", crate::shell::tail(o.trim())),
                    None,
                ),
                Err(e) => GateResult::new(
                    "backup",
                    Verdict::Fail,
                    e.to_string(),
                    Some("take a fresh backup"),
                ),
            }
        }
        _ => GateResult::new("backup", Verdict::Fail, "no backup check configured", None),
    }]
}
