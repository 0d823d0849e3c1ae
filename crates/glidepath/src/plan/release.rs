//! `[release]`: the version to roll out, its artifact and its sha256.

use super::reader::{Keys, Reader};
use super::Release;
use crate::names::check_version;
use std::path::Path;
use toml_span::value::Table;

const KEYS: &[&str] = &["version", "artifact", "sha256", "storage_impacting"];

/// Cheap check used while validating `[release] storage_impacting`.
fn source_has_backup_gate(source: &str) -> bool {
    source.lines().any(|l| l.trim() == "[gates.backup]")
}

pub(super) fn read(r: &mut Reader, root: &Table<'_>, dir: &Path) -> Option<Release> {
    let (t, at) = r.required_section(
        root,
        "release",
        Keys::Only(KEYS),
        "add [release] with version, artifact and sha256",
    )?;
    if t.get("storage_impacting").and_then(|v| v.as_bool()) == Some(true)
        && !source_has_backup_gate(r.src)
    {
        let s = t.get("storage_impacting").map(|v| v.span).unwrap_or(at);
        r.err(s, "a storage-impacting release needs a backup gate", "no [gates.backup]", Some("add [gates.backup] with file = … and max_age = \"24h\" (or command = …) proving a fresh backup".into()));
    }
    let version = r.req_str(t, at, "[release]", "version", "\"1.0.10\"");
    let artifact = r.req_str(t, at, "[release]", "artifact", "\"dist/api-1.0.10\"");
    let sha = r.req_str(t, at, "[release]", "sha256", "\"<64 hex digits>\"");
    if let Some((v, s)) = &version {
        if let Err(why) = check_version(v) {
            r.err(
                *s,
                format!("invalid version: {why}"),
                "not a version",
                Some("a version names a directory and is passed to commands: use letters, digits, `.`, `-`, `_`, `+`, `~`, such as \"1.0.10\"".into()),
            );
        }
    }
    let mut art_path = None;
    if let Some((a, s)) = &artifact {
        let p = dir.join(a);
        if !p.exists() {
            r.err(
                *s,
                format!("artifact `{a}` not found"),
                format!("looked for {}", p.display()),
                Some("paths are relative to the plan file's directory".into()),
            );
        } else {
            art_path = Some(p);
        }
    }
    if let Some((h, s)) = &sha {
        if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
            r.err(*s, "`sha256` must be 64 hex digits", format!("{} characters", h.len()), Some("compute it with: glidepath hash ARTIFACT (a file or a directory, as the deployers verify it)".into()));
        }
    }
    let (Some((v, _)), Some(p), Some((h, _))) = (version, art_path, sha) else {
        return None;
    };
    Some(Release {
        version: v,
        artifact: p,
        sha256: h.to_lowercase(),
    })
}
