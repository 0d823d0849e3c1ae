//! `Reader`: walks the spanned TOML tree of a plan and collects a
//! diagnostic for every problem (with its span and a hint) instead of
//! stopping at the first. The section readers (`plan/<section>.rs`) are
//! written against its helpers: `required_section`/`section` (a missing
//! section, a section of the wrong type, unknown keys), typed values
//! (`str`, `req_str`, `int`, `num`, `duration`, `str_list`, `table`), and
//! `did_you_mean` for the hints.

use crate::diag::Diag;
use std::time::Duration;
use toml_span::value::{Table, Value, ValueInner};
use toml_span::Span;

/// Parse a duration such as `250ms`, `30s`, `5m`, `1h`, `1m30s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0u128;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("expected a number at `{rest}`"));
        }
        let n: u128 = rest[..digits]
            .parse()
            .map_err(|_| "number too large".to_string())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let ms = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => return Err(format!("`{s}` has no unit")),
            u => return Err(format!("unknown unit `{u}`")),
        };
        total += n * ms;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_millis(total as u64))
}

pub(crate) fn did_you_mean<'a>(
    word: &str,
    options: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    options
        .into_iter()
        .map(|o| (strsim::jaro_winkler(word, o), o))
        .filter(|(s, _)| *s > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, o)| format!("did you mean `{o}`?"))
}

pub(crate) fn sp(s: Span) -> (usize, usize) {
    (s.start, s.end)
}

/// Collects diagnostics while reading the spanned TOML tree.
pub(crate) struct Reader<'s> {
    pub(crate) src: &'s str,
    pub(crate) diags: Vec<Diag>,
    /// Where a template first used `{port}` (every node's address must
    /// then have a port: checked once the fleet is known).
    pub(crate) uses_port: Option<Span>,
}

impl<'s> Reader<'s> {
    pub(crate) fn err(
        &mut self,
        span: Span,
        msg: impl Into<String>,
        label: impl Into<String>,
        hint: Option<String>,
    ) {
        let mut d = Diag::error(msg, sp(span), label);
        d.hint = hint;
        self.diags.push(d);
    }

    /// Report keys that are not in `allowed`.
    pub(crate) fn known_keys(&mut self, t: &Table<'_>, section: &str, allowed: &[&str]) {
        for k in t.keys() {
            if !allowed.contains(&k.name.as_ref()) {
                let hint = did_you_mean(&k.name, allowed.iter().copied())
                    .unwrap_or_else(|| format!("known keys in {section}: {}", allowed.join(", ")));
                self.err(
                    k.span,
                    format!("unknown key `{}` in {section}", k.name),
                    "unknown key",
                    Some(hint),
                );
            }
        }
    }

    pub(crate) fn type_err(&mut self, v: &Value<'_>, key: &str, expected: &str, example: &str) {
        let found = v.as_ref().type_str();
        self.err(
            v.span,
            format!("wrong type for `{key}`: expected {expected}, found {found}"),
            format!("expected {expected}"),
            Some(format!("for example: {key} = {example}")),
        );
    }

    pub(crate) fn missing(&mut self, at: Span, section: &str, key: &str, example: &str) {
        // Point at the section header's line, not the whole table.
        let end = self.src[at.start.min(self.src.len())..]
            .find('\n')
            .map_or(at.end, |i| at.start + i);
        self.err(
            Span::new(at.start, end.max(at.start)),
            format!("missing `{key}` in {section}"),
            format!("{section} needs `{key}`"),
            Some(format!("add: {key} = {example}")),
        );
    }

    pub(crate) fn str(
        &mut self,
        t: &Table<'_>,
        key: &str,
        example: &str,
    ) -> Option<(String, Span)> {
        let v = t.get(key)?;
        match v.as_str() {
            Some(s) => Some((s.to_string(), v.span)),
            None => {
                self.type_err(v, key, "a string", example);
                None
            }
        }
    }

    pub(crate) fn req_str(
        &mut self,
        t: &Table<'_>,
        at: Span,
        section: &str,
        key: &str,
        example: &str,
    ) -> Option<(String, Span)> {
        if t.get(key).is_none() {
            self.missing(at, section, key, example);
            return None;
        }
        self.str(t, key, example)
    }

    pub(crate) fn int(
        &mut self,
        t: &Table<'_>,
        key: &str,
        min: i64,
        example: &str,
    ) -> Option<(i64, Span)> {
        let v = t.get(key)?;
        match v.as_integer() {
            Some(i) if i >= min => Some((i, v.span)),
            Some(i) => {
                self.err(
                    v.span,
                    format!("`{key}` = {i} is out of range"),
                    format!("must be at least {min}"),
                    Some(format!("for example: {key} = {example}")),
                );
                None
            }
            None => {
                self.type_err(v, key, "an integer", example);
                None
            }
        }
    }

    pub(crate) fn num(&mut self, t: &Table<'_>, key: &str) -> Option<(f64, Span)> {
        let v = t.get(key)?;
        match v.as_ref() {
            ValueInner::Float(f) => Some((*f, v.span)),
            ValueInner::Integer(i) => Some((*i as f64, v.span)),
            _ => {
                self.type_err(v, key, "a number", "0.5");
                None
            }
        }
    }

