//! `[[pre]]` and `[[post]]`: the tasks before the first node changes and
//! after the last batch and the watch. Each does one thing (`run` a
//! command, `migrate` SQL files, a `probe`, or `compare_to` a capture),
//! with a timeout, retries, and what it declares about itself
//! (`idempotent`, `reversible = false` with a `note`).
//!
//! Migrations are read here: each file must exist, and a contract file
//! (`glidepath lint`'s post phase) is refused in `pre` and always
//! irreversible in `post`.

use super::reader::{did_you_mean, Reader};
use crate::config::{MigrationFile, SecretRef, TaskAction, TaskCfg};
use crate::names::check_node_name;
use crate::template::TASK_PLACEHOLDERS;
use glidepath_core::TaskPhase;
use std::path::Path;
use std::time::Duration;
use toml_span::value::{Table, ValueInner};
use toml_span::Span;

const KEYS: &[&str] = &[
    "name",
    "run",
    "migrate",
    "probe",
    "compare_to",
    "capture",
    "database_url_env",
    "database_url_file",
    "timeout",
    "retries",
    "retry_delay",
    "idempotent",
    "reversible",
    "note",
];

/// The actions: a task has exactly one.
const ACTIONS: &[&str] = &["run", "migrate", "probe", "compare_to"];

/// At most this many tasks per phase.
const MAX_TASKS: usize = 64;

/// At most this many files per `migrate` task.
const MAX_FILES: usize = 256;

/// Read `[[pre]]` and `[[post]]`, in order.
pub(super) fn read(r: &mut Reader, root: &Table<'_>, dir: &Path) -> Vec<TaskCfg> {
    let mut out: Vec<TaskCfg> = Vec::new();
    let mut names: Vec<(String, Span)> = Vec::new();
    for phase in [TaskPhase::Pre, TaskPhase::Post] {
        let key = phase.as_str();
        let Some(v) = root.get(key) else { continue };
        let Some(items) = v.as_array() else {
            r.type_err(
                v,
                key,
                "an array of tables",
                &format!("[[{key}]] sections, each with a `name`"),
            );
            continue;
        };
        if items.len() > MAX_TASKS {
            r.err(
                v.span,
                format!("{} [[{key}]] tasks: at most {MAX_TASKS}", items.len()),
                "too many tasks",
                None,
            );
            continue;
        }
        for (i, item) in items.iter().enumerate() {
            let Some(t) = item.as_table() else {
                r.type_err(
                    item,
                    key,
                    "a table",
                    &format!("[[{key}]] with name = \"…\""),
                );
                continue;
            };
            let section = format!("[[{key}]] #{}", i + 1);
            if let Some(task) = read_task(r, t, item.span, &section, phase, dir, &out) {
                if let Some((_, first)) = names.iter().find(|(n, _)| *n == task.name) {
                    let (l, _) = crate::diag::line_col(r.src, first.start);
                    let at = t.get("name").map_or(item.span, |v| v.span);
                    r.err(
                        at,
                        format!("two tasks are named `{}`", task.name),
                        "duplicate name",
                        Some(format!(
                            "the first is on line {l}: task names are unique across [[pre]] and [[post]] (captures and the journal refer to them)"
                        )),
                    );
                    continue;
                }
                names.push((
                    task.name.clone(),
                    t.get("name").map_or(item.span, |v| v.span),
                ));
                out.push(task);
            }
        }
    }
    out
}

