//! Migration safety for rolling deploys, on a real PostgreSQL parser
//! (squawk). While a rollout is in progress, the old and new binaries share
//! one schema, so every finding is classified:
//!
//! - **backward-incompatible**: breaks the release still running (DROP
//!   COLUMN/TABLE, renames, ALTER COLUMN … TYPE, ADD COLUMN … NOT NULL
//!   without DEFAULT, DROP NOT NULL, DROP DEFAULT, …);
//! - **lock risk**: takes locks that stall traffic (a non-concurrent index
//!   build, no lock_timeout, constraints validated under lock, …).
//!
//! Besides squawk's rules, glidepath's own (strong `LOCK TABLE` modes,
//! `VACUUM FULL`, `CLUSTER`, plain `TRUNCATE`, non-concurrent `REFRESH
//! MATERIALIZED VIEW`) run on the same tree. `DO` blocks are parsed as
//! PL/pgSQL: their statements and `EXECUTE`d string literals are checked
//! like the file's own, and what cannot be checked (`EXECUTE` of a computed
//! string, another language) is a finding. The lock timeout is tracked
//! statement by statement: `lock_timeout = 0` disables it.
//!
//! Bad input is per file: a file that cannot be read or is not UTF-8 is its
//! own error; nesting deeper than [`MAX_NESTING`] is refused before the
//! (recursive) parser sees it, and the parse runs on a thread with a large
//! stack; the other files are still linted.
//!
//! Each finding comes with the safe alternative. Expand/contract: a file
//! marked as a contract step (`-- glidepath: post`, or a name ending in
//! `.post.sql`) runs in the `post` phase, after every node runs the new
//! release and the SLI window has passed. There, contract findings (drops of
//! what the old release used) are expected and pass. The same statements in
//! the rolling phase fail, with a hint to move them. A finding can be
//! suppressed with `-- glidepath-ignore RULE: REASON` on the line before its
//! statement; the reason is required.

use serde::Serialize;
use squawk_linter::{Linter, Rule};
use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::SourceFile;

mod check;
mod render;
mod syntax;

pub use check::MAX_NESTING;
use check::*;
pub use render::{render_github, render_text};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    BackwardIncompatible,
    LockRisk,
}

/// A rule: one of squawk's, or one of glidepath's own (checked in this
/// module, on the same syntax tree).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleId {
    Squawk(Rule),
    Own(&'static str),
}

impl std::fmt::Display for RuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuleId::Squawk(r) => r.fmt(f),
            RuleId::Own(name) => f.write_str(name),
        }
    }
}

/// glidepath's own rules, for what squawk passes as clean.
pub const STRONG_TABLE_LOCK: RuleId = RuleId::Own("ban-strong-table-lock");
pub const VACUUM_FULL: RuleId = RuleId::Own("ban-vacuum-full");
pub const CLUSTER: RuleId = RuleId::Own("ban-cluster");
pub const TRUNCATE: RuleId = RuleId::Own("ban-truncate");
pub const REFRESH: RuleId = RuleId::Own("require-concurrent-refresh");
pub const DYNAMIC_SQL: RuleId = RuleId::Own("unverifiable-dynamic-sql");
const LOCK_TIMEOUT: RuleId = RuleId::Squawk(Rule::RequireLockTimeout);
/// Not a rule: SQL inside a DO block nests too deep to parse. It becomes
/// the file's syntax error.
const NESTING: RuleId = RuleId::Own("nesting-limit");

