//! `[gates.migrations]`: the release's SQL migrations are safe while the old
//! and the new release share the schema (`glidepath lint`): a
//! backward-incompatible change fails, a lock risk warns (or fails with
//! `lock_risk = "fail"`). `since_git` checks only the files added since a
//! revision.

use super::{one_table, Context, GateResult, Reading, Verdict};
use crate::lint::{lint_paths, Class, FileReport, Phase};
use std::path::{Path, PathBuf};
use toml_span::value::Table;

/// `[gates.migrations]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationsGate {
    /// The migrations directory (absolute).
    pub dir: PathBuf,
    /// Explicit files in `dir`; empty: the whole directory.
    pub files: Vec<String>,
    /// `lock_risk = "fail"`: lock risks fail instead of warning.
    pub lock_risk_fails: bool,
    /// A git revision: only the files added since it (`{deployed}` filled).
    pub since_git: Option<String>,
}

/// Read `[gates.migrations]`.
pub(super) fn read(r: &mut dyn Reading, t: &Table<'_>, dir: &Path) -> Option<MigrationsGate> {
    let (m, mat) = one_table(r, t, "migrations")?;
    r.known_keys(
        m,
        "[gates.migrations]",
        &["dir", "files", "lock_risk", "since_git"],
    );
    let since = r.str(m, "since_git", "\"v1.0.9\"").map(|x| x.0);
    let d = r.req_str(m, mat, "[gates.migrations]", "dir", "\"migrations\"");
    let files = r
        .str_list(m, "files", "[\"0042_add_column.sql\"]")
        .unwrap_or_default()
        .into_iter()
        .map(|x| x.0)
        .collect();
    let lock_fail = match r.str(m, "lock_risk", "\"warn\"") {
        None => false,
        Some((v, s)) => match v.as_str() {
            "warn" => false,
            "fail" => true,
            _ => {
                r.err(
                    s,
                    format!("unknown `lock_risk` \"{v}\""),
                    "expected warn or fail",
                    None,
                );
                false
            }
        },
    };
    if let Some((d, s)) = d {
        let p = dir.join(&d);
        if !p.is_dir() {
            r.err(
                s,
                format!("migrations directory `{d}` not found"),
                format!("looked for {}", p.display()),
                Some("paths are relative to the plan file's directory".into()),
            );
        }
        return Some(MigrationsGate {
            dir: p,
            files,
            lock_risk_fails: lock_fail,
            since_git: since,
        });
    }
    None
}

/// The migrations gate. `deployed` fills `{deployed}` in `since_git`.
pub(super) async fn check(g: &MigrationsGate, cx: &Context<'_>) -> Vec<GateResult> {
    let (dir, files, lock_fail, since) = (&g.dir, &g.files, &g.lock_risk_fails, &g.since_git);
    let deployed = cx.deployed;
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> = if files.is_empty() {
        vec![dir.clone()]
    } else {
        files.iter().map(|f| dir.join(f)).collect()
    };
    let since = since
        .as_ref()
        .map(|r| r.replace("{deployed}", deployed.unwrap_or("{deployed}")));
    if let Some(rev) = since.as_ref().filter(|r| {
        if r.contains("{deployed}") {
            out_push_fail(
                &mut out,
                "since_git uses {deployed}, but the nodes do not all run the same release".into(),
            );
            false
        } else {
            true
        }
    }) {
        // the release's new migrations: files added since `rev`
        let res = tokio::process::Command::new("git")
            .args([
                "diff",
                "--name-only",
                "--diff-filter=A",
                "--relative",
                rev.as_str(),
                "--",
                ".",
            ])
            .current_dir(dir)
            .output()
            .await;
        match res {
            Ok(o) if o.status.success() => {
                paths = String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter(|l| l.ends_with(".sql"))
                    .map(|l| dir.join(l))
                    .collect();
                paths.sort();
            }
            Ok(o) => {
                out_push_fail(
                    &mut out,
                    format!(
                        "git diff {rev} in {}: {}",
                        dir.display(),
                        String::from_utf8_lossy(&o.stderr).trim()
                    ),
                );
                paths.clear();
            }
            Err(e) => {
                out_push_fail(&mut out, format!("cannot run git: {e}"));
                paths.clear();
            }
        }
        if paths.is_empty() && out.iter().all(|r| r.gate != "migrations") {
            out.push(GateResult::new(
                "migrations",
                Verdict::Pass,
                format!("no migration added since {rev}"),
                None,
            ));
        }
    }
    if !paths.is_empty() {
        match lint_paths(&paths) {
            Err(e) => out.push(GateResult::new(
                "migrations",
                Verdict::Fail,
                format!("cannot read migrations: {e}"),
                None,
            )),
            Ok(reports) => out.push(verdict(&reports, *lock_fail, "")),
        }
    }
    out
}