fn read_task(
    r: &mut Reader,
    t: &Table<'_>,
    at: Span,
    section: &str,
    phase: TaskPhase,
    dir: &Path,
    earlier: &[TaskCfg],
) -> Option<TaskCfg> {
    r.known_keys(t, section, KEYS);
    let name = r.req_str(t, at, section, "name", "\"backup\"");
    if let Some((n, s)) = &name {
        if let Err(why) = check_node_name(n) {
            r.err(
                *s,
                format!("invalid task name: {why}"),
                "not a name",
                Some("letters, digits, `-`, `_` and `.`, such as \"expand-schema\"".into()),
            );
        }
    }
    let present: Vec<&str> = ACTIONS
        .iter()
        .copied()
        .filter(|k| t.contains_key(*k))
        .collect();
    let timeout_default = Duration::from_secs(match present.first() {
        Some(&"probe") | Some(&"compare_to") => 30,
        _ => 300,
    });
    let timeout = r.duration(t, "timeout", Some(timeout_default));
    let retries = r.int(t, "retries", 0, "2").map_or(Some(0), |(n, s)| {
        if n > 100 {
            r.err(
                s,
                format!("`retries` = {n} is too many"),
                "at most 100",
                None,
            );
            None
        } else {
            Some(n as u32)
        }
    });
    let retry_delay = r.duration(t, "retry_delay", Some(Duration::from_secs(5)));
    let flag = |r: &mut Reader, key: &str| -> Option<(bool, Span)> {
        let v = t.get(key)?;
        match v.as_bool() {
            Some(b) => Some((b, v.span)),
            None => {
                r.type_err(v, key, "true or false", "true");
                None
            }
        }
    };
    let capture = flag(r, "capture");
    let idempotent = flag(r, "idempotent");
    let reversible = flag(r, "reversible");
    let note = r.str(t, "note", "\"drops column users.legacy_name\"");
    let name = name?.0;

    let action = match present.as_slice() {
        [] => {
            let end = r.src[at.start.min(r.src.len())..]
                .find('\n')
                .map_or(at.end, |i| at.start + i);
            r.err(
                Span::new(at.start, end.max(at.start)),
                format!("{section} (`{name}`) does nothing: it needs one of run, migrate, probe, compare_to"),
                "no action",
                Some("for example: run = \"pg_dump app > /backups/app-{version}.sql\", or migrate = [\"migrations/0042_expand.sql\"]".into()),
            );
            None
        }
        [one] => match *one {
            "run" => r
                .template_str(t, "run", "\"./backup.sh\"", TASK_PLACEHOLDERS)
                .map(|(run, _)| TaskAction::Command { run }),
            "migrate" => read_migrate(r, t, at, section, phase, dir),
            "probe" => super::probe::read(
                r,
                t.get("probe").expect("present"),
                &format!("{section}.probe"),
                super::probe::Scope::Phase,
                dir,
            )
            .map(|p| TaskAction::Probe(Box::new(p))),
            _ => read_compare_to(r, t, earlier),
        },
        many => {
            let second = t.get(many[1]).map_or(at, |v| v.span);
            r.err(
                second,
                format!(
                    "{section} (`{name}`) has both `{}` and `{}`: a task does one thing",
                    many[0], many[1]
                ),
                "second action",
                Some("split it into two tasks; they run in the order written".into()),
            );
            None
        }
    };
    let action = action?;
    if let Some((true, s)) = capture {
        if !matches!(action, TaskAction::Command { .. } | TaskAction::Probe(_)) {
            r.err(
                s,
                "`capture` records what a `run` command prints or what a `probe` sees",
                "nothing to record",
                Some("capture = true goes with run = \"…\" or probe = {…}; a later task compares with compare_to = \"<this name>\"".into()),
            );
        }
    }
    for k in ["database_url_env", "database_url_file"] {
        if let (Some(v), false) = (t.get(k), matches!(action, TaskAction::Migrate { .. })) {
            r.err(
                v.span,
                format!("`{k}` is for `migrate` tasks"),
                "not a migration",
                None,
            );
        }
    }
    let contract = match &action {
        TaskAction::Migrate { files, .. } => files
            .iter()
            .filter(|f| f.contract)
            .map(|f| f.name.clone())
            .collect::<Vec<_>>(),
        _ => vec![],
    };
    let irreversible = match (reversible, contract.is_empty()) {
        (Some((true, s)), false) => {
            r.err(
                s,
                format!(
                    "`{name}` runs a contract migration ({}), which cannot be undone",
                    contract.join(", ")
                ),
                "not reversible",
                Some("remove `reversible = true`: a contract migration is always irreversible (a rollback restores the binaries, not the dropped schema)".into()),
            );
            None
        }
        (_, false) => Some(match &note {
            Some((n, _)) => n.clone(),
            None => format!("contract migration {}", contract.join(", ")),
        }),
        (Some((false, s)), true) if phase == TaskPhase::Pre => {
            r.err(
                s,
                format!("`{name}` is a [[pre]] task that cannot be undone"),
                "irreversible before the canary",
                Some("a pre task runs before the canary proves the release, and a bad canary is rolled back on its own: make the step reversible (expand-style: the old release must work with it), or move it to a [[post]] task, after the rollout and the watch".into()),
            );
            None
        }
        (Some((false, _)), true) => Some(match &note {
            Some((n, _)) => n.clone(),
            None => "declared irreversible".into(),
        }),
        _ => {
            if let Some((_, s)) = &note {
                r.err(
                    *s,
                    "`note` says what cannot be undone: it goes with `reversible = false`",
                    "no reversible = false",
                    None,
                );
            }
            None
        }
    };
    if let (Some((true, _)), Some((false, s))) = (capture, idempotent) {
        r.err(
            s,
            "a capture is repeated after a crash: it only reads",
            "capture = true",
            Some("drop `idempotent = false`: a capture cut short by a crash has recorded nothing, so it must run again (a command with side effects is a `run` task without capture)".into()),
        );
    }
    let idempotent = match idempotent {
        _ if capture.is_some_and(|c| c.0) => true,
        Some((b, _)) => b,
        // a ledger makes migrations safe to repeat; probes and comparisons
        // only look. A command is assumed unsafe to repeat unless it says so.
        None => !matches!(action, TaskAction::Command { .. }),
    };
    // a comparison repeats its capture: it gets the capture's time unless told
    let timeout = match (&action, t.contains_key("timeout")) {
        (TaskAction::CompareTo { capture, .. }, false) => earlier
            .iter()
            .find(|x| &x.name == capture)
            .map(|x| x.timeout.max(Duration::from_secs(30))),
        _ => timeout,
    };
    Some(TaskCfg {
        name,
        phase,
        action,
        capture: capture.is_some_and(|c| c.0),
        timeout: timeout?,
        attempts: retries? + 1,
        retry_delay: retry_delay?,
        idempotent,
        irreversible,
    })
}

