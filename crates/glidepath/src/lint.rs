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
use squawk_syntax::ast::AstNode;
use squawk_syntax::SourceFile;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    BackwardIncompatible,
    LockRisk,
}

/// Rules as data: (rule, class, is it a contract step, the safe alternative).
pub const RULES: &[(Rule, Class, bool, &str)] = &[
    (Rule::BanDropColumn, Class::BackwardIncompatible, true, "expand/contract: ship a release that no longer reads or writes the column, then drop it in a post-phase migration"),
    (Rule::BanDropTable, Class::BackwardIncompatible, true, "expand/contract: stop using the table in a release, then drop it in a post-phase migration"),
    (Rule::BanDropView, Class::BackwardIncompatible, true, "drop the view in a post-phase migration, once no running release queries it"),
    (Rule::BanDropFunction, Class::BackwardIncompatible, true, "drop the function in a post-phase migration, once no running release calls it"),
    (Rule::BanDropType, Class::BackwardIncompatible, true, "drop the type in a post-phase migration"),
    (Rule::BanDropSequence, Class::BackwardIncompatible, true, "drop the sequence in a post-phase migration"),
    (Rule::BanDropSchema, Class::BackwardIncompatible, true, "drop the schema in a post-phase migration"),
    (Rule::BanDropDatabase, Class::BackwardIncompatible, true, "never from a migration during a rollout"),
    (Rule::BanDropNotNull, Class::BackwardIncompatible, true, "the running release may rely on the column never being NULL: relax it in a post-phase migration"),
    (Rule::BanDropDefault, Class::BackwardIncompatible, true, "the running release may insert without the column: drop the default in a post-phase migration"),
    (Rule::RenamingColumn, Class::BackwardIncompatible, false, "expand/contract: add the new column, write both, backfill, switch reads in a release, drop the old one in a post phase"),
    (Rule::RenamingTable, Class::BackwardIncompatible, false, "expand/contract: create the new table (or a view with the old name), migrate, drop the old name in a post phase"),
    (Rule::RenamingObject, Class::BackwardIncompatible, false, "expand/contract: keep the old name until no running release uses it"),
    (Rule::BanSetSchema, Class::BackwardIncompatible, false, "expand/contract: keep the object reachable under its old schema until no running release uses it"),
    (Rule::ChangingColumnType, Class::BackwardIncompatible, false, "add a column of the new type, write both, backfill, switch reads, drop the old column in a post phase (a type change also rewrites the table under lock)"),
    (Rule::AddingRequiredField, Class::BackwardIncompatible, false, "add the column NULL (or with a DEFAULT), backfill, then SET NOT NULL via a NOT VALID check constraint"),
    (Rule::AddingNotNullableField, Class::BackwardIncompatible, false, "add a CHECK (col IS NOT NULL) NOT VALID constraint, VALIDATE it, then SET NOT NULL; and only once no running release writes NULL"),
    (Rule::BanTruncateCascade, Class::BackwardIncompatible, false, "truncate the tables explicitly, without CASCADE"),
    (Rule::RequireConcurrentIndexCreation, Class::LockRisk, false, "CREATE INDEX CONCURRENTLY (outside a transaction)"),
    (Rule::RequireConcurrentIndexDeletion, Class::LockRisk, false, "DROP INDEX CONCURRENTLY"),
    (Rule::ConstraintMissingNotValid, Class::LockRisk, false, "add the constraint NOT VALID, then VALIDATE CONSTRAINT in a separate transaction"),
    (Rule::AddingForeignKeyConstraint, Class::LockRisk, false, "add the foreign key NOT VALID, then VALIDATE CONSTRAINT in a separate transaction"),
    (Rule::AddingFieldWithDefault, Class::LockRisk, false, "use a non-volatile default (a constant), or add the column without default and backfill in batches"),
    (Rule::AddingSerialPrimaryKeyField, Class::LockRisk, false, "build a unique index CONCURRENTLY, then ADD PRIMARY KEY USING INDEX"),
    (Rule::DisallowedUniqueConstraint, Class::LockRisk, false, "CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT … UNIQUE USING INDEX"),
    (Rule::BanConcurrentIndexCreationInTransaction, Class::LockRisk, false, "run CREATE INDEX CONCURRENTLY outside a transaction block"),
    (Rule::RequireLockTimeout, Class::LockRisk, false, "SET lock_timeout = '2s'; at the top of the migration, so a blocked DDL fails fast instead of queueing traffic behind it"),
    (Rule::RequireConcurrentReindex, Class::LockRisk, false, "REINDEX … CONCURRENTLY"),
    (Rule::RequireConcurrentPartitionDetach, Class::LockRisk, false, "DETACH PARTITION … CONCURRENTLY"),
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
}