    pub(crate) fn duration(
        &mut self,
        t: &Table<'_>,
        key: &str,
        default: Option<Duration>,
    ) -> Option<Duration> {
        let Some(v) = t.get(key) else {
            return default;
        };
        let Some(s) = v.as_str() else {
            self.type_err(v, key, "a duration string", "\"30s\"");
            return None;
        };
        match parse_duration(s) {
            Ok(d) if d.is_zero() => {
                self.err(
                    v.span,
                    format!("`{key}` must be longer than 0"),
                    "zero duration",
                    Some("use e.g. \"500ms\" or \"30s\"".into()),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.err(
                    v.span,
                    format!("invalid duration `{s}` for `{key}`: {e}"),
                    "not a duration",
                    Some("write a number with a unit: ms, s, m or h, e.g. \"30s\", \"1m30s\", \"250ms\"".into()),
                );
                None
            }
        }
    }

    pub(crate) fn table<'t, 'de>(
        &mut self,
        root: &'t Table<'de>,
        key: &str,
    ) -> Option<(&'t Table<'de>, Span)> {
        let v = root.get(key)?;
        match v.as_table() {
            Some(t) => Some((t, v.span)),
            None => {
                self.type_err(v, key, "a table", &format!("[{key}] section"));
                None
            }
        }
    }

    pub(crate) fn str_list(
        &mut self,
        t: &Table<'_>,
        key: &str,
        example: &str,
    ) -> Option<Vec<(String, Span)>> {
        let v = t.get(key)?;
        let Some(arr) = v.as_array() else {
            self.type_err(v, key, "an array of strings", example);
            return None;
        };
        let mut out = Vec::new();
        for item in arr {
            match item.as_str() {
                Some(s) => out.push((s.to_string(), item.span)),
                None => self.type_err(item, key, "a string", example),
            }
        }
        Some(out)
    }
}

/// Which keys a section may hold.
pub(crate) enum Keys<'a> {
    /// These, checked as soon as the section is found.
    Only(&'a [&'a str]),
    /// The section's reader checks them itself with
    /// [`Reader::known_keys`]: they depend on a value it reads first (a
    /// `kind`, a `source`).
    ByReader,
}

impl Reader<'_> {
    /// The top-level `[key]` section, if the plan has it. A value that is
    /// not a table is reported where it is, and the section's keys are
    /// checked against `keys`.
    pub(crate) fn section<'t, 'de>(
        &mut self,
        root: &'t Table<'de>,
        key: &str,
        keys: Keys<'_>,
    ) -> Option<(&'t Table<'de>, Span)> {
        let (t, at) = self.table(root, key)?;
        if let Keys::Only(allowed) = keys {
            self.known_keys(t, &format!("[{key}]"), allowed);
        }
        Some((t, at))
    }

    /// A section every plan has: [`Reader::section`], and when it is
    /// missing, "missing [key] section" at the top of the file with `hint`.
    pub(crate) fn required_section<'t, 'de>(
        &mut self,
        root: &'t Table<'de>,
        key: &str,
        keys: Keys<'_>,
        hint: &str,
    ) -> Option<(&'t Table<'de>, Span)> {
        if !root.contains_key(key) {
            self.missing_section(format!("missing [{key}] section"), hint);
            return None;
        }
        self.section(root, key, keys)
    }

    /// A required section is missing: reported at the top of the file.
    pub(crate) fn missing_section(&mut self, message: impl Into<String>, hint: impl Into<String>) {
        self.diags
            .push(Diag::error(message, (0, 0), "the plan starts here").hint(hint));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_skeleton() {
        let src = "fleet = 1\n[strategy]\ncanary = []\nbatchsize = 1\n";
        let mut doc = toml_span::parse(src).unwrap();
        let ValueInner::Table(root) = doc.take() else {
            unreachable!()
        };
        let mut r = Reader {
            src,
            diags: Vec::new(),
            uses_port: None,
        };
        let keys = Keys::Only(&["canary", "batch_size"]);
        assert!(r
            .required_section(&root, "release", Keys::ByReader, "add [release]")
            .is_none());
        assert!(r
            .required_section(&root, "fleet", Keys::ByReader, "add [fleet]")
            .is_none());
        assert!(r
            .required_section(&root, "strategy", keys, "add [strategy]")
            .is_some());
        assert!(r.section(&root, "journal", Keys::ByReader).is_none());
        let got: Vec<_> = r
            .diags
            .iter()
            .map(|d| (d.message.as_str(), d.span, d.hint.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "missing [release] section",
                    Some((0, 0)),
                    Some("add [release]")
                ),
                (
                    "wrong type for `fleet`: expected a table, found integer",
                    Some((8, 9)),
                    Some("for example: fleet = [fleet] section")
                ),
                (
                    "unknown key `batchsize` in [strategy]",
                    Some((33, 42)),
                    Some("did you mean `batch_size`?")
                ),
            ]
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("30x"), Err("unknown unit `x`".into()));
        assert_eq!(parse_duration("30"), Err("`30` has no unit".into()));
        assert!(parse_duration("s").is_err());
    }
}
