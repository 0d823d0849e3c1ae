//! `[journal]`: where this plan's runs are journaled (default: the
//! per-machine journal, `crate::journal::default_path`).

use super::reader::{Keys, Reader};
use std::path::{Path, PathBuf};
use toml_span::value::Table;

const KEYS: &[&str] = &["path"];

pub(super) fn read(r: &mut Reader, root: &Table<'_>, dir: &Path) -> Option<PathBuf> {
    let (t, _) = r.section(root, "journal", Keys::Only(KEYS))?;
    r.str(t, "path", "\"glidepath.db\"").map(|p| dir.join(p.0))
}