fn out_push_fail(out: &mut Vec<GateResult>, why: String) {
    out.push(GateResult::new(
        "migrations",
        Verdict::Fail,
        why,
        Some("check since_git names a revision of the repository holding the migrations"),
    ));
}

/// The gate's verdict on linted files. `scope` says which files they are
/// (`" of the [[pre]]/[[post]] migrate tasks"`), for the reason.
fn verdict(reports: &[FileReport], lock_fail: bool, scope: &str) -> GateResult {
    let mut incompatible = Vec::new();
    let mut locks = Vec::new();
    let mut other = Vec::new();
    for r in reports {
        if let Some(m) = &r.error {
            other.push(format!("{}: {m}", r.file));
        }
        for (l, _, m) in &r.syntax_errors {
            other.push(format!("{}:{l}: syntax error: {m}", r.file));
        }
        for (l, m) in &r.problems {
            other.push(format!("{}:{l}: {m}", r.file));
        }
        for f in r.findings.iter().filter(|f| f.fails()) {
            let line = format!("{}:{} {} ({})", f.file, f.line, f.rule, f.statement);
            match f.class {
                Class::BackwardIncompatible => incompatible.push(line),
                Class::LockRisk => locks.push(line),
            }
        }
    }
    let checked = reports.len();
    if !incompatible.is_empty() || !other.is_empty() || (lock_fail && !locks.is_empty()) {
        let mut all = other;
        all.extend(
            incompatible
                .iter()
                .map(|x| format!("backward-incompatible: {x}")),
        );
        if lock_fail {
            all.extend(locks.iter().map(|x| format!("lock risk: {x}")));
        }
        GateResult::new(
            "migrations",
            Verdict::Fail,
            all.join("; "),
            Some("run `glidepath lint` on the migrations for each safe alternative; contract steps go to a post-phase migration"),
        )
    } else if !locks.is_empty() {
        GateResult::new(
            "migrations",
            Verdict::Warn,
            format!("{checked} file(s){scope}; lock risks: {}", locks.join("; ")),
            Some("see `glidepath lint` for the lock-free alternatives"),
        )
    } else {
        GateResult::new(
            "migrations",
            Verdict::Pass,
            format!("{checked} file(s){scope} safe while old and new releases share the schema"),
            None,
        )
    }
}

/// The gate on exactly the files the plan's migrate tasks run: a `pre`
/// file is linted as running while old and new releases share the schema
/// (a contract step fails it), a `post` file as running after the whole
/// fleet runs the new release (its contract steps are expected).
pub(super) fn check_task_files(
    files: &[(PathBuf, glidepath_core::TaskPhase)],
    lock_fail: bool,
) -> GateResult {
    let reports: Vec<FileReport> = files
        .iter()
        .map(|(p, phase)| {
            let post = *phase == glidepath_core::TaskPhase::Post;
            crate::lint::lint_file_as(p, Some(if post { Phase::Post } else { Phase::Rolling }))
        })
        .collect();
    verdict(
        &reports,
        lock_fail,
        " of the [[pre]]/[[post]] migrate tasks",
    )
}