fn read_migrate(
    r: &mut Reader,
    t: &Table<'_>,
    at: Span,
    section: &str,
    phase: TaskPhase,
    dir: &Path,
) -> Option<TaskAction> {
    let v = t.get("migrate")?;
    let files = match v.as_ref() {
        ValueInner::String(s) => vec![(s.to_string(), v.span)],
        _ => r.str_list(t, "migrate", "[\"migrations/0042_expand.sql\"]")?,
    };
    if files.is_empty() || files.len() > MAX_FILES {
        r.err(
            v.span,
            format!("`migrate` lists {} files", files.len()),
            format!("1 to {MAX_FILES} files"),
            None,
        );
        return None;
    }
    let url = match (
        r.str(t, "database_url_env", "\"DATABASE_URL\""),
        r.str(t, "database_url_file", "\"/etc/app/database-url\""),
    ) {
        (Some((e, _)), None) => Some(SecretRef::Env(e)),
        (None, Some((f, _))) => Some(SecretRef::File(dir.join(f))),
        (Some(_), Some((_, s))) => {
            r.err(
                s,
                "both `database_url_env` and `database_url_file`",
                "pick one",
                None,
            );
            None
        }
        (None, None) => {
            r.missing(
                at,
                section,
                "database_url_env",
                "\"DATABASE_URL\" (the name of the variable holding the connection URL; or database_url_file)",
            );
            None
        }
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (f, s) in files {
        let p = dir.join(&f);
        let text = match crate::files::read_text(&p, crate::files::SMALL_MAX) {
            Ok(x) => x,
            Err(e) => {
                r.err(
                    s,
                    format!("cannot read migration `{f}`: {e}"),
                    "unreadable",
                    Some(format!(
                        "looked for {} (paths are relative to the plan's directory)",
                        p.display()
                    )),
                );
                ok = false;
                continue;
            }
        };
        // a contract file: marked as one, or with a backward-incompatible
        // step `glidepath lint` finds (and no suppression with a reason)
        let marked = crate::lint::phase_of(&f, &text) == crate::lint::Phase::Post;
        let steps: Vec<String> =
            crate::lint::lint_sql_as(&f, &text, Some(crate::lint::Phase::Rolling))
                .findings
                .iter()
                .filter(|x| x.class == crate::lint::Class::BackwardIncompatible && x.fails())
                .map(|x| format!("line {}: {}", x.line, x.rule))
                .collect();
        let contract = marked || !steps.is_empty();
        if contract && phase == TaskPhase::Pre {
            let why = if marked {
                "it is marked as a contract (post-phase) migration".to_string()
            } else {
                format!("it has contract steps ({})", steps.join("; "))
            };
            r.err(
                s,
                format!("`{f}` is a contract migration, but it is in a [[pre]] task: {why}"),
                "contract before the rollout",
                Some("a contract step (a drop, a rename, NOT NULL) breaks the old release that still serves during the rollout: move it to a [[post]] task, which runs after every node runs the new release and the watch passed (`glidepath lint` shows each step and its safe alternative)".into()),
            );
            ok = false;
        }
        if let Some((line, word)) = crate::lint::transaction_control(&text) {
            r.err(
                s,
                format!("`{f}` line {line}: {word} controls the transaction, and a migrate task applies each file in its own transaction with its ledger row"),
                "transaction control",
                Some("remove BEGIN/COMMIT/ROLLBACK/SAVEPOINT from the file: glidepath wraps it in a transaction, so it is applied whole and exactly once (a COMMIT inside would commit part of it without its ledger row)".into()),
            );
            ok = false;
        }
        if let Some(line) = concurrently(&text) {
            r.err(
                s,
                format!("`{f}` line {line}: CONCURRENTLY cannot run inside a transaction, and a migrate task applies each file in one (with its ledger row, so it runs exactly once)"),
                "needs its own task",
                Some("run it as a `run` task instead, idempotent and checked: e.g. run = \"psql \\\"$DATABASE_URL\\\" -v ON_ERROR_STOP=1 -c 'CREATE INDEX CONCURRENTLY IF NOT EXISTS …'\" with idempotent = true (and drop an INVALID index left by an interrupted build before retrying)".into()),
            );
            ok = false;
        }
        out.push(MigrationFile {
            name: f,
            path: p,
            sha256: crate::artifact::sha256_hex(text.as_bytes()),
            contract,
        });
    }
    (ok && url.is_some()).then(|| TaskAction::Migrate {
        files: out,
        database_url: url.expect("checked"),
    })
}

fn read_compare_to(r: &mut Reader, t: &Table<'_>, earlier: &[TaskCfg]) -> Option<TaskAction> {
    let (c, s) = r.str(t, "compare_to", "\"room-hashes\"")?;
    let Some(src) = earlier.iter().find(|x| x.name == c && x.capture) else {
        let captures = earlier
            .iter()
            .filter(|x| x.capture)
            .map(|x| x.name.as_str());
        let hint = did_you_mean(&c, captures.clone()).unwrap_or_else(|| {
            let all: Vec<&str> = captures.collect();
            if all.is_empty() {
                "no earlier task has capture = true: add one (run = \"…\", capture = true) before this task".into()
            } else {
                format!("earlier capture tasks: {}", all.join(", "))
            }
        });
        r.err(
            s,
            format!("`compare_to` = \"{c}\": no earlier task captures under that name"),
            "unknown capture",
            Some(hint),
        );
        return None;
    };
    Some(TaskAction::CompareTo {
        capture: c,
        action: Box::new(src.action.clone()),
    })
}

/// The line of the first `CONCURRENTLY` outside `--` comments, if any.
fn concurrently(text: &str) -> Option<usize> {
    text.lines().enumerate().find_map(|(i, l)| {
        let code = l.split("--").next().unwrap_or_default();
        code.to_ascii_uppercase()
            .contains("CONCURRENTLY")
            .then_some(i + 1)
    })
}
