//! The checks on one parsed text: the nesting bound (before parsing), the
//! `lock_timeout` in force statement after statement, glidepath's own
//! rules, and `DO` blocks and `EXECUTE`d strings linted like the file.

use super::*;

/// Nesting deeper than this (parentheses, brackets, CASE … END, PL/pgSQL
/// blocks, chains of prefix operators such as `NOT NOT …` or `- - …`) is
/// refused before parsing: the parser is recursive, and 16,000 `(` would
/// exhaust its stack and abort the process. Real migrations stay far below.
pub const MAX_NESTING: usize = 1000;

/// The parse and the checks run on their own thread with this much stack
/// (reserved, not used), so that what the nesting bound lets through, and
/// constructs it does not count, fit with a wide margin.
pub(super) const PARSER_STACK: usize = 256 << 20;

/// How deep DO blocks and EXECUTE of string literals are followed.
pub(super) const MAX_DYNAMIC_LEVELS: usize = 4;

/// The first offset where `text` nests deeper than [`MAX_NESTING`], counted
/// on tokens (strings and comments do not count). `plpgsql` also counts
/// BEGIN, IF and LOOP blocks.
pub(super) fn too_deep(text: &str, plpgsql: bool) -> Option<usize> {
    use squawk_lexer::TokenKind as T;
    let mut depth = 0usize;
    let mut run = 0usize; // consecutive prefix operators
    let mut offset = 0usize;
    let mut prev: Option<(T, &str)> = None;
    for tok in squawk_lexer::tokenize(text) {
        let start = offset;
        offset += tok.len as usize;
        if matches!(
            tok.kind,
            T::Whitespace | T::LineComment | T::BlockComment { .. }
        ) {
            continue;
        }
        let word = text.get(start..offset).unwrap_or("");
        let prev_is = |k: &str| matches!(prev, Some((T::Ident, w)) if w.eq_ignore_ascii_case(k));
        let after_end = prev_is("end");
        let mut operator = false;
        match tok.kind {
            T::OpenParen | T::OpenBracket => depth += 1,
            T::CloseParen | T::CloseBracket => depth = depth.saturating_sub(1),
            T::Minus
            | T::Plus
            | T::Tilde
            | T::Bang
            | T::At
            | T::Pound
            | T::Question
            | T::And
            | T::Or
            | T::Lt
            | T::Gt
            | T::Eq
            | T::Caret
            | T::Percent
            | T::Star
            | T::Slash
            | T::Backtick => operator = true,
            T::Ident => {
                let is = |k: &str| word.eq_ignore_ascii_case(k);
                let stmt_start = matches!(prev, None | Some((T::Semi | T::Gt, _)))
                    || ["then", "else", "loop", "begin"].into_iter().any(prev_is);
                if is("not") {
                    operator = true;
                } else if is("end") {
                    depth = depth.saturating_sub(1);
                } else if (is("case") && !after_end)
                    || (plpgsql
                        && (is("begin") || (is("if") && stmt_start) || (is("loop") && !after_end)))
                {
                    depth += 1;
                }
            }
            _ => {}
        }
        run = if operator { run + 1 } else { 0 };
        if depth + run > MAX_NESTING {
            return Some(start);
        }
        prev = Some((tok.kind, word));
    }
    None
}

pub(super) fn too_deep_message(what: &str) -> String {
    format!("{what} nests deeper than {MAX_NESTING} levels (parentheses, brackets, CASE, blocks or prefix operators): it is not parsed, so that the parser cannot exhaust its stack; split the expression")
}

/// A finding before it is placed: offsets into the text that was checked.
pub(super) struct Raw {
    pub(super) rule: RuleId,
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) message: String,
    /// The offending SQL, when it is not the statement around `start`
    /// (e.g. inside a DO block).
    pub(super) statement: Option<String>,
}

/// The effective `lock_timeout`, statement after statement.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Timeout {
    Unset,
    Effective,
    /// Set to zero, which disables it: the value as written.
    Zero(String),
    /// RESET, or SET … TO DEFAULT: back to the server's default.
    Default,
}

