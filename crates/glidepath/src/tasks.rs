//! Carrying out one `[[pre]]`/`[[post]]` task: a command, SQL migrations
//! against PostgreSQL, or a comparison with what a capture recorded. The
//! core decides when a task runs and what its failure does
//! (`glidepath_core::TaskSpec`); this module does it once, bounded by the
//! task's timeout, and reports a `StepOutcome`.
//!
//! Migrations run exactly once per database: each file is applied in a
//! transaction that also writes its row in `glidepath_migrations` (name,
//! sha256, run, task). A process killed mid-file leaves nothing (the
//! transaction rolls back); killed after the commit, `resume` finds the
//! row and skips the file.

use crate::config::{MigrationFile, SecretRef, TaskAction, TaskCfg};
use crate::template::Vars;
use glidepath_core::StepOutcome;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A captured value longer than this is kept as its sha256.
pub const CAPTURE_MAX: usize = 4096;

/// What a task needs from the run.
#[derive(Debug, Clone)]
pub struct TaskContext {
    pub plan_dir: PathBuf,
    pub version: String,
    /// `{previous}`: the release every node ran when the run started, or
    /// why there is none (the nodes ran different releases, or none).
    pub previous: Result<String, String>,
    pub run_id: String,
    /// For `compare_to`: what the capture recorded.
    pub captured: Option<String>,
    /// The sha256 of each migration file when the run started (journaled):
    /// a file edited since is refused.
    pub pinned: std::collections::BTreeMap<String, String>,
}

/// Run a task once, bounded by its timeout (a migration cancels its own
/// query on timeout: it gets a little longer here to do so).
pub async fn perform(task: &TaskCfg, cx: &TaskContext) -> StepOutcome {
    let slack = match task.action {
        TaskAction::Migrate { .. } => Duration::from_secs(10),
        _ => Duration::ZERO,
    };
    match tokio::time::timeout(task.timeout + slack, perform_once(task, cx)).await {
        Ok(o) => o,
        Err(_) => StepOutcome::failed(format!(
            "timed out after {} (the task's `timeout`)",
            humantime::format_duration(task.timeout)
        )),
    }
}

async fn perform_once(task: &TaskCfg, cx: &TaskContext) -> StepOutcome {
    match &task.action {
        TaskAction::Command { .. } | TaskAction::Probe(_) => {
            match observe(&task.action, task, cx).await {
                Ok((detail, value)) => StepOutcome {
                    captured: task.capture.then_some(value),
                    ..StepOutcome::ok(detail)
                },
                Err(e) => e.outcome(),
            }
        }
        TaskAction::Migrate {
            files,
            database_url,
        } => match migrate(files, database_url, cx, &task.name, task.timeout).await {
            Ok(detail) => StepOutcome::ok(detail),
            Err(e) => e.outcome(),
        },
        TaskAction::CompareTo { capture, action } => {
            let Some(before) = &cx.captured else {
                return StepOutcome::failed(format!(
                    "nothing was recorded by `{capture}` in this run (did it run?)"
                ));
            };
            match observe(action, task, cx).await {
                Err(e) => TaskError {
                    message: format!("repeating `{capture}`: {}", e.message),
                    ..e
                }
                .outcome(),
                Ok((_, now)) if &now == before => StepOutcome::ok(format!(
                    "same as `{capture}` recorded before the rollout: {}",
                    short(&now)
                )),
                Ok((_, now)) => StepOutcome::failed(format!(
                    "differs from what `{capture}` recorded before the rollout: {}",
                    difference(before, &now)
                )),
            }
        }
    }
}

