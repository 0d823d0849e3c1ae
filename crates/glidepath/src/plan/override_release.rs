//! `run --release V --artifact PATH --sha256 HEX`: the plan's `[release]`
//! is a default. The override is written into the plan's text, so that the
//! run journals (and `resume` re-reads) the plan it really ran, and every
//! value is validated like one written in the file.

use std::path::Path;
use toml_span::value::ValueInner;

/// What `run` overrides of a plan's release.
#[derive(Debug, Clone, Default)]
pub struct ReleaseOverride {
    pub version: Option<String>,
    pub artifact: Option<std::path::PathBuf>,
    pub sha256: Option<String>,
}

impl ReleaseOverride {
    pub fn is_empty(&self) -> bool {
        self.version.is_none() && self.artifact.is_none() && self.sha256.is_none()
    }
}

/// A TOML basic string holding `s`.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `source` with its `[release]` values replaced by `o`'s (a key the
/// section lacks is added to it). `cwd` resolves a relative `--artifact`
/// (the plan resolves paths against its own directory: the override is
/// made absolute). Refuses a source whose `[release]` is not a table.
pub fn with_release(source: &str, o: &ReleaseOverride, cwd: &Path) -> Result<String, String> {
    let mut doc = toml_span::parse(source).map_err(|e| format!("the plan does not parse: {e}"))?;
    let root = match doc.take() {
        ValueInner::Table(t) => t,
        _ => return Err("the plan is not a TOML table".into()),
    };
    let Some(release) = root.get("release") else {
        return Err("the plan has no [release] section to override".into());
    };
    let Some(table) = release.as_table() else {
        return Err("the plan's `release` is not a table".into());
    };
    let artifact = o.artifact.as_ref().map(|a| {
        let abs = if a.is_absolute() {
            a.clone()
        } else {
            cwd.join(a)
        };
        abs.display().to_string()
    });
    let wanted = [
        ("version", o.version.clone()),
        ("artifact", artifact),
        ("sha256", o.sha256.clone()),
    ];
    // (start, end, text) edits, applied from the end
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let mut added = String::new();
    for (key, value) in wanted {
        let Some(value) = value else { continue };
        match table.get(key) {
            Some(v) => {
                // a string's span is its content: take its quotes too
                let (mut a, mut b) = (v.span.start, v.span.end);
                if v.as_str().is_some() {
                    for q in ["\"\"\"", "'''", "\"", "'"] {
                        if source[..a].ends_with(q) && source[b..].starts_with(q) {
                            a -= q.len();
                            b += q.len();
                            break;
                        }
                    }
                }
                edits.push((a, b, quoted(&value)))
            }
            None => added.push_str(&format!("{key} = {}\n", quoted(&value))),
        }
    }
    if !added.is_empty() {
        // right after the `[release]` header line
        let header = source
            .match_indices("[release]")
            .map(|(i, _)| i)
            .find(|i| {
                source[..*i]
                    .lines()
                    .last()
                    .is_none_or(|l| l.trim().is_empty())
            })
            .ok_or("the plan's [release] header is not on a line of its own")?;
        let eol = source[header..]
            .find('\n')
            .map_or(source.len(), |n| header + n + 1);
        edits.push((eol, eol, added));
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out = source.to_string();
    for (a, b, text) in edits {
        out.replace_range(a..b, &text);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_replaced_added_and_quoted() {
        let src = "[release]\nversion  = \"2\" # pinned\nartifact = \"dist/2\"\n\n[fleet]\nname = \"api\"\n";
        let o = ReleaseOverride {
            version: Some("2.1".into()),
            artifact: Some("rel/\"x\"".into()),
            sha256: Some("ab".repeat(32)),
        };
        let out = with_release(src, &o, Path::new("/work")).unwrap();
        assert!(out.contains("version  = \"2.1\" # pinned"), "{out}");
        assert!(out.contains("artifact = \"/work/rel/\\\"x\\\"\""), "{out}");
        assert!(
            out.contains(&format!("[release]\nsha256 = \"{}\"\n", "ab".repeat(32))),
            "{out}"
        );
        assert!(out.contains("[fleet]\nname = \"api\""), "{out}");
        // the result parses, with the values as given
        let mut doc = toml_span::parse(&out).unwrap();
        let ValueInner::Table(t) = doc.take() else {
            panic!()
        };
        let r = t["release"].as_table().unwrap();
        assert_eq!(r["artifact"].as_str(), Some("/work/rel/\"x\""));
    }

    #[test]
    fn a_plan_without_a_release_table_is_refused() {
        let o = ReleaseOverride {
            version: Some("3".into()),
            ..Default::default()
        };
        assert!(with_release("release = 3\n", &o, Path::new("/")).is_err());
        assert!(with_release("[fleet]\n", &o, Path::new("/")).is_err());
    }
}