impl Timeout {
    fn message(&self) -> String {
        match self {
            Timeout::Unset | Timeout::Effective => "Missing `set lock_timeout` before potentially slow operations: this statement would wait for its lock indefinitely, with the traffic queued behind it".into(),
            Timeout::Zero(v) => format!("`lock_timeout = {v}` disables the timeout (0 means wait forever): this statement would wait for its lock indefinitely, with the traffic queued behind it"),
            Timeout::Default => "lock_timeout was reset to the server's default (0, no timeout, unless the server sets one) before this potentially slow statement".into(),
        }
    }
}

/// What a `SET` does to `lock_timeout`, if it sets it.
pub(super) fn lock_timeout_set(set: &ast::Set) -> Option<Timeout> {
    let Some(ast::SetTarget::SetConfig(cfg)) = set.set_target() else {
        return None;
    };
    let path = cfg.config_parameter_ref()?.path_ref()?;
    if path.qualifier().is_some() {
        return None;
    }
    let name = path.segment()?.syntax().text().to_string();
    if !name.trim_matches('"').eq_ignore_ascii_case("lock_timeout") {
        return None;
    }
    let assignment = cfg
        .config_assignment()
        .map(|a| a.syntax().text().to_string())
        .unwrap_or_default();
    let value = assignment.trim();
    let value = value
        .strip_prefix('=')
        .or_else(|| {
            value
                .get(..2)
                .filter(|p| p.eq_ignore_ascii_case("to"))
                .map(|_| &value[2..])
        })
        .unwrap_or(value)
        .trim();
    if value.eq_ignore_ascii_case("default") || value.is_empty() {
        return Some(Timeout::Default);
    }
    let bare = value.trim_matches(|c| c == '\'' || c == '"').trim();
    let number: String = bare
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | '+' | '-' | 'e' | 'E'))
        .collect();
    match number.parse::<f64>() {
        Ok(0.0) => Some(Timeout::Zero(value.to_string())),
        _ => Some(Timeout::Effective),
    }
}

pub(super) fn resets_lock_timeout(reset: &ast::Reset) -> bool {
    let text = reset.syntax().text().to_string().to_ascii_lowercase();
    let target = text
        .trim_end_matches(';')
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .trim_matches('"')
        .to_string();
    target == "lock_timeout" || target == "all"
}

pub(super) fn range(node: &squawk_syntax::SyntaxNode) -> (usize, usize) {
    let r = node.text_range();
    (usize::from(r.start()), usize::from(r.end()))
}

pub(super) fn compact(sql: &str) -> String {
    sql.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(120)
        .collect()
}