/// Run what a capture runs; its detail, and the value to record.
async fn observe(
    action: &TaskAction,
    task: &TaskCfg,
    cx: &TaskContext,
) -> Result<(String, String), TaskError> {
    let vars = cx.vars(action)?;
    match action {
        TaskAction::Command { run } => {
            let cmd = vars.shell(run);
            let raw = crate::shell::shell_output_raw(&cmd, &cx.plan_dir, task.timeout)
                .await
                .map_err(|e| TaskError::from(e.0))?;
            if task.capture && (raw.dropped > 0 || raw.held_open) {
                return Err(TaskError::from(format!(
                    "`{}` printed more than {} bytes{}: a capture must see everything it compares; print a digest instead (e.g. `… | sha256sum`)",
                    crate::shell::shown(&cmd),
                    crate::shell::OUTPUT_MAX,
                    if raw.held_open { " (or a background process kept its output open)" } else { "" }
                )));
            }
            let out = String::from_utf8_lossy(&raw.bytes).into_owned();
            let t = crate::shell::tail(out.trim());
            let shown = crate::shell::shown(&cmd);
            let detail = if t.is_empty() {
                format!("`{shown}` ok")
            } else {
                format!("`{shown}` ok: {t}")
            };
            // text is kept as it is (trimmed); anything else by its bytes' hash
            let value = match std::str::from_utf8(&raw.bytes) {
                Ok(text) => captured_value(text.trim()),
                Err(_) => format!(
                    "sha256:{} ({} bytes, not text)",
                    crate::artifact::sha256_hex(&raw.bytes),
                    raw.bytes.len()
                ),
            };
            Ok((detail, value))
        }
        TaskAction::Probe(p) => {
            let o = crate::probe::run(&p.fill(&vars), task.timeout).await;
            if o.passed {
                Ok((
                    o.detail,
                    captured_value(o.value.as_deref().unwrap_or_default()),
                ))
            } else {
                Err(TaskError {
                    // the metrics server down is no verdict; a service that
                    // does not answer its own probe is one
                    infra: o.infra && matches!(**p, crate::probe::ProbeCfg::PromQl(_)),
                    message: o.detail,
                })
            }
        }
        _ => Err(TaskError::from(
            "only a command's output or a probe's value can be recorded".to_string(),
        )),
    }
}

/// The value a capture records: the text itself, or its sha256 when long.
pub fn captured_value(text: &str) -> String {
    if text.len() <= CAPTURE_MAX {
        text.to_string()
    } else {
        format!(
            "sha256:{} ({} bytes)",
            crate::artifact::sha256_hex(text.as_bytes()),
            text.len()
        )
    }
}

fn short(s: &str) -> String {
    let one: String = s
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(120)
        .collect();
    if s.lines().count() > 1 {
        format!("{one} … ({} lines)", s.lines().count())
    } else {
        one
    }
}

/// The first line that differs, for a person to start from.
fn difference(before: &str, now: &str) -> String {
    let (b, n): (Vec<&str>, Vec<&str>) = (before.lines().collect(), now.lines().collect());
    for i in 0..b.len().max(n.len()) {
        let (x, y) = (b.get(i), n.get(i));
        if x != y {
            let cut = |s: Option<&&str>| match s {
                Some(s) => format!("{:?}", s.chars().take(120).collect::<String>()),
                None => "(no line)".into(),
            };
            return format!(
                "line {}: before {}, now {} ({} line(s) before, {} now)",
                i + 1,
                cut(x),
                cut(y),
                b.len(),
                n.len()
            );
        }
    }
    "the same lines, different bytes (whitespace?)".into()
}

/// The ledger every migrating run shares.
const LEDGER: &str = "CREATE TABLE IF NOT EXISTS glidepath_migrations (
    name text PRIMARY KEY,
    sha256 text NOT NULL,
    run_id text NOT NULL,
    task text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)";

/// Why a task did not complete: `infra` when what it needs (the database,
/// the metrics server) could not be reached: waited out by the core, not a
/// verdict.
struct TaskError {
    infra: bool,
    message: String,
}

impl TaskError {
    fn outcome(self) -> StepOutcome {
        StepOutcome {
            infra: self.infra,
            ..StepOutcome::failed(self.message)
        }
    }
}

impl From<String> for TaskError {
    fn from(message: String) -> Self {
        TaskError {
            infra: false,
            message,
        }
    }
}

