//! `[journal]`: where this plan's runs are journaled (default: the
//! per-machine journal, `crate::journal::default_path`): a SQLite file
//! (`path`, relative to the plan) or a PostgreSQL database (`url`, team
//! mode). The plan is journaled with every run, so a `url` never holds a
//! password: that comes from `GLIDEPATH_JOURNAL_PASSWORD_FILE` or
//! `GLIDEPATH_JOURNAL_PASSWORD`.

use super::reader::{Keys, Reader};
use crate::journal::{postgres, JournalError, Location};
use std::path::Path;
use toml_span::value::Table;
use toml_span::Span;

const KEYS: &[&str] = &["path", "url"];

const URL_EXAMPLE: &str = "\"postgres://glidepath@db.internal:5432/glidepath\"";

pub(super) fn read(r: &mut Reader, root: &Table<'_>, dir: &Path) -> Option<Location> {
    let (t, at) = r.section(root, "journal", Keys::Only(KEYS))?;
    let path = r.str(t, "path", "\"glidepath.db\"");
    let url = r.str(t, "url", URL_EXAMPLE);
    match (path, url) {
        (Some(_), Some((_, s))) => {
            r.err(
                s,
                "`path` and `url` both set in [journal]",
                "choose one",
                Some("a journal is a SQLite file (`path`) or a PostgreSQL database (`url`)".into()),
            );
            None
        }
        (Some((p, s)), None) => {
            repeated_dir(r, &p, s, dir);
            Some(Location::Sqlite(dir.join(p)))
        }
        (None, Some((u, s))) => url_location(r, &u, s, at),
        (None, None) => None,
    }
}

/// A `path` that starts with the plan's own directory (as seen from the
/// working directory) is most likely written from the working directory,
/// and would land in `results/dev/results/dev/…`: a warning naming where
/// it really goes.
fn repeated_dir(r: &mut Reader, p: &str, at: Span, dir: &Path) {
    let from_cwd = std::env::current_dir()
        .ok()
        .and_then(|cwd| dir.strip_prefix(cwd).ok().map(Path::to_path_buf));
    let Some(rel) = from_cwd.filter(|d| d.components().next().is_some()) else {
        return;
    };
    let Ok(inside) = Path::new(p).strip_prefix(&rel) else {
        return;
    };
    r.diags.push(crate::diag::Diag {
        severity: crate::diag::Severity::Warning,
        message: format!(
            "`path` in [journal] is relative to the plan's directory ({}), like every path in a plan: this journal is {}",
            rel.display(),
            rel.join(p).display()
        ),
        span: Some(super::reader::sp(at)),
        label: "relative to the plan's directory".into(),
        hint: Some(format!(
            "write path = \"{}\" for {}",
            inside.display(),
            Path::new(p).display()
        )),
    });
}

/// A `url`: a PostgreSQL URL without a password.
fn url_location(r: &mut Reader, given: &str, at: Span, section: Span) -> Option<Location> {
    if !postgres::is_url(given) {
        r.err(
            at,
            "`url` in [journal] is not a PostgreSQL URL",
            "expected postgres://…",
            Some(format!(
                "for example: url = {URL_EXAMPLE}; a SQLite file is `path = \"glidepath.db\"`"
            )),
        );
        return None;
    }
    if has_password(given) {
        // pointed at the section's header: the line of the url would show
        // the password in the rendered diagnostic
        let header = Span::new(section.start, section.start);
        r.err(
            header,
            "`url` in [journal] holds a password: the plan is journaled with every run, and its password would be too",
            "its `url` holds a password",
            Some("remove the password from the URL, and give it to glidepath in GLIDEPATH_JOURNAL_PASSWORD_FILE (a file, mode 600) or GLIDEPATH_JOURNAL_PASSWORD".into()),
        );
        return None;
    }
    match Location::parse(given) {
        Ok(l) => Some(l),
        Err(JournalError::BadLocation { why, .. }) => {
            r.err(
                at,
                format!("`url` in [journal] is not usable: {why}"),
                "not usable",
                Some(format!("for example: url = {URL_EXAMPLE}")),
            );
            None
        }
        Err(e) => {
            r.err(at, format!("`url` in [journal]: {e}"), "not usable", None);
            None
        }
    }
}

/// Does the URL carry a password (`user:secret@…`, or `?password=…`)?
fn has_password(given: &str) -> bool {
    match given.trim().parse::<tokio_postgres::Config>() {
        Ok(c) => c.get_password().is_some(),
        // unparsable: the userinfo decides (the parse error says the rest)
        Err(_) => postgres::redact_text(given) != given,
    }
}