/// Every finding in a parsed text. `level` > 0 inside DO blocks and
/// EXECUTE: there the lock timeout is the outer statement's business.
/// Also says whether any statement may take a lock.
pub(super) fn check(
    text: &str,
    parse: &squawk_syntax::Parse<SourceFile>,
    level: usize,
) -> (Vec<Raw>, bool) {
    let mut out = Vec::new();
    let mut linter = Linter::from(RULES.iter().filter_map(|r| match r.0 {
        RuleId::Squawk(x) if level == 0 || x != Rule::RequireLockTimeout => Some(x),
        _ => None,
    }));
    let mut squawk_lock_timeout = None;
    for v in linter.lint(parse, text) {
        let mut message = v.message.clone();
        if let Some(h) = &v.help {
            message = format!("{message} ({h})");
        }
        let raw = Raw {
            rule: RuleId::Squawk(v.code),
            start: usize::from(v.text_range.start()),
            end: usize::from(v.text_range.end()),
            message,
            statement: None,
        };
        if v.code == Rule::RequireLockTimeout {
            squawk_lock_timeout = Some(raw);
        } else {
            out.push(raw);
        }
    }
    // The lock timeout: squawk counts any `SET lock_timeout`, even one that
    // disables it, and does not look into DO blocks. This walk decides; it
    // keeps squawk's message (which names the lock) where both agree.
    let mut timeout = Timeout::Unset;
    let mut timeout_reported = level > 0;
    let mut any_slow = false;
    for stmt in parse.tree().stmts() {
        let (s, e) = range(stmt.syntax());
        let mut slow = squawk_linter::analyze::possibly_slow_stmt(&stmt);
        let mut own = |rule: RuleId, message: String| {
            out.push(Raw {
                rule,
                start: s,
                end: e,
                message,
                statement: None,
            })
        };
        match &stmt {
            ast::Stmt::Set(set) => {
                if let Some(t) = lock_timeout_set(set) {
                    timeout = t;
                }
            }
            ast::Stmt::Reset(reset) if resets_lock_timeout(reset) => timeout = Timeout::Default,
            ast::Stmt::Lock(lock) => {
                use ast::LockMode as M;
                let mode = lock.lock_mode_clause().and_then(|c| c.lock_mode());
                let strong = match &mode {
                    None => Some(("without IN … MODE takes ACCESS EXCLUSIVE, the default: it", "reads and writes")),
                    Some(M::AccessExclusive(_)) => Some(("IN ACCESS EXCLUSIVE MODE", "reads and writes")),
                    Some(M::Exclusive(_)) => Some(("IN EXCLUSIVE MODE", "writes and SELECT … FOR UPDATE")),
                    Some(M::ShareRowExclusive(_)) => Some(("IN SHARE ROW EXCLUSIVE MODE", "writes")),
                    Some(M::Share(_)) => Some(("IN SHARE MODE", "writes")),
                    _ => None,
                };
                if let Some((mode, blocks)) = strong {
                    own(STRONG_TABLE_LOCK, format!("LOCK TABLE {mode} blocks {blocks} on the table until the transaction ends"));
                }
            }
            ast::Stmt::Vacuum(vacuum) if vacuum.is_full() => own(VACUUM_FULL, "VACUUM FULL rewrites the table under an ACCESS EXCLUSIVE lock: reads and writes block until it finishes".into()),
            ast::Stmt::Cluster(_) => own(CLUSTER, "CLUSTER rewrites the table under an ACCESS EXCLUSIVE lock: reads and writes block until it finishes".into()),
            ast::Stmt::Truncate(t) if !matches!(t.drop_behavior(), Some(ast::DropBehavior::Cascade(_))) => own(TRUNCATE, "TRUNCATE removes every row the running release reads and writes, under an ACCESS EXCLUSIVE lock".into()),
            ast::Stmt::Refresh(r) if r.concurrently_token().is_none() => own(REFRESH, "REFRESH MATERIALIZED VIEW without CONCURRENTLY takes an ACCESS EXCLUSIVE lock: every read of the view blocks until it finishes".into()),
            ast::Stmt::Do(d) => {
                let (found, dynamic_slow) = check_do(d, level);
                slow |= dynamic_slow;
                out.extend(found);
            }
            _ => {}
        }
        any_slow |= slow;
        if !timeout_reported && slow && timeout != Timeout::Effective {
            timeout_reported = true;
            match squawk_lock_timeout.take() {
                Some(v) if timeout == Timeout::Unset && v.start == s => out.push(v),
                _ => out.push(Raw {
                    rule: LOCK_TIMEOUT,
                    start: s,
                    end: e,
                    message: timeout.message(),
                    statement: None,
                }),
            }
        }
    }
    out.sort_by_key(|r| r.start);
    (out, any_slow)
}

/// SQL found inside a DO block (a statement, or an EXECUTEd literal):
/// its findings, and whether it may take a lock.
pub(super) fn check_nested(sql: &str, level: usize) -> (Vec<Raw>, bool) {
    let unverifiable = |at: usize, message: String| Raw {
        rule: DYNAMIC_SQL,
        start: at,
        end: at,
        message,
        statement: Some(compact(sql)),
    };
    if let Some(at) = too_deep(sql, false) {
        let mut raw = unverifiable(at, too_deep_message("the SQL in a DO block"));
        raw.rule = NESTING;
        return (vec![raw], true);
    }
    let parse = SourceFile::parse(sql);
    if let Some(e) = parse.errors().first() {
        let at = usize::from(e.range().start());
        let message = format!(
            "the SQL does not parse ({}): what it changes cannot be checked",
            e.message()
        );
        return (vec![unverifiable(at, message)], true);
    }
    check(sql, &parse, level)
}