/// Apply the files in order, each once, within `limit`. On timeout the
/// query running on the server is cancelled (a statement left running
/// would keep its locks after the task has failed), and the server also
/// bounds every statement with `statement_timeout`.
async fn migrate(
    files: &[MigrationFile],
    url: &SecretRef,
    cx: &TaskContext,
    task: &str,
    limit: Duration,
) -> Result<String, TaskError> {
    let secret = url.read()?;
    let mut cfg: tokio_postgres::Config = secret.parse().map_err(|_| {
        // the error may quote the URL, which holds a password: not shown
        format!(
            "the database URL from {} is not a PostgreSQL connection string (postgresql://user@host:port/db or key=value pairs)",
            secret_name(url)
        )
    })?;
    cfg.connect_timeout(limit.min(Duration::from_secs(10)));
    cfg.application_name("glidepath");
    cfg.options(format!("-c statement_timeout={}", limit.as_millis().max(1)));
    let connect = tokio::time::timeout(limit, cfg.connect(tokio_postgres::NoTls));
    let (mut client, conn) = match connect.await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return Err(TaskError {
                infra: e.as_db_error().is_none(),
                message: format!(
                    "cannot connect to the database ({}): {}",
                    secret_name(url),
                    pg_error(&e, None)
                ),
            })
        }
        Err(_) => {
            return Err(TaskError {
                infra: true,
                message: format!(
                    "cannot connect to the database ({}) within {}",
                    secret_name(url),
                    humantime::format_duration(limit)
                ),
            })
        }
    };
    // the connection dies with this function, whatever happens
    let conn = AbortOnDrop(tokio::spawn(conn));
    let cancel = client.cancel_token();
    let work = apply_files(&mut client, files, cx, task);
    let result = match tokio::time::timeout(limit, work).await {
        Ok(r) => r.map_err(TaskError::from),
        Err(_) => {
            // stop what the server is running for us, then drop the connection
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                cancel.cancel_query(tokio_postgres::NoTls),
            )
            .await;
            Err(TaskError::from(format!(
                "timed out after {} (the task's `timeout`); the statement running was cancelled and its transaction rolled back",
                humantime::format_duration(limit)
            )))
        }
    };
    drop(client);
    drop(conn);
    result
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The ledger, then each file in a transaction with its ledger row.
async fn apply_files(
    client: &mut tokio_postgres::Client,
    files: &[MigrationFile],
    cx: &TaskContext,
    task: &str,
) -> Result<String, String> {
    let ledger_err = |e: tokio_postgres::Error| {
        format!(
            "the glidepath_migrations ledger: {} (glidepath keeps one row per applied file in this table; it expects the columns name, sha256, run_id, task, applied_at)",
            pg_error(&e, None)
        )
    };
    {
        // created under the lock: two first runs at once must not race
        let tx = client.transaction().await.map_err(|e| pg_error(&e, None))?;
        tx.execute(LOCK, &[]).await.map_err(ledger_err)?;
        tx.batch_execute(LEDGER).await.map_err(ledger_err)?;
        tx.commit().await.map_err(ledger_err)?;
    }
    let mut applied = Vec::new();
    let mut skipped = Vec::new();
    for f in files {
        let text = read_migration(f, cx)?;
        let tx = client.transaction().await.map_err(|e| pg_error(&e, None))?;
        // one migrating run at a time per database
        tx.execute(LOCK, &[]).await.map_err(ledger_err)?;
        let row = tx
            .query_opt(
                "SELECT sha256, run_id FROM glidepath_migrations WHERE name = $1",
                &[&f.name],
            )
            .await
            .map_err(ledger_err)?;
        if let Some(row) = row {
            let (sha, by): (String, String) = (row.get(0), row.get(1));
            if sha == f.sha256 {
                skipped.push(format!("{} (run {by})", f.name));
                continue; // the transaction rolls back on drop
            }
            return Err(format!(
                "{} was applied before (run {by}) with other content (sha256 {}…, now {}…): a migration is never edited once applied; add a new file instead",
                f.name,
                &sha[..sha.len().min(12)],
                &f.sha256[..12]
            ));
        }
        // the transaction's id: the file must not end the transaction
        // (validate refuses COMMIT and friends; this is the backstop)
        let xid: String = tx
            .query_one("SELECT pg_current_xact_id()::text", &[])
            .await
            .map_err(|e| pg_error(&e, None))?
            .get(0);
        tx.batch_execute(&text)
            .await
            .map_err(|e| format!("{}: {}", f.name, pg_error(&e, Some(&text))))?;
        let after: String = tx
            .query_one("SELECT pg_current_xact_id()::text", &[])
            .await
            .map_err(|e| pg_error(&e, None))?
            .get(0);
        if after != xid {
            return Err(format!(
                "{} ended glidepath's transaction (a COMMIT or ROLLBACK in the file): what it did before that is committed without its ledger row; check the database by hand",
                f.name
            ));
        }
        tx.execute(
            "INSERT INTO glidepath_migrations (name, sha256, run_id, task) VALUES ($1, $2, $3, $4)",
            &[&f.name, &f.sha256, &cx.run_id, &task],
        )
        .await
        .map_err(ledger_err)?;
        tx.commit()
            .await
            .map_err(|e| format!("{}: commit: {}", f.name, pg_error(&e, None)))?;
        applied.push(f.name.clone());
    }
    Ok(match (applied.is_empty(), skipped.is_empty()) {
        (false, true) => format!("applied {}", applied.join(", ")),
        (true, false) => format!("already applied: {}", skipped.join(", ")),
        _ => format!(
            "applied {}; already applied: {}",
            applied.join(", "),
            skipped.join(", ")
        ),
    })
}