/// Rules as data: (rule, class, is it a contract step, the safe alternative).
pub const RULES: &[(RuleId, Class, bool, &str)] = &[
    (RuleId::Squawk(Rule::BanDropColumn), Class::BackwardIncompatible, true, "expand/contract: ship a release that no longer reads or writes the column, then drop it in a post-phase migration"),
    (RuleId::Squawk(Rule::BanDropTable), Class::BackwardIncompatible, true, "expand/contract: stop using the table in a release, then drop it in a post-phase migration"),
    (RuleId::Squawk(Rule::BanDropView), Class::BackwardIncompatible, true, "drop the view in a post-phase migration, once no running release queries it"),
    (RuleId::Squawk(Rule::BanDropFunction), Class::BackwardIncompatible, true, "drop the function in a post-phase migration, once no running release calls it"),
    (RuleId::Squawk(Rule::BanDropType), Class::BackwardIncompatible, true, "drop the type in a post-phase migration"),
    (RuleId::Squawk(Rule::BanDropSequence), Class::BackwardIncompatible, true, "drop the sequence in a post-phase migration"),
    (RuleId::Squawk(Rule::BanDropSchema), Class::BackwardIncompatible, true, "drop the schema in a post-phase migration"),
    (RuleId::Squawk(Rule::BanDropDatabase), Class::BackwardIncompatible, true, "never from a migration during a rollout"),
    (RuleId::Squawk(Rule::BanDropNotNull), Class::BackwardIncompatible, true, "the running release may rely on the column never being NULL: relax it in a post-phase migration"),
    (RuleId::Squawk(Rule::BanDropDefault), Class::BackwardIncompatible, true, "the running release may insert without the column: drop the default in a post-phase migration"),
    (RuleId::Squawk(Rule::RenamingColumn), Class::BackwardIncompatible, false, "expand/contract: add the new column, write both, backfill, switch reads in a release, drop the old one in a post phase"),
    (RuleId::Squawk(Rule::RenamingTable), Class::BackwardIncompatible, false, "expand/contract: create the new table (or a view with the old name), migrate, drop the old name in a post phase"),
    (RuleId::Squawk(Rule::RenamingObject), Class::BackwardIncompatible, false, "expand/contract: keep the old name until no running release uses it"),
    (RuleId::Squawk(Rule::BanSetSchema), Class::BackwardIncompatible, false, "expand/contract: keep the object reachable under its old schema until no running release uses it"),
    (RuleId::Squawk(Rule::ChangingColumnType), Class::BackwardIncompatible, false, "add a column of the new type, write both, backfill, switch reads, drop the old column in a post phase (a type change also rewrites the table under lock)"),
    (RuleId::Squawk(Rule::AddingRequiredField), Class::BackwardIncompatible, false, "add the column NULL (or with a DEFAULT), backfill, then SET NOT NULL via a NOT VALID check constraint"),
    (RuleId::Squawk(Rule::AddingNotNullableField), Class::BackwardIncompatible, false, "add a CHECK (col IS NOT NULL) NOT VALID constraint, VALIDATE it, then SET NOT NULL; and only once no running release writes NULL"),
    (RuleId::Squawk(Rule::BanTruncateCascade), Class::BackwardIncompatible, false, "truncate the tables explicitly, without CASCADE"),
    (RuleId::Squawk(Rule::RequireConcurrentIndexCreation), Class::LockRisk, false, "CREATE INDEX CONCURRENTLY (outside a transaction)"),
    (RuleId::Squawk(Rule::RequireConcurrentIndexDeletion), Class::LockRisk, false, "DROP INDEX CONCURRENTLY"),
    (RuleId::Squawk(Rule::ConstraintMissingNotValid), Class::LockRisk, false, "add the constraint NOT VALID, then VALIDATE CONSTRAINT in a separate transaction"),
    (RuleId::Squawk(Rule::AddingForeignKeyConstraint), Class::LockRisk, false, "add the foreign key NOT VALID, then VALIDATE CONSTRAINT in a separate transaction"),
    (RuleId::Squawk(Rule::AddingFieldWithDefault), Class::LockRisk, false, "use a non-volatile default (a constant), or add the column without default and backfill in batches"),
    (RuleId::Squawk(Rule::AddingSerialPrimaryKeyField), Class::LockRisk, false, "build a unique index CONCURRENTLY, then ADD PRIMARY KEY USING INDEX"),
    (RuleId::Squawk(Rule::DisallowedUniqueConstraint), Class::LockRisk, false, "CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT … UNIQUE USING INDEX"),
    (RuleId::Squawk(Rule::BanConcurrentIndexCreationInTransaction), Class::LockRisk, false, "run CREATE INDEX CONCURRENTLY outside a transaction block"),
    (RuleId::Squawk(Rule::RequireLockTimeout), Class::LockRisk, false, "SET lock_timeout = '2s'; at the top of the migration, so a blocked DDL fails fast instead of queueing traffic behind it"),
    (RuleId::Squawk(Rule::RequireConcurrentReindex), Class::LockRisk, false, "REINDEX … CONCURRENTLY"),
    (RuleId::Squawk(Rule::RequireConcurrentPartitionDetach), Class::LockRisk, false, "DETACH PARTITION … CONCURRENTLY"),
    (TRUNCATE, Class::BackwardIncompatible, false, "the running release still reads and writes those rows, and TRUNCATE holds an ACCESS EXCLUSIVE lock: delete in small batches (DELETE … WHERE id IN (SELECT id … LIMIT 1000)), or stop using the table in a release first"),
    (STRONG_TABLE_LOCK, Class::LockRisk, false, "do not lock the table explicitly during a rollout: rely on the row locks of the statements themselves (SELECT … FOR UPDATE for a read-modify-write), or take a mode that lets traffic through (ROW EXCLUSIVE, SHARE UPDATE EXCLUSIVE), with a short lock_timeout"),
    (VACUUM_FULL, Class::LockRisk, false, "plain VACUUM (it does not block reads or writes); to give the space back online, pg_repack (or REPACK … CONCURRENTLY on PostgreSQL 19+)"),
    (CLUSTER, Class::LockRisk, false, "pg_repack --order-by (or REPACK … CONCURRENTLY USING INDEX on PostgreSQL 19+) reorders the table online; CLUSTER rewrites it under an ACCESS EXCLUSIVE lock"),
    (REFRESH, Class::LockRisk, false, "REFRESH MATERIALIZED VIEW CONCURRENTLY (it needs a unique index on the view): readers keep the old contents meanwhile"),
    (DYNAMIC_SQL, Class::LockRisk, false, "write the statement as plain SQL in the migration (or EXECUTE a string literal), so it can be checked; if it must stay dynamic, review it and suppress with a reason"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Runs while old and new binaries share the schema.
    Rolling,
    /// Runs after every node runs the new release and the window passed.
    Post,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub rule: String,
    pub class: Class,
    /// A contract step in a post-phase file: expected, passes.
    pub contract_in_post: bool,
    pub message: String,
    pub safe_alternative: String,
    pub statement: String,
    /// Suppressed by a `glidepath-ignore` comment, with its reason.
    pub suppressed: Option<String>,
}

impl Finding {
    /// Does this finding fail the gate?
    pub fn fails(&self) -> bool {
        self.suppressed.is_none() && !self.contract_in_post
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FileReport {
    pub file: String,
    pub phase: Option<Phase>,
    pub findings: Vec<Finding>,
    /// (line, column, message): the file does not parse.
    pub syntax_errors: Vec<(usize, usize, String)>,
    /// Suppression comments without a reason, and other misuse.
    pub problems: Vec<(usize, String)>,
    /// The file could not be checked at all (unreadable, not UTF-8).
    pub error: Option<String>,
}

impl FileReport {
    fn error(file: &str, message: String) -> FileReport {
        FileReport {
            file: file.to_string(),
            error: Some(message),
            ..Default::default()
        }
    }

    /// Invalid input: the file could not be read or parsed.
    pub fn invalid(&self) -> bool {
        self.error.is_some() || !self.syntax_errors.is_empty()
    }

    pub fn failed(&self) -> bool {
        self.invalid() || !self.problems.is_empty() || self.findings.iter().any(|f| f.fails())
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    crate::diag::line_col(text, offset)
}

/// Offsets of line starts, for O(log n) line:column lookups in big files.
struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Lines {
        Lines(
            std::iter::once(0)
                .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
        )
    }
    fn at(&self, text: &str, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.0.partition_point(|&s| s <= offset);
        let start = self.0[line - 1];
        (line, text[start..offset].chars().count() + 1)
    }
}

/// Which phase a migration file belongs to.
pub fn phase_of(name: &str, text: &str) -> Phase {
    let marked = text
        .lines()
        .take_while(|l| l.trim().is_empty() || l.trim_start().starts_with("--"))
        .any(|l| {
            let l = l.trim_start().trim_start_matches('-').trim();
            l.eq_ignore_ascii_case("glidepath: post")
                || l.eq_ignore_ascii_case("glidepath: contract")
        });
    if marked || name.ends_with(".post.sql") {
        Phase::Post
    } else {
        Phase::Rolling
    }
}

/// Lint one migration. The parse runs on a thread of its own with a large
/// stack, after the nesting bound; a parser panic is this file's error.
pub fn lint_sql(file: &str, text: &str) -> FileReport {
    lint_sql_as(file, text, None)
}

/// [`lint_sql`], with the phase the file runs in when the caller knows it
/// (a `[[post]]` task's file runs after the rollout, marked or not).
pub fn lint_sql_as(file: &str, text: &str, phase: Option<Phase>) -> FileReport {
    std::thread::scope(|scope| {
        let job = std::thread::Builder::new()
            .name("glidepath-lint".into())
            .stack_size(PARSER_STACK)
            .spawn_scoped(scope, || lint_sql_here(file, text, phase));
        match job {
            Ok(handle) => handle.join().unwrap_or_else(|panic| {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                FileReport::error(
                    file,
                    format!("the SQL parser failed on this file ({why}): it is not checked"),
                )
            }),
            // no thread: the nesting bound still keeps the parse within this stack
            Err(_) => lint_sql_here(file, text, phase),
        }
    })
}

fn lint_sql_here(file: &str, text: &str, phase: Option<Phase>) -> FileReport {
    let phase = phase.unwrap_or_else(|| phase_of(file, text));
    let mut report = FileReport {
        file: file.to_string(),
        phase: Some(phase),
        ..Default::default()
    };
    if let Some(at) = too_deep(text, false) {
        let (l, c) = line_col(text, at);
        report
            .syntax_errors
            .push((l, c, too_deep_message("the file")));
        return report;
    }
    let parse = SourceFile::parse(text);
    for e in parse.errors() {
        let (at, message) = syntax::explain(text, usize::from(e.range().start()), e.message());
        let (l, c) = line_col(text, at);
        // one typo, one error (the parser may stumble more than once on it)
        if !report.syntax_errors.iter().any(|e| (e.0, e.1) == (l, c)) {
            report.syntax_errors.push((l, c, message));
        }
    }
    if !report.syntax_errors.is_empty() {
        return report;
    }
    // statements, to attach suppressions and show the offending SQL
    let stmts: Vec<(usize, usize)> = parse.tree().stmts().map(|s| range(s.syntax())).collect();
    // `-- glidepath-ignore rule[, rule]: reason` applies to the next statement
    let mut ignores: Vec<(usize, Vec<String>, Option<String>)> = Vec::new(); // (offset, rules, reason)
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        if let Some(rest) = t
            .strip_prefix("--")
            .map(str::trim)
            .and_then(|r| r.strip_prefix("glidepath-ignore"))
        {
            let (rules, reason) = match rest.split_once(':') {
                Some((r, why)) if !why.trim().is_empty() => (r, Some(why.trim().to_string())),
                Some((r, _)) => (r, None),
                None => (rest, None),
            };
            let rules: Vec<String> = rules
                .split([',', ' '])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if reason.is_none() {
                let (l, _) = line_col(text, offset);
                report.problems.push((l, "a glidepath-ignore comment needs a reason: `-- glidepath-ignore RULE: why this is safe`".into()));
            }
            for r in &rules {
                if !RULES.iter().any(|x| x.0.to_string() == *r) {
                    let (l, _) = line_col(text, offset);
                    report
                        .problems
                        .push((l, format!("glidepath-ignore names unknown rule `{r}`")));
                }
            }
            ignores.push((offset, rules, reason));
        }
        offset += line.len();
    }
    let lines = Lines::new(text);
    for v in check(text, &parse, 0).0 {
        if v.rule == NESTING {
            let (l, c) = lines.at(text, v.start);
            report.syntax_errors.push((l, c, v.message));
            continue;
        }
        let Some(&(_, class, contract, alternative)) = RULES.iter().find(|r| r.0 == v.rule) else {
            continue;
        };
        let start = v.start;
        // statements are in order: the last one starting at or before the finding
        let k = stmts.partition_point(|(s, _)| *s <= start);
        let stmt = k
            .checked_sub(1)
            .map(|k| stmts[k])
            .filter(|(_, e)| start < *e)
            .unwrap_or((start, v.end.max(start)));
        let (line, column) = lines.at(text, start);
        let rule = v.rule.to_string();
        // the closest ignore comment before the statement, with nothing but comments between
        let suppressed = ignores
            .iter()
            .rev()
            .find(|(o, rules, _)| {
                *o < stmt.0
                    && rules.contains(&rule)
                    && text[*o..stmt.0]
                        .lines()
                        .skip(1)
                        .all(|l| l.trim().is_empty() || l.trim_start().starts_with("--"))
            })
            .and_then(|(_, _, why)| why.clone());
        let statement = v
            .statement
            .unwrap_or_else(|| compact(text.get(stmt.0..stmt.1).unwrap_or_default()));
        let contract_in_post = contract && phase == Phase::Post;
        let safe_alternative = if contract && phase == Phase::Rolling {
            format!("{alternative}. To contract now, move it to a post-phase migration (`-- glidepath: post` at the top, or a name ending in .post.sql): it runs after every node runs the new release and the SLI window passed")
        } else {
            alternative.to_string()
        };
        report.findings.push(Finding {
            file: file.to_string(),
            line,
            column,
            rule,
            class,
            contract_in_post,
            message: v.message,
            safe_alternative,
            statement,
            suppressed,
        });
    }
    report
}

/// Lint files and directories (`*.sql`, sorted by name). A file that
/// cannot be read, or is not UTF-8, is that file's error; the others are
/// still linted. Only a directory that cannot be listed is an `Err`.
pub fn lint_paths(paths: &[std::path::PathBuf]) -> std::io::Result<Vec<FileReport>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut v: Vec<std::path::PathBuf> = std::fs::read_dir(p)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "sql"))
                .collect();
            v.sort();
            files.extend(v);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files.iter().map(|f| lint_file(f)).collect())
}

