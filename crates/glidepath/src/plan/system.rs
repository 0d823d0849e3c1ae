//! `[system]`: the components file that `inventory` and `plan` read (the
//! file itself is `crate::system`'s).

use super::reader::{Keys, Reader};
use std::path::{Path, PathBuf};
use toml_span::value::Table;

const KEYS: &[&str] = &["file"];

/// The system file, which must exist (relative to the plan's directory).
pub(super) fn read(r: &mut Reader, root: &Table<'_>, dir: &Path) -> Option<PathBuf> {
    let (t, at) = r.section(root, "system", Keys::Only(KEYS))?;
    let (f, s) = r.req_str(t, at, "[system]", "file", "\"system.toml\"")?;
    let p = dir.join(&f);
    if !p.exists() {
        r.err(
            s,
            format!("system file `{f}` not found"),
            format!("looked for {}", p.display()),
            Some("paths are relative to the plan file's directory".into()),
        );
        return None;
    }
    Some(p)
}