impl FileReport {
    pub fn failed(&self) -> bool {
        !self.syntax_errors.is_empty()
            || !self.problems.is_empty()
            || self.findings.iter().any(|f| f.fails())
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
        let line = self.0.partition_point(|&s| s <= offset);
        let start = self.0[line - 1];
        (
            line,
            text[start..offset.min(text.len())].chars().count() + 1,
        )
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

/// Lint one migration.
pub fn lint_sql(file: &str, text: &str) -> FileReport {
    let phase = phase_of(file, text);
    let mut report = FileReport {
        file: file.to_string(),
        phase: Some(phase),
        ..Default::default()
    };
    let parse = SourceFile::parse(text);
    for e in parse.errors() {
        let (l, c) = line_col(text, usize::from(e.range().start()));
        report.syntax_errors.push((l, c, e.message().to_string()));
    }
    if !report.syntax_errors.is_empty() {
        return report;
    }
    // statements, to attach suppressions and show the offending SQL
    let stmts: Vec<(usize, usize)> = parse
        .tree()
        .stmts()
        .map(|s| {
            let r = s.syntax().text_range();
            (usize::from(r.start()), usize::from(r.end()))
        })
        .collect();
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
    let mut linter = Linter::from(RULES.iter().map(|r| r.0));
    let mut violations = linter.lint(&parse, text);
    violations.sort_by_key(|v| v.text_range.start());
    let lines = Lines::new(text);
    for v in violations {
        let Some(&(_, class, contract, alternative)) = RULES.iter().find(|r| r.0 == v.code) else {
            continue;
        };
        let start = usize::from(v.text_range.start());
        // statements are in order: the last one starting at or before the finding
        let k = stmts.partition_point(|(s, _)| *s <= start);
        let stmt = k
            .checked_sub(1)
            .map(|k| stmts[k])
            .filter(|(_, e)| start < *e)
            .unwrap_or((start, usize::from(v.text_range.end())));
        let (line, column) = lines.at(text, start);
        let rule = v.code.to_string();
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
        let statement: String = text[stmt.0..stmt.1]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(120)
            .collect();
        let mut message = v.message.clone();
        if let Some(h) = &v.help {
            message = format!("{message} ({h})");
        }
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
            message,
            safe_alternative,
            statement,
            suppressed,
        });
    }
    report
}

/// Lint files and directories (`*.sql`, sorted by name).
pub fn lint_paths(paths: &[std::path::PathBuf]) -> std::io::Result<Vec<FileReport>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut v: Vec<std::path::PathBuf> = std::fs::read_dir(p)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "sql"))
                .collect();
            v.sort();
            files.extend(v);
        } else {
            files.push(p.clone());
        }
    }
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f)?;
            Ok(lint_sql(&f.display().to_string(), &text))
        })
        .collect()
}

/// Human output: one block per finding.
pub fn render_text(reports: &[FileReport]) -> String {
    let mut s = String::new();
    for r in reports {
        for (l, c, m) in &r.syntax_errors {
            s.push_str(&format!("{}:{l}:{c}: error: syntax error: {m}\n", r.file));
        }
        for (l, m) in &r.problems {
            s.push_str(&format!("{}:{l}:1: error: {m}\n", r.file));
        }
        for f in &r.findings {
            let what = match (f.class, f.contract_in_post, &f.suppressed) {
                (_, _, Some(_)) => "suppressed",
                (_, true, _) => "ok (contract step in the post phase)",
                (Class::BackwardIncompatible, ..) => "error: backward-incompatible",
                (Class::LockRisk, ..) => "error: lock risk",
            };
            s.push_str(&format!(
                "{}:{}:{}: {what} [{}] {}\n",
                f.file, f.line, f.column, f.rule, f.message
            ));
            s.push_str(&format!("    {}\n", f.statement));
            match &f.suppressed {
                Some(why) => s.push_str(&format!("    suppressed: {why}\n")),
                None if !f.contract_in_post => {
                    s.push_str(&format!("    safe alternative: {}\n", f.safe_alternative))
                }
                None => {}
            }
        }
    }
    let failing = reports.iter().filter(|r| r.failed()).count();
    let findings: usize = reports
        .iter()
        .map(|r| r.findings.iter().filter(|f| f.fails()).count())
        .sum();
    s.push_str(&format!(
        "{} file(s) checked: {} failing finding(s), {} file(s) failing\n",
        reports.len(),
        findings,
        failing
    ));
    s
}

/// GitHub Actions workflow-command annotations.
pub fn render_github(reports: &[FileReport]) -> String {
    let esc = |s: &str| {
        s.replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    };
    let mut s = String::new();
    for r in reports {
        for (l, c, m) in &r.syntax_errors {
            s.push_str(&format!(
                "::error file={},line={l},col={c},title=syntax error::{}\n",
                r.file,
                esc(m)
            ));
        }
        for (l, m) in &r.problems {
            s.push_str(&format!(
                "::error file={},line={l},title=glidepath-ignore::{}\n",
                r.file,
                esc(m)
            ));
        }
        for f in r.findings.iter().filter(|f| f.fails()) {
            let title = match f.class {
                Class::BackwardIncompatible => "backward-incompatible",
                Class::LockRisk => "lock risk",
            };
            s.push_str(&format!(
                "::error file={},line={},col={},title={title}: {}::{}%0ASafe alternative: {}\n",
                f.file,
                f.line,
                f.column,
                f.rule,
                esc(&f.message),
                esc(&f.safe_alternative)
            ));
        }
    }
    s
}
