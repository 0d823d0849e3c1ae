//! Checking a plan's templates while it is read: each `{placeholder}` must
//! be in the set its key allows (the sets and the rendering are
//! `crate::template`'s).

use super::reader::{did_you_mean, Reader};
use toml_span::value::Table;
use toml_span::Span;

impl Reader<'_> {
    /// Report the `{…}` in `s` that are not in `allowed` (`${VAR}` is left
    /// to the shell).
    pub(crate) fn template(&mut self, s: &str, span: Span, key: &str, allowed: &[&str]) {
        let bytes = s.as_bytes();
        let mut i = 0;
        while let Some(off) = s[i..].find('{') {
            let start = i + off;
            i = start + 1;
            if start > 0 && bytes[start - 1] == b'$' {
                continue; // ${VAR} belongs to the shell
            }
            let Some(len) = s[start + 1..].find('}') else {
                break;
            };
            let name = &s[start + 1..start + 1 + len];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                continue;
            }
            if name == "port" && allowed.contains(&name) && self.uses_port.is_none() {
                self.uses_port = Some(span);
            }
            if !allowed.contains(&name) {
                let hint = did_you_mean(name, allowed.iter().copied()).unwrap_or_else(|| {
                    format!(
                        "placeholders available here: {}",
                        allowed
                            .iter()
                            .map(|p| format!("{{{p}}}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                });
                self.err(
                    span,
                    format!("unknown placeholder `{{{name}}}` in `{key}`"),
                    "unknown placeholder",
                    Some(hint),
                );
            }
        }
    }

    /// An optional template string, its placeholders checked.
    pub(crate) fn template_str(
        &mut self,
        t: &Table<'_>,
        key: &str,
        example: &str,
        allowed: &[&str],
    ) -> Option<(String, Span)> {
        let v = self.str(t, key, example);
        if let Some((s, span)) = &v {
            self.template(s, *span, key, allowed);
        }
        v
    }

    /// A required template string (missing: reported at `at`, the
    /// section), its placeholders checked.
    pub(crate) fn req_template(
        &mut self,
        t: &Table<'_>,
        at: Span,
        section: &str,
        key: &str,
        example: &str,
        allowed: &[&str],
    ) -> Option<(String, Span)> {
        let v = self.req_str(t, at, section, key, example);
        if let Some((s, span)) = &v {
            self.template(s, *span, key, allowed);
        }
        v
    }
}