/// Lint one file from disk.
pub fn lint_file(path: &std::path::Path) -> FileReport {
    lint_file_as(path, None)
}

/// [`lint_file`], with the phase the file runs in when the caller knows it.
pub fn lint_file_as(path: &std::path::Path, phase: Option<Phase>) -> FileReport {
    let name = path.display().to_string();
    match crate::files::read_bounded(path, crate::files::SMALL_MAX) {
        Err(e) => FileReport::error(&name, format!("cannot read it: {e}")),
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => lint_sql_as(&name, &text, phase),
            Err(e) => {
                let valid = e.utf8_error().valid_up_to();
                let prefix = std::str::from_utf8(&e.as_bytes()[..valid]).unwrap_or_default();
                let (l, c) = line_col(prefix, prefix.len());
                FileReport::error(
                    &name,
                    format!("not valid UTF-8 at line {l}, column {c} (byte {valid}): it is not checked; save the migration as UTF-8"),
                )
            }
        },
    }
}

/// The first top-level statement that controls the transaction (`BEGIN`,
/// `COMMIT`, `ROLLBACK`, `END`, `ABORT`, `START TRANSACTION`, `SAVEPOINT`,
/// `RELEASE`, `PREPARE TRANSACTION`), as (line, keyword). A migrate task
/// applies a file in glidepath's own transaction, with its ledger row: a
/// file that ends it would be committed without its row. Bodies in
/// dollar quotes (functions, DO blocks) are strings to the lexer, and
/// `BEGIN ATOMIC … END` bodies are followed.
pub fn transaction_control(text: &str) -> Option<(usize, String)> {
    use squawk_lexer::TokenKind as T;
    // each statement's first two tokens: (offset, word, or "" if not a word)
    let mut statements: Vec<Vec<(usize, String)>> = vec![Vec::new()];
    let mut offset = 0usize;
    let mut prev_word = String::new();
    let mut atomic_at: Vec<usize> = Vec::new(); // statements opening BEGIN ATOMIC
    for tok in squawk_lexer::tokenize(text) {
        let start = offset;
        offset += tok.len as usize;
        match tok.kind {
            T::Whitespace | T::LineComment | T::BlockComment { .. } => continue,
            T::Semi => {
                statements.push(Vec::new());
                prev_word.clear();
                continue;
            }
            _ => {}
        }
        let w = if tok.kind == T::Ident {
            text.get(start..offset).unwrap_or("").to_ascii_lowercase()
        } else {
            String::new()
        };
        if prev_word == "begin" && w == "atomic" {
            atomic_at.push(statements.len() - 1);
        }
        let cur = statements.last_mut().expect("one");
        if cur.len() < 2 {
            cur.push((start, w.clone()));
        }
        prev_word = w;
    }
    let mut atomic = 0usize;
    for (i, st) in statements.iter().enumerate() {
        let Some((at, first)) = st.first() else {
            continue;
        };
        let second = st.get(1).map_or("", |w| w.1.as_str());
        if first == "end" && atomic > 0 {
            atomic -= 1;
            continue;
        }
        atomic += atomic_at.iter().filter(|s| **s == i).count();
        if atomic > 0 {
            continue; // a statement of a BEGIN ATOMIC body
        }
        let control = match first.as_str() {
            "begin" => second != "atomic",
            "commit" | "rollback" | "end" | "abort" | "savepoint" | "release" => true,
            "start" | "prepare" => second == "transaction",
            _ => false,
        };
        if control {
            let (line, _) = line_col(text, *at);
            return Some((line, first.to_ascii_uppercase()));
        }
    }
    None
}