/// The advisory lock every migrating run takes (per database).
const LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext('glidepath_migrations'))";

fn secret_name(s: &SecretRef) -> String {
    match s {
        SecretRef::Env(v) => format!("${v}"),
        SecretRef::File(p) => p.display().to_string(),
    }
}

/// The migration's text, checked against what the plan read and against
/// what the run pinned when it started (`TaskContext::pinned`): a file
/// edited since is never applied, even after a resume re-reads the plan.
fn read_migration(f: &MigrationFile, cx: &TaskContext) -> Result<String, String> {
    let text = crate::files::read_text(&f.path, crate::files::SMALL_MAX)
        .map_err(|e| format!("cannot read {}: {e}", f.path.display()))?;
    let sha = crate::artifact::sha256_hex(text.as_bytes());
    let expected = cx.pinned.get(&f.name).unwrap_or(&f.sha256);
    if &sha != expected {
        return Err(format!(
            "{} changed since the run started (sha256 {}…, was {}…): refusing to apply a file that was not the one validated and linted; restore it, or start a new run",
            f.name,
            &sha[..12],
            &expected[..expected.len().min(12)]
        ));
    }
    Ok(text)
}

/// A PostgreSQL error as a person reads it: the server's message, its
/// SQLSTATE, and where in the file it points.
fn pg_error(e: &tokio_postgres::Error, text: Option<&str>) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str(&format!("; {d}"));
            }
            if let (Some(tokio_postgres::error::ErrorPosition::Original(pos)), Some(text)) =
                (db.position(), text)
            {
                // a 1-based character position in the file
                let byte = text
                    .char_indices()
                    .nth((*pos as usize).saturating_sub(1))
                    .map_or(text.len(), |(b, _)| b);
                let (l, c) = crate::diag::line_col(text, byte);
                s.push_str(&format!(" at line {l}, column {c}"));
            }
            s
        }
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(x) = src {
                s.push_str(&format!(": {x}"));
                src = x.source();
            }
            s
        }
    }
}

impl Vars {
    /// The placeholders of a task's command (`TASK_PLACEHOLDERS`).
    pub fn task(version: &str, previous: &str, plan_dir: &Path, run: &str) -> Vars {
        Vars::empty()
            .with("version", version)
            .with("previous", previous)
            .with("plan_dir", plan_dir.display().to_string())
            .with("run", run)
    }
}

impl TaskContext {
    /// A task's placeholders; a task whose template uses `{previous}`
    /// fails rather than guess when there is no single previous release.
    fn vars(&self, action: &TaskAction) -> Result<Vars, TaskError> {
        let previous = match (&self.previous, action) {
            (Ok(p), _) => p.as_str(),
            (Err(why), TaskAction::Command { run }) if run.contains("{previous}") => {
                return Err(TaskError::from(format!(
                    "`{{previous}}` has no value: {why}"
                )))
            }
            (Err(_), _) => "",
        };
        Ok(Vars::task(
            &self.version,
            previous,
            &self.plan_dir,
            &self.run_id,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_capture_is_kept_as_its_hash_and_a_difference_names_the_line() {
        assert_eq!(captured_value("abc"), "abc");
        let long = "x".repeat(CAPTURE_MAX + 1);
        let v = captured_value(&long);
        assert!(v.starts_with("sha256:") && v.ends_with(&format!("({} bytes)", CAPTURE_MAX + 1)));
        assert_eq!(
            difference("room1 aa\nroom2 bb", "room1 aa\nroom2 cc"),
            "line 2: before \"room2 bb\", now \"room2 cc\" (2 line(s) before, 2 now)"
        );
        assert!(difference("a", "a\nb").starts_with("line 2: before (no line), now \"b\""));
    }
}