/// A DO block: the statements of its PL/pgSQL body, and what it EXECUTEs,
/// are checked like the migration's own; what cannot be (EXECUTE of a
/// computed string, another language) is a finding of its own. Returns the
/// findings, and whether the block may take a lock.
pub(super) fn check_do(stmt: &ast::Do, level: usize) -> (Vec<Raw>, bool) {
    let (s, e) = range(stmt.syntax());
    let unverifiable = |message: String| Raw {
        rule: DYNAMIC_SQL,
        start: s,
        end: e,
        message,
        statement: None,
    };
    if level >= MAX_DYNAMIC_LEVELS {
        return (vec![unverifiable(format!("DO blocks and EXECUTE nested more than {MAX_DYNAMIC_LEVELS} levels deep are not followed: what they change cannot be checked"))], true);
    }
    let Some(decoded) = stmt.body().and_then(|b| b.decoded_value()) else {
        return (Vec::new(), false);
    };
    // body offsets → offsets in the text around the DO statement
    let map = |o: usize| usize::from(decoded.source_pos((o as u32).into()));
    if let Some(at) = too_deep(decoded.text(), true) {
        let mut raw = unverifiable(too_deep_message("the DO block"));
        raw.rule = NESTING;
        raw.start = map(at);
        return (vec![raw], true);
    }
    let Some(body) = stmt.plpgsql() else {
        let language = stmt
            .do_language()
            .map(|l| compact(&l.syntax().text().to_string()))
            .unwrap_or_default();
        return (vec![unverifiable(format!("a DO block in another language than PL/pgSQL ({language}) cannot be checked: what it changes is unknown"))], true);
    };
    if let Some(err) = body.errors().first() {
        return (
            vec![unverifiable(format!(
                "the DO block's PL/pgSQL does not parse ({}): what it changes cannot be checked",
                err.message()
            ))],
            true,
        );
    }
    let text = body.text().to_string();
    let mut out = Vec::new();
    let mut slow = false;
    for node in body.syntax().descendants() {
        if let Some(exec) = ast::PlpgsqlExecSqlStmt::cast(node.clone()) {
            let Some(inner) = exec.stmt() else { continue };
            let (a, b) = range(inner.syntax());
            let (found, may_lock) = check_nested(&text[a..b], level + 1);
            slow |= may_lock;
            out.extend(found.into_iter().map(|f| Raw {
                start: map(a + f.start),
                end: map(a + f.end),
                message: format!("inside a DO block: {}", f.message),
                statement: f.statement.or_else(|| Some(compact(&text[a..b]))),
                rule: f.rule,
            }));
        } else if let Some(dynamic) = ast::PlpgsqlDynExecuteStmt::cast(node.clone()) {
            let (a, b) = range(dynamic.syntax());
            let literal = dynamic.query().and_then(|q| {
                let mut targets = q.target_list()?.targets();
                let only = targets.next().filter(|_| targets.next().is_none())?;
                if q.from_clause().is_some() || q.where_clause().is_some() {
                    return None;
                }
                match only.expr()? {
                    ast::Expr::Literal(l) => l.decoded_value(),
                    _ => None,
                }
            });
            match literal {
                Some(sql) => {
                    let (found, may_lock) = check_nested(sql.text(), level + 1);
                    slow |= may_lock;
                    out.extend(found.into_iter().map(|f| {
                        let at = |o: usize| map(usize::from(sql.source_pos((o as u32).into())));
                        Raw {
                            start: at(f.start),
                            end: at(f.end),
                            message: format!("inside EXECUTE in a DO block: {}", f.message),
                            statement: f.statement.or_else(|| Some(compact(sql.text()))),
                            rule: f.rule,
                        }
                    }));
                }
                None => {
                    slow = true;
                    out.push(Raw {
                    rule: DYNAMIC_SQL,
                    start: map(a),
                    end: map(b),
                    message: "EXECUTE of a computed string in a DO block: the SQL it runs (DDL, locks) cannot be checked before it runs".into(),
                    statement: Some(compact(&text[a..b])),
                })
                }
            }
        }
    }
    (out, slow)
}