#[cfg(test)]
mod transaction_tests {
    use super::transaction_control as tc;

    #[test]
    fn transaction_control_is_found_at_the_top_level_only() {
        assert_eq!(
            tc("BEGIN;\nINSERT INTO t VALUES (1);\nCOMMIT;"),
            Some((1, "BEGIN".into()))
        );
        assert_eq!(
            tc("INSERT INTO t VALUES (1);\ncommit;"),
            Some((2, "COMMIT".into()))
        );
        assert_eq!(
            tc("INSERT INTO t VALUES (1);\nCOMMIT"),
            Some((2, "COMMIT".into()))
        );
        assert_eq!(
            tc("SELECT 1;\nSTART TRANSACTION;"),
            Some((2, "START".into()))
        );
        assert_eq!(tc("SAVEPOINT a;"), Some((1, "SAVEPOINT".into())));
        // bodies: dollar quotes, BEGIN ATOMIC, comments, strings
        assert_eq!(
            tc("CREATE FUNCTION f() RETURNS void AS $$ BEGIN PERFORM 1; COMMIT; END $$ LANGUAGE plpgsql;"),
            None
        );
        assert_eq!(tc("DO $$ BEGIN RAISE NOTICE 'x'; END $$;"), None);
        assert_eq!(
            tc("CREATE PROCEDURE p() BEGIN ATOMIC INSERT INTO t VALUES (1); END;\nSELECT 1;"),
            None
        );
        assert_eq!(
            tc("-- COMMIT;\nSELECT 'commit';\n/* BEGIN; */ ALTER TABLE t ADD COLUMN c int;"),
            None
        );
        assert_eq!(
            tc("SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN email text;"),
            None
        );
    }
}
