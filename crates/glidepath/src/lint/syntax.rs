//! A parser's syntax error as a person can act on it: the parser names its
//! token kinds (`found TEXT_KW`) and stops where the grammar broke, which is
//! often a word or two after the typo (`ADD COLUMM email TEXT` reads
//! `COLUMM` as the column's name and stops at `TEXT`). Here the message
//! names the text it found, and a word of the statement that is one edit
//! away from a keyword (and is not that keyword) is pointed at instead,
//! with the parser's own position kept in the message.

/// Keywords a migration's typo is likely to be near, long enough (four
/// letters or more) that one edit away is rarely a legitimate name.
const KEYWORDS: &[&str] = &[
    "ALTER",
    "TABLE",
    "COLUMN",
    "CREATE",
    "INDEX",
    "CONCURRENTLY",
    "CONSTRAINT",
    "PRIMARY",
    "FOREIGN",
    "REFERENCES",
    "UNIQUE",
    "DEFAULT",
    "NULL",
    "RENAME",
    "TYPE",
    "USING",
    "VALIDATE",
    "VALID",
    "CHECK",
    "DROP",
    "INSERT",
    "INTO",
    "VALUES",
    "UPDATE",
    "DELETE",
    "FROM",
    "WHERE",
    "SELECT",
    "BEGIN",
    "COMMIT",
    "EXISTS",
    "TRIGGER",
    "FUNCTION",
    "VIEW",
    "SEQUENCE",
    "SCHEMA",
    "EXTENSION",
    "CASCADE",
    "RESTRICT",
    "GRANT",
    "REVOKE",
    "TABLESPACE",
    "TIMESTAMP",
    "INTEGER",
    "BIGINT",
    "BOOLEAN",
    "VARCHAR",
];

/// The offset to report a syntax error at, and its message: `offset` and
/// `message` are the parser's.
pub(super) fn explain(text: &str, offset: usize, message: &str) -> (usize, String) {
    let offset = offset.min(text.len());
    let found = word_at(text, offset);
    let message = match (message.rsplit_once("found "), found) {
        (Some((head, _)), Some(w)) => format!("{head}found `{w}`"),
        _ => message.to_string(),
    };
    // the statement the error is in (from the last `;` before it to the
    // next): its last near-keyword up to the error, else its first after
    // (a parser may report the statement's first word)
    let start = text[..offset].rfind(';').map_or(0, |i| i + 1);
    let end = text[offset..].find(';').map_or(text.len(), |i| offset + i);
    let near: Vec<(usize, &str, &str)> = words(&text[start..end])
        .filter_map(|(at, w)| near_keyword(w).map(|k| (start + at, w, k)))
        .collect();
    let typo = near
        .iter()
        .rev()
        .find(|(at, ..)| *at <= offset)
        .or_else(|| near.first())
        .copied();
    match typo {
        Some((at, w, k)) => {
            let (l, c) = crate::diag::line_col(text, offset);
            (
                at,
                format!("`{w}` is not a keyword: did you mean `{k}`? (the parser stopped at {l}:{c}: {message})"),
            )
        }
        None => (offset, message),
    }
}

/// The word (letters, digits, `_`) at `offset`, if any.
fn word_at(text: &str, offset: usize) -> Option<&str> {
    let rest = &text[offset..];
    let end = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

/// The unquoted words of `s`, with their offsets (quoted identifiers,
/// strings and comments are skipped).
fn words(s: &str) -> impl Iterator<Item = (usize, &str)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let st = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                out.push((st, &s[st..i]));
            }
            _ => i += 1,
        }
    }
    out.into_iter()
}

/// The keyword `w` is one edit from (a substitution, a missing or an extra
/// letter, two letters swapped), when `w` is not itself a keyword nor the
/// keyword's plural (`users` is a table, not a misspelt `USER`).
fn near_keyword(w: &str) -> Option<&'static str> {
    let up = w.to_ascii_uppercase();
    if up.len() < 4 || KEYWORDS.contains(&up.as_str()) {
        return None;
    }
    KEYWORDS
        .iter()
        .copied()
        .find(|k| up.strip_suffix('S') != Some(k) && one_edit(&up, k))
}

fn one_edit(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    match a.len() as isize - b.len() as isize {
        0 => {
            let diff: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
            match diff[..] {
                [_] => true,
                [i, j] => j == i + 1 && a[i] == b[j] && a[j] == b[i],
                _ => false,
            }
        }
        1 => (0..a.len()).any(|i| a[..i] == b[..i] && a[i + 1..] == b[i..]),
        -1 => (0..b.len()).any(|i| b[..i] == a[..i] && b[i + 1..] == a[i..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_typo_is_pointed_at_not_the_parser_token() {
        let sql = "ALTER TABLE users ADD COLUMM email TEXT;\n";
        let (at, msg) = explain(sql, 35, "expected command, found TEXT_KW");
        assert_eq!(at, 22, "column 23 is the typo");
        assert_eq!(
            msg,
            "`COLUMM` is not a keyword: did you mean `COLUMN`? (the parser stopped at 1:36: expected command, found `TEXT`)"
        );
    }

    #[test]
    fn without_a_near_keyword_the_parser_position_stays() {
        let sql = "ALTER TABLE users ADD COLUMN email TEXT (;\n";
        let (at, msg) = explain(sql, 40, "expected type, found SEMICOLON");
        assert_eq!(at, 40);
        assert_eq!(msg, "expected type, found SEMICOLON");
        // names, plurals and quoted text are not typos
        let sql = "CREATE TABLE users (\"colum\" int, 'tabel', tables int) x;";
        let (at, _) = explain(sql, 55, "expected SEMICOLON, found IDENT");
        assert_eq!(at, 55);
    }

    #[test]
    fn one_edit_away() {
        assert!(one_edit("COLUMM", "COLUMN"));
        assert!(one_edit("TABEL", "TABLE"));
        assert!(one_edit("ALTR", "ALTER"));
        assert!(one_edit("CREATEE", "CREATE"));
        assert!(!one_edit("COLUMN", "COLUMN"));
        assert!(!one_edit("CLMN", "COLUMN"));
        assert_eq!(near_keyword("users"), None);
        assert_eq!(near_keyword("email"), None);
        assert_eq!(near_keyword("indx"), Some("INDEX"));
    }
}
